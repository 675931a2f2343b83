//! The login session state machine: LOGOUT / LOGINING / LOGINED.
//!
//! Pure: [`SessionMachine::handle`] takes an input, the wall-clock time and a random number
//! for jitter, changes the state and returns the actions for the Session actor to perform.
//! It owns every login decision: when to log in again by itself, when never to (kick,
//! expired ticket), what each caller is answered, what is persisted and which events fire —
//! and, with a UserSig provider (`auth.provider`), when to ask it for a ticket, when to
//! retry and when to give up (never a loop: see [`SessionMachine`]'s rules below).

use crate::codes::{code, LoginStatus};
use crate::core::backoff::Backoff;
use crate::proto::api::Event;

/// Identifies a waiting API caller.
pub type CallerId = u64;
/// Identifies a request the session sent to the server.
pub type ReqId = u64;

/// A failure answered to a caller: the API's one error type (Tencent code, one line).
pub type Fail = crate::proto::rpc::RpcError;

/// Identifies a call of the UserSig provider.
pub type FetchId = u64;

/// A successful answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// `{}`.
    Done,
    /// `{"repeatLogin": true}`.
    RepeatLogin,
    /// `renewUserSig`: the new ticket's expiry, unix seconds.
    Renewed(i64),
}

/// Why the machine asks the provider for a ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// A login without a ticket (`login` without `userSig`, `auth.user_id` at start).
    Login,
    /// The ticket in use runs out soon (or `renewUserSig`): re-authenticate in place.
    Renew,
    /// A login was refused because its ticket expired: fetch once, retry once.
    Refresh,
}

/// A ticket from the provider, already checked by the caller: within the UserSig bounds,
/// decodable, for this user and app, not expired.
#[derive(Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The UserSig.
    pub sig: String,
    /// When it expires, unix seconds.
    pub expires_at: i64,
}

