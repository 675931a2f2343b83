//! Tencent's numbers: error codes, login status values and log levels (DESIGN §2).
//!
//! Every error that crosses the JSON-RPC API or the WebSocket protocol carries one of
//! these codes, with Tencent's meaning, so that a script written against the SDK's
//! documentation reads the same numbers here.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Tencent IM error codes used by imlink, plus the JSON-RPC 2.0 standard codes.
pub mod code {
    /// Success.
    pub const OK: i32 = 0;
    /// The SDK is not initialised (`initSDK` first).
    pub const SDK_NOT_INITIALIZED: i32 = 6013;
    /// Not logged in.
    pub const NOT_LOGGED_IN: i32 = 6014;
    /// Invalid parameters: a missing or wrong-typed field, an empty UserSig.
    pub const INVALID_PARAMETERS: i32 = 6017;
    /// UserSig expired (client-side check before sending).
    pub const USERSIG_EXPIRED_LOCAL: i32 = 6206;
    /// Kicked off by another device: a re-login after being displaced is refused.
    pub const KICKED_BY_OTHER_DEVICE: i32 = 6208;
    /// Invalid UserID.
    pub const INVALID_USERID: i32 = 7003;
    /// A login is already in progress.
    pub const LOGIN_IN_PROGRESS: i32 = 7501;
    /// A logout is already in progress.
    pub const LOGOUT_IN_PROGRESS: i32 = 7502;
    /// Disconnected, or no connection within the login timeout.
    pub const DISCONNECTED: i32 = 9508;
    /// Connect timeout.
    pub const CONNECT_TIMEOUT: i32 = 9510;
    /// Request timed out waiting for the server.
    pub const REQUEST_TIMEOUT: i32 = 9520;
    /// UserSig expired (server).
    pub const USERSIG_EXPIRED: i32 = 70001;
    /// UserSig check failed: bad signature, truncated, undecodable.
    pub const USERSIG_CHECK_FAILED: i32 = 70003;
    /// The UserID of the request differs from the one in the UserSig.
    pub const USERSIG_USERID_MISMATCH: i32 = 70013;
    /// The SDKAppID of the request differs from the one in the UserSig.
    pub const USERSIG_SDKAPPID_MISMATCH: i32 = 70014;
    /// UserSig invalidated by a REST kick.
    pub const USERSIG_INVALIDATED: i32 = 70052;

    /// JSON-RPC: invalid JSON was received.
    pub const PARSE_ERROR: i32 = -32700;
    /// JSON-RPC: the JSON sent is not a valid request object.
    pub const INVALID_REQUEST: i32 = -32600;
    /// JSON-RPC: the method does not exist.
    pub const METHOD_NOT_FOUND: i32 = -32601;
    /// JSON-RPC: invalid method parameters (shape).
    pub const INVALID_PARAMS: i32 = -32602;
    /// JSON-RPC: internal error.
    pub const INTERNAL_ERROR: i32 = -32603;
    /// Too many clients (`api.max_clients`): the connection is refused.
    pub const TOO_MANY_CLIENTS: i32 = -32000;
    /// Access denied by the socket's access control lists.
    pub const ACCESS_DENIED: i32 = -32001;
    /// The change happened but could not be written to the state file (it is retried):
    /// a restart would not see it yet.
    pub const STATE_NOT_SAVED: i32 = -32002;
    /// The link cannot run: with `server.backend = "tencent"`, Node.js is missing, the
    /// bridge is not installed, or it loads another SDK version than it pins.
    pub const LINK_UNAVAILABLE: i32 = -32003;
    /// The UserSig provider (`auth.provider`) is not configured, or it failed: the
    /// program exited with an error, timed out or printed nothing usable; the URL did not
    /// answer with a ticket.
    pub const AUTH_PROVIDER_FAILED: i32 = -32004;
}

