//! `make demo DEMO_NONINTERACTIVE=1` walks through login, a server restart with automatic
//! reconnect and silent re-login, a kick by a second device and a ticket expiring, checks
//! the events and the status after each step, and exits 0 only if every step behaved.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

#[test]
fn the_unattended_demo_succeeds() {
    let mut cmd = support::make_command();
    let started = Instant::now();
    let out = cmd
        .args(["-s", "demo", "DEMO_NONINTERACTIVE=1"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run make demo");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "make demo failed:\n{text}");
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
        "onKickedOffline",
        "onUserSigExpiring",
        "onUserSigExpired",
    ] {
        assert!(
            text.contains(&format!("event {event}")),
            "no {event} shown:\n{text}"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(90),
        "the demo took {:?}",
        started.elapsed()
    );
}
