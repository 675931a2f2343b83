#!/usr/bin/env python3
"""Writes the checked-in seed corpora of the fuzzing targets into fuzz/seeds/<target>/.

Run from the repository root: python3 fuzz/make_seeds.py. Each seed is a small,
meaningful input (a valid request, batch, frame, configuration, ticket or session file,
and a few near misses); libFuzzer mutates from there. Tickets come from the golden vectors
in tests/data/usersig/golden.json.
"""
import gzip, hashlib, json, os, struct, zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "seeds")
GOLDEN = json.load(open(os.path.join(ROOT, "tests", "data", "usersig", "golden.json")))
TICKET = GOLDEN["vectors"][0]["ticket"]


def write(target, seeds):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    for old in os.listdir(d):
        os.remove(os.path.join(d, old))
    for s in seeds:
        if isinstance(s, str):
            s = s.encode()
        name = hashlib.sha1(s).hexdigest()
        with open(os.path.join(d, name), "wb") as f:
            f.write(s)


def req(method, params=None, id=1):
    r = {"jsonrpc": "2.0", "id": id, "method": method}
    if params is not None:
        r["params"] = params
    return json.dumps(r, separators=(",", ":"))


rpc = [
    req("getLoginStatus"),
    req("getVersion", id="abc"),
    req("status", id=None),
    '{"jsonrpc":"2.0","method":"reconnect"}',
    req("initSDK", {"sdkAppID": 1400000001, "logLevel": "V2TIM_LOG_INFO"}),
    req("initSDK", [1400000001, 4]),
    req("login", {"userID": "alice", "userSig": TICKET}),
    req("login", ["alice", TICKET], id=-123456789012345678901234567890),
    req("logout"),
    req("unInitSDK"),
    req("getLoginUser"),
    req("getServerTime"),
    req("getSelfInfo"),
    req("subscribe", {"since": 0}),
    req("subscribe", {"events": ["onConnectSuccess", "onKickedOffline", "eventsLost"], "since": 18446744073709551615}),
    req("unsubscribe", {"subscription": 1}),
    "[" + ",".join([req("getVersion", id=1), req("getLoginStatus", id=2), '{"jsonrpc":"2.0","method":"reconnect"}', "1"]) + "]",
    "[]",
    '{"jsonrpc":"2.0","id":1,"method":"a","method":"b"}',
    '{"jsonrpc":"1.0","id":{"x":1},"method":"getVersion"}',
    '{"jsonrpc":"2.0","id":7,"method":"login","params":{"userID":"al\\u0000ice","userSig":"x","userSig":"y"}}',
    '{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]',
    '{"jsonrpc":"2.0","id":1.5e300,"method":"getLoginStatus","params":"x"}',
]

lines_stream = [
    b"\x20\x80" + "\n".join(rpc[:4]).encode() + b"\n",
    b"\x05\x40short\nlonger than five\r\n\r\nx",
    b"\x3f\x10" + b"a" * 100 + b"\nok\n",
]


def push(name, body):
    return json.dumps({"push": name, "body": body}, separators=(",", ":"))


info = {"userID": "alice", "nickName": "Alice", "faceUrl": "https://x/y.png", "selfSignature": "hi",
        "gender": 2, "allowType": 1, "birthday": 19900101, "level": 3, "role": 1,
        "customInfo": {"Tag_Profile_Custom_Seq": "1", "Tag_Profile_Custom_SentAtMs": "1764000000123"}}
frames = [
    push("hello", {"version": 1, "serverTime": 1764000000123, "idleTimeoutMs": 60000, "maxFrameBytes": 65536}),
    push("kickedOffline", {"reason": "multi_device", "platform": "Linux"}),
    push("kickedOffline", {"reason": "rest_api"}),
    push("userSigExpired", {}),
    push("selfInfoUpdated", {"info": info}),
    json.dumps({"seq": 12, "code": 0, "desc": "", "body": {"userID": "alice", "serverTime": 1764000000123, "userSigExpireAt": 1764086400, "info": info}}),
    json.dumps({"seq": 12, "code": 70001, "desc": "UserSig expired at 1764086400 (now 1764090000)", "body": {}}),
    json.dumps({"seq": 3, "code": 0, "body": {"serverTime": 1764000000123}}),
    push("nonsense\u0007", {}),
    # The server's own form: members in order, customInfo keys ascending (the fast path).
    push("selfInfoUpdated", {"info": {"userID": "alice", "nickName": "Alice", "faceUrl": "", "selfSignature": "hi",
         "gender": 2, "allowType": 0, "customInfo": {"Tag_Profile_Custom_Seq": "1", "Tag_Profile_Custom_SentAtMs": "1764000000123"},
         "role": 0, "level": 3, "birthday": 19900101}}),
]


def ws_frame(opcode, payload, fin=True):
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        head = bytes([b0, n])
    elif n < 65536:
        head = bytes([b0, 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, 127]) + struct.pack(">Q", n)
    return head + payload


