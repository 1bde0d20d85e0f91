//! End to end, the other paths a call centre lives on, each with real SIP clients against the
//! real binary: card services by DTMF, a caller who gives up while waiting (seen on the
//! wallboard in headless Chromium first), an agent who does not answer, calls to numbers
//! that are not hotlines, overload control, and a shutdown that drains calls.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::{
    Santral, agent_args, caller_args, free_udp_port, get_json, get_text, only_call, register_agent,
    sipp, spawn_sipp, wait_sipp,
};

#[test]
fn card_services_by_dtmf_blocks_the_card() {
    let mut server = Santral::start("");
    let caller = spawn_sipp(&caller_args("caller_card_block.xml", &server, 0));
    let (ok, out) = wait_sipp(caller, Duration::from_secs(60));
    assert!(
        ok,
        "card services scenario: {out}\nserver: {:#?}",
        server.seen
    );
    assert!(server.wait_for_log("call ended", Duration::from_secs(10)));

    let call = only_call(&server);
    assert_eq!(call["disposition"], "self-service", "{call}");
    assert_eq!(call["hangup_by"], "system", "{call}");
    assert_eq!(call["customer"], "100001", "the verified customer: {call}");
    let tags: Vec<&str> = call["tags"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t.as_str())
        .collect();
    assert!(tags.contains(&"identity-verified"), "{call}");
    assert!(tags.contains(&"card-blocked"), "{call}");
    // The PIN never reaches the record or the log in clear (the caller's number holds the
    // same four digits, so look for them as a number of their own).
    assert_eq!(call["variables"]["pin"], "****", "{call}");
    assert!(!has_number(&call.to_string(), "1234"), "{call}");
    assert!(
        !server.seen.iter().any(|l| has_number(l, "1234")),
        "PIN in the log: {:#?}",
        server.seen
    );

    server.terminate();
    let db = rusqlite::Connection::open(server.data_dir().join("santral.db")).unwrap();
    let status: String = db
        .query_row(
            "SELECT status FROM card_status WHERE customer = '100001' AND card_last4 = '4821'",
            [],
            |row| row.get(0),
        )
        .expect("card status stored");
    assert_eq!(status, "blocked");
}

/// Whether `text` holds `number` with no digit right before or after it.
fn has_number(text: &str, number: &str) -> bool {
    text.match_indices(number).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + number.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_digit()) && !after.is_some_and(|c| c.is_ascii_digit())
    })
}

/// Debian's chromium dumps the wallboard's DOM after its scripts ran.
fn wallboard_dom(url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let output = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=3000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .output()
        .expect("chromium is required (Debian package chromium)");
    assert!(output.status.success(), "chromium failed");
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn a_caller_who_gives_up_is_shown_waiting_then_recorded_as_abandoned() {
    let mut server = Santral::start("");
    // No agent is logged in: the caller waits in billing with hold music, then hangs up.
    let caller = spawn_sipp(&caller_args("caller_abandons.xml", &server, 7000));
    assert!(
        server.wait_for_log("caller queued", Duration::from_secs(15)),
        "{:#?}",
        server.seen
    );

    let dom = wallboard_dom(&server.url("/"));
    assert!(dom.contains("id=\"status\" class=\"live\""), "{dom}");
    let start = dom.find("data-queue=\"billing\"").expect("billing card");
    let billing = &dom[start..start + dom[start..].find("</article>").unwrap()];
    assert!(
        billing.contains("<div class=\"value\">1</div><div class=\"label\">waiting</div>"),
        "{billing}"
    );
    let live = get_json(&server.url("/api/v1/calls/live"));
    assert_eq!(live[0]["state"], "queued", "{live}");

    let (ok, out) = wait_sipp(caller, Duration::from_secs(30));
    assert!(ok, "caller scenario: {out}");
    assert!(server.wait_for_log("call ended", Duration::from_secs(10)));
    let call = only_call(&server);
    assert_eq!(call["disposition"], "abandoned", "{call}");
    assert_eq!(call["queue"], "billing");
    assert_eq!(call["hangup_by"], "caller");
    assert!(call["agent"].is_null());
    assert!(call["wait_ms"].as_i64().unwrap_or(0) >= 5000, "{call}");
    let queues = get_json(&server.url("/api/v1/queues"));
    let billing = queues
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "billing")
        .unwrap();
    assert_eq!(billing["waiting"], 0, "{queues}");
}

