//! `imlinkctl` against a real daemon (DESIGN §8): every socket command, exit codes 0/1/2,
//! `--json`, `login --sig-stdin`, `events --count N`, and `events` following the daemon
//! across a restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use support::daemon::{Daemon, T};
use support::*;

fn ctl(socket: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_imlinkctl"));
    c.env_remove("IMLINK_SOCKET")
        .arg("--socket")
        .arg(socket)
        .args(args);
    c
}

fn run(socket: &Path, args: &[&str]) -> Output {
    ctl(socket, args).stdin(Stdio::null()).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn connected(d: &Daemon) {
    d.client()
        .wait_status(T, "connected", |s| s["connection"] == "connected");
}

#[test]
fn status_prints_a_readable_summary_or_json() {
    let server = DevServer::start(&[]);
    let d = Daemon::start(&server, &[]);
    connected(&d);
    let o = run(&d.socket, &["status"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    for want in [
        "login:",
        "LOGOUT (3)",
        "connection:  connected",
        &APP.to_string(),
        "bootID",
    ] {
        assert!(out.contains(want), "{want:?} missing in:\n{out}");
    }
    let o = run(&d.socket, &["--json", "status"]);
    assert_eq!(o.status.code(), Some(0));
    let v: Value = serde_json::from_str(text(&o.stdout).trim()).unwrap();
    assert_eq!(v["loginStatus"], 3);
    assert_eq!(v["sdkAppID"], APP);
    // The socket can come from the environment too.
    let o = Command::new(env!("CARGO_BIN_EXE_imlinkctl"))
        .env("IMLINK_SOCKET", &d.socket)
        .args(["--json", "status"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
}

#[test]
fn login_from_each_sig_source_and_logout() {
    let server = DevServer::start(&[]);
    let d = Daemon::start(&server, &[]);
    connected(&d);
    let sig = ticket("alice", 3600);

    let o = run(&d.socket, &["login", "alice", "--sig", &sig]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout).trim(), "logged in as alice");
    let o = run(&d.socket, &["--json", "login", "alice", "--sig", &sig]);
    assert_eq!(text(&o.stdout).trim(), r#"{"repeatLogin":true}"#);
    let o = run(&d.socket, &["logout"]);
    assert_eq!(
        (o.status.code(), text(&o.stdout).trim()),
        (Some(0), "logged out")
    );

    // --sig-stdin (with a trailing newline, as `echo` or a file gives it).
    let mut child = ctl(&d.socket, &["login", "alice", "--sig-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{sig}").unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(d.client().ok("getLoginUser", json!({}))["userID"], "alice");
    run(&d.socket, &["logout"]);

    // --sig-file.
    let f = d.dir().join("alice.sig");
    std::fs::write(&f, format!("{sig}\n")).unwrap();
    let o = run(
        &d.socket,
        &[
            "--json",
            "login",
            "alice",
            "--sig-file",
            f.to_str().unwrap(),
        ],
    );
    assert_eq!((o.status.code(), text(&o.stdout).trim()), (Some(0), "{}"));
    let o = run(&d.socket, &["--json", "logout"]);
    assert_eq!((o.status.code(), text(&o.stdout).trim()), (Some(0), "{}"));

    // No source: the daemon's provider, and this daemon has none (6017, exit 1).
    let o = run(&d.socket, &["login", "alice"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).starts_with("error 6017: ") && text(&o.stderr).contains("auth.provider"),
        "{}",
        text(&o.stderr)
    );
    // Two sources are a usage error (2).
    let o = run(&d.socket, &["login", "alice", "--sig", &sig, "--sig-stdin"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(!text(&o.stdout).contains(&sig) && !text(&o.stderr).contains(&sig));
}

#[test]
fn a_refused_login_exits_1_with_the_code_and_never_prints_the_sig() {
    let server = DevServer::start(&[]);
    let d = Daemon::start(&server, &[]);
    connected(&d);
    let bob_sig = ticket("bob", 3600);
    let o = run(&d.socket, &["login", "alice", "--sig", &bob_sig]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(err.starts_with("error 70013: "), "{err}");
    assert!(!err.contains(&bob_sig) && !text(&o.stdout).contains(&bob_sig));
    let o = run(&d.socket, &["login", "bad id", "--sig", &bob_sig]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).starts_with("error 7003: "));
    // An empty UserSig file.
    let f = d.dir().join("empty.sig");
    std::fs::write(&f, "\n").unwrap();
    let o = run(
        &d.socket,
        &["login", "alice", "--sig-file", f.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).starts_with("error 6017: "),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn call_reconnect_and_errors() {
    let server = DevServer::start(&[]);
    let d = Daemon::start(&server, &[]);
    connected(&d);
    let o = run(&d.socket, &["--json", "call", "getLoginUser"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(text(&o.stdout).trim(), r#"{"userID":""}"#);
    let o = run(&d.socket, &["call", "getVersion", "{}"]);
    assert_eq!(o.status.code(), Some(0));
    let v: Value = serde_json::from_str(&text(&o.stdout)).unwrap();
    assert!(v["version"].is_string());
    let o = run(
        &d.socket,
        &["--json", "call", "subscribe", r#"{"since":0}"#],
    );
    assert_eq!(o.status.code(), Some(0));
    assert!(text(&o.stdout).contains("\"subscription\""));
    // A JSON-RPC error: exit 1, `error <code>: <message>` on stderr.
    let o = run(&d.socket, &["call", "foobar"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).starts_with("error -32601: "),
        "{}",
        text(&o.stderr)
    );
    let o = run(&d.socket, &["call", "initSDK", r#"{"sdkAppID":"x"}"#]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).starts_with("error 6017: "));
    let o = run(&d.socket, &["call", "status", "{not json"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("PARAMS-JSON"));

    let o = run(&d.socket, &["reconnect"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let o = run(&d.socket, &["--json", "reconnect"]);
    assert_eq!(text(&o.stdout).trim(), "{}");
}

#[test]
fn an_unreachable_daemon_is_exit_2_naming_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("nobody-here.sock");
    for args in [
        &["status"][..],
        &["logout"],
        &["reconnect"],
        &["events"],
        &["call", "getVersion"],
        &["login", "alice", "--sig", "x"],
    ] {
        let o = run(&sock, args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(
            text(&o.stderr).contains(&sock.display().to_string()),
            "{args:?}: {}",
            text(&o.stderr)
        );
    }
}

#[test]
fn events_count_prints_n_events_readable_or_json() {
    let server = DevServer::start(&[]);
    let d = Daemon::start(&server, &[]);
    connected(&d);
    let mut c = d.client();
    c.ok(
        "login",
        json!({"userID":"alice","userSig": ticket("alice", 3600)}),
    );
    c.ok("logout", json!({}));
    let o = run(
        &d.socket,
        &["--json", "events", "--since", "0", "--count", "3"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let lines: Vec<Value> = text(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    let seqs: Vec<u64> = lines.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [1, 2, 3]);
    assert_eq!(lines[0]["event"], "onConnecting");
    let o = run(
        &d.socket,
        &[
            "events",
            "--since",
            "0",
            "--filter",
            "onLoginStatusChanged",
            "--count",
            "2",
        ],
    );
    assert_eq!(o.status.code(), Some(0));
    let out = text(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].contains(" onLoginStatusChanged {") && lines[0].contains("\"status\":2"));
    assert!(lines[0].contains("Z #"), "a UTC time and the seq: {out}");
    // A bad filter is the daemon's 6017.
    let o = run(
        &d.socket,
        &["events", "--filter", "onNothing", "--count", "1"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).starts_with("error 6017: "));
}

#[test]
fn events_follows_the_daemon_across_a_restart() {
    let server = DevServer::start(&[]);
    let mut d = Daemon::start(&server, &[]);
    connected(&d);
    // --since 0: nothing is missed however late the process subscribes.
    let mut child = ctl(&d.socket, &["--json", "events", "--since", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel::<Value>();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines() {
            let Ok(l) = l else { break };
            if tx.send(serde_json::from_str(&l).unwrap()).is_err() {
                break;
            }
        }
    });
    let (etx, erx) = mpsc::channel::<String>();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines() {
            let Ok(l) = l else { break };
            let _ = etx.send(l);
        }
    });
    let wait_for = |what: &str, f: &dyn Fn(&Value) -> bool| -> Value {
        let deadline = std::time::Instant::now() + T;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let e = rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("imlinkctl events printed no {what}"));
            if f(&e) {
                return e;
            }
        }
    };
    let mut c = d.client();
    c.ok(
        "login",
        json!({"userID":"alice","userSig": ticket("alice", 3600)}),
    );
    let logined = wait_for("login", &|e| e["data"]["status"] == 1);
    let old_boot = logined["bootID"].as_str().unwrap().to_owned();

    d.stop();
    d.start_again();
    // The restarted daemon restores alice: its events arrive, from seq 1 of the new boot.
    let first = wait_for("event of the new boot", &|e| {
        e["bootID"] != old_boot.as_str()
    });
    assert_eq!(first["seq"], 1, "{first}");
    let restored = wait_for("restored login", &|e| {
        e["event"] == "onLoginStatusChanged" && e["data"]["status"] == 1
    });
    assert_ne!(restored["bootID"], old_boot.as_str());
    // The note on stderr (a pipe of its own, so it may come after the events on stdout).
    let mut notes: Vec<String> = Vec::new();
    let deadline = std::time::Instant::now() + T;
    while !notes
        .iter()
        .any(|l| l.contains("restarted") && l.contains(&old_boot))
    {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match erx.recv_timeout(left) {
            Ok(l) => notes.push(l),
            Err(_) => panic!("no note of the restart; stderr: {notes:?}"),
        }
    }
    // Still following.
    d.client().ok("logout", json!({}));
    wait_for("logout", &|e| e["data"]["status"] == 3);
    child.kill().unwrap();
    child.wait().unwrap();
}
