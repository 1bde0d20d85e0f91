//! Flow sets on disk: reload swaps atomically for new calls, old calls keep their version, a
//! broken reload keeps the old set, and the watcher reloads on file changes.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use santral_ivr::{Call, CallInfo, Event, FlowStore, ValidationContext};

const GOOD: &str = "start: a\nsteps:\n  a:\n    hangup: { reason: first }\n";
const GOOD2: &str = "start: a\nsteps:\n  a:\n    hangup: { reason: second }\n";
const BROKEN: &str = "start: a\nsteps:\n  a:\n    play: { prompts: [x], next: nowhere }\n";

fn ctx() -> ValidationContext {
    ValidationContext {
        queues: None,
        languages: vec![],
        prompts_dir: None,
    }
}

fn info() -> CallInfo {
    CallInfo {
        call_id: "store".into(),
        caller: "1".into(),
        dialled: "1000".into(),
        language: "tr".into(),
        answered_at: "2026-11-23T10:00:00+03:00[Europe/Istanbul]"
            .parse()
            .expect("time"),
    }
}

fn reason(call: &mut Call) -> String {
    call.handle(Event::Answered, Instant::now());
    match call.poll_command() {
        Some(santral_ivr::Command::Hangup { reason }) => reason,
        other => panic!("expected a hangup, got {other:?}"),
    }
}

fn write(dir: &Path, text: &str) {
    std::fs::write(dir.join("main.yaml"), text).expect("write flow");
}

#[test]
fn reload_swaps_for_new_calls_and_keeps_old_calls_and_rejects_broken_sets() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), GOOD);
    let (store, warnings) = FlowStore::open(dir.path(), ctx()).expect("loads");
    assert!(warnings.is_empty());
    let mut old_call = Call::new(store.current(), "main", info()).expect("flow");
    assert_eq!(old_call.flow_version(), 1);

    write(dir.path(), GOOD2);
    let (version, _) = store.reload().expect("reload");
    assert_eq!(version, 2);
    let mut new_call = Call::new(store.current(), "main", info()).expect("flow");
    assert_eq!(reason(&mut new_call), "second");
    assert_eq!(
        reason(&mut old_call),
        "first",
        "a call in progress keeps its flows"
    );

    write(dir.path(), BROKEN);
    let errors = store.reload().expect_err("broken flows are refused");
    assert!(
        errors
            .to_string()
            .contains("main.yaml:4:33: unknown step `nowhere`"),
        "{errors}"
    );
    assert_eq!(store.current().version(), 2, "the previous set stays");
    let mut call = Call::new(store.current(), "main", info()).expect("flow");
    assert_eq!(reason(&mut call), "second");
}

#[test]
fn opening_a_broken_directory_fails_with_positions() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), BROKEN);
    let err = FlowStore::open(dir.path(), ctx()).err().expect("refused");
    assert_eq!(err.0.len(), 1);
    assert_eq!(err.0[0].position, santral_ivr::Position::new(4, 33));
    let empty = tempfile::tempdir().expect("tempdir");
    assert!(FlowStore::open(empty.path(), ctx()).is_err());
}

#[test]
fn the_watcher_reloads_when_a_flow_file_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), GOOD);
    let (store, _) = FlowStore::open(dir.path(), ctx()).expect("loads");
    let store = Arc::new(store);
    let _watcher = store.watch().expect("watch");
    write(dir.path(), GOOD2);
    // Bounded wait for the file event (no timing is asserted, only the outcome).
    let mut reloaded = false;
    for _ in 0..200 {
        if store.current().version() > 1 {
            reloaded = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    assert!(reloaded, "no reload after the file changed");
    let mut call = Call::new(store.current(), "main", info()).expect("flow");
    assert_eq!(reason(&mut call), "second");
}
