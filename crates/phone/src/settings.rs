//! The phone's settings: command line over the config file (`--config`, else
//! ~/.config/santral/phone.yaml when it exists). Passwords and tokens are never printed.

use std::path::{Path, PathBuf};

use clap::Parser;
use serde::Deserialize;
use thiserror::Error;

/// santral-phone: the santral agent softphone.
#[derive(Debug, Clone, Default, Parser)]
#[command(name = "santral-phone", version, about)]
pub struct Cli {
    /// The SIP server (registrar and proxy), HOST:PORT.
    #[arg(long)]
    pub server: Option<String>,
    /// Agent / SIP user name.
    #[arg(long)]
    pub user: Option<String>,
    /// SIP password (or SANTRAL_PHONE_PASSWORD; never printed).
    #[arg(long, env = "SANTRAL_PHONE_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Answer incoming calls at once.
    #[arg(long)]
    pub auto_answer: bool,
    /// device | null | file:IN.wav,OUT.wav
    #[arg(long)]
    pub audio: Option<String>,
    /// Capture device name (see --list-devices).
    #[arg(long)]
    pub input: Option<String>,
    /// Playback device name (see --list-devices).
    #[arg(long)]
    pub output: Option<String>,
    /// List sound devices and exit.
    #[arg(long)]
    pub list_devices: bool,
    /// Line mode: read commands on stdin, print events as JSON lines.
    #[arg(long)]
    pub no_tui: bool,
    /// Config file (default ~/.config/santral/phone.yaml when present).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Local SIP address to bind (default 127.0.0.1:0).
    #[arg(long)]
    pub bind: Option<String>,
    /// udp or tcp.
    #[arg(long)]
    pub transport: Option<String>,
    /// Do not register (a caller-only phone).
    #[arg(long)]
    pub no_register: bool,
    /// Registration expiry to ask for, seconds.
    #[arg(long)]
    pub expires: Option<u32>,
    /// The server's HTTP API for agent controls, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    pub http: Option<String>,
    /// Bearer token for the HTTP API (or SANTRAL_PHONE_HTTP_TOKEN; never printed).
    #[arg(long, env = "SANTRAL_PHONE_HTTP_TOKEN", hide_env_values = true)]
    pub http_token: Option<String>,
    /// CRM URL template opened on incoming calls; `{caller}` is the caller's number.
    #[arg(long)]
    pub crm_url: Option<String>,
    /// Program run with the filled CRM URL as its one argument on each incoming call
    /// (e.g. xdg-open); no shell is involved.
    #[arg(long)]
    pub crm_command: Option<String>,
    /// RTP port range, FIRST-LAST.
    #[arg(long)]
    pub rtp_ports: Option<String>,
    /// Codecs offered and accepted, in order of preference (comma-separated: pcmu, pcma,
    /// g722).
    #[arg(long)]
    pub codecs: Option<String>,
    /// Seconds between keepalive OPTIONS to the server (0: none). A server that stops
    /// answering and comes back (restart, network loss) gets a new REGISTER at once.
    #[arg(long)]
    pub keepalive: Option<u64>,
}

/// The config file: the same settings as the command line.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct FileSettings {
    pub server: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub auto_answer: Option<bool>,
    /// Quote `"null"`: a bare `null` is YAML's null, i.e. not set.
    pub audio: Option<String>,
    pub input: Option<String>,
    pub output: Option<String>,
    pub bind: Option<String>,
    pub transport: Option<String>,
    pub register: Option<bool>,
    pub expires: Option<u32>,
    pub http: Option<String>,
    pub http_token: Option<String>,
    pub crm_url: Option<String>,
    pub crm_command: Option<String>,
    pub rtp_ports: Option<String>,
    pub codecs: Option<String>,
    pub keepalive: Option<u64>,
}

#[derive(Debug, Error)]
pub enum SettingsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
}

