//! Many accounts in one daemon (`accounts.multi = true`).
//!
//! Every account is a light pair of actors — a [`Session`] and its link (native: a
//! WebSocket; Tencent: a bridge process of its own) — with a
//! hub of its own for its board ([`Hub::for_account`]) and a session file of its own,
//! `state.dir/accounts/<userID>/session.json`, written on tokio's blocking pool (no
//! thread per account). The events of every account go to the one ring of the root
//! hub, marked with the account.
//!
//! [`Accounts`] is the registry the API reads synchronously; its operations that change
//! the set of accounts are plain functions (for the API and for anything else that
//! manages accounts): [`Accounts::login`] (adds the account when it is new),
//! [`Accounts::logout`], [`Accounts::remove`], [`Accounts::list`].
//!
//! Logins of all accounts go through one [`Pacer`], and connect attempts through
//! another (each `accounts.login_rate` per second), so that the daemon never storms the server at
//! start or after the server restarted; one account waiting for its turn, or failing,
//! never holds another back (each has its own machine, backoff and timers).

use actix::prelude::*;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;
use tokio::time::Instant;

use crate::codes::{code, LogLevel, LoginStatus};
use crate::config::Config;
use crate::core::session::{Fail, Reply, Saved};
use crate::core::window::SecondWindow;
use crate::daemon::auth::Provider;
use crate::daemon::hub::Hub;
use crate::daemon::link::ws::transport::Dialer;
use crate::daemon::messages::{Retire, SessionCall, Shutdown};
use crate::daemon::session::Session;
use crate::daemon::store::{self, Store};
use crate::logging::LogControl;
use crate::proto::api::{valid_user_id, AccountInfo, ConnState};

/// The directory of the accounts' session files, in the state directory.
pub const DIR_NAME: &str = "accounts";

/// Spaces events (logins, connect attempts) at most `rate` per second, in the order
/// they ask: each caller is given the delay until its own slot ([`Pacer::delay`]), then
/// passes [`Pacer::wait_turn`] when the slot has come.
///
/// The slots alone keep the long-run pace; the turn keeps it over any one second even
/// when the event loop was busy and several slots' timers fire late together: no more
/// than `rate` × 1.1 (rounded up) events start within any second — `rate` itself for
/// connect attempts ([`Pacer::connects`]).
///
/// Connect attempts are also bounded in flight: at most `rate` / 10 (at least one) have
/// started and not yet ended (the server's hello read, or the attempt failed). What the
/// server sees is when a connection arrives, not when it started; a busy event loop on
/// either side delays arrivals unevenly and lets them bunch. With the bound, the
/// connections that arrive within any second are at most those that started within it
/// (≤ `rate`) and those in flight when it began (≤ `rate` / 10): 1.1 × `rate`, however
/// late they arrive.
#[derive(Debug)]
pub struct Pacer {
    gap: Cell<Duration>,
    next: Cell<Option<Instant>>,
    /// Most starts within any second.
    burst: Cell<usize>,
    /// The starts of the last second.
    recent: RefCell<SecondWindow<Instant>>,
    /// Connect attempts ([`Pacer::connects`]): starts capped at the rate itself, and
    /// bounded in flight.
    connects: bool,
    /// Most attempts in flight (connect attempts only).
    max_in_flight: Cell<usize>,
    /// Attempts given their turn and not yet ended.
    in_flight: Cell<usize>,
    /// Told when an attempt in flight ended.
    freed: tokio::sync::Notify,
}

/// An attempt in flight of a [`Pacer::connects`] pacer; dropping it ends the attempt.
#[derive(Debug)]
pub struct InFlight(Rc<Pacer>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0
            .in_flight
            .set(self.0.in_flight.get().saturating_sub(1));
        self.0.freed.notify_one();
    }
}

impl Pacer {
    /// At most `rate` (≥ 1) per second.
    pub fn new(rate: u32) -> Pacer {
        Pacer::with(rate, false)
    }

    /// The pace of connect attempts: at most `rate` (≥ 1) start within any second, and
    /// at most `rate` / 10 (at least one) are in flight.
    pub fn connects(rate: u32) -> Pacer {
        Pacer::with(rate, true)
    }

