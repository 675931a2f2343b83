//! The devserver's Web access endpoint (`/binfo`, `/info`) frame by frame, with a plain
//! WebSocket client: the frames Tencent's Web SDK sends and hostile ones. The SDK itself
//! against the endpoint is tests/tencent_sdk.rs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

const T: Duration = Duration::from_secs(10);

/// A client speaking the SDK's frames.
struct Web {
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    seq: u64,
    pushes: VecDeque<Value>,
    replies: VecDeque<Value>,
    /// Whether the last frame read was `COMP`-compressed.
    compressed: Vec<bool>,
}

fn url(server: &DevServer, path: &str, instance: &str, extra: &str) -> String {
    format!(
        "ws://{}{path}?sdkappid={APP}&instanceid={instance}&random=0.5&platform=7&host=unknown&version=-1&sdkversion=3.6.6{extra}",
        server.addr
    )
}

impl Web {
    fn connect(server: &DevServer, instance: &str) -> Web {
        Web::connect_url(&url(server, "/binfo", instance, "&compress=gzip"))
    }

    fn connect_url(u: &str) -> Web {
        let tcp = TcpStream::connect(u.split('/').nth(2).unwrap()).unwrap();
        tcp.set_read_timeout(Some(T)).unwrap();
        let (ws, _) = tungstenite::client(u, MaybeTlsStream::Plain(tcp)).unwrap();
        Web {
            ws,
            seq: 1000,
            pushes: VecDeque::new(),
            replies: VecDeque::new(),
            compressed: Vec::new(),
        }
    }

    fn send_raw(&mut self, m: Message) {
        self.ws.send(m).unwrap();
    }

    /// Sends `{"head":{…head, servcmd, seq},"body":body}` as a binary frame; returns seq.
    fn send(&mut self, servcmd: &str, mut head: Value, body: Value) -> u64 {
        self.seq += 1;
        head["servcmd"] = json!(servcmd);
        head["seq"] = json!(self.seq);
        head["platform"] = json!(7);
        head["sdkappid"] = json!(APP);
        let frame = json!({"head": head, "body": body}).to_string();
        self.send_raw(Message::binary(frame.into_bytes()));
        self.seq
    }

    /// The next frame as JSON; `None` when the connection ended. Panics when neither
    /// happens within [`T`].
    fn read(&mut self) -> Option<Value> {
        loop {
            match self.ws.read() {
                Ok(Message::Binary(b)) => {
                    let (bytes, comp) = match b.strip_prefix(b"COMP") {
                        Some(z) => {
                            let mut s = Vec::new();
                            flate2::read::GzDecoder::new(z).read_to_end(&mut s).unwrap();
                            (s, true)
                        }
                        None => (b, false),
                    };
                    self.compressed.push(comp);
                    return Some(serde_json::from_slice(&bytes).unwrap());
                }
                Ok(Message::Text(t)) => {
                    self.compressed.push(false);
                    return Some(serde_json::from_str(&t).unwrap());
                }
                Ok(Message::Close(_)) => continue,
                Ok(_) => continue,
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    panic!("no frame, and the connection did not end, within {T:?}")
                }
                Err(_) => return None,
            }
        }
    }

    fn pump(&mut self) {
        let f = self
            .read()
            .expect("connection ended while waiting for a frame");
        if self.seq_is_ours(&f) {
            self.replies.push_back(f);
        } else {
            self.pushes.push_back(f);
        }
    }

    fn seq_is_ours(&self, f: &Value) -> bool {
        let s = f["head"]["seq"].as_u64().unwrap_or(0);
        s > 1000 && s <= self.seq || s == 0
    }

    fn reply(&mut self, servcmd: &str, seq: u64) -> Value {
        let deadline = Instant::now() + T;
        loop {
            if let Some(i) = self
                .replies
                .iter()
                .position(|r| r["head"]["seq"] == seq && r["head"]["servcmd"] == servcmd)
            {
                return self.replies.remove(i).unwrap();
            }
            assert!(Instant::now() < deadline, "no reply to {servcmd} {seq}");
            self.pump();
        }
    }

    /// Sends a request and returns the reply's body.
    fn request(&mut self, servcmd: &str, head: Value, body: Value) -> Value {
        let seq = self.send(servcmd, head, body);
        self.reply(servcmd, seq)["body"].clone()
    }

    fn push(&mut self, servcmd: &str) -> Value {
        let deadline = Instant::now() + T;
        loop {
            if let Some(i) = self
                .pushes
                .iter()
                .position(|p| p["head"]["servcmd"] == servcmd)
            {
                return self.pushes.remove(i).unwrap();
            }
            assert!(Instant::now() < deadline, "no {servcmd} push");
            self.pump();
        }
    }

    fn login(&mut self, user: &str, sig: &str) -> Value {
        self.request(
            "im_open_status.wslogin",
            json!({"identifier": user, "usersig": sig, "status_instid": 0}),
            json!({"State": "Online", "is_web_uniapp": 0, "InstType": 0, "CustomInfo": ""}),
        )
    }

    fn relogin(&mut self, a2: &str) -> Value {
        self.request(
            "im_open_status.wslogin",
            json!({"a2": a2, "tinyid": "1", "status_instid": 7}),
            json!({"State": "Online", "is_web_uniapp": 0, "InstType": 0, "CustomInfo": ""}),
        )
    }
}

