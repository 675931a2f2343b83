//! The Connection actor: owns the one WebSocket to the server.
//!
//! It performs what [`ConnMachine`] decides (connect, back off, reconnect), sends a
//! WebSocket ping every heartbeat interval and declares the connection dead after the
//! heartbeat timeout without any frame, correlates requests with responses (timing out
//! with 9520), and forwards server pushes to the Session. It knows nothing of users.

use actix::io::SinkWrite;
use actix::prelude::*;
use actix_codec::Framed;
use awc::error::WsProtocolError;
use awc::ws::{self, CloseCode, CloseReason, Frame, Message};
use awc::BoxedSocket;
use futures_util::stream::{self, SplitSink, StreamExt};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

use crate::codes::code;
use crate::config::{Config, ServerConfig};
use crate::core::backoff::Backoff;
use crate::core::connection::{ConnAction, ConnInput, ConnMachine, Phase};
use crate::core::session::Fail;
use crate::daemon::events::EventLog;
use crate::daemon::messages::*;
use crate::proto::ws::{Platform, Push, Request, ServerFrame, MAX_FRAME_BYTES, PROTOCOL_VERSIONS};

type WsSink = SinkWrite<Message, SplitSink<Framed<BoxedSocket, ws::Codec>, Message>>;

/// What the Session hears from the connection.
#[derive(Clone)]
pub struct SessionLink {
    /// Connection up.
    pub up: Recipient<LinkUp>,
    /// Connection down.
    pub down: Recipient<LinkDown>,
    /// Server pushes.
    pub push: Recipient<ServerPush>,
}

/// Items of the read side, tagged with the connection generation so that frames of a
/// replaced connection are ignored.
enum WsIn {
    Frame(u64, Result<Frame, WsProtocolError>),
    End(u64),
}

struct Pending {
    tx: oneshot::Sender<Result<crate::proto::ws::Response, Fail>>,
    timer: SpawnHandle,
}

