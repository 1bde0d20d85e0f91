//! Receiving packet times other than 20 ms: 10, 30, 40 and 60 ms streams (and mixtures) made
//! here, and SIPp's 30 ms PCMA capture, go through `MediaSession::handle_rtp` + `tick` in virtual
//! time and come out as the audio that was sent.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use santral_media::codec::{AudioDecoder, AudioEncoder, Codec, FRAME_SAMPLES, MAX_FRAME_BYTES};
use santral_media::jitter::JitterConfig;
use santral_media::sdp::Direction;
use santral_media::session::{MediaEvent, MediaSession, SessionConfig};
use santral_media::telephone_event::{DtmfDigit, DtmfEvent};

const SENDER: &str = "127.0.0.1:4010";
const TELEPHONE_EVENT: u8 = 101;

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn session(codec: Codec, now: Instant) -> MediaSession {
    let config = SessionConfig {
        local_ssrc: 0xB,
        codec,
        payload_type: codec.static_payload_type(),
        telephone_event_payload_type: Some(TELEPHONE_EVENT),
        remote_rtp: Some(addr(SENDER)),
        remote_rtcp: None,
        direction: Direction::SendRecv,
        symmetric_rtp: true,
        inband_dtmf: true,
        jitter: JitterConfig::default(),
        initial_sequence: 1,
        initial_timestamp: 0,
        rtcp_interval: Duration::from_secs(5),
        media_timeout: Duration::from_secs(30),
    };
    MediaSession::new(config, now)
}

/// Speech-band test signal: three partials, about −10 dBm0 in all.
fn signal(samples: usize) -> Vec<i16> {
    (0..samples)
        .map(|n| {
            let t = n as f64 / 8000.0;
            let tau = 2.0 * std::f64::consts::PI;
            (5000.0 * (tau * 440.0 * t).sin()
                + 2500.0 * (tau * 1130.0 * t + 1.0).sin()
                + 1200.0 * (tau * 2300.0 * t + 2.0).sin()) as i16
        })
        .collect()
}

/// The codec byte stream of `pcm` (one byte per 8 kHz timestamp unit for all our codecs).
fn encode(codec: Codec, pcm: &[i16]) -> Vec<u8> {
    let mut encoder = AudioEncoder::new(codec);
    let mut bytes = Vec::new();
    for frame in pcm.chunks_exact(FRAME_SAMPLES) {
        let mut pcm_frame = [0i16; FRAME_SAMPLES];
        pcm_frame.copy_from_slice(frame);
        let mut payload = [0u8; MAX_FRAME_BYTES];
        let length = encoder.encode_frame(&pcm_frame, &mut payload);
        bytes.extend_from_slice(&payload[..length]);
    }
    bytes
}

/// What a receiver decoding the same byte stream in 20 ms frames hears.
fn reference(codec: Codec, bytes: &[u8]) -> Vec<i16> {
    let mut decoder = AudioDecoder::new(codec);
    let mut pcm = Vec::new();
    for payload in bytes.chunks_exact(MAX_FRAME_BYTES) {
        let mut frame = [0i16; FRAME_SAMPLES];
        decoder.decode_frame(payload, &mut frame);
        pcm.extend_from_slice(&frame);
    }
    pcm
}

fn rtp(payload_type: u8, marker: bool, sequence: u16, timestamp: u32, payload: &[u8]) -> Vec<u8> {
    let mut packet = vec![0x80, payload_type | if marker { 0x80 } else { 0 }];
    packet.extend_from_slice(&sequence.to_be_bytes());
    packet.extend_from_slice(&timestamp.to_be_bytes());
    packet.extend_from_slice(&0x5EED_u32.to_be_bytes());
    packet.extend_from_slice(payload);
    packet
}

/// A packet on the wire: when it arrives (ms after the stream's start) and its bytes.
struct Arrival {
    at_ms: u64,
    datagram: Vec<u8>,
}

