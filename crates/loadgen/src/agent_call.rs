//! One call offered to a simulated agent, as a sans-IO UAS: 180 Ringing at once, 200 OK with
//! an SDP answer after the answer delay, retransmitted (T1 doubling to T2) until the ACK
//! arrives, and BYE or CANCEL answered. Its RTP is echoed by the driver.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use santral_sip::{Message, Method};

use crate::call::{Progress, SipTimers};
use crate::rtp::StreamReceiver;
use crate::sdp::{Offer, SdpError};

/// What a new offered call is told.
#[derive(Debug, Clone)]
pub struct AnswerSetup {
    /// The RTP address put in our answer (shared by many calls).
    pub local_rtp: SocketAddr,
    pub rtp_socket: usize,
    pub answer_after: Duration,
    pub timers: SipTimers,
    pub to_tag: String,
    /// Our Contact URI (the agent's registered contact).
    pub contact: String,
    pub session_id: u64,
}

/// How an offered call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentOutcome {
    /// Answered, then the server hung up.
    Completed,
    /// CANCELled before we answered.
    Cancelled,
    /// Our 200 OK never got its ACK (64·T1).
    AckTimeout,
    /// Still going when the run ended.
    Unfinished,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Ringing {
        answer_at: Instant,
    },
    AwaitingAck {
        retransmit_at: Instant,
        interval: Duration,
        give_up_at: Instant,
    },
    Confirmed,
    Done,
}

#[derive(Debug)]
pub struct AnsweringCall {
    invite: Message,
    to_tag: String,
    contact: String,
    answer_sdp: String,
    timers: SipTimers,
    phase: Phase,
    last_response: Vec<u8>,
    /// Where the server's RTP comes from (and our echo goes).
    pub remote_rtp: SocketAddr,
    pub rtp_socket: usize,
    pub receiver: StreamReceiver,
    pub echoed: u64,
    pub ok_retransmissions: u32,
    pub answered: bool,
    outcome: Option<AgentOutcome>,
}