impl std::fmt::Debug for Fetched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetched")
            .field("sig", &"[redacted]")
            .field("expires_at", &self.expires_at)
            .finish()
    }
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
    /// Time to renew the ticket from the provider (or to retry a failed renewal).
    Renew,
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
        /// The UserSig (non-empty); `None`: get one from the provider.
        sig: Option<String>,
        /// `TLS.time + TLS.expire`, when decodable.
        expires_at: Option<i64>,
    },
    /// `logout`.
    Logout {
        /// Who asked.
        caller: CallerId,
    },
    /// `renewUserSig`.
    Renew {
        /// Who asked.
        caller: CallerId,
    },
    /// `auth.user_id` at start, when no session was restored: log in with the provider.
    StartLogin {
        /// The UserID (validated by the configuration).
        user: String,
    },
    /// The provider answered a [`SessionAction::FetchTicket`].
    TicketFetched {
        /// Which call.
        fetch: FetchId,
        /// The ticket, or why there is none (the code says which kind of failure).
        result: Result<Fetched, Fail>,
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
    /// Ask the provider for a ticket for `user` (answered with `TicketFetched`).
    FetchTicket {
        /// The id to report back.
        fetch: FetchId,
        /// The UserID the ticket must name.
        user: String,
        /// Why (for the log).
        purpose: Purpose,
    },
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
    /// `auth.user_id` at start: as `Explicit` with nobody waiting and no login deadline
    /// (it waits for the connection as long as it takes).
    Start,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Renew {
    sig: String,
    expires_at: Option<i64>,
    req: ReqId,
    callers: Vec<CallerId>,
    /// The ticket came from the provider (the renewal is reported with events).
    provider: bool,
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
        /// A provider call whose ticket this login waits for (`Login` or `Refresh`).
        fetch: Option<FetchId>,
        /// The one refresh after an expired-ticket refusal was used.
        refreshed: bool,
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
        /// A provider call in flight (`Renew` or `Refresh`).
        fetch: Option<(FetchId, Purpose)>,
        /// The one refresh after an expired-ticket refusal was used (until a re-login
        /// succeeds).
        refreshed: bool,
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
    /// How long before expiry `onUserSigExpiring` fires — or, with a provider, the
    /// renewal starts.
    pub expiring_lead_secs: u64,
    /// A UserSig provider is configured (`auth.provider` is not `none`).
    pub provider: bool,
}

/// What the machine knows of the provider, for `status.auth`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthState {
    /// Provider calls asked for.
    pub calls: u64,
    /// Renewals from the provider accepted by the server (or installed while offline).
    pub renewals: u64,
    /// The last failure, until the next success.
    pub last_error: Option<Fail>,
    /// When the next renewal or retry is due, unix seconds.
    pub next_renew_at: Option<i64>,
    /// Consecutive failed renewals (the backoff's count).
    failures: u32,
    /// The renewal timer was capped at [`MAX_TIMER_MS`]: when it fires, arm it again.
    renew_capped: bool,
    /// The last ticket the server refused as wrong (70003/70013/70014), and its code:
    /// the same provider output is not sent again.
    rejected: Option<(String, i32)>,
    /// `renewUserSig` callers waiting for the renewal in flight.
    renew_callers: Vec<CallerId>,
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
    next_fetch: FetchId,
    auth: AuthState,
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

/// A refusal that says the ticket itself is wrong (not merely old): the same ticket is
/// never sent again.
fn is_wrong_ticket(c: i32) -> bool {
    matches!(
        c,
        code::USERSIG_CHECK_FAILED
            | code::USERSIG_USERID_MISMATCH
            | code::USERSIG_SDKAPPID_MISMATCH
    )
}

/// A refusal because the ticket expired: with a provider, fetched once and retried once.
fn is_expired_ticket(c: i32) -> bool {
    matches!(c, code::USERSIG_EXPIRED | code::USERSIG_EXPIRED_LOCAL)
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
            next_fetch: 1,
            auth: AuthState::default(),
        }
    }

    /// The provider's counters and schedule.
    pub fn auth(&self) -> &AuthState {
        &self.auth
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
            SessionInput::Renew { caller } => self.on_renew(caller, &mut out),
            SessionInput::StartLogin { user } => {
                if self.app_id.is_some() && self.settings.provider && self.phase == Phase::Logout {
                    self.begin_provider(Vec::new(), user, Origin::Start, &mut out);
                }
            }
            SessionInput::TicketFetched { fetch, result } => {
                self.on_fetched(fetch, result, now_s, rand, &mut out)
            }
            SessionInput::Restore { saved, expires_at } => {
                self.on_restore(saved, expires_at, now_s, &mut out)
            }
            SessionInput::LinkUp => {
                self.link_up = true;
                self.try_send_login(now_s, &mut out);
            }
            SessionInput::LinkDown => self.on_link_down(now_s, rand, &mut out),
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
        sig: Option<String>,
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
        let Some(sig) = sig else {
            self.on_provider_login(caller, user, out);
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
                fetch,
                ..
            } if *cur == user => {
                if *cur_sig == sig {
                    out.push(SessionAction::Reply {
                        caller,
                        result: Ok(Reply::RepeatLogin),
                    });
                } else if renew.is_some() || fetch.is_some() {
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
                        provider: false,
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
                self.switch_user(&old, out);
                self.begin_explicit(caller, user, sig, expires_at, now_s, out);
            }
            Phase::Logout => self.begin_explicit(caller, user, sig, expires_at, now_s, out),
        }
    }

    /// The logged-in user is replaced by another: the old login ends (implicitly).
    fn switch_user(&mut self, old: &str, out: &mut Vec<SessionAction>) {
        out.push(SessionAction::Persist(None));
        self.cancel_all_timers(out);
        let waiting = std::mem::take(&mut self.auth.renew_callers);
        reply_all(
            out,
            waiting,
            Err(Fail::new(
                code::NOT_LOGGED_IN,
                "another user logged in: the renewal was cancelled",
            )),
        );
        out.push(status_event(LoginStatus::Logout, old, "switchUser"));
    }

    /// `login` without `userSig`: the provider supplies the ticket.
    fn on_provider_login(&mut self, caller: CallerId, user: String, out: &mut Vec<SessionAction>) {
        let fail = |code: i32, desc: &str| SessionAction::Reply {
            caller,
            result: Err(Fail::new(code, desc)),
        };
        if !self.settings.provider {
            out.push(fail(
                code::INVALID_PARAMETERS,
                "login: parameter userSig must be a non-empty string (no auth.provider is configured to get one)",
            ));
            return;
        }
        match &self.phase {
            Phase::Logining { .. } => out.push(fail(
                code::LOGIN_IN_PROGRESS,
                "a login is already in progress",
            )),
            Phase::LoggingOut { .. } => {
                out.push(fail(code::LOGOUT_IN_PROGRESS, "a logout is in progress"))
            }
            // Already logged in: the renewal keeps its own schedule (`renewUserSig` renews now).
            Phase::Logined { user: cur, .. } if *cur == user => out.push(SessionAction::Reply {
                caller,
                result: Ok(Reply::RepeatLogin),
            }),
            Phase::Logined { user: old, .. } => {
                let old = old.clone();
                self.switch_user(&old, out);
                self.begin_provider(vec![caller], user, Origin::Explicit, out);
            }
            Phase::Logout => self.begin_provider(vec![caller], user, Origin::Explicit, out),
        }
    }

    /// Asks the provider for a ticket (counted in `status.auth.calls`).
    fn start_fetch(
        &mut self,
        user: &str,
        purpose: Purpose,
        out: &mut Vec<SessionAction>,
    ) -> FetchId {
        let fetch = self.next_fetch;
        self.next_fetch = self.next_fetch.saturating_add(1);
        self.auth.calls = self.auth.calls.saturating_add(1);
        out.push(SessionAction::FetchTicket {
            fetch,
            user: user.to_owned(),
            purpose,
        });
        fetch
    }

    /// A login whose ticket comes from the provider: LOGINING while it is fetched, then
    /// sent as soon as the link is up.
    fn begin_provider(
        &mut self,
        callers: Vec<CallerId>,
        user: String,
        origin: Origin,
        out: &mut Vec<SessionAction>,
    ) {
        out.push(status_event(LoginStatus::Logining, &user, "login"));
        let fetch = self.start_fetch(&user, Purpose::Login, out);
        self.phase = Phase::Logining {
            user,
            sig: String::new(),
            expires_at: None,
            origin,
            callers,
            inflight: None,
            fetch: Some(fetch),
            refreshed: false,
        };
        self.relogin_failures = 0;
        if origin == Origin::Explicit {
            out.push(SessionAction::SetTimer(
                Timer::LoginDeadline,
                self.settings.login_timeout_ms,
            ));
        }
    }

    /// `renewUserSig`: renew from the provider now (or join the renewal in flight).
    fn on_renew(&mut self, caller: CallerId, out: &mut Vec<SessionAction>) {
        let fail = |code: i32, desc: &str| SessionAction::Reply {
            caller,
            result: Err(Fail::new(code, desc)),
        };
        if self.app_id.is_none() {
            out.push(fail(
                code::SDK_NOT_INITIALIZED,
                "SDK not initialised: call initSDK first",
            ));
            return;
        }
        if !self.settings.provider {
            out.push(fail(
                code::AUTH_PROVIDER_FAILED,
                "no auth.provider is configured: renew with login and a new userSig",
            ));
            return;
        }
        let Phase::Logined {
            user, renew, fetch, ..
        } = &self.phase
        else {
            out.push(fail(code::NOT_LOGGED_IN, "not logged in"));
            return;
        };
        let user = user.clone();
        match (renew, fetch) {
            (Some(r), _) if !r.provider => out.push(fail(
                code::LOGIN_IN_PROGRESS,
                "a ticket renewal with a login is in progress",
            )),
            (_, Some((_, Purpose::Refresh))) | (_, Some((_, Purpose::Login))) => out.push(fail(
                code::LOGIN_IN_PROGRESS,
                "a login with a new ticket is in progress",
            )),
            (Some(_), _) | (_, Some(_)) => self.auth.renew_callers.push(caller),
            (None, None) => {
                self.auth.renew_callers.push(caller);
                out.push(SessionAction::CancelTimer(Timer::Renew));
                self.auth.next_renew_at = None;
                let id = self.start_fetch(&user, Purpose::Renew, out);
                if let Phase::Logined { fetch, .. } = &mut self.phase {
                    *fetch = Some((id, Purpose::Renew));
                }
            }
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
            fetch: None,
            refreshed: false,
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
        if expires_at.is_some_and(|e| now_s > e) && !self.settings.provider {
            // An expired ticket is never sent (with a provider, a new one is fetched once
            // the link is up: `try_send_login`).
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
            fetch: None,
            refreshed: false,
        };
        self.try_send_login(now_s, out);
    }

    /// Sends the login the current phase needs, if the link is up and none is in flight.
    fn try_send_login(&mut self, now_s: i64, out: &mut Vec<SessionAction>) {
        if !self.link_up {
            return;
        }
        let expired = self.expires_at().is_some_and(|e| now_s > e);
        let (auto, waiting, refreshed) = match &self.phase {
            Phase::Logining {
                inflight: None,
                origin,
                fetch,
                refreshed,
                ..
            } => (*origin == Origin::Restore, fetch.is_some(), *refreshed),
            Phase::Logined {
                online: false,
                inflight: None,
                fetch,
                refreshed,
                ..
            } => (
                true,
                matches!(fetch, Some((_, Purpose::Refresh))),
                *refreshed,
            ),
            _ => return,
        };
        if waiting {
            // The provider's ticket comes first.
            return;
        }
        if expired && self.settings.provider && !refreshed {
            self.refresh(out);
            return;
        }
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

    fn on_link_down(&mut self, now_s: i64, rand: f64, out: &mut Vec<SessionAction>) {
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
                let lost = Fail::new(
                    code::DISCONNECTED,
                    "connection lost during the ticket renewal",
                );
                let renew = renew.take();
                out.push(SessionAction::CancelTimer(Timer::Relogin));
                if let Some(r) = renew {
                    reply_all(out, r.callers, Err(lost.clone()));
                    if r.provider {
                        self.renew_failed(lost, now_s, rand, out);
                    }
                }
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
        if let Err(f) = &result {
            if is_wrong_ticket(f.code) {
                if let Some(sig) = self.sig_of_request(req) {
                    self.auth.rejected = Some((sig, f.code));
                }
            }
        }
        let provider = self.settings.provider;
        match &mut self.phase {
            Phase::Logining {
                user,
                sig,
                expires_at,
                origin,
                callers,
                inflight,
                refreshed,
                ..
            } if *inflight == Some(req) => {
                let origin = *origin;
                if let Err(f) = &result {
                    if provider && is_expired_ticket(f.code) && !*refreshed {
                        *inflight = None;
                        self.refresh(out);
                        return;
                    }
                }
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
                            fetch: None,
                            refreshed: false,
                        };
                        self.relogin_failures = 0;
                        self.arm_expiry_timers(now_s, out);
                    }
                    Err(f) if origin != Origin::Restore => {
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
                inflight,
                online,
                refreshed,
                ..
            } if *inflight == Some(req) => match result {
                Ok(_) => {
                    *inflight = None;
                    *online = true;
                    *refreshed = false;
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
                        if r.provider {
                            self.renewed(out);
                        }
                    }
                    Err(f) => {
                        reply_all(out, r.callers, Err(f.clone()));
                        if r.provider {
                            self.renew_failed(f, now_s, rand, out);
                        }
                    }
                }
            }
            // A reply to a request we gave up on (timeout, reconnect, logout): ignore.
            _ => {}
        }
    }

    /// The ticket sent with request `req`, if it is one of ours.
    fn sig_of_request(&self, req: ReqId) -> Option<String> {
        match &self.phase {
            Phase::Logining { inflight, sig, .. } | Phase::Logined { inflight, sig, .. }
                if *inflight == Some(req) =>
            {
                Some(sig.clone())
            }
            Phase::Logined { renew: Some(r), .. } if r.req == req => Some(r.sig.clone()),
            _ => None,
        }
    }

    /// A login was refused because its ticket expired: ask the provider once for a new
    /// one; the login is sent again when it arrives (and not again after that).
    fn refresh(&mut self, out: &mut Vec<SessionAction>) {
        let user = self.user().to_owned();
        let id = self.start_fetch(&user, Purpose::Refresh, out);
        match &mut self.phase {
            Phase::Logining {
                fetch, refreshed, ..
            } => {
                *fetch = Some(id);
                *refreshed = true;
            }
            Phase::Logined {
                fetch, refreshed, ..
            } => {
                *fetch = Some((id, Purpose::Refresh));
                *refreshed = true;
            }
            _ => {}
        }
    }

    /// A renewal from the provider went through.
    fn renewed(&mut self, out: &mut Vec<SessionAction>) {
        let Some(exp) = self.expires_at() else { return };
        self.auth.renewals = self.auth.renewals.saturating_add(1);
        self.auth.failures = 0;
        self.auth.last_error = None;
        let waiting = std::mem::take(&mut self.auth.renew_callers);
        reply_all(out, waiting, Ok(Reply::Renewed(exp)));
        out.push(SessionAction::Emit(Event::UserSigRenewed {
            expires_at: exp,
        }));
    }

    /// A renewal failed: retried with the backoff while the ticket in use is still valid
    /// then, else left to expire (`onUserSigExpired` at its expiry, as without a provider).
    fn renew_failed(&mut self, f: Fail, now_s: i64, rand: f64, out: &mut Vec<SessionAction>) {
        self.auth.failures = self.auth.failures.saturating_add(1);
        self.auth.last_error = Some(f.clone());
        let waiting = std::mem::take(&mut self.auth.renew_callers);
        reply_all(out, waiting, Err(f.clone()));
        let delay = u64::try_from(
            self.settings
                .backoff
                .delay(self.auth.failures, rand)
                .as_millis(),
        )
        .unwrap_or(u64::MAX)
        .min(MAX_TIMER_MS);
        let due_ms = now_s
            .saturating_mul(1000)
            .saturating_add(i64::try_from(delay).unwrap_or(i64::MAX));
        // Valid while now <= exp, i.e. before (exp + 1) s.
        let retry = match self.expires_at() {
            Some(exp) => due_ms < exp.saturating_add(1).saturating_mul(1000),
            None => false,
        };
        if retry {
            out.push(SessionAction::SetTimer(Timer::Renew, delay));
            self.auth.renew_capped = false;
            self.auth.next_renew_at = Some(due_ms.saturating_add(999).div_euclid(1000));
        } else {
            out.push(SessionAction::CancelTimer(Timer::Renew));
            self.auth.next_renew_at = None;
        }
        out.push(SessionAction::Emit(Event::UserSigRenewFailed {
            code: f.code,
            desc: f.message,
            retry_in_ms: retry.then_some(delay),
        }));
    }

    /// The provider answered.
    fn on_fetched(
        &mut self,
        id: FetchId,
        result: Result<Fetched, Fail>,
        now_s: i64,
        rand: f64,
        out: &mut Vec<SessionAction>,
    ) {
        let purpose = match &mut self.phase {
            Phase::Logining { fetch, .. } if *fetch == Some(id) => {
                *fetch = None;
                Purpose::Login
            }
            Phase::Logined { fetch, .. } if fetch.is_some_and(|(f, _)| f == id) => {
                let p = fetch.map_or(Purpose::Renew, |(_, p)| p);
                *fetch = None;
                p
            }
            // A call for a login that is over (logout, kick, expiry, another user).
            _ => return,
        };
        // A ticket the server refused as wrong is not sent again.
        let result = match (result, &self.auth.rejected) {
            (Ok(t), Some((bad, c))) if t.sig == *bad => Err(Fail::new(
                *c,
                format!("the provider returned the ticket the server refused ({c}) again"),
            )),
            (r, _) => r,
        };
        if let Err(f) = &result {
            self.auth.last_error = Some(f.clone());
        }
        let Some(app_id) = self.app_id else { return };
        match (&mut self.phase, result) {
            (
                Phase::Logining {
                    sig, expires_at, ..
                },
                Ok(t),
            ) => {
                *sig = t.sig;
                *expires_at = Some(t.expires_at);
                self.auth.last_error = None;
                self.try_send_login(now_s, out);
            }
            (
                Phase::Logining {
                    origin: Origin::Restore,
                    ..
                },
                Err(f),
            ) => self.refresh_failed(f, out),
            (
                Phase::Logining {
                    user,
                    callers,
                    origin,
                    ..
                },
                Err(f),
            ) => {
                let user = user.clone();
                let callers = std::mem::take(callers);
                if *origin == Origin::Explicit {
                    out.push(SessionAction::CancelTimer(Timer::LoginDeadline));
                }
                out.push(status_event(LoginStatus::Logout, &user, "loginFailed"));
                reply_all(out, callers, Err(f));
                self.phase = Phase::Logout;
            }
            (Phase::Logined { .. }, Err(f)) if purpose == Purpose::Refresh => {
                self.refresh_failed(f, out)
            }
            (Phase::Logined { .. }, Err(f)) => self.renew_failed(f, now_s, rand, out),
            (
                Phase::Logined {
                    user,
                    sig,
                    expires_at,
                    online,
                    inflight,
                    renew,
                    ..
                },
                Ok(t),
            ) => {
                if purpose == Purpose::Renew
                    && (t.sig == *sig || expires_at.is_some_and(|e| t.expires_at <= e))
                {
                    let f = Fail::new(
                        code::AUTH_PROVIDER_FAILED,
                        format!(
                            "the provider returned no newer ticket (it expires at {}, the one in use at {})",
                            t.expires_at,
                            expires_at.unwrap_or(0)
                        ),
                    );
                    self.auth.last_error = Some(f.clone());
                    self.renew_failed(f, now_s, rand, out);
                    return;
                }
                if purpose == Purpose::Renew && *online && self.link_up && inflight.is_none() {
                    // Re-authenticate on the live connection: no status change.
                    let req = self.next_req;
                    self.next_req += 1;
                    *renew = Some(Renew {
                        sig: t.sig.clone(),
                        expires_at: Some(t.expires_at),
                        req,
                        callers: Vec::new(),
                        provider: true,
                    });
                    out.push(SessionAction::SendLogin {
                        req,
                        user: user.clone(),
                        sig: t.sig,
                        auto: false,
                    });
                    return;
                }
                // Offline (or a refresh): the ticket is used by the next re-login.
                *sig = t.sig.clone();
                *expires_at = Some(t.expires_at);
                out.push(SessionAction::Persist(Some(Saved {
                    app_id,
                    user: user.clone(),
                    sig: t.sig,
                })));
                self.arm_expiry_timers(now_s, out);
                if purpose == Purpose::Renew {
                    self.renewed(out);
                } else {
                    self.auth.last_error = None;
                    self.try_send_login(now_s, out);
                }
            }
            _ => {}
        }
    }

    /// The one refresh after an expired-ticket refusal failed: the session ends as a dead
    /// ticket does without a provider.
    fn refresh_failed(&mut self, f: Fail, out: &mut Vec<SessionAction>) {
        out.push(SessionAction::Emit(Event::UserSigRenewFailed {
            code: f.code,
            desc: f.message,
            retry_in_ms: None,
        }));
        self.end_session(
            LoginStatus::Logout,
            "userSigExpired",
            Event::UserSigExpired {},
            code::USERSIG_EXPIRED,
            out,
        );
    }

    fn take_renew(&mut self) -> Option<Renew> {
        match &mut self.phase {
            Phase::Logined { renew, .. } => renew.take(),
            _ => None,
        }
    }

    /// An automatic re-login (restore or after reconnect) was refused.
    fn auto_login_refused(&mut self, f: Fail, rand: f64, out: &mut Vec<SessionAction>) {
        let refreshed = match &self.phase {
            Phase::Logining { refreshed, .. } | Phase::Logined { refreshed, .. } => *refreshed,
            _ => true,
        };
        if self.settings.provider && is_expired_ticket(f.code) && !refreshed {
            self.refresh(out);
        } else if f.code == code::KICKED_BY_OTHER_DEVICE {
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
        callers.append(&mut self.auth.renew_callers);
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
                let mut login_callers = match &mut self.phase {
                    Phase::Logining { callers, .. } => std::mem::take(callers),
                    Phase::Logined { renew: Some(r), .. } => std::mem::take(&mut r.callers),
                    _ => Vec::new(),
                };
                login_callers.append(&mut self.auth.renew_callers);
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

    fn cancel_all_timers(&mut self, out: &mut Vec<SessionAction>) {
        for t in [
            Timer::LoginDeadline,
            Timer::Relogin,
            Timer::Expiring,
            Timer::Expiry,
            Timer::Renew,
        ] {
            out.push(SessionAction::CancelTimer(t));
        }
        self.auth.next_renew_at = None;
        self.auth.failures = 0;
    }

    fn arm_expiry_timers(&mut self, now_s: i64, out: &mut Vec<SessionAction>) {
        let Some(exp) = self.expires_at() else {
            out.push(SessionAction::CancelTimer(Timer::Expiring));
            out.push(SessionAction::CancelTimer(Timer::Expiry));
            out.push(SessionAction::CancelTimer(Timer::Renew));
            self.auth.next_renew_at = None;
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
        if self.settings.provider {
            // Renew at the lead before expiry — or halfway through what is left of the
            // ticket's life if that is later, so that a provider handing out short tickets
            // cannot make the daemon renew back to back.
            let left_ms = u64::try_from(exp.saturating_sub(now_s).max(0))
                .unwrap_or(0)
                .saturating_mul(1000);
            let due = ms(warn_at.saturating_sub(now_s)).max(left_ms / 2);
            let capped = due >= MAX_TIMER_MS;
            let due = due.min(MAX_TIMER_MS);
            out.push(SessionAction::CancelTimer(Timer::Expiring));
            out.push(SessionAction::SetTimer(Timer::Renew, due));
            self.auth.renew_capped = capped;
            self.auth.failures = 0;
            let due_s = i64::try_from(due.saturating_add(999) / 1000).unwrap_or(i64::MAX);
            self.auth.next_renew_at = Some(now_s.saturating_add(due_s));
        } else {
            out.push(SessionAction::CancelTimer(Timer::Renew));
            self.auth.next_renew_at = None;
            out.push(SessionAction::SetTimer(
                Timer::Expiring,
                ms(warn_at.saturating_sub(now_s)),
            ));
        }
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
            Timer::Renew => {
                if !self.settings.provider {
                    // Armed before a reload removed the provider.
                    return;
                }
                let Phase::Logined {
                    user,
                    fetch: None,
                    renew: None,
                    ..
                } = &self.phase
                else {
                    return;
                };
                let user = user.clone();
                if self.auth.renew_capped {
                    // A capped timer fired early: wait again.
                    self.arm_expiry_timers(now_s, out);
                    return;
                }
                self.auth.next_renew_at = None;
                let id = self.start_fetch(&user, Purpose::Renew, out);
                if let Phase::Logined { fetch, .. } = &mut self.phase {
                    *fetch = Some((id, Purpose::Renew));
                }
            }
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
                // A refresh in flight decides (a new ticket, or the end).
                let refreshing = matches!(
                    self.phase,
                    Phase::Logined {
                        fetch: Some((_, Purpose::Refresh)),
                        ..
                    } | Phase::Logining { fetch: Some(_), .. }
                );
                if dead
                    && !refreshing
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
