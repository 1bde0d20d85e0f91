//! Where the phone's sound comes from and goes to, one 20 ms frame (160 samples at 8 kHz) at a
//! time: nothing (`null`), WAV files (`file:IN.wav,OUT.wav`), or a sound card (`device`, cpal).

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use santral_media::{FRAME_SAMPLES, Frame};
use thiserror::Error;

/// The rate of the frames exchanged with the media session.
pub const SAMPLE_RATE: u32 = 8000;

/// The `--audio` choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioMode {
    /// The default sound card (or `--input` / `--output`).
    Device,
    Null,
    File {
        input: PathBuf,
        output: PathBuf,
    },
}

#[derive(Debug, Error)]
pub enum AudioError {
    #[error("--audio must be device, null or file:IN.wav,OUT.wav, not {0:?}")]
    BadMode(String),
    #[error("cannot read microphone file {path}: {message}")]
    Input { path: PathBuf, message: String },
    #[error("cannot write speaker file {path}: {source}")]
    Output { path: PathBuf, source: hound::Error },
    #[error("sound device: {0}")]
    Device(String),
}

impl FromStr for AudioMode {
    type Err = AudioError;

    fn from_str(text: &str) -> Result<AudioMode, AudioError> {
        match text {
            "device" => Ok(AudioMode::Device),
            "null" => Ok(AudioMode::Null),
            _ => {
                let files = text
                    .strip_prefix("file:")
                    .ok_or_else(|| AudioError::BadMode(text.to_string()))?;
                match files.split_once(',') {
                    Some((input, output)) if !input.is_empty() && !output.is_empty() => {
                        Ok(AudioMode::File {
                            input: input.into(),
                            output: output.into(),
                        })
                    }
                    _ => Err(AudioError::BadMode(text.to_string())),
                }
            }
        }
    }
}

impl std::fmt::Display for AudioMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AudioMode::Device => write!(f, "device"),
            AudioMode::Null => write!(f, "null"),
            AudioMode::File { input, output } => {
                write!(f, "file:{},{}", input.display(), output.display())
            }
        }
    }
}

/// The microphone level (peak of the last captured frame, 0.0–1.0), written by the media task
/// each tick and read by the UI: one atomic, no lock on the audio path.
#[derive(Debug, Clone, Default)]
pub struct LevelMeter(std::sync::Arc<std::sync::atomic::AtomicU32>);

impl LevelMeter {
    pub fn set(&self, level: f32) {
        self.0.store(
            level.clamp(0.0, 1.0).to_bits(),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    pub fn get(&self) -> f32 {
        f32::from_bits(self.0.load(std::sync::atomic::Ordering::Relaxed))
    }
}

/// The running call's quality (MOS, loss, jitter), refreshed by the media task about once a
/// second and read by the UI. Stored as atomics (hundredths), so neither side waits.
#[derive(Debug, Clone, Default)]
pub struct QualityGauge(std::sync::Arc<[std::sync::atomic::AtomicU32; 3]>);

/// A reading of [`QualityGauge`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QualityReading {
    pub mos: f64,
    pub loss_percent: f64,
    pub jitter_ms: f64,
}

impl QualityGauge {
    pub fn set(&self, reading: Option<QualityReading>) {
        use std::sync::atomic::Ordering::Relaxed;
        let hundredths = |v: f64| (v.clamp(0.0, 40_000_000.0) * 100.0) as u32 + 1;
        match reading {
            Some(r) => {
                self.0[0].store(hundredths(r.mos), Relaxed);
                self.0[1].store(hundredths(r.loss_percent), Relaxed);
                self.0[2].store(hundredths(r.jitter_ms), Relaxed);
            }
            // 0 means "no reading" (hundredths are stored plus one).
            None => self.0.iter().for_each(|v| v.store(0, Relaxed)),
        }
    }

    pub fn get(&self) -> Option<QualityReading> {
        use std::sync::atomic::Ordering::Relaxed;
        let value = |i: usize| match self.0[i].load(Relaxed) {
            0 => None,
            v => Some(f64::from(v - 1) / 100.0),
        };
        Some(QualityReading {
            mos: value(0)?,
            loss_percent: value(1)?,
            jitter_ms: value(2)?,
        })
    }
}

/// The phone's microphone and speaker as seen by the media loop. Called once per 20 ms tick
/// from the media task: implementations must not block.
pub trait AudioPort: Send {
    /// The next 20 ms of microphone audio.
    fn capture(&mut self, frame: &mut Frame);
    /// 20 ms of what the far end said.
    fn play(&mut self, frame: &Frame);
    /// The call ended: make what was played durable (files) or go quiet (devices).
    fn call_ended(&mut self) {}
    /// Peak level of the last captured frame, 0.0–1.0 (the UI's input meter).
    fn input_level(&self) -> f32 {
        0.0
    }
    /// True for a sound card a person listens to: it gets the ringtone and the auto-answer
    /// beep (files and `null` do not, so recordings hold only the call).
    fn is_headset(&self) -> bool {
        false
    }
    /// Samples the sound card's capture and playback callbacks moved so far (devices only).
    fn device_counters(&self) -> Option<(u64, u64)> {
        None
    }
}

/// No sound card: sends silence, discards what it hears.
#[derive(Debug, Default)]
pub struct NullAudio;

impl AudioPort for NullAudio {
    fn capture(&mut self, frame: &mut Frame) {
        *frame = [0; FRAME_SAMPLES];
    }
    fn play(&mut self, _frame: &Frame) {}
}

/// IN.wav is the microphone (looped, so a call of any length has speech); everything heard is
/// appended to OUT.wav (8 kHz mono 16-bit), whose header is brought up to date at each call end.
pub struct FileAudio {
    microphone: Vec<i16>,
    position: usize,
    speaker: hound::WavWriter<BufWriter<File>>,
    output: PathBuf,
    level: f32,
}

impl std::fmt::Debug for FileAudio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileAudio")
            .field("samples", &self.microphone.len())
            .field("output", &self.output)
            .finish()
    }
}

