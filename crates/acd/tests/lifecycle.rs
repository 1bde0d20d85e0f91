//! Agent state machine, exits, escalation, callbacks, announcements and statistics, in virtual
//! time.

mod common;

use std::time::Duration;

use common::*;
use santral_acd::*;

fn support() -> QueueConfig {
    let mut q = QueueConfig::new("support", vec![skill("support", 5)]);
    q.wrap_up_secs = 10;
    q.ring_timeout_secs = 15;
    q
}

fn agents() -> Vec<AgentConfig> {
    vec![
        AgentConfig::new("ann", &[("support", 8)], &["en"]),
        AgentConfig::new("bob", &[("support", 6), ("billing", 4)], &["en", "tr"]),
    ]
}

fn state_changes(outputs: &[Output]) -> Vec<(String, &'static str, &'static str, StateReason)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::AgentState(c) => Some((
                c.agent.0.clone(),
                c.previous.name(),
                c.current.name(),
                c.reason,
            )),
            _ => None,
        })
        .collect()
}

#[test]
fn full_agent_cycle_emits_every_state_change() {
    let mut h = Harness::new(config(vec![support()], agents()));
    h.login("ann");
    h.at(5.0);
    h.join(call(1, "support"));
    h.at(8.0);
    h.answer(1, "ann");
    h.at(68.0);
    h.end(1);
    h.at(78.0); // wrap-up of 10 s ends by timer
    h.input(Input::AgentPause {
        agent: AgentId::new("ann"),
        reason: "lunch".into(),
    });
    h.at(100.0);
    h.input(Input::AgentReady {
        agent: AgentId::new("ann"),
    });
    h.input(Input::AgentLogout {
        agent: AgentId::new("ann"),
    });
    let changes = state_changes(&h.take());
    let seq: Vec<(&str, &str, StateReason)> = changes.iter().map(|c| (c.1, c.2, c.3)).collect();
    assert_eq!(
        seq,
        [
            ("logged-out", "available", StateReason::Login),
            ("available", "reserved", StateReason::Offered),
            ("reserved", "on-call", StateReason::Answered),
            ("on-call", "wrap-up", StateReason::CallEnded),
            ("wrap-up", "available", StateReason::WrapUpEnded),
            ("available", "paused", StateReason::Pause),
            ("paused", "available", StateReason::Ready),
            ("available", "logged-out", StateReason::Logout),
        ]
    );
    let snap = h.acd.agent_snapshot("ann", h.now).expect("agent");
    assert_eq!(snap.totals.talk, Duration::from_secs(60));
    assert_eq!(snap.totals.wrap_up, Duration::from_secs(10));
    assert_eq!(snap.totals.reserved, Duration::from_secs(3));
    assert_eq!(snap.totals.paused, Duration::from_secs(22));
    assert_eq!(snap.totals.available, Duration::from_secs(5));
    assert_eq!(snap.totals.logged_in, Duration::from_secs(100));
    assert_eq!(snap.totals.answered, 1);
    let q = h
        .acd
        .queue_snapshot("support", h.now)
        .expect("queue")
        .totals;
    assert_eq!(q.handled, 1);
    assert_eq!(q.handle_time, Duration::from_secs(70));
    assert_eq!(q.average_speed_of_answer(), Some(Duration::from_secs(3)));
}

#[test]
fn end_wrap_up_early_and_state_errors() {
    let mut h = Harness::new(config(vec![support()], agents()));
    assert!(matches!(
        h.try_input(Input::AgentPause {
            agent: AgentId::new("ann"),
            reason: "x".into()
        }),
        Err(AcdError::AgentState { .. })
    ));
    assert!(matches!(
        h.try_input(Input::AgentLogin {
            agent: AgentId::new("nobody")
        }),
        Err(AcdError::UnknownAgent(_))
    ));
    h.login("ann");
    assert!(
        h.try_input(Input::AgentEndWrapUp {
            agent: AgentId::new("ann")
        })
        .is_err()
    );
    h.join(call(1, "support"));
    h.answer(1, "ann");
    h.end(1);
    assert_eq!(h.status("ann"), AgentStatus::WrapUp { call: CallId(1) });
    h.at(3.0);
    h.input(Input::AgentEndWrapUp {
        agent: AgentId::new("ann"),
    });
    assert_eq!(h.status("ann"), AgentStatus::Available);
    // Bad inputs: unknown call, duplicate call, bad priority.
    assert!(h.try_input(Input::CallEnded { call: CallId(99) }).is_err());
    h.input(Input::AgentPause {
        agent: AgentId::new("ann"),
        reason: "x".into(),
    });
    h.join(call(2, "support"));
    assert_eq!(
        h.try_input(Input::CallJoin(call(2, "support"))),
        Err(AcdError::DuplicateCall(CallId(2)))
    );
    assert_eq!(
        h.try_input(Input::CallJoin(call(3, "support").priority(10))),
        Err(AcdError::Priority(10))
    );
    assert!(matches!(
        h.try_input(Input::CallJoin(call(4, "nope"))),
        Err(AcdError::UnknownQueue(_))
    ));
}

