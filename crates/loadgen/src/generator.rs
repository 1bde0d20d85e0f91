//! The driver: one thread, one SIP socket and a few RTP sockets, woken by `ppoll` for received
//! packets, the next call launch and the shared 20 ms media tick. Every answered call's packet
//! of a tick goes out in one `sendmmsg` per RTP socket.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use santral_sip::Message;
use thiserror::Error;
use tracing::{debug, info_span, warn};

use crate::audio::EncodedAudio;
use crate::batch_socket::{self, BatchSocket, RecvBatch, SendBatch};
use crate::call::{self, Call, CallSetup, Outcome, Progress, SipTimers};
use crate::media_stream::MAX_PACKET;
use crate::process;
use crate::report::{
    CallCounts, CallLine, GeneratorFigures, Report, RetransmissionCounts, RtpFigures, Settings,
};
use crate::rtp;
use crate::schedule::{Launcher, Pacer};
use crate::sdp::Law;
use crate::stats::Histogram;
use crate::target::{LoopbackError, ensure_loopback};

/// The media tick.
pub const PACKET_PERIOD: Duration = Duration::from_millis(20);
/// Ticks a late generator sends back to back before it skips.
const MAX_CATCH_UP_TICKS: u64 = 3;
/// Shortest time between two RTP drains (bounds wake-ups, not accuracy: arrival times are the
/// kernel's).
const RTP_DRAIN_INTERVAL: Duration = Duration::from_millis(2);
/// Receive batches drained per socket per wake (bounds one wake's work).
const MAX_DRAINS_PER_WAKE: usize = 64;
/// Tick lateness (µs) at p99 above which the generator reports itself as the limit.
const LATE_P99_US: u64 = 2_000;

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub target: SocketAddr,
    pub to_user: String,
    pub rate_per_s: f64,
    pub calls: u64,
    pub max_concurrent: Option<usize>,
    pub hold: Duration,
    /// Key (`0`–`9`, `*`, `#`, `A`–`D`) and its time after the answer.
    pub digit: Option<(char, Duration)>,
    pub law: Law,
    pub audio: EncodedAudio,
    pub max_duration: Duration,
    /// RTP sockets the calls are spread over (each advertised by many calls).
    pub rtp_sockets: usize,
    /// Send phases per 20 ms period (1–20): call i sends in phase i mod phases, one
    /// `sendmmsg` per phase and socket.
    pub send_phases: u32,
    pub timers: SipTimers,
}

#[derive(Debug, Error)]
pub enum LoadError {
    #[error("target: {0}")]
    Target(#[from] LoopbackError),
    #[error("{0}")]
    Invalid(String),
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
}

impl LoadConfig {
    pub fn validate(&self) -> Result<(), LoadError> {
        ensure_loopback(self.target)?;
        let invalid = |m: &str| Err(LoadError::Invalid(m.to_owned()));
        if !(self.rate_per_s.is_finite() && self.rate_per_s > 0.0) {
            return invalid("--rate must be a positive number of calls per second");
        }
        if self.calls == 0 {
            return invalid("--calls must be at least 1");
        }
        if self.calls > u64::from(u32::MAX) {
            return invalid("--calls is too large");
        }
        if self.max_concurrent == Some(0) {
            return invalid("--max-concurrent must be at least 1");
        }
        if !(1..=64).contains(&self.rtp_sockets) {
            return invalid("--rtp-sockets must be between 1 and 64");
        }
        if !(1..=20).contains(&self.send_phases) {
            return invalid("--send-phases must be between 1 and 20");
        }
        if self.to_user.is_empty()
            || self
                .to_user
                .bytes()
                .any(|b| !(b.is_ascii_alphanumeric() || b"-_.!~*'()+".contains(&b)))
        {
            return invalid("--to must be a SIP user part (letters, digits, -_.!~*'()+)");
        }
        if let Some((key, _)) = self.digit
            && crate::digit::event_code(key).is_none()
        {
            return invalid("--digit must be one of 0-9 * # A-D");
        }
        if self.max_duration.is_zero() {
            return invalid("--max-duration must be positive");
        }
        Ok(())
    }

