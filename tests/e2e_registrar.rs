//! End to end: the real `santral serve` on free loopback ports, driven by SIPp scenarios
//! (tests/sipp/*.xml): REGISTER with digest over UDP and TCP (200), OPTIONS (200 with
//! Allow/Accept/Supported), and a wrong password (401 until the throttle trips, then 403).

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn sipp_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/sipp")
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free UDP port on 127.0.0.1")
}

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free TCP port on 127.0.0.1")
}

/// Kills the server if the test fails half-way.
struct Server {
    child: Child,
    log: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Waits (bounded) for a log line containing `needle`.
    fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> bool {
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

    fn count_in_log(&mut self, needle: &str) -> usize {
        while let Ok(line) = self.log.try_recv() {
            self.seen.push(line);
        }
        self.seen.iter().filter(|l| l.contains(needle)).count()
    }
}

fn wait_bounded(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
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

fn sipp(scenario: &str, transport: &str, server_port: u16, extra: &[&str]) -> (bool, String) {
    let local_port = if transport == "t1" {
        free_tcp_port()
    } else {
        free_udp_port()
    };
    let mut cmd = Command::new("sipp");
    cmd.current_dir(sipp_dir())
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
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .expect("sipp is required for this test (Debian: apt-get install sip-tester)");
    let status = wait_bounded(&mut child, Duration::from_secs(30));
    let mut output = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut err, &mut output);
    }
    (status.is_some_and(|s| s.success()), output)
}

/// Starts `santral serve` on free loopback ports (UDP and TCP) and waits for both listeners.
fn start_server(tag: &str) -> (Server, u16, u16) {
    let udp = free_udp_port();
    let tcp = free_tcp_port();
    let config = std::env::temp_dir().join(format!(
        "santral-e2e-registrar-{tag}-{}.yaml",
        std::process::id()
    ));
    std::fs::write(
        &config,
        format!(
            "sip:\n  listen:\n    - udp: 127.0.0.1:{udp}\n    - tcp: 127.0.0.1:{tcp}\n  auth:\n    max_failures: 5\n    lockout: 60s\n"
        ),
    )
    .expect("write temp config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_santral"))
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
    let mut server = Server {
        child,
        log: rx,
        seen: Vec::new(),
    };
    assert!(
        server.wait_for_log(&format!("127.0.0.1:{tcp}"), Duration::from_secs(20))
            && server.count_in_log("SIP listening") == 2,
        "server did not report both listeners: {:?}",
        server.seen
    );
    let _ = std::fs::remove_file(&config);
    (server, udp, tcp)
}

/// baresip (a real phone stack) registers with digest and unregisters when it quits.
#[test]
fn baresip_registers_and_unregisters() {
    let version = Command::new("baresip").arg("-h").output();
    assert!(
        version.is_ok(),
        "baresip is missing: install it (Debian package baresip) to run the end-to-end tests"
    );
    let (mut server, udp, _tcp) = start_server("baresip");
    let phone_port = free_udp_port();
    let dir = std::env::temp_dir().join(format!("santral-e2e-baresip-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("baresip config dir");
    // Loopback only: baresip listens on 127.0.0.1 and talks to nothing but the server.
    std::fs::write(
        dir.join("config"),
        format!(
            "poll_method epoll\nsip_listen 127.0.0.1:{phone_port}\nsip_transports udp\n\
module_path /usr/lib/baresip/modules\nmodule g711.so\nmodule aufile.so\nmodule_app account.so\n\
audio_player aufile,/dev/null\naudio_source aufile,/dev/null\n"
        ),
    )
    .expect("baresip config");
    std::fs::write(
        dir.join("accounts"),
        format!("<sip:2001@127.0.0.1:{udp};transport=udp>;auth_pass=secret2001;regint=60\n"),
    )
    .expect("baresip accounts");
    let mut phone = Command::new("baresip")
        .arg("-f")
        .arg(&dir)
        .args(["-t", "3"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start baresip");
    let status = wait_bounded(&mut phone, Duration::from_secs(20));
    let mut output = String::new();
    if let Some(mut out) = phone.stdout.take() {
        let _ = std::io::Read::read_to_string(&mut out, &mut output);
    }
    assert!(status.is_some(), "baresip did not quit in time");
    assert!(output.contains("200 OK"), "baresip registration: {output}");
    assert!(
        server.wait_for_log("user=2001 contacts=1", Duration::from_secs(5)),
        "registered: {:?}",
        server.seen
    );
    assert!(
        server.wait_for_log("user=2001 contacts=0", Duration::from_secs(5)),
        "unregistered on exit: {:?}",
        server.seen
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn registrar_over_sipp() {
    let version = Command::new("sipp").arg("-v").output();
    assert!(
        version.is_ok(),
        "sipp is missing: install it (Debian package sip-tester) to run the end-to-end tests"
    );

    let (mut server, udp, tcp) = start_server("sipp");

    let (ok, out) = sipp("options.xml", "u1", udp, &["-s", "2001"]);
    assert!(ok, "OPTIONS over UDP: {out}");
    let (ok, out) = sipp("options.xml", "t1", tcp, &["-s", "2001"]);
    assert!(ok, "OPTIONS over TCP: {out}");

    let (ok, out) = sipp(
        "register.xml",
        "u1",
        udp,
        &["-s", "2001", "-au", "2001", "-ap", "secret2001"],
    );
    assert!(ok, "REGISTER 2001 over UDP: {out}");
    assert!(server.wait_for_log("registered", Duration::from_secs(5)));

    let (ok, out) = sipp(
        "register.xml",
        "t1",
        tcp,
        &["-s", "2001", "-au", "2001", "-ap", "secret2001"],
    );
    assert!(ok, "REGISTER 2001 over TCP: {out}");
    assert!(
        server.wait_for_log("contacts=2", Duration::from_secs(5)),
        "second contact bound: {:?}",
        server.seen
    );

    // A wrong password: challenged again (401) for four failures, the fifth failure from the
    // address trips the throttle (403), and the address stays refused (403).
    let (ok, out) = sipp(
        "register_wrong_password.xml",
        "u1",
        udp,
        &["-s", "2001", "-au", "2001", "-ap", "not-the-password"],
    );
    assert!(ok, "wrong password: 401 x4 then 403: {out}");
    assert!(
        server.wait_for_log("locked out", Duration::from_secs(5)),
        "lockout warning logged: {:?}",
        server.seen
    );
    // During the lockout even the right password is refused, so the digest scenario fails.
    let (ok, _) = sipp(
        "register.xml",
        "u1",
        udp,
        &["-s", "2001", "-au", "2001", "-ap", "secret2001"],
    );
    assert!(!ok, "a locked-out address must not register");

    // SIGTERM: the server stops and exits 0.
    let pid = server.child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status();
    assert!(killed.is_ok_and(|s| s.success()));
    let status = wait_bounded(&mut server.child, Duration::from_secs(10));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "serve exits 0 on SIGTERM"
    );
}
