#!/usr/bin/env python3
"""santral's load and performance harness (see BENCHMARKS.md).

Starts santral on loopback pinned to one core (or measures any SIP server given with --target)
and drives it from the other core with SIPp, and past SIPp's own limit with santral-load:

  a  short IVR calls: dial, RTP both ways, an RFC 4733 digit, hang up after a few seconds;
     the call rate is stepped up until a call fails or a request is retransmitted.
  b  long IVR calls with RTP both ways, stepped in concurrency: CPU % of the server's core per
     100 calls, resident memory per call, RTP send-interval jitter seen by the client.
  c  the full path: callers queue, SIPp phones registered as many agents answer and echo RTP.
  d  a registration storm with digest authentication.

Results: a JSON file and a table. Every step is bounded in time; traffic stays on 127.0.0.1.
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "bench" / "scenarios"
WORK = ROOT / "target" / "bench"
TARGET_DIR = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024



def free_port(preferred: int, kind=socket.SOCK_DGRAM, span: int = 1) -> int:
    """The first port from `preferred` (stepping by 2) where `span` consecutive ports are free."""
    for port in range(preferred, preferred + 2000, 2):
        sockets = []
        try:
            for offset in range(span):
                s = socket.socket(socket.AF_INET, kind)
                sockets.append(s)
                s.bind(("127.0.0.1", port + offset))
            return port
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    sys.exit(f"no free port near {preferred}")


# Ports on 127.0.0.1, moved up when taken. SIPp binds RTP on its media port and the next
# three (RTCP, video), so media ports are picked with room for four.
SIP_PORT = free_port(5090)
HTTP_PORT = free_port(8095, socket.SOCK_STREAM)
CALLER_PORT = free_port(46100)
AGENT_PORT = free_port(46200)
REGISTER_PORT = free_port(46300)
CALLER_MEDIA_PORT = free_port(47000, span=4)
AGENT_MEDIA_PORT = free_port(47100, span=4)


def log(message: str) -> None:
    print(f"[bench {datetime.datetime.now().strftime('%H:%M:%S')}] {message}", flush=True)


# ---------------------------------------------------------------- process measurements

def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE_KIB


def percentile(values, fraction):
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


class CpuWindow:
    """CPU % of one core used by a process between start() and stop()."""

    def __init__(self, pid):
        self.pid = pid

    def start(self):
        self.cpu0, self.wall0 = cpu_seconds(self.pid), time.monotonic()
        return self

    def stop(self):
        cpu, wall = cpu_seconds(self.pid) - self.cpu0, time.monotonic() - self.wall0
        return {"cpu_s": round(cpu, 3), "wall_s": round(wall, 3),
                "cpu_pct": round(100.0 * cpu / wall, 2) if wall > 0 else None}


# ---------------------------------------------------------------- santral under test

def accounts(count: int):
    return [(str(3001 + n), f"bench{3001 + n}") for n in range(count)]


def overlay(work: Path, agent_count: int) -> Path:
    lines = [
        "# Written by bench/run: santral on bench ports, no recording, many agents.",
        "sip:",
        "  listen:",
        f"    - udp: 127.0.0.1:{SIP_PORT}",
        "  registration: { min_expires: 60, max_expires: 3600, default_expires: 3600 }",
        f"http: {{ listen: 127.0.0.1:{HTTP_PORT} }}",
        "media:",
        "  rtp_ports: { first: 20000, last: 29999 }",
        "storage:",
        f"  database: {work / 'santral.db'}",
        f"  recordings: {work / 'recordings'}",
        "recording: { default: none }",
        "agents:",
        "  login: on-register",
        "  accounts:",
    ]
    for user, password in accounts(agent_count):
        lines.append(f'    - {{ id: "{user}", password: {password}, name: Agent {user}, '
                     f"skills: {{ billing: 5 }}, languages: [tr, en] }}")
    lines.append("queues:")
    for queue in ("billing", "tech", "sales", "operator"):
        skills = f"skills: [{{ skill: {queue}, min_level: 1 }}], " if queue != "operator" else ""
        lines.append(f"  - {{ name: {queue}, {skills}strategy: longest-idle, wrap_up_secs: 0, "
                     "ring_timeout_secs: 15, service_level_secs: 20 }")
    path = work / "overlay.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def stop_santral(proc):
    """SIGTERM (santral drains), then SIGKILL if calls a client abandoned keep it draining."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_http(url: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return True
        except OSError:
            time.sleep(0.2)
    return False


