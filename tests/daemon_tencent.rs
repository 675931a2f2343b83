//! imlinkd with `server.backend = "tencent"`: the official SDK in the bridge process,
//! against a real `imlink-devserver` (`tencent.proxy_server`), through the daemon's socket.
//! Also the bridge's supervision with fake bridges (hostile, leaky, well-behaved) and the
//! start-up checks (exit 78).
//!
//! Needs `node` and `npm ci --omit=dev --prefix bridge/tencent`, like tests/tencent_sdk.rs:
//! missing packages fail; a missing `node` fails under `CI` and skips loudly elsewhere.
//! The start-up checks that need no node always run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use support::daemon::{Daemon, Launch, Rpc, T};
use support::node::{bridge_dir, node_ready};
use support::*;

/// For what waits on the SDK's own timers or several restarts.
const SLOW: Duration = Duration::from_secs(45);

macro_rules! require_node {
    () => {
        if !node_ready("the Tencent link tests") {
            return;
        }
    };
}

/// A TOML string.
fn toml_str(s: &str) -> String {
    format!("{s:?}")
}

/// Starts a daemon on the Tencent link: the repository's bridge, the SDK pointed at
/// `server`, plus `extra` overrides.
fn tencent_daemon(server: &DevServer, extra: &[(&str, &str)]) -> Daemon {
    tencent_daemon_with(server, extra, Launch::default())
}

fn tencent_daemon_with(server: &DevServer, extra: &[(&str, &str)], launch: Launch) -> Daemon {
    let bridge = toml_str(bridge_dir().to_str().unwrap());
    let proxy = toml_str(&format!("ws://{}", server.addr));
    // Starting node takes longer than a WebSocket connect, the more so on a loaded machine.
    let mut o: Vec<(&str, &str)> = vec![
        ("server.backend", "\"tencent\""),
        ("tencent.bridge_dir", &bridge),
        ("tencent.proxy_server", &proxy),
        ("server.connect_timeout_ms", "10000"),
    ];
    o.extend_from_slice(extra);
    Daemon::start_with(server, &o, launch)
}

/// Events that may come between two steps of a test on a loaded machine without saying
/// anything about the login: the SDK's own connection dropping and coming back.
fn only_link_events(before: &[String]) -> bool {
    before.iter().all(|n| {
        matches!(
            n.as_str(),
            "onConnectFailed" | "onConnecting" | "onConnectSuccess"
        )
    })
}

fn logged_in_on_disk(d: &Daemon) -> bool {
    d.session_file().is_some_and(|f| f["loggedIn"] == true)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Logs in as alice (waiting for the connection first); returns the ticket.
fn login_alice(c: &mut Rpc) -> String {
    c.wait_status(T, "connected", |s| s["connection"] == "connected");
    let sig = ticket("alice", 3600);
    assert_eq!(
        c.ok("login", json!({"userID": "alice", "userSig": sig})),
        json!({})
    );
    sig
}

fn web_sessions(server: &DevServer, user: &str) -> Vec<Value> {
    server
        .sessions()
        .into_iter()
        .filter(|s| s["userID"] == user && s["protocol"] == "web" && s["state"] == "online")
        .collect()
}

/// The bridge processes of the daemon: its children running `index.js`.
fn bridge_pids(daemon_pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid …; comm may hold spaces: split after the last ')'.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut f = rest.split_whitespace();
        let state = f.next().unwrap_or("");
        let ppid: u32 = f.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if ppid == daemon_pid
            && state != "Z"
            && String::from_utf8_lossy(&cmdline).contains("index.js")
        {
            out.push(pid);
        }
    }
    out
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| r.split_whitespace().next() != Some("Z"))
        })
        .unwrap_or(false)
}

fn one_bridge(d: &Daemon) -> u32 {
    let mut pids = Vec::new();
    wait_until(T, "one bridge process", || {
        pids = bridge_pids(d.pid());
        pids.len() == 1
    });
    pids[0]
}

fn kill9(pid: u32) {
    assert!(Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap()
        .success());
}

// ---- the official SDK through the bridge, against the devserver ---------------------

#[test]
fn login_through_the_sdk_has_the_native_event_sequence_and_getters() {
    require_node!();
    let server = DevServer::start(&[]);
    let d = tencent_daemon(&server, &[]);
    let mut c = d.client();
    c.ok("subscribe", json!({"since": 0}));
    let (_, before) = c.wait_event("onConnectSuccess", T);
    assert_eq!(before, ["onConnecting"]);
    assert_eq!(c.login_status(), 3);
    let sig = login_alice(&mut c);
    let (e1, _) = c.wait_event("onLoginStatusChanged", T);
    assert_eq!(
        (e1["data"]["status"].as_i64(), e1["data"]["reason"].as_str()),
        (Some(2), Some("login"))
    );
    let (e2, between) = c.wait_event("onLoginStatusChanged", T);
    assert!(between.is_empty(), "{between:?}");
    assert_eq!(
        (e2["data"]["status"].as_i64(), e2["data"]["userID"].as_str()),
        (Some(1), Some("alice"))
    );
    assert_eq!(c.login_status(), 1);
    assert_eq!(c.ok("getLoginUser", json!({})), json!({"userID": "alice"}));
    assert_eq!(c.ok("getSelfInfo", json!({}))["info"]["userID"], "alice");
    let st = c.ok("status", json!({}));
    assert_eq!(st["connection"], "connected");
    assert_eq!(st["online"], true);
    assert_eq!(st["server"], format!("ws://{}", server.addr));
    assert!(st["userSigExpiresAt"].as_i64().unwrap() > now_unix());
    // The devserver holds one Web login: the SDK's.
    let rows = web_sessions(&server, "alice");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["platform"], "Web");
    wait_until(T, "the login on disk", || {
        d.session_file().is_some_and(|f| f["loggedIn"] == true)
    });
    // Same user, same ticket: repeatLogin, nothing sent.
    assert_eq!(
        c.ok("login", json!({"userID": "alice", "userSig": sig})),
        json!({"repeatLogin": true})
    );
    assert_eq!(server.user_stats("alice")["logins"], 1);
    // The SDK's log is in the daemon's (debug level), without the ticket.
    let log = d.log();
    assert!(log.contains("imlinkd::bridge"), "{log}");
    assert!(!log.contains(&sig), "the UserSig must never be logged");
}

