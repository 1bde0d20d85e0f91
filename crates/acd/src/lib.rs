//! santral's skills-based ACD: agents, queues, routing strategies, statistics and a staffing
//! simulator, as a sans-IO core.
//!
//! # Driving it
//! The server owns one [`Acd`]. It feeds [`Input`]s with the current time
//! ([`Acd::handle`]), drains [`Output`]s ([`Acd::poll_output`]) and calls
//! [`Acd::handle_timeout`] at [`Acd::poll_timeout`]. No clock, socket or task lives inside.
//! Randomness (the `random` strategy) comes from a seed given to [`Acd::new`].
//!
//! # Routing
//! Agents and calls meet in groups, one per (queue, requirement); see `routing.rs`. A call joins
//! the group of its queue's requirement at its escalation stage (plus its own skills and
//! language); an agent belongs to every group it qualifies for. A routing decision reads the
//! first entry of ordered sets, so it costs O(log n) in agents and calls, and O(g) in the number
//! of groups an agent belongs to.
//!
//! # Expected wait (EWT)
//! For a caller at 1-based position `p` in its queue (callers ahead of it, including callbacks
//! holding their place, plus itself), with `s` agents able to take the call who are logged in and
//! not paused, and `h` the mean handle time (talk + wrap-up) of the queue's last 100 handled calls
//! (the queue's `default_handle_secs` until a call has been handled):
//!
//! `EWT = p × h / s`
//!
//! Each of the `s` agents frees up on average every `h`, so the team frees one agent every `h / s`
//! and the caller is served after `p` such releases. With no agent staffed the EWT is unknown
//! (`None`). It is announced every `announce_every_secs` and can be queried with
//! [`Acd::expected_wait`].

pub mod callback;
pub mod config;
pub mod engine;
pub mod erlang;
pub mod error;
pub mod id;
pub mod input;
pub mod output;
mod routing;
pub mod simulator;
pub mod stats;
mod timer;

pub use callback::{CallbackRecord, CallbackStore, CallbackStoreError, MemoryCallbackStore};
pub use config::{
    AcdConfig, AgentConfig, EmptyRule, EscalationStep, QueueConfig, SkillRequirement, Strategy,
    skill,
};
pub use engine::{Acd, NO_ANSWER, UNREGISTERED, expected_wait};
pub use error::{AcdError, ConfigError};
pub use id::{AgentId, CallId, QueueId};
pub use input::{CallJoin, CallerData, Input};
pub use output::{
    AcdEvent, AgentStateChange, AgentStatus, CallbackOutcome, CancelReason, LeaveReason, Offer,
    OfferOutcome, Output, StateReason,
};
pub use stats::{AgentCounters, AgentSnapshot, QueueCounters, QueueSnapshot};
