//! The local API: the Unix-socket listener and one actor per client connection.
//!
//! Newline-delimited JSON-RPC 2.0 (DESIGN §5, `docs/api.md`). Requests of one connection
//! run concurrently and replies carry their id; events reach subscribers through a
//! bounded queue per connection; after the client shuts down its writing side, pending
//! replies and subscribed events still flow until it closes.

use actix::prelude::*;
use bytes::{Buf, Bytes, BytesMut};
use futures_util::future::join_all;
use serde_json::{json, Map, Value};
use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use tokio::io::AsyncWriteExt;
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio_util::codec::{Decoder, FramedRead};

use crate::codes::{code, LogLevel};
use crate::config::ApiConfig;
use crate::core::session::{Fail, Reply};
use crate::daemon::events::{Board, EventLog};
use crate::daemon::messages::*;
use crate::daemon::session::{valid_user_id, Session};
use crate::proto::api::EVENT_NAMES;

/// A JSON-RPC error.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    /// The code (Tencent's or JSON-RPC's).
    pub code: i32,
    /// One line.
    pub message: String,
}

impl RpcError {
    fn new(code: i32, message: impl Into<String>) -> RpcError {
        RpcError {
            code,
            message: message.into(),
        }
    }
}

impl From<Fail> for RpcError {
    fn from(f: Fail) -> RpcError {
        RpcError {
            code: f.code,
            message: f.desc,
        }
    }
}

fn error_reply(id: Value, e: &RpcError) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": e.code, "message": e.message}})
}

fn line(v: &Value) -> Bytes {
    let mut s = serde_json::to_vec(v).unwrap_or_default();
    s.push(b'\n');
    Bytes::from(s)
}

// ---------------------------------------------------------------- framing

/// One input line, or the fact that a line was too long (and was discarded).
#[derive(Debug)]
pub enum Line {
    /// A complete line without its `\n`.
    Data(BytesMut),
    /// A line longer than the limit; its bytes were dropped.
    TooLong,
}

/// Newline framing with a length limit that keeps going after an over-long line.
#[derive(Debug)]
pub struct LineCodec {
    max: usize,
    discarding: bool,
    scanned: usize,
}

impl LineCodec {
    /// A codec for lines of at most `max` bytes.
    pub fn new(max: usize) -> LineCodec {
        LineCodec {
            max,
            discarding: false,
            scanned: 0,
        }
    }
}

