//! `santral-load agents`: many simulated agent phones on one SIP socket. Each account registers
//! (digest authentication, through santral-sip's sans-IO [`Registration`]), answers the calls
//! offered to it after a delay, and echoes their RTP back (batched, like the caller side).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use santral_sip::client::{Credentials, Registration, RegistrationConfig, RegistrationEvent};
use santral_sip::{Message, Method};
use serde::Serialize;
use tracing::{debug, info_span};

use crate::agent_call::{AgentOutcome, AnswerSetup, AnsweringCall};
use crate::batch_socket::{self, BatchSocket, RecvBatch, SendBatch};
use crate::call::{Progress, SipTimers};
use crate::generator::{LoadError, PACKET_PERIOD};
use crate::process;
use crate::rtp;
use crate::schedule::{Launcher, Pacer};
use crate::stats::{Histogram, Summary};
use crate::target::ensure_loopback;

/// One agent account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: String,
    pub password: String,
}

impl Account {
    /// `id:password`.
    pub fn parse(text: &str) -> Result<Account, LoadError> {
        let (id, password) = text
            .trim()
            .split_once(':')
            .ok_or_else(|| LoadError::Invalid(format!("account {text:?} is not id:password")))?;
        if id.is_empty()
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(LoadError::Invalid(format!(
                "account id {id:?} is not a SIP user part"
            )));
        }
        Ok(Account {
            id: id.to_owned(),
            password: password.to_owned(),
        })
    }
}

#[derive(Debug, Clone)]
pub struct AgentsConfig {
    pub target: SocketAddr,
    pub accounts: Vec<Account>,
    /// Ringing time before an offered call is answered.
    pub answer_after: Duration,
    /// REGISTERs started per second (a gentle start, or a storm).
    pub register_rate: f64,
    pub expires: u32,
    /// How long the agents stay up (then they unregister).
    pub duration: Duration,
    pub rtp_sockets: usize,
    pub timers: SipTimers,
}

