//! The media engine: a few threads (one per core by default) drive every call's media.
//!
//! Each media thread wakes on the shared 20 ms grid and walks its sessions in a fixed order;
//! per session it reads what arrived (usually one `recvmsg`, with the kernel's arrival times), takes
//! the call's commands, runs the tick and sends the frame. Nothing asynchronous sits on this
//! path: no task wake-up per session, no reactor event per packet (the sockets leave tokio's
//! reactor while the engine holds them), and RTCP, which comes every few seconds, is watched
//! by one level-triggered epoll per thread instead of a read per call per tick. Because the
//! walk order is fixed, each stream leaves at the same offset in every period, so its send
//! interval stays even however many calls share the core.
//!
//! The call task talks to its session as before: commands and events over channels, and a
//! [`SessionJoin`] that yields the session and its sockets (back in tokio's hands) when the
//! session is detached or shut down.

use std::future::Future;
use std::io;
use std::net::UdpSocket as StdUdpSocket;
use std::os::fd::AsFd;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc as std_mpsc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use thiserror::Error;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, oneshot};
use tracing::{Span, debug, error, warn};

use crate::driver::{MediaCommand, RtpSockets, SessionEnd, TickAudio, apply_command};
use crate::pacer::{FRAME_PERIOD, LagMeter, PacingSchedule};
use crate::port::PortLease;
use crate::prefetch::prefetch;
use crate::quality::QualitySummary;
use crate::receive::{self, ArrivalClock};
use crate::session::{MediaEvent, MediaSession};

/// Most RTP datagrams read per session per tick: a flood waits in (and overflows) the kernel's
/// buffer instead of taking the thread from every other call.
const MAX_RTP_PER_TICK: usize = 16;

/// Most RTCP datagrams read per session per tick.
const MAX_RTCP_PER_TICK: usize = 4;

/// Largest datagram read whole (RTP of any codec we speak fits easily).
const DATAGRAM_BYTES: usize = 2048;

/// Most frames a session catches up in one walk after its thread was delayed.
const MAX_CATCH_UP_TICKS: u64 = 5;

/// RTCP readiness reported per `epoll_wait`.
const READY_EVENTS: usize = 256;

/// Most sessions one media thread holds (more than a port range can give it).
const MAX_SESSIONS_PER_THREAD: usize = 32 * 1024;

/// What a saturated real-time media thread leaves to other threads of its core per walk.
const MIN_IDLE_WHEN_SATURATED: Duration = Duration::from_millis(2);

/// Commands a call can queue for its session before `send` waits.
const COMMAND_QUEUE: usize = 32;

#[derive(Debug, Error)]
pub enum EngineError {
    #[error("cannot start media thread {index}: {source}")]
    Thread { index: usize, source: io::Error },
    #[error("cannot create the media thread's epoll: {0}")]
    Epoll(io::Error),
}

/// Why a [`SessionJoin`] did not give the session back.
#[derive(Debug, Error)]
pub enum SessionLost {
    /// The engine stopped, or the session failed (the log says why).
    #[error(
        "the media session ended without handing itself back (engine stopped or session failed)"
    )]
    EngineStopped,
    #[error("cannot move the RTP sockets between tokio and the media engine: {0}")]
    Sockets(#[source] io::Error),
}

/// The media threads. Cheap to share (`Arc`); sessions go to the least loaded thread.
#[derive(Debug)]
pub struct MediaEngine {
    workers: Vec<WorkerLink>,
    /// Where the media threads' 20 ms grid starts.
    epoch: Instant,
}

#[derive(Debug)]
struct WorkerLink {
    inbox: std_mpsc::Sender<Box<Slot>>,
    stats: Arc<WorkerStats>,
    places: Arc<Places>,
}

/// A media thread's places in its walk, shared with the callers: a session's place is chosen
/// when it is attached, so its command sender can ring that place's doorbell (one bit) and the
/// thread looks at a command queue only when its bit is set. Checking a thousand idle queues
/// every 20 ms would touch a thousand cold cache lines.
#[derive(Debug)]
struct Places {
    doorbells: Box<[AtomicU64]>,
    pool: Mutex<PlacePool>,
}

#[derive(Debug, Default)]
struct PlacePool {
    free: Vec<usize>,
    next: usize,
}

impl Places {
    fn new() -> Places {
        Places {
            doorbells: (0..MAX_SESSIONS_PER_THREAD / 64)
                .map(|_| AtomicU64::new(0))
                .collect(),
            pool: Mutex::new(PlacePool::default()),
        }
    }

