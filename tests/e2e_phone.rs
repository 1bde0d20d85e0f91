//! santral-phone end to end: the real `santral serve` and two real `santral-phone` processes on
//! loopback. Agent 2001 registers with file audio and auto-answer; a second santral-phone (a
//! customer, not registered) dials the hotline 1000, presses 1 (billing) and talks. Each side's
//! OUT.wav must hold the other side's IN.wav, proven by normalized cross-correlation (and not by
//! the other, unrelated signal).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const SAMPLE_RATE: u32 = 8000;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn phone_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_santral-phone"))
}

fn server_binary() -> PathBuf {
    let path = phone_binary().with_file_name("santral");
    assert!(
        path.exists(),
        "the santral server binary is not built at {}: run `cargo build -p santral` with the same \
         target directory (cargo test --workspace builds it)",
        path.display()
    );
    path
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free UDP port")
}

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free TCP port")
}

/// Lines of a child's stream, read on a thread, waited for with a bound.
struct Lines {
    rx: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Lines {
    fn of(stream: impl std::io::Read + Send + 'static) -> Lines {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Lines {
            rx,
            seen: Vec::new(),
        }
    }

    /// The first line (seen before or arriving within `timeout`) for which `matches` is true.
    fn wait(&mut self, timeout: Duration, matches: impl Fn(&str) -> bool) -> Option<String> {
        if let Some(line) = self.seen.iter().find(|l| matches(l)) {
            return Some(line.clone());
        }
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let line = self.rx.recv_timeout(left).ok()?;
            self.seen.push(line.clone());
            if matches(&line) {
                return Some(line);
            }
        }
        None
    }
}

impl Lines {
    /// Waits until `n` lines seen so far contain `needle`; returns whether they did in time.
    fn wait_count(&mut self, needle: &str, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.seen.iter().filter(|l| l.contains(needle)).count() >= n {
                return true;
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return false;
            };
            match self.rx.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => return false,
            }
        }
    }
}

struct Server {
    child: Child,
    log: Lines,
    sip: u16,
    http: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port free for both UDP and TCP (the server listens on both with one number).
fn free_sip_port() -> u16 {
    for _ in 0..100 {
        let port = free_udp_port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP on 127.0.0.1")
}

fn start_server() -> Server {
    start_server_on(free_sip_port(), free_tcp_port())
}

/// A server on given ports (a restart keeps them), with a fresh data directory.
fn start_server_on(sip: u16, http: u16) -> Server {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().display().to_string();
    let config = dir.path().join("santral.yaml");
    std::fs::write(
        &config,
        format!(
            "sip:\n  listen:\n    - udp: 127.0.0.1:{sip}\n    - tcp: 127.0.0.1:{sip}\nhttp:\n  listen: 127.0.0.1:{http}\n  \
             token: test-token\nstorage:\n  database: {data}/santral.db\n  recordings: {data}/recordings\n"
        ),
    )
    .expect("write config");
    let mut child = Command::new(server_binary())
        .current_dir(repo_root())
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start santral serve");
    let mut log = Lines::of(child.stderr.take().expect("stderr"));
    assert!(
        log.wait(Duration::from_secs(20), |l| l.contains("HTTP listening"))
            .is_some(),
        "santral did not start: {:#?}",
        log.seen
    );
    Server {
        child,
        log,
        sip,
        http,
        _dir: dir,
    }
}

struct Phone {
    child: Child,
    stdin: ChildStdin,
    events: Lines,
}

impl Phone {
    fn start(args: &[&str]) -> Phone {
        Phone::start_with_env(args, &[])
    }

    fn start_with_env(args: &[&str], env: &[(&str, &Path)]) -> Phone {
        let mut child = Command::new(phone_binary())
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, *v)))
            .arg("--no-tui")
            .env("RUST_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start santral-phone");
        let stdin = child.stdin.take().expect("stdin");
        let events = Lines::of(child.stdout.take().expect("stdout"));
        Phone {
            child,
            stdin,
            events,
        }
    }

    fn send(&mut self, command: &str) {
        writeln!(self.stdin, "{command}").expect("write a command to the phone");
        self.stdin.flush().expect("flush");
    }

    /// Waits for the JSON event `name`, returning it parsed.
    fn expect_event(&mut self, name: &str, timeout: Duration) -> serde_json::Value {
        let needle = format!("\"event\":\"{name}\"");
        let line = self
            .events
            .wait(timeout, |l| l.contains(&needle))
            .unwrap_or_else(|| panic!("no {name} event; got {:#?}", self.events.seen));
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON: {line}: {e}"))
    }

    fn quit(&mut self) {
        self.send("quit");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        panic!("santral-phone did not exit after quit");
    }
}

