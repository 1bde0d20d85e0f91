//! G.722 wideband ADPCM at 64 kbit/s (ITU-T G.722 mode 1): a QMF splits 16 kHz audio into two
//! sub-bands coded with 6 bits (low) and 2 bits (high) per 8 kHz sample. Written from the
//! recommendation's block descriptions (SUBTRA, QUANTL, INVQAL, LOGSCL, SCALEL, block 4 …).
//!
//! Note on RTP: the RTP clock rate of G.722 is 8000 even though it samples at 16 kHz
//! (RFC 3551 §4.5.2), so a 20 ms frame is 320 samples, 160 bytes, and 160 timestamp units.

const QMF_COEFFS: [i32; 12] = [3, -11, 12, 32, -210, 951, 3876, -805, 362, -156, 53, -11];

const Q6: [i32; 32] = [
    0, 35, 72, 110, 150, 190, 233, 276, 323, 370, 422, 473, 530, 587, 650, 714, 786, 858, 940,
    1023, 1121, 1219, 1339, 1458, 1612, 1765, 1980, 2195, 2557, 2919, 0, 0,
];
const ILN: [i32; 32] = [
    0, 63, 62, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11,
    10, 9, 8, 7, 6, 5, 4, 0,
];
const ILP: [i32; 32] = [
    0, 61, 60, 59, 58, 57, 56, 55, 54, 53, 52, 51, 50, 49, 48, 47, 46, 45, 44, 43, 42, 41, 40, 39,
    38, 37, 36, 35, 34, 33, 32, 0,
];
const WL: [i32; 8] = [-60, -30, 58, 172, 334, 538, 1198, 3042];
const RL42: [i32; 16] = [0, 7, 6, 5, 4, 3, 2, 1, 7, 6, 5, 4, 3, 2, 1, 0];
const ILB: [i32; 32] = [
    2048, 2093, 2139, 2186, 2233, 2282, 2332, 2383, 2435, 2489, 2543, 2599, 2656, 2714, 2774, 2834,
    2896, 2960, 3025, 3091, 3158, 3228, 3298, 3371, 3444, 3520, 3597, 3676, 3756, 3838, 3922, 4008,
];
const QM4: [i32; 16] = [
    0, -20456, -12896, -8968, -6288, -4240, -2584, -1200, 20456, 12896, 8968, 6288, 4240, 2584,
    1200, 0,
];
const QM2: [i32; 4] = [-7408, -1616, 7408, 1616];
const QM6: [i32; 64] = [
    -136, -136, -136, -136, -24808, -21904, -19008, -16704, -14984, -13512, -12280, -11192, -10232,
    -9360, -8576, -7856, -7192, -6576, -6000, -5456, -4944, -4464, -4008, -3576, -3168, -2776,
    -2400, -2032, -1688, -1360, -1040, -728, 24808, 21904, 19008, 16704, 14984, 13512, 12280,
    11192, 10232, 9360, 8576, 7856, 7192, 6576, 6000, 5456, 4944, 4464, 4008, 3576, 3168, 2776,
    2400, 2032, 1688, 1360, 1040, 728, 432, 136, -432, -136,
];
const IHN: [i32; 3] = [0, 1, 0];
const IHP: [i32; 3] = [0, 3, 2];
const WH: [i32; 3] = [0, -214, 798];
const RH2: [i32; 4] = [2, 1, 2, 1];

#[inline]
fn saturate(value: i32) -> i32 {
    value.clamp(i16::MIN as i32, i16::MAX as i32)
}

/// Adaptive predictor state of one sub-band (ITU-T G.722 block 4).
#[derive(Debug, Clone, Default)]
struct SubBand {
    s: i32,
    sp: i32,
    sz: i32,
    r: [i32; 3],
    a: [i32; 3],
    ap: [i32; 3],
    p: [i32; 3],
    d: [i32; 7],
    b: [i32; 7],
    bp: [i32; 7],
    nb: i32,
    det: i32,
}

impl SubBand {
    fn new(det: i32) -> Self {
        SubBand {
            det,
            ..SubBand::default()
        }
    }

