//! Accounts, logins, connections and counters: the devserver's whole mutable state.
//!
//! One [`Hub`] is shared by every HTTP worker. Its [`State`] sits behind one mutex; every
//! operation takes the lock briefly, decides, and hands frames for other connections to
//! their outbound queues (never awaiting under the lock). Connection tasks
//! (`access.rs`) own their sockets; the state only knows each connection's queue.
//!
//! A *login* is the record of (app, user, instanceid). It is *online* while a connection
//! holds it, *offline* after that connection dropped (it still counts for the policy and an
//! `auto` login of the same instance resumes it), and *displaced* when a newer login on a
//! conflicting platform replaced it while it was offline (an `auto` login of it then gets
//! 6208). A displaced login is no longer a login; it is only that mark.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use serde::Serialize;
use tokio::sync::{mpsc, watch};

use super::policy::{self, Policy};
use crate::codes::code;
use crate::proto::profile::UserFullInfo;
use crate::proto::ws::{
    self_info_frame, InfoBody, KickReason, Kicked, LoginBody, LoginResult, Platform, Push,
    StampedFrames,
};
use crate::usersig;

/// Queues a `selfInfoUpdated` push of `info`, whose frame is `frame`, to each of `to` in
/// its protocol: the frame to native connections (moved to the last), a copy of the
/// profile to Web ones.
fn push_profile(
    conns: &HashMap<ConnId, Conn>,
    to: &[(ConnId, Protocol)],
    info: &UserFullInfo,
    frame: String,
) {
    let mut frame = Some(frame);
    for (i, (c, protocol)) in to.iter().enumerate() {
        let Some(conn) = conns.get(c) else {
            continue;
        };
        let out = match protocol {
            Protocol::Web => Outbound::Push(Box::new(Push::SelfInfoUpdated(InfoBody {
                info: info.clone(),
            }))),
            _ if i + 1 == to.len() => Outbound::Frame(frame.take().unwrap_or_default()),
            _ => Outbound::Frame(frame.clone().unwrap_or_default()),
        };
        // A closed queue means the task is ending; it unregisters itself.
        let _ = conn.tx.send(out);
    }
}

/// Identifies one WebSocket connection for the life of the process.
pub type ConnId = u64;

/// What the state asks a connection task to do.
#[derive(Debug)]
pub enum Outbound {
    /// Send this text frame (a serialised push; `/v1/connect` connections).
    Frame(String),
    /// Translate this push into the connection's protocol and send it (Web connections;
    /// boxed, so that the queue's frames stay small).
    Push(Box<Push>),
    /// Send a close frame with this code and reason, then end.
    Close(u16, String),
}

/// The access protocol a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// `GET /v1/connect`, docs/protocol.md.
    Native,
    /// `GET /binfo` (or `/info`): the protocol of Tencent's Web SDK (`web.rs`).
    Web,
}

/// Fault signals every connection task watches (`faults.rs` sets them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Signals {
    /// While set and in the future, connections read and write nothing.
    pub silent_until: Option<tokio::time::Instant>,
    /// Bumped by the `drop` fault: every connection opened before closes its TCP abruptly.
    pub drop_generation: u64,
}

/// The server's fixed settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// SDKAppID → secret key.
    pub apps: BTreeMap<u64, String>,
    /// The REST administrator's UserID.
    pub admin: String,
    /// The multi-device policy.
    pub policy: Policy,
    /// How many Web logins one user may hold at once.
    pub web_instances: usize,
    /// Whether the fault endpoints are enabled.
    pub faults: bool,
    /// A connection silent this long is closed (4001).
    pub idle_timeout_ms: u64,
}

/// The shared server: settings, state and fault signals.
pub struct Hub {
    /// Fixed settings.
    pub settings: Settings,
    state: Mutex<State>,
    /// Fault signals watched by every connection.
    pub signals: watch::Sender<Signals>,
}

