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
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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
    /// A connection with no subscription and no request in flight that sends nothing for
    /// this long is closed; so is one that leaves its replies unread for this long.
    pub idle_timeout_ms: u64,
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
            idle_timeout_ms: 300_000,
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
    v.split(':')
        .next()
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
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
            vars: vars
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
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
    ("api.idle_timeout_ms", Kind::Positive),
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
            Raw::Array(a) => format!(
                "[{}]",
                a.iter().map(Raw::shown).collect::<Vec<_>>().join(", ")
            ),
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
            let digits = t
                .strip_prefix("0o")
                .or_else(|| t.strip_prefix("0O"))
                .unwrap_or(t);
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
    if uri.host().is_none_or(str::is_empty) {
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
            Some("") => Ok(V::Nil),
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
        self.values
            .insert(key.into(), config::Value::new(None, value));
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
    let text =
        std::fs::read_to_string(path).map_err(|e| file_error(format!("cannot read: {e}")))?;
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
            layer.set(
                &format!("{section}.{name}"),
                &Raw::from_value(v),
                origin.clone(),
            )?;
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

/// The command line of `imlinkd`. Kept in the library so that manual pages and shell
/// completions can be generated from it.
#[derive(Debug, Clone, PartialEq, clap::Parser)]
#[command(
    name = "imlinkd",
    version,
    about = "Keeps an instant-messaging account logged in and serves a JSON-RPC API on a Unix socket",
    after_help = "Configuration: defaults < file < IMLINK_<SECTION>__<KEY> environment < flags. \
                  See docs/configuration.md."
)]
pub struct DaemonArgs {
    /// Configuration file [default: /etc/imlink/imlinkd.toml, if it exists]
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// The SDKAppID to initialise with (sdk.app_id)
    #[arg(long, value_name = "N")]
    pub sdk_app_id: Option<u64>,
    /// none|debug|info|warn|error, V2TIM_LOG_*, or 0|3|4|5|6 (sdk.log_level)
    #[arg(long, value_name = "LEVEL", value_parser = crate::codes::LogLevel::parse)]
    pub log_level: Option<crate::codes::LogLevel>,
    /// ws:// or wss:// URL of the access endpoint (server.url)
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// Path of the API socket (api.socket)
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Directory of session.json (state.dir)
    #[arg(long, value_name = "PATH")]
    pub state_dir: Option<PathBuf>,
    /// Print the effective configuration and where each value came from, then exit
    /// (status 1 and the problem on stderr if it is invalid)
    #[arg(long)]
    pub check_config: bool,
}

impl DaemonArgs {
    /// The flags that take part in the configuration.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            config: self.config.clone(),
            sdk_app_id: self.sdk_app_id,
            log_level: self.log_level,
            server: self.server.clone(),
            socket: self.socket.clone(),
            state_dir: self.state_dir.clone(),
        }
    }
}

fn path_raw(p: &Path) -> Raw {
    // Config values are strings; a path that is not UTF-8 is shown lossily and then
    // refused below rather than silently changed.
    Raw::Text(p.to_string_lossy().into_owned())
}

