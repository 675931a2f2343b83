#![allow(clippy::unwrap_used, clippy::expect_used)]
//! End-to-end tests of `imlinkctl usersig`, running the real binary.

use std::process::{Command, Output};

/// Made by the official generator (`tls-sig-api-v2` 1.0.2) for app 1400000001, key `K`,
/// user alice, issued at 1764000000, valid 86400 s; the first golden vector.
const OFFICIAL_ALICE: &str = "eJyrVgrxCdYrSy1SslIy0jNQ0gHzM1NS80oy0zLBwok5mcmpUInilOzEgoLMFCUrQxMDCDCEyJRk5qYqWRmam0HFIaKpFQWZRalKVhYgYagRmelKVkqRxhn*Hqn6blVm*eb*mRXhES6FkSmF7i6uwbkBmQapkb6WvhlOmZGugSYGtkq1AITfMCw_";

fn ctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_imlinkctl"))
        .args(args)
        .env_remove("IMLINK_SOCKET")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// Checks that `ticket` carries what the official ticket carries: the same fields and MAC.
fn assert_same_as_official(ticket: &str) {
    assert_eq!(
        imlink::usersig::decode(ticket).unwrap(),
        imlink::usersig::decode(OFFICIAL_ALICE).unwrap()
    );
}

#[test]
fn gen_prints_the_official_fields_and_mac() {
    let o = ctl(&[
        "usersig",
        "gen",
        "--sdk-app-id",
        "1400000001",
        "--key",
        "K",
        "--user",
        "alice",
        "--expire",
        "86400",
        "--time",
        "1764000000",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o).lines().count(), 1);
    assert!(stdout(&o).ends_with('\n'));
    assert_same_as_official(stdout(&o).trim_end());
    assert!(stderr(&o).is_empty());
}

#[test]
fn gen_refuses_a_lifetime_that_decode_would_refuse() {
    let max = i64::MAX.to_string();
    for (expire, time) in [("-1", "1764000000"), ("1", max.as_str()), ("1", "-5")] {
        let o = ctl(&[
            "usersig",
            "gen",
            "--sdk-app-id",
            "1400000001",
            "--key",
            "K",
            "--user",
            "alice",
            &format!("--expire={expire}"),
            &format!("--time={time}"),
        ]);
        assert_eq!(o.status.code(), Some(1), "{expire} {time}");
        assert!(stdout(&o).is_empty());
        assert!(stderr(&o).starts_with("error 6017: "), "{}", stderr(&o));
    }
}

