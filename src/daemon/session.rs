//! The Session actor: drives [`SessionMachine`] and performs its actions — requests through
//! the link, timers, persistence, events, answers to callers.
//!
//! Persistence is ordered, and durable where it matters: a change that must survive a
//! restart (a logout, a kick, an expiry, `unInitSDK`) is answered and announced only once
//! the state file says so. When the write fails the caller gets -32002, `status.stateSaved`
//! turns false, and the write is retried until it succeeds (or a newer state replaces it).
//! A login is answered as soon as the server accepted it, and written right after.

use actix::prelude::*;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;
use tokio::sync::oneshot;

use crate::clock::Clock;
use crate::codes::code;
use crate::config::Config;
use crate::core::backoff::Backoff;
use crate::core::session::*;
use crate::daemon::auth::Provider;
use crate::daemon::hub::{Hub, SessionPart};
use crate::daemon::link::{Link, LinkControl, LinkEvent, LinkReconfigure, LinkReply, LinkRequest};
use crate::daemon::messages::*;
use crate::daemon::store::{Health, Store};
use crate::logging::LogControl;
use crate::proto::api::{AuthError, AuthStatus, Event};

/// The Session actor.
pub struct Session {
    machine: SessionMachine,
    link: Link,
    hub: Rc<Hub>,
    clock: Clock,
    store: Store,
    log: LogControl,
    callers: HashMap<CallerId, oneshot::Sender<Result<Reply, Fail>>>,
    next_caller: CallerId,
    timers: HashMap<Timer, SpawnHandle>,
    /// The state file holds the latest state (the store retries failed writes).
    saved_ok: bool,
    /// A profile pushed for the user being logged in before the login's answer was
    /// processed (the answer and the pushes after it take different paths here):
    /// published once the login holds, dropped if it fails.
    early_info: Option<crate::proto::profile::ProfileJson>,
    /// Writes of the state file: how many were asked for, the last one that ends the
    /// login, the highest one known on disk, the highest one whose first attempt has an
    /// outcome.
    writes: u64,
    durable: u64,
    written: u64,
    settled: u64,
    /// A caller waiting for an answer depends on the writes made while it waited.
    depends: HashMap<CallerId, u64>,
    /// Answers held until the write they depend on has an outcome.
    held: Vec<(CallerId, u64, Result<Reply, Fail>)>,
    /// Why the last write failed (for the answers that depended on it).
    store_error: Option<String>,
    /// Events that follow a write of the state file, published once it has an outcome
    /// (so that a kick is announced only once the file no longer says "logged in").
    queued: std::collections::VecDeque<(u64, Event)>,
    restore: Option<Saved>,
    start_app: Option<u64>,
    /// `auth.user_id`: logged in with the provider at start when nothing was restored.
    start_user: Option<String>,
    /// The UserSig provider (`[auth]`).
    provider: Provider,
    provider_name: &'static str,
    /// Many accounts: every login waits for its slot (`accounts.login_rate`).
    pacer: Option<Rc<crate::daemon::accounts::Pacer>>,
}

/// The machine's settings from the configuration.
pub fn settings(cfg: &Config) -> SessionSettings {
    SessionSettings {
        backoff: Backoff::from_config(&cfg.reconnect),
        login_timeout_ms: cfg.server.login_timeout_ms,
        expiring_lead_secs: cfg.sdk.usersig_expiring_lead_secs,
        provider: cfg.auth.provider != crate::config::AuthProvider::None,
    }
}

/// Why a durable change was not saved, as the caller is told.
fn not_saved(e: &str) -> Fail {
    Fail::new(
        code::STATE_NOT_SAVED,
        format!(
            "done, but the state file could not be written ({}); a restart now would not see it; the daemon keeps trying",
            crate::text::clean(e)
        ),
    )
}

