//! `santral serve`: runs the server on the embedded defaults or a --config file.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

#[derive(Args)]
pub struct ServeArgs {
    /// A YAML file laid over the embedded defaults (config/santral.yaml).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let _config = crate::config::load(args.config.as_deref())?;
    anyhow::bail!("serve is being built")
}
