//! One call as the generator's UAC sees it, as a sans-IO state machine: it is handed responses,
//! requests and the time, and gives back datagrams to send to the server. INVITE and BYE are
//! retransmitted on RFC 3261 timers (UDP) and every retransmission is counted.
//!
//! INVITE → (1xx) → 200 → ACK → hold → BYE → 200, or the server's BYE → 200.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use santral_sip::{Message, Method};

use crate::media_stream::{MediaStream, PlannedDigit};
use crate::sdp::{self, Answer, Law};

/// RFC 3261 timer base values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SipTimers {
    pub t1: Duration,
    pub t2: Duration,
}

impl Default for SipTimers {
    fn default() -> Self {
        SipTimers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
        }
    }
}

/// What one call is told before it starts.
#[derive(Debug, Clone)]
pub struct CallSetup {
    pub index: u32,
    /// Distinguishes this run's Call-IDs from stray traffic of earlier runs.
    pub run_tag: u32,
    pub local_sip: SocketAddr,
    pub target: SocketAddr,
    pub to_user: String,
    /// The RTP address advertised in the offer (shared by many calls).
    pub local_rtp: SocketAddr,
    pub rtp_socket: usize,
    pub law: Law,
    pub hold: Duration,
    /// RFC 4733 event code and its time after the answer.
    pub digit: Option<(u8, Duration)>,
    pub timers: SipTimers,
}

/// How a call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Answered, held, our BYE answered.
    Completed,
    /// Answered, then the server hung up first.
    HungUpByServer,
    /// Answered but its BYE got no final response in 64·T1.
    ByeTimeout,
    /// Final non-2xx status (other than 503) to the INVITE.
    Failed(u16),
    /// 503: turned away by the server's overload control.
    Refused { retry_after: Option<u32> },
    /// No final response to the INVITE in 64·T1.
    InviteTimeout,
    /// Answered with an SDP answer the generator cannot use (hung up at once).
    BadAnswer(String),
    /// Still going when the run's time ran out.
    Unfinished,
}

impl Outcome {
    pub fn label(&self) -> String {
        match self {
            Outcome::Completed => "completed".into(),
            Outcome::HungUpByServer => "hung_up_by_server".into(),
            Outcome::ByeTimeout => "bye_timeout".into(),
            Outcome::Failed(code) => format!("failed_{code}"),
            Outcome::Refused { .. } => "refused_503".into(),
            Outcome::InviteTimeout => "invite_timeout".into(),
            Outcome::BadAnswer(_) => "bad_answer".into(),
            Outcome::Unfinished => "unfinished".into(),
        }
    }

    /// The call was answered (whatever happened after).
    pub fn answered(&self) -> bool {
        matches!(
            self,
            Outcome::Completed
                | Outcome::HungUpByServer
                | Outcome::ByeTimeout
                | Outcome::BadAnswer(_)
        )
    }
}

/// What an input did to the call, for the driver's bookkeeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    Nothing,
    /// 200 OK with a usable answer: media starts.
    Answered,
    /// The call is over (its outcome is set).
    Ended,
}

/// Retransmission counts of one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retransmissions {
    pub invite: u32,
    pub bye: u32,
    /// 200 OKs to the INVITE received again (the server did not see our ACK in time).
    pub ok_received_again: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Inviting { provisional: bool },
    Confirmed,
    Terminating { provisional: bool },
    Done,
}

#[derive(Debug)]
pub struct Call {
    index: u32,
    call_id: String,
    from_header: String,
    /// To of the dialog (with the server's tag) once answered.
    to_header: String,
    remote_target: String,
    via_prefix: String,
    target: SocketAddr,
    request_uri: String,
    phase: Phase,
    invite: Vec<u8>,
    bye: Vec<u8>,
    invite_sent: Instant,
    retransmit_at: Option<Instant>,
    retransmit_interval: Duration,
    give_up_at: Instant,
    hangup_at: Option<Instant>,
    setup_hold: Duration,
    setup_digit: Option<(u8, Duration)>,
    rtp_socket: usize,
    timers: SipTimers,
    latency: Option<Duration>,
    final_status: Option<u16>,
    outcome: Option<Outcome>,
    pub retransmissions: Retransmissions,
    pub media: Option<MediaStream>,
}

