//! Hot-path benchmarks, per 20 ms frame (160 samples at 8 kHz), plus relay packets/s over
//! loopback UDP.
//!
//! cargo bench -p santral-media --bench media -- --warm-up-time 1 --measurement-time 3

use std::hint::black_box;
use std::net::UdpSocket as StdUdpSocket;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use santral_media::codec::{Codec, FRAME_SAMPLES, Frame};
use santral_media::concealment::Concealer;
use santral_media::dtmf_detector::DtmfDetector;
use santral_media::g711;
use santral_media::g722::{G722Decoder, G722Encoder};
use santral_media::jitter::{JitterBuffer, JitterConfig, Playout};
use santral_media::mixer::{Audience, Mixer};
use santral_media::relay::{LegFormat, RtpRelay};

fn speech_like_frame(seed: usize) -> Frame {
    let mut frame = [0i16; FRAME_SAMPLES];
    for (n, s) in frame.iter_mut().enumerate() {
        let t = (seed * FRAME_SAMPLES + n) as f32 / 8000.0;
        *s = (3000.0 * (2.0 * std::f32::consts::PI * 180.0 * t).sin()
            + 1500.0 * (2.0 * std::f32::consts::PI * 1100.0 * t).sin()) as i16;
    }
    frame
}

fn codecs(c: &mut Criterion) {
    let frame = speech_like_frame(3);
    let mut group = c.benchmark_group("codec per 20 ms frame");
    let mut ulaw = [0u8; 160];
    group.bench_function("g711 µ-law encode", |b| {
        b.iter(|| g711::ulaw_encode_slice(black_box(&frame), &mut ulaw))
    });
    let mut pcm = [0i16; 160];
    group.bench_function("g711 µ-law decode", |b| {
        b.iter(|| g711::ulaw_decode_slice(black_box(&ulaw), &mut pcm))
    });
    let mut alaw = [0u8; 160];
    group.bench_function("g711 A-law encode", |b| {
        b.iter(|| g711::alaw_encode_slice(black_box(&frame), &mut alaw))
    });
    group.bench_function("g711 A-law decode", |b| {
        b.iter(|| g711::alaw_decode_slice(black_box(&alaw), &mut pcm))
    });

    let wide: Vec<i16> = (0..320)
        .map(|n| ((n as f32 * 0.2).sin() * 6000.0) as i16)
        .collect();
    let mut encoder = G722Encoder::new();
    let mut g722 = [0u8; 160];
    group.bench_function("g722 encode (320 samples @16k)", |b| {
        b.iter(|| encoder.encode(black_box(&wide), &mut g722))
    });
    let mut decoder = G722Decoder::new();
    let mut out = [0i16; 320];
    group.bench_function("g722 decode", |b| {
        b.iter(|| decoder.decode(black_box(&g722), &mut out))
    });

    let mut transcode_decoder = santral_media::codec::AudioDecoder::new(Codec::Pcmu);
    let mut transcode_encoder = santral_media::codec::AudioEncoder::new(Codec::G722);
    let mut middle = [0i16; 160];
    let mut encoded = [0u8; 160];
    group.bench_function("transcode PCMU→G.722 (8k path)", |b| {
        b.iter(|| {
            transcode_decoder.decode_frame(black_box(&ulaw), &mut middle);
            transcode_encoder.encode_frame(&middle, &mut encoded)
        })
    });
    group.finish();
}

fn dtmf(c: &mut Criterion) {
    let frame = speech_like_frame(5);
    let mut detector = DtmfDetector::new();
    c.bench_function("goertzel DTMF detector per 20 ms frame", |b| {
        b.iter(|| detector.process(black_box(&frame), |_| {}))
    });
}

fn jitter(c: &mut Criterion) {
    let payload = [0x55u8; 160];
    let mut buffer = JitterBuffer::new(JitterConfig::default());
    let start = Instant::now();
    let mut sequence = 0u16;
    c.bench_function("jitter buffer push+pop per 20 ms frame", |b| {
        b.iter(|| {
            let now = start + Duration::from_millis(20 * sequence as u64);
            buffer.push(
                now,
                sequence,
                160u32.wrapping_mul(sequence as u32),
                0,
                black_box(&payload),
            );
            sequence = sequence.wrapping_add(1);
            matches!(buffer.pop(now), Playout::Frame { .. })
        })
    });
}

