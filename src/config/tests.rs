use super::*;
use crate::codes::LogLevel;
use crate::proto::ws::Platform;
use std::io::Write;

/// A non-root user's environment with nothing of imlink in it.
fn user_env(extra: &[(&str, &str)]) -> Env {
    let mut vars = vec![
        ("HOME", "/home/u"),
        ("XDG_RUNTIME_DIR", "/run/user/1000"),
        ("XDG_STATE_HOME", "/home/u/.state"),
    ];
    vars.extend_from_slice(extra);
    Env::new(vars, 1000)
}

fn toml_file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

/// A PEM file with one self-signed certificate, for `server.ca_file`.
fn ca_pem() -> tempfile::NamedTempFile {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let mut f = tempfile::Builder::new().suffix(".pem").tempfile().unwrap();
    f.write_all(cert.pem().as_bytes()).unwrap();
    f
}

/// A private file holding one line (`auth.key_file`, `auth.bearer_token_file`).
fn secret(text: &str) -> tempfile::NamedTempFile {
    let f = toml_file(text);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(0o600)).unwrap();
    f
}

fn path_str(f: &tempfile::NamedTempFile) -> &str {
    f.path().to_str().unwrap()
}

fn with_file(f: &tempfile::NamedTempFile) -> Overrides {
    Overrides {
        config: Some(f.path().to_path_buf()),
        ..Overrides::default()
    }
}

fn load_err(o: &Overrides, env: &Env) -> String {
    load_with_default_path(o, env, Path::new("/nonexistent/imlinkd.toml"))
        .unwrap_err()
        .to_string()
}

fn load_ok(o: &Overrides, env: &Env) -> Loaded {
    load_with_default_path(o, env, Path::new("/nonexistent/imlinkd.toml")).unwrap()
}

#[test]
fn nothing_configured_gives_the_design_defaults() {
    let l = load_ok(&Overrides::default(), &user_env(&[]));
    let mut expected = Config::default();
    expected.api.socket = "/run/user/1000/imlink/imlinkd.sock".into();
    expected.state.dir = "/home/u/.state/imlink".into();
    assert_eq!(l.config, expected);
    assert_eq!(l.config.server.url, "ws://127.0.0.1:8600/v1/connect");
    assert_eq!(l.config.api.socket_mode, 0o660);
    assert_eq!(l.file, None);
    assert!(l.origins.values().all(|o| *o == Origin::Default));
    assert_eq!(l.origins.len(), keys().count());
    assert_eq!(keys().count(), 42);
}

#[test]
fn default_paths_follow_systemd_then_root_then_xdg() {
    let systemd = Env::new(
        [
            ("RUNTIME_DIRECTORY", "/run/imlink:/run/other"),
            ("STATE_DIRECTORY", "/var/lib/x"),
        ],
        0,
    );
    assert_eq!(
        default_socket_path_in(&systemd),
        PathBuf::from("/run/imlink/imlinkd.sock")
    );
    assert_eq!(default_state_dir_in(&systemd), PathBuf::from("/var/lib/x"));
    let root = Env::new([("XDG_RUNTIME_DIR", "/run/user/0")], 0);
    assert_eq!(
        default_socket_path_in(&root),
        PathBuf::from("/run/imlink/imlinkd.sock")
    );
    assert_eq!(
        default_state_dir_in(&root),
        PathBuf::from("/var/lib/imlink")
    );
    let user = user_env(&[]);
    assert_eq!(
        default_socket_path_in(&user),
        PathBuf::from("/run/user/1000/imlink/imlinkd.sock")
    );
    assert_eq!(
        default_state_dir_in(&user),
        PathBuf::from("/home/u/.state/imlink")
    );
    let bare = Env::new([("HOME", "/h")], 42);
    assert_eq!(
        default_socket_path_in(&bare),
        PathBuf::from("/tmp/imlink-42/imlinkd.sock")
    );
    assert_eq!(
        default_state_dir_in(&bare),
        PathBuf::from("/h/.local/state/imlink")
    );
}

#[test]
fn precedence_is_defaults_then_file_then_env_then_flags() {
    let f = toml_file(
        "[server]\nurl = \"ws://file:1/v1/connect\"\nconnect_timeout_ms = 111\nrequest_timeout_ms = 222\n\
         [sdk]\nlog_level = \"warn\"\n",
    );
    let env = user_env(&[
        ("IMLINK_SERVER__URL", "ws://env:2/v1/connect"),
        ("IMLINK_SERVER__CONNECT_TIMEOUT_MS", "333"),
    ]);
    let o = Overrides {
        server: Some("wss://flag:3/v1/connect".into()),
        ..with_file(&f)
    };
    let l = load_ok(&o, &env);
    assert_eq!(l.config.server.url, "wss://flag:3/v1/connect");
    assert_eq!(l.origin("server.url"), &Origin::Flag("--server"));
    assert_eq!(l.config.server.connect_timeout_ms, 333);
    assert_eq!(
        l.origin("server.connect_timeout_ms"),
        &Origin::Env("IMLINK_SERVER__CONNECT_TIMEOUT_MS".into())
    );
    assert_eq!(l.config.server.request_timeout_ms, 222);
    assert_eq!(
        l.origin("server.request_timeout_ms"),
        &Origin::File(f.path().to_path_buf())
    );
    assert_eq!(l.config.sdk.log_level, LogLevel::Warn);
    assert_eq!(l.config.server.login_timeout_ms, 30_000);
    assert_eq!(l.origin("server.login_timeout_ms"), &Origin::Default);

    // Without the flag the environment wins; without the environment, the file.
    let l = load_ok(&with_file(&f), &env);
    assert_eq!(l.config.server.url, "ws://env:2/v1/connect");
    let l = load_ok(&with_file(&f), &user_env(&[]));
    assert_eq!(l.config.server.url, "ws://file:1/v1/connect");
}

#[test]
fn every_flag_overrides_its_key() {
    let f = toml_file(
        "[sdk]\napp_id = 1\nlog_level = 3\n[api]\nsocket = \"/f.sock\"\n[state]\ndir = \"/f\"\n",
    );
    let env = user_env(&[("IMLINK_SDK__APP_ID", "2"), ("IMLINK_STATE__DIR", "/e")]);
    let o = Overrides {
        sdk_app_id: Some(1400000001),
        log_level: Some(LogLevel::Error),
        server: Some("ws://x:1/".into()),
        socket: Some("/flag.sock".into()),
        state_dir: Some("/flag-state".into()),
        ..with_file(&f)
    };
    let c = load_ok(&o, &env).config;
    assert_eq!(c.sdk.app_id, Some(1400000001));
    assert_eq!(c.sdk.log_level, LogLevel::Error);
    assert_eq!(c.server.url, "ws://x:1/");
    assert_eq!(c.api.socket, PathBuf::from("/flag.sock"));
    assert_eq!(c.state.dir, PathBuf::from("/flag-state"));
}

