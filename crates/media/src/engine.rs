//! The media engine: a few threads (one per core by default) drive every call's media.
//!
//! Each media thread wakes on the shared 20 ms grid and walks its sessions in a fixed order;
//! per session it reads what arrived (usually one datagram, with the kernel's arrival times),
//! takes the call's commands, runs the tick and sends the frame. Where the kernel allows, the
//! reads and sends of each run of 64 sessions go down in one io_uring submission
//! ([`crate::uring`]); otherwise one `recvmsg` and one `sendto` per session. Nothing asynchronous sits on this
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
use crate::receive::{self, ArrivalClock, Datagram};
use crate::session::{MediaEvent, MediaSession};
use crate::uring::{BATCH, Received, SocketBatch};

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
    /// The thread batches its socket I/O through io_uring.
    batched: AtomicBool,
}

/// The thread's io_uring batch, or `None` (logged once) where it is refused.
fn open_batch(index: usize) -> Option<SocketBatch> {
    match SocketBatch::new() {
        Ok(batch) => Some(batch),
        Err(error) => {
            if index == 0 {
                tracing::info!(
                    %error,
                    "io_uring unavailable: media threads make one system call per packet"
                );
            }
            None
        }
    }
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
    /// Batch each thread's RTP reads and sends through io_uring (one `io_uring_enter` per 64
    /// sessions instead of two system calls per session). Where the kernel or a seccomp
    /// profile refuses io_uring, the threads make one system call per packet instead.
    pub io_uring: bool,
}

