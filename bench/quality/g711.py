"""G.711 μ-law and A-law by lookup table (numpy), written from the ITU-T G.711 segment rules.

The harness encodes the reference speech itself so that the caller's packets, the calibration
line (bare encode/decode) and the scoring all use one codec implementation.
"""
import numpy as np

_MU_BIAS = 0x84
_MU_CLIP = 32635


def _mu_encode_one(sample: int) -> int:
    sign = 0x80 if sample < 0 else 0
    magnitude = min(-sample if sample < 0 else sample, _MU_CLIP) + _MU_BIAS
    exponent = max(0, min(7, magnitude.bit_length() - 8))
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def _mu_decode_one(byte: int) -> int:
    u = ~byte & 0xFF
    exponent = (u >> 4) & 0x07
    magnitude = (((u & 0x0F) << 3) + _MU_BIAS) << exponent
    value = magnitude - _MU_BIAS
    return -value if u & 0x80 else value


_A_SEGMENT_ENDS = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


def _a_encode_one(sample: int) -> int:
    value = sample >> 3
    if value >= 0:
        mask = 0xD5
    else:
        mask = 0x55
        value = -value - 1
    segment = next((k for k, end in enumerate(_A_SEGMENT_ENDS) if value <= end), 8)
    if segment >= 8:
        return 0x7F ^ mask
    code = segment << 4
    code |= (value >> 1) & 0x0F if segment < 2 else (value >> segment) & 0x0F
    return code ^ mask


def _a_decode_one(byte: int) -> int:
    a = byte ^ 0x55
    t = (a & 0x0F) << 4
    segment = (a & 0x70) >> 4
    if segment == 0:
        t += 8
    else:
        t = (t + 0x108) << (segment - 1)
    return t if a & 0x80 else -t


_ALL_SAMPLES = np.arange(-32768, 32768)
MU_ENCODE = np.array([_mu_encode_one(int(s)) for s in _ALL_SAMPLES], dtype=np.uint8)
A_ENCODE = np.array([_a_encode_one(int(s)) for s in _ALL_SAMPLES], dtype=np.uint8)
MU_DECODE = np.array([_mu_decode_one(b) for b in range(256)], dtype=np.int16)
A_DECODE = np.array([_a_decode_one(b) for b in range(256)], dtype=np.int16)

# Payload type → (encode table, decode table); RFC 3551 static numbers.
CODECS = {0: (MU_ENCODE, MU_DECODE), 8: (A_ENCODE, A_DECODE)}
SILENCE = {0: 0xFF, 8: 0xD5}


def encode(samples: np.ndarray, payload_type: int) -> bytes:
    table = CODECS[payload_type][0]
    return table[samples.astype(np.int32) + 32768].tobytes()


def decode(payload: bytes, payload_type: int) -> np.ndarray:
    table = CODECS[payload_type][1]
    return table[np.frombuffer(payload, dtype=np.uint8)]
