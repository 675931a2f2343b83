//! `imlinkd --check-config` end to end: the real binary, a scrubbed environment.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

/// `imlinkd ARGS` with only the given environment (plus fixed HOME/XDG/systemd
/// directories), run from the repository root.
fn imlinkd(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_imlinkd"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", "/nonexistent/home")
        .env("XDG_RUNTIME_DIR", "/nonexistent/run")
        .env("XDG_STATE_HOME", "/nonexistent/state")
        .env("RUNTIME_DIRECTORY", "/run/imlink-test")
        .env("STATE_DIRECTORY", "/var/lib/imlink-test")
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).unwrap()
}

fn write(dir: &Path, name: &str, body: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p.to_str().unwrap().to_owned()
}

#[test]
fn check_config_with_the_shipped_file_prints_the_defaults_and_exits_0() {
    let out = imlinkd(&["--check-config", "--config", "etc/imlinkd.toml"], &[]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert!(stdout.contains("# file: etc/imlinkd.toml\n"), "{stdout}");
    assert!(
        stdout.contains("url = \"ws://127.0.0.1:8600/v1/connect\"  # default\n"),
        "{stdout}"
    );
    // The systemd directories decide the paths.
    assert!(
        stdout.contains("socket = \"/run/imlink-test/imlinkd.sock\"  # default\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("dir = \"/var/lib/imlink-test\"  # default\n"),
        "{stdout}"
    );
    assert!(stdout.contains("socket_mode = \"0660\""), "{stdout}");
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
}

#[test]
fn an_unknown_key_in_the_file_exits_1_naming_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "bad.toml", "[server]\nurll = \"ws://h/\"\n");
    let out = imlinkd(&["--check-config", "--config", &file], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!("imlinkd: {file}: unknown key server.urll (did you mean server.url?)\n")
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn a_bad_environment_value_exits_1_naming_the_variable() {
    let out = imlinkd(
        &["--check-config", "--config", "etc/imlinkd.toml"],
        &[("IMLINK_SERVER__CONNECT_TIMEOUT_MS", "abc")],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "imlinkd: IMLINK_SERVER__CONNECT_TIMEOUT_MS=abc: server.connect_timeout_ms must be a positive integer\n"
    );
}

#[test]
fn an_unknown_environment_key_exits_1() {
    let out = imlinkd(
        &["--check-config", "--config", "etc/imlinkd.toml"],
        &[("IMLINK_SERVER__NOPE", "1")],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).starts_with("imlinkd: IMLINK_SERVER__NOPE: unknown key server.nope"));
}

#[test]
fn flags_override_the_environment_which_overrides_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "c.toml",
        "[sdk]\napp_id = 1400000001\nlog_level = \"debug\"\n[server]\nurl = \"ws://file:1/v1/connect\"\nrequest_timeout_ms = 1234\n",
    );
    let out = imlinkd(
        &[
            "--check-config",
            "--config",
            &file,
            "--server",
            "wss://flag:2/v1/connect",
            "--sdk-app-id",
            "1400000002",
        ],
        &[
            ("IMLINK_SERVER__URL", "ws://env:3/v1/connect"),
            ("IMLINK_SDK__LOG_LEVEL", "warn"),
        ],
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert!(
        stdout.contains("url = \"wss://flag:2/v1/connect\"  # flag --server\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("app_id = 1400000002  # flag --sdk-app-id\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("log_level = \"warn\"  # environment IMLINK_SDK__LOG_LEVEL\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("request_timeout_ms = 1234  # file {file}\n")),
        "{stdout}"
    );
}

#[test]
fn a_missing_explicit_config_file_exits_1() {
    let out = imlinkd(
        &["--check-config", "--config", "/nonexistent/imlinkd.toml"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).starts_with("imlinkd: /nonexistent/imlinkd.toml: cannot read:"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_bad_flag_value_exits_1_naming_the_flag() {
    let out = imlinkd(
        &[
            "--check-config",
            "--config",
            "etc/imlinkd.toml",
            "--server",
            "http://h/",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "imlinkd: --server http://h/: server.url must be a ws:// or wss:// URL\n"
    );
}

#[test]
fn a_config_error_at_start_exits_1_without_check_config() {
    let out = imlinkd(
        &["--config", "etc/imlinkd.toml"],
        &[("IMLINK_RECONNECT__JITTER", "1.5")],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("IMLINK_RECONNECT__JITTER=1.5: reconnect.jitter must be"));
}

#[test]
fn the_printed_configuration_is_accepted_as_a_configuration_file() {
    let out = imlinkd(
        &[
            "--check-config",
            "--config",
            "etc/imlinkd.toml",
            "--log-level",
            "3",
        ],
        &[("IMLINK_API__ALLOW_UIDS", "0,1000")],
    );
    assert_eq!(out.status.code(), Some(0));
    let dir = tempfile::tempdir().unwrap();
    let printed = text(&out.stdout);
    let file = write(dir.path(), "printed.toml", &printed);
    let again = imlinkd(&["--check-config", "--config", &file], &[]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    let again = text(&again.stdout);
    assert!(again.contains("log_level = \"debug\"  # file"), "{again}");
    assert!(again.contains("allow_uids = [0, 1000]  # file"), "{again}");
}

#[test]
fn version_prints_the_package_version() {
    let out = imlinkd(&["--version"], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout),
        format!("imlinkd {}\n", env!("CARGO_PKG_VERSION"))
    );
}