#[test]
fn pause_during_a_call_applies_after_wrap_up() {
    let mut h = Harness::new(config(vec![support()], agents()));
    h.login("ann");
    h.join(call(1, "support"));
    h.answer(1, "ann");
    h.take();
    h.input(Input::AgentPause {
        agent: AgentId::new("ann"),
        reason: "break".into(),
    });
    assert_eq!(h.status("ann"), AgentStatus::OnCall { call: CallId(1) });
    h.join(call(2, "support"));
    h.end(1);
    h.at(10.0);
    assert_eq!(
        h.status("ann"),
        AgentStatus::Paused {
            reason: "break".into()
        }
    );
    assert!(h.offers().is_empty(), "a paused agent gets no offer");
}

#[test]
fn ring_no_answer_keeps_the_place_tries_another_and_pauses_after_misses() {
    let mut h = Harness::new(config(vec![support()], agents()));
    h.login("ann");
    h.join(call(1, "support"));
    h.join(call(2, "support"));
    assert_eq!(h.offers(), [(1, "ann".to_owned())]);
    h.at(15.0);
    let out = h.take();
    assert!(out.iter().any(|o| matches!(
        o,
        Output::CancelOffer {
            reason: CancelReason::RingTimeout,
            ..
        }
    )));
    // Caller 1 keeps the head of the line.
    assert_eq!(h.acd.position(CallId(1)), Some(1));
    assert_eq!(h.status("ann"), AgentStatus::Available);
    // Bob logs in and gets call 1 at once (ann rests for the retry delay).
    h.login("bob");
    assert_eq!(h.offers(), [(1, "bob".to_owned())]);
    // After the retry delay ann is offered call 2 and misses again: second miss pauses her.
    h.at(17.0);
    assert_eq!(h.offers(), [(2, "ann".to_owned())]);
    h.input(Input::OfferTimedOut {
        call: CallId(2),
        agent: AgentId::new("ann"),
    });
    assert_eq!(
        h.status("ann"),
        AgentStatus::Paused {
            reason: NO_ANSWER.into()
        }
    );
    assert_eq!(h.acd.position(CallId(2)), Some(2));
    let snap = h.acd.agent_snapshot("ann", h.now).expect("agent");
    assert_eq!(snap.totals.no_answer, 2);
}

#[test]
fn rejection_goes_to_the_next_agent() {
    let mut h = Harness::new(config(vec![support()], agents()));
    h.login("ann");
    h.at(1.0);
    h.login("bob");
    h.join(call(1, "support"));
    assert_eq!(h.offers(), [(1, "ann".to_owned())]);
    h.input(Input::OfferRejected {
        call: CallId(1),
        agent: AgentId::new("ann"),
    });
    assert_eq!(h.offers(), [(1, "bob".to_owned())]);
    assert_eq!(h.status("ann"), AgentStatus::Available);
}

#[test]
fn unregistered_agent_is_paused_and_comes_back() {
    let mut h = Harness::new(config(vec![support()], agents()));
    h.login("ann");
    h.join(call(1, "support"));
    h.input(Input::AgentUnregistered {
        agent: AgentId::new("ann"),
    });
    let out = h.take();
    assert!(out.iter().any(|o| matches!(
        o,
        Output::CancelOffer {
            reason: CancelReason::AgentUnavailable,
            ..
        }
    )));
    assert_eq!(
        h.status("ann"),
        AgentStatus::Paused {
            reason: UNREGISTERED.into()
        }
    );
    h.input(Input::AgentRegistered {
        agent: AgentId::new("ann"),
    });
    assert_eq!(h.offers(), [(1, "ann".to_owned())]);
}

