//! RFC 3261 §17 transaction state machines (with RFC 6026's Accepted state for INVITE 2xx),
//! driven by the [`Endpoint`](crate::Endpoint) with virtual time.

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::msg::Message;
use crate::transport::Peer;

/// The protocol timers (RFC 3261 Table 4). Defaults: T1 500 ms, T2 4 s, T4 5 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    pub t1: Duration,
    pub t2: Duration,
    pub t4: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl Timers {
    /// 64·T1: Timers B, F, H, J, L, M.
    pub fn transaction_timeout(&self) -> Duration {
        self.t1 * 64
    }

    /// Timer D for unreliable transports: at least 32 s.
    pub fn timer_d(&self) -> Duration {
        Duration::from_secs(32).max(self.t1 * 64)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionKind {
    InviteClient,
    NonInviteClient,
    InviteServer,
    NonInviteServer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Calling,
    Trying,
    Proceeding,
    Completed,
    Confirmed,
    /// RFC 6026: after a 2xx to INVITE, absorbing retransmissions.
    Accepted,
    Terminated,
}

/// Names of the RFC 3261 timers, reported in traces and in tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerName {
    A,
    B,
    D,
    E,
    F,
    G,
    H,
    I,
    J,
    K,
    L,
    M,
}

/// What a transaction asks its endpoint to do.
#[derive(Debug)]
pub(crate) enum Action {
    Send(Bytes),
    /// A response for the transaction user (client transactions).
    Deliver(Message),
    /// Timer B/F (no final response) or H (no ACK): the TU learns of the failure.
    TimedOut(TimerName),
    /// The ACK for a non-2xx final arrived (server INVITE).
    Acked,
}

#[derive(Debug)]
pub(crate) struct Transaction {
    pub kind: TransactionKind,
    pub state: State,
    pub peer: Peer,
    pub request: Message,
    request_bytes: Bytes,
    last_response: Option<Bytes>,
    /// Our ACK for a non-2xx final (client INVITE), resent on retransmitted finals.
    ack: Option<Bytes>,
    timers: Timers,
    retransmit: Option<(TimerName, Instant, Duration)>,
    deadline: Option<(TimerName, Instant)>,
    pub span: tracing::Span,
}

impl Transaction {
    pub fn new_client(
        kind: TransactionKind,
        request: Message,
        request_bytes: Bytes,
        peer: Peer,
        timers: Timers,
        now: Instant,
        span: tracing::Span,
    ) -> (Transaction, Action) {
        let reliable = peer.transport.is_reliable();
        let (state, retransmit_name, deadline_name) = match kind {
            TransactionKind::InviteClient => (State::Calling, TimerName::A, TimerName::B),
            _ => (State::Trying, TimerName::E, TimerName::F),
        };
        let tx = Transaction {
            kind,
            state,
            peer,
            request,
            request_bytes: request_bytes.clone(),
            last_response: None,
            ack: None,
            timers,
            retransmit: (!reliable).then_some((retransmit_name, now + timers.t1, timers.t1)),
            deadline: Some((deadline_name, now + timers.transaction_timeout())),
            span,
        };
        (tx, Action::Send(request_bytes))
    }

    pub fn new_server(
        kind: TransactionKind,
        request: Message,
        peer: Peer,
        timers: Timers,
        span: tracing::Span,
    ) -> Transaction {
        let state = match kind {
            TransactionKind::InviteServer => State::Proceeding,
            _ => State::Trying,
        };
        Transaction {
            kind,
            state,
            peer,
            request,
            request_bytes: Bytes::new(),
            last_response: None,
            ack: None,
            timers,
            retransmit: None,
            deadline: None,
            span,
        }
    }

    fn reliable(&self) -> bool {
        self.peer.transport.is_reliable()
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        let a = self.retransmit.map(|(_, at, _)| at);
        let b = self.deadline.map(|(_, at)| at);
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Enters a state whose only timer is a wait before termination (D, I, J, K, L, M).
    fn linger(&mut self, state: State, name: TimerName, wait: Duration, now: Instant) {
        self.state = state;
        self.retransmit = None;
        if wait.is_zero() {
            self.state = State::Terminated;
            self.deadline = None;
        } else {
            self.deadline = Some((name, now + wait));
        }
    }

    pub fn handle_timeout(&mut self, now: Instant, out: &mut Vec<Action>) {
        if let Some((name, at, interval)) = self.retransmit
            && at <= now
        {
            let bytes = match self.kind {
                TransactionKind::InviteServer => self.last_response.clone(),
                _ => Some(self.request_bytes.clone()),
            };
            if let Some(bytes) = bytes {
                tracing::trace!(parent: &self.span, timer = ?name, "retransmit");
                out.push(Action::Send(bytes));
            }
            let next = match (self.kind, self.state) {
                // Timer A doubles without a cap (RFC 3261 §17.1.1.2).
                (TransactionKind::InviteClient, _) => interval * 2,
                // Timer E in Proceeding fires every T2.
                (TransactionKind::NonInviteClient, State::Proceeding) => self.timers.t2,
                _ => (interval * 2).min(self.timers.t2),
            };
            self.retransmit = Some((name, now + next, next));
        }
        if let Some((name, at)) = self.deadline
            && at <= now
        {
            self.deadline = None;
            self.retransmit = None;
            match name {
                TimerName::B | TimerName::F | TimerName::H => {
                    tracing::debug!(parent: &self.span, timer = ?name, "transaction timed out");
                    out.push(Action::TimedOut(name));
                }
                _ => tracing::trace!(parent: &self.span, timer = ?name, "transaction ends"),
            }
            self.state = State::Terminated;
        }
    }

    /// A response arrived for this client transaction.
    pub fn on_response(&mut self, now: Instant, response: Message, out: &mut Vec<Action>) {
        let Some(code) = response.status() else {
            return;
        };
        let t = self.timers;
        match (self.kind, self.state) {
            (TransactionKind::InviteClient, State::Calling | State::Proceeding) => {
                if code < 200 {
                    self.state = State::Proceeding;
                    self.retransmit = None;
                    self.deadline = None;
                    out.push(Action::Deliver(response));
                } else if code < 300 {
                    self.linger(State::Accepted, TimerName::M, t.transaction_timeout(), now);
                    out.push(Action::Deliver(response));
                } else {
                    let ack =
                        Bytes::from(build_ack_for_non_2xx(&self.request, &response).to_bytes());
                    out.push(Action::Send(ack.clone()));
                    self.ack = Some(ack);
                    let wait = if self.reliable() {
                        Duration::ZERO
                    } else {
                        t.timer_d()
                    };
                    self.linger(State::Completed, TimerName::D, wait, now);
                    out.push(Action::Deliver(response));
                }
            }
            (TransactionKind::InviteClient, State::Completed) => {
                if code >= 300
                    && let Some(ack) = &self.ack
                {
                    out.push(Action::Send(ack.clone()));
                }
            }
            (TransactionKind::InviteClient, State::Accepted) if (200..300).contains(&code) => {
                // Retransmitted 2xx: the TU (dialog) sends the ACK again.
                out.push(Action::Deliver(response));
            }
            (TransactionKind::NonInviteClient, State::Trying | State::Proceeding) => {
                if code < 200 {
                    self.state = State::Proceeding;
                    out.push(Action::Deliver(response));
                } else {
                    let wait = if self.reliable() {
                        Duration::ZERO
                    } else {
                        t.t4
                    };
                    self.linger(State::Completed, TimerName::K, wait, now);
                    out.push(Action::Deliver(response));
                }
            }
            _ => {}
        }
    }

    /// The request arrived again (server transactions): resend what we last said.
    pub fn on_retransmitted_request(&mut self, out: &mut Vec<Action>) {
        match self.state {
            State::Proceeding | State::Completed => {
                if let Some(bytes) = &self.last_response {
                    out.push(Action::Send(bytes.clone()));
                }
            }
            _ => {}
        }
    }

    /// ACK matched to this server INVITE transaction.
    pub fn on_ack(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.kind == TransactionKind::InviteServer && self.state == State::Completed {
            let wait = if self.reliable() {
                Duration::ZERO
            } else {
                self.timers.t4
            };
            self.linger(State::Confirmed, TimerName::I, wait, now);
            out.push(Action::Acked);
        }
    }

    /// The TU sends a response on this server transaction.
    pub fn send_response(
        &mut self,
        now: Instant,
        code: u16,
        bytes: Bytes,
        out: &mut Vec<Action>,
    ) -> Result<(), State> {
        let t = self.timers;
        match (self.kind, self.state) {
            (TransactionKind::InviteServer, State::Proceeding) => {
                out.push(Action::Send(bytes.clone()));
                self.last_response = Some(bytes);
                if (200..300).contains(&code) {
                    self.linger(State::Accepted, TimerName::L, t.transaction_timeout(), now);
                } else if code >= 300 {
                    self.state = State::Completed;
                    self.retransmit =
                        (!self.reliable()).then_some((TimerName::G, now + t.t1, t.t1));
                    self.deadline = Some((TimerName::H, now + t.transaction_timeout()));
                }
                Ok(())
            }
            (TransactionKind::NonInviteServer, State::Trying | State::Proceeding) => {
                out.push(Action::Send(bytes.clone()));
                self.last_response = Some(bytes);
                if code < 200 {
                    self.state = State::Proceeding;
                } else {
                    let wait = if self.reliable() {
                        Duration::ZERO
                    } else {
                        t.transaction_timeout()
                    };
                    self.linger(State::Completed, TimerName::J, wait, now);
                }
                Ok(())
            }
            (_, state) => Err(state),
        }
    }

    pub fn is_terminated(&self) -> bool {
        self.state == State::Terminated
    }
}

/// RFC 3261 §17.1.1.3: the ACK for a non-2xx final belongs to the INVITE transaction.
pub(crate) fn build_ack_for_non_2xx(invite: &Message, response: &Message) -> Message {
    let mut ack = Message::request(
        crate::msg::Method::Ack,
        invite.request_uri().unwrap_or_default().to_string(),
    );
    if let Some(via) = invite.header("Via") {
        let top = crate::msg::split_outside_quotes(via, ',')
            .into_iter()
            .next()
            .unwrap_or_default();
        ack.push_header("Via", top.trim());
    }
    for route in invite.header_all("Route") {
        ack.push_header("Route", route);
    }
    ack.push_header("Max-Forwards", "70");
    if let Some(from) = invite.header("From") {
        ack.push_header("From", from);
    }
    if let Some(to) = response.header("To") {
        ack.push_header("To", to);
    }
    if let Some(call_id) = invite.call_id() {
        ack.push_header("Call-ID", call_id);
    }
    let cseq = invite.cseq().map(|(n, _)| n).unwrap_or(1);
    ack.push_header("CSeq", format!("{cseq} ACK"));
    ack
}
