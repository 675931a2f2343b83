//! Logs fit the journal: with `JOURNAL_STREAM` set (as systemd sets it when stderr is the
//! journal) every line of imlinkd's stderr starts with its syslog priority `<N>` and has
//! neither a timestamp nor colour codes; without it lines are timestamped for a person.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::daemon::{Daemon, Launch};

fn looks_timestamped(line: &str) -> bool {
    // tracing-subscriber's default: 2025-11-25T20:41:00.123456Z
    let b = line.trim_start().as_bytes();
    b.len() > 20 && b[4] == b'-' && b[7] == b'-' && b[10] == b'T' && b[0].is_ascii_digit()
}

#[test]
fn under_journal_stream_every_line_carries_its_priority_and_no_timestamp() {
    // Nothing listens on port 1: the connection fails, which logs at warn level.
    let mut d = Daemon::start_launch(
        "ws://127.0.0.1:1/v1/connect",
        &[],
        false,
        Launch {
            env: vec![("JOURNAL_STREAM".into(), "8:123456".into())],
            ..Launch::default()
        },
    );
    support::wait_until(support::daemon::T, "a failed connect in the log", || {
        d.log().contains("<4>")
    });
    assert!(d.stop().success());
    let log = d.log();
    assert!(!log.is_empty());
    for line in log.lines() {
        let prio = line
            .strip_prefix('<')
            .and_then(|r| r.split_once('>'))
            .map(|(n, _)| n);
        assert!(
            matches!(prio, Some("3" | "4" | "6" | "7")),
            "no priority prefix: {line:?}\n{log}"
        );
        assert!(!line.contains('\u{1b}'), "colour codes: {line:?}");
        let body = &line[3..];
        assert!(!looks_timestamped(body), "a timestamp: {line:?}");
    }
    assert!(log.contains("<6>imlink::daemon: ready"), "{log}");
    assert!(log.contains("<7>"), "debug lines keep <7>: {log}");
}

#[test]
fn outside_systemd_lines_are_timestamped_for_people() {
    let mut d = Daemon::start_url("ws://127.0.0.1:1/v1/connect", &[], false);
    assert!(d.stop().success());
    let log = d.log();
    let first = log.lines().next().unwrap_or_default();
    assert!(looks_timestamped(first), "{first:?}");
    assert!(!first.starts_with('<'), "{first:?}");
    assert!(
        !log.contains('\u{1b}'),
        "colours when stderr is a file: {log}"
    );
}