#[test]
fn exits_timeout_full_caller_hung_up_and_short_abandon() {
    let mut q = support();
    q.max_wait_secs = Some(60);
    q.max_length = Some(2);
    q.short_abandon_secs = 5;
    let mut h = Harness::new(config(vec![q], agents()));
    h.join(call(1, "support"));
    h.join(call(2, "support"));
    h.join(call(3, "support"));
    h.at(3.0);
    h.input(Input::CallerHungUp { call: CallId(2) });
    h.at(30.0);
    h.join(call(4, "support"));
    h.input(Input::CallerHungUp { call: CallId(4) });
    h.join(call(5, "support"));
    h.at(45.0);
    h.input(Input::CallerHungUp { call: CallId(5) });
    h.at(60.0);
    let left = left_reasons(&h.take());
    assert_eq!(
        left,
        [
            (3, "full".to_owned()),
            (2, "caller-hung-up".to_owned()),
            (4, "caller-hung-up".to_owned()),
            (5, "caller-hung-up".to_owned()),
            (1, "timeout".to_owned()),
        ]
    );
    let t = h
        .acd
        .queue_snapshot("support", h.now)
        .expect("queue")
        .totals;
    assert_eq!(
        (
            t.offered,
            t.full,
            t.timed_out,
            t.short_abandoned,
            t.abandoned
        ),
        (5, 1, 1, 2, 1)
    );
}

#[test]
fn join_empty_and_leave_when_empty() {
    let mut q = support();
    q.join_empty = EmptyRule::NoAgentsLoggedIn;
    q.leave_when_empty = EmptyRule::NoAgentsStaffed;
    let mut h = Harness::new(config(vec![q], agents()));
    h.join(call(1, "support"));
    assert_eq!(left_reasons(&h.take()), [(1, "no-agents".to_owned())]);
    h.login("ann");
    h.input(Input::AgentPause {
        agent: AgentId::new("ann"),
        reason: "x".into(),
    });
    h.join(call(2, "support"));
    h.join(call(3, "support"));
    assert!(
        left_reasons(&h.take()).is_empty(),
        "logged in (paused) is enough to join"
    );
    h.input(Input::AgentLogout {
        agent: AgentId::new("ann"),
    });
    h.login("ann");
    h.input(Input::AgentPause {
        agent: AgentId::new("ann"),
        reason: "x".into(),
    });
    // Logging out left nobody staffed: both waiting calls left with no-agents.
    let left = left_reasons(&h.take());
    assert_eq!(
        left,
        [(2, "no-agents".to_owned()), (3, "no-agents".to_owned())]
    );
}

#[test]
fn escalation_relaxes_levels_adds_alternatives_and_languages() {
    let mut q = QueueConfig::new("loans", vec![skill("loans", 9)]);
    q.language = Some("en".into());
    q.escalation = vec![
        EscalationStep {
            after_secs: 30,
            relax: [("loans".to_owned(), 5)].into(),
            ..Default::default()
        },
        EscalationStep {
            after_secs: 60,
            alternatives: vec![vec![skill("billing", 3)]],
            ..Default::default()
        },
        EscalationStep {
            after_secs: 90,
            add_languages: vec!["tr".into()],
            ..Default::default()
        },
    ];
    let agents = vec![
        AgentConfig::new("lena", &[("loans", 6)], &["en"]),
        AgentConfig::new("bill", &[("billing", 4)], &["en"]),
        AgentConfig::new("tuna", &[("billing", 9)], &["tr"]),
    ];
    let mut h = Harness::new(config(vec![q], agents));
    for a in ["lena", "bill", "tuna"] {
        h.login(a);
        h.input(Input::AgentPause {
            agent: AgentId::new(a),
            reason: "x".into(),
        });
    }
    h.join(call(1, "loans"));
    h.at(29.0);
    h.input(Input::AgentReady {
        agent: AgentId::new("tuna"),
    });
    h.input(Input::AgentReady {
        agent: AgentId::new("bill"),
    });
    h.input(Input::AgentReady {
        agent: AgentId::new("lena"),
    });
    assert!(h.offers().is_empty(), "nobody has loans 9");
    h.at(30.0);
    let out = h.take();
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Event(AcdEvent::CallEscalated { step: 0, .. })))
    );
    assert_eq!(
        out.iter().filter(|o| matches!(o, Output::Offer(_))).count(),
        1
    );
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Offer(offer) if offer.agent.0 == "lena"))
    );

    h.answer(1, "lena");

    // Second call: lena busy; the billing alternative (step 2, at 60 s) brings bill.
    h.join(call(2, "loans"));
    h.at(89.0);
    assert!(h.offers().is_empty());
    h.at(90.0);
    assert_eq!(h.offers(), [(2, "bill".to_owned())]);
    h.answer(2, "bill");
    // Third call: bill busy too; at 90 s Turkish speakers qualify -> tuna.
    h.join(call(3, "loans"));
    h.at(179.0);
    assert!(h.offers().is_empty());
    h.at(180.0);
    assert_eq!(h.offers(), [(3, "tuna".to_owned())]);
}

