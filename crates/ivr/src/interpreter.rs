//! The sans-IO flow interpreter: one `Call` per caller. It consumes `Event`s with the current
//! (virtual) time and queues `Command`s for the host; it owns no sockets, clocks or tasks.
//!
//! A host loop: `handle(event, now)`, then drain `poll_command()`, and call
//! `handle(Event::TimerFired, t)` once `t >= next_deadline()`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Zoned;

use crate::condition;
use crate::flowset::{Flow, FlowSet};
use crate::hours;
use crate::model::{
    Announce, GatherStep, LookupAction, MenuStep, PlayItem, RecordPurpose, Step, SurveyStep,
};
use crate::speech;
use crate::template::{self, Lookup, Rendered, Value};

/// Steps that run without waiting (set, branch, …) allowed in a row before the call is
/// considered stuck in a loop and ended. The validator rejects such loops; this is the net.
pub const MAX_STEPS_PER_EVENT: usize = 200;
/// Digits typed ahead of a prompt that are kept for the next input step.
const TYPE_AHEAD: usize = 32;
/// Steps remembered for `visited()`.
const MAX_TRACE: usize = 10_000;

/// Facts about the call the flow may use.
#[derive(Debug, Clone)]
pub struct CallInfo {
    /// SIP Call-ID, carried by the tracing span.
    pub call_id: String,
    pub caller: String,
    pub dialled: String,
    /// Initial language (the configured default).
    pub language: String,
    /// Wall-clock time when the call was answered, with the time zone `call.time` uses.
    pub answered_at: Zoned,
}

