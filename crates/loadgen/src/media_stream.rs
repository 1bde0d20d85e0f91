//! One call's RTP: the packets it sends on the shared tick (audio frames, the digit press) and
//! the accounting of the packets it receives.

use std::net::SocketAddr;
use std::time::Instant;

use crate::audio::{EncodedAudio, FRAME_BYTES};
use crate::digit::DigitSender;
use crate::rtp::{self, HEADER_LEN, HeaderView, SAMPLES_PER_PACKET, StreamReceiver};
use crate::stats::Histogram;

/// Longest packet the generator builds (header + one G.711 frame).
pub const MAX_PACKET: usize = HEADER_LEN + FRAME_BYTES;

/// A press to send at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedDigit {
    pub event: u8,
    pub at: Instant,
}

#[derive(Debug, Clone)]
pub struct MediaStream {
    /// Where packets go (the SDP answer's address; symmetric RTP makes it the source too).
    pub remote: SocketAddr,
    /// Index of the generator's RTP socket this call uses.
    pub socket: usize,
    payload_type: u8,
    telephone_event: Option<u8>,
    ssrc: u32,
    seq: u16,
    timestamp_base: u32,
    first_tick: Option<u64>,
    frame_offset: u64,
    planned_digit: Option<PlannedDigit>,
    digit: Option<DigitSender>,
    pub sent: u64,
    pub digit_packets: u64,
    /// The press could not be sent: the answer kept no telephone-event payload type.
    pub digit_refused: bool,
    pub receiver: StreamReceiver,
}

impl MediaStream {
    pub fn new(
        remote: SocketAddr,
        socket: usize,
        payload_type: u8,
        telephone_event: Option<u8>,
        ssrc: u32,
        planned_digit: Option<PlannedDigit>,
    ) -> MediaStream {
        MediaStream {
            remote,
            socket,
            payload_type,
            telephone_event,
            ssrc,
            // Start numbers derived from the SSRC: distinct per call, no randomness needed.
            seq: (ssrc >> 16) as u16,
            timestamp_base: ssrc.rotate_left(7),
            first_tick: None,
            frame_offset: u64::from(ssrc % 50),
            planned_digit,
            digit: None,
            sent: 0,
            digit_packets: 0,
            digit_refused: false,
            receiver: StreamReceiver::default(),
        }
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Writes this tick's packet into `out`; returns its length.
    #[inline]
    pub fn write_packet(
        &mut self,
        tick: u64,
        now: Instant,
        audio: &EncodedAudio,
        out: &mut [u8; MAX_PACKET],
    ) -> usize {
        let first = *self.first_tick.get_or_insert(tick);
        let elapsed = tick.saturating_sub(first);
        let timestamp = self
            .timestamp_base
            .wrapping_add((elapsed as u32).wrapping_mul(SAMPLES_PER_PACKET));
        if let Some(planned) = self.planned_digit
            && now >= planned.at
        {
            self.planned_digit = None;
            match self.telephone_event {
                Some(_) => self.digit = Some(DigitSender::new(planned.event, timestamp)),
                None => self.digit_refused = true,
            }
        }
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        self.sent += 1;
        let Some((head, body)) = out.split_first_chunk_mut::<HEADER_LEN>() else {
            return 0; // cannot happen: MAX_PACKET > HEADER_LEN
        };
        if let (Some(digit), Some(pt)) = (self.digit.as_mut(), self.telephone_event)
            && let Some(packet) = digit.next_packet()
        {
            self.digit_packets += 1;
            if digit.is_finished() {
                self.digit = None;
            }
            rtp::write_header(head, packet.marker, pt, seq, packet.timestamp, self.ssrc);
            body[..4].copy_from_slice(&packet.payload);
            return HEADER_LEN + 4;
        }
        rtp::write_header(
            head,
            elapsed == 0,
            self.payload_type,
            seq,
            timestamp,
            self.ssrc,
        );
        body.copy_from_slice(audio.frame(self.frame_offset + elapsed));
        MAX_PACKET
    }

    /// Accounts a packet received from the server.
    #[inline]
    pub fn on_packet(&mut self, header: &HeaderView, arrival_ns: u64, jitter_us: &mut Histogram) {
        self.receiver.on_packet(header, arrival_ns, jitter_us);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::read_header;
    use crate::sdp::Law;
    use std::time::Duration;

    #[test]
    fn audio_packets_advance_seq_and_timestamp_and_the_digit_interrupts_them() {
        let audio = EncodedAudio::tone(Law::Pcma);
        let t0 = Instant::now();
        let digit = PlannedDigit {
            event: 9,
            at: t0 + Duration::from_millis(40),
        };
        let mut stream = MediaStream::new(
            "127.0.0.1:10000".parse().unwrap(),
            0,
            8,
            Some(101),
            0x0102_0304,
            Some(digit),
        );
        let mut buf = [0u8; MAX_PACKET];
        let mut headers = Vec::new();
        for tick in 100..115u64 {
            let now = t0 + Duration::from_millis(20 * (tick - 100));
            let len = stream.write_packet(tick, now, &audio, &mut buf);
            let header = read_header(&buf[..len]).unwrap();
            headers.push((header, len));
        }
        let (first, len) = headers[0];
        assert!(first.marker);
        assert_eq!((first.payload_type, len), (8, MAX_PACKET));
        assert_eq!(headers[1].0.seq, first.seq.wrapping_add(1));
        assert_eq!(headers[1].0.timestamp, first.timestamp.wrapping_add(160));
        // Ticks 2..=9 are the press (8 packets, one timestamp), then audio resumes on time.
        let press: Vec<_> = headers[2..10].iter().collect();
        assert!(
            press
                .iter()
                .all(|(h, len)| h.payload_type == 101 && *len == 16)
        );
        assert!(press[0].0.marker);
        assert!(
            press
                .iter()
                .all(|(h, _)| h.timestamp == first.timestamp.wrapping_add(320))
        );
        let resumed = headers[10].0;
        assert_eq!(resumed.payload_type, 8);
        assert_eq!(resumed.timestamp, first.timestamp.wrapping_add(10 * 160));
        assert_eq!(resumed.seq, first.seq.wrapping_add(10));
        assert_eq!(stream.sent, 15);
        assert_eq!(stream.digit_packets, 8);
    }

    #[test]
    fn without_telephone_event_the_press_is_refused_not_sent() {
        let audio = EncodedAudio::tone(Law::Pcmu);
        let t0 = Instant::now();
        let digit = PlannedDigit { event: 1, at: t0 };
        let mut stream = MediaStream::new(
            "127.0.0.1:10000".parse().unwrap(),
            0,
            0,
            None,
            7,
            Some(digit),
        );
        let mut buf = [0u8; MAX_PACKET];
        let len = stream.write_packet(0, t0, &audio, &mut buf);
        assert_eq!(len, MAX_PACKET);
        assert!(stream.digit_refused);
        assert_eq!(stream.digit_packets, 0);
    }
}