#[test]
fn overflow_moves_the_call_to_another_queue() {
    let mut first = QueueConfig::new("first", vec![skill("a", 1)]);
    first.escalation = vec![EscalationStep {
        after_secs: 20,
        overflow_to: Some("second".into()),
        ..Default::default()
    }];
    let second = QueueConfig::new("second", vec![skill("b", 1)]);
    let agents = vec![AgentConfig::new("bea", &[("b", 5)], &[])];
    let mut h = Harness::new(config(vec![first, second], agents));
    h.login("bea");
    h.join(call(1, "first"));
    h.at(19.0);
    assert!(h.offers().is_empty());
    h.at(20.0);
    let out = h.take();
    assert_eq!(left_reasons(&out), [(1, "overflow".to_owned())]);
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Offer(offer) if offer.queue.0 == "second"))
    );
    let first_totals = h.acd.queue_snapshot("first", h.now).expect("q").totals;
    assert_eq!((first_totals.offered, first_totals.overflowed), (1, 1));
}

#[test]
fn callback_keeps_its_place_and_dials_when_it_reaches_the_head() {
    let mut h = Harness::new(config(vec![support()], agents()));
    h.join(call(1, "support").caller("number", "+905551112233"));
    h.at(1.0);
    h.join(call(2, "support"));
    h.input(Input::CallbackRequested { call: CallId(1) });
    let out = h.take();
    assert_eq!(left_reasons(&out), [(1, "callback".to_owned())]);
    assert_eq!(h.acd.position(CallId(1)), Some(1));
    assert_eq!(h.acd.position(CallId(2)), Some(2));
    h.login("ann");
    let out = h.take();
    let dial = out.iter().find_map(|o| match o {
        Output::CallbackDial {
            call,
            agent,
            caller,
            ..
        } => Some((call.0, agent.0.clone(), caller.get("number").cloned())),
        _ => None,
    });
    assert_eq!(
        dial,
        Some((1, "ann".to_owned(), Some("+905551112233".to_owned())))
    );
    assert_eq!(h.status("ann"), AgentStatus::Reserved { call: CallId(1) });
    h.at(20.0);
    h.input(Input::CallbackConnected { call: CallId(1) });
    assert_eq!(h.status("ann"), AgentStatus::OnCall { call: CallId(1) });
    h.end(1);
    h.at(30.0);
    assert_eq!(h.offers(), [(2, "ann".to_owned())]);
    let t = h.acd.queue_snapshot("support", h.now).expect("q").totals;
    assert_eq!((t.callbacks_requested, t.callbacks_connected), (1, 1));
}

#[test]
fn failed_callback_releases_the_agent() {
    let mut h = Harness::new(config(vec![support()], agents()));
    h.join(call(1, "support"));
    h.input(Input::CallbackRequested { call: CallId(1) });
    h.login("ann");
    h.input(Input::CallbackFailed { call: CallId(1) });
    assert_eq!(h.status("ann"), AgentStatus::Available);
    assert!(
        h.try_input(Input::CallbackConnected { call: CallId(1) })
            .is_err()
    );
}

#[test]
fn callbacks_survive_a_restart() {
    let mut h = Harness::new(config(vec![support()], agents()));
    h.join(call(1, "support"));
    h.join(call(2, "support").priority(3));
    h.join(call(3, "support"));
    h.at(40.0);
    h.input(Input::CallbackRequested { call: CallId(3) });
    h.input(Input::CallbackRequested { call: CallId(1) });
    let store = h.acd.into_callback_store();
    assert_eq!(store.load_all().expect("load").len(), 2);

    let mut h2 = Harness::with_store(config(vec![support()], agents()), store);
    assert_eq!(h2.acd.restore_callbacks(h2.now), Ok(2));
    h2.join(call(4, "support"));
    assert_eq!(h2.acd.position(CallId(1)), Some(1));
    assert_eq!(h2.acd.position(CallId(3)), Some(2));
    assert_eq!(h2.acd.position(CallId(4)), Some(3));
    h2.login("ann");
    let dial = h2.take().into_iter().find_map(|o| match o {
        Output::CallbackDial { call, .. } => Some(call.0),
        _ => None,
    });
    assert_eq!(dial, Some(1));
    h2.input(Input::CallbackConnected { call: CallId(1) });
    let store = h2.acd.into_callback_store();
    let left: Vec<u64> = store
        .load_all()
        .expect("load")
        .iter()
        .map(|r| r.call.0)
        .collect();
    assert_eq!(left, [3]);
}