/// The Call-ID of call `index` in run `run_tag`.
pub fn call_id(index: u32, run_tag: u32) -> String {
    format!("{index}-{run_tag:08x}@santral-load")
}

/// The call index a Call-ID of this run names, if it is one of ours.
pub fn call_index(call_id: &str, run_tag: u32) -> Option<u32> {
    let (index, rest) = call_id.split_once('-')?;
    let (tag, host) = rest.split_once('@')?;
    if host != "santral-load" || u32::from_str_radix(tag, 16).ok()? != run_tag {
        return None;
    }
    index.parse().ok()
}

/// SSRC of call `index`: distinct per call and run, spread over the 32-bit space.
pub fn ssrc_of(index: u32, run_tag: u32) -> u32 {
    index.wrapping_mul(0x9E37_79B1) ^ run_tag
}

impl Call {
    /// A new call; its INVITE is pushed to `out` at once.
    pub fn start(setup: &CallSetup, now: Instant, out: &mut Vec<Vec<u8>>) -> Call {
        let index = setup.index;
        let call_id = call_id(index, setup.run_tag);
        let local_host = setup.local_sip;
        let from_header = format!(
            "<sip:load{index}@{host}>;tag={index}x{tag:08x}",
            host = hostport_host(local_host),
            tag = setup.run_tag
        );
        let request_uri = format!("sip:{}@{}", setup.to_user, setup.target);
        let via_prefix = format!(
            "SIP/2.0/UDP {local_host};rport;branch=z9hG4bK{tag:08x}.{index}",
            tag = setup.run_tag
        );
        let offer = sdp::offer(
            setup.local_rtp.ip(),
            setup.local_rtp.port(),
            setup.law,
            u64::from(index),
        );
        let mut invite = String::with_capacity(700);
        let _ = write!(
            invite,
            "INVITE {request_uri} SIP/2.0\r\n\
             Via: {via_prefix}.1\r\n\
             Max-Forwards: 70\r\n\
             From: {from_header}\r\n\
             To: <{request_uri}>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: 1 INVITE\r\n\
             Contact: <sip:load{index}@{local_host}>\r\n\
             User-Agent: santral-load\r\n\
             Content-Type: application/sdp\r\n\
             Content-Length: {}\r\n\r\n{offer}",
            offer.len()
        );
        let invite = invite.into_bytes();
        out.push(invite.clone());
        let t1 = setup.timers.t1;
        Call {
            index,
            call_id,
            from_header,
            to_header: String::new(),
            remote_target: request_uri.clone(),
            via_prefix,
            target: setup.target,
            request_uri,
            phase: Phase::Inviting { provisional: false },
            invite,
            bye: Vec::new(),
            invite_sent: now,
            retransmit_at: Some(now + t1),
            retransmit_interval: t1,
            give_up_at: now + 64 * t1,
            hangup_at: None,
            setup_hold: setup.hold,
            setup_digit: setup.digit,
            rtp_socket: setup.rtp_socket,
            timers: setup.timers,
            latency: None,
            final_status: None,
            outcome: None,
            retransmissions: Retransmissions::default(),
            media: None,
        }
    }

    pub fn index(&self) -> u32 {
        self.index
    }

    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// INVITE sent → 200 OK received.
    pub fn latency(&self) -> Option<Duration> {
        self.latency
    }

