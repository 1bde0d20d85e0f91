//! Property test: random operation sequences against the engine, checking after every step that
//! an agent never holds two calls, a call is never connected to two agents, every queue visit ends
//! exactly once with a reason, offers respect priority then FIFO, and the statistics add up.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::strategy::Strategy as ProptestStrategy;
use santral_acd::{
    Acd, AcdConfig, AcdEvent, AgentConfig, AgentId, AgentStatus, CallId, CallJoin, CallbackOutcome,
    EmptyRule, EscalationStep, Input, LeaveReason, MemoryCallbackStore, OfferOutcome, Output,
    QueueConfig, Strategy, skill,
};

#[derive(Debug, Clone)]
enum Op {
    Join { queue: usize, priority: u8 },
    HangUp(usize),
    Login(usize),
    Logout(usize),
    Pause(usize),
    Ready(usize),
    Register(usize, bool),
    Answer(usize),
    Reject(usize),
    TimeOut(usize),
    End(usize),
    EndWrapUp(usize),
    Callback(usize),
    CallbackResult(usize, bool),
    Advance(u16),
}

fn op() -> impl ProptestStrategy<Value = Op> {
    prop_oneof![
        4 => (0..2usize, 0..3u8).prop_map(|(queue, priority)| Op::Join { queue, priority }),
        1 => any::<usize>().prop_map(Op::HangUp),
        2 => (0..AGENTS).prop_map(Op::Login),
        1 => (0..AGENTS).prop_map(Op::Logout),
        1 => (0..AGENTS).prop_map(Op::Pause),
        2 => (0..AGENTS).prop_map(Op::Ready),
        1 => ((0..AGENTS), any::<bool>()).prop_map(|(a, r)| Op::Register(a, r)),
        4 => any::<usize>().prop_map(Op::Answer),
        1 => any::<usize>().prop_map(Op::Reject),
        1 => any::<usize>().prop_map(Op::TimeOut),
        3 => any::<usize>().prop_map(Op::End),
        1 => (0..AGENTS).prop_map(Op::EndWrapUp),
        1 => any::<usize>().prop_map(Op::Callback),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(i, ok)| Op::CallbackResult(i, ok)),
        3 => (0..40u16).prop_map(Op::Advance),
    ]
}

const AGENTS: usize = 4;
const QUEUES: [&str; 2] = ["billing", "sales"];

/// Agents with different skills and escalation (relax + overflow): every invariant but the
/// global priority order, which only holds when every agent can take every call.
fn mixed_config() -> AcdConfig {
    let mut cfg = engine_config(false);
    cfg.queues[0].escalation = vec![EscalationStep {
        after_secs: 30,
        overflow_to: Some("sales".into()),
        ..Default::default()
    }];
    cfg.queues[1].skills = vec![skill("sales", 3)];
    cfg.queues[1].escalation = vec![EscalationStep {
        after_secs: 20,
        relax: [("sales".to_owned(), 1)].into(),
        ..Default::default()
    }];
    cfg.agents = vec![
        AgentConfig::new("a0", &[("billing", 5)], &[]),
        AgentConfig::new("a1", &[("sales", 5)], &[]),
        AgentConfig::new("a2", &[("billing", 2), ("sales", 4)], &[]),
        AgentConfig::new("a3", &[("sales", 1)], &[]),
    ];
    cfg
}

fn engine_config(ring_all: bool) -> AcdConfig {
    let mut billing = QueueConfig::new("billing", vec![skill("billing", 1)]);
    billing.wrap_up_secs = 5;
    billing.max_length = Some(6);
    billing.max_wait_secs = Some(120);
    billing.leave_when_empty = EmptyRule::NoAgentsLoggedIn;
    let mut sales = QueueConfig::new("sales", vec![skill("sales", 1)]);
    sales.strategy = if ring_all {
        Strategy::RingAll
    } else {
        Strategy::FewestCalls
    };
    sales.announce_every_secs = Some(20);
    sales.ring_timeout_secs = 10;
    AcdConfig {
        queues: vec![billing, sales],
        agents: (0..AGENTS)
            .map(|i| AgentConfig::new(format!("a{i}"), &[("billing", 5), ("sales", 5)], &[]))
            .collect(),
        no_answer_pause_after: 2,
        retry_delay_secs: 2,
        interval_secs: 60,
    }
}

/// What the model knows from the outputs.
#[derive(Default)]
struct Model {
    seq: BTreeMap<u64, (u8, u64)>,
    in_queue: BTreeMap<u64, usize>,
    callbacks_waiting: BTreeSet<u64>,
    offers: BTreeSet<(u64, String)>,
    dialling: BTreeMap<u64, String>,
    connected: BTreeMap<u64, String>,
    agent: HashMap<String, AgentStatus>,
    joins: u64,
    leaves: u64,
    check_order: bool,
}

impl Model {
    fn ringing(&self, call: u64) -> bool {
        self.offers.iter().any(|(c, _)| *c == call)
    }