#[test]
fn web_login_verifies_usersigs_like_the_native_endpoint() {
    let server = DevServer::start(&[]);
    let mut w = Web::connect(&server, "0123456789abcdef0123456789abcdef");
    let cases = [
        (
            "alice",
            ticket_for(APP, "not the key", "alice", 3600, now_unix()),
            70003,
        ),
        ("alice", ticket_at("alice", 60, now_unix() - 3600), 70001),
        ("alice", ticket("bob", 3600), 70013),
        (
            "alice",
            ticket_for(APP + 1, KEY, "alice", 3600, now_unix()),
            70014,
        ),
        ("alice", "  ".to_string(), 6017),
        ("a b", ticket("a b", 3600), 7003),
        ("alice", "x".repeat(20_000), 70003),
    ];
    for (user, sig, code) in cases {
        let b = w.login(user, &sig);
        assert_eq!(b["ErrorCode"], code, "{user}: {b}");
        let info = b["ErrorInfo"].as_str().unwrap();
        assert!(!info.is_empty(), "{b}");
        if sig.trim().len() > 8 {
            assert!(!info.contains(&sig), "the ticket is echoed: {b}");
        }
    }
    let before = now_unix();
    let b = w.login("alice", &ticket("alice", 3600));
    let after = now_unix();
    assert_eq!(b["ErrorCode"], 0, "{b}");
    assert!(b["A2Key"].as_str().is_some_and(|a| a.len() > 20), "{b}");
    assert!(b["TinyId"].as_str().unwrap().parse::<u64>().unwrap() > 0);
    assert!(b["InstId"].as_u64().unwrap() > 0, "{b}");
    assert_eq!(b["HelloInterval"], 30);
    // The server's clock (this machine's) while it handled the login.
    let ts = b["TimeStamp"].as_i64().unwrap();
    assert!(
        (before..=after).contains(&ts),
        "{ts} not in {before}..={after}"
    );
    let rows = server.sessions();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["protocol"], "web");
    assert_eq!(rows[0]["platform"], "Web");
    assert_eq!(rows[0]["instanceId"], "0123456789abcdef0123456789abcdef");
    let r = server.rest(
        "openim/query_online_status",
        json!({"To_Account": ["alice"], "IsNeedDetail": 1}),
    );
    assert_eq!(
        r["QueryResult"][0]["Detail"],
        json!([{"Platform": "Web", "Status": "Online"}])
    );
    // The requests the SDK makes after login.
    let b = w.request(
        "profile.portrait_get_all",
        json!({}),
        json!({"From_Account": "alice", "UserItem": [{"To_Account": "alice"}, {"To_Account": "ghost"}, {"To_Account": "bad id"}]}),
    );
    assert_eq!(b["ErrorCode"], 0, "{b}");
    assert_eq!(b["UserProfileItem"][0]["To_Account"], "alice");
    assert_eq!(b["UserProfileItem"].as_array().unwrap().len(), 1, "{b}");
    assert_eq!(b["Fail_Account"], json!(["ghost"]));
    for cmd in [
        "sns.black_list_get",
        "recentcontact.page_get",
        "group_open_http_svc.get_joined_group_list",
        "openim.getmsg",
        "sns.friend_get",
        "im_sdk_config_mgr.fetch_config",
    ] {
        let b = w.request(cmd, json!({}), json!({}));
        assert_eq!(b["ErrorCode"], 0, "{cmd}: {b}");
        assert_eq!(b["CompleteFlag"], 1, "{cmd}: {b}");
    }
    assert_eq!(
        w.request("heartbeat.alive", json!({}), json!({}))["ErrorCode"],
        0
    );
    assert_eq!(
        w.request(
            "im_open_status.wslogout",
            json!({}),
            json!({"wslogout_type": 0})
        )["ErrorCode"],
        0
    );
    assert!(server.sessions().is_empty());
    assert_eq!(server.user_stats("alice")["logouts"], 1);
}

