//! The Tencent link: Tencent Cloud IM through its official JavaScript SDK, run by Node.js
//! in a supervised child process (the bridge, `bridge/tencent/index.js`; the protocol is
//! [`crate::proto::bridge`], the whole story docs/tencent.md).
//!
//! The `TencentLink` actor owns the bridge process. It performs what its
//! [`LinkMachine`] decides — start the bridge, restart it after the backoff — treats the
//! process's end, a ping it leaves unanswered (the [`Liveness`] rule, with the heartbeat
//! settings) and the SDK giving up on the network as the loss of the link, correlates
//! requests with answers through a [`Pending`] table (9520 at the deadline, 9508 when the
//! process ends), maps the SDK's events to [`LinkEvent`]s and the hub's connection
//! events, and publishes its state to the hub. Its parts:
//!
//! - [`process`]: the child process as a typed stream (stdin writer, bounded stdout and
//!   stderr readers, the exit as the last item);
//! - [`machine`]: the connection state, pure;
//! - [`preflight`]: `node index.js --version` and the version checks;
//! - [`redact`]: tickets removed from everything the bridge says.
//!
//! What the Session sees (docs/architecture.md, "The link seam"): `Up` once a bridge has
//! initialised its SDK, `Down` when that bridge is gone. After `Up` the Session sends its
//! automatic re-login with the stored ticket, and the new SDK logs in with it — the same
//! path as a reconnect of the native link. When the SDK loses its socket and reopens it
//! by itself within one bridge, it logs in again with its own session key: clients see
//! the connection events, the Session sees nothing, and a refusal comes as a kick.

pub mod machine;
pub mod preflight;
pub mod process;
pub mod redact;

use actix::fut::{self, LocalBoxActorFuture};
use actix::prelude::*;
use futures_util::StreamExt;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{
    CloseLink, Link, LinkControl, LinkEvent, LinkReconfigure, LinkReply, LinkRequest, NetNotice,
};
use crate::codes::code;
use crate::config::{Config, ServerConfig, TencentConfig};
use crate::core::backoff::Backoff;
use crate::core::connection::{ConnAction, ConnInput, Phase};
use crate::core::liveness::{Beat, Liveness};
use crate::core::pending::Pending;
use crate::core::session::Fail;
use crate::daemon::hub::{ConnPart, Hub};
use crate::proto::bridge::{
    plausible_info, Answer, Event as BridgeEvent, FromBridge, KickType, LoginOk, NetState, Op,
    Outcome, ProfileOk, Request, MAX_LINE_BYTES,
};
use crate::proto::profile::ProfileJson;
use crate::proto::UserFullInfo;
use machine::{Input, LinkMachine};
use process::{Bridge, Exit, Inbound};
use redact::Secrets;

/// How long a clean stop (`destroy`, then the end of stdin) waits for the bridge to exit
/// before it is killed.
pub const CLOSE_WAIT: Duration = Duration::from_millis(1000);

/// The SDK's log level asked for: 1, its "release" level (a few lines per login), which
/// the daemon logs at debug level.
pub const SDK_LOG_LEVEL: i8 = 1;

/// How many unreadable lines of one bridge are logged (then one line says so).
pub const MAX_UNREADABLE_LOGGED: u32 = 20;

/// The bridge's "not logged in" code (a logout when already logged out).
const SDK_NOT_LOGGED_IN: i32 = 2024;

/// The bridge's "invalid request" code: `init` refused is a configuration problem.
const BRIDGE_INVALID_REQUEST: i32 = 6017;

/// Who waits for an answer.
enum Waiter {
    /// A caller, told the `ok` value or the failure.
    Call {
        op: &'static str,
        tx: oneshot::Sender<Result<serde_json::Value, Fail>>,
    },
    /// The link's own liveness ping.
    Ping,
    /// `init` of a bridge being started.
    Init,
}

