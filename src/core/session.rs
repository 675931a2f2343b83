//! The login session state machine: LOGOUT / LOGINING / LOGINED.
//!
//! Pure: [`SessionMachine::handle`] takes an input, the wall-clock time and a random number
//! for jitter, changes the state and returns the actions for the Session actor to perform.
//! It owns every login decision: when to log in again by itself, when never to (kick,
//! expired ticket), what each caller is answered, what is persisted and which events fire.

use crate::codes::{code, LoginStatus};
use crate::core::backoff::Backoff;
use crate::proto::api::Event;

/// Identifies a waiting API caller.
pub type CallerId = u64;
/// Identifies a request the session sent to the server.
pub type ReqId = u64;

/// A failure answered to a caller: the API's one error type (Tencent code, one line).
pub type Fail = crate::proto::rpc::RpcError;

/// A successful answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// `{}`.
    Done,
    /// `{"repeatLogin": true}`.
    RepeatLogin,
}

/// A login session as persisted (`session.json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    /// The SDKAppID.
    pub app_id: u64,
    /// The UserID.
    pub user: String,
    /// The UserSig.
    pub sig: String,
}

/// The timers the machine uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// An explicit login gives up waiting for a connection.
    LoginDeadline,
    /// The next automatic re-login attempt.
    Relogin,
    /// Time to emit `onUserSigExpiring`.
    Expiring,
    /// The ticket's lifetime is over.
    Expiry,
}

/// An input to the session machine.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionInput {
    /// `initSDK`.
    Init {
        /// Who asked.
        caller: CallerId,
        /// The SDKAppID.
        app_id: u64,
    },
    /// `unInitSDK`.
    UnInit {
        /// Who asked.
        caller: CallerId,
    },
    /// `login`. The ticket's expiry, when it could be decoded, is `expires_at`.
    Login {
        /// Who asked.
        caller: CallerId,
        /// The UserID (already validated).
        user: String,
        /// The UserSig (non-empty).
        sig: String,
        /// `TLS.time + TLS.expire`, when decodable.
        expires_at: Option<i64>,
    },
    /// `logout`.
    Logout {
        /// Who asked.
        caller: CallerId,
    },
    /// Resume a saved session at start.
    Restore {
        /// The saved session.
        saved: Saved,
        /// Its ticket's expiry, when decodable.
        expires_at: Option<i64>,
    },
    /// The connection is up.
    LinkUp,
    /// The connection is down.
    LinkDown,
    /// The server answered a login.
    LoginDone {
        /// Which request.
        req: ReqId,
        /// Success with the ticket's expiry per the server, or the failure.
        result: Result<Option<i64>, Fail>,
    },
    /// The server answered a logout (or it failed: the outcome is the same).
    LogoutDone {
        /// Which request.
        req: ReqId,
    },
    /// Push `kickedOffline`.
    Kicked,
    /// Push `userSigExpired`.
    SigExpired,
    /// A timer fired.
    TimerFired(Timer),
}

/// What the Session actor must do.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionAction {
    /// Answer a caller.
    Reply {
        /// Who.
        caller: CallerId,
        /// What.
        result: Result<Reply, Fail>,
    },
    /// Send `login` to the server.
    SendLogin {
        /// The request id to report back in `LoginDone`.
        req: ReqId,
        /// The UserID.
        user: String,
        /// The UserSig.
        sig: String,
        /// An automatic re-login (after reconnect or restore).
        auto: bool,
    },
    /// Send `logout` to the server.
    SendLogout {
        /// The request id to report back in `LogoutDone`.
        req: ReqId,
    },
    /// Start connecting (the SDK was initialised).
    StartConnection,
    /// Close the connection and stop reconnecting.
    StopConnection,
    /// Arm a timer (replaces the same timer).
    SetTimer(Timer, u64),
    /// Disarm a timer.
    CancelTimer(Timer),
    /// Write the session file (`None`: clear the logged-in session).
    Persist(Option<Saved>),
    /// Publish an event.
    Emit(Event),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// Somebody called `login`.
    Explicit,
    /// A saved session resumed at start.
    Restore,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Renew {
    sig: String,
    expires_at: Option<i64>,
    req: ReqId,
    callers: Vec<CallerId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Logout,
    Logining {
        user: String,
        sig: String,
        expires_at: Option<i64>,
        origin: Origin,
        callers: Vec<CallerId>,
        inflight: Option<ReqId>,
    },
    Logined {
        user: String,
        sig: String,
        expires_at: Option<i64>,
        /// The server holds our login on the current connection.
        online: bool,
        /// An automatic re-login in flight.
        inflight: Option<ReqId>,
        /// A ticket renewal in flight.
        renew: Option<Renew>,
    },
    LoggingOut {
        user: String,
        req: ReqId,
        callers: Vec<CallerId>,
    },
}

