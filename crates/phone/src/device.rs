//! Sound-card audio through cpal: capture at the device's native rate and channel count →
//! downmix → resample to 8 kHz → the media session; and back: 8 kHz → resample → every output
//! channel. The cpal streams live on their own thread (they need not be `Send`); the audio
//! callbacks and the media tick meet in lock-free single-producer/single-consumer rings.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{FromSample, SampleFormat, SizedSample, StreamConfig};
use ringbuf::traits::{Consumer, Observer, Producer, Split};
use ringbuf::{HeapCons, HeapProd, HeapRb};
use santral_media::{FRAME_SAMPLES, Frame};

use crate::audio::{AudioError, AudioPort, SAMPLE_RATE};
use crate::resample::Resampler;

/// Ring capacity: half a second at the device rate.
const RING_SECONDS_DIVISOR: usize = 2;
/// Capture backlog kept at most (a sound card and the network clock drift apart; a free-running
/// device such as ALSA's `null` would otherwise fill the ring): 60 ms.
const MAX_CAPTURE_BACKLOG_MS: usize = 60;

fn device_error(context: &str, error: impl std::fmt::Display) -> AudioError {
    AudioError::Device(format!("{context}: {error}"))
}

/// The id (what `--input`/`--output` take) and the description.
fn describe(device: &cpal::Device) -> String {
    match device.id() {
        Ok(id) => format!("{id} — {device}"),
        Err(_) => device.to_string(),
    }
}

/// "input: NAME" / "output: NAME" for every device of the default host.
pub fn list_devices() -> Result<Vec<String>, AudioError> {
    let host = cpal::default_host();
    let mut names = Vec::new();
    let inputs = host
        .input_devices()
        .map_err(|e| device_error("listing input devices", e))?;
    for device in inputs {
        names.push(format!("input: {}", describe(&device)));
    }
    let outputs = host
        .output_devices()
        .map_err(|e| device_error("listing output devices", e))?;
    for device in outputs {
        names.push(format!("output: {}", describe(&device)));
    }
    Ok(names)
}

/// How much the device callbacks really moved (the UI's and the tests' proof of life).
#[derive(Debug, Default)]
pub struct DeviceCounters {
    pub captured_samples: AtomicU64,
    pub played_samples: AtomicU64,
}

/// A headset: capture and playback streams on the chosen (or default) devices.
pub struct DeviceAudio {
    capture: HeapCons<f32>,
    playback: HeapProd<f32>,
    capture_rate: u32,
    to_network: Resampler,
    to_device: Resampler,
    scratch_in: Vec<f32>,
    scratch_out: Vec<f32>,
    pending: Vec<f32>,
    counters: Arc<DeviceCounters>,
    level: f32,
    stop: mpsc::Sender<()>,
    thread: Option<JoinHandle<()>>,
    description: String,
}

impl std::fmt::Debug for DeviceAudio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceAudio")
            .field("devices", &self.description)
            .finish()
    }
}

fn find_device(
    host: &cpal::Host,
    name: Option<&str>,
    input: bool,
) -> Result<cpal::Device, AudioError> {
    let kind = if input { "input" } else { "output" };
    let Some(name) = name else {
        let device = if input {
            host.default_input_device()
        } else {
            host.default_output_device()
        };
        return device.ok_or_else(|| AudioError::Device(format!("no default {kind} device")));
    };
    let devices = if input {
        host.input_devices().map(|d| d.collect::<Vec<_>>())
    } else {
        host.output_devices().map(|d| d.collect::<Vec<_>>())
    }
    .map_err(|e| device_error("listing devices", e))?;
    devices
        .into_iter()
        .find(|d| {
            // The description, the id (`alsa:null`), or the id without its host (`null`).
            d.to_string() == name
                || d.id().is_ok_and(|id| {
                    let id = id.to_string();
                    id == name || id.split_once(':').is_some_and(|(_, short)| short == name)
                })
        })
        .ok_or_else(|| {
            AudioError::Device(format!(
                "no {kind} device named {name:?} (see --list-devices)"
            ))
        })
}

struct Streams {
    capture_rate: u32,
    playback_rate: u32,
    description: String,
}

