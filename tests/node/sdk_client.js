// Test client for tests/tencent_sdk.rs: the official SDK alone, no bridge and no daemon.
//
//   node tests/node/sdk_client.js BRIDGE_DIR
//
// BRIDGE_DIR holds node_modules with @tencentcloud/chat (and ws on Node < 22). Commands
// come as JSON lines on stdin; every stdout line is JSON:
//   {"op":"create","sdkAppID":N,"proxyServer":"ws://…"}  → {"reply":"create","ok":{}}
//   {"op":"login","userID":U,"userSig":S} → {"reply":"login","ok":<data>} or
//                                            {"reply":"login","err":{"code","message"}}
//   {"op":"logout"} / {"op":"getMyProfile"} / {"op":"getUserProfile","userIDList":[…]} /
//   {"op":"destroy"} (destroy then exits 0)
//   {"op":"createAgain","sdkAppID":N,"proxyServer":…} → {"reply":"createAgain","ok":{"same":B}}
//     (a second create in this process: B says whether it returned the first instance)
//   {"op":"loginAgain","userID":U,"userSig":S} → login through that second handle
//   {"op":"getLoginUser"} → {"reply":"getLoginUser","ok":{"userID":…}}
// and every SDK event as {"event":<EVENT key>,"data":…}; SDK_READY also carries
// "ms": milliseconds since the last login() call. The SDK's log goes to stderr.
'use strict';
const util = require('util');
const writeOut = process.stdout.write.bind(process.stdout);
for (const k of ['log', 'info', 'warn', 'error', 'debug', 'trace']) {
  console[k] = (...a) => process.stderr.write(util.format(...a) + '\n');
}
process.on('unhandledRejection', (e) => process.stderr.write(`unhandled rejection: ${e && e.code} ${e && e.message}\n`));
const out = (o) => writeOut(JSON.stringify(o) + '\n');

const dir = process.argv[2];
const req = (name) => require(require.resolve(name, { paths: [dir] }));
if (typeof globalThis.WebSocket === 'undefined') globalThis.WebSocket = req('ws');
const TencentCloudChat = req('@tencentcloud/chat');

let chat = null;
let again = null;
let loginAt = 0;
const ops = {
  create(r) {
    chat = TencentCloudChat.create({ SDKAppID: r.sdkAppID, proxyServer: r.proxyServer });
    chat.setLogLevel(r.logLevel === undefined ? 1 : r.logLevel);
    for (const [name, value] of Object.entries(TencentCloudChat.EVENT)) {
      chat.on(value, (ev) => {
        const o = { event: name, data: ev && ev.data !== undefined ? ev.data : null };
        if (name === 'SDK_READY') o.ms = Date.now() - loginAt;
        out(o);
      });
    }
    return Promise.resolve({});
  },
  login(r) {
    loginAt = Date.now();
    return chat.login({ userID: r.userID, userSig: r.userSig }).then((x) => x.data);
  },
  logout: () => chat.logout().then((x) => x.data),
  getMyProfile: () => chat.getMyProfile().then((x) => x.data),
  getUserProfile: (r) => chat.getUserProfile({ userIDList: r.userIDList }).then((x) => x.data),
  createAgain(r) {
    again = TencentCloudChat.create({ SDKAppID: r.sdkAppID, proxyServer: r.proxyServer });
    return Promise.resolve({ same: again === chat });
  },
  loginAgain: (r) => again.login({ userID: r.userID, userSig: r.userSig }).then((x) => x.data),
  getLoginUser: () => Promise.resolve({ userID: chat.getLoginUser() }),
  destroy: () => chat.destroy().catch(() => {}).then(() => process.exit(0)),
};

let buf = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => {
  buf += chunk;
  let nl;
  while ((nl = buf.indexOf('\n')) >= 0) {
    const r = JSON.parse(buf.slice(0, nl));
    buf = buf.slice(nl + 1);
    ops[r.op](r).then(
      (ok) => out({ reply: r.op, ok: ok === undefined ? {} : ok }),
      (e) => out({ reply: r.op, err: { code: e && e.code, message: String((e && e.message) || e) } }),
    );
  }
});
process.stdin.on('end', () => process.exit(0));
out({ event: 'started', sdkVersion: TencentCloudChat.VERSION });
