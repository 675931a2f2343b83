//! The hub: the status board, the event ring and the subscribers, shared (on the one actix
//! thread) by the link, the session and the API.
//!
//! Whoever changes the state publishes it here synchronously ([`Hub::set_conn`],
//! [`Hub::set_session`], [`Hub::emit`]), so a status snapshot and the seq of the newest
//! event always belong together, and a getter answers from the board without a message
//! hop. An event is serialised once into the ring ([`crate::core::ring`]); subscribers
//! are cursors into it. One deferred pump, run after the task that emitted, writes for
//! each subscribed connection everything new in as few system calls as the batch limits
//! allow ([`super::api::out::Out`]). While a burst runs (the last pump found more than
//! one new event) the pump waits one more scheduler turn, so that what the next poll of
//! the sockets reads goes out in the same writes; a lone event is not held back.

use bytes::Bytes;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::api::out::Out;
use crate::clock::Clock;
use crate::codes::LoginStatus;
use crate::core::ring::{Cursor, Filter, Ring};
use crate::proto::api::{AuthStatus, ConnState, Event, NetworkStatus, Status, Subscribed};
use crate::proto::profile::ProfileJson;
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

/// Counts of the accounts (many accounts), kept by the root hub as the accounts' boards
/// change: `STATUS=`, `listAccounts`' neighbours and the metrics read them without a walk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Accounts.
    pub accounts: u64,
    /// By login status: LOGINED, LOGINING, LOGOUT.
    pub by_status: [u64; 3],
    /// Logged in and the server holds the login on a live connection.
    pub online: u64,
    /// By link state: idle, connecting, connected, waiting.
    pub by_conn: [u64; 4],
}

impl Tally {
    fn add(&mut self, status: LoginStatus, online: bool, conn: ConnState, sign: i64) {
        let f = |n: &mut u64| {
            *n = if sign > 0 {
                n.saturating_add(1)
            } else {
                n.saturating_sub(1)
            }
        };
        f(&mut self.by_status[status as usize - 1]);
        if online && status == LoginStatus::Logined && conn == ConnState::Connected {
            f(&mut self.online);
        }
        f(&mut self.by_conn[conn_index(conn)]);
    }
}

/// Counters of what happened since the start, from the events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Every event.
    pub events: u64,
    /// Logins accepted (status 1 after 2: `login`, `restore`).
    pub logins: u64,
    /// Silent re-logins accepted after a reconnect.
    pub relogins: u64,
    /// Silent re-logins refused (retried).
    pub relogin_failures: u64,
    /// Kicks.
    pub kicks: u64,
    /// Ticket expiries.
    pub expiries: u64,
    /// Connections that came up.
    pub connects: u64,
    /// Connect attempts that failed, and connections lost.
    pub connect_failures: u64,
}

impl Counters {
    fn count(&mut self, e: &Event) {
        self.events = self.events.saturating_add(1);
        let n = match e {
            Event::LoginStatusChanged {
                status: LoginStatus::Logined,
                ..
            } => &mut self.logins,
            Event::Relogin { success: true, .. } => &mut self.relogins,
            Event::Relogin { success: false, .. } => &mut self.relogin_failures,
            Event::KickedOffline {} => &mut self.kicks,
            Event::UserSigExpired {} => &mut self.expiries,
            Event::ConnectSuccess {} => &mut self.connects,
            Event::ConnectFailed { .. } => &mut self.connect_failures,
            _ => return,
        };
        *n = n.saturating_add(1);
    }
}

/// The index of a link state in [`Tally::by_conn`].
pub fn conn_index(c: ConnState) -> usize {
    match c {
        ConnState::Idle => 0,
        ConnState::Connecting => 1,
        ConnState::Connected => 2,
        ConnState::Waiting => 3,
    }
}

