//! Drift-free 20 ms pacing. [`PacingSchedule`] is the sans-IO core: deadlines are computed as
//! `start + n × period`, never `previous + period`, so scheduling jitter never accumulates.
//! [`Pacer`] is the thin tokio driver: ONE task per process ticks and publishes the tick number
//! on a `watch` channel; every media session waits on that channel, so there is no timer per
//! call or per packet.

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

/// The shared tick source.
#[derive(Debug, Clone)]
pub struct Pacer {
    ticks: tokio::sync::watch::Receiver<u64>,
}

impl Pacer {
    /// Spawns the pacing task on the current tokio runtime. It ends when every `Pacer` clone
    /// (every subscriber) is dropped.
    pub fn spawn() -> Pacer {
        let (sender, ticks) = tokio::sync::watch::channel(0u64);
        tokio::spawn(async move {
            let mut schedule = PacingSchedule::new(Instant::now(), FRAME_PERIOD);
            loop {
                let deadline = schedule.next_deadline();
                tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)).await;
                if let Some(tick) = schedule.on_wake(Instant::now())
                    && sender.send(tick).is_err()
                {
                    break;
                }
            }
        });
        Pacer { ticks }
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
