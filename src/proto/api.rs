//! The local JSON-RPC 2.0 API (DESIGN §5, `docs/api.md`): one typed params struct and one
//! result type per method, the events, and the `status` snapshot.
//!
//! The daemon reads params with [`MethodCall::read`] (field by field, so that a wrong
//! field gets 6017 naming it); clients (`imlinkctl`, the tests, the bench) serialise the
//! same structs and deserialise the same results through [`Call`].

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::profile::{ProfileJson, UserFullInfo};
use super::rpc::{Params, RpcError};
use crate::codes::{code, LogLevel, LoginStatus};

/// The JSON-RPC notification method that carries events.
pub const EVENT_METHOD: &str = "event";

/// The longest UserSig accepted, in bytes. Tencent's tickets are a few hundred bytes;
/// anything near the server's frame limit (64 KiB) could never be sent.
pub const MAX_USERSIG_BYTES: usize = 16 * 1024;

/// The longest UserID, in bytes.
pub const MAX_USER_ID_BYTES: usize = 32;

/// Is this a UserID the service accepts: 1 to 32 bytes of printable ASCII, no spaces
/// (so `alice`, `bot_7`, `alice@example.com` and `+8613800000000` are valid)?
pub fn valid_user_id(u: &str) -> bool {
    (1..=MAX_USER_ID_BYTES).contains(&u.len()) && u.bytes().all(|b| b.is_ascii_graphic())
}

/// The message of a 7003.
pub const INVALID_USER_ID_MESSAGE: &str =
    "invalid UserID: 1 to 32 bytes of printable ASCII, no spaces or control characters";

// ------------------------------------------------------------------------- methods

/// The methods of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// `initSDK`.
    InitSdk,
    /// `unInitSDK`.
    UnInitSdk,
    /// `login`.
    Login,
    /// `logout`.
    Logout,
    /// `getLoginStatus`.
    GetLoginStatus,
    /// `getLoginUser`.
    GetLoginUser,
    /// `getServerTime`.
    GetServerTime,
    /// `getVersion`.
    GetVersion,
    /// `getSelfInfo`.
    GetSelfInfo,
    /// `status`.
    Status,
    /// `reconnect`.
    Reconnect,
    /// `subscribe`.
    Subscribe,
    /// `unsubscribe`.
    Unsubscribe,
    /// `renewUserSig`.
    RenewUserSig,
    /// `listAccounts`.
    ListAccounts,
    /// `removeAccount`.
    RemoveAccount,
    /// `metrics`.
    Metrics,
    /// `fleetStatus`.
    FleetStatus,
    /// `fleetAdd`.
    FleetAdd,
    /// `fleetRemove`.
    FleetRemove,
}

impl Method {
    /// Every method.
    pub const ALL: [Method; 20] = [
        Method::InitSdk,
        Method::UnInitSdk,
        Method::Login,
        Method::Logout,
        Method::GetLoginStatus,
        Method::GetLoginUser,
        Method::GetServerTime,
        Method::GetVersion,
        Method::GetSelfInfo,
        Method::Status,
        Method::Reconnect,
        Method::Subscribe,
        Method::Unsubscribe,
        Method::RenewUserSig,
        Method::ListAccounts,
        Method::RemoveAccount,
        Method::Metrics,
        Method::FleetStatus,
        Method::FleetAdd,
        Method::FleetRemove,
    ];

    /// The wire name.
    pub fn name(self) -> &'static str {
        match self {
            Method::InitSdk => "initSDK",
            Method::UnInitSdk => "unInitSDK",
            Method::Login => "login",
            Method::Logout => "logout",
            Method::GetLoginStatus => "getLoginStatus",
            Method::GetLoginUser => "getLoginUser",
            Method::GetServerTime => "getServerTime",
            Method::GetVersion => "getVersion",
            Method::GetSelfInfo => "getSelfInfo",
            Method::Status => "status",
            Method::Reconnect => "reconnect",
            Method::Subscribe => "subscribe",
            Method::Unsubscribe => "unsubscribe",
            Method::RenewUserSig => "renewUserSig",
            Method::ListAccounts => "listAccounts",
            Method::RemoveAccount => "removeAccount",
            Method::Metrics => "metrics",
            Method::FleetStatus => "fleetStatus",
            Method::FleetAdd => "fleetAdd",
            Method::FleetRemove => "fleetRemove",
        }
    }

    /// The method of a wire name.
    pub fn from_name(name: &str) -> Option<Method> {
        Method::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The param names, in positional order.
    pub fn param_names(self) -> &'static [&'static str] {
        match self {
            Method::InitSdk => &["sdkAppID", "logLevel"],
            Method::Login => &["userID", "userSig"],
            Method::Subscribe => &["events", "since"],
            Method::Unsubscribe => &["subscription"],
            Method::RemoveAccount => &["account"],
            Method::FleetAdd | Method::FleetRemove => &["userID"],
            _ => &[],
        }
    }

    /// May a read-only peer call it?
    pub fn read_only(self) -> bool {
        !matches!(
            self,
            Method::InitSdk
                | Method::UnInitSdk
                | Method::Login
                | Method::Logout
                | Method::Reconnect
                | Method::RenewUserSig
                | Method::RemoveAccount
                | Method::FleetAdd
                | Method::FleetRemove
        )
    }
}

