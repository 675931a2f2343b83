//! Many accounts in one daemon (`accounts.multi = true`), against a real devserver: a
//! login with a new userID adds an account, the `account` param chooses it, events carry
//! it and subscriptions filter by it, `logout`, `removeAccount`, `listAccounts`, the
//! session files under `state.dir/accounts`, and the daemon's restore after SIGKILL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{json, Value};
use support::daemon::{Daemon, Rpc, T};
use support::*;

const MULTI: &[(&str, &str)] = &[("accounts.multi", "true")];

fn account_file(d: &Daemon, user: &str) -> Option<Value> {
    let p = d
        .state_dir()
        .join("accounts")
        .join(user)
        .join("session.json");
    let text = std::fs::read_to_string(p).ok()?;
    Some(serde_json::from_str(&text).unwrap())
}

fn listed(c: &mut Rpc) -> Vec<Value> {
    c.ok("listAccounts", json!({}))["accounts"]
        .as_array()
        .unwrap()
        .clone()
}

fn status_of(c: &mut Rpc, user: &str) -> i64 {
    c.ok("getLoginStatus", json!({"account": user}))["status"]
        .as_i64()
        .unwrap()
}

#[test]
fn logins_add_accounts_and_the_account_param_chooses_one() {
    let server = DevServer::start(&[]);
    let metrics_addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let listen = format!("{:?}", metrics_addr.to_string());
    let d = Daemon::start(
        &server,
        &[("accounts.multi", "true"), ("metrics.listen", &listen)],
    );
    let mut c = d.client();
    let mut bob_only = d.client();
    bob_only.ok("subscribe", json!({"accounts": ["bob"]}));
    c.subscribe();

    assert!(listed(&mut c).is_empty());
    // No account yet: a call that concerns one names the param it needs.
    let (code, msg) = c.call("getLoginStatus", json!({})).unwrap_err();
    assert_eq!(code, 6017);
    assert!(msg.contains("parameter account"), "{msg}");

    c.ok(
        "login",
        json!({"userID": "alice", "userSig": ticket("alice", 3600)}),
    );
    // Exactly one account: the param may be left out.
    assert_eq!(c.ok("getLoginStatus", json!({}))["status"], 1);
    assert_eq!(c.ok("getLoginUser", json!({}))["userID"], "alice");

    // Another userID adds an account; alice stays logged in.
    let r = c.ok(
        "login",
        json!({"userID": "bob", "userSig": ticket("bob", 3600)}),
    );
    assert_eq!(r, json!({}));
    assert_eq!(status_of(&mut c, "alice"), 1);
    assert_eq!(status_of(&mut c, "bob"), 1);
    let (code, msg) = c.call("status", json!({})).unwrap_err();
    assert_eq!(code, 6017);
    assert!(
        msg.contains("parameter account") && msg.contains("2 accounts"),
        "{msg}"
    );
    let (code, msg) = c
        .call("getLoginStatus", json!({"account": "carol"}))
        .unwrap_err();
    assert_eq!(code, 6017);
    assert!(msg.contains("parameter account"), "{msg}");
    assert_eq!(
        c.err("getLoginStatus", json!({"account": "bad id"})),
        6017,
        "an account that is not a userID"
    );
    let s = c.ok("status", json!({"account": "bob"}));
    assert_eq!(
        (s["userID"].as_str(), s["loginStatus"].as_i64()),
        (Some("bob"), Some(1))
    );
    wait_until(T, "bob online", || {
        c.ok("status", json!({"account": "bob"}))["online"] == true
    });

    let list = listed(&mut c);
    let users: Vec<&str> = list.iter().map(|a| a["userID"].as_str().unwrap()).collect();
    assert_eq!(users, ["alice", "bob"]);
    for a in &list {
        assert_eq!(a["status"], 1);
        assert!(a["userSigExpiresAt"].as_i64().unwrap() > now_unix());
        assert!(a.get("connection").is_some());
    }

    // imlinkctl lists them.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_imlinkctl"))
        .arg("--socket")
        .arg(&d.socket)
        .arg("accounts")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[0].starts_with("alice ") && lines[0].contains("LOGINED"),
        "{text}"
    );
    assert!(
        lines[1].starts_with("bob ") && lines[1].contains("connected"),
        "{text}"
    );
    assert_eq!(lines[2], "2 of 2 accounts online");

    // Repeating a login of an account: repeatLogin, as with one account.
    let r = c.ok(
        "login",
        json!({"userID": "bob", "userSig": ticket("bob", 3600)}),
    );
    assert_eq!(r["repeatLogin"], true);

    // Every event names its account; the filtered subscriber sees only bob's.
    let (e, _) = c.wait_event("onLoginStatusChanged", T);
    assert_eq!(e["account"], "alice");
    let bob_events = bob_only.events_until(T, |e| {
        e["event"] == "onLoginStatusChanged" && e["data"]["status"] == 1
    });
    assert!(
        bob_events.iter().all(|e| e["account"] == "bob"),
        "{bob_events:?}"
    );

    // logout takes the account; the other is not disturbed.
    assert_eq!(c.err("logout", json!({})), 6017);
    c.ok("logout", json!({"userID": "bob"}));
    assert_eq!(status_of(&mut c, "bob"), 3);
    assert_eq!(status_of(&mut c, "alice"), 1);
    assert_eq!(account_file(&d, "bob").unwrap()["loggedIn"], false);
    assert_eq!(account_file(&d, "alice").unwrap()["loggedIn"], true);
    let (e, _) = bob_only.wait_event("onLoginStatusChanged", T);
    assert_eq!(
        (e["account"].as_str(), e["data"]["reason"].as_str()),
        (Some("bob"), Some("logout"))
    );

    // removeAccount: gone from the list and from the disk.
    c.ok("removeAccount", json!({"account": "bob"}));
    let users: Vec<String> = listed(&mut c)
        .iter()
        .map(|a| a["userID"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(users, ["alice"]);
    assert!(!d.state_dir().join("accounts").join("bob").exists());
    assert_eq!(c.err("removeAccount", json!({"account": "bob"})), 6017);
    assert_eq!(status_of(&mut c, "alice"), 1);

    // unInitSDK has no meaning for many accounts.
    assert_eq!(c.err("unInitSDK", json!({})), 6017);
    // The metrics count what happened.
    let m = c.ok("metrics", json!({}));
    assert_eq!(
        (m["accounts"].as_u64(), m["logined"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(m["logins"].as_u64().unwrap() >= 2, "{m}");
    // The same figures in the Prometheus exposition.
    let (code, body) = http(metrics_addr, "GET", "/metrics", "");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\nimlink_accounts 1\n"), "{body}");
    assert!(
        body.contains("imlink_accounts_by_status{status=\"logined\"} 1\n"),
        "{body}"
    );
    assert!(body.contains("imlink_subscribers 2\n"), "{body}");
    assert!(
        body.contains(&format!("imlink_logins_total {}\n", m["logins"])),
        "{body}"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");
    assert_eq!(http(metrics_addr, "GET", "/other", "").0, 404);
}

#[test]
fn accounts_come_back_after_sigkill_each_in_its_state() {
    let server = DevServer::start(&[]);
    let mut d = Daemon::start(&server, MULTI);
    let mut c = d.client();
    for u in ["u1", "u2", "u3"] {
        c.ok("login", json!({"userID": u, "userSig": ticket(u, 3600)}));
    }
    c.ok("logout", json!({"account": "u2"}));
    wait_until(T, "the logins on disk", || {
        account_file(&d, "u1").is_some_and(|f| f["loggedIn"] == true)
            && account_file(&d, "u3").is_some_and(|f| f["loggedIn"] == true)
    });
    d.kill();
    d.start_again();
    let mut c = d.client();
    wait_until(T, "u1 and u3 back online", || {
        let list = listed(&mut c);
        list.len() == 3
            && list.iter().all(|a| {
                let online = a["userID"] != "u2";
                a["status"] == if online { 1 } else { 3 } && a["online"] == online
            })
    });
    // Only the logged-in accounts logged in again.
    assert_eq!(server.user_stats("u2")["loginAttempts"], 1);
    assert_eq!(server.user_stats("u1")["loginAttempts"], 2);
}

#[test]
fn logins_are_paced_by_the_login_rate() {
    let server = DevServer::start(&[]);
    let d = Daemon::start(
        &server,
        &[
            ("accounts.multi", "true"),
            ("accounts.login_rate", "20"),
            ("server.login_timeout_ms", "30000"),
        ],
    );
    let mut watch = d.client();
    watch.subscribe();
    let mut c = d.client();
    // 21 logins at once: at 20 per second, the last is accepted at least a second after
    // the first.
    let users: Vec<String> = (0..21).map(|i| format!("p{i:02}")).collect();
    for (i, u) in users.iter().enumerate() {
        c.send(
            json!(i),
            "login",
            json!({"userID": u, "userSig": ticket(u, 3600)}),
        );
    }
    for _ in &users {
        let r = c.next_reply(std::time::Duration::from_secs(60)).unwrap();
        assert_eq!(r["result"], json!({}), "{r}");
    }
    let mut times = Vec::new();
    while times.len() < users.len() {
        let (e, _) = watch.wait_event("onLoginStatusChanged", T);
        if e["data"]["status"] == 1 {
            times.push(e["time"].as_i64().unwrap());
        }
    }
    let span = times.iter().max().unwrap() - times.iter().min().unwrap();
    // 20 gaps of 50 ms between the sends; less a little for the answers' own delays.
    assert!(span >= 900, "21 logins at 20/s took only {span} ms");
}

/// A login of an account whose link is up waits for its turn of `accounts.login_rate`
/// before it reaches the server: ten at once at 5/s take their slots 200 ms apart.
#[test]
fn logins_of_connected_accounts_wait_their_turn() {
    let server = DevServer::start(&[]);
    let d = Daemon::start(
        &server,
        &[("accounts.multi", "true"), ("accounts.login_rate", "5")],
    );
    let mut c = d.client();
    let users: Vec<String> = (0..10).map(|i| format!("paced{i}")).collect();
    for u in &users {
        c.ok("login", json!({"userID": u, "userSig": ticket(u, 3600)}));
    }
    for u in &users {
        c.ok("logout", json!({"account": u}));
    }
    // Logged out, still connected: only the login pace stands between a login and the
    // server now.
    wait_until(T, "every account connected", || {
        listed(&mut c)
            .iter()
            .all(|a| a["connection"] == "connected" && a["status"] == 3)
    });
    let before = server.requests("login");
    let t0 = std::time::Instant::now();
    for (i, u) in users.iter().enumerate() {
        c.send(
            json!(i),
            "login",
            json!({"userID": u, "userSig": ticket(u, 3600)}),
        );
    }
    // When the first is answered, the server has seen only the logins whose slot has
    // come: not all ten (at most 6 of them could start within a second).
    let first = c.next_reply(T).expect("a login answered");
    assert_eq!(first["result"], json!({}), "{first}");
    let early = server.requests("login") - before;
    assert!(early <= 6, "{early} logins reached the server at once");
    for _ in 1..users.len() {
        let r = c.next_reply(T).expect("a login answered");
        assert_eq!(r["result"], json!({}), "{r}");
    }
    let took = t0.elapsed();
    assert!(
        took >= std::time::Duration::from_millis(1500),
        "ten logins at 5/s were all answered after {took:?}"
    );
    assert_eq!(server.requests("login") - before, 10);
}