/// Cuts `bytes` into packets of the given durations (cycled), timestamps from `timestamp0`.
/// Each leaves when its last sample is captured and arrives `delay(k)` ms later; packets whose
/// `drop(k)` is true never arrive.
fn packetise(
    codec: Codec,
    bytes: &[u8],
    durations_ms: &[usize],
    timestamp0: u32,
    delay: impl Fn(usize) -> u64,
    drop: impl Fn(usize) -> bool,
) -> (Vec<Arrival>, usize) {
    let mut arrivals = Vec::new();
    let mut offset = 0;
    let mut k = 0;
    let mut dropped = 0;
    while offset < bytes.len() {
        let length = (durations_ms[k % durations_ms.len()] * 8).min(bytes.len() - offset);
        let timestamp = timestamp0.wrapping_add(offset as u32);
        let datagram = rtp(
            codec.static_payload_type(),
            k == 0,
            40_000u16.wrapping_add(k as u16),
            timestamp,
            &bytes[offset..offset + length],
        );
        offset += length;
        if drop(k) {
            dropped += 1;
        } else {
            arrivals.push(Arrival {
                at_ms: (offset / 8) as u64 + delay(k),
                datagram,
            });
        }
        k += 1;
    }
    arrivals.sort_by_key(|a| a.at_ms);
    (arrivals, dropped)
}

/// Runs the arrivals through a session with a 20 ms tick (the tick first when both fall on the
/// same millisecond: the harder order). Returns the received audio from the first audio frame,
/// stopping once `wanted` samples are in (after that the stream has ended: underruns).
fn receive(
    session: &mut MediaSession,
    start: Instant,
    arrivals: &[Arrival],
    wanted: usize,
) -> Vec<i16> {
    let last = arrivals.iter().map(|a| a.at_ms).max().unwrap_or(0);
    let mut received = Vec::new();
    let mut next = 0;
    for ms in 0..=last + 400 {
        if received.len() >= wanted {
            break;
        }
        let now = start + Duration::from_millis(ms);
        if ms % 20 == 0 {
            let _ = session.tick(now);
            if session.received_audio() || !received.is_empty() {
                received.extend_from_slice(session.received_frame());
            }
        }
        while next < arrivals.len() && arrivals[next].at_ms == ms {
            let outcome = session.handle_rtp(now, addr(SENDER), &arrivals[next].datagram);
            assert_eq!(outcome, Ok(()));
            next += 1;
        }
    }
    received
}

fn snr_db(truth: &[i16], got: &[i16]) -> f64 {
    let mut signal = 0.0;
    let mut noise = 0.0;
    for (a, b) in truth.iter().zip(got) {
        signal += (*a as f64).powi(2);
        noise += (*a as f64 - *b as f64).powi(2);
    }
    10.0 * (signal / noise.max(1.0)).log10()
}

fn rms(samples: &[i16]) -> f64 {
    (samples.iter().map(|s| (*s as f64).powi(2)).sum::<f64>() / samples.len().max(1) as f64).sqrt()
}

#[test]
fn ten_thirty_forty_and_sixty_ms_streams_decode_like_the_source() {
    let source = signal(100 * FRAME_SAMPLES);
    for codec in [Codec::Pcmu, Codec::Pcma] {
        let bytes = encode(codec, &source);
        let expected = reference(codec, &bytes);
        for durations in [
            &[10][..],
            &[30],
            &[40],
            &[60],
            &[20],
            &[10, 30, 60, 20, 40, 10],
        ] {
            let start = Instant::now();
            let mut receiver = session(codec, start);
            let (arrivals, _) = packetise(codec, &bytes, durations, 0xFFFF_F000, |_| 3, |_| false);
            let received = receive(&mut receiver, start, &arrivals, expected.len());
            let label = format!("{codec:?} {durations:?} ms");
            assert!(
                received.len() >= expected.len(),
                "{label}: {} samples",
                received.len()
            );
            // Every frame arrives, in order, with nothing concealed, skipped or repeated.
            assert_eq!(&received[..expected.len()], &expected[..], "{label}");
            let snr = snr_db(&source, &received[..source.len()]);
            assert!(snr > 30.0, "{label}: SNR {snr:.1} dB");
            let stats = receiver.jitter_stats();
            assert_eq!((stats.lost, stats.late, stats.shrunk), (0, 0, 0), "{label}");
            assert_eq!(receiver.quality().packets_lost, 0, "{label}");
        }
    }
}

#[test]
fn g722_streams_of_any_packet_time_decode_bit_exactly() {
    let source = signal(60 * FRAME_SAMPLES);
    let bytes = encode(Codec::G722, &source);
    let expected = reference(Codec::G722, &bytes);
    assert!(rms(&expected) > 1000.0);
    for durations in [&[10][..], &[30], &[40], &[60], &[30, 10, 60]] {
        let start = Instant::now();
        let mut receiver = session(Codec::G722, start);
        let (arrivals, _) = packetise(Codec::G722, &bytes, durations, 7, |_| 1, |_| false);
        let received = receive(&mut receiver, start, &arrivals, expected.len());
        assert_eq!(
            &received[..expected.len()],
            &expected[..],
            "G.722 {durations:?} ms"
        );
        assert_eq!(receiver.jitter_stats().lost, 0);
    }
}