#[test]
fn own_profile_changes_become_on_self_info_updated() {
    require_node!();
    let server = DevServer::start(&[]);
    let d = tencent_daemon(&server, &[]);
    let mut c = d.client();
    login_alice(&mut c);
    c.subscribe();
    let r = server.rest(
        "profile/portrait_set",
        json!({"From_Account": "alice", "ProfileItem": [
            {"Tag": "Tag_Profile_IM_Nick", "Value": "Alice"},
            {"Tag": "Tag_Profile_IM_Gender", "Value": "Gender_Type_Female"},
            {"Tag": "Tag_Profile_Custom_Team", "Value": "blue"},
        ]}),
    );
    assert_eq!(r["ErrorCode"], 0, "{r}");
    let (e, _) = c.wait_event("onSelfInfoUpdated", T);
    let info = &e["data"]["info"];
    assert_eq!(
        (
            info["userID"].as_str(),
            info["nickName"].as_str(),
            info["gender"].as_i64()
        ),
        (Some("alice"), Some("Alice"), Some(2)),
        "{e}"
    );
    assert_eq!(
        info["customInfo"],
        json!({"Tag_Profile_Custom_Team": "blue"})
    );
    assert_eq!(c.ok("getSelfInfo", json!({}))["info"]["nickName"], "Alice");
    // Another user's profile is not ours to report.
    server.rest(
        "profile/portrait_set",
        json!({"From_Account": "bob", "ProfileItem": [{"Tag": "Tag_Profile_IM_Nick", "Value": "Bob"}]}),
    );
    server.rest(
        "profile/portrait_set",
        json!({"From_Account": "alice", "ProfileItem": [{"Tag": "Tag_Profile_IM_Nick", "Value": "Alice 2"}]}),
    );
    let (e, before) = c.wait_event("onSelfInfoUpdated", T);
    assert_eq!(e["data"]["info"]["nickName"], "Alice 2");
    assert!(before.is_empty(), "{before:?}");
}

#[test]
fn logout_ends_the_login_at_the_server_and_keeps_the_bridge() {
    require_node!();
    let server = DevServer::start(&[]);
    let d = tencent_daemon(&server, &[]);
    let mut c = d.client();
    login_alice(&mut c);
    let pid = one_bridge(&d);
    c.subscribe();
    assert_eq!(c.ok("logout", json!({})), json!({}));
    let (e, _) = c.wait_event("onLoginStatusChanged", T);
    assert_eq!(
        (e["data"]["status"].as_i64(), e["data"]["reason"].as_str()),
        (Some(3), Some("logout"))
    );
    assert!(web_sessions(&server, "alice").is_empty());
    wait_until(T, "the saved session cleared", || !logged_in_on_disk(&d));
    assert_eq!(c.ok("status", json!({}))["connection"], "connected");
    assert_eq!(bridge_pids(d.pid()), [pid], "the same bridge");
    // Another user on the same SDK.
    c.ok(
        "login",
        json!({"userID": "bob", "userSig": ticket("bob", 3600)}),
    );
    assert_eq!(c.ok("getLoginUser", json!({})), json!({"userID": "bob"}));
    assert_eq!(web_sessions(&server, "bob").len(), 1);
}

#[test]
fn switching_user_or_ticket_logs_the_sdk_out_first() {
    require_node!();
    let server = DevServer::start(&[]);
    let d = tencent_daemon(&server, &[]);
    let mut c = d.client();
    login_alice(&mut c);
    // A new ticket for the same user replaces the old one at the server.
    let sig2 = ticket_at("alice", 7200, now_unix() + 1);
    assert_eq!(
        c.ok("login", json!({"userID": "alice", "userSig": sig2})),
        json!({"repeatLogin": true})
    );
    assert_eq!(server.user_stats("alice")["logins"], 2);
    // Written right after the reply.
    wait_until(T, "the new ticket on disk", || {
        d.session_file()
            .is_some_and(|f| f["userSig"] == sig2.as_str())
    });
    // Another user: the SDK is not left logged in as the first.
    c.ok(
        "login",
        json!({"userID": "bob", "userSig": ticket("bob", 3600)}),
    );
    assert_eq!(c.ok("getSelfInfo", json!({}))["info"]["userID"], "bob");
    wait_until(T, "alice logged out at the server", || {
        web_sessions(&server, "alice").is_empty()
    });
    assert_eq!(web_sessions(&server, "bob").len(), 1);
}