/// A request to a method, with its params, as the daemon reads it.
#[derive(Debug, Clone, PartialEq)]
pub enum MethodCall {
    /// `initSDK`.
    InitSdk(InitSdk),
    /// `unInitSDK`.
    UnInitSdk,
    /// `login`.
    Login(Login),
    /// `logout`.
    Logout,
    /// `getLoginStatus`.
    GetLoginStatus,
    /// `getLoginUser`.
    GetLoginUser,
    /// `getServerTime`.
    GetServerTime,
    /// `getVersion`.
    GetVersion,
    /// `getSelfInfo`.
    GetSelfInfo,
    /// `status`.
    Status,
    /// `reconnect`.
    Reconnect,
    /// `subscribe`.
    Subscribe(Subscribe),
    /// `unsubscribe`.
    Unsubscribe(Unsubscribe),
    /// `renewUserSig`.
    RenewUserSig,
    /// `listAccounts`.
    ListAccounts,
    /// `removeAccount` (its account is read with [`MethodCall::read_account`]).
    RemoveAccount,
    /// `metrics`.
    Metrics,
    /// `fleetStatus`.
    FleetStatus,
    /// `fleetAdd`.
    FleetAdd(FleetAccount),
    /// `fleetRemove`.
    FleetRemove(FleetAccount),
}

/// `fleetAdd` and `fleetRemove` params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetAccount {
    /// The account.
    #[serde(rename = "userID")]
    pub user_id: String,
}

/// `fleetAdd` and `fleetRemove` result: whether the set of accounts changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetChanged {
    /// `false` when the account was already there (add) or not there (remove).
    pub changed: bool,
}

/// The param naming the account a call concerns (many accounts).
pub const ACCOUNT_PARAM: &str = "account";

impl MethodCall {
    /// Reads, for a daemon with many accounts, the account a call of `method` concerns:
    /// the `account` param (for `logout` also `userID`; for `login` it must be the
    /// userID when given), and for `subscribe` the `accounts` it filters by. Absent:
    /// `None`. 6017 naming the param when it is not a valid userID.
    pub fn read_account(
        method: Method,
        raw: Option<&RawValue>,
    ) -> Result<(Option<String>, Option<Vec<String>>), RpcError> {
        let p = Params::read(method.name(), method.param_names(), raw)?;
        MethodCall::account_of(method, &p)
    }

    /// [`MethodCall::read`] and [`MethodCall::read_account`] with one reading of the
    /// params (many accounts).
    #[allow(clippy::type_complexity)]
    pub fn read_multi(
        method: Method,
        raw: Option<&RawValue>,
    ) -> Result<(MethodCall, Option<String>, Option<Vec<String>>), RpcError> {
        let p = Params::read(method.name(), method.param_names(), raw)?;
        let call = MethodCall::from_params(method, &p)?;
        let (account, accounts) = MethodCall::account_of(method, &p)?;
        Ok((call, account, accounts))
    }

    #[allow(clippy::type_complexity)]
    fn account_of(
        method: Method,
        p: &Params<'_>,
    ) -> Result<(Option<String>, Option<Vec<String>>), RpcError> {
        let m = method.name();
        let one = |name: &str| -> Result<Option<String>, RpcError> {
            match p.opt::<String>(name) {
                Ok(None) => Ok(None),
                Ok(Some(u)) if valid_user_id(&u) => Ok(Some(u)),
                _ => Err(RpcError::bad_param(
                    m,
                    name,
                    "a userID (1 to 32 bytes of printable ASCII)",
                )),
            }
        };
        let mut account = one(ACCOUNT_PARAM)?;
        if method == Method::Logout {
            let user = one("userID")?;
            match (&account, user) {
                (Some(a), Some(u)) if *a != u => {
                    return Err(RpcError::new(
                        code::INVALID_PARAMETERS,
                        "logout: parameters account and userID name different accounts",
                    ))
                }
                (None, Some(u)) => account = Some(u),
                _ => {}
            }
        }
        let accounts = if method == Method::Subscribe {
            match p.opt::<Vec<String>>("accounts") {
                Ok(None) => None,
                Ok(Some(list))
                    if list.len() <= 100_000 && list.iter().all(|u| valid_user_id(u)) =>
                {
                    Some(list)
                }
                _ => {
                    return Err(RpcError::bad_param(
                        m,
                        "accounts",
                        "an array of userIDs (1 to 32 bytes of printable ASCII each)",
                    ))
                }
            }
        } else {
            None
        };
        Ok((account, accounts))
    }

