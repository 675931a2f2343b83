//! The daemon ↔ server WebSocket protocol (see `docs/protocol.md`).
//!
//! Every frame is one JSON object in a text message. The client sends requests
//! `{"seq":N,"cmd":"…","body":{…}}`; the server answers each with
//! `{"seq":N,"code":0,"desc":"","body":{…}}` and sends pushes `{"push":"…","body":{…}}`.

use serde::{Deserialize, Serialize};

use super::profile::{ProfileJson, UserFullInfo};

/// The protocol versions this build speaks, newest last.
pub const PROTOCOL_VERSIONS: &[u32] = &[1];
/// The path of the access endpoint.
pub const CONNECT_PATH: &str = "/v1/connect";
/// The largest frame either side accepts, in bytes.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;

/// The platform a client logs in from; its class decides the multi-device policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Platform {
    /// Android phone (mobile).
    Android,
    /// iPhone (mobile).
    #[serde(rename = "iPhone")]
    IPhone,
    /// iPad (mobile).
    #[serde(rename = "iPad")]
    IPad,
    /// Windows PC (desktop).
    Windows,
    /// Mac (desktop).
    Mac,
    /// Linux (desktop).
    Linux,
    /// Web browser.
    Web,
}

/// The class of a platform, as the login policies see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlatformClass {
    /// Android, iPhone, iPad.
    Mobile,
    /// Windows, Mac, Linux.
    Desktop,
    /// Web.
    Web,
}

impl Platform {
    /// Every platform.
    pub const ALL: [Platform; 7] = [
        Platform::Android,
        Platform::IPhone,
        Platform::IPad,
        Platform::Windows,
        Platform::Mac,
        Platform::Linux,
        Platform::Web,
    ];

    /// The name used on the wire and in configuration (`Linux`, `iPhone`, …).
    pub fn name(self) -> &'static str {
        match self {
            Platform::Android => "Android",
            Platform::IPhone => "iPhone",
            Platform::IPad => "iPad",
            Platform::Windows => "Windows",
            Platform::Mac => "Mac",
            Platform::Linux => "Linux",
            Platform::Web => "Web",
        }
    }

    /// Parses a name, case-insensitively.
    pub fn parse(s: &str) -> Result<Platform, String> {
        Platform::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                format!("unknown platform {s:?}: expected Android, iPhone, iPad, Windows, Mac, Linux or Web")
            })
    }

    /// The policy class.
    pub fn class(self) -> PlatformClass {
        match self {
            Platform::Android | Platform::IPhone | Platform::IPad => PlatformClass::Mobile,
            Platform::Windows | Platform::Mac | Platform::Linux => PlatformClass::Desktop,
            Platform::Web => PlatformClass::Web,
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Platform {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Platform::parse(s)
    }
}

/// A client → server request frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// Chosen by the client, ≥ 1, unique among its requests in flight; echoed in the response.
    pub seq: u64,
    /// The command.
    #[serde(flatten)]
    pub cmd: Command,
}

/// The commands of the protocol, with their bodies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", content = "body", rename_all = "camelCase")]
pub enum Command {
    /// Log in (or re-authenticate the same user with a new ticket).
    Login(LoginBody),
    /// Log out; succeeds also when nobody is logged in on this connection.
    Logout(Empty),
    /// Application heartbeat; answers the server time.
    Heartbeat(Empty),
    /// The logged-in user's profile.
    GetSelfInfo(Empty),
}

/// An empty JSON object body `{}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

/// Body of `login`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginBody {
    /// The UserID: 1 to 32 bytes of printable ASCII, no spaces.
    #[serde(rename = "userID")]
    pub user_id: String,
    /// The UserSig ticket.
    #[serde(rename = "userSig")]
    pub user_sig: String,
    /// True when the client re-establishes a login it held before (after a reconnect or
    /// a daemon restart) rather than logging in because someone asked to. A displaced
    /// instance that comes back with `auto: true` is refused with 6208.
    #[serde(default)]
    pub auto: bool,
}

/// A server → client response frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// The `seq` of the request; 0 when the request's seq could not be read.
    pub seq: u64,
    /// 0 on success, else a Tencent error code.
    pub code: i32,
    /// Empty on success, else a human-readable reason.
    #[serde(default)]
    pub desc: String,
    /// The result; `{}` when there is none.
    #[serde(default)]
    pub body: serde_json::Value,
}

