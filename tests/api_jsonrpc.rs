//! The local API speaks JSON-RPC 2.0 to the letter (DESIGN §5): the specification's own
//! examples, batches, notifications, id types, every error shape, malformed input, the
//! line limit, concurrency within one connection and half-close — against a real imlinkd
//! and devserver.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{json, Value};
use std::time::Duration;
use support::daemon::{Daemon, Rpc, T};
use support::*;

/// Sends one raw line and returns the next line the daemon writes.
fn exchange(c: &mut Rpc, line: &str) -> Value {
    c.send_raw(format!("{line}\n").as_bytes());
    c.next_reply(T)
        .unwrap_or_else(|| panic!("no reply to {line}"))
}

/// The connection still serves requests.
fn still_serves(c: &mut Rpc) {
    let v = exchange(c, r#"{"jsonrpc":"2.0","id":"alive","method":"getVersion"}"#);
    assert_eq!(v["id"], "alive", "{v}");
    assert!(v["result"]["version"].is_string(), "{v}");
}

fn error_of(v: &Value) -> (i64, Value) {
    (v["error"]["code"].as_i64().unwrap(), v["id"].clone())
}

/// A connection the daemon serves (retried while a just-closed one still holds a slot).
fn served_client(d: &Daemon) -> Rpc {
    let mut out = None;
    wait_until(T, "a served connection", || {
        let mut c = d.client();
        if c.send_raw_ok(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"getVersion\"}\n")
            && c.read_line(Duration::from_secs(2))
                .is_some_and(|r| r.get("result").is_some())
        {
            out = Some(c);
        }
        out.is_some()
    });
    out.unwrap()
}

fn connected(d: &Daemon) -> Rpc {
    let mut c = d.client();
    c.wait_status(T, "connected", |s| s["connection"] == "connected");
    c
}

#[test]
fn login_takes_positional_and_named_params() {
    let server = DevServer::start(&[]);
    let d = Daemon::start(&server, &[]);
    let mut c = connected(&d);
    let sig = ticket("alice", 3600);
    let req = json!({"jsonrpc":"2.0","id":1,"method":"login","params":["alice", sig]});
    let r = exchange(&mut c, &req.to_string());
    assert_eq!(r, json!({"jsonrpc":"2.0","id":1,"result":{}}));
    assert_eq!(c.ok("getLoginUser", json!([])), json!({"userID":"alice"}));
    c.ok("logout", json!({}));
    let req = json!({"jsonrpc":"2.0","id":2,"method":"login","params":{"userSig": sig, "userID":"alice"}});
    let r = exchange(&mut c, &req.to_string());
    assert_eq!(r, json!({"jsonrpc":"2.0","id":2,"result":{}}));
    // Too many positional params is an invalid-params error.
    let r = exchange(
        &mut c,
        r#"{"jsonrpc":"2.0","id":3,"method":"login","params":["alice","x","extra"]}"#,
    );
    assert_eq!(error_of(&r), (-32602, json!(3)));
    // Positional subscribe: events, since.
    let s = c.ok("subscribe", json!([["onLoginStatusChanged"], 0]));
    assert!(s["subscription"].as_u64().unwrap() >= 1);
    let (e, before) = c.wait_event("onLoginStatusChanged", T);
    assert!(before.is_empty(), "filtered: {before:?}");
    assert_eq!(e["data"]["status"], 2);
}

#[test]
fn the_specification_error_examples_are_answered_as_it_says() {
    let server = DevServer::start(&[]);
    let d = Daemon::start(&server, &[]);
    let mut c = d.client();

    // rpc call of non-existent method
    let r = exchange(
        &mut c,
        r#"{"jsonrpc": "2.0", "method": "foobar", "id": "1"}"#,
    );
    assert_eq!(error_of(&r), (-32601, json!("1")));
    assert_eq!(r["jsonrpc"], "2.0");
    assert!(r.get("result").is_none());

    // rpc call with invalid JSON
    let r = exchange(
        &mut c,
        r#"{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]"#,
    );
    assert_eq!(error_of(&r), (-32700, Value::Null));
    assert!(r["error"]["message"].is_string());

    // rpc call with invalid Request object
    let r = exchange(
        &mut c,
        r#"{"jsonrpc": "2.0", "method": 1, "params": "bar"}"#,
    );
    assert_eq!(error_of(&r), (-32600, Value::Null));

    // rpc call Batch, invalid JSON: a single parse error, not an array
    let r = exchange(
        &mut c,
        r#"[
  {"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},
  {"jsonrpc": "2.0", "method"
]"#
        .replace('\n', " ")
        .as_str(),
    );
    assert_eq!(error_of(&r), (-32700, Value::Null));

    // rpc call with an empty Array: a single invalid request
    let r = exchange(&mut c, "[]");
    assert_eq!(error_of(&r), (-32600, Value::Null));

    // rpc call with an invalid Batch (but not empty)
    let r = exchange(&mut c, "[1]");
    let a = r.as_array().expect("an array");
    assert_eq!(a.len(), 1);
    assert_eq!(error_of(&a[0]), (-32600, Value::Null));

    // rpc call with invalid Batch
    let r = exchange(&mut c, "[1,2,3]");
    let a = r.as_array().expect("an array");
    assert_eq!(a.len(), 3);
    for x in a {
        assert_eq!(error_of(x), (-32600, Value::Null));
    }
    still_serves(&mut c);
}

#[test]
fn a_mixed_batch_answers_every_request_but_not_the_notifications() {
    let server = DevServer::start(&[]);
    let d = Daemon::start(&server, &[]);
    let mut c = d.client();
    let batch = r#"[
        {"jsonrpc": "2.0", "method": "getVersion", "id": "1"},
        {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]},
        {"jsonrpc": "2.0", "method": "getLoginStatus", "id": "2"},
        {"foo": "boo"},
        {"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},
        {"jsonrpc": "2.0", "method": "getLoginUser", "id": "9"},
        {"jsonrpc": "2.0", "method": "login", "params": {"userID": 5}, "id": 10}
    ]"#
    .replace('\n', " ");
    let r = exchange(&mut c, &batch);
    let a = r.as_array().expect("one array");
    assert_eq!(a.len(), 6, "{r}");
    let by_id = |id: Value| {
        a.iter()
            .find(|x| x["id"] == id)
            .unwrap_or_else(|| panic!("no reply with id {id} in {r}"))
    };
    assert!(by_id(json!("1"))["result"]["version"].is_string());
    assert_eq!(by_id(json!("2"))["result"], json!({"status": 3}));
    assert_eq!(by_id(json!("5"))["error"]["code"], -32601);
    assert_eq!(by_id(json!("9"))["result"], json!({"userID": ""}));
    assert_eq!(by_id(json!(10))["error"]["code"], 6017);
    assert_eq!(by_id(Value::Null)["error"]["code"], -32600);

    // A batch of notifications only gets no reply at all: the next line is the reply to
    // the request sent after it.
    c.send_raw(
        br#"[{"jsonrpc": "2.0", "method": "getVersion", "params": []},{"jsonrpc": "2.0", "method": "foobar"}]
"#,
    );
    still_serves(&mut c);
    // Leading whitespace does not turn a batch into a single request.
    let r = exchange(
        &mut c,
        r#"  [{"jsonrpc":"2.0","id":7,"method":"getVersion"}]"#,
    );
    assert_eq!(r[0]["id"], 7, "{r}");
}

#[test]
fn notifications_are_executed_and_never_answered() {
    let server = DevServer::start(&[]);
    let d = Daemon::start(&server, &[]);
    let mut c = connected(&d);
    c.ok(
        "login",
        json!({"userID":"alice","userSig": ticket("alice", 3600)}),
    );
    // Unknown method, bad params and a real logout, all without an id.
    c.send_raw(b"{\"jsonrpc\":\"2.0\",\"method\":\"foobar\"}\n");
    c.send_raw(b"{\"jsonrpc\":\"2.0\",\"method\":\"login\",\"params\":{\"userID\":1}}\n");
    c.send_raw(b"{\"jsonrpc\":\"2.0\",\"method\":\"logout\"}\n");
    c.wait_status(T, "the notified logout", |s| s["loginStatus"] == 3);
    still_serves(&mut c);
}

#[test]
fn replies_carry_string_number_and_null_ids() {
    let server = DevServer::start(&[]);
    let d = Daemon::start(&server, &[]);
    let mut c = d.client();
    for id in [
        json!("abc"),
        json!(""),
        json!(0),
        json!(-7),
        json!(18446744073709551615u64),
        json!(1.5),
        Value::Null,
    ] {
        let req = json!({"jsonrpc":"2.0","id": id,"method":"getLoginStatus"});
        let r = exchange(&mut c, &req.to_string());
        assert_eq!(r["id"], id, "{r}");
        assert_eq!(r["result"], json!({"status": 3}));
    }
    // An id that is neither: invalid request, id null.
    for bad in [r#"{}"#, r#"[1]"#, "true"] {
        let r = exchange(
            &mut c,
            &format!(r#"{{"jsonrpc":"2.0","id":{bad},"method":"getLoginStatus"}}"#),
        );
        assert_eq!(error_of(&r), (-32600, Value::Null), "{r}");
    }
}

#[test]
fn every_invalid_request_shape_gets_its_error_and_the_connection_goes_on() {
    let server = DevServer::start(&[]);
    let d = Daemon::start(&server, &[("api.max_line_bytes", "4096")]);
    let mut c = d.client();
    let cases: &[(&str, i64, Value)] = &[
        (
            r#"{"jsonrpc":"1.0","id":1,"method":"status"}"#,
            -32600,
            json!(1),
        ),
        (r#"{"id":2,"method":"status"}"#, -32600, json!(2)),
        (r#"{"jsonrpc":"2.0","id":3}"#, -32600, json!(3)),
        (
            r#"{"jsonrpc":"2.0","id":4,"method":"status","params":"x"}"#,
            -32600,
            json!(4),
        ),
        (
            r#"{"jsonrpc":"2.0","id":5,"method":"status","params":7}"#,
            -32600,
            json!(5),
        ),
        (r#""just a string""#, -32600, Value::Null),
        ("42", -32600, Value::Null),
        ("null", -32600, Value::Null),
        ("{", -32700, Value::Null),
        ("not json at all", -32700, Value::Null),
        (
            r#"{"jsonrpc":"2.0","id":6,"method":"status"} trailing"#,
            -32700,
            Value::Null,
        ),
        (
            r#"{"jsonrpc":"2.0","id":7,"method":"nope"}"#,
            -32601,
            json!(7),
        ),
        (
            r#"{"jsonrpc":"2.0","id":8,"method":"status","params":[1]}"#,
            -32602,
            json!(8),
        ),
    ];
    for (line, code, id) in cases {
        let r = exchange(&mut c, line);
        assert_eq!(error_of(&r), (*code, id.clone()), "{line} -> {r}");
        assert!(!r["error"]["message"].as_str().unwrap().is_empty(), "{r}");
        still_serves(&mut c);
    }
    // Invalid UTF-8.
    c.send_raw(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"st\xff\xfeatus\"}\n");
    let r = c.next_reply(T).unwrap();
    assert_eq!(error_of(&r), (-32700, Value::Null));
    still_serves(&mut c);
    // A line over api.max_line_bytes, sent in pieces, is answered once and discarded.
    let long = format!(
        r#"{{"jsonrpc":"2.0","id":99,"method":"status","params":{{"pad":"{}"}}}}"#,
        "x".repeat(10_000)
    );
    for chunk in long.as_bytes().chunks(1500) {
        c.send_raw(chunk);
    }
    c.send_raw(b"\n");
    let r = c.next_reply(T).unwrap();
    assert_eq!(error_of(&r), (-32600, Value::Null), "{r}");
    assert!(r["error"]["message"]
        .as_str()
        .unwrap()
        .contains("max_line_bytes"));
    still_serves(&mut c);
    // A line just under the limit is served.
    let ok = format!(
        r#"{{"jsonrpc":"2.0","id":100,"method":"status","params":{{"pad":"{}"}}}}"#,
        "x".repeat(3900)
    );
    assert_eq!(exchange(&mut c, &ok)["id"], 100);
    // Blank lines and \r\n are fine.
    c.send_raw(b"\n\r\n");
    let r = exchange(
        &mut c,
        "{\"jsonrpc\":\"2.0\",\"id\":101,\"method\":\"getVersion\"}\r",
    );
    assert_eq!(r["id"], 101);
}

/// `(method, params, expected code, text the message must contain)`.
fn wrong_params() -> Vec<(&'static str, Value, i64, &'static str)> {
    let mut v = vec![
        ("initSDK", json!({}), 6017, "sdkAppID"),
        (
            "initSDK",
            json!({"sdkAppID": "1400000001"}),
            6017,
            "sdkAppID",
        ),
        ("initSDK", json!({"sdkAppID": -1}), 6017, "positive integer"),
        ("initSDK", json!({"sdkAppID": 1.5}), 6017, "sdkAppID"),
        (
            "initSDK",
            json!({"sdkAppID": APP, "logLevel": "loud"}),
            6017,
            "logLevel",
        ),
        (
            "initSDK",
            json!({"sdkAppID": APP, "logLevel": [4]}),
            6017,
            "logLevel",
        ),
        ("login", json!({}), 6017, "userID"),
        (
            "login",
            json!({"userID": 7, "userSig": "x"}),
            6017,
            "userID must be a string",
        ),
        ("login", json!({"userID": "alice"}), 6017, "userSig"),
        (
            "login",
            json!({"userID": "alice", "userSig": 5}),
            6017,
            "userSig must be",
        ),
        (
            "login",
            json!({"userID": "alice", "userSig": ""}),
            6017,
            "userSig",
        ),
        (
            "login",
            json!({"userID": "alice", "userSig": "  "}),
            6017,
            "userSig",
        ),
        (
            "login",
            json!({"userID": "bad id", "userSig": "x"}),
            7003,
            "UserID",
        ),
        (
            "login",
            json!({"userID": "", "userSig": "x"}),
            7003,
            "UserID",
        ),
        (
            "login",
            json!({"userID": "a".repeat(33), "userSig": "x"}),
            7003,
            "UserID",
        ),
        (
            "login",
            json!({"userID": "élan", "userSig": "x"}),
            7003,
            "UserID",
        ),
        (
            "subscribe",
            json!({"events": "onConnecting"}),
            6017,
            "events",
        ),
        ("subscribe", json!({"events": [1]}), 6017, "events"),
        (
            "subscribe",
            json!({"events": ["onNothing"]}),
            6017,
            "onNothing",
        ),
        ("subscribe", json!({"since": -1}), 6017, "since"),
        ("subscribe", json!({"since": "5"}), 6017, "since"),
        ("subscribe", json!({"since": 1.5}), 6017, "since"),
        ("unsubscribe", json!({}), 6017, "subscription"),
        (
            "unsubscribe",
            json!({"subscription": "1"}),
            6017,
            "subscription",
        ),
        ("unsubscribe", json!({"subscription": 999}), 6017, "999"),
    ];
    // The methods without params refuse a non-structured params value and extra
    // positional params, and are not executed.
    for m in [
        "unInitSDK",
        "logout",
        "getLoginStatus",
        "getLoginUser",
        "getServerTime",
        "getVersion",
        "getSelfInfo",
        "status",
        "reconnect",
    ] {
        v.push((m, json!("x"), -32600, "params"));
        v.push((m, json!(5), -32600, "params"));
        v.push((m, json!([1]), -32602, "positional"));
    }
    v.push(("initSDK", json!("x"), -32600, "params"));
    v.push(("initSDK", json!([APP, 4, 5]), -32602, "positional"));
    v.push(("subscribe", json!([[], 0, 1]), -32602, "positional"));
    v.push(("unsubscribe", json!([1, 2]), -32602, "positional"));
    v
}

#[test]
fn wrong_typed_params_for_every_method_get_the_right_error() {
    let server = DevServer::start(&[]);
    let d = Daemon::start(&server, &[]);
    let mut c = connected(&d);
    for (method, params, code, text) in wrong_params() {
        let r = exchange(
            &mut c,
            &json!({"jsonrpc":"2.0","id":"t","method":method,"params":params}).to_string(),
        );
        assert_eq!(error_of(&r), (code, json!("t")), "{method} {params} -> {r}");
        let msg = r["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains(text),
            "{method} {params}: {msg:?} lacks {text:?}"
        );
        still_serves(&mut c);
    }
    // Nothing was executed: still initialised, connected, logged out.
    let s = c.ok("status", json!({}));
    assert_eq!(
        (s["sdkAppID"].as_u64(), s["loginStatus"].as_i64()),
        (Some(APP), Some(3))
    );
}

#[test]
fn a_login_waiting_for_the_server_does_not_hold_up_status_on_the_same_connection() {
    let server = DevServer::start(&["--faults"]);
    let d = Daemon::start(
        &server,
        &[
            ("server.request_timeout_ms", "8000"),
            ("server.heartbeat_interval_ms", "1000"),
            ("server.heartbeat_timeout_ms", "20000"),
        ],
    );
    let mut c = connected(&d);
    server.fault("delay?ms=2000");
    c.send(
        json!(1),
        "login",
        json!({"userID":"alice","userSig": ticket("alice", 3600)}),
    );
    // Requests run concurrently, so the first status may still show LOGOUT; every status
    // reply must come back while the login waits for the server.
    let mut id = 100;
    loop {
        id += 1;
        c.send(json!(id), "status", json!({}));
        let r = c.next_reply(T).unwrap();
        assert_eq!(r["id"], id, "status must not wait for the login: {r}");
        if r["result"]["loginStatus"] == 2 {
            assert_eq!(r["result"]["userID"], "alice");
            break;
        }
        assert!(id < 200, "never saw LOGINING");
    }
    // A second login on the same connection meanwhile: 7501 at once.
    c.send(
        json!(3),
        "login",
        json!({"userID":"alice","userSig": ticket("alice", 3600)}),
    );
    let third = c.next_reply(T).unwrap();
    assert_eq!(error_of(&third), (7501, json!(3)));
    let login = c.next_reply(T).unwrap();
    assert_eq!(login, json!({"jsonrpc":"2.0","id":1,"result":{}}));
}

#[test]
fn after_the_client_shuts_down_writing_pending_replies_still_arrive() {
    let server = DevServer::start(&["--faults"]);
    let d = Daemon::start(
        &server,
        &[
            ("server.request_timeout_ms", "8000"),
            ("server.heartbeat_interval_ms", "1000"),
            ("server.heartbeat_timeout_ms", "20000"),
        ],
    );
    let mut c = connected(&d);
    server.fault("delay?ms=1000");
    c.send(
        json!("l"),
        "login",
        json!({"userID":"alice","userSig": ticket("alice", 3600)}),
    );
    c.send(json!("v"), "getVersion", json!({}));
    c.shutdown_write();
    let mut ids: Vec<Value> = (0..2)
        .map(|_| c.next_reply(T).unwrap()["id"].clone())
        .collect();
    ids.sort_by_key(|v| v.to_string());
    assert_eq!(ids, [json!("l"), json!("v")]);
    // Nothing subscribed: the daemon closes the connection after the last reply.
    c.expect_eof(T);
}

#[test]
fn refused_connections_beyond_max_clients_get_an_error_line_then_eof() {
    let server = DevServer::start(&[]);
    let d = Daemon::start(&server, &[("api.max_clients", "2")]);
    // The helper's readiness probe may still hold a slot for a moment.
    let mut a = served_client(&d);
    let b = served_client(&d);
    let mut extra = d.client();
    let r = extra.read_line(T).expect("an error line");
    assert_eq!(error_of(&r), (-32000, Value::Null));
    assert!(r["error"]["message"]
        .as_str()
        .unwrap()
        .contains("max_clients"));
    // Then the end of the connection.
    extra.expect_eof(T);
    drop(b);
    // The slot frees once the daemon has seen the close.
    let _c = served_client(&d);
    still_serves(&mut a);
}

#[test]
fn the_status_getters_answer_alike_alone_in_a_batch_and_with_odd_spellings() {
    // A lone request with an id takes the daemon's fast path; the same request inside a
    // batch, with positional params or with an escaped method name takes the general one.
    let server = DevServer::start(&[]);
    let d = Daemon::start(&server, &[]);
    let mut c = connected(&d);
    c.ok(
        "login",
        json!({"userID": "alice", "userSig": ticket("alice", 3600)}),
    );
    for method in ["getLoginStatus", "getLoginUser", "getVersion", "status"] {
        let alone = exchange(
            &mut c,
            &format!(r#"{{"jsonrpc":"2.0","id":7,"method":"{method}"}}"#),
        );
        let named = exchange(
            &mut c,
            &format!(r#"{{"jsonrpc":"2.0","id":"x","method":"{method}","params":{{}}}}"#),
        );
        let batch = exchange(
            &mut c,
            &format!(r#"[{{"jsonrpc":"2.0","id":7,"method":"{method}"}}]"#),
        );
        let positional = exchange(
            &mut c,
            &format!(r#"{{"jsonrpc":"2.0","id":7,"method":"{method}","params":[]}}"#),
        );
        let escaped_name = method.replacen('g', "\\u0067", 1);
        let escaped = exchange(
            &mut c,
            &format!(r#"{{"jsonrpc":"2.0","id":7,"method":"{escaped_name}"}}"#),
        );
        assert_eq!(alone["id"], 7);
        assert_eq!(named["id"], "x");
        for other in [&named, &batch[0], &positional, &escaped] {
            assert_eq!(
                alone["result"], other["result"],
                "{method}: {alone} vs {other}"
            );
        }
    }
    let s = exchange(
        &mut c,
        r#"{"jsonrpc":"2.0","id":1,"method":"getLoginStatus"}"#,
    );
    assert_eq!(s["result"], json!({"status": 1}));
    let u = exchange(
        &mut c,
        r#"{"jsonrpc":"2.0","id":1,"method":"getLoginUser"}"#,
    );
    assert_eq!(u["result"], json!({"userID": "alice"}));
    // Notifications and null ids still follow the general rules.
    c.send_raw(b"{\"jsonrpc\":\"2.0\",\"method\":\"getLoginStatus\"}\n");
    let n = exchange(
        &mut c,
        r#"{"jsonrpc":"2.0","id":null,"method":"getLoginStatus"}"#,
    );
    assert_eq!(
        (n["id"].clone(), n["result"].clone()),
        (Value::Null, json!({"status": 1}))
    );
}

#[test]
fn a_client_that_never_reads_its_replies_is_no_longer_read_then_cut_off_and_others_go_on() {
    let server = DevServer::start(&[]);
    // What waits for one client is bounded (its requests are no longer read); a client that
    // leaves its replies unread for api.idle_timeout_ms is disconnected.
    let d = Daemon::start(
        &server,
        &[
            ("api.max_line_bytes", "4096"),
            ("api.idle_timeout_ms", "1500"),
        ],
    );
    let hog = std::os::unix::net::UnixStream::connect(&d.socket).unwrap();
    let mut w = hog.try_clone().unwrap();
    // 200,000 requests (≈ 10 MB of replies) written without reading a byte: the writer
    // blocks once the daemon stops reading, and fails once it is cut off.
    let writer = std::thread::spawn(move || {
        let line = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"getVersion\"}\n";
        for _ in 0..200_000 {
            if std::io::Write::write_all(&mut w, line).is_err() {
                return false;
            }
        }
        true
    });
    // Meanwhile others are served.
    still_serves(&mut connected(&d));
    wait_until(T, "the daemon to cut the client off", || {
        d.log()
            .contains("disconnecting an API client that does not read its replies")
    });
    assert!(
        !writer.join().unwrap(),
        "the daemon read everything it was sent"
    );
    // What was queued before the cut arrives, then end of file: bounded, not unbounded.
    hog.set_read_timeout(Some(T)).unwrap();
    let mut got = Vec::new();
    // The connection ends: end of file, or a reset when requests it never read were still
    // queued on the daemon's side. A read timeout would mean it was kept open.
    match std::io::Read::read_to_end(&mut &hog, &mut got) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the connection was not closed after the cut: {e}"),
    }
    let n = got.len();
    assert!(
        n < 2_000_000,
        "the daemon kept {n} bytes of replies for a client that does not read"
    );
    still_serves(&mut connected(&d));
}

#[test]
fn a_client_that_reads_gets_every_reply_to_a_huge_batch() {
    let server = DevServer::start(&[]);
    let d = Daemon::start(&server, &[]);
    let mut c = connected(&d);
    // 15,000 requests in one line (about 700 KB, under api.max_line_bytes).
    let items: Vec<String> = (0..15_000)
        .map(|i| format!(r#"{{"jsonrpc":"2.0","id":{i},"method":"getLoginStatus"}}"#))
        .collect();
    let line = format!("[{}]", items.join(","));
    assert!(line.len() < 1_048_576);
    let r = exchange(&mut c, &line);
    let replies = r.as_array().expect("one array of replies");
    assert_eq!(replies.len(), 15_000);
    let mut ids: Vec<i64> = replies.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    ids.sort_unstable();
    assert!(ids.iter().copied().eq(0..15_000));
    assert!(replies.iter().all(|r| r["result"]["status"] == 3));
    still_serves(&mut c);
}
