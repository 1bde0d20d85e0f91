#!/usr/bin/env python3
"""Writes the benchmark caller's RTP stream as a pcap for SIPp's play_pcap_audio: 20 ms PCMA
packets of looped speech (espeak-ng through sox) with an RFC 4733 digit at 1 s and then every
10 s (by default 9, “repeat the menu”, so the call stays in the IVR), on one SSRC with true timestamps.

Usage: make_caller_pcap.py OUTPUT [SECONDS] [DIGIT] [once]
  SECONDS defaults to 70, DIGIT to 9; "once" sends the digit at 1 s only (the queue caller of
  scenario (c) presses 1 once). Needs espeak-ng and sox.
"""
import os
import struct
import subprocess
import sys
import tempfile

TEXT = ("Hello, I am calling about my card. I think I lost it yesterday evening, "
        "and I would like to block it before anybody uses it. Can you help me please?")
FRAME = 160            # 20 ms at 8 kHz
DIGIT_EVERY_MS = 10_000
DIGIT_FIRST_MS = 1_000
TONE_MS = 100


def alaw_speech() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        wav = os.path.join(tmp, "speech.wav")
        raw = os.path.join(tmp, "speech.al")
        subprocess.run(["espeak-ng", "-v", "en", "-s", "150", "-w", wav, TEXT], check=True)
        subprocess.run(["sox", wav, "-r", "8000", "-c", "1", "-e", "a-law", "-t", "raw", raw],
                       check=True)
        with open(raw, "rb") as f:
            return f.read()


def udp_packet(payload: bytes) -> bytes:
    """Ethernet + IPv4 + UDP around payload (SIPp rewrites addresses and ports)."""
    udp = struct.pack("!HHHH", 6000, 6000, 8 + len(payload), 0) + payload
    ip_header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                            bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1]))
    return b"\x00" * 12 + b"\x08\x00" + ip_header + udp


def main() -> None:
    out = sys.argv[1]
    seconds = int(sys.argv[2]) if len(sys.argv) > 2 else 70
    digit = int(sys.argv[3]) if len(sys.argv) > 3 else 9
    once = len(sys.argv) > 4 and sys.argv[4] == "once"
    speech = alaw_speech()
    frames = seconds * 50
    records = []
    seq = 1000
    ssrc = 0x5A17B100

    def emit(at_ms: int, rtp: bytes) -> None:
        packet = udp_packet(rtp)
        usec = at_ms * 1000
        records.append(struct.pack("<IIII", usec // 1_000_000, usec % 1_000_000,
                                   len(packet), len(packet)) + packet)

    n = 0
    while n < frames:
        at_ms = n * 20
        timestamp = n * FRAME
        since_first = at_ms - DIGIT_FIRST_MS
        if since_first >= 0 and since_first % DIGIT_EVERY_MS == 0 and (not once or since_first == 0):
            # Digit 9: audio stops for the event (as phones do), one event timestamp.
            steps = TONE_MS // 20
            for step in range(steps):
                rtp = struct.pack("!BBHII", 0x80, (0x80 if step == 0 else 0) | 101, seq & 0xFFFF,
                                  timestamp, ssrc) + struct.pack("!BBH", digit, 10, FRAME * (step + 1))
                emit(at_ms + 20 * step, rtp)
                seq += 1
            for _ in range(3):
                rtp = struct.pack("!BBHII", 0x80, 101, seq & 0xFFFF, timestamp, ssrc) + \
                    struct.pack("!BBH", digit, 0x80 | 10, FRAME * steps)
                emit(at_ms + TONE_MS, rtp)
                seq += 1
            n += steps
            continue
        start = (n * FRAME) % (len(speech) - FRAME)
        rtp = struct.pack("!BBHII", 0x80, 8, seq & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc)
        emit(at_ms, rtp + speech[start:start + FRAME])
        seq += 1
        n += 1
    with open(out, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        f.write(b"".join(records))
    print(f"{out}: {len(records)} packets, {seconds} s")


if __name__ == "__main__":
    main()