#[test]
fn thirty_ms_packets_with_jitter_reordering_and_loss_are_concealed_not_silent() {
    let codec = Codec::Pcmu;
    let source = signal(150 * FRAME_SAMPLES);
    let bytes = encode(codec, &source);
    // Up to 50 ms of jitter (a fixed pseudo-random pattern that also reorders), and every 9th
    // packet lost.
    let delay = |k: usize| ((k * 37) % 11) as u64 * 5;
    let start = Instant::now();
    let mut receiver = session(codec, start);
    let (arrivals, dropped) = packetise(codec, &bytes, &[30], 1234, delay, |k| k % 9 == 4);
    assert!(dropped >= 10);
    let received = receive(&mut receiver, start, &arrivals, source.len());
    let talk = &received[..source.len()];
    // No 10 ms stretch of the talk is silent: losses were concealed.
    for (index, piece) in talk.chunks(80).enumerate() {
        assert!(
            rms(piece) > 300.0,
            "10 ms piece {index} is near silent (rms {:.0})",
            rms(piece)
        );
    }
    let stats = receiver.jitter_stats();
    assert!(stats.lost > 0, "{stats:?}");
    assert!(stats.reordered > 0, "{stats:?}");
    assert_eq!(stats.late, 0, "the delay adapted: {stats:?}");
    // RTCP counts lost packets by sequence number, not frames.
    assert_eq!(receiver.reception().lost(), dropped as u64);
    assert_eq!(receiver.quality().packets_lost, dropped as u64);
    assert!(receiver.jitter_stats().grown > 0);
}

#[test]
fn rfc4733_digit_inside_a_thirty_ms_stream_is_one_digit_and_its_gap_is_silence_not_loss() {
    let codec = Codec::Pcma;
    let start = Instant::now();
    let mut receiver = session(codec, start);
    let bytes = encode(codec, &signal(30 * FRAME_SAMPLES));
    let mut sequence = 7u16;
    let mut timestamp = 50_000u32;
    let mut now_ms;
    let mut digits = Vec::new();
    let mut received = Vec::new();
    let send = |receiver: &mut MediaSession, now_ms: u64, datagram: Vec<u8>| {
        let now = start + Duration::from_millis(now_ms);
        assert_eq!(receiver.handle_rtp(now, addr(SENDER), &datagram), Ok(()));
    };
    let mut tick = |receiver: &mut MediaSession, now_ms: u64, received: &mut Vec<i16>| {
        let _ = receiver.tick(start + Duration::from_millis(now_ms));
        received.extend_from_slice(receiver.received_frame());
        while let Some(event) = receiver.poll_event() {
            if let MediaEvent::Dtmf(DtmfEvent::Pressed { digit, .. }) = event {
                digits.push(digit);
            }
        }
    };
    // 300 ms of audio in 30 ms packets, then a 150 ms '5' as events every 30 ms (three end
    // packets), then audio again; ticks every 20 ms throughout.
    let mut audio = bytes.chunks(240);
    for step in 0..84u64 {
        now_ms = step * 10;
        if now_ms % 20 == 0 {
            tick(&mut receiver, now_ms, &mut received);
        }
        if now_ms % 30 != 0 || now_ms == 0 {
            continue;
        }
        let slot = now_ms / 30;
        if (11..=16).contains(&slot) {
            // Event period: the event started at the audio timestamp when the key went down.
            let event_start = 50_000u32 + 10 * 240;
            // Three end packets repeat the final duration (120 ms).
            let end = slot >= 14;
            let duration = if end { 960 } else { ((slot - 10) * 240) as u16 };
            let mut payload = vec![5, if end { 0x80 | 10 } else { 10 }];
            payload.extend_from_slice(&duration.to_be_bytes());
            send(
                &mut receiver,
                now_ms,
                rtp(TELEPHONE_EVENT, slot == 11, sequence, event_start, &payload),
            );
            sequence = sequence.wrapping_add(1);
            if slot == 16 {
                // The sender's clock ran on during the key press.
                timestamp = event_start.wrapping_add(6 * 240);
            }
            continue;
        }
        if let Some(payload) = audio.next() {
            send(
                &mut receiver,
                now_ms,
                rtp(8, false, sequence, timestamp, payload),
            );
            sequence = sequence.wrapping_add(1);
            timestamp = timestamp.wrapping_add(240);
        }
    }
    assert_eq!(digits, vec![DtmfDigit::from_char('5').expect("a key")]);
    let stats = receiver.jitter_stats();
    assert_eq!(stats.lost, 0, "the key press gap is not loss: {stats:?}");
    assert_eq!(receiver.quality().packets_lost, 0);
    // Audio is heard before and after the key press.
    let frames: Vec<f64> = received.chunks(FRAME_SAMPLES).map(rms).collect();
    let loud =
        |range: std::ops::Range<usize>| range.clone().filter(|&i| frames[i] > 1000.0).count();
    assert!(loud(5..15) >= 9, "{frames:?}");
    assert!(loud(30..42) >= 10, "{frames:?}");
}