/// The Tencent link actor.
pub struct TencentLink {
    server: ServerConfig,
    tencent: TencentConfig,
    app_id: Option<u64>,
    machine: LinkMachine,
    hub: Rc<Hub>,
    session: Recipient<LinkEvent>,
    epoch: Instant,
    gen: u64,
    bridge: Option<Bridge>,
    stream: Option<SpawnHandle>,
    start_deadline: Option<SpawnHandle>,
    retry: Option<SpawnHandle>,
    retry_at: Option<Instant>,
    heartbeat: Option<SpawnHandle>,
    liveness: Liveness,
    ping_out: bool,
    pending: Pending<Waiter>,
    secrets: Rc<RefCell<Secrets>>,
    /// The last line the bridge wrote on stderr (tickets removed), for start failures.
    last_err: Rc<RefCell<String>>,
    /// The SDK version the bridge's package.json pins, read at each start.
    pinned: String,
    hello_seen: bool,
    /// Whom the SDK is logged in as, and with which ticket (its login answered, no
    /// logout, kick or notReady since).
    sdk_login: Option<(String, String)>,
    /// Logins and logouts sent and not answered yet.
    logins: u32,
    logouts: u32,
    /// `ready` seen since the last login or `notReady`.
    ready: bool,
    ready_waiters: Vec<oneshot::Sender<()>>,
    /// The bridge cannot run (no node, not installed, wrong version): no restart until
    /// `initSDK` or `reconnect` asks again.
    broken: Option<Fail>,
    connected_since: Option<i64>,
    /// The close in progress ends the bridge cleanly (`destroy`) rather than killing it.
    graceful: bool,
    /// Resolves when the bridge being closed cleanly is gone.
    closed: Option<oneshot::Receiver<()>>,
    unreadable: u32,
    /// The last start of the bridge was one a new route made early; not twice in a row.
    last_early: bool,
}

/// What `status.server` shows: the proxy, or `tencent` (the SDK's own servers).
pub fn server_label(t: &TencentConfig) -> String {
    t.proxy_server.clone().unwrap_or_else(|| "tencent".into())
}

impl TencentLink {
    /// A link for this configuration; it starts the bridge on [`LinkControl::Start`].
    pub fn new(cfg: &Config, hub: Rc<Hub>, session: Recipient<LinkEvent>) -> TencentLink {
        TencentLink {
            server: cfg.server.clone(),
            tencent: cfg.tencent.clone(),
            app_id: None,
            machine: LinkMachine::new(
                Backoff::from_config(&cfg.reconnect),
                cfg.reconnect.stable_ms,
            ),
            hub,
            session,
            epoch: Instant::now(),
            gen: 0,
            bridge: None,
            stream: None,
            start_deadline: None,
            retry: None,
            retry_at: None,
            heartbeat: None,
            liveness: Liveness::new(cfg.server.heartbeat_timeout_ms, 0),
            ping_out: false,
            pending: Pending::new(),
            secrets: Rc::new(RefCell::new(Secrets::new())),
            last_err: Rc::new(RefCell::new(String::new())),
            pinned: String::new(),
            hello_seen: false,
            sdk_login: None,
            logins: 0,
            logouts: 0,
            ready: false,
            ready_waiters: Vec::new(),
            broken: None,
            connected_since: None,
            graceful: false,
            closed: None,
            unreadable: 0,
            last_early: false,
        }
    }

    /// Starts a Tencent link and returns the Session's handle on it.
    pub fn start_link(cfg: &Config, hub: Rc<Hub>, session: Recipient<LinkEvent>) -> Link {
        Link::of(&TencentLink::new(cfg, hub, session).start())
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Bridge text made safe: tickets removed, control characters escaped, bounded.
    fn text(&self, s: &str) -> String {
        crate::text::clean(&self.secrets.borrow().scrub(s)).into_owned()
    }

    fn input(&mut self, input: Input, ctx: &mut Context<Self>) {
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
                        "restarting the Tencent bridge after backoff"
                    );
                    let wait = Duration::from_millis(ms);
                    self.retry_at = Instant::now().checked_add(wait);
                    self.retry = Some(ctx.run_later(wait, |act, ctx| {
                        act.retry = None;
                        act.retry_at = None;
                        act.last_early = false;
                        act.input(Input::Conn(ConnInput::RetryDue), ctx);
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
                    self.session.do_send(LinkEvent::Up)
                }
                ConnAction::LinkDown => self.session.do_send(LinkEvent::Down),
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
            connected_since: if self.machine.reconnecting() {
                None
            } else {
                self.connected_since
            },
            attempt: self.machine.attempt(),
            retry_at: self.retry_at,
            server: server_label(&self.tencent),
        });
    }

