//! The configuration of `imlinkd` (DESIGN §4): defaults → file → `IMLINK_*` environment →
//! flags, into one typed struct.
//!
//! [`load`] layers the sources exactly as DESIGN §4 says — built-in defaults, then the TOML
//! file (`/etc/imlink/imlinkd.toml` or `--config PATH`), then `IMLINK_<SECTION>__<KEY>`
//! environment variables, then command-line flags — and merges them with the `config` crate
//! into [`Config`]. Every value is checked as it is read, so an error names the key, the
//! value as written and where it was written (file path, variable, flag); a value that
//! passed is put into the merge in its canonical form. [`Loaded::to_toml`] renders the
//! effective configuration with the source of every value, for `imlinkd --check-config`.
//!
//! The environment is passed in as an [`Env`] snapshot, so loading is testable without
//! touching the process environment, and a SIGHUP reload ([`reloader`]) reads the same
//! variables the daemon started with.

use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::codes::LogLevel;
use crate::proto::ws::Platform;

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[sdk]`: the SDK's own settings.
    pub sdk: SdkConfig,
    /// `[server]`: where and how to connect.
    pub server: ServerConfig,
    /// `[reconnect]`: backoff between connect attempts.
    pub reconnect: ReconnectConfig,
    /// `[api]`: the local JSON-RPC socket.
    pub api: ApiConfig,
    /// `[events]`: the event log.
    pub events: EventsConfig,
    /// `[state]`: persistence.
    pub state: StateConfig,
}

/// `[sdk]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SdkConfig {
    /// The SDKAppID; unset means "wait for `initSDK`".
    pub app_id: Option<u64>,
    /// The log level (names, short forms or numbers).
    pub log_level: LogLevel,
    /// The platform this daemon logs in as.
    pub platform: Platform,
    /// How long before the ticket runs out `onUserSigExpiring` is emitted, in seconds.
    pub usersig_expiring_lead_secs: u64,
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// `ws://` or `wss://` URL of the access endpoint.
    pub url: String,
    /// PEM file of CA certificates for `wss://`; unset = the built-in web roots.
    pub ca_file: Option<PathBuf>,
    /// Give up a connect attempt after this long.
    pub connect_timeout_ms: u64,
    /// Give up waiting for a response after this long (9520).
    pub request_timeout_ms: u64,
    /// How long `login` waits for a connection before failing with 9508.
    pub login_timeout_ms: u64,
    /// WebSocket ping interval.
    pub heartbeat_interval_ms: u64,
    /// The connection is dead after this long without any frame from the server.
    pub heartbeat_timeout_ms: u64,
}

/// `[reconnect]`: exponential backoff with jitter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReconnectConfig {
    /// First delay.
    pub initial_ms: u64,
    /// Largest delay.
    pub max_ms: u64,
    /// Growth per failure.
    pub multiplier: f64,
    /// Random spread, a fraction (0.2 = ±20 %).
    pub jitter: f64,
    /// A connection that stayed up this long resets the backoff.
    pub stable_ms: u64,
}

/// `[api]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// The Unix socket path.
    pub socket: PathBuf,
    /// Its file mode (octal in the file: `"0660"` or `0o660`).
    #[serde(deserialize_with = "deserialize_mode")]
    pub socket_mode: u32,
    /// Peers allowed to connect, by uid; empty = anyone who can open the socket.
    pub allow_uids: Vec<u32>,
    /// Peers allowed to connect, by gid.
    pub allow_gids: Vec<u32>,
    /// Peers limited to reading, by uid.
    pub readonly_uids: Vec<u32>,
    /// Peers limited to reading, by gid.
    pub readonly_gids: Vec<u32>,
    /// Connections served at once.
    pub max_clients: usize,
    /// Longest request line.
    pub max_line_bytes: usize,
    /// Events queued per subscriber before it is declared lagging.
    pub subscriber_queue: usize,
}

/// `[events]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// How many recent events are kept for `subscribe {since}`.
    pub history: usize,
}

/// `[state]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// Where `session.json` lives.
    pub dir: PathBuf,
    /// Resume a saved login at start.
    pub restore_session: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            sdk: SdkConfig::default(),
            server: ServerConfig::default(),
            reconnect: ReconnectConfig::default(),
            api: ApiConfig::default(),
            events: EventsConfig::default(),
            state: StateConfig::default(),
        }
    }
}

impl Default for SdkConfig {
    fn default() -> Self {
        SdkConfig {
            app_id: None,
            log_level: LogLevel::Info,
            platform: Platform::Linux,
            usersig_expiring_lead_secs: 300,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            url: "ws://127.0.0.1:8600/v1/connect".into(),
            ca_file: None,
            connect_timeout_ms: 10_000,
            request_timeout_ms: 10_000,
            login_timeout_ms: 30_000,
            heartbeat_interval_ms: 20_000,
            heartbeat_timeout_ms: 45_000,
        }
    }
}