/// The longest a timer is armed for (a day); a later deadline is re-armed when it fires.
pub const MAX_TIMER_MS: u64 = 24 * 3600 * 1000;

/// Settings of the machine.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SessionSettings {
    /// Backoff between automatic re-login attempts.
    pub backoff: Backoff,
    /// How long an explicit login waits for a connection.
    pub login_timeout_ms: u64,
    /// How long before expiry `onUserSigExpiring` fires.
    pub expiring_lead_secs: u64,
}

/// The session machine.
#[derive(Debug, Clone)]
pub struct SessionMachine {
    settings: SessionSettings,
    app_id: Option<u64>,
    link_up: bool,
    phase: Phase,
    next_req: ReqId,
    relogin_failures: u32,
    uninit_callers: Vec<CallerId>,
}

/// Refusals of an automatic re-login that mean the ticket is dead: retrying is the
/// "infinite login loop" the SDK warns about.
fn is_ticket_refusal(c: i32) -> bool {
    matches!(
        c,
        code::USERSIG_EXPIRED
            | code::USERSIG_CHECK_FAILED
            | code::USERSIG_INVALIDATED
            | code::USERSIG_USERID_MISMATCH
            | code::USERSIG_SDKAPPID_MISMATCH
            | code::USERSIG_EXPIRED_LOCAL
            | code::INVALID_USERID
            | code::INVALID_PARAMETERS
    )
}

/// Answers every caller in `callers` with the same result.
fn reply_all(
    out: &mut Vec<SessionAction>,
    callers: impl IntoIterator<Item = CallerId>,
    result: Result<Reply, Fail>,
) {
    for caller in callers {
        out.push(SessionAction::Reply {
            caller,
            result: result.clone(),
        });
    }
}

fn status_event(status: LoginStatus, user: &str, reason: &str) -> SessionAction {
    SessionAction::Emit(Event::LoginStatusChanged {
        status,
        user_id: user.to_owned(),
        reason: reason.to_owned(),
    })
}

impl SessionMachine {
    /// A machine logged out and not initialised.
    pub fn new(settings: SessionSettings) -> SessionMachine {
        SessionMachine {
            settings,
            app_id: None,
            link_up: false,
            phase: Phase::Logout,
            next_req: 1,
            relogin_failures: 0,
            uninit_callers: Vec::new(),
        }
    }

    /// Replaces the settings (SIGHUP).
    pub fn reconfigure(&mut self, settings: SessionSettings) {
        self.settings = settings;
    }

    /// The initialised SDKAppID.
    pub fn app_id(&self) -> Option<u64> {
        self.app_id
    }

    /// `getLoginStatus`.
    pub fn status(&self) -> LoginStatus {
        match self.phase {
            Phase::Logout => LoginStatus::Logout,
            Phase::Logining { .. } => LoginStatus::Logining,
            Phase::Logined { .. } | Phase::LoggingOut { .. } => LoginStatus::Logined,
        }
    }

