//! The audio codecs a session can speak, and per-session encoder/decoder state.
//!
//! Inside the engine, audio moves as 20 ms narrowband frames ([`Frame`]: 160 samples at 8 kHz).
//! G.722 legs convert at their edge (decode → 16 kHz → decimate; interpolate → 16 kHz → encode),
//! while prompts for G.722 are cached from a 16 kHz rendering so they keep their full bandwidth.

use crate::g711;
use crate::g722::{G722Decoder, G722Encoder};
use crate::wideband::{Decimator, Interpolator};

/// Samples in one 20 ms frame at 8 kHz.
pub const FRAME_SAMPLES: usize = 160;
/// One 20 ms narrowband frame.
pub type Frame = [i16; FRAME_SAMPLES];
/// Largest encoded 20 ms payload among our codecs (G.711 and G.722 both use 160 bytes).
pub const MAX_FRAME_BYTES: usize = 160;

/// An audio codec negotiated in SDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// G.711 µ-law, static payload type 0.
    Pcmu,
    /// G.711 A-law, static payload type 8.
    Pcma,
    /// G.722 64 kbit/s, static payload type 9 (16 kHz audio, 8 kHz RTP clock).
    G722,
}

impl Codec {
    /// The static RTP payload type (RFC 3551).
    pub fn static_payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
            Codec::G722 => 9,
        }
    }

    /// The encoding name used in `a=rtpmap`.
    pub fn encoding_name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
            Codec::G722 => "G722",
        }
    }

    /// The RTP timestamp clock (8000 for all three; G.722's is 8000 by historical error).
    pub fn rtp_clock_rate(self) -> u32 {
        8000
    }

    /// The audio sample rate the codec carries.
    pub fn audio_sample_rate(self) -> u32 {
        match self {
            Codec::G722 => 16000,
            _ => 8000,
        }
    }

    /// Encoded bytes in a 20 ms frame.
    pub fn frame_bytes(self) -> usize {
        160
    }

    /// RTP timestamp units per 20 ms frame.
    pub fn frame_timestamp_units(self) -> u32 {
        160
    }

    /// Parses a static payload type or an rtpmap encoding name (case-insensitive).
    pub fn from_payload_type(payload_type: u8) -> Option<Codec> {
        match payload_type {
            0 => Some(Codec::Pcmu),
            8 => Some(Codec::Pcma),
            9 => Some(Codec::G722),
            _ => None,
        }
    }

    pub fn from_encoding_name(name: &str, clock_rate: u32) -> Option<Codec> {
        let codec = [Codec::Pcmu, Codec::Pcma, Codec::G722]
            .into_iter()
            .find(|c| c.encoding_name().eq_ignore_ascii_case(name))?;
        (codec.rtp_clock_rate() == clock_rate).then_some(codec)
    }
}

/// Encoder state for one outbound stream.
#[derive(Debug, Clone)]
pub enum AudioEncoder {
    Pcmu,
    Pcma,
    G722 {
        encoder: Box<G722Encoder>,
        upsampler: Box<Interpolator>,
        wide: Box<[i16; 2 * FRAME_SAMPLES]>,
    },
}

impl AudioEncoder {
    pub fn new(codec: Codec) -> Self {
        match codec {
            Codec::Pcmu => AudioEncoder::Pcmu,
            Codec::Pcma => AudioEncoder::Pcma,
            Codec::G722 => AudioEncoder::G722 {
                encoder: Box::default(),
                upsampler: Box::default(),
                wide: Box::new([0; 2 * FRAME_SAMPLES]),
            },
        }
    }

    pub fn codec(&self) -> Codec {
        match self {
            AudioEncoder::Pcmu => Codec::Pcmu,
            AudioEncoder::Pcma => Codec::Pcma,
            AudioEncoder::G722 { .. } => Codec::G722,
        }
    }

    /// Encodes one 8 kHz frame; returns the payload length written into `out`.
    pub fn encode_frame(&mut self, frame: &Frame, out: &mut [u8; MAX_FRAME_BYTES]) -> usize {
        match self {
            AudioEncoder::Pcmu => {
                g711::ulaw_encode_slice(frame, out);
                FRAME_SAMPLES
            }
            AudioEncoder::Pcma => {
                g711::alaw_encode_slice(frame, out);
                FRAME_SAMPLES
            }
            AudioEncoder::G722 {
                encoder,
                upsampler,
                wide,
            } => {
                upsampler.process(frame, &mut wide[..]);
                encoder.encode(&wide[..], out)
            }
        }
    }

    /// Encodes a 20 ms frame already at the codec's own sample rate (prompt caching path).
    pub fn encode_native(&mut self, pcm: &[i16], out: &mut [u8]) -> usize {
        match self {
            AudioEncoder::Pcmu => {
                g711::ulaw_encode_slice(pcm, out);
                pcm.len().min(out.len())
            }
            AudioEncoder::Pcma => {
                g711::alaw_encode_slice(pcm, out);
                pcm.len().min(out.len())
            }
            AudioEncoder::G722 { encoder, .. } => encoder.encode(pcm, out),
        }
    }
}

