//! The flow file format: typed serde structs (with JSON Schema) for everything an operator
//! can write in ivr-flows/*.yaml. Values that later checks point at are `Located`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use schemars::{JsonSchema, SchemaGenerator, json_schema};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::located::Located;

/// A reference to a step of the same flow, by name.
pub type StepRef = Located<String>;

/// One flow file: named steps and the step calls start at.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "santral IVR flow")]
pub struct FlowFile {
    /// What this flow is for (shown by the tools only).
    #[serde(default)]
    pub description: Option<String>,
    /// The step a call entering this flow runs first.
    pub start: StepRef,
    /// The steps, by name. Each step is a map with exactly one key: its kind.
    pub steps: StepMap,
}

/// Steps in the order they were written (for readable graphs and reports).
#[derive(Debug, Clone, Default)]
pub struct StepMap(pub Vec<(Located<String>, Located<Step>)>);

impl StepMap {
    pub fn get(&self, name: &str) -> Option<&Located<Step>> {
        self.0
            .iter()
            .find(|(key, _)| key.value == name)
            .map(|(_, step)| step)
    }
    pub fn iter(&self) -> impl Iterator<Item = (&Located<String>, &Located<Step>)> {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl<'de> Deserialize<'de> for StepMap {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StepMapVisitor;
        impl<'de> Visitor<'de> for StepMapVisitor {
            type Value = StepMap;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of step name to step")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StepMap, A::Error> {
                let mut steps: Vec<(Located<String>, Located<Step>)> = Vec::new();
                while let Some(key) = map.next_key::<Located<String>>()? {
                    let step = map.next_value::<Located<Step>>()?;
                    if steps.iter().any(|(k, _)| k.value == key.value) {
                        return Err(de::Error::custom(format!("duplicate step `{}`", key.value)));
                    }
                    steps.push((key, step));
                }
                Ok(StepMap(steps))
            }
        }
        deserializer.deserialize_map(StepMapVisitor)
    }
}

impl JsonSchema for StepMap {
    fn schema_name() -> Cow<'static, str> {
        "Steps".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> schemars::Schema {
        let step = generator.subschema_for::<Step>();
        json_schema!({
            "type": "object",
            "description": "Steps by name (letters, digits, `_` and `-`).",
            "additionalProperties": step,
        })
    }
}

/// Menu choices: a key (`0`–`9`, `*`, `#`) → the step it leads to, in written order.
#[derive(Debug, Clone, Default)]
pub struct ChoiceMap(pub Vec<(Located<String>, StepRef)>);

impl<'de> Deserialize<'de> for ChoiceMap {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ChoiceVisitor;
        impl<'de> Visitor<'de> for ChoiceVisitor {
            type Value = ChoiceMap;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of key to step name")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ChoiceMap, A::Error> {
                let mut choices = Vec::new();
                while let Some(key) = map.next_key::<Located<ScalarText>>()? {
                    let target = map.next_value::<StepRef>()?;
                    choices.push((Located::new(key.value.0, key.position), target));
                }
                Ok(ChoiceMap(choices))
            }
        }
        deserializer.deserialize_map(ChoiceVisitor)
    }
}

impl JsonSchema for ChoiceMap {
    fn schema_name() -> Cow<'static, str> {
        "Choices".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> schemars::Schema {
        json_schema!({
            "type": "object",
            "description": "Key pressed (0-9, *, #) → step name.",
            "propertyNames": { "pattern": "^[0-9*#]$" },
            "additionalProperties": { "type": "string" },
        })
    }
}

