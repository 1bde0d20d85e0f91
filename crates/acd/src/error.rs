//! Errors: a bad configuration, or an input that does not fit the current state.

use thiserror::Error;

use crate::id::CallId;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{0} name must not be empty")]
    EmptyName(&'static str),
    #[error("duplicate {kind} {name:?}")]
    Duplicate { kind: &'static str, name: String },
    #[error("{what}: level {level} is outside 1..=10")]
    Level { what: String, level: u8 },
    #[error("queue {queue:?}: weight must be a positive number")]
    Weight { queue: String },
    #[error("queue {queue:?}: service level percent must be 0..=100")]
    Percent { queue: String },
    #[error("queue {queue:?}: announce_every_secs must be above 0")]
    ZeroAnnounce { queue: String },
    #[error("queue {queue:?}: escalation steps must be in increasing after_secs order")]
    EscalationOrder { queue: String },
    #[error("queue {queue:?}: overflow target {target:?} is not another configured queue")]
    UnknownOverflow { queue: String, target: String },
    #[error("{what}: {secs} s is longer than ten years")]
    TooLong { what: String, secs: u64 },
    #[error("interval_secs must be above 0")]
    ZeroInterval,
}

/// An input the engine refused; the state is unchanged.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum AcdError {
    #[error("unknown agent {0:?}")]
    UnknownAgent(String),
    #[error("unknown queue {0:?}")]
    UnknownQueue(String),
    #[error("unknown call {0}")]
    UnknownCall(CallId),
    #[error("call {0} is already known to the ACD")]
    DuplicateCall(CallId),
    #[error("priority {0} is outside 0..=9")]
    Priority(u8),
    #[error("skill level {0} is outside 1..=10")]
    Level(u8),
    #[error("agent {agent:?} cannot {action} while {state}")]
    AgentState {
        agent: String,
        action: &'static str,
        state: &'static str,
    },
    #[error("call {call} has no offer to agent {agent:?}")]
    NoSuchOffer { call: CallId, agent: String },
    #[error("call {0} is not waiting in a queue")]
    NotWaiting(CallId),
    #[error("call {0} is not a callback being dialled")]
    NotCallback(CallId),
    #[error("callback store: {0}")]
    Store(String),
    #[error(transparent)]
    Config(#[from] ConfigError),
}