#[test]
fn a_rest_kick_logs_out_for_good() {
    require_node!();
    let server = DevServer::start(&[]);
    let d = tencent_daemon(&server, &[]);
    let mut c = d.client();
    let sig = login_alice(&mut c);
    c.subscribe();
    let r = server.rest("im_open_login_svc/kick", json!({"UserID": "alice"}));
    assert_eq!(r["ActionStatus"], "OK");
    let (_, before) = c.wait_event("onKickedOffline", T);
    assert!(only_link_events(&before), "{before:?}");
    let (st, _) = c.wait_event("onLoginStatusChanged", T);
    assert_eq!(
        (st["data"]["status"].as_i64(), st["data"]["reason"].as_str()),
        (Some(3), Some("kicked"))
    );
    wait_until(T, "the saved session cleared", || !logged_in_on_disk(&d));
    // The SDK reconnects after a REST kick, logged out: clients see it; no login follows.
    let attempts = server.user_stats("alice")["loginAttempts"].clone();
    c.wait_event("onConnectSuccess", T);
    assert_eq!(c.login_status(), 3);
    assert_eq!(server.user_stats("alice")["loginAttempts"], attempts);
    // The old ticket is dead: Tencent's code comes through.
    let (code, _) = c
        .call("login", json!({"userID": "alice", "userSig": sig}))
        .unwrap_err();
    assert_eq!(code, 70052);
}

#[test]
fn kicked_by_another_device_never_logs_in_again() {
    require_node!();
    let server = DevServer::start(&["--policy", "single"]);
    let d = tencent_daemon(&server, &[]);
    let mut c = d.client();
    login_alice(&mut c);
    c.subscribe();
    let mut linux = WsClient::connect(&server, "Linux", "another-linux-box");
    assert_eq!(
        linux.login("alice", &ticket("alice", 3600), false)["code"],
        0
    );
    let (_, before) = c.wait_event("onKickedOffline", T);
    assert!(only_link_events(&before), "{before:?}");
    let (st, _) = c.wait_event("onLoginStatusChanged", T);
    assert_eq!(st["data"]["reason"], "kicked");
    assert_eq!(c.login_status(), 3);
    assert!(web_sessions(&server, "alice").is_empty());
    // The other device keeps its login.
    let r = server.rest(
        "openim/query_online_status",
        json!({"To_Account": ["alice"], "IsNeedDetail": 1}),
    );
    assert_eq!(r["QueryResult"][0]["Detail"][0]["Platform"], "Linux", "{r}");
    drop(linux);
}

#[test]
fn a_ticket_expiring_online_warns_then_logs_out_once() {
    require_node!();
    let server = DevServer::start(&[]);
    let d = tencent_daemon(&server, &[("sdk.usersig_expiring_lead_secs", "2")]);
    let mut c = d.client();
    c.wait_status(T, "connected", |s| s["connection"] == "connected");
    c.subscribe();
    let sig = ticket("alice", 3);
    let expires_at = imlink::usersig::decode(&sig).unwrap().expires_at();
    c.ok("login", json!({"userID": "alice", "userSig": sig}));
    let (warn, _) = c.wait_event("onUserSigExpiring", T);
    assert_eq!(warn["data"]["expiresAt"], expires_at);
    c.wait_event("onUserSigExpired", T);
    assert!(now_unix() > expires_at);
    let (st, _) = c.wait_event("onLoginStatusChanged", T);
    assert_eq!(
        (st["data"]["status"].as_i64(), st["data"]["reason"].as_str()),
        (Some(3), Some("userSigExpired"))
    );
    wait_until(T, "the saved session cleared", || !logged_in_on_disk(&d));
    // The SDK learns it at its next request (up to 10 s): its kick changes nothing more.
    wait_until(SLOW, "the server ended the Web login", || {
        server.user_stats("alice")["expired"] == 1
    });
    // A fresh ticket logs in again (the SDK is logged out first, not answered from its
    // stale state).
    let fresh = ticket_at("alice", 3600, now_unix() + 1);
    if let Err(e) = c.call("login", json!({"userID": "alice", "userSig": fresh})) {
        panic!("{e:?}; log:\n{}", d.log());
    }
    c.wait_status(T, "online again", |s| s["online"] == true);
    wait_until(T, "a Web login at the server", || {
        web_sessions(&server, "alice").len() == 1
    });
}

#[test]
fn the_sdk_reconnecting_by_itself_shows_connect_events_and_keeps_the_login() {
    require_node!();
    let server = DevServer::start(&["--faults"]);
    let d = tencent_daemon(&server, &[]);
    let mut c = d.client();
    login_alice(&mut c);
    let pid = one_bridge(&d);
    // The SDK reopens by itself a socket that was open for a second or more (a shorter
    // one it gives up on: see the next test).
    c.wait_status(T, "a socket open for 1.5 s", |s| {
        s["connectedSince"]
            .as_i64()
            .is_some_and(|t| now_ms() - t > 1500)
    });
    c.subscribe();
    server.fault("drop");
    let (lost, before) = c.wait_event("onConnectFailed", T);
    assert!(before.is_empty(), "{before:?}");
    assert_eq!(lost["data"]["code"], 9508);
    let (_, between) = c.wait_event("onConnectSuccess", T);
    assert_eq!(between, ["onConnecting"]);
    assert_eq!(c.login_status(), 1);
    // The SDK logged in again by itself, in the same bridge.
    wait_until(T, "alice back online at the server", || {
        web_sessions(&server, "alice").len() == 1
    });
    c.wait_status(T, "online", |s| s["online"] == true);
    assert_eq!(bridge_pids(d.pid()), [pid]);
}

