//! The terminal UI (ratatui): what the agent sees and the keys they press. [`PhoneView`] is a
//! plain model fed with [`PhoneEvent`]s and key presses (no terminal inside, time passed in),
//! so it is tested with ratatui's `TestBackend`; [`run_terminal`] is the thin loop around it.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use ratatui::Frame;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};

use crate::audio::QualityReading;
use crate::command::Command;
use crate::event::{PhoneEvent, ScreenPop};

/// Recent calls kept on screen.
const RECENT_CALLS: usize = 5;

/// A line of text the agent is typing for a command that takes an argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prompt {
    Dial(String),
    Transfer(String),
    Pause(String),
}

impl Prompt {
    fn label(&self) -> (&'static str, &str) {
        match self {
            Prompt::Dial(text) => ("Dial", text),
            Prompt::Transfer(text) => ("Transfer to", text),
            Prompt::Pause(text) => ("Pause reason", text),
        }
    }

    fn text_mut(&mut self) -> &mut String {
        match self {
            Prompt::Dial(text) | Prompt::Transfer(text) | Prompt::Pause(text) => text,
        }
    }
}

#[derive(Debug, Clone)]
struct CurrentCall {
    incoming: bool,
    peer: String,
    screen_pop: Option<ScreenPop>,
    phase: &'static str,
    codec: Option<String>,
    connected_at: Option<Instant>,
    crm_url: Option<String>,
}

#[derive(Debug, Clone)]
struct RecentCall {
    peer: String,
    queue: Option<String>,
    duration: Duration,
    reason: String,
    mos: Option<f64>,
}

/// Everything the screen shows.
#[derive(Debug, Clone)]
pub struct PhoneView {
    user: String,
    server: String,
    registration: String,
    agent_state: Option<(String, Instant)>,
    call: Option<CurrentCall>,
    muted: bool,
    recent: VecDeque<RecentCall>,
    message: Option<String>,
    prompt: Option<Prompt>,
    input_level: f32,
    quality: Option<QualityReading>,
}