/// Body of a successful `login` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginResult {
    /// The logged-in UserID.
    #[serde(rename = "userID")]
    pub user_id: String,
    /// Server time, unix milliseconds.
    #[serde(rename = "serverTime")]
    pub server_time: i64,
    /// When the ticket stops being valid, unix seconds (`TLS.time + TLS.expire`).
    #[serde(rename = "userSigExpireAt")]
    pub user_sig_expire_at: i64,
    /// The user's profile.
    pub info: UserFullInfo,
}

/// Body of a `heartbeat` response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatResult {
    /// Server time, unix milliseconds.
    #[serde(rename = "serverTime")]
    pub server_time: i64,
}

/// Body of a `getSelfInfo` response and of the `selfInfoUpdated` push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InfoBody {
    /// The profile.
    pub info: UserFullInfo,
}

/// A server → client push frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "push", content = "body", rename_all = "camelCase")]
pub enum Push {
    /// The first frame of every connection: the negotiated version and server limits.
    Hello(Hello),
    /// The connection's login was ended by a newer login elsewhere or by a REST kick.
    /// The connection stays open and is logged out.
    KickedOffline(Kicked),
    /// The connection's ticket ran out while online; it is logged out.
    UserSigExpired(Empty),
    /// The user's profile changed.
    SelfInfoUpdated(InfoBody),
}

/// Body of `hello`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hello {
    /// The protocol version the server chose.
    pub version: u32,
    /// Server time, unix milliseconds.
    pub server_time: i64,
    /// The server closes a connection it has heard nothing from for this long.
    pub idle_timeout_ms: u64,
    /// The largest frame the server accepts.
    pub max_frame_bytes: usize,
}

/// Why a login was ended by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KickReason {
    /// A newer login on a conflicting platform.
    MultiDevice,
    /// `im_open_login_svc/kick`.
    RestApi,
}

/// Body of `kickedOffline`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kicked {
    /// Why.
    pub reason: KickReason,
    /// The platform of the login that displaced this one (`multi_device` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

/// Any frame the server sends: a response or a push.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ServerFrame {
    /// A push (has `push`).
    Push(Push),
    /// A response (has `seq` and `code`).
    Response(Response),
}

/// Why a server frame could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// Not JSON, or not an object of the expected members.
    Unreadable(String),
    /// A push this build does not know (ignored by the reader).
    UnknownPush(String),
}

/// A member name of a server frame.
enum Key {
    Push,
    Seq,
    Code,
    Desc,
    Body,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Key;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a member name")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(match v {
                    "push" => Key::Push,
                    "seq" => Key::Seq,
                    "code" => Key::Code,
                    "desc" => Key::Desc,
                    "body" => Key::Body,
                    _ => Key::Other,
                })
            }
        }
        d.deserialize_identifier(V)
    }
}

/// The pushes this build reads, by their `push` name.
#[derive(Clone, Copy)]
enum PushName {
    Hello,
    KickedOffline,
    UserSigExpired,
    SelfInfoUpdated,
}

/// The `push` member: a known name, or the (cleaned) unknown one.
struct PushMember(Result<PushName, String>);

impl<'de> Deserialize<'de> for PushMember {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<PushMember, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = PushMember;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a push name")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<PushMember, E> {
                Ok(PushMember(match v {
                    "hello" => Ok(PushName::Hello),
                    "kickedOffline" => Ok(PushName::KickedOffline),
                    "userSigExpired" => Ok(PushName::UserSigExpired),
                    "selfInfoUpdated" => Ok(PushName::SelfInfoUpdated),
                    other => Err(crate::text::clean(other).into_owned()),
                }))
            }
        }
        d.deserialize_str(V)
    }
}

/// A frame's body: read straight into its type when the `push` name came first (the
/// server's order), kept raw otherwise.
enum BodyMember<'a> {
    Push(Push),
    Raw(&'a serde_json::value::RawValue),
}

