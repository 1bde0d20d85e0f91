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
    /// The media threads or the event loop run later than `overload.max_media_lag`, the media
    /// threads are busier than `overload.max_media_load`, or the process uses more than
    /// `overload.max_cpu` of its cores.
    Saturated,
}

/// How the node is doing when a call arrives.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct NodeHealth {
    /// How late the busiest media thread or the event loop wakes, smoothed.
    pub lag: Duration,
    /// The busiest media thread's share of each 20 ms spent on media work, smoothed.
    pub load: f64,
    /// CPU time the whole process has used so far (all threads).
    pub cpu_time: Duration,
}

/// The process's CPU use as a share of the cores it may run on, from successive readings of its
/// CPU time (sans-IO): a sample per 100 ms at most, smoothed over a few samples.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuMeter {
    last: Option<(Instant, Duration)>,
    share: f64,
}

impl CpuMeter {
    const MIN_SAMPLE: Duration = Duration::from_millis(100);

    /// Takes a reading (`cpu_time` at `now`); returns the smoothed share (0.0 – 1.0).
    pub fn record(&mut self, now: Instant, cpu_time: Duration, cores: f64) -> f64 {
        match self.last {
            None => self.last = Some((now, cpu_time)),
            Some((then, used)) => {
                let wall = now.saturating_duration_since(then);
                if wall >= Self::MIN_SAMPLE {
                    let sample = cpu_time.saturating_sub(used).as_secs_f64()
                        / (wall.as_secs_f64() * cores.max(1.0));
                    // Half-weight per sample: a quarter second to follow a change.
                    self.share = (self.share + sample.min(1.0)) / 2.0;
                    self.last = Some((now, cpu_time));
                }
            }
        }
        self.share
    }

    pub fn share(&self) -> f64 {
        self.share
    }
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
    /// Cores the process may run on (its CPU affinity).
    cores: f64,
    cpu: CpuMeter,
    /// Call-rate tokens (one per call), refilled at `max_call_rate` per second up to one
    /// second's worth.
    tokens: f64,
    refilled_at: Option<Instant>,
}

impl Admission {
    pub fn new(config: OverloadConfig, cores: usize) -> Self {
        let tokens = f64::from(config.max_call_rate);
        Admission {
            config,
            cores: cores.max(1) as f64,
            cpu: CpuMeter::default(),
            tokens,
            refilled_at: None,
        }
    }

    /// Takes new limits (configuration reload), keeping the bucket's state.
    pub fn reconfigure(&mut self, config: OverloadConfig) {
        self.tokens = self.tokens.min(f64::from(config.max_call_rate));
        self.config = config;
    }

    /// Takes a reading of the process's CPU time between calls (keeps the meter current).
    pub fn observe_cpu(&mut self, now: Instant, cpu_time: Duration) -> f64 {
        self.cpu.record(now, cpu_time, self.cores)
    }

    /// The process's recent CPU use as a share of its cores.
    pub fn cpu_share(&self) -> f64 {
        self.cpu.share()
    }

    pub fn retry_after(&self) -> Duration {
        self.config.retry_after
    }

    /// Decides on one new call at `now`; a call taken uses a call-rate token.
    pub fn admit(
        &mut self,
        now: Instant,
        calls_in_progress: usize,
        media: NodeHealth,
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
        let cpu = self.observe_cpu(now, media.cpu_time);
        if self.config.max_cpu > 0.0 && cpu > self.config.max_cpu {
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
            max_cpu: 0.0,
            retry_after: Duration::from_secs(5),
        }
    }

    const IDLE: NodeHealth = NodeHealth {
        lag: Duration::ZERO,
        load: 0.0,
        cpu_time: Duration::ZERO,
    };

    fn lagging(ms: u64) -> NodeHealth {
        NodeHealth {
            lag: Duration::from_millis(ms),
            ..IDLE
        }
    }

    #[test]
    fn no_limits_take_every_call() {
        let mut admission = Admission::new(config(0, 0, 0), 1);
        let now = Instant::now();
        for calls in 0..10_000 {
            assert_eq!(
                admission.admit(
                    now,
                    calls,
                    NodeHealth {
                        lag: Duration::from_secs(1),
                        load: 1.0,
                        cpu_time: Duration::from_secs(calls as u64),
                    }
                ),
                Ok(())
            );
        }
    }

    #[test]
    fn calls_in_progress_are_capped() {
        let mut admission = Admission::new(config(3, 0, 0), 1);
        let now = Instant::now();
        assert_eq!(admission.admit(now, 2, IDLE), Ok(()));
        assert_eq!(admission.admit(now, 3, IDLE), Err(Refusal::TooManyCalls));
    }

    #[test]
    fn call_rate_allows_a_one_second_burst_then_the_rate() {
        let mut admission = Admission::new(config(0, 10, 0), 1);
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
        let mut admission = Admission::new(config(0, 0, 5), 1);
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
        let mut admission = Admission::new(
            OverloadConfig {
                max_media_load: 0.85,
                ..config(0, 0, 20)
            },
            1,
        );
        let now = Instant::now();
        let load = |load| NodeHealth {
            lag: Duration::from_micros(50),
            load,
            cpu_time: Duration::ZERO,
        };
        assert_eq!(admission.admit(now, 900, load(0.80)), Ok(()));
        assert_eq!(
            admission.admit(now, 950, load(0.90)),
            Err(Refusal::Saturated)
        );
        assert_eq!(admission.admit(now, 940, load(0.84)), Ok(()));
    }

    #[test]
    fn a_busy_process_refuses_until_its_cpu_use_drops() {
        let mut admission = Admission::new(
            OverloadConfig {
                max_cpu: 0.9,
                ..config(0, 0, 0)
            },
            2,
        );
        let start = Instant::now();
        let at = |ms: u64, cpu_ms: u64| {
            (
                start + Duration::from_millis(ms),
                NodeHealth {
                    cpu_time: Duration::from_millis(cpu_ms),
                    ..IDLE
                },
            )
        };
        // Two cores, the process using 1.9 of them (190 ms of CPU per 100 ms): refused once
        // the meter has followed it.
        let mut used = 0;
        let mut outcome = Ok(());
        for step in 0..=10u64 {
            let (now, health) = at(step * 100, used);
            outcome = admission.admit(now, 10, health);
            used += 190;
        }
        assert_eq!(outcome, Err(Refusal::Saturated));
        assert!(admission.cpu_share() > 0.9, "{}", admission.cpu_share());
        // Half a core from then on: taken again within a few samples.
        for step in 11..=16u64 {
            let (now, health) = at(step * 100, used);
            outcome = admission.admit(now, 10, health);
            used += 50;
        }
        assert_eq!(outcome, Ok(()));
    }

    #[test]
    fn refused_calls_do_not_use_rate_tokens() {
        let mut admission = Admission::new(config(1, 5, 0), 1);
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
