//! The sans-IO SIP endpoint: parses input, matches it to transactions, runs their timers, and
//! queues events for the application and datagrams/segments for the driver.
//!
//! Shaped after quinn-proto: `handle_input` / `handle_timeout` feed it, `poll_event`,
//! `poll_transmit` and `poll_timeout` drain it. It owns no socket and reads no clock.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::Rng;

use crate::msg::{Limits, Message, Method, ParseError, StartLine, canonical_name};
use crate::transaction::{Action, State, TimerName, Timers, Transaction, TransactionKind};
use crate::transport::{Peer, TransportKind};

/// Handle of a transaction, given to the application with requests and responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransactionId(pub u64);

#[derive(Debug, Clone)]
pub struct EndpointConfig {
    pub timers: Timers,
    pub limits: Limits,
    /// Sent in User-Agent / Server headers.
    pub product: String,
    /// Option tags we implement; a request that Requires any other gets 420 (RFC 3261 §8.2.2.3).
    pub supported: Vec<String>,
    /// Live transactions at most; new requests beyond it get 503 with Retry-After.
    pub max_transactions: usize,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            timers: Timers::default(),
            limits: Limits::default(),
            product: concat!("santral/", env!("CARGO_PKG_VERSION")).to_string(),
            supported: crate::registrar::SUPPORTED
                .split(',')
                .map(|t| t.trim().to_string())
                .collect(),
            max_transactions: 100_000,
        }
    }
}

/// Bytes for the driver to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub peer: Peer,
    pub bytes: Bytes,
    /// The transaction that sent it, so a transport failure can be reported back.
    pub transaction: Option<TransactionId>,
}

/// What happened, for the application (the transaction user).
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A new request on a server transaction; answer it with [`Endpoint::respond`].
    Request {
        id: TransactionId,
        request: Message,
        peer: Peer,
    },
    /// An ACK for a 2xx (it has no transaction; the dialog owns it).
    Ack { request: Message, peer: Peer },
    /// A response on a client transaction (provisional, final, or a retransmitted 2xx).
    Response {
        id: TransactionId,
        response: Message,
    },
    /// The INVITE on this server transaction was CANCELled; 487 has been sent.
    Cancelled { id: TransactionId },
    /// A transaction failed for want of an answer: Timer B/F (client) or H (server), or a 2xx
    /// that was never ACKed.
    Timeout { id: TransactionId, timer: TimerName },
    /// The transport could not deliver this transaction's message.
    TransportError { id: TransactionId },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("unknown or finished transaction")]
    UnknownTransaction,
    #[error("transaction cannot send a response in state {0:?}")]
    WrongState(State),
    #[error("message is not a {0}")]
    WrongKind(&'static str),
    #[error("request has no usable {0}")]
    Incomplete(&'static str),
}

/// A 2xx to INVITE that the UAS core retransmits until the ACK comes (RFC 3261 §13.3.1.4).
#[derive(Debug)]
struct UnackedSuccess {
    peer: Peer,
    bytes: Bytes,
    next: Option<(Instant, Duration)>,
    deadline: Instant,
    key: (String, u32),
}

type MergeKey = (String, String, u32, String);

#[derive(Debug, Default)]
struct TransactionKeys {
    server: Option<String>,
    client: Option<String>,
    merge: Option<MergeKey>,
}

/// Counters for tests and metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EndpointStats {
    pub received: u64,
    pub malformed: u64,
    pub retransmissions_absorbed: u64,
}

pub struct Endpoint {
    config: EndpointConfig,
    next_id: u64,
    transactions: HashMap<TransactionId, Transaction>,
    server_index: HashMap<String, TransactionId>,
    client_index: HashMap<String, TransactionId>,
    /// (From tag, Call-ID, CSeq) of live server transactions without To tag, for 482.
    merge_index: HashMap<MergeKey, TransactionId>,
    /// The index keys of each transaction, so removal does not scan the indexes.
    keys: HashMap<TransactionId, TransactionKeys>,
    unacked: HashMap<TransactionId, UnackedSuccess>,
    unacked_index: HashMap<(String, u32), TransactionId>,
    wakeups: BinaryHeap<Reverse<(Instant, TransactionId)>>,
    events: VecDeque<Event>,
    transmits: VecDeque<Transmit>,
    stats: EndpointStats,
}