#[test]
fn devserver_killed_and_restarted_keeps_logined_with_connect_events() {
    require_node!();
    let mut server = DevServer::start(&[]);
    let d = tencent_daemon(&server, &[]);
    let mut c = d.client();
    login_alice(&mut c);
    c.subscribe();
    server.kill();
    let (lost, _) = c.wait_event("onConnectFailed", T);
    assert_eq!(lost["data"]["code"], 9508);
    // The SDK gives up: the bridge is restarted with the backoff, and fails while the
    // server is down; the status stays LOGINED.
    let (_, seen) = c.wait_event("onConnecting", T);
    assert!(seen.iter().all(|n| n.starts_with("onConnect")), "{seen:?}");
    assert_eq!(c.login_status(), 1);
    server.start_again();
    let mut seen = Vec::new();
    loop {
        let (r, before) = c.wait_event("onRelogin", SLOW);
        seen.extend(before);
        if r["data"]["success"] == true {
            break;
        }
        seen.push("onRelogin(failed)".into());
    }
    assert!(
        seen.iter()
            .all(|n| n.starts_with("onConnect") || n == "onRelogin(failed)"),
        "a silent re-login: {seen:?}"
    );
    assert!(seen.contains(&"onConnectSuccess".to_owned()), "{seen:?}");
    let s = c.wait_status(T, "online", |s| s["online"] == true);
    assert_eq!(s["loginStatus"], 1);
    assert_eq!(server.user_stats("alice")["logins"], 1);
}

#[test]
fn a_killed_bridge_is_restarted_and_logs_in_again_silently() {
    require_node!();
    let server = DevServer::start(&[]);
    let d = tencent_daemon(&server, &[]);
    let mut c = d.client();
    let sig = login_alice(&mut c);
    let old = one_bridge(&d);
    c.subscribe();
    kill9(old);
    let (lost, before) = c.wait_event("onConnectFailed", T);
    assert!(before.is_empty(), "{before:?}");
    assert_eq!(lost["data"]["code"], 9508);
    assert!(
        lost["data"]["desc"].as_str().unwrap().contains("signal 9"),
        "{lost}"
    );
    let (r, between) = c.wait_event("onRelogin", T);
    assert_eq!(r["data"]["success"], true, "{r}");
    assert_eq!(between, ["onConnecting", "onConnectSuccess"]);
    let s = c.wait_status(T, "online", |s| s["online"] == true);
    assert_eq!(s["loginStatus"], 1);
    let new = one_bridge(&d);
    assert_ne!(new, old);
    assert!(!alive(old));
    wait_until(T, "one Web login at the server", || {
        web_sessions(&server, "alice").len() == 1
    });
    // No kick, no status change: the next event is whatever comes, not one of those.
    c.ok("logout", json!({}));
    let (e, before) = c.wait_event("onLoginStatusChanged", T);
    assert_eq!(
        e["data"]["reason"], "logout",
        "the first status change is the logout"
    );
    assert!(
        !before.contains(&"onKickedOffline".to_owned()),
        "{before:?}"
    );
    assert!(!d.log().contains(&sig));
}

#[test]
fn stop_and_uninit_end_the_bridge_cleanly() {
    require_node!();
    let server = DevServer::start(&[]);
    let mut d = tencent_daemon(&server, &[]);
    let mut c = d.client();
    login_alice(&mut c);
    let pid = one_bridge(&d);
    // A stop: the SDK logs out (destroy), the bridge exits, the session stays on disk.
    assert!(d.stop().success());
    wait_until(T, "the bridge gone", || !alive(pid));
    assert!(web_sessions(&server, "alice").is_empty());
    assert_eq!(d.session_file().unwrap()["loggedIn"], true);
    // Started again: the saved session is resumed through a new bridge.
    d.start_again();
    let mut c = d.client();
    let s = c.wait_status(T, "LOGINED again", |s| {
        s["loginStatus"] == 1 && s["online"] == true
    });
    assert_eq!(s["userID"], "alice");
    let pid = one_bridge(&d);
    // unInitSDK: logged out, the bridge ends and is not restarted.
    c.subscribe();
    assert_eq!(c.ok("unInitSDK", json!({})), json!({}));
    wait_until(T, "the bridge gone", || !alive(pid));
    let s = c.ok("status", json!({}));
    assert_eq!(s["connection"], "idle");
    assert_eq!(s["nextRetryMs"], Value::Null);
    assert!(bridge_pids(d.pid()).is_empty());
    assert!(web_sessions(&server, "alice").is_empty());
    let (e, _) = c.wait_event("onLoginStatusChanged", T);
    assert_eq!(e["data"]["reason"], "unInit");
}