/// The Connection actor.
pub struct Connection {
    server: ServerConfig,
    platform: Platform,
    instance_id: String,
    app_id: Option<u64>,
    machine: ConnMachine,
    link: Option<SessionLink>,
    events: Addr<EventLog>,
    client: Option<awc::Client>,
    epoch: Instant,
    gen: u64,
    sink: Option<WsSink>,
    stream: Option<SpawnHandle>,
    attempt: Option<SpawnHandle>,
    retry: Option<SpawnHandle>,
    heartbeat: Option<SpawnHandle>,
    hello_deadline: Option<SpawnHandle>,
    /// The server's hello, held until the machine says the link is up.
    hello: Option<crate::proto::ws::Hello>,
    last_rx: Instant,
    next_seq: u64,
    pending: HashMap<u64, Pending>,
    connected_since: Option<i64>,
    retry_at: Option<Instant>,
    published: Option<ConnPart>,
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Builds the HTTP client, with the CA file for `wss://` when configured.
fn build_client(server: &ServerConfig) -> Result<awc::Client, String> {
    let mut roots = rustls::RootCertStore::empty();
    match &server.ca_file {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| format!("server.ca_file {}: {e}", path.display()))?;
            let mut n = 0;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert.map_err(|e| format!("server.ca_file {}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("server.ca_file {}: {e}", path.display()))?;
                n += 1;
            }
            if n == 0 {
                return Err(format!(
                    "server.ca_file {}: no certificate found",
                    path.display()
                ));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS set-up: {e}"))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = awc::Connector::new()
        .rustls_0_23(Arc::new(tls))
        .timeout(Duration::from_millis(server.connect_timeout_ms));
    Ok(awc::Client::builder()
        .connector(connector)
        .timeout(Duration::from_millis(server.connect_timeout_ms))
        .finish())
}

impl Connection {
    /// A connection actor for this configuration; it connects on [`StartLink`].
    pub fn new(cfg: &Config, instance_id: String, events: Addr<EventLog>) -> Connection {
        Connection {
            server: cfg.server.clone(),
            platform: cfg.sdk.platform,
            instance_id,
            app_id: None,
            machine: ConnMachine::new(
                Backoff::from_config(&cfg.reconnect),
                cfg.reconnect.stable_ms,
            ),
            link: None,
            events,
            client: None,
            epoch: Instant::now(),
            gen: 0,
            sink: None,
            stream: None,
            attempt: None,
            retry: None,
            heartbeat: None,
            hello_deadline: None,
            hello: None,
            last_rx: Instant::now(),
            next_seq: 1,
            pending: HashMap::new(),
            connected_since: None,
            retry_at: None,
            published: None,
        }
    }

    /// Where pushes and link changes go.
    pub fn set_link(&mut self, link: SessionLink) {
        self.link = Some(link);
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn input(&mut self, input: ConnInput, ctx: &mut Context<Self>) {
        let now = self.now_ms();
        let actions = self.machine.handle(input, now, fastrand::f64());
        for a in actions {
            match a {
                ConnAction::Open => self.open(ctx),
                ConnAction::Close => self.close(ctx),
                ConnAction::ScheduleRetry(ms) => {
                    if let Some(h) = self.retry.take() {
                        ctx.cancel_future(h);
                    }
                    tracing::info!(
                        delay_ms = ms,
                        attempt = self.machine.failures(),
                        "reconnecting after backoff"
                    );
                    self.retry_at = Some(Instant::now() + Duration::from_millis(ms));
                    self.retry = Some(ctx.run_later(Duration::from_millis(ms), |act, ctx| {
                        act.retry = None;
                        act.retry_at = None;
                        act.input(ConnInput::RetryDue, ctx);
                    }));
                }
                ConnAction::CancelRetry => {
                    if let Some(h) = self.retry.take() {
                        ctx.cancel_future(h);
                    }
                    self.retry_at = None;
                }
                ConnAction::Emit(e) => self.events.do_send(Publish::Event(e)),
                ConnAction::LinkUp => {
                    if let (Some(h), Some(l)) = (self.hello.take(), &self.link) {
                        l.up.do_send(LinkUp(h));
                    }
                }
                ConnAction::LinkDown => {
                    if let Some(l) = &self.link {
                        l.down.do_send(LinkDown);
                    }
                }
            }
        }
        if !matches!(self.machine.phase(), Phase::Waiting { .. }) {
            self.retry_at = None;
        }
        self.publish_state();
    }

    fn publish_state(&mut self) {
        let part = ConnPart {
            state: self.machine.state(),
            connected_since: self.connected_since,
            attempt: self.machine.failures(),
            retry_at: self.retry_at,
            server: self.server.url.clone(),
        };
        if self.published.as_ref() != Some(&part) {
            self.published = Some(part.clone());
            self.events.do_send(Publish::Conn(part));
        }
    }

    fn url(&self) -> String {
        let versions: Vec<String> = PROTOCOL_VERSIONS.iter().map(|v| v.to_string()).collect();
        let sep = if self.server.url.contains('?') {
            '&'
        } else {
            '?'
        };
        format!(
            "{}{sep}sdkappid={}&platform={}&instanceid={}&ver={}",
            self.server.url,
            self.app_id.unwrap_or(0),
            self.platform.name(),
            self.instance_id,
            versions.join(",")
        )
    }

    fn client(&mut self) -> Result<awc::Client, String> {
        if let Some(c) = &self.client {
            return Ok(c.clone());
        }
        let c = build_client(&self.server)?;
        self.client = Some(c.clone());
        Ok(c)
    }

    fn open(&mut self, ctx: &mut Context<Self>) {
        self.gen += 1;
        let gen = self.gen;
        let url = self.url();
        tracing::info!(server = %self.server.url, "connecting");
        let client = match self.client() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("{e}");
                ctx.notify(OpenResult(gen, Err((code::DISCONNECTED, e))));
                return;
            }
        };
        let timeout = Duration::from_millis(self.server.connect_timeout_ms);
        let started = Instant::now();
        let fut = async move {
            let connect = client.ws(url).max_frame_size(MAX_FRAME_BYTES).connect();
            match actix_rt::time::timeout(timeout, connect).await {
                Err(_) => Err((code::CONNECT_TIMEOUT, "connect timeout".to_owned())),
                Ok(Err(e)) => Err((code::DISCONNECTED, format!("connect failed: {e}"))),
                Ok(Ok((_resp, framed))) => Ok(framed),
            }
        };
        self.attempt = Some(ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            act.attempt = None;
            if act.gen != gen {
                return;
            }
            match res {
                Err(e) => ctx.notify(OpenResult(gen, Err(e))),
                Ok(framed) => {
                    let (sink, stream) = framed.split();
                    act.sink = Some(SinkWrite::new(sink, ctx));
                    let tagged = stream
                        .map(move |f| WsIn::Frame(gen, f))
                        .chain(stream::once(async move { WsIn::End(gen) }));
                    act.stream = Some(ctx.add_stream(tagged));
                    act.last_rx = Instant::now();
                    // The connection counts only once the server's hello arrived.
                    let left = timeout.saturating_sub(started.elapsed());
                    act.hello_deadline = Some(ctx.run_later(left, move |act, ctx| {
                        act.hello_deadline = None;
                        if act.gen == gen && act.machine.phase() == Phase::Connecting {
                            ctx.notify(OpenResult(
                                gen,
                                Err((code::CONNECT_TIMEOUT, "no hello from the server".into())),
                            ));
                        }
                    }));
                }
            }
        })));
    }

    fn close(&mut self, ctx: &mut Context<Self>) {
        self.gen += 1;
        if let Some(h) = self.attempt.take() {
            ctx.cancel_future(h);
        }
        if let Some(h) = self.hello_deadline.take() {
            ctx.cancel_future(h);
        }
        if let Some(mut sink) = self.sink.take() {
            let _ = sink.write(Message::Close(Some(CloseReason {
                code: CloseCode::Normal,
                description: None,
            })));
            sink.close();
        }
        if let Some(h) = self.stream.take() {
            ctx.cancel_future(h);
        }
        self.connected_since = None;
        for (_, p) in self.pending.drain() {
            ctx.cancel_future(p.timer);
            let _ =
                p.tx.send(Err(Fail::new(code::DISCONNECTED, "connection lost")));
        }
    }

    fn lost(&mut self, desc: String, ctx: &mut Context<Self>) {
        match self.machine.phase() {
            Phase::Connected { .. } => {
                tracing::warn!("connection lost: {desc}");
                self.input(
                    ConnInput::Lost {
                        code: code::DISCONNECTED,
                        desc,
                    },
                    ctx,
                );
            }
            Phase::Connecting => {
                self.close(ctx);
                self.input(
                    ConnInput::OpenFailed {
                        code: code::DISCONNECTED,
                        desc,
                    },
                    ctx,
                );
            }
            _ => {}
        }
    }

    fn start_heartbeat(&mut self, ctx: &mut Context<Self>) {
        if let Some(h) = self.heartbeat.take() {
            ctx.cancel_future(h);
        }
        let every = Duration::from_millis(self.server.heartbeat_interval_ms.max(10));
        self.heartbeat = Some(ctx.run_interval(every, |act, ctx| {
            if !matches!(act.machine.phase(), Phase::Connected { .. }) {
                return;
            }
            let silent = act.last_rx.elapsed();
            if silent > Duration::from_millis(act.server.heartbeat_timeout_ms) {
                act.lost(
                    format!("no frame from the server for {} ms", silent.as_millis()),
                    ctx,
                );
                return;
            }
            if let Some(sink) = &mut act.sink {
                let _ = sink.write(Message::Ping(bytes::Bytes::new()));
            }
        }));
    }

    fn on_text(&mut self, text: &[u8], ctx: &mut Context<Self>) {
        let frame: ServerFrame = match serde_json::from_slice(text) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!("unreadable frame from the server: {e}");
                return;
            }
        };
        match frame {
            ServerFrame::Response(r) => {
                if let Some(p) = self.pending.remove(&r.seq) {
                    ctx.cancel_future(p.timer);
                    let _ = p.tx.send(Ok(r));
                } else {
                    tracing::debug!(
                        seq = r.seq,
                        code = r.code,
                        "response to a request given up on"
                    );
                }
            }
            ServerFrame::Push(Push::Hello(h)) => {
                if self.machine.phase() == Phase::Connecting {
                    if let Some(hd) = self.hello_deadline.take() {
                        ctx.cancel_future(hd);
                    }
                    self.connected_since = Some(unix_ms());
                    tracing::info!(version = h.version, "connected");
                    self.hello = Some(h);
                    self.input(ConnInput::Opened, ctx);
                }
            }
            ServerFrame::Push(p) => {
                if let Some(l) = &self.link {
                    l.push.do_send(ServerPush(p));
                }
            }
        }
    }
}

