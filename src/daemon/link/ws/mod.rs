//! The native link: imlink's WebSocket protocol (`docs/protocol.md`) to `imlink-devserver`.
//!
//! The `WsLink` actor owns the one connection. It performs what [`ConnMachine`] decides
//! (connect, back off, reconnect), sends a `heartbeat` request every heartbeat interval
//! and declares the connection dead by the [`Liveness`] rule, correlates requests with
//! responses through a [`Pending`] table (9520 on timeout, 9508 when the connection is
//! lost), forwards the server's pushes to the Session as [`LinkEvent`]s, and publishes its
//! state and the server time to the hub. It knows nothing of users.

pub mod transport;

use actix::prelude::*;
use futures_util::StreamExt;
use std::rc::Rc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{
    CloseLink, Link, LinkControl, LinkEvent, LinkReconfigure, LinkReply, LinkRequest, NetNotice,
};
use crate::codes::code;
use crate::config::{Config, ServerConfig};
use crate::core::backoff::Backoff;
use crate::core::connection::{ConnAction, ConnInput, ConnMachine, Phase};
use crate::core::liveness::{Beat, Liveness};
use crate::core::pending::Pending;
use crate::core::session::Fail;
use crate::daemon::hub::{ConnPart, Hub};
use crate::proto::profile::ProfileJson;
use crate::proto::ws::{
    self_info_push, Command, Empty, FrameError, HeartbeatResult, LoginBody, LoginResult, Platform,
    Push, Request, Response, ServerFrame, PROTOCOL_VERSIONS,
};
use transport::{Dialer, Inbound, Outbound, Transport, UntilIdle};

/// The most profile pushes passed to the Session in one message.
const INFO_BATCH: usize = 64;

/// The most frames one reading of the clock is the time of (see [`WsLink::heard`]).
const FRAMES_PER_STAMP: u32 = 64;

/// How long a graceful stop waits for the server's close frame.
pub const CLOSE_WAIT: Duration = Duration::from_millis(1000);

/// The plausible range of a ticket's expiry, unix seconds (1970 … 9999): a value outside
/// it (a hostile or broken server) is not used.
pub const EXPIRY_RANGE: std::ops::RangeInclusive<i64> = 1..=253_402_300_799;

/// Who waits for a response.
enum Waiter {
    /// A caller.
    Call(oneshot::Sender<Result<Response, Fail>>),
    /// The link's own heartbeat: the response only refreshes the server time.
    Heartbeat,
}

/// The native link actor.
pub struct WsLink {
    server: ServerConfig,
    platform: Platform,
    instance_id: String,
    app_id: Option<u64>,
    machine: ConnMachine,
    hub: Rc<Hub>,
    session: Recipient<LinkEvent>,
    dialer: Rc<dyn Dialer>,
    epoch: Instant,
    gen: u64,
    tx: Option<tokio::sync::mpsc::UnboundedSender<Outbound>>,
    stream: Option<SpawnHandle>,
    attempt: Option<SpawnHandle>,
    retry: Option<SpawnHandle>,
    heartbeat: Option<SpawnHandle>,
    hello_deadline: Option<SpawnHandle>,
    liveness: Liveness,
    pending: Pending<Waiter>,
    connected_since: Option<i64>,
    retry_at: Option<Instant>,
    /// A graceful close waits for the server's close frame.
    closing: Option<oneshot::Sender<()>>,
    /// Many accounts: every connect attempt waits for its slot.
    pacer: Option<Rc<crate::daemon::accounts::Pacer>>,
    /// The pacer's hold on the attempt under way, from its turn to the hello.
    in_flight: Option<crate::daemon::accounts::InFlight>,
    /// The probe after the route changed, while it runs.
    probe: Option<SpawnHandle>,
    /// The network watcher said the route to the server is gone (and not back yet).
    route_down: bool,
    /// The connect attempt running began while the route was gone.
    attempt_while_down: bool,
    /// The last attempt was one a new route started early; it is not done twice in a row.
    last_early: bool,
    /// Profile pushes of the read being taken in, for the Session in one message.
    infos: Vec<ProfileJson>,
    /// The time the frames of the read being taken in were heard at, and how many were.
    stamp: Option<(u64, u32)>,
}