impl FileSettings {
    pub fn load(path: &Path) -> Result<FileSettings, SettingsError> {
        let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        serde_saphyr::from_str(&text).map_err(|e| SettingsError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// `--config`, else the per-user file when it exists, else nothing.
    pub fn find(explicit: Option<&Path>) -> Result<FileSettings, SettingsError> {
        if let Some(path) = explicit {
            return FileSettings::load(path);
        }
        let default = std::env::var_os("HOME")
            .map(|home| PathBuf::from(home).join(".config/santral/phone.yaml"));
        match default {
            Some(path) if path.exists() => FileSettings::load(&path),
            _ => Ok(FileSettings::default()),
        }
    }
}

/// Command line over file: every setting resolved.
#[derive(Clone)]
pub struct Settings {
    pub server: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub auto_answer: bool,
    pub audio: String,
    pub input: Option<String>,
    pub output: Option<String>,
    pub bind: String,
    pub transport: String,
    pub register: bool,
    pub expires: u32,
    pub http: Option<String>,
    pub http_token: Option<String>,
    pub crm_url: Option<String>,
    pub crm_command: Option<String>,
    pub rtp_ports: String,
    pub codecs: String,
    pub keepalive_secs: u64,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |v: &Option<String>| v.as_ref().map(|_| "<hidden>");
        f.debug_struct("Settings")
            .field("server", &self.server)
            .field("user", &self.user)
            .field("password", &hidden(&self.password))
            .field("auto_answer", &self.auto_answer)
            .field("audio", &self.audio)
            .field("bind", &self.bind)
            .field("transport", &self.transport)
            .field("register", &self.register)
            .field("http", &self.http)
            .field("http_token", &hidden(&self.http_token))
            .finish_non_exhaustive()
    }
}

impl Settings {
    pub fn merge(cli: Cli, file: FileSettings) -> Settings {
        Settings {
            server: cli.server.or(file.server),
            user: cli.user.or(file.user),
            password: cli.password.or(file.password),
            auto_answer: cli.auto_answer || file.auto_answer.unwrap_or(false),
            audio: cli.audio.or(file.audio).unwrap_or_else(|| "device".into()),
            input: cli.input.or(file.input),
            output: cli.output.or(file.output),
            bind: cli
                .bind
                .or(file.bind)
                .unwrap_or_else(|| "127.0.0.1:0".into()),
            transport: cli
                .transport
                .or(file.transport)
                .unwrap_or_else(|| "udp".into()),
            register: !cli.no_register && file.register.unwrap_or(true),
            expires: cli.expires.or(file.expires).unwrap_or(300),
            http: cli.http.or(file.http),
            http_token: cli.http_token.or(file.http_token),
            crm_url: cli.crm_url.or(file.crm_url),
            crm_command: cli.crm_command.or(file.crm_command),
            rtp_ports: cli
                .rtp_ports
                .or(file.rtp_ports)
                .unwrap_or_else(|| "30000-39999".into()),
            codecs: cli
                .codecs
                .or(file.codecs)
                .unwrap_or_else(|| "pcmu,pcma,g722".into()),
            keepalive_secs: cli.keepalive.or(file.keepalive).unwrap_or(30),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_wins_over_the_file_and_secrets_stay_hidden() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("phone.yaml");
        std::fs::write(
            &path,
            "server: 127.0.0.1:5060\nuser: \"2001\"\npassword: secret2001\nauto_answer: true\n\
             audio: \"null\"\nhttp_token: tok\n",
        )
        .unwrap();
        let file = FileSettings::find(Some(&path)).unwrap();
        let cli = Cli::parse_from(["santral-phone", "--user", "2002", "--no-tui"]);
        let settings = Settings::merge(cli, file);
        assert_eq!(settings.server.as_deref(), Some("127.0.0.1:5060"));
        assert_eq!(settings.user.as_deref(), Some("2002"));
        assert_eq!(settings.password.as_deref(), Some("secret2001"));
        assert!(settings.auto_answer);
        assert_eq!(settings.audio, "null");
        assert!(settings.register);
        let shown = format!("{settings:?}");
        assert!(
            !shown.contains("secret2001") && !shown.contains("tok\""),
            "{shown}"
        );
    }

    #[test]
    fn a_bad_config_file_names_itself() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("phone.yaml");
        std::fs::write(&path, "servr: x\n").unwrap();
        let error = FileSettings::load(&path).unwrap_err().to_string();
        assert!(error.contains("phone.yaml"), "{error}");
    }
}
