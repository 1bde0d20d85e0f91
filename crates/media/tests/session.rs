//! MediaSession behaviour in virtual time, two sessions wired back to back in memory.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use santral_media::codec::{Codec, FRAME_SAMPLES};
use santral_media::jitter::JitterConfig;
use santral_media::prompt::{EncodedPrompt, PcmAudio, Playlist};
use santral_media::sdp::Direction;
use santral_media::session::{MediaEvent, MediaSession, SessionConfig, StopReason};
use santral_media::telephone_event::{DtmfDigit, DtmfEvent, DtmfSource};
use santral_media::tone::{ToneKind, ToneRegion};

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn config(ssrc: u32, remote: &str, telephone_event: Option<u8>) -> SessionConfig {
    SessionConfig {
        local_ssrc: ssrc,
        codec: Codec::Pcmu,
        payload_type: 0,
        telephone_event_payload_type: telephone_event,
        remote_rtp: Some(addr(remote)),
        remote_rtcp: None,
        direction: Direction::SendRecv,
        symmetric_rtp: true,
        inband_dtmf: true,
        jitter: JitterConfig::default(),
        initial_sequence: 65500,
        initial_timestamp: 1000,
        rtcp_interval: Duration::from_secs(5),
        media_timeout: Duration::from_secs(30),
    }
}

fn tone_prompt(frequency: f64, frames: usize) -> Arc<EncodedPrompt> {
    let samples = (0..frames * FRAME_SAMPLES)
        .map(|n| {
            (8000.0 * (2.0 * std::f64::consts::PI * frequency * n as f64 / 8000.0).sin()) as i16
        })
        .collect();
    Arc::new(EncodedPrompt::encode(
        "tone",
        Codec::Pcmu,
        &PcmAudio {
            sample_rate: 8000,
            samples,
        },
        None,
    ))
}

struct Pair {
    a: MediaSession,
    b: MediaSession,
    now: Instant,
    a_addr: SocketAddr,
    b_addr: SocketAddr,
}

impl Pair {
    fn new(telephone_event: Option<u8>) -> Pair {
        let now = Instant::now();
        Pair {
            a: MediaSession::new(config(0xA, "127.0.0.1:4002", telephone_event), now),
            b: MediaSession::new(config(0xB, "127.0.0.1:4000", telephone_event), now),
            now,
            a_addr: addr("127.0.0.1:4000"),
            b_addr: addr("127.0.0.1:4002"),
        }
    }

    /// One 20 ms period: both sessions tick, packets cross instantly.
    fn step(&mut self) -> (Vec<i16>, Vec<i16>) {
        self.now += Duration::from_millis(20);
        let now = self.now;
        let from_a = self.a.tick(now).map(|t| t.payload.to_vec());
        let from_b = self.b.tick(now).map(|t| t.payload.to_vec());
        if let Some(packet) = from_a {
            let _ = self.b.handle_rtp(now, self.a_addr, &packet);
        }
        if let Some(packet) = from_b {
            let _ = self.a.handle_rtp(now, self.b_addr, &packet);
        }
        (
            self.a.received_frame().to_vec(),
            self.b.received_frame().to_vec(),
        )
    }

    fn events(session: &mut MediaSession) -> Vec<MediaEvent> {
        std::iter::from_fn(|| session.poll_event()).collect()
    }
}

#[test]
fn playlist_plays_in_order_and_reports_finish() {
    let mut pair = Pair::new(Some(101));
    let first = tone_prompt(500.0, 10);
    let second = tone_prompt(1000.0, 5);
    let id = pair
        .a
        .play(Playlist::new(vec![first.clone(), second.clone()]), false);
    let mut heard = Vec::new();
    for _ in 0..25 {
        let (_, b_heard) = pair.step();
        heard.extend(b_heard);
    }
    let events = Pair::events(&mut pair.a);
    assert!(
        events.contains(&MediaEvent::PlaybackFinished { id }),
        "{events:?}"
    );
    // B hears the two prompts back to back, bit-exact after G.711 (PCM came from the cache).
    let expected: Vec<i16> = first
        .pcm()
        .iter()
        .chain(second.pcm())
        .map(|&s| santral_media::g711::ulaw_decode(santral_media::g711::ulaw_encode(s)))
        .collect();
    let start = heard
        .windows(expected.len().min(320))
        .position(|w| w == &expected[..w.len()]);
    assert!(start.is_some(), "prompt audio not found in what B heard");
}

