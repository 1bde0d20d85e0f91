//! 2:1 sample-rate conversion between 8 kHz frames and 16 kHz G.722 audio, with a fixed
//! windowed-sinc half-band FIR. State is kept between frames so frame edges are seamless.

const TAPS: usize = 31;

/// Half-band low-pass at fs/4, Hamming-windowed, unit DC gain.
fn halfband_taps() -> [f32; TAPS] {
    let mut taps = [0f32; TAPS];
    let centre = (TAPS / 2) as f32;
    let mut sum = 0.0;
    for (n, tap) in taps.iter_mut().enumerate() {
        let x = n as f32 - centre;
        let sinc = if x == 0.0 {
            0.5
        } else {
            (std::f32::consts::PI * x * 0.5).sin() / (std::f32::consts::PI * x)
        };
        let window =
            0.54 - 0.46 * (2.0 * std::f32::consts::PI * n as f32 / (TAPS - 1) as f32).cos();
        *tap = sinc * window;
        sum += *tap;
    }
    for tap in taps.iter_mut() {
        *tap /= sum;
    }
    taps
}

/// Delay line kept twice over so the newest `TAPS` samples are always one contiguous slice
/// (no modulo per tap).
#[derive(Debug, Clone)]
struct DelayLine {
    samples: [f32; 2 * TAPS],
    position: usize,
}

impl DelayLine {
    fn new() -> Self {
        DelayLine {
            samples: [0.0; 2 * TAPS],
            position: 0,
        }
    }

    fn push(&mut self, sample: f32) {
        self.samples[self.position] = sample;
        self.samples[self.position + TAPS] = sample;
        self.position = (self.position + 1) % TAPS;
    }

    /// Convolution of the newest `TAPS` samples (oldest first) with `taps`.
    fn filter(&self, taps: &[f32; TAPS]) -> f32 {
        taps.iter()
            .zip(&self.samples[self.position..self.position + TAPS])
            .map(|(t, x)| t * x)
            .sum()
    }
}

fn to_i16(value: f32) -> i16 {
    value.round().clamp(-32768.0, 32767.0) as i16
}

/// 16 kHz → 8 kHz.
#[derive(Debug, Clone)]
pub struct Decimator {
    taps: [f32; TAPS],
    line: DelayLine,
}

impl Default for Decimator {
    fn default() -> Self {
        Self::new()
    }
}

impl Decimator {
    pub fn new() -> Self {
        Decimator {
            taps: halfband_taps(),
            line: DelayLine::new(),
        }
    }

    /// Consumes `2 * out.len()` wide samples (fewer if `wide` is short).
    pub fn process(&mut self, wide: &[i16], out: &mut [i16]) {
        for (pair, sample) in wide.chunks_exact(2).zip(out.iter_mut()) {
            self.line.push(pair[0] as f32);
            self.line.push(pair[1] as f32);
            *sample = to_i16(self.line.filter(&self.taps));
        }
    }
}

/// 8 kHz → 16 kHz.
#[derive(Debug, Clone)]
pub struct Interpolator {
    taps: [f32; TAPS],
    line: DelayLine,
}

impl Default for Interpolator {
    fn default() -> Self {
        Self::new()
    }
}

impl Interpolator {
    pub fn new() -> Self {
        Interpolator {
            taps: halfband_taps(),
            line: DelayLine::new(),
        }
    }

    /// Produces `2 * narrow.len()` samples into `wide` (bounded by its length).
    pub fn process(&mut self, narrow: &[i16], wide: &mut [i16]) {
        for (&sample, pair) in narrow.iter().zip(wide.chunks_exact_mut(2)) {
            // Zero-stuffing halves the gain; the factor 2 restores it.
            self.line.push(sample as f32);
            pair[0] = to_i16(2.0 * self.line.filter(&self.taps));
            self.line.push(0.0);
            pair[1] = to_i16(2.0 * self.line.filter(&self.taps));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn up_then_down_keeps_a_passband_tone() {
        let narrow: Vec<i16> = (0..1600)
            .map(|n| {
                (8000.0 * (2.0 * std::f32::consts::PI * 500.0 * n as f32 / 8000.0).sin()) as i16
            })
            .collect();
        let mut wide = vec![0i16; 3200];
        Interpolator::new().process(&narrow, &mut wide);
        let mut back = vec![0i16; 1600];
        Decimator::new().process(&wide, &mut back);
        let rms = |s: &[i16]| {
            (s.iter().map(|x| (*x as f64).powi(2)).sum::<f64>() / s.len() as f64).sqrt()
        };
        let ratio = rms(&back[200..]) / rms(&narrow[200..]);
        assert!((ratio - 1.0).abs() < 0.05, "gain {ratio}");
    }

    #[test]
    fn decimator_rejects_content_above_4_khz() {
        let wide: Vec<i16> = (0..3200)
            .map(|n| {
                (8000.0 * (2.0 * std::f32::consts::PI * 6000.0 * n as f32 / 16000.0).sin()) as i16
            })
            .collect();
        let mut out = vec![0i16; 1600];
        Decimator::new().process(&wide, &mut out);
        let peak = out[100..].iter().map(|s| s.abs()).max().unwrap_or(0);
        assert!(peak < 400, "6 kHz aliased at {peak}");
    }
}
