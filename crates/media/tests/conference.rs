//! A three-way call through the mixer, in virtual time: three phones each talk to their own
//! santral leg; every tick the legs' received audio goes into the mixer and each leg sends what
//! the mixer gives it. Each phone hears the two others and not itself; a supervisor in listen
//! mode hears everyone and is heard by no one, and in whisper mode only the agent hears them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use santral_media::codec::{Codec, FRAME_SAMPLES};
use santral_media::jitter::JitterConfig;
use santral_media::mixer::{Audience, Mixer};
use santral_media::prompt::{EncodedPrompt, PcmAudio, Playlist};
use santral_media::sdp::Direction;
use santral_media::session::{MediaSession, SessionConfig};

fn config(ssrc: u32, remote: SocketAddr) -> SessionConfig {
    SessionConfig {
        local_ssrc: ssrc,
        codec: Codec::Pcma,
        payload_type: 8,
        telephone_event_payload_type: Some(101),
        remote_rtp: Some(remote),
        remote_rtcp: None,
        direction: Direction::SendRecv,
        symmetric_rtp: false,
        inband_dtmf: false,
        jitter: JitterConfig::default(),
        initial_sequence: 0,
        initial_timestamp: 0,
        rtcp_interval: Duration::from_secs(3600),
        media_timeout: Duration::from_secs(3600),
    }
}

fn voice(frequency: f64) -> Arc<EncodedPrompt> {
    let samples = (0..400 * FRAME_SAMPLES)
        .map(|n| {
            (3000.0 * (2.0 * std::f64::consts::PI * frequency * n as f64 / 8000.0).sin()) as i16
        })
        .collect();
    Arc::new(EncodedPrompt::encode(
        "voice",
        Codec::Pcma,
        &PcmAudio {
            sample_rate: 8000,
            samples,
        },
        None,
    ))
}

fn level_at(samples: &[i16], frequency: f64) -> f64 {
    let (mut re, mut im) = (0.0, 0.0);
    for (n, &s) in samples.iter().enumerate() {
        let w = 2.0 * std::f64::consts::PI * frequency * n as f64 / 8000.0;
        re += s as f64 * w.cos();
        im += s as f64 * w.sin();
    }
    2.0 * (re * re + im * im).sqrt() / samples.len() as f64
}

struct Party {
    phone: MediaSession,
    leg: MediaSession,
    phone_addr: SocketAddr,
    leg_addr: SocketAddr,
    heard: Vec<i16>,
}

fn party(index: u16, frequency: Option<f64>, now: Instant) -> Party {
    let phone_addr: SocketAddr = ([127, 0, 0, 1], 5000 + 2 * index).into();
    let leg_addr: SocketAddr = ([127, 0, 0, 1], 6000 + 2 * index).into();
    let mut phone = MediaSession::new(config(100 + index as u32, leg_addr), now);
    if let Some(frequency) = frequency {
        phone.play(Playlist::new(vec![voice(frequency)]), false);
    } else {
        phone.mute();
    }
    let mut leg = MediaSession::new(config(200 + index as u32, phone_addr), now);
    leg.go_live();
    Party {
        phone,
        leg,
        phone_addr,
        leg_addr,
        heard: Vec::new(),
    }
}

fn run(parties: &mut [Party], mixer: &mut Mixer, now: &mut Instant, ticks: usize) {
    for party in parties.iter_mut() {
        party.heard.clear();
    }
    for _ in 0..ticks {
        *now += Duration::from_millis(20);
        for (id, party) in parties.iter_mut().enumerate() {
            if let Some(t) = party.phone.tick(*now) {
                let bytes = t.payload.to_vec();
                let _ = party.leg.handle_rtp(*now, party.phone_addr, &bytes);
            }
            if let Some(t) = party.leg.tick(*now) {
                let bytes = t.payload.to_vec();
                let _ = party.phone.handle_rtp(*now, party.leg_addr, &bytes);
            }
            mixer.set_input(id as u32, party.leg.received_frame());
            let heard = *party.phone.received_frame();
            party.heard.extend_from_slice(&heard);
        }
        mixer.mix();
        for (id, party) in parties.iter_mut().enumerate() {
            if let Some(frame) = mixer.output(id as u32) {
                party.leg.set_live_frame(frame);
            }
        }
    }
}

#[test]
fn three_way_call_and_supervisor_modes() {
    let mut now = Instant::now();
    let (caller, agent, supervisor) = (0u32, 1u32, 2u32);
    let tones = [500.0, 1100.0, 1700.0];
    let mut parties: Vec<Party> = (0..3)
        .map(|i| party(i as u16, Some(tones[i]), now))
        .collect();
    let mut mixer = Mixer::new();
    for id in [caller, agent, supervisor] {
        mixer.join(id, Audience::Everyone);
    }

    // Three-way (supervisor barged in): everyone hears the two others, nobody hears themself.
    run(&mut parties, &mut mixer, &mut now, 60);
    for (me, party) in parties.iter().enumerate() {
        let tail = &party.heard[20 * FRAME_SAMPLES..];
        for (other, frequency) in tones.iter().enumerate() {
            let level = level_at(tail, *frequency);
            if other == me {
                assert!(level < 60.0, "party {me} hears itself at {level:.0}");
            } else {
                assert!(level > 2500.0, "party {me} hears {other} at {level:.0}");
            }
        }
    }

    // Listen: the supervisor hears both, neither hears the supervisor.
    mixer.set_audience(supervisor, Audience::Nobody);
    run(&mut parties, &mut mixer, &mut now, 60);
    let tail = |p: &Party| p.heard[20 * FRAME_SAMPLES..].to_vec();
    assert!(level_at(&tail(&parties[0]), tones[2]) < 60.0);
    assert!(level_at(&tail(&parties[1]), tones[2]) < 60.0);
    assert!(
        level_at(&tail(&parties[2]), tones[0]) > 2500.0
            && level_at(&tail(&parties[2]), tones[1]) > 2500.0
    );

    // Whisper: only the agent hears the supervisor.
    mixer.set_audience(supervisor, Audience::Only(agent));
    run(&mut parties, &mut mixer, &mut now, 60);
    assert!(
        level_at(&tail(&parties[0]), tones[2]) < 60.0,
        "caller must not hear the whisper"
    );
    assert!(
        level_at(&tail(&parties[1]), tones[2]) > 2500.0,
        "agent hears the whisper"
    );
    assert!(
        level_at(&tail(&parties[1]), tones[0]) > 2500.0,
        "agent still hears the caller"
    );
}
