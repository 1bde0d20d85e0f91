//! `santral acd …`: ACD tools (owned by the ACD work; being built).

use std::process::ExitCode;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum AcdCommand {}

pub fn run(cmd: AcdCommand) -> anyhow::Result<ExitCode> {
    match cmd {}
}
