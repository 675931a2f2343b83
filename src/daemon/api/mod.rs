//! The local API: the Unix-socket listener and one task per client connection.
//!
//! Newline-delimited JSON-RPC 2.0 (DESIGN §5, `docs/api.md`).
//!
//! - [`line`] — splitting the input into lines, with the length limit.
//! - [`access`] — the access lists, per request, and the slots kept for full access.
//! - [`dispatch`] — request → reply: typed params, the hub's answers, the Session's calls.
//! - [`out`] — the writing side of a connection: replies and events, never blocking.
//! - [`client`] — one connection's task: reading, back-pressure, idle limit, half-close.
//! - [`conn`] — a connection's socket, watched for writability only while output waits.
//! - [`lane`] — a thread of its own for a connection that keeps asking `getLoginStatus`.
//! - [`socket`] — binding the socket safely (and removing only our own).
//!
//! Everything runs on the daemon's one thread; a request that only reads is answered as
//! soon as its line is read, in the same wake-up, with one write. The one exception is a
//! connection that polls the login status: it is lent to a thread of its own while it
//! does only that ([`lane`]).

pub mod access;
pub mod client;
pub mod conn;
pub mod dispatch;
pub mod lane;
pub mod line;
pub mod multi;
pub mod out;

pub use crate::daemon::socket::{self, adopt, bind, BoundSocket};

use actix::prelude::*;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::codes::code;
use crate::config::ApiConfig;
use crate::daemon::hub::Hub;
use crate::daemon::messages::{ReconnectNow, SessionCall};
use crate::proto::rpc::{self, Id, RpcError};
use access::{access_of, limited_slots, Access};
use out::Out;

/// How often a repeated warning (refused clients) may be logged.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Logs a warning at most once per [`WARN_EVERY`], with how many were suppressed.
#[derive(Default)]
pub struct Throttle {
    last: Cell<Option<Instant>>,
    suppressed: Cell<u64>,
}

impl Throttle {
    /// Calls `log` with the count of suppressed repeats when it is time; else counts.
    pub fn warn(&self, log: impl FnOnce(u64)) {
        let now = Instant::now();
        if self
            .last
            .get()
            .is_some_and(|t| now.duration_since(t) < WARN_EVERY)
        {
            self.suppressed.set(self.suppressed.get().saturating_add(1));
            return;
        }
        self.last.set(Some(now));
        log(self.suppressed.replace(0));
    }
}

/// What every connection shares.
pub struct Api {
    /// The status board, the ring, the subscribers.
    pub hub: Rc<Hub>,
    /// The Session's calls.
    pub session: Recipient<SessionCall>,
    /// `reconnect`.
    pub reconnect: Recipient<ReconnectNow>,
    /// `[api]`, replaced on SIGHUP (through [`Api::set_settings`]).
    pub settings: RefCell<ApiConfig>,
    /// The connections lent to threads of their own.
    pub lanes: std::sync::Arc<lane::Shared>,
    /// The fleet's keys in etcd (`fleet*` methods), in fleet mode.
    pub fleet: RefCell<Option<crate::fleet::Admin>>,
    /// Many accounts (`accounts.multi`): the registry the calls go to.
    pub accounts: std::cell::OnceCell<Rc<crate::daemon::accounts::Accounts>>,
    clients: Cell<usize>,
    limited: Cell<usize>,
    next_conn: Cell<u64>,
    conns: RefCell<HashMap<u64, Rc<Out>>>,
    in_flight: Cell<usize>,
    settled: Notify,
    refusals: Throttle,
}

impl Api {
    /// The shared state of the API.
    pub fn new(
        hub: Rc<Hub>,
        session: Recipient<SessionCall>,
        reconnect: Recipient<ReconnectNow>,
        settings: ApiConfig,
    ) -> Rc<Api> {
        Rc::new(Api {
            lanes: lane::Shared::new(hub.status_word()),
            hub,
            session,
            reconnect,
            settings: RefCell::new(settings),
            fleet: RefCell::new(None),
            accounts: std::cell::OnceCell::new(),
            clients: Cell::new(0),
            limited: Cell::new(0),
            next_conn: Cell::new(1),
            conns: RefCell::new(HashMap::new()),
            in_flight: Cell::new(0),
            settled: Notify::new(),
            refusals: Throttle::default(),
        })
    }

    /// Replaces `[api]` (a reload); lent connections come back to the loop to be judged by
    /// the new settings.
    pub fn set_settings(&self, settings: ApiConfig) {
        *self.settings.borrow_mut() = settings;
        self.lanes.settings_changed();
    }

    /// Connections being served.
    pub fn clients(&self) -> usize {
        self.clients.get()
    }

    /// Requests waiting for the Session.
    pub fn in_flight(&self) -> usize {
        self.in_flight.get()
    }

    fn begin_request(&self) {
        self.in_flight.set(self.in_flight.get() + 1);
    }

    fn end_request(&self) {
        self.in_flight.set(self.in_flight.get().saturating_sub(1));
        self.settled.notify_waiters();
    }

