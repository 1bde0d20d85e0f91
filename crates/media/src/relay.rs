//! Packet relay between two bridged legs (sans-IO). Each forwarded packet gets the outgoing
//! leg's SSRC and continuous sequence numbers and timestamps, even when the incoming side
//! switches SSRC (gateway re-INVITEs, prompt changes on the other leg). When the legs' codecs
//! differ the payload is transcoded (decode → 8 kHz frame → encode). Nothing allocates.

use rtc_shared::marshal::{Marshal as _, MarshalSize as _};
use thiserror::Error;

use crate::codec::{AudioDecoder, AudioEncoder, Codec, FRAME_SAMPLES, MAX_FRAME_BYTES};
use crate::rtcp::parse_rtp_header;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum RelayError {
    #[error("malformed RTP: {0}")]
    Malformed(String),
    #[error("output buffer too small")]
    BufferTooSmall,
    #[error("payload type {0} is not relayed")]
    UnknownPayloadType(u8),
}

/// One direction of a bridge.
#[derive(Debug)]
pub struct RtpRelay {
    in_payload_type: u8,
    in_event_type: Option<u8>,
    out_payload_type: u8,
    out_event_type: Option<u8>,
    out_ssrc: u32,
    /// Last incoming (ssrc, sequence, timestamp) and the outgoing values they mapped to.
    last_in: Option<(u32, u16, u32)>,
    last_out: (u16, u32),
    transcoder: Option<(AudioDecoder, AudioEncoder)>,
}

/// Negotiated payload types of one side.
#[derive(Debug, Clone, Copy)]
pub struct LegFormat {
    pub codec: Codec,
    pub payload_type: u8,
    pub telephone_event_payload_type: Option<u8>,
}

impl RtpRelay {
    pub fn new(
        incoming: LegFormat,
        outgoing: LegFormat,
        out_ssrc: u32,
        first_sequence: u16,
        first_timestamp: u32,
    ) -> Self {
        let transcoder = (incoming.codec != outgoing.codec).then(|| {
            (
                AudioDecoder::new(incoming.codec),
                AudioEncoder::new(outgoing.codec),
            )
        });
        RtpRelay {
            in_payload_type: incoming.payload_type,
            in_event_type: incoming.telephone_event_payload_type,
            out_payload_type: outgoing.payload_type,
            out_event_type: outgoing.telephone_event_payload_type,
            out_ssrc,
            last_in: None,
            last_out: (
                first_sequence.wrapping_sub(1),
                first_timestamp.wrapping_sub(160),
            ),
            transcoder,
        }
    }

    pub fn is_transcoding(&self) -> bool {
        self.transcoder.is_some()
    }

    /// Rewrites `datagram` into `out`; returns the length to send.
    pub fn forward(&mut self, datagram: &[u8], out: &mut [u8]) -> Result<usize, RelayError> {
        let (mut header, range) = parse_rtp_header(datagram).map_err(RelayError::Malformed)?;
        let payload = &datagram[range];
        let out_payload_type = if header.payload_type == self.in_payload_type {
            self.out_payload_type
        } else if Some(header.payload_type) == self.in_event_type && self.out_event_type.is_some() {
            self.out_event_type.unwrap_or(self.out_payload_type)
        } else {
            return Err(RelayError::UnknownPayloadType(header.payload_type));
        };

        // Map sequence and timestamp: follow the incoming deltas within one stream, and start a
        // fresh continuation (next sequence, +1 frame) when the stream changes.
        let (sequence, timestamp) = match self.last_in {
            Some((ssrc, in_sequence, in_timestamp)) if ssrc == header.ssrc => {
                let delta_seq = header.sequence_number.wrapping_sub(in_sequence);
                let delta_ts = header.timestamp.wrapping_sub(in_timestamp);
                (
                    self.last_out.0.wrapping_add(delta_seq),
                    self.last_out.1.wrapping_add(delta_ts),
                )
            }
            _ => (
                self.last_out.0.wrapping_add(1),
                self.last_out.1.wrapping_add(160),
            ),
        };
        // Only move the reference forward (reordered packets map relative to it).
        let newer = match self.last_in {
            Some((ssrc, in_sequence, _)) if ssrc == header.ssrc => {
                let delta = header.sequence_number.wrapping_sub(in_sequence);
                delta != 0 && delta < 0x8000
            }
            _ => true,
        };
        if newer {
            self.last_in = Some((header.ssrc, header.sequence_number, header.timestamp));
            self.last_out = (sequence, timestamp);
        }

        let is_audio = header.payload_type == self.in_payload_type;
        header.ssrc = self.out_ssrc;
        header.sequence_number = sequence;
        header.timestamp = timestamp;
        header.payload_type = out_payload_type;
        header.csrc.clear();
        header.padding = false;
        header.extension = false;
        header.extensions.clear();
        let header_len = header.marshal_size();
        if out.len() < header_len + MAX_FRAME_BYTES.max(payload.len()) {
            return Err(RelayError::BufferTooSmall);
        }
        let header_len = header
            .marshal_to(out)
            .map_err(|e| RelayError::Malformed(e.to_string()))?;
        let body = &mut out[header_len..];
        let body_len = match (&mut self.transcoder, is_audio) {
            (Some((decoder, encoder)), true) => {
                // Any packet time: transcode 20 ms at a time (our codecs all carry one byte per
                // 8 kHz timestamp unit, so the packet keeps its length and timestamps). A
                // shorter remainder (10 or 30 ms packets) is coded as a padded frame and cut.
                let mut len = 0;
                for piece in payload.chunks(MAX_FRAME_BYTES) {
                    let mut frame = [0i16; FRAME_SAMPLES];
                    decoder.decode_frame(piece, &mut frame);
                    let mut encoded = [0u8; MAX_FRAME_BYTES];
                    let coded = encoder.encode_frame(&frame, &mut encoded).min(piece.len());
                    body[len..len + coded].copy_from_slice(&encoded[..coded]);
                    len += coded;
                }
                len
            }
            _ => {
                body[..payload.len()].copy_from_slice(payload);
                payload.len()
            }
        };
        Ok(header_len + body_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::g711;

    fn packet(
        ssrc: u32,
        sequence: u16,
        timestamp: u32,
        payload_type: u8,
        payload: &[u8],
    ) -> Vec<u8> {
        let mut bytes = vec![0x80, payload_type];
        bytes.extend_from_slice(&sequence.to_be_bytes());
        bytes.extend_from_slice(&timestamp.to_be_bytes());
        bytes.extend_from_slice(&ssrc.to_be_bytes());
        bytes.extend_from_slice(payload);
        bytes
    }

    fn fields(bytes: &[u8]) -> (u8, u16, u32, u32) {
        (
            bytes[1] & 0x7F,
            u16::from_be_bytes([bytes[2], bytes[3]]),
            u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
            u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]),
        )
    }

