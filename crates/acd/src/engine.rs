//! The ACD engine: one owner of all queues, agents and waiting calls. Sans-IO: the server feeds
//! [`Input`]s and the current time, drains [`Output`]s and wakes the engine at
//! [`Acd::poll_timeout`].

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tracing::{debug, warn};

use crate::callback::{CallbackRecord, CallbackStore};
use crate::config::{AcdConfig, EmptyRule, QueueConfig, SkillRequirement, Strategy};
use crate::error::{AcdError, ConfigError};
use crate::id::{AgentId, CallId, QueueId};
use crate::input::{CallJoin, CallerData, Input};
use crate::output::{
    AcdEvent, AgentStateChange, AgentStatus, CallbackOutcome, CancelReason, LeaveReason, Offer,
    OfferOutcome, Output, StateReason,
};
use crate::routing::{
    AgentIx, AgentKey, CallKey, GroupIx, Groups, Interner, LangIx, QueueIx, Requirement, SkillIx,
};
use crate::stats::{AgentCounters, AgentSnapshot, QueueCounters, QueueSnapshot, Series};
use crate::timer::{Timer, Timers};

/// Handle times kept per queue for the expected-wait estimate.
const RECENT_HANDLE_TIMES: usize = 100;
/// Pause reason used when the phone loses its registration.
pub const UNREGISTERED: &str = "unregistered";
/// Pause reason after too many consecutive ring-no-answers.
pub const NO_ANSWER: &str = "no-answer";

struct Step {
    after: Duration,
    relax: Vec<(SkillIx, u8)>,
    alternatives: Vec<Vec<(SkillIx, u8)>>,
    add_languages: Vec<LangIx>,
    overflow: Option<QueueIx>,
}

struct Queue {
    id: QueueId,
    cfg: QueueConfig,
    skills: Vec<(SkillIx, u8)>,
    language: Option<LangIx>,
    steps: Vec<Step>,
    order: HashMap<String, u64>,
    /// Everything in line (customers waiting or ringing, callbacks waiting), for positions.
    line: BTreeSet<CallKey>,
    customers: usize,
    callbacks: usize,
    groups: Vec<GroupIx>,
    handle_times: VecDeque<Duration>,
    rr_last: Option<u64>,
    stats: Series<QueueCounters>,
}

enum Pending {
    Pause(String),
    Logout,
}

struct Agent {
    id: AgentId,
    config_order: u64,
    skills: Vec<(SkillIx, u8)>,
    languages: Vec<LangIx>,
    status: AgentStatus,
    since: Instant,
    registered: bool,
    groups: Vec<GroupIx>,
    keys: Vec<(GroupIx, AgentKey)>,
    /// Available but resting after a missed or rejected offer.
    cooling: bool,
    misses: u32,
    pending: Option<Pending>,
    session_answered: u64,
    session_talk: Duration,
    idle_since: Instant,
    generation: u64,
    /// During wrap-up: the queue and the talk time of the call being wrapped up.
    wrap: Option<(QueueIx, Duration)>,
    stats: Series<AgentCounters>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Customer,
    Callback,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Waiting,
    Offering(Vec<AgentIx>),
    Dialling(AgentIx),
    Connected { agent: AgentIx, since: Instant },
}

struct Call {
    id: CallId,
    kind: Kind,
    queue: QueueIx,
    extra: Vec<(SkillIx, u8)>,
    extra_cfg: Vec<SkillRequirement>,
    language: Option<LangIx>,
    language_name: Option<String>,
    priority: u8,
    seq: u64,
    joined_at: Instant,
    entered_at: Instant,
    stage: usize,
    group: GroupIx,
    visit: u32,
    phase: Phase,
    caller: CallerData,
    ring_generation: u64,
    /// The escalation stage whose timer is armed (per visit), so re-checks do not pile up timers.
    escalation_armed: Option<usize>,
}

impl Call {
    fn key(&self) -> CallKey {
        (Reverse(self.priority), self.seq, self.id)
    }
}

/// The skills-based ACD.
pub struct Acd {
    epoch: Instant,
    no_answer_pause_after: u32,
    retry_delay: Duration,
    interval: Duration,
    skills: Interner,
    languages: Interner,
    queues: Vec<Queue>,
    queue_by_name: HashMap<String, QueueIx>,
    agents: Vec<Agent>,
    agent_by_id: HashMap<String, AgentIx>,
    calls: HashMap<CallId, Call>,
    groups: Groups,
    timers: Timers,
    outputs: VecDeque<Output>,
    dirty_agents: Vec<AgentIx>,
    dirty_calls: Vec<CallId>,
    next_seq: u64,
    rng: StdRng,
    store: Box<dyn CallbackStore>,
}

fn intern_skills(interner: &mut Interner, reqs: &[SkillRequirement]) -> Vec<(SkillIx, u8)> {
    reqs.iter()
        .map(|r| (interner.intern(&r.skill), r.min_level))
        .collect()
}

fn is_staffed(status: &AgentStatus) -> bool {
    !matches!(status, AgentStatus::LoggedOut | AgentStatus::Paused { .. })
}

impl Acd {
    /// A new engine. `seed` drives the random strategy; `now` is the statistics epoch.
    pub fn new(
        config: AcdConfig,
        store: Box<dyn CallbackStore>,
        seed: u64,
        now: Instant,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let mut skills = Interner::default();
        let mut languages = Interner::default();
        let queue_by_name: HashMap<String, QueueIx> = config
            .queues
            .iter()
            .enumerate()
            .map(|(i, q)| (q.name.clone(), i))
            .collect();
        let mut queues = Vec::with_capacity(config.queues.len());
        for q in &config.queues {
            let steps = q
                .escalation
                .iter()
                .map(|s| Step {
                    after: Duration::from_secs(s.after_secs),
                    relax: s
                        .relax
                        .iter()
                        .map(|(name, level)| (skills.intern(name), *level))
                        .collect(),
                    alternatives: s
                        .alternatives
                        .iter()
                        .map(|alt| intern_skills(&mut skills, alt))
                        .collect(),
                    add_languages: s
                        .add_languages
                        .iter()
                        .map(|l| languages.intern(l))
                        .collect(),
                    overflow: s
                        .overflow_to
                        .as_ref()
                        .and_then(|name| queue_by_name.get(name).copied()),
                })
                .collect();
            queues.push(Queue {
                id: QueueId::new(q.name.clone()),
                skills: intern_skills(&mut skills, &q.skills),
                language: q.language.as_ref().map(|l| languages.intern(l)),
                steps,
                order: q
                    .agent_order
                    .iter()
                    .enumerate()
                    .map(|(i, a)| (a.clone(), i as u64))
                    .collect(),
                cfg: q.clone(),
                line: BTreeSet::new(),
                customers: 0,
                callbacks: 0,
                groups: Vec::new(),
                handle_times: VecDeque::new(),
                rr_last: None,
                stats: Series::default(),
            });
        }
        let mut acd = Self {
            epoch: now,
            no_answer_pause_after: config.no_answer_pause_after,
            retry_delay: Duration::from_secs(config.retry_delay_secs),
            interval: Duration::from_secs(config.interval_secs),
            skills,
            languages,
            queues,
            queue_by_name,
            agents: Vec::new(),
            agent_by_id: HashMap::new(),
            calls: HashMap::new(),
            groups: Groups::default(),
            timers: Timers::default(),
            outputs: VecDeque::new(),
            dirty_agents: Vec::new(),
            dirty_calls: Vec::new(),
            next_seq: 0,
            rng: StdRng::seed_from_u64(seed),
            store,
        };
        for q in 0..acd.queues.len() {
            // The base group exists from the start so empty-queue policies see the agents.
            acd.group_for(q, 0, &[], None);
        }
        for agent in config.agents {
            acd.configure_agent(agent.id, agent.skills, agent.languages, now)
                .map_err(|_| ConfigError::EmptyName("agent"))?;
        }
        Ok(acd)
    }

