//! The live view of the call centre: what the wallboard, the HTTP API and the metrics show.
//!
//! The ACD task and the call tasks own the real state; they publish a fresh [`Snapshot`] (a
//! cheap `Arc` swap through a watch channel) and push [`LiveEvent`]s to a broadcast channel.
//! Readers never lock anything the call path holds.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

/// One queue as the wallboard shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QueueLive {
    pub name: String,
    pub waiting: u32,
    /// Seconds the longest-waiting caller has waited.
    pub longest_wait_s: f64,
    /// Percent of answered calls within the queue's target this interval; None before any call.
    pub service_level_percent: Option<f64>,
    pub offered: u64,
    pub answered: u64,
    pub abandoned: u64,
    /// Average speed of answer, seconds.
    pub asa_s: Option<f64>,
    /// Average handle time (talk + wrap-up), seconds.
    pub aht_s: Option<f64>,
    pub agents_logged_in: u32,
    pub agents_available: u32,
    pub agents_on_call: u32,
    pub agents_paused: u32,
}

/// One agent as the wallboard shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentLive {
    pub id: String,
    pub name: String,
    /// logged-out, available, paused, reserved, on-call, wrap-up.
    pub state: String,
    /// Pause reason, when paused.
    pub reason: Option<String>,
    /// Unix milliseconds of the last state change.
    pub since: i64,
    pub calls_handled: u64,
    pub current_call: Option<String>,
    pub registered: bool,
}

/// A call in progress.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LiveCall {
    pub call_id: String,
    pub caller: String,
    pub dialled: String,
    /// ivr, queued, ringing, talking, wrap-up.
    pub state: String,
    pub queue: Option<String>,
    pub agent: Option<String>,
    pub started_at: i64,
    /// When the caller joined the current queue (Unix ms).
    pub queued_at: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Unix milliseconds when this snapshot was taken.
    pub at: i64,
    pub queues: Vec<QueueLive>,
    pub agents: Vec<AgentLive>,
    /// Shared with the owner's table: a snapshot of a thousand calls, published up to twenty
    /// times a second, copies pointers, not the calls.
    pub calls: Vec<Arc<LiveCall>>,
}

/// What the events WebSocket sends, one JSON object per message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum LiveEvent {
    Call(LiveCall),
    CallEnded {
        call_id: String,
        disposition: String,
    },
    Agent(AgentLive),
    Queue(QueueLive),
}

/// An agent state change asked for from outside (HTTP, softphone, feature code).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum AgentCommand {
    Login,
    Ready,
    Pause {
        #[serde(default)]
        reason: Option<String>,
    },
    Logout,
    /// End wrap-up now instead of waiting for its timer.
    EndWrapUp,
}

/// A command together with where its answer goes.
pub struct AgentRequest {
    pub agent: String,
    pub command: AgentCommand,
    pub reply: oneshot::Sender<Result<AgentLive, AgentCommandError>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
pub enum AgentCommandError {
    #[error("no agent {0}")]
    UnknownAgent(String),
    #[error("{0}")]
    NotAllowed(String),
    #[error("the ACD is not running")]
    Unavailable,
}

/// The publishing side, held by the tasks that own the state.
#[derive(Clone)]
pub struct LivePublisher {
    snapshot: Arc<watch::Sender<Arc<Snapshot>>>,
    events: broadcast::Sender<LiveEvent>,
}

/// The reading side, cloned into every HTTP handler.
#[derive(Clone)]
pub struct LiveView {
    snapshot: watch::Receiver<Arc<Snapshot>>,
    events: broadcast::Sender<LiveEvent>,
    commands: mpsc::Sender<AgentRequest>,
}

/// Creates the channels; the receiver of agent commands goes to the task that owns agents.
pub fn channels() -> (LivePublisher, LiveView, mpsc::Receiver<AgentRequest>) {
    let (snapshot_tx, snapshot_rx) = watch::channel(Arc::new(Snapshot::default()));
    // Slow WebSocket readers that fall this far behind get a `lagged` gap, not a stall.
    let (events, _) = broadcast::channel(1024);
    let (commands, command_rx) = mpsc::channel(256);
    (
        LivePublisher {
            snapshot: Arc::new(snapshot_tx),
            events: events.clone(),
        },
        LiveView {
            snapshot: snapshot_rx,
            events,
            commands,
        },
        command_rx,
    )
}

impl LivePublisher {
    pub fn publish_snapshot(&self, snapshot: Snapshot) {
        self.snapshot.send_replace(Arc::new(snapshot));
    }

    /// Sends an event to every connected reader; none connected is fine.
    pub fn publish_event(&self, event: LiveEvent) {
        let _ = self.events.send(event);
    }
}

impl LiveView {
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.borrow().clone()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<LiveEvent> {
        self.events.subscribe()
    }

    /// Asks the agent owner to apply `command` and waits for its answer.
    pub async fn agent_command(
        &self,
        agent: String,
        command: AgentCommand,
    ) -> Result<AgentLive, AgentCommandError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(AgentRequest {
                agent,
                command,
                reply,
            })
            .await
            .map_err(|_| AgentCommandError::Unavailable)?;
        answer.await.map_err(|_| AgentCommandError::Unavailable)?
    }
}
