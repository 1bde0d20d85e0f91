//! `santral serve`: runs a santral node (SIP, registrar, agents and queues, storage, HTTP API
//! and wallboard) on the embedded defaults or a --config file until SIGINT/SIGTERM (which
//! drain calls first); SIGHUP reloads the configuration file.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use tokio::signal::unix::{SignalKind, signal};

#[derive(Args)]
pub struct ServeArgs {
    /// A YAML file laid over the embedded defaults (config/santral.yaml).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = crate::config::load(args.config.as_deref())?;
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let path = args.config.clone();
    runtime.block_on(async {
        let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
        let mut hangup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
        let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(4);
        // SIGHUP reads the configuration again; a file with errors is reported and the running
        // configuration stays.
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                match crate::config::load(path.as_deref()) {
                    Ok(config) => {
                        tracing::info!("SIGHUP: configuration read");
                        if reload_tx.send(config).await.is_err() {
                            return;
                        }
                    }
                    Err(err) => tracing::error!(
                        "SIGHUP: configuration not reloaded, the running one stays:\n{err:#}"
                    ),
                }
            }
        });
        let shutdown = async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping"),
                _ = terminate.recv() => tracing::info!("SIGTERM: stopping"),
            }
        };
        santral_server::node::run(config, shutdown, None, reload_rx).await?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
