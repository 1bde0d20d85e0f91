//! # santral-phone — the agent softphone
//!
//! A SIP user agent built on `santral-sip` and `santral-media`: it registers (digest, refresh,
//! retry after failure), takes calls offered by santral's ACD with their screen-pop headers,
//! places calls, holds/resumes (re-INVITE), sends DTMF (RFC 4733), transfers (REFER), and drives
//! agent state through the server's HTTP API.
//!
//! Audio is an [`audio::AudioPort`]: nothing (`--audio null`), WAV files
//! (`--audio file:IN.wav,OUT.wav`), or a sound card through cpal (`device`, feature `device`).
//! In `--no-tui` mode the binary reads [`command::Command`]s on stdin and prints
//! [`event::PhoneEvent`]s as JSON lines.

pub mod agent_control;
pub mod audio;
pub mod call_media;
pub mod command;
#[cfg(feature = "device")]
pub mod device;
pub mod event;
pub mod resample;
pub mod screen;
pub mod settings;
pub mod user_agent;