#[test]
fn rfc4733_digit_from_a_is_one_press_at_b_and_barges_in() {
    let mut pair = Pair::new(Some(101));
    let id = pair
        .b
        .play(Playlist::new(vec![tone_prompt(400.0, 100)]), true);
    for _ in 0..5 {
        pair.step();
    }
    let five = DtmfDigit::from_char('5').unwrap_or_else(|| unreachable!());
    assert!(pair.a.send_dtmf(five, 100));
    for _ in 0..15 {
        pair.step();
    }
    let events = Pair::events(&mut pair.b);
    let presses: Vec<_> = events
        .iter()
        .filter(|e| matches!(e, MediaEvent::Dtmf(DtmfEvent::Pressed { .. })))
        .collect();
    assert_eq!(
        presses,
        [&MediaEvent::Dtmf(DtmfEvent::Pressed {
            digit: five,
            source: DtmfSource::Rfc4733
        })]
    );
    assert!(
        events.contains(&MediaEvent::PlaybackStopped {
            id,
            reason: StopReason::BargeIn(five)
        }),
        "{events:?}"
    );
    assert!(events.contains(&MediaEvent::Dtmf(DtmfEvent::Released {
        digit: five,
        source: DtmfSource::Rfc4733,
        duration_ms: 100
    })));
    assert!(Pair::events(&mut pair.a).contains(&MediaEvent::DtmfSent { digit: five }));
}

#[test]
fn without_telephone_event_digits_go_in_band_and_are_detected() {
    let mut pair = Pair::new(None);
    for key in ['1', '9', '#'] {
        pair.a.send_dtmf(
            DtmfDigit::from_char(key).unwrap_or_else(|| unreachable!()),
            80,
        );
    }
    for _ in 0..40 {
        pair.step();
    }
    let pressed: String = Pair::events(&mut pair.b)
        .into_iter()
        .filter_map(|e| match e {
            MediaEvent::Dtmf(DtmfEvent::Pressed {
                digit,
                source: DtmfSource::InBand,
            }) => Some(digit.as_char()),
            _ => None,
        })
        .collect();
    assert_eq!(pressed, "19#");
}

#[test]
fn symmetric_rtp_follows_the_real_source_and_new_ssrc_is_accepted() {
    let mut pair = Pair::new(Some(101));
    pair.a_addr = addr("127.0.0.77:5555"); // A is "behind NAT"
    for _ in 0..3 {
        pair.step();
    }
    assert_eq!(pair.b.remote_rtp(), Some(addr("127.0.0.77:5555")));
    let events = Pair::events(&mut pair.b);
    assert!(events.contains(&MediaEvent::RemoteAddressChanged(addr("127.0.0.77:5555"))));

    // A gateway switches streams: same address, new SSRC, new sequence space.
    let now = pair.now + Duration::from_millis(20);
    let mut packet = vec![0x80, 0, 0x12, 0x34, 0, 0, 0x10, 0, 0xCA, 0xFE, 0xBA, 0xBE];
    packet.extend_from_slice(&[0xFF; 160]);
    assert_eq!(pair.b.handle_rtp(now, pair.a_addr, &packet), Ok(()));
    assert_eq!(pair.b.remote_ssrc(), Some(0xCAFEBABE));
    assert!(
        Pair::events(&mut pair.b).contains(&MediaEvent::RemoteSsrcChanged {
            old: 0xA,
            new: 0xCAFEBABE
        })
    );
}

