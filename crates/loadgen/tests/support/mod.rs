//! Shared harness of the end-to-end tests: the real `santral serve` on free loopback ports.
//!
//! The santral binary is taken from the same target directory as the test (built first when it
//! is missing, with the cargo that runs the test).

#![allow(dead_code)] // each test binary uses a different part

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use santral_sip::{Message, Method};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("free UDP port")
}

pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("free TCP port")
}

/// target/<profile>/santral beside this test's own executable (target/<profile>/deps/…).
pub fn santral_binary() -> PathBuf {
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
pub struct Santral {
    child: Child,
    log: mpsc::Receiver<String>,
    seen: Vec<String>,
    pub sip: u16,
    pub http: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Santral {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Santral {
    pub fn start() -> Santral {
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

    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> bool {
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
    pub fn get_json(&self, path: &str) -> serde_json::Value {
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

/// A UDP "server" answering each request with `answer(request)` (if any) until stopped.
pub struct Scripted {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<Method>>>,
    pub addr: std::net::SocketAddr,
}

impl Scripted {
    pub fn start(answer: fn(&Message) -> Option<Message>) -> Scripted {
        Scripted::start_on("127.0.0.1:0", answer)
    }

    /// [`Scripted::start`] on a given loopback address (e.g. `[::1]:0`).
    pub fn start_on(bind: &str, answer: fn(&Message) -> Option<Message>) -> Scripted {
        let socket = UdpSocket::bind(bind).expect("bind");
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .expect("timeout");
        let addr = socket.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut buf = [0u8; 8192];
            // Bounded: stops when told and idle (20 ms without a datagram), or after 30 s.
            for _ in 0..1500 {
                let Ok((n, from)) = socket.recv_from(&mut buf) else {
                    if flag.load(Ordering::Relaxed) {
                        break;
                    }
                    continue;
                };
                let request = match Message::parse(&buf[..n]) {
                    Ok(request) => request,
                    Err(err) => {
                        eprintln!("scripted server: unparsable datagram: {err}");
                        continue;
                    }
                };
                if let Some(method) = request.method() {
                    seen.push(method.clone());
                }
                if let Some(response) = answer(&request) {
                    let _ = socket.send_to(&response.to_bytes(), from);
                }
            }
            seen
        });
        Scripted {
            stop,
            thread: Some(thread),
            addr,
        }
    }

    pub fn stop(mut self) -> Vec<Method> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .map(|t| t.join().expect("server thread"))
            .unwrap_or_default()
    }
}