    /// Block 4: reconstruction, pole/zero predictor adaptation and the next prediction.
    fn adapt(&mut self, d: i32) {
        let sign = |v: i32| v >> 15;
        self.d[0] = d;
        self.r[0] = saturate(self.s + d);
        self.p[0] = saturate(self.sz + d);

        // UPPOL2
        let sg0 = sign(self.p[0]);
        let sg1 = sign(self.p[1]);
        let sg2 = sign(self.p[2]);
        let wd1 = saturate(self.a[1] << 2);
        let wd2 = if sg0 == sg1 { -wd1 } else { wd1 }.min(32767);
        let mut wd3 = if sg0 == sg2 { 128 } else { -128 };
        wd3 += wd2 >> 7;
        wd3 += (self.a[2] * 32512) >> 15;
        self.ap[2] = wd3.clamp(-12288, 12288);

        // UPPOL1
        let wd1 = if sg0 == sg1 { 192 } else { -192 };
        let wd2 = (self.a[1] * 32640) >> 15;
        let limit = saturate(15360 - self.ap[2]);
        self.ap[1] = saturate(wd1 + wd2).clamp(-limit, limit);

        // UPZERO
        let step = if d == 0 { 0 } else { 128 };
        let sg_d = sign(d);
        for i in 1..7 {
            let wd2 = if sign(self.d[i]) == sg_d { step } else { -step };
            let wd3 = (self.b[i] * 32640) >> 15;
            self.bp[i] = saturate(wd2 + wd3);
        }

        // DELAYA
        for i in (1..7).rev() {
            self.d[i] = self.d[i - 1];
            self.b[i] = self.bp[i];
        }
        for i in (1..3).rev() {
            self.r[i] = self.r[i - 1];
            self.p[i] = self.p[i - 1];
            self.a[i] = self.ap[i];
        }

        // FILTEP
        let wd1 = (self.a[1] * saturate(self.r[1] + self.r[1])) >> 15;
        let wd2 = (self.a[2] * saturate(self.r[2] + self.r[2])) >> 15;
        self.sp = saturate(wd1 + wd2);

        // FILTEZ
        let mut sz = 0;
        for i in (1..7).rev() {
            sz += (self.b[i] * saturate(self.d[i] + self.d[i])) >> 15;
        }
        self.sz = saturate(sz);

        // PREDIC
        self.s = saturate(self.sp + self.sz);
    }

    /// LOGSCL/SCALEL (low band) or LOGSCH/SCALEH (high band).
    fn scale(&mut self, weight: i32, nb_max: i32, shift_base: i32) {
        let nb = ((self.nb * 127) >> 7) + weight;
        self.nb = nb.clamp(0, nb_max);
        let index = ((self.nb >> 6) & 31) as usize;
        let shift = shift_base - (self.nb >> 11);
        let wd3 = if shift < 0 {
            ILB[index] << -shift
        } else {
            ILB[index] >> shift
        };
        self.det = wd3 << 2;
    }
}

/// G.722 64 kbit/s encoder: 2 samples at 16 kHz in, one byte out.
#[derive(Debug, Clone)]
pub struct G722Encoder {
    qmf: [i32; 24],
    low: SubBand,
    high: SubBand,
}

impl Default for G722Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl G722Encoder {
    pub fn new() -> Self {
        G722Encoder {
            qmf: [0; 24],
            low: SubBand::new(32),
            high: SubBand::new(8),
        }
    }

    /// Encodes 16 kHz `pcm` into `out`; returns bytes written (`pcm.len() / 2`, bounded by `out`).
    pub fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> usize {
        let mut written = 0;
        for (pair, code) in pcm.chunks_exact(2).zip(out.iter_mut()) {
            *code = self.encode_pair(pair[0], pair[1]);
            written += 1;
        }
        written
    }

