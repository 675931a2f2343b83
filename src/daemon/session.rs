//! The Session actor: drives [`SessionMachine`], performs its actions (requests to the
//! Connection, timers, persistence, events, answers to callers), keeps the profile and the
//! server-time estimate.

use actix::prelude::*;
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::oneshot;

use crate::codes::code;
use crate::config::Config;
use crate::core::backoff::Backoff;
use crate::core::session::*;
use crate::daemon::connection::Connection;
use crate::daemon::events::EventLog;
use crate::daemon::messages::*;
use crate::daemon::store::Store;
use crate::logging::LogControl;
use crate::proto::api::Event;
use crate::proto::ws::{Command, Empty, LoginBody, LoginResult, Push};
use crate::proto::UserFullInfo;

/// The Session actor.
pub struct Session {
    machine: SessionMachine,
    conn: Addr<Connection>,
    events: Addr<EventLog>,
    store: Store,
    log: LogControl,
    callers: HashMap<CallerId, oneshot::Sender<Result<Reply, Fail>>>,
    next_caller: CallerId,
    timers: HashMap<Timer, SpawnHandle>,
    info: Option<UserFullInfo>,
    /// Server clock minus local clock, ms.
    server_offset: Option<i64>,
    published: Option<SessionPart>,
    restore: Option<Saved>,
    start_app: Option<u64>,
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The machine's settings from the configuration.
pub fn settings(cfg: &Config) -> SessionSettings {
    SessionSettings {
        backoff: Backoff::from_config(&cfg.reconnect),
        login_timeout_ms: cfg.server.login_timeout_ms,
        expiring_lead_secs: cfg.sdk.usersig_expiring_lead_secs,
    }
}

/// Is this a valid UserID: `[A-Za-z0-9_-]{1,32}`?
pub fn valid_user_id(u: &str) -> bool {
    (1..=32).contains(&u.len())
        && u.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl Session {
    /// A session actor. `restore` is the saved session to resume at start (already
    /// filtered by `state.restore_session` and the configured app id); `start_app` the
    /// configured SDKAppID to initialise with.
    pub fn new(
        cfg: &Config,
        conn: Addr<Connection>,
        events: Addr<EventLog>,
        store: Store,
        log: LogControl,
        restore: Option<Saved>,
    ) -> Session {
        Session {
            machine: SessionMachine::new(settings(cfg)),
            conn,
            events,
            store,
            log,
            callers: HashMap::new(),
            next_caller: 1,
            timers: HashMap::new(),
            info: None,
            server_offset: None,
            published: None,
            restore,
            start_app: cfg.sdk.app_id,
        }
    }

    fn input(&mut self, input: SessionInput, ctx: &mut Context<Self>) {
        let actions = self
            .machine
            .handle(input, crate::usersig::now_unix(), fastrand::f64());
        // The status part goes first so that the snapshot and the events stay in step.
        self.publish_state();
        for a in actions {
            self.perform(a, ctx);
        }
        if self.machine.user().is_empty() {
            self.info = None;
        }
    }

    fn publish_state(&mut self) {
        let part = SessionPart {
            app_id: self.machine.app_id(),
            status: self.machine.status(),
            user: self.machine.user().to_owned(),
            expires_at: self.machine.expires_at(),
        };
        if self.published.as_ref() != Some(&part) {
            self.published = Some(part.clone());
            self.events.do_send(Publish::Session(part));
        }
    }

    fn perform(&mut self, action: SessionAction, ctx: &mut Context<Self>) {
        match action {
            SessionAction::Reply { caller, result } => {
                if let Some(tx) = self.callers.remove(&caller) {
                    let _ = tx.send(result);
                }
            }
            SessionAction::SendLogin {
                req,
                user,
                sig,
                auto,
            } => {
                tracing::info!(user = %user, auto, "sending login");
                let cmd = Command::Login(LoginBody {
                    user_id: user,
                    user_sig: sig,
                    auto,
                });
                self.conn
                    .send(SendRequest(cmd))
                    .into_actor(self)
                    .map(move |res, act, ctx| {
                        let result = match res {
                            Ok(Ok(resp)) if resp.code == 0 => {
                                match serde_json::from_value::<LoginResult>(resp.body) {
                                    Ok(r) => {
                                        act.set_server_time(r.server_time);
                                        act.info = Some(r.info);
                                        Ok(Some(r.user_sig_expire_at))
                                    }
                                    Err(_) => Ok(None),
                                }
                            }
                            Ok(Ok(resp)) => Err(Fail::new(resp.code, resp.desc)),
                            Ok(Err(f)) => Err(f),
                            Err(_) => Err(Fail::new(
                                code::DISCONNECTED,
                                "connection actor unavailable",
                            )),
                        };
                        if let Err(f) = &result {
                            tracing::warn!(code = f.code, "login refused: {}", f.desc);
                        }
                        act.input(SessionInput::LoginDone { req, result }, ctx);
                    })
                    .spawn(ctx);
            }
            SessionAction::SendLogout { req } => {
                self.conn
                    .send(SendRequest(Command::Logout(Empty {})))
                    .into_actor(self)
                    .map(move |_, act, ctx| act.input(SessionInput::LogoutDone { req }, ctx))
                    .spawn(ctx);
            }
            SessionAction::StartConnection => {
                if let Some(app) = self.machine.app_id() {
                    tracing::info!(sdk_app_id = app, "SDK initialised");
                    self.conn.do_send(StartLink(app));
                }
            }
            SessionAction::StopConnection => {
                tracing::info!("SDK un-initialised");
                self.conn.do_send(StopLink);
            }
            SessionAction::SetTimer(t, ms) => {
                if let Some(h) = self.timers.remove(&t) {
                    ctx.cancel_future(h);
                }
                let h = ctx.run_later(Duration::from_millis(ms), move |act, ctx| {
                    act.timers.remove(&t);
                    act.input(SessionInput::TimerFired(t), ctx);
                });
                self.timers.insert(t, h);
            }
            SessionAction::CancelTimer(t) => {
                if let Some(h) = self.timers.remove(&t) {
                    ctx.cancel_future(h);
                }
            }
            SessionAction::Persist(saved) => {
                if let Err(e) = self.store.save(saved.as_ref()) {
                    tracing::error!("{e}");
                }
            }
            SessionAction::Emit(e) => {
                if let Event::LoginStatusChanged {
                    status,
                    user_id,
                    reason,
                } = &e
                {
                    tracing::info!(status = %status, user = %user_id, reason = %reason, "login status changed");
                } else {
                    tracing::info!(event = e.name(), "event");
                }
                self.events.do_send(Publish::Event(e));
            }
        }
    }

    fn set_server_time(&mut self, server_ms: i64) {
        self.server_offset = Some(server_ms - unix_ms());
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
        self.publish_state();
        if let Some(saved) = self.restore.take() {
            let expires_at = crate::usersig::decode(&saved.sig)
                .ok()
                .map(|t| t.expires_at());
            tracing::info!(user = %saved.user, "resuming the saved session");
            self.input(SessionInput::Restore { saved, expires_at }, ctx);
        } else if let Some(app_id) = self.start_app {
            let (caller, _rx) = self.caller();
            self.input(SessionInput::Init { caller, app_id }, ctx);
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
                let expires_at = crate::usersig::decode(&sig).ok().map(|t| t.expires_at());
                SessionInput::Login {
                    caller,
                    user,
                    sig,
                    expires_at,
                }
            }
            SessionCall::Logout => SessionInput::Logout { caller },
        };
        self.input(input, ctx);
        Box::pin(async move {
            rx.await.unwrap_or_else(|_| {
                Err(Fail::new(
                    code::INTERNAL_ERROR,
                    "the session dropped the call",
                ))
            })
        })
    }
}

impl Handler<LinkUp> for Session {
    type Result = ();
    fn handle(&mut self, msg: LinkUp, ctx: &mut Context<Self>) {
        self.set_server_time(msg.0.server_time);
        self.input(SessionInput::LinkUp, ctx);
    }
}

impl Handler<LinkDown> for Session {
    type Result = ();
    fn handle(&mut self, _: LinkDown, ctx: &mut Context<Self>) {
        self.input(SessionInput::LinkDown, ctx);
    }
}

impl Handler<ServerPush> for Session {
    type Result = ();
    fn handle(&mut self, msg: ServerPush, ctx: &mut Context<Self>) {
        match msg.0 {
            Push::KickedOffline(k) => {
                tracing::warn!(reason = ?k.reason, by = ?k.platform, "kicked offline");
                self.input(SessionInput::Kicked, ctx);
            }
            Push::UserSigExpired(_) => self.input(SessionInput::SigExpired, ctx),
            Push::SelfInfoUpdated(b) => {
                if self.machine.online() && b.info.user_id == self.machine.user() {
                    self.info = Some(b.info.clone());
                    self.events
                        .do_send(Publish::Event(Event::SelfInfoUpdated { info: b.info }));
                }
            }
            Push::Hello(_) => {}
        }
    }
}

impl Handler<GetSelfInfo> for Session {
    type Result = Result<UserFullInfo, Fail>;
    fn handle(&mut self, _: GetSelfInfo, _: &mut Context<Self>) -> Self::Result {
        match (&self.info, self.machine.status()) {
            (Some(i), crate::codes::LoginStatus::Logined) => Ok(i.clone()),
            _ => Err(Fail::new(code::NOT_LOGGED_IN, "not logged in")),
        }
    }
}

impl Handler<GetServerTime> for Session {
    type Result = Result<i64, Fail>;
    fn handle(&mut self, _: GetServerTime, _: &mut Context<Self>) -> Self::Result {
        match self.server_offset {
            Some(offset) => Ok((unix_ms() + offset) / 1000),
            None => Err(Fail::new(
                code::DISCONNECTED,
                "the server time is not known yet: no connection so far",
            )),
        }
    }
}

impl Handler<ReconnectNow> for Session {
    type Result = ();
    fn handle(&mut self, msg: ReconnectNow, _: &mut Context<Self>) {
        self.conn.do_send(msg);
    }
}

impl Handler<Reconfigure> for Session {
    type Result = ();
    fn handle(&mut self, msg: Reconfigure, _: &mut Context<Self>) {
        self.machine.reconfigure(settings(&msg.0));
    }
}