    /// Calls waiting for an agent (customers in line not ringing, and queued callbacks).
    fn waiting(&self) -> impl Iterator<Item = u64> + '_ {
        self.in_queue
            .keys()
            .copied()
            .filter(|c| !self.ringing(*c))
            .chain(self.callbacks_waiting.iter().copied())
    }

    fn check_order(&self, call: u64) -> Result<(), TestCaseError> {
        if !self.check_order {
            return Ok(());
        }
        let (p, s) = self.seq[&call];
        for other in self.waiting().filter(|o| *o != call) {
            let (op, os) = self.seq[&other];
            prop_assert!(
                op < p || (op == p && os > s),
                "call {call} (prio {p}, seq {s}) offered while {other} (prio {op}, seq {os}) waits"
            );
        }
        Ok(())
    }

    fn apply(&mut self, output: &Output) -> Result<(), TestCaseError> {
        match output {
            Output::Offer(o) => {
                let call = o.call.0;
                if !self.ringing(call) {
                    self.check_order(call)?;
                }
                prop_assert!(
                    self.in_queue.contains_key(&call),
                    "offer for call {call} not in a queue"
                );
                prop_assert_eq!(
                    self.agent.get(&o.agent.0),
                    Some(&AgentStatus::Reserved { call: o.call })
                );
                self.offers.insert((call, o.agent.0.clone()));
            }
            Output::CancelOffer { call, agent, .. } => {
                prop_assert!(
                    self.offers.remove(&(call.0, agent.0.clone())),
                    "cancel of unknown offer"
                );
            }
            Output::CallbackDial { call, agent, .. } => {
                prop_assert!(self.callbacks_waiting.contains(&call.0));
                self.check_order(call.0)?;
                self.callbacks_waiting.remove(&call.0);
                self.dialling.insert(call.0, agent.0.clone());
            }
            Output::CallLeft { call, reason, .. } => {
                prop_assert!(
                    self.in_queue.remove(&call.0).is_some(),
                    "call {} left twice",
                    call.0
                );
                self.leaves += 1;
                if let LeaveReason::Answered { agent } = reason {
                    prop_assert!(
                        self.connected.insert(call.0, agent.0.clone()).is_none(),
                        "call {} connected to two agents",
                        call.0
                    );
                }
            }
            Output::Event(AcdEvent::CallJoined { call, queue, .. }) => {
                let q = QUEUES.iter().position(|n| *n == queue.0).unwrap_or(9);
                prop_assert!(
                    self.in_queue.insert(call.0, q).is_none(),
                    "call {} joined twice",
                    call.0
                );
                self.joins += 1;
            }
            Output::Event(AcdEvent::OfferEnded {
                call,
                agent,
                outcome,
                ..
            }) => {
                if *outcome != OfferOutcome::Answered {
                    self.offers.remove(&(call.0, agent.0.clone()));
                } else {
                    prop_assert!(self.offers.remove(&(call.0, agent.0.clone())));
                }
            }
            Output::Event(AcdEvent::CallbackQueued { call, .. }) => {
                self.callbacks_waiting.insert(call.0);
            }
            Output::Event(AcdEvent::CallbackFinished { call, outcome, .. }) => {
                self.callbacks_waiting.remove(&call.0);
                if let Some(agent) = self.dialling.remove(&call.0)
                    && *outcome == CallbackOutcome::Connected
                {
                    prop_assert!(self.connected.insert(call.0, agent).is_none());
                }
            }
            Output::Event(AcdEvent::CallEnded { call, .. }) => {
                prop_assert!(self.connected.remove(&call.0).is_some());
            }
            Output::AgentState(change) => {
                let known = self
                    .agent
                    .get(&change.agent.0)
                    .cloned()
                    .unwrap_or(AgentStatus::LoggedOut);
                prop_assert_eq!(
                    &known,
                    &change.previous,
                    "state change from an unexpected state"
                );
                if let AgentStatus::OnCall { call } = &change.current {
                    let others = self
                        .agent
                        .iter()
                        .filter(|(a, s)| {
                            **a != change.agent.0 && **s == AgentStatus::OnCall { call: *call }
                        })
                        .count();
                    prop_assert_eq!(others, 0, "call {} on two agents", call.0);
                    prop_assert!(
                        matches!(change.previous, AgentStatus::Reserved { call: c } if c == *call),
                        "on-call without being reserved for that call"
                    );
                }
                if let AgentStatus::Reserved { .. } = change.current {
                    prop_assert_eq!(&change.previous, &AgentStatus::Available);
                }
                self.agent
                    .insert(change.agent.0.clone(), change.current.clone());
            }
            _ => {}
        }
        Ok(())
    }
}

fn pick<T: Clone>(items: &[T], i: usize) -> Option<T> {
    (!items.is_empty()).then(|| items[i % items.len()].clone())
}

