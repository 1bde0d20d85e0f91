//! `santral acd …`: ACD tools. The simulator and Erlang C live in santral-acd; this only parses
//! arguments and prints.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use santral_acd::erlang;
use santral_acd::simulator::{self, HandleTime, SimulationParams};

#[derive(Subcommand)]
pub enum AcdCommand {
    /// Staffing simulator: drives the real ACD engine in virtual time.
    Simulate(SimulateArgs),
}

#[derive(Args)]
pub struct SimulateArgs {
    /// Arrival rate, e.g. 120/h, 2/m.
    #[arg(long, value_parser = simulator::parse_rate)]
    rate: f64,
    /// Average handle time, e.g. 180s, 3m.
    #[arg(long, value_parser = simulator::parse_duration)]
    aht: Duration,
    /// Agents logged in for the whole run.
    #[arg(long)]
    agents: u32,
    /// Service-level target PERCENT/SECONDS, e.g. 80/20.
    #[arg(long, default_value = "80/20", value_parser = simulator::parse_target)]
    target: (f64, Duration),
    /// Mean caller patience (exponential); without it nobody abandons.
    #[arg(long, value_parser = simulator::parse_duration)]
    patience: Option<Duration>,
    /// Simulated hours.
    #[arg(long, default_value_t = 8.0)]
    hours: f64,
    /// Handle times all equal to --aht instead of exponential.
    #[arg(long)]
    fixed_handle: bool,
    /// Also print the Erlang C prediction and the agents needed for the target.
    #[arg(long)]
    erlang: bool,
    /// Random seed (same seed, same result).
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

pub fn run(cmd: AcdCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AcdCommand::Simulate(args) => simulate(args),
    }
}

fn fmt_secs(d: Option<Duration>) -> String {
    d.map_or_else(|| "-".to_owned(), |d| format!("{:.1} s", d.as_secs_f64()))
}

fn fmt_pct(p: Option<f64>) -> String {
    p.map_or_else(|| "-".to_owned(), |p| format!("{p:.1} %"))
}

fn simulate(args: SimulateArgs) -> anyhow::Result<ExitCode> {
    let (percent, target) = args.target;
    let params = SimulationParams {
        calls_per_hour: args.rate,
        handle: if args.fixed_handle {
            HandleTime::Fixed(args.aht)
        } else {
            HandleTime::Exponential(args.aht)
        },
        agents: args.agents,
        target,
        target_percent: percent,
        patience: args.patience,
        hours: args.hours,
        seed: args.seed,
    };
    // The simulation runs in virtual time; this instant is only its origin.
    let report = simulator::simulate(&params, Instant::now())?;
    println!(
        "simulated {:.1} h: {:.0} calls/h, AHT {:.0} s, {} agents, target {percent:.0}/{:.0}",
        args.hours,
        args.rate,
        args.aht.as_secs_f64(),
        args.agents,
        target.as_secs_f64()
    );
    println!("offered        {}", report.offered);
    println!("answered       {}", report.answered);
    println!("abandoned      {}", report.abandoned);
    println!("service level  {}", fmt_pct(report.service_level));
    println!(
        "ASA            {}",
        fmt_secs(report.average_speed_of_answer)
    );
    println!("abandon rate   {}", fmt_pct(report.abandon_rate));
    println!(
        "occupancy      {}",
        fmt_pct(report.occupancy.map(|o| o * 100.0))
    );
    println!("AHT            {}", fmt_secs(report.average_handle_time));
    if args.erlang {
        let traffic = erlang::traffic_erlangs(args.rate, args.aht);
        let sl = erlang::service_level(args.agents, args.rate, args.aht, target);
        println!("Erlang C ({traffic:.2} Erlangs, no abandonment):");
        println!(
            "  P(wait)        {:.1} %",
            100.0 * erlang::probability_of_waiting(args.agents, traffic)
        );
        println!("  service level  {:.1} %", 100.0 * sl);
        println!(
            "  ASA            {}",
            fmt_secs(erlang::average_speed_of_answer(
                args.agents,
                args.rate,
                args.aht
            ))
        );
        match erlang::agents_needed(args.rate, args.aht, target, percent) {
            Some(n) => println!(
                "  agents needed  {n} for {percent:.0} % within {:.0} s",
                target.as_secs_f64()
            ),
            None => println!("  agents needed  more than 10000"),
        }
    }
    Ok(ExitCode::SUCCESS)
}
