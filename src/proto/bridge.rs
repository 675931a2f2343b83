//! The bridge protocol: JSON lines between `imlinkd` and the Node program that runs
//! Tencent's official SDK (`bridge/tencent/index.js`; `docs/tencent.md`, "Bridge protocol").
//!
//! The daemon writes [`Request`]s, one per line, each with a fresh `id`:
//!
//! ```json
//! {"id":1,"op":"init","sdkAppID":1400000001,"proxyServer":"ws://127.0.0.1:8600","logLevel":1}
//! {"id":2,"op":"login","userID":"alice","userSig":"eJw…"}
//! {"id":3,"op":"ping"}
//! ```
//!
//! and reads [`FromBridge`] lines: an answer to one request, exactly once per `id`, or an
//! event:
//!
//! ```json
//! {"event":"hello","protocol":1,"sdkVersion":"3.6.6","node":"v20.20.2"}
//! {"id":2,"ok":{"repeatLogin":false}}
//! {"id":3,"err":{"code":2024,"message":"…"}}
//! {"event":"netState","state":"connecting"}
//! {"event":"kicked","type":"multipleAccount"}
//! ```
//!
//! Everything read is hostile until checked: a line longer than [`MAX_LINE_BYTES`] is
//! dropped, numbers are read into fixed-size types (out of range = not valid), strings
//! that are kept are bounded ([`Hello::plausible`], [`plausible_info`]), and a line that
//! is not valid protocol is reported, never acted on.

use serde::{Deserialize, Serialize};

use super::UserFullInfo;

/// The protocol version this daemon speaks (the bridge's `hello.protocol`).
pub const PROTOCOL: u32 = 1;

/// The longest line read from the bridge, in bytes (a profile with many custom fields
/// fits many times over).
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// The longest `sdkVersion` / `node` text accepted in a `hello`.
pub const MAX_VERSION_CHARS: usize = 32;

/// The package whose version `package.json` pins and `hello.sdkVersion` reports.
pub const SDK_PACKAGE: &str = "@tencentcloud/chat";

/// A request line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Request {
    /// Matches the answer.
    pub id: u64,
    /// The operation and its parameters (members of the same object).
    #[serde(flatten)]
    pub op: Op,
}

/// The operations.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum Op {
    /// Create the SDK instance (it opens its socket at once).
    Init {
        /// SDKAppID.
        #[serde(rename = "sdkAppID")]
        sdk_app_id: u64,
        /// The SDK's `proxyServer`.
        #[serde(rename = "proxyServer", skip_serializing_if = "Option::is_none")]
        proxy_server: Option<String>,
        /// The SDK's log level (−1 … 4).
        #[serde(rename = "logLevel")]
        log_level: i8,
    },
    /// Log in.
    Login {
        /// UserID.
        #[serde(rename = "userID")]
        user_id: String,
        /// UserSig.
        #[serde(rename = "userSig")]
        user_sig: String,
    },
    /// Log out.
    Logout,
    /// The logged-in user's profile.
    GetMyProfile,
    /// Liveness of the bridge itself (no network).
    Ping,
    /// Destroy the SDK and exit.
    Destroy,
}

impl std::fmt::Debug for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Op {
    /// The `op` name.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Init { .. } => "init",
            Op::Login { .. } => "login",
            Op::Logout => "logout",
            Op::GetMyProfile => "getMyProfile",
            Op::Ping => "ping",
            Op::Destroy => "destroy",
        }
    }
}

/// One line from the bridge.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum FromBridge {
    /// The answer to request `id`.
    Answer(Answer),
    /// An event.
    Event(Event),
}

/// An answer: `{"id":N,"ok":{…}}` or `{"id":N,"err":{"code":…,"message":…}}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Answer {
    /// The request's id.
    pub id: u64,
    /// Its outcome.
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// Success (the op's result, read by the op's type) or failure.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    /// `ok`.
    Ok(serde_json::Value),
    /// `err`.
    Err(Failure),
}

/// A refusal: the SDK's code (or the bridge's 6013/6017/6099) and its message.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Failure {
    /// The code.
    pub code: i32,
    /// The message (hostile text: cleaned before use).
    #[serde(default)]
    pub message: String,
}

/// `login`'s result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LoginOk {
    /// The SDK was already logged in as that user.
    pub repeat_login: bool,
}

/// `getMyProfile`'s result.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ProfileOk {
    /// The profile.
    pub info: UserFullInfo,
}