/// Percent-encodes a query value (RFC 3986 unreserved characters stay).
fn query_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl WsLink {
    /// A link for this configuration, connecting through `dialer` on [`LinkControl::Start`].
    pub fn new(
        cfg: &Config,
        instance_id: String,
        hub: Rc<Hub>,
        session: Recipient<LinkEvent>,
        dialer: Rc<dyn Dialer>,
    ) -> WsLink {
        let now = Instant::now();
        WsLink {
            server: cfg.server.clone(),
            platform: cfg.sdk.platform,
            instance_id,
            app_id: None,
            machine: ConnMachine::new(
                Backoff::from_config(&cfg.reconnect),
                cfg.reconnect.stable_ms,
            ),
            hub,
            session,
            dialer,
            epoch: now,
            gen: 0,
            tx: None,
            stream: None,
            attempt: None,
            retry: None,
            heartbeat: None,
            hello_deadline: None,
            liveness: Liveness::new(cfg.server.heartbeat_timeout_ms, 0),
            pending: Pending::new(),
            connected_since: None,
            retry_at: None,
            closing: None,
            pacer: None,
            in_flight: None,
            probe: None,
            route_down: false,
            attempt_while_down: false,
            last_early: false,
            infos: Vec::new(),
            stamp: None,
        }
    }

    /// [`WsLink::start_link`] whose connect attempts wait for their slot of `pacer`, when
    /// one is given.
    pub fn start_paced(
        cfg: &Config,
        instance_id: String,
        hub: Rc<Hub>,
        session: Recipient<LinkEvent>,
        dialer: Rc<dyn Dialer>,
        pacer: Option<Rc<crate::daemon::accounts::Pacer>>,
    ) -> Link {
        let mut link = WsLink::new(cfg, instance_id, hub, session, dialer);
        link.pacer = pacer;
        Link::of(&link.start())
    }

    /// Starts a native link and returns the Session's handle on it.
    pub fn start_link(
        cfg: &Config,
        instance_id: String,
        hub: Rc<Hub>,
        session: Recipient<LinkEvent>,
        dialer: Rc<dyn Dialer>,
    ) -> Link {
        WsLink::start_paced(cfg, instance_id, hub, session, dialer, None)
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A frame arrived: the liveness rule hears it at the time the first frame of its
    /// run was handled (one clock reading for up to [`FRAMES_PER_STAMP`] frames taken in
    /// without a pause), so the time is at most that many frames' handling early. A probe
    /// and each heartbeat tick start a new reading: a frame handled after a probe was
    /// sent is heard at or after that moment, one handled before it is heard before it,
    /// so a probe is answered exactly as when every frame read the clock.
    fn heard(&mut self) {
        let now = match self.stamp {
            Some((at, n)) if n < FRAMES_PER_STAMP => {
                self.stamp = Some((at, n + 1));
                at
            }
            _ => {
                let at = self.now_ms();
                self.stamp = Some((at, 1));
                at
            }
        };
        self.liveness.heard(now);
    }

    /// Passes the gathered profile pushes on to the Session, in one message.
    fn pass_infos(&mut self) {
        if !self.infos.is_empty() {
            // The next batch is likely the size of this one.
            let room = self.infos.len();
            let batch = std::mem::replace(&mut self.infos, Vec::with_capacity(room));
            self.session.do_send(LinkEvent::SelfInfo(batch));
        }
    }

    /// Tells the Session `ev`, after the profile pushes that came before it.
    fn tell(&mut self, ev: LinkEvent) {
        self.pass_infos();
        self.session.do_send(ev);
    }

    fn input(&mut self, input: ConnInput, ctx: &mut Context<Self>) {
        // What the server pushed before this goes first.
        self.pass_infos();
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
                    let wait = Duration::from_millis(ms);
                    self.retry_at = Instant::now().checked_add(wait);
                    self.retry = Some(ctx.run_later(wait, |act, ctx| {
                        act.retry = None;
                        act.retry_at = None;
                        act.last_early = false;
                        act.input(ConnInput::RetryDue, ctx);
                    }));
                }
                ConnAction::CancelRetry => {
                    if let Some(h) = self.retry.take() {
                        ctx.cancel_future(h);
                    }
                    self.retry_at = None;
                }
                ConnAction::Emit(e) => self.hub.emit(e),
                ConnAction::LinkUp => {
                    self.last_early = false;
                    self.tell(LinkEvent::Up)
                }
                ConnAction::LinkDown => self.tell(LinkEvent::Down),
            }
        }
        if !matches!(self.machine.phase(), Phase::Waiting { .. }) {
            self.retry_at = None;
        }
        self.publish();
    }

    fn publish(&self) {
        self.hub.set_conn(ConnPart {
            state: self.machine.state(),
            connected_since: self.connected_since,
            attempt: self.machine.attempt(),
            retry_at: self.retry_at,
            server: self.server.url.clone(),
        });
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
            query_value(self.platform.name()),
            query_value(&self.instance_id),
            versions.join(",")
        )
    }

    fn open(&mut self, ctx: &mut Context<Self>) {
        self.gen += 1;
        let gen = self.gen;
        self.attempt_while_down = self.route_down;
        tracing::info!(server = %self.server.url, "connecting");
        let timeout = Duration::from_millis(self.server.connect_timeout_ms);
        let wait = self.pacer.as_ref().map(|p| p.delay()).unwrap_or_default();
        let pacer = self.pacer.clone();
        let dial = self.dialer.dial(self.url());
        // The connect timeout runs from the attempt's turn.
        let fut = async move {
            let permit = crate::daemon::accounts::Pacer::wait_turn(pacer, wait).await;
            let started = Instant::now();
            let res = match tokio::time::timeout(timeout, dial).await {
                Err(_) => Err((code::CONNECT_TIMEOUT, "connect timeout".to_owned())),
                Ok(r) => r,
            };
            (started, res, permit)
        };
        self.attempt = Some(ctx.spawn(fut.into_actor(self).map(
            move |(started, res, permit), act, ctx| {
                act.attempt = None;
                if act.gen != gen {
                    return;
                }
                match res {
                    Err((code, desc)) => act.open_failed(code, desc, ctx),
                    Ok(Transport { tx, rx }) => {
                        // In flight until the hello arrives or the attempt fails.
                        act.in_flight = permit;
                        act.tx = Some(tx);
                        act.stream =
                            Some(ctx.add_stream(UntilIdle::new(rx).map(move |i| (gen, i))));
                        // The connection counts only once the server's hello arrived.
                        let left = timeout.saturating_sub(started.elapsed());
                        act.hello_deadline = Some(ctx.run_later(left, move |act, ctx| {
                            act.hello_deadline = None;
                            if act.gen == gen && act.machine.phase() == Phase::Connecting {
                                act.open_failed(
                                    code::CONNECT_TIMEOUT,
                                    "no hello from the server".into(),
                                    ctx,
                                );
                            }
                        }));
                    }
                }
            },
        )));
    }

    fn open_failed(&mut self, code: i32, desc: String, ctx: &mut Context<Self>) {
        tracing::warn!(code, "connect failed: {desc}");
        self.close(ctx);
        self.input(ConnInput::OpenFailed { code, desc }, ctx);
    }

    fn close(&mut self, ctx: &mut Context<Self>) {
        // What the connection brought before it closed goes on first.
        self.pass_infos();
        self.stamp = None;
        self.gen += 1;
        self.in_flight = None;
        for h in [
            self.attempt.take(),
            self.hello_deadline.take(),
            self.stream.take(),
            self.probe.take(),
        ]
        .into_iter()
        .flatten()
        {
            ctx.cancel_future(h);
        }
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Outbound::Close);
        }
        self.connected_since = None;
        for w in self.pending.drain() {
            if let Waiter::Call(tx) = w {
                let _ = tx.send(Err(Fail::new(code::DISCONNECTED, "connection lost")));
            }
        }
        if let Some(c) = self.closing.take() {
            let _ = c.send(());
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
            Phase::Connecting => self.open_failed(code::DISCONNECTED, desc, ctx),
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
            // Frames after this tick are heard at a new reading of the clock.
            act.stamp = None;
            match act.liveness.tick(act.now_ms()) {
                Beat::Dead { silent_ms } => {
                    act.lost(format!("no frame from the server for {silent_ms} ms"), ctx)
                }
                Beat::Ping => {
                    let _ = act.send(Command::Heartbeat(Empty {}), Waiter::Heartbeat, ctx);
                }
            }
        }));
    }

    /// The route to the server changed while connected: a heartbeat now, and the
    /// connection is lost unless something comes back within one heartbeat interval.
    fn probe(&mut self, ctx: &mut Context<Self>) {
        if self.probe.is_some() {
            return;
        }
        let sent = self.now_ms();
        // Only frames handled after this count as an answer.
        self.stamp = None;
        if self
            .send(Command::Heartbeat(Empty {}), Waiter::Heartbeat, ctx)
            .is_err()
        {
            return;
        }
        let wait = self.server.heartbeat_interval_ms.max(10);
        tracing::info!(
            deadline_ms = wait,
            "the route to the server changed: probing the connection"
        );
        let gen = self.gen;
        self.probe = Some(ctx.run_later(Duration::from_millis(wait), move |act, ctx| {
            act.probe = None;
            if act.gen != gen {
                return;
            }
            if act.liveness.heard_since(sent) {
                tracing::info!("the probe was answered: the connection stays");
                return;
            }
            act.lost(
                format!("the route to the server changed and nothing came back within {wait} ms"),
                ctx,
            );
        }));
    }

    /// Sends a request; the waiter hears the response, 9520 at the deadline, or 9508.
    fn send(&mut self, cmd: Command, waiter: Waiter, ctx: &mut Context<Self>) -> Result<(), Fail> {
        let not_connected = || Fail::new(code::DISCONNECTED, "not connected to the server");
        if !matches!(self.machine.phase(), Phase::Connected { .. }) {
            return Err(not_connected());
        }
        let Some(tx) = &self.tx else {
            return Err(not_connected());
        };
        let wait = self.server.request_timeout_ms;
        let seq = self
            .pending
            .insert(self.now_ms().saturating_add(wait), waiter);
        let frame = serde_json::to_string(&Request { seq, cmd })
            .map_err(|e| Fail::internal(format!("cannot encode a request: {e}")))?;
        if tx.send(Outbound::Text(frame)).is_err() {
            self.pending.take(seq);
            return Err(not_connected());
        }
        ctx.run_later(Duration::from_millis(wait), move |act, _| {
            for (_, w) in act.pending.expire(act.now_ms()) {
                if let Waiter::Call(tx) = w {
                    let _ = tx.send(Err(Fail::new(
                        code::REQUEST_TIMEOUT,
                        format!("no response from the server within {wait} ms"),
                    )));
                }
            }
        });
        Ok(())
    }

    fn on_self_info(&mut self, info: ProfileJson) {
        if matches!(self.machine.phase(), Phase::Connected { .. }) {
            self.infos.push(info);
            if self.infos.len() >= INFO_BATCH {
                self.pass_infos();
            }
        }
    }

    fn on_text(&mut self, text: &[u8], ctx: &mut Context<Self>) {
        let frame = match ServerFrame::parse(text) {
            Ok(f) => f,
            Err(FrameError::UnknownPush(name)) => {
                tracing::debug!("ignoring a push this build does not know: {name}");
                return;
            }
            Err(FrameError::Unreadable(e)) => {
                tracing::warn!(
                    "unreadable frame from the server: {}",
                    crate::text::clean(&e)
                );
                return;
            }
        };
        match frame {
            ServerFrame::Response(r) => match self.pending.take(r.seq) {
                Some(Waiter::Call(tx)) => {
                    let _ = tx.send(Ok(r));
                }
                Some(Waiter::Heartbeat) => {
                    if let Ok(h) = serde_json::from_value::<HeartbeatResult>(r.body) {
                        self.hub.set_server_time(h.server_time);
                    }
                }
                None => tracing::debug!(seq = r.seq, "response to a request given up on"),
            },
            ServerFrame::Push(Push::Hello(h)) => {
                if self.machine.phase() != Phase::Connecting {
                    return;
                }
                if !PROTOCOL_VERSIONS.contains(&h.version) {
                    self.open_failed(
                        code::DISCONNECTED,
                        format!(
                            "the server chose protocol version {}, which this build does not speak",
                            h.version
                        ),
                        ctx,
                    );
                    return;
                }
                if let Some(hd) = self.hello_deadline.take() {
                    ctx.cancel_future(hd);
                }
                self.in_flight = None;
                self.hub.set_server_time(h.server_time);
                self.connected_since = Some(self.hub.clock().unix_ms());
                self.liveness = Liveness::new(self.server.heartbeat_timeout_ms, self.now_ms());
                tracing::info!(version = h.version, "connected");
                self.input(ConnInput::Opened, ctx);
            }
            ServerFrame::Push(p) => {
                if !matches!(self.machine.phase(), Phase::Connected { .. }) {
                    return;
                }
                let ev = match p {
                    Push::KickedOffline(k) => LinkEvent::Kicked {
                        why: format!("{:?} from {:?}", k.reason, k.platform),
                    },
                    Push::UserSigExpired(_) => LinkEvent::SigExpired,
                    Push::SelfInfoUpdated(b) => {
                        self.on_self_info(ProfileJson::from_info(&b.info));
                        return;
                    }
                    Push::Hello(_) => return,
                };
                self.tell(ev);
            }
        }
    }
}

