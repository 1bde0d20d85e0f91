//! Shared harness of the end-to-end tests: the real `santral` binary on free loopback ports
//! with its data in a temporary directory, and SIPp scenarios from tests/sipp/.

#![allow(dead_code)] // each test binary uses a different part of the harness

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub fn sipp_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/sipp")
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free UDP port on 127.0.0.1")
}

pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free TCP port on 127.0.0.1")
}

/// Waits for `child` to exit, killing it after `timeout`.
pub fn wait_bounded(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// A running `santral serve`; killed when dropped.
pub struct Santral {
    child: Child,
    log: mpsc::Receiver<String>,
    pub seen: Vec<String>,
    pub sip_udp: u16,
    pub sip_tcp: u16,
    pub http: u16,
    pub dir: tempfile::TempDir,
}

impl Drop for Santral {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Santral {
    /// Starts the server with free ports, a temporary data directory and `extra` YAML (top-level
    /// sections other than sip.listen, http.listen and storage) laid over the embedded defaults.
    pub fn start(extra: &str) -> Santral {
        let filter = std::env::var("SANTRAL_TEST_LOG").unwrap_or_else(|_| "info".to_owned());
        Santral::start_logging(extra, &filter)
    }

    /// [`Santral::start`] with the server's log filter (`RUST_LOG` syntax) given.
    pub fn start_logging(extra: &str, filter: &str) -> Santral {
        let dir = tempfile::tempdir().expect("temp dir");
        let (sip_udp, sip_tcp, http) = (free_udp_port(), free_tcp_port(), free_tcp_port());
        let config = dir.path().join("santral.yaml");
        let data = dir.path().display().to_string();
        // A loaded test machine must not have test calls turned away as overload; the tests of
        // overload control set their own limits.
        let overload = if extra.contains("overload:") {
            ""
        } else {
            "overload:\n  max_media_lag: 0s\n  max_media_load: 0\n  max_cpu: 0\n"
        };
        std::fs::write(
            &config,
            format!(
                "sip:\n  listen:\n    - udp: 127.0.0.1:{sip_udp}\n    - tcp: 127.0.0.1:{sip_tcp}\n\
                 http:\n  listen: 127.0.0.1:{http}\n  token: test-token\n\
                 storage:\n  database: {data}/santral.db\n  recordings: {data}/recordings\n{overload}{extra}"
            ),
        )
        .expect("write temp config");
        let mut child = Command::new(env!("CARGO_BIN_EXE_santral"))
            .current_dir(repo_root())
            .args(["serve", "--config"])
            .arg(&config)
            // SANTRAL_TEST_LOG raises the server's log detail when a test needs a closer look.
            .env("RUST_LOG", filter)
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
            sip_udp,
            sip_tcp,
            http,
            dir,
        };
        assert!(
            server.wait_for_log("HTTP listening", Duration::from_secs(20)),
            "santral did not start: {:#?}",
            server.seen
        );
        server
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The configuration file the server was started with (tests rewrite it, then SIGHUP).
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("santral.yaml")
    }

    pub fn send_hup(&self) {
        let _ = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status();
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http)
    }

    /// Waits (bounded) for a log line containing `needle`.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> bool {
        if self.seen.iter().any(|l| l.contains(needle)) {
            return true;
        }
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

    pub fn count_in_log(&mut self, needle: &str) -> usize {
        while let Ok(line) = self.log.try_recv() {
            self.seen.push(line);
        }
        self.seen.iter().filter(|l| l.contains(needle)).count()
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(&mut self) -> Option<ExitStatus> {
        self.send_term();
        self.wait_exit(Duration::from_secs(20))
    }

    /// Sends SIGTERM without waiting (the server drains its calls first).
    pub fn send_term(&self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }

    /// Waits (bounded) for the server to exit, collecting the rest of its log.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let status = wait_bounded(&mut self.child, timeout);
        while let Ok(line) = self.log.recv_timeout(Duration::from_millis(200)) {
            self.seen.push(line);
        }
        status
    }
}

/// Runs one SIPp scenario from tests/sipp/ against 127.0.0.1:`server_port` ("u1" UDP,
/// "t1" TCP); returns whether it passed and its stderr.
pub fn sipp(scenario: &str, transport: &str, server_port: u16, extra: &[&str]) -> (bool, String) {
    let local_port = if transport == "t1" {
        free_tcp_port()
    } else {
        free_udp_port()
    };
    let mut child = Command::new("sipp")
        .current_dir(sipp_dir())
        .args([
            "-sf",
            scenario,
            "-t",
            transport,
            "-m",
            "1",
            "-i",
            "127.0.0.1",
        ])
        .args(["-p", &local_port.to_string()])
        .args(["-timeout", "15", "-timeout_error", "-nostdin"])
        .args(extra)
        .arg(format!("127.0.0.1:{server_port}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sipp is required for this test (Debian: apt-get install sip-tester)");
    let status = wait_bounded(&mut child, Duration::from_secs(30));
    let mut output = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut err, &mut output);
    }
    (status.is_some_and(|s| s.success()), output)
}

