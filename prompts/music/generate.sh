#!/usr/bin/env bash
# Regenerates hold.wav, the demo music on hold: a short plucked C-major arpeggio, looped by
# santral while callers wait. 8 kHz mono 16-bit WAV. Needs sox.
set -euo pipefail
cd "$(dirname "$0")"
sox -n -r 8000 -c 1 -b 16 hold.wav \
  synth 0.5 pluck C4 synth 0.5 pluck E4 : synth 0.5 pluck G4 : synth 0.5 pluck C5 : \
  synth 0.5 pluck G4 : synth 0.5 pluck E4 : synth 1 pluck C4 gain -6