/// A one-line meaning for a code, for messages and `--help` texts.
pub fn describe(code: i32) -> &'static str {
    use code::*;
    match code {
        OK => "ok",
        SDK_NOT_INITIALIZED => "SDK not initialised",
        NOT_LOGGED_IN => "not logged in",
        INVALID_PARAMETERS => "invalid parameters",
        USERSIG_EXPIRED_LOCAL => "UserSig expired",
        KICKED_BY_OTHER_DEVICE => "kicked off by another device",
        INVALID_USERID => "invalid UserID",
        LOGIN_IN_PROGRESS => "a login is already in progress",
        LOGOUT_IN_PROGRESS => "a logout is already in progress",
        DISCONNECTED => "disconnected from the server",
        CONNECT_TIMEOUT => "connect timeout",
        REQUEST_TIMEOUT => "request timed out",
        USERSIG_EXPIRED => "UserSig expired",
        USERSIG_CHECK_FAILED => "UserSig check failed",
        USERSIG_USERID_MISMATCH => "UserID differs from the one in the UserSig",
        USERSIG_SDKAPPID_MISMATCH => "SDKAppID differs from the one in the UserSig",
        USERSIG_INVALIDATED => "UserSig invalidated by a kick",
        PARSE_ERROR => "parse error",
        INVALID_REQUEST => "invalid request",
        METHOD_NOT_FOUND => "method not found",
        INVALID_PARAMS => "invalid params",
        INTERNAL_ERROR => "internal error",
        ACCESS_DENIED => "access denied",
        TOO_MANY_CLIENTS => "too many clients",
        STATE_NOT_SAVED => "state not saved",
        LINK_UNAVAILABLE => "the link cannot run",
        AUTH_PROVIDER_FAILED => "the UserSig provider failed",
        _ => "error",
    }
}

/// `V2TIMLoginStatus`: the login status values of the SDK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "u8", try_from = "u8")]
pub enum LoginStatus {
    /// `V2TIM_STATUS_LOGINED` = 1.
    Logined = 1,
    /// `V2TIM_STATUS_LOGINING` = 2.
    Logining = 2,
    /// `V2TIM_STATUS_LOGOUT` = 3.
    Logout = 3,
}

impl LoginStatus {
    /// The SDK's constant name.
    pub fn name(self) -> &'static str {
        match self {
            LoginStatus::Logined => "V2TIM_STATUS_LOGINED",
            LoginStatus::Logining => "V2TIM_STATUS_LOGINING",
            LoginStatus::Logout => "V2TIM_STATUS_LOGOUT",
        }
    }
}

impl From<LoginStatus> for u8 {
    fn from(s: LoginStatus) -> u8 {
        s as u8
    }
}

impl TryFrom<u8> for LoginStatus {
    type Error = String;
    fn try_from(v: u8) -> Result<Self, String> {
        match v {
            1 => Ok(LoginStatus::Logined),
            2 => Ok(LoginStatus::Logining),
            3 => Ok(LoginStatus::Logout),
            other => Err(format!("unknown login status {other}")),
        }
    }
}

impl fmt::Display for LoginStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `LogLevelEnum`: the SDK's log levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LogLevel {
    /// `V2TIM_LOG_NONE` = 0: nothing is logged.
    None = 0,
    /// `V2TIM_LOG_DEBUG` = 3.
    Debug = 3,
    /// `V2TIM_LOG_INFO` = 4.
    Info = 4,
    /// `V2TIM_LOG_WARN` = 5.
    Warn = 5,
    /// `V2TIM_LOG_ERROR` = 6.
    Error = 6,
}

impl LogLevel {
    /// Every level, in the SDK's order.
    pub const ALL: [LogLevel; 5] = [
        LogLevel::None,
        LogLevel::Debug,
        LogLevel::Info,
        LogLevel::Warn,
        LogLevel::Error,
    ];