/// The hub. Create with [`Hub::new`], share as `Rc<Hub>`.
///
/// With many accounts, every account has a hub of its own for its board
/// ([`Hub::for_account`]); its events go to the root hub's ring, marked with the
/// account, and its board changes are counted in the root's [`Tally`].
pub struct Hub {
    /// The root hub (the ring, the subscribers), for an account's hub.
    root: Option<Rc<Hub>>,
    /// The root hub of a daemon with many accounts.
    multi: Cell<bool>,
    /// The account (its userID), for an account's hub.
    account: Option<Rc<str>>,
    tally: Cell<Tally>,
    /// Events emitted, by name (the order of `EVENT_NAMES`), and the counters the
    /// metrics derive from them.
    counters: Cell<Counters>,
    boot_id: String,
    clock: Clock,
    conn: RefCell<ConnPart>,
    session: RefCell<SessionPart>,
    /// The login status as its number, for readers on other threads (`api::lane`).
    status_word: Arc<AtomicU8>,
    net: RefCell<NetworkStatus>,
    server_clock: Cell<Option<ServerClock>>,
    /// The profile `getSelfInfo` answers, as its JSON.
    info: RefCell<Option<ProfileJson>>,
    ring: RefCell<Ring>,
    lag_limit: Cell<u64>,
    /// Connections with at least one subscription.
    subscribed: RefCell<Vec<Rc<Out>>>,
    next_sub: Cell<u64>,
    pump_scheduled: Cell<bool>,
    /// The ring's next seq when the last pump ran.
    pumped_to: Cell<u64>,
    /// The last pump found more than one new event: a burst is running, and the next pump
    /// waits a scheduler turn to gather more of it.
    burst: Cell<bool>,
    changed: Notify,
    /// Tasks waiting in [`Hub::changed`]: nobody to wake when none.
    waiting: Cell<usize>,
    /// The time every event rendered now is stamped with (see [`Hub::at_one_time`]).
    held_ms: Cell<Option<i64>>,
    /// Where events are rendered before they are copied out at their size.
    scratch: RefCell<Vec<u8>>,
}

