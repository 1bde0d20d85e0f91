//! Prompts: audio files decoded once with symphonia (WAV, MP3, OGG/Vorbis, FLAC), downmixed to
//! mono, resampled with rubato to 8 kHz (and 16 kHz for G.722), encoded into 20 ms frames once
//! per prompt and codec, and shared by `Arc` across every call that plays them.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};
use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use thiserror::Error;

use crate::codec::{AudioEncoder, Codec, FRAME_SAMPLES, MAX_FRAME_BYTES};

/// Longest prompt or music file accepted (guards memory against hostile or mistaken files).
const MAX_SECONDS: usize = 15 * 60;

/// A prompt that could not be loaded; always names the file.
#[derive(Debug, Error)]
pub enum PromptError {
    #[error("{path}: cannot open: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a supported audio file: {reason}")]
    Unsupported { path: PathBuf, reason: String },
    #[error("{path}: has no audio track")]
    NoAudioTrack { path: PathBuf },
    #[error("{path}: decode failed: {reason}")]
    Decode { path: PathBuf, reason: String },
    #[error("{path}: longer than {MAX_SECONDS} s")]
    TooLong { path: PathBuf },
    #[error("{path}: contains no audio samples")]
    Empty { path: PathBuf },
    #[error("{path}: resampling from {rate} Hz failed: {reason}")]
    Resample {
        path: PathBuf,
        rate: u32,
        reason: String,
    },
}

/// Decoded mono audio at one sample rate.
#[derive(Debug, Clone)]
pub struct PcmAudio {
    pub sample_rate: u32,
    pub samples: Vec<i16>,
}

/// A prompt ready to send: PCM at 8 kHz and the encoded payload of every 20 ms frame.
#[derive(Debug)]
pub struct EncodedPrompt {
    name: String,
    codec: Codec,
    /// 8 kHz PCM, padded to whole frames (what the listener hears: for recording and mixing).
    pcm: Box<[i16]>,
    /// Encoded frames, each `codec.frame_bytes()` long.
    payloads: Box<[[u8; MAX_FRAME_BYTES]]>,
}

impl EncodedPrompt {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn codec(&self) -> Codec {
        self.codec
    }

    pub fn frame_count(&self) -> usize {
        self.payloads.len()
    }

    /// The encoded payload of frame `index`.
    pub fn payload(&self, index: usize) -> Option<&[u8]> {
        self.payloads
            .get(index)
            .map(|p| &p[..self.codec.frame_bytes()])
    }

    /// The 8 kHz PCM of frame `index`.
    pub fn pcm_frame(&self, index: usize) -> Option<&[i16]> {
        self.pcm
            .get(index * FRAME_SAMPLES..(index + 1) * FRAME_SAMPLES)
    }

    /// All 8 kHz PCM.
    pub fn pcm(&self) -> &[i16] {
        &self.pcm
    }

    /// Encodes audio already decoded (used by the cache and by tests).
    pub fn encode(
        name: &str,
        codec: Codec,
        narrow: &PcmAudio,
        wide: Option<&PcmAudio>,
    ) -> EncodedPrompt {
        let frames = narrow.samples.len().div_ceil(FRAME_SAMPLES);
        let mut pcm = vec![0i16; frames * FRAME_SAMPLES];
        pcm[..narrow.samples.len()].copy_from_slice(&narrow.samples);
        let mut encoder = AudioEncoder::new(codec);
        let mut payloads = vec![[0u8; MAX_FRAME_BYTES]; frames];
        match (codec, wide) {
            (Codec::G722, Some(wide)) => {
                let mut padded = vec![0i16; frames * 2 * FRAME_SAMPLES];
                let len = wide.samples.len().min(padded.len());
                padded[..len].copy_from_slice(&wide.samples[..len]);
                for (payload, chunk) in payloads
                    .iter_mut()
                    .zip(padded.chunks_exact(2 * FRAME_SAMPLES))
                {
                    encoder.encode_native(chunk, payload);
                }
            }
            _ => {
                for (payload, chunk) in payloads.iter_mut().zip(pcm.chunks_exact(FRAME_SAMPLES)) {
                    let mut frame = [0i16; FRAME_SAMPLES];
                    frame.copy_from_slice(chunk);
                    encoder.encode_frame(&frame, payload);
                }
            }
        }
        EncodedPrompt {
            name: name.to_owned(),
            codec,
            pcm: pcm.into_boxed_slice(),
            payloads: payloads.into_boxed_slice(),
        }
    }
}

