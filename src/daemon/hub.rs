//! The hub: the status board, the event ring and the subscribers, shared (on the one actix
//! thread) by the link, the session and the API.
//!
//! Whoever changes the state publishes it here synchronously ([`Hub::set_conn`],
//! [`Hub::set_session`], [`Hub::emit`]), so a status snapshot and the seq of the newest
//! event always belong together, and a getter answers from the board without a message
//! hop. An event is serialised once into the ring ([`crate::core::ring`]); subscribers
//! are cursors into it. After a burst of events one deferred pump writes, for each
//! subscribed connection, everything new in one system call ([`super::api::out::Out`]).

use bytes::Bytes;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::api::out::Out;
use crate::clock::Clock;
use crate::codes::LoginStatus;
use crate::core::ring::{Cursor, Filter, Ring};
use crate::proto::api::{AuthStatus, ConnState, Event, Status, Subscribed};
use crate::proto::UserFullInfo;

/// The link's part of the status.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnPart {
    /// The state.
    pub state: ConnState,
    /// Unix ms when the connection came up.
    pub connected_since: Option<i64>,
    /// Consecutive failed attempts (0 while connected).
    pub attempt: u32,
    /// When the next attempt starts.
    pub retry_at: Option<Instant>,
    /// The server.
    pub server: String,
}

/// The session's part of the status.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionPart {
    /// SDKAppID.
    pub app_id: Option<u64>,
    /// Login status.
    pub status: LoginStatus,
    /// UserID (`""` when nobody).
    pub user: String,
    /// Ticket expiry, unix s.
    pub expires_at: Option<i64>,
    /// Connected and the server holds the login.
    pub online: bool,
    /// The state file reflects the last change.
    pub state_saved: bool,
    /// The UserSig provider's part.
    pub auth: AuthStatus,
}

impl Default for SessionPart {
    fn default() -> Self {
        SessionPart {
            app_id: None,
            status: LoginStatus::Logout,
            user: String::new(),
            expires_at: None,
            online: false,
            state_saved: true,
            auth: AuthStatus::default(),
        }
    }
}

/// Server time as last heard: the server's unix ms at a local monotonic instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ServerClock {
    server_ms: i64,
    at: Instant,
}

/// The plausible range of a server's clock, unix ms: 2001 … 2286. A value outside it
/// (a hostile or broken server) is ignored.
const SERVER_TIME_MS: std::ops::RangeInclusive<i64> = 1_000_000_000_000..=9_999_999_999_999;

/// The hub. Create with [`Hub::new`], share as `Rc<Hub>`.
pub struct Hub {
    boot_id: String,
    clock: Clock,
    conn: RefCell<ConnPart>,
    session: RefCell<SessionPart>,
    server_clock: Cell<Option<ServerClock>>,
    info: RefCell<Option<UserFullInfo>>,
    ring: RefCell<Ring>,
    lag_limit: Cell<u64>,
    /// Connections with at least one subscription.
    subscribed: RefCell<Vec<Rc<Out>>>,
    next_sub: Cell<u64>,
    pump_scheduled: Cell<bool>,
    changed: Notify,
}

/// A random id for this boot.
pub fn new_boot_id() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

impl Hub {
    /// A hub for this boot, keeping `history` events, a subscriber at most `lag_limit`
    /// events behind.
    pub fn new(
        boot_id: String,
        clock: Clock,
        history: usize,
        lag_limit: usize,
        server: String,
    ) -> Rc<Hub> {
        Rc::new(Hub {
            boot_id,
            clock,
            conn: RefCell::new(ConnPart {
                state: ConnState::Idle,
                connected_since: None,
                attempt: 0,
                retry_at: None,
                server,
            }),
            session: RefCell::new(SessionPart::default()),
            server_clock: Cell::new(None),
            info: RefCell::new(None),
            ring: RefCell::new(Ring::new(history)),
            lag_limit: Cell::new(u64::try_from(lag_limit).unwrap_or(u64::MAX)),
            subscribed: RefCell::new(Vec::new()),
            next_sub: Cell::new(1),
            pump_scheduled: Cell::new(false),
            changed: Notify::new(),
        })
    }

    /// This boot's id.
    pub fn boot_id(&self) -> &str {
        &self.boot_id
    }

