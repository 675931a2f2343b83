//! imlinkd under `systemd-socket-activate`: it serves the socket passed in `LISTEN_FDS`
//! (not its own `api.socket`), and leaves that socket in place when it exits, because it
//! belongs to the service manager.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::json;
use std::path::Path;
use support::daemon::{Daemon, Launch};
use support::{ticket, DevServer};

const ACTIVATE: &str = "/usr/bin/systemd-socket-activate";

fn activator() -> String {
    assert!(
        Path::new(ACTIVATE).exists(),
        "{ACTIVATE} is missing: install the systemd package (apt-get install systemd); \
         the socket-activation test needs it"
    );
    ACTIVATE.to_owned()
}

#[test]
fn a_socket_activated_daemon_serves_the_passed_socket() {
    let server = DevServer::start(&[]);
    let outer = tempfile::tempdir().unwrap();
    let passed = outer.path().join("activated.sock");
    let mut d = Daemon::start_with(
        &server,
        &[],
        Launch {
            wrapper: vec![activator(), "-l".into(), passed.display().to_string()],
            socket: Some(passed.clone()),
            ..Launch::default()
        },
    );
    let mut c = d.client();
    c.ok(
        "login",
        json!({"userID": "alice", "userSig": ticket("alice", 3600)}),
    );
    let status = c.ok("status", json!({}));
    assert_eq!(status["userID"], "alice");
    assert_eq!(status["loginStatus"], 1);

    // The daemon did not bind its configured socket: it serves the one it was passed.
    let own = d.config.parent().unwrap().join("imlinkd.sock");
    assert!(!own.exists(), "{} was bound as well", own.display());
    let log = d.log();
    assert!(
        log.contains(&format!("socket activation: serving {}", passed.display())),
        "{log}"
    );

    drop(c);
    let st = d.stop();
    assert!(st.success(), "exit status {st}; log:\n{}", d.log());
    // The passed socket belongs to the service manager: not unlinked on exit.
    assert!(passed.exists(), "the passed socket was unlinked");
}

#[test]
fn without_listen_fds_the_daemon_binds_and_removes_its_own_socket() {
    let server = DevServer::start(&[]);
    let mut d = Daemon::start(&server, &[]);
    assert!(d.socket.exists());
    assert!(d.stop().success());
    assert!(!d.socket.exists(), "its own socket is unlinked on exit");
}
