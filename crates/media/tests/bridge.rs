//! A transcoding bridge over real UDP on 127.0.0.1: a caller phone (PCMU) ↔ santral's caller
//! leg (PCMU) ⇄ bridge ⇄ santral's agent leg (PCMA) ↔ an agent phone (PCMA). The caller plays a
//! prompt, the agent hears it; the bridge tap writes a stereo recording (caller left).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use santral_media::codec::{Codec, FRAME_SAMPLES};
use santral_media::driver::{BridgeLeg, MediaCommand, RtpSockets, TickAudio, run_bridge};
use santral_media::engine::MediaEngine;
use santral_media::jitter::JitterConfig;
use santral_media::pacer::Pacer;
use santral_media::port::PortAllocator;
use santral_media::prompt::{EncodedPrompt, PcmAudio, Playlist};
use santral_media::recording::{CallRecorder, RecordingLayout};
use santral_media::sdp::Direction;
use santral_media::session::{MediaEvent, MediaSession, SessionConfig};
use santral_media::telephone_event::{DtmfDigit, DtmfEvent};
use tokio::sync::{mpsc, watch};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn config(codec: Codec, ssrc: u32, remote_port: u16) -> SessionConfig {
    SessionConfig {
        local_ssrc: ssrc,
        codec,
        payload_type: codec.static_payload_type(),
        telephone_event_payload_type: Some(101),
        remote_rtp: Some((LOCALHOST, remote_port).into()),
        remote_rtcp: None,
        direction: Direction::SendRecv,
        symmetric_rtp: true,
        inband_dtmf: false,
        jitter: JitterConfig::default(),
        initial_sequence: 1,
        initial_timestamp: 0,
        rtcp_interval: Duration::from_secs(1),
        media_timeout: Duration::from_secs(30),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transcoding_bridge_carries_audio_and_dtmf_and_records_stereo() {
    let ports = PortAllocator::new(43000..=43999).unwrap_or_else(|e| panic!("{e}"));
    let bind = || async {
        RtpSockets::bind(LOCALHOST, &ports)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let (phone_caller, leg_caller, leg_agent, phone_agent) =
        (bind().await, bind().await, bind().await, bind().await);
    let (p_caller, l_caller, l_agent, p_agent) = (
        phone_caller.rtp_port(),
        leg_caller.rtp_port(),
        leg_agent.rtp_port(),
        phone_agent.rtp_port(),
    );

    let now = std::time::Instant::now();
    let pacer = Pacer::spawn();
    let engine = MediaEngine::start(Some(1)).unwrap_or_else(|e| panic!("{e}"));
    // The two phones.
    let (caller_events, _caller_events_rx) = mpsc::channel(64);
    let (caller_commands, caller_task) = engine.attach(
        MediaSession::new(config(Codec::Pcmu, 1, l_caller), now),
        phone_caller,
        caller_events,
        None,
    );
    let (agent_events, _agent_events_rx) = mpsc::channel(64);
    let (agent_audio_tx, mut agent_audio) = mpsc::channel::<TickAudio>(1024);
    let (agent_commands, agent_task) = engine.attach(
        MediaSession::new(config(Codec::Pcma, 4, l_agent), now),
        phone_agent,
        agent_events,
        Some(agent_audio_tx),
    );
    // santral's bridge.
    let (stop_tx, stop_rx) = watch::channel(false);
    let (bridge_events_tx, mut bridge_events) = mpsc::channel(64);
    let (tap_tx, mut tap) = mpsc::channel::<TickAudio>(1024);
    let bridge = tokio::spawn(run_bridge(
        MediaSession::new(config(Codec::Pcmu, 2, p_caller), now),
        leg_caller,
        MediaSession::new(config(Codec::Pcma, 3, p_agent), now),
        leg_agent,
        pacer.subscribe(),
        stop_rx,
        bridge_events_tx,
        Some(tap_tx),
    ));

    let samples: Vec<i16> = (0..50 * FRAME_SAMPLES)
        .map(|n| {
            let t = n as f64 / 8000.0;
            (6000.0 * (2.0 * std::f64::consts::PI * 300.0 * t).sin()
                + 3000.0 * (2.0 * std::f64::consts::PI * 1200.0 * t).sin()) as i16
        })
        .collect();
    let prompt = Arc::new(EncodedPrompt::encode(
        "caller-voice",
        Codec::Pcmu,
        &PcmAudio {
            sample_rate: 8000,
            samples,
        },
        None,
    ));
    caller_commands
        .send(MediaCommand::Play {
            playlist: Playlist::new(vec![Arc::clone(&prompt)]),
            barge_in: false,
            started: None,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let seven = DtmfDigit::from_char('7').unwrap_or_else(|| unreachable!());
    agent_commands
        .send(MediaCommand::SendDtmf {
            digit: seven,
            duration_ms: 100,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    tokio::time::sleep(Duration::from_millis(500)).await;

    let _ = stop_tx.send(true);
    let (caller_leg, agent_leg) = bridge.await.unwrap_or_else(|e| panic!("{e}"));
    let _ = caller_commands.send(MediaCommand::Shutdown).await;
    let _ = agent_commands.send(MediaCommand::Shutdown).await;
    let _ = caller_task.await;
    let _ = agent_task.await;
    eprintln!(
        "caller leg {:?}\nagent leg {:?}\njitter {:?}",
        caller_leg.quality,
        agent_leg.quality,
        caller_leg.session.jitter_stats()
    );
    assert_eq!(caller_leg.quality.packets_lost, 0);
    assert_eq!(agent_leg.quality.packets_lost, 0);

    // The agent key press reached the bridge's agent leg as one digit.
    let mut digits = Vec::new();
    while let Ok((leg, event)) = bridge_events.try_recv() {
        if let (BridgeLeg::Agent, MediaEvent::Dtmf(DtmfEvent::Pressed { digit, .. })) = (leg, event)
        {
            digits.push(digit);
        }
    }
    assert_eq!(digits, [seven]);

    // The agent phone heard the caller's prompt after µ-law → linear → A-law.
    let mut heard = Vec::new();
    while let Ok(tick) = agent_audio.try_recv() {
        heard.extend_from_slice(&tick.received);
    }
    let source = prompt.pcm();
    let mut best = f64::MIN;
    for offset in (0..heard.len().saturating_sub(source.len())).step_by(FRAME_SAMPLES) {
        let (mut signal, mut noise) = (0.0f64, 0.0f64);
        for (s, h) in source.iter().zip(&heard[offset..]) {
            signal += (*s as f64).powi(2);
            noise += (*h as f64 - *s as f64).powi(2);
        }
        best = best.max(10.0 * (signal / noise.max(1.0)).log10());
    }
    assert!(best > 28.0, "agent heard the caller at SNR {best:.1} dB");

    // Stereo recording from the bridge tap: caller on the left, agent silent on the right.
    let path = std::env::temp_dir().join(format!("santral-bridge-{}.wav", std::process::id()));
    let mut recorder =
        CallRecorder::create(&path, RecordingLayout::Stereo).unwrap_or_else(|e| panic!("{e}"));
    while let Ok(tick) = tap.try_recv() {
        recorder
            .write(&tick.received, &tick.sent)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let path = recorder.finish().unwrap_or_else(|e| panic!("{e}"));
    let reader = hound::WavReader::open(&path).unwrap_or_else(|e| panic!("{e}"));
    let interleaved: Vec<i16> = reader
        .into_samples::<i16>()
        .map(|s| s.unwrap_or(0))
        .collect();
    let left: f64 = interleaved
        .iter()
        .step_by(2)
        .map(|s| (*s as f64).powi(2))
        .sum();
    let right: f64 = interleaved
        .iter()
        .skip(1)
        .step_by(2)
        .map(|s| (*s as f64).powi(2))
        .sum();
    assert!(
        left > 1000.0 * right.max(1.0),
        "left {left:e} right {right:e}"
    );
    let _ = std::fs::remove_file(path);
}