/// The status of `user` in `listAccounts`.
fn account_status(c: &mut Rpc, user: &str) -> Option<i64> {
    c.ok("listAccounts", json!({}))["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["userID"] == user)
        .and_then(|a| a["status"].as_i64())
}

#[test]
fn many_accounts_run_one_bridge_each_and_a_kick_touches_only_its_own() {
    require_node!();
    let server = DevServer::start(&[]);
    let mut d = tencent_daemon(
        &server,
        &[
            ("accounts.multi", "true"),
            ("server.login_timeout_ms", "30000"),
        ],
    );
    let mut c = d.client();
    let users = ["alice", "bob", "carol"];
    let sigs: Vec<String> = users.iter().map(|u| ticket(u, 3600)).collect();
    for (u, sig) in users.iter().zip(&sigs) {
        assert_eq!(
            c.ok("login", json!({"userID": u, "userSig": sig})),
            json!({}),
            "{u}"
        );
    }
    // One SDK per process (docs/tencent.md): a bridge per account, each logged in as its
    // own user at the server.
    let mut pids = Vec::new();
    wait_until(T, "three bridge processes", || {
        pids = bridge_pids(d.pid());
        pids.len() == 3
    });
    for u in users {
        assert_eq!(account_status(&mut c, u), Some(1), "{u}");
        wait_until(T, "one Web login each", || {
            web_sessions(&server, u).len() == 1
        });
    }
    let all = c.ok("metrics", json!({}));
    assert_eq!(all["online"], 3, "{all}");

    // A REST kick of bob logs bob out for good and leaves the others online.
    c.subscribe();
    let r = server.rest("im_open_login_svc/kick", json!({"UserID": "bob"}));
    assert_eq!(r["ActionStatus"], "OK");
    let (k, _) = c.wait_event("onKickedOffline", T);
    assert_eq!(k["account"], "bob", "{k}");
    let mut st;
    loop {
        let (e, _) = c.wait_event("onLoginStatusChanged", T);
        st = e;
        if st["account"] == "bob" {
            break;
        }
    }
    assert_eq!(st["data"]["reason"], "kicked", "{st}");
    assert_eq!(account_status(&mut c, "bob"), Some(3));
    for u in ["alice", "carol"] {
        assert_eq!(account_status(&mut c, u), Some(1), "{u}");
        assert_eq!(web_sessions(&server, u).len(), 1, "{u}");
        assert_eq!(
            server.user_stats(u)["loginAttempts"],
            1,
            "{u}: no second login"
        );
    }

    // removeAccount ends carol's bridge (the SDK logged out) and only hers.
    assert_eq!(
        c.ok("removeAccount", json!({"account": "carol"})),
        json!({})
    );
    wait_until(T, "carol's bridge gone", || {
        let now = bridge_pids(d.pid());
        now.len() == 2 && now.iter().all(|p| pids.contains(p))
    });
    wait_until(T, "carol's login ended at the server", || {
        web_sessions(&server, "carol").is_empty()
    });
    assert_eq!(account_status(&mut c, "alice"), Some(1));

    // SIGKILL: the bridges see their stdin end; the restarted daemon resumes alice's
    // login with a bridge of its own, and bob stays logged out.
    drop(c);
    d.kill();
    wait_until(T, "the old bridges gone", || {
        pids.iter().all(|p| !alive(*p))
    });
    d.start_again();
    let mut c = d.client();
    wait_until(SLOW, "alice online again", || {
        c.ok("metrics", json!({}))["online"] == 1 && account_status(&mut c, "alice") == Some(1)
    });
    assert_ne!(account_status(&mut c, "bob"), Some(1));
    assert_eq!(account_status(&mut c, "carol"), None);
    wait_until(T, "alice's one Web login", || {
        web_sessions(&server, "alice").len() == 1
    });
    let log = d.log();
    for sig in &sigs {
        assert!(!log.contains(sig.as_str()), "a ticket in the log");
    }
}

// ---- supervision, with fake bridges -------------------------------------------------

/// A bridge written for the test: `mode` decides how it behaves. `good` answers like the
/// real one (without an SDK); `flaky` too, but says `notReady` after its first login;
/// `hostile` answers init, writes garbage, huge lines and wrong-typed fields, then never
/// answers again; `leaky` echoes the UserSig it is sent on stderr and in its messages.
/// Each run appends its pid to `starts`, each login its user to `logins`.
const FAKE_BRIDGE: &str = r#"'use strict';
const fs = require('fs');
const path = require('path');
const here = (f) => path.join(__dirname, f);
const mode = fs.readFileSync(here('mode'), 'utf8').trim();
const hello = JSON.stringify({ event: 'hello', protocol: 1, sdkVersion: '3.6.6', node: process.version });
const out = (s) => process.stdout.write(s + '\n');
if (process.argv.includes('--version')) { out(hello); process.exit(0); }
fs.appendFileSync(here('starts'), process.pid + '\n');
out(hello);
let user = null;
let buf = '';
process.stdin.on('data', (c) => {
  buf += c;
  let i;
  while ((i = buf.indexOf('\n')) >= 0) {
    const line = buf.slice(0, i);
    buf = buf.slice(i + 1);
    handle(JSON.parse(line));
  }
});
process.stdin.on('end', () => process.exit(0));
const answer = (id, ok) => out(JSON.stringify({ id, ok }));
function handle(r) {
  if (r.op === 'init') { answer(r.id, {}); if (mode === 'hostile') hostile(); return; }
  if (mode === 'hostile') return;
  if (r.op === 'ping') return answer(r.id, {});
  if (r.op === 'destroy') { answer(r.id, {}); process.exit(0); }
  if (r.op === 'logout') { user = null; out('{"event":"notReady"}'); return answer(r.id, {}); }
  if (r.op === 'getMyProfile') return answer(r.id, { info: { userID: user } });
  if (r.op === 'login' && mode === 'leaky') {
    console.error('login with ' + r.userSig);
    console.error('GET /binfo?sdkappid=1&usersig=' + r.userSig + '&x=1 a2key: ' + r.userSig.slice(3));
    out(JSON.stringify({ event: 'error', code: 2801, message: 'sig ' + r.userSig }));
    out(JSON.stringify({ event: 'protocolError', message: r.userSig }));
    return out(JSON.stringify({ id: r.id, err: { code: 70003, message: 'bad ticket ' + r.userSig } }));
  }
  if (r.op === 'login') {
    user = r.userID;
    fs.appendFileSync(here('logins'), r.userID + '\n');
    answer(r.id, { repeatLogin: false });
    out('{"event":"ready"}');
    // flaky: the first login is lost by the SDK a moment later, without a kick.
    if (mode === 'flaky' && fs.readFileSync(here('logins'), 'utf8').split('\n').length === 2) {
      setTimeout(() => out('{"event":"notReady"}'), 300);
    }
  }
}
function hostile() {
  out('this is not json');
  out('\u001b[31m{"forged":"line"}');
  out('x'.repeat(2 * 1024 * 1024));
  out('{"id":"\\u001b[2Jseven","ok":{}}');
  out('{"event":"netState","state":5}');
  out('{"event":"kicked","type":"byAliens"}');
  out('{"event":"profile","info":{"userID":"alice","gender":300}}');
  out('{"id":123456789,"ok":{}}');
  out('{"id":1e400,"ok":{}}');
  out('{"event":"hello","protocol":1,"sdkVersion":"3.6.6","node":"v20"}');
  out('[1,2,3]');
}
"#;

struct FakeBridge {
    dir: tempfile::TempDir,
}

impl FakeBridge {
    fn new(mode: &str) -> FakeBridge {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.js"), FAKE_BRIDGE).unwrap();
        std::fs::write(dir.path().join("mode"), mode).unwrap();
        let f = FakeBridge { dir };
        f.pin("3.6.6");
        f
    }

    fn pin(&self, version: &str) {
        std::fs::write(
            self.dir.path().join("package.json"),
            json!({"dependencies": {"@tencentcloud/chat": version}}).to_string(),
        )
        .unwrap();
    }

    fn starts(&self) -> Vec<u32> {
        std::fs::read_to_string(self.dir.path().join("starts"))
            .unwrap_or_default()
            .lines()
            .map(|l| l.parse().unwrap())
            .collect()
    }

    fn logins(&self) -> usize {
        std::fs::read_to_string(self.dir.path().join("logins"))
            .unwrap_or_default()
            .lines()
            .count()
    }

    fn daemon(&self, extra: &[(&str, &str)]) -> Daemon {
        let bridge = toml_str(self.dir.path().to_str().unwrap());
        let mut o: Vec<(&str, &str)> = vec![
            ("server.backend", "\"tencent\""),
            ("tencent.bridge_dir", &bridge),
            ("server.connect_timeout_ms", "10000"),
        ];
        o.extend_from_slice(extra);
        Daemon::start_url("ws://127.0.0.1:9/v1/connect", &o, false)
    }
}

#[test]
fn a_hostile_bridge_is_logged_and_restarted_with_backoff_and_never_crashes_the_daemon() {
    require_node!();
    let fake = FakeBridge::new("hostile");
    // Each bridge lives less than reconnect.stable_ms: its loss counts as a failure.
    let mut d = fake.daemon(&[
        ("server.heartbeat_interval_ms", "200"),
        ("server.heartbeat_timeout_ms", "800"),
        ("reconnect.stable_ms", "60000"),
    ]);
    let mut c = d.client();
    c.ok("subscribe", json!({"since": 0}));
    // It answers init, so it counts as started; then it never answers a ping.
    let mut pings = 0;
    while pings < 3 {
        let (e, _) = c.wait_event("onConnectFailed", SLOW);
        let desc = e["data"]["desc"].as_str().unwrap();
        assert!(desc.contains("did not answer a ping"), "{e}");
        pings += 1;
    }
    // Each bridge dropped that soon is a failure: the backoff grows, the restarts go on.
    let s = c.wait_status(SLOW, "three failures in a row", |s| {
        s["reconnectAttempt"].as_u64() >= Some(3)
    });
    assert!(
        s["connection"] == "waiting" || s["connection"] == "connecting",
        "{s}"
    );
    assert!(fake.starts().len() >= 3);
    let log = d.log();
    for want in [
        "not bridge protocol",
        "a line of 2097152 bytes",
        "did not answer a ping",
        "restarting the Tencent bridge after backoff",
    ] {
        assert!(log.contains(want), "the log lacks {want:?}:\n{log}");
    }
    assert!(!log.contains('\u{1b}'), "a raw escape reached the log");
    assert!(!log.contains("forged"), "a hostile line was logged as is");
    assert_eq!(c.login_status(), 3);
    assert!(d.stop().success(), "the daemon stops cleanly");
}

#[test]
fn the_ticket_never_reaches_the_log_or_a_client_even_from_a_leaky_bridge() {
    require_node!();
    let fake = FakeBridge::new("leaky");
    let d = fake.daemon(&[]);
    let mut c = d.client();
    c.wait_status(T, "connected", |s| s["connection"] == "connected");
    let sig = ticket("alice", 3600);
    let (code, message) = c
        .call("login", json!({"userID": "alice", "userSig": sig}))
        .unwrap_err();
    assert_eq!(code, 70003, "Tencent's code comes through");
    assert!(message.contains("[redacted]"), "{message}");
    assert!(!message.contains(&sig[3..]), "{message}");
    // The stderr lines and the messages were logged (debug level), redacted.
    wait_until(T, "the bridge's stderr in the log", || {
        d.log()
            .contains("GET /binfo?sdkappid=1&usersig=[redacted]&x=1 a2key: [redacted]")
    });
    let log = d.log();
    assert!(log.contains("login with [redacted]"), "{log}");
    assert!(
        !log.contains(&sig[3..]),
        "a ticket (or most of it) reached the log"
    );
}

#[test]
fn an_sdk_that_loses_the_login_by_itself_is_logged_in_again_silently() {
    require_node!();
    let fake = FakeBridge::new("flaky");
    let d = fake.daemon(&[]);
    let mut c = d.client();
    c.ok("subscribe", json!({}));
    c.wait_event("onConnectSuccess", T);
    let sig = ticket("alice", 3600);
    c.ok("login", json!({"userID": "alice", "userSig": sig}));
    let (st, _) = c.wait_event("onLoginStatusChanged", T);
    assert_eq!(st["data"]["status"], 2);
    let (st, _) = c.wait_event("onLoginStatusChanged", T);
    assert_eq!(st["data"]["status"], 1);
    // notReady with no logout and no kick: the Session logs in again with its ticket.
    let (r, before) = c.wait_event("onRelogin", T);
    assert_eq!(r["data"]["success"], true, "{r}");
    assert!(
        before.is_empty(),
        "no status change, no connect events: {before:?}"
    );
    assert_eq!(fake.logins(), 2);
    assert_eq!(fake.starts().len(), 1, "the same bridge");
    assert_eq!(c.login_status(), 1);
}

#[test]
fn a_bridge_with_the_wrong_sdk_version_is_refused_once_not_restarted_in_a_loop() {
    require_node!();
    let fake = FakeBridge::new("good");
    let d = fake.daemon(&[]);
    let mut c = d.client();
    c.wait_status(T, "connected", |s| s["connection"] == "connected");
    c.ok("subscribe", json!({}));
    // The installed SDK changes under the running daemon, then the bridge dies.
    fake.pin("9.9.9");
    let first = fake.starts();
    assert_eq!(first.len(), 1);
    kill9(first[0]);
    let refused = loop {
        let (e, _) = c.wait_event("onConnectFailed", SLOW);
        if e["data"]["code"] == -32003 {
            break e;
        }
    };
    let desc = refused["data"]["desc"].as_str().unwrap();
    assert!(desc.starts_with("wrong SDK version"), "{desc}");
    assert!(desc.contains("npm ci --omit=dev --prefix"), "{desc}");
    let s = c.ok("status", json!({}));
    assert_eq!(s["connection"], "idle", "no restart is scheduled: {s}");
    assert_eq!(s["nextRetryMs"], Value::Null);
    assert_eq!(fake.starts().len(), 2);
    assert!(
        d.log().contains("code=-32003"),
        "logged once, with the code"
    );
    // Fixed, and asked again: it runs.
    fake.pin("3.6.6");
    c.ok("reconnect", json!({}));
    c.wait_event("onConnectSuccess", T);
    assert_eq!(fake.starts().len(), 3);
}

// ---- the start-up checks: exit 78 --------------------------------------------------

/// Runs `imlinkd` with `config` (a TOML text) and `extra` flags in a scrubbed
/// environment with this `PATH`; returns what it printed and how it exited.
fn imlinkd(config: &str, extra: &[&str], path: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("imlinkd.toml");
    let config = format!(
        "{config}\n[api]\nsocket = {}\n[state]\ndir = {}\n",
        toml_str(dir.path().join("s.sock").to_str().unwrap()),
        toml_str(dir.path().join("state").to_str().unwrap())
    );
    std::fs::write(&file, config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_imlinkd"))
        .arg("--config")
        .arg(&file)
        .args(extra)
        .env_clear()
        .env("PATH", path)
        .env("HOME", dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = None;
    wait_until(T, "imlinkd to exit", || {
        out = child.try_wait().unwrap();
        out.is_some()
    });
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn path_var() -> String {
    std::env::var("PATH").unwrap_or_default()
}

#[test]
fn node_missing_is_one_clear_error_and_exit_78() {
    let bridge = toml_str(bridge_dir().to_str().unwrap());
    let cfg = format!(
        "[sdk]\napp_id = {APP}\n[server]\nbackend = \"tencent\"\n[tencent]\nbridge_dir = {bridge}\nnode = \"imlink-no-such-node\"\n"
    );
    for flags in [&[][..], &["--check-config"][..]] {
        let out = imlinkd(&cfg, flags, &path_var());
        assert_eq!(
            out.status.code(),
            Some(78),
            "{flags:?}: {}",
            text(&out.stderr)
        );
        assert_eq!(
            text(&out.stderr),
            "imlinkd: the Tencent link cannot run (code -32003): Node.js not found: no `imlink-no-such-node` in PATH; install Node.js 18 or later, or set tencent.node\n"
        );
        assert!(out.stdout.is_empty());
    }
    // The default `node`, with no node in PATH.
    let cfg = format!(
        "[sdk]\napp_id = {APP}\n[server]\nbackend = \"tencent\"\n[tencent]\nbridge_dir = {bridge}\n"
    );
    let out = imlinkd(&cfg, &[], "/nonexistent");
    assert_eq!(out.status.code(), Some(78));
    assert!(
        text(&out.stderr).contains("no `node` in PATH"),
        "{}",
        text(&out.stderr)
    );
    // A path that does not exist.
    let cfg = cfg.replace(
        "[tencent]\n",
        "[tencent]\nnode = \"/nonexistent/bin/node\"\n",
    );
    let out = imlinkd(&cfg, &[], &path_var());
    assert_eq!(out.status.code(), Some(78));
    assert!(
        text(&out.stderr).contains("/nonexistent/bin/node does not exist"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_wrong_bridge_dir_is_one_clear_error_and_exit_78() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = format!(
        "[server]\nbackend = \"tencent\"\n[tencent]\nbridge_dir = {}\n",
        toml_str(dir.path().to_str().unwrap())
    );
    for flags in [&[][..], &["--check-config"][..]] {
        let out = imlinkd(&cfg, flags, &path_var());
        assert_eq!(out.status.code(), Some(78), "{}", text(&out.stderr));
        assert_eq!(
            text(&out.stderr),
            format!(
                "imlinkd: the Tencent link cannot run (code -32003): the Tencent bridge is not installed: {} has no index.js; run `make install`, or set tencent.bridge_dir\n",
                dir.path().display()
            )
        );
    }
    // The default: next to the executable, where `make install` puts it; not in target/.
    let out = imlinkd(
        "[server]\nbackend = \"tencent\"\n",
        &["--check-config"],
        &path_var(),
    );
    assert_eq!(out.status.code(), Some(78));
    let exe = Path::new(env!("CARGO_BIN_EXE_imlinkd"));
    let default = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("lib/imlink/tencent-bridge");
    assert!(
        text(&out.stderr).contains(&format!("{} has no index.js", default.display())),
        "{}",
        text(&out.stderr)
    );
    // The native link needs none of it.
    let out = imlinkd(
        "[tencent]\nnode = \"imlink-no-such-node\"\n",
        &["--check-config"],
        &path_var(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn missing_packages_and_a_wrong_sdk_version_are_exit_78_with_what_to_run() {
    require_node!();
    // The bridge's files without node_modules: it exits 69, the daemon says npm ci.
    let bare = tempfile::tempdir().unwrap();
    for f in ["index.js", "package.json"] {
        std::fs::copy(bridge_dir().join(f), bare.path().join(f)).unwrap();
    }
    let cfg = |dir: &Path| {
        format!(
            "[server]\nbackend = \"tencent\"\n[tencent]\nbridge_dir = {}\n",
            toml_str(dir.to_str().unwrap())
        )
    };
    let out = imlinkd(&cfg(bare.path()), &["--check-config"], &path_var());
    assert_eq!(out.status.code(), Some(78), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "the Tencent bridge's packages are not installed in {d}: run `npm ci --omit=dev --prefix {d}`",
            d = bare.path().display()
        )),
        "{err}"
    );
    // The real packages, but package.json pins another version.
    let other = tempfile::tempdir().unwrap();
    std::fs::copy(bridge_dir().join("index.js"), other.path().join("index.js")).unwrap();
    std::os::unix::fs::symlink(
        bridge_dir().join("node_modules"),
        other.path().join("node_modules"),
    )
    .unwrap();
    std::fs::write(
        other.path().join("package.json"),
        r#"{"dependencies":{"@tencentcloud/chat":"3.6.5","ws":"8.23.0"}}"#,
    )
    .unwrap();
    let out = imlinkd(&cfg(other.path()), &[], &path_var());
    assert_eq!(out.status.code(), Some(78));
    let err = text(&out.stderr);
    assert!(
        err.contains("wrong SDK version: the Tencent bridge in")
            && err.contains("loaded @tencentcloud/chat 3.6.6, its package.json pins 3.6.5"),
        "{err}"
    );
    // And the real bridge passes, saying what it found.
    let out = imlinkd(&cfg(&bridge_dir()), &["--check-config"], &path_var());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("\n# Tencent bridge: ") && stdout.contains("@tencentcloud/chat 3.6.6"),
        "{stdout}"
    );
}

// ---- the hardened unit: no memory both writable and executable -----------------------

/// `perl -e` code that forbids mappings that are writable and executable for itself and
/// what it runs (prctl PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN: what systemd's
/// `MemoryDenyWriteExecute=yes` enforces), then execs its arguments; exit 77 when the
/// kernel cannot (before Linux 6.3).
fn mdwe_wrapper() -> Option<Vec<String>> {
    let nr = if cfg!(target_arch = "x86_64") {
        157
    } else if cfg!(target_arch = "aarch64") {
        167
    } else {
        return None;
    };
    let code = format!(
        "syscall({nr}, 65, 1, 0, 0, 0) == 0 or exit 77; exec {{ $ARGV[0] }} @ARGV or die \"exec: $!\""
    );
    Some(vec!["perl".into(), "-e".into(), code])
}

#[test]
fn the_bridge_runs_under_memory_deny_write_execute() {
    require_node!();
    let Some(wrapper) = mdwe_wrapper() else {
        let _ = writeln!(
            std::io::stderr(),
            "\n******** SKIPPED: no MDWE test on this architecture ********\n"
        );
        return;
    };
    let run = |args: &[&str]| {
        Command::new(&wrapper[0])
            .args(&wrapper[1..])
            .args(args)
            .current_dir(bridge_dir())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
    };
    let Ok(probe) = run(&["true"]) else {
        let _ = writeln!(
            std::io::stderr(),
            "\n******** SKIPPED: perl is not installed (MDWE test) ********\n"
        );
        return;
    };
    if probe.code() == Some(77) {
        let _ = writeln!(
            std::io::stderr(),
            "\n******** SKIPPED: this kernel has no PR_SET_MDWE (Linux >= 6.3) ********\n"
        );
        return;
    }
    // The wrapper does forbid it: V8 with its JIT dies under it.
    let jit = run(&["node", "index.js", "--version"]).unwrap();
    assert!(
        !jit.success(),
        "node with JIT ran under MDWE: the wrapper does nothing"
    );
    // The daemon runs node --jitless: the bridge logs in under the same rule.
    let server = DevServer::start(&[]);
    let d = tencent_daemon_with(
        &server,
        &[],
        Launch {
            wrapper,
            ..Launch::default()
        },
    );
    let mut c = d.client();
    login_alice(&mut c);
    assert_eq!(c.login_status(), 1);
    assert_eq!(web_sessions(&server, "alice").len(), 1);
}