/// A packet stream delayed 40 ms ± 40 ms (uniform, reordering), per 20 ms frame: push and pop
/// with the buffer at the depth that jitter calls for.
fn jitter_reordered(c: &mut Criterion) {
    let payload = [0x55u8; 160];
    let mut buffer = JitterBuffer::new(JitterConfig::default());
    let start = Instant::now();
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    // 1024 packets' arrival order, replayed in a loop with time running on.
    let mut order: Vec<(u64, u16)> = (0..1024u16)
        .map(|n| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (20_000 * u64::from(n) + seed % 80_001, n)
        })
        .collect();
    order.sort();
    let mut round = 0u64;
    let mut k = 0usize;
    c.bench_function(
        "jitter buffer push+pop per 20 ms frame, 40 ms jitter",
        |b| {
            b.iter(|| {
                let (at, n) = order[k];
                let base = round * 1024;
                let sequence = (base + u64::from(n)) as u16;
                let arrival = start + Duration::from_micros(round * 1024 * 20_000 + at);
                buffer.push(
                    arrival,
                    sequence,
                    160u32.wrapping_mul((base + u64::from(n)) as u32),
                    0,
                    black_box(&payload),
                );
                let tick = start + Duration::from_micros((base + k as u64) * 20_000 + 7_000);
                let played = matches!(buffer.pop(tick), Playout::Frame { .. });
                k += 1;
                if k == order.len() {
                    k = 0;
                    round += 1;
                }
                played
            })
        },
    );
}

/// One lost frame of voiced speech after good ones: the concealer's work for it (the first
/// lost frame includes the pitch search).
fn concealment(c: &mut Criterion) {
    let mut primed = Concealer::new();
    for k in 0..5 {
        let mut frame = speech_like_frame(k);
        primed.good_frame(&mut frame);
    }
    let next = speech_like_frame(6);
    let mut group = c.benchmark_group("concealment per lost 20 ms frame");
    let mut out = [0i16; FRAME_SAMPLES];
    group.bench_function("extrapolate (pitch repetition)", |b| {
        b.iter(|| {
            let mut concealer = primed.clone();
            concealer.conceal(black_box(&mut out));
            out[0]
        })
    });
    group.bench_function("interpolate towards the next frame", |b| {
        b.iter(|| {
            let mut concealer = primed.clone();
            concealer.interpolate(black_box(&mut out), black_box(&next));
            out[0]
        })
    });
    group.finish();
}

/// 30 ms packets (240 bytes): three ticks per two packets, so the cost is given per 20 ms frame
/// by timing one 60 ms period (two pushes, three pops) and dividing by three.
fn jitter_30ms(c: &mut Criterion) {
    let payload = [0x55u8; 240];
    let mut buffer = JitterBuffer::new(JitterConfig::default());
    let start = Instant::now();
    let mut packet = 0u64;
    let mut period = 0u64;
    c.bench_function(
        "jitter buffer 30 ms packets, 60 ms period (÷3 per frame)",
        |b| {
            b.iter(|| {
                let base = start + Duration::from_millis(60 * period);
                period += 1;
                let mut frames = 0;
                for k in 0..3u64 {
                    let now = base + Duration::from_millis(20 * k);
                    if k < 2 {
                        buffer.push(
                            now,
                            packet as u16,
                            (packet * 240) as u32,
                            0,
                            black_box(&payload),
                        );
                        packet += 1;
                    }
                    frames += matches!(buffer.pop(now), Playout::Frame { .. }) as u32;
                }
                frames
            })
        },
    );
}

fn mixer(c: &mut Criterion) {
    let mut mixer = Mixer::new();
    for id in 1..=3 {
        mixer.join(id, Audience::Everyone);
    }
    let frames = [
        speech_like_frame(1),
        speech_like_frame(2),
        speech_like_frame(3),
    ];
    c.bench_function("3-party mixer per 20 ms tick", |b| {
        b.iter(|| {
            for (id, frame) in (1..=3).zip(frames.iter()) {
                mixer.set_input(id, frame);
            }
            mixer.mix();
            black_box(mixer.output(1).map(|f| f[0]))
        })
    });
}