    fn with(rate: u32, connects: bool) -> Pacer {
        let p = Pacer {
            gap: Cell::new(Duration::ZERO),
            next: Cell::new(None),
            burst: Cell::new(0),
            recent: RefCell::new(Default::default()),
            connects,
            max_in_flight: Cell::new(0),
            in_flight: Cell::new(0),
            freed: tokio::sync::Notify::new(),
        };
        p.set_rate(rate);
        p
    }

    /// A new rate (SIGHUP).
    pub fn set_rate(&self, rate: u32) {
        let rate = rate.max(1);
        self.gap.set(Duration::from_secs(1) / rate);
        // Logins may catch up to 1.1 × the rate within a second; connect attempts not:
        // their bound in flight is the other tenth.
        let tenths = if self.connects { 10 } else { 11 };
        let burst = u64::from(rate).saturating_mul(tenths).div_ceil(10);
        self.burst.set(usize::try_from(burst).unwrap_or(usize::MAX));
        let in_flight = usize::try_from(rate / 10).unwrap_or(usize::MAX);
        self.max_in_flight.set(in_flight.max(1));
        // A higher bound may let waiting attempts go now.
        self.freed.notify_waiters();
    }

    /// Attempts in flight now (tests, metrics).
    pub fn in_flight(&self) -> usize {
        self.in_flight.get()
    }

    /// How long the caller whose slot has come still waits so that the last second holds
    /// no more than the burst; zero means go now, and the start is counted.
    pub fn turn(&self) -> Duration {
        let now = Instant::now();
        let mut recent = self.recent.borrow_mut();
        if recent.count(now) < self.burst.get() {
            recent.push(now);
            return Duration::ZERO;
        }
        recent
            .frees_at()
            .map_or(Duration::ZERO, |t| t.saturating_duration_since(now))
            .max(Duration::from_millis(1))
    }

    /// Waits for the slot given by [`Pacer::delay`] (`wait`), then for room in flight (a
    /// [`Pacer::connects`] pacer), then for the turn. The attempt is in flight until the
    /// returned [`InFlight`] is dropped (None: the pacer does not bound attempts in flight).
    pub async fn wait_turn(pacer: Option<Rc<Pacer>>, wait: Duration) -> Option<InFlight> {
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        let p = pacer?;
        let permit = if p.connects {
            loop {
                let freed = p.freed.notified();
                if p.in_flight.get() < p.max_in_flight.get() {
                    break;
                }
                freed.await;
            }
            p.in_flight.set(p.in_flight.get().saturating_add(1));
            Some(InFlight(p.clone()))
        } else {
            None
        };
        loop {
            let more = p.turn();
            if more.is_zero() {
                break;
            }
            tokio::time::sleep(more).await;
        }
        permit
    }

    /// How long the caller waits for its slot (zero when the pace allows it now); the
    /// slot is taken.
    pub fn delay(&self) -> Duration {
        let now = Instant::now();
        let slot = self.next.get().map_or(now, |n| n.max(now));
        self.next.set(Some(slot + self.gap.get()));
        slot.saturating_duration_since(now)
    }
}

/// The directory name of an account: the userID itself when it is a plain name
/// (`A-Z a-z 0-9 _ - @ .`, not starting with a dot), else `%` and its bytes in hex (a
/// name no plain userID has).
pub fn dir_name(user: &str) -> String {
    let plain = !user.starts_with('.')
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'@' | b'.'));
    if plain {
        user.to_owned()
    } else {
        let mut s = String::with_capacity(1 + 2 * user.len());
        s.push('%');
        for b in user.bytes() {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }
}

/// One account.
#[derive(Clone)]
pub struct Account {
    /// Its userID.
    pub user: Rc<str>,
    /// Its board.
    pub hub: Rc<Hub>,
    /// Its Session.
    pub session: Addr<Session>,
}

/// The registry of accounts.
pub struct Accounts {
    cfg: RefCell<Config>,
    root: Rc<Hub>,
    dir: PathBuf,
    map: RefCell<BTreeMap<String, Account>>,
    /// Accounts being removed: calls for them wait for nothing, they are refused.
    removing: RefCell<std::collections::HashSet<String>>,
    app_id: Cell<Option<u64>>,
    dialer: Rc<dyn Dialer>,
    /// Logins of all accounts.
    pacer: Rc<Pacer>,
    /// Connect attempts of all accounts.
    connects: Rc<Pacer>,
    provider: RefCell<Provider>,
    log: LogControl,
    store_options: store::Options,
    /// The network watcher every account's link listens to.
    net: RefCell<Option<Rc<crate::daemon::net::watch::Watcher>>>,
}

