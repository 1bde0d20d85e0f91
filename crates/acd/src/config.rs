//! Typed queue and agent configuration. The server maps its YAML onto these structs; durations are
//! written as whole seconds (`wrap_up_secs: 10`) so the YAML stays plain.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// The whole ACD configuration: queues and the agents that may log in.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcdConfig {
    #[serde(default)]
    pub queues: Vec<QueueConfig>,
    #[serde(default)]
    pub agents: Vec<AgentConfig>,
    /// After this many consecutive ring-no-answers an agent is paused with reason `no-answer`
    /// (0 disables the automatic pause).
    #[serde(default = "default_no_answer_pause_after")]
    pub no_answer_pause_after: u32,
    /// After a missed or rejected offer the agent gets no new offer for this long, so the same
    /// call is not rung straight back at the same phone.
    #[serde(default = "default_retry_delay_secs")]
    pub retry_delay_secs: u64,
    /// Statistics interval length (15 minutes by default).
    #[serde(default = "default_interval_secs")]
    pub interval_secs: u64,
}

fn default_no_answer_pause_after() -> u32 {
    3
}
fn default_retry_delay_secs() -> u64 {
    2
}
fn default_interval_secs() -> u64 {
    900
}

/// How a queue picks among the agents able to take a call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// The agent who has been available the longest.
    #[default]
    LongestIdle,
    /// The agent who has answered the fewest calls since login (then longest idle).
    FewestCalls,
    /// The agent with the least talk time since login (then longest idle).
    LeastTalkTime,
    /// Agents in order, continuing after the agent offered last.
    RoundRobin,
    /// Every matching available agent at once; the first to answer wins.
    RingAll,
    /// A uniformly random matching agent (seeded RNG).
    Random,
    /// Always the first available agent in the queue's agent order.
    Linear,
    /// The highest summed level over the required skills, then longest idle.
    BestSkill,
}

/// A skill with a minimum level (1–10).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkillRequirement {
    pub skill: String,
    #[serde(default = "default_min_level")]
    pub min_level: u8,
}

fn default_min_level() -> u8 {
    1
}

/// When a queue counts as empty for the join and leave policies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EmptyRule {
    /// Never treat the queue as empty.
    #[default]
    Never,
    /// Empty when no matching agent is logged in.
    NoAgentsLoggedIn,
    /// Empty when every matching agent is logged out or paused.
    NoAgentsStaffed,
}

/// One escalation step, applied `after_secs` after the call entered the queue.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationStep {
    pub after_secs: u64,
    /// New (lower) minimum levels for skills the queue requires.
    #[serde(default)]
    pub relax: BTreeMap<String, u8>,
    /// Alternative skill sets: an agent matching any one of them (all skills of the set) also
    /// qualifies.
    #[serde(default)]
    pub alternatives: Vec<Vec<SkillRequirement>>,
    /// Further languages accepted.
    #[serde(default)]
    pub add_languages: Vec<String>,
    /// Move the call to this queue (keeping its place by age).
    #[serde(default)]
    pub overflow_to: Option<String>,
}

/// A queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    pub name: String,
    /// All of these skills, each at least at its level.
    #[serde(default)]
    pub skills: Vec<SkillRequirement>,
    /// Required agent language (None: any).
    #[serde(default)]
    pub language: Option<String>,
    #[serde(default)]
    pub strategy: Strategy,
    /// Agent order for `linear` and `round-robin`; agents not listed follow in config order.
    #[serde(default)]
    pub agent_order: Vec<String>,
    #[serde(default)]
    pub wrap_up_secs: u64,
    #[serde(default = "default_ring_timeout_secs")]
    pub ring_timeout_secs: u64,
    /// Service level: `service_level_percent` % answered within `service_level_secs`.
    #[serde(default = "default_sl_secs")]
    pub service_level_secs: u64,
    #[serde(default = "default_sl_percent")]
    pub service_level_percent: u8,
    /// Callers hanging up sooner than this are short abandons, left out of abandon and SL figures.
    #[serde(default = "default_short_abandon_secs")]
    pub short_abandon_secs: u64,
    /// Maximum calls in the queue (waiting or ringing); None: unlimited.
    #[serde(default)]
    pub max_length: Option<usize>,
    /// Maximum wait before the call leaves with `timeout`; None: unlimited.
    #[serde(default)]
    pub max_wait_secs: Option<u64>,
    #[serde(default)]
    pub join_empty: EmptyRule,
    #[serde(default)]
    pub leave_when_empty: EmptyRule,
    /// Position / expected-wait announcement period; None: no announcements.
    #[serde(default)]
    pub announce_every_secs: Option<u64>,
    /// Fairness weight across queues for agents serving several (1.0 = equal).
    #[serde(default = "default_weight")]
    pub weight: f64,
    /// Handle time assumed for EWT until real calls have been handled.
    #[serde(default = "default_handle_secs")]
    pub default_handle_secs: u64,
    #[serde(default)]
    pub escalation: Vec<EscalationStep>,
}

fn default_ring_timeout_secs() -> u64 {
    15
}
fn default_sl_secs() -> u64 {
    20
}
fn default_sl_percent() -> u8 {
    80
}
fn default_short_abandon_secs() -> u64 {
    5
}
fn default_weight() -> f64 {
    1.0
}
fn default_handle_secs() -> u64 {
    180
}

