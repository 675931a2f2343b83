//! The link seam: how the Session talks to "the link to the server", whichever it is.
//!
//! The Session knows the server only through a [`Link`] — three recipients for the
//! messages below — and hears from it only through [`LinkEvent`]s. Two implementations
//! exist behind it: [`ws`], imlink's own WebSocket protocol (to `imlink-devserver`), and
//! [`tencent`], the official Tencent Cloud Chat SDK in a supervised child process. Neither
//! the session machine nor the API knows which one is in use; both links publish their
//! connection state, and the server time they learn, to the [`Hub`](super::hub::Hub).
//!
//! | direction | message | meaning |
//! | --- | --- | --- |
//! | Session → link | [`LinkControl::Start`] | the SDK is initialised: connect, and keep reconnecting |
//! | Session → link | [`LinkControl::Stop`] | un-initialised: close, stop reconnecting |
//! | Session → link | [`LinkControl::ReconnectNow`] | skip the backoff wait |
//! | Session → link | [`LinkRequest::Login`] | log in (answered with the server's verdict) |
//! | Session → link | [`LinkRequest::Logout`] | log out |
//! | network watcher → link | [`NetNotice`] | a route to the server appeared / the one in use went ([`super::net`]) |
//! | Supervisor → link | [`CloseLink`] | the daemon stops: close cleanly, answer when closed |
//! | link → Session | [`LinkEvent::Up`] / [`LinkEvent::Down`] | the connection came up / went down |
//! | link → Session | [`LinkEvent::Kicked`], [`LinkEvent::SigExpired`], [`LinkEvent::SelfInfo`] | the server's pushes |

pub mod tencent;
pub mod ws;

use actix::prelude::*;
use std::rc::Rc;

use super::accounts::Pacer;
use super::hub::Hub;
pub use super::net::NetNotice;
use crate::config::{Backend, Config};
use crate::core::session::Fail;
use crate::proto::profile::ProfileJson;
use crate::proto::UserFullInfo;

/// What the Session asks the server through the link.
#[derive(Message, Clone, PartialEq, Eq)]
#[rtype(result = "Result<LinkReply, Fail>")]
pub enum LinkRequest {
    /// Log in (or re-authenticate the same user with a new ticket).
    Login {
        /// The user.
        user: String,
        /// The ticket.
        sig: String,
        /// An automatic re-login (after a reconnect or at restore), not a user's request.
        auto: bool,
    },
    /// Log out.
    Logout,
}

impl std::fmt::Debug for LinkRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkRequest::Login { user, auto, .. } => f
                .debug_struct("Login")
                .field("user", user)
                .field("auto", auto)
                .finish_non_exhaustive(),
            LinkRequest::Logout => f.write_str("Logout"),
        }
    }
}

/// The server's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkReply {
    /// Logged in.
    LoggedIn {
        /// When the ticket expires, unix seconds, as the server says (range-checked).
        expires_at: Option<i64>,
        /// The user's profile, when the server sent it.
        info: Option<UserFullInfo>,
    },
    /// Done.
    Done,
}

/// Connection control.
#[derive(Message, Clone, PartialEq, Eq, Debug)]
#[rtype(result = "()")]
pub enum LinkControl {
    /// Connect for this SDKAppID, and keep reconnecting until [`LinkControl::Stop`].
    Start(u64),
    /// Close the connection and stop reconnecting.
    Stop,
    /// Drop the backoff wait and connect now.
    ReconnectNow,
}

/// New settings (SIGHUP).
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct LinkReconfigure(pub Config);

/// The daemon stops: close the connection cleanly (a close frame, waiting for the
/// server's), then answer. No reconnect follows.
#[derive(Message, Clone, Copy)]
#[rtype(result = "()")]
pub struct CloseLink;

/// What the link tells the Session.
#[derive(Message, Debug, Clone, PartialEq)]
#[rtype(result = "()")]
pub enum LinkEvent {
    /// The connection is up: a login may be sent.
    Up,
    /// The connection is down: every request in flight has failed.
    Down,
    /// The login was ended by another device or a REST kick.
    Kicked {
        /// Why, for the log (cleaned).
        why: String,
    },
    /// The ticket ran out while online.
    SigExpired,
    /// The logged-in user's profile changed: each profile the server pushed, in order
    /// (the pushes of one read from the server travel together).
    SelfInfo(Vec<ProfileJson>),
}

/// The Session's handle on its link.
#[derive(Clone)]
pub struct Link {
    /// Login and logout.
    pub request: Recipient<LinkRequest>,
    /// Start, stop, reconnect now.
    pub control: Recipient<LinkControl>,
    /// SIGHUP.
    pub reconfigure: Recipient<LinkReconfigure>,
    /// Graceful stop.
    pub close: Recipient<CloseLink>,
    /// The network watcher's notices.
    pub net: Recipient<NetNotice>,
}

impl Link {
    /// The handle of an actor that implements the seam.
    pub fn of<A>(addr: &Addr<A>) -> Link
    where
        A: Actor<Context = Context<A>>
            + Handler<LinkRequest>
            + Handler<LinkControl>
            + Handler<LinkReconfigure>
            + Handler<CloseLink>
            + Handler<NetNotice>,
    {
        Link {
            request: addr.clone().recipient(),
            control: addr.clone().recipient(),
            reconfigure: addr.clone().recipient(),
            close: addr.clone().recipient(),
            net: addr.clone().recipient(),
        }
    }
}

/// Starts the link `cfg.server.backend` names, for the Session that `session` reaches:
/// the native link (`instance_id`, `dialer`; its connect attempts spaced by `connects`
/// when given) or the Tencent link (a bridge process of its own).
pub fn start(
    cfg: &Config,
    instance_id: String,
    hub: Rc<Hub>,
    session: Recipient<LinkEvent>,
    dialer: Rc<dyn ws::transport::Dialer>,
    connects: Option<Rc<Pacer>>,
) -> Link {
    match cfg.server.backend {
        Backend::Imlink => {
            ws::WsLink::start_paced(cfg, instance_id, hub, session, dialer, connects)
        }
        Backend::Tencent => tencent::TencentLink::start_link(cfg, hub, session),
    }
}