/// The outcome of a connect attempt (delivered to self).
#[derive(Message)]
#[rtype(result = "()")]
struct OpenResult(u64, Result<(), (i32, String)>);

impl Handler<OpenResult> for Connection {
    type Result = ();
    fn handle(&mut self, msg: OpenResult, ctx: &mut Context<Self>) {
        if msg.0 != self.gen {
            return;
        }
        if let Err((code, desc)) = msg.1 {
            tracing::warn!(code, "connect failed: {desc}");
            self.close(ctx);
            self.input(ConnInput::OpenFailed { code, desc }, ctx);
        }
    }
}

impl Actor for Connection {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.start_heartbeat(ctx);
        self.publish_state();
    }
}

impl actix::io::WriteHandler<WsProtocolError> for Connection {
    fn error(&mut self, err: WsProtocolError, ctx: &mut Context<Self>) -> Running {
        self.lost(format!("write failed: {err}"), ctx);
        Running::Continue
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {}
}

impl StreamHandler<WsIn> for Connection {
    fn handle(&mut self, item: WsIn, ctx: &mut Context<Self>) {
        match item {
            WsIn::Frame(gen, _) | WsIn::End(gen) if gen != self.gen => {}
            WsIn::End(_) => self.lost("closed by the server".into(), ctx),
            WsIn::Frame(_, Err(e)) => self.lost(format!("protocol error: {e}"), ctx),
            WsIn::Frame(_, Ok(frame)) => {
                self.last_rx = Instant::now();
                match frame {
                    Frame::Text(t) => self.on_text(&t, ctx),
                    Frame::Ping(p) => {
                        if let Some(sink) = &mut self.sink {
                            let _ = sink.write(Message::Pong(p));
                        }
                    }
                    Frame::Close(reason) => {
                        let why = reason
                            .map(|r| {
                                format!(
                                    "closed by the server ({:?} {})",
                                    r.code,
                                    r.description.unwrap_or_default()
                                )
                            })
                            .unwrap_or_else(|| "closed by the server".into());
                        self.lost(why, ctx);
                    }
                    Frame::Pong(_) | Frame::Binary(_) | Frame::Continuation(_) => {}
                }
            }
        }
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {}
}

impl Handler<StartLink> for Connection {
    type Result = ();
    fn handle(&mut self, msg: StartLink, ctx: &mut Context<Self>) {
        self.app_id = Some(msg.0);
        self.input(ConnInput::Start, ctx);
    }
}

impl Handler<StopLink> for Connection {
    type Result = ();
    fn handle(&mut self, _: StopLink, ctx: &mut Context<Self>) {
        tracing::info!("connection stopped");
        self.input(ConnInput::Stop, ctx);
    }
}

impl Handler<ReconnectNow> for Connection {
    type Result = ();
    fn handle(&mut self, _: ReconnectNow, ctx: &mut Context<Self>) {
        self.input(ConnInput::ReconnectNow, ctx);
    }
}

impl Handler<SendRequest> for Connection {
    type Result = ResponseFuture<Result<crate::proto::ws::Response, Fail>>;

