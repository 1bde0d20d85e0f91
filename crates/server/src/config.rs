//! Typed configuration of a santral node.
//!
//! `config/santral.yaml` is compiled into the binary and is the one source of the defaults:
//! every section's `Default` is that section of the embedded file. A file given with
//! `--config` is read over those defaults — a section or field it leaves out keeps its
//! embedded value, a list it gives (listen addresses, accounts, queues, hotlines) replaces
//! the embedded list whole.
//!
//! Errors name the place: `file:line:col: message`, both for YAML the parser rejects and for
//! values that parse but do not make sense together (a duplicate agent id, say).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The embedded demo configuration (the repository's config/santral.yaml).
pub const EMBEDDED_YAML: &str = include_str!("../../../config/santral.yaml");
/// How errors in the embedded file are named.
pub const EMBEDDED_NAME: &str = "config/santral.yaml";

/// The passwords of the demo accounts: public, so never to be used off loopback.
const DEMO_PASSWORDS: [&str; 4] = ["secret2001", "secret2002", "secret2003", "secret2004"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_sip")]
    pub sip: SipConfig,
    #[serde(default = "default_http")]
    pub http: HttpConfig,
    #[serde(default = "default_media")]
    pub media: MediaConfig,
    #[serde(default = "default_storage")]
    pub storage: StorageConfig,
    #[serde(default = "default_flows")]
    pub flows: FlowsConfig,
    #[serde(default = "default_prompts")]
    pub prompts: PromptsConfig,
    /// Numbers callers dial, each running an IVR flow.
    #[serde(default = "default_hotlines")]
    pub hotlines: Vec<Hotline>,
    #[serde(default = "default_agents")]
    pub agents: AgentsConfig,
    #[serde(default = "default_queues")]
    pub queues: Vec<QueueConfig>,
    #[serde(default = "default_shutdown")]
    pub shutdown: ShutdownConfig,
    #[serde(default = "default_overload")]
    pub overload: OverloadConfig,
    #[serde(default = "default_recording")]
    pub recording: RecordingConfig,
}

/// Which answered calls are recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordingConfig {
    /// For queues not listed below: `all`, `none` or a percentage such as `25%`.
    #[serde(default = "default_recording_default")]
    pub default: RecordingPolicy,
    /// Per queue: queue name → policy.
    #[serde(default)]
    pub queues: BTreeMap<String, RecordingPolicy>,
}

impl RecordingConfig {
    pub fn policy(&self, queue: Option<&str>) -> RecordingPolicy {
        queue
            .and_then(|q| self.queues.get(q))
            .copied()
            .unwrap_or(self.default)
    }
}

/// `all`, `none`, or the percentage of calls recorded (chosen at random per call).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "String", into = "String")]
#[schemars(with = "String")]
pub enum RecordingPolicy {
    All,
    None,
    Percent(u8),
}

impl RecordingPolicy {
    /// Whether a call is recorded, given a uniform draw in 0..100.
    pub fn records(self, draw: u8) -> bool {
        match self {
            RecordingPolicy::All => true,
            RecordingPolicy::None => false,
            RecordingPolicy::Percent(percent) => draw < percent,
        }
    }
}

impl TryFrom<String> for RecordingPolicy {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        match text.trim() {
            "all" => Ok(RecordingPolicy::All),
            "none" => Ok(RecordingPolicy::None),
            other => other
                .strip_suffix('%')
                .and_then(|n| n.trim().parse::<u8>().ok())
                .filter(|n| *n <= 100)
                .map(RecordingPolicy::Percent)
                .ok_or_else(|| {
                    format!("{other:?} is not a recording policy: write all, none or a percentage such as 25%")
                }),
        }
    }
}

impl From<RecordingPolicy> for String {
    fn from(policy: RecordingPolicy) -> String {
        match policy {
            RecordingPolicy::All => "all".to_owned(),
            RecordingPolicy::None => "none".to_owned(),
            RecordingPolicy::Percent(n) => format!("{n}%"),
        }
    }
}

