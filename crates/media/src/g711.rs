//! G.711 µ-law and A-law (ITU-T G.711), bit-exact with the ITU segment tables.
//!
//! Encoding and decoding go through tables built at compile time, so a 20 ms frame is a
//! straight table walk with no branches on the sample values.

/// µ-law bias added before segment search (33 in 14-bit terms, 0x84 in 16-bit terms).
const ULAW_BIAS: i32 = 0x84;
/// Largest 14-bit magnitude µ-law can represent before clipping.
const ULAW_CLIP: i32 = 8159;

const ULAW_SEGMENT_END: [i32; 8] = [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF];
const ALAW_SEGMENT_END: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];

const fn segment_of(value: i32, ends: &[i32; 8]) -> usize {
    let mut segment = 0;
    while segment < 8 {
        if value <= ends[segment] {
            return segment;
        }
        segment += 1;
    }
    8
}

/// Encodes one 14-bit linear sample (the top 14 bits of an i16) to µ-law.
const fn ulaw_from_linear14(sample14: i32) -> u8 {
    let (magnitude, mask) = if sample14 < 0 {
        (-sample14, 0x7F)
    } else {
        (sample14, 0xFF)
    };
    let magnitude = if magnitude > ULAW_CLIP {
        ULAW_CLIP
    } else {
        magnitude
    } + (ULAW_BIAS >> 2);
    let segment = segment_of(magnitude, &ULAW_SEGMENT_END);
    if segment >= 8 {
        return (0x7F ^ mask) as u8;
    }
    let code = ((segment as i32) << 4) | ((magnitude >> (segment + 1)) & 0x0F);
    (code ^ mask) as u8
}

/// Encodes one 13-bit linear sample (the top 13 bits of an i16) to A-law.
const fn alaw_from_linear13(sample13: i32) -> u8 {
    let (magnitude, mask) = if sample13 >= 0 {
        (sample13, 0xD5)
    } else {
        (-sample13 - 1, 0x55)
    };
    let segment = segment_of(magnitude, &ALAW_SEGMENT_END);
    if segment >= 8 {
        return (0x7F ^ mask) as u8;
    }
    let mut code = (segment as i32) << 4;
    if segment < 2 {
        code |= (magnitude >> 1) & 0x0F;
    } else {
        code |= (magnitude >> segment) & 0x0F;
    }
    (code ^ mask) as u8
}

const fn ulaw_to_linear_const(code: u8) -> i16 {
    let inverted = !code as i32;
    let mut magnitude = ((inverted & 0x0F) << 3) + ULAW_BIAS;
    magnitude <<= (inverted & 0x70) >> 4;
    if inverted & 0x80 != 0 {
        (ULAW_BIAS - magnitude) as i16
    } else {
        (magnitude - ULAW_BIAS) as i16
    }
}

const fn alaw_to_linear_const(code: u8) -> i16 {
    let toggled = (code ^ 0x55) as i32;
    let mut magnitude = (toggled & 0x0F) << 4;
    let segment = (toggled & 0x70) >> 4;
    match segment {
        0 => magnitude += 8,
        1 => magnitude += 0x108,
        _ => {
            magnitude += 0x108;
            magnitude <<= segment - 1;
        }
    }
    if toggled & 0x80 != 0 {
        magnitude as i16
    } else {
        -magnitude as i16
    }
}

static ULAW_DECODE: [i16; 256] = {
    let mut table = [0i16; 256];
    let mut code = 0;
    while code < 256 {
        table[code] = ulaw_to_linear_const(code as u8);
        code += 1;
    }
    table
};

static ALAW_DECODE: [i16; 256] = {
    let mut table = [0i16; 256];
    let mut code = 0;
    while code < 256 {
        table[code] = alaw_to_linear_const(code as u8);
        code += 1;
    }
    table
};

/// Indexed by the sample's top 14 bits, offset to be non-negative.
static ULAW_ENCODE: [u8; 16384] = {
    let mut table = [0u8; 16384];
    let mut index = 0;
    while index < 16384 {
        table[index] = ulaw_from_linear14(index as i32 - 8192);
        index += 1;
    }
    table
};

/// Indexed by the sample's top 13 bits, offset to be non-negative.
static ALAW_ENCODE: [u8; 8192] = {
    let mut table = [0u8; 8192];
    let mut index = 0;
    while index < 8192 {
        table[index] = alaw_from_linear13(index as i32 - 4096);
        index += 1;
    }
    table
};

/// µ-law code for one linear sample.
#[inline]
pub fn ulaw_encode(sample: i16) -> u8 {
    ULAW_ENCODE[((sample >> 2) as i32 + 8192) as usize]
}

/// Linear sample for one µ-law code.
#[inline]
pub fn ulaw_decode(code: u8) -> i16 {
    ULAW_DECODE[code as usize]
}

/// A-law code for one linear sample.
#[inline]
pub fn alaw_encode(sample: i16) -> u8 {
    ALAW_ENCODE[((sample >> 3) as i32 + 4096) as usize]
}

/// Linear sample for one A-law code.
#[inline]
pub fn alaw_decode(code: u8) -> i16 {
    ALAW_DECODE[code as usize]
}

/// Encodes `pcm` into `out` (same length; extra entries of the longer slice are left alone).
pub fn ulaw_encode_slice(pcm: &[i16], out: &mut [u8]) {
    for (code, &sample) in out.iter_mut().zip(pcm) {
        *code = ulaw_encode(sample);
    }
}

/// Decodes `codes` into `out`.
pub fn ulaw_decode_slice(codes: &[u8], out: &mut [i16]) {
    for (sample, &code) in out.iter_mut().zip(codes) {
        *sample = ulaw_decode(code);
    }
}

