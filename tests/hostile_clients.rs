//! Hostile socket clients cannot crash imlinkd, change what they must not, or hold it
//! hostage: extreme `since`, duplicated keys, huge ids, control characters, slot
//! squatting by peers without full access, idle connections, subscribers that close in a
//! loop, and a thousand subscribers that never read.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use support::daemon::{Daemon, Rpc, T};
use support::*;

fn raw_exchange(d: &Daemon, line: &str) -> String {
    let mut s = UnixStream::connect(&d.socket).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    s.write_all(line.as_bytes()).unwrap();
    s.write_all(b"\n").unwrap();
    let mut r = BufReader::new(s);
    let mut out = String::new();
    r.read_line(&mut out).unwrap();
    out.trim_end().to_owned()
}

fn logged_in(server: &DevServer) -> (Daemon, Rpc) {
    Daemon::logged_in(server, &[], "alice")
}

#[test]
fn a_subscribe_with_the_largest_since_is_answered_and_the_daemon_lives() {
    let server = DevServer::start(&[]);
    let (d, mut c) = logged_in(&server);
    let r = raw_exchange(
        &d,
        r#"{"jsonrpc":"2.0","id":1,"method":"subscribe","params":{"since":18446744073709551615}}"#,
    );
    let v: Value = serde_json::from_str(&r).unwrap();
    assert!(v["result"]["subscription"].as_u64().is_some(), "{r}");
    for since in [u64::MAX - 1, 1 << 63, 0] {
        let r = raw_exchange(
            &d,
            &json!({"jsonrpc":"2.0","id":2,"method":"subscribe","params":{"since":since}})
                .to_string(),
        );
        assert!(r.contains("\"subscription\""), "{since}: {r}");
    }
    assert_eq!(c.ok("getLoginStatus", json!({}))["status"], 1);
}

#[test]
fn a_request_with_a_key_given_twice_is_invalid_and_changes_nothing() {
    let server = DevServer::start(&[]);
    let (d, mut c) = logged_in(&server);
    let r = raw_exchange(
        &d,
        r#"{"jsonrpc":"2.0","id":1,"method":"getLoginStatus","method":"logout"}"#,
    );
    let v: Value = serde_json::from_str(&r).unwrap();
    assert_eq!(v["error"]["code"], -32600, "{r}");
    assert_eq!(v["id"], 1);
    let r = raw_exchange(
        &d,
        r#"{"jsonrpc":"2.0","id":2,"method":"login","params":{"userID":"alice","userID":"bob","userSig":"x"}}"#,
    );
    let v: Value = serde_json::from_str(&r).unwrap();
    assert_eq!(v["error"]["code"], -32600, "{r}");
    // Still logged in as alice: neither request was executed.
    assert_eq!(c.ok("getLoginUser", json!({}))["userID"], "alice");
    assert_eq!(c.ok("getLoginStatus", json!({}))["status"], 1);
}

#[test]
fn ids_come_back_byte_for_byte() {
    let server = DevServer::start(&[]);
    let d = Daemon::start(&server, &[]);
    for id in [
        "-123456789012345678901234567890",
        "123456789012345678901234567890123456789",
        "1.0000000000000000000000001",
        "1e999",
        r#""\u00e9""#,
        "0",
    ] {
        let r = raw_exchange(
            &d,
            &format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"getLoginStatus"}}"#),
        );
        assert!(
            r.starts_with(&format!(r#"{{"jsonrpc":"2.0","id":{id},"result":"#)),
            "{id}: {r}"
        );
    }
}

#[test]
fn control_characters_in_a_method_name_are_escaped_in_the_error() {
    let server = DevServer::start(&[]);
    let d = Daemon::start(&server, &[]);
    let r = raw_exchange(
        &d,
        r#"{"jsonrpc":"2.0","id":1,"method":"x\nERROR forged\u001b[0m"}"#,
    );
    let v: Value = serde_json::from_str(&r).unwrap();
    let msg = v["error"]["message"].as_str().unwrap();
    assert_eq!(v["error"]["code"], -32601);
    assert!(!msg.contains('\n') && !msg.contains('\u{1b}'), "{msg:?}");
    assert!(msg.contains("\\n"), "{msg:?}");
}

