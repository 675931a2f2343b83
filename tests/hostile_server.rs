//! A hostile or broken server cannot crash imlinkd, make it lose state, or make it write
//! what the server said into its log or its replies unescaped.
//!
//! Each test runs a scripted WebSocket server on loopback (tungstenite, in a thread) that
//! answers imlinkd's protocol with extreme or wrong-typed values, oversized frames, control
//! characters, garbage, or nothing at all, and a real `imlinkd` against it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{json, Value};
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use support::daemon::{Daemon, T};
use support::*;
use tungstenite::{Message, WebSocket};

/// What the scripted server does with one request frame: the frames to send back (raw
/// text), in order.
type Script = Arc<dyn Fn(&Value) -> Vec<String> + Send + Sync>;

/// A scripted server: every connection gets `hello` (raw text, may be hostile), then each
/// request is answered by `script`. Counts the connections it accepted.
struct Hostile {
    url: String,
    connections: Arc<Mutex<u32>>,
}

fn normal_hello() -> String {
    json!({"push":"hello","body":{"version":1,"serverTime":now_unix() * 1000,"idleTimeoutMs":60000,"maxFrameBytes":65536}})
        .to_string()
}

fn response(req: &Value, code: i64, desc: &str, body: Value) -> String {
    json!({"seq": req["seq"], "code": code, "desc": desc, "body": body}).to_string()
}

fn login_ok(req: &Value, expire_at: Value, server_time: Value) -> String {
    let user = req["body"]["userID"].clone();
    response(
        req,
        0,
        "",
        json!({"userID": user, "serverTime": server_time, "userSigExpireAt": expire_at,
               "info": {"userID": user}}),
    )
}

/// Answers heartbeats with the time, everything else with `script`.
fn with_heartbeats(script: impl Fn(&Value) -> Vec<String> + Send + Sync + 'static) -> Script {
    Arc::new(move |req: &Value| {
        if req["cmd"] == "heartbeat" {
            vec![response(
                req,
                0,
                "",
                json!({"serverTime": now_unix() * 1000}),
            )]
        } else {
            script(req)
        }
    })
}

impl Hostile {
    fn start(hello: impl Fn() -> String + Send + Sync + 'static, script: Script) -> Hostile {
        Hostile::start_raw(hello, script, |_| {})
    }

    /// `after_hello` may write raw bytes on the TCP stream once the hello is sent.
    fn start_raw(
        hello: impl Fn() -> String + Send + Sync + 'static,
        script: Script,
        after_hello: impl Fn(&mut TcpStream) + Send + Sync + 'static,
    ) -> Hostile {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("ws://{}/v1/connect", listener.local_addr().unwrap());
        let connections = Arc::new(Mutex::new(0));
        let count = connections.clone();
        let hello = Arc::new(hello);
        let after = Arc::new(after_hello);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                *count.lock().unwrap() += 1;
                let (hello, script, after) = (hello.clone(), script.clone(), after.clone());
                std::thread::spawn(move || {
                    let Ok(mut ws) = tungstenite::accept(stream) else {
                        return;
                    };
                    if ws.send(Message::text(hello())).is_err() {
                        return;
                    }
                    after(ws.get_mut());
                    serve(&mut ws, &*script);
                });
            }
        });
        Hostile { url, connections }
    }

    fn connections(&self) -> u32 {
        *self.connections.lock().unwrap()
    }
}

fn serve(ws: &mut WebSocket<TcpStream>, script: &(dyn Fn(&Value) -> Vec<String> + Send + Sync)) {
    while let Ok(m) = ws.read() {
        let Message::Text(t) = m else { continue };
        let Ok(req) = serde_json::from_str::<Value>(&t) else {
            continue;
        };
        for out in script(&req) {
            if ws.send(Message::text(out)).is_err() {
                return;
            }
        }
    }
}

fn daemon(h: &Hostile, overrides: &[(&str, &str)]) -> Daemon {
    Daemon::start_url(&h.url, overrides, false)
}

fn alive(d: &Daemon) {
    let mut c = d.client();
    assert!(c.ok("getVersion", json!({}))["version"].is_string());
}

fn vm_hwm_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap()
}

