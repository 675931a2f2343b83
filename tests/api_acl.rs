//! Access control by SO_PEERCRED (DESIGN §4, §5): a peer outside `api.allow_*` gets
//! -32001 for every request; a read-only peer may call `status`, `get*`, `subscribe` and
//! `unsubscribe` only. The other peer is uid/gid 65534 through `setpriv`, running socat
//! against a socket of mode 0666 in a directory it can reach. Needs root.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{json, Value};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use support::daemon::{Daemon, T};
use support::*;

const NOBODY: &str = "65534";

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

/// A socket path in a fresh directory that uid 65534 can traverse.
fn open_dir() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let sock = dir.path().join("imlinkd.sock");
    (dir, sock.display().to_string())
}

/// Sends `requests` (one per line) as uid/gid 65534 and returns the replies by id.
fn as_nobody(socket: &str, requests: &[Value]) -> Vec<Value> {
    let mut child = Command::new("setpriv")
        .args(["--reuid", NOBODY, "--regid", NOBODY, "--clear-groups"])
        .args(["socat", "-t", "5", "-", &format!("UNIX-CONNECT:{socket}")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("setpriv and socat");
    {
        let mut stdin = child.stdin.take().unwrap();
        for r in requests {
            writeln!(stdin, "{r}").unwrap();
        }
    }
    // Replies come, then the daemon closes the half-closed connection (no subscription
    // left open by these requests, or socat's -t ends it).
    let deadline = std::time::Instant::now() + T;
    let out = loop {
        if child.try_wait().unwrap().is_some() {
            break child.wait_with_output().unwrap();
        }
        assert!(std::time::Instant::now() < deadline, "socat did not finish");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        !text.is_empty(),
        "no reply; socat said {}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v.get("id").is_some())
        .collect()
}

fn reply<'a>(replies: &'a [Value], id: &str) -> &'a Value {
    replies
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("no reply {id} in {replies:?}"))
}

fn req(id: &str, method: &str, params: Value) -> Value {
    json!({"jsonrpc":"2.0","id":id,"method":method,"params":params})
}

#[test]
fn a_peer_outside_the_allow_lists_gets_access_denied_for_everything() {
    if !is_root() {
        eprintln!("skipped: needs root to run a client as another uid");
        return;
    }
    let server = DevServer::start(&[]);
    let (_dir, sock) = open_dir();
    let d = Daemon::start(
        &server,
        &[
            ("api.socket", &format!("{sock:?}")),
            ("api.socket_mode", "\"0666\""),
            ("api.allow_uids", "[4242]"),
        ],
    );
    let sig = ticket("alice", 3600);
    let replies = as_nobody(
        &sock,
        &[
            req("1", "getLoginStatus", json!({})),
            req("2", "status", json!({})),
            req("3", "login", json!({"userID":"alice","userSig": sig})),
            req("4", "subscribe", json!({})),
        ],
    );
    for id in ["1", "2", "3", "4"] {
        assert_eq!(reply(&replies, id)["error"]["code"], -32001, "{replies:?}");
    }
    // The daemon's own user (root here) is always allowed.
    let mut c = d.client();
    assert_eq!(c.login_status(), 3);
    // Allowed by gid.
    let mut d = d;
    d.set("api.allow_gids", &format!("[{NOBODY}]"));
    d.signal("HUP");
    wait_until(T, "the reload", || {
        d.log().contains("reloading the configuration")
    });
    let replies = as_nobody(&sock, &[req("1", "getVersion", json!({}))]);
    assert!(reply(&replies, "1")["result"]["version"].is_string());
}

#[test]
fn a_read_only_peer_may_read_and_subscribe_but_not_change_anything() {
    if !is_root() {
        eprintln!("skipped: needs root to run a client as another uid");
        return;
    }
    let server = DevServer::start(&[]);
    let (_dir, sock) = open_dir();
    let mut d = Daemon::start(
        &server,
        &[
            ("api.socket", &format!("{sock:?}")),
            ("api.socket_mode", "\"0666\""),
            ("api.readonly_uids", &format!("[{NOBODY}]")),
        ],
    );
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o666);
    d.client()
        .wait_status(T, "connected", |s| s["connection"] == "connected");
    let sig = ticket("alice", 3600);
    let reads = [
        req("status", "status", json!({})),
        req("getLoginStatus", "getLoginStatus", json!({})),
        req("getLoginUser", "getLoginUser", json!({})),
        req("getVersion", "getVersion", json!({})),
        req("getServerTime", "getServerTime", json!({})),
        req("subscribe", "subscribe", json!({})),
        req("unsubscribe", "unsubscribe", json!({"subscription": 1})),
    ];
    let writes = [
        req("login", "login", json!({"userID":"alice","userSig": sig})),
        req("logout", "logout", json!({})),
        req("reconnect", "reconnect", json!({})),
        req("initSDK", "initSDK", json!({"sdkAppID": APP})),
        req("unInitSDK", "unInitSDK", json!({})),
    ];
    let mut all: Vec<Value> = reads.to_vec();
    all.extend(writes.iter().cloned());
    let replies = as_nobody(&sock, &all);
    // Requests run concurrently, so the unsubscribe may precede the subscribe: it must
    // pass the access check (6017 "no such subscription" at worst), not be refused.
    assert_ne!(reply(&replies, "unsubscribe")["error"]["code"], -32001);
    for r in &reads[..reads.len() - 1] {
        let id = r["id"].as_str().unwrap();
        assert!(
            reply(&replies, id).get("result").is_some(),
            "{id}: {}",
            reply(&replies, id)
        );
    }
    for r in &writes {
        let id = r["id"].as_str().unwrap();
        assert_eq!(reply(&replies, id)["error"]["code"], -32001, "{id}");
    }
    // Nothing changed.
    let s = d.client().ok("status", json!({}));
    assert_eq!(
        (s["loginStatus"].as_i64(), s["sdkAppID"].as_u64()),
        (Some(3), Some(APP))
    );
    // getSelfInfo is a read: allowed, and answers 6014 because nobody is logged in.
    let replies = as_nobody(&sock, &[req("g", "getSelfInfo", json!({}))]);
    assert_eq!(reply(&replies, "g")["error"]["code"], 6014);
    // Dropping the read-only list on SIGHUP gives full access (lists apply per request).
    d.set("api.readonly_uids", "[]");
    d.signal("HUP");
    wait_until(T, "the reload", || {
        d.log().contains("reloading the configuration")
    });
    let replies = as_nobody(&sock, &[req("r", "reconnect", json!({}))]);
    assert_eq!(reply(&replies, "r")["result"], json!({}));
}