#[test]
fn an_agent_who_does_not_answer_is_skipped_for_the_next() {
    // Linear order makes 2001 (who never answers) first; a 2 s ring timeout moves on to 2002.
    // Billing calls are not recorded here (recording policy per queue).
    let mut server = Santral::start(
        "queues:\n  - name: billing\n    skills: [{ skill: billing, min_level: 1 }]\n    \
         strategy: linear\n    agent_order: [\"2001\", \"2002\"]\n    ring_timeout_secs: 2\n    \
         wrap_up_secs: 5\n  - name: tech\n  - name: sales\n  - name: operator\n\
         recording:\n  default: all\n  queues: { billing: none }\n",
    );
    let (silent_port, answering_port) = (free_udp_port(), free_udp_port());
    register_agent(&server, "2001", silent_port);
    register_agent(&server, "2002", answering_port);
    let silent = spawn_sipp(&agent_args("agent_ignores.xml", silent_port));
    let answering = spawn_sipp(&agent_args("agent_answer.xml", answering_port));
    std::thread::sleep(Duration::from_millis(300));

    let caller = spawn_sipp(&caller_args("caller_menu_1.xml", &server, 6000));
    let (ok, out) = wait_sipp(caller, Duration::from_secs(40));
    assert!(ok, "caller: {out}\nserver: {:#?}", server.seen);
    let (ok, out) = wait_sipp(silent, Duration::from_secs(10));
    assert!(ok, "2001 rang and was cancelled: {out}");
    let (ok, out) = wait_sipp(answering, Duration::from_secs(10));
    assert!(ok, "2002 answered: {out}");

    assert!(server.wait_for_log("call ended", Duration::from_secs(10)));
    let call = only_call(&server);
    assert_eq!(call["disposition"], "answered", "{call}");
    assert_eq!(call["agent"], "2002", "{call}");
    assert!(call["wait_ms"].as_i64().unwrap() >= 2000, "{call}");
    // The billing queue's recording policy is `none` in this configuration.
    assert!(call["recording"].is_null(), "{call}");
}

#[test]
fn numbers_that_are_not_hotlines_are_refused() {
    let server = Santral::start("");
    // An agent's number: exists, but unauthenticated callers may not reach it.
    let (ok, out) = sipp(
        "caller_refused_403.xml",
        "u1",
        server.sip_udp,
        &["-s", "2001", "-mp", &free_udp_port().to_string()],
    );
    assert!(ok, "INVITE 2001 → 403: {out}");
    // An outside number: no trunk, no route, no toll fraud.
    let (ok, out) = sipp(
        "caller_refused_404.xml",
        "u1",
        server.sip_udp,
        &["-s", "00902125550000", "-mp", &free_udp_port().to_string()],
    );
    assert!(ok, "INVITE outside number → 404: {out}");
    let calls = get_json(&server.url("/api/v1/calls"));
    assert_eq!(calls.as_array().unwrap().len(), 0, "{calls}");
}