impl MediaEngine {
    /// Starts `threads` media threads at normal priority, with batched I/O where the kernel
    /// allows it (see [`MediaEngine::with_config`]).
    pub fn start(threads: Option<usize>) -> Result<MediaEngine, EngineError> {
        Self::with_config(EngineConfig {
            threads,
            realtime_priority: None,
            io_uring: true,
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
                    let batch = config.io_uring.then(|| open_batch(index)).flatten();
                    worker_stats
                        .batched
                        .store(batch.is_some(), Ordering::Relaxed);
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
                        batch,
                        in_batch: Vec::new(),
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

    /// True when every media thread batches its socket I/O through io_uring.
    pub fn batched_io(&self) -> bool {
        self.workers
            .iter()
            .all(|worker| worker.stats.batched.load(Ordering::Relaxed))
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
        let Some(worker) = self
            .workers
            .iter()
            .min_by_key(|worker| worker.stats.sessions.load(Ordering::Relaxed))
        else {
            // `with_config` starts at least one thread; an engine without one runs nothing.
            let commands = MediaCommands {
                sender,
                places: Arc::new(Places::new()),
                place: MAX_SESSIONS_PER_THREAD,
            };
            let join = SessionJoin {
                state: JoinState::Failed(None),
            };
            return (commands, join);
        };
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

impl SessionJoin {
    /// Waits for the session to leave the engine and keeps only its quality summary: the
    /// sockets close where they are, without a round trip through tokio's reactor (the
    /// hang-up path).
    pub async fn into_quality(self) -> Result<QualitySummary, SessionLost> {
        match self.state {
            JoinState::Waiting(ended) => ended
                .await
                .map(|detached| detached.quality)
                .map_err(|_| SessionLost::EngineStopped),
            JoinState::Failed(error) => {
                Err(error.map_or(SessionLost::EngineStopped, SessionLost::Sockets))
            }
        }
    }
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

/// How a session's RTP goes in and out during one walk.
enum RtpIo<'a> {
    /// One system call per packet.
    Direct,
    /// Through the thread's batch: the first read is done (its result at `position`), and
    /// the frame is queued for the next submission.
    Batched {
        batch: &'a mut SocketBatch,
        position: usize,
    },
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
    fn step(
        &mut self,
        tick: u64,
        clock: &ArrivalClock,
        buffer: &mut [u8],
        rung: bool,
        io: &mut RtpIo<'_>,
    ) -> Step {
        self.receive_rtp(clock, buffer, io);
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
        // A batched run reads its clock right after its reads came in (all of them are
        // older): one clock reading serves the run.
        let now = match io {
            RtpIo::Batched { .. } => clock.now(),
            RtpIo::Direct => Instant::now(),
        };
        for frame in 1..=due {
            // Real-time media never waits for a full socket buffer: the frame is dropped.
            if let Some(transmit) = self.session.tick(now) {
                // Frames caught up after a delay go at once; this period's rides the batch.
                let queued = match io {
                    RtpIo::Batched { batch, .. } if frame == due => {
                        batch.queue_send(self.place, transmit.payload, transmit.destination)
                    }
                    _ => false,
                };
                if !queued
                    && let Err(error) = self.rtp.send_to(transmit.payload, transmit.destination)
                {
                    self.span.in_scope(|| debug!(%error, "RTP send failed"));
                }
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
    fn receive_rtp(&mut self, clock: &ArrivalClock, buffer: &mut [u8], io: &RtpIo<'_>) {
        let at_least = self.session.packets_per_frame();
        let mut first = 1;
        if let RtpIo::Batched { batch, position } = io {
            match batch.received(*position, clock) {
                Received::Nothing => return,
                Received::Failed(error) => {
                    self.span.in_scope(|| debug!(%error, "RTP receive error"));
                    return;
                }
                Received::Datagram(datagram, bytes) => {
                    self.handle_rtp(datagram, bytes);
                    let waited = clock.now().saturating_duration_since(datagram.arrived);
                    if at_least <= 1 && waited < FRAME_PERIOD {
                        return;
                    }
                    first = 2;
                }
            }
        }
        for read in first..=MAX_RTP_PER_TICK {
            let datagram = match receive::try_receive(&self.rtp, buffer, clock) {
                Ok(Some(datagram)) => datagram,
                Ok(None) => return,
                Err(error) => {
                    // ICMP errors (port unreachable) surface here; the next read goes on.
                    self.span.in_scope(|| debug!(%error, "RTP receive error"));
                    return;
                }
            };
            self.handle_rtp(datagram, &buffer[..datagram.len]);
            let waited = clock.now().saturating_duration_since(datagram.arrived);
            if read >= at_least && waited < FRAME_PERIOD {
                return;
            }
        }
    }

    fn handle_rtp(&mut self, datagram: Datagram, bytes: &[u8]) {
        if let Err(error) = self
            .session
            .handle_rtp(datagram.arrived, datagram.source, bytes)
        {
            self.span
                .in_scope(|| debug!(source = %datagram.source, %error, "RTP packet dropped"));
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
    /// to whoever waits for them (or dropped, which releases the port pair). It is counted
    /// out of `stats` before anyone can see it back, and after its ports are free.
    fn finish(mut self: Box<Self>, say_goodbye: bool, stats: &WorkerStats) {
        if say_goodbye && let Some(transmit) = self.session.goodbye() {
            let _ = self.rtcp.send_to(transmit.payload, transmit.destination);
        }
        let quality = self.session.quality();
        let Some(ended) = self.ended.take().filter(|ended| !ended.is_closed()) else {
            drop(self);
            stats.sessions.fetch_sub(1, Ordering::Relaxed);
            return;
        };
        stats.sessions.fetch_sub(1, Ordering::Relaxed);
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
    /// Batched socket I/O (io_uring), when the kernel allows it.
    batch: Option<SocketBatch>,
    /// By place: the session's RTP socket is registered with the batch.
    in_batch: Vec<bool>,
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
            self.walk(tick, &clock);
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

    /// One tick of every session, in place order. With a batch, the sessions go in runs of
    /// up to [`BATCH`]: their reads are submitted together (with the previous run's sends),
    /// then each session runs on what was read and queues its frame.
    fn walk(&mut self, tick: u64, clock: &ArrivalClock) {
        let mut start = 0;
        // Bounded: every run moves `start` forward by at least one place.
        while start < self.slots.len() {
            let mut end = self.slots.len();
            if let Some(batch) = self.batch.as_mut() {
                let mut queued = 0;
                end = start;
                while end < self.slots.len() && queued < BATCH {
                    if self.in_batch[end] {
                        batch.queue_receive(queued, end);
                        queued += 1;
                    }
                    end += 1;
                }
                self.submit_batch();
            }
            let run_clock = if self.batch.is_some() {
                ArrivalClock::read()
            } else {
                *clock
            };
            let mut position = 0;
            for index in start..end {
                let batched = self.batch.is_some() && self.in_batch[index];
                self.visit(index, tick, &run_clock, batched.then_some(position));
                position += usize::from(batched);
            }
            start = end;
        }
        if self.batch.is_some() {
            self.submit_batch();
        }
    }

    /// Runs one session's tick (`position`: its read waits in the batch there).
    fn visit(&mut self, index: usize, tick: u64, clock: &ArrivalClock, position: Option<usize>) {
        // Two sessions ahead, its state; one ahead (its state now cached), the heap memory its
        // tick will touch. The current one's work hides the wait.
        if let Some(Some(ahead)) = self.slots.get(index + 2) {
            prefetch(&**ahead);
        }
        if let Some(Some(next)) = self.slots.get(index + 1) {
            next.session.prefetch();
        }
        let Some(slot) = self.slots[index].as_mut() else {
            return;
        };
        let rung = self.rung[index / 64] & (1 << (index % 64)) != 0;
        let buffer = &mut self.buffer[..];
        let mut io = match (position, self.batch.as_mut()) {
            (Some(position), Some(batch)) => RtpIo::Batched { batch, position },
            _ => RtpIo::Direct,
        };
        // One session's bug must not silence the thread's other calls.
        let step = std::panic::catch_unwind(AssertUnwindSafe(|| {
            slot.step(tick, clock, buffer, rung, &mut io)
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

    /// Submits the batch's queued reads and sends; logs refused sends under their call's span.
    /// If the kernel leaves anything in flight, the thread gives up batching for good.
    fn submit_batch(&mut self) {
        let Some(batch) = self.batch.as_mut() else {
            return;
        };
        let submitted = batch.submit();
        for (place, error) in batch.failed_sends() {
            if let Some(Some(slot)) = self.slots.get(place) {
                slot.span.in_scope(|| debug!(%error, "RTP send failed"));
            }
        }
        let Err(incomplete) = submitted else {
            return;
        };
        error!(%incomplete, "io_uring did not complete socket operations in place: media thread goes on with one system call per packet");
        let Some(batch) = self.batch.take() else {
            return;
        };
        if incomplete.settled() {
            drop(batch);
        } else {
            // The kernel may still write its buffers: they must outlive it.
            std::mem::forget(batch);
        }
        self.in_batch.iter_mut().for_each(|member| *member = false);
        self.stats.batched.store(false, Ordering::Relaxed);
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
                        self.in_batch.resize(index + 1, false);
                    }
                    self.in_batch[index] = match self.batch.as_mut() {
                        Some(batch) => match batch.register(index, slot.rtp.as_fd()) {
                            Ok(()) => true,
                            Err(error) => {
                                slot.span.in_scope(|| {
                                    debug!(%error, "RTP socket not batched: read and sent directly")
                                });
                                false
                            }
                        },
                        None => false,
                    };
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
            slot.finish(say_goodbye, &self.stats);
        }
    }

    /// Takes a session out of the walk (its place goes to the next new session).
    fn take(&mut self, index: usize) -> Option<Box<Slot>> {
        let slot = self.slots.get_mut(index)?.take()?;
        if slot.rtcp_watched {
            let _ = self.epoll.delete(slot.rtcp.as_fd());
        }
        if self.in_batch.get(index).copied().unwrap_or(false) {
            self.in_batch[index] = false;
            // The ring's reference would keep the socket (and its port) open.
            if let Some(batch) = self.batch.as_mut()
                && let Err(error) = batch.unregister(index)
            {
                slot.span
                    .in_scope(|| warn!(%error, "RTP socket still registered with io_uring"));
            }
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

    /// An engine with `threads` threads, batching through io_uring or not.
    fn engine(threads: usize, io_uring: bool) -> MediaEngine {
        let engine = MediaEngine::with_config(EngineConfig {
            threads: Some(threads),
            realtime_priority: None,
            io_uring,
        })
        .unwrap();
        // The engine batches exactly when asked to and the kernel allows it.
        let allowed = crate::uring::SocketBatch::new().is_ok();
        let deadline = Instant::now() + WAIT;
        while engine.batched_io() != (io_uring && allowed) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(engine.batched_io(), io_uring && allowed);
        engine
    }

    #[tokio::test]
    async fn a_session_runs_on_a_media_thread_and_comes_back_on_detach() {
        runs_and_comes_back_on_detach(false, 44700).await;
    }

    #[tokio::test]
    async fn a_batched_session_runs_on_a_media_thread_and_comes_back_on_detach() {
        runs_and_comes_back_on_detach(true, 44710).await;
    }

    /// A session on a media thread sends its frames from its own RTP port, hears RTCP (a BYE
    /// from the far end comes back as an event), comes back on `Detach` with sockets that work
    /// in tokio again and no BYE sent, and on `Shutdown` says goodbye over RTCP.
    async fn runs_and_comes_back_on_detach(io_uring: bool, first_port: u16) {
        let engine = engine(1, io_uring);
        let ports = PortAllocator::new(first_port..=first_port + 9).unwrap();
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
        let quality = media.finished.into_quality().await.unwrap();
        // The sockets closed with the session: its ports are free.
        std::net::UdpSocket::bind((LOCALHOST, port)).expect("RTP port free after hang-up");
        std::net::UdpSocket::bind((LOCALHOST, rtcp_port)).expect("RTCP port free after hang-up");
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
        assert!(quality.packets_expected < 10);
    }

    #[tokio::test]
    async fn sessions_spread_over_threads_and_release_their_ports_when_dropped() {
        spread_and_release_ports(false, 44720).await;
    }

    #[tokio::test]
    async fn batched_sessions_spread_over_threads_and_release_their_ports_when_dropped() {
        spread_and_release_ports(true, 44730).await;
    }

    /// Sessions go to the least loaded thread; when a call drops its handle, its session ends
    /// and its port pair returns to the pool (the ring lets go of its sockets too).
    async fn spread_and_release_ports(io_uring: bool, first_port: u16) {
        let engine = engine(2, io_uring);
        assert_eq!(engine.threads(), 2);
        let ports = PortAllocator::new(first_port..=first_port + 7).unwrap();
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

    #[tokio::test]
    async fn rtp_is_read_with_its_source_and_payload() {
        reads_rtp(false, 44800).await;
    }

    #[tokio::test]
    async fn batched_rtp_is_read_with_its_source_and_payload() {
        reads_rtp(true, 45200).await;
    }

    /// An RTP packet from the far end reaches the session whole and with its source: an
    /// RFC 4733 key press from a new address is reported, and the session's frames follow
    /// the far end to that address (symmetric RTP). Many sessions on one thread, so that
    /// batches fill and more than one run of reads goes down per walk.
    async fn reads_rtp(io_uring: bool, first_port: u16) {
        const SESSIONS: usize = 150;
        let engine = engine(1, io_uring);
        let ports = PortAllocator::new(first_port..=first_port + 399).unwrap();
        let (far_rtp, far_rtcp) = bind_far_end().await;
        let far = (
            far_rtp.local_addr().unwrap(),
            far_rtcp.local_addr().unwrap(),
        );
        let mut calls = Vec::new();
        for _ in 0..SESSIONS {
            let sockets = RtpSockets::bind(LOCALHOST, &ports).await.unwrap();
            let port = sockets.rtp_port();
            calls.push((
                port,
                engine.spawn_session(session(far.0, far.1), sockets, false),
            ));
        }
        // Every session presses a different key from its own new address.
        let mut movers = Vec::new();
        for (index, (port, _)) in calls.iter().enumerate() {
            let mover = UdpSocket::bind((LOCALHOST, 0)).await.unwrap();
            let key = (index % 10) as u8;
            let mut packet = vec![0x80, 0x80 | 101];
            packet.extend_from_slice(&7u16.to_be_bytes());
            packet.extend_from_slice(&1600u32.to_be_bytes());
            packet.extend_from_slice(&(0xE000 + index as u32).to_be_bytes());
            packet.extend_from_slice(&[key, 10, 0, 160]);
            mover
                .send_to(&packet, SocketAddr::new(LOCALHOST, *port))
                .await
                .unwrap();
            movers.push(mover);
        }
        for (index, (_, media)) in calls.iter_mut().enumerate() {
            let mover = movers[index].local_addr().unwrap();
            let (mut moved, mut pressed) = (false, None);
            tokio::time::timeout(WAIT, async {
                while !(moved && pressed.is_some()) {
                    match media.events.recv().await {
                        Some(MediaEvent::RemoteAddressChanged(to)) => moved = to == mover,
                        Some(MediaEvent::Dtmf(crate::telephone_event::DtmfEvent::Pressed {
                            digit,
                            ..
                        })) => pressed = Some(digit),
                        Some(_) => {}
                        None => break,
                    }
                }
            })
            .await
            .expect("the key press reported in time");
            assert!(moved, "session {index} follows the far end");
            assert_eq!(
                pressed.map(|digit| digit.as_char()),
                Some(char::from(b'0' + (index % 10) as u8)),
                "session {index} hears its key"
            );
        }
        for (index, mover) in movers.iter().enumerate().step_by(37) {
            let (packet, from) = receive(mover).await;
            assert_eq!(from.port(), calls[index].0, "frames go to the new address");
            assert_eq!(packet[1] & 0x7F, 0, "PCMU");
        }
    }
}
