//! A connection that keeps asking `getLoginStatus` is lent to a thread of its own (an
//! `imlink-lane` thread of the daemon) and comes back to the event loop for anything
//! else: same answers, same order, nothing lost — against a real imlinkd and devserver.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;
use support::daemon::{Daemon, Rpc, T};
use support::*;

/// How many requests in a row make a connection a poller (`api::lane::LEND_AFTER`), and
/// some more.
const POLLS: u64 = 40;

/// The daemon's threads named `imlink-lane`.
fn lanes(d: &Daemon) -> usize {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", d.pid())) else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|c| c.trim_end() == "imlink-lane")
        })
        .count()
}

/// A raw connection: lines in, lines out, byte for byte.
struct Raw {
    w: UnixStream,
    r: BufReader<UnixStream>,
}

impl Raw {
    fn connect(d: &Daemon) -> Raw {
        let s = UnixStream::connect(&d.socket).unwrap();
        s.set_read_timeout(Some(T)).unwrap();
        Raw {
            w: s.try_clone().unwrap(),
            r: BufReader::new(s),
        }
    }

    fn send(&mut self, line: &str) {
        self.w.write_all(format!("{line}\n").as_bytes()).unwrap();
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        let n = self.r.read_line(&mut l).unwrap();
        assert!(n > 0, "the daemon closed the connection");
        l
    }

    /// The daemon closes the connection (within [`T`]): a read finds its end.
    fn expect_end(&mut self) {
        let mut r = String::new();
        assert_eq!(self.r.read_line(&mut r).unwrap(), 0, "closed, not {r:?}");
    }

    fn ask(&mut self, line: &str) -> String {
        self.send(line);
        self.line()
    }