/// A fresh RFC 3261 branch (magic cookie + 64 random bits).
pub fn new_branch() -> String {
    format!("z9hG4bK{:016x}", rand::rng().random::<u64>())
}

/// A fresh tag for From/To.
pub fn new_tag() -> String {
    format!("{:012x}", rand::rng().random::<u64>() & 0xffff_ffff_ffff)
}

fn server_key(request: &Message) -> Option<String> {
    let via = request.top_via().ok()?;
    let method = match request.method()? {
        Method::Ack => "INVITE".to_string(),
        m => m.as_str().to_string(),
    };
    match via.branch() {
        Some(b) if b.starts_with("z9hG4bK") => Some(format!(
            "{b}|{}|{method}",
            via.sent_by().to_ascii_lowercase()
        )),
        // RFC 2543 peers: match on the dialog-ish identifiers (§17.2.3's fallback, simplified).
        _ => Some(format!(
            "2543|{}|{}|{}|{}|{method}",
            request.call_id()?,
            request.cseq().ok()?.0,
            request.from_tag().unwrap_or_default(),
            via.sent_by()
        )),
    }
}

fn client_key(branch: &str, method: &Method) -> String {
    let method = match method {
        Method::Ack => "INVITE",
        m => m.as_str(),
    };
    format!("{branch}|{method}")
}

impl Endpoint {
    pub fn new(config: EndpointConfig) -> Endpoint {
        Endpoint {
            config,
            next_id: 1,
            transactions: HashMap::new(),
            server_index: HashMap::new(),
            client_index: HashMap::new(),
            merge_index: HashMap::new(),
            keys: HashMap::new(),
            unacked: HashMap::new(),
            unacked_index: HashMap::new(),
            wakeups: BinaryHeap::new(),
            events: VecDeque::new(),
            transmits: VecDeque::new(),
            stats: EndpointStats::default(),
        }
    }

    pub fn config(&self) -> &EndpointConfig {
        &self.config
    }

    pub fn stats(&self) -> EndpointStats {
        self.stats
    }

    /// Live transactions (for tests and metrics).
    pub fn transaction_count(&self) -> usize {
        self.transactions.len()
    }

    pub fn transaction_state(&self, id: TransactionId) -> Option<State> {
        self.transactions.get(&id).map(|t| t.state)
    }

    /// The request that opened a transaction.
    pub fn transaction_request(&self, id: TransactionId) -> Option<&Message> {
        self.transactions.get(&id).map(|t| &t.request)
    }

    fn allocate_id(&mut self) -> TransactionId {
        let id = TransactionId(self.next_id);
        self.next_id += 1;
        id
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// When `handle_timeout` should next be called.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        // Drop wake-ups of finished transactions so the driver does not spin on them.
        // Drop wake-ups that no longer match a live timer (re-armed or finished) so the driver
        // neither spins nor wakes early.
        while let Some(Reverse((at, id))) = self.wakeups.peek().copied() {
            let tx_due = self.transactions.get(&id).and_then(|t| t.next_deadline());
            let unacked_due = self.unacked.get(&id).map(|u| match u.next {
                Some((next, _)) => next.min(u.deadline),
                None => u.deadline,
            });
            if tx_due == Some(at) || unacked_due == Some(at) {
                break;
            }
            self.wakeups.pop();
        }
        self.wakeups.peek().map(|Reverse((at, _))| *at)
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let mut due = Vec::new();
        while let Some(Reverse((at, id))) = self.wakeups.peek().copied() {
            if at > now {
                break;
            }
            self.wakeups.pop();
            due.push(id);
        }
        due.sort();
        due.dedup();
        for id in due {
            if self.transactions.contains_key(&id) {
                let mut actions = Vec::new();
                if let Some(tx) = self.transactions.get_mut(&id) {
                    tx.handle_timeout(now, &mut actions);
                }
                self.apply(id, actions);
                self.after_change(id);
            }
            self.unacked_timeout(id, now);
        }
    }

