//! The API socket's hygiene (DESIGN §4): a second daemon on a socket that answers refuses
//! to start, a stale socket file is replaced, the socket gets `api.socket_mode`, and it is
//! gone after SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::json;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use support::daemon::Daemon;
use support::*;

#[test]
fn a_second_daemon_on_a_socket_that_answers_exits_1_and_says_why() {
    let server = DevServer::start(&[]);
    let d = Daemon::start(&server, &[]);
    let other_state = d.dir().join("other-state");
    let (st, err) = d.run_second(&["--state-dir", other_state.to_str().unwrap()]);
    assert_eq!(st.code(), Some(1), "stderr: {err}");
    assert!(
        err.contains(&d.socket.display().to_string()) && err.contains("another imlinkd"),
        "the message must name the socket and the reason: {err}"
    );
    // The first one is untouched.
    assert!(d.socket.exists());
    assert_eq!(d.client().ok("getLoginStatus", json!({}))["status"], 3);
}

#[test]
fn a_stale_socket_file_is_replaced() {
    let server = DevServer::start(&[]);
    let mut d = Daemon::start(&server, &[]);
    d.kill();
    // SIGKILL leaves the file behind, and nobody answers on it.
    let meta = std::fs::symlink_metadata(&d.socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert!(std::os::unix::net::UnixStream::connect(&d.socket).is_err());
    d.start_again();
    assert_eq!(d.client().ok("getLoginStatus", json!({}))["status"], 3);
    assert!(d.log().contains("stale"), "the log says so: {}", d.log());
}

#[test]
fn the_socket_has_the_configured_mode_and_is_gone_after_sigterm() {
    let server = DevServer::start(&[]);
    let mut d = Daemon::start(&server, &[]);
    let mode = std::fs::metadata(&d.socket).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o660, "default api.socket_mode");
    assert_eq!(d.stop().code(), Some(0));
    assert!(!d.socket.exists(), "the socket must be unlinked on exit");

    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("sub").join("api.sock");
    let mut d = Daemon::start(
        &server,
        &[
            ("api.socket", &format!("{:?}", sock.display().to_string())),
            ("api.socket_mode", "\"0600\""),
        ],
    );
    assert_eq!(d.socket, sock);
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o600);
    assert_eq!(d.client().ok("getLoginStatus", json!({}))["status"], 3);
    d.signal("INT");
    assert_eq!(d.wait_exit().code(), Some(0));
    assert!(!sock.exists());
}
