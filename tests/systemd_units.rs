//! The systemd units as shipped: `systemd-analyze verify` finds nothing wrong and
//! `systemd-analyze security --offline=true` rates each service's exposure at most 2.0.
//! The units name /usr/local/bin; like `make install` does for its PREFIX, the test
//! points them at the binaries just built, because verify checks that ExecStart exists.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

const ANALYZE: &str = "systemd-analyze";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The three units with ExecStart pointing at the built binaries, plus an instance of
/// the template (a template itself cannot be verified), in a fresh directory.
fn rendered() -> tempfile::TempDir {
    let bindir = Path::new(env!("CARGO_BIN_EXE_imlinkd")).parent().unwrap();
    let dir = tempfile::tempdir().unwrap();
    for unit in ["imlinkd.service", "imlinkd.socket", "imlinkd@.service"] {
        let text = std::fs::read_to_string(repo().join("systemd").join(unit)).unwrap();
        assert!(
            unit.ends_with(".socket") || text.contains("/usr/local/bin/imlinkd"),
            "{unit} must name /usr/local/bin/imlinkd (make install substitutes it)"
        );
        let text = text.replace("/usr/local/bin/", &format!("{}/", bindir.display()));
        std::fs::write(dir.path().join(unit), &text).unwrap();
        if unit == "imlinkd@.service" {
            std::fs::write(dir.path().join("imlinkd@alice.service"), &text).unwrap();
        }
    }
    dir
}

fn analyze(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(ANALYZE)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {ANALYZE} ({e}): install the systemd package to test the units")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn the_units_verify_cleanly() {
    let dir = rendered();
    // --man=no: the man pages named in Documentation= are not installed here.
    let (ok, text) = analyze(
        dir.path(),
        &[
            "verify",
            "--man=no",
            "./imlinkd.service",
            "./imlinkd.socket",
            "./imlinkd@alice.service",
        ],
    );
    assert!(ok, "systemd-analyze verify failed:\n{text}");
    assert!(
        text.trim().is_empty(),
        "systemd-analyze verify warned:\n{text}"
    );
}

fn exposure(dir: &Path, unit: &str) -> f64 {
    let (_, text) = analyze(dir, &["security", "--offline=true", &format!("./{unit}")]);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no exposure level for {unit}:\n{text}"));
    let value = line
        .rsplit(':')
        .next()
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    value
        .parse()
        .unwrap_or_else(|_| panic!("bad exposure line {line:?}"))
}

#[test]
fn the_services_are_hardened_to_an_exposure_of_at_most_2() {
    let dir = rendered();
    for unit in ["imlinkd.service", "imlinkd@alice.service"] {
        let e = exposure(dir.path(), unit);
        assert!(e <= 2.0, "{unit}: exposure {e} > 2.0");
    }
}

#[test]
fn the_units_carry_the_settings_the_design_asks_for() {
    let read = |u: &str| std::fs::read_to_string(repo().join("systemd").join(u)).unwrap();
    for unit in ["imlinkd.service", "imlinkd@.service"] {
        let text = read(unit);
        for want in [
            "Type=notify",
            "Restart=on-failure",
            "RestartPreventExitStatus=78",
            "MemoryDenyWriteExecute=yes",
            "ExecReload=/bin/kill -HUP $MAINPID",
            "WatchdogSec=",
            "RuntimeDirectory=",
            "StateDirectory=",
            "ConfigurationDirectory=imlink",
            "User=imlink",
        ] {
            assert!(
                text.lines().any(|l| l.starts_with(want)),
                "{unit} lacks {want}"
            );
        }
    }
    assert!(read("imlinkd@.service").contains("--config /etc/imlink/%i.toml"));
    let socket = read("imlinkd.socket");
    for want in [
        "ListenStream=/run/imlink/imlinkd.sock",
        "SocketGroup=imlink",
        "SocketMode=0660",
    ] {
        assert!(
            socket.lines().any(|l| l == want),
            "imlinkd.socket lacks {want}"
        );
    }
}
