//! One call leg's media, as a sans-IO state machine.
//!
//! The driver (or the call task) feeds it datagrams with [`MediaSession::handle_rtp`] /
//! [`MediaSession::handle_rtcp`], calls [`MediaSession::tick`] every 20 ms from the shared pacer
//! and sends what comes back, and drains [`MediaSession::poll_event`]. Time is always passed in.
//!
//! Per tick the session takes one frame from the jitter buffer (decoding it, or concealing a
//! loss), runs the in-band DTMF detector on it, then builds one outgoing packet from the current
//! source: a prompt playlist (cached payloads are copied, not re-encoded), a tone, music on hold,
//! live audio from a bridge or mixer, a relayed payload, or comfort noise. The packet is written
//! into a buffer owned by the session: nothing on this path allocates or locks.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rtc_rtp::header::Header as RtpHeader;
use rtc_shared::marshal::{Marshal as _, MarshalSize as _};
use thiserror::Error;

use crate::codec::{AudioDecoder, AudioEncoder, Codec, FRAME_SAMPLES, Frame, MAX_FRAME_BYTES};
use crate::concealment::Concealer;
use crate::dtmf_detector::{DtmfDetector, key_frequencies};
use crate::jitter::{Half, JitterBuffer, JitterConfig, JitterStats, Playout, PushOutcome};
use crate::prompt::{EncodedPrompt, Playlist};
use crate::quality::{QualityInputs, QualitySummary, summarise};
use crate::relay::LegFormat;
use crate::rtcp::{self, NtpClock, ReceptionStats, SenderStats};
use crate::sdp::{Direction, NegotiatedMedia};
use crate::telephone_event::{
    DtmfDigit, DtmfEvent, DtmfSource, TelephoneEventReceiver, TelephoneEventSender,
};
use crate::tone::{ToneGenerator, ToneKind};

const EVENT_QUEUE: usize = 64;
const DTMF_QUEUE: usize = 32;
/// RFC 3389 comfort-noise payload type: accepted and ignored.
const COMFORT_NOISE_PT: u8 = 13;
const RTP_BUFFER: usize = 12 + MAX_FRAME_BYTES + 64;

/// Session parameters, usually from SDP negotiation.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub local_ssrc: u32,
    pub codec: Codec,
    pub payload_type: u8,
    pub telephone_event_payload_type: Option<u8>,
    pub remote_rtp: Option<SocketAddr>,
    pub remote_rtcp: Option<SocketAddr>,
    pub direction: Direction,
    /// Send to where the far end's packets really come from (callers behind NAT).
    pub symmetric_rtp: bool,
    /// Also look for DTMF tones in the audio.
    pub inband_dtmf: bool,
    pub jitter: JitterConfig,
    pub initial_sequence: u16,
    pub initial_timestamp: u32,
    pub rtcp_interval: Duration,
    /// Silence on the wire for this long raises [`MediaEvent::MediaTimeout`] (once).
    pub media_timeout: Duration,
}

impl SessionConfig {
    /// From an SDP agreement, with random SSRC, sequence and timestamp (RFC 3550 §5.1).
    /// Tones in the audio are looked for only when the far end did not agree to RFC 4733
    /// events (as phones and gateways expect: "auto" DTMF mode); it saves the per-frame
    /// Goertzel filters, the largest cost of receiving audio, on every other call.
    pub fn from_negotiated(media: &NegotiatedMedia) -> Self {
        SessionConfig {
            local_ssrc: rand::random(),
            codec: media.codec,
            payload_type: media.payload_type,
            telephone_event_payload_type: media.telephone_event_payload_type,
            remote_rtp: (!media.remote_rtp.ip().is_unspecified() && media.remote_rtp.port() != 0)
                .then_some(media.remote_rtp),
            remote_rtcp: (!media.remote_rtcp.ip().is_unspecified()
                && media.remote_rtcp.port() != 0)
                .then_some(media.remote_rtcp),
            direction: media.direction,
            symmetric_rtp: true,
            inband_dtmf: media.telephone_event_payload_type.is_none(),
            jitter: JitterConfig {
                expected_packet_ms: media.remote_ptime_ms.unwrap_or(20),
                ..JitterConfig::default()
            },
            initial_sequence: rand::random(),
            initial_timestamp: rand::random(),
            rtcp_interval: Duration::from_secs(5),
            media_timeout: Duration::from_secs(30),
        }
    }
}

/// Why playback stopped before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The caller pressed a key during a barge-in prompt.
    BargeIn(DtmfDigit),
    /// `stop()` or another play command replaced it.
    Replaced,
}

/// Things the call task wants to know about.
#[derive(Debug, Clone, PartialEq)]
pub enum MediaEvent {
    Dtmf(DtmfEvent),
    PlaybackFinished {
        id: u64,
    },
    PlaybackStopped {
        id: u64,
        reason: StopReason,
    },
    ToneFinished,
    DtmfSent {
        digit: DtmfDigit,
    },
    /// Symmetric RTP: packets now come from (and go to) this address.
    RemoteAddressChanged(SocketAddr),
    /// The far end switched streams (new SSRC).
    RemoteSsrcChanged {
        old: u32,
        new: u32,
    },
    /// The far end sent an RTCP BYE.
    RemoteGoodbye,
    /// No RTP arrived for [`SessionConfig::media_timeout`] while we expected it (dead caller,
    /// NAT binding lost): the call should be torn down.
    MediaTimeout,
}