impl Default for ReconnectConfig {
    fn default() -> Self {
        ReconnectConfig {
            initial_ms: 1_000,
            max_ms: 30_000,
            multiplier: 1.6,
            jitter: 0.2,
            stable_ms: 10_000,
        }
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            socket: default_socket_path(),
            socket_mode: 0o660,
            allow_uids: Vec::new(),
            allow_gids: Vec::new(),
            readonly_uids: Vec::new(),
            readonly_gids: Vec::new(),
            max_clients: 1024,
            max_line_bytes: 1_048_576,
            subscriber_queue: 4096,
        }
    }
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig { history: 10_000 }
    }
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            dir: default_state_dir(),
            restore_session: true,
        }
    }
}

impl Config {
    /// The built-in defaults, with the socket and state paths worked out from `env` (the
    /// [`Default`] impl uses the process environment instead).
    pub fn defaults_in(env: &Env) -> Config {
        let mut c = Config::default();
        c.api.socket = default_socket_path_in(env);
        c.state.dir = default_state_dir_in(env);
        c
    }
}

// ---------------------------------------------------------------------------------------
// Default paths
// ---------------------------------------------------------------------------------------

/// The configuration file read when `--config` is not given; its absence is not an error.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/imlink/imlinkd.toml";

/// The longest Unix socket path Linux accepts (`sun_path` is 108 bytes with the NUL).
pub const MAX_SOCKET_PATH_BYTES: usize = 107;

/// systemd may pass several directories separated by `:`; the first is ours.
fn first_dir(v: &str) -> Option<PathBuf> {
    v.split(':').next().filter(|d| !d.is_empty()).map(PathBuf::from)
}

/// `$RUNTIME_DIRECTORY/imlinkd.sock`, else `/run/imlink/imlinkd.sock` as root, else
/// `$XDG_RUNTIME_DIR/imlink/imlinkd.sock` (else `/tmp/imlink-$UID/imlinkd.sock`).
pub fn default_socket_path() -> PathBuf {
    default_socket_path_in(&Env::from_process())
}

/// [`default_socket_path`] for the given environment snapshot.
pub fn default_socket_path_in(env: &Env) -> PathBuf {
    if let Some(d) = env.get("RUNTIME_DIRECTORY").and_then(first_dir) {
        return d.join("imlinkd.sock");
    }
    if env.uid() == 0 {
        return PathBuf::from("/run/imlink/imlinkd.sock");
    }
    if let Some(d) = env.get("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("imlink/imlinkd.sock");
    }
    PathBuf::from(format!("/tmp/imlink-{}/imlinkd.sock", env.uid()))
}

/// `$STATE_DIRECTORY`, else `/var/lib/imlink` as root, else `$XDG_STATE_HOME/imlink`
/// (else `~/.local/state/imlink`).
pub fn default_state_dir() -> PathBuf {
    default_state_dir_in(&Env::from_process())
}

/// [`default_state_dir`] for the given environment snapshot.
pub fn default_state_dir_in(env: &Env) -> PathBuf {
    if let Some(d) = env.get("STATE_DIRECTORY").and_then(first_dir) {
        return d;
    }
    if env.uid() == 0 {
        return PathBuf::from("/var/lib/imlink");
    }
    if let Some(d) = env.get("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("imlink");
    }
    let home = env.get("HOME").filter(|h| !h.is_empty()).unwrap_or("/tmp");
    PathBuf::from(home).join(".local/state/imlink")
}

// ---------------------------------------------------------------------------------------
// Environment snapshot
// ---------------------------------------------------------------------------------------

/// A snapshot of the environment variables and the effective uid that loading depends on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env {
    vars: BTreeMap<String, String>,
    uid: u32,
}

impl Env {
    /// The environment of this process (variables that are not UTF-8 are read lossily).
    pub fn from_process() -> Env {
        let vars = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.to_string_lossy().into_owned())))
            .collect();
        // The owner of /proc/self is the effective uid; it decides which directories we
        // may create (and needs no unsafe libc call).
        let uid = std::fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
            .unwrap_or(u32::MAX);
        Env { vars, uid }
    }

    /// A made-up environment (tests, embedding).
    pub fn new<I, K, V>(vars: I, uid: u32) -> Env
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Env {
            vars: vars.into_iter().map(|(k, v)| (k.into(), v.into())).collect(),
            uid,
        }
    }

    /// One variable.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// The effective uid (0 = root).
    pub fn uid(&self) -> u32 {
        self.uid
    }
}

