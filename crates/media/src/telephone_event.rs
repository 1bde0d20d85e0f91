//! RFC 4733 telephone-events (DTMF over RTP): a receiver that reports each key press once
//! despite the redundant packets of one event, and a sender that emits the start, the updates
//! every packet time and the three redundant end packets.

use thiserror::Error;

/// A DTMF key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DtmfDigit(u8);

impl DtmfDigit {
    /// From the RFC 4733 event code (0–15).
    pub fn from_event_code(code: u8) -> Option<DtmfDigit> {
        (code < 16).then_some(DtmfDigit(code))
    }

    /// From a key character: 0–9, *, #, A–D (case-insensitive).
    pub fn from_char(key: char) -> Option<DtmfDigit> {
        let code = match key.to_ascii_uppercase() {
            '0'..='9' => key as u8 - b'0',
            '*' => 10,
            '#' => 11,
            'A' => 12,
            'B' => 13,
            'C' => 14,
            'D' => 15,
            _ => return None,
        };
        Some(DtmfDigit(code))
    }

    pub fn event_code(self) -> u8 {
        self.0
    }

    pub fn as_char(self) -> char {
        b"0123456789*#ABCD"[self.0 as usize & 15] as char
    }

    /// All sixteen keys, in event-code order.
    pub fn all() -> impl Iterator<Item = DtmfDigit> {
        (0..16).map(DtmfDigit)
    }
}

impl std::fmt::Display for DtmfDigit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.as_char())
    }
}

/// Where a digit was detected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtmfSource {
    Rfc4733,
    InBand,
}

/// A key press seen on the incoming stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtmfEvent {
    /// A key went down: reported once per press.
    Pressed {
        digit: DtmfDigit,
        source: DtmfSource,
    },
    /// The key was released after `duration_ms`.
    Released {
        digit: DtmfDigit,
        source: DtmfSource,
        duration_ms: u32,
    },
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum TelephoneEventError {
    #[error("telephone-event payload is {0} bytes, expected at least 4")]
    TooShort(usize),
    #[error("telephone-event code {0} is not a DTMF key")]
    NotDtmf(u8),
}

/// Decoded RFC 4733 payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEventPayload {
    pub event: u8,
    pub end: bool,
    pub volume: u8,
    pub duration: u16,
}

impl TelephoneEventPayload {
    pub fn parse(payload: &[u8]) -> Result<Self, TelephoneEventError> {
        if payload.len() < 4 {
            return Err(TelephoneEventError::TooShort(payload.len()));
        }
        Ok(TelephoneEventPayload {
            event: payload[0],
            end: payload[1] & 0x80 != 0,
            volume: payload[1] & 0x3F,
            duration: u16::from_be_bytes([payload[2], payload[3]]),
        })
    }

    pub fn write(&self, out: &mut [u8; 4]) {
        out[0] = self.event;
        out[1] = (if self.end { 0x80 } else { 0 }) | (self.volume & 0x3F);
        out[2..4].copy_from_slice(&self.duration.to_be_bytes());
    }
}

/// Receive side: one press per (SSRC, timestamp) event.
#[derive(Debug, Default, Clone)]
pub struct TelephoneEventReceiver {
    /// (ssrc, RTP timestamp, event) of the event being received.
    current: Option<(u32, u32, u8)>,
    ended: bool,
    clock_rate: u32,
}

impl TelephoneEventReceiver {
    pub fn new(clock_rate: u32) -> Self {
        TelephoneEventReceiver {
            current: None,
            ended: false,
            clock_rate: clock_rate.max(1),
        }
    }

    /// Handles one telephone-event packet; up to two events come out (a press and, for an end
    /// packet, its release). `out` is filled from the start; returns how many were written.
    pub fn on_packet(
        &mut self,
        ssrc: u32,
        timestamp: u32,
        payload: &[u8],
        out: &mut [Option<DtmfEvent>; 2],
    ) -> Result<usize, TelephoneEventError> {
        *out = [None, None];
        let event = TelephoneEventPayload::parse(payload)?;
        let digit = DtmfDigit::from_event_code(event.event)
            .ok_or(TelephoneEventError::NotDtmf(event.event))?;
        let key = (ssrc, timestamp, event.event);
        let mut written = 0;
        if self.current != Some(key) {
            self.current = Some(key);
            self.ended = false;
            out[written] = Some(DtmfEvent::Pressed {
                digit,
                source: DtmfSource::Rfc4733,
            });
            written += 1;
        }
        if event.end && !self.ended {
            self.ended = true;
            let duration_ms = (event.duration as u64 * 1000 / self.clock_rate as u64) as u32;
            out[written] = Some(DtmfEvent::Released {
                digit,
                source: DtmfSource::Rfc4733,
                duration_ms,
            });
            written += 1;
        }
        Ok(written)
    }
}

/// One packet the sender wants on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEventPacket {
    pub payload: [u8; 4],
    /// Set on the first packet of the event.
    pub marker: bool,
    /// RTP timestamp: the event's start, the same for every packet of one event.
    pub timestamp: u32,
}

/// Send side: call [`TelephoneEventSender::next_packet`] once per packet time.
#[derive(Debug, Clone)]
pub struct TelephoneEventSender {
    digit: DtmfDigit,
    start_timestamp: u32,
    total_units: u32,
    step_units: u32,
    elapsed_units: u32,
    end_packets_sent: u8,
    started: bool,
}