/// Overload control: new calls beyond these limits get 503 Service Unavailable with
/// Retry-After before any media is spent on them. 0 turns a limit off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OverloadConfig {
    /// Calls in progress (caller legs) at most.
    #[serde(default = "default_overload_max_calls")]
    pub max_calls: u32,
    /// New calls per second at most (a burst of one second's worth is allowed).
    #[serde(default = "default_overload_max_call_rate")]
    pub max_call_rate: u32,
    /// The node is saturated when its busiest media thread wakes later than this on
    /// average; new calls are refused until it recovers. `0s` turns it off.
    #[serde(default = "default_overload_max_media_lag", with = "duration_text")]
    #[schemars(with = "String")]
    pub max_media_lag: Duration,
    /// The node is saturated when its busiest media thread spends more than this share of
    /// each 20 ms period on media work (smoothed over about 160 ms): one more call's media
    /// might not fit. 0 turns it off.
    #[serde(default = "default_overload_max_media_load")]
    pub max_media_load: f64,
    /// The node is saturated when the whole process uses more than this share of the cores it
    /// may run on (smoothed over about a quarter second): SIP and media together have no room
    /// for another call. 0 turns it off.
    #[serde(default = "default_overload_max_cpu")]
    pub max_cpu: f64,
    /// The Retry-After given with the 503.
    #[serde(default = "default_overload_retry_after", with = "duration_text")]
    #[schemars(with = "String")]
    pub retry_after: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShutdownConfig {
    /// On SIGTERM new calls get 503 and calls in progress may go on this long before they
    /// are hung up.
    #[serde(default = "default_shutdown_drain_timeout", with = "duration_text")]
    #[schemars(with = "String")]
    pub drain_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SipConfig {
    /// Addresses to listen on, e.g. `- udp: 127.0.0.1:5060` and `- tcp: 127.0.0.1:5060`.
    #[serde(default = "default_sip_listen")]
    pub listen: Vec<ListenAddr>,
    /// Digest authentication realm.
    #[serde(default = "default_sip_realm")]
    pub realm: String,
    #[serde(default = "default_sip_auth")]
    pub auth: SipAuthConfig,
    #[serde(default = "default_sip_registration")]
    pub registration: RegistrationConfig,
    #[serde(default = "default_sip_timers")]
    pub timers: SipTimers,
}

/// One SIP listening socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(from = "ListenEntry", into = "ListenEntry")]
#[schemars(with = "ListenEntry")]
pub struct ListenAddr {
    pub transport: Transport,
    pub addr: SocketAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    Tcp,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        })
    }
}

/// The YAML form of a listen address: a one-key map from transport to address.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
enum ListenEntry {
    Udp(SocketAddr),
    Tcp(SocketAddr),
}

impl From<ListenEntry> for ListenAddr {
    fn from(entry: ListenEntry) -> Self {
        match entry {
            ListenEntry::Udp(addr) => ListenAddr {
                transport: Transport::Udp,
                addr,
            },
            ListenEntry::Tcp(addr) => ListenAddr {
                transport: Transport::Tcp,
                addr,
            },
        }
    }
}

