#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Compatibility with Tencent's official generator, the npm package `tls-sig-api-v2`:
//! for the same inputs and clock our tickets must be byte-identical to its tickets, and
//! its tickets must verify here. The test installs the package with npm into a
//! temporary directory, so it needs `node`, `npm` and the npm registry (CI has them);
//! without them it fails rather than passing silently.

use imlink::usersig;
use std::process::Command;

/// One ticket request: app id, key, user, expiry, issue time, optional (room, privileges).
struct Case {
    app: u64,
    key: &'static str,
    user: &'static str,
    expire: i64,
    time: i64,
    map: Option<(u32, u32)>,
}

fn cases() -> Vec<Case> {
    let keys = [
        "K",
        "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e",
        "clé-秘密-🔑",
        "a key with spaces\tand\\escapes\"",
    ];
    let users = [
        "alice",
        "bob_01",
        "user-with-dash",
        "张三",
        "a\"quote\\back",
        "x",
        "administrator_with_a_long_id_0123",
    ];
    let apps = [1400000001u64, 1400123456, 20000001, 1];
    let expires = [86400i64, 1, 300, 180 * 86400, 0];
    let times = [1764000000i64, 1700000000, 1, 2000000000];
    let mut out = Vec::new();
    for (i, user) in users.iter().enumerate() {
        for (j, key) in keys.iter().enumerate() {
            let k = i * keys.len() + j;
            out.push(Case {
                app: apps[k % apps.len()],
                key,
                user,
                expire: expires[k % expires.len()],
                time: times[(k / 2) % times.len()],
                map: match k % 3 {
                    0 => None,
                    1 => Some((1234, 255)),
                    _ => Some((k as u32 * 7919, 42)),
                },
            });
        }
    }
    out
}

/// Runs the official package over `cases` with `Date.now` pinned per case; returns, per
/// case, the ticket and the hex of the userbuf it signed (empty when none).
fn official(cases: &[Case]) -> Vec<(String, String)> {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().to_str().unwrap();
    let install = Command::new("npm")
        .args([
            "install",
            "--silent",
            "--no-audit",
            "--no-fund",
            "--prefix",
            prefix,
            "tls-sig-api-v2@1.0.2",
        ])
        .output()
        .expect(
            "this test needs `npm` on PATH and the npm registry reachable (CI installs Node.js)",
        );
    assert!(
        install.status.success(),
        "npm install tls-sig-api-v2 failed: {}",
        String::from_utf8_lossy(&install.stderr)
    );
    let input: Vec<serde_json::Value> = cases
        .iter()
        .map(|c| {
            serde_json::json!({"app": c.app, "key": c.key, "user": c.user, "expire": c.expire, "time": c.time,
                               "room": c.map.map(|m| m.0), "priv": c.map.map(|m| m.1)})
        })
        .collect();
    let script = r#"
const { Api } = require(process.argv[1] + '/node_modules/tls-sig-api-v2');
const cases = JSON.parse(process.argv[2]);
for (const c of cases) {
  Date.now = () => c.time * 1000;
  const api = new Api(c.app, c.key);
  let sig, buf = '';
  if (c.room === null) sig = api.genUserSig(c.user, c.expire);
  else {
    buf = api._genUserbuf(c.user, c.room, c.expire, c.priv, 0, null).toString('hex');
    sig = api.genPrivateMapKey(c.user, c.expire, c.room, c.priv);
  }
  console.log(sig + ' ' + buf);
}
"#;
    let out = Command::new("node")
        .args([
            "-e",
            script,
            prefix,
            &serde_json::to_string(&input).unwrap(),
        ])
        .output()
        .expect("this test needs `node` on PATH (CI installs Node.js)");
    assert!(
        out.status.success(),
        "node failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (s, b) = l.split_once(' ').unwrap();
            (s.to_owned(), b.to_owned())
        })
        .collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn tickets_equal_the_official_generator_and_its_tickets_verify() {
    let cases = cases();
    let theirs = official(&cases);
    assert_eq!(theirs.len(), cases.len());
    for (c, (sig, buf)) in cases.iter().zip(&theirs) {
        let userbuf = (!buf.is_empty()).then(|| unhex(buf));
        assert_eq!(c.map.is_some(), userbuf.is_some());
        let ours = usersig::generate_with_userbuf(
            c.app,
            c.key,
            c.user,
            c.expire,
            c.time,
            userbuf.as_deref(),
        );
        assert_eq!(
            &ours, sig,
            "app {} user {:?} key {:?} expire {} time {}",
            c.app, c.user, c.key, c.expire, c.time
        );
        let t = usersig::verify(sig, c.app, c.key, c.user, c.time + c.expire)
            .unwrap_or_else(|e| panic!("official ticket for {:?} refused: {e}", c.user));
        assert_eq!(t.userbuf.is_some(), c.map.is_some());
        assert_eq!(
            usersig::verify(sig, c.app, c.key, c.user, c.time + c.expire + 1)
                .unwrap_err()
                .code(),
            70001
        );
    }
}
