//! Packet-loss concealment for narrowband frames, after the idea of ITU-T G.711 Appendix I:
//! on a lost frame, repeat the last pitch period of the good signal (found by autocorrelation),
//! fading out over 60 ms, and cross-fade back into the first good frame after a loss. This
//! keeps voiced speech continuous where silence insertion would click and gap.

use crate::codec::{FRAME_SAMPLES, Frame};

/// History kept: 2 × the longest pitch searched plus the correlation window.
const HISTORY: usize = 400;
const MIN_PITCH: usize = 40; // 200 Hz
const MAX_PITCH: usize = 120; // 66 Hz
const CORRELATION_WINDOW: usize = 160;
const CROSSFADE: usize = 40;
/// Frames after which concealment has faded to silence (60 ms).
const FADE_FRAMES: u32 = 3;

#[derive(Debug, Clone)]
pub struct Concealer {
    history: [i16; HISTORY],
    pitch: usize,
    phase: usize,
    lost_in_row: u32,
    /// Continuation of the concealed waveform, for the cross-fade into the next good frame.
    tail: [i16; CROSSFADE],
}

impl Default for Concealer {
    fn default() -> Self {
        Self::new()
    }
}

impl Concealer {
    pub fn new() -> Self {
        Concealer {
            history: [0; HISTORY],
            pitch: MIN_PITCH,
            phase: 0,
            lost_in_row: 0,
            tail: [0; CROSSFADE],
        }
    }

    /// Feeds a correctly received frame (modified in place for the cross-fade after a loss).
    pub fn good_frame(&mut self, frame: &mut Frame) {
        if self.lost_in_row > 0 && self.lost_in_row <= FADE_FRAMES {
            for (n, (sample, concealed)) in frame.iter_mut().zip(self.tail.iter()).enumerate() {
                let weight = (n + 1) as i32;
                let mixed = (*sample as i32 * weight
                    + *concealed as i32 * (CROSSFADE as i32 + 1 - weight))
                    / (CROSSFADE as i32 + 1);
                *sample = mixed as i16;
            }
        }
        self.lost_in_row = 0;
        self.history.copy_within(FRAME_SAMPLES.., 0);
        self.history[HISTORY - FRAME_SAMPLES..].copy_from_slice(frame);
    }

    /// Produces a replacement for a lost frame.
    pub fn conceal(&mut self, out: &mut Frame) {
        if self.lost_in_row == 0 {
            self.pitch = self.estimate_pitch();
            self.phase = 0;
        }
        self.lost_in_row += 1;
        if self.lost_in_row > FADE_FRAMES {
            out.fill(0);
            self.record_concealed(out);
            return;
        }
        let start = HISTORY - self.pitch;
        // Gain falls linearly from 1 to 0 across the fade frames (first frame at full level).
        let frame_gain_start = 1.0 - (self.lost_in_row - 1) as f32 / FADE_FRAMES as f32;
        let frame_gain_end = 1.0 - self.lost_in_row as f32 / FADE_FRAMES as f32;
        for (n, sample) in out.iter_mut().enumerate() {
            let gain = if self.lost_in_row == 1 {
                1.0
            } else {
                frame_gain_start
                    + (frame_gain_end - frame_gain_start) * n as f32 / FRAME_SAMPLES as f32
            };
            let source = self.history[start + (self.phase + n) % self.pitch];
            *sample = (source as f32 * gain) as i16;
        }
        for (n, tail) in self.tail.iter_mut().enumerate() {
            *tail = (self.history[start + (self.phase + FRAME_SAMPLES + n) % self.pitch] as f32
                * frame_gain_end) as i16;
        }
        self.phase = (self.phase + FRAME_SAMPLES) % self.pitch;
        // The repeated period stays the one from the last good frame; history is not fed with
        // concealed audio so later losses repeat real signal, not a copy of a copy.
    }

