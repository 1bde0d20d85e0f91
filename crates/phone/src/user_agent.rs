//! The softphone's user agent: keeps the registration alive, takes incoming calls (screen-pop,
//! auto-answer), places outgoing ones, and runs hold/resume (re-INVITE), DTMF, blind transfer
//! (REFER) and hang-up. One task owns all of it; the SIP driver, the media task and the agent
//! controls talk to it by messages.

use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use bytes::Bytes;
use santral_media::driver::RtpSockets;
use santral_media::{
    Direction, DtmfEvent, LocalMedia, MediaEvent, MediaSession, NegotiatedMedia, Pacer,
    PortAllocator, SessionConfig, sdp,
};
use santral_sip::client::{
    CallConfig, CallEvent, CallState, Credentials, OutgoingCall, RegistrationConfig,
    RegistrationEvent, RegistrationState,
};
use santral_sip::dialog::Dialog;
use santral_sip::driver::{self, Listen, SipEvents, SipHandle};
use santral_sip::user_agent::RegistrationTask;
use santral_sip::{EndpointConfig, Event, Message, Method, TransactionId, TransportKind};
use thiserror::Error;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{Instrument as _, info, warn};

use crate::agent_control::AgentControl;
use crate::audio::{AudioPort, LevelMeter, QualityGauge};
use crate::call_media::{CallAudio, CallMediaCommand, CallMediaEnd, run_call_media, run_ringer};
use crate::command::Command;
use crate::event::{DeviceSamples, PhoneEvent, ScreenPop, crm_url};

/// How the user agent reaches its server and who it is.
#[derive(Clone)]
pub struct UserAgentConfig {
    pub server: SocketAddr,
    pub transport: TransportKind,
    pub bind: SocketAddr,
    pub user: String,
    pub password: String,
    /// Register at start (an agent's phone); off for a plain caller.
    pub register: bool,
    pub expires: u32,
    pub retry_after: Duration,
    pub auto_answer: bool,
    pub crm_url: Option<String>,
    /// Opens the CRM URL (run with the URL as its only argument).
    pub crm_command: Option<String>,
    pub rtp_ports: RangeInclusive<u16>,
    /// Codecs offered and accepted, in order of preference.
    pub codecs: Vec<santral_media::Codec>,
    /// OPTIONS to the server this often while registered: a lost server is noticed, and when
    /// it answers again (restarted, network back) the phone registers at once.
    pub keepalive: Option<Duration>,
}

/// Longest wait for a keepalive answer before the server counts as unreachable.
const KEEPALIVE_ANSWER_WAIT: Duration = Duration::from_secs(4);

/// The OPTIONS keepalive's state: when to send, what is outstanding, whether the server is lost.
#[derive(Debug)]
struct Keepalive {
    interval: Duration,
    next: Instant,
    pending: Option<(TransactionId, Instant)>,
    lost: bool,
    cseq: u32,
    call_id: String,
}

impl Keepalive {
    fn answer_deadline(&self) -> Option<Instant> {
        self.pending
            .map(|(_, sent)| sent + KEEPALIVE_ANSWER_WAIT.min(self.interval))
    }
}

impl std::fmt::Debug for UserAgentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserAgentConfig")
            .field("server", &self.server)
            .field("transport", &self.transport)
            .field("user", &self.user)
            .field("password", &"<hidden>")
            .field("register", &self.register)
            .field("auto_answer", &self.auto_answer)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Error)]
pub enum UserAgentError {
    #[error("cannot start SIP on {bind}: {message}")]
    Sip { bind: SocketAddr, message: String },
    #[error("RTP ports: {0}")]
    Ports(String),
}

/// Where a call stands, as the agent sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallPhase {
    Ringing,
    Calling,
    Connected,
    Held,
}

impl CallPhase {
    pub fn name(self) -> &'static str {
        match self {
            CallPhase::Ringing => "ringing",
            CallPhase::Calling => "calling",
            CallPhase::Connected => "connected",
            CallPhase::Held => "held",
        }
    }
}

// One call at a time: the size difference between the legs does not matter.
#[allow(clippy::large_enum_variant)]
enum Leg {
    Incoming {
        invite_id: TransactionId,
        invite: Message,
        dialog: Dialog,
    },
    Outgoing {
        call: OutgoingCall,
        invite_id: TransactionId,
        sent: Message,
    },
}

struct RunningMedia {
    commands: mpsc::Sender<CallMediaCommand>,
    task: JoinHandle<CallMediaEnd>,
}

struct Call {
    call_id: String,
    leg: Leg,
    phase: CallPhase,
    local: LocalMedia,
    sockets: Option<RtpSockets>,
    media: Option<RunningMedia>,
    connected_at: Option<Instant>,
    /// Our re-INVITE awaiting its answer: transaction, CSeq, the phase it leads to.
    pending_reinvite: Option<(TransactionId, u32, CallPhase)>,
    pending_refer: Option<(TransactionId, String)>,
    span: tracing::Span,
}

impl Call {
    fn dialog_mut(&mut self) -> Option<&mut Dialog> {
        match &mut self.leg {
            Leg::Incoming { dialog, .. } => Some(dialog),
            Leg::Outgoing { call, .. } => call.dialog_mut(),
        }
    }