/// A datagram to send.
#[derive(Debug, PartialEq, Eq)]
pub struct Transmit<'a> {
    pub destination: SocketAddr,
    pub payload: &'a [u8],
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum RtpError {
    #[error("malformed RTP: {0}")]
    Malformed(String),
    #[error("unexpected RTP payload type {0}")]
    UnexpectedPayloadType(u8),
    #[error("bad telephone-event: {0}")]
    TelephoneEvent(String),
    /// More than 60 ms of audio in one packet (we announce `a=maxptime:60`).
    #[error("RTP payload of {0} bytes is longer than 60 ms")]
    PacketTooLong(usize),
}

#[derive(Debug)]
enum Outbound {
    Silence,
    ComfortNoise(ToneGenerator),
    Playlist {
        playlist: Playlist,
        prompt: usize,
        frame: usize,
        barge_in: bool,
        id: u64,
    },
    Tone(ToneGenerator),
    Music {
        prompt: Arc<EncodedPrompt>,
        frame: usize,
    },
    /// Audio supplied each tick by a bridge or mixer ([`MediaSession::set_live_frame`]).
    Live,
}

#[derive(Debug, Clone, Copy)]
struct PendingDigit {
    digit: DtmfDigit,
    duration_ms: u32,
}

/// In-band DTMF generation when the far end did not negotiate telephone-event.
#[derive(Debug, Clone, Copy)]
struct InbandDigit {
    digit: DtmfDigit,
    frames_on: u32,
    frames_total: u32,
    elapsed: u32,
    phase: [f32; 2],
}

/// One call leg's RTP session.
#[derive(Debug)]
pub struct MediaSession {
    config: SessionConfig,
    remote_rtp: Option<SocketAddr>,
    remote_rtcp: Option<SocketAddr>,
    remote_ssrc: Option<u32>,
    header: RtpHeader,
    encoder: AudioEncoder,
    decoder: AudioDecoder,
    jitter: JitterBuffer,
    concealer: Concealer,
    detector: DtmfDetector,
    events_in: TelephoneEventReceiver,
    outbound: Outbound,
    /// Live audio for the next tick (bridge/mixer input).
    live_frame: Frame,
    /// A payload to relay as-is next tick (same-codec bridging).
    relay_payload: Option<([u8; MAX_FRAME_BYTES], usize)>,
    received: Frame,
    received_is_audio: bool,
    /// `received` is all silence (kept so, without comparing 320 bytes per tick, while
    /// nobody listens).
    received_cleared: bool,
    sent: Frame,
    pending_digits: VecDeque<PendingDigit>,
    sending_event: Option<(DtmfDigit, TelephoneEventSender)>,
    sending_inband: Option<InbandDigit>,
    events: VecDeque<MediaEvent>,
    tx: [u8; RTP_BUFFER],
    rtcp_tx: Vec<u8>,
    reception: ReceptionStats,
    sender: SenderStats,
    clock: NtpClock,
    epoch: Instant,
    next_rtcp: Instant,
    round_trip: Option<Duration>,
    jitter_samples: (f64, u64),
    started_playback: u64,
    remote_goodbye: bool,
    last_rtp: Instant,
    timed_out: bool,
    rfc4733_seen: bool,
    talkspurt_start: bool,
    /// Someone hears the received audio (see [`MediaSession::set_listening`]).
    listening: bool,
}

impl MediaSession {
    pub fn new(config: SessionConfig, now: Instant) -> Self {
        let header = RtpHeader {
            version: 2,
            payload_type: config.payload_type,
            sequence_number: config.initial_sequence,
            timestamp: config.initial_timestamp,
            ssrc: config.local_ssrc,
            ..RtpHeader::default()
        };
        MediaSession {
            remote_rtp: config.remote_rtp,
            remote_rtcp: config.remote_rtcp.or(config
                .remote_rtp
                .map(|a| SocketAddr::new(a.ip(), a.port().wrapping_add(1)))),
            remote_ssrc: None,
            header,
            encoder: AudioEncoder::new(config.codec),
            decoder: AudioDecoder::new(config.codec),
            jitter: JitterBuffer::new(config.jitter),
            concealer: Concealer::new(),
            detector: DtmfDetector::new(),
            events_in: TelephoneEventReceiver::new(config.codec.rtp_clock_rate()),
            outbound: Outbound::ComfortNoise(ToneGenerator::new(ToneKind::ComfortNoise)),
            live_frame: [0; FRAME_SAMPLES],
            relay_payload: None,
            received: [0; FRAME_SAMPLES],
            received_is_audio: false,
            received_cleared: true,
            sent: [0; FRAME_SAMPLES],
            pending_digits: VecDeque::with_capacity(DTMF_QUEUE),
            sending_event: None,
            sending_inband: None,
            events: VecDeque::with_capacity(EVENT_QUEUE),
            tx: [0; RTP_BUFFER],
            rtcp_tx: Vec::with_capacity(256),
            reception: ReceptionStats::default(),
            sender: SenderStats::default(),
            clock: NtpClock::new(now, SystemTime::now()),
            epoch: now,
            next_rtcp: now + config.rtcp_interval,
            round_trip: None,
            jitter_samples: (0.0, 0),
            started_playback: 0,
            remote_goodbye: false,
            last_rtp: now,
            timed_out: false,
            rfc4733_seen: false,
            talkspurt_start: true,
            listening: true,
            config,
        }
    }

