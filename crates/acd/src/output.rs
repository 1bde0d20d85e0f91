//! What the ACD asks of the server, and the event stream it publishes.

use std::time::{Duration, Instant};

use crate::id::{AgentId, CallId, QueueId};
use crate::input::CallerData;

/// Why a call left its queue. The IVR branches on this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaveReason {
    Answered {
        agent: AgentId,
    },
    /// Waited longer than the queue's maximum wait.
    Timeout,
    /// The queue was at its maximum length.
    Full,
    /// No agent could take calls (join-empty / leave-when-empty policy).
    NoAgents,
    CallerHungUp,
    /// Escalated to another queue.
    Overflow {
        to: QueueId,
    },
    /// The caller will be called back; the callback keeps the place in line.
    CallbackScheduled,
}

impl LeaveReason {
    /// A short name for logs, metrics and IVR branches.
    pub fn as_str(&self) -> &'static str {
        match self {
            LeaveReason::Answered { .. } => "answered",
            LeaveReason::Timeout => "timeout",
            LeaveReason::Full => "full",
            LeaveReason::NoAgents => "no-agents",
            LeaveReason::CallerHungUp => "caller-hung-up",
            LeaveReason::Overflow { .. } => "overflow",
            LeaveReason::CallbackScheduled => "callback",
        }
    }
}

/// Why an offer was withdrawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelReason {
    /// Ring-all: another agent answered first.
    AnsweredElsewhere,
    CallerHungUp,
    /// The ring timeout passed.
    RingTimeout,
    /// The call left the queue (timeout, no agents).
    CallLeft,
    /// The agent logged out, paused or lost registration.
    AgentUnavailable,
}

/// An agent's state as published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentStatus {
    LoggedOut,
    Available,
    Paused {
        reason: String,
    },
    /// Ringing with an offer (or reserved for a callback dial).
    Reserved {
        call: CallId,
    },
    OnCall {
        call: CallId,
    },
    WrapUp {
        call: CallId,
    },
}

impl AgentStatus {
    pub fn name(&self) -> &'static str {
        match self {
            AgentStatus::LoggedOut => "logged-out",
            AgentStatus::Available => "available",
            AgentStatus::Paused { .. } => "paused",
            AgentStatus::Reserved { .. } => "reserved",
            AgentStatus::OnCall { .. } => "on-call",
            AgentStatus::WrapUp { .. } => "wrap-up",
        }
    }
}

/// Why an agent's state changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateReason {
    Login,
    Logout,
    Pause,
    Ready,
    Offered,
    Answered,
    /// Offer withdrawn (answered elsewhere, caller hung up, call left).
    OfferCancelled,
    Rejected,
    NoAnswer,
    CallEnded,
    WrapUpEnded,
    Registered,
    Unregistered,
    CallbackDial,
    CallbackFailed,
}

/// One agent state change: time-in-state is exact from consecutive changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentStateChange {
    pub agent: AgentId,
    pub at: Instant,
    pub previous: AgentStatus,
    pub current: AgentStatus,
    pub reason: StateReason,
}

/// How an offer to one agent ended (when not answered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfferOutcome {
    Answered,
    Rejected,
    NoAnswer,
    Cancelled(CancelReason),
}

/// How a callback ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackOutcome {
    Connected,
    Failed,
    /// The customer cancelled it (hung up / withdrew) before it was dialled.
    Cancelled,
}

/// The statistics/event stream the server stores and publishes.
#[derive(Debug, Clone, PartialEq)]
pub enum AcdEvent {
    CallJoined {
        call: CallId,
        queue: QueueId,
        priority: u8,
        at: Instant,
    },
    CallOffered {
        call: CallId,
        queue: QueueId,
        agent: AgentId,
        at: Instant,
    },
    OfferEnded {
        call: CallId,
        agent: AgentId,
        outcome: OfferOutcome,
        at: Instant,
    },
    /// An escalation step was applied to a waiting call.
    CallEscalated {
        call: CallId,
        queue: QueueId,
        step: usize,
        at: Instant,
    },
    CallLeft {
        call: CallId,
        queue: QueueId,
        reason: LeaveReason,
        waited: Duration,
        at: Instant,
    },
    CallEnded {
        call: CallId,
        agent: AgentId,
        talk: Duration,
        at: Instant,
    },
    CallbackQueued {
        call: CallId,
        queue: QueueId,
        at: Instant,
    },
    CallbackFinished {
        call: CallId,
        outcome: CallbackOutcome,
        at: Instant,
    },
}

/// An offer: ring this agent with this call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    pub call: CallId,
    pub agent: AgentId,
    pub queue: QueueId,
    /// The ACD times the offer out itself after this; the server may cancel earlier.
    pub ring_timeout: Duration,
    pub caller: CallerData,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Ring the agent. Ring-all gives several offers for one call.
    Offer(Offer),
    /// Stop ringing this agent for this call.
    CancelOffer {
        call: CallId,
        agent: AgentId,
        reason: CancelReason,
    },
    /// The call is out of the queue, for this reason (exactly once per joined call).
    CallLeft {
        call: CallId,
        queue: QueueId,
        reason: LeaveReason,
        waited: Duration,
    },
    /// Time to tell the caller its position and expected wait.
    Announcement {
        call: CallId,
        queue: QueueId,
        position: usize,
        expected_wait: Option<Duration>,
    },
    /// A callback reached the head: the agent is reserved; dial the customer and connect them.
    CallbackDial {
        call: CallId,
        agent: AgentId,
        queue: QueueId,
        caller: CallerData,
    },
    AgentState(AgentStateChange),
    Event(AcdEvent),
}