    /// Reads the params of `method`: -32600 / -32602 for their shape, 6017 (naming the
    /// field) or 7003 for their values.
    pub fn read(method: Method, raw: Option<&RawValue>) -> Result<MethodCall, RpcError> {
        let p = Params::read(method.name(), method.param_names(), raw)?;
        MethodCall::from_params(method, &p)
    }

    fn from_params(method: Method, p: &Params<'_>) -> Result<MethodCall, RpcError> {
        let m = method.name();
        Ok(match method {
            Method::InitSdk => {
                let sdk_app_id = match p.opt::<u64>("sdkAppID") {
                    Ok(Some(a)) if a > 0 => a,
                    _ => return Err(RpcError::bad_param(m, "sdkAppID", "a positive integer")),
                };
                let log_level = p.opt::<LogLevel>("logLevel").map_err(|_| {
                    RpcError::bad_param(
                        m,
                        "logLevel",
                        "a log level: 0|3|4|5|6, none|debug|info|warn|error or V2TIM_LOG_*",
                    )
                })?;
                MethodCall::InitSdk(InitSdk {
                    sdk_app_id,
                    log_level,
                })
            }
            Method::UnInitSdk => MethodCall::UnInitSdk,
            Method::Login => {
                let user_id = match p.opt::<String>("userID") {
                    Ok(Some(u)) => u,
                    _ => return Err(RpcError::bad_param(m, "userID", "a string")),
                };
                if !valid_user_id(&user_id) {
                    return Err(RpcError::new(code::INVALID_USERID, INVALID_USER_ID_MESSAGE));
                }
                // Absent: the daemon gets one from its provider (`auth.provider`).
                let user_sig = match p.opt::<String>("userSig") {
                    Ok(Some(s)) if !s.trim().is_empty() => Some(s),
                    Ok(None) => None,
                    _ => return Err(RpcError::bad_param(m, "userSig", "a non-empty string")),
                };
                if user_sig
                    .as_ref()
                    .is_some_and(|s| s.len() > MAX_USERSIG_BYTES)
                {
                    return Err(RpcError::new(
                        code::INVALID_PARAMETERS,
                        format!(
                            "login: parameter userSig is longer than {MAX_USERSIG_BYTES} bytes, the most a login can carry"
                        ),
                    ));
                }
                MethodCall::Login(Login { user_id, user_sig })
            }
            Method::Logout => MethodCall::Logout,
            Method::GetLoginStatus => MethodCall::GetLoginStatus,
            Method::GetLoginUser => MethodCall::GetLoginUser,
            Method::GetServerTime => MethodCall::GetServerTime,
            Method::GetVersion => MethodCall::GetVersion,
            Method::GetSelfInfo => MethodCall::GetSelfInfo,
            Method::Status => MethodCall::Status,
            Method::Reconnect => MethodCall::Reconnect,
            Method::RenewUserSig => MethodCall::RenewUserSig,
            Method::ListAccounts => MethodCall::ListAccounts,
            Method::RemoveAccount => MethodCall::RemoveAccount,
            Method::Metrics => MethodCall::Metrics,
            Method::FleetStatus => MethodCall::FleetStatus,
            Method::FleetAdd | Method::FleetRemove => {
                let user_id = match p.opt::<String>("userID") {
                    Ok(Some(u)) => u,
                    _ => return Err(RpcError::bad_param(m, "userID", "a string")),
                };
                if !valid_user_id(&user_id) {
                    return Err(RpcError::new(code::INVALID_USERID, INVALID_USER_ID_MESSAGE));
                }
                let a = FleetAccount { user_id };
                if method == Method::FleetAdd {
                    MethodCall::FleetAdd(a)
                } else {
                    MethodCall::FleetRemove(a)
                }
            }
            Method::Subscribe => {
                let events = match p.opt::<Vec<String>>("events") {
                    Ok(e) => e,
                    Err(_) => {
                        return Err(RpcError::bad_param(m, "events", "an array of event names"))
                    }
                };
                if let Some(names) = &events {
                    if let Some(bad) = names.iter().find(|n| !EVENT_NAMES.contains(&n.as_str())) {
                        return Err(RpcError::new(
                            code::INVALID_PARAMETERS,
                            format!(
                                "subscribe: unknown event {:?}; known: {}",
                                crate::text::clean(bad),
                                EVENT_NAMES.join(", ")
                            ),
                        ));
                    }
                }
                let since = p.opt::<u64>("since").map_err(|_| {
                    RpcError::bad_param(m, "since", "a non-negative integer (an event seq)")
                })?;
                MethodCall::Subscribe(Subscribe { events, since })
            }
            Method::Unsubscribe => match p.opt::<u64>("subscription") {
                Ok(Some(subscription)) => MethodCall::Unsubscribe(Unsubscribe { subscription }),
                _ => {
                    return Err(RpcError::bad_param(
                        m,
                        "subscription",
                        "a subscription id (integer)",
                    ))
                }
            },
        })
    }
}

