//! The UserSig providers end to end (`[auth]`): a real daemon, a real devserver, real
//! provider processes — a shell script for `command`, an HTTP server on loopback for
//! `url`, a key file for `key_file`. Renewal in place, bounded retries, no loops, and no
//! ticket, key or token in any log line, status or event.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::daemon::{Daemon, Rpc, T};
use support::*;

/// The provider script: counts its calls in `$DIR/calls`, appends every ticket it prints
/// to `$DIR/issued`, and behaves as `$DIR/mode` says — `ok` (a ticket for
/// `$IMLINK_USER_ID` valid `$DIR/lifetime` seconds) or `cycle` (after one good call:
/// exit 1, a timeout, garbage, a ticket for another user, over and over).
const SCRIPT: &str = r#"#!/bin/sh
DIR="$(dirname "$0")"
n=$(( $(cat "$DIR/calls" 2>/dev/null || echo 0) + 1 ))
echo "$n" > "$DIR/calls.tmp" && mv "$DIR/calls.tmp" "$DIR/calls"
mode=$(cat "$DIR/mode")
gen() {
  sig=$("$DIR/imlinkctl" usersig gen --sdk-app-id "$IMLINK_SDK_APP_ID" --key-file "$DIR/key" --user "$1" --expire "$(cat "$DIR/lifetime")") || exit 3
  echo "$sig" >> "$DIR/issued"
  echo "$sig"
}
if [ "$mode" = ok ] || [ "$n" = 1 ]; then gen "$IMLINK_USER_ID"; exit 0; fi
case $(( (n - 2) % 4 )) in
  0) echo "starting up" >&2; echo "provider broke: no route to the vault" >&2; exit 1 ;;
  1) exec sleep 30 ;;
  2) echo "not a ticket at all" ;;
  3) gen mallory ;;
esac
"#;

/// A directory with the provider script, the key it signs with, and its state files.
struct Provider {
    dir: tempfile::TempDir,
}

impl Provider {
    fn new(mode: &str, lifetime: u64) -> Provider {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::write(p.join("key"), format!("{KEY}\n")).unwrap();
        std::fs::write(p.join("mode"), mode).unwrap();
        std::fs::write(p.join("lifetime"), lifetime.to_string()).unwrap();
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_imlinkctl"), p.join("imlinkctl")).unwrap();
        let script = p.join("provider.sh");
        std::fs::write(&script, SCRIPT).unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        Provider { dir }
    }

    fn script(&self) -> PathBuf {
        self.dir.path().join("provider.sh")
    }

    /// How many times it ran.
    fn calls(&self) -> u64 {
        std::fs::read_to_string(self.dir.path().join("calls"))
            .map(|s| s.trim().parse().unwrap())
            .unwrap_or(0)
    }

