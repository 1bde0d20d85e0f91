//! End to end: santral-load's callers against the real `santral serve` on free loopback ports.

mod support;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::Santral;

#[test]
fn twenty_calls_at_ten_per_second_are_answered_hear_prompts_and_leave_call_records() {
    let server = Santral::start();
    let out = tempfile::tempdir().expect("temp dir");
    let json_path = out.path().join("report.json");
    let mut load = Command::new(env!("CARGO_BIN_EXE_santral-load"))
        .args(["calls", "--target", &format!("127.0.0.1:{}", server.sip)])
        .args([
            "--to", "1000", "--rate", "10", "--calls", "20", "--hold", "2s",
        ])
        .args([
            "--digit",
            "9",
            "--digit-at",
            "1s",
            "--max-duration",
            "60s",
            "--json",
        ])
        .arg(&json_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start santral-load");
    // Bounded wait (the run itself stops at --max-duration).
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = load.try_wait().expect("poll santral-load") {
            break status;
        }
        assert!(Instant::now() < deadline, "santral-load did not finish");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut table = String::new();
    load.stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut table)
        .expect("read table");
    let mut errors = String::new();
    load.stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut errors)
        .expect("read stderr");
    assert!(status.success(), "santral-load failed: {errors}\n{table}");
    assert!(
        table.contains("calls answered                        20"),
        "{table}"
    );

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).expect("report written"))
            .expect("report is JSON");
    let calls = &report["calls"];
    assert_eq!(calls["attempted"], 20, "{table}");
    assert_eq!(calls["answered"], 20, "{table}");
    assert_eq!(calls["completed"], 20, "{table}");
    for zero in [
        "refused_503",
        "timed_out",
        "bye_timed_out",
        "bad_answer",
        "unfinished",
    ] {
        assert_eq!(calls[zero], 0, "{zero}: {table}");
    }
    assert_eq!(calls["failed_by_status"], serde_json::json!({}), "{table}");
    assert_eq!(report["rtp"]["digit_packets_sent"], 20 * 8, "{table}");
    assert_eq!(report["invite_to_200_us"]["count"], 20);
    let per_call = report["per_call"].as_array().expect("per-call lines");
    assert_eq!(per_call.len(), 20);
    for line in per_call {
        assert_eq!(line["outcome"], "completed", "{line}");
        let received = line["rtp_received"].as_u64().expect("rtp_received");
        assert!(
            received >= 50,
            "too few RTP packets from santral's prompts: {line}"
        );
        assert!(line["rtp_sent"].as_u64().expect("rtp_sent") >= 50, "{line}");
    }

    // santral's own records: 20 calls, ended by the caller, each through the menu twice
    // (digit 9 repeats it, so the press reached the IVR).
    let deadline = Instant::now() + Duration::from_secs(10);
    let records = loop {
        let records = server.get_json("/api/v1/calls?limit=100");
        let records = records.as_array().expect("array of calls").clone();
        let ended = records.iter().filter(|r| !r["ended_at"].is_null()).count();
        if ended >= 20 || Instant::now() >= deadline {
            break records;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(records.len(), 20, "{records:#?}");
    let ours: Vec<&str> = per_call
        .iter()
        .map(|l| l["call_id"].as_str().expect("call_id"))
        .collect();
    for record in &records {
        let call_id = record["call_id"].as_str().expect("call_id");
        assert!(ours.contains(&call_id), "unknown call {call_id}");
        assert_eq!(record["hangup_by"], "caller", "{record}");
        let menus = record["ivr_path"]
            .as_array()
            .expect("ivr_path")
            .iter()
            .filter(|step| *step == "main.menu")
            .count();
        assert_eq!(menus, 2, "digit 9 should repeat the menu once: {record}");
    }
}
