//! Drift-free 20 ms pacing. [`PacingSchedule`] is the sans-IO core: deadlines are computed as
//! `start + n × period`, never `previous + period`, so scheduling jitter never accumulates.
//! The media engine's threads sleep to its deadlines; [`Pacer`] publishes the same grid's tick
//! numbers to tokio tasks (bridges). There is no timer per call or per packet.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

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

/// How late a media thread wakes, smoothed: the node's saturation signal. An idle or busy-but-coping
/// thread wakes within a fraction of a millisecond; a saturated one runs late on
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

/// The shared tick for drivers in tokio tasks (bridges, mixers): one task per process ticks and
/// publishes the tick number. Single sessions are paced by the media engine's threads, on the
/// same grid. How late this task wakes is the event loop's own saturation signal (SIP, IVR and
/// bridges run there), apart from the media threads'.
#[derive(Debug, Clone)]
pub struct Pacer {
    ticks: tokio::sync::watch::Receiver<u64>,
    lag_us: Arc<AtomicU32>,
}

impl Pacer {
    /// Spawns the pacing task on the current tokio runtime. It ends when every `Pacer` clone
    /// and every subscriber is dropped.
    pub fn spawn() -> Pacer {
        Self::spawn_from(Instant::now())
    }

    /// [`Pacer::spawn`] on a grid half a period after `media_epoch` (the media engine's): its
    /// ticks fall between the media threads' walks, so that its lateness measures the event
    /// loop and not a walk in progress on the same core.
    pub fn spawn_between_walks(media_epoch: Instant) -> Pacer {
        Self::spawn_from(media_epoch + FRAME_PERIOD / 2)
    }

    fn spawn_from(start: Instant) -> Pacer {
        let (sender, ticks) = tokio::sync::watch::channel(0u64);
        let lag_us = Arc::new(AtomicU32::new(0));
        let published = lag_us.clone();
        tokio::spawn(async move {
            let mut schedule = PacingSchedule::new(start, FRAME_PERIOD);
            let mut meter = LagMeter::default();
            loop {
                let deadline = schedule.next_deadline();
                tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)).await;
                let now = Instant::now();
                let lag = meter.record(now.saturating_duration_since(deadline));
                published.store(
                    lag.as_micros().min(u128::from(u32::MAX)) as u32,
                    Ordering::Relaxed,
                );
                if let Some(tick) = schedule.on_wake(now)
                    && sender.send(tick).is_err()
                {
                    break;
                }
            }
        });
        Pacer { ticks, lag_us }
    }

    /// How late the event loop has been running its timers lately (see [`LagMeter`]).
    pub fn lag(&self) -> Duration {
        Duration::from_micros(u64::from(self.lag_us.load(Ordering::Relaxed)))
    }

    /// A receiver that wakes on every tick (`changed().await`).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.ticks.clone()
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