    /// Every ticket it printed.
    fn issued(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("issued"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The `[auth]` settings that run it.
    fn settings(&self) -> Vec<(&'static str, String)> {
        vec![
            ("auth.provider", "\"command\"".into()),
            (
                "auth.command",
                format!("[{:?}]", self.script().display().to_string()),
            ),
        ]
    }
}

fn start(server: &DevServer, settings: &[(&str, String)]) -> Daemon {
    let s: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Daemon::start(server, &s)
}

/// Subscribes from the first event of this boot.
fn subscribe_all(d: &Daemon) -> Rpc {
    let mut c = d.client();
    c.ok("subscribe", json!({"since": 0}));
    c
}

/// No secret appears in the daemon's log, in any event or in any status taken.
fn assert_no_secret(d: &Daemon, seen: &[Value], secrets: &[String]) {
    let log = d.log();
    let status = d.client().ok("status", json!({})).to_string();
    let events: Vec<String> = seen.iter().map(Value::to_string).collect();
    assert!(!secrets.is_empty());
    for s in secrets {
        assert!(s.len() >= 8, "a secret too short to look for: {s:?}");
        assert!(!log.contains(s.as_str()), "a secret in the log:\n{log}");
        assert!(!status.contains(s.as_str()), "a secret in status: {status}");
        for e in &events {
            assert!(!e.contains(s.as_str()), "a secret in an event: {e}");
        }
    }
}

fn names(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect()
}

#[test]
fn three_renewals_from_a_command_keep_one_continuous_session() {
    let server = DevServer::start(&[]);
    let provider = Provider::new("ok", 6);
    let mut settings = provider.settings();
    settings.push(("sdk.usersig_expiring_lead_secs", "4".into()));
    let d = start(&server, &settings);
    let mut c = subscribe_all(&d);
    c.wait_status(T, "connected", |s| s["connection"] == "connected");
    let first = ticket("alice", 6);
    c.ok("login", json!({"userID": "alice", "userSig": first}));
    let before = server.sessions();
    assert_eq!(before.len(), 1, "{before:?}");
    let connections = server.stats()["connectionsTotal"].clone();

    let mut seen = c.events_until(T, |e| {
        e["event"] == "onLoginStatusChanged" && e["data"]["status"] == 1
    });
    let mut after_login = Vec::new();
    for n in 1..=3 {
        let got = c.events_until(T, |e| e["event"] == "onUserSigRenewed");
        assert!(
            got.iter().all(|e| e["event"] == "onUserSigRenewed"),
            "renewal {n}: {:?}",
            names(&got)
        );
        after_login.extend(got);
    }
    let calls = provider.calls();
    let status = c.ok("status", json!({}));
    assert_eq!(calls, 3, "the provider ran once per renewal");
    assert_eq!(status["auth"]["calls"], 3, "{status}");
    assert_eq!(status["auth"]["renewals"], 3, "{status}");
    assert_eq!(status["auth"]["provider"], "command");
    assert!(status["auth"]["lastError"].is_null(), "{status}");
    assert!(
        status["auth"]["nextRenewAt"].as_i64().unwrap() >= now_unix(),
        "{status}"
    );
    assert_eq!(status["loginStatus"], 1);
    assert_eq!(status["online"], true);
    // The last renewed ticket is the one in use, and its expiry is announced.
    let issued = provider.issued();
    assert_eq!(issued.len(), 3);
    let last = imlink::usersig::decode(&issued[2]).unwrap().expires_at();
    assert_eq!(status["userSigExpiresAt"], last);
    assert_eq!(after_login[2]["data"]["expiresAt"], last);
    // Every event since the login is a renewal: no offline moment, no status change.
    let rest = c.events_so_far();
    assert!(
        rest.iter().all(|e| e["event"] == "onUserSigRenewed"),
        "{:?}",
        names(&rest)
    );
    after_login.extend(rest);
    // The server saw one login and three re-authentications on one connection.
    let alice = server.user_stats("alice");
    assert_eq!(alice["loginAttempts"], 4, "{alice}");
    assert_eq!(alice["logins"], 4, "{alice}");
    assert_eq!(alice["reauthentications"], 3, "{alice}");
    assert_eq!(alice["autoLogins"], 0, "{alice}");
    let after = server.sessions();
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0]["loginID"], before[0]["loginID"]);
    assert_eq!(after[0]["connection"], before[0]["connection"]);
    assert_eq!(after[0]["state"], "online");
    assert_eq!(after[0]["userSigExpireAt"], last);
    assert_eq!(server.stats()["connectionsTotal"], connections);
    // The state file holds the newest ticket, for a restart.
    wait_until(T, "the state file to hold the newest ticket", || {
        d.session_file()
            .is_some_and(|f| f["userSig"] == issued[2].as_str())
    });

    seen.extend(after_login);
    let mut secrets = issued;
    secrets.push(first);
    secrets.push(KEY.to_owned());
    assert_no_secret(&d, &seen, &secrets);
}