    const PCMU: LegFormat = LegFormat {
        codec: Codec::Pcmu,
        payload_type: 0,
        telephone_event_payload_type: Some(101),
    };
    const PCMA: LegFormat = LegFormat {
        codec: Codec::Pcma,
        payload_type: 8,
        telephone_event_payload_type: Some(96),
    };

    #[test]
    fn same_codec_relay_rewrites_ssrc_and_keeps_continuity_across_ssrc_changes() {
        let mut relay = RtpRelay::new(PCMU, PCMU, 0x5A5A, 1000, 50_000);
        let mut out = [0u8; 400];
        let payload = [0x55u8; 160];
        let mut seen = Vec::new();
        for k in 0..3u16 {
            let len = relay
                .forward(&packet(1, 7000 + k, 160 * k as u32, 0, &payload), &mut out)
                .unwrap_or(0);
            assert_eq!(&out[12..len], &payload[..]);
            seen.push(fields(&out[..len]));
        }
        // The far end switches to a new SSRC with unrelated numbering.
        let len = relay
            .forward(&packet(2, 3, 999_999, 0, &payload), &mut out)
            .unwrap_or(0);
        seen.push(fields(&out[..len]));
        assert_eq!(
            seen,
            [
                (0, 1000, 50_000, 0x5A5A),
                (0, 1001, 50_160, 0x5A5A),
                (0, 1002, 50_320, 0x5A5A),
                (0, 1003, 50_480, 0x5A5A)
            ]
        );
        assert!(!relay.is_transcoding());
    }

    #[test]
    fn different_codecs_are_transcoded_and_events_remapped() {
        let mut relay = RtpRelay::new(PCMU, PCMA, 9, 0, 0);
        assert!(relay.is_transcoding());
        let pcm: Vec<i16> = (0..160)
            .map(|n| ((n as f64 * 0.3).sin() * 5000.0) as i16)
            .collect();
        let ulaw: Vec<u8> = pcm.iter().map(|&s| g711::ulaw_encode(s)).collect();
        let mut out = [0u8; 400];
        let len = relay
            .forward(&packet(1, 1, 0, 0, &ulaw), &mut out)
            .unwrap_or(0);
        assert_eq!(len, 172);
        assert_eq!(out[1] & 0x7F, 8);
        for (n, &code) in out[12..len].iter().enumerate() {
            let error = (g711::alaw_decode(code) as i32 - pcm[n] as i32).abs();
            // Two quantisations in tandem: at most half a step (128 at this level) each.
            assert!(error <= 256, "sample {n}: {error}");
        }
        let len = relay
            .forward(&packet(1, 2, 160, 101, &[5, 0x0A, 0, 160]), &mut out)
            .unwrap_or(0);
        assert_eq!(
            (out[1] & 0x7F, &out[12..len]),
            (96, &[5u8, 0x0A, 0, 160][..])
        );
        assert_eq!(
            relay.forward(&packet(1, 3, 320, 18, &[0; 20]), &mut out),
            Err(RelayError::UnknownPayloadType(18))
        );
        assert!(relay.forward(&[0x80, 0], &mut out).is_err());
    }

    #[test]
    fn transcoding_keeps_packets_of_any_packet_time_whole() {
        let mut relay = RtpRelay::new(PCMU, PCMA, 9, 0, 0);
        let mut out = [0u8; 600];
        for (sequence, samples) in [(1u16, 240usize), (2, 80), (3, 480)] {
            let pcm: Vec<i16> = (0..samples)
                .map(|n| ((n as f64 * 0.3).sin() * 5000.0) as i16)
                .collect();
            let ulaw: Vec<u8> = pcm.iter().map(|&s| g711::ulaw_encode(s)).collect();
            let len = relay
                .forward(&packet(1, sequence, 0, 0, &ulaw), &mut out)
                .unwrap_or(0);
            assert_eq!(len, 12 + samples, "{samples} samples");
            for (n, &code) in out[12..len].iter().enumerate() {
                let error = (g711::alaw_decode(code) as i32 - pcm[n] as i32).abs();
                assert!(error <= 256, "{samples} samples, sample {n}: {error}");
            }
        }
    }
}
