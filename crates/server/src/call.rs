//! One task per call: the B2BUA that joins the caller's leg, its media, the IVR flow, the ACD
//! and the agent's leg, and writes the call record.
//!
//! The task owns everything about its call (dialogs, media, interpreter state); the node's
//! dispatcher routes SIP to it by Call-ID and the agent owner sends it ACD decisions.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use santral_acd::{CallId, CallJoin, LeaveReason, Offer};
use santral_ivr::customers::CustomerDirectory;
use santral_ivr::interpreter::{
    Command, EnqueueRequest, LookupOutcome, PromptRef, QueueOutcome, RecordField,
};
use santral_ivr::model::{LookupAction, RecordPurpose};
use santral_ivr::{CallInfo, Event as IvrEvent, FlowStore};
use santral_media::driver::BridgeLeg;
use santral_media::sdp::{LocalMedia, accept_answer, answer_offer, create_offer};
use santral_media::{
    CallRecorder, Codec, DtmfEvent, MediaCommand, MediaCommands, MediaEngine, MediaEvent,
    MediaSession, Pacer, Playlist, PortAllocator, PromptCache, RecordingLayout, RtpSockets,
    SessionConfig, SessionEnd, SessionJoin, TickAudio, run_bridge,
};
use santral_sip::client::{CallConfig, CallEvent, OutgoingCall};
use santral_sip::dialog::Dialog;
use santral_sip::driver::SipHandle;
use santral_sip::registrar::Binding;
use santral_sip::{Message, Method, Peer, TransactionId};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::agents::AgentsInput;
use crate::live::LiveCall;
use crate::storage::{CallRecord, Disposition, QualitySummary, Store};

/// What reaches a call task.
#[derive(Debug)]
pub enum CallInput {
    /// A request in one of the call's dialogs (caller or agent leg).
    Request {
        id: TransactionId,
        request: Message,
        peer: Peer,
    },
    /// An ACK for a 2xx we sent.
    Ack(Message),
    /// A response to a request the call sent.
    Response {
        id: TransactionId,
        response: Message,
    },
    /// The caller CANCELled the INVITE before we answered.
    Cancelled,
    /// The ACD offers the call to this agent.
    Offer(Offer),
    /// Stop ringing this agent.
    CancelOffer { agent: String },
    /// The call left its queue.
    Left { reason: LeaveReason },
    /// The node is shutting down and the drain time is over: hang up both legs now.
    Shutdown,
    /// The answer to an IVR `http` step's request.
    HttpDone {
        request: u64,
        result: Result<santral_ivr::interpreter::HttpResponse, String>,
    },
}

/// Asks the dispatcher (owner of the registrar) where an agent's phone is.
pub struct LocateRequest {
    pub user: String,
    pub reply: oneshot::Sender<Vec<Binding>>,
}

/// The routing table from SIP Call-ID to call task; shared by the dispatcher and the calls.
/// It is held only to insert, remove or clone a sender, never across an await.
pub type Routes = Arc<Mutex<HashMap<String, mpsc::Sender<CallInput>>>>;

/// What every call shares: handles to the node's parts, all cheap to use concurrently.
pub struct CallContext {
    pub sip: SipHandle,
    pub routes: Routes,
    pub agents: mpsc::Sender<AgentsInput>,
    pub locate: mpsc::Sender<LocateRequest>,
    pub flows: Arc<FlowStore>,
    pub prompts: PromptCache,
    pub prompts_dir: PathBuf,
    pub music_on_hold: Option<PathBuf>,
    pub ports: PortAllocator,
    /// Ticks bridges (two legs forwarding to each other in the call's task).
    pub pacer: Pacer,
    /// Drives every single session (IVR, queue, hold) on its media threads.
    pub media: MediaEngine,
    pub media_ip: IpAddr,
    pub store: Arc<dyn Store>,
    pub customers: Arc<Mutex<CustomerDirectory>>,
    pub recordings_dir: PathBuf,
    pub recording: crate::config::RecordingConfig,
    /// Queue names and agent ids: the REFER targets.
    pub queues: Vec<String>,
    pub agent_ids: Vec<String>,
    /// For IVR `http` steps (connection pool shared by all calls).
    pub http: reqwest::Client,
    pub default_language: String,
    pub next_call: AtomicU64,
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The user part of a SIP URI or name-addr (`"Bob" <sip:2001@host>` → `2001`).
pub fn uri_user(uri: &str) -> Option<&str> {
    let start = uri
        .find("sip:")
        .map(|i| i + 4)
        .or_else(|| uri.find("sips:").map(|i| i + 5))?;
    let rest = &uri[start..];
    let end = rest.find(['@', ';', '>', ':']).unwrap_or(rest.len());
    let user = &rest[..end];
    rest[end..].starts_with('@').then_some(user)
}

/// Where the call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Ivr,
    Queued,
    Ringing,
    Talking,
    Ended,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Ivr => "ivr",
            Phase::Queued => "queued",
            Phase::Ringing => "ringing",
            Phase::Talking => "talking",
            Phase::Ended => "ended",
        }
    }
}

/// The leg to the agent's phone while it rings and talks. In-dialog requests (ACK, BYE,
/// NOTIFY) go to the address the agent registered from — like the INVITE — not to the phone's
/// Contact, which behind NAT is unreachable; the caller's leg likewise answers where the caller's
/// INVITE came from.
struct AgentLeg {
    agent: String,
    call: OutgoingCall,
    invite: Message,
    invite_id: TransactionId,
    peer: Peer,
    local: LocalMedia,
    sockets: Option<RtpSockets>,
    answered: bool,
}

/// The caller's media while the IVR or the queue has it.
struct CallerMedia {
    commands: MediaCommands,
    events: mpsc::Receiver<MediaEvent>,
    driver: SessionJoin,
}

/// Caller and agent media bridged in one task.
struct Bridge {
    stop: watch::Sender<bool>,
    events: mpsc::Receiver<(BridgeLeg, MediaEvent)>,
    driver: JoinHandle<(SessionEnd, SessionEnd)>,
}

struct CallTask {
    ctx: Arc<CallContext>,
    call_id: String,
    acd_id: CallId,
    inputs_tx: mpsc::Sender<CallInput>,
    caller_dialog: Dialog,
    caller_peer: Peer,
    codec: Codec,
    ivr: santral_ivr::Call,
    ivr_deadline: Option<Instant>,
    media: Option<CallerMedia>,
    bridge: Option<Bridge>,
    agent_leg: Option<AgentLeg>,
    /// Legs whose offer was withdrawn, kept until their INVITE transaction ends (487, or a
    /// late 200 that we then hang up).
    cancelled_legs: Vec<AgentLeg>,
    /// The queue's own prompt (or an announcement) playing over the hold music.
    queue_prompt: Option<u64>,
    /// The call recording: where bridged audio goes (kept across hold) and its writer.
    record_tap: Option<mpsc::Sender<TickAudio>>,
    recorder: Option<JoinHandle<Option<PathBuf>>>,
    /// The agent's media while the agent holds the call (the caller hears music).
    held_agent: Option<Box<SessionEnd>>,
    /// The caller's media while the caller holds the call, and the agent's own media (playing
    /// hold music) meanwhile.
    held_caller: Option<Box<SessionEnd>>,
    agent_media: Option<CallerMedia>,
    /// A message being recorded (voicemail): its path under the recordings directory, the
    /// writer task and why it is recorded.
    message: Option<(String, JoinHandle<Option<PathBuf>>, RecordPurpose)>,
    /// The caller left a voicemail.
    left_voicemail: bool,
    /// When a queued caller stops waiting (the queue step's `max_wait`, a transfer's timeout).
    queue_deadline: Option<Instant>,
    /// The queue wait is the IVR's `transfer` step, not a `queue` step.
    transfer_step: bool,
    /// Position / wait announcements while queued: what to say, how often, when next.
    announce: Option<(santral_ivr::model::Announce, Instant)>,
    phase: Phase,
    record: CallRecord,
    queued_at: Option<Instant>,
    queued_at_ms: Option<i64>,
    answered_at: Option<Instant>,
    queue_outcome_pending: bool,
    playing: Option<u64>,
    quality: Option<QualitySummary>,
    hangup_by: Option<&'static str>,
    in_acd: bool,
    caller_rtp_port: Option<u16>,
}

/// Starts the task for a new INVITE to a hotline. Answers or refuses it itself.
pub fn spawn(
    ctx: Arc<CallContext>,
    flow: String,
    id: TransactionId,
    invite: Message,
    peer: Peer,
) -> Option<mpsc::Sender<CallInput>> {
    let call_id = invite.call_id()?.to_string();
    let (tx, rx) = mpsc::channel(256);
    if let Ok(mut routes) = ctx.routes.lock() {
        routes.insert(call_id.clone(), tx.clone());
    }
    let span = tracing::info_span!("call", call_id = %call_id);
    let task_tx = tx.clone();
    tokio::spawn(
        async move {
            run(ctx, flow, id, invite, peer, task_tx, rx).await;
        }
        .instrument(span),
    );
    Some(tx)
}