    fn dialog(&self) -> Option<&Dialog> {
        match &self.leg {
            Leg::Incoming { dialog, .. } => Some(dialog),
            Leg::Outgoing { call, .. } => call.dialog(),
        }
    }
}

/// The user agent task's state. Build with [`UserAgent::start`], then [`UserAgent::run`].
pub struct UserAgent {
    config: UserAgentConfig,
    sip: SipHandle,
    sip_events: SipEvents,
    contact: String,
    local_ip: IpAddr,
    registration: Option<RegistrationTask>,
    call: Option<Call>,
    audio: Option<Box<dyn AudioPort>>,
    pacer: Pacer,
    ports: PortAllocator,
    media_events_tx: mpsc::Sender<MediaEvent>,
    media_events: mpsc::Receiver<MediaEvent>,
    agent: Option<AgentControl>,
    events: mpsc::UnboundedSender<PhoneEvent>,
    muted: bool,
    keepalive: Option<Keepalive>,
    ringer: Option<Ringer>,
    level: LevelMeter,
    quality: QualityGauge,
}

/// The running ringtone: its stop switch and the task that gives the audio port back.
type Ringer = (mpsc::Sender<()>, JoinHandle<Box<dyn AudioPort>>);

impl UserAgent {
    /// Binds SIP and prepares media; nothing is sent until [`UserAgent::run`].
    pub async fn start(
        config: UserAgentConfig,
        audio: Box<dyn AudioPort>,
        agent: Option<AgentControl>,
        events: mpsc::UnboundedSender<PhoneEvent>,
    ) -> Result<UserAgent, UserAgentError> {
        let listen = [Listen {
            transport: config.transport,
            addr: config.bind,
        }];
        let (sip, sip_events) = driver::start(EndpointConfig::default(), &listen)
            .await
            .map_err(|e| UserAgentError::Sip {
                bind: config.bind,
                message: e.to_string(),
            })?;
        let local = sip
            .local_addr(config.transport)
            .ok_or_else(|| UserAgentError::Sip {
                bind: config.bind,
                message: "no local address".into(),
            })?;
        let transport_param = match config.transport {
            TransportKind::Tcp => ";transport=tcp",
            _ => "",
        };
        let contact = format!("sip:{}@{local}{transport_param}", config.user);
        let ports = PortAllocator::new(config.rtp_ports.clone())
            .map_err(|e| UserAgentError::Ports(e.to_string()))?;
        let (media_events_tx, media_events) = mpsc::channel(64);
        Ok(UserAgent {
            local_ip: local.ip(),
            contact,
            sip,
            sip_events,
            registration: None,
            call: None,
            audio: Some(audio),
            pacer: Pacer::spawn(),
            ports,
            media_events_tx,
            media_events,
            agent,
            events,
            muted: false,
            ringer: None,
            level: LevelMeter::default(),
            quality: QualityGauge::default(),
            keepalive: config
                .keepalive
                .filter(|_| config.register)
                .map(|interval| Keepalive {
                    interval: interval.max(Duration::from_millis(200)),
                    next: Instant::now() + interval,
                    pending: None,
                    lost: false,
                    cseq: 0,
                    call_id: format!("{:016x}@santral-phone", rand::random::<u64>()),
                }),
            config,
        })
    }

    /// The microphone level during calls, for the UI's meter.
    pub fn level_meter(&self) -> LevelMeter {
        self.level.clone()
    }

    /// The running call's quality, for the UI.
    pub fn quality_gauge(&self) -> QualityGauge {
        self.quality.clone()
    }

    pub fn contact(&self) -> &str {
        &self.contact
    }

    fn emit(&self, event: PhoneEvent) {
        let _ = self.events.send(event);
    }

    fn server_host(&self) -> String {
        match self.config.server {
            SocketAddr::V4(a) => a.ip().to_string(),
            SocketAddr::V6(a) => format!("[{}]", a.ip()),
        }
    }

    fn registration_name(&self) -> String {
        match self.registration.as_ref().map(|r| r.state()) {
            None => "off".into(),
            Some(RegistrationState::Registered { .. }) => "registered".into(),
            Some(RegistrationState::Registering) => "registering".into(),
            Some(RegistrationState::Failed { status }) => format!("failed {status}"),
            Some(RegistrationState::Unregistered) | Some(RegistrationState::Idle) => {
                "unregistered".into()
            }
        }
    }