impl AnsweringCall {
    /// A new INVITE to one of our agents: answers 180 (or 488 when the offer is unusable).
    pub fn offer(
        invite: &Message,
        setup: &AnswerSetup,
        now: Instant,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<AnsweringCall, SdpError> {
        let offer = match Offer::parse(&invite.body) {
            Ok(offer) => offer,
            Err(err) => {
                let mut refusal = Message::response_to(invite, 488, "Not Acceptable Here");
                refusal.set_to_tag(&setup.to_tag);
                refusal.push_header("Warning", format!("399 santral-load \"{err}\""));
                out.push(refusal.to_bytes());
                return Err(err);
            }
        };
        let mut call = AnsweringCall {
            invite: invite.clone(),
            to_tag: setup.to_tag.clone(),
            contact: setup.contact.clone(),
            answer_sdp: offer.answer(
                setup.local_rtp.ip(),
                setup.local_rtp.port(),
                setup.session_id,
            ),
            timers: setup.timers,
            phase: Phase::Ringing {
                answer_at: now + setup.answer_after,
            },
            last_response: Vec::new(),
            remote_rtp: offer.rtp,
            rtp_socket: setup.rtp_socket,
            receiver: StreamReceiver::default(),
            echoed: 0,
            ok_retransmissions: 0,
            answered: false,
            outcome: None,
        };
        call.last_response = call.response(180, "Ringing", false);
        out.push(call.last_response.clone());
        // An immediate answer needs no wait for the next timer pass.
        call.on_timer(now, out);
        Ok(call)
    }

    pub fn call_id(&self) -> &str {
        self.invite.call_id().unwrap_or_default()
    }

    pub fn outcome(&self) -> Option<AgentOutcome> {
        self.outcome
    }

    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    fn response(&self, code: u16, reason: &str, with_answer: bool) -> Vec<u8> {
        let mut response = Message::response_to(&self.invite, code, reason);
        response.set_to_tag(&self.to_tag);
        response.push_header("Contact", format!("<{}>", self.contact));
        if with_answer {
            response.push_header("Content-Type", "application/sdp");
            response.body = self.answer_sdp.clone().into_bytes().into();
        }
        response.to_bytes()
    }

    fn end(&mut self, outcome: AgentOutcome) -> Progress {
        self.phase = Phase::Done;
        self.outcome = Some(outcome);
        Progress::Ended
    }

    /// A request in this call (INVITE retransmission, ACK, BYE, CANCEL, …).
    pub fn on_request(&mut self, request: &Message, out: &mut Vec<Vec<u8>>) -> Progress {
        match request.method() {
            Some(Method::Invite) => {
                // Retransmitted INVITE: repeat our last response (§17.2.1).
                if !self.last_response.is_empty() && !self.answered {
                    out.push(self.last_response.clone());
                }
                Progress::Nothing
            }
            Some(Method::Ack) => {
                if let Phase::AwaitingAck { .. } = self.phase {
                    self.phase = Phase::Confirmed;
                }
                Progress::Nothing
            }
            Some(Method::Bye) => {
                out.push(Message::response_to(request, 200, "OK").to_bytes());
                match self.phase {
                    Phase::Done => Progress::Nothing,
                    _ => self.end(AgentOutcome::Completed),
                }
            }
            Some(Method::Cancel) => {
                out.push(Message::response_to(request, 200, "OK").to_bytes());
                if let Phase::Ringing { .. } = self.phase {
                    out.push(self.response(487, "Request Terminated", false));
                    return self.end(AgentOutcome::Cancelled);
                }
                Progress::Nothing
            }
            Some(Method::Options) | Some(Method::Info) | Some(Method::Notify) => {
                out.push(Message::response_to(request, 200, "OK").to_bytes());
                Progress::Nothing
            }
            _ => {
                out.push(Message::response_to(request, 501, "Not Implemented").to_bytes());
                Progress::Nothing
            }
        }
    }

    /// Answers when the delay is over; retransmits the 200 until its ACK.
    pub fn on_timer(&mut self, now: Instant, out: &mut Vec<Vec<u8>>) -> Progress {
        match self.phase {
            Phase::Ringing { answer_at } if now >= answer_at => {
                self.last_response = self.response(200, "OK", true);
                out.push(self.last_response.clone());
                self.answered = true;
                self.phase = Phase::AwaitingAck {
                    retransmit_at: now + self.timers.t1,
                    interval: self.timers.t1,
                    give_up_at: now + 64 * self.timers.t1,
                };
                Progress::Answered
            }
            Phase::AwaitingAck { give_up_at, .. } if now >= give_up_at => {
                self.end(AgentOutcome::AckTimeout)
            }
            Phase::AwaitingAck {
                retransmit_at,
                interval,
                give_up_at,
            } if now >= retransmit_at => {
                out.push(self.last_response.clone());
                self.ok_retransmissions += 1;
                let interval = (interval * 2).min(self.timers.t2);
                self.phase = Phase::AwaitingAck {
                    retransmit_at: now + interval,
                    interval,
                    give_up_at,
                };
                Progress::Nothing
            }
            _ => Progress::Nothing,
        }
    }

    /// The run is over: hang up an answered call without waiting, mark it unfinished.
    pub fn abandon(&mut self, out: &mut Vec<Vec<u8>>, local_via: &str) -> Progress {
        match self.phase {
            Phase::Done => Progress::Nothing,
            Phase::Confirmed | Phase::AwaitingAck { .. } => {
                if let Some(bye) = self.bye(local_via) {
                    out.push(bye);
                }
                self.end(AgentOutcome::Unfinished)
            }
            Phase::Ringing { .. } => {
                out.push(self.response(480, "Temporarily Unavailable", false));
                self.end(AgentOutcome::Unfinished)
            }
        }
    }

    /// A BYE from our side of the dialog (From/To swapped, to the caller's Contact).
    fn bye(&self, local_via: &str) -> Option<Vec<u8>> {
        let target = self
            .invite
            .contacts()
            .ok()?
            .into_iter()
            .find_map(|c| match c {
                santral_sip::msg::ContactValue::Addr(addr) => Some(addr.uri),
                santral_sip::msg::ContactValue::Star => None,
            })?;
        let mut bye = Message::request(Method::Bye, target);
        bye.push_header(
            "Via",
            format!("{local_via};branch=z9hG4bK{}", rand_branch(self.call_id())),
        );
        bye.push_header("Max-Forwards", "70");
        bye.push_header(
            "From",
            format!("{};tag={}", self.invite.header("To")?, self.to_tag),
        );
        bye.push_header("To", self.invite.header("From")?.to_owned());
        bye.push_header("Call-ID", self.call_id().to_owned());
        bye.push_header("CSeq", "1 BYE");
        Some(bye.to_bytes())
    }
}

/// A branch derived from the Call-ID (one BYE per call, so unique enough).
fn rand_branch(call_id: &str) -> String {
    let hash = call_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    format!("{hash:016x}bye")
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn setup(after: Duration) -> AnswerSetup {
        AnswerSetup {
            local_rtp: "127.0.0.1:41000".parse().unwrap(),
            rtp_socket: 0,
            answer_after: after,
            timers: SipTimers::default(),
            to_tag: "agt1".into(),
            contact: "sip:2001@127.0.0.1:41002".into(),
            session_id: 1,
        }
    }

    fn invite(sdp: &str) -> Message {
        let text = format!(
            "INVITE sip:2001@127.0.0.1:41002 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKsrv1\r\n\
             From: <sip:1000@127.0.0.1>;tag=srv\r\nTo: <sip:2001@127.0.0.1>\r\nCall-ID: leg-b-1\r\n\
             CSeq: 1 INVITE\r\nContact: <sip:santral@127.0.0.1:5060>\r\nContent-Type: application/sdp\r\n\
             Content-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        );
        Message::parse(text.as_bytes()).unwrap()
    }

    fn request(method: &str) -> Message {
        let text = format!(
            "{method} sip:2001@127.0.0.1:41002 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKsrv2\r\n\
             From: <sip:1000@127.0.0.1>;tag=srv\r\nTo: <sip:2001@127.0.0.1>;tag=agt1\r\nCall-ID: leg-b-1\r\n\
             CSeq: 2 {method}\r\nContent-Length: 0\r\n\r\n"
        );
        Message::parse(text.as_bytes()).unwrap()
    }

    const OFFER: &str = "v=0\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 12000 RTP/AVP 8 101\r\n\
                         a=rtpmap:101 telephone-event/8000\r\n";

    fn statuses(out: &[Vec<u8>]) -> Vec<u16> {
        out.iter()
            .map(|b| Message::parse(b).unwrap().status().unwrap_or(0))
            .collect()
    }

    #[test]
    fn rings_answers_after_the_delay_and_retransmits_200_until_ack() {
        let t0 = Instant::now();
        let mut out = Vec::new();
        let mut call =
            AnsweringCall::offer(&invite(OFFER), &setup(1000 * MS), t0, &mut out).unwrap();
        assert_eq!(statuses(&out), [180]);
        assert_eq!(call.remote_rtp, "127.0.0.1:12000".parse().unwrap());
        out.clear();
        assert_eq!(call.on_timer(t0 + 999 * MS, &mut out), Progress::Nothing);
        assert_eq!(call.on_timer(t0 + 1000 * MS, &mut out), Progress::Answered);
        let ok = Message::parse(&out[0]).unwrap();
        assert_eq!(ok.status(), Some(200));
        assert_eq!(ok.to_tag().as_deref(), Some("agt1"));
        let body = std::str::from_utf8(&ok.body).unwrap();
        assert!(body.contains("m=audio 41000 RTP/AVP 8 101"), "{body}");
        out.clear();
        // No ACK: 200 again at +500 ms and +1.5 s.
        call.on_timer(t0 + 1500 * MS, &mut out);
        call.on_timer(t0 + 2500 * MS, &mut out);
        assert_eq!(call.ok_retransmissions, 2);
        assert_eq!(statuses(&out), [200, 200]);
        out.clear();
        call.on_request(&request("ACK"), &mut out);
        call.on_timer(t0 + 10_000 * MS, &mut out);
        assert!(out.is_empty(), "no retransmission after the ACK");
        assert_eq!(call.on_request(&request("BYE"), &mut out), Progress::Ended);
        assert_eq!(statuses(&out), [200]);
        assert_eq!(call.outcome(), Some(AgentOutcome::Completed));
    }

    #[test]
    fn cancel_while_ringing_gets_200_and_487() {
        let t0 = Instant::now();
        let mut out = Vec::new();
        let mut call =
            AnsweringCall::offer(&invite(OFFER), &setup(5000 * MS), t0, &mut out).unwrap();
        out.clear();
        assert_eq!(
            call.on_request(&request("CANCEL"), &mut out),
            Progress::Ended
        );
        assert_eq!(statuses(&out), [200, 487]);
        assert_eq!(call.outcome(), Some(AgentOutcome::Cancelled));
    }

    #[test]
    fn an_unusable_offer_is_refused_488() {
        let mut out = Vec::new();
        let g722 = "v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 12000 RTP/AVP 9\r\n";
        let err =
            AnsweringCall::offer(&invite(g722), &setup(MS), Instant::now(), &mut out).unwrap_err();
        assert_eq!(err, SdpError::NoCommonCodec);
        assert_eq!(statuses(&out), [488]);
    }

    #[test]
    fn without_ack_the_call_gives_up_after_64_t1() {
        let t0 = Instant::now();
        let mut out = Vec::new();
        let mut call =
            AnsweringCall::offer(&invite(OFFER), &setup(Duration::ZERO), t0, &mut out).unwrap();
        assert_eq!(statuses(&out), [180, 200]);
        let mut at = t0;
        for _ in 0..5000 {
            at += 20 * MS;
            if call.on_timer(at, &mut out) == Progress::Ended {
                break;
            }
        }
        assert_eq!(call.outcome(), Some(AgentOutcome::AckTimeout));
        assert_eq!(at.duration_since(t0), 32_000 * MS);
    }

    #[test]
    fn abandoning_an_answered_call_sends_bye_to_the_caller_contact() {
        let t0 = Instant::now();
        let mut out = Vec::new();
        let mut call =
            AnsweringCall::offer(&invite(OFFER), &setup(Duration::ZERO), t0, &mut out).unwrap();
        call.on_request(&request("ACK"), &mut out);
        out.clear();
        call.abandon(&mut out, "SIP/2.0/UDP 127.0.0.1:41002;rport");
        let bye = Message::parse(&out[0]).unwrap();
        assert_eq!(bye.method(), Some(&Method::Bye));
        assert_eq!(bye.request_uri(), Some("sip:santral@127.0.0.1:5060"));
        assert_eq!(bye.from_tag().as_deref(), Some("agt1"));
        assert_eq!(bye.to_tag().as_deref(), Some("srv"));
        assert_eq!(call.outcome(), Some(AgentOutcome::Unfinished));
    }
}
