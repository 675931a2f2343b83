//! One member of the fleet: holds a lease, registers under `members/`, claims and gives
//! up accounts, and logs them in and out through its [`AccountHost`].
//!
//! A member lives in terms, one per lease. A term ends when the member is told to stop
//! (every account logged out, then the lease revoked, so the others take over at once) or
//! when it is fenced: its last renewal that succeeded was sent [`Timing::fence_after`]
//! ago, or etcd said the lease is gone. Fenced, it logs every account out and starts a
//! new term with a new lease once etcd answers again.

use etcd_client::{
    Client, Compare, CompareOp, LeaseKeepAliveStream, LeaseKeeper, PutOptions, Txn, TxnOp,
    TxnOpResponse, WatchOptions,
};
use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::rc::Rc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::{sleep, sleep_until, Instant};

use super::admin::{retried, timed, Admin, FleetError};
use super::plan::{plan, Snapshot};
use super::{AccountHost, Settings, Timing};

/// The pause before a failed renewal is tried again.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Accounts claimed or released in one transaction (etcd allows 128 operations in one).
const BATCH: usize = 100;

/// A running member, as its owner sees it.
pub struct MemberHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    owned: Rc<RefCell<BTreeSet<String>>>,
    stats: Rc<Stats>,
}

/// What a member counts.
#[derive(Debug, Default)]
pub struct Stats {
    /// Lease renewals that succeeded.
    pub renewals: Cell<u64>,
    /// Times the member logged every account out because its lease could not be trusted.
    pub fences: Cell<u64>,
    /// Leases it joined the fleet with.
    pub terms: Cell<u64>,
}

impl MemberHandle {
    /// Its counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The accounts this member owns and has logged in (or is logging in).
    pub fn owned(&self) -> BTreeSet<String> {
        self.owned.borrow().clone()
    }

    /// Stops gracefully: every account logged out, the lease revoked. Returns once done.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }

    /// Stops at once, like a process killed: nothing logged out, nothing revoked (the
    /// accounts stay with the lease until it expires). For tests.
    pub fn kill(self) {
        self.task.abort();
    }
}

/// A member, before it runs.
pub struct Member {
    settings: Settings,
    timing: Timing,
    admin: Admin,
    host: Rc<dyn AccountHost>,
    owned: Rc<RefCell<BTreeSet<String>>>,
    stats: Rc<Stats>,
}

/// Why a term ended.
enum Ended {
    /// Told to stop.
    Stop,
    /// Fenced or could not start: try again with a new lease.
    Again,
}

