//! `santral-phone`: the agent softphone binary.

use std::io::{BufRead, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use santral_phone::agent_control::AgentControl;
use santral_phone::audio::{AudioMode, AudioPort, FileAudio, NullAudio};
use santral_phone::command::Command;
use santral_phone::event::PhoneEvent;
use santral_phone::screen::PhoneView;
use santral_phone::settings::{Cli, FileSettings, Settings};
use santral_phone::user_agent::{UserAgent, UserAgentConfig};
use santral_sip::TransportKind;
use tokio::sync::mpsc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Logs go to stderr; under the full-screen UI only when asked for (RUST_LOG).
    let default_filter = if cli.no_tui || cli.list_devices {
        "warn"
    } else {
        "off"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .init();
    if cli.list_devices {
        return list_devices();
    }
    let no_tui = cli.no_tui;
    let file = FileSettings::find(cli.config.as_deref())?;
    let settings = Settings::merge(cli, file);
    let runtime = tokio::runtime::Runtime::new().context("cannot start the tokio runtime")?;
    runtime.block_on(run(settings, no_tui))
}

#[cfg(feature = "device")]
fn list_devices() -> anyhow::Result<()> {
    for device in santral_phone::device::list_devices()? {
        println!("{device}");
    }
    Ok(())
}

#[cfg(not(feature = "device"))]
fn list_devices() -> anyhow::Result<()> {
    bail!("this santral-phone was built without the `device` feature (no sound card support)")
}

fn resolve(server: &str) -> anyhow::Result<SocketAddr> {
    server
        .to_socket_addrs()
        .with_context(|| format!("--server {server:?} is not HOST:PORT"))?
        .next()
        .with_context(|| format!("--server {server:?} has no address"))
}

fn parse_ports(text: &str) -> anyhow::Result<std::ops::RangeInclusive<u16>> {
    let (first, last) = text
        .split_once('-')
        .with_context(|| format!("--rtp-ports {text:?} must be FIRST-LAST"))?;
    let first: u16 = first.trim().parse().context("--rtp-ports: first port")?;
    let last: u16 = last.trim().parse().context("--rtp-ports: last port")?;
    Ok(first..=last)
}

fn parse_codecs(text: &str) -> anyhow::Result<Vec<santral_media::Codec>> {
    let mut codecs = Vec::new();
    for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let codec = match name.to_ascii_lowercase().as_str() {
            "pcmu" => santral_media::Codec::Pcmu,
            "pcma" => santral_media::Codec::Pcma,
            "g722" => santral_media::Codec::G722,
            other => bail!("--codecs: unknown codec {other:?} (pcmu, pcma, g722)"),
        };
        if !codecs.contains(&codec) {
            codecs.push(codec);
        }
    }
    if codecs.is_empty() {
        bail!("--codecs names no codec");
    }
    Ok(codecs)
}

fn open_audio(settings: &Settings) -> anyhow::Result<Box<dyn AudioPort>> {
    let mode: AudioMode = settings.audio.parse()?;
    Ok(match mode {
        AudioMode::Null => Box::new(NullAudio),
        AudioMode::File { input, output } => Box::new(FileAudio::open(&input, &output)?),
        AudioMode::Device => open_device(settings)?,
    })
}

#[cfg(feature = "device")]
fn open_device(settings: &Settings) -> anyhow::Result<Box<dyn AudioPort>> {
    Ok(Box::new(santral_phone::device::DeviceAudio::open(
        settings.input.as_deref(),
        settings.output.as_deref(),
    )?))
}

#[cfg(not(feature = "device"))]
fn open_device(_settings: &Settings) -> anyhow::Result<Box<dyn AudioPort>> {
    bail!("built without sound card support: use --audio null or --audio file:IN.wav,OUT.wav")
}