impl Session {
    /// A session actor. `restore` is the saved session to resume at start (already
    /// filtered by `state.restore_session` and the configured app id); the configured
    /// SDKAppID, if any, initialises it; `provider` is the one `[auth]` describes.
    pub fn new(
        cfg: &Config,
        link: Link,
        hub: Rc<Hub>,
        store: Store,
        log: LogControl,
        restore: Option<Saved>,
        provider: Provider,
    ) -> Session {
        Session {
            machine: SessionMachine::new(settings(cfg)),
            link,
            clock: hub.clock(),
            hub,
            store,
            log,
            callers: HashMap::new(),
            next_caller: 1,
            timers: HashMap::new(),
            saved_ok: true,
            early_info: None,
            writes: 0,
            durable: 0,
            written: 0,
            settled: 0,
            depends: HashMap::new(),
            held: Vec::new(),
            store_error: None,
            queued: std::collections::VecDeque::new(),
            restore,
            start_app: cfg.sdk.app_id,
            start_user: cfg.auth.user_id.clone(),
            provider,
            provider_name: cfg.auth.provider.name(),
            pacer: None,
        }
    }

    /// Logins wait for their slot of `pacer` (many accounts).
    pub fn paced(mut self, pacer: Rc<crate::daemon::accounts::Pacer>) -> Session {
        self.pacer = Some(pacer);
        self
    }

    fn input(&mut self, input: SessionInput, ctx: &mut Context<Self>) {
        let actions = self
            .machine
            .handle(input, self.clock.unix_s(), fastrand::f64());
        // The status part goes first so that the snapshot and the events stay in step.
        self.publish();
        for a in actions {
            self.perform(a, ctx);
        }
        if self.early_info.is_some() {
            match self.machine.status() {
                _ if self.machine.online() => {
                    if let Some(info) = self.early_info.take() {
                        if info.is_of(self.machine.user()) {
                            self.emit(Event::SelfInfoJson(info));
                        }
                    }
                }
                crate::codes::LoginStatus::Logout => self.early_info = None,
                // Logging in, or logged in and re-logging in on a new connection.
                _ => {}
            }
        }
        self.publish();
    }

    /// Writes the state file, in order. A write that ends the login (logout, kick,
    /// expiry, unInit) must survive a crash before anyone is told: every caller still
    /// waiting depends on it (its answer is given once the file says so, or says that it
    /// could not), and so do the events that follow. A login is answered at once; its
    /// write follows (a crash in between restarts logged out, never in a wrong state).
    fn persist(&mut self, saved: Option<Saved>, ctx: &mut Context<Self>) {
        self.writes += 1;
        let n = self.writes;
        if saved.is_none() {
            self.durable = n;
            for caller in self.callers.keys() {
                self.depends.insert(*caller, n);
            }
        }
        let done = if saved.is_some() {
            // Nobody waits for this write: the writer is woken once the tasks already
            // woken have run (the login's answer goes out first, not behind a wake-up
            // of the writer thread).
            let done = self.store.persist_soon(saved.as_ref());
            ctx.spawn(
                tokio::task::yield_now()
                    .into_actor(self)
                    .map(|(), act, _| act.store.release_soon()),
            );
            done
        } else {
            self.store.persist(saved.as_ref())
        };
        ctx.spawn(done.into_actor(self).map(move |r, act, _| {
            act.settled = act.settled.max(n);
            match r {
                Ok(()) => act.written = act.written.max(n),
                Err(e) => act.store_error = Some(e.to_string()),
            }
            act.release();
        }));
    }