impl QueueConfig {
    /// A queue with defaults for everything but the name and skills.
    pub fn new(name: impl Into<String>, skills: Vec<SkillRequirement>) -> Self {
        Self {
            name: name.into(),
            skills,
            language: None,
            strategy: Strategy::default(),
            agent_order: Vec::new(),
            wrap_up_secs: 0,
            ring_timeout_secs: default_ring_timeout_secs(),
            service_level_secs: default_sl_secs(),
            service_level_percent: default_sl_percent(),
            short_abandon_secs: default_short_abandon_secs(),
            max_length: None,
            max_wait_secs: None,
            join_empty: EmptyRule::Never,
            leave_when_empty: EmptyRule::Never,
            announce_every_secs: None,
            weight: default_weight(),
            default_handle_secs: default_handle_secs(),
            escalation: Vec::new(),
        }
    }

    pub fn wrap_up(&self) -> Duration {
        Duration::from_secs(self.wrap_up_secs)
    }
    pub fn ring_timeout(&self) -> Duration {
        Duration::from_secs(self.ring_timeout_secs)
    }
    pub fn service_level_target(&self) -> Duration {
        Duration::from_secs(self.service_level_secs)
    }
}

/// An agent that may log in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    pub id: String,
    /// Skill name → level 1–10.
    #[serde(default)]
    pub skills: BTreeMap<String, u8>,
    #[serde(default)]
    pub languages: Vec<String>,
}

impl AgentConfig {
    pub fn new(id: impl Into<String>, skills: &[(&str, u8)], languages: &[&str]) -> Self {
        Self {
            id: id.into(),
            skills: skills.iter().map(|(s, l)| ((*s).to_owned(), *l)).collect(),
            languages: languages.iter().map(|l| (*l).to_owned()).collect(),
        }
    }
}

/// Shorthand for a skill requirement.
pub fn skill(name: &str, min_level: u8) -> SkillRequirement {
    SkillRequirement {
        skill: name.to_owned(),
        min_level,
    }
}

fn check_level(level: u8, what: &str) -> Result<(), ConfigError> {
    if (1..=10).contains(&level) {
        Ok(())
    } else {
        Err(ConfigError::Level {
            what: what.to_owned(),
            level,
        })
    }
}

/// The longest duration any setting may have (ten years), so time arithmetic cannot overflow.
pub const MAX_SECS: u64 = 10 * 365 * 86_400;

fn check_secs(value: u64, what: &str) -> Result<(), ConfigError> {
    if value <= MAX_SECS {
        Ok(())
    } else {
        Err(ConfigError::TooLong {
            what: what.to_owned(),
            secs: value,
        })
    }
}

impl AcdConfig {
    /// Checks names, levels, durations and references; the engine only accepts a validated
    /// config.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_secs(self.retry_delay_secs, "retry_delay_secs")?;
        check_secs(self.interval_secs, "interval_secs")?;
        let mut names = std::collections::HashSet::new();
        for q in &self.queues {
            if q.name.is_empty() {
                return Err(ConfigError::EmptyName("queue"));
            }
            if !names.insert(q.name.as_str()) {
                return Err(ConfigError::Duplicate {
                    kind: "queue",
                    name: q.name.clone(),
                });
            }
            for s in &q.skills {
                check_level(s.min_level, &format!("queue {} skill {}", q.name, s.skill))?;
            }
            for (value, what) in [
                (q.wrap_up_secs, "wrap_up_secs"),
                (q.ring_timeout_secs, "ring_timeout_secs"),
                (q.service_level_secs, "service_level_secs"),
                (q.short_abandon_secs, "short_abandon_secs"),
                (q.max_wait_secs.unwrap_or(0), "max_wait_secs"),
                (q.announce_every_secs.unwrap_or(0), "announce_every_secs"),
                (q.default_handle_secs, "default_handle_secs"),
            ] {
                check_secs(value, &format!("queue {} {what}", q.name))?;
            }
            if !(q.weight.is_finite() && q.weight > 0.0) {
                return Err(ConfigError::Weight {
                    queue: q.name.clone(),
                });
            }
            if q.service_level_percent > 100 {
                return Err(ConfigError::Percent {
                    queue: q.name.clone(),
                });
            }
            if q.announce_every_secs == Some(0) {
                return Err(ConfigError::ZeroAnnounce {
                    queue: q.name.clone(),
                });
            }
            let mut last = 0;
            for step in &q.escalation {
                if step.after_secs < last {
                    return Err(ConfigError::EscalationOrder {
                        queue: q.name.clone(),
                    });
                }
                last = step.after_secs;
                check_secs(
                    step.after_secs,
                    &format!("queue {} escalation after_secs", q.name),
                )?;
                for (skill, level) in &step.relax {
                    check_level(*level, &format!("queue {} relax {skill}", q.name))?;
                }
                for alt in &step.alternatives {
                    for s in alt {
                        check_level(
                            s.min_level,
                            &format!("queue {} alternative {}", q.name, s.skill),
                        )?;
                    }
                }
            }
        }
        for q in &self.queues {
            for step in &q.escalation {
                if let Some(to) = &step.overflow_to
                    && (!names.contains(to.as_str()) || to == &q.name)
                {
                    return Err(ConfigError::UnknownOverflow {
                        queue: q.name.clone(),
                        target: to.clone(),
                    });
                }
            }
        }
        let mut agents = std::collections::HashSet::new();
        for a in &self.agents {
            if a.id.is_empty() {
                return Err(ConfigError::EmptyName("agent"));
            }
            if !agents.insert(a.id.as_str()) {
                return Err(ConfigError::Duplicate {
                    kind: "agent",
                    name: a.id.clone(),
                });
            }
            for (skill, level) in &a.skills {
                check_level(*level, &format!("agent {} skill {skill}", a.id))?;
            }
        }
        if self.interval_secs == 0 {
            return Err(ConfigError::ZeroInterval);
        }
        Ok(())
    }
}
