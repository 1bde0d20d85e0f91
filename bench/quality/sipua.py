"""A minimal SIP user agent over UDP on loopback, just enough for the voice-quality harness:

- `Caller` dials a hotline, presses a menu digit (RFC 4733), waits in the queue sending silence,
  then speaks the reference through an impairment schedule (random loss, jitter with reordering,
  true RTP timestamps), and hangs up. It notes when each speech packet left.
- `ProbeAgent` registers as an agent (digest auth), answers the offered call and notes when each
  RTP packet arrived, so the harness can measure the delay the server's bridge adds.

Everything is bounded in time; every socket is on 127.0.0.1.
"""
import hashlib
import heapq
import random
import re
import socket
import threading
import time
import uuid

import numpy as np

import g711

FRAME = 160  # samples per 20 ms packet at 8 kHz
PTIME = 0.020
EVENT_PT = 101
COMPACT = {"v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact", "l": "content-length",
           "c": "content-type", "k": "supported", "s": "subject", "e": "content-encoding"}


class SipError(Exception):
    pass


def new_tag() -> str:
    return uuid.uuid4().hex[:10]


def parse_message(data: bytes):
    """Returns (start line, {lower-case header: [values]}, body) or None for garbage."""
    try:
        text = data.decode("utf-8", errors="replace")
    except Exception:
        return None
    head, _, body = text.partition("\r\n\r\n")
    lines = head.split("\r\n")
    if not lines or not lines[0]:
        return None
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            continue
        name = name.strip().lower()
        name = COMPACT.get(name, name)
        headers.setdefault(name, []).append(value.strip())
    return lines[0], headers, body


def header(headers, name, default=""):
    values = headers.get(name)
    return values[0] if values else default


def parse_sdp(body: str):
    """(address, port, [payload types]) of the first audio stream."""
    address, port, formats = None, None, []
    for line in body.splitlines():
        if line.startswith("c=IN IP4 ") or line.startswith("c=IN IP6 "):
            address = line.split()[2]
        elif line.startswith("m=audio "):
            parts = line.split()
            port = int(parts[1])
            formats = [int(p) for p in parts[3:] if p.isdigit()]
    if address is None or port is None:
        raise SipError(f"SDP without audio address: {body!r}")
    return address, port, formats


def make_sdp(rtp_port: int, payload_types, session_id: int) -> str:
    names = {0: "PCMU/8000", 8: "PCMA/8000"}
    lines = ["v=0", f"o=- {session_id} 1 IN IP4 127.0.0.1", "s=quality", "c=IN IP4 127.0.0.1",
             "t=0 0", f"m=audio {rtp_port} RTP/AVP {' '.join(str(p) for p in payload_types)} {EVENT_PT}"]
    lines += [f"a=rtpmap:{pt} {names[pt]}" for pt in payload_types]
    lines += [f"a=rtpmap:{EVENT_PT} telephone-event/8000", f"a=fmtp:{EVENT_PT} 0-16",
              "a=ptime:20", "a=sendrecv"]
    return "\r\n".join(lines) + "\r\n"


def rtp_packet(sequence: int, timestamp: int, ssrc: int, payload_type: int, payload: bytes,
               marker: bool = False) -> bytes:
    first = 0x80
    second = (0x80 if marker else 0) | payload_type
    return (bytes([first, second]) + (sequence & 0xFFFF).to_bytes(2, "big")
            + (timestamp & 0xFFFFFFFF).to_bytes(4, "big") + ssrc.to_bytes(4, "big") + payload)


class Impairment:
    """A seeded network: each packet is lost with `loss`, or delayed by `base_ms` ± `jitter_ms`
    (uniform, independent per packet, so packets overtake each other: netem's
    `delay BASE JITTER loss LOSS`)."""

    def __init__(self, loss: float = 0.0, jitter_ms: float = 0.0, seed: int = 1):
        self.loss = loss
        self.jitter_ms = jitter_ms
        self.base_ms = jitter_ms
        self.random = random.Random(seed)

    def delay(self):
        """Seconds to hold a packet, or None when it is lost."""
        lost = self.random.random() < self.loss
        jitter = self.random.uniform(-self.jitter_ms, self.jitter_ms) if self.jitter_ms else 0.0
        return None if lost else (self.base_ms + jitter) / 1000.0