/// The members of a server frame.
#[derive(Default)]
struct Members<'a> {
    push: Option<PushMember>,
    seq: Option<u64>,
    code: Option<i32>,
    desc: Option<String>,
    body: Option<BodyMember<'a>>,
}

/// Reads a push body of a known name.
fn push_body<'de, D: serde::Deserializer<'de>>(name: PushName, d: D) -> Result<Push, D::Error> {
    Ok(match name {
        PushName::Hello => Push::Hello(Hello::deserialize(d)?),
        PushName::KickedOffline => Push::KickedOffline(Kicked::deserialize(d)?),
        PushName::UserSigExpired => {
            serde::de::IgnoredAny::deserialize(d)?;
            Push::UserSigExpired(Empty {})
        }
        PushName::SelfInfoUpdated => Push::SelfInfoUpdated(InfoBody::deserialize(d)?),
    })
}

/// [`push_body`] as a seed, for a member value.
struct PushSeed(PushName);

impl<'de> serde::de::DeserializeSeed<'de> for PushSeed {
    type Value = Push;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Push, D::Error> {
        push_body(self.0, d)
    }
}

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Members<'de>, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a frame object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Members<'de>, A::Error> {
                use serde::de::Error;
                let mut m = Members::default();
                // Each member once, as the derived reader had it (a null counts).
                let mut seen = [false; 5];
                while let Some(key) = map.next_key::<Key>()? {
                    let (i, name) = match key {
                        Key::Push => (0, "push"),
                        Key::Seq => (1, "seq"),
                        Key::Code => (2, "code"),
                        Key::Desc => (3, "desc"),
                        Key::Body => (4, "body"),
                        Key::Other => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                            continue;
                        }
                    };
                    if std::mem::replace(&mut seen[i], true) {
                        return Err(A::Error::duplicate_field(name));
                    }
                    match key {
                        Key::Push => m.push = map.next_value()?,
                        Key::Seq => m.seq = map.next_value()?,
                        Key::Code => m.code = map.next_value()?,
                        Key::Desc => m.desc = map.next_value()?,
                        Key::Body => {
                            m.body = match &m.push {
                                Some(PushMember(Ok(name))) => {
                                    Some(BodyMember::Push(map.next_value_seed(PushSeed(*name))?))
                                }
                                // A null body is no body, as before.
                                _ => map.next_value::<Option<_>>()?.map(BodyMember::Raw),
                            }
                        }
                        Key::Other => {}
                    }
                }
                Ok(m)
            }
        }
        d.deserialize_map(V)
    }
}

/// What a `selfInfoUpdated` push frame holds before its profile (and `}}` after it).
const SELF_INFO_HEAD: &[u8] = b"{\"push\":\"selfInfoUpdated\",\"body\":{\"info\":";

/// The `selfInfoUpdated` push frame of `info`, as the server writes it: serde's bytes for
/// `Push::SelfInfoUpdated`, written by hand (a burst of pushes is all of these), the form
/// [`self_info_push`] takes whole.
pub fn self_info_frame(info: &UserFullInfo) -> String {
    let mut v = Vec::with_capacity(512);
    v.extend_from_slice(SELF_INFO_HEAD);
    info.write_json(&mut v);
    v.extend_from_slice(b"}}");
    String::from_utf8(v).unwrap_or_else(|_| String::from("{}"))
}

/// The `selfInfoUpdated` frames of one profile in which only some `customInfo` values
/// change from push to push, each to an integer: the frame is written once, and each push
/// is its pieces with the numbers put in (a burst of pushes; the devserver's
/// `/faults/push-burst`). Each frame is byte for byte [`self_info_frame`] of the profile
/// holding those numbers.
#[derive(Debug)]
pub struct StampedFrames<'k, const K: usize> {
    /// The frame as first written.
    text: String,
    /// Where each number goes in it, and which of the K it is, in order.
    holes: Vec<(std::ops::Range<usize>, usize)>,
    keys: [&'k str; K],
}

