//! The schema: the configuration as one typed struct. A key is a field; its default is in
//! the section's `Default`; its check is the field's `deserialize_with` function in
//! [`super::valid`]. Nothing else lists the keys: the loader, the messages and the rendering
//! of `--check-config` all work from these types.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

use super::env::Env;
use super::paths::{
    default_socket_path, default_socket_path_in, default_state_dir, default_state_dir_in,
};
use super::valid;
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
    /// `[tencent]`: the link through Tencent's official SDK (`server.backend = "tencent"`).
    pub tencent: TencentConfig,
    /// `[reconnect]`: backoff between connect attempts.
    pub reconnect: ReconnectConfig,
    /// `[api]`: the local JSON-RPC socket.
    pub api: ApiConfig,
    /// `[events]`: the event log.
    pub events: EventsConfig,
    /// `[state]`: persistence.
    pub state: StateConfig,
    /// `[auth]`: where the daemon gets UserSigs by itself (login at start, renewal).
    pub auth: AuthConfig,
}

/// `[sdk]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SdkConfig {
    /// The SDKAppID (1 to 4294967295); unset means "wait for `initSDK`".
    #[serde(deserialize_with = "valid::app_id")]
    pub app_id: Option<u64>,
    /// The log level (names, short forms or numbers).
    #[serde(deserialize_with = "valid::log_level")]
    pub log_level: LogLevel,
    /// The platform this daemon logs in as.
    #[serde(deserialize_with = "valid::platform")]
    pub platform: Platform,
    /// How long before the ticket runs out `onUserSigExpiring` is emitted, in seconds
    /// (0 to 365 days).
    #[serde(deserialize_with = "valid::expiring_lead_secs")]
    pub usersig_expiring_lead_secs: u64,
}

/// Which link the daemon uses to reach the server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// imlink's own WebSocket protocol to `server.url` (an `imlink-devserver`).
    #[default]
    Imlink,
    /// Tencent's official JavaScript SDK run by Node.js in a supervised child process
    /// (the bridge, `[tencent]`).
    Tencent,
}

impl Backend {
    /// The name as written in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Imlink => "imlink",
            Backend::Tencent => "tencent",
        }
    }
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// The link: `"imlink"` (the native protocol to `url`) or `"tencent"` (the official SDK
    /// through the bridge, `[tencent]`).
    #[serde(deserialize_with = "valid::backend")]
    pub backend: Backend,
    /// `ws://` or `wss://` URL of the access endpoint, with a host, a port from 1 to 65535
    /// and no user name or password (normalised by the URL parser).
    #[serde(deserialize_with = "valid::ws_url")]
    pub url: String,
    /// PEM file of CA certificates for `wss://`; unset = the built-in web roots. Checked at
    /// load: a readable regular file of at most 1 MiB holding a certificate.
    #[serde(deserialize_with = "valid::ca_file")]
    pub ca_file: Option<PathBuf>,
    /// Give up a connect attempt after this long (1 ms to 24 h).
    #[serde(deserialize_with = "valid::timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Give up waiting for a response after this long (9520; 1 ms to 24 h).
    #[serde(deserialize_with = "valid::timeout_ms")]
    pub request_timeout_ms: u64,
    /// How long `login` waits for a connection before failing with 9508 (1 ms to 24 h).
    #[serde(deserialize_with = "valid::timeout_ms")]
    pub login_timeout_ms: u64,
    /// WebSocket ping interval (1 ms to 24 h).
    #[serde(deserialize_with = "valid::timeout_ms")]
    pub heartbeat_interval_ms: u64,
    /// The connection is dead after this long without any frame from the server (1 ms to
    /// 24 h, and more than the interval).
    #[serde(deserialize_with = "valid::timeout_ms")]
    pub heartbeat_timeout_ms: u64,
}

/// `[tencent]`: the bridge that runs Tencent's official SDK (docs/tencent.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TencentConfig {
    /// The Node.js executable: a name looked up in `PATH`, or a path.
    #[serde(deserialize_with = "valid::program")]
    pub node: PathBuf,
    /// Where the bridge is installed (`index.js`, `package.json`, `node_modules/`); unset
    /// means `../lib/imlink/tencent-bridge` from the directory of `imlinkd` itself, where
    /// `make install` puts it.
    #[serde(deserialize_with = "valid::optional_path")]
    pub bridge_dir: Option<PathBuf>,
    /// The SDK's `proxyServer`: a `ws://` or `wss://` URL the SDK connects to instead of
    /// Tencent's servers (an `imlink-devserver`, a relay); unset = Tencent's.
    #[serde(deserialize_with = "valid::proxy_server")]
    pub proxy_server: Option<String>,
}

/// `[reconnect]`: exponential backoff with jitter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReconnectConfig {
    /// First delay (1 ms to 1 h, at most `max_ms`).
    #[serde(deserialize_with = "valid::backoff_ms")]
    pub initial_ms: u64,
    /// Largest delay (1 ms to 1 h).
    #[serde(deserialize_with = "valid::backoff_ms")]
    pub max_ms: u64,
    /// Growth per failure (1 to 10).
    #[serde(deserialize_with = "valid::multiplier")]
    pub multiplier: f64,
    /// Random spread, a fraction (0.2 = ±20 %; 0 ≤ jitter < 1).
    #[serde(deserialize_with = "valid::jitter")]
    pub jitter: f64,
    /// A connection that stayed up this long resets the backoff (1 ms to 24 h).
    #[serde(deserialize_with = "valid::timeout_ms")]
    pub stable_ms: u64,
}