    /// The INVITE's final status, once known.
    pub fn final_status(&self) -> Option<u16> {
        self.final_status
    }

    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }

    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// Sending RTP (answered, not yet hanging up).
    pub fn media_active(&self) -> bool {
        self.phase == Phase::Confirmed
    }

    fn end(&mut self, outcome: Outcome) -> Progress {
        self.phase = Phase::Done;
        self.outcome = Some(outcome);
        self.retransmit_at = None;
        // Keep finished calls small: a long run keeps every call for its report.
        self.invite = Vec::new();
        self.bye = Vec::new();
        Progress::Ended
    }

    /// A response whose Call-ID named this call.
    pub fn on_response(
        &mut self,
        now: Instant,
        response: &Message,
        ssrc: u32,
        out: &mut Vec<Vec<u8>>,
    ) -> Progress {
        let (Some(status), Ok((_, method))) = (response.status(), response.cseq()) else {
            return Progress::Nothing;
        };
        match method {
            Method::Invite => self.on_invite_response(now, status, response, ssrc, out),
            Method::Bye => self.on_bye_response(now, status),
            _ => Progress::Nothing,
        }
    }

    fn on_invite_response(
        &mut self,
        now: Instant,
        status: u16,
        response: &Message,
        ssrc: u32,
        out: &mut Vec<Vec<u8>>,
    ) -> Progress {
        let Phase::Inviting { .. } = self.phase else {
            // A retransmitted final response: the server missed our ACK.
            if (200..300).contains(&status) {
                self.retransmissions.ok_received_again += 1;
                if !self.to_header.is_empty() {
                    out.push(self.ack_2xx());
                }
            } else if status >= 300 {
                out.push(self.ack_non_2xx(response));
            }
            return Progress::Nothing;
        };
        match status {
            100..=199 => {
                // A provisional response stops INVITE retransmissions over UDP (§17.1.1.2).
                self.phase = Phase::Inviting { provisional: true };
                self.retransmit_at = None;
                Progress::Nothing
            }
            200..=299 => {
                self.latency = Some(now.saturating_duration_since(self.invite_sent));
                self.final_status = Some(status);
                self.to_header = response.header("To").unwrap_or_default().to_owned();
                if let Some(uri) = response.header("Contact").and_then(contact_uri) {
                    self.remote_target = uri.to_owned();
                }
                out.push(self.ack_2xx());
                match Answer::parse(&response.body) {
                    Ok(answer) => {
                        let digit = self.setup_digit.map(|(event, after)| PlannedDigit {
                            event,
                            at: now + after,
                        });
                        self.media = Some(MediaStream::new(
                            answer.rtp,
                            self.rtp_socket,
                            answer.payload_type,
                            answer.telephone_event,
                            ssrc,
                            digit,
                        ));
                        self.phase = Phase::Confirmed;
                        self.retransmit_at = None;
                        self.hangup_at = Some(now + self.setup_hold);
                        Progress::Answered
                    }
                    Err(err) => {
                        self.send_bye(now, out);
                        self.end(Outcome::BadAnswer(err.to_string()))
                    }
                }
            }
            _ => {
                self.final_status = Some(status);
                out.push(self.ack_non_2xx(response));
                if status == 503 {
                    let retry_after = response
                        .header("Retry-After")
                        .and_then(|v| v.split(|c: char| !c.is_ascii_digit()).next())
                        .and_then(|v| v.parse().ok());
                    self.end(Outcome::Refused { retry_after })
                } else {
                    self.end(Outcome::Failed(status))
                }
            }
        }
    }

    fn on_bye_response(&mut self, now: Instant, status: u16) -> Progress {
        let Phase::Terminating { .. } = self.phase else {
            return Progress::Nothing;
        };
        if status < 200 {
            self.phase = Phase::Terminating { provisional: true };
            self.retransmit_interval = self.timers.t2;
            self.retransmit_at = Some(now + self.timers.t2);
            return Progress::Nothing;
        }
        // Any final response ends the dialog (RFC 3261 §15.1.1).
        self.end(Outcome::Completed)
    }

    /// A request from the server in this call's dialog; the answer is pushed to `out`.
    pub fn on_request(&mut self, request: &Message, out: &mut Vec<Vec<u8>>) -> Progress {
        let (status, reason) = match request.method() {
            Some(Method::Ack) => return Progress::Nothing,
            Some(Method::Bye)
            | Some(Method::Options)
            | Some(Method::Info)
            | Some(Method::Notify) => (200, "OK"),
            _ => (501, "Not Implemented"),
        };
        out.push(Message::response_to(request, status, reason).to_bytes());
        if request.method() == Some(&Method::Bye) {
            return match self.phase {
                Phase::Confirmed => self.end(Outcome::HungUpByServer),
                // BYEs crossed: ours will get its own answer or time out; either way, done.
                Phase::Terminating { .. } => self.end(Outcome::Completed),
                Phase::Inviting { .. } | Phase::Done => Progress::Nothing,
            };
        }
        Progress::Nothing
    }

    /// Fires due timers: retransmissions, Timer B/F, the hang-up after the hold time.
    pub fn on_timer(&mut self, now: Instant, out: &mut Vec<Vec<u8>>) -> Progress {
        match self.phase {
            Phase::Inviting { .. } => {
                if now >= self.give_up_at {
                    return self.end(Outcome::InviteTimeout);
                }
                if let Some(at) = self.retransmit_at
                    && now >= at
                {
                    out.push(self.invite.clone());
                    self.retransmissions.invite += 1;
                    self.retransmit_interval *= 2; // INVITE doubles without a cap (Timer A)
                    self.retransmit_at = Some(now + self.retransmit_interval);
                }
                Progress::Nothing
            }
            Phase::Confirmed => {
                if self.hangup_at.is_some_and(|at| now >= at) {
                    self.send_bye(now, out);
                }
                Progress::Nothing
            }
            Phase::Terminating { provisional } => {
                if now >= self.give_up_at {
                    return self.end(Outcome::ByeTimeout);
                }
                if let Some(at) = self.retransmit_at
                    && now >= at
                {
                    out.push(self.bye.clone());
                    self.retransmissions.bye += 1;
                    // Timer E doubles up to T2; after a provisional response it stays at T2.
                    self.retransmit_interval = if provisional {
                        self.timers.t2
                    } else {
                        (self.retransmit_interval * 2).min(self.timers.t2)
                    };
                    self.retransmit_at = Some(now + self.retransmit_interval);
                }
                Progress::Nothing
            }
            Phase::Done => Progress::Nothing,
        }
    }

    /// The run's time is up: hang up an answered call (without waiting) and mark it unfinished.
    pub fn abandon(&mut self, now: Instant, out: &mut Vec<Vec<u8>>) -> Progress {
        match self.phase {
            Phase::Done => Progress::Nothing,
            Phase::Confirmed => {
                self.send_bye(now, out);
                self.end(Outcome::Unfinished)
            }
            _ => self.end(Outcome::Unfinished),
        }
    }

    fn send_bye(&mut self, now: Instant, out: &mut Vec<Vec<u8>>) {
        let mut bye = String::with_capacity(400);
        let _ = write!(
            bye,
            "BYE {target} SIP/2.0\r\n\
             Via: {via}.3\r\n\
             Max-Forwards: 70\r\n\
             From: {from}\r\n\
             To: {to}\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: 2 BYE\r\n\
             User-Agent: santral-load\r\n\
             Content-Length: 0\r\n\r\n",
            target = self.remote_target,
            via = self.via_prefix,
            from = self.from_header,
            to = self.to_header,
            call_id = self.call_id,
        );
        self.bye = bye.into_bytes();
        out.push(self.bye.clone());
        self.phase = Phase::Terminating { provisional: false };
        self.hangup_at = None;
        self.retransmit_interval = self.timers.t1;
        self.retransmit_at = Some(now + self.timers.t1);
        self.give_up_at = now + 64 * self.timers.t1;
    }

    fn ack_2xx(&self) -> Vec<u8> {
        // A new transaction: its own branch, sent to the remote target (§13.2.2.4).
        self.ack(&self.remote_target, ".2", &self.to_header)
    }

    fn ack_non_2xx(&self, response: &Message) -> Vec<u8> {
        // Part of the INVITE transaction: same branch and Request-URI (§17.1.1.3).
        self.ack(
            &self.request_uri,
            ".1",
            response.header("To").unwrap_or_default(),
        )
    }

    fn ack(&self, uri: &str, branch_suffix: &str, to: &str) -> Vec<u8> {
        let mut ack = String::with_capacity(400);
        let _ = write!(
            ack,
            "ACK {uri} SIP/2.0\r\n\
             Via: {via}{branch_suffix}\r\n\
             Max-Forwards: 70\r\n\
             From: {from}\r\n\
             To: {to}\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: 1 ACK\r\n\
             Content-Length: 0\r\n\r\n",
            via = self.via_prefix,
            from = self.from_header,
            call_id = self.call_id,
        );
        ack.into_bytes()
    }

    /// Where the call's SIP goes (the target; the generator speaks to nothing else).
    pub fn target(&self) -> SocketAddr {
        self.target
    }
}