    /// Starts a bridge (the machine's `Open`).
    fn open(&mut self, ctx: &mut Context<Self>) {
        self.gen += 1;
        let gen = self.gen;
        self.hello_seen = false;
        self.unreadable = 0;
        self.last_err.borrow_mut().clear();
        let dir = self.tencent.bridge_dir();
        let started = if !dir.join("index.js").is_file() {
            Err(Fail::new(
                code::LINK_UNAVAILABLE,
                format!(
                    "the Tencent bridge is not installed: {} has no index.js; run `make install`, or set tencent.bridge_dir",
                    dir.display()
                ),
            ))
        } else {
            preflight::pinned_version(&dir).and_then(|pinned| {
                self.pinned = pinned;
                process::spawn(
                    &self.tencent.node,
                    &dir,
                    self.secrets.clone(),
                    self.last_err.clone(),
                )
                .map_err(|e| preflight::spawn_error(&self.tencent.node, &e))
            })
        };
        match started {
            Err(f) => {
                // Decided after this action list is done.
                ctx.run_later(Duration::ZERO, move |act, ctx| {
                    if act.gen == gen {
                        act.give_up(f, ctx);
                    }
                });
            }
            Ok((bridge, stream)) => {
                tracing::info!(pid = ?bridge.pid, dir = %dir.display(), "starting the Tencent bridge");
                self.bridge = Some(bridge);
                self.stream = Some(ctx.add_stream(stream.map(move |i| (gen, i))));
                let wait = self.server.connect_timeout_ms;
                self.start_deadline =
                    Some(ctx.run_later(Duration::from_millis(wait), move |act, ctx| {
                        act.start_deadline = None;
                        if act.gen == gen && act.machine.phase() == Phase::Connecting {
                            act.open_failed(
                                code::CONNECT_TIMEOUT,
                                format!("the Tencent bridge did not start within {wait} ms"),
                                ctx,
                            );
                        }
                    }));
            }
        }
    }

    /// The bridge cannot run: say so once, and do not restart it until asked.
    fn give_up(&mut self, f: Fail, ctx: &mut Context<Self>) {
        tracing::error!(code = f.code, "{}", f.message);
        self.broken = Some(f.clone());
        self.close(ctx);
        if self.machine.phase() == Phase::Connecting {
            self.input(
                Input::Conn(ConnInput::OpenFailed {
                    code: f.code,
                    desc: f.message,
                }),
                ctx,
            );
        }
        self.input(Input::Conn(ConnInput::Stop), ctx);
    }

    fn open_failed(&mut self, code: i32, desc: String, ctx: &mut Context<Self>) {
        tracing::warn!(code, "the Tencent bridge did not start: {desc}");
        self.close(ctx);
        self.input(Input::Conn(ConnInput::OpenFailed { code, desc }), ctx);
    }

    /// The link is lost (the process ended, stopped answering, or the SDK gave up).
    fn lost(&mut self, desc: String, ctx: &mut Context<Self>) {
        match self.machine.phase() {
            Phase::Connected { .. } => {
                tracing::warn!("the Tencent link is lost: {desc}");
                self.input(
                    Input::Conn(ConnInput::Lost {
                        code: code::DISCONNECTED,
                        desc,
                    }),
                    ctx,
                );
            }
            Phase::Connecting => self.open_failed(code::DISCONNECTED, desc, ctx),
            _ => {}
        }
    }

