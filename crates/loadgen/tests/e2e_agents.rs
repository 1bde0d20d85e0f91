//! End to end, the full path: santral-load's agents register with the real santral (digest),
//! santral-load's callers press 1 for the billing queue, santral rings the agents, they answer
//! and echo RTP, the callers hang up.

mod support;

use std::time::{Duration, Instant};

use santral_load::agents::{Account, AgentsConfig, run_agents};
use santral_load::audio::EncodedAudio;
use santral_load::call::SipTimers;
use santral_load::sdp::Law;
use santral_load::{LoadConfig, run};
use support::Santral;

#[test]
fn callers_reach_registered_agents_who_answer_and_echo() {
    let server = Santral::start();
    let target: std::net::SocketAddr = format!("127.0.0.1:{}", server.sip)
        .parse()
        .expect("address");
    // The billing-capable demo agents.
    let accounts = ["2001", "2002", "2004"]
        .map(|id| Account {
            id: id.into(),
            password: format!("secret{id}"),
        })
        .to_vec();
    let agents_config = AgentsConfig {
        target,
        accounts,
        answer_after: Duration::from_millis(300),
        register_rate: 50.0,
        expires: 600,
        duration: Duration::from_secs(18),
        rtp_sockets: 1,
        timers: SipTimers::default(),
    };
    let agents = std::thread::spawn(move || run_agents(&agents_config));

    // Bounded wait until santral has all three available.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let list = server.get_json("/api/v1/agents");
        let available = list
            .as_array()
            .expect("agents")
            .iter()
            .filter(|a| {
                ["2001", "2002", "2004"].contains(&a["id"].as_str().unwrap_or(""))
                    && a["state"] == "available"
            })
            .count();
        if available == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "agents did not become available: {list}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let callers = LoadConfig {
        target,
        to_user: "1000".into(),
        rate_per_s: 2.0,
        calls: 3,
        max_concurrent: None,
        hold: Duration::from_secs(10),
        digit: Some(('1', Duration::from_millis(500))),
        law: Law::Pcma,
        audio: EncodedAudio::tone(Law::Pcma),
        max_duration: Duration::from_secs(30),
        rtp_sockets: 1,
        send_phases: 10,
        timers: SipTimers::default(),
    };
    let callers = run(&callers).expect("callers run");
    let agents = agents.join().expect("agents thread").expect("agents run");
    let table = format!("{}\n{}", callers.table(), agents.table());

    assert_eq!(callers.calls.answered, 3, "{table}");
    assert_eq!(callers.calls.completed, 3, "{table}");
    assert_eq!(callers.calls.failed(), 0, "{table}");
    for line in &callers.per_call {
        assert!(line.rtp_received >= 50, "{line:?}\n{table}");
    }

    assert_eq!(agents.registrations.registered, 3, "{table}");
    assert_eq!(
        agents.registrations.challenges, 6,
        "one challenge to register, one to unregister: {table}"
    );
    assert_eq!(agents.registrations.unregistered_at_end, 3, "{table}");
    assert_eq!(agents.calls.offered, 3, "{table}");
    assert_eq!(agents.calls.answered, 3, "{table}");
    assert_eq!(
        agents.calls.completed, 3,
        "santral hangs up the agent leg when the caller leaves: {table}"
    );
    assert!(agents.rtp.echoed >= 100, "{table}");
    assert_eq!(agents.rtp.echoed, agents.rtp.received, "{table}");

    // santral's records: each caller reached the billing queue and an agent.
    let deadline = Instant::now() + Duration::from_secs(10);
    let records = loop {
        let records = server.get_json("/api/v1/calls?limit=100");
        let records = records.as_array().expect("calls").clone();
        let ended = records.iter().filter(|r| !r["ended_at"].is_null()).count();
        if ended >= 3 || Instant::now() >= deadline {
            break records;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let with_agent = records
        .iter()
        .filter(|r| r["queue"] == "billing" && !r["agent"].is_null())
        .count();
    assert_eq!(with_agent, 3, "{records:#?}");
}
