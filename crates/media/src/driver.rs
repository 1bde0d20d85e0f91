//! What a call's media is made of and the tokio drivers that run several sessions together:
//! the RTP/RTCP socket pair bound from the port allocator, the commands a call gives its
//! media, and the bridge (two legs forwarding packets to each other) and relay. A single
//! session is run by the media engine's threads ([`crate::engine`]).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use thiserror::Error;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::debug;

use crate::codec::Frame;
use crate::port::{PortAllocator, PortError, PortLease};
use crate::prompt::{EncodedPrompt, Playlist};
use crate::quality::QualitySummary;
use crate::relay::RtpRelay;
use crate::sdp::NegotiatedMedia;
use crate::session::{MediaEvent, MediaSession};
use crate::telephone_event::DtmfDigit;
use crate::tone::ToneKind;

#[derive(Debug, Error)]
pub enum DriverError {
    #[error(transparent)]
    Ports(#[from] PortError),
    #[error("cannot bind RTP sockets on {address}: {source}")]
    Bind {
        address: IpAddr,
        source: std::io::Error,
    },
}

/// A bound RTP (even) / RTCP (odd) socket pair, holding its port lease.
#[derive(Debug)]
pub struct RtpSockets {
    pub rtp: UdpSocket,
    pub rtcp: UdpSocket,
    pub(crate) lease: PortLease,
}

impl RtpSockets {
    /// Binds the next free pair; pairs taken by other processes are skipped.
    pub async fn bind(address: IpAddr, ports: &PortAllocator) -> Result<Self, DriverError> {
        let mut last_error = None;
        for _ in 0..ports.capacity() {
            let lease = ports.allocate()?;
            let rtp = UdpSocket::bind(SocketAddr::new(address, lease.rtp_port())).await;
            let rtcp = UdpSocket::bind(SocketAddr::new(address, lease.rtcp_port())).await;
            match (rtp, rtcp) {
                (Ok(rtp), Ok(rtcp)) => {
                    return Ok(RtpSockets { rtp, rtcp, lease });
                }
                (Err(e), _) | (_, Err(e)) => last_error = Some(e),
            }
        }
        Err(DriverError::Bind {
            address,
            source: last_error.unwrap_or_else(|| std::io::Error::other("no port pairs")),
        })
    }

    pub fn rtp_port(&self) -> u16 {
        self.rtp.local_addr().map(|a| a.port()).unwrap_or(0)
    }
}

/// What the call task can ask of its media.
/// Kept small: a call's command channel holds a block of 32 of these from its first command
/// on (bridges and mixers feed live audio to their sessions directly, not through here).
#[derive(Debug)]
pub enum MediaCommand {
    Play {
        playlist: Playlist,
        barge_in: bool,
        started: Option<oneshot::Sender<u64>>,
    },
    Stop,
    PlayTone(ToneKind),
    PlayMusic(Arc<EncodedPrompt>),
    SendDtmf {
        digit: DtmfDigit,
        duration_ms: u32,
    },
    Renegotiate(NegotiatedMedia),
    /// End the call's media: sends an RTCP BYE, then the driver returns.
    Shutdown,
    /// Stop driving without a BYE (the stream continues elsewhere, e.g. in `run_bridge`).
    Detach,
}

/// The audio of one tick, for recording and bridging.
#[derive(Debug, Clone, Copy)]
pub struct TickAudio {
    pub received: Frame,
    pub sent: Frame,
}

/// What is left when a session's driver stops: the session (for its state and quality) and its
/// sockets (to hand on to a bridge, or to drop, which releases the port pair).
#[derive(Debug)]
pub struct SessionEnd {
    pub session: MediaSession,
    pub sockets: RtpSockets,
    pub quality: QualitySummary,
}

/// Applies a command that keeps the session running.
pub(crate) fn apply_command(session: &mut MediaSession, command: MediaCommand) {
    match command {
        MediaCommand::Play {
            playlist,
            barge_in,
            started,
        } => {
            let id = session.play(playlist, barge_in);
            if let Some(reply) = started {
                let _ = reply.send(id);
            }
        }
        MediaCommand::Stop => session.stop(),
        MediaCommand::PlayTone(kind) => session.play_tone(kind),
        MediaCommand::PlayMusic(music) => session.play_music(music),
        MediaCommand::SendDtmf { digit, duration_ms } => {
            session.send_dtmf(digit, duration_ms);
        }
        MediaCommand::Renegotiate(media) => session.renegotiate(&media),
        MediaCommand::Shutdown | MediaCommand::Detach => {}
    }
}

/// Most frames a bridge catches up in one wake-up after its task was delayed.
const MAX_CATCH_UP_TICKS: u64 = 5;

/// How many 20 ms periods passed since the last wake-up (the pacer publishes tick numbers; a
/// task that was late sees several at once and must not fall behind the far end's clock).
fn ticks_due(ticks: &mut watch::Receiver<u64>, last_tick: &mut u64) -> u64 {
    let tick = *ticks.borrow_and_update();
    let due = tick.saturating_sub(*last_tick).clamp(1, MAX_CATCH_UP_TICKS);
    *last_tick = tick;
    due
}

/// Which leg of a bridge an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BridgeLeg {
    Caller,
    Agent,
}