    // ----- the sans-IO surface -------------------------------------------------------------

    /// Applies one input. On error nothing changed.
    pub fn handle(&mut self, input: Input, now: Instant) -> Result<(), AcdError> {
        let span = match input.call() {
            Some(call) => tracing::debug_span!("acd", call = %call),
            None => tracing::Span::none(),
        };
        let _entered = span.enter();
        let result = self.apply(input, now);
        self.route(now);
        result
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`Acd::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.timers.pop_due(now) {
            self.fire(timer, now);
            self.route(now);
        }
    }

    /// Puts persisted callbacks back in line (call once after a restart). Returns how many.
    pub fn restore_callbacks(&mut self, now: Instant) -> Result<usize, AcdError> {
        let records = self.store.load_all().map_err(|e| AcdError::Store(e.0))?;
        let mut restored = 0;
        for record in records {
            if self.calls.contains_key(&record.call) {
                continue;
            }
            let Some(&queue) = self.queue_by_name.get(&record.queue) else {
                warn!(call = %record.call, queue = %record.queue, "callback for unknown queue dropped");
                continue;
            };
            let extra = intern_skills(&mut self.skills, &record.skills);
            let language = record.language.as_ref().map(|l| self.languages.intern(l));
            let group = self.group_for(queue, 0, &extra, language);
            let joined_at = now
                .checked_sub(Duration::from_secs(record.waited_secs))
                .unwrap_or(now);
            let call = Call {
                id: record.call,
                kind: Kind::Callback,
                queue,
                extra,
                extra_cfg: record.skills,
                language,
                language_name: record.language,
                priority: record.priority.min(9),
                seq: record.seq,
                joined_at,
                entered_at: joined_at,
                stage: 0,
                group,
                visit: 0,
                phase: Phase::Waiting,
                caller: record.caller,
                ring_generation: 0,
                escalation_armed: None,
            };
            self.next_seq = self.next_seq.max(record.seq + 1);
            let key = call.key();
            self.groups.list[group].waiting.insert(key);
            self.queues[queue].line.insert(key);
            self.queues[queue].callbacks += 1;
            self.dirty_calls.push(call.id);
            self.calls.insert(call.id, call);
            restored += 1;
        }
        self.route(now);
        Ok(restored)
    }

    /// Gives the callback store back (e.g. to hand it to a new engine after a restart).
    pub fn into_callback_store(self) -> Box<dyn CallbackStore> {
        self.store
    }

    // ----- queries ------------------------------------------------------------------------

    pub fn agent_status(&self, agent: &str) -> Option<&AgentStatus> {
        self.agent_by_id.get(agent).map(|a| &self.agents[*a].status)
    }

    /// 1-based place in line of a call waiting or ringing (callbacks count as in line).
    pub fn position(&self, call: CallId) -> Option<usize> {
        let c = self.calls.get(&call)?;
        let key = c.key();
        let line = &self.queues[c.queue].line;
        line.contains(&key).then(|| line.range(..=key).count())
    }

    /// Expected wait of a call in line; see the crate docs for the formula.
    pub fn expected_wait(&self, call: CallId) -> Option<Duration> {
        let c = self.calls.get(&call)?;
        let position = self.position(call)?;
        let staffed = self.groups.list[c.group].staffed;
        expected_wait(position, staffed, self.recent_handle_time(c.queue))
    }

    /// The call this agent would be offered were it routable now (a routing decision without
    /// side effects).
    pub fn next_call_for_agent(&self, agent: &str, now: Instant) -> Option<CallId> {
        let a = *self.agent_by_id.get(agent)?;
        self.best_call_for_agent(a, now)
    }

    /// The agent a waiting call would be offered to now, if one is routable.
    pub fn next_agent_for_call(&self, call: CallId) -> Option<AgentId> {
        let c = self.calls.get(&call)?;
        self.pick_agent(c.group).map(|a| self.agents[a].id.clone())
    }

    pub fn queue_snapshot(&self, queue: &str, now: Instant) -> Option<QueueSnapshot> {
        let q = *self.queue_by_name.get(queue)?;
        let queue = &self.queues[q];
        let longest_wait = queue
            .line
            .iter()
            .filter_map(|(_, _, id)| self.calls.get(id))
            .filter(|c| c.kind == Kind::Customer)
            .map(|c| now.saturating_duration_since(c.entered_at))
            .max();
        let mut logged_in = std::collections::HashSet::new();
        let mut staffed = std::collections::HashSet::new();
        let mut available = std::collections::HashSet::new();
        for g in &queue.groups {
            for a in &self.groups.list[*g].members {
                logged_in.insert(*a);
                if is_staffed(&self.agents[*a].status) {
                    staffed.insert(*a);
                }
            }
            available.extend(self.groups.list[*g].available.iter().map(|k| k.2));
        }
        Some(QueueSnapshot {
            queue: queue.id.0.clone(),
            totals: queue.stats.live.clone(),
            waiting: queue.customers,
            callbacks_waiting: queue.callbacks,
            longest_wait,
            agents_logged_in: logged_in.len(),
            agents_staffed: staffed.len(),
            agents_available: available.len(),
            recent_handle_time: self.recent_handle_time(q),
        })
    }

    /// Closed and current intervals of a queue by interval index.
    pub fn queue_intervals(&self, queue: &str) -> Option<BTreeMap<u64, QueueCounters>> {
        let q = *self.queue_by_name.get(queue)?;
        Some(self.queues[q].stats.intervals())
    }

    pub fn agent_snapshot(&self, agent: &str, now: Instant) -> Option<AgentSnapshot> {
        let a = &self.agents[*self.agent_by_id.get(agent)?];
        let in_state = now.saturating_duration_since(a.since);
        let mut totals = a.stats.live.clone();
        add_state_time(&mut totals, &a.status, in_state);
        Some(AgentSnapshot {
            agent: a.id.0.clone(),
            state: a.status.name(),
            in_state_for: in_state,
            totals,
        })
    }

    pub fn agent_intervals(&self, agent: &str) -> Option<BTreeMap<u64, AgentCounters>> {
        let a = *self.agent_by_id.get(agent)?;
        Some(self.agents[a].stats.intervals())
    }

    /// Index of the statistics interval containing `now`.
    pub fn interval_index(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.epoch).as_secs();
        since / self.interval.as_secs().max(1)
    }

    pub fn queue_names(&self) -> impl Iterator<Item = &str> {
        self.queues.iter().map(|q| q.id.0.as_str())
    }

    // ----- inputs -------------------------------------------------------------------------

    fn agent_ix(&self, agent: &AgentId) -> Result<AgentIx, AcdError> {
        self.agent_by_id
            .get(&agent.0)
            .copied()
            .ok_or_else(|| AcdError::UnknownAgent(agent.0.clone()))
    }

    fn agent_error(&self, a: AgentIx, action: &'static str) -> AcdError {
        AcdError::AgentState {
            agent: self.agents[a].id.0.clone(),
            action,
            state: self.agents[a].status.name(),
        }
    }

    fn apply(&mut self, input: Input, now: Instant) -> Result<(), AcdError> {
        match input {
            Input::AgentConfigured(cfg) => {
                self.configure_agent(cfg.id, cfg.skills, cfg.languages, now)
            }
            Input::AgentLogin { agent } => {
                let a = self.agent_ix(&agent)?;
                self.login(a, now);
                Ok(())
            }
            Input::AgentLogout { agent } => {
                let a = self.agent_ix(&agent)?;
                self.request_unavailable(a, Pending::Logout, now)
            }
            Input::AgentPause { agent, reason } => {
                let a = self.agent_ix(&agent)?;
                self.request_unavailable(a, Pending::Pause(reason), now)
            }
            Input::AgentReady { agent } => {
                let a = self.agent_ix(&agent)?;
                self.ready(a, now)
            }
            Input::AgentEndWrapUp { agent } => {
                let a = self.agent_ix(&agent)?;
                if !matches!(self.agents[a].status, AgentStatus::WrapUp { .. }) {
                    return Err(self.agent_error(a, "end wrap-up"));
                }
                self.finish_wrap_up(a, now);
                Ok(())
            }
            Input::AgentRegistered { agent } => {
                let a = self.agent_ix(&agent)?;
                self.agents[a].registered = true;
                let agent = &mut self.agents[a];
                if matches!(&agent.pending, Some(Pending::Pause(r)) if r == UNREGISTERED) {
                    agent.pending = None;
                }
                if matches!(&agent.status, AgentStatus::Paused { reason } if reason == UNREGISTERED)
                {
                    self.make_available(a, now, StateReason::Registered, false);
                }
                Ok(())
            }
            Input::AgentUnregistered { agent } => {
                let a = self.agent_ix(&agent)?;
                self.agents[a].registered = false;
                match self.agents[a].status {
                    AgentStatus::LoggedOut | AgentStatus::Paused { .. } => Ok(()),
                    AgentStatus::WrapUp { .. } | AgentStatus::OnCall { .. } => Ok(()),
                    _ => self.request_unavailable(a, Pending::Pause(UNREGISTERED.to_owned()), now),
                }
            }
            Input::CallJoin(join) => self.join(join, now),
            Input::CallerHungUp { call } => self.caller_hung_up(call, now),
            Input::OfferAnswered { call, agent } => {
                let a = self.agent_ix(&agent)?;
                self.answered(call, a, now)
            }
            Input::OfferRejected { call, agent } => {
                let a = self.agent_ix(&agent)?;
                self.check_offer(call, a)?;
                self.end_offer(call, a, OfferOutcome::Rejected, now);
                Ok(())
            }
            Input::OfferTimedOut { call, agent } => {
                let a = self.agent_ix(&agent)?;
                self.check_offer(call, a)?;
                self.end_offer(call, a, OfferOutcome::NoAnswer, now);
                Ok(())
            }
            Input::CallEnded { call } => self.call_ended(call, now),
            Input::CallbackRequested { call } => self.callback_requested(call, now),
            Input::CallbackConnected { call } => self.callback_connected(call, now),
            Input::CallbackFailed { call } => self.callback_failed(call, now),
        }
    }

    fn configure_agent(
        &mut self,
        id: String,
        skills: BTreeMap<String, u8>,
        languages: Vec<String>,
        now: Instant,
    ) -> Result<(), AcdError> {
        if id.is_empty() {
            return Err(AcdError::UnknownAgent(id));
        }
        if let Some(level) = skills.values().find(|l| !(1..=10).contains(*l)) {
            return Err(AcdError::Level(*level));
        }
        let mut skill_list: Vec<(SkillIx, u8)> = skills
            .iter()
            .map(|(name, level)| (self.skills.intern(name), *level))
            .collect();
        skill_list.sort_unstable();
        let mut lang_list: Vec<LangIx> =
            languages.iter().map(|l| self.languages.intern(l)).collect();
        lang_list.sort_unstable();
        lang_list.dedup();
        let Some(&a) = self.agent_by_id.get(&id) else {
            let a = self.agents.len();
            self.agents.push(Agent {
                id: AgentId::new(id.clone()),
                config_order: a as u64,
                skills: skill_list,
                languages: lang_list,
                status: AgentStatus::LoggedOut,
                since: now,
                registered: true,
                groups: Vec::new(),
                keys: Vec::new(),
                cooling: false,
                misses: 0,
                pending: None,
                session_answered: 0,
                session_talk: Duration::ZERO,
                idle_since: now,
                generation: 0,
                wrap: None,
                stats: Series::default(),
            });
            self.agent_by_id.insert(id, a);
            return Ok(());
        };
        if self.agents[a].status == AgentStatus::LoggedOut {
            self.agents[a].skills = skill_list;
            self.agents[a].languages = lang_list;
            return Ok(());
        }
        // Logged in: re-index under the new skills.
        let old_queues = self.detach(a);
        self.agents[a].skills = skill_list;
        self.agents[a].languages = lang_list;
        self.attach(a);
        if self.is_routable(a) {
            self.make_routable(a);
        }
        self.check_leave_when_empty(old_queues, now);
        Ok(())
    }

    fn login(&mut self, a: AgentIx, now: Instant) {
        if self.agents[a].status != AgentStatus::LoggedOut {
            return;
        }
        let agent = &mut self.agents[a];
        agent.session_answered = 0;
        agent.session_talk = Duration::ZERO;
        agent.misses = 0;
        agent.pending = None;
        agent.idle_since = now;
        let status = if agent.registered {
            AgentStatus::Available
        } else {
            AgentStatus::Paused {
                reason: UNREGISTERED.to_owned(),
            }
        };
        self.set_status(a, status, StateReason::Login, now);
        self.attach(a);
        if self.is_routable(a) {
            self.make_routable(a);
        }
    }

    /// Pause or logout: now when possible, else after the current call.
    fn request_unavailable(
        &mut self,
        a: AgentIx,
        what: Pending,
        now: Instant,
    ) -> Result<(), AcdError> {
        let action = match what {
            Pending::Logout => "log out",
            Pending::Pause(_) => "pause",
        };
        match self.agents[a].status.clone() {
            AgentStatus::LoggedOut => {
                if matches!(what, Pending::Logout) {
                    return Ok(());
                }
                Err(self.agent_error(a, action))
            }
            AgentStatus::Available | AgentStatus::Paused { .. } => {
                self.apply_unavailable(a, what, now);
                Ok(())
            }
            AgentStatus::Reserved { call } => {
                self.agents[a].pending = Some(what);
                let dialling = self
                    .calls
                    .get(&call)
                    .is_some_and(|c| matches!(c.phase, Phase::Dialling(_)));
                if !dialling {
                    self.end_offer(
                        call,
                        a,
                        OfferOutcome::Cancelled(CancelReason::AgentUnavailable),
                        now,
                    );
                }
                Ok(())
            }
            AgentStatus::OnCall { .. } => {
                self.agents[a].pending = Some(what);
                Ok(())
            }
            AgentStatus::WrapUp { .. } => {
                self.agents[a].pending = Some(what);
                self.finish_wrap_up(a, now);
                Ok(())
            }
        }
    }

    fn apply_unavailable(&mut self, a: AgentIx, what: Pending, now: Instant) {
        self.make_unroutable(a);
        self.agents[a].cooling = false;
        match what {
            Pending::Logout => {
                let queues = self.detach(a);
                self.groups.note_logout(a, &self.agents[a].skills.clone());
                self.set_status(a, AgentStatus::LoggedOut, StateReason::Logout, now);
                self.check_leave_when_empty(queues, now);
            }
            Pending::Pause(reason) => {
                let state_reason = if reason == UNREGISTERED {
                    StateReason::Unregistered
                } else {
                    StateReason::Pause
                };
                self.set_status(a, AgentStatus::Paused { reason }, state_reason, now);
                let queues = self.agent_queues(a);
                self.check_leave_when_empty(queues, now);
            }
        }
    }

    fn ready(&mut self, a: AgentIx, now: Instant) -> Result<(), AcdError> {
        match self.agents[a].status {
            AgentStatus::LoggedOut => Err(self.agent_error(a, "become ready")),
            AgentStatus::Paused { .. } => {
                self.make_available(a, now, StateReason::Ready, false);
                Ok(())
            }
            AgentStatus::Available => Ok(()),
            _ => {
                self.agents[a].pending = None;
                Ok(())
            }
        }
    }

    fn join(&mut self, join: CallJoin, now: Instant) -> Result<(), AcdError> {
        if self.calls.contains_key(&join.call) {
            return Err(AcdError::DuplicateCall(join.call));
        }
        let queue = *self
            .queue_by_name
            .get(&join.queue.0)
            .ok_or_else(|| AcdError::UnknownQueue(join.queue.0.clone()))?;
        if join.priority > 9 {
            return Err(AcdError::Priority(join.priority));
        }
        if let Some(bad) = join
            .skills
            .iter()
            .find(|s| !(1..=10).contains(&s.min_level))
        {
            return Err(AcdError::Level(bad.min_level));
        }
        let extra = intern_skills(&mut self.skills, &join.skills);
        let language = join.language.as_ref().map(|l| self.languages.intern(l));
        let seq = self.next_seq;
        self.next_seq += 1;
        let call = Call {
            id: join.call,
            kind: Kind::Customer,
            queue,
            extra,
            extra_cfg: join.skills,
            language,
            language_name: join.language,
            priority: join.priority,
            seq,
            joined_at: now,
            entered_at: now,
            stage: 0,
            group: 0,
            visit: 0,
            phase: Phase::Waiting,
            caller: join.caller,
            ring_generation: 0,
            escalation_armed: None,
        };
        self.enter_queue(call, now);
        Ok(())
    }

    /// Puts a customer call into its queue (on join or overflow), or refuses it with a reason.
    fn enter_queue(&mut self, mut call: Call, now: Instant) {
        let q = call.queue;
        let interval = self.interval_index(now);
        self.queues[q].stats.record(interval, |c| c.offered += 1);
        self.outputs.push_back(Output::Event(AcdEvent::CallJoined {
            call: call.id,
            queue: self.queues[q].id.clone(),
            priority: call.priority,
            at: now,
        }));
        debug!(call = %call.id, queue = %self.queues[q].id, "call joined queue");
        let cfg = &self.queues[q].cfg;
        let refusal = if cfg
            .max_length
            .is_some_and(|max| self.queues[q].customers >= max)
        {
            Some(LeaveReason::Full)
        } else if self.queue_is_empty(q, cfg.join_empty) {
            Some(LeaveReason::NoAgents)
        } else {
            None
        };
        if let Some(reason) = refusal {
            self.record_exit(q, call.id, reason, Duration::ZERO, now);
            return;
        }
        call.stage = 0;
        call.entered_at = now;
        call.visit += 1;
        call.phase = Phase::Waiting;
        call.escalation_armed = None;
        call.group = self.group_for(q, 0, &call.extra, call.language);
        let key = call.key();
        self.groups.list[call.group].waiting.insert(key);
        let queue = &mut self.queues[q];
        queue.line.insert(key);
        queue.customers += 1;
        if let Some(max) = queue.cfg.max_wait_secs {
            self.timers.arm(
                now + Duration::from_secs(max),
                Timer::MaxWait {
                    call: call.id,
                    visit: call.visit,
                },
            );
        }
        if let Some(every) = queue.cfg.announce_every_secs {
            self.timers.arm(
                now + Duration::from_secs(every),
                Timer::Announce {
                    call: call.id,
                    visit: call.visit,
                },
            );
        }
        if let Some(step) = queue.steps.first() {
            call.escalation_armed = Some(0);
            self.timers.arm(
                now + step.after,
                Timer::Escalate {
                    call: call.id,
                    visit: call.visit,
                },
            );
        }
        self.dirty_calls.push(call.id);
        self.calls.insert(call.id, call);
    }

    fn caller_hung_up(&mut self, c: CallId, now: Instant) -> Result<(), AcdError> {
        let call = self.calls.get(&c).ok_or(AcdError::UnknownCall(c))?;
        match (call.kind, call.phase.clone()) {
            (_, Phase::Connected { .. }) => self.call_ended(c, now),
            (Kind::Callback, Phase::Dialling(_)) => self.callback_failed(c, now),
            (Kind::Callback, _) => {
                let key = call.key();
                let (q, g) = (call.queue, call.group);
                self.groups.list[g].waiting.remove(&key);
                self.queues[q].line.remove(&key);
                self.queues[q].callbacks -= 1;
                self.calls.remove(&c);
                self.forget_callback(c);
                self.outputs
                    .push_back(Output::Event(AcdEvent::CallbackFinished {
                        call: c,
                        outcome: CallbackOutcome::Cancelled,
                        at: now,
                    }));
                Ok(())
            }
            (Kind::Customer, _) => {
                self.release_offers(c, CancelReason::CallerHungUp, now);
                self.leave(c, LeaveReason::CallerHungUp, now);
                self.calls.remove(&c);
                Ok(())
            }
        }
    }

    fn check_offer(&self, c: CallId, a: AgentIx) -> Result<(), AcdError> {
        let call = self.calls.get(&c).ok_or(AcdError::UnknownCall(c))?;
        match &call.phase {
            Phase::Offering(agents) if agents.contains(&a) => Ok(()),
            _ => Err(AcdError::NoSuchOffer {
                call: c,
                agent: self.agents[a].id.0.clone(),
            }),
        }
    }

    fn answered(&mut self, c: CallId, a: AgentIx, now: Instant) -> Result<(), AcdError> {
        self.check_offer(c, a)?;
        let Some(call) = self.calls.get_mut(&c) else {
            return Err(AcdError::UnknownCall(c));
        };
        let Phase::Offering(agents) = std::mem::replace(&mut call.phase, Phase::Waiting) else {
            return Err(AcdError::NotWaiting(c));
        };
        for other in agents.into_iter().filter(|o| *o != a) {
            self.cancel_one(c, other, CancelReason::AnsweredElsewhere, now);
        }
        self.outputs.push_back(Output::Event(AcdEvent::OfferEnded {
            call: c,
            agent: self.agents[a].id.clone(),
            outcome: OfferOutcome::Answered,
            at: now,
        }));
        let interval = self.interval_index(now);
        let agent = &mut self.agents[a];
        agent.misses = 0;
        agent.session_answered += 1;
        agent.stats.record(interval, |s| s.answered += 1);
        self.set_status(
            a,
            AgentStatus::OnCall { call: c },
            StateReason::Answered,
            now,
        );
        let agent_id = self.agents[a].id.clone();
        self.leave(c, LeaveReason::Answered { agent: agent_id }, now);
        if let Some(call) = self.calls.get_mut(&c) {
            call.phase = Phase::Connected {
                agent: a,
                since: now,
            };
        }
        Ok(())
    }

    fn call_ended(&mut self, c: CallId, now: Instant) -> Result<(), AcdError> {
        let call = self.calls.get(&c).ok_or(AcdError::UnknownCall(c))?;
        let Phase::Connected { agent: a, since } = call.phase else {
            return Err(AcdError::NotWaiting(c));
        };
        let q = call.queue;
        self.calls.remove(&c);
        let talk = now.saturating_duration_since(since);
        let interval = self.interval_index(now);
        self.queues[q]
            .stats
            .record(interval, |s| s.talk_time += talk);
        self.agents[a].session_talk += talk;
        self.outputs.push_back(Output::Event(AcdEvent::CallEnded {
            call: c,
            agent: self.agents[a].id.clone(),
            talk,
            at: now,
        }));
        if self.agents[a].status != (AgentStatus::OnCall { call: c }) {
            return Ok(());
        }
        let wrap = self.queues[q].cfg.wrap_up();
        self.agents[a].wrap = Some((q, talk));
        if wrap.is_zero() {
            self.finish_wrap_up(a, now);
        } else {
            self.set_status(
                a,
                AgentStatus::WrapUp { call: c },
                StateReason::CallEnded,
                now,
            );
            let generation = self.agents[a].generation;
            self.timers.arm(
                now + wrap,
                Timer::AgentWake {
                    agent: a,
                    generation,
                },
            );
        }
        Ok(())
    }

    fn callback_requested(&mut self, c: CallId, now: Instant) -> Result<(), AcdError> {
        let call = self.calls.get(&c).ok_or(AcdError::UnknownCall(c))?;
        if call.kind != Kind::Customer || !matches!(call.phase, Phase::Waiting | Phase::Offering(_))
        {
            return Err(AcdError::NotWaiting(c));
        }
        let record = CallbackRecord {
            call: c,
            queue: self.queues[call.queue].id.0.clone(),
            priority: call.priority,
            seq: call.seq,
            waited_secs: now.saturating_duration_since(call.joined_at).as_secs(),
            skills: call.extra_cfg.clone(),
            language: call.language_name.clone(),
            caller: call.caller.clone(),
        };
        self.store.save(&record).map_err(|e| AcdError::Store(e.0))?;
        self.release_offers(c, CancelReason::CallLeft, now);
        self.leave(c, LeaveReason::CallbackScheduled, now);
        let Some(call) = self.calls.get_mut(&c) else {
            return Ok(());
        };
        call.kind = Kind::Callback;
        call.phase = Phase::Waiting;
        let key = call.key();
        let (q, g) = (call.queue, call.group);
        self.groups.list[g].waiting.insert(key);
        self.queues[q].line.insert(key);
        self.queues[q].callbacks += 1;
        self.outputs
            .push_back(Output::Event(AcdEvent::CallbackQueued {
                call: c,
                queue: self.queues[q].id.clone(),
                at: now,
            }));
        self.dirty_calls.push(c);
        Ok(())
    }

    fn dialling_agent(&self, c: CallId) -> Result<AgentIx, AcdError> {
        match self.calls.get(&c) {
            None => Err(AcdError::UnknownCall(c)),
            Some(call) => match (call.kind, &call.phase) {
                (Kind::Callback, Phase::Dialling(a)) => Ok(*a),
                _ => Err(AcdError::NotCallback(c)),
            },
        }
    }

    fn callback_connected(&mut self, c: CallId, now: Instant) -> Result<(), AcdError> {
        let a = self.dialling_agent(c)?;
        let interval = self.interval_index(now);
        if let Some(call) = self.calls.get_mut(&c) {
            call.phase = Phase::Connected {
                agent: a,
                since: now,
            };
            let q = call.queue;
            self.queues[q]
                .stats
                .record(interval, |s| s.callbacks_connected += 1);
        }
        self.forget_callback(c);
        let agent = &mut self.agents[a];
        agent.session_answered += 1;
        agent.misses = 0;
        agent.stats.record(interval, |s| s.answered += 1);
        self.set_status(
            a,
            AgentStatus::OnCall { call: c },
            StateReason::Answered,
            now,
        );
        self.outputs
            .push_back(Output::Event(AcdEvent::CallbackFinished {
                call: c,
                outcome: CallbackOutcome::Connected,
                at: now,
            }));
        Ok(())
    }

    fn callback_failed(&mut self, c: CallId, now: Instant) -> Result<(), AcdError> {
        let a = self.dialling_agent(c)?;
        let interval = self.interval_index(now);
        if let Some(call) = self.calls.remove(&c) {
            self.queues[call.queue]
                .stats
                .record(interval, |s| s.callbacks_failed += 1);
        }
        self.forget_callback(c);
        self.outputs
            .push_back(Output::Event(AcdEvent::CallbackFinished {
                call: c,
                outcome: CallbackOutcome::Failed,
                at: now,
            }));
        self.make_available(a, now, StateReason::CallbackFailed, false);
        Ok(())
    }

    fn forget_callback(&mut self, c: CallId) {
        if let Err(e) = self.store.remove(c) {
            warn!(call = %c, error = %e, "could not remove callback from the store");
        }
    }

    // ----- timers -------------------------------------------------------------------------

    fn fire(&mut self, timer: Timer, now: Instant) {
        match timer {
            Timer::Ring { call, generation } => {
                let Some(c) = self.calls.get_mut(&call) else {
                    return;
                };
                if c.ring_generation != generation {
                    return;
                }
                let Phase::Offering(agents) = &c.phase else {
                    return;
                };
                for a in agents.clone() {
                    self.outputs.push_back(Output::CancelOffer {
                        call,
                        agent: self.agents[a].id.clone(),
                        reason: CancelReason::RingTimeout,
                    });
                    self.end_offer(call, a, OfferOutcome::NoAnswer, now);
                }
            }
            Timer::MaxWait { call, visit } => {
                let live = self.calls.get(&call).is_some_and(|c| {
                    c.visit == visit
                        && c.kind == Kind::Customer
                        && matches!(c.phase, Phase::Waiting | Phase::Offering(_))
                });
                if live {
                    self.release_offers(call, CancelReason::CallLeft, now);
                    self.leave(call, LeaveReason::Timeout, now);
                    self.calls.remove(&call);
                }
            }
            Timer::Escalate { call, visit } => {
                if self.calls.get(&call).is_some_and(|c| c.visit == visit) {
                    self.apply_due_escalations(call, now);
                }
            }
            Timer::Announce { call, visit } => {
                let Some(c) = self.calls.get(&call) else {
                    return;
                };
                if c.visit != visit || c.kind != Kind::Customer {
                    return;
                }
                let q = c.queue;
                if let Some(position) = self.position(call) {
                    self.outputs.push_back(Output::Announcement {
                        call,
                        queue: self.queues[q].id.clone(),
                        position,
                        expected_wait: self.expected_wait(call),
                    });
                }
                if let Some(every) = self.queues[q].cfg.announce_every_secs {
                    self.timers.arm(
                        now + Duration::from_secs(every),
                        Timer::Announce { call, visit },
                    );
                }
            }
            Timer::AgentWake { agent, generation } => {
                let Some(a) = self.agents.get(agent) else {
                    return;
                };
                if a.generation != generation {
                    return;
                }
                match a.status {
                    AgentStatus::WrapUp { .. } => self.finish_wrap_up(agent, now),
                    AgentStatus::Available if a.cooling => {
                        self.agents[agent].cooling = false;
                        self.make_routable(agent);
                    }
                    _ => {}
                }
            }
        }
    }

    /// Applies every escalation step whose time has come. An overflow step moves a waiting call
    /// to the other queue; a ringing call overflows when its offer ends.
    fn apply_due_escalations(&mut self, c: CallId, now: Instant) {
        let mut changed = false;
        for _ in 0..64 {
            let Some(call) = self.calls.get(&c) else {
                return;
            };
            if call.kind != Kind::Customer {
                return;
            }
            let q = call.queue;
            let Some(step) = self.queues[q].steps.get(call.stage) else {
                break;
            };
            if call.entered_at + step.after > now {
                if call.escalation_armed != Some(call.stage) {
                    let (at, visit, stage) = (call.entered_at + step.after, call.visit, call.stage);
                    self.timers.arm(at, Timer::Escalate { call: c, visit });
                    if let Some(call) = self.calls.get_mut(&c) {
                        call.escalation_armed = Some(stage);
                    }
                }
                break;
            }
            if let Some(to) = step.overflow {
                if call.phase != Phase::Waiting {
                    break;
                }
                self.overflow(c, to, now);
                return;
            }
            let stage = call.stage + 1;
            let (extra, language) = (call.extra.clone(), call.language);
            let group = self.group_for(q, stage, &extra, language);
            let Some(call) = self.calls.get_mut(&c) else {
                return;
            };
            let old_group = call.group;
            call.stage = stage;
            call.group = group;
            let key = call.key();
            if call.phase == Phase::Waiting && old_group != group {
                self.groups.list[old_group].waiting.remove(&key);
                self.groups.list[group].waiting.insert(key);
                changed = true;
            }
            self.outputs
                .push_back(Output::Event(AcdEvent::CallEscalated {
                    call: c,
                    queue: self.queues[q].id.clone(),
                    step: stage - 1,
                    at: now,
                }));
            debug!(call = %c, step = stage - 1, "escalation step applied");
        }
        if changed {
            self.dirty_calls.push(c);
        }
    }

    fn overflow(&mut self, c: CallId, to: QueueIx, now: Instant) {
        let to_id = self.queues[to].id.clone();
        self.leave(c, LeaveReason::Overflow { to: to_id }, now);
        if let Some(mut call) = self.calls.remove(&c) {
            call.queue = to;
            self.enter_queue(call, now);
        }
    }

    // ----- offers -------------------------------------------------------------------------

    fn offer(&mut self, c: CallId, a: AgentIx, now: Instant) {
        let Some(call) = self.calls.get(&c) else {
            return;
        };
        let (q, g, key, kind) = (call.queue, call.group, call.key(), call.kind);
        self.groups.list[g].waiting.remove(&key);
        if kind == Kind::Callback {
            self.queues[q].line.remove(&key);
            self.queues[q].callbacks -= 1;
            self.make_unroutable(a);
            self.set_status(
                a,
                AgentStatus::Reserved { call: c },
                StateReason::CallbackDial,
                now,
            );
            let caller = self
                .calls
                .get(&c)
                .map(|c| c.caller.clone())
                .unwrap_or_default();
            if let Some(call) = self.calls.get_mut(&c) {
                call.phase = Phase::Dialling(a);
            }
            self.outputs.push_back(Output::CallbackDial {
                call: c,
                agent: self.agents[a].id.clone(),
                queue: self.queues[q].id.clone(),
                caller,
            });
            return;
        }
        let mut agents = vec![a];
        if self.queues[q].cfg.strategy == Strategy::RingAll {
            agents.extend(
                self.groups.list[g]
                    .available
                    .iter()
                    .map(|k| k.2)
                    .filter(|x| *x != a),
            );
        }
        if self.queues[q].cfg.strategy == Strategy::RoundRobin {
            self.queues[q].rr_last = Some(self.agent_order(q, a));
        }
        let ring_timeout = self.queues[q].cfg.ring_timeout();
        let interval = self.interval_index(now);
        let caller = self
            .calls
            .get(&c)
            .map(|c| c.caller.clone())
            .unwrap_or_default();
        for &x in &agents {
            self.make_unroutable(x);
            self.agents[x].stats.record(interval, |s| s.offered += 1);
            self.set_status(
                x,
                AgentStatus::Reserved { call: c },
                StateReason::Offered,
                now,
            );
            self.outputs.push_back(Output::Offer(Offer {
                call: c,
                agent: self.agents[x].id.clone(),
                queue: self.queues[q].id.clone(),
                ring_timeout,
                caller: caller.clone(),
            }));
            self.outputs.push_back(Output::Event(AcdEvent::CallOffered {
                call: c,
                queue: self.queues[q].id.clone(),
                agent: self.agents[x].id.clone(),
                at: now,
            }));
        }
        debug!(call = %c, agents = agents.len(), "call offered");
        if let Some(call) = self.calls.get_mut(&c) {
            call.ring_generation += 1;
            call.phase = Phase::Offering(agents);
            let generation = call.ring_generation;
            self.timers.arm(
                now + ring_timeout,
                Timer::Ring {
                    call: c,
                    generation,
                },
            );
        }
    }

    /// One agent's offer ends without an answer; the call goes back in line when no offer is left.
    fn end_offer(&mut self, c: CallId, a: AgentIx, outcome: OfferOutcome, now: Instant) {
        let Some(call) = self.calls.get_mut(&c) else {
            return;
        };
        let Phase::Offering(agents) = &mut call.phase else {
            return;
        };
        agents.retain(|x| *x != a);
        let none_left = agents.is_empty();
        match outcome {
            OfferOutcome::Cancelled(reason) => self.cancel_one(c, a, reason, now),
            _ => self.release_missed(c, a, outcome, now),
        }
        if none_left {
            self.back_in_line(c, now);
        }
    }

    fn back_in_line(&mut self, c: CallId, now: Instant) {
        let Some(call) = self.calls.get_mut(&c) else {
            return;
        };
        call.phase = Phase::Waiting;
        let (g, key) = (call.group, call.key());
        self.groups.list[g].waiting.insert(key);
        self.dirty_calls.push(c);
        self.apply_due_escalations(c, now);
    }

    /// Withdraws every offer of a call that is leaving the line.
    fn release_offers(&mut self, c: CallId, reason: CancelReason, now: Instant) {
        let Some(call) = self.calls.get_mut(&c) else {
            return;
        };
        if let Phase::Offering(agents) = std::mem::replace(&mut call.phase, Phase::Waiting) {
            for a in agents {
                self.cancel_one(c, a, reason, now);
            }
        }
    }

    fn cancel_one(&mut self, c: CallId, a: AgentIx, reason: CancelReason, now: Instant) {
        self.outputs.push_back(Output::CancelOffer {
            call: c,
            agent: self.agents[a].id.clone(),
            reason,
        });
        self.outputs.push_back(Output::Event(AcdEvent::OfferEnded {
            call: c,
            agent: self.agents[a].id.clone(),
            outcome: OfferOutcome::Cancelled(reason),
            at: now,
        }));
        if self.agents[a].status == (AgentStatus::Reserved { call: c }) {
            self.make_available(a, now, StateReason::OfferCancelled, false);
        }
    }

    fn release_missed(&mut self, c: CallId, a: AgentIx, outcome: OfferOutcome, now: Instant) {
        self.outputs.push_back(Output::Event(AcdEvent::OfferEnded {
            call: c,
            agent: self.agents[a].id.clone(),
            outcome,
            at: now,
        }));
        if self.agents[a].status != (AgentStatus::Reserved { call: c }) {
            return;
        }
        let interval = self.interval_index(now);
        if outcome == OfferOutcome::NoAnswer {
            let agent = &mut self.agents[a];
            agent.misses += 1;
            agent.stats.record(interval, |s| s.no_answer += 1);
            if self.no_answer_pause_after > 0 && agent.misses >= self.no_answer_pause_after {
                agent.misses = 0;
                if !matches!(agent.pending, Some(Pending::Logout)) {
                    agent.pending = Some(Pending::Pause(NO_ANSWER.to_owned()));
                }
            }
            self.make_available(a, now, StateReason::NoAnswer, true);
        } else {
            self.agents[a].stats.record(interval, |s| s.rejected += 1);
            self.make_available(a, now, StateReason::Rejected, true);
        }
    }

    // ----- leaving ------------------------------------------------------------------------

    /// Takes a customer call out of its queue's line and reports the exit. The caller of this
    /// decides what becomes of the call entry.
    fn leave(&mut self, c: CallId, reason: LeaveReason, now: Instant) {
        let Some(call) = self.calls.get_mut(&c) else {
            return;
        };
        call.visit += 1;
        let (q, g, key) = (call.queue, call.group, call.key());
        let waited = now.saturating_duration_since(call.entered_at);
        self.groups.list[g].waiting.remove(&key);
        let queue = &mut self.queues[q];
        if queue.line.remove(&key) {
            queue.customers = queue.customers.saturating_sub(1);
        }
        self.record_exit(q, c, reason, waited, now);
    }

    fn record_exit(
        &mut self,
        q: QueueIx,
        c: CallId,
        reason: LeaveReason,
        waited: Duration,
        now: Instant,
    ) {
        let interval = self.interval_index(now);
        let queue = &mut self.queues[q];
        let target = queue.cfg.service_level_target();
        let short = Duration::from_secs(queue.cfg.short_abandon_secs);
        queue.stats.record(interval, |s| match &reason {
            LeaveReason::Answered { .. } => {
                s.answered += 1;
                s.answer_wait += waited;
                if waited <= target {
                    s.answered_within_target += 1;
                }
            }
            LeaveReason::CallerHungUp if waited < short => s.short_abandoned += 1,
            LeaveReason::CallerHungUp => s.abandoned += 1,
            LeaveReason::Timeout => s.timed_out += 1,
            LeaveReason::Full => s.full += 1,
            LeaveReason::NoAgents => s.no_agents += 1,
            LeaveReason::Overflow { .. } => s.overflowed += 1,
            LeaveReason::CallbackScheduled => s.callbacks_requested += 1,
        });
        debug!(call = %c, queue = %queue.id, reason = reason.as_str(), "call left queue");
        self.outputs.push_back(Output::CallLeft {
            call: c,
            queue: queue.id.clone(),
            reason: reason.clone(),
            waited,
        });
        self.outputs.push_back(Output::Event(AcdEvent::CallLeft {
            call: c,
            queue: queue.id.clone(),
            reason,
            waited,
            at: now,
        }));
    }

    fn queue_is_empty(&self, q: QueueIx, rule: EmptyRule) -> bool {
        let groups = &self.queues[q].groups;
        match rule {
            EmptyRule::Never => false,
            EmptyRule::NoAgentsLoggedIn => groups
                .iter()
                .all(|g| self.groups.list[*g].members.is_empty()),
            EmptyRule::NoAgentsStaffed => groups.iter().all(|g| self.groups.list[*g].staffed == 0),
        }
    }

    fn check_leave_when_empty(&mut self, queues: Vec<QueueIx>, now: Instant) {
        for q in queues {
            if !self.queue_is_empty(q, self.queues[q].cfg.leave_when_empty) {
                continue;
            }
            let customers: Vec<CallId> = self.queues[q]
                .line
                .iter()
                .map(|k| k.2)
                .filter(|c| self.calls.get(c).is_some_and(|c| c.kind == Kind::Customer))
                .collect();
            for c in customers {
                self.release_offers(c, CancelReason::CallLeft, now);
                self.leave(c, LeaveReason::NoAgents, now);
                self.calls.remove(&c);
            }
        }
    }

    // ----- agents -------------------------------------------------------------------------

    fn set_status(&mut self, a: AgentIx, status: AgentStatus, reason: StateReason, now: Instant) {
        let interval = self.interval_index(now);
        let agent = &mut self.agents[a];
        let previous = std::mem::replace(&mut agent.status, status.clone());
        let spent = now.saturating_duration_since(agent.since);
        agent.since = now;
        agent.generation += 1;
        agent
            .stats
            .record(interval, |s| add_state_time(s, &previous, spent));
        let (was, is) = (is_staffed(&previous), is_staffed(&status));
        if was != is {
            for g in &agent.groups {
                let group = &mut self.groups.list[*g];
                if is {
                    group.staffed += 1;
                } else {
                    group.staffed = group.staffed.saturating_sub(1);
                }
            }
        }
        self.outputs.push_back(Output::AgentState(AgentStateChange {
            agent: agent.id.clone(),
            at: now,
            previous,
            current: status,
            reason,
        }));
    }

    /// Back to available (or to a pending pause/logout). `rest` applies the retry delay.
    fn make_available(&mut self, a: AgentIx, now: Instant, reason: StateReason, rest: bool) {
        if let Some(pending) = self.agents[a].pending.take() {
            self.apply_unavailable(a, pending, now);
            return;
        }
        if !self.agents[a].registered {
            self.apply_unavailable(a, Pending::Pause(UNREGISTERED.to_owned()), now);
            return;
        }
        self.make_unroutable(a);
        self.set_status(a, AgentStatus::Available, reason, now);
        self.agents[a].idle_since = now;
        if rest && !self.retry_delay.is_zero() {
            self.agents[a].cooling = true;
            let generation = self.agents[a].generation;
            self.timers.arm(
                now + self.retry_delay,
                Timer::AgentWake {
                    agent: a,
                    generation,
                },
            );
        } else {
            self.agents[a].cooling = false;
            self.make_routable(a);
        }
    }

    fn finish_wrap_up(&mut self, a: AgentIx, now: Instant) {
        let agent = &mut self.agents[a];
        let wrap_time = if matches!(agent.status, AgentStatus::WrapUp { .. }) {
            now.saturating_duration_since(agent.since)
        } else {
            Duration::ZERO
        };
        if let Some((q, talk)) = agent.wrap.take() {
            let handle = talk + wrap_time;
            let interval = self.interval_index(now);
            let queue = &mut self.queues[q];
            queue.stats.record(interval, |s| {
                s.handled += 1;
                s.handle_time += handle;
            });
            queue.handle_times.push_back(handle);
            while queue.handle_times.len() > RECENT_HANDLE_TIMES {
                queue.handle_times.pop_front();
            }
        }
        self.make_available(a, now, StateReason::WrapUpEnded, false);
    }

    fn is_routable(&self, a: AgentIx) -> bool {
        let agent = &self.agents[a];
        agent.status == AgentStatus::Available && !agent.cooling
    }

    fn agent_order(&self, q: QueueIx, a: AgentIx) -> u64 {
        let agent = &self.agents[a];
        self.queues[q]
            .order
            .get(&agent.id.0)
            .copied()
            .unwrap_or(1 << 32 | agent.config_order)
    }

    fn agent_key(&mut self, a: AgentIx, g: GroupIx) -> AgentKey {
        let q = self.groups.list[g].queue;
        let agent = &self.agents[a];
        let idle = u64::try_from(
            agent
                .idle_since
                .saturating_duration_since(self.epoch)
                .as_nanos(),
        )
        .unwrap_or(u64::MAX);
        match self.queues[q].cfg.strategy {
            Strategy::LongestIdle | Strategy::RingAll => (idle, 0, a),
            Strategy::FewestCalls => (agent.session_answered, idle, a),
            Strategy::LeastTalkTime => (
                u64::try_from(agent.session_talk.as_millis()).unwrap_or(u64::MAX),
                idle,
                a,
            ),
            Strategy::RoundRobin | Strategy::Linear => (self.agent_order(q, a), 0, a),
            // The smallest of independent uniform keys is a uniform choice.
            Strategy::Random => (self.rng.random::<u64>(), 0, a),
            Strategy::BestSkill => {
                let score = self.groups.list[g].requirement.skill_score(&agent.skills);
                (u64::MAX - score, idle, a)
            }
        }
    }

    fn make_routable(&mut self, a: AgentIx) {
        if !self.agents[a].keys.is_empty() {
            return;
        }
        let groups = self.agents[a].groups.clone();
        let mut keys = Vec::with_capacity(groups.len());
        for g in groups {
            let key = self.agent_key(a, g);
            self.groups.list[g].available.insert(key);
            keys.push((g, key));
        }
        self.agents[a].keys = keys;
        self.dirty_agents.push(a);
    }

    fn make_unroutable(&mut self, a: AgentIx) {
        for (g, key) in std::mem::take(&mut self.agents[a].keys) {
            self.groups.list[g].available.remove(&key);
        }
    }

    /// Makes a logged-in agent a member of the groups it qualifies for.
    fn attach(&mut self, a: AgentIx) {
        let agent = &self.agents[a];
        self.groups.note_login(a, &agent.skills);
        let groups = self.groups.matching(&agent.skills, &agent.languages);
        let staffed = is_staffed(&agent.status);
        for g in &groups {
            let group = &mut self.groups.list[*g];
            group.members.insert(a);
            if staffed {
                group.staffed += 1;
            }
        }
        self.agents[a].groups = groups;
    }

    /// Removes an agent from all groups; returns the queues it served.
    fn detach(&mut self, a: AgentIx) -> Vec<QueueIx> {
        self.make_unroutable(a);
        let queues = self.agent_queues(a);
        let staffed = is_staffed(&self.agents[a].status);
        for g in std::mem::take(&mut self.agents[a].groups) {
            let group = &mut self.groups.list[g];
            group.members.remove(&a);
            if staffed {
                group.staffed = group.staffed.saturating_sub(1);
            }
        }
        let skills = self.agents[a].skills.clone();
        self.groups.note_logout(a, &skills);
        queues
    }

    fn agent_queues(&self, a: AgentIx) -> Vec<QueueIx> {
        let mut queues: Vec<QueueIx> = self.agents[a]
            .groups
            .iter()
            .map(|g| self.groups.list[*g].queue)
            .collect();
        queues.sort_unstable();
        queues.dedup();
        queues
    }

    // ----- routing ------------------------------------------------------------------------

    /// The group for a call in `queue` at escalation `stage` with its own skills and language.
    fn group_for(
        &mut self,
        q: QueueIx,
        stage: usize,
        extra: &[(SkillIx, u8)],
        language: Option<LangIx>,
    ) -> GroupIx {
        let queue = &self.queues[q];
        let mut primary = queue.skills.clone();
        let mut alternatives = Vec::new();
        let mut languages: Vec<LangIx> = language.or(queue.language).into_iter().collect();
        for step in queue.steps.iter().take(stage) {
            for (skill, level) in &step.relax {
                for p in primary.iter_mut().filter(|p| p.0 == *skill) {
                    p.1 = *level;
                }
            }
            alternatives.extend(step.alternatives.iter().cloned());
            if !languages.is_empty() {
                languages.extend(step.add_languages.iter().copied());
            }
        }
        let mut all = vec![primary];
        all.extend(alternatives);
        for alt in &mut all {
            alt.extend_from_slice(extra);
        }
        let requirement = Requirement {
            alternatives: all,
            languages,
        }
        .normalize();
        let agents = &self.agents;
        let (g, members) = self.groups.get_or_create(q, requirement, |a, req| {
            req.matches(&agents[a].skills, &agents[a].languages)
        });
        if !members.is_empty() || !self.queues[q].groups.contains(&g) {
            if !self.queues[q].groups.contains(&g) {
                self.queues[q].groups.push(g);
            }
            for a in members {
                let staffed = is_staffed(&self.agents[a].status);
                let group = &mut self.groups.list[g];
                group.members.insert(a);
                if staffed {
                    group.staffed += 1;
                }
                self.agents[a].groups.push(g);
                if self.is_routable(a) {
                    let key = self.agent_key(a, g);
                    self.groups.list[g].available.insert(key);
                    self.agents[a].keys.push((g, key));
                }
            }
        }
        g
    }

    fn pick_agent(&self, g: GroupIx) -> Option<AgentIx> {
        let group = &self.groups.list[g];
        let queue = &self.queues[group.queue];
        let first = group.available.first().map(|k| k.2);
        if queue.cfg.strategy == Strategy::RoundRobin
            && let Some(last) = queue.rr_last
        {
            return group
                .available
                .range((last + 1, 0, 0)..)
                .next()
                .map(|k| k.2)
                .or(first);
        }
        first
    }

    /// The waiting call an agent should get: highest priority, then longest (weighted) wait
    /// across the agent's queues.
    fn best_call_for_agent(&self, a: AgentIx, now: Instant) -> Option<CallId> {
        let mut best: Option<(u8, f64, f64, u64, CallId)> = None;
        for g in &self.agents[a].groups {
            let group = &self.groups.list[*g];
            let Some(&(Reverse(priority), seq, id)) = group.waiting.first() else {
                continue;
            };
            let weight = self.queues[group.queue].cfg.weight;
            let wait = self.calls.get(&id).map_or(0.0, |c| {
                now.saturating_duration_since(c.joined_at).as_secs_f64()
            });
            let candidate = (priority, weight, wait * weight, seq, id);
            best = match best {
                None => Some(candidate),
                Some(current) => Some(if better(&candidate, &current) {
                    candidate
                } else {
                    current
                }),
            };
        }
        best.map(|b| b.4)
    }

    fn route(&mut self, now: Instant) {
        // Every pass either offers (making an agent unroutable) or drops a dirty entry.
        let bound = 4 * (self.agents.len() + self.calls.len()) + 64;
        for _ in 0..bound {
            if let Some(a) = self.dirty_agents.pop() {
                self.route_agent(a, now);
                continue;
            }
            let Some(c) = self.dirty_calls.pop() else {
                return;
            };
            let Some(call) = self.calls.get(&c) else {
                continue;
            };
            if call.phase != Phase::Waiting {
                continue;
            }
            let Some(a) = self.pick_agent(call.group) else {
                continue;
            };
            if self.route_agent(a, now) {
                self.dirty_calls.push(c);
            }
        }
        warn!("routing pass bound reached");
    }

    fn route_agent(&mut self, a: AgentIx, now: Instant) -> bool {
        if !self.is_routable(a) {
            return false;
        }
        match self.best_call_for_agent(a, now) {
            Some(c) => {
                self.offer(c, a, now);
                true
            }
            None => false,
        }
    }

    fn recent_handle_time(&self, q: QueueIx) -> Duration {
        let queue = &self.queues[q];
        let n = queue.handle_times.len();
        if n == 0 {
            return Duration::from_secs(queue.cfg.default_handle_secs);
        }
        let total: Duration = queue.handle_times.iter().sum();
        total / u32::try_from(n).unwrap_or(u32::MAX)
    }
}

/// Priority first; at equal priority, equal weights compare by place in line, different weights
/// by weighted wait.
fn better(a: &(u8, f64, f64, u64, CallId), b: &(u8, f64, f64, u64, CallId)) -> bool {
    match a.0.cmp(&b.0) {
        Ordering::Greater => return true,
        Ordering::Less => return false,
        Ordering::Equal => {}
    }
    if a.1 != b.1 {
        match a.2.partial_cmp(&b.2) {
            Some(Ordering::Greater) => return true,
            Some(Ordering::Less) => return false,
            _ => {}
        }
    }
    (a.3, a.4) < (b.3, b.4)
}

fn add_state_time(s: &mut AgentCounters, status: &AgentStatus, spent: Duration) {
    match status {
        AgentStatus::LoggedOut => return,
        AgentStatus::Available => s.available += spent,
        AgentStatus::Paused { .. } => s.paused += spent,
        AgentStatus::Reserved { .. } => s.reserved += spent,
        AgentStatus::OnCall { .. } => s.talk += spent,
        AgentStatus::WrapUp { .. } => s.wrap_up += spent,
    }
    s.logged_in += spent;
}

/// Expected wait for the caller at `position` (1-based) with `staffed` agents able to take it and
/// a recent average handle time: `position × handle_time / staffed`. None with nobody staffed.
pub fn expected_wait(position: usize, staffed: usize, handle_time: Duration) -> Option<Duration> {
    if staffed == 0 {
        return None;
    }
    let secs = position as f64 * handle_time.as_secs_f64() / staffed as f64;
    Duration::try_from_secs_f64(secs).ok()
}
