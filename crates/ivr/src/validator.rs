//! Whole-set checks of flows: references, reachability, prompts per language, regexes, menu
//! keys, loops that never wait for the caller, queues, and variables read before being set.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use regex::Regex;

use crate::condition;
use crate::diagnostic::Diagnostic;
use crate::flowset::Flow;
use crate::hours;
use crate::located::{Located, Position};
use crate::model::{LookupAction, PlayItem, Step};
use crate::speech;
use crate::template;

/// What the validator needs to know about the rest of the system, as plain values.
#[derive(Debug, Clone, Default)]
pub struct ValidationContext {
    /// Queue names the ACD knows; `None` skips the check.
    pub queues: Option<Vec<String>>,
    /// Languages every prompt must exist in (e.g. [tr, en]).
    pub languages: Vec<String>,
    /// Where prompts live (`<dir>/<language>/<name>.wav`); `None` skips prompt checks.
    pub prompts_dir: Option<PathBuf>,
}

/// Keys a menu may use.
const MENU_KEYS: &str = "0123456789*#";

/// Built-in variables every call has.
pub const BUILTIN_VARIABLES: [&str; 6] = [
    "call.caller",
    "call.dialled",
    "call.language",
    "call.time",
    "call.weekday",
    "call.date",
];

pub fn validate(
    flows: &BTreeMap<String, Arc<Flow>>,
    ctx: &ValidationContext,
) -> (HashMap<String, Regex>, Vec<Diagnostic>) {
    let mut v = Validator {
        flows,
        ctx,
        out: Vec::new(),
        regexes: HashMap::new(),
        prompt_cache: HashMap::new(),
    };
    for flow in flows.values() {
        v.check_flow(flow);
    }
    v.check_spinning_loops();
    (v.regexes, v.out)
}

struct Validator<'a> {
    flows: &'a BTreeMap<String, Arc<Flow>>,
    ctx: &'a ValidationContext,
    out: Vec<Diagnostic>,
    regexes: HashMap<String, Regex>,
    prompt_cache: HashMap<(String, String), bool>,
}