    /// Runs until `quit` or until the command channel closes.
    pub async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        if self.config.register {
            self.start_registration();
        }
        loop {
            self.poll_keepalive().await;
            if let Some(registration) = &mut self.registration {
                let was_idle = !matches!(registration.state(), RegistrationState::Registering);
                if let Err(error) = registration.poll(&self.sip, Instant::now()).await {
                    warn!(%error, "REGISTER not sent");
                }
                if was_idle && matches!(registration.state(), RegistrationState::Registering) {
                    self.emit(PhoneEvent::Registering);
                }
            }
            let keepalive_wake = self
                .keepalive
                .as_ref()
                .map(|k| k.answer_deadline().map_or(k.next, |d| d.min(k.next)));
            let wake = self
                .registration
                .as_ref()
                .and_then(|r| r.next_wake())
                .into_iter()
                .chain(keepalive_wake)
                .min()
                .map(tokio::time::Instant::from_std)
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                event = self.sip_events.next() => match event {
                    Some(event) => self.handle_sip(event).await,
                    None => break,
                },
                command = commands.recv() => match command {
                    Some(Command::Quit) | None => break,
                    Some(command) => self.handle_command(command).await,
                },
                Some(event) = self.media_events.recv() => self.handle_media_event(event).await,
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
        self.shutdown().await;
    }

    /// A fresh registration, sent at once (at start, and when a lost server answers again).
    fn start_registration(&mut self) {
        let server = self.config.server;
        let host = self.server_host();
        let registration = RegistrationConfig {
            registrar_uri: format!("sip:{server}"),
            aor: format!("sip:{}@{host}", self.config.user),
            contact: self.contact.clone(),
            expires: self.config.expires,
            credentials: Credentials {
                username: self.config.user.clone(),
                password: self.config.password.clone(),
            },
            retry_after: self.config.retry_after,
        };
        self.registration = Some(RegistrationTask::new(
            registration,
            self.config.transport,
            server,
            Instant::now(),
        ));
    }

    /// Sends the keepalive OPTIONS when due; an answer overdue means the server is lost.
    async fn poll_keepalive(&mut self) {
        let now = Instant::now();
        let Some(keepalive) = &mut self.keepalive else {
            return;
        };
        if keepalive.answer_deadline().is_some_and(|d| d <= now) {
            keepalive.pending = None;
            if !keepalive.lost {
                keepalive.lost = true;
                warn!(server = %self.config.server, "server not answering");
                let _ = self.events.send(PhoneEvent::ServerUnreachable);
            }
        }
        if keepalive.pending.is_some() || keepalive.next > now {
            return;
        }
        keepalive.next = now + keepalive.interval;
        keepalive.cseq += 1;
        let server = self.config.server;
        let mut options = Message::request(Method::Options, format!("sip:{server}"));
        options.push_header(
            "From",
            format!(
                "<sip:{}@{}>;tag=ka{}",
                self.config.user, self.local_ip, keepalive.cseq
            ),
        );
        options.push_header("To", format!("<sip:{server}>"));
        options.push_header("Call-ID", keepalive.call_id.clone());
        options.push_header("CSeq", format!("{} OPTIONS", keepalive.cseq));
        match self
            .sip
            .send_request(options, self.config.transport, server)
            .await
        {
            Ok(id) => keepalive.pending = Some((id, now)),
            Err(error) => warn!(%error, "keepalive not sent"),
        }
    }

    /// Any answer to the keepalive proves the server is there; after a loss, register again
    /// (a restarted server has forgotten us).
    fn keepalive_answered(&mut self, id: TransactionId) -> bool {
        let Some(keepalive) = &mut self.keepalive else {
            return false;
        };
        if keepalive.pending.map(|(pending, _)| pending) != Some(id) {
            return false;
        }
        keepalive.pending = None;
        if keepalive.lost {
            keepalive.lost = false;
            info!(server = %self.config.server, "server answering again: registering");
            let _ = self.events.send(PhoneEvent::ServerReachable);
            self.start_registration();
        }
        true
    }

    async fn shutdown(&mut self) {
        if self.call.is_some() {
            self.hang_up().await;
        }
        if let Some(mut registration) = self.registration.take()
            && matches!(registration.state(), RegistrationState::Registered { .. })
            && registration.unregister(&self.sip).await.is_ok()
        {
            // Wait (bounded) for the registrar to confirm, answering its challenge if any.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
            while let Ok(Some(event)) =
                tokio::time::timeout_at(deadline, self.sip_events.next()).await
            {
                if let Ok(Some(outcome)) = registration
                    .handle_event(&self.sip, &event, Instant::now())
                    .await
                {
                    if outcome == RegistrationEvent::Unregistered {
                        self.emit(PhoneEvent::Unregistered);
                    }
                    break;
                }
            }
        }
        if let Some(audio) = &mut self.audio {
            audio.call_ended();
        }
        self.emit(PhoneEvent::Stopped);
    }

    // ---- SIP ------------------------------------------------------------------------------

