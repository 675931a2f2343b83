//! One connection's task: read lines, answer them, stop reading while a lot waits for the
//! client (back-pressure), close an idle connection, and after a half-close keep serving
//! what was asked until it is done.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use super::access::{access_of, permits};
use super::conn::{ConnSocket, ReadReady};
use super::dispatch::{self, Outcome};
use super::lane;
use super::line::{Lines, Piece};
use super::out::Out;
use super::Api;
use crate::codes::code;
use crate::proto::api::Method;
use crate::proto::rpc::{self, Id, Line, RpcError};

/// How often a half-closed connection with subscriptions is checked for a peer that has
/// gone away completely.
const PROBE_EVERY: Duration = Duration::from_secs(2);

/// How much may wait for a client before its requests are no longer read: two lines' worth,
/// at least 256 KiB. One batch's replies may go beyond it (they are bounded by the batch).
fn high_water(max_line: usize) -> usize {
    max_line.saturating_mul(2).max(256 * 1024)
}

thread_local! {
    /// What one read brings in (one per thread, reused by every connection).
    static READ: RefCell<Vec<u8>> = RefCell::new(vec![0; 64 * 1024]);
    /// Where a single reply is put together.
    static REPLY: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The state of one connection's reading side.
struct Conn<'a> {
    api: &'a Rc<Api>,
    out: &'a Rc<Out>,
    peer: Option<(u32, u32)>,
    lines: Lines,
    /// Requests of this connection waiting for the Session.
    waiting: Rc<std::cell::Cell<usize>>,
    settled: Rc<tokio::sync::Notify>,
    /// Plain `getLoginStatus` requests in a row, answered (see [`lane`]).
    polls: u32,
}

/// Where [`serve`] takes up a connection given back by a lane.
pub struct Start {
    /// Input read before and not answered yet.
    pub unread: Vec<u8>,
    /// Reply bytes queued already (the caller sent them to the connection's `Out`).
    pub unwritten: Vec<u8>,
    /// When the last request was read.
    pub last_request: tokio::time::Instant,
}

/// How [`serve`] ended.
pub enum Served {
    /// The connection is over.
    Done,
    /// The connection only polls the login status and is idle otherwise: lend it to a
    /// thread ([`lane`]). Nothing waits to be written and no line is partly read. The
    /// instant is when its last request was read.
    Lend(tokio::time::Instant),
}

enum Read {
    /// Some input was read (and answered).
    Data,
    /// Nothing to read after all.
    Empty,
    /// The client shut down its writing side (or closed).
    Eof,
    /// The connection failed.
    Failed,
}

