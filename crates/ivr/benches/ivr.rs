//! Hot paths of the IVR: events through the interpreter for one call, loading and validating
//! the demo flow set (what a reload costs), and rendering a template with a secret.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use santral_ivr::interpreter::LookupOutcome;
use santral_ivr::template::{self, Value};
use santral_ivr::{Call, CallInfo, Event, FlowSet, ValidationContext};

fn ctx() -> ValidationContext {
    ValidationContext {
        queues: Some(vec!["billing".into(), "tech".into(), "sales".into()]),
        languages: vec!["tr".into(), "en".into()],
        prompts_dir: Some("../../prompts".into()),
    }
}

fn demo() -> Arc<FlowSet> {
    let loaded = FlowSet::load_dir(Path::new("../../ivr-flows"), &ctx(), 1)
        .unwrap_or_else(|e| panic!("{e}"));
    Arc::new(loaded.set)
}

fn info() -> CallInfo {
    CallInfo {
        call_id: "bench".into(),
        caller: "+905551110001".into(),
        dialled: "1000".into(),
        language: "tr".into(),
        answered_at: "2026-11-23T10:00:00+03:00[Europe/Istanbul]"
            .parse()
            .expect("time"),
    }
}

/// The card-blocking call: menu 4, customer number, PIN, verify, block, read back, goodbye.
fn card_call(set: &Arc<FlowSet>) -> usize {
    let mut call = Call::new(Arc::clone(set), "main", info()).expect("main");
    let mut now = Instant::now();
    let mut commands = 0;
    let mut send = |call: &mut Call, event: Event, now: Instant| {
        call.handle(event, now);
        while call.poll_command().is_some() {
            commands += 1;
        }
    };
    send(&mut call, Event::Answered, now);
    send(&mut call, Event::PromptFinished, now);
    for key in "4100001#1234".chars() {
        now += Duration::from_millis(300);
        send(&mut call, Event::Digit(key), now);
    }
    let fields: BTreeMap<String, String> = [("card_last4".to_owned(), "4821".to_owned())]
        .into_iter()
        .collect();
    send(
        &mut call,
        Event::LookupResult {
            request: 1,
            outcome: LookupOutcome::Found(fields.clone()),
        },
        now,
    );
    send(&mut call, Event::Digit('1'), now);
    send(
        &mut call,
        Event::LookupResult {
            request: 2,
            outcome: LookupOutcome::Found(fields),
        },
        now,
    );
    send(&mut call, Event::PromptFinished, now);
    send(&mut call, Event::Digit('1'), now);
    send(&mut call, Event::PromptFinished, now);
    assert!(call.is_finished());
    commands
}

fn benches(c: &mut Criterion) {
    let set = demo();
    c.bench_function("interpreter/card_blocking_call", |b| {
        b.iter(|| black_box(card_call(&set)))
    });
    c.bench_function("flowset/load_and_validate_demo", |b| {
        b.iter(|| black_box(demo()))
    });
    let mut vars = BTreeMap::new();
    vars.insert("call.caller".to_owned(), Value::plain("+905551110001"));
    vars.insert("pin".to_owned(), Value::secret("1234"));
    c.bench_function("template/render_url_with_secret", |b| {
        b.iter(|| {
            black_box(template::render(
                black_box("https://crm.test/c/{call.caller}?pin={pin}"),
                &vars,
            ))
        })
    });
}

criterion_group!(ivr, benches);
criterion_main!(ivr);