    async fn handle_sip(&mut self, event: Event) {
        if let Some(registration) = &mut self.registration {
            match registration
                .handle_event(&self.sip, &event, Instant::now())
                .await
            {
                Ok(Some(RegistrationEvent::Registered { expires })) => {
                    self.emit(PhoneEvent::Registered { expires });
                    return;
                }
                Ok(Some(RegistrationEvent::Failed { status })) => {
                    self.emit(PhoneEvent::RegistrationFailed { status });
                    return;
                }
                Ok(Some(RegistrationEvent::Unregistered)) => {
                    self.emit(PhoneEvent::Unregistered);
                    return;
                }
                Ok(_) => {}
                Err(error) => warn!(%error, "REGISTER not sent"),
            }
        }
        match event {
            Event::Request { id, request, .. } => self.handle_request(id, request).await,
            Event::Response { id, response } => {
                if response.status().unwrap_or(0) >= 200 && self.keepalive_answered(id) {
                    return;
                }
                self.handle_response(id, response).await
            }
            Event::Cancelled { id } => {
                let ours = matches!(&self.call, Some(Call { leg: Leg::Incoming { invite_id, .. }, .. }) if *invite_id == id);
                if ours {
                    self.end_call("cancelled by caller").await;
                }
            }
            Event::Timeout { id, .. } | Event::TransportError { id } => {
                let ours = matches!(&self.call, Some(Call { leg: Leg::Outgoing { invite_id, .. }, .. }) if *invite_id == id);
                if ours {
                    self.end_call("no answer from the server").await;
                }
            }
            Event::Ack { .. } => {}
        }
    }

    async fn respond(&self, id: TransactionId, response: Message) {
        if let Err(error) = self.sip.respond(id, response).await {
            warn!(%error, "response not sent");
        }
    }

    async fn handle_request(&mut self, id: TransactionId, request: Message) {
        let Some(method) = request.method().cloned() else {
            return;
        };
        let in_our_dialog = self
            .call
            .as_ref()
            .and_then(|c| c.dialog())
            .is_some_and(|d| d.matches(&request));
        match method {
            Method::Invite if in_our_dialog => self.handle_reinvite(id, request).await,
            Method::Invite if self.call.is_some() => {
                let busy = Message::response_to(&request, 486, "Busy Here");
                self.respond(id, busy).await;
            }
            Method::Invite => self.handle_invite(id, request).await,
            Method::Bye if in_our_dialog => {
                let response = match self.call.as_mut().and_then(|c| c.dialog_mut()) {
                    Some(dialog) => match dialog.handle_request(&request) {
                        Ok(()) => dialog.response(&request, 200, "OK"),
                        Err(e) => Message::response_to(&request, e.status(), "Dialog error"),
                    },
                    None => Message::response_to(&request, 481, "No such call"),
                };
                self.respond(id, response).await;
                self.end_call("remote hangup").await;
            }
            Method::Options => {
                let response = santral_sip::registrar::options_response(&request, "phone");
                self.respond(id, response).await;
            }
            // REFER progress reports for a transfer we started (possibly after our BYE).
            Method::Notify => {
                self.respond(id, Message::response_to(&request, 200, "OK"))
                    .await;
            }
            Method::Info if in_our_dialog => {
                self.respond(id, Message::response_to(&request, 200, "OK"))
                    .await;
            }
            Method::Bye | Method::Info => {
                let response =
                    Message::response_to(&request, 481, "Call/Transaction Does Not Exist");
                self.respond(id, response).await;
            }
            _ => {
                let mut response = Message::response_to(&request, 405, "Method Not Allowed");
                response.push_header("Allow", santral_sip::registrar::ALLOW);
                self.respond(id, response).await;
            }
        }
    }

    async fn handle_invite(&mut self, id: TransactionId, request: Message) {
        let call_id = request.call_id().unwrap_or_default().to_string();
        let span = tracing::info_span!("call", call_id = %call_id);
        let tag = format!("{:08x}", rand::random::<u32>());
        let mut dialog = match Dialog::from_uas(&request, &tag, &self.contact) {
            Ok(dialog) => dialog,
            Err(error) => {
                let response = Message::response_to(&request, 400, "Bad Request");
                span.in_scope(|| warn!(%error, "INVITE refused"));
                self.respond(id, response).await;
                return;
            }
        };
        let sockets = match RtpSockets::bind(self.local_ip, &self.ports).await {
            Ok(sockets) => sockets,
            Err(error) => {
                span.in_scope(|| warn!(%error, "no RTP ports"));
                let response = dialog.response(&request, 503, "No Media Ports");
                self.respond(id, response).await;
                return;
            }
        };
        let ringing = dialog.response(&request, 180, "Ringing");
        self.respond(id, ringing).await;
        let screen_pop = ScreenPop::from_invite(&request);
        let crm = self
            .config
            .crm_url
            .as_deref()
            .map(|template| crm_url(template, &screen_pop));
        span.in_scope(
            || info!(from = %screen_pop.from, queue = ?screen_pop.queue, "incoming call"),
        );
        let mut local = LocalMedia::new(self.local_ip, sockets.rtp_port());
        local.codecs = self.config.codecs.clone();
        local.session_id = u64::from(rand::random::<u32>());
        self.call = Some(Call {
            call_id: call_id.clone(),
            leg: Leg::Incoming {
                invite_id: id,
                invite: request,
                dialog,
            },
            phase: CallPhase::Ringing,
            local,
            sockets: Some(sockets),
            media: None,
            connected_at: None,
            pending_reinvite: None,
            pending_refer: None,
            span,
        });
        if let (Some(program), Some(url)) = (&self.config.crm_command, &crm) {
            // Fire and forget; reaped by the OS when the phone exits, logged if it cannot start.
            if let Err(error) = tokio::process::Command::new(program).arg(url).spawn() {
                warn!(%error, %program, "cannot open the CRM");
            }
        }
        self.emit(PhoneEvent::IncomingCall {
            call_id,
            screen_pop,
            crm_url: crm,
        });
        if self.config.auto_answer {
            self.answer().await;
        } else {
            self.start_ringer();
        }
    }

