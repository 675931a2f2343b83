//! Can the bridge run? `node --jitless index.js --version`, before the daemon starts and
//! in `imlinkd --check-config`: Node.js missing, the bridge not installed, its packages
//! missing, or an SDK other than the version `package.json` pins are one clear error
//! (code [`code::LINK_UNAVAILABLE`]) and exit status [`EXIT_UNAVAILABLE`], which the
//! systemd units list in `RestartPreventExitStatus=`: no restart loop.
//!
//! The same checks of the `hello` line ([`check_hello`]) and of `package.json`
//! ([`pinned_version`]) apply each time the link starts the bridge.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::process::NODE_FLAGS;
use crate::codes::code;
use crate::config::TencentConfig;
use crate::core::session::Fail;
use crate::proto::bridge::{parse_line, Event, FromBridge, Hello, PROTOCOL, SDK_PACKAGE};

/// The exit status of `imlinkd` when the link cannot run (`EX_CONFIG`).
pub const EXIT_UNAVAILABLE: u8 = 78;

/// How long `--version` may take (it loads the SDK: ~0.3 s, more on a loaded machine).
pub const VERSION_TIMEOUT: Duration = Duration::from_secs(20);

/// The oldest Node.js the bridge supports.
pub const MIN_NODE_MAJOR: u32 = 18;

/// The largest `package.json` read.
const MAX_PACKAGE_JSON: u64 = 64 * 1024;

/// The most output of `--version` kept.
const MAX_OUTPUT: u64 = 64 * 1024;

/// What a successful check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeCheck {
    /// The bridge's directory.
    pub dir: PathBuf,
    /// Its `hello` line.
    pub hello: Hello,
}

impl std::fmt::Display for BridgeCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (protocol {}, {SDK_PACKAGE} {}, Node.js {})",
            self.dir.display(),
            self.hello.protocol,
            self.hello.sdk_version,
            self.hello.node
        )
    }
}

fn unavailable(msg: String) -> Fail {
    Fail::new(code::LINK_UNAVAILABLE, msg)
}

/// The version of [`SDK_PACKAGE`] that `dir/package.json` pins (an exact version).
pub fn pinned_version(dir: &Path) -> Result<String, Fail> {
    let path = dir.join("package.json");
    let text = crate::config::read_regular_file(&path, MAX_PACKAGE_JSON).map_err(|e| {
        unavailable(format!(
            "the Tencent bridge is not installed in {} ({e}): run `make install`, or set tencent.bridge_dir",
            dir.display()
        ))
    })?;
    let v: serde_json::Value = serde_json::from_slice(&text)
        .map_err(|_| unavailable(format!("{} is not valid JSON", path.display())))?;
    let pinned = v["dependencies"][SDK_PACKAGE].as_str().unwrap_or_default();
    let exact = !pinned.is_empty()
        && pinned.len() <= 32
        && pinned
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'));
    if !exact {
        return Err(unavailable(format!(
            "{} does not pin an exact version of {SDK_PACKAGE}",
            path.display()
        )));
    }
    Ok(pinned.to_owned())
}

/// Checks a `hello` against this daemon and the pinned SDK version.
pub fn check_hello(hello: &Hello, pinned: &str, dir: &Path) -> Result<(), Fail> {
    if !hello.plausible() {
        return Err(unavailable(
            "the Tencent bridge's hello line carries unreadable versions".into(),
        ));
    }
    if hello.protocol != PROTOCOL {
        return Err(unavailable(format!(
            "the Tencent bridge in {} speaks protocol {}, this imlinkd speaks {PROTOCOL}: install the bridge of this release (make install)",
            dir.display(),
            hello.protocol
        )));
    }
    if hello.sdk_version != pinned {
        return Err(unavailable(format!(
            "wrong SDK version: the Tencent bridge in {} loaded {SDK_PACKAGE} {}, its package.json pins {pinned}: run `npm ci --omit=dev --prefix {}`",
            dir.display(),
            hello.sdk_version,
            dir.display()
        )));
    }
    match hello.node_major() {
        Some(m) if m >= MIN_NODE_MAJOR => Ok(()),
        _ => Err(unavailable(format!(
            "Node.js {} is too old for the Tencent bridge: it needs {MIN_NODE_MAJOR} or later (tencent.node)",
            hello.node
        ))),
    }
}

/// Why a spawn of `node` failed, said for an operator.
pub fn spawn_error(node: &Path, e: &std::io::Error) -> Fail {
    let what = node.display();
    unavailable(match e.kind() {
        std::io::ErrorKind::NotFound if node.components().count() == 1 => format!(
            "Node.js not found: no `{what}` in PATH; install Node.js {MIN_NODE_MAJOR} or later, or set tencent.node"
        ),
        std::io::ErrorKind::NotFound => {
            format!("Node.js not found: {what} does not exist (tencent.node)")
        }
        std::io::ErrorKind::PermissionDenied => {
            format!("Node.js cannot be run: {what}: permission denied (tencent.node)")
        }
        _ => format!("cannot run {what}: {e} (tencent.node)"),
    })
}

/// Why the bridge ended before its hello, from its exit code and last stderr line.
pub fn early_exit(dir: &Path, code: Option<i32>, last_err: &str) -> Fail {
    let last = crate::text::clean(last_err);
    match code {
        Some(69) => unavailable(format!(
            "the Tencent bridge's packages are not installed in {}: run `npm ci --omit=dev --prefix {}` ({last})",
            dir.display(),
            dir.display()
        )),
        Some(c) => unavailable(format!(
            "the Tencent bridge in {} failed to start (exit status {c}): {last}",
            dir.display()
        )),
        None => unavailable(format!(
            "the Tencent bridge in {} was killed before it started: {last}",
            dir.display()
        )),
    }
}