async fn run(settings: Settings, no_tui: bool) -> anyhow::Result<()> {
    let Some(server) = settings.server.as_deref() else {
        bail!("--server HOST:PORT is required (or `server:` in the config file)");
    };
    let Some(user) = settings.user.clone() else {
        bail!("--user is required (or `user:` in the config file)");
    };
    let server = resolve(server)?;
    let transport = match settings.transport.as_str() {
        "udp" => TransportKind::Udp,
        "tcp" => TransportKind::Tcp,
        other => bail!("--transport must be udp or tcp, not {other:?}"),
    };
    let bind: SocketAddr = settings
        .bind
        .parse()
        .with_context(|| format!("--bind {:?} is not IP:PORT", settings.bind))?;
    let agent = match (&settings.http, &settings.http_token) {
        (Some(url), Some(token)) => Some(AgentControl::new(url, token)?),
        (Some(_), None) => bail!("--http needs --http-token"),
        _ => None,
    };
    let audio = open_audio(&settings)?;
    let config = UserAgentConfig {
        server,
        transport,
        bind,
        user: user.clone(),
        password: settings.password.clone().unwrap_or_default(),
        register: settings.register,
        expires: settings.expires,
        retry_after: Duration::from_secs(5),
        auto_answer: settings.auto_answer,
        crm_url: settings.crm_url.clone(),
        crm_command: settings.crm_command.clone(),
        rtp_ports: parse_ports(&settings.rtp_ports)?,
        codecs: parse_codecs(&settings.codecs)?,
        keepalive: (settings.keepalive_secs > 0)
            .then(|| Duration::from_secs(settings.keepalive_secs)),
    };
    let (event_tx, mut events) = mpsc::unbounded_channel();
    let phone = UserAgent::start(config, audio, agent, event_tx.clone()).await?;
    let _ = event_tx.send(PhoneEvent::Started {
        user,
        server: server.to_string(),
        contact: phone.contact().to_string(),
        audio: settings.audio.clone(),
    });
    let (command_tx, commands) = mpsc::channel(32);
    if !no_tui {
        drop(event_tx);
        let view = PhoneView::new(
            &settings.user.clone().unwrap_or_default(),
            &server.to_string(),
        );
        return run_terminal(phone, view, events, command_tx, commands).await;
    }
    // stdin is blocking: read it on its own thread.
    let errors = event_tx.clone();
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            let Ok(line) = line else { break };
            if line.trim().is_empty() {
                continue;
            }
            match Command::parse(&line) {
                Ok(command) => {
                    if command_tx.blocking_send(command).is_err() {
                        return;
                    }
                }
                Err(error) => {
                    let _ = errors.send(PhoneEvent::Error {
                        message: error.to_string(),
                    });
                }
            }
        }
        // End of input: stop the phone as `quit` would.
        let _ = command_tx.blocking_send(Command::Quit);
    });
    drop(event_tx);
    let print = async move {
        let mut stdout = std::io::stdout();
        while let Some(event) = events.recv().await {
            let _ = writeln!(stdout, "{}", event.to_json_line());
            let _ = stdout.flush();
            // The stdin thread still holds a sender: stop on the phone's last word.
            if event == PhoneEvent::Stopped {
                break;
            }
        }
    };
    // The user agent owns the (Send, not Sync) audio port: run it on this task, not spawned.
    tokio::join!(phone.run(commands), print);
    Ok(())
}

/// The full-screen UI: keys from a reader thread, events from the phone, a redraw at least
/// every 250 ms (call and state timers).
async fn run_terminal(
    phone: UserAgent,
    mut view: PhoneView,
    mut events: mpsc::UnboundedReceiver<PhoneEvent>,
    command_tx: mpsc::Sender<Command>,
    commands: mpsc::Receiver<Command>,
) -> anyhow::Result<()> {
    use ratatui::crossterm::event::{self, Event, KeyEventKind};
    let level = phone.level_meter();
    let quality = phone.quality_gauge();
    let mut terminal = ratatui::try_init().context("cannot set up the terminal (try --no-tui)")?;
    let (key_tx, mut keys) = mpsc::channel(32);
    std::thread::spawn(move || {
        while let Ok(event) = event::read() {
            if let Event::Key(key) = event
                && key.kind == KeyEventKind::Press
                && key_tx.blocking_send(key).is_err()
            {
                return;
            }
        }
    });
    let ui = async {
        let mut redraw = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                event = events.recv() => {
                    let Some(event) = event else { break };
                    let stopped = event == PhoneEvent::Stopped;
                    view.apply(&event, std::time::Instant::now());
                    if stopped {
                        break;
                    }
                }
                Some(key) = keys.recv() => {
                    if let Some(command) = view.handle_key(key) {
                        let _ = command_tx.send(command).await;
                    }
                }
                _ = redraw.tick() => {}
            }
            let now = std::time::Instant::now();
            view.set_input_level(level.get());
            view.set_quality(quality.get());
            if let Err(error) = terminal.draw(|frame| view.render(frame, now)) {
                tracing::warn!(%error, "cannot draw");
                let _ = command_tx.send(Command::Quit).await;
            }
        }
    };
    tokio::join!(phone.run(commands), ui);
    ratatui::try_restore().context("cannot restore the terminal")?;
    Ok(())
}