#[test]
fn a_failing_provider_is_retried_until_the_ticket_expires_then_left_alone() {
    let server = DevServer::start(&[]);
    let provider = Provider::new("cycle", 600);
    // Call 1 is the good one: spend it before the daemon runs.
    let out = std::process::Command::new(provider.script())
        .env("IMLINK_USER_ID", "warmup")
        .env("IMLINK_SDK_APP_ID", APP.to_string())
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut settings = provider.settings();
    settings.extend([
        ("sdk.usersig_expiring_lead_secs", "6".into()),
        ("auth.timeout_ms", "300".into()),
        ("reconnect.initial_ms", "100".into()),
        ("reconnect.max_ms", "300".into()),
    ]);
    let d = start(&server, &settings);
    let mut c = subscribe_all(&d);
    c.wait_status(T, "connected", |s| s["connection"] == "connected");
    let first = ticket("alice", 8);
    c.ok("login", json!({"userID": "alice", "userSig": first}));
    let seen = c.events_until(Duration::from_secs(20), |e| {
        e["event"] == "onUserSigExpired"
    });
    let failed: Vec<&Value> = seen
        .iter()
        .filter(|e| e["event"] == "onUserSigRenewFailed")
        .collect();
    assert!(failed.len() >= 4, "{:?}", names(&seen));
    // Each kind of failure, with its code and a reason that quotes nothing secret.
    let codes: Vec<i64> = failed
        .iter()
        .map(|e| e["data"]["code"].as_i64().unwrap())
        .collect();
    assert_eq!(&codes[..4], [-32004, -32004, 70003, 70013], "{failed:?}");
    let desc = |i: usize| failed[i]["data"]["desc"].as_str().unwrap();
    assert!(
        desc(0).contains("exited with status 1")
            && desc(0).contains("provider broke: no route to the vault"),
        "{}",
        desc(0)
    );
    assert!(
        !desc(0).contains("starting up"),
        "only the last line of stderr"
    );
    assert!(
        desc(1).contains("did not finish within 300 ms"),
        "{}",
        desc(1)
    );
    assert!(
        desc(2).contains("not a UserSig") && !desc(2).contains("not a ticket at all"),
        "{}",
        desc(2)
    );
    assert!(desc(3).contains("another user"), "{}", desc(3));
    // Each failure before the last announced its retry, within the backoff's bound (the
    // last may announce none, or one the expiry came before).
    for e in &failed[..failed.len() - 1] {
        assert!(e["data"]["retryInMs"].as_u64().unwrap() <= 360, "{e}");
    }
    // No renewal came through, and nothing but the failures happened before the expiry.
    let after_login: Vec<&str> = names(&seen)
        .into_iter()
        .skip_while(|n| *n != "onLoginStatusChanged")
        .skip(2)
        .collect();
    assert!(
        after_login[..after_login.len() - 1]
            .iter()
            .all(|n| *n == "onUserSigRenewFailed"),
        "{after_login:?}"
    );
    let status = c.wait_status(T, "logged out", |s| s["loginStatus"] == 3);
    let calls = status["auth"]["calls"].as_u64().unwrap();
    assert_eq!(
        calls as usize,
        failed.len(),
        "one provider call per failure"
    );
    assert_eq!(provider.calls(), calls + 1, "and the warm-up");
    assert_eq!(status["auth"]["lastError"]["code"], codes[codes.len() - 1]);
    assert!(status["auth"]["nextRenewAt"].is_null());
    // None of the bad tickets reached the server: it saw the one login only.
    let alice = server.user_stats("alice");
    assert_eq!(alice["loginAttempts"], 1, "{alice}");
    // Later: no provider call, no login attempt (heartbeats prove the daemon went on).
    server.wait_heartbeats(3);
    assert_eq!(provider.calls(), calls + 1);
    assert_eq!(server.user_stats("alice")["loginAttempts"], 1);
    assert_eq!(server.user_stats("mallory"), Value::Null);
    let later = c.ok("status", json!({}));
    assert_eq!(later["auth"]["calls"], calls);
    let rest = c.events_so_far();
    assert!(
        rest.iter().all(|e| e["event"] == "onLoginStatusChanged"),
        "{:?}",
        names(&rest)
    );

    let mut secrets = provider.issued();
    secrets.push(first);
    secrets.push(KEY.to_owned());
    let mut all = seen.clone();
    all.extend(rest);
    assert_no_secret(&d, &all, &secrets);
}

