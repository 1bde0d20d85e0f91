//! The one task that owns agents and queues: it drives the ACD engine, applies registrations
//! and agent commands (HTTP, softphone, feature codes), records every agent state change and
//! publishes the live view.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use santral_acd::config::{AcdConfig, AgentConfig};
use santral_acd::{Acd, AgentStatus, CallId, CallJoin, Input, Output};
use tokio::sync::mpsc;

use crate::call::CallInput;
use crate::config::{Config, LoginMode};
use crate::live::{
    AgentCommand, AgentCommandError, AgentLive, AgentRequest, LiveCall, LiveEvent, LivePublisher,
    QueueLive, Snapshot,
};
use crate::storage::{AgentEvent, Store};

/// What other parts of the server tell the agent owner.
#[derive(Debug)]
pub enum AgentsInput {
    /// The account gained its first registered contact.
    Registered(String),
    /// The account lost its last registered contact (expired or unregistered).
    Unregistered(String),
    /// A caller joins a queue; ACD decisions for it go to `call`. `sip_call_id` names the call
    /// in the stored queue events.
    Join {
        join: CallJoin,
        call: mpsc::Sender<CallInput>,
        sip_call_id: String,
    },
    /// The caller left while waiting or ringing (hang-up or a flow exit).
    CallerHungUp(CallId),
    OfferAnswered(CallId, String),
    /// The agent's phone refused, failed or was not reachable.
    OfferRejected(CallId, String),
    /// The talk part of an answered call ended: the agent goes to wrap-up.
    CallEnded(CallId),
    /// A call's live state for the wallboard.
    CallUpdate(LiveCall),
    /// Where a queued call stands: position (1 = next) and expected wait.
    Position {
        call: CallId,
        reply: tokio::sync::oneshot::Sender<(Option<usize>, Option<std::time::Duration>)>,
    },
    /// A reloaded configuration: agents added or changed (skills, languages, names).
    Reconfigure(Setup),
    /// A call is over.
    CallGone {
        call_id: String,
        disposition: String,
    },
}

/// Everything the task needs from the configuration.
#[derive(Debug)]
pub struct Setup {
    pub acd: AcdConfig,
    pub names: HashMap<String, String>,
    pub login: LoginMode,
}

impl Setup {
    pub fn from_config(config: &Config) -> Setup {
        let agents = config
            .agents
            .accounts
            .iter()
            .map(|a| {
                // Every agent also has a personal skill, so a call can be routed to one agent
                // through the ACD (transfers to an agent): states, ring timeout and no-answer
                // handling stay the ACD's.
                let mut skills = a.skills.clone();
                skills.insert(personal_skill(&a.id), 1);
                AgentConfig {
                    id: a.id.clone(),
                    skills,
                    languages: a.languages.clone(),
                }
            })
            .collect();
        let queues = config.queues.clone();
        Setup {
            acd: AcdConfig {
                queues,
                agents,
                no_answer_pause_after: 3,
                retry_delay_secs: 2,
                interval_secs: 900,
            },
            names: config
                .agents
                .accounts
                .iter()
                .map(|a| (a.id.clone(), a.name.clone()))
                .collect(),
            login: config.agents.login,
        }
    }
}

/// The skill only agent `id` has (see [`Setup::from_config`]).
pub fn personal_skill(id: &str) -> String {
    format!("agent-{id}")
}

/// Converts the engine's monotonic instants into wall-clock Unix milliseconds for records.
#[derive(Clone, Copy)]
struct WallClock {
    base: Instant,
    base_ms: i64,
}

impl WallClock {
    fn new() -> WallClock {
        WallClock {
            base: Instant::now(),
            base_ms: unix_ms(SystemTime::now()),
        }
    }

    fn ms(&self, at: Instant) -> i64 {
        match at.checked_duration_since(self.base) {
            Some(after) => self.base_ms + after.as_millis() as i64,
            None => self.base_ms - self.base.duration_since(at).as_millis() as i64,
        }
    }
}

