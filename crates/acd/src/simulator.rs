//! Staffing simulator: drives the real [`Acd`] engine in virtual time with Poisson arrivals,
//! exponential (or fixed) handle times and, optionally, exponentially distributed caller patience.
//! Agents answer at once; what is measured is the queue, read from the engine's own statistics.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use thiserror::Error;

use crate::callback::MemoryCallbackStore;
use crate::config::{AcdConfig, AgentConfig, QueueConfig};
use crate::engine::Acd;
use crate::id::{AgentId, CallId};
use crate::input::{CallJoin, Input};
use crate::output::Output;

const QUEUE: &str = "simulated";

/// How long calls last.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HandleTime {
    Exponential(Duration),
    Fixed(Duration),
}

impl HandleTime {
    pub fn mean(&self) -> Duration {
        match self {
            HandleTime::Exponential(d) | HandleTime::Fixed(d) => *d,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SimulationParams {
    pub calls_per_hour: f64,
    pub handle: HandleTime,
    pub agents: u32,
    pub target: Duration,
    pub target_percent: f64,
    /// Mean caller patience (exponential); None: nobody hangs up.
    pub patience: Option<Duration>,
    pub hours: f64,
    pub seed: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SimulationReport {
    pub offered: u64,
    pub answered: u64,
    pub abandoned: u64,
    /// Percent answered within the target.
    pub service_level: Option<f64>,
    pub average_speed_of_answer: Option<Duration>,
    /// Percent of answered + abandoned.
    pub abandon_rate: Option<f64>,
    /// Mean agent occupancy, 0–1.
    pub occupancy: Option<f64>,
    pub average_handle_time: Option<Duration>,
}

#[derive(Debug, Error, PartialEq)]
pub enum SimulationError {
    #[error("{0} must be a positive, finite number (hours at most 1,000,000)")]
    NotPositive(&'static str),
    #[error("at least one agent is needed")]
    NoAgents,
    #[error("the simulation is too large (more than 10 million calls)")]
    TooLarge,
    #[error("engine refused an input: {0}")]
    Engine(#[from] crate::error::AcdError),
    #[error("configuration: {0}")]
    Config(#[from] crate::error::ConfigError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum SimEvent {
    Ends(CallId),
    GivesUp(CallId),
}

fn exponential(rng: &mut StdRng, mean_secs: f64) -> f64 {
    // 1 - U is in (0, 1], so the log is finite.
    let u: f64 = rng.random();
    -mean_secs * (1.0 - u).ln()
}

/// Runs the simulation. `epoch` is the virtual start time (any instant; no clock is read).
pub fn simulate(
    params: &SimulationParams,
    epoch: Instant,
) -> Result<SimulationReport, SimulationError> {
    let positive = |x: f64| x.is_finite() && x > 0.0;
    if !positive(params.calls_per_hour) {
        return Err(SimulationError::NotPositive("rate"));
    }
    if !positive(params.hours) || params.hours > 1e6 {
        return Err(SimulationError::NotPositive("hours"));
    }
    if params.handle.mean().is_zero() {
        return Err(SimulationError::NotPositive("handle time"));
    }
    if params.agents == 0 {
        return Err(SimulationError::NoAgents);
    }
    let expected_calls = params.calls_per_hour * params.hours;
    if expected_calls > 10_000_000.0 {
        return Err(SimulationError::TooLarge);
    }
    let mut queue = QueueConfig::new(QUEUE, Vec::new());
    queue.service_level_secs = params.target.as_secs();
    queue.short_abandon_secs = 0;
    queue.ring_timeout_secs = 3600;
    let agents: Vec<AgentConfig> = (0..params.agents)
        .map(|i| AgentConfig::new(format!("agent-{i}"), &[], &[]))
        .collect();
    let config = AcdConfig {
        queues: vec![queue],
        agents: agents.clone(),
        no_answer_pause_after: 0,
        retry_delay_secs: 0,
        interval_secs: 900,
    };
    let mut acd = Acd::new(
        config,
        Box::new(MemoryCallbackStore::default()),
        params.seed,
        epoch,
    )?;
    for agent in &agents {
        acd.handle(
            Input::AgentLogin {
                agent: AgentId::new(agent.id.clone()),
            },
            epoch,
        )?;
    }
    let mut rng = StdRng::seed_from_u64(params.seed);
    let end = epoch + Duration::from_secs_f64(params.hours * 3600.0);
    let mean_gap = 3600.0 / params.calls_per_hour;
    let mut next_arrival = Some(epoch + Duration::from_secs_f64(exponential(&mut rng, mean_gap)));
    let mut events: BinaryHeap<Reverse<(Instant, SimEvent)>> = BinaryHeap::new();
    let mut waiting: HashSet<CallId> = HashSet::new();
    let mut next_call = 0u64;
    let bound = (expected_calls * 20.0) as u64 + 10_000;
    let mut now = epoch;
    for _ in 0..bound {
        // Drain what the engine asked for at `now`.
        while let Some(output) = acd.poll_output() {
            match output {
                Output::Offer(offer) => {
                    acd.handle(
                        Input::OfferAnswered {
                            call: offer.call,
                            agent: offer.agent,
                        },
                        now,
                    )?;
                    let secs = match params.handle {
                        HandleTime::Exponential(mean) => exponential(&mut rng, mean.as_secs_f64()),
                        HandleTime::Fixed(d) => d.as_secs_f64(),
                    };
                    events.push(Reverse((
                        now + Duration::from_secs_f64(secs),
                        SimEvent::Ends(offer.call),
                    )));
                }
                Output::CallLeft { call, .. } => {
                    waiting.remove(&call);
                }
                _ => {}
            }
        }
        let candidates = [
            next_arrival,
            events.peek().map(|Reverse((at, _))| *at),
            acd.poll_timeout(),
        ];
        let Some(at) = candidates.into_iter().flatten().min() else {
            break;
        };
        now = at;
        if next_arrival == Some(at) {
            let call = CallId(next_call);
            next_call += 1;
            waiting.insert(call);
            if let Some(patience) = params.patience {
                let secs = exponential(&mut rng, patience.as_secs_f64());
                events.push(Reverse((
                    now + Duration::from_secs_f64(secs),
                    SimEvent::GivesUp(call),
                )));
            }
            acd.handle(Input::CallJoin(CallJoin::new(call, QUEUE)), now)?;
            let gap = Duration::from_secs_f64(exponential(&mut rng, mean_gap));
            next_arrival = Some(now + gap).filter(|t| *t < end);
        } else if events.peek().is_some_and(|Reverse((t, _))| *t == at) {
            if let Some(Reverse((_, event))) = events.pop() {
                match event {
                    SimEvent::Ends(call) => acd.handle(Input::CallEnded { call }, now)?,
                    SimEvent::GivesUp(call) => {
                        if waiting.contains(&call) {
                            acd.handle(Input::CallerHungUp { call }, now)?;
                        }
                    }
                }
            }
        } else {
            acd.handle_timeout(now);
        }
    }
    let snapshot = acd
        .queue_snapshot(QUEUE, now)
        .ok_or(SimulationError::NoAgents)?;
    let totals = snapshot.totals;
    let mut occupancy_sum = 0.0;
    let mut occupancy_count = 0u32;
    for agent in &agents {
        if let Some(o) = acd
            .agent_snapshot(&agent.id, end)
            .and_then(|s| s.totals.occupancy())
        {
            occupancy_sum += o;
            occupancy_count += 1;
        }
    }
    Ok(SimulationReport {
        offered: totals.offered,
        answered: totals.answered,
        abandoned: totals.abandoned,
        service_level: totals.service_level(),
        average_speed_of_answer: totals.average_speed_of_answer(),
        abandon_rate: totals.abandon_rate(),
        occupancy: (occupancy_count > 0).then(|| occupancy_sum / f64::from(occupancy_count)),
        average_handle_time: totals.average_handle_time(),
    })
}

/// A command-line value that does not parse.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("{0}")]
pub struct ParseError(String);

/// Parses an arrival rate: `120/h`, `2/m`, `0.5/s` or a bare number of calls per hour.
pub fn parse_rate(text: &str) -> Result<f64, ParseError> {
    let (number, per) = text.split_once('/').unwrap_or((text, "h"));
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| ParseError(format!("rate {text:?}: expected a number like 120/h")))?;
    let factor = match per.trim() {
        "h" | "hour" => 1.0,
        "m" | "min" => 60.0,
        "s" | "sec" => 3600.0,
        other => {
            return Err(ParseError(format!(
                "rate {text:?}: unknown unit {other:?} (use /h, /m or /s)"
            )));
        }
    };
    let rate = value * factor;
    if rate.is_finite() && rate > 0.0 {
        Ok(rate)
    } else {
        Err(ParseError(format!("rate {text:?} must be above 0")))
    }
}

/// Parses a duration: `180s`, `3m`, `1.5h`, `250ms` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, ParseError> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| ParseError(format!("duration {text:?}: expected a number like 180s")))?;
    let secs = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(ParseError(format!(
                "duration {text:?}: unknown unit {other:?}"
            )));
        }
    };
    if secs.is_finite() && (0.0..1e9).contains(&secs) {
        Ok(Duration::from_secs_f64(secs))
    } else {
        Err(ParseError(format!("duration {text:?} is out of range")))
    }
}

/// Parses a service-level target `80/20` (80 % within 20 s); returns (percent, seconds).
pub fn parse_target(text: &str) -> Result<(f64, Duration), ParseError> {
    let err = || {
        ParseError(format!(
            "target {text:?}: expected PERCENT/SECONDS like 80/20"
        ))
    };
    let (percent, secs) = text.split_once('/').ok_or_else(err)?;
    let percent: f64 = percent.trim().parse().map_err(|_| err())?;
    if !(0.0..=100.0).contains(&percent) {
        return Err(err());
    }
    Ok((percent, parse_duration(secs)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_command_line_values() {
        assert_eq!(parse_rate("120/h"), Ok(120.0));
        assert_eq!(parse_rate("2/m"), Ok(120.0));
        assert_eq!(parse_rate("90"), Ok(90.0));
        assert!(parse_rate("x/h").is_err());
        assert!(parse_rate("5/d").is_err());
        assert!(parse_rate("-1/h").is_err());
        assert_eq!(parse_duration("180s"), Ok(Duration::from_secs(180)));
        assert_eq!(parse_duration("3m"), Ok(Duration::from_secs(180)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert!(parse_duration("3 weeks").is_err());
        assert_eq!(parse_target("80/20"), Ok((80.0, Duration::from_secs(20))));
        assert!(parse_target("180/20").is_err());
        assert!(parse_target("80").is_err());
    }
}
