#!/usr/bin/env python3
"""santral voice-quality harness: real speech from a caller, through santral (IVR → queue →
bridge), to an agent's phone (santral-phone with file audio, or baresip recording with its
sndfile module), scored against the reference with PESQ narrowband (ITU-T P.862, the `pesq`
package). Run it through bench/quality/run, which prepares the venv and the binaries.

Conditions (each over several seeds, median reported):
  clean           no impairment
  loss3           3 % random packet loss
  jitter40        every packet delayed 40 ms ± 40 ms (uniform, so packets reorder; netem's
                  `delay 40ms 40ms`), RTP timestamps true
  loss3_jitter40  both
  transcode       caller PCMU → agent PCMA, clean
Also: the calibration line (reference through bare G.711), and the delay santral's bridge adds
(caller send → agent arrival, measured on packets by an in-process probe agent, clean network).
"""
import argparse
import datetime
import glob
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import wave

import numpy as np
from pesq import pesq

import g711
from sipua import Caller, Impairment, ProbeAgent, SipError

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
RATE = 8000

SENTENCES = [
    "Hello, I am calling about my last bill, it looks much higher than usual.",
    "Could you please check the charges from the second week of March?",
    "My account number is four seven two, nine one eight, three five six.",
]
# espeak-ng's female variant f3 is the most natural of its voices (its G.711 ceiling is close to
# recorded speech's); the telephone band (300–3400 Hz) is what narrowband test material carries.
VOICE = "en-us+f3"

CONDITIONS = {
    "clean": dict(loss=0.0, jitter_ms=0.0, caller="pcmu", agent="pcmu"),
    "loss3": dict(loss=0.03, jitter_ms=0.0, caller="pcmu", agent="pcmu"),
    "jitter40": dict(loss=0.0, jitter_ms=40.0, caller="pcmu", agent="pcmu"),
    "loss3_jitter40": dict(loss=0.03, jitter_ms=40.0, caller="pcmu", agent="pcmu"),
    "transcode": dict(loss=0.0, jitter_ms=0.0, caller="pcmu", agent="pcma"),
}
PAYLOAD_TYPES = {"pcmu": 0, "pcma": 8}
AGENT, PASSWORD = "2001", "secret2001"


def log(text: str):
    print(text, file=sys.stderr, flush=True)


