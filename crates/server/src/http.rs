//! The HTTP API, the events WebSocket, Prometheus metrics and the wallboard page.
//!
//! Reads come from the live snapshot and the store; changes (agent state) go to the task that
//! owns agents and need the configured bearer token. Every error is JSON: `{"error": "..."}`.

use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::sync::broadcast::error::RecvError;

use crate::live::{AgentCommand, AgentCommandError, LiveView};
use crate::storage::{CallQuery, Store};

/// Everything a handler needs, cloned per request (all fields are cheap handles).
#[derive(Clone)]
pub struct ApiState {
    pub live: LiveView,
    pub store: Arc<dyn Store>,
    pub recordings_dir: PathBuf,
    /// Required as `Authorization: Bearer <token>` on changes; None refuses all changes.
    pub token: Option<String>,
    pub started: Instant,
}

/// A JSON error response.
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response()
    }
}

impl From<crate::storage::StorageError> for ApiError {
    fn from(err: crate::storage::StorageError) -> ApiError {
        tracing::error!(%err, "storage error in HTTP request");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, err.to_string())
    }
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/", get(wallboard))
        .route("/api/v1/health", get(health))
        .route("/api/v1/queues", get(queues))
        .route("/api/v1/agents", get(agents))
        .route("/api/v1/agents/{id}/state", put(set_agent_state))
        .route("/api/v1/calls", get(calls))
        .route("/api/v1/calls/live", get(live_calls))
        .route("/api/v1/recordings/{call_id}", get(recording))
        .route("/api/v1/events", get(events))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such resource") })
        .with_state(state)
}

/// Binds `addr` and serves the API until `shutdown` completes.
pub async fn serve(
    addr: SocketAddr,
    state: ApiState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "HTTP API listening");
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn health(State(state): State<ApiState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": state.started.elapsed().as_secs(),
    }))
}

async fn queues(State(state): State<ApiState>) -> Response {
    Json(state.live.snapshot().queues.clone()).into_response()
}

async fn agents(State(state): State<ApiState>) -> Response {
    Json(state.live.snapshot().agents.clone()).into_response()
}

async fn live_calls(State(state): State<ApiState>) -> Response {
    Json(state.live.snapshot().calls.clone()).into_response()
}

async fn calls(
    State(state): State<ApiState>,
    query: Result<Query<CallQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) =
        query.map_err(|err| ApiError::new(StatusCode::BAD_REQUEST, err.body_text()))?;
    let store = state.store.clone();
    let records = tokio::task::spawn_blocking(move || store.calls(&query))
        .await
        .map_err(|err| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, err.to_string()))??;
    Ok(Json(records).into_response())
}

fn authorized(state: &ApiState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = state.token.as_deref() else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "changes are disabled: set http.token in the configuration",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    match given {
        Some(given) if constant_time_eq(given.as_bytes(), token.as_bytes()) => Ok(()),
        Some(_) => Err(ApiError::new(StatusCode::FORBIDDEN, "wrong bearer token")),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "this request needs 'Authorization: Bearer <token>'",
        )),
    }
}

/// Compares secrets without leaking the position of the first difference through timing.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn set_agent_state(
    State(state): State<ApiState>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    body: Result<Json<AgentCommand>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    authorized(&state, &headers)?;
    let Json(command) = body.map_err(|err| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "{}; expected e.g. {{\"state\": \"ready\"}} or {{\"state\": \"pause\", \"reason\": \"break\"}}",
                err.body_text()
            ),
        )
    })?;
    match state.live.agent_command(id, command).await {
        Ok(agent) => Ok(Json(agent).into_response()),
        Err(err @ AgentCommandError::UnknownAgent(_)) => {
            Err(ApiError::new(StatusCode::NOT_FOUND, err.to_string()))
        }
        Err(err @ AgentCommandError::NotAllowed(_)) => {
            Err(ApiError::new(StatusCode::CONFLICT, err.to_string()))
        }
        Err(err @ AgentCommandError::Unavailable) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            err.to_string(),
        )),
    }
}

