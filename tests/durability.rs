//! What imlinkd reports as done is on disk, and a graceful stop finishes what was started:
//! a logout whose state cannot be written is not reported as done (and is retried); a
//! SIGTERM answers the requests already read, lets subscribers take what was queued, says
//! goodbye to the server with a close frame, and keeps the session for the restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::json;
use std::io::{BufRead, BufReader, Write};
use support::daemon::{Daemon, T};
use support::*;

#[test]
fn a_logout_that_cannot_be_written_is_an_error_until_the_write_succeeds() {
    let server = DevServer::start(&[]);
    let mut d = Daemon::start(&server, &[]);
    let mut c = d.client();
    c.wait_status(T, "connected", |s| s["connection"] == "connected");
    c.ok(
        "login",
        json!({"userID": "alice", "userSig": ticket("alice", 3600)}),
    );
    // A login is written right after its reply.
    wait_until(T, "the login on disk", || {
        d.session_file().is_some_and(|f| f["loggedIn"] == true)
    });
    // The state file cannot be replaced any more (a directory stands in its way; root
    // ignores permissions, not this).
    let file = d.state_dir().join("session.json");
    std::fs::remove_file(&file).unwrap();
    std::fs::create_dir(&file).unwrap();
    std::fs::write(file.join("blocker"), b"x").unwrap();
    let mut sub = d.client();
    sub.subscribe();
    let (code, message) = c.call("logout", json!({})).unwrap_err();
    assert_eq!(code, -32002, "{message}");
    assert!(
        message.contains("state file could not be written"),
        "{message}"
    );
    assert!(!message.contains(&ticket("alice", 3600)[..20]));
    // What holds now: logged out, not saved.
    let s = c.ok("status", json!({}));
    assert_eq!(
        (s["loginStatus"].as_i64(), s["stateSaved"].as_bool()),
        (Some(3), Some(false)),
        "{s}"
    );
    let (e, _) = sub.wait_event("onLoginStatusChanged", T);
    assert_eq!(
        (e["data"]["status"].as_i64(), e["data"]["reason"].as_str()),
        (Some(3), Some("logout"))
    );
    // The daemon keeps trying; once the way is clear, the file says logged out.
    std::fs::remove_dir_all(&file).unwrap();
    c.wait_status(T, "the state saved again", |s| s["stateSaved"] == true);
    assert_eq!(d.session_file().unwrap()["loggedIn"], false);
    assert!(d
        .session_file()
        .unwrap()
        .get("userSig")
        .is_none_or(|v| v.is_null()));
    // And a restart does not bring the login back.
    d.kill();
    d.start_again();
    let mut c = d.client();
    c.wait_status(T, "connected", |s| s["connection"] == "connected");
    assert_eq!(c.ok("getLoginStatus", json!({}))["status"], 3);
    assert!(!d.log().contains("resuming the saved session"));
}

#[test]
fn sigterm_answers_what_was_asked_closes_with_a_close_frame_and_keeps_the_session() {
    let server = DevServer::start(&[]);
    let mut d = Daemon::start(&server, &[]);
    let mut c = d.client();
    c.wait_status(T, "connected", |s| s["connection"] == "connected");
    c.ok(
        "login",
        json!({"userID": "alice", "userSig": ticket("alice", 3600)}),
    );
    // A subscriber that reads everything, and a request sent just before the signal.
    let mut sub = d.client();
    sub.subscribe();
    let mut late = std::os::unix::net::UnixStream::connect(&d.socket).unwrap();
    late.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":\"last\",\"method\":\"status\"}\n")
        .unwrap();
    let status = d.stop();
    assert!(status.success(), "{status:?}\n{}", d.log());
    late.set_read_timeout(Some(T)).unwrap();
    let mut line = String::new();
    BufReader::new(&late).read_line(&mut line).unwrap();
    assert!(
        line.contains("\"id\":\"last\""),
        "the request read before the stop: {line}"
    );
    // The server saw a clean close (1000), not a dropped connection.
    wait_until(T, "the close in the devserver's log", || {
        server.log().contains("closed by the client (1000)")
    });
    assert!(
        !server.log().contains("protocol error"),
        "a clean close handshake: {}",
        server.log()
    );
    // The session stays for the restart, which resumes it.
    assert_eq!(d.session_file().unwrap()["loggedIn"], true);
    d.start_again();
    let mut c = d.client();
    c.wait_status(T, "logged in again", |s| s["loginStatus"] == 1);
}
