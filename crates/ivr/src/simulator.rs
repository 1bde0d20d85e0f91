//! Running a flow with no network: a scripted (or interactive) caller and stand-ins for the
//! ACD, the CRM and the customer data, in virtual time. `santral flow simulate` and
//! `santral flow test` both use it.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Zoned;
use serde::Deserialize;

use crate::customers::CustomerDirectory;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::flowset::FlowSet;
use crate::interpreter::{
    Call, CallInfo, Command, Event, HttpResponse, LookupOutcome, PromptRef, QueueOutcome,
    RecordField, StartError,
};
use crate::located::Position;

/// The time zone plain times (`--time 2026-11-23T21:00`) are read in.
pub const DEFAULT_TIME_ZONE: &str = "Europe/Istanbul";
/// Bound on events in one simulated call.
const MAX_EVENTS: usize = 10_000;
/// How long the simulator pretends each prompt file plays.
const PROMPT_TIME: Duration = Duration::from_millis(800);

/// Prompt texts by name and language (prompts/prompts.yaml), to show what a caller hears.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct PromptTexts(pub BTreeMap<String, BTreeMap<String, String>>);

impl PromptTexts {
    pub fn load(path: &Path) -> Result<PromptTexts, Diagnostics> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            Diagnostics(vec![Diagnostic::error(
                &file,
                Position::UNKNOWN,
                format!("cannot read: {e}"),
            )])
        })?;
        serde_saphyr::from_str(&text)
            .map_err(|e| Diagnostics(vec![Diagnostic::from_yaml(&file, &e)]))
    }

    pub fn text(&self, prompt: &PromptRef) -> Option<&str> {
        self.0
            .get(&prompt.name)
            .and_then(|t| t.get(&prompt.language))
            .map(String::as_str)
    }

    /// What a list of prompts says, joined.
    pub fn say(&self, prompts: &[PromptRef]) -> String {
        prompts
            .iter()
            .map(|p| {
                self.text(p)
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("<{}>", p.name))
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Reads `2026-11-23T21:00` (in `zone`), `2026-11-23T18:00:00Z`, or a full zoned time.
pub fn parse_time(text: &str, zone: &str) -> Result<Zoned, String> {
    let text = text.trim();
    if let Ok(z) = text.parse::<Zoned>() {
        return Ok(z);
    }
    let tz = jiff::tz::TimeZone::get(zone).map_err(|_| format!("unknown time zone `{zone}`"))?;
    if let Ok(ts) = text.parse::<jiff::Timestamp>() {
        return Ok(ts.to_zoned(tz));
    }
    let civil = text
        .parse::<jiff::civil::DateTime>()
        .map_err(|_| format!("invalid time `{text}`: expected e.g. 2026-11-23T21:00"))?;
    civil
        .to_zoned(tz)
        .map_err(|e| format!("invalid time `{text}`: {e}"))
}

/// What the stand-in ACD does with each `queue` step, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueStub {
    /// An agent answers; the caller stays until the end of the simulation.
    Answered,
    /// An agent answers, then ends the call with the caller still there (post-call survey).
    AgentFinished,
    /// No agent comes: the caller keeps waiting (and may press the exit key).
    Waiting,
    Timeout,
    Unavailable,
    Left,
}

/// A stubbed CRM answer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpStub {
    #[serde(default = "ok_status")]
    pub status: u16,
    #[serde(default)]
    pub body: serde_json::Value,
    /// A transport failure instead of a response.
    #[serde(default)]
    pub error: Option<String>,
}

fn ok_status() -> u16 {
    200
}

/// A stubbed customer-data answer (instead of the customer directory).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LookupStub {
    Found(BTreeMap<String, String>),
    NotFound,
    Error(String),
}

/// Where the caller's keys come from.
pub trait Keypad {
    /// The next keys to press, called whenever the call wants keys and none are left.
    /// `_` means "stay silent until the timer fires"; `None` means the caller hangs up.
    fn more_keys(&mut self) -> Option<String>;
}

/// Keys given up front; when they run out the caller stays silent (timeouts follow).
pub struct ScriptedKeys;

