//! The client side, sans-IO: a registration that keeps itself refreshed, and an outgoing call
//! that answers digest challenges (401/407), can be cancelled, and ends with BYE. Both produce
//! requests for the application to send through the [`Endpoint`](crate::Endpoint) (or the
//! driver's handle) and consume the responses that come back. Used by the softphone and by the
//! server's calls to agents.

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::dialog::Dialog;
use crate::digest::{self, Challenge};
use crate::endpoint::new_tag;
use crate::msg::{ContactValue, Message, Method};

/// Who we are to a registrar or callee that challenges us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

fn random_hex() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Adds an Authorization (401) or Proxy-Authorization (407) header answering the challenge in
/// `response`. Returns false when the response has no usable challenge.
pub fn authorize(
    request: &mut Message,
    response: &Message,
    credentials: &Credentials,
    nc: u32,
) -> bool {
    let (challenge_header, answer_header) = match response.status() {
        Some(407) => ("Proxy-Authenticate", "Proxy-Authorization"),
        _ => ("WWW-Authenticate", "Authorization"),
    };
    // The server lists challenges by preference (RFC 8760 §2.4); take the first we understand.
    let Some(challenge) = response
        .header_all(challenge_header)
        .find_map(|h| Challenge::parse(h).ok())
    else {
        return false;
    };
    let method = request.method().map(|m| m.to_string()).unwrap_or_default();
    let uri = request.request_uri().unwrap_or_default().to_string();
    let answer = digest::answer(
        &challenge,
        &credentials.username,
        &credentials.password,
        &method,
        &uri,
        nc,
        &random_hex(),
    );
    request.remove_header(answer_header);
    request.push_header(answer_header, answer.to_string());
    true
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationConfig {
    /// Request-URI of the REGISTER, e.g. `sip:127.0.0.1:5060`.
    pub registrar_uri: String,
    /// Address of record, e.g. `sip:2001@127.0.0.1`.
    pub aor: String,
    /// Our Contact URI.
    pub contact: String,
    pub expires: u32,
    pub credentials: Credentials,
    /// Wait before retrying after a failure.
    pub retry_after: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistrationState {
    Idle,
    Registering,
    Registered { expires_at: Instant },
    Failed { status: u16 },
    Unregistered,
}

/// What a response did to the registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrationEvent {
    /// Send this request (the challenge answer) now.
    Send(Message),
    Registered {
        expires: u32,
    },
    Unregistered,
    Failed {
        status: u16,
    },
    /// A provisional response or one for an older request.
    Ignored,
}

/// A REGISTER binding kept alive: refreshed at 80 % of the granted time, retried after failure.
#[derive(Debug)]
pub struct Registration {
    config: RegistrationConfig,
    call_id: String,
    from_tag: String,
    cseq: u32,
    state: RegistrationState,
    next_send: Option<Instant>,
    auth_attempts: u32,
    unregistering: bool,
}

impl Registration {
    pub fn new(config: RegistrationConfig, now: Instant) -> Registration {
        Registration {
            call_id: format!("{}@santral", random_hex()),
            from_tag: new_tag(),
            cseq: 0,
            state: RegistrationState::Idle,
            next_send: Some(now),
            auth_attempts: 0,
            unregistering: false,
            config,
        }
    }

    pub fn state(&self) -> RegistrationState {
        self.state
    }

    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// When [`Registration::poll_request`] next has something to send.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_send
    }

    fn build(&mut self, expires: u32) -> Message {
        self.cseq += 1;
        let mut request = Message::request(Method::Register, self.config.registrar_uri.clone());
        request.push_header(
            "From",
            format!("<{}>;tag={}", self.config.aor, self.from_tag),
        );
        request.push_header("To", format!("<{}>", self.config.aor));
        request.push_header("Call-ID", self.call_id.clone());
        request.push_header("CSeq", format!("{} REGISTER", self.cseq));
        request.push_header("Contact", format!("<{}>", self.config.contact));
        request.push_header("Expires", expires.to_string());
        request
    }

    /// The REGISTER to send now (initial, refresh or retry), if one is due.
    pub fn poll_request(&mut self, now: Instant) -> Option<Message> {
        if self.next_send.is_some_and(|at| at <= now) {
            self.next_send = None;
            self.auth_attempts = 0;
            self.state = RegistrationState::Registering;
            let expires = self.config.expires;
            return Some(self.build(expires));
        }
        None
    }

    /// Removes our binding (Expires: 0); stops refreshing.
    pub fn unregister(&mut self) -> Message {
        self.unregistering = true;
        self.next_send = None;
        self.auth_attempts = 0;
        self.build(0)
    }

    /// Timer B/F or a transport error for our REGISTER.
    pub fn handle_failure(&mut self, now: Instant) {
        self.state = RegistrationState::Failed { status: 408 };
        if !self.unregistering {
            self.next_send = Some(now + self.config.retry_after);
        }
    }

    pub fn handle_response(
        &mut self,
        now: Instant,
        request: &Message,
        response: &Message,
    ) -> RegistrationEvent {
        let Some(code) = response.status() else {
            return RegistrationEvent::Ignored;
        };
        if code < 200 || response.cseq().map(|(n, _)| n).ok() != Some(self.cseq) {
            return RegistrationEvent::Ignored;
        }
        match code {
            200..=299 => {
                if self.unregistering {
                    self.state = RegistrationState::Unregistered;
                    return RegistrationEvent::Unregistered;
                }
                let granted = granted_expires(response, &self.config.contact)
                    .unwrap_or(self.config.expires)
                    .max(1);
                self.state = RegistrationState::Registered {
                    expires_at: now + Duration::from_secs(granted as u64),
                };
                // Refresh at 80 % of the granted time.
                self.next_send = Some(now + Duration::from_millis(granted as u64 * 800));
                RegistrationEvent::Registered { expires: granted }
            }
            401 | 407 if self.auth_attempts < 2 => {
                self.auth_attempts += 1;
                let mut next = request.clone();
                next.remove_header("Via");
                self.cseq += 1;
                next.set_header("CSeq", format!("{} REGISTER", self.cseq));
                if authorize(&mut next, response, &self.config.credentials, 1) {
                    RegistrationEvent::Send(next)
                } else {
                    self.fail(now, code)
                }
            }
            423 => {
                // Interval too brief: use the registrar's minimum.
                if let Some(min) = response
                    .header("Min-Expires")
                    .and_then(|v| v.trim().parse::<u32>().ok())
                {
                    self.config.expires = min;
                    self.next_send = Some(now);
                }
                RegistrationEvent::Failed { status: 423 }
            }
            _ => self.fail(now, code),
        }
    }

    fn fail(&mut self, now: Instant, status: u16) -> RegistrationEvent {
        self.state = RegistrationState::Failed { status };
        if !self.unregistering {
            self.next_send = Some(now + self.config.retry_after);
        }
        RegistrationEvent::Failed { status }
    }
}

