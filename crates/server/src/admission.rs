//! Overload control: whether a new call is taken or refused with 503 + Retry-After before any
//! media is spent on it. Sans-IO: the node passes the time, the calls in progress and the
//! media clock's lag; this decides.
//!
//! Three limits, each optional: calls in progress, new calls per second (a token bucket with a
//! one-second burst), and saturation — the shared 20 ms media clock waking late means the node
//! has no CPU to spare, and one more call would degrade every call's audio. Refusing early keeps
//! goodput at capacity when offered more: a call refused costs one response, a call taken and
//! then starved costs retransmissions, media and a caller who hears nothing.

use std::time::{Duration, Instant};

use crate::config::OverloadConfig;

/// Why a call was refused (the metric label and the Warning text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `overload.max_calls` calls are in progress.
    TooManyCalls,
    /// More than `overload.max_call_rate` new calls per second.
    CallRate,
    /// The media clock runs later than `overload.max_media_lag`.
    Saturated,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::TooManyCalls => "max-calls",
            Refusal::CallRate => "call-rate",
            Refusal::Saturated => "saturated",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Admission {
    config: OverloadConfig,
    /// Call-rate tokens (one per call), refilled at `max_call_rate` per second up to one
    /// second's worth.
    tokens: f64,
    refilled_at: Option<Instant>,
}

impl Admission {
    pub fn new(config: OverloadConfig) -> Self {
        let tokens = f64::from(config.max_call_rate);
        Admission {
            config,
            tokens,
            refilled_at: None,
        }
    }

    /// Takes new limits (configuration reload), keeping the bucket's state.
    pub fn reconfigure(&mut self, config: OverloadConfig) {
        self.tokens = self.tokens.min(f64::from(config.max_call_rate));
        self.config = config;
    }

    pub fn retry_after(&self) -> Duration {
        self.config.retry_after
    }

    /// Decides on one new call at `now`; a call taken uses a call-rate token.
    pub fn admit(
        &mut self,
        now: Instant,
        calls_in_progress: usize,
        media_lag: Duration,
    ) -> Result<(), Refusal> {
        let max_calls = self.config.max_calls as usize;
        if max_calls > 0 && calls_in_progress >= max_calls {
            return Err(Refusal::TooManyCalls);
        }
        if !self.config.max_media_lag.is_zero() && media_lag > self.config.max_media_lag {
            return Err(Refusal::Saturated);
        }
        let rate = f64::from(self.config.max_call_rate);
        if rate > 0.0 {
            let elapsed = self
                .refilled_at
                .map(|at| now.saturating_duration_since(at).as_secs_f64())
                .unwrap_or(0.0);
            self.tokens = (self.tokens + elapsed * rate).min(rate.max(1.0));
            self.refilled_at = Some(now);
            // A hair of tolerance: tenths added up in floating point fall just short of 1.
            if self.tokens < 1.0 - 1e-9 {
                return Err(Refusal::CallRate);
            }
            self.tokens = (self.tokens - 1.0).max(0.0);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(max_calls: u32, max_call_rate: u32, max_media_lag_ms: u64) -> OverloadConfig {
        OverloadConfig {
            max_calls,
            max_call_rate,
            max_media_lag: Duration::from_millis(max_media_lag_ms),
            retry_after: Duration::from_secs(5),
        }
    }

    #[test]
    fn no_limits_take_every_call() {
        let mut admission = Admission::new(config(0, 0, 0));
        let now = Instant::now();
        for calls in 0..10_000 {
            assert_eq!(admission.admit(now, calls, Duration::from_secs(1)), Ok(()));
        }
    }

    #[test]
    fn calls_in_progress_are_capped() {
        let mut admission = Admission::new(config(3, 0, 0));
        let now = Instant::now();
        assert_eq!(admission.admit(now, 2, Duration::ZERO), Ok(()));
        assert_eq!(
            admission.admit(now, 3, Duration::ZERO),
            Err(Refusal::TooManyCalls)
        );
    }

    #[test]
    fn call_rate_allows_a_one_second_burst_then_the_rate() {
        let mut admission = Admission::new(config(0, 10, 0));
        let start = Instant::now();
        let taken = (0..50)
            .filter(|_| admission.admit(start, 0, Duration::ZERO).is_ok())
            .count();
        assert_eq!(taken, 10, "a burst of one second's worth");
        // Over the next 2 s, offered 100 calls/s: 20 more are taken, 10 per second.
        let mut taken = 0;
        for n in 1..=200u64 {
            let now = start + Duration::from_millis(10 * n);
            if admission.admit(now, 0, Duration::ZERO).is_ok() {
                taken += 1;
            }
        }
        assert_eq!(taken, 20);
        assert_eq!(
            admission.admit(start + Duration::from_millis(2000), 0, Duration::ZERO),
            Err(Refusal::CallRate)
        );
    }

    #[test]
    fn a_late_media_clock_refuses_until_it_recovers() {
        let mut admission = Admission::new(config(0, 0, 5));
        let now = Instant::now();
        assert_eq!(admission.admit(now, 100, Duration::from_millis(1)), Ok(()));
        assert_eq!(
            admission.admit(now, 100, Duration::from_millis(8)),
            Err(Refusal::Saturated)
        );
        assert_eq!(admission.admit(now, 100, Duration::from_millis(2)), Ok(()));
    }

    #[test]
    fn refused_calls_do_not_use_rate_tokens() {
        let mut admission = Admission::new(config(1, 5, 0));
        let now = Instant::now();
        for _ in 0..20 {
            assert_eq!(
                admission.admit(now, 1, Duration::ZERO),
                Err(Refusal::TooManyCalls)
            );
        }
        let taken = (0..20)
            .filter(|_| admission.admit(now, 0, Duration::ZERO).is_ok())
            .count();
        assert_eq!(taken, 5);
    }
}
