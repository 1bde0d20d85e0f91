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

/// 16 kHz → 8 kHz.
#[derive(Debug, Clone)]
pub struct Decimator {
    taps: [f32; TAPS],
    history: [f32; TAPS],
    position: usize,
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
            history: [0.0; TAPS],
            position: 0,
        }
    }

    fn push(&mut self, sample: i16) {
        self.history[self.position] = sample as f32;
        self.position = (self.position + 1) % TAPS;
    }

    fn filtered(&self) -> f32 {
        let mut acc = 0.0;
        for (k, tap) in self.taps.iter().enumerate() {
            acc += tap * self.history[(self.position + k) % TAPS];
        }
        acc
    }

    /// Consumes `2 * out.len()` wide samples (fewer if `wide` is short).
    pub fn process(&mut self, wide: &[i16], out: &mut [i16]) {
        for (pair, sample) in wide.chunks_exact(2).zip(out.iter_mut()) {
            self.push(pair[0]);
            self.push(pair[1]);
            *sample = self.filtered().round().clamp(-32768.0, 32767.0) as i16;
        }
    }
}

/// 8 kHz → 16 kHz.
#[derive(Debug, Clone)]
pub struct Interpolator {
    taps: [f32; TAPS],
    history: [f32; TAPS],
    position: usize,
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
            history: [0.0; TAPS],
            position: 0,
        }
    }

    fn push_and_filter(&mut self, sample: f32) -> f32 {
        self.history[self.position] = sample;
        self.position = (self.position + 1) % TAPS;
        let mut acc = 0.0;
        for (k, tap) in self.taps.iter().enumerate() {
            acc += tap * self.history[(self.position + k) % TAPS];
        }
        acc
    }

    /// Produces `2 * narrow.len()` samples into `wide` (bounded by its length).
    pub fn process(&mut self, narrow: &[i16], wide: &mut [i16]) {
        for (&sample, pair) in narrow.iter().zip(wide.chunks_exact_mut(2)) {
            // Zero-stuffing halves the gain; the factor 2 restores it.
            let first = 2.0 * self.push_and_filter(sample as f32);
            let second = 2.0 * self.push_and_filter(0.0);
            pair[0] = first.round().clamp(-32768.0, 32767.0) as i16;
            pair[1] = second.round().clamp(-32768.0, 32767.0) as i16;
        }
    }
}