#[test]
fn env_sets_every_kind_of_value() {
    let ca = ca_pem();
    let env = user_env(&[
        ("IMLINK_SDK__APP_ID", "1400000000"),
        ("IMLINK_SDK__LOG_LEVEL", "V2TIM_LOG_DEBUG"),
        ("IMLINK_SDK__PLATFORM", "ipad"),
        ("IMLINK_SERVER__CA_FILE", path_str(&ca)),
        ("IMLINK_RECONNECT__MULTIPLIER", "2"),
        ("IMLINK_RECONNECT__JITTER", "0"),
        ("IMLINK_API__ALLOW_UIDS", "0, 1000,1001"),
        ("IMLINK_API__READONLY_GIDS", ""),
        ("IMLINK_API__SOCKET_MODE", "600"),
        ("IMLINK_STATE__RESTORE_SESSION", "false"),
        // imlinkctl's variable is not a configuration key and must not be refused.
        ("IMLINK_SOCKET", "/elsewhere.sock"),
    ]);
    let c = load_ok(&Overrides::default(), &env).config;
    assert_eq!(c.sdk.app_id, Some(1400000000));
    assert_eq!(c.sdk.log_level, LogLevel::Debug);
    assert_eq!(c.sdk.platform, Platform::IPad);
    assert_eq!(c.server.ca_file.as_deref(), Some(ca.path()));
    assert_eq!(c.reconnect.multiplier, 2.0);
    assert_eq!(c.reconnect.jitter, 0.0);
    assert_eq!(c.api.allow_uids, vec![0, 1000, 1001]);
    assert_eq!(c.api.readonly_gids, Vec::<u32>::new());
    assert_eq!(c.api.socket_mode, 0o600);
    assert!(!c.state.restore_session);
    assert_eq!(
        c.api.socket,
        PathBuf::from("/run/user/1000/imlink/imlinkd.sock")
    );
}

#[test]
fn an_empty_env_value_unsets_an_optional_key_from_the_file() {
    let ca = ca_pem();
    let f = toml_file(&format!(
        "[sdk]\napp_id = 7\n[server]\nca_file = {:?}\n",
        path_str(&ca)
    ));
    let env = user_env(&[("IMLINK_SDK__APP_ID", ""), ("IMLINK_SERVER__CA_FILE", "")]);
    let c = load_ok(&with_file(&f), &env).config;
    assert_eq!(c.sdk.app_id, None);
    assert_eq!(c.server.ca_file, None);
    assert_eq!(
        load_ok(&with_file(&f), &user_env(&[])).config.sdk.app_id,
        Some(7)
    );
}

#[test]
fn unknown_key_in_the_file_names_key_and_file() {
    let f = toml_file("[server]\nurll = \"ws://x/\"\n");
    let e = load_err(&with_file(&f), &user_env(&[]));
    assert_eq!(
        e,
        format!(
            "{}: unknown key server.urll (did you mean server.url?)",
            f.path().display()
        )
    );
}

#[test]
fn unknown_section_and_top_level_key_in_the_file_are_refused() {
    let f = toml_file("[servers]\nurl = \"ws://x/\"\n");
    let e = load_err(&with_file(&f), &user_env(&[]));
    assert_eq!(
        e,
        format!(
            "{}: unknown key servers.url (did you mean server.url?)",
            f.path().display()
        )
    );
    let f = toml_file("[nothing_like_it]\n");
    let e = load_err(&with_file(&f), &user_env(&[]));
    assert_eq!(
        e,
        format!("{}: unknown key nothing_like_it", f.path().display())
    );
    let f = toml_file("log_level = \"info\"\n");
    let e = load_err(&with_file(&f), &user_env(&[]));
    assert_eq!(
        e,
        format!(
            "{}: unknown key log_level (did you mean sdk.log_level?)",
            f.path().display()
        )
    );
    // A known section written as a value.
    let f = toml_file("server = 5\n");
    let e = load_err(&with_file(&f), &user_env(&[]));
    assert_eq!(
        e,
        format!(
            "{}: server = 5: server must be a section, [server]",
            f.path().display()
        )
    );
    // A table inside a section is an unknown key too.
    let f = toml_file("[server.tls]\nverify = true\n");
    let e = load_err(&with_file(&f), &user_env(&[]));
    assert_eq!(e, format!("{}: unknown key server.tls", f.path().display()));
}

#[test]
fn unknown_key_in_the_environment_names_the_variable() {
    let e = load_err(
        &Overrides::default(),
        &user_env(&[("IMLINK_SERVER__NOPE", "1")]),
    );
    assert_eq!(e, "IMLINK_SERVER__NOPE: unknown key server.nope");
    let e = load_err(
        &Overrides::default(),
        &user_env(&[("IMLINK_NOPE__URL", "1")]),
    );
    assert!(
        e.starts_with("IMLINK_NOPE__URL: unknown key nope.url"),
        "{e}"
    );
    let e = load_err(
        &Overrides::default(),
        &user_env(&[("IMLINK_SERVER__URLL", "ws://h/")]),
    );
    assert_eq!(
        e,
        "IMLINK_SERVER__URLL: unknown key server.urll (did you mean server.url?)"
    );
}

#[test]
fn bad_env_value_names_variable_value_and_key() {
    let e = load_err(
        &Overrides::default(),
        &user_env(&[("IMLINK_SERVER__CONNECT_TIMEOUT_MS", "abc")]),
    );
    assert_eq!(
        e,
        "IMLINK_SERVER__CONNECT_TIMEOUT_MS=abc: server.connect_timeout_ms must be a positive integer, at most 86400000 (24 h)"
    );
    let e = load_err(
        &Overrides::default(),
        &user_env(&[("IMLINK_SDK__USERSIG_EXPIRING_LEAD_SECS", "-1")]),
    );
    assert_eq!(
        e,
        "IMLINK_SDK__USERSIG_EXPIRING_LEAD_SECS=-1: sdk.usersig_expiring_lead_secs must be a non-negative integer, at most 31536000 (365 days)"
    );
}

#[test]
fn bad_file_value_names_file_key_and_value() {
    let f = toml_file("[server]\nconnect_timeout_ms = \"abc\"\n");
    let e = load_err(&with_file(&f), &user_env(&[]));
    assert_eq!(
        e,
        format!(
            "{}: server.connect_timeout_ms = \"abc\": server.connect_timeout_ms must be a positive integer, at most 86400000 (24 h)",
            f.path().display()
        )
    );
}