    /// Polls until the connection is lent (a lane thread runs); returns the raw reply to
    /// `{"id":7,"method":"getLoginStatus"}` before, so that answers can be compared.
    fn poll_until_lent(&mut self, d: &Daemon) -> String {
        let before = self.ask(r#"{"jsonrpc":"2.0","id":7,"method":"getLoginStatus"}"#);
        for i in 0..POLLS {
            let r = self.ask(&format!(
                r#"{{"jsonrpc":"2.0","id":{i},"method":"getLoginStatus","params":{{}}}}"#
            ));
            let v: Value = serde_json::from_str(&r).unwrap();
            assert_eq!(v["id"], i, "{r}");
        }
        wait_until(T, "a lane thread", || lanes(d) == 1);
        before
    }
}

fn logged_in(user: &str) -> (DevServer, Daemon) {
    let server = DevServer::start(&[]);
    let (d, mut c) = Daemon::logged_in(&server, &[], user);
    c.wait_status(T, "logged in", |s| s["loginStatus"] == 1);
    (server, d)
}

#[test]
fn a_poller_is_answered_by_a_lane_byte_for_byte_and_in_order() {
    let (_server, d) = logged_in("alice");
    let mut c = Raw::connect(&d);
    let before = c.poll_until_lent(&d);
    // The lane's answer is the loop's, byte for byte.
    let after = c.ask(r#"{"jsonrpc":"2.0","id":7,"method":"getLoginStatus"}"#);
    assert_eq!(after, before);
    assert_eq!(
        before,
        "{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"status\":1}}\n"
    );
    // Every id kind; CRLF; blank lines in between; several lines in one write.
    c.w.write_all(
        b"{\"jsonrpc\":\"2.0\",\"id\":\"s\",\"method\":\"getLoginStatus\",\"params\":[]}\r\n\n  \n\
          {\"jsonrpc\":\"2.0\",\"id\":null,\"method\":\"getLoginStatus\"}\n\
          {\"method\":\"getLoginStatus\",\"id\":-3,\"jsonrpc\":\"2.0\"}\n",
    )
    .unwrap();
    assert_eq!(
        c.line(),
        "{\"jsonrpc\":\"2.0\",\"id\":\"s\",\"result\":{\"status\":1}}\n"
    );
    assert_eq!(
        c.line(),
        "{\"jsonrpc\":\"2.0\",\"id\":null,\"result\":{\"status\":1}}\n"
    );
    assert_eq!(
        c.line(),
        "{\"jsonrpc\":\"2.0\",\"id\":-3,\"result\":{\"status\":1}}\n"
    );
    assert_eq!(lanes(&d), 1, "plain polls stay on the lane");
    // Anything else, in the middle of polls written at once: answered in order, by the
    // loop from the first line that is not a plain poll.
    c.w.write_all(
        b"{\"jsonrpc\":\"2.0\",\"id\":100,\"method\":\"getLoginStatus\"}\n\
          {\"jsonrpc\":\"2.0\",\"id\":101,\"method\":\"getLoginUser\"}\n\
          {\"jsonrpc\":\"2.0\",\"method\":\"getLoginStatus\"}\n\
          {\"jsonrpc\":\"2.0\",\"id\":102,\"method\":\"getLoginStatus\",\"params\":{\"x\":1}}\n\
          {\"jsonrpc\":\"2.0\",\"id\":103,\"method\":\"getLoginStatus\"}\n",
    )
    .unwrap();
    let ids: Vec<Value> = (0..4)
        .map(|_| serde_json::from_str::<Value>(&c.line()).unwrap())
        .collect();
    assert_eq!(
        ids[0],
        json!({"jsonrpc":"2.0","id":100,"result":{"status":1}})
    );
    assert_eq!(
        ids[1],
        json!({"jsonrpc":"2.0","id":101,"result":{"userID":"alice"}})
    );
    // The notification got no reply; params the lane does not take are the loop's to
    // answer, as on any connection.
    let fresh = Raw::connect(&d)
        .ask(r#"{"jsonrpc":"2.0","id":102,"method":"getLoginStatus","params":{"x":1}}"#);
    assert_eq!(ids[2], serde_json::from_str::<Value>(&fresh).unwrap());
    assert_eq!(
        ids[3],
        json!({"jsonrpc":"2.0","id":103,"result":{"status":1}})
    );
    wait_until(T, "the lane to end", || lanes(&d) == 0);
    // Back on the loop, the connection subscribes like any other (`since` 1: the events
    // after the first).
    let s = c.ask(r#"{"jsonrpc":"2.0","id":"sub","method":"subscribe","params":{"since":1}}"#);
    assert!(s.contains("\"subscription\""), "{s}");
    let e: Value = serde_json::from_str(&c.line()).unwrap();
    assert_eq!(e["method"], "event", "{e}");
    assert_eq!(e["params"]["seq"], 2, "{e}");
}

#[test]
fn a_lane_answers_the_status_of_the_moment() {
    let (_server, d) = logged_in("bob");
    let mut c = Raw::connect(&d);
    c.poll_until_lent(&d);
    let mut w = d.client();
    w.subscribe();
    w.ok("logout", json!({}));
    let (e, _) = w.wait_event("onLoginStatusChanged", T);
    let mut e = e;
    while e["data"]["status"] != 3 {
        e = w.wait_event("onLoginStatusChanged", T).0;
    }
    // Told of the logout, a poller on a lane sees it.
    let r = c.ask(r#"{"jsonrpc":"2.0","id":1,"method":"getLoginStatus"}"#);
    assert_eq!(
        r,
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"status\":3}}\n"
    );
    assert_eq!(lanes(&d), 1);
    w.ok(
        "login",
        json!({"userID": "bob", "userSig": ticket("bob", 3600)}),
    );
    let mut e = w.wait_event("onLoginStatusChanged", T).0;
    while e["data"]["status"] != 1 {
        e = w.wait_event("onLoginStatusChanged", T).0;
    }
    let r = c.ask(r#"{"jsonrpc":"2.0","id":2,"method":"getLoginStatus"}"#);
    assert_eq!(
        r,
        "{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"status\":1}}\n"
    );
}

#[test]
fn a_quiet_poller_is_closed_at_the_idle_limit() {
    let server = DevServer::start(&[]);
    let d = Daemon::start(&server, &[("api.idle_timeout_ms", "1500")]);
    let mut c = Raw::connect(&d);
    c.poll_until_lent(&d);
    // Requests on the lane count as activity: polled every 400 ms for 2.4 s, longer than
    // the limit, the connection stays open.
    for i in 0..6 {
        std::thread::sleep(Duration::from_millis(400));
        let r = c.ask(&format!(
            r#"{{"jsonrpc":"2.0","id":{i},"method":"getLoginStatus"}}"#
        ));
        assert_eq!(
            r,
            format!("{{\"jsonrpc\":\"2.0\",\"id\":{i},\"result\":{{\"status\":3}}}}\n")
        );
    }
    assert_eq!(lanes(&d), 1);
    // Nothing sent: the loop's side of the lent connection closes it at the idle limit,
    // as the loop closes any idle connection, and the thread ends.
    c.expect_end();
    assert!(
        d.log()
            .contains("closing an API connection idle for 1500 ms"),
        "{}",
        d.log()
    );
    wait_until(T, "the lane to end", || lanes(&d) == 0);
}

#[test]
fn a_reload_brings_lent_connections_back() {
    let server = DevServer::start(&[]);
    let mut d = Daemon::start(&server, &[]);
    let mut c = Raw::connect(&d);
    c.poll_until_lent(&d);
    d.set("api.max_line_bytes", "4096");
    d.signal("HUP");
    wait_until(T, "the reload", || {
        d.log().contains("reloading the configuration")
    });
    // The next line finds the settings changed: the loop answers it, under the new limit.
    let r = c.ask(r#"{"jsonrpc":"2.0","id":1,"method":"getLoginStatus"}"#);
    assert_eq!(
        r,
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"status\":3}}\n"
    );
    wait_until(T, "the lane to end", || lanes(&d) == 0);
    assert!(d
        .log()
        .contains("goes back to the event loop: the settings changed"));
    let long = format!(
        r#"{{"jsonrpc":"2.0","id":2,"method":"getLoginStatus","params":{{"pad":"{}"}}}}"#,
        "x".repeat(5000)
    );
    let v: Value = serde_json::from_str(&c.ask(&long)).unwrap();
    assert_eq!(v["error"]["code"], -32600, "{v}");
}

#[test]
fn a_poller_that_does_not_read_loses_nothing() {
    let (_server, d) = logged_in("carol");
    let mut c = Raw::connect(&d);
    c.poll_until_lent(&d);
    // Far more requests than the socket holds replies for, written before any is read:
    // the lane fills the socket and hands the rest to the loop's queue.
    const N: u64 = 20_000;
    let mut w = c.w.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let mut all = Vec::new();
        for i in 0..N {
            all.extend_from_slice(
                format!("{{\"jsonrpc\":\"2.0\",\"id\":{i},\"method\":\"getLoginStatus\"}}\n")
                    .as_bytes(),
            );
        }
        w.write_all(&all).unwrap();
    });
    // No reply is read until the lane has found the socket full and given the connection
    // back, with the rest of its replies.
    wait_until(T, "the lane to find the socket full", || {
        d.log()
            .contains("goes back to the event loop: the socket is full")
    });
    for i in 0..N {
        let l = c.line();
        assert_eq!(
            l,
            format!("{{\"jsonrpc\":\"2.0\",\"id\":{i},\"result\":{{\"status\":1}}}}\n")
        );
    }
    writer.join().unwrap();
    // Still served.
    let r = c.ask(r#"{"jsonrpc":"2.0","id":"end","method":"getLoginUser"}"#);
    assert!(r.contains("carol"), "{r}");
}

#[test]
fn a_half_closed_poller_gets_every_answer_then_the_end() {
    let server = DevServer::start(&[]);
    let d = Daemon::start(&server, &[]);
    let mut c = Raw::connect(&d);
    c.poll_until_lent(&d);
    c.w.write_all(
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"getLoginStatus\"}\n\
          {\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"getLoginStatus\"}",
    )
    .unwrap();
    c.w.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(
        c.line(),
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"status\":3}}\n"
    );
    // The last line, without its newline, is answered by the loop at the end of input.
    assert_eq!(
        c.line(),
        "{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"status\":3}}\n"
    );
    c.expect_end();
    wait_until(T, "the lane to end", || lanes(&d) == 0);
}

#[test]
fn stopping_the_daemon_ends_its_lanes() {
    let server = DevServer::start(&[]);
    let mut d = Daemon::start(&server, &[]);
    let mut c = Raw::connect(&d);
    c.poll_until_lent(&d);
    let status = d.stop();
    assert!(status.success(), "{status:?}");
    let mut r = String::new();
    assert_eq!(c.r.read_line(&mut r).unwrap_or(0), 0, "closed, not {r:?}");
}

#[test]
fn many_pollers_share_the_lanes_and_the_loop() {
    let (_server, d) = logged_in("dave");
    // More pollers than lanes (64): all answered, in order, whichever serves them.
    let mut cs: Vec<Raw> = (0..80).map(|_| Raw::connect(&d)).collect();
    for round in 0..POLLS + 5 {
        for c in &mut cs {
            c.send(&format!(
                r#"{{"jsonrpc":"2.0","id":{round},"method":"getLoginStatus"}}"#
            ));
        }
        for c in &mut cs {
            assert_eq!(
                c.line(),
                format!("{{\"jsonrpc\":\"2.0\",\"id\":{round},\"result\":{{\"status\":1}}}}\n")
            );
        }
    }
    // Polling on, the first 64 pollers hold the lanes; the rest are served by the loop.
    let mut round = POLLS + 5;
    wait_until(T, "the lanes to fill", || {
        round += 1;
        for c in &mut cs {
            let l = c.ask(&format!(
                r#"{{"jsonrpc":"2.0","id":{round},"method":"getLoginStatus"}}"#
            ));
            assert!(l.contains("\"status\":1"), "{l}");
        }
        lanes(&d) == 64
    });
    let mut r = Rpc::connect(&d.socket);
    assert_eq!(r.ok("status", json!({}))["loginStatus"], 1);
}

#[test]
fn a_lane_counts_the_line_limit_as_the_loop_does() {
    let server = DevServer::start(&[]);
    let d = Daemon::start(&server, &[("api.max_line_bytes", "1024")]);
    let mut c = Raw::connect(&d);
    c.poll_until_lent(&d);
    // One byte over the limit with its `\r`, 1,024 without: too long for the loop, so for
    // the lane too.
    let req = r#"{"jsonrpc":"2.0","id":1,"method":"getLoginStatus"}"#;
    let line = format!("{req}{}\r\n", " ".repeat(1024 - req.len()));
    c.w.write_all(line.as_bytes()).unwrap();
    let v: Value = serde_json::from_str(&c.line()).unwrap();
    assert_eq!(v["error"]["code"], -32600, "{v}");
    assert_eq!(v["id"], Value::Null, "{v}");
    // At the limit with its `\r`: answered.
    let line = format!("{req}{}\r\n", " ".repeat(1023 - req.len()));
    c.w.write_all(line.as_bytes()).unwrap();
    assert_eq!(
        c.line(),
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"status\":3}}\n"
    );
}