def free_port(kind=socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_wav(path: str) -> np.ndarray:
    with wave.open(path, "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: not 16-bit PCM")
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        channels, rate = w.getnchannels(), w.getframerate()
    if channels > 1:
        data = data[::channels]
    if rate != RATE:
        raise ValueError(f"{path}: {rate} Hz, expected {RATE}")
    return data.astype(np.int16)


def write_wav(path: str, samples: np.ndarray):
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(samples.astype("<i2").tobytes())


def make_reference(work: str) -> np.ndarray:
    """Several sentences from espeak-ng, 8 kHz mono 16-bit, band-limited to 300–3400 Hz, level
    set to about -26 dBov (the active level PESQ expects), with 0.5 s of silence either side."""
    os.makedirs(work, exist_ok=True)
    path = os.path.join(work, "reference-f3-band.wav")
    if not os.path.exists(path):
        raw = os.path.join(work, "espeak.wav")
        subprocess.run(["espeak-ng", "-v", VOICE, "-s", "155", "-w", raw, " ".join(SENTENCES)],
                       check=True, timeout=60)
        if not os.path.exists(raw):
            raise RuntimeError(f"espeak-ng wrote no {raw}")
        resampled = os.path.join(work, "espeak-8k.wav")
        subprocess.run(["sox", raw, "-r", "8000", "-c", "1", "-b", "16", resampled, "sinc", "300-3400"],
                       check=True, timeout=60)
        speech = read_wav(resampled).astype(np.float64)
        active = speech[np.abs(speech) > 100]
        rms = np.sqrt(np.mean(active ** 2)) if active.size else 1.0
        target = 32768 * 10 ** (-26 / 20)
        speech = np.clip(speech * (target / rms), -32768, 32767)
        pad = np.zeros(RATE // 2)
        write_wav(path, np.concatenate([pad, speech, pad]).astype(np.int16))
    return read_wav(path)


def align(reference: np.ndarray, degraded: np.ndarray):
    """The part of `degraded` that lines up with `reference` (by cross-correlation), and its
    offset in samples."""
    n = len(reference) + len(degraded)
    size = 1 << (n - 1).bit_length()
    spectrum = np.fft.rfft(degraded.astype(np.float64), size) * np.conj(
        np.fft.rfft(reference.astype(np.float64), size))
    correlation = np.fft.irfft(spectrum, size)
    lag = int(np.argmax(correlation[: len(degraded)]))
    part = degraded[lag: lag + len(reference)]
    if len(part) < len(reference):
        part = np.concatenate([part, np.zeros(len(reference) - len(part), dtype=np.int16)])
    return part, lag


def score(reference: np.ndarray, degraded: np.ndarray) -> float:
    part, _ = align(reference, degraded)
    return float(pesq(RATE, reference.astype(np.float64), part.astype(np.float64), "nb"))


def calibration(reference: np.ndarray) -> dict:
    mu = g711.decode(g711.encode(reference, 0), 0)
    a = g711.decode(g711.encode(reference, 8), 8)
    mu_to_a = g711.decode(g711.encode(mu, 8), 8)
    return {"pcmu": round(score(reference, mu), 3), "pcma": round(score(reference, a), 3),
            "pcmu_to_pcma": round(score(reference, mu_to_a), 3)}


class Server:
    """`santral serve` on free loopback ports with its data in `work`."""

    def __init__(self, binary: str, work: str):
        self.sip = free_port()
        self.http = free_port(socket.SOCK_STREAM)
        config = os.path.join(work, "santral.yaml")
        with open(config, "w") as f:
            f.write(f"sip:\n  listen:\n    - udp: 127.0.0.1:{self.sip}\n"
                    f"http:\n  listen: 127.0.0.1:{self.http}\n  token: quality-token\n"
                    f"storage:\n  database: {work}/santral.db\n  recordings: {work}/recordings\n")
        self.log_path = os.path.join(work, "santral.log")
        self.log_file = open(self.log_path, "w")
        env = dict(os.environ, RUST_LOG=os.environ.get("QUALITY_SERVER_LOG", "info"), NO_COLOR="1")
        self.process = subprocess.Popen([binary, "serve", "--config", config], cwd=ROOT, env=env,
                                        stdout=subprocess.DEVNULL, stderr=self.log_file)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"santral exited: {self.tail()}")
            with open(self.log_path) as f:
                if "HTTP listening" in f.read():
                    return
            time.sleep(0.05)
        raise RuntimeError(f"santral did not start: {self.tail()}")

    def tail(self) -> str:
        with open(self.log_path) as f:
            return "".join(f.readlines()[-20:])

    def agent_available(self, agent: str) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/api/v1/agents", timeout=2) as r:
                agents = json.load(r)
        except OSError:
            return False
        return any(a.get("id") == agent and a.get("state") == "available" for a in agents)

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.log_file.close()


class Lines:
    """A child's stdout lines, collected by a thread; `wait` is bounded."""

    def __init__(self, stream):
        self.lines = []
        self.lock = threading.Lock()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream):
        for line in iter(stream.readline, ""):
            with self.lock:
                self.lines.append(line.rstrip("\n"))

    def wait(self, predicate, timeout: float):
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            with self.lock:
                fresh = self.lines[seen:]
                seen = len(self.lines)
            for line in fresh:
                if predicate(line):
                    return line
            time.sleep(0.02)
        return None