/// The whole per-call cost of one 20 ms period: a packet in (parse, jitter buffer), one frame
/// out of the jitter buffer (decode, in-band DTMF detection), one packet out (cached prompt).
fn session(c: &mut Criterion) {
    use santral_media::prompt::{EncodedPrompt, PcmAudio};
    use santral_media::session::{MediaSession, SessionConfig};
    use std::sync::Arc;
    let start = Instant::now();
    let config = |ssrc, port: u16| SessionConfig {
        local_ssrc: ssrc,
        codec: Codec::Pcmu,
        payload_type: 0,
        telephone_event_payload_type: Some(101),
        remote_rtp: Some(([127, 0, 0, 1], port).into()),
        remote_rtcp: None,
        direction: santral_media::sdp::Direction::SendRecv,
        symmetric_rtp: true,
        inband_dtmf: true,
        jitter: JitterConfig::default(),
        initial_sequence: 0,
        initial_timestamp: 0,
        rtcp_interval: Duration::from_secs(3600),
        media_timeout: Duration::from_secs(3600),
    };
    let samples = (0..1000 * FRAME_SAMPLES)
        .map(|n| ((n as f32 * 0.05).sin() * 5000.0) as i16)
        .collect();
    let prompt = Arc::new(EncodedPrompt::encode(
        "bench",
        Codec::Pcmu,
        &PcmAudio {
            sample_rate: 8000,
            samples,
        },
        None,
    ));
    let mut far = MediaSession::new(config(1, 7000), start);
    let mut near = MediaSession::new(config(2, 7002), start);
    near.play_music(Arc::clone(&prompt));
    far.play_music(prompt);
    let from_far: std::net::SocketAddr = ([127, 0, 0, 1], 7002).into();
    let mut packet = [0u8; 512];
    let mut tick = 0u64;
    c.bench_function(
        "media session: packet in + tick (decode, DTMF detect, send) per 20 ms",
        |b| {
            b.iter(|| {
                tick += 1;
                let now = start + Duration::from_millis(20 * tick);
                let len = match far.tick(now) {
                    Some(t) => {
                        packet[..t.payload.len()].copy_from_slice(t.payload);
                        t.payload.len()
                    }
                    None => 0,
                };
                let _ = near.handle_rtp(now, from_far, &packet[..len]);
                black_box(near.tick(now).map(|t| t.payload.len()))
            })
        },
    );
}

fn rtp_packet(sequence: u16) -> Vec<u8> {
    let mut bytes = vec![0x80, 0];
    bytes.extend_from_slice(&sequence.to_be_bytes());
    bytes.extend_from_slice(&(sequence as u32 * 160).to_be_bytes());
    bytes.extend_from_slice(&0x1234u32.to_be_bytes());
    bytes.extend_from_slice(&[0x55; 160]);
    bytes
}

const PCMU: LegFormat = LegFormat {
    codec: Codec::Pcmu,
    payload_type: 0,
    telephone_event_payload_type: Some(101),
};
const PCMA: LegFormat = LegFormat {
    codec: Codec::Pcma,
    payload_type: 8,
    telephone_event_payload_type: Some(101),
};

fn relay_in_memory(c: &mut Criterion) {
    let packet = rtp_packet(7);
    let mut out = [0u8; 512];
    let mut group = c.benchmark_group("relay per packet (in memory)");
    let mut same = RtpRelay::new(PCMU, PCMU, 1, 0, 0);
    group.bench_function("PCMU→PCMU rewrite", |b| {
        b.iter(|| same.forward(black_box(&packet), &mut out))
    });
    let mut transcoding = RtpRelay::new(PCMU, PCMA, 1, 0, 0);
    group.bench_function("PCMU→PCMA transcode", |b| {
        b.iter(|| transcoding.forward(black_box(&packet), &mut out))
    });
    group.finish();
}

/// Packets/s through `driver::run_relay` on 127.0.0.1: caller socket → leg A → relay → leg B →
/// agent socket, 64 packets in flight.
fn relay_over_loopback(c: &mut Criterion) {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => panic!("tokio runtime: {error}"),
    };
    let bind = |addr: &str| StdUdpSocket::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    let caller = bind("127.0.0.1:0");
    let agent = bind("127.0.0.1:0");
    let leg_a_std = bind("127.0.0.1:0");
    let leg_b_std = bind("127.0.0.1:0");
    let local = |s: &StdUdpSocket| s.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let (caller_addr, agent_addr, leg_a_addr) = (local(&caller), local(&agent), local(&leg_a_std));
    agent
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap_or_else(|e| panic!("{e}"));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    runtime.spawn(async move {
        let _ = leg_a_std.set_nonblocking(true);
        let _ = leg_b_std.set_nonblocking(true);
        let (Ok(leg_a), Ok(leg_b)) = (
            tokio::net::UdpSocket::from_std(leg_a_std),
            tokio::net::UdpSocket::from_std(leg_b_std),
        ) else {
            return;
        };
        let _ = santral_media::driver::run_relay(
            &leg_a,
            caller_addr,
            &leg_b,
            agent_addr,
            RtpRelay::new(PCMU, PCMU, 0xA, 0, 0),
            RtpRelay::new(PCMU, PCMU, 0xB, 0, 0),
            stop_rx,
        )
        .await;
    });
    let packets: Vec<Vec<u8>> = (0..1024u16).map(rtp_packet).collect();
    let mut group = c.benchmark_group("relay over loopback UDP");
    group.throughput(Throughput::Elements(1));
    group.bench_function("packets", |b| {
        b.iter_custom(|iterations| {
            const WINDOW: u64 = 64;
            let mut buffer = [0u8; 2048];
            let mut lost = 0u64;
            let start = Instant::now();
            let mut received = 0u64;
            for i in 0..iterations {
                let _ = caller.send_to(&packets[(i % 1024) as usize], leg_a_addr);
                if i >= WINDOW {
                    if agent.recv_from(&mut buffer).is_ok() {
                        received += 1;
                    } else {
                        lost += 1;
                    }
                }
            }
            while received + lost < iterations {
                if agent.recv_from(&mut buffer).is_ok() {
                    received += 1;
                } else {
                    lost += iterations - received - lost;
                }
            }
            if lost > 0 {
                eprintln!("relay bench: {lost} of {iterations} packets lost");
            }
            start.elapsed()
        })
    });
    group.finish();
    let _ = stop_tx.send(true);
}

