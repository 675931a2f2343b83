//! The state directory and `session.json` are hostile input (docs/architecture.md,
//! "Security"): a ticket in a wrong-typed field never reaches the log, a hostile
//! `instanceID` is replaced before it reaches the server, a huge file or a FIFO is set
//! aside without being read, a link planted at the temp file is not followed, and a
//! state directory another user controls is refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{json, Value};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use support::daemon::{Daemon, T};
use support::*;

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

const ID: &str = "0123456789abcdef0123456789abcdef";

/// Waits until `d` has saved its session file (it saves its instance id at start, on its
/// writer thread, after its socket answers), stops it (SIGKILL, as a crash would), lets
/// `prepare` change its state directory, starts it again and waits until it answers.
fn restart_with(d: &mut Daemon, prepare: impl FnOnce(&Path)) {
    wait_until(T, "the session file on disk", || d.session_file().is_some());
    d.kill();
    prepare(&d.state_dir());
    d.start_again();
}

fn write_session(state: &Path, v: &Value) {
    std::fs::write(state.join("session.json"), v.to_string()).unwrap();
}

#[test]
fn a_ticket_in_a_wrong_typed_field_never_reaches_the_log() {
    let server = DevServer::start(&[]);
    let mut d = Daemon::start(&server, &[]);
    let sig = ticket("alice", 3600);
    restart_with(&mut d, |state| {
        write_session(
            state,
            &json!({"instanceID": ID, "sdkAppID": sig, "userID": "alice", "loggedIn": true}),
        )
    });
    assert_eq!(d.client().login_status(), 3, "nothing is resumed");
    let log = d.log();
    assert!(!log.contains(&sig), "the ticket is in the log:\n{log}");
    assert!(
        log.contains("session.json") && log.contains("sdkAppID"),
        "the warning names the file and the field:\n{log}"
    );
    let bad = std::fs::read_to_string(d.state_dir().join("session.json.bad")).unwrap();
    assert!(
        bad.contains(&sig),
        "the invalid file is kept aside as it was"
    );
    // The valid instance id of the set-aside file is kept.
    assert_eq!(d.session_file().unwrap()["instanceID"], ID);
}

#[test]
fn a_hostile_instance_id_is_replaced_before_it_reaches_the_server() {
    let server = DevServer::start(&[]);
    let mut d = Daemon::start(&server, &[]);
    for hostile in ["abc&platform=Web#x".to_owned(), "a".repeat(5000)] {
        let sig = ticket("alice", 3600);
        restart_with(&mut d, |state| {
            write_session(
                state,
                &json!({"instanceID": hostile, "sdkAppID": APP, "userID": "alice",
                        "userSig": sig, "loggedIn": true}),
            )
        });
        // The saved login resumes: the server accepted the connection.
        let mut c = d.client();
        c.wait_status(T, "the resumed login", |s| s["loginStatus"] == 1);
        let sessions = server.sessions();
        let row = sessions
            .iter()
            .find(|r| r["userID"] == "alice" && r["state"] == "online")
            .unwrap_or_else(|| panic!("no online login of alice: {sessions:?}"));
        let used = row["instanceId"].as_str().unwrap();
        assert!(
            used.len() == 32 && used.bytes().all(|b| b.is_ascii_hexdigit()),
            "the server saw instance {used:?}"
        );
        assert_eq!(row["platform"], "Linux", "{row}");
        assert_eq!(d.session_file().unwrap()["instanceID"], used);
        let log = d.log();
        assert!(
            log.contains("instanceID") && !log.contains(&hostile[..18]),
            "the log says it was replaced, without the value:\n{log}"
        );
    }
}

#[test]
fn a_huge_session_file_is_set_aside_unread() {
    let server = DevServer::start(&[]);
    let mut d = Daemon::start(&server, &[]);
    restart_with(&mut d, |state| {
        let f = std::fs::File::create(state.join("session.json")).unwrap();
        f.set_len(500 * 1024 * 1024).unwrap();
    });
    assert_eq!(d.client().login_status(), 3);
    let log = d.log();
    assert!(
        log.contains("524288000 bytes, larger than the limit"),
        "the size is what is wrong:\n{log}"
    );
    let bad = std::fs::metadata(d.state_dir().join("session.json.bad")).unwrap();
    assert_eq!(bad.len(), 500 * 1024 * 1024);
    let fresh = d.session_file().unwrap();
    assert_eq!(fresh["loggedIn"], false);
}

#[test]
fn a_fifo_at_the_session_file_does_not_hang_start_up() {
    let server = DevServer::start(&[]);
    let mut d = Daemon::start(&server, &[]);
    // start_again waits (at most T) for the socket to answer: a start-up blocked on the
    // FIFO fails there.
    restart_with(&mut d, |state| {
        std::fs::remove_file(state.join("session.json")).unwrap();
        let st = Command::new("mkfifo")
            .arg(state.join("session.json"))
            .status()
            .unwrap();
        assert!(st.success());
    });
    assert_eq!(d.client().login_status(), 3);
    let bad = std::fs::symlink_metadata(d.state_dir().join("session.json.bad")).unwrap();
    assert!(bad.file_type().is_fifo());
    assert!(
        d.log().contains("a FIFO, not a regular file"),
        "{}",
        d.log()
    );
}

#[test]
fn a_link_planted_at_the_temp_file_is_not_followed() {
    let server = DevServer::start(&[]);
    let mut d = Daemon::start(&server, &[]);
    let victim = d.dir().join("victim");
    std::fs::write(&victim, b"untouched").unwrap();
    restart_with(&mut d, |state| {
        // A write the kill interrupted may have left a temp file of its own.
        let tmp = state.join(".session.json.tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&victim, tmp).unwrap();
    });
    let sig = ticket("alice", 3600);
    let mut c = d.client();
    c.ok("login", json!({"userID": "alice", "userSig": sig}));
    c.wait_status(T, "the login", |s| s["loginStatus"] == 1);
    wait_until(T, "the session on disk", || {
        d.session_file().is_some_and(|f| f["loggedIn"] == true)
    });
    assert_eq!(std::fs::read(&victim).unwrap(), b"untouched");
    let file = std::fs::symlink_metadata(d.state_dir().join("session.json")).unwrap();
    assert!(file.is_file(), "session.json is a plain file");
    assert_eq!(file.mode() & 0o777, 0o600);
}

#[test]
fn a_state_directory_others_can_write_is_refused() {
    let server = DevServer::start(&[]);
    let d = Daemon::start(&server, &[]);
    let state = d.dir().join("open-state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).unwrap();
    let sock = d.dir().join("second.sock");
    let run = || {
        d.run_second(&[
            "--socket",
            sock.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
        ])
    };
    let (st, err) = run();
    assert_eq!(st.code(), Some(1), "stderr: {err}");
    assert!(
        err.contains(&state.display().to_string()) && err.contains("0777"),
        "{err}"
    );
    assert!(!state.join("session.json").exists());
    if !is_root() {
        eprintln!("skipped: the directory owned by another uid needs root");
        return;
    }
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&state, Some(65534), Some(65534)).unwrap();
    let (st, err) = run();
    assert_eq!(st.code(), Some(1), "stderr: {err}");
    assert!(
        err.contains(&state.display().to_string()) && err.contains("belongs to uid 65534"),
        "{err}"
    );
}