/// Reads at most `max` bytes of `r` in a thread.
fn collect(r: impl Read + Send + 'static, max: u64) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = r.take(max).read_to_end(&mut out);
        out
    })
}

/// Runs `node --jitless index.js --version` in the bridge's directory and checks what it
/// says. Blocking, at most [`VERSION_TIMEOUT`].
pub fn check(t: &TencentConfig) -> Result<BridgeCheck, Fail> {
    let dir = t.bridge_dir();
    if !dir.join("index.js").is_file() {
        return Err(unavailable(format!(
            "the Tencent bridge is not installed: {} has no index.js; run `make install`, or set tencent.bridge_dir",
            dir.display()
        )));
    }
    let pinned = pinned_version(&dir)?;
    let mut child = Command::new(&t.node)
        .args(NODE_FLAGS)
        .arg("index.js")
        .arg("--version")
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| spawn_error(&t.node, &e))?;
    let out = child.stdout.take().map(|o| collect(o, MAX_OUTPUT));
    let err = child.stderr.take().map(|e| collect(e, MAX_OUTPUT));
    let deadline = Instant::now() + VERSION_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(unavailable(format!(
                    "the Tencent bridge in {} did not answer --version within {} s",
                    dir.display(),
                    VERSION_TIMEOUT.as_secs()
                )));
            }
            Err(e) => return Err(unavailable(format!("cannot wait for node: {e}"))),
        }
    };
    let out = out.and_then(|h| h.join().ok()).unwrap_or_default();
    let err = err.and_then(|h| h.join().ok()).unwrap_or_default();
    let err = String::from_utf8_lossy(&err);
    let last_err = err
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    if !status.success() {
        return Err(early_exit(&dir, status.code(), last_err));
    }
    let first = out.split(|&b| b == b'\n').next().unwrap_or_default();
    let hello = match parse_line(first) {
        Ok(FromBridge::Event(Event::Hello(h))) => h,
        _ => {
            return Err(unavailable(format!(
                "{} in {} is not the Tencent bridge: its --version line is not a hello",
                "index.js",
                dir.display()
            )))
        }
    };
    check_hello(&hello, &pinned, &dir)?;
    Ok(BridgeCheck { dir, hello })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(protocol: u32, sdk: &str, node: &str) -> Hello {
        Hello {
            protocol,
            sdk_version: sdk.into(),
            node: node.into(),
        }
    }

    #[test]
    fn the_hello_must_match_the_protocol_the_pin_and_a_recent_node() {
        let d = Path::new("/b");
        assert!(check_hello(&hello(1, "3.6.6", "v20.20.2"), "3.6.6", d).is_ok());
        let e = check_hello(&hello(2, "3.6.6", "v20.1.0"), "3.6.6", d).unwrap_err();
        assert_eq!(e.code, code::LINK_UNAVAILABLE);
        assert!(e.message.contains("protocol 2"), "{}", e.message);
        let e = check_hello(&hello(1, "3.7.0", "v20.1.0"), "3.6.6", d).unwrap_err();
        assert!(e.message.starts_with("wrong SDK version"), "{}", e.message);
        assert!(e.message.contains("npm ci --omit=dev --prefix /b"));
        let e = check_hello(&hello(1, "3.6.6", "v16.0.0"), "3.6.6", d).unwrap_err();
        assert!(e.message.contains("too old"), "{}", e.message);
        assert!(check_hello(&hello(1, "3.6.6\u{1b}[2J", "v20"), "3.6.6\u{1b}[2J", d).is_err());
    }

    #[test]
    fn the_pin_is_read_from_package_json() {
        let dir = tempfile::tempdir().unwrap();
        let e = pinned_version(dir.path()).unwrap_err();
        assert!(e.message.contains("not installed"), "{}", e.message);
        let write = |body: &str| std::fs::write(dir.path().join("package.json"), body).unwrap();
        write(r#"{"dependencies":{"@tencentcloud/chat":"3.6.6","ws":"8.23.0"}}"#);
        assert_eq!(pinned_version(dir.path()).unwrap(), "3.6.6");
        for bad in [
            r#"{"dependencies":{"@tencentcloud/chat":"^3.6.6"}}"#,
            r#"{"dependencies":{}}"#,
            "not json",
        ] {
            write(bad);
            assert!(pinned_version(dir.path()).is_err(), "{bad}");
        }
        // The repository's bridge pins the version docs/tencent.md names.
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("bridge/tencent");
        assert_eq!(pinned_version(&repo).unwrap(), "3.6.6");
    }

    #[test]
    fn spawn_failures_say_what_to_do() {
        let nf = std::io::Error::from(std::io::ErrorKind::NotFound);
        let e = spawn_error(Path::new("node"), &nf);
        assert_eq!(e.code, code::LINK_UNAVAILABLE);
        assert!(e.message.contains("no `node` in PATH"), "{}", e.message);
        let e = spawn_error(Path::new("/opt/node"), &nf);
        assert!(
            e.message.contains("/opt/node does not exist"),
            "{}",
            e.message
        );
        let e = early_exit(Path::new("/b"), Some(69), "cannot load\nx");
        assert!(
            e.message.contains("npm ci --omit=dev --prefix /b"),
            "{}",
            e.message
        );
        assert!(!e.message.contains('\n'));
    }
}
