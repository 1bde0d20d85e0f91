//! The per-packet and per-tick paths allocate nothing: a counting global allocator watches the
//! test thread while two sessions exchange packets, play a cached prompt, relay, mix and detect
//! DTMF after warm-up.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use santral_media::codec::{Codec, FRAME_SAMPLES};
use santral_media::jitter::JitterConfig;
use santral_media::mixer::{Audience, Mixer};
use santral_media::prompt::{EncodedPrompt, PcmAudio, Playlist};
use santral_media::relay::{LegFormat, RtpRelay};
use santral_media::sdp::Direction;
use santral_media::session::{MediaSession, SessionConfig};

struct CountingAllocator;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(|c| c.get()) {
            ALLOCATIONS.with(|a| a.set(a.get() + 1));
        }
        // SAFETY: forwarding the caller's layout to the system allocator unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(|c| c.get()) {
            ALLOCATIONS.with(|a| a.set(a.get() + 1));
        }
        // SAFETY: forwarding to the system allocator that allocated `ptr`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn counted<T>(work: impl FnOnce() -> T) -> (T, usize) {
    ALLOCATIONS.with(|a| a.set(0));
    COUNTING.with(|c| c.set(true));
    let result = work();
    COUNTING.with(|c| c.set(false));
    (result, ALLOCATIONS.with(|a| a.get()))
}

fn config(ssrc: u32, remote: &str) -> SessionConfig {
    SessionConfig {
        local_ssrc: ssrc,
        codec: Codec::Pcmu,
        payload_type: 0,
        telephone_event_payload_type: Some(101),
        remote_rtp: remote.parse().ok(),
        remote_rtcp: None,
        direction: Direction::SendRecv,
        symmetric_rtp: true,
        inband_dtmf: true,
        jitter: JitterConfig::default(),
        initial_sequence: 1,
        initial_timestamp: 0,
        // Keep RTCP (low-rate, allowed to allocate) out of the measured window.
        rtcp_interval: Duration::from_secs(3600),
        media_timeout: Duration::from_secs(30),
    }
}

#[test]
fn media_hot_paths_do_not_allocate() {
    let start = Instant::now();
    let mut a = MediaSession::new(config(1, "127.0.0.1:7002"), start);
    let mut b = MediaSession::new(config(2, "127.0.0.1:7000"), start);
    let from_a: SocketAddr = "127.0.0.1:7000".parse().unwrap_or_else(|e| panic!("{e}"));
    let from_b: SocketAddr = "127.0.0.1:7002".parse().unwrap_or_else(|e| panic!("{e}"));
    let samples = (0..500 * FRAME_SAMPLES)
        .map(|n| ((n as f32 * 0.07).sin() * 7000.0) as i16)
        .collect();
    let prompt = Arc::new(EncodedPrompt::encode(
        "p",
        Codec::Pcmu,
        &PcmAudio {
            sample_rate: 8000,
            samples,
        },
        None,
    ));
    a.play(Playlist::new(vec![prompt]), true);
    let mut relay = RtpRelay::new(
        LegFormat {
            codec: Codec::Pcmu,
            payload_type: 0,
            telephone_event_payload_type: Some(101),
        },
        LegFormat {
            codec: Codec::Pcma,
            payload_type: 8,
            telephone_event_payload_type: Some(101),
        },
        9,
        0,
        0,
    );
    let mut relay_out = [0u8; 512];
    let mut mixer = Mixer::new();
    for id in 1..=3 {
        mixer.join(id, Audience::Everyone);
    }
    let mut packet = [0u8; 512];
    let mut run = |ticks: u64, offset: u64, digit: Option<santral_media::DtmfDigit>| {
        if let Some(digit) = digit {
            a.send_dtmf(digit, 100);
        }
        for k in 0..ticks {
            let now = start + Duration::from_millis(20 * (k + offset + 1));
            let len = match a.tick(now) {
                Some(t) => {
                    packet[..t.payload.len()].copy_from_slice(t.payload);
                    t.payload.len()
                }
                None => 0,
            };
            let _ = b.handle_rtp(now, from_a, &packet[..len]);
            let _ = relay.forward(&packet[..len], &mut relay_out);
            if let Some(t) = b.tick(now) {
                let len = t.payload.len();
                packet[..len].copy_from_slice(t.payload);
                let _ = a.handle_rtp(now, from_b, &packet[..len]);
            }
            mixer.set_input(1, a.received_frame());
            mixer.set_input(2, b.received_frame());
            mixer.mix();
            while a.poll_event().is_some() {}
            while b.poll_event().is_some() {}
        }
    };
    // The counter works.
    let (_vector, sanity) = counted(|| Vec::<u8>::with_capacity(16));
    assert_eq!(sanity, 1);
    run(100, 0, None); // warm-up: queues and buffers reach their working size
    let ((), allocations) = counted(|| run(300, 100, None));
    assert_eq!(
        allocations, 0,
        "allocations during 300 ticks of send/receive/relay/mix"
    );
    // Key presses both ways (RFC 4733 out of A, received and reported by B).
    let digit = santral_media::DtmfDigit::from_char('4').unwrap_or_else(|| unreachable!());
    let ((), allocations) = counted(|| run(50, 400, Some(digit)));
    assert_eq!(
        allocations, 0,
        "allocations while sending and receiving a digit"
    );
}

