//! Call-progress tones, beeps and comfort noise, generated 20 ms at a time.
//!
//! Cadences: the European plan (ETSI ES 201 970 style, used here for Turkey too, as the issue
//! asks) is 425 Hz with ringback 1 s on / 4 s off and busy 0.5 s / 0.5 s; North America uses
//! 440+480 Hz ringback (2 s / 4 s) and 480+620 Hz busy (0.5 s / 0.5 s). Operators whose
//! network differs (some Turkish exchanges use 450 Hz) can add a region here.

use crate::codec::{FRAME_SAMPLES, Frame};

/// Which country's call-progress tones to play.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ToneRegion {
    /// Turkey and Europe: 425 Hz.
    #[default]
    Europe,
    NorthAmerica,
}

/// A tone to play.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToneKind {
    Ringback(ToneRegion),
    Busy(ToneRegion),
    /// A single 1 kHz beep of 200 ms (e.g. "recording starts").
    Beep,
    /// Low-level noise so the line does not sound dead.
    ComfortNoise,
}

#[derive(Debug, Clone, Copy)]
struct Cadence {
    frequencies: [f32; 2],
    /// Number of frequencies used (1 or 2).
    count: usize,
    on_ms: u32,
    /// 0 = play once.
    off_ms: u32,
    /// Peak amplitude per frequency.
    amplitude: f32,
}

/// Generates a tone, frame by frame.
#[derive(Debug, Clone)]
pub struct ToneGenerator {
    kind: ToneKind,
    cadence: Option<Cadence>,
    /// Unit phasors rotated once per sample (no per-sample `sin`).
    rotation: [(f32, f32); 2],
    phasor: [(f32, f32); 2],
    elapsed_ms: u32,
    noise_state: u32,
    finished: bool,
}

/// Peak amplitude of a −13 dBm0 sine (0 dBm0 peak ≈ 22670).
const MINUS_13_DBM0: f32 = 5075.0;
/// Peak amplitude per tone of a −16 dBm0 dual tone.
const MINUS_16_DBM0: f32 = 3592.0;

impl ToneGenerator {
    pub fn new(kind: ToneKind) -> Self {
        let cadence = match kind {
            ToneKind::Ringback(ToneRegion::Europe) => Some(Cadence {
                frequencies: [425.0, 0.0],
                count: 1,
                on_ms: 1000,
                off_ms: 4000,
                amplitude: MINUS_13_DBM0,
            }),
            ToneKind::Ringback(ToneRegion::NorthAmerica) => Some(Cadence {
                frequencies: [440.0, 480.0],
                count: 2,
                on_ms: 2000,
                off_ms: 4000,
                amplitude: MINUS_16_DBM0,
            }),
            ToneKind::Busy(ToneRegion::Europe) => Some(Cadence {
                frequencies: [425.0, 0.0],
                count: 1,
                on_ms: 500,
                off_ms: 500,
                amplitude: MINUS_13_DBM0,
            }),
            ToneKind::Busy(ToneRegion::NorthAmerica) => Some(Cadence {
                frequencies: [480.0, 620.0],
                count: 2,
                on_ms: 500,
                off_ms: 500,
                amplitude: MINUS_16_DBM0,
            }),
            ToneKind::Beep => Some(Cadence {
                frequencies: [1000.0, 0.0],
                count: 1,
                on_ms: 200,
                off_ms: 0,
                amplitude: MINUS_13_DBM0,
            }),
            ToneKind::ComfortNoise => None,
        };
        let mut rotation = [(1.0, 0.0); 2];
        if let Some(cadence) = &cadence {
            for (r, f) in rotation.iter_mut().zip(cadence.frequencies) {
                let w = 2.0 * std::f32::consts::PI * f / 8000.0;
                *r = (w.cos(), w.sin());
            }
        }
        ToneGenerator {
            kind,
            cadence,
            rotation,
            phasor: [(1.0, 0.0); 2],
            elapsed_ms: 0,
            noise_state: 0x1234_5678,
            finished: false,
        }
    }

    pub fn kind(&self) -> ToneKind {
        self.kind
    }