#[test]
fn packets_longer_than_sixty_ms_are_refused_with_a_clear_error() {
    let start = Instant::now();
    let mut receiver = session(Codec::Pcmu, start);
    let datagram = rtp(0, false, 1, 0, &[0xFF; 640]);
    assert_eq!(
        receiver.handle_rtp(start, addr(SENDER), &datagram),
        Err(santral_media::session::RtpError::PacketTooLong(640))
    );
    let datagram = rtp(0, false, 2, 640, &[0xFF; 480]);
    assert_eq!(receiver.handle_rtp(start, addr(SENDER), &datagram), Ok(()));
}

/// SIPp's own capture: 236 PCMA packets of 30 ms (240-byte payloads, timestamps +240).
#[test]
fn sipp_g711a_capture_replays_as_the_audio_it_carries() {
    let path = "/usr/share/sip-tester/g711a.pcap";
    let capture = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let packets = parse_pcap_rtp(&capture);
    assert_eq!(packets.len(), 236);
    assert!(packets.iter().all(|(_, rtp)| rtp.len() == 12 + 240));

    let (first_seconds, first_micros) = packets[0].0;
    let start = Instant::now();
    let mut receiver = session(Codec::Pcma, start);
    let arrivals: Vec<Arrival> = packets
        .iter()
        .map(|((seconds, micros), rtp)| Arrival {
            at_ms: ((*seconds as i64 - first_seconds as i64) * 1000
                + (*micros as i64 - first_micros as i64) / 1000) as u64,
            datagram: rtp.clone(),
        })
        .collect();
    let received = receive(&mut receiver, start, &arrivals, 236 * 240);

    // What the capture carries: its payloads in sequence order, decoded.
    let mut ordered: Vec<&Vec<u8>> = packets.iter().map(|(_, rtp)| rtp).collect();
    ordered.sort_by_key(|rtp| u16::from_be_bytes([rtp[2], rtp[3]]));
    let bytes: Vec<u8> = ordered.iter().flat_map(|rtp| rtp[12..].to_vec()).collect();
    let expected = reference(Codec::Pcma, &bytes);
    assert_eq!(expected.len(), 236 * 240);

    let frames = expected.len() / FRAME_SAMPLES;
    let heard: Vec<bool> = received
        .chunks(FRAME_SAMPLES)
        .take(frames)
        .map(|f| rms(f) > 100.0)
        .collect();
    let non_silent = heard.iter().filter(|h| **h).count();
    let source_non_silent = expected
        .chunks(FRAME_SAMPLES)
        .filter(|f| rms(f) > 100.0)
        .count();
    assert!(source_non_silent > frames / 2, "the capture is speech");
    assert!(
        non_silent + 5 >= source_non_silent,
        "{non_silent} of {source_non_silent} speech frames heard"
    );
    let snr = snr_db(&expected, &received[..expected.len().min(received.len())]);
    assert!(
        snr > 30.0,
        "SNR {snr:.1} dB against the capture's own audio"
    );
    assert_eq!(receiver.quality().packets_lost, 0);
}

