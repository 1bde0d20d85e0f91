//! RTP reception statistics and RTCP sender/receiver reports (RFC 3550 §6.4, appendix A.3 and
//! A.8), with round-trip time from the LSR/DLSR fields. Packets are built and parsed with
//! `rtc-rtcp`. Sans-IO: time comes in as `now`; wall-clock (NTP) time is derived from an anchor
//! taken when the session started.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rtc_rtcp::receiver_report::ReceiverReport;
use rtc_rtcp::reception_report::ReceptionReport;
use rtc_rtcp::sender_report::SenderReport;
use rtc_rtp::header::Header as RtpHeader;
use thiserror::Error;

/// Seconds between 1900 (NTP epoch) and 1970 (Unix epoch).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;
/// RFC 3550 A.1: sequence jumps beyond this restart the stats.
const MAX_DROPOUT: u16 = 3000;
const MAX_MISORDER: u16 = 100;

#[derive(Debug, Error)]
pub enum RtcpError {
    #[error("malformed RTCP: {0}")]
    Malformed(String),
}

/// Maps monotonic `Instant`s to NTP timestamps.
#[derive(Debug, Clone, Copy)]
pub struct NtpClock {
    anchor: Instant,
    anchor_since_unix: Duration,
}

impl NtpClock {
    pub fn new(anchor: Instant, wall: SystemTime) -> Self {
        NtpClock {
            anchor,
            anchor_since_unix: wall.duration_since(UNIX_EPOCH).unwrap_or_default(),
        }
    }

    /// 64-bit NTP timestamp (32.32 fixed point seconds since 1900).
    pub fn ntp(&self, now: Instant) -> u64 {
        let since_unix = self.anchor_since_unix + now.saturating_duration_since(self.anchor);
        let seconds = since_unix.as_secs() + NTP_UNIX_OFFSET;
        let fraction = ((since_unix.subsec_nanos() as u64) << 32) / 1_000_000_000;
        (seconds << 32) | fraction
    }
}