    fn encode_pair(&mut self, first: i16, second: i16) -> u8 {
        self.qmf.copy_within(2.., 0);
        self.qmf[22] = first as i32;
        self.qmf[23] = second as i32;
        let mut sum_even = 0;
        let mut sum_odd = 0;
        for i in 0..12 {
            sum_odd += self.qmf[2 * i] * QMF_COEFFS[i];
            sum_even += self.qmf[2 * i + 1] * QMF_COEFFS[11 - i];
        }
        let x_low = (sum_even + sum_odd) >> 14;
        let x_high = (sum_even - sum_odd) >> 14;

        // Low band: SUBTRA, QUANTL, INVQAL, LOGSCL, SCALEL.
        let el = saturate(x_low - self.low.s);
        let magnitude = if el >= 0 { el } else { -(el + 1) };
        // First level whose decision threshold exceeds the error (30 if none): the thresholds
        // grow with the level, so a binary search finds the same level as a linear scan.
        let det = self.low.det;
        let level = 1 + Q6[1..30].partition_point(|&q| magnitude >= (q * det) >> 12);
        let ilow = if el < 0 { ILN[level] } else { ILP[level] };
        let ril = (ilow >> 2) as usize;
        let dlow = (self.low.det * QM4[ril]) >> 15;
        self.low.scale(WL[RL42[ril] as usize], 18432, 8);
        self.low.adapt(dlow);

        // High band: SUBTRA, QUANTH, INVQAH, LOGSCH, SCALEH.
        let eh = saturate(x_high - self.high.s);
        let magnitude = if eh >= 0 { eh } else { -(eh + 1) };
        let mih = if magnitude >= (564 * self.high.det) >> 12 {
            2
        } else {
            1
        };
        let ihigh = if eh < 0 { IHN[mih] } else { IHP[mih] };
        let dhigh = (self.high.det * QM2[ihigh as usize]) >> 15;
        self.high.scale(WH[RH2[ihigh as usize] as usize], 22528, 10);
        self.high.adapt(dhigh);

        ((ihigh << 6) | ilow) as u8
    }
}

/// G.722 64 kbit/s decoder: one byte in, 2 samples at 16 kHz out.
#[derive(Debug, Clone)]
pub struct G722Decoder {
    qmf: [i32; 24],
    low: SubBand,
    high: SubBand,
}

impl Default for G722Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl G722Decoder {
    pub fn new() -> Self {
        G722Decoder {
            qmf: [0; 24],
            low: SubBand::new(32),
            high: SubBand::new(8),
        }
    }

    /// Decodes `codes` into 16 kHz `out`; returns samples written (`2 * codes.len()`, bounded).
    pub fn decode(&mut self, codes: &[u8], out: &mut [i16]) -> usize {
        let mut written = 0;
        for (&code, pair) in codes.iter().zip(out.chunks_exact_mut(2)) {
            let (first, second) = self.decode_byte(code);
            pair[0] = first;
            pair[1] = second;
            written += 2;
        }
        written
    }