    fn handle(&mut self, msg: SendRequest, ctx: &mut Context<Self>) -> Self::Result {
        let not_connected = || {
            Box::pin(async { Err(Fail::new(code::DISCONNECTED, "not connected to the server")) })
        };
        if !matches!(self.machine.phase(), Phase::Connected { .. }) {
            return not_connected();
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let frame = match serde_json::to_string(&Request { seq, cmd: msg.0 }) {
            Ok(f) => f,
            Err(e) => {
                let desc = format!("cannot encode the request: {e}");
                return Box::pin(async move { Err(Fail::new(code::INTERNAL_ERROR, desc)) });
            }
        };
        let Some(sink) = &mut self.sink else {
            return not_connected();
        };
        if sink.write(Message::Text(frame.into())).is_err() {
            return not_connected();
        }
        let (tx, rx) = oneshot::channel();
        let wait = Duration::from_millis(self.server.request_timeout_ms);
        let timer = ctx.run_later(wait, move |act, _| {
            if let Some(p) = act.pending.remove(&seq) {
                let _ = p.tx.send(Err(Fail::new(
                    code::REQUEST_TIMEOUT,
                    format!("no response from the server within {} ms", wait.as_millis()),
                )));
            }
        });
        self.pending.insert(seq, Pending { tx, timer });
        Box::pin(async move {
            rx.await
                .unwrap_or_else(|_| Err(Fail::new(code::DISCONNECTED, "connection lost")))
        })
    }
}

impl Handler<Reconfigure> for Connection {
    type Result = ();
    fn handle(&mut self, msg: Reconfigure, ctx: &mut Context<Self>) {
        let cfg = msg.0;
        let url_changed =
            cfg.server.url != self.server.url || cfg.server.ca_file != self.server.ca_file;
        if url_changed {
            tracing::warn!("server.url and server.ca_file take effect at the next restart");
        }
        let url = self.server.url.clone();
        let ca = self.server.ca_file.clone();
        self.server = cfg.server.clone();
        self.server.url = url;
        self.server.ca_file = ca;
        self.machine.reconfigure(
            Backoff::from_config(&cfg.reconnect),
            cfg.reconnect.stable_ms,
        );
        self.start_heartbeat(ctx);
    }
}
