//! What the server tells the ACD.

use std::collections::BTreeMap;

use crate::config::{AgentConfig, SkillRequirement};
use crate::id::{AgentId, CallId, QueueId};

/// Caller data the IVR gathered (customer number, account, …), handed to the agent with the offer.
pub type CallerData = BTreeMap<String, String>;

/// A caller entering a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallJoin {
    pub call: CallId,
    pub queue: QueueId,
    /// Skills this call needs on top of the queue's own.
    pub skills: Vec<SkillRequirement>,
    /// Language the caller chose (overrides the queue's language).
    pub language: Option<String>,
    /// 0 (lowest) to 9 (highest).
    pub priority: u8,
    pub caller: CallerData,
}

impl CallJoin {
    pub fn new(call: CallId, queue: &str) -> Self {
        Self {
            call,
            queue: QueueId::new(queue),
            skills: Vec::new(),
            language: None,
            priority: 0,
            caller: CallerData::new(),
        }
    }
    pub fn priority(mut self, priority: u8) -> Self {
        self.priority = priority;
        self
    }
    pub fn language(mut self, language: &str) -> Self {
        self.language = Some(language.to_owned());
        self
    }
    pub fn skill(mut self, skill: SkillRequirement) -> Self {
        self.skills.push(skill);
        self
    }
    pub fn caller(mut self, key: &str, value: &str) -> Self {
        self.caller.insert(key.to_owned(), value.to_owned());
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Add or replace an agent's skills and languages (takes effect at once, in any state).
    AgentConfigured(AgentConfig),
    AgentLogin {
        agent: AgentId,
    },
    /// Logs out now, or after the current call and wrap-up.
    AgentLogout {
        agent: AgentId,
    },
    /// Pauses now, or after the current call and wrap-up.
    AgentPause {
        agent: AgentId,
        reason: String,
    },
    /// Back to available from paused (or cancels a pending pause).
    AgentReady {
        agent: AgentId,
    },
    /// Ends wrap-up early.
    AgentEndWrapUp {
        agent: AgentId,
    },
    /// The agent's phone registered (SIP REGISTER) / lost its registration.
    AgentRegistered {
        agent: AgentId,
    },
    AgentUnregistered {
        agent: AgentId,
    },
    CallJoin(CallJoin),
    /// The caller hung up (waiting, ringing an agent, or waiting for a callback).
    CallerHungUp {
        call: CallId,
    },
    OfferAnswered {
        call: CallId,
        agent: AgentId,
    },
    /// The agent declined, or the agent's phone could not be reached.
    OfferRejected {
        call: CallId,
        agent: AgentId,
    },
    /// The agent's phone rang out (the ACD also times offers out itself).
    OfferTimedOut {
        call: CallId,
        agent: AgentId,
    },
    /// The conversation ended; the agent goes to wrap-up.
    CallEnded {
        call: CallId,
    },
    /// A waiting caller asked to be called back; the call leaves, the callback keeps its place.
    CallbackRequested {
        call: CallId,
    },
    /// The customer answered the callback dial; the reserved agent is now on the call.
    CallbackConnected {
        call: CallId,
    },
    /// The callback dial failed; the agent is released and the callback dropped.
    CallbackFailed {
        call: CallId,
    },
}

impl Input {
    /// The call this input is about, if any (for the per-call tracing span).
    pub fn call(&self) -> Option<CallId> {
        match self {
            Input::CallJoin(join) => Some(join.call),
            Input::CallerHungUp { call }
            | Input::OfferAnswered { call, .. }
            | Input::OfferRejected { call, .. }
            | Input::OfferTimedOut { call, .. }
            | Input::CallEnded { call }
            | Input::CallbackRequested { call }
            | Input::CallbackConnected { call }
            | Input::CallbackFailed { call } => Some(*call),
            _ => None,
        }
    }
}