    /// Ends the current bridge (the machine's `Close`): cleanly when [`Self::graceful`],
    /// else at once. Everything waiting fails with 9508.
    fn close(&mut self, ctx: &mut Context<Self>) {
        self.gen += 1;
        for h in [self.stream.take(), self.start_deadline.take()]
            .into_iter()
            .flatten()
        {
            ctx.cancel_future(h);
        }
        if let Some(b) = self.bridge.take() {
            if self.graceful {
                tracing::info!(pid = ?b.pid, "stopping the Tencent bridge (destroy)");
                if let Ok(line) = serde_json::to_string(&Request {
                    id: 0,
                    op: Op::Destroy,
                }) {
                    b.send(line);
                }
                let finished = b.finish(CLOSE_WAIT);
                let (tx, rx) = oneshot::channel();
                tokio::task::spawn_local(async move {
                    finished.await;
                    let _ = tx.send(());
                });
                self.closed = Some(rx);
            } else {
                tracing::debug!(pid = ?b.pid, "killing the Tencent bridge");
                b.kill();
            }
        }
        for w in self.pending.drain() {
            if let Waiter::Call { tx, .. } = w {
                let _ = tx.send(Err(Fail::new(
                    code::DISCONNECTED,
                    "the Tencent bridge ended",
                )));
            }
        }
        self.connected_since = None;
        self.sdk_login = None;
        self.ready = false;
        self.ready_waiters.clear();
        self.ping_out = false;
        self.hello_seen = false;
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
            match act.liveness.tick(act.now_ms()) {
                Beat::Dead { silent_ms } => act.lost(
                    format!("the Tencent bridge did not answer a ping for {silent_ms} ms"),
                    ctx,
                ),
                Beat::Ping if !act.ping_out => {
                    let wait = act.server.heartbeat_timeout_ms;
                    if act.request(Op::Ping, wait, Waiter::Ping, ctx).is_ok() {
                        act.ping_out = true;
                    }
                }
                Beat::Ping => {}
            }
        }));
    }

    /// Writes a request; its waiter hears the answer, or 9520 after `wait_ms`.
    fn request(
        &mut self,
        op: Op,
        wait_ms: u64,
        waiter: Waiter,
        ctx: &mut Context<Self>,
    ) -> Result<(), Fail> {
        let Some(bridge) = &self.bridge else {
            return Err(Fail::new(
                code::DISCONNECTED,
                "the Tencent bridge is not running",
            ));
        };
        if let Op::Login { user_sig, .. } = &op {
            self.secrets.borrow_mut().add(user_sig);
        }
        let id = self
            .pending
            .insert(self.now_ms().saturating_add(wait_ms), waiter);
        let line = serde_json::to_string(&Request { id, op })
            .map_err(|e| Fail::internal(format!("cannot encode a bridge request: {e}")))?;
        if !bridge.send(line) {
            self.pending.take(id);
            return Err(Fail::new(
                code::DISCONNECTED,
                "the Tencent bridge is not running",
            ));
        }
        ctx.run_later(Duration::from_millis(wait_ms), move |act, ctx| {
            act.expire(wait_ms, ctx)
        });
        Ok(())
    }

    /// Sends `op` for a caller: the receiver resolves with the answer (never hangs).
    fn call(
        &mut self,
        op: Op,
        wait_ms: u64,
        ctx: &mut Context<Self>,
    ) -> oneshot::Receiver<Result<serde_json::Value, Fail>> {
        let (tx, rx) = oneshot::channel();
        let name = op.name();
        let (tx2, rx2) = oneshot::channel();
        match self.request(op, wait_ms, Waiter::Call { op: name, tx }, ctx) {
            Ok(()) => rx,
            Err(f) => {
                let _ = tx2.send(Err(f));
                rx2
            }
        }
    }

    /// Answers every request whose deadline has passed.
    fn expire(&mut self, wait_ms: u64, ctx: &mut Context<Self>) {
        let mut restart = None;
        for (_, w) in self.pending.expire(self.now_ms()) {
            match w {
                Waiter::Call { op, tx } => {
                    let _ = tx.send(Err(Fail::new(
                        code::REQUEST_TIMEOUT,
                        format!("the Tencent SDK did not answer {op} within {wait_ms} ms"),
                    )));
                    if op == "login" {
                        // The SDK would keep it pending for 90 s: a new bridge starts clean.
                        restart = Some(format!(
                            "the Tencent SDK did not answer a login within {wait_ms} ms"
                        ));
                    }
                }
                Waiter::Ping => self.ping_out = false,
                Waiter::Init => {
                    restart = Some(format!(
                        "the Tencent bridge did not answer init within {wait_ms} ms"
                    ))
                }
            }
        }
        if let Some(why) = restart {
            self.lost(why, ctx);
        }
    }

    fn unavailable(&self) -> Option<Fail> {
        if let Some(b) = &self.broken {
            return Some(b.clone());
        }
        if !matches!(self.machine.phase(), Phase::Connected { .. }) || self.bridge.is_none() {
            return Some(Fail::new(
                code::DISCONNECTED,
                "not connected: the Tencent bridge is not running",
            ));
        }
        None
    }

    fn on_answer(&mut self, a: Answer, ctx: &mut Context<Self>) {
        let now = self.now_ms();
        let waiter = self.pending.take(a.id);
        if waiter.is_some() {
            // Only an answer to a request of ours shows the bridge is alive (a bridge
            // that makes up answers does not keep itself from being restarted).
            self.liveness.heard(now);
        }
        let result = match a.outcome {
            Outcome::Ok(v) => Ok(v),
            Outcome::Err(f) => {
                let message = if f.message.trim().is_empty() {
                    format!(
                        "the Tencent SDK refused ({})",
                        crate::codes::describe(f.code)
                    )
                } else {
                    self.text(&f.message)
                };
                Err(Fail::new(f.code, message))
            }
        };
        match waiter {
            Some(Waiter::Call { tx, .. }) => {
                let _ = tx.send(result);
            }
            Some(Waiter::Ping) => self.ping_out = false,
            Some(Waiter::Init) => match result {
                Ok(_) => {
                    if let Some(h) = self.start_deadline.take() {
                        ctx.cancel_future(h);
                    }
                    self.connected_since = Some(self.hub.clock().unix_ms());
                    self.liveness = Liveness::new(self.server.heartbeat_timeout_ms, now);
                    tracing::info!("the Tencent SDK is initialised");
                    self.input(Input::Conn(ConnInput::Opened), ctx);
                }
                Err(f) if f.code == BRIDGE_INVALID_REQUEST => self.give_up(
                    Fail::new(
                        code::LINK_UNAVAILABLE,
                        format!("the Tencent bridge refused init: {}", f.message),
                    ),
                    ctx,
                ),
                Err(f) => self.open_failed(f.code, f.message, ctx),
            },
            None => tracing::debug!(id = a.id, "an answer to a request given up on"),
        }
    }

    fn on_event(&mut self, e: BridgeEvent, ctx: &mut Context<Self>) {
        match e {
            BridgeEvent::Hello(h) => {
                if self.hello_seen || self.machine.phase() != Phase::Connecting {
                    tracing::warn!("a second hello from the Tencent bridge, ignored");
                    return;
                }
                self.hello_seen = true;
                let dir = self.tencent.bridge_dir();
                if let Err(f) = preflight::check_hello(&h, &self.pinned, &dir) {
                    self.give_up(f, ctx);
                    return;
                }
                tracing::info!(
                    sdk = %h.sdk_version,
                    node = %h.node,
                    "the Tencent bridge is running"
                );
                let Some(app) = self.app_id else { return };
                let init = Op::Init {
                    sdk_app_id: app,
                    proxy_server: self.tencent.proxy_server.clone(),
                    log_level: SDK_LOG_LEVEL,
                };
                let wait = self.server.connect_timeout_ms;
                if let Err(f) = self.request(init, wait, Waiter::Init, ctx) {
                    self.open_failed(f.code, f.message, ctx);
                }
            }
            BridgeEvent::NetState { state } => {
                tracing::debug!(?state, "the Tencent SDK's network state");
                self.net_state(state, ctx);
            }
            BridgeEvent::Ready => {
                // Logged in: its socket works, whether it said `connected` or not.
                self.net_state(NetState::Connected, ctx);
                self.ready = true;
                for w in self.ready_waiters.drain(..) {
                    let _ = w.send(());
                }
            }
            BridgeEvent::NotReady => {
                self.ready = false;
                if let Some((user, _)) = self.sdk_login.take() {
                    // Not after our logout or a kick: the SDK lost the login by itself.
                    // The Session logs in again with the stored ticket, as after a
                    // reconnect.
                    tracing::warn!(user = %user, "the Tencent SDK is no longer logged in: logging in again");
                    if matches!(self.machine.phase(), Phase::Connected { .. }) {
                        self.session.do_send(LinkEvent::Down);
                        self.session.do_send(LinkEvent::Up);
                    }
                }
            }
            BridgeEvent::Kicked { kind } => {
                self.ready = false;
                let ours = self.sdk_login.take().is_some() || self.logins > 0;
                if self.logouts > 0 || !ours {
                    // About a login being ended (the SDK learns at its logout that the
                    // ticket had run out) or already over: nothing for the Session.
                    tracing::info!(
                        kind = kind.name(),
                        "a kick of a login already given up, ignored"
                    );
                    return;
                }
                self.session.do_send(match kind {
                    KickType::UserSigExpired => LinkEvent::SigExpired,
                    k => LinkEvent::Kicked {
                        why: format!("the Tencent SDK says {}", k.name()),
                    },
                });
            }
            BridgeEvent::Profile { info } => {
                if plausible_info(&info) {
                    self.session
                        .do_send(LinkEvent::SelfInfo(vec![ProfileJson::from_info(&info)]));
                } else {
                    tracing::warn!("a profile from the Tencent bridge out of bounds, ignored");
                }
            }
            BridgeEvent::Error { code, message } => {
                tracing::debug!(
                    code,
                    "the Tencent SDK reported an error: {}",
                    self.text(&message)
                )
            }
            BridgeEvent::ProtocolError { message } => tracing::warn!(
                "the Tencent bridge could not read a request: {}",
                self.text(&message)
            ),
        }
    }

    fn net_state(&mut self, state: NetState, ctx: &mut Context<Self>) {
        let was = self.machine.reconnecting();
        self.input(Input::Net(state), ctx);
        if was && !self.machine.reconnecting() && state == NetState::Connected {
            self.connected_since = Some(self.hub.clock().unix_ms());
            self.publish();
        }
    }

    fn on_exit(&mut self, exit: Exit, ctx: &mut Context<Self>) {
        let last = self.last_err.borrow().clone();
        match self.machine.phase() {
            Phase::Connecting if exit.code == Some(69) => {
                let dir = self.tencent.bridge_dir();
                self.give_up(preflight::early_exit(&dir, exit.code, &last), ctx);
            }
            Phase::Connecting => self.open_failed(
                code::DISCONNECTED,
                format!(
                    "the Tencent bridge ended before it was initialised ({}): {}",
                    exit.desc,
                    self.text(&last)
                ),
                ctx,
            ),
            Phase::Connected { .. } => {
                self.lost(format!("the Tencent bridge ended ({})", exit.desc), ctx)
            }
            _ => {}
        }
    }

    fn unreadable(&mut self, what: String) {
        self.unreadable = self.unreadable.saturating_add(1);
        match self.unreadable.cmp(&MAX_UNREADABLE_LOGGED) {
            std::cmp::Ordering::Less | std::cmp::Ordering::Equal => {
                tracing::warn!("the Tencent bridge wrote {what}; ignored")
            }
            std::cmp::Ordering::Greater if self.unreadable == MAX_UNREADABLE_LOGGED + 1 => {
                tracing::warn!(
                    "the Tencent bridge keeps writing lines that are not protocol; no more are logged"
                )
            }
            std::cmp::Ordering::Greater => {}
        }
    }

    /// Resolves at the next `ready` (at once if seen), or when the bridge ends.
    fn wait_ready(&mut self) -> Option<oneshot::Receiver<()>> {
        if self.ready {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        self.ready_waiters.push(tx);
        Some(rx)
    }

    fn login(
        &mut self,
        user: String,
        sig: String,
        auto: bool,
        ctx: &mut Context<Self>,
    ) -> LocalBoxActorFuture<Self, Result<LinkReply, Fail>> {
        if let Some(f) = self.unavailable() {
            return fut::ready(Err(f)).boxed_local();
        }
        tracing::info!(user = %user, auto, "sending login to the Tencent SDK");
        // The SDK answers any login while logged in with `repeatLogin` and keeps its
        // login: another user, or a new ticket (which must replace the old one at the
        // server, else the login ends when the old ticket runs out), needs a logout first.
        let before = match &self.sdk_login {
            Some((u, s)) if *u != user || *s != sig => {
                tracing::info!("logging the Tencent SDK out first (another user or ticket)");
                self.sdk_login = None;
                self.logouts = self.logouts.saturating_add(1);
                Some(self.call(Op::Logout, self.server.request_timeout_ms, ctx))
            }
            _ => None,
        };
        let login_wait = self.server.login_timeout_ms;
        let wait = self.server.request_timeout_ms;
        let logging_out = before.is_some();
        async move {
            if let Some(rx) = before {
                let _ = rx.await;
            }
        }
        .into_actor(self)
        .then(move |_, act, ctx| {
            if logging_out {
                act.logouts = act.logouts.saturating_sub(1);
            }
            act.logins = act.logins.saturating_add(1);
            let rx = act.call(
                Op::Login {
                    user_id: user.clone(),
                    user_sig: sig.clone(),
                },
                login_wait,
                ctx,
            );
            async move { (user, sig, lost_if_dropped(rx.await)) }.into_actor(act)
        })
        .then(move |(user, sig, res), act, ctx| {
            act.logins = act.logins.saturating_sub(1);
            match res {
                Err(f) => fut::ready(Err(f)).boxed_local(),
                Ok(v) => {
                    let ok: LoginOk = serde_json::from_value(v).unwrap_or_default();
                    tracing::debug!(
                        repeat = ok.repeat_login,
                        "the Tencent SDK accepted the login"
                    );
                    act.sdk_login = Some((user.clone(), sig));
                    // The SDK does not always say `connected` after reopening its socket; a
                    // login it accepted proves it.
                    act.net_state(NetState::Connected, ctx);
                    act.profile_after_ready(user, wait, ctx)
                        .map(|info, _, _| {
                            Ok(LinkReply::LoggedIn {
                                expires_at: None,
                                info,
                            })
                        })
                        .boxed_local()
                }
            }
        })
        .boxed_local()
    }

    /// The profile of `user`, once the SDK is ready (None if it is not, in time, or the
    /// answer is not plausible): cheap, the SDK answers it from what it fetched at login.
    fn profile_after_ready(
        &mut self,
        user: String,
        wait: u64,
        _ctx: &mut Context<Self>,
    ) -> LocalBoxActorFuture<Self, Option<UserFullInfo>> {
        let ready = self.wait_ready();
        async move {
            if let Some(rx) = ready {
                let _ = tokio::time::timeout(Duration::from_millis(wait), rx).await;
            }
        }
        .into_actor(self)
        .then(move |_, act, ctx| {
            let rx = (act.ready && act.sdk_login.as_ref().is_some_and(|(u, _)| *u == user))
                .then(|| act.call(Op::GetMyProfile, wait, ctx));
            async move {
                let v = match rx {
                    Some(rx) => rx.await.ok()?.ok()?,
                    None => return None,
                };
                let p: ProfileOk = serde_json::from_value(v).ok()?;
                (p.info.user_id == user && plausible_info(&p.info)).then_some(p.info)
            }
            .into_actor(act)
        })
        .boxed_local()
    }

    fn logout(
        &mut self,
        ctx: &mut Context<Self>,
    ) -> LocalBoxActorFuture<Self, Result<LinkReply, Fail>> {
        if let Some(f) = self.unavailable() {
            return fut::ready(Err(f)).boxed_local();
        }
        tracing::info!("sending logout to the Tencent SDK");
        // The notReady (and a kick) that follow are ours.
        self.sdk_login = None;
        self.logouts = self.logouts.saturating_add(1);
        let rx = self.call(Op::Logout, self.server.request_timeout_ms, ctx);
        async move {
            match lost_if_dropped(rx.await) {
                Ok(_) => Ok(LinkReply::Done),
                Err(f) if f.code == SDK_NOT_LOGGED_IN => Ok(LinkReply::Done),
                Err(f) => Err(f),
            }
        }
        .into_actor(self)
        .map(|r, act, _| {
            act.logouts = act.logouts.saturating_sub(1);
            r
        })
        .boxed_local()
    }
}

