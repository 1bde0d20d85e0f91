//! The generator's per-packet path: building a tick's batch of RTP packets, sending it with
//! sendmmsg, and receiving + accounting packets with recvmmsg on loopback.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use santral_load::audio::EncodedAudio;
use santral_load::batch_socket::{BatchSocket, RecvBatch, SendBatch, poll_entry, wait_readable};
use santral_load::media_stream::{MAX_PACKET, MediaStream};
use santral_load::rtp::read_header;
use santral_load::sdp::Law;
use santral_load::stats::Histogram;

const CALLS: usize = 256;

fn streams(to: SocketAddr) -> Vec<MediaStream> {
    (0..CALLS as u32)
        .map(|i| MediaStream::new(to, 0, 8, Some(101), i.wrapping_mul(0x9E37_79B1), None))
        .collect()
}

fn build(c: &mut Criterion) {
    let audio = EncodedAudio::tone(Law::Pcma);
    let to: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let mut streams = streams(to);
    let mut batch = SendBatch::with_capacity(CALLS, CALLS * MAX_PACKET);
    let now = Instant::now();
    let mut tick = 0u64;
    let mut group = c.benchmark_group("rtp_tick");
    group.throughput(Throughput::Elements(CALLS as u64));
    group.bench_function("build_256_packets", |b| {
        b.iter(|| {
            tick += 1;
            batch.clear();
            for stream in &mut streams {
                batch.push_with::<MAX_PACKET>(to, |slot| {
                    stream.write_packet(tick, now, &audio, slot)
                });
            }
            black_box(batch.len())
        })
    });
    group.finish();
}

fn send_receive(c: &mut Criterion) {
    let audio = EncodedAudio::tone(Law::Pcma);
    let rx = BatchSocket::bind("127.0.0.1:0".parse().unwrap(), true).unwrap();
    let tx = BatchSocket::bind("127.0.0.1:0".parse().unwrap(), false).unwrap();
    let to = rx.local_addr().unwrap();
    let mut streams = streams(to);
    let mut receivers = streams.clone();
    let mut batch = SendBatch::with_capacity(CALLS, CALLS * MAX_PACKET);
    let mut recv = RecvBatch::new(512, 2048);
    let mut jitter = Histogram::new();
    let now = Instant::now();
    let mut tick = 0u64;
    let mut group = c.benchmark_group("rtp_tick");
    group.throughput(Throughput::Elements(CALLS as u64));
    group.bench_function("send_and_receive_256_packets", |b| {
        b.iter(|| {
            tick += 1;
            for stream in &mut streams {
                batch.push_with::<MAX_PACKET>(to, |slot| {
                    stream.write_packet(tick, now, &audio, slot)
                });
            }
            let (sent, _) = tx.send_batch(&mut batch).unwrap();
            let mut got = 0;
            let mut fds = [poll_entry(rx.raw_fd())];
            // Bounded: loopback delivers at once; a few waits at most.
            for _ in 0..100 {
                let n = rx.recv_batch(&mut recv).unwrap();
                for i in 0..n {
                    let (bytes, meta) = recv.get(i).unwrap();
                    // Loopback keeps order: packet i of the tick belongs to call i.
                    if let Some(header) = read_header(bytes) {
                        receivers[(got + i) % CALLS].on_packet(
                            &header,
                            meta.arrival_ns.unwrap_or(0),
                            &mut jitter,
                        );
                    }
                }
                got += n;
                if got >= sent {
                    break;
                }
                wait_readable(&mut fds, Duration::from_millis(5)).unwrap();
            }
            black_box(got)
        })
    });
    group.finish();
}

criterion_group!(benches, build, send_receive);
criterion_main!(benches);
