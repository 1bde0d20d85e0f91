//! Two RTP sessions on 127.0.0.1 over real UDP sockets, paced by the media engine's thread: each plays
//! a speech-like prompt to the other through the jitter buffer, and the audio each side decodes
//! matches the source with SNR > 30 dB (G.711 µ-law and A-law, both directions at once).

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use santral_media::codec::{Codec, FRAME_SAMPLES};
use santral_media::driver::{MediaCommand, RtpSockets};
use santral_media::engine::MediaEngine;
use santral_media::jitter::JitterConfig;
use santral_media::port::PortAllocator;
use santral_media::prompt::{EncodedPrompt, Playlist, PromptCache};
use santral_media::sdp::Direction;
use santral_media::session::{MediaEvent, MediaSession, SessionConfig};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Two seconds of a speech-like signal at 16 kHz: a gliding pitch with formant-shaped
/// harmonics and syllable-rate amplitude modulation.
fn write_speech_like_prompt(path: &Path, seed_hz: f64) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec).unwrap_or_else(|e| panic!("{e}"));
    let mut phase = 0.0f64;
    for n in 0..32000 {
        let t = n as f64 / 16000.0;
        let f0 = seed_hz + 40.0 * (2.0 * std::f64::consts::PI * 0.8 * t).sin();
        phase += 2.0 * std::f64::consts::PI * f0 / 16000.0;
        let formants = [
            600.0 + 200.0 * (1.7 * t).sin(),
            1400.0 + 300.0 * (1.1 * t).cos(),
            2600.0,
        ];
        let mut x = 0.0;
        for h in 1..=20 {
            let f = f0 * h as f64;
            if f > 3400.0 {
                break;
            }
            let gain: f64 = formants
                .iter()
                .map(|fm| 1.0 / (1.0 + ((f - fm) / 150.0).powi(2)))
                .sum();
            x += gain * (phase * h as f64).sin() / (h as f64).sqrt();
        }
        let envelope = 0.3 + 0.7 * (2.0 * std::f64::consts::PI * 3.0 * t).sin().abs();
        let _ = writer.write_sample((x * 4000.0 * envelope).clamp(-32000.0, 32000.0) as i16);
    }
    writer.finalize().unwrap_or_else(|e| panic!("{e}"));
}

/// Best SNR of `heard` against `source` over whole-frame alignments.
fn best_snr_db(source: &[i16], heard: &[i16]) -> f64 {
    let mut best = f64::MIN;
    for offset_frames in 0..heard.len() / FRAME_SAMPLES {
        let offset = offset_frames * FRAME_SAMPLES;
        if offset + source.len() > heard.len() {
            break;
        }
        let (mut signal, mut noise) = (0.0f64, 0.0f64);
        for (s, h) in source.iter().zip(&heard[offset..]) {
            signal += (*s as f64).powi(2);
            noise += (*h as f64 - *s as f64).powi(2);
        }
        best = best.max(10.0 * (signal / noise.max(1.0)).log10());
    }
    best
}

fn config(codec: Codec, ssrc: u32, remote_port: u16) -> SessionConfig {
    SessionConfig {
        local_ssrc: ssrc,
        codec,
        payload_type: codec.static_payload_type(),
        telephone_event_payload_type: Some(101),
        remote_rtp: Some((LOCALHOST, remote_port).into()),
        remote_rtcp: Some((LOCALHOST, remote_port + 1).into()),
        direction: Direction::SendRecv,
        symmetric_rtp: true,
        inband_dtmf: true,
        jitter: JitterConfig::default(),
        initial_sequence: rand::random(),
        initial_timestamp: rand::random(),
        rtcp_interval: Duration::from_secs(1),
        media_timeout: Duration::from_secs(30),
    }
}

