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

/// The half-band filter's non-zero taps: every even index (odd offsets from the centre) and
/// the centre itself. All other taps are exactly zero, so both converters skip them
/// (polyphase form: 16 multiplies per output instead of 31).
#[derive(Debug, Clone)]
struct HalfBand {
    even: [f32; PHASE],
    centre: f32,
}

/// Taps per polyphase branch.
const PHASE: usize = TAPS / 2 + 1;
/// Delay (in branch samples) of the centre tap.
const CENTRE_DELAY: usize = TAPS / 4;

impl HalfBand {
    fn new() -> Self {
        let taps = halfband_taps();
        let mut even = [0f32; PHASE];
        for (j, tap) in even.iter_mut().enumerate() {
            *tap = taps[2 * j];
        }
        HalfBand {
            even,
            centre: taps[TAPS / 2],
        }
    }
}

/// Delay line kept twice over so the newest `N` samples are always one contiguous slice
/// (no modulo per tap).
#[derive(Debug, Clone)]
struct DelayLine<const N: usize> {
    samples: [[f32; N]; 2],
    position: usize,
}

impl<const N: usize> DelayLine<N> {
    fn new() -> Self {
        DelayLine {
            samples: [[0.0; N]; 2],
            position: 0,
        }
    }

    fn push(&mut self, sample: f32) {
        self.samples[0][self.position] = sample;
        self.samples[1][self.position] = sample;
        self.position = (self.position + 1) % N;
    }

    /// The newest `N` samples, oldest first.
    fn window(&self) -> impl Iterator<Item = f32> + '_ {
        self.samples[0][self.position..]
            .iter()
            .chain(&self.samples[1][..self.position])
            .copied()
    }

    /// The sample pushed `age` pushes ago (0 = newest).
    fn back(&self, age: usize) -> f32 {
        self.samples[0][(self.position + N - 1 - age % N) % N]
    }

    fn dot(&self, taps: &[f32; N]) -> f32 {
        taps.iter().zip(self.window()).map(|(t, x)| t * x).sum()
    }
}

fn to_i16(value: f32) -> i16 {
    value.round().clamp(-32768.0, 32767.0) as i16
}

/// 16 kHz → 8 kHz.
#[derive(Debug, Clone)]
pub struct Decimator {
    filter: HalfBand,
    /// Odd-indexed wide samples (the newest of each pair).
    odd: DelayLine<PHASE>,
    /// Even-indexed wide samples, for the centre tap.
    even: DelayLine<PHASE>,
}

impl Default for Decimator {
    fn default() -> Self {
        Self::new()
    }
}

impl Decimator {
    pub fn new() -> Self {
        Decimator {
            filter: HalfBand::new(),
            odd: DelayLine::new(),
            even: DelayLine::new(),
        }
    }

    /// Consumes `2 * out.len()` wide samples (fewer if `wide` is short).
    pub fn process(&mut self, wide: &[i16], out: &mut [i16]) {
        for (pair, sample) in wide.chunks_exact(2).zip(out.iter_mut()) {
            self.even.push(pair[0] as f32);
            self.odd.push(pair[1] as f32);
            let branch = self.odd.dot(&self.filter.even);
            *sample = to_i16(branch + self.filter.centre * self.even.back(CENTRE_DELAY));
        }
    }
}

/// 8 kHz → 16 kHz.
#[derive(Debug, Clone)]
pub struct Interpolator {
    filter: HalfBand,
    line: DelayLine<PHASE>,
}

impl Default for Interpolator {
    fn default() -> Self {
        Self::new()
    }
}

impl Interpolator {
    pub fn new() -> Self {
        Interpolator {
            filter: HalfBand::new(),
            line: DelayLine::new(),
        }
    }

    /// Produces `2 * narrow.len()` samples into `wide` (bounded by its length).
    pub fn process(&mut self, narrow: &[i16], wide: &mut [i16]) {
        for (&sample, pair) in narrow.iter().zip(wide.chunks_exact_mut(2)) {
            // Zero-stuffing halves the gain; the factor 2 restores it.
            self.line.push(sample as f32);
            pair[0] = to_i16(2.0 * self.line.dot(&self.filter.even));
            pair[1] = to_i16(2.0 * self.filter.centre * self.line.back(CENTRE_DELAY));
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

    /// The polyphase forms equal a direct 31-tap convolution.
    #[test]
    fn polyphase_matches_direct_convolution() {
        let taps = halfband_taps();
        let narrow: Vec<i16> = (0..200)
            .map(|n| ((n * 7919 % 2001) as i16 - 1000) * 9)
            .collect();
        let mut stuffed = vec![0f32; 400];
        for (k, x) in narrow.iter().enumerate() {
            stuffed[2 * k] = *x as f32;
        }
        let direct = |signal: &[f32], m: usize| -> f32 {
            (0..TAPS)
                .filter(|n| *n <= m)
                .map(|n| taps[n] * signal[m - n])
                .sum()
        };
        let mut wide = vec![0i16; 400];
        Interpolator::new().process(&narrow, &mut wide);
        for (m, out) in wide.iter().enumerate() {
            assert!(
                (*out as f32 - to_i16(2.0 * direct(&stuffed, m)) as f32).abs() <= 1.0,
                "interpolator {m}"
            );
        }
        let wide_f: Vec<f32> = wide.iter().map(|s| *s as f32).collect();
        let mut back = vec![0i16; 200];
        Decimator::new().process(&wide, &mut back);
        for (k, out) in back.iter().enumerate() {
            assert!(
                (*out as f32 - to_i16(direct(&wide_f, 2 * k + 1)) as f32).abs() <= 1.0,
                "decimator {k}"
            );
        }
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