    /// A frame of which only one 10 ms half arrived (packets of 10 or 30 ms straddle frames):
    /// `frame` holds the decoded frame, `present` says which halves are real. The missing half
    /// is replaced by the pitch continuation, cross-faded into a real half that follows it.
    pub fn repair_half(&mut self, frame: &mut Frame, present: [bool; 2]) {
        const HALF: usize = FRAME_SAMPLES / 2;
        match present {
            [true, true] => self.good_frame(frame),
            [false, false] => self.conceal(frame),
            [false, true] => {
                // Conceal the whole frame, keep its first half, then fade into the real second
                // half from the concealed waveform's continuation.
                let mut concealed = [0i16; FRAME_SAMPLES];
                self.conceal(&mut concealed);
                frame[..HALF].copy_from_slice(&concealed[..HALF]);
                for n in 0..CROSSFADE {
                    let weight = (n + 1) as i32;
                    let index = HALF + n;
                    frame[index] = ((frame[index] as i32 * weight
                        + concealed[index] as i32 * (CROSSFADE as i32 + 1 - weight))
                        / (CROSSFADE as i32 + 1)) as i16;
                }
                self.lost_in_row = 0;
                self.history.copy_within(FRAME_SAMPLES.., 0);
                self.history[HISTORY - FRAME_SAMPLES..].copy_from_slice(frame);
            }
            [true, false] => {
                // The real first half continues the history (cross-faded out of an earlier
                // loss); the second half repeats its last pitch period at full level.
                if self.lost_in_row > 0 && self.lost_in_row <= FADE_FRAMES {
                    for (n, (sample, concealed)) in
                        frame.iter_mut().zip(self.tail.iter()).enumerate()
                    {
                        let weight = (n + 1) as i32;
                        *sample = ((*sample as i32 * weight
                            + *concealed as i32 * (CROSSFADE as i32 + 1 - weight))
                            / (CROSSFADE as i32 + 1)) as i16;
                    }
                }
                self.history.copy_within(HALF.., 0);
                self.history[HISTORY - HALF..].copy_from_slice(&frame[..HALF]);
                self.pitch = self.estimate_pitch();
                let start = HISTORY - self.pitch;
                for (n, sample) in frame[HALF..].iter_mut().enumerate() {
                    *sample = self.history[start + n % self.pitch];
                }
                self.phase = HALF % self.pitch;
                // Half a frame into the loss: the continuation carries on slightly faded.
                let gain = 1.0 - 0.5 / FADE_FRAMES as f32;
                for (n, tail) in self.tail.iter_mut().enumerate() {
                    *tail =
                        (self.history[start + (self.phase + n) % self.pitch] as f32 * gain) as i16;
                }
                self.lost_in_row = 1;
            }
        }
    }

    fn record_concealed(&mut self, _out: &Frame) {
        self.tail = [0; CROSSFADE];
    }

