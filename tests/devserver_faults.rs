//! Fault injection, the push burst and wss://, end to end.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::*;
use tungstenite::Message;

const T: Duration = Duration::from_secs(10);

#[test]
fn fault_endpoints_exist_only_with_the_flag() {
    let server = DevServer::start(&[]);
    for p in [
        "drop",
        "silence?ms=10",
        "refuse?ms=10",
        "delay?ms=10",
        "fail-logins?count=1&code=9999",
        "clear",
    ] {
        assert_eq!(
            server.http("POST", &format!("/faults/{p}"), "").0,
            404,
            "{p}"
        );
    }
    let server = DevServer::start(&["--faults"]);
    assert_eq!(server.http("POST", "/faults/silence?ms=x", "").0, 400);
    server.fault("clear");
}

#[test]
fn drop_closes_every_connection_without_a_close_frame() {
    let server = DevServer::start(&["--faults"]);
    let mut a = WsClient::connect(&server, "Linux", "i1");
    let mut b = WsClient::connect(&server, "Android", "i2");
    assert_eq!(a.login("alice", &ticket("alice", 3600), false)["code"], 0);
    server.fault("drop");
    for c in [&mut a, &mut b] {
        match c.wait_close(T) {
            Closed::Abrupt(_) => {}
            other => panic!("expected an abrupt close, got {other:?}"),
        }
    }
    wait_until(T, "no connections", || {
        server.stats()["connectionsOpen"] == 0
    });
    assert_eq!(server.sessions()[0]["state"], "offline");
    // New connections work.
    let mut c = WsClient::connect(&server, "Linux", "i1");
    assert_eq!(c.login("alice", &ticket("alice", 3600), true)["code"], 0);
}

