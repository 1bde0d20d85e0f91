//! Flow test cases (ivr-flows/tests/*.yaml): scripted calls with expectations, run by
//! `santral flow test`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::customers::CustomerDirectory;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::flowset::FlowSet;
use crate::located::{Located, Position};
use crate::simulator::{self, HttpStub, LookupStub, Outcome, QueueStub, Scenario, ScriptedKeys};

/// A file of test cases.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    /// The flow cases start in unless they name another.
    pub flow: String,
    pub cases: Vec<Located<TestCase>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestCase {
    pub name: String,
    #[serde(default)]
    pub flow: Option<String>,
    #[serde(default = "default_caller")]
    pub caller: String,
    #[serde(default = "default_dialled")]
    pub dialled: String,
    /// Starting language; the configured default when omitted.
    #[serde(default)]
    pub language: Option<String>,
    /// Wall-clock time of the call (plain times are in Europe/Istanbul).
    #[serde(default = "default_time")]
    pub time: String,
    /// Keys the caller presses; `_` = stay silent until a timeout.
    #[serde(default)]
    pub digits: String,
    #[serde(default)]
    pub queue: Vec<QueueStub>,
    #[serde(default)]
    pub http: Vec<HttpStub>,
    /// Stubbed customer-data answers; the customer file answers when omitted.
    #[serde(default)]
    pub lookups: Option<Vec<LookupStub>>,
    #[serde(default = "yes")]
    pub transfer_connects: bool,
    pub expect: Expect,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Steps visited in this order (others may come between); `flow.step` or a step of the
    /// case's flow.
    #[serde(default)]
    pub visits: Vec<String>,
    #[serde(default)]
    pub not_visits: Vec<String>,
    /// The last step entered.
    #[serde(default)]
    pub ends_at: Option<String>,
    /// Prompts heard in this order (others may come between).
    #[serde(default)]
    pub heard: Vec<String>,
    /// The queue the caller reached; `none` for no queue.
    #[serde(default)]
    pub queue: Option<String>,
    #[serde(default)]
    pub transfer: Option<String>,
    /// Variables and their values (secret ones show as ****).
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// The survey score, or `none` for no score.
    #[serde(default)]
    pub survey: Option<String>,
    /// Prompts that must not be heard.
    #[serde(default)]
    pub not_heard: Vec<String>,
    #[serde(default)]
    pub language: Option<String>,
    /// true: the flow hung up; false: the caller did.
    #[serde(default)]
    pub hangup: Option<bool>,
    /// Card states afterwards: "customer/last4" → active|blocked.
    #[serde(default)]
    pub cards: BTreeMap<String, String>,
}

fn default_caller() -> String {
    "+905550000000".to_owned()
}
fn default_dialled() -> String {
    "1000".to_owned()
}
fn default_time() -> String {
    // A Monday mid-morning.
    "2026-11-23T10:00".to_owned()
}
fn yes() -> bool {
    true
}

/// One case's result.
#[derive(Debug, Clone)]
pub struct CaseResult {
    pub file: String,
    pub position: Position,
    pub name: String,
    pub failures: Vec<String>,
    pub outcome: Outcome,
}

impl CaseResult {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// What the runner needs besides the test files.
pub struct TestEnvironment {
    pub set: Arc<FlowSet>,
    pub customers: CustomerDirectory,
    pub default_language: String,
}

pub fn load_test_file(path: &Path) -> Result<TestFile, Diagnostics> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        Diagnostics(vec![Diagnostic::error(
            &file,
            Position::UNKNOWN,
            format!("cannot read: {e}"),
        )])
    })?;
    serde_saphyr::from_str(&text).map_err(|e| Diagnostics(vec![Diagnostic::from_yaml(&file, &e)]))
}

pub fn test_files(dir: &Path) -> Result<Vec<PathBuf>, Diagnostics> {
    FlowSet::files_in(dir)
}

/// Runs every case of a file.
pub fn run_file(path: &Path, env: &TestEnvironment) -> Result<Vec<CaseResult>, Diagnostics> {
    let tests = load_test_file(path)?;
    let file = path.display().to_string();
    Ok(tests
        .cases
        .iter()
        .map(|case| run_case(&file, &tests.flow, case, env))
        .collect())
}