async fn recording(
    State(state): State<ApiState>,
    UrlPath(call_id): UrlPath<String>,
) -> Result<Response, ApiError> {
    let store = state.store.clone();
    let lookup = call_id.clone();
    let record = tokio::task::spawn_blocking(move || store.call(&lookup))
        .await
        .map_err(|err| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, err.to_string()))??
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no call {call_id}")))?;
    let relative = record.recording.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("call {call_id} has no recording"),
        )
    })?;
    let path = contained_path(&state.recordings_dir, &relative).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("call {call_id} has no recording"),
        )
    })?;
    let bytes = tokio::fs::read(&path).await.map_err(|err| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("recording of call {call_id} cannot be read: {err}"),
        )
    })?;
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("audio/wav")),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("inline"),
            ),
        ],
        bytes,
    )
        .into_response())
}

/// `relative` below `dir`, refusing absolute paths and `..` so a record cannot point outside.
fn contained_path(dir: &Path, relative: &str) -> Option<PathBuf> {
    let relative = Path::new(relative);
    relative
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
        .then(|| dir.join(relative))
}

async fn events(State(state): State<ApiState>, upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(move |socket| stream_events(socket, state))
}

/// Sends the current snapshot first, then every event; a reader that lags is told so and
/// gets a fresh snapshot instead of a stream with silent holes.
async fn stream_events(mut socket: WebSocket, state: ApiState) {
    let mut events = state.live.subscribe();
    if send_snapshot(&mut socket, &state).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(event) => {
                    let Ok(text) = serde_json::to_string(&event) else { continue };
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                }
                Err(RecvError::Lagged(_)) => {
                    if send_snapshot(&mut socket, &state).await.is_err() {
                        return;
                    }
                }
                Err(RecvError::Closed) => return,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

async fn send_snapshot(socket: &mut WebSocket, state: &ApiState) -> Result<(), axum::Error> {
    let snapshot = state.live.snapshot();
    let message = serde_json::json!({ "type": "snapshot", "snapshot": &*snapshot });
    socket.send(Message::Text(message.to_string().into())).await
}

/// Installs the process-wide Prometheus recorder, so that counters counted from now on show on
/// /metrics.
pub fn install_metrics() {
    let _ = prometheus();
}

/// The process-wide Prometheus recorder, installed on first use.
fn prometheus() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok().map(|_| handle)
        })
        .as_ref()
}

async fn metrics(State(state): State<ApiState>) -> Response {
    // Install first: values set before a recorder exists would go nowhere.
    let handle = prometheus();
    let snapshot = state.live.snapshot();
    for queue in &snapshot.queues {
        let labels = [("queue", queue.name.clone())];
        metrics::gauge!("santral_queue_waiting", &labels).set(f64::from(queue.waiting));
        metrics::gauge!("santral_queue_longest_wait_seconds", &labels).set(queue.longest_wait_s);
        metrics::gauge!("santral_queue_offered", &labels).set(queue.offered as f64);
        metrics::gauge!("santral_queue_answered", &labels).set(queue.answered as f64);
        metrics::gauge!("santral_queue_abandoned", &labels).set(queue.abandoned as f64);
        if let Some(sl) = queue.service_level_percent {
            metrics::gauge!("santral_queue_service_level_percent", &labels).set(sl);
        }
        metrics::gauge!("santral_queue_agents_available", &labels)
            .set(f64::from(queue.agents_available));
    }
    let mut by_state = std::collections::BTreeMap::<&str, u32>::new();
    for agent in &snapshot.agents {
        *by_state.entry(agent.state.as_str()).or_default() += 1;
    }
    for state_name in [
        "logged-out",
        "available",
        "paused",
        "reserved",
        "on-call",
        "wrap-up",
    ] {
        let count = by_state.get(state_name).copied().unwrap_or(0);
        metrics::gauge!("santral_agents", "state" => state_name).set(f64::from(count));
    }
    let body = handle.map(PrometheusHandle::render).unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        body,
    )
        .into_response()
}

async fn wallboard() -> Html<&'static str> {
    Html(include_str!("wallboard.html"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recordings_stay_inside_their_directory() {
        let dir = Path::new("/data/rec");
        assert_eq!(
            contained_path(dir, "2026/11/23/a.wav"),
            Some(PathBuf::from("/data/rec/2026/11/23/a.wav"))
        );
        assert_eq!(contained_path(dir, "../etc/passwd"), None);
        assert_eq!(contained_path(dir, "/etc/passwd"), None);
        assert_eq!(contained_path(dir, "2026/../../x"), None);
    }

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
