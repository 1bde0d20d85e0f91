//! `santral serve`: runs the SIP endpoint with the registrar and OPTIONS answering on the
//! configured listen addresses until SIGINT/SIGTERM. (The call server joins here later.)

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use santral_sip::digest::Algorithm;
use santral_sip::driver::{self, Listen, SipHandle};
use santral_sip::registrar::{self, Outcome, Registrar, RegistrarConfig};
use santral_sip::{EndpointConfig, Event, Message, Method, Timers, TransportKind};

use crate::config::{Config, DigestAlgorithm, Transport};

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
    runtime.block_on(serve(config))?;
    Ok(ExitCode::SUCCESS)
}

fn endpoint_config(config: &Config) -> EndpointConfig {
    EndpointConfig {
        timers: Timers {
            t1: config.sip.timers.t1,
            t2: config.sip.timers.t2,
            t4: config.sip.timers.t4,
        },
        ..EndpointConfig::default()
    }
}

fn registrar_config(config: &Config) -> RegistrarConfig {
    let auth = &config.sip.auth;
    let registration = &config.sip.registration;
    RegistrarConfig {
        realm: config.sip.realm.clone(),
        algorithms: auth
            .algorithms
            .iter()
            .map(|a| match a {
                DigestAlgorithm::Md5 => Algorithm::Md5,
                DigestAlgorithm::Sha256 => Algorithm::Sha256,
            })
            .collect(),
        nonce_ttl: auth.nonce_ttl,
        max_failures: auth.max_failures,
        lockout: auth.lockout,
        min_expires: registration.min_expires,
        max_expires: registration.max_expires,
        default_expires: registration.default_expires,
        ..RegistrarConfig::default()
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let listen: Vec<Listen> = config
        .sip
        .listen
        .iter()
        .map(|l| Listen {
            transport: match l.transport {
                Transport::Udp => TransportKind::Udp,
                Transport::Tcp => TransportKind::Tcp,
            },
            addr: l.addr,
        })
        .collect();
    let (handle, mut events) = driver::start(endpoint_config(&config), &listen).await?;
    for l in handle.listening() {
        tracing::info!(transport = %l.transport, addr = %l.addr, "SIP listening");
    }
    let accounts = config
        .agents
        .accounts
        .iter()
        .map(|a| (a.id.clone(), a.password.clone()));
    let mut registrar = Registrar::new(registrar_config(&config), accounts);
    let mut housekeeping = tokio::time::interval(Duration::from_secs(1));
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot watch SIGTERM")?;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {
                tracing::info!("SIGINT: stopping");
                break;
            }
            _ = terminate.recv() => {
                tracing::info!("SIGTERM: stopping");
                break;
            }
            _ = housekeeping.tick() => registrar.handle_timeout(Instant::now()),
            event = events.next() => match event {
                Some(event) => handle_event(&handle, &mut registrar, event).await,
                None => anyhow::bail!("the SIP driver stopped unexpectedly"),
            },
        }
    }
    Ok(())
}

async fn handle_event(handle: &SipHandle, registrar: &mut Registrar, event: Event) {
    let Event::Request { id, request, peer } = event else {
        return;
    };
    let call_id = request.call_id().unwrap_or_default().to_string();
    let span = tracing::info_span!("sip_request", call_id = %call_id, remote = %peer.remote);
    let _guard = span.enter();
    let response = match request.method() {
        Some(Method::Register) => {
            let reply = registrar.handle_register(Instant::now(), &request, peer);
            match &reply.outcome {
                Outcome::Failed { user } => {
                    tracing::info!(user = %user, "REGISTER authentication failed")
                }
                Outcome::Refused { source } => {
                    tracing::debug!(%source, "REGISTER refused: source locked out")
                }
                _ => {}
            }
            reply.response
        }
        Some(Method::Options) => {
            registrar::options_response(&request, &santral_sip::endpoint::new_tag())
        }
        Some(Method::Invite) => simple(&request, 480, "Temporarily Unavailable"),
        Some(Method::Bye | Method::Cancel | Method::Info | Method::Refer | Method::Notify) => {
            simple(&request, 481, "Call/Transaction Does Not Exist")
        }
        _ => {
            let mut r = simple(&request, 501, "Not Implemented");
            r.push_header("Allow", registrar::ALLOW);
            r
        }
    };
    drop(_guard);
    if let Err(error) = handle.respond(id, response).await {
        tracing::debug!(%error, "could not respond");
    }
}

fn simple(request: &Message, code: u16, reason: &str) -> Message {
    let mut response = Message::response_to(request, code, reason);
    response.set_to_tag(&santral_sip::endpoint::new_tag());
    response
}