hello = frames[0].encode()
big = push("selfInfoUpdated", {"info": dict(info, selfSignature="s" * 300)}).encode()
streams = [
    b"\x80" + ws_frame(1, hello),
    b"\x40" + ws_frame(1, hello) + ws_frame(9, b"ping") + ws_frame(1, frames[5].encode()),
    b"\x10" + ws_frame(1, big[:100], fin=False) + ws_frame(9, b"") + ws_frame(0, big[100:200], fin=False) + ws_frame(0, big[200:]),
    b"\x20" + ws_frame(2, b"\x00\x01") + ws_frame(10, b"pong") + ws_frame(8, struct.pack(">H", 1001) + b"server going away"),
    b"\x00" + bytes([0x81, 127]) + struct.pack(">Q", 1 << 20),
    b"\x90" + ws_frame(0, b"orphan continuation"),
]

HEAD = {"servcmd": "im_open_status.wslogin", "seq": 1, "identifier": "alice", "usersig": TICKET,
        "sdkappid": 1400000001, "platform": 7, "instanceid": "0123456789abcdef0123456789abcdef"}
login = json.dumps({"head": HEAD, "body": {"State": "Online", "StatusReportType": 0}}).encode()
web = [
    login,
    json.dumps({"head": {"servcmd": "im_open_status.wslogin", "seq": 2, "a2": "imlinkA2.eyJ4IjoxfQ.AAAA", "tinyid": "144115"}, "body": {}}).encode(),
    json.dumps({"head": {"servcmd": "heartbeat.alive", "seq": 3}, "body": {}}).encode(),
    json.dumps({"head": {"servcmd": "profile.portrait_get_all", "seq": 4}, "body": {"To_Account": ["alice", "bob"], "TagList": ["Tag_Profile_IM_Nick"]}}).encode(),
    json.dumps({"head": {"servcmd": "imopenstat.tim_web_report_v2", "seq": 5}, "body": {"x": [1, 2, 3]}}).encode(),
    b"COMP" + gzip.compress(login),
    b"COMP" + zlib.compress(json.dumps({"head": {"servcmd": "sns.friend_get", "seq": 6}}).encode()),
    b'{"head":{"servcmd":"bad cmd!","seq":1},"body":[]}',
    b'{"head":{"servcmd":"x","seq":-1}}',
]

bridge = [
    '{"event":"hello","protocol":1,"sdkVersion":"3.6.6","node":"v20.20.2"}',
    '{"id":2,"ok":{"repeatLogin":false}}',
    '{"id":3,"err":{"code":2024,"message":"network \\u001b[31m error"}}',
    '{"id":4,"ok":{"info":' + json.dumps(info) + '}}',
    '{"event":"netState","state":"connecting"}',
    '{"event":"kicked","type":"multipleAccount"}',
    '{"event":"profile","info":' + json.dumps(info) + '}',
    '{"event":"ready"}',
    '{"event":"notReady"}',
    '{"event":"error","code":1,"message":"m"}',
    '{"event":"protocolError","message":"bad line"}',
]

default_toml = open(os.path.join(ROOT, "etc", "imlinkd.toml")).read()
config = [
    default_toml,
    '[sdk]\napp_id = 1400000001\nlog_level = "debug"\n\n[server]\nurl = "ws://127.0.0.1:8600/v1/connect"\nheartbeat_interval_ms = 250\nheartbeat_timeout_ms = 750\n\n[reconnect]\ninitial_ms = 100\nmax_ms = 2000\n\n[api]\nsocket = "/tmp/imlink-fuzz/imlinkd.sock"\nallow_uids = [0, 1000]\n\n[state]\ndir = "/tmp/imlink-fuzz/state"\n',
    '[server]\nbackend = "tencent"\n[tencent]\nnode = "/usr/bin/node"\n',
    '[server]\nurll = "x"\n',
    '[sdk]\napp_id = 1\n\x00IMLINK_SERVER__URL=wss://im.example.net/v1/connect\nIMLINK_API__MAX_CLIENTS=64\nXDG_RUNTIME_DIR=/run/user/1000\n',
    '\x00IMLINK_SDK__LOG_LEVEL=V2TIM_LOG_WARN\nIMLINK_RECONNECT__JITTER=0.5\n',
]

tickets = [v["ticket"] for v in GOLDEN["vectors"]] + ["", "eJyrVgrxCdYrSy1SslIy0jNQ0gHzM1NS80oy0zLBwok5mcmpUInilOzEgoLMFCUrQxMDCDCEyJRk5qYqWRmam0HFIaKpFQWZRalKVhYgYagRmelKVkqRxhn"]

session = [
    json.dumps({"instanceID": "0123456789abcdef0123456789abcdef", "sdkAppID": 1400000001, "userID": "alice", "userSig": TICKET, "loggedIn": True}, indent=2),
    json.dumps({"instanceID": "0123456789abcdef0123456789abcdef", "sdkAppID": 1400000001, "userID": None, "userSig": None, "loggedIn": False}, indent=2),
    json.dumps({"sdkAppID": 1400000001, "loggedIn": True}),
    json.dumps({"instanceID": "XYZ", "userID": TICKET, "loggedIn": "yes"}),
    "[]",
]

write("rpc", rpc)
write("api_lines", lines_stream)
write("ws_frame", frames)
write("ws_stream", streams)
write("web_frame", web)
write("bridge_line", bridge)
write("config", config)
write("usersig", tickets)
write("session_file", session)
