//! One santral node: the SIP endpoint with its registrar, the agent owner (ACD task), the
//! store and the HTTP API, started from a [`Config`] and run until shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use santral_sip::digest::Algorithm;
use santral_sip::driver::{self, Listen, SipHandle};
use santral_sip::registrar::{self, Outcome, Registrar, RegistrarConfig};
use santral_sip::{EndpointConfig, Event, Message, Method, Timers, TransportKind};
use tokio::sync::mpsc;

use crate::agents::{self, AgentsInput};
use crate::config::{Config, DigestAlgorithm, Transport};
use crate::http::{self, ApiState};
use crate::live;
use crate::storage::{SqliteStore, StorageError, Store};

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("SIP: {0}")]
    Sip(#[from] driver::DriverError),
    #[error("HTTP {addr}: {source}")]
    Http {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("ACD: {0}")]
    Acd(#[from] santral_acd::ConfigError),
    #[error("the SIP driver stopped unexpectedly")]
    SipStopped,
}

/// Addresses a started node really listens on (ports chosen by the OS when 0 was asked).
#[derive(Debug, Clone)]
pub struct Bound {
    pub sip: Vec<Listen>,
    pub http: SocketAddr,
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

fn sip_listen(config: &Config) -> Vec<Listen> {
    config
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
        .collect()
}

/// Runs a node until `shutdown` completes. `bound` receives the listening addresses once
/// every socket is open (tests and the CLI use it to know the node is ready).
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
    bound: Option<tokio::sync::oneshot::Sender<Bound>>,
) -> Result<(), NodeError> {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&config.storage.database)?);
    let (publisher, view, agent_requests) = live::channels();

    let (sip, mut sip_events) =
        driver::start(endpoint_config(&config), &sip_listen(&config)).await?;
    for l in sip.listening() {
        tracing::info!(transport = %l.transport, addr = %l.addr, "SIP listening");
    }

    let (agents_tx, agents_rx) = mpsc::channel(1024);
    let owner = agents::start(
        agents::Setup::from_config(&config),
        publisher,
        store.clone(),
    )?;
    let agents_task = tokio::spawn(agents::run(owner, agents_rx, agent_requests));

    let http_listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .map_err(|source| NodeError::Http {
            addr: config.http.listen,
            source,
        })?;
    let http_addr = http_listener
        .local_addr()
        .map_err(|source| NodeError::Http {
            addr: config.http.listen,
            source,
        })?;
    tracing::info!(addr = %http_addr, "HTTP listening (wallboard at /)");
    let api = ApiState {
        live: view,
        store: store.clone(),
        recordings_dir: config.storage.recordings.clone(),
        token: config.http.token.clone(),
        started: Instant::now(),
    };
    let (http_stop_tx, http_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let http_task = tokio::spawn(async move {
        let stop = async {
            let _ = http_stop_rx.await;
        };
        axum::serve(http_listener, http::router(api))
            .with_graceful_shutdown(stop)
            .await
    });

    if let Some(bound) = bound {
        let _ = bound.send(Bound {
            sip: sip.listening().to_vec(),
            http: http_addr,
        });
    }

    let mut registrar = Registrar::new(
        registrar_config(&config),
        config
            .agents
            .accounts
            .iter()
            .map(|a| (a.id.clone(), a.password.clone())),
    );
    let mut registered: Vec<String> = Vec::new();
    let mut housekeeping = tokio::time::interval(Duration::from_secs(1));
    tokio::pin!(shutdown);
    let result = loop {
        tokio::select! {
            _ = &mut shutdown => break Ok(()),
            _ = housekeeping.tick() => {
                let now = Instant::now();
                registrar.handle_timeout(now);
                sync_registrations(&registrar, now, &mut registered, &agents_tx).await;
            }
            event = sip_events.next() => match event {
                Some(event) => {
                    handle_sip_event(&sip, &mut registrar, event).await;
                    sync_registrations(&registrar, Instant::now(), &mut registered, &agents_tx).await;
                }
                None => break Err(NodeError::SipStopped),
            },
        }
    };

    let _ = http_stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), http_task).await;
    drop(agents_tx);
    let _ = tokio::time::timeout(Duration::from_secs(5), agents_task).await;
    result
}

/// Tells the agent owner who gained or lost their last registered contact.
async fn sync_registrations(
    registrar: &Registrar,
    now: Instant,
    registered: &mut Vec<String>,
    agents: &mpsc::Sender<AgentsInput>,
) {
    let mut current = registrar.registered_users(now);
    current.sort();
    if current == *registered {
        return;
    }
    for user in current.iter().filter(|u| !registered.contains(u)) {
        let _ = agents.send(AgentsInput::Registered(user.clone())).await;
    }
    for user in registered.iter().filter(|u| !current.contains(u)) {
        let _ = agents.send(AgentsInput::Unregistered(user.clone())).await;
    }
    *registered = current;
}

async fn handle_sip_event(sip: &SipHandle, registrar: &mut Registrar, event: Event) {
    let Event::Request { id, request, peer } = event else {
        return;
    };
    let call_id = request.call_id().unwrap_or_default().to_string();
    let span = tracing::info_span!("sip_request", call_id = %call_id, remote = %peer.remote);
    let response = {
        let _guard = span.enter();
        match request.method() {
            Some(Method::Register) => {
                let reply = registrar.handle_register(Instant::now(), &request, peer);
                match &reply.outcome {
                    Outcome::Failed { user } => {
                        tracing::info!(user = %user, "REGISTER authentication failed")
                    }
                    Outcome::LockedOut { source } => {
                        tracing::warn!(%source, "too many failed authentications: source locked out")
                    }
                    Outcome::Registered { user, contacts } => {
                        tracing::info!(user = %user, contacts, "registered")
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
        }
    };
    if let Err(error) = sip.respond(id, response).await {
        tracing::debug!(%error, "could not respond");
    }
}

fn simple(request: &Message, code: u16, reason: &str) -> Message {
    let mut response = Message::response_to(request, code, reason);
    response.set_to_tag(&santral_sip::endpoint::new_tag());
    response
}