/// A method's params as a client sends them, and the result it gets back.
pub trait Call: Serialize {
    /// The method.
    const METHOD: Method;
    /// Its result.
    type Output: DeserializeOwned;
}

macro_rules! no_params {
    ($($(#[$doc:meta])* $name:ident => $method:ident, $out:ty;)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
        pub struct $name {}
        impl Call for $name {
            const METHOD: Method = Method::$method;
            type Output = $out;
        }
    )*};
}

no_params! {
    /// `unInitSDK`.
    UnInitSdk => UnInitSdk, Empty;
    /// `logout`.
    Logout => Logout, Empty;
    /// `getLoginStatus`.
    GetLoginStatus => GetLoginStatus, LoginStatusResult;
    /// `getLoginUser`.
    GetLoginUser => GetLoginUser, LoginUserResult;
    /// `getServerTime`.
    GetServerTime => GetServerTime, ServerTimeResult;
    /// `getVersion`.
    GetVersion => GetVersion, VersionResult;
    /// `getSelfInfo`.
    GetSelfInfo => GetSelfInfo, SelfInfoResult;
    /// `status`.
    GetStatus => Status, Status;
    /// `reconnect`.
    Reconnect => Reconnect, Empty;
    /// `renewUserSig`.
    RenewUserSig => RenewUserSig, Renewed;
    /// `listAccounts`.
    ListAccounts => ListAccounts, AccountList;
    /// `metrics`.
    GetMetrics => Metrics, MetricsResult;
}

/// `initSDK` params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitSdk {
    /// The SDKAppID (positive).
    #[serde(rename = "sdkAppID")]
    pub sdk_app_id: u64,
    /// Sets the daemon's log level.
    #[serde(rename = "logLevel", default, skip_serializing_if = "Option::is_none")]
    pub log_level: Option<LogLevel>,
}

impl Call for InitSdk {
    const METHOD: Method = Method::InitSdk;
    type Output = Empty;
}

/// `login` params.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Login {
    /// The user.
    #[serde(rename = "userID")]
    pub user_id: String,
    /// The ticket; `None`: the daemon gets one from its provider (`auth.provider`).
    #[serde(rename = "userSig", default, skip_serializing_if = "Option::is_none")]
    pub user_sig: Option<String>,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("user_id", &self.user_id)
            .field("user_sig", &"[redacted]")
            .finish()
    }
}

impl Call for Login {
    const METHOD: Method = Method::Login;
    type Output = LoginResult;
}

/// `subscribe` params.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscribe {
    /// Only these events (None: all); `eventsLost` is always delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<String>>,
    /// Replay the retained events after this seq first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
}

impl Call for Subscribe {
    const METHOD: Method = Method::Subscribe;
    type Output = Subscribed;
}

/// `unsubscribe` params.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unsubscribe {
    /// An id returned by `subscribe` on this connection.
    pub subscription: u64,
}

impl Call for Unsubscribe {
    const METHOD: Method = Method::Unsubscribe;
    type Output = Empty;
}

// ------------------------------------------------------------------------- results

/// `{}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

/// The result of `login`: `{}` or `{"repeatLogin": true}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginResult {
    /// The user was already logged in (the ticket may have been renewed).
    #[serde(
        rename = "repeatLogin",
        default,
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub repeat_login: bool,
}

/// The result of `renewUserSig`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Renewed {
    /// When the new ticket expires, unix seconds.
    #[serde(rename = "expiresAt")]
    pub expires_at: i64,
}