/// The middle 32 bits of an NTP timestamp (RFC 3550 LSR units: 1/65536 s).
fn ntp_middle(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// Receive-side statistics for one far-end source (RFC 3550 A.1/A.3/A.8).
#[derive(Debug, Clone, Default)]
pub struct ReceptionStats {
    pub ssrc: u32,
    started: bool,
    max_seq: u16,
    cycles: u32,
    base_seq: u32,
    bad_seq: u32,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    transit: Option<i64>,
    /// Interarrival jitter in timestamp units, ×16 as in A.8.
    jitter_q4: u64,
    /// LSR of the last SR from this source and when it arrived.
    last_sr: Option<(u32, Instant)>,
    max_jitter_units: u32,
}

impl ReceptionStats {
    /// Records one RTP packet; `arrival_units` is the arrival time in RTP clock units.
    pub fn on_packet(&mut self, ssrc: u32, sequence: u16, timestamp: u32, arrival_units: u64) {
        self.record(ssrc, sequence, Some((timestamp, arrival_units)));
    }

    /// Records a packet of the stream that does not advance the media clock (an RFC 4733
    /// event repeats its start timestamp): counted for loss, left out of the jitter estimate.
    pub fn on_untimed_packet(&mut self, ssrc: u32, sequence: u16) {
        self.record(ssrc, sequence, None);
    }

    fn record(&mut self, ssrc: u32, sequence: u16, timing: Option<(u32, u64)>) {
        if !self.started || ssrc != self.ssrc {
            *self = ReceptionStats {
                ssrc,
                started: true,
                max_seq: sequence,
                base_seq: sequence as u32,
                bad_seq: u32::MAX,
                ..ReceptionStats::default()
            };
            self.max_seq = sequence;
        } else {
            let delta = sequence.wrapping_sub(self.max_seq);
            if delta < MAX_DROPOUT {
                if sequence < self.max_seq {
                    self.cycles += 1 << 16;
                }
                self.max_seq = sequence;
            } else if delta <= u16::MAX - MAX_MISORDER {
                // Large jump: restart after two sequential packets (A.1).
                if sequence as u32 == self.bad_seq {
                    let last_sr = self.last_sr;
                    *self = ReceptionStats {
                        ssrc,
                        started: true,
                        max_seq: sequence,
                        base_seq: sequence as u32,
                        bad_seq: u32::MAX,
                        last_sr,
                        ..ReceptionStats::default()
                    };
                } else {
                    self.bad_seq = (sequence as u32 + 1) & 0xFFFF;
                    return;
                }
            }
            // else: duplicate or reordered, counted below.
        }
        self.received += 1;
        let Some((timestamp, arrival_units)) = timing else {
            return;
        };
        let transit = arrival_units as i64 - timestamp as i64;
        if let Some(previous) = self.transit {
            let d = (transit - previous).unsigned_abs();
            // J += (|D| - J) / 16, in the ×16 fixed point of A.8.
            if d < 8000 * 10 {
                self.jitter_q4 =
                    (self.jitter_q4 as i64 + d as i64 - ((self.jitter_q4 as i64 + 8) >> 4)) as u64;
            }
        }
        self.transit = Some(transit);
        self.max_jitter_units = self.max_jitter_units.max(self.jitter_units());
    }

    pub fn jitter_units(&self) -> u32 {
        (self.jitter_q4 >> 4) as u32
    }

    pub fn max_jitter_units(&self) -> u32 {
        self.max_jitter_units
    }

    pub fn extended_max(&self) -> u32 {
        self.cycles + self.max_seq as u32
    }

    pub fn expected(&self) -> u64 {
        if !self.started {
            return 0;
        }
        (self.extended_max() as u64 + 1).saturating_sub(self.base_seq as u64)
    }

    pub fn received(&self) -> u64 {
        self.received
    }

    /// Cumulative packets lost (may be negative with duplicates; clamped at 0 here).
    pub fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.received)
    }

    pub fn on_sender_report(&mut self, ntp_time: u64, now: Instant) {
        self.last_sr = Some((ntp_middle(ntp_time), now));
    }

    /// Builds the report block and starts a new fraction-lost interval.
    pub fn report_block(&mut self, now: Instant) -> ReceptionReport {
        let expected = self.expected();
        let expected_interval = expected.saturating_sub(self.expected_prior);
        let received_interval = self.received.saturating_sub(self.received_prior);
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = expected_interval.saturating_sub(received_interval);
        let fraction_lost = (lost_interval << 8)
            .checked_div(expected_interval)
            .map_or(0, |f| f.min(255) as u8);
        let (last_sender_report, delay) = match self.last_sr {
            Some((lsr, at)) => (
                lsr,
                (now.saturating_duration_since(at).as_secs_f64() * 65536.0) as u32,
            ),
            None => (0, 0),
        };
        ReceptionReport {
            ssrc: self.ssrc,
            fraction_lost,
            total_lost: self.lost().min(0x7F_FFFF) as u32,
            last_sequence_number: self.extended_max(),
            jitter: self.jitter_units(),
            last_sender_report,
            delay,
        }
    }
}

/// Send-side counters for the SR.
#[derive(Debug, Clone, Copy, Default)]
pub struct SenderStats {
    pub packets: u32,
    pub octets: u32,
    pub last_timestamp: u32,
}

impl SenderStats {
    pub fn on_sent(&mut self, payload_len: usize, timestamp: u32) {
        self.packets = self.packets.wrapping_add(1);
        self.octets = self.octets.wrapping_add(payload_len as u32);
        self.last_timestamp = timestamp;
    }
}

/// What an incoming RTCP compound packet told us.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RtcpFeedback {
    /// Round-trip time measured from a report block about our stream.
    pub round_trip: Option<Duration>,
    /// The far end's view of our stream: fraction lost (0–255) and jitter (timestamp units).
    pub remote_fraction_lost: Option<u8>,
    pub remote_jitter_units: Option<u32>,
    pub goodbye: bool,
}

/// Builds an SR (if we have sent since the last report) or an RR, with one report block when
/// we are receiving. Returns the marshalled compound packet (RTCP is low-rate: allocation here
/// is fine, unlike the RTP path).
pub fn build_report(
    local_ssrc: u32,
    clock: &NtpClock,
    now: Instant,
    rtp_timestamp_now: u32,
    sender: Option<&SenderStats>,
    reception: Option<&mut ReceptionStats>,
) -> Result<Vec<u8>, RtcpError> {
    let reports: Vec<ReceptionReport> = reception
        .filter(|r| r.started)
        .map(|r| r.report_block(now))
        .into_iter()
        .collect();
    let bytes = match sender {
        Some(sent) => SenderReport {
            ssrc: local_ssrc,
            ntp_time: clock.ntp(now),
            rtp_time: rtp_timestamp_now,
            packet_count: sent.packets,
            octet_count: sent.octets,
            reports,
            ..SenderReport::default()
        }
        .marshal(),
        None => ReceiverReport {
            ssrc: local_ssrc,
            reports,
            ..ReceiverReport::default()
        }
        .marshal(),
    };
    bytes
        .map(|b| b.to_vec())
        .map_err(|e| RtcpError::Malformed(e.to_string()))
}

