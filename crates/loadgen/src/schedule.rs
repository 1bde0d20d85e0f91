//! Time plans in virtual time: the ONE 20 ms tick every call's RTP is paced from, and the call
//! launch plan (a steady rate, optionally capped at a concurrency).

use std::time::{Duration, Instant};

/// A tick of the shared media clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    pub index: u64,
    pub scheduled: Instant,
    /// How late the generator serves this tick (its own send-time error).
    pub lateness: Duration,
}

/// The shared packet clock: tick `n` is due at `start + n · period`. A late generator catches
/// up at most `max_catch_up` ticks (sending those packets late, back to back) and skips older
/// ones, counting them, so a stall never turns into an unbounded burst.
#[derive(Debug, Clone)]
pub struct Pacer {
    start: Instant,
    period: Duration,
    next: u64,
    max_catch_up: u64,
    skipped: u64,
}

impl Pacer {
    pub fn new(start: Instant, period: Duration, max_catch_up: u64) -> Pacer {
        Pacer {
            start,
            period: period.max(Duration::from_micros(1)),
            next: 0,
            max_catch_up,
            skipped: 0,
        }
    }

    fn at(&self, index: u64) -> Instant {
        self.start + self.period * u32::try_from(index).unwrap_or(u32::MAX)
    }

    /// When the next tick is due.
    pub fn next_deadline(&self) -> Instant {
        self.at(self.next)
    }

    /// Ticks skipped because the generator fell too far behind.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// The next due tick, if any; call repeatedly until `None`.
    pub fn poll(&mut self, now: Instant) -> Option<Tick> {
        let due = self.at(self.next);
        if now < due {
            return None;
        }
        let behind = ((now - due).as_nanos() / self.period.as_nanos()) as u64;
        if behind > self.max_catch_up {
            let skip = behind - self.max_catch_up;
            self.skipped += skip;
            self.next += skip;
        }
        let index = self.next;
        let scheduled = self.at(index);
        self.next += 1;
        Some(Tick {
            index,
            scheduled,
            lateness: now - scheduled,
        })
    }
}

/// When to start calls: call `n` is due at `start + n / rate`, never more than `total`, and
/// never more than `max_concurrent` at once (a capped run ramps to that level and holds it).
#[derive(Debug, Clone)]
pub struct Launcher {
    start: Instant,
    interval_ns: u128,
    total: u64,
    launched: u64,
    max_concurrent: Option<usize>,
}

impl Launcher {
    pub fn new(
        start: Instant,
        rate_per_s: f64,
        total: u64,
        max_concurrent: Option<usize>,
    ) -> Launcher {
        let interval_ns = if rate_per_s > 0.0 {
            (1e9 / rate_per_s) as u128
        } else {
            0
        };
        Launcher {
            start,
            interval_ns,
            total,
            launched: 0,
            max_concurrent,
        }
    }

    fn due_at(&self, index: u64) -> Instant {
        let ns = self.interval_ns * u128::from(index);
        self.start + Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }

    pub fn launched(&self) -> u64 {
        self.launched
    }

    pub fn is_done(&self) -> bool {
        self.launched >= self.total
    }

    /// Whether one more call should start now (then it counts as launched).
    pub fn poll(&mut self, now: Instant, active: usize) -> bool {
        if self.is_done() || self.max_concurrent.is_some_and(|max| active >= max) {
            return false;
        }
        if now >= self.due_at(self.launched) {
            self.launched += 1;
            true
        } else {
            false
        }
    }

    /// When the next call is due, unless all are launched or the concurrency cap holds it back
    /// (then a call ending is what frees the next launch).
    pub fn next_deadline(&self, active: usize) -> Option<Instant> {
        if self.is_done() || self.max_concurrent.is_some_and(|max| active >= max) {
            None
        } else {
            Some(self.due_at(self.launched))
        }
    }

    /// Stops launching (the run's time is up).
    pub fn stop(&mut self) {
        self.total = self.launched;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn ticks_come_every_20_ms_with_their_lateness() {
        let t0 = Instant::now();
        let mut pacer = Pacer::new(t0, 20 * MS, 3);
        let first = pacer.poll(t0).unwrap();
        assert_eq!((first.index, first.lateness), (0, Duration::ZERO));
        assert_eq!(pacer.poll(t0 + 19 * MS), None);
        assert_eq!(pacer.next_deadline(), t0 + 20 * MS);
        let late = pacer.poll(t0 + 21 * MS).unwrap();
        assert_eq!((late.index, late.lateness), (1, MS));
        assert_eq!(pacer.poll(t0 + 21 * MS), None);
        assert_eq!(pacer.skipped(), 0);
    }

    #[test]
    fn a_stalled_generator_catches_up_a_bounded_number_of_ticks() {
        let t0 = Instant::now();
        let mut pacer = Pacer::new(t0, 20 * MS, 3);
        assert_eq!(pacer.poll(t0).map(|t| t.index), Some(0));
        // 205 ms later: ticks 1..=10 are due; only the newest 4 (7..=10) are served.
        let now = t0 + 205 * MS;
        let served: Vec<u64> = std::iter::from_fn(|| pacer.poll(now))
            .map(|t| t.index)
            .collect();
        assert_eq!(served, [7, 8, 9, 10]);
        assert_eq!(pacer.skipped(), 6);
        assert_eq!(pacer.next_deadline(), t0 + 220 * MS);
    }

    #[test]
    fn launches_follow_the_rate() {
        let t0 = Instant::now();
        let mut launcher = Launcher::new(t0, 200.0, 3, None);
        assert!(launcher.poll(t0, 0));
        assert!(!launcher.poll(t0, 1));
        assert_eq!(launcher.next_deadline(1), Some(t0 + 5 * MS));
        assert!(launcher.poll(t0 + 5 * MS, 1));
        assert!(launcher.poll(t0 + 10 * MS, 2));
        assert!(launcher.is_done());
        assert!(!launcher.poll(t0 + 100 * MS, 0));
        assert_eq!(launcher.next_deadline(0), None);
    }

    #[test]
    fn the_concurrency_cap_holds_launches_until_a_call_ends() {
        let t0 = Instant::now();
        let mut launcher = Launcher::new(t0, 1000.0, 10, Some(2));
        assert!(launcher.poll(t0, 0));
        assert!(launcher.poll(t0 + MS, 1));
        assert!(!launcher.poll(t0 + 50 * MS, 2));
        assert_eq!(launcher.next_deadline(2), None);
        // One call ended: the overdue launch goes at once.
        assert!(launcher.poll(t0 + 50 * MS, 1));
        assert_eq!(launcher.launched(), 3);
        launcher.stop();
        assert!(launcher.is_done());
    }
}
