//! `make bench-fleet`: the fleet's failover time and how fast accounts move between
//! members, against a real three-member etcd cluster on loopback ports.
//!
//!     bench_fleet [--smoke] [--ttl SECS] [--accounts N] [--out bench/results/fleet.md]
//!
//! Members run in this process with hosts that log in instantly (a shared table that
//! counts a kick whenever a login finds the account held by another host), so the figures
//! are those of the ownership machinery — leases, watches, transactions, the plan — not
//! of the IM server's logins, which add their own time per account.
//!
//! - **failover**: three members share the accounts; one is killed (its task aborted: no
//!   logout, no revoke, like SIGKILL); the time until every account is held again, over
//!   several trials: median and p99, and the same as a multiple of the lease TTL (the
//!   anchor: nothing can fail over before the lease expires).
//! - **moves per second**: a fourth member joins three that share the accounts; the time
//!   until it holds its quarter; moves ÷ time. And a member leaving gracefully (logout,
//!   revoke): the time until the others hold its accounts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/etcd.rs"]
mod etcd;

use etcd::EtcdCluster;
use futures_util::future::LocalBoxFuture;
use imlink::fleet::{admin, AccountHost, Admin, Member, MemberHandle, Settings};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Default)]
struct Server {
    holders: RefCell<BTreeMap<String, String>>,
    kicks: Cell<u64>,
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

struct Bench {
    endpoints: Vec<String>,
    ttl: u64,
    server: Rc<Server>,
    prefix: String,
}

impl Bench {
    async fn member(&self, name: &str) -> MemberHandle {
        let client = admin::connect(&self.endpoints, Duration::from_secs(2))
            .await
            .unwrap();
        let settings = Settings {
            endpoints: self.endpoints.clone(),
            name: name.into(),
            prefix: self.prefix.clone(),
            lease_ttl_secs: self.ttl,
        };
        let host = Rc::new(Host {
            name: name.into(),
            server: self.server.clone(),
        });
        Member::new(settings, client, host).spawn()
    }

    fn held_by(&self, name: &str) -> usize {
        self.server
            .holders
            .borrow()
            .values()
            .filter(|h| *h == name)
            .count()
    }

    async fn wait(&self, what: &str, f: impl Fn(&Bench) -> bool) -> Duration {
        let start = Instant::now();
        while !f(self) {
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "timed out: {what}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        start.elapsed()
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let smoke = args.iter().any(|a| a == "--smoke");
    let ttl: u64 = flag("--ttl").map_or(if smoke { 2 } else { 4 }, |v| v.parse().unwrap());
    let accounts: usize =
        flag("--accounts").map_or(if smoke { 30 } else { 300 }, |v| v.parse().unwrap());
    let trials = if smoke { 2 } else { 10 };
    let out = flag("--out");

    let cluster = EtcdCluster::start(3);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let rows = tokio::task::LocalSet::new().block_on(&rt, async {
        let mut rows: Vec<(String, String, String, String)> = Vec::new();
        let mut failovers = Vec::new();
        let mut join_moves = Vec::new();
        let mut leaves = Vec::new();
        for trial in 0..trials {
            let b = Bench {
                endpoints: cluster.endpoints(),
                ttl,
                server: Rc::new(Server::default()),
                prefix: format!("/bench-{trial}/"),
            };
            let admin = Admin::new(
                admin::connect(&b.endpoints, Duration::from_secs(2))
                    .await
                    .unwrap(),
                &b.prefix,
                Duration::from_secs(2),
            );
            for i in 0..accounts {
                admin.add(&format!("acct{i:05}")).await.unwrap();
            }
            let x = b.member("x").await;
            let y = b.member("y").await;
            let z = b.member("z").await;
            b.wait("three members share", |b| {
                b.server.holders.borrow().len() == accounts
                    && ["x", "y", "z"]
                        .iter()
                        .all(|m| b.held_by(m).abs_diff(accounts / 3) <= 1)
            })
            .await;
            // A fourth member joins: the moves it causes, per second.
            let w = b.member("w").await;
            let quarter = accounts / 4;
            let t = b
                .wait("the newcomer takes its quarter", |b| {
                    b.server.holders.borrow().len() == accounts
                        && ["w", "x", "y", "z"]
                            .iter()
                            .all(|m| b.held_by(m).abs_diff(quarter) <= 1)
                })
                .await;
            join_moves.push((b.held_by("w"), t));
            // One leaves gracefully: logout, revoke, the others claim at once.
            let gone = b.held_by("w");
            w.stop().await;
            let t = b
                .wait("a graceful leave is taken over", |b| {
                    b.server.holders.borrow().len() == accounts
                })
                .await;
            leaves.push((gone, t));
            b.wait("three members share again", |b| {
                ["x", "y", "z"]
                    .iter()
                    .all(|m| b.held_by(m).abs_diff(accounts / 3) <= 1)
            })
            .await;
            // SIGKILL-like: its connections drop, nothing is revoked.
            y.kill();
            b.server.holders.borrow_mut().retain(|_, h| h != "y");
            let t = b
                .wait("failover", |b| b.server.holders.borrow().len() == accounts)
                .await;
            failovers.push(t);
            assert_eq!(b.server.kicks.get(), 0, "a kick during the bench");
            x.stop().await;
            z.stop().await;
        }
        failovers.sort();
        let ttl_d = Duration::from_secs(ttl);
        for (label, p) in [("median", 0.5), ("p99", 0.99)] {
            let f = percentile(&failovers, p);
            rows.push((
                format!("failover after a kill, {label} ({trials} trials, {accounts} accounts)"),
                secs(f),
                format!("{} (lease TTL)", secs(ttl_d)),
                format!("{:.2}×", f.as_secs_f64() / ttl_d.as_secs_f64()),
            ));
        }
        let rate = |v: &[(usize, Duration)]| {
            let moved: usize = v.iter().map(|(n, _)| n).sum();
            let time: f64 = v.iter().map(|(_, t)| t.as_secs_f64()).sum();
            (moved as f64 / time.max(1e-9), moved / v.len().max(1))
        };
        let (r, per) = rate(&join_moves);
        rows.push((
            format!("a member joins: accounts moved per second ({per} per join)"),
            format!("{r:.0} /s"),
            String::new(),
            String::new(),
        ));
        let (r, per) = rate(&leaves);
        rows.push((
            format!("a member leaves gracefully: accounts taken over per second ({per} per leave)"),
            format!("{r:.0} /s"),
            String::new(),
            String::new(),
        ));
        rows.push((
            "kicks (logins of an account held elsewhere)".into(),
            "0".into(),
            String::new(),
            String::new(),
        ));
        rows
    });
    let mut table =
        String::from("| figure | fleet | anchor | ratio |\n| --- | --- | --- | --- |\n");
    for (f, v, a, r) in rows {
        table.push_str(&format!("| {f} | {v} | {a} | {r} |\n"));
    }
    table.push_str(&format!(
        "\nlease TTL {ttl} s, {accounts} accounts, etcd {} on loopback; took {:.0} s\n",
        etcd_version(),
        started.elapsed().as_secs_f64()
    ));
    print!("{table}");
    if let Some(path) = out {
        if let Some(dir) = std::path::Path::new(&path).parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(&path, &table).unwrap();
    }
}

fn etcd_version() -> String {
    std::process::Command::new("etcd")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(|l| l.trim_start_matches("etcd Version: ").to_owned())
        })
        .unwrap_or_else(|| "?".into())
}