#[test]
fn bad_flag_value_names_the_flag() {
    let o = Overrides {
        server: Some("http://x/".into()),
        ..Overrides::default()
    };
    assert_eq!(
        load_err(&o, &user_env(&[])),
        "--server http://x/: server.url must be a ws:// or wss:// URL"
    );
    let o = Overrides {
        sdk_app_id: Some(0),
        ..Overrides::default()
    };
    assert_eq!(
        load_err(&o, &user_env(&[])),
        "--sdk-app-id 0: sdk.app_id must be a positive integer (the SDKAppID), at most 4294967295"
    );
    let long = format!("/{}", "s".repeat(MAX_SOCKET_PATH_BYTES));
    let o = Overrides {
        socket: Some(long.clone().into()),
        ..Overrides::default()
    };
    let e = load_err(&o, &user_env(&[]));
    assert!(
        e.starts_with(&format!(
            "--socket {long}: api.socket must be a non-empty path of at most 107 bytes"
        )),
        "{e}"
    );
}

/// Each per-key rule refuses what it should; the message names key, value and source.
#[test]
fn every_value_rule_refuses_bad_values() {
    let cases: &[(&str, &str, &str)] = &[
        ("sdk.app_id", "0", "must be a positive integer"),
        ("sdk.app_id", "x", "must be a positive integer"),
        ("sdk.log_level", "verbose", "must be none, debug, info"),
        ("sdk.log_level", "2", "must be none, debug, info"),
        ("sdk.platform", "BeOS", "must be one of Android"),
        ("server.url", "http://h/", "must be a ws:// or wss:// URL"),
        ("server.url", "ws://", "must be a ws:// or wss:// URL"),
        ("server.url", "not a url", "must be a ws:// or wss:// URL"),
        (
            "server.request_timeout_ms",
            "0",
            "must be a positive integer",
        ),
        (
            "server.login_timeout_ms",
            "1.5",
            "must be a positive integer",
        ),
        (
            "server.heartbeat_interval_ms",
            "",
            "must be a positive integer",
        ),
        (
            "reconnect.multiplier",
            "0.9",
            "must be a number from 1 to 10",
        ),
        (
            "reconnect.multiplier",
            "NaN",
            "must be a number from 1 to 10",
        ),
        (
            "reconnect.multiplier",
            "1e308",
            "must be a number from 1 to 10",
        ),
        (
            "reconnect.multiplier",
            "inf",
            "must be a number from 1 to 10",
        ),
        ("reconnect.jitter", "1", "must be a number >= 0 and < 1"),
        ("reconnect.jitter", "-0.1", "must be a number >= 0 and < 1"),
        ("reconnect.stable_ms", "0", "must be a positive integer"),
        ("api.socket", "", "must be a non-empty path"),
        (
            "api.socket_mode",
            "1777",
            "must be a file mode from 0 to 0777",
        ),
        (
            "api.socket_mode",
            "0689",
            "must be a file mode from 0 to 0777",
        ),
        ("api.allow_uids", "1,x", "must be a list of numeric ids"),
        ("api.allow_gids", "-1", "must be a list of numeric ids"),
        ("api.max_clients", "0", "must be a positive integer"),
        (
            "api.max_line_bytes",
            "1e6",
            "must be an integer from 1024 to 67108864",
        ),
        (
            "api.max_line_bytes",
            "1",
            "must be an integer from 1024 to 67108864",
        ),
        ("api.subscriber_queue", "0", "must be a positive integer"),
        ("events.history", "0", "must be a positive integer"),
        ("state.dir", "", "must be a non-empty path"),
        ("state.restore_session", "maybe", "must be true or false"),
    ];
    for (key, value, problem) in cases {
        let var = env_var_for(key);
        let e = load_err(&Overrides::default(), &user_env(&[(&var, value)]));
        assert!(
            e.starts_with(&format!("{var}={value}: {key} {problem}")),
            "{key}={value:?}: {e}"
        );
    }
}

#[test]
fn file_values_must_have_the_right_toml_type() {
    for (line, key) in [
        (
            "[server]\nconnect_timeout_ms = -5",
            "server.connect_timeout_ms = -5",
        ),
        (
            "[state]\nrestore_session = \"yes\"",
            "state.restore_session = \"yes\"",
        ),
        ("[api]\nallow_uids = \"1,2\"", "api.allow_uids = \"1,2\""),
        ("[api]\nallow_uids = [1, -2]", "api.allow_uids = [1, -2]"),
        (
            "[sdk]\napp_id = \"1400000000\"",
            "sdk.app_id = \"1400000000\"",
        ),
        ("[server]\nurl = 5", "server.url = 5"),
    ] {
        let f = toml_file(line);
        let e = load_err(&with_file(&f), &user_env(&[]));
        assert!(
            e.starts_with(&format!("{}: {key}: ", f.path().display())),
            "{line}: {e}"
        );
    }
}

#[test]
fn socket_mode_accepts_octal_strings_and_integers() {
    for (toml, mode) in [
        ("\"0660\"", 0o660),
        ("\"660\"", 0o660),
        ("\"0o600\"", 0o600),
        ("\"0777\"", 0o777),
        ("\"0\"", 0),
        ("0o640", 0o640),
        ("432", 0o660),
    ] {
        let f = toml_file(&format!("[api]\nsocket_mode = {toml}\n"));
        assert_eq!(
            load_ok(&with_file(&f), &user_env(&[]))
                .config
                .api
                .socket_mode,
            mode,
            "{toml}"
        );
    }
    // Decimal 660 is the classic slip for octal 0660: refused, with a hint.
    let f = toml_file("[api]\nsocket_mode = 660\n");
    let e = load_err(&with_file(&f), &user_env(&[]));
    assert!(
        e.contains("api.socket_mode = 660") && e.contains("did you mean \"0660\""),
        "{e}"
    );
    let f = toml_file("[api]\nsocket_mode = 0o1777\n");
    assert!(load_err(&with_file(&f), &user_env(&[])).contains("api.socket_mode = 1023"));
}

#[test]
fn socket_mode_deserialises_from_string_or_integer() {
    let c: ApiConfig = toml::from_str("socket_mode = \"0600\"").unwrap();
    assert_eq!(c.socket_mode, 0o600);
    let c: ApiConfig = toml::from_str("socket_mode = 0o640").unwrap();
    assert_eq!(c.socket_mode, 0o640);
    assert!(toml::from_str::<ApiConfig>("socket_mode = \"0999\"").is_err());
}