/// One connection's entry.
#[derive(Debug)]
struct Conn {
    tx: mpsc::UnboundedSender<Outbound>,
    /// The thread whose tasks write this connection (none outside a server thread).
    home: Option<actix_rt::ArbiterHandle>,
    protocol: Protocol,
    app: u64,
    platform: Platform,
    instance: String,
    login: Option<u64>,
}

/// One login (see the module docs).
#[derive(Debug, Clone)]
struct Login {
    id: u64,
    app: u64,
    user: String,
    instance: String,
    platform: Platform,
    protocol: Protocol,
    conn: Option<ConnId>,
    displaced: bool,
    expires_at: i64,
}

/// Per-user counters of `/debug/stats`.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserStats {
    /// `login` requests that named this user.
    pub login_attempts: u64,
    /// Of those, successful (including re-authentications).
    pub logins: u64,
    /// Of the successful ones, re-authentications: the same user again on a connection
    /// that holds its login (a renewed ticket; the login and the connection stay).
    pub reauthentications: u64,
    /// Of the attempts, those with `auto: true`.
    pub auto_logins: u64,
    /// Failed attempts by error code.
    pub failed: BTreeMap<i32, u64>,
    /// `logout` requests that ended a login of this user.
    pub logouts: u64,
    /// Logins ended by a newer login elsewhere.
    pub kicked_multi_device: u64,
    /// Logins ended by the REST kick.
    pub kicked_rest_api: u64,
    /// Logins ended by ticket expiry while online.
    pub expired: u64,
}

#[derive(Debug, Default)]
struct State {
    accounts: HashMap<(u64, String), UserFullInfo>,
    /// (app, user) → the second of the last REST kick.
    kicked_at: HashMap<(u64, String), i64>,
    /// `kickedOffline` pushes of the login policy to a connection that was online (a
    /// newer login elsewhere took the account from a live client).
    multi_device_kicks_pushed: u64,
    logins: Vec<Login>,
    conns: HashMap<ConnId, Conn>,
    next_id: u64,
    connections_total: u64,
    /// When the connections of the last second were accepted.
    recent_connects: crate::core::window::SecondWindow<std::time::Instant>,
    /// The most connections accepted within one second since start.
    connects_peak_1s: u64,
    web_telemetry_dropped: u64,
    /// `/v1/connect` requests handled, by command.
    requests: BTreeMap<&'static str, u64>,
    stats: BTreeMap<String, UserStats>,
    fail_logins: Option<(u64, i32)>,
    delay_ms: u64,
    refuse_until: Option<tokio::time::Instant>,
}

/// A login request's refusal: Tencent code and reason.
pub type Refusal = (i32, String);

/// What happened when a connection's expiry timer fired.
#[derive(Debug, PartialEq, Eq)]
pub enum ExpiryCheck {
    /// The login ended; push `userSigExpired`.
    Expired,
    /// The ticket is still valid until this unix second (clock skew or a renewal).
    NotYet(i64),
    /// The connection no longer holds that login.
    Gone,
}

/// A row of `/debug/sessions`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionRow {
    /// SDKAppID.
    pub sdk_app_id: u64,
    /// UserID.
    #[serde(rename = "userID")]
    pub user_id: String,
    /// Platform name.
    pub platform: Platform,
    /// The access protocol of the connection that logged in: `native` or `web`.
    pub protocol: Protocol,
    /// The client's instance id.
    pub instance_id: String,
    /// `online`, `offline` or `displaced`.
    pub state: &'static str,
    /// Whether a displaced mark is set.
    pub displaced: bool,
    /// Ticket expiry, unix seconds.
    pub user_sig_expire_at: i64,
    /// The login's id (a re-authentication keeps it).
    #[serde(rename = "loginID")]
    pub login_id: u64,
    /// The connection holding it, or null while offline.
    pub connection: Option<ConnId>,
}

/// One `Detail` entry of `query_online_status`: an online platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnlineDetail {
    /// The platform of a connected login.
    pub platform: Platform,
}