// ---------------------------------------------------------------------------------------
// Sources and errors
// ---------------------------------------------------------------------------------------

/// Where a value of the effective configuration came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The built-in default.
    Default,
    /// The configuration file.
    File(PathBuf),
    /// An `IMLINK_<SECTION>__<KEY>` environment variable (its name).
    Env(String),
    /// A command-line flag (its name, e.g. `--server`).
    Flag(&'static str),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File(p) => write!(f, "file {}", p.display()),
            Origin::Env(name) => write!(f, "environment {name}"),
            Origin::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// Why the configuration could not be loaded. Every variant names where the problem is.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigError {
    /// The file could not be read or is not valid TOML.
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A key that does not exist.
    UnknownKey {
        /// The dotted key as written (`server.urll`).
        key: String,
        /// Where it was written.
        origin: Origin,
        /// The closest known key, when one is close.
        suggestion: Option<&'static str>,
    },
    /// A value that is not acceptable for its key.
    BadValue {
        /// The dotted key.
        key: String,
        /// The value as written.
        value: String,
        /// Where it was written.
        origin: Origin,
        /// What the value must be.
        problem: String,
    },
    /// Values that are each fine but not together (heartbeat timeout ≤ interval, …).
    Inconsistent {
        /// The whole explanation, naming each key, value and source.
        message: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::File { path, message } => write!(f, "{}: {message}", path.display()),
            ConfigError::UnknownKey {
                key,
                origin,
                suggestion,
            } => {
                match origin {
                    Origin::File(p) => write!(f, "{}: unknown key {key}", p.display())?,
                    Origin::Env(name) => write!(f, "{name}: unknown key {key}")?,
                    Origin::Flag(flag) => write!(f, "{flag}: unknown key {key}")?,
                    Origin::Default => write!(f, "unknown key {key}")?,
                }
                if let Some(s) = suggestion {
                    write!(f, " (did you mean {s}?)")?;
                }
                Ok(())
            }
            ConfigError::BadValue {
                key,
                value,
                origin,
                problem,
            } => match origin {
                Origin::File(p) => write!(f, "{}: {key} = {value}: {key} {problem}", p.display()),
                Origin::Env(name) => write!(f, "{name}={value}: {key} {problem}"),
                Origin::Flag(flag) => write!(f, "{flag} {value}: {key} {problem}"),
                Origin::Default => write!(f, "default {key} = {value}: {key} {problem}"),
            },
            ConfigError::Inconsistent { message } => f.write_str(message),
        }
    }
}

impl std::error::Error for ConfigError {}

// ---------------------------------------------------------------------------------------
// The keys
// ---------------------------------------------------------------------------------------

/// How a key's value is read and checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Optional positive integer (the SDKAppID); empty text unsets.
    AppId,
    /// `LogLevel::parse` forms, or the SDK's number.
    Level,
    /// `Platform::parse`.
    Platform,
    /// Integer ≥ 0.
    NonNegative,
    /// Integer > 0 (durations, sizes).
    Positive,
    /// `ws://` or `wss://` URL.
    Url,
    /// Optional path; empty text unsets.
    OptPath,
    /// Non-empty path.
    Path,
    /// Non-empty path that fits a Unix socket address.
    SocketPath,
    /// File mode ≤ 0o777.
    Mode,
    /// List of uids or gids (a TOML array, or a comma list in text).
    IdList,
    /// Number ≥ 1.
    Multiplier,
    /// Number in [0, 1).
    Fraction,
    /// Boolean.
    Bool,
}

/// Every key, its kind, and its flag if it has one — the schema the sources are checked
/// against. Sections appear in the order of [`Config`].
const KEYS: &[(&str, Kind)] = &[
    ("sdk.app_id", Kind::AppId),
    ("sdk.log_level", Kind::Level),
    ("sdk.platform", Kind::Platform),
    ("sdk.usersig_expiring_lead_secs", Kind::NonNegative),
    ("server.url", Kind::Url),
    ("server.ca_file", Kind::OptPath),
    ("server.connect_timeout_ms", Kind::Positive),
    ("server.request_timeout_ms", Kind::Positive),
    ("server.login_timeout_ms", Kind::Positive),
    ("server.heartbeat_interval_ms", Kind::Positive),
    ("server.heartbeat_timeout_ms", Kind::Positive),
    ("reconnect.initial_ms", Kind::Positive),
    ("reconnect.max_ms", Kind::Positive),
    ("reconnect.multiplier", Kind::Multiplier),
    ("reconnect.jitter", Kind::Fraction),
    ("reconnect.stable_ms", Kind::Positive),
    ("api.socket", Kind::SocketPath),
    ("api.socket_mode", Kind::Mode),
    ("api.allow_uids", Kind::IdList),
    ("api.allow_gids", Kind::IdList),
    ("api.readonly_uids", Kind::IdList),
    ("api.readonly_gids", Kind::IdList),
    ("api.max_clients", Kind::Positive),
    ("api.max_line_bytes", Kind::Positive),
    ("api.subscriber_queue", Kind::Positive),
    ("events.history", Kind::Positive),
    ("state.dir", Kind::Path),
    ("state.restore_session", Kind::Bool),
];