/// Packets of 10, 30 and 60 ms (mixed, one lost) into a session and through a transcoding relay.
#[test]
fn receiving_any_packet_time_does_not_allocate() {
    let start = Instant::now();
    let mut session = MediaSession::new(config(3, "127.0.0.1:7004"), start);
    let from: SocketAddr = "127.0.0.1:7004".parse().unwrap_or_else(|e| panic!("{e}"));
    let mut relay = RtpRelay::new(
        LegFormat {
            codec: Codec::Pcmu,
            payload_type: 0,
            telephone_event_payload_type: None,
        },
        LegFormat {
            codec: Codec::Pcma,
            payload_type: 8,
            telephone_event_payload_type: None,
        },
        9,
        0,
        0,
    );
    let mut relay_out = [0u8; 600];
    let mut packet = [0u8; 12 + 480];
    packet[0] = 0x80;
    packet[8..12].copy_from_slice(&0x77u32.to_be_bytes());
    for (n, byte) in packet[12..].iter_mut().enumerate() {
        *byte = (n as u8).wrapping_mul(37) | 0x40;
    }
    let durations_ms = [10u64, 30, 60, 30, 10, 20];
    let mut sequence = 0u16;
    let mut sent_ms = 0u64;
    let mut next_tick_ms = 0u64;
    let mut run = |packets: usize| {
        for k in 0..packets {
            let duration = durations_ms[k % durations_ms.len()];
            sent_ms += duration;
            while next_tick_ms < sent_ms {
                let _ = session.tick(start + Duration::from_millis(next_tick_ms));
                next_tick_ms += 20;
            }
            packet[2..4].copy_from_slice(&sequence.to_be_bytes());
            let timestamp = ((sent_ms - duration) * 8) as u32;
            packet[4..8].copy_from_slice(&timestamp.to_be_bytes());
            sequence = sequence.wrapping_add(1);
            let length = 12 + duration as usize * 8;
            if k % 17 != 5 {
                let now = start + Duration::from_millis(sent_ms);
                let _ = session.handle_rtp(now, from, &packet[..length]);
                let _ = relay.forward(&packet[..length], &mut relay_out);
            }
            while session.poll_event().is_some() {}
        }
    };
    run(60);
    let ((), allocations) = counted(|| run(300));
    assert_eq!(allocations, 0, "allocations receiving 10–60 ms packets");
    let stats = session.jitter_stats();
    assert!(stats.accepted > 300, "{stats:?}");
    assert!(session.received_audio());
}
