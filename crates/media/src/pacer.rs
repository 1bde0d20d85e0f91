//! Drift-free 20 ms pacing. [`PacingSchedule`] is the sans-IO core: deadlines are computed as
//! `start + n × period`, never `previous + period`, so scheduling jitter never accumulates.
//! [`Pacer`] is the thin tokio driver: ONE task per process ticks and publishes the tick number;
//! every media session waits on it (a [`Ticker`], in a stable order), so there is no timer per
//! call or per packet.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// Frame period.
pub const FRAME_PERIOD: Duration = Duration::from_millis(20);

/// Tick deadlines on a fixed grid.
#[derive(Debug, Clone, Copy)]
pub struct PacingSchedule {
    start: Instant,
    period: Duration,
    next_tick: u64,
}

impl PacingSchedule {
    pub fn new(start: Instant, period: Duration) -> Self {
        PacingSchedule {
            start,
            period,
            next_tick: 1,
        }
    }

    /// When the next tick is due.
    pub fn next_deadline(&self) -> Instant {
        self.start
            + self
                .period
                .saturating_mul(self.next_tick.min(u32::MAX as u64) as u32)
    }

    /// Called when woken at `now`: returns the tick number due (the latest one passed). If the
    /// process stalled for several periods the missed ticks are skipped, not bursted: media
    /// sessions catch up through their jitter buffers instead of sending a packet burst.
    pub fn on_wake(&mut self, now: Instant) -> Option<u64> {
        if now < self.next_deadline() {
            return None;
        }
        let elapsed = now.saturating_duration_since(self.start).as_nanos();
        let due = (elapsed / self.period.as_nanos().max(1)) as u64;
        self.next_tick = due + 1;
        Some(due)
    }
}

/// How late the pacer wakes, smoothed: the node's saturation signal. An idle or busy-but-coping
/// runtime wakes the pacer within a fraction of a millisecond; a saturated one runs late on
/// every tick, which is when new calls must be refused (they would degrade every call's audio).
#[derive(Debug, Clone, Copy, Default)]
pub struct LagMeter {
    smoothed_us: u32,
}

impl LagMeter {
    /// Takes one wake-up's lateness; returns the new smoothed lag (exponential average over
    /// about eight ticks, 160 ms: one stalled tick is not overload, a run of them is).
    pub fn record(&mut self, late: Duration) -> Duration {
        let sample = late.as_micros().min(u32::MAX as u128) as u64;
        let smoothed = (u64::from(self.smoothed_us) * 7 + sample) / 8;
        self.smoothed_us = smoothed.min(u64::from(u32::MAX)) as u32;
        self.lag()
    }

    pub fn lag(&self) -> Duration {
        Duration::from_micros(u64::from(self.smoothed_us))
    }
}

/// What the pacing task shares with the sessions it paces.
#[derive(Debug, Default)]
struct Shared {
    tick: AtomicU64,
    notify: Notify,
    lag_us: AtomicU32,
}

/// The shared tick source.
#[derive(Debug, Clone)]
pub struct Pacer {
    ticks: tokio::sync::watch::Receiver<u64>,
    shared: Arc<Shared>,
}

/// A session's hold on the shared tick. A waiter stays in line between ticks (see
/// [`Ticker::notified`]), so every tick wakes the sessions in the same order and each stream
/// keeps its place in the 20 ms period: its packets leave at even intervals however many
/// calls share the core. (A `watch` receiver re-queues its waiter on every poll, so packet
/// arrivals would shuffle the order from tick to tick: that was milliseconds of send jitter
/// per stream at a thousand calls.)
#[derive(Debug, Clone)]
pub struct Ticker {
    shared: Arc<Shared>,
    /// Keeps the pacing task running while any session waits on it.
    _alive: tokio::sync::watch::Receiver<u64>,
}

impl Ticker {
    /// The number of the latest tick.
    pub fn current(&self) -> u64 {
        self.shared.tick.load(Ordering::Acquire)
    }