#[test]
fn an_extreme_server_time_in_the_hello_is_ignored() {
    let h = Hostile::start(
        || {
            json!({"push":"hello","body":{"version":1,"serverTime":i64::MIN,"idleTimeoutMs":60000,"maxFrameBytes":65536}}).to_string()
        },
        Arc::new(|req: &Value| vec![response(req, 0, "", json!({"serverTime": i64::MAX}))]),
    );
    let d = daemon(&h, &[]);
    let mut c = d.client();
    c.wait_status(T, "connected", |s| s["connection"] == "connected");
    // Heartbeat replies with i64::MAX are ignored too: no server time is known.
    wait_until(T, "a few heartbeats", || {
        d.log()
            .matches("ignoring an implausible server time")
            .count()
            >= 2
    });
    assert_eq!(c.err("getServerTime", json!({})), 9508);
    alive(&d);
}

#[test]
fn an_extreme_ticket_expiry_from_the_server_does_not_crash_and_is_not_used() {
    let h = Hostile::start(
        normal_hello,
        with_heartbeats(|req| match req["cmd"].as_str() {
            Some("login") => vec![login_ok(req, json!(i64::MAX), json!(i64::MAX))],
            _ => vec![response(req, 0, "", json!({}))],
        }),
    );
    let d = daemon(&h, &[]);
    let mut c = d.client();
    c.wait_status(T, "connected", |s| s["connection"] == "connected");
    let sig = ticket("alice", 3600);
    c.ok("login", json!({"userID": "alice", "userSig": sig}));
    let s = c.ok("status", json!({}));
    assert_eq!(s["loginStatus"], 1);
    // The ticket's own expiry is kept, not the server's absurd one.
    let own = imlink::usersig::decode(&sig).unwrap().expires_at();
    assert_eq!(s["userSigExpiresAt"], json!(own));
    for bad in [
        json!(-1),
        json!(0),
        json!(i64::MIN),
        json!("soon"),
        json!(1.5e300),
    ] {
        let h2 = Hostile::start(
            normal_hello,
            with_heartbeats(move |req| match req["cmd"].as_str() {
                Some("login") => vec![login_ok(req, bad.clone(), json!("now"))],
                _ => vec![response(req, 0, "", json!({}))],
            }),
        );
        let d2 = daemon(&h2, &[]);
        let mut c2 = d2.client();
        c2.wait_status(T, "connected", |s| s["connection"] == "connected");
        // Each ticket carries its own signing second: compare with this one's.
        let sig2 = ticket("alice", 3600);
        let own2 = imlink::usersig::decode(&sig2).unwrap().expires_at();
        c2.ok("login", json!({"userID": "alice", "userSig": sig2}));
        let s = c2.ok("status", json!({}));
        assert_eq!(s["loginStatus"], 1);
        assert_eq!(s["userSigExpiresAt"], json!(own2), "{s}");
    }
    alive(&d);
}

#[test]
fn wrong_typed_frames_and_garbage_are_ignored_and_the_connection_times_out_cleanly() {
    // A hello whose fields have the wrong types is no hello: the connect attempt times
    // out (9510) and is retried with backoff, forever, without harm.
    let h = Hostile::start(
        || json!({"push":"hello","body":{"version":"1","serverTime":"x"}}).to_string(),
        Arc::new(|_req: &Value| vec!["\u{0}\u{1}not json".into(), "[1,2,3]".into(), "{}".into()]),
    );
    let d = daemon(&h, &[("server.connect_timeout_ms", "300")]);
    let mut c = d.client();
    c.subscribe();
    let (e, _) = c.wait_event("onConnectFailed", T);
    assert_eq!(e["data"]["code"], 9510, "{e}");
    wait_until(T, "retries", || h.connections() >= 3);
    alive(&d);
}

#[test]
fn control_characters_from_the_server_are_escaped_in_the_log_and_in_replies() {
    let forged = "refused\n2026-01-01T00:00:00Z ERROR imlinkd: FORGED LINE\r\u{1b}[31m";
    let h = Hostile::start(
        normal_hello,
        with_heartbeats(move |req| vec![response(req, 70003, forged, json!({}))]),
    );
    let d = daemon(&h, &[]);
    let mut c = d.client();
    c.wait_status(T, "connected", |s| s["connection"] == "connected");
    let (code, message) = c
        .call(
            "login",
            json!({"userID": "alice", "userSig": ticket("alice", 3600)}),
        )
        .unwrap_err();
    assert_eq!(code, 70003);
    assert!(
        !message.contains('\n') && !message.contains('\u{1b}'),
        "{message:?}"
    );
    assert!(
        message.contains("\\n"),
        "escaped, still readable: {message:?}"
    );
    wait_until(T, "the refusal in the log", || {
        d.log().contains("login refused")
    });
    let log = d.log();
    assert!(
        !log.lines()
            .any(|l| l.starts_with("2026-01-01T00:00:00Z ERROR")),
        "a forged log line: {log}"
    );
    assert!(!log.contains('\u{1b}'));
}

