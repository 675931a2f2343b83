#!/usr/bin/env node
// imlink's bridge to Tencent Cloud Chat: runs the official JavaScript SDK
// (@tencentcloud/chat) and drives it over JSON lines on stdin/stdout. The protocol is
// described in docs/tencent.md, "Bridge protocol". stdout carries protocol lines only;
// everything else (the SDK's own log included) goes to stderr, with UserSigs redacted.
'use strict';

const PROTOCOL = 1;
// The longest request line accepted (bytes, without the newline).
const MAX_LINE = 64 * 1024;
// The longest stderr line written (characters); longer ones are cut.
const MAX_LOG_LINE = 8 * 1024;
// Bridge-level error codes (the SDK's own codes pass through unchanged).
const ERR_NOT_INITIALISED = 6013;
const ERR_INVALID_REQUEST = 6017;
const ERR_SDK_NO_CODE = 6099;
const ERR_SHUTTING_DOWN = 6013;

// ---- stdout is the protocol's; nothing else may write there -------------------------
const writeOut = process.stdout.write.bind(process.stdout);
const writeErr = process.stderr.write.bind(process.stderr);
const util = require('util');

// Exact strings never to write (UserSigs, A2 keys): the last MAX_SECRETS seen, and the
// same list longest first for replacing.
const MAX_SECRETS = 64;
const seen = [];
let secrets = [];
function addSecret(s) {
  if (typeof s === 'string' && s.length >= 8 && !seen.includes(s)) {
    seen.push(s);
    if (seen.length > MAX_SECRETS) seen.shift();
    secrets = seen.slice().sort((a, b) => b.length - a.length);
  }
}
function scrub(text) {
  let s = String(text);
  for (const secret of secrets) s = s.split(secret).join('[redacted]');
  // Whatever follows a name like usersig= or "a2":"…" (query strings, JSON, log text).
  return s.replace(/\b(usersig|user_sig|a2key|a2)(["']?\s*[=:]\s*["']?)[^&\s"',}]+/gi, '$1$2[redacted]');
}
function logLine(text) {
  let s = scrub(text).replace(/[\r\n]+/g, ' ');
  if (s.length > MAX_LOG_LINE) s = s.slice(0, MAX_LOG_LINE) + ' …[cut]';
  writeErr(s + '\n');
}
for (const k of ['log', 'info', 'warn', 'error', 'debug', 'trace', 'dir', 'table']) {
  console[k] = (...args) => logLine(util.format(...args));
}
process.stdout.write = (chunk, ...rest) => {
  logLine(`stdout: ${chunk}`);
  const cb = rest.find((x) => typeof x === 'function');
  if (cb) cb();
  return true;
};
function emit(obj) {
  writeOut(JSON.stringify(obj) + '\n');
}

process.on('uncaughtException', (e) => {
  logLine(`imlink-tencent-bridge: fatal: ${(e && e.stack) || e}`);
  process.exit(70);
});
// The SDK starts some requests without handling their failure (its re-login after a
// reconnect): log them, do not die.
process.on('unhandledRejection', (e) => {
  const code = e && e.code !== undefined ? ` code ${e.code}` : '';
  logLine(`imlink-tencent-bridge: unhandled SDK rejection${code}: ${(e && e.message) || e}`);
});

// ---- the SDK ------------------------------------------------------------------------
if (typeof globalThis.WebSocket === 'undefined') {
  try {
    globalThis.WebSocket = require('ws');
  } catch (e) {
    logLine(`imlink-tencent-bridge: no WebSocket: Node ${process.version} has none built in and the ws package is not installed (run: npm ci --omit=dev --prefix ${__dirname})`);
    process.exit(69);
  }
}
let TencentCloudChat;
let sdkVersion;
try {
  TencentCloudChat = require('@tencentcloud/chat');
  sdkVersion = TencentCloudChat.VERSION || require('@tencentcloud/chat/package.json').version;
} catch (e) {
  logLine(`imlink-tencent-bridge: cannot load @tencentcloud/chat (run: npm ci --omit=dev --prefix ${__dirname}): ${e && e.message}`);
  process.exit(69);
}

const hello = { event: 'hello', protocol: PROTOCOL, sdkVersion: String(sdkVersion), node: process.version };
if (process.argv.includes('--version')) {
  emit(hello);
  process.exit(0);
}

const EVENT = TencentCloudChat.EVENT;
const TYPES = TencentCloudChat.TYPES;
let chat = null;
let initParams = null;
let exiting = false;