    /// The daemon's wall clock.
    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// New limits (SIGHUP).
    pub fn reconfigure(&self, history: usize, lag_limit: usize) {
        self.ring.borrow_mut().set_capacity(history);
        self.lag_limit
            .set(u64::try_from(lag_limit).unwrap_or(u64::MAX));
    }

    // ------------------------------------------------------------------ the board

    /// The link's state changed.
    pub fn set_conn(&self, part: ConnPart) {
        if *self.conn.borrow() != part {
            *self.conn.borrow_mut() = part;
            self.changed.notify_waiters();
        }
    }

    /// The session's state changed.
    pub fn set_session(&self, part: SessionPart) {
        if *self.session.borrow() != part {
            if part.user.is_empty() {
                *self.info.borrow_mut() = None;
            }
            *self.session.borrow_mut() = part;
            self.changed.notify_waiters();
        }
    }

    /// The profile of the logged-in user.
    pub fn set_info(&self, info: Option<UserFullInfo>) {
        *self.info.borrow_mut() = info;
    }

    /// The profile, when somebody is logged in.
    pub fn info(&self) -> Option<UserFullInfo> {
        self.info.borrow().clone()
    }

    /// The server said its time was `server_ms` (unix ms) just now; implausible values are
    /// ignored.
    pub fn set_server_time(&self, server_ms: i64) {
        if SERVER_TIME_MS.contains(&server_ms) {
            self.server_clock.set(Some(ServerClock {
                server_ms,
                at: Instant::now(),
            }));
        } else {
            tracing::debug!("ignoring an implausible server time");
        }
    }

    /// The server's time now, unix seconds: the last one heard, carried forward with the
    /// monotonic clock. None before the first.
    pub fn server_time(&self) -> Option<i64> {
        let c = self.server_clock.get()?;
        let gone = i64::try_from(c.at.elapsed().as_millis()).unwrap_or(i64::MAX);
        Some(c.server_ms.saturating_add(gone).div_euclid(1000))
    }

    /// The login status.
    pub fn login_status(&self) -> LoginStatus {
        self.session.borrow().status
    }

    /// The user logged in or logging in (`""` when nobody).
    pub fn user(&self) -> String {
        self.session.borrow().user.clone()
    }

    /// The initialised SDKAppID.
    pub fn app_id(&self) -> Option<u64> {
        self.session.borrow().app_id
    }

    /// The `status` snapshot now.
    pub fn status(&self) -> Status {
        let c = self.conn.borrow();
        let s = self.session.borrow();
        Status {
            sdk_app_id: s.app_id,
            login_status: s.status,
            user_id: s.user.clone(),
            online: s.online && c.state == ConnState::Connected,
            connection: c.state,
            connected_since: c.connected_since,
            reconnect_attempt: c.attempt,
            next_retry_ms: c.retry_at.map(|t| {
                u64::try_from(t.saturating_duration_since(Instant::now()).as_millis())
                    .unwrap_or(u64::MAX)
            }),
            server: c.server.clone(),
            user_sig_expires_at: s.expires_at,
            state_saved: s.state_saved,
            boot_id: self.boot_id.clone(),
            last_seq: self.ring.borrow().last_seq(),
            auth: s.auth.clone(),
        }
    }

    /// Resolves at the next change of the status or the next event.
    pub async fn changed(&self) {
        self.changed.notified().await
    }

    // ------------------------------------------------------------------ events

    /// The serialised form of an event: everything after the subscription id.
    fn render(&self, seq: u64, event: &Event) -> Bytes {
        let mut b = Vec::with_capacity(160);
        b.extend_from_slice(b",\"seq\":");
        b.extend_from_slice(itoa::Buffer::new().format(seq).as_bytes());
        b.extend_from_slice(b",\"time\":");
        b.extend_from_slice(itoa::Buffer::new().format(self.clock.unix_ms()).as_bytes());
        b.extend_from_slice(b",\"bootID\":\"");
        b.extend_from_slice(self.boot_id.as_bytes());
        b.extend_from_slice(b"\",");
        // `{"event":…,"data":…}` from serde, spliced after the common fields.
        let start = b.len();
        if serde_json::to_writer(&mut b, event).is_err() || b.get(start) != Some(&b'{') {
            b.truncate(start);
            b.extend_from_slice(b"{\"event\":\"eventsLost\",\"data\":{}}");
        }
        // Its `{` goes (the params object is open); its `}` closes the params.
        b.remove(start);
        b.extend_from_slice(b"}\n");
        Bytes::from(b)
    }