async fn respond_simple(
    ctx: &CallContext,
    id: TransactionId,
    request: &Message,
    code: u16,
    reason: &str,
) {
    let mut response = Message::response_to(request, code, reason);
    response.set_to_tag(&santral_sip::endpoint::new_tag());
    if let Err(err) = ctx.sip.respond(id, response).await {
        tracing::debug!(%err, "response not sent");
    }
}

fn remove_route(ctx: &CallContext, call_id: &str) {
    if let Ok(mut routes) = ctx.routes.lock() {
        routes.remove(call_id);
    }
}

async fn run(
    ctx: Arc<CallContext>,
    flow: String,
    id: TransactionId,
    invite: Message,
    peer: Peer,
    inputs_tx: mpsc::Sender<CallInput>,
    mut inputs: mpsc::Receiver<CallInput>,
) {
    let call_id = invite.call_id().unwrap_or_default().to_string();
    let dialled = invite
        .request_uri()
        .and_then(uri_user)
        .unwrap_or_default()
        .to_string();
    let from = invite.header("From").unwrap_or_default().to_string();
    let caller = uri_user(&from).unwrap_or("anonymous").to_string();
    let caller_name = from
        .split('<')
        .next()
        .map(|name| name.trim().trim_matches('"').to_string())
        .filter(|name| !name.is_empty());

    let offer = String::from_utf8_lossy(&invite.body).to_string();
    if offer.trim().is_empty() {
        respond_simple(&ctx, id, &invite, 488, "Not Acceptable Here").await;
        remove_route(&ctx, &call_id);
        return;
    }
    let sockets = match RtpSockets::bind(ctx.media_ip, &ctx.ports).await {
        Ok(sockets) => sockets,
        Err(err) => {
            tracing::warn!(%err, "no media ports: refusing the call");
            respond_simple(&ctx, id, &invite, 503, "Service Unavailable").await;
            remove_route(&ctx, &call_id);
            return;
        }
    };
    let caller_rtp_port = sockets.rtp_port();
    let local = LocalMedia::new(ctx.media_ip, caller_rtp_port);
    let answer = match answer_offer(&offer, &local) {
        Ok(answer) => answer,
        Err(reason) => {
            tracing::info!(reason = %reason.reason(), "offer not acceptable");
            let mut response =
                Message::response_to(&invite, reason.status_code(), "Not Acceptable Here");
            response.set_to_tag(&santral_sip::endpoint::new_tag());
            response.push_header("Warning", format!("399 santral \"{}\"", reason.reason()));
            let _ = ctx.sip.respond(id, response).await;
            remove_route(&ctx, &call_id);
            return;
        }
    };

    let contact = format!("sip:{}@{}", dialled, peer.local);
    let local_tag = santral_sip::endpoint::new_tag();
    let mut dialog = match Dialog::from_uas(&invite, &local_tag, &contact) {
        Ok(dialog) => dialog,
        Err(err) => {
            tracing::info!(%err, "INVITE cannot create a dialog");
            respond_simple(&ctx, id, &invite, 400, "Bad Request").await;
            remove_route(&ctx, &call_id);
            return;
        }
    };
    let set = ctx.flows.current();
    let started_ms = unix_ms();
    let info = CallInfo {
        call_id: call_id.clone(),
        caller: caller.clone(),
        dialled: dialled.clone(),
        language: ctx.default_language.clone(),
        answered_at: jiff::Zoned::now(),
    };
    let ivr = match santral_ivr::Call::new(set, &flow, info) {
        Ok(ivr) => ivr,
        Err(err) => {
            tracing::error!(%err, flow, "flow cannot start");
            respond_simple(&ctx, id, &invite, 500, "Server Internal Error").await;
            remove_route(&ctx, &call_id);
            return;
        }
    };

    let mut ok = dialog.response(&invite, 200, "OK");
    ok.push_header("Content-Type", "application/sdp");
    ok.push_header("Allow", santral_sip::registrar::ALLOW);
    ok.body = Bytes::from(answer.sdp.clone());
    if let Err(err) = ctx.sip.respond(id, ok).await {
        tracing::warn!(%err, "200 OK not sent");
        remove_route(&ctx, &call_id);
        return;
    }
    tracing::info!(%caller, %dialled, flow, codec = ?answer.media.codec, "call answered");

    let session = MediaSession::new(
        SessionConfig::from_negotiated(&answer.media),
        Instant::now(),
    );
    let codec = session.codec();
    let media = start_caller_media(&ctx, session, sockets, None);
    let acd_id = CallId(ctx.next_call.fetch_add(1, Ordering::Relaxed));
    let mut task = CallTask {
        record: CallRecord {
            call_id: call_id.clone(),
            caller: caller.clone(),
            caller_name,
            dialled: dialled.clone(),
            started_at: started_ms,
            answered_at: None,
            language: Some(ctx.default_language.clone()),
            ..CallRecord::default()
        },
        ctx,
        call_id,
        acd_id,
        inputs_tx,
        caller_dialog: dialog,
        caller_peer: peer,
        codec,
        ivr,
        ivr_deadline: None,
        media: Some(media),
        bridge: None,
        agent_leg: None,
        cancelled_legs: Vec::new(),
        queue_prompt: None,
        record_tap: None,
        recorder: None,
        held_agent: None,
        held_caller: None,
        agent_media: None,
        message: None,
        left_voicemail: false,
        queue_deadline: None,
        transfer_step: false,
        announce: None,
        phase: Phase::Ivr,
        queued_at: None,
        queued_at_ms: None,
        answered_at: None,
        queue_outcome_pending: false,
        playing: None,
        quality: None,
        hangup_by: None,
        in_acd: false,
        caller_rtp_port: Some(caller_rtp_port),
    };
    task.save_record();
    task.publish_live().await;
    task.ivr.handle(IvrEvent::Answered, Instant::now());
    // Boxed for the same reason as main_loop's handlers: inlined, they would size the task.
    Box::pin(task.run_commands()).await;
    task.main_loop(&mut inputs).await;
    Box::pin(task.finish()).await;
}

fn start_caller_media(
    ctx: &CallContext,
    session: MediaSession,
    sockets: RtpSockets,
    tap: Option<mpsc::Sender<TickAudio>>,
) -> CallerMedia {
    let (event_tx, events) = mpsc::channel(64);
    let (commands, driver) = ctx.media.attach(session, sockets, event_tx, tap);
    CallerMedia {
        commands,
        events,
        driver,
    }
}

