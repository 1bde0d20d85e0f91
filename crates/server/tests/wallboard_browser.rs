//! The wallboard page in a real headless Chromium: it must connect to the events WebSocket and
//! show what the live view holds (a waiting call, agent states), and follow events.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use santral_server::http::{ApiState, router};
use santral_server::live::{AgentLive, LiveCall, QueueLive, Snapshot, channels};
use santral_server::storage::SqliteStore;

/// Debian's chromium; the test script installs it.
fn chromium() -> &'static str {
    for candidate in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if std::path::Path::new(candidate).exists() {
            return candidate;
        }
    }
    panic!("chromium is not installed: run ./scripts/install-deps (Debian package 'chromium')");
}

/// Loads `url` headless, lets its scripts run, and returns the DOM as HTML.
fn dump_dom(url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let output = Command::new(chromium())
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
        .expect("chromium runs");
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wallboard_shows_a_waiting_call_and_agent_states() {
    let dir = tempfile::tempdir().unwrap();
    let (publisher, view, _commands) = channels();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    publisher.publish_snapshot(Snapshot {
        at: now_ms,
        queues: vec![
            QueueLive {
                name: "billing".into(),
                waiting: 1,
                longest_wait_s: 42.0,
                service_level_percent: Some(90.0),
                answered: 9,
                abandoned: 1,
                agents_available: 0,
                agents_on_call: 1,
                ..QueueLive::default()
            },
            QueueLive {
                name: "tech".into(),
                ..QueueLive::default()
            },
        ],
        agents: vec![
            AgentLive {
                id: "2001".into(),
                name: "Ayşe Yılmaz".into(),
                state: "on-call".into(),
                since: now_ms - 65_000,
                calls_handled: 3,
                ..AgentLive::default()
            },
            AgentLive {
                id: "2002".into(),
                name: "Mehmet Demir".into(),
                state: "paused".into(),
                reason: Some("lunch".into()),
                since: now_ms - 5_000,
                ..AgentLive::default()
            },
        ],
        calls: vec![std::sync::Arc::new(LiveCall {
            call_id: "c1".into(),
            caller: "05321234567".into(),
            dialled: "1000".into(),
            state: "queued".into(),
            queue: Some("billing".into()),
            started_at: now_ms - 50_000,
            queued_at: Some(now_ms - 42_000),
            ..LiveCall::default()
        })],
    });
    let state = ApiState {
        live: view,
        store: Arc::new(SqliteStore::open(&dir.path().join("db.sqlite")).unwrap()),
        recordings_dir: dir.path().to_path_buf(),
        token: None,
        started: Instant::now(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router(state)).await });

    let dom = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::task::spawn_blocking(move || dump_dom(&url)),
    )
    .await
    .expect("chromium finished in time")
    .unwrap();

    // The page rendered from the WebSocket snapshot, not from static markup.
    assert!(dom.contains("id=\"status\" class=\"live\""), "{dom}");
    let billing = section(&dom, "data-queue=\"billing\"");
    assert!(
        billing.contains("<div class=\"value\">1</div><div class=\"label\">waiting</div>"),
        "{billing}"
    );
    assert!(billing.contains("90%"), "{billing}");
    assert!(billing.contains("9 / 1"), "{billing}");
    // The longest wait comes from the live call's join time: 0:42 and counting.
    assert!(billing.contains("0:4"), "{billing}");
    let tech = section(&dom, "data-queue=\"tech\"");
    assert!(
        tech.contains("<div class=\"value\">0</div><div class=\"label\">waiting</div>"),
        "{tech}"
    );

    let ayse = section(&dom, "data-agent=\"2001\"");
    assert!(
        ayse.contains("Ayşe Yılmaz") && ayse.contains("on-call"),
        "{ayse}"
    );
    assert!(ayse.contains("1:0"), "time in state about 1:05: {ayse}");
    let mehmet = section(&dom, "data-agent=\"2002\"");
    assert!(mehmet.contains("paused (lunch)"), "{mehmet}");
}

/// The markup from `marker` to the end of its element row/card (good enough for assertions).
fn section<'a>(dom: &'a str, marker: &str) -> &'a str {
    let start = dom
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} not in page: {dom}"));
    let rest = &dom[start..];
    let end = rest
        .find("</article>")
        .or_else(|| rest.find("</tr>"))
        .unwrap_or(rest.len());
    &rest[..end]
}