    /// `getLoginUser`: the user logged in or logging in, `""` when nobody.
    pub fn user(&self) -> &str {
        match &self.phase {
            Phase::Logout => "",
            Phase::Logining { user, .. }
            | Phase::Logined { user, .. }
            | Phase::LoggingOut { user, .. } => user,
        }
    }

    /// The current ticket's expiry.
    pub fn expires_at(&self) -> Option<i64> {
        match &self.phase {
            Phase::Logining { expires_at, .. } | Phase::Logined { expires_at, .. } => *expires_at,
            _ => None,
        }
    }

    /// True while the server holds our login on the live connection.
    pub fn online(&self) -> bool {
        matches!(self.phase, Phase::Logined { online: true, .. })
    }

    fn req(&mut self) -> ReqId {
        let r = self.next_req;
        self.next_req += 1;
        r
    }

    /// Handles one input at wall-clock `now_s` (unix seconds); `rand` in `[0,1)` is jitter.
    pub fn handle(&mut self, input: SessionInput, now_s: i64, rand: f64) -> Vec<SessionAction> {
        let mut out = Vec::new();
        match input {
            SessionInput::Init { caller, app_id } => self.on_init(caller, app_id, &mut out),
            SessionInput::UnInit { caller } => self.on_uninit(caller, &mut out),
            SessionInput::Login {
                caller,
                user,
                sig,
                expires_at,
            } => self.on_login(caller, user, sig, expires_at, now_s, &mut out),
            SessionInput::Logout { caller } => self.on_logout(Some(caller), &mut out),
            SessionInput::Restore { saved, expires_at } => {
                self.on_restore(saved, expires_at, now_s, &mut out)
            }
            SessionInput::LinkUp => {
                self.link_up = true;
                self.try_send_login(now_s, &mut out);
            }
            SessionInput::LinkDown => self.on_link_down(&mut out),
            SessionInput::LoginDone { req, result } => {
                self.on_login_done(req, result, now_s, rand, &mut out)
            }
            SessionInput::LogoutDone { req } => {
                if matches!(&self.phase, Phase::LoggingOut { req: r, .. } if *r == req) {
                    self.finish_logout(&mut out);
                }
            }
            SessionInput::Kicked => self.on_kicked(&mut out),
            SessionInput::SigExpired => self.on_sig_expired(&mut out),
            SessionInput::TimerFired(t) => self.on_timer(t, now_s, &mut out),
        }
        out
    }

    fn on_init(&mut self, caller: CallerId, app_id: u64, out: &mut Vec<SessionAction>) {
        match self.app_id {
            None => {
                self.app_id = Some(app_id);
                out.push(SessionAction::StartConnection);
                out.push(SessionAction::Reply {
                    caller,
                    result: Ok(Reply::Done),
                });
            }
            Some(a) if a == app_id => out.push(SessionAction::Reply {
                caller,
                result: Ok(Reply::Done),
            }),
            Some(a) => out.push(SessionAction::Reply {
                caller,
                result: Err(Fail::new(
                    code::INVALID_PARAMETERS,
                    format!("already initialised with SDKAppID {a}; call unInitSDK first"),
                )),
            }),
        }
    }

    fn on_uninit(&mut self, caller: CallerId, out: &mut Vec<SessionAction>) {
        if self.app_id.is_none() {
            out.push(SessionAction::Reply {
                caller,
                result: Ok(Reply::Done),
            });
            return;
        }
        self.uninit_callers.push(caller);
        match self.phase {
            Phase::LoggingOut { .. } => {}
            Phase::Logout => self.finish_uninit(out),
            _ => self.on_logout(None, out),
        }
    }

    fn finish_uninit(&mut self, out: &mut Vec<SessionAction>) {
        self.app_id = None;
        self.link_up = false;
        out.push(SessionAction::StopConnection);
        reply_all(
            out,
            std::mem::take(&mut self.uninit_callers),
            Ok(Reply::Done),
        );
    }