impl Decoder for LineCodec {
    type Item = Line;
    type Error = io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Line>, io::Error> {
        loop {
            let nl = buf[self.scanned..]
                .iter()
                .position(|&b| b == b'\n')
                .map(|i| i + self.scanned);
            match nl {
                Some(i) => {
                    self.scanned = 0;
                    if self.discarding {
                        buf.advance(i + 1);
                        self.discarding = false;
                        continue;
                    }
                    if i > self.max {
                        buf.advance(i + 1);
                        return Ok(Some(Line::TooLong));
                    }
                    let mut l = buf.split_to(i + 1);
                    l.truncate(i);
                    if l.last() == Some(&b'\r') {
                        l.truncate(i - 1);
                    }
                    return Ok(Some(Line::Data(l)));
                }
                None => {
                    if self.discarding {
                        buf.clear();
                        self.scanned = 0;
                        return Ok(None);
                    }
                    if buf.len() > self.max {
                        buf.clear();
                        self.scanned = 0;
                        self.discarding = true;
                        return Ok(Some(Line::TooLong));
                    }
                    self.scanned = buf.len();
                    return Ok(None);
                }
            }
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Line>, io::Error> {
        if let Some(l) = self.decode(buf)? {
            return Ok(Some(l));
        }
        self.scanned = 0;
        if buf.is_empty() || self.discarding {
            buf.clear();
            return Ok(None);
        }
        // A last line without '\n' still counts.
        Ok(Some(Line::Data(buf.split())))
    }
}

// ---------------------------------------------------------------- socket set-up

pub use crate::daemon::socket::{adopt, bind, BoundSocket};

// ---------------------------------------------------------------- the server

/// What every client actor shares: the addresses and the reloadable settings.
#[derive(Clone)]
pub struct ApiShared {
    /// The Session actor.
    pub session: Addr<Session>,
    /// The event log.
    pub events: Addr<EventLog>,
    /// The event log's status board, read directly by the status getters.
    pub board: Board,
    /// `[api]`, replaced on SIGHUP.
    pub settings: Rc<RefCell<ApiConfig>>,
    /// Connections being served.
    pub clients: Rc<RefCell<usize>>,
}

/// Accepts connections until the returned future is dropped.
pub async fn serve(listener: &UnixListener, shared: ApiShared) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => accept(stream, shared.clone()),
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                actix_rt::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

fn accept(stream: UnixStream, shared: ApiShared) {
    let (max, queue, max_line) = {
        let s = shared.settings.borrow();
        (s.max_clients, s.subscriber_queue, s.max_line_bytes)
    };
    if *shared.clients.borrow() >= max {
        tracing::warn!("refusing a client: api.max_clients ({max}) reached");
        actix_rt::spawn(async move {
            let mut stream = stream;
            let e = RpcError::new(
                -32000,
                format!("too many clients (api.max_clients = {max}); try again later"),
            );
            let _ = stream.write_all(&line(&error_reply(Value::Null, &e))).await;
            let _ = stream.shutdown().await;
        });
        return;
    }
    // The credentials are read once; the access they give is decided per request from the
    // current lists, so a SIGHUP that changes `api.allow_*` applies to open connections too.
    let peer = stream.peer_cred().ok().map(|c| (c.uid(), c.gid()));
    *shared.clients.borrow_mut() += 1;
    let (read, write) = stream.into_split();
    let (reply_tx, reply_rx) = mpsc::unbounded_channel();
    let (event_tx, event_rx) = mpsc::channel(queue.max(2));
    let unsent = Rc::new(Cell::new(0usize));
    let writer_unsent = unsent.clone();
    ClientConn::create(move |ctx| {
        ctx.add_stream(FramedRead::with_capacity(
            read,
            LineCodec::new(max_line),
            1024,
        ));
        let me = ctx.address();
        let writer_task = actix_rt::spawn(async move {
            writer(write, reply_rx, event_rx, writer_unsent).await;
            me.do_send(WriterGone);
        });
        ClientConn {
            shared,
            peer,
            replies: reply_tx,
            unsent,
            reply_limit: reply_limit(max_line),
            overflowed: false,
            writer_task,
            events: Some(event_tx),
            subs: HashSet::new(),
            pending: 0,
            read_closed: false,
        }
    });
}

/// Lines are gathered into writes of about this many bytes.
const WRITE_BATCH: usize = 64 * 1024;

/// How often an idle connection is checked for a peer that has gone away.
const PROBE_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// How many bytes of replies may wait for a client that does not read them before it is
/// disconnected: four request lines' worth, at least 64 KiB.
fn reply_limit(max_line: usize) -> usize {
    max_line.saturating_mul(4).max(64 * 1024)
}

async fn writer(
    mut w: OwnedWriteHalf,
    mut replies: mpsc::UnboundedReceiver<Bytes>,
    mut events: mpsc::Receiver<EventLine>,
    unsent: Rc<Cell<usize>>,
) {
    let mut replies_open = true;
    let mut events_open = true;
    // A client that half-closed and subscribed is only noticed to be gone when a write
    // fails. A zero-length write fails (EPIPE) once the peer has closed completely, and
    // succeeds while it has only shut down its writing side: probe now and then so that a
    // closed subscriber does not hold its slot until the next event.
    let mut probe = tokio::time::interval(PROBE_EVERY);
    probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut buf: Vec<u8> = Vec::new();
    while replies_open || events_open {
        buf.clear();
        let mut reply_bytes = 0;
        tokio::select! {
            biased;
            _ = probe.tick() => {
                if let Err(e) = w.try_write(&[]) {
                    if e.kind() != io::ErrorKind::WouldBlock {
                        return;
                    }
                }
                continue;
            }
            r = replies.recv(), if replies_open => match r {
                Some(b) => {
                    reply_bytes += b.len();
                    buf.extend_from_slice(&b);
                }
                None => replies_open = false,
            },
            e = events.recv(), if events_open => match e {
                Some(l) => {
                    buf.extend_from_slice(&l.head);
                    buf.extend_from_slice(&l.body);
                }
                None => events_open = false,
            },
        }
        // Whatever else is queued goes out in the same write: one syscall for many lines
        // keeps a reading subscriber ahead of a burst, and frees its queue sooner.
        while buf.len() < WRITE_BATCH {
            if let Ok(b) = replies.try_recv() {
                reply_bytes += b.len();
                buf.extend_from_slice(&b);
            } else if let Ok(l) = events.try_recv() {
                buf.extend_from_slice(&l.head);
                buf.extend_from_slice(&l.body);
            } else {
                break;
            }
        }
        if !buf.is_empty() && w.write_all(&buf).await.is_err() {
            return;
        }
        unsent.set(unsent.get().saturating_sub(reply_bytes));
    }
    let _ = w.shutdown().await;
}

/// What a peer may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Everything.
    Full,
    /// `status`, `get*`, `subscribe`, `unsubscribe`.
    ReadOnly,
    /// Nothing: every request gets -32001.
    Denied,
}

/// Decides a peer's access from its credentials (root and the daemon's own user are
/// always allowed).
pub fn access_of(s: &ApiConfig, uid: u32, gid: u32) -> Access {
    static OWN_UID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let own = *OWN_UID.get_or_init(|| {
        std::fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
            .unwrap_or(0)
    });
    if s.readonly_uids.contains(&uid) || s.readonly_gids.contains(&gid) {
        return Access::ReadOnly;
    }
    let open = s.allow_uids.is_empty() && s.allow_gids.is_empty();
    if open || uid == 0 || uid == own || s.allow_uids.contains(&uid) || s.allow_gids.contains(&gid)
    {
        Access::Full
    } else {
        Access::Denied
    }
}

fn read_only_method(m: &str) -> bool {
    m == "status" || m == "subscribe" || m == "unsubscribe" || m.starts_with("get")
}

struct ClientConn {
    shared: ApiShared,
    /// The peer's uid and gid (SO_PEERCRED); None when they could not be read.
    peer: Option<(u32, u32)>,
    replies: mpsc::UnboundedSender<Bytes>,
    /// Bytes of replies queued or being written, not yet taken by the client.
    unsent: Rc<Cell<usize>>,
    /// The most `unsent` may reach: a client that does not read its replies is cut off.
    reply_limit: usize,
    overflowed: bool,
    writer_task: tokio::task::JoinHandle<()>,
    events: Option<mpsc::Sender<EventLine>>,
    subs: HashSet<u64>,
    pending: usize,
    read_closed: bool,
}

#[derive(Message)]
#[rtype(result = "()")]
struct WriterGone;

type Outcome = (Option<Value>, Option<u64>, Option<u64>);
type BoxFut<T> = Pin<Box<dyn Future<Output = T>>>;
/// A method's result, and the subscription it created or removed.
type Dispatched = (Result<Value, RpcError>, Option<u64>, Option<u64>);

impl Actor for ClientConn {
    type Context = Context<Self>;

