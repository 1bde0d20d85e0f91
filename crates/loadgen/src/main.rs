//! `santral-load`: the command line of the load generator.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use santral_load::agents::{Account, AgentsConfig, run_agents};
use santral_load::audio::EncodedAudio;
use santral_load::call::SipTimers;
use santral_load::sdp::Law;
use santral_load::{LoadConfig, run};

#[derive(Parser)]
#[command(
    name = "santral-load",
    version,
    about = "Lean SIP + RTP load generator (loopback only)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Place calls: INVITE with SDP, RTP both ways every 20 ms, an RFC 4733 digit, BYE after
    /// the hold time. Prints a table; --json writes every figure.
    Calls(CallsArgs),
    /// Register many agent phones (digest auth), answer the calls offered to them after a
    /// delay and echo their RTP; unregister at the end.
    Agents(AgentsArgs),
}

#[derive(clap::Args)]
struct AgentsArgs {
    /// The SIP server (UDP), on 127.0.0.0/8 or [::1].
    #[arg(long)]
    target: std::net::SocketAddr,
    /// Accounts as id:password, comma-separated.
    #[arg(long, value_delimiter = ',')]
    accounts: Vec<String>,
    /// A file of accounts, one id:password a line (# comments).
    #[arg(long)]
    accounts_file: Option<PathBuf>,
    /// A numeric range of accounts, e.g. 3001-3100, each with password <--password-prefix><id>.
    #[arg(long)]
    accounts_range: Option<String>,
    #[arg(long, default_value = "bench")]
    password_prefix: String,
    /// Ringing time before answering.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    answer_after: Duration,
    /// REGISTERs started per second.
    #[arg(long, default_value_t = 100.0)]
    register_rate: f64,
    #[arg(long, default_value_t = 600)]
    expires: u32,
    /// How long the agents stay registered and answer.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    duration: Duration,
    #[arg(long, default_value_t = 2)]
    rtp_sockets: usize,
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    t1: Duration,
    /// Write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Run with SCHED_FIFO priority (root or CAP_SYS_NICE).
    #[arg(long)]
    realtime: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum Codec {
    Pcma,
    Pcmu,
}

#[derive(clap::Args)]
struct CallsArgs {
    /// The SIP server (UDP), on 127.0.0.0/8 or [::1].
    #[arg(long)]
    target: std::net::SocketAddr,
    /// User part dialled (the hotline).
    #[arg(long, default_value = "1000")]
    to: String,
    /// New calls per second.
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// Calls to place in all.
    #[arg(long, default_value_t = 100)]
    calls: u64,
    /// Never more calls in progress than this (a long hold then ramps to it and holds it).
    #[arg(long)]
    max_concurrent: Option<usize>,
    /// Time from the answer to our BYE (e.g. 3s, 500ms, 1m).
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    hold: Duration,
    /// RFC 4733 key to press (0-9, *, #, A-D).
    #[arg(long)]
    digit: Option<char>,
    /// When to press it, after the answer.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    digit_at: Duration,
    #[arg(long, value_enum, default_value = "pcma")]
    codec: Codec,
    /// Audio to send (WAV/MP3/OGG/FLAC, any rate; encoded once). Default: a 425 Hz tone.
    #[arg(long)]
    audio: Option<PathBuf>,
    /// Write the full report (with a line per call) as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Stop after this long whatever happens (calls in progress are hung up and counted
    /// unfinished). Default: the planned run time plus 60 s.
    #[arg(long, value_parser = parse_duration)]
    max_duration: Option<Duration>,
    /// RTP sockets the calls share (each advertised by many calls).
    #[arg(long, default_value_t = 2)]
    rtp_sockets: usize,
    /// Send phases per 20 ms (1–20): calls send spread over the period in this many bursts
    /// (1: every call's packet in one burst per period).
    #[arg(long, default_value_t = 10)]
    send_phases: u32,
    /// SIP timer T1 (retransmissions start at T1 and double).
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    t1: Duration,
    /// Exit with status 2 when any call failed, timed out or was refused.
    #[arg(long)]
    strict: bool,
    /// Leave the line per call out of the JSON report (long runs).
    #[arg(long)]
    no_per_call: bool,
    /// Run with SCHED_FIFO priority (root or CAP_SYS_NICE) so a busy machine does not make
    /// the generator late.
    #[arg(long)]
    realtime: bool,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 3s, 500ms, 2m)"))?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "unknown duration unit {other:?} (use ms, s, m or h)"
            ));
        }
    };
    if !seconds.is_finite() || !(0.0..=7.0 * 24.0 * 3600.0).contains(&seconds) {
        return Err(format!("{text:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match main_result() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("santral-load: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Real-time priority, best effort: without the privilege the run goes on, with a warning.
fn realtime() {
    if let Err(err) = santral_load::process::set_realtime_priority(10) {
        eprintln!("santral-load: --realtime: {err} (running with normal priority)");
    }
}

fn main_result() -> Result<ExitCode> {
    santral_load::process::install_stop_handler()
        .context("installing the SIGINT/SIGTERM handler")?;
    match Cli::parse().command {
        Command::Calls(args) => calls(args),
        Command::Agents(args) => agents(args),
    }
}

fn agents(args: AgentsArgs) -> Result<ExitCode> {
    let mut accounts = Vec::new();
    for text in &args.accounts {
        accounts.push(Account::parse(text)?);
    }
    if let Some(path) = &args.accounts_file {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            accounts.push(
                Account::parse(line).with_context(|| format!("{}:{}", path.display(), n + 1))?,
            );
        }
    }
    if let Some(range) = &args.accounts_range {
        let parsed = range
            .split_once('-')
            .and_then(|(a, b)| Some((a.trim().parse::<u64>().ok()?, b.trim().parse::<u64>().ok()?)))
            .filter(|(a, b)| a <= b && b - a < 100_000);
        let Some((first, last)) = parsed else {
            bail!("--accounts-range must be FIRST-LAST (at most 100,000 accounts), got {range:?}");
        };
        for id in first..=last {
            accounts.push(Account {
                id: id.to_string(),
                password: format!("{}{id}", args.password_prefix),
            });
        }
    }
    let config = AgentsConfig {
        target: args.target,
        accounts,
        answer_after: args.answer_after,
        register_rate: args.register_rate,
        expires: args.expires,
        duration: args.duration,
        rtp_sockets: args.rtp_sockets,
        timers: SipTimers {
            t1: args.t1,
            t2: Duration::from_secs(4).max(args.t1),
        },
    };
    if args.realtime {
        realtime();
    }
    let report = run_agents(&config)?;
    print!("{}", report.table());
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn calls(args: CallsArgs) -> Result<ExitCode> {
    let law = match args.codec {
        Codec::Pcma => Law::Pcma,
        Codec::Pcmu => Law::Pcmu,
    };
    let audio = match &args.audio {
        Some(path) => EncodedAudio::from_file(path, law).context("--audio")?,
        None => EncodedAudio::tone(law),
    };
    if !(args.rate.is_finite() && args.rate > 0.0) {
        bail!("--rate must be a positive number of calls per second");
    }
    let planned = Duration::from_secs_f64((args.calls as f64 / args.rate).min(7.0 * 24.0 * 3600.0))
        + args.hold;
    let config = LoadConfig {
        target: args.target,
        to_user: args.to.clone(),
        rate_per_s: args.rate,
        calls: args.calls,
        max_concurrent: args.max_concurrent,
        hold: args.hold,
        digit: args.digit.map(|key| (key, args.digit_at)),
        law,
        audio,
        max_duration: args
            .max_duration
            .unwrap_or(planned + Duration::from_secs(60)),
        rtp_sockets: args.rtp_sockets,
        send_phases: args.send_phases,
        timers: SipTimers {
            t1: args.t1,
            t2: Duration::from_secs(4).max(args.t1),
        },
    };
    if args.realtime {
        realtime();
    }
    let mut report = run(&config)?;
    print!("{}", report.table());
    if args.no_per_call {
        report.per_call.clear();
    }
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    let calls = &report.calls;
    if args.strict && (calls.failed() > 0 || calls.refused_503 > 0) {
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("3 weeks").is_err());
        assert!(parse_duration("99999999h").is_err());
    }
}