    fn local_ip(&self) -> IpAddr {
        match self.target.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        }
    }
}

/// Per-run measurements the driver accumulates.
struct Meters {
    latency_us: Histogram,
    refusal_latency_us: Histogram,
    receive_jitter_us: Histogram,
    tick_lateness_us: Histogram,
    send_jitter_us: Histogram,
    send_dropped: u64,
    unmatched_rtp: u64,
    sip_parse_errors: u64,
    peak_concurrent: u64,
}

/// One run of the generator.
struct Driver<'a> {
    config: &'a LoadConfig,
    run_tag: u32,
    sip: BatchSocket,
    local_sip: SocketAddr,
    rtp: Vec<BatchSocket>,
    rtp_addrs: Vec<SocketAddr>,
    calls: Vec<Call>,
    /// INVITE send time (wall ns) and 200 arrival latency (µs) per call.
    invite_wall_ns: Vec<u64>,
    latency_us: Vec<Option<u64>>,
    active: Vec<u32>,
    /// Server RTP source port → call index (u32::MAX: none). Loopback traffic from one server.
    rtp_by_port: Vec<u32>,
    sip_out: Vec<Vec<u8>>,
    sip_batch: SendBatch,
    rtp_batches: Vec<SendBatch>,
    sip_recv: RecvBatch,
    rtp_recv: RecvBatch,
    meters: Meters,
    ended_since_sweep: bool,
}

/// Runs the load described by `config` and reports what it measured.
pub fn run(config: &LoadConfig) -> Result<Report, LoadError> {
    config.validate()?;
    let local_ip = config.local_ip();
    let sip = BatchSocket::bind(SocketAddr::new(local_ip, 0), true)?;
    let local_sip = sip.local_addr()?;
    let mut rtp = Vec::with_capacity(config.rtp_sockets);
    let mut rtp_addrs = Vec::with_capacity(config.rtp_sockets);
    for _ in 0..config.rtp_sockets {
        let socket = BatchSocket::bind(SocketAddr::new(local_ip, 0), true)?;
        rtp_addrs.push(socket.local_addr()?);
        rtp.push(socket);
    }
    let calls = config.calls as usize;
    let per_socket = calls.div_ceil(config.rtp_sockets).max(1);
    let mut driver = Driver {
        config,
        run_tag: (process::wall_ns() as u32) ^ std::process::id().rotate_left(16),
        sip,
        local_sip,
        rtp,
        rtp_addrs,
        calls: Vec::with_capacity(calls),
        invite_wall_ns: Vec::with_capacity(calls),
        latency_us: Vec::with_capacity(calls),
        active: Vec::new(),
        rtp_by_port: vec![u32::MAX; 1 << 16],
        sip_out: Vec::new(),
        sip_batch: SendBatch::with_capacity(64, 64 * 1024),
        rtp_batches: (0..config.rtp_sockets)
            .map(|_| {
                SendBatch::with_capacity(per_socket.min(4096), per_socket.min(4096) * MAX_PACKET)
            })
            .collect(),
        sip_recv: RecvBatch::new(64, 16 * 1024),
        rtp_recv: RecvBatch::new(512, 2048),
        meters: Meters {
            latency_us: Histogram::new(),
            refusal_latency_us: Histogram::new(),
            receive_jitter_us: Histogram::new(),
            tick_lateness_us: Histogram::new(),
            send_jitter_us: Histogram::new(),
            send_dropped: 0,
            unmatched_rtp: 0,
            sip_parse_errors: 0,
            peak_concurrent: 0,
        },
        ended_since_sweep: false,
    };
    driver.run()
}