    fn stopping(&mut self, _: &mut Context<Self>) -> Running {
        for id in self.subs.drain() {
            self.shared.events.do_send(Unsubscribe(id));
        }
        Running::Stop
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        let mut n = self.shared.clients.borrow_mut();
        *n = n.saturating_sub(1);
    }
}

impl ClientConn {
    fn maybe_stop(&mut self, ctx: &mut Context<Self>) {
        if self.read_closed && self.pending == 0 && self.subs.is_empty() {
            ctx.stop();
        }
    }

    fn send(&mut self, v: &Value) {
        self.queue(line(v));
    }

    /// Queues a reply line, unless the client has left too many unread.
    fn queue(&mut self, b: Bytes) {
        if self.overflowed {
            return;
        }
        let after = self.unsent.get() + b.len();
        if after > self.reply_limit {
            self.overflowed = true;
            return;
        }
        self.unsent.set(after);
        let _ = self.replies.send(b);
    }

    /// Disconnects a client that does not read its replies (its queue stays bounded).
    fn stop_if_overflowed(&mut self, ctx: &mut Context<Self>) -> bool {
        if self.overflowed {
            tracing::warn!(
                limit = self.reply_limit,
                "disconnecting an API client that does not read its replies"
            );
            self.writer_task.abort();
            ctx.stop();
        }
        self.overflowed
    }