impl Actor for WsLink {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.start_heartbeat(ctx);
        self.publish();
    }

    fn stopping(&mut self, _: &mut Context<Self>) -> Running {
        self.pass_infos();
        Running::Stop
    }
}

/// The server's messages, and a `None` each time the transport has taken in all it read.
impl StreamHandler<(u64, Option<Inbound>)> for WsLink {
    fn handle(&mut self, (gen, item): (u64, Option<Inbound>), ctx: &mut Context<Self>) {
        if gen != self.gen {
            return;
        }
        let Some(item) = item else {
            // All read is handled: what it brought goes on, and the next read is heard
            // at a new reading of the clock.
            self.pass_infos();
            self.stamp = None;
            return;
        };
        self.heard();
        match item {
            Inbound::Text(t) => match self_info_push(&t) {
                // A profile push as the server writes it: taken whole, not parsed.
                Some(info) => self.on_self_info(info),
                None => self.on_text(&t, ctx),
            },
            Inbound::Ping(p) => {
                if let Some(tx) = &self.tx {
                    let _ = tx.send(Outbound::Pong(p));
                }
            }
            Inbound::Other => {}
            Inbound::Closed(why) => {
                if self.closing.is_some() {
                    self.input(ConnInput::Stop, ctx);
                } else {
                    self.lost(why, ctx);
                }
            }
        }
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {}
}

impl Handler<LinkControl> for WsLink {
    type Result = ();
    fn handle(&mut self, msg: LinkControl, ctx: &mut Context<Self>) {
        match msg {
            LinkControl::Start(app) => {
                self.app_id = Some(app);
                self.last_early = false;
                self.input(ConnInput::Start, ctx);
            }
            LinkControl::Stop => {
                tracing::info!("connection stopped");
                self.input(ConnInput::Stop, ctx);
            }
            LinkControl::ReconnectNow => {
                self.last_early = false;
                self.input(ConnInput::ReconnectNow, ctx)
            }
        }
    }
}

impl Handler<NetNotice> for WsLink {
    type Result = ();