impl TelephoneEventSender {
    /// `duration_ms` of tone; `packet_units` timestamp units per packet (160 for 20 ms).
    pub fn new(
        digit: DtmfDigit,
        duration_ms: u32,
        start_timestamp: u32,
        clock_rate: u32,
        packet_units: u32,
    ) -> Self {
        let total_units = (duration_ms as u64 * clock_rate as u64 / 1000)
            .clamp(packet_units as u64, u16::MAX as u64) as u32;
        TelephoneEventSender {
            digit,
            start_timestamp,
            total_units,
            step_units: packet_units.max(1),
            elapsed_units: 0,
            end_packets_sent: 0,
            started: false,
        }
    }

    /// The next packet, or `None` once the three end packets have gone.
    pub fn next_packet(&mut self) -> Option<TelephoneEventPacket> {
        if self.end_packets_sent >= 3 {
            return None;
        }
        let marker = !self.started;
        self.started = true;
        self.elapsed_units = (self.elapsed_units + self.step_units).min(self.total_units);
        let end = self.elapsed_units >= self.total_units;
        if end {
            self.end_packets_sent += 1;
        }
        let mut payload = [0u8; 4];
        TelephoneEventPayload {
            event: self.digit.event_code(),
            end,
            volume: 10,
            duration: self.elapsed_units as u16,
        }
        .write(&mut payload);
        Some(TelephoneEventPacket {
            payload,
            marker,
            timestamp: self.start_timestamp,
        })
    }

    /// Timestamp units the event covered (the audio clock moves on by this much).
    pub fn total_units(&self) -> u32 {
        self.total_units
    }

    pub fn is_finished(&self) -> bool {
        self.end_packets_sent >= 3
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digit_characters_round_trip() {
        let keys: String = DtmfDigit::all().map(|d| d.as_char()).collect();
        assert_eq!(keys, "0123456789*#ABCD");
        for key in keys.chars() {
            assert_eq!(DtmfDigit::from_char(key).map(|d| d.as_char()), Some(key));
        }
        assert_eq!(DtmfDigit::from_char('x'), None);
        assert_eq!(DtmfDigit::from_event_code(16), None);
    }

    #[test]
    fn sender_emits_start_updates_and_three_end_packets_that_the_receiver_reads_as_one_digit() {
        let digit = DtmfDigit::from_char('5').unwrap_or(DtmfDigit(0));
        let mut sender = TelephoneEventSender::new(digit, 100, 4000, 8000, 160);
        let mut packets = Vec::new();
        while let Some(packet) = sender.next_packet() {
            packets.push(packet);
        }
        // 100 ms = 800 units: 160, 320, 480, 640, 800(end) ×3.
        assert_eq!(packets.len(), 7);
        assert!(packets[0].marker && packets[1..].iter().all(|p| !p.marker));
        assert!(packets.iter().all(|p| p.timestamp == 4000));
        let parsed: Vec<_> = packets
            .iter()
            .map(|p| TelephoneEventPayload::parse(&p.payload))
            .collect::<Result<_, _>>()
            .unwrap_or_default();
        assert_eq!(
            parsed.iter().map(|p| p.duration).collect::<Vec<_>>(),
            [160, 320, 480, 640, 800, 800, 800]
        );
        assert_eq!(parsed.iter().filter(|p| p.end).count(), 3);

        let mut receiver = TelephoneEventReceiver::new(8000);
        let mut events = Vec::new();
        for packet in &packets {
            let mut out = [None, None];
            let count = receiver.on_packet(7, packet.timestamp, &packet.payload, &mut out);
            assert!(count.is_ok());
            events.extend(out.into_iter().flatten());
        }
        assert_eq!(
            events,
            [
                DtmfEvent::Pressed {
                    digit,
                    source: DtmfSource::Rfc4733
                },
                DtmfEvent::Released {
                    digit,
                    source: DtmfSource::Rfc4733,
                    duration_ms: 100
                },
            ]
        );
    }

    #[test]
    fn repeated_same_digit_with_new_timestamp_is_a_second_press() {
        let mut receiver = TelephoneEventReceiver::new(8000);
        let mut out = [None, None];
        let end = [1u8, 0x80 | 10, 0x03, 0x20];
        assert_eq!(receiver.on_packet(1, 100, &end, &mut out), Ok(2));
        assert_eq!(receiver.on_packet(1, 100, &end, &mut out), Ok(0));
        assert_eq!(receiver.on_packet(1, 900, &end, &mut out), Ok(2));
        // A gateway that sends the events under a different SSRC is still understood.
        assert_eq!(receiver.on_packet(99, 900, &end, &mut out), Ok(2));
    }

    #[test]
    fn malformed_payloads_are_errors() {
        let mut receiver = TelephoneEventReceiver::new(8000);
        let mut out = [None, None];
        assert_eq!(
            receiver.on_packet(1, 0, &[1, 2], &mut out),
            Err(TelephoneEventError::TooShort(2))
        );
        assert_eq!(
            receiver.on_packet(1, 0, &[40, 0, 0, 0], &mut out),
            Err(TelephoneEventError::NotDtmf(40))
        );
    }
}
