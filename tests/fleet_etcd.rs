//! The fleet's ownership logic against a real three-member etcd cluster, with in-process
//! account hosts that log in to a shared model of the server's single-device policy: a
//! login of an account held by another host is a kick, and every test ends with none.
//! (tests/fleet_daemons.rs runs the same scenarios with real daemons and a devserver.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/etcd.rs"]
mod etcd;

use etcd::EtcdCluster;
use futures_util::future::LocalBoxFuture;
use imlink::fleet::{admin, AccountHost, Admin, Member, MemberHandle, Settings};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::Duration;
use tokio::time::Instant;

const TTL: u64 = 4;
const ACCOUNTS: usize = 300;

/// The server: who holds each account, and the kicks its single-device policy made.
#[derive(Default)]
struct Server {
    holders: RefCell<BTreeMap<String, String>>,
    kicks: Cell<u64>,
}

impl Server {
    fn held_by(&self, host: &str) -> usize {
        self.holders
            .borrow()
            .values()
            .filter(|h| *h == host)
            .count()
    }
    fn held(&self) -> usize {
        self.holders.borrow().len()
    }
    /// A host's process died: the server drops its connections.
    fn drop_host(&self, host: &str) {
        self.holders.borrow_mut().retain(|_, h| h != host);
    }
}

struct Host {
    name: String,
    server: Rc<Server>,
}

impl AccountHost for Host {
    fn start<'a>(&'a self, user: &'a str) -> LocalBoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let mut h = self.server.holders.borrow_mut();
            if h.get(user).is_some_and(|o| *o != self.name) {
                self.server.kicks.set(self.server.kicks.get() + 1);
            }
            h.insert(user.to_owned(), self.name.clone());
            Ok(())
        })
    }
    fn stop<'a>(&'a self, user: &'a str) -> LocalBoxFuture<'a, ()> {
        Box::pin(async move {
            let mut h = self.server.holders.borrow_mut();
            if h.get(user).is_some_and(|o| *o == self.name) {
                h.remove(user);
            }
        })
    }
}

async fn member(name: &str, endpoints: Vec<String>, server: &Rc<Server>) -> MemberHandle {
    let client = admin::connect(&endpoints, Duration::from_secs(2))
        .await
        .unwrap();
    let settings = Settings {
        endpoints,
        name: name.into(),
        prefix: "/imlink-test/".into(),
        lease_ttl_secs: TTL,
    };
    let host = Rc::new(Host {
        name: name.into(),
        server: server.clone(),
    });
    Member::new(settings, client, host).spawn()
}

async fn admin_of(endpoints: &[String]) -> Admin {
    let client = admin::connect(endpoints, Duration::from_secs(2))
        .await
        .unwrap();
    Admin::new(client, "/imlink-test/", Duration::from_secs(2))
}

/// Polls `f` every 20 ms until it is true; panics with `what` after `timeout`.
async fn wait_for(timeout: Duration, what: &str, f: impl FnMut() -> bool) {
    if wait_opt(timeout, f).await.is_none() {
        panic!("timed out waiting for {what}");
    }
}