    pub fn local_ssrc(&self) -> u32 {
        self.config.local_ssrc
    }

    /// Whether anyone hears the received audio (a recording, a bridge, a phone's speaker).
    /// When nobody does, as for a caller in the IVR or the queue, received frames are not
    /// decoded or concealed: the jitter buffer, RFC 4733 digits, RTCP and the media timeout
    /// work as before, and [`MediaSession::received_frame`] stays silent. In-band DTMF
    /// detection listens regardless. On by default.
    pub fn set_listening(&mut self, listening: bool) {
        self.listening = listening;
    }

    /// Prefetches the heap memory the next tick will touch (see the media engine's walk).
    pub(crate) fn prefetch(&self) {
        self.jitter.prefetch();
        // The playlist's own allocation (the current prompt's handle) is cold by the next
        // tick; the prompts' audio is shared by every call playing them and stays warm.
        if let Outbound::Playlist {
            playlist, prompt, ..
        } = &self.outbound
            && let Some(upcoming) = playlist.prompts.get(*prompt..)
        {
            crate::prefetch::prefetch(upcoming.get(..2).unwrap_or(upcoming));
        }
    }

    /// Packets the far end sends per 20 ms frame by its announced packet time (two at 10 ms).
    pub fn packets_per_frame(&self) -> usize {
        20usize.div_ceil(self.config.jitter.expected_packet_ms.clamp(10, 60) as usize)
    }

    pub fn codec(&self) -> Codec {
        self.config.codec
    }

    pub fn remote_rtp(&self) -> Option<SocketAddr> {
        self.remote_rtp
    }

    pub fn remote_ssrc(&self) -> Option<u32> {
        self.remote_ssrc
    }

    /// This leg's negotiated payload types (for a relay into or out of it).
    pub fn leg_format(&self) -> LegFormat {
        LegFormat {
            codec: self.config.codec,
            payload_type: self.config.payload_type,
            telephone_event_payload_type: self.config.telephone_event_payload_type,
        }
    }

    /// Where RTP for this leg goes now, when it is sending at all (not on hold, address known).
    pub fn send_destination(&self) -> Option<SocketAddr> {
        self.remote_rtp
            .filter(|a| self.config.direction.sends() && !a.ip().is_unspecified() && a.port() != 0)
    }

    /// The sequence number and timestamp of the next packet this session would send.
    pub fn next_outgoing(&self) -> (u16, u32) {
        (self.header.sequence_number, self.header.timestamp)
    }

    /// Accounts a packet that a forwarding bridge sent under this session's SSRC (`datagram`
    /// is the RTP packet as sent): RTCP sender reports count it, and when the session sends by
    /// itself again (hold music after the bridge) its stream continues after the newest one.
    pub fn note_forwarded(&mut self, datagram: &[u8]) {
        if datagram.len() < 12 {
            return;
        }
        let sequence = u16::from_be_bytes([datagram[2], datagram[3]]);
        let timestamp = u32::from_be_bytes([datagram[4], datagram[5], datagram[6], datagram[7]]);
        let newer_sequence = sequence.wrapping_sub(self.header.sequence_number) < 0x8000;
        if newer_sequence {
            self.header.sequence_number = sequence.wrapping_add(1);
            let next_timestamp = timestamp.wrapping_add(self.config.codec.frame_timestamp_units());
            if next_timestamp.wrapping_sub(self.header.timestamp) < 0x8000_0000 {
                self.header.timestamp = next_timestamp;
            }
        }
        self.sender.on_sent(datagram.len() - 12, timestamp);
        self.talkspurt_start = false;
    }

    /// Runs only the receive side of one 20 ms period: jitter buffer, decoding, concealment,
    /// DTMF detection, media timeout (a forwarding bridge sends the other leg's packets itself;
    /// this keeps [`MediaSession::received_frame`] for the recording and DTMF events going).
    pub fn tick_receive(&mut self, now: Instant) {
        self.receive_tick(now);
    }

    /// Applies a re-INVITE's agreement (hold/resume, new address, new codec).
    pub fn renegotiate(&mut self, media: &NegotiatedMedia) {
        self.config.direction = media.direction;
        self.timed_out = false;
        self.config.telephone_event_payload_type = media.telephone_event_payload_type;
        if !media.remote_rtp.ip().is_unspecified() && media.remote_rtp.port() != 0 {
            self.remote_rtp = Some(media.remote_rtp);
            self.remote_rtcp = Some(media.remote_rtcp);
        }
        if media.codec != self.config.codec || media.payload_type != self.config.payload_type {
            self.config.codec = media.codec;
            self.config.payload_type = media.payload_type;
            self.header.payload_type = media.payload_type;
            self.encoder = AudioEncoder::new(media.codec);
            self.decoder = AudioDecoder::new(media.codec);
            self.jitter.reset();
        }
    }