/// Aborts a task when dropped (the lease keeper and the watcher die with their term).
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Member {
    /// A member of the fleet `settings` describes, reaching etcd through `client`.
    pub fn new(settings: Settings, client: Client, host: Rc<dyn AccountHost>) -> Member {
        let timing = Timing::new(settings.lease_ttl_secs);
        let admin = Admin::new(client, &settings.prefix, timing.call_timeout);
        Member {
            settings,
            timing,
            admin,
            host,
            owned: Rc::default(),
            stats: Rc::default(),
        }
    }

    /// Starts the member on the current thread's local task set.
    pub fn spawn(self) -> MemberHandle {
        let (tx, rx) = watch::channel(false);
        let owned = self.owned.clone();
        let stats = self.stats.clone();
        let task = tokio::task::spawn_local(self.run(rx));
        MemberHandle {
            stop: tx,
            task,
            owned,
            stats,
        }
    }

    /// Runs terms until told to stop.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let wake = Rc::new(Notify::new());
        let _watcher = AbortOnDrop(tokio::task::spawn_local(watch_fleet(
            self.admin.client(),
            self.admin.keys().all().to_owned(),
            wake.clone(),
        )));
        let mut previous: Option<i64> = None;
        loop {
            if *stop.borrow() {
                return;
            }
            match self.term(&mut stop, &wake, &mut previous).await {
                Ended::Stop => return,
                Ended::Again => {
                    tokio::select! {
                        _ = stop.changed() => return,
                        _ = sleep(self.timing.renew_every) => {}
                    }
                }
            }
        }
    }

    /// One lease's life.
    async fn term(
        &self,
        stop: &mut watch::Receiver<bool>,
        wake: &Notify,
        previous: &mut Option<i64>,
    ) -> Ended {
        let t = self.timing;
        let mut client = self.admin.client();
        // A lease of an earlier term that was fenced: its accounts are logged out; give
        // them back now rather than when it expires.
        if let Some(old) = *previous {
            if timed(t.call_timeout, "revoking a lease", client.lease_revoke(old))
                .await
                .is_ok()
            {
                *previous = None;
            }
        }
        let sent = Instant::now();
        let ttl = i64::try_from(t.ttl.as_secs()).unwrap_or(i64::MAX);
        let lease = match timed(
            t.call_timeout,
            "granting a lease",
            client.lease_grant(ttl, None),
        )
        .await
        {
            Ok(r) => r.id(),
            Err(e) => {
                tracing::warn!(error = %e, "fleet: no lease");
                return Ended::Again;
            }
        };
        let alive = Rc::new(Cell::new(sent));
        let lost = Rc::new(Cell::new(false));
        let _keeper = AbortOnDrop(tokio::task::spawn_local(keep_alive(
            client.clone(),
            lease,
            t,
            alive.clone(),
            lost.clone(),
            self.stats.clone(),
        )));
        let fenced = || lost.get() || Instant::now() >= alive.get() + t.fence_after;

        // Register; a live member of the same name (an earlier run whose lease has not
        // expired yet, or a misconfigured twin) is waited out.
        loop {
            match self.register(lease).await {
                Ok(true) => break,
                Ok(false) => tracing::warn!(
                    member = %self.settings.name,
                    "fleet: a member of this name is live; waiting for its lease to end"
                ),
                Err(e) => tracing::warn!(error = %e, "fleet: cannot register"),
            }
            if fenced() {
                *previous = Some(lease);
                return Ended::Again;
            }
            tokio::select! {
                _ = stop.changed() => {
                    self.revoke(lease).await;
                    return Ended::Stop;
                }
                _ = wake.notified() => {}
                _ = sleep(t.renew_every) => {}
            }
        }
        tracing::info!(member = %self.settings.name, lease, "fleet: joined");
        self.stats
            .terms
            .set(self.stats.terms.get().saturating_add(1));

        let mut pending: BTreeSet<String> = BTreeSet::new();
        loop {
            if fenced() {
                self.fence(lease).await;
                *previous = Some(lease);
                return Ended::Again;
            }
            let deadline = alive.get() + t.fence_after;
            let stopping = tokio::select! {
                biased;
                _ = stop.changed() => true,
                _ = sleep_until(deadline) => continue,
                r = self.round(lease, &mut pending) => {
                    if let Err(e) = r {
                        tracing::warn!(error = %e, "fleet: round failed");
                    }
                    false
                }
            };
            let stopping = stopping
                || tokio::select! {
                    biased;
                    _ = stop.changed() => true,
                    _ = sleep_until(deadline) => continue,
                    _ = wake.notified() => false,
                    _ = sleep(t.poll_every) => false,
                };
            if stopping {
                self.stop_all().await;
                self.revoke(lease).await;
                tracing::info!(member = %self.settings.name, "fleet: left");
                return Ended::Stop;
            }
        }
    }

    /// Revokes `lease` (the accounts are logged out): etcd deletes its keys at once and
    /// the other members claim the accounts without waiting for it to expire.
    async fn revoke(&self, lease: i64) {
        let r = retried(self.timing.ttl / 2, "revoking the lease", || {
            let mut client = self.admin.client();
            async move { client.lease_revoke(lease).await }
        })
        .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "fleet: the lease will end when it expires");
        }
    }

    /// Creates `members/<name>` bound to `lease` unless it exists.
    async fn register(&self, lease: i64) -> Result<bool, FleetError> {
        let key = self.admin.keys().member(&self.settings.name);
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key,
                lease.to_string(),
                Some(PutOptions::new().with_lease(lease)),
            )]);
        let mut client = self.admin.client();
        let r = timed(self.timing.call_timeout, "registering", client.txn(txn)).await?;
        Ok(r.succeeded())
    }

    /// Logs every account out (the lease can no longer be trusted).
    async fn fence(&self, lease: i64) {
        self.stats
            .fences
            .set(self.stats.fences.get().saturating_add(1));
        let n = self.owned.borrow().len();
        tracing::warn!(
            member = %self.settings.name,
            lease,
            accounts = n,
            "fleet: lease not renewed in time; logging every account out"
        );
        self.stop_all().await;
    }

    /// Logs out every account this member holds.
    async fn stop_all(&self) {
        loop {
            let next = self.owned.borrow().iter().next().cloned();
            let Some(user) = next else { return };
            self.host.stop(&user).await;
            self.owned.borrow_mut().remove(&user);
        }
    }

    /// One round: read the fleet, drop what is no longer ours, give up the excess, claim
    /// a fair share, retry logins that failed.
    async fn round(&self, lease: i64, pending: &mut BTreeSet<String>) -> Result<(), FleetError> {
        let me = self.settings.name.as_str();
        let snapshot = self.admin.read().await?;
        if snapshot.members.get(me) != Some(&lease) {
            // Our member key is gone: so is the lease. The fence check ends the term.
            return Err(FleetError("this member's key is gone from etcd".into()));
        }
        let ours = |s: &Snapshot, user: &str| {
            s.accounts.contains(user)
                && s.owners
                    .get(user)
                    .is_some_and(|(o, l)| o == me && *l == lease)
        };
        // Accounts we hold that are no longer ours (removed from the fleet).
        let held: Vec<String> = self.owned.borrow().iter().cloned().collect();
        for user in held.iter().filter(|u| !ours(&snapshot, u)) {
            self.give_up(user, lease).await?;
            pending.remove(user);
        }
        // Owner keys of ours we do not hold (a round cut short, or a removed account).
        let stray: Vec<String> = snapshot
            .owners
            .iter()
            .filter(|(u, (o, l))| o == me && *l == lease && !self.owned.borrow().contains(*u))
            .map(|(u, _)| u.clone())
            .collect();
        for user in stray {
            if snapshot.accounts.contains(&user) {
                self.take(&user, pending).await;
            } else {
                self.give_up(&user, lease).await?;
            }
        }
        let mine = self.owned.borrow().clone();
        let p = plan(&snapshot, me, &mine);
        if !p.release.is_empty() {
            tracing::info!(
                accounts = p.release.len(),
                "fleet: giving accounts to other members"
            );
            for batch in p.release.chunks(BATCH) {
                self.give_up_all(batch, lease).await?;
                for user in batch {
                    pending.remove(user);
                }
            }
        }
        if p.claim > 0 {
            let mut free: Vec<&String> = snapshot.unowned().collect();
            fastrand::shuffle(&mut free);
            free.truncate(p.claim);
            for batch in free.chunks(BATCH) {
                let won = self.claim(batch, lease).await?;
                self.take_all(&won, pending).await;
            }
        }
        let retry: Vec<String> = std::mem::take(pending).into_iter().collect();
        self.take_all(&retry, pending).await;
        Ok(())
    }

    /// Claims `users` for `lease`, in one transaction of one nested transaction per
    /// account (the account exists and nobody owns it); returns those won.
    async fn claim(&self, users: &[&String], lease: i64) -> Result<Vec<String>, FleetError> {
        let keys = self.admin.keys();
        let ops: Vec<TxnOp> = users
            .iter()
            .map(|user| {
                let owner = keys.owner(user);
                TxnOp::txn(
                    Txn::new()
                        .when([
                            Compare::create_revision(owner.clone(), CompareOp::Equal, 0),
                            Compare::create_revision(keys.account(user), CompareOp::Greater, 0),
                        ])
                        .and_then([TxnOp::put(
                            owner,
                            self.settings.name.clone(),
                            Some(PutOptions::new().with_lease(lease)),
                        )]),
                )
            })
            .collect();
        let mut client = self.admin.client();
        let r = timed(
            self.timing.call_timeout,
            "claiming",
            client.txn(Txn::new().and_then(ops)),
        )
        .await?;
        Ok(users
            .iter()
            .zip(r.op_responses())
            .filter(|(_, op)| matches!(op, TxnOpResponse::Txn(t) if t.succeeded()))
            .map(|(u, _)| (*u).clone())
            .collect())
    }

    /// Logs `user` in (it is ours); a failure is retried next round.
    async fn take(&self, user: &str, pending: &mut BTreeSet<String>) {
        self.take_all(&[user.to_owned()], pending).await;
    }

    /// Logs `users` in (they are ours), all at once; failures are retried next round.
    async fn take_all(&self, users: &[String], pending: &mut BTreeSet<String>) {
        // Held before the logins start, so a fence that cuts in logs them out.
        self.owned.borrow_mut().extend(users.iter().cloned());
        let results =
            futures_util::future::join_all(users.iter().map(|u| self.host.start(u))).await;
        for (user, r) in users.iter().zip(results) {
            if let Err(e) = r {
                tracing::warn!(user = %user, error = %crate::text::clean(&e), "fleet: login failed; retrying next round");
                pending.insert(user.clone());
            }
        }
    }

    /// Logs `user` out, then deletes its owner key if it still holds our lease.
    async fn give_up(&self, user: &str, lease: i64) -> Result<(), FleetError> {
        self.give_up_all(&[user.to_owned()], lease).await
    }

    /// Logs `users` out, then deletes their owner keys that still hold our lease, in one
    /// transaction.
    async fn give_up_all(&self, users: &[String], lease: i64) -> Result<(), FleetError> {
        for user in users {
            self.host.stop(user).await;
            self.owned.borrow_mut().remove(user);
        }
        let keys = self.admin.keys();
        let ops: Vec<TxnOp> = users
            .iter()
            .map(|user| {
                let owner = keys.owner(user);
                TxnOp::txn(
                    Txn::new()
                        .when([Compare::lease(owner.clone(), CompareOp::Equal, lease)])
                        .and_then([TxnOp::delete(owner, None)]),
                )
            })
            .collect();
        let mut client = self.admin.client();
        timed(
            self.timing.call_timeout,
            "releasing",
            client.txn(Txn::new().and_then(ops)),
        )
        .await?;
        Ok(())
    }
}