fn fail(code: i32, msg: impl Into<String>) -> Fail {
    Fail::new(code, msg.into())
}

impl Accounts {
    /// The network watcher the links of accounts added from now on listen to.
    pub fn set_watcher(&self, w: Rc<crate::daemon::net::watch::Watcher>) {
        *self.net.borrow_mut() = Some(w);
    }

    /// The registry for `cfg`, its accounts' files under `state.dir/accounts`.
    pub fn new(
        cfg: &Config,
        root: Rc<Hub>,
        dialer: Rc<dyn Dialer>,
        provider: Provider,
        log: LogControl,
        store_options: store::Options,
    ) -> Result<Rc<Accounts>, String> {
        let dir = cfg.state.dir.join(DIR_NAME);
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(&dir)
            .map_err(|e| format!("accounts directory {}: {e}", dir.display()))?;
        crate::fsck::check_daemon_dir(
            &std::fs::canonicalize(&dir)
                .map_err(|e| format!("accounts directory {}: {e}", dir.display()))?,
            crate::fsck::effective_uid(),
            "accounts directory",
        )?;
        root.set_multi();
        Ok(Rc::new(Accounts {
            cfg: RefCell::new(cfg.clone()),
            root,
            dir,
            map: RefCell::new(BTreeMap::new()),
            removing: RefCell::new(Default::default()),
            app_id: Cell::new(cfg.sdk.app_id),
            dialer,
            pacer: Rc::new(Pacer::new(cfg.accounts.login_rate)),
            connects: Rc::new(Pacer::connects(cfg.accounts.login_rate)),
            provider: RefCell::new(provider),
            log,
            store_options,
            net: RefCell::new(None),
        }))
    }

    /// The root hub (the ring, the subscribers, the counts).
    pub fn root(&self) -> &Rc<Hub> {
        &self.root
    }

    /// The SDKAppID new accounts use.
    pub fn app_id(&self) -> Option<u64> {
        self.app_id.get()
    }

    /// `initSDK`: the SDKAppID for accounts added from now on, and the log level.
    pub fn init(&self, app_id: u64, log_level: Option<LogLevel>) {
        if let Some(l) = log_level {
            if let Err(e) = self.log.set_level(l) {
                tracing::warn!("cannot change the log level: {e}");
            }
        }
        self.app_id.set(Some(app_id));
    }

    /// How many accounts.
    pub fn len(&self) -> usize {
        self.map.borrow().len()
    }

    /// No account.
    pub fn is_empty(&self) -> bool {
        self.map.borrow().is_empty()
    }

    /// The account `user`.
    pub fn get(&self, user: &str) -> Option<Account> {
        self.map.borrow().get(user).cloned()
    }

    /// The account a call concerns: `account` when given, else the only one. The error
    /// (6017) names the param.
    pub fn resolve(&self, method: &str, account: Option<&str>) -> Result<Account, Fail> {
        let map = self.map.borrow();
        match account {
            Some(a) => map.get(a).cloned().ok_or_else(|| {
                fail(
                    code::INVALID_PARAMETERS,
                    format!(
                        "{method}: parameter account names no account of this daemon ({:?})",
                        crate::text::clean(a)
                    ),
                )
            }),
            None if map.len() == 1 => Ok(map.values().next().cloned().ok_or_else(|| {
                fail(code::INVALID_PARAMETERS, "no account")
            })?),
            None => Err(fail(
                code::INVALID_PARAMETERS,
                format!(
                    "{method}: parameter account must be given (a userID): this daemon has {} accounts",
                    map.len()
                ),
            )),
        }
    }

    /// Every account, by userID.
    pub fn list(&self) -> Vec<AccountInfo> {
        self.map
            .borrow()
            .values()
            .map(|a| AccountInfo {
                user_id: a.user.to_string(),
                status: a.hub.login_status(),
                connection: a.hub.conn_state(),
                online: a.hub.online(),
                user_sig_expires_at: a.hub.expires_at(),
            })
            .collect()
    }

