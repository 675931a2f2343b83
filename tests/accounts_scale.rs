//! 200 accounts in one daemon against a real devserver: logins, logouts of some, REST
//! kicks of some, ticket expiry of some, a server restart, then SIGKILL of the daemon and
//! its restore. Each account must end in its own right state, with the events it should
//! have and no other: no account is disturbed by what happens to the others.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{json, Value};
use std::collections::BTreeMap;
use support::daemon::{Daemon, Rpc};
use support::*;

const N: usize = 200;
/// A generous deadline for the whole crowd.
const LONG: std::time::Duration = std::time::Duration::from_secs(60);

fn user(i: usize) -> String {
    format!("u{i:03}")
}

/// What happens to account `i`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    LoggedOut,
    Kicked,
    Expired,
    Online,
}

fn fate(i: usize) -> Fate {
    match i {
        0..20 => Fate::LoggedOut,
        20..40 => Fate::Kicked,
        40..60 => Fate::Expired,
        _ => Fate::Online,
    }
}

fn list(c: &mut Rpc) -> BTreeMap<String, Value> {
    c.ok("listAccounts", json!({}))["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["userID"].as_str().unwrap().to_owned(), a.clone()))
        .collect()
}

/// Every account listed, and each in the state its fate says.
fn all_in_place(c: &mut Rpc) -> bool {
    let l = list(c);
    l.len() == N
        && (0..N).all(|i| {
            let a = &l[&user(i)];
            match fate(i) {
                Fate::Online => a["status"] == 1 && a["online"] == true,
                _ => a["status"] == 3,
            }
        })
}

fn file(d: &Daemon, u: &str) -> Value {
    let p = d.state_dir().join("accounts").join(u).join("session.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn two_hundred_accounts_each_end_in_their_own_state() {
    let mut server = DevServer::start(&[]);
    let mut d = Daemon::start(
        &server,
        &[
            ("accounts.multi", "true"),
            ("accounts.login_rate", "1000"),
            ("events.history", "100000"),
            ("api.subscriber_queue", "100000"),
        ],
    );
    let mut c = d.client();
    let mut watch = d.client();
    watch.subscribe();

    // The accounts whose tickets will run out log in last, with short tickets.
    let order: Vec<usize> = (0..N)
        .filter(|i| fate(*i) != Fate::Expired)
        .chain((0..N).filter(|i| fate(*i) == Fate::Expired))
        .collect();
    for &i in &order {
        let u = user(i);
        let life = if fate(i) == Fate::Expired { 8 } else { 3600 };
        c.ok("login", json!({"userID": u, "userSig": ticket(&u, life)}));
    }
    wait_until(LONG, "200 accounts online", || {
        let l = list(&mut c);
        l.len() == N && l.values().all(|a| a["status"] == 1 && a["online"] == true)
    });

    for i in (0..N).filter(|i| fate(*i) == Fate::LoggedOut) {
        c.ok("logout", json!({"account": user(i)}));
    }
    for i in (0..N).filter(|i| fate(*i) == Fate::Kicked) {
        let r = server.rest("im_open_login_svc/kick", json!({"UserID": user(i)}));
        assert_eq!(r["ErrorCode"], 0, "{r}");
    }
    wait_until(LONG, "logouts, kicks and expiries done", || {
        all_in_place(&mut c)
    });

    // The server kicked only whom the REST API kicked.
    for i in 0..N {
        let s = server.user_stats(&user(i));
        assert_eq!(s["kickedMultiDevice"], 0, "{}: {s}", user(i));
        assert_eq!(
            s["kickedRestApi"],
            i64::from(fate(i) == Fate::Kicked),
            "{}: {s}",
            user(i)
        );
    }

    // The server restarts: the online accounts log in again silently, the others stay out.
    server.restart();
    wait_until(LONG, "back online after the server restart", || {
        all_in_place(&mut c)
    });
    let m = c.ok("metrics", json!({}));
    assert_eq!(m["accounts"], N);
    assert_eq!(m["online"], 140, "{m}");
    assert_eq!(m["kicks"], 20, "{m}");
    assert_eq!(m["expiries"], 20, "{m}");

    // Every account had exactly its own events.
    // Everything up to the newest event (the seq a new subscription starts after).
    let newest = d.client().ok("subscribe", json!({}))["seq"]
        .as_u64()
        .unwrap();
    let events = watch.events_through(newest);
    let mut by_account: BTreeMap<String, Vec<(String, Value)>> = BTreeMap::new();
    for e in &events {
        let a = e["account"]
            .as_str()
            .expect("every event names its account");
        by_account
            .entry(a.to_owned())
            .or_default()
            .push((e["event"].as_str().unwrap().to_owned(), e["data"].clone()));
    }
    assert!(events.iter().all(|e| e["event"] != "eventsLost"));
    for i in 0..N {
        let u = user(i);
        let evs = &by_account[&u];
        let statuses: Vec<(i64, &str)> = evs
            .iter()
            .filter(|(n, _)| n == "onLoginStatusChanged")
            .map(|(_, d)| (d["status"].as_i64().unwrap(), d["reason"].as_str().unwrap()))
            .collect();
        let has = |name: &str| evs.iter().filter(|(n, _)| n == name).count();
        let expected: Vec<(i64, &str)> = match fate(i) {
            Fate::Online => vec![(2, "login"), (1, "login")],
            Fate::LoggedOut => vec![(2, "login"), (1, "login"), (3, "logout")],
            Fate::Kicked => vec![(2, "login"), (1, "login"), (3, "kicked")],
            Fate::Expired => vec![(2, "login"), (1, "login"), (3, "userSigExpired")],
        };
        assert_eq!(statuses, expected, "{u}: {evs:?}");
        assert_eq!(
            has("onKickedOffline"),
            usize::from(fate(i) == Fate::Kicked),
            "{u}"
        );
        assert_eq!(
            has("onUserSigExpired"),
            usize::from(fate(i) == Fate::Expired),
            "{u}"
        );
        if fate(i) == Fate::Online {
            // One silent re-login per reconnect (the server going away may take a
            // connection or two with it), each accepted: no login loop.
            let relogins = has("onRelogin");
            assert!(relogins >= 1, "{u}: {evs:?}");
            assert_eq!(relogins, has("onConnectSuccess") - 1, "{u}: {evs:?}");
            assert!(
                evs.iter()
                    .all(|(n, d)| n != "onRelogin" || d["success"] == true),
                "{u}: {evs:?}"
            );
        }
    }
    // The server (since its restart) kicked nobody, and saw one login per online account.
    for i in 0..N {
        let s = server.user_stats(&user(i));
        assert_eq!(
            s["kickedMultiDevice"].as_i64().unwrap_or(0),
            0,
            "{}: {s}",
            user(i)
        );
        if fate(i) != Fate::Online {
            assert_eq!(
                s["loginAttempts"].as_i64().unwrap_or(0),
                0,
                "{}: {s}",
                user(i)
            );
        }
    }

    // SIGKILL: each account's file says what it was; the restore brings back exactly the
    // online ones.
    for i in 0..N {
        let f = file(&d, &user(i));
        assert_eq!(f["userID"], user(i));
        assert_eq!(f["loggedIn"], fate(i) == Fate::Online, "{}: {f}", user(i));
    }
    d.kill();
    d.start_again();
    let mut c = d.client();
    wait_until(LONG, "restored after SIGKILL", || all_in_place(&mut c));
    for i in (0..N).filter(|i| fate(*i) != Fate::Online) {
        let s = c.ok("status", json!({"account": user(i)}));
        assert_eq!(s["loginStatus"], 3, "{s}");
    }
}