impl From<ListenAddr> for ListenEntry {
    fn from(listen: ListenAddr) -> Self {
        match listen.transport {
            Transport::Udp => ListenEntry::Udp(listen.addr),
            Transport::Tcp => ListenEntry::Tcp(listen.addr),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SipAuthConfig {
    /// Digest algorithms offered, in order of preference; one challenge header each.
    #[serde(default = "default_sip_auth_algorithms")]
    pub algorithms: Vec<DigestAlgorithm>,
    /// How long a nonce stays valid; an expired one is answered with `stale=true`.
    #[serde(default = "default_sip_auth_nonce_ttl", with = "duration_text")]
    #[schemars(with = "String")]
    pub nonce_ttl: Duration,
    /// Failed authentications from one source address within a minute before it gets 403.
    #[serde(default = "default_sip_auth_max_failures")]
    pub max_failures: u32,
    /// How long such an address keeps getting 403.
    #[serde(default = "default_sip_auth_lockout", with = "duration_text")]
    #[schemars(with = "String")]
    pub lockout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum DigestAlgorithm {
    #[serde(rename = "MD5")]
    Md5,
    #[serde(rename = "SHA-256")]
    Sha256,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistrationConfig {
    /// Shorter registrations are refused with 423 Interval Too Brief.
    #[serde(default = "default_sip_registration_min_expires")]
    pub min_expires: u32,
    /// Longer registrations are shortened to this.
    #[serde(default = "default_sip_registration_max_expires")]
    pub max_expires: u32,
    /// Used when a REGISTER names no expiry.
    #[serde(default = "default_sip_registration_default_expires")]
    pub default_expires: u32,
}

/// RFC 3261 timer bases; every transaction timer derives from these.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SipTimers {
    #[serde(default = "default_sip_timers_t1", with = "duration_text")]
    #[schemars(with = "String")]
    pub t1: Duration,
    #[serde(default = "default_sip_timers_t2", with = "duration_text")]
    #[schemars(with = "String")]
    pub t2: Duration,
    #[serde(default = "default_sip_timers_t4", with = "duration_text")]
    #[schemars(with = "String")]
    pub t4: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    #[serde(default = "default_http_listen")]
    pub listen: SocketAddr,
    /// Bearer token required by requests that change state (agent state, …). None: changes refused.
    #[serde(default = "default_http_token")]
    pub token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MediaConfig {
    /// Address RTP is bound to and announced in SDP.
    #[serde(default = "default_media_address")]
    pub address: std::net::IpAddr,
    /// RTP port range: even ports carry RTP, the next odd port RTCP.
    #[serde(default = "default_media_rtp_ports")]
    pub rtp_ports: PortRange,
    /// Played to callers waiting in a queue, looped. None: silence.
    #[serde(default = "default_media_music_on_hold")]
    pub music_on_hold: Option<PathBuf>,
    /// Media threads, each driving its share of the calls' RTP every 20 ms. 0: one per core
    /// this process may run on (its CPU affinity).
    #[serde(default = "default_media_threads")]
    pub threads: u16,
    /// Real-time (`SCHED_FIFO`) priority of the media threads, 1–99, where santral may have it
    /// (root, CAP_SYS_NICE or LimitRTPRIO): other work on a core cannot then delay packets.
    /// 0: normal scheduling.
    #[serde(default = "default_media_realtime_priority")]
    pub realtime_priority: u8,
    /// Batch each media thread's RTP reads and sends through io_uring (one system call per
    /// 64 calls instead of two per call). Where the kernel or a seccomp profile (containers)
    /// refuses it, santral logs so and makes one system call per packet.
    #[serde(default = "default_media_io_uring")]
    pub io_uring: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// SQLite database file (created when missing).
    #[serde(default = "default_storage_database")]
    pub database: PathBuf,
    /// Directory for call recordings (YYYY/MM/DD/ below it).
    #[serde(default = "default_storage_recordings")]
    pub recordings: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FlowsConfig {
    /// Directory of IVR flow files (`<name>.yaml`).
    #[serde(default = "default_flows_dir")]
    pub dir: PathBuf,
    /// Customer data file for lookup steps (customer numbers, PINs, cards).
    #[serde(default = "default_flows_customers")]
    pub customers: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PromptsConfig {
    /// Directory with one sub-directory of prompts per language.
    #[serde(default = "default_prompts_dir")]
    pub dir: PathBuf,
    /// Languages every flow must have prompts for.
    #[serde(default = "default_prompts_languages")]
    pub languages: Vec<String>,
    /// The language a call starts in.
    #[serde(default = "default_prompts_default_language")]
    pub default_language: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Hotline {
    /// The dialled number (Request-URI user part).
    pub number: String,
    /// The flow it runs: a file name in the flows directory, without `.yaml`.
    pub flow: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentsConfig {
    /// When an agent becomes available.
    #[serde(default = "default_agents_login")]
    pub login: LoginMode,
    #[serde(default = "default_agents_accounts")]
    pub accounts: Vec<AgentAccount>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum LoginMode {
    /// Registering the phone logs the agent in, available.
    #[default]
    OnRegister,
    /// The agent logs in explicitly (softphone, HTTP API or feature code *40).
    Manual,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentAccount {
    /// SIP user name and agent id, e.g. "2001".
    pub id: String,
    pub password: String,
    /// Display name shown on the wallboard.
    #[serde(default)]
    pub name: String,
    /// Skill name → level 1–10.
    #[serde(default)]
    pub skills: BTreeMap<String, u8>,
    /// Languages the agent speaks (e.g. tr, en).
    #[serde(default)]
    pub languages: Vec<String>,
}

/// A queue is the ACD's own queue configuration (skills with minimum levels, strategy,
/// wrap-up, ring timeout, service level, limits, announcements, escalation): see docs/acd.md.
pub use santral_acd::config::QueueConfig;

/// The embedded file as a generic value, parsed once; each section's `Default` is read from it.
fn embedded_value() -> &'static serde_json::Value {
    static VALUE: OnceLock<serde_json::Value> = OnceLock::new();
    VALUE.get_or_init(|| {
        serde_saphyr::from_str(EMBEDDED_YAML)
            .unwrap_or_else(|err| panic!("{EMBEDDED_NAME} is not valid YAML: {err}"))
    })
}

/// One section of the embedded defaults. The embedded file is part of the binary and a unit
/// test parses it, so a failure here is a build defect, not bad input.
fn embedded_section<T: serde::de::DeserializeOwned>(pointer: &str) -> T {
    let value = embedded_value()
        .pointer(pointer)
        .cloned()
        .unwrap_or_else(|| panic!("{EMBEDDED_NAME} lacks {pointer}"));
    serde_json::from_value(value)
        .unwrap_or_else(|err| panic!("{EMBEDDED_NAME} section {pointer}: {err}"))
}

macro_rules! default_from_embedded {
    ($($ty:ty => $pointer:literal),* $(,)?) => {
        $(impl Default for $ty {
            fn default() -> Self {
                embedded_section($pointer)
            }
        })*
    };
}

default_from_embedded! {
    Config => "",
    SipConfig => "/sip",
    SipAuthConfig => "/sip/auth",
    RegistrationConfig => "/sip/registration",
    SipTimers => "/sip/timers",
    HttpConfig => "/http",
    MediaConfig => "/media",
    StorageConfig => "/storage",
    FlowsConfig => "/flows",
    PromptsConfig => "/prompts",
    AgentsConfig => "/agents",
    ShutdownConfig => "/shutdown",
    RecordingConfig => "/recording",
}

// Each field's default is the same field of the embedded file. Field-level defaults (not a
// container `#[serde(default)]`, which serde evaluates eagerly) keep this from recursing.
macro_rules! field_defaults_from_embedded {
    ($(fn $name:ident() -> $ty:ty = $pointer:literal;)*) => {
        $(fn $name() -> $ty {
            embedded_section($pointer)
        })*
    };
}

field_defaults_from_embedded! {
    fn default_sip() -> SipConfig = "/sip";
    fn default_http() -> HttpConfig = "/http";
    fn default_media() -> MediaConfig = "/media";
    fn default_media_address() -> std::net::IpAddr = "/media/address";
    fn default_media_rtp_ports() -> PortRange = "/media/rtp_ports";
    fn default_media_music_on_hold() -> Option<PathBuf> = "/media/music_on_hold";
    fn default_media_threads() -> u16 = "/media/threads";
    fn default_media_realtime_priority() -> u8 = "/media/realtime_priority";
    fn default_media_io_uring() -> bool = "/media/io_uring";
    fn default_storage() -> StorageConfig = "/storage";
    fn default_flows() -> FlowsConfig = "/flows";
    fn default_prompts() -> PromptsConfig = "/prompts";
    fn default_hotlines() -> Vec<Hotline> = "/hotlines";
    fn default_agents() -> AgentsConfig = "/agents";
    fn default_queues() -> Vec<QueueConfig> = "/queues";
    fn default_shutdown() -> ShutdownConfig = "/shutdown";
    fn default_overload() -> OverloadConfig = "/overload";
    fn default_overload_max_calls() -> u32 = "/overload/max_calls";
    fn default_overload_max_call_rate() -> u32 = "/overload/max_call_rate";
    fn default_overload_max_media_load() -> f64 = "/overload/max_media_load";
    fn default_overload_max_cpu() -> f64 = "/overload/max_cpu";
    fn default_recording() -> RecordingConfig = "/recording";
    fn default_recording_default() -> RecordingPolicy = "/recording/default";
    fn default_sip_listen() -> Vec<ListenAddr> = "/sip/listen";
    fn default_sip_realm() -> String = "/sip/realm";
    fn default_sip_auth() -> SipAuthConfig = "/sip/auth";
    fn default_sip_registration() -> RegistrationConfig = "/sip/registration";
    fn default_sip_timers() -> SipTimers = "/sip/timers";
    fn default_sip_auth_algorithms() -> Vec<DigestAlgorithm> = "/sip/auth/algorithms";
    fn default_sip_auth_max_failures() -> u32 = "/sip/auth/max_failures";
    fn default_sip_registration_min_expires() -> u32 = "/sip/registration/min_expires";
    fn default_sip_registration_max_expires() -> u32 = "/sip/registration/max_expires";
    fn default_sip_registration_default_expires() -> u32 = "/sip/registration/default_expires";
    fn default_http_listen() -> SocketAddr = "/http/listen";
    fn default_http_token() -> Option<String> = "/http/token";
    fn default_storage_database() -> PathBuf = "/storage/database";
    fn default_storage_recordings() -> PathBuf = "/storage/recordings";
    fn default_flows_dir() -> PathBuf = "/flows/dir";
    fn default_flows_customers() -> PathBuf = "/flows/customers";
    fn default_prompts_dir() -> PathBuf = "/prompts/dir";
    fn default_prompts_languages() -> Vec<String> = "/prompts/languages";
    fn default_prompts_default_language() -> String = "/prompts/default_language";
    fn default_agents_login() -> LoginMode = "/agents/login";
    fn default_agents_accounts() -> Vec<AgentAccount> = "/agents/accounts";
}

// Durations are text in the file, so their defaults go through the same parser.
macro_rules! duration_defaults_from_embedded {
    ($(fn $name:ident() -> Duration = $pointer:literal;)*) => {
        $(fn $name() -> Duration {
            let text: String = embedded_section($pointer);
            humantime::parse_duration(&text)
                .unwrap_or_else(|err| panic!("{EMBEDDED_NAME} {}: {err}", $pointer))
        })*
    };
}

duration_defaults_from_embedded! {
    fn default_shutdown_drain_timeout() -> Duration = "/shutdown/drain_timeout";
    fn default_overload_max_media_lag() -> Duration = "/overload/max_media_lag";
    fn default_overload_retry_after() -> Duration = "/overload/retry_after";
    fn default_sip_auth_nonce_ttl() -> Duration = "/sip/auth/nonce_ttl";
    fn default_sip_auth_lockout() -> Duration = "/sip/auth/lockout";
    fn default_sip_timers_t1() -> Duration = "/sip/timers/t1";
    fn default_sip_timers_t2() -> Duration = "/sip/timers/t2";
    fn default_sip_timers_t4() -> Duration = "/sip/timers/t4";
}

/// A configuration problem with its place in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: u64,
    pub column: u64,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

/// Every problem found in one file; the Display form lists one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, err) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{err}")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(#[from] ConfigErrors),
}

impl Config {
    /// The embedded demo defaults.
    pub fn embedded() -> Config {
        Config::default()
    }

    /// Loads `path` over the embedded defaults, or the embedded defaults alone.
    pub fn load(path: Option<&Path>) -> Result<Config, LoadError> {
        match path {
            None => Config::parse(EMBEDDED_YAML, EMBEDDED_NAME).map_err(LoadError::from),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                Config::parse(&text, &path.display().to_string()).map_err(LoadError::from)
            }
        }
    }

    /// Parses YAML text over the embedded defaults and checks that its values fit together.
    /// `file` names the text in error messages.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigErrors> {
        let config: Config = serde_saphyr::from_str(text).map_err(|err| {
            let (line, column) = err
                .location()
                .map(|loc| (loc.line(), loc.column()))
                .unwrap_or((1, 1));
            ConfigErrors(vec![ConfigError {
                file: file.to_owned(),
                line,
                column,
                message: first_line(&err.to_string()),
            }])
        })?;
        let problems = config.check();
        if problems.is_empty() {
            return Ok(config);
        }
        let places = Places::read(text);
        Err(ConfigErrors(
            problems
                .into_iter()
                .map(|problem| {
                    let (line, column) = places.find(&problem.place).unwrap_or((1, 1));
                    ConfigError {
                        file: file.to_owned(),
                        line,
                        column,
                        message: problem.message,
                    }
                })
                .collect(),
        ))
    }

    /// Checks values that parse but do not fit together.
    fn check(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        let sip = &self.sip;
        if sip.listen.is_empty() {
            problems.push(Problem::new(Place::Sip, "sip.listen names no address"));
        }
        if sip.auth.algorithms.is_empty() {
            problems.push(Problem::new(
                Place::Sip,
                "sip.auth.algorithms is empty: offer MD5, SHA-256 or both",
            ));
        }
        let mut algorithms = BTreeSet::new();
        for algorithm in &sip.auth.algorithms {
            if !algorithms.insert(*algorithm as u8) {
                problems.push(Problem::new(
                    Place::Sip,
                    format!("sip.auth.algorithms lists {algorithm:?} twice"),
                ));
            }
        }
        let reg = &sip.registration;
        if reg.min_expires > reg.max_expires {
            problems.push(Problem::new(
                Place::Sip,
                format!(
                    "sip.registration.min_expires ({}) is greater than max_expires ({})",
                    reg.min_expires, reg.max_expires
                ),
            ));
        }
        if reg.default_expires < reg.min_expires || reg.default_expires > reg.max_expires {
            problems.push(Problem::new(
                Place::Sip,
                format!(
                    "sip.registration.default_expires ({}) is outside min_expires..max_expires ({}..{})",
                    reg.default_expires, reg.min_expires, reg.max_expires
                ),
            ));
        }
        let timers = &sip.timers;
        if timers.t1.is_zero() || timers.t2 < timers.t1 {
            problems.push(Problem::new(
                Place::Sip,
                "sip.timers: t1 must be above zero and t2 at least t1",
            ));
        }
        for (name, share) in [
            ("max_media_load", self.overload.max_media_load),
            ("max_cpu", self.overload.max_cpu),
        ] {
            if !(0.0..=1.0).contains(&share) {
                problems.push(Problem::new(
                    Place::Overload,
                    format!(
                        "overload.{name} {share} is out of range: give a share, 0 to 1 (0 turns it off)"
                    ),
                ));
            }
        }
        if self.media.realtime_priority > 99 {
            problems.push(Problem::new(
                Place::Media,
                format!(
                    "media.realtime_priority {} is out of range: give 1-99, or 0 for normal scheduling",
                    self.media.realtime_priority
                ),
            ));
        }
        let ports = self.media.rtp_ports;
        if ports.first >= ports.last || ports.last - ports.first < 3 {
            problems.push(Problem::new(
                Place::Media,
                format!(
                    "media.rtp_ports {}..{} holds no RTP/RTCP pair: give first < last with room for at least two ports",
                    ports.first, ports.last
                ),
            ));
        }
        if !self
            .prompts
            .languages
            .contains(&self.prompts.default_language)
        {
            problems.push(Problem::new(
                Place::Prompts,
                format!(
                    "prompts.default_language {:?} is not one of prompts.languages {:?}",
                    self.prompts.default_language, self.prompts.languages
                ),
            ));
        }

        let mut ids = BTreeSet::new();
        let mut skills_staffed = BTreeSet::new();
        for (index, account) in self.agents.accounts.iter().enumerate() {
            if account.id.is_empty() || !account.id.chars().all(|c| c.is_ascii_alphanumeric()) {
                problems.push(Problem::new(
                    Place::Account(index),
                    format!(
                        "agent id {:?} must be letters and digits (it is the SIP user name)",
                        account.id
                    ),
                ));
            }
            if !ids.insert(account.id.as_str()) {
                problems.push(Problem::new(
                    Place::Account(index),
                    format!("agent id {:?} is defined twice", account.id),
                ));
            }
            if account.password.is_empty() {
                problems.push(Problem::new(
                    Place::Account(index),
                    format!("agent {} has an empty password", account.id),
                ));
            }
            for (skill, level) in &account.skills {
                if !(1..=10).contains(level) {
                    problems.push(Problem::new(
                        Place::Account(index),
                        format!(
                            "agent {}: skill {skill} level {level} is outside 1–10",
                            account.id
                        ),
                    ));
                }
                skills_staffed.insert(skill.as_str());
            }
        }

        let mut queue_names = BTreeSet::new();
        for (index, queue) in self.queues.iter().enumerate() {
            if !queue_names.insert(queue.name.as_str()) {
                problems.push(Problem::new(
                    Place::Queue(index),
                    format!("queue {:?} is defined twice", queue.name),
                ));
            }
            for requirement in &queue.skills {
                let (skill, level) = (&requirement.skill, requirement.min_level);
                if !(1..=10).contains(&level) {
                    problems.push(Problem::new(
                        Place::Queue(index),
                        format!(
                            "queue {}: minimum level {level} of skill {skill} is outside 1–10",
                            queue.name
                        ),
                    ));
                }
            }
        }

        let mut numbers = BTreeSet::new();
        for (index, hotline) in self.hotlines.iter().enumerate() {
            if !numbers.insert(hotline.number.as_str()) {
                problems.push(Problem::new(
                    Place::Hotline(index),
                    format!("hotline {:?} is defined twice", hotline.number),
                ));
            }
            if ids.contains(hotline.number.as_str()) {
                problems.push(Problem::new(
                    Place::Hotline(index),
                    format!("hotline {:?} is also an agent id", hotline.number),
                ));
            }
        }
        problems
    }

    /// Things that work but that an operator should hear about at start.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        let exposed: Vec<String> = self
            .sip
            .listen
            .iter()
            .filter(|listen| !listen.addr.ip().is_loopback())
            .map(|listen| format!("{}:{}", listen.transport, listen.addr))
            .collect();
        if !exposed.is_empty() {
            for account in &self.agents.accounts {
                if DEMO_PASSWORDS.contains(&account.password.as_str()) {
                    warnings.push(format!(
                        "agent {} uses a public demo password while SIP listens on {}: set real passwords",
                        account.id,
                        exposed.join(", ")
                    ));
                }
            }
        }
        if !self.http.listen.ip().is_loopback() && self.http.token.is_none() {
            warnings.push(format!(
                "HTTP listens on {} without http.token: state changes are refused",
                self.http.listen
            ));
        }
        warnings
    }

    /// The JSON Schema of the configuration file.
    pub fn json_schema() -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(Config)).unwrap_or(serde_json::Value::Null)
    }
}

/// The parser's message without its own "error: line L column C:" prefix (we print the place
/// ourselves, in the file:line:col form editors jump to).
fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or(text).trim();
    let line = line
        .strip_prefix("error:")
        .map(str::trim_start)
        .unwrap_or(line);
    if let Some((place, message)) = line
        .strip_prefix("line ")
        .and_then(|rest| rest.split_once(": "))
        && place
            .split(" column ")
            .all(|n| n.trim().parse::<u64>().is_ok())
    {
        return message.trim().to_owned();
    }
    line.to_owned()
}

/// Where in the file a semantic problem lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Sip,
    Media,
    Overload,
    Prompts,
    Account(usize),
    Queue(usize),
    Hotline(usize),
}

struct Problem {
    place: Place,
    message: String,
}

impl Problem {
    fn new(place: Place, message: impl Into<String>) -> Problem {
        Problem {
            place,
            message: message.into(),
        }
    }
}

/// Line and column of the parts semantic checks point at, read from the same text by a
/// second, tolerant pass (every field optional, unknown keys ignored).
#[derive(Default)]
struct Places {
    sip: Option<(u64, u64)>,
    media: Option<(u64, u64)>,
    overload: Option<(u64, u64)>,
    prompts: Option<(u64, u64)>,
    accounts: Vec<(u64, u64)>,
    queues: Vec<(u64, u64)>,
    hotlines: Vec<(u64, u64)>,
}

type At = serde_saphyr::Spanned<serde::de::IgnoredAny>;

#[derive(Deserialize, Default)]
#[serde(default)]
struct PlacesDoc {
    sip: Option<At>,
    media: Option<At>,
    overload: Option<At>,
    prompts: Option<At>,
    agents: Option<PlacesAgents>,
    queues: Vec<PlacesNamed>,
    hotlines: Vec<PlacesNamed>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PlacesAgents {
    accounts: Vec<PlacesNamed>,
}

/// An entry of a list, located by its identifying key.
#[derive(Deserialize, Default)]
#[serde(default)]
struct PlacesNamed {
    id: Option<At>,
    name: Option<At>,
    number: Option<At>,
}

impl PlacesNamed {
    fn at(&self) -> Option<(u64, u64)> {
        [&self.id, &self.name, &self.number]
            .into_iter()
            .flatten()
            .map(|at| (at.referenced.line(), at.referenced.column()))
            .next()
    }
}

impl Places {
    fn read(text: &str) -> Places {
        let Ok(doc) = serde_saphyr::from_str::<PlacesDoc>(text) else {
            return Places::default();
        };
        let at = |spanned: &Option<At>| {
            spanned
                .as_ref()
                .map(|s| (s.referenced.line(), s.referenced.column()))
        };
        let list = |items: &[PlacesNamed]| {
            items
                .iter()
                .map(|item| item.at().unwrap_or((1, 1)))
                .collect()
        };
        Places {
            sip: at(&doc.sip),
            media: at(&doc.media),
            overload: at(&doc.overload),
            prompts: at(&doc.prompts),
            accounts: doc
                .agents
                .as_ref()
                .map(|agents| list(&agents.accounts))
                .unwrap_or_default(),
            queues: list(&doc.queues),
            hotlines: list(&doc.hotlines),
        }
    }

    fn find(&self, place: &Place) -> Option<(u64, u64)> {
        match place {
            Place::Sip => self.sip,
            Place::Media => self.media,
            Place::Overload => self.overload,
            Place::Prompts => self.prompts,
            Place::Account(i) => self.accounts.get(*i).copied(),
            Place::Queue(i) => self.queues.get(*i).copied(),
            Place::Hotline(i) => self.hotlines.get(*i).copied(),
        }
    }
}

/// Durations written as text: `500ms`, `10s`, `5m`, `1h 30m`.
mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&humantime::format_duration(*value).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(&text).map_err(|err| {
            serde::de::Error::custom(format!(
                "{text:?} is not a duration ({err}); write e.g. 500ms, 10s, 5m"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_file_is_the_demo_contract() {
        let config = Config::load(None).expect("embedded config loads");
        assert_eq!(config, Config::default());
        assert_eq!(
            config.sip.listen,
            vec![
                ListenAddr {
                    transport: Transport::Udp,
                    addr: "127.0.0.1:5060".parse().unwrap()
                },
                ListenAddr {
                    transport: Transport::Tcp,
                    addr: "127.0.0.1:5060".parse().unwrap()
                },
            ]
        );
        assert_eq!(config.http.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(config.sip.auth.algorithms, vec![DigestAlgorithm::Md5]);
        assert_eq!(config.sip.timers.t1, Duration::from_millis(500));
        let ids: Vec<&str> = config
            .agents
            .accounts
            .iter()
            .map(|a| a.id.as_str())
            .collect();
        assert_eq!(ids, ["2001", "2002", "2003", "2004"]);
        for account in &config.agents.accounts {
            assert_eq!(account.password, format!("secret{}", account.id));
        }
        assert_eq!(config.hotlines[0].number, "1000");
        assert_eq!(config.hotlines[0].flow, "main");
        let queues: Vec<&str> = config.queues.iter().map(|q| q.name.as_str()).collect();
        assert_eq!(queues, ["billing", "tech", "sales", "operator"]);
        assert!(config.warnings().is_empty(), "{:?}", config.warnings());
    }

    #[test]
    fn a_file_overrides_only_what_it_names() {
        let config = Config::parse(
            "sip:\n  listen:\n    - udp: 127.0.0.1:15060\n  auth:\n    algorithms: [SHA-256, MD5]\n",
            "over.yaml",
        )
        .expect("valid overlay");
        assert_eq!(config.sip.listen.len(), 1);
        assert_eq!(config.sip.listen[0].addr.port(), 15060);
        assert_eq!(
            config.sip.auth.algorithms,
            vec![DigestAlgorithm::Sha256, DigestAlgorithm::Md5]
        );
        // Untouched fields of a touched section keep their defaults.
        assert_eq!(config.sip.auth.max_failures, 5);
        assert_eq!(config.sip.realm, "santral");
        // Untouched sections too.
        assert_eq!(config.agents.accounts.len(), 4);
        assert_eq!(config.http.listen.port(), 8080);
    }

    #[test]
    fn type_errors_name_file_line_and_column() {
        let err = Config::parse("http:\n  listen: not-an-address\n", "bad.yaml").unwrap_err();
        assert_eq!(err.0.len(), 1);
        let text = err.to_string();
        assert!(text.starts_with("bad.yaml:2:"), "{text}");
    }

    #[test]
    fn unknown_keys_are_errors_with_a_place() {
        let err = Config::parse("sip:\n  realm: x\n  relam: y\n", "typo.yaml").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("typo.yaml:3:"), "{text}");
        assert!(text.contains("relam"), "{text}");
    }

    #[test]
    fn bad_durations_explain_themselves() {
        let err = Config::parse("sip:\n  timers:\n    t1: soon\n", "t.yaml").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("t.yaml:3:"), "{text}");
        assert!(text.contains("not a duration"), "{text}");
        assert!(!text.contains("line 3 column"), "place given twice: {text}");
    }

    #[test]
    fn semantic_errors_point_at_the_entry() {
        let yaml = "\
agents:
  accounts:
    - id: \"2001\"
      password: a
    - id: \"2001\"
      password: b
queues:
  - name: billing
    skills: [{ skill: billing, min_level: 11 }]
";
        let err = Config::parse(yaml, "dup.yaml").unwrap_err();
        let lines: Vec<String> = err.0.iter().map(|e| e.to_string()).collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0].starts_with("dup.yaml:5:") && lines[0].contains("defined twice"),
            "{lines:?}"
        );
        assert!(
            lines[1].starts_with("dup.yaml:8:") && lines[1].contains("outside 1–10"),
            "{lines:?}"
        );
    }

    #[test]
    fn media_threads_priority_and_load_limit_are_checked() {
        let yaml = "\
media:
  threads: 2
  realtime_priority: 120
";
        let err = Config::parse(yaml, "rt.yaml").unwrap_err();
        let lines: Vec<String> = err.0.iter().map(|e| e.to_string()).collect();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].starts_with("rt.yaml:") && lines[0].contains("media.realtime_priority 120"),
            "{lines:?}"
        );
        let err = Config::parse("\n\noverload:\n  max_media_load: 1.5\n", "load.yaml").unwrap_err();
        let line = err.0[0].to_string();
        assert!(
            line.starts_with("load.yaml:4:") && line.contains("overload.max_media_load 1.5"),
            "{line}"
        );
        let config = Config::parse("media: { threads: 2, realtime_priority: 0 }\n", "ok.yaml")
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            (config.media.threads, config.media.realtime_priority),
            (2, 0)
        );
        assert_eq!(Config::embedded().media.realtime_priority, 10);
    }

