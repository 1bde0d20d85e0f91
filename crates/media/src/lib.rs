//! # santral-media — the media engine
//!
//! RTP/RTCP, SDP offer/answer, G.711/G.722 codecs, an adaptive jitter buffer with packet-loss
//! concealment, DTMF (RFC 4733 and in-band), tones, prompts, recording, bridging and mixing.
//!
//! The cores are sans-IO state machines that take `now: Instant` and bytes, and give back
//! bytes and events; the media engine ([`engine`]) owns sockets and time. Per packet nothing
//! allocates and nothing locks; prompts are decoded and encoded once and shared by `Arc`; a few
//! media threads (one per core) wake every 20 ms and walk their sessions in a fixed order:
//! each session reads what arrived meanwhile (with the kernel's arrival times), then sends
//! its frame.
//!
//! ## How the server uses it (one call)
//!
//! ```text
//!  process start:  let ports  = PortAllocator::new(10000..=20000)?;      // even RTP / odd RTCP
//!                  let engine = MediaEngine::start(None)?;               // media threads, one per core
//!                  let pacer  = Pacer::spawn();                          // 20 ms tick for bridges
//!                  let prompts = PromptCache::new();                     // prompt+codec → Arc frames
//!
//!  INVITE arrives: let sockets = RtpSockets::bind(local_ip, &ports).await?;
//!                  let local   = LocalMedia::new(local_ip, sockets.rtp_port());
//!                  match sdp::answer_offer(offer_body, &local) {
//!                      Ok(answer) => { /* 200 OK with answer.sdp */ }
//!                      Err(reason) => { /* 488 Not Acceptable Here, Warning/Reason: reason.reason() */ }
//!                  }
//!                  let session = MediaSession::new(SessionConfig::from_negotiated(&answer.media), Instant::now());
//!                  // either hand it to the engine and talk to it by channels (inside the call's span,
//!                  // tracing::info_span!("call", call_id = %call_id), so media logs carry it) …
//!                  let mut media = engine.spawn_session(session, sockets, record);  // MediaHandle
//!                  // … or drive the MediaSession directly inside the call task (same calls as the engine).
//!
//!  IVR:            cmd_tx.send(MediaCommand::Play { playlist: Playlist::new(vec![prompts.get(path, codec)?]),
//!                                                   barge_in: true, started: None })
//!                  events: MediaEvent::Dtmf(DtmfEvent::Pressed { digit, .. }), PlaybackFinished { id },
//!                          PlaybackStopped { id, reason: StopReason::BargeIn(digit) }, …
//!  queue:          MediaCommand::PlayMusic(prompts.get(moh_file, codec)?)        // loops
//!                  MediaCommand::PlayTone(ToneKind::Ringback(ToneRegion::Europe))
//!  agent answers:  detach both sessions (Detach, then media.finished.await → SessionEnd { session, sockets, quality }) and run
//!                  driver::run_bridge(caller, caller_sockets, agent, agent_sockets, ticks, stop, events, tap)
//!                  — transcodes when codecs differ, keeps DTMF/RTCP, and its tap feeds a
//!                  CallRecorder (stereo: caller left, agent right); or, for a pure relay with no
//!                  recording, driver::run_relay with two relay::RtpRelay (SSRC/seq/ts rewrite).
//!  supervisor:     mixer::Mixer with Audience::{Everyone, Only(agent), Nobody} = barge/whisper/listen.
//!  hang-up:        MediaCommand::Shutdown (sends an RTCP BYE) → SessionEnd.quality → QualitySummary
//!                  { loss_percent, mean_jitter_ms, round_trip_ms, r_factor, mos } for the call record.
//!                  Dropping the sockets releases the port pair.
//!  dead peer:      MediaEvent::MediaTimeout (no RTP for SessionConfig::media_timeout, 30 s by
//!                  default) and MediaEvent::RemoteGoodbye (RTCP BYE) tell the call to hang up.
//!  re-INVITE:      MediaCommand::Renegotiate(sdp::answer_offer(..)?.media) — hold/resume, new
//!                  address, new codec.
//! ```
//!
//! ## Events and robustness
//!
//! - DTMF: one [`MediaEvent::Dtmf`] `Pressed` per key (RFC 4733 redundancy and end packets
//!   collapse), then `Released` with the duration. In-band detection runs until the far end
//!   shows it sends RFC 4733, then stands down so gateways that send both are not doubled.
//! - The far end may change SSRC at any time ([`MediaEvent::RemoteSsrcChanged`]); packets are
//!   sent to where they really come from ([`MediaEvent::RemoteAddressChanged`]).
//! - RFC 4733 and RFC 3389 comfort-noise packets count in the stream's numbering: the audio
//!   period they stand for plays as silence and is not reported as loss.
//! - Every input (SDP, RTP, RTCP, audio files) is parsed into typed values or refused with an
//!   error; nothing from outside can panic the engine (property tests feed it garbage).
//!
//! ## Modules
//!
//! | module | what |
//! |---|---|
//! | [`sdp`] | offer/answer with `rtc-sdp`: [`sdp::answer_offer`], [`sdp::create_offer`], [`sdp::accept_answer`]; [`sdp::NotAcceptable`] → 488 |
//! | [`session`] | [`session::MediaSession`]: one leg's RTP/RTCP state machine (`handle_rtp`, `handle_rtcp`, `tick`, `poll_rtcp`, `poll_event`, `play`, `stop`, `play_tone`, `play_music`, `send_dtmf`, `go_live`/`set_live_frame`/`set_live_payload`, `renegotiate`, `quality`) |
//! | [`engine`] | [`engine::MediaEngine`]: media threads walking their sessions every 20 ms in a fixed order; [`engine::MediaHandle`], [`engine::SessionJoin`] |
//! | [`driver`] | [`driver::RtpSockets`], [`driver::MediaCommand`]; tokio: [`driver::run_bridge`], [`driver::run_relay`] |
//! | [`pacer`] | drift-free 20 ms schedule and the shared [`pacer::Pacer`] task |
//! | [`receive`] | non-blocking datagram reads with kernel arrival times (`SO_TIMESTAMPNS`) |
//! | [`port`] | [`port::PortAllocator`] over a range; leases return on drop |
//! | [`codec`], [`g711`], [`g722`] | codecs (G.711 table-driven; G.722 bit-exact with libg722), per-leg encoder/decoder state, transcoding through 8 kHz frames |
//! | [`jitter`], [`concealment`] | adaptive jitter buffer on a 10 ms timestamp grid (10–60 ms packets, reorder, late/duplicate drop, grow/shrink) and G.711-style PLC (whole and half frames) |
//! | [`telephone_event`], [`dtmf_detector`] | RFC 4733 receive/send; Goertzel in-band detection (Q.24 timing, twist, SNR) |
//! | [`tone`] | ringback/busy (Europe/Turkey 425 Hz, North America 440+480 / 480+620), beep, comfort noise |
//! | [`prompt`] | symphonia decode (WAV, MP3, OGG/Vorbis, FLAC), downmix, rubato resample, [`prompt::PromptCache`], [`prompt::Playlist`]; errors name the file |
//! | [`recording`] | [`recording::CallRecorder`]: stereo or mono WAV, header refreshed every second |
//! | [`relay`], [`mixer`] | packet relay with SSRC/sequence/timestamp continuity and transcoding; N-party mixer |
//! | [`rtcp`], [`quality`] | RFC 3550 statistics (A.1/A.3/A.8), SR/RR with `rtc-rtcp`, RTT; E-model R → MOS |
//!
//! ## Frames and clocks
//!
//! Audio moves inside the engine as [`codec::Frame`]: 160 samples, 20 ms at 8 kHz. G.722 legs
//! convert at their edge; G.722 prompts are cached from a 16 kHz rendering. All three codecs use
//! an 8000 Hz RTP clock (160 units per frame).
//!
//! ## Packet time
//!
//! We send 20 ms packets (`a=ptime:20`) and receive any multiple of 10 ms up to 60 ms
//! (`a=maxptime:60`), mixed within a stream: the jitter buffer places received audio by RTP
//! timestamp on a 10 ms grid and plays it out as 20 ms frames (a 30 ms packet fills one and a
//! half frames, two 10 ms packets one), so reordering, loss concealment (including half-frame
//! losses), RFC 4733 events and the adaptive delay work for every packet time. The delay target
//! includes the packet time (a 60 ms packet has to be waited for whole); the offer's `a=ptime`
//! ([`sdp::NegotiatedMedia::remote_ptime_ms`]) sizes it before the first packet. RTCP loss is
//! counted by sequence number, so one lost 60 ms packet is one lost packet. The relay keeps
//! packets whole (transcoding 20 ms at a time).
//!
//! ## Blocking work
//!
//! [`prompt::PromptCache::get`] decodes files and [`recording::CallRecorder::write`] writes
//! them: call them from `spawn_blocking` or a dedicated task fed by the tick tap, never inside
//! the packet loop.

