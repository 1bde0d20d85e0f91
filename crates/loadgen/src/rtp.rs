//! RTP on the hot path: writing a header in place, reading the fields the generator accounts
//! for, and tracking one received stream (sequence gaps, receive-interval jitter).

use crate::stats::Histogram;

pub const HEADER_LEN: usize = 12;
/// 20 ms at 8 kHz.
pub const SAMPLES_PER_PACKET: u32 = 160;
/// Nominal packet interval in microseconds.
pub const PACKET_INTERVAL_US: u64 = 20_000;

/// Writes a 12-byte RTP header (version 2, no CSRC, no extension) at the start of `out`.
#[inline]
pub fn write_header(
    out: &mut [u8; HEADER_LEN],
    marker: bool,
    payload_type: u8,
    seq: u16,
    timestamp: u32,
    ssrc: u32,
) {
    out[0] = 0x80;
    out[1] = (u8::from(marker) << 7) | (payload_type & 0x7f);
    out[2..4].copy_from_slice(&seq.to_be_bytes());
    out[4..8].copy_from_slice(&timestamp.to_be_bytes());
    out[8..12].copy_from_slice(&ssrc.to_be_bytes());
}

/// The header fields of a received packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderView {
    pub marker: bool,
    pub payload_type: u8,
    pub seq: u16,
    pub timestamp: u32,
    pub ssrc: u32,
}

/// Reads an RTP header; `None` for anything that is not RTP version 2 of a sane length
/// (RTCP payload types 200–204 on the same port are not RTP either).
#[inline]
pub fn read_header(packet: &[u8]) -> Option<HeaderView> {
    if packet.len() < HEADER_LEN || packet[0] >> 6 != 2 {
        return None;
    }
    let csrc = usize::from(packet[0] & 0x0f) * 4;
    if packet.len() < HEADER_LEN + csrc {
        return None;
    }
    let payload_type = packet[1] & 0x7f;
    if (72..=76).contains(&payload_type) {
        return None; // RTCP (RFC 5761 §4)
    }
    Some(HeaderView {
        marker: packet[1] & 0x80 != 0,
        payload_type,
        seq: u16::from_be_bytes([packet[2], packet[3]]),
        timestamp: u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]),
        ssrc: u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]),
    })
}

/// One received stream: counts, sequence gaps, and the interval jitter of consecutive packets.
#[derive(Debug, Clone, Default)]
pub struct StreamReceiver {
    received: u64,
    /// Packets expected by the sequence numbers of earlier sources (SSRC changes).
    expected_before: u64,
    /// Extended (wrap-counted) sequence numbers of the current source.
    first_ext: Option<u64>,
    highest_ext: u64,
    /// Last in-order packet: extended seq and arrival (ns).
    last: Option<(u64, u64)>,
    ssrc: Option<u32>,
}

impl StreamReceiver {
    /// Accounts one packet. `arrival_ns` is its arrival time (any clock, only differences are
    /// used); `|interval − 20 ms|` between consecutive sequence numbers goes into `jitter_us`.
    #[inline]
    pub fn on_packet(&mut self, header: &HeaderView, arrival_ns: u64, jitter_us: &mut Histogram) {
        if self.ssrc != Some(header.ssrc) {
            // A new source (the server may switch streams): restart sequence accounting.
            self.expected_before += self.expected_current();
            self.ssrc = Some(header.ssrc);
            self.first_ext = None;
            self.last = None;
        }
        self.received += 1;
        let ext = match self.first_ext {
            None => {
                let ext = u64::from(header.seq) + (1 << 16);
                self.first_ext = Some(ext);
                self.highest_ext = ext;
                ext
            }
            Some(_) => {
                // The extended value nearest the highest seen (handles wrap and reordering).
                let cycle = self.highest_ext & !0xffff;
                let seq = u64::from(header.seq);
                let ext = [cycle.saturating_sub(1 << 16), cycle, cycle + (1 << 16)]
                    .into_iter()
                    .map(|c| c | seq)
                    .min_by_key(|c| c.abs_diff(self.highest_ext))
                    .unwrap_or(self.highest_ext);
                self.highest_ext = self.highest_ext.max(ext);
                ext
            }
        };
        match self.last {
            Some((last_ext, last_arrival)) if ext == last_ext + 1 => {
                let interval_us = arrival_ns.saturating_sub(last_arrival) / 1_000;
                jitter_us.record(interval_us.abs_diff(PACKET_INTERVAL_US));
                self.last = Some((ext, arrival_ns));
            }
            Some((last_ext, _)) if ext <= last_ext => {} // late or duplicate
            _ => self.last = Some((ext, arrival_ns)),
        }
    }