    #[test]
    fn demo_passwords_off_loopback_warn() {
        let config =
            Config::parse("sip:\n  listen:\n    - udp: 0.0.0.0:5060\n", "pub.yaml").unwrap();
        let warnings = config.warnings();
        assert_eq!(warnings.len(), 4, "{warnings:?}");
        assert!(warnings[0].contains("agent 2001") && warnings[0].contains("0.0.0.0:5060"));
    }

    #[test]
    fn schema_describes_every_section() {
        let schema = Config::json_schema();
        let properties = schema["properties"].as_object().expect("object schema");
        for key in [
            "sip", "http", "media", "storage", "flows", "prompts", "hotlines", "agents", "queues",
        ] {
            assert!(properties.contains_key(key), "schema lacks {key}");
        }
    }

    #[test]
    fn recording_policies_parse_and_sample() {
        let config = Config::parse(
            "recording:\n  default: none\n  queues: { sales: 25%, billing: all }\n",
            "rec.yaml",
        )
        .unwrap();
        assert_eq!(
            config.recording.policy(Some("billing")),
            RecordingPolicy::All
        );
        assert_eq!(config.recording.policy(Some("tech")), RecordingPolicy::None);
        assert_eq!(config.recording.policy(None), RecordingPolicy::None);
        let sales = config.recording.policy(Some("sales"));
        assert_eq!(sales, RecordingPolicy::Percent(25));
        assert_eq!((0..100).filter(|d| sales.records(*d)).count(), 25);
        assert_eq!(
            Config::default().recording.policy(Some("billing")),
            RecordingPolicy::All
        );
        let err = Config::parse("recording:\n  default: sometimes\n", "r.yaml").unwrap_err();
        assert!(err.to_string().starts_with("r.yaml:2:"), "{err}");
        assert!(err.to_string().contains("not a recording policy"), "{err}");
    }

    #[test]
    fn the_committed_schema_matches_the_configuration_format() {
        let committed: serde_json::Value =
            serde_json::from_str(include_str!("../../../config/santral.schema.json"))
                .expect("config/santral.schema.json is JSON");
        assert_eq!(
            committed,
            Config::json_schema(),
            "config/santral.schema.json is stale: run `santral config schema > config/santral.schema.json`"
        );
    }

    #[test]
    fn missing_file_is_a_named_error() {
        let err = Config::load(Some(Path::new("/nonexistent/santral.yaml"))).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("/nonexistent/santral.yaml: cannot read")
        );
    }
}