/// What a step does. Written as `kind: { fields }`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// Play prompts and spoken values, then go on.
    Play(PlayStep),
    /// Play a menu and branch on one key, with retries.
    Menu(MenuStep),
    /// Collect several digits (customer number, PIN) into a variable.
    Gather(GatherStep),
    /// Set variables.
    Set(SetStep),
    /// Go to the first case whose condition holds.
    Branch(BranchStep),
    /// Business hours and holidays in a time zone: open or closed.
    Hours(HoursStep),
    /// Verify or fetch caller data, or change it (block a card), in the customer data.
    Lookup(LookupStep),
    /// Call a CRM webhook.
    Http(HttpStep),
    /// Hand the caller to the ACD.
    Queue(QueueStep),
    /// Transfer the call to an agent or extension.
    Transfer(TransferStep),
    /// Record the caller (voicemail), with a beep, a maximum length and a stop key.
    Record(RecordStep),
    /// Change the call's language (prompts are then played from prompts/<language>/).
    Language(LanguageStep),
    /// Ask for a satisfaction score 1–5 and store it on the call record.
    Survey(SurveyStep),
    /// Put labels on the call record.
    Tag(TagStep),
    /// Continue in another flow.
    Goto(GotoStep),
    /// End the call.
    Hangup(HangupStep),
}