#[test]
fn sigterm_drains_refusing_new_calls_then_hangs_up_the_rest() {
    let mut server = Santral::start("shutdown:\n  drain_timeout: 3s\n");
    let waiting = spawn_sipp(&caller_args("caller_waits.xml", &server, 0));
    assert!(
        server.wait_for_log("caller queued", Duration::from_secs(15)),
        "{:#?}",
        server.seen
    );
    server.send_term();
    assert!(server.wait_for_log("draining", Duration::from_secs(5)));

    // While draining, a new caller is turned away before any media is spent on it.
    let (ok, out) = sipp(
        "caller_refused_503.xml",
        "u1",
        server.sip_udp,
        &["-s", "1000", "-mp", &free_udp_port().to_string()],
    );
    assert!(ok, "new call during drain → 503: {out}");

    // After the drain time the waiting caller is hung up (it gets a BYE), the record is
    // written, and the server exits cleanly.
    let (ok, out) = wait_sipp(waiting, Duration::from_secs(30));
    assert!(ok, "waiting caller got a BYE: {out}");
    let status = server.wait_exit(Duration::from_secs(20));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{:#?}", server.seen);
    let db = rusqlite::Connection::open(server.data_dir().join("santral.db")).unwrap();
    let (disposition, reason, wait_ms): (String, String, i64) = db
        .query_row(
            "SELECT disposition, hangup_reason, wait_ms FROM calls",
            [],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .expect("one call record");
    assert_eq!(reason, "server shutdown");
    assert_eq!(disposition, "no-agent");
    assert!(wait_ms >= 3000, "waited through the drain: {wait_ms} ms");
}

#[test]
fn overload_control_refuses_calls_beyond_the_limit_with_503_and_retry_after() {
    let mut server = Santral::start("overload:\n  max_calls: 1\n  retry_after: 7s\n");
    let mut waiting = spawn_sipp(&caller_args("caller_waits.xml", &server, 0));
    assert!(
        server.wait_for_log("caller queued", Duration::from_secs(15)),
        "{:#?}",
        server.seen
    );
    // The second caller is turned away before any media is spent on it.
    let (ok, out) = sipp(
        "caller_refused_503.xml",
        "u1",
        server.sip_udp,
        &["-s", "1000", "-mp", &free_udp_port().to_string()],
    );
    assert!(ok, "call beyond max_calls → 503: {out}");
    let metrics = get_text(&server.url("/metrics"));
    assert!(
        metrics.contains("santral_calls_refused_total{reason=\"max-calls\"} 1"),
        "{metrics}"
    );
    let live = get_json(&server.url("/api/v1/calls/live"));
    let _ = waiting.kill();
    let _ = waiting.wait();
    assert!(
        live.as_array().is_none_or(|calls| calls.len() <= 1),
        "only the first call is in progress: {live}"
    );
}

/// Mean square of one channel (0 left, 1 right) of a stereo 16-bit WAV.
fn channel_energy(wav: &[u8], channel: usize) -> f64 {
    let reader = hound::WavReader::new(std::io::Cursor::new(wav)).expect("valid WAV");
    assert_eq!(reader.spec().channels, 2);
    let samples: Vec<i16> = reader.into_samples::<i16>().map(|s| s.unwrap()).collect();
    let frames = (samples.len() / 2).max(1);
    samples
        .iter()
        .skip(channel)
        .step_by(2)
        .map(|&s| f64::from(s).powi(2))
        .sum::<f64>()
        / frames as f64
}

#[test]
fn baresip_as_agent_auto_answers_a_queued_call() {
    let mut server = Santral::start("");
    let phone_port = free_udp_port();
    let dir = tempfile::tempdir().unwrap();
    // The agent "speaks" a prompt file into the call; loopback only.
    let speech = support::repo_root().join("prompts/en/main_menu.wav");
    std::fs::write(
        dir.path().join("config"),
        format!(
            "poll_method epoll\nnet_interface 127.0.0.1\nsip_listen 127.0.0.1:{phone_port}\nsip_transports udp\n\
module_path /usr/lib/baresip/modules\nmodule g711.so\nmodule aufile.so\nmodule_app account.so\n\
audio_player aufile,/dev/null\naudio_source aufile,{}\naudio_alert aufile,/dev/null\n",
            speech.display()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("accounts"),
        format!(
            "<sip:2001@127.0.0.1:{};transport=udp>;auth_pass=secret2001;regint=60;answermode=auto\n",
            server.sip_udp
        ),
    )
    .unwrap();
    let mut phone = Command::new("baresip")
        .arg("-f")
        .arg(dir.path())
        .args(["-t", "25"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("baresip is required (Debian package baresip)");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let agents = get_json(&server.url("/api/v1/agents"));
        if agents[0]["id"] == "2001" && agents[0]["state"] == "available" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "baresip did not register: {agents}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let caller = spawn_sipp(&caller_args("caller_menu_1.xml", &server, 4000));
    let (ok, out) = wait_sipp(caller, Duration::from_secs(40));
    let _ = phone.kill();
    let mut phone_log = String::new();
    if let Some(mut stdout) = phone.stdout.take() {
        let _ = std::io::Read::read_to_string(&mut stdout, &mut phone_log);
    }
    let _ = phone.wait();
    assert!(ok, "caller: {out}\nbaresip: {phone_log}");
    assert!(phone_log.contains("Call established"), "{phone_log}");

    assert!(server.wait_for_log("call ended", Duration::from_secs(10)));
    let call = only_call(&server);
    assert_eq!(call["disposition"], "answered", "{call}");
    assert_eq!(call["agent"], "2001", "{call}");
    let wav = reqwest::blocking::get(server.url(&format!(
        "/api/v1/recordings/{}",
        call["call_id"].as_str().unwrap()
    )))
    .unwrap()
    .bytes()
    .unwrap();
    // Both directions crossed santral: the caller's speech (left) and baresip's (right).
    assert!(channel_energy(&wav, 0) > 10_000.0, "caller side silent");
    assert!(channel_energy(&wav, 1) > 10_000.0, "baresip side silent");
}

#[test]
fn after_the_agent_hangs_up_the_caller_rates_the_call() {
    let mut server = Santral::start("");
    let agent_port = free_udp_port();
    register_agent(&server, "2001", agent_port);
    let mut agent = agent_args("agent_hangs_up.xml", agent_port);
    agent.extend(["-d".into(), "3000".into()]);
    let agent = spawn_sipp(&agent);
    std::thread::sleep(Duration::from_millis(300));

    let caller = spawn_sipp(&caller_args("caller_survey.xml", &server, 0));
    let (ok, out) = wait_sipp(caller, Duration::from_secs(60));
    assert!(ok, "caller: {out}\nserver: {:#?}", server.seen);
    let (ok, out) = wait_sipp(agent, Duration::from_secs(10));
    assert!(ok, "agent hung up: {out}");

    assert!(server.wait_for_log("call ended", Duration::from_secs(10)));
    let call = only_call(&server);
    assert_eq!(call["disposition"], "answered", "{call}");
    assert_eq!(call["agent"], "2001");
    assert_eq!(call["hangup_by"], "agent", "{call}");
    assert_eq!(call["survey_score"], 5, "{call}");
    assert!(call["talk_ms"].as_i64().unwrap() >= 2500, "{call}");
    let path: Vec<&str> = call["ivr_path"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s.as_str())
        .collect();
    assert!(path.iter().any(|s| s.starts_with("survey.")), "{path:?}");
}

#[test]
fn waiting_callers_hear_their_position_and_expected_wait() {
    // The demo flows with billing announcing every 2 s instead of 30 s.
    let flows = support::demo_flows_with(&[(
        "announce: { position: true, wait_time: true, every: 30s }",
        "announce: { position: true, wait_time: true, every: 2s }",
    )]);
    let mut server = Santral::start_logging(
        &format!("flows:\n  dir: {}\n", flows.path().display()),
        "info,santral_server::call=debug",
    );
    let caller = spawn_sipp(&caller_args("caller_abandons.xml", &server, 7000));
    assert!(
        server.wait_for_log("queue announcement", Duration::from_secs(15)),
        "{:#?}",
        server.seen
    );
    let line = server
        .seen
        .iter()
        .find(|l| l.contains("queue announcement"))
        .unwrap()
        .clone();
    assert!(line.contains("position=Some(1)"), "{line}");
    let (ok, out) = wait_sipp(caller, Duration::from_secs(30));
    assert!(ok, "caller: {out}");
    // At least two announcements in 7 s of waiting at a 2 s interval.
    assert!(
        server.count_in_log("queue announcement") >= 2,
        "{:#?}",
        server.seen
    );
}

#[test]
fn an_agent_blind_transfers_the_caller_to_another_queue() {
    // 2001 answers billing and REFERs the caller to the tech queue, where 2003 answers.
    let mut server = Santral::start("");
    run_blind_transfer(&mut server, "tech", "2003", &[]);
    assert!(server.wait_for_log("call ended", Duration::from_secs(10)));
    let call = only_call(&server);
    assert_eq!(call["disposition"], "answered", "{call}");
    assert_eq!(call["agent"], "2003", "{call}");
    assert_eq!(call["queue"], "tech", "{call}");
    assert_eq!(call["variables"]["transferred_from"], "2001", "{call}");
    assert!(
        call["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "transferred"),
        "{call}"
    );
    let agents = get_json(&server.url("/api/v1/agents"));
    let state = |id: &str| {
        agents
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["id"] == id)
            .map(|a| a["state"].as_str().unwrap_or_default().to_owned())
            .unwrap_or_default()
    };
    assert_eq!(state("2001"), "wrap-up", "{agents}");
}

#[test]
fn a_caller_who_leaves_the_queue_records_a_voicemail() {
    let mut server = Santral::start("");
    let caller = spawn_sipp(&caller_args("caller_voicemail.xml", &server, 0));
    let (ok, out) = wait_sipp(caller, Duration::from_secs(60));
    assert!(ok, "caller: {out}\nserver: {:#?}", server.seen);
    assert!(server.wait_for_log("call ended", Duration::from_secs(10)));
    let call = only_call(&server);
    assert_eq!(call["disposition"], "voicemail", "{call}");
    assert_eq!(call["queue"], "billing", "{call}");
    let recording = call["recording"]
        .as_str()
        .expect("voicemail file")
        .to_owned();
    assert!(recording.ends_with("-voicemail.wav"), "{call}");
    let wav = reqwest::blocking::get(server.url(&format!(
        "/api/v1/recordings/{}",
        call["call_id"].as_str().unwrap()
    )))
    .unwrap()
    .bytes()
    .unwrap();
    let reader = hound::WavReader::new(std::io::Cursor::new(wav.to_vec())).expect("valid WAV");
    assert_eq!(reader.spec().channels, 1);
    let seconds = reader.duration() as f64 / f64::from(reader.spec().sample_rate);
    assert!((2.0..12.0).contains(&seconds), "{seconds} s recorded");
}

/// A one-shot CRM stand-in on loopback: answers one HTTP request with `answer` and hands back
/// the request it got.
fn crm_stub(answer: &'static str) -> (u16, std::sync::mpsc::Receiver<String>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let Ok((mut stream, _)) = listener.accept() else {
            return;
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut request = Vec::new();
        let mut buffer = [0u8; 4096];
        // Headers, then the body announced by Content-Length.
        while let Ok(n) = stream.read(&mut buffer) {
            if n == 0 {
                break;
            }
            request.extend_from_slice(&buffer[..n]);
            let text = String::from_utf8_lossy(&request);
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                    })
                    .unwrap_or(0);
                if request.len() >= end + 4 + length {
                    break;
                }
            }
        }
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
            answer.len()
        );
        let _ = stream.write_all(response.as_bytes());
        let _ = tx.send(String::from_utf8_lossy(&request).to_string());
    });
    (port, rx)
}