    /// Gives the held answers whose write has an outcome.
    fn release(&mut self) {
        let (ready, still): (Vec<_>, Vec<_>) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|(_, n, _)| self.written >= *n || self.settled >= *n);
        self.held = still;
        for (caller, n, result) in ready {
            let result = match result {
                Ok(_) if self.written < n => Err(not_saved(
                    self.store_error.as_deref().unwrap_or("the write failed"),
                )),
                other => other,
            };
            if let Some(tx) = self.callers.remove(&caller) {
                let _ = tx.send(result);
            }
        }
        while let Some((n, _)) = self.queued.front() {
            if self.settled < *n && self.written < *n {
                break;
            }
            if let Some((_, e)) = self.queued.pop_front() {
                self.hub.emit(e);
            }
        }
    }

    /// Publishes an event — after the writes of the state file asked for before it.
    fn emit(&mut self, e: Event) {
        let n = self.durable;
        if self.queued.is_empty() && (self.settled >= n || self.written >= n) {
            self.hub.emit(e);
        } else {
            self.queued.push_back((n, e));
        }
    }

    /// Follows the store's health into `status.stateSaved`.
    fn watch_health(
        &mut self,
        mut rx: tokio::sync::watch::Receiver<Health>,
        ctx: &mut Context<Self>,
    ) {
        ctx.spawn(
            async move {
                let changed = rx.changed().await.is_ok();
                let ok = matches!(*rx.borrow_and_update(), Health::Durable);
                (changed, ok, rx)
            }
            .into_actor(self)
            .map(|(changed, ok, rx), act, ctx| {
                if ok && !act.saved_ok {
                    // A retry went through. What was asked for so far is on disk once a
                    // flush says so (the writer may not have seen the newest write yet).
                    let n = act.writes;
                    let flushed = act.store.flush();
                    ctx.spawn(flushed.into_actor(act).map(move |r, act, _| {
                        if r.is_ok() {
                            act.written = act.written.max(n);
                            act.settled = act.settled.max(n);
                            act.release();
                        }
                    }));
                }
                if act.saved_ok != ok {
                    if ok {
                        tracing::info!("the state file holds the latest state again");
                    }
                    act.saved_ok = ok;
                    act.publish();
                }
                if changed {
                    act.watch_health(rx, ctx);
                }
            }),
        );
    }

    fn publish(&self) {
        self.hub.set_session(SessionPart {
            app_id: self.machine.app_id(),
            status: self.machine.status(),
            user: self.machine.user().to_owned(),
            expires_at: self.machine.expires_at(),
            online: self.machine.online(),
            state_saved: self.saved_ok,
            auth: {
                let a = self.machine.auth();
                AuthStatus {
                    provider: self.provider_name.to_owned(),
                    calls: a.calls,
                    renewals: a.renewals,
                    last_error: a.last_error.as_ref().map(|f| AuthError {
                        code: f.code,
                        desc: f.message.clone(),
                    }),
                    next_renew_at: a.next_renew_at,
                }
            },
        });
    }

    /// Answers a caller — once the writes it depends on have an outcome.
    fn reply(&mut self, caller: CallerId, result: Result<Reply, Fail>) {
        if let Some(n) = self.depends.remove(&caller) {
            if self.written < n {
                self.held.push((caller, n, result));
                self.release();
                return;
            }
        }
        if let Some(tx) = self.callers.remove(&caller) {
            let _ = tx.send(result);
        }
    }

    fn perform(&mut self, action: SessionAction, ctx: &mut Context<Self>) {
        match action {
            SessionAction::Reply { caller, result } => self.reply(caller, result),
            SessionAction::SendLogin {
                req,
                user,
                sig,
                auto,
            } => {
                let wait = self.pacer.as_ref().map(|p| p.delay()).unwrap_or_default();
                let pacer = self.pacer.clone();
                // Sent when its turn has come (a Recipient's send queues the message at
                // once: it must not be made before the wait).
                let link = self.link.request.clone();
                async move {
                    // The login pacer bounds nothing in flight.
                    drop(crate::daemon::accounts::Pacer::wait_turn(pacer, wait).await);
                    link.send(LinkRequest::Login { user, sig, auto }).await
                }
                .into_actor(self)
                .map(move |res, act, ctx| {
                    let result = match res {
                        Ok(Ok(LinkReply::LoggedIn { expires_at, info })) => {
                            if info.is_some() {
                                act.hub.set_info(info);
                            }
                            Ok(expires_at)
                        }
                        Ok(Ok(LinkReply::Done)) => Ok(None),
                        Ok(Err(f)) => Err(f),
                        Err(_) => Err(Fail::new(code::DISCONNECTED, "the link is unavailable")),
                    };
                    if let Err(f) = &result {
                        tracing::warn!(code = f.code, "login refused: {}", f.message);
                    }
                    act.input(SessionInput::LoginDone { req, result }, ctx);
                })
                .spawn(ctx);
            }
            SessionAction::SendLogout { req } => {
                self.link
                    .request
                    .send(LinkRequest::Logout)
                    .into_actor(self)
                    .map(move |_, act, ctx| act.input(SessionInput::LogoutDone { req }, ctx))
                    .spawn(ctx);
            }
            SessionAction::FetchTicket {
                fetch,
                user,
                purpose,
            } => {
                let Some(app) = self.machine.app_id() else {
                    return;
                };
                tracing::info!(user = %user, purpose = ?purpose, "asking the UserSig provider for a ticket");
                let clock = self.clock;
                self.provider
                    .fetch(app, user, move || clock.unix_s())
                    .into_actor(self)
                    .map(move |result, act, ctx| {
                        match &result {
                            Ok(t) => tracing::info!(
                                expires_at = t.expires_at,
                                "the UserSig provider gave a ticket"
                            ),
                            Err(f) => tracing::warn!(
                                code = f.code,
                                "the UserSig provider gave no usable ticket: {}",
                                f.message
                            ),
                        }
                        act.input(SessionInput::TicketFetched { fetch, result }, ctx);
                    })
                    .spawn(ctx);
            }
            SessionAction::StartConnection => {
                if let Some(app) = self.machine.app_id() {
                    tracing::info!(sdk_app_id = app, "SDK initialised");
                    self.link.control.do_send(LinkControl::Start(app));
                }
            }
            SessionAction::StopConnection => {
                tracing::info!("SDK un-initialised");
                self.link.control.do_send(LinkControl::Stop);
            }
            SessionAction::SetTimer(t, ms) => {
                if let Some(h) = self.timers.remove(&t) {
                    ctx.cancel_future(h);
                }
                let h = ctx.run_later(
                    Duration::from_millis(ms.min(MAX_TIMER_MS)),
                    move |act, ctx| {
                        act.timers.remove(&t);
                        act.input(SessionInput::TimerFired(t), ctx);
                    },
                );
                self.timers.insert(t, h);
            }
            SessionAction::CancelTimer(t) => {
                if let Some(h) = self.timers.remove(&t) {
                    ctx.cancel_future(h);
                }
            }
            SessionAction::Persist(saved) => self.persist(saved, ctx),
            SessionAction::Emit(e) => {
                match &e {
                    Event::LoginStatusChanged {
                        status,
                        user_id,
                        reason,
                    } => {
                        tracing::info!(status = %status, user = %user_id, reason = %reason, "login status changed")
                    }
                    Event::Relogin {
                        success: false,
                        code,
                        desc,
                        retry_in_ms,
                    } => tracing::warn!(
                        code = ?code,
                        retry_in_ms = ?retry_in_ms,
                        "re-login refused: {}",
                        desc.as_deref().unwrap_or("")
                    ),
                    Event::UserSigRenewFailed {
                        code,
                        desc,
                        retry_in_ms,
                    } => tracing::warn!(
                        code,
                        retry_in_ms = ?retry_in_ms,
                        "UserSig renewal failed: {desc}"
                    ),
                    Event::UserSigRenewed { expires_at } => {
                        tracing::info!(expires_at, "UserSig renewed")
                    }
                    other => tracing::info!(event = other.name(), "event"),
                }
                self.emit(e);
            }
        }
    }

    fn caller(&mut self) -> (CallerId, oneshot::Receiver<Result<Reply, Fail>>) {
        let id = self.next_caller;
        self.next_caller += 1;
        let (tx, rx) = oneshot::channel();
        self.callers.insert(id, tx);
        (id, rx)
    }
}