fn build_input<T>(
    device: &cpal::Device,
    config: StreamConfig,
    mut ring: HeapProd<f32>,
    counters: Arc<DeviceCounters>,
) -> Result<cpal::Stream, AudioError>
where
    T: SizedSample + Send + 'static,
    f32: FromSample<T>,
{
    let channels = usize::from(config.channels.max(1));
    device
        .build_input_stream(
            config,
            move |data: &[T], _: &cpal::InputCallbackInfo| {
                for frame in data.chunks(channels) {
                    let mono = frame.iter().map(|s| f32::from_sample_(*s)).sum::<f32>()
                        / frame.len() as f32;
                    // A full ring means the media side is not draining: drop, never block.
                    let _ = ring.try_push(mono);
                }
                counters
                    .captured_samples
                    .fetch_add((data.len() / channels) as u64, Ordering::Relaxed);
            },
            |error| tracing::warn!(%error, "capture stream error"),
            None,
        )
        .map_err(|e| device_error("opening the capture stream", e))
}

fn build_output<T>(
    device: &cpal::Device,
    config: StreamConfig,
    mut ring: HeapCons<f32>,
    counters: Arc<DeviceCounters>,
) -> Result<cpal::Stream, AudioError>
where
    T: SizedSample + FromSample<f32> + Send + 'static,
{
    let channels = usize::from(config.channels.max(1));
    device
        .build_output_stream(
            config,
            move |data: &mut [T], _: &cpal::OutputCallbackInfo| {
                for frame in data.chunks_mut(channels) {
                    // Underrun plays silence.
                    let sample = T::from_sample_(ring.try_pop().unwrap_or(0.0));
                    frame.fill(sample);
                }
                counters
                    .played_samples
                    .fetch_add((data.len() / channels) as u64, Ordering::Relaxed);
            },
            |error| tracing::warn!(%error, "playback stream error"),
            None,
        )
        .map_err(|e| device_error("opening the playback stream", e))
}

macro_rules! by_format {
    ($format:expr, $build:ident, $($args:expr),*) => {
        match $format {
            SampleFormat::F32 => $build::<f32>($($args),*),
            SampleFormat::I16 => $build::<i16>($($args),*),
            SampleFormat::I32 => $build::<i32>($($args),*),
            SampleFormat::U16 => $build::<u16>($($args),*),
            SampleFormat::U8 => $build::<u8>($($args),*),
            SampleFormat::F64 => $build::<f64>($($args),*),
            other => Err(AudioError::Device(format!("unsupported sample format {other}"))),
        }
    };
}

/// Runs on the device thread: opens both streams, reports the rates, then keeps them alive
/// until told to stop.
fn run_streams(
    input: Option<String>,
    output: Option<String>,
    counters: Arc<DeviceCounters>,
    rings: mpsc::Receiver<(HeapProd<f32>, HeapCons<f32>)>,
    ready: mpsc::Sender<Result<Streams, AudioError>>,
    stop: mpsc::Receiver<()>,
) {
    let opened = (|| {
        let host = cpal::default_host();
        let capture_device = find_device(&host, input.as_deref(), true)?;
        let playback_device = find_device(&host, output.as_deref(), false)?;
        let capture_config = capture_device
            .default_input_config()
            .map_err(|e| device_error("capture configuration", e))?;
        let playback_config = playback_device
            .default_output_config()
            .map_err(|e| device_error("playback configuration", e))?;
        let streams = Streams {
            capture_rate: capture_config.sample_rate(),
            playback_rate: playback_config.sample_rate(),
            description: format!("in {capture_device}, out {playback_device}"),
        };
        Ok((
            capture_device,
            playback_device,
            capture_config,
            playback_config,
            streams,
        ))
    })();
    let (capture_device, playback_device, capture_config, playback_config, streams) = match opened {
        Ok(opened) => opened,
        Err(error) => {
            let _ = ready.send(Err(error));
            return;
        }
    };
    let capture_rate = streams.capture_rate;
    let playback_rate = streams.playback_rate;
    let _ = ready.send(Ok(streams));
    let Ok((capture_ring, playback_ring)) = rings.recv() else {
        return;
    };
    let started = (|| {
        let capture = by_format!(
            capture_config.sample_format(),
            build_input,
            &capture_device,
            capture_config.config(),
            capture_ring,
            counters.clone()
        )?;
        let playback = by_format!(
            playback_config.sample_format(),
            build_output,
            &playback_device,
            playback_config.config(),
            playback_ring,
            counters.clone()
        )?;
        capture
            .play()
            .map_err(|e| device_error("starting capture", e))?;
        playback
            .play()
            .map_err(|e| device_error("starting playback", e))?;
        Ok::<_, AudioError>((capture, playback))
    })();
    match started {
        Ok(streams) => {
            tracing::info!(capture_rate, playback_rate, "sound device running");
            let _ = ready.send(Ok(Streams {
                capture_rate,
                playback_rate,
                description: String::new(),
            }));
            let _ = stop.recv();
            drop(streams);
        }
        Err(error) => {
            let _ = ready.send(Err(error));
        }
    }
}