    /// Rings the headset (sound cards only) while a call waits to be answered.
    fn start_ringer(&mut self) {
        if !self.audio.as_ref().is_some_and(|a| a.is_headset()) {
            return;
        }
        let Some(audio) = self.audio.take() else {
            return;
        };
        let (stop, stop_rx) = mpsc::channel(1);
        let task = tokio::spawn(run_ringer(audio, self.pacer.subscribe(), stop_rx));
        self.ringer = Some((stop, task));
    }

    /// Silences the ringtone and takes the audio port back.
    async fn stop_ringer(&mut self) {
        if let Some((stop, task)) = self.ringer.take() {
            let _ = stop.send(()).await;
            match task.await {
                Ok(audio) => self.audio = Some(audio),
                Err(error) => warn!(%error, "ringer task failed"),
            }
        }
    }

    async fn answer(&mut self) {
        self.stop_ringer().await;
        let Some(call) = self.call.as_mut() else {
            self.emit(PhoneEvent::Error {
                message: "no call to answer".into(),
            });
            return;
        };
        let Leg::Incoming {
            invite_id,
            invite,
            dialog,
        } = &mut call.leg
        else {
            return;
        };
        if call.phase != CallPhase::Ringing {
            return;
        }
        let offer = String::from_utf8_lossy(&invite.body).into_owned();
        let answer = match sdp::answer_offer(&offer, &call.local) {
            Ok(answer) => answer,
            Err(reason) => {
                let mut response =
                    dialog.response(invite, reason.status_code(), "Not Acceptable Here");
                response.push_header(
                    "Warning",
                    format!("304 santral-phone \"{}\"", reason.reason()),
                );
                let id = *invite_id;
                self.respond(id, response).await;
                self.end_call("no common codec").await;
                return;
            }
        };
        let mut ok = dialog.response(invite, 200, "OK");
        ok.push_header("Content-Type", "application/sdp");
        ok.body = Bytes::from(answer.sdp.clone());
        let id = *invite_id;
        self.respond(id, ok).await;
        self.start_media(answer.media).await;
    }

    async fn start_media(&mut self, media: NegotiatedMedia) {
        let Some(call) = self.call.as_mut() else {
            return;
        };
        let (Some(sockets), Some(audio)) = (call.sockets.take(), self.audio.take()) else {
            return;
        };
        // Auto-answered calls on a headset start with a short beep, so the agent knows.
        let beep = self.config.auto_answer
            && matches!(call.leg, Leg::Incoming { .. })
            && audio.is_headset();
        let session = MediaSession::new(SessionConfig::from_negotiated(&media), Instant::now());
        let (commands, command_rx) = mpsc::channel(32);
        if self.muted {
            let _ = commands.try_send(CallMediaCommand::Mute(true));
        }
        let task = tokio::spawn(
            run_call_media(
                session,
                sockets,
                self.pacer.subscribe(),
                command_rx,
                self.media_events_tx.clone(),
                CallAudio {
                    port: audio,
                    beep,
                    level: self.level.clone(),
                    quality: self.quality.clone(),
                },
            )
            .instrument(call.span.clone()),
        );
        call.media = Some(RunningMedia { commands, task });
        call.phase = CallPhase::Connected;
        call.connected_at = Some(Instant::now());
        let call_id = call.call_id.clone();
        call.span
            .in_scope(|| info!(codec = media.codec.encoding_name(), remote = %media.remote_rtp, "call connected"));
        self.emit(PhoneEvent::Answered {
            call_id,
            codec: media.codec.encoding_name().to_string(),
            remote_rtp: media.remote_rtp.to_string(),
        });
    }

    async fn handle_reinvite(&mut self, id: TransactionId, request: Message) {
        let Some(call) = self.call.as_mut() else {
            return;
        };
        let Some(dialog) = call.dialog_mut() else {
            return;
        };
        if let Err(error) = dialog.handle_request(&request) {
            let response = Message::response_to(&request, error.status(), "Dialog error");
            self.respond(id, response).await;
            return;
        }
        let offer = String::from_utf8_lossy(&request.body).into_owned();
        call.local.session_version += 1;
        let response = match sdp::answer_offer(&offer, &call.local) {
            Ok(answer) => {
                let Some(dialog) = call.dialog_mut() else {
                    return;
                };
                let mut ok = dialog.response(&request, 200, "OK");
                ok.push_header("Content-Type", "application/sdp");
                ok.body = Bytes::from(answer.sdp);
                if let Some(media) = &call.media {
                    let _ = media
                        .commands
                        .send(CallMediaCommand::Renegotiate(answer.media))
                        .await;
                }
                ok
            }
            Err(reason) => {
                Message::response_to(&request, reason.status_code(), "Not Acceptable Here")
            }
        };
        self.respond(id, response).await;
    }

