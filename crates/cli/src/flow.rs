//! `santral flow …`: operator tools for IVR flows (owned by the IVR work; being built).

use std::process::ExitCode;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum FlowCommand {}

pub fn run(cmd: FlowCommand) -> anyhow::Result<ExitCode> {
    match cmd {}
}