/// `getLoginStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginStatusResult {
    /// 1, 2 or 3.
    pub status: LoginStatus,
}

/// `getLoginUser`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginUserResult {
    /// The user logged in or logging in; `""` when nobody.
    #[serde(rename = "userID")]
    pub user_id: String,
}

/// `getServerTime`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerTimeResult {
    /// Unix seconds.
    #[serde(rename = "serverTime")]
    pub server_time: i64,
}

/// `getVersion`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionResult {
    /// The daemon's version.
    pub version: String,
}

/// `getSelfInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelfInfoResult {
    /// The profile.
    pub info: UserFullInfo,
}

/// `subscribe`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscribed {
    /// The subscription id.
    pub subscription: u64,
    /// The daemon's boot id.
    #[serde(rename = "bootID")]
    pub boot_id: String,
    /// The seq of the newest event at the instant of subscribing.
    pub seq: u64,
    /// The status at that instant (`status.lastSeq == seq`).
    pub status: Status,
}

/// One account in `listAccounts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountInfo {
    /// The account's userID.
    #[serde(rename = "userID")]
    pub user_id: String,
    /// 1 LOGINED, 2 LOGINING, 3 LOGOUT (as `getLoginStatus`).
    pub status: LoginStatus,
    /// Its link's state.
    pub connection: ConnState,
    /// Logged in and the server holds the login on the live connection.
    pub online: bool,
    /// When its ticket expires, unix seconds, or null.
    #[serde(rename = "userSigExpiresAt")]
    pub user_sig_expires_at: Option<i64>,
}

/// The result of `listAccounts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountList {
    /// Every account, by userID.
    pub accounts: Vec<AccountInfo>,
}

/// The result of `metrics`: counts since the daemon started and the accounts now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricsResult {
    /// Accounts (1 with a single account logged in or logging in).
    pub accounts: u64,
    /// Accounts LOGINED.
    pub logined: u64,
    /// Accounts LOGINING.
    pub logining: u64,
    /// Accounts LOGOUT.
    pub logout: u64,
    /// Accounts online (logged in, the server holds the login on a live connection).
    pub online: u64,
    /// Links idle.
    pub links_idle: u64,
    /// Links connecting.
    pub links_connecting: u64,
    /// Links connected.
    pub links_connected: u64,
    /// Links waiting for the next attempt.
    pub links_waiting: u64,
    /// Logins accepted (`onLoginStatusChanged` to 1).
    pub logins: u64,
    /// Silent re-logins accepted (`onRelogin {success: true}`).
    pub relogins: u64,
    /// Silent re-logins refused (retried).
    pub relogin_failures: u64,
    /// Kicks (`onKickedOffline`).
    pub kicks: u64,
    /// Ticket expiries (`onUserSigExpired`).
    pub expiries: u64,
    /// Connections that came up (`onConnectSuccess`).
    pub connects: u64,
    /// Failed connect attempts and lost connections (`onConnectFailed`).
    pub connect_failures: u64,
    /// Events emitted.
    pub events: u64,
    /// Connections with at least one subscription.
    pub subscribers: u64,
}

// ------------------------------------------------------------------------- events

/// Names of every event the daemon emits.
pub const EVENT_NAMES: &[&str] = &[
    "onConnecting",
    "onConnectSuccess",
    "onConnectFailed",
    "onKickedOffline",
    "onUserSigExpired",
    "onSelfInfoUpdated",
    "onLoginStatusChanged",
    "onUserSigExpiring",
    "onRelogin",
    "onUserSigRenewed",
    "onUserSigRenewFailed",
    "eventsLost",
];