impl Step {
    pub fn kind(&self) -> &'static str {
        match self {
            Step::Play(_) => "play",
            Step::Menu(_) => "menu",
            Step::Gather(_) => "gather",
            Step::Set(_) => "set",
            Step::Branch(_) => "branch",
            Step::Hours(_) => "hours",
            Step::Lookup(_) => "lookup",
            Step::Http(_) => "http",
            Step::Queue(_) => "queue",
            Step::Transfer(_) => "transfer",
            Step::Record(_) => "record",
            Step::Language(_) => "language",
            Step::Survey(_) => "survey",
            Step::Tag(_) => "tag",
            Step::Goto(_) => "goto",
            Step::Hangup(_) => "hangup",
        }
    }

    /// Every step this one can lead to, with a label saying when.
    pub fn edges(&self) -> Vec<(&'static str, &StepRef)> {
        fn opt<'a>(
            label: &'static str,
            r: &'a Option<StepRef>,
            out: &mut Vec<(&'static str, &'a StepRef)>,
        ) {
            if let Some(r) = r {
                out.push((label, r));
            }
        }
        let mut out: Vec<(&'static str, &StepRef)> = Vec::new();
        match self {
            Step::Play(s) => out.push(("next", &s.next)),
            Step::Menu(s) => {
                // Choice labels are the keys; callers use `choice_edges` for those.
                for (_, target) in &s.choices.0 {
                    out.push(("choice", target));
                }
                out.push(("on_failure", &s.on_failure));
            }
            Step::Gather(s) => {
                out.push(("next", &s.next));
                out.push(("on_failure", &s.on_failure));
            }
            Step::Set(s) => out.push(("next", &s.next)),
            Step::Branch(s) => {
                for case in &s.cases {
                    out.push(("case", &case.next));
                }
                out.push(("default", &s.default));
            }
            Step::Hours(s) => {
                out.push(("on_open", &s.on_open));
                out.push(("on_closed", &s.on_closed));
            }
            Step::Lookup(s) => {
                out.push(("on_found", &s.on_found));
                out.push(("on_not_found", &s.on_not_found));
                opt("on_error", &s.on_error, &mut out);
            }
            Step::Http(s) => {
                out.push(("next", &s.next));
                out.push(("on_error", &s.on_error));
            }
            Step::Queue(s) => {
                out.push(("on_timeout", &s.on_timeout));
                opt("on_exit", &s.on_exit, &mut out);
                opt("on_unavailable", &s.on_unavailable, &mut out);
                opt("after_call", &s.after_call, &mut out);
            }
            Step::Transfer(s) => out.push(("on_failure", &s.on_failure)),
            Step::Record(s) => out.push(("next", &s.next)),
            Step::Language(s) => out.push(("next", &s.next)),
            Step::Survey(s) => out.push(("next", &s.next)),
            Step::Tag(s) => out.push(("next", &s.next)),
            Step::Goto(_) | Step::Hangup(_) => {}
        }
        out
    }

    /// True for steps that stop and wait for the caller (or the outside world driven by the
    /// caller's call), so a loop through one of them cannot spin by itself.
    pub fn waits_for_caller(&self) -> bool {
        matches!(
            self,
            Step::Menu(_)
                | Step::Gather(_)
                | Step::Queue(_)
                | Step::Transfer(_)
                | Step::Record(_)
                | Step::Survey(_)
                | Step::Hangup(_)
        )
    }

    /// The prompts and spoken values this step can play.
    pub fn playlists(&self) -> Vec<&[Located<PlayItem>]> {
        match self {
            Step::Play(s) => vec![&s.prompts],
            Step::Menu(s) => {
                let mut v: Vec<&[Located<PlayItem>]> = vec![&s.prompts, &s.invalid];
                if let Some(n) = &s.no_input {
                    v.push(n);
                }
                v
            }
            Step::Gather(s) => vec![&s.prompts, &s.invalid],
            Step::Transfer(s) => vec![&s.prompts],
            Step::Record(s) => vec![&s.prompts],
            Step::Survey(s) => vec![&s.prompts, &s.thanks, &s.invalid],
            Step::Queue(s) => vec![&s.prompts],
            _ => vec![],
        }
    }
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlayStep {
    /// Prompt names and spoken values, played in order.
    pub prompts: Vec<Located<PlayItem>>,
    /// May a key press cut the prompts short? (The key is then kept for the next step.)
    #[serde(default)]
    pub barge_in: bool,
    pub next: StepRef,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MenuStep {
    /// The menu prompt (a key press interrupts it).
    pub prompts: Vec<Located<PlayItem>>,
    pub choices: ChoiceMap,
    /// How long to wait for a key after the prompt ends.
    #[serde(default = "FlowDuration::five_seconds")]
    pub timeout: FlowDuration,
    /// Failed attempts (invalid key or no key) before `on_failure`.
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// Played after an invalid key, before the menu again.
    #[serde(default)]
    pub invalid: Vec<Located<PlayItem>>,
    /// Played when no key came in time; `invalid` when omitted.
    #[serde(default)]
    pub no_input: Option<Vec<Located<PlayItem>>>,
    pub on_failure: StepRef,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GatherStep {
    pub prompts: Vec<Located<PlayItem>>,
    #[serde(default = "one")]
    pub min_digits: u32,
    pub max_digits: u32,
    /// Key that ends the input early (not stored); none when omitted.
    #[serde(default)]
    pub terminator: Option<Located<ScalarText>>,
    #[serde(default = "FlowDuration::five_seconds")]
    pub first_digit_timeout: FlowDuration,
    #[serde(default = "FlowDuration::three_seconds")]
    pub inter_digit_timeout: FlowDuration,
    /// A regular expression the whole input must match.
    #[serde(default)]
    pub pattern: Option<Located<String>>,
    /// The input must pass the Luhn check (card numbers).
    #[serde(default)]
    pub luhn: bool,
    /// Never logged; masked in call records and HTTP logs.
    #[serde(default)]
    pub secret: bool,
    /// The variable that receives the digits.
    pub store: Located<String>,
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    #[serde(default)]
    pub invalid: Vec<Located<PlayItem>>,
    pub next: StepRef,
    pub on_failure: StepRef,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetStep {
    /// Variable → value; values may use `{variable}` templates.
    #[serde(default)]
    pub values: BTreeMap<String, Located<String>>,
    /// Variables to add one to (unset counts as 0).
    #[serde(default)]
    pub increment: Vec<Located<String>>,
    pub next: StepRef,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BranchStep {
    pub cases: Vec<Case>,
    pub default: StepRef,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub when: Condition,
    pub next: StepRef,
}

/// A test on one variable (every comparison given must hold), or a combination of tests.
/// Built-in variables: `call.caller`, `call.dialled`, `call.language`, `call.time` (HH:MM),
/// `call.weekday` (mon…sun), `call.date` (YYYY-MM-DD), in the flow's time zone or UTC.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    #[serde(default)]
    pub var: Option<Located<String>>,
    #[serde(default)]
    pub eq: Option<ScalarText>,
    #[serde(default)]
    pub ne: Option<ScalarText>,
    /// Numbers compare as numbers, anything else as text.
    #[serde(default)]
    pub lt: Option<ScalarText>,
    #[serde(default)]
    pub le: Option<ScalarText>,
    #[serde(default)]
    pub gt: Option<ScalarText>,
    #[serde(default)]
    pub ge: Option<ScalarText>,
    #[serde(default, rename = "in")]
    pub one_of: Option<Vec<ScalarText>>,
    #[serde(default)]
    pub not_in: Option<Vec<ScalarText>>,
    /// A regular expression (searched, use ^…$ to anchor).
    #[serde(default)]
    pub matches: Option<Located<String>>,
    /// `true`: the variable has a value; `false`: it has none.
    #[serde(default)]
    pub is_set: Option<bool>,
    #[serde(default)]
    pub all: Vec<Condition>,
    #[serde(default)]
    pub any: Vec<Condition>,
    #[serde(default)]
    pub not: Option<Box<Condition>>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HoursStep {
    /// IANA time zone, e.g. Europe/Istanbul.
    pub timezone: Located<String>,
    /// Weekly opening hours; open when any entry matches.
    pub weekly: Vec<OpeningHours>,
    /// Holidays: closed all day on these dates (YYYY-MM-DD), whatever `weekly` says.
    #[serde(default)]
    pub closed: Vec<Holiday>,
    pub on_open: StepRef,
    pub on_closed: StepRef,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OpeningHours {
    pub days: Vec<Weekday>,
    /// HH:MM, inclusive.
    pub from: Located<String>,
    /// HH:MM, exclusive; 24:00 for end of day.
    pub to: Located<String>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Holiday {
    pub date: Located<String>,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Weekday {
    pub fn name(self) -> &'static str {
        match self {
            Weekday::Mon => "mon",
            Weekday::Tue => "tue",
            Weekday::Wed => "wed",
            Weekday::Thu => "thu",
            Weekday::Fri => "fri",
            Weekday::Sat => "sat",
            Weekday::Sun => "sun",
        }
    }
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LookupStep {
    pub action: LookupAction,
    /// Customer number (a template such as "{customer_no}"); the caller's number for
    /// `fetch_by_caller`.
    #[serde(default)]
    pub customer: Option<Located<String>>,
    /// PIN to verify (template), for `verify`.
    #[serde(default)]
    pub pin: Option<Located<String>>,
    /// Last four digits of the card, for `block_card`; the first active card when omitted.
    #[serde(default)]
    pub card: Option<Located<String>>,
    /// Prefix of the variables that receive the answer (`customer.name`, …).
    #[serde(default = "default_lookup_store")]
    pub store: String,
    pub on_found: StepRef,
    pub on_not_found: StepRef,
    /// When the data cannot be reached; `on_not_found` when omitted.
    #[serde(default)]
    pub on_error: Option<StepRef>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LookupAction {
    /// Customer number and PIN match.
    Verify,
    /// The customer with this number exists; fetch its fields.
    Fetch,
    /// The customer whose phone number is the caller's.
    FetchByCaller,
    /// Mark a card blocked (persisted by the server).
    BlockCard,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpStep {
    #[serde(default)]
    pub method: HttpMethod,
    /// URL template; secret variables in it are masked in logs.
    pub url: Located<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// JSON body; strings in it are templates.
    #[serde(default)]
    pub body: Option<serde_json::Value>,
    #[serde(default = "FlowDuration::five_seconds")]
    pub timeout: FlowDuration,
    /// Variable → JSON pointer into the response body (e.g. /customer/name).
    #[serde(default)]
    pub extract: BTreeMap<String, Located<String>>,
    pub next: StepRef,
    /// Timeout, connection failure or a status outside 200–299.
    pub on_error: StepRef,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    #[default]
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueStep {
    /// Queue name (from the configuration); or give `skills`.
    #[serde(default)]
    pub queue: Option<Located<String>>,
    /// Required skills {name: minimum level} when no queue is named, or in addition.
    #[serde(default)]
    pub skills: BTreeMap<String, u8>,
    /// Any available agent (the operator): no queue and no skills.
    #[serde(default)]
    pub any_agent: bool,
    /// Language agents must speak: the call's language when omitted.
    #[serde(default)]
    pub language: Option<Located<String>>,
    /// Higher is served first.
    #[serde(default)]
    pub priority: i32,
    /// Played once before the caller waits.
    #[serde(default)]
    pub prompts: Vec<Located<PlayItem>>,
    #[serde(default)]
    pub announce: Announce,
    /// Longest wait before `on_timeout`.
    #[serde(default)]
    pub max_wait: Option<FlowDuration>,
    /// A key that lets the caller leave the queue (to `on_exit`).
    #[serde(default)]
    pub exit_digit: Option<Located<ScalarText>>,
    pub on_timeout: StepRef,
    #[serde(default)]
    pub on_exit: Option<StepRef>,
    /// No agent can serve this queue; `on_timeout` when omitted.
    #[serde(default)]
    pub on_unavailable: Option<StepRef>,
    /// Where the caller goes when the agent ends the call (e.g. a survey); hang up when omitted.
    #[serde(default)]
    pub after_call: Option<StepRef>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Announce {
    #[serde(default)]
    pub position: bool,
    #[serde(default)]
    pub wait_time: bool,
    #[serde(default = "FlowDuration::thirty_seconds")]
    pub every: FlowDuration,
}

impl Default for Announce {
    fn default() -> Self {
        Announce {
            position: false,
            wait_time: false,
            every: FlowDuration::thirty_seconds(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferStep {
    /// Agent id or extension (template).
    pub to: Located<String>,
    #[serde(default)]
    pub prompts: Vec<Located<PlayItem>>,
    /// Ringing time before `on_failure`.
    #[serde(default = "FlowDuration::thirty_seconds")]
    pub timeout: FlowDuration,
    pub on_failure: StepRef,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordStep {
    #[serde(default)]
    pub prompts: Vec<Located<PlayItem>>,
    #[serde(default = "yes")]
    pub beep: bool,
    #[serde(default = "FlowDuration::one_minute")]
    pub max_length: FlowDuration,
    /// Key that ends the recording.
    #[serde(default = "hash_key")]
    pub stop_digit: Located<ScalarText>,
    #[serde(default)]
    pub purpose: RecordPurpose,
    /// Variable that receives the recording's id.
    #[serde(default = "default_recording_var")]
    pub store: String,
    pub next: StepRef,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RecordPurpose {
    #[default]
    Voicemail,
    Recording,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LanguageStep {
    /// Language code (one of the configured prompt languages).
    pub set: Located<String>,
    pub next: StepRef,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SurveyStep {
    /// The question ("press 1 to 5").
    pub prompts: Vec<Located<PlayItem>>,
    #[serde(default)]
    pub thanks: Vec<Located<PlayItem>>,
    #[serde(default)]
    pub invalid: Vec<Located<PlayItem>>,
    #[serde(default = "FlowDuration::five_seconds")]
    pub timeout: FlowDuration,
    #[serde(default = "two")]
    pub attempts: u32,
    pub next: StepRef,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TagStep {
    pub labels: Vec<String>,
    pub next: StepRef,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GotoStep {
    /// Another flow's name (its file name without .yaml).
    pub flow: Located<String>,
    /// A step of that flow; its start step when omitted.
    #[serde(default)]
    pub step: Option<Located<String>>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HangupStep {
    /// Why (stored on the call record).
    #[serde(default)]
    pub reason: Option<String>,
}

/// One thing to play: a prompt by name, or a value spoken from recorded fragments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlayItem {
    Prompt(String),
    Say(SayKind, String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SayKind {
    /// A whole number: "1234" → one thousand two hundred thirty four.
    Number,
    /// Digit by digit: "4821" → four eight two one.
    Digits,
    /// Lira and kuruş: "12.50".
    Amount,
    /// Seconds, spoken as hours, minutes and seconds.
    Duration,
}

impl SayKind {
    pub const ALL: [SayKind; 4] = [
        SayKind::Number,
        SayKind::Digits,
        SayKind::Amount,
        SayKind::Duration,
    ];
    pub fn key(self) -> &'static str {
        match self {
            SayKind::Number => "say_number",
            SayKind::Digits => "say_digits",
            SayKind::Amount => "say_amount",
            SayKind::Duration => "say_duration",
        }
    }
}

impl<'de> Deserialize<'de> for PlayItem {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ItemVisitor;
        impl<'de> Visitor<'de> for ItemVisitor {
            type Value = PlayItem;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a prompt name, or {say_number|say_digits|say_amount|say_duration: value}",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PlayItem, E> {
                Ok(PlayItem::Prompt(v.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PlayItem, A::Error> {
                let Some(key) = map.next_key::<String>()? else {
                    return Err(de::Error::custom("empty map: expected one say_… key"));
                };
                let value = map.next_value::<ScalarText>()?.0;
                if map.next_key::<String>()?.is_some() {
                    return Err(de::Error::custom("a play item has exactly one key"));
                }
                let kind = SayKind::ALL.into_iter().find(|k| k.key() == key).ok_or_else(|| {
                    de::Error::custom(format!(
                        "unknown play item `{key}`: expected say_number, say_digits, say_amount or say_duration"
                    ))
                })?;
                Ok(PlayItem::Say(kind, value))
            }
        }
        deserializer.deserialize_any(ItemVisitor)
    }
}

impl JsonSchema for PlayItem {
    fn schema_name() -> Cow<'static, str> {
        "PlayItem".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> schemars::Schema {
        json_schema!({
            "description": "A prompt name (a file prompts/<language>/<name>.wav), or a value to speak.",
            "oneOf": [
                { "type": "string" },
                { "type": "object", "properties": { "say_number": { "type": ["string", "integer"] } }, "required": ["say_number"], "additionalProperties": false },
                { "type": "object", "properties": { "say_digits": { "type": ["string", "integer"] } }, "required": ["say_digits"], "additionalProperties": false },
                { "type": "object", "properties": { "say_amount": { "type": ["string", "number"] } }, "required": ["say_amount"], "additionalProperties": false },
                { "type": "object", "properties": { "say_duration": { "type": ["string", "integer"] } }, "required": ["say_duration"], "additionalProperties": false },
            ]
        })
    }
}

/// A scalar written as text, a number or a boolean, kept as its text (`3`, `"3"` → "3").
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct ScalarText(pub String);

impl fmt::Display for ScalarText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ScalarText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl Visitor<'_> for ScalarVisitor {
            type Value = ScalarText;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a text, number or boolean")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_string()))
            }
        }
        deserializer.deserialize_any(ScalarVisitor)
    }
}

impl JsonSchema for ScalarText {
    fn schema_name() -> Cow<'static, str> {
        "Scalar".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> schemars::Schema {
        json_schema!({ "type": ["string", "number", "boolean"] })
    }
}

/// The longest duration a flow may name (timeouts, maximum waits, recordings).
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// A duration written as `500ms`, `5s`, `2m`, `1h` (or a bare number of seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FlowDuration(pub Duration);

impl FlowDuration {
    pub fn five_seconds() -> Self {
        FlowDuration(Duration::from_secs(5))
    }
    pub fn three_seconds() -> Self {
        FlowDuration(Duration::from_secs(3))
    }
    pub fn thirty_seconds() -> Self {
        FlowDuration(Duration::from_secs(30))
    }
    pub fn one_minute() -> Self {
        FlowDuration(Duration::from_secs(60))
    }

    pub fn parse(text: &str) -> Result<FlowDuration, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let n: u64 = number
            .parse()
            .map_err(|_| format!("invalid duration `{text}`: expected e.g. 500ms, 5s, 2m, 1h"))?;
        let d = match unit.trim() {
            "ms" => Duration::from_millis(n),
            "" | "s" => Duration::from_secs(n),
            "m" | "min" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            other => {
                return Err(format!(
                    "invalid duration unit `{other}` in `{text}`: use ms, s, m or h"
                ));
            }
        };
        if d > MAX_DURATION {
            return Err(format!("duration `{text}` is longer than a day"));
        }
        Ok(FlowDuration(d))
    }
}

impl fmt::Display for FlowDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if !ms.is_multiple_of(1000) {
            write!(f, "{ms}ms")
        } else {
            write!(f, "{}s", ms / 1000)
        }
    }
}

impl Serialize for FlowDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for FlowDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = ScalarText::deserialize(deserializer)?;
        FlowDuration::parse(&text.0).map_err(de::Error::custom)
    }
}

impl JsonSchema for FlowDuration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> schemars::Schema {
        json_schema!({
            "description": "A duration: 500ms, 5s, 2m, 1h, or a number of seconds.",
            "type": ["string", "integer"],
            "pattern": "^[0-9]+(ms|s|m|min|h)?$",
        })
    }
}

fn default_attempts() -> u32 {
    3
}
fn one() -> u32 {
    1
}
fn two() -> u32 {
    2
}
fn yes() -> bool {
    true
}
fn hash_key() -> Located<ScalarText> {
    Located::synthetic(ScalarText("#".into()))
}
fn default_lookup_store() -> String {
    "customer".into()
}
fn default_recording_var() -> String {
    "recording".into()
}

/// The JSON Schema of the flow format, as `santral flow schema` prints it.
pub fn flow_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(FlowFile);
    serde_json::to_value(schema).unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "start: hello
steps:
  hello:
    play:
      prompts: [welcome, {say_digits: \"{card}\"}]
      next: bye
  menu:
    menu:
      prompts: [main_menu]
      choices: { 1: bye, \"2\": hello }
      timeout: 5s
      on_failure: bye
  bye:
    hangup: {}
";

    #[test]
    fn parses_steps_with_positions() {
        let flow: FlowFile = serde_saphyr::from_str(SAMPLE).expect("sample parses");
        assert_eq!(flow.start.value, "hello");
        assert_eq!(flow.start.position, crate::Position::new(1, 8));
        let names: Vec<&str> = flow.steps.iter().map(|(k, _)| k.value.as_str()).collect();
        assert_eq!(names, ["hello", "menu", "bye"]);
        let (key, step) = &flow.steps.0[0];
        assert_eq!(key.position.line, 3);
        let Step::Play(play) = &step.value else {
            panic!("play expected")
        };
        assert_eq!(play.next.position, crate::Position::new(6, 13));
        assert_eq!(
            play.prompts[1].value,
            PlayItem::Say(SayKind::Digits, "{card}".into())
        );
        assert_eq!(play.prompts[1].position.line, 5);
        let Step::Menu(menu) = &flow.steps.0[1].1.value else {
            panic!("menu expected")
        };
        assert_eq!(menu.choices.0[0].0.value, "1");
        assert_eq!(menu.choices.0[0].0.position, crate::Position::new(10, 18));
        assert_eq!(menu.timeout.0, Duration::from_secs(5));
        assert_eq!(menu.attempts, 3);
    }

    #[test]
    fn unknown_step_kind_is_an_error_with_a_location() {
        let text = "start: a\nsteps:\n  a:\n    ploy: {}\n";
        let err = serde_saphyr::from_str::<FlowFile>(text).expect_err("typo must fail");
        let loc = err.location().expect("location");
        assert_eq!(loc.line(), 4);
    }

    #[test]
    fn durations_parse_and_reject_bad_units() {
        assert_eq!(
            FlowDuration::parse("500ms").map(|d| d.0),
            Ok(Duration::from_millis(500))
        );
        assert_eq!(
            FlowDuration::parse("2m").map(|d| d.0),
            Ok(Duration::from_secs(120))
        );
        assert_eq!(
            FlowDuration::parse("7").map(|d| d.0),
            Ok(Duration::from_secs(7))
        );
        assert!(FlowDuration::parse("5 parsecs").is_err());
        assert!(FlowDuration::parse("").is_err());
        assert!(FlowDuration::parse("99999999999h").is_err());
        assert!(FlowDuration::parse("25h").is_err());
    }

    #[test]
    fn schema_names_every_step_kind() {
        let schema = flow_schema().to_string();
        for kind in [
            "play", "menu", "gather", "set", "branch", "hours", "lookup", "http", "queue",
            "transfer", "record", "language", "survey", "tag", "goto", "hangup",
        ] {
            assert!(
                schema.contains(&format!("\"{kind}\"")),
                "{kind} missing from schema"
            );
        }
    }
}