#[test]
fn an_http_step_asks_the_crm_and_routes_a_vip_by_its_answer() {
    let (crm_port, crm_requests) =
        crm_stub(r#"{"customer": {"vip": true, "name": "Ayşe Yılmaz"}}"#);
    // The demo flows, with the CRM example's webhook pointed at the stand-in.
    let crm = format!("127.0.0.1:{crm_port}");
    let flows = support::demo_flows_with(&[("127.0.0.1:8090", crm.as_str())]);
    let mut server = Santral::start(&format!(
        "flows:\n  dir: {}\nhotlines:\n  - {{ number: \"1000\", flow: main }}\n  - {{ number: \"1001\", flow: crm-example }}\n",
        flows.path().display()
    ));
    let mut args = caller_args("caller_abandons.xml", &server, 3000);
    args[3] = "1001".into(); // -s 1001: the hotline running the CRM example
    let caller = spawn_sipp(&args);
    let (ok, out) = wait_sipp(caller, Duration::from_secs(30));
    assert!(ok, "caller: {out}\nserver: {:#?}", server.seen);
    let request = crm_requests
        .recv_timeout(Duration::from_secs(5))
        .expect("the CRM was asked");
    assert!(request.starts_with("POST /crm/callers"), "{request}");
    assert!(request.contains(r#""caller":"05321234567""#), "{request}");
    assert!(request.contains(r#""dialled":"1001""#), "{request}");

    assert!(server.wait_for_log("call ended", Duration::from_secs(10)));
    let call = only_call(&server);
    // The CRM said VIP: straight to billing, no menu.
    assert_eq!(call["queue"], "billing", "{call}");
    let path: Vec<&str> = call["ivr_path"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s.as_str())
        .collect();
    assert!(path.contains(&"crm-example.vip_billing"), "{path:?}");
    assert!(!path.iter().any(|s| s.starts_with("main.")), "{path:?}");
}

#[test]
fn an_agent_puts_the_caller_on_hold_and_back() {
    let mut server = Santral::start("");
    let agent_port = free_udp_port();
    register_agent(&server, "2001", agent_port);
    let agent = spawn_sipp(&agent_args("agent_holds.xml", agent_port));
    std::thread::sleep(Duration::from_millis(300));
    let caller = spawn_sipp(&caller_args("caller_menu_1.xml", &server, 7000));
    let (ok, out) = wait_sipp(caller, Duration::from_secs(40));
    assert!(ok, "caller: {out}\nserver: {:#?}", server.seen);
    let (ok, out) = wait_sipp(agent, Duration::from_secs(10));
    assert!(ok, "agent hold/resume re-INVITEs answered: {out}");

    assert!(server.wait_for_log("call ended", Duration::from_secs(10)));
    assert!(
        server.count_in_log("agent holds the call") == 1,
        "{:#?}",
        server.seen
    );
    assert!(
        server.count_in_log("agent resumes the call") == 1,
        "{:#?}",
        server.seen
    );
    let call = only_call(&server);
    assert_eq!(call["disposition"], "answered", "{call}");
    assert!(
        call["tags"].as_array().unwrap().iter().any(|t| t == "hold"),
        "{call}"
    );
    // One recording for the whole call, holding only the bridged (not the held) time.
    let wav = reqwest::blocking::get(server.url(&format!(
        "/api/v1/recordings/{}",
        call["call_id"].as_str().unwrap()
    )))
    .unwrap()
    .bytes()
    .unwrap();
    let reader = hound::WavReader::new(std::io::Cursor::new(wav.to_vec())).expect("valid WAV");
    let seconds = reader.duration() as f64 / 8000.0;
    let talk = call["talk_ms"].as_f64().unwrap() / 1000.0;
    assert!(
        seconds > 2.0 && seconds < talk - 1.0,
        "{seconds} s recorded of {talk} s talk"
    );
}

#[test]
fn an_agent_blind_transfers_the_caller_to_one_agent() {
    // 2003 is available too, but the transfer names 2004.
    let mut server = Santral::start("");
    run_blind_transfer(&mut server, "2004", "2004", &["2003"]);
    assert!(server.wait_for_log("call ended", Duration::from_secs(10)));
    let call = only_call(&server);
    assert_eq!(call["disposition"], "answered", "{call}");
    assert_eq!(call["agent"], "2004", "{call}");
    assert_eq!(call["variables"]["transferred_from"], "2001", "{call}");
}

#[test]
fn a_caller_waiting_past_max_wait_goes_on_in_the_flow() {
    // Billing's maximum wait cut from 10 minutes to 3 seconds; nobody is logged in.
    let flows = support::demo_flows_with(&[("max_wait: 10m", "max_wait: 3s")]);
    let mut server = Santral::start(&format!("flows:\n  dir: {}\n", flows.path().display()));
    let caller = spawn_sipp(&caller_args("caller_abandons.xml", &server, 14000));
    assert!(
        server.wait_for_log("maximum wait reached", Duration::from_secs(15)),
        "{:#?}",
        server.seen
    );
    let (ok, out) = wait_sipp(caller, Duration::from_secs(40));
    assert!(ok, "caller: {out}");
    assert!(server.wait_for_log("call ended", Duration::from_secs(10)));
    let call = only_call(&server);
    let path: Vec<&str> = call["ivr_path"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s.as_str())
        .collect();
    // on_timeout: busy → "all agents are busy" → voicemail.
    assert!(path.contains(&"main.busy"), "{path:?}");
    assert!(path.contains(&"main.voicemail"), "{path:?}");
    let wait = call["wait_ms"].as_i64().unwrap();
    assert!((2500..6000).contains(&wait), "waited {wait} ms");
    assert_eq!(call["disposition"], "voicemail", "{call}");
}

#[test]
fn a_transfer_step_rings_the_named_agent() {
    // A hotline whose flow sends every caller straight to agent 2004.
    let flows = support::demo_flows_with(&[]);
    std::fs::write(
        flows.path().join("direct.yaml"),
        "start: to_john\nsteps:\n  to_john:\n    transfer: { to: \"2004\", timeout: 10s, on_failure: sorry }\n  \
         sorry:\n    play: { prompts: [all_agents_busy], next: bye }\n  bye:\n    hangup: { reason: no answer }\n",
    )
    .unwrap();
    let mut server = Santral::start(&format!(
        "flows:\n  dir: {}\nhotlines:\n  - {{ number: \"1000\", flow: main }}\n  - {{ number: \"1002\", flow: direct }}\n",
        flows.path().display()
    ));
    let (other_port, john_port) = (free_udp_port(), free_udp_port());
    register_agent(&server, "2001", other_port);
    register_agent(&server, "2004", john_port);
    let john = spawn_sipp(&agent_args("agent_answer.xml", john_port));
    std::thread::sleep(Duration::from_millis(300));
    let mut args = caller_args("caller_menu_1.xml", &server, 4000);
    args[3] = "1002".into();
    let caller = spawn_sipp(&args);
    let (ok, out) = wait_sipp(caller, Duration::from_secs(40));
    assert!(ok, "caller: {out}\nserver: {:#?}", server.seen);
    let (ok, out) = wait_sipp(john, Duration::from_secs(10));
    assert!(ok, "2004 answered: {out}");
    assert!(server.wait_for_log("call ended", Duration::from_secs(10)));
    let call = only_call(&server);
    assert_eq!(call["disposition"], "answered", "{call}");
    assert_eq!(call["agent"], "2004", "{call}");
}

#[test]
fn a_caller_puts_the_agent_on_hold_and_back() {
    let mut server = Santral::start("");
    let agent_port = free_udp_port();
    register_agent(&server, "2001", agent_port);
    let agent = spawn_sipp(&agent_args("agent_answer.xml", agent_port));
    std::thread::sleep(Duration::from_millis(300));
    let caller = spawn_sipp(&caller_args("caller_holds.xml", &server, 0));
    let (ok, out) = wait_sipp(caller, Duration::from_secs(40));
    assert!(ok, "caller hold/resume: {out}\nserver: {:#?}", server.seen);
    let (ok, out) = wait_sipp(agent, Duration::from_secs(10));
    assert!(ok, "agent: {out}");
    assert!(server.wait_for_log("call ended", Duration::from_secs(10)));
    assert_eq!(
        server.count_in_log("caller holds the call"),
        1,
        "{:#?}",
        server.seen
    );
    assert_eq!(
        server.count_in_log("caller resumes the call"),
        1,
        "{:#?}",
        server.seen
    );
    let call = only_call(&server);
    assert_eq!(call["disposition"], "answered", "{call}");
    assert!(
        call["tags"].as_array().unwrap().iter().any(|t| t == "hold"),
        "{call}"
    );
}

/// Agent 2001 answers a billing caller and, after 2 s, REFERs the call to `refer_to` (a queue or
/// an agent); `answering` (registered first, with `bystanders` registered and idle) answers the
/// transferred call. Every SIPp party must finish its scenario.
fn run_blind_transfer(server: &mut Santral, refer_to: &str, answering: &str, bystanders: &[&str]) {
    let (from_port, target_port) = (free_udp_port(), free_udp_port());
    register_agent(server, "2001", from_port);
    for agent in bystanders {
        register_agent(server, agent, free_udp_port());
    }
    register_agent(server, answering, target_port);
    let mut from = agent_args("agent_transfers.xml", from_port);
    from.extend([
        "-d".into(),
        "2000".into(),
        "-key".into(),
        "refer_to".into(),
        refer_to.into(),
    ]);
    let from = spawn_sipp(&from);
    let target = spawn_sipp(&agent_args("agent_answer.xml", target_port));
    std::thread::sleep(Duration::from_millis(300));

    let caller = spawn_sipp(&caller_args("caller_menu_1.xml", server, 7000));
    let (ok, out) = wait_sipp(caller, Duration::from_secs(40));
    server.wait_for_log("call ended", Duration::from_secs(1));
    assert!(ok, "caller: {out}\nserver: {:#?}", server.seen);
    let (ok, out) = wait_sipp(from, Duration::from_secs(10));
    assert!(ok, "2001 transferred (REFER 202, NOTIFY, BYE): {out}");
    let (ok, out) = wait_sipp(target, Duration::from_secs(10));
    assert!(ok, "{answering} answered the transferred call: {out}");
}
