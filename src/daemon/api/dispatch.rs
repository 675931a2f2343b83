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
    AccountInfo, AccountList, Empty, FleetChanged, LoginResult, LoginStatusResult, LoginUserResult,
    Method, MethodCall, MetricsResult, Renewed, SelfInfoResult, ServerTimeResult, VersionResult,
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

/// One reply object (None for a notification).
pub(super) fn reply<T: serde::Serialize>(
    id: &Option<Id>,
    r: Result<T, RpcError>,
) -> Option<Vec<u8>> {
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
    // The fleet's methods concern etcd, not an account of this daemon.
    if matches!(
        method,
        Method::FleetStatus | Method::FleetAdd | Method::FleetRemove
    ) {
        return match MethodCall::read(method, inc.params) {
            Ok(c) => fleet_call(api, id, c),
            Err(e) => Outcome::Now(reply::<()>(&id, Err(e))),
        };
    }
    if let Some(accounts) = api.accounts.get() {
        return match MethodCall::read_multi(method, inc.params) {
            Ok((call, account, filter)) => {
                super::multi::call(api, accounts, out, id, method.name(), call, account, filter)
            }
            Err(e) => Outcome::Now(reply::<()>(&id, Err(e))),
        };
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
        c @ (MethodCall::FleetStatus | MethodCall::FleetAdd(_) | MethodCall::FleetRemove(_)) => {
            fleet_call(api, id, c)
        }
        MethodCall::ListAccounts => now(reply(
            &id,
            Ok(AccountList {
                accounts: if hub.user().is_empty() {
                    Vec::new()
                } else {
                    vec![AccountInfo {
                        user_id: hub.user(),
                        status: hub.login_status(),
                        connection: hub.conn_state(),
                        online: hub.online(),
                        user_sig_expires_at: hub.expires_at(),
                    }]
                },
            }),
        )),
        MethodCall::RemoveAccount => now(reply::<()>(
            &id,
            Err(RpcError::new(
                code::INVALID_PARAMETERS,
                "removeAccount: accounts.multi is false (one account: use logout)",
            )),
        )),
        MethodCall::Metrics => now(reply(&id, Ok(metrics(api)))),
        MethodCall::RenewUserSig => session_call(api, id, SessionCall::Renew, |r| Renewed {
            expires_at: match r {
                Reply::Renewed(e) => e,
                _ => 0,
            },
        }),
    }
}

/// `fleetStatus`, `fleetAdd`, `fleetRemove`: straight to etcd, whichever member is asked.
fn fleet_call(api: &Api, id: Option<Id>, call: MethodCall) -> Outcome {
    let Some(admin) = api.fleet.borrow().clone() else {
        return Outcome::Now(reply::<()>(
            &id,
            Err(RpcError::new(
                code::FLEET_OFF,
                "fleet mode is off: fleet.etcd is empty",
            )),
        ));
    };
    let unavailable =
        |e: crate::fleet::admin::FleetError| RpcError::new(code::FLEET_UNAVAILABLE, e.0);
    Outcome::Later(Box::pin(async move {
        match call {
            MethodCall::FleetAdd(a) => reply(
                &id,
                admin
                    .add(&a.user_id)
                    .await
                    .map(|changed| FleetChanged { changed })
                    .map_err(unavailable),
            ),
            MethodCall::FleetRemove(a) => reply(
                &id,
                admin
                    .remove(&a.user_id)
                    .await
                    .map(|changed| FleetChanged { changed })
                    .map_err(unavailable),
            ),
            _ => reply(&id, admin.status().await.map_err(unavailable)),
        }
    }))
}

/// The figures of `metrics` (and of the Prometheus exposition).
pub fn metrics(api: &Api) -> MetricsResult {
    let hub = &api.hub;
    let c = hub.counters();
    let t = if hub.multi() {
        hub.tally()
    } else {
        // One account: the board itself.
        let mut t = crate::daemon::hub::Tally::default();
        if !hub.user().is_empty() {
            t.accounts = 1;
            t.by_status[hub.login_status() as usize - 1] = 1;
            t.online = u64::from(hub.online());
        }
        t.by_conn[crate::daemon::hub::conn_index(hub.conn_state())] = 1;
        t
    };
    MetricsResult {
        accounts: t.accounts,
        logined: t.by_status[0],
        logining: t.by_status[1],
        logout: t.by_status[2],
        online: t.online,
        links_idle: t.by_conn[0],
        links_connecting: t.by_conn[1],
        links_connected: t.by_conn[2],
        links_waiting: t.by_conn[3],
        logins: c.logins,
        relogins: c.relogins,
        relogin_failures: c.relogin_failures,
        kicks: c.kicks,
        expiries: c.expiries,
        connects: c.connects,
        connect_failures: c.connect_failures,
        events: c.events,
        subscribers: u64::try_from(hub.subscribed_connections()).unwrap_or(u64::MAX),
    }
}

/// A recipient of the Session's calls.
pub type SessionRecipient = Recipient<SessionCall>;