    async fn handle_response(&mut self, id: TransactionId, response: Message) {
        let Some(call) = self.call.as_mut() else {
            return;
        };
        let status = response.status().unwrap_or(0);
        if let Leg::Outgoing {
            call: outgoing,
            invite_id,
            sent,
        } = &mut call.leg
            && *invite_id == id
        {
            match outgoing.handle_response(sent, &response) {
                Some(CallEvent::Resend(next)) => {
                    let hop = next
                        .request_uri()
                        .and_then(santral_sip::dialog::uri_socket_addr)
                        .unwrap_or(self.config.server);
                    match self
                        .sip
                        .send_request(next.clone(), self.config.transport, hop)
                        .await
                    {
                        Ok(new_id) => {
                            *invite_id = new_id;
                            *sent = next;
                        }
                        Err(error) => {
                            warn!(%error, "INVITE not sent");
                            self.end_call("cannot send").await;
                        }
                    }
                }
                Some(CallEvent::Progress { status }) => {
                    let call_id = call.call_id.clone();
                    self.emit(PhoneEvent::Progress { call_id, status });
                }
                Some(CallEvent::Answered { ack, sdp: answer }) => {
                    let hop = outgoing
                        .dialog()
                        .and_then(|d| d.next_hop())
                        .unwrap_or(self.config.server);
                    if let Err(error) = self.sip.send_stateless(ack, self.config.transport, hop) {
                        warn!(%error, "ACK not sent");
                    }
                    let answer = String::from_utf8_lossy(&answer).into_owned();
                    match sdp::accept_answer(&answer, &call.local) {
                        Ok(media) => self.start_media(media).await,
                        Err(reason) => {
                            warn!(reason = %reason.reason(), "unusable SDP answer");
                            self.hang_up().await;
                        }
                    }
                }
                Some(CallEvent::AckAgain(ack)) => {
                    let hop = outgoing
                        .dialog()
                        .and_then(|d| d.next_hop())
                        .unwrap_or(self.config.server);
                    let _ = self.sip.send_stateless(ack, self.config.transport, hop);
                }
                Some(CallEvent::Failed { status }) => {
                    let reason = if status == 487 {
                        "cancelled".to_string()
                    } else {
                        format!("failed {status}")
                    };
                    self.end_call(&reason).await;
                }
                None => {}
            }
            return;
        }
        if let Some((pending, seq, phase)) = call.pending_reinvite
            && pending == id
            && status >= 200
        {
            call.pending_reinvite = None;
            let hop = call
                .dialog()
                .and_then(|d| d.next_hop())
                .unwrap_or(self.config.server);
            if (200..300).contains(&status) {
                if let Some(ack) = call.dialog().map(|d| d.ack(seq)) {
                    let _ = self.sip.send_stateless(ack, self.config.transport, hop);
                }
                let answer = String::from_utf8_lossy(&response.body).into_owned();
                match sdp::accept_answer(&answer, &call.local) {
                    Ok(media) => {
                        if let Some(running) = &call.media {
                            let _ = running
                                .commands
                                .send(CallMediaCommand::Renegotiate(media))
                                .await;
                        }
                        call.phase = phase;
                        let call_id = call.call_id.clone();
                        self.emit(match phase {
                            CallPhase::Held => PhoneEvent::Held { call_id },
                            _ => PhoneEvent::Resumed { call_id },
                        });
                    }
                    Err(reason) => self.emit(PhoneEvent::Error {
                        message: format!("re-INVITE answer refused: {}", reason.reason()),
                    }),
                }
            } else {
                self.emit(PhoneEvent::Error {
                    message: format!("hold/resume refused with {status}"),
                });
            }
            return;
        }
        if let Some((pending, target)) = &call.pending_refer
            && *pending == id
            && status >= 200
        {
            let target = target.clone();
            let call_id = call.call_id.clone();
            call.pending_refer = None;
            if (200..300).contains(&status) {
                self.emit(PhoneEvent::TransferAccepted { call_id, target });
                // Blind transfer: the far end takes over, we leave.
                self.hang_up_with("transferred").await;
            } else {
                self.emit(PhoneEvent::TransferFailed { call_id, status });
            }
        }
    }

    // ---- media ----------------------------------------------------------------------------

    async fn handle_media_event(&mut self, event: MediaEvent) {
        match event {
            MediaEvent::Dtmf(DtmfEvent::Pressed { digit, .. }) => {
                self.emit(PhoneEvent::DtmfReceived {
                    digit: digit.as_char().to_string(),
                });
            }
            MediaEvent::MediaTimeout
                if self
                    .call
                    .as_ref()
                    .is_some_and(|c| c.phase == CallPhase::Connected) =>
            {
                self.hang_up_with("no media").await;
            }
            _ => {}
        }
    }

    // ---- commands -------------------------------------------------------------------------