fn flag_layer(o: &Overrides) -> Result<Layer, ConfigError> {
    let mut layer = Layer::new();
    if let Some(n) = o.sdk_app_id {
        layer.set(
            "sdk.app_id",
            &Raw::Int(i128::from(n)),
            Origin::Flag("--sdk-app-id"),
        )?;
    }
    if let Some(l) = o.log_level {
        layer.set(
            "sdk.log_level",
            &Raw::Text(l.short_name().into()),
            Origin::Flag("--log-level"),
        )?;
    }
    if let Some(url) = &o.server {
        layer.set(
            "server.url",
            &Raw::Text(url.clone()),
            Origin::Flag("--server"),
        )?;
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

fn load_with_default_path(
    o: &Overrides,
    env: &Env,
    default_path: &Path,
) -> Result<Loaded, ConfigError> {
    let file = match &o.config {
        Some(p) => Some(p.clone()),
        // A missing default file is fine; one that exists but cannot be read is not.
        None => default_path.exists().then(|| default_path.to_path_buf()),
    };
    let defaults = Config::defaults_in(env);
    let mut builder =
        config::Config::builder().add_source(config::Config::try_from(&defaults).map_err(|e| {
            ConfigError::Inconsistent {
                message: format!("internal error: the defaults do not serialise: {e}"),
            }
        })?);
    let mut origins: BTreeMap<&'static str, Origin> =
        keys().map(|k| (k, Origin::Default)).collect();
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
    let loaded = Loaded {
        config,
        file,
        origins,
    };
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
        (
            "server.heartbeat_timeout_ms",
            c.server.heartbeat_timeout_ms.to_string(),
        ),
        "greater than",
        (
            "server.heartbeat_interval_ms",
            c.server.heartbeat_interval_ms.to_string(),
        ),
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
            None => out.push_str(&format!(
                "# file: none ({DEFAULT_CONFIG_PATH} does not exist)\n"
            )),
        }
        let ids = |v: &[u32]| {
            format!(
                "[{}]",
                v.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
            )
        };
        let s = |v: &str| toml::Value::String(v.into()).to_string();
        let p = |v: &Path| s(&v.to_string_lossy());
        let f = |x: f64| toml::Value::Float(x).to_string();
        let values: Vec<(&str, Option<String>)> = vec![
            ("sdk.app_id", c.sdk.app_id.map(|n| n.to_string())),
            ("sdk.log_level", Some(s(c.sdk.log_level.short_name()))),
            ("sdk.platform", Some(s(c.sdk.platform.name()))),
            (
                "sdk.usersig_expiring_lead_secs",
                Some(c.sdk.usersig_expiring_lead_secs.to_string()),
            ),
            ("server.url", Some(s(&c.server.url))),
            ("server.ca_file", c.server.ca_file.as_deref().map(p)),
            (
                "server.connect_timeout_ms",
                Some(c.server.connect_timeout_ms.to_string()),
            ),
            (
                "server.request_timeout_ms",
                Some(c.server.request_timeout_ms.to_string()),
            ),
            (
                "server.login_timeout_ms",
                Some(c.server.login_timeout_ms.to_string()),
            ),
            (
                "server.heartbeat_interval_ms",
                Some(c.server.heartbeat_interval_ms.to_string()),
            ),
            (
                "server.heartbeat_timeout_ms",
                Some(c.server.heartbeat_timeout_ms.to_string()),
            ),
            (
                "reconnect.initial_ms",
                Some(c.reconnect.initial_ms.to_string()),
            ),
            ("reconnect.max_ms", Some(c.reconnect.max_ms.to_string())),
            ("reconnect.multiplier", Some(f(c.reconnect.multiplier))),
            ("reconnect.jitter", Some(f(c.reconnect.jitter))),
            (
                "reconnect.stable_ms",
                Some(c.reconnect.stable_ms.to_string()),
            ),
            ("api.socket", Some(p(&c.api.socket))),
            (
                "api.socket_mode",
                Some(s(&format!("{:04o}", c.api.socket_mode))),
            ),
            ("api.allow_uids", Some(ids(&c.api.allow_uids))),
            ("api.allow_gids", Some(ids(&c.api.allow_gids))),
            ("api.readonly_uids", Some(ids(&c.api.readonly_uids))),
            ("api.readonly_gids", Some(ids(&c.api.readonly_gids))),
            ("api.max_clients", Some(c.api.max_clients.to_string())),
            ("api.max_line_bytes", Some(c.api.max_line_bytes.to_string())),
            (
                "api.subscriber_queue",
                Some(c.api.subscriber_queue.to_string()),
            ),
            (
                "api.idle_timeout_ms",
                Some(c.api.idle_timeout_ms.to_string()),
            ),
            ("events.history", Some(c.events.history.to_string())),
            ("state.dir", Some(p(&c.state.dir))),
            (
                "state.restore_session",
                Some(c.state.restore_session.to_string()),
            ),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes::LogLevel;
    use std::io::Write;

    /// A non-root user's environment with nothing of imlink in it.
    fn user_env(extra: &[(&str, &str)]) -> Env {
        let mut vars = vec![
            ("HOME", "/home/u"),
            ("XDG_RUNTIME_DIR", "/run/user/1000"),
            ("XDG_STATE_HOME", "/home/u/.state"),
        ];
        vars.extend_from_slice(extra);
        Env::new(vars, 1000)
    }

    fn toml_file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    fn with_file(f: &tempfile::NamedTempFile) -> Overrides {
        Overrides {
            config: Some(f.path().to_path_buf()),
            ..Overrides::default()
        }
    }

    fn load_err(o: &Overrides, env: &Env) -> String {
        load_with_default_path(o, env, Path::new("/nonexistent/imlinkd.toml"))
            .unwrap_err()
            .to_string()
    }

    fn load_ok(o: &Overrides, env: &Env) -> Loaded {
        load_with_default_path(o, env, Path::new("/nonexistent/imlinkd.toml")).unwrap()
    }

    #[test]
    fn nothing_configured_gives_the_design_defaults() {
        let l = load_ok(&Overrides::default(), &user_env(&[]));
        let mut expected = Config::default();
        expected.api.socket = "/run/user/1000/imlink/imlinkd.sock".into();
        expected.state.dir = "/home/u/.state/imlink".into();
        assert_eq!(l.config, expected);
        assert_eq!(l.config.server.url, "ws://127.0.0.1:8600/v1/connect");
        assert_eq!(l.config.api.socket_mode, 0o660);
        assert_eq!(l.file, None);
        assert!(l.origins.values().all(|o| *o == Origin::Default));
        assert_eq!(l.origins.len(), KEYS.len());
    }

    #[test]
    fn default_paths_follow_systemd_then_root_then_xdg() {
        let systemd = Env::new(
            [
                ("RUNTIME_DIRECTORY", "/run/imlink:/run/other"),
                ("STATE_DIRECTORY", "/var/lib/x"),
            ],
            0,
        );
        assert_eq!(
            default_socket_path_in(&systemd),
            PathBuf::from("/run/imlink/imlinkd.sock")
        );
        assert_eq!(default_state_dir_in(&systemd), PathBuf::from("/var/lib/x"));
        let root = Env::new([("XDG_RUNTIME_DIR", "/run/user/0")], 0);
        assert_eq!(
            default_socket_path_in(&root),
            PathBuf::from("/run/imlink/imlinkd.sock")
        );
        assert_eq!(
            default_state_dir_in(&root),
            PathBuf::from("/var/lib/imlink")
        );
        let user = user_env(&[]);
        assert_eq!(
            default_socket_path_in(&user),
            PathBuf::from("/run/user/1000/imlink/imlinkd.sock")
        );
        assert_eq!(
            default_state_dir_in(&user),
            PathBuf::from("/home/u/.state/imlink")
        );
        let bare = Env::new([("HOME", "/h")], 42);
        assert_eq!(
            default_socket_path_in(&bare),
            PathBuf::from("/tmp/imlink-42/imlinkd.sock")
        );
        assert_eq!(
            default_state_dir_in(&bare),
            PathBuf::from("/h/.local/state/imlink")
        );
    }

    #[test]
    fn precedence_is_defaults_then_file_then_env_then_flags() {
        let f = toml_file(
            "[server]\nurl = \"ws://file:1/v1/connect\"\nconnect_timeout_ms = 111\nrequest_timeout_ms = 222\n\
             [sdk]\nlog_level = \"warn\"\n",
        );
        let env = user_env(&[
            ("IMLINK_SERVER__URL", "ws://env:2/v1/connect"),
            ("IMLINK_SERVER__CONNECT_TIMEOUT_MS", "333"),
        ]);
        let o = Overrides {
            server: Some("wss://flag:3/v1/connect".into()),
            ..with_file(&f)
        };
        let l = load_ok(&o, &env);
        assert_eq!(l.config.server.url, "wss://flag:3/v1/connect");
        assert_eq!(l.origin("server.url"), &Origin::Flag("--server"));
        assert_eq!(l.config.server.connect_timeout_ms, 333);
        assert_eq!(
            l.origin("server.connect_timeout_ms"),
            &Origin::Env("IMLINK_SERVER__CONNECT_TIMEOUT_MS".into())
        );
        assert_eq!(l.config.server.request_timeout_ms, 222);
        assert_eq!(
            l.origin("server.request_timeout_ms"),
            &Origin::File(f.path().to_path_buf())
        );
        assert_eq!(l.config.sdk.log_level, LogLevel::Warn);
        assert_eq!(l.config.server.login_timeout_ms, 30_000);
        assert_eq!(l.origin("server.login_timeout_ms"), &Origin::Default);

        // Without the flag the environment wins; without the environment, the file.
        let l = load_ok(&with_file(&f), &env);
        assert_eq!(l.config.server.url, "ws://env:2/v1/connect");
        let l = load_ok(&with_file(&f), &user_env(&[]));
        assert_eq!(l.config.server.url, "ws://file:1/v1/connect");
    }

    #[test]
    fn every_flag_overrides_its_key() {
        let f = toml_file("[sdk]\napp_id = 1\nlog_level = 3\n[api]\nsocket = \"/f.sock\"\n[state]\ndir = \"/f\"\n");
        let env = user_env(&[("IMLINK_SDK__APP_ID", "2"), ("IMLINK_STATE__DIR", "/e")]);
        let o = Overrides {
            sdk_app_id: Some(1400000001),
            log_level: Some(LogLevel::Error),
            server: Some("ws://x:1/".into()),
            socket: Some("/flag.sock".into()),
            state_dir: Some("/flag-state".into()),
            ..with_file(&f)
        };
        let c = load_ok(&o, &env).config;
        assert_eq!(c.sdk.app_id, Some(1400000001));
        assert_eq!(c.sdk.log_level, LogLevel::Error);
        assert_eq!(c.server.url, "ws://x:1/");
        assert_eq!(c.api.socket, PathBuf::from("/flag.sock"));
        assert_eq!(c.state.dir, PathBuf::from("/flag-state"));
    }

    #[test]
    fn env_sets_every_kind_of_value() {
        let env = user_env(&[
            ("IMLINK_SDK__APP_ID", "1400000000"),
            ("IMLINK_SDK__LOG_LEVEL", "V2TIM_LOG_DEBUG"),
            ("IMLINK_SDK__PLATFORM", "ipad"),
            ("IMLINK_SERVER__CA_FILE", "/etc/ca.pem"),
            ("IMLINK_RECONNECT__MULTIPLIER", "2"),
            ("IMLINK_RECONNECT__JITTER", "0"),
            ("IMLINK_API__ALLOW_UIDS", "0, 1000,1001"),
            ("IMLINK_API__READONLY_GIDS", ""),
            ("IMLINK_API__SOCKET_MODE", "600"),
            ("IMLINK_STATE__RESTORE_SESSION", "false"),
            // imlinkctl's variable is not a configuration key and must not be refused.
            ("IMLINK_SOCKET", "/elsewhere.sock"),
        ]);
        let c = load_ok(&Overrides::default(), &env).config;
        assert_eq!(c.sdk.app_id, Some(1400000000));
        assert_eq!(c.sdk.log_level, LogLevel::Debug);
        assert_eq!(c.sdk.platform, Platform::IPad);
        assert_eq!(c.server.ca_file, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(c.reconnect.multiplier, 2.0);
        assert_eq!(c.reconnect.jitter, 0.0);
        assert_eq!(c.api.allow_uids, vec![0, 1000, 1001]);
        assert_eq!(c.api.readonly_gids, Vec::<u32>::new());
        assert_eq!(c.api.socket_mode, 0o600);
        assert!(!c.state.restore_session);
        assert_eq!(
            c.api.socket,
            PathBuf::from("/run/user/1000/imlink/imlinkd.sock")
        );
    }

    #[test]
    fn an_empty_env_value_unsets_an_optional_key_from_the_file() {
        let f = toml_file("[sdk]\napp_id = 7\n[server]\nca_file = \"/ca.pem\"\n");
        let env = user_env(&[("IMLINK_SDK__APP_ID", ""), ("IMLINK_SERVER__CA_FILE", "")]);
        let c = load_ok(&with_file(&f), &env).config;
        assert_eq!(c.sdk.app_id, None);
        assert_eq!(c.server.ca_file, None);
        assert_eq!(
            load_ok(&with_file(&f), &user_env(&[])).config.sdk.app_id,
            Some(7)
        );
    }

    #[test]
    fn unknown_key_in_the_file_names_key_and_file() {
        let f = toml_file("[server]\nurll = \"ws://x/\"\n");
        let e = load_err(&with_file(&f), &user_env(&[]));
        assert_eq!(
            e,
            format!(
                "{}: unknown key server.urll (did you mean server.url?)",
                f.path().display()
            )
        );
    }

    #[test]
    fn unknown_section_and_top_level_key_in_the_file_are_refused() {
        let f = toml_file("[servers]\nurl = \"ws://x/\"\n");
        let e = load_err(&with_file(&f), &user_env(&[]));
        assert!(
            e.starts_with(&format!("{}: unknown key servers", f.path().display())),
            "{e}"
        );
        let f = toml_file("log_level = \"info\"\n");
        let e = load_err(&with_file(&f), &user_env(&[]));
        assert!(
            e.starts_with(&format!("{}: unknown key log_level", f.path().display())),
            "{e}"
        );
    }

    #[test]
    fn unknown_key_in_the_environment_names_the_variable() {
        let e = load_err(
            &Overrides::default(),
            &user_env(&[("IMLINK_SERVER__NOPE", "1")]),
        );
        assert_eq!(e, "IMLINK_SERVER__NOPE: unknown key server.nope");
        let e = load_err(
            &Overrides::default(),
            &user_env(&[("IMLINK_NOPE__URL", "1")]),
        );
        assert!(
            e.starts_with("IMLINK_NOPE__URL: unknown key nope.url"),
            "{e}"
        );
        let e = load_err(
            &Overrides::default(),
            &user_env(&[("IMLINK_SERVER__URLL", "ws://h/")]),
        );
        assert_eq!(
            e,
            "IMLINK_SERVER__URLL: unknown key server.urll (did you mean server.url?)"
        );
    }

    #[test]
    fn bad_env_value_names_variable_value_and_key() {
        let e = load_err(
            &Overrides::default(),
            &user_env(&[("IMLINK_SERVER__CONNECT_TIMEOUT_MS", "abc")]),
        );
        assert_eq!(
            e,
            "IMLINK_SERVER__CONNECT_TIMEOUT_MS=abc: server.connect_timeout_ms must be a positive integer"
        );
        let e = load_err(
            &Overrides::default(),
            &user_env(&[("IMLINK_SDK__USERSIG_EXPIRING_LEAD_SECS", "-1")]),
        );
        assert_eq!(
            e,
            "IMLINK_SDK__USERSIG_EXPIRING_LEAD_SECS=-1: sdk.usersig_expiring_lead_secs must be a non-negative integer"
        );
    }

    #[test]
    fn bad_file_value_names_file_key_and_value() {
        let f = toml_file("[server]\nconnect_timeout_ms = \"abc\"\n");
        let e = load_err(&with_file(&f), &user_env(&[]));
        assert_eq!(
            e,
            format!(
                "{}: server.connect_timeout_ms = \"abc\": server.connect_timeout_ms must be a positive integer",
                f.path().display()
            )
        );
    }

    #[test]
    fn bad_flag_value_names_the_flag() {
        let o = Overrides {
            server: Some("http://x/".into()),
            ..Overrides::default()
        };
        assert_eq!(
            load_err(&o, &user_env(&[])),
            "--server http://x/: server.url must be a ws:// or wss:// URL"
        );
        let o = Overrides {
            sdk_app_id: Some(0),
            ..Overrides::default()
        };
        assert_eq!(
            load_err(&o, &user_env(&[])),
            "--sdk-app-id 0: sdk.app_id must be a positive integer (the SDKAppID)"
        );
        let long = format!("/{}", "s".repeat(MAX_SOCKET_PATH_BYTES));
        let o = Overrides {
            socket: Some(long.clone().into()),
            ..Overrides::default()
        };
        let e = load_err(&o, &user_env(&[]));
        assert!(
            e.starts_with(&format!(
                "--socket {long}: api.socket must be a non-empty path of at most 107 bytes"
            )),
            "{e}"
        );
    }

    /// Each per-key rule refuses what it should; the message names key, value and source.
    #[test]
    fn every_value_rule_refuses_bad_values() {
        let cases: &[(&str, &str, &str)] = &[
            ("sdk.app_id", "0", "must be a positive integer"),
            ("sdk.app_id", "x", "must be a positive integer"),
            ("sdk.log_level", "verbose", "must be none, debug, info"),
            ("sdk.log_level", "2", "must be none, debug, info"),
            ("sdk.platform", "BeOS", "must be one of Android"),
            ("server.url", "http://h/", "must be a ws:// or wss:// URL"),
            ("server.url", "ws://", "must be a ws:// or wss:// URL"),
            ("server.url", "not a url", "must be a ws:// or wss:// URL"),
            (
                "server.request_timeout_ms",
                "0",
                "must be a positive integer",
            ),
            (
                "server.login_timeout_ms",
                "1.5",
                "must be a positive integer",
            ),
            (
                "server.heartbeat_interval_ms",
                "",
                "must be a positive integer",
            ),
            ("reconnect.multiplier", "0.9", "must be a number >= 1"),
            ("reconnect.multiplier", "NaN", "must be a number >= 1"),
            ("reconnect.jitter", "1", "must be a number >= 0 and < 1"),
            ("reconnect.jitter", "-0.1", "must be a number >= 0 and < 1"),
            ("reconnect.stable_ms", "0", "must be a positive integer"),
            ("api.socket", "", "must be a non-empty path"),
            (
                "api.socket_mode",
                "1777",
                "must be a file mode from 0 to 0777",
            ),
            (
                "api.socket_mode",
                "0689",
                "must be a file mode from 0 to 0777",
            ),
            ("api.allow_uids", "1,x", "must be a list of numeric ids"),
            ("api.allow_gids", "-1", "must be a list of numeric ids"),
            ("api.max_clients", "0", "must be a positive integer"),
            ("api.max_line_bytes", "1e6", "must be a positive integer"),
            ("api.subscriber_queue", "0", "must be a positive integer"),
            ("events.history", "0", "must be a positive integer"),
            ("state.dir", "", "must be a non-empty path"),
            ("state.restore_session", "maybe", "must be true or false"),
        ];
        for (key, value, problem) in cases {
            let var = env_var_for(key);
            let e = load_err(&Overrides::default(), &user_env(&[(&var, value)]));
            assert!(
                e.starts_with(&format!("{var}={value}: {key} {problem}")),
                "{key}={value:?}: {e}"
            );
        }
    }

    #[test]
    fn file_values_must_have_the_right_toml_type() {
        for (line, key) in [
            (
                "[server]\nconnect_timeout_ms = -5",
                "server.connect_timeout_ms = -5",
            ),
            (
                "[state]\nrestore_session = \"yes\"",
                "state.restore_session = \"yes\"",
            ),
            ("[api]\nallow_uids = \"1,2\"", "api.allow_uids = \"1,2\""),
            ("[api]\nallow_uids = [1, -2]", "api.allow_uids = [1, -2]"),
            (
                "[sdk]\napp_id = \"1400000000\"",
                "sdk.app_id = \"1400000000\"",
            ),
            ("[server]\nurl = 5", "server.url = 5"),
        ] {
            let f = toml_file(line);
            let e = load_err(&with_file(&f), &user_env(&[]));
            assert!(
                e.starts_with(&format!("{}: {key}: ", f.path().display())),
                "{line}: {e}"
            );
        }
    }

    #[test]
    fn socket_mode_accepts_octal_strings_and_integers() {
        for (toml, mode) in [
            ("\"0660\"", 0o660),
            ("\"660\"", 0o660),
            ("\"0o600\"", 0o600),
            ("\"0777\"", 0o777),
            ("\"0\"", 0),
            ("0o640", 0o640),
            ("432", 0o660),
        ] {
            let f = toml_file(&format!("[api]\nsocket_mode = {toml}\n"));
            assert_eq!(
                load_ok(&with_file(&f), &user_env(&[]))
                    .config
                    .api
                    .socket_mode,
                mode,
                "{toml}"
            );
        }
        // Decimal 660 is the classic slip for octal 0660: refused, with a hint.
        let f = toml_file("[api]\nsocket_mode = 660\n");
        let e = load_err(&with_file(&f), &user_env(&[]));
        assert!(
            e.contains("api.socket_mode = 660") && e.contains("did you mean \"0660\""),
            "{e}"
        );
        let f = toml_file("[api]\nsocket_mode = 0o1777\n");
        assert!(load_err(&with_file(&f), &user_env(&[])).contains("api.socket_mode = 1023"));
    }

    #[test]
    fn socket_mode_deserialises_from_string_or_integer() {
        let c: ApiConfig = toml::from_str("socket_mode = \"0600\"").unwrap();
        assert_eq!(c.socket_mode, 0o600);
        let c: ApiConfig = toml::from_str("socket_mode = 0o640").unwrap();
        assert_eq!(c.socket_mode, 0o640);
        assert!(toml::from_str::<ApiConfig>("socket_mode = \"0999\"").is_err());
    }

    #[test]
    fn log_level_accepts_names_short_forms_and_numbers() {
        for (v, l) in [
            ("\"none\"", LogLevel::None),
            ("\"V2TIM_LOG_WARN\"", LogLevel::Warn),
            ("\"ERROR\"", LogLevel::Error),
            ("0", LogLevel::None),
            ("3", LogLevel::Debug),
            ("4", LogLevel::Info),
            ("\"5\"", LogLevel::Warn),
            ("6", LogLevel::Error),
        ] {
            let f = toml_file(&format!("[sdk]\nlog_level = {v}\n"));
            assert_eq!(
                load_ok(&with_file(&f), &user_env(&[])).config.sdk.log_level,
                l,
                "{v}"
            );
        }
        let f = toml_file("[sdk]\nlog_level = 1\n");
        assert!(load_err(&with_file(&f), &user_env(&[]))
            .contains("sdk.log_level = 1: sdk.log_level must be"));
    }

    #[test]
    fn heartbeat_timeout_must_exceed_the_interval() {
        let f = toml_file("[server]\nheartbeat_interval_ms = 5000\n");
        let env = user_env(&[("IMLINK_SERVER__HEARTBEAT_TIMEOUT_MS", "5000")]);
        let e = load_err(&with_file(&f), &env);
        assert_eq!(
            e,
            format!(
                "server.heartbeat_timeout_ms = 5000 (environment IMLINK_SERVER__HEARTBEAT_TIMEOUT_MS) must be greater than server.heartbeat_interval_ms = 5000 (file {})",
                f.path().display()
            )
        );
        let env = user_env(&[("IMLINK_SERVER__HEARTBEAT_TIMEOUT_MS", "5001")]);
        assert_eq!(
            load_ok(&with_file(&f), &env)
                .config
                .server
                .heartbeat_timeout_ms,
            5001
        );
    }

    #[test]
    fn backoff_initial_must_not_exceed_max() {
        let env = user_env(&[("IMLINK_RECONNECT__INITIAL_MS", "30001")]);
        let e = load_err(&Overrides::default(), &env);
        assert_eq!(
            e,
            "reconnect.initial_ms = 30001 (environment IMLINK_RECONNECT__INITIAL_MS) must be at most reconnect.max_ms = 30000 (default)"
        );
        let env = user_env(&[("IMLINK_RECONNECT__INITIAL_MS", "30000")]);
        assert_eq!(
            load_ok(&Overrides::default(), &env)
                .config
                .reconnect
                .initial_ms,
            30000
        );
    }

    #[test]
    fn an_explicit_missing_file_is_an_error_but_a_missing_default_file_is_not() {
        let o = Overrides {
            config: Some("/nonexistent/imlink/x.toml".into()),
            ..Overrides::default()
        };
        let e = load_err(&o, &user_env(&[]));
        assert!(
            e.starts_with("/nonexistent/imlink/x.toml: cannot read:"),
            "{e}"
        );
        assert!(load_with_default_path(
            &Overrides::default(),
            &user_env(&[]),
            Path::new("/nonexistent/d.toml")
        )
        .is_ok());
    }

    #[test]
    fn the_default_path_is_read_when_it_exists() {
        let f = toml_file("[events]\nhistory = 5\n");
        let l = load_with_default_path(&Overrides::default(), &user_env(&[]), f.path()).unwrap();
        assert_eq!(l.config.events.history, 5);
        assert_eq!(l.file.as_deref(), Some(f.path()));
    }

    #[test]
    fn toml_syntax_errors_name_the_file() {
        let f = toml_file("[server\nurl = 1\n");
        let e = load_err(&with_file(&f), &user_env(&[]));
        assert!(e.starts_with(&format!("{}: ", f.path().display())), "{e}");
        assert!(e.contains("line 1") || e.contains("TOML"), "{e}");
    }

    /// The shipped file documents every key, and its example values are the defaults
    /// (for root under no systemd) except the two optional keys.
    #[test]
    fn the_shipped_default_file_documents_every_key_with_its_default() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/imlinkd.toml");
        let root = Env::new([("HOME", "/root")], 0);
        let o = Overrides {
            config: Some(path.clone()),
            ..Overrides::default()
        };
        // As shipped (everything commented out): the defaults.
        let l = load_with_default_path(&o, &root, Path::new("/nonexistent")).unwrap();
        assert_eq!(l.config, Config::defaults_in(&root));

        // Uncommented: every key present once, and the values are the documented defaults.
        let text = std::fs::read_to_string(&path).unwrap();
        let mut uncommented = String::new();
        let mut section = String::new();
        let mut seen = Vec::new();
        for line in text.lines() {
            if let Some(s) = line.strip_prefix('[') {
                section = s.trim_end_matches(']').to_owned();
            }
            match line.strip_prefix('#') {
                Some(setting) if setting.starts_with(|c: char| c.is_ascii_lowercase()) => {
                    let name = setting.split(" =").next().unwrap();
                    seen.push(format!("{section}.{name}"));
                    uncommented.push_str(setting);
                }
                _ => uncommented.push_str(line),
            }
            uncommented.push('\n');
        }
        assert_eq!(seen, keys().collect::<Vec<_>>());
        let f = toml_file(&uncommented);
        let l = load_with_default_path(&with_file(&f), &root, Path::new("/nonexistent")).unwrap();
        let mut expected = Config::defaults_in(&root);
        expected.sdk.app_id = Some(1400000000);
        expected.server.ca_file = Some("/etc/imlink/ca.pem".into());
        assert_eq!(l.config, expected);
    }

    #[test]
    fn the_rendered_configuration_loads_back_to_the_same_values() {
        let env = user_env(&[
            ("IMLINK_SDK__APP_ID", "1400000000"),
            ("IMLINK_API__ALLOW_UIDS", "0,1000"),
            ("IMLINK_API__SOCKET_MODE", "0600"),
            ("IMLINK_RECONNECT__MULTIPLIER", "2"),
            ("IMLINK_SERVER__CA_FILE", "/ca.pem"),
        ]);
        let l = load_ok(&Overrides::default(), &env);
        let text = l.to_toml();
        assert!(
            text.contains("app_id = 1400000000  # environment IMLINK_SDK__APP_ID\n"),
            "{text}"
        );
        assert!(
            text.contains("socket_mode = \"0600\"  # environment IMLINK_API__SOCKET_MODE\n"),
            "{text}"
        );
        assert!(
            text.contains("login_timeout_ms = 30000  # default\n"),
            "{text}"
        );
        for key in keys() {
            let name = key.split_once('.').unwrap().1;
            assert!(
                text.contains(&format!("\n{name} = ")),
                "{key} missing in\n{text}"
            );
        }
        let f = toml_file(&text);
        let again = load_ok(&with_file(&f), &user_env(&[]));
        assert_eq!(again.config, l.config);

        let unset = load_ok(&Overrides::default(), &user_env(&[])).to_toml();
        assert!(unset.contains("# app_id is unset  # default\n"), "{unset}");
        let f = toml_file(&unset);
        assert_eq!(
            load_ok(&with_file(&f), &user_env(&[])).config.sdk.app_id,
            None
        );
    }

    #[test]
    fn the_reloader_reads_the_file_again() {
        let mut f = toml_file("[sdk]\nlog_level = \"info\"\n");
        let reload = reloader(with_file(&f), user_env(&[("IMLINK_EVENTS__HISTORY", "9")]));
        let c = reload().unwrap();
        assert_eq!((c.sdk.log_level, c.events.history), (LogLevel::Info, 9));
        f.as_file_mut().set_len(0).unwrap();
        std::fs::write(f.path(), "[sdk]\nlog_level = \"debug\"\n").unwrap();
        assert_eq!(reload().unwrap().sdk.log_level, LogLevel::Debug);
        std::fs::write(f.path(), "[sdk]\nlog_levle = \"debug\"\n").unwrap();
        assert!(reload().unwrap_err().contains("unknown key sdk.log_levle"));
    }

    #[test]
    fn daemon_flags_become_overrides() {
        use clap::Parser;
        let a = DaemonArgs::try_parse_from([
            "imlinkd",
            "--config",
            "/c.toml",
            "--sdk-app-id",
            "1400000000",
            "--log-level",
            "V2TIM_LOG_WARN",
            "--server",
            "wss://h/v1/connect",
            "--socket",
            "/s.sock",
            "--state-dir",
            "/st",
            "--check-config",
        ])
        .unwrap();
        assert!(a.check_config);
        assert_eq!(
            a.overrides(),
            Overrides {
                config: Some("/c.toml".into()),
                sdk_app_id: Some(1400000000),
                log_level: Some(LogLevel::Warn),
                server: Some("wss://h/v1/connect".into()),
                socket: Some("/s.sock".into()),
                state_dir: Some("/st".into()),
            }
        );
        assert!(DaemonArgs::try_parse_from(["imlinkd", "--log-level", "loud"]).is_err());
        assert!(DaemonArgs::try_parse_from(["imlinkd", "--sdk-app-id", "-1"]).is_err());
        <DaemonArgs as clap::CommandFactory>::command().debug_assert();
    }

    #[test]
    fn env_var_names_map_to_keys() {
        assert_eq!(env_var_for("server.url"), "IMLINK_SERVER__URL");
        assert_eq!(env_var_for("api.allow_uids"), "IMLINK_API__ALLOW_UIDS");
    }
}