impl FileAudio {
    /// Decodes IN (any rate or channel count symphonia reads; resampled to 8 kHz) and creates OUT.
    pub fn open(input: &Path, output: &Path) -> Result<FileAudio, AudioError> {
        let pcm =
            santral_media::prompt::load_pcm(input, SAMPLE_RATE).map_err(|e| AudioError::Input {
                path: input.to_path_buf(),
                message: e.to_string(),
            })?;
        if pcm.samples.is_empty() {
            return Err(AudioError::Input {
                path: input.to_path_buf(),
                message: "no audio in the file".into(),
            });
        }
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: SAMPLE_RATE,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let speaker =
            hound::WavWriter::create(output, spec).map_err(|source| AudioError::Output {
                path: output.to_path_buf(),
                source,
            })?;
        Ok(FileAudio {
            microphone: pcm.samples,
            position: 0,
            speaker,
            output: output.to_path_buf(),
            level: 0.0,
        })
    }
}

impl AudioPort for FileAudio {
    fn capture(&mut self, frame: &mut Frame) {
        let mut peak = 0u16;
        for sample in frame.iter_mut() {
            *sample = self.microphone[self.position];
            peak = peak.max(sample.unsigned_abs());
            self.position = (self.position + 1) % self.microphone.len();
        }
        self.level = f32::from(peak) / 32768.0;
    }

    fn play(&mut self, frame: &Frame) {
        for &sample in frame {
            if let Err(error) = self.speaker.write_sample(sample) {
                tracing::warn!(%error, path = %self.output.display(), "speaker file write failed");
                return;
            }
        }
    }

    fn call_ended(&mut self) {
        if let Err(error) = self.speaker.flush() {
            tracing::warn!(%error, path = %self.output.display(), "speaker file flush failed");
        }
    }

    fn input_level(&self) -> f32 {
        self.level
    }
}

impl Drop for FileAudio {
    fn drop(&mut self) {
        let _ = self.speaker.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_modes_parse() {
        assert_eq!("null".parse::<AudioMode>().unwrap(), AudioMode::Null);
        assert_eq!("device".parse::<AudioMode>().unwrap(), AudioMode::Device);
        assert_eq!(
            "file:a.wav,b.wav".parse::<AudioMode>().unwrap(),
            AudioMode::File {
                input: "a.wav".into(),
                output: "b.wav".into()
            }
        );
        for bad in ["file:a.wav", "file:,b.wav", "speaker", ""] {
            assert!(bad.parse::<AudioMode>().is_err(), "{bad}");
        }
    }

    #[test]
    fn file_audio_loops_the_microphone_and_records_the_speaker() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.wav");
        let output = dir.path().join("out.wav");
        // 16 kHz input: the port resamples to 8 kHz.
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 16000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut writer = hound::WavWriter::create(&input, spec).unwrap();
        for i in 0..1600 {
            let t = i as f32 / 16000.0;
            writer
                .write_sample((8000.0 * (2.0 * std::f32::consts::PI * 400.0 * t).sin()) as i16)
                .unwrap();
        }
        writer.finalize().unwrap();
        let mut audio = FileAudio::open(&input, &output).unwrap();
        assert_eq!(audio.microphone.len(), 800);
        let mut frame = [0; FRAME_SAMPLES];
        for _ in 0..6 {
            audio.capture(&mut frame); // 960 samples: wraps around the 800-sample file
        }
        assert_eq!(audio.position, 960 % 800);
        assert!(audio.input_level() > 0.2);
        let heard = [1234i16; FRAME_SAMPLES];
        audio.play(&heard);
        audio.play(&heard);
        audio.call_ended();
        let reader = hound::WavReader::open(&output).unwrap();
        assert_eq!(reader.spec().sample_rate, 8000);
        let samples: Vec<i16> = reader.into_samples().map(|s| s.unwrap()).collect();
        assert_eq!(samples.len(), 320);
        assert!(samples.iter().all(|&s| s == 1234));
    }

    #[test]
    fn meters_carry_readings_between_tasks() {
        let gauge = QualityGauge::default();
        assert_eq!(gauge.get(), None);
        let shared = gauge.clone();
        shared.set(Some(QualityReading {
            mos: 4.38,
            loss_percent: 0.0,
            jitter_ms: 12.5,
        }));
        let reading = gauge.get().unwrap();
        assert!((reading.mos - 4.38).abs() < 0.011 && reading.loss_percent == 0.0);
        assert!((reading.jitter_ms - 12.5).abs() < 0.011);
        shared.set(None);
        assert_eq!(gauge.get(), None);
        let level = LevelMeter::default();
        level.clone().set(1.7);
        assert_eq!(level.get(), 1.0);
    }

    #[test]
    fn missing_microphone_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let error = FileAudio::open(&dir.path().join("none.wav"), &dir.path().join("o.wav"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("none.wav"), "{error}");
    }
}
