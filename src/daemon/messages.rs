//! Every message that crosses between the daemon's actors — the vocabulary at a glance.
//!
//! The link seam (Session ⇄ link) is in [`crate::daemon::link`]; this file holds the
//! rest: what the API asks the Session, and what the supervisor tells everyone.

use actix::prelude::*;

use crate::codes::LogLevel;
use crate::config::Config;
use crate::core::session::{Fail, Reply};

// ---- API → Session ----

/// A call that changes the login: answered when the machine decides (and, for a change
/// that must survive a restart, once it is on disk).
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
        /// UserSig (non-empty, bounded); `None`: from the provider.
        sig: Option<String>,
    },
    /// `logout`.
    Logout,
    /// `renewUserSig`.
    Renew,
}

/// Drop the backoff wait and connect now (`reconnect`).
#[derive(Message, Clone, Copy)]
#[rtype(result = "()")]
pub struct ReconnectNow;

// ---- Supervisor → everyone ----

/// New settings after SIGHUP.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct Reconfigure(pub Config);

/// The daemon stops: finish what must be finished (the session stays stored) and answer
/// when done.
#[derive(Message, Clone, Copy)]
#[rtype(result = "()")]
pub struct Shutdown;

/// Are you turning? (the watchdog asks the Session before it pings systemd).
#[derive(Message, Clone, Copy)]
#[rtype(result = "()")]
pub struct Alive;
