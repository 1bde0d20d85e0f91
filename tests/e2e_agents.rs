//! End to end: agents registering with SIPp show up live in the HTTP API and on the wallboard;
//! state changes over HTTP need the token and are recorded.

mod support;

use std::time::{Duration, Instant};

use support::{Santral, sipp};

fn agents(server: &Santral) -> serde_json::Value {
    reqwest::blocking::get(server.url("/api/v1/agents"))
        .expect("GET /api/v1/agents")
        .json()
        .expect("JSON agents")
}

fn agent<'a>(list: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    list.as_array()
        .expect("array")
        .iter()
        .find(|a| a["id"] == id)
        .unwrap_or_else(|| panic!("agent {id} missing from {list}"))
}

/// Polls (bounded) until `check` holds for the agent list.
fn wait_agents(server: &Santral, check: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let list = agents(server);
        if check(&list) || Instant::now() > deadline {
            return list;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn registration_logs_agents_in_and_http_changes_their_state() {
    let mut server = Santral::start("");

    let health: serde_json::Value = reqwest::blocking::get(server.url("/api/v1/health"))
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(health["status"], "ok");

    let before = agents(&server);
    assert_eq!(before.as_array().unwrap().len(), 4, "{before}");
    assert_eq!(agent(&before, "2001")["state"], "logged-out");
    assert_eq!(agent(&before, "2001")["registered"], false);

    let (ok, out) = sipp(
        "register.xml",
        "u1",
        server.sip_udp,
        &["-s", "2001", "-au", "2001", "-ap", "secret2001"],
    );
    assert!(ok, "REGISTER 2001: {out}");

    // login: on-register (the demo default) makes the agent available.
    let after = wait_agents(&server, |l| agent(l, "2001")["state"] == "available");
    assert_eq!(agent(&after, "2001")["state"], "available", "{after}");
    assert_eq!(agent(&after, "2001")["registered"], true);
    assert_eq!(agent(&after, "2001")["name"], "Ayşe Yılmaz");
    assert_eq!(agent(&after, "2002")["state"], "logged-out");

    let queues: serde_json::Value = reqwest::blocking::get(server.url("/api/v1/queues"))
        .unwrap()
        .json()
        .unwrap();
    let billing = queues
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "billing")
        .expect("billing queue");
    assert_eq!(billing["agents_available"], 1, "{queues}");
    assert_eq!(billing["waiting"], 0);

    let client = reqwest::blocking::Client::new();
    let url = server.url("/api/v1/agents/2001/state");
    let refused = client
        .put(&url)
        .json(&serde_json::json!({"state": "pause", "reason": "coaching"}))
        .send()
        .unwrap();
    assert_eq!(refused.status(), 401);

    let paused: serde_json::Value = client
        .put(&url)
        .bearer_auth("test-token")
        .json(&serde_json::json!({"state": "pause", "reason": "coaching"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(paused["state"], "paused", "{paused}");
    assert_eq!(paused["reason"], "coaching");
    let listed = agents(&server);
    assert_eq!(agent(&listed, "2001")["state"], "paused");

    // Paused agents are not available to the queue.
    let queues: serde_json::Value = reqwest::blocking::get(server.url("/api/v1/queues"))
        .unwrap()
        .json()
        .unwrap();
    let billing = queues
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "billing")
        .unwrap();
    assert_eq!(billing["agents_available"], 0, "{queues}");

    let ready: serde_json::Value = client
        .put(&url)
        .bearer_auth("test-token")
        .json(&serde_json::json!({"state": "ready"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(ready["state"], "available");

    let metrics = reqwest::blocking::get(server.url("/metrics"))
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("santral_agents{state=\"available\"} 1"),
        "{metrics}"
    );

    // The state changes were written to the database as they happened.
    let status = server.terminate().expect("santral exits on SIGTERM");
    assert!(status.success(), "exit status {status:?}");
    let db = rusqlite::Connection::open(server.data_dir().join("santral.db")).unwrap();
    let states: Vec<String> = db
        .prepare("SELECT state FROM agent_events WHERE agent = '2001' ORDER BY id")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(states, ["available", "paused", "available"], "{states:?}");
}

#[test]
fn sighup_reloads_the_configuration_and_keeps_it_when_broken() {
    let mut server = Santral::start("");
    let path = server.config_path();
    let original = std::fs::read_to_string(&path).unwrap();

    // A new agent and a renamed one; the running node takes both without a restart.
    std::fs::write(
        &path,
        format!(
            "{original}agents:\n  accounts:\n\
             \x20   - {{ id: \"2001\", password: secret2001, name: Ayşe Kaya, skills: {{ billing: 9 }} }}\n\
             \x20   - {{ id: \"2005\", password: secret2005, name: New Agent, skills: {{ tech: 5 }} }}\n"
        ),
    )
    .unwrap();
    server.send_hup();
    assert!(
        server.wait_for_log("configuration reloaded", Duration::from_secs(10)),
        "{:#?}",
        server.seen
    );
    let list = wait_agents(&server, |l| {
        l.as_array().unwrap().iter().any(|a| a["id"] == "2005")
    });
    assert_eq!(agent(&list, "2001")["name"], "Ayşe Kaya", "{list}");
    assert_eq!(agent(&list, "2005")["state"], "logged-out");
    // The new account can register at once.
    let (ok, out) = sipp(
        "register.xml",
        "u1",
        server.sip_udp,
        &["-s", "2005", "-au", "2005", "-ap", "secret2005"],
    );
    assert!(ok, "REGISTER 2005 after reload: {out}");

    // A broken file: the error names its place and the running configuration stays.
    std::fs::write(&path, format!("{original}agents:\n  accounts: 12\n")).unwrap();
    server.send_hup();
    assert!(
        server.wait_for_log("configuration not reloaded", Duration::from_secs(10)),
        "{:#?}",
        server.seen
    );
    let place = format!("{}:", path.display());
    assert!(
        server.wait_for_log(&place, Duration::from_secs(5)),
        "error names file:line:col: {:#?}",
        server.seen
    );
    let list = agents(&server);
    assert!(
        list.as_array().unwrap().iter().any(|a| a["id"] == "2005"),
        "{list}"
    );
    let health: serde_json::Value = reqwest::blocking::get(server.url("/api/v1/health"))
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(health["status"], "ok");
}

#[test]
fn feature_codes_change_the_agent_state_after_digest_auth() {
    let server = Santral::start("");
    let (ok, out) = sipp(
        "register.xml",
        "u1",
        server.sip_udp,
        &["-s", "2002", "-au", "2002", "-ap", "secret2002"],
    );
    assert!(ok, "REGISTER 2002: {out}");
    wait_agents(&server, |l| agent(l, "2002")["state"] == "available");

    // *42 from the agent's phone: challenged, authenticated, confirmed by a prompt, paused.
    let media_port = support::free_udp_port().to_string();
    let (ok, out) = sipp(
        "agent_feature_code.xml",
        "u1",
        server.sip_udp,
        &[
            "-s",
            "*42",
            "-key",
            "agent",
            "2002",
            "-au",
            "2002",
            "-ap",
            "secret2002",
            "-mp",
            &media_port,
        ],
    );
    assert!(ok, "*42: {out}");
    let list = wait_agents(&server, |l| agent(l, "2002")["state"] == "paused");
    assert_eq!(agent(&list, "2002")["state"], "paused", "{list}");
    assert_eq!(agent(&list, "2002")["reason"], "feature-code");

    // *43: ready again.
    let (ok, out) = sipp(
        "agent_feature_code.xml",
        "u1",
        server.sip_udp,
        &[
            "-s",
            "*43",
            "-key",
            "agent",
            "2002",
            "-au",
            "2002",
            "-ap",
            "secret2002",
            "-mp",
            &media_port,
        ],
    );
    assert!(ok, "*43: {out}");
    let list = wait_agents(&server, |l| agent(l, "2002")["state"] == "available");
    assert_eq!(agent(&list, "2002")["state"], "available", "{list}");

    // A wrong password never changes anything: the challenge comes back and the call fails.
    let (ok, _) = sipp(
        "agent_feature_code.xml",
        "u1",
        server.sip_udp,
        &[
            "-s",
            "*41",
            "-key",
            "agent",
            "2002",
            "-au",
            "2002",
            "-ap",
            "guess",
            "-mp",
            &media_port,
        ],
    );
    assert!(!ok, "a wrong password must not log the agent out");
    assert_eq!(agent(&agents(&server), "2002")["state"], "available");

    let calls = support::get_json(&server.url("/api/v1/calls"));
    let tags: Vec<String> = calls
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["tags"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t.as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        tags.iter().filter(|t| *t == "feature-code").count(),
        2,
        "{calls}"
    );
}

#[test]
fn an_agent_phone_calls_another_agent() {
    let mut server = Santral::start("");
    let (ayse_port, john_port) = (
        support::free_udp_port().to_string(),
        support::free_udp_port(),
    );
    let (ok, out) = sipp(
        "register.xml",
        "u1",
        server.sip_udp,
        &[
            "-s",
            "2001",
            "-au",
            "2001",
            "-ap",
            "secret2001",
            "-p",
            &ayse_port,
        ],
    );
    assert!(ok, "REGISTER 2001: {out}");
    support::register_agent(&server, "2004", john_port);
    let mut john = support::agent_args("agent_hangs_up.xml", john_port);
    john.extend(["-d".into(), "2000".into()]);
    let john = support::spawn_sipp(&john);
    std::thread::sleep(Duration::from_millis(300));

    // 2001 dials 2004 from its registered phone: challenged, authenticated, 2004 rings and
    // answers, hangs up after 2 s, and santral hangs up on 2001.
    let (ok, out) = sipp(
        "agent_feature_code.xml",
        "u1",
        server.sip_udp,
        &[
            "-s",
            "2004",
            "-key",
            "agent",
            "2001",
            "-au",
            "2001",
            "-ap",
            "secret2001",
            "-p",
            &ayse_port,
            "-mp",
            &support::free_udp_port().to_string(),
        ],
    );
    assert!(ok, "2001 → 2004: {out}\n{:#?}", server.seen);
    let (ok, out) = support::wait_sipp(john, Duration::from_secs(10));
    assert!(ok, "2004 answered and hung up: {out}");
    assert!(server.wait_for_log("call ended", Duration::from_secs(10)));
    let call = support::only_call(&server);
    assert_eq!(call["dialled"], "2004", "{call}");
    assert_eq!(call["caller"], "2001", "{call}");
    assert_eq!(call["agent"], "2004", "{call}");
    assert_eq!(call["disposition"], "answered", "{call}");

    // The same INVITE from an address that is no agent's phone is refused outright.
    let (ok, out) = sipp(
        "caller_refused_403.xml",
        "u1",
        server.sip_udp,
        &["-s", "2004", "-mp", &support::free_udp_port().to_string()],
    );
    assert!(ok, "INVITE 2004 from a stranger → 403: {out}");
}

#[test]
fn flows_reload_on_change_and_a_broken_edit_keeps_the_running_set() {
    let flows = support::demo_flows_with(&[]);
    let mut server = Santral::start_logging(
        &format!("flows:\n  dir: {}\n", flows.path().display()),
        "info",
    );
    let main = flows.path().join("main.yaml");
    let original = std::fs::read_to_string(&main).unwrap();

    // A broken edit: an unknown step is named. The error names file:line:col; the old flows stay.
    // (The watcher may also catch the file half-written — truncated, then filled — and reject
    // that state first; the rejection of the edit itself is the line that names the step.)
    std::fs::write(&main, original.replace("next: menu", "next: no_such_step")).unwrap();
    assert!(
        server.wait_for_log("no_such_step", Duration::from_secs(10)),
        "{:#?}",
        server.seen
    );
    let line = server
        .seen
        .iter()
        .find(|l| l.contains("keeping the previous flows") && l.contains("no_such_step"))
        .unwrap()
        .clone();
    assert!(
        line.contains("main.yaml:") && line.contains("no_such_step"),
        "{line}"
    );

    // A good edit is taken.
    std::fs::write(&main, original.replace("every: 30s", "every: 20s")).unwrap();
    assert!(
        server.wait_for_log("flows reloaded", Duration::from_secs(10)),
        "{:#?}",
        server.seen
    );
    let health: serde_json::Value = reqwest::blocking::get(server.url("/api/v1/health"))
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(health["status"], "ok");
}