def start_santral(args, work: Path):
    if work.exists():
        for name in ("santral.db", "santral.db-wal", "santral.db-shm"):
            (work / name).unlink(missing_ok=True)
    config = overlay(work, args.agents)
    binary = TARGET_DIR / "release" / "santral"
    logfile = open(work / "santral.log", "w")
    env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn"))
    # santral's media threads take real-time priority themselves (media.realtime_priority)
    # where permitted; the rest of santral stays under normal scheduling, as in production.
    command = ["taskset", "-c", str(args.server_cpu), str(binary), "serve", "--config", str(config)]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=logfile, stderr=subprocess.STDOUT, env=env)
    if not wait_http(f"http://127.0.0.1:{HTTP_PORT}/api/v1/health", 30):
        proc.kill()
        sys.exit(f"santral did not start: see {work / 'santral.log'}")
    return proc


# ---------------------------------------------------------------- SIPp

def sipp_stats(path: Path):
    """The last line of a SIPp -trace_stat file, as a dict of the cumulative counters."""
    if not path.exists():
        return {}
    lines = [l for l in path.read_text(errors="replace").splitlines() if l.strip()]
    if len(lines) < 2:
        return {}
    header, last = lines[0].split(";"), lines[-1].split(";")
    row = dict(zip(header, last))

    def number(key):
        try:
            return int(row.get(key, "0") or 0)
        except ValueError:
            return 0
    return {
        "created": number("TotalCallCreated"),
        "successful": number("SuccessfulCall(C)"),
        "failed": number("FailedCall(C)"),
        "retransmissions": number("Retransmissions(C)"),
        "unexpected": number("FailedUnexpectedMessage(C)"),
        "timeouts": number("FailedMaxUDPRetrans(C)") + number("FailedCallTimeout(C)")
        + number("FailedRegularExpression(C)") * 0,
        "out_of_call": number("OutOfCallMsgs(C)"),
    }


def sipp_rtts(directory: Path):
    values = []
    for path in directory.glob("*_rtt.csv"):
        for line in path.read_text(errors="replace").splitlines()[1:]:
            parts = line.split(";")
            if len(parts) >= 2:
                try:
                    values.append(float(parts[1]))
                except ValueError:
                    pass
    return values


def run_sipp(name: str, scenario: Path, target: str, extra, args, timeout: float, cpu=None):
    """Runs SIPp pinned to the client core; returns its stats, response times and exit code."""
    directory = WORK / "runs" / name
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    for pcap in WORK.glob("*.pcap"):
        shutil.copy(pcap, directory)
    command = ["taskset", "-c", str(args.client_cpu if cpu is None else cpu), "sipp",
               "-sf", str(scenario), "-i", "127.0.0.1", "-nostdin",
               "-trace_stat", "-stf", "stat.csv", "-fd", "1",
               "-trace_rtt", "-rtt_freq", "1", "-trace_err", "-timeout", f"{int(timeout)}s",
               "-timeout_error", *extra, target]
    with open(directory / "sipp.out", "w") as out:
        proc = subprocess.Popen(command, cwd=directory, stdout=out, stderr=subprocess.STDOUT)
    return proc, directory


def finish_sipp(proc, directory: Path, timeout: float):
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGUSR1)  # SIPp: stop and dump statistics
        try:
            code = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
    stats = sipp_stats(directory / "stat.csv")
    stats["exit_code"] = code
    return stats, sipp_rtts(directory)


# ---------------------------------------------------------------- RTP seen by the client