/// Starts SIPp with `args` (run from tests/sipp/) without waiting; the caller collects it with
/// [`wait_sipp`].
pub fn spawn_sipp(args: &[String]) -> Child {
    Command::new("sipp")
        .current_dir(sipp_dir())
        .args(args)
        .args(["-nostdin", "-timeout", "30", "-timeout_error"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sipp is required for this test (Debian: apt-get install sip-tester)")
}

/// Waits (bounded) for a SIPp started with [`spawn_sipp`]; returns success and its stderr.
pub fn wait_sipp(mut child: Child, timeout: Duration) -> (bool, String) {
    let status = wait_bounded(&mut child, timeout);
    let mut output = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut err, &mut output);
    }
    (status.is_some_and(|s| s.success()), output)
}

/// GET `url` and parse JSON.
pub fn get_text(url: &str) -> String {
    reqwest::blocking::get(url)
        .unwrap_or_else(|err| panic!("GET {url}: {err}"))
        .text()
        .unwrap_or_else(|err| panic!("GET {url}: not text: {err}"))
}

pub fn get_json(url: &str) -> serde_json::Value {
    reqwest::blocking::get(url)
        .unwrap_or_else(|err| panic!("GET {url}: {err}"))
        .json()
        .unwrap_or_else(|err| panic!("GET {url}: not JSON: {err}"))
}

/// Registers `agent` from `port` and waits until the ACD has it available.
pub fn register_agent(server: &Santral, agent: &str, port: u16) {
    let (ok, out) = sipp(
        "register.xml",
        "u1",
        server.sip_udp,
        &[
            "-s",
            agent,
            "-au",
            agent,
            "-ap",
            &format!("secret{agent}"),
            "-p",
            &port.to_string(),
        ],
    );
    assert!(ok, "REGISTER {agent}: {out}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let agents = get_json(&server.url("/api/v1/agents"));
        let available = agents
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["id"] == agent && a["state"] == "available");
        if available {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("agent {agent} did not become available");
}

/// SIPp arguments for a caller scenario against the server's hotline 1000.
pub fn caller_args(scenario: &str, server: &Santral, talk_ms: u32) -> Vec<String> {
    vec![
        "-sf".into(),
        scenario.into(),
        "-s".into(),
        "1000".into(),
        "-i".into(),
        "127.0.0.1".into(),
        "-p".into(),
        free_udp_port().to_string(),
        "-mp".into(),
        free_udp_port().to_string(),
        "-d".into(),
        talk_ms.to_string(),
        "-m".into(),
        "1".into(),
        format!("127.0.0.1:{}", server.sip_udp),
    ]
}

/// SIPp arguments for an agent phone scenario answering on `port`.
pub fn agent_args(scenario: &str, port: u16) -> Vec<String> {
    vec![
        "-sf".into(),
        scenario.into(),
        "-i".into(),
        "127.0.0.1".into(),
        "-p".into(),
        port.to_string(),
        "-mp".into(),
        free_udp_port().to_string(),
        "-rtp_echo".into(),
        "-m".into(),
        "1".into(),
    ]
}

/// The one call record the server holds.
pub fn only_call(server: &Santral) -> serde_json::Value {
    let calls = get_json(&server.url("/api/v1/calls"));
    let calls = calls.as_array().expect("array of calls").clone();
    assert_eq!(calls.len(), 1, "{calls:#?}");
    calls.into_iter().next().unwrap()
}

/// A copy of the demo flows in a temporary directory with each `(from, to)` text replaced.
pub fn demo_flows_with(replacements: &[(&str, &str)]) -> tempfile::TempDir {
    let flows = tempfile::tempdir().expect("temp dir");
    for entry in std::fs::read_dir(repo_root().join("ivr-flows")).expect("ivr-flows") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let mut text = std::fs::read_to_string(&path).expect("flow file");
            for (from, to) in replacements {
                text = text.replace(from, to);
            }
            let name = path.file_name().expect("file name");
            std::fs::write(flows.path().join(name), text).expect("write flow");
        }
    }
    flows
}
