//! The audio every call sends: a WAV file or a tone, encoded to G.711 once and shared.

use std::path::Path;

use santral_media::g711;
use santral_media::prompt::{PromptError, load_pcm};

use crate::sdp::Law;

/// Bytes of one 20 ms G.711 frame.
pub const FRAME_BYTES: usize = 160;

/// Pre-encoded 20 ms frames, played in a loop by every call (each from its own offset).
#[derive(Debug, Clone)]
pub struct EncodedAudio {
    frames: Box<[[u8; FRAME_BYTES]]>,
}

impl EncodedAudio {
    /// Decodes `path` (WAV, MP3, OGG, FLAC; any rate, downmixed and resampled to 8 kHz mono).
    pub fn from_file(path: &Path, law: Law) -> Result<EncodedAudio, PromptError> {
        let pcm = load_pcm(path, 8000)?;
        Ok(EncodedAudio::from_pcm(&pcm.samples, law))
    }

    /// One second of a 425 Hz tone at about −16 dBFS (a file-free default).
    pub fn tone(law: Law) -> EncodedAudio {
        let samples: Vec<i16> = (0..8000)
            .map(|n| {
                let phase = 2.0 * std::f64::consts::PI * 425.0 * f64::from(n) / 8000.0;
                (phase.sin() * 5000.0) as i16
            })
            .collect();
        EncodedAudio::from_pcm(&samples, law)
    }

    /// Encodes 8 kHz PCM (the last partial frame padded with silence; empty input gives one
    /// silent frame).
    pub fn from_pcm(samples: &[i16], law: Law) -> EncodedAudio {
        let count = samples.len().div_ceil(FRAME_BYTES).max(1);
        let mut padded = vec![0i16; count * FRAME_BYTES];
        padded[..samples.len()].copy_from_slice(samples);
        let frames = padded
            .chunks_exact(FRAME_BYTES)
            .map(|chunk| {
                let mut frame = [0u8; FRAME_BYTES];
                match law {
                    Law::Pcma => g711::alaw_encode_slice(chunk, &mut frame),
                    Law::Pcmu => g711::ulaw_encode_slice(chunk, &mut frame),
                }
                frame
            })
            .collect();
        EncodedAudio { frames }
    }

    pub fn frame_count(&self) -> usize {
        self.frames.len()
    }

    /// Frame `index`, wrapping around.
    #[inline]
    pub fn frame(&self, index: u64) -> &[u8; FRAME_BYTES] {
        &self.frames[(index % self.frames.len() as u64) as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tone_is_fifty_frames_that_decode_back_to_the_tone() {
        let audio = EncodedAudio::tone(Law::Pcma);
        assert_eq!(audio.frame_count(), 50);
        let decoded: Vec<i16> = audio
            .frame(0)
            .iter()
            .map(|&c| g711::alaw_decode(c))
            .collect();
        let peak = decoded.iter().map(|s| s.unsigned_abs()).max().unwrap();
        assert!((4500..=5500).contains(&peak), "peak {peak}");
        assert_eq!(audio.frame(50), audio.frame(0)); // wraps
    }

    #[test]
    fn partial_frames_are_padded_and_empty_input_gives_silence() {
        let audio = EncodedAudio::from_pcm(&[1000; 161], Law::Pcmu);
        assert_eq!(audio.frame_count(), 2);
        assert_eq!(audio.frame(1)[1], g711::ulaw_encode(0));
        assert_eq!(EncodedAudio::from_pcm(&[], Law::Pcmu).frame_count(), 1);
    }

    #[test]
    fn a_wav_file_is_loaded_and_encoded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("speech.wav");
        let spec = hound_spec();
        let mut writer = hound::WavWriter::create(&path, spec).unwrap();
        for n in 0..16000 {
            writer.write_sample(((n % 100) as i16 - 50) * 100).unwrap();
        }
        writer.finalize().unwrap();
        // 16 kHz for one second → 8 kHz → 50 frames.
        let audio = EncodedAudio::from_file(&path, Law::Pcma).unwrap();
        assert_eq!(audio.frame_count(), 50);
        let missing = EncodedAudio::from_file(&dir.path().join("nope.wav"), Law::Pcma);
        assert!(missing.unwrap_err().to_string().contains("nope.wav"));
    }

    fn hound_spec() -> hound::WavSpec {
        hound::WavSpec {
            channels: 1,
            sample_rate: 16000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        }
    }
}
