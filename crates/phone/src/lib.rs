//! # santral-phone — the agent softphone
//!
//! A SIP user agent built on `santral-sip` and `santral-media`: it registers (digest, refresh at
//! 80 %, retry after failure, OPTIONS keepalive that re-registers when a lost or restarted
//! server answers again), takes calls offered by santral's ACD with their screen-pop headers,
//! places calls, holds/resumes (re-INVITE), mutes, sends DTMF (RFC 4733), transfers blind
//! (REFER), and drives agent state through the server's HTTP API or, without it, feature codes.
//!
//! ```text
//! santral-phone --server 127.0.0.1:5060 --user 2001 --password secret2001 \
//!     [--auto-answer] [--audio device|null|file:IN.wav,OUT.wav] [--input NAME --output NAME] \
//!     [--no-tui] [--http http://127.0.0.1:8080 --http-token TOKEN] \
//!     [--crm-url 'https://crm/?n={caller}' --crm-command xdg-open] [--config phone.yaml]
//! santral-phone --list-devices
//! ```
//!
//! Settings come from the command line over the config file (`--config`, else
//! `~/.config/santral/phone.yaml`, same keys in snake_case); the password may also come from
//! `SANTRAL_PHONE_PASSWORD`. Passwords and tokens are never printed.
//!
//! ## Modes
//!
//! - Terminal UI ([`screen`], ratatui): registration, agent state and time in it, the current
//!   call (caller, queue, IVR path, wait, duration, codec, microphone level, CRM link), recent
//!   calls, key bindings, prompts for dial/transfer/pause.
//! - `--no-tui`: reads [`command::Command`]s on stdin (`answer`, `hangup`, `dial N`,
//!   `dtmf D`, `hold`, `resume`, `mute`, `unmute`, `transfer T`, `login`, `logout`, `ready`,
//!   `pause R`, `wrapup`, `status`, `quit`) and prints [`event::PhoneEvent`]s as JSON lines
//!   (`registered`, `incoming_call` with the screen-pop fields, `answered`, `ended` …).
//!
//! ## Audio
//!
//! Audio is an [`audio::AudioPort`] moved into the call's media task ([`call_media`]) for the
//! call: nothing (`null`), WAV files (IN looped as the microphone, everything heard appended to
//! OUT, 8 kHz mono), or a sound card through cpal ([`device`], feature `device`, on by default):
//! capture at the device rate → downmix → [`resample`] → 8 kHz → encode → RTP, and RTP → jitter
//! buffer → decode → resample → every output channel, through lock-free rings. Headsets also
//! get a ringtone while a call waits and a beep when a call is auto-answered.
//!
//! ## Structure
//!
//! [`user_agent::UserAgent`] is one task owning registration, the call (its dialog and media
//! handle) and the agent controls; the SIP driver, the media task, stdin or the UI talk to it
//! by channels. The SIP protocol cores it uses are the sans-IO ones of `santral-sip`; the user
//! agent itself is a thin async layer and is tested end to end (tests/e2e_phone.rs).

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
