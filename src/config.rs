//! The configuration of `imlinkd` (DESIGN §4): defaults → file → `IMLINK_*` environment →
//! flags, into one typed struct.
//!
//! Loading and validation: see [`load`] (to be completed by the configuration work).

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

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

fn is_root() -> bool {
    // The effective uid is what decides which directories we may create.
    std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0).unwrap_or(false)
}

/// `$RUNTIME_DIRECTORY/imlinkd.sock`, else `/run/imlink/imlinkd.sock` as root, else
/// `$XDG_RUNTIME_DIR/imlink/imlinkd.sock` (else `/tmp/imlink-$UID/imlinkd.sock`).
pub fn default_socket_path() -> PathBuf {
    if let Some(d) = std::env::var_os("RUNTIME_DIRECTORY").filter(|d| !d.is_empty()) {
        // systemd may pass several directories separated by ':'; the first is ours.
        let first = d.to_string_lossy().split(':').next().unwrap_or_default().to_owned();
        return PathBuf::from(first).join("imlinkd.sock");
    }
    if is_root() {
        return PathBuf::from("/run/imlink/imlinkd.sock");
    }
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("imlink/imlinkd.sock");
    }
    let uid = std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m)).unwrap_or(0);
    PathBuf::from(format!("/tmp/imlink-{uid}/imlinkd.sock"))
}

/// `$STATE_DIRECTORY`, else `/var/lib/imlink` as root, else `$XDG_STATE_HOME/imlink`
/// (else `~/.local/state/imlink`).
pub fn default_state_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("STATE_DIRECTORY").filter(|d| !d.is_empty()) {
        let first = d.to_string_lossy().split(':').next().unwrap_or_default().to_owned();
        return PathBuf::from(first);
    }
    if is_root() {
        return PathBuf::from("/var/lib/imlink");
    }
    if let Some(d) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("imlink");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into());
    PathBuf::from(home).join(".local/state/imlink")
}