fn run(ops: Vec<Op>, config: AcdConfig, check_order: bool) -> Result<(), TestCaseError> {
    let t0 = Instant::now();
    let mut now = t0;
    let mut acd = Acd::new(config, Box::new(MemoryCallbackStore::default()), 1, t0)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let mut model = Model {
        check_order,
        ..Model::default()
    };
    let mut next_call = 0u64;
    let agent = |i: usize| AgentId::new(format!("a{i}"));
    for op in ops {
        let input = match op {
            Op::Join { queue, priority } => {
                next_call += 1;
                model.seq.insert(next_call, (priority, next_call));
                Some(Input::CallJoin(
                    CallJoin::new(CallId(next_call), QUEUES[queue]).priority(priority),
                ))
            }
            Op::HangUp(i) => {
                let calls: Vec<u64> = model
                    .in_queue
                    .keys()
                    .chain(model.connected.keys())
                    .chain(model.callbacks_waiting.iter())
                    .copied()
                    .collect();
                pick(&calls, i).map(|c| Input::CallerHungUp { call: CallId(c) })
            }
            Op::Login(a) => Some(Input::AgentLogin { agent: agent(a) }),
            Op::Logout(a) => Some(Input::AgentLogout { agent: agent(a) }),
            Op::Pause(a) => Some(Input::AgentPause {
                agent: agent(a),
                reason: "p".into(),
            }),
            Op::Ready(a) => Some(Input::AgentReady { agent: agent(a) }),
            Op::Register(a, true) => Some(Input::AgentRegistered { agent: agent(a) }),
            Op::Register(a, false) => Some(Input::AgentUnregistered { agent: agent(a) }),
            Op::Answer(i) | Op::Reject(i) | Op::TimeOut(i) => {
                let offers: Vec<(u64, String)> = model.offers.iter().cloned().collect();
                pick(&offers, i).map(|(c, a)| {
                    let (call, agent) = (CallId(c), AgentId::new(a));
                    match op {
                        Op::Answer(_) => Input::OfferAnswered { call, agent },
                        Op::Reject(_) => Input::OfferRejected { call, agent },
                        _ => Input::OfferTimedOut { call, agent },
                    }
                })
            }
            Op::End(i) => {
                let calls: Vec<u64> = model.connected.keys().copied().collect();
                pick(&calls, i).map(|c| Input::CallEnded { call: CallId(c) })
            }
            Op::EndWrapUp(a) => Some(Input::AgentEndWrapUp { agent: agent(a) }),
            Op::Callback(i) => {
                let calls: Vec<u64> = model.in_queue.keys().copied().collect();
                pick(&calls, i).map(|c| Input::CallbackRequested { call: CallId(c) })
            }
            Op::CallbackResult(i, ok) => {
                let calls: Vec<u64> = model.dialling.keys().copied().collect();
                pick(&calls, i).map(|c| {
                    if ok {
                        Input::CallbackConnected { call: CallId(c) }
                    } else {
                        Input::CallbackFailed { call: CallId(c) }
                    }
                })
            }
            Op::Advance(secs) => {
                let target = now + Duration::from_secs(u64::from(secs));
                for _ in 0..10_000 {
                    match acd.poll_timeout() {
                        Some(t) if t <= target => {
                            now = now.max(t);
                            acd.handle_timeout(now);
                            while let Some(o) = acd.poll_output() {
                                model.apply(&o)?;
                            }
                        }
                        _ => break,
                    }
                }
                now = target;
                None
            }
        };
        if let Some(input) = input {
            let result = acd.handle(input.clone(), now);
            let mut produced = 0;
            while let Some(o) = acd.poll_output() {
                produced += 1;
                model.apply(&o)?;
            }
            if let Err(e) = result {
                prop_assert_eq!(
                    produced,
                    0,
                    "refused input {:?} ({}) changed state",
                    input,
                    e
                );
            }
        }
        // Statistics add up, per queue, and match the model's count of calls in line.
        for (q, name) in QUEUES.iter().enumerate() {
            let snap = acd
                .queue_snapshot(name, now)
                .ok_or_else(|| TestCaseError::fail("queue"))?;
            let t = &snap.totals;
            let in_line = model.in_queue.values().filter(|v| **v == q).count();
            prop_assert_eq!(snap.waiting, in_line);
            prop_assert_eq!(
                t.offered,
                t.answered
                    + t.abandoned
                    + t.short_abandoned
                    + t.other_exits()
                    + snap.waiting as u64,
                "{} totals do not add up: {:?}",
                name,
                t
            );
        }
        prop_assert_eq!(model.joins, model.leaves + model.in_queue.len() as u64);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256),
        ..ProptestConfig::default()
    })]

    #[test]
    fn invariants_hold_for_random_operations(ops in prop::collection::vec(op(), 1..120)) {
        run(ops, engine_config(false), true)?;
    }

    #[test]
    fn invariants_hold_with_ring_all(ops in prop::collection::vec(op(), 1..120)) {
        run(ops, engine_config(true), true)?;
    }

    #[test]
    fn invariants_hold_with_skills_and_escalation(ops in prop::collection::vec(op(), 1..120)) {
        run(ops, mixed_config(), false)?;
    }
}
