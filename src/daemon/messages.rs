//! Every message that crosses between the daemon's actors — the vocabulary at a glance.

use actix::prelude::*;
use bytes::Bytes;
use std::collections::HashSet;
use std::time::Instant;
use tokio::sync::mpsc;

use crate::codes::{LogLevel, LoginStatus};
use crate::config::Config;
use crate::core::session::{Fail, Reply};
use crate::proto::api::{ConnState, Event, Status};
use crate::proto::ws::{Command, Hello, Push, Response};
use crate::proto::UserFullInfo;

// ---- Connection → Session ----

/// The connection is up (the server's `hello` arrived).
#[derive(Message)]
#[rtype(result = "()")]
pub struct LinkUp(pub Hello);

/// The connection is down.
#[derive(Message)]
#[rtype(result = "()")]
pub struct LinkDown;

/// A push from the server.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ServerPush(pub Push);

// ---- Session → Connection ----

/// Connect for this SDKAppID, and keep reconnecting until [`StopLink`].
#[derive(Message)]
#[rtype(result = "()")]
pub struct StartLink(pub u64);

/// Close the connection and stop reconnecting.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopLink;

/// Send a request and wait for its response (or 9508 / 9520).
#[derive(Message)]
#[rtype(result = "Result<Response, Fail>")]
pub struct SendRequest(pub Command);

/// Drop the backoff wait and connect now (`reconnect`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ReconnectNow;

// ---- API → Session ----

/// A call that changes the login: answered when the machine decides.
#[derive(Message)]
#[rtype(result = "Result<Reply, Fail>")]
pub enum SessionCall {
    /// `initSDK`.
    Init {
        /// SDKAppID.
        app_id: u64,
        /// Optional log level.
        log_level: Option<LogLevel>,
    },
    /// `unInitSDK`.
    UnInit,
    /// `login`.
    Login {
        /// UserID (validated).
        user: String,
        /// UserSig (non-empty).
        sig: String,
    },
    /// `logout`.
    Logout,
}

/// `getSelfInfo`.
#[derive(Message)]
#[rtype(result = "Result<UserFullInfo, Fail>")]
pub struct GetSelfInfo;

/// `getServerTime`: seconds.
#[derive(Message)]
#[rtype(result = "Result<i64, Fail>")]
pub struct GetServerTime;

// ---- anyone → EventLog ----

/// The connection's part of the status.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnPart {
    /// The state.
    pub state: ConnState,
    /// Unix ms when the connection came up.
    pub connected_since: Option<i64>,
    /// Consecutive failures.
    pub attempt: u32,
    /// When the next attempt starts.
    pub retry_at: Option<Instant>,
    /// The server URL.
    pub server: String,
}

/// The session's part of the status.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionPart {
    /// SDKAppID.
    pub app_id: Option<u64>,
    /// Login status.
    pub status: LoginStatus,
    /// UserID.
    pub user: String,
    /// Ticket expiry.
    pub expires_at: Option<i64>,
}

/// A state change and/or an event, published in order.
#[derive(Message)]
#[rtype(result = "()")]
pub enum Publish {
    /// The connection's state changed.
    Conn(ConnPart),
    /// The session's state changed.
    Session(SessionPart),
    /// An event happened.
    Event(Event),
}

/// `status` (and the cheap getters).
#[derive(Message)]
#[rtype(result = "Status")]
pub struct GetStatus;

/// One item queued to a subscriber's connection: a constant head (with its subscription
/// id) and a body serialised once for every subscriber.
#[derive(Debug, Clone)]
pub struct EventLine {
    /// `{"jsonrpc":"2.0","method":"event","params":{"subscription":N`.
    pub head: Bytes,
    /// `,"seq":…}}\n`.
    pub body: Bytes,
}

/// Result of [`Subscribe`].
#[derive(Debug, Clone)]
pub struct Subscribed {
    /// The subscription id.
    pub id: u64,
    /// The status at the instant of `seq`.
    pub status: Status,
}

/// `subscribe`.
#[derive(Message)]
#[rtype(result = "Subscribed")]
pub struct Subscribe {
    /// Only these events (None: all).
    pub filter: Option<HashSet<String>>,
    /// Replay retained events after this seq.
    pub since: Option<u64>,
    /// The subscriber's bounded queue.
    pub tx: mpsc::Sender<EventLine>,
}

/// `unsubscribe`; true when it existed.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct Unsubscribe(pub u64);

// ---- Supervisor ----

/// New settings after SIGHUP.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct Reconfigure(pub Config);
