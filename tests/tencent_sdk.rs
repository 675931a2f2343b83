//! Tencent's official Web SDK (`@tencentcloud/chat`, installed in `bridge/tencent`) against
//! a real `imlink-devserver`: first alone, driven by `tests/node/sdk_client.js`, then
//! through imlink's bridge program `bridge/tencent/index.js` over its JSON-lines protocol.
//!
//! Needs `node` and `npm ci --omit=dev --prefix bridge/tencent`. Missing packages fail the
//! tests; a missing `node` fails them under `CI`, and skips them loudly elsewhere.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::node::{bridge_dir, node_ready};
use support::*;

/// Deadline for anything that should happen promptly.
const T: Duration = Duration::from_secs(20);
/// Deadline for what waits on the SDK's own timers (its idle ping comes after 10 s).
const SLOW: Duration = Duration::from_secs(45);

macro_rules! require_node {
    () => {
        if !node_ready("the Tencent SDK tests") {
            return;
        }
    };
}

/// A Node process speaking JSON lines: the SDK test client or the bridge.
struct NodeProc {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    backlog: VecDeque<Value>,
    stderr_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl NodeProc {
    fn spawn(script: &Path, args: &[&str]) -> NodeProc {
        let dir = tempfile::tempdir().unwrap();
        let stderr_path = dir.path().join("stderr.log");
        let mut child = Command::new("node")
            .arg(script)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(&stderr_path).unwrap()))
            .spawn()
            .expect("spawn node");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        NodeProc {
            stdin: child.stdin.take(),
            child,
            lines,
            backlog: VecDeque::new(),
            stderr_path,
            _dir: dir,
        }
    }

    /// The SDK alone (tests/node/sdk_client.js), created against `server`.
    fn sdk(server: &DevServer) -> NodeProc {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node/sdk_client.js");
        let mut n = NodeProc::spawn(&script, &[bridge_dir().to_str().unwrap()]);
        n.expect(T, "started", |v| v["event"] == "started");
        n.send(json!({"op": "create", "sdkAppID": APP, "proxyServer": format!("ws://{}", server.addr)}));
        n.reply("create");
        n
    }

    /// The bridge (`bridge/tencent/index.js`), after its hello.
    fn bridge() -> (NodeProc, Value) {
        let mut n = NodeProc::spawn(&bridge_dir().join("index.js"), &[]);
        let hello = n.expect(T, "hello", |v| v["event"] == "hello");
        (n, hello)
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    fn send(&mut self, v: Value) {
        self.send_raw(&v.to_string());
    }

    /// Writes `line` and its newline in one `write` (a pipe takes up to 4 KiB at once):
    /// two lines sent together arrive in the same read, whole.
    fn send_raw(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        stdin.write_all(&bytes).unwrap();
        stdin.flush().unwrap();
    }

    fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// The first line (queued or new) matching `pred`; the others stay queued. Every
    /// stdout line must be a JSON object: the SDK's log must never reach stdout.
    fn expect(&mut self, timeout: Duration, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.try_expect(timeout, &pred).unwrap_or_else(|| {
            panic!(
                "no {what} within {timeout:?}; lines seen: {:?}\nstderr (tail): {}",
                self.backlog,
                tail(&self.stderr(), 3000)
            )
        })
    }

    fn try_expect(&mut self, timeout: Duration, pred: &impl Fn(&Value) -> bool) -> Option<Value> {
        if let Some(i) = self.backlog.iter().position(pred) {
            return self.backlog.remove(i);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match self.lines.recv_timeout(left) {
                Ok(l) => l,
                Err(_) => return None,
            };
            let v: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line:?}"));
            assert!(v.is_object(), "stdout line is not a JSON object: {line}");
            if pred(&v) {
                return Some(v);
            }
            self.backlog.push_back(v);
        }
    }

    /// The test client's reply to `op` (`{"reply":op,"ok"|"err":…}`).
    fn reply(&mut self, op: &str) -> Value {
        self.expect(T, &format!("reply to {op}"), |v| v["reply"] == op)
    }

    /// The test client's SDK event `name` (`{"event":name,"data":…}`).
    fn event(&mut self, name: &str, timeout: Duration) -> Value {
        self.expect(timeout, name, |v| v["event"] == name)
    }

    /// The bridge's answer to request `id`.
    fn answer(&mut self, id: u64) -> Value {
        self.expect(T, &format!("answer to {id}"), |v| v["id"] == id)
    }

    /// Sends a bridge request and waits for its answer.
    fn call(&mut self, id: u64, mut req: Value) -> Value {
        req["id"] = json!(id);
        self.send(req);
        self.answer(id)
    }

    fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "node did not exit within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tail(s: &str, n: usize) -> &str {
    let mut start = s.len().saturating_sub(n);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