impl AgentsConfig {
    pub fn validate(&self) -> Result<(), LoadError> {
        ensure_loopback(self.target)?;
        let invalid = |m: &str| Err(LoadError::Invalid(m.to_owned()));
        if self.accounts.is_empty() {
            return invalid("no agent accounts given");
        }
        if !(self.register_rate.is_finite() && self.register_rate > 0.0) {
            return invalid("--register-rate must be positive");
        }
        if !(1..=64).contains(&self.rtp_sockets) {
            return invalid("--rtp-sockets must be between 1 and 64");
        }
        if self.duration.is_zero() {
            return invalid("--duration must be positive");
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct AgentsReport {
    pub target: String,
    pub duration_s: f64,
    pub registrations: RegistrationFigures,
    pub calls: OfferedCallFigures,
    pub rtp: EchoFigures,
    pub generator: AgentGeneratorFigures,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RegistrationFigures {
    pub accounts: u64,
    pub registered: u64,
    pub challenges: u64,
    pub failed_by_status: BTreeMap<u16, u64>,
    pub timed_out: u64,
    pub retransmissions: u64,
    /// First REGISTER sent → 200 OK (challenge round trip included), µs.
    pub register_to_200_us: Option<Summary>,
    pub unregistered_at_end: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct OfferedCallFigures {
    pub offered: u64,
    pub answered: u64,
    pub completed: u64,
    pub cancelled: u64,
    pub ack_timeouts: u64,
    pub unfinished: u64,
    /// Offers we could not answer (no PCMA/PCMU, or not loopback): refused with 488.
    pub refused_488: u64,
    /// INVITEs for users that are not our (registered) agents: 404.
    pub unknown_user: u64,
    pub ok_retransmissions: u64,
    pub peak_concurrent: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct EchoFigures {
    pub received: u64,
    pub echoed: u64,
    pub lost: u64,
    pub unmatched: u64,
    pub receive_jitter_us: Summary,
}

#[derive(Debug, Clone, Serialize)]
pub struct AgentGeneratorFigures {
    pub tick_lateness_us: Summary,
    pub send_dropped: u64,
    pub receive_buffer_drops: u64,
    pub sip_parse_errors: u64,
    pub cpu_user_s: f64,
    pub cpu_system_s: f64,
    pub cpu_percent: f64,
}

impl AgentsReport {
    pub fn table(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "santral-load agents → {}: {} accounts for {:.1} s",
            self.target, self.registrations.accounts, self.duration_s
        );
        let row = |t: &mut String, name: &str, value: u64| {
            let _ = writeln!(t, "{name:<28}{value:>12}");
        };
        let r = &self.registrations;
        row(&mut t, "registered", r.registered);
        row(&mut t, "digest challenges", r.challenges);
        for (code, n) in &r.failed_by_status {
            row(&mut t, &format!("REGISTER failed with {code}"), *n);
        }
        row(&mut t, "REGISTER timed out", r.timed_out);
        row(&mut t, "REGISTER retransmissions", r.retransmissions);
        if let Some(s) = &r.register_to_200_us {
            let _ = writeln!(
                t,
                "{:<28}p50 {:>8}  p99 {:>8}  max {:>8}  (n={})",
                "REGISTER→200 (µs)", s.p50, s.p99, s.max, s.count
            );
        }
        row(&mut t, "unregistered at the end", r.unregistered_at_end);
        let c = &self.calls;
        row(&mut t, "calls offered", c.offered);
        row(&mut t, "calls answered", c.answered);
        row(&mut t, "  ended by server BYE", c.completed);
        row(&mut t, "  cancelled while ringing", c.cancelled);
        row(&mut t, "  200 never ACKed", c.ack_timeouts);
        row(&mut t, "  unfinished at the end", c.unfinished);
        row(&mut t, "refused 488", c.refused_488);
        row(&mut t, "INVITE for unknown user", c.unknown_user);
        row(&mut t, "200 OK retransmissions", c.ok_retransmissions);
        row(&mut t, "peak concurrent calls", c.peak_concurrent);
        row(&mut t, "RTP received", self.rtp.received);
        row(&mut t, "RTP echoed", self.rtp.echoed);
        row(&mut t, "RTP lost (sequence gaps)", self.rtp.lost);
        let j = &self.rtp.receive_jitter_us;
        let _ = writeln!(
            t,
            "{:<28}p50 {:>8}  p99 {:>8}  max {:>8}  (n={})",
            "RTP receive jitter (µs)", j.p50, j.p99, j.max, j.count
        );
        let g = &self.generator;
        row(&mut t, "generator send drops", g.send_dropped);
        row(&mut t, "generator receive drops", g.receive_buffer_drops);
        let _ = writeln!(
            t,
            "generator CPU               {:>12.2} s user + {:.2} s system = {:.1} % of a core",
            g.cpu_user_s, g.cpu_system_s, g.cpu_percent
        );
        t
    }
}

struct PendingRegister {
    request: Message,
    bytes: Vec<u8>,
    retransmit_at: Instant,
    interval: Duration,
    give_up_at: Instant,
}

struct Agent {
    registration: Registration,
    pending: Option<PendingRegister>,
    started_at: Option<Instant>,
    registered: bool,
    launched: bool,
}

struct AgentsDriver<'a> {
    config: &'a AgentsConfig,
    run_tag: u32,
    sip: BatchSocket,
    local_sip: SocketAddr,
    rtp: Vec<BatchSocket>,
    rtp_addrs: Vec<SocketAddr>,
    agents: Vec<Agent>,
    agent_by_user: HashMap<String, usize>,
    agent_by_register_call: HashMap<String, usize>,
    calls: Vec<AnsweringCall>,
    call_by_id: HashMap<String, u32>,
    active_calls: Vec<u32>,
    rtp_by_port: Vec<u32>,
    sip_out: Vec<Vec<u8>>,
    sip_batch: SendBatch,
    echo_batch: SendBatch,
    sip_recv: RecvBatch,
    rtp_recv: RecvBatch,
    branch_counter: u64,
    figures: RegistrationFigures,
    calls_figures: OfferedCallFigures,
    register_latency_us: Histogram,
    jitter_us: Histogram,
    tick_lateness_us: Histogram,
    unmatched_rtp: u64,
    send_dropped: u64,
    sip_parse_errors: u64,
}

/// Runs the agents for `config.duration`, then unregisters them and reports.
pub fn run_agents(config: &AgentsConfig) -> Result<AgentsReport, LoadError> {
    config.validate()?;
    let local_ip = match config.target.ip() {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
    };
    let sip = BatchSocket::bind(SocketAddr::new(local_ip, 0), true)?;
    let local_sip = sip.local_addr()?;
    let mut rtp = Vec::new();
    let mut rtp_addrs = Vec::new();
    for _ in 0..config.rtp_sockets {
        let socket = BatchSocket::bind(SocketAddr::new(local_ip, 0), true)?;
        rtp_addrs.push(socket.local_addr()?);
        rtp.push(socket);
    }
    let now = Instant::now();
    let mut agents = Vec::with_capacity(config.accounts.len());
    let mut agent_by_user = HashMap::new();
    let mut agent_by_register_call = HashMap::new();
    for (i, account) in config.accounts.iter().enumerate() {
        let registration = Registration::new(
            RegistrationConfig {
                registrar_uri: format!("sip:{}", config.target),
                aor: format!("sip:{}@{}", account.id, config.target.ip()),
                contact: format!("sip:{}@{local_sip}", account.id),
                expires: config.expires,
                credentials: Credentials {
                    username: account.id.clone(),
                    password: account.password.clone(),
                },
                retry_after: Duration::from_secs(5),
            },
            now,
        );
        agent_by_register_call.insert(registration.call_id().to_owned(), i);
        if agent_by_user.insert(account.id.clone(), i).is_some() {
            return Err(LoadError::Invalid(format!(
                "account {} given twice",
                account.id
            )));
        }
        agents.push(Agent {
            registration,
            pending: None,
            started_at: None,
            registered: false,
            launched: false,
        });
    }
    let mut driver = AgentsDriver {
        config,
        run_tag: (process::wall_ns() as u32) ^ std::process::id().rotate_left(16),
        sip,
        local_sip,
        rtp,
        rtp_addrs,
        agents,
        agent_by_user,
        agent_by_register_call,
        calls: Vec::new(),
        call_by_id: HashMap::new(),
        active_calls: Vec::new(),
        rtp_by_port: vec![u32::MAX; 1 << 16],
        sip_out: Vec::new(),
        sip_batch: SendBatch::with_capacity(64, 64 * 1024),
        echo_batch: SendBatch::with_capacity(512, 512 * 2048),
        sip_recv: RecvBatch::new(64, 16 * 1024),
        rtp_recv: RecvBatch::new(512, 2048),
        branch_counter: 0,
        figures: RegistrationFigures {
            accounts: config.accounts.len() as u64,
            ..RegistrationFigures::default()
        },
        calls_figures: OfferedCallFigures::default(),
        register_latency_us: Histogram::new(),
        jitter_us: Histogram::new(),
        tick_lateness_us: Histogram::new(),
        unmatched_rtp: 0,
        send_dropped: 0,
        sip_parse_errors: 0,
    };
    driver.run()
}

impl AgentsDriver<'_> {
    fn run(&mut self) -> Result<AgentsReport, LoadError> {
        let cpu_before = process::cpu_time();
        let start = Instant::now();
        let deadline = start + self.config.duration;
        let mut pacer = Pacer::new(start, PACKET_PERIOD, 3);
        let mut launcher = Launcher::new(
            start,
            self.config.register_rate,
            self.agents.len() as u64,
            None,
        );
        let mut fds: Vec<libc::pollfd> = std::iter::once(self.sip.raw_fd())
            .chain(self.rtp.iter().map(BatchSocket::raw_fd))
            .map(batch_socket::poll_entry)
            .collect();
        // Bounded by the deadline.
        loop {
            let now = Instant::now();
            if now >= deadline || process::stop_requested() {
                break;
            }
            let mut wake = pacer.next_deadline().min(deadline);
            if let Some(at) = launcher.next_deadline(0) {
                wake = wake.min(at);
            }
            if wake > now {
                batch_socket::wait_readable(&mut fds, wake - now)?;
            }
            self.receive_sip()?;
            self.receive_rtp()?;
            let now = Instant::now();
            let mut started = 0;
            while started < 10_000 && launcher.poll(now, 0) {
                let index = launcher.launched() as usize - 1;
                if let Some(agent) = self.agents.get_mut(index) {
                    agent.launched = true;
                }
                self.poll_registration(index, now);
                started += 1;
            }
            while let Some(tick) = pacer.poll(Instant::now()) {
                self.tick_lateness_us
                    .record(tick.lateness.as_micros() as u64);
                self.on_tick(Instant::now());
            }
            self.flush_sip()?;
        }
        self.finish()?;
        let end = Instant::now();
        let cpu_after = process::cpu_time();
        let cpu = (
            cpu_after.0.saturating_sub(cpu_before.0),
            cpu_after.1.saturating_sub(cpu_before.1),
        );
        Ok(self.report(end.duration_since(start), cpu))
    }

    fn send_register(&mut self, index: usize, mut request: Message, now: Instant) {
        self.branch_counter += 1;
        request.remove_header("Via");
        request.prepend_header(
            "Via",
            format!(
                "SIP/2.0/UDP {};rport;branch=z9hG4bK{:08x}r{}",
                self.local_sip, self.run_tag, self.branch_counter
            ),
        );
        if request.header("Max-Forwards").is_none() {
            request.push_header("Max-Forwards", "70");
        }
        let bytes = request.to_bytes();
        self.sip_out.push(bytes.clone());
        let t1 = self.config.timers.t1;
        let agent = &mut self.agents[index];
        agent.started_at.get_or_insert(now);
        agent.pending = Some(PendingRegister {
            request,
            bytes,
            retransmit_at: now + t1,
            interval: t1,
            give_up_at: now + 64 * t1,
        });
    }

    fn poll_registration(&mut self, index: usize, now: Instant) {
        if !self.agents[index].launched || self.agents[index].pending.is_some() {
            return;
        }
        if let Some(request) = self.agents[index].registration.poll_request(now) {
            self.send_register(index, request, now);
        }
    }

    fn on_tick(&mut self, now: Instant) {
        for index in 0..self.agents.len() {
            let timers = self.config.timers;
            let agent = &mut self.agents[index];
            if let Some(pending) = agent.pending.as_mut() {
                if now >= pending.give_up_at {
                    agent.pending = None;
                    agent.registration.handle_failure(now);
                    agent.started_at = None;
                    self.figures.timed_out += 1;
                } else if now >= pending.retransmit_at {
                    self.sip_out.push(pending.bytes.clone());
                    self.figures.retransmissions += 1;
                    pending.interval = (pending.interval * 2).min(timers.t2);
                    pending.retransmit_at = now + pending.interval;
                }
            }
            self.poll_registration(index, now);
        }
        let mut ended = Vec::new();
        for &index in &self.active_calls {
            if self.calls[index as usize].on_timer(now, &mut self.sip_out) == Progress::Ended {
                ended.push(index);
            }
        }
        if !ended.is_empty() {
            for index in ended {
                self.record_end(index);
            }
            self.sweep();
        }
    }

    fn sweep(&mut self) {
        let calls = &self.calls;
        let by_port = &mut self.rtp_by_port;
        self.active_calls.retain(|&index| {
            let call = &calls[index as usize];
            if !call.is_done() {
                return true;
            }
            let slot = &mut by_port[usize::from(call.remote_rtp.port())];
            if *slot == index {
                *slot = u32::MAX;
            }
            false
        });
    }

    fn flush_sip(&mut self) -> Result<(), LoadError> {
        if self.sip_out.is_empty() {
            return Ok(());
        }
        for datagram in self.sip_out.drain(..) {
            self.sip_batch.push(self.config.target, &datagram);
        }
        let (_, dropped) = self.sip.send_batch(&mut self.sip_batch)?;
        self.send_dropped += dropped as u64;
        Ok(())
    }

    fn receive_sip(&mut self) -> Result<(), LoadError> {
        for _ in 0..64 {
            let n = self.sip.recv_batch(&mut self.sip_recv)?;
            if n == 0 {
                break;
            }
            let now = Instant::now();
            for i in 0..n {
                let Some((bytes, meta)) = self.sip_recv.get(i) else {
                    continue;
                };
                match Message::parse(bytes) {
                    Ok(message) if !meta.truncated => self.on_sip(now, &message),
                    _ => self.sip_parse_errors += 1,
                }
            }
            self.flush_sip()?;
        }
        Ok(())
    }

    fn on_sip(&mut self, now: Instant, message: &Message) {
        let call_id = message.call_id().unwrap_or_default();
        if !message.is_request() {
            if let Some(&index) = self.agent_by_register_call.get(call_id) {
                self.on_register_response(index, now, message);
            }
            return;
        }
        if let Some(&index) = self.call_by_id.get(call_id) {
            let _span = info_span!("call", call_id).entered();
            if self.calls[index as usize].on_request(message, &mut self.sip_out) == Progress::Ended
            {
                self.record_end(index);
                self.sweep();
            }
            return;
        }
        match message.method() {
            Some(Method::Invite) => self.on_new_invite(now, message),
            Some(Method::Ack) => {}
            Some(Method::Options) => self
                .sip_out
                .push(Message::response_to(message, 200, "OK").to_bytes()),
            _ => self.sip_out.push(
                Message::response_to(message, 481, "Call/Transaction Does Not Exist").to_bytes(),
            ),
        }
    }

    fn record_end(&mut self, index: u32) {
        match self.calls[index as usize].outcome() {
            Some(AgentOutcome::Completed) => self.calls_figures.completed += 1,
            Some(AgentOutcome::Cancelled) => self.calls_figures.cancelled += 1,
            Some(AgentOutcome::AckTimeout) => self.calls_figures.ack_timeouts += 1,
            Some(AgentOutcome::Unfinished) => self.calls_figures.unfinished += 1,
            None => {}
        }
    }

    fn on_new_invite(&mut self, now: Instant, invite: &Message) {
        let user = invite
            .request_uri()
            .and_then(santral_sip::msg::uri_user)
            .unwrap_or_default();
        let agent = self
            .agent_by_user
            .get(user)
            .copied()
            .filter(|&i| self.agents[i].registered);
        let Some(agent) = agent else {
            self.calls_figures.unknown_user += 1;
            self.sip_out
                .push(Message::response_to(invite, 404, "Not Found").to_bytes());
            return;
        };
        self.calls_figures.offered += 1;
        let index = self.calls.len() as u32;
        let rtp_socket = index as usize % self.rtp.len();
        let setup = AnswerSetup {
            local_rtp: self.rtp_addrs[rtp_socket],
            rtp_socket,
            answer_after: self.config.answer_after,
            timers: self.config.timers,
            to_tag: format!("{index}a{:08x}", self.run_tag),
            contact: format!("sip:{}@{}", self.config.accounts[agent].id, self.local_sip),
            session_id: u64::from(index),
        };
        match AnsweringCall::offer(invite, &setup, now, &mut self.sip_out) {
            Ok(call) => {
                debug!(call_id = call.call_id(), agent = user, "offered");
                self.rtp_by_port[usize::from(call.remote_rtp.port())] = index;
                self.call_by_id.insert(call.call_id().to_owned(), index);
                self.calls.push(call);
                self.active_calls.push(index);
                self.calls_figures.peak_concurrent = self
                    .calls_figures
                    .peak_concurrent
                    .max(self.active_calls.len() as u64);
            }
            Err(_) => self.calls_figures.refused_488 += 1,
        }
    }

    fn on_register_response(&mut self, index: usize, now: Instant, response: &Message) {
        let Some(pending) = self.agents[index].pending.as_ref() else {
            return;
        };
        // Provisional responses, and answers to an earlier REGISTER of this binding (a
        // retransmission's second 401, say), leave the pending request waiting.
        let same_cseq = matches!(
            (response.cseq(), pending.request.cseq()),
            (Ok((ours, _)), Ok((theirs, _))) if ours == theirs
        );
        if response.status().is_some_and(|s| s < 200) || !same_cseq {
            return;
        }
        let request = pending.request.clone();
        let agent = &mut self.agents[index];
        agent.pending = None;
        match agent.registration.handle_response(now, &request, response) {
            RegistrationEvent::Send(next) => {
                self.figures.challenges += 1;
                self.send_register(index, next, now);
            }
            RegistrationEvent::Registered { .. } => {
                if !agent.registered {
                    agent.registered = true;
                    self.figures.registered += 1;
                    if let Some(started) = agent.started_at.take() {
                        self.register_latency_us
                            .record(now.duration_since(started).as_micros() as u64);
                    }
                }
            }
            RegistrationEvent::Unregistered => {
                agent.registered = false;
                self.figures.unregistered_at_end += 1;
            }
            RegistrationEvent::Failed { status } => {
                agent.started_at = None;
                *self.figures.failed_by_status.entry(status).or_default() += 1;
            }
            RegistrationEvent::Ignored => {}
        }
    }

    fn receive_rtp(&mut self) -> Result<(), LoadError> {
        for socket in 0..self.rtp.len() {
            for _ in 0..64 {
                let n = self.rtp[socket].recv_batch(&mut self.rtp_recv)?;
                if n == 0 {
                    break;
                }
                let fallback_ns = process::wall_ns();
                for i in 0..n {
                    let Some((bytes, meta)) = self.rtp_recv.get(i) else {
                        continue;
                    };
                    let (Some(header), Some(source)) = (rtp::read_header(bytes), meta.source)
                    else {
                        self.unmatched_rtp += 1;
                        continue;
                    };
                    let index = self.rtp_by_port[usize::from(source.port())];
                    let call = self
                        .calls
                        .get_mut(index as usize)
                        .filter(|call| call.remote_rtp == source && !call.is_done());
                    match call {
                        Some(call) => {
                            call.receiver.on_packet(
                                &header,
                                meta.arrival_ns.unwrap_or(fallback_ns),
                                &mut self.jitter_us,
                            );
                            call.echoed += 1;
                            self.echo_batch.push(source, bytes);
                        }
                        None => self.unmatched_rtp += 1,
                    }
                }
                if !self.echo_batch.is_empty() {
                    let (_, dropped) = self.rtp[socket].send_batch(&mut self.echo_batch)?;
                    self.send_dropped += dropped as u64;
                }
            }
        }
        Ok(())
    }

    /// Hangs up what is left and unregisters every agent (waiting at most 2 s for answers).
    fn finish(&mut self) -> Result<(), LoadError> {
        let via = format!("SIP/2.0/UDP {};rport", self.local_sip);
        for index in self.active_calls.clone() {
            if self.calls[index as usize].abandon(&mut self.sip_out, &via) == Progress::Ended {
                self.record_end(index);
            }
        }
        self.sweep();
        let now = Instant::now();
        for index in 0..self.agents.len() {
            if self.agents[index].registered {
                let request = self.agents[index].registration.unregister();
                self.send_register(index, request, now);
            }
        }
        self.flush_sip()?;
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut fds = [batch_socket::poll_entry(self.sip.raw_fd())];
        while self.agents.iter().any(|a| a.pending.is_some()) {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            batch_socket::wait_readable(&mut fds, (deadline - now).min(Duration::from_millis(50)))?;
            self.receive_sip()?;
            self.flush_sip()?;
        }
        Ok(())
    }

    fn report(&self, wall: Duration, cpu: (Duration, Duration)) -> AgentsReport {
        let mut figures = self.figures.clone();
        figures.register_to_200_us = Some(self.register_latency_us.summary());
        let mut calls = self.calls_figures.clone();
        calls.answered = self.calls.iter().filter(|c| c.answered).count() as u64;
        calls.ok_retransmissions = self
            .calls
            .iter()
            .map(|c| u64::from(c.ok_retransmissions))
            .sum();
        let receive_drops = std::iter::once(&self.sip)
            .chain(&self.rtp)
            .map(|s| u64::from(s.kernel_drops()))
            .sum();
        let cpu_total = (cpu.0 + cpu.1).as_secs_f64();
        AgentsReport {
            target: self.config.target.to_string(),
            duration_s: wall.as_secs_f64(),
            registrations: figures,
            calls,
            rtp: EchoFigures {
                received: self.calls.iter().map(|c| c.receiver.received()).sum(),
                echoed: self.calls.iter().map(|c| c.echoed).sum(),
                lost: self.calls.iter().map(|c| c.receiver.lost()).sum(),
                unmatched: self.unmatched_rtp,
                receive_jitter_us: self.jitter_us.summary(),
            },
            generator: AgentGeneratorFigures {
                tick_lateness_us: self.tick_lateness_us.summary(),
                send_dropped: self.send_dropped,
                receive_buffer_drops: receive_drops,
                sip_parse_errors: self.sip_parse_errors,
                cpu_user_s: cpu.0.as_secs_f64(),
                cpu_system_s: cpu.1.as_secs_f64(),
                cpu_percent: if wall.is_zero() {
                    0.0
                } else {
                    100.0 * cpu_total / wall.as_secs_f64()
                },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_parse_and_bad_ones_are_refused() {
        assert_eq!(
            Account::parse("2001:secret2001").unwrap(),
            Account {
                id: "2001".into(),
                password: "secret2001".into()
            }
        );
        assert_eq!(Account::parse("3001:a:b").unwrap().password, "a:b");
        assert!(Account::parse("nopassword").is_err());
        assert!(Account::parse("bad user:x").is_err());
        assert!(Account::parse(":x").is_err());
    }
}