/// Encodes `pcm` into `out`.
pub fn alaw_encode_slice(pcm: &[i16], out: &mut [u8]) {
    for (code, &sample) in out.iter_mut().zip(pcm) {
        *code = alaw_encode(sample);
    }
}

/// Decodes `codes` into `out`.
pub fn alaw_decode_slice(codes: &[u8], out: &mut [i16]) {
    for (sample, &code) in out.iter_mut().zip(codes) {
        *sample = alaw_decode(code);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reconstruction levels from ITU-T G.711 Table 2 (µ-law), positive codes 0x80..=0x8F and
    /// spot values across segments; decoder output is the 16-bit left-aligned value.
    #[test]
    fn ulaw_decode_matches_itu_table() {
        assert_eq!(ulaw_decode(0xFF), 0);
        assert_eq!(ulaw_decode(0x7F), 0);
        assert_eq!(ulaw_decode(0x80), 32124);
        assert_eq!(ulaw_decode(0x00), -32124);
        assert_eq!(ulaw_decode(0xFE), 8);
        assert_eq!(ulaw_decode(0xF0), 120);
        assert_eq!(ulaw_decode(0xEF), 132);
        assert_eq!(ulaw_decode(0xDF), 396);
        assert_eq!(ulaw_decode(0x8F), 16764);
        assert_eq!(ulaw_decode(0x70), -120);
    }

    #[test]
    fn alaw_decode_matches_itu_table() {
        assert_eq!(alaw_decode(0xD5), 8);
        assert_eq!(alaw_decode(0x55), -8);
        assert_eq!(alaw_decode(0xAA), 32256);
        assert_eq!(alaw_decode(0x2A), -32256);
        assert_eq!(alaw_decode(0xC5), 264);
        assert_eq!(alaw_decode(0xF5), 528);
        assert_eq!(alaw_decode(0xE5), 1056);
        assert_eq!(alaw_decode(0xA5), 16896);
    }

    #[test]
    fn encode_spot_values() {
        assert_eq!(ulaw_encode(0), 0xFF);
        // -1 is magnitude 1 in 14-bit terms: interval 1..3, reconstructed as -2 (code 0x7E).
        assert_eq!(ulaw_encode(-1), 0x7E);
        assert_eq!(ulaw_encode(-4), 0x7E);
        assert_eq!(ulaw_encode(i16::MAX), 0x80);
        assert_eq!(ulaw_encode(i16::MIN), 0x00);
        assert_eq!(alaw_encode(0), 0xD5);
        assert_eq!(alaw_encode(-1), 0x55);
        assert_eq!(alaw_encode(i16::MAX), 0xAA);
        assert_eq!(alaw_encode(i16::MIN), 0x2A);
    }

    /// Every code decodes to a level that encodes back to the same code (the G.711
    /// decision/reconstruction tables are consistent), except µ-law's negative zero.
    #[test]
    fn every_code_round_trips() {
        for code in 0..=255u8 {
            let expected_ulaw = if code == 0x7F { 0xFF } else { code };
            assert_eq!(
                ulaw_encode(ulaw_decode(code)),
                expected_ulaw,
                "µ-law {code:#04x}"
            );
            assert_eq!(alaw_encode(alaw_decode(code)), code, "A-law {code:#04x}");
        }
    }

    /// Quantisation error stays within half a step of the segment the sample falls in.
    #[test]
    fn quantisation_error_is_bounded_by_segment_step() {
        for sample in (i16::MIN..=i16::MAX).step_by(7) {
            let ulaw = ulaw_decode(ulaw_encode(sample)) as i32;
            let alaw = alaw_decode(alaw_encode(sample)) as i32;
            let magnitude = (sample as i32).abs();
            // Largest step is 1024 (µ-law) / 1024 (A-law) in the top segment; clipping above.
            let bound = (magnitude / 16).max(16) + 8;
            if magnitude < 32000 {
                assert!(
                    (ulaw - sample as i32).abs() <= bound,
                    "µ-law {sample} -> {ulaw}"
                );
                assert!(
                    (alaw - sample as i32).abs() <= bound,
                    "A-law {sample} -> {alaw}"
                );
            }
        }
    }

    fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
        bytes.into_iter().fold(0xcbf29ce484222325, |hash, byte| {
            (hash ^ byte as u64).wrapping_mul(0x100000001b3)
        })
    }

    /// Cross-check with an independent implementation (SoX 14.4.2, dither off):
    /// `sox -D -t raw -r 8000 -e u-law -b 8 codes.raw -t raw -e signed -b 16 out.s16` over the
    /// 256 codes gives exactly our decode tables (FNV-1a of the little-endian samples below).
    /// Encoding `sox -D … -e signed -b 16 ramp.raw -t raw -e u-law …` over every 16-bit value
    /// agrees with ours on every G.711 input value (the 14-bit µ-law / 13-bit A-law grid);
    /// off-grid low bits differ only because SoX rounds where G.711 truncates.
    #[test]
    fn tables_match_sox() {
        let ulaw_decoded = (0..=255u8).flat_map(|c| ulaw_decode(c).to_le_bytes());
        let alaw_decoded = (0..=255u8).flat_map(|c| alaw_decode(c).to_le_bytes());
        assert_eq!(fnv1a(ulaw_decoded), 0xb91e65d68481a1a8);
        assert_eq!(fnv1a(alaw_decoded), 0x693a40ca62a3d2a5);
        let ulaw_encoded = (i16::MIN..=i16::MAX).step_by(4).map(ulaw_encode);
        let alaw_encoded = (i16::MIN..=i16::MAX).step_by(8).map(alaw_encode);
        assert_eq!(fnv1a(ulaw_encoded), 0x3065d79fa2fb900e);
        assert_eq!(fnv1a(alaw_encoded), 0xc5324efef92dcfa5);
    }
}