/// The events.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "event", rename_all = "camelCase")]
pub enum Event {
    /// The first line of every run.
    Hello(Hello),
    /// The SDK's `NET_STATE_CHANGE`.
    NetState {
        /// The new state.
        state: NetState,
    },
    /// `SDK_READY`: logged in and usable.
    Ready,
    /// `SDK_NOT_READY`: logged out (logout, kick, expiry, destroy).
    NotReady,
    /// `KICKED_OUT`.
    Kicked {
        /// Why.
        #[serde(rename = "type")]
        kind: KickType,
    },
    /// `PROFILE_UPDATED` for the logged-in user's own profile.
    Profile {
        /// The profile.
        info: UserFullInfo,
    },
    /// The SDK's `ERROR` event.
    Error {
        /// Its code.
        code: i32,
        /// Its message (hostile text).
        #[serde(default)]
        message: String,
    },
    /// The bridge could not read a line of ours.
    ProtocolError {
        /// Why (hostile text).
        #[serde(default)]
        message: String,
    },
}

/// `{"event":"hello","protocol":1,"sdkVersion":"3.6.6","node":"v20.20.2"}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hello {
    /// The protocol version.
    pub protocol: u32,
    /// The loaded SDK's version.
    pub sdk_version: String,
    /// Node's `process.version`.
    pub node: String,
}

impl Hello {
    /// Short printable versions (a hostile bridge may send anything).
    pub fn plausible(&self) -> bool {
        let ok = |s: &str| {
            !s.is_empty()
                && s.chars().count() <= MAX_VERSION_CHARS
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+' | '_'))
        };
        ok(&self.sdk_version) && ok(&self.node)
    }

    /// Node's major version (`v20.20.2` → 20).
    pub fn node_major(&self) -> Option<u32> {
        self.node
            .strip_prefix('v')
            .and_then(|v| v.split('.').next())
            .and_then(|m| m.parse().ok())
    }
}

/// The SDK's network state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum NetState {
    /// The socket is open (not necessarily logged in).
    Connected,
    /// It is (re)opening its socket.
    Connecting,
    /// It gave up: no socket until it next sends something.
    Disconnected,
}

/// The `KICKED_OUT` types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum KickType {
    /// Another login of the same account on a conflicting instance.
    #[serde(rename = "multipleAccount")]
    MultipleAccount,
    /// Another device under the multi-device rules.
    #[serde(rename = "multipleDevice")]
    MultipleDevice,
    /// A REST API kick.
    #[serde(rename = "REST_API_Kick")]
    RestApi,
    /// The ticket ran out while logged in.
    #[serde(rename = "userSigExpired")]
    UserSigExpired,
}

impl KickType {
    /// The bridge's name.
    pub fn name(self) -> &'static str {
        match self {
            KickType::MultipleAccount => "multipleAccount",
            KickType::MultipleDevice => "multipleDevice",
            KickType::RestApi => "REST_API_Kick",
            KickType::UserSigExpired => "userSigExpired",
        }
    }
}

/// The most custom profile fields kept.
pub const MAX_CUSTOM_FIELDS: usize = 256;
/// The longest profile text (nickname, URL, signature, custom key or value), in bytes.
pub const MAX_PROFILE_TEXT_BYTES: usize = 8 * 1024;

/// A profile within bounds: a valid UserID, texts of at most [`MAX_PROFILE_TEXT_BYTES`],
/// at most [`MAX_CUSTOM_FIELDS`] custom fields, gender and allowType 0 … 2.
pub fn plausible_info(i: &UserFullInfo) -> bool {
    let text = |s: &str| s.len() <= MAX_PROFILE_TEXT_BYTES;
    super::api::valid_user_id(&i.user_id)
        && text(&i.nick_name)
        && text(&i.face_url)
        && text(&i.self_signature)
        && i.gender <= 2
        && i.allow_type <= 2
        && i.custom_info.len() <= MAX_CUSTOM_FIELDS
        && i.custom_info.iter().all(|(k, v)| text(k) && text(v))
}