def capture_rtp(port: int, seconds: float, path: Path):
    """Starts tcpdump on the client's media port (headers only), if tcpdump is there."""
    if shutil.which("tcpdump") is None:
        return None
    return subprocess.Popen(["timeout", str(seconds), "tcpdump", "-i", "lo", "-s", "64", "-w",
                             str(path), f"udp and dst port {port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def interval_jitter(path: Path):
    """|arrival interval − 20 ms| over every stream (by source port) of a capture, in ms."""
    if not path.exists():
        return None
    data = path.read_bytes()
    if len(data) < 24:
        return None
    magic = struct.unpack("<I", data[:4])[0]
    divisor = 1e9 if magic == 0xA1B23C4D else 1e6
    offset, last, deviations = 24, {}, []
    while offset + 16 <= len(data):
        seconds, fraction, captured, _ = struct.unpack("<IIII", data[offset:offset + 16])
        packet = data[offset + 16:offset + 16 + captured]
        offset += 16 + captured
        if len(packet) < 42:
            continue
        source = struct.unpack("!H", packet[34:36])[0]
        at = seconds + fraction / divisor
        if source in last:
            deviations.append(abs((at - last[source]) * 1000.0 - 20.0))
        last[source] = at
    if not deviations:
        return None
    return {"streams": len(last), "intervals": len(deviations),
            "p50_ms": round(percentile(deviations, 0.5), 3),
            "p99_ms": round(percentile(deviations, 0.99), 3),
            "max_ms": round(max(deviations), 3)}


# ---------------------------------------------------------------- santral-load

LOADGEN = TARGET_DIR / "release" / "santral-load"


def run_load(name: str, target: str, args, rate: float, calls: int, hold_s: float,
             max_concurrent=None):
    """Starts santral-load (callers) pinned to the client core; returns (process, report path)."""
    directory = WORK / "runs" / name
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    report = directory / "load.json"
    command = ["taskset", "-c", str(args.client_cpu), str(LOADGEN), "calls", "--target", target,
               "--to", args.service, "--rate", str(rate), "--calls", str(calls),
               "--hold", f"{int(hold_s * 1000)}ms", "--digit", "9", "--digit-at", "1s",
               "--no-per-call", "--json", str(report)]
    if max_concurrent:
        command += ["--max-concurrent", str(max_concurrent)]
    if args.realtime:
        command.append("--realtime")
    with open(directory / "load.out", "w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    return proc, report


def finish_load(proc, report: Path, timeout: float):
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()  # santral-load hangs up what is left and still writes its report
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    try:
        return json.loads(report.read_text())
    except (OSError, ValueError):
        return {}


def load_summary(report):
    calls = report.get("calls", {})
    failed = sum(calls.get("failed_by_status", {}).values()) + calls.get("timed_out", 0) \
        + calls.get("bye_timed_out", 0) + calls.get("bad_answer", 0)
    retrans = report.get("retransmissions", {})
    latency_us = report.get("invite_to_200_us", {})
    jitter_us = report.get("rtp", {}).get("receive_jitter_us", {})
    generator = report.get("generator", {})
    return {
        "attempted": calls.get("attempted", 0), "answered": calls.get("answered", 0),
        "completed": calls.get("completed", 0), "refused_503": calls.get("refused_503", 0),
        "failed": failed, "unfinished": calls.get("unfinished", 0),
        "hung_up_by_server": calls.get("hung_up_by_server", 0),
        "retransmissions": retrans.get("invite", 0) + retrans.get("bye", 0),
        "invite_to_200": {"p50_ms": latency_us.get("p50", 0) / 1000,
                          "p99_ms": latency_us.get("p99", 0) / 1000,
                          "max_ms": latency_us.get("max", 0) / 1000} if latency_us.get("count") else None,
        "rtp_interval_jitter": {"p50_ms": jitter_us.get("p50", 0) / 1000,
                                "p99_ms": jitter_us.get("p99", 0) / 1000,
                                "max_ms": jitter_us.get("max", 0) / 1000} if jitter_us.get("count") else None,
        "rtp_lost": report.get("rtp", {}).get("lost"),
        "client_limited": generator.get("client_limited"),
        "client_limited_reasons": generator.get("client_limited_reasons"),
        "client_cpu_pct": generator.get("cpu_percent"),
    }


def load_clean(summary) -> bool:
    return (summary["answered"] > 0 and summary["failed"] == 0 and summary["refused_503"] == 0
            and summary["retransmissions"] == 0 and summary["unfinished"] == 0
            and summary["hung_up_by_server"] == 0)


# ---------------------------------------------------------------- scenarios

def clean(stats) -> bool:
    return (stats.get("failed", 1) == 0 and stats.get("retransmissions", 1) == 0
            and stats.get("successful", 0) > 0 and stats.get("exit_code") == 0)


def latency(rtts):
    if not rtts:
        return None
    return {"p50_ms": percentile(rtts, 0.5), "p99_ms": percentile(rtts, 0.99), "max_ms": max(rtts)}


def scenario_a(args, target, pid):
    """Short IVR calls, stepped in call rate."""
    steps, best = [], 0
    for rate in args.rates:
        calls = int(rate * args.step_seconds)
        window = CpuWindow(pid).start() if pid else None
        proc, directory = run_sipp(
            f"a-{rate}", SCENARIOS / "ivr_caller.xml", target,
            ["-s", args.service, "-p", str(CALLER_PORT), "-mp", str(CALLER_MEDIA_PORT),
             "-r", str(rate), "-m", str(calls), "-l", str(calls), "-d", str(args.short_hold_ms)],
            args, timeout=args.step_seconds + args.short_hold_ms / 1000 + 30)
        client = CpuWindow(proc.pid).start()
        stats, rtts = finish_sipp(proc, directory, args.step_seconds + args.short_hold_ms / 1000 + 40)
        step = {"rate": rate, "calls": calls, **stats, "invite_to_200": latency(rtts)}
        try:
            step["client"] = client.stop()
        except OSError:
            pass
        if window:
            cpu = window.stop()
            step["server"] = cpu
            if stats.get("successful"):
                step["server_cpu_us_per_call"] = round(1e6 * cpu["cpu_s"] / stats["successful"], 1)
        ok = clean(stats)
        step["clean"] = ok
        steps.append(step)
        log(f"a: {rate} calls/s: {stats.get('successful')} ok, {stats.get('failed')} failed, "
            f"{stats.get('retransmissions')} retransmissions, INVITE→200 {step['invite_to_200']}")
        if not ok:
            break
        best = rate
        time.sleep(args.settle_seconds)
    at_200 = next((s["invite_to_200"] for s in steps if s["rate"] == 200), None)
    return {"steps": steps, "max_clean_rate": best, "invite_to_200_at_200cps": at_200}


def scenario_a_load(args, target, pid):
    """Scenario a with santral-load as the client: rates past what SIPp streams."""
    steps, best = [], 0
    for rate in args.load_rates:
        calls = int(rate * args.step_seconds)
        hold = args.short_hold_ms / 1000
        window = CpuWindow(pid).start() if pid else None
        proc, report = run_load(f"a-load-{rate}", target, args, rate, calls, hold)
        summary = load_summary(finish_load(proc, report, args.step_seconds + hold + 60))
        step = {"rate": rate, "calls": calls, **summary}
        if window:
            cpu = window.stop()
            step["server"] = cpu
            if summary["completed"]:
                step["server_cpu_us_per_call"] = round(1e6 * cpu["cpu_s"] / summary["completed"], 1)
        step["clean"] = load_clean(summary)
        steps.append(step)
        log(f"a-load: {rate} calls/s: {summary['completed']} done, {summary['failed']} failed, "
            f"{summary['refused_503']} refused, {summary['retransmissions']} retransmissions, "
            f"INVITE→200 {summary['invite_to_200']}, client limited: {summary['client_limited']}")
        if not step["clean"]:
            break
        best = rate
        time.sleep(args.settle_seconds)
    at_200 = next((s["invite_to_200"] for s in steps if s["rate"] == 200), None)
    return {"steps": steps, "max_clean_rate": best, "invite_to_200_at_200cps": at_200}


def scenario_b_load(args, target, pid):
    """Scenario b with santral-load as the client: concurrency past SIPp's range."""
    levels = []
    for level in args.load_concurrency:
        rate = max(1, min(args.load_ramp_rate, level))
        ramp = level / rate
        hold = ramp + args.plateau_seconds + 8
        rss_before = rss_kib(pid) if pid else None
        proc, report = run_load(f"b-load-{level}", target, args, rate, level, hold,
                                max_concurrent=level)
        time.sleep(ramp + 3)
        window = CpuWindow(pid).start() if pid else None
        time.sleep(args.plateau_seconds)
        entry = {"concurrent": level}
        if window:
            cpu = window.stop()
            entry["server"] = cpu
            entry["server_cpu_pct_per_100_calls"] = round(cpu["cpu_pct"] * 100 / level, 3)
            entry["server_rss_kib"] = rss_kib(pid)
            entry["rss_kib_per_call"] = round((entry["server_rss_kib"] - rss_before) / level, 1)
        summary = load_summary(finish_load(proc, report, hold + 60))
        entry.update(summary)
        entry["clean"] = load_clean(summary)
        levels.append(entry)
        log(f"b-load: {level} concurrent: server {entry.get('server', {}).get('cpu_pct')} % CPU "
            f"({entry.get('server_cpu_pct_per_100_calls')} % per 100), "
            f"{entry.get('rss_kib_per_call')} KiB/call, jitter {summary['rtp_interval_jitter']}, "
            f"{summary['completed']} done / {summary['failed']} failed / "
            f"{summary['refused_503']} refused, client limited: {summary['client_limited']}")
        if not entry["clean"]:
            break
        time.sleep(args.settle_seconds)
    return {"levels": levels}


def scenario_overload(args, target, pid, results):
    """Short calls offered at twice the highest clean rate: what is answered, what is refused."""
    capacity = max(results.get("a-load", {}).get("max_clean_rate", 0),
                   results.get("a", {}).get("max_clean_rate", 0)) or args.load_rates[0]
    offered = 2 * capacity
    calls = int(offered * args.step_seconds)
    hold = args.short_hold_ms / 1000
    window = CpuWindow(pid).start() if pid else None
    proc, report = run_load("overload", target, args, offered, calls, hold)
    summary = load_summary(finish_load(proc, report, args.step_seconds + hold + 60))
    entry = {"capacity_calls_per_s": capacity, "offered_calls_per_s": offered, **summary,
             "goodput_calls_per_s": round(summary["completed"] / args.step_seconds, 1)}
    if window:
        entry["server"] = window.stop()
    log(f"overload: offered {offered}/s (capacity {capacity}/s): {summary['completed']} completed "
        f"({entry['goodput_calls_per_s']}/s), {summary['refused_503']} refused with 503, "
        f"{summary['failed']} failed, {summary['retransmissions']} retransmissions")
    return entry


def scenario_b(args, target, pid):
    """Long IVR calls, stepped in concurrency."""
    levels, idle_rss = [], rss_kib(pid) if pid else None
    for level in args.concurrency:
        rate = max(1, min(args.ramp_rate, level))
        ramp = level / rate
        hold_ms = int((ramp + args.plateau_seconds + 10) * 1000)
        rss_before = rss_kib(pid) if pid else None
        proc, directory = run_sipp(
            f"b-{level}", SCENARIOS / "ivr_caller.xml", target,
            ["-s", args.service, "-p", str(CALLER_PORT), "-mp", str(CALLER_MEDIA_PORT),
             "-r", str(rate), "-m", str(level), "-l", str(level), "-d", str(hold_ms)],
            args, timeout=hold_ms / 1000 + 30)
        time.sleep(ramp + 3)
        capture = capture_rtp(CALLER_MEDIA_PORT, args.plateau_seconds, directory / "rtp.pcap")
        window = CpuWindow(pid).start() if pid else None
        client = CpuWindow(proc.pid).start()
        time.sleep(args.plateau_seconds)
        entry = {"concurrent": level}
        if window:
            cpu = window.stop()
            entry["server"] = cpu
            entry["server_cpu_pct_per_100_calls"] = round(cpu["cpu_pct"] * 100 / level, 3)
            rss = rss_kib(pid)
            entry["server_rss_kib"] = rss
            entry["rss_kib_per_call"] = round((rss - rss_before) / level, 1)
        try:
            entry["client"] = client.stop()
        except OSError:
            pass
        if capture:
            capture.wait()
        stats, rtts = finish_sipp(proc, directory, hold_ms / 1000 + 40)
        entry.update(stats)
        entry["invite_to_200"] = latency(rtts)
        entry["rtp_interval_jitter"] = interval_jitter(directory / "rtp.pcap")
        entry["clean"] = clean(stats)
        levels.append(entry)
        log(f"b: {level} concurrent: server {entry.get('server', {}).get('cpu_pct')} % CPU, "
            f"{entry.get('rss_kib_per_call')} KiB/call, jitter {entry['rtp_interval_jitter']}, "
            f"{stats.get('successful')} ok / {stats.get('failed')} failed")
        if not entry["clean"]:
            break
        time.sleep(args.settle_seconds)
    return {"idle_rss_kib": idle_rss, "levels": levels}


def write_accounts(path: Path, count: int):
    rows = ["SEQUENTIAL"] + [f"{user};[authentication username={user} password={password}]"
                            for user, password in accounts(count)]
    path.write_text("\n".join(rows) + "\n")


def register_agents(args, target, count, port):
    write_accounts(WORK / "accounts.csv", count)
    proc, directory = run_sipp(
        f"register-{port}", SCENARIOS / "register_accounts.xml", target,
        ["-inf", str(WORK / "accounts.csv"), "-p", str(port), "-r", "200", "-m", str(count),
         "-l", str(count)], args, timeout=60)
    stats, _ = finish_sipp(proc, directory, 70)
    return stats


def scenario_c(args, target, pid):
    """The full path: queued callers answered by registered SIPp agents echoing RTP."""
    registered = register_agents(args, target, args.agents, AGENT_PORT)
    log(f"c: {registered.get('successful')} of {args.agents} agents registered")
    time.sleep(2)
    agents_proc, agents_dir = run_sipp(
        "c-agents", SCENARIOS / "agent_uas.xml", target,
        ["-p", str(AGENT_PORT), "-mp", str(AGENT_MEDIA_PORT), "-rtp_echo"], args,
        timeout=3600)
    steps, best = [], 0
    try:
        for rate in args.full_rates:
            calls = int(rate * args.step_seconds)
            window = CpuWindow(pid).start() if pid else None
            proc, directory = run_sipp(
                f"c-{rate}", SCENARIOS / "queue_caller.xml", target,
                ["-s", args.service, "-p", str(CALLER_PORT), "-mp", str(CALLER_MEDIA_PORT),
                 "-r", str(rate), "-m", str(calls), "-l", str(calls),
                 "-d", str(args.talk_ms)], args,
                timeout=args.step_seconds + args.talk_ms / 1000 + 30)
            stats, rtts = finish_sipp(proc, directory,
                                      args.step_seconds + args.talk_ms / 1000 + 40)
            step = {"rate": rate, "calls": calls, **stats, "invite_to_200": latency(rtts)}
            if window:
                step["server"] = window.stop()
            answered = answered_by_agents(args)
            step["answered_by_agents_total"] = answered
            step["clean"] = clean(stats)
            steps.append(step)
            log(f"c: {rate} calls/s: {stats.get('successful')} ok, {stats.get('failed')} failed, "
                f"{stats.get('retransmissions')} retransmissions; agents answered {answered} so far")
            if not step["clean"]:
                break
            best = rate
            time.sleep(args.settle_seconds)
    finally:
        agent_stats, _ = finish_sipp(agents_proc, agents_dir, 1)
    return {"agents": args.agents, "registered": registered.get("successful"),
            "steps": steps, "max_clean_rate": best, "agent_phones": agent_stats}


def answered_by_agents(args):
    """Calls santral recorded as answered by an agent (its HTTP API), or None for other servers."""
    if args.target:
        return None
    try:
        url = f"http://127.0.0.1:{HTTP_PORT}/api/v1/calls?limit=100000"
        with urllib.request.urlopen(url, timeout=10) as response:
            calls = json.load(response)
        return sum(1 for call in calls if call.get("agent"))
    except (OSError, ValueError):
        return None


def scenario_d(args, target, pid):
    """Registration storm: digest-authenticated REGISTERs, stepped in rate."""
    write_accounts(WORK / "accounts.csv", args.agents)
    steps, best = [], 0
    for rate in args.register_rates:
        count = int(rate * args.step_seconds)
        window = CpuWindow(pid).start() if pid else None
        proc, directory = run_sipp(
            f"d-{rate}", SCENARIOS / "register_accounts.xml", target,
            ["-inf", str(WORK / "accounts.csv"), "-p", str(REGISTER_PORT), "-r", str(rate),
             "-m", str(count), "-l", str(count)], args, timeout=args.step_seconds + 30)
        stats, rtts = finish_sipp(proc, directory, args.step_seconds + 40)
        step = {"rate": rate, "registrations": count, **stats, "register_round_trip": latency(rtts)}
        if window:
            step["server"] = window.stop()
        step["clean"] = clean(stats)
        steps.append(step)
        log(f"d: {rate} registrations/s: {stats.get('successful')} ok, {stats.get('failed')} "
            f"failed, {stats.get('retransmissions')} retransmissions, {step['register_round_trip']}")
        if not step["clean"]:
            break
        best = rate
        time.sleep(args.settle_seconds)
    return {"steps": steps, "max_clean_rate": best}


# ---------------------------------------------------------------- report

def short_call_rows(result, label: str):
    rows = [f"| a short IVR calls{label} | highest clean call rate | {result['max_clean_rate']} calls/s |"]
    if result.get("invite_to_200_at_200cps"):
        l = result["invite_to_200_at_200cps"]
        rows.append(f"| a{label} | INVITE→200 at 200 calls/s p50 / p99 | {l['p50_ms']} / {l['p99_ms']} ms |")
    return rows


def long_call_rows(result, label: str):
    rows = []
    for level in result["levels"]:
        jitter = level.get("rtp_interval_jitter") or {}
        rows.append(f"| b {level['concurrent']} long IVR calls{label} | CPU % of a core per 100 calls; "
                    f"RSS per call; RTP interval jitter p99 | "
                    f"{level.get('server_cpu_pct_per_100_calls')} %; "
                    f"{level.get('rss_kib_per_call')} KiB; {jitter.get('p99_ms')} ms |")
    return rows


def table(results) -> str:
    rows = ["| scenario | measure | value |", "|---|---|---|"]
    scenarios = results["scenarios"]
    if "a" in scenarios:
        rows += short_call_rows(scenarios["a"], "")
    if "b" in scenarios:
        rows += long_call_rows(scenarios["b"], "")
    if "c" in scenarios:
        c = scenarios["c"]
        rows.append(f"| c full path ({c['agents']} agents) | highest clean call rate | "
                    f"{c['max_clean_rate']} calls/s |")
    if "a-load" in scenarios:
        rows += short_call_rows(scenarios["a-load"], " (santral-load)")
    if "b-load" in scenarios:
        rows += long_call_rows(scenarios["b-load"], " (santral-load)")
    if "overload" in scenarios:
        o = scenarios["overload"]
        rows.append(f"| overload: {o['offered_calls_per_s']} calls/s offered (2 × {o['capacity_calls_per_s']}) "
                    f"| goodput; refused with 503; failed | {o['goodput_calls_per_s']} calls/s; "
                    f"{o['refused_503']}; {o['failed']} |")
    if "d" in scenarios:
        d = scenarios["d"]
        rows.append(f"| d registration storm | highest clean rate | {d['max_clean_rate']} REGISTER/s |")
    return "\n".join(rows)


def machine():
    model = ""
    try:
        model = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                     if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": model, "cpus": os.cpu_count(), "kernel": platform.release(),
            "sipp": subprocess.run(["sipp", "-v"], capture_output=True, text=True).stdout.split("\n")[0]
            if shutil.which("sipp") else None}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", help="measure this SIP server (host:port on loopback) "
                        "instead of starting santral")
    parser.add_argument("--pid", type=int, help="the target's process id (CPU and memory)")
    parser.add_argument("--service", default="1000", help="number dialled (default 1000)")
    parser.add_argument("--scenarios", default="a,a-load,b,b-load,overload,c,d",
                        help="any of a, a-load, b, b-load, overload, c, d (comma-separated)")
    parser.add_argument("--quick", action="store_true", help="a short run (minutes, not hours)")
    parser.add_argument("--smoke", action="store_true",
                        help="seconds: one small step per scenario (used by the test suite)")
    parser.add_argument("--server-cpu", type=int, default=1)
    parser.add_argument("--client-cpu", type=int, default=0)
    parser.add_argument("--out", type=Path, help="JSON result file")
    parser.add_argument("--realtime", action="store_true",
                        help="run santral-load with SCHED_FIFO priority (root), so other work "
                             "on a shared machine does not show up as its delays (santral's "
                             "media threads take real-time priority themselves where permitted)")
    args = parser.parse_args()
    args.rates = [50, 100, 200, 300, 400, 500, 600, 800, 1000]
    args.concurrency = [100, 200, 400, 700]
    args.full_rates = [10, 20, 50, 100, 150, 200]
    args.register_rates = [200, 500, 1000, 2000, 4000, 8000]
    args.step_seconds, args.short_hold_ms, args.plateau_seconds = 10, 3000, 10
    args.talk_ms, args.agents, args.ramp_rate, args.settle_seconds = 4000, 400, 100, 3
    args.load_rates = [100, 200, 300, 400, 500, 600, 800, 1000, 1200, 1500]
    args.load_concurrency = [100, 400, 1000, 2000, 3000, 4000]
    args.load_ramp_rate = 200
    if args.quick:
        args.rates, args.concurrency = [50, 200, 500], [100, 400]
        args.full_rates, args.register_rates = [20, 50], [500, 2000]
        args.step_seconds, args.agents = 5, 200
        args.load_rates, args.load_concurrency = [200, 500, 1000], [400, 2000]
    if args.smoke:
        args.rates, args.concurrency = [10], [20]
        args.full_rates, args.register_rates = [5], [50]
        args.step_seconds, args.short_hold_ms, args.plateau_seconds = 2, 2000, 3
        args.talk_ms, args.agents, args.ramp_rate, args.settle_seconds = 2000, 20, 20, 1
        args.load_rates, args.load_concurrency, args.load_ramp_rate = [10], [20], 20
    if args.target and not args.target.startswith(("127.", "[::1]", "localhost")):
        parser.error("--target must be on loopback (127.0.0.0/8 or [::1])")
    return args


def prepare(args):
    WORK.mkdir(parents=True, exist_ok=True)
    if shutil.which("sipp") is None:
        subprocess.run([str(ROOT / "scripts" / "install-deps")], check=True)
    if not args.target:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "santral"], cwd=ROOT, check=True)
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "santral-load"], cwd=ROOT, check=True)
    maker = SCENARIOS / "make_caller_pcap.py"
    for name, extra in (("caller_pcma.pcap", ["70", "9"]),
                        ("queue_caller_pcma.pcap", ["40", "1", "once"])):
        if not (WORK / name).exists():
            subprocess.run([sys.executable, str(maker), str(WORK / name), *extra], check=True,
                           stdout=subprocess.DEVNULL)


