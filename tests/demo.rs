//! `make demo DEMO_NONINTERACTIVE=1` walks through login, a server restart with automatic
//! reconnect and silent re-login, a kick by a second device and a ticket expiring, checks
//! the events and the status after each step, and exits 0 only if every step behaved.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A hang guard, not a measure: every step of the script has its own deadline
/// (DEMO_TIMEOUT, 15 s), so only a hang comes anywhere near it.
const GUARD: Duration = Duration::from_secs(600);

#[test]
fn the_unattended_demo_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("demo.out");
    let out_file = std::fs::File::create(&out_path).unwrap();
    let mut cmd = support::make_command();
    let mut child = cmd
        .args(["-s", "demo", "DEMO_NONINTERACTIVE=1"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .stdout(Stdio::from(out_file.try_clone().unwrap()))
        .stderr(Stdio::from(out_file))
        // Its own process group, so that a hung demo can be ended whole.
        .process_group(0)
        .spawn()
        .expect("run make demo");
    let deadline = Instant::now() + GUARD;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            // The script's trap removes its processes and files on TERM.
            let _ = Command::new("kill")
                .args(["-TERM", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            panic!(
                "make demo still running after {GUARD:?}:\n{}",
                std::fs::read_to_string(&out_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = std::fs::read_to_string(&out_path).unwrap();
    assert!(status.success(), "make demo failed:\n{text}");
    for step in [
        "alice is logged in",
        "Reconnected, and alice is online again",
        "Kicked: status 3",
        "Expired: status 3",
        "Every step behaved",
    ] {
        assert!(
            text.contains(step),
            "the demo did not reach {step:?}:\n{text}"
        );
    }
    for event in [
        "onConnectFailed",
        "onConnectSuccess",
        "onRelogin",
        "onKickedOffline",
        "onUserSigExpiring",
        "onUserSigExpired",
    ] {
        assert!(
            text.contains(&format!("event {event}")),
            "no {event} shown:\n{text}"
        );
    }
}