use rtc_shared::marshal::Marshal as _;

/// A receiver report followed by a BYE (RFC 3550 §6.6: a BYE goes in a compound packet that
/// starts with a report).
pub fn build_goodbye(local_ssrc: u32) -> Result<Vec<u8>, RtcpError> {
    let mut bytes = ReceiverReport {
        ssrc: local_ssrc,
        ..ReceiverReport::default()
    }
    .marshal()
    .map_err(|e| RtcpError::Malformed(e.to_string()))?
    .to_vec();
    let goodbye = rtc_rtcp::goodbye::Goodbye {
        sources: vec![local_ssrc],
        reason: bytes::Bytes::from_static(b"hangup"),
    }
    .marshal()
    .map_err(|e| RtcpError::Malformed(e.to_string()))?;
    bytes.extend_from_slice(&goodbye);
    Ok(bytes)
}

/// Parses an incoming RTCP datagram, updating `reception` with SR timing and returning feedback
/// about our own stream (`local_ssrc`).
pub fn handle_report(
    datagram: &[u8],
    local_ssrc: u32,
    clock: &NtpClock,
    now: Instant,
    reception: &mut ReceptionStats,
) -> Result<RtcpFeedback, RtcpError> {
    let mut buf = datagram;
    let packets =
        rtc_rtcp::packet::unmarshal(&mut buf).map_err(|e| RtcpError::Malformed(e.to_string()))?;
    let mut feedback = RtcpFeedback::default();
    let now_middle = ntp_middle(clock.ntp(now));
    let mut blocks: Vec<ReceptionReport> = Vec::new();
    for packet in &packets {
        let any = packet.as_any();
        if let Some(sr) = any.downcast_ref::<SenderReport>() {
            reception.on_sender_report(sr.ntp_time, now);
            blocks.extend(sr.reports.iter().cloned());
        } else if let Some(rr) = any.downcast_ref::<ReceiverReport>() {
            blocks.extend(rr.reports.iter().cloned());
        } else if any.downcast_ref::<rtc_rtcp::goodbye::Goodbye>().is_some() {
            feedback.goodbye = true;
        }
    }
    for block in blocks.iter().filter(|b| b.ssrc == local_ssrc) {
        feedback.remote_fraction_lost = Some(block.fraction_lost);
        feedback.remote_jitter_units = Some(block.jitter);
        if block.last_sender_report != 0 {
            let rtt_units = now_middle
                .wrapping_sub(block.last_sender_report)
                .wrapping_sub(block.delay);
            // Ignore nonsense (clock steps): RTT above 60 s.
            if rtt_units < 60 * 65536 {
                feedback.round_trip = Some(Duration::from_secs_f64(rtt_units as f64 / 65536.0));
            }
        }
    }
    Ok(feedback)
}

/// True if the datagram looks like RTCP rather than RTP (RFC 5761 §4: PT 64–95 range in the
/// second byte, i.e. 192–223).
pub fn looks_like_rtcp(datagram: &[u8]) -> bool {
    datagram.len() >= 8 && (192..=223).contains(&datagram[1])
}