#[test]
fn hold_stops_sending_but_keeps_receiving() {
    let mut pair = Pair::new(Some(101));
    let mut media = santral_media::sdp::NegotiatedMedia {
        codec: Codec::Pcmu,
        payload_type: 0,
        telephone_event_payload_type: Some(101),
        remote_rtp: addr("127.0.0.1:4002"),
        remote_rtcp: addr("127.0.0.1:4003"),
        ptime_ms: 20,
        remote_ptime_ms: None,
        remote_maxptime_ms: None,
        direction: Direction::RecvOnly,
    };
    pair.a.renegotiate(&media);
    pair.now += Duration::from_millis(20);
    assert!(pair.a.tick(pair.now).is_none(), "recvonly: nothing sent");
    assert!(pair.b.tick(pair.now).is_some());
    media.direction = Direction::SendRecv;
    pair.a.renegotiate(&media);
    pair.now += Duration::from_millis(20);
    assert!(pair.a.tick(pair.now).is_some());
}

#[test]
fn tones_and_music_on_hold() {
    let mut pair = Pair::new(Some(101));
    pair.a.play_tone(ToneKind::Beep);
    for _ in 0..12 {
        pair.step();
    }
    assert!(Pair::events(&mut pair.a).contains(&MediaEvent::ToneFinished));
    pair.a.play_tone(ToneKind::Ringback(ToneRegion::Europe));
    let music = tone_prompt(300.0, 3);
    pair.a.play_music(music);
    // Music loops: after 10 frames of a 3-frame file B still hears it.
    let mut loud_frames = 0;
    for _ in 0..12 {
        let (_, heard) = pair.step();
        if heard.iter().map(|s| (*s as i64).abs()).max().unwrap_or(0) > 4000 {
            loud_frames += 1;
        }
    }
    assert!(loud_frames >= 9, "{loud_frames}");
}

#[test]
fn rtcp_reports_give_round_trip_and_quality() {
    let mut pair = Pair::new(Some(101));
    // RTCP takes 40 ms each way: reports are queued and delivered when due.
    let mut in_flight: Vec<(Instant, bool, Vec<u8>)> = Vec::new();
    for _ in 0..600 {
        pair.step();
        let now = pair.now;
        if let Some(t) = pair.a.poll_rtcp(now) {
            in_flight.push((now + Duration::from_millis(40), true, t.payload.to_vec()));
        }
        if let Some(t) = pair.b.poll_rtcp(now) {
            in_flight.push((now + Duration::from_millis(40), false, t.payload.to_vec()));
        }
        for (_, to_b, bytes) in in_flight.iter().filter(|(due, _, _)| *due <= now) {
            let result = if *to_b {
                pair.b.handle_rtcp(now, addr("127.0.0.1:4001"), bytes)
            } else {
                pair.a.handle_rtcp(now, addr("127.0.0.1:4003"), bytes)
            };
            assert!(result.is_ok(), "{result:?}");
        }
        in_flight.retain(|(due, _, _)| *due > now);
    }
    let rtt = pair.a.round_trip();
    let rtt = rtt.unwrap_or_default();
    assert!(
        rtt >= Duration::from_millis(79) && rtt <= Duration::from_millis(81),
        "rtt {rtt:?}"
    );
    let quality = pair.b.quality();
    assert_eq!(quality.packets_lost, 0);
    assert!(quality.packets_expected > 550);
    assert!(quality.mos > 4.2, "{quality:?}");
}