#[test]
fn log_level_accepts_names_short_forms_and_numbers() {
    for (v, l) in [
        ("\"none\"", LogLevel::None),
        ("\"V2TIM_LOG_WARN\"", LogLevel::Warn),
        ("\"ERROR\"", LogLevel::Error),
        ("0", LogLevel::None),
        ("3", LogLevel::Debug),
        ("4", LogLevel::Info),
        ("\"5\"", LogLevel::Warn),
        ("6", LogLevel::Error),
    ] {
        let f = toml_file(&format!("[sdk]\nlog_level = {v}\n"));
        assert_eq!(
            load_ok(&with_file(&f), &user_env(&[])).config.sdk.log_level,
            l,
            "{v}"
        );
    }
    let f = toml_file("[sdk]\nlog_level = 1\n");
    assert!(load_err(&with_file(&f), &user_env(&[]))
        .contains("sdk.log_level = 1: sdk.log_level must be"));
}

#[test]
fn heartbeat_timeout_must_exceed_the_interval() {
    let f = toml_file("[server]\nheartbeat_interval_ms = 5000\n");
    let env = user_env(&[("IMLINK_SERVER__HEARTBEAT_TIMEOUT_MS", "5000")]);
    let e = load_err(&with_file(&f), &env);
    assert_eq!(
        e,
        format!(
            "server.heartbeat_timeout_ms = 5000 (environment IMLINK_SERVER__HEARTBEAT_TIMEOUT_MS) must be greater than server.heartbeat_interval_ms = 5000 (file {})",
            f.path().display()
        )
    );
    let env = user_env(&[("IMLINK_SERVER__HEARTBEAT_TIMEOUT_MS", "5001")]);
    assert_eq!(
        load_ok(&with_file(&f), &env)
            .config
            .server
            .heartbeat_timeout_ms,
        5001
    );
}

#[test]
fn backoff_initial_must_not_exceed_max() {
    let env = user_env(&[("IMLINK_RECONNECT__INITIAL_MS", "30001")]);
    let e = load_err(&Overrides::default(), &env);
    assert_eq!(
        e,
        "reconnect.initial_ms = 30001 (environment IMLINK_RECONNECT__INITIAL_MS) must be at most reconnect.max_ms = 30000 (default)"
    );
    let env = user_env(&[("IMLINK_RECONNECT__INITIAL_MS", "30000")]);
    assert_eq!(
        load_ok(&Overrides::default(), &env)
            .config
            .reconnect
            .initial_ms,
        30000
    );
}

#[test]
fn an_explicit_missing_file_is_an_error_but_a_missing_default_file_is_not() {
    let o = Overrides {
        config: Some("/nonexistent/imlink/x.toml".into()),
        ..Overrides::default()
    };
    let e = load_err(&o, &user_env(&[]));
    assert!(
        e.starts_with("/nonexistent/imlink/x.toml: cannot read:"),
        "{e}"
    );
    assert!(load_with_default_path(
        &Overrides::default(),
        &user_env(&[]),
        Path::new("/nonexistent/d.toml")
    )
    .is_ok());
}

#[test]
fn the_default_path_is_read_when_it_exists() {
    let f = toml_file("[events]\nhistory = 5\n");
    let l = load_with_default_path(&Overrides::default(), &user_env(&[]), f.path()).unwrap();
    assert_eq!(l.config.events.history, 5);
    assert_eq!(l.file.as_deref(), Some(f.path()));
}

#[test]
fn toml_syntax_errors_name_the_file() {
    let f = toml_file("[server\nurl = 1\n");
    let e = load_err(&with_file(&f), &user_env(&[]));
    assert!(e.starts_with(&format!("{}: ", f.path().display())), "{e}");
    assert!(e.contains("line 1") || e.contains("TOML"), "{e}");
}

/// The shipped file documents every key, and its example values are the defaults
/// (for root under no systemd) except the optional keys, which show examples.
#[test]
fn the_shipped_default_file_documents_every_key_with_its_default() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/imlinkd.toml");
    let root = Env::new([("HOME", "/root")], 0);
    let o = Overrides {
        config: Some(path.clone()),
        ..Overrides::default()
    };
    // As shipped (everything commented out): the defaults.
    let l = load_with_default_path(&o, &root, Path::new("/nonexistent")).unwrap();
    assert_eq!(l.config, Config::defaults_in(&root));

    // Uncommented: every key present once, and the values are the documented defaults.
    // The CA file it names must exist to be accepted: a real one stands in for it.
    let ca = ca_pem();
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("\"/etc/imlink/ca.pem\"", &format!("{:?}", path_str(&ca)));
    let mut uncommented = String::new();
    let mut section = String::new();
    let mut seen = Vec::new();
    for line in text.lines() {
        if let Some(s) = line.strip_prefix('[') {
            section = s.trim_end_matches(']').to_owned();
        }
        match line.strip_prefix('#') {
            Some(setting) if setting.starts_with(|c: char| c.is_ascii_lowercase()) => {
                let name = setting.split(" =").next().unwrap();
                seen.push(format!("{section}.{name}"));
                uncommented.push_str(setting);
            }
            _ => uncommented.push_str(line),
        }
        uncommented.push('\n');
    }
    assert_eq!(seen, keys().collect::<Vec<_>>());
    let f = toml_file(&uncommented);
    let l = load_with_default_path(&with_file(&f), &root, Path::new("/nonexistent")).unwrap();
    let mut expected = Config::defaults_in(&root);
    expected.sdk.app_id = Some(1400000000);
    expected.server.ca_file = Some(ca.path().to_path_buf());
    expected.tencent.bridge_dir = Some("/usr/local/lib/imlink/tencent-bridge".into());
    expected.tencent.proxy_server = Some("wss://relay.example.net".into());
    assert_eq!(l.config, expected);
}

#[test]
fn the_rendered_configuration_loads_back_to_the_same_values() {
    let ca = ca_pem();
    let key = secret("the-app-key\n");
    let token = secret("the-token");
    let env = user_env(&[
        ("IMLINK_AUTH__PROVIDER", "key_file"),
        ("IMLINK_AUTH__USER_ID", "alice"),
        ("IMLINK_AUTH__KEY_FILE", path_str(&key)),
        ("IMLINK_AUTH__BEARER_TOKEN_FILE", path_str(&token)),
        ("IMLINK_SDK__APP_ID", "1400000000"),
        ("IMLINK_API__ALLOW_UIDS", "0,1000"),
        ("IMLINK_API__SOCKET_MODE", "0600"),
        ("IMLINK_RECONNECT__MULTIPLIER", "2"),
        ("IMLINK_SERVER__CA_FILE", path_str(&ca)),
        ("IMLINK_SERVER__BACKEND", "tencent"),
        ("IMLINK_TENCENT__BRIDGE_DIR", "/srv/bridge"),
        ("IMLINK_TENCENT__PROXY_SERVER", "ws://127.0.0.1:8600"),
    ]);
    let l = load_ok(&Overrides::default(), &env);
    let text = l.to_toml();
    assert!(
        text.contains("backend = \"tencent\"  # environment IMLINK_SERVER__BACKEND\n"),
        "{text}"
    );
    assert!(
        text.contains("app_id = 1400000000  # environment IMLINK_SDK__APP_ID\n"),
        "{text}"
    );
    assert!(
        text.contains("socket_mode = \"0600\"  # environment IMLINK_API__SOCKET_MODE\n"),
        "{text}"
    );
    assert!(
        text.contains("login_timeout_ms = 30000  # default\n"),
        "{text}"
    );
    for key in keys() {
        let name = key.split_once('.').unwrap().1;
        assert!(
            text.contains(&format!("\n{name} = ")),
            "{key} missing in\n{text}"
        );
    }
    assert!(
        !text.contains("the-app-key") && !text.contains("the-token"),
        "{text}"
    );
    let f = toml_file(&text);
    let again = load_ok(&with_file(&f), &user_env(&[]));
    assert_eq!(again.config, l.config);

    let unset = load_ok(&Overrides::default(), &user_env(&[])).to_toml();
    assert!(unset.contains("# app_id is unset  # default\n"), "{unset}");
    let f = toml_file(&unset);
    assert_eq!(
        load_ok(&with_file(&f), &user_env(&[])).config.sdk.app_id,
        None
    );
}