impl Actor for Session {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let health = self.store.health();
        self.watch_health(health, ctx);
        self.publish();
        if let Some(saved) = self.restore.take() {
            let expires_at = crate::usersig::decode(&saved.sig)
                .ok()
                .map(|t| t.expires_at());
            tracing::info!(user = %saved.user, "resuming the saved session");
            self.input(SessionInput::Restore { saved, expires_at }, ctx);
        } else if let Some(app_id) = self.start_app {
            let (caller, _rx) = self.caller();
            self.input(SessionInput::Init { caller, app_id }, ctx);
            if let Some(user) = self.start_user.take() {
                tracing::info!(user = %user, "logging in with the UserSig provider (auth.user_id)");
                self.input(SessionInput::StartLogin { user }, ctx);
            }
        }
    }
}

impl Handler<SessionCall> for Session {
    type Result = ResponseFuture<Result<Reply, Fail>>;

    fn handle(&mut self, msg: SessionCall, ctx: &mut Context<Self>) -> Self::Result {
        let (caller, rx) = self.caller();
        let input = match msg {
            SessionCall::Init { app_id, log_level } => {
                if let Some(l) = log_level {
                    if let Err(e) = self.log.set_level(l) {
                        tracing::warn!("cannot change the log level: {e}");
                    }
                }
                SessionInput::Init { caller, app_id }
            }
            SessionCall::UnInit => SessionInput::UnInit { caller },
            SessionCall::Login { user, sig } => {
                let expires_at = sig
                    .as_deref()
                    .and_then(|s| crate::usersig::decode(s).ok())
                    .map(|t| t.expires_at());
                SessionInput::Login {
                    caller,
                    user,
                    sig,
                    expires_at,
                }
            }
            SessionCall::Logout => SessionInput::Logout { caller },
            SessionCall::Renew => SessionInput::Renew { caller },
        };
        self.input(input, ctx);
        Box::pin(async move {
            rx.await
                .unwrap_or_else(|_| Err(Fail::internal("the session dropped the call")))
        })
    }
}

