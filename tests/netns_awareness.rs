//! Network awareness end to end, in network namespaces: the devserver runs in one, the
//! daemon in another, joined by a veth pair with addresses in them only. The test takes
//! the daemon's end of the pair down and up (`ip link set`) and watches what the daemon
//! does, through its API socket (a path on the shared filesystem, reachable from here).
//!
//! Needs CAP_NET_ADMIN (CI runs as root); without it every test says so and returns.
//! The deadlines below are the acceptance criteria of network awareness (loss seen within
//! one heartbeat interval + 1 s, reconnect within 1 s of the link coming up); they are
//! waited on as deadlines. The figures each run measured are printed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::fd::AsFd;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::daemon::{Daemon, Rpc, T};
use support::{ticket, wait_until, DevServer, Options};

/// The server's address in its namespace, and the daemon's in its own.
const SERVER_IP: &str = "10.77.0.1";
const DAEMON_IP: &str = "10.77.0.2";

/// Does this process hold CAP_NET_ADMIN (bit 12 of the effective set)?
fn has_net_admin() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << 12) != 0)
}

/// Skips the test (with a message saying why) without CAP_NET_ADMIN.
macro_rules! need_net_admin {
    () => {
        if !has_net_admin() {
            eprintln!(
                "SKIPPED: this process lacks CAP_NET_ADMIN, which creating network namespaces and veth pairs needs (run as root)"
            );
            return;
        }
    };
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("run ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two namespaces joined by a veth pair; deleted on drop.
struct Net {
    server_ns: String,
    daemon_ns: String,
    /// The daemon's end of the pair (in `daemon_ns`).
    daemon_if: String,
}

impl Net {
    fn new() -> Net {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}{n}", std::process::id());
        let net = Net {
            server_ns: format!("imlk-s-{id}"),
            daemon_ns: format!("imlk-d-{id}"),
            daemon_if: format!("ild{id}"),
        };
        let server_if = format!("ils{id}");
        assert!(net.daemon_if.len() <= 15, "{}", net.daemon_if);
        ip(&["netns", "add", &net.server_ns]);
        ip(&["netns", "add", &net.daemon_ns]);
        ip(&[
            "link",
            "add",
            &server_if,
            "netns",
            &net.server_ns,
            "type",
            "veth",
            "peer",
            "name",
            &net.daemon_if,
            "netns",
            &net.daemon_ns,
        ]);
        for (ns, dev, addr) in [
            (&net.server_ns, &server_if, SERVER_IP),
            (&net.daemon_ns, &net.daemon_if, DAEMON_IP),
        ] {
            ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        net
    }

    /// Runs `f` on a thread inside namespace `ns` (processes it spawns start there).
    fn within<R: Send>(ns: &str, f: impl FnOnce() -> R + Send) -> R {
        std::thread::scope(|s| {
            s.spawn(|| {
                let file = std::fs::File::open(Path::new("/run/netns").join(ns)).unwrap();
                rustix::thread::move_into_link_name_space(
                    file.as_fd(),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )
                .unwrap();
                f()
            })
            .join()
            .unwrap()
        })
    }

    fn in_server<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        Net::within(&self.server_ns, f)
    }

    fn in_daemon<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        Net::within(&self.daemon_ns, f)
    }

    /// Takes the daemon's link down or up.
    fn link(&self, up: bool) {
        ip(&[
            "-n",
            &self.daemon_ns,
            "link",
            "set",
            &self.daemon_if,
            if up { "up" } else { "down" },
        ]);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in [&self.server_ns, &self.daemon_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// A devserver in the server's namespace, a daemon for it in the daemon's.
struct Setup {
    // Dropped first: the processes go before their namespaces.
    daemon: Daemon,
    server: DevServer,
    net: Net,
}

impl Setup {
    fn start(overrides: &[(&str, &str)]) -> Setup {
        let net = Net::new();
        let server = net.in_server(|| {
            DevServer::start_with(Options {
                listen: Some(format!("{SERVER_IP}:0").parse().unwrap()),
                ..Options::default()
            })
        });
        let daemon = net.in_daemon(|| Daemon::start(&server, overrides));
        Setup {
            daemon,
            server,
            net,
        }
    }

    /// The devserver's `/debug/stats`, asked from its namespace.
    fn stats(&self) -> Value {
        let server = &self.server;
        self.net.in_server(|| server.stats())
    }

    /// Logs alice in and waits for LOGINED and the network view.
    fn login(&self, c: &mut Rpc) {
        c.subscribe();
        c.ok(
            "login",
            json!({"userID": "alice", "userSig": ticket("alice", 3600)}),
        );
        c.wait_status(T, "logged in and online", |s| {
            s["loginStatus"] == 1 && s["online"] == true
        });
        // What happened so far is read: what follows is the test's.
        c.events_so_far();
    }
}

/// The settings of the loss tests: a heartbeat timeout far beyond the probe's deadline.
fn loss_settings(watch: bool) -> Vec<(&'static str, &'static str)> {
    vec![
        ("server.heartbeat_interval_ms", "1000"),
        ("server.heartbeat_timeout_ms", "8000"),
        ("network.watch", if watch { "true" } else { "false" }),
    ]
}

/// Link down while logged in: the time until `onConnectFailed`.
fn link_down_while_logged_in(watch: bool) -> Duration {
    let s = Setup::start(&loss_settings(watch));
    let mut c = s.daemon.client();
    s.login(&mut c);
    if watch {
        let st = c.wait_status(T, "the watcher to see a usable route", |s| {
            s["network"]["state"] == "usable"
        });
        assert_eq!(st["network"]["interface"], s.net.daemon_if.as_str(), "{st}");
    } else {
        assert_eq!(c.ok("status", json!({}))["network"]["state"], "off");
    }
    let down = Instant::now();
    s.net.link(false);
    let deadline = Duration::from_millis(1000 + 1000);
    if watch {
        // One heartbeat interval + 1 s.
        let (e, _) = c.wait_event("onConnectFailed", deadline);
        let took = down.elapsed();
        assert_eq!(e["data"]["code"], 9508, "{e}");
        let st = c.ok("status", json!({}));
        assert_eq!(st["network"]["state"], "unreachable", "{st}");
        assert!(st["network"]["changes"].as_u64().unwrap() >= 1, "{st}");
        assert!(
            s.daemon.log().contains("probing the connection"),
            "{}",
            s.daemon.log()
        );
        took
    } else {
        // Without the watcher nothing can notice before the heartbeat timeout (8 s, four
        // times the deadline): the window passes without a loss.
        wait_until(T, "the deadline to pass", || down.elapsed() >= deadline);
        let st = c.ok("status", json!({}));
        let early = c.events_so_far();
        assert_eq!(st["connection"], "connected", "{st}");
        assert!(
            early.iter().all(|e| e["event"] != "onConnectFailed"),
            "a loss was noticed within {deadline:?} without the watcher: {early:?}"
        );
        let (e, _) = c.wait_event("onConnectFailed", Duration::from_secs(15));
        assert_eq!(e["data"]["code"], 9508, "{e}");
        down.elapsed()
    }
}

#[test]
fn link_down_while_logged_in_is_noticed_within_a_heartbeat_interval() {
    need_net_admin!();
    let took = link_down_while_logged_in(true);
    eprintln!("network watching on: onConnectFailed {took:?} after the link went down (heartbeat interval 1 s, timeout 8 s)");
}

#[test]
fn without_watching_the_loss_waits_for_the_heartbeat_timeout() {
    need_net_admin!();
    let took = link_down_while_logged_in(false);
    eprintln!("network watching off: onConnectFailed {took:?} after the link went down (heartbeat interval 1 s, timeout 8 s)");
}

/// The link down for several backoff steps, then up: the time from up to
/// `onConnectSuccess`, and the wait the backoff had left when it came up.
fn down_for_several_steps_then_up(watch: bool) -> (Duration, u64) {
    let s = Setup::start(&[
        ("reconnect.initial_ms", "1000"),
        ("reconnect.max_ms", "30000"),
        ("reconnect.multiplier", "1.6"),
        ("reconnect.jitter", "0.2"),
        ("server.heartbeat_interval_ms", "1000"),
        ("server.heartbeat_timeout_ms", "3000"),
        ("network.watch", if watch { "true" } else { "false" }),
    ]);
    let mut c = s.daemon.client();
    s.login(&mut c);
    let logins_before = s.stats()["users"]["alice"]["logins"].as_u64().unwrap();
    s.net.link(false);
    // Four failed attempts: 1 + 1.6 + 2.56 s of backoff behind, about 4 s ahead.
    let st = c.wait_status(Duration::from_secs(30), "four failed attempts", |s| {
        s["connection"] == "waiting" && s["reconnectAttempt"].as_u64().unwrap_or(0) >= 4
    });
    let left = st["nextRetryMs"].as_u64().unwrap_or(0);
    let up = Instant::now();
    s.net.link(true);
    let within = if watch {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(30)
    };
    let (_, seen) = c.wait_event("onConnectSuccess", within);
    let took = up.elapsed();
    assert!(
        seen.iter().any(|n| n == "onConnectFailed"),
        "the loss was reported: {seen:?}"
    );
    let st = c.wait_status(T, "LOGINED and online again", |s| {
        s["loginStatus"] == 1 && s["online"] == true
    });
    assert_eq!(st["connection"], "connected", "{st}");
    // One re-login for the one new connection.
    let alice = s.stats()["users"]["alice"].clone();
    assert_eq!(
        alice["logins"].as_u64().unwrap(),
        logins_before + 1,
        "{alice}"
    );
    assert_eq!(alice["autoLogins"], 1, "{alice}");
    (took, left)
}

#[test]
fn a_link_that_comes_back_after_several_backoff_steps_reconnects_at_once() {
    need_net_admin!();
    let (took, left) = down_for_several_steps_then_up(true);
    eprintln!(
        "network watching on: onConnectSuccess {took:?} after the link came up; the backoff had {left} ms left"
    );
}

#[test]
fn without_watching_a_link_that_comes_back_waits_for_the_backoff() {
    need_net_admin!();
    let (took, left) = down_for_several_steps_then_up(false);
    eprintln!(
        "network watching off: onConnectSuccess {took:?} after the link came up; the backoff had {left} ms left"
    );
}

/// 20 flaps in 10 s, then the link stays up: the daemon ends LOGINED, with at most one
/// login per connection the server accepted and no event seq twice.
fn flapping(watch: bool) -> Value {
    // Each flap takes the link down for longer than the probe's deadline (one heartbeat
    // interval): with the watcher, every flap ends the connection.
    let s = Setup::start(&[
        ("reconnect.initial_ms", "1000"),
        ("reconnect.max_ms", "30000"),
        ("server.heartbeat_interval_ms", "150"),
        ("server.heartbeat_timeout_ms", "3000"),
        ("network.watch", if watch { "true" } else { "false" }),
    ]);
    let mut c = s.daemon.client();
    s.login(&mut c);
    let start = Instant::now();
    for i in 0..20u32 {
        // Down and up every 500 ms: 250 ms each.
        let at = Duration::from_millis(500 * u64::from(i));
        wait_until(T, "the next flap", || start.elapsed() >= at);
        s.net.link(false);
        wait_until(T, "half a flap", || {
            start.elapsed() >= at + Duration::from_millis(250)
        });
        s.net.link(true);
    }
    let st = c.wait_status(
        Duration::from_secs(60),
        "LOGINED and online after the flaps",
        |s| {
            s["loginStatus"] == 1
                && s["online"] == true
                && s["connection"] == "connected"
                && s["network"]["state"] == if watch { "usable" } else { "off" }
        },
    );
    let events = c.events_so_far();
    let mut seqs: Vec<u64> = events.iter().filter_map(|e| e["seq"].as_u64()).collect();
    let n = seqs.len();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), n, "an event seq came twice: {events:?}");
    let successes = events
        .iter()
        .filter(|e| e["event"] == "onConnectSuccess")
        .count() as u64;
    let stats = s.stats();
    let alice = &stats["users"]["alice"];
    let logins = alice["logins"].as_u64().unwrap();
    let connections = stats["connectionsTotal"].as_u64().unwrap();
    // The first login plus at most one per connection that came up since.
    assert!(
        logins <= 1 + successes,
        "{logins} logins, {successes} connections up: {stats}"
    );
    assert!(
        logins <= connections,
        "{logins} logins on {connections} connections: {stats}"
    );
    assert_eq!(alice["loginAttempts"], alice["logins"], "{alice}");
    eprintln!(
        "flapping, network watching {}: {connections} connections, {logins} logins, {successes} onConnectSuccess, {} events, attempts {}",
        if watch { "on" } else { "off" },
        events.len(),
        events.iter().filter(|e| e["event"] == "onConnecting").count()
    );
    st
}

#[test]
fn twenty_flaps_in_ten_seconds_end_logged_in_without_duplicates() {
    need_net_admin!();
    let st = flapping(true);
    assert_eq!(st["network"]["state"], "usable", "{st}");
}

#[test]
fn twenty_flaps_without_watching_end_logged_in_too() {
    need_net_admin!();
    let st = flapping(false);
    assert_eq!(st["network"]["state"], "off", "{st}");
}

/// A link that comes back before the probe's deadline: the probe is answered and nothing
/// changes — no event, the same connection.
#[test]
fn a_probe_that_is_answered_changes_nothing() {
    need_net_admin!();
    let s = Setup::start(&[
        ("server.heartbeat_interval_ms", "4000"),
        ("server.heartbeat_timeout_ms", "30000"),
    ]);
    let mut c = s.daemon.client();
    s.login(&mut c);
    c.wait_status(T, "a usable route", |s| s["network"]["state"] == "usable");
    let before = c.ok("status", json!({}));
    s.net.link(false);
    c.wait_status(T, "the route gone", |s| {
        s["network"]["state"] == "unreachable"
    });
    wait_until(T, "the probe", || {
        s.daemon.log().contains("probing the connection")
    });
    s.net.link(true);
    wait_until(Duration::from_secs(8), "the probe answered", || {
        s.daemon.log().contains("the probe was answered")
    });
    let after = c.ok("status", json!({}));
    let events = c.events_so_far();
    assert!(events.is_empty(), "{events:?}");
    assert_eq!(after["connection"], "connected", "{after}");
    assert_eq!(after["connectedSince"], before["connectedSince"], "{after}");
    assert_eq!(s.stats()["connectionsTotal"], 1);
}

/// SIGHUP turns the watcher off and on again.
#[test]
fn a_reload_turns_watching_off_and_on() {
    need_net_admin!();
    let mut s = Setup::start(&[]);
    let mut c = s.daemon.client();
    c.wait_status(T, "a usable route", |s| s["network"]["state"] == "usable");
    s.daemon.set("network.watch", "false");
    s.daemon.signal("HUP");
    let st = c.wait_status(T, "watching off", |s| s["network"]["state"] == "off");
    assert_eq!(st["network"]["watch"], false, "{st}");
    s.daemon.set("network.watch", "true");
    s.daemon.set("network.interfaces", "[\"lo\"]");
    s.daemon.signal("HUP");
    // Only loopback watched: the route to the server is through an interface not watched.
    let st = c.wait_status(T, "watching on, the veth not watched", |s| {
        s["network"]["state"] == "unwatched"
    });
    assert_eq!(st["network"]["interface"], s.net.daemon_if.as_str(), "{st}");
    s.daemon
        .set("network.interfaces", &format!("[\"{}\"]", s.net.daemon_if));
    s.daemon.signal("HUP");
    c.wait_status(T, "the veth watched", |s| s["network"]["state"] == "usable");
}