    /// What the network watcher says: connect early when a route appears (once in a row:
    /// an early attempt that fails waits for the next backoff step in full), probe at once
    /// when the route in use goes.
    fn handle(&mut self, notice: NetNotice, ctx: &mut Context<Self>) {
        match notice {
            NetNotice::RouteGone => {
                self.route_down = true;
                if matches!(self.machine.phase(), Phase::Connected { .. }) {
                    self.probe(ctx);
                }
            }
            NetNotice::RouteUp => {
                self.route_down = false;
                match self.machine.phase() {
                    Phase::Waiting { .. } if !self.last_early => {
                        tracing::info!(
                            "a route to the server appeared: connecting now, skipping the backoff"
                        );
                        self.last_early = true;
                        self.input(ConnInput::RouteUp, ctx);
                    }
                    Phase::Waiting { .. } => tracing::debug!(
                        "a route to the server appeared again; the early attempt before failed, so the backoff runs"
                    ),
                    Phase::Connecting if self.attempt_while_down => {
                        tracing::info!(
                            "a route to the server appeared: starting the connect attempt again"
                        );
                        self.close(ctx);
                        self.open(ctx);
                    }
                    _ => {}
                }
            }
        }
    }
}

fn login_reply(hub: &Hub, resp: Response) -> Result<LinkReply, Fail> {
    if resp.code != 0 {
        return Err(Fail::new(resp.code, crate::text::clean(&resp.desc)));
    }
    match serde_json::from_value::<LoginResult>(resp.body) {
        Ok(r) => {
            hub.set_server_time(r.server_time);
            Ok(LinkReply::LoggedIn {
                expires_at: Some(r.user_sig_expire_at).filter(|e| EXPIRY_RANGE.contains(e)),
                info: Some(r.info),
            })
        }
        Err(_) => Ok(LinkReply::LoggedIn {
            expires_at: None,
            info: None,
        }),
    }
}

impl Handler<LinkRequest> for WsLink {
    type Result = ResponseFuture<Result<LinkReply, Fail>>;