impl Keypad for ScriptedKeys {
    fn more_keys(&mut self) -> Option<String> {
        Some("_".to_owned())
    }
}

/// One simulated call's inputs.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub flow: String,
    pub caller: String,
    pub dialled: String,
    pub language: String,
    pub time: Zoned,
    pub digits: String,
    pub queue: Vec<QueueStub>,
    pub http: Vec<HttpStub>,
    pub lookups: Option<Vec<LookupStub>>,
    pub transfer_connects: bool,
}

/// One line of what happened, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    Step {
        at: Duration,
        flow: String,
        step: String,
        kind: &'static str,
    },
    Heard {
        at: Duration,
        prompts: Vec<PromptRef>,
    },
    Pressed {
        at: Duration,
        key: char,
    },
    Silence {
        at: Duration,
    },
    Host {
        at: Duration,
        what: String,
    },
}

/// Everything a flow test can check about a finished simulation.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub visited: Vec<(String, String)>,
    pub heard: Vec<String>,
    pub queues: Vec<String>,
    pub transfers: Vec<String>,
    pub variables: BTreeMap<String, String>,
    pub record: Vec<RecordField>,
    pub flow_hung_up: Option<String>,
    pub language: String,
    pub entries: Vec<Entry>,
    /// The call ended (rather than the simulator running out of its event budget).
    pub finished: bool,
}

impl Outcome {
    pub fn tags(&self) -> Vec<String> {
        self.record
            .iter()
            .filter_map(|r| match r {
                RecordField::Tag(t) => Some(t.clone()),
                _ => None,
            })
            .collect()
    }
    pub fn survey(&self) -> Option<u8> {
        self.record.iter().rev().find_map(|r| match r {
            RecordField::SurveyScore(s) => Some(*s),
            _ => None,
        })
    }
}

enum Reaction {
    Event(Event),
    /// Answered, then later the agent finishing.
    Then(Event, Event),
}