#[test]
fn verify_at_the_earliest_time_does_not_overflow() {
    let o = ctl(&[
        "usersig",
        "verify",
        "--sdk-app-id",
        "1400000001",
        "--key",
        "K",
        "--user",
        "alice",
        &format!("--time={}", i64::MIN),
        OFFICIAL_ALICE,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        format!("valid (expires at 1764086400, in {} s)\n", i64::MAX)
    );
}

#[test]
fn gen_defaults_to_one_day_and_now() {
    let before = imlink::usersig::now_unix();
    let o = ctl(&[
        "usersig",
        "gen",
        "--sdk-app-id",
        "1400000001",
        "--key",
        "K",
        "--user",
        "alice",
    ]);
    let after = imlink::usersig::now_unix();
    assert_eq!(o.status.code(), Some(0));
    let t = imlink::usersig::decode(stdout(&o).trim()).unwrap();
    assert_eq!(t.expire, 86400);
    assert!(before <= t.time && t.time <= after);
}

#[test]
fn gen_reads_the_key_from_a_file_without_its_trailing_newline() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key");
    std::fs::write(&path, "K\n").unwrap();
    let o = ctl(&[
        "usersig",
        "gen",
        "--sdk-app-id",
        "1400000001",
        "--key-file",
        path.to_str().unwrap(),
        "--user",
        "alice",
        "--time",
        "1764000000",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_same_as_official(stdout(&o).trim());
}

#[test]
fn decode_prints_the_fields_and_the_expiry_as_json() {
    let o = ctl(&["usersig", "decode", OFFICIAL_ALICE]);
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["TLS.ver"], "2.0");
    assert_eq!(v["TLS.identifier"], "alice");
    assert_eq!(v["TLS.sdkappid"], 1400000001u64);
    assert_eq!(v["TLS.time"], 1764000000);
    assert_eq!(v["TLS.expire"], 86400);
    assert_eq!(v["TLS.sig"], "Y3hOHe/Fz6o7OixWXDqYdqGDESmPi0eYM9MhBiYEQ40=");
    assert_eq!(v["expires_at"], 1764086400);
}

#[test]
fn decode_with_json_prints_one_line() {
    let o = ctl(&["--json", "usersig", "decode", OFFICIAL_ALICE]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stdout(&o).lines().count(), 1);
}

#[test]
fn decode_of_garbage_exits_1_with_70003() {
    let o = ctl(&["usersig", "decode", "not-a-ticket"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).is_empty());
    assert!(stderr(&o).starts_with("error 70003: "), "{}", stderr(&o));
    assert_eq!(stderr(&o).lines().count(), 1);
}

#[test]
fn verify_accepts_the_official_ticket_within_its_lifetime() {
    for now in ["1764000000", "1764086400"] {
        let o = ctl(&[
            "usersig",
            "verify",
            "--sdk-app-id",
            "1400000001",
            "--key",
            "K",
            "--user",
            "alice",
            "--time",
            now,
            OFFICIAL_ALICE,
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(stdout(&o).starts_with("valid"), "{}", stdout(&o));
        assert!(stdout(&o).contains("1764086400"));
    }
}

#[test]
fn verify_with_key_file_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key");
    std::fs::write(&path, "K").unwrap();
    let o = ctl(&[
        "usersig",
        "verify",
        "--sdk-app-id",
        "1400000001",
        "--key-file",
        path.to_str().unwrap(),
        "--user",
        "alice",
        "--time",
        "1764000001",
        OFFICIAL_ALICE,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn verify_refuses_with_the_tencent_code_and_a_one_line_reason() {
    let cases: &[(&str, &str, &str, &str, &str)] = &[
        // (app id, key, user, time, expected prefix)
        ("1400000001", "K", "alice", "1764086401", "error 70001: "),
        (
            "1400000001",
            "S3cretKeyValue",
            "alice",
            "1764000000",
            "error 70003: ",
        ),
        ("1400000001", "K", "bob", "1764000000", "error 70013: "),
        ("1400000002", "K", "alice", "1764000000", "error 70014: "),
    ];
    for (app, key, user, time, prefix) in cases {
        let o = ctl(&[
            "usersig",
            "verify",
            "--sdk-app-id",
            app,
            "--key",
            key,
            "--user",
            user,
            "--time",
            time,
            OFFICIAL_ALICE,
        ]);
        assert_eq!(o.status.code(), Some(1), "{prefix}");
        assert!(stdout(&o).is_empty());
        let err = stderr(&o);
        assert!(err.starts_with(prefix), "expected {prefix}, got {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            !err.contains("S3cretKeyValue"),
            "the key must never be printed: {err}"
        );
    }
}

#[test]
fn a_missing_key_file_exits_1_with_a_reason() {
    let o = ctl(&[
        "usersig",
        "gen",
        "--sdk-app-id",
        "1",
        "--key-file",
        "/nonexistent/imlink-key",
        "--user",
        "alice",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with("error 6017: cannot read the key file"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn bad_flags_are_usage_errors_with_exit_2() {
    for args in [
        &["usersig", "gen", "--user", "alice", "--key", "K"][..],
        &["usersig", "gen", "--sdk-app-id", "1", "--user", "alice"][..],
        &[
            "usersig",
            "gen",
            "--sdk-app-id",
            "1",
            "--user",
            "a",
            "--key",
            "K",
            "--key-file",
            "f",
        ][..],
        &[
            "usersig",
            "gen",
            "--sdk-app-id",
            "x",
            "--user",
            "alice",
            "--key",
            "K",
        ][..],
        &[
            "usersig",
            "verify",
            "--sdk-app-id",
            "1",
            "--user",
            "alice",
            "--key",
            "K",
        ][..],
        &["usersig", "frobnicate"][..],
    ] {
        let o = ctl(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(
            stderr(&o).starts_with("error: "),
            "{args:?}: {}",
            stderr(&o)
        );
    }
}

#[test]
fn the_clap_definition_is_consistent() {
    use clap::CommandFactory;
    imlink::ctl::Cli::command().debug_assert();
}