/// An event and its data, as it appears in `params.event` / `params.data`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", content = "data")]
pub enum Event {
    /// The daemon is connecting to the server.
    #[serde(rename = "onConnecting")]
    Connecting {},
    /// The connection to the server is up.
    #[serde(rename = "onConnectSuccess")]
    ConnectSuccess {},
    /// A connect attempt failed, or an established connection was lost.
    #[serde(rename = "onConnectFailed")]
    ConnectFailed {
        /// 9508 (refused, lost), 9510 (connect timeout).
        code: i32,
        /// What happened.
        desc: String,
    },
    /// The login was ended by another device or a REST kick; no automatic re-login follows.
    #[serde(rename = "onKickedOffline")]
    KickedOffline {},
    /// The ticket expired (while online or at a re-login); log in with a new one.
    #[serde(rename = "onUserSigExpired")]
    UserSigExpired {},
    /// The user's profile changed.
    #[serde(rename = "onSelfInfoUpdated")]
    SelfInfoUpdated {
        /// The new profile.
        info: UserFullInfo,
    },
    /// `onSelfInfoUpdated` as the daemon emits it: the profile held as its JSON (see
    /// [`ProfileJson`]), written exactly as [`Event::SelfInfoUpdated`] of the same profile.
    /// Only [`Event::write_json`] writes it; a reader gets [`Event::SelfInfoUpdated`].
    #[serde(skip)]
    SelfInfoJson(ProfileJson),
    /// The login status changed (imlink's addition to the SDK's events).
    #[serde(rename = "onLoginStatusChanged")]
    LoginStatusChanged {
        /// 1 LOGINED, 2 LOGINING, 3 LOGOUT.
        status: LoginStatus,
        /// The user concerned (`""` when nobody).
        #[serde(rename = "userID")]
        user_id: String,
        /// Why: `login`, `logout`, `restore`, `kicked`, `userSigExpired`, `loginFailed`,
        /// `switchUser`, `unInit`.
        reason: String,
    },
    /// The ticket runs out soon (imlink's addition): renew it with `login`.
    #[serde(rename = "onUserSigExpiring")]
    UserSigExpiring {
        /// `TLS.time + TLS.expire`, unix seconds.
        #[serde(rename = "expiresAt")]
        expires_at: i64,
        /// Seconds left when the event was emitted.
        #[serde(rename = "remainingSecs")]
        remaining_secs: i64,
    },
    /// The silent re-login after a reconnect (the status stays LOGINED throughout)
    /// succeeded — the session is online again — or failed and will be retried
    /// (imlink's addition).
    #[serde(rename = "onRelogin")]
    Relogin {
        /// True: accepted by the server.
        success: bool,
        /// The refusal's code (absent on success).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<i32>,
        /// The refusal's reason (absent on success).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        desc: Option<String>,
        /// When the next attempt is due, ms (absent on success).
        #[serde(rename = "retryInMs", default, skip_serializing_if = "Option::is_none")]
        retry_in_ms: Option<u64>,
    },
    /// The daemon renewed the ticket from its provider and the server accepted it on the
    /// live connection (imlink's addition; no status change).
    #[serde(rename = "onUserSigRenewed")]
    UserSigRenewed {
        /// When the new ticket expires, unix seconds.
        #[serde(rename = "expiresAt")]
        expires_at: i64,
    },
    /// A renewal from the provider failed (imlink's addition): the provider failed, its
    /// ticket was unusable, or the server refused it. Retried after `retryInMs` while the
    /// ticket in use is valid; absent when no retry will come before it expires.
    #[serde(rename = "onUserSigRenewFailed")]
    UserSigRenewFailed {
        /// Why: -32004 (the provider failed), 70003/70013/70014/6206 (its ticket is not
        /// usable), or the server's refusal.
        code: i32,
        /// What happened (never the ticket).
        desc: String,
        /// When the next attempt is due, ms.
        #[serde(rename = "retryInMs", default, skip_serializing_if = "Option::is_none")]
        retry_in_ms: Option<u64>,
    },
    /// Events `from`..=`to` were not delivered to this subscriber.
    #[serde(rename = "eventsLost")]
    EventsLost {
        /// First missing seq.
        from: u64,
        /// Last missing seq.
        to: u64,
    },
}

/// What an `onSelfInfoUpdated` event's JSON holds before its profile (and `}}` after it).
const SELF_INFO_HEAD: &[u8] = b"{\"event\":\"onSelfInfoUpdated\",\"data\":{\"info\":";

impl Event {
    /// The length of [`Event::write_json`]'s output, when it is known without writing it
    /// (a profile held as its JSON).
    pub fn json_len(&self) -> Option<usize> {
        match self {
            Event::SelfInfoJson(info) => Some(SELF_INFO_HEAD.len() + info.bytes().len() + 2),
            _ => None,
        }
    }

    /// Appends the event as `{"event":…,"data":…}`, byte for byte what `serde_json`
    /// writes: the profile of `onSelfInfoUpdated` (a burst of pushes is all of those) by
    /// hand, the rest through serde.
    pub fn write_json(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        match self {
            Event::SelfInfoUpdated { info } => {
                out.extend_from_slice(SELF_INFO_HEAD);
                info.write_json(out);
            }
            Event::SelfInfoJson(info) => {
                out.extend_from_slice(SELF_INFO_HEAD);
                out.extend_from_slice(info.bytes());
            }
            _ => return serde_json::to_writer(out, self),
        }
        out.extend_from_slice(b"}}");
        Ok(())
    }