#[test]
fn an_idle_connection_is_closed_and_a_subscribed_one_is_not() {
    let server = DevServer::start(&[]);
    let d = Daemon::start(&server, &[("api.idle_timeout_ms", "1000")]);
    let idle = UnixStream::connect(&d.socket).unwrap();
    let mut sub = d.client();
    sub.subscribe();
    idle.set_read_timeout(Some(T)).unwrap();
    let mut buf = [0u8; 16];
    // End of file: the daemon closed it.
    assert_eq!((&idle).read(&mut buf).unwrap(), 0);
    wait_until(T, "the close in the log", || {
        d.log()
            .contains("closing an API connection idle for 1000 ms")
    });
    // The subscriber outlived it and still gets events.
    let mut c = d.client();
    c.ok(
        "login",
        json!({"userID": "alice", "userSig": ticket("alice", 3600)}),
    );
    let (e, _) = sub.wait_event("onLoginStatusChanged", T);
    assert_eq!(e["data"]["status"], 2);
}

/// Clients that subscribe and close at once, one after another, never fill
/// `api.max_clients`: a peer gone completely frees its slot when its end of file is read,
/// not at the next probe of the connection.
#[test]
fn subscribers_that_close_give_their_slot_back_at_once() {
    let server = DevServer::start(&[]);
    let d = Daemon::start(&server, &[("api.max_clients", "16")]);
    for i in 0..300 {
        let mut s = UnixStream::connect(&d.socket).unwrap();
        s.set_read_timeout(Some(T)).unwrap();
        s.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"subscribe\"}\n")
            .unwrap();
        let mut line = String::new();
        BufReader::new(&s).read_line(&mut line).unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        assert!(
            v["result"]["subscription"].is_u64(),
            "subscriber {i} was refused: {v}"
        );
    }
    // A client that shut down only its writing side still gets its events.
    let mut half = d.client();
    half.subscribe();
    half.shutdown_write();
    let mut c = d.client();
    c.ok(
        "login",
        json!({"userID": "alice", "userSig": ticket("alice", 3600)}),
    );
    let (e, _) = half.wait_event("onLoginStatusChanged", T);
    assert_eq!(e["data"]["status"], 2);
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

/// A connection held open by uid 65534 (python3 under setpriv): it prints `up` once
/// connected, then everything the daemon sends, and ends when its stdin closes.
fn hold_as_nobody(sock: &str) -> (Child, BufReader<std::process::ChildStdout>) {
    let script = r#"
import socket, sys, threading
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
print("up", flush=True)
def rd():
    while True:
        b = s.recv(4096)
        if not b:
            print("eof", flush=True)
            return
        sys.stdout.write(b.decode())
        sys.stdout.flush()
threading.Thread(target=rd, daemon=True).start()
sys.stdin.read()
"#;
    let mut child = Command::new("setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
        .arg(if std::path::Path::new("/usr/bin/python3").exists() {
            "/usr/bin/python3"
        } else {
            "python3"
        })
        .args(["-c", script, sock])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("setpriv and python3");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "up");
    (child, out)
}

#[test]
fn peers_without_full_access_cannot_take_every_slot() {
    if !is_root() {
        eprintln!("skipped: needs root to run clients as another uid");
        return;
    }
    let server = DevServer::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let sock = dir.path().join("imlinkd.sock").display().to_string();
    let d = Daemon::start(
        &server,
        &[
            ("api.socket", &format!("{sock:?}")),
            ("api.socket_mode", "\"0666\""),
            ("api.readonly_uids", "[65534]"),
            ("api.max_clients", "4"),
        ],
    );
    // Three of four slots may go to the read-only peer …
    let mut held: Vec<_> = (0..3).map(|_| hold_as_nobody(&sock)).collect();
    // … and each of them is served.
    for (child, out) in held.iter_mut() {
        writeln!(
            child.stdin.as_mut().unwrap(),
            r#"{{"jsonrpc":"2.0","id":1,"method":"getVersion"}}"#
        )
        .unwrap();
        let _ = out;
    }
    // A fourth read-only connection is refused with one error line, then end of file.
    let mut extra = Vec::new();
    for _ in 0..5 {
        let (child, mut out) = hold_as_nobody(&sock);
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["error"]["code"], -32000, "{line}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("without full access"),
            "{line}"
        );
        extra.push(child);
    }
    // Root still gets the slot kept for full access.
    let mut root = d.client();
    assert_eq!(root.ok("getLoginStatus", json!({}))["status"], 3);
    // Five refusals, one warning line (the rest are counted, not logged).
    let warnings = d.log().matches("refusing an API client").count();
    assert_eq!(warnings, 1, "{}", d.log());
    for (mut c, _) in held.drain(..) {
        let _ = c.kill();
        let _ = c.wait();
    }
    for mut c in extra {
        let _ = c.kill();
        let _ = c.wait();
    }
}