    fn push_event(&mut self, event: MediaEvent) {
        if self.events.len() >= EVENT_QUEUE {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    pub fn poll_event(&mut self) -> Option<MediaEvent> {
        self.events.pop_front()
    }

    // ---- commands -------------------------------------------------------------------------

    fn stop_current(&mut self, reason: StopReason) {
        self.talkspurt_start = true;
        if let Outbound::Playlist { id, .. } = self.outbound {
            self.push_event(MediaEvent::PlaybackStopped { id, reason });
        }
    }

    /// Plays prompts back to back; returns the playback id used in the finish/stop events.
    /// With `barge_in`, a key press stops it.
    pub fn play(&mut self, playlist: Playlist, barge_in: bool) -> u64 {
        self.stop_current(StopReason::Replaced);
        self.started_playback += 1;
        let id = self.started_playback;
        self.outbound = Outbound::Playlist {
            playlist,
            prompt: 0,
            frame: 0,
            barge_in,
            id,
        };
        id
    }

    /// Stops prompts, tones or music; the line falls back to comfort noise.
    pub fn stop(&mut self) {
        self.stop_current(StopReason::Replaced);
        self.outbound = Outbound::ComfortNoise(ToneGenerator::new(ToneKind::ComfortNoise));
    }

    pub fn play_tone(&mut self, kind: ToneKind) {
        self.stop_current(StopReason::Replaced);
        self.outbound = Outbound::Tone(ToneGenerator::new(kind));
    }

    /// Loops `music` until stopped (music on hold).
    pub fn play_music(&mut self, music: Arc<EncodedPrompt>) {
        self.stop_current(StopReason::Replaced);
        self.outbound = Outbound::Music {
            prompt: music,
            frame: 0,
        };
    }

    /// Silence (no comfort noise).
    pub fn mute(&mut self) {
        self.stop_current(StopReason::Replaced);
        self.outbound = Outbound::Silence;
    }

    /// Switches to live audio: from now on each tick sends the last frame given to
    /// [`MediaSession::set_live_frame`] (bridge/transcode/mixer) or relayed payload.
    pub fn go_live(&mut self) {
        self.stop_current(StopReason::Replaced);
        self.outbound = Outbound::Live;
        self.live_frame = [0; FRAME_SAMPLES];
    }

    /// Audio to send on the next tick (live mode).
    pub fn set_live_frame(&mut self, frame: &Frame) {
        self.live_frame = *frame;
    }

    /// An already-encoded payload in this session's codec to send on the next tick as-is
    /// (same-codec bridging without a decode/encode round).
    pub fn set_live_payload(&mut self, payload: &[u8]) {
        if payload.len() <= MAX_FRAME_BYTES {
            let mut buffer = [0u8; MAX_FRAME_BYTES];
            buffer[..payload.len()].copy_from_slice(payload);
            self.relay_payload = Some((buffer, payload.len()));
        }
    }

    /// Queues a key press to send: RFC 4733 when negotiated, otherwise as in-band tones.
    pub fn send_dtmf(&mut self, digit: DtmfDigit, duration_ms: u32) -> bool {
        if self.pending_digits.len() >= DTMF_QUEUE {
            return false;
        }
        self.pending_digits.push_back(PendingDigit {
            digit,
            duration_ms: duration_ms.clamp(40, 2000),
        });
        true
    }

    // ---- input ----------------------------------------------------------------------------

    /// Handles one datagram from the RTP socket.
    pub fn handle_rtp(
        &mut self,
        now: Instant,
        source: SocketAddr,
        datagram: &[u8],
    ) -> Result<(), RtpError> {
        let (header, range) = rtcp::parse_rtp_header(datagram).map_err(RtpError::Malformed)?;
        let payload = &datagram[range];
        self.last_rtp = now;
        self.timed_out = false;
        if self.config.symmetric_rtp && self.remote_rtp != Some(source) {
            self.remote_rtp = Some(source);
            if self.remote_rtcp.is_none() {
                self.remote_rtcp =
                    Some(SocketAddr::new(source.ip(), source.port().wrapping_add(1)));
            }
            self.push_event(MediaEvent::RemoteAddressChanged(source));
        }
        if Some(header.payload_type) == self.config.telephone_event_payload_type {
            // Events inside the audio stream use its sequence numbers: account for them so
            // they are neither loss in RTCP nor concealment in the jitter buffer.
            if self.remote_ssrc == Some(header.ssrc) {
                self.reception
                    .on_untimed_packet(header.ssrc, header.sequence_number);
                self.jitter
                    .push_untimed(header.sequence_number, header.payload_type);
            }
            let mut out = [None, None];
            self.events_in
                .on_packet(header.ssrc, header.timestamp, payload, &mut out)
                .map_err(|e| RtpError::TelephoneEvent(e.to_string()))?;
            for event in out.into_iter().flatten() {
                self.on_dtmf(event);
            }
            return Ok(());
        }
        if header.payload_type == COMFORT_NOISE_PT {
            // RFC 3389 silence: part of the stream's numbering, plays as quiet, is not loss.
            if self.remote_ssrc == Some(header.ssrc) {
                self.reception
                    .on_untimed_packet(header.ssrc, header.sequence_number);
                self.jitter
                    .push_untimed(header.sequence_number, header.payload_type);
            }
            return Ok(());
        }
        if header.payload_type != self.config.payload_type {
            return Err(RtpError::UnexpectedPayloadType(header.payload_type));
        }
        if self.remote_ssrc != Some(header.ssrc) {
            if let Some(old) = self.remote_ssrc {
                self.push_event(MediaEvent::RemoteSsrcChanged {
                    old,
                    new: header.ssrc,
                });
                self.jitter.reset();
            }
            self.remote_ssrc = Some(header.ssrc);
        }
        let arrival_units = (now.saturating_duration_since(self.epoch).as_secs_f64()
            * self.config.codec.rtp_clock_rate() as f64) as u64;
        self.reception.on_packet(
            header.ssrc,
            header.sequence_number,
            header.timestamp,
            arrival_units,
        );
        let outcome = self.jitter.push(
            now,
            header.sequence_number,
            header.timestamp,
            header.payload_type,
            payload,
        );
        if outcome == PushOutcome::Oversized {
            return Err(RtpError::PacketTooLong(payload.len()));
        }
        Ok(())
    }

    /// Handles one datagram from the RTCP socket.
    pub fn handle_rtcp(
        &mut self,
        now: Instant,
        source: SocketAddr,
        datagram: &[u8],
    ) -> Result<(), rtcp::RtcpError> {
        let feedback = rtcp::handle_report(
            datagram,
            self.config.local_ssrc,
            &self.clock,
            now,
            &mut self.reception,
        )?;
        if self.config.symmetric_rtp {
            self.remote_rtcp = Some(source);
        }
        if let Some(rtt) = feedback.round_trip {
            self.round_trip = Some(rtt);
        }
        if feedback.goodbye && !self.remote_goodbye {
            self.remote_goodbye = true;
            self.push_event(MediaEvent::RemoteGoodbye);
        }
        Ok(())
    }

    fn on_dtmf(&mut self, event: DtmfEvent) {
        // Gateways that send RFC 4733 often leave the tones in the audio as well: once the far
        // end has shown it sends events, in-band detections would only duplicate them.
        match event {
            DtmfEvent::Pressed {
                source: DtmfSource::Rfc4733,
                ..
            }
            | DtmfEvent::Released {
                source: DtmfSource::Rfc4733,
                ..
            } => {
                self.rfc4733_seen = true;
            }
            DtmfEvent::Pressed {
                source: DtmfSource::InBand,
                ..
            }
            | DtmfEvent::Released {
                source: DtmfSource::InBand,
                ..
            } => {
                if self.rfc4733_seen {
                    return;
                }
            }
        }
        if let DtmfEvent::Pressed { digit, .. } = event
            && let Outbound::Playlist {
                barge_in: true, id, ..
            } = self.outbound
        {
            self.push_event(MediaEvent::PlaybackStopped {
                id,
                reason: StopReason::BargeIn(digit),
            });
            self.outbound = Outbound::ComfortNoise(ToneGenerator::new(ToneKind::ComfortNoise));
        }
        self.push_event(MediaEvent::Dtmf(event));
    }

    // ---- the 20 ms tick -------------------------------------------------------------------

    /// Runs one 20 ms period: receive side, then the packet to send (if any).
    pub fn tick(&mut self, now: Instant) -> Option<Transmit<'_>> {
        self.receive_tick(now);
        self.send_tick()
    }

    /// The frame received during the last tick (decoded or concealed; silence when nothing).
    pub fn received_frame(&self) -> &Frame {
        &self.received
    }

    /// True if the last received frame came from the far end (not silence while buffering).
    pub fn received_audio(&self) -> bool {
        self.received_is_audio
    }

    /// The frame sent in the last tick, as PCM (what the far end hears).
    pub fn sent_frame(&self) -> &Frame {
        &self.sent
    }

    fn receive_tick(&mut self, now: Instant) {
        // Only a stream we expect to hear from can time out (not on hold / inactive).
        if !self.timed_out
            && self.config.direction.receives()
            && now.saturating_duration_since(self.last_rtp) >= self.config.media_timeout
        {
            self.timed_out = true;
            self.push_event(MediaEvent::MediaTimeout);
        }
        self.received_is_audio = true;
        if !self.listening && !self.config.inband_dtmf {
            // Play-out still advances (loss, lateness and depth are measured), but the audio
            // is not decoded for nobody.
            if matches!(self.jitter.pop(now), Playout::Buffering) {
                self.received_is_audio = false;
            }
            if !self.received_cleared {
                self.received = [0; FRAME_SAMPLES];
                self.received_cleared = true;
            }
            return;
        }
        self.received_cleared = false;
        match self.jitter.pop(now) {
            Playout::Frame {
                payload,
                payload_type,
                halves,
                ..
            } => {
                if payload_type == self.config.payload_type {
                    self.decoder.decode_frame(payload, &mut self.received);
                } else {
                    self.received = [0; FRAME_SAMPLES];
                }
                // A 10 ms half the sender left silent plays as silence; a lost one is concealed.
                const HALF: usize = FRAME_SAMPLES / 2;
                for (h, half) in halves.iter().enumerate() {
                    if *half == Half::Silence {
                        self.received[h * HALF..(h + 1) * HALF].fill(0);
                    }
                }
                self.concealer.repair_half(
                    &mut self.received,
                    [halves[0] != Half::Missing, halves[1] != Half::Missing],
                );
            }
            Playout::Silence => {
                // A telephone-event or comfort-noise period: the sender sent no audio for it.
                self.received = [0; FRAME_SAMPLES];
                self.concealer.good_frame(&mut self.received);
            }
            Playout::Lost => {
                // G.711 decodes without state, so the frame after the gap can be decoded
                // ahead and the gap interpolated towards it.
                let mut next_payload = [0u8; MAX_FRAME_BYTES];
                let stateless = matches!(self.config.codec, Codec::Pcmu | Codec::Pcma);
                match self.jitter.peek_next_frame(&mut next_payload) {
                    Some(payload_type) if stateless && payload_type == self.config.payload_type => {
                        let mut next = [0i16; FRAME_SAMPLES];
                        self.decoder.decode_frame(&next_payload, &mut next);
                        self.concealer.interpolate(&mut self.received, &next);
                    }
                    _ => self.concealer.conceal(&mut self.received),
                }
            }
            Playout::Buffering => {
                self.received = [0; FRAME_SAMPLES];
                self.received_is_audio = false;
            }
        }
        if self.config.inband_dtmf && self.received_is_audio {
            let mut found: [Option<DtmfEvent>; 4] = [None; 4];
            let mut count = 0;
            self.detector.process(&self.received, |event| {
                if count < found.len() {
                    found[count] = Some(event);
                    count += 1;
                }
            });
            for event in found.into_iter().flatten() {
                self.on_dtmf(event);
            }
        }
    }

    fn send_tick(&mut self) -> Option<Transmit<'_>> {
        let timestamp_step = self.config.codec.frame_timestamp_units();
        let destination = self
            .remote_rtp
            .filter(|a| !a.ip().is_unspecified() && a.port() != 0);
        let sends = self.config.direction.sends() && destination.is_some();

        // RFC 4733 events take the place of audio packets while they last.
        if self.sending_event.is_none()
            && self.sending_inband.is_none()
            && let Some(next) = self.pending_digits.pop_front()
        {
            if self.config.telephone_event_payload_type.is_some() {
                let sender = TelephoneEventSender::new(
                    next.digit,
                    next.duration_ms,
                    self.header.timestamp,
                    8000,
                    timestamp_step,
                );
                self.sending_event = Some((next.digit, sender));
            } else {
                self.sending_inband = Some(InbandDigit {
                    digit: next.digit,
                    frames_on: next.duration_ms.div_ceil(20),
                    frames_total: next.duration_ms.div_ceil(20) + 3,
                    elapsed: 0,
                    phase: [0.0; 2],
                });
            }
        }

        if let Some((digit, sender)) = &mut self.sending_event {
            let digit = *digit;
            if let (Some(packet), Some(te_pt)) = (
                sender.next_packet(),
                self.config.telephone_event_payload_type,
            ) {
                let finished = sender.is_finished();
                self.sent = [0; FRAME_SAMPLES];
                self.header.payload_type = te_pt;
                self.header.marker = packet.marker;
                let event_timestamp = packet.timestamp;
                let audio_timestamp = self.header.timestamp;
                self.header.timestamp = event_timestamp;
                let length = self.write_packet(&packet.payload, sends);
                self.header.timestamp = audio_timestamp.wrapping_add(timestamp_step);
                self.header.payload_type = self.config.payload_type;
                self.header.marker = false;
                if finished {
                    self.sending_event = None;
                    self.push_event(MediaEvent::DtmfSent { digit });
                }
                return match (length, destination) {
                    (Some(length), Some(destination)) => Some(Transmit {
                        destination,
                        payload: &self.tx[..length],
                    }),
                    _ => None,
                };
            }
            self.sending_event = None;
        }

        // Choose the audio for this frame.
        let mut payload = [0u8; MAX_FRAME_BYTES];
        let mut payload_len = None;
        if let Some(mut inband) = self.sending_inband {
            self.render_inband(&mut inband);
            self.sending_inband = (inband.elapsed < inband.frames_total).then_some(inband);
            if self.sending_inband.is_none() {
                self.push_event(MediaEvent::DtmfSent {
                    digit: inband.digit,
                });
            }
        } else {
            payload_len = self.render_outbound(&mut payload);
        }
        let length = match payload_len {
            Some(len) => len,
            None => {
                let frame = self.sent;
                self.encoder.encode_frame(&frame, &mut payload)
            }
        };
        // RFC 3551 §4.1: mark the first packet of a talkspurt (stream start, new source).
        self.header.marker = self.talkspurt_start && sends;
        let written = self.write_packet(&payload[..length], sends);
        if written.is_some() {
            self.talkspurt_start = false;
        }
        self.header.marker = false;
        self.header.timestamp = self.header.timestamp.wrapping_add(timestamp_step);
        match (written, destination) {
            (Some(length), Some(destination)) => Some(Transmit {
                destination,
                payload: &self.tx[..length],
            }),
            _ => None,
        }
    }

