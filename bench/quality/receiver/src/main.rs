//! Replays a packet schedule into a `MediaSession` with virtual time and writes what the
//! session plays, tick by tick, as an 8 kHz mono WAV.
//!
//! Usage: santral-quality-receiver SCHEDULE OUTPUT.wav
//! SCHEDULE lines: `arrival_us sequence timestamp payload_type hex_payload` (any order).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use santral_media::codec::Codec;
use santral_media::jitter::JitterConfig;
use santral_media::sdp::Direction;
use santral_media::session::{MediaSession, SessionConfig};

struct Packet {
    arrival_us: u64,
    bytes: Vec<u8>,
}

fn parse_schedule(text: &str) -> Result<Vec<Packet>, String> {
    let mut packets = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() {
            continue;
        }
        let [arrival, sequence, timestamp, payload_type, payload] = fields[..] else {
            return Err(format!("line {}: expected 5 fields", number + 1));
        };
        let bad = |what: &str| format!("line {}: bad {what}", number + 1);
        let arrival_us: u64 = arrival.parse().map_err(|_| bad("arrival"))?;
        let sequence: u16 = sequence.parse().map_err(|_| bad("sequence"))?;
        let timestamp: u32 = timestamp.parse().map_err(|_| bad("timestamp"))?;
        let payload_type: u8 = payload_type.parse().map_err(|_| bad("payload type"))?;
        if payload.len() % 2 != 0 {
            return Err(bad("payload"));
        }
        let mut bytes = vec![0x80, payload_type & 0x7F];
        bytes.extend_from_slice(&sequence.to_be_bytes());
        bytes.extend_from_slice(&timestamp.to_be_bytes());
        bytes.extend_from_slice(&0x5157_4C54u32.to_be_bytes());
        for k in (0..payload.len()).step_by(2) {
            bytes.push(u8::from_str_radix(&payload[k..k + 2], 16).map_err(|_| bad("payload"))?);
        }
        packets.push(Packet { arrival_us, bytes });
    }
    packets.sort_by_key(|p| p.arrival_us);
    Ok(packets)
}

fn run(schedule: &str, output: &str) -> Result<(), String> {
    let text = std::fs::read_to_string(schedule).map_err(|e| format!("{schedule}: {e}"))?;
    let packets = parse_schedule(&text).map_err(|e| format!("{schedule}: {e}"))?;
    let payload_type = packets.first().map_or(0, |p| p.bytes[1]);
    let codec = if payload_type == 8 { Codec::Pcma } else { Codec::Pcmu };
    let far_end = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 40000);
    let start = Instant::now();
    let mut session = MediaSession::new(
        SessionConfig {
            local_ssrc: 1,
            codec,
            payload_type,
            telephone_event_payload_type: Some(101),
            remote_rtp: Some(far_end),
            remote_rtcp: None,
            direction: Direction::SendRecv,
            symmetric_rtp: true,
            inband_dtmf: false,
            jitter: JitterConfig::default(),
            initial_sequence: 1,
            initial_timestamp: 0,
            rtcp_interval: Duration::from_secs(5),
            media_timeout: Duration::from_secs(30),
        },
        start,
    );
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(output, spec).map_err(|e| format!("{output}: {e}"))?;
    let last = packets.last().map_or(0, |p| p.arrival_us);
    // The tick runs at its own phase relative to the sender's clock (7 ms here).
    let mut tick_us: u64 = std::env::var("QUALITY_RECEIVER_PHASE_US")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7_000);
    let mut next = 0;
    let trace = std::env::var_os("QUALITY_RECEIVER_TRACE").is_some();
    while tick_us <= last + 1_000_000 {
        while next < packets.len() && packets[next].arrival_us <= tick_us {
            let at = start + Duration::from_micros(packets[next].arrival_us);
            let _ = session.handle_rtp(at, far_end, &packets[next].bytes);
            next += 1;
        }
        let _ = session.tick(start + Duration::from_micros(tick_us));
        if trace {
            let stats = session.jitter_stats();
            eprintln!(
                "tick {:>7} audio {} lost {} grown {} shrunk {} late {}",
                tick_us / 1000,
                session.received_audio(),
                stats.lost,
                stats.grown,
                stats.shrunk,
                stats.late
            );
        }
        for &sample in session.received_frame() {
            writer.write_sample(sample).map_err(|e| format!("{output}: {e}"))?;
        }
        tick_us += 20_000;
    }
    writer.finalize().map_err(|e| format!("{output}: {e}"))?;
    let stats = session.jitter_stats();
    println!(
        "{{\"accepted\":{},\"late\":{},\"lost\":{},\"grown\":{},\"shrunk\":{}}}",
        stats.accepted, stats.late, stats.lost, stats.grown, stats.shrunk
    );
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, schedule, output] = &args[..] else {
        eprintln!("usage: santral-quality-receiver SCHEDULE OUTPUT.wav");
        return ExitCode::from(2);
    };
    match run(schedule, output) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}