    fn unacked_timeout(&mut self, id: TransactionId, now: Instant) {
        let Some(entry) = self.unacked.get_mut(&id) else {
            return;
        };
        if entry.deadline <= now {
            let key = entry.key.clone();
            self.unacked.remove(&id);
            self.unacked_index.remove(&key);
            self.events.push_back(Event::Timeout {
                id,
                timer: TimerName::H,
            });
            return;
        }
        if let Some((at, interval)) = entry.next
            && at <= now
        {
            self.transmits.push_back(Transmit {
                peer: entry.peer,
                bytes: entry.bytes.clone(),
                transaction: Some(id),
            });
            let next = (interval * 2).min(self.config.timers.t2);
            entry.next = Some((now + next, next));
        }
        let wake = match entry.next {
            Some((at, _)) => at.min(entry.deadline),
            None => entry.deadline,
        };
        self.wakeups.push(Reverse((wake, id)));
    }

    /// Re-arms the wake-up of a transaction, or forgets it once terminated.
    fn after_change(&mut self, id: TransactionId) {
        let Some(tx) = self.transactions.get(&id) else {
            return;
        };
        if tx.is_terminated() {
            self.remove_transaction(id);
        } else if let Some(at) = tx.next_deadline() {
            self.wakeups.push(Reverse((at, id)));
        }
    }

    fn remove_transaction(&mut self, id: TransactionId) {
        self.transactions.remove(&id);
        if let Some(keys) = self.keys.remove(&id) {
            if let Some(k) = keys.server {
                self.server_index.remove(&k);
            }
            if let Some(k) = keys.client {
                self.client_index.remove(&k);
            }
            if let Some(k) = keys.merge {
                self.merge_index.remove(&k);
            }
        }
    }

    fn apply(&mut self, id: TransactionId, actions: Vec<Action>) {
        let Some(tx) = self.transactions.get(&id) else {
            return;
        };
        let peer = tx.peer;
        for action in actions {
            match action {
                Action::Send(bytes) => self.transmits.push_back(Transmit {
                    peer,
                    bytes,
                    transaction: Some(id),
                }),
                Action::Deliver(response) => {
                    self.events.push_back(Event::Response { id, response })
                }
                Action::TimedOut(timer) => self.events.push_back(Event::Timeout { id, timer }),
                Action::Acked => {}
            }
        }
    }

    /// Bytes arrived from `remote` on the socket bound to `local`.
    pub fn handle_input(
        &mut self,
        now: Instant,
        transport: TransportKind,
        local: SocketAddr,
        remote: SocketAddr,
        bytes: &[u8],
    ) {
        self.stats.received += 1;
        let peer = Peer {
            transport,
            local,
            remote,
        };
        if bytes.iter().all(|b| b.is_ascii_whitespace()) {
            return; // keep-alive
        }
        match Message::parse_with(bytes, &self.config.limits) {
            Ok(message) if message.is_request() => self.handle_request(now, message, peer),
            Ok(message) => self.handle_response(now, message),
            Err(error) => {
                self.stats.malformed += 1;
                tracing::debug!(%remote, %error, "malformed SIP message");
                if let Some(response) = salvage_error_response(bytes, &error) {
                    self.transmits.push_back(Transmit {
                        peer,
                        bytes: Bytes::from(response.to_bytes()),
                        transaction: None,
                    });
                }
            }
        }
    }