#[test]
fn an_oversized_frame_is_refused_from_its_header_without_buffering_it() {
    // After the hello the server announces a 70 MB text frame and sends its payload.
    let h = Hostile::start_raw(
        normal_hello,
        with_heartbeats(|req| vec![response(req, 0, "", json!({}))]),
        |tcp| {
            let len: u64 = 70 * 1024 * 1024;
            let mut head = vec![0x81u8, 127];
            head.extend_from_slice(&len.to_be_bytes());
            if tcp.write_all(&head).is_err() {
                return;
            }
            let chunk = vec![b'x'; 1 << 20];
            for _ in 0..70 {
                if tcp.write_all(&chunk).is_err() {
                    return;
                }
            }
        },
    );
    let d = daemon(&h, &[]);
    let mut c = d.client();
    c.subscribe();
    let (e, _) = c.wait_event("onConnectFailed", T);
    assert!(
        e["data"]["desc"]
            .as_str()
            .unwrap()
            .contains("larger than 65536"),
        "{e}"
    );
    wait_until(T, "a reconnect", || h.connections() >= 2);
    let peak = vm_hwm_kib(d.pid());
    assert!(
        peak < 40 * 1024,
        "the daemon peaked at {peak} KiB: the frame was buffered"
    );
    alive(&d);
}

#[test]
fn a_server_that_never_answers_gets_request_timeouts_not_a_hang() {
    let h = Hostile::start(normal_hello, Arc::new(|_req: &Value| Vec::new()));
    let d = daemon(&h, &[("server.heartbeat_timeout_ms", "60000")]);
    let mut c = d.client();
    c.wait_status(T, "connected", |s| s["connection"] == "connected");
    let (code, message) = c
        .call(
            "login",
            json!({"userID": "alice", "userSig": ticket("alice", 3600)}),
        )
        .unwrap_err();
    assert_eq!(code, 9520, "{message}");
    assert_eq!(c.ok("getLoginStatus", json!({}))["status"], 3);
    alive(&d);
}

#[test]
fn hostile_pushes_change_nothing_they_should_not() {
    // Pushes of unknown kinds, with wrong-typed bodies, and a profile of another user.
    let h = Hostile::start(
        normal_hello,
        with_heartbeats(|req| {
            match req["cmd"].as_str() {
            Some("login") => vec![
                login_ok(req, json!(now_unix() + 3600), json!(now_unix() * 1000)),
                json!({"push":"selfInfoUpdated","body":{"info":{"userID":"mallory","nickName":"x"}}}).to_string(),
                json!({"push":"kickedOffline","body":{"reason":42}}).to_string(),
                json!({"push":"nonsense","body":{}}).to_string(),
                json!({"push":"selfInfoUpdated","body":{"info":{"userID":"alice","nickName":"Alice\nNEW"}}}).to_string(),
            ],
            _ => vec![response(req, 0, "", json!({}))],
        }
        }),
    );
    let d = daemon(&h, &[]);
    let mut c = d.client();
    c.subscribe();
    c.wait_status(T, "connected", |s| s["connection"] == "connected");
    c.ok(
        "login",
        json!({"userID": "alice", "userSig": ticket("alice", 3600)}),
    );
    let (e, before) = c.wait_event("onSelfInfoUpdated", T);
    assert_eq!(e["data"]["info"]["userID"], "alice");
    assert!(!before.iter().any(|n| n == "onKickedOffline"), "{before:?}");
    assert_eq!(c.ok("getLoginStatus", json!({}))["status"], 1);
    assert_eq!(
        c.ok("getSelfInfo", json!({}))["info"]["nickName"],
        "Alice\nNEW"
    );
    alive(&d);
}

#[test]
fn a_ticket_over_the_protocol_limit_is_refused_locally() {
    let h = Hostile::start(
        normal_hello,
        with_heartbeats(|req| vec![response(req, 0, "", json!({}))]),
    );
    let d = daemon(&h, &[]);
    let mut c = d.client();
    c.wait_status(T, "connected", |s| s["connection"] == "connected");
    let big = "x".repeat(70_000);
    let (code, message) = c
        .call("login", json!({"userID": "alice", "userSig": big}))
        .unwrap_err();
    assert_eq!(code, 6017);
    assert!(message.contains("16384"), "{message}");
    assert!(!message.contains("xxxxxxxx"), "the ticket is not echoed");
    // Still connected: nothing was sent.
    assert_eq!(c.ok("status", json!({}))["connection"], "connected");
    assert_eq!(h.connections(), 1);
}
