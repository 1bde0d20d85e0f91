//! One call's media: a [`MediaSession`] driven on the shared 20 ms pacer tick, fed from the
//! phone's microphone and playing into its speaker. The audio port moves into this task for the
//! call and comes back when the call ends, so the per-tick path takes no lock.

use std::time::Instant;

use santral_media::driver::RtpSockets;
use santral_media::{
    DtmfDigit, FRAME_SAMPLES, Frame, MediaEvent, MediaSession, NegotiatedMedia, QualitySummary,
};
use tokio::sync::{mpsc, watch};
use tracing::debug;

use crate::audio::AudioPort;

/// What the call asks of its running media.
#[derive(Debug)]
pub enum CallMediaCommand {
    SendDtmf(DtmfDigit),
    Mute(bool),
    Renegotiate(NegotiatedMedia),
    Stop,
}

/// What is handed back when the media stops.
pub struct CallMediaEnd {
    pub audio: Box<dyn AudioPort>,
    pub quality: QualitySummary,
}

/// Most frames caught up in one wake-up after the task was late.
const MAX_CATCH_UP_TICKS: u64 = 5;
/// Key press length for DTMF we send.
pub const DTMF_DURATION_MS: u32 = 120;

pub async fn run_call_media(
    mut session: MediaSession,
    sockets: RtpSockets,
    mut ticks: watch::Receiver<u64>,
    mut commands: mpsc::Receiver<CallMediaCommand>,
    events: mpsc::Sender<MediaEvent>,
    mut audio: Box<dyn AudioPort>,
) -> CallMediaEnd {
    let mut rtp_buffer = [0u8; 2048];
    let mut rtcp_buffer = [0u8; 2048];
    let mut microphone: Frame = [0; FRAME_SAMPLES];
    let mut muted = false;
    let mut last_tick = *ticks.borrow_and_update();
    session.go_live();
    loop {
        tokio::select! {
            received = sockets.rtp.recv_from(&mut rtp_buffer) => {
                if let Ok((len, source)) = received
                    && let Err(error) = session.handle_rtp(Instant::now(), source, &rtp_buffer[..len])
                {
                    debug!(%source, %error, "RTP packet dropped");
                }
            }
            received = sockets.rtcp.recv_from(&mut rtcp_buffer) => {
                if let Ok((len, source)) = received
                    && let Err(error) = session.handle_rtcp(Instant::now(), source, &rtcp_buffer[..len])
                {
                    debug!(%source, %error, "RTCP packet dropped");
                }
            }
            changed = ticks.changed() => {
                if changed.is_err() {
                    break;
                }
                let tick = *ticks.borrow_and_update();
                let due = tick.saturating_sub(last_tick).clamp(1, MAX_CATCH_UP_TICKS);
                last_tick = tick;
                let now = Instant::now();
                for _ in 0..due {
                    audio.capture(&mut microphone);
                    if muted {
                        microphone = [0; FRAME_SAMPLES];
                    }
                    session.set_live_frame(&microphone);
                    if let Some(transmit) = session.tick(now)
                        && let Err(error) = sockets.rtp.send_to(transmit.payload, transmit.destination).await
                    {
                        debug!(%error, "RTP send failed");
                    }
                    audio.play(session.received_frame());
                }
                if let Some(transmit) = session.poll_rtcp(now) {
                    let _ = sockets.rtcp.send_to(transmit.payload, transmit.destination).await;
                }
                while let Some(event) = session.poll_event() {
                    let _ = events.try_send(event);
                }
            }
            command = commands.recv() => match command {
                None | Some(CallMediaCommand::Stop) => break,
                Some(CallMediaCommand::SendDtmf(digit)) => {
                    session.send_dtmf(digit, DTMF_DURATION_MS);
                }
                Some(CallMediaCommand::Mute(on)) => muted = on,
                Some(CallMediaCommand::Renegotiate(media)) => session.renegotiate(&media),
            }
        }
    }
    if let Some(transmit) = session.goodbye() {
        let _ = sockets
            .rtcp
            .send_to(transmit.payload, transmit.destination)
            .await;
    }
    audio.call_ended();
    CallMediaEnd {
        audio,
        quality: session.quality(),
    }
}