/// Counts a waiter out of [`Hub::changed`] when it stops waiting.
struct Leave<'a>(&'a Cell<usize>);

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
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
            root: None,
            multi: Cell::new(false),
            account: None,
            tally: Cell::new(Tally::default()),
            counters: Cell::new(Counters::default()),
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
            status_word: Arc::new(AtomicU8::new(u8::from(SessionPart::default().status))),
            net: RefCell::new(NetworkStatus::default()),
            server_clock: Cell::new(None),
            info: RefCell::new(None),
            ring: RefCell::new(Ring::new(history)),
            lag_limit: Cell::new(u64::try_from(lag_limit).unwrap_or(u64::MAX)),
            subscribed: RefCell::new(Vec::new()),
            next_sub: Cell::new(1),
            pump_scheduled: Cell::new(false),
            pumped_to: Cell::new(1),
            burst: Cell::new(false),
            changed: Notify::new(),
            waiting: Cell::new(0),
            held_ms: Cell::new(None),
            scratch: RefCell::new(Vec::new()),
        })
    }

    /// The hub of account `user`: its own board; events and counts go to `root`.
    pub fn for_account(root: &Rc<Hub>, user: &str, server: String) -> Rc<Hub> {
        let hub = Rc::new(Hub {
            root: Some(root.clone()),
            multi: Cell::new(false),
            account: Some(Rc::from(user)),
            tally: Cell::new(Tally::default()),
            counters: Cell::new(Counters::default()),
            boot_id: root.boot_id.clone(),
            clock: root.clock,
            conn: RefCell::new(ConnPart {
                state: ConnState::Idle,
                connected_since: None,
                attempt: 0,
                retry_at: None,
                server,
            }),
            session: RefCell::new(SessionPart::default()),
            status_word: Arc::new(AtomicU8::new(u8::from(SessionPart::default().status))),
            net: RefCell::new(NetworkStatus::default()),
            server_clock: Cell::new(None),
            info: RefCell::new(None),
            ring: RefCell::new(Ring::new(1)),
            lag_limit: Cell::new(1),
            subscribed: RefCell::new(Vec::new()),
            next_sub: Cell::new(1),
            pump_scheduled: Cell::new(false),
            pumped_to: Cell::new(1),
            burst: Cell::new(false),
            changed: Notify::new(),
            waiting: Cell::new(0),
            held_ms: Cell::new(None),
            scratch: RefCell::new(Vec::new()),
        });
        root.count(&hub, 1);
        hub
    }

    /// An account's hub leaves the root's counts (the account is removed).
    pub fn detach(&self) {
        if let Some(root) = &self.root {
            root.count(self, -1);
        }
    }

    fn count(&self, account: &Hub, sign: i64) {
        let mut t = self.tally.get();
        let s = account.session.borrow();
        t.add(s.status, s.online, account.conn.borrow().state, sign);
        t.accounts = if sign > 0 {
            t.accounts.saturating_add(1)
        } else {
            t.accounts.saturating_sub(1)
        };
        self.tally.set(t);
        self.wake();
    }

    /// This root hub serves many accounts.
    pub fn set_multi(&self) {
        self.multi.set(true);
    }

    /// Does this root hub serve many accounts?
    pub fn multi(&self) -> bool {
        self.multi.get()
    }

    /// What happened since the start (root hub).
    pub fn counters(&self) -> Counters {
        self.counters.get()
    }

    /// The counts of the accounts (root hub).
    pub fn tally(&self) -> Tally {
        self.tally.get()
    }

    /// The account of this hub (None: the root).
    pub fn account(&self) -> Option<&str> {
        self.account.as_deref()
    }

    /// Runs `change` on the board, keeping the root's counts in step.
    fn recount(&self, change: impl FnOnce()) {
        let Some(root) = &self.root else {
            change();
            return;
        };
        let before = {
            let s = self.session.borrow();
            (s.status, s.online, self.conn.borrow().state)
        };
        change();
        let after = {
            let s = self.session.borrow();
            (s.status, s.online, self.conn.borrow().state)
        };
        if before != after {
            let mut t = root.tally.get();
            t.add(before.0, before.1, before.2, -1);
            t.add(after.0, after.1, after.2, 1);
            root.tally.set(t);
            root.wake();
        }
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

    /// The network watcher's view changed.
    pub fn set_net(&self, part: NetworkStatus) {
        if *self.net.borrow() != part {
            *self.net.borrow_mut() = part;
            self.wake();
        }
    }

    /// The link's state changed.
    pub fn set_conn(&self, part: ConnPart) {
        if *self.conn.borrow() != part {
            self.recount(|| *self.conn.borrow_mut() = part);
            self.wake();
        }
    }

    /// The session's state changed.
    pub fn set_session(&self, part: SessionPart) {
        if *self.session.borrow() != part {
            if part.user.is_empty() {
                *self.info.borrow_mut() = None;
            }
            self.status_word
                .store(u8::from(part.status), Ordering::Release);
            self.recount(|| *self.session.borrow_mut() = part);
            self.wake();
        }
    }

    /// The profile of the logged-in user.
    pub fn set_info(&self, info: Option<UserFullInfo>) {
        *self.info.borrow_mut() = info.as_ref().map(ProfileJson::from_info);
    }

    /// The profile, when somebody is logged in.
    pub fn info(&self) -> Option<UserFullInfo> {
        self.info.borrow().as_ref().and_then(ProfileJson::to_info)
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

    /// The login status as its number, kept up to date for readers on other threads.
    pub fn status_word(&self) -> Arc<AtomicU8> {
        self.status_word.clone()
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
            last_seq: self.root().ring.borrow().last_seq(),
            auth: s.auth.clone(),
            // One watcher for the daemon: an account shows the root's view.
            network: self.root().net.borrow().clone(),
        }
    }

    /// The hub that holds the ring: the root, or this one.
    fn root(&self) -> &Hub {
        self.root.as_deref().unwrap_or(self)
    }

    /// The connection state of the link.
    pub fn conn_state(&self) -> ConnState {
        self.conn.borrow().state
    }

    /// Online: logged in, and the server holds the login on the live connection.
    pub fn online(&self) -> bool {
        self.session.borrow().online && self.conn.borrow().state == ConnState::Connected
    }

    /// When the ticket expires, unix s.
    pub fn expires_at(&self) -> Option<i64> {
        self.session.borrow().expires_at
    }

    /// Resolves at the next change of the status or the next event.
    pub async fn changed(&self) {
        let changed = self.changed.notified();
        self.waiting.set(self.waiting.get().saturating_add(1));
        let _left = Leave(&self.waiting);
        changed.await
    }

    /// Wakes the tasks waiting in [`Hub::changed`], if any (an event costs no lock then).
    fn wake(&self) {
        if self.waiting.get() > 0 {
            self.changed.notify_waiters();
        }
    }

    /// Runs `f` with every event it emits stamped with one reading of the wall clock:
    /// the events of one read from the server, taken in together.
    pub fn at_one_time<R>(&self, f: impl FnOnce() -> R) -> R {
        let root = self.root.as_deref().unwrap_or(self);
        let outer = root.held_ms.replace(Some(root.clock.unix_ms()));
        let r = f();
        root.held_ms.set(outer);
        r
    }

    // ------------------------------------------------------------------ events

    /// The serialised form of an event: everything after the subscription id.
    fn render(&self, seq: u64, event: &Event) -> Bytes {
        self.render_for(seq, None, event)
    }

    /// [`Hub::render`] of an event of `account` (`"account":"…"` follows the boot id).
    fn render_for(&self, seq: u64, account: Option<&str>, event: &Event) -> Bytes {
        // Rendered in a buffer kept for the next event, then copied out at its exact size
        // (the ring may keep thousands: no growth steps, no spare capacity).
        let mut b = self.scratch.take();
        b.clear();
        b.extend_from_slice(b",\"seq\":");
        b.extend_from_slice(itoa::Buffer::new().format(seq).as_bytes());
        b.extend_from_slice(b",\"time\":");
        let time = self.held_ms.get().unwrap_or_else(|| self.clock.unix_ms());
        b.extend_from_slice(itoa::Buffer::new().format(time).as_bytes());
        b.extend_from_slice(b",\"bootID\":\"");
        b.extend_from_slice(self.boot_id.as_bytes());
        b.extend_from_slice(b"\",");
        if let Some(a) = account {
            b.extend_from_slice(b"\"account\":");
            // A valid UserID (printable ASCII) serialises as itself, escaped as JSON needs.
            if serde_json::to_writer(&mut b, a).is_err() {
                b.extend_from_slice(b"\"\"");
            }
            b.push(b',');
        }
        let start = b.len();
        if let Some(n) = event.json_len() {
            // Written straight at its exact size: the common fields but their last `,`,
            // then the event, whose `{` becomes that `,`.
            let mut out = Vec::with_capacity(start.saturating_add(n).saturating_add(1));
            out.extend_from_slice(b.get(..start.saturating_sub(1)).unwrap_or_default());
            let open = out.len();
            if event.write_json(&mut out).is_ok() && out.len() == open + n {
                if let Some(c) = out.get_mut(open).filter(|c| **c == b'{') {
                    *c = b',';
                    out.extend_from_slice(b"}\n");
                    self.scratch.replace(b);
                    return Bytes::from(out);
                }
            }
        }
        // `{"event":…,"data":…}` from serde, spliced after the common fields.
        if event.write_json(&mut b).is_err() || b.get(start) != Some(&b'{') {
            b.truncate(start);
            b.extend_from_slice(b"{\"event\":\"eventsLost\",\"data\":{}}");
        }
        // Copied out at its exact size without the event's `{` (the params object is
        // open) and with a `}` that closes the params.
        let mut out = Vec::with_capacity(b.len().saturating_add(1));
        out.extend_from_slice(&b[..start]);
        out.extend_from_slice(b.get(start + 1..).unwrap_or_default());
        out.extend_from_slice(b"}\n");
        self.scratch.replace(b);
        Bytes::from(out)
    }

    /// The body of an `eventsLost {from, to}`, with seq `to` (the seqs one subscription
    /// sees only ever rise).
    pub fn render_lost(&self, from: u64, to: u64) -> Bytes {
        self.render(to, &Event::EventsLost { from, to })
    }

    /// Numbers an event, keeps it, and has it delivered to the subscribers. The profile
    /// of an `onSelfInfoUpdated` becomes the one `getSelfInfo` answers.
    pub fn emit(self: &Rc<Self>, event: Event) {
        if let Some(root) = &self.root {
            self.wake();
            root.emit_for(self.account.clone(), event, &self.info);
            return;
        }
        self.emit_for(None, event, &self.info);
    }

    /// Numbers and keeps an event of `account` in this (root) hub's ring; `info` is the
    /// board whose profile an `onSelfInfoUpdated` replaces.
    fn emit_for(
        self: &Rc<Self>,
        account: Option<Rc<str>>,
        event: Event,
        info: &RefCell<Option<ProfileJson>>,
    ) {
        // A profile is kept and written as its JSON.
        let event = match event {
            Event::SelfInfoUpdated { info } => Event::SelfInfoJson(ProfileJson::from_info(&info)),
            e => e,
        };
        let name = event.name();
        let mut c = self.counters.get();
        c.count(&event);
        self.counters.set(c);
        let seq = self.ring.borrow().next_seq();
        let body = self.render_for(seq, account.as_deref(), &event);
        if let Event::SelfInfoJson(j) = event {
            // The board shares the line's copy: the profile ends 4 bytes before the line
            // (`}}` closes data and event, `}\n` the params).
            let kept =
                (body.len().checked_sub(4 + j.bytes().len())).and_then(|at| j.found_in(&body, at));
            *info.borrow_mut() = Some(kept.unwrap_or(j));
        }
        self.ring.borrow_mut().push_for(name, account, body);
        tracing::debug!(seq, event = name, "event");
        self.wake();
        self.schedule_pump();
    }

    fn schedule_pump(self: &Rc<Self>) {
        if self.subscribed.borrow().is_empty() {
            // Nobody to write to: what is in the ring now is no burst for a later pump.
            self.pump_scheduled.set(false);
            self.pumped_to.set(self.ring.borrow().next_seq());
            return;
        }
        if self.pump_scheduled.replace(true) {
            return;
        }
        let hub = self.clone();
        let wait = self.burst.get();
        tokio::task::spawn_local(async move {
            // The pump runs after the task that emitted (emits meanwhile find it
            // scheduled). While a burst runs it also waits one scheduler turn, past the
            // next poll of the sockets, so that pushes read in that poll go out in the
            // same writes; a lone event goes out at once.
            if wait {
                tokio::task::yield_now().await;
            }
            hub.pump_scheduled.set(false);
            let next = hub.ring.borrow().next_seq();
            hub.burst
                .set(next.saturating_sub(hub.pumped_to.replace(next)) > 1);
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::UnixStream;

    /// Reads from `r` until `n` more lines have come, or panics after 10 s.
    async fn lines(r: &mut UnixStream, got: &mut Vec<u8>, n: usize) -> Vec<String> {
        let want = got.iter().filter(|&&b| b == b'\n').count() + n;
        let read = async {
            let mut buf = [0u8; 4096];
            while got.iter().filter(|&&b| b == b'\n').count() < want {
                let k = r.read(&mut buf).await.expect("read");
                assert!(k > 0, "the daemon side closed");
                got.extend_from_slice(&buf[..k]);
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), read)
            .await
            .expect("the events within 10 s");
        String::from_utf8(got.clone())
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// A connection subscribed to every event of `hub` (its send buffer `sndbuf` bytes
    /// when given), and the subscriber's end of it.
    fn subscriber(hub: &Rc<Hub>, sndbuf: Option<usize>) -> (Rc<Out>, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        if let Some(n) = sndbuf {
            socket2::SockRef::from(&a).set_send_buffer_size(n).unwrap();
        }
        let out = Out::new(Rc::new(
            super::super::api::conn::ConnSocket::new(a).unwrap(),
        ));
        hub.subscribe(&out, Filter::ALL, None);
        (out, b)
    }

    fn seqs(lines: &[String]) -> Vec<u64> {
        lines
            .iter()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["params"]["seq"].as_u64().unwrap()
            })
            .collect()
    }

    /// A profile event written straight at its size is the line the general path writes.
    #[test]
    fn a_profile_line_is_written_at_its_size_as_the_general_path_writes_it() {
        let hub = Hub::new(new_boot_id(), Clock::System, 100, 100, "ws://x".into());
        let mut info = crate::proto::profile::UserFullInfo {
            user_id: "al\"ice".into(),
            nick_name: "é\n".into(),
            ..Default::default()
        };
        info.custom_info
            .insert("Tag_Profile_Custom_Seq".into(), "9".into());
        let json = Event::SelfInfoJson(ProfileJson::from_info(&info));
        for account in [None, Some("al\"ice")] {
            let fast = hub.render_for(7, account, &json);
            let general =
                hub.render_for(7, account, &Event::SelfInfoUpdated { info: info.clone() });
            // The same but for the time, which may have ticked between the two.
            let time = |b: &Bytes| {
                let v: serde_json::Value = serde_json::from_slice(
                    &[b"{\"params\":{\"subscription\":1".as_slice(), b].concat(),
                )
                .unwrap();
                v["params"]["time"].as_i64().unwrap()
            };
            let (tf, tg) = (time(&fast), time(&general));
            let fast = String::from_utf8(fast.to_vec()).unwrap();
            let general = String::from_utf8(general.to_vec()).unwrap();
            assert_eq!(
                fast.replace(&tf.to_string(), "T"),
                general.replace(&tg.to_string(), "T")
            );
            assert!(fast.ends_with("}}}\n"), "{fast}");
        }
        // The size it is written at is the size written.
        let mut v = Vec::new();
        json.write_json(&mut v).unwrap();
        assert_eq!(json.json_len(), Some(v.len()));
    }

    /// Lone events to a subscriber that does not read: each is written straight from the
    /// ring until the socket is full; the one it refuses waits in the queue, the later ones
    /// in the ring; when the subscriber reads, every event arrives once, in order, and the
    /// next lone event is again written at once.
    #[tokio::test(flavor = "current_thread")]
    async fn a_lone_event_the_socket_refuses_waits_and_keeps_its_place() {
        tokio::task::LocalSet::new()
            .run_until(async {
                let hub = Hub::new(new_boot_id(), Clock::System, 1000, 1000, "ws://x".into());
                // A small send buffer: a few events fill it.
                let (out, mut b) = subscriber(&hub, Some(4096));
                let mut refused_at = None;
                for i in 1..=300u64 {
                    hub.emit(Event::Connecting {});
                    // The pump runs before the next event: each is a lone one.
                    tokio::task::yield_now().await;
                    if refused_at.is_none() && out.pending() > 0 {
                        refused_at = Some(i);
                    }
                }
                let refused_at = refused_at.expect("the socket refused an event");
                assert!(refused_at > 1, "the first events went out at once");
                assert!(!hub.burst.get(), "lone events are no burst");
                let mut got = Vec::new();
                let all = lines(&mut b, &mut got, 300).await;
                assert_eq!(seqs(&all), (1..=300).collect::<Vec<_>>());
                out.drained().await;
                assert_eq!(out.pending(), 0);
                hub.emit(Event::ConnectSuccess {});
                assert_eq!(seqs(&lines(&mut b, &mut got, 1).await).last(), Some(&301));
            })
            .await;
    }

    /// A burst switches the pump to waiting a turn; the first lone event after it switches
    /// it back, and every event arrives once, in order, either way.
    #[tokio::test(flavor = "current_thread")]
    async fn the_pump_waits_a_turn_only_while_a_burst_runs() {
        tokio::task::LocalSet::new()
            .run_until(async {
                let hub = Hub::new(new_boot_id(), Clock::System, 100, 100, "ws://x".into());
                let (out, mut b) = subscriber(&hub, None);
                let mut got = Vec::new();
                assert!(!hub.burst.get(), "no burst before any event");

                // A lone event.
                hub.emit(Event::Connecting {});
                assert_eq!(seqs(&lines(&mut b, &mut got, 1).await), [1]);
                assert!(!hub.burst.get(), "one event is no burst");

                // Three at once: the pump that writes them finds a burst.
                for _ in 0..3 {
                    hub.emit(Event::ConnectSuccess {});
                }
                assert_eq!(seqs(&lines(&mut b, &mut got, 3).await), [1, 2, 3, 4]);
                assert!(hub.burst.get(), "three new events are a burst");

                // The burst goes on: the waiting pump still writes everything, in order.
                for _ in 0..2 {
                    hub.emit(Event::Connecting {});
                }
                assert_eq!(seqs(&lines(&mut b, &mut got, 2).await), [1, 2, 3, 4, 5, 6]);
                assert!(hub.burst.get());

                // A lone event ends it.
                hub.emit(Event::ConnectSuccess {});
                assert_eq!(
                    seqs(&lines(&mut b, &mut got, 1).await),
                    [1, 2, 3, 4, 5, 6, 7]
                );
                assert!(!hub.burst.get(), "a lone event ends the burst");

                // Events nobody is subscribed to are no burst for the next subscriber.
                assert!(hub.unsubscribe(&out, 1));
                for _ in 0..5 {
                    hub.emit(Event::Connecting {});
                }
                hub.subscribe(&out, Filter::ALL, None);
                hub.emit(Event::ConnectSuccess {});
                let all = lines(&mut b, &mut got, 1).await;
                assert_eq!(seqs(&all).last(), Some(&13));
                assert!(!hub.burst.get(), "unsubscribed events are no burst");
            })
            .await;
    }
}