    fn on_login(
        &mut self,
        caller: CallerId,
        user: String,
        sig: String,
        expires_at: Option<i64>,
        now_s: i64,
        out: &mut Vec<SessionAction>,
    ) {
        let fail = |code: i32, desc: &str| SessionAction::Reply {
            caller,
            result: Err(Fail::new(code, desc)),
        };
        let Some(app_id) = self.app_id else {
            out.push(fail(
                code::SDK_NOT_INITIALIZED,
                "SDK not initialised: call initSDK first",
            ));
            return;
        };
        if let Some(exp) = expires_at {
            if now_s > exp {
                out.push(fail(
                    code::USERSIG_EXPIRED_LOCAL,
                    &format!("UserSig expired at {exp}; make a new one"),
                ));
                return;
            }
        }
        match &mut self.phase {
            Phase::Logining { .. } => out.push(fail(
                code::LOGIN_IN_PROGRESS,
                "a login is already in progress",
            )),
            Phase::LoggingOut { .. } => {
                out.push(fail(code::LOGOUT_IN_PROGRESS, "a logout is in progress"))
            }
            Phase::Logined {
                user: cur,
                sig: cur_sig,
                expires_at: cur_exp,
                online,
                renew,
                ..
            } if *cur == user => {
                if *cur_sig == sig {
                    out.push(SessionAction::Reply {
                        caller,
                        result: Ok(Reply::RepeatLogin),
                    });
                } else if renew.is_some() {
                    out.push(fail(
                        code::LOGIN_IN_PROGRESS,
                        "a ticket renewal is already in progress",
                    ));
                } else if *online && self.link_up {
                    let req = self.next_req;
                    self.next_req += 1;
                    *renew = Some(Renew {
                        sig: sig.clone(),
                        expires_at,
                        req,
                        callers: vec![caller],
                    });
                    out.push(SessionAction::SendLogin {
                        req,
                        user,
                        sig,
                        auto: false,
                    });
                } else {
                    // Offline: the new ticket is used at the next automatic re-login.
                    *cur_sig = sig.clone();
                    *cur_exp = expires_at;
                    out.push(SessionAction::Persist(Some(Saved { app_id, user, sig })));
                    self.arm_expiry_timers(now_s, out);
                    out.push(SessionAction::Reply {
                        caller,
                        result: Ok(Reply::RepeatLogin),
                    });
                }
            }
            Phase::Logined { user: old, .. } => {
                // Another user: the old one is logged out implicitly (the server ends the
                // old login when the new one arrives on the same connection).
                let old = old.clone();
                out.push(SessionAction::Persist(None));
                self.cancel_all_timers(out);
                out.push(status_event(LoginStatus::Logout, &old, "switchUser"));
                self.begin_explicit(caller, user, sig, expires_at, now_s, out);
            }
            Phase::Logout => self.begin_explicit(caller, user, sig, expires_at, now_s, out),
        }
    }

    fn begin_explicit(
        &mut self,
        caller: CallerId,
        user: String,
        sig: String,
        expires_at: Option<i64>,
        now_s: i64,
        out: &mut Vec<SessionAction>,
    ) {
        out.push(status_event(LoginStatus::Logining, &user, "login"));
        self.phase = Phase::Logining {
            user,
            sig,
            expires_at,
            origin: Origin::Explicit,
            callers: vec![caller],
            inflight: None,
        };
        self.relogin_failures = 0;
        out.push(SessionAction::SetTimer(
            Timer::LoginDeadline,
            self.settings.login_timeout_ms,
        ));
        self.try_send_login(now_s, out);
    }

