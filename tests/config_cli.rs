//! `imlinkd --check-config` end to end: the real binary, a scrubbed environment.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

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

/// Like [`imlinkd`], but gives up (killing it, failing the test) after a deadline, and
/// with its address space limited to 4 GiB: for inputs that could make it hang or fill
/// the memory.
fn imlinkd_bounded(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new("sh");
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", "/nonexistent/home")
        .env("RUNTIME_DIRECTORY", "/run/imlink-test")
        .env("STATE_DIRECTORY", "/var/lib/imlink-test")
        .arg("-c")
        .arg("ulimit -v 4194304 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_imlinkd"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("imlinkd {args:?} did not finish within 20 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

fn mkfifo(path: &Path) {
    assert!(Command::new("mkfifo").arg(path).status().unwrap().success());
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
        "imlinkd: IMLINK_SERVER__CONNECT_TIMEOUT_MS=abc: server.connect_timeout_ms must be a positive integer, at most 86400000 (24 h)\n"
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

#[test]
fn a_server_port_out_of_range_is_refused() {
    for (url, problem) in [
        (
            "ws://127.0.0.1:99999/v1/connect",
            "server.url must be a ws:// or wss:// URL with a port from 1 to 65535",
        ),
        (
            "ws://127.0.0.1:0/v1/connect",
            "server.url must be a ws:// or wss:// URL with a port from 1 to 65535",
        ),
    ] {
        let out = imlinkd(
            &[
                "--check-config",
                "--config",
                "etc/imlinkd.toml",
                "--server",
                url,
            ],
            &[],
        );
        assert_eq!(out.status.code(), Some(1), "{url}");
        assert_eq!(
            text(&out.stderr),
            format!("imlinkd: --server {url}: {problem}\n")
        );
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn a_password_in_the_server_url_is_refused_and_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "c.toml",
        "[server]\nurl = \"wss://alice:file-s3cret@im.example.net/v1/connect\"\n",
    );
    let out = imlinkd(&["--check-config", "--config", &file], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!("imlinkd: {file}: server.url = \"wss://***@im.example.net/v1/connect\": server.url must not contain a user name or password\n")
    );
    let out = imlinkd(
        &["--config", "etc/imlinkd.toml"],
        &[(
            "IMLINK_SERVER__URL",
            "ws://bob:env-s3cret@127.0.0.1:8600/v1/connect",
        )],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert_eq!(
        stderr,
        "imlinkd: IMLINK_SERVER__URL=ws://***@127.0.0.1:8600/v1/connect: server.url must not contain a user name or password\n"
    );
    for secret in ["s3cret", "alice", "bob"] {
        assert!(
            !stderr.contains(secret) && out.stdout.is_empty(),
            "{stderr}"
        );
    }
}

#[test]
fn values_out_of_range_are_refused() {
    for (var, value, problem) in [
        (
            "IMLINK_RECONNECT__MULTIPLIER",
            "1e308",
            "reconnect.multiplier must be a number from 1 to 10",
        ),
        (
            "IMLINK_API__MAX_LINE_BYTES",
            "1",
            "api.max_line_bytes must be an integer from 1024 to 67108864 (a request must fit; 64 MiB)",
        ),
        (
            "IMLINK_RECONNECT__MAX_MS",
            "86400000",
            "reconnect.max_ms must be a positive integer, at most 3600000 (1 h)",
        ),
        (
            "IMLINK_API__SOCKET_MODE",
            "4755",
            "api.socket_mode must be a file mode from 0 to 0777, written as a string of octal digits (\"0660\") or an octal integer (0o660)",
        ),
    ] {
        let out = imlinkd(
            &["--check-config", "--config", "etc/imlinkd.toml"],
            &[(var, value)],
        );
        assert_eq!(out.status.code(), Some(1), "{var}");
        assert_eq!(
            text(&out.stderr),
            format!("imlinkd: {var}={value}: {problem}\n")
        );
    }
}

#[test]
fn a_ca_file_that_is_not_a_readable_regular_file_is_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("ca-fifo");
    mkfifo(&fifo);
    let problem = "server.ca_file must be a readable regular file of PEM CA certificates, at most 1048576 bytes";
    for (path, why) in [
        (
            "/nonexistent/ca.pem",
            "No such file or directory (os error 2)",
        ),
        (fifo.to_str().unwrap(), "not a regular file but a FIFO"),
        ("/dev/zero", "not a regular file but a character device"),
        ("etc/imlinkd.toml", "it holds no certificate"),
    ] {
        let out = imlinkd_bounded(
            &["--check-config", "--config", "etc/imlinkd.toml"],
            &[("IMLINK_SERVER__CA_FILE", path)],
        );
        assert_eq!(out.status.code(), Some(1), "{path}");
        assert_eq!(
            text(&out.stderr),
            format!("imlinkd: IMLINK_SERVER__CA_FILE={path}: {problem}: {why}\n")
        );
    }
}

#[test]
fn a_config_file_that_is_a_device_a_fifo_or_too_large_is_refused_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("imlinkd.toml");
    mkfifo(&fifo);
    let big = write(
        dir.path(),
        "big.toml",
        &format!("# {}\n", "x".repeat(1 << 20)),
    );
    let fifo = fifo.to_str().unwrap();
    for (path, why) in [
        ("/dev/zero", "not a regular file but a character device"),
        (fifo, "not a regular file but a FIFO"),
        (big.as_str(), "larger than 1048576 bytes"),
    ] {
        let out = imlinkd_bounded(&["--check-config", "--config", path], &[]);
        assert_eq!(out.status.code(), Some(1), "{path}: {}", text(&out.stderr));
        assert_eq!(
            text(&out.stderr),
            format!("imlinkd: {path}: cannot read: {why}\n")
        );
    }
    // A symbolic link to a regular file is fine.
    let link = dir.path().join("link.toml");
    std::os::unix::fs::symlink(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/imlinkd.toml"),
        &link,
    )
    .unwrap();
    let out = imlinkd(&["--check-config", "--config", link.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

/// `--check-config` shows every key once, with its value and origin, and nothing else.
#[test]
fn check_config_renders_every_key_with_its_origin() {
    let out = imlinkd(
        &[
            "--check-config",
            "--config",
            "etc/imlinkd.toml",
            "--state-dir",
            "/st",
        ],
        &[("IMLINK_SDK__APP_ID", "")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let settings: Vec<&str> = stdout
        .lines()
        .filter(|l| {
            !l.is_empty()
                && !l.starts_with('[')
                && !l.starts_with("# Effective")
                && !l.starts_with("# file:")
        })
        .collect();
    assert_eq!(settings.len(), 42, "{stdout}");
    for line in &settings {
        let origin = line.rsplit_once("  # ").map(|(_, o)| o).unwrap_or("");
        assert!(
            origin == "default"
                || origin == "flag --state-dir"
                || origin == "environment IMLINK_SDK__APP_ID",
            "{line}"
        );
    }
    assert!(stdout.contains("\n# app_id is unset  # environment IMLINK_SDK__APP_ID\n"));
    assert!(stdout.contains("\ndir = \"/st\"  # flag --state-dir\n"));
    assert!(stdout.contains("\nmultiplier = 1.6  # default\n"));
    assert!(stdout.contains("\nallow_uids = []  # default\n"));
}