    /// The event's name.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Connecting {} => "onConnecting",
            Event::ConnectSuccess {} => "onConnectSuccess",
            Event::ConnectFailed { .. } => "onConnectFailed",
            Event::KickedOffline {} => "onKickedOffline",
            Event::UserSigExpired {} => "onUserSigExpired",
            Event::SelfInfoUpdated { .. } | Event::SelfInfoJson(_) => "onSelfInfoUpdated",
            Event::LoginStatusChanged { .. } => "onLoginStatusChanged",
            Event::UserSigExpiring { .. } => "onUserSigExpiring",
            Event::Relogin { .. } => "onRelogin",
            Event::UserSigRenewed { .. } => "onUserSigRenewed",
            Event::UserSigRenewFailed { .. } => "onUserSigRenewFailed",
            Event::EventsLost { .. } => "eventsLost",
        }
    }
}

/// The params of an event notification, as a client reads them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventParams {
    /// The subscription it was delivered to.
    pub subscription: u64,
    /// Its number.
    pub seq: u64,
    /// Unix ms.
    pub time: i64,
    /// The daemon's boot id.
    #[serde(rename = "bootID")]
    pub boot_id: String,
    /// The event.
    #[serde(flatten)]
    pub event: Event,
}

// ------------------------------------------------------------------------- status

/// The connection state reported by `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnState {
    /// Not initialised, or un-initialised: no connection is wanted.
    Idle,
    /// A connect attempt is running.
    Connecting,
    /// The connection is up.
    Connected,
    /// Waiting for the backoff delay before the next attempt.
    Waiting,
}

/// The result of `status`: one consistent snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// The initialised SDKAppID, or null.
    #[serde(rename = "sdkAppID")]
    pub sdk_app_id: Option<u64>,
    /// 1 LOGINED, 2 LOGINING, 3 LOGOUT.
    pub login_status: LoginStatus,
    /// The logged-in (or logging-in) user, `""` when nobody.
    #[serde(rename = "userID")]
    pub user_id: String,
    /// True only while connected and the server holds this session's login (false during
    /// the silent re-login after a reconnect, although `loginStatus` stays 1).
    pub online: bool,
    /// The connection state.
    pub connection: ConnState,
    /// When the current connection came up, unix milliseconds, or null.
    pub connected_since: Option<i64>,
    /// Consecutive failed connect attempts (0 when connected).
    pub reconnect_attempt: u32,
    /// Milliseconds until the next connect attempt while `waiting`, else null.
    pub next_retry_ms: Option<u64>,
    /// The server (URL of the native link, or the Tencent service).
    pub server: String,
    /// When the ticket expires, unix seconds, or null.
    pub user_sig_expires_at: Option<i64>,
    /// False while the last change of the login could not be written to the state file
    /// (the daemon retries; a restart now would not see it).
    pub state_saved: bool,
    /// Changes at every daemon start.
    #[serde(rename = "bootID")]
    pub boot_id: String,
    /// The seq of the newest event.
    pub last_seq: u64,
    /// The UserSig provider (`auth.provider`).
    pub auth: AuthStatus,
    /// The network watcher's view of the route to the server (`[network]`).
    #[serde(default)]
    pub network: NetworkStatus,
}

/// The network watcher's part of `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkStatus {
    /// `network.watch`: the watcher is on.
    pub watch: bool,
    /// `usable` (a route through a watched interface that is up, with carrier and an
    /// address), `unwatched` (a route through an interface not watched, such as loopback),
    /// `unreachable`, `unknown` (not looked yet, or netlink unavailable) or `off`.
    pub state: String,
    /// The interface the route to the server leaves by.
    pub interface: Option<String>,
    /// The next hop, when not on-link.
    pub gateway: Option<String>,
    /// Why the server is unreachable, or why the watcher cannot watch.
    pub reason: Option<String>,
    /// Changes of the route reported to the link since the daemon started.
    pub changes: u64,
    /// When the last change was reported, unix milliseconds.
    pub changed_at: Option<i64>,
}

impl Default for NetworkStatus {
    fn default() -> Self {
        NetworkStatus {
            watch: false,
            state: "off".to_owned(),
            interface: None,
            gateway: None,
            reason: None,
            changes: 0,
            changed_at: None,
        }
    }
}

/// The provider's part of `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthStatus {
    /// `none`, `command`, `url` or `key_file`.
    pub provider: String,
    /// Provider calls since the daemon started.
    pub calls: u64,
    /// Tickets renewed from the provider on the live login since the daemon started.
    pub renewals: u64,
    /// The last failure of the provider or of a renewal, until the next success.
    pub last_error: Option<AuthError>,
    /// When the next renewal (or retry) is due, unix seconds, or null.
    pub next_renew_at: Option<i64>,
}