/// Unix milliseconds (the crate's one clock).
pub use crate::clock::unix_ms as now_ms;
pub use crate::clock::unix_us as now_us;
/// The service's UserID rule, the same as the daemon's.
pub use crate::proto::api::valid_user_id;

fn push_json(p: &Push) -> String {
    if let Push::SelfInfoUpdated(b) = p {
        return self_info_frame(&b.info);
    }
    serde_json::to_string(p).unwrap_or_else(|_| String::from("{}"))
}

impl State {
    /// Counts a connection accepted at `now` into the one-second window and its peak.
    fn count_connect(&mut self, now: std::time::Instant) {
        let n = self.recent_connects.count(now).saturating_add(1);
        self.recent_connects.push(now);
        self.connects_peak_1s = self
            .connects_peak_1s
            .max(u64::try_from(n).unwrap_or(u64::MAX));
    }

    /// The connections of the user's logins that are connected and not displaced.
    fn online_conns<'a>(&'a self, app: u64, user: &'a str) -> impl Iterator<Item = ConnId> + 'a {
        self.logins
            .iter()
            .filter(move |l| l.app == app && l.user == user && !l.displaced)
            .filter_map(|l| l.conn)
    }

    /// The user's online connections, each with its protocol.
    fn online_protocols(&self, app: u64, user: &str) -> Vec<(ConnId, Protocol)> {
        self.online_conns(app, user)
            .filter_map(|c| self.conns.get(&c).map(|x| (c, x.protocol)))
            .collect()
    }

    fn stats(&mut self, user: &str) -> &mut UserStats {
        self.stats.entry(user.to_owned()).or_default()
    }

    /// Queues a push for a connection, in its protocol: native connections get the
    /// serialised frame (`frame` caches it across calls), Web connections the push itself.
    fn push(&self, conn: ConnId, p: &Push, frame: &mut Option<String>) {
        if let Some(c) = self.conns.get(&conn) {
            let out = match c.protocol {
                Protocol::Native => {
                    Outbound::Frame(frame.get_or_insert_with(|| push_json(p)).clone())
                }
                Protocol::Web => Outbound::Push(Box::new(p.clone())),
            };
            // A closed queue means the task is ending; it unregisters itself.
            let _ = c.tx.send(out);
        }
    }

    fn login_index(&self, id: u64) -> Option<usize> {
        self.logins.iter().position(|l| l.id == id)
    }

    /// Removes a login; detaches its connection. Returns the record.
    fn end_login(&mut self, id: u64) -> Option<Login> {
        let i = self.login_index(id)?;
        let l = self.logins.remove(i);
        if let Some(c) = l.conn {
            if let Some(conn) = self.conns.get_mut(&c) {
                if conn.login == Some(id) {
                    conn.login = None;
                }
            }
        }
        Some(l)
    }

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}