/// Reads one line; the error is serde's message (hostile line: clean it before logging).
pub fn parse_line(line: &[u8]) -> Result<FromBridge, String> {
    serde_json::from_slice(line).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_are_one_flat_object() {
        let r = Request {
            id: 7,
            op: Op::Init {
                sdk_app_id: 1400000001,
                proxy_server: Some("ws://127.0.0.1:1".into()),
                log_level: 1,
            },
        };
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({"id":7,"op":"init","sdkAppID":1400000001u64,"proxyServer":"ws://127.0.0.1:1","logLevel":1})
        );
        let r = Request {
            id: 8,
            op: Op::Login {
                user_id: "alice".into(),
                user_sig: "sig".into(),
            },
        };
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({"id":8,"op":"login","userID":"alice","userSig":"sig"})
        );
        for (op, name) in [
            (Op::Logout, "logout"),
            (Op::GetMyProfile, "getMyProfile"),
            (Op::Ping, "ping"),
            (Op::Destroy, "destroy"),
        ] {
            assert_eq!(
                serde_json::to_value(Request { id: 1, op }).unwrap(),
                json!({"id":1,"op":name})
            );
        }
        // The ticket never shows in a Debug rendering.
        let login = Op::Login {
            user_id: "a".into(),
            user_sig: "secret-ticket".into(),
        };
        assert!(!format!("{login:?}").contains("secret"));
    }

    #[test]
    fn answers_and_events_are_read() {
        let p = |s: &str| parse_line(s.as_bytes());
        assert_eq!(
            p(r#"{"id":2,"ok":{"repeatLogin":true}}"#).unwrap(),
            FromBridge::Answer(Answer {
                id: 2,
                outcome: Outcome::Ok(json!({"repeatLogin":true}))
            })
        );
        assert_eq!(
            p(r#"{"id":3,"err":{"code":70001,"message":"expired"}}"#).unwrap(),
            FromBridge::Answer(Answer {
                id: 3,
                outcome: Outcome::Err(Failure {
                    code: 70001,
                    message: "expired".into()
                })
            })
        );
        assert_eq!(
            p(r#"{"event":"hello","protocol":1,"sdkVersion":"3.6.6","node":"v20.20.2"}"#).unwrap(),
            FromBridge::Event(Event::Hello(Hello {
                protocol: 1,
                sdk_version: "3.6.6".into(),
                node: "v20.20.2".into()
            }))
        );
        assert_eq!(
            p(r#"{"event":"netState","state":"disconnected"}"#).unwrap(),
            FromBridge::Event(Event::NetState {
                state: NetState::Disconnected
            })
        );
        assert_eq!(
            p(r#"{"event":"ready"}"#).unwrap(),
            FromBridge::Event(Event::Ready)
        );
        assert_eq!(
            p(r#"{"event":"kicked","type":"REST_API_Kick"}"#).unwrap(),
            FromBridge::Event(Event::Kicked {
                kind: KickType::RestApi
            })
        );
        let e = p(r#"{"event":"profile","info":{"userID":"alice","nickName":"A","gender":2,"customInfo":{"Tag_Profile_Custom_X":"y"}}}"#).unwrap();
        let FromBridge::Event(Event::Profile { info }) = e else {
            panic!("{e:?}")
        };
        assert_eq!((info.user_id.as_str(), info.gender), ("alice", 2));
        assert!(plausible_info(&info));
    }

    #[test]
    fn hostile_lines_are_not_valid_protocol() {
        for bad in [
            "garbage",
            "[]",
            "{}",
            r#"{"id":-1,"ok":{}}"#,
            r#"{"id":"1","ok":{}}"#,
            r#"{"id":1}"#,
            r#"{"id":1,"err":{"code":"x"}}"#,
            r#"{"id":1,"err":{"code":99999999999}}"#,
            r#"{"event":"netState","state":"sideways"}"#,
            r#"{"event":"kicked","type":"byAliens"}"#,
            r#"{"event":"hello","protocol":-1,"sdkVersion":"1","node":"v1"}"#,
            r#"{"event":"profile","info":{"gender":300}}"#,
            r#"{"event":"nope"}"#,
        ] {
            assert!(parse_line(bad.as_bytes()).is_err(), "{bad}");
        }
        let h = |v: &str| Hello {
            protocol: 1,
            sdk_version: v.into(),
            node: "v20.1.0".into(),
        };
        assert!(h("3.6.6").plausible());
        assert!(!h("").plausible());
        assert!(!h("3.6.6\n{\"forged\":1}").plausible());
        assert!(!h(&"9".repeat(33)).plausible());
        assert_eq!(h("1").node_major(), Some(20));
        let mut i = UserFullInfo {
            user_id: "alice".into(),
            ..UserFullInfo::default()
        };
        assert!(plausible_info(&i));
        i.nick_name = "x".repeat(MAX_PROFILE_TEXT_BYTES + 1);
        assert!(!plausible_info(&i));
        i.nick_name.clear();
        i.user_id = "bad id".into();
        assert!(!plausible_info(&i));
    }
}