pub fn run_case(
    file: &str,
    default_flow: &str,
    case: &Located<TestCase>,
    env: &TestEnvironment,
) -> CaseResult {
    let c = &case.value;
    let flow = c.flow.clone().unwrap_or_else(|| default_flow.to_owned());
    let mut result = CaseResult {
        file: file.to_owned(),
        position: case.position,
        name: c.name.clone(),
        failures: Vec::new(),
        outcome: Outcome::default(),
    };
    let time = match simulator::parse_time(&c.time, simulator::DEFAULT_TIME_ZONE) {
        Ok(t) => t,
        Err(e) => {
            result.failures.push(e);
            return result;
        }
    };
    let scenario = Scenario {
        flow: flow.clone(),
        caller: c.caller.clone(),
        dialled: c.dialled.clone(),
        language: c
            .language
            .clone()
            .unwrap_or_else(|| env.default_language.clone()),
        time,
        digits: c.digits.clone(),
        queue: c.queue.clone(),
        http: c.http.clone(),
        lookups: c.lookups.clone(),
        transfer_connects: c.transfer_connects,
    };
    let mut customers = env.customers.clone();
    let outcome = match simulator::simulate(
        Arc::clone(&env.set),
        &scenario,
        &mut customers,
        &mut ScriptedKeys,
        &mut |_| {},
    ) {
        Ok(o) => o,
        Err(e) => {
            result.failures.push(e.to_string());
            return result;
        }
    };
    result.failures = check(&c.expect, &outcome, &flow, &customers);
    result.outcome = outcome;
    result
}

fn qualify(name: &str, flow: &str) -> String {
    if name.contains('.') {
        name.to_owned()
    } else {
        format!("{flow}.{name}")
    }
}

/// Is `wanted` a subsequence of `seen`? Returns the first item not found in order.
fn first_missing<'a>(wanted: &'a [String], seen: &[String]) -> Option<&'a String> {
    let mut it = seen.iter();
    wanted.iter().find(|w| !it.any(|s| s == *w))
}