/// Polls `f` every 20 ms until it is true; None after `timeout`.
async fn wait_opt(timeout: Duration, mut f: impl FnMut() -> bool) -> Option<()> {
    let deadline = Instant::now() + timeout;
    while !f() {
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Some(())
}

/// Waits until every account is held by exactly the member etcd says owns it, each of
/// `hosts` holding its share within ±10 %.
async fn wait_settled(admin: &Admin, server: &Server, hosts: &[&str], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let share = ACCOUNTS / hosts.len();
    loop {
        let st = admin.status().await;
        let ok = st.as_ref().is_ok_and(|st| {
            let holders = server.holders.borrow();
            st.unowned.is_empty()
                && st.accounts.len() == ACCOUNTS
                && holders.len() == ACCOUNTS
                && st
                    .accounts
                    .iter()
                    .all(|a| holders.get(&a.user_id) == Some(&a.owner))
                && st.members.len() == hosts.len()
                && hosts.iter().all(|h| {
                    let n = server.held_by(h);
                    n * 10 >= share * 9 && n * 10 <= share * 11
                })
        });
        if ok {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the fleet did not settle on {hosts:?}: {st:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn run(f: impl std::future::Future<Output = ()>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio::task::LocalSet::new().block_on(&rt, f);
}

fn users() -> Vec<String> {
    (0..ACCOUNTS).map(|i| format!("acct{i:04}")).collect()
}

#[test]
fn members_share_accounts_fail_over_rebalance_and_come_back() {
    let mut cluster = EtcdCluster::start(3);
    run(async move {
        let eps = cluster.endpoints();
        let admin = admin_of(&eps).await;
        for u in users() {
            assert!(admin.add(&u).await.unwrap());
        }
        assert!(
            !admin.add("acct0000").await.unwrap(),
            "a second add is no change"
        );
        let server = Rc::new(Server::default());
        let a = member("a", eps.clone(), &server).await;
        let b = member("b", eps.clone(), &server).await;
        let c = member("c", eps.clone(), &server).await;
        wait_settled(&admin, &server, &["a", "b", "c"], Duration::from_secs(30)).await;
        assert_eq!(
            a.owned().len() + b.owned().len() + c.owned().len(),
            ACCOUNTS
        );

        // SIGKILL b: its connections drop, its lease runs out, a and c take its accounts.
        b.kill();
        server.drop_host("b");
        wait_settled(&admin, &server, &["a", "c"], Duration::from_secs(TTL + 5)).await;
        assert_eq!(server.kicks.get(), 0);

        // b comes back and d joins: each takes a quarter, moved logout-then-login.
        let b = member("b", eps.clone(), &server).await;
        let d = member("d", eps.clone(), &server).await;
        wait_settled(
            &admin,
            &server,
            &["a", "b", "c", "d"],
            Duration::from_secs(30),
        )
        .await;
        assert_eq!(server.kicks.get(), 0);

        // One etcd member of three stops: nothing changes. Proof that the time has passed:
        // every member renews its lease enough times through the other two to cover the
        // fencing delay twice over.
        let owners_before = admin.status().await.unwrap().accounts;
        let members = [&a, &b, &c, &d];
        let before: Vec<(u64, u64, u64)> = members
            .iter()
            .map(|m| {
                let s = m.stats();
                (s.renewals.get(), s.fences.get(), s.terms.get())
            })
            .collect();
        cluster.stop_member(2);
        wait_opt(Duration::from_secs(30), || {
            members
                .iter()
                .zip(&before)
                .all(|(m, (r, _, _))| m.stats().renewals.get() >= r + 8)
        })
        .await
        .unwrap_or_else(|| {
            let now: Vec<(u64, u64, u64)> = members
                .iter()
                .map(|m| {
                    (
                        m.stats().renewals.get(),
                        m.stats().fences.get(),
                        m.stats().terms.get(),
                    )
                })
                .collect();
            panic!("renewals stalled: before {before:?}, now {now:?}");
        });
        for (m, (_, f, t)) in members.iter().zip(&before) {
            assert_eq!(m.stats().fences.get(), *f, "no member fenced");
            assert_eq!(m.stats().terms.get(), *t, "no member changed its lease");
        }
        assert_eq!(admin.status().await.unwrap().accounts, owners_before);

        // Removing an account logs it out; adding it back logs it in again.
        let owner = owners_before[0].owner.clone();
        let user = owners_before[0].user_id.clone();
        assert!(admin.remove(&user).await.unwrap());
        wait_for(
            Duration::from_secs(10),
            "the removed account logged out",
            || !server.holders.borrow().contains_key(&user),
        )
        .await;
        let st = admin.status().await.unwrap();
        assert!(st.accounts.iter().all(|a| a.user_id != user));
        assert!(!st.unowned.contains(&user));
        assert!(!admin.remove(&user).await.unwrap());
        assert!(admin.add(&user).await.unwrap());
        wait_settled(
            &admin,
            &server,
            &["a", "b", "c", "d"],
            Duration::from_secs(10),
        )
        .await;
        let _ = owner;

        // Restart everything: each member logs out and gives its lease back; new members
        // log the same accounts in again.
        for m in [a, b, c, d] {
            m.stop().await;
        }
        assert_eq!(server.held(), 0, "a stopped member logs its accounts out");
        let st = admin.status().await.unwrap();
        assert!(st.members.is_empty() && st.accounts.is_empty());
        assert_eq!(st.unowned.len(), ACCOUNTS);
        let eps2: Vec<String> = eps[..2].to_vec();
        let _a = member("a", eps2.clone(), &server).await;
        let _b = member("b", eps2.clone(), &server).await;
        let _c = member("c", eps2.clone(), &server).await;
        wait_settled(&admin, &server, &["a", "b", "c"], Duration::from_secs(30)).await;
        let back: BTreeSet<String> = server.holders.borrow().keys().cloned().collect();
        assert_eq!(back, users().into_iter().collect());
        assert_eq!(server.kicks.get(), 0);
    });
}

#[test]
fn a_member_cut_off_from_etcd_logs_out_before_its_lease_expires() {
    let mut cluster = EtcdCluster::start(3);
    run(async move {
        let eps = cluster.endpoints();
        let admin = admin_of(&eps[1..]).await;
        for u in users() {
            admin.add(&u).await.unwrap();
        }
        let server = Rc::new(Server::default());
        // Each member reaches etcd through one member only.
        let a = member("a", vec![cluster.endpoint(0)], &server).await;
        let _b = member("b", vec![cluster.endpoint(1)], &server).await;
        let _c = member("c", vec![cluster.endpoint(2)], &server).await;
        wait_settled(&admin, &server, &["a", "b", "c"], Duration::from_secs(30)).await;
        let a_accounts = a.owned();
        let lease_a = admin.read().await.unwrap().members["a"];

        // a's only etcd member goes away: a cannot renew, logs everything out, and only
        // then (its lease expired) do b and c log its accounts in.
        cluster.stop_member(0);
        let mut fenced_at = None;
        let mut first_taken_at = None;
        let deadline = Instant::now() + Duration::from_secs(TTL + 10);
        while fenced_at.is_none() || server.held() < ACCOUNTS {
            let now = Instant::now();
            if fenced_at.is_none() && server.held_by("a") == 0 {
                fenced_at = Some(now);
            }
            if first_taken_at.is_none()
                && a_accounts
                    .iter()
                    .any(|u| server.holders.borrow().get(u).is_some_and(|h| h != "a"))
            {
                first_taken_at = Some(now);
            }
            assert_eq!(server.kicks.get(), 0, "two hosts held one account");
            assert!(now < deadline, "no failover: {:?}", admin.status().await);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (fenced_at, first_taken_at) = (fenced_at.unwrap(), first_taken_at.unwrap());
        assert!(fenced_at <= first_taken_at);
        assert!(a.stats().fences.get() >= 1);
        let st = admin.read().await.unwrap();
        assert!(!st.members.contains_key("a"), "a's lease {lease_a} expired");
        wait_settled(&admin, &server, &["b", "c"], Duration::from_secs(10)).await;

        // The partition heals: a joins again with a new lease and takes a third.
        cluster.start_member(0);
        wait_settled(&admin, &server, &["a", "b", "c"], Duration::from_secs(30)).await;
        assert_ne!(admin.read().await.unwrap().members["a"], lease_a);
        assert_eq!(server.kicks.get(), 0);
    });
}