    fn handle_request(&mut self, now: Instant, mut request: Message, peer: Peer) {
        // RFC 3261 §18.2.1 and RFC 3581: note where the request really came from.
        if let Ok(mut via) = request.top_via() {
            let remote_ip = peer.remote.ip().to_string();
            let rport_requested = via.rport().is_some();
            if via.host.trim_matches(['[', ']']) != remote_ip || rport_requested {
                via.params
                    .retain(|(n, _)| !n.eq_ignore_ascii_case("received"));
                via.params.push(("received".into(), Some(remote_ip)));
            }
            if rport_requested {
                via.params.retain(|(n, _)| !n.eq_ignore_ascii_case("rport"));
                via.params
                    .push(("rport".into(), Some(peer.remote.port().to_string())));
            }
            request.set_top_via(&via);
        }
        let Some(key) = server_key(&request) else {
            return;
        };
        let method = request.method().cloned().unwrap_or(Method::Ack);

        if method == Method::Ack {
            return self.handle_ack(now, request, peer, &key);
        }
        if let Some(&id) = self.server_index.get(&key) {
            self.stats.retransmissions_absorbed += 1;
            let mut actions = Vec::new();
            if let Some(tx) = self.transactions.get_mut(&id) {
                tx.on_retransmitted_request(&mut actions);
            }
            self.apply(id, actions);
            return;
        }
        let call_id = request.call_id().unwrap_or_default().to_string();
        let span = tracing::info_span!("sip_tx", call_id = %call_id, method = %method, remote = %peer.remote);
        let kind = if method == Method::Invite {
            TransactionKind::InviteServer
        } else {
            TransactionKind::NonInviteServer
        };
        let id = self.allocate_id();
        tracing::debug!(parent: &span, "request received");
        let tx = Transaction::new_server(kind, request.clone(), peer, self.config.timers, span);
        self.transactions.insert(id, tx);
        self.server_index.insert(key.clone(), id);
        self.keys.entry(id).or_default().server = Some(key);

        if method == Method::Cancel {
            return self.handle_cancel(now, id, &request);
        }

        // Merged request (RFC 3261 §8.2.2.2): same From tag, Call-ID and CSeq, other branch.
        if request.to_tag().is_none()
            && let (Some(from_tag), Ok((seq, _))) = (request.from_tag(), request.cseq())
        {
            let merge_key = (from_tag, call_id.clone(), seq, method.as_str().to_string());
            if let Some(other) = self.merge_index.get(&merge_key)
                && self.transactions.contains_key(other)
            {
                let _ = self.respond_with(now, id, 482, "Loop Detected");
                return;
            }
            self.merge_index.insert(merge_key.clone(), id);
            self.keys.entry(id).or_default().merge = Some(merge_key);
        }
        if method != Method::Options && request.max_forwards().ok().flatten() == Some(0) {
            let _ = self.respond_with(now, id, 483, "Too Many Hops");
            return;
        }
        // RFC 3261 §8.2.2.1: a Request-URI scheme we cannot serve gets 416 (RFC 4475 unkscm, novelsc).
        if !request.request_uri().is_some_and(has_supported_scheme) {
            let mut unsupported = Message::response_to(&request, 416, "Unsupported URI Scheme");
            unsupported.set_to_tag(&new_tag());
            let _ = self.respond(now, id, unsupported);
            return;
        }
        if self.transactions.len() > self.config.max_transactions {
            let mut busy = Message::response_to(&request, 503, "Service Unavailable");
            busy.set_to_tag(&new_tag());
            busy.push_header("Retry-After", "5");
            let _ = self.respond(now, id, busy);
            return;
        }
        let unsupported: Vec<String> = request
            .header_all("Require")
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|tag| {
                !tag.is_empty()
                    && !self
                        .config
                        .supported
                        .iter()
                        .any(|s| s.eq_ignore_ascii_case(tag))
            })
            .map(str::to_string)
            .collect();
        if !unsupported.is_empty() {
            let mut bad = Message::response_to(&request, 420, "Bad Extension");
            bad.set_to_tag(&new_tag());
            bad.push_header("Unsupported", unsupported.join(", "));
            let _ = self.respond(now, id, bad);
            return;
        }
        if method == Method::Invite {
            // Answer at once so the client stops retransmitting (RFC 3261 §17.2.1).
            let _ = self.respond_with(now, id, 100, "Trying");
        }
        self.events.push_back(Event::Request { id, request, peer });
    }

    fn handle_ack(&mut self, now: Instant, request: Message, peer: Peer, key: &str) {
        if let Some(&id) = self.server_index.get(key) {
            let state = self.transactions.get(&id).map(|t| t.state);
            if state == Some(State::Completed) || state == Some(State::Confirmed) {
                // ACK for our non-2xx final: absorbed by the transaction.
                let mut actions = Vec::new();
                if let Some(tx) = self.transactions.get_mut(&id) {
                    tx.on_ack(now, &mut actions);
                }
                self.apply(id, actions);
                self.after_change(id);
                return;
            }
        }
        if let (Some(call_id), Ok((seq, _))) = (request.call_id(), request.cseq())
            && let Some(id) = self.unacked_index.remove(&(call_id.to_string(), seq))
        {
            self.unacked.remove(&id);
        }
        self.events.push_back(Event::Ack { request, peer });
    }

    fn handle_cancel(&mut self, now: Instant, cancel_id: TransactionId, cancel: &Message) {
        let invite_key = server_key(cancel).map(|k| {
            let cut = k.rfind('|').unwrap_or(k.len());
            format!("{}|INVITE", &k[..cut])
        });
        let invite_id = invite_key.and_then(|k| self.server_index.get(&k).copied());
        let Some(invite_id) = invite_id else {
            let _ = self.respond_with(now, cancel_id, 481, "Call/Transaction Does Not Exist");
            return;
        };
        let _ = self.respond_with(now, cancel_id, 200, "OK");
        if self.transactions.get(&invite_id).map(|t| t.state) == Some(State::Proceeding) {
            let _ = self.respond_with(now, invite_id, 487, "Request Terminated");
            self.events.push_back(Event::Cancelled { id: invite_id });
        }
    }

    fn handle_response(&mut self, now: Instant, response: Message) {
        let Ok(via) = response.top_via() else {
            return;
        };
        let (Some(branch), Ok((_, method))) = (via.branch(), response.cseq()) else {
            return;
        };
        let Some(&id) = self.client_index.get(&client_key(branch, &method)) else {
            tracing::debug!(branch, "response matches no transaction");
            return;
        };
        let mut actions = Vec::new();
        if let Some(tx) = self.transactions.get_mut(&id) {
            tracing::debug!(parent: &tx.span, code = response.status(), "response received");
            tx.on_response(now, response, &mut actions);
        }
        self.apply(id, actions);
        self.after_change(id);
    }

    /// Sends a request on a new client transaction. A Via with a fresh branch is put on top and
    /// Max-Forwards added when missing. ACK must go through [`Endpoint::send_stateless`].
    pub fn send_request(
        &mut self,
        now: Instant,
        mut request: Message,
        peer: Peer,
    ) -> Result<TransactionId, EndpointError> {
        let method = request
            .method()
            .cloned()
            .ok_or(EndpointError::WrongKind("request"))?;
        if method == Method::Ack {
            return Err(EndpointError::WrongKind("non-ACK request"));
        }
        let branch = new_branch();
        request.prepend_header(
            "Via",
            format!(
                "SIP/2.0/{} {};branch={branch};rport",
                peer.transport.via_token(),
                peer.local
            ),
        );
        self.fill_common_headers(&mut request);
        let call_id = request.call_id().unwrap_or_default().to_string();
        let span = tracing::info_span!("sip_tx", call_id = %call_id, method = %method, remote = %peer.remote);
        Ok(self.start_client(now, method, branch, request, peer, span))
    }

    fn fill_common_headers(&self, request: &mut Message) {
        if request.header("Max-Forwards").is_none() {
            request.push_header("Max-Forwards", "70");
        }
        if request.header("User-Agent").is_none() {
            request.push_header("User-Agent", self.config.product.clone());
        }
    }

    fn start_client(
        &mut self,
        now: Instant,
        method: Method,
        branch: String,
        request: Message,
        peer: Peer,
        span: tracing::Span,
    ) -> TransactionId {
        let kind = if method == Method::Invite {
            TransactionKind::InviteClient
        } else {
            TransactionKind::NonInviteClient
        };
        let bytes = Bytes::from(request.to_bytes());
        let id = self.allocate_id();
        tracing::debug!(parent: &span, "request sent");
        let (tx, first) =
            Transaction::new_client(kind, request, bytes, peer, self.config.timers, now, span);
        self.transactions.insert(id, tx);
        let key = client_key(&branch, &method);
        self.client_index.insert(key.clone(), id);
        self.keys.entry(id).or_default().client = Some(key);
        self.apply(id, vec![first]);
        self.after_change(id);
        id
    }

    /// CANCELs the INVITE of client transaction `invite` (RFC 3261 §9.1): same Via branch,
    /// Request-URI, Call-ID, From, To, Route and CSeq number.
    pub fn send_cancel(
        &mut self,
        now: Instant,
        invite: TransactionId,
    ) -> Result<TransactionId, EndpointError> {
        let tx = self
            .transactions
            .get(&invite)
            .ok_or(EndpointError::UnknownTransaction)?;
        if tx.kind != TransactionKind::InviteClient {
            return Err(EndpointError::WrongKind("client INVITE transaction"));
        }
        let req = &tx.request;
        let peer = tx.peer;
        let via = req.header("Via").ok_or(EndpointError::Incomplete("Via"))?;
        let via = crate::msg::split_outside_quotes(via, ',')
            .into_iter()
            .next()
            .unwrap_or_default();
        let branch = req
            .top_via()
            .ok()
            .and_then(|v| v.branch().map(str::to_string))
            .ok_or(EndpointError::Incomplete("branch"))?;
        let (seq, _) = req.cseq().map_err(|_| EndpointError::Incomplete("CSeq"))?;
        let mut cancel = Message::request(
            Method::Cancel,
            req.request_uri().unwrap_or_default().to_string(),
        );
        cancel.push_header("Via", via.trim());
        for name in ["Route", "From", "To", "Call-ID"] {
            for v in req.header_all(name) {
                cancel.push_header(name, v);
            }
        }
        cancel.push_header("CSeq", format!("{seq} CANCEL"));
        self.fill_common_headers(&mut cancel);
        let span = tx.span.clone();
        Ok(self.start_client(now, Method::Cancel, branch, cancel, peer, span))
    }

    /// Sends a message outside any transaction: ACK for a 2xx (a Via with a new branch is
    /// added) or a stateless response.
    pub fn send_stateless(&mut self, mut message: Message, peer: Peer) {
        if message.is_request() {
            message.prepend_header(
                "Via",
                format!(
                    "SIP/2.0/{} {};branch={};rport",
                    peer.transport.via_token(),
                    peer.local,
                    new_branch()
                ),
            );
            self.fill_common_headers(&mut message);
        }
        self.transmits.push_back(Transmit {
            peer,
            bytes: Bytes::from(message.to_bytes()),
            transaction: None,
        });
    }

    /// Builds and sends a response with no extra headers or body.
    pub fn respond_with(
        &mut self,
        now: Instant,
        id: TransactionId,
        code: u16,
        reason: &str,
    ) -> Result<(), EndpointError> {
        let request = &self
            .transactions
            .get(&id)
            .ok_or(EndpointError::UnknownTransaction)?
            .request;
        let mut response = Message::response_to(request, code, reason);
        if code > 100 && response.to_tag().is_none() {
            response.set_to_tag(&new_tag());
        }
        self.respond(now, id, response)
    }

    /// Sends `response` on server transaction `id`. Responses go back where the request came
    /// from (received/rport; the same connection for TCP). A 2xx to INVITE is retransmitted by
    /// the endpoint until the ACK arrives.
    pub fn respond(
        &mut self,
        now: Instant,
        id: TransactionId,
        mut response: Message,
    ) -> Result<(), EndpointError> {
        let code = response
            .status()
            .ok_or(EndpointError::WrongKind("response"))?;
        if response.header("Server").is_none() && code > 100 {
            response.push_header("Server", self.config.product.clone());
        }
        let tx = self
            .transactions
            .get_mut(&id)
            .ok_or(EndpointError::UnknownTransaction)?;
        let bytes = Bytes::from(response.to_bytes());
        let mut actions = Vec::new();
        tx.send_response(now, code, bytes.clone(), &mut actions)
            .map_err(EndpointError::WrongState)?;
        tracing::debug!(parent: &tx.span, code, "response sent");
        let is_invite_success =
            tx.kind == TransactionKind::InviteServer && (200..300).contains(&code);
        let peer = tx.peer;
        let key = (
            tx.request.call_id().unwrap_or_default().to_string(),
            tx.request.cseq().map(|(n, _)| n).unwrap_or(0),
        );
        self.apply(id, actions);
        self.after_change(id);
        if is_invite_success {
            let t1 = self.config.timers.t1;
            let entry = UnackedSuccess {
                peer,
                bytes,
                next: (!peer.transport.is_reliable()).then_some((now + t1, t1)),
                deadline: now + self.config.timers.transaction_timeout(),
                key: key.clone(),
            };
            let wake = entry.next.map(|(at, _)| at).unwrap_or(entry.deadline);
            self.unacked.insert(id, entry);
            self.unacked_index.insert(key, id);
            self.wakeups.push(Reverse((wake, id)));
        }
        Ok(())
    }

    /// The driver could not send a transaction's message (connection refused, reset …).
    pub fn handle_transport_error(&mut self, id: TransactionId) {
        if self.transactions.contains_key(&id) {
            self.remove_transaction(id);
            self.events.push_back(Event::TransportError { id });
        }
    }
}