impl Conn<'_> {
    fn send_one(&self, bytes: &[u8]) {
        REPLY.with(|r| {
            let mut r = r.borrow_mut();
            r.clear();
            r.extend_from_slice(bytes);
            r.push(b'\n');
            self.out.send(&self.api.hub, &r);
            if r.capacity() > 64 * 1024 {
                r.shrink_to(1024);
            }
        });
    }

    fn send_error(&self, id: &Id, e: &RpcError) {
        self.send_one(&dispatch::refused(id, e));
    }

    /// Runs `fut` in the background, counted as a request in flight; `done` gets its reply.
    fn later<T: 'static>(
        &self,
        fut: impl std::future::Future<Output = T> + 'static,
        done: impl FnOnce(&Rc<Api>, &Rc<Out>, T) + 'static,
    ) {
        let api = self.api.clone();
        let out = self.out.clone();
        let waiting = self.waiting.clone();
        let settled = self.settled.clone();
        waiting.set(waiting.get() + 1);
        api.begin_request();
        tokio::task::spawn_local(async move {
            let r = fut.await;
            done(&api, &out, r);
            waiting.set(waiting.get().saturating_sub(1));
            api.end_request();
            settled.notify_waiters();
        });
    }

    fn on_line(&mut self, line: &[u8]) {
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        // Anything but a plain `getLoginStatus` answered ends the run.
        let polls = std::mem::take(&mut self.polls);
        let Ok(text) = std::str::from_utf8(line) else {
            return self.send_error(
                &Id::null(),
                &RpcError::parse_error("the line is not valid UTF-8"),
            );
        };
        match rpc::read_line(text) {
            Err(e) => self.send_error(&Id::null(), &e),
            Ok(Line::One(Err((id, e)))) => self.send_error(&id, &e),
            Ok(Line::One(Ok(inc))) => {
                let poll = lane::is_plain_status(&inc);
                match dispatch::call(self.api, self.out, self.peer, inc) {
                    Outcome::Now(Some(r)) => {
                        if poll {
                            self.polls = polls.saturating_add(1);
                        }
                        self.send_one(&r);
                    }
                    Outcome::Now(None) => {}
                    Outcome::Later(fut) => {
                        self.later(fut, |api, out, r| {
                            if let Some(mut r) = r {
                                r.push(b'\n');
                                out.send(&api.hub, &r);
                            }
                        });
                    }
                }
            }
            Ok(Line::Batch(items)) => self.batch(items),
        }
    }

    fn batch(&mut self, items: Vec<Result<rpc::Incoming<'_>, rpc::Refused>>) {
        let mut parts = Vec::with_capacity(items.len());
        let mut later = false;
        for item in items {
            parts.push(match item {
                Err((id, e)) => Outcome::Now(Some(dispatch::refused(&id, &e))),
                Ok(inc) => {
                    let o = dispatch::call(self.api, self.out, self.peer, inc);
                    later |= matches!(o, Outcome::Later(_));
                    o
                }
            });
        }
        if !later {
            let replies: Vec<Vec<u8>> = parts
                .into_iter()
                .filter_map(|p| match p {
                    Outcome::Now(r) => r,
                    Outcome::Later(_) => None,
                })
                .collect();
            if let Some(b) = batch_reply(replies) {
                self.out.send(&self.api.hub, &b);
            }
            return;
        }
        let all = futures_util::future::join_all(parts.into_iter().map(|p| async move {
            match p {
                Outcome::Now(r) => r,
                Outcome::Later(f) => f.await,
            }
        }));
        self.later(all, |api, out, replies| {
            if let Some(b) = batch_reply(replies.into_iter().flatten().collect()) {
                out.send(&api.hub, &b);
            }
        });
    }

    fn on_piece(&mut self, p: Piece<'_>, max: usize) {
        match p {
            Piece::Line(l) => self.on_line(l),
            Piece::TooLong => self.send_error(
                &Id::null(),
                &RpcError::new(
                    code::INVALID_REQUEST,
                    format!("request line longer than api.max_line_bytes ({max} bytes); discarded"),
                ),
            ),
        }
    }

    /// Reads what is there and answers every complete line.
    ///
    /// A read that returns less than the buffer holds emptied the socket: the read
    /// readiness is cleared right there (tokio clears it only with a tick it saw before
    /// the read, so data that arrived meanwhile is announced again by the next edge), and
    /// the task waits for the next request without a second, empty read — one system call
    /// fewer per request.
    fn read(&mut self, ready: &mut ReadReady<'_>) -> Read {
        use std::io::Read as _;
        let max = self.api.settings.borrow().max_line_bytes;
        READ.with(|b| {
            let mut b = b.borrow_mut();
            let got = std::cell::Cell::new(0usize);
            let r = ConnSocket::read_with(ready, |sock| {
                let n = sock.read(&mut b)?;
                if n > 0 && n < b.len() {
                    got.set(n);
                    return Err(std::io::ErrorKind::WouldBlock.into());
                }
                Ok(n)
            });
            let n = match r {
                Ok(0) => return Read::Eof,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && got.get() > 0 => got.get(),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Read::Empty,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return Read::Empty,
                Err(e) => {
                    tracing::debug!("API client read failed: {e}");
                    return Read::Failed;
                }
            };
            let mut lines = std::mem::take(&mut self.lines);
            lines.feed(&b[..n], max, |p| self.on_piece(p, max));
            self.lines = lines;
            Read::Data
        })
    }

    fn idle(&self) -> bool {
        !self.out.has_subs() && self.waiting.get() == 0 && self.out.pending() == 0
    }

    /// The connection may go to a lane now: idle, no partial line, a thread free, a
    /// single account (with many, `getLoginStatus` names one), and a peer allowed to ask.
    fn lendable(&self) -> bool {
        self.idle()
            && self.lines.is_empty()
            && self.api.accounts.get().is_none()
            && self.api.lanes.active() < lane::MAX_LANES
            && permits(
                access_of(&self.api.settings.borrow(), self.peer),
                Method::GetLoginStatus,
            )
    }
}

/// The whole reply to a batch: `[a,b,…]\n`; None when every member was a notification.
fn batch_reply(replies: Vec<Vec<u8>>) -> Option<Vec<u8>> {
    if replies.is_empty() {
        return None;
    }
    let mut b = Vec::with_capacity(replies.iter().map(|r| r.len() + 1).sum::<usize>() + 2);
    b.push(b'[');
    for (i, r) in replies.iter().enumerate() {
        if i > 0 {
            b.push(b',');
        }
        b.extend_from_slice(r);
    }
    b.extend_from_slice(b"]\n");
    Some(b)
}