#[test]
fn web_frames_get_clear_error_codes() {
    let server = DevServer::start(&[]);
    let mut w = Web::connect(&server, "inst-hostile");
    let junk: [&[u8]; 7] = [
        b"not json",
        b"[1,2]",
        b"{}",
        b"{\"head\":\"x\"}",
        b"{\"head\":{\"servcmd\":\"bad cmd!\",\"seq\":1}}",
        b"\xff\xfe\x00",
        b"COMPnot compressed at all",
    ];
    for j in junk {
        w.send_raw(Message::binary(j.to_vec()));
        let f = w.read().unwrap();
        assert_eq!(f["head"], json!({"servcmd": "", "seq": 0}), "{f}");
        assert_eq!(f["body"]["ErrorCode"], 6017, "{f}");
    }
    // servcmd readable, seq not: answered with the servcmd.
    w.send_raw(Message::binary(
        br#"{"head":{"servcmd":"heartbeat.alive","seq":"x"}}"#.to_vec(),
    ));
    let f = w.read().unwrap();
    assert_eq!(f["head"]["servcmd"], "heartbeat.alive");
    assert_eq!(f["body"]["ErrorCode"], 6017);
    let b = w.request("heartbeat.alive", json!({}), json!([1]));
    assert_eq!(b["ErrorCode"], 6017, "{b}");
    let b = w.request("openim.sendmsg", json!({}), json!({}));
    assert_eq!(b["ErrorCode"], 6017, "{b}");
    assert!(b["ErrorInfo"].as_str().unwrap().contains("not supported"));
    // Not logged in: lists and profiles refused, heartbeats and telemetry accepted.
    let b = w.request("profile.portrait_get_all", json!({}), json!({}));
    assert_eq!(b["ErrorCode"], 6014, "{b}");
    let b = w.request(
        "sns.friend_get",
        json!({"a2": "A2v1.forged.key"}),
        json!({}),
    );
    assert_eq!(b["ErrorCode"], 6014, "{b}");
    assert_eq!(
        w.request("heartbeat.alive", json!({}), json!({}))["ErrorCode"],
        0
    );
    let b = w.request(
        "imopenstat.tim_web_report_v2",
        json!({}),
        json!({"Header": {"user_id": "alice"}, "Event": []}),
    );
    assert_eq!(b["ErrorCode"], 0);
    assert_eq!(server.stats()["webTelemetryDropped"], 1);
    // A forged A2 key is refused like a bad ticket.
    assert_eq!(w.relogin("A2v1.bm9wZQ.bm9wZQ")["ErrorCode"], 70003);
    // Text frames are accepted too, and a COMP-compressed request.
    w.send_raw(Message::text(
        json!({"head": {"servcmd": "heartbeat.alive", "seq": 5000}, "body": {}}).to_string(),
    ));
    let f = w.read().unwrap();
    assert_eq!(f["head"]["seq"], 5000);
    let mut z = b"COMP".to_vec();
    let mut enc = flate2::write::GzEncoder::new(&mut z, flate2::Compression::default());
    enc.write_all(
        json!({"head": {"servcmd": "heartbeat.alive", "seq": 5001}, "body": {}})
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    enc.finish().unwrap();
    w.send_raw(Message::binary(z));
    let f = w.read().unwrap();
    assert_eq!(f["head"]["seq"], 5001);
    assert_eq!(f["body"]["ErrorCode"], 0);
    // Still serving.
    let b = w.login("alice", &ticket("alice", 3600));
    assert_eq!(b["ErrorCode"], 0, "{b}");
}

#[test]
fn the_text_endpoint_answers_in_text_frames() {
    let server = DevServer::start(&[]);
    let mut w = Web::connect_url(&url(&server, "/info", "inst-text", ""));
    w.send_raw(Message::text(
        json!({"head": {"servcmd": "im_open_status.wslogin", "seq": 1001, "identifier": "alice", "usersig": ticket("alice", 3600)}, "body": {}}).to_string(),
    ));
    match w.ws.read().unwrap() {
        Message::Text(t) => {
            let v: Value = serde_json::from_str(&t).unwrap();
            assert_eq!(v["body"]["ErrorCode"], 0, "{v}");
        }
        m => panic!("expected a text frame, got {m:?}"),
    }
}

#[test]
fn oversized_web_frames_close_1009() {
    let server = DevServer::start(&[]);
    let mut w = Web::connect(&server, "inst-big");
    w.send_raw(Message::binary(vec![b' '; 600 * 1024]));
    let mut code = None;
    while let Ok(m) = w.ws.read() {
        if let Message::Close(Some(f)) = m {
            code = Some(u16::from(f.code));
        }
    }
    assert_eq!(code, Some(1009));
    // A small compressed frame that inflates beyond the limit.
    let mut w = Web::connect(&server, "inst-bomb");
    let mut z = b"COMP".to_vec();
    let mut enc = flate2::write::GzEncoder::new(&mut z, flate2::Compression::best());
    enc.write_all(&vec![b' '; 2 * 1024 * 1024]).unwrap();
    enc.finish().unwrap();
    assert!(z.len() < 64 * 1024);
    w.send_raw(Message::binary(z));
    let mut code = None;
    while let Ok(m) = w.ws.read() {
        if let Message::Close(Some(f)) = m {
            code = Some(u16::from(f.code));
        }
    }
    assert_eq!(code, Some(1009));
    // The server is fine.
    let mut w = Web::connect(&server, "inst-after");
    assert_eq!(w.login("alice", &ticket("alice", 3600))["ErrorCode"], 0);
}

#[test]
fn web_upgrades_with_bad_queries_are_refused() {
    let server = DevServer::start(&[]);
    let cases = [
        ("/binfo?instanceid=abc&platform=7", 400),
        ("/binfo?sdkappid=x&instanceid=abc", 400),
        ("/binfo?sdkappid=1&instanceid=abc", 403),
        (&format!("/binfo?sdkappid={APP}&platform=7") as &str, 400),
        (&format!("/binfo?sdkappid={APP}&instanceid=a%20b"), 400),
        (
            &format!("/binfo?sdkappid={APP}&instanceid=abc&platform=web"),
            400,
        ),
    ];
    for (path, status) in cases {
        let (s, body) = server.http("GET", path, "");
        assert_eq!(s, status, "{path}: {body}");
    }
}

#[test]
fn the_sdk_relogin_uses_the_a2_key() {
    let server = DevServer::start(&["--policy", "single"]);
    let inst = "a2instance";
    let mut w = Web::connect(&server, inst);
    let a2 = w.login("alice", &ticket("alice", 3600))["A2Key"]
        .as_str()
        .unwrap()
        .to_owned();
    drop(w);
    wait_until(T, "the login to go offline", || {
        server
            .sessions()
            .first()
            .is_some_and(|s| s["state"] == "offline")
    });
    // Another instance cannot use it.
    let mut other = Web::connect(&server, "another");
    assert_eq!(other.relogin(&a2)["ErrorCode"], 70003);
    // Its own instance resumes the login, as an `auto` login.
    let mut w = Web::connect(&server, inst);
    let b = w.relogin(&a2);
    assert_eq!(b["ErrorCode"], 0, "{b}");
    assert_eq!(server.user_stats("alice")["autoLogins"], 1);
    assert_eq!(server.sessions()[0]["state"], "online");

    // Displaced while offline: the re-login is told it was kicked (multipleDevice).
    drop(w);
    wait_until(T, "the login to go offline", || {
        server
            .sessions()
            .first()
            .is_some_and(|s| s["state"] == "offline")
    });
    let mut linux = WsClient::connect(&server, "Linux", "linux-1");
    assert_eq!(
        linux.login("alice", &ticket("alice", 3600), false)["code"],
        0
    );
    let mut w = Web::connect(&server, inst);
    let b = w.relogin(&a2);
    assert_eq!(b["ErrorCode"], 1002, "{b}");
    assert_eq!(b["KickType"], 2, "{b}");

    // Kicked by the REST API while offline: KickType 3.
    let mut w2 = Web::connect(&server, "b-instance");
    let a2b = w2.login("bob", &ticket_at("bob", 3600, now_unix() - 5))["A2Key"]
        .as_str()
        .unwrap()
        .to_owned();
    drop(w2);
    wait_until(T, "bob's login to go offline", || {
        server
            .sessions()
            .iter()
            .any(|s| s["userID"] == "bob" && s["state"] == "offline")
    });
    server.rest("im_open_login_svc/kick", json!({"UserID": "bob"}));
    let mut w2 = Web::connect(&server, "b-instance");
    let b = w2.relogin(&a2b);
    assert_eq!(b["ErrorCode"], 1002, "{b}");
    assert_eq!(b["KickType"], 3, "{b}");
}

#[test]
fn kicks_and_profile_changes_are_pushed_as_sdk_frames() {
    let server = DevServer::start(&["--policy", "single"]);
    let mut w = Web::connect(&server, "push-inst");
    assert_eq!(w.login("alice", &ticket("alice", 3600))["ErrorCode"], 0);
    server.rest(
        "profile/portrait_set",
        json!({"From_Account": "alice", "ProfileItem": [
            {"Tag": "Tag_Profile_IM_Nick", "Value": "Alice"},
            {"Tag": "Tag_Profile_IM_Level", "Value": 4},
        ]}),
    );
    let p = w.push("im_open_push.msg_push");
    let m = &p["body"]["EventArray"][0]["ProfileDataMod"][0];
    assert_eq!(m["Profile_Account"], "alice");
    let list = m["ProfileList"].as_array().unwrap();
    assert!(list.contains(&json!({"Tag": "Tag_Profile_IM_Nick", "ValueBytes": "Alice"})));
    assert!(list.contains(&json!({"Tag": "Tag_Profile_IM_Level", "ValueNum": 4})));
    assert_eq!(w.compressed.last(), Some(&false));
    // Large frames are compressed (compress=gzip in the URL).
    server.rest(
        "profile/portrait_set",
        json!({"From_Account": "alice", "ProfileItem": [
            {"Tag": "Tag_Profile_IM_SelfSignature", "Value": "s".repeat(2000)},
        ]}),
    );
    w.push("im_open_push.msg_push");
    assert_eq!(w.compressed.last(), Some(&true));
    // Without compress=gzip they are not.
    let mut plain = Web::connect_url(&url(&server, "/binfo", "plain-inst", ""));
    assert_eq!(plain.login("carol", &ticket("carol", 3600))["ErrorCode"], 0);
    server.rest(
        "profile/portrait_set",
        json!({"From_Account": "carol", "ProfileItem": [
            {"Tag": "Tag_Profile_IM_SelfSignature", "Value": "s".repeat(2000)},
        ]}),
    );
    plain.push("im_open_push.msg_push");
    assert_eq!(plain.compressed.last(), Some(&false));
    // A native login displaces the Web one (single): KickType 2.
    let mut linux = WsClient::connect(&server, "Linux", "linux-1");
    assert_eq!(
        linux.login("alice", &ticket("alice", 3600), false)["code"],
        0
    );
    let k = w.push("im_open_status.stat_forceoffline");
    assert_eq!(
        k["body"]["EventArray"][0]["C2cNotifyMsgArray"][0]["KickoutMsgNotify"]["KickType"], 2,
        "{k}"
    );
    // The Web login displaces the native one.
    assert_eq!(w.login("alice", &ticket("alice", 3600))["ErrorCode"], 0);
    assert_eq!(
        linux.expect_push("kickedOffline", T),
        json!({"reason": "multi_device", "platform": "Web"})
    );
    // The REST kick: KickType 3.
    server.rest("im_open_login_svc/kick", json!({"UserID": "alice"}));
    let k = w.push("im_open_status.stat_forceoffline");
    assert_eq!(
        k["body"]["EventArray"][0]["C2cNotifyMsgArray"][0]["KickoutMsgNotify"]["KickType"], 3,
        "{k}"
    );
    let b = w.request("profile.portrait_get_all", json!({}), json!({}));
    assert_eq!(b["ErrorCode"], 6014, "{b}");
}

#[test]
fn expiry_while_online_answers_the_next_request_70001() {
    let server = DevServer::start(&[]);
    let mut w = Web::connect(&server, "exp-inst");
    assert_eq!(w.login("alice", &ticket("alice", 1))["ErrorCode"], 0);
    wait_until(T, "the login to expire", || {
        server.user_stats("alice")["expired"] == 1
    });
    assert!(server.sessions().is_empty());
    let b = w.request("heartbeat.alive", json!({}), json!({}));
    assert_eq!(b["ErrorCode"], 70001, "{b}");
    // Once.
    let b = w.request("heartbeat.alive", json!({}), json!({}));
    assert_eq!(b["ErrorCode"], 0, "{b}");
}

#[test]
fn faults_reach_web_connections() {
    let server = DevServer::start(&["--faults"]);
    let mut w = Web::connect(&server, "fault-inst");
    server.fault("fail-logins?count=1&code=70398");
    assert_eq!(w.login("alice", &ticket("alice", 3600))["ErrorCode"], 70398);
    assert_eq!(w.login("alice", &ticket("alice", 3600))["ErrorCode"], 0);
    // A burst of profile pushes reaches a Web connection as SDK frames, numbered in order.
    assert_eq!(
        server.fault("push-burst?user=alice&count=3")["connections"],
        1
    );
    for i in 1..=3 {
        let p = w.push("im_open_push.msg_push");
        let list = &p["body"]["EventArray"][0]["ProfileDataMod"][0]["ProfileList"];
        assert!(
            list.as_array()
                .unwrap()
                .contains(&json!({"Tag": "Tag_Profile_Custom_Seq", "ValueBytes": i.to_string()})),
            "{p}"
        );
    }
    server.fault("drop");
    assert!(w.read().is_none(), "the connection ends without a reply");
    wait_until(T, "the login to go offline", || {
        server.stats()["protocols"]["web"]["connectionsOpen"] == 0
    });
    assert_eq!(server.sessions()[0]["state"], "offline");
    server.fault("refuse?ms=60000");
    let (status, _) = server.http("GET", &format!("/binfo?sdkappid={APP}&instanceid=x"), "");
    assert_eq!(status, 503);
}