class PhoneAgent:
    """santral-phone registered as the agent, auto-answering, recording what it plays."""

    name = "santral-phone"

    def __init__(self, binary: str, work: str, server: Server, codec: str):
        silence = os.path.join(work, "agent_in.wav")
        write_wav(silence, np.zeros(RATE, dtype=np.int16))
        self.recording = os.path.join(work, "agent_out.wav")
        self.process = subprocess.Popen(
            [binary, "--server", f"127.0.0.1:{server.sip}", "--user", AGENT, "--password", PASSWORD,
             "--auto-answer", "--audio", f"file:{silence},{self.recording}", "--codecs", codec,
             "--no-tui", "--keepalive", "0"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.events = Lines(self.process.stdout)
        if not self.events.wait(lambda l: '"event":"registered"' in l, 10):
            raise RuntimeError(f"santral-phone did not register: {self.events.lines}")

    def wait_answered(self, timeout: float) -> bool:
        return self.events.wait(lambda l: '"event":"answered"' in l, timeout) is not None

    def finish(self) -> str:
        self.events.wait(lambda l: '"event":"ended"' in l, 10)
        try:
            self.process.stdin.write("quit\n")
            self.process.stdin.flush()
            self.process.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait(timeout=5)
        return self.recording

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=5)


class BaresipAgent:
    """baresip registered as the agent, auto-answering, dumping received audio (sndfile)."""

    name = "baresip"

    def __init__(self, work: str, server: Server, codec: str):
        home = os.path.join(work, "baresip")
        self.dumps = os.path.join(work, "dumps")
        os.makedirs(home)
        os.makedirs(self.dumps)
        silence = os.path.join(work, "agent_in.wav")
        write_wav(silence, np.zeros(RATE * 60, dtype=np.int16))
        port = free_port()
        with open(os.path.join(home, "config"), "w") as f:
            f.write(f"poll_method epoll\nnet_interface 127.0.0.1\nsip_listen 127.0.0.1:{port}\n"
                    "sip_transports udp\nmodule_path /usr/lib/baresip/modules\nmodule g711.so\n"
                    "module aufile.so\nmodule sndfile.so\nmodule_app account.so\n"
                    f"audio_player aufile,/dev/null\naudio_source aufile,{silence}\n"
                    f"audio_alert aufile,/dev/null\nsnd_path {self.dumps}\n")
        codecs = {"pcmu": "PCMU/8000/1", "pcma": "PCMA/8000/1"}[codec]
        with open(os.path.join(home, "accounts"), "w") as f:
            f.write(f"<sip:{AGENT}@127.0.0.1:{server.sip};transport=udp>;auth_pass={PASSWORD};"
                    f"regint=60;answermode=auto;audio_codecs={codecs}\n")
        self.process = subprocess.Popen(["baresip", "-f", home, "-t", "90"],
                                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, text=True)
        self.output = Lines(self.process.stdout)
        deadline = time.monotonic() + 10
        while not server.agent_available(AGENT):
            if time.monotonic() > deadline:
                raise RuntimeError(f"baresip did not register: {self.output.lines[-10:]}")
            time.sleep(0.1)

    def wait_answered(self, timeout: float) -> bool:
        return self.output.wait(lambda l: "Call established" in l, timeout) is not None

    def finish(self) -> str:
        self.output.wait(lambda l: "terminated" in l or "closed" in l.lower(), 10)
        time.sleep(0.3)
        self.kill()
        dumps = sorted(glob.glob(os.path.join(self.dumps, "*dec*.wav")))
        if not dumps:
            raise RuntimeError(f"baresip wrote no recording: {os.listdir(self.dumps)}")
        return dumps[-1]

    def kill(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def run_call(binaries: dict, agent_kind: str, condition: str, seed: int, reference: np.ndarray,
             keep: str = None) -> dict:
    """One call through santral under `condition`; returns the PESQ score and counters."""
    spec = CONDITIONS[condition]
    work = tempfile.mkdtemp(prefix=f"quality-{agent_kind}-{condition}-{seed}-")
    server = Server(binaries["santral"], work)
    agent = None
    caller = None
    try:
        if agent_kind == "santral-phone":
            agent = PhoneAgent(binaries["santral-phone"], work, server, spec["agent"])
        else:
            agent = BaresipAgent(work, server, spec["agent"])
        impairment = Impairment(spec["loss"], spec["jitter_ms"], seed)
        caller = Caller(("127.0.0.1", server.sip), "1000", PAYLOAD_TYPES[spec["caller"]],
                        reference, impairment)
        caller.dial()
        stop_dialog = threading.Event()
        dialog = threading.Thread(target=caller.serve_dialog, args=(stop_dialog,), daemon=True)
        dialog.start()
        streamer = threading.Thread(target=caller.stream, kwargs={"max_wait": 20.0}, daemon=True)
        streamer.start()
        if not agent.wait_answered(25):
            raise RuntimeError(f"the agent did not answer: {server.tail()}")
        caller.speak.set()
        streamer.join(timeout=len(reference) / RATE + 30)
        if not caller.spoken.is_set():
            raise RuntimeError("the caller's stream did not finish")
        caller.hang_up()
        stop_dialog.set()
        dialog.join(timeout=2)
        recording = agent.finish()
        degraded = read_wav(recording)
        result = {"pesq": round(score(reference, degraded), 3),
                  "sent": len(caller.speech_sent), "frames": len(reference) // 160}
        if keep:
            part, _ = align(reference, degraded)
            write_wav(keep, part)
        return result
    finally:
        if agent is not None:
            agent.kill()
        if caller is not None:
            caller.close()
        server.stop()
        if os.environ.get("QUALITY_KEEP_WORK"):
            log(f"  kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def measure_bridge_delay(binaries: dict, reference: np.ndarray, codec: str = "pcmu") -> dict:
    """Caller → santral → probe agent on a clean network: for each packet the agent receives,
    the time since the caller sent the speech it carries (the newest sample in it). This is
    the delay santral adds (SIP/RTP on loopback cost microseconds)."""
    work = tempfile.mkdtemp(prefix="quality-delay-")
    server = Server(binaries["santral"], work)
    stop = threading.Event()
    agent = ProbeAgent(("127.0.0.1", server.sip), AGENT, PASSWORD)
    caller = None
    try:
        agent.register()
        deadline = time.monotonic() + 5
        while not server.agent_available(AGENT) and time.monotonic() < deadline:
            time.sleep(0.05)
        serving = threading.Thread(target=agent.serve, args=(stop, (PAYLOAD_TYPES[codec],)),
                                   daemon=True)
        serving.start()
        caller = Caller(("127.0.0.1", server.sip), "1000", 0, reference, Impairment(seed=1))
        caller.dial()
        dialog = threading.Thread(target=caller.serve_dialog, args=(stop,), daemon=True)
        dialog.start()
        streamer = threading.Thread(target=caller.stream, kwargs={"max_wait": 20.0}, daemon=True)
        streamer.start()
        if not agent.answered.wait(25):
            raise RuntimeError(f"the probe agent was not offered the call: {server.tail()}")
        caller.speak.set()
        streamer.join(timeout=len(reference) / RATE + 30)
        caller.hang_up()
        time.sleep(0.2)
        stop.set()
        serving.join(timeout=3)
        packets = sorted((a for a in agent.arrivals if a[3] == agent.payload_type),
                         key=lambda a: a[0])
        if not packets:
            raise RuntimeError("the probe agent received no audio")
        first_ts = packets[0][2]
        length = (packets[-1][2] - first_ts) % (1 << 32) + 160
        stream = np.zeros(length, dtype=np.int16)
        for _, _, ts, pt, payload in packets:
            offset = (ts - first_ts) % (1 << 32)
            samples = g711.decode(payload, pt)
            stream[offset: offset + len(samples)] = samples[: max(0, length - offset)]
        _, lag = align(reference, stream)
        delays = []
        for arrived, _, ts, _, payload in packets:
            newest = (ts - first_ts) % (1 << 32) + len(payload) - 1 - lag
            frame = newest // 160
            if 0 <= newest < len(reference) and frame in caller.speech_sent:
                delays.append((arrived - caller.speech_sent[frame]) * 1000.0)
        if not delays:
            raise RuntimeError("no received packet matched the caller's speech")
        clean = agent_stream_score = None
        try:
            part, _ = align(reference, stream)
            agent_stream_score = round(float(pesq(RATE, reference.astype(np.float64),
                                                  part.astype(np.float64), "nb")), 3)
        except Exception as error:  # PESQ refuses silence; the delay is still valid
            log(f"  probe PESQ failed: {error}")
        return {"median_ms": round(statistics.median(delays), 2),
                "p95_ms": round(float(np.percentile(delays, 95)), 2),
                "packets": len(delays), "probe_pesq": agent_stream_score}
    finally:
        stop.set()
        agent.close()
        if caller is not None:
            caller.close()
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


def write_schedule(path: str, reference: np.ndarray, payload_type: int, impairment: Impairment):
    """The caller's packets as bench/quality/receiver replays them: arrival time (µs),
    sequence number, timestamp, payload type, payload (hex); lost packets left out."""
    with open(path, "w") as f:
        for n, start in enumerate(range(0, len(reference) - 160 + 1, 160)):
            delay = impairment.delay()
            if delay is None:
                continue
            payload = g711.encode(reference[start:start + 160], payload_type)
            arrival_us = int(round((n * 0.020 + delay) * 1e6))
            f.write(f"{arrival_us} {(1000 + n) & 0xFFFF} {n * 160} {payload_type} {payload.hex()}\n")


def simulate_receiver(receiver: str, reference: np.ndarray, condition: str, seed: int) -> dict:
    """The receive path alone, offline: the caller's packets under `condition` go into
    santral-media's MediaSession with virtual time (bench/quality/receiver); what it plays is
    scored. Deterministic, so jitter-buffer and concealment changes can be compared exactly."""
    spec = CONDITIONS[condition]
    payload_type = PAYLOAD_TYPES[spec["caller"]]
    impairment = Impairment(spec["loss"], spec["jitter_ms"], seed)
    with tempfile.TemporaryDirectory(prefix="quality-offline-") as work:
        schedule = os.path.join(work, "schedule.txt")
        write_schedule(schedule, reference, payload_type, impairment)
        output = os.path.join(work, "played.wav")
        # The receiver's tick phase against the sender's clock differs per call: vary it.
        phase_us = (seed * 7919) % 20_000
        env = dict(os.environ, QUALITY_RECEIVER_PHASE_US=str(phase_us))
        done = subprocess.run([receiver, schedule, output], capture_output=True, text=True,
                              timeout=60, env=env)
        if done.returncode != 0:
            raise RuntimeError(f"receiver failed: {done.stderr}")
        stats = json.loads(done.stdout.strip().splitlines()[-1])
        played = read_wav(output)
        _, lag = align(reference, played)
        # The receiver's clock ticks from its phase; the reference's first packet left at 0:
        # the lag (plus the phase) is the playout delay at the best alignment.
        return {"pesq": round(score(reference, played), 3),
                "delay_ms": round(lag / 8 + phase_us / 1000, 1), **stats}


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def table(results: dict) -> str:
    conditions = [c for c in CONDITIONS if any(c in a for a in results["agents"].values())]
    lines = ["| agent | " + " | ".join(conditions) + " |",
             "|---|" + "---|" * len(conditions)]
    for agent, by_condition in results["agents"].items():
        cells = []
        for c in conditions:
            entry = by_condition.get(c)
            cells.append("—" if entry is None or entry["median"] is None else f"{entry['median']:.2f}")
        lines.append(f"| {agent} | " + " | ".join(cells) + " |")
    cal = results["calibration"]
    lines.append(f"| G.711 calibration (bare encode/decode) | {cal['pcmu']:.2f} (PCMU) | "
                 f"{cal['pcma']:.2f} (PCMA) | PCMU→PCMA {cal['pcmu_to_pcma']:.2f} |")
    if results.get("bridge_delay"):
        d = results["bridge_delay"]
        lines.append(f"\nDelay added by santral's bridge (clean network): median {d['median_ms']} ms, "
                     f"95th percentile {d['p95_ms']} ms over {d['packets']} packets.")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin-dir", default="", help="directory with santral and santral-phone")
    parser.add_argument("--smoke", action="store_true",
                        help="one clean call to santral-phone, one seed; fails if PESQ < 3.0")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--agents", default="santral-phone,baresip")
    parser.add_argument("--conditions", default=",".join(CONDITIONS))
    parser.add_argument("--label", default="", help="name stored in the results (e.g. before/after)")
    parser.add_argument("--out", help="results JSON (default bench/quality/results/<date>.json)")
    parser.add_argument("--no-delay", action="store_true", help="skip the bridge delay measurement")
    parser.add_argument("--offline", action="store_true",
                        help="score only santral-media's receive path, offline, in virtual "
                             "time (fast, deterministic; needs --receiver)")
    parser.add_argument("--receiver", help="the bench/quality/receiver binary (run sets it)")
    args = parser.parse_args()

    if args.offline:
        if not args.receiver:
            log("--offline needs --receiver (bench/quality/run builds and passes it)")
            return 2
        reference = make_reference(os.path.join(ROOT, "target", "quality-bench"))
        conditions = [c for c in args.conditions.split(",") if c and c != "transcode"]
        for condition in conditions:
            runs = [simulate_receiver(args.receiver, reference, condition, seed)
                    for seed in range(1, args.seeds + 1)]
            scores = [r["pesq"] for r in runs]
            print(f"offline {condition:15} median PESQ {statistics.median(scores):.3f}  "
                  f"{scores}  late {[r['late'] for r in runs]}  delay ms {[r['delay_ms'] for r in runs]}")
        return 0

    binaries = {"santral": os.path.join(args.bin_dir, "santral"),
                "santral-phone": os.path.join(args.bin_dir, "santral-phone")}
    for path in binaries.values():
        if not os.access(path, os.X_OK):
            log(f"missing binary {path}")
            return 2
    cache = os.path.join(ROOT, "target", "quality-bench")
    os.makedirs(cache, exist_ok=True)
    reference = make_reference(cache)
    log(f"reference: {len(reference) / RATE:.1f} s of speech")

    if args.smoke:
        try:
            result = run_call(binaries, "santral-phone", "clean", 1, reference)
        except (RuntimeError, SipError, OSError, ValueError) as error:
            log(f"smoke: FAILED: {error}")
            return 1
        ok = result["pesq"] >= 3.0
        print(f"smoke: clean call to santral-phone scores PESQ {result['pesq']:.2f} "
              f"({'ok' if ok else 'below 3.0'})")
        return 0 if ok else 1

    results = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "commit": git_commit(), "label": args.label, "seeds": args.seeds,
               "calibration": calibration(reference), "agents": {}, "bridge_delay": None}
    log(f"calibration: {results['calibration']}")
    failures = 0
    for agent in [a for a in args.agents.split(",") if a]:
        by_condition = results["agents"].setdefault(agent, {})
        for condition in [c for c in args.conditions.split(",") if c]:
            runs = []
            for seed in range(1, args.seeds + 1):
                try:
                    result = run_call(binaries, agent, condition, seed, reference)
                    runs.append(result)
                    log(f"{agent:14} {condition:15} seed {seed}: PESQ {result['pesq']:.3f}")
                except (RuntimeError, SipError, OSError, ValueError) as error:
                    failures += 1
                    log(f"{agent:14} {condition:15} seed {seed}: FAILED: {error}")
            scores = [r["pesq"] for r in runs]
            by_condition[condition] = {"median": round(statistics.median(scores), 3) if scores else None,
                                       "scores": scores}
    if not args.no_delay:
        try:
            results["bridge_delay"] = measure_bridge_delay(binaries, reference)
            log(f"bridge delay: {results['bridge_delay']}")
        except (RuntimeError, SipError, OSError, ValueError) as error:
            failures += 1
            log(f"bridge delay: FAILED: {error}")
    out = args.out or os.path.join(HERE, "results",
                                   datetime.datetime.now().strftime("%Y%m%d-%H%M%S") + ".json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    print(table(results))
    print(f"\nresults: {os.path.relpath(out, ROOT)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