class Dialog:
    """The state both roles share: the SIP socket, dialog identifiers and in-dialog answering."""

    def __init__(self, server, user: str):
        self.server = server
        self.user = user
        self.sip = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sip.bind(("127.0.0.1", 0))
        self.sip.settimeout(0.1)
        self.local_port = self.sip.getsockname()[1]
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind(("127.0.0.1", 0))
        self.rtp_port = self.rtp.getsockname()[1]
        self.call_id = None
        self.local_tag = new_tag()
        self.remote_tag = ""
        self.remote_rtp = None
        self.payload_type = 0
        self.cseq = 1
        self.ended = threading.Event()
        self.responses = []
        self.lock = threading.Lock()
        self.log = []

    def via(self) -> str:
        return f"SIP/2.0/UDP 127.0.0.1:{self.local_port};branch=z9hG4bK{new_tag()};rport"

    def send(self, text: str, address=None):
        self.sip.sendto(text.encode(), address or self.server)

    def reply(self, start, headers, code: int, reason: str, body: str = "", to_tag: str = ""):
        to = header(headers, "to")
        if to_tag and ";tag=" not in to:
            to = f"{to};tag={to_tag}"
        lines = [f"SIP/2.0 {code} {reason}"]
        lines += [f"Via: {v}" for v in headers.get("via", [])]
        lines += [f"From: {header(headers, 'from')}", f"To: {to}",
                  f"Call-ID: {header(headers, 'call-id')}", f"CSeq: {header(headers, 'cseq')}",
                  f"Contact: <sip:{self.user}@127.0.0.1:{self.local_port}>"]
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body.encode())}")
        self.send("\r\n".join(lines) + "\r\n\r\n" + body)

    def receive(self):
        try:
            data, address = self.sip.recvfrom(65535)
        except (socket.timeout, OSError):
            return None
        parsed = parse_message(data)
        if parsed is None:
            return None
        return parsed + (address,)

    def answer_in_dialog(self, start, headers):
        """Answers requests inside the call: BYE ends it, anything else gets 200."""
        method = start.split()[0]
        if method == "BYE":
            self.reply(start, headers, 200, "OK")
            self.ended.set()
        elif method == "ACK":
            pass
        elif method == "INVITE":
            body = make_sdp(self.rtp_port, [self.payload_type], 1)
            self.reply(start, headers, 200, "OK", body, self.local_tag)
        else:
            self.reply(start, headers, 200, "OK")

    def request(self, method: str, uri: str, to: str, body: str = "", extra=()) -> str:
        self.cseq += 1
        lines = [f"{method} {uri} SIP/2.0", f"Via: {self.via()}", "Max-Forwards: 70",
                 f"From: <sip:{self.user}@127.0.0.1>;tag={self.local_tag}", f"To: {to}",
                 f"Call-ID: {self.call_id}", f"CSeq: {self.cseq} {method}",
                 f"Contact: <sip:{self.user}@127.0.0.1:{self.local_port}>", *extra]
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body.encode())}")
        text = "\r\n".join(lines) + "\r\n\r\n" + body
        self.send(text)
        return text

    def close(self):
        self.sip.close()
        self.rtp.close()