fn sdk_login(n: &mut NodeProc, user: &str, sig: &str) -> Value {
    n.send(json!({"op": "login", "userID": user, "userSig": sig}));
    n.reply("login")
}

/// Logs in and waits for SDK_READY.
fn sdk_login_ready(n: &mut NodeProc, user: &str) {
    let r = sdk_login(n, user, &ticket(user, 3600));
    assert!(r["ok"].is_object(), "login failed: {r}");
    n.event("SDK_READY", T);
}

fn web_sessions(server: &DevServer, user: &str) -> Vec<Value> {
    server
        .sessions()
        .into_iter()
        .filter(|s| s["userID"] == user && s["protocol"] == "web")
        .collect()
}

fn online_platforms(server: &DevServer, user: &str) -> Vec<String> {
    let r = server.rest(
        "openim/query_online_status",
        json!({"To_Account": [user], "IsNeedDetail": 1}),
    );
    let mut p: Vec<String> = r["QueryResult"][0]["Detail"]
        .as_array()
        .map(|d| {
            d.iter()
                .map(|x| x["Platform"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default();
    p.sort();
    p
}

// ---- the official SDK alone ----------------------------------------------------------

#[test]
fn official_sdk_logs_in_becomes_ready_and_logs_out() {
    require_node!();
    let server = DevServer::start(&[]);
    let mut sdk = NodeProc::sdk(&server);
    let r = sdk_login(&mut sdk, "alice", &ticket("alice", 3600));
    let ok = &r["ok"];
    assert_eq!(ok["errorCode"], 0, "{r}");
    assert!(ok["a2Key"].as_str().is_some_and(|a| !a.is_empty()), "{r}");
    assert!(ok["tinyID"].as_str().is_some_and(|t| !t.is_empty()), "{r}");
    sdk.event("SDK_READY", T);

    // The Hub sees a Web login like any other.
    let rows = web_sessions(&server, "alice");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["platform"], "Web");
    assert_eq!(rows[0]["state"], "online");
    let stats = server.stats();
    assert_eq!(stats["protocols"]["web"]["loginsOnline"], 1, "{stats}");
    assert_eq!(stats["protocols"]["web"]["connectionsOpen"], 1, "{stats}");
    assert_eq!(stats["protocols"]["native"]["loginsOnline"], 0, "{stats}");
    assert_eq!(server.user_stats("alice")["logins"], 1);
    assert_eq!(online_platforms(&server, "alice"), ["Web"]);

    // The lists it asks for after login were answered (empty and complete).
    sdk.event("CONVERSATION_LIST_UPDATED", T);
    sdk.event("FRIEND_LIST_UPDATED", T);
    sdk.event("GROUP_LIST_UPDATED", T);

    sdk.send(json!({"op": "getMyProfile"}));
    let p = sdk.reply("getMyProfile");
    assert_eq!(p["ok"]["userID"], "alice", "{p}");

    sdk.send(json!({"op": "logout"}));
    let r = sdk.reply("logout");
    assert!(r["ok"].is_object(), "{r}");
    sdk.event("SDK_NOT_READY", T);
    wait_until(T, "the logout to end the login", || {
        web_sessions(&server, "alice").is_empty()
    });
    assert_eq!(server.user_stats("alice")["logouts"], 1);
    assert_eq!(
        server.rest(
            "openim/query_online_status",
            json!({"To_Account": ["alice"]})
        )["QueryResult"][0]["Status"],
        "Offline"
    );
    // The SDK reports telemetry when it logs out: accepted and dropped.
    wait_until(T, "the SDK's telemetry report", || {
        server.stats()["webTelemetryDropped"].as_u64().unwrap() > 0
    });
    sdk.send(json!({"op": "destroy"}));
    assert!(sdk.wait_exit(T).success());
}

/// Whether one Node process can hold several accounts: it cannot. A second `create` with
/// the same SDKAppID returns the first instance, and a login through it does not add a
/// second user (it answers success, `repeatLogin`). So the daemon runs one bridge process
/// per account (docs/tencent.md).
#[test]
fn one_process_holds_one_login_per_sdkappid() {
    require_node!();
    let server = DevServer::start(&[]);
    let mut sdk = NodeProc::sdk(&server);
    sdk_login_ready(&mut sdk, "alice");
    sdk.send(json!({"op": "createAgain", "sdkAppID": APP, "proxyServer": format!("ws://{}", server.addr)}));
    let again = sdk.reply("createAgain");
    assert_eq!(again["ok"]["same"], true, "{again}");
    sdk.send(json!({"op": "loginAgain", "userID": "bob", "userSig": ticket("bob", 3600)}));
    let r = sdk.reply("loginAgain");
    // The SDK answers success, marked as a repeated login, and stays alice: a second
    // account in one process would be silently not logged in.
    assert_eq!(r["ok"]["repeatLogin"], true, "{r}");
    sdk.send(json!({"op": "getLoginUser"}));
    let who = sdk.reply("getLoginUser");
    assert_eq!(who["ok"]["userID"], "alice", "{who}");
    assert!(web_sessions(&server, "bob").is_empty());
    // The server never heard of bob.
    assert_eq!(server.user_stats("bob"), Value::Null);
    assert_eq!(web_sessions(&server, "alice").len(), 1);
}

#[test]
fn official_sdk_login_refusals_carry_the_native_codes() {
    require_node!();
    let server = DevServer::start(&[]);
    let mut sdk = NodeProc::sdk(&server);
    let cases = [
        (
            ticket_for(APP, "not the key", "alice", 3600, now_unix()),
            70003,
        ),
        (ticket_at("alice", 60, now_unix() - 3600), 70001),
        (ticket("bob", 3600), 70013),
        (ticket_for(APP + 1, KEY, "alice", 3600, now_unix()), 70014),
    ];
    for (sig, code) in cases {
        let r = sdk_login(&mut sdk, "alice", &sig);
        assert_eq!(r["err"]["code"], code, "{r}");
    }
    let failed = &server.user_stats("alice")["failed"];
    for code in ["70003", "70001", "70013", "70014"] {
        assert_eq!(failed[code], 1, "{failed}");
    }
    assert!(web_sessions(&server, "alice").is_empty());
    // After the refusals a good ticket still works on the same SDK instance.
    sdk_login_ready(&mut sdk, "alice");
    assert!(
        !sdk.backlog.iter().any(|v| v["event"] == "KICKED_OUT"),
        "{:?}",
        sdk.backlog
    );
}

#[test]
fn a_web_login_beyond_web_instances_kicks_the_oldest() {
    require_node!();
    let server = DevServer::start(&["--web-instances", "1"]);
    let mut first = NodeProc::sdk(&server);
    sdk_login_ready(&mut first, "alice");
    let mut second = NodeProc::sdk(&server);
    sdk_login_ready(&mut second, "alice");
    let k = first.event("KICKED_OUT", T);
    assert_eq!(k["data"]["type"], "multipleDevice", "{k}");
    first.event("SDK_NOT_READY", T);
    assert_eq!(server.user_stats("alice")["kickedMultiDevice"], 1);
    wait_until(T, "one Web login left", || {
        web_sessions(&server, "alice").len() == 1
    });
    assert_eq!(online_platforms(&server, "alice"), ["Web"]);
}

#[test]
fn web_instances_lets_web_logins_coexist() {
    require_node!();
    let server = DevServer::start(&["--web-instances", "2"]);
    let mut a = NodeProc::sdk(&server);
    sdk_login_ready(&mut a, "alice");
    let mut b = NodeProc::sdk(&server);
    sdk_login_ready(&mut b, "alice");
    let rows = web_sessions(&server, "alice");
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.iter().all(|r| r["state"] == "online"), "{rows:?}");
    assert_eq!(server.user_stats("alice")["kickedMultiDevice"], 0);
    assert_eq!(online_platforms(&server, "alice"), ["Web", "Web"]);
    // A third displaces the oldest.
    let mut c = NodeProc::sdk(&server);
    sdk_login_ready(&mut c, "alice");
    let k = a.event("KICKED_OUT", T);
    assert_eq!(k["data"]["type"], "multipleDevice", "{k}");
    assert_eq!(web_sessions(&server, "alice").len(), 2);
}

#[test]
fn native_and_web_logins_share_the_policy() {
    require_node!();
    // single: they displace each other, newest wins.
    let server = DevServer::start(&["--policy", "single"]);
    let mut linux = WsClient::connect(&server, "Linux", "linux-1");
    assert_eq!(
        linux.login("alice", &ticket("alice", 3600), false)["code"],
        0
    );
    let mut web = NodeProc::sdk(&server);
    sdk_login_ready(&mut web, "alice");
    let kicked = linux.expect_push("kickedOffline", T);
    assert_eq!(kicked, json!({"reason": "multi_device", "platform": "Web"}));
    assert_eq!(online_platforms(&server, "alice"), ["Web"]);
    assert_eq!(
        linux.login("alice", &ticket("alice", 3600), false)["code"],
        0
    );
    let k = web.event("KICKED_OUT", T);
    assert_eq!(k["data"]["type"], "multipleDevice", "{k}");
    wait_until(T, "only the Linux login online", || {
        online_platforms(&server, "alice") == ["Linux"]
    });
    assert_eq!(server.user_stats("alice")["kickedMultiDevice"], 2);

    // multi: they coexist.
    let server = DevServer::start(&["--policy", "multi"]);
    let mut linux = WsClient::connect(&server, "Linux", "linux-1");
    assert_eq!(
        linux.login("alice", &ticket("alice", 3600), false)["code"],
        0
    );
    let mut web = NodeProc::sdk(&server);
    sdk_login_ready(&mut web, "alice");
    assert_eq!(online_platforms(&server, "alice"), ["Linux", "Web"]);
    let protocols: Vec<Value> = server
        .sessions()
        .iter()
        .map(|s| json!([s["platform"], s["protocol"], s["state"]]))
        .collect();
    assert_eq!(
        protocols,
        [
            json!(["Linux", "native", "online"]),
            json!(["Web", "web", "online"])
        ]
    );
    assert_eq!(server.stats()["loginsOnline"], 2);
    assert_eq!(server.user_stats("alice")["kickedMultiDevice"], 0);
}

#[test]
fn rest_kick_reaches_the_sdk() {
    require_node!();
    let server = DevServer::start(&[]);
    let mut sdk = NodeProc::sdk(&server);
    sdk_login_ready(&mut sdk, "alice");
    let r = server.rest("im_open_login_svc/kick", json!({"UserID": "alice"}));
    assert_eq!(r["ErrorCode"], 0, "{r}");
    let k = sdk.event("KICKED_OUT", T);
    assert_eq!(k["data"]["type"], "REST_API_Kick", "{k}");
    sdk.event("SDK_NOT_READY", T);
    assert_eq!(server.user_stats("alice")["kickedRestApi"], 1);
    assert!(web_sessions(&server, "alice").is_empty());
    // The SDK reconnects by itself after a REST kick (logged out).
    let n = sdk.event("NET_STATE_CHANGE", T);
    assert_eq!(n["data"]["state"], "connecting", "{n}");
    let n = sdk.event("NET_STATE_CHANGE", T);
    assert_eq!(n["data"]["state"], "connected", "{n}");
}

#[test]
fn ticket_expiry_while_online_reaches_the_sdk() {
    require_node!();
    let server = DevServer::start(&[]);
    let mut sdk = NodeProc::sdk(&server);
    let r = sdk_login(&mut sdk, "alice", &ticket("alice", 4));
    assert!(r["ok"].is_object(), "{r}");
    sdk.event("SDK_READY", T);
    // The server ends the login when the ticket runs out and answers the SDK's next
    // request (its idle ping, at most 10 s later) with 70001.
    let k = sdk.event("KICKED_OUT", SLOW);
    assert_eq!(k["data"]["type"], "userSigExpired", "{k}");
    sdk.event("SDK_NOT_READY", T);
    assert_eq!(server.user_stats("alice")["expired"], 1);
    assert!(web_sessions(&server, "alice").is_empty());
}

#[test]
fn profile_updates_reach_the_sdk_compressed_when_large() {
    require_node!();
    let server = DevServer::start(&[]);
    let mut sdk = NodeProc::sdk(&server);
    sdk_login_ready(&mut sdk, "alice");
    let r = server.rest(
        "profile/portrait_set",
        json!({"From_Account": "alice", "ProfileItem": [
            {"Tag": "Tag_Profile_IM_Nick", "Value": "Alice"},
            {"Tag": "Tag_Profile_IM_Gender", "Value": "Gender_Type_Female"},
            {"Tag": "Tag_Profile_IM_Level", "Value": 7},
            {"Tag": "Tag_Profile_Custom_Team", "Value": "blue"},
        ]}),
    );
    assert_eq!(r["ErrorCode"], 0, "{r}");
    let e = sdk.expect(T, "PROFILE_UPDATED with the nick", |v| {
        v["event"] == "PROFILE_UPDATED" && v["data"][0]["nick"] == "Alice"
    });
    let p = &e["data"][0];
    assert_eq!(p["userID"], "alice");
    assert_eq!(p["gender"], "Gender_Type_Female");
    assert_eq!(p["level"], 7);
    assert_eq!(
        p["profileCustomField"],
        json!([{"key": "Tag_Profile_Custom_Team", "value": "blue"}])
    );
    // A push larger than 1 KiB goes out gzip-compressed (the SDK asked with compress=gzip).
    let long: String = (0..3000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    server.rest(
        "profile/portrait_set",
        json!({"From_Account": "alice", "ProfileItem": [
            {"Tag": "Tag_Profile_IM_SelfSignature", "Value": long},
        ]}),
    );
    let e = sdk.expect(T, "PROFILE_UPDATED with the long signature", |v| {
        v["event"] == "PROFILE_UPDATED" && v["data"][0]["selfSignature"] == long.as_str()
    });
    assert_eq!(e["data"][0]["nick"], "Alice");
    sdk.send(json!({"op": "getMyProfile"}));
    let r = sdk.reply("getMyProfile");
    assert_eq!(r["ok"]["selfSignature"], long.as_str(), "{r}");
}

#[test]
fn faults_apply_to_web_connections() {
    require_node!();
    let server = DevServer::start(&["--faults"]);
    let mut sdk = NodeProc::sdk(&server);
    server.fault("fail-logins?count=1&code=70398");
    let r = sdk_login(&mut sdk, "alice", &ticket("alice", 3600));
    assert_eq!(r["err"]["code"], 70398, "{r}");
    sdk_login_ready(&mut sdk, "alice");

    // drop: the SDK reconnects and logs in again by itself, with its A2 key (an `auto`
    // login), staying ready.
    server.fault("drop");
    let n = sdk.event("NET_STATE_CHANGE", T);
    if n["data"]["state"] == "disconnected" {
        // The connection had lived less than a second: the SDK waits for a reason to send.
        prompt_reconnect(&mut sdk);
    } else {
        assert_eq!(n["data"]["state"], "connecting", "{n}");
    }
    sdk.expect(T, "connected", |v| {
        v["event"] == "NET_STATE_CHANGE" && v["data"]["state"] == "connected"
    });
    wait_until(T, "the automatic re-login", || {
        let u = server.user_stats("alice");
        u["autoLogins"] == 1 && u["logins"] == 2
    });
    let rows = web_sessions(&server, "alice");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["state"], "online");

    // refuse + drop: the SDK's reconnects are refused (HTTP 503) and it says
    // `disconnected`; once connections are accepted again, it reconnects. The refusal
    // lasts until the test clears it, however slowly the SDK gets to its attempt.
    server.fault("refuse?ms=600000");
    server.fault("drop");
    sdk.expect(T, "disconnected", |v| {
        v["event"] == "NET_STATE_CHANGE" && v["data"]["state"] == "disconnected"
    });
    server.fault("clear");
    assert_eq!(server.stats()["faults"]["refusing"], false);
    prompt_reconnect(&mut sdk);
    sdk.expect(T, "connected", |v| {
        v["event"] == "NET_STATE_CHANGE" && v["data"]["state"] == "connected"
    });
    wait_until(T, "the second automatic re-login", || {
        server.user_stats("alice")["autoLogins"] == 2
    });
    assert!(
        !sdk.backlog
            .iter()
            .any(|v| v["event"] == "KICKED_OUT" || v["event"] == "SDK_NOT_READY"),
        "{:?}",
        sdk.backlog
    );
}

#[test]
fn a_web_login_displaced_while_offline_learns_it_when_it_reconnects() {
    require_node!();
    let server = DevServer::start(&["--faults", "--policy", "single"]);
    let mut sdk = NodeProc::sdk(&server);
    sdk_login_ready(&mut sdk, "alice");
    // Refused until the test clears it, however slowly the SDK gets to its attempt.
    server.fault("refuse?ms=600000");
    server.fault("drop");
    sdk.expect(T, "disconnected", |v| {
        v["event"] == "NET_STATE_CHANGE" && v["data"]["state"] == "disconnected"
    });
    server.fault("clear");
    assert_eq!(server.stats()["faults"]["refusing"], false);
    // The SDK stays disconnected until it next sends a request. Meanwhile a native login
    // displaces the offline Web login.
    let mut linux = WsClient::connect(&server, "Linux", "linux-1");
    assert_eq!(
        linux.login("alice", &ticket("alice", 3600), false)["code"],
        0
    );
    wait_until(T, "the Web login to be marked displaced", || {
        web_sessions(&server, "alice")
            .first()
            .is_some_and(|s| s["state"] == "displaced")
    });
    // The SDK's automatic re-login is told it was kicked; the native login stays.
    prompt_reconnect(&mut sdk);
    let k = sdk.event("KICKED_OUT", T);
    assert_eq!(k["data"]["type"], "multipleDevice", "{k}");
    sdk.event("SDK_NOT_READY", T);
    assert_eq!(server.user_stats("alice")["failed"]["6208"], 1);
    assert_eq!(online_platforms(&server, "alice"), ["Linux"]);
}

/// After a lost connection that had lived at least a second the SDK reconnects at once
/// (`connecting`, `connected`); after a shorter one or a refused attempt it says
/// `disconnected` and connects again only when it next sends a request. This makes it send
/// one (a profile not in its cache), which its re-login then follows.
fn prompt_reconnect(sdk: &mut NodeProc) {
    sdk.send(json!({"op": "getUserProfile", "userIDList": ["nobody-cached"]}));
    let r = sdk.reply("getUserProfile");
    assert_eq!(r["ok"], json!([]), "{r}");
}

// ---- the bridge ----------------------------------------------------------------------

#[test]
fn bridge_says_hello_and_prints_it_for_version() {
    require_node!();
    let (mut b, hello) = NodeProc::bridge();
    assert_eq!(hello["protocol"], 1, "{hello}");
    let installed: Value = serde_json::from_str(
        &std::fs::read_to_string(bridge_dir().join("node_modules/@tencentcloud/chat/package.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(hello["sdkVersion"], installed["version"]);
    assert!(hello["node"].as_str().unwrap().starts_with('v'), "{hello}");
    let out = Command::new("node")
        .arg(bridge_dir().join("index.js"))
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout:?}");
    assert_eq!(serde_json::from_str::<Value>(&stdout).unwrap(), hello);
    b.close_stdin();
    assert!(b.wait_exit(T).success());
}

#[test]
fn bridge_drives_the_sdk_over_json_lines() {
    require_node!();
    let server = DevServer::start(&[]);
    let (mut b, _) = NodeProc::bridge();
    let r = b.call(1, json!({"op": "getMyProfile"}));
    assert_eq!(r["err"]["code"], 6013, "{r}");
    let proxy = format!("ws://{}", server.addr);
    let r = b.call(
        2,
        json!({"op": "init", "sdkAppID": APP, "proxyServer": proxy, "logLevel": -1}),
    );
    assert_eq!(r["ok"], json!({}), "{r}");
    let r = b.call(3, json!({"op": "login", "userID": "alice", "userSig": ticket_for(APP, "bad key", "alice", 3600, now_unix())}));
    assert_eq!(r["err"]["code"], 70003, "{r}");
    let sig = ticket("alice", 3600);
    let r = b.call(4, json!({"op": "login", "userID": "alice", "userSig": sig}));
    assert_eq!(r["ok"], json!({"repeatLogin": false}), "{r}");
    b.expect(T, "ready", |v| v["event"] == "ready");
    let r = b.call(5, json!({"op": "login", "userID": "alice", "userSig": sig}));
    assert_eq!(r["ok"], json!({"repeatLogin": true}), "{r}");
    assert_eq!(b.call(6, json!({"op": "ping"}))["ok"], json!({}));

    server.rest(
        "profile/portrait_set",
        json!({"From_Account": "alice", "ProfileItem": [
            {"Tag": "Tag_Profile_IM_Nick", "Value": "Alice"},
            {"Tag": "Tag_Profile_IM_Image", "Value": "https://example.com/a.png"},
            {"Tag": "Tag_Profile_IM_SelfSignature", "Value": "hi"},
            {"Tag": "Tag_Profile_IM_Gender", "Value": "Gender_Type_Male"},
            {"Tag": "Tag_Profile_IM_AllowType", "Value": "AllowType_Type_DenyAny"},
            {"Tag": "Tag_Profile_IM_BirthDay", "Value": 19900101},
            {"Tag": "Tag_Profile_IM_Level", "Value": 3},
            {"Tag": "Tag_Profile_IM_Role", "Value": 2},
            {"Tag": "Tag_Profile_Custom_Team", "Value": "blue"},
        ]}),
    );
    let expected = json!({
        "userID": "alice", "nickName": "Alice", "faceUrl": "https://example.com/a.png",
        "selfSignature": "hi", "gender": 1, "allowType": 2,
        "customInfo": {"Tag_Profile_Custom_Team": "blue"}, "role": 2, "level": 3,
        "birthday": 19900101,
    });
    let e = b.expect(T, "profile", |v| v["event"] == "profile");
    assert_eq!(e["info"], expected, "{e}");
    let r = b.call(7, json!({"op": "getMyProfile"}));
    assert_eq!(r["ok"]["info"], expected, "{r}");
    // Another user's profile change is not this user's `profile` event.
    server.rest(
        "im_open_login_svc/account_import",
        json!({"UserID": "bob", "Nick": "Bob"}),
    );
    server.rest(
        "profile/portrait_set",
        json!({"From_Account": "bob", "ProfileItem": [{"Tag": "Tag_Profile_IM_Nick", "Value": "Bobby"}]}),
    );

    // A second Web login of alice elsewhere displaces this one.
    let mut other = NodeProc::sdk(&server);
    sdk_login_ready(&mut other, "alice");
    let k = b.expect(T, "kicked", |v| v["event"] == "kicked");
    assert_eq!(k["type"], "multipleDevice", "{k}");
    b.expect(T, "notReady", |v| v["event"] == "notReady");
    drop(other);

    // Log in again, then the REST kick.
    let r = b.call(
        8,
        json!({"op": "login", "userID": "alice", "userSig": ticket("alice", 3600)}),
    );
    assert_eq!(r["ok"]["repeatLogin"], false, "{r}");
    b.expect(T, "ready", |v| v["event"] == "ready");
    server.rest("im_open_login_svc/kick", json!({"UserID": "alice"}));
    let k = b.expect(T, "kicked", |v| v["event"] == "kicked");
    assert_eq!(k["type"], "REST_API_Kick", "{k}");
    b.expect(T, "notReady", |v| v["event"] == "notReady");
    let n = b.expect(T, "netState", |v| v["event"] == "netState");
    assert_eq!(n["state"], "connecting", "{n}");
    let n = b.expect(T, "netState", |v| v["event"] == "netState");
    assert_eq!(n["state"], "connected", "{n}");

    // A ticket issued after the kick; log out; destroy.
    let fresh = ticket_at("alice", 3600, now_unix() + 1);
    let r = b.call(
        9,
        json!({"op": "login", "userID": "alice", "userSig": fresh}),
    );
    assert_eq!(r["ok"]["repeatLogin"], false, "{r}");
    b.expect(T, "ready", |v| v["event"] == "ready");
    let r = b.call(10, json!({"op": "logout"}));
    assert_eq!(r["ok"], json!({}), "{r}");
    b.expect(T, "notReady", |v| v["event"] == "notReady");
    let r = b.call(11, json!({"op": "destroy"}));
    assert_eq!(r["ok"], json!({}), "{r}");
    assert!(b.wait_exit(T).success());
    // Only alice's own profile became a `profile` event.
    assert!(
        !b.backlog.iter().any(|v| v["event"] == "profile"),
        "{:?}",
        b.backlog
    );
    // At log level -1 the SDK logs every frame it sends, tickets included: redacted.
    let log = b.stderr();
    assert!(
        log.contains("TencentCloudChat"),
        "the SDK's log goes to stderr"
    );
    assert!(
        log.contains(r#""usersig":"[redacted]""#),
        "{}",
        tail(&log, 2000)
    );
    assert!(log.contains(r#""a2":"[redacted]""#), "{}", tail(&log, 2000));
    for s in [&sig, &fresh] {
        assert!(!log.contains(s.as_str()), "a UserSig reached stderr");
    }
    assert!(!log.contains("A2v1."), "an A2 key reached stderr");
}

#[test]
fn bridge_reports_ticket_expiry() {
    require_node!();
    let server = DevServer::start(&[]);
    let (mut b, _) = NodeProc::bridge();
    let proxy = format!("ws://{}", server.addr);
    b.call(
        1,
        json!({"op": "init", "sdkAppID": APP, "proxyServer": proxy}),
    );
    let r = b.call(
        2,
        json!({"op": "login", "userID": "alice", "userSig": ticket("alice", 4)}),
    );
    assert_eq!(r["ok"]["repeatLogin"], false, "{r}");
    b.expect(T, "ready", |v| v["event"] == "ready");
    let k = b.expect(SLOW, "kicked", |v| v["event"] == "kicked");
    assert_eq!(k["type"], "userSigExpired", "{k}");
    b.expect(T, "notReady", |v| v["event"] == "notReady");
    // The daemon died: stdin closes, the bridge destroys the SDK and exits 0.
    b.close_stdin();
    assert!(b.wait_exit(T).success());
}

#[test]
fn bridge_survives_hostile_lines() {
    require_node!();
    let (mut b, _) = NodeProc::bridge();
    for line in [
        "garbage",
        "[1,2]",
        "null",
        "{\"op\":\"ping\"}",
        "{\"id\":-1,\"op\":\"ping\"}",
        "{\"id\":1.5}",
    ] {
        b.send_raw(line);
        let e = b.expect(T, "protocolError", |v| v["event"] == "protocolError");
        assert!(e["message"].is_string(), "{e}");
    }
    b.send_raw(&"x".repeat(200_000));
    let e = b.expect(T, "protocolError", |v| v["event"] == "protocolError");
    assert!(e["message"].as_str().unwrap().contains("longer"), "{e}");
    let bad = [
        json!({"op": "nope"}),
        json!({"op": "__proto__"}),
        json!({"op": "constructor"}),
        json!({"op": 7}),
        json!({"op": "init"}),
        json!({"op": "init", "sdkAppID": -1}),
        json!({"op": "init", "sdkAppID": APP, "proxyServer": "http://x"}),
        json!({"op": "init", "sdkAppID": APP, "logLevel": 9}),
        json!({"op": "login", "userID": "", "userSig": "x"}),
        json!({"op": "login", "userID": "alice", "userSig": 5}),
    ];
    for (i, req) in bad.into_iter().enumerate() {
        let id = 100 + i as u64;
        let r = b.call(id, req.clone());
        assert_eq!(r["err"]["code"], 6017, "{req} → {r}");
    }
    // Valid requests but nothing initialised: 6013, each answered once.
    for (i, op) in ["login", "logout", "getMyProfile"].into_iter().enumerate() {
        let id = 200 + i as u64;
        let r = b.call(
            id,
            json!({"op": op, "userID": "alice", "userSig": "a-ticket-string"}),
        );
        assert_eq!(r["err"]["code"], 6013, "{op} → {r}");
    }
    assert_eq!(b.call(300, json!({"op": "ping"}))["ok"], json!({}));
    // destroy answers, then exits; a request behind it in the same write is refused.
    b.send_raw("{\"id\":301,\"op\":\"destroy\"}\n{\"id\":302,\"op\":\"ping\"}");
    let r = b.answer(301);
    assert_eq!(r["ok"], json!({}), "{r}");
    let r = b.answer(302);
    assert_eq!(r["err"]["code"], 6013, "{r}");
    assert!(b.wait_exit(T).success());
    assert!(
        b.backlog.iter().all(|v| v["id"].is_null()),
        "every request was answered exactly once: {:?}",
        b.backlog
    );
}