#[test]
fn the_reloader_reads_the_file_again() {
    let mut f = toml_file("[sdk]\nlog_level = \"info\"\n");
    let reload = reloader(with_file(&f), user_env(&[("IMLINK_EVENTS__HISTORY", "9")]));
    let c = reload().unwrap();
    assert_eq!((c.sdk.log_level, c.events.history), (LogLevel::Info, 9));
    f.as_file_mut().set_len(0).unwrap();
    std::fs::write(f.path(), "[sdk]\nlog_level = \"debug\"\n").unwrap();
    assert_eq!(reload().unwrap().sdk.log_level, LogLevel::Debug);
    std::fs::write(f.path(), "[sdk]\nlog_levle = \"debug\"\n").unwrap();
    assert!(reload().unwrap_err().contains("unknown key sdk.log_levle"));
}

#[test]
fn daemon_flags_become_overrides() {
    use clap::Parser;
    let a = DaemonArgs::try_parse_from([
        "imlinkd",
        "--config",
        "/c.toml",
        "--sdk-app-id",
        "1400000000",
        "--log-level",
        "V2TIM_LOG_WARN",
        "--server",
        "wss://h/v1/connect",
        "--socket",
        "/s.sock",
        "--state-dir",
        "/st",
        "--check-config",
    ])
    .unwrap();
    assert!(a.check_config);
    assert_eq!(
        a.overrides(),
        Overrides {
            config: Some("/c.toml".into()),
            sdk_app_id: Some(1400000000),
            log_level: Some(LogLevel::Warn),
            server: Some("wss://h/v1/connect".into()),
            socket: Some("/s.sock".into()),
            state_dir: Some("/st".into()),
        }
    );
    assert!(DaemonArgs::try_parse_from(["imlinkd", "--log-level", "loud"]).is_err());
    assert!(DaemonArgs::try_parse_from(["imlinkd", "--sdk-app-id", "-1"]).is_err());
    <DaemonArgs as clap::CommandFactory>::command().debug_assert();
}

#[test]
fn env_var_names_map_to_keys() {
    assert_eq!(env_var_for("server.url"), "IMLINK_SERVER__URL");
    assert_eq!(env_var_for("api.allow_uids"), "IMLINK_API__ALLOW_UIDS");
}

/// Every bounded key: the edges of its range are accepted, one step past them is refused
/// with a message that states the range.
#[test]
fn every_key_is_range_checked_at_both_edges() {
    let day = "86400000";
    let cases: &[(&str, &[&str], &[&str], &str)] = &[
        (
            "sdk.app_id",
            &["1", "4294967295"],
            &["0", "4294967296"],
            "must be a positive integer (the SDKAppID), at most 4294967295",
        ),
        (
            "sdk.usersig_expiring_lead_secs",
            &["0", "31536000"],
            &["31536001"],
            "must be a non-negative integer, at most 31536000 (365 days)",
        ),
        (
            "server.connect_timeout_ms",
            &["1", day],
            &["0", "86400001"],
            "must be a positive integer, at most 86400000 (24 h)",
        ),
        (
            "server.request_timeout_ms",
            &["1", day],
            &["0", "86400001"],
            "must be a positive integer, at most 86400000 (24 h)",
        ),
        (
            "server.login_timeout_ms",
            &["1", day],
            &["0", "86400001"],
            "must be a positive integer, at most 86400000 (24 h)",
        ),
        (
            "server.heartbeat_interval_ms",
            &["1"],
            &["0", "86400001"],
            "must be a positive integer, at most 86400000 (24 h)",
        ),
        (
            "server.heartbeat_timeout_ms",
            &[day],
            &["0", "86400001"],
            "must be a positive integer, at most 86400000 (24 h)",
        ),
        (
            "reconnect.max_ms",
            &["1000", "3600000"],
            &["0", "3600001"],
            "must be a positive integer, at most 3600000 (1 h)",
        ),
        (
            "reconnect.initial_ms",
            &["1"],
            &["0", "3600001"],
            "must be a positive integer, at most 3600000 (1 h)",
        ),
        (
            "reconnect.stable_ms",
            &["1", day],
            &["0", "86400001"],
            "must be a positive integer, at most 86400000 (24 h)",
        ),
        (
            "reconnect.multiplier",
            &["1", "10", "1.6"],
            &["0.99", "10.01", "1e308", "-inf"],
            "must be a number from 1 to 10",
        ),
        (
            "reconnect.jitter",
            &["0", "0.999"],
            &["1", "-0.01", "NaN"],
            "must be a number >= 0 and < 1",
        ),
        (
            "api.max_clients",
            &["1", "1000000"],
            &["0", "1000001"],
            "must be a positive integer, at most 1000000",
        ),
        (
            "api.max_line_bytes",
            &["1024", "67108864"],
            &["1", "1023", "67108865"],
            "must be an integer from 1024 to 67108864 (a request must fit; 64 MiB)",
        ),
        (
            "api.subscriber_queue",
            &["1", "1048576"],
            &["0", "1048577"],
            "must be a positive integer, at most 1048576",
        ),
        (
            "events.history",
            &["1", "1000000"],
            &["0", "1000001"],
            "must be a positive integer, at most 1000000",
        ),
        (
            "api.socket_mode",
            &["0", "0777", "0o600"],
            &["1000", "01777", "04755"],
            "must be a file mode from 0 to 0777",
        ),
        (
            "api.allow_uids",
            &["0,4294967294", ""],
            &["4294967295", "4294967296"],
            "must be a list of numeric ids (uids or gids below 4294967295, at most 4096 of them)",
        ),
    ];
    for (key, good, bad, problem) in cases {
        let var = env_var_for(key);
        for value in *good {
            let r = load_with_default_path(
                &Overrides::default(),
                &user_env(&[(&var, value)]),
                Path::new("/nonexistent"),
            );
            assert!(r.is_ok(), "{key} = {value:?}: {:?}", r.err());
        }
        for value in *bad {
            let e = load_err(&Overrides::default(), &user_env(&[(&var, value)]));
            assert!(
                e.starts_with(&format!("{var}={value}: {key} {problem}")),
                "{key} = {value:?}: {e}"
            );
        }
    }
    // The largest values load, and the ones with a rule between them obey it.
    let l = load_ok(
        &Overrides::default(),
        &user_env(&[
            ("IMLINK_SERVER__HEARTBEAT_INTERVAL_MS", "86399999"),
            ("IMLINK_SERVER__HEARTBEAT_TIMEOUT_MS", "86400000"),
            ("IMLINK_RECONNECT__INITIAL_MS", "3600000"),
            ("IMLINK_RECONNECT__MAX_MS", "3600000"),
        ]),
    );
    assert_eq!(l.config.reconnect.initial_ms, 3_600_000);
}