class Caller(Dialog):
    """Dials `number`, presses `digit`, then speaks when `speak` is set (see module doc)."""

    def __init__(self, server, number: str, payload_type: int, speech: np.ndarray,
                 impairment: Impairment, digit: int = 1):
        super().__init__(server, "quality-caller")
        self.number = number
        self.payload_type = payload_type
        self.speech = speech
        self.impairment = impairment
        self.digit = digit
        self.call_id = f"{uuid.uuid4().hex}@quality"
        self.to = f"<sip:{number}@{server[0]}:{server[1]}>"
        self.speak = threading.Event()
        self.spoken = threading.Event()
        self.speech_sent = {}  # speech frame index → monotonic send time
        self.ssrc = random.Random(payload_type).getrandbits(32)

    def dial(self, timeout: float = 10.0):
        uri = f"sip:{self.number}@{self.server[0]}:{self.server[1]}"
        self.cseq = 0
        invite = self.request("INVITE", uri, self.to, make_sdp(self.rtp_port, [self.payload_type], 1))
        deadline = time.monotonic() + timeout
        next_retransmit = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            if time.monotonic() > next_retransmit:
                self.send(invite)
                next_retransmit = time.monotonic() + 1.0
            message = self.receive()
            if message is None:
                continue
            start, headers, body, _ = message
            if not start.startswith("SIP/2.0"):
                self.answer_in_dialog(start, headers)
                continue
            code = int(start.split()[1])
            if code < 200:
                next_retransmit = deadline
                continue
            if code >= 300:
                raise SipError(f"INVITE refused: {start}")
            match = re.search(r";tag=([^;>\s]+)", header(headers, "to"))
            self.remote_tag = match.group(1) if match else ""
            self.to = header(headers, "to")
            address, port, _ = parse_sdp(body)
            self.remote_rtp = (address, port)
            self.ack()
            return
        raise SipError("no answer to INVITE")

    def ack(self):
        uri = f"sip:{self.number}@{self.server[0]}:{self.server[1]}"
        lines = [f"ACK {uri} SIP/2.0", f"Via: {self.via()}", "Max-Forwards: 70",
                 f"From: <sip:{self.user}@127.0.0.1>;tag={self.local_tag}", f"To: {self.to}",
                 f"Call-ID: {self.call_id}", f"CSeq: {self.cseq} ACK", "Content-Length: 0"]
        self.send("\r\n".join(lines) + "\r\n\r\n")

    def serve_dialog(self, until: threading.Event):
        """Answers in-dialog requests (and re-ACKs a retransmitted 200) until `until` is set."""
        while not until.is_set() and not self.ended.is_set():
            message = self.receive()
            if message is None:
                continue
            start, headers, _, _ = message
            if start.startswith("SIP/2.0"):
                code = int(start.split()[1])
                if "INVITE" in header(headers, "cseq") and 200 <= code < 300:
                    self.ack()
                with self.lock:
                    self.responses.append((start, headers))
            else:
                self.answer_in_dialog(start, headers)

    def hang_up(self, timeout: float = 3.0):
        if self.ended.is_set():
            return
        uri = f"sip:{self.number}@{self.server[0]}:{self.server[1]}"
        self.request("BYE", uri, self.to)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if any("BYE" in header(h, "cseq") for _, h in self.responses):
                    return
            time.sleep(0.02)

    def stream(self, max_wait: float, digit_after: float = 1.2, lead_in: float = 0.4,
               tail: float = 1.0):
        """Sends RTP on the 20 ms grid: silence, the digit at `digit_after` s, silence until
        `speak` is set (at most `max_wait` s), then the speech and `tail` s of silence; every
        audio packet goes through the impairment. Bounded by construction."""
        silence = bytes([g711.SILENCE[self.payload_type]]) * FRAME
        frames = [g711.encode(self.speech[k:k + FRAME], self.payload_type)
                  for k in range(0, len(self.speech) - FRAME + 1, FRAME)]
        digit_start = int(digit_after / PTIME)
        digit_packets = 8  # 160 ms press
        speech_start = None
        total_limit = int((digit_after + max_wait) / PTIME) + len(frames) + 200
        pending = []  # heap of (send time, order, packet, speech index or -1)
        order = 0
        t0 = time.monotonic()
        sequence = random.Random(self.ssrc).getrandbits(15)
        n = 0
        finished_at = None
        while True:
            now = time.monotonic()
            nominal = t0 + n * PTIME
            if self.ended.is_set():
                break
            if finished_at is None and now >= nominal:
                if n >= total_limit:
                    break
                timestamp = n * FRAME
                packet_speech = -1
                if digit_start <= n < digit_start + digit_packets + 3:
                    k = n - digit_start
                    end = k >= digit_packets - 1
                    duration = min(k + 1, digit_packets) * FRAME
                    payload = bytes([self.digit, 0x80 | 10 if end else 10]) + duration.to_bytes(2, "big")
                    packet = rtp_packet(sequence, digit_start * FRAME, self.ssrc, EVENT_PT, payload,
                                        marker=(k == 0))
                    delay = 0.0
                else:
                    if speech_start is None and self.speak.is_set():
                        speech_start = n + int(lead_in / PTIME)
                    if speech_start is None and n > digit_start + int(max_wait / PTIME):
                        raise SipError("the agent never answered")
                    index = n - speech_start if speech_start is not None else -1
                    if 0 <= index < len(frames):
                        payload = frames[index]
                        packet_speech = index
                    else:
                        payload = silence
                    packet = rtp_packet(sequence, timestamp, self.ssrc, self.payload_type, payload)
                    if speech_start is not None and index >= len(frames) + int(tail / PTIME):
                        finished_at = now
                        continue
                    # The network is impaired for the whole call; only the menu digit's event
                    # packets stay clean, so that every run takes the same path through the IVR.
                    delay = self.impairment.delay()
                sequence += 1
                n += 1
                if delay is not None:
                    heapq.heappush(pending, (nominal + delay, order, packet, packet_speech))
                    order += 1
                continue
            if pending and pending[0][0] <= now:
                _, _, packet, speech_index = heapq.heappop(pending)
                self.rtp.sendto(packet, self.remote_rtp)
                if speech_index >= 0:
                    self.speech_sent[speech_index] = time.monotonic()
                continue
            if finished_at is not None and not pending:
                break
            wakes = ([nominal] if finished_at is None else []) + ([pending[0][0]] if pending else [])
            wake = min(wakes) if wakes else now
            time.sleep(max(0.0, min(wake - time.monotonic(), 0.005)))
        self.spoken.set()


