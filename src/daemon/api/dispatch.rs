//! From a request to its reply: method lookup, the access check, typed params, and the
//! answer — at once from the hub for everything that only reads or subscribes, or later
//! from the Session for what changes the login.

use actix::prelude::*;
use futures_util::future::LocalBoxFuture;
use std::rc::Rc;

use super::access::{access_of, permits, Access};
use super::out::Out;
use super::Api;
use crate::codes::{code, LoginStatus};
use crate::core::ring::Filter;
use crate::core::session::{Fail, Reply};
use crate::daemon::messages::{ReconnectNow, SessionCall};
use crate::proto::api::{
    Empty, LoginResult, LoginStatusResult, LoginUserResult, Method, MethodCall, Renewed,
    SelfInfoResult, ServerTimeResult, VersionResult,
};
use crate::proto::rpc::{self, Id, Incoming, RpcError};

/// A reply: ready now, or when the Session answers. The bytes are one JSON-RPC reply
/// object without the newline; `None` for a notification.
pub enum Outcome {
    /// Ready.
    Now(Option<Vec<u8>>),
    /// Ready when the future resolves.
    Later(LocalBoxFuture<'static, Option<Vec<u8>>>),
}

fn reply<T: serde::Serialize>(id: &Option<Id>, r: Result<T, RpcError>) -> Option<Vec<u8>> {
    let id = id.as_ref()?;
    let mut out = Vec::with_capacity(64);
    match r {
        Ok(v) => rpc::write_result(&mut out, id, &v),
        Err(e) => rpc::write_error(&mut out, id, &e),
    }
    Some(out)
}

/// The error reply to a request that could not be read (answered even without an id).
pub fn refused(id: &Id, e: &RpcError) -> Vec<u8> {
    let mut out = Vec::with_capacity(96);
    rpc::write_error(&mut out, id, e);
    out
}

fn denied(access: Access, method: Method) -> RpcError {
    match access {
        Access::Denied => RpcError::new(
            code::ACCESS_DENIED,
            "access denied: this user is not in api.allow_uids / api.allow_gids",
        ),
        _ => RpcError::new(
            code::ACCESS_DENIED,
            format!(
                "access denied: read-only peers may not call {}",
                method.name()
            ),
        ),
    }
}

/// Asks the Session; the reply comes when it answers.
fn session_call<T: serde::Serialize + 'static>(
    api: &Api,
    id: Option<Id>,
    call: SessionCall,
    ok: impl FnOnce(Reply) -> T + 'static,
) -> Outcome {
    let fut = api.session.send(call);
    Outcome::Later(Box::pin(async move {
        let r = match fut.await {
            Ok(Ok(rep)) => Ok(ok(rep)),
            Ok(Err(f)) => Err::<T, Fail>(f),
            Err(_) => Err(RpcError::internal("the session is unavailable")),
        };
        reply(&id, r)
    }))
}

/// Answers one request of connection `out` whose peer is `peer`.
pub fn call(api: &Rc<Api>, out: &Rc<Out>, peer: Option<(u32, u32)>, inc: Incoming<'_>) -> Outcome {
    let id = inc.id;
    let Some(method) = Method::from_name(&inc.method) else {
        return Outcome::Now(reply::<()>(
            &id,
            Err(RpcError::method_not_found(&inc.method)),
        ));
    };
    let access = access_of(&api.settings.borrow(), peer);
    if !permits(access, method) {
        return Outcome::Now(reply::<()>(&id, Err(denied(access, method))));
    }
    let call = match MethodCall::read(method, inc.params) {
        Ok(c) => c,
        Err(e) => return Outcome::Now(reply::<()>(&id, Err(e))),
    };
    let hub = &api.hub;
    let now = |r| Outcome::Now(r);
    match call {
        MethodCall::GetLoginStatus => now(reply(
            &id,
            Ok(LoginStatusResult {
                status: hub.login_status(),
            }),
        )),
        MethodCall::GetLoginUser => now(reply(
            &id,
            Ok(LoginUserResult {
                user_id: hub.user(),
            }),
        )),
        MethodCall::GetVersion => now(reply(
            &id,
            Ok(VersionResult {
                version: env!("CARGO_PKG_VERSION").to_owned(),
            }),
        )),
        MethodCall::Status => now(reply(&id, Ok(hub.status()))),
        MethodCall::GetServerTime => now(reply(
            &id,
            hub.server_time()
                .map(|server_time| ServerTimeResult { server_time })
                .ok_or_else(|| {
                    RpcError::new(
                        code::DISCONNECTED,
                        "the server time is not known yet: no connection so far",
                    )
                }),
        )),
        MethodCall::GetSelfInfo => {
            let r = if hub.app_id().is_none() {
                Err(RpcError::new(
                    code::SDK_NOT_INITIALIZED,
                    "SDK not initialised: call initSDK first",
                ))
            } else {
                match (hub.login_status(), hub.info()) {
                    (LoginStatus::Logined, Some(info)) => Ok(SelfInfoResult { info }),
                    _ => Err(RpcError::new(code::NOT_LOGGED_IN, "not logged in")),
                }
            };
            now(reply(&id, r))
        }
        MethodCall::Reconnect => {
            let r = if hub.app_id().is_none() {
                Err(RpcError::new(
                    code::SDK_NOT_INITIALIZED,
                    "SDK not initialised: call initSDK first",
                ))
            } else {
                api.reconnect.do_send(ReconnectNow);
                Ok(Empty {})
            };
            now(reply(&id, r))
        }
        MethodCall::Subscribe(p) => {
            let filter = match &p.events {
                None => Filter::ALL,
                Some(names) => Filter::of(names.iter().map(String::as_str)),
            };
            let s = hub.subscribe(out, filter, p.since);
            now(reply(&id, Ok(s)))
        }
        MethodCall::Unsubscribe(p) => {
            let r = if hub.unsubscribe(out, p.subscription) {
                Ok(Empty {})
            } else {
                Err(RpcError::new(
                    code::INVALID_PARAMETERS,
                    format!(
                        "unsubscribe: no subscription {} on this connection",
                        p.subscription
                    ),
                ))
            };
            now(reply(&id, r))
        }
        MethodCall::InitSdk(p) => session_call(
            api,
            id,
            SessionCall::Init {
                app_id: p.sdk_app_id,
                log_level: p.log_level,
            },
            |_| Empty {},
        ),
        MethodCall::UnInitSdk => session_call(api, id, SessionCall::UnInit, |_| Empty {}),
        MethodCall::Login(p) => session_call(
            api,
            id,
            SessionCall::Login {
                user: p.user_id,
                sig: p.user_sig,
            },
            |r| LoginResult {
                repeat_login: r == Reply::RepeatLogin,
            },
        ),
        MethodCall::Logout => session_call(api, id, SessionCall::Logout, |_| Empty {}),
        MethodCall::RenewUserSig => session_call(api, id, SessionCall::Renew, |r| Renewed {
            expires_at: match r {
                Reply::Renewed(e) => e,
                _ => 0,
            },
        }),
    }
}

/// A recipient of the Session's calls.
pub type SessionRecipient = Recipient<SessionCall>;