pub mod codec;
pub mod concealment;
pub mod driver;
pub mod dtmf_detector;
pub mod engine;
pub mod g711;
pub mod g722;
pub mod jitter;
pub mod mixer;
pub mod pacer;
pub mod port;
mod prefetch;
pub mod prompt;
pub mod quality;
pub mod receive;
pub mod recording;
pub mod relay;
pub mod rtcp;
pub mod sdp;
pub mod session;
pub mod telephone_event;
pub mod tone;
pub mod uring;
mod wideband;

pub use codec::{Codec, FRAME_SAMPLES, Frame};
pub use driver::{MediaCommand, RtpSockets, SessionEnd, TickAudio, run_bridge, run_relay};
pub use engine::{
    EngineConfig, EngineError, MediaCommands, MediaEngine, MediaHandle, SessionJoin, SessionLost,
};
pub use pacer::Pacer;
pub use port::{PortAllocator, PortLease};
pub use prompt::{EncodedPrompt, Playlist, PromptCache, PromptError};
pub use quality::QualitySummary;
pub use recording::{CallRecorder, RecordingLayout};
pub use sdp::{Answer, Direction, LocalMedia, NegotiatedMedia, NotAcceptable};
pub use session::{MediaEvent, MediaSession, SessionConfig, StopReason};
pub use telephone_event::{DtmfDigit, DtmfEvent, DtmfSource};
pub use tone::{ToneKind, ToneRegion};