    fn estimate_pitch(&self) -> usize {
        let end = HISTORY;
        let window_start = end - CORRELATION_WINDOW;
        let mut best_lag = MIN_PITCH;
        let mut best_score = f32::MIN;
        for lag in MIN_PITCH..=MAX_PITCH {
            let mut correlation = 0f32;
            let mut energy = 1f32;
            for n in window_start..end {
                let a = self.history[n] as f32;
                let b = self.history[n - lag] as f32;
                correlation += a * b;
                energy += b * b;
            }
            let score = correlation / energy.sqrt();
            if score > best_score {
                best_score = score;
                best_lag = lag;
            }
        }
        best_lag
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn voiced(start: usize) -> Frame {
        // 125 Hz fundamental with two harmonics: period 64 samples.
        let mut frame = [0i16; FRAME_SAMPLES];
        for (n, s) in frame.iter_mut().enumerate() {
            let t = (start + n) as f32 / 8000.0;
            let w = 2.0 * std::f32::consts::PI * 125.0 * t;
            *s = (4000.0 * w.sin() + 2000.0 * (2.0 * w).sin() + 1000.0 * (3.0 * w).sin()) as i16;
        }
        frame
    }

    #[test]
    fn lost_voiced_frame_is_replaced_by_its_pitch_continuation_not_silence() {
        let mut concealer = Concealer::new();
        for k in 0..5 {
            let mut frame = voiced(k * FRAME_SAMPLES);
            concealer.good_frame(&mut frame);
        }
        let mut concealed = [0i16; FRAME_SAMPLES];
        concealer.conceal(&mut concealed);
        assert_eq!(concealer.pitch, 64);
        let truth = voiced(5 * FRAME_SAMPLES);
        let error: f64 = truth
            .iter()
            .zip(concealed.iter())
            .map(|(a, b)| ((*a as f64) - (*b as f64)).powi(2))
            .sum();
        let energy: f64 = truth.iter().map(|a| (*a as f64).powi(2)).sum();
        let snr = 10.0 * (energy / error.max(1.0)).log10();
        assert!(snr > 20.0, "periodic signal is continued (SNR {snr:.1} dB)");
    }

    fn snr_db(truth: &[i16], got: &[i16]) -> f64 {
        let error: f64 = truth
            .iter()
            .zip(got)
            .map(|(a, b)| ((*a as f64) - (*b as f64)).powi(2))
            .sum();
        let energy: f64 = truth.iter().map(|a| (*a as f64).powi(2)).sum();
        10.0 * (energy / error.max(1.0)).log10()
    }

    #[test]
    fn a_lost_second_half_continues_the_real_first_half() {
        let mut concealer = Concealer::new();
        for k in 0..5 {
            let mut frame = voiced(k * FRAME_SAMPLES);
            concealer.good_frame(&mut frame);
        }
        let truth = voiced(5 * FRAME_SAMPLES);
        let mut frame = truth;
        frame[80..].fill(0);
        concealer.repair_half(&mut frame, [true, false]);
        assert_eq!(frame[..80], truth[..80], "the real half is kept");
        let snr = snr_db(&truth[80..], &frame[80..]);
        assert!(
            snr > 15.0,
            "concealed half follows the pitch (SNR {snr:.1} dB)"
        );
        // The next good frame cross-fades in and the concealer is back to normal.
        let mut next = voiced(6 * FRAME_SAMPLES);
        concealer.good_frame(&mut next);
        assert_eq!(next[CROSSFADE..], voiced(6 * FRAME_SAMPLES)[CROSSFADE..]);
    }

    #[test]
    fn a_lost_first_half_is_concealed_and_fades_into_the_real_second_half() {
        let mut concealer = Concealer::new();
        for k in 0..5 {
            let mut frame = voiced(k * FRAME_SAMPLES);
            concealer.good_frame(&mut frame);
        }
        let truth = voiced(5 * FRAME_SAMPLES);
        let mut frame = truth;
        frame[..80].fill(0);
        concealer.repair_half(&mut frame, [false, true]);
        let snr = snr_db(&truth[..80], &frame[..80]);
        assert!(
            snr > 15.0,
            "concealed half follows the pitch (SNR {snr:.1} dB)"
        );
        assert_eq!(frame[80 + CROSSFADE..], truth[80 + CROSSFADE..]);
        let energy: f64 = frame.iter().map(|s| (*s as f64).powi(2)).sum();
        assert!(energy > 0.5 * truth.iter().map(|s| (*s as f64).powi(2)).sum::<f64>());
    }

    #[test]
    fn long_loss_fades_to_silence() {
        let mut concealer = Concealer::new();
        for k in 0..5 {
            let mut frame = voiced(k * FRAME_SAMPLES);
            concealer.good_frame(&mut frame);
        }
        let mut out = [0i16; FRAME_SAMPLES];
        let mut energies = Vec::new();
        for _ in 0..5 {
            concealer.conceal(&mut out);
            energies.push(out.iter().map(|s| (*s as f64).powi(2)).sum::<f64>());
        }
        assert!(energies[0] > energies[1] && energies[1] > energies[2]);
        assert_eq!(energies[3], 0.0);
        assert_eq!(energies[4], 0.0);
    }
}