#[test]
fn malformed_and_foreign_packets_are_errors_not_panics() {
    let mut pair = Pair::new(Some(101));
    let now = pair.now;
    assert!(pair.b.handle_rtp(now, pair.a_addr, &[]).is_err());
    assert!(
        pair.b
            .handle_rtp(now, pair.a_addr, &[0x80, 0x00, 0x00])
            .is_err()
    );
    let mut pt18 = vec![0x80, 18, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
    pt18.extend_from_slice(&[0; 20]);
    assert!(pair.b.handle_rtp(now, pair.a_addr, &pt18).is_err());
    let bad_event = [0x80, 101, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 99, 0, 0, 0];
    assert!(pair.b.handle_rtp(now, pair.a_addr, &bad_event).is_err());
    assert!(pair.b.handle_rtcp(now, pair.a_addr, &[1, 2, 3]).is_err());
    for len in 0..40 {
        let junk: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
        let _ = pair.b.handle_rtp(now, pair.a_addr, &junk);
        let _ = pair.b.handle_rtcp(now, pair.a_addr, &junk);
    }
}

#[test]
fn silence_on_the_wire_raises_one_media_timeout() {
    let now = Instant::now();
    let mut lonely = MediaSession::new(
        SessionConfig {
            media_timeout: Duration::from_secs(2),
            ..config(1, "127.0.0.1:4002", Some(101))
        },
        now,
    );
    let mut timeouts = 0;
    for k in 1..=200u64 {
        let _ = lonely.tick(now + Duration::from_millis(20 * k));
        timeouts += Pair::events(&mut lonely)
            .iter()
            .filter(|e| **e == MediaEvent::MediaTimeout)
            .count();
    }
    assert_eq!(timeouts, 1);
}

#[test]
fn g722_sessions_carry_wideband_prompts() {
    let now = Instant::now();
    let g722 = |ssrc, remote| SessionConfig {
        codec: Codec::G722,
        payload_type: 9,
        ..config(ssrc, remote, Some(101))
    };
    let mut pair = Pair {
        a: MediaSession::new(g722(0xA, "127.0.0.1:4002"), now),
        b: MediaSession::new(g722(0xB, "127.0.0.1:4000"), now),
        now,
        a_addr: addr("127.0.0.1:4000"),
        b_addr: addr("127.0.0.1:4002"),
    };
    // A 1 kHz prompt cached from a 16 kHz rendering.
    let narrow: Vec<i16> = (0..50 * FRAME_SAMPLES)
        .map(|n| (8000.0 * (2.0 * std::f64::consts::PI * 1000.0 * n as f64 / 8000.0).sin()) as i16)
        .collect();
    let wide: Vec<i16> = (0..100 * FRAME_SAMPLES)
        .map(|n| (8000.0 * (2.0 * std::f64::consts::PI * 1000.0 * n as f64 / 16000.0).sin()) as i16)
        .collect();
    let prompt = Arc::new(EncodedPrompt::encode(
        "wide",
        Codec::G722,
        &PcmAudio {
            sample_rate: 8000,
            samples: narrow,
        },
        Some(&PcmAudio {
            sample_rate: 16000,
            samples: wide,
        }),
    ));
    pair.a.play(Playlist::new(vec![prompt]), false);
    let mut heard = Vec::new();
    for _ in 0..40 {
        let (_, b_heard) = pair.step();
        heard.extend(b_heard);
    }
    // B decodes G.722 and hears the tone at about its original level (8000 peak → RMS 5657).
    let tail = &heard[heard.len() - 20 * FRAME_SAMPLES..];
    let rms = (tail.iter().map(|s| (*s as f64).powi(2)).sum::<f64>() / tail.len() as f64).sqrt();
    assert!((rms - 5657.0).abs() < 600.0, "rms {rms}");
}

#[test]
fn in_band_copies_of_rfc4733_digits_are_not_reported_twice() {
    // A gateway that sends both: telephone-event packets and the tones in the audio.
    let mut pair = Pair::new(Some(101));
    let six = DtmfDigit::from_char('6').unwrap_or_else(|| unreachable!());
    pair.a.send_dtmf(six, 100);
    for _ in 0..10 {
        pair.step();
    }
    // Now in-band only (as if the gateway's event packets had come first, then audio tones).
    let mut tones = Pair::new(None);
    tones.a.send_dtmf(six, 100);
    let mut in_band_packets = Vec::new();
    for _ in 0..12 {
        tones.now += Duration::from_millis(20);
        if let Some(t) = tones.a.tick(tones.now) {
            in_band_packets.push(t.payload.to_vec());
        }
    }
    for packet in in_band_packets {
        pair.now += Duration::from_millis(20);
        let mut rewritten = packet.clone();
        rewritten[8..12].copy_from_slice(&0xAu32.to_be_bytes());
        // Continue A's sequence numbers so B plays these packets.
        let sequence = u16::from_be_bytes([packet[2], packet[3]]).wrapping_add(15);
        rewritten[2..4].copy_from_slice(&sequence.to_be_bytes());
        let _ = pair.b.handle_rtp(pair.now, pair.a_addr, &rewritten);
        let _ = pair.b.tick(pair.now);
    }
    let presses = Pair::events(&mut pair.b)
        .into_iter()
        .filter(|e| matches!(e, MediaEvent::Dtmf(DtmfEvent::Pressed { .. })))
        .count();
    assert_eq!(presses, 1);
}

#[test]
fn goodbye_is_a_valid_compound_rtcp_bye() {
    let mut pair = Pair::new(Some(101));
    pair.step();
    let bye = pair
        .a
        .goodbye()
        .map(|t| t.payload.to_vec())
        .unwrap_or_default();
    assert_eq!(bye[1], 201, "starts with a receiver report");
    assert!(
        pair.b
            .handle_rtcp(pair.now, addr("127.0.0.1:4001"), &bye)
            .is_ok()
    );
    assert!(Pair::events(&mut pair.b).contains(&MediaEvent::RemoteGoodbye));
}

#[test]
fn marker_bit_flags_stream_start_and_new_prompts_only() {
    let mut pair = Pair::new(Some(101));
    let mut markers = Vec::new();
    for k in 0..6 {
        if k == 3 {
            pair.a
                .play(Playlist::new(vec![tone_prompt(700.0, 10)]), false);
        }
        pair.now += Duration::from_millis(20);
        let marker = pair.a.tick(pair.now).map(|t| t.payload[1] & 0x80 != 0);
        markers.push(marker.unwrap_or(false));
    }
    assert_eq!(markers, [true, false, false, true, false, false]);
}

#[test]
fn comfort_noise_packets_are_silence_not_loss() {
    let mut pair = Pair::new(Some(101));
    for _ in 0..5 {
        pair.step();
    }
    // A sends three RFC 3389 CN packets in its sequence space instead of audio.
    let mut sequence = 0;
    for _ in 0..3 {
        pair.now += Duration::from_millis(20);
        let packet = pair
            .a
            .tick(pair.now)
            .map(|t| t.payload.to_vec())
            .unwrap_or_default();
        sequence = u16::from_be_bytes([packet[2], packet[3]]);
        let mut cn = packet[..12].to_vec();
        cn[1] = 13;
        cn.push(60); // noise level −60 dBov
        assert_eq!(pair.b.handle_rtp(pair.now, pair.a_addr, &cn), Ok(()));
        let _ = pair.b.tick(pair.now);
    }
    assert!(sequence > 0);
    for _ in 0..5 {
        pair.step();
    }
    assert_eq!(pair.b.quality().packets_lost, 0);
    assert_eq!(pair.b.jitter_stats().lost, 0);
}

#[test]
fn a_prompt_cached_in_another_codec_is_encoded_on_the_fly() {
    let mut pair = Pair::new(Some(101));
    // The session speaks PCMU; this prompt was cached as PCMA.
    let samples: Vec<i16> = (0..20 * FRAME_SAMPLES)
        .map(|n| (6000.0 * (n as f64 * 0.3).sin()) as i16)
        .collect();
    let alaw = Arc::new(EncodedPrompt::encode(
        "alaw",
        Codec::Pcma,
        &PcmAudio {
            sample_rate: 8000,
            samples,
        },
        None,
    ));
    pair.a.play(Playlist::new(vec![Arc::clone(&alaw)]), false);
    let mut heard = Vec::new();
    for _ in 0..25 {
        let (_, b_heard) = pair.step();
        heard.extend(b_heard);
    }
    let expected: Vec<i16> = alaw.pcm()[..320]
        .iter()
        .map(|&s| santral_media::g711::ulaw_decode(santral_media::g711::ulaw_encode(s)))
        .collect();
    assert!(
        heard.windows(320).any(|w| w == &expected[..]),
        "PCM path re-encoded in µ-law"
    );
}

proptest::proptest! {
    /// Arbitrary datagrams on the RTP and RTCP sockets never panic a session, and valid-looking
    /// RTP headers with arbitrary payloads are handled or refused with an error.
    #[test]
    fn arbitrary_datagrams_never_panic(
        datagrams in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..300), 1..40),
        rtp_like in proptest::collection::vec((proptest::num::u8::ANY, proptest::num::u16::ANY, proptest::collection::vec(proptest::num::u8::ANY, 0..200)), 1..40),
    ) {
        let mut pair = Pair::new(Some(101));
        let from = pair.a_addr;
        for datagram in &datagrams {
            let _ = pair.b.handle_rtp(pair.now, from, datagram);
            let _ = pair.b.handle_rtcp(pair.now, from, datagram);
        }
        for (payload_type, sequence, payload) in &rtp_like {
            let mut packet = vec![0x80, payload_type & 0x7F];
            packet.extend_from_slice(&sequence.to_be_bytes());
            packet.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0x0A]);
            packet.extend_from_slice(payload);
            let _ = pair.b.handle_rtp(pair.now, from, &packet);
            pair.now += Duration::from_millis(20);
            let _ = pair.b.tick(pair.now);
        }
    }
}