/// `host` part of a host:port for URIs (IPv6 in brackets).
fn hostport_host(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(v4) => v4.ip().to_string(),
        SocketAddr::V6(v6) => format!("[{}]", v6.ip()),
    }
}

/// The URI of a Contact header value (`<uri>;params`, `"name" <uri>` or a bare `uri;params`).
fn contact_uri(value: &str) -> Option<&str> {
    let value = value.trim();
    if let Some(open) = value.find('<') {
        let rest = &value[open + 1..];
        return rest
            .find('>')
            .map(|close| &rest[..close])
            .filter(|u| !u.is_empty());
    }
    value
        .split([';', ','])
        .next()
        .map(str::trim)
        .filter(|u| !u.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn setup() -> CallSetup {
        CallSetup {
            index: 7,
            run_tag: 0xabc,
            local_sip: "127.0.0.1:40000".parse().unwrap(),
            target: "127.0.0.1:5060".parse().unwrap(),
            to_user: "1000".into(),
            local_rtp: "127.0.0.1:40002".parse().unwrap(),
            rtp_socket: 0,
            law: Law::Pcma,
            hold: Duration::from_secs(2),
            digit: Some((9, Duration::from_secs(1))),
            timers: SipTimers::default(),
        }
    }

    fn parse(bytes: &[u8]) -> Message {
        Message::parse(bytes).unwrap()
    }

    /// The server's response to `request` (To tag added, optional SDP answer).
    fn response(request: &[u8], code: u16, sdp: Option<&str>) -> Message {
        let request = parse(request);
        let mut msg = Message::response_to(&request, code, "X");
        if code > 100 {
            msg.set_to_tag("srv1");
        }
        msg.push_header("Contact", "<sip:1000@127.0.0.1:5060;transport=udp>");
        if let Some(sdp) = sdp {
            msg.push_header("Content-Type", "application/sdp");
            msg.body = sdp.as_bytes().to_vec().into();
        }
        parse(&msg.to_bytes())
    }

    const ANSWER: &str = "v=0\r\no=s 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                          m=audio 10000 RTP/AVP 8 101\r\na=rtpmap:101 telephone-event/8000\r\n";

    #[test]
    fn call_ids_name_their_call_and_run() {
        let id = call_id(42, 0xdead);
        assert_eq!(call_index(&id, 0xdead), Some(42));
        assert_eq!(call_index(&id, 0xbeef), None);
        assert_eq!(call_index("42-0000dead@elsewhere", 0xdead), None);
        assert_eq!(call_index("garbage", 0xdead), None);
    }

    #[test]
    fn invite_is_a_valid_request_with_our_offer() {
        let t0 = Instant::now();
        let mut out = Vec::new();
        let call = Call::start(&setup(), t0, &mut out);
        let invite = parse(&out[0]);
        assert_eq!(invite.method(), Some(&Method::Invite));
        assert_eq!(invite.request_uri(), Some("sip:1000@127.0.0.1:5060"));
        assert_eq!(invite.call_id(), Some(call.call_id()));
        assert_eq!(
            invite.top_via().unwrap().branch(),
            Some("z9hG4bK00000abc.7.1")
        );
        assert!(invite.from_tag().is_some());
        let body = std::str::from_utf8(&invite.body).unwrap();
        assert!(body.contains("m=audio 40002 RTP/AVP 8 101"), "{body}");
    }

    #[test]
    fn full_call_in_virtual_time_counts_retransmissions() {
        let t0 = Instant::now();
        let mut out = Vec::new();
        let mut call = Call::start(&setup(), t0, &mut out);
        let invite = out.remove(0);
        // No answer: Timer A retransmits at 500 ms and 1.5 s (intervals 500, 1000).
        assert_eq!(call.on_timer(t0 + 499 * MS, &mut out), Progress::Nothing);
        assert!(out.is_empty());
        call.on_timer(t0 + 500 * MS, &mut out);
        call.on_timer(t0 + 1500 * MS, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0], invite);
        assert_eq!(call.retransmissions.invite, 2);
        out.clear();
        // 100 Trying stops them.
        let trying = response(&invite, 100, None);
        call.on_response(t0 + 1600 * MS, &trying, 1, &mut out);
        call.on_timer(t0 + 10_000 * MS, &mut out);
        assert!(out.is_empty());
        // 200 OK: ACK to the Contact, media towards the answer, latency measured.
        let ok = response(&invite, 200, Some(ANSWER));
        let answered = t0 + 1700 * MS;
        assert_eq!(
            call.on_response(answered, &ok, 1, &mut out),
            Progress::Answered
        );
        assert_eq!(call.latency(), Some(1700 * MS));
        let ack = parse(&out.remove(0));
        assert_eq!(ack.method(), Some(&Method::Ack));
        assert_eq!(
            ack.request_uri(),
            Some("sip:1000@127.0.0.1:5060;transport=udp")
        );
        assert_eq!(ack.to_tag().as_deref(), Some("srv1"));
        assert_ne!(ack.top_via().unwrap().branch(), Some("z9hG4bK00000abc.7.1"));
        assert_eq!(
            call.media.as_ref().unwrap().remote,
            "127.0.0.1:10000".parse().unwrap()
        );
        assert!(call.media_active());
        // The 200 again: ACK again, counted.
        call.on_response(answered + 500 * MS, &ok, 1, &mut out);
        assert_eq!(call.retransmissions.ok_received_again, 1);
        assert_eq!(parse(&out.remove(0)).method(), Some(&Method::Ack));
        // Hold 2 s, then BYE; retransmitted at T1, 2·T1, then capped at T2.
        call.on_timer(answered + 1999 * MS, &mut out);
        assert!(out.is_empty());
        let hangup = answered + 2000 * MS;
        call.on_timer(hangup, &mut out);
        let bye_bytes = out.remove(0);
        let bye = parse(&bye_bytes);
        assert_eq!(bye.method(), Some(&Method::Bye));
        assert_eq!(bye.cseq().unwrap(), (2, Method::Bye));
        assert!(!call.media_active());
        for (at, expected) in [(500, 1), (1500, 2), (3500, 3), (7500, 4), (11_500, 5)] {
            call.on_timer(hangup + at * MS, &mut out);
            assert_eq!(call.retransmissions.bye, expected, "at {at} ms");
        }
        out.clear();
        let bye_ok = response(&bye_bytes, 200, None);
        assert_eq!(
            call.on_response(hangup + 12 * 1000 * MS, &bye_ok, 1, &mut out),
            Progress::Ended
        );
        assert_eq!(call.outcome(), Some(&Outcome::Completed));
        assert!(call.is_done());
    }

    #[test]
    fn invite_without_answer_times_out_after_64_t1() {
        let t0 = Instant::now();
        let mut out = Vec::new();
        let mut call = Call::start(&setup(), t0, &mut out);
        let mut at = t0;
        let mut progress = Progress::Nothing;
        for _ in 0..10_000 {
            at += 20 * MS;
            progress = call.on_timer(at, &mut out);
            if progress == Progress::Ended {
                break;
            }
        }
        assert_eq!(progress, Progress::Ended);
        assert_eq!(call.outcome(), Some(&Outcome::InviteTimeout));
        assert_eq!(at.duration_since(t0), 32 * 1000 * MS);
        // Retransmissions at 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s.
        assert_eq!(call.retransmissions.invite, 6);
    }

    #[test]
    fn a_503_is_refused_with_its_retry_after_and_acked() {
        let t0 = Instant::now();
        let mut out = Vec::new();
        let mut call = Call::start(&setup(), t0, &mut out);
        let invite = out.remove(0);
        let mut busy = response(&invite, 503, None);
        busy.push_header("Retry-After", "30 (overloaded)");
        let busy = parse(&busy.to_bytes());
        assert_eq!(call.on_response(t0, &busy, 1, &mut out), Progress::Ended);
        assert_eq!(
            call.outcome(),
            Some(&Outcome::Refused {
                retry_after: Some(30)
            })
        );
        let ack = parse(&out.remove(0));
        assert_eq!(ack.method(), Some(&Method::Ack));
        assert_eq!(ack.top_via().unwrap().branch(), Some("z9hG4bK00000abc.7.1"));
        let not_found = response(&invite, 404, None);
        let mut other = Call::start(&setup(), t0, &mut out);
        other.on_response(t0, &not_found, 1, &mut out);
        assert_eq!(other.outcome(), Some(&Outcome::Failed(404)));
        assert_eq!(other.final_status(), Some(404));
    }

    #[test]
    fn the_server_hanging_up_first_is_answered_200() {
        let t0 = Instant::now();
        let mut out = Vec::new();
        let mut call = Call::start(&setup(), t0, &mut out);
        let invite = out.remove(0);
        call.on_response(t0, &response(&invite, 200, Some(ANSWER)), 1, &mut out);
        out.clear();
        let bye = format!(
            "BYE sip:load7@127.0.0.1:40000 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKs1\r\n\
             From: <sip:1000@127.0.0.1>;tag=srv1\r\nTo: <sip:load7@127.0.0.1>;tag=7x00000abc\r\n\
             Call-ID: {}\r\nCSeq: 5 BYE\r\nContent-Length: 0\r\n\r\n",
            call.call_id()
        );
        let bye = parse(bye.as_bytes());
        assert_eq!(call.on_request(&bye, &mut out), Progress::Ended);
        assert_eq!(call.outcome(), Some(&Outcome::HungUpByServer));
        let ok = parse(&out.remove(0));
        assert_eq!(ok.status(), Some(200));
        assert_eq!(ok.cseq().unwrap(), (5, Method::Bye));
        // Its retransmission is answered again and changes nothing.
        assert_eq!(call.on_request(&bye, &mut out), Progress::Nothing);
        assert_eq!(parse(&out.remove(0)).status(), Some(200));
    }

    #[test]
    fn an_unusable_answer_hangs_up_at_once() {
        let t0 = Instant::now();
        let mut out = Vec::new();
        let mut call = Call::start(&setup(), t0, &mut out);
        let invite = out.remove(0);
        let outside = ANSWER.replace("c=IN IP4 127.0.0.1", "c=IN IP4 198.51.100.1");
        let ok = response(&invite, 200, Some(&outside));
        assert_eq!(call.on_response(t0, &ok, 1, &mut out), Progress::Ended);
        assert!(
            matches!(call.outcome(), Some(Outcome::BadAnswer(reason)) if reason.contains("loopback"))
        );
        let sent: Vec<Option<Method>> = out.iter().map(|b| parse(b).method().cloned()).collect();
        assert_eq!(sent, [Some(Method::Ack), Some(Method::Bye)]);
        assert!(call.media.is_none());
    }

    #[test]
    fn contact_uris_are_extracted() {
        assert_eq!(
            contact_uri("<sip:a@b;transport=udp>;expires=3"),
            Some("sip:a@b;transport=udp")
        );
        assert_eq!(contact_uri("\"X\" <sip:a@b>"), Some("sip:a@b"));
        assert_eq!(contact_uri("sip:a@b;lr"), Some("sip:a@b"));
        assert_eq!(contact_uri("<>"), None);
    }
}