#[test]
fn a_provider_and_a_user_id_log_in_at_start_and_a_kick_is_final() {
    let server = DevServer::start(&[]);
    let provider = Provider::new("ok", 6);
    let mut settings = provider.settings();
    settings.extend([
        ("sdk.usersig_expiring_lead_secs", "4".into()),
        ("auth.user_id", "\"alice\"".into()),
    ]);
    let d = start(&server, &settings);
    let mut c = d.client();
    // No RPC but status: logged in.
    let s = c.wait_status(T, "logged in", |s| {
        s["loginStatus"] == 1 && s["online"] == true
    });
    assert_eq!(s["userID"], "alice");
    assert_eq!(s["auth"]["calls"], 1);
    let due = s["auth"]["nextRenewAt"].as_i64().unwrap();
    let mut sub = subscribe_all(&d);
    sub.events_until(T, |e| {
        e["event"] == "onLoginStatusChanged" && e["data"]["status"] == 1
    });
    server.rest("im_open_login_svc/kick", json!({"UserID": "alice"}));
    let (_, before) = sub.wait_event("onKickedOffline", T);
    assert!(before.is_empty(), "{before:?}");
    let s = c.wait_status(T, "logged out", |s| s["loginStatus"] == 3);
    assert!(s["auth"]["nextRenewAt"].is_null(), "{s}");
    // The renewal time passes; the daemon keeps heartbeating; nothing logs in.
    wait_until(Duration::from_secs(20), "the renewal time to pass", || {
        now_unix() > due + 1
    });
    server.wait_heartbeats(2);
    assert_eq!(provider.calls(), 1);
    let s = c.ok("status", json!({}));
    assert_eq!(s["auth"]["calls"], 1);
    assert_eq!(s["loginStatus"], 3);
    let alice = server.user_stats("alice");
    assert_eq!(alice["loginAttempts"], 1, "{alice}");
    let rest = sub.events_so_far();
    assert_eq!(names(&rest), ["onLoginStatusChanged"], "{rest:?}");
    let mut secrets = provider.issued();
    secrets.push(KEY.to_owned());
    assert_no_secret(&d, &rest, &secrets);
}

/// A tiny HTTP/1.1 server on loopback: answers POST /sig with a ticket for the requested
/// user when the bearer token matches `token`, else 401. Counts the requests.
struct TicketServer {
    port: u16,
    requests: Arc<AtomicU64>,
    token: Arc<Mutex<String>>,
    issued: Arc<Mutex<Vec<String>>>,
}

fn read_request(stream: &mut std::net::TcpStream) -> Option<(Vec<String>, Vec<u8>)> {
    let mut rd = BufReader::new(stream.try_clone().ok()?);
    let mut head = Vec::new();
    loop {
        let mut l = String::new();
        if rd.read_line(&mut l).ok()? == 0 {
            return None;
        }
        let l = l.trim_end().to_owned();
        if l.is_empty() {
            break;
        }
        head.push(l);
    }
    let len = head
        .iter()
        .find_map(|h| {
            h.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse::<usize>().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0; len];
    rd.read_exact(&mut body).ok()?;
    Some((head, body))
}

impl TicketServer {
    fn start(token: &str) -> TicketServer {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let requests = Arc::new(AtomicU64::new(0));
        let token = Arc::new(Mutex::new(token.to_owned()));
        let issued = Arc::new(Mutex::new(Vec::new()));
        let (r, t, i) = (requests.clone(), token.clone(), issued.clone());
        std::thread::spawn(move || {
            for stream in l.incoming() {
                let Ok(mut stream) = stream else { continue };
                let Some((head, body)) = read_request(&mut stream) else {
                    continue;
                };
                let n = r.fetch_add(1, Ordering::SeqCst) + 1;
                let want =
                    format!("authorization: bearer {}", t.lock().unwrap()).to_ascii_lowercase();
                let authorised = head.iter().any(|h| h.to_ascii_lowercase() == want);
                let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let (status, reply) =
                    if !authorised || head[0] != "POST /sig HTTP/1.1" || req["sdkAppID"] != APP {
                        ("401 Unauthorized", "{}".to_owned())
                    } else {
                        // Each ticket lives longer than the one before.
                        let sig = ticket(req["userID"].as_str().unwrap(), 3600 + n as i64 * 10);
                        i.lock().unwrap().push(sig.clone());
                        ("200 OK", json!({"userSig": sig}).to_string())
                    };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
                    reply.len()
                );
            }
        });
        TicketServer {
            port,
            requests,
            token,
            issued,
        }
    }
}

fn private_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