    fn decode_byte(&mut self, code: u8) -> (i16, i16) {
        let ilow = (code & 0x3F) as usize;
        let ihigh = ((code >> 6) & 0x03) as usize;

        // Low band: INVQBL, RECONS, LIMIT, then the same adaptation as the encoder.
        let wd2 = (self.low.det * QM6[ilow]) >> 15;
        let rlow = (self.low.s + wd2).clamp(-16384, 16383);
        let ril = ilow >> 2;
        let dlow = (self.low.det * QM4[ril]) >> 15;
        self.low.scale(WL[RL42[ril] as usize], 18432, 8);
        self.low.adapt(dlow);

        // High band.
        let dhigh = (self.high.det * QM2[ihigh]) >> 15;
        let rhigh = (dhigh + self.high.s).clamp(-16384, 16383);
        self.high.scale(WH[RH2[ihigh] as usize], 22528, 10);
        self.high.adapt(dhigh);

        // Receive QMF.
        self.qmf.copy_within(2.., 0);
        self.qmf[22] = rlow + rhigh;
        self.qmf[23] = rlow - rhigh;
        let mut out1 = 0;
        let mut out2 = 0;
        for i in 0..12 {
            out2 += self.qmf[2 * i] * QMF_COEFFS[i];
            out1 += self.qmf[2 * i + 1] * QMF_COEFFS[11 - i];
        }
        (saturate(out1 >> 11) as i16, saturate(out2 >> 11) as i16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(frequency: f64, amplitude: f64, samples: usize) -> Vec<i16> {
        (0..samples)
            .map(|n| {
                (amplitude * (2.0 * std::f64::consts::PI * frequency * n as f64 / 16000.0).sin())
                    as i16
            })
            .collect()
    }

    /// SNR after aligning for the codec's group delay (QMF analysis + synthesis = 22 samples).
    fn snr_db(source: &[i16], decoded: &[i16], delay: usize, skip: usize) -> f64 {
        let mut signal = 0.0;
        let mut noise = 0.0;
        for n in skip..source.len() - delay {
            let s = source[n] as f64;
            let e = decoded[n + delay] as f64 - s;
            signal += s * s;
            noise += e * e;
        }
        10.0 * (signal / noise.max(1e-9)).log10()
    }

    fn round_trip(pcm: &[i16]) -> Vec<i16> {
        let mut encoder = G722Encoder::new();
        let mut decoder = G722Decoder::new();
        let mut codes = vec![0u8; pcm.len() / 2];
        assert_eq!(encoder.encode(pcm, &mut codes), pcm.len() / 2);
        let mut out = vec![0i16; pcm.len()];
        assert_eq!(decoder.decode(&codes, &mut out), pcm.len());
        out
    }

    #[test]
    fn silence_round_trips_to_near_silence() {
        let mut encoder = G722Encoder::new();
        let mut codes = [0u8; 160];
        encoder.encode(&[0i16; 320], &mut codes);
        // Zero input: the first code is the positive smallest-level pair (high 3, low 58).
        assert_eq!(codes[0], 0xFA);
        let mut decoder = G722Decoder::new();
        let mut out = [0i16; 320];
        decoder.decode(&codes, &mut out);
        assert!(out.iter().all(|s| s.abs() < 16), "{out:?}");
    }

    #[test]
    fn low_band_tone_round_trips_with_high_snr() {
        let pcm = tone(1000.0, 8000.0, 16000);
        let out = round_trip(&pcm);
        let snr = snr_db(&pcm, &out, 22, 800);
        assert!(snr > 25.0, "SNR {snr:.1} dB");
    }

    #[test]
    fn high_band_tone_is_carried() {
        // 5 kHz lies in the upper sub-band (4–8 kHz) that G.711 cannot carry at all.
        let pcm = tone(5000.0, 6000.0, 16000);
        let out = round_trip(&pcm);
        let snr = snr_db(&pcm, &out, 22, 800);
        assert!(snr > 10.0, "SNR {snr:.1} dB");
    }

    #[test]
    fn full_scale_input_does_not_overflow() {
        let pcm: Vec<i16> = (0..3200)
            .map(|n| if (n / 7) % 2 == 0 { i16::MAX } else { i16::MIN })
            .collect();
        let out = round_trip(&pcm);
        assert_eq!(out.len(), pcm.len());
    }
}

#[cfg(test)]
mod reference_vectors {
    //! Bit-exactness against an independent implementation: sippy/libg722 (public-domain C, the
    //! Steve Underwood / spandsp lineage that is verified against the ITU-T G.722 test
    //! sequences), driven through its Python binding (`pip install g722`, module `G722`):
    //! `G722.G722(16000, 64000).encode(pcm)` over the signal below, and `.decode` of the result.
    use super::*;

    /// Deterministic integer test signal (LCG noise + triangle + square), no floating point so
    /// both implementations see identical input.
    fn signal() -> Vec<i16> {
        (0..1600i64)
            .map(|n| {
                let lcg = (n * 1103515245 + 12345) % 65536;
                let triangle = (n * 37) % 800 - 400;
                let square = if (n / 40) % 2 == 1 { 8000 } else { -8000 };
                ((lcg % 4001 - 2000) * 3 + triangle * 20 + square).clamp(-32768, 32767) as i16
            })
            .collect()
    }

    const ENCODED_HEX: &[&str] = &[
        "278420842084848d8bcc8d8cbc9f18188a8d910f0e93b1b9583321a8da795b2d656c2af22934569e7dbafda5ea950a95",
        "6f49cb4dd0f69c57523aed7c07cb1779d12be92ae66c9b4d2f6c76f2f8286673ed9893d6e8920c521f709d1f05d57f4e",
        "5f527774599d140adb35eadc686876f1b46510fcfadee5b270f0b7e49b894c564d3779529e522e910add4b7479539f59",
        "b3279e52f0eede6ef5f8e4b42e0aaef0fc7076b66491563b08f60beecedbd6ef583c8cc9efccd8dbd024ab7f2994f9f8",
        "5f7ab3e6f96efd269bd56e53289c4c7350742f07b8cd3491f6db5853be2e46fb4b2da5f970762ceb780dff716e5d6b5b",
        "29ec309452be4e59d855327255f68bdc5a5299d96e0eed9a180ae535dc6f5e2dec75b23813ec5cfcfd686a5feb903d0a",
        "d5d3d6aed95bff96688d4b5dd5f59b3acf27ab39b250fed66c6b7cf5f2a82d94d1f6ea9c6f94cbe8dc1607f5fbd0d57f",
        "95f0df7e150af5d45133646d7669f59f0ba5dc7cf6b2e9f47333947bf08d0ab773d47ed53194ca5e4f3b76545e557430",
        "052df135ebf3bafd25ba2d4ef1ba54e7fa787b6a288807f4577857714c35f65c8a4c365a53bdd335f82de68ef3705efc",
        "eee7be6eb279151feb566fd82a974ebf1809f353d6d3707958da996d08d5d4d5b528e9fcb664905171fce9f0731db0e7",
        "f39652289c8e78588fdfeb1708d74ff295ffd5d6efd81c069e28ec7e6efde9f6ee3b13eadd77fe686d386d38b98b529f",
        "d33051efd459598e589e5453fcee923bd024afccf35b736c33777e6b2e08b77d6dee739c7a9c573a079d6992ddfbda97",
        "1c67894b5a75f95a7d366470738f4f696f5eb17c2e6d79ef8ff3735ef4905e9f7c9f1f0f9955559f690ff055fb100df6",
        "522dea6ff35a9ebf640f79fffbe8b1fbfbde638c108ed1eafb5a15fef0f88c493277973b553498f97b0caf58e8f9f4df",
        "f9e6b53708feecf478f2f8eaf5900a13f2d77ad9757815fe1a92525b97d62f71502cab2e8bf2fb5a7cec69f973db28bb",
        "d0765c31278d4e5a743208984e7cf95eda5731f419469cf8d32aa6d8e5f371905ab91c68776f586af03095cf2a924bf5",
        "527e6e5dde8bd758539adced977a99194a2b711eb0e5fd7274af2a09ead32b51",
    ];

    fn reference_codes() -> Vec<u8> {
        let hex: String = ENCODED_HEX.concat();
        (0..hex.len() / 2)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap_or(0))
            .collect()
    }

    #[test]
    fn encoder_is_bit_exact_with_libg722() {
        let mut codes = vec![0u8; 800];
        assert_eq!(G722Encoder::new().encode(&signal(), &mut codes), 800);
        let reference = reference_codes();
        assert_eq!(reference.len(), 800);
        let first_difference = codes.iter().zip(&reference).position(|(a, b)| a != b);
        assert_eq!(first_difference, None);
    }

    #[test]
    fn decoder_is_bit_exact_with_libg722() {
        let mut pcm = vec![0i16; 1600];
        assert_eq!(
            G722Decoder::new().decode(&reference_codes(), &mut pcm),
            1600
        );
        assert_eq!(&pcm[..12], &[0, -1, -1, 0, 0, -2, -1, 7, 1, -28, 1, 96]);
        // FNV-1a over the 16-bit samples of libg722's decoder output.
        let mut hash: u64 = 0xcbf29ce484222325;
        for sample in &pcm {
            hash ^= *sample as u16 as u64;
            hash = hash.wrapping_mul(0x100000001b3);
        }
        assert_eq!(hash, 0x494baca180e37537);
    }
}