impl Drop for Phone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A reproducible, non-periodic test signal: band-limited noise (xorshift, smoothed), 8 kHz.
fn noise_signal(seed: u32, seconds: f32) -> Vec<i16> {
    let mut state = seed.max(1);
    let mut smooth = 0.0f32;
    (0..(seconds * SAMPLE_RATE as f32) as usize)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let white = (state as f32 / u32::MAX as f32) * 2.0 - 1.0;
            // One-pole low-pass: speech-band energy that G.711 carries well.
            smooth = 0.6 * smooth + 0.4 * white;
            (smooth * 12000.0) as i16
        })
        .collect()
}

fn write_wav(path: &Path, samples: &[i16]) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: SAMPLE_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec).expect("create wav");
    for &s in samples {
        writer.write_sample(s).expect("write sample");
    }
    writer.finalize().expect("finalize wav");
}

fn read_wav(path: &Path) -> Vec<i16> {
    let reader = hound::WavReader::open(path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    assert_eq!(reader.spec().sample_rate, SAMPLE_RATE);
    reader
        .into_samples::<i16>()
        .collect::<Result<_, _>>()
        .expect("samples")
}

/// Best normalized cross-correlation of `window` against the looped `reference`, over every lag.
fn best_correlation(window: &[i16], reference: &[i16]) -> f64 {
    let window: Vec<f64> = window.iter().map(|&s| f64::from(s)).collect();
    let reference: Vec<f64> = reference.iter().map(|&s| f64::from(s)).collect();
    let window_energy: f64 = window.iter().map(|x| x * x).sum();
    if window_energy == 0.0 {
        return 0.0;
    }
    let n = reference.len();
    let mut best = 0.0f64;
    for lag in 0..n {
        let mut dot = 0.0;
        let mut energy = 0.0;
        for (i, w) in window.iter().enumerate() {
            let r = reference[(lag + i) % n];
            dot += w * r;
            energy += r * r;
        }
        if energy > 0.0 {
            best = best.max(dot / (window_energy * energy).sqrt());
        }
    }
    best
}

/// The best correlation of any 0.25 s window in `heard[from..to]` (stepping 0.25 s).
fn heard_correlation(heard: &[i16], from: usize, to: usize, reference: &[i16]) -> f64 {
    let window = SAMPLE_RATE as usize / 4;
    let to = to.min(heard.len());
    let mut best = 0.0f64;
    let mut start = from;
    while start + window <= to {
        best = best.max(best_correlation(&heard[start..start + window], reference));
        start += window;
    }
    best
}

#[test]
fn agent_phone_answers_a_hotline_call_and_audio_flows_both_ways() {
    let mut server = start_server();
    let server_addr = format!("127.0.0.1:{}", server.sip);
    let dir = tempfile::tempdir().expect("temp dir");
    let agent_in = dir.path().join("agent_in.wav");
    let agent_out = dir.path().join("agent_out.wav");
    let caller_in = dir.path().join("caller_in.wav");
    let caller_out = dir.path().join("caller_out.wav");
    // 1.5 s loops: every lag can be searched; distinct seeds make the signals unrelated.
    let agent_voice = noise_signal(0x2001, 1.5);
    let caller_voice = noise_signal(0xCA11, 1.5);
    write_wav(&agent_in, &agent_voice);
    write_wav(&caller_in, &caller_voice);

    let agent_audio = format!("file:{},{}", agent_in.display(), agent_out.display());
    // The CRM "browser": a script that writes down the URL it was asked to open.
    let crm_opener = dir.path().join("open-crm.sh");
    let crm_opened = dir.path().join("crm-opened.txt");
    std::fs::write(
        &crm_opener,
        format!(
            "#!/bin/sh\nprintf '%s' \"$1\" > '{}'\n",
            crm_opened.display()
        ),
    )
    .expect("write the CRM opener");
    std::fs::set_permissions(
        &crm_opener,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod the CRM opener");
    let crm_command = crm_opener.display().to_string();
    let mut agent = Phone::start(&[
        "--server",
        &server_addr,
        "--user",
        "2001",
        "--password",
        "secret2001",
        "--auto-answer",
        "--audio",
        &agent_audio,
        "--crm-url",
        "https://crm.invalid/customer?phone={caller}",
        "--crm-command",
        &crm_command,
    ]);
    agent.expect_event("registered", Duration::from_secs(10));
    assert!(
        server
            .log
            .wait(Duration::from_secs(5), |l| l.contains("registered")
                && l.contains("2001"))
            .is_some()
    );

    let caller_audio = format!("file:{},{}", caller_in.display(), caller_out.display());
    let mut caller = Phone::start(&[
        "--server",
        &server_addr,
        "--user",
        "05321234567",
        "--no-register",
        "--audio",
        &caller_audio,
    ]);
    caller.expect_event("started", Duration::from_secs(10));
    caller.send("dial 1000");
    caller.expect_event("answered", Duration::from_secs(10));
    // Let the main menu start, then choose billing.
    std::thread::sleep(Duration::from_millis(800));
    caller.send("dtmf 1");
    caller.expect_event("dtmf_sent", Duration::from_secs(5));

    let offered = agent.expect_event("incoming_call", Duration::from_secs(20));
    assert_eq!(offered["queue"], "billing", "screen-pop: {offered}");
    assert_eq!(offered["caller"], "05321234567", "screen-pop: {offered}");
    assert!(
        offered["ivr_path"].as_str().is_some_and(|p| !p.is_empty()),
        "screen-pop: {offered}"
    );
    let answered = agent.expect_event("answered", Duration::from_secs(5));
    assert!(answered["codec"].is_string());
    let crm_url = "https://crm.invalid/customer?phone=05321234567";
    assert_eq!(offered["crm_url"], crm_url, "screen-pop: {offered}");

    // Talk for a while, then the customer hangs up.
    std::thread::sleep(Duration::from_secs(4));
    caller.send("hangup");
    let caller_end = caller.expect_event("ended", Duration::from_secs(5));
    assert_eq!(caller_end["reason"], "local hangup");
    let agent_end = agent.expect_event("ended", Duration::from_secs(10));
    assert_eq!(agent_end["reason"], "remote hangup");
    assert!(agent_end["duration_secs"].as_f64().unwrap_or(0.0) > 3.0);
    caller.quit();
    agent.quit();
    assert_eq!(
        std::fs::read_to_string(&crm_opened).ok().as_deref(),
        Some(crm_url),
        "the CRM command was not run with the caller's URL"
    );

    // The agent heard the customer: the whole agent recording is the bridged call.
    let heard_by_agent = read_wav(&agent_out);
    assert!(
        heard_by_agent.len() > 3 * SAMPLE_RATE as usize,
        "agent OUT.wav has {} samples",
        heard_by_agent.len()
    );
    let end = heard_by_agent.len();
    let from = SAMPLE_RATE as usize; // past the jitter buffer's start
    let agent_hears_caller = heard_correlation(&heard_by_agent, from, end, &caller_voice);
    let agent_hears_itself = heard_correlation(&heard_by_agent, from, end, &agent_voice);
    // The customer heard the agent: the last seconds of the customer's recording (before them:
    // IVR prompts and the queue).
    let heard_by_caller = read_wav(&caller_out);
    let end = heard_by_caller.len();
    let from = end.saturating_sub(3 * SAMPLE_RATE as usize);
    let caller_hears_agent = heard_correlation(&heard_by_caller, from, end, &agent_voice);
    let caller_hears_itself = heard_correlation(&heard_by_caller, from, end, &caller_voice);
    eprintln!(
        "agent←caller {agent_hears_caller:.3} (control {agent_hears_itself:.3}); \
         caller←agent {caller_hears_agent:.3} (control {caller_hears_itself:.3})"
    );
    assert!(
        agent_hears_caller > 0.8,
        "agent OUT.wav does not hold the caller's audio: {agent_hears_caller:.3}"
    );
    assert!(
        caller_hears_agent > 0.8,
        "caller OUT.wav does not hold the agent's audio: {caller_hears_agent:.3}"
    );
    assert!(agent_hears_itself < 0.3 && caller_hears_itself < 0.3);
}

/// The cpal device path for real: ALSA's `null` PCM (chosen through an asoundrc the test writes,
/// found through HOME) as agent 2001's headset; the call rings, and is answered by command. The call must run through the capture and
/// playback callbacks (their sample counters move), and the customer hears what the null
/// microphone captures: silence, not the agent's file or anything else.
#[test]
fn agent_phone_on_the_alsa_null_device_takes_a_call() {
    let mut server = start_server();
    let server_addr = format!("127.0.0.1:{}", server.sip);
    let home = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        home.path().join(".asoundrc"),
        "pcm.!default {\n  type null\n}\n",
    )
    .expect("write .asoundrc");

    let listing = Command::new(phone_binary())
        .arg("--list-devices")
        .env("HOME", home.path())
        .output()
        .expect("run --list-devices");
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    assert!(listing.contains("input: alsa:null"), "{listing}");
    assert!(listing.contains("output: alsa:default"), "{listing}");

    let mut agent = Phone::start_with_env(
        &[
            "--server",
            &server_addr,
            "--user",
            "2001",
            "--password",
            "secret2001",
            "--audio",
            "device",
            "--input",
            "null",
            "--output",
            "alsa:default",
        ],
        &[("HOME", home.path())],
    );
    agent.expect_event("registered", Duration::from_secs(10));
    assert!(
        server
            .log
            .wait(Duration::from_secs(5), |l| l.contains("registered")
                && l.contains("2001"))
            .is_some()
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let caller_in = dir.path().join("caller_in.wav");
    let caller_out = dir.path().join("caller_out.wav");
    let caller_voice = noise_signal(0xCA11, 1.5);
    write_wav(&caller_in, &caller_voice);
    let caller_audio = format!("file:{},{}", caller_in.display(), caller_out.display());
    let mut caller = Phone::start(&[
        "--server",
        &server_addr,
        "--user",
        "05321234567",
        "--no-register",
        "--audio",
        &caller_audio,
    ]);
    caller.send("dial 1000");
    caller.expect_event("answered", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(800));
    caller.send("dtmf 1");
    agent.expect_event("incoming_call", Duration::from_secs(20));
    // Ringing on the device for a moment (the ringtone runs through the playback stream), then
    // the agent answers by hand.
    std::thread::sleep(Duration::from_millis(1000));
    agent.send("answer");
    agent.expect_event("answered", Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(3));
    agent.send("hangup");
    // The hotline's flow goes on to its after-call survey: the customer hangs up at once, so
    // little of the survey prompt is in their recording.
    std::thread::sleep(Duration::from_millis(100));
    caller.send("hangup");
    let ended = agent.expect_event("ended", Duration::from_secs(5));
    assert_eq!(ended["reason"], "local hangup");
    let captured = ended["device_samples"]["captured"].as_u64().unwrap_or(0);
    let played = ended["device_samples"]["played"].as_u64().unwrap_or(0);
    // Three seconds of call: at least that much audio went through both callbacks.
    assert!(
        captured >= 3 * 8000 && played >= 3 * 8000,
        "device samples: {ended}"
    );
    caller.expect_event("ended", Duration::from_secs(10));
    caller.quit();
    agent.quit();

    // What the customer heard from the agent: the null microphone's silence.
    let heard = read_wav(&caller_out);
    // The agent's part of the call: the 2 s before the survey (which starts with the agent's BYE).
    let survey_start = heard.len().saturating_sub(SAMPLE_RATE as usize / 2);
    let tail = &heard[survey_start.saturating_sub(2 * SAMPLE_RATE as usize)..survey_start];
    let peak = tail.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
    assert!(
        peak < 200,
        "the agent's null microphone should be silent, peak {peak}"
    );
    assert!(heard_correlation(&heard, 0, heard.len(), &caller_voice) < 0.3);
}

/// G.711 A-law to linear (ITU-T G.711), for the reference speech in the SIPp pcap.
fn alaw_to_linear(code: u8) -> i16 {
    let a = code ^ 0x55;
    let exponent = (a >> 4) & 0x07;
    let mantissa = i16::from(a & 0x0f);
    let magnitude = if exponent == 0 {
        (mantissa << 4) + 8
    } else {
        ((mantissa << 4) + 0x108) << (exponent - 1)
    };
    if a & 0x80 != 0 { magnitude } else { -magnitude }
}

/// The PCMA payloads of every RTP packet in a classic pcap (Ethernet/IPv4/UDP), decoded.
fn pcap_alaw_speech(path: &Path) -> Vec<i16> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(bytes.len() > 24, "pcap too short");
    let mut offset = 24;
    let mut speech = Vec::new();
    while offset + 16 <= bytes.len() {
        let captured = u32::from_le_bytes([
            bytes[offset + 8],
            bytes[offset + 9],
            bytes[offset + 10],
            bytes[offset + 11],
        ]) as usize;
        let start = offset + 16;
        let end = (start + captured).min(bytes.len());
        let packet = &bytes[start..end];
        // Ethernet 14 + IPv4 20 + UDP 8 + RTP 12.
        if packet.len() > 54 && packet[43] & 0x7f == 8 {
            speech.extend(packet[54..].iter().map(|&c| alaw_to_linear(c)));
        }
        offset = end;
    }
    speech
}

/// The SIPp caller: tests/sipp/caller_menu_1.xml dials 1000, presses 1 and speaks
/// (speech_pcma.pcap, 20 ms PCMA). The agent's santral-phone OUT.wav must hold that speech.
#[test]
fn agent_phone_hears_a_sipp_caller_speaking() {
    let mut server = start_server();
    let server_addr = format!("127.0.0.1:{}", server.sip);
    let sipp_dir = repo_root().join("tests/sipp");
    let reference = pcap_alaw_speech(&sipp_dir.join("speech_pcma.pcap"));
    assert!(
        reference.len() > 2 * SAMPLE_RATE as usize,
        "reference speech too short"
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let agent_in = dir.path().join("agent_in.wav");
    let agent_out = dir.path().join("agent_out.wav");
    write_wav(&agent_in, &noise_signal(0x2001, 1.5));
    let agent_audio = format!("file:{},{}", agent_in.display(), agent_out.display());
    let mut agent = Phone::start(&[
        "--server",
        &server_addr,
        "--user",
        "2001",
        "--password",
        "secret2001",
        "--auto-answer",
        "--audio",
        &agent_audio,
    ]);
    agent.expect_event("registered", Duration::from_secs(10));
    assert!(
        server
            .log
            .wait(Duration::from_secs(5), |l| l.contains("registered")
                && l.contains("2001"))
            .is_some()
    );

    let mut caller = Command::new("sipp")
        .current_dir(&sipp_dir)
        .args(["-sf", "caller_menu_1.xml", "-s", "1000", "-i", "127.0.0.1"])
        .args(["-p", &free_udp_port().to_string()])
        .args(["-mp", &free_udp_port().to_string()])
        .args([
            "-d",
            "2000",
            "-m",
            "1",
            "-nostdin",
            "-timeout",
            "30",
            "-timeout_error",
        ])
        .arg(&server_addr)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sipp is required for this test (Debian: apt-get install sip-tester)");
    let offered = agent.expect_event("incoming_call", Duration::from_secs(20));
    assert_eq!(offered["queue"], "billing", "screen-pop: {offered}");
    agent.expect_event("answered", Duration::from_secs(5));
    let ended = agent.expect_event("ended", Duration::from_secs(30));
    assert_eq!(ended["reason"], "remote hangup");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Ok(Some(status)) = caller.try_wait() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = caller.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.is_some_and(|s| s.success()),
        "the SIPp caller failed"
    );
    agent.quit();

    let heard = read_wav(&agent_out);
    let heard_speech = heard_correlation(&heard, 0, heard.len(), &reference);
    let heard_noise = heard_correlation(&heard, 0, heard.len(), &noise_signal(0xCA11, 1.5));
    eprintln!("agent←SIPp speech {heard_speech:.3} (control {heard_noise:.3})");
    assert!(
        heard_speech > 0.8,
        "agent OUT.wav does not hold the caller's speech: {heard_speech:.3}"
    );
    assert!(heard_noise < 0.3);
}

/// Re-registration after a server restart: the keepalive notices the server is gone, and when a
/// new server answers on the same address the phone registers again (the new server has no
/// binding until then).
#[test]
fn agent_phone_registers_again_after_a_server_restart() {
    let server = start_server();
    let (sip, http) = (server.sip, free_tcp_port());
    let server_addr = format!("127.0.0.1:{sip}");
    let mut agent = Phone::start(&[
        "--server",
        &server_addr,
        "--user",
        "2001",
        "--password",
        "secret2001",
        "--audio",
        "null",
        "--keepalive",
        "1",
    ]);
    agent.expect_event("registered", Duration::from_secs(10));
    drop(server); // killed
    agent.expect_event("server_unreachable", Duration::from_secs(10));
    let mut restarted = start_server_on(sip, http);
    agent.expect_event("server_reachable", Duration::from_secs(10));
    let registered_again =
        agent
            .events
            .wait_count("\"event\":\"registered\"", 2, Duration::from_secs(10));
    assert!(registered_again, "events: {:#?}", agent.events.seen);
    assert!(
        restarted
            .log
            .wait(Duration::from_secs(5), |l| l.contains("registered")
                && l.contains("2001"))
            .is_some(),
        "the restarted server has no binding for 2001"
    );
    agent.quit();
}

/// Interop with another SIP stack: santral-phone calls baresip directly (no server), baresip
/// auto-answers playing a file (aufile) and dumps what it hears (sndfile). Audio must cross
/// both ways; DTMF, hold/resume and a blind transfer must reach baresip.
#[test]
fn phone_calls_baresip_and_audio_flows_both_ways() {
    let dir = tempfile::tempdir().expect("temp dir");
    let baresip_port = free_udp_port();
    let phone_voice = noise_signal(0x2001, 1.5);
    let baresip_voice = noise_signal(0xBA7E, 1.5);
    let phone_in = dir.path().join("phone_in.wav");
    let phone_out = dir.path().join("phone_out.wav");
    let baresip_in = dir.path().join("baresip_in.wav");
    let dumps = dir.path().join("dumps");
    std::fs::create_dir(&dumps).expect("dump dir");
    write_wav(&phone_in, &phone_voice);
    // aufile plays its file once: repeat the period for longer than the call.
    write_wav(&baresip_in, &baresip_voice.repeat(8));
    // net_interface keeps baresip's SDP on loopback (this machine has a real 192.0.2.0/24).
    std::fs::write(
        dir.path().join("config"),
        format!(
            "poll_method epoll\nsip_listen 127.0.0.1:{baresip_port}\nsip_transports udp\n\
             net_interface 127.0.0.1\nmodule_path /usr/lib/baresip/modules\nmodule g711.so\n\
             module aufile.so\nmodule sndfile.so\nmodule_app account.so\n\
             audio_player aufile,/dev/null\naudio_source aufile,{}\naudio_alert aufile,/dev/null\n\
             snd_path {}\n",
            baresip_in.display(),
            dumps.display()
        ),
    )
    .expect("baresip config");
    std::fs::write(
        dir.path().join("accounts"),
        format!("<sip:baresip@127.0.0.1:{baresip_port};transport=udp>;regint=0;answermode=auto\n"),
    )
    .expect("baresip accounts");
    let mut baresip = Command::new("baresip")
        .arg("-f")
        .arg(dir.path())
        .args(["-t", "30"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("baresip is required (Debian package baresip)");
    let mut baresip_log = Lines::of(baresip.stdout.take().expect("baresip stdout"));
    assert!(
        baresip_log
            .wait(Duration::from_secs(10), |l| l.contains("baresip is ready"))
            .is_some(),
        "baresip did not start: {:#?}",
        baresip_log.seen
    );

    let baresip_addr = format!("127.0.0.1:{baresip_port}");
    let phone_audio = format!("file:{},{}", phone_in.display(), phone_out.display());
    let mut phone = Phone::start(&[
        "--server",
        &baresip_addr,
        "--user",
        "2001",
        "--no-register",
        "--audio",
        &phone_audio,
    ]);
    phone.send(&format!("dial sip:baresip@{baresip_addr}"));
    let answered = phone.expect_event("answered", Duration::from_secs(10));
    assert!(
        answered["remote_rtp"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:")),
        "{answered}"
    );
    std::thread::sleep(Duration::from_secs(4));
    // The call controls against another stack: RFC 4733 DTMF, hold and resume (re-INVITE),
    // blind transfer (REFER), which ends our side of the call.
    phone.send("dtmf 5");
    assert!(
        baresip_log
            .wait(Duration::from_secs(5), |l| l
                .contains("received event: '5'"))
            .is_some(),
        "baresip did not get the DTMF: {:#?}",
        baresip_log.seen
    );
    phone.send("hold");
    phone.expect_event("held", Duration::from_secs(5));
    phone.send("resume");
    phone.expect_event("resumed", Duration::from_secs(5));
    assert!(
        baresip_log.wait_count("got re-INVITE", 2, Duration::from_secs(5)),
        "{:#?}",
        baresip_log.seen
    );
    phone.send(&format!("transfer sip:2002@{baresip_addr}"));
    let accepted = phone.expect_event("transfer_accepted", Duration::from_secs(5));
    assert_eq!(accepted["target"], format!("sip:2002@{baresip_addr}"));
    let ended = phone.expect_event("ended", Duration::from_secs(5));
    assert_eq!(ended["reason"], "transferred");
    phone.quit();
    assert!(
        baresip_log
            .wait(Duration::from_secs(5), |l| l.contains("terminated"))
            .is_some(),
        "baresip did not see the hang-up: {:#?}",
        baresip_log.seen
    );
    let _ = baresip.kill();
    let _ = baresip.wait();

    let heard_by_phone = read_wav(&phone_out);
    let end = heard_by_phone.len();
    let phone_hears_baresip =
        heard_correlation(&heard_by_phone, SAMPLE_RATE as usize, end, &baresip_voice);
    let decoded = std::fs::read_dir(&dumps)
        .expect("dump dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with("-dec.wav"))
        .unwrap_or_else(|| panic!("baresip wrote no decode dump: {:#?}", baresip_log.seen));
    let heard_by_baresip = read_wav(&decoded);
    let end = heard_by_baresip.len();
    let baresip_hears_phone =
        heard_correlation(&heard_by_baresip, SAMPLE_RATE as usize, end, &phone_voice);
    eprintln!("phone←baresip {phone_hears_baresip:.3}; baresip←phone {baresip_hears_phone:.3}");
    assert!(phone_hears_baresip > 0.8, "{phone_hears_baresip:.3}");
    assert!(baresip_hears_phone > 0.8, "{baresip_hears_phone:.3}");
}

/// Agent controls: through the HTTP API when the phone has it (the server answers the new
/// state), else through santral's feature codes (an authenticated call to *42 / *43).
#[test]
fn agent_controls_over_http_and_feature_codes() {
    let mut server = start_server();
    let server_addr = format!("127.0.0.1:{}", server.sip);
    let http = format!("http://127.0.0.1:{}", server.http);
    let mut with_api = Phone::start(&[
        "--server",
        &server_addr,
        "--user",
        "2001",
        "--password",
        "secret2001",
        "--audio",
        "null",
        "--http",
        &http,
        "--http-token",
        "test-token",
    ]);
    with_api.expect_event("registered", Duration::from_secs(10));
    with_api.send("pause lunch");
    let paused = with_api.expect_event("agent_state", Duration::from_secs(5));
    assert_eq!(paused["state"], "paused", "{paused}");
    assert!(
        paused["detail"]
            .as_str()
            .is_some_and(|d| d.contains("lunch"))
    );
    with_api.send("ready");
    assert!(
        with_api
            .events
            .wait(Duration::from_secs(5), |l| l
                .contains("\"state\":\"available\""))
            .is_some(),
        "{:#?}",
        with_api.events.seen
    );
    with_api.quit();

    let mut codes = Phone::start(&[
        "--server",
        &server_addr,
        "--user",
        "2002",
        "--password",
        "secret2002",
        "--audio",
        "null",
    ]);
    codes.expect_event("registered", Duration::from_secs(10));
    codes.send("pause");
    assert!(
        matches!(codes.expect_event("error", Duration::from_secs(5))["message"].as_str(), Some(m) if m.contains("pause"))
    );
    codes.send("pause break");
    let dialing = codes.expect_event("dialing", Duration::from_secs(5));
    assert!(
        dialing["target"]
            .as_str()
            .is_some_and(|t| t.contains("*42@"))
    );
    codes.expect_event("answered", Duration::from_secs(10));
    assert!(
        server
            .log
            .wait(Duration::from_secs(10), |l| l.contains("agent=2002")
                && l.contains("to=\"paused\""))
            .is_some(),
        "server did not pause 2002"
    );
    // The confirmation prompt plays, then santral hangs up.
    let ended = codes.expect_event("ended", Duration::from_secs(20));
    assert_eq!(ended["reason"], "remote hangup");
    codes.quit();
}

/// SIP over TCP: the agent phone registers over a stream connection and takes a hotline call
/// offered over TCP, while the customer's phone uses UDP.
#[test]
fn agent_phone_over_tcp_takes_a_call() {
    let server = start_server();
    let server_addr = format!("127.0.0.1:{}", server.sip);
    let mut agent = Phone::start(&[
        "--server",
        &server_addr,
        "--transport",
        "tcp",
        "--user",
        "2001",
        "--password",
        "secret2001",
        "--auto-answer",
        "--audio",
        "null",
    ]);
    let started = agent.expect_event("started", Duration::from_secs(10));
    assert!(
        started["contact"]
            .as_str()
            .is_some_and(|c| c.ends_with(";transport=tcp")),
        "{started}"
    );
    agent.expect_event("registered", Duration::from_secs(10));
    let mut caller = Phone::start(&[
        "--server",
        &server_addr,
        "--user",
        "05321234567",
        "--no-register",
        "--audio",
        "null",
    ]);
    caller.send("dial 1000");
    caller.expect_event("answered", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(800));
    caller.send("dtmf 1");
    let offered = agent.expect_event("incoming_call", Duration::from_secs(20));
    assert_eq!(offered["queue"], "billing");
    agent.expect_event("answered", Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(1));
    caller.send("hangup");
    let ended = agent.expect_event("ended", Duration::from_secs(10));
    assert_eq!(ended["reason"], "remote hangup");
    caller.quit();
    agent.quit();
}