impl Driver<'_> {
    fn run(&mut self) -> Result<Report, LoadError> {
        let cpu_before = process::cpu_time();
        let start = Instant::now();
        let deadline = start + self.config.max_duration;
        // The 20 ms period is cut into send phases; call i sends in phase i mod phases, so the
        // server sees packets spread over the period as from independent phones, not one burst.
        let phases = self.config.send_phases;
        let sub_period = PACKET_PERIOD / phases;
        let mut pacer = Pacer::new(start, sub_period, MAX_CATCH_UP_TICKS * u64::from(phases));
        let mut launcher = Launcher::new(
            start,
            self.config.rate_per_s,
            self.config.calls,
            self.config.max_concurrent,
        );
        // SIP wakes the generator at once; RTP at most every RTP_DRAIN_INTERVAL. Its kernel
        // timestamps keep arrival times exact, and batches instead of a wake-up per packet keep
        // the generator's CPU per call low (it must never be the limit being measured).
        let mut fds: Vec<libc::pollfd> = std::iter::once(self.sip.raw_fd())
            .chain(self.rtp.iter().map(BatchSocket::raw_fd))
            .map(batch_socket::poll_entry)
            .collect();
        let mut last_rtp_drain = start;
        let mut last_send: Option<Instant> = None;
        // Bounded by the deadline: every pass either waits for time to pass or works.
        loop {
            let now = Instant::now();
            if now >= deadline || process::stop_requested() {
                launcher.stop();
                self.abandon_all(now)?;
                break;
            }
            if launcher.is_done() && self.active.is_empty() {
                break;
            }
            let mut wake = pacer.next_deadline().min(deadline);
            if let Some(at) = launcher.next_deadline(self.active.len()) {
                wake = wake.min(at);
            }
            let rtp_due = last_rtp_drain + RTP_DRAIN_INTERVAL;
            let watched = if now >= rtp_due {
                fds.len()
            } else {
                wake = wake.min(rtp_due);
                1
            };
            if wake > now {
                batch_socket::wait_readable(&mut fds[..watched], wake - now)?;
            }
            self.receive_sip()?;
            let now = Instant::now();
            if now >= rtp_due {
                self.receive_rtp()?;
                last_rtp_drain = now;
            }
            let mut launched = 0;
            while launched < 10_000 && launcher.poll(now, self.active.len()) {
                self.launch(now)?;
                launched += 1;
            }
            self.flush_sip()?;
            while let Some(tick) = pacer.poll(Instant::now()) {
                self.meters
                    .tick_lateness_us
                    .record(tick.lateness.as_micros() as u64);
                self.tick(tick.index, Instant::now())?;
                let sent_at = Instant::now();
                if let Some(last) = last_send {
                    let interval = sent_at.duration_since(last).as_micros() as u64;
                    self.meters
                        .send_jitter_us
                        .record(interval.abs_diff(sub_period.as_micros() as u64));
                }
                last_send = Some(sent_at);
            }
            self.sweep();
        }
        let end = Instant::now();
        let cpu_after = process::cpu_time();
        let cpu = (
            cpu_after.0.saturating_sub(cpu_before.0),
            cpu_after.1.saturating_sub(cpu_before.1),
        );
        Ok(self.report(end.duration_since(start), cpu, pacer.skipped()))
    }

    /// Starts one call and sends its INVITE at once (its send time is the latency's start).
    fn launch(&mut self, now: Instant) -> Result<(), LoadError> {
        let index = self.calls.len() as u32;
        let rtp_socket = index as usize % self.rtp.len();
        let setup = CallSetup {
            index,
            run_tag: self.run_tag,
            local_sip: self.local_sip,
            target: self.config.target,
            to_user: self.config.to_user.clone(),
            local_rtp: self.rtp_addrs[rtp_socket],
            rtp_socket,
            law: self.config.law,
            hold: self.config.hold,
            digit: self
                .config
                .digit
                .and_then(|(key, at)| crate::digit::event_code(key).map(|code| (code, at))),
            timers: self.config.timers,
        };
        let call = Call::start(&setup, now, &mut self.sip_out);
        debug!(call_id = call.call_id(), "INVITE");
        self.calls.push(call);
        self.invite_wall_ns.push(process::wall_ns());
        self.flush_sip()?;
        self.latency_us.push(None);
        self.active.push(index);
        self.meters.peak_concurrent = self.meters.peak_concurrent.max(self.active.len() as u64);
        Ok(())
    }

    fn flush_sip(&mut self) -> Result<(), LoadError> {
        if self.sip_out.is_empty() {
            return Ok(());
        }
        for datagram in self.sip_out.drain(..) {
            self.sip_batch.push(self.config.target, &datagram);
        }
        let (_, dropped) = self.sip.send_batch(&mut self.sip_batch)?;
        self.meters.send_dropped += dropped as u64;
        Ok(())
    }

    fn receive_sip(&mut self) -> Result<(), LoadError> {
        for _ in 0..MAX_DRAINS_PER_WAKE {
            let n = self.sip.recv_batch(&mut self.sip_recv)?;
            if n == 0 {
                break;
            }
            let now = Instant::now();
            for i in 0..n {
                let Some((bytes, meta)) = self.sip_recv.get(i) else {
                    continue;
                };
                let message = match Message::parse(bytes) {
                    Ok(message) if !meta.truncated => message,
                    _ => {
                        self.meters.sip_parse_errors += 1;
                        continue;
                    }
                };
                let arrival_ns = meta.arrival_ns;
                self.on_sip(now, arrival_ns, &message);
            }
            self.flush_sip()?;
        }
        Ok(())
    }

    fn on_sip(&mut self, now: Instant, arrival_ns: Option<u64>, message: &Message) {
        let index = message
            .call_id()
            .and_then(|id| call::call_index(id, self.run_tag))
            .filter(|&i| (i as usize) < self.calls.len());
        let Some(index) = index else {
            if message.is_request() && message.method() != Some(&santral_sip::Method::Ack) {
                self.sip_out.push(
                    Message::response_to(message, 481, "Call/Transaction Does Not Exist")
                        .to_bytes(),
                );
            }
            return;
        };
        let call = &mut self.calls[index as usize];
        let _span = info_span!("call", call_id = call.call_id()).entered();
        let progress = if message.is_request() {
            call.on_request(message, &mut self.sip_out)
        } else {
            call.on_response(
                now,
                message,
                call::ssrc_of(index, self.run_tag),
                &mut self.sip_out,
            )
        };
        match progress {
            Progress::Answered => {
                let latency = match arrival_ns {
                    Some(at) => at.saturating_sub(self.invite_wall_ns[index as usize]) / 1_000,
                    None => call.latency().map_or(0, |l| l.as_micros() as u64),
                };
                self.latency_us[index as usize] = Some(latency);
                self.meters.latency_us.record(latency);
                if let Some(media) = &call.media {
                    self.rtp_by_port[usize::from(media.remote.port())] = index;
                }
            }
            Progress::Ended => {
                if call.outcome().is_some_and(Outcome::answered)
                    && let Some(latency) = call.latency()
                    && self.latency_us[index as usize].is_none()
                {
                    // Answered with an unusable SDP: still an answer, still a latency.
                    let latency = latency.as_micros() as u64;
                    self.latency_us[index as usize] = Some(latency);
                    self.meters.latency_us.record(latency);
                }
                if matches!(call.outcome(), Some(Outcome::Refused { .. })) {
                    // How fast overload control turns a call away.
                    let sent = self.invite_wall_ns[index as usize];
                    let latency = match arrival_ns {
                        Some(at) => at.saturating_sub(sent) / 1_000,
                        None => process::wall_ns().saturating_sub(sent) / 1_000,
                    };
                    self.meters.refusal_latency_us.record(latency);
                }
                self.ended_since_sweep = true;
            }
            Progress::Nothing => {}
        }
    }

    fn receive_rtp(&mut self) -> Result<(), LoadError> {
        for socket in 0..self.rtp.len() {
            for _ in 0..MAX_DRAINS_PER_WAKE {
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
                        self.meters.unmatched_rtp += 1;
                        continue;
                    };
                    let index = self.rtp_by_port[usize::from(source.port())];
                    let media = self
                        .calls
                        .get_mut(index as usize)
                        .and_then(|call| call.media.as_mut())
                        .filter(|media| media.remote == source);
                    match media {
                        Some(media) => media.on_packet(
                            &header,
                            meta.arrival_ns.unwrap_or(fallback_ns),
                            &mut self.meters.receive_jitter_us,
                        ),
                        None => self.meters.unmatched_rtp += 1,
                    }
                }
            }
        }
        Ok(())
    }

    /// One sub-tick of the shared clock: for the calls of this send phase, SIP timers, then
    /// their packet of this 20 ms period, batched per RTP socket.
    fn tick(&mut self, sub_tick: u64, now: Instant) -> Result<(), LoadError> {
        let config = self.config;
        let audio = &config.audio;
        let phases = u64::from(config.send_phases);
        let (tick, phase) = (sub_tick / phases, sub_tick % phases);
        for &index in &self.active {
            if u64::from(index) % phases != phase {
                continue;
            }
            let call = &mut self.calls[index as usize];
            if call.on_timer(now, &mut self.sip_out) == Progress::Ended {
                self.ended_since_sweep = true;
                continue;
            }
            if call.media_active()
                && let Some(media) = call.media.as_mut()
            {
                let to = media.remote;
                self.rtp_batches[media.socket]
                    .push_with::<MAX_PACKET>(to, |slot| media.write_packet(tick, now, audio, slot));
            }
        }
        for (socket, batch) in self.rtp.iter().zip(self.rtp_batches.iter_mut()) {
            if !batch.is_empty() {
                let (_, dropped) = socket.send_batch(batch)?;
                self.meters.send_dropped += dropped as u64;
            }
        }
        self.flush_sip()
    }

    /// Drops ended calls from the active list (and their RTP demux entries).
    fn sweep(&mut self) {
        if !self.ended_since_sweep {
            return;
        }
        self.ended_since_sweep = false;
        let calls = &self.calls;
        let by_port = &mut self.rtp_by_port;
        self.active.retain(|&index| {
            let call = &calls[index as usize];
            if !call.is_done() {
                return true;
            }
            if let Some(media) = &call.media {
                let slot = &mut by_port[usize::from(media.remote.port())];
                if *slot == index {
                    *slot = u32::MAX;
                }
            }
            false
        });
    }

    fn abandon_all(&mut self, now: Instant) -> Result<(), LoadError> {
        for &index in &self.active {
            self.calls[index as usize].abandon(now, &mut self.sip_out);
        }
        if !self.active.is_empty() {
            warn!(
                calls = self.active.len(),
                "time limit reached: calls in progress abandoned"
            );
        }
        self.ended_since_sweep = true;
        self.sweep();
        self.flush_sip()
    }

    fn report(&self, wall: Duration, cpu: (Duration, Duration), skipped_ticks: u64) -> Report {
        let config = self.config;
        let mut counts = CallCounts {
            attempted: self.calls.len() as u64,
            peak_concurrent: self.meters.peak_concurrent,
            ..CallCounts::default()
        };
        let mut retransmissions = RetransmissionCounts::default();
        let mut sent = 0;
        let mut received = 0;
        let mut lost = 0;
        let mut digit_packets = 0;
        let mut digits_refused = 0;
        let mut received_per_answered = Vec::new();
        let mut per_call = Vec::with_capacity(self.calls.len());
        for (i, call) in self.calls.iter().enumerate() {
            let outcome = call.outcome().cloned().unwrap_or(Outcome::Unfinished);
            if outcome.answered() {
                counts.answered += 1;
            }
            match &outcome {
                Outcome::Completed => counts.completed += 1,
                Outcome::HungUpByServer => counts.hung_up_by_server += 1,
                Outcome::ByeTimeout => counts.bye_timed_out += 1,
                Outcome::Failed(code) => *counts.failed_by_status.entry(*code).or_default() += 1,
                Outcome::Refused { .. } => counts.refused_503 += 1,
                Outcome::InviteTimeout => counts.timed_out += 1,
                Outcome::BadAnswer(_) => counts.bad_answer += 1,
                Outcome::Unfinished => {
                    counts.unfinished += 1;
                    if call.latency().is_some() {
                        counts.answered += 1;
                    }
                }
            }
            retransmissions.invite += u64::from(call.retransmissions.invite);
            retransmissions.bye += u64::from(call.retransmissions.bye);
            retransmissions.ok_received_again += u64::from(call.retransmissions.ok_received_again);
            let (call_sent, call_received, call_lost) =
                call.media.as_ref().map_or((0, 0, 0), |m| {
                    (m.sent, m.receiver.received(), m.receiver.lost())
                });
            if let Some(media) = &call.media {
                digit_packets += media.digit_packets;
                digits_refused += u64::from(media.digit_refused);
                received_per_answered.push(call_received);
            }
            sent += call_sent;
            received += call_received;
            lost += call_lost;
            per_call.push(CallLine {
                index: call.index(),
                call_id: call.call_id().to_owned(),
                outcome: outcome.label(),
                status: call.final_status(),
                invite_to_200_us: self.latency_us.get(i).copied().flatten(),
                invite_retransmissions: call.retransmissions.invite,
                bye_retransmissions: call.retransmissions.bye,
                rtp_sent: call_sent,
                rtp_received: call_received,
                rtp_lost: call_lost,
            });
        }
        received_per_answered.sort_unstable();
        let tick_lateness = self.meters.tick_lateness_us.summary();
        let mut reasons = Vec::new();
        if tick_lateness.p99 > LATE_P99_US {
            reasons.push(format!(
                "tick lateness p99 {} µs > {LATE_P99_US} µs",
                tick_lateness.p99
            ));
        }
        if skipped_ticks > 0 {
            reasons.push(format!("{skipped_ticks} ticks skipped"));
        }
        let receive_drops: u64 = std::iter::once(&self.sip)
            .chain(&self.rtp)
            .map(|socket| u64::from(socket.kernel_drops()))
            .sum();
        if receive_drops > 0 {
            reasons.push(format!(
                "{receive_drops} packets dropped by full receive buffers"
            ));
        }
        if self.meters.send_dropped > 0 {
            reasons.push(format!(
                "{} packets dropped at send",
                self.meters.send_dropped
            ));
        }
        let cpu_total = (cpu.0 + cpu.1).as_secs_f64();
        Report {
            settings: Settings {
                target: config.target.to_string(),
                to: config.to_user.clone(),
                rate_per_s: config.rate_per_s,
                calls: config.calls,
                max_concurrent: config.max_concurrent,
                hold_ms: config.hold.as_millis() as u64,
                digit: config.digit.map(|(key, _)| key.to_string()),
                digit_at_ms: config.digit.map(|(_, at)| at.as_millis() as u64),
                codec: config.law.encoding_name().to_ascii_lowercase(),
                rtp_sockets: config.rtp_sockets,
                send_phases: config.send_phases,
                max_duration_ms: config.max_duration.as_millis() as u64,
            },
            duration_s: wall.as_secs_f64(),
            calls: counts,
            retransmissions,
            invite_to_200_us: self.meters.latency_us.summary(),
            invite_to_503_us: self.meters.refusal_latency_us.summary(),
            rtp: RtpFigures {
                sent,
                received,
                lost,
                digit_packets_sent: digit_packets,
                digits_refused,
                unmatched: self.meters.unmatched_rtp,
                per_call_received_min: received_per_answered.first().copied().unwrap_or(0),
                per_call_received_median: received_per_answered
                    .get(received_per_answered.len() / 2)
                    .copied()
                    .unwrap_or(0),
                receive_jitter_us: self.meters.receive_jitter_us.summary(),
            },
            generator: GeneratorFigures {
                tick_lateness_us: tick_lateness,
                send_interval_jitter_us: self.meters.send_jitter_us.summary(),
                skipped_ticks,
                send_dropped: self.meters.send_dropped,
                receive_buffer_drops: receive_drops,
                sip_parse_errors: self.meters.sip_parse_errors,
                cpu_user_s: cpu.0.as_secs_f64(),
                cpu_system_s: cpu.1.as_secs_f64(),
                cpu_percent: if wall.is_zero() {
                    0.0
                } else {
                    100.0 * cpu_total / wall.as_secs_f64()
                },
                client_limited: !reasons.is_empty(),
                client_limited_reasons: reasons,
            },
            per_call,
        }
    }
}