impl<'k, const K: usize> StampedFrames<'k, K> {
    /// The frames of `info` with the values of `keys` changing (each key is added to its
    /// `customInfo` when missing; [`StampedFrames::store`] gives it its value).
    pub fn new(info: &mut UserFullInfo, keys: [&'k str; K]) -> StampedFrames<'k, K> {
        for k in keys {
            if !info.custom_info.contains_key(k) {
                info.custom_info.insert(k.to_owned(), String::new());
            }
        }
        let mut v = Vec::with_capacity(512);
        v.extend_from_slice(SELF_INFO_HEAD);
        let mut holes = Vec::with_capacity(K);
        info.write_json_noting(&mut v, |k, range| {
            if let Some(which) = keys.iter().position(|x| *x == k) {
                holes.push((range, which));
            }
        });
        v.extend_from_slice(b"}}");
        StampedFrames {
            // Valid UTF-8 (the profile's strings are), cut only next to the ASCII quotes
            // around the values.
            text: String::from_utf8(v).unwrap_or_default(),
            holes,
            keys,
        }
    }

    /// The frame of the profile holding `values` at the keys.
    pub fn frame(&self, values: &[i64; K]) -> String {
        let mut out = String::with_capacity(self.text.len() + 20 * K);
        let mut from = 0;
        for (range, which) in &self.holes {
            out.push_str(self.text.get(from..range.start).unwrap_or_default());
            out.push_str(itoa::Buffer::new().format(values[*which]));
            from = range.end;
        }
        out.push_str(self.text.get(from..).unwrap_or_default());
        out
    }

    /// Gives the profile `values` at the keys.
    pub fn store(&self, info: &mut UserFullInfo, values: &[i64; K]) {
        for (k, v) in self.keys.iter().zip(values) {
            let mut n = itoa::Buffer::new();
            let n = n.format(*v);
            match info.custom_info.get_mut(*k) {
                Some(text) => {
                    text.clear();
                    text.push_str(n);
                }
                None => {
                    info.custom_info.insert((*k).to_owned(), n.to_owned());
                }
            }
        }
    }
}

/// The profile of a `selfInfoUpdated` push written as the server writes it,
/// `{"push":"selfInfoUpdated","body":{"info":PROFILE}}` with PROFILE canonical (see
/// [`ProfileJson::from_canonical`]), taken without building the profile; `None` for
/// anything else, which [`ServerFrame::parse`] then reads. What this takes, that reads as
/// the same profile (the tests and the `ws_frame` fuzz target hold it to that).
pub fn self_info_push(frame: &bytes::Bytes) -> Option<ProfileJson> {
    let end = frame.len().checked_sub(2)?;
    if !frame.starts_with(SELF_INFO_HEAD) || !frame.ends_with(b"}}") || end < SELF_INFO_HEAD.len() {
        return None;
    }
    ProfileJson::from_canonical(frame.slice(SELF_INFO_HEAD.len()..end))
}

impl ServerFrame {
    /// Reads a server frame in one pass: a push body goes straight into the type its
    /// `push` name calls for when the name comes first, as the server sends it (kept raw
    /// and read after otherwise). (`serde(untagged)` would buffer the whole frame into a
    /// generic tree and try each variant, and a raw body read twice: the daemon's hottest
    /// path when the server pushes a burst.)
    pub fn parse(text: &[u8]) -> Result<ServerFrame, FrameError> {
        let unreadable = |e: serde_json::Error| FrameError::Unreadable(e.to_string());
        // One UTF-8 check of the whole frame (fast on ASCII) instead of one per string.
        let text = std::str::from_utf8(text)
            .map_err(|e| FrameError::Unreadable(format!("not UTF-8: {e}")))?;
        let m: Members = serde_json::from_str(text).map_err(unreadable)?;
        if let Some(PushMember(name)) = m.push {
            let name = name.map_err(FrameError::UnknownPush)?;
            let push = match m.body {
                Some(BodyMember::Push(p)) => p,
                Some(BodyMember::Raw(b)) => {
                    let mut d = serde_json::Deserializer::from_str(b.get());
                    push_body(name, &mut d).map_err(unreadable)?
                }
                None => {
                    let mut d = serde_json::Deserializer::from_str("{}");
                    push_body(name, &mut d).map_err(unreadable)?
                }
            };
            return Ok(ServerFrame::Push(push));
        }
        match (m.seq, m.code) {
            (Some(seq), Some(code)) => Ok(ServerFrame::Response(Response {
                seq,
                code,
                desc: m.desc.unwrap_or_default(),
                body: match m.body {
                    Some(BodyMember::Raw(b)) => {
                        serde_json::from_str(b.get()).map_err(unreadable)?
                    }
                    Some(BodyMember::Push(_)) | None => serde_json::Value::Null,
                },
            })),
            _ => Err(FrameError::Unreadable(
                "neither a push nor a response (seq and code)".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn request_frames_look_as_documented() {
        let r = Request {
            seq: 7,
            cmd: Command::Login(LoginBody {
                user_id: "alice".into(),
                user_sig: "SIG".into(),
                auto: false,
            }),
        };
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({"seq":7,"cmd":"login","body":{"userID":"alice","userSig":"SIG","auto":false}})
        );
        let hb = Request {
            seq: 8,
            cmd: Command::Heartbeat(Empty {}),
        };
        assert_eq!(
            serde_json::to_value(&hb).unwrap(),
            json!({"seq":8,"cmd":"heartbeat","body":{}})
        );
        let back: Request =
            serde_json::from_value(json!({"seq":9,"cmd":"getSelfInfo","body":{}})).unwrap();
        assert_eq!(back.cmd, Command::GetSelfInfo(Empty {}));
    }

    #[test]
    fn server_frames_parse_as_push_or_response() {
        let f: ServerFrame = serde_json::from_value(
            json!({"push":"kickedOffline","body":{"reason":"multi_device","platform":"Linux"}}),
        )
        .unwrap();
        assert_eq!(
            f,
            ServerFrame::Push(Push::KickedOffline(Kicked {
                reason: KickReason::MultiDevice,
                platform: Some(Platform::Linux)
            }))
        );
        let f: ServerFrame =
            serde_json::from_value(json!({"seq":3,"code":70001,"desc":"expired","body":{}}))
                .unwrap();
        assert!(matches!(
            f,
            ServerFrame::Response(Response {
                seq: 3,
                code: 70001,
                ..
            })
        ));
        let f: ServerFrame =
            serde_json::from_value(json!({"push":"userSigExpired","body":{}})).unwrap();
        assert_eq!(f, ServerFrame::Push(Push::UserSigExpired(Empty {})));
    }

    #[test]
    fn the_one_pass_reader_agrees_with_serde() {
        for f in [
            json!({"push":"kickedOffline","body":{"reason":"multi_device","platform":"Linux"}}),
            json!({"push":"userSigExpired","body":{}}),
            json!({"push":"selfInfoUpdated","body":{"info":{"userID":"a","nickName":"A","customInfo":{"k":"v"}}}}),
            json!({"push":"hello","body":{"version":1,"serverTime":5,"idleTimeoutMs":1,"maxFrameBytes":2}}),
            json!({"seq":3,"code":70001,"desc":"expired","body":{"x":1}}),
            json!({"seq":3,"code":0}),
        ] {
            let text = f.to_string();
            let slow: ServerFrame = serde_json::from_str(&text).unwrap();
            assert_eq!(ServerFrame::parse(text.as_bytes()).unwrap(), slow, "{text}");
        }
        // The server's own order, `push` before `body`: the body is read in the same pass.
        for text in [
            r#"{"push":"kickedOffline","body":{"reason":"rest_api"}}"#,
            r#"{"push":"userSigExpired","body":{"anything":[1,2]}}"#,
            r#"{"push":"selfInfoUpdated","body":{"info":{"userID":"a\"b","customInfo":{"k":"v\n"},"gender":2}},"x":1}"#,
            r#"{"push":"hello","body":{"version":1,"serverTime":5,"idleTimeoutMs":1,"maxFrameBytes":2}}"#,
            r#"{"push":null,"seq":4,"code":0,"body":null}"#,
        ] {
            let slow: ServerFrame = serde_json::from_str(text).expect(text);
            assert_eq!(ServerFrame::parse(text.as_bytes()).unwrap(), slow, "{text}");
        }
        // A null body is no body (serde's untagged reader refuses it; this one never did).
        assert_eq!(
            ServerFrame::parse(br#"{"push":"userSigExpired","body":null}"#).unwrap(),
            ServerFrame::Push(Push::UserSigExpired(Empty {}))
        );
        assert!(matches!(
            ServerFrame::parse(br#"{"push":"nonsense","body":{}}"#),
            Err(FrameError::UnknownPush(_))
        ));
        for bad in [
            &b"[1]"[..],
            b"{}",
            b"{\"seq\":1}",
            b"{\"push\":\"hello\",\"body\":{}}",
            b"\xff",
            br#"{"push":"hello","push":"hello","body":{}}"#,
            br#"{"push":"selfInfoUpdated","body":{"info":{"gender":"x"}}}"#,
            br#"{"push":"selfInfoUpdated","body":null}"#,
            br#"{"seq":1,"code":0,"body":{}} trailing"#,
        ] {
            assert!(ServerFrame::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn stamped_frames_are_the_frames_of_the_stamped_profile() {
        let keys = [
            "Tag_Profile_Custom_B",
            "Tag_Profile_Custom_Seq",
            "Tag_Profile_Custom_Z",
        ];
        let mut info = UserFullInfo {
            user_id: "al\"ice\u{e9}".into(),
            nick_name: "N\n\u{1}".into(),
            self_signature: "\"Tag_Profile_Custom_Seq\":\"".into(),
            level: 7,
            ..Default::default()
        };
        for (k, v) in [
            ("Tag_Profile_Custom_A", "a\\"),
            ("Tag_Profile_Custom_Seq", "old"),
            ("Tag_Profile_Custom_Zz", "\u{2028}"),
        ] {
            info.custom_info.insert(k.into(), v.into());
        }
        let frames = StampedFrames::new(&mut info, keys);
        for values in [[0, 1, 2], [-5, i64::MAX, i64::MIN], [123456789, 0, 42]] {
            let mut want = info.clone();
            frames.store(&mut want, &values);
            assert_eq!(want.custom_info.len(), 5);
            assert_eq!(
                want.custom_info["Tag_Profile_Custom_Seq"],
                values[1].to_string()
            );
            assert_eq!(frames.frame(&values), self_info_frame(&want), "{values:?}");
            let serde =
                serde_json::to_string(&Push::SelfInfoUpdated(InfoBody { info: want })).unwrap();
            assert_eq!(frames.frame(&values), serde);
        }
    }

    #[test]
    fn a_profile_push_as_the_server_writes_it_is_taken_whole() {
        let mut info = UserFullInfo {
            user_id: "alice".into(),
            nick_name: "Alice".into(),
            gender: 2,
            ..Default::default()
        };
        info.custom_info
            .insert("Tag_Profile_Custom_Seq".into(), "7".into());
        let frame =
            serde_json::to_vec(&Push::SelfInfoUpdated(InfoBody { info: info.clone() })).unwrap();
        assert_eq!(self_info_frame(&info).as_bytes(), &frame[..]);
        let j = self_info_push(&bytes::Bytes::from(frame.clone())).expect("taken");
        assert_eq!(j, ProfileJson::from_info(&info));
        assert_eq!(j.to_info(), Some(info.clone()));
        assert_eq!(
            ServerFrame::parse(&frame).unwrap(),
            ServerFrame::Push(Push::SelfInfoUpdated(InfoBody { info }))
        );
        // Any other form goes to the full reader.
        let text = String::from_utf8(frame).unwrap();
        for other in [
            text.replace("{\"push\"", "{ \"push\""),
            text.replace("}}", "},\"x\":1}"),
            text.replace("\"alice\"", "\"al\\u0069ce\""),
            text.replace("selfInfoUpdated", "kickedOffline"),
            text[..text.len() - 1].to_string(),
            String::from("{\"push\":\"selfInfoUpdated\",\"body\":{\"info\":}}"),
            String::from("}}"),
        ] {
            assert!(
                self_info_push(&bytes::Bytes::from(other.clone())).is_none(),
                "{other}"
            );
        }
    }

    #[test]
    fn platforms_have_classes() {
        assert_eq!(Platform::parse("iphone").unwrap(), Platform::IPhone);
        assert_eq!(Platform::Linux.class(), PlatformClass::Desktop);
        assert_eq!(Platform::IPad.class(), PlatformClass::Mobile);
        assert_eq!(Platform::Web.class(), PlatformClass::Web);
        assert!(Platform::parse("BeOS").is_err());
    }
}
