//! SIP dialogs (RFC 3261 §12): identifiers, CSeq spaces, route set, remote target, early and
//! confirmed states, and the in-dialog requests a call needs (BYE, re-INVITE, INFO, REFER,
//! NOTIFY, ACK for 2xx).

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;

use crate::msg::{Message, Method, NameAddr, ParseError};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DialogId {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
}

impl DialogId {
    /// The dialog an incoming in-dialog request belongs to, from our side (To tag is ours).
    pub fn of_incoming_request(request: &Message) -> Option<DialogId> {
        Some(DialogId {
            call_id: request.call_id()?.to_string(),
            local_tag: request.to_tag()?,
            remote_tag: request.from_tag()?,
        })
    }

    /// The dialog a response to one of our requests belongs to (From tag is ours).
    pub fn of_response(response: &Message) -> Option<DialogId> {
        Some(DialogId {
            call_id: response.call_id()?.to_string(),
            local_tag: response.from_tag()?,
            remote_tag: response.to_tag()?,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Uac,
    Uas,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialogState {
    /// Created by a provisional response with a To tag.
    Early,
    Confirmed,
    Terminated,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialogError {
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error("message cannot create a dialog: {0}")]
    NotDialogCreating(&'static str),
    #[error("in-dialog request out of order (CSeq {got} after {last})")]
    OutOfOrder { got: u32, last: u32 },
    #[error("request does not belong to this dialog")]
    Mismatch,
}

impl DialogError {
    /// The response status a UAS gives for this error.
    pub fn status(&self) -> u16 {
        match self {
            DialogError::OutOfOrder { .. } => 500,
            DialogError::Mismatch => 481,
            _ => 400,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Dialog {
    pub id: DialogId,
    pub role: Role,
    pub state: DialogState,
    /// Our URI (From of our requests) and the peer's (To of our requests).
    pub local_uri: NameAddr,
    pub remote_uri: NameAddr,
    pub local_seq: u32,
    pub remote_seq: Option<u32>,
    pub remote_target: String,
    /// Route set in the order our requests carry it.
    pub route_set: Vec<String>,
    /// Our Contact, sent in target-refresh requests and dialog-creating responses.
    pub local_contact: String,
    pub span: tracing::Span,
}

fn contact_uri(message: &Message) -> Option<String> {
    message.contacts().ok()?.into_iter().find_map(|c| match c {
        crate::msg::ContactValue::Addr(a) => Some(a.uri),
        crate::msg::ContactValue::Star => None,
    })
}

fn without_tag(mut addr: NameAddr) -> NameAddr {
    addr.params.retain(|(n, _)| !n.eq_ignore_ascii_case("tag"));
    addr
}

impl Dialog {
    /// UAC side: our INVITE (as sent) and a response with a To tag (18x or 2xx).
    pub fn from_uac(
        request: &Message,
        response: &Message,
        local_contact: &str,
    ) -> Result<Dialog, DialogError> {
        let code = response
            .status()
            .ok_or(DialogError::NotDialogCreating("not a response"))?;
        if !(101..300).contains(&code) {
            return Err(DialogError::NotDialogCreating("status"));
        }
        let remote_tag = response
            .to_tag()
            .ok_or(DialogError::NotDialogCreating("no To tag"))?;
        let local_tag = request
            .from_tag()
            .ok_or(DialogError::NotDialogCreating("no From tag"))?;
        let call_id = request
            .call_id()
            .ok_or(ParseError::Missing("Call-ID"))?
            .to_string();
        let mut route_set = response.header_entries("Record-Route");
        route_set.reverse();
        let remote_target = contact_uri(response)
            .unwrap_or_else(|| request.request_uri().unwrap_or_default().to_string());
        let span = tracing::info_span!("sip_dialog", call_id = %call_id, role = "uac");
        Ok(Dialog {
            id: DialogId {
                call_id,
                local_tag,
                remote_tag,
            },
            role: Role::Uac,
            state: if code < 200 {
                DialogState::Early
            } else {
                DialogState::Confirmed
            },
            local_uri: without_tag(request.from()?),
            remote_uri: without_tag(response.to()?),
            local_seq: request.cseq()?.0,
            remote_seq: None,
            remote_target,
            route_set,
            local_contact: local_contact.to_string(),
            span,
        })
    }

    /// UAS side: the dialog-creating request and the tag we put in To.
    pub fn from_uas(
        request: &Message,
        local_tag: &str,
        local_contact: &str,
    ) -> Result<Dialog, DialogError> {
        let remote_tag = request
            .from_tag()
            .ok_or(DialogError::NotDialogCreating("no From tag"))?;
        let call_id = request
            .call_id()
            .ok_or(ParseError::Missing("Call-ID"))?
            .to_string();
        let remote_target =
            contact_uri(request).ok_or(DialogError::NotDialogCreating("no Contact"))?;
        let span = tracing::info_span!("sip_dialog", call_id = %call_id, role = "uas");
        Ok(Dialog {
            id: DialogId {
                call_id,
                local_tag: local_tag.to_string(),
                remote_tag,
            },
            role: Role::Uas,
            state: DialogState::Early,
            local_uri: without_tag(request.to()?),
            remote_uri: without_tag(request.from()?),
            local_seq: 0,
            remote_seq: Some(request.cseq()?.0),
            remote_target,
            route_set: request.header_entries("Record-Route"),
            local_contact: local_contact.to_string(),
            span,
        })
    }

    /// A UAS response within this dialog: To tag, Contact, Record-Route copied (RFC 3261 §12.1.1).
    pub fn response(&mut self, request: &Message, code: u16, reason: &str) -> Message {
        let mut response = Message::response_to(request, code, reason);
        response.set_to_tag(&self.id.local_tag);
        if (101..300).contains(&code) {
            for rr in request.header_all("Record-Route") {
                response.push_header("Record-Route", rr);
            }
            response.push_header("Contact", format!("<{}>", self.local_contact));
        }
        if (200..300).contains(&code) && request.method() == Some(&Method::Invite) {
            self.state = DialogState::Confirmed;
        }
        response
    }

    /// UAC: a later response on the dialog-creating INVITE (18x → 2xx, target refresh).
    pub fn update_from_response(&mut self, response: &Message) {
        if let Some(code) = response.status() {
            if (200..300).contains(&code) {
                self.state = DialogState::Confirmed;
                let mut rr = response.header_entries("Record-Route");
                rr.reverse();
                self.route_set = rr;
            }
            if code < 300
                && let Some(target) = contact_uri(response)
            {
                self.remote_target = target;
            }
        }
    }

    /// Does this in-dialog message belong here? (Call-ID and both tags.)
    pub fn matches(&self, message: &Message) -> bool {
        let (local, remote) = if message.is_request() {
            (message.to_tag(), message.from_tag())
        } else {
            (message.from_tag(), message.to_tag())
        };
        message.call_id() == Some(self.id.call_id.as_str())
            && local.as_deref() == Some(self.id.local_tag.as_str())
            && remote.as_deref() == Some(self.id.remote_tag.as_str())
    }

    /// Checks an incoming in-dialog request: ours, and in CSeq order (RFC 3261 §12.2.2).
    /// Target-refresh requests (re-INVITE, UPDATE) update the remote target.
    pub fn handle_request(&mut self, request: &Message) -> Result<(), DialogError> {
        if !self.matches(request) {
            return Err(DialogError::Mismatch);
        }
        let (seq, method) = request.cseq()?;
        if method != Method::Ack && method != Method::Cancel {
            if let Some(last) = self.remote_seq
                && seq <= last
            {
                return Err(DialogError::OutOfOrder { got: seq, last });
            }
            self.remote_seq = Some(seq);
        }
        if matches!(method, Method::Invite | Method::Update)
            && let Some(target) = contact_uri(request)
        {
            self.remote_target = target;
        }
        if method == Method::Bye {
            self.state = DialogState::Terminated;
        }
        Ok(())
    }

    fn base_request(&self, method: Method, seq: u32) -> Message {
        // Loose routing unless the first route lacks ;lr (strict router, RFC 3261 §12.2.1.1).
        let first_is_strict = self
            .route_set
            .first()
            .and_then(|r| NameAddr::parse(r).ok())
            .is_some_and(|r| !r.uri.to_ascii_lowercase().contains(";lr"));
        let (uri, routes): (String, Vec<String>) = if first_is_strict {
            let first = self
                .route_set
                .first()
                .and_then(|r| NameAddr::parse(r).ok())
                .map(|r| r.uri)
                .unwrap_or_default();
            let mut rest: Vec<String> = self.route_set.iter().skip(1).cloned().collect();
            rest.push(format!("<{}>", self.remote_target));
            (first, rest)
        } else {
            (self.remote_target.clone(), self.route_set.clone())
        };
        let mut request = Message::request(method.clone(), uri);
        for route in routes {
            request.push_header("Route", route);
        }
        let mut from = self.local_uri.clone();
        from.set_param("tag", Some(&self.id.local_tag));
        let mut to = self.remote_uri.clone();
        to.set_param("tag", Some(&self.id.remote_tag));
        request.push_header("From", from.to_string());
        request.push_header("To", to.to_string());
        request.push_header("Call-ID", self.id.call_id.clone());
        request.push_header("CSeq", format!("{seq} {method}"));
        if matches!(
            method,
            Method::Invite | Method::Update | Method::Refer | Method::Notify | Method::Subscribe
        ) {
            request.push_header("Contact", format!("<{}>", self.local_contact));
        }
        request
    }

    /// A new in-dialog request with the next local CSeq (BYE, re-INVITE, INFO, …).
    pub fn request(&mut self, method: Method) -> Message {
        self.local_seq = self.local_seq.saturating_add(1);
        if method == Method::Bye {
            self.state = DialogState::Terminated;
        }
        self.base_request(method, self.local_seq)
    }

    /// re-INVITE with a new offer (hold: `a=sendonly`; resume: `a=sendrecv`).
    pub fn reinvite(&mut self, sdp: Bytes) -> Message {
        let mut request = self.request(Method::Invite);
        request.push_header("Content-Type", "application/sdp");
        request.body = sdp;
        request
    }

    /// INFO carrying e.g. `application/dtmf-relay`.
    pub fn info(&mut self, content_type: &str, body: Bytes) -> Message {
        let mut request = self.request(Method::Info);
        request.push_header("Content-Type", content_type);
        request.body = body;
        request
    }

    /// REFER (RFC 3515) to transfer the peer to `target`.
    pub fn refer(&mut self, target: &str) -> Message {
        let mut request = self.request(Method::Refer);
        request.push_header("Refer-To", format!("<{target}>"));
        request
    }

    /// NOTIFY reporting REFER progress as a sipfrag status line (RFC 3515 §2.4.5).
    pub fn notify_refer(&mut self, status: u16, reason: &str, terminated: bool) -> Message {
        let mut request = self.request(Method::Notify);
        request.push_header("Event", "refer");
        request.push_header(
            "Subscription-State",
            if terminated {
                "terminated;reason=noresource"
            } else {
                "active;expires=60"
            },
        );
        request.push_header("Content-Type", "message/sipfrag;version=2.0");
        request.body = Bytes::from(format!("SIP/2.0 {status} {reason}\r\n"));
        request
    }

    /// ACK for a 2xx to the INVITE with CSeq `invite_seq` (its own transaction, RFC 3261 §13.2.2.4).
    pub fn ack(&self, invite_seq: u32) -> Message {
        self.base_request(Method::Ack, invite_seq)
    }

    /// Where the next request goes: the first route if any, else the remote target.
    pub fn next_hop(&self) -> Option<SocketAddr> {
        let uri = match self.route_set.first() {
            Some(route) => NameAddr::parse(route).ok()?.uri,
            None => self.remote_target.clone(),
        };
        uri_socket_addr(&uri)
    }
}

/// The socket address of a `sip:` URI with a numeric host (port 5060 when absent).
pub fn uri_socket_addr(uri: &str) -> Option<SocketAddr> {
    let rest = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))?;
    let host_part = rest.rsplit_once('@').map(|(_, h)| h).unwrap_or(rest);
    let host_port = host_part.split([';', '?']).next().unwrap_or(host_part);
    if let Some(v6) = host_port.strip_prefix('[') {
        let (ip, after) = v6.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None => 5060,
        };
        return Some(SocketAddr::new(ip.parse().ok()?, port));
    }
    let (host, port) = match host_port.split_once(':') {
        Some((h, p)) => (h, p.parse().ok()?),
        None => (host_port, 5060),
    };
    Some(SocketAddr::new(host.parse::<IpAddr>().ok()?, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invite() -> Message {
        Message::parse(
            b"INVITE sip:2001@127.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.2:5070;branch=z9hG4bKd1\r\n\
Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.2>;tag=remote1\r\nTo: <sip:2001@127.0.0.1>\r\n\
Call-ID: dlg@127.0.0.2\r\nCSeq: 10 INVITE\r\nContact: <sip:alice@127.0.0.2:5070>\r\n\
Record-Route: <sip:127.0.0.9;lr>, <sip:127.0.0.8;lr>\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap()
    }

    #[test]
    fn uas_dialog_routes_and_sequences() {
        let req = invite();
        let mut d = Dialog::from_uas(&req, "local1", "sip:2001@127.0.0.1:5060").unwrap();
        let ok = d.response(&req, 200, "OK");
        assert_eq!(ok.to_tag().as_deref(), Some("local1"));
        assert_eq!(ok.header_entries("Record-Route").len(), 2);
        assert_eq!(d.state, DialogState::Confirmed);
        let bye = d.request(Method::Bye);
        assert_eq!(DialogId::of_response(&bye), Some(d.id.clone()));
        assert_eq!(bye.request_uri(), Some("sip:alice@127.0.0.2:5070"));
        assert_eq!(
            bye.header_entries("Route"),
            vec!["<sip:127.0.0.9;lr>", "<sip:127.0.0.8;lr>"]
        );
        assert_eq!(bye.from_tag().as_deref(), Some("local1"));
        assert_eq!(bye.to_tag().as_deref(), Some("remote1"));
        assert_eq!(bye.cseq().unwrap(), (1, Method::Bye));
        assert_eq!(d.next_hop(), Some("127.0.0.9:5060".parse().unwrap()));
    }

    #[test]
    fn in_dialog_requests_are_checked_for_order_and_refresh_target() {
        let req = invite();
        let mut d = Dialog::from_uas(&req, "local1", "sip:2001@127.0.0.1").unwrap();
        let text = String::from_utf8(req.to_bytes()).unwrap();
        let reinvite = text
            .replace(
                "To: <sip:2001@127.0.0.1>",
                "To: <sip:2001@127.0.0.1>;tag=local1",
            )
            .replace("CSeq: 10 INVITE", "CSeq: 11 INVITE")
            .replace(
                "Contact: <sip:alice@127.0.0.2:5070>",
                "Contact: <sip:alice@127.0.0.3:5071>",
            );
        let reinvite = Message::parse(reinvite.as_bytes()).unwrap();
        d.handle_request(&reinvite).unwrap();
        assert_eq!(d.remote_target, "sip:alice@127.0.0.3:5071");
        assert_eq!(d.handle_request(&reinvite).unwrap_err().status(), 500);
        let stranger = text.replace("tag=remote1", "tag=other");
        let stranger = Message::parse(stranger.as_bytes()).unwrap();
        assert_eq!(d.handle_request(&stranger).unwrap_err().status(), 481);
    }

    #[test]
    fn uac_dialog_from_early_then_confirmed_and_ack() {
        let mut req = Message::request(Method::Invite, "sip:2001@127.0.0.1");
        req.push_header("Via", "SIP/2.0/UDP 127.0.0.2:5070;branch=z9hG4bKu");
        req.push_header("From", "<sip:alice@127.0.0.2>;tag=mine");
        req.push_header("To", "<sip:2001@127.0.0.1>");
        req.push_header("Call-ID", "uac@127.0.0.2");
        req.push_header("CSeq", "5 INVITE");
        let mut ringing = Message::response_to(&req, 180, "Ringing");
        ringing.set_to_tag("theirs");
        ringing.push_header("Contact", "<sip:2001@127.0.0.1:5060>");
        ringing.push_header("Record-Route", "<sip:127.0.0.8;lr>");
        ringing.push_header("Record-Route", "<sip:127.0.0.9;lr>");
        let mut d = Dialog::from_uac(&req, &ringing, "sip:alice@127.0.0.2:5070").unwrap();
        assert_eq!(d.state, DialogState::Early);
        assert_eq!(
            d.route_set,
            vec!["<sip:127.0.0.9;lr>", "<sip:127.0.0.8;lr>"]
        );
        let mut ok = ringing.clone();
        ok.start = crate::msg::StartLine::Response {
            code: 200,
            reason: "OK".into(),
        };
        d.update_from_response(&ok);
        assert_eq!(d.state, DialogState::Confirmed);
        let ack = d.ack(5);
        assert_eq!(ack.cseq().unwrap(), (5, Method::Ack));
        let info = d.info(
            "application/dtmf-relay",
            Bytes::from_static(b"Signal=5\r\nDuration=160\r\n"),
        );
        assert_eq!(info.cseq().unwrap(), (6, Method::Info));
        let refer = d.refer("sip:2002@127.0.0.1");
        assert_eq!(refer.header("Refer-To"), Some("<sip:2002@127.0.0.1>"));
        let notify = d.notify_refer(200, "OK", true);
        assert_eq!(&notify.body[..], b"SIP/2.0 200 OK\r\n");
        let hold = d.reinvite(Bytes::from_static(b"v=0\r\na=sendonly\r\n"));
        assert_eq!(hold.cseq().unwrap(), (9, Method::Invite));
        assert!(hold.header("Contact").is_some());
    }

    #[test]
    fn strict_route_goes_in_request_uri() {
        let req = invite();
        let text = String::from_utf8(req.to_bytes()).unwrap().replace(
            "Record-Route: <sip:127.0.0.9;lr>, <sip:127.0.0.8;lr>",
            "Record-Route: <sip:127.0.0.9>",
        );
        let req = Message::parse(text.as_bytes()).unwrap();
        let mut d = Dialog::from_uas(&req, "l", "sip:2001@127.0.0.1").unwrap();
        let bye = d.request(Method::Bye);
        assert_eq!(bye.request_uri(), Some("sip:127.0.0.9"));
        assert_eq!(
            bye.header_entries("Route"),
            vec!["<sip:alice@127.0.0.2:5070>"]
        );
    }

    #[test]
    fn uri_socket_addrs() {
        assert_eq!(
            uri_socket_addr("sip:a@127.0.0.1:5070;transport=tcp"),
            Some("127.0.0.1:5070".parse().unwrap())
        );
        assert_eq!(
            uri_socket_addr("sip:127.0.0.1"),
            Some("127.0.0.1:5060".parse().unwrap())
        );
        assert_eq!(
            uri_socket_addr("sip:a@[::1]:5080"),
            Some("[::1]:5080".parse().unwrap())
        );
        assert_eq!(uri_socket_addr("sip:a@example.com"), None);
    }
}