fn clock(duration: Duration) -> String {
    let secs = duration.as_secs();
    if secs >= 3600 {
        format!("{}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
    } else {
        format!("{:02}:{:02}", secs / 60, secs % 60)
    }
}

impl PhoneView {
    pub fn new(user: &str, server: &str) -> PhoneView {
        PhoneView {
            user: user.to_string(),
            server: server.to_string(),
            registration: "starting".into(),
            agent_state: None,
            call: None,
            muted: false,
            recent: VecDeque::new(),
            message: None,
            prompt: None,
            input_level: 0.0,
            quality: None,
        }
    }

    /// Takes in one phone event at `now`.
    pub fn apply(&mut self, event: &PhoneEvent, now: Instant) {
        match event {
            PhoneEvent::Started { .. } | PhoneEvent::Stopped => {}
            PhoneEvent::Registering => self.registration = "registering".into(),
            PhoneEvent::Registered { expires } => {
                self.registration = format!("registered ({expires} s)")
            }
            PhoneEvent::RegistrationFailed { status } => {
                self.registration = format!("failed ({status}), retrying")
            }
            PhoneEvent::Unregistered => self.registration = "unregistered".into(),
            PhoneEvent::ServerUnreachable => self.registration = "server unreachable".into(),
            PhoneEvent::ServerReachable => self.registration = "server back, registering".into(),
            PhoneEvent::IncomingCall {
                screen_pop,
                crm_url,
                ..
            } => {
                self.call = Some(CurrentCall {
                    incoming: true,
                    peer: screen_pop.caller_number(),
                    screen_pop: Some(screen_pop.clone()),
                    phase: "ringing",
                    codec: None,
                    connected_at: None,
                    crm_url: crm_url.clone(),
                });
            }
            PhoneEvent::Dialing { target, .. } => {
                self.call = Some(CurrentCall {
                    incoming: false,
                    peer: target.clone(),
                    screen_pop: None,
                    phase: "calling",
                    codec: None,
                    connected_at: None,
                    crm_url: None,
                });
            }
            PhoneEvent::Progress { status, .. } => {
                if let Some(call) = &mut self.call
                    && (180..190).contains(status)
                {
                    call.phase = "ringing";
                }
            }
            PhoneEvent::Answered { codec, .. } => {
                if let Some(call) = &mut self.call {
                    call.phase = "connected";
                    call.codec = Some(codec.clone());
                    call.connected_at = Some(now);
                }
            }
            PhoneEvent::Held { .. } => self.set_phase("on hold"),
            PhoneEvent::Resumed { .. } => self.set_phase("connected"),
            PhoneEvent::Muted { muted } => self.muted = *muted,
            PhoneEvent::DtmfSent { digits } => self.message = Some(format!("sent DTMF {digits}")),
            PhoneEvent::DtmfReceived { digit } => {
                self.message = Some(format!("received DTMF {digit}"))
            }
            PhoneEvent::TransferAccepted { target, .. } => {
                self.message = Some(format!("transferred to {target}"))
            }
            PhoneEvent::TransferFailed { status, .. } => {
                self.message = Some(format!("transfer refused ({status})"))
            }
            PhoneEvent::Ended {
                reason,
                duration_secs,
                mos,
                ..
            } => {
                if let Some(call) = self.call.take() {
                    self.recent.push_front(RecentCall {
                        peer: call.peer,
                        queue: call.screen_pop.and_then(|p| p.queue),
                        duration: Duration::from_secs_f64(duration_secs.max(0.0)),
                        reason: reason.clone(),
                        mos: *mos,
                    });
                    self.recent.truncate(RECENT_CALLS);
                }
            }
            PhoneEvent::AgentState { state, .. } => {
                self.agent_state = Some((state.clone(), now));
            }
            PhoneEvent::Status { .. } => {}
            PhoneEvent::Error { message } => self.message = Some(message.clone()),
        }
    }

    /// The microphone's current peak level, 0.0–1.0 (shown as a meter during calls).
    pub fn set_input_level(&mut self, level: f32) {
        self.input_level = level.clamp(0.0, 1.0);
    }

    /// The running call's quality, when the media has measured it.
    pub fn set_quality(&mut self, quality: Option<QualityReading>) {
        self.quality = quality;
    }

    fn set_phase(&mut self, phase: &'static str) {
        if let Some(call) = &mut self.call {
            call.phase = phase;
        }
    }

    /// A key press: a command to run, or `None` (typing into a prompt, or an unbound key).
    pub fn handle_key(&mut self, key: KeyEvent) -> Option<Command> {
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return Some(Command::Quit);
        }
        if let Some(prompt) = &mut self.prompt {
            match key.code {
                KeyCode::Esc => self.prompt = None,
                KeyCode::Backspace => {
                    prompt.text_mut().pop();
                }
                KeyCode::Char(c) if prompt.text_mut().len() < 64 => prompt.text_mut().push(c),
                KeyCode::Enter => {
                    let line = match self.prompt.take()? {
                        Prompt::Dial(text) => format!("dial {text}"),
                        Prompt::Transfer(text) => format!("transfer {text}"),
                        Prompt::Pause(text) => format!("pause {text}"),
                    };
                    return match Command::parse(&line) {
                        Ok(command) => Some(command),
                        Err(error) => {
                            self.message = Some(error.to_string());
                            None
                        }
                    };
                }
                _ => {}
            }
            return None;
        }
        let connected = self
            .call
            .as_ref()
            .is_some_and(|c| c.phase == "connected" || c.phase == "on hold");
        match key.code {
            KeyCode::Char(c @ ('0'..='9' | '*' | '#')) if connected => {
                Command::parse(&format!("dtmf {c}")).ok()
            }
            KeyCode::Char('a') => Some(Command::Answer),
            KeyCode::Char('h') => Some(Command::Hangup),
            KeyCode::Char('o') => Some(match self.call.as_ref().map(|c| c.phase) {
                Some("on hold") => Command::Resume,
                _ => Command::Hold,
            }),
            KeyCode::Char('m') => Some(if self.muted {
                Command::Unmute
            } else {
                Command::Mute
            }),
            KeyCode::Char('r') => Some(Command::Ready),
            KeyCode::Char('w') => Some(Command::EndWrapUp),
            KeyCode::Char('q') => Some(Command::Quit),
            KeyCode::Char('d') => {
                self.prompt = Some(Prompt::Dial(String::new()));
                None
            }
            KeyCode::Char('t') => {
                self.prompt = Some(Prompt::Transfer(String::new()));
                None
            }
            KeyCode::Char('p') => {
                self.prompt = Some(Prompt::Pause(String::new()));
                None
            }
            _ => None,
        }
    }

    /// Draws the whole screen as of `now`.
    pub fn render(&self, frame: &mut Frame, now: Instant) {
        let [status, call, recent, keys, prompt] = Layout::vertical([
            Constraint::Length(4),
            Constraint::Length(7),
            Constraint::Min(3),
            Constraint::Length(1),
            Constraint::Length(1),
        ])
        .areas(frame.area());

        let agent = match &self.agent_state {
            Some((state, since)) => {
                format!(
                    "{state} for {}",
                    clock(now.saturating_duration_since(*since))
                )
            }
            None => "unknown (r: ready, p: pause)".into(),
        };
        let status_lines = vec![
            Line::from(vec![
                Span::raw("Registration: "),
                Span::styled(
                    self.registration.clone(),
                    Style::default().add_modifier(Modifier::BOLD),
                ),
                Span::raw(format!("  server {}", self.server)),
            ]),
            Line::from(format!("Agent: {agent}")),
        ];
        frame.render_widget(
            Paragraph::new(status_lines)
                .block(Block::bordered().title(format!(" santral-phone · agent {} ", self.user))),
            status,
        );

        let call_lines = match &self.call {
            None => vec![Line::from("No call.")],
            Some(c) => {
                let duration = c
                    .connected_at
                    .map(|t| clock(now.saturating_duration_since(t)))
                    .unwrap_or_else(|| "--:--".into());
                let direction = if c.incoming { "from" } else { "to" };
                let mut lines = vec![Line::from(vec![
                    Span::styled(
                        c.phase.to_uppercase(),
                        Style::default()
                            .fg(if c.phase == "ringing" {
                                Color::Yellow
                            } else {
                                Color::Green
                            })
                            .add_modifier(Modifier::BOLD),
                    ),
                    Span::raw(format!(
                        " {direction} {}  {duration}  {}{}",
                        c.peer,
                        c.codec.as_deref().unwrap_or(""),
                        if self.muted { "  MUTED" } else { "" }
                    )),
                ])];
                if let Some(pop) = &c.screen_pop {
                    let wait = pop
                        .wait_secs
                        .map(|w| format!("  waited {w} s"))
                        .unwrap_or_default();
                    lines.push(Line::from(format!(
                        "Queue: {}{wait}  Customer: {}",
                        pop.queue.as_deref().unwrap_or("-"),
                        pop.customer.as_deref().unwrap_or("not verified")
                    )));
                    lines.push(Line::from(format!(
                        "IVR: {}",
                        pop.ivr_path.as_deref().unwrap_or("-")
                    )));
                }
                if c.connected_at.is_some() {
                    // Ten steps of 10 %: enough to see that the headset picks the voice up.
                    let bars = (self.input_level * 10.0).round() as usize;
                    let quality = self
                        .quality
                        .map(|q| {
                            format!(
                                "  Quality: MOS {:.1}, loss {:.1} %, jitter {:.1} ms",
                                q.mos, q.loss_percent, q.jitter_ms
                            )
                        })
                        .unwrap_or_default();
                    lines.push(Line::from(format!(
                        "Mic: [{}{}]{quality}",
                        "#".repeat(bars.min(10)),
                        " ".repeat(10 - bars.min(10))
                    )));
                }
                if let Some(url) = &c.crm_url {
                    lines.push(Line::from(format!("CRM: {url}")));
                }
                lines
            }
        };
        frame.render_widget(
            Paragraph::new(call_lines).block(Block::bordered().title(" Call ")),
            call,
        );

        let recent_lines: Vec<Line> = if self.recent.is_empty() {
            vec![Line::from("None yet.")]
        } else {
            self.recent
                .iter()
                .map(|r| {
                    let mos = r.mos.map(|m| format!("  MOS {m:.1}")).unwrap_or_default();
                    Line::from(format!(
                        "{}  {}  {}  {}{mos}",
                        r.peer,
                        r.queue.as_deref().unwrap_or("-"),
                        clock(r.duration),
                        r.reason
                    ))
                })
                .collect()
        };
        frame.render_widget(
            Paragraph::new(recent_lines).block(Block::bordered().title(" Recent calls ")),
            recent,
        );

        frame.render_widget(
            Paragraph::new(
                "a:answer h:hangup d:dial o:hold m:mute t:xfer r:ready p:pause w:wrapup q:quit",
            )
            .style(Style::default().fg(Color::Cyan)),
            keys,
        );
        let bottom = match &self.prompt {
            Some(prompt) => {
                let (label, text) = prompt.label();
                format!("{label}: {text}_  (Enter / Esc)")
            }
            None => self.message.clone().unwrap_or_default(),
        };
        frame.render_widget(Paragraph::new(bottom), prompt);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    /// The rendered buffer's text, line by line (styles are checked separately).
    fn screen(view: &PhoneView, now: Instant) -> Vec<String> {
        let mut terminal = Terminal::new(TestBackend::new(80, 16)).unwrap();
        terminal.draw(|frame| view.render(frame, now)).unwrap();
        let buffer = terminal.backend().buffer();
        (0..buffer.area.height)
            .map(|y| {
                (0..buffer.area.width)
                    .map(|x| buffer[(x, y)].symbol())
                    .collect::<String>()
            })
            .collect()
    }

    #[test]
    fn connected_queue_call_screen() {
        let t0 = Instant::now();
        let mut view = PhoneView::new("2001", "127.0.0.1:5060");
        view.apply(&PhoneEvent::Registered { expires: 300 }, t0);
        view.apply(
            &PhoneEvent::AgentState {
                state: "available".into(),
                detail: String::new(),
            },
            t0,
        );
        view.apply(
            &PhoneEvent::Ended {
                call_id: "old".into(),
                reason: "remote hangup".into(),
                duration_secs: 61.0,
                mos: Some(4.4),
                device_samples: None,
            },
            t0,
        ); // no call on screen: nothing recorded
        view.apply(
            &PhoneEvent::IncomingCall {
                call_id: "c1".into(),
                screen_pop: ScreenPop {
                    from: "\"Customer\" <sip:05321234567@127.0.0.1>".into(),
                    caller: Some("05321234567".into()),
                    queue: Some("billing".into()),
                    ivr_path: Some("hours,welcome,menu,billing".into()),
                    customer: None,
                    wait_secs: Some(7),
                    server_call_id: None,
                },
                crm_url: Some("https://crm.example/?n=05321234567".into()),
            },
            t0,
        );
        view.apply(
            &PhoneEvent::Answered {
                call_id: "c1".into(),
                codec: "PCMA".into(),
                remote_rtp: "127.0.0.1:10000".into(),
            },
            t0 + Duration::from_secs(2),
        );
        view.set_input_level(0.42);
        view.set_quality(Some(QualityReading {
            mos: 4.38,
            loss_percent: 0.5,
            jitter_ms: 1.25,
        }));
        let lines = screen(&view, t0 + Duration::from_secs(65));
        assert_eq!(
            lines,
            [
                "┌ santral-phone · agent 2001 ──────────────────────────────────────────────────┐",
                "│Registration: registered (300 s)  server 127.0.0.1:5060                       │",
                "│Agent: available for 01:05                                                    │",
                "└──────────────────────────────────────────────────────────────────────────────┘",
                "┌ Call ────────────────────────────────────────────────────────────────────────┐",
                "│CONNECTED from 05321234567  01:03  PCMA                                       │",
                "│Queue: billing  waited 7 s  Customer: not verified                            │",
                "│IVR: hours,welcome,menu,billing                                               │",
                "│Mic: [####      ]  Quality: MOS 4.4, loss 0.5 %, jitter 1.2 ms                │",
                "│CRM: https://crm.example/?n=05321234567                                       │",
                "└──────────────────────────────────────────────────────────────────────────────┘",
                "┌ Recent calls ────────────────────────────────────────────────────────────────┐",
                "│None yet.                                                                     │",
                "└──────────────────────────────────────────────────────────────────────────────┘",
                "a:answer h:hangup d:dial o:hold m:mute t:xfer r:ready p:pause w:wrapup q:quit   ",
                "                                                                                ",
            ]
        );
    }

    #[test]
    fn idle_screen_with_recent_calls_and_a_dial_prompt() {
        let t0 = Instant::now();
        let mut view = PhoneView::new("2002", "127.0.0.1:5060");
        view.apply(&PhoneEvent::RegistrationFailed { status: 403 }, t0);
        view.apply(
            &PhoneEvent::Dialing {
                call_id: "c2".into(),
                target: "sip:1000@127.0.0.1:5060".into(),
            },
            t0,
        );
        view.apply(
            &PhoneEvent::Ended {
                call_id: "c2".into(),
                reason: "failed 486".into(),
                duration_secs: 0.0,
                mos: None,
                device_samples: None,
            },
            t0,
        );
        assert_eq!(view.handle_key(key(KeyCode::Char('d'))), None);
        for c in "1000".chars() {
            assert_eq!(view.handle_key(key(KeyCode::Char(c))), None);
        }
        let lines = screen(&view, t0);
        assert_eq!(
            lines,
            [
                "┌ santral-phone · agent 2002 ──────────────────────────────────────────────────┐",
                "│Registration: failed (403), retrying  server 127.0.0.1:5060                   │",
                "│Agent: unknown (r: ready, p: pause)                                           │",
                "└──────────────────────────────────────────────────────────────────────────────┘",
                "┌ Call ────────────────────────────────────────────────────────────────────────┐",
                "│No call.                                                                      │",
                "│                                                                              │",
                "│                                                                              │",
                "│                                                                              │",
                "│                                                                              │",
                "└──────────────────────────────────────────────────────────────────────────────┘",
                "┌ Recent calls ────────────────────────────────────────────────────────────────┐",
                "│sip:1000@127.0.0.1:5060  -  00:00  failed 486                                 │",
                "└──────────────────────────────────────────────────────────────────────────────┘",
                "a:answer h:hangup d:dial o:hold m:mute t:xfer r:ready p:pause w:wrapup q:quit   ",
                "Dial: 1000_  (Enter / Esc)                                                      ",
            ]
        );
        assert_eq!(
            view.handle_key(key(KeyCode::Enter)),
            Some(Command::Dial("1000".into()))
        );
    }

    #[test]
    fn keys_map_to_commands() {
        let t0 = Instant::now();
        let mut view = PhoneView::new("2001", "s");
        assert_eq!(
            view.handle_key(key(KeyCode::Char('a'))),
            Some(Command::Answer)
        );
        assert_eq!(view.handle_key(key(KeyCode::Char('5'))), None); // no call: no DTMF
        view.apply(
            &PhoneEvent::Dialing {
                call_id: "c".into(),
                target: "sip:1000@s".into(),
            },
            t0,
        );
        view.apply(
            &PhoneEvent::Answered {
                call_id: "c".into(),
                codec: "PCMU".into(),
                remote_rtp: "127.0.0.1:1".into(),
            },
            t0,
        );
        assert!(matches!(
            view.handle_key(key(KeyCode::Char('5'))),
            Some(Command::Dtmf(d)) if d.len() == 1
        ));
        assert_eq!(
            view.handle_key(key(KeyCode::Char('o'))),
            Some(Command::Hold)
        );
        view.apply(
            &PhoneEvent::Held {
                call_id: "c".into(),
            },
            t0,
        );
        assert_eq!(
            view.handle_key(key(KeyCode::Char('o'))),
            Some(Command::Resume)
        );
        view.handle_key(key(KeyCode::Char('p')));
        for c in "lunch".chars() {
            view.handle_key(key(KeyCode::Char(c)));
        }
        assert_eq!(
            view.handle_key(key(KeyCode::Enter)),
            Some(Command::Pause("lunch".into()))
        );
        view.handle_key(key(KeyCode::Char('t')));
        view.handle_key(key(KeyCode::Esc));
        assert_eq!(
            view.handle_key(key(KeyCode::Char('q'))),
            Some(Command::Quit)
        );
        assert_eq!(
            view.handle_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Some(Command::Quit)
        );
    }
}
