//! Statistics per queue and per agent, live (since the engine started) and per interval
//! (15 minutes by default). A duration (talk, wrap-up, time in a state) is counted in the
//! interval in which it ended.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use serde::Serialize;

/// How many closed intervals are kept (one day of 15-minute intervals).
const KEPT_INTERVALS: usize = 96;

/// Queue counters. `offered = answered + abandoned + short_abandoned + other_exits() + waiting`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct QueueCounters {
    /// Calls that joined (including those refused as full or with no agents).
    pub offered: u64,
    pub answered: u64,
    pub answered_within_target: u64,
    /// Caller hung up after the short-abandon threshold.
    pub abandoned: u64,
    /// Caller hung up within the short-abandon threshold (left out of abandon rate and SL).
    pub short_abandoned: u64,
    pub timed_out: u64,
    pub full: u64,
    pub no_agents: u64,
    pub overflowed: u64,
    pub callbacks_requested: u64,
    pub callbacks_connected: u64,
    pub callbacks_failed: u64,
    /// Sum of waits of answered calls (for ASA).
    pub answer_wait: Duration,
    /// Calls whose handling (talk + wrap-up) finished, and the sum of it (for AHT).
    pub handled: u64,
    pub handle_time: Duration,
    pub talk_time: Duration,
}

impl QueueCounters {
    pub fn other_exits(&self) -> u64 {
        self.timed_out + self.full + self.no_agents + self.overflowed + self.callbacks_requested
    }

    /// Percentage answered within the target, over answered plus (long) abandoned calls.
    pub fn service_level(&self) -> Option<f64> {
        let base = self.answered + self.abandoned;
        (base > 0).then(|| 100.0 * self.answered_within_target as f64 / base as f64)
    }

    /// Percentage abandoned over answered plus abandoned (short abandons excluded).
    pub fn abandon_rate(&self) -> Option<f64> {
        let base = self.answered + self.abandoned;
        (base > 0).then(|| 100.0 * self.abandoned as f64 / base as f64)
    }

    /// Average speed of answer.
    pub fn average_speed_of_answer(&self) -> Option<Duration> {
        average(self.answer_wait, self.answered)
    }

    /// Average handle time (talk + wrap-up).
    pub fn average_handle_time(&self) -> Option<Duration> {
        average(self.handle_time, self.handled)
    }
}

fn average(total: Duration, count: u64) -> Option<Duration> {
    let count = u32::try_from(count).ok().filter(|c| *c > 0)?;
    Some(total / count)
}

/// Agent counters; times are summed per state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AgentCounters {
    pub offered: u64,
    pub answered: u64,
    pub no_answer: u64,
    pub rejected: u64,
    pub logged_in: Duration,
    pub available: Duration,
    pub paused: Duration,
    pub reserved: Duration,
    pub talk: Duration,
    pub wrap_up: Duration,
}

impl AgentCounters {
    /// Share of staffed time spent ringing, talking or in wrap-up.
    pub fn occupancy(&self) -> Option<f64> {
        let busy = self.talk + self.wrap_up + self.reserved;
        let staffed = busy + self.available;
        (!staffed.is_zero()).then(|| busy.as_secs_f64() / staffed.as_secs_f64())
    }

    pub fn calls_per_hour(&self) -> Option<f64> {
        let hours = self.logged_in.as_secs_f64() / 3600.0;
        (hours > 0.0).then(|| self.answered as f64 / hours)
    }
}

/// Counters live and per interval index (interval start = epoch + index × interval length).
#[derive(Debug, Clone, Default)]
pub(crate) struct Series<C> {
    pub(crate) live: C,
    pub(crate) intervals: VecDeque<(u64, C)>,
}

impl<C: Default + Clone> Series<C> {
    /// Applies `change` to the live counters and to those of `interval`.
    pub(crate) fn record(&mut self, interval: u64, change: impl Fn(&mut C)) {
        change(&mut self.live);
        match self.intervals.back_mut() {
            Some((index, counters)) if *index == interval => change(counters),
            _ => {
                let mut counters = C::default();
                change(&mut counters);
                self.intervals.push_back((interval, counters));
                while self.intervals.len() > KEPT_INTERVALS {
                    self.intervals.pop_front();
                }
            }
        }
    }

    pub(crate) fn intervals(&self) -> BTreeMap<u64, C> {
        self.intervals.iter().cloned().collect()
    }
}

/// A queue's figures at one moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueSnapshot {
    pub queue: String,
    /// Since the engine started.
    pub totals: QueueCounters,
    /// Customer calls in the queue (waiting or ringing an agent).
    pub waiting: usize,
    pub callbacks_waiting: usize,
    pub longest_wait: Option<Duration>,
    pub agents_logged_in: usize,
    pub agents_staffed: usize,
    pub agents_available: usize,
    /// Average handle time of recent calls (or the configured default), as used for EWT.
    pub recent_handle_time: Duration,
}

/// An agent's figures at one moment (the current state's time so far included).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentSnapshot {
    pub agent: String,
    pub state: &'static str,
    pub in_state_for: Duration,
    pub totals: AgentCounters,
}