async fn play_both_ways(codec: Codec) {
    let dir = std::env::temp_dir();
    let prompt_a: PathBuf = dir.join(format!(
        "santral-loopback-a-{}-{codec:?}.wav",
        std::process::id()
    ));
    let prompt_b: PathBuf = dir.join(format!(
        "santral-loopback-b-{}-{codec:?}.wav",
        std::process::id()
    ));
    write_speech_like_prompt(&prompt_a, 140.0);
    write_speech_like_prompt(&prompt_b, 210.0);
    let cache = PromptCache::new();
    let from_a: Arc<EncodedPrompt> = cache
        .get_async(prompt_a.clone(), codec)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let from_b: Arc<EncodedPrompt> = cache
        .get_async(prompt_b.clone(), codec)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let ports = PortAllocator::new(42000..=42999).unwrap_or_else(|e| panic!("{e}"));
    let sockets_a = RtpSockets::bind(LOCALHOST, &ports)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let sockets_b = RtpSockets::bind(LOCALHOST, &ports)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (port_a, port_b) = (sockets_a.rtp_port(), sockets_b.rtp_port());
    assert_eq!(port_a % 2, 0);
    let now = std::time::Instant::now();
    let engine = MediaEngine::start(Some(1)).unwrap_or_else(|e| panic!("{e}"));
    let mut leg_a = engine.spawn_session(
        MediaSession::new(config(codec, 0xAAAA, port_b), now),
        sockets_a,
        true,
    );
    let mut leg_b = engine.spawn_session(
        MediaSession::new(config(codec, 0xBBBB, port_a), now),
        sockets_b,
        true,
    );

    for (leg, prompt) in [(&leg_a, &from_a), (&leg_b, &from_b)] {
        let play = MediaCommand::Play {
            playlist: Playlist::new(vec![Arc::clone(prompt)]),
            barge_in: false,
            started: None,
        };
        leg.commands
            .send(play)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    // Collect what each side hears while waiting for both playbacks to finish (bounded).
    let mut heard_by_a = Vec::new();
    let mut heard_by_b = Vec::new();
    let mut audio_a = leg_a
        .audio
        .take()
        .unwrap_or_else(|| panic!("audio tap requested"));
    let mut audio_b = leg_b
        .audio
        .take()
        .unwrap_or_else(|| panic!("audio tap requested"));
    let mut finished = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut drain_until = None;
    loop {
        tokio::select! {
            Some(event) = leg_a.events.recv() => if matches!(event, MediaEvent::PlaybackFinished { .. }) { finished += 1 },
            Some(event) = leg_b.events.recv() => if matches!(event, MediaEvent::PlaybackFinished { .. }) { finished += 1 },
            Some(tick) = audio_a.recv() => heard_by_a.extend_from_slice(&tick.received),
            Some(tick) = audio_b.recv() => heard_by_b.extend_from_slice(&tick.received),
            _ = tokio::time::sleep_until(deadline) => panic!("playback did not finish in time"),
        }
        // After both finish, keep listening 300 ms so the jitter buffers drain.
        if finished >= 2 && drain_until.is_none() {
            drain_until = Some(tokio::time::Instant::now() + Duration::from_millis(300));
        }
        if drain_until.is_some_and(|until| tokio::time::Instant::now() >= until) {
            break;
        }
    }
    let _ = leg_a.commands.send(MediaCommand::Shutdown).await;
    let _ = leg_b.commands.send(MediaCommand::Shutdown).await;
    let quality_a = leg_a
        .finished
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .quality;
    let quality_b = leg_b
        .finished
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .quality;

    let snr_at_b = best_snr_db(from_a.pcm(), &heard_by_b);
    let snr_at_a = best_snr_db(from_b.pcm(), &heard_by_a);
    eprintln!("{codec:?}: A→B SNR {snr_at_b:.1} dB, B→A SNR {snr_at_a:.1} dB");
    assert!(snr_at_b > 30.0, "{codec:?} A→B SNR {snr_at_b:.1} dB");
    assert!(snr_at_a > 30.0, "{codec:?} B→A SNR {snr_at_a:.1} dB");
    assert_eq!(quality_a.packets_lost, 0, "{quality_a:?}");
    assert_eq!(quality_b.packets_lost, 0, "{quality_b:?}");
    assert!(quality_b.packets_expected >= 100);
    let _ = std::fs::remove_file(prompt_a);
    let _ = std::fs::remove_file(prompt_b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pcmu_prompt_round_trips_over_udp_both_ways_above_30_db() {
    play_both_ways(Codec::Pcmu).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pcma_prompt_round_trips_over_udp_both_ways_above_30_db() {
    play_both_ways(Codec::Pcma).await;
}