/// `[api]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// The Unix socket path (at most [`super::MAX_SOCKET_PATH_BYTES`] bytes).
    #[serde(deserialize_with = "valid::socket_path")]
    pub socket: PathBuf,
    /// Its file mode, permission bits only (octal in the file: `"0660"` or `0o660`).
    #[serde(
        deserialize_with = "valid::socket_mode",
        serialize_with = "valid::serialize_mode"
    )]
    pub socket_mode: u32,
    /// Peers allowed to connect, by uid; empty = anyone who can open the socket.
    #[serde(deserialize_with = "valid::id_list")]
    pub allow_uids: Vec<u32>,
    /// Peers allowed to connect, by gid.
    #[serde(deserialize_with = "valid::id_list")]
    pub allow_gids: Vec<u32>,
    /// Peers limited to reading, by uid.
    #[serde(deserialize_with = "valid::id_list")]
    pub readonly_uids: Vec<u32>,
    /// Peers limited to reading, by gid.
    #[serde(deserialize_with = "valid::id_list")]
    pub readonly_gids: Vec<u32>,
    /// Connections served at once (1 to 1,000,000).
    #[serde(deserialize_with = "valid::max_clients")]
    pub max_clients: usize,
    /// Longest request line (1 KiB to 64 MiB).
    #[serde(deserialize_with = "valid::max_line_bytes")]
    pub max_line_bytes: usize,
    /// How many events a subscriber may fall behind the newest before it skips ahead
    /// with `eventsLost` (1 to 1,048,576).
    #[serde(deserialize_with = "valid::subscriber_queue")]
    pub subscriber_queue: usize,
    /// A connection with no subscription and no request in flight that sends nothing for
    /// this long is closed; so is one that leaves its replies unread for this long
    /// (1 s to 24 h).
    #[serde(deserialize_with = "valid::idle_timeout_ms")]
    pub idle_timeout_ms: u64,
}

/// `[events]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// How many recent events are kept for `subscribe {since}` (1 to 1,000,000).
    #[serde(deserialize_with = "valid::history")]
    pub history: usize,
}

/// `[state]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// Where `session.json` lives.
    #[serde(deserialize_with = "valid::dir")]
    pub dir: PathBuf,
    /// Resume a saved login at start.
    #[serde(deserialize_with = "valid::boolean")]
    pub restore_session: bool,
}

/// Where the daemon gets a UserSig by itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthProvider {
    /// Nowhere: tickets come only with `login` (and expire unless a client renews them).
    #[default]
    #[serde(rename = "none")]
    None,
    /// A program prints the ticket (`auth.command`).
    #[serde(rename = "command")]
    Command,
    /// An HTTPS endpoint answers with the ticket (`auth.url`).
    #[serde(rename = "url")]
    Url,
    /// The daemon signs its own tickets with the app's secret key (`auth.key_file`).
    #[serde(rename = "key_file")]
    KeyFile,
}

impl AuthProvider {
    /// The name as written in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            AuthProvider::None => "none",
            AuthProvider::Command => "command",
            AuthProvider::Url => "url",
            AuthProvider::KeyFile => "key_file",
        }
    }
}

/// `[auth]`: the UserSig provider (docs/configuration.md, docs/api.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// `"none"`, `"command"`, `"url"` or `"key_file"`.
    #[serde(deserialize_with = "valid::auth_provider")]
    pub provider: AuthProvider,
    /// The account to log in at start when no session is stored (a restored one wins).
    #[serde(deserialize_with = "valid::optional_user_id")]
    pub user_id: Option<String>,
    /// `"command"`: the program and its arguments (no shell).
    #[serde(deserialize_with = "valid::command")]
    pub command: Vec<String>,
    /// `"command"` and `"url"`: how long one call may take (1 ms to 24 h).
    #[serde(deserialize_with = "valid::timeout_ms")]
    pub timeout_ms: u64,
    /// `"url"`: an `https://` URL, or `http://` on a loopback address.
    #[serde(deserialize_with = "valid::auth_url")]
    pub url: Option<String>,
    /// `"url"`: a file holding the bearer token (private to the daemon's user).
    #[serde(deserialize_with = "valid::secret_file")]
    pub bearer_token_file: Option<PathBuf>,
    /// `"url"`: PEM CA certificates for a private CA; unset = the built-in web roots.
    #[serde(deserialize_with = "valid::ca_file")]
    pub ca_file: Option<PathBuf>,
    /// `"key_file"`: a file holding the app's secret key (private to the daemon's user).
    #[serde(deserialize_with = "valid::secret_file")]
    pub key_file: Option<PathBuf>,
    /// `"key_file"`: the lifetime of the tickets the daemon signs, seconds (60 s to
    /// 100 years).
    #[serde(deserialize_with = "valid::ticket_lifetime_secs")]
    pub ticket_lifetime_secs: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            provider: AuthProvider::None,
            user_id: None,
            command: Vec::new(),
            timeout_ms: 10_000,
            url: None,
            bearer_token_file: None,
            ca_file: None,
            key_file: None,
            ticket_lifetime_secs: 604_800,
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
            backend: Backend::Imlink,
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

impl TencentConfig {
    /// `bridge_dir`, or its default next to the executable ([`super::default_bridge_dir`]).
    pub fn bridge_dir(&self) -> PathBuf {
        self.bridge_dir
            .clone()
            .unwrap_or_else(super::paths::default_bridge_dir)
    }
}

impl Default for TencentConfig {
    fn default() -> Self {
        TencentConfig {
            node: PathBuf::from("node"),
            bridge_dir: None,
            proxy_server: None,
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
