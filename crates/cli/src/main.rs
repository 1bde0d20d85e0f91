//! The `santral` binary: the call-centre server and the operator tools.
//!
//! Each subcommand lives in its own module with a `run` function returning the process
//! exit code, so main only parses arguments, sets up logging and dispatches.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod acd;
mod config;
mod flow;
mod serve;

#[derive(Parser)]
#[command(
    name = "santral",
    version,
    about = "santral call-centre telephony system"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the call-centre server (embedded demo defaults unless --config is given).
    Serve(serve::ServeArgs),
    /// IVR flow tools: check, simulate, test, graph, schema.
    #[command(subcommand)]
    Flow(flow::FlowCommand),
    /// ACD tools: the staffing simulator.
    #[command(subcommand)]
    Acd(acd::AcdCommand),
    /// Configuration tools: check, schema, show the embedded defaults.
    #[command(subcommand)]
    Config(config::ConfigCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Flow(cmd) => flow::run(cmd),
        Command::Acd(cmd) => acd::run(cmd),
        Command::Config(cmd) => config::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("santral: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr; `RUST_LOG` chooses the detail (default: info for santral, warn elsewhere).
fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("warn,santral=info,santral_sip=info,santral_server=info")
    });
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .init();
}