/// Something that happened to the call.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The call was answered: the flow starts.
    Answered,
    /// The last `Play` finished (or was stopped).
    PromptFinished,
    /// A key: 0-9, *, # (A-D are ignored).
    Digit(char),
    /// The deadline given by `next_deadline()` has passed.
    TimerFired,
    HttpResult {
        request: u64,
        result: Result<HttpResponse, String>,
    },
    LookupResult {
        request: u64,
        outcome: LookupOutcome,
    },
    QueueResult(QueueOutcome),
    TransferResult {
        connected: bool,
    },
    RecordingFinished {
        id: String,
    },
    /// The caller hung up.
    HungUp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpResponse {
    pub status: u16,
    pub body: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupOutcome {
    /// Fields of the customer (name, number, card_last4, …).
    Found(BTreeMap<String, String>),
    NotFound,
    /// The data could not be reached.
    Failed(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueOutcome {
    /// An agent took the call; the caller is now talking.
    Answered { agent: String },
    /// The agent's side of the call ended while the caller stayed (e.g. for a survey).
    AgentCallFinished,
    /// `max_wait` passed.
    Timeout,
    /// No agent can serve the queue (none logged in).
    Unavailable,
    /// The caller left the queue (exit key seen by the ACD).
    Left,
}

/// A prompt to play: the host finds it at `<prompts dir>/<language>/<name>.wav`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptRef {
    pub language: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnqueueRequest {
    pub queue: Option<String>,
    pub skills: BTreeMap<String, u8>,
    pub language: String,
    pub priority: i32,
    /// Played once before waiting.
    pub prompts: Vec<PromptRef>,
    pub announce: Announce,
    pub max_wait: Option<Duration>,
    pub exit_digit: Option<char>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpRequest {
    pub request: u64,
    pub method: crate::model::HttpMethod,
    pub url: Rendered,
    pub headers: Vec<(String, Rendered)>,
    pub body: Option<serde_json::Value>,
    /// The body with secrets masked, for logs.
    pub body_redacted: Option<serde_json::Value>,
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupRequest {
    pub request: u64,
    pub action: LookupAction,
    pub customer: Option<String>,
    /// Prints masked.
    pub pin: Option<Value>,
    pub card: Option<String>,
    pub caller: String,
}

/// A field of the call record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordField {
    Tag(String),
    SurveyScore(u8),
    /// A gathered value; secret ones arrive masked.
    Variable {
        name: String,
        value: String,
    },
    Language(String),
    Recording {
        id: String,
        purpose: RecordPurpose,
    },
    Queue(String),
    Agent(String),
}

/// What the host must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Play {
        prompts: Vec<PromptRef>,
        barge_in: bool,
    },
    StopPlayback,
    /// Keys are now wanted (send them as `Event::Digit`).
    CollectDigits {
        max_digits: u32,
        terminator: Option<char>,
    },
    /// Wake the interpreter with `Event::TimerFired` at `at` (replaces any earlier timer).
    StartTimer {
        at: Instant,
    },
    CancelTimer,
    Enqueue(EnqueueRequest),
    LeaveQueue,
    Transfer {
        to: String,
        timeout: Duration,
    },
    Record {
        purpose: RecordPurpose,
        beep: bool,
        max_length: Duration,
        stop_digit: char,
    },
    StopRecording,
    Http(HttpRequest),
    Lookup(LookupRequest),
    SetRecord(RecordField),
    Hangup {
        reason: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The prompt plays; a key interrupts it.
    Prompting,
    /// Waiting for keys with a timer running.
    Waiting,
}

#[derive(Debug, Clone)]
struct Collect {
    digits: String,
    failures: u32,
    phase: Phase,
}

#[derive(Debug, Clone)]
enum Then {
    Goto(String),
    Transfer,
    Record,
}

#[derive(Debug, Clone)]
enum Wait {
    NotAnswered,
    Playing { next: String, barge_in: bool },
    PromptThen(Then),
    Collect(Collect),
    Http { request: u64 },
    Lookup { request: u64 },
    Queued { connected: bool },
    Transferring,
    Recording { stopping: bool },
    Done,
}

enum Next {
    Step(String),
    Wait,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Invalid,
    NoInput,
}

/// One caller's run through the flows.
pub struct Call {
    set: Arc<FlowSet>,
    flow: Arc<Flow>,
    step: String,
    info: CallInfo,
    answered_at: Option<Instant>,
    vars: BTreeMap<String, Value>,
    wait: Wait,
    deadline: Option<Instant>,
    type_ahead: VecDeque<char>,
    commands: VecDeque<Command>,
    visited: Vec<(String, String)>,
    next_request: u64,
    hangup_reason: Option<String>,
    span: tracing::Span,
}

/// Why a call could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    #[error("no flow named `{0}` in the loaded flows")]
    UnknownFlow(String),
}

impl Call {
    /// A call that will run `flow` from the set (kept for the whole call, even across
    /// reloads) once `Event::Answered` arrives.
    pub fn new(set: Arc<FlowSet>, flow: &str, info: CallInfo) -> Result<Call, StartError> {
        let flow = set
            .flow(flow)
            .cloned()
            .ok_or_else(|| StartError::UnknownFlow(flow.to_owned()))?;
        let span = tracing::info_span!("ivr", call_id = %info.call_id, flow = %flow.name);
        let mut vars = BTreeMap::new();
        vars.insert("call.caller".to_owned(), Value::plain(&info.caller));
        vars.insert("call.dialled".to_owned(), Value::plain(&info.dialled));
        vars.insert("call.language".to_owned(), Value::plain(&info.language));
        let step = flow.def.start.value.clone();
        Ok(Call {
            set,
            flow,
            step,
            info,
            answered_at: None,
            vars,
            wait: Wait::NotAnswered,
            deadline: None,
            type_ahead: VecDeque::new(),
            commands: VecDeque::new(),
            visited: Vec::new(),
            next_request: 1,
            hangup_reason: None,
            span,
        })
    }

    /// The next command for the host, in order.
    pub fn poll_command(&mut self) -> Option<Command> {
        self.commands.pop_front()
    }

    /// When the interpreter wants `Event::TimerFired`.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadline
    }

    pub fn is_finished(&self) -> bool {
        matches!(self.wait, Wait::Done)
    }

    /// (flow, step) of every step entered, in order.
    pub fn visited(&self) -> &[(String, String)] {
        &self.visited
    }

    pub fn variables(&self) -> &BTreeMap<String, Value> {
        &self.vars
    }

    pub fn language(&self) -> &str {
        self.vars
            .get("call.language")
            .map(|v| v.text.as_str())
            .unwrap_or(&self.info.language)
    }

    /// The flow set this call runs on.
    pub fn flow_set(&self) -> &Arc<FlowSet> {
        &self.set
    }

    /// The flow set version this call runs on.
    pub fn flow_version(&self) -> u64 {
        self.set.version()
    }

    pub fn current(&self) -> (&str, &str) {
        (&self.flow.name, &self.step)
    }

    /// Would a key press be used now (input, barge-in, a queue exit key, a recording stop)?
    pub fn accepts_digits(&self) -> bool {
        match &self.wait {
            Wait::Collect(_) | Wait::Playing { barge_in: true, .. } => true,
            Wait::Recording { stopping: false } => true,
            Wait::Queued { connected: false } => {
                matches!(self.step_def(), Some(Step::Queue(q)) if q.exit_digit.is_some())
            }
            _ => false,
        }
    }

    /// Is the call waiting for keys as input (menu, gather, survey, a recording's stop key,
    /// a queue's exit key)? Unlike `accepts_digits`, barge-in on a plain `play` is not counted.
    pub fn wants_input(&self) -> bool {
        self.accepts_digits() && !matches!(self.wait, Wait::Playing { .. })
    }

    /// Is the call gathering a secret (keys must not be shown or logged)?
    pub fn collecting_secret(&self) -> bool {
        matches!(self.wait, Wait::Collect(_))
            && matches!(self.step_def(), Some(Step::Gather(g)) if g.secret)
    }

    /// Is a prompt playing that the host should report finished?
    pub fn is_playing(&self) -> bool {
        match &self.wait {
            Wait::Playing { .. } | Wait::PromptThen(_) => true,
            Wait::Collect(c) => c.phase == Phase::Prompting,
            _ => false,
        }
    }

    /// Why the flow hung up, if it did.
    pub fn hangup_reason(&self) -> Option<&str> {
        self.hangup_reason.as_deref()
    }

    /// Feeds one event at time `now`.
    pub fn handle(&mut self, event: Event, now: Instant) {
        let span = self.span.clone();
        let _entered = span.enter();
        if matches!(self.wait, Wait::Done) {
            return;
        }
        match event {
            Event::Answered => {
                if matches!(self.wait, Wait::NotAnswered) {
                    self.answered_at = Some(now);
                    let start = self.flow.def.start.value.clone();
                    self.run(start, now);
                }
            }
            Event::HungUp => {
                tracing::debug!(step = %self.step, "caller hung up");
                self.clear_deadline();
                self.wait = Wait::Done;
            }
            Event::PromptFinished => self.on_prompt_finished(now),
            Event::Digit(key) => {
                if "0123456789*#".contains(key) {
                    self.on_digit(key, now);
                }
            }
            Event::TimerFired => {
                if self.deadline.is_some_and(|d| now >= d) {
                    self.deadline = None;
                    self.on_timer(now);
                }
            }
            Event::HttpResult { request, result } => self.on_http(request, result, now),
            Event::LookupResult { request, outcome } => self.on_lookup(request, outcome, now),
            Event::QueueResult(outcome) => self.on_queue(outcome, now),
            Event::TransferResult { connected } => {
                if matches!(self.wait, Wait::Transferring) {
                    if connected {
                        tracing::debug!("transferred");
                        self.wait = Wait::Done;
                    } else if let Some(Step::Transfer(t)) = self.step_def() {
                        let next = t.on_failure.value.clone();
                        self.run(next, now);
                    }
                }
            }
            Event::RecordingFinished { id } => {
                if matches!(self.wait, Wait::Recording { .. }) {
                    self.clear_deadline();
                    if let Some(Step::Record(r)) = self.step_def() {
                        let (store, purpose, next) =
                            (r.store.clone(), r.purpose, r.next.value.clone());
                        self.vars.insert(store, Value::plain(&id));
                        self.emit(Command::SetRecord(RecordField::Recording { id, purpose }));
                        self.run(next, now);
                    }
                }
            }
        }
    }

    // ---- plumbing -------------------------------------------------------------------------

    fn emit(&mut self, command: Command) {
        self.commands.push_back(command);
    }

    fn set_deadline(&mut self, at: Instant) {
        self.deadline = Some(at);
        self.emit(Command::StartTimer { at });
    }

    fn clear_deadline(&mut self) {
        if self.deadline.take().is_some() {
            self.emit(Command::CancelTimer);
        }
    }

    fn step_def(&self) -> Option<&Step> {
        self.flow.def.steps.get(&self.step).map(|s| &s.value)
    }

    fn request_id(&mut self) -> u64 {
        let id = self.next_request;
        self.next_request += 1;
        id
    }

    fn wall_clock(&self, now: Instant) -> Zoned {
        let elapsed = self
            .answered_at
            .map(|a| now.saturating_duration_since(a))
            .unwrap_or_default();
        self.info
            .answered_at
            .checked_add(elapsed)
            .unwrap_or_else(|_| self.info.answered_at.clone())
    }

    fn refresh_clock(&mut self, now: Instant) {
        let wall = self.wall_clock(now);
        self.vars.insert(
            "call.time".to_owned(),
            Value::plain(wall.strftime("%H:%M").to_string()),
        );
        self.vars.insert(
            "call.date".to_owned(),
            Value::plain(wall.date().to_string()),
        );
        self.vars.insert(
            "call.weekday".to_owned(),
            Value::plain(hours::weekday_of(&wall).name()),
        );
    }

    fn render(&self, text: &str) -> Rendered {
        template::render(text, &self.vars)
    }

    fn playlist(&self, items: &[crate::Located<PlayItem>]) -> Vec<PromptRef> {
        let language = self.language().to_owned();
        let mut out = Vec::new();
        for item in items {
            match &item.value {
                PlayItem::Prompt(name) => out.push(PromptRef {
                    language: language.clone(),
                    name: name.clone(),
                }),
                PlayItem::Say(kind, value) => {
                    let text = self.render(value).text;
                    match speech::fragments(*kind, &text, &language) {
                        Ok(names) => out.extend(names.into_iter().map(|name| PromptRef {
                            language: language.clone(),
                            name,
                        })),
                        Err(e) => tracing::warn!(step = %self.step, "cannot speak a value: {e}"),
                    }
                }
            }
        }
        out
    }

    fn fail(&mut self, reason: String) {
        tracing::error!(step = %self.step, "{reason}");
        self.clear_deadline();
        self.emit(Command::Hangup {
            reason: reason.clone(),
        });
        self.hangup_reason = Some(reason);
        self.wait = Wait::Done;
    }

    /// Enters `step` and keeps going through steps that need no waiting.
    fn run(&mut self, mut step: String, now: Instant) {
        self.clear_deadline();
        self.refresh_clock(now);
        for _ in 0..MAX_STEPS_PER_EVENT {
            match self.enter(step, now) {
                Next::Step(next) => step = next,
                Next::Wait => return,
            }
        }
        self.fail(format!(
            "flow {} ran {MAX_STEPS_PER_EVENT} steps without waiting for the caller",
            self.flow.name
        ));
    }

    fn enter(&mut self, name: String, now: Instant) -> Next {
        let flow = Arc::clone(&self.flow);
        let Some(step) = flow.def.steps.get(&name).map(|s| &s.value) else {
            self.fail(format!("flow {} has no step `{name}`", flow.name));
            return Next::Wait;
        };
        self.step = name;
        if self.visited.len() < MAX_TRACE {
            self.visited.push((flow.name.clone(), self.step.clone()));
        }
        tracing::debug!(step = %self.step, kind = step.kind(), "step");
        match step {
            Step::Play(p) => {
                let prompts = self.playlist(&p.prompts);
                if prompts.is_empty() {
                    return Next::Step(p.next.value.clone());
                }
                if p.barge_in && !self.type_ahead.is_empty() {
                    return Next::Step(p.next.value.clone());
                }
                if !p.barge_in {
                    self.type_ahead.clear();
                }
                self.emit(Command::Play {
                    prompts,
                    barge_in: p.barge_in,
                });
                self.wait = Wait::Playing {
                    next: p.next.value.clone(),
                    barge_in: p.barge_in,
                };
                Next::Wait
            }
            Step::Menu(_) | Step::Gather(_) | Step::Survey(_) => {
                self.wait = Wait::Collect(Collect {
                    digits: String::new(),
                    failures: 0,
                    phase: Phase::Prompting,
                });
                self.start_collect(step, &[], now)
            }
            Step::Set(s) => {
                for (var, value) in &s.values {
                    let rendered = self.render(value);
                    let secret = rendered.has_secret();
                    self.vars.insert(
                        var.clone(),
                        Value {
                            text: rendered.text,
                            secret,
                        },
                    );
                }
                for var in &s.increment {
                    let n: i64 = self
                        .vars
                        .get(&var.value)
                        .and_then(|v| v.text.trim().parse().ok())
                        .unwrap_or(0);
                    self.vars.insert(
                        var.value.clone(),
                        Value::plain(n.saturating_add(1).to_string()),
                    );
                }
                Next::Step(s.next.value.clone())
            }
            Step::Branch(b) => {
                let set = Arc::clone(&self.set);
                let target = b
                    .cases
                    .iter()
                    .find(|c| condition::holds(&c.when, &self.vars, set.as_ref()))
                    .map(|c| &c.next)
                    .unwrap_or(&b.default);
                Next::Step(target.value.clone())
            }
            Step::Hours(h) => {
                let open = hours::is_open(h, &self.wall_clock(now)).unwrap_or_else(|e| {
                    tracing::warn!(step = %self.step, "hours: {e}; treating as closed");
                    false
                });
                Next::Step(if open {
                    h.on_open.value.clone()
                } else {
                    h.on_closed.value.clone()
                })
            }
            Step::Lookup(l) => {
                let request = self.request_id();
                let pin = l.pin.as_ref().map(|p| {
                    let r = self.render(p);
                    Value::secret(r.text)
                });
                let lookup = LookupRequest {
                    request,
                    action: l.action,
                    customer: l.customer.as_ref().map(|c| self.render(c).text),
                    pin,
                    card: l.card.as_ref().map(|c| self.render(c).text),
                    caller: self.info.caller.clone(),
                };
                self.emit(Command::Lookup(lookup));
                self.wait = Wait::Lookup { request };
                Next::Wait
            }
            Step::Http(h) => {
                let request = self.request_id();
                let url = self.render(&h.url);
                let headers = h
                    .headers
                    .iter()
                    .map(|(k, v)| (k.clone(), self.render(v)))
                    .collect();
                let (body, body_redacted) = match &h.body {
                    Some(b) => {
                        let (real, shown) = template::render_json(b, &self.vars);
                        (Some(real), Some(shown))
                    }
                    None => (None, None),
                };
                tracing::debug!(method = ?h.method, url = %url.redacted, "http request");
                self.emit(Command::Http(HttpRequest {
                    request,
                    method: h.method,
                    url,
                    headers,
                    body,
                    body_redacted,
                    timeout: h.timeout.0,
                }));
                self.set_deadline(later(now, h.timeout.0));
                self.wait = Wait::Http { request };
                Next::Wait
            }
            Step::Queue(q) => {
                let language = match &q.language {
                    Some(l) => self.render(l).text,
                    None => self.language().to_owned(),
                };
                let request = EnqueueRequest {
                    queue: q.queue.as_ref().map(|x| x.value.clone()),
                    skills: q.skills.clone(),
                    language,
                    priority: q.priority,
                    prompts: self.playlist(&q.prompts),
                    announce: q.announce.clone(),
                    max_wait: q.max_wait.map(|d| d.0),
                    exit_digit: q.exit_digit.as_ref().and_then(|d| d.value.0.chars().next()),
                };
                if let Some(queue) = &request.queue {
                    self.emit(Command::SetRecord(RecordField::Queue(queue.clone())));
                }
                self.emit(Command::Enqueue(request));
                self.wait = Wait::Queued { connected: false };
                Next::Wait
            }
            Step::Transfer(t) => {
                let prompts = self.playlist(&t.prompts);
                if prompts.is_empty() {
                    self.start_transfer();
                } else {
                    self.emit(Command::Play {
                        prompts,
                        barge_in: false,
                    });
                    self.wait = Wait::PromptThen(Then::Transfer);
                }
                Next::Wait
            }
            Step::Record(r) => {
                let prompts = self.playlist(&r.prompts);
                if prompts.is_empty() {
                    self.start_recording(now);
                } else {
                    self.emit(Command::Play {
                        prompts,
                        barge_in: false,
                    });
                    self.wait = Wait::PromptThen(Then::Record);
                }
                Next::Wait
            }
            Step::Language(l) => {
                self.vars
                    .insert("call.language".to_owned(), Value::plain(&l.set.value));
                self.emit(Command::SetRecord(RecordField::Language(
                    l.set.value.clone(),
                )));
                Next::Step(l.next.value.clone())
            }
            Step::Tag(t) => {
                for label in &t.labels {
                    self.emit(Command::SetRecord(RecordField::Tag(label.clone())));
                }
                Next::Step(t.next.value.clone())
            }
            Step::Goto(g) => {
                let Some(target) = self.set.flow(&g.flow).cloned() else {
                    self.fail(format!("no flow named `{}`", g.flow.value));
                    return Next::Wait;
                };
                let step = g
                    .step
                    .as_ref()
                    .map(|s| s.value.clone())
                    .unwrap_or_else(|| target.def.start.value.clone());
                self.flow = target;
                Next::Step(step)
            }
            Step::Hangup(h) => {
                let reason = h.reason.clone().unwrap_or_else(|| "flow ended".to_owned());
                self.clear_deadline();
                self.emit(Command::Hangup {
                    reason: reason.clone(),
                });
                self.hangup_reason = Some(reason);
                self.wait = Wait::Done;
                Next::Wait
            }
        }
    }

    /// Plays an input step's prompt (after `feedback`) and waits for keys; keys typed ahead
    /// are used at once.
    fn start_collect(
        &mut self,
        step: &Step,
        feedback: &[crate::Located<PlayItem>],
        now: Instant,
    ) -> Next {
        let (prompts, max_digits, terminator) = match step {
            Step::Menu(m) => (&m.prompts, 1, None),
            Step::Gather(g) => (
                &g.prompts,
                g.max_digits,
                g.terminator.as_ref().and_then(|t| t.value.0.chars().next()),
            ),
            Step::Survey(s) => (&s.prompts, 1, None),
            _ => return Next::Wait,
        };
        if !self.type_ahead.is_empty() {
            if let Wait::Collect(c) = &mut self.wait {
                c.phase = Phase::Waiting;
            }
            self.emit(Command::CollectDigits {
                max_digits,
                terminator,
            });
            let mut guard = TYPE_AHEAD + 1;
            while let Some(key) = self.type_ahead.pop_front() {
                guard -= 1;
                if guard == 0 || !matches!(self.wait, Wait::Collect(_)) {
                    break;
                }
                self.collect_digit(key, now);
            }
            return Next::Wait;
        }
        let mut list = self.playlist(feedback);
        list.extend(self.playlist(prompts));
        if list.is_empty() {
            if let Wait::Collect(c) = &mut self.wait {
                c.phase = Phase::Waiting;
            }
            self.emit(Command::CollectDigits {
                max_digits,
                terminator,
            });
            self.arm_input_timer(now);
        } else {
            self.emit(Command::Play {
                prompts: list,
                barge_in: true,
            });
            self.emit(Command::CollectDigits {
                max_digits,
                terminator,
            });
        }
        Next::Wait
    }

    fn arm_input_timer(&mut self, now: Instant) {
        let Wait::Collect(c) = &self.wait else { return };
        let first = c.digits.is_empty();
        let timeout = match self.step_def() {
            Some(Step::Menu(m)) => m.timeout.0,
            Some(Step::Survey(s)) => s.timeout.0,
            Some(Step::Gather(g)) if first => g.first_digit_timeout.0,
            Some(Step::Gather(g)) => g.inter_digit_timeout.0,
            _ => return,
        };
        self.set_deadline(later(now, timeout));
    }

    fn on_prompt_finished(&mut self, now: Instant) {
        match std::mem::replace(&mut self.wait, Wait::Done) {
            Wait::Playing { next, .. } => self.run(next, now),
            Wait::PromptThen(Then::Goto(next)) => self.run(next, now),
            Wait::PromptThen(Then::Transfer) => self.start_transfer(),
            Wait::PromptThen(Then::Record) => self.start_recording(now),
            Wait::Collect(mut c) => {
                if c.phase == Phase::Prompting {
                    c.phase = Phase::Waiting;
                    self.wait = Wait::Collect(c);
                    self.arm_input_timer(now);
                } else {
                    self.wait = Wait::Collect(c);
                }
            }
            other => self.wait = other,
        }
    }

    fn on_digit(&mut self, key: char, now: Instant) {
        match &mut self.wait {
            Wait::Playing {
                next,
                barge_in: true,
            } => {
                let next = next.clone();
                self.emit(Command::StopPlayback);
                self.push_type_ahead(key);
                self.run(next, now);
            }
            Wait::Collect(c) => {
                if c.phase == Phase::Prompting {
                    c.phase = Phase::Waiting;
                    self.emit(Command::StopPlayback);
                }
                self.collect_digit(key, now);
            }
            Wait::Recording { stopping: false } => {
                let stop = match self.step_def() {
                    Some(Step::Record(r)) => r.stop_digit.value.0.starts_with(key),
                    _ => false,
                };
                if stop {
                    self.clear_deadline();
                    self.emit(Command::StopRecording);
                    self.wait = Wait::Recording { stopping: true };
                }
            }
            Wait::Queued { connected: false } => {
                let exit = match self.step_def() {
                    Some(Step::Queue(q)) => q
                        .exit_digit
                        .as_ref()
                        .filter(|d| d.value.0.starts_with(key))
                        .map(|_| q.on_exit.clone().unwrap_or_else(|| q.on_timeout.clone())),
                    _ => None,
                };
                if let Some(target) = exit {
                    self.emit(Command::LeaveQueue);
                    self.run(target.value, now);
                }
            }
            Wait::Http { .. } | Wait::Lookup { .. } => self.push_type_ahead(key),
            _ => {}
        }
    }

    fn push_type_ahead(&mut self, key: char) {
        if self.type_ahead.len() < TYPE_AHEAD {
            self.type_ahead.push_back(key);
        }
    }

    fn collect_digit(&mut self, key: char, now: Instant) {
        let flow = Arc::clone(&self.flow);
        let Some(step) = flow.def.steps.get(&self.step).map(|s| &s.value) else {
            return;
        };
        match step {
            Step::Menu(m) => self.menu_key(m, key, now),
            Step::Survey(s) => self.survey_key(s, key, now),
            Step::Gather(g) => {
                let Wait::Collect(c) = &mut self.wait else {
                    return;
                };
                let terminator = g.terminator.as_ref().and_then(|t| t.value.0.chars().next());
                if Some(key) == terminator {
                    self.finish_gather(g, now);
                    return;
                }
                if (c.digits.len() as u32) < g.max_digits {
                    c.digits.push(key);
                }
                if c.digits.len() as u32 >= g.max_digits {
                    self.finish_gather(g, now);
                } else {
                    self.clear_deadline();
                    self.arm_input_timer(now);
                }
            }
            _ => {}
        }
    }

    fn menu_key(&mut self, menu: &MenuStep, key: char, now: Instant) {
        let mut buf = [0u8; 4];
        let key_text: &str = key.encode_utf8(&mut buf);
        match menu.choices.0.iter().find(|(k, _)| k.value == key_text) {
            Some((_, target)) => {
                tracing::debug!(step = %self.step, key = %key, "menu choice");
                self.run(target.value.clone(), now);
            }
            None => self.input_failed(Failure::Invalid, now),
        }
    }

    fn survey_key(&mut self, survey: &SurveyStep, key: char, now: Instant) {
        match key.to_digit(10) {
            Some(score @ 1..=5) => {
                let score = score as u8;
                self.vars
                    .insert("survey.score".to_owned(), Value::plain(score.to_string()));
                self.emit(Command::SetRecord(RecordField::SurveyScore(score)));
                self.clear_deadline();
                let thanks = self.playlist(&survey.thanks);
                if thanks.is_empty() {
                    self.run(survey.next.value.clone(), now);
                } else {
                    self.emit(Command::Play {
                        prompts: thanks,
                        barge_in: false,
                    });
                    self.wait = Wait::PromptThen(Then::Goto(survey.next.value.clone()));
                }
            }
            _ => self.input_failed(Failure::Invalid, now),
        }
    }

    fn finish_gather(&mut self, gather: &GatherStep, now: Instant) {
        let Wait::Collect(c) = &self.wait else { return };
        let digits = c.digits.clone();
        let long_enough = digits.len() as u32 >= gather.min_digits;
        let pattern_ok = gather.pattern.as_ref().is_none_or(|p| {
            use crate::condition::RegexCache;
            self.set
                .regex(p)
                .and_then(|re| re.find(&digits))
                .is_some_and(|m| m.start() == 0 && m.end() == digits.len())
        });
        let luhn_ok = !gather.luhn || luhn_valid(&digits);
        if digits.is_empty() {
            self.input_failed(Failure::NoInput, now);
        } else if long_enough && pattern_ok && luhn_ok {
            let value = if gather.secret {
                Value::secret(&digits)
            } else {
                Value::plain(&digits)
            };
            let shown = value.shown().to_owned();
            self.vars.insert(gather.store.value.clone(), value);
            self.emit(Command::SetRecord(RecordField::Variable {
                name: gather.store.value.clone(),
                value: shown,
            }));
            self.run(gather.next.value.clone(), now);
        } else {
            self.input_failed(Failure::Invalid, now);
        }
    }

    fn on_timer(&mut self, now: Instant) {
        match &self.wait {
            Wait::Collect(c) if c.phase == Phase::Waiting => {
                let gather_with_digits =
                    matches!(self.step_def(), Some(Step::Gather(_))) && !c.digits.is_empty();
                if gather_with_digits {
                    let flow = Arc::clone(&self.flow);
                    if let Some(Step::Gather(g)) = flow.def.steps.get(&self.step).map(|s| &s.value)
                    {
                        self.finish_gather(g, now);
                    }
                } else {
                    self.input_failed(Failure::NoInput, now);
                }
            }
            Wait::Http { .. } => {
                tracing::warn!(step = %self.step, "http request timed out");
                if let Some(Step::Http(h)) = self.step_def() {
                    let next = h.on_error.value.clone();
                    self.run(next, now);
                }
            }
            Wait::Recording { stopping: false } => {
                self.emit(Command::StopRecording);
                self.wait = Wait::Recording { stopping: true };
            }
            _ => {}
        }
    }

    fn input_failed(&mut self, failure: Failure, now: Instant) {
        self.clear_deadline();
        self.type_ahead.clear();
        let flow = Arc::clone(&self.flow);
        let Some(step) = flow.def.steps.get(&self.step).map(|s| &s.value) else {
            return;
        };
        let Wait::Collect(c) = &mut self.wait else {
            return;
        };
        c.failures += 1;
        c.digits.clear();
        c.phase = Phase::Prompting;
        let failures = c.failures;
        tracing::debug!(step = %self.step, ?failure, failures, "input failed");
        let (attempts, on_failure, feedback): (u32, &str, &[crate::Located<PlayItem>]) = match step
        {
            Step::Menu(m) => (
                m.attempts,
                &m.on_failure,
                match (failure, &m.no_input) {
                    (Failure::NoInput, Some(n)) => n,
                    _ => &m.invalid,
                },
            ),
            Step::Gather(g) => (g.attempts, &g.on_failure, &g.invalid),
            Step::Survey(s) => (s.attempts, &s.next, &s.invalid),
            _ => return,
        };
        if failures >= attempts {
            self.run(on_failure.to_owned(), now);
        } else {
            self.start_collect(step, feedback, now);
        }
    }

    fn start_transfer(&mut self) {
        if let Some(Step::Transfer(t)) = self.step_def() {
            let to = self.render(&t.to).text;
            let timeout = t.timeout.0;
            self.emit(Command::Transfer { to, timeout });
        }
        self.wait = Wait::Transferring;
    }

    fn start_recording(&mut self, now: Instant) {
        if let Some(Step::Record(r)) = self.step_def() {
            let command = Command::Record {
                purpose: r.purpose,
                beep: r.beep,
                max_length: r.max_length.0,
                stop_digit: r.stop_digit.value.0.chars().next().unwrap_or('#'),
            };
            let max = r.max_length.0;
            self.emit(command);
            self.set_deadline(later(now, max));
        }
        self.wait = Wait::Recording { stopping: false };
    }

    fn on_http(&mut self, request: u64, result: Result<HttpResponse, String>, now: Instant) {
        if !matches!(self.wait, Wait::Http { request: r } if r == request) {
            return;
        }
        let Some(Step::Http(h)) = self.step_def().cloned() else {
            return;
        };
        match result {
            Ok(response) if (200..300).contains(&response.status) => {
                for (var, pointer) in &h.extract {
                    let value = match response.body.pointer(pointer) {
                        Some(serde_json::Value::String(s)) => s.clone(),
                        Some(serde_json::Value::Null) | None => continue,
                        Some(other) => other.to_string(),
                    };
                    self.vars.insert(var.clone(), Value::plain(value));
                }
                self.run(h.next.value.clone(), now);
            }
            Ok(response) => {
                tracing::warn!(step = %self.step, status = response.status, "http request failed");
                self.run(h.on_error.value.clone(), now);
            }
            Err(reason) => {
                tracing::warn!(step = %self.step, "http request failed: {reason}");
                self.run(h.on_error.value.clone(), now);
            }
        }
    }

    fn on_lookup(&mut self, request: u64, outcome: LookupOutcome, now: Instant) {
        if !matches!(self.wait, Wait::Lookup { request: r } if r == request) {
            return;
        }
        let Some(Step::Lookup(l)) = self.step_def().cloned() else {
            return;
        };
        match outcome {
            LookupOutcome::Found(fields) => {
                for (k, v) in fields {
                    self.vars
                        .insert(format!("{}.{k}", l.store), Value::plain(v));
                }
                self.run(l.on_found.value.clone(), now);
            }
            LookupOutcome::NotFound => self.run(l.on_not_found.value.clone(), now),
            LookupOutcome::Failed(reason) => {
                tracing::warn!(step = %self.step, "lookup failed: {reason}");
                let next = l.on_error.as_ref().unwrap_or(&l.on_not_found).value.clone();
                self.run(next, now);
            }
        }
    }

    fn on_queue(&mut self, outcome: QueueOutcome, now: Instant) {
        let Wait::Queued { connected } = self.wait else {
            return;
        };
        let Some(Step::Queue(q)) = self.step_def().cloned() else {
            return;
        };
        match outcome {
            QueueOutcome::Answered { agent } => {
                if !connected {
                    self.emit(Command::SetRecord(RecordField::Agent(agent)));
                    self.wait = Wait::Queued { connected: true };
                }
            }
            QueueOutcome::AgentCallFinished if connected => match &q.after_call {
                Some(next) => self.run(next.value.clone(), now),
                None => {
                    self.emit(Command::Hangup {
                        reason: "agent call finished".to_owned(),
                    });
                    self.hangup_reason = Some("agent call finished".to_owned());
                    self.wait = Wait::Done;
                }
            },
            QueueOutcome::AgentCallFinished => {}
            QueueOutcome::Timeout if !connected => self.run(q.on_timeout.value.clone(), now),
            QueueOutcome::Unavailable if !connected => {
                let next = q
                    .on_unavailable
                    .as_ref()
                    .unwrap_or(&q.on_timeout)
                    .value
                    .clone();
                self.run(next, now);
            }
            QueueOutcome::Left if !connected => {
                let next = q.on_exit.as_ref().unwrap_or(&q.on_timeout).value.clone();
                self.run(next, now);
            }
            QueueOutcome::Timeout | QueueOutcome::Unavailable | QueueOutcome::Left => {}
        }
    }
}

/// The Luhn checksum used by card numbers.
pub fn luhn_valid(digits: &str) -> bool {
    if digits.len() < 2 || !digits.chars().all(|c| c.is_ascii_digit()) {
        return false;
    }
    let sum: u32 = digits
        .chars()
        .rev()
        .filter_map(|c| c.to_digit(10))
        .enumerate()
        .map(|(i, d)| {
            if i % 2 == 1 {
                if d * 2 > 9 { d * 2 - 9 } else { d * 2 }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

impl Lookup for Call {
    fn get(&self, name: &str) -> Option<Value> {
        self.vars.get(name).cloned()
    }
}

/// `now + d`, saturating far in the future instead of overflowing.
fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(24 * 3600)))
        .unwrap_or(now)
}
