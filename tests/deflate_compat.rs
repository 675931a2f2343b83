#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Differential test: our deflate against Node.js's `zlib.deflateSync`, which the
//! official ticket generator uses. Needs `node` on PATH (CI installs it).

use std::process::Command;

/// A node script that makes many deterministic inputs of varied shape and prints, per
/// line, the hex of each input and of `zlib.deflateSync(input)`.
const SCRIPT: &str = r#"
const zlib = require('zlib');
let seed = 12345;
function rnd(n) { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed % n; }
const inputs = [Buffer.alloc(0), Buffer.from('a'), Buffer.from('ab'), Buffer.from('abc'),
  Buffer.from('abcabcabc'), Buffer.alloc(1000), Buffer.alloc(70000, 7)];
const words = ['TLS.', 'sig', '":"', 'identifier', 'expire', '0', '1', '=', '/', '+', 'user', '\u00e9\u4e2d', '{', '}'];
for (let i = 0; i < 400; i++) {
  const kind = i % 4;
  const len = [rnd(64), rnd(600), rnd(5000), rnd(40000)][rnd(i < 300 ? 3 : 4)];
  let b;
  if (kind === 0) { b = Buffer.alloc(len); for (let j = 0; j < len; j++) b[j] = rnd(256); }
  else if (kind === 1) { const a = 1 + rnd(6); b = Buffer.alloc(len); for (let j = 0; j < len; j++) b[j] = 97 + rnd(a); }
  else if (kind === 2) { let s = ''; while (Buffer.byteLength(s) < len) s += words[rnd(words.length)]; b = Buffer.from(s); }
  else { const b64 = Buffer.alloc(len); for (let j = 0; j < len; j++) b64[j] = rnd(256);
         b = Buffer.from(JSON.stringify({'TLS.ver': '2.0', 'TLS.userbuf': b64.toString('base64'), 'TLS.sig': 'x'})); }
  inputs.push(b);
}
for (const b of inputs) console.log(b.toString('hex') + ' ' + zlib.deflateSync(b).toString('hex'));
"#;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn deflate_matches_node_byte_for_byte() {
    let out = Command::new("node")
        .arg("-e")
        .arg(SCRIPT)
        .output()
        .expect("this test needs `node` on PATH (Node.js 18 or later)");
    assert!(
        out.status.success(),
        "node failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut checked = 0;
    let mut failures = Vec::new();
    for line in text.lines() {
        let (input, expected) = line.split_once(' ').unwrap();
        let input = hex(input);
        let ours = imlink::usersig::deflate::zlib_compress(&input);
        if ours != hex(expected) {
            failures.push(format!("#{checked} ({} bytes)", input.len()));
        }
        checked += 1;
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} inputs compress differently from node: {}",
        failures.len(),
        failures.join(", ")
    );
    assert!(checked > 400);
}