#[test]
fn announcements_give_position_and_expected_wait() {
    let mut q = support();
    q.announce_every_secs = Some(30);
    q.default_handle_secs = 120;
    let mut h = Harness::new(config(vec![q], agents()));
    h.login("ann");
    h.login("bob");
    h.join(call(1, "support"));
    h.join(call(2, "support"));
    h.answer(1, "ann");
    h.answer(2, "bob");
    for n in 3..=6 {
        h.join(call(n, "support"));
    }
    h.take();
    h.at(30.0);
    let announced: Vec<(u64, usize, Option<Duration>)> = h
        .take()
        .into_iter()
        .filter_map(|o| match o {
            Output::Announcement {
                call,
                position,
                expected_wait,
                ..
            } => Some((call.0, position, expected_wait)),
            _ => None,
        })
        .collect();
    // EWT = position × 120 s / 2 staffed agents.
    assert_eq!(
        announced,
        [
            (3, 1, Some(Duration::from_secs(60))),
            (4, 2, Some(Duration::from_secs(120))),
            (5, 3, Some(Duration::from_secs(180))),
            (6, 4, Some(Duration::from_secs(240))),
        ]
    );
}

#[test]
fn intervals_split_statistics_by_fifteen_minutes() {
    let mut h = Harness::new(config(vec![support()], agents()));
    h.login("ann");
    h.join(call(1, "support"));
    h.answer(1, "ann");
    h.end(1);
    h.at(1000.0);
    h.join(call(2, "support"));
    h.at(1030.0);
    h.answer(2, "ann");
    let intervals = h.acd.queue_intervals("support").expect("q");
    assert_eq!(intervals.len(), 2);
    assert_eq!(intervals[&0].answered, 1);
    assert_eq!(intervals[&0].answered_within_target, 1);
    assert_eq!(intervals[&1].answered, 1);
    assert_eq!(intervals[&1].answered_within_target, 0);
    let t = h.acd.queue_snapshot("support", h.now).expect("q").totals;
    assert_eq!(t.service_level(), Some(50.0));
}

#[test]
fn config_validation_rejects_bad_input() {
    let mut bad = support();
    bad.skills = vec![skill("support", 11)];
    assert!(matches!(
        config(vec![bad], vec![]).validate(),
        Err(ConfigError::Level { .. })
    ));
    let mut overflow = support();
    overflow.escalation = vec![EscalationStep {
        after_secs: 1,
        overflow_to: Some("ghost".into()),
        ..Default::default()
    }];
    assert!(matches!(
        config(vec![overflow], vec![]).validate(),
        Err(ConfigError::UnknownOverflow { .. })
    ));
    assert!(matches!(
        config(vec![support(), support()], vec![]).validate(),
        Err(ConfigError::Duplicate { .. })
    ));
    let mut forever = support();
    forever.max_wait_secs = Some(u64::MAX);
    assert!(matches!(
        config(vec![forever], vec![]).validate(),
        Err(ConfigError::TooLong { .. })
    ));
}