    /// A free place (freed ones first, so the walk stays short).
    fn take(&self) -> Option<usize> {
        let mut pool = self.pool.lock().ok()?;
        if let Some(place) = pool.free.pop() {
            return Some(place);
        }
        (pool.next < MAX_SESSIONS_PER_THREAD).then(|| {
            pool.next += 1;
            pool.next - 1
        })
    }

    fn give_back(&self, place: usize) {
        if let Ok(mut pool) = self.pool.lock() {
            pool.free.push(place);
        }
    }

    fn ring(&self, place: usize) {
        if let Some(word) = self.doorbells.get(place / 64) {
            word.fetch_or(1 << (place % 64), Ordering::Release);
        }
    }

    /// Takes the doorbells of places `0..places` (one bit each, into `rung`).
    fn answer(&self, places: usize, rung: &mut Vec<u64>) {
        rung.clear();
        rung.extend(
            self.doorbells[..places.div_ceil(64).min(self.doorbells.len())]
                .iter()
                .map(|word| word.swap(0, Ordering::Acquire)),
        );
    }
}

/// The call's side of its session's command queue. Sending rings the session's doorbell;
/// dropping the last one ends the session (with an RTCP BYE), as a `Shutdown` would.
#[derive(Debug, Clone)]
pub struct MediaCommands {
    sender: mpsc::Sender<MediaCommand>,
    places: Arc<Places>,
    place: usize,
}

impl MediaCommands {
    /// Queues a command for the session's next tick (waits while 32 are queued).
    pub async fn send(
        &self,
        command: MediaCommand,
    ) -> Result<(), mpsc::error::SendError<MediaCommand>> {
        self.sender.send(command).await?;
        self.places.ring(self.place);
        Ok(())
    }
}

impl Drop for MediaCommands {
    fn drop(&mut self) {
        self.places.ring(self.place);
    }
}

#[derive(Debug, Default)]
struct WorkerStats {
    sessions: AtomicUsize,
    lag_us: AtomicU32,
    /// Share of each period spent walking sessions, in thousandths, smoothed.
    load_permille: AtomicU32,
    /// The thread runs with real-time priority.
    realtime: AtomicBool,
}

/// CPU time the calling thread has used.
fn thread_cpu_time() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(Duration::from)
        .unwrap_or_default()
}

/// Moves the calling media thread to `SCHED_FIFO` at `priority`; false (logged) when the
/// process may not.
fn run_realtime(index: usize, priority: u8) -> bool {
    use thread_priority::{
        RealtimeThreadSchedulePolicy, ThreadPriority, ThreadPriorityValue, ThreadSchedulePolicy,
        set_thread_priority_and_policy, thread_native_id,
    };
    let policy = ThreadSchedulePolicy::Realtime(RealtimeThreadSchedulePolicy::Fifo);
    let result = ThreadPriorityValue::try_from(priority.clamp(1, 99))
        .map_err(|_| thread_priority::Error::Priority("priority out of range"))
        .and_then(|value| {
            set_thread_priority_and_policy(
                thread_native_id(),
                ThreadPriority::Crossplatform(value),
                policy,
            )
        });
    match result {
        Ok(()) => true,
        Err(error) => {
            if index == 0 {
                tracing::info!(
                    ?error,
                    "media threads run at normal priority (real-time scheduling needs root, \
                     CAP_SYS_NICE or RLIMIT_RTPRIO): other work on their cores can delay packets"
                );
            }
            false
        }
    }
}

/// How the media threads run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineConfig {
    /// Media threads (at least one); `None`: one per core this process may run on.
    pub threads: Option<usize>,
    /// `SCHED_FIFO` priority (1–99) for the media threads, where the process may have it
    /// (root, `CAP_SYS_NICE` or `RLIMIT_RTPRIO`): other work on the core then cannot delay a
    /// walk, so packets leave on time. `None`, or not permitted: normal scheduling.
    pub realtime_priority: Option<u8>,
}

impl MediaEngine {
    /// Starts `threads` media threads at normal priority (see [`MediaEngine::with_config`]).
    pub fn start(threads: Option<usize>) -> Result<MediaEngine, EngineError> {
        Self::with_config(EngineConfig {
            threads,
            realtime_priority: None,
        })
    }