const GENDER = { [TYPES.GENDER_UNKNOWN]: 0, [TYPES.GENDER_MALE]: 1, [TYPES.GENDER_FEMALE]: 2 };
const ALLOW = {
  [TYPES.ALLOW_TYPE_ALLOW_ANY]: 0,
  [TYPES.ALLOW_TYPE_NEED_CONFIRM]: 1,
  [TYPES.ALLOW_TYPE_DENY_ANY]: 2,
};
const KICK = {
  [TYPES.KICKED_OUT_MULT_ACCOUNT]: 'multipleAccount',
  [TYPES.KICKED_OUT_MULT_DEVICE]: 'multipleDevice',
  [TYPES.KICKED_OUT_REST_API]: 'REST_API_Kick',
  [TYPES.KICKED_OUT_USERSIG_EXPIRED]: 'userSigExpired',
};
const NET = {
  [TYPES.NET_STATE_CONNECTED]: 'connected',
  [TYPES.NET_STATE_CONNECTING]: 'connecting',
  [TYPES.NET_STATE_DISCONNECTED]: 'disconnected',
};

function uint(v) {
  const n = Number(v);
  return Number.isSafeInteger(n) && n >= 0 ? n : 0;
}
function str(v) {
  return typeof v === 'string' ? v : v === undefined || v === null ? '' : String(v);
}

// The SDK's Profile → V2TimUserFullInfo.
function fullInfo(p) {
  p = p || {};
  const customInfo = {};
  if (Array.isArray(p.profileCustomField)) {
    for (const f of p.profileCustomField) {
      if (f && typeof f.key === 'string') customInfo[f.key] = str(f.value);
    }
  }
  return {
    userID: str(p.userID),
    nickName: str(p.nick),
    faceUrl: str(p.avatar),
    selfSignature: str(p.selfSignature),
    gender: GENDER[p.gender] !== undefined ? GENDER[p.gender] : 0,
    allowType: ALLOW[p.allowType] !== undefined ? ALLOW[p.allowType] : 0,
    customInfo,
    role: uint(p.role),
    level: uint(p.level),
    birthday: uint(p.birthday),
  };
}

function sdkError(e) {
  const code = e && Number.isSafeInteger(e.code) ? e.code : ERR_SDK_NO_CODE;
  return { code, message: scrub(str((e && e.message) || e || 'SDK error')) };
}

function listen(c) {
  c.on(EVENT.NET_STATE_CHANGE, (ev) => {
    const state = NET[ev && ev.data && ev.data.state];
    if (state) emit({ event: 'netState', state });
  });
  c.on(EVENT.SDK_READY, () => emit({ event: 'ready' }));
  c.on(EVENT.SDK_NOT_READY, () => emit({ event: 'notReady' }));
  c.on(EVENT.KICKED_OUT, (ev) => {
    const type = KICK[ev && ev.data && ev.data.type];
    if (type) emit({ event: 'kicked', type });
    else logLine(`imlink-tencent-bridge: KICKED_OUT of unknown type ${JSON.stringify(ev && ev.data)}`);
  });
  c.on(EVENT.PROFILE_UPDATED, (ev) => {
    const me = c.getLoginUser();
    const list = ev && Array.isArray(ev.data) ? ev.data : [];
    for (const p of list) {
      if (p && me && p.userID === me) emit({ event: 'profile', info: fullInfo(p) });
    }
  });
  c.on(EVENT.ERROR, (ev) => {
    const d = (ev && ev.data) || {};
    emit({ event: 'error', code: Number.isSafeInteger(d.code) ? d.code : ERR_SDK_NO_CODE, message: scrub(str(d.message)) });
  });
}

class BadRequest extends Error {}
function need(cond, why) {
  if (!cond) throw new BadRequest(why);
}
function requireChat() {
  if (!chat) {
    const e = new Error('not initialised: send init first');
    e.code = ERR_NOT_INITIALISED;
    throw e;
  }
  return chat;
}

const ops = {
  async init(p) {
    need(Number.isSafeInteger(p.sdkAppID) && p.sdkAppID > 0 && p.sdkAppID <= 0xffffffff, 'sdkAppID must be a positive 32-bit integer');
    need(p.proxyServer === undefined || (typeof p.proxyServer === 'string' && /^wss?:\/\/[^\s]{1,2040}$/.test(p.proxyServer)), 'proxyServer must be a ws:// or wss:// URL');
    need(p.logLevel === undefined || (Number.isInteger(p.logLevel) && p.logLevel >= -1 && p.logLevel <= 4), 'logLevel must be -1..4');
    const params = JSON.stringify([p.sdkAppID, p.proxyServer || null]);
    if (chat) {
      need(params === initParams, 'already initialised with other parameters');
      if (p.logLevel !== undefined) chat.setLogLevel(p.logLevel);
      return { alreadyInitialised: true };
    }
    const options = { SDKAppID: p.sdkAppID };
    if (p.proxyServer) options.proxyServer = p.proxyServer;
    const c = TencentCloudChat.create(options);
    // The SDK's default level (0, debug) logs every frame; 1 is its "release" level.
    c.setLogLevel(p.logLevel === undefined ? 1 : p.logLevel);
    listen(c);
    chat = c;
    initParams = params;
    return {};
  },
  async login(p) {
    need(typeof p.userID === 'string' && p.userID.length > 0 && p.userID.length <= 64, 'userID must be a non-empty string');
    need(typeof p.userSig === 'string' && p.userSig.length > 0 && p.userSig.length <= 16384, 'userSig must be a non-empty string');
    addSecret(p.userSig);
    const c = requireChat();
    const r = await c.login({ userID: p.userID, userSig: p.userSig });
    const data = (r && r.data) || {};
    addSecret(data.a2Key);
    return { repeatLogin: data.repeatLogin === true };
  },
  async logout() {
    await requireChat().logout();
    return {};
  },
  async getMyProfile() {
    const r = await requireChat().getMyProfile();
    return { info: fullInfo(r && r.data) };
  },
  async ping() {
    return {};
  },
  async destroy() {
    await shutdown();
    return {};
  },
};

