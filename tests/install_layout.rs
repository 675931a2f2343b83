//! `make install` lays out the expected tree under DESTDIR: binaries, units with ExecStart
//! under PREFIX, sysusers.d, man pages, completions, and the default configuration, which
//! a second install leaves alone, and the Tencent bridge with its packages (`npm ci`, from
//! the npm cache: no network in tests) when npm is present; `make uninstall` removes
//! everything but the configuration. Uses the debug build (`BUILD=debug`) so the test
//! needs no release build.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};

fn make(destdir: &Path, target: &str, extra: &[&str]) -> String {
    let mut cmd = support::make_command();
    // The bridge's `npm ci` takes the packages from the npm cache (CI's own `npm ci` of
    // bridge/tencent filled it); tests use no network.
    cmd.env("npm_config_offline", "true");
    let out = cmd
        .arg("-s")
        .arg(target)
        .arg("BUILD=debug")
        .arg(format!("DESTDIR={}", destdir.display()))
        .args(extra)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run make");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "make {target} failed:\n{text}");
    text
}

fn files(root: &Path) -> Vec<String> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, root, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

fn have_npm() -> bool {
    std::process::Command::new("npm")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn mode(p: PathBuf) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn make_install_lays_out_the_tree_and_uninstall_takes_it_away() {
    let dest = tempfile::tempdir().unwrap();
    let d = dest.path();
    let text = make(d, "install-files", &["PREFIX=/usr"]);
    let got = files(d);
    for want in [
        "usr/bin/imlinkd",
        "usr/bin/imlinkctl",
        "usr/bin/imlink-devserver",
        "usr/lib/systemd/system/imlinkd.service",
        "usr/lib/systemd/system/imlinkd.socket",
        "usr/lib/systemd/system/imlinkd@.service",
        "usr/lib/sysusers.d/imlink.conf",
        "usr/share/man/man8/imlinkd.8",
        "usr/share/man/man1/imlinkctl.1",
        "usr/share/man/man1/imlinkctl-usersig-gen.1",
        "usr/share/man/man5/imlinkd.toml.5",
        "usr/share/bash-completion/completions/imlinkctl",
        "usr/share/zsh/site-functions/_imlinkctl",
        "usr/share/fish/vendor_completions.d/imlinkctl.fish",
        "etc/imlink/imlinkd.toml",
        "usr/lib/imlink/tencent-bridge/index.js",
        "usr/lib/imlink/tencent-bridge/package.json",
        "usr/lib/imlink/tencent-bridge/package-lock.json",
    ] {
        assert!(
            got.iter().any(|f| f == want),
            "{want} missing; got {got:#?}"
        );
    }
    // The bridge: its pinned packages when npm is here (and then it runs), else the
    // instruction to install them.
    let bridge = d.join("usr/lib/imlink/tencent-bridge");
    if have_npm() {
        for pkg in ["@tencentcloud/chat", "ws"] {
            let p = bridge.join("node_modules").join(pkg).join("package.json");
            assert!(p.exists(), "{} missing:\n{text}", p.display());
        }
        let out = std::process::Command::new("node")
            .arg(bridge.join("index.js"))
            .arg("--version")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let hello: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(hello["event"], "hello", "{hello}");
        assert_eq!(hello["protocol"], 1, "{hello}");
        // The installed imlinkd finds the installed bridge by default (tencent.bridge_dir
        // unset: ../lib/imlink/tencent-bridge from its own directory) and checks it.
        let out = std::process::Command::new(d.join("usr/bin/imlinkd"))
            .arg("--check-config")
            .arg("--config")
            .arg(d.join("etc/imlink/imlinkd.toml"))
            .env("IMLINK_SERVER__BACKEND", "tencent")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{out:?}");
        assert!(
            stdout.contains(&format!(
                "# Tencent bridge: {} (protocol 1, @tencentcloud/chat 3.6.6",
                bridge.display()
            )),
            "{stdout}"
        );
    } else {
        assert!(
            text.contains("npm ci --omit=dev --prefix /usr/lib/imlink/tencent-bridge"),
            "{text}"
        );
    }
    assert_eq!(mode(d.join("usr/bin/imlinkd")), 0o755);
    assert_eq!(
        mode(d.join("usr/lib/systemd/system/imlinkd.service")),
        0o644
    );
    // Units point at PREFIX/bin, and nothing is left pointing at /usr/local.
    for unit in ["imlinkd.service", "imlinkd@.service"] {
        let text = std::fs::read_to_string(d.join("usr/lib/systemd/system").join(unit)).unwrap();
        assert!(
            text.contains("ExecStart=/usr/bin/imlinkd"),
            "{unit}:\n{text}"
        );
        assert!(!text.contains("/usr/local"), "{unit}:\n{text}");
    }
    // Man pages and completions come from the clap definitions.
    let man = std::fs::read_to_string(d.join("usr/share/man/man8/imlinkd.8")).unwrap();
    assert!(
        man.contains("check\\-config"),
        "imlinkd.8 lacks --check-config"
    );
    let bash =
        std::fs::read_to_string(d.join("usr/share/bash-completion/completions/imlinkctl")).unwrap();
    assert!(bash.contains("usersig"), "bash completion lacks usersig");
    let toml5 = std::fs::read_to_string(d.join("usr/share/man/man5/imlinkd.toml.5")).unwrap();
    assert!(
        toml5.contains("subscriber_queue"),
        "imlinkd.toml.5 lacks the keys"
    );
    let shipped =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/imlinkd.toml"))
            .unwrap();
    assert_eq!(
        std::fs::read_to_string(d.join("etc/imlink/imlinkd.toml")).unwrap(),
        shipped
    );

    // A second install keeps an edited configuration.
    let cfg = d.join("etc/imlink/imlinkd.toml");
    std::fs::write(&cfg, "[sdk]\napp_id = 1400000009\n").unwrap();
    let text = make(d, "install-files", &["PREFIX=/usr"]);
    assert!(text.contains("keeping the existing"), "{text}");
    assert_eq!(
        std::fs::read_to_string(&cfg).unwrap(),
        "[sdk]\napp_id = 1400000009\n"
    );

    // Uninstall removes all but the configuration.
    make(d, "uninstall", &["PREFIX=/usr"]);
    assert_eq!(files(d), vec!["etc/imlink/imlinkd.toml".to_owned()]);

    // The default PREFIX is /usr/local, and the units say so. (One test: `make docs`
    // regenerates a shared directory, so two installs must not run at once.)
    let dest = tempfile::tempdir().unwrap();
    let d = dest.path();
    make(d, "install-files", &[]);
    let unit =
        std::fs::read_to_string(d.join("usr/local/lib/systemd/system/imlinkd.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/imlinkd"), "{unit}");
    assert!(d.join("usr/local/bin/imlinkctl").exists());
    assert!(d.join("usr/local/share/man/man8/imlinkd.8").exists());
    assert!(d.join("etc/imlink/imlinkd.toml").exists());
}
