#!/usr/bin/env python3
"""Writes speech_pcma.pcap: a few seconds of spoken English as RTP PCMA (payload type 8) in
20 ms packets, for SIPp's play_pcap_audio. SIPp's own g711a.pcap uses 30 ms packets.

Needs espeak-ng and sox. Usage: make_speech_pcap.py [OUTPUT]
"""
import os
import struct
import subprocess
import sys
import tempfile

TEXT = ("Hello, I would like to ask about my last bill. "
        "It looks higher than usual, could you check it for me please?")


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
    ethernet = b"\x00" * 12 + b"\x08\x00"
    return ethernet + ip_header + udp


def main() -> None:
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__),
                                                              "speech_pcma.pcap")
    audio = alaw_speech()
    frame = 160
    records = []
    for n, start in enumerate(range(0, len(audio) - frame + 1, frame)):
        rtp = struct.pack("!BBHII", 0x80, 8, (1000 + n) & 0xFFFF, (n * frame) & 0xFFFFFFFF,
                          0x5A17A100) + audio[start:start + frame]
        packet = udp_packet(rtp)
        usec = n * 20_000
        records.append(struct.pack("<IIII", usec // 1_000_000, usec % 1_000_000,
                                   len(packet), len(packet)) + packet)
    with open(out, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        f.write(b"".join(records))
    print(f"{out}: {len(records)} packets, {len(records) * 0.02:.1f} s")


if __name__ == "__main__":
    main()