fn check(expect: &Expect, out: &Outcome, flow: &str, customers: &CustomerDirectory) -> Vec<String> {
    let mut failures = Vec::new();
    let visited: Vec<String> = out
        .visited
        .iter()
        .map(|(f, s)| format!("{f}.{s}"))
        .collect();
    let wanted: Vec<String> = expect.visits.iter().map(|v| qualify(v, flow)).collect();
    if let Some(missing) = first_missing(&wanted, &visited) {
        failures.push(format!(
            "expected to visit {missing} (in order); visited: {}",
            visited.join(" → ")
        ));
    }
    for v in &expect.not_visits {
        let v = qualify(v, flow);
        if visited.contains(&v) {
            failures.push(format!("expected not to visit {v}"));
        }
    }
    if let Some(end) = &expect.ends_at {
        let end = qualify(end, flow);
        if visited.last() != Some(&end) {
            failures.push(format!(
                "expected to end at {end}, ended at {}",
                visited.last().map(String::as_str).unwrap_or("nothing")
            ));
        }
    }
    if let Some(missing) = first_missing(&expect.heard, &out.heard) {
        failures.push(format!(
            "expected to hear {missing} (in order); heard: {}",
            out.heard.join(" ")
        ));
    }
    match expect.queue.as_deref() {
        Some("none") if !out.queues.is_empty() => {
            failures.push(format!(
                "expected no queue, reached {}",
                out.queues.join(", ")
            ));
        }
        Some(q) if q != "none" && !out.queues.iter().any(|x| x == q) => {
            let reached = if out.queues.is_empty() {
                "none".to_owned()
            } else {
                out.queues.join(", ")
            };
            failures.push(format!("expected queue {q}, reached {reached}"));
        }
        _ => {}
    }
    if let Some(t) = &expect.transfer
        && !out.transfers.contains(t)
    {
        failures.push(format!(
            "expected a transfer to {t}, got {:?}",
            out.transfers
        ));
    }
    for (k, v) in &expect.variables {
        match out.variables.get(k) {
            Some(actual) if actual == v => {}
            Some(actual) => failures.push(format!("variable {k}: expected `{v}`, got `{actual}`")),
            None => failures.push(format!("variable {k}: expected `{v}`, not set")),
        }
    }
    let tags: BTreeSet<String> = out.tags().into_iter().collect();
    for t in &expect.tags {
        if !tags.contains(t) {
            failures.push(format!("expected tag {t}, tags: {tags:?}"));
        }
    }
    if let Some(s) = &expect.survey {
        let actual = out
            .survey()
            .map(|n| n.to_string())
            .unwrap_or_else(|| "none".to_owned());
        if &actual != s {
            failures.push(format!("expected survey score {s}, got {actual}"));
        }
    }
    for p in &expect.not_heard {
        if out.heard.contains(p) {
            failures.push(format!("expected not to hear {p}"));
        }
    }
    if let Some(l) = &expect.language
        && &out.language != l
    {
        failures.push(format!("expected language {l}, got {}", out.language));
    }
    if let Some(h) = expect.hangup
        && h != out.flow_hung_up.is_some()
    {
        failures.push(if h {
            "expected the flow to hang up, but the caller did".to_owned()
        } else {
            format!(
                "expected the caller to hang up, but the flow did ({})",
                out.flow_hung_up.as_deref().unwrap_or("")
            )
        });
    }
    for (key, status) in &expect.cards {
        let Some((number, last4)) = key.split_once('/') else {
            failures.push(format!("card key `{key}` must be customer/last4"));
            continue;
        };
        let actual = customers
            .customer(number)
            .and_then(|c| c.cards.iter().find(|k| k.last4 == last4))
            .map(|k| format!("{:?}", k.status).to_lowercase());
        if actual.as_deref() != Some(status.as_str()) {
            failures.push(format!(
                "card {key}: expected {status}, got {}",
                actual.as_deref().unwrap_or("no such card")
            ));
        }
    }
    failures
}

/// How much of the flows the cases went through.
#[derive(Debug, Clone, Default)]
pub struct Coverage {
    pub steps: (usize, usize),
    pub transitions: (usize, usize),
    /// `flow.step` and `flow.step → flow.step` never taken.
    pub missed: Vec<String>,
}

/// Steps and transitions (step → step it can lead to) that the cases went through.
pub fn coverage(set: &FlowSet, results: &[CaseResult]) -> Coverage {
    let mut seen_steps: BTreeSet<(String, String)> = BTreeSet::new();
    let mut seen_moves: BTreeSet<((String, String), (String, String))> = BTreeSet::new();
    for r in results {
        seen_steps.extend(r.outcome.visited.iter().cloned());
        for pair in r.outcome.visited.windows(2) {
            seen_moves.insert((pair[0].clone(), pair[1].clone()));
        }
    }
    let mut cov = Coverage::default();
    for flow in set.flows() {
        for (name, step) in flow.def.steps.iter() {
            let here = (flow.name.clone(), name.value.clone());
            cov.steps.1 += 1;
            if seen_steps.contains(&here) {
                cov.steps.0 += 1;
            } else {
                cov.missed.push(format!("{}.{}", flow.name, name.value));
            }
            let mut targets: BTreeSet<(String, String)> = step
                .value
                .edges()
                .into_iter()
                .map(|(_, t)| (flow.name.clone(), t.value.clone()))
                .collect();
            if let crate::model::Step::Goto(g) = &step.value
                && let Some(target) = set.flow(&g.flow)
            {
                let s = g
                    .step
                    .as_ref()
                    .map(|s| s.value.clone())
                    .unwrap_or_else(|| target.def.start.value.clone());
                targets.insert((target.name.clone(), s));
            }
            for target in targets {
                cov.transitions.1 += 1;
                if seen_moves.contains(&(here.clone(), target.clone())) {
                    cov.transitions.0 += 1;
                } else {
                    cov.missed
                        .push(format!("{}.{} → {}.{}", here.0, here.1, target.0, target.1));
                }
            }
        }
    }
    cov
}