/// Renews `lease` every [`Timing::renew_every`]; `alive` is set to when the last renewal
/// that succeeded was sent, `lost` when etcd says the lease is gone.
async fn keep_alive(
    mut client: Client,
    lease: i64,
    t: Timing,
    alive: Rc<Cell<Instant>>,
    lost: Rc<Cell<bool>>,
    stats: Rc<Stats>,
) {
    let mut stream: Option<(LeaseKeeper, LeaseKeepAliveStream)> = None;
    loop {
        let sent = Instant::now();
        // Some(true): renewed; Some(false): etcd says the lease is gone; None: no answer.
        let once = async {
            match stream.as_mut() {
                Some((keeper, responses)) => {
                    keeper.keep_alive().await.ok()?;
                    let r = responses.message().await.ok()??;
                    Some(r.ttl() > 0)
                }
                // Opening the stream sends the first renewal and reads its answer.
                None => match client.lease_keep_alive(lease).await {
                    Ok(s) => {
                        stream = Some(s);
                        Some(true)
                    }
                    Err(etcd_client::Error::LeaseKeepAliveError(_)) => Some(false),
                    Err(_) => None,
                },
            }
        };
        match tokio::time::timeout(t.call_timeout, once).await {
            Ok(Some(true)) => {
                alive.set(sent);
                stats.renewals.set(stats.renewals.get().saturating_add(1));
                sleep_until(sent + t.renew_every).await;
            }
            Ok(Some(false)) => {
                lost.set(true);
                return;
            }
            // An error, the end of the stream or no answer in time: a new stream, soon (an
            // answer that comes late must not be taken for the next one's; the next
            // attempt may reach another etcd member).
            _ => {
                stream = None;
                sleep(RETRY_PAUSE).await;
            }
        }
    }
}

/// Wakes the member whenever a key of the fleet changes; rounds still run every
/// [`Timing::poll_every`] when the watch is down.
async fn watch_fleet(mut client: Client, prefix: String, wake: Rc<Notify>) {
    loop {
        if let Ok(mut stream) = client
            .watch(prefix.as_str(), Some(WatchOptions::new().with_prefix()))
            .await
        {
            while let Ok(Some(_)) = stream.message().await {
                wake.notify_one();
            }
        }
        sleep(Duration::from_secs(1)).await;
    }
}