class ProbeAgent(Dialog):
    """Registers as `user`, answers one call and notes every RTP packet's arrival."""

    def __init__(self, server, user: str, password: str):
        super().__init__(server, user)
        self.password = password
        self.arrivals = []  # (monotonic time, sequence, timestamp, payload type, payload)
        self.answered = threading.Event()

    def register(self, timeout: float = 5.0):
        self.call_id = f"{uuid.uuid4().hex}@quality-agent"
        uri = f"sip:{self.server[0]}:{self.server[1]}"
        to = f"<sip:{self.user}@{self.server[0]}>"
        extra = ["Expires: 300"]
        self.request("REGISTER", uri, to, extra=extra)
        deadline = time.monotonic() + timeout
        authorised = False
        while time.monotonic() < deadline:
            message = self.receive()
            if message is None:
                continue
            start, headers, _, _ = message
            if not start.startswith("SIP/2.0"):
                continue
            code = int(start.split()[1])
            if code in (401, 407) and not authorised:
                challenge = header(headers, "www-authenticate") or header(headers, "proxy-authenticate")
                authorisation = self.digest("REGISTER", uri, challenge)
                name = "Authorization" if code == 401 else "Proxy-Authorization"
                self.request("REGISTER", uri, to, extra=extra + [f"{name}: {authorisation}"])
                authorised = True
            elif 200 <= code < 300:
                return
            elif code >= 300:
                raise SipError(f"REGISTER refused: {start}")
        raise SipError("REGISTER timed out")

    def digest(self, method: str, uri: str, challenge: str) -> str:
        fields = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge))
        algorithm = fields.get("algorithm", "MD5").upper()
        hash_ = hashlib.sha256 if algorithm.startswith("SHA-256") else hashlib.md5

        def h(text):
            return hash_(text.encode()).hexdigest()

        realm, nonce = fields.get("realm", ""), fields.get("nonce", "")
        ha1 = h(f"{self.user}:{realm}:{self.password}")
        ha2 = h(f"{method}:{uri}")
        parts = [f'username="{self.user}"', f'realm="{realm}"', f'nonce="{nonce}"', f'uri="{uri}"',
                 f"algorithm={algorithm}"]
        if "qop" in fields:
            cnonce, nc = new_tag(), "00000001"
            response = h(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
            parts += ["qop=auth", f"nc={nc}", f'cnonce="{cnonce}"']
        else:
            response = h(f"{ha1}:{nonce}:{ha2}")
        parts.append(f'response="{response}"')
        if "opaque" in fields:
            parts.append(f'opaque="{fields["opaque"]}"')
        return "Digest " + ", ".join(parts)

    def serve(self, until: threading.Event, payload_types=(0, 8)):
        """Answers the first INVITE (choosing the first of `payload_types` offered) and then
        in-dialog requests, until `until` is set or the call ends."""
        receiver = threading.Thread(target=self.receive_rtp, args=(until,), daemon=True)
        receiver.start()
        while not until.is_set() and not self.ended.is_set():
            message = self.receive()
            if message is None:
                continue
            start, headers, body, _ = message
            if start.startswith("SIP/2.0"):
                continue
            method = start.split()[0]
            if method == "INVITE" and not self.answered.is_set():
                address, port, offered = parse_sdp(body)
                chosen = next((pt for pt in payload_types if pt in offered), None)
                if chosen is None:
                    self.reply(start, headers, 488, "Not Acceptable Here", to_tag=self.local_tag)
                    continue
                self.payload_type = chosen
                self.remote_rtp = (address, port)
                self.reply(start, headers, 200, "OK", make_sdp(self.rtp_port, [chosen], 2),
                           self.local_tag)
                self.answered.set()
            else:
                self.answer_in_dialog(start, headers)
        receiver.join(timeout=2)

    def receive_rtp(self, until: threading.Event):
        self.rtp.settimeout(0.05)
        while not until.is_set() and not self.ended.is_set():
            try:
                data, _ = self.rtp.recvfrom(2048)
            except (socket.timeout, OSError):
                continue
            arrived = time.monotonic()
            if len(data) < 12 or data[0] >> 6 != 2:
                continue
            self.arrivals.append((arrived, int.from_bytes(data[2:4], "big"),
                                  int.from_bytes(data[4:8], "big"), data[1] & 0x7F, data[12:]))