    fn on_restore(
        &mut self,
        saved: Saved,
        expires_at: Option<i64>,
        now_s: i64,
        out: &mut Vec<SessionAction>,
    ) {
        if self.phase != Phase::Logout {
            return;
        }
        if self.app_id.is_none() {
            self.app_id = Some(saved.app_id);
            out.push(SessionAction::StartConnection);
        }
        if expires_at.is_some_and(|e| now_s > e) {
            // An expired ticket is never sent.
            out.push(SessionAction::Persist(None));
            out.push(SessionAction::Emit(Event::UserSigExpired {}));
            return;
        }
        out.push(status_event(LoginStatus::Logining, &saved.user, "restore"));
        self.phase = Phase::Logining {
            user: saved.user,
            sig: saved.sig,
            expires_at,
            origin: Origin::Restore,
            callers: Vec::new(),
            inflight: None,
        };
        self.try_send_login(now_s, out);
    }

    /// Sends the login the current phase needs, if the link is up and none is in flight.
    fn try_send_login(&mut self, now_s: i64, out: &mut Vec<SessionAction>) {
        if !self.link_up {
            return;
        }
        let expired = self.expires_at().is_some_and(|e| now_s > e);
        let auto = match &self.phase {
            Phase::Logining {
                inflight: None,
                origin,
                ..
            } => *origin == Origin::Restore,
            Phase::Logined {
                online: false,
                inflight: None,
                ..
            } => true,
            _ => return,
        };
        if auto && expired {
            self.end_session(
                LoginStatus::Logout,
                "userSigExpired",
                Event::UserSigExpired {},
                code::USERSIG_EXPIRED_LOCAL,
                out,
            );
            return;
        }
        let req = self.req();
        match &mut self.phase {
            Phase::Logining {
                user,
                sig,
                inflight,
                ..
            }
            | Phase::Logined {
                user,
                sig,
                inflight,
                ..
            } => {
                *inflight = Some(req);
                out.push(SessionAction::SendLogin {
                    req,
                    user: user.clone(),
                    sig: sig.clone(),
                    auto,
                });
            }
            _ => {}
        }
    }

    fn on_link_down(&mut self, out: &mut Vec<SessionAction>) {
        self.link_up = false;
        match &mut self.phase {
            Phase::Logining { inflight, .. } => *inflight = None,
            Phase::Logined {
                online,
                inflight,
                renew,
                ..
            } => {
                *online = false;
                *inflight = None;
                if let Some(r) = renew.take() {
                    reply_all(
                        out,
                        r.callers,
                        Err(Fail::new(
                            code::DISCONNECTED,
                            "connection lost during the ticket renewal",
                        )),
                    );
                }
                out.push(SessionAction::CancelTimer(Timer::Relogin));
            }
            // The logout cannot be confirmed; the login is over for us either way.
            Phase::LoggingOut { .. } => self.finish_logout(out),
            Phase::Logout => {}
        }
    }

