//! imlinkd through network faults, kicks, expiry and restarts, against a real devserver
//! (issue 4 scenarios 3–8, 10, 11, 13). Each test asserts the event sequence, the final
//! status and how many logins the devserver saw.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::daemon::{Daemon, Launch, Rpc, T};
use support::*;

fn name(e: &Value) -> &str {
    e["event"].as_str().unwrap_or_default()
}

/// A daemon logged in as alice, its client subscribed after the login.
fn logged_in(server: &DevServer, overrides: &[(&str, &str)]) -> (Daemon, Rpc, String) {
    let d = Daemon::start(server, overrides);
    let mut c = d.client();
    c.wait_status(T, "connected", |s| s["connection"] == "connected");
    let sig = ticket("alice", 3600);
    c.ok("login", json!({"userID": "alice", "userSig": sig}));
    // A login is answered once the server accepted it; its state file follows.
    wait_until(T, "the login on disk", || {
        d.session_file().is_some_and(|f| f["loggedIn"] == true)
    });
    c.subscribe();
    (d, c, sig)
}

fn attempts(server: &DevServer) -> i64 {
    server.user_stats("alice")["loginAttempts"]
        .as_i64()
        .unwrap_or(0)
}

#[test]
fn devserver_killed_reconnects_with_backoff_and_relogs_in_silently() {
    let mut server = DevServer::start(&[]);
    let (d, mut c, _) = logged_in(&server, &[]);
    // Once the connection is stable (up reconnect.stable_ms = 500), its loss is retried at
    // once and the backoff starts over.
    wait_stable(&mut c);
    let mark = d.log().len();
    server.kill();
    let (lost, _) = c.wait_event("onConnectFailed", T);
    assert_eq!(lost["data"]["code"], 9508);
    // Collect a few failed attempts: the waits between them follow the backoff
    // (200 ms × 1.6ⁿ, ±20 %).
    let mut failures = vec![lost];
    let mut connectings = Vec::new();
    while failures.len() < 5 {
        let e = c.next_event(T).expect("more reconnect attempts");
        match name(&e) {
            "onConnecting" => connectings.push(e),
            "onConnectFailed" => failures.push(e),
            other => panic!("unexpected {other} while the server is down: {e}"),
        }
    }
    assert_eq!(
        c.login_status(),
        1,
        "the status stays LOGINED while reconnecting"
    );
    // The first attempt comes right after losing a stable connection: no wait is
    // scheduled in between (the daemon logs every wait it schedules), and it is the very
    // next event.
    assert_eq!(
        connectings[0]["seq"].as_u64().unwrap(),
        failures[0]["seq"].as_u64().unwrap() + 1,
        "{connectings:?} {failures:?}"
    );
    wait_until(T, "four backoff lines in the log", || {
        backoff_delays(&d.log()[mark..]).len() >= 4
    });
    let log = d.log()[mark..].to_owned();
    assert_eq!(
        link_steps(&log)[..9],
        [
            "lost",
            "connecting",
            "backoff",
            "connecting",
            "backoff",
            "connecting",
            "backoff",
            "connecting",
            "backoff"
        ],
        "{log}"
    );
    // Then waits of 200, 320, 512 ms ± 20 %, each waited in full.
    let delays = backoff_delays(&log);
    for (i, base) in [200.0, 320.0, 512.0].iter().enumerate() {
        let (attempt, planned) = delays[i];
        assert_eq!(attempt, i as u64 + 1, "{delays:?}");
        assert!(
            (planned as f64) >= base * 0.8 - 1.0 && (planned as f64) <= base * 1.2 + 1.0,
            "retry {i}: planned {planned} ms, backoff {base} ms ±20 %"
        );
        let gap = time(&connectings[i + 1]) - time(&failures[i + 1]);
        assert!(
            gap >= planned - 2,
            "retry {i}: waited {gap} ms of the {planned} ms planned"
        );
    }
    server.start_again();
    c.wait_event("onConnectSuccess", T);
    // The silent re-login: onRelogin, and no status change on the way.
    let (relogin, between) = c.wait_event("onRelogin", T);
    assert_eq!(relogin["data"]["success"], true, "{relogin}");
    assert!(
        !between.iter().any(|n| n == "onLoginStatusChanged"),
        "a silent re-login changes no status: {between:?}"
    );
    assert_eq!(server.user_stats("alice")["logins"], 1);
    assert_eq!(server.user_stats("alice")["autoLogins"], 1);
    assert_eq!(c.login_status(), 1);
    let later = c.events_so_far();
    assert!(
        later.iter().all(|e| name(e) != "onLoginStatusChanged"),
        "a silent re-login changes no status: {later:?}"
    );
}