    /// Starts the media threads. They end when the engine is dropped and their last session
    /// has ended.
    pub fn with_config(config: EngineConfig) -> Result<MediaEngine, EngineError> {
        let count = config
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1);
        let start = Instant::now();
        let mut workers = Vec::with_capacity(count);
        for index in 0..count {
            let (inbox, arrivals) = std_mpsc::channel();
            let stats = Arc::new(WorkerStats::default());
            let places = Arc::new(Places::new());
            let worker_places = places.clone();
            let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)
                .map_err(|errno| EngineError::Epoll(errno.into()))?;
            let worker_stats = stats.clone();
            std::thread::Builder::new()
                .name(format!("santral-media-{index}"))
                .spawn(move || {
                    let realtime = config
                        .realtime_priority
                        .is_some_and(|priority| run_realtime(index, priority));
                    worker_stats.realtime.store(realtime, Ordering::Relaxed);
                    let worker = Worker {
                        realtime,
                        arrivals,
                        stats: worker_stats,
                        places: worker_places,
                        rung: Vec::new(),
                        slots: Vec::new(),
                        live: 0,
                        epoll,
                        buffer: Box::new([0; DATAGRAM_BYTES]),
                        ready: vec![EpollEvent::empty(); READY_EVENTS],
                    };
                    worker.run(start)
                })
                .map_err(|source| EngineError::Thread { index, source })?;
            workers.push(WorkerLink {
                inbox,
                stats,
                places,
            });
        }
        Ok(MediaEngine {
            workers,
            epoch: start,
        })
    }

    /// Where the media threads' 20 ms grid starts (their walks begin at `epoch + n × 20 ms`).
    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    /// Number of media threads.
    pub fn threads(&self) -> usize {
        self.workers.len()
    }

    /// Sessions running now.
    pub fn sessions(&self) -> usize {
        self.workers
            .iter()
            .map(|worker| worker.stats.sessions.load(Ordering::Relaxed))
            .sum()
    }

    /// How late the busiest media thread has been waking lately (see [`LagMeter`]): the
    /// node's saturation signal.
    pub fn lag(&self) -> Duration {
        let worst = self
            .workers
            .iter()
            .map(|worker| worker.stats.lag_us.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0);
        Duration::from_micros(u64::from(worst))
    }

    /// True when every media thread runs with real-time priority.
    pub fn realtime(&self) -> bool {
        self.workers
            .iter()
            .all(|worker| worker.stats.realtime.load(Ordering::Relaxed))
    }

    /// The busiest media thread's share of each 20 ms spent on media work, smoothed over
    /// about eight periods (0.0 – 1.0; above 1.0 its walks no longer fit the period).
    pub fn load(&self) -> f64 {
        let worst = self
            .workers
            .iter()
            .map(|worker| worker.stats.load_permille.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0);
        f64::from(worst) / 1000.0
    }

    /// Hands a session to a media thread; returns the call's command sender and the join. It
    /// runs from the next tick until a [`MediaCommand::Shutdown`] (RTCP BYE sent), a
    /// [`MediaCommand::Detach`] (no BYE: the stream goes on elsewhere) or until every command
    /// sender is dropped. Its log lines carry the tracing span current here (the call's).
    pub fn attach(
        &self,
        session: MediaSession,
        sockets: RtpSockets,
        events: mpsc::Sender<MediaEvent>,
        audio_tap: Option<mpsc::Sender<TickAudio>>,
    ) -> (MediaCommands, SessionJoin) {
        let (sender, commands) = mpsc::channel(COMMAND_QUEUE);
        let (ended, join) = oneshot::channel();
        let worker = self
            .workers
            .iter()
            .min_by_key(|worker| worker.stats.sessions.load(Ordering::Relaxed))
            .unwrap_or_else(|| unreachable!("an engine has at least one thread"));
        let failed = |error: io::Error, place: Option<usize>| {
            warn!(%error, "media session not started");
            let commands = MediaCommands {
                sender: sender.clone(),
                places: worker.places.clone(),
                place: MAX_SESSIONS_PER_THREAD,
            };
            if let Some(place) = place {
                worker.places.give_back(place);
            }
            let join = SessionJoin {
                state: JoinState::Failed(Some(error)),
            };
            (commands, join)
        };
        let Some(place) = worker.places.take() else {
            return failed(
                io::Error::other(format!(
                    "a media thread holds at most {MAX_SESSIONS_PER_THREAD} sessions"
                )),
                None,
            );
        };
        let RtpSockets { rtp, rtcp, lease } = sockets;
        let (rtp, rtcp) = match (rtp.into_std(), rtcp.into_std()) {
            (Ok(rtp), Ok(rtcp)) => (rtp, rtcp),
            (Err(error), _) | (_, Err(error)) => return failed(error, Some(place)),
        };
        for socket in [&rtp, &rtcp] {
            if let Err(error) = receive::enable_arrival_times(socket) {
                debug!(%error, "no kernel arrival times: packets are timed when read");
            }
        }
        let mut session = session;
        // Decoding what the caller says is work only a listener needs (the IVR hears digits
        // as RFC 4733 events; in-band detection decodes anyway).
        session.set_listening(audio_tap.is_some());
        let slot = Box::new(Slot {
            session,
            rtp,
            rtcp,
            lease,
            commands,
            events,
            audio_tap,
            span: Span::current(),
            ended: Some(ended),
            place,
            last_tick: None,
            rtcp_watched: false,
            rtcp_ready: false,
        });
        worker.stats.sessions.fetch_add(1, Ordering::Relaxed);
        if let Err(returned) = worker.inbox.send(slot) {
            // The thread is gone (it only ends with the engine): the session drops here.
            drop(returned);
            worker.stats.sessions.fetch_sub(1, Ordering::Relaxed);
        }
        let commands = MediaCommands {
            sender,
            places: worker.places.clone(),
            place,
        };
        (
            commands,
            SessionJoin {
                state: JoinState::Waiting(join),
            },
        )
    }

    /// [`MediaEngine::attach`] with channels sized for one call (`with_audio`: also a
    /// per-tick audio tap holding up to 5 s).
    pub fn spawn_session(
        &self,
        session: MediaSession,
        sockets: RtpSockets,
        with_audio: bool,
    ) -> MediaHandle {
        let (event_tx, events) = mpsc::channel(128);
        let (audio_tx, audio) = if with_audio {
            let (tx, rx) = mpsc::channel(250);
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let (commands, finished) = self.attach(session, sockets, event_tx, audio_tx);
        MediaHandle {
            commands,
            events,
            audio,
            finished,
        }
    }
}