#[test]
fn lossy_jittery_network_is_measured_and_concealed() {
    use rand::{Rng, SeedableRng, rngs::StdRng};
    let mut rng = StdRng::seed_from_u64(7);
    let mut pair = Pair::new(Some(101));
    pair.a.play_music(tone_prompt(200.0, 50));
    // A→B packets: 3 % dropped, the rest delayed 0–60 ms (so also reordered).
    let mut in_flight: Vec<(Instant, Vec<u8>)> = Vec::new();
    let mut dropped = 0u64;
    let mut silent_frames_while_playing = 0;
    for tick in 0..1500 {
        pair.now += Duration::from_millis(20);
        let now = pair.now;
        if let Some(t) = pair.a.tick(now) {
            if rng.random::<f64>() < 0.03 {
                dropped += 1;
            } else {
                let delay = Duration::from_millis(rng.random_range(0..60));
                in_flight.push((now + delay, t.payload.to_vec()));
            }
        }
        in_flight.sort_by_key(|(due, _)| *due);
        while in_flight.first().is_some_and(|(due, _)| *due <= now) {
            let (_, packet) = in_flight.remove(0);
            let _ = pair.b.handle_rtp(now, pair.a_addr, &packet);
        }
        let _ = pair.b.tick(now);
        if tick > 100 && pair.b.received_frame().iter().all(|&s| s.abs() < 100) {
            silent_frames_while_playing += 1;
        }
    }
    let quality = pair.b.quality();
    let measured = quality.loss_percent;
    let actual = 100.0 * dropped as f64 / 1500.0;
    assert!(
        (measured - actual).abs() < 0.5,
        "measured {measured:.2} % vs dropped {actual:.2} %"
    );
    assert!(quality.mean_jitter_ms > 5.0, "{quality:?}");
    assert!(quality.mos < 4.3 && quality.mos > 3.0, "{quality:?}");
    // Concealment keeps the tone going through single losses: almost no silent frames.
    assert!(
        silent_frames_while_playing < 10,
        "{silent_frames_while_playing} silent frames"
    );
    let stats = pair.b.jitter_stats();
    assert!(stats.grown > 0, "{stats:?}");
}