impl Validator<'_> {
    fn error(&mut self, flow: &Flow, position: Position, message: impl Into<String>) {
        self.out
            .push(Diagnostic::error(&flow.file, position, message));
    }
    fn warning(&mut self, flow: &Flow, position: Position, message: impl Into<String>) {
        self.out
            .push(Diagnostic::warning(&flow.file, position, message));
    }

    fn check_flow(&mut self, flow: &Flow) {
        let steps = &flow.def.steps;
        let names: BTreeSet<&str> = steps.iter().map(|(k, _)| k.value.as_str()).collect();
        if steps.get(&flow.def.start).is_none() {
            let hint = suggestion(&flow.def.start, &names);
            self.error(
                flow,
                flow.def.start.position,
                format!("start step `{}` does not exist{hint}", flow.def.start.value),
            );
        }
        for (name, step) in steps.iter() {
            if !name
                .value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                || name.value.is_empty()
            {
                self.error(
                    flow,
                    name.position,
                    format!(
                        "step name `{}` may only use letters, digits, `_` and `-`",
                        name.value
                    ),
                );
            }
            for (_, target) in step.value.edges() {
                if steps.get(target).is_none() {
                    let hint = suggestion(target, &names);
                    self.error(
                        flow,
                        target.position,
                        format!("unknown step `{}`{hint}", target.value),
                    );
                }
            }
            self.check_step(flow, name, step);
        }
        self.check_reachability(flow);
        self.check_variables(flow);
    }

    fn check_step(&mut self, flow: &Flow, name: &Located<String>, step: &Located<Step>) {
        for list in step.value.playlists() {
            for item in list {
                self.check_play_item(flow, item);
            }
        }
        for (text, position) in templates_of(&step.value) {
            if let Err(message) = template::variables_in(text) {
                self.error(flow, position, message);
            }
        }
        match &step.value {
            Step::Menu(menu) => {
                let mut seen: BTreeMap<&str, Position> = BTreeMap::new();
                for (key, _) in &menu.choices.0 {
                    if key.value.chars().count() != 1 || !MENU_KEYS.contains(key.value.as_str()) {
                        self.error(
                            flow,
                            key.position,
                            format!("menu key `{}` is not one of 0-9, * or #", key.value),
                        );
                    }
                    if let Some(first) = seen.insert(&key.value, key.position) {
                        self.error(
                            flow,
                            key.position,
                            format!(
                                "duplicate menu key `{}` (first used at line {})",
                                key.value, first.line
                            ),
                        );
                    }
                }
                if menu.choices.0.is_empty() {
                    self.error(
                        flow,
                        step.position,
                        format!("menu `{}` has no choices", name.value),
                    );
                }
                self.check_attempts(flow, step.position, menu.attempts);
            }
            Step::Gather(g) => {
                if g.max_digits == 0 || g.max_digits > 64 || g.min_digits > g.max_digits {
                    self.error(
                        flow,
                        step.position,
                        format!(
                            "gather `{}`: need 1 ≤ min_digits ({}) ≤ max_digits ({}) ≤ 64",
                            name.value, g.min_digits, g.max_digits
                        ),
                    );
                }
                if let Some(t) = &g.terminator
                    && (t.value.0.chars().count() != 1 || !MENU_KEYS.contains(t.value.0.as_str()))
                {
                    self.error(
                        flow,
                        t.position,
                        format!("terminator `{}` is not one of 0-9, * or #", t.value),
                    );
                }
                if let Some(p) = &g.pattern {
                    self.compile(flow, p);
                }
                if !template::is_variable_name(&g.store) || g.store.starts_with("call.") {
                    self.error(
                        flow,
                        g.store.position,
                        format!(
                            "`{}` is not a variable name you can store into",
                            g.store.value
                        ),
                    );
                }
                self.check_attempts(flow, step.position, g.attempts);
            }
            Step::Survey(s) => self.check_attempts(flow, step.position, s.attempts),
            Step::Set(s) => {
                for (var, value) in &s.values {
                    if !template::is_variable_name(var) || var.starts_with("call.") {
                        self.error(
                            flow,
                            value.position,
                            format!("`{var}` is not a variable name you can set"),
                        );
                    }
                }
                for var in &s.increment {
                    if !template::is_variable_name(var) || var.starts_with("call.") {
                        self.error(
                            flow,
                            var.position,
                            format!("`{}` is not a variable name you can set", var.value),
                        );
                    }
                }
            }
            Step::Branch(b) => {
                for case in &b.cases {
                    for p in condition::patterns(&case.when) {
                        self.compile(flow, p);
                    }
                    if case.when.var.is_none()
                        && case.when.all.is_empty()
                        && case.when.any.is_empty()
                        && case.when.not.is_none()
                    {
                        self.error(flow, case.next.position, "condition tests nothing: give `var` (with a comparison), `all`, `any` or `not`");
                    }
                }
            }
            Step::Hours(h) => {
                for (position, err) in hours::check(h) {
                    self.error(flow, position, err.to_string());
                }
            }
            Step::Lookup(l) => {
                let needs: &[(&str, bool)] = match l.action {
                    LookupAction::Verify => {
                        &[("customer", l.customer.is_some()), ("pin", l.pin.is_some())]
                    }
                    LookupAction::Fetch | LookupAction::BlockCard => {
                        &[("customer", l.customer.is_some())]
                    }
                    LookupAction::FetchByCaller => &[],
                };
                for (field, present) in needs {
                    if !present {
                        self.error(
                            flow,
                            step.position,
                            format!("lookup `{}` needs `{field}`", name.value),
                        );
                    }
                }
            }
            Step::Http(h) => {
                let url = h.url.value.trim_start();
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    self.error(
                        flow,
                        h.url.position,
                        "url must start with http:// or https://",
                    );
                }
                for pointer in h.extract.values() {
                    if !pointer.is_empty() && !pointer.starts_with('/') {
                        self.error(
                            flow,
                            pointer.position,
                            format!(
                                "`{}` is not a JSON pointer (start it with /)",
                                pointer.value
                            ),
                        );
                    }
                }
            }
            Step::Queue(q) => {
                match &q.queue {
                    Some(queue) => {
                        if let Some(known) = &self.ctx.queues
                            && !known.iter().any(|k| k == &queue.value)
                        {
                            let names: BTreeSet<&str> = known.iter().map(String::as_str).collect();
                            let hint = suggestion(queue, &names);
                            self.error(
                                flow,
                                queue.position,
                                format!("unknown queue `{}`{hint}", queue.value),
                            );
                        }
                    }
                    None if q.skills.is_empty() && !q.any_agent => {
                        self.error(
                            flow,
                            step.position,
                            format!(
                                "queue `{}` needs `queue`, `skills` or `any_agent: true`",
                                name.value
                            ),
                        );
                    }
                    None => {}
                }
                if let Some(d) = &q.exit_digit
                    && (d.value.0.chars().count() != 1 || !MENU_KEYS.contains(d.value.0.as_str()))
                {
                    self.error(
                        flow,
                        d.position,
                        format!("exit_digit `{}` is not one of 0-9, * or #", d.value),
                    );
                }
            }
            Step::Record(r) => {
                if r.stop_digit.value.0.chars().count() != 1
                    || !MENU_KEYS.contains(r.stop_digit.value.0.as_str())
                {
                    self.error(
                        flow,
                        r.stop_digit.position,
                        format!(
                            "stop_digit `{}` is not one of 0-9, * or #",
                            r.stop_digit.value
                        ),
                    );
                }
                if r.max_length.0.is_zero() {
                    self.error(flow, step.position, "max_length must be more than zero");
                }
            }
            Step::Language(l) => {
                if !self.ctx.languages.is_empty()
                    && !self.ctx.languages.iter().any(|x| x == &l.set.value)
                {
                    self.error(
                        flow,
                        l.set.position,
                        format!(
                            "language `{}` is not configured (languages: {})",
                            l.set.value,
                            self.ctx.languages.join(", ")
                        ),
                    );
                }
            }
            Step::Goto(g) => match self.flows.get(&g.flow.value) {
                None => {
                    let names: BTreeSet<&str> = self.flows.keys().map(String::as_str).collect();
                    let hint = suggestion(&g.flow, &names);
                    self.error(
                        flow,
                        g.flow.position,
                        format!("unknown flow `{}`{hint}", g.flow.value),
                    );
                }
                Some(target) => {
                    if let Some(s) = &g.step
                        && target.def.steps.get(s).is_none()
                    {
                        self.error(
                            flow,
                            s.position,
                            format!("flow `{}` has no step `{}`", g.flow.value, s.value),
                        );
                    }
                }
            },
            Step::Play(_) | Step::Transfer(_) | Step::Tag(_) | Step::Hangup(_) => {}
        }
    }

    fn check_attempts(&mut self, flow: &Flow, position: Position, attempts: u32) {
        if attempts == 0 || attempts > 10 {
            self.error(
                flow,
                position,
                format!("attempts must be 1 to 10, not {attempts}"),
            );
        }
    }

    fn compile(&mut self, flow: &Flow, pattern: &Located<String>) {
        if self.regexes.contains_key(&pattern.value) {
            return;
        }
        match regex::RegexBuilder::new(&pattern.value)
            .size_limit(1 << 20)
            .build()
        {
            Ok(re) => {
                self.regexes.insert(pattern.value.clone(), re);
            }
            Err(e) => {
                let text = e.to_string();
                let last = text
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("invalid")
                    .trim();
                self.error(
                    flow,
                    pattern.position,
                    format!("invalid regular expression `{}`: {last}", pattern.value),
                );
            }
        }
    }

    fn check_play_item(&mut self, flow: &Flow, item: &Located<PlayItem>) {
        let Some(dir) = self.ctx.prompts_dir.clone() else {
            if let PlayItem::Say(kind, value) = &item.value {
                self.check_say_literal(flow, item.position, *kind, value);
            }
            return;
        };
        let languages = self.ctx.languages.clone();
        match &item.value {
            PlayItem::Prompt(name) => {
                if !valid_prompt_name(name) {
                    self.error(
                        flow,
                        item.position,
                        format!("prompt name `{name}` may only use letters, digits, `_` and `-`"),
                    );
                    return;
                }
                for lang in &languages {
                    if !self.prompt_exists(&dir, lang, name) {
                        let expected = dir.join(lang).join(format!("{name}.wav"));
                        self.error(
                            flow,
                            item.position,
                            format!(
                                "prompt `{name}` is missing for language `{lang}` (expected {})",
                                expected.display()
                            ),
                        );
                    }
                }
            }
            PlayItem::Say(kind, value) => {
                self.check_say_literal(flow, item.position, *kind, value);
                for lang in &languages {
                    let missing: Vec<String> = speech::all_fragments(*kind)
                        .into_iter()
                        .filter(|f| !self.prompt_exists(&dir, lang, f))
                        .collect();
                    if !missing.is_empty() {
                        self.error(
                            flow,
                            item.position,
                            format!(
                                "{} needs fragments missing for language `{lang}`: {}",
                                kind.key(),
                                missing.join(", ")
                            ),
                        );
                    }
                }
            }
        }
    }

    fn check_say_literal(
        &mut self,
        flow: &Flow,
        position: Position,
        kind: crate::model::SayKind,
        value: &str,
    ) {
        match template::variables_in(value) {
            Ok(vars) if vars.is_empty() => {
                if let Err(e) = speech::fragments(kind, value, "en") {
                    self.error(flow, position, e.to_string());
                }
            }
            Ok(_) => {}
            Err(message) => self.error(flow, position, message),
        }
    }

    fn prompt_exists(&mut self, dir: &std::path::Path, lang: &str, name: &str) -> bool {
        *self
            .prompt_cache
            .entry((lang.to_owned(), name.to_owned()))
            .or_insert_with(|| dir.join(lang).join(format!("{name}.wav")).is_file())
    }

    fn check_reachability(&mut self, flow: &Flow) {
        let steps = &flow.def.steps;
        let mut reached: BTreeSet<&str> = BTreeSet::new();
        let mut todo: Vec<&str> = vec![flow.def.start.value.as_str()];
        // Steps other flows jump to with `goto … step:` are entry points too.
        for other in self.flows.values() {
            for (_, step) in other.def.steps.iter() {
                if let Step::Goto(g) = &step.value
                    && g.flow.value == flow.name
                    && let Some(s) = &g.step
                {
                    todo.push(s.value.as_str());
                }
            }
        }
        // Bounded: each step is pushed at most once per incoming edge.
        while let Some(name) = todo.pop() {
            if !reached.insert(name) {
                continue;
            }
            if let Some(step) = steps.get(name) {
                todo.extend(
                    step.value
                        .edges()
                        .into_iter()
                        .map(|(_, t)| t.value.as_str()),
                );
            }
        }
        let unreachable: Vec<(Position, String)> = steps
            .iter()
            .filter(|(k, _)| !reached.contains(k.value.as_str()))
            .map(|(k, _)| (k.position, k.value.clone()))
            .collect();
        for (position, name) in unreachable {
            self.error(
                flow,
                position,
                format!(
                    "step `{name}` is unreachable from start `{}`",
                    flow.def.start.value
                ),
            );
        }
    }

    /// Warns where a variable may be read before any step set it on every path there.
    fn check_variables(&mut self, flow: &Flow) {
        let steps = &flow.def.steps;
        // None = not yet reached (the "everything" of a must-analysis).
        let mut set_before: BTreeMap<&str, Option<BTreeSet<String>>> = steps
            .iter()
            .map(|(k, _)| (k.value.as_str(), None))
            .collect();
        let builtin: BTreeSet<String> = builtin_set();
        if let Some(slot) = set_before.get_mut(flow.def.start.value.as_str()) {
            *slot = Some(builtin.clone());
        }
        let bound = steps.0.len() * 64 + 64;
        let mut changed = true;
        let mut rounds = 0;
        while changed && rounds < bound {
            changed = false;
            rounds += 1;
            for (name, step) in steps.iter() {
                let Some(Some(incoming)) = set_before.get(name.value.as_str()).cloned() else {
                    continue;
                };
                for (label, target) in step.value.edges() {
                    let mut out = incoming.clone();
                    out.extend(sets_on_edge(&step.value, label));
                    let Some(slot) = set_before.get_mut(target.value.as_str()) else {
                        continue;
                    };
                    let merged = match slot {
                        None => out,
                        Some(existing) => existing.intersection(&out).cloned().collect(),
                    };
                    if slot.as_ref() != Some(&merged) {
                        *slot = Some(merged);
                        changed = true;
                    }
                }
            }
        }
        let mut warnings = Vec::new();
        for (name, step) in steps.iter() {
            let Some(Some(known)) = set_before.get(name.value.as_str()) else {
                continue;
            };
            for (var, position) in reads_of(&step.value) {
                let prefix_known = known
                    .iter()
                    .any(|k| k.ends_with(".*") && var.starts_with(&k[..k.len() - 1]));
                if !known.contains(&var) && !prefix_known {
                    warnings.push((
                        position,
                        format!("variable `{var}` may be read before any step sets it"),
                    ));
                }
            }
        }
        for (position, message) in warnings {
            self.warning(flow, position, message);
        }
    }

    /// Loops through steps that never wait for the caller would spin forever: find them across
    /// flows (a `goto` joins flows).
    fn check_spinning_loops(&mut self) {
        type Node = (String, String);
        let mut graph: BTreeMap<Node, Vec<(Node, Position)>> = BTreeMap::new();
        let mut files: BTreeMap<Node, (String, Position)> = BTreeMap::new();
        for flow in self.flows.values() {
            for (name, step) in flow.def.steps.iter() {
                if step.value.waits_for_caller() {
                    continue;
                }
                let node = (flow.name.clone(), name.value.clone());
                files.insert(node.clone(), (flow.file.clone(), name.position));
                let mut next: Vec<(Node, Position)> = step
                    .value
                    .edges()
                    .into_iter()
                    .map(|(_, t)| ((flow.name.clone(), t.value.clone()), t.position))
                    .collect();
                if let Step::Goto(g) = &step.value
                    && let Some(target) = self.flows.get(&g.flow.value)
                {
                    let s = g
                        .step
                        .as_ref()
                        .map(|s| s.value.clone())
                        .unwrap_or_else(|| target.def.start.value.clone());
                    next.push(((target.name.clone(), s), g.flow.position));
                }
                graph.insert(node, next);
            }
        }
        // Iterative DFS with colours; a grey target closes a cycle of non-waiting steps.
        let mut colour: BTreeMap<Node, u8> = BTreeMap::new();
        let mut reported: BTreeSet<Vec<Node>> = BTreeSet::new();
        let nodes: Vec<Node> = graph.keys().cloned().collect();
        for root in nodes {
            if colour.get(&root).copied().unwrap_or(0) != 0 {
                continue;
            }
            let mut stack: Vec<(Node, usize)> = vec![(root.clone(), 0)];
            colour.insert(root, 1);
            while let Some((node, index)) = stack.last().cloned() {
                let edges = graph.get(&node).cloned().unwrap_or_default();
                if index >= edges.len() {
                    colour.insert(node, 2);
                    stack.pop();
                    continue;
                }
                if let Some(top) = stack.last_mut() {
                    top.1 += 1;
                }
                let (target, position) = &edges[index];
                if !graph.contains_key(target) {
                    continue; // a waiting step or an unknown one (reported elsewhere)
                }
                match colour.get(target).copied().unwrap_or(0) {
                    0 => {
                        colour.insert(target.clone(), 1);
                        stack.push((target.clone(), 0));
                    }
                    1 => {
                        let start = stack.iter().position(|(n, _)| n == target).unwrap_or(0);
                        let mut cycle: Vec<Node> =
                            stack[start..].iter().map(|(n, _)| n.clone()).collect();
                        let path = cycle
                            .iter()
                            .map(|(f, s)| format!("{f}.{s}"))
                            .collect::<Vec<_>>()
                            .join(" → ");
                        cycle.sort();
                        if reported.insert(cycle) {
                            let file = files.get(&node).map(|(f, _)| f.clone()).unwrap_or_default();
                            self.out.push(Diagnostic::error(&file, *position, format!(
                                "loop {path} → {}.{} never waits for the caller and would spin forever",
                                target.0, target.1)));
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

fn builtin_set() -> BTreeSet<String> {
    BUILTIN_VARIABLES.iter().map(|s| (*s).to_owned()).collect()
}

fn valid_prompt_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Variables a step sets when it leaves by the edge labelled `label`.
fn sets_on_edge(step: &Step, label: &str) -> Vec<String> {
    match step {
        Step::Gather(g) if label == "next" => vec![g.store.value.clone()],
        Step::Set(s) => s
            .values
            .keys()
            .cloned()
            .chain(s.increment.iter().map(|v| v.value.clone()))
            .collect(),
        Step::Lookup(l) if label == "on_found" => vec![format!("{}.*", l.store)],
        Step::Http(h) if label == "next" => h.extract.keys().cloned().collect(),
        Step::Record(r) => vec![r.store.clone()],
        _ => vec![],
    }
}

/// Template texts of a step with their positions (for syntax checks).
fn templates_of(step: &Step) -> Vec<(&str, Position)> {
    fn add<'a>(out: &mut Vec<(&'a str, Position)>, l: &'a Located<String>) {
        out.push((l.value.as_str(), l.position));
    }
    let mut out: Vec<(&str, Position)> = Vec::new();
    match step {
        Step::Set(s) => s.values.values().for_each(|l| add(&mut out, l)),
        Step::Lookup(l) => [&l.customer, &l.pin, &l.card]
            .into_iter()
            .flatten()
            .for_each(|l| add(&mut out, l)),
        Step::Http(h) => {
            add(&mut out, &h.url);
            for text in h
                .headers
                .values()
                .map(String::as_str)
                .chain(h.body.iter().flat_map(template::json_strings))
            {
                out.push((text, h.url.position));
            }
        }
        Step::Transfer(t) => add(&mut out, &t.to),
        Step::Queue(q) => q.language.iter().for_each(|l| add(&mut out, l)),
        _ => {}
    }
    out
}

/// Variables a step reads, with where.
fn reads_of(step: &Step) -> Vec<(String, Position)> {
    let mut out = Vec::new();
    for (text, position) in templates_of(step) {
        for var in template::variables_in(text).unwrap_or_default() {
            out.push((var, position));
        }
    }
    for list in step.playlists() {
        for item in list {
            if let PlayItem::Say(_, value) = &item.value {
                for var in template::variables_in(value).unwrap_or_default() {
                    out.push((var, item.position));
                }
            }
        }
    }
    if let Step::Branch(b) = step {
        for case in &b.cases {
            for var in condition::variables(&case.when) {
                out.push((var.value.clone(), var.position));
            }
        }
    }
    out
}

/// ", did you mean `x`?" for a close name, else nothing.
fn suggestion(wrong: &str, names: &BTreeSet<&str>) -> String {
    names
        .iter()
        .map(|n| (edit_distance(wrong, n), *n))
        .filter(|(d, n)| *d <= 2.max(n.len() / 3))
        .min()
        .map(|(_, n)| format!(", did you mean `{n}`?"))
        .unwrap_or_default()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().take(64).collect();
    let b: Vec<char> = b.chars().take(64).collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}
