//! Fleet mode end to end: a three-member etcd cluster on loopback ports, real `imlinkd`
//! processes with many accounts and a key-file provider, one devserver with the
//! single-device policy, 300 accounts. Every step ends with each account online exactly
//! once, owned by the member that holds it, and the devserver's count of kicks pushed to a
//! live connection at zero.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/etcd.rs"]
mod etcd;
mod support;

use etcd::EtcdCluster;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};
use support::daemon::Daemon;
use support::*;

const ACCOUNTS: usize = 300;
const TTL: u64 = 6;

struct Fleet {
    server: DevServer,
    key_file: tempfile::NamedTempFile,
    daemons: BTreeMap<&'static str, Daemon>,
}

fn key_file() -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), KEY).unwrap();
    std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(0o600)).unwrap();
    f
}

fn toml_list(endpoints: &[String]) -> String {
    format!(
        "[{}]",
        endpoints
            .iter()
            .map(|e| format!("{e:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

impl Fleet {
    fn start_member(&mut self, name: &'static str, endpoints: &[String]) {
        let etcd = toml_list(endpoints);
        let key = format!("{:?}", self.key_file.path().display().to_string());
        let name_q = format!("{name:?}");
        let ttl = TTL.to_string();
        let d = Daemon::start(
            &self.server,
            &[
                ("accounts.multi", "true"),
                ("auth.provider", "\"key_file\""),
                ("auth.key_file", &key),
                ("fleet.etcd", &etcd),
                ("fleet.name", &name_q),
                ("fleet.prefix", "\"/imlink-e2e/\""),
                ("fleet.lease_ttl_secs", &ttl),
                // 300 connections on one devserver: heartbeats at a calm pace.
                ("server.heartbeat_interval_ms", "5000"),
                ("server.heartbeat_timeout_ms", "20000"),
                ("server.login_timeout_ms", "10000"),
                ("server.connect_timeout_ms", "10000"),
                ("server.request_timeout_ms", "10000"),
                ("sdk.log_level", "\"info\""),
            ],
        );
        self.daemons.insert(name, d);
    }

    fn any(&self) -> &Daemon {
        self.daemons.values().next().unwrap()
    }

    fn status(&self) -> Value {
        self.any().client().ok("fleetStatus", json!({}))
    }

    /// `fleetStatus`, or an empty fleet while etcd does not answer (-32006).
    fn status_or_empty(&self) -> Value {
        match self.any().client().call("fleetStatus", json!({})) {
            Ok(v) => v,
            Err((-32006, _)) => json!({"members": [], "accounts": [], "unowned": []}),
            Err(e) => panic!("fleetStatus: {e:?}"),
        }
    }

    /// The accounts each daemon has online.
    fn online(&self) -> BTreeMap<&'static str, BTreeSet<String>> {
        self.daemons
            .iter()
            .map(|(name, d)| {
                let accounts = d.client().ok("listAccounts", json!({}))["accounts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|a| a["online"] == json!(true) && a["status"] == json!(1))
                    .map(|a| a["userID"].as_str().unwrap().to_owned())
                    .collect();
                (*name, accounts)
            })
            .collect()
    }

    fn kicks(&self) -> u64 {
        self.server.stats()["multiDeviceKicksPushed"]
            .as_u64()
            .unwrap()
    }

    /// Waits until every account is online on exactly one of `members`, that member owns
    /// it in etcd, the server holds exactly one online login of it, and each member holds
    /// its share within ±10 %.
    fn wait_settled(&self, members: &[&str], timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let share = ACCOUNTS / members.len();
        loop {
            let online = self.online();
            let st = self.status_or_empty();
            let mut owner_of: BTreeMap<String, String> = BTreeMap::new();
            for a in st["accounts"].as_array().unwrap() {
                owner_of.insert(
                    a["userID"].as_str().unwrap().into(),
                    a["owner"].as_str().unwrap().into(),
                );
            }
            let total: usize = online.values().map(BTreeSet::len).sum();
            let consistent = online.iter().all(|(name, set)| {
                set.iter()
                    .all(|u| owner_of.get(u).is_some_and(|o| o == name))
            });
            let spread = members.iter().all(|m| {
                let n = online.get(m).map_or(0, BTreeSet::len);
                n * 10 >= share * 9 && n * 10 <= share * 11
            });
            let others_idle = online
                .iter()
                .filter(|(n, _)| !members.contains(n))
                .all(|(_, s)| s.is_empty());
            let server_online = self.server.stats()["loginsOnline"].as_u64().unwrap();
            let live: Vec<&str> = st["members"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["name"].as_str().unwrap())
                .collect();
            if total == ACCOUNTS
                && consistent
                && spread
                && others_idle
                && server_online == ACCOUNTS as u64
                && owner_of.len() == ACCOUNTS
                && live == members
            {
                // Exactly one online login of each account on the server.
                let mut per_user: BTreeMap<String, usize> = BTreeMap::new();
                for s in self.server.sessions() {
                    if s["state"] == "online" {
                        *per_user
                            .entry(s["userID"].as_str().unwrap().into())
                            .or_default() += 1;
                    }
                }
                assert_eq!(per_user.len(), ACCOUNTS);
                assert!(per_user.values().all(|n| *n == 1), "{per_user:?}");
                return;
            }
            if Instant::now() >= deadline {
                for (n, d) in &self.daemons {
                    let log = d.log();
                    let tail: Vec<&str> = log.lines().rev().take(15).collect();
                    eprintln!(
                        "--- {n}:\n{}",
                        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                    );
                }
            }
            assert!(
                Instant::now() < deadline,
                "the fleet did not settle on {members:?}: online {:?}, members {}, server online {server_online}",
                online.iter().map(|(n, s)| (n, s.len())).collect::<Vec<_>>(),
                st["members"]
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn ctl(d: &Daemon, args: &[&str]) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_imlinkctl"))
        .arg("--socket")
        .arg(&d.socket)
        .args(args)
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The lease of each live member, from etcd (`members/<name>` holds its lease id).
fn leases(f: &Fleet, cluster: &EtcdCluster, which: usize) -> BTreeMap<String, String> {
    let o = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", cluster.endpoint(which)))
        .args(["get", "--prefix", "/imlink-e2e/members/"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    let _ = f;
    lines
        .chunks(2)
        .map(|kv| (kv[0].to_owned(), kv.get(1).unwrap_or(&"").to_string()))
        .collect()
}

/// The remaining TTL of lease `id` (decimal), or None when it is gone.
fn lease_remaining(cluster: &EtcdCluster, which: usize, id: &str) -> Option<i64> {
    let hex = format!("{:x}", id.trim().parse::<i64>().unwrap());
    let o = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", cluster.endpoint(which)))
        .args(["lease", "timetolive", &hex])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    // "lease 694d… granted with TTL(4s), remaining(3s)" or "… already expired".
    let rest = text.split("remaining(").nth(1)?;
    rest.split('s').next()?.parse().ok()
}

#[test]
fn three_daemons_share_300_accounts_through_failures_without_a_kick() {
    let mut cluster = EtcdCluster::start(3);
    let all = cluster.endpoints();
    let mut f = Fleet {
        server: DevServer::start(&["--policy", "single"]),
        key_file: key_file(),
        daemons: BTreeMap::new(),
    };
    f.start_member("a", &all);
    f.start_member("b", &all);
    // c reaches etcd through one member only: stopping it partitions c.
    f.start_member("c", &[cluster.endpoint(2)]);

    // The accounts: one through imlinkctl, the rest through the API of any member.
    let (code, out, err) = ctl(&f.daemons["a"], &["fleet", "add", "acct0000"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "acct0000 added to the fleet\n");
    let (code, out, _) = ctl(&f.daemons["b"], &["fleet", "add", "acct0000"]);
    assert_eq!(
        (code, out.as_str()),
        (0, "acct0000 was already in the fleet\n")
    );
    {
        let mut c = f.daemons["b"].client();
        for i in 1..ACCOUNTS {
            let r = c.ok("fleetAdd", json!({"userID": format!("acct{i:04}")}));
            assert_eq!(r, json!({"changed": true}));
        }
        assert_eq!(c.err("fleetAdd", json!({"userID": "a b"})), 7003);
        assert_eq!(c.err("fleetAdd", json!({})), 6017);
    }
    f.wait_settled(&["a", "b", "c"], Duration::from_secs(60));
    assert_eq!(f.kicks(), 0);
    let (code, out, _) = ctl(&f.daemons["c"], &["fleet", "status"]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with("members: 3   accounts: 300 owned, 0 unowned\n"),
        "{out}"
    );

    // SIGKILL b: its accounts are online again on a and c within TTL + 5 s.
    let killed_at = Instant::now();
    f.daemons.get_mut("b").unwrap().kill();
    let b = f.daemons.remove("b").unwrap();
    f.wait_settled(&["a", "c"], Duration::from_secs(TTL + 5));
    eprintln!("failover after SIGKILL: {:?}", killed_at.elapsed());
    assert_eq!(f.kicks(), 0);

    // b comes back and d joins: each takes about a quarter.
    f.daemons.insert("b", b);
    f.daemons.get_mut("b").unwrap().start_again();
    f.start_member("d", &all);
    f.wait_settled(&["a", "b", "c", "d"], Duration::from_secs(60));
    assert_eq!(f.kicks(), 0);

    // One etcd member of three stops (not c's): nothing changes. Proof that time has
    // passed: every member's lease is still alive more than a TTL after the stop, so it
    // was renewed through the other etcd members, and no member changed its lease.
    let owners = f.status()["accounts"].clone();
    let before = leases(&f, &cluster, 1);
    assert_eq!(before.len(), 4, "{before:?}");
    cluster.stop_member(0);
    let stopped_at = Instant::now();
    wait_until(
        Duration::from_secs(30),
        "the leases renewed past a TTL",
        || {
            stopped_at.elapsed() > Duration::from_secs(TTL)
                && before
                    .values()
                    .all(|id| lease_remaining(&cluster, 1, id).is_some_and(|r| r > 0))
        },
    );
    assert_eq!(leases(&f, &cluster, 1), before);
    assert_eq!(f.status()["accounts"], owners);
    assert_eq!(f.kicks(), 0);
    cluster.start_member(0);
    cluster.wait_healthy(&[0, 1, 2]);

    // c's only etcd member stops: c logs its accounts out before its lease expires; the
    // others take them once it has.
    let c_before = f.online()["c"].clone();
    assert!(!c_before.is_empty());
    cluster.stop_member(2);
    let t0 = Instant::now();
    wait_until(Duration::from_secs(TTL + 10), "c logged out", || {
        if t0.elapsed() > Duration::from_secs(TTL + 9) {
            eprintln!("c's log:\n{}", f.daemons["c"].log());
        }
        f.daemons["c"].client().ok("listAccounts", json!({}))["accounts"]
            .as_array()
            .unwrap()
            .is_empty()
    });
    assert_eq!(f.kicks(), 0);
    let c = f.daemons.remove("c").unwrap();
    f.wait_settled(&["a", "b", "d"], Duration::from_secs(TTL + 10));
    assert_eq!(f.kicks(), 0);
    assert!(c.log().contains("lease not renewed in time"), "{}", c.log());
    f.daemons.insert("c", c);
    cluster.start_member(2);
    f.wait_settled(&["a", "b", "c", "d"], Duration::from_secs(60));
    assert_eq!(f.kicks(), 0);

    // Removing an account logs it out; adding it back logs it in again.
    let (code, out, _) = ctl(&f.daemons["d"], &["fleet", "remove", "acct0042"]);
    assert_eq!(
        (code, out.as_str()),
        (0, "acct0042 removed from the fleet\n")
    );
    wait_until(Duration::from_secs(10), "acct0042 logged out", || {
        f.online().values().all(|s| !s.contains("acct0042"))
    });
    let (code, _, _) = ctl(&f.daemons["d"], &["fleet", "add", "acct0042"]);
    assert_eq!(code, 0);
    f.wait_settled(&["a", "b", "c", "d"], Duration::from_secs(30));

    // Restart everything: the same accounts come back.
    for d in f.daemons.values_mut() {
        assert!(d.stop().success());
    }
    for d in f.daemons.values_mut() {
        d.start_again();
    }
    f.wait_settled(&["a", "b", "c", "d"], Duration::from_secs(60));
    let back: BTreeSet<String> = f.online().into_values().flatten().collect();
    assert_eq!(
        back,
        (0..ACCOUNTS)
            .map(|i| format!("acct{i:04}"))
            .collect::<BTreeSet<_>>()
    );
    assert_eq!(f.kicks(), 0);
}

#[test]
fn fleet_methods_without_fleet_mode_and_check_config() {
    let server = DevServer::start(&[]);
    let d = Daemon::start(&server, &[("accounts.multi", "true")]);
    let mut c = d.client();
    assert_eq!(c.err("fleetStatus", json!({})), -32005);
    assert_eq!(c.err("fleetAdd", json!({"userID": "alice"})), -32005);
    let (code, _, err) = ctl(&d, &["fleet", "status"]);
    assert_eq!(code, 1);
    assert!(err.contains("fleet mode is off"), "{err}");
    // --check-config names what fleet mode lacks.
    let (status, text) = d.run_second(&["--check-config"]);
    assert!(status.success(), "{text}");
    let o = Command::new(env!("CARGO_BIN_EXE_imlinkd"))
        .arg("--config")
        .arg(&d.config)
        .arg("--check-config")
        .env("IMLINK_FLEET__ETCD", "http://127.0.0.1:1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("needs auth.provider"), "{err}");
}
