//! The multi-device login policies and the 6208 rule, end to end.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;

const T: Duration = Duration::from_secs(10);

/// (first platform, second platform, first is kicked) per policy.
fn matrix(policy: &str) -> Vec<(&'static str, &'static str, bool)> {
    let pairs = [
        ("Linux", "Linux"),
        ("Linux", "Mac"),
        ("Linux", "Android"),
        ("Android", "iPhone"),
        ("iPhone", "iPad"),
        ("Android", "Windows"),
        ("Linux", "Web"),
        ("Web", "Linux"),
        ("Web", "Web"),
        ("Android", "Web"),
    ];
    pairs
        .into_iter()
        .map(|(a, b)| {
            let class = |p: &str| match p {
                "Android" | "iPhone" | "iPad" => "mobile",
                "Web" => "web",
                _ => "desktop",
            };
            let kicked = a == b
                || match policy {
                    "single" => true,
                    "dual" => class(a) != "web" && class(b) != "web",
                    "triple" => class(a) == class(b),
                    _ => false,
                };
            (a, b, kicked)
        })
        .collect()
}

#[test]
fn policy_matrix() {
    // The expectations, written out, for the table above.
    let expected: &[(&str, &[bool])] = &[
        (
            "single",
            &[true, true, true, true, true, true, true, true, true, true],
        ),
        (
            "dual",
            &[
                true, true, true, true, true, true, false, false, true, false,
            ],
        ),
        (
            "triple",
            &[
                true, true, false, true, true, false, false, false, true, false,
            ],
        ),
        (
            "multi",
            &[
                true, false, false, false, false, false, false, false, true, false,
            ],
        ),
    ];
    for (policy, kicks) in expected {
        let m = matrix(policy);
        assert_eq!(
            m.iter().map(|x| x.2).collect::<Vec<_>>(),
            kicks.to_vec(),
            "{policy}"
        );
        let server = DevServer::start(&["--policy", policy]);
        for (i, (a, b, kicked)) in m.into_iter().enumerate() {
            let user = format!("u{i}");
            let mut first = WsClient::connect(&server, a, &format!("{policy}-{i}-a"));
            let mut second = WsClient::connect(&server, b, &format!("{policy}-{i}-b"));
            assert_eq!(first.login(&user, &ticket(&user, 3600), false)["code"], 0);
            assert_eq!(second.login(&user, &ticket(&user, 3600), false)["code"], 0);
            let state = first.request("getSelfInfo", json!({}));
            if kicked {
                let body = first.expect_push("kickedOffline", T);
                assert_eq!(
                    body,
                    json!({"reason": "multi_device", "platform": b}),
                    "{policy}: {a} then {b}"
                );
                assert_eq!(state["code"], 6014, "{policy}: {a} then {b}");
            } else {
                assert_eq!(state["code"], 0, "{policy}: {a} then {b} must coexist");
                first.assert_no_pending_push();
            }
            // The newest login always survives.
            assert_eq!(second.request("getSelfInfo", json!({}))["code"], 0);
            second.assert_no_pending_push();
        }
    }
}

#[test]
fn web_instances_allow_several_web_logins_and_kick_the_oldest() {
    let server = DevServer::start(&["--web-instances", "2"]);
    let sig = ticket("alice", 3600);
    let mut w1 = WsClient::connect(&server, "Web", "w1");
    let mut w2 = WsClient::connect(&server, "Web", "w2");
    let mut w3 = WsClient::connect(&server, "Web", "w3");
    assert_eq!(w1.login("alice", &sig, false)["code"], 0);
    assert_eq!(w2.login("alice", &sig, false)["code"], 0);
    assert_eq!(w1.request("getSelfInfo", json!({}))["code"], 0);
    assert_eq!(w3.login("alice", &sig, false)["code"], 0);
    assert_eq!(w1.expect_push("kickedOffline", T)["platform"], "Web");
    assert_eq!(w2.request("getSelfInfo", json!({}))["code"], 0);
    w2.assert_no_pending_push();
    let q = server.rest(
        "openim/query_online_status",
        json!({"To_Account": ["alice"], "IsNeedDetail": 1}),
    );
    assert_eq!(q["QueryResult"][0]["Detail"].as_array().unwrap().len(), 2);
}