/// The sections, in order.
const SECTIONS: &[&str] = &["sdk", "server", "reconnect", "api", "events", "state"];

/// Every key of the configuration, dotted (`server.url`), in file order.
pub fn keys() -> impl Iterator<Item = &'static str> {
    KEYS.iter().map(|(k, _)| *k)
}

/// The environment variable that sets `key` (`server.url` → `IMLINK_SERVER__URL`).
pub fn env_var_for(key: &str) -> String {
    format!("IMLINK_{}", key.replace('.', "__").to_ascii_uppercase())
}

fn lookup(key: &str) -> Option<(&'static str, Kind)> {
    KEYS.iter().find(|(k, _)| *k == key).copied()
}

/// The known key closest to a misspelt one, if it is close (edit distance ≤ 3).
fn suggest(key: &str) -> Option<&'static str> {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut cur = vec![i + 1];
            for (j, cb) in b.iter().enumerate() {
                let sub = prev[j] + usize::from(ca != *cb);
                cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
            }
            prev = cur;
        }
        prev[b.len()]
    }
    keys()
        .map(|k| (distance(key, k), k))
        .filter(|(d, _)| *d <= 3)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

// ---------------------------------------------------------------------------------------
// Reading values
// ---------------------------------------------------------------------------------------

/// A value as it was written: typed (TOML, flags) or text (environment).
#[derive(Debug, Clone, PartialEq)]
enum Raw {
    Text(String),
    Str(String),
    Int(i128),
    Float(f64),
    Bool(bool),
    Array(Vec<Raw>),
    Table,
    Nil,
}

impl Raw {
    fn from_value(v: &config::Value) -> Raw {
        use config::ValueKind as K;
        match &v.kind {
            K::Nil => Raw::Nil,
            K::Boolean(b) => Raw::Bool(*b),
            K::I64(n) => Raw::Int(i128::from(*n)),
            K::I128(n) => Raw::Int(*n),
            K::U64(n) => Raw::Int(i128::from(*n)),
            K::U128(n) => i128::try_from(*n).map_or(Raw::Float(*n as f64), Raw::Int),
            K::Float(x) => Raw::Float(*x),
            K::String(s) => Raw::Str(s.clone()),
            K::Table(_) => Raw::Table,
            K::Array(a) => Raw::Array(a.iter().map(Raw::from_value).collect()),
        }
    }

    /// The value as the user wrote it, for error messages: TOML syntax for typed values,
    /// the bare text for environment variables and flags.
    fn shown(&self) -> String {
        match self {
            Raw::Text(s) => s.clone(),
            Raw::Str(s) => format!("{s:?}"),
            Raw::Int(n) => n.to_string(),
            Raw::Float(x) => x.to_string(),
            Raw::Bool(b) => b.to_string(),
            Raw::Array(a) => format!("[{}]", a.iter().map(Raw::shown).collect::<Vec<_>>().join(", ")),
            Raw::Table => "a table".into(),
            Raw::Nil => "nothing".into(),
        }
    }
}