impl CallTask {
    async fn main_loop(&mut self, inputs: &mut mpsc::Receiver<CallInput>) {
        // Bounded: every iteration waits for an input, a media event or a timer.
        // The handlers are boxed: inlined, the largest of them would size every call's task
        // (34 KB) for all of its life; boxed, each costs one allocation per event handled.
        while self.phase != Phase::Ended {
            let deadline = self
                .ivr_deadline
                .map(tokio::time::Instant::from_std)
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                input = inputs.recv() => match input {
                    Some(input) => Box::pin(self.handle_input(input)).await,
                    None => break,
                },
                event = recv_media(&mut self.media) => match event {
                    Some(event) => Box::pin(self.handle_media_event(event)).await,
                    None => {
                        // The caller's media driver ended on its own: nothing more to play.
                        self.media = None;
                    }
                },
                event = recv_bridge(&mut self.bridge) => {
                    if let Some((leg, event)) = event {
                        Box::pin(self.handle_bridge_event(leg, event)).await;
                    }
                },
                _ = sleep_until_deadline(self.queue_deadline), if self.queue_outcome_pending && self.queue_deadline.is_some() => {
                    Box::pin(self.queue_wait_over()).await;
                }
                _ = sleep_until_announcement(&self.announce), if self.phase == Phase::Queued && self.announce.is_some() => {
                    Box::pin(self.announce_position()).await;
                }
                _ = tokio::time::sleep_until(deadline), if self.ivr_deadline.is_some() => {
                    self.ivr_deadline = None;
                    self.ivr.handle(IvrEvent::TimerFired, Instant::now());
                    Box::pin(self.run_commands()).await;
                }
            }
        }
    }

    async fn handle_input(&mut self, input: CallInput) {
        match input {
            CallInput::Request { id, request, peer } => {
                self.handle_request(id, request, peer).await
            }
            CallInput::Ack(_) => {}
            CallInput::Response { id, response } => self.handle_response(id, response).await,
            CallInput::Cancelled => {
                self.hangup_by = Some("caller");
                self.caller_gone().await;
            }
            CallInput::Offer(offer) => self.ring_agent(offer).await,
            CallInput::CancelOffer { agent } => self.cancel_agent(&agent).await,
            CallInput::Left { reason } => self.left_queue(reason).await,
            CallInput::HttpDone { request, result } => {
                self.ivr
                    .handle(IvrEvent::HttpResult { request, result }, Instant::now());
                self.run_commands().await;
            }
            CallInput::Shutdown => {
                tracing::info!("server shutting down: hanging up");
                self.hangup_by = Some("system");
                self.record.hangup_reason = Some("server shutdown".into());
                self.send_bye_to_caller().await;
                self.caller_gone().await;
            }
        }
    }

    fn is_agent_leg(&self, call_id: &str) -> bool {
        self.agent_leg
            .as_ref()
            .is_some_and(|leg| leg.call.call_id() == call_id)
    }

    async fn handle_request(&mut self, id: TransactionId, request: Message, peer: Peer) {
        let call_id = request.call_id().unwrap_or_default().to_string();
        let method = request.method().cloned();
        if self.is_agent_leg(&call_id) {
            let Some(leg) = self.agent_leg.as_mut() else {
                return;
            };
            let response = match leg.call.dialog_mut() {
                Some(dialog) => match dialog.handle_request(&request) {
                    Ok(()) => dialog.response(&request, 200, "OK"),
                    Err(err) => dialog.response(&request, err.status(), "Bad Request"),
                },
                None => Message::response_to(&request, 481, "Call/Transaction Does Not Exist"),
            };
            let accepted = response.status() == Some(200);
            if method == Some(Method::Refer) && accepted {
                self.refer_from_agent(id, &request).await;
                return;
            }
            if method == Some(Method::Invite) && accepted {
                // A re-INVITE from the agent: hold (sendonly/inactive) or resume.
                let offer = String::from_utf8_lossy(&request.body).to_string();
                let answered = answer_offer(&offer, &leg.local);
                let mut response = response;
                if let Ok(answer) = &answered {
                    response.push_header("Content-Type", "application/sdp");
                    response.body = Bytes::from(answer.sdp.clone());
                }
                let _ = self.ctx.sip.respond(id, response).await;
                if let Ok(answer) = answered {
                    self.agent_hold_changed(answer.media).await;
                }
                return;
            }
            let _ = self.ctx.sip.respond(id, response).await;
            if method == Some(Method::Bye) {
                leg.call.remote_bye();
                tracing::info!(agent = %leg.agent, "agent hung up");
                self.agent_gone().await;
            }
            return;
        }
        let mut renegotiated = None;
        let response = match self.caller_dialog.handle_request(&request) {
            Ok(()) => {
                let mut response = self.caller_dialog.response(&request, 200, "OK");
                if method == Some(Method::Invite) {
                    // A re-INVITE (hold/resume, refresh): answer with our current media.
                    if let Some(answer) = self.current_answer(&request) {
                        response.push_header("Content-Type", "application/sdp");
                        response.body = Bytes::from(answer.sdp);
                        renegotiated = Some(answer.media);
                    }
                }
                response
            }
            Err(err) => self
                .caller_dialog
                .response(&request, err.status(), "Bad Request"),
        };
        let _ = self.ctx.sip.respond(id, response).await;
        let _ = peer;
        if let Some(media) = renegotiated {
            self.caller_media_changed(media).await;
        }
        if method == Some(Method::Bye) {
            tracing::info!("caller hung up");
            self.hangup_by = Some("caller");
            self.caller_gone().await;
        }
    }

    /// Our answer to a re-INVITE: the same codec and port, direction mirrored.
    fn current_answer(&self, request: &Message) -> Option<santral_media::Answer> {
        let offer = String::from_utf8_lossy(&request.body).to_string();
        if offer.trim().is_empty() {
            return None;
        }
        let port = self.caller_rtp_port?;
        answer_offer(&offer, &LocalMedia::new(self.ctx.media_ip, port)).ok()
    }

    /// The caller's re-INVITE changed its media: holding while bridged gives the agent hold
    /// music until the caller resumes; otherwise the caller's session follows the new terms.
    async fn caller_media_changed(&mut self, media: santral_media::NegotiatedMedia) {
        let held = !media.direction.sends();
        if held && self.bridge.is_some() {
            let Some((mut caller_end, agent_end)) = self.stop_bridge_both().await else {
                return;
            };
            tracing::info!("caller holds the call: music on hold for the agent");
            caller_end.session.renegotiate(&media);
            self.held_caller = Some(Box::new(caller_end));
            let agent = start_caller_media(&self.ctx, agent_end.session, agent_end.sockets, None);
            if let Some(music) = self.hold_music().await {
                let _ = agent.commands.send(MediaCommand::PlayMusic(music)).await;
            }
            self.agent_media = Some(agent);
            self.record.tags.push("hold".into());
        } else if !held && let Some(mut caller_end) = self.held_caller.take() {
            tracing::info!("caller resumes the call");
            caller_end.session.renegotiate(&media);
            let Some(agent) = self.agent_media.take() else {
                return;
            };
            let _ = agent.commands.send(MediaCommand::Detach).await;
            let Ok(agent_end) = agent.driver.await else {
                return;
            };
            self.start_bridge(*caller_end, agent_end.session, agent_end.sockets);
        } else if let Some(held) = self.held_caller.as_mut() {
            held.session.renegotiate(&media);
        } else if self.bridge.is_some() {
            // A new address or codec while bridged: bridge again, so that packets are forwarded
            // (and transcoded) by what was just agreed.
            if let Some((mut caller_end, agent_end)) = self.stop_bridge_both().await {
                caller_end.session.renegotiate(&media);
                self.start_bridge(caller_end, agent_end.session, agent_end.sockets);
            }
        } else {
            self.media_command(MediaCommand::Renegotiate(media)).await;
        }
    }

    async fn handle_response(&mut self, id: TransactionId, response: Message) {
        if let Some(index) = self.cancelled_legs.iter().position(|l| l.invite_id == id) {
            self.cancelled_leg_response(index, &response).await;
            return;
        }
        let Some(leg) = self.agent_leg.as_mut() else {
            return;
        };
        if id != leg.invite_id {
            return; // BYE or CANCEL answers need nothing more.
        }
        match leg.call.handle_response(&leg.invite, &response) {
            Some(CallEvent::Progress { status }) => {
                tracing::debug!(status, agent = %leg.agent, "agent phone progress");
            }
            Some(CallEvent::Answered { ack, sdp }) => {
                let hop = leg.peer.remote;
                let _ = self.ctx.sip.send_stateless(ack, leg.peer.transport, hop);
                let answer = String::from_utf8_lossy(&sdp).to_string();
                match accept_answer(&answer, &leg.local) {
                    Ok(media) => {
                        leg.answered = true;
                        let agent = leg.agent.clone();
                        let session = MediaSession::new(
                            SessionConfig::from_negotiated(&media),
                            Instant::now(),
                        );
                        self.agent_answered(agent, session).await;
                    }
                    Err(reason) => {
                        tracing::warn!(reason = %reason.reason(), "agent answer SDP unusable; hanging up the agent leg");
                        if let Some(bye) = leg.call.bye() {
                            let _ = self
                                .ctx
                                .sip
                                .send_request(bye, leg.peer.transport, hop)
                                .await;
                        }
                        let agent = leg.agent.clone();
                        self.agent_leg_failed(&agent).await;
                    }
                }
            }
            Some(CallEvent::AckAgain(ack)) => {
                let hop = leg.peer.remote;
                let _ = self.ctx.sip.send_stateless(ack, leg.peer.transport, hop);
            }
            Some(CallEvent::Failed { status }) => {
                let agent = leg.agent.clone();
                tracing::info!(status, %agent, "agent phone did not answer");
                self.agent_leg_failed(&agent).await;
            }
            Some(CallEvent::Resend(_)) | None => {}
        }
    }

    async fn handle_media_event(&mut self, event: MediaEvent) {
        let now = Instant::now();
        match event {
            MediaEvent::Dtmf(DtmfEvent::Pressed { digit, .. }) => {
                let key = digit.as_char();
                if self.ivr.collecting_secret() {
                    tracing::debug!("digit (secret)");
                } else {
                    tracing::debug!(digit = %key, "digit");
                }
                self.ivr.handle(IvrEvent::Digit(key), now);
            }
            MediaEvent::PlaybackFinished { id } | MediaEvent::PlaybackStopped { id, .. }
                if self.queue_prompt == Some(id) =>
            {
                self.queue_prompt = None;
                if self.phase == Phase::Queued {
                    self.start_hold_music().await;
                }
                return;
            }
            MediaEvent::PlaybackFinished { id } | MediaEvent::PlaybackStopped { id, .. } => {
                if self.playing == Some(id) {
                    self.playing = None;
                    self.ivr.handle(IvrEvent::PromptFinished, now);
                }
            }
            MediaEvent::MediaTimeout => {
                tracing::info!("no RTP from the caller: ending the call");
                self.hangup_by = Some("system");
                self.record.hangup_reason = Some("media timeout".into());
                self.send_bye_to_caller().await;
                self.caller_gone().await;
                return;
            }
            _ => return,
        }
        self.run_commands().await;
    }

    async fn handle_bridge_event(&mut self, leg: BridgeLeg, event: MediaEvent) {
        if let MediaEvent::MediaTimeout = event {
            tracing::info!(?leg, "media timeout while bridged");
        }
    }

    /// Executes what the interpreter asked for, until it has nothing more.
    async fn run_commands(&mut self) {
        while let Some(command) = self.ivr.poll_command() {
            match command {
                Command::Play { prompts, barge_in } => self.play(&prompts, barge_in).await,
                Command::StopPlayback => {
                    self.playing = None;
                    self.media_command(MediaCommand::Stop).await;
                }
                Command::CollectDigits { .. } => {}
                Command::StartTimer { at } => self.ivr_deadline = Some(at),
                Command::CancelTimer => self.ivr_deadline = None,
                Command::Enqueue(request) => self.enqueue(request).await,
                Command::LeaveQueue => {
                    if self.in_acd {
                        let _ = self
                            .ctx
                            .agents
                            .send(AgentsInput::CallerHungUp(self.acd_id))
                            .await;
                    }
                }
                Command::Transfer { to, timeout } => self.transfer_to_agent(to, timeout).await,
                Command::Record { purpose, beep, .. } => {
                    self.start_message(purpose, beep).await;
                }
                Command::StopRecording => self.stop_message().await,
                Command::Http(request) => self.start_http(request),
                Command::Lookup(request) => {
                    let outcome = self.lookup(&request);
                    self.ivr.handle(
                        IvrEvent::LookupResult {
                            request: request.request,
                            outcome,
                        },
                        Instant::now(),
                    );
                }
                Command::SetRecord(field) => self.set_record(field),
                Command::Hangup { reason } => {
                    tracing::info!(%reason, "flow hangs up");
                    // After a talk the agent's hang-up is what the record keeps; the flow's own
                    // goodbye (survey, self-service) is the system's.
                    self.hangup_by.get_or_insert("system");
                    self.record.hangup_reason = Some(reason);
                    self.send_bye_to_caller().await;
                    self.end_call().await;
                    return;
                }
            }
        }
    }

    fn lookup(&mut self, request: &santral_ivr::interpreter::LookupRequest) -> LookupOutcome {
        let outcome = match self.ctx.customers.lock() {
            Ok(mut directory) => directory.answer(request),
            Err(_) => return LookupOutcome::Failed("customer data unavailable".into()),
        };
        // A verified (or found) customer goes on the record and into the agent's screen pop.
        if let LookupOutcome::Found(fields) = &outcome
            && matches!(
                request.action,
                LookupAction::Verify | LookupAction::FetchByCaller
            )
            && let Some(number) = fields.get("number")
        {
            self.record.customer = Some(number.clone());
        }
        if request.action == LookupAction::BlockCard
            && let LookupOutcome::Found(fields) = &outcome
        {
            let customer = fields
                .get("number")
                .or_else(|| fields.get("customer"))
                .cloned()
                .or_else(|| request.customer.clone())
                .unwrap_or_default();
            let last4 = fields
                .get("card_last4")
                .cloned()
                .or_else(|| request.card.clone())
                .unwrap_or_default();
            if let Err(err) =
                self.ctx
                    .store
                    .set_card_status(&customer, &last4, "blocked", unix_ms())
            {
                tracing::error!(%err, "card block not stored");
                return LookupOutcome::Failed("card status could not be stored".into());
            }
            tracing::info!(card_last4 = %last4, "card blocked");
        }
        outcome
    }

    fn set_record(&mut self, field: RecordField) {
        match field {
            RecordField::Tag(tag) => self.record.tags.push(tag),
            RecordField::SurveyScore(score) => self.record.survey_score = Some(score),
            RecordField::Variable { name, value } => {
                if name == "customer" {
                    self.record.customer = Some(value.clone());
                }
                self.record
                    .variables
                    .insert(name, serde_json::Value::String(value));
            }
            RecordField::Language(language) => self.record.language = Some(language),
            RecordField::Recording { id, purpose } => {
                if purpose == RecordPurpose::Voicemail {
                    self.left_voicemail = true;
                }
                self.record.recording = Some(id);
            }
            RecordField::Queue(queue) => self.record.queue = Some(queue),
            RecordField::Agent(agent) => self.record.agent = Some(agent),
        }
        self.save_record();
    }

    async fn media_command(&mut self, command: MediaCommand) {
        if let Some(media) = &self.media {
            let _ = media.commands.send(command).await;
        }
    }

    fn prompt_path(&self, prompt: &PromptRef) -> PathBuf {
        self.ctx
            .prompts_dir
            .join(&prompt.language)
            .join(format!("{}.wav", prompt.name))
    }

    async fn play(&mut self, prompts: &[PromptRef], barge_in: bool) {
        match self.start_playlist(prompts, barge_in).await {
            Some(id) => self.playing = Some(id),
            None => self.ivr.handle(IvrEvent::PromptFinished, Instant::now()),
        }
    }

    /// Plays prompts on the caller's media; None when nothing could be played.
    async fn start_playlist(&mut self, prompts: &[PromptRef], barge_in: bool) -> Option<u64> {
        let paths: Vec<PathBuf> = prompts.iter().map(|p| self.prompt_path(p)).collect();
        let cache = self.ctx.prompts.clone();
        let codec = self.codec;
        // Usually every prompt is loaded already: no trip through the blocking pool.
        let cached: Option<Vec<_>> = paths.iter().map(|path| cache.cached(path, codec)).collect();
        let loaded = match cached {
            Some(prompts) => Ok(Ok(prompts)),
            None => {
                tokio::task::spawn_blocking(move || {
                    paths
                        .iter()
                        .map(|path| cache.get(path, codec))
                        .collect::<Result<Vec<_>, _>>()
                })
                .await
            }
        };
        let playlist = match loaded {
            Ok(Ok(prompts)) => Playlist::new(prompts),
            Ok(Err(err)) => {
                tracing::error!(%err, "prompt cannot be played");
                return None;
            }
            Err(err) => {
                tracing::error!(%err, "prompt loading failed");
                return None;
            }
        };
        let media = self.media.as_ref()?;
        let (started, id) = oneshot::channel();
        let _ = media
            .commands
            .send(MediaCommand::Play {
                playlist,
                barge_in,
                started: Some(started),
            })
            .await;
        id.await.ok()
    }

    async fn enqueue(&mut self, request: EnqueueRequest) {
        // No queue named (the operator choice): the operator queue, which any agent serves.
        let queue = request.queue.clone().unwrap_or_else(|| "operator".into());
        self.record.queue = Some(queue.clone());
        let mut join = CallJoin::new(self.acd_id, &queue)
            .priority(request.priority.clamp(0, 9) as u8)
            .language(&request.language)
            .caller("number", &self.record.caller);
        for (skill, level) in &request.skills {
            join = join.skill(santral_acd::config::SkillRequirement {
                skill: skill.clone(),
                min_level: *level,
            });
        }
        if let Some(customer) = &self.record.customer {
            join = join.caller("customer", customer);
        }
        self.queued_at = Some(Instant::now());
        self.queued_at_ms = Some(unix_ms());
        self.queue_deadline = request.max_wait.map(|wait| Instant::now() + wait);
        self.phase = Phase::Queued;
        self.in_acd = true;
        self.queue_outcome_pending = true;
        tracing::info!(%queue, "caller queued");
        let announce = &request.announce;
        self.announce = (announce.position || announce.wait_time)
            .then(|| (announce.clone(), Instant::now() + announce.every.0));
        // The queue's prompt first (it is the flow's, carried in the request), then hold music.
        self.queue_prompt = if request.prompts.is_empty() {
            None
        } else {
            self.start_playlist(&request.prompts, false).await
        };
        if self.queue_prompt.is_none() {
            self.start_hold_music().await;
        }
        let _ = self
            .ctx
            .agents
            .send(AgentsInput::Join {
                join,
                call: self.inputs_tx.clone(),
                sip_call_id: self.call_id.clone(),
            })
            .await;
        self.save_record();
        self.publish_live().await;
    }

    /// Runs an IVR `http` step's request (a CRM webhook) in its own task; the answer comes
    /// back as [`CallInput::HttpDone`]. Logs show the URL with secrets masked.
    fn start_http(&self, request: santral_ivr::interpreter::HttpRequest) {
        use santral_ivr::model::HttpMethod;
        let method = match request.method {
            HttpMethod::Get => reqwest::Method::GET,
            HttpMethod::Post => reqwest::Method::POST,
            HttpMethod::Put => reqwest::Method::PUT,
            HttpMethod::Patch => reqwest::Method::PATCH,
            HttpMethod::Delete => reqwest::Method::DELETE,
        };
        tracing::info!(%method, url = %request.url.redacted, "CRM request");
        let client = self.ctx.http.clone();
        let inputs = self.inputs_tx.clone();
        tokio::spawn(
            async move {
                let mut builder = client
                    .request(method, &request.url.text)
                    .timeout(request.timeout);
                for (name, value) in &request.headers {
                    builder = builder.header(name.as_str(), value.text.as_str());
                }
                if let Some(body) = &request.body {
                    builder = builder.json(body);
                }
                let result = match builder.send().await {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let body = response
                            .json::<serde_json::Value>()
                            .await
                            .unwrap_or_default();
                        Ok(santral_ivr::interpreter::HttpResponse { status, body })
                    }
                    Err(err) => {
                        let reason = if err.is_timeout() {
                            "timed out".to_owned()
                        } else if err.is_connect() {
                            "cannot connect".to_owned()
                        } else {
                            "request failed".to_owned()
                        };
                        tracing::warn!(url = %request.url.redacted, %reason, "CRM request failed");
                        Err(reason)
                    }
                };
                let _ = inputs
                    .send(CallInput::HttpDone {
                        request: request.request,
                        result,
                    })
                    .await;
            }
            .in_current_span(),
        );
    }

    /// Records what the caller says (a voicemail) until the flow stops it: the caller's media
    /// restarts with an audio tap feeding a WAV writer.
    async fn start_message(&mut self, purpose: RecordPurpose, beep: bool) {
        if beep {
            self.media_command(MediaCommand::PlayTone(santral_media::ToneKind::Beep))
                .await;
        }
        let suffix = match purpose {
            RecordPurpose::Voicemail => "-voicemail",
            RecordPurpose::Recording => "-message",
        };
        let relative = self.recording_relative(suffix);
        let (tap_tx, tap_rx) = mpsc::channel::<TickAudio>(256);
        let Some(writer) = self.spawn_writer(tap_rx, &relative, RecordingLayout::Mono) else {
            self.ivr.handle(
                IvrEvent::RecordingFinished { id: String::new() },
                Instant::now(),
            );
            return;
        };
        tracing::info!(?purpose, "recording the caller");
        self.restart_caller_media(Some(tap_tx)).await;
        self.message = Some((relative.display().to_string(), writer, purpose));
    }

    /// Ends the message: the media restarts without the tap, which closes the writer.
    async fn stop_message(&mut self) {
        let Some((relative, writer, _)) = self.message.take() else {
            return;
        };
        self.restart_caller_media(None).await;
        let written = writer.await.ok().flatten();
        let id = if written.is_some() {
            relative
        } else {
            String::new()
        };
        self.ivr
            .handle(IvrEvent::RecordingFinished { id }, Instant::now());
    }

    /// Stops the caller's own media driver and returns its session and sockets.
    async fn take_caller_media(&mut self) -> Option<SessionEnd> {
        let media = self.media.take()?;
        let _ = media.commands.send(MediaCommand::Detach).await;
        media.driver.await.ok()
    }

    /// Hands the caller's session to a new driver (with or without an audio tap).
    async fn restart_caller_media(&mut self, tap: Option<mpsc::Sender<TickAudio>>) {
        let Some(media) = self.media.take() else {
            return;
        };
        let _ = media.commands.send(MediaCommand::Detach).await;
        if let Ok(end) = media.driver.await {
            self.media = Some(start_caller_media(&self.ctx, end.session, end.sockets, tap));
        }
    }

    /// The IVR's `transfer` step: ring one agent through the ACD (operator queue and the agent's
    /// personal skill) for at most `timeout`; the flow hears whether it connected.
    async fn transfer_to_agent(&mut self, to: String, timeout: Duration) {
        if !self.ctx.agent_ids.contains(&to) {
            tracing::info!(%to, "transfer target is not an agent");
            self.ivr.handle(
                IvrEvent::TransferResult { connected: false },
                Instant::now(),
            );
            return;
        }
        self.transfer_step = true;
        let request = EnqueueRequest {
            queue: Some("operator".to_owned()),
            skills: [(crate::agents::personal_skill(&to), 1)].into(),
            language: self.ivr.language().to_owned(),
            priority: 5,
            prompts: Vec::new(),
            announce: santral_ivr::model::Announce {
                position: false,
                wait_time: false,
                every: santral_ivr::model::FlowDuration(Duration::from_secs(30)),
            },
            max_wait: Some(timeout),
            exit_digit: None,
        };
        self.enqueue(request).await;
    }

    /// The caller waited as long as the flow allows: out of the queue, and the flow goes on
    /// (`on_timeout`, or the transfer's `on_failure`).
    async fn queue_wait_over(&mut self) {
        self.queue_deadline = None;
        if !self.queue_outcome_pending || self.answered_at.is_some() {
            return;
        }
        tracing::info!("maximum wait reached");
        self.queue_outcome_pending = false;
        self.note_wait();
        if let Some(agent) = self.agent_leg.as_ref().map(|leg| leg.agent.clone()) {
            self.cancel_agent(&agent).await;
        }
        if self.in_acd {
            let _ = self
                .ctx
                .agents
                .send(AgentsInput::CallerHungUp(self.acd_id))
                .await;
            self.in_acd = false;
        }
        self.record.hangup_reason = Some("queue exit: timeout".into());
        self.phase = Phase::Ivr;
        self.announce = None;
        self.media_command(MediaCommand::Stop).await;
        let event = if std::mem::take(&mut self.transfer_step) {
            IvrEvent::TransferResult { connected: false }
        } else {
            IvrEvent::QueueResult(QueueOutcome::Timeout)
        };
        self.ivr.handle(event, Instant::now());
        self.run_commands().await;
        self.publish_live().await;
    }

    /// The caller stopped waiting without an agent: the record keeps how long it waited.
    fn note_wait(&mut self) {
        if let Some(queued) = self.queued_at {
            self.record.wait_ms = Some(queued.elapsed().as_millis() as i64);
        }
    }

    /// Tells a waiting caller its place in line and the expected wait, then hold music again.
    async fn announce_position(&mut self) {
        let Some((settings, _)) = self.announce.clone() else {
            return;
        };
        self.announce = Some((settings.clone(), Instant::now() + settings.every.0));
        if self.queue_prompt.is_some() {
            return; // Something is already being said; try at the next turn.
        }
        let (reply, answer) = oneshot::channel();
        let _ = self
            .ctx
            .agents
            .send(AgentsInput::Position {
                call: self.acd_id,
                reply,
            })
            .await;
        let Ok((position, wait)) = answer.await else {
            return;
        };
        let language = self.ivr.language().to_owned();
        let mut names: Vec<String> = Vec::new();
        if settings.position
            && let Some(position) = position
        {
            names.push("queue_position".into());
            names.extend(santral_ivr::speech::number(position as u64, &language));
        }
        if settings.wait_time
            && let Some(wait) = wait
        {
            // Whole minutes, rounded up: "about 3 minutes" is what a caller can use.
            let minutes = wait.as_secs().div_ceil(60).max(1);
            if let Ok(fragments) = santral_ivr::speech::fragments(
                santral_ivr::model::SayKind::Duration,
                &(minutes * 60).to_string(),
                &language,
            ) {
                names.push("queue_wait".into());
                names.extend(fragments);
            }
        }
        if names.is_empty() {
            return;
        }
        tracing::debug!(?position, ?wait, "queue announcement");
        let prompts: Vec<PromptRef> = names
            .into_iter()
            .map(|name| PromptRef {
                language: language.clone(),
                name,
            })
            .collect();
        self.queue_prompt = self.start_playlist(&prompts, false).await;
    }

    async fn start_hold_music(&mut self) {
        if let Some(music) = self.hold_music().await {
            self.media_command(MediaCommand::PlayMusic(music)).await;
        }
    }

    /// The hold music encoded for this call's codec (decoded once per process).
    async fn hold_music(&self) -> Option<std::sync::Arc<santral_media::EncodedPrompt>> {
        let music = self.ctx.music_on_hold.clone()?;
        let cache = self.ctx.prompts.clone();
        let codec = self.codec;
        if let Some(music) = cache.cached(&music, codec) {
            return Some(music);
        }
        match tokio::task::spawn_blocking(move || cache.get(&music, codec)).await {
            Ok(Ok(music)) => Some(music),
            Ok(Err(err)) => {
                tracing::error!(%err, "hold music cannot be played");
                None
            }
            Err(err) => {
                tracing::error!(%err, "hold music loading failed");
                None
            }
        }
    }

    async fn ring_agent(&mut self, offer: Offer) {
        let agent = offer.agent.0.clone();
        if self.agent_leg.is_some() || self.phase != Phase::Queued {
            self.reject_offer(agent).await;
            return;
        }
        let (reply, bindings) = oneshot::channel();
        let _ = self
            .ctx
            .locate
            .send(LocateRequest {
                user: agent.clone(),
                reply,
            })
            .await;
        let Some(binding) = bindings.await.ok().and_then(|b| b.into_iter().next()) else {
            tracing::info!(%agent, "agent has no registered phone");
            self.reject_offer(agent).await;
            return;
        };
        let sockets = match RtpSockets::bind(self.ctx.media_ip, &self.ctx.ports).await {
            Ok(sockets) => sockets,
            Err(err) => {
                tracing::warn!(%err, "no media ports for the agent leg");
                self.reject_offer(agent).await;
                return;
            }
        };
        let local = LocalMedia::new(self.ctx.media_ip, sockets.rtp_port());
        let sip_local = binding.source.local;
        let target = binding.contact.uri.clone();
        let (call, mut invite) = OutgoingCall::new(CallConfig {
            target: target.clone(),
            from: format!("sip:{}@{}", self.record.caller, sip_local.ip()),
            to: format!("sip:{agent}@{}", sip_local.ip()),
            contact: format!("sip:santral@{sip_local}"),
            sdp: Some(Bytes::from(create_offer(&local))),
            credentials: None,
        });
        self.add_screen_pop(&mut invite, &offer);
        if let Ok(mut routes) = self.ctx.routes.lock() {
            routes.insert(call.call_id().to_string(), self.inputs_tx.clone());
        }
        let invite_id = match self
            .ctx
            .sip
            .send_request(
                invite.clone(),
                binding.source.transport,
                binding.source.remote,
            )
            .await
        {
            Ok(id) => id,
            Err(err) => {
                tracing::warn!(%err, %agent, "INVITE to agent not sent");
                remove_route(&self.ctx, call.call_id());
                self.reject_offer(agent).await;
                return;
            }
        };
        tracing::info!(%agent, %target, "ringing agent");
        self.phase = Phase::Ringing;
        self.agent_leg = Some(AgentLeg {
            agent,
            call,
            invite,
            invite_id,
            peer: binding.source,
            local,
            sockets: Some(sockets),
            answered: false,
        });
        self.publish_live().await;
    }

    /// Tells the ACD this agent cannot take the offer, so the next one is tried.
    async fn reject_offer(&self, agent: String) {
        let _ = self
            .ctx
            .agents
            .send(AgentsInput::OfferRejected(self.acd_id, agent))
            .await;
    }

    /// The screen pop: who is calling and why, for the agent's phone (documented in docs/agents.md).
    fn add_screen_pop(&self, invite: &mut Message, offer: &Offer) {
        let name = self
            .record
            .caller_name
            .clone()
            .unwrap_or_else(|| self.record.caller.clone());
        if let Ok(from) = invite.from() {
            let tag = from.tag().unwrap_or_default().to_string();
            invite.set_header(
                "From",
                format!(
                    "\"{}\" <sip:{}@{}>;tag={tag}",
                    name.replace('"', ""),
                    self.record.caller,
                    self.caller_peer.local.ip()
                ),
            );
        }
        invite.push_header("X-Santral-Queue", offer.queue.0.clone());
        invite.push_header("X-Santral-Caller", self.record.caller.clone());
        let path: Vec<&str> = self
            .ivr
            .visited()
            .iter()
            .map(|(_, step)| step.as_str())
            .collect();
        invite.push_header("X-Santral-IVR-Path", path.join(","));
        if let Some(customer) = &self.record.customer {
            invite.push_header("X-Santral-Customer", customer.clone());
        }
        let waited = self.queued_at.map(|t| t.elapsed().as_secs()).unwrap_or(0);
        invite.push_header("X-Santral-Wait", waited.to_string());
        invite.push_header("X-Santral-Call-ID", self.call_id.clone());
    }

    /// The ACD withdrew the offer (ring timeout, answered elsewhere): CANCEL the INVITE and
    /// keep the leg aside until its transaction ends, so the next offer can ring at once.
    async fn cancel_agent(&mut self, agent: &str) {
        let withdraw = self
            .agent_leg
            .as_ref()
            .is_some_and(|leg| leg.agent == agent && !leg.answered);
        if !withdraw {
            return;
        }
        let Some(mut leg) = self.agent_leg.take() else {
            return;
        };
        tracing::info!(%agent, "offer withdrawn: cancelling the agent's INVITE");
        if leg.call.cancel() {
            let _ = self.ctx.sip.cancel(leg.invite_id).await;
        }
        self.cancelled_legs.push(leg);
        if self.phase == Phase::Ringing {
            self.phase = Phase::Queued;
        }
        self.publish_live().await;
    }

    async fn cancelled_leg_response(&mut self, index: usize, response: &Message) {
        let leg = &mut self.cancelled_legs[index];
        match leg.call.handle_response(&leg.invite, response) {
            Some(CallEvent::Answered { ack, .. }) => {
                // The phone answered as the CANCEL crossed it: confirm, then hang up.
                let hop = leg.peer.remote;
                let _ = self.ctx.sip.send_stateless(ack, leg.peer.transport, hop);
                if let Some(bye) = leg.call.bye() {
                    let _ = self
                        .ctx
                        .sip
                        .send_request(bye, leg.peer.transport, hop)
                        .await;
                }
                let leg = self.cancelled_legs.remove(index);
                remove_route(&self.ctx, leg.call.call_id());
            }
            Some(CallEvent::Failed { .. }) => {
                let leg = self.cancelled_legs.remove(index);
                remove_route(&self.ctx, leg.call.call_id());
            }
            _ => {}
        }
    }

    /// Blind transfer: the agent REFERs the caller to a queue (`Refer-To: <sip:tech@…>`). The
    /// caller goes back to waiting (hold music) in that queue, the agent's leg ends and the
    /// agent goes to wrap-up. Transfers to a single agent are not supported yet (403).
    async fn refer_from_agent(&mut self, id: TransactionId, request: &Message) {
        let target = request
            .header("Refer-To")
            .and_then(uri_user)
            .unwrap_or_default()
            .to_string();
        let Some(leg) = self.agent_leg.as_mut() else {
            return;
        };
        let Some(dialog) = leg.call.dialog_mut() else {
            return;
        };
        // A queue by name, or one agent (through the operator queue and the agent's personal
        // skill, so the ACD still rings, times out and tracks the agent).
        let (queue, skills) = if self.ctx.queues.contains(&target) {
            (target.clone(), Default::default())
        } else if self.ctx.agent_ids.contains(&target) && target != leg.agent {
            let skills: std::collections::BTreeMap<String, u8> =
                [(crate::agents::personal_skill(&target), 1)].into();
            ("operator".to_owned(), skills)
        } else {
            tracing::info!(%target, "REFER to something that is neither a queue nor an agent refused");
            let refused = dialog.response(request, 403, "Forbidden");
            let _ = self.ctx.sip.respond(id, refused).await;
            return;
        };
        let accepted = dialog.response(request, 202, "Accepted");
        let _ = self.ctx.sip.respond(id, accepted).await;
        let agent = leg.agent.clone();
        tracing::info!(%agent, %target, "blind transfer");
        // The transfer is done from the agent's point of view once the caller is queued.
        let notify = dialog.notify_refer(200, "OK", true);
        let hop = leg.peer.remote;
        let transport = leg.peer.transport;
        let _ = self.ctx.sip.send_request(notify, transport, hop).await;
        if let Some(bye) = leg.call.bye() {
            let _ = self.ctx.sip.send_request(bye, transport, hop).await;
        }
        if let Some(leg) = self.agent_leg.take() {
            remove_route(&self.ctx, leg.call.call_id());
        }
        let _ = self
            .ctx
            .agents
            .send(AgentsInput::CallEnded(self.acd_id))
            .await;
        if let Some(answered) = self.answered_at.take() {
            self.record.talk_ms = Some(answered.elapsed().as_millis() as i64);
        }
        self.record.tags.push("transferred".into());
        self.record
            .variables
            .insert("transferred_from".into(), serde_json::Value::String(agent));
        self.record.agent = None;
        // The caller's media comes back from the bridge to wait in the new queue; the recording
        // goes on in the same file when the next agent answers.
        self.held_agent = None;
        if let Some(end) = self.stop_bridge().await {
            self.media = Some(start_caller_media(
                &self.ctx,
                end.session,
                end.sockets,
                None,
            ));
        }
        self.acd_id = CallId(self.ctx.next_call.fetch_add(1, Ordering::Relaxed));
        let request = EnqueueRequest {
            queue: Some(queue),
            skills,
            language: self.ivr.language().to_owned(),
            priority: 0,
            prompts: Vec::new(),
            announce: santral_ivr::model::Announce {
                position: false,
                wait_time: false,
                every: santral_ivr::model::FlowDuration(Duration::from_secs(30)),
            },
            max_wait: None,
            exit_digit: None,
        };
        self.enqueue(request).await;
    }

    /// The agent leg ended without talking (rejected, no answer, cancelled).
    async fn agent_leg_failed(&mut self, agent: &str) {
        if let Some(leg) = self.agent_leg.take() {
            remove_route(&self.ctx, leg.call.call_id());
        }
        if self.phase == Phase::Ringing {
            self.phase = Phase::Queued;
        }
        let _ = self
            .ctx
            .agents
            .send(AgentsInput::OfferRejected(self.acd_id, agent.to_string()))
            .await;
        self.publish_live().await;
    }

    async fn agent_answered(&mut self, agent: String, agent_session: MediaSession) {
        tracing::info!(%agent, "agent answered: bridging");
        let now = Instant::now();
        self.answered_at = Some(now);
        self.phase = Phase::Talking;
        self.record.agent = Some(agent.clone());
        self.record.answered_at = Some(unix_ms());
        self.record.wait_ms = self
            .queued_at
            .map(|t| now.duration_since(t).as_millis() as i64);
        let _ = self
            .ctx
            .agents
            .send(AgentsInput::OfferAnswered(self.acd_id, agent.clone()))
            .await;
        self.in_acd = true;
        self.queue_deadline = None;
        let event = if std::mem::take(&mut self.transfer_step) {
            IvrEvent::TransferResult { connected: true }
        } else {
            IvrEvent::QueueResult(QueueOutcome::Answered {
                agent: agent.clone(),
            })
        };
        self.ivr.handle(event, now);
        self.queue_outcome_pending = false;
        // Hand the caller's media over to the bridge.
        let Some(media) = self.media.take() else {
            return;
        };
        let _ = media.commands.send(MediaCommand::Detach).await;
        let Ok(caller_end) = media.driver.await else {
            return;
        };
        let Some(agent_sockets) = self.agent_leg.as_mut().and_then(|leg| leg.sockets.take()) else {
            return;
        };
        self.caller_rtp_port = Some(caller_end.sockets.rtp_port());
        let (tap_tx, tap_rx) = mpsc::channel::<TickAudio>(256);
        let policy = self.ctx.recording.policy(self.record.queue.as_deref());
        if self.recorder.is_some() {
            // A transferred call: its recording is already running.
        } else if policy.records(rand::random_range(0..100)) {
            self.recorder = self.start_recorder(tap_rx);
            if self.recorder.is_some() {
                self.record_tap = Some(tap_tx);
            }
        } else {
            tracing::debug!(?policy, "call not recorded by policy");
        }
        self.start_bridge(caller_end, agent_session, agent_sockets);
        self.save_record();
        self.publish_live().await;
    }

    /// Runs the caller's and the agent's media in one bridge task that forwards packets
    /// between them as they come (no added delay; see `run_bridge`), feeding the recording.
    fn start_bridge(
        &mut self,
        caller: SessionEnd,
        agent_session: MediaSession,
        agent_sockets: RtpSockets,
    ) {
        let (stop, stop_rx) = watch::channel(false);
        let (event_tx, events) = mpsc::channel(64);
        let driver = tokio::spawn(
            run_bridge(
                caller.session,
                caller.sockets,
                agent_session,
                agent_sockets,
                self.ctx.pacer.subscribe(),
                stop_rx,
                event_tx,
                self.record_tap.clone(),
            )
            .in_current_span(),
        );
        self.bridge = Some(Bridge {
            stop,
            events,
            driver,
        });
    }

    /// The agent's re-INVITE put the call on hold (we must not send to the agent) or took it
    /// off: on hold the caller hears music and the agent's media waits; on resume the two are
    /// bridged again (the recording goes on in the same file).
    async fn agent_hold_changed(&mut self, media: santral_media::NegotiatedMedia) {
        let held = !media.direction.sends();
        if held && self.bridge.is_some() {
            let Some((caller_end, mut agent_end)) = self.stop_bridge_both().await else {
                return;
            };
            tracing::info!("agent holds the call: music on hold for the caller");
            agent_end.session.renegotiate(&media);
            self.held_agent = Some(Box::new(agent_end));
            self.media = Some(start_caller_media(
                &self.ctx,
                caller_end.session,
                caller_end.sockets,
                None,
            ));
            self.start_hold_music().await;
            self.record.tags.push("hold".into());
        } else if !held && let Some(mut agent_end) = self.held_agent.take() {
            tracing::info!("agent resumes the call");
            agent_end.session.renegotiate(&media);
            let Some(caller) = self.media.take() else {
                return;
            };
            let _ = caller.commands.send(MediaCommand::Detach).await;
            let Ok(caller_end) = caller.driver.await else {
                return;
            };
            self.start_bridge(caller_end, agent_end.session, agent_end.sockets);
        } else if let Some(held) = self.held_agent.as_mut() {
            held.session.renegotiate(&media);
        } else if self.bridge.is_some() {
            // A new address or codec while bridged: bridge again with it.
            if let Some((caller_end, mut agent_end)) = self.stop_bridge_both().await {
                agent_end.session.renegotiate(&media);
                self.start_bridge(caller_end, agent_end.session, agent_end.sockets);
            }
        }
    }

    /// Writes the bridged audio (caller left, agent right) as it comes, off the media path.
    fn start_recorder(
        &mut self,
        tap: mpsc::Receiver<TickAudio>,
    ) -> Option<JoinHandle<Option<PathBuf>>> {
        let relative = self.recording_relative("");
        let handle = self.spawn_writer(tap, &relative, RecordingLayout::Stereo)?;
        self.record.recording = Some(relative.display().to_string());
        Some(handle)
    }

    /// `YYYY/MM/DD/<call-id><suffix>.wav` under the recordings directory.
    fn recording_relative(&self, suffix: &str) -> PathBuf {
        let date = jiff::Zoned::now();
        PathBuf::from(format!(
            "{:04}/{:02}/{:02}/{}{suffix}.wav",
            date.year(),
            date.month(),
            date.day(),
            sanitize(&self.call_id)
        ))
    }

    /// Writes tapped audio to a WAV file as it comes, off the media path; the task ends (and
    /// finishes the file) when the tap closes.
    fn spawn_writer(
        &self,
        mut tap: mpsc::Receiver<TickAudio>,
        relative: &std::path::Path,
        layout: RecordingLayout,
    ) -> Option<JoinHandle<Option<PathBuf>>> {
        let path = self.ctx.recordings_dir.join(relative);
        if let Some(parent) = path.parent()
            && let Err(err) = std::fs::create_dir_all(parent)
        {
            tracing::error!(%err, dir = %parent.display(), "recording directory cannot be created");
            return None;
        }
        let mut recorder = match CallRecorder::create(&path, layout) {
            Ok(recorder) => recorder,
            Err(err) => {
                tracing::error!(%err, "recording cannot start");
                return None;
            }
        };
        Some(tokio::task::spawn_blocking(move || {
            while let Some(audio) = tap.blocking_recv() {
                if let Err(err) = recorder.write(&audio.received, &audio.sent) {
                    tracing::error!(%err, "recording write failed");
                    break;
                }
            }
            recorder.finish().ok()
        }))
    }

    /// Stops the bridge; gives the caller's media back when the flow continues (survey).
    async fn stop_bridge(&mut self) -> Option<SessionEnd> {
        self.stop_bridge_both().await.map(|(caller, _agent)| caller)
    }

    /// Stops the bridge and gives back both legs' media.
    async fn stop_bridge_both(&mut self) -> Option<(SessionEnd, SessionEnd)> {
        let bridge = self.bridge.take()?;
        let _ = bridge.stop.send(true);
        let (caller_end, agent_end) = bridge.driver.await.ok()?;
        tracing::info!(
            caller_packets = caller_end.quality.packets_expected,
            caller_lost = caller_end.quality.packets_lost,
            agent_packets = agent_end.quality.packets_expected,
            agent_lost = agent_end.quality.packets_lost,
            "bridge ended"
        );
        self.quality = Some(to_quality(&caller_end.quality));
        Some((caller_end, agent_end))
    }

    /// Ends the agent's own media (hold music while the caller held), if it runs.
    async fn stop_agent_media(&mut self) {
        if let Some(agent) = self.agent_media.take() {
            let _ = agent.commands.send(MediaCommand::Shutdown).await;
            let _ = agent.driver.into_quality().await;
        }
    }

    /// Closes the call recording's tap and waits for the file to be finished.
    async fn finish_recording(&mut self) {
        self.record_tap = None;
        if let Some(recorder) = self.recorder.take() {
            let _ = recorder.await;
        }
    }

    async fn agent_gone(&mut self) {
        self.hangup_by.get_or_insert("agent");
        let now = Instant::now();
        if let Some(answered) = self.answered_at {
            self.record.talk_ms = Some(now.duration_since(answered).as_millis() as i64);
        }
        let _ = self
            .ctx
            .agents
            .send(AgentsInput::CallEnded(self.acd_id))
            .await;
        self.in_acd = false;
        if let Some(leg) = self.agent_leg.take() {
            remove_route(&self.ctx, leg.call.call_id());
        }
        let caller_end = match self.stop_bridge().await {
            Some(end) => Some(end),
            // Held when the agent hung up: the caller's media is already its own (agent hold)
            // or waiting (caller hold).
            None => match self.held_caller.take() {
                Some(end) => Some(*end),
                None => self.take_caller_media().await,
            },
        };
        self.held_agent = None;
        self.stop_agent_media().await;
        self.finish_recording().await;
        self.ivr
            .handle(IvrEvent::QueueResult(QueueOutcome::AgentCallFinished), now);
        if self.ivr.is_finished() {
            self.send_bye_to_caller().await;
            self.end_call().await;
            return;
        }
        // The flow goes on (e.g. a survey): the caller's media comes back to the IVR.
        if let Some(end) = caller_end {
            self.media = Some(start_caller_media(
                &self.ctx,
                end.session,
                end.sockets,
                None,
            ));
            self.phase = Phase::Ivr;
        }
        self.run_commands().await;
        self.publish_live().await;
    }

    async fn left_queue(&mut self, reason: LeaveReason) {
        self.in_acd = matches!(reason, LeaveReason::Answered { .. });
        if matches!(reason, LeaveReason::Answered { .. }) {
            return;
        }
        if self.phase == Phase::Ended || !self.queue_outcome_pending {
            return;
        }
        self.queue_outcome_pending = false;
        let outcome = match reason {
            LeaveReason::Timeout => QueueOutcome::Timeout,
            LeaveReason::NoAgents | LeaveReason::Full => QueueOutcome::Unavailable,
            LeaveReason::CallerHungUp | LeaveReason::CallbackScheduled => QueueOutcome::Left,
            LeaveReason::Overflow { .. } | LeaveReason::Answered { .. } => return,
        };
        tracing::info!(?outcome, "left the queue");
        self.note_wait();
        self.record.hangup_reason = Some(format!("queue exit: {}", reason.as_str()));
        self.phase = Phase::Ivr;
        self.queue_deadline = None;
        self.announce = None;
        self.media_command(MediaCommand::Stop).await;
        let event = if std::mem::take(&mut self.transfer_step) {
            IvrEvent::TransferResult { connected: false }
        } else {
            IvrEvent::QueueResult(outcome)
        };
        self.ivr.handle(event, Instant::now());
        self.run_commands().await;
        self.publish_live().await;
    }

    /// The caller's side is gone (BYE, CANCEL or media timeout).
    async fn caller_gone(&mut self) {
        self.ivr.handle(IvrEvent::HungUp, Instant::now());
        if let Some(mut leg) = self.agent_leg.take() {
            remove_route(&self.ctx, leg.call.call_id());
            if leg.answered {
                if let Some(bye) = leg.call.bye() {
                    let hop = leg.peer.remote;
                    let _ = self
                        .ctx
                        .sip
                        .send_request(bye, leg.peer.transport, hop)
                        .await;
                }
            } else if leg.call.cancel() {
                let _ = self.ctx.sip.cancel(leg.invite_id).await;
            }
        }
        if self.in_acd {
            let input = if self.answered_at.is_some() {
                AgentsInput::CallEnded(self.acd_id)
            } else {
                AgentsInput::CallerHungUp(self.acd_id)
            };
            let _ = self.ctx.agents.send(input).await;
            self.in_acd = false;
        }
        if let Some(answered) = self.answered_at
            && self.record.talk_ms.is_none()
        {
            self.record.talk_ms = Some(answered.elapsed().as_millis() as i64);
        }
        self.end_call().await;
    }

    async fn send_bye_to_caller(&mut self) {
        let bye = self.caller_dialog.request(Method::Bye);
        let hop = self.caller_peer.remote;
        if let Err(err) = self
            .ctx
            .sip
            .send_request(bye, self.caller_peer.transport, hop)
            .await
        {
            tracing::debug!(%err, "BYE to caller not sent");
        }
    }

    async fn end_call(&mut self) {
        if self.phase == Phase::Ended {
            return;
        }
        self.phase = Phase::Ended;
        if self.bridge.is_some() {
            self.stop_bridge().await;
        }
        self.held_agent = None;
        self.held_caller = None;
        self.stop_agent_media().await;
        self.finish_recording().await;
        if let Some(media) = self.media.take() {
            let _ = media.commands.send(MediaCommand::Shutdown).await;
            if let Ok(quality) = media.driver.into_quality().await {
                self.quality.get_or_insert_with(|| to_quality(&quality));
            }
        }
    }

    async fn finish(&mut self) {
        self.end_call().await;
        // A message cut short by a hang-up is kept: the writer finishes when the media stops.
        if let Some((relative, writer, purpose)) = self.message.take()
            && writer.await.ok().flatten().is_some()
        {
            if purpose == RecordPurpose::Voicemail {
                self.left_voicemail = true;
            }
            self.record.recording = Some(relative);
        }
        if self.in_acd {
            let _ = self
                .ctx
                .agents
                .send(AgentsInput::CallerHungUp(self.acd_id))
                .await;
        }
        let ended = unix_ms();
        self.record.ended_at = Some(ended);
        if self.record.wait_ms.is_none()
            && let Some(queued) = self.queued_at_ms
        {
            // Never answered: the whole time since joining was waiting.
            self.record.wait_ms = Some(ended - queued);
        }
        self.record.ivr_path = self
            .ivr
            .visited()
            .iter()
            .map(|(flow, step)| format!("{flow}.{step}"))
            .collect();
        self.record.hangup_by = self.hangup_by.map(str::to_owned);
        self.record.quality = self.quality.clone();
        self.record.disposition = Some(self.disposition());
        self.save_record();
        remove_route(&self.ctx, &self.call_id);
        for leg in self.cancelled_legs.drain(..) {
            remove_route(&self.ctx, leg.call.call_id());
        }
        let _ = self
            .ctx
            .agents
            .send(AgentsInput::CallGone {
                call_id: self.call_id.clone(),
                disposition: self
                    .record
                    .disposition
                    .map(|d| d.as_str())
                    .unwrap_or("failed")
                    .to_owned(),
            })
            .await;
        tracing::info!(disposition = ?self.record.disposition, "call ended");
    }

    fn disposition(&self) -> Disposition {
        if self.record.agent.is_some() && self.answered_at.is_some() {
            Disposition::Answered
        } else if self.left_voicemail {
            Disposition::Voicemail
        } else if self.queued_at.is_some()
            && self.hangup_by == Some("caller")
            && self.queue_outcome_pending
        {
            Disposition::Abandoned
        } else if self.queued_at.is_some() {
            Disposition::NoAgent
        } else {
            Disposition::SelfService
        }
    }

    fn save_record(&self) {
        if let Err(err) = self.ctx.store.save_call(&self.record) {
            tracing::error!(%err, "call record not saved");
        }
    }

    async fn publish_live(&self) {
        let live = LiveCall {
            call_id: self.call_id.clone(),
            caller: self.record.caller.clone(),
            dialled: self.record.dialled.clone(),
            state: self.phase.name().to_owned(),
            queue: self.record.queue.clone(),
            agent: self
                .agent_leg
                .as_ref()
                .map(|l| l.agent.clone())
                .or(self.record.agent.clone()),
            started_at: self.record.started_at,
            queued_at: self.queued_at_ms,
        };
        let _ = self.ctx.agents.send(AgentsInput::CallUpdate(live)).await;
    }
}

