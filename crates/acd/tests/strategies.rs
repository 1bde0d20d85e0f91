//! One test per routing strategy, plus skills, languages, priority and cross-queue fairness.

mod common;

use common::*;
use santral_acd::*;

fn queue(strategy: Strategy) -> QueueConfig {
    let mut q = QueueConfig::new("sales", vec![skill("sales", 1)]);
    q.strategy = strategy;
    q
}

fn three_agents() -> Vec<AgentConfig> {
    vec![
        AgentConfig::new("ann", &[("sales", 3)], &["en"]),
        AgentConfig::new("bob", &[("sales", 9)], &["en"]),
        AgentConfig::new("cem", &[("sales", 5)], &["tr"]),
    ]
}

/// Logs agents in at distinct times so idle order is ann (oldest), bob, cem.
fn staffed(strategy: Strategy) -> Harness {
    let mut h = Harness::new(config(vec![queue(strategy)], three_agents()));
    h.login("ann");
    h.at(1.0);
    h.login("bob");
    h.at(2.0);
    h.login("cem");
    h.at(10.0);
    h.take();
    h
}

/// Serves one call fully (answer + end) and returns who got it.
fn serve(h: &mut Harness, n: u64) -> String {
    h.join(call(n, "sales"));
    let offers = h.offers();
    assert_eq!(offers.len(), 1, "{offers:?}");
    let agent = offers[0].1.clone();
    h.answer(n, &agent);
    h.end(n);
    agent
}

#[test]
fn longest_idle_picks_the_agent_idle_longest() {
    let mut h = staffed(Strategy::LongestIdle);
    assert_eq!(serve(&mut h, 1), "ann");
    // ann is now the most recently idle.
    assert_eq!(serve(&mut h, 2), "bob");
    assert_eq!(serve(&mut h, 3), "cem");
    assert_eq!(serve(&mut h, 4), "ann");
}

#[test]
fn fewest_calls_balances_answered_counts() {
    let mut h = staffed(Strategy::FewestCalls);
    let a = serve(&mut h, 1);
    let b = serve(&mut h, 2);
    let c = serve(&mut h, 3);
    let mut got = vec![a, b, c];
    got.sort();
    assert_eq!(got, ["ann", "bob", "cem"]);
}

#[test]
fn least_talk_time_prefers_the_agent_who_talked_least() {
    let mut h = staffed(Strategy::LeastTalkTime);
    // ann talks 100 s, bob 10 s; cem 0 s -> cem, then bob, then ann.
    h.join(call(1, "sales"));
    assert_eq!(h.offers()[0].1, "ann");
    h.answer(1, "ann");
    h.join(call(2, "sales"));
    assert_eq!(h.offers()[0].1, "bob");
    h.answer(2, "bob");
    h.at(20.0);
    h.end(2);
    h.at(110.0);
    h.end(1);
    h.take();
    assert_eq!(serve(&mut h, 3), "cem");
    assert_eq!(serve(&mut h, 4), "cem");
    h.at(111.0);
    h.join(call(5, "sales"));
    // cem talked 0 s twice, still least.
    assert_eq!(h.offers()[0].1, "cem");
}

#[test]
fn round_robin_remembers_where_it_stopped() {
    let mut q = queue(Strategy::RoundRobin);
    q.agent_order = vec!["cem".into(), "ann".into(), "bob".into()];
    let mut h = Harness::new(config(vec![q], three_agents()));
    for a in ["ann", "bob", "cem"] {
        h.login(a);
    }
    h.take();
    let got: Vec<String> = (1..=4).map(|n| serve(&mut h, n)).collect();
    assert_eq!(got, ["cem", "ann", "bob", "cem"]);
}

#[test]
fn linear_always_starts_from_the_first() {
    let mut q = queue(Strategy::Linear);
    q.agent_order = vec!["bob".into(), "cem".into()];
    let mut h = Harness::new(config(vec![q], three_agents()));
    for a in ["ann", "bob", "cem"] {
        h.login(a);
    }
    h.take();
    assert_eq!(serve(&mut h, 1), "bob");
    assert_eq!(serve(&mut h, 2), "bob");
    // bob busy -> next in order is cem, then ann (unlisted, config order).
    h.join(call(3, "sales"));
    assert_eq!(h.offers()[0].1, "bob");
    h.join(call(4, "sales"));
    assert_eq!(h.offers()[0].1, "cem");
    h.join(call(5, "sales"));
    assert_eq!(h.offers()[0].1, "ann");
}

#[test]
fn best_skill_picks_the_highest_level() {
    let mut h = staffed(Strategy::BestSkill);
    h.join(call(1, "sales"));
    assert_eq!(h.offers()[0].1, "bob");
    h.join(call(2, "sales"));
    assert_eq!(h.offers()[0].1, "cem");
    h.join(call(3, "sales"));
    assert_eq!(h.offers()[0].1, "ann");
}