fn lost_if_dropped(
    r: Result<Result<serde_json::Value, Fail>, oneshot::error::RecvError>,
) -> Result<serde_json::Value, Fail> {
    r.unwrap_or_else(|_| Err(Fail::new(code::DISCONNECTED, "the Tencent bridge ended")))
}

impl Actor for TencentLink {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.start_heartbeat(ctx);
        self.publish();
    }
}

impl StreamHandler<(u64, Inbound)> for TencentLink {
    fn handle(&mut self, (gen, item): (u64, Inbound), ctx: &mut Context<Self>) {
        if gen != self.gen {
            return;
        }
        match item {
            Inbound::Line(FromBridge::Answer(a)) => self.on_answer(a, ctx),
            Inbound::Line(FromBridge::Event(e)) => self.on_event(e, ctx),
            Inbound::Invalid(why) => {
                let why = self.text(&why);
                self.unreadable(format!("a line that is not bridge protocol ({why})"))
            }
            Inbound::TooLong(n) => {
                self.unreadable(format!("a line of {n} bytes (more than {MAX_LINE_BYTES})"))
            }
            Inbound::Exited(exit) => self.on_exit(exit, ctx),
        }
    }

    /// The stream of one bridge ended; the link lives on.
    fn finished(&mut self, _ctx: &mut Context<Self>) {}
}