    /// The body of an `eventsLost {from, to}`, with seq `to` (the seqs one subscription
    /// sees only ever rise).
    pub fn render_lost(&self, from: u64, to: u64) -> Bytes {
        self.render(to, &Event::EventsLost { from, to })
    }

    /// Numbers an event, keeps it, and has it delivered to the subscribers. The profile
    /// of an `onSelfInfoUpdated` becomes the one `getSelfInfo` answers.
    pub fn emit(self: &Rc<Self>, event: Event) {
        let name = event.name();
        let seq = self.ring.borrow().next_seq();
        let body = self.render(seq, &event);
        if let Event::SelfInfoUpdated { info } = event {
            *self.info.borrow_mut() = Some(info);
        }
        self.ring.borrow_mut().push(name, body);
        tracing::debug!(seq, event = name, "event");
        self.changed.notify_waiters();
        self.schedule_pump();
    }

    fn schedule_pump(self: &Rc<Self>) {
        if self.pump_scheduled.replace(true) || self.subscribed.borrow().is_empty() {
            if self.subscribed.borrow().is_empty() {
                self.pump_scheduled.set(false);
            }
            return;
        }
        let hub = self.clone();
        tokio::task::spawn_local(async move {
            hub.pump_scheduled.set(false);
            // A pump never changes the list (a dead connection leaves it when its task
            // ends), so it is walked in place.
            let mut i = 0;
            loop {
                let Some(out) = hub.subscribed.borrow().get(i).cloned() else {
                    break;
                };
                out.pump(&hub);
                i += 1;
            }
        });
    }

    /// The ring, for a connection pulling its events.
    pub fn ring(&self) -> std::cell::Ref<'_, Ring> {
        self.ring.borrow()
    }

    /// How far behind a subscriber may fall before it skips ahead.
    pub fn lag_limit(&self) -> u64 {
        self.lag_limit.get()
    }

    // ------------------------------------------------------------------ subscriptions

    /// Adds a subscription on `out`; the snapshot and `seq` are of this very instant.
    pub fn subscribe(
        self: &Rc<Self>,
        out: &Rc<Out>,
        filter: Filter,
        since: Option<u64>,
    ) -> Subscribed {
        let id = self.next_sub.get();
        self.next_sub.set(id.saturating_add(1));
        let cursor: Cursor = self.ring.borrow().cursor(filter, since);
        out.add_sub(id, cursor);
        {
            let mut subs = self.subscribed.borrow_mut();
            if !subs.iter().any(|o| Rc::ptr_eq(o, out)) {
                subs.push(out.clone());
            }
        }
        let status = self.status();
        if since.is_some() {
            self.pump_later(out);
        }
        Subscribed {
            subscription: id,
            boot_id: self.boot_id.clone(),
            seq: status.last_seq,
            status,
        }
    }

    /// Replays for one connection once the current request is answered.
    fn pump_later(self: &Rc<Self>, out: &Rc<Out>) {
        let hub = self.clone();
        let out = out.clone();
        tokio::task::spawn_local(async move { out.pump(&hub) });
    }

    /// Ends subscription `id` of `out`; false when `out` holds no such subscription.
    pub fn unsubscribe(&self, out: &Rc<Out>, id: u64) -> bool {
        let had = out.remove_sub(id);
        if !out.has_subs() {
            self.forget(out);
        }
        had
    }

    /// The connection is gone: its subscriptions end.
    pub fn forget(&self, out: &Rc<Out>) {
        self.subscribed.borrow_mut().retain(|o| !Rc::ptr_eq(o, out));
    }

    /// Subscribed connections (tests, metrics).
    pub fn subscribed_connections(&self) -> usize {
        self.subscribed.borrow().len()
    }

    /// Every subscribed connection, to be probed for peers that went away.
    pub fn subscribed_outs(&self) -> Vec<Rc<Out>> {
        self.subscribed.borrow().clone()
    }
}