/// A media thread's socket work for 64 sessions in one 20 ms walk: read each one's packet
/// (with its kernel arrival time) and send each one's frame, one system call per packet
/// against one io_uring submission per run. Only that work is timed: the far end's packets
/// are put in place and its copies drained outside the clock.
fn engine_socket_io(c: &mut Criterion) {
    use santral_media::receive::{ArrivalClock, enable_arrival_times, try_receive};
    use santral_media::uring::{BATCH, Received, SocketBatch};
    use std::os::fd::AsFd;

    let bind = || StdUdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
    let sessions: Vec<StdUdpSocket> = (0..BATCH).map(|_| bind()).collect();
    for socket in &sessions {
        let _ = socket.set_nonblocking(true);
        let _ = enable_arrival_times(socket);
    }
    let far = bind();
    let far_addr = far.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let _ = far.set_nonblocking(true);
    let addrs: Vec<_> = sessions
        .iter()
        .map(|s| s.local_addr().unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let packet = rtp_packet(1);
    let frame = rtp_packet(2);
    let deliver = || {
        for addr in &addrs {
            let _ = far.send_to(&packet, addr);
        }
    };
    let drain = || {
        let mut buffer = [0u8; 2048];
        while far.recv_from(&mut buffer).is_ok() {}
    };
    let mut group = c.benchmark_group("media thread socket I/O per 64 sessions");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("direct (recvmsg + sendto each)", |b| {
        let mut buffer = [0u8; 2048];
        b.iter_custom(|iterations| {
            let mut spent = Duration::ZERO;
            for _ in 0..iterations {
                deliver();
                let start = Instant::now();
                let clock = ArrivalClock::read();
                for socket in &sessions {
                    let read = try_receive(socket, &mut buffer, &clock);
                    black_box(&read);
                    let _ = socket.send_to(&frame, far_addr);
                }
                spent += start.elapsed();
                drain();
            }
            spent
        })
    });
    match SocketBatch::new() {
        Ok(mut batch) => {
            for (place, socket) in sessions.iter().enumerate() {
                batch
                    .register(place, socket.as_fd())
                    .unwrap_or_else(|e| panic!("register: {e}"));
            }
            group.bench_function("io_uring (one submission each way)", |b| {
                b.iter_custom(|iterations| {
                    let mut spent = Duration::ZERO;
                    for _ in 0..iterations {
                        deliver();
                        let start = Instant::now();
                        for place in 0..BATCH {
                            batch.queue_receive(place, place);
                        }
                        let _ = batch.submit();
                        let clock = ArrivalClock::read();
                        for place in 0..BATCH {
                            if let Received::Datagram(datagram, bytes) =
                                batch.received(place, &clock)
                            {
                                black_box((datagram, bytes));
                            }
                            batch.queue_send(place, &frame, far_addr);
                        }
                        let _ = batch.submit();
                        spent += start.elapsed();
                        drain();
                    }
                    spent
                })
            });
        }
        Err(error) => eprintln!("io_uring refused here ({error}): batched I/O not measured"),
    }
    group.finish();
}

criterion_group!(
    benches,
    codecs,
    dtmf,
    jitter,
    jitter_reordered,
    jitter_30ms,
    concealment,
    mixer,
    session,
    relay_in_memory,
    relay_over_loopback,
    engine_socket_io
);
criterion_main!(benches);