fn unix_ms(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

struct AgentsTask {
    acd: Acd,
    names: HashMap<String, String>,
    login: LoginMode,
    registered: HashMap<String, bool>,
    since: HashMap<String, Instant>,
    clock: WallClock,
    publisher: LivePublisher,
    store: Arc<dyn Store>,
    /// Where each queued call's ACD decisions go.
    calls: HashMap<CallId, mpsc::Sender<CallInput>>,
    /// The SIP Call-ID of each ACD call, for the stored queue events.
    sip_call_ids: HashMap<CallId, String>,
    /// Calls in progress as the wallboard shows them, by SIP Call-ID.
    live_calls: HashMap<String, Arc<LiveCall>>,
    /// When the next snapshot may be built (see `SnapshotPacing`).
    snapshots: SnapshotPacing,
}

/// A snapshot holds every call and agent, so building one per input costs O(calls) per
/// call event — quadratic under load (at 300 new calls/s the wallboard alone took the core).
/// Snapshots are published at once while they are rare (a token bucket, 20 a second with a
/// burst of 20: every test and every quiet call centre sees each change immediately) and at
/// most 20 a second under load, the latest state always last. Live events are sent per change
/// either way.
#[derive(Debug, Clone)]
struct SnapshotPacing {
    tokens: f64,
    refilled_at: Instant,
    /// A change not yet in a published snapshot.
    pending: bool,
}

const SNAPSHOTS_PER_SECOND: f64 = 20.0;

impl SnapshotPacing {
    fn new(now: Instant) -> Self {
        SnapshotPacing {
            tokens: SNAPSHOTS_PER_SECOND,
            refilled_at: now,
            pending: false,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.tokens = (self.tokens + elapsed * SNAPSHOTS_PER_SECOND).min(SNAPSHOTS_PER_SECOND);
        self.refilled_at = now;
    }

    /// A change happened: true if a snapshot should be published now.
    fn changed(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.pending = false;
            true
        } else {
            self.pending = true;
            false
        }
    }

    /// When a held-back change is due (None: nothing held back).
    fn due(&self) -> Option<Instant> {
        self.pending.then(|| {
            let missing = (1.0 - self.tokens).max(0.0) / SNAPSHOTS_PER_SECOND;
            self.refilled_at + Duration::from_secs_f64(missing)
        })
    }

    /// The held-back change's time came: true if it should be published now.
    fn on_due(&mut self, now: Instant) -> bool {
        self.pending && self.changed(now)
    }
}

/// The agent owner, ready to run: the ACD accepted its configuration and the first
/// snapshot is published.
pub struct AgentsOwner(AgentsTask);

/// Checks the ACD configuration and publishes the initial live view.
pub fn start(
    setup: Setup,
    publisher: LivePublisher,
    store: Arc<dyn Store>,
) -> Result<AgentsOwner, santral_acd::ConfigError> {
    let now = Instant::now();
    let acd = Acd::new(
        setup.acd,
        Box::new(santral_acd::MemoryCallbackStore::default()),
        unix_ms(SystemTime::now()) as u64,
        now,
    )?;
    let task = AgentsTask {
        acd,
        since: setup.names.keys().map(|id| (id.clone(), now)).collect(),
        registered: setup.names.keys().map(|id| (id.clone(), false)).collect(),
        names: setup.names,
        login: setup.login,
        clock: WallClock::new(),
        publisher,
        store,
        calls: HashMap::new(),
        sip_call_ids: HashMap::new(),
        live_calls: HashMap::new(),
        snapshots: SnapshotPacing::new(now),
    };
    task.publish_snapshot(now);
    Ok(AgentsOwner(task))
}

async fn sleep_until_due(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

/// Runs until both input channels close.
pub async fn run(
    owner: AgentsOwner,
    mut inputs: mpsc::Receiver<AgentsInput>,
    mut requests: mpsc::Receiver<AgentRequest>,
) {
    let mut task = owner.0;
    let mut snapshot_tick = tokio::time::interval(Duration::from_secs(1));
    let (mut inputs_open, mut requests_open) = (true, true);
    while inputs_open || requests_open {
        let wake = task
            .acd
            .poll_timeout()
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            input = inputs.recv(), if inputs_open => match input {
                Some(input) => task.handle_input(input, Instant::now()),
                None => inputs_open = false,
            },
            request = requests.recv(), if requests_open => match request {
                Some(request) => task.handle_request(request, Instant::now()),
                None => requests_open = false,
            },
            _ = tokio::time::sleep_until(wake) => task.acd.handle_timeout(Instant::now()),
            _ = snapshot_tick.tick() => task.publish_snapshot(Instant::now()),
            _ = sleep_until_due(task.snapshots.due()), if task.snapshots.due().is_some() => {
                let now = Instant::now();
                if task.snapshots.on_due(now) {
                    task.publish_snapshot(now);
                }
            }
        }
        task.drain_outputs();
    }
}

impl AgentsTask {
    fn apply(&mut self, input: Input, now: Instant) -> Result<(), santral_acd::AcdError> {
        let result = self.acd.handle(input, now);
        self.drain_outputs();
        result
    }

    fn handle_input(&mut self, input: AgentsInput, now: Instant) {
        match input {
            AgentsInput::Registered(id) => {
                if let Some(flag) = self.registered.get_mut(&id) {
                    *flag = true;
                }
                let agent = santral_acd::AgentId::new(id.clone());
                if let Err(err) = self.apply(
                    Input::AgentRegistered {
                        agent: agent.clone(),
                    },
                    now,
                ) {
                    tracing::debug!(%err, agent = %id, "registration not applied");
                }
                if self.login == LoginMode::OnRegister
                    && matches!(self.acd.agent_status(&id), Some(AgentStatus::LoggedOut))
                    && let Err(err) = self.apply(Input::AgentLogin { agent }, now)
                {
                    tracing::warn!(%err, agent = %id, "login on registration failed");
                }
            }
            AgentsInput::Unregistered(id) => {
                if let Some(flag) = self.registered.get_mut(&id) {
                    *flag = false;
                }
                let agent = santral_acd::AgentId::new(id.clone());
                if let Err(err) = self.apply(Input::AgentUnregistered { agent }, now) {
                    tracing::debug!(%err, agent = %id, "unregistration not applied");
                }
            }
            AgentsInput::Join {
                join,
                call,
                sip_call_id,
            } => {
                let id = join.call;
                self.calls.insert(id, call.clone());
                self.sip_call_ids.insert(id, sip_call_id);
                if let Err(err) = self.apply(Input::CallJoin(join), now) {
                    tracing::warn!(%err, "call could not join the queue");
                    self.calls.remove(&id);
                    let _ = call.try_send(CallInput::Left {
                        reason: santral_acd::LeaveReason::NoAgents,
                    });
                }
            }
            AgentsInput::CallerHungUp(call) => {
                let result = self.apply(Input::CallerHungUp { call }, now);
                self.log_rejection(result);
            }
            AgentsInput::OfferAnswered(call, agent) => {
                let agent = santral_acd::AgentId::new(agent);
                let result = self.apply(Input::OfferAnswered { call, agent }, now);
                self.log_rejection(result);
            }
            AgentsInput::OfferRejected(call, agent) => {
                let agent = santral_acd::AgentId::new(agent);
                let result = self.apply(Input::OfferRejected { call, agent }, now);
                self.log_rejection(result);
            }
            AgentsInput::CallEnded(call) => {
                let result = self.apply(Input::CallEnded { call }, now);
                self.log_rejection(result);
                self.calls.remove(&call);
            }
            AgentsInput::CallUpdate(live) => {
                self.publisher.publish_event(LiveEvent::Call(live.clone()));
                self.live_calls.insert(live.call_id.clone(), Arc::new(live));
            }
            AgentsInput::Position { call, reply } => {
                let _ = reply.send((self.acd.position(call), self.acd.expected_wait(call)));
                return;
            }
            AgentsInput::Reconfigure(setup) => {
                for agent in setup.acd.agents {
                    let id = agent.id.clone();
                    if let Err(err) = self.apply(Input::AgentConfigured(agent), now) {
                        tracing::warn!(%err, agent = %id, "agent change not applied");
                        continue;
                    }
                    self.since.entry(id.clone()).or_insert(now);
                    self.registered.entry(id).or_insert(false);
                }
                for (id, name) in setup.names {
                    self.names.insert(id, name);
                }
                self.login = setup.login;
            }
            AgentsInput::CallGone {
                call_id,
                disposition,
            } => {
                self.live_calls.remove(&call_id);
                self.publisher.publish_event(LiveEvent::CallEnded {
                    call_id,
                    disposition,
                });
            }
        }
        if self.snapshots.changed(now) {
            self.publish_snapshot(now);
        }
    }

    /// ACD refusals of call inputs are races (the call already left) worth a debug line only.
    fn log_rejection(&self, result: Result<(), santral_acd::AcdError>) {
        if let Err(err) = result {
            tracing::debug!(%err, "ACD input not applied");
        }
    }

    fn send_to_call(&mut self, call: CallId, input: CallInput) {
        if let Some(sender) = self.calls.get(&call)
            && sender.try_send(input).is_err()
        {
            tracing::warn!(%call, "call task is not listening; dropping it from the ACD");
            self.calls.remove(&call);
        }
    }

    fn handle_request(&mut self, request: AgentRequest, now: Instant) {
        let AgentRequest {
            agent: id,
            command,
            reply,
        } = request;
        if !self.names.contains_key(&id) {
            let _ = reply.send(Err(AgentCommandError::UnknownAgent(id)));
            return;
        }
        let agent = santral_acd::AgentId::new(id.clone());
        let input = match command {
            AgentCommand::Login => Input::AgentLogin { agent },
            AgentCommand::Ready => {
                // "Ready" from logged out means: log in, then be available.
                if matches!(self.acd.agent_status(&id), Some(AgentStatus::LoggedOut)) {
                    Input::AgentLogin { agent }
                } else {
                    Input::AgentReady { agent }
                }
            }
            AgentCommand::Pause { reason } => Input::AgentPause {
                agent,
                reason: reason.unwrap_or_else(|| "break".to_owned()),
            },
            AgentCommand::Logout => Input::AgentLogout { agent },
            AgentCommand::EndWrapUp => Input::AgentEndWrapUp { agent },
        };
        let result = self
            .apply(input, now)
            .map(|()| self.agent_live(&id, now))
            .map_err(|err| AgentCommandError::NotAllowed(err.to_string()));
        let _ = reply.send(result);
        self.publish_snapshot(now);
    }

    fn drain_outputs(&mut self) {
        while let Some(output) = self.acd.poll_output() {
            match output {
                Output::AgentState(change) => {
                    let id = change.agent.0.clone();
                    self.since.insert(id.clone(), change.at);
                    tracing::info!(
                        agent = %id,
                        from = change.previous.name(),
                        to = change.current.name(),
                        reason = ?change.reason,
                        "agent state"
                    );
                    let event = AgentEvent {
                        agent: id.clone(),
                        at: self.clock.ms(change.at),
                        state: change.current.name().to_owned(),
                        previous: Some(change.previous.name().to_owned()),
                        reason: Some(match &change.current {
                            AgentStatus::Paused { reason } => reason.clone(),
                            _ => format!("{:?}", change.reason).to_lowercase(),
                        }),
                    };
                    if let Err(err) = self.store.add_agent_event(&event) {
                        tracing::error!(%err, "cannot store agent event");
                    }
                    let live = self.agent_live(&id, change.at);
                    self.publisher.publish_event(LiveEvent::Agent(live));
                }
                Output::Offer(offer) => {
                    let call = offer.call;
                    self.send_to_call(call, CallInput::Offer(offer));
                }
                Output::CancelOffer { call, agent, .. } => {
                    self.send_to_call(call, CallInput::CancelOffer { agent: agent.0 });
                }
                Output::CallLeft { call, reason, .. } => {
                    // An answered or overflowed call stays the ACD's until it ends.
                    let still_ours = matches!(
                        reason,
                        santral_acd::LeaveReason::Answered { .. }
                            | santral_acd::LeaveReason::Overflow { .. }
                    );
                    self.send_to_call(call, CallInput::Left { reason });
                    if !still_ours {
                        self.calls.remove(&call);
                    }
                }
                Output::Event(event) => self.store_event(event),
                other => tracing::debug!(?other, "ACD output"),
            }
        }
    }

    /// Writes a queue event (joined, offered, offer ended, escalated, left, ended, callbacks)
    /// to the call's event history.
    fn store_event(&mut self, event: santral_acd::AcdEvent) {
        use santral_acd::AcdEvent;
        let (call, at, kind, queue, agent, data) = match &event {
            AcdEvent::CallJoined {
                call,
                queue,
                priority,
                at,
            } => (
                *call,
                *at,
                "joined",
                Some(queue.0.clone()),
                None,
                serde_json::json!({ "priority": priority }),
            ),
            AcdEvent::CallOffered {
                call,
                queue,
                agent,
                at,
            } => (
                *call,
                *at,
                "offered",
                Some(queue.0.clone()),
                Some(agent.0.clone()),
                serde_json::json!({}),
            ),
            AcdEvent::OfferEnded {
                call,
                agent,
                outcome,
                at,
            } => (
                *call,
                *at,
                "offer-ended",
                None,
                Some(agent.0.clone()),
                serde_json::json!({ "outcome": format!("{outcome:?}") }),
            ),
            AcdEvent::CallEscalated {
                call,
                queue,
                step,
                at,
            } => (
                *call,
                *at,
                "escalated",
                Some(queue.0.clone()),
                None,
                serde_json::json!({ "step": step }),
            ),
            AcdEvent::CallLeft {
                call,
                queue,
                reason,
                waited,
                at,
            } => (
                *call,
                *at,
                "left",
                Some(queue.0.clone()),
                None,
                serde_json::json!({ "reason": reason.as_str(), "waited_ms": waited.as_millis() as u64 }),
            ),
            AcdEvent::CallEnded {
                call,
                agent,
                talk,
                at,
            } => (
                *call,
                *at,
                "ended",
                None,
                Some(agent.0.clone()),
                serde_json::json!({ "talk_ms": talk.as_millis() as u64 }),
            ),
            AcdEvent::CallbackQueued { call, queue, at } => (
                *call,
                *at,
                "callback-queued",
                Some(queue.0.clone()),
                None,
                serde_json::json!({}),
            ),
            AcdEvent::CallbackFinished { call, outcome, at } => (
                *call,
                *at,
                "callback-finished",
                None,
                None,
                serde_json::json!({ "outcome": format!("{outcome:?}") }),
            ),
        };
        let Some(call_id) = self.sip_call_ids.get(&call).cloned() else {
            return;
        };
        // The last event of an ACD call: its Call-ID is no longer needed.
        let last = match &event {
            AcdEvent::CallEnded { .. } => true,
            AcdEvent::CallLeft { reason, .. } => !matches!(
                reason,
                santral_acd::LeaveReason::Answered { .. }
                    | santral_acd::LeaveReason::Overflow { .. }
            ),
            _ => false,
        };
        if last {
            self.sip_call_ids.remove(&call);
        }
        let record = crate::storage::CallEvent {
            call_id,
            at: self.clock.ms(at),
            kind: kind.to_owned(),
            queue,
            agent,
            data,
        };
        if let Err(err) = self.store.add_call_event(&record) {
            tracing::error!(%err, "queue event not stored");
        }
    }

    fn agent_live(&self, id: &str, now: Instant) -> AgentLive {
        let status = self.acd.agent_status(id);
        let snapshot = self.acd.agent_snapshot(id, now);
        AgentLive {
            id: id.to_owned(),
            name: self.names.get(id).cloned().unwrap_or_default(),
            state: status.map(|s| s.name()).unwrap_or("logged-out").to_owned(),
            reason: match status {
                Some(AgentStatus::Paused { reason }) => Some(reason.clone()),
                _ => None,
            },
            since: self.clock.ms(self.since.get(id).copied().unwrap_or(now)),
            calls_handled: snapshot.map(|s| s.totals.answered).unwrap_or(0),
            current_call: match status {
                Some(
                    AgentStatus::Reserved { call }
                    | AgentStatus::OnCall { call }
                    | AgentStatus::WrapUp { call },
                ) => Some(call.to_string()),
                _ => None,
            },
            registered: self.registered.get(id).copied().unwrap_or(false),
        }
    }

    fn publish_snapshot(&self, now: Instant) {
        let mut agent_ids: Vec<&String> = self.names.keys().collect();
        agent_ids.sort();
        let agents: Vec<AgentLive> = agent_ids
            .into_iter()
            .map(|id| self.agent_live(id, now))
            .collect();
        let queues = self
            .acd
            .queue_names()
            .filter_map(|name| self.acd.queue_snapshot(name, now))
            .map(|q| {
                let totals = &q.totals;
                QueueLive {
                    name: q.queue.clone(),
                    waiting: q.waiting as u32,
                    longest_wait_s: q.longest_wait.map(|d| d.as_secs_f64()).unwrap_or(0.0),
                    service_level_percent: totals.service_level().map(|sl| sl * 100.0),
                    offered: totals.offered,
                    answered: totals.answered,
                    abandoned: totals.abandoned,
                    asa_s: totals.average_speed_of_answer().map(|d| d.as_secs_f64()),
                    aht_s: totals.average_handle_time().map(|d| d.as_secs_f64()),
                    agents_logged_in: q.agents_logged_in as u32,
                    agents_available: q.agents_available as u32,
                    agents_on_call: q.agents_staffed.saturating_sub(q.agents_available) as u32,
                    agents_paused: q.agents_logged_in.saturating_sub(q.agents_staffed) as u32,
                }
            })
            .collect();
        self.publisher.publish_snapshot(Snapshot {
            at: self.clock.ms(now),
            queues,
            agents,
            calls: self.live_calls.values().cloned().collect(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_follow_every_change_while_rare_and_twenty_a_second_under_load() {
        let start = Instant::now();
        let mut pacing = SnapshotPacing::new(start);
        // A quiet call centre: every change is published at once.
        for n in 0..100u64 {
            assert!(pacing.changed(start + Duration::from_millis(500 * n)));
        }
        assert_eq!(pacing.due(), None);
        // 1,000 changes a second for 2 s: about 20 published a second, none lost at the end.
        let busy = start + Duration::from_secs(60);
        let mut published = 0;
        for n in 0..2_000u64 {
            let now = busy + Duration::from_millis(n);
            if pacing.changed(now) {
                published += 1;
            }
            if let Some(due) = pacing.due()
                && due <= now
                && pacing.on_due(now)
            {
                published += 1;
            }
        }
        assert!((55..=65).contains(&published), "{published}");
        // The last change is held back, and due within 50 ms.
        let due = pacing.due().expect("the latest change is pending");
        let last = busy + Duration::from_millis(1_999);
        assert!(due <= last + Duration::from_millis(50), "{due:?}");
        assert!(pacing.on_due(due));
        assert_eq!(pacing.due(), None);
    }
}
