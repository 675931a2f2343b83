//! Every reply and notification shown in README.md and docs/api.md is what the daemon
//! really sends: each example request is sent to a real daemon, and the reply shown in
//! the docs is compared with the real one — the same keys in the same order at every
//! level, the same JSON types, the same `jsonrpc`, `method`, `event` and error `code`.
//! Values that differ from run to run are compared by type; `…` in the docs stands for
//! "anything here" (a string, a value, or — as a key — further members).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::json;
use std::fmt;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use support::daemon::{Daemon, Rpc, T};
use support::*;

const ELLIPSIS: &str = "…";

/// JSON that keeps the order of keys.
#[derive(Debug, Clone, PartialEq)]
enum J {
    Null,
    Bool(bool),
    Num(String),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

impl<'de> Deserialize<'de> for J {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<J, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = J;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("JSON")
            }
            fn visit_unit<E>(self) -> Result<J, E> {
                Ok(J::Null)
            }
            fn visit_bool<E>(self, b: bool) -> Result<J, E> {
                Ok(J::Bool(b))
            }
            fn visit_i64<E>(self, n: i64) -> Result<J, E> {
                Ok(J::Num(n.to_string()))
            }
            fn visit_u64<E>(self, n: u64) -> Result<J, E> {
                Ok(J::Num(n.to_string()))
            }
            fn visit_f64<E>(self, n: f64) -> Result<J, E> {
                Ok(J::Num(n.to_string()))
            }
            fn visit_str<E>(self, s: &str) -> Result<J, E> {
                Ok(J::Str(s.to_owned()))
            }
            fn visit_string<E>(self, s: String) -> Result<J, E> {
                Ok(J::Str(s))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<J, A::Error> {
                let mut v = Vec::new();
                while let Some(x) = a.next_element()? {
                    v.push(x);
                }
                Ok(J::Arr(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<J, A::Error> {
                let mut v = Vec::new();
                while let Some((k, x)) = m.next_entry::<String, J>()? {
                    v.push((k, x));
                }
                Ok(J::Obj(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// Parses a documented example: `{…}`/`[…]` stand for any value, a bare `…` member for
/// further members.
fn example(text: &str) -> J {
    let t = text
        .replace("{…}", "\"…\"")
        .replace("[…]", "\"…\"")
        .replace(",…}", ",\"…\":\"…\"}")
        .replace(", …}", ",\"…\":\"…\"}");
    serde_json::from_str(&t)
        .unwrap_or_else(|e| panic!("the docs' example is not JSON ({e}): {text}"))
}

fn real(text: &str) -> J {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("the daemon sent non-JSON ({e}): {text}"))
}

/// Compares a documented value with a real one; `path` names the place for messages.
fn conforms(doc: &J, got: &J, key: &str, path: &str) -> Result<(), String> {
    let exact = matches!(key, "jsonrpc" | "method" | "event" | "code");
    match (doc, got) {
        (J::Str(s), _) if s == ELLIPSIS => Ok(()),
        (J::Str(s), J::Str(g)) if s.contains(ELLIPSIS) || !exact || s == g => {
            let prefix = s.split(ELLIPSIS).next().unwrap_or("");
            if exact && !g.starts_with(prefix) {
                return Err(format!("{path}: {g:?} does not start like {s:?}"));
            }
            Ok(())
        }
        (J::Num(a), J::Num(b)) if !exact || a == b => Ok(()),
        (J::Null, J::Null) | (J::Bool(_), J::Bool(_)) => Ok(()),
        (J::Arr(a), J::Arr(b)) => {
            let open = a.last() == Some(&J::Str(ELLIPSIS.into()));
            let a = if open { &a[..a.len() - 1] } else { &a[..] };
            if (open && b.len() < a.len()) || (!open && a.len() != b.len()) {
                return Err(format!("{path}: {} items shown, {} sent", a.len(), b.len()));
            }
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                conforms(x, y, key, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        (J::Obj(a), J::Obj(b)) => {
            let open = a.iter().any(|(k, _)| k == ELLIPSIS);
            let shown: Vec<&str> = a
                .iter()
                .map(|(k, _)| k.as_str())
                .filter(|k| *k != ELLIPSIS)
                .collect();
            let sent: Vec<&str> = b.iter().map(|(k, _)| k.as_str()).collect();
            if open {
                let in_order: Vec<&str> =
                    sent.iter().copied().filter(|k| shown.contains(k)).collect();
                if in_order != shown {
                    return Err(format!("{path}: keys {shown:?} shown, {sent:?} sent"));
                }
            } else if shown != sent {
                return Err(format!("{path}: keys {shown:?} shown, {sent:?} sent"));
            }
            for (k, x) in a.iter().filter(|(k, _)| k != ELLIPSIS) {
                let y = &b.iter().find(|(kk, _)| kk == k).unwrap().1;
                conforms(x, y, k, &format!("{path}.{k}"))?;
            }
            Ok(())
        }
        _ => Err(format!("{path}: {doc:?} shown, {got:?} sent")),
    }
}

fn check(doc: &str, got: &str, what: &str) {
    if let Err(e) = conforms(&example(doc), &real(got), "", "") {
        panic!("{what}: the docs show\n  {doc}\nthe daemon sent\n  {got}\n{e}");
    }
}

/// One request line (or several, for printf) and the lines shown after it.
#[derive(Debug)]
struct Shown {
    file: &'static str,
    requests: Vec<String>,
    replies: Vec<String>,
}

/// Quoted arguments of a shell line: `'…'` runs.
fn single_quoted(line: &str) -> Vec<String> {
    line.split('\'')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

fn reply_line(l: &str) -> Option<&str> {
    let l = l.trim_start().trim_start_matches("# ");
    (l.starts_with("{\"") || l.starts_with("[{\""))
        .then_some(l)
        .filter(|l| l.contains("\"jsonrpc\""))
        .filter(|l| l.contains("\"result\"") || l.contains("\"error\""))
}

/// Every example with a shown reply in `text`.
fn examples(file: &'static str, text: &str) -> Vec<Shown> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i].trim_start();
        let requests = if l.starts_with("echo '") && l.contains("socat") {
            single_quoted(l).into_iter().take(1).collect()
        } else if l.starts_with("printf '%s\\n'") {
            single_quoted(l).into_iter().skip(1).collect()
        } else if l.starts_with("printf '{") {
            // A template: `%s` filled with alice and her ticket.
            let t = single_quoted(l).remove(0).replace("\\n", "");
            let sig = ticket("alice", 3600);
            vec![t.replacen("%s", "alice", 1).replacen("%s", &sig, 1)]
        } else if l.starts_with("{\"jsonrpc\":\"2.0\",\"id\":") && l.contains("\"method\"") {
            vec![l.to_owned()]
        } else {
            Vec::new()
        };
        if requests.is_empty() {
            i += 1;
            continue;
        }
        let mut replies = Vec::new();
        let mut j = i + 1;
        while j < lines.len()
            && (lines[j].trim().ends_with('\\') || lines[j].trim_start().starts_with("alice "))
        {
            j += 1;
        }
        while j < lines.len() {
            match reply_line(lines[j]) {
                Some(r) => replies.push(r.to_owned()),
                None => break,
            }
            j += 1;
        }
        if !replies.is_empty() {
            out.push(Shown {
                file,
                requests,
                replies,
            });
        }
        i = j.max(i + 1);
    }
    out
}

/// Sends `requests` on one connection (as `socat` does) and reads as many lines back.
fn exchange(c: &mut UnixStream, requests: &[String], n: usize) -> Vec<String> {
    for r in requests {
        c.write_all(r.as_bytes()).unwrap();
        c.write_all(b"\n").unwrap();
    }
    let mut rd = BufReader::new(c.try_clone().unwrap());
    (0..n)
        .map(|_| {
            let mut l = String::new();
            rd.read_line(&mut l).unwrap();
            l.trim_end().to_owned()
        })
        .collect()
}

fn logged_in(server: &DevServer) -> Daemon {
    Daemon::logged_in(server, &[], "alice").0
}

#[test]
fn every_reply_shown_in_the_docs_is_what_the_daemon_sends() {
    let api = include_str!("../docs/api.md");
    let readme = include_str!("../README.md");
    let mut shown = examples("docs/api.md", api);
    shown.extend(examples("README.md", readme));
    assert!(shown.len() >= 5, "the examples were found: {shown:?}");
    let server = DevServer::start(&[]);
    let d = logged_in(&server);
    for ex in &shown {
        let mut c = UnixStream::connect(&d.socket).unwrap();
        c.set_read_timeout(Some(T)).unwrap();
        // The interactive unsubscribe example uses the id the subscribe returned.
        let mut requests = ex.requests.clone();
        if requests[0].contains("\"method\":\"subscribe\"") && ex.replies.len() == 1 {
            let got = exchange(&mut c, &requests, 1);
            check(&ex.replies[0], &got[0], ex.file);
            continue;
        }
        if requests[0].contains("\"method\":\"unsubscribe\"") {
            let sub = exchange(
                &mut c,
                &[r#"{"jsonrpc":"2.0","id":1,"method":"subscribe"}"#.into()],
                1,
            );
            let id = serde_json::from_str::<serde_json::Value>(&sub[0]).unwrap()["result"]
                ["subscription"]
                .clone();
            requests =
                vec![requests[0].replace("\"subscription\":7", &format!("\"subscription\":{id}"))];
        }
        // A login example shows a fresh login.
        if requests[0].contains("\"method\":\"login\"") {
            d.client().ok("logout", json!({}));
        }
        let got = exchange(&mut c, &requests, ex.replies.len());
        for (doc, real) in ex.replies.iter().zip(&got) {
            check(doc, real, ex.file);
        }
    }
}

/// The JSON blocks of docs/api.md that show a result or a notification.
fn json_blocks(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    for l in text.lines() {
        match (&mut cur, l.trim()) {
            (None, "```json") => cur = Some(String::new()),
            (Some(b), "```") => {
                out.push(b.clone());
                cur = None;
            }
            (Some(b), t) => {
                b.push_str(t);
            }
            _ => {}
        }
    }
    out
}

/// Reads notifications until event `name` arrived; keeps every line in `lines`.
fn read_until(rd: &mut BufReader<UnixStream>, name: &str, lines: &mut Vec<String>) {
    loop {
        let mut l = String::new();
        rd.read_line(&mut l)
            .unwrap_or_else(|e| panic!("{e} waiting for {name}; so far {lines:?}"));
        let l = l.trim_end().to_owned();
        let hit = l.contains(&format!("\"event\":\"{name}\""));
        lines.push(l);
        if hit {
            return;
        }
    }
}

/// One real notification of every event.
fn real_events(server: &DevServer) -> (Daemon, Vec<String>, String) {
    let d = Daemon::start(
        server,
        &[
            ("events.history", "10"),
            ("sdk.usersig_expiring_lead_secs", "5"),
        ],
    );
    let sub = UnixStream::connect(&d.socket).unwrap();
    sub.set_read_timeout(Some(T)).unwrap();
    (&sub)
        .write_all(
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"subscribe\",\"params\":{\"since\":0}}\n",
        )
        .unwrap();
    let mut rd = BufReader::new(sub);
    let mut lines = Vec::new();
    let mut c: Rpc = d.client();
    read_until(&mut rd, "onConnectSuccess", &mut lines);
    // Expiring at once (6 s left, warned 5 s before), then a drop and a silent re-login,
    // a profile update, the expiry, a second login, a kick.
    c.ok(
        "login",
        json!({"userID": "alice", "userSig": ticket("alice", 6)}),
    );
    read_until(&mut rd, "onUserSigExpiring", &mut lines);
    server.fault("drop");
    read_until(&mut rd, "onRelogin", &mut lines);
    server.rest(
        "profile/portrait_set",
        json!({"From_Account":"alice","ProfileItem":[{"Tag":"Tag_Profile_IM_Nick","Value":"Alice"}]}),
    );
    read_until(&mut rd, "onSelfInfoUpdated", &mut lines);
    read_until(&mut rd, "onUserSigExpired", &mut lines);
    c.ok(
        "login",
        json!({"userID": "alice", "userSig": ticket("alice", 3600)}),
    );
    let status = exchange(
        &mut UnixStream::connect(&d.socket).unwrap(),
        &[r#"{"jsonrpc":"2.0","id":1,"method":"status"}"#.into()],
        1,
    )
    .remove(0);
    server.rest("im_open_login_svc/kick", json!({"UserID": "alice"}));
    read_until(&mut rd, "onKickedOffline", &mut lines);
    // A subscription whose `since` is older than the 10 retained events.
    let mut late = UnixStream::connect(&d.socket).unwrap();
    late.set_read_timeout(Some(T)).unwrap();
    let got = exchange(
        &mut late,
        &[r#"{"jsonrpc":"2.0","id":1,"method":"subscribe","params":{"since":0}}"#.into()],
        2,
    );
    lines.extend(got);
    lines.extend(renewal_events(server));
    (d, lines, status)
}

/// `onUserSigRenewFailed` then `onUserSigRenewed`, from a daemon whose provider script
/// fails once, then succeeds.
fn renewal_events(server: &DevServer) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("key"), KEY).unwrap();
    let script = dir.path().join("provider.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nD=\"$(dirname \"$0\")\"\nif [ ! -e \"$D/failed\" ]; then touch \"$D/failed\"; echo 'the vault is sealed' >&2; exit 1; fi\nexec {:?} usersig gen --sdk-app-id \"$IMLINK_SDK_APP_ID\" --key-file \"$D/key\" --user \"$IMLINK_USER_ID\" --expire 600\n",
            env!("CARGO_BIN_EXE_imlinkctl")
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let command = format!("[{:?}]", script.display().to_string());
    let d = Daemon::start(
        server,
        &[
            ("sdk.usersig_expiring_lead_secs", "4"),
            ("auth.provider", "\"command\""),
            ("auth.command", &command),
        ],
    );
    let sub = UnixStream::connect(&d.socket).unwrap();
    sub.set_read_timeout(Some(T)).unwrap();
    (&sub)
        .write_all(
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"subscribe\",\"params\":{\"since\":0}}\n",
        )
        .unwrap();
    let mut rd = BufReader::new(sub);
    let mut lines = Vec::new();
    read_until(&mut rd, "onConnectSuccess", &mut lines);
    d.client().ok(
        "login",
        json!({"userID": "bob", "userSig": ticket("bob", 6)}),
    );
    read_until(&mut rd, "onUserSigRenewFailed", &mut lines);
    read_until(&mut rd, "onUserSigRenewed", &mut lines);
    lines
}

fn event_line<'a>(lines: &'a [String], name: &str) -> &'a str {
    lines
        .iter()
        .find(|l| l.contains(&format!("\"event\":\"{name}\"")))
        .unwrap_or_else(|| panic!("no {name} among {lines:?}"))
}

#[test]
fn every_event_status_and_subscription_shown_in_the_docs_is_what_the_daemon_sends() {
    let api = include_str!("../docs/api.md");
    let server = DevServer::start(&["--faults"]);
    let (d, lines, status_line) = real_events(&server);
    // The result of `status` (logged in), as sent.
    let status_raw = {
        let start = status_line.find("\"result\":").unwrap() + "\"result\":".len();
        status_line[start..status_line.len() - 1].to_owned()
    };
    let blocks = json_blocks(api);
    let mut checked = 0;
    for b in &blocks {
        if b.contains("\"method\":\"event\"") {
            let name = example(b);
            let J::Obj(m) = &name else { panic!() };
            let params = &m.iter().find(|(k, _)| k == "params").unwrap().1;
            let J::Obj(p) = params else { panic!() };
            let J::Str(ev) = &p.iter().find(|(k, _)| k == "event").unwrap().1 else {
                panic!()
            };
            check(b, event_line(&lines, ev), "docs/api.md, event notification");
            checked += 1;
        } else if b.contains("\"subscription\"") && b.contains("\"status\"") {
            let sub = exchange(
                &mut UnixStream::connect(&d.socket).unwrap(),
                &[r#"{"jsonrpc":"2.0","id":1,"method":"subscribe"}"#.into()],
                1,
            );
            let l = &sub[0];
            let start = l.find("\"result\":").unwrap() + "\"result\":".len();
            check(b, &l[start..l.len() - 1], "docs/api.md, subscribe result");
            checked += 1;
        } else if b.contains("\"loginStatus\"") {
            check(b, &status_raw, "docs/api.md, status result");
            checked += 1;
        }
    }
    assert_eq!(
        checked, 3,
        "the status, subscribe and notification blocks were found"
    );
    // The events table: `| `name` | `data` | when |`.
    let mut rows = 0;
    for l in api.lines() {
        let cells: Vec<&str> = l.split('|').map(str::trim).collect();
        if cells.len() < 4 || !cells[1].starts_with("`on") && cells[1] != "`eventsLost`" {
            continue;
        }
        let name = cells[1].trim_matches('`');
        for data in cells[2].split(" or ") {
            let data = data.trim().trim_matches('`');
            if !data.starts_with('{') {
                continue;
            }
            let line = event_line(&lines, name);
            let v = real(line);
            let J::Obj(m) = v else { panic!() };
            let J::Obj(p) = &m.iter().find(|(k, _)| k == "params").unwrap().1 else {
                panic!()
            };
            let real_data = &p.iter().find(|(k, _)| k == "data").unwrap().1;
            // `onRelogin` shows both outcomes; compare the one that happened.
            if name == "onRelogin" {
                let success = data.contains("\"success\":true");
                let happened = matches!(real_data, J::Obj(d) if d.iter().any(|(k, v)| k == "success" && *v == J::Bool(true)));
                if success != happened {
                    continue;
                }
            }
            if let Err(e) = conforms(&example(data), real_data, "", name) {
                panic!("docs/api.md, {name}: shown {data}, sent {line}: {e}");
            }
            rows += 1;
        }
    }
    assert!(rows >= 10, "the event table's rows were found ({rows})");
}