def main() -> int:
    args = parse_args()
    prepare(args)
    santral = None
    if args.target:
        target, pid = args.target, args.pid
    else:
        santral = start_santral(args, WORK)
        target, pid = f"127.0.0.1:{SIP_PORT}", santral.pid
        time.sleep(1)
    results = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "target": "santral " + subprocess.run(["git", "rev-parse", "--short", "HEAD"],
                                                     cwd=ROOT, capture_output=True, text=True
                                                     ).stdout.strip()
               if not args.target else args.target,
               "machine": machine(), "server_cpu": args.server_cpu, "client_cpu": args.client_cpu,
               "mode": "smoke" if args.smoke else "quick" if args.quick else "full",
               "realtime": args.realtime,
               "scenarios": {}}
    runners = {"a": scenario_a, "a-load": scenario_a_load, "b": scenario_b,
               "b-load": scenario_b_load, "c": scenario_c, "d": scenario_d,
               "overload": lambda a, t, p: scenario_overload(a, t, p, results["scenarios"])}
    try:
        for index, name in enumerate(args.scenarios.split(",")):
            if name not in runners:
                sys.exit(f"unknown scenario {name!r}: choose from {', '.join(runners)}")
            if santral and index > 0:
                # A fresh server per scenario: memory per call is only meaningful from a
                # process whose allocator has not kept the last scenario's peak.
                stop_santral(santral)
                santral = start_santral(args, WORK)
                pid = santral.pid
                time.sleep(1)
            log(f"scenario {name}")
            results["scenarios"][name] = runners[name](args, target, pid)
            time.sleep(args.settle_seconds)
    finally:
        if santral:
            stop_santral(santral)
    out = args.out or WORK / f"results-{results['mode']}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    log(f"results: {out}")
    failed = [name for name, result in results["scenarios"].items()
              if (result.get("steps") or result.get("levels"))
              and not (result.get("steps") or result.get("levels"))[0].get("clean")]
    if failed:
        log(f"the first step already failed in: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