    /// The fast path for the getters that only read the status board (`getLoginStatus`,
    /// `getLoginUser`, `getVersion`, `status`): a single well-formed request with an id is
    /// answered here, without building a JSON tree, boxing a future or a message hop.
    /// Anything else — batches, notifications, null ids, positional params, odd
    /// spellings — returns None and takes the general path, which answers it the same way.
    fn quick_reply(&self, line: &[u8]) -> Option<Bytes> {
        #[derive(serde::Deserialize)]
        struct Quick<'a> {
            jsonrpc: &'a str,
            method: &'a str,
            id: Option<Value>,
            // Only named params (an object, ignored by these methods) take this path.
            #[allow(dead_code)]
            params: Option<Map<String, Value>>,
        }
        let q: Quick = serde_json::from_slice(line).ok()?;
        if q.jsonrpc != "2.0"
            || !matches!(
                q.method,
                "getLoginStatus" | "getLoginUser" | "getVersion" | "status"
            )
        {
            return None;
        }
        let id = match q.id? {
            id @ (Value::String(_) | Value::Number(_)) => serde_json::to_string(&id).ok()?,
            _ => return None,
        };
        let (uid, gid) = self.peer?;
        if access_of(&self.shared.settings.borrow(), uid, gid) == Access::Denied {
            return None;
        }
        let board = self.shared.board.borrow();
        let result = match q.method {
            "getLoginStatus" => format!("{{\"status\":{}}}", u8::from(board.login_status())),
            "getLoginUser" => serde_json::to_string(&json!({"userID": board.user()})).ok()?,
            "getVersion" => format!("{{\"version\":\"{}\"}}", env!("CARGO_PKG_VERSION")),
            _ => serde_json::to_string(&board.status()).ok()?,
        };
        Some(Bytes::from(format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":{result}}}\n"
        )))
    }
}

impl StreamHandler<Result<Line, io::Error>> for ClientConn {
    fn handle(&mut self, item: Result<Line, io::Error>, ctx: &mut Context<Self>) {
        if self.stop_if_overflowed(ctx) {
            return;
        }
        let max = self.shared.settings.borrow().max_line_bytes;
        let data = match item {
            Ok(Line::Data(d)) => d,
            Ok(Line::TooLong) => {
                let e = RpcError::new(
                    code::INVALID_REQUEST,
                    format!("request line longer than api.max_line_bytes ({max} bytes); discarded"),
                );
                self.send(&error_reply(Value::Null, &e));
                return;
            }
            Err(e) => {
                tracing::debug!("client read error: {e}");
                self.read_closed = true;
                self.maybe_stop(ctx);
                return;
            }
        };
        if data.iter().all(|b| b.is_ascii_whitespace()) {
            return;
        }
        if let Some(reply) = self.quick_reply(&data) {
            self.queue(reply);
            self.stop_if_overflowed(ctx);
            return;
        }
        let parsed: Result<Value, String> = std::str::from_utf8(&data)
            .map_err(|e| format!("Parse error: the line is not valid UTF-8 ({e})"))
            .and_then(|s| serde_json::from_str(s).map_err(|e| format!("Parse error: {e}")));
        let value = match parsed {
            Ok(v) => v,
            Err(msg) => {
                self.send(&error_reply(
                    Value::Null,
                    &RpcError::new(code::PARSE_ERROR, msg),
                ));
                return;
            }
        };
        let batch = value.is_array();
        let fut: BoxFut<Vec<Outcome>> = match value {
            Value::Array(items) if items.is_empty() => {
                let e = RpcError::new(code::INVALID_REQUEST, "Invalid Request: empty batch");
                self.send(&error_reply(Value::Null, &e));
                return;
            }
            Value::Array(items) => {
                let futs: Vec<_> = items.into_iter().map(|v| self.request(v)).collect();
                Box::pin(join_all(futs))
            }
            v => {
                let f = self.request(v);
                Box::pin(async move { vec![f.await] })
            }
        };
        self.pending += 1;
        fut.into_actor(self)
            .map(move |outcomes, act, ctx| {
                act.pending -= 1;
                let mut replies = Vec::new();
                for (reply, sub, unsub) in outcomes {
                    if let Some(id) = sub {
                        act.subs.insert(id);
                    }
                    if let Some(id) = unsub {
                        act.subs.remove(&id);
                    }
                    if let Some(r) = reply {
                        replies.push(r);
                    }
                }
                if batch {
                    if !replies.is_empty() {
                        act.send(&Value::Array(replies));
                    }
                } else if let Some(r) = replies.pop() {
                    act.send(&r);
                }
                if !act.stop_if_overflowed(ctx) {
                    act.maybe_stop(ctx);
                }
            })
            .spawn(ctx);
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        self.read_closed = true;
        self.maybe_stop(ctx);
    }
}

