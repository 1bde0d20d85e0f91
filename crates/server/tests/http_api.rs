//! The HTTP API over a real socket on loopback, with a real SQLite file behind it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use santral_server::http::{ApiState, router};
use santral_server::live::{
    AgentCommand, AgentCommandError, AgentLive, LiveCall, LiveEvent, QueueLive, Snapshot, channels,
};
use santral_server::storage::{CallRecord, Disposition, SqliteStore, Store};

struct Harness {
    base: String,
    publisher: santral_server::live::LivePublisher,
    store: Arc<SqliteStore>,
    _dir: tempfile::TempDir,
}

async fn start(token: Option<&str>) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("santral.db")).unwrap());
    let (publisher, view, mut commands) = channels();
    // Stands in for the ACD task: answers agent commands the way it will.
    tokio::spawn(async move {
        while let Some(request) = commands.recv().await {
            let answer = if request.agent == "2001" {
                let (state, reason) = match request.command {
                    AgentCommand::Ready | AgentCommand::Login | AgentCommand::EndWrapUp => {
                        ("available", None)
                    }
                    AgentCommand::Pause { reason } => ("paused", reason),
                    AgentCommand::Logout => ("logged-out", None),
                };
                Ok(AgentLive {
                    id: "2001".into(),
                    state: state.into(),
                    reason,
                    ..AgentLive::default()
                })
            } else {
                Err(AgentCommandError::UnknownAgent(request.agent))
            };
            let _ = request.reply.send(answer);
        }
    });
    std::fs::create_dir_all(dir.path().join("rec/2026/11/23")).unwrap();
    std::fs::write(
        dir.path().join("rec/2026/11/23/call-1.wav"),
        b"RIFF....WAVE",
    )
    .unwrap();
    let state = ApiState {
        live: view,
        store: store.clone(),
        recordings_dir: dir.path().join("rec"),
        token: token.map(str::to_owned),
        started: Instant::now(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router(state)).await });
    Harness {
        base: format!("http://{addr}"),
        publisher,
        store,
        _dir: dir,
    }
}

fn snapshot() -> Snapshot {
    Snapshot {
        at: 1_000,
        queues: vec![QueueLive {
            name: "billing".into(),
            waiting: 2,
            longest_wait_s: 31.0,
            service_level_percent: Some(85.0),
            agents_available: 1,
            ..QueueLive::default()
        }],
        agents: vec![AgentLive {
            id: "2001".into(),
            name: "Ayşe".into(),
            state: "available".into(),
            ..AgentLive::default()
        }],
        calls: vec![std::sync::Arc::new(LiveCall {
            call_id: "c1".into(),
            caller: "0532".into(),
            dialled: "1000".into(),
            state: "queued".into(),
            queue: Some("billing".into()),
            ..LiveCall::default()
        })],
    }
}

#[tokio::test]
async fn reads_come_from_the_snapshot_and_the_store() {
    let h = start(None).await;
    h.publisher.publish_snapshot(snapshot());
    let client = reqwest::Client::new();

    let health: serde_json::Value = client
        .get(format!("{}/api/v1/health", h.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");

    let queues: serde_json::Value = client
        .get(format!("{}/api/v1/queues", h.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(queues[0]["name"], "billing");
    assert_eq!(queues[0]["waiting"], 2);

    let live: serde_json::Value = client
        .get(format!("{}/api/v1/calls/live", h.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(live[0]["call_id"], "c1");

    for (id, started_at, queue) in [("call-1", 10, "billing"), ("call-2", 20, "tech")] {
        h.store
            .save_call(&CallRecord {
                call_id: id.into(),
                caller: "0532".into(),
                dialled: "1000".into(),
                started_at,
                queue: Some(queue.into()),
                agent: Some("2001".into()),
                disposition: Some(Disposition::Answered),
                recording: (id == "call-1").then(|| "2026/11/23/call-1.wav".to_owned()),
                ..CallRecord::default()
            })
            .unwrap();
    }
    let calls: serde_json::Value = client
        .get(format!("{}/api/v1/calls?limit=10", h.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(calls[0]["call_id"], "call-2");
    assert_eq!(calls[1]["disposition"], "answered");
    let billing: serde_json::Value = client
        .get(format!("{}/api/v1/calls?queue=billing", h.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(billing.as_array().unwrap().len(), 1);

    let bad = client
        .get(format!("{}/api/v1/calls?limit=lots", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let body: serde_json::Value = bad.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("limit"), "{body}");

    let wav = client
        .get(format!("{}/api/v1/recordings/call-1", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(wav.status(), 200);
    assert_eq!(wav.headers()["content-type"], "audio/wav");
    assert_eq!(wav.bytes().await.unwrap().as_ref(), b"RIFF....WAVE");
    let none = client
        .get(format!("{}/api/v1/recordings/call-2", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 404);

    let metrics = client
        .get(format!("{}/metrics", h.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("santral_queue_waiting{queue=\"billing\"} 2"),
        "{metrics}"
    );

    let page = client
        .get(&h.base)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("santral wallboard"));

    let missing = client
        .get(format!("{}/api/v1/nothing", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let body: serde_json::Value = missing.json().await.unwrap();
    assert!(body["error"].is_string());
}

#[tokio::test]
async fn changes_need_the_bearer_token() {
    let h = start(Some("s3cret")).await;
    let client = reqwest::Client::new();
    let url = format!("{}/api/v1/agents/2001/state", h.base);

    let anonymous = client
        .put(&url)
        .json(&serde_json::json!({"state": "ready"}))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let wrong = client
        .put(&url)
        .bearer_auth("guess")
        .json(&serde_json::json!({"state": "ready"}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 403);

    let paused: serde_json::Value = client
        .put(&url)
        .bearer_auth("s3cret")
        .json(&serde_json::json!({"state": "pause", "reason": "lunch"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(paused["state"], "paused");
    assert_eq!(paused["reason"], "lunch");

    let unknown = client
        .put(format!("{}/api/v1/agents/9999/state", h.base))
        .bearer_auth("s3cret")
        .json(&serde_json::json!({"state": "ready"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);

    let nonsense = client
        .put(&url)
        .bearer_auth("s3cret")
        .header("content-type", "application/json")
        .body("{\"state\": \"dance\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(nonsense.status(), 400);
    let body: serde_json::Value = nonsense.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("expected"),
        "{body}"
    );
}

#[tokio::test]
async fn without_a_token_changes_are_refused() {
    let h = start(None).await;
    let response = reqwest::Client::new()
        .put(format!("{}/api/v1/agents/2001/state", h.base))
        .bearer_auth("anything")
        .json(&serde_json::json!({"state": "ready"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
}

#[tokio::test]
async fn the_event_socket_sends_a_snapshot_then_events() {
    let h = start(None).await;
    h.publisher.publish_snapshot(snapshot());
    let url = h.base.replace("http://", "ws://") + "/api/v1/events";
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();

    let first = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let first: serde_json::Value = serde_json::from_str(first.to_text().unwrap()).unwrap();
    assert_eq!(first["type"], "snapshot");
    assert_eq!(first["snapshot"]["queues"][0]["name"], "billing");

    h.publisher.publish_event(LiveEvent::CallEnded {
        call_id: "c1".into(),
        disposition: "abandoned".into(),
    });
    let next = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let next: serde_json::Value = serde_json::from_str(next.to_text().unwrap()).unwrap();
    assert_eq!(next["type"], "call-ended");
    assert_eq!(next["disposition"], "abandoned");
    ws.close(None).await.unwrap();
}