    /// Starts the account `user` (its store, hub, link and Session); `restore` resumes
    /// its saved login.
    fn start(
        &self,
        user: &str,
        restore: Option<Saved>,
        store: Option<Store>,
    ) -> Result<Account, Fail> {
        let app_id = restore.as_ref().map(|s| s.app_id).or(self.app_id.get());
        let Some(app_id) = app_id else {
            return Err(fail(
                code::SDK_NOT_INITIALIZED,
                "SDK not initialised: call initSDK first (or set sdk.app_id)",
            ));
        };
        let store = match store {
            Some(s) => s,
            None => Store::open_pooled(&self.dir.join(dir_name(user)), self.store_options)
                .map_err(|e| fail(code::STATE_NOT_SAVED, e))?,
        };
        let mut cfg = self.cfg.borrow().clone();
        cfg.sdk.app_id = Some(app_id);
        cfg.auth.user_id = None;
        let hub = Hub::for_account(&self.root, user, crate::daemon::server_label(&cfg));
        let instance_id = store.instance_id().to_owned();
        let (dialer, log, pacer) = (self.dialer.clone(), self.log.clone(), self.pacer.clone());
        let connects = self.connects.clone();
        let provider = self.provider.borrow().clone();
        let net = self.net.borrow().clone();
        let session = {
            let hub = hub.clone();
            Session::create(move |ctx| {
                // The native link: one WebSocket per account, its connects paced. The
                // Tencent link: one bridge process per account (the SDK holds one
                // login per SDKAppID per process, docs/tencent.md); its logins are
                // paced like the native ones.
                let link = crate::daemon::link::start(
                    &cfg,
                    instance_id,
                    hub.clone(),
                    ctx.address().recipient(),
                    dialer,
                    Some(connects),
                );
                if let Some(w) = net {
                    w.subscribe(link.net.clone());
                }
                Session::new(&cfg, link, hub, store, log, restore, provider).paced(pacer)
            })
        };
        let account = Account {
            user: Rc::from(user),
            hub,
            session,
        };
        self.map
            .borrow_mut()
            .insert(user.to_owned(), account.clone());
        Ok(account)
    }

    /// Starts every account found in `state.dir/accounts` (logged in: its login is
    /// resumed, paced; logged out: listed, logged out). Files that fail their checks are
    /// set aside by the store; names that are not an account's are skipped.
    pub fn restore_all(&self, restore_session: bool) {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!("cannot read {}: {e}", self.dir.display());
                return;
            }
        };
        let mut found = 0usize;
        for entry in entries.flatten() {
            let path = entry.path();
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let Some(saved) = read_saved(&path, self.store_options) else {
                continue;
            };
            let (user, saved, store) = saved;
            if dir_name(&user) != entry.file_name().to_string_lossy() {
                tracing::warn!(
                    "{}: the userID in its session file is not the directory's; skipped",
                    path.display()
                );
                continue;
            }
            let saved = saved
                .filter(|s| restore_session && self.app_id.get().is_none_or(|a| a == s.app_id));
            if self.app_id.get().is_none() && saved.is_none() {
                continue;
            }
            match self.start(&user, saved, Some(store)) {
                Ok(_) => found += 1,
                Err(f) => tracing::warn!(user = %user, "cannot restore the account: {}", f.message),
            }
        }
        tracing::info!(accounts = found, "accounts restored");
    }

    /// `login`: logs `user` in, adding the account when it is new.
    pub async fn login(self: Rc<Self>, user: String, sig: Option<String>) -> Result<Reply, Fail> {
        if self.removing.borrow().contains(&user) {
            return Err(fail(
                code::LOGOUT_IN_PROGRESS,
                "login: this account is being removed; try again when removeAccount answered",
            ));
        }
        let account = match self.get(&user) {
            Some(a) => a,
            None => {
                tracing::info!(user = %user, "adding an account");
                self.start(&user, None, None)?
            }
        };
        call(&account, SessionCall::Login { user, sig }).await
    }

    /// `logout` of one account; the account stays (logged out).
    pub async fn logout(account: Account) -> Result<Reply, Fail> {
        call(&account, SessionCall::Logout).await
    }

    /// `removeAccount`: logs the account out (on disk first), stops its link and
    /// Session, and removes its session file.
    pub async fn remove(self: Rc<Self>, account: Account) -> Result<Reply, Fail> {
        let user = account.user.to_string();
        if !self.removing.borrow_mut().insert(user.clone()) {
            return Err(fail(
                code::LOGOUT_IN_PROGRESS,
                "removeAccount: this account is being removed already",
            ));
        }
        let result = async {
            if account.hub.login_status() != LoginStatus::Logout {
                call(&account, SessionCall::Logout).await?;
            }
            let _ = account.session.send(Retire).await;
            let dir = self.dir.join(dir_name(&user));
            remove_files(&dir).map_err(|e| {
                fail(
                    code::STATE_NOT_SAVED,
                    format!(
                        "logged out, but {} could not be removed ({e})",
                        dir.display()
                    ),
                )
            })
        }
        .await;
        self.map.borrow_mut().remove(&user);
        account.hub.detach();
        self.removing.borrow_mut().remove(&user);
        tracing::info!(user = %user, "account removed");
        result.map(|()| Reply::Done)
    }

    /// SIGHUP: new settings for the accounts added from now on, the pace, and every
    /// running account.
    pub fn reconfigure(&self, cfg: &Config) {
        *self.cfg.borrow_mut() = cfg.clone();
        self.pacer.set_rate(cfg.accounts.login_rate);
        self.connects.set_rate(cfg.accounts.login_rate);
        match Provider::from_config(&cfg.auth) {
            Ok(p) => *self.provider.borrow_mut() = p,
            Err(e) => tracing::warn!("keeping the UserSig provider as it was: {e}"),
        }
        for a in self.map.borrow().values() {
            a.session
                .do_send(crate::daemon::messages::Reconfigure(cfg.clone()));
        }
    }

    /// `reconnect` of one account.
    pub fn reconnect(account: &Account) {
        account
            .session
            .do_send(crate::daemon::messages::ReconnectNow);
    }

    /// The daemon stops: every Session closes its link and flushes its file.
    pub async fn shutdown(&self) {
        let sessions: Vec<_> = self
            .map
            .borrow()
            .values()
            .map(|a| a.session.clone())
            .collect();
        let all = sessions.iter().map(|s| s.send(Shutdown));
        let _ = futures_util::future::join_all(all).await;
    }

    /// `N of M accounts online` for `STATUS=`.
    pub fn status_line(root: &Hub) -> String {
        let t = root.tally();
        format!("{} of {} accounts online", t.online, t.accounts)
    }
}