impl Handler<WriterGone> for ClientConn {
    type Result = ();
    fn handle(&mut self, _: WriterGone, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

/// Reads a request object; returns the id to answer with (None for a notification).
fn validate(v: &Value) -> Result<(Option<Value>, String, Value), (Value, RpcError)> {
    let invalid = |id: Value, why: &str| {
        (
            id,
            RpcError::new(code::INVALID_REQUEST, format!("Invalid Request: {why}")),
        )
    };
    let Value::Object(o) = v else {
        return Err(invalid(Value::Null, "a request must be a JSON object"));
    };
    let id = match o.get("id") {
        None => None,
        Some(i @ (Value::String(_) | Value::Number(_) | Value::Null)) => Some(i.clone()),
        Some(_) => {
            return Err(invalid(
                Value::Null,
                "id must be a string, a number or null",
            ))
        }
    };
    let reply_id = id.clone().unwrap_or(Value::Null);
    if o.get("jsonrpc") != Some(&Value::String("2.0".into())) {
        return Err(invalid(reply_id, "\"jsonrpc\" must be \"2.0\""));
    }
    let Some(Value::String(method)) = o.get("method") else {
        return Err(invalid(reply_id, "\"method\" must be a string"));
    };
    let params = match o.get("params") {
        None => Value::Object(Map::new()),
        Some(p @ (Value::Object(_) | Value::Array(_))) => p.clone(),
        Some(_) => {
            return Err(invalid(
                reply_id,
                "\"params\" must be an object or an array",
            ))
        }
    };
    Ok((id, method.clone(), params))
}

/// The parameter names of each method, in positional order.
fn param_names(method: &str) -> Option<&'static [&'static str]> {
    Some(match method {
        "initSDK" => &["sdkAppID", "logLevel"],
        "login" => &["userID", "userSig"],
        "subscribe" => &["events", "since"],
        "unsubscribe" => &["subscription"],
        "unInitSDK" | "logout" | "getLoginStatus" | "getLoginUser" | "getServerTime"
        | "getVersion" | "getSelfInfo" | "status" | "reconnect" => &[],
        _ => return None,
    })
}

fn named(method: &str, params: Value) -> Result<Map<String, Value>, RpcError> {
    let names = param_names(method).unwrap_or(&[]);
    match params {
        Value::Object(o) => Ok(o),
        Value::Array(a) => {
            if a.len() > names.len() {
                return Err(RpcError::new(
                    code::INVALID_PARAMS,
                    format!(
                        "{method} takes at most {} positional params ({})",
                        names.len(),
                        names.join(", ")
                    ),
                ));
            }
            Ok(names.iter().map(|n| n.to_string()).zip(a).collect())
        }
        _ => Ok(Map::new()),
    }
}

fn bad_param(method: &str, field: &str, expected: &str) -> RpcError {
    RpcError::new(
        code::INVALID_PARAMETERS,
        format!("{method}: parameter {field} must be {expected}"),
    )
}

fn string_param(method: &str, p: &Map<String, Value>, field: &str) -> Result<String, RpcError> {
    match p.get(field) {
        Some(Value::String(s)) => Ok(s.clone()),
        _ => Err(bad_param(method, field, "a string")),
    }
}

impl ClientConn {
    fn request(&mut self, v: Value) -> BoxFut<Outcome> {
        let (id, method, params) = match validate(&v) {
            Ok(x) => x,
            Err((id, e)) => {
                return Box::pin(async move { (Some(error_reply(id, &e)), None, None) })
            }
        };
        let fut = self.dispatch(&method, params);
        Box::pin(async move {
            let (result, sub, unsub) = fut.await;
            let reply = id.map(|id| match result {
                Ok(r) => json!({"jsonrpc": "2.0", "id": id, "result": r}),
                Err(e) => error_reply(id, &e),
            });
            (reply, sub, unsub)
        })
    }