impl Handler<LinkControl> for TencentLink {
    type Result = ();
    fn handle(&mut self, msg: LinkControl, ctx: &mut Context<Self>) {
        match msg {
            LinkControl::Start(app) => {
                self.app_id = Some(app);
                self.broken = None;
                self.last_early = false;
                self.input(Input::Conn(ConnInput::Start), ctx);
            }
            LinkControl::Stop => {
                tracing::info!("the Tencent link is stopped");
                self.graceful = true;
                self.input(Input::Conn(ConnInput::Stop), ctx);
                self.graceful = false;
                self.closed = None;
            }
            LinkControl::ReconnectNow => {
                self.last_early = false;
                if self.broken.take().is_some() && self.app_id.is_some() {
                    tracing::info!("trying the Tencent bridge again");
                    self.input(Input::Conn(ConnInput::Start), ctx);
                } else {
                    self.input(Input::Conn(ConnInput::ReconnectNow), ctx);
                }
            }
        }
    }
}

impl Handler<NetNotice> for TencentLink {
    type Result = ();

    /// What the network watcher says. While the bridge waits to be restarted, a new route
    /// restarts it now (once in a row). While it runs, the SDK keeps its socket itself —
    /// its own heartbeat finds a dead socket and it reconnects by itself — and a ping of
    /// the bridge would reach the process, not Tencent's servers: nothing to do.
    fn handle(&mut self, notice: NetNotice, ctx: &mut Context<Self>) {
        match notice {
            NetNotice::RouteUp => match self.machine.phase() {
                Phase::Waiting { .. } if !self.last_early && self.broken.is_none() => {
                    tracing::info!(
                        "a route to the server appeared: starting the Tencent bridge now, skipping the backoff"
                    );
                    self.last_early = true;
                    self.input(Input::Conn(ConnInput::RouteUp), ctx);
                }
                _ => {}
            },
            NetNotice::RouteGone => {
                if matches!(self.machine.phase(), Phase::Connected { .. }) {
                    tracing::info!(
                        "the route to the server changed; the Tencent SDK checks its own connection"
                    );
                }
            }
        }
    }
}