    fn render_inband(&mut self, inband: &mut InbandDigit) {
        self.sent = [0; FRAME_SAMPLES];
        if inband.elapsed < inband.frames_on {
            let (low, high) = key_frequencies(inband.digit);
            // −10 dBm0 per tone.
            let amplitude = 7169.0;
            for sample in self.sent.iter_mut() {
                inband.phase[0] = (inband.phase[0] + low / 8000.0).fract();
                inband.phase[1] = (inband.phase[1] + high / 8000.0).fract();
                let value = (2.0 * std::f32::consts::PI * inband.phase[0]).sin()
                    + (2.0 * std::f32::consts::PI * inband.phase[1]).sin();
                *sample = (value * amplitude) as i16;
            }
        }
        inband.elapsed += 1;
    }

    /// Fills `self.sent` (PCM) and, when a cached payload can be sent as-is, `payload`.
    fn render_outbound(&mut self, payload: &mut [u8; MAX_FRAME_BYTES]) -> Option<usize> {
        let codec = self.config.codec;
        let mut finished_playlist = None;
        let mut finished_tone = false;
        let result = match &mut self.outbound {
            Outbound::Silence => {
                self.sent = [0; FRAME_SAMPLES];
                None
            }
            Outbound::ComfortNoise(generator) => {
                generator.next_frame(&mut self.sent);
                None
            }
            Outbound::Tone(generator) => {
                generator.next_frame(&mut self.sent);
                finished_tone = generator.is_finished();
                None
            }
            Outbound::Live => {
                self.sent = self.live_frame;
                match self.relay_payload.take() {
                    Some((bytes, len)) => {
                        payload[..len].copy_from_slice(&bytes[..len]);
                        Some(len)
                    }
                    None => None,
                }
            }
            Outbound::Music { prompt, frame } => {
                if *frame >= prompt.frame_count() {
                    *frame = 0;
                }
                let sent = copy_prompt_frame(prompt, *frame, codec, &mut self.sent, payload);
                *frame += 1;
                sent
            }
            Outbound::Playlist {
                playlist,
                prompt,
                frame,
                id,
                ..
            } => {
                // Skip empty prompts and advance across prompt boundaries.
                while *prompt < playlist.prompts.len()
                    && *frame >= playlist.prompts[*prompt].frame_count()
                {
                    *prompt += 1;
                    *frame = 0;
                }
                match playlist.prompts.get(*prompt) {
                    Some(current) => {
                        let sent =
                            copy_prompt_frame(current, *frame, codec, &mut self.sent, payload);
                        *frame += 1;
                        if *frame >= current.frame_count() && *prompt + 1 >= playlist.prompts.len()
                        {
                            finished_playlist = Some(*id);
                        }
                        sent
                    }
                    None => {
                        finished_playlist = Some(*id);
                        self.sent = [0; FRAME_SAMPLES];
                        None
                    }
                }
            }
        };
        if let Some(id) = finished_playlist {
            self.outbound = Outbound::ComfortNoise(ToneGenerator::new(ToneKind::ComfortNoise));
            self.push_event(MediaEvent::PlaybackFinished { id });
        }
        if finished_tone {
            self.outbound = Outbound::ComfortNoise(ToneGenerator::new(ToneKind::ComfortNoise));
            self.push_event(MediaEvent::ToneFinished);
        }
        result
    }

