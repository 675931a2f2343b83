//! imlinkd end to end, real devserver: start, login, getters, the 7501/7502 rules, account
//! switch, repeat login, logout and unInitSDK (issue 4 scenarios 1, 2, 9, 12);
//! `metrics.listen` with one account.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::json;
use support::daemon::{Daemon, Launch, T};
use support::*;

fn names(events: &[serde_json::Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn starts_connected_and_logged_out_when_the_app_id_is_configured() {
    let server = DevServer::start(&[]);
    let d = Daemon::start(&server, &[]);
    let mut c = d.client();
    let sub = c.ok("subscribe", json!({"since": 0}));
    assert_eq!(sub["bootID"].as_str().unwrap().len(), 32);
    let (_, before) = c.wait_event("onConnectSuccess", T);
    assert_eq!(before, ["onConnecting"]);
    assert_eq!(c.login_status(), 3);
    let s = c.ok("status", json!({}));
    assert_eq!(s["connection"], "connected");
    assert_eq!(s["sdkAppID"], APP);
    assert_eq!(s["userID"], "");
}

#[test]
fn login_goes_logining_then_logined_and_the_getters_answer() {
    let server = DevServer::start(&[]);
    let d = Daemon::start(&server, &[]);
    let mut c = d.client();
    c.wait_status(T, "connected", |s| s["connection"] == "connected");
    c.subscribe();
    let sig = ticket("alice", 3600);
    assert_eq!(
        c.ok("login", json!({"userID": "alice", "userSig": sig})),
        json!({})
    );
    let (e1, _) = c.wait_event("onLoginStatusChanged", T);
    assert_eq!(
        (e1["data"]["status"].as_i64(), e1["data"]["userID"].as_str()),
        (Some(2), Some("alice"))
    );
    let (e2, _) = c.wait_event("onLoginStatusChanged", T);
    assert_eq!(e2["data"]["status"], 1);
    assert_eq!(e2["seq"].as_u64().unwrap(), e1["seq"].as_u64().unwrap() + 1);
    assert_eq!(c.login_status(), 1);
    assert_eq!(c.ok("getLoginUser", json!({})), json!({"userID": "alice"}));
    let before = now_unix();
    let t = c.ok("getServerTime", json!({}))["serverTime"]
        .as_i64()
        .unwrap();
    let after = now_unix();
    // The devserver's clock is this machine's; the daemon carries the last server time
    // it heard forward, so it can only lag, by the transit of the frame that carried it
    // (one second allows for that, and for rounding down to the second).
    assert!(
        (before - 1..=after).contains(&t),
        "server time {t} not in {}..={after}",
        before - 1
    );
    assert_eq!(c.ok("getSelfInfo", json!({}))["info"]["userID"], "alice");
    assert_eq!(server.user_stats("alice")["logins"], 1);
    let st = c.ok("status", json!({}));
    assert!(st["userSigExpiresAt"].as_i64().unwrap() > now_unix());
    // The session is saved (right after the reply), the ticket never logged.
    wait_until(T, "the login on disk", || {
        d.session_file().is_some_and(|f| f["loggedIn"] == true)
    });
    let f = d.session_file().unwrap();
    assert_eq!(
        (f["loggedIn"].as_bool(), f["userID"].as_str()),
        (Some(true), Some("alice"))
    );
    assert!(!d.log().contains(&sig), "the UserSig must never be logged");
    assert!(
        !st.to_string().contains(&sig),
        "status must not show the UserSig"
    );
}

#[test]
fn login_during_login_is_7501_and_logout_during_logout_is_7502() {
    let server = DevServer::start(&["--faults"]);
    // Timeouts far beyond the test: only the silence decides when the server answers.
    let d = Daemon::start(
        &server,
        &[
            ("server.request_timeout_ms", "60000"),
            ("server.login_timeout_ms", "60000"),
            ("server.heartbeat_timeout_ms", "60000"),
        ],
    );
    let mut a = d.client();
    a.wait_status(T, "connected", |s| s["connection"] == "connected");
    // The server reads nothing until the silence is cleared: the first login stays in
    // flight while the second arrives.
    server.fault("silence?ms=600000");
    let mut b = d.client();
    let sig = ticket("alice", 3600);
    a.send_raw(format!("{}\n", json!({"jsonrpc":"2.0","id":"first","method":"login","params":{"userID":"alice","userSig":sig}})).as_bytes());
    b.wait_status(T, "logining", |s| s["loginStatus"] == 2);
    assert_eq!(
        b.err("login", json!({"userID": "alice", "userSig": sig})),
        7501
    );
    server.fault("clear");
    let r = a.next_reply(T).unwrap();
    assert_eq!(
        (r["id"].as_str(), r["result"].clone()),
        (Some("first"), json!({}))
    );
    // Two logouts at once while the server reads nothing: one proceeds and waits for the
    // server, the other gets 7502 at once.
    server.fault("silence?ms=600000");
    let out = json!({"jsonrpc":"2.0","id":"out","method":"logout"});
    a.send_raw(format!("{out}\n").as_bytes());
    b.send_raw(format!("{out}\n").as_bytes());
    let outcome = |r: &serde_json::Value| match r.get("error") {
        Some(e) => e["code"].to_string(),
        None => r["result"].to_string(),
    };
    // The first reply, from either client, must be the 7502: the other cannot be
    // answered before the silence ends.
    let mut first = None;
    wait_until(T, "the first reply to a logout", || {
        first = a
            .next_reply(std::time::Duration::from_millis(10))
            .map(|r| (r, true))
            .or_else(|| {
                b.next_reply(std::time::Duration::from_millis(10))
                    .map(|r| (r, false))
            });
        first.is_some()
    });
    let (r1, from_a) = first.unwrap();
    assert_eq!(outcome(&r1), "7502", "{r1}");
    server.fault("clear");
    let other = if from_a { &mut b } else { &mut a };
    let r2 = other.next_reply(T).unwrap();
    assert_eq!(outcome(&r2), "{}", "{r2}");
    assert_eq!(b.login_status(), 3);
}

#[test]
fn same_user_again_is_repeat_login_and_another_user_replaces_the_first() {
    let server = DevServer::start(&[]);
    let d = Daemon::start(&server, &[]);
    let mut c = d.client();
    c.wait_status(T, "connected", |s| s["connection"] == "connected");
    let sig = ticket("alice", 3600);
    c.ok("login", json!({"userID": "alice", "userSig": sig}));
    assert_eq!(
        c.ok("login", json!({"userID": "alice", "userSig": sig})),
        json!({"repeatLogin": true})
    );
    assert_eq!(
        server.user_stats("alice")["logins"],
        1,
        "a repeat login sends nothing"
    );
    // A new ticket for the same user renews it on the live connection.
    let sig2 = ticket_at("alice", 7200, now_unix() + 1);
    assert_eq!(
        c.ok("login", json!({"userID": "alice", "userSig": sig2})),
        json!({"repeatLogin": true})
    );
    assert_eq!(c.login_status(), 1);
    wait_until(T, "the new ticket on disk", || {
        d.session_file()
            .is_some_and(|f| f["userSig"] == sig2.as_str())
    });
    c.subscribe();
    c.ok(
        "login",
        json!({"userID": "bob", "userSig": ticket("bob", 3600)}),
    );
    // Everything up to bob's LOGINED, then everything emitted up to now.
    let mut ev = c.events_until(T, |e| {
        e["event"] == "onLoginStatusChanged"
            && e["data"]["status"] == 1
            && e["data"]["userID"] == "bob"
    });
    ev.extend(c.events_so_far());
    let changes: Vec<(i64, String)> = ev
        .iter()
        .filter(|e| e["event"] == "onLoginStatusChanged")
        .map(|e| {
            (
                e["data"]["status"].as_i64().unwrap(),
                e["data"]["userID"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [(3, "alice".into()), (2, "bob".into()), (1, "bob".into())],
        "{:?}",
        names(&ev)
    );
    assert_eq!(c.ok("getLoginUser", json!({})), json!({"userID": "bob"}));
    wait_until(T, "alice offline on the server", || {
        let r = server.rest(
            "openim/query_online_status",
            json!({"To_Account": ["alice", "bob"]}),
        );
        r["QueryResult"][0]["Status"] == "Offline" && r["QueryResult"][1]["Status"] == "Online"
    });
}

#[test]
fn logout_keeps_the_connection_and_uninit_closes_it_for_good() {
    let server = DevServer::start(&[]);
    let d = Daemon::start(&server, &[]);
    let mut c = d.client();
    c.wait_status(T, "connected", |s| s["connection"] == "connected");
    c.ok(
        "login",
        json!({"userID": "alice", "userSig": ticket("alice", 3600)}),
    );
    assert_eq!(c.ok("logout", json!({})), json!({}));
    assert_eq!(c.login_status(), 3);
    let r = server.rest(
        "openim/query_online_status",
        json!({"To_Account": ["alice"]}),
    );
    assert_eq!(r["QueryResult"][0]["Status"], "Offline");
    assert_eq!(c.ok("status", json!({}))["connection"], "connected");
    assert_eq!(d.session_file().unwrap()["loggedIn"], false);
    assert_eq!(
        c.ok("logout", json!({})),
        json!({}),
        "logout when logged out succeeds"
    );

    c.ok(
        "login",
        json!({"userID": "alice", "userSig": ticket("alice", 3600)}),
    );
    c.subscribe();
    assert_eq!(c.ok("unInitSDK", json!({})), json!({}));
    let s = c.ok("status", json!({}));
    assert_eq!(
        (
            s["loginStatus"].as_i64(),
            s["connection"].as_str(),
            s["sdkAppID"].is_null()
        ),
        (Some(3), Some("idle"), true)
    );
    wait_until(T, "the devserver sees no connection", || {
        server.stats()["connectionsOpen"] == 0
    });
    let connections = server.stats()["connectionsTotal"].clone();
    // No reconnect happens: nothing is scheduled (the link is idle, with no retry
    // pending, as soon as unInitSDK has answered), no event says otherwise, and the
    // devserver sees no new connection.
    assert_eq!(
        (&s["nextRetryMs"], &s["reconnectAttempt"]),
        (&json!(null), &json!(0)),
        "{s}"
    );
    let ev = c.events_so_far();
    assert!(
        !names(&ev).contains(&"onConnecting".to_owned()),
        "{:?}",
        names(&ev)
    );
    assert_eq!(
        c.err(
            "login",
            json!({"userID": "alice", "userSig": ticket("alice", 60)})
        ),
        6013
    );
    let s = c.ok("status", json!({}));
    assert_eq!(
        (s["connection"].as_str(), &s["nextRetryMs"]),
        (Some("idle"), &json!(null)),
        "{s}"
    );
    let ev = c.events_so_far();
    assert!(
        !names(&ev).contains(&"onConnecting".to_owned()),
        "{:?}",
        names(&ev)
    );
    assert_eq!(server.stats()["connectionsTotal"], connections);
}

#[test]
fn a_daemon_without_an_app_id_waits_for_init_sdk() {
    let server = DevServer::start(&[]);
    let d = Daemon::start_uninit(&server, &[]);
    let mut c = d.client();
    assert_eq!(c.ok("status", json!({}))["connection"], "idle");
    assert_eq!(
        c.err("login", json!({"userID": "alice", "userSig": "x"})),
        6013
    );
    assert_eq!(
        c.ok(
            "initSDK",
            json!({"sdkAppID": APP, "logLevel": "V2TIM_LOG_DEBUG"})
        ),
        json!({})
    );
    assert_eq!(
        c.ok("initSDK", json!({"sdkAppID": APP})),
        json!({}),
        "init twice is a no-op"
    );
    c.wait_status(T, "connected", |s| s["connection"] == "connected");
    c.ok(
        "login",
        json!({"userID": "alice", "userSig": ticket("alice", 3600)}),
    );
    assert_eq!(c.login_status(), 1);
}

#[test]
fn logs_in_over_wss_with_the_configured_ca_and_refuses_an_untrusted_server() {
    let dir = tempfile::tempdir().unwrap();
    let (ca_pem, cert, key) = test_ca(dir.path());
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca_pem).unwrap();
    let server = DevServer::start_with(Options {
        tls: Some((cert, key)),
        ..Options::default()
    });
    let url = format!("wss://localhost:{}/v1/connect", server.addr.port());
    let ca_setting = format!("{:?}", ca_file.display().to_string());
    let d = Daemon::start_url(&url, &[("server.ca_file", &ca_setting)], false);
    let mut c = d.client();
    c.wait_status(T, "connected over TLS", |s| s["connection"] == "connected");
    c.ok(
        "login",
        json!({"userID": "alice", "userSig": ticket("alice", 3600)}),
    );
    assert_eq!(c.login_status(), 1);

    // Without the CA (the built-in web roots) the server is not trusted.
    let d2 = Daemon::start_url(&url, &[], false);
    let mut c2 = d2.client();
    c2.ok("subscribe", json!({"since": 0}));
    let (failed, _) = c2.wait_event("onConnectFailed", T);
    assert_eq!(failed["data"]["code"], 9508);
    assert_ne!(c2.ok("status", json!({}))["connection"], "connected");
}

/// A logout must be answered only once the session file says so (docs/architecture.md,
/// Persistence). With every fsync of the daemon slowed down to 500 ms (strace fault
/// injection), the login's reply waits for its write, but the logout's reply comes first:
/// the write of "logged out" is queued when the logout starts and the reply goes out when
/// the server has answered, without waiting for it. `logout_keeps_the_connection…`
/// trips on the same race now and then.
#[test]
fn logout_is_answered_only_once_the_session_file_says_so() {
    let server = DevServer::start(&[]);
    let wrapper = [
        "strace",
        "-D",
        "-f",
        "-qq",
        "-o",
        "/dev/null",
        "-e",
        "trace=fsync",
        "-e",
        "inject=fsync:delay_enter=500000",
    ];
    let d = Daemon::start_with(
        &server,
        &[],
        Launch {
            wrapper: wrapper.iter().map(|s| s.to_string()).collect(),
            ..Launch::default()
        },
    );
    let mut c = d.client();
    c.wait_status(T, "connected", |s| s["connection"] == "connected");
    c.ok(
        "login",
        json!({"userID": "alice", "userSig": ticket("alice", 3600)}),
    );
    // A login is written right after its reply; a logout must be written before its own.
    wait_until(T, "the login on disk", || {
        d.session_file().is_some_and(|f| f["loggedIn"] == true)
    });
    c.ok("logout", json!({}));
    assert_eq!(
        d.session_file().unwrap()["loggedIn"],
        false,
        "the logout was answered before the session file said so"
    );
}

#[test]
fn metrics_listen_serves_the_exposition_with_one_account() {
    let server = DevServer::start(&[]);
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let d = Daemon::start(
        &server,
        &[("metrics.listen", &format!("{:?}", addr.to_string()))],
    );
    let mut c = d.client();
    c.ok(
        "login",
        json!({"userID": "alice", "userSig": ticket("alice", 3600)}),
    );
    let m = c.ok("metrics", json!({}));
    assert_eq!(
        (
            m["accounts"].as_u64(),
            m["logined"].as_u64(),
            m["online"].as_u64()
        ),
        (Some(1), Some(1), Some(1)),
        "{m}"
    );
    let (code, body) = http(addr, "GET", "/metrics", "");
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("imlink_accounts_by_status{status=\"logined\"} 1\n"),
        "{body}"
    );
    assert!(
        body.contains(&format!("imlink_logins_total {}\n", m["logins"])),
        "{body}"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");
    // A logout shows at once.
    c.ok("logout", json!({}));
    let (_, body) = http(addr, "GET", "/metrics", "");
    assert!(
        body.contains("imlink_accounts_by_status{status=\"logined\"} 0\n"),
        "{body}"
    );
}
