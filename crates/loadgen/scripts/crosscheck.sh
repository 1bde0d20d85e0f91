#!/bin/bash
# Cross-check santral-load against SIPp at the same low load, against release santral pinned to
# core 1 (clients on core 0): answered counts, INVITE→200 latency, santral's CPU under each.
#   RATE=20 CALLS=200 HOLD_MS=3000 crates/loadgen/scripts/crosscheck.sh
# Needs: cargo build --release -p santral -p santral-load (CARGO_TARGET_DIR honoured), sipp,
# espeak-ng and sox (for the SIPp caller's speech pcap). Everything stays on 127.0.0.1.
set -eu
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
RATE=${RATE:-20}; CALLS=${CALLS:-200}; HOLD_MS=${HOLD_MS:-3000}
SIP=${SIP_PORT:-25070}; HTTP=${HTTP_PORT:-28090}
WORK=${WORK:-$ROOT/target/loadgen-crosscheck}
rm -rf "$WORK/data"; mkdir -p "$WORK/data"
cp "$ROOT/bench/scenarios/ivr_caller.xml" "$WORK/"
[ -f "$WORK/caller_pcma.pcap" ] || python3 "$ROOT/bench/scenarios/make_caller_pcap.py" "$WORK/caller_pcma.pcap" 70 9 > /dev/null
cat > "$WORK/overlay.yaml" <<YAML
sip:
  listen:
    - udp: 127.0.0.1:$SIP
http:
  listen: 127.0.0.1:$HTTP
  token: crosscheck
storage:
  database: $WORK/data/santral.db
  recordings: $WORK/data/rec
recording:
  default: none
YAML
cd "$ROOT"
RUST_LOG=warn taskset -c 1 "$BIN/santral" serve --config "$WORK/overlay.yaml" > "$WORK/santral.log" 2>&1 &
SP=$!
trap 'kill $SP 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -sf "127.0.0.1:$HTTP/api/v1/calls" > /dev/null && break; sleep 0.2; done
cpu() { awk '{print $14+$15}' "/proc/$SP/stat"; }
pct() { python3 -c "import os; print(round(($2-$1)/os.sysconf('SC_CLK_TCK')/($4-$3)*100, 2))"; }

echo "== SIPp: $CALLS calls at $RATE/s, hold $HOLD_MS ms"
C0=$(cpu); T0=$(date +%s.%N)
(cd "$WORK" && rm -f ivr_caller_*.csv && timeout 300 taskset -c 0 sipp -sf ivr_caller.xml -s 1000 \
    -i 127.0.0.1 -p 46900 -mp 47900 -r "$RATE" -m "$CALLS" -d "$HOLD_MS" -trace_rtt -rtt_freq 1 \
    -trace_stat -fd 1 -nostdin -timeout 280 -timeout_error "127.0.0.1:$SIP" > sipp.out 2> sipp.err) || echo "sipp failed: see $WORK/sipp.err"
C1=$(cpu); T1=$(date +%s.%N)
echo "santral CPU during SIPp: $(pct "$C0" "$C1" "$T0" "$T1") % of its core"
python3 - "$WORK" <<'PY'
import csv, glob, sys
work = sys.argv[1]
rows = list(csv.reader(open(glob.glob(f"{work}/ivr_caller_*_rtt.csv")[0]), delimiter=';'))
col = rows[0].index('response_time_1') if 'response_time_1' in rows[0] else 1
v = sorted(float(r[col]) for r in rows[1:] if len(r) > col and r[col])
p = lambda q: v[min(len(v) - 1, max(0, int(round(q * (len(v) - 1)))))]
print(f"SIPp INVITE->200 (ms, SIPp's 1 ms resolution): n={len(v)} p50={p(.5):.0f} p90={p(.9):.0f} p99={p(.99):.0f} max={v[-1]:.0f}")
stat = list(csv.reader(open(glob.glob(f"{work}/ivr_caller_*_.csv")[0]), delimiter=';'))
for key in ('TotalCallCreated', 'SuccessfulCall(C)', 'FailedCall(C)', 'Retransmissions(C)'):
    print(f"SIPp {key}: {stat[-1][stat[0].index(key)]}")
PY
sleep 1
echo "== santral-load: $CALLS calls at $RATE/s, hold $HOLD_MS ms"
C0=$(cpu); T0=$(date +%s.%N)
taskset -c 0 "$BIN/santral-load" calls --target "127.0.0.1:$SIP" --rate "$RATE" --calls "$CALLS" \
    --hold "${HOLD_MS}ms" --digit 9 --digit-at 1s --json "$WORK/santral-load.json"
C1=$(cpu); T1=$(date +%s.%N)
echo "santral CPU during santral-load: $(pct "$C0" "$C1" "$T0" "$T1") % of its core"
echo "santral call records: $(curl -s "127.0.0.1:$HTTP/api/v1/calls?limit=100000" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))') (both runs)"
