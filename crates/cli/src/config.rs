//! `santral config …` and the configuration every subcommand reads.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;

pub use santral_server::config::*;

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Check a configuration file (laid over the embedded defaults); exit 1 on any problem.
    Check {
        /// The file to check; the embedded defaults when omitted.
        file: Option<PathBuf>,
    },
    /// Print the JSON Schema of the configuration file.
    Schema,
    /// Print the effective configuration (embedded defaults, or FILE laid over them) as YAML.
    Show { file: Option<PathBuf> },
}

/// Loads `path` over the embedded defaults, or the embedded defaults alone.
pub fn load(path: Option<&Path>) -> anyhow::Result<Config> {
    Ok(Config::load(path)?)
}

pub fn run(cmd: ConfigCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ConfigCommand::Check { file } => match Config::load(file.as_deref()) {
            Ok(config) => {
                for warning in config.warnings() {
                    println!("warning: {warning}");
                }
                println!(
                    "{}: ok",
                    file.as_deref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_else(|| EMBEDDED_NAME.to_owned())
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(err) => {
                eprintln!("{err}");
                Ok(ExitCode::FAILURE)
            }
        },
        ConfigCommand::Schema => {
            print_out(&format!("{:#}\n", Config::json_schema()))?;
            Ok(ExitCode::SUCCESS)
        }
        ConfigCommand::Show { file } => {
            let config = load(file.as_deref())?;
            print_out(&serde_saphyr::to_string(&config)?)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Writes to stdout; a closed pipe (`| head`) ends the output quietly instead of panicking.
fn print_out(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}