/// For a malformed request whose identifying headers are readable, the 400 (or 505/513)
/// that tells the sender why; `None` when no response can be formed (then it is dropped).
pub fn salvage_error_response(bytes: &[u8], error: &ParseError) -> Option<Message> {
    let text = std::str::from_utf8(bytes.get(..bytes.len().min(64 * 1024))?).ok()?;
    let mut lines = text.split('\n').map(|l| l.trim_end_matches('\r'));
    let start = lines.next()?;
    if start.starts_with("SIP/") || start.trim().is_empty() {
        return None;
    }
    let mut response = Message {
        start: StartLine::Response {
            code: error.status(),
            reason: String::new(),
        },
        headers: Vec::new(),
        body: Bytes::new(),
    };
    let mut seen = [false; 5];
    for line in lines.take(256) {
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = canonical_name(name.trim());
        let wanted = ["Via", "From", "To", "Call-ID", "CSeq"];
        if let Some(i) = wanted.iter().position(|w| *w == name) {
            // Values that would break our own framing are not echoed back.
            if value.contains('\r') || value.len() > 1024 {
                return None;
            }
            seen[i] = true;
            response.push_header(&name, value.trim());
        }
    }
    if !seen.iter().all(|s| *s) {
        return None;
    }
    let reason = match error.status() {
        505 => "Version Not Supported".to_string(),
        513 => "Message Too Large".to_string(),
        _ => format!("Bad Request ({error})"),
    };
    // A reason phrase cannot carry CR/LF; the error text never does, but be certain.
    let reason: String = reason
        .chars()
        .filter(|c| !c.is_control())
        .take(120)
        .collect();
    response.start = StartLine::Response {
        code: error.status(),
        reason,
    };
    Some(response)
}

/// Schemes whose Request-URIs this endpoint serves: SIP, SIPS and telephone numbers.
fn has_supported_scheme(uri: &str) -> bool {
    let scheme = uri.split_once(':').map_or("", |(scheme, _)| scheme);
    ["sip", "sips", "tel"]
        .iter()
        .any(|known| known.eq_ignore_ascii_case(scheme))
}
