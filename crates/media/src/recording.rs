//! Call recording to WAV with hound: stereo (caller left, agent right) or a mono mix, 8 kHz
//! 16-bit. Frames are written as they come and the RIFF header is rewritten once a second
//! (`flush`), so a crash leaves a playable file up to the last second.
//!
//! File writes block: the server should feed a recorder from a dedicated blocking task (a
//! bounded channel of frames), never from the media tick itself.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::codec::{FRAME_SAMPLES, Frame};

/// Frames between header updates (1 s).
const FLUSH_EVERY_FRAMES: u32 = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordingLayout {
    /// Caller on the left channel, agent on the right.
    Stereo,
    /// Both parties mixed into one channel.
    Mono,
}

#[derive(Debug, Error)]
pub enum RecordingError {
    #[error("{path}: cannot create recording: {source}")]
    Create { path: PathBuf, source: hound::Error },
    #[error("{path}: write failed: {source}")]
    Write { path: PathBuf, source: hound::Error },
}

/// One call's recording.
pub struct CallRecorder {
    path: PathBuf,
    layout: RecordingLayout,
    writer: Option<hound::WavWriter<BufWriter<File>>>,
    frames_since_flush: u32,
    frames: u64,
}

impl std::fmt::Debug for CallRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallRecorder")
            .field("path", &self.path)
            .field("layout", &self.layout)
            .field("frames", &self.frames)
            .finish()
    }
}

impl CallRecorder {
    pub fn create(path: &Path, layout: RecordingLayout) -> Result<Self, RecordingError> {
        let spec = hound::WavSpec {
            channels: match layout {
                RecordingLayout::Stereo => 2,
                RecordingLayout::Mono => 1,
            },
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut writer =
            hound::WavWriter::create(path, spec).map_err(|source| RecordingError::Create {
                path: path.to_owned(),
                source,
            })?;
        // Write a valid (empty) header at once so even an immediate crash leaves a WAV file.
        writer.flush().map_err(|source| RecordingError::Create {
            path: path.to_owned(),
            source,
        })?;
        Ok(CallRecorder {
            path: path.to_owned(),
            layout,
            writer: Some(writer),
            frames_since_flush: 0,
            frames: 0,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Seconds recorded so far.
    pub fn seconds(&self) -> f64 {
        self.frames as f64 * 0.02
    }

    /// Writes one 20 ms period: what the caller said and what the agent said.
    pub fn write(&mut self, caller: &Frame, agent: &Frame) -> Result<(), RecordingError> {
        let Some(writer) = self.writer.as_mut() else {
            return Ok(());
        };
        let error = |source| RecordingError::Write {
            path: self.path.clone(),
            source,
        };
        match self.layout {
            RecordingLayout::Stereo => {
                for n in 0..FRAME_SAMPLES {
                    writer.write_sample(caller[n]).map_err(error)?;
                    writer.write_sample(agent[n]).map_err(error)?;
                }
            }
            RecordingLayout::Mono => {
                for n in 0..FRAME_SAMPLES {
                    let mixed = (caller[n] as i32 + agent[n] as i32)
                        .clamp(i16::MIN as i32, i16::MAX as i32)
                        as i16;
                    writer.write_sample(mixed).map_err(error)?;
                }
            }
        }
        self.frames += 1;
        self.frames_since_flush += 1;
        if self.frames_since_flush >= FLUSH_EVERY_FRAMES {
            self.frames_since_flush = 0;
            writer.flush().map_err(error)?;
        }
        Ok(())
    }

    /// Completes the file (final header).
    pub fn finish(mut self) -> Result<PathBuf, RecordingError> {
        if let Some(writer) = self.writer.take() {
            writer.finalize().map_err(|source| RecordingError::Write {
                path: self.path.clone(),
                source,
            })?;
        }
        Ok(self.path.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(value: i16) -> Frame {
        [value; FRAME_SAMPLES]
    }

    fn temp_path(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("santral-media-{}-{name}.wav", std::process::id()))
    }

    #[test]
    fn stereo_puts_caller_left_and_agent_right() {
        let path = temp_path("stereo");
        let mut recorder =
            CallRecorder::create(&path, RecordingLayout::Stereo).unwrap_or_else(|e| panic!("{e}"));
        for _ in 0..10 {
            recorder
                .write(&frame(1000), &frame(-2000))
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let path = recorder.finish().unwrap_or_else(|e| panic!("{e}"));
        let mut reader = hound::WavReader::open(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(reader.spec().channels, 2);
        assert_eq!(reader.duration(), 1600);
        let samples: Vec<i16> = reader.samples::<i16>().map(|s| s.unwrap_or(0)).collect();
        assert!(samples.chunks(2).all(|pair| pair == [1000, -2000]));
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn mono_mixes_and_clips() {
        let path = temp_path("mono");
        let mut recorder =
            CallRecorder::create(&path, RecordingLayout::Mono).unwrap_or_else(|e| panic!("{e}"));
        recorder
            .write(&frame(30000), &frame(10000))
            .unwrap_or_else(|e| panic!("{e}"));
        recorder
            .write(&frame(100), &frame(-300))
            .unwrap_or_else(|e| panic!("{e}"));
        let path = recorder.finish().unwrap_or_else(|e| panic!("{e}"));
        let mut reader = hound::WavReader::open(&path).unwrap_or_else(|e| panic!("{e}"));
        let samples: Vec<i16> = reader.samples::<i16>().map(|s| s.unwrap_or(0)).collect();
        assert_eq!(samples.len(), 320);
        assert_eq!(samples[0], i16::MAX);
        assert_eq!(samples[200], -200);
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn an_unfinished_recording_is_playable_up_to_the_last_second() {
        let path = temp_path("crash");
        let mut recorder =
            CallRecorder::create(&path, RecordingLayout::Stereo).unwrap_or_else(|e| panic!("{e}"));
        // 2.5 s written, then the process "crashes": the recorder is leaked, never finalised.
        for k in 0..125 {
            recorder
                .write(&frame(k as i16), &frame(-(k as i16)))
                .unwrap_or_else(|e| panic!("{e}"));
        }
        std::mem::forget(recorder);
        let reader =
            hound::WavReader::open(&path).unwrap_or_else(|e| panic!("header must be valid: {e}"));
        let seconds = reader.duration() as f64 / 8000.0;
        assert!((2.0..=2.5).contains(&seconds), "{seconds} s readable");
        let samples: Vec<i16> = reader
            .into_samples::<i16>()
            .map(|s| s.unwrap_or(i16::MIN))
            .collect();
        assert_eq!(samples.len(), 2 * 16000);
        assert_eq!(&samples[..2], &[0, 0]);
        assert_eq!(&samples[samples.len() - 2..], &[99, -99]);
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn unwritable_path_is_an_error_naming_it() {
        let path = Path::new("/nonexistent-dir/santral/rec.wav");
        let error = CallRecorder::create(path, RecordingLayout::Mono).map(|_| ());
        assert!(
            matches!(&error, Err(e) if e.to_string().contains("/nonexistent-dir/santral/rec.wav"))
        );
    }
}