/// Runs one call to its end. `observe` sees every entry as it happens (interactive mode).
pub fn simulate(
    set: Arc<FlowSet>,
    scenario: &Scenario,
    customers: &mut CustomerDirectory,
    keypad: &mut dyn Keypad,
    observe: &mut dyn FnMut(&Entry),
) -> Result<Outcome, StartError> {
    let info = CallInfo {
        call_id: "simulated".to_owned(),
        caller: scenario.caller.clone(),
        dialled: scenario.dialled.clone(),
        language: scenario.language.clone(),
        answered_at: scenario.time.clone(),
    };
    let mut call = Call::new(set, &scenario.flow, info)?;
    let start = Instant::now();
    let mut now = start;
    let mut out = Outcome::default();
    let mut keys: VecDeque<char> = scenario
        .digits
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let mut queue_stubs: VecDeque<QueueStub> = scenario.queue.iter().copied().collect();
    let mut http_stubs: VecDeque<HttpStub> = scenario.http.iter().cloned().collect();
    let mut lookup_stubs: Option<VecDeque<LookupStub>> = scenario
        .lookups
        .as_ref()
        .map(|l| l.iter().cloned().collect());
    let mut reactions: VecDeque<Reaction> = VecDeque::new();
    let mut later: Option<Event> = None;
    let mut silent = false;
    let mut seen_steps = 0;
    let mut recordings = 0;

    let mut log = |entry: Entry, out: &mut Outcome| {
        observe(&entry);
        out.entries.push(entry);
    };

    call.handle(Event::Answered, now);
    for _ in 0..MAX_EVENTS {
        let at = now - start;
        // Report newly entered steps, then the commands they gave.
        while seen_steps < call.visited().len() {
            let (flow, step) = call.visited()[seen_steps].clone();
            let kind = call_step_kind(&call, &flow, &step);
            log(
                Entry::Step {
                    at,
                    flow,
                    step,
                    kind,
                },
                &mut out,
            );
            seen_steps += 1;
        }
        while let Some(command) = call.poll_command() {
            match command {
                Command::Play { prompts, .. } => {
                    out.heard.extend(prompts.iter().map(|p| p.name.clone()));
                    log(Entry::Heard { at, prompts }, &mut out);
                }
                Command::Enqueue(request) => {
                    let name = request
                        .queue
                        .clone()
                        .unwrap_or_else(|| format!("skills {:?}", request.skills));
                    out.queues.push(name.clone());
                    out.heard
                        .extend(request.prompts.iter().map(|p| p.name.clone()));
                    if !request.prompts.is_empty() {
                        log(
                            Entry::Heard {
                                at,
                                prompts: request.prompts.clone(),
                            },
                            &mut out,
                        );
                    }
                    log(
                        Entry::Host {
                            at,
                            what: format!(
                                "queued in {name} (language {}, priority {})",
                                request.language, request.priority
                            ),
                        },
                        &mut out,
                    );
                    let stub = queue_stubs.pop_front().unwrap_or(QueueStub::Answered);
                    let answered = Event::QueueResult(QueueOutcome::Answered {
                        agent: "2001".to_owned(),
                    });
                    reactions.push_back(match stub {
                        QueueStub::Waiting => continue,
                        QueueStub::Answered => Reaction::Event(answered),
                        QueueStub::AgentFinished => Reaction::Then(
                            answered,
                            Event::QueueResult(QueueOutcome::AgentCallFinished),
                        ),
                        QueueStub::Timeout => {
                            Reaction::Event(Event::QueueResult(QueueOutcome::Timeout))
                        }
                        QueueStub::Unavailable => {
                            Reaction::Event(Event::QueueResult(QueueOutcome::Unavailable))
                        }
                        QueueStub::Left => Reaction::Event(Event::QueueResult(QueueOutcome::Left)),
                    });
                }
                Command::Http(request) => {
                    log(
                        Entry::Host {
                            at,
                            what: format!("HTTP {:?} {}", request.method, request.url.redacted),
                        },
                        &mut out,
                    );
                    let result = match http_stubs.pop_front() {
                        Some(HttpStub { error: Some(e), .. }) => Err(e),
                        Some(stub) => Ok(HttpResponse {
                            status: stub.status,
                            body: stub.body,
                        }),
                        None => Err("no stubbed HTTP response".to_owned()),
                    };
                    reactions.push_back(Reaction::Event(Event::HttpResult {
                        request: request.request,
                        result,
                    }));
                }
                Command::Lookup(request) => {
                    let outcome = match lookup_stubs.as_mut() {
                        Some(stubs) => match stubs.pop_front() {
                            Some(LookupStub::Found(f)) => LookupOutcome::Found(f),
                            Some(LookupStub::NotFound) => LookupOutcome::NotFound,
                            Some(LookupStub::Error(e)) => LookupOutcome::Failed(e),
                            None => LookupOutcome::Failed("no stubbed lookup answer".to_owned()),
                        },
                        None => customers.answer(&request),
                    };
                    let verdict = match &outcome {
                        LookupOutcome::Found(_) => "found",
                        LookupOutcome::NotFound => "not found",
                        LookupOutcome::Failed(_) => "failed",
                    };
                    log(
                        Entry::Host {
                            at,
                            what: format!(
                                "lookup {:?} customer {}: {verdict}",
                                request.action,
                                request.customer.as_deref().unwrap_or("-")
                            ),
                        },
                        &mut out,
                    );
                    reactions.push_back(Reaction::Event(Event::LookupResult {
                        request: request.request,
                        outcome,
                    }));
                }
                Command::Transfer { to, .. } => {
                    out.transfers.push(to.clone());
                    log(
                        Entry::Host {
                            at,
                            what: format!("transfer to {to}"),
                        },
                        &mut out,
                    );
                    reactions.push_back(Reaction::Event(Event::TransferResult {
                        connected: scenario.transfer_connects,
                    }));
                }
                Command::Record { max_length, .. } => {
                    log(
                        Entry::Host {
                            at,
                            what: format!("recording (up to {}s)", max_length.as_secs()),
                        },
                        &mut out,
                    );
                }
                Command::StopRecording => {
                    recordings += 1;
                    reactions.push_back(Reaction::Event(Event::RecordingFinished {
                        id: format!("rec-{recordings}"),
                    }));
                }
                Command::SetRecord(field) => out.record.push(field),
                Command::Hangup { reason } => {
                    log(
                        Entry::Host {
                            at,
                            what: format!("flow hangs up ({reason})"),
                        },
                        &mut out,
                    );
                    out.flow_hung_up = Some(reason);
                }
                Command::StopPlayback
                | Command::CollectDigits { .. }
                | Command::StartTimer { .. }
                | Command::CancelTimer
                | Command::LeaveQueue => {}
            }
        }
        if call.is_finished() {
            break;
        }
        // Decide what happens next, in the order a real call would see it.
        if let Some(reaction) = reactions.pop_front() {
            let event = match reaction {
                Reaction::Event(e) => e,
                Reaction::Then(first, second) => {
                    later = Some(second);
                    first
                }
            };
            call.handle(event, now);
            continue;
        }
        if call.wants_input() && !silent {
            if keys.is_empty() {
                match keypad.more_keys() {
                    Some(more) => keys.extend(more.chars().filter(|c| !c.is_whitespace())),
                    None => {
                        log(
                            Entry::Host {
                                at,
                                what: "caller hangs up".to_owned(),
                            },
                            &mut out,
                        );
                        call.handle(Event::HungUp, now);
                        continue;
                    }
                }
            }
            match keys.pop_front() {
                Some('_') => {
                    silent = true;
                    log(Entry::Silence { at }, &mut out);
                }
                Some(key) => {
                    let shown = if call.collecting_secret() { '*' } else { key };
                    log(Entry::Pressed { at, key: shown }, &mut out);
                    now += Duration::from_millis(300);
                    call.handle(Event::Digit(key), now);
                    continue;
                }
                None => {}
            }
        }
        if call.is_playing() {
            now += PROMPT_TIME;
            call.handle(Event::PromptFinished, now);
            continue;
        }
        if let Some(deadline) = call.next_deadline() {
            now = now.max(deadline);
            silent = false;
            call.handle(Event::TimerFired, now);
            continue;
        }
        if let Some(event) = later.take() {
            now += Duration::from_secs(60);
            call.handle(event, now);
            continue;
        }
        // Nothing more can happen (talking to an agent, or a host result never came).
        log(
            Entry::Host {
                at,
                what: "caller hangs up".to_owned(),
            },
            &mut out,
        );
        call.handle(Event::HungUp, now);
    }
    out.visited = call.visited().to_vec();
    out.variables = call
        .variables()
        .iter()
        .map(|(k, v)| (k.clone(), v.shown().to_owned()))
        .collect();
    out.language = call.language().to_owned();
    out.finished = call.is_finished();
    Ok(out)
}

fn call_step_kind(call: &Call, flow: &str, step: &str) -> &'static str {
    call.flow_set()
        .flow(flow)
        .and_then(|f| f.def.steps.get(step))
        .map(|s| s.value.kind())
        .unwrap_or("?")
}

/// Prints an entry the way `santral flow simulate` shows it.
pub fn describe(entry: &Entry, texts: &PromptTexts) -> String {
    let secs = |d: &Duration| format!("{:>6.1}s", d.as_secs_f64());
    match entry {
        Entry::Step {
            at,
            flow,
            step,
            kind,
        } => format!("{} step {flow}.{step} ({kind})", secs(at)),
        Entry::Heard { at, prompts } => {
            let names: Vec<&str> = prompts.iter().map(|p| p.name.as_str()).collect();
            let lang = prompts.first().map(|p| p.language.as_str()).unwrap_or("");
            format!(
                "{}   hears [{lang}] \"{}\"  ({})",
                secs(at),
                texts.say(prompts),
                names.join(" ")
            )
        }
        Entry::Pressed { at, key } => format!("{}   presses {key}", secs(at)),
        Entry::Silence { at } => format!("{}   stays silent", secs(at)),
        Entry::Host { at, what } => format!("{}   {what}", secs(at)),
    }
}