fn time(e: &Value) -> i64 {
    e["time"].as_i64().unwrap()
}

/// The reconnect waits the daemon scheduled, as its log says: `(attempt, delay_ms)` of
/// every `reconnecting after backoff delay_ms=… attempt=…` line, in order.
fn backoff_delays(log: &str) -> Vec<(u64, i64)> {
    let field = |line: &str, key: &str| -> u64 {
        let v = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in {line:?}"));
        v.parse()
            .unwrap_or_else(|_| panic!("bad {key} in {line:?}"))
    };
    log.lines()
        .filter(|l| l.contains("reconnecting after backoff"))
        .map(|l| (field(l, "attempt="), field(l, "delay_ms=") as i64))
        .collect()
}

/// The link's steps in the log, in order: `lost` (an established connection ended),
/// `connecting` (an attempt starts), `backoff` (a wait before the next attempt).
fn link_steps(log: &str) -> Vec<&'static str> {
    log.lines()
        .filter_map(|l| {
            if l.contains("reconnecting after backoff") {
                Some("backoff")
            } else if l.contains(": connection lost: ") {
                Some("lost")
            } else if l.contains(": connecting server=") {
                Some("connecting")
            } else {
                None
            }
        })
        .collect()
}

#[test]
fn a_silent_server_is_detected_within_heartbeat_timeout_plus_interval() {
    let server = DevServer::start(&["--faults"]);
    let (_d, mut c, _) = logged_in(
        &server,
        &[
            ("server.heartbeat_interval_ms", "200"),
            ("server.heartbeat_timeout_ms", "700"),
        ],
    );
    let t0 = imlink_now_ms();
    // Silent for longer than the test: nothing but the heartbeat rule can end the
    // connection (the server closes nothing while silent).
    server.fault("silence?ms=600000");
    let (lost, _) = c.wait_event("onConnectFailed", T);
    server.fault("clear");
    // Declared dead by the heartbeat rule, only after more than heartbeat_timeout_ms
    // (700) without a frame, as the daemon measured it.
    let desc = lost["data"]["desc"].as_str().unwrap();
    let silent_ms: u64 = desc
        .strip_prefix("no frame from the server for ")
        .and_then(|r| r.strip_suffix(" ms"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not the heartbeat rule: {lost}"));
    assert!(silent_ms > 700, "declared dead too early: {desc}");
    // Detected on the first heartbeat tick past the timeout: 700 + 200 ms after the
    // last frame. The bound is the behaviour; the slack (2 s) is for a busy machine.
    let detected = time(&lost) - t0;
    assert!(detected <= 700 + 200 + 2000, "detected after {detected} ms");
    c.wait_event("onConnectSuccess", T);
    wait_until(T, "the re-login after the silence", || {
        server.user_stats("alice")["autoLogins"].as_i64() >= Some(1)
    });
    c.wait_status(T, "online again", |s| {
        s["loginStatus"] == 1 && s["connection"] == "connected"
    });
}

/// Waits until the connection has been up longer than `reconnect.stable_ms` (500 ms).
fn wait_stable(c: &mut Rpc) {
    c.wait_status(T, "a stable connection", |s| {
        s["connectedSince"]
            .as_i64()
            .is_some_and(|t| imlink_now_ms() - t > 600)
    });
}

fn imlink_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn kicked_by_a_device_on_the_same_platform_never_logs_in_again() {
    let server = DevServer::start(&["--faults"]);
    let (d, mut c, _) = logged_in(&server, &[]);
    let mut other = WsClient::connect(&server, "Linux", "another-linux-box");
    assert_eq!(
        other.login("alice", &ticket("alice", 3600), false)["code"],
        0
    );
    let (_, before) = c.wait_event("onKickedOffline", T);
    assert!(before.is_empty(), "{before:?}");
    let (st, _) = c.wait_event("onLoginStatusChanged", T);
    assert_eq!(
        (st["data"]["status"].as_i64(), st["data"]["reason"].as_str()),
        (Some(3), Some("kicked"))
    );
    assert_eq!(c.login_status(), 3);
    let n = attempts(&server);
    // A reconnect is exactly when an auto-relogging client would try again: it must not.
    server.fault("drop");
    let (_, mut more) = c.wait_event("onConnectFailed", T);
    let (_, seen) = c.wait_event("onConnectSuccess", T);
    more.extend(seen);
    // Heartbeats on the new connection are handled after anything sent before them on it.
    server.wait_heartbeats(2);
    assert_eq!(attempts(&server), n, "no login attempt after the kick");
    assert!(!d_session_logged_in(&d), "the saved session is cleared");
    more.extend(c.events_so_far().iter().map(|e| name(e).to_owned()));
    assert!(
        more.iter().all(|e| e != "onKickedOffline"),
        "fires once: {more:?}"
    );
}

fn d_session_logged_in(d: &Daemon) -> bool {
    d.session_file()
        .map(|f| f["loggedIn"] == true)
        .unwrap_or(false)
}

#[test]
fn a_rest_kick_ends_the_login_and_the_old_ticket_is_dead() {
    let server = DevServer::start(&[]);
    let (_d, mut c, sig) = logged_in(&server, &[]);
    let r = server.rest("im_open_login_svc/kick", json!({"UserID": "alice"}));
    assert_eq!(r["ActionStatus"], "OK");
    c.wait_event("onKickedOffline", T);
    assert_eq!(c.login_status(), 3);
    let (code, _) = c
        .call("login", json!({"userID": "alice", "userSig": sig}))
        .unwrap_err();
    assert_eq!(code, 70052);
    let fresh = ticket_at("alice", 3600, now_unix() + 1);
    c.ok("login", json!({"userID": "alice", "userSig": fresh}));
    assert_eq!(c.login_status(), 1);
}

#[test]
fn a_ticket_expiring_online_warns_then_logs_out_without_retry() {
    let server = DevServer::start(&["--faults"]);
    let d = Daemon::start(&server, &[("sdk.usersig_expiring_lead_secs", "2")]);
    let mut c = d.client();
    c.wait_status(T, "connected", |s| s["connection"] == "connected");
    c.subscribe();
    let sig = ticket("alice", 3);
    let expires_at = imlink::usersig::decode(&sig).unwrap().expires_at();
    c.ok("login", json!({"userID": "alice", "userSig": sig}));
    let (warn, _) = c.wait_event("onUserSigExpiring", T);
    assert_eq!(warn["data"]["expiresAt"], expires_at);
    assert!(warn["data"]["remainingSecs"].as_i64().unwrap() <= 2);
    let (_, between) = c.wait_event("onUserSigExpired", T);
    assert!(!between.contains(&"onUserSigExpired".to_owned()));
    assert!(now_unix() > expires_at, "expired only after its lifetime");
    let (st, _) = c.wait_event("onLoginStatusChanged", T);
    assert_eq!(
        (st["data"]["status"].as_i64(), st["data"]["reason"].as_str()),
        (Some(3), Some("userSigExpired"))
    );
    assert_eq!(c.login_status(), 3);
    let n = attempts(&server);
    server.fault("drop");
    c.wait_event("onConnectSuccess", T);
    // Heartbeats on the new connection are handled after anything sent before them on it.
    server.wait_heartbeats(2);
    assert_eq!(attempts(&server), n, "no retry with the dead ticket");
    assert!(!d_session_logged_in(&d));
}

#[test]
fn restored_session_of_a_displaced_device_gets_6208_and_stays_out() {
    let server = DevServer::start(&[]);
    let (mut d, _c, _) = logged_in(&server, &[]);
    assert!(d_session_logged_in(&d));
    assert!(d.stop().success(), "SIGTERM exits 0");
    assert!(
        d_session_logged_in(&d),
        "a clean stop keeps the session on disk"
    );
    let mut other = WsClient::connect(&server, "Linux", "another-linux-box");
    assert_eq!(
        other.login("alice", &ticket("alice", 3600), false)["code"],
        0
    );
    let n = attempts(&server);
    d.start_again();
    let mut c = d.client();
    c.ok("subscribe", json!({"since": 0}));
    let (_, before) = c.wait_event("onKickedOffline", T);
    assert!(
        before.contains(&"onLoginStatusChanged".to_owned()),
        "LOGINING first: {before:?}"
    );
    c.wait_status(T, "logged out", |s| s["loginStatus"] == 3);
    // Heartbeats on the connection are handled after anything sent before them on it.
    server.wait_heartbeats(2);
    assert_eq!(attempts(&server), n + 1, "exactly one automatic login");
    assert_eq!(server.user_stats("alice")["failed"]["6208"], 1);
    assert!(!d_session_logged_in(&d), "the session file is cleared");
    // The other device is untouched: nothing was pushed to it, its login is online, and
    // the only displacement is that of the stopped daemon's login.
    other.assert_no_pending_push();
    assert_eq!(server.user_stats("alice")["kickedMultiDevice"], 1);
    let rows = server.sessions();
    let row = rows
        .iter()
        .find(|r| r["instanceId"] == "another-linux-box")
        .unwrap_or_else(|| panic!("{rows:?}"));
    assert_eq!(row["state"], "online", "{rows:?}");
}

#[test]
fn a_killed_daemon_comes_back_logged_in_without_a_call() {
    let server = DevServer::start(&[]);
    let (mut d, _c, _) = logged_in(&server, &[]);
    d.kill();
    d.start_again();
    let mut c = d.client();
    c.ok("subscribe", json!({"since": 0}));
    let s = c.wait_status(T, "LOGINED again", |s| s["loginStatus"] == 1);
    assert_eq!(s["userID"], "alice");
    // Every event up to that status (subscribed since 0), then everything since.
    let mut ev = c.events_through(s["lastSeq"].as_u64().unwrap());
    server.wait_heartbeats(2);
    ev.extend(c.events_so_far());
    let statuses: Vec<(i64, &str)> = ev
        .iter()
        .filter(|e| name(e) == "onLoginStatusChanged")
        .map(|e| {
            (
                e["data"]["status"].as_i64().unwrap(),
                e["data"]["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [(2, "restore"), (1, "restore")],
        "LOGINING, then LOGINED by the restore"
    );
    assert_eq!(server.user_stats("alice")["autoLogins"], 1);
    assert_eq!(
        server.user_stats("alice")["loginAttempts"],
        2,
        "the first login, then exactly one by the restore"
    );
}

#[test]
fn login_while_the_server_is_down_waits_for_it_within_the_login_timeout() {
    let mut server = DevServer::start(&[]);
    let d = Daemon::start(&server, &[("server.login_timeout_ms", "4000")]);
    let mut c = d.client();
    c.wait_status(T, "connected", |s| s["connection"] == "connected");
    server.kill();
    c.wait_status(T, "disconnected", |s| s["connection"] != "connected");
    let socket = d.socket.clone();
    let sig = ticket("alice", 3600);
    let login = std::thread::spawn(move || {
        let mut c2 = Rpc::connect(&socket);
        c2.call("login", json!({"userID": "alice", "userSig": sig}))
    });
    c.wait_status(T, "LOGINING", |s| s["loginStatus"] == 2);
    server.start_again();
    assert_eq!(login.join().unwrap(), Ok(json!({})));
    assert_eq!(c.login_status(), 1);

    // Down for longer than the login timeout: 9508 and LOGOUT.
    c.ok("logout", json!({}));
    server.kill();
    c.wait_status(T, "disconnected", |s| s["connection"] != "connected");
    let started = Instant::now();
    let (code, _) = c
        .call(
            "login",
            json!({"userID": "alice", "userSig": ticket("alice", 3600)}),
        )
        .unwrap_err();
    assert_eq!(code, 9508);
    assert!(
        started.elapsed() >= Duration::from_millis(3900),
        "waited the login timeout"
    );
    assert_eq!(c.login_status(), 3);
}

#[test]
fn slow_responses_fail_an_explicit_login_with_9520_and_an_automatic_one_retries() {
    let server = DevServer::start(&["--faults"]);
    let d = Daemon::start(&server, &[]);
    let mut c = d.client();
    c.wait_status(T, "connected", |s| s["connection"] == "connected");
    server.fault("delay?ms=2500");
    let (code, _) = c
        .call(
            "login",
            json!({"userID": "alice", "userSig": ticket("alice", 3600)}),
        )
        .unwrap_err();
    assert_eq!(code, 9520);
    assert_eq!(c.login_status(), 3);
    wait_until(T, "the late login undone on the server", || {
        server.rest(
            "openim/query_online_status",
            json!({"To_Account": ["alice"]}),
        )["QueryResult"][0]["Status"]
            == "Offline"
    });
    server.fault("clear");

    // Logged in; the connection drops while responses are slow: the automatic re-login
    // times out and is retried with backoff until it goes through.
    c.ok(
        "login",
        json!({"userID": "alice", "userSig": ticket("alice", 3600)}),
    );
    c.subscribe();
    server.fault("delay?ms=2500");
    server.fault("drop");
    c.wait_event("onConnectSuccess", T);
    wait_until(T, "two automatic attempts", || {
        server.user_stats("alice")["autoLogins"].as_i64() >= Some(2)
    });
    assert_eq!(c.login_status(), 1, "still LOGINED while retrying");
    server.fault("clear");
    let before = server.user_stats("alice")["autoLogins"].as_i64().unwrap();
    wait_until(
        Duration::from_secs(15),
        "a re-login that is answered in time",
        || {
            d.log().contains("login refused")
                && server.user_stats("alice")["autoLogins"].as_i64().unwrap() > before
        },
    );
    c.wait_status(T, "online", |s| {
        s["loginStatus"] == 1 && s["online"] == true
    });
    let ev = c.events_so_far();
    assert!(
        ev.iter()
            .all(|e| name(e) != "onKickedOffline" && name(e) != "onUserSigExpired"),
        "{ev:?}"
    );
    let u = server.user_stats("alice");
    assert_eq!(
        (&u["kickedMultiDevice"], &u["kickedRestApi"], &u["expired"]),
        (&json!(0), &json!(0), &json!(0)),
        "{u}"
    );
}

#[test]
fn sighup_applies_a_new_log_level_and_backoff_and_keeps_the_connection() {
    let mut server = DevServer::start(&[]);
    let (mut d, mut c, _) = logged_in(&server, &[]);
    let since = c.ok("status", json!({}))["connectedSince"].clone();
    d.set("sdk.log_level", "\"info\"");
    d.set("reconnect.initial_ms", "900");
    d.set("reconnect.max_ms", "5000");
    d.signal("HUP");
    wait_until(T, "the reload", || {
        d.log().contains("reloading the configuration")
    });
    let mark = d.log().len();
    assert!(
        d.log()[..mark].contains("DEBUG"),
        "level debug before the reload"
    );
    assert_eq!(
        c.ok("status", json!({}))["connectedSince"],
        since,
        "the connection is kept"
    );
    // A logout and a login: from the reload to the LOGINED, the only events are their
    // status changes (no reconnect), and the connection is still the same.
    c.ok("logout", json!({}));
    c.ok(
        "login",
        json!({"userID": "alice", "userSig": ticket("alice", 3600)}),
    );
    let ev = c.events_until(T, |e| {
        name(e) == "onLoginStatusChanged" && e["data"]["status"] == 1
    });
    let steps: Vec<(&str, i64)> = ev
        .iter()
        .map(|e| (name(e), e["data"]["status"].as_i64().unwrap_or(0)))
        .collect();
    assert_eq!(
        steps,
        [
            ("onLoginStatusChanged", 3),
            ("onLoginStatusChanged", 2),
            ("onLoginStatusChanged", 1)
        ],
        "no reconnect events"
    );
    assert_eq!(
        c.ok("status", json!({}))["connectedSince"],
        since,
        "the connection is kept"
    );
    // Level info in effect: debug lines stop (every event is logged at debug), info lines
    // go on (a login is logged at info).
    let after = d.log()[mark..].to_owned();
    assert!(!after.contains("DEBUG"), "level info in effect: {after}");
    assert!(after.contains("sending login"), "info lines go on: {after}");
    // The new backoff: the first retry after a failed attempt is planned at 900 ms ± 20 %
    // instead of 200 ms (the log says which wait was scheduled), and waited in full.
    wait_stable(&mut c);
    let mark = d.log().len();
    server.kill();
    let mut failures = Vec::new();
    let mut connectings = Vec::new();
    while failures.len() < 3 {
        let e = c.next_event(T).expect("reconnect attempts");
        match name(&e) {
            "onConnecting" => connectings.push(time(&e)),
            "onConnectFailed" => failures.push(time(&e)),
            _ => {}
        }
    }
    wait_until(T, "a backoff line in the log", || {
        !backoff_delays(&d.log()[mark..]).is_empty()
    });
    let (attempt, planned) = backoff_delays(&d.log()[mark..])[0];
    assert_eq!(attempt, 1);
    assert!(
        (720..=1080).contains(&planned),
        "planned {planned} ms, new initial backoff 900 ms ± 20 %"
    );
    let gap = connectings[1] - failures[1];
    assert!(
        gap >= planned - 2,
        "waited {gap} ms of the {planned} ms planned"
    );
}

/// A kick clears "logged in" on disk before anything else happens (docs/architecture.md):
/// once onKickedOffline is out, the session file says so. With every fsync of the daemon
/// slowed down to 500 ms (strace fault injection) the event, and a status with
/// `stateSaved: true`, come while the file still says `loggedIn: true`: the write is
/// queued first, but the event does not wait for it.
#[test]
fn a_kick_is_on_disk_before_it_is_announced() {
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
    c.subscribe();
    server.rest("im_open_login_svc/kick", json!({"UserID": "alice"}));
    c.wait_event("onKickedOffline", T);
    assert!(
        !d_session_logged_in(&d),
        "onKickedOffline came while the session file still said loggedIn"
    );
}