/// Bridges two sessions in ONE task (the call's) by forwarding packets: each RTP packet from
/// one leg's far end goes out to the other leg's far end as soon as it arrives, under that
/// leg's SSRC and continuing its sequence numbers and timestamps (RFC 3550 translator style),
/// transcoded per packet when the legs' codecs differ (PCMU ↔ PCMA maps sample by sample, so
/// nothing is buffered). The bridge adds no delay and no second jitter buffer or concealment:
/// the receiving phone's own jitter buffer and concealment see the network as it is, which
/// measured better than de-jittering and re-encoding here (see BENCHMARKS.md, "Voice quality").
///
/// Each leg's session still takes in every packet and runs its receive side on the tick, so
/// DTMF events, RTCP and the media timeout keep working, and the tap gets caller/agent audio
/// for a stereo recording (`received` = caller, `sent` = agent). Ends when `stop` changes or
/// closes; the sessions come back ready to send on their own after the forwarded packets.
#[allow(clippy::too_many_arguments)]
pub async fn run_bridge(
    mut caller: MediaSession,
    caller_sockets: RtpSockets,
    mut agent: MediaSession,
    agent_sockets: RtpSockets,
    mut ticks: watch::Receiver<u64>,
    mut stop: watch::Receiver<bool>,
    events: mpsc::Sender<(BridgeLeg, MediaEvent)>,
    audio_tap: Option<mpsc::Sender<TickAudio>>,
) -> (SessionEnd, SessionEnd) {
    let mut to_agent = relay_into(&caller, &agent);
    let mut to_caller = relay_into(&agent, &caller);
    let mut caller_buffer = [0u8; 2048];
    let mut agent_buffer = [0u8; 2048];
    let mut forwarded = [0u8; 2048];
    let mut last_tick = *ticks.borrow_and_update();
    let mut caller_rtcp_buffer = [0u8; 2048];
    let mut agent_rtcp_buffer = [0u8; 2048];
    loop {
        tokio::select! {
            received = caller_sockets.rtp.recv_from(&mut caller_buffer) => {
                if let Ok((len, source)) = received {
                    let packet = &caller_buffer[..len];
                    if caller.handle_rtp(Instant::now(), source, packet).is_ok() {
                        forward(packet, &mut to_agent, &mut agent, &agent_sockets.rtp, &mut forwarded).await;
                    }
                }
            }
            received = agent_sockets.rtp.recv_from(&mut agent_buffer) => {
                if let Ok((len, source)) = received {
                    let packet = &agent_buffer[..len];
                    if agent.handle_rtp(Instant::now(), source, packet).is_ok() {
                        forward(packet, &mut to_caller, &mut caller, &caller_sockets.rtp, &mut forwarded).await;
                    }
                }
            }
            received = caller_sockets.rtcp.recv_from(&mut caller_rtcp_buffer) => {
                if let Ok((len, source)) = received {
                    let _ = caller.handle_rtcp(Instant::now(), source, &caller_rtcp_buffer[..len]);
                }
            }
            received = agent_sockets.rtcp.recv_from(&mut agent_rtcp_buffer) => {
                if let Ok((len, source)) = received {
                    let _ = agent.handle_rtcp(Instant::now(), source, &agent_rtcp_buffer[..len]);
                }
            }
            changed = ticks.changed() => {
                if changed.is_err() {
                    break;
                }
                let due = ticks_due(&mut ticks, &mut last_tick);
                let now = Instant::now();
                for _ in 0..due {
                    caller.tick_receive(now);
                    agent.tick_receive(now);
                    if let Some(tap) = &audio_tap {
                        let _ = tap.try_send(TickAudio { received: *caller.received_frame(), sent: *agent.received_frame() });
                    }
                }
                if let Some(transmit) = caller.poll_rtcp(now) {
                    let _ = caller_sockets.rtcp.send_to(transmit.payload, transmit.destination).await;
                }
                if let Some(transmit) = agent.poll_rtcp(now) {
                    let _ = agent_sockets.rtcp.send_to(transmit.payload, transmit.destination).await;
                }
                while let Some(event) = caller.poll_event() {
                    let _ = events.try_send((BridgeLeg::Caller, event));
                }
                while let Some(event) = agent.poll_event() {
                    let _ = events.try_send((BridgeLeg::Agent, event));
                }
            }
            _ = stop.changed() => break,
        }
    }
    let caller_quality = caller.quality();
    let agent_quality = agent.quality();
    (
        SessionEnd {
            session: caller,
            sockets: caller_sockets,
            quality: caller_quality,
        },
        SessionEnd {
            session: agent,
            sockets: agent_sockets,
            quality: agent_quality,
        },
    )
}