fn to_quality(q: &santral_media::QualitySummary) -> QualitySummary {
    QualitySummary {
        loss_percent: q.loss_percent,
        jitter_ms: q.mean_jitter_ms,
        rtt_ms: q.round_trip_ms,
        mos: q.mos,
    }
}

/// A Call-ID as a file name: letters, digits, `-`, `_` and `.` kept, the rest replaced.
fn sanitize(call_id: &str) -> String {
    call_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

async fn sleep_until_deadline(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_announcement(announce: &Option<(santral_ivr::model::Announce, Instant)>) {
    match announce {
        Some((_, at)) => tokio::time::sleep_until(tokio::time::Instant::from_std(*at)).await,
        None => std::future::pending().await,
    }
}

async fn recv_media(media: &mut Option<CallerMedia>) -> Option<MediaEvent> {
    match media {
        Some(media) => media.events.recv().await,
        None => std::future::pending().await,
    }
}

async fn recv_bridge(bridge: &mut Option<Bridge>) -> Option<(BridgeLeg, MediaEvent)> {
    match bridge {
        Some(bridge) => bridge.events.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_parts() {
        assert_eq!(uri_user("sip:1000@127.0.0.1:5060"), Some("1000"));
        assert_eq!(uri_user("\"Bob\" <sip:2001@host>;tag=x"), Some("2001"));
        assert_eq!(uri_user("<sip:host>"), None);
        assert_eq!(uri_user("tel:123"), None);
    }

    #[test]
    fn call_ids_become_safe_file_names() {
        assert_eq!(sanitize("abc@127.0.0.1"), "abc_127.0.0.1");
        assert_eq!(sanitize("../x"), ".._x");
    }
}