/// The actor that stands where the single Session stands when there are many accounts:
/// the watchdog's `Alive`, the stop, and the calls that reach no account.
pub struct Manager {
    /// The registry.
    pub accounts: Rc<Accounts>,
}

impl Actor for Manager {
    type Context = Context<Self>;
}

impl Handler<crate::daemon::messages::Alive> for Manager {
    type Result = ();
    fn handle(&mut self, _: crate::daemon::messages::Alive, _: &mut Context<Self>) {}
}

impl Handler<SessionCall> for Manager {
    type Result = Result<Reply, Fail>;
    fn handle(&mut self, _: SessionCall, _: &mut Context<Self>) -> Self::Result {
        Err(fail(
            code::INVALID_PARAMETERS,
            "this call concerns one account: parameter account must be given",
        ))
    }
}

impl Handler<crate::daemon::messages::ReconnectNow> for Manager {
    type Result = ();
    fn handle(&mut self, _: crate::daemon::messages::ReconnectNow, _: &mut Context<Self>) {
        for a in self.accounts.map.borrow().values() {
            Accounts::reconnect(a);
        }
    }
}

impl Handler<Shutdown> for Manager {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, _: Shutdown, _: &mut Context<Self>) -> Self::Result {
        let accounts = self.accounts.clone();
        Box::pin(async move { accounts.shutdown().await })
    }
}

async fn call(account: &Account, c: SessionCall) -> Result<Reply, Fail> {
    match account.session.send(c).await {
        Ok(r) => r,
        Err(_) => Err(fail(
            code::DISCONNECTED,
            "the account's session has stopped",
        )),
    }
}

/// Reads an account directory's session file: its userID and, when logged in, the saved
/// login. None when it holds no valid file with a userID.
fn read_saved(dir: &Path, options: store::Options) -> Option<(String, Option<Saved>, Store)> {
    if !dir.join(store::FILE_NAME).exists() {
        return None;
    }
    let store = match Store::open_pooled(dir, options) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("{e}");
            return None;
        }
    };
    let user = store.user()?;
    if !valid_user_id(&user) {
        return None;
    }
    let saved = store.saved();
    Some((user, saved, store))
}

