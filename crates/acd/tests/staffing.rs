//! The staffing simulator drives the real engine; without abandonment its service level must
//! agree with Erlang C within 3 points.

use std::time::{Duration, Instant};

use santral_acd::erlang;
use santral_acd::simulator::{HandleTime, SimulationError, SimulationParams, simulate};

fn params(agents: u32, hours: f64, seed: u64) -> SimulationParams {
    SimulationParams {
        calls_per_hour: 120.0,
        handle: HandleTime::Exponential(Duration::from_secs(180)),
        agents,
        target: Duration::from_secs(20),
        target_percent: 80.0,
        patience: None,
        hours,
        seed,
    }
}

#[test]
fn service_level_agrees_with_erlang_c_without_abandonment() {
    for (agents, seed) in [(8, 1), (9, 2), (10, 3)] {
        let p = params(agents, 400.0, seed);
        let report = simulate(&p, Instant::now()).expect("simulation runs");
        let simulated = report.service_level.expect("calls were answered");
        let predicted = 100.0
            * erlang::service_level(
                agents,
                120.0,
                Duration::from_secs(180),
                Duration::from_secs(20),
            );
        assert!(
            (simulated - predicted).abs() <= 3.0,
            "{agents} agents: simulated {simulated:.1} % vs Erlang C {predicted:.1} %"
        );
        assert_eq!(report.abandoned, 0);
        // Occupancy = traffic / agents = 6 / N.
        let occupancy = report.occupancy.expect("occupancy");
        assert!(
            (occupancy - 6.0 / f64::from(agents)).abs() < 0.03,
            "occupancy {occupancy}"
        );
        let aht = report.average_handle_time.expect("aht").as_secs_f64();
        assert!((aht - 180.0).abs() < 10.0, "aht {aht}");
    }
}

#[test]
fn impatient_callers_abandon_and_same_seed_repeats() {
    let mut p = params(7, 24.0, 42);
    p.patience = Some(Duration::from_secs(60));
    let a = simulate(&p, Instant::now()).expect("runs");
    let b = simulate(&p, Instant::now()).expect("runs");
    assert_eq!(a, b);
    assert!(a.abandoned > 0);
    assert!(a.abandon_rate.expect("rate") > 1.0);
    assert_eq!(a.offered, a.answered + a.abandoned);
}

#[test]
fn bad_parameters_are_refused() {
    let mut p = params(8, 8.0, 1);
    p.agents = 0;
    assert_eq!(simulate(&p, Instant::now()), Err(SimulationError::NoAgents));
    let mut p = params(8, 8.0, 1);
    p.calls_per_hour = f64::NAN;
    assert!(matches!(
        simulate(&p, Instant::now()),
        Err(SimulationError::NotPositive(_))
    ));
}