/// The same capture sent for real: a UDP socket on 127.0.0.1 plays its first 100 packets at
/// their 30 ms pace to a session run by the media engine on its 20 ms grid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_g711a_capture_over_udp_is_heard_through_the_driver() {
    use santral_media::driver::RtpSockets;
    use santral_media::engine::MediaEngine;
    use santral_media::port::PortAllocator;

    let path = "/usr/share/sip-tester/g711a.pcap";
    let capture = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let packets: Vec<Vec<u8>> = parse_pcap_rtp(&capture)
        .into_iter()
        .take(100)
        .map(|(_, rtp)| rtp)
        .collect();
    let localhost = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    let ports = PortAllocator::new(43000..=43999).unwrap_or_else(|e| panic!("{e}"));
    let sockets = RtpSockets::bind(localhost, &ports)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let port = sockets.rtp_port();
    let sender = tokio::net::UdpSocket::bind((localhost, 0))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut receiver = session(Codec::Pcma, Instant::now());
    receiver.renegotiate(&santral_media::sdp::NegotiatedMedia {
        codec: Codec::Pcma,
        payload_type: 8,
        telephone_event_payload_type: Some(TELEPHONE_EVENT),
        remote_rtp: sender.local_addr().unwrap_or_else(|e| panic!("{e}")),
        remote_rtcp: (localhost, 9).into(),
        ptime_ms: 20,
        remote_ptime_ms: Some(30),
        remote_maxptime_ms: None,
        direction: Direction::SendRecv,
    });
    let engine = MediaEngine::start(Some(1)).unwrap_or_else(|e| panic!("{e}"));
    let mut leg = engine.spawn_session(receiver, sockets, true);
    let mut audio = leg
        .audio
        .take()
        .unwrap_or_else(|| panic!("audio tap requested"));
    let send = async {
        let mut pace = tokio::time::interval(Duration::from_millis(30));
        for packet in &packets {
            pace.tick().await;
            sender
                .send_to(packet, (localhost, port))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let mut heard: Vec<i16> = Vec::new();
    let listen = async {
        // Bounded: 3 s of packets + drain, at most 250 ticks.
        for _ in 0..250 {
            match audio.recv().await {
                Some(tick) => heard.extend_from_slice(&tick.received),
                None => break,
            }
        }
    };
    tokio::select! {
        _ = send => {}
        _ = listen => {}
    }
    let _ = leg
        .commands
        .send(santral_media::driver::MediaCommand::Shutdown)
        .await;
    let end = leg.finished.await.unwrap_or_else(|e| panic!("{e}"));

    let bytes: Vec<u8> = packets.iter().flat_map(|rtp| rtp[12..].to_vec()).collect();
    let expected = reference(Codec::Pcma, &bytes);
    let speech = |pcm: &[i16]| pcm.chunks(FRAME_SAMPLES).filter(|f| rms(f) > 100.0).count();
    let (sent_speech, heard_speech) = (speech(&expected), speech(&heard));
    assert!(sent_speech > 50, "{sent_speech} speech frames sent");
    assert!(
        heard_speech * 10 >= sent_speech * 9,
        "{heard_speech} of {sent_speech} speech frames heard"
    );
    assert_eq!(end.quality.packets_lost, 0, "{:?}", end.quality);
    assert!(end.quality.packets_expected >= 100, "{:?}", end.quality);
}

/// (capture time, RTP datagram) of every UDP packet in a classic little-endian Ethernet pcap:
/// 24-byte global header, 16-byte record headers, Ethernet 14 + IPv4 20 + UDP 8 bytes.
fn parse_pcap_rtp(capture: &[u8]) -> Vec<((u32, u32), Vec<u8>)> {
    const GLOBAL: usize = 24;
    const RECORD: usize = 16;
    const HEADERS: usize = 14 + 20 + 8;
    assert!(capture.len() >= GLOBAL, "pcap shorter than its header");
    assert_eq!(
        &capture[..4],
        &[0xD4, 0xC3, 0xB2, 0xA1],
        "little-endian pcap"
    );
    let word = |at: usize| {
        u32::from_le_bytes([
            capture[at],
            capture[at + 1],
            capture[at + 2],
            capture[at + 3],
        ])
    };
    let mut packets = Vec::new();
    let mut offset = GLOBAL;
    while offset + RECORD <= capture.len() {
        let seconds = word(offset);
        let micros = word(offset + 4);
        let included = word(offset + 8) as usize;
        let body = offset + RECORD;
        assert!(body + included <= capture.len(), "truncated record");
        let frame = &capture[body..body + included];
        // IPv4 (EtherType 0x0800) carrying UDP (protocol 17).
        if frame.len() > HEADERS && frame[12..14] == [0x08, 0x00] && frame[23] == 17 {
            packets.push(((seconds, micros), frame[HEADERS..].to_vec()));
        }
        offset = body + included;
    }
    packets
}
