//! Erlang C: the classic M/M/N staffing formulas (Poisson arrivals, exponential handle times,
//! nobody abandons), used to check the simulator and to size teams.

use std::time::Duration;

/// Offered traffic in Erlangs: arrival rate × average handle time.
pub fn traffic_erlangs(calls_per_hour: f64, handle_time: Duration) -> f64 {
    calls_per_hour / 3600.0 * handle_time.as_secs_f64()
}

/// Probability that a caller waits at all with `agents` agents and `traffic` Erlangs.
/// 1.0 when the team cannot keep up (`agents <= traffic`).
pub fn probability_of_waiting(agents: u32, traffic: f64) -> f64 {
    let n = f64::from(agents);
    if agents == 0 || traffic >= n {
        return 1.0;
    }
    if traffic <= 0.0 {
        return 0.0;
    }
    // Erlang B by its stable recursion, then C from B.
    let mut b = 1.0;
    for k in 1..=agents {
        b = traffic * b / (f64::from(k) + traffic * b);
    }
    n * b / (n - traffic * (1.0 - b))
}

/// Share (0–1) of callers answered within `target`.
pub fn service_level(
    agents: u32,
    calls_per_hour: f64,
    handle_time: Duration,
    target: Duration,
) -> f64 {
    let a = traffic_erlangs(calls_per_hour, handle_time);
    let n = f64::from(agents);
    if agents == 0 || a >= n {
        return 0.0;
    }
    let c = probability_of_waiting(agents, a);
    let exponent =
        -(n - a) * target.as_secs_f64() / handle_time.as_secs_f64().max(f64::MIN_POSITIVE);
    (1.0 - c * exponent.exp()).clamp(0.0, 1.0)
}

/// Average speed of answer; None when the team cannot keep up.
pub fn average_speed_of_answer(
    agents: u32,
    calls_per_hour: f64,
    handle_time: Duration,
) -> Option<Duration> {
    let a = traffic_erlangs(calls_per_hour, handle_time);
    let n = f64::from(agents);
    if agents == 0 || a >= n {
        return None;
    }
    let c = probability_of_waiting(agents, a);
    Some(Duration::from_secs_f64(
        c * handle_time.as_secs_f64() / (n - a),
    ))
}

/// The fewest agents reaching `percent` % within `target` (None if 10,000 agents do not).
pub fn agents_needed(
    calls_per_hour: f64,
    handle_time: Duration,
    target: Duration,
    percent: f64,
) -> Option<u32> {
    let a = traffic_erlangs(calls_per_hour, handle_time);
    let start = a.floor().max(0.0) as u32 + 1;
    (start..=10_000)
        .find(|n| 100.0 * service_level(*n, calls_per_hour, handle_time, target) >= percent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn textbook_example() {
        // 360 calls/h, 240 s AHT = 24 Erlangs; with 28 agents P(wait) = 0.3331, SL(20 s) = 76.1 %
        // (values from the factorial form of the formula).
        let a = traffic_erlangs(360.0, Duration::from_secs(240));
        assert!((a - 24.0).abs() < 1e-9);
        let c = probability_of_waiting(28, a);
        assert!((c - 0.33314).abs() < 1e-4, "{c}");
        let sl = service_level(28, 360.0, Duration::from_secs(240), Duration::from_secs(20));
        assert!((sl - 0.76130).abs() < 1e-4, "{sl}");
        assert_eq!(
            agents_needed(
                360.0,
                Duration::from_secs(240),
                Duration::from_secs(20),
                80.0
            ),
            Some(29)
        );
    }

    #[test]
    fn overloaded_team() {
        assert_eq!(probability_of_waiting(5, 6.0), 1.0);
        assert_eq!(
            service_level(5, 120.0, Duration::from_secs(180), Duration::from_secs(20)),
            0.0
        );
        assert_eq!(
            average_speed_of_answer(5, 120.0, Duration::from_secs(180)),
            None
        );
    }

    #[test]
    fn single_server_is_utilisation() {
        // M/M/1: P(wait) = rho.
        assert!((probability_of_waiting(1, 0.5) - 0.5).abs() < 1e-12);
    }
}