/// Decodes `path` to mono f32 at its own rate.
fn decode_mono(path: &Path) -> Result<(Vec<f32>, u32), PromptError> {
    let file = File::open(path).map_err(|source| PromptError::Open {
        path: path.to_owned(),
        source,
    })?;
    let stream = MediaSourceStream::new(Box::new(file), Default::default());
    let mut hint = Hint::new();
    if let Some(extension) = path.extension().and_then(|e| e.to_str()) {
        hint.with_extension(extension);
    }
    let unsupported = |e: SymphoniaError| PromptError::Unsupported {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    let mut format = symphonia::default::get_probe()
        .probe(
            &hint,
            stream,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
        .map_err(unsupported)?;
    let track =
        format
            .default_track(TrackType::Audio)
            .ok_or_else(|| PromptError::NoAudioTrack {
                path: path.to_owned(),
            })?;
    let track_id = track.id;
    let params = track
        .codec_params
        .as_ref()
        .and_then(|p| p.audio())
        .ok_or_else(|| PromptError::NoAudioTrack {
            path: path.to_owned(),
        })?;
    let mut decoder = symphonia::default::get_codecs()
        .make_audio_decoder(params, &AudioDecoderOptions::default())
        .map_err(|e| PromptError::Unsupported {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;

    let mut mono = Vec::new();
    let mut rate = 0u32;
    let mut interleaved: Vec<f32> = Vec::new();
    loop {
        let packet = match format.next_packet() {
            Ok(Some(packet)) => packet,
            Ok(None) => break,
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                break;
            }
            Err(e) => {
                return Err(PromptError::Decode {
                    path: path.to_owned(),
                    reason: e.to_string(),
                });
            }
        };
        if packet.track_id != track_id {
            continue;
        }
        let buffer = match decoder.decode(&packet) {
            Ok(buffer) => buffer,
            // A corrupt packet in the middle is skipped, as players do.
            Err(SymphoniaError::DecodeError(_)) => continue,
            Err(e) => {
                return Err(PromptError::Decode {
                    path: path.to_owned(),
                    reason: e.to_string(),
                });
            }
        };
        rate = buffer.spec().rate();
        let channels = buffer.spec().channels().count().max(1);
        interleaved.resize(buffer.samples_interleaved(), 0.0);
        buffer.copy_to_slice_interleaved(&mut interleaved);
        mono.extend(
            interleaved
                .chunks_exact(channels)
                .map(|frame| frame.iter().sum::<f32>() / channels as f32),
        );
        if rate > 0 && mono.len() > MAX_SECONDS * rate as usize {
            return Err(PromptError::TooLong {
                path: path.to_owned(),
            });
        }
    }
    if mono.is_empty() || rate == 0 {
        return Err(PromptError::Empty {
            path: path.to_owned(),
        });
    }
    Ok((mono, rate))
}

fn resample(path: &Path, mono: &[f32], rate: u32, target: u32) -> Result<Vec<i16>, PromptError> {
    let to_i16 = |x: &f32| (x * 32767.0).round().clamp(-32768.0, 32767.0) as i16;
    if rate == target {
        return Ok(mono.iter().map(to_i16).collect());
    }
    let error = |reason: String| PromptError::Resample {
        path: path.to_owned(),
        rate,
        reason,
    };
    let mut resampler = Fft::<f32>::new(rate as usize, target as usize, 1024, 1, FixedSync::Input)
        .map_err(|e| error(e.to_string()))?;
    let input = InterleavedSlice::new(mono, 1, mono.len()).map_err(|e| error(e.to_string()))?;
    let needed = resampler.process_all_needed_output_len(mono.len());
    let mut output = vec![0f32; needed];
    let mut output_adapter =
        InterleavedSlice::new_mut(&mut output, 1, needed).map_err(|e| error(e.to_string()))?;
    let (_, produced) = resampler
        .process_all_into_buffer(&input, &mut output_adapter, mono.len(), None)
        .map_err(|e| error(e.to_string()))?;
    Ok(output[..produced].iter().map(to_i16).collect())
}

/// Decodes a file to mono PCM at `target` Hz.
pub fn load_pcm(path: &Path, target: u32) -> Result<PcmAudio, PromptError> {
    let (mono, rate) = decode_mono(path)?;
    Ok(PcmAudio {
        sample_rate: target,
        samples: resample(path, &mono, rate, target)?,
    })
}

type PromptMap = HashMap<(PathBuf, Codec), Arc<EncodedPrompt>>;

/// Process-wide prompt cache: each (file, codec) is decoded and encoded once.
#[derive(Debug, Default, Clone)]
pub struct PromptCache {
    entries: Arc<Mutex<PromptMap>>,
}

impl PromptCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// The encoded prompt for `path` in `codec` if it is loaded already; never blocks on IO,
    /// so a call task can try it before handing a load to the blocking pool.
    pub fn cached(&self, path: &Path, codec: Codec) -> Option<Arc<EncodedPrompt>> {
        let key = (path.to_owned(), codec);
        self.entries
            .lock()
            .ok()
            .and_then(|map| map.get(&key).cloned())
    }

    /// The encoded prompt for `path` in `codec`, loading it on first use. Blocking (file IO and
    /// decoding): call from `spawn_blocking` or at startup, not from the media hot path.
    pub fn get(&self, path: &Path, codec: Codec) -> Result<Arc<EncodedPrompt>, PromptError> {
        if let Some(hit) = self.cached(path, codec) {
            return Ok(hit);
        }
        let key = (path.to_owned(), codec);
        let (mono, rate) = decode_mono(path)?;
        let narrow = PcmAudio {
            sample_rate: 8000,
            samples: resample(path, &mono, rate, 8000)?,
        };
        let wide = if codec == Codec::G722 {
            Some(PcmAudio {
                sample_rate: 16000,
                samples: resample(path, &mono, rate, 16000)?,
            })
        } else {
            None
        };
        let prompt = Arc::new(EncodedPrompt::encode(
            &path.display().to_string(),
            codec,
            &narrow,
            wide.as_ref(),
        ));
        if let Ok(mut map) = self.entries.lock() {
            // Another call may have loaded it meanwhile: keep the first so all share one copy.
            return Ok(Arc::clone(map.entry(key).or_insert(prompt)));
        }
        Ok(prompt)
    }

    /// [`PromptCache::get`] on tokio's blocking pool, for use from async call tasks.
    pub async fn get_async(
        &self,
        path: PathBuf,
        codec: Codec,
    ) -> Result<Arc<EncodedPrompt>, PromptError> {
        let cache = self.clone();
        let name = path.clone();
        tokio::task::spawn_blocking(move || cache.get(&path, codec))
            .await
            .unwrap_or_else(|join| {
                Err(PromptError::Decode {
                    path: name,
                    reason: format!("decoder task failed: {join}"),
                })
            })
    }

    /// Loads every prompt up front (e.g. at startup), so the first caller does not wait.
    pub fn preload<'a>(
        &self,
        paths: impl IntoIterator<Item = &'a Path>,
        codecs: &[Codec],
    ) -> Result<(), PromptError> {
        for path in paths {
            for codec in codecs {
                self.get(path, *codec)?;
            }
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.entries.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An ordered list of prompts to play back to back.
#[derive(Debug, Clone, Default)]
pub struct Playlist {
    pub prompts: Vec<Arc<EncodedPrompt>>,
}

impl Playlist {
    pub fn new(prompts: Vec<Arc<EncodedPrompt>>) -> Self {
        Playlist { prompts }
    }

    pub fn total_frames(&self) -> usize {
        self.prompts.iter().map(|p| p.frame_count()).sum()
    }
}
