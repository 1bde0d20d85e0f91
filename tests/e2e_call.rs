//! End to end, the product's main path with real SIP clients: SIPp registers as agent 2001 and
//! answers; a SIPp caller dials hotline 1000, presses 1 (RFC 2833) for billing, talks with RTP
//! both ways through santral, and hangs up. The call history then holds one answered billing
//! call taken by 2001, with a stereo recording.

mod support;

use std::time::Duration;

use support::{
    Santral, agent_args, caller_args, free_udp_port, get_json, only_call, register_agent,
    spawn_sipp, wait_sipp,
};

#[test]
fn caller_presses_1_and_talks_to_agent_2001() {
    let mut server = Santral::start("");

    // The agent's phone: register from the port it will answer on, then answer there.
    let agent_port = free_udp_port();
    register_agent(&server, "2001", agent_port);
    let agent = spawn_sipp(&agent_args("agent_answer.xml", agent_port));
    std::thread::sleep(Duration::from_millis(300));

    // The caller: digit 1, then speech and 4 s of talk with the agent, then BYE.
    let caller = spawn_sipp(&caller_args("caller_menu_1.xml", &server, 4000));
    let (caller_ok, caller_out) = wait_sipp(caller, Duration::from_secs(40));
    let (agent_ok, agent_out) = wait_sipp(agent, Duration::from_secs(20));
    assert!(
        caller_ok,
        "caller scenario failed: {caller_out}\nserver log: {:#?}",
        server.seen
    );
    assert!(agent_ok, "agent scenario failed: {agent_out}");

    // The agent rang within a second of the caller joining the queue.
    assert!(server.wait_for_log("call ended", Duration::from_secs(10)));
    let queued = log_time(&server.seen, "caller queued");
    let ringing = log_time(&server.seen, "ringing agent");
    assert!(
        ringing - queued < 1.0,
        "agent rang {:.3} s after the caller queued",
        ringing - queued
    );

    let call = &only_call(&server);
    assert_eq!(call["dialled"], "1000");
    assert_eq!(call["caller"], "05321234567");
    assert_eq!(call["queue"], "billing");
    assert_eq!(call["agent"], "2001");
    assert_eq!(call["disposition"], "answered");
    assert_eq!(call["hangup_by"], "caller");
    assert!(call["talk_ms"].as_i64().unwrap_or(0) >= 2000, "{call}");
    let path = call["ivr_path"].as_array().unwrap();
    assert!(
        path.iter()
            .any(|s| s.as_str().is_some_and(|s| s.ends_with("billing"))),
        "{call}"
    );

    // The recording is a playable stereo WAV with the caller's speech on the left and the
    // agent's echo of it on the right.
    let call_id = call["call_id"].as_str().unwrap();
    let wav = reqwest::blocking::get(server.url(&format!("/api/v1/recordings/{call_id}"))).unwrap();
    assert_eq!(wav.status(), 200);
    let bytes = wav.bytes().unwrap();
    let reader = hound::WavReader::new(std::io::Cursor::new(bytes.to_vec())).expect("valid WAV");
    let spec = reader.spec();
    assert_eq!(spec.channels, 2);
    assert_eq!(spec.sample_rate, 8000);
    let samples: Vec<i16> = reader.into_samples::<i16>().map(|s| s.unwrap()).collect();
    assert!(samples.len() / 2 >= 8000 * 2, "at least 2 s recorded");
    let energy = |channel: usize| {
        samples
            .iter()
            .skip(channel)
            .step_by(2)
            .map(|&s| f64::from(s).powi(2))
            .sum::<f64>()
            / (samples.len() / 2) as f64
    };
    assert!(
        energy(0) > 1000.0,
        "caller channel has speech: {}",
        energy(0)
    );
    assert!(
        energy(1) > 1000.0,
        "agent channel has the echo: {}",
        energy(1)
    );

    // After the call the agent is in wrap-up (10 s in the demo billing queue).
    let agents = get_json(&server.url("/api/v1/agents"));
    assert_eq!(agents[0]["id"], "2001");
    assert_eq!(agents[0]["state"], "wrap-up", "{agents}");

    // The queue's events were stored as they happened.
    server.terminate();
    let db = rusqlite::Connection::open(server.data_dir().join("santral.db")).unwrap();
    let kinds: Vec<String> = db
        .prepare("SELECT kind FROM call_events WHERE call_id = ?1 ORDER BY id")
        .unwrap()
        .query_map([call_id], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        kinds,
        ["joined", "offered", "offer-ended", "left", "ended"],
        "{kinds:?}"
    );
}

/// Seconds since midnight of the first log line holding `needle` (tracing's RFC 3339 stamp).
fn log_time(lines: &[String], needle: &str) -> f64 {
    let line = lines
        .iter()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no log line with {needle:?}: {lines:#?}"));
    let time = line
        .split('T')
        .nth(1)
        .and_then(|rest| rest.split('Z').next())
        .expect("timestamp");
    let mut parts = time.split(':');
    let h: f64 = parts.next().unwrap().parse().unwrap();
    let m: f64 = parts.next().unwrap().parse().unwrap();
    let s: f64 = parts.next().unwrap().parse().unwrap();
    h * 3600.0 + m * 60.0 + s
}