    fn handle(&mut self, msg: LinkRequest, ctx: &mut Context<Self>) -> Self::Result {
        let (login, cmd) = match msg {
            LinkRequest::Login { user, sig, auto } => {
                tracing::info!(user = %user, auto, "sending login");
                (
                    true,
                    Command::Login(LoginBody {
                        user_id: user,
                        user_sig: sig,
                        auto,
                    }),
                )
            }
            LinkRequest::Logout => (false, Command::Logout(Empty {})),
        };
        let (tx, rx) = oneshot::channel();
        if let Err(f) = self.send(cmd, Waiter::Call(tx), ctx) {
            return Box::pin(async move { Err(f) });
        }
        let hub = self.hub.clone();
        Box::pin(async move {
            let resp = rx
                .await
                .unwrap_or_else(|_| Err(Fail::new(code::DISCONNECTED, "connection lost")))?;
            if login {
                login_reply(&hub, resp)
            } else if resp.code != 0 {
                Err(Fail::new(resp.code, crate::text::clean(&resp.desc)))
            } else {
                Ok(LinkReply::Done)
            }
        })
    }
}

impl Handler<LinkReconfigure> for WsLink {
    type Result = ();
    fn handle(&mut self, msg: LinkReconfigure, ctx: &mut Context<Self>) {
        let cfg = msg.0;
        if cfg.server.url != self.server.url || cfg.server.ca_file != self.server.ca_file {
            tracing::warn!("server.url and server.ca_file take effect at the next restart");
        }
        let url = std::mem::take(&mut self.server.url);
        let ca = self.server.ca_file.take();
        self.server = cfg.server.clone();
        self.server.url = url;
        self.server.ca_file = ca;
        self.liveness.set_timeout(self.server.heartbeat_timeout_ms);
        self.machine.reconfigure(
            Backoff::from_config(&cfg.reconnect),
            cfg.reconnect.stable_ms,
        );
        self.start_heartbeat(ctx);
    }
}

impl Handler<CloseLink> for WsLink {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: CloseLink, ctx: &mut Context<Self>) -> Self::Result {
        let (done_tx, done_rx) = oneshot::channel();
        if matches!(self.machine.phase(), Phase::Connected { .. }) {
            // Send our close frame and wait for the server's (or the end of the stream).
            if let Some(tx) = &self.tx {
                let _ = tx.send(Outbound::Close);
            }
            self.closing = Some(done_tx);
        } else {
            self.input(ConnInput::Stop, ctx);
            let _ = done_tx.send(());
        }
        Box::pin(
            async move {
                let _ = tokio::time::timeout(CLOSE_WAIT, done_rx).await;
            }
            .into_actor(self)
            .map(|_, act, ctx| {
                act.closing = None;
                act.input(ConnInput::Stop, ctx);
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_escaped() {
        assert_eq!(query_value("abc-123_x.y~z"), "abc-123_x.y~z");
        assert_eq!(
            query_value("abc&platform=Web#x"),
            "abc%26platform%3DWeb%23x"
        );
        assert_eq!(query_value("é"), "%C3%A9");
    }
}
