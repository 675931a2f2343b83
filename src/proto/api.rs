//! The local JSON-RPC 2.0 API (DESIGN §5, `docs/api.md`): events and result shapes.
//!
//! Requests and responses are handled as `serde_json::Value` by the API layer (JSON-RPC
//! needs to answer malformed requests precisely); the types here are the payloads.

use serde::{Deserialize, Serialize};

use super::profile::UserFullInfo;
use crate::codes::LoginStatus;

/// The JSON-RPC notification method that carries events.
pub const EVENT_METHOD: &str = "event";

/// Names of every event the daemon emits.
pub const EVENT_NAMES: &[&str] = &[
    "onConnecting",
    "onConnectSuccess",
    "onConnectFailed",
    "onKickedOffline",
    "onUserSigExpired",
    "onSelfInfoUpdated",
    "onLoginStatusChanged",
    "onUserSigExpiring",
    "eventsLost",
];

/// An event and its data, as it appears in `params.event` / `params.data`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", content = "data")]
pub enum Event {
    /// The daemon is connecting to the server.
    #[serde(rename = "onConnecting")]
    Connecting {},
    /// The connection to the server is up.
    #[serde(rename = "onConnectSuccess")]
    ConnectSuccess {},
    /// A connect attempt failed, or an established connection was lost.
    #[serde(rename = "onConnectFailed")]
    ConnectFailed {
        /// 9508 (refused, lost), 9510 (connect timeout).
        code: i32,
        /// What happened.
        desc: String,
    },
    /// The login was ended by another device or a REST kick; no automatic re-login follows.
    #[serde(rename = "onKickedOffline")]
    KickedOffline {},
    /// The ticket expired (while online or at a re-login); log in with a new one.
    #[serde(rename = "onUserSigExpired")]
    UserSigExpired {},
    /// The user's profile changed.
    #[serde(rename = "onSelfInfoUpdated")]
    SelfInfoUpdated {
        /// The new profile.
        info: UserFullInfo,
    },
    /// The login status changed (imlink's addition to the SDK's events).
    #[serde(rename = "onLoginStatusChanged")]
    LoginStatusChanged {
        /// 1 LOGINED, 2 LOGINING, 3 LOGOUT.
        status: LoginStatus,
        /// The user concerned (`""` when nobody).
        #[serde(rename = "userID")]
        user_id: String,
        /// Why: `login`, `logout`, `relogin`, `restore`, `kicked`, `userSigExpired`,
        /// `loginFailed`, `connectionLost`, `unInit`, `switchUser`.
        reason: String,
    },
    /// The ticket runs out soon (imlink's addition): renew it with `login`.
    #[serde(rename = "onUserSigExpiring")]
    UserSigExpiring {
        /// `TLS.time + TLS.expire`, unix seconds.
        #[serde(rename = "expiresAt")]
        expires_at: i64,
        /// Seconds left when the event was emitted.
        #[serde(rename = "remainingSecs")]
        remaining_secs: i64,
    },
    /// Events `from`..=`to` were not delivered to this subscriber.
    #[serde(rename = "eventsLost")]
    EventsLost {
        /// First missing seq.
        from: u64,
        /// Last missing seq.
        to: u64,
    },
}

impl Event {
    /// The event's name.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Connecting {} => "onConnecting",
            Event::ConnectSuccess {} => "onConnectSuccess",
            Event::ConnectFailed { .. } => "onConnectFailed",
            Event::KickedOffline {} => "onKickedOffline",
            Event::UserSigExpired {} => "onUserSigExpired",
            Event::SelfInfoUpdated { .. } => "onSelfInfoUpdated",
            Event::LoginStatusChanged { .. } => "onLoginStatusChanged",
            Event::UserSigExpiring { .. } => "onUserSigExpiring",
            Event::EventsLost { .. } => "eventsLost",
        }
    }
}

/// The connection state reported by `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnState {
    /// Not initialised, or un-initialised: no connection is wanted.
    Idle,
    /// A connect attempt is running.
    Connecting,
    /// The connection is up.
    Connected,
    /// Waiting for the backoff delay before the next attempt.
    Waiting,
}

/// The result of `status`: one consistent snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// The initialised SDKAppID, or null.
    #[serde(rename = "sdkAppID")]
    pub sdk_app_id: Option<u64>,
    /// 1 LOGINED, 2 LOGINING, 3 LOGOUT.
    pub login_status: LoginStatus,
    /// The logged-in (or logging-in) user, `""` when nobody.
    #[serde(rename = "userID")]
    pub user_id: String,
    /// The connection state.
    pub connection: ConnState,
    /// When the current connection came up, unix milliseconds, or null.
    pub connected_since: Option<i64>,
    /// Consecutive failed connect attempts (0 when connected).
    pub reconnect_attempt: u32,
    /// Milliseconds until the next connect attempt while `waiting`, else null.
    pub next_retry_ms: Option<u64>,
    /// The server URL.
    pub server: String,
    /// When the ticket expires, unix seconds, or null.
    pub user_sig_expires_at: Option<i64>,
    /// Changes at every daemon start.
    #[serde(rename = "bootID")]
    pub boot_id: String,
    /// The seq of the newest event.
    pub last_seq: u64,
}