/// A running session, as the call task holds it.
#[derive(Debug)]
pub struct MediaHandle {
    pub commands: MediaCommands,
    pub events: mpsc::Receiver<MediaEvent>,
    /// Per-tick audio (received and sent), when asked for (recording, supervisor taps).
    pub audio: Option<mpsc::Receiver<TickAudio>>,
    /// Resolves when the session has stopped, with the session and its sockets.
    pub finished: SessionJoin,
}

/// Waits for a session to leave the engine; yields it with its sockets registered with tokio
/// again (await it inside the runtime).
#[derive(Debug)]
pub struct SessionJoin {
    state: JoinState,
}

#[derive(Debug)]
enum JoinState {
    Waiting(oneshot::Receiver<Box<Detached>>),
    Failed(Option<io::Error>),
}

/// What a media thread gives back.
#[derive(Debug)]
struct Detached {
    session: MediaSession,
    rtp: StdUdpSocket,
    rtcp: StdUdpSocket,
    lease: PortLease,
    quality: QualitySummary,
}

impl Future for SessionJoin {
    type Output = Result<SessionEnd, SessionLost>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let detached = match &mut self.state {
            JoinState::Waiting(ended) => ready!(Pin::new(ended).poll(cx)),
            JoinState::Failed(error) => {
                return Poll::Ready(Err(error
                    .take()
                    .map_or(SessionLost::EngineStopped, SessionLost::Sockets)));
            }
        };
        let Ok(detached) = detached else {
            return Poll::Ready(Err(SessionLost::EngineStopped));
        };
        let Detached {
            session,
            rtp,
            rtcp,
            lease,
            quality,
        } = *detached;
        let rtp = tokio::net::UdpSocket::from_std(rtp).map_err(SessionLost::Sockets)?;
        let rtcp = tokio::net::UdpSocket::from_std(rtcp).map_err(SessionLost::Sockets)?;
        Poll::Ready(Ok(SessionEnd {
            session,
            sockets: RtpSockets { rtp, rtcp, lease },
            quality,
        }))
    }
}

/// One session as its media thread holds it.
struct Slot {
    session: MediaSession,
    rtp: StdUdpSocket,
    rtcp: StdUdpSocket,
    lease: PortLease,
    commands: mpsc::Receiver<MediaCommand>,
    events: mpsc::Sender<MediaEvent>,
    audio_tap: Option<mpsc::Sender<TickAudio>>,
    span: Span,
    ended: Option<oneshot::Sender<Box<Detached>>>,
    /// Its place in the walk (and its doorbell).
    place: usize,
    /// The tick this session last ran (None before its first).
    last_tick: Option<u64>,
    /// RTCP is watched by the thread's epoll (else read on every tick).
    rtcp_watched: bool,
    /// The epoll saw RTCP arrive.
    rtcp_ready: bool,
}

