//! End to end: santral-load against the real `santral serve` on free loopback ports.
//!
//! The santral binary is taken from the same target directory as this test (built first when it
//! is missing, with the cargo that runs the test).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("free UDP port")
}

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("free TCP port")
}

/// target/<profile>/santral beside this test's own executable (target/<profile>/deps/…).
fn santral_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let binary = profile_dir.join("santral");
    if !binary.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build
            .current_dir(repo_root())
            .args(["build", "-p", "santral", "--bin", "santral"]);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            build.arg("--release");
        }
        let status = build.status().expect("run cargo build -p santral");
        assert!(status.success(), "building the santral binary failed");
    }
    binary
}

/// A running `santral serve`; killed when dropped.
struct Santral {
    child: Child,
    log: mpsc::Receiver<String>,
    seen: Vec<String>,
    sip: u16,
    http: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Santral {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Santral {
    fn start() -> Santral {
        let dir = tempfile::tempdir().expect("temp dir");
        let (sip, http) = (free_udp_port(), free_tcp_port());
        let config = dir.path().join("santral.yaml");
        let data = dir.path().display();
        std::fs::write(
            &config,
            format!(
                "sip:\n  listen:\n    - udp: 127.0.0.1:{sip}\n\
                 http:\n  listen: 127.0.0.1:{http}\n  token: test-token\n\
                 storage:\n  database: {data}/santral.db\n  recordings: {data}/recordings\n\
                 recording:\n  default: none\n"
            ),
        )
        .expect("write config");
        let mut child = Command::new(santral_binary())
            .current_dir(repo_root())
            .args(["serve", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start santral serve");
        let stderr = child.stderr.take().expect("server stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut server = Santral {
            child,
            log: rx,
            seen: Vec::new(),
            sip,
            http,
            _dir: dir,
        };
        assert!(
            server.wait_for_log("HTTP listening", Duration::from_secs(20)),
            "santral did not start: {:#?}",
            server.seen
        );
        server
    }

    fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.log.recv_timeout(left) {
                Ok(line) => {
                    let hit = line.contains(needle);
                    self.seen.push(line);
                    if hit {
                        return true;
                    }
                }
                Err(_) => return false,
            }
        }
        false
    }

    /// GET a JSON document from the HTTP API (plain HTTP/1.0 over loopback).
    fn get_json(&self, path: &str) -> serde_json::Value {
        let mut stream =
            TcpStream::connect(("127.0.0.1", self.http)).expect("connect to the HTTP API");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("read timeout");
        write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").expect("send request");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read response");
        let (head, body) = response.split_once("\r\n\r\n").expect("HTTP response");
        assert!(
            head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
            "{head}"
        );
        serde_json::from_str(body)
            .unwrap_or_else(|err| panic!("GET {path}: not JSON: {err}: {body}"))
    }
}

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
