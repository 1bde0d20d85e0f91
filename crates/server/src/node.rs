//! One santral node: the SIP endpoint with its registrar, the agent owner (ACD task), the
//! store and the HTTP API, started from a [`Config`] and run until shutdown.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use santral_ivr::customers::CustomerDirectory;
use santral_ivr::{FlowStore, ValidationContext};
use santral_media::{
    Codec, EngineConfig, EngineError, MediaEngine, Pacer, PortAllocator, PromptCache,
};
use santral_sip::digest::Algorithm;
use santral_sip::driver::{self, Listen};
use santral_sip::registrar::{self, Outcome, Registrar, RegistrarConfig};
use santral_sip::{
    EndpointConfig, Event, Message, Method, Peer, Timers, TransactionId, TransportKind,
};
use tokio::sync::mpsc;

use crate::admission::{Admission, NodeHealth};
use crate::agents::{self, AgentsInput};
use crate::call::{self, CallContext, CallInput, LocateRequest, Routes};
use crate::config::{Config, DigestAlgorithm, Transport};
use crate::http::{self, ApiState};
use crate::live;
use crate::storage::{SqliteStore, StorageError, Store};
use crate::write_behind::WriteBehindStore;

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
    #[error("flows in {dir}:\n{errors}")]
    Flows { dir: String, errors: String },
    #[error("{0}")]
    Customers(String),
    #[error("prompt: {0}")]
    Prompt(#[from] santral_media::PromptError),
    #[error("media ports: {0}")]
    Ports(#[from] santral_media::port::PortError),
    #[error("media engine: {0}")]
    Media(#[from] EngineError),
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
    mut reloads: mpsc::Receiver<Config>,
) -> Result<(), NodeError> {
    // Records and events are written behind, on their own thread, in batches.
    let store: Arc<dyn Store> = Arc::new(WriteBehindStore::new(Arc::new(SqliteStore::open(
        &config.storage.database,
    )?)));
    let (publisher, view, agent_requests) = live::channels();
    let feature_view = view.clone();

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

    let flows = Arc::new(open_flows(&config)?);
    // Reload flows when their files change; a broken edit keeps the running set.
    let _flow_watcher = match flows.watch() {
        Ok(watcher) => Some(watcher),
        Err(err) => {
            tracing::warn!(%err, "flow files are not watched: changes need a restart");
            None
        }
    };
    let customers = CustomerDirectory::load(&config.flows.customers).map_err(|errors| {
        NodeError::Customers(
            errors
                .0
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
        )
    })?;
    let prompts = PromptCache::new();
    let music_on_hold = preload_prompts(&config, &prompts).await?;
    let (locate_tx, mut locate_rx) = mpsc::channel::<LocateRequest>(256);
    let routes: Routes = Arc::new(Mutex::new(HashMap::new()));
    raise_open_file_limit(&config);
    let media = MediaEngine::with_config(EngineConfig {
        threads: (config.media.threads > 0).then_some(usize::from(config.media.threads)),
        realtime_priority: (config.media.realtime_priority > 0)
            .then_some(config.media.realtime_priority),
        io_uring: config.media.io_uring,
    })?;
    let ctx = Arc::new(CallContext {
        sip: sip.clone(),
        routes: routes.clone(),
        agents: agents_tx.clone(),
        locate: locate_tx,
        flows: flows.clone(),
        prompts,
        prompts_dir: config.prompts.dir.clone(),
        music_on_hold,
        ports: PortAllocator::new(config.media.rtp_ports.first..=config.media.rtp_ports.last)?,
        pacer: Pacer::spawn_between_walks(media.epoch()),
        media,
        media_ip: config.media.address,
        store: store.clone(),
        customers: Arc::new(Mutex::new(customers)),
        recordings_dir: config.storage.recordings.clone(),
        recording: config.recording.clone(),
        queues: config.queues.iter().map(|q| q.name.clone()).collect(),
        agent_ids: config
            .agents
            .accounts
            .iter()
            .map(|a| a.id.clone())
            .collect(),
        http: reqwest::Client::new(),
        default_language: config.prompts.default_language.clone(),
        next_call: AtomicU64::new(1),
    });
    let hotlines: HashMap<String, String> = config
        .hotlines
        .iter()
        .map(|h| (h.number.clone(), h.flow.clone()))
        .collect();
    let agent_ids: Vec<String> = config
        .agents
        .accounts
        .iter()
        .map(|a| a.id.clone())
        .collect();
    let mut dispatcher = Dispatcher {
        ctx,
        hotlines,
        agent_ids,
        invites: HashMap::new(),
        draining: false,
        admission: Admission::new(
            config.overload.clone(),
            std::thread::available_parallelism().map_or(1, |n| n.get()),
        ),
        live: feature_view,
    };
    // Counters counted before the Prometheus recorder exists would be lost.
    http::install_metrics();

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
    // Draining: new calls get 503; calls in progress may finish until the deadline, then are
    // hung up (records written) before the node stops.
    let drain_timeout = config.shutdown.drain_timeout;
    let mut drain_deadline: Option<Instant> = None;
    let mut hung_up_at: Option<Instant> = None;
    let result = loop {
        tokio::select! {
            _ = &mut shutdown, if drain_deadline.is_none() => {
                let calls = dispatcher.calls_in_progress();
                tracing::info!(calls, ?drain_timeout, "draining: new calls are refused");
                dispatcher.draining = true;
                drain_deadline = Some(Instant::now() + drain_timeout);
                if calls == 0 {
                    break Ok(());
                }
            }
            _ = housekeeping.tick() => {
                let now = Instant::now();
                metrics::gauge!("santral_media_lag_seconds").set(dispatcher.ctx.media.lag().as_secs_f64());
                metrics::gauge!("santral_event_loop_lag_seconds").set(dispatcher.ctx.pacer.lag().as_secs_f64());
                metrics::gauge!("santral_media_load").set(dispatcher.ctx.media.load());
                let cpu = dispatcher.admission.observe_cpu(std::time::Instant::now(), process_cpu_time());
                metrics::gauge!("santral_cpu_load").set(cpu);
                metrics::gauge!("santral_calls_in_progress").set(dispatcher.calls_in_progress() as f64);
                registrar.handle_timeout(now);
                sync_registrations(&registrar, now, &mut registered, &agents_tx).await;
                dispatcher.forget_finished_invites();
                if let Some(deadline) = drain_deadline {
                    let calls = dispatcher.calls_in_progress();
                    if calls == 0 {
                        break Ok(());
                    }
                    if now >= deadline && hung_up_at.is_none() {
                        tracing::warn!(calls, "drain timeout: hanging up the calls left");
                        dispatcher.hang_up_all().await;
                        hung_up_at = Some(now);
                    }
                    // Calls get a few seconds to send their BYEs and write their records.
                    if hung_up_at.is_some_and(|at| now >= at + Duration::from_secs(5)) {
                        break Ok(());
                    }
                }
            }
            new_config = reloads.recv() => {
                if let Some(new_config) = new_config {
                    apply_reload(&config, &new_config, &mut dispatcher, &mut registrar, &agents_tx).await;
                }
            }
            request = locate_rx.recv() => {
                if let Some(request) = request {
                    let _ = request.reply.send(registrar.contacts(Instant::now(), &request.user));
                }
            }
            event = sip_events.next() => match event {
                Some(event) => {
                    dispatcher.handle(&mut registrar, event).await;
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
    // Every record written before the process exits.
    let flushing = store.clone();
    let _ = tokio::task::spawn_blocking(move || flushing.flush()).await;
    result
}

/// Applies a reloaded configuration to what can change while calls run: hotlines, agent
/// accounts (passwords, skills, languages, names). Flows reload on their own when their files
/// change; overload limits apply to the next call; listen addresses, storage, media ports and
/// queues need a restart.
async fn apply_reload(
    running: &Config,
    new: &Config,
    dispatcher: &mut Dispatcher,
    registrar: &mut Registrar,
    agents: &mpsc::Sender<AgentsInput>,
) {
    dispatcher.hotlines = new
        .hotlines
        .iter()
        .map(|h| (h.number.clone(), h.flow.clone()))
        .collect();
    dispatcher.agent_ids = new.agents.accounts.iter().map(|a| a.id.clone()).collect();
    dispatcher.admission.reconfigure(new.overload.clone());
    registrar.set_accounts(
        new.agents
            .accounts
            .iter()
            .map(|a| (a.id.clone(), a.password.clone())),
    );
    let _ = agents
        .send(AgentsInput::Reconfigure(agents::Setup::from_config(new)))
        .await;
    let restart_needed: Vec<&str> = [
        ("sip", running.sip != new.sip),
        ("http", running.http != new.http),
        ("media", running.media != new.media),
        ("storage", running.storage != new.storage),
        ("queues", running.queues != new.queues),
        ("flows.dir", running.flows.dir != new.flows.dir),
        ("prompts", running.prompts != new.prompts),
    ]
    .into_iter()
    .filter(|(_, changed)| *changed)
    .map(|(name, _)| name)
    .collect();
    if !restart_needed.is_empty() {
        tracing::warn!(
            sections = restart_needed.join(", "),
            "these changes take effect after a restart"
        );
    }
    tracing::info!(
        hotlines = new.hotlines.len(),
        agents = new.agents.accounts.len(),
        "configuration reloaded"
    );
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

/// Routes SIP events: new calls to new call tasks, dialog traffic to its call, the rest
/// (REGISTER, OPTIONS, strays) answered here.
struct Dispatcher {
    ctx: Arc<CallContext>,
    hotlines: HashMap<String, String>,
    agent_ids: Vec<String>,
    /// Server INVITE transactions of calls, to deliver CANCELs.
    invites: HashMap<TransactionId, String>,
    /// Shutting down: refuse new calls.
    draining: bool,
    /// Overload control for new calls.
    admission: Admission,
    /// Agent state changes from feature codes go where the HTTP API's go.
    live: crate::live::LiveView,
}

impl Dispatcher {
    fn route(&self, call_id: &str) -> Option<mpsc::Sender<CallInput>> {
        self.ctx.routes.lock().ok()?.get(call_id).cloned()
    }

    /// Caller legs in progress (agent legs share their call's task).
    fn calls_in_progress(&self) -> usize {
        self.invites.len()
    }

    async fn hang_up_all(&self) {
        let calls: Vec<mpsc::Sender<CallInput>> = self
            .invites
            .values()
            .filter_map(|call_id| self.route(call_id))
            .collect();
        for call in calls {
            let _ = call.send(CallInput::Shutdown).await;
        }
    }

    fn forget_finished_invites(&mut self) {
        let Ok(routes) = self.ctx.routes.lock() else {
            return;
        };
        self.invites
            .retain(|_, call_id| routes.contains_key(call_id));
    }

    async fn handle(&mut self, registrar: &mut Registrar, event: Event) {
        match event {
            Event::Request { id, request, peer } => {
                self.request(registrar, id, request, peer).await
            }
            Event::Ack { request, .. } => {
                if let Some(call) = request.call_id().and_then(|c| self.route(c)) {
                    let _ = call.send(CallInput::Ack(request)).await;
                }
            }
            Event::Response { id, response } => {
                if let Some(call) = response.call_id().and_then(|c| self.route(c)) {
                    let _ = call.send(CallInput::Response { id, response }).await;
                }
            }
            Event::Cancelled { id } => {
                if let Some(call) = self.invites.get(&id).and_then(|c| self.route(c)) {
                    let _ = call.send(CallInput::Cancelled).await;
                }
            }
            Event::Timeout { id, timer } => {
                tracing::debug!(?id, ?timer, "SIP transaction timed out")
            }
            Event::TransportError { id } => tracing::debug!(?id, "SIP transport error"),
        }
    }

    async fn request(
        &mut self,
        registrar: &mut Registrar,
        id: TransactionId,
        request: Message,
        peer: Peer,
    ) {
        let call_id = request.call_id().unwrap_or_default().to_string();
        let span = tracing::info_span!("sip_request", call_id = %call_id, remote = %peer.remote);
        let method = request.method().cloned();
        if method == Some(Method::Invite) && request.to_tag().is_none() {
            if self.route(&call_id).is_some() {
                // A retransmission the transaction layer did not absorb, or a merged request.
                return;
            }
            let dialled = request
                .request_uri()
                .and_then(call::uri_user)
                .unwrap_or_default()
                .to_string();
            if dialled.starts_with('*') {
                self.feature_code(registrar, id, request, peer, &dialled)
                    .await;
                return;
            }
            if let Some(flow) = self.hotlines.get(&dialled).cloned() {
                if self.draining {
                    let mut busy = simple(&request, 503, "Service Unavailable");
                    busy.push_header("Retry-After", "30");
                    self.respond(id, busy).await;
                    return;
                }
                // Late media threads, or a late event loop (SIP itself starved): either way
                // no room for another call.
                let media = NodeHealth {
                    lag: self.ctx.media.lag().max(self.ctx.pacer.lag()),
                    load: self.ctx.media.load(),
                    cpu_time: process_cpu_time(),
                };
                if let Err(refusal) =
                    self.admission
                        .admit(Instant::now(), self.calls_in_progress(), media)
                {
                    // Per-call logs at debug only: under overload, logging is load too.
                    span.in_scope(|| {
                        tracing::debug!(
                            reason = refusal.as_str(),
                            ?media,
                            "INVITE refused: overload"
                        )
                    });
                    metrics::counter!("santral_calls_refused_total", "reason" => refusal.as_str())
                        .increment(1);
                    let mut busy = simple(&request, 503, "Service Unavailable");
                    busy.push_header(
                        "Retry-After",
                        self.admission.retry_after().as_secs().max(1).to_string(),
                    );
                    busy.push_header(
                        "Warning",
                        format!("399 santral \"overload: {}\"", refusal.as_str()),
                    );
                    self.respond(id, busy).await;
                    return;
                }
                self.invites.insert(id, call_id.clone());
                call::spawn(self.ctx.clone(), flow, id, request, peer);
                return;
            }
            // An agent's phone calling another agent: challenged like a feature code.
            if self.agent_ids.contains(&dialled) && is_registered_source(registrar, peer.remote) {
                self.agent_call(registrar, id, request, peer, &dialled)
                    .await;
                return;
            }
            // Anyone else reaches hotlines only: no toll fraud, no agent enumeration.
            let (code, reason) = if self.agent_ids.contains(&dialled) {
                (403, "Forbidden")
            } else {
                (404, "Not Found")
            };
            span.in_scope(|| tracing::info!(%dialled, code, "INVITE refused"));
            self.respond(id, simple(&request, code, reason)).await;
            return;
        }
        if let Some(call) = self.route(&call_id) {
            let _ = call.send(CallInput::Request { id, request, peer }).await;
            return;
        }
        let response = span.in_scope(|| match method {
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
            Some(Method::Invite | Method::Bye | Method::Cancel | Method::Info | Method::Refer | Method::Notify) => {
                simple(&request, 481, "Call/Transaction Does Not Exist")
            }
            _ => {
                let mut r = simple(&request, 501, "Not Implemented");
                r.push_header("Allow", registrar::ALLOW);
                r
            }
        });
        self.respond(id, response).await;
    }

    /// `*40` log in, `*41` log out, `*42` pause, `*43` ready — only for an agent whose INVITE
    /// passes digest authentication (a 401 challenge first). The change is applied, then a short
    /// call confirms it by a prompt (flows agent-feature / agent-feature-refused).
    async fn feature_code(
        &mut self,
        registrar: &mut Registrar,
        id: TransactionId,
        request: Message,
        peer: Peer,
        code: &str,
    ) {
        let user = match registrar.authenticate(Instant::now(), &request, peer.remote.ip()) {
            Ok(user) => user,
            Err(reply) => {
                if let Outcome::LockedOut { source } = &reply.outcome {
                    tracing::warn!(%source, "too many failed authentications: source locked out");
                }
                self.respond(id, reply.response).await;
                return;
            }
        };
        if self.draining {
            let mut busy = simple(&request, 503, "Service Unavailable");
            busy.push_header("Retry-After", "30");
            self.respond(id, busy).await;
            return;
        }
        use crate::live::AgentCommand;
        let command = match code {
            "*40" => Some(AgentCommand::Login),
            "*41" => Some(AgentCommand::Logout),
            "*42" => Some(AgentCommand::Pause {
                reason: Some("feature-code".to_owned()),
            }),
            "*43" => Some(AgentCommand::Ready),
            _ => None,
        };
        let applied = match command {
            Some(command) => match self.live.agent_command(user.clone(), command).await {
                Ok(agent) => {
                    tracing::info!(agent = %user, code, state = %agent.state, "feature code applied");
                    true
                }
                Err(err) => {
                    tracing::info!(agent = %user, code, %err, "feature code refused");
                    false
                }
            },
            None => false,
        };
        let flow = if applied {
            "agent-feature"
        } else {
            "agent-feature-refused"
        };
        let Some(call_id) = request.call_id().map(str::to_owned) else {
            return;
        };
        self.invites.insert(id, call_id);
        call::spawn(self.ctx.clone(), flow.to_owned(), id, request, peer);
    }

    /// An authenticated agent calls another agent: the `agent-direct` flow rings the callee
    /// through the ACD.
    async fn agent_call(
        &mut self,
        registrar: &mut Registrar,
        id: TransactionId,
        request: Message,
        peer: Peer,
        callee: &str,
    ) {
        let caller = match registrar.authenticate(Instant::now(), &request, peer.remote.ip()) {
            Ok(user) => user,
            Err(reply) => {
                self.respond(id, reply.response).await;
                return;
            }
        };
        if self.draining {
            let mut busy = simple(&request, 503, "Service Unavailable");
            busy.push_header("Retry-After", "30");
            self.respond(id, busy).await;
            return;
        }
        if caller == callee {
            self.respond(id, simple(&request, 486, "Busy Here")).await;
            return;
        }
        let Some(call_id) = request.call_id().map(str::to_owned) else {
            return;
        };
        tracing::info!(%caller, %callee, "agent calls agent");
        self.invites.insert(id, call_id);
        call::spawn(
            self.ctx.clone(),
            "agent-direct".to_owned(),
            id,
            request,
            peer,
        );
    }

    async fn respond(&self, id: TransactionId, response: Message) {
        if let Err(error) = self.ctx.sip.respond(id, response).await {
            tracing::debug!(%error, "could not respond");
        }
    }
}

/// Whether `remote` is where some account's registration came from (an agent's phone).
fn is_registered_source(registrar: &Registrar, remote: SocketAddr) -> bool {
    let now = Instant::now();
    registrar.registered_users(now).iter().any(|user| {
        registrar
            .contacts(now, user)
            .iter()
            .any(|binding| binding.source.remote == remote)
    })
}

/// Loads and validates the flows against the configured queues, languages and prompts.
fn open_flows(config: &Config) -> Result<FlowStore, NodeError> {
    let ctx = ValidationContext {
        queues: Some(config.queues.iter().map(|q| q.name.clone()).collect()),
        languages: config.prompts.languages.clone(),
        prompts_dir: Some(config.prompts.dir.clone()),
    };
    match FlowStore::open(&config.flows.dir, ctx) {
        Ok((store, warnings)) => {
            for warning in warnings {
                tracing::warn!("{warning}");
            }
            Ok(store)
        }
        Err(errors) => Err(NodeError::Flows {
            dir: config.flows.dir.display().to_string(),
            errors: errors
                .0
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
        }),
    }
}

/// Decodes every prompt of every language (and the hold music) once at start, for both G.711
/// codecs, so an unreadable file is a named error now and not silence in a call.
async fn preload_prompts(
    config: &Config,
    cache: &PromptCache,
) -> Result<Option<std::path::PathBuf>, NodeError> {
    let mut files = Vec::new();
    for language in &config.prompts.languages {
        let dir = config.prompts.dir.join(language);
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "wav") {
                    files.push(path);
                }
            }
        }
    }
    let music = config.media.music_on_hold.clone();
    if let Some(music) = &music {
        files.push(music.clone());
    }
    let cache = cache.clone();
    let count = files.len();
    tokio::task::spawn_blocking(move || {
        for path in &files {
            for codec in [Codec::Pcmu, Codec::Pcma] {
                cache.get(path, codec)?;
            }
        }
        Ok::<_, santral_media::PromptError>(())
    })
    .await
    .map_err(|err| NodeError::Customers(format!("prompt loading stopped: {err}")))??;
    tracing::info!(prompts = count, "prompts loaded");
    Ok(music)
}

fn simple(request: &Message, code: u16, reason: &str) -> Message {
    let mut response = Message::response_to(request, code, reason);
    response.set_to_tag(&santral_sip::endpoint::new_tag());
    response
}

/// CPU time the whole process has used (all threads).
fn process_cpu_time() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_PROCESS_CPUTIME_ID)
        .map(Duration::from)
        .unwrap_or_default()
}

/// Every call holds two sockets (RTP and RTCP): a distribution's default soft limit of 1,024
/// open files would cap the node near 500 calls whatever its CPU. Raises the soft limit to the
/// hard one, and says so when the port range promises more calls than the limit allows.
fn raise_open_file_limit(config: &Config) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    let limit = if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        hard
    } else {
        soft
    };
    let ports = config.media.rtp_ports;
    let port_pairs = u64::from(ports.last.saturating_sub(ports.first)) / 2 + 1;
    // Two sockets per call, plus room for SIP, HTTP, the database and logs.
    let calls = limit.saturating_sub(256) / 2;
    if calls < port_pairs {
        tracing::warn!(
            open_files = limit,
            calls,
            port_pairs,
            "the open-file limit allows fewer calls than the RTP port range: raise LimitNOFILE \
             (systemd) or `ulimit -n`"
        );
    } else {
        tracing::debug!(open_files = limit, "open-file limit");
    }
}