    /// Writes header + payload into the session's buffer; `None` when not sending.
    fn write_packet(&mut self, payload: &[u8], sends: bool) -> Option<usize> {
        if !sends {
            return None;
        }
        let header_len = write_rtp_header(&self.header, &mut self.tx[..])?;
        let end = header_len + payload.len();
        self.tx.get_mut(header_len..end)?.copy_from_slice(payload);
        self.header.sequence_number = self.header.sequence_number.wrapping_add(1);
        self.sender.on_sent(payload.len(), self.header.timestamp);
        Some(end)
    }

    // ---- RTCP -----------------------------------------------------------------------------

    /// When RTCP next wants to send.
    pub fn poll_timeout(&self) -> Instant {
        self.next_rtcp
    }

    /// An RTCP report, when one is due.
    pub fn poll_rtcp(&mut self, now: Instant) -> Option<Transmit<'_>> {
        if now < self.next_rtcp {
            return None;
        }
        self.next_rtcp = now + self.config.rtcp_interval;
        let jitter_ms = self.reception.jitter_units() as f64 / 8.0;
        if self.reception.received() > 0 {
            self.jitter_samples.0 += jitter_ms;
            self.jitter_samples.1 += 1;
        }
        let destination = self.remote_rtcp?;
        let sender = (self.sender.packets > 0).then_some(self.sender);
        let reception = (self.reception.received() > 0).then_some(&mut self.reception);
        let bytes = rtcp::build_report(
            self.config.local_ssrc,
            &self.clock,
            now,
            self.header.timestamp,
            sender.as_ref(),
            reception,
        )
        .ok()?;
        self.rtcp_tx.clear();
        self.rtcp_tx.extend_from_slice(&bytes);
        Some(Transmit {
            destination,
            payload: &self.rtcp_tx,
        })
    }

    /// An RTCP BYE (in a compound packet) to send when the call ends.
    pub fn goodbye(&mut self) -> Option<Transmit<'_>> {
        let destination = self.remote_rtcp?;
        let bytes = rtcp::build_goodbye(self.config.local_ssrc).ok()?;
        self.rtcp_tx.clear();
        self.rtcp_tx.extend_from_slice(&bytes);
        Some(Transmit {
            destination,
            payload: &self.rtcp_tx,
        })
    }

    pub fn round_trip(&self) -> Option<Duration> {
        self.round_trip
    }

    pub fn reception(&self) -> &ReceptionStats {
        &self.reception
    }

    pub fn jitter_stats(&self) -> JitterStats {
        self.jitter.stats()
    }

    /// The call's quality summary so far.
    pub fn quality(&self) -> QualitySummary {
        let current_jitter = self.reception.jitter_units() as f64 / 8.0;
        let mean_jitter_ms = if self.jitter_samples.1 == 0 {
            current_jitter
        } else {
            self.jitter_samples.0 / self.jitter_samples.1 as f64
        };
        summarise(
            self.config.codec,
            &QualityInputs {
                packets_expected: self.reception.expected(),
                packets_lost: self.reception.lost(),
                mean_jitter_ms,
                max_jitter_ms: self.reception.max_jitter_units() as f64 / 8.0,
                round_trip: self.round_trip,
                jitter_buffer_ms: self.jitter.target_depth() as f64 * 20.0,
            },
        )
    }
}