/// Removes an account's directory: its session file and the store's own names.
fn remove_files(dir: &Path) -> std::io::Result<()> {
    for name in [store::FILE_NAME, store::TMP_NAME, store::BAD_NAME] {
        match std::fs::remove_file(dir.join(name)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accounts")
            .field("accounts", &self.len())
            .finish_non_exhaustive()
    }
}

/// Is the link of this account up?
pub fn connected(a: &Account) -> bool {
    a.hub.conn_state() == ConnState::Connected
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_names_are_plain_or_escaped() {
        assert_eq!(dir_name("alice"), "alice");
        assert_eq!(dir_name("a@b.c"), "a@b.c");
        assert_eq!(dir_name("../x"), "%2e2e2f78");
        assert_eq!(dir_name(".x"), "%2e78");
        assert_eq!(dir_name("+86"), "%2b3836");
        assert_ne!(dir_name("%2b3836"), dir_name("+86"));
    }

    #[tokio::test(start_paused = true)]
    async fn the_pacer_spaces_callers_by_the_rate() {
        let p = Pacer::new(200);
        assert_eq!(p.delay(), Duration::ZERO);
        assert_eq!(p.delay(), Duration::from_millis(5));
        assert_eq!(p.delay(), Duration::from_millis(10));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(p.delay(), Duration::ZERO, "an idle pacer owes nothing");
    }

    #[tokio::test(start_paused = true)]
    async fn late_slots_never_crowd_one_second() {
        // 10/s: at most 11 starts in any second, however late the callers come.
        let p = Pacer::new(10);
        for _ in 0..11 {
            assert_eq!(p.turn(), Duration::ZERO);
        }
        assert_eq!(p.turn(), Duration::from_secs(1), "the 12th waits a second");
        tokio::time::advance(Duration::from_millis(400)).await;
        assert_eq!(p.turn(), Duration::from_millis(600));
        tokio::time::advance(Duration::from_millis(600)).await;
        assert_eq!(p.turn(), Duration::ZERO, "the first start left the window");
        // wait_turn sleeps exactly as long as the window needs.
        let t0 = Instant::now();
        for _ in 0..10 {
            Pacer::wait_turn(Some(Rc::new(Pacer::new(1_000_000))), Duration::ZERO).await;
        }
        assert_eq!(Instant::now(), t0);
        let shared = Rc::new(Pacer::new(10));
        for _ in 0..11 {
            Pacer::wait_turn(Some(shared.clone()), Duration::ZERO).await;
        }
        assert_eq!(Instant::now(), t0);
        Pacer::wait_turn(Some(shared.clone()), Duration::from_millis(100)).await;
        assert_eq!(Instant::now() - t0, Duration::from_secs(1));
        // A new rate applies to the window too.
        shared.set_rate(1000);
        assert_eq!(shared.turn(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn connect_attempts_are_bounded_in_flight_and_by_the_rate_itself() {
        // 100/s: 10 in flight at most, 100 starts within any second.
        let p = Rc::new(Pacer::connects(100));
        let mut held = Vec::new();
        for _ in 0..10 {
            let hold = Pacer::wait_turn(Some(p.clone()), Duration::ZERO).await;
            held.push(hold.expect("a connects pacer holds each attempt"));
        }
        assert_eq!(p.in_flight(), 10);
        // The 11th waits until one of them ends, however long that takes.
        let eleventh = Pacer::wait_turn(Some(p.clone()), Duration::ZERO);
        tokio::pin!(eleventh);
        tokio::select! {
            _ = &mut eleventh => panic!("an 11th attempt started while 10 were in flight"),
            () = tokio::time::sleep(Duration::from_secs(30)) => {}
        }
        drop(held.pop());
        let hold = eleventh.await.expect("held");
        assert_eq!(p.in_flight(), 10);
        drop(hold);
        drop(held);
        assert_eq!(p.in_flight(), 0);
        // The login pacer bounds nothing in flight.
        assert!(
            Pacer::wait_turn(Some(Rc::new(Pacer::new(100))), Duration::ZERO)
                .await
                .is_none()
        );
        // Starts: the rate itself within any second (logins may go 1.1 times it).
        let q = Pacer::connects(10);
        for _ in 0..10 {
            assert_eq!(q.turn(), Duration::ZERO);
        }
        assert_eq!(
            q.turn(),
            Duration::from_secs(1),
            "the 11th start waits a second"
        );
        // A new rate applies to the window too.
        q.set_rate(100);
        assert_eq!(q.turn(), Duration::ZERO);
    }
}
