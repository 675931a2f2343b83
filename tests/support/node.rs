//! Node.js and the bridge's packages, for the tests of the Tencent link
//! (`tests/tencent_sdk.rs`, `tests/daemon_tencent.rs`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The repository's bridge, `bridge/tencent` (its `node_modules` from `npm ci`).
pub fn bridge_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("bridge/tencent")
}

/// Whether the tests run under CI (`CI` set and not `0`/`false`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// Whether `tests` (named in the skip message) can run: node present and the bridge's
/// packages installed. Panics when the packages are missing, or node is missing under CI.
pub fn node_ready(tests: &str) -> bool {
    let node = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !node {
        assert!(
            !in_ci(),
            "node is not installed: CI must install Node.js >= 18 and npm, then run \
             `npm ci --omit=dev --prefix bridge/tencent`"
        );
        // Written to the real stderr (not eprintln!, which the test harness captures).
        let _ = writeln!(
            std::io::stderr(),
            "\n******** SKIPPED: node is not installed. Install Node.js >= 18 and run \
             `npm ci --omit=dev --prefix bridge/tencent` to run {tests}. ********\n"
        );
        return false;
    }
    for pkg in ["@tencentcloud/chat", "ws"] {
        let p = bridge_dir()
            .join("node_modules")
            .join(pkg)
            .join("package.json");
        assert!(
            p.exists(),
            "the bridge's packages are not installed ({} is missing): run \
             `npm ci --omit=dev --prefix bridge/tencent`",
            p.display()
        );
    }
    true
}