/// How a session's step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Running,
    ShutDown,
    Detached,
}

impl Slot {
    /// One tick of this session: read, commands, send.
    fn step(&mut self, tick: u64, clock: &ArrivalClock, buffer: &mut [u8], rung: bool) -> Step {
        self.receive_rtp(clock, buffer);
        if self.rtcp_ready || !self.rtcp_watched {
            self.rtcp_ready = false;
            self.receive_rtcp(clock, buffer);
        }
        // Commands sent before the session's first tick rang before it had its place here.
        let mut take_commands = rung || self.last_tick.is_none();
        while take_commands {
            match self.commands.try_recv() {
                Ok(MediaCommand::Shutdown) | Err(TryRecvError::Disconnected) => {
                    return Step::ShutDown;
                }
                Ok(MediaCommand::Detach) => return Step::Detached,
                Ok(command) => apply_command(&mut self.session, command),
                Err(TryRecvError::Empty) => take_commands = false,
            }
        }
        let due = match self.last_tick {
            Some(last) => tick.saturating_sub(last).clamp(1, MAX_CATCH_UP_TICKS),
            None => 1,
        };
        self.last_tick = Some(tick);
        let now = Instant::now();
        for _ in 0..due {
            // Real-time media never waits for a full socket buffer: the frame is dropped.
            if let Some(transmit) = self.session.tick(now)
                && let Err(error) = self.rtp.send_to(transmit.payload, transmit.destination)
            {
                self.span.in_scope(|| debug!(%error, "RTP send failed"));
            }
            if let Some(tap) = &self.audio_tap {
                // A slow consumer loses frames rather than stalling the media.
                let _ = tap.try_send(TickAudio {
                    received: *self.session.received_frame(),
                    sent: *self.session.sent_frame(),
                });
            }
        }
        if let Some(transmit) = self.session.poll_rtcp(now) {
            let _ = self.rtcp.send_to(transmit.payload, transmit.destination);
        }
        while let Some(event) = self.session.poll_event() {
            if self.events.try_send(event).is_err() {
                self.span
                    .in_scope(|| warn!("media event queue full; event dropped"));
            }
        }
        Step::Running
    }

    /// Reads this tick's RTP: as many packets as the far end sends per frame, then more only
    /// while the last one read had waited a whole period (a backlog). In the usual case (one
    /// packet per 20 ms) that is one system call, with no second read to learn that nothing
    /// else is waiting; the kernel's arrival times keep the jitter buffer's view exact however
    /// late in the period a packet is read.
    fn receive_rtp(&mut self, clock: &ArrivalClock, buffer: &mut [u8]) {
        let at_least = self.session.packets_per_frame();
        for read in 1..=MAX_RTP_PER_TICK {
            let datagram = match receive::try_receive(&self.rtp, buffer, clock) {
                Ok(Some(datagram)) => datagram,
                Ok(None) => return,
                Err(error) => {
                    // ICMP errors (port unreachable) surface here; the next read goes on.
                    self.span.in_scope(|| debug!(%error, "RTP receive error"));
                    return;
                }
            };
            if let Err(error) =
                self.session
                    .handle_rtp(datagram.arrived, datagram.source, &buffer[..datagram.len])
            {
                self.span
                    .in_scope(|| debug!(source = %datagram.source, %error, "RTP packet dropped"));
            }
            let waited = clock.now().saturating_duration_since(datagram.arrived);
            if read >= at_least && waited < FRAME_PERIOD {
                return;
            }
        }
    }

    fn receive_rtcp(&mut self, clock: &ArrivalClock, buffer: &mut [u8]) {
        for _ in 0..MAX_RTCP_PER_TICK {
            let Ok(Some(datagram)) = receive::try_receive(&self.rtcp, buffer, clock) else {
                return;
            };
            if let Err(error) =
                self.session
                    .handle_rtcp(datagram.arrived, datagram.source, &buffer[..datagram.len])
            {
                self.span
                    .in_scope(|| debug!(source = %datagram.source, %error, "RTCP packet dropped"));
            }
        }
    }