impl Hub {
    /// A hub with no accounts and no connections.
    pub fn new(settings: Settings) -> Hub {
        let (signals, _) = watch::channel(Signals::default());
        Hub {
            settings,
            state: Mutex::new(State::default()),
            signals,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic under the lock cannot leave the state half-updated in a way that matters
        // more than stopping the emulator would; keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a new `/v1/connect` connection and returns its id and outbound queue.
    pub fn register(
        &self,
        app: u64,
        platform: Platform,
        instance: &str,
    ) -> (ConnId, mpsc::UnboundedReceiver<Outbound>) {
        self.register_as(Protocol::Native, app, platform, instance)
    }

    /// Registers a new connection of `protocol` and returns its id and outbound queue.
    pub fn register_as(
        &self,
        protocol: Protocol,
        app: u64,
        platform: Platform,
        instance: &str,
    ) -> (ConnId, mpsc::UnboundedReceiver<Outbound>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut s = self.lock();
        let id = s.next_id();
        s.connections_total += 1;
        s.count_connect(std::time::Instant::now());
        s.conns.insert(
            id,
            Conn {
                tx,
                home: actix_rt::Arbiter::try_current(),
                protocol,
                app,
                platform,
                instance: instance.to_owned(),
                login: None,
            },
        );
        (id, rx)
    }

    /// The connection ended (any way): its login, if any, stays registered but offline.
    pub fn disconnect(&self, conn: ConnId) {
        let mut s = self.lock();
        if let Some(c) = s.conns.remove(&conn) {
            if let Some(id) = c.login {
                if let Some(i) = s.login_index(id) {
                    s.logins[i].conn = None;
                    tracing::info!(conn, user = %s.logins[i].user, platform = %c.platform, "login offline (connection gone)");
                }
            }
        }
    }

    /// Handles a `login` request on `conn` at unix second `now`.
    pub fn login(&self, conn: ConnId, body: &LoginBody, now: i64) -> Result<LoginResult, Refusal> {
        let mut s = self.lock();
        let r = self.login_locked(&mut s, conn, body, now);
        let st = s.stats(&body.user_id);
        st.login_attempts += 1;
        if body.auto {
            st.auto_logins += 1;
        }
        match &r {
            Ok(_) => st.logins += 1,
            Err((c, _)) => *st.failed.entry(*c).or_default() += 1,
        }
        r
    }

    fn login_locked(
        &self,
        s: &mut State,
        conn: ConnId,
        body: &LoginBody,
        now: i64,
    ) -> Result<LoginResult, Refusal> {
        let (app, platform, protocol, instance, current) = match s.conns.get(&conn) {
            Some(c) => (c.app, c.platform, c.protocol, c.instance.clone(), c.login),
            None => return Err((code::INVALID_PARAMETERS, "connection is closing".into())),
        };
        let user = body.user_id.as_str();
        if let Some((left, c)) = s.fail_logins {
            if left > 0 {
                s.fail_logins = if left > 1 { Some((left - 1, c)) } else { None };
                tracing::warn!(conn, user, code = c, "fault: login failed on purpose");
                return Err((c, format!("injected failure (fail-logins fault), code {c}")));
            }
        }
        if body.user_sig.trim().is_empty() {
            return Err((code::INVALID_PARAMETERS, "userSig is empty".into()));
        }
        if !valid_user_id(user) {
            return Err((
                code::INVALID_USERID,
                "userID must be 1 to 32 bytes of printable ASCII, no spaces".into(),
            ));
        }
        let key = self.settings.apps.get(&app).ok_or_else(|| {
            (
                code::USERSIG_SDKAPPID_MISMATCH,
                format!("unknown SDKAppID {app}"),
            )
        })?;
        let ticket = usersig::verify(&body.user_sig, app, key, user, now)
            .map_err(|e| (e.code(), e.to_string()))?;
        if let Some(k) = s.kicked_at.get(&(app, user.to_owned())) {
            if ticket.time <= *k {
                return Err((
                    code::USERSIG_INVALIDATED,
                    format!(
                        "UserSig issued at {} was invalidated by a kick at {k}",
                        ticket.time
                    ),
                ));
            }
        }
        let expires_at = ticket.expires_at();

        // Already logged in on this connection.
        if let Some(lid) = current {
            if let Some(i) = s.login_index(lid) {
                if s.logins[i].user == user {
                    s.logins[i].expires_at = expires_at;
                    s.stats(user).reauthentications += 1;
                    tracing::info!(conn, user, %platform, expires_at, "re-authenticated");
                    let info = s
                        .accounts
                        .get(&(app, user.to_owned()))
                        .cloned()
                        .unwrap_or_default();
                    return Ok(LoginResult {
                        user_id: user.to_owned(),
                        server_time: now_ms(),
                        user_sig_expire_at: expires_at,
                        info,
                    });
                }
                let old = s.end_login(lid);
                if let Some(old) = old {
                    tracing::info!(conn, user = %old.user, "logged out (another user logs in on the connection)");
                }
            }
        }

        // The instance's own records in this app.
        let mine: Vec<Login> = s
            .logins
            .iter()
            .filter(|l| l.app == app && l.instance == instance)
            .cloned()
            .collect();
        if body.auto && mine.iter().any(|l| l.user == user && l.displaced) {
            return Err((
                code::KICKED_BY_OTHER_DEVICE,
                "this device was displaced by a newer login while it was disconnected".into(),
            ));
        }
        for l in mine {
            s.end_login(l.id);
            if let Some(c) = l.conn {
                if c != conn {
                    tracing::info!(conn = c, user = %l.user, "login taken over by a new connection of the same instance");
                }
            }
        }

        // The policy over the user's other logins, oldest first.
        let others: Vec<Login> = s
            .logins
            .iter()
            .filter(|l| l.app == app && l.user == user && !l.displaced)
            .cloned()
            .collect();
        let platforms: Vec<Platform> = others.iter().map(|l| l.platform).collect();
        for i in policy::displaced(
            self.settings.policy,
            self.settings.web_instances,
            &platforms,
            platform,
        ) {
            let Some(old) = others.get(i) else { continue };
            if let Some(c) = old.conn {
                s.end_login(old.id);
                s.push(
                    c,
                    &Push::KickedOffline(Kicked {
                        reason: KickReason::MultiDevice,
                        platform: Some(platform),
                    }),
                    &mut None,
                );
                s.stats(user).kicked_multi_device += 1;
                s.multi_device_kicks_pushed = s.multi_device_kicks_pushed.saturating_add(1);
                tracing::info!(conn = c, user, platform = %old.platform, by = %platform, "kicked offline (multi_device)");
            } else if let Some(j) = s.login_index(old.id) {
                s.logins[j].displaced = true;
                s.stats(user).kicked_multi_device += 1;
                tracing::info!(user, platform = %old.platform, instance = %old.instance, by = %platform, "offline login displaced");
            }
        }

        let info = s
            .accounts
            .entry((app, user.to_owned()))
            .or_insert_with(|| {
                tracing::info!(app, user, "account created at first login");
                UserFullInfo {
                    user_id: user.to_owned(),
                    ..UserFullInfo::default()
                }
            })
            .clone();
        let id = s.next_id();
        s.logins.push(Login {
            id,
            app,
            user: user.to_owned(),
            instance,
            platform,
            protocol,
            conn: Some(conn),
            displaced: false,
            expires_at,
        });
        if let Some(c) = s.conns.get_mut(&conn) {
            c.login = Some(id);
        }
        tracing::info!(conn, user, %platform, auto = body.auto, expires_at, "logged in");
        Ok(LoginResult {
            user_id: user.to_owned(),
            server_time: now_ms(),
            user_sig_expire_at: expires_at,
            info,
        })
    }

    /// The login id and expiry of the connection's login, if any.
    pub fn login_of(&self, conn: ConnId) -> Option<(u64, i64)> {
        let s = self.lock();
        let id = s.conns.get(&conn)?.login?;
        let i = s.login_index(id)?;
        Some((id, s.logins[i].expires_at))
    }

    /// Handles `logout`: ends the connection's login, if any; the instance is forgotten.
    pub fn logout(&self, conn: ConnId) {
        let mut s = self.lock();
        let Some(id) = s.conns.get(&conn).and_then(|c| c.login) else {
            return;
        };
        if let Some(l) = s.end_login(id) {
            s.stats(&l.user).logouts += 1;
            tracing::info!(conn, user = %l.user, platform = %l.platform, "logged out");
        }
    }

    /// The expiry timer of `conn` fired for login `login`.
    pub fn expire(&self, conn: ConnId, login: u64, now: i64) -> ExpiryCheck {
        let mut s = self.lock();
        if s.conns.get(&conn).and_then(|c| c.login) != Some(login) {
            return ExpiryCheck::Gone;
        }
        let Some(i) = s.login_index(login) else {
            return ExpiryCheck::Gone;
        };
        let l = &s.logins[i];
        if now <= l.expires_at {
            return ExpiryCheck::NotYet(l.expires_at);
        }
        if let Some(l) = s.end_login(login) {
            s.stats(&l.user).expired += 1;
            tracing::info!(conn, user = %l.user, expired_at = l.expires_at, "UserSig expired while online");
        }
        ExpiryCheck::Expired
    }

    /// The profile of the connection's user, or `None` when it is logged out.
    pub fn self_info(&self, conn: ConnId) -> Option<UserFullInfo> {
        let s = self.lock();
        let id = s.conns.get(&conn)?.login?;
        let l = &s.logins[s.login_index(id)?];
        Some(
            s.accounts
                .get(&(l.app, l.user.clone()))
                .cloned()
                .unwrap_or_else(|| UserFullInfo {
                    user_id: l.user.clone(),
                    ..UserFullInfo::default()
                }),
        )
    }

    /// `account_import`: creates the account or updates its nick and face.
    pub fn import_account(&self, app: u64, user: &str, nick: Option<&str>, face: Option<&str>) {
        let mut s = self.lock();
        let info = s
            .accounts
            .entry((app, user.to_owned()))
            .or_insert_with(|| UserFullInfo {
                user_id: user.to_owned(),
                ..UserFullInfo::default()
            });
        if let Some(n) = nick {
            info.nick_name = n.to_owned();
        }
        if let Some(f) = face {
            info.face_url = f.to_owned();
        }
        tracing::info!(app, user, "account imported");
    }

    /// The account's profile, if the account exists.
    pub fn account(&self, app: u64, user: &str) -> Option<UserFullInfo> {
        self.lock().accounts.get(&(app, user.to_owned())).cloned()
    }

    /// Counts one telemetry frame a Web client sent (accepted and dropped).
    pub fn count_web_telemetry(&self) {
        let mut s = self.lock();
        s.web_telemetry_dropped = s.web_telemetry_dropped.saturating_add(1);
    }

    /// Counts one `/v1/connect` request, by command, as its handling begins.
    pub fn count_request(&self, cmd: &'static str) {
        let mut s = self.lock();
        let n = s.requests.entry(cmd).or_default();
        *n = n.saturating_add(1);
    }

    /// Whether the account exists.
    pub fn account_exists(&self, app: u64, user: &str) -> bool {
        self.lock().accounts.contains_key(&(app, user.to_owned()))
    }

    /// The REST kick: every login of the user ends (connected ones get `kickedOffline`
    /// `rest_api`) and every ticket issued at or before `now` is refused from now on.
    pub fn kick(&self, app: u64, user: &str, now: i64) -> usize {
        let mut s = self.lock();
        s.kicked_at.insert((app, user.to_owned()), now);
        let ids: Vec<u64> = s
            .logins
            .iter()
            .filter(|l| l.app == app && l.user == user)
            .map(|l| l.id)
            .collect();
        let mut n = 0;
        for id in ids {
            let Some(l) = s.end_login(id) else { continue };
            if l.displaced {
                continue;
            }
            n += 1;
            s.stats(user).kicked_rest_api += 1;
            if let Some(c) = l.conn {
                s.push(
                    c,
                    &Push::KickedOffline(Kicked {
                        reason: KickReason::RestApi,
                        platform: None,
                    }),
                    &mut None,
                );
            }
            tracing::info!(user, platform = %l.platform, online = l.conn.is_some(), "kicked offline (rest_api)");
        }
        tracing::info!(
            app,
            user,
            kicked_at = now,
            logins = n,
            "REST kick: tickets issued until now are invalid"
        );
        n
    }

    /// Changes the user's profile with `f` and pushes `selfInfoUpdated` to every online
    /// connection of the user. Returns the number of connections pushed to, or `None` when
    /// the account does not exist.
    pub fn update_profile(
        &self,
        app: u64,
        user: &str,
        f: impl FnOnce(&mut UserFullInfo),
    ) -> Option<usize> {
        let mut guard = self.lock();
        let s = &mut *guard;
        let conns = s.online_protocols(app, user);
        let info = s.accounts.get_mut(&(app, user.to_owned()))?;
        f(info);
        if info.user_id != user {
            info.user_id = user.to_owned();
        }
        push_profile(&s.conns, &conns, info, self_info_frame(info));
        Some(conns.len())
    }

    /// A burst of `times` `selfInfoUpdated` pushes under one lock in which only the
    /// `customInfo` values of `keys` change, each to the integers `values` gives for that
    /// push (told which, 0-based): the frame is written once and each push fills in its
    /// numbers (see [`StampedFrames`]). The profile keeps the last push's numbers. Returns
    /// the number of connections pushed to, or `None` when the account does not exist.
    pub fn push_stamped<const K: usize>(
        &self,
        app: u64,
        user: &str,
        times: u64,
        keys: [&str; K],
        mut values: impl FnMut(u64) -> [i64; K],
    ) -> Option<usize> {
        let mut guard = self.lock();
        let s = &mut *guard;
        let conns = s.online_protocols(app, user);
        let web = conns.iter().any(|(_, p)| *p == Protocol::Web);
        let info = s.accounts.get_mut(&(app, user.to_owned()))?;
        if info.user_id != user {
            info.user_id = user.to_owned();
        }
        let frames = StampedFrames::new(info, keys);
        for time in 0..times {
            let v = values(time);
            // The profile itself is written only when a Web connection needs a copy of
            // it, and after the last push.
            if web || time + 1 == times {
                frames.store(info, &v);
            }
            push_profile(&s.conns, &conns, info, frames.frame(&v));
        }
        Some(conns.len())
    }

    /// The thread that writes the user's one online connection (None when the user has
    /// none, or several).
    pub fn home_of(&self, app: u64, user: &str) -> Option<actix_rt::ArbiterHandle> {
        let s = self.lock();
        let mut conns = s.online_conns(app, user);
        let one = conns.next()?;
        if conns.next().is_some() {
            return None;
        }
        s.conns.get(&one)?.home.clone()
    }

    /// The platforms of the user's online (connected) logins.
    pub fn online(&self, app: u64, user: &str) -> Vec<OnlineDetail> {
        let s = self.lock();
        s.logins
            .iter()
            .filter(|l| l.app == app && l.user == user && !l.displaced && l.conn.is_some())
            .map(|l| OnlineDetail {
                platform: l.platform,
            })
            .collect()
    }

    /// Sends a close frame to every connection (server shutdown).
    pub fn close_all(&self, code: u16, reason: &str) {
        let s = self.lock();
        for c in s.conns.values() {
            let _ = c.tx.send(Outbound::Close(code, reason.to_owned()));
        }
    }

    /// The `fail-logins` fault: the next `count` logins fail with `code`.
    pub fn set_fail_logins(&self, count: u64, code: i32) {
        self.lock().fail_logins = if count > 0 { Some((count, code)) } else { None };
    }

    /// The `delay` fault: responses to requests wait this long.
    pub fn set_delay_ms(&self, ms: u64) {
        self.lock().delay_ms = ms;
    }

    /// The current response delay.
    pub fn delay_ms(&self) -> u64 {
        self.lock().delay_ms
    }

    /// The `refuse` fault: upgrades are answered 503 until `until`.
    pub fn set_refuse_until(&self, until: Option<tokio::time::Instant>) {
        self.lock().refuse_until = until;
    }

    /// Whether new connections are refused now.
    pub fn refusing(&self) -> bool {
        self.lock()
            .refuse_until
            .is_some_and(|u| tokio::time::Instant::now() < u)
    }

    /// Clears every fault.
    pub fn clear_faults(&self) {
        {
            let mut s = self.lock();
            s.fail_logins = None;
            s.delay_ms = 0;
            s.refuse_until = None;
        }
        self.signals.send_modify(|sig| sig.silent_until = None);
    }

    /// The JSON of `/debug/stats`.
    pub fn stats_json(&self) -> serde_json::Value {
        let s = self.lock();
        let online = s.logins.iter().filter(|l| l.conn.is_some()).count();
        let offline = s
            .logins
            .iter()
            .filter(|l| l.conn.is_none() && !l.displaced)
            .count();
        let (left, code) = s.fail_logins.unwrap_or((0, 0));
        let by_protocol = |p: Protocol| {
            serde_json::json!({
                "connectionsOpen": s.conns.values().filter(|c| c.protocol == p).count(),
                "loginsOnline": s.logins.iter().filter(|l| l.conn.is_some() && l.protocol == p).count(),
            })
        };
        serde_json::json!({
            "connectionsOpen": s.conns.len(),
            "connectionsTotal": s.connections_total,
            "connectsPeakPerSecond": s.connects_peak_1s,
            "loginsOnline": online,
            "loginsOffline": offline,
            "accounts": s.accounts.len(),
            "protocols": {
                "native": by_protocol(Protocol::Native),
                "web": by_protocol(Protocol::Web),
            },
            "webTelemetryDropped": s.web_telemetry_dropped,
            "multiDeviceKicksPushed": s.multi_device_kicks_pushed,
            "requests": {
                "login": s.requests.get("login").copied().unwrap_or(0),
                "logout": s.requests.get("logout").copied().unwrap_or(0),
                "heartbeat": s.requests.get("heartbeat").copied().unwrap_or(0),
                "getSelfInfo": s.requests.get("getSelfInfo").copied().unwrap_or(0),
            },
            "users": s.stats,
            "faults": {
                "failLoginsLeft": left,
                "failLoginsCode": code,
                "delayMs": s.delay_ms,
                "refusing": s.refuse_until.is_some_and(|u| tokio::time::Instant::now() < u),
                "silent": self.signals.borrow().silent_until.is_some_and(|u| tokio::time::Instant::now() < u),
            },
        })
    }

    /// The rows of `/debug/sessions`, oldest login first.
    pub fn sessions(&self) -> Vec<SessionRow> {
        let s = self.lock();
        s.logins
            .iter()
            .map(|l| SessionRow {
                sdk_app_id: l.app,
                user_id: l.user.clone(),
                platform: l.platform,
                protocol: l.protocol,
                instance_id: l.instance.clone(),
                state: if l.displaced {
                    "displaced"
                } else if l.conn.is_some() {
                    "online"
                } else {
                    "offline"
                },
                displaced: l.displaced,
                user_sig_expire_at: l.expires_at,
                login_id: l.id,
                connection: l.conn,
            })
            .collect()
    }
}

#[cfg(test)]
mod connect_rate_tests {
    use super::State;
    use std::time::{Duration, Instant};

    #[test]
    fn the_peak_counts_connections_within_one_second() {
        let mut s = State::default();
        let t0 = Instant::now();
        for ms in [0, 100, 500, 999] {
            s.count_connect(t0 + Duration::from_millis(ms));
        }
        assert_eq!(s.connects_peak_1s, 4);
        // 1000 ms after the first, it has left the window: 100, 500, 999, 1000.
        s.count_connect(t0 + Duration::from_millis(1000));
        assert_eq!(s.connects_peak_1s, 4);
        s.count_connect(t0 + Duration::from_millis(1050));
        assert_eq!(s.connects_peak_1s, 5);
        // A quiet spell empties the window; the peak stays.
        s.count_connect(t0 + Duration::from_secs(10));
        assert_eq!(
            (
                s.recent_connects.count(t0 + Duration::from_secs(10)),
                s.connects_peak_1s
            ),
            (1, 5)
        );
    }
}
