//! A streaming sample-rate converter between a sound card's native rate and the 8 kHz frames
//! of the media session. Linear interpolation, preceded when downsampling by a short low-pass
//! (moving average over one output period) so that 48 kHz capture does not alias into the
//! telephone band. Voice over G.711 hides its small passband droop; it keeps no allocation per
//! call of [`Resampler::process`] beyond growing `out`.

/// Converts a continuous stream from `from` Hz to `to` Hz, chunk by chunk, without gaps at
/// chunk boundaries.
#[derive(Debug, Clone)]
pub struct Resampler {
    /// Input samples per output sample.
    step: f64,
    /// Position of the next output sample, in input samples from `previous`.
    position: f64,
    previous: f32,
    /// Moving-average low-pass for downsampling (length ≈ step), as a ring of past inputs.
    window: Vec<f32>,
    window_index: usize,
    window_sum: f32,
}

impl Resampler {
    /// `from` and `to` must be non-zero; zero is treated as 1 Hz rather than panicking.
    pub fn new(from: u32, to: u32) -> Resampler {
        let step = f64::from(from.max(1)) / f64::from(to.max(1));
        let taps = if step > 1.0 { step.round() as usize } else { 1 };
        Resampler {
            step,
            position: 0.0,
            previous: 0.0,
            window: vec![0.0; taps.max(1)],
            window_index: 0,
            window_sum: 0.0,
        }
    }

    fn smooth(&mut self, sample: f32) -> f32 {
        if self.window.len() == 1 {
            return sample;
        }
        self.window_sum += sample - self.window[self.window_index];
        self.window[self.window_index] = sample;
        self.window_index = (self.window_index + 1) % self.window.len();
        self.window_sum / self.window.len() as f32
    }

    /// Converts `input` and appends the result to `out`.
    pub fn process(&mut self, input: &[f32], out: &mut Vec<f32>) {
        for &raw in input {
            let current = self.smooth(raw);
            // Emit every output sample that falls between `previous` (0.0) and `current` (1.0).
            while self.position <= 1.0 {
                let t = self.position as f32;
                out.push(self.previous + (current - self.previous) * t);
                self.position += self.step;
            }
            self.position -= 1.0;
            self.previous = current;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(rate: u32, hz: f32, samples: usize) -> Vec<f32> {
        (0..samples)
            .map(|i| (2.0 * std::f32::consts::PI * hz * i as f32 / rate as f32).sin() * 0.5)
            .collect()
    }

    /// Zero crossings per second ≈ 2 × frequency.
    fn frequency(samples: &[f32], rate: u32) -> f32 {
        let crossings = samples
            .windows(2)
            .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
            .count();
        crossings as f32 * rate as f32 / samples.len() as f32 / 2.0
    }

    #[test]
    fn rates_and_pitch_survive_conversion_in_chunks() {
        for (from, to) in [
            (48000, 8000),
            (44100, 8000),
            (8000, 48000),
            (16000, 8000),
            (8000, 8000),
        ] {
            let input = sine(from, 440.0, from as usize);
            let mut resampler = Resampler::new(from, to);
            let mut out = Vec::new();
            // Odd chunk sizes: boundaries must not matter.
            for chunk in input.chunks(317) {
                resampler.process(chunk, &mut out);
            }
            let expected = to as usize;
            assert!(
                out.len().abs_diff(expected) <= 2,
                "{from}->{to}: {} samples, expected {expected}",
                out.len()
            );
            let pitch = frequency(&out[out.len() / 10..], to);
            assert!((pitch - 440.0).abs() < 5.0, "{from}->{to}: pitch {pitch}");
            let peak = out[out.len() / 10..]
                .iter()
                .fold(0.0f32, |m, s| m.max(s.abs()));
            assert!(peak > 0.4 && peak < 0.55, "{from}->{to}: peak {peak}");
        }
    }

    #[test]
    fn downsampling_attenuates_what_the_telephone_band_cannot_carry() {
        // 11 kHz at 48 kHz would alias to 3 kHz at 8 kHz without the low-pass.
        let input = sine(48000, 11000.0, 48000);
        let mut resampler = Resampler::new(48000, 8000);
        let mut out = Vec::new();
        resampler.process(&input, &mut out);
        let peak = out[800..].iter().fold(0.0f32, |m, s| m.max(s.abs()));
        assert!(peak < 0.15, "aliased energy {peak}");
    }
}