/// Decoder state for one inbound stream.
#[derive(Debug, Clone)]
pub enum AudioDecoder {
    Pcmu,
    Pcma,
    G722 {
        decoder: Box<G722Decoder>,
        downsampler: Box<Decimator>,
        wide: Box<[i16; 2 * FRAME_SAMPLES]>,
    },
}

impl AudioDecoder {
    pub fn new(codec: Codec) -> Self {
        match codec {
            Codec::Pcmu => AudioDecoder::Pcmu,
            Codec::Pcma => AudioDecoder::Pcma,
            Codec::G722 => AudioDecoder::G722 {
                decoder: Box::default(),
                downsampler: Box::default(),
                wide: Box::new([0; 2 * FRAME_SAMPLES]),
            },
        }
    }

    pub fn codec(&self) -> Codec {
        match self {
            AudioDecoder::Pcmu => Codec::Pcmu,
            AudioDecoder::Pcma => Codec::Pcma,
            AudioDecoder::G722 { .. } => Codec::G722,
        }
    }

    /// Decodes one 20 ms payload into an 8 kHz frame. A short payload leaves the tail silent.
    pub fn decode_frame(&mut self, payload: &[u8], frame: &mut Frame) {
        let payload = &payload[..payload.len().min(MAX_FRAME_BYTES)];
        match self {
            AudioDecoder::Pcmu => {
                frame.fill(0);
                g711::ulaw_decode_slice(payload, frame);
            }
            AudioDecoder::Pcma => {
                frame.fill(0);
                g711::alaw_decode_slice(payload, frame);
            }
            AudioDecoder::G722 {
                decoder,
                downsampler,
                wide,
            } => {
                wide.fill(0);
                decoder.decode(payload, &mut wide[..]);
                downsampler.process(&wide[..], frame);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_payload_types() {
        assert_eq!(Codec::from_encoding_name("pcmu", 8000), Some(Codec::Pcmu));
        assert_eq!(Codec::from_encoding_name("G722", 8000), Some(Codec::G722));
        assert_eq!(Codec::from_encoding_name("G722", 16000), None);
        assert_eq!(Codec::from_encoding_name("opus", 48000), None);
        assert_eq!(Codec::from_payload_type(8), Some(Codec::Pcma));
        assert_eq!(Codec::from_payload_type(18), None);
    }

    /// Transcoding between every pair keeps a 1 kHz tone recognisable.
    #[test]
    fn transcoding_between_every_pair_keeps_the_signal() {
        let codecs = [Codec::Pcmu, Codec::Pcma, Codec::G722];
        for from in codecs {
            for to in codecs {
                let mut encode_a = AudioEncoder::new(from);
                let mut decode_a = AudioDecoder::new(from);
                let mut encode_b = AudioEncoder::new(to);
                let mut decode_b = AudioDecoder::new(to);
                let mut signal = 0.0f64;
                let mut correlation = 0.0f64;
                let mut output_energy = 0.0f64;
                for index in 0..50 {
                    let mut frame = [0i16; FRAME_SAMPLES];
                    for (n, s) in frame.iter_mut().enumerate() {
                        let t = (index * FRAME_SAMPLES + n) as f64 / 8000.0;
                        *s = (6000.0 * (2.0 * std::f64::consts::PI * 1000.0 * t).sin()) as i16;
                    }
                    let mut payload = [0u8; MAX_FRAME_BYTES];
                    let len = encode_a.encode_frame(&frame, &mut payload);
                    let mut middle = [0i16; FRAME_SAMPLES];
                    decode_a.decode_frame(&payload[..len], &mut middle);
                    let len = encode_b.encode_frame(&middle, &mut payload);
                    let mut out = [0i16; FRAME_SAMPLES];
                    decode_b.decode_frame(&payload[..len], &mut out);
                    if index >= 10 {
                        for (a, b) in frame.iter().zip(out.iter()) {
                            signal += (*a as f64).powi(2);
                            output_energy += (*b as f64).powi(2);
                            correlation += *a as f64 * *b as f64;
                        }
                    }
                }
                let level_db = 10.0 * (output_energy / signal).log10();
                assert!(
                    level_db.abs() < 2.0,
                    "{from:?}->{to:?} level {level_db:.1} dB"
                );
                // Normalised correlation at zero lag is high when the path adds little delay
                // (G.711); G.722's filters delay by a few samples, so only its level is checked.
                let normalised = correlation / (signal * output_energy).sqrt();
                if from != Codec::G722 && to != Codec::G722 {
                    assert!(
                        normalised > 0.99,
                        "{from:?}->{to:?} correlation {normalised:.3}"
                    );
                }
            }
        }
    }
}