    fn on_login_done(
        &mut self,
        req: ReqId,
        result: Result<Option<i64>, Fail>,
        now_s: i64,
        rand: f64,
        out: &mut Vec<SessionAction>,
    ) {
        let Some(app_id) = self.app_id else { return };
        match &mut self.phase {
            Phase::Logining {
                user,
                sig,
                expires_at,
                origin,
                callers,
                inflight,
            } if *inflight == Some(req) => {
                let origin = *origin;
                match result {
                    Ok(server_exp) => {
                        let (user, sig) = (user.clone(), sig.clone());
                        let expires_at = server_exp.or(*expires_at);
                        let callers = std::mem::take(callers);
                        out.push(SessionAction::CancelTimer(Timer::LoginDeadline));
                        out.push(SessionAction::Persist(Some(Saved {
                            app_id,
                            user: user.clone(),
                            sig: sig.clone(),
                        })));
                        out.push(status_event(
                            LoginStatus::Logined,
                            &user,
                            if origin == Origin::Restore {
                                "restore"
                            } else {
                                "login"
                            },
                        ));
                        reply_all(out, callers, Ok(Reply::Done));
                        self.phase = Phase::Logined {
                            user,
                            sig,
                            expires_at,
                            online: true,
                            inflight: None,
                            renew: None,
                        };
                        self.relogin_failures = 0;
                        self.arm_expiry_timers(now_s, out);
                    }
                    Err(f) if origin == Origin::Explicit => {
                        let user = user.clone();
                        let callers = std::mem::take(callers);
                        out.push(SessionAction::CancelTimer(Timer::LoginDeadline));
                        if f.code == code::REQUEST_TIMEOUT && self.link_up {
                            // The server may still act on the late request: make sure it
                            // does not keep a login we gave up on.
                            let r = self.req();
                            out.push(SessionAction::SendLogout { req: r });
                        }
                        out.push(status_event(LoginStatus::Logout, &user, "loginFailed"));
                        reply_all(out, callers, Err(f.clone()));
                        self.phase = Phase::Logout;
                    }
                    Err(f) => {
                        *inflight = None;
                        self.auto_login_refused(f, rand, out);
                    }
                }
            }
            Phase::Logined {
                inflight, online, ..
            } if *inflight == Some(req) => match result {
                Ok(_) => {
                    *inflight = None;
                    *online = true;
                    self.relogin_failures = 0;
                    out.push(SessionAction::Emit(Event::Relogin {
                        success: true,
                        code: None,
                        desc: None,
                        retry_in_ms: None,
                    }));
                }
                Err(f) => {
                    *inflight = None;
                    self.auto_login_refused(f, rand, out);
                }
            },
            Phase::Logined { renew: Some(r), .. } if r.req == req => {
                let Some(r) = self.take_renew() else { return };
                match result {
                    Ok(server_exp) => {
                        if let Phase::Logined {
                            user,
                            sig,
                            expires_at,
                            ..
                        } = &mut self.phase
                        {
                            *sig = r.sig.clone();
                            *expires_at = server_exp.or(r.expires_at);
                            out.push(SessionAction::Persist(Some(Saved {
                                app_id,
                                user: user.clone(),
                                sig: r.sig,
                            })));
                        }
                        self.arm_expiry_timers(now_s, out);
                        reply_all(out, r.callers, Ok(Reply::RepeatLogin));
                    }
                    Err(f) => {
                        reply_all(out, r.callers, Err(f.clone()));
                    }
                }
            }
            // A reply to a request we gave up on (timeout, reconnect, logout): ignore.
            _ => {}
        }
    }

    fn take_renew(&mut self) -> Option<Renew> {
        match &mut self.phase {
            Phase::Logined { renew, .. } => renew.take(),
            _ => None,
        }
    }

    /// An automatic re-login (restore or after reconnect) was refused.
    fn auto_login_refused(&mut self, f: Fail, rand: f64, out: &mut Vec<SessionAction>) {
        if f.code == code::KICKED_BY_OTHER_DEVICE {
            self.end_session(
                LoginStatus::Logout,
                "kicked",
                Event::KickedOffline {},
                f.code,
                out,
            );
        } else if is_ticket_refusal(f.code) {
            self.end_session(
                LoginStatus::Logout,
                "userSigExpired",
                Event::UserSigExpired {},
                f.code,
                out,
            );
        } else {
            self.relogin_failures = self.relogin_failures.saturating_add(1);
            let delay = u64::try_from(
                self.settings
                    .backoff
                    .delay(self.relogin_failures, rand)
                    .as_millis(),
            )
            .unwrap_or(u64::MAX);
            out.push(SessionAction::Emit(Event::Relogin {
                success: false,
                code: Some(f.code),
                desc: Some(f.message),
                retry_in_ms: Some(delay),
            }));
            out.push(SessionAction::SetTimer(Timer::Relogin, delay));
        }
    }