async function shutdown() {
  if (chat) {
    const c = chat;
    chat = null;
    try {
      // The SDK's destroy logs out first and rejects when that fails (not logged in);
      // it tears down its socket and timers either way.
      await c.destroy();
    } catch (e) {
      const code = e && e.code !== undefined ? ` code ${e.code}` : '';
      logLine(`imlink-tencent-bridge: destroy: the SDK's logout failed${code}: ${(e && e.message) || ''}`);
    }
  }
}

// Requests not answered yet: id → true. Every request is answered exactly once.
const pending = new Map();
let nextKey = 0;

function finish(key, id, reply) {
  if (!pending.has(key)) return;
  pending.delete(key);
  emit(Object.assign({ id }, reply));
}

// Answers what is still pending (the SDK is being destroyed), then exits 0.
function exitNow() {
  for (const [key, id] of pending) finish(key, id, { err: { code: ERR_SHUTTING_DOWN, message: 'the bridge is shutting down' } });
  process.exit(0);
}

function answer(id, op, fn) {
  const key = nextKey++;
  pending.set(key, id);
  Promise.resolve()
    .then(fn)
    .then(
      (ok) => finish(key, id, { ok: ok || {} }),
      (e) => {
        if (e instanceof BadRequest) finish(key, id, { err: { code: ERR_INVALID_REQUEST, message: e.message } });
        else finish(key, id, { err: sdkError(e) });
      },
    )
    .then(() => {
      if (op === 'destroy') exitNow();
    });
}

function handleLine(line) {
  if (line.trim() === '') return;
  let req;
  try {
    req = JSON.parse(line);
  } catch (e) {
    emit({ event: 'protocolError', message: 'request line is not JSON' });
    return;
  }
  if (req === null || typeof req !== 'object' || Array.isArray(req)) {
    emit({ event: 'protocolError', message: 'request must be a JSON object' });
    return;
  }
  const id = req.id;
  if (!Number.isSafeInteger(id) || id < 0) {
    emit({ event: 'protocolError', message: 'request id must be a non-negative integer' });
    return;
  }
  const op = req.op;
  if (typeof op !== 'string' || !Object.prototype.hasOwnProperty.call(ops, op)) {
    emit({ id, err: { code: ERR_INVALID_REQUEST, message: typeof op === 'string' && /^[A-Za-z]{1,32}$/.test(op) ? `unknown op ${op}` : 'op must name an operation' } });
    return;
  }
  if (exiting) {
    emit({ id, err: { code: ERR_SHUTTING_DOWN, message: 'the bridge is shutting down' } });
    return;
  }
  if (op === 'destroy') exiting = true;
  answer(id, op, () => ops[op](req));
}

// ---- stdin: JSON lines, bounded ---------------------------------------------------
let buf = Buffer.alloc(0);
let discarding = false;
process.stdin.on('data', (chunk) => {
  buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
  for (;;) {
    const nl = buf.indexOf(10);
    if (nl < 0) {
      if (buf.length > MAX_LINE) {
        if (!discarding) emit({ event: 'protocolError', message: `request line longer than ${MAX_LINE} bytes` });
        discarding = true;
        buf = Buffer.alloc(0);
      }
      return;
    }
    const line = buf.subarray(0, nl);
    buf = buf.subarray(nl + 1);
    if (discarding) {
      discarding = false;
      continue;
    }
    if (line.length > MAX_LINE) {
      emit({ event: 'protocolError', message: `request line longer than ${MAX_LINE} bytes` });
      continue;
    }
    handleLine(line.toString('utf8'));
  }
});
process.stdin.on('end', () => {
  if (exiting) return;
  exiting = true;
  logLine('imlink-tencent-bridge: stdin closed: destroying the SDK and exiting');
  shutdown().then(exitNow);
});

emit(hello);