#[test]
fn silence_answers_nothing_then_resumes() {
    let server = DevServer::start(&["--faults"]);
    let mut c = WsClient::connect(&server, "Linux", "i1");
    // The silence starts when the server handles the fault, after `before`, so it lasts
    // at least until `before` + 1200 ms.
    let before = Instant::now();
    server.fault("silence?ms=1200");
    c.send_message(Message::Ping(b"x".to_vec())).unwrap();
    c.send_text(r#"{"seq":101,"cmd":"heartbeat","body":{}}"#);
    // Both are answered once the silence is over, and nothing at all (no pong, no
    // response) comes before: the first frame arrives no earlier than the silence's end.
    let mut first = None;
    let mut pong = false;
    let mut resp = false;
    while !(pong && resp) {
        let m = c
            .next_message(T)
            .unwrap()
            .expect("answers after the silence");
        first.get_or_insert_with(|| (before.elapsed(), format!("{m:?}")));
        match m {
            Message::Pong(_) => pong = true,
            Message::Text(t) => resp = t.contains("\"seq\":101"),
            _ => {}
        }
    }
    let (at, what) = first.unwrap();
    assert!(
        at >= Duration::from_millis(1200),
        "{what} came {at:?} after the fault, within the 1200 ms silence"
    );
    assert_eq!(c.request("heartbeat", json!({}))["code"], 0);
}

#[test]
fn refuse_answers_upgrades_with_503_for_a_while() {
    let server = DevServer::start(&["--faults"]);
    let mut existing = WsClient::connect(&server, "Linux", "i0");
    // A refusal far longer than the test: every upgrade meanwhile gets 503.
    server.fault("refuse?ms=600000");
    match WsClient::connect_url(&server.ws_url("Linux", "i1"), None) {
        Err(tungstenite::Error::Http(r)) => assert_eq!(r.status().as_u16(), 503),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("connected while refusing"),
    }
    assert_eq!(existing.request("heartbeat", json!({}))["code"], 0);
    // A new refusal of 800 ms replaces it and ends by itself: upgrades get 503 until
    // then, and the first one accepted comes no earlier than 800 ms after the fault.
    let before = Instant::now();
    server.fault("refuse?ms=800");
    wait_until(T, "refusal over", || {
        match WsClient::connect_url(&server.ws_url("Linux", "i1"), None) {
            Ok(_) => true,
            Err(tungstenite::Error::Http(r)) if r.status().as_u16() == 503 => false,
            Err(e) => panic!("{e}"),
        }
    });
    assert!(
        before.elapsed() >= Duration::from_millis(800),
        "accepted {:?} after a refusal of 800 ms",
        before.elapsed()
    );
}

#[test]
fn delay_holds_responses_but_not_pongs() {
    let server = DevServer::start(&["--faults"]);
    let mut c = WsClient::connect(&server, "Linux", "i1");
    // Responses come no earlier than the delay after the fault.
    let before = Instant::now();
    server.fault("delay?ms=700");
    c.send_text(r#"{"seq":101,"cmd":"heartbeat","body":{}}"#);
    assert_eq!(c.response(101, T).unwrap()["code"], 0);
    assert!(
        before.elapsed() >= Duration::from_millis(700),
        "answered {:?} after a delay of 700 ms",
        before.elapsed()
    );
    // With responses held for an hour, a ping sent after a request is still answered:
    // the pong comes first (the response cannot come within the test).
    server.fault("delay?ms=3600000");
    c.send_text(r#"{"seq":102,"cmd":"heartbeat","body":{}}"#);
    c.send_message(Message::Ping(b"x".to_vec())).unwrap();
    match c.next_message(T).unwrap() {
        Some(Message::Pong(p)) => assert_eq!(p, b"x"),
        other => panic!("expected the pong first, got {other:?}"),
    }
    // delay 0 ends it: a response comes (within the deadline, so not an hour late), and
    // it is the new request's, not the held one's.
    server.fault("delay?ms=0");
    assert_eq!(c.request("heartbeat", json!({}))["code"], 0);
}

#[test]
fn fail_logins_fails_exactly_the_next_k() {
    let server = DevServer::start(&["--faults"]);
    let mut c = WsClient::connect(&server, "Linux", "i1");
    server.fault("fail-logins?count=2&code=9999");
    let sig = ticket("alice", 3600);
    assert_eq!(c.login("alice", &sig, false)["code"], 9999);
    assert_eq!(c.login("alice", &sig, true)["code"], 9999);
    assert_eq!(c.login("alice", &sig, false)["code"], 0);
    assert_eq!(server.user_stats("alice")["failed"]["9999"], 2);
    assert_eq!(server.user_stats("alice")["loginAttempts"], 3);
}

#[test]
fn clear_ends_every_fault() {
    let server = DevServer::start(&["--faults"]);
    server.fault("refuse?ms=60000");
    server.fault("delay?ms=60000");
    server.fault("fail-logins?count=5&code=9999");
    server.fault("clear");
    let mut c = WsClient::connect(&server, "Linux", "i1");
    assert_eq!(c.login("alice", &ticket("alice", 3600), false)["code"], 0);
    let f = &server.stats()["faults"];
    assert_eq!(f["failLoginsLeft"], 0);
    assert_eq!(f["delayMs"], 0);
}

#[test]
fn push_burst_delivers_numbered_updates_in_order() {
    let server = DevServer::start(&["--faults"]);
    let mut c = WsClient::connect(&server, "Linux", "i1");
    assert_eq!(c.login("alice", &ticket("alice", 3600), false)["code"], 0);
    let r = server.fault("push-burst?user=alice&count=500");
    assert_eq!(r["pushed"], 500);
    assert_eq!(r["connections"], 1);
    let mut last = json!(null);
    for i in 1..=500 {
        let info = c.expect_push("selfInfoUpdated", T)["info"].clone();
        last = info.clone();
        assert_eq!(info["customInfo"]["Tag_Profile_Custom_Seq"], i.to_string());
        let stamp = |k: &str| -> i64 {
            info["customInfo"][k]
                .as_str()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{k} is not a number in {info}"))
        };
        // The µs stamp is the same instant as the ms one.
        assert_eq!(
            stamp("Tag_Profile_Custom_SentAtUs") / 1000,
            stamp("Tag_Profile_Custom_SentAtMs")
        );
    }
    // The profile is left as the last push showed it.
    let now = c.request("getSelfInfo", json!({}));
    assert_eq!(now["code"], 0);
    assert_eq!(now["body"]["info"], last);
    // Paced: 20 per second → 10 pushes take about half a second.
    let start = Instant::now();
    // (Made on the connection's own server thread, which answers how many it pushed to.)
    let r = server.fault("push-burst?user=alice&count=10&rate=20");
    assert_eq!(r["pushed"], 10);
    assert_eq!(r["connections"], 1);
    assert!(start.elapsed() >= Duration::from_millis(400));
    for i in 1..=10 {
        let info = c.expect_push("selfInfoUpdated", T)["info"].clone();
        assert_eq!(info["customInfo"]["Tag_Profile_Custom_Seq"], i.to_string());
    }
}

#[test]
fn wss_login_with_a_test_ca() {
    let dir = tempfile::tempdir().unwrap();
    // A CA, and a certificate for localhost/127.0.0.1 signed by it.
    let (ca_pem, cert_path, key_path) = test_ca(dir.path());

    let server = DevServer::start_with(Options {
        tls: Some((cert_path, key_path)),
        ..Options::default()
    });
    let url = server.ws_url("Linux", "i1");
    assert!(url.starts_with("wss://localhost:"));
    let mut c = WsClient::connect_url(&url, Some(tls_client_config(&ca_pem))).unwrap();
    assert_eq!(c.hello["version"], 1);
    assert_eq!(c.login("alice", &ticket("alice", 3600), false)["code"], 0);
    assert_eq!(c.request("getSelfInfo", json!({}))["code"], 0);

    // A client that does not trust the CA cannot connect.
    let other_ca = rcgen::generate_simple_self_signed(vec!["x".to_string()]).unwrap();
    assert!(WsClient::connect_url(&url, Some(tls_client_config(&other_ca.cert.pem()))).is_err());
}