    /// Ends the session for good: kick or dead ticket. The saved session is cleared before
    /// anything else happens, so a crash right after cannot resurrect it.
    fn end_session(
        &mut self,
        status: LoginStatus,
        reason: &str,
        event: Event,
        code: i32,
        out: &mut Vec<SessionAction>,
    ) {
        let user = self.user().to_owned();
        out.push(SessionAction::Persist(None));
        self.cancel_all_timers(out);
        let desc = match event {
            Event::KickedOffline {} => "kicked offline by another device",
            _ => "UserSig expired",
        };
        let mut callers = Vec::new();
        match std::mem::replace(&mut self.phase, Phase::Logout) {
            Phase::Logining { callers: c, .. } => callers = c,
            Phase::Logined { renew: Some(r), .. } => callers = r.callers,
            _ => {}
        }
        out.push(SessionAction::Emit(event));
        out.push(status_event(status, &user, reason));
        reply_all(out, callers, Err(Fail::new(code, desc)));
    }

    fn on_kicked(&mut self, out: &mut Vec<SessionAction>) {
        if self.holds_server_login() {
            self.end_session(
                LoginStatus::Logout,
                "kicked",
                Event::KickedOffline {},
                code::KICKED_BY_OTHER_DEVICE,
                out,
            );
        }
    }

    fn on_sig_expired(&mut self, out: &mut Vec<SessionAction>) {
        if self.holds_server_login() {
            self.end_session(
                LoginStatus::Logout,
                "userSigExpired",
                Event::UserSigExpired {},
                code::USERSIG_EXPIRED,
                out,
            );
        }
    }

    /// True when the server may hold a login of ours on this connection, so that its
    /// pushes about that login apply.
    fn holds_server_login(&self) -> bool {
        match &self.phase {
            Phase::Logined {
                online,
                inflight,
                renew,
                ..
            } => *online || inflight.is_some() || renew.is_some(),
            Phase::Logining { inflight, .. } => inflight.is_some(),
            _ => false,
        }
    }

    fn on_logout(&mut self, caller: Option<CallerId>, out: &mut Vec<SessionAction>) {
        let reply_ok = |out: &mut Vec<SessionAction>| {
            if let Some(caller) = caller {
                out.push(SessionAction::Reply {
                    caller,
                    result: Ok(Reply::Done),
                });
            }
        };
        if self.app_id.is_none() {
            if let Some(caller) = caller {
                out.push(SessionAction::Reply {
                    caller,
                    result: Err(Fail::new(
                        code::SDK_NOT_INITIALIZED,
                        "SDK not initialised: call initSDK first",
                    )),
                });
            }
            return;
        }
        match &mut self.phase {
            Phase::Logout => reply_ok(out),
            Phase::LoggingOut { callers, .. } => match caller {
                Some(c) if !self.uninit_callers.contains(&c) => out.push(SessionAction::Reply {
                    caller: c,
                    result: Err(Fail::new(
                        code::LOGOUT_IN_PROGRESS,
                        "a logout is already in progress",
                    )),
                }),
                Some(c) => callers.push(c),
                None => {}
            },
            _ => {
                let user = self.user().to_owned();
                let server_knows = self.holds_server_login() && self.link_up;
                out.push(SessionAction::Persist(None));
                self.cancel_all_timers(out);
                let login_callers = match &mut self.phase {
                    Phase::Logining { callers, .. } => std::mem::take(callers),
                    Phase::Logined { renew: Some(r), .. } => std::mem::take(&mut r.callers),
                    _ => Vec::new(),
                };
                reply_all(
                    out,
                    login_callers,
                    Err(Fail::new(
                        code::NOT_LOGGED_IN,
                        "the login was cancelled by a logout",
                    )),
                );
                if server_knows {
                    let req = self.req();
                    out.push(SessionAction::SendLogout { req });
                    self.phase = Phase::LoggingOut {
                        user,
                        req,
                        callers: caller.into_iter().collect(),
                    };
                } else {
                    self.phase = Phase::LoggingOut {
                        user,
                        req: 0,
                        callers: caller.into_iter().collect(),
                    };
                    self.finish_logout(out);
                }
            }
        }
    }