#[test]
fn the_url_provider_posts_with_the_bearer_token_and_renews_on_demand() {
    let server = DevServer::start(&[]);
    let token = "tok-3f9a61c2b7d04e58";
    let tickets = TicketServer::start(token);
    let dir = tempfile::tempdir().unwrap();
    let token_file = private_file(dir.path(), "token", &format!("{token}\n"));
    let settings = vec![
        ("auth.provider", "\"url\"".to_owned()),
        (
            "auth.url",
            format!("\"http://127.0.0.1:{}/sig\"", tickets.port),
        ),
        (
            "auth.bearer_token_file",
            format!("{:?}", token_file.display().to_string()),
        ),
        ("auth.user_id", "\"alice\"".to_owned()),
    ];
    let d = start(&server, &settings);
    let mut c = d.client();
    let s = c.wait_status(T, "logged in", |s| {
        s["loginStatus"] == 1 && s["online"] == true
    });
    assert_eq!(s["auth"]["provider"], "url");
    assert_eq!(tickets.requests.load(Ordering::SeqCst), 1);
    let mut sub = subscribe_all(&d);
    // renewUserSig: a new ticket now, in place.
    let r = c.ok("renewUserSig", json!({}));
    let second = tickets.issued.lock().unwrap()[1].clone();
    assert_eq!(
        r["expiresAt"],
        imlink::usersig::decode(&second).unwrap().expires_at()
    );
    let (e, _) = sub.wait_event("onUserSigRenewed", T);
    assert_eq!(e["data"]["expiresAt"], r["expiresAt"]);
    assert_eq!(server.user_stats("alice")["reauthentications"], 1);
    // A token the endpoint no longer accepts (the file is read at every call).
    *tickets.token.lock().unwrap() = "tok-rotated-88d1e0aa".into();
    let (code, msg) = c.call("renewUserSig", json!({})).unwrap_err();
    assert_eq!(code, -32004);
    assert!(msg.contains("HTTP 401"), "{msg}");
    let (e, _) = sub.wait_event("onUserSigRenewFailed", T);
    assert_eq!(e["data"]["code"], -32004);
    std::fs::write(&token_file, "tok-rotated-88d1e0aa").unwrap();
    c.ok("renewUserSig", json!({}));
    assert_eq!(tickets.requests.load(Ordering::SeqCst), 4);
    let s = c.ok("status", json!({}));
    assert_eq!(s["auth"]["calls"], 4);
    assert_eq!(s["auth"]["renewals"], 2);
    assert!(s["auth"]["lastError"].is_null(), "{s}");
    assert_eq!(s["loginStatus"], 1);
    // imlinkctl renew does the same.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_imlinkctl"))
        .args(["--socket", d.socket.to_str().unwrap(), "renew"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("UserSig renewed: expires "));
    let rest = sub.events_so_far();
    let mut secrets = tickets.issued.lock().unwrap().clone();
    secrets.push(token.to_owned());
    secrets.push("tok-rotated-88d1e0aa".to_owned());
    assert_no_secret(&d, &rest, &secrets);
}

#[test]
fn the_key_file_must_be_private_and_then_signs_the_logins() {
    let server = DevServer::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let key = private_file(dir.path(), "app.key", &format!("{KEY}\n"));
    let settings = vec![
        ("auth.provider", "\"key_file\"".to_owned()),
        ("auth.key_file", format!("{:?}", key.display().to_string())),
        ("auth.user_id", "\"alice\"".to_owned()),
    ];
    let mut d = start(&server, &settings);
    let mut c = d.client();
    let s = c.wait_status(T, "logged in", |s| {
        s["loginStatus"] == 1 && s["online"] == true
    });
    assert_eq!(s["auth"]["provider"], "key_file");
    // Signed for a week.
    let exp = s["userSigExpiresAt"].as_i64().unwrap();
    assert!(
        (now_unix() + 604_700..=now_unix() + 604_800).contains(&exp),
        "{s}"
    );
    // A login without a ticket, for another user, is signed too.
    c.ok("login", json!({"userID": "bob"}));
    assert_eq!(c.ok("status", json!({}))["userID"], "bob");
    // 0644: --check-config and a start are refused, naming the mode, never the key.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (st, err) = d.run_second(&["--check-config"]);
    assert!(!st.success());
    assert!(
        err.contains("auth.key_file") && err.contains("0644"),
        "{err}"
    );
    assert!(!err.contains(KEY), "{err}");
    d.stop();
    let (st, err) = d.run_second(&[]);
    assert!(!st.success(), "{err}");
    assert!(err.contains("0644") && !err.contains(KEY), "{err}");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (st, out) = d.run_second(&["--check-config"]);
    assert!(st.success(), "{out}");
    assert!(!out.contains(KEY));
    assert_no_secret_in_log(&d);
}

fn assert_no_secret_in_log(d: &Daemon) {
    let log = d.log();
    assert!(!log.contains(KEY), "the key in the log:\n{log}");
}