    /// True once a one-shot tone (beep) has played.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Writes the next 20 ms.
    pub fn next_frame(&mut self, out: &mut Frame) {
        let Some(cadence) = self.cadence else {
            // Comfort noise: white noise at about −65 dBm0 (RMS ≈ 9).
            for sample in out.iter_mut() {
                self.noise_state = self
                    .noise_state
                    .wrapping_mul(1_664_525)
                    .wrapping_add(1_013_904_223);
                *sample = ((self.noise_state >> 16) as i16 as i32 >> 11) as i16;
            }
            return;
        };
        let period = cadence.on_ms + cadence.off_ms;
        let position = if cadence.off_ms == 0 {
            self.elapsed_ms
        } else {
            self.elapsed_ms % period
        };
        let on = position < cadence.on_ms && !self.finished;
        out.fill(0);
        if on {
            for sample in out.iter_mut() {
                let mut value = 0.0;
                for k in 0..cadence.count {
                    let (c, s) = self.phasor[k];
                    let (rc, rs) = self.rotation[k];
                    self.phasor[k] = (c * rc - s * rs, c * rs + s * rc);
                    value += self.phasor[k].1;
                }
                *sample = (value * cadence.amplitude) as i16;
            }
            // Renormalise the phasors once per frame so rounding cannot grow them.
            for p in self.phasor.iter_mut() {
                let norm = (p.0 * p.0 + p.1 * p.1).sqrt().max(1e-6);
                *p = (p.0 / norm, p.1 / norm);
            }
        }
        self.elapsed_ms += (FRAME_SAMPLES as u32) / 8;
        if cadence.off_ms == 0 && self.elapsed_ms >= cadence.on_ms {
            self.finished = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(kind: ToneKind, ms: u32) -> Vec<i16> {
        let mut generator = ToneGenerator::new(kind);
        let mut out = Vec::new();
        for _ in 0..ms / 20 {
            let mut frame = [0; FRAME_SAMPLES];
            generator.next_frame(&mut frame);
            out.extend_from_slice(&frame);
        }
        out
    }

    fn power_at(samples: &[i16], frequency: f32) -> f32 {
        let w = 2.0 * std::f32::consts::PI * frequency / 8000.0;
        let (mut re, mut im) = (0.0f32, 0.0f32);
        for (n, &s) in samples.iter().enumerate() {
            re += s as f32 * (w * n as f32).cos();
            im += s as f32 * (w * n as f32).sin();
        }
        (re * re + im * im).sqrt() / samples.len() as f32
    }

    #[test]
    fn european_ringback_is_425_hz_one_second_on_four_off() {
        let samples = render(ToneKind::Ringback(ToneRegion::Europe), 5000);
        let on = &samples[..8000];
        let off = &samples[8000..40000];
        assert!(power_at(on, 425.0) > 2000.0);
        assert!(power_at(on, 440.0) < power_at(on, 425.0) / 2.0);
        assert!(off.iter().all(|&s| s == 0));
        let next_cycle = render(ToneKind::Ringback(ToneRegion::Europe), 5100);
        assert!(next_cycle[40000..].iter().any(|&s| s != 0));
    }

    #[test]
    fn north_american_ringback_and_busy_use_their_frequency_pairs() {
        let ring = render(ToneKind::Ringback(ToneRegion::NorthAmerica), 2000);
        assert!(power_at(&ring, 440.0) > 1000.0 && power_at(&ring, 480.0) > 1000.0);
        assert!(power_at(&ring, 425.0) < 600.0);
        let busy = render(ToneKind::Busy(ToneRegion::NorthAmerica), 1000);
        assert!(power_at(&busy[..4000], 480.0) > 1000.0 && power_at(&busy[..4000], 620.0) > 1000.0);
        assert!(busy[4000..8000].iter().all(|&s| s == 0));
    }

    #[test]
    fn beep_plays_once() {
        let mut generator = ToneGenerator::new(ToneKind::Beep);
        let mut frame = [0; FRAME_SAMPLES];
        for _ in 0..10 {
            generator.next_frame(&mut frame);
        }
        assert!(generator.is_finished());
        generator.next_frame(&mut frame);
        assert!(frame.iter().all(|&s| s == 0));
    }

    #[test]
    fn comfort_noise_is_quiet_but_not_silent() {
        let samples = render(ToneKind::ComfortNoise, 1000);
        let rms = (samples.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / samples.len() as f64)
            .sqrt();
        assert!((2.0..40.0).contains(&rms), "rms {rms}");
    }
}
