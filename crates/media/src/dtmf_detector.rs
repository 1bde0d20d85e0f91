//! In-band DTMF detection with Goertzel filters, for callers whose gateways leave key tones in
//! the audio. Works on 8 kHz samples in blocks of 80 (10 ms).
//!
//! Timing (ITU-T Q.24): a digit is accepted when three consecutive blocks agree with energies
//! within 2 dB of each other. Three whole blocks fit in any tone of ≥ 39.9 ms (3 × 80 + 79
//! samples), so 40 ms tones are always accepted. A tone under 20 ms (< 160 samples) spread over
//! three blocks fills at most one whole block, and its two partial blocks share ≤ 79 samples, so
//! one of them is more than 2 dB weaker than the whole block and the run is rejected.
//!
//! Validity per block: both groups above an absolute floor, twist within limits, each tone
//! clearly above the other tones of its group, and the two tones carrying most of the block's
//! energy (signal-to-total check: speech and music spread energy over many frequencies).

use crate::telephone_event::{DtmfDigit, DtmfEvent, DtmfSource};

const BLOCK: usize = 80;
const ROWS: [f32; 4] = [697.0, 770.0, 852.0, 941.0];
const COLUMNS: [f32; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
const KEYPAD: [[char; 4]; 4] = [
    ['1', '2', '3', 'A'],
    ['4', '5', '6', 'B'],
    ['7', '8', '9', 'C'],
    ['*', '0', '#', 'D'],
];

/// Per-tone energy floor (≈ −30 dBm0 in block-energy units: N·A²/2 with A = 717).
const TONE_ENERGY_FLOOR: f32 = BLOCK as f32 * 717.0 * 717.0 / 2.0;
/// Row may exceed column by 8 dB (normal twist) and column exceed row by 4 dB (reverse twist).
const NORMAL_TWIST: f32 = 6.31;
const REVERSE_TWIST: f32 = 2.51;
/// Each tone must be 6 dB above the next strongest of its group.
const RELATIVE_PEAK: f32 = 3.98;
/// The two tones must carry this share of the block's energy.
const TONE_SHARE: f32 = 0.6;
/// Consecutive blocks must agree within 2 dB of each other.
const BLOCK_MATCH: f32 = 1.6;

#[derive(Debug, Clone)]
pub struct DtmfDetector {
    coefficients: [f32; 8],
    s1: [f32; 8],
    s2: [f32; 8],
    block_energy: f32,
    filled: usize,
    /// Candidates of the two previous blocks (older first) and their tone energies.
    previous: [Option<(DtmfDigit, f32)>; 2],
    /// Digit currently held down and blocks it has lasted.
    active: Option<(DtmfDigit, u32)>,
    /// Blocks without the active digit (release after two, bridging one dropout).
    misses: u32,
}

impl Default for DtmfDetector {
    fn default() -> Self {
        Self::new()
    }
}

impl DtmfDetector {
    pub fn new() -> Self {
        let mut coefficients = [0f32; 8];
        for (c, f) in coefficients
            .iter_mut()
            .zip(ROWS.iter().chain(COLUMNS.iter()))
        {
            *c = 2.0 * (2.0 * std::f32::consts::PI * f / 8000.0).cos();
        }
        DtmfDetector {
            coefficients,
            s1: [0.0; 8],
            s2: [0.0; 8],
            block_energy: 0.0,
            filled: 0,
            previous: [None, None],
            active: None,
            misses: 0,
        }
    }

    /// Feeds 8 kHz samples; `emit` is called for each press/release found.
    pub fn process(&mut self, samples: &[i16], mut emit: impl FnMut(DtmfEvent)) {
        for &sample in samples {
            let x = sample as f32;
            self.block_energy += x * x;
            for k in 0..8 {
                let s0 = x + self.coefficients[k] * self.s1[k] - self.s2[k];
                self.s2[k] = self.s1[k];
                self.s1[k] = s0;
            }
            self.filled += 1;
            if self.filled == BLOCK {
                self.finish_block(&mut emit);
            }
        }
    }

    fn finish_block(&mut self, emit: &mut impl FnMut(DtmfEvent)) {
        let mut energies = [0f32; 8];
        for (k, energy) in energies.iter_mut().enumerate() {
            let power = self.s1[k] * self.s1[k] + self.s2[k] * self.s2[k]
                - self.coefficients[k] * self.s1[k] * self.s2[k];
            // |X|² → the tone's share of block energy (N·A²/2 for a pure tone).
            *energy = 2.0 * power / BLOCK as f32;
        }
        let candidate = self.classify(&energies);
        self.s1 = [0.0; 8];
        self.s2 = [0.0; 8];
        self.block_energy = 0.0;
        self.filled = 0;

        let confirmed = match (self.previous, candidate) {
            ([Some((first, e1)), Some((second, e2))], Some((third, e3)))
                if first == second && second == third =>
            {
                let strongest = e1.max(e2).max(e3);
                let weakest = e1.min(e2).min(e3).max(1.0);
                (strongest / weakest <= BLOCK_MATCH).then_some(third)
            }
            _ => None,
        };
        self.previous = [self.previous[1], candidate];

        match (self.active, confirmed) {
            (Some((active, blocks)), _) if candidate.map(|c| c.0) == Some(active) => {
                self.active = Some((active, blocks + 1));
                self.misses = 0;
            }
            (Some((active, blocks)), _) => {
                self.misses += 1;
                if self.misses >= 2 || confirmed.is_some() {
                    let duration_ms = blocks * BLOCK as u32 * 1000 / 8000;
                    emit(DtmfEvent::Released {
                        digit: active,
                        source: DtmfSource::InBand,
                        duration_ms,
                    });
                    self.active = None;
                    self.misses = 0;
                    if let Some(digit) = confirmed {
                        self.active = Some((digit, 3));
                        emit(DtmfEvent::Pressed {
                            digit,
                            source: DtmfSource::InBand,
                        });
                    }
                }
            }
            (None, Some(digit)) => {
                self.active = Some((digit, 3));
                self.misses = 0;
                emit(DtmfEvent::Pressed {
                    digit,
                    source: DtmfSource::InBand,
                });
            }
            (None, None) => {}
        }
    }

    fn classify(&self, energies: &[f32; 8]) -> Option<(DtmfDigit, f32)> {
        let (row, row_energy) = strongest(&energies[..4]);
        let (column, column_energy) = strongest(&energies[4..]);
        if row_energy < TONE_ENERGY_FLOOR || column_energy < TONE_ENERGY_FLOOR {
            return None;
        }
        if row_energy > column_energy * NORMAL_TWIST || column_energy > row_energy * REVERSE_TWIST {
            return None;
        }
        for (k, energy) in energies[..4].iter().enumerate() {
            if k != row && energy * RELATIVE_PEAK > row_energy {
                return None;
            }
        }
        for (k, energy) in energies[4..].iter().enumerate() {
            if k != column && energy * RELATIVE_PEAK > column_energy {
                return None;
            }
        }
        if row_energy + column_energy < TONE_SHARE * self.block_energy {
            return None;
        }
        let digit = DtmfDigit::from_char(KEYPAD[row][column])?;
        Some((digit, row_energy + column_energy))
    }
}

fn strongest(energies: &[f32]) -> (usize, f32) {
    let mut best = (0, f32::MIN);
    for (k, &e) in energies.iter().enumerate() {
        if e > best.1 {
            best = (k, e);
        }
    }
    best
}

/// Row and column frequencies of a key (for generating test and outbound in-band tones).
pub fn key_frequencies(digit: DtmfDigit) -> (f32, f32) {
    let key = digit.as_char();
    for (r, row) in KEYPAD.iter().enumerate() {
        for (c, k) in row.iter().enumerate() {
            if *k == key {
                return (ROWS[r], COLUMNS[c]);
            }
        }
    }
    (ROWS[0], COLUMNS[0])
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    /// Peak amplitude of a 0 dBm0 sine in 16-bit linear (G.711: +3.17 dBm0 is full scale).
    const DBM0_ZERO_PEAK: f32 = 22670.0;

    fn level(dbm0: f32) -> f32 {
        DBM0_ZERO_PEAK * 10f32.powf(dbm0 / 20.0)
    }

    struct Signal {
        samples: Vec<i16>,
    }

    impl Signal {
        fn silence(ms: usize) -> Vec<f32> {
            vec![0.0; ms * 8]
        }

        fn dual_tone(f1: f32, f2: f32, dbm0_each: f32, ms: usize) -> Vec<f32> {
            (0..ms * 8)
                .map(|n| {
                    let t = n as f32 / 8000.0;
                    level(dbm0_each)
                        * ((2.0 * std::f32::consts::PI * f1 * t).sin()
                            + (2.0 * std::f32::consts::PI * f2 * t).sin())
                })
                .collect()
        }

        fn build(parts: Vec<Vec<f32>>, noise_dbm0: Option<f32>, seed: u64) -> Signal {
            let mut rng = StdRng::seed_from_u64(seed);
            let noise_rms = noise_dbm0.map(|d| level(d) / 2f32.sqrt()).unwrap_or(0.0);
            let samples = parts
                .into_iter()
                .flatten()
                .map(|x| {
                    // Sum of uniforms approximates Gaussian noise of the wanted RMS.
                    let n: f32 = (0..12).map(|_| rng.random::<f32>()).sum::<f32>() - 6.0;
                    (x + n * noise_rms).clamp(-32768.0, 32767.0) as i16
                })
                .collect();
            Signal { samples }
        }
    }

    fn detect(samples: &[i16]) -> Vec<char> {
        let mut detector = DtmfDetector::new();
        let mut presses = Vec::new();
        for chunk in samples.chunks(160) {
            detector.process(chunk, |event| {
                if let DtmfEvent::Pressed { digit, .. } = event {
                    presses.push(digit.as_char());
                }
            });
        }
        presses
    }

    #[test]
    fn all_sixteen_digits_at_minus_20_dbm0_in_noise_are_detected_once_each() {
        let mut parts = vec![Signal::silence(30)];
        for digit in DtmfDigit::all() {
            let (row, column) = key_frequencies(digit);
            parts.push(Signal::dual_tone(row, column, -20.0, 50));
            parts.push(Signal::silence(50));
        }
        let signal = Signal::build(parts, Some(-45.0), 1);
        assert_eq!(
            detect(&signal.samples).into_iter().collect::<String>(),
            "0123456789*#ABCD"
        );
    }

    #[test]
    fn forty_ms_tones_are_accepted_at_every_alignment() {
        for offset_samples in (0..80).step_by(7) {
            let (row, column) = key_frequencies(
                DtmfDigit::from_char('7')
                    .unwrap_or(DtmfDigit::from_event_code(7).unwrap_or_else(|| unreachable!())),
            );
            let parts = vec![
                vec![0.0; offset_samples],
                Signal::dual_tone(row, column, -20.0, 40),
                Signal::silence(60),
            ];
            let signal = Signal::build(parts, Some(-50.0), offset_samples as u64);
            assert_eq!(detect(&signal.samples), ['7'], "offset {offset_samples}");
        }
    }

    #[test]
    fn tones_shorter_than_20_ms_are_rejected_at_every_alignment() {
        for offset_samples in 0..80 {
            let (row, column) =
                key_frequencies(DtmfDigit::from_char('5').unwrap_or_else(|| unreachable!()));
            let mut tone = Signal::dual_tone(row, column, -10.0, 20);
            tone.truncate(159);
            let parts = vec![vec![0.0; offset_samples], tone, Signal::silence(60)];
            let signal = Signal::build(parts, None, 0);
            assert!(
                detect(&signal.samples).is_empty(),
                "offset {offset_samples}"
            );
        }
    }

    #[test]
    fn rapid_digits_with_short_pauses_are_separated() {
        // 45 ms tones with 45 ms pauses ("1", "1", "2") must give three presses.
        let mut parts = Vec::new();
        for key in ['1', '1', '2'] {
            let (row, column) =
                key_frequencies(DtmfDigit::from_char(key).unwrap_or_else(|| unreachable!()));
            parts.push(Signal::dual_tone(row, column, -15.0, 45));
            parts.push(Signal::silence(45));
        }
        let signal = Signal::build(parts, Some(-50.0), 3);
        assert_eq!(detect(&signal.samples), ['1', '1', '2']);
    }

    #[test]
    fn speech_like_signal_is_not_detected() {
        // Voiced speech stand-in: a gliding 100–220 Hz glottal pulse train with 30 harmonics,
        // shaped by three moving formants, syllable-modulated, for four seconds.
        let mut samples = Vec::new();
        let mut phase = 0f32;
        for n in 0..32000 {
            let t = n as f32 / 8000.0;
            let f0 = 160.0 + 60.0 * (2.0 * std::f32::consts::PI * 0.7 * t).sin();
            phase += 2.0 * std::f32::consts::PI * f0 / 8000.0;
            let formants = [
                700.0 + 300.0 * (1.3 * t).sin(),
                1200.0 + 500.0 * (0.9 * t).cos(),
                2500.0,
            ];
            let mut x = 0f32;
            for h in 1..=30 {
                let f = f0 * h as f32;
                if f > 3800.0 {
                    break;
                }
                let gain: f32 = formants
                    .iter()
                    .map(|fm| 1.0 / (1.0 + ((f - fm) / 120.0).powi(2)))
                    .sum();
                x += gain * (phase * h as f32).sin() / h as f32;
            }
            let envelope = (2.0 * std::f32::consts::PI * 4.0 * t).sin().abs();
            samples.push((x * 9000.0 * envelope).clamp(-32768.0, 32767.0) as i16);
        }
        assert!(detect(&samples).is_empty());
    }

    #[test]
    fn music_like_signal_is_not_detected() {
        // Chords of piano-like notes (decaying harmonics) over a bass line, including notes near
        // DTMF frequencies (F5 ≈ 698 Hz, E6 ≈ 1319 Hz), for four seconds.
        let chords: [[f32; 3]; 4] = [
            [261.6, 329.6, 392.0],
            [349.2, 440.0, 698.5],
            [392.0, 493.9, 1318.5],
            [220.0, 261.6, 329.6],
        ];
        let mut samples = Vec::new();
        for n in 0..32000 {
            let t = n as f32 / 8000.0;
            let chord = &chords[(n / 8000) % 4];
            let note_t = t % 0.5;
            let decay = (-note_t * 3.0).exp();
            let mut x = 0f32;
            for (i, &f) in chord.iter().enumerate() {
                for h in 1..=6 {
                    x += (2.0 * std::f32::consts::PI * f * h as f32 * t + i as f32).sin()
                        / (h * h) as f32;
                }
            }
            x += 0.8 * (2.0 * std::f32::consts::PI * chord[0] / 2.0 * t).sin();
            samples.push((x * 5000.0 * decay).clamp(-32768.0, 32767.0) as i16);
        }
        assert!(detect(&samples).is_empty());
    }

    #[test]
    fn frequency_deviation_of_1_5_percent_is_accepted() {
        // Q.24: keys must be recognised with each tone off by up to ±1.5 %.
        for (deviation, key) in [(1.015f32, '3'), (0.985, 'C'), (1.015, '0'), (0.985, '*')] {
            let (row, column) =
                key_frequencies(DtmfDigit::from_char(key).unwrap_or_else(|| unreachable!()));
            let signal = Signal::build(
                vec![
                    Signal::dual_tone(row * deviation, column * deviation, -20.0, 60),
                    Signal::silence(40),
                ],
                Some(-45.0),
                9,
            );
            assert_eq!(detect(&signal.samples), [key], "{key} at {deviation}");
        }
    }

    #[test]
    fn single_tones_and_excessive_twist_are_rejected() {
        let (row, column) =
            key_frequencies(DtmfDigit::from_char('9').unwrap_or_else(|| unreachable!()));
        let row_only = Signal::build(vec![Signal::dual_tone(row, row, -20.0, 200)], None, 0);
        assert!(detect(&row_only.samples).is_empty());
        // Column tone 12 dB below the row tone: beyond the allowed normal twist.
        let twisted: Vec<f32> = (0..1600)
            .map(|n| {
                let t = n as f32 / 8000.0;
                level(-14.0) * (2.0 * std::f32::consts::PI * row * t).sin()
                    + level(-26.0) * (2.0 * std::f32::consts::PI * column * t).sin()
            })
            .collect();
        let twisted = Signal::build(vec![twisted], None, 0);
        assert!(detect(&twisted.samples).is_empty());
    }

    #[test]
    fn release_reports_duration() {
        let (row, column) =
            key_frequencies(DtmfDigit::from_char('#').unwrap_or_else(|| unreachable!()));
        let signal = Signal::build(
            vec![
                Signal::dual_tone(row, column, -15.0, 200),
                Signal::silence(60),
            ],
            None,
            0,
        );
        let mut detector = DtmfDetector::new();
        let mut durations = Vec::new();
        detector.process(&signal.samples, |event| {
            if let DtmfEvent::Released { duration_ms, .. } = event {
                durations.push(duration_ms);
            }
        });
        assert_eq!(durations.len(), 1);
        assert!((180..=215).contains(&durations[0]), "{durations:?}");
    }
}