#[test]
fn ring_all_rings_everyone_and_cancels_the_rest() {
    let mut h = staffed(Strategy::RingAll);
    h.join(call(1, "sales"));
    let mut offered: Vec<String> = h.offers().into_iter().map(|o| o.1).collect();
    offered.sort();
    assert_eq!(offered, ["ann", "bob", "cem"]);
    h.answer(1, "cem");
    let out = h.take();
    let mut cancelled: Vec<String> = out
        .iter()
        .filter_map(|o| match o {
            Output::CancelOffer {
                agent,
                reason: CancelReason::AnsweredElsewhere,
                ..
            } => Some(agent.0.clone()),
            _ => None,
        })
        .collect();
    cancelled.sort();
    assert_eq!(cancelled, ["ann", "bob"]);
    assert_eq!(h.status("ann"), AgentStatus::Available);
    assert_eq!(h.status("cem"), AgentStatus::OnCall { call: CallId(1) });
    // A second answer for the same call is refused.
    assert!(
        h.try_input(Input::OfferAnswered {
            call: CallId(1),
            agent: AgentId::new("ann")
        })
        .is_err()
    );
}

#[test]
fn random_is_repeatable_with_a_seed_and_uses_everyone() {
    let run = || {
        let mut h = staffed(Strategy::Random);
        (1..=30).map(|n| serve(&mut h, n)).collect::<Vec<_>>()
    };
    let first = run();
    assert_eq!(first, run());
    for a in ["ann", "bob", "cem"] {
        assert!(first.iter().any(|x| x == a), "{a} never chosen: {first:?}");
    }
}

#[test]
fn skills_levels_and_languages_filter_agents() {
    let mut q = QueueConfig::new("vip", vec![skill("sales", 5)]);
    q.language = Some("en".into());
    let mut h = Harness::new(config(vec![q], three_agents()));
    for a in ["ann", "bob", "cem"] {
        h.login(a);
    }
    h.take();
    // ann: level 3 too low; cem: level 5 but speaks tr. Only bob qualifies.
    h.join(call(1, "vip"));
    assert_eq!(h.offers(), [(1, "bob".to_owned())]);
    h.join(call(2, "vip"));
    assert!(h.offers().is_empty());
    // A caller choosing Turkish gets cem.
    h.join(call(3, "vip").language("tr"));
    assert_eq!(h.offers(), [(3, "cem".to_owned())]);
    // Extra per-call skills narrow further: nobody has "loans".
    h.join(call(4, "vip").skill(skill("loans", 1)));
    assert!(h.offers().is_empty());
}

#[test]
fn higher_priority_first_then_fifo() {
    let mut h = Harness::new(config(vec![queue(Strategy::LongestIdle)], three_agents()));
    h.join(call(1, "sales"));
    h.at(1.0);
    h.join(call(2, "sales").priority(5));
    h.at(2.0);
    h.join(call(3, "sales"));
    h.at(3.0);
    h.join(call(4, "sales").priority(5));
    assert_eq!(h.acd.position(CallId(2)), Some(1));
    assert_eq!(h.acd.position(CallId(4)), Some(2));
    assert_eq!(h.acd.position(CallId(1)), Some(3));
    let mut order = Vec::new();
    h.login("bob");
    for _ in 0..4 {
        let offers = h.offers();
        let (c, a) = offers[0].clone();
        order.push(c);
        h.answer(c, &a);
        h.end(c);
    }
    assert_eq!(order, [2, 4, 1, 3]);
}

#[test]
fn agent_in_two_queues_gets_the_longest_waiting_call() {
    let billing = QueueConfig::new("billing", vec![skill("billing", 1)]);
    let sales = QueueConfig::new("sales", vec![skill("sales", 1)]);
    let agents = vec![AgentConfig::new(
        "dua",
        &[("billing", 5), ("sales", 5)],
        &[],
    )];
    let mut h = Harness::new(config(vec![billing, sales], agents));
    h.join(call(1, "sales"));
    h.at(5.0);
    h.join(call(2, "billing"));
    h.at(6.0);
    h.join(call(3, "sales"));
    h.login("dua");
    let mut order = Vec::new();
    for _ in 0..3 {
        let (c, a) = h.offers()[0].clone();
        order.push(c);
        h.answer(c, &a);
        h.end(c);
    }
    assert_eq!(order, [1, 2, 3]);
}

#[test]
fn queue_weight_favours_the_heavier_queue() {
    let billing = QueueConfig::new("billing", vec![skill("billing", 1)]);
    let mut sales = QueueConfig::new("sales", vec![skill("sales", 1)]);
    sales.weight = 3.0;
    let agents = vec![AgentConfig::new(
        "dua",
        &[("billing", 5), ("sales", 5)],
        &[],
    )];
    let mut h = Harness::new(config(vec![billing, sales], agents));
    h.join(call(1, "billing"));
    h.at(20.0);
    h.join(call(2, "sales"));
    h.at(30.0);
    // billing waited 30 s × 1; sales 10 s × 3 = 30... sales must wait a bit longer.
    h.at(31.0);
    h.login("dua");
    assert_eq!(h.offers()[0].0, 2);
}

#[test]
fn high_priority_is_never_passed_over_across_queues() {
    let billing = QueueConfig::new("billing", vec![skill("billing", 1)]);
    let sales = QueueConfig::new("sales", vec![skill("sales", 1)]);
    let agents = vec![AgentConfig::new(
        "dua",
        &[("billing", 5), ("sales", 5)],
        &[],
    )];
    let mut h = Harness::new(config(vec![billing, sales], agents));
    h.join(call(1, "billing"));
    h.at(100.0);
    h.join(call(2, "sales").priority(1));
    h.login("dua");
    assert_eq!(h.offers()[0].0, 2);
}