/// The relay for packets from `from`'s far end to `into`'s far end, continuing `into`'s
/// outgoing stream (its SSRC, next sequence number and timestamp).
fn relay_into(from: &MediaSession, into: &MediaSession) -> RtpRelay {
    let (sequence, timestamp) = into.next_outgoing();
    RtpRelay::new(
        from.leg_format(),
        into.leg_format(),
        into.local_ssrc(),
        sequence,
        timestamp,
    )
}

/// Sends one packet on to `into`'s far end (when it is sending) and accounts it there.
async fn forward(
    packet: &[u8],
    relay: &mut RtpRelay,
    into: &mut MediaSession,
    socket: &UdpSocket,
    out: &mut [u8],
) {
    let Some(destination) = into.send_destination() else {
        return;
    };
    match relay.forward(packet, out) {
        Ok(len) => {
            into.note_forwarded(&out[..len]);
            if let Err(error) = socket.send_to(&out[..len], destination).await {
                debug!(%error, "forwarded RTP send failed");
            }
        }
        // Comfort noise and other payload types the legs did not agree on stay behind.
        Err(error) => debug!(%error, "RTP packet not forwarded"),
    }
}

/// Relays RTP between two legs until either socket fails or `stop` fires: packets from leg A's
/// far end go out of leg B's socket to leg B's far end and back. Far ends are learned from
/// where their packets come from (symmetric RTP), starting from the SDP addresses.
pub async fn run_relay(
    leg_a: &UdpSocket,
    mut far_a: SocketAddr,
    leg_b: &UdpSocket,
    mut far_b: SocketAddr,
    mut a_to_b: RtpRelay,
    mut b_to_a: RtpRelay,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<u64> {
    let mut in_a = [0u8; 2048];
    let mut in_b = [0u8; 2048];
    let mut out = [0u8; 2048];
    let mut relayed = 0u64;
    loop {
        tokio::select! {
            received = leg_a.recv_from(&mut in_a) => {
                let (len, source) = received?;
                far_a = source;
                if let Ok(n) = a_to_b.forward(&in_a[..len], &mut out) {
                    leg_b.send_to(&out[..n], far_b).await?;
                    relayed += 1;
                }
            }
            received = leg_b.recv_from(&mut in_b) => {
                let (len, source) = received?;
                far_b = source;
                if let Ok(n) = b_to_a.forward(&in_b[..len], &mut out) {
                    leg_a.send_to(&out[..n], far_a).await?;
                    relayed += 1;
                }
            }
            _ = stop.changed() => return Ok(relayed),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::Duration;

    use super::*;
    use crate::codec::Codec;
    use crate::g711;
    use crate::jitter::JitterConfig;
    use crate::sdp::Direction;
    use crate::session::SessionConfig;

    const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn leg(codec: Codec, ssrc: u32, far_end: SocketAddr, sequence: u16) -> MediaSession {
        MediaSession::new(
            SessionConfig {
                local_ssrc: ssrc,
                codec,
                payload_type: codec.static_payload_type(),
                telephone_event_payload_type: Some(101),
                remote_rtp: Some(far_end),
                remote_rtcp: None,
                direction: Direction::SendRecv,
                symmetric_rtp: true,
                inband_dtmf: false,
                jitter: JitterConfig::default(),
                initial_sequence: sequence,
                initial_timestamp: 8000,
                rtcp_interval: Duration::from_secs(60),
                media_timeout: Duration::from_secs(60),
            },
            Instant::now(),
        )
    }

    fn rtp(sequence: u16, timestamp: u32, payload_type: u8, payload: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0x80, payload_type];
        bytes.extend_from_slice(&sequence.to_be_bytes());
        bytes.extend_from_slice(&timestamp.to_be_bytes());
        bytes.extend_from_slice(&0xCA11_E500u32.to_be_bytes());
        bytes.extend_from_slice(payload);
        bytes
    }

    /// The pacer never ticks here: whatever reaches the agent's phone was forwarded as it
    /// came, not on a tick. It carries the agent leg's SSRC and numbering (continuing what the
    /// leg's session would send), transcoded PCMU → PCMA, in arrival order (reordering is the
    /// phone's jitter buffer's job); afterwards the leg's own stream continues after it.
    #[tokio::test]
    async fn the_bridge_forwards_each_packet_at_once_under_the_legs_own_stream() {
        let ports = PortAllocator::new(44600..=44699).unwrap_or_else(|e| panic!("{e}"));
        let caller_sockets = RtpSockets::bind(LOCALHOST, &ports)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let agent_sockets = RtpSockets::bind(LOCALHOST, &ports)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let caller_phone = UdpSocket::bind((LOCALHOST, 0))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let agent_phone = UdpSocket::bind((LOCALHOST, 0))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let caller_leg_address = SocketAddr::new(LOCALHOST, caller_sockets.rtp_port());
        let caller = leg(
            Codec::Pcmu,
            0xC,
            caller_phone.local_addr().unwrap_or_else(|e| panic!("{e}")),
            100,
        );
        let agent = leg(
            Codec::Pcma,
            0xA,
            agent_phone.local_addr().unwrap_or_else(|e| panic!("{e}")),
            500,
        );
        let (_ticks_tx, ticks) = watch::channel(0u64);
        let (stop_tx, stop) = watch::channel(false);
        let (events, _events_rx) = mpsc::channel(16);
        let bridge = tokio::spawn(run_bridge(
            caller,
            caller_sockets,
            agent,
            agent_sockets,
            ticks,
            stop,
            events,
            None,
        ));

        let speech: Vec<i16> = (0..160).map(|n| ((n * 997) % 8000) as i16 - 4000).collect();
        let mut ulaw = [0u8; 160];
        g711::ulaw_encode_slice(&speech, &mut ulaw);
        // Sent out of order: 2, 1, 3.
        for (sequence, timestamp) in [(2u16, 320u32), (1, 160), (3, 480)] {
            caller_phone
                .send_to(&rtp(sequence, timestamp, 0, &ulaw), caller_leg_address)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let mut received = Vec::new();
        let mut buffer = [0u8; 2048];
        for _ in 0..3 {
            let (len, _) =
                tokio::time::timeout(Duration::from_secs(5), agent_phone.recv_from(&mut buffer))
                    .await
                    .unwrap_or_else(|_| panic!("nothing forwarded"))
                    .unwrap_or_else(|e| panic!("{e}"));
            received.push(buffer[..len].to_vec());
        }
        let fields = |p: &[u8]| {
            (
                p[1] & 0x7F,
                u16::from_be_bytes([p[2], p[3]]),
                u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
                u32::from_be_bytes([p[8], p[9], p[10], p[11]]),
            )
        };
        // The agent leg's session would have sent sequence 500, timestamp 8000 next.
        assert_eq!(fields(&received[0]), (8, 500, 8000, 0xA));
        assert_eq!(fields(&received[1]), (8, 499, 7840, 0xA));
        assert_eq!(fields(&received[2]), (8, 501, 8160, 0xA));
        let mut alaw = [0u8; 160];
        let mut through_ulaw = [0i16; 160];
        g711::ulaw_decode_slice(&ulaw, &mut through_ulaw);
        g711::alaw_encode_slice(&through_ulaw, &mut alaw);
        assert_eq!(&received[0][12..], &alaw[..], "transcoded PCMU → PCMA");

        let _ = stop_tx.send(true);
        let (_, agent_end) = bridge.await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            agent_end.session.next_outgoing(),
            (502, 8320),
            "the leg's own stream continues after the forwarded packets"
        );
    }
}
