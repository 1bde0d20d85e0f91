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

use santral_media::tone::{ToneGenerator, ToneKind};

use crate::audio::{AudioPort, LevelMeter, QualityGauge, QualityReading};

/// What the call asks of its running media.
#[derive(Debug)]
pub enum CallMediaCommand {
    SendDtmf(DtmfDigit),
    Mute(bool),
    Renegotiate(NegotiatedMedia),
    Stop,
}

/// Plays the ringtone into the headset on the shared tick until told to stop; hands the audio
/// port back.
pub async fn run_ringer(
    mut audio: Box<dyn AudioPort>,
    mut ticks: watch::Receiver<u64>,
    mut stop: mpsc::Receiver<()>,
) -> Box<dyn AudioPort> {
    let mut tone = ToneGenerator::new(ToneKind::Ringback(santral_media::ToneRegion::Europe));
    let mut frame: Frame = [0; FRAME_SAMPLES];
    loop {
        tokio::select! {
            changed = ticks.changed() => {
                if changed.is_err() {
                    break;
                }
                tone.next_frame(&mut frame);
                audio.play(&frame);
            }
            _ = stop.recv() => break,
        }
    }
    audio
}

/// The call's audio side: the port, whether to beep at the start (auto-answer on a headset),
/// and the meter the UI reads.
pub struct CallAudio {
    pub port: Box<dyn AudioPort>,
    pub beep: bool,
    pub level: LevelMeter,
    pub quality: QualityGauge,
}

/// Ticks between quality readings (one second).
const QUALITY_EVERY_TICKS: u64 = 50;

/// What is handed back when the media stops.
pub struct CallMediaEnd {
    pub audio: Box<dyn AudioPort>,
    pub quality: QualitySummary,
}

/// Most frames caught up in one wake-up after the task was late.
const MAX_CATCH_UP_TICKS: u64 = 5;
/// Key press length for DTMF we send.
pub const DTMF_DURATION_MS: u32 = 120;

/// Runs one call's media until `Stop`. With `beep`, the agent hears a short 1 kHz beep as the
/// call connects (auto-answer on a headset).
pub async fn run_call_media(
    mut session: MediaSession,
    sockets: RtpSockets,
    mut ticks: watch::Receiver<u64>,
    mut commands: mpsc::Receiver<CallMediaCommand>,
    events: mpsc::Sender<MediaEvent>,
    audio: CallAudio,
) -> CallMediaEnd {
    let CallAudio {
        port: mut audio,
        beep,
        level,
        quality,
    } = audio;
    let mut ticks_seen = 0u64;
    let mut beep = beep.then(|| ToneGenerator::new(ToneKind::Beep));
    let mut beep_frame: Frame = [0; FRAME_SAMPLES];
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
                    level.set(if muted { 0.0 } else { audio.input_level() });
                    if muted {
                        microphone = [0; FRAME_SAMPLES];
                    }
                    session.set_live_frame(&microphone);
                    if let Some(transmit) = session.tick(now)
                        && let Err(error) = sockets.rtp.send_to(transmit.payload, transmit.destination).await
                    {
                        debug!(%error, "RTP send failed");
                    }
                    match &mut beep {
                        Some(tone) if !tone.is_finished() => {
                            tone.next_frame(&mut beep_frame);
                            for (out, heard) in beep_frame.iter_mut().zip(session.received_frame()) {
                                *out = out.saturating_add(*heard);
                            }
                            audio.play(&beep_frame);
                        }
                        _ => audio.play(session.received_frame()),
                    }
                }
                ticks_seen += due;
                if ticks_seen >= QUALITY_EVERY_TICKS {
                    ticks_seen = 0;
                    let summary = session.quality();
                    quality.set((summary.packets_expected > 0).then_some(QualityReading {
                        mos: summary.mos,
                        loss_percent: summary.loss_percent,
                        jitter_ms: summary.mean_jitter_ms,
                    }));
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
    level.set(0.0);
    quality.set(None);
    CallMediaEnd {
        audio,
        quality: session.quality(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A headset that remembers what it was given to play.
    struct Recorder(Arc<Mutex<Vec<i16>>>);

    impl AudioPort for Recorder {
        fn capture(&mut self, frame: &mut Frame) {
            *frame = [0; FRAME_SAMPLES];
        }
        fn play(&mut self, frame: &Frame) {
            if let Ok(mut played) = self.0.lock() {
                played.extend_from_slice(frame);
            }
        }
        fn is_headset(&self) -> bool {
            true
        }
    }

    #[tokio::test]
    async fn ringer_plays_the_ring_tone_on_each_tick_and_gives_the_port_back() {
        let played = Arc::new(Mutex::new(Vec::new()));
        let (tick_tx, ticks) = watch::channel(0u64);
        let (stop, stop_rx) = mpsc::channel(1);
        let task = tokio::spawn(run_ringer(
            Box::new(Recorder(played.clone())),
            ticks,
            stop_rx,
        ));
        for tick in 1..=10u64 {
            tick_tx.send(tick).unwrap();
            // Let the ringer see each tick (a watch keeps only the latest value).
            for _ in 0..50 {
                tokio::task::yield_now().await;
                if played.lock().unwrap().len() >= tick as usize * FRAME_SAMPLES {
                    break;
                }
            }
        }
        stop.send(()).await.unwrap();
        let port = task.await.unwrap();
        assert!(port.is_headset());
        let played = played.lock().unwrap().clone();
        assert_eq!(played.len(), 10 * FRAME_SAMPLES);
        // 425 Hz: about 2 × 425 × 0.2 s = 170 zero crossings in 200 ms.
        let crossings = played
            .windows(2)
            .filter(|w| (w[0] < 0) != (w[1] < 0))
            .count();
        assert!((150..=190).contains(&crossings), "{crossings} crossings");
        assert!(played.iter().any(|s| s.unsigned_abs() > 1000));
    }
}