    /// The SDK's constant name, e.g. `V2TIM_LOG_INFO`.
    pub fn sdk_name(self) -> &'static str {
        match self {
            LogLevel::None => "V2TIM_LOG_NONE",
            LogLevel::Debug => "V2TIM_LOG_DEBUG",
            LogLevel::Info => "V2TIM_LOG_INFO",
            LogLevel::Warn => "V2TIM_LOG_WARN",
            LogLevel::Error => "V2TIM_LOG_ERROR",
        }
    }

    /// The short form, e.g. `info`.
    pub fn short_name(self) -> &'static str {
        match self {
            LogLevel::None => "none",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }

    /// The SDK's number.
    pub fn number(self) -> u8 {
        self as u8
    }

    /// Parses a level from its SDK name, its short form (case-insensitive) or its number.
    pub fn parse(s: &str) -> Result<LogLevel, String> {
        let t = s.trim();
        for l in LogLevel::ALL {
            if t.eq_ignore_ascii_case(l.sdk_name())
                || t.eq_ignore_ascii_case(l.short_name())
                || t == l.number().to_string()
            {
                return Ok(l);
            }
        }
        Err(format!(
            "unknown log level {t:?}: expected none|debug|info|warn|error, V2TIM_LOG_* or 0|3|4|5|6"
        ))
    }

    /// From the SDK's number.
    pub fn from_number(n: i64) -> Option<LogLevel> {
        LogLevel::ALL
            .into_iter()
            .find(|l| i64::from(l.number()) == n)
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.short_name())
    }
}

impl std::str::FromStr for LogLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        LogLevel::parse(s)
    }
}

impl Serialize for LogLevel {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.short_name())
    }
}

impl<'de> Deserialize<'de> for LogLevel {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        match &v {
            serde_json::Value::String(s) => LogLevel::parse(s).map_err(serde::de::Error::custom),
            serde_json::Value::Number(n) => {
                n.as_i64().and_then(LogLevel::from_number).ok_or_else(|| {
                    serde::de::Error::custom(format!("unknown log level {n}: expected 0|3|4|5|6"))
                })
            }
            other => Err(serde::de::Error::custom(format!(
                "log level must be a name or a number, not {other}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_levels_parse_every_spelling() {
        for (s, l) in [
            ("V2TIM_LOG_NONE", LogLevel::None),
            ("none", LogLevel::None),
            ("0", LogLevel::None),
            ("V2TIM_LOG_DEBUG", LogLevel::Debug),
            ("DEBUG", LogLevel::Debug),
            ("3", LogLevel::Debug),
            ("info", LogLevel::Info),
            ("4", LogLevel::Info),
            ("v2tim_log_warn", LogLevel::Warn),
            ("5", LogLevel::Warn),
            ("error", LogLevel::Error),
            ("6", LogLevel::Error),
        ] {
            assert_eq!(LogLevel::parse(s), Ok(l), "{s}");
        }
        for bad in ["", "1", "2", "7", "verbose", "V2TIM_LOG_TRACE"] {
            assert!(LogLevel::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn log_level_deserialises_names_and_numbers() {
        let l: LogLevel = serde_json::from_str("5").unwrap();
        assert_eq!(l, LogLevel::Warn);
        let l: LogLevel = serde_json::from_str("\"V2TIM_LOG_ERROR\"").unwrap();
        assert_eq!(l, LogLevel::Error);
        assert!(serde_json::from_str::<LogLevel>("2").is_err());
        assert!(serde_json::from_str::<LogLevel>("true").is_err());
    }

    #[test]
    fn login_status_numbers_are_tencents() {
        assert_eq!(serde_json::to_string(&LoginStatus::Logined).unwrap(), "1");
        assert_eq!(serde_json::to_string(&LoginStatus::Logining).unwrap(), "2");
        assert_eq!(serde_json::to_string(&LoginStatus::Logout).unwrap(), "3");
        assert!(serde_json::from_str::<LoginStatus>("4").is_err());
    }
}