    /// Leaves the engine: the BYE if asked, the quality summary, and the session and sockets
    /// to whoever waits for them (or dropped, which releases the port pair).
    fn finish(mut self: Box<Self>, say_goodbye: bool) {
        if say_goodbye && let Some(transmit) = self.session.goodbye() {
            let _ = self.rtcp.send_to(transmit.payload, transmit.destination);
        }
        let quality = self.session.quality();
        let Some(ended) = self.ended.take() else {
            return;
        };
        let Slot {
            mut session,
            rtp,
            rtcp,
            lease,
            ..
        } = *self;
        // Whoever takes it on (a bridge, a recording) hears what it receives.
        session.set_listening(true);
        let _ = ended.send(Box::new(Detached {
            session,
            rtp,
            rtcp,
            lease,
            quality,
        }));
    }
}

/// A media thread and the sessions it walks.
struct Worker {
    /// Runs at real-time priority: must leave the core to others now and then.
    realtime: bool,
    arrivals: std_mpsc::Receiver<Box<Slot>>,
    stats: Arc<WorkerStats>,
    places: Arc<Places>,
    /// The doorbells answered this tick.
    rung: Vec<u64>,
    /// Walked in place order every tick; a finished session leaves a hole that the next new
    /// session fills, so nobody else's place in the period moves.
    slots: Vec<Option<Box<Slot>>>,
    live: usize,
    epoll: Epoll,
    buffer: Box<[u8; DATAGRAM_BYTES]>,
    ready: Vec<EpollEvent>,
}

