//! Property tests: random event sequences never panic the interpreter, never make it spin,
//! and every call ends; random callers of the demo flows always finish.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use santral_ivr::customers::CustomerDirectory;
use santral_ivr::interpreter::{HttpResponse, LookupOutcome, QueueOutcome};
use santral_ivr::simulator::{self, QueueStub, Scenario, ScriptedKeys};
use santral_ivr::{Call, CallInfo, Event, FlowSet, ValidationContext};

fn demo() -> Arc<FlowSet> {
    static SET: std::sync::OnceLock<Arc<FlowSet>> = std::sync::OnceLock::new();
    Arc::clone(SET.get_or_init(|| {
        let ctx = ValidationContext {
            queues: None,
            languages: vec!["tr".into(), "en".into()],
            prompts_dir: None,
        };
        let loaded = FlowSet::load_dir(Path::new("../../ivr-flows"), &ctx, 1)
            .unwrap_or_else(|e| panic!("{e}"));
        Arc::new(loaded.set)
    }))
}

fn customers() -> CustomerDirectory {
    CustomerDirectory::load(Path::new("../../config/customers.yaml"))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn event() -> impl Strategy<Value = (Event, u64)> {
    let key = prop::sample::select(vec!['0', '1', '2', '3', '4', '5', '8', '9', '*', '#', 'A']);
    let ev = prop_oneof![
        3 => Just(Event::PromptFinished),
        6 => key.prop_map(Event::Digit),
        3 => Just(Event::TimerFired),
        1 => (0u64..4, 0u16..600).prop_map(|(request, status)| Event::HttpResult {
            request,
            result: Ok(HttpResponse { status, body: serde_json::json!({"a": 1}) })
        }),
        1 => (0u64..4).prop_map(|request| Event::HttpResult { request, result: Err("down".into()) }),
        1 => (0u64..4, 0u8..3).prop_map(|(request, kind)| Event::LookupResult {
            request,
            outcome: match kind {
                0 => LookupOutcome::NotFound,
                1 => LookupOutcome::Failed("x".into()),
                _ => LookupOutcome::Found([("card_last4".to_owned(), "4821".to_owned())].into_iter().collect()),
            }
        }),
        2 => prop::sample::select(vec![
            QueueOutcome::Answered { agent: "2001".into() },
            QueueOutcome::AgentCallFinished,
            QueueOutcome::Timeout,
            QueueOutcome::Unavailable,
            QueueOutcome::Left,
        ]).prop_map(Event::QueueResult),
        1 => any::<bool>().prop_map(|connected| Event::TransferResult { connected }),
        1 => Just(Event::RecordingFinished { id: "r".into() }),
        1 => Just(Event::Answered),
    ];
    (ev, 0u64..20_000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_events_never_panic_or_spin_and_hanging_up_ends_every_call(
        flow in prop::sample::select(vec!["main", "card-services", "survey"]),
        events in prop::collection::vec(event(), 0..200),
        hour in 0i8..24,
    ) {
        let info = CallInfo {
            call_id: "prop".into(),
            caller: "+905551110001".into(),
            dialled: "1000".into(),
            language: "tr".into(),
            answered_at: jiff::civil::date(2026, 11, 23).at(hour, 0, 0, 0).to_zoned(jiff::tz::TimeZone::UTC).expect("time"),
        };
        let mut call = Call::new(demo(), flow, info).expect("demo flow");
        let mut now = Instant::now();
        call.handle(Event::Answered, now);
        for (event, advance_ms) in events {
            now += Duration::from_millis(advance_ms);
            call.handle(event, now);
            let mut drained = 0;
            while call.poll_command().is_some() {
                drained += 1;
                prop_assert!(drained < 1_000, "one event produced too many commands");
            }
            if let Some(deadline) = call.next_deadline() {
                prop_assert!(deadline <= now + Duration::from_secs(3600), "deadlines are near");
            }
        }
        call.handle(Event::HungUp, now);
        prop_assert!(call.is_finished());
        prop_assert_eq!(call.next_deadline(), None);
    }

    #[test]
    fn any_caller_of_the_demo_flows_reaches_an_end(
        digits in "[0-9*#_]{0,40}",
        queue in prop::collection::vec(prop::sample::select(vec![
            QueueStub::Answered, QueueStub::AgentFinished, QueueStub::Waiting,
            QueueStub::Timeout, QueueStub::Unavailable, QueueStub::Left,
        ]), 0..3),
        closed in any::<bool>(),
    ) {
        let time = if closed { "2000-01-01T10:00" } else { "2026-11-23T10:00" };
        let scenario = Scenario {
            flow: "main".into(),
            caller: "+905551110001".into(),
            dialled: "1000".into(),
            language: "tr".into(),
            time: simulator::parse_time(time, simulator::DEFAULT_TIME_ZONE).expect("time"),
            digits,
            queue,
            http: vec![],
            lookups: None,
            transfer_connects: true,
        };
        let out = simulator::simulate(demo(), &scenario, &mut customers(), &mut ScriptedKeys, &mut |_| {})
            .expect("flow exists");
        prop_assert!(out.finished, "the call did not end: {:?}", out.visited.last());
        prop_assert!(!out.visited.is_empty());
    }
}