    /// The graceful end: answers the requests already read and lets every connection take
    /// what is queued for it, until `deadline`.
    pub async fn wind_down(&self, deadline: Instant) {
        let _ = tokio::time::timeout_at(deadline, async {
            while self.in_flight.get() > 0 {
                let n = self.settled.notified();
                if self.in_flight.get() == 0 {
                    break;
                }
                n.await;
            }
            // Events published just now are written before the connections are left.
            tokio::task::yield_now().await;
            let outs: Vec<Rc<Out>> = self.conns.borrow().values().cloned().collect();
            for o in outs {
                o.pump(&self.hub);
                o.drained().await;
            }
        })
        .await;
    }

    fn refuse(&self, stream: UnixStream, why: String) {
        self.refusals
            .warn(|n| tracing::warn!(suppressed = n, "refusing an API client: {why}"));
        let mut line = Vec::with_capacity(128);
        rpc::write_error(
            &mut line,
            &Id::null(),
            &RpcError::new(code::TOO_MANY_CLIENTS, format!("{why}; try again later")),
        );
        line.push(b'\n');
        // Best effort and never blocking: the socket buffer of a new connection is empty.
        let _ = stream.try_write(&line);
    }

    fn accept(self: &Rc<Self>, stream: UnixStream) {
        let peer = stream.peer_cred().ok().map(|c| (c.uid(), c.gid()));
        let (max, full) = {
            let s = self.settings.borrow();
            (s.max_clients, access_of(&s, peer) == Access::Full)
        };
        if self.clients.get() >= max {
            return self.refuse(
                stream,
                format!("too many clients (api.max_clients = {max})"),
            );
        }
        if !full && self.limited.get() >= limited_slots(max) {
            return self.refuse(
                stream,
                format!(
                    "too many clients without full access ({} of api.max_clients = {max})",
                    limited_slots(max)
                ),
            );
        }
        self.clients.set(self.clients.get() + 1);
        if !full {
            self.limited.set(self.limited.get() + 1);
        }
        let id = self.next_conn.get();
        self.next_conn.set(id + 1);
        let api = self.clone();
        let stream = match conn::ConnSocket::new(stream) {
            Ok(s) => Rc::new(s),
            Err(e) => {
                tracing::warn!("cannot take an API connection: {e}");
                self.clients.set(self.clients.get().saturating_sub(1));
                if !full {
                    self.limited.set(self.limited.get().saturating_sub(1));
                }
                return;
            }
        };
        tokio::task::spawn_local(async move {
            api.serve_conn(id, stream, peer).await;
            api.clients.set(api.clients.get().saturating_sub(1));
            if !full {
                api.limited.set(api.limited.get().saturating_sub(1));
            }
        });
    }

    /// Serves connection `id` until it ends: on the loop, and on a thread of its own while
    /// it only polls the login status ([`lane`]).
    async fn serve_conn(
        self: &Rc<Self>,
        id: u64,
        mut stream: Rc<conn::ConnSocket>,
        peer: Option<(u32, u32)>,
    ) {
        // Boxed, and only when back from a lane: every connection's task holds this.
        let mut start: Option<Box<client::Start>> = None;
        loop {
            let out = Out::new(stream.clone());
            self.conns.borrow_mut().insert(id, out.clone());
            if let Some(s) = &start {
                if !s.unwritten.is_empty() {
                    out.send(&self.hub, &s.unwritten);
                }
            }
            let end = client::serve(self, &stream, &out, peer, start.take()).await;
            let client::Served::Lend(last_request) = end else {
                out.abort();
                out.clear_subs();
                self.hub.forget(&out);
                self.conns.borrow_mut().remove(&id);
                return;
            };
            // Nothing waits in `out` (the loop lends only an idle connection).
            self.hub.forget(&out);
            self.conns.borrow_mut().remove(&id);
            drop(out);
            let std = match Rc::try_unwrap(stream) {
                Ok(s) => s.into_std(),
                Err(s) => {
                    // Still referenced (cannot happen once `out` is gone): stay on the loop.
                    stream = s;
                    continue;
                }
            };
            let max_line = self.settings.borrow().max_line_bytes;
            let idle_limit =
                || std::time::Duration::from_millis(self.settings.borrow().idle_timeout_ms);
            // Boxed: the wait is rare, and every connection's task would hold its state.
            let away = lane::away(
                &self.lanes,
                std,
                max_line,
                last_request.into_std(),
                idle_limit,
            );
            let lane::Away::Back(back) = Box::pin(away).await else {
                return;
            };
            stream = match conn::ConnSocket::from_std(back.stream) {
                Ok(s) => Rc::new(s),
                Err(e) => {
                    tracing::warn!("cannot take back an API connection: {e}");
                    return;
                }
            };
            start = Some(Box::new(client::Start {
                unread: back.unread,
                unwritten: back.unwritten,
                last_request: Instant::from_std(back.last_request),
            }));
        }
    }
}

/// Accepts connections until `stop` resolves.
pub async fn serve(listener: &UnixListener, api: Rc<Api>, stop: impl Future<Output = ()>) {
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            r = listener.accept() => match r {
                Ok((stream, _)) => api.accept(stream),
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}