    fn finish_logout(&mut self, out: &mut Vec<SessionAction>) {
        if let Phase::LoggingOut { user, callers, .. } =
            std::mem::replace(&mut self.phase, Phase::Logout)
        {
            let reason = if self.uninit_callers.is_empty() {
                "logout"
            } else {
                "unInit"
            };
            out.push(status_event(LoginStatus::Logout, &user, reason));
            reply_all(out, callers, Ok(Reply::Done));
        }
        if !self.uninit_callers.is_empty() {
            self.finish_uninit(out);
        }
    }

    fn cancel_all_timers(&self, out: &mut Vec<SessionAction>) {
        for t in [
            Timer::LoginDeadline,
            Timer::Relogin,
            Timer::Expiring,
            Timer::Expiry,
        ] {
            out.push(SessionAction::CancelTimer(t));
        }
    }

    fn arm_expiry_timers(&self, now_s: i64, out: &mut Vec<SessionAction>) {
        let Some(exp) = self.expires_at() else {
            out.push(SessionAction::CancelTimer(Timer::Expiring));
            out.push(SessionAction::CancelTimer(Timer::Expiry));
            return;
        };
        let lead = i64::try_from(self.settings.expiring_lead_secs).unwrap_or(i64::MAX);
        let warn_at = exp.saturating_sub(lead);
        // Timers are capped (a ticket may be valid for years); one that fires before its
        // time is armed again by `on_timer`.
        let ms = |secs: i64| {
            u64::try_from(secs.max(0))
                .unwrap_or(0)
                .saturating_mul(1000)
                .min(MAX_TIMER_MS)
        };
        out.push(SessionAction::SetTimer(
            Timer::Expiring,
            ms(warn_at.saturating_sub(now_s)),
        ));
        // Valid while now <= exp: it is dead from exp + 1.
        out.push(SessionAction::SetTimer(
            Timer::Expiry,
            ms(exp.saturating_add(1).saturating_sub(now_s)),
        ));
    }

    fn on_timer(&mut self, t: Timer, now_s: i64, out: &mut Vec<SessionAction>) {
        match t {
            Timer::LoginDeadline => {
                if let Phase::Logining {
                    origin: Origin::Explicit,
                    inflight: None,
                    user,
                    callers,
                    ..
                } = &mut self.phase
                {
                    let user = user.clone();
                    let callers = std::mem::take(callers);
                    out.push(status_event(LoginStatus::Logout, &user, "loginFailed"));
                    reply_all(
                        out,
                        callers,
                        Err(Fail::new(
                            code::DISCONNECTED,
                            "no connection to the server within the login timeout",
                        )),
                    );
                    self.phase = Phase::Logout;
                }
            }
            Timer::Relogin => self.try_send_login(now_s, out),
            Timer::Expiring => {
                if let (Phase::Logined { .. }, Some(exp)) = (&self.phase, self.expires_at()) {
                    let lead = i64::try_from(self.settings.expiring_lead_secs).unwrap_or(i64::MAX);
                    if now_s < exp.saturating_sub(lead) {
                        // A capped timer fired early: wait again.
                        self.arm_expiry_timers(now_s, out);
                    } else if now_s <= exp {
                        out.push(SessionAction::Emit(Event::UserSigExpiring {
                            expires_at: exp,
                            remaining_secs: exp.saturating_sub(now_s),
                        }));
                    }
                }
            }
            Timer::Expiry => {
                let dead = self.expires_at().is_some_and(|e| now_s > e);
                if !dead && self.expires_at().is_some() && self.status() != LoginStatus::Logout {
                    // A capped timer fired early: wait again.
                    self.arm_expiry_timers(now_s, out);
                    return;
                }
                if dead
                    && matches!(
                        self.phase,
                        Phase::Logined { .. }
                            | Phase::Logining {
                                origin: Origin::Restore,
                                ..
                            }
                    )
                {
                    self.end_session(
                        LoginStatus::Logout,
                        "userSigExpired",
                        Event::UserSigExpired {},
                        code::USERSIG_EXPIRED,
                        out,
                    );
                }
            }
        }
    }
}
