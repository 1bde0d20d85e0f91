//! Typed configuration (being built).
use std::path::Path;
use std::process::ExitCode;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum ConfigCommand {}

pub struct Config;

pub fn load(_path: Option<&Path>) -> anyhow::Result<Config> {
    Ok(Config)
}

pub fn run(cmd: ConfigCommand) -> anyhow::Result<ExitCode> {
    match cmd {}
}