impl Handler<LinkRequest> for TencentLink {
    type Result = ResponseActFuture<Self, Result<LinkReply, Fail>>;

    fn handle(&mut self, msg: LinkRequest, ctx: &mut Context<Self>) -> Self::Result {
        match msg {
            LinkRequest::Login { user, sig, auto } => self.login(user, sig, auto, ctx),
            LinkRequest::Logout => self.logout(ctx),
        }
    }
}

impl Handler<LinkReconfigure> for TencentLink {
    type Result = ();
    fn handle(&mut self, msg: LinkReconfigure, ctx: &mut Context<Self>) {
        let cfg = msg.0;
        if cfg.tencent != self.tencent || cfg.server.backend != self.server.backend {
            tracing::warn!("server.backend and [tencent] take effect at the next restart");
        }
        let backend = self.server.backend;
        self.server = cfg.server.clone();
        self.server.backend = backend;
        self.liveness.set_timeout(self.server.heartbeat_timeout_ms);
        self.machine.reconfigure(
            Backoff::from_config(&cfg.reconnect),
            cfg.reconnect.stable_ms,
        );
        self.start_heartbeat(ctx);
    }
}

impl Handler<CloseLink> for TencentLink {
    type Result = ResponseActFuture<Self, ()>;

    /// The daemon stops: `destroy` (the SDK logs out), then the end of stdin; killed after
    /// [`CLOSE_WAIT`]. The saved session stays, and is resumed at the next start.
    fn handle(&mut self, _: CloseLink, ctx: &mut Context<Self>) -> Self::Result {
        self.graceful = true;
        self.input(Input::Conn(ConnInput::Stop), ctx);
        self.graceful = false;
        let closed = self.closed.take();
        Box::pin(
            async move {
                if let Some(rx) = closed {
                    let _ = rx.await;
                }
            }
            .into_actor(self),
        )
    }
}