    fn dispatch(&mut self, method: &str, params: Value) -> BoxFut<Dispatched> {
        let plain = |r: Result<Value, RpcError>| -> BoxFut<Dispatched> {
            Box::pin(async move { (r, None, None) })
        };
        if param_names(method).is_none() {
            return plain(Err(RpcError::new(
                code::METHOD_NOT_FOUND,
                format!("Method not found: {method}"),
            )));
        }
        let access = match self.peer {
            Some((uid, gid)) => access_of(&self.shared.settings.borrow(), uid, gid),
            None => Access::Denied,
        };
        match access {
            Access::Denied => {
                return plain(Err(RpcError::new(
                    code::ACCESS_DENIED,
                    "access denied: this user is not in api.allow_uids / api.allow_gids",
                )))
            }
            Access::ReadOnly if !read_only_method(method) => {
                return plain(Err(RpcError::new(
                    code::ACCESS_DENIED,
                    format!("access denied: read-only peers may not call {method}"),
                )))
            }
            _ => {}
        }
        let p = match named(method, params) {
            Ok(p) => p,
            Err(e) => return plain(Err(e)),
        };
        let session = self.shared.session.clone();
        let events = self.shared.events.clone();
        let m = method.to_owned();
        let call = |c: SessionCall| -> BoxFut<Dispatched> {
            let session = session.clone();
            Box::pin(async move {
                let r = match session.send(c).await {
                    Ok(Ok(Reply::Done)) => Ok(json!({})),
                    Ok(Ok(Reply::RepeatLogin)) => Ok(json!({"repeatLogin": true})),
                    Ok(Err(f)) => Err(f.into()),
                    Err(_) => Err(RpcError::new(
                        code::INTERNAL_ERROR,
                        "the session is unavailable",
                    )),
                };
                (r, None, None)
            })
        };
        match method {
            "initSDK" => {
                let app_id = match p.get("sdkAppID").and_then(Value::as_u64) {
                    Some(a) if a > 0 => a,
                    _ => return plain(Err(bad_param(&m, "sdkAppID", "a positive integer"))),
                };
                let log_level =
                    match p.get("logLevel") {
                        None | Some(Value::Null) => None,
                        Some(v) => match serde_json::from_value::<LogLevel>(v.clone()) {
                            Ok(l) => Some(l),
                            Err(_) => return plain(Err(bad_param(
                                &m,
                                "logLevel",
                                "a log level: 0|3|4|5|6, none|debug|info|warn|error or V2TIM_LOG_*",
                            ))),
                        },
                    };
                call(SessionCall::Init { app_id, log_level })
            }
            "unInitSDK" => call(SessionCall::UnInit),
            "login" => {
                let user = match string_param(&m, &p, "userID") {
                    Ok(u) => u,
                    Err(e) => return plain(Err(e)),
                };
                if !valid_user_id(&user) {
                    return plain(Err(RpcError::new(
                        code::INVALID_USERID,
                        "invalid UserID: 1 to 32 characters of A-Z a-z 0-9 _ -",
                    )));
                }
                let sig = match string_param(&m, &p, "userSig") {
                    Ok(s) if !s.trim().is_empty() => s,
                    Ok(_) => return plain(Err(bad_param(&m, "userSig", "a non-empty string"))),
                    Err(e) => return plain(Err(e)),
                };
                call(SessionCall::Login { user, sig })
            }
            "logout" => call(SessionCall::Logout),
            "getLoginStatus" | "getLoginUser" | "status" => Box::pin(async move {
                let r = match events.send(GetStatus).await {
                    Ok(s) => Ok(match m.as_str() {
                        "getLoginStatus" => json!({"status": s.login_status}),
                        "getLoginUser" => json!({"userID": s.user_id}),
                        _ => serde_json::to_value(&s).unwrap_or(Value::Null),
                    }),
                    Err(_) => Err(RpcError::new(
                        code::INTERNAL_ERROR,
                        "the event log is unavailable",
                    )),
                };
                (r, None, None)
            }),
            "getServerTime" => Box::pin(async move {
                let r = match session.send(GetServerTime).await {
                    Ok(Ok(t)) => Ok(json!({"serverTime": t})),
                    Ok(Err(f)) => Err(f.into()),
                    Err(_) => Err(RpcError::new(
                        code::INTERNAL_ERROR,
                        "the session is unavailable",
                    )),
                };
                (r, None, None)
            }),
            "getVersion" => plain(Ok(json!({"version": env!("CARGO_PKG_VERSION")}))),
            "getSelfInfo" => Box::pin(async move {
                let r = match session.send(GetSelfInfo).await {
                    Ok(Ok(info)) => Ok(json!({"info": info})),
                    Ok(Err(f)) => Err(f.into()),
                    Err(_) => Err(RpcError::new(
                        code::INTERNAL_ERROR,
                        "the session is unavailable",
                    )),
                };
                (r, None, None)
            }),
            "reconnect" => Box::pin(async move {
                let r = match events.send(GetStatus).await {
                    Ok(s) if s.sdk_app_id.is_none() => Err(RpcError::new(
                        code::SDK_NOT_INITIALIZED,
                        "SDK not initialised: call initSDK first",
                    )),
                    Ok(_) => {
                        session.do_send(ReconnectNow);
                        Ok(json!({}))
                    }
                    Err(_) => Err(RpcError::new(
                        code::INTERNAL_ERROR,
                        "the event log is unavailable",
                    )),
                };
                (r, None, None)
            }),
            "subscribe" => {
                let filter = match p.get("events") {
                    None | Some(Value::Null) => None,
                    Some(Value::Array(a)) => {
                        let mut set = HashSet::new();
                        for v in a {
                            match v.as_str() {
                                Some(n) if EVENT_NAMES.contains(&n) => {
                                    set.insert(n.to_owned());
                                }
                                Some(n) => {
                                    return plain(Err(RpcError::new(
                                        code::INVALID_PARAMETERS,
                                        format!(
                                            "subscribe: unknown event {n:?}; known: {}",
                                            EVENT_NAMES.join(", ")
                                        ),
                                    )))
                                }
                                None => {
                                    return plain(Err(bad_param(
                                        &m,
                                        "events",
                                        "an array of event names",
                                    )))
                                }
                            }
                        }
                        // A subscriber always learns that it lost events.
                        set.insert("eventsLost".to_owned());
                        Some(set)
                    }
                    Some(_) => {
                        return plain(Err(bad_param(&m, "events", "an array of event names")))
                    }
                };
                let since = match p.get("since") {
                    None | Some(Value::Null) => None,
                    Some(v) => match v.as_u64() {
                        Some(s) => Some(s),
                        None => {
                            return plain(Err(bad_param(
                                &m,
                                "since",
                                "a non-negative integer (an event seq)",
                            )))
                        }
                    },
                };
                let Some(tx) = self.events.clone() else {
                    return plain(Err(RpcError::new(
                        code::INTERNAL_ERROR,
                        "connection closing",
                    )));
                };
                Box::pin(async move {
                    match events.send(Subscribe { filter, since, tx }).await {
                        Ok(s) => {
                            let r = json!({
                                "subscription": s.id,
                                "bootID": s.status.boot_id,
                                "seq": s.status.last_seq,
                                "status": s.status,
                            });
                            (Ok(r), Some(s.id), None)
                        }
                        Err(_) => (
                            Err(RpcError::new(
                                code::INTERNAL_ERROR,
                                "the event log is unavailable",
                            )),
                            None,
                            None,
                        ),
                    }
                })
            }
            "unsubscribe" => {
                let Some(id) = p.get("subscription").and_then(Value::as_u64) else {
                    return plain(Err(bad_param(
                        &m,
                        "subscription",
                        "a subscription id (integer)",
                    )));
                };
                if !self.subs.contains(&id) {
                    return plain(Err(RpcError::new(
                        code::INVALID_PARAMETERS,
                        format!("unsubscribe: no subscription {id} on this connection"),
                    )));
                }
                Box::pin(async move {
                    let _ = events.send(Unsubscribe(id)).await;
                    (Ok(json!({})), None, Some(id))
                })
            }
            _ => plain(Err(RpcError::new(
                code::METHOD_NOT_FOUND,
                format!("Method not found: {m}"),
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], max: usize) -> Vec<String> {
        let mut c = LineCodec::new(max);
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        while let Some(l) = c.decode(&mut buf).unwrap() {
            out.push(match l {
                Line::Data(d) => String::from_utf8_lossy(&d).into_owned(),
                Line::TooLong => "<too long>".into(),
            });
        }
        if let Some(Line::Data(d)) = c.decode_eof(&mut buf).unwrap() {
            out.push(String::from_utf8_lossy(&d).into_owned());
        }
        out
    }

    #[test]
    fn the_line_codec_discards_long_lines_and_goes_on() {
        assert_eq!(lines(b"ab\ncd\r\nef", 10), ["ab", "cd", "ef"]);
        assert_eq!(lines(b"0123456789abc\nok\n", 5), ["<too long>", "ok"]);
        // A long line arriving in pieces is reported once.
        let mut c = LineCodec::new(4);
        let mut buf = BytesMut::from(&b"123456"[..]);
        assert!(matches!(c.decode(&mut buf).unwrap(), Some(Line::TooLong)));
        buf.extend_from_slice(b"789");
        assert!(c.decode(&mut buf).unwrap().is_none());
        buf.extend_from_slice(b"0\nnext\n");
        assert!(matches!(c.decode(&mut buf).unwrap(), Some(Line::Data(d)) if &d[..] == b"next"));
    }

    #[test]
    fn requests_are_validated_as_the_specification_says() {
        assert!(validate(&json!({"jsonrpc":"2.0","method":"status","id":1})).is_ok());
        assert!(validate(&json!({"jsonrpc":"2.0","method":"status"}))
            .unwrap()
            .0
            .is_none());
        for bad in [
            json!(1),
            json!({"method":"x"}),
            json!({"jsonrpc":"2.0","method":1}),
            json!({"jsonrpc":"2.0","method":"x","params":"p"}),
            json!({"jsonrpc":"2.0","method":"x","id":{}}),
        ] {
            assert_eq!(
                validate(&bad).unwrap_err().1.code,
                code::INVALID_REQUEST,
                "{bad}"
            );
        }
    }

    #[test]
    fn access_follows_the_lists() {
        let mut s = ApiConfig::default();
        assert_eq!(access_of(&s, 4242, 4242), Access::Full);
        s.allow_uids = vec![1000];
        assert_eq!(access_of(&s, 4242, 4242), Access::Denied);
        assert_eq!(access_of(&s, 1000, 4242), Access::Full);
        s.allow_gids = vec![4242];
        assert_eq!(access_of(&s, 4243, 4242), Access::Full);
        s.readonly_uids = vec![1000];
        assert_eq!(access_of(&s, 1000, 1), Access::ReadOnly);
        assert!(
            read_only_method("getLoginStatus")
                && read_only_method("subscribe")
                && !read_only_method("login")
        );
    }
}