    async fn handle_command(&mut self, command: Command) {
        match command {
            Command::Answer => self.answer().await,
            Command::Hangup => self.hang_up().await,
            Command::Dial(target) => self.dial(&target).await,
            Command::Dtmf(digits) => {
                let Some(media) = self.call.as_ref().and_then(|c| c.media.as_ref()) else {
                    self.emit(PhoneEvent::Error {
                        message: "DTMF needs a connected call".into(),
                    });
                    return;
                };
                for digit in &digits {
                    let _ = media
                        .commands
                        .send(CallMediaCommand::SendDtmf(*digit))
                        .await;
                }
                self.emit(PhoneEvent::DtmfSent {
                    digits: digits.iter().map(|d| d.as_char()).collect(),
                });
            }
            Command::Hold => self.reinvite(Direction::SendOnly, CallPhase::Held).await,
            Command::Resume => {
                self.reinvite(Direction::SendRecv, CallPhase::Connected)
                    .await
            }
            Command::Mute | Command::Unmute => {
                self.muted = command == Command::Mute;
                if let Some(media) = self.call.as_ref().and_then(|c| c.media.as_ref()) {
                    let _ = media
                        .commands
                        .send(CallMediaCommand::Mute(self.muted))
                        .await;
                }
                self.emit(PhoneEvent::Muted { muted: self.muted });
            }
            Command::Transfer(target) => self.transfer(&target).await,
            Command::Login
            | Command::Logout
            | Command::Ready
            | Command::Pause(_)
            | Command::EndWrapUp => self.agent_control(command).await,
            Command::Status => {
                let registration = self.registration_name();
                let (call, call_state) = match &self.call {
                    Some(c) => (Some(c.call_id.clone()), Some(c.phase.name().to_string())),
                    None => (None, None),
                };
                self.emit(PhoneEvent::Status {
                    registration,
                    call,
                    call_state,
                });
            }
            Command::Quit => {}
        }
    }

    async fn agent_control(&mut self, command: Command) {
        let Some(agent) = &self.agent else {
            // No HTTP API: santral's feature codes (docs/server.md), dialled as an
            // authenticated call that the server confirms with a prompt and hangs up.
            let code = match command {
                Command::Login => "*40",
                Command::Logout => "*41",
                Command::Pause(_) => "*42",
                Command::Ready => "*43",
                _ => {
                    self.emit(PhoneEvent::Error {
                        message: "ending wrap-up needs the server's HTTP API (--http URL --http-token TOKEN)".into(),
                    });
                    return;
                }
            };
            self.dial(code).await;
            return;
        };
        let agent = agent.clone();
        let user = self.config.user.clone();
        match agent.change_state(&user, &command).await {
            Ok(reply) => self.emit(PhoneEvent::AgentState {
                state: reply.state,
                detail: reply.body,
            }),
            Err(error) => self.emit(PhoneEvent::Error {
                message: error.to_string(),
            }),
        }
    }

    fn target_uri(&self, target: &str) -> String {
        if target.starts_with("sip:") {
            target.to_string()
        } else {
            format!("sip:{target}@{}", self.config.server)
        }
    }

    async fn dial(&mut self, target: &str) {
        if self.call.is_some() {
            self.emit(PhoneEvent::Error {
                message: "already in a call".into(),
            });
            return;
        }
        let sockets = match RtpSockets::bind(self.local_ip, &self.ports).await {
            Ok(sockets) => sockets,
            Err(error) => {
                self.emit(PhoneEvent::Error {
                    message: format!("no RTP ports: {error}"),
                });
                return;
            }
        };
        let mut local = LocalMedia::new(self.local_ip, sockets.rtp_port());
        local.codecs = self.config.codecs.clone();
        local.session_id = u64::from(rand::random::<u32>());
        let uri = self.target_uri(target);
        let host = self.server_host();
        let (outgoing, invite) = OutgoingCall::new(CallConfig {
            target: uri.clone(),
            from: format!("sip:{}@{host}", self.config.user),
            to: uri.clone(),
            contact: self.contact.clone(),
            sdp: Some(Bytes::from(sdp::create_offer(&local))),
            credentials: Some(Credentials {
                username: self.config.user.clone(),
                password: self.config.password.clone(),
            }),
        });
        let call_id = outgoing.call_id().to_string();
        let span = tracing::info_span!("call", call_id = %call_id);
        // A sip: URI with a numeric host goes straight there (peer-to-peer, no server needed);
        // numbers go through the server.
        let next_hop = santral_sip::dialog::uri_socket_addr(&uri).unwrap_or(self.config.server);
        let invite_id = match self
            .sip
            .send_request(invite.clone(), self.config.transport, next_hop)
            .await
        {
            Ok(id) => id,
            Err(error) => {
                self.emit(PhoneEvent::Error {
                    message: format!("INVITE not sent: {error}"),
                });
                return;
            }
        };
        span.in_scope(|| info!(%uri, "dialling"));
        self.call = Some(Call {
            call_id: call_id.clone(),
            leg: Leg::Outgoing {
                call: outgoing,
                invite_id,
                sent: invite,
            },
            phase: CallPhase::Calling,
            local,
            sockets: Some(sockets),
            media: None,
            connected_at: None,
            pending_reinvite: None,
            pending_refer: None,
            span,
        });
        self.emit(PhoneEvent::Dialing {
            call_id,
            target: uri,
        });
    }