#[test]
fn a_device_displaced_while_disconnected_gets_6208_on_auto_relogin() {
    let server = DevServer::start(&["--policy", "multi"]);
    let sig = ticket("alice", 3600);
    let mut a = WsClient::connect(&server, "Linux", "inst-a");
    assert_eq!(a.login("alice", &sig, false)["code"], 0);
    drop(a); // the network drops: the login stays, offline
    wait_until(T, "alice offline", || {
        server
            .sessions()
            .iter()
            .any(|s| s["instanceId"] == "inst-a" && s["state"] == "offline")
    });

    let mut b = WsClient::connect(&server, "Linux", "inst-b");
    assert_eq!(b.login("alice", &sig, false)["code"], 0);
    let s = server.sessions();
    let a_row = s.iter().find(|s| s["instanceId"] == "inst-a").unwrap();
    assert_eq!(a_row["state"], "displaced");

    // inst-a comes back and re-logs in by itself: refused, twice, no session.
    let mut a = WsClient::connect(&server, "Linux", "inst-a");
    for _ in 0..2 {
        let r = a.login("alice", &sig, true);
        assert_eq!(r["code"], 6208, "{r}");
        assert_eq!(a.request("getSelfInfo", json!({}))["code"], 6014);
    }
    assert_eq!(b.request("getSelfInfo", json!({}))["code"], 0);
    b.assert_no_pending_push();
    assert_eq!(server.user_stats("alice")["failed"]["6208"], 2);
    assert_eq!(server.user_stats("alice")["autoLogins"], 2);

    // A person logs in explicitly: it proceeds and, newest-wins, displaces inst-b.
    assert_eq!(a.login("alice", &sig, false)["code"], 0);
    assert_eq!(b.expect_push("kickedOffline", T)["reason"], "multi_device");
}

#[test]
fn an_auto_login_resumes_an_offline_login_that_was_not_displaced() {
    let server = DevServer::start(&[]);
    let sig = ticket("alice", 3600);
    let mut a = WsClient::connect(&server, "Linux", "inst-a");
    assert_eq!(a.login("alice", &sig, false)["code"], 0);
    drop(a);
    wait_until(T, "alice offline", || {
        server
            .sessions()
            .first()
            .is_some_and(|s| s["state"] == "offline")
    });
    let mut a = WsClient::connect(&server, "Linux", "inst-a");
    assert_eq!(a.login("alice", &sig, true)["code"], 0);
    let s = server.sessions();
    assert_eq!(s.len(), 1);
    assert_eq!(s[0]["state"], "online");
}

#[test]
fn an_auto_login_of_an_unknown_instance_is_a_normal_login() {
    let mut server = DevServer::start(&[]);
    let sig = ticket("alice", 3600);
    {
        let mut a = WsClient::connect(&server, "Linux", "inst-a");
        assert_eq!(a.login("alice", &sig, false)["code"], 0);
    }
    // The server forgets everything when it restarts.
    server.restart();
    let mut a = WsClient::connect(&server, "Linux", "inst-a");
    assert_eq!(a.login("alice", &sig, true)["code"], 0);
    assert_eq!(server.user_stats("alice")["autoLogins"], 1);
}

#[test]
fn a_logout_forgets_the_instance_so_its_auto_login_is_normal() {
    let server = DevServer::start(&["--policy", "single"]);
    let sig = ticket("alice", 3600);
    let mut a = WsClient::connect(&server, "Linux", "inst-a");
    assert_eq!(a.login("alice", &sig, false)["code"], 0);
    assert_eq!(a.request("logout", json!({}))["code"], 0);
    drop(a);
    let mut b = WsClient::connect(&server, "Android", "inst-b");
    assert_eq!(b.login("alice", &sig, false)["code"], 0);
    // inst-a logged out before: its auto login is a normal one and displaces inst-b.
    let mut a = WsClient::connect(&server, "Linux", "inst-a");
    assert_eq!(a.login("alice", &sig, true)["code"], 0);
    assert_eq!(b.expect_push("kickedOffline", T)["platform"], "Linux");
}