/// Parses the RTP header with `rtc-rtp` (nothing is allocated for plain packets without CSRCs
/// or extensions), returning it and the payload's byte range in `datagram`.
pub fn parse_rtp_header(datagram: &[u8]) -> Result<(RtpHeader, std::ops::Range<usize>), String> {
    use rtc_shared::marshal::{MarshalSize as _, Unmarshal as _};
    let mut buf = datagram;
    let header = RtpHeader::unmarshal(&mut buf).map_err(|e| e.to_string())?;
    if header.version != 2 {
        return Err(format!("RTP version {}", header.version));
    }
    let offset = header.marshal_size();
    let mut end = datagram.len();
    if header.padding {
        let pad = *datagram.last().unwrap_or(&0) as usize;
        if pad == 0 || offset + pad > end {
            return Err("bad RTP padding".to_owned());
        }
        end -= pad;
    }
    if offset > end {
        return Err("RTP header longer than packet".to_owned());
    }
    Ok((header, offset..end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_matches_rfc3550_a8_for_a_known_arrival_pattern() {
        let mut stats = ReceptionStats::default();
        // Packets every 160 units, arrivals alternately 0 and +80 units late: |D| = 80 each time.
        let mut expected = 0.0f64;
        for i in 0..200u64 {
            let arrival = 160 * i + if i % 2 == 1 { 80 } else { 0 };
            stats.on_packet(7, i as u16, (160 * i) as u32, arrival);
            if i > 0 {
                expected += (80.0 - expected) / 16.0;
            }
        }
        assert!(
            (stats.jitter_units() as f64 - expected).abs() <= 1.0,
            "{} vs {expected}",
            stats.jitter_units()
        );
        assert!(stats.jitter_units() >= 78);
    }

    #[test]
    fn loss_and_fraction_lost() {
        let mut stats = ReceptionStats::default();
        let now = Instant::now();
        for i in 0..100u16 {
            if i % 10 != 3 {
                stats.on_packet(9, i, 160 * i as u32, 160 * i as u64);
            }
        }
        assert_eq!(stats.expected(), 100);
        assert_eq!(stats.lost(), 10);
        let block = stats.report_block(now);
        assert_eq!(block.total_lost, 10);
        assert_eq!(block.fraction_lost, (10 * 256 / 100) as u8);
        assert_eq!(block.last_sequence_number, 99);
        // Next interval without loss.
        for i in 100..150u16 {
            stats.on_packet(9, i, 160 * i as u32, 160 * i as u64);
        }
        assert_eq!(stats.report_block(now).fraction_lost, 0);
    }

    #[test]
    fn sequence_wrap_counts_cycles() {
        let mut stats = ReceptionStats::default();
        for i in 0..20u16 {
            stats.on_packet(1, 65530u16.wrapping_add(i), 0, 0);
        }
        assert_eq!(stats.extended_max(), (1 << 16) + 13);
        assert_eq!(stats.lost(), 0);
    }

    #[test]
    fn round_trip_time_from_sr_and_rr() {
        let start = Instant::now();
        let clock_a = NtpClock::new(start, SystemTime::now());
        let clock_b = NtpClock::new(start, SystemTime::now());
        let mut stats_b = ReceptionStats::default();
        stats_b.on_packet(0xA, 1, 0, 0);
        // A sends an SR at t=0; it reaches B at t=30 ms.
        let sender = SenderStats {
            packets: 10,
            octets: 1600,
            last_timestamp: 0,
        };
        let sr = build_report(0xA, &clock_a, start, 0, Some(&sender), None).unwrap_or_default();
        let mut unused = ReceptionStats::default();
        let _ = handle_report(
            &sr,
            0xB,
            &clock_b,
            start + Duration::from_millis(30),
            &mut stats_b,
        );
        // B answers at t=130 ms (100 ms hold) with an RR; it reaches A at t=160 ms.
        let rr = build_report(
            0xB,
            &clock_b,
            start + Duration::from_millis(130),
            0,
            None,
            Some(&mut stats_b),
        )
        .unwrap_or_default();
        let feedback = handle_report(
            &rr,
            0xA,
            &clock_a,
            start + Duration::from_millis(160),
            &mut unused,
        );
        let rtt = feedback.ok().and_then(|f| f.round_trip).unwrap_or_default();
        assert!((rtt.as_secs_f64() - 0.060).abs() < 0.001, "rtt {rtt:?}");
    }

    #[test]
    fn garbage_rtcp_is_an_error() {
        let clock = NtpClock::new(Instant::now(), SystemTime::now());
        let mut stats = ReceptionStats::default();
        assert!(
            handle_report(
                &[0x80, 200, 0, 50, 1],
                1,
                &clock,
                Instant::now(),
                &mut stats
            )
            .is_err()
        );
        assert!(handle_report(&[], 1, &clock, Instant::now(), &mut stats).is_err());
    }

    #[test]
    fn rtp_header_parse_rejects_truncation_and_padding_abuse() {
        assert!(parse_rtp_header(&[0x80, 0, 0]).is_err());
        let mut packet = vec![0xA0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 5, 5, 9];
        assert!(parse_rtp_header(&packet).is_err(), "padding 9 > payload");
        packet.pop();
        packet.push(2);
        assert_eq!(
            parse_rtp_header(&packet).map(|(_, range)| range),
            Ok(12..13)
        );
    }
}