fn parse_uint(raw: &Raw) -> Option<u64> {
    match raw {
        Raw::Int(n) => u64::try_from(*n).ok(),
        Raw::Text(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    }
}

fn parse_number(raw: &Raw) -> Option<f64> {
    let x = match raw {
        Raw::Int(n) => *n as f64,
        Raw::Float(x) => *x,
        Raw::Text(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    x.is_finite().then_some(x)
}

fn parse_mode(raw: &Raw) -> Result<u32, String> {
    const PROBLEM: &str = "must be a file mode from 0 to 0777, written as a string of octal digits (\"0660\") or an octal integer (0o660)";
    let n = match raw {
        // A TOML integer is taken at its value: `0o660` is right, `660` (decimal) is not.
        Raw::Int(n) => u32::try_from(*n).ok(),
        Raw::Text(s) | Raw::Str(s) => {
            let t = s.trim();
            let digits = t.strip_prefix("0o").or_else(|| t.strip_prefix("0O")).unwrap_or(t);
            if digits.is_empty() {
                None
            } else {
                u32::from_str_radix(digits, 8).ok()
            }
        }
        _ => None,
    };
    match n {
        Some(n) if n <= 0o777 => Ok(n),
        Some(n) if matches!(raw, Raw::Int(_)) && n <= 777 => Err(format!(
            "{PROBLEM}; {n} is decimal here, did you mean \"0{n}\"?"
        )),
        _ => Err(PROBLEM.into()),
    }
}

fn parse_bool(raw: &Raw) -> Option<bool> {
    match raw {
        Raw::Bool(b) => Some(*b),
        Raw::Text(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Some(true),
            "false" | "no" | "off" | "0" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

fn parse_id(raw: &Raw) -> Option<u32> {
    match raw {
        Raw::Int(n) => u32::try_from(*n).ok(),
        Raw::Text(s) => s.trim().parse::<u32>().ok(),
        _ => None,
    }
}

fn url_problem(s: &str) -> Option<String> {
    let t = s.trim();
    let uri: awc::http::Uri = match t.parse() {
        Ok(u) => u,
        Err(e) => return Some(format!("must be a ws:// or wss:// URL ({e})")),
    };
    match uri.scheme_str() {
        Some("ws") | Some("wss") => {}
        _ => return Some("must be a ws:// or wss:// URL".into()),
    }
    if uri.host().map_or(true, str::is_empty) {
        return Some("must be a ws:// or wss:// URL with a host".into());
    }
    None
}

/// Checks one value and returns it in the canonical form the merge deserialises.
fn normalise(kind: Kind, raw: &Raw) -> Result<config::ValueKind, String> {
    use config::ValueKind as V;
    let text = match raw {
        Raw::Text(s) | Raw::Str(s) => Some(s.as_str()),
        _ => None,
    };
    match kind {
        Kind::AppId => {
            if text.is_some_and(|t| t.trim().is_empty()) && matches!(raw, Raw::Text(_)) {
                return Ok(V::Nil);
            }
            match parse_uint(raw) {
                Some(n) if n > 0 => Ok(V::U64(n)),
                _ => Err("must be a positive integer (the SDKAppID)".into()),
            }
        }
        Kind::Level => {
            let parsed = match raw {
                Raw::Int(n) => i64::try_from(*n)
                    .ok()
                    .and_then(crate::codes::LogLevel::from_number)
                    .ok_or_else(String::new),
                _ => text.map_or(Err(String::new()), crate::codes::LogLevel::parse),
            };
            parsed
                .map(|l| V::String(l.short_name().into()))
                .map_err(|_| "must be none, debug, info, warn or error (or V2TIM_LOG_*, or 0, 3, 4, 5, 6)".into())
        }
        Kind::Platform => text
            .and_then(|t| Platform::parse(t).ok())
            .map(|p| V::String(p.name().into()))
            .ok_or_else(|| "must be one of Android, iPhone, iPad, Windows, Mac, Linux, Web".into()),
        Kind::NonNegative => parse_uint(raw)
            .map(V::U64)
            .ok_or_else(|| "must be a non-negative integer".into()),
        Kind::Positive => match parse_uint(raw) {
            Some(n) if n > 0 => Ok(V::U64(n)),
            _ => Err("must be a positive integer".into()),
        },
        Kind::Url => match text {
            Some(t) => match url_problem(t) {
                None => Ok(V::String(t.trim().into())),
                Some(p) => Err(p),
            },
            None => Err("must be a ws:// or wss:// URL".into()),
        },
        Kind::OptPath => match text {
            Some(t) if t.is_empty() => Ok(V::Nil),
            Some(t) => Ok(V::String(t.into())),
            None => Err("must be a path (or empty for none)".into()),
        },
        Kind::Path => match text {
            Some(t) if !t.is_empty() => Ok(V::String(t.into())),
            _ => Err("must be a non-empty path".into()),
        },
        Kind::SocketPath => match text {
            Some(t) if !t.is_empty() && t.len() <= MAX_SOCKET_PATH_BYTES => Ok(V::String(t.into())),
            _ => Err(format!(
                "must be a non-empty path of at most {MAX_SOCKET_PATH_BYTES} bytes (the limit of a Unix socket address)"
            )),
        },
        Kind::Mode => parse_mode(raw).map(|m| V::U64(u64::from(m))),
        Kind::IdList => {
            const PROBLEM: &str = "must be a list of numeric ids (uids or gids): a TOML array, or a comma-separated list in the environment";
            let items: Vec<Raw> = match raw {
                Raw::Array(a) => a.clone(),
                Raw::Text(s) => s
                    .split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(|p| Raw::Text(p.into()))
                    .collect(),
                _ => return Err(PROBLEM.into()),
            };
            let ids: Option<Vec<config::Value>> = items
                .iter()
                .map(|i| parse_id(i).map(|n| config::Value::new(None, V::U64(u64::from(n)))))
                .collect();
            ids.map(V::Array).ok_or_else(|| PROBLEM.into())
        }
        Kind::Multiplier => match parse_number(raw) {
            Some(x) if x >= 1.0 => Ok(V::Float(x)),
            _ => Err("must be a number >= 1".into()),
        },
        Kind::Fraction => match parse_number(raw) {
            Some(x) if (0.0..1.0).contains(&x) => Ok(V::Float(x)),
            _ => Err("must be a number >= 0 and < 1".into()),
        },
        Kind::Bool => parse_bool(raw)
            .map(V::Boolean)
            .ok_or_else(|| "must be true or false".into()),
    }
}

// ---------------------------------------------------------------------------------------
// Layers
// ---------------------------------------------------------------------------------------

/// One source, checked and canonical: dotted key → value.
#[derive(Debug, Clone)]
struct Layer {
    origin_of: BTreeMap<&'static str, Origin>,
    values: config::Map<String, config::Value>,
}

impl Layer {
    fn new() -> Layer {
        Layer {
            origin_of: BTreeMap::new(),
            values: config::Map::new(),
        }
    }

    fn set(&mut self, key: &str, raw: &Raw, origin: Origin) -> Result<(), ConfigError> {
        let Some((key, kind)) = lookup(key) else {
            return Err(ConfigError::UnknownKey {
                key: key.into(),
                suggestion: suggest(key),
                origin,
            });
        };
        let value = normalise(kind, raw).map_err(|problem| ConfigError::BadValue {
            key: key.into(),
            value: raw.shown(),
            origin: origin.clone(),
            problem,
        })?;
        self.values.insert(key.into(), config::Value::new(None, value));
        self.origin_of.insert(key, origin);
        Ok(())
    }
}

impl config::Source for Layer {
    fn clone_into_box(&self) -> Box<dyn config::Source + Send + Sync> {
        Box::new(self.clone())
    }

    fn collect(&self) -> Result<config::Map<String, config::Value>, config::ConfigError> {
        Ok(self.values.clone())
    }
}

fn file_layer(path: &Path) -> Result<Layer, ConfigError> {
    use config::Source;
    let origin = Origin::File(path.to_path_buf());
    let file_error = |message: String| ConfigError::File {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| file_error(format!("cannot read: {e}")))?;
    let table = config::File::from_str(&text, config::FileFormat::Toml)
        .collect()
        .map_err(|e| file_error(e.to_string()))?;
    let mut layer = Layer::new();
    // Sorted, so that the first problem reported does not depend on hash order.
    let sorted: BTreeMap<_, _> = table.iter().collect();
    for (section, value) in sorted {
        let config::ValueKind::Table(entries) = &value.kind else {
            return Err(ConfigError::UnknownKey {
                key: section.clone(),
                suggestion: suggest(section),
                origin,
            });
        };
        if !SECTIONS.contains(&section.as_str()) {
            return Err(ConfigError::UnknownKey {
                key: section.clone(),
                suggestion: SECTIONS
                    .iter()
                    .find(|s| section.eq_ignore_ascii_case(s))
                    .copied(),
                origin,
            });
        }
        let sorted: BTreeMap<_, _> = entries.iter().collect();
        for (name, v) in sorted {
            layer.set(&format!("{section}.{name}"), &Raw::from_value(v), origin.clone())?;
        }
    }
    Ok(layer)
}

/// `IMLINK_<SECTION>__<KEY>` variables. Names without `__` (like `imlinkctl`'s
/// `IMLINK_SOCKET`) are not configuration keys and are left alone.
fn env_layer(env: &Env) -> Result<Layer, ConfigError> {
    let mut layer = Layer::new();
    for (name, value) in &env.vars {
        let Some(rest) = name.strip_prefix("IMLINK_") else {
            continue;
        };
        if !rest.contains("__") {
            continue;
        }
        let key = rest.replacen("__", ".", 1).to_ascii_lowercase();
        layer.set(&key, &Raw::Text(value.clone()), Origin::Env(name.clone()))?;
    }
    Ok(layer)
}

/// Values given on the command line, highest precedence. `None` leaves a key alone.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    /// `--config PATH`: read this file instead of [`DEFAULT_CONFIG_PATH`]; it must exist.
    pub config: Option<PathBuf>,
    /// `--sdk-app-id N`.
    pub sdk_app_id: Option<u64>,
    /// `--log-level LEVEL`.
    pub log_level: Option<crate::codes::LogLevel>,
    /// `--server URL`.
    pub server: Option<String>,
    /// `--socket PATH`.
    pub socket: Option<PathBuf>,
    /// `--state-dir PATH`.
    pub state_dir: Option<PathBuf>,
}

fn path_raw(p: &Path) -> Raw {
    // Config values are strings; a path that is not UTF-8 is shown lossily and then
    // refused below rather than silently changed.
    Raw::Text(p.to_string_lossy().into_owned())
}

fn flag_layer(o: &Overrides) -> Result<Layer, ConfigError> {
    let mut layer = Layer::new();
    if let Some(n) = o.sdk_app_id {
        layer.set("sdk.app_id", &Raw::Int(i128::from(n)), Origin::Flag("--sdk-app-id"))?;
    }
    if let Some(l) = o.log_level {
        layer.set("sdk.log_level", &Raw::Text(l.short_name().into()), Origin::Flag("--log-level"))?;
    }
    if let Some(url) = &o.server {
        layer.set("server.url", &Raw::Text(url.clone()), Origin::Flag("--server"))?;
    }
    for (key, flag, path) in [
        ("api.socket", "--socket", &o.socket),
        ("state.dir", "--state-dir", &o.state_dir),
    ] {
        if let Some(p) = path {
            if p.to_str().is_none() {
                return Err(ConfigError::BadValue {
                    key: key.into(),
                    value: p.to_string_lossy().into_owned(),
                    origin: Origin::Flag(flag),
                    problem: "must be valid UTF-8".into(),
                });
            }
            layer.set(key, &path_raw(p), Origin::Flag(flag))?;
        }
    }
    Ok(layer)
}

// ---------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------

/// The effective configuration and where each value came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// The configuration.
    pub config: Config,
    /// The file that was read, if any.
    pub file: Option<PathBuf>,
    /// The source of every key (`Origin::Default` when nothing set it).
    pub origins: BTreeMap<&'static str, Origin>,
}

impl Loaded {
    /// Where `key` (dotted) got its value.
    pub fn origin(&self, key: &str) -> &Origin {
        self.origins.get(key).unwrap_or(&Origin::Default)
    }
}

/// Loads the configuration: defaults → file → environment → flags (DESIGN §4).
///
/// The file is `o.config`, which must exist, else [`DEFAULT_CONFIG_PATH`] if it exists.
pub fn load(o: &Overrides, env: &Env) -> Result<Loaded, ConfigError> {
    load_with_default_path(o, env, Path::new(DEFAULT_CONFIG_PATH))
}

fn load_with_default_path(o: &Overrides, env: &Env, default_path: &Path) -> Result<Loaded, ConfigError> {
    let file = match &o.config {
        Some(p) => Some(p.clone()),
        // A missing default file is fine; one that exists but cannot be read is not.
        None => default_path.exists().then(|| default_path.to_path_buf()),
    };
    let defaults = Config::defaults_in(env);
    let mut builder = config::Config::builder().add_source(
        config::Config::try_from(&defaults).map_err(|e| ConfigError::Inconsistent {
            message: format!("internal error: the defaults do not serialise: {e}"),
        })?,
    );
    let mut origins: BTreeMap<&'static str, Origin> = keys().map(|k| (k, Origin::Default)).collect();
    let mut layers = Vec::new();
    if let Some(path) = &file {
        layers.push(file_layer(path)?);
    }
    layers.push(env_layer(env)?);
    layers.push(flag_layer(o)?);
    for layer in layers {
        origins.extend(layer.origin_of.iter().map(|(k, v)| (*k, v.clone())));
        builder = builder.add_source(layer);
    }
    let config: Config = builder
        .build()
        .and_then(config::Config::try_deserialize)
        .map_err(|e| ConfigError::Inconsistent {
            message: format!("internal error: the checked configuration does not deserialise: {e}"),
        })?;
    let loaded = Loaded { config, file, origins };
    check_consistency(&loaded)?;
    Ok(loaded)
}

/// The rules between keys.
fn check_consistency(l: &Loaded) -> Result<(), ConfigError> {
    let c = &l.config;
    let show = |key: &str, value: String| format!("{key} = {value} ({})", l.origin(key));
    let rule = |ok: bool, a: (&str, String), relation: &str, b: (&str, String)| {
        if ok {
            Ok(())
        } else {
            Err(ConfigError::Inconsistent {
                message: format!("{} must be {relation} {}", show(a.0, a.1), show(b.0, b.1)),
            })
        }
    };
    rule(
        c.server.heartbeat_timeout_ms > c.server.heartbeat_interval_ms,
        ("server.heartbeat_timeout_ms", c.server.heartbeat_timeout_ms.to_string()),
        "greater than",
        ("server.heartbeat_interval_ms", c.server.heartbeat_interval_ms.to_string()),
    )?;
    rule(
        c.reconnect.initial_ms <= c.reconnect.max_ms,
        ("reconnect.initial_ms", c.reconnect.initial_ms.to_string()),
        "at most",
        ("reconnect.max_ms", c.reconnect.max_ms.to_string()),
    )
}

/// A SIGHUP reload: loads again from the same file, environment snapshot and flags.
/// The error is the [`ConfigError`] as text (it names key, value and source).
pub fn reloader(o: Overrides, env: Env) -> Arc<dyn Fn() -> Result<Config, String> + Send + Sync> {
    Arc::new(move || load(&o, &env).map(|l| l.config).map_err(|e| e.to_string()))
}

/// `socket_mode` in any deserialised form: an integer, or octal digits in a string.
fn deserialize_mode<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Mode {
        Int(i64),
        Text(String),
    }
    let raw = match Mode::deserialize(d)? {
        Mode::Int(n) => Raw::Int(i128::from(n)),
        Mode::Text(s) => Raw::Str(s),
    };
    parse_mode(&raw).map_err(serde::de::Error::custom)
}

// ---------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------

impl Loaded {
    /// The effective configuration as TOML that [`load`] reads back to the same values,
    /// each key followed by a comment saying where its value came from.
    pub fn to_toml(&self) -> String {
        let c = &self.config;
        let mut out = String::from("# Effective configuration of imlinkd\n");
        match &self.file {
            Some(p) => out.push_str(&format!("# file: {}\n", p.display())),
            None => out.push_str(&format!("# file: none ({DEFAULT_CONFIG_PATH} does not exist)\n")),
        }
        let ids = |v: &[u32]| format!("[{}]", v.iter().map(u32::to_string).collect::<Vec<_>>().join(", "));
        let s = |v: &str| toml::Value::String(v.into()).to_string();
        let p = |v: &Path| s(&v.to_string_lossy());
        let f = |x: f64| toml::Value::Float(x).to_string();
        let values: Vec<(&str, Option<String>)> = vec![
            ("sdk.app_id", c.sdk.app_id.map(|n| n.to_string())),
            ("sdk.log_level", Some(s(c.sdk.log_level.short_name()))),
            ("sdk.platform", Some(s(c.sdk.platform.name()))),
            ("sdk.usersig_expiring_lead_secs", Some(c.sdk.usersig_expiring_lead_secs.to_string())),
            ("server.url", Some(s(&c.server.url))),
            ("server.ca_file", c.server.ca_file.as_deref().map(p)),
            ("server.connect_timeout_ms", Some(c.server.connect_timeout_ms.to_string())),
            ("server.request_timeout_ms", Some(c.server.request_timeout_ms.to_string())),
            ("server.login_timeout_ms", Some(c.server.login_timeout_ms.to_string())),
            ("server.heartbeat_interval_ms", Some(c.server.heartbeat_interval_ms.to_string())),
            ("server.heartbeat_timeout_ms", Some(c.server.heartbeat_timeout_ms.to_string())),
            ("reconnect.initial_ms", Some(c.reconnect.initial_ms.to_string())),
            ("reconnect.max_ms", Some(c.reconnect.max_ms.to_string())),
            ("reconnect.multiplier", Some(f(c.reconnect.multiplier))),
            ("reconnect.jitter", Some(f(c.reconnect.jitter))),
            ("reconnect.stable_ms", Some(c.reconnect.stable_ms.to_string())),
            ("api.socket", Some(p(&c.api.socket))),
            ("api.socket_mode", Some(s(&format!("{:04o}", c.api.socket_mode)))),
            ("api.allow_uids", Some(ids(&c.api.allow_uids))),
            ("api.allow_gids", Some(ids(&c.api.allow_gids))),
            ("api.readonly_uids", Some(ids(&c.api.readonly_uids))),
            ("api.readonly_gids", Some(ids(&c.api.readonly_gids))),
            ("api.max_clients", Some(c.api.max_clients.to_string())),
            ("api.max_line_bytes", Some(c.api.max_line_bytes.to_string())),
            ("api.subscriber_queue", Some(c.api.subscriber_queue.to_string())),
            ("events.history", Some(c.events.history.to_string())),
            ("state.dir", Some(p(&c.state.dir))),
            ("state.restore_session", Some(c.state.restore_session.to_string())),
        ];
        let mut section = "";
        for (key, value) in values {
            let (sec, name) = key.split_once('.').unwrap_or(("", key));
            if sec != section {
                out.push_str(&format!("\n[{sec}]\n"));
                section = sec;
            }
            let origin = self.origin(key);
            match value {
                Some(v) => out.push_str(&format!("{name} = {v}  # {origin}\n")),
                None => out.push_str(&format!("# {name} is unset  # {origin}\n")),
            }
        }
        out
    }
}