#[test]
fn config_round_trips_through_serde() {
    let mut q = support();
    q.strategy = Strategy::BestSkill;
    q.escalation = vec![EscalationStep {
        after_secs: 30,
        relax: [("support".to_owned(), 3)].into(),
        ..Default::default()
    }];
    let cfg = config(vec![q], agents());
    let json = serde_json::to_string(&cfg).expect("serialize");
    assert!(json.contains("\"best-skill\""));
    let back: AcdConfig = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(back, cfg);
    let minimal: AcdConfig =
        serde_json::from_str(r#"{"queues":[{"name":"q"}]}"#).expect("defaults");
    assert_eq!(minimal.queues[0].strategy, Strategy::LongestIdle);
    assert_eq!(minimal.queues[0].ring_timeout_secs, 15);
}

#[test]
fn skills_changed_while_logged_in_take_effect_at_once() {
    let mut h = Harness::new(config(vec![support()], agents()));
    h.login("ann");
    h.input(Input::AgentConfigured(AgentConfig::new(
        "ann",
        &[("support", 2)],
        &["en"],
    )));
    h.join(call(1, "support"));
    assert!(h.offers().is_empty(), "support 2 is below the queue's 5");
    h.input(Input::AgentConfigured(AgentConfig::new(
        "ann",
        &[("support", 7)],
        &["en"],
    )));
    assert_eq!(h.offers(), [(1, "ann".to_owned())]);
    // A brand-new agent can be added at run time.
    h.input(Input::AgentConfigured(AgentConfig::new(
        "zed",
        &[("support", 9)],
        &[],
    )));
    h.login("zed");
    h.join(call(2, "support"));
    assert_eq!(h.offers(), [(2, "zed".to_owned())]);
    assert_eq!(
        h.try_input(Input::AgentConfigured(AgentConfig::new(
            "zed",
            &[("support", 11)],
            &[]
        ))),
        Err(AcdError::Level(11))
    );
}

#[test]
fn occupancy_and_calls_per_hour() {
    let mut h = Harness::new(config(vec![support()], agents()));
    h.login("ann");
    // 30 min idle, then a 20 min call with 10 s wrap-up, then idle to the hour.
    h.at(1800.0);
    h.join(call(1, "support"));
    h.answer(1, "ann");
    h.at(3000.0);
    h.end(1);
    h.at(3600.0);
    let snap = h.acd.agent_snapshot("ann", h.now).expect("agent");
    let occupancy = snap.totals.occupancy().expect("staffed");
    assert!((occupancy - 1210.0 / 3600.0).abs() < 1e-9, "{occupancy}");
    assert_eq!(snap.totals.calls_per_hour(), Some(1.0));
    assert_eq!(snap.state, "available");
}

#[test]
fn callback_withdrawn_by_the_customer_is_dropped() {
    let mut h = Harness::new(config(vec![support()], agents()));
    h.join(call(1, "support"));
    h.input(Input::CallbackRequested { call: CallId(1) });
    h.input(Input::CallerHungUp { call: CallId(1) });
    let out = h.take();
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Event(AcdEvent::CallbackFinished {
            outcome: CallbackOutcome::Cancelled,
            ..
        })
    )));
    assert_eq!(h.acd.position(CallId(1)), None);
    h.login("ann");
    assert!(
        !h.take()
            .iter()
            .any(|o| matches!(o, Output::CallbackDial { .. }))
    );
}

#[test]
fn expected_wait_is_unknown_with_nobody_staffed() {
    let mut h = Harness::new(config(vec![support()], agents()));
    h.join(call(1, "support"));
    assert_eq!(h.acd.position(CallId(1)), Some(1));
    assert_eq!(h.acd.expected_wait(CallId(1)), None);
    h.login("ann");
    h.input(Input::AgentPause {
        agent: AgentId::new("ann"),
        reason: "x".into(),
    });
    assert_eq!(h.acd.expected_wait(CallId(1)), None);
    h.login("bob");
    h.input(Input::AgentPause {
        agent: AgentId::new("bob"),
        reason: "x".into(),
    });
    h.input(Input::AgentReady {
        agent: AgentId::new("bob"),
    });
    // bob takes call 1; a second caller is first in line with bob busy: 1 × 180 s / 1.
    h.answer(1, "bob");
    h.join(call(2, "support"));
    assert_eq!(
        h.acd.expected_wait(CallId(2)),
        Some(Duration::from_secs(180))
    );
}

#[test]
fn overflow_due_while_ringing_happens_when_the_offer_ends() {
    let mut first = QueueConfig::new("first", vec![skill("a", 1)]);
    first.ring_timeout_secs = 30;
    first.escalation = vec![EscalationStep {
        after_secs: 10,
        overflow_to: Some("second".into()),
        ..Default::default()
    }];
    let second = QueueConfig::new("second", vec![skill("b", 1)]);
    let agents = vec![
        AgentConfig::new("ada", &[("a", 5)], &[]),
        AgentConfig::new("bea", &[("b", 5)], &[]),
    ];
    let mut h = Harness::new(config(vec![first, second], agents));
    h.login("ada");
    h.login("bea");
    h.join(call(1, "first"));
    assert_eq!(h.offers(), [(1, "ada".to_owned())]);
    h.at(10.0);
    assert!(left_reasons(&h.take()).is_empty(), "still ringing ada");
    h.input(Input::OfferRejected {
        call: CallId(1),
        agent: AgentId::new("ada"),
    });
    let out = h.take();
    assert_eq!(left_reasons(&out), [(1, "overflow".to_owned())]);
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Offer(offer) if offer.agent.0 == "bea"))
    );
}