    /// A wait for the next tick. Pin it, `enable()` it, then read [`Ticker::current`]: a tick
    /// published after `enable()` wakes it. Keep it pinned across other wake-ups (packets) and
    /// re-arm it right after it fires.
    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.shared.notify.notified()
    }
}

impl Pacer {
    /// Spawns the pacing task on the current tokio runtime. It ends when every `Pacer` clone
    /// and every `watch` subscriber is dropped.
    pub fn spawn() -> Pacer {
        let (sender, ticks) = tokio::sync::watch::channel(0u64);
        let shared = Arc::new(Shared::default());
        let published = shared.clone();
        tokio::spawn(async move {
            let mut schedule = PacingSchedule::new(Instant::now(), FRAME_PERIOD);
            let mut meter = LagMeter::default();
            loop {
                let deadline = schedule.next_deadline();
                tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)).await;
                let now = Instant::now();
                let lag = meter.record(now.saturating_duration_since(deadline));
                published.lag_us.store(
                    lag.as_micros().min(u32::MAX as u128) as u32,
                    Ordering::Relaxed,
                );
                if let Some(tick) = schedule.on_wake(now) {
                    published.tick.store(tick, Ordering::Release);
                    published.notify.notify_waiters();
                    if sender.send(tick).is_err() {
                        break;
                    }
                }
            }
        });
        Pacer { ticks, shared }
    }

    /// How late the media clock has been waking lately (see [`LagMeter`]).
    pub fn lag(&self) -> Duration {
        Duration::from_micros(u64::from(self.shared.lag_us.load(Ordering::Relaxed)))
    }

    /// A receiver that wakes on every tick (`changed().await`), for drivers that own several
    /// sessions (bridges, mixers).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.ticks.clone()
    }

    /// The tick as one session's driver waits for it (see [`Ticker`]).
    pub fn ticker(&self) -> Ticker {
        Ticker {
            shared: self.shared.clone(),
            _alive: self.ticks.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_stay_on_the_grid_despite_late_wakeups() {
        let start = Instant::now();
        let mut schedule = PacingSchedule::new(start, FRAME_PERIOD);
        for n in 1..=1000u64 {
            let deadline = schedule.next_deadline();
            assert_eq!(deadline, start + FRAME_PERIOD * n as u32);
            // Wake up to 7 ms late every time: the grid must not drift.
            let late = deadline + Duration::from_millis(n % 8);
            assert_eq!(schedule.on_wake(late), Some(n));
        }
        assert_eq!(
            schedule.next_deadline(),
            start + Duration::from_secs(20) + FRAME_PERIOD
        );
    }

    #[test]
    fn lag_meter_ignores_one_stall_but_follows_a_run_of_late_ticks() {
        let mut meter = LagMeter::default();
        for _ in 0..100 {
            meter.record(Duration::from_micros(100));
        }
        assert!(meter.lag() <= Duration::from_micros(100));
        // One 20 ms stall moves the average by an eighth only.
        let after_stall = meter.record(Duration::from_millis(20));
        assert!(after_stall < Duration::from_millis(3), "{after_stall:?}");
        meter.record(Duration::from_micros(100));
        // Every tick 15 ms late: within a few ticks the lag says so.
        for _ in 0..16 {
            meter.record(Duration::from_millis(15));
        }
        assert!(meter.lag() > Duration::from_millis(12), "{:?}", meter.lag());
        // Recovered: back under a millisecond within a second of ticks.
        for _ in 0..50 {
            meter.record(Duration::from_micros(50));
        }
        assert!(meter.lag() < Duration::from_millis(1), "{:?}", meter.lag());
    }

    #[test]
    fn early_wakeup_is_not_a_tick_and_stalls_skip_ahead() {
        let start = Instant::now();
        let mut schedule = PacingSchedule::new(start, FRAME_PERIOD);
        assert_eq!(schedule.on_wake(start + Duration::from_millis(19)), None);
        assert_eq!(
            schedule.on_wake(start + Duration::from_millis(105)),
            Some(5)
        );
        assert_eq!(schedule.next_deadline(), start + Duration::from_millis(120));
    }
}
