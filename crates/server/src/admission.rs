//! Overload control: whether a new call is taken or refused with 503 + Retry-After before any
//! media is spent on it. Sans-IO: the node passes the time, the calls in progress and the
//! media threads' health; this decides.
//!
//! Four limits, each optional: calls in progress, new calls per second (a token bucket with a
//! one-second burst), and saturation, seen two ways: the busiest media thread spends most of
//! each 20 ms on media work (one more call and its walk would not fit the period), or it already
//! wakes late. Refusing early keeps goodput at capacity when offered more: a call refused costs
//! one response, a call taken and then starved costs retransmissions, media and a caller who
//! hears nothing.

use std::time::{Duration, Instant};

use crate::config::OverloadConfig;

/// Why a call was refused (the metric label and the Warning text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `overload.max_calls` calls are in progress.
    TooManyCalls,
    /// More than `overload.max_call_rate` new calls per second.
    CallRate,
    /// The media threads run later than `overload.max_media_lag`, or busier than
    /// `overload.max_media_load`.
    Saturated,
}

/// How the media threads are doing (see `santral_media::MediaEngine`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MediaHealth {
    /// How late the busiest media thread wakes, smoothed.
    pub lag: Duration,
    /// The busiest media thread's share of each 20 ms spent on media work, smoothed.
    pub load: f64,
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
        media: MediaHealth,
    ) -> Result<(), Refusal> {
        let max_calls = self.config.max_calls as usize;
        if max_calls > 0 && calls_in_progress >= max_calls {
            return Err(Refusal::TooManyCalls);
        }
        if !self.config.max_media_lag.is_zero() && media.lag > self.config.max_media_lag {
            return Err(Refusal::Saturated);
        }
        if self.config.max_media_load > 0.0 && media.load > self.config.max_media_load {
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
            max_media_load: 0.0,
            retry_after: Duration::from_secs(5),
        }
    }

    const IDLE: MediaHealth = MediaHealth {
        lag: Duration::ZERO,
        load: 0.0,
    };

    fn lagging(ms: u64) -> MediaHealth {
        MediaHealth {
            lag: Duration::from_millis(ms),
            load: 0.0,
        }
    }

    #[test]
    fn no_limits_take_every_call() {
        let mut admission = Admission::new(config(0, 0, 0));
        let now = Instant::now();
        for calls in 0..10_000 {
            assert_eq!(
                admission.admit(
                    now,
                    calls,
                    MediaHealth {
                        lag: Duration::from_secs(1),
                        load: 1.0
                    }
                ),
                Ok(())
            );
        }
    }

    #[test]
    fn calls_in_progress_are_capped() {
        let mut admission = Admission::new(config(3, 0, 0));
        let now = Instant::now();
        assert_eq!(admission.admit(now, 2, IDLE), Ok(()));
        assert_eq!(admission.admit(now, 3, IDLE), Err(Refusal::TooManyCalls));
    }

    #[test]
    fn call_rate_allows_a_one_second_burst_then_the_rate() {
        let mut admission = Admission::new(config(0, 10, 0));
        let start = Instant::now();
        let taken = (0..50)
            .filter(|_| admission.admit(start, 0, IDLE).is_ok())
            .count();
        assert_eq!(taken, 10, "a burst of one second's worth");
        // Over the next 2 s, offered 100 calls/s: 20 more are taken, 10 per second.
        let mut taken = 0;
        for n in 1..=200u64 {
            let now = start + Duration::from_millis(10 * n);
            if admission.admit(now, 0, IDLE).is_ok() {
                taken += 1;
            }
        }
        assert_eq!(taken, 20);
        assert_eq!(
            admission.admit(start + Duration::from_millis(2000), 0, IDLE),
            Err(Refusal::CallRate)
        );
    }

    #[test]
    fn a_late_media_clock_refuses_until_it_recovers() {
        let mut admission = Admission::new(config(0, 0, 5));
        let now = Instant::now();
        assert_eq!(admission.admit(now, 100, lagging(1)), Ok(()));
        assert_eq!(
            admission.admit(now, 100, lagging(8)),
            Err(Refusal::Saturated)
        );
        assert_eq!(admission.admit(now, 100, lagging(2)), Ok(()));
    }

    #[test]
    fn a_busy_media_thread_refuses_before_it_runs_late() {
        let mut admission = Admission::new(OverloadConfig {
            max_media_load: 0.85,
            ..config(0, 0, 20)
        });
        let now = Instant::now();
        let load = |load| MediaHealth {
            lag: Duration::from_micros(50),
            load,
        };
        assert_eq!(admission.admit(now, 900, load(0.80)), Ok(()));
        assert_eq!(
            admission.admit(now, 950, load(0.90)),
            Err(Refusal::Saturated)
        );
        assert_eq!(admission.admit(now, 940, load(0.84)), Ok(()));
    }

    #[test]
    fn refused_calls_do_not_use_rate_tokens() {
        let mut admission = Admission::new(config(1, 5, 0));
        let now = Instant::now();
        for _ in 0..20 {
            assert_eq!(admission.admit(now, 1, IDLE), Err(Refusal::TooManyCalls));
        }
        let taken = (0..20)
            .filter(|_| admission.admit(now, 0, IDLE).is_ok())
            .count();
        assert_eq!(taken, 5);
    }
}