/// Serves one connection until it ends.
pub async fn serve(
    api: &Rc<Api>,
    stream: &ConnSocket,
    out: &Rc<Out>,
    peer: Option<(u32, u32)>,
    start: Option<Box<Start>>,
) -> Served {
    let mut c = Conn {
        api,
        out,
        peer,
        lines: Lines::default(),
        waiting: Rc::new(std::cell::Cell::new(0)),
        settled: Rc::new(tokio::sync::Notify::new()),
        polls: 0,
    };
    // Back from a lane, the idle limit runs from its last request.
    let mut was_idle = start.is_some();
    let mut last_read = start
        .as_ref()
        .map_or_else(tokio::time::Instant::now, |s| s.last_request);
    let mut armed_limit = Duration::from_millis(api.settings.borrow().idle_timeout_ms);
    let idle_timer = tokio::time::sleep_until(last_read + armed_limit);
    tokio::pin!(idle_timer);
    if let Some(s) = start {
        let max = api.settings.borrow().max_line_bytes;
        let mut lines = std::mem::take(&mut c.lines);
        lines.feed(&s.unread, max, |p| c.on_piece(p, max));
        c.lines = lines;
    }
    loop {
        if out.is_dead() {
            return Served::Done;
        }
        let (max_line, idle_limit) = {
            let s = api.settings.borrow();
            (s.max_line_bytes, Duration::from_millis(s.idle_timeout_ms))
        };
        // Back-pressure: while much waits for this client, its requests are not read.
        if out.pending() > high_water(max_line) {
            tokio::select! {
                _ = out.drained() => {}
                _ = tokio::time::sleep(idle_limit.min(Duration::from_secs(1))) => {
                    if out.stalled_for() >= idle_limit {
                        tracing::warn!(
                            pending = out.pending(),
                            "disconnecting an API client that does not read its replies"
                        );
                        return Served::Done;
                    }
                }
            }
            continue;
        }
        let idle = c.idle();
        if idle && !was_idle {
            // Idle from now: the limit runs from here, not from the last request.
            last_read = tokio::time::Instant::now();
        }
        was_idle = idle;
        if idle_limit != armed_limit {
            // A reload changed the limit.
            armed_limit = idle_limit;
            idle_timer.as_mut().reset(last_read + idle_limit);
        }
        let ready = if idle {
            // One timer for the connection's life, moved on only when it fires: a
            // request does not register and cancel a timer of its own.
            loop {
                tokio::select! {
                    biased;
                    r = stream.readable() => break r,
                    () = &mut idle_timer => {
                        let deadline = last_read + idle_limit;
                        if tokio::time::Instant::now() >= deadline {
                            tracing::debug!(
                                "closing an API connection idle for {} ms",
                                idle_limit.as_millis()
                            );
                            return Served::Done;
                        }
                        idle_timer.as_mut().reset(deadline);
                    }
                }
            }
        } else {
            stream.readable().await
        };
        let Ok(mut ready) = ready else {
            return Served::Done;
        };
        last_read = tokio::time::Instant::now();
        match c.read(&mut ready) {
            Read::Data if c.polls >= lane::LEND_AFTER && c.lendable() => {
                return Served::Lend(last_read)
            }
            Read::Data | Read::Empty => {}
            Read::Failed => return Served::Done,
            Read::Eof => break,
        }
    }
    // Half-closed: a last line without '\n' still counts; then answer what was asked and
    // keep delivering events until the subscriptions end or the peer is gone.
    let max = api.settings.borrow().max_line_bytes;
    let mut lines = std::mem::take(&mut c.lines);
    lines.finish(|p| c.on_piece(p, max));
    loop {
        if out.is_dead() {
            return Served::Done;
        }
        if c.waiting.get() == 0 && !out.has_subs() {
            break;
        }
        // A peer that closed completely (rather than shutting down its writing side only)
        // is gone already: its subscriptions and its slot end now. The loop turns when a
        // reply settles and at least every PROBE_EVERY, and asks each time. (Asking only
        // at PROBE_EVERY let clients that subscribe and close in a loop hold a slot each
        // and fill `api.max_clients`.)
        if out.has_subs() && out.probe_gone() {
            return Served::Done;
        }
        let settled = c.settled.notified();
        if c.waiting.get() == 0 && !out.has_subs() {
            break;
        }
        tokio::select! {
            _ = settled => {}
            _ = tokio::time::sleep(PROBE_EVERY) => {}
        }
    }
    out.finish().await;
    Served::Done
}