#[test]
fn an_id_list_holds_at_most_4096_ids() {
    let ids = |n: u32| (0..n).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    let ok = ids(4096);
    let c = load_ok(
        &Overrides::default(),
        &user_env(&[("IMLINK_API__READONLY_GIDS", &ok)]),
    )
    .config;
    assert_eq!(c.api.readonly_gids.len(), 4096);
    let too_many = ids(4097);
    let e = load_err(
        &Overrides::default(),
        &user_env(&[("IMLINK_API__READONLY_GIDS", &too_many)]),
    );
    assert!(
        e.contains("api.readonly_gids must be a list of numeric ids"),
        "{e}"
    );
    // The value in the message is cut short.
    assert!(e.len() < 600, "{}", e.len());
}

#[test]
fn the_server_url_is_parsed_and_needs_host_and_port_in_range() {
    for (url, problem) in [
        (
            "ws://127.0.0.1:99999/v1/connect",
            "must be a ws:// or wss:// URL with a port from 1 to 65535",
        ),
        (
            "ws://127.0.0.1:65536/",
            "must be a ws:// or wss:// URL with a port from 1 to 65535",
        ),
        (
            "ws://127.0.0.1:0/v1/connect",
            "must be a ws:// or wss:// URL with a port from 1 to 65535",
        ),
        (
            "ws://h/#frag",
            "must be a ws:// or wss:// URL without a #fragment",
        ),
        ("ws://", "must be a ws:// or wss:// URL (empty host)"),
        ("ws://:8600/", "must be a ws:// or wss:// URL (empty host)"),
        ("http://h:80/", "must be a ws:// or wss:// URL"),
        ("ws://[::1/", "must be a ws:// or wss:// URL"),
    ] {
        let e = load_err(
            &Overrides::default(),
            &user_env(&[("IMLINK_SERVER__URL", url)]),
        );
        assert!(
            e.starts_with(&format!("IMLINK_SERVER__URL={url}: server.url {problem}")),
            "{url}: {e}"
        );
    }
    for (url, kept) in [
        (
            "ws://127.0.0.1:65535/v1/connect",
            "ws://127.0.0.1:65535/v1/connect",
        ),
        (
            "wss://im.example.net/v1/connect",
            "wss://im.example.net/v1/connect",
        ),
        ("  ws://[::1]:8600/x?y=1 ", "ws://[::1]:8600/x?y=1"),
        // The parser's normal form: default port dropped, host lower-cased, path added.
        ("WS://Example.NET:80", "ws://example.net/"),
    ] {
        let c = load_ok(
            &Overrides::default(),
            &user_env(&[("IMLINK_SERVER__URL", url)]),
        )
        .config;
        assert_eq!(c.server.url, kept, "{url}");
    }
}

/// A user name or password in the URL is refused, and the message does not repeat them.
#[test]
fn credentials_in_the_server_url_are_refused_without_being_shown() {
    let url = "wss://alice:s3cret-pw@im.example.net/v1/connect";
    let env = user_env(&[("IMLINK_SERVER__URL", url)]);
    let e = load_err(&Overrides::default(), &env);
    assert_eq!(
        e,
        "IMLINK_SERVER__URL=wss://***@im.example.net/v1/connect: server.url must not contain a user name or password"
    );
    let f = toml_file(&format!("[server]\nurl = {url:?}\n"));
    let e = load_err(&with_file(&f), &user_env(&[]));
    assert_eq!(
        e,
        format!(
            "{}: server.url = \"wss://***@im.example.net/v1/connect\": server.url must not contain a user name or password",
            f.path().display()
        )
    );
    let o = Overrides {
        server: Some("ws://bob@h:1/".into()),
        ..Overrides::default()
    };
    let e = load_err(&o, &user_env(&[]));
    assert_eq!(
        e,
        "--server ws://***@h:1/: server.url must not contain a user name or password"
    );
}

#[test]
fn the_ca_file_must_be_a_readable_regular_file_of_certificates() {
    let ca = ca_pem();
    let c = load_ok(
        &Overrides::default(),
        &user_env(&[("IMLINK_SERVER__CA_FILE", path_str(&ca))]),
    )
    .config;
    assert_eq!(c.server.ca_file.as_deref(), Some(ca.path()));

    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let empty = toml_file("");
    let big = toml_file(&"x".repeat(1_048_577));
    let problem = "server.ca_file must be a readable regular file of PEM CA certificates, at most 1048576 bytes: ";
    for (path, why) in [
        (
            "/nonexistent/ca.pem",
            "No such file or directory (os error 2)",
        ),
        (
            dir.path().to_str().unwrap(),
            "not a regular file but a directory",
        ),
        (fifo.to_str().unwrap(), "not a regular file but a FIFO"),
        ("/dev/zero", "not a regular file but a character device"),
        (path_str(&empty), "it holds no certificate"),
        (path_str(&big), "larger than 1048576 bytes"),
    ] {
        let e = load_err(
            &Overrides::default(),
            &user_env(&[("IMLINK_SERVER__CA_FILE", path)]),
        );
        assert_eq!(
            e,
            format!("IMLINK_SERVER__CA_FILE={path}: {problem}{why}"),
            "{path}"
        );
    }
}

