#!/usr/bin/env python3
"""Writes a pcap of RFC 4733 telephone-events (payload type 101) for SIPp's play_pcap_audio:
one RTP stream (one SSRC, rising sequence numbers and timestamps) carrying a whole key
sequence, so repeated keys stay distinct events. SIPp's dtmf_2833_N.pcap files cannot be
replayed one after another for that: each replay repeats the same timestamps.

Usage: make_dtmf_pcap.py OUTPUT KEYS...   KEYS are 0-9 * # A-D, or wMS to wait MS milliseconds.
Example: make_dtmf_pcap.py card.pcap 4 w1500 1 0 0 0 0 1 '#'
"""
import struct
import sys

EVENTS = {**{str(d): d for d in range(10)}, "*": 10, "#": 11, "A": 12, "B": 13, "C": 14, "D": 15}
TONE_MS = 100   # key down
GAP_MS = 100    # between keys


def udp_packet(payload: bytes) -> bytes:
    udp = struct.pack("!HHHH", 6000, 6000, 8 + len(payload), 0) + payload
    ip_header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                            bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1]))
    return b"\x00" * 12 + b"\x08\x00" + ip_header + udp


def main() -> None:
    out, keys = sys.argv[1], sys.argv[2:]
    seq, clock_ms, records = 2000, 0, []

    def emit(at_ms: int, event: int, end: bool, duration: int, timestamp: int, marker: bool):
        nonlocal seq
        rtp = struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | 101, seq & 0xFFFF,
                          timestamp & 0xFFFFFFFF, 0x0D7F0001)
        rtp += struct.pack("!BBH", event, (0x80 if end else 0) | 10, duration)
        seq += 1
        packet = udp_packet(rtp)
        usec = at_ms * 1000
        records.append(struct.pack("<IIII", usec // 1_000_000, usec % 1_000_000,
                                   len(packet), len(packet)) + packet)

    for key in keys:
        if key.startswith("w"):
            clock_ms += int(key[1:])
            continue
        event = EVENTS[key.upper()]
        timestamp = clock_ms * 8
        for step in range(TONE_MS // 20):
            emit(clock_ms + 20 * step, event, False, 160 * (step + 1), timestamp, step == 0)
        for _ in range(3):  # the end packet, sent three times (RFC 4733 §2.5.1.4)
            emit(clock_ms + TONE_MS, event, True, 8 * TONE_MS, timestamp, False)
        clock_ms += TONE_MS + GAP_MS
    with open(out, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        f.write(b"".join(records))


if __name__ == "__main__":
    main()
