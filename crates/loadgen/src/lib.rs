//! santral-load: a lean SIP + RTP load generator for measuring santral (or any SIP server) on
//! loopback when SIPp runs out of CPU.
//!
//! One thread (pin it with `taskset`), one SIP socket, a few RTP sockets shared by many calls:
//! every answered call's packet of a 20 ms tick leaves in one `sendmmsg` per socket, and
//! received packets are drained with `recvmmsg` and demultiplexed by the server's source port.
//! The protocol parts are sans-IO and tested in virtual time: [`call`] (the caller's UAC state
//! machine with RFC 3261 retransmissions), [`agent_call`] (the agent's UAS), [`media_stream`]
//! (RTP and the RFC 4733 press), [`schedule`] (the shared tick and the launch plan), [`stats`]
//! (histograms). [`generator`] drives the callers (`santral-load calls`), [`agents`] the agent
//! phones (`santral-load agents`). README.md has the command lines and the report's keys.

pub mod agent_call;
pub mod agents;
pub mod audio;
pub mod batch_socket;
pub mod call;
pub mod digit;
pub mod generator;
pub mod media_stream;
pub mod process;
pub mod report;
pub mod rtp;
pub mod schedule;
pub mod sdp;
pub mod stats;
pub mod target;

pub use generator::{LoadConfig, LoadError, run};
pub use report::Report;