#[test]
fn the_configuration_file_must_be_a_small_regular_file() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let big = toml_file(&format!("# {}\n", "x".repeat(1_048_576)));
    for (path, why) in [
        (fifo.clone(), "not a regular file but a FIFO"),
        (
            "/dev/zero".into(),
            "not a regular file but a character device",
        ),
        (
            dir.path().to_path_buf(),
            "not a regular file but a directory",
        ),
        (big.path().to_path_buf(), "larger than 1048576 bytes"),
    ] {
        let o = Overrides {
            config: Some(path.clone()),
            ..Overrides::default()
        };
        assert_eq!(
            load_err(&o, &user_env(&[])),
            format!("{}: cannot read: {why}", path.display())
        );
    }
    // A link to a regular file is read.
    let f = toml_file("[events]\nhistory = 7\n");
    let link = dir.path().join("link.toml");
    std::os::unix::fs::symlink(f.path(), &link).unwrap();
    let o = Overrides {
        config: Some(link),
        ..Overrides::default()
    };
    assert_eq!(load_ok(&o, &user_env(&[])).config.events.history, 7);
    // Not UTF-8.
    let mut f = toml_file("");
    f.write_all(b"[sdk]\nlog_level = \"\xff\"\n").unwrap();
    assert_eq!(
        load_err(&with_file(&f), &user_env(&[])),
        format!("{}: cannot read: not UTF-8 text", f.path().display())
    );
}

/// Each source is checked on its own: a later source overriding a bad value does not
/// hide it.
#[test]
fn a_bad_value_is_refused_even_where_a_later_source_overrides_it() {
    let f = toml_file("[server]\nconnect_timeout_ms = 0\n");
    let env = user_env(&[("IMLINK_SERVER__CONNECT_TIMEOUT_MS", "5")]);
    let e = load_err(&with_file(&f), &env);
    assert!(
        e.starts_with(&format!(
            "{}: server.connect_timeout_ms = 0: server.connect_timeout_ms must be",
            f.path().display()
        )),
        "{e}"
    );
    let o = Overrides {
        server: Some("ws://h:1/".into()),
        ..Overrides::default()
    };
    let e = load_err(&o, &user_env(&[("IMLINK_SERVER__URL", "ws://h:0/")]));
    assert!(
        e.starts_with("IMLINK_SERVER__URL=ws://h:0/: server.url must be"),
        "{e}"
    );
}

/// A default that the environment makes invalid (a socket path too long for a Unix
/// socket address) is reported as the default's problem; a flag that replaces it is fine.
#[test]
fn a_default_path_from_the_environment_is_checked_too() {
    let long = format!("/{}", "r".repeat(100));
    let env = Env::new([("HOME", "/h"), ("XDG_RUNTIME_DIR", long.as_str())], 1000);
    let e = load_err(&Overrides::default(), &env);
    assert!(
        e.starts_with(&format!(
            "default api.socket = \"{long}/imlink/imlinkd.sock\": api.socket must be a non-empty path of at most 107 bytes"
        )),
        "{e}"
    );
    let o = Overrides {
        socket: Some("/run/x.sock".into()),
        ..Overrides::default()
    };
    assert_eq!(
        load_ok(&o, &env).config.api.socket,
        PathBuf::from("/run/x.sock")
    );
}

#[test]
fn values_in_messages_have_control_characters_escaped() {
    let e = load_err(
        &Overrides::default(),
        &user_env(&[("IMLINK_API__MAX_CLIENTS", "\u{1b}[2J\n7")]),
    );
    assert!(
        e.starts_with("IMLINK_API__MAX_CLIENTS=\\u{1b}[2J\\n7: api.max_clients must be"),
        "{e}"
    );
    let e = load_err(
        &Overrides::default(),
        &user_env(&[("IMLINK_SERVER__BAD\u{7}KEY", "1")]),
    );
    assert!(
        e.starts_with("IMLINK_SERVER__BAD\\u{7}KEY: unknown key server.bad\\u{7}key"),
        "{e}"
    );
    let f = toml_file("[state]\ndir = \"a\\u0000b\"\n");
    let e = load_err(&with_file(&f), &user_env(&[]));
    assert_eq!(
        e,
        format!(
            "{}: state.dir = \"a\\u0000b\": state.dir must not contain a NUL byte",
            f.path().display()
        )
    );
}

#[test]
fn the_keys_are_read_off_the_struct() {
    let all: Vec<_> = keys().collect();
    assert_eq!(all.first(), Some(&"sdk.app_id"));
    assert_eq!(all.last(), Some(&"auth.ticket_lifetime_secs"));
    // Every key is set by its environment variable, and each is accepted as a key.
    let text = load_ok(&Overrides::default(), &user_env(&[])).to_toml();
    for key in &all {
        let (section, name) = key.split_once('.').unwrap();
        assert!(text.contains(&format!("\n[{section}]\n")), "{key}");
        assert!(
            text.contains(&format!("\n{name} = "))
                || text.contains(&format!("\n# {name} is unset")),
            "{key}"
        );
    }
    let sections: Vec<_> = keys::schema().sections.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        sections,
        [
            "sdk",
            "server",
            "tencent",
            "reconnect",
            "api",
            "events",
            "state",
            "auth"
        ]
    );
}

#[test]
fn platform_and_booleans_read_the_usual_forms() {
    for (v, p) in [("ipad", Platform::IPad), ("WEB", Platform::Web)] {
        let c = load_ok(
            &Overrides::default(),
            &user_env(&[("IMLINK_SDK__PLATFORM", v)]),
        )
        .config;
        assert_eq!(c.sdk.platform, p);
    }
    for (v, b) in [
        ("yes", true),
        ("off", false),
        ("1", true),
        (" FALSE ", false),
    ] {
        let c = load_ok(
            &Overrides::default(),
            &user_env(&[("IMLINK_STATE__RESTORE_SESSION", v)]),
        )
        .config;
        assert_eq!(c.state.restore_session, b, "{v}");
    }
}

#[test]
fn the_backend_is_imlink_or_tencent() {
    let c = load_ok(&Overrides::default(), &user_env(&[])).config;
    assert_eq!(c.server.backend, Backend::Imlink);
    assert_eq!(c.tencent, TencentConfig::default());
    assert_eq!(c.tencent.node, Path::new("node"));
    for (v, b) in [("tencent", Backend::Tencent), (" IMLINK ", Backend::Imlink)] {
        let c = load_ok(
            &Overrides::default(),
            &user_env(&[("IMLINK_SERVER__BACKEND", v)]),
        )
        .config;
        assert_eq!(c.server.backend, b, "{v}");
    }
    let e = load_err(
        &Overrides::default(),
        &user_env(&[("IMLINK_SERVER__BACKEND", "qq")]),
    );
    assert_eq!(
        e,
        "IMLINK_SERVER__BACKEND=qq: server.backend must be \"imlink\" (the native protocol) or \"tencent\" (the official SDK)"
    );
    let f = toml_file("[server]\nbackend = 1\n");
    assert!(load_err(&with_file(&f), &user_env(&[])).contains("server.backend must be"));
}