/// Copies one prompt frame: the cached payload when the prompt is in our codec, otherwise its
/// PCM (to be encoded by the caller).
fn copy_prompt_frame(
    prompt: &EncodedPrompt,
    index: usize,
    codec: Codec,
    pcm: &mut Frame,
    payload: &mut [u8; MAX_FRAME_BYTES],
) -> Option<usize> {
    match prompt.pcm_frame(index) {
        Some(frame) => pcm.copy_from_slice(frame),
        None => *pcm = [0; FRAME_SAMPLES],
    }
    if prompt.codec() == codec
        && let Some(bytes) = prompt.payload(index)
    {
        payload[..bytes.len()].copy_from_slice(bytes);
        return Some(bytes.len());
    }
    None
}

/// Our own RTP header into `out`: the fixed 12 bytes by hand (this runs for every packet
/// sent); a header with CSRCs, an extension or padding goes through the general encoder.
fn write_rtp_header(header: &RtpHeader, out: &mut [u8]) -> Option<usize> {
    if !header.csrc.is_empty() || header.extension || header.padding || header.version != 2 {
        let len = header.marshal_size();
        return header.marshal_to(out).ok().filter(|n| *n == len);
    }
    let out = out.get_mut(..12)?;
    out[0] = 0x80;
    out[1] = (u8::from(header.marker) << 7) | (header.payload_type & 0x7F);
    out[2..4].copy_from_slice(&header.sequence_number.to_be_bytes());
    out[4..8].copy_from_slice(&header.timestamp.to_be_bytes());
    out[8..12].copy_from_slice(&header.ssrc.to_be_bytes());
    Some(12)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-written header is byte for byte what the general encoder writes.
    #[test]
    fn rtp_headers_match_the_general_encoder() {
        for (marker, payload_type, sequence_number, timestamp, ssrc) in [
            (false, 0, 0, 0, 0),
            (true, 101, 65535, u32::MAX, 0xDEAD_BEEF),
            (false, 8, 1234, 160 * 7, 0x5A17),
            (true, 127, 1, 1, 1),
        ] {
            let header = RtpHeader {
                version: 2,
                marker,
                payload_type,
                sequence_number,
                timestamp,
                ssrc,
                ..RtpHeader::default()
            };
            let (mut ours, mut theirs) = ([0u8; 64], [0u8; 64]);
            let len = write_rtp_header(&header, &mut ours).unwrap();
            let expected = header.marshal_to(&mut theirs[..]).unwrap();
            assert_eq!(&ours[..len], &theirs[..expected]);
        }
        let with_csrc = RtpHeader {
            version: 2,
            csrc: vec![7],
            ..RtpHeader::default()
        };
        let mut out = [0u8; 64];
        assert_eq!(write_rtp_header(&with_csrc, &mut out), Some(16));
        assert_eq!(
            write_rtp_header(
                &RtpHeader {
                    version: 2,
                    ..RtpHeader::default()
                },
                &mut [0u8; 4]
            ),
            None
        );
    }
}