    async fn reinvite(&mut self, direction: Direction, phase: CallPhase) {
        let Some(call) = self.call.as_mut() else {
            self.emit(PhoneEvent::Error {
                message: "no call".into(),
            });
            return;
        };
        let wanted_from = match phase {
            CallPhase::Held => CallPhase::Connected,
            _ => CallPhase::Held,
        };
        if call.phase != wanted_from || call.pending_reinvite.is_some() {
            let message = format!("cannot do that while the call is {}", call.phase.name());
            self.emit(PhoneEvent::Error { message });
            return;
        }
        call.local.direction = direction;
        call.local.session_version += 1;
        let offer = Bytes::from(sdp::create_offer(&call.local));
        let Some(dialog) = call.dialog_mut() else {
            return;
        };
        let request = dialog.reinvite(offer);
        let seq = request.cseq().map(|(n, _)| n).unwrap_or(0);
        let hop = dialog.next_hop().unwrap_or(self.config.server);
        match self
            .sip
            .send_request(request, self.config.transport, hop)
            .await
        {
            Ok(id) => call.pending_reinvite = Some((id, seq, phase)),
            Err(error) => self.emit(PhoneEvent::Error {
                message: format!("re-INVITE not sent: {error}"),
            }),
        }
    }

    async fn transfer(&mut self, target: &str) {
        let uri = self.target_uri(target);
        let Some(call) = self.call.as_mut() else {
            self.emit(PhoneEvent::Error {
                message: "no call to transfer".into(),
            });
            return;
        };
        if !matches!(call.phase, CallPhase::Connected | CallPhase::Held) {
            self.emit(PhoneEvent::Error {
                message: "only a connected call can be transferred".into(),
            });
            return;
        }
        let Some(dialog) = call.dialog_mut() else {
            return;
        };
        let request = dialog.refer(&uri);
        let hop = dialog.next_hop().unwrap_or(self.config.server);
        match self
            .sip
            .send_request(request, self.config.transport, hop)
            .await
        {
            Ok(id) => call.pending_refer = Some((id, uri)),
            Err(error) => self.emit(PhoneEvent::Error {
                message: format!("REFER not sent: {error}"),
            }),
        }
    }

    async fn hang_up(&mut self) {
        self.hang_up_with("local hangup").await;
    }

    /// Ends the call from our side: reject if ringing, CANCEL if calling, BYE if connected.
    async fn hang_up_with(&mut self, reason: &str) {
        let Some(call) = self.call.as_mut() else {
            self.emit(PhoneEvent::Error {
                message: "no call".into(),
            });
            return;
        };
        let transport = self.config.transport;
        match &mut call.leg {
            Leg::Incoming {
                invite_id,
                invite,
                dialog,
            } if call.phase == CallPhase::Ringing => {
                let busy = dialog.response(invite, 486, "Busy Here");
                let id = *invite_id;
                self.respond(id, busy).await;
                self.end_call("rejected").await;
                return;
            }
            Leg::Outgoing {
                call: outgoing,
                invite_id,
                ..
            } if matches!(outgoing.state(), CallState::Calling | CallState::Early) => {
                outgoing.cancel();
                let id = *invite_id;
                if let Err(error) = self.sip.cancel(id).await {
                    warn!(%error, "CANCEL not sent");
                    self.end_call(reason).await;
                }
                // The call ends when the 487 (or a crossing 2xx, then BYE) comes back.
                return;
            }
            Leg::Outgoing { call: outgoing, .. } => {
                let hop = outgoing
                    .dialog()
                    .and_then(|d| d.next_hop())
                    .unwrap_or(self.config.server);
                if let Some(bye) = outgoing.bye()
                    && let Err(error) = self.sip.send_request(bye, transport, hop).await
                {
                    warn!(%error, "BYE not sent");
                }
            }
            Leg::Incoming { dialog, .. } => {
                let hop = dialog.next_hop().unwrap_or(self.config.server);
                let bye = dialog.request(Method::Bye);
                if let Err(error) = self.sip.send_request(bye, transport, hop).await {
                    warn!(%error, "BYE not sent");
                }
            }
        }
        self.end_call(reason).await;
    }

    /// Forgets the call: stops its media (getting the audio port back) and reports the end.
    async fn end_call(&mut self, reason: &str) {
        self.stop_ringer().await;
        let Some(call) = self.call.take() else {
            return;
        };
        let mut mos = None;
        if let Some(media) = call.media {
            let _ = media.commands.send(CallMediaCommand::Stop).await;
            match media.task.await {
                Ok(end) => {
                    mos = (end.quality.packets_expected > 0).then_some(end.quality.mos);
                    self.audio = Some(end.audio);
                }
                Err(error) => warn!(%error, "media task failed"),
            }
        }
        let duration_secs = call
            .connected_at
            .map(|t| t.elapsed().as_secs_f64())
            .unwrap_or(0.0);
        let device_samples = self
            .audio
            .as_ref()
            .and_then(|a| a.device_counters())
            .map(|(captured, played)| DeviceSamples { captured, played });
        call.span
            .in_scope(|| info!(reason, duration_secs, "call ended"));
        self.emit(PhoneEvent::Ended {
            call_id: call.call_id,
            reason: reason.to_string(),
            duration_secs,
            mos,
            device_samples,
        });
    }
}