impl Handler<LinkEvent> for Session {
    type Result = ();
    fn handle(&mut self, msg: LinkEvent, ctx: &mut Context<Self>) {
        match msg {
            LinkEvent::Up => self.input(SessionInput::LinkUp, ctx),
            LinkEvent::Down => {
                // What the lost connection pushed early is not carried to the next one.
                self.early_info = None;
                self.input(SessionInput::LinkDown, ctx);
            }
            LinkEvent::Kicked { why } => {
                tracing::warn!("kicked offline: {why}");
                self.input(SessionInput::Kicked, ctx);
            }
            LinkEvent::SigExpired => self.input(SessionInput::SigExpired, ctx),
            LinkEvent::SelfInfo(infos) => {
                // The pushes of one read from the server: one time for their events.
                let hub = self.hub.clone();
                hub.at_one_time(|| {
                    for info in infos {
                        if !info.is_of(self.machine.user()) {
                        } else if self.machine.online() {
                            // The hub keeps the profile of the event it publishes
                            // (getSelfInfo).
                            self.emit(Event::SelfInfoJson(info));
                        } else {
                            // A login (or a re-login) whose answer is still on its way.
                            self.early_info = Some(info);
                        }
                    }
                });
            }
        }
    }
}

impl Handler<ReconnectNow> for Session {
    type Result = ();
    fn handle(&mut self, _: ReconnectNow, _: &mut Context<Self>) {
        self.link.control.do_send(LinkControl::ReconnectNow);
    }
}

impl Handler<Reconfigure> for Session {
    type Result = ();
    fn handle(&mut self, msg: Reconfigure, _: &mut Context<Self>) {
        match Provider::from_config(&msg.0.auth) {
            Ok(p) => {
                self.provider = p;
                self.provider_name = msg.0.auth.provider.name();
            }
            Err(e) => tracing::warn!("keeping the UserSig provider as it was: {e}"),
        }
        self.machine.reconfigure(settings(&msg.0));
        self.publish();
        self.link.reconfigure.do_send(LinkReconfigure(msg.0));
    }
}

impl Handler<Retire> for Session {
    type Result = ResponseActFuture<Self, ()>;

    /// The account is removed: timers stop, callers still waiting are told, the link
    /// closes and stops, then the Session stops.
    fn handle(&mut self, _: Retire, ctx: &mut Context<Self>) -> Self::Result {
        for (_, h) in self.timers.drain() {
            ctx.cancel_future(h);
        }
        for (_, tx) in self.callers.drain() {
            let _ = tx.send(Err(Fail::new(code::DISCONNECTED, "the account is removed")));
        }
        let close = self.link.close.send(crate::daemon::link::CloseLink);
        let flush = self.store.close();
        Box::pin(
            async move {
                let _ = close.await;
                let _ = flush.await;
            }
            .into_actor(self)
            .map(|_, _, ctx| ctx.stop()),
        )
    }
}

impl Handler<Alive> for Session {
    type Result = ();
    fn handle(&mut self, _: Alive, _: &mut Context<Self>) {}
}

impl Handler<Shutdown> for Session {
    type Result = ResponseActFuture<Self, ()>;

    /// The daemon stops: callers still waiting are told so, the link closes cleanly, and
    /// the saved session stays for the restart.
    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) -> Self::Result {
        for (_, h) in self.timers.drain() {
            ctx.cancel_future(h);
        }
        for (_, tx) in self.callers.drain() {
            let _ = tx.send(Err(Fail::new(code::DISCONNECTED, "imlinkd is stopping")));
        }
        let close = self.link.close.send(crate::daemon::link::CloseLink);
        let flush = self.store.close();
        Box::pin(
            async move {
                let _ = close.await;
                if let Err(e) = flush.await {
                    tracing::error!("{e}: the last change of the session may be lost");
                }
            }
            .into_actor(self),
        )
    }
}