impl Default for AuthStatus {
    fn default() -> Self {
        AuthStatus {
            provider: "none".to_owned(),
            calls: 0,
            renewals: 0,
            last_error: None,
            next_renew_at: None,
        }
    }
}

/// A failure shown in `status.auth.lastError`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthError {
    /// The code, as in `onUserSigRenewFailed`.
    pub code: i32,
    /// What happened (never the ticket).
    pub desc: String,
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_event_writes_as_serde_does() {
        let mut info = crate::proto::UserFullInfo {
            user_id: "u\"1".into(),
            ..Default::default()
        };
        info.custom_info
            .insert("Tag_Profile_Custom_Seq".into(), "7".into());
        let json = Event::SelfInfoJson(crate::proto::profile::ProfileJson::from_info(&info));
        let mut v = Vec::new();
        json.write_json(&mut v).unwrap();
        let same = Event::SelfInfoUpdated { info: info.clone() };
        assert_eq!(v, serde_json::to_vec(&same).unwrap());
        assert_eq!(json.name(), same.name());
        assert_eq!(serde_json::from_slice::<Event>(&v).unwrap(), same);
        for e in [
            Event::SelfInfoUpdated { info },
            Event::Connecting {},
            Event::EventsLost { from: 1, to: 9 },
        ] {
            let mut v = Vec::new();
            e.write_json(&mut v).unwrap();
            assert_eq!(v, serde_json::to_vec(&e).unwrap(), "{e:?}");
        }
    }

    use super::*;

    fn call(method: Method, params: &str) -> Result<MethodCall, RpcError> {
        let raw = RawValue::from_string(params.to_owned()).unwrap();
        MethodCall::read(method, Some(&raw))
    }

    #[test]
    fn user_ids_follow_the_service() {
        for ok in [
            "alice",
            "bot_7",
            "a-b",
            "alice@example.com",
            "+8613800000000",
            &"x".repeat(32),
        ] {
            assert!(valid_user_id(ok), "{ok}");
        }
        for bad in [
            "",
            "bad id",
            "tab\there",
            "new\nline",
            "élan",
            &"x".repeat(33),
            "\u{7f}",
        ] {
            assert!(!valid_user_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn params_are_checked_field_by_field() {
        assert_eq!(
            call(Method::Login, r#"{"userID":"alice","userSig":"s"}"#).unwrap(),
            MethodCall::Login(Login {
                user_id: "alice".into(),
                user_sig: Some("s".into())
            })
        );
        assert_eq!(
            call(Method::Login, r#"{"userID":"alice"}"#).unwrap(),
            MethodCall::Login(Login {
                user_id: "alice".into(),
                user_sig: None
            })
        );
        let e = call(Method::Login, r#"{"userID":"alice","userSig":""}"#).unwrap_err();
        assert_eq!(e.code, code::INVALID_PARAMETERS);
        let e = call(Method::Login, r#"{"userID":"a b","userSig":"s"}"#).unwrap_err();
        assert_eq!(e.code, code::INVALID_USERID);
        let big = format!(
            r#"{{"userID":"a","userSig":"{}"}}"#,
            "x".repeat(MAX_USERSIG_BYTES + 1)
        );
        let e = call(Method::Login, &big).unwrap_err();
        assert_eq!(e.code, code::INVALID_PARAMETERS);
        assert!(e.message.contains("16384"), "{e:?}");
        assert!(!e.message.contains("xxxx"), "the ticket is never echoed");
        let e = call(Method::Subscribe, r#"{"since":-1}"#).unwrap_err();
        assert_eq!(e.code, code::INVALID_PARAMETERS);
        let s = call(Method::Subscribe, r#"{"since":18446744073709551615}"#).unwrap();
        assert_eq!(
            s,
            MethodCall::Subscribe(Subscribe {
                events: None,
                since: Some(u64::MAX)
            })
        );
        assert!(Method::GetLoginStatus.read_only() && !Method::Login.read_only());
    }

    #[test]
    fn events_serialise_with_their_names() {
        let e = Event::Relogin {
            success: false,
            code: Some(9520),
            desc: Some("timeout".into()),
            retry_in_ms: Some(1600),
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"event":"onRelogin","data":{"success":false,"code":9520,"desc":"timeout","retryInMs":1600}}"#
        );
        for n in EVENT_NAMES {
            assert!(n.starts_with("on") || *n == "eventsLost");
        }
    }
}