    fn expected_current(&self) -> u64 {
        self.first_ext
            .map_or(0, |first| self.highest_ext - first + 1)
    }

    pub fn received(&self) -> u64 {
        self.received
    }

    /// Packets missing from the sequence numbers seen (never negative; duplicates do not count).
    pub fn lost(&self) -> u64 {
        (self.expected_before + self.expected_current()).saturating_sub(self.received)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(seq: u16, ssrc: u32) -> HeaderView {
        HeaderView {
            marker: false,
            payload_type: 8,
            seq,
            timestamp: 0,
            ssrc,
        }
    }

    #[test]
    fn header_round_trips() {
        let mut buf = [0u8; HEADER_LEN];
        write_header(&mut buf, true, 101, 0xfffe, 0x1234_5678, 0xdead_beef);
        let view = read_header(&buf).unwrap();
        assert_eq!(
            view,
            HeaderView {
                marker: true,
                payload_type: 101,
                seq: 0xfffe,
                timestamp: 0x1234_5678,
                ssrc: 0xdead_beef
            }
        );
    }

    #[test]
    fn non_rtp_is_refused() {
        assert_eq!(read_header(&[0x80; 11]), None);
        assert_eq!(read_header(&[0x40; 12]), None); // version 1
        let mut rtcp = [0u8; 12];
        rtcp[0] = 0x80;
        rtcp[1] = 200; // SR
        assert_eq!(read_header(&rtcp), None);
        let mut csrc = [0u8; 12];
        csrc[0] = 0x82; // claims two CSRCs that are not there
        assert_eq!(read_header(&csrc), None);
    }

    #[test]
    fn gaps_count_as_lost_across_wrap() {
        let mut rx = StreamReceiver::default();
        let mut jitter = Histogram::new();
        let mut t = 0u64;
        for seq in [65_533u16, 65_534, 65_535, 0, 3, 4] {
            rx.on_packet(&header(seq, 1), t, &mut jitter);
            t += 20_000_000;
        }
        assert_eq!(rx.received(), 6);
        assert_eq!(rx.lost(), 2); // 1 and 2
        // Intervals only between consecutive numbers: 65533→…→0 (3) and 3→4 (1).
        assert_eq!(jitter.count(), 4);
        assert_eq!(jitter.max(), 0);
    }

    #[test]
    fn interval_jitter_is_distance_from_20_ms() {
        let mut rx = StreamReceiver::default();
        let mut jitter = Histogram::new();
        rx.on_packet(&header(10, 1), 0, &mut jitter);
        rx.on_packet(&header(11, 1), 23_000_000, &mut jitter); // 3 ms late
        rx.on_packet(&header(12, 1), 41_000_000, &mut jitter); // 2 ms early
        assert_eq!(jitter.count(), 2);
        assert!(
            (2_000..=2_007).contains(&jitter.percentile(50.0)),
            "within the 8 µs bucket"
        );
        assert_eq!(jitter.max(), 3_000);
    }

    #[test]
    fn duplicates_and_reordering_do_not_invent_loss() {
        let mut rx = StreamReceiver::default();
        let mut jitter = Histogram::new();
        for seq in [1u16, 3, 2, 2, 4] {
            rx.on_packet(&header(seq, 9), 0, &mut jitter);
        }
        assert_eq!(rx.lost(), 0);
        assert_eq!(rx.received(), 5);
    }

    #[test]
    fn a_new_ssrc_restarts_sequence_accounting() {
        let mut rx = StreamReceiver::default();
        let mut jitter = Histogram::new();
        for seq in [100u16, 101, 103] {
            rx.on_packet(&header(seq, 1), 0, &mut jitter);
        }
        for seq in [7u16, 8] {
            rx.on_packet(&header(seq, 2), 0, &mut jitter);
        }
        assert_eq!(rx.received(), 5);
        assert_eq!(rx.lost(), 1);
    }
}
