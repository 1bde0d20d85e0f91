//! One routing decision with many agents and waiting calls over 50 skills.
//!
//! * `agent_ready`: a paused agent becomes ready, the engine picks the best waiting call across
//!   the agent's queues and offers it; the agent then pauses again (the offer is withdrawn and the
//!   call goes back to its place), restoring the state for the next iteration.
//! * `call_join`: a call joins a queue with available agents, is offered to the longest-idle one,
//!   and hangs up.
//!
//! Both run at 1,000 and 10,000 agents (10,000 waiting calls) to show the cost grows
//! sub-linearly. After criterion, the same cycles are timed one by one to print p50/p99.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion};
use santral_acd::*;

const SKILLS: usize = 50;
const WAITING: u64 = 10_000;

fn skill_name(i: usize) -> String {
    format!("skill{i:02}")
}

/// Agents with 3 skills each out of 50, one queue per skill, everyone paused, then `WAITING` calls
/// spread over the queues. Plus a "spare" queue whose agents are available and idle.
fn busy_centre(agents: usize) -> (Acd, Instant, Vec<AgentId>) {
    let t0 = Instant::now();
    let mut queues: Vec<QueueConfig> = (0..SKILLS)
        .map(|i| QueueConfig::new(skill_name(i), vec![skill(&skill_name(i), 1)]))
        .collect();
    queues.push(QueueConfig::new("spare", vec![skill("spare", 1)]));
    let mut configs = Vec::with_capacity(agents);
    let mut state = 12345u64;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as usize
    };
    for i in 0..agents {
        let mut agent = AgentConfig::new(format!("agent{i}"), &[], &[]);
        for _ in 0..3 {
            agent
                .skills
                .insert(skill_name(next() % SKILLS), 1 + (next() % 10) as u8);
        }
        configs.push(agent);
    }
    let spare = agents / 10;
    for i in 0..spare {
        configs.push(AgentConfig::new(format!("spare{i}"), &[("spare", 5)], &[]));
    }
    let config = AcdConfig {
        queues,
        agents: configs.clone(),
        ..AcdConfig::default()
    };
    let config = AcdConfig {
        no_answer_pause_after: 3,
        retry_delay_secs: 2,
        interval_secs: 900,
        ..config
    };
    let mut acd =
        Acd::new(config, Box::new(MemoryCallbackStore::default()), 1, t0).expect("config");
    let mut now = t0;
    let ids: Vec<AgentId> = configs.iter().map(|c| AgentId::new(c.id.clone())).collect();
    for id in &ids {
        acd.handle(Input::AgentLogin { agent: id.clone() }, now)
            .expect("login");
        if !id.0.starts_with("spare") {
            acd.handle(
                Input::AgentPause {
                    agent: id.clone(),
                    reason: "setup".into(),
                },
                now,
            )
            .expect("pause");
        }
        now += Duration::from_millis(1);
    }
    for n in 0..WAITING {
        let queue = skill_name(next() % SKILLS);
        let join = CallJoin::new(CallId(n), &queue).priority((next() % 3) as u8);
        acd.handle(Input::CallJoin(join), now).expect("join");
        now += Duration::from_millis(1);
    }
    while acd.poll_output().is_some() {}
    let workers = ids
        .into_iter()
        .filter(|id| !id.0.starts_with("spare"))
        .collect();
    (acd, now, workers)
}

fn drain(acd: &mut Acd) -> usize {
    let mut n = 0;
    while let Some(o) = acd.poll_output() {
        black_box(&o);
        n += 1;
    }
    n
}

/// Ready → routing decision → offer → pause (offer withdrawn, call back in place).
fn agent_ready_cycle(acd: &mut Acd, agent: &AgentId, now: Instant) {
    acd.handle(
        Input::AgentReady {
            agent: agent.clone(),
        },
        now,
    )
    .expect("ready");
    acd.handle(
        Input::AgentPause {
            agent: agent.clone(),
            reason: "bench".into(),
        },
        now,
    )
    .expect("pause");
    drain(acd);
}

/// Join → routing decision → offer to an idle agent → caller hangs up.
fn call_join_cycle(acd: &mut Acd, call: u64, now: Instant) {
    acd.handle(Input::CallJoin(CallJoin::new(CallId(call), "spare")), now)
        .expect("join");
    acd.handle(Input::CallerHungUp { call: CallId(call) }, now)
        .expect("hang up");
    drain(acd);
}

fn bench_routing(c: &mut Criterion) {
    let mut group = c.benchmark_group("routing");
    for agents in [1_000usize, 10_000] {
        let (mut acd, now, workers) = busy_centre(agents);
        // Sanity: the cycle really offers a call.
        acd.handle(
            Input::AgentReady {
                agent: workers[0].clone(),
            },
            now,
        )
        .expect("ready");
        let offered =
            std::iter::from_fn(|| acd.poll_output()).any(|o| matches!(o, Output::Offer(_)));
        assert!(offered, "a ready agent must be offered a waiting call");
        acd.handle(
            Input::AgentPause {
                agent: workers[0].clone(),
                reason: "x".into(),
            },
            now,
        )
        .expect("pause");
        drain(&mut acd);

        let mut i = 0usize;
        group.bench_function(BenchmarkId::new("agent_ready", agents), |b| {
            b.iter(|| {
                i = (i + 1) % workers.len();
                agent_ready_cycle(&mut acd, &workers[i], now);
            })
        });
        let mut call = 1_000_000u64;
        group.bench_function(BenchmarkId::new("call_join", agents), |b| {
            b.iter(|| {
                call += 1;
                call_join_cycle(&mut acd, call, now);
            })
        });
        group.bench_function(BenchmarkId::new("decision_only", agents), |b| {
            b.iter(|| {
                i = (i + 1) % workers.len();
                black_box(acd.next_call_for_agent(&workers[i].0, now))
            })
        });
    }
    group.finish();
}

fn percentiles(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
    (at(0.50), at(0.99))
}

/// Times single cycles to report p50/p99 (criterion reports means and medians of batches).
fn report_percentiles() {
    const SAMPLES: usize = 20_000;
    for agents in [1_000usize, 10_000] {
        let (mut acd, now, workers) = busy_centre(agents);
        let mut ready = Vec::with_capacity(SAMPLES);
        let mut join = Vec::with_capacity(SAMPLES);
        for s in 0..SAMPLES {
            let agent = &workers[s % workers.len()];
            let t = Instant::now();
            agent_ready_cycle(&mut acd, agent, now);
            ready.push(t.elapsed());
            let t = Instant::now();
            call_join_cycle(&mut acd, 2_000_000 + s as u64, now);
            join.push(t.elapsed());
        }
        let (r50, r99) = percentiles(ready);
        let (j50, j99) = percentiles(join);
        println!(
            "routing percentiles, {agents} agents, {WAITING} waiting calls, {SKILLS} skills: \
             agent_ready p50 {r50:.2} µs p99 {r99:.2} µs; call_join p50 {j50:.2} µs p99 {j99:.2} µs"
        );
    }
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    bench_routing(&mut criterion);
    criterion.final_summary();
    if !std::env::args().any(|a| a == "--test" || a == "--list") {
        report_percentiles();
    }
}