fn vm_rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap()
}

#[test]
fn a_thousand_subscribers_that_never_read_cost_little_and_give_it_back() {
    let server = DevServer::start(&["--faults"]);
    let d = Daemon::start(
        &server,
        &[
            ("events.history", "10000"),
            ("api.subscriber_queue", "10000"),
        ],
    );
    let mut c = d.client();
    c.wait_status(T, "connected", |s| s["connection"] == "connected");
    c.ok(
        "login",
        json!({"userID": "alice", "userSig": ticket("alice", 3600)}),
    );
    // 5,000 events of about 400 bytes in the ring.
    let mut probe = d.client();
    probe.subscribe();
    server.fault("push-burst?user=alice&count=5000");
    wait_until(T, "the burst in the ring", || {
        c.ok("status", json!({}))["lastSeq"].as_u64().unwrap() >= 5000
    });
    drop(probe);
    let before = vm_rss_kib(d.pid());
    // A thousand connections each subscribe with since 0, read the reply line only, and
    // never read again: each would be sent about 2 MB.
    let mut hogs = Vec::new();
    for _ in 0..1000 {
        let mut s = UnixStream::connect(&d.socket).unwrap();
        s.write_all(
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"subscribe\",\"params\":{\"since\":0}}\n",
        )
        .unwrap();
        hogs.push(s);
    }
    for s in &hogs {
        s.set_read_timeout(Some(T)).unwrap();
        let mut r = BufReader::new(s);
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        assert!(line.contains("\"subscription\""), "{line}");
    }
    // A round trip after every replay was started.
    assert_eq!(c.ok("getLoginStatus", json!({}))["status"], 1);
    let loaded = vm_rss_kib(d.pid());
    let per = (loaded.saturating_sub(before)) * 1024 / 1000;
    eprintln!("RSS before {before} KiB, with 1000 stalled subscribers {loaded} KiB ({per} B each)");
    assert!(
        per < 16 * 1024,
        "{per} bytes per stalled subscriber (RSS {before} KiB → {loaded} KiB)"
    );
    // Closed, the memory is the daemon's again: further thousands reuse it, so the RSS
    // levels off instead of growing with every round.
    let mut hogs = Some(hogs);
    let mut rounds = vec![loaded];
    for _ in 0..3 {
        drop(hogs.take());
        let mut again = Vec::new();
        for _ in 0..1000 {
            // A slot frees once the daemon noticed its peer gone (within a couple of
            // seconds).
            let mut got = None;
            wait_until(T, "a slot given back", || {
                let mut s = UnixStream::connect(&d.socket).unwrap();
                s.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"subscribe\",\"params\":{\"since\":0}}\n")
                    .unwrap();
                s.set_read_timeout(Some(T)).unwrap();
                let mut line = String::new();
                BufReader::new(&s).read_line(&mut line).unwrap();
                if line.contains("\"subscription\"") {
                    got = Some(s);
                    true
                } else {
                    assert!(line.contains("-32000"), "{line}");
                    false
                }
            });
            again.push(got.unwrap());
        }
        assert_eq!(c.ok("getLoginStatus", json!({}))["status"], 1);
        rounds.push(vm_rss_kib(d.pid()));
        hogs = Some(again);
    }
    eprintln!("RSS with each thousand: {rounds:?} KiB");
    let cost = loaded - before;
    let (last, prev) = (rounds[3], rounds[2]);
    assert!(
        last < prev + cost / 4 + 512,
        "RSS still grows by the round ({rounds:?} KiB; one thousand costs {cost} KiB): memory is not reused"
    );
    assert!(
        last < loaded + cost + 1024,
        "RSS grew from {loaded} KiB to {last} KiB over three more thousands ({rounds:?})"
    );
    // Other clients were never slowed down.
    assert_eq!(c.ok("getLoginUser", json!({}))["userID"], "alice");
}
