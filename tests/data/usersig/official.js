// Drives Tencent's official UserSig generator, the npm package `tls-sig-api-v2`, for
// imlink's tests. PKG is a directory where the package is installed
// (`npm install --no-audit --no-fund --prefix PKG tls-sig-api-v2@1.0.2`).
//
//   node official.js golden PKG   prints the golden vectors (golden.json) for CASES below
//   node official.js gen PKG      stdin: JSON array of requests; stdout: JSON array of
//                                 {ticket, userbuf} made by the package
//   node official.js check PKG    stdin: JSON array of {ticket, sdkappid, key}; stdout: JSON
//                                 array of {json, mac} or {error}: the ticket inflated with
//                                 Node.js's zlib and the MAC the package computes for its
//                                 fields, or why that failed
//
// A request is {sdkappid, key, identifier, time, expire, call}; `call` is null for
// genUserSig, {room, privilege} for genPrivateMapKey, {roomstr, privilege} for
// genPrivateMapKeyWithStringRoomID. `Date.now` is pinned to `time` for each request, so
// the same request always gives the same JSON and MAC. `userbuf` is the hex of the
// userbuf the package signed, or null.
'use strict';
const zlib = require('zlib');
const path = require('path');

const [mode, pkg] = process.argv.slice(2);
if (!['golden', 'gen', 'check'].includes(mode) || !pkg) {
  console.error('usage: node official.js golden|gen|check PKG');
  process.exit(2);
}
const { Api } = require(path.resolve(pkg, 'node_modules', 'tls-sig-api-v2'));
const version = require(path.resolve(pkg, 'node_modules', 'tls-sig-api-v2', 'package.json')).version;

const HEX_KEY = '5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e';
// [name, sdkappid, key, identifier, time, expire, call]
const CASES = [
  ['docs example', 1400000001, 'K', 'alice', 1764000000, 86400, null],
  ['package test key, 180 days', 1400000000, HEX_KEY, 'xiaojun', 1700000000, 180 * 86400, null],
  ['private map key', 1400000000, HEX_KEY, 'xiaojun', 1700000000, 180 * 86400, { room: 10000, privilege: 255 }],
  ['private map key, string room', 1400000000, HEX_KEY, 'xiaojun', 1700000000, 180 * 86400, { roomstr: '1000000040', privilege: 255 }],
  ['underscore id, 5 minutes', 1400123456, 'K', 'bob_01', 1764000000, 300, null],
  ['dash id, 1 second', 1400123456, HEX_KEY, 'user-with-dash', 1764000000, 1, null],
  ['CJK id, non-ASCII key', 1400000001, 'clé-秘密-🔑', '张三', 1764000000, 86400, null],
  ['emoji id', 1400000001, 'K', 'emoji 🙂 user', 1764000000, 86400, null],
  ['32-byte id', 20000001, 'K', 'administrator_with_a_long_id_012', 1764000000, 86400, null],
  ['200-byte id', 1400000001, HEX_KEY, 'long_'.repeat(40), 1764000000, 86400, null],
  ['quote and backslash in id', 1400000001, 'K', 'a"quote\\back', 1764000000, 86400, null],
  ['control characters in id', 1400000001, 'K', 'tab\there\nnl\u0001\u001f\u007f', 1764000000, 86400, null],
  ['line separators and a tag in id', 1400000001, 'K', '\u2028\u2029</script>', 1764000000, 86400, null],
  ['empty key', 1400000001, '', 'alice', 1764000000, 86400, null],
  ['key with spaces and escapes', 1400000001, 'a key with spaces\tand\\escapes"', 'alice', 1764000000, 86400, null],
  ['zero lifetime', 1400000001, 'K', 'alice', 1764000000, 0, null],
  ['lifetime 2^31-1', 1400000001, 'K', 'alice', 1764000000, 2147483647, null],
  ['issued in 2100, ten years', 1400000001, 'K', 'alice', 4102444800, 315360000, null],
  ['issued at second 1', 1400000001, 'K', 'alice', 1, 86400, null],
  ['issued at the epoch', 1400000001, 'K', 'alice', 0, 86400, null],
  ['lifetime 4e15 s', 1400000001, 'K', 'alice', 1764000000, 4000000000000000, null],
  ['app id 1', 1, 'K', 'alice', 1764000000, 86400, null],
  ['app id 2^32-1', 4294967295, 'K', 'alice', 1764000000, 86400, null],
  ['app id 2^53-1', 9007199254740991, 'K', 'alice', 1764000000, 86400, null],
  ['private map key, CJK id', 1400000001, 'K', '张三', 1764000000, 86400, { room: 1234, privilege: 42 }],
  ['private map key, largest room', 1400123456, HEX_KEY, 'bob_01', 1764000000, 300, { room: 4294967295, privilege: 255 }],
  ['private map key, CJK string room', 1400000001, 'clé-秘密-🔑', 'alice', 1764000000, 600, { roomstr: '房间-1', privilege: 1 }],
];

function official(r) {
  const realNow = Date.now;
  Date.now = () => r.time * 1000;
  try {
    const api = new Api(r.sdkappid, r.key);
    if (r.call === null) return { ticket: api.genUserSig(r.identifier, r.expire), userbuf: null };
    if ('room' in r.call) {
      const buf = api._genUserbuf(r.identifier, r.call.room, r.expire, r.call.privilege, 0, null);
      return { ticket: api.genPrivateMapKey(r.identifier, r.expire, r.call.room, r.call.privilege), userbuf: buf.toString('hex') };
    }
    const buf = api._genUserbuf(r.identifier, 0, r.expire, r.call.privilege, 0, r.call.roomstr);
    return {
      ticket: api.genPrivateMapKeyWithStringRoomID(r.identifier, r.expire, r.call.roomstr, r.call.privilege),
      userbuf: buf.toString('hex'),
    };
  } finally {
    Date.now = realNow;
  }
}

function inflate(ticket) {
  const b64 = ticket.replace(/\*/g, '+').replace(/-/g, '/').replace(/_/g, '=');
  return zlib.inflateSync(Buffer.from(b64, 'base64')).toString('utf8');
}

function check(c) {
  try {
    const json = inflate(c.ticket);
    const doc = JSON.parse(json);
    const userbuf = doc['TLS.userbuf'] === undefined ? null : doc['TLS.userbuf'];
    const mac = new Api(c.sdkappid, c.key)._hmacsha256(doc['TLS.identifier'], doc['TLS.time'], doc['TLS.expire'], userbuf);
    return { json, mac };
  } catch (e) {
    return { error: String(e) };
  }
}

function stdin() {
  return JSON.parse(require('fs').readFileSync(0, 'utf8'));
}

if (mode === 'golden') {
  const vectors = CASES.map(([name, sdkappid, key, identifier, time, expire, call]) => {
    const r = { sdkappid, key, identifier, time, expire, call };
    const { ticket, userbuf } = official(r);
    return { name, ...r, userbuf, ticket, json: inflate(ticket) };
  });
  const doc = { generator: `tls-sig-api-v2 ${version}`, node: process.version, vectors };
  process.stdout.write(JSON.stringify(doc, null, 1) + '\n');
} else if (mode === 'gen') {
  process.stdout.write(JSON.stringify(stdin().map(official)) + '\n');
} else {
  process.stdout.write(JSON.stringify(stdin().map(check)) + '\n');
}