/// The expiry the registrar granted our contact (Contact `expires` param, else Expires).
fn granted_expires(response: &Message, contact: &str) -> Option<u32> {
    let from_contact = response.contacts().ok().and_then(|contacts| {
        contacts.into_iter().find_map(|c| match c {
            ContactValue::Addr(a) if a.uri.eq_ignore_ascii_case(contact) => a
                .param("expires")
                .flatten()
                .and_then(|e| e.parse::<u32>().ok()),
            _ => None,
        })
    });
    from_contact.or_else(|| response.expires().ok().flatten())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallConfig {
    /// Request-URI, e.g. `sip:2001@127.0.0.5:5080`.
    pub target: String,
    /// Our From, e.g. `sip:santral@127.0.0.1`.
    pub from: String,
    /// To (usually the target without parameters).
    pub to: String,
    pub contact: String,
    pub sdp: Option<Bytes>,
    pub credentials: Option<Credentials>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallState {
    Calling,
    Early,
    Established,
    Cancelling,
    Ended,
}

#[derive(Debug, Clone)]
pub enum CallEvent {
    /// Send this INVITE (the challenge answer) as a new transaction.
    Resend(Message),
    /// 1xx: progress, with the early dialog when the response had a To tag.
    Progress { status: u16 },
    /// 2xx: the call is up. Send `ack` statelessly to the dialog's next hop.
    Answered { ack: Message, sdp: Bytes },
    /// A retransmitted 2xx: send the same ACK again.
    AckAgain(Message),
    /// Final failure (3xx–6xx, or 487 after CANCEL).
    Failed { status: u16 },
}

/// One outgoing INVITE session (UAC).
#[derive(Debug)]
pub struct OutgoingCall {
    config: CallConfig,
    invite: Message,
    state: CallState,
    auth_attempts: u32,
    dialog: Option<Dialog>,
    ack: Option<Message>,
}

impl OutgoingCall {
    /// The call and its first INVITE (without Via; the endpoint adds it).
    pub fn new(config: CallConfig) -> (OutgoingCall, Message) {
        let mut invite = Message::request(Method::Invite, config.target.clone());
        invite.push_header("From", format!("<{}>;tag={}", config.from, new_tag()));
        invite.push_header("To", format!("<{}>", config.to));
        invite.push_header("Call-ID", format!("{}@santral", random_hex()));
        invite.push_header("CSeq", "1 INVITE");
        invite.push_header("Contact", format!("<{}>", config.contact));
        invite.push_header("Allow", crate::registrar::ALLOW);
        if let Some(sdp) = &config.sdp {
            invite.push_header("Content-Type", "application/sdp");
            invite.body = sdp.clone();
        }
        let call = OutgoingCall {
            invite: invite.clone(),
            config,
            state: CallState::Calling,
            auth_attempts: 0,
            dialog: None,
            ack: None,
        };
        (call, invite)
    }

    pub fn state(&self) -> CallState {
        self.state
    }

    pub fn call_id(&self) -> &str {
        self.invite.call_id().unwrap_or_default()
    }

    pub fn dialog(&self) -> Option<&Dialog> {
        self.dialog.as_ref()
    }

    pub fn dialog_mut(&mut self) -> Option<&mut Dialog> {
        self.dialog.as_mut()
    }

    /// Marks the call as being cancelled; the application sends the CANCEL with
    /// [`Endpoint::send_cancel`](crate::Endpoint::send_cancel) on the INVITE transaction.
    pub fn cancel(&mut self) -> bool {
        if matches!(self.state, CallState::Calling | CallState::Early) {
            self.state = CallState::Cancelling;
            true
        } else {
            false
        }
    }

    /// BYE for an established call.
    pub fn bye(&mut self) -> Option<Message> {
        if self.state != CallState::Established {
            return None;
        }
        self.state = CallState::Ended;
        self.dialog.as_mut().map(|d| d.request(Method::Bye))
    }

    /// The peer hung up (BYE in our dialog).
    pub fn remote_bye(&mut self) {
        self.state = CallState::Ended;
    }

    /// A response on our INVITE. `sent` is the INVITE as sent (with Via), from
    /// [`Endpoint::transaction_request`](crate::Endpoint::transaction_request).
    pub fn handle_response(&mut self, sent: &Message, response: &Message) -> Option<CallEvent> {
        let code = response.status()?;
        match code {
            100..=199 => {
                if code > 100 && response.to_tag().is_some() && self.dialog.is_none() {
                    self.dialog = Dialog::from_uac(sent, response, &self.config.contact).ok();
                    if self.state == CallState::Calling {
                        self.state = CallState::Early;
                    }
                }
                Some(CallEvent::Progress { status: code })
            }
            200..=299 => {
                if self.state == CallState::Established || self.state == CallState::Ended {
                    return self.ack.clone().map(CallEvent::AckAgain);
                }
                let same_dialog = self.dialog.as_ref().is_some_and(|d| {
                    response.to_tag().as_deref() == Some(d.id.remote_tag.as_str())
                });
                if same_dialog {
                    if let Some(d) = self.dialog.as_mut() {
                        d.update_from_response(response);
                    }
                } else {
                    self.dialog = Dialog::from_uac(sent, response, &self.config.contact).ok();
                }
                let dialog = self.dialog.as_ref()?;
                let seq = sent.cseq().map(|(n, _)| n).unwrap_or(1);
                let ack = dialog.ack(seq);
                self.ack = Some(ack.clone());
                // A 2xx after we asked to cancel still establishes the call (RFC 3261 §9.1);
                // the caller then hangs up with BYE.
                self.state = CallState::Established;
                Some(CallEvent::Answered {
                    ack,
                    sdp: response.body.clone(),
                })
            }
            401 | 407
                if self.auth_attempts < 2
                    && self.config.credentials.is_some()
                    && self.state != CallState::Cancelling =>
            {
                self.auth_attempts += 1;
                let credentials = self.config.credentials.clone()?;
                let mut next = self.invite.clone();
                let seq = sent.cseq().map(|(n, _)| n).unwrap_or(1) + 1;
                next.set_header("CSeq", format!("{seq} INVITE"));
                if !authorize(&mut next, response, &credentials, 1) {
                    self.state = CallState::Ended;
                    return Some(CallEvent::Failed { status: code });
                }
                self.invite = next.clone();
                self.dialog = None;
                self.state = CallState::Calling;
                Some(CallEvent::Resend(next))
            }
            _ => {
                self.state = CallState::Ended;
                Some(CallEvent::Failed { status: code })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Algorithm;
    use crate::registrar::{Registrar, RegistrarConfig};
    use crate::transport::{Peer, TransportKind};

    fn creds() -> Credentials {
        Credentials {
            username: "2001".into(),
            password: "secret2001".into(),
        }
    }

    /// Stamps a Via, as the endpoint would, and re-parses (what the server sees).
    fn on_wire(mut m: Message, branch: &str) -> Message {
        m.prepend_header("Via", format!("SIP/2.0/UDP 127.0.0.5:5080;branch={branch}"));
        m.push_header("Max-Forwards", "70");
        Message::parse(&m.to_bytes()).unwrap()
    }

    #[test]
    fn registration_answers_challenge_and_refreshes_at_80_percent() {
        for algorithm in [Algorithm::Md5, Algorithm::Sha256] {
            let mut registrar = Registrar::new(
                RegistrarConfig {
                    algorithms: vec![algorithm],
                    ..RegistrarConfig::default()
                },
                [("2001".to_string(), "secret2001".to_string())],
            );
            let peer = Peer {
                transport: TransportKind::Udp,
                local: "127.0.0.1:5060".parse().unwrap(),
                remote: "127.0.0.5:5080".parse().unwrap(),
            };
            let t0 = Instant::now();
            let mut reg = Registration::new(
                RegistrationConfig {
                    registrar_uri: "sip:127.0.0.1".into(),
                    aor: "sip:2001@127.0.0.1".into(),
                    contact: "sip:2001@127.0.0.5:5080".into(),
                    expires: 300,
                    credentials: creds(),
                    retry_after: Duration::from_secs(30),
                },
                t0,
            );
            let first = on_wire(reg.poll_request(t0).unwrap(), "z9hG4bK1");
            let challenge = registrar.handle_register(t0, &first, peer).response;
            let RegistrationEvent::Send(second) = reg.handle_response(t0, &first, &challenge)
            else {
                panic!("expected a challenge answer");
            };
            let second = on_wire(second, "z9hG4bK2");
            let ok = registrar.handle_register(t0, &second, peer).response;
            assert_eq!(ok.status(), Some(200));
            assert_eq!(
                reg.handle_response(t0, &second, &ok),
                RegistrationEvent::Registered { expires: 300 }
            );
            assert_eq!(registrar.contacts(t0, "2001").len(), 1);
            assert_eq!(reg.poll_timeout(), Some(t0 + Duration::from_secs(240)));
            assert!(reg.poll_request(t0 + Duration::from_secs(239)).is_none());
            let refresh = reg.poll_request(t0 + Duration::from_secs(240)).unwrap();
            assert_eq!(refresh.cseq().unwrap().0, 3);
            assert_eq!(refresh.call_id(), first.call_id());
            let bye = on_wire(reg.unregister(), "z9hG4bK9");
            assert_eq!(bye.expires().unwrap(), Some(0));
        }
    }

    #[test]
    fn wrong_password_fails_after_two_attempts() {
        let mut registrar = Registrar::new(
            RegistrarConfig::default(),
            [("2001".to_string(), "other".to_string())],
        );
        let peer = Peer {
            transport: TransportKind::Udp,
            local: "127.0.0.1:5060".parse().unwrap(),
            remote: "127.0.0.5:5080".parse().unwrap(),
        };
        let t0 = Instant::now();
        let mut reg = Registration::new(
            RegistrationConfig {
                registrar_uri: "sip:127.0.0.1".into(),
                aor: "sip:2001@127.0.0.1".into(),
                contact: "sip:2001@127.0.0.5:5080".into(),
                expires: 300,
                credentials: creds(),
                retry_after: Duration::from_secs(30),
            },
            t0,
        );
        let mut request = on_wire(reg.poll_request(t0).unwrap(), "z9hG4bKa");
        let mut last = RegistrationEvent::Ignored;
        for i in 0..3 {
            let response = registrar.handle_register(t0, &request, peer).response;
            last = reg.handle_response(t0, &request, &response);
            if let RegistrationEvent::Send(next) = &last {
                request = on_wire(next.clone(), &format!("z9hG4bKb{i}"));
            }
        }
        assert_eq!(last, RegistrationEvent::Failed { status: 401 });
        assert_eq!(reg.poll_timeout(), Some(t0 + Duration::from_secs(30)));
    }

    #[test]
    fn outgoing_call_answers_407_then_establishes_and_byes() {
        let (mut call, invite) = OutgoingCall::new(CallConfig {
            target: "sip:2001@127.0.0.5:5080".into(),
            from: "sip:santral@127.0.0.1".into(),
            to: "sip:2001@127.0.0.5".into(),
            contact: "sip:santral@127.0.0.1:5060".into(),
            sdp: Some(Bytes::from_static(b"v=0\r\n")),
            credentials: Some(creds()),
        });
        let sent = on_wire(invite, "z9hG4bKc1");
        let mut challenge = Message::response_to(&sent, 407, "Proxy Authentication Required");
        challenge.set_to_tag("x");
        challenge.push_header(
            "Proxy-Authenticate",
            "Digest realm=\"pbx\", nonce=\"n1\", algorithm=MD5, qop=\"auth\"",
        );
        let Some(CallEvent::Resend(again)) = call.handle_response(&sent, &challenge) else {
            panic!("expected a resend");
        };
        let again = on_wire(again, "z9hG4bKc2");
        assert_eq!(again.cseq().unwrap(), (2, Method::Invite));
        let auth = crate::digest::Credentials::parse(again.header("Proxy-Authorization").unwrap())
            .unwrap();
        assert!(auth.verify("INVITE", "secret2001"));
        assert_eq!(auth.uri, "sip:2001@127.0.0.5:5080");

        let mut ringing = Message::response_to(&again, 180, "Ringing");
        ringing.set_to_tag("callee");
        ringing.push_header("Contact", "<sip:2001@127.0.0.5:5080>");
        assert!(matches!(
            call.handle_response(&again, &ringing),
            Some(CallEvent::Progress { status: 180 })
        ));
        assert_eq!(call.state(), CallState::Early);
        let mut ok = ringing.clone();
        ok.start = crate::msg::StartLine::Response {
            code: 200,
            reason: "OK".into(),
        };
        ok.body = Bytes::from_static(b"v=0\r\n");
        let Some(CallEvent::Answered { ack, sdp }) = call.handle_response(&again, &ok) else {
            panic!("expected answer");
        };
        assert_eq!(&sdp[..], b"v=0\r\n");
        assert_eq!(ack.cseq().unwrap(), (2, Method::Ack));
        assert_eq!(ack.request_uri(), Some("sip:2001@127.0.0.5:5080"));
        assert!(matches!(
            call.handle_response(&again, &ok),
            Some(CallEvent::AckAgain(_))
        ));
        let bye = call.bye().unwrap();
        assert_eq!(bye.cseq().unwrap(), (3, Method::Bye));
        assert_eq!(bye.to_tag().as_deref(), Some("callee"));
        assert_eq!(call.state(), CallState::Ended);
    }

    #[test]
    fn cancelled_call_ends_with_487() {
        let (mut call, invite) = OutgoingCall::new(CallConfig {
            target: "sip:2001@127.0.0.5:5080".into(),
            from: "sip:santral@127.0.0.1".into(),
            to: "sip:2001@127.0.0.5".into(),
            contact: "sip:santral@127.0.0.1:5060".into(),
            sdp: None,
            credentials: None,
        });
        let sent = on_wire(invite, "z9hG4bKx");
        assert!(call.cancel());
        assert_eq!(call.state(), CallState::Cancelling);
        let mut terminated = Message::response_to(&sent, 487, "Request Terminated");
        terminated.set_to_tag("t");
        assert!(matches!(
            call.handle_response(&sent, &terminated),
            Some(CallEvent::Failed { status: 487 })
        ));
        assert_eq!(call.state(), CallState::Ended);
    }
}