impl Worker {
    fn run(mut self, start: Instant) {
        let mut schedule = PacingSchedule::new(start, FRAME_PERIOD);
        let mut meter = LagMeter::default();
        let mut load_permille = 0u32;
        let mut closing = false;
        // Bounded: ends once the engine is gone and the last session has left.
        while !(closing && self.live == 0) {
            let deadline = schedule.next_deadline();
            let now = Instant::now();
            if deadline > now {
                std::thread::sleep(deadline - now);
            } else if self.realtime {
                // Saturated: a real-time thread that never sleeps would starve the SIP side
                // on this core, which must go on refusing new calls.
                std::thread::sleep(MIN_IDLE_WHEN_SATURATED);
            }
            let woke = Instant::now();
            let Some(tick) = schedule.on_wake(woke) else {
                continue;
            };
            let lag = meter.record(woke.saturating_duration_since(deadline));
            self.stats.lag_us.store(
                lag.as_micros().min(u128::from(u32::MAX)) as u32,
                Ordering::Relaxed,
            );
            let cpu_before = thread_cpu_time();
            closing |= self.take_arrivals();
            self.note_rtcp_arrivals();
            self.places.answer(self.slots.len(), &mut self.rung);
            let clock = ArrivalClock::read();
            for index in 0..self.slots.len() {
                // Two sessions ahead, its state; one ahead (its state now cached), the heap
                // memory its tick will touch. The current one's system calls hide the wait.
                if let Some(Some(ahead)) = self.slots.get(index + 2) {
                    prefetch(&**ahead);
                }
                if let Some(Some(next)) = self.slots.get(index + 1) {
                    next.session.prefetch();
                }
                let Some(slot) = self.slots[index].as_mut() else {
                    continue;
                };
                let rung = self.rung[index / 64] & (1 << (index % 64)) != 0;
                let buffer = &mut self.buffer[..];
                // One session's bug must not silence the thread's other calls.
                let step = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    slot.step(tick, &clock, buffer, rung)
                }));
                match step {
                    Ok(Step::Running) => {}
                    Ok(step) => self.remove(index, step == Step::ShutDown),
                    Err(_) => {
                        slot.span
                            .in_scope(|| error!("media session panicked: dropped"));
                        if self.take(index).is_some() {
                            self.stats.sessions.fetch_sub(1, Ordering::Relaxed);
                        }
                    }
                }
            }
            // The thread's own CPU time, not the wall clock: time it spent preempted by other
            // work on its core is not media load.
            let cpu = thread_cpu_time();
            let busy = cpu.saturating_sub(cpu_before).as_micros() * 1000 / FRAME_PERIOD.as_micros();
            load_permille = (load_permille * 7 + busy.min(100_000) as u32) / 8;
            self.stats
                .load_permille
                .store(load_permille, Ordering::Relaxed);
        }
    }

    /// Takes the sessions attached since the last tick; true when the engine is gone.
    fn take_arrivals(&mut self) -> bool {
        loop {
            match self.arrivals.try_recv() {
                Ok(mut slot) => {
                    let index = slot.place;
                    slot.rtcp_watched = self
                        .epoll
                        .add(
                            slot.rtcp.as_fd(),
                            EpollEvent::new(EpollFlags::EPOLLIN, index as u64),
                        )
                        .is_ok();
                    if index >= self.slots.len() {
                        self.slots.resize_with(index + 1, || None);
                    }
                    self.slots[index] = Some(slot);
                    self.live += 1;
                }
                Err(std_mpsc::TryRecvError::Empty) => return false,
                Err(std_mpsc::TryRecvError::Disconnected) => return true,
            }
        }
    }

    /// One `epoll_wait` for the whole thread: which sessions' RTCP sockets have data.
    fn note_rtcp_arrivals(&mut self) {
        // Bounded: a full batch of readiness is followed by at most a few more.
        for _ in 0..self.slots.len() / READY_EVENTS + 1 {
            let Ok(count) = self.epoll.wait(&mut self.ready, EpollTimeout::ZERO) else {
                return;
            };
            for event in &self.ready[..count] {
                if let Some(Some(slot)) = self.slots.get_mut(event.data() as usize) {
                    slot.rtcp_ready = true;
                }
            }
            if count < READY_EVENTS {
                return;
            }
        }
    }

    fn remove(&mut self, index: usize, say_goodbye: bool) {
        if let Some(slot) = self.take(index) {
            slot.finish(say_goodbye);
            // Counted out only now that its ports are back (or handed on).
            self.stats.sessions.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Takes a session out of the walk (its place goes to the next new session).
    fn take(&mut self, index: usize) -> Option<Box<Slot>> {
        let slot = self.slots.get_mut(index)?.take()?;
        if slot.rtcp_watched {
            let _ = self.epoll.delete(slot.rtcp.as_fd());
        }
        self.places.give_back(index);
        self.live -= 1;
        Some(slot)
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};

    use tokio::net::UdpSocket;

    use super::*;
    use crate::codec::Codec;
    use crate::jitter::JitterConfig;
    use crate::port::PortAllocator;
    use crate::rtcp;
    use crate::sdp::Direction;
    use crate::session::SessionConfig;

    const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    const WAIT: Duration = Duration::from_secs(5);

    fn session(far_rtp: SocketAddr, far_rtcp: SocketAddr) -> MediaSession {
        MediaSession::new(
            SessionConfig {
                local_ssrc: 0x5A17,
                codec: Codec::Pcmu,
                payload_type: 0,
                telephone_event_payload_type: Some(101),
                remote_rtp: Some(far_rtp),
                remote_rtcp: Some(far_rtcp),
                direction: Direction::SendRecv,
                symmetric_rtp: true,
                inband_dtmf: false,
                jitter: JitterConfig::default(),
                initial_sequence: 1,
                initial_timestamp: 0,
                rtcp_interval: Duration::from_secs(60),
                media_timeout: Duration::from_secs(60),
            },
            Instant::now(),
        )
    }

    async fn bind_far_end() -> (UdpSocket, UdpSocket) {
        let rtp = UdpSocket::bind((LOCALHOST, 0)).await.unwrap();
        let rtcp = UdpSocket::bind((LOCALHOST, 0)).await.unwrap();
        (rtp, rtcp)
    }

    async fn receive(socket: &UdpSocket) -> (Vec<u8>, SocketAddr) {
        let mut buffer = [0u8; 2048];
        let (len, from) = tokio::time::timeout(WAIT, socket.recv_from(&mut buffer))
            .await
            .expect("a datagram in time")
            .unwrap();
        (buffer[..len].to_vec(), from)
    }

    /// RTCP packet types in a compound datagram.
    fn rtcp_types(mut datagram: &[u8]) -> Vec<u8> {
        let mut types = Vec::new();
        while datagram.len() >= 4 {
            types.push(datagram[1]);
            let words = u16::from_be_bytes([datagram[2], datagram[3]]) as usize;
            datagram = &datagram[((words + 1) * 4).min(datagram.len())..];
        }
        types
    }

    /// A session on a media thread sends its frames from its own RTP port, hears RTCP (a BYE
    /// from the far end comes back as an event), comes back on `Detach` with sockets that work
    /// in tokio again and no BYE sent, and on `Shutdown` says goodbye over RTCP.
    #[tokio::test]
    async fn a_session_runs_on_a_media_thread_and_comes_back_on_detach() {
        let engine = MediaEngine::start(Some(1)).unwrap();
        let ports = PortAllocator::new(44700..=44709).unwrap();
        let sockets = RtpSockets::bind(LOCALHOST, &ports).await.unwrap();
        let (port, rtcp_port) = (sockets.rtp_port(), sockets.rtp_port() + 1);
        let (far_rtp, far_rtcp) = bind_far_end().await;
        let far = (
            far_rtp.local_addr().unwrap(),
            far_rtcp.local_addr().unwrap(),
        );
        let mut media = engine.spawn_session(session(far.0, far.1), sockets, false);

        let (packet, from) = receive(&far_rtp).await;
        assert_eq!(from, SocketAddr::new(LOCALHOST, port));
        assert_eq!(packet[1] & 0x7F, 0, "PCMU");
        assert_eq!(engine.sessions(), 1);

        let goodbye = rtcp::build_goodbye(0xFA4).unwrap();
        far_rtcp
            .send_to(&goodbye, SocketAddr::new(LOCALHOST, rtcp_port))
            .await
            .unwrap();
        let event = tokio::time::timeout(WAIT, async {
            loop {
                match media.events.recv().await {
                    Some(MediaEvent::RemoteGoodbye) => return true,
                    Some(_) => continue,
                    None => return false,
                }
            }
        })
        .await
        .expect("the far end's BYE reported in time");
        assert!(event);

        media.commands.send(MediaCommand::Detach).await.unwrap();
        let end = media.finished.await.unwrap();
        assert_eq!(engine.sessions(), 0);
        far_rtp
            .send_to(b"after detach", SocketAddr::new(LOCALHOST, port))
            .await
            .unwrap();
        let mut buffer = [0u8; 64];
        let (len, _) = tokio::time::timeout(WAIT, end.sockets.rtp.recv_from(&mut buffer))
            .await
            .expect("the detached socket works in tokio")
            .unwrap();
        assert_eq!(&buffer[..len], b"after detach");
        // Nothing but the far end's own traffic: no BYE on detach.
        let mut probe = [0u8; 2048];
        while let Ok(Ok((len, _))) =
            tokio::time::timeout(Duration::from_millis(50), far_rtcp.recv_from(&mut probe)).await
        {
            assert!(!rtcp_types(&probe[..len]).contains(&203), "BYE on detach");
        }

        // Attached again, then shut down: the far end hears an RTCP BYE.
        let media = engine.spawn_session(end.session, end.sockets, false);
        media.commands.send(MediaCommand::Shutdown).await.unwrap();
        let end = media.finished.await.unwrap();
        let goodbye = tokio::time::timeout(WAIT, async {
            loop {
                let (datagram, _) = receive(&far_rtcp).await;
                if rtcp_types(&datagram).contains(&203) {
                    return datagram;
                }
            }
        })
        .await
        .expect("an RTCP BYE in time");
        assert_eq!(goodbye[0] >> 6, 2, "RTCP version 2");
        assert!(end.quality.packets_expected < 10);
    }

    /// Sessions go to the least loaded thread; when a call drops its handle, its session ends
    /// and its port pair returns to the pool.
    #[tokio::test]
    async fn sessions_spread_over_threads_and_release_their_ports_when_dropped() {
        let engine = MediaEngine::start(Some(2)).unwrap();
        assert_eq!(engine.threads(), 2);
        let ports = PortAllocator::new(44720..=44727).unwrap();
        assert_eq!(ports.capacity(), 4);
        let (far_rtp, far_rtcp) = bind_far_end().await;
        let far = (
            far_rtp.local_addr().unwrap(),
            far_rtcp.local_addr().unwrap(),
        );
        let mut handles = Vec::new();
        for _ in 0..4 {
            let sockets = RtpSockets::bind(LOCALHOST, &ports).await.unwrap();
            handles.push(engine.spawn_session(session(far.0, far.1), sockets, false));
        }
        assert!(
            RtpSockets::bind(LOCALHOST, &ports).await.is_err(),
            "all pairs in use"
        );
        assert_eq!(engine.sessions(), 4);
        for worker in &engine.workers {
            assert_eq!(worker.stats.sessions.load(Ordering::Relaxed), 2);
        }
        // Every session sends: four sources reach the far end.
        let mut sources = std::collections::BTreeSet::new();
        while sources.len() < 4 {
            sources.insert(receive(&far_rtp).await.1.port());
        }

        drop(handles);
        tokio::time::timeout(WAIT, async {
            while engine.sessions() > 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("dropped sessions end");
        let mut again = Vec::new();
        for _ in 0..4 {
            again.push(RtpSockets::bind(LOCALHOST, &ports).await.unwrap());
        }
        assert_eq!(again.len(), 4);
    }
}
