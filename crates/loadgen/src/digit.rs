//! One RFC 4733 telephone-event press, packet by packet: a start packet (marker bit), growing
//! continuation packets every 20 ms, then the end packet sent three times (§2.5.1.4), all with
//! the event's start timestamp.

use crate::rtp::SAMPLES_PER_PACKET;

/// Tone packets before the end packets (5 × 20 ms = a 100 ms press).
pub const TONE_PACKETS: u16 = 5;
/// Times the end packet is sent.
pub const END_REPEATS: u16 = 3;
/// −10 dBm0, the level phones commonly report.
pub const VOLUME: u8 = 10;

/// The RFC 4733 event code of a DTMF key (`0`–`9`, `*`, `#`, `A`–`D`).
pub fn event_code(key: char) -> Option<u8> {
    match key.to_ascii_uppercase() {
        d @ '0'..='9' => Some(d as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        l @ 'A'..='D' => Some(l as u8 - b'A' + 12),
        _ => None,
    }
}

/// One packet of a press.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DigitPacket {
    pub marker: bool,
    /// RTP timestamp: the event's start, the same for every packet of it.
    pub timestamp: u32,
    pub payload: [u8; 4],
}

/// Sends one press; ask it once per 20 ms tick until it returns `None`.
#[derive(Debug, Clone)]
pub struct DigitSender {
    event: u8,
    start_timestamp: u32,
    sent: u16,
}

impl DigitSender {
    pub fn new(event: u8, start_timestamp: u32) -> DigitSender {
        DigitSender {
            event,
            start_timestamp,
            sent: 0,
        }
    }

    pub fn is_finished(&self) -> bool {
        self.sent >= TONE_PACKETS + END_REPEATS
    }

    pub fn next_packet(&mut self) -> Option<DigitPacket> {
        if self.is_finished() {
            return None;
        }
        let index = self.sent;
        self.sent += 1;
        let end = index >= TONE_PACKETS;
        let units = index.min(TONE_PACKETS - 1) + 1;
        let duration = (u32::from(units) * SAMPLES_PER_PACKET) as u16;
        let mut payload = [0u8; 4];
        payload[0] = self.event;
        payload[1] = (u8::from(end) << 7) | (VOLUME & 0x3f);
        payload[2..4].copy_from_slice(&duration.to_be_bytes());
        Some(DigitPacket {
            marker: index == 0,
            timestamp: self.start_timestamp,
            payload,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use santral_media::telephone_event::TelephoneEventPayload;

    #[test]
    fn keys_map_to_event_codes() {
        assert_eq!(event_code('0'), Some(0));
        assert_eq!(event_code('9'), Some(9));
        assert_eq!(event_code('*'), Some(10));
        assert_eq!(event_code('#'), Some(11));
        assert_eq!(event_code('d'), Some(15));
        assert_eq!(event_code('x'), None);
    }

    #[test]
    fn a_press_is_start_continuations_and_three_ends() {
        let mut sender = DigitSender::new(9, 4242);
        let packets: Vec<DigitPacket> = std::iter::from_fn(|| sender.next_packet()).collect();
        assert_eq!(packets.len(), 8);
        assert!(packets[0].marker);
        assert!(packets[1..].iter().all(|p| !p.marker));
        assert!(packets.iter().all(|p| p.timestamp == 4242));
        // Parsed with the server's own decoder.
        let parsed: Vec<TelephoneEventPayload> = packets
            .iter()
            .map(|p| TelephoneEventPayload::parse(&p.payload).unwrap())
            .collect();
        let durations: Vec<u16> = parsed.iter().map(|p| p.duration).collect();
        assert_eq!(durations, [160, 320, 480, 640, 800, 800, 800, 800]);
        let ends: Vec<bool> = parsed.iter().map(|p| p.end).collect();
        assert_eq!(ends, [false, false, false, false, false, true, true, true]);
        assert!(parsed.iter().all(|p| p.event == 9 && p.volume == VOLUME));
        assert!(sender.is_finished());
        assert_eq!(sender.next_packet(), None);
    }
}