impl DeviceAudio {
    /// Opens the named (else default) capture and playback devices and starts both streams.
    pub fn open(input: Option<&str>, output: Option<&str>) -> Result<DeviceAudio, AudioError> {
        let counters = Arc::new(DeviceCounters::default());
        let (ready_tx, ready) = mpsc::channel();
        let (rings_tx, rings_rx) = mpsc::channel();
        let (stop, stop_rx) = mpsc::channel();
        let (input, output) = (input.map(str::to_string), output.map(str::to_string));
        let thread_counters = counters.clone();
        let thread = std::thread::Builder::new()
            .name("sound-device".into())
            .spawn(move || run_streams(input, output, thread_counters, rings_rx, ready_tx, stop_rx))
            .map_err(|e| device_error("starting the device thread", e))?;
        let lost = || AudioError::Device("the device thread stopped".into());
        let streams = ready.recv().map_err(|_| lost())??;
        let capture_len = (streams.capture_rate as usize / RING_SECONDS_DIVISOR).max(4096);
        let playback_len = (streams.playback_rate as usize / RING_SECONDS_DIVISOR).max(4096);
        let (capture_producer, capture) = HeapRb::<f32>::new(capture_len).split();
        let (playback, playback_consumer) = HeapRb::<f32>::new(playback_len).split();
        rings_tx
            .send((capture_producer, playback_consumer))
            .map_err(|_| lost())?;
        ready.recv().map_err(|_| lost())??;
        Ok(DeviceAudio {
            capture,
            playback,
            capture_rate: streams.capture_rate,
            to_network: Resampler::new(streams.capture_rate, SAMPLE_RATE),
            to_device: Resampler::new(SAMPLE_RATE, streams.playback_rate),
            scratch_in: Vec::with_capacity(4096),
            scratch_out: Vec::with_capacity(4096),
            pending: Vec::with_capacity(4096),
            counters,
            level: 0.0,
            stop,
            thread: Some(thread),
            description: streams.description,
        })
    }

    pub fn counters(&self) -> &DeviceCounters {
        &self.counters
    }

    pub fn description(&self) -> &str {
        &self.description
    }
}

impl AudioPort for DeviceAudio {
    fn capture(&mut self, frame: &mut Frame) {
        // Keep latency bounded: drop the oldest capture beyond the backlog limit.
        let limit = self.capture_rate as usize * MAX_CAPTURE_BACKLOG_MS / 1000;
        let backlog = self.capture.occupied_len();
        if backlog > limit {
            self.capture.skip(backlog - limit);
        }
        // 20 ms at the device rate (plus what the resampler still owes us).
        let wanted = (self.capture_rate as usize / 50).max(1);
        self.scratch_in.clear();
        self.scratch_in
            .extend(std::iter::from_fn(|| self.capture.try_pop()).take(wanted));
        self.to_network.process(&self.scratch_in, &mut self.pending);
        let mut peak = 0.0f32;
        for (i, sample) in frame.iter_mut().enumerate() {
            let value = self.pending.get(i).copied().unwrap_or(0.0);
            peak = peak.max(value.abs());
            *sample = (value.clamp(-1.0, 1.0) * 32767.0) as i16;
        }
        let used = self.pending.len().min(FRAME_SAMPLES);
        self.pending.drain(..used);
        // The resampler can run a sample or two ahead; never let that pile up.
        self.pending.truncate(FRAME_SAMPLES);
        self.level = peak.min(1.0);
    }

    fn play(&mut self, frame: &Frame) {
        self.scratch_in.clear();
        self.scratch_in
            .extend(frame.iter().map(|&s| f32::from(s) / 32768.0));
        self.scratch_out.clear();
        self.to_device
            .process(&self.scratch_in, &mut self.scratch_out);
        // A full ring (device stalled) loses audio rather than blocking the media tick.
        self.playback.push_slice(&self.scratch_out);
    }

    fn input_level(&self) -> f32 {
        self.level
    }

    fn is_headset(&self) -> bool {
        true
    }

    fn device_counters(&self) -> Option<(u64, u64)> {
        Some((
            self.counters.captured_samples.load(Ordering::Relaxed),
            self.counters.played_samples.load(Ordering::Relaxed),
        ))
    }
}

impl Drop for DeviceAudio {
    fn drop(&mut self) {
        let _ = self.stop.send(());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