#[test]
fn the_tencent_keys_are_checked() {
    let f = toml_file(
        "[tencent]\nnode = \"/opt/node/bin/node\"\nbridge_dir = \"/srv/bridge\"\nproxy_server = \"ws://127.0.0.1:8600/\"\n",
    );
    let c = load_ok(&with_file(&f), &user_env(&[])).config;
    assert_eq!(c.tencent.node, Path::new("/opt/node/bin/node"));
    assert_eq!(
        c.tencent.bridge_dir.as_deref(),
        Some(Path::new("/srv/bridge"))
    );
    // Kept as written, without the trailing slash: the SDK appends `/binfo?…`.
    assert_eq!(
        c.tencent.proxy_server.as_deref(),
        Some("ws://127.0.0.1:8600")
    );
    // Empty values unset the optional keys.
    let env = user_env(&[
        ("IMLINK_TENCENT__BRIDGE_DIR", ""),
        ("IMLINK_TENCENT__PROXY_SERVER", ""),
    ]);
    let c = load_ok(&with_file(&f), &env).config;
    assert_eq!((c.tencent.bridge_dir, c.tencent.proxy_server), (None, None));
    let long = format!("wss://h/{}", "a".repeat(2000));
    for bad in [
        "http://h:1",
        "ws://",
        "ws://u:p@h:1",
        "ws://h:1/?a=b",
        "ws://h:1/#x",
        "ws://h:0",
        "ws://h:1/a b",
        long.as_str(),
    ] {
        let e = load_err(
            &Overrides::default(),
            &user_env(&[("IMLINK_TENCENT__PROXY_SERVER", bad)]),
        );
        assert!(
            e.contains("tencent.proxy_server must be a ws:// or wss:// URL"),
            "{bad}: {e}"
        );
    }
    let e = load_err(
        &Overrides::default(),
        &user_env(&[("IMLINK_TENCENT__NODE", "")]),
    );
    assert!(e.contains("tencent.node must be a program name"), "{e}");
    let f = toml_file("[tencent]\nnode = \"a\\u0000b\"\n");
    assert!(load_err(&with_file(&f), &user_env(&[])).contains("NUL"));
}

#[test]
fn the_auth_keys_are_checked_and_need_each_other() {
    let key = secret("k\n");
    let loose = toml_file("k\n");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(loose.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let ok = load_ok(
        &Overrides::default(),
        &user_env(&[
            ("IMLINK_AUTH__PROVIDER", "command"),
            ("IMLINK_AUTH__COMMAND", "/usr/bin/get-sig,--app,prod"),
        ]),
    );
    assert_eq!(ok.config.auth.provider, AuthProvider::Command);
    assert_eq!(
        ok.config.auth.command,
        ["/usr/bin/get-sig", "--app", "prod"]
    );
    let f = toml_file(&format!(
        "[auth]\nprovider = \"key_file\"\nkey_file = {:?}\n",
        path_str(&key)
    ));
    assert_eq!(
        load_ok(&with_file(&f), &user_env(&[]))
            .config
            .auth
            .key_file
            .as_deref(),
        Some(key.path())
    );
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![("IMLINK_AUTH__PROVIDER", "ldap")],
            "must be \"none\", \"command\", \"url\" or \"key_file\"",
        ),
        (
            vec![("IMLINK_AUTH__PROVIDER", "command")],
            "auth.provider = \"command\" (environment IMLINK_AUTH__PROVIDER) needs auth.command",
        ),
        (vec![("IMLINK_AUTH__PROVIDER", "url")], "needs auth.url"),
        (
            vec![("IMLINK_AUTH__PROVIDER", "key_file")],
            "needs auth.key_file",
        ),
        (
            vec![("IMLINK_AUTH__KEY_FILE", path_str(&loose))],
            "its mode is 0644",
        ),
        (
            vec![("IMLINK_AUTH__BEARER_TOKEN_FILE", path_str(&loose))],
            "must not be readable or writable by group or others",
        ),
        (
            vec![("IMLINK_AUTH__URL", "http://example.net/sig")],
            "http:// only on a loopback address",
        ),
        (
            vec![("IMLINK_AUTH__URL", "https://u:p@example.net/sig")],
            "without user name, password",
        ),
        (
            vec![("IMLINK_AUTH__URL", "ftp://example.net/")],
            "must be an https:// URL",
        ),
        (vec![("IMLINK_AUTH__USER_ID", "a b")], "must be a UserID"),
        (
            vec![("IMLINK_AUTH__USER_ID", "alice")],
            "auth.user_id (environment IMLINK_AUTH__USER_ID) needs auth.provider",
        ),
        (
            vec![
                ("IMLINK_AUTH__USER_ID", "alice"),
                ("IMLINK_AUTH__PROVIDER", "command"),
                ("IMLINK_AUTH__COMMAND", "x"),
            ],
            "needs sdk.app_id",
        ),
        (
            vec![("IMLINK_AUTH__TICKET_LIFETIME_SECS", "59")],
            "must be an integer from 60 to 3153600000",
        ),
        (
            vec![("IMLINK_AUTH__TIMEOUT_MS", "0")],
            "must be a positive integer",
        ),
        (vec![("IMLINK_AUTH__COMMAND", ",")], ""),
    ];
    for (env, want) in cases {
        let r = load_with_default_path(
            &Overrides::default(),
            &user_env(&env),
            Path::new("/nonexistent/imlinkd.toml"),
        );
        match r {
            Err(e) => assert!(e.to_string().contains(want), "{env:?}: {e}"),
            // A comma alone is an empty list: no command, which is fine without the provider.
            Ok(l) => assert!(
                want.is_empty() && l.config.auth.command.is_empty(),
                "{env:?} loaded"
            ),
        }
    }
    // The lifetime must exceed the lead, or every ticket would be renewed at once.
    let f = toml_file(&format!(
        "[sdk]\nusersig_expiring_lead_secs = 600\n[auth]\nprovider = \"key_file\"\nkey_file = {:?}\nticket_lifetime_secs = 600\n",
        path_str(&key)
    ));
    let e = load_err(&with_file(&f), &user_env(&[]));
    assert!(e.contains("auth.ticket_lifetime_secs = 600"), "{e}");
    // http:// on loopback is fine; the URL is kept normalised.
    let l = load_ok(
        &Overrides::default(),
        &user_env(&[
            ("IMLINK_AUTH__URL", "http://127.0.0.1:9/sig"),
            ("IMLINK_AUTH__PROVIDER", "url"),
        ]),
    );
    assert_eq!(l.config.auth.url.as_deref(), Some("http://127.0.0.1:9/sig"));
    // A secret's content never appears in a message.
    let e = load_err(
        &Overrides::default(),
        &user_env(&[("IMLINK_AUTH__KEY_FILE", path_str(&loose))]),
    );
    assert!(!e.contains("k\n") && !e.ends_with(": k"), "{e}");
}
