//! The answers of a daemon with many accounts (`accounts.multi = true`): the account a
//! call concerns is its `account` param, or the only account when there is exactly one
//! (else 6017 naming the param); the getters answer from that account's board in the
//! same wake-up, the calls that change a login go to that account's Session.

use std::rc::Rc;

use super::dispatch::{reply, Outcome};
use super::out::Out;
use super::Api;
use crate::codes::{code, LoginStatus};
use crate::core::ring::Filter;
use crate::core::session::{Fail, Reply};
use crate::daemon::accounts::{Account, Accounts};
use crate::daemon::hub::Hub;
use crate::daemon::messages::SessionCall;
use crate::proto::api::{
    AccountList, Empty, LoginResult, LoginStatusResult, LoginUserResult, MethodCall, Renewed,
    SelfInfoResult, ServerTimeResult, VersionResult,
};
use crate::proto::rpc::{Id, RpcError};

fn later<T: serde::Serialize + 'static>(
    id: Option<Id>,
    fut: impl std::future::Future<Output = Result<Reply, Fail>> + 'static,
    ok: impl FnOnce(Reply) -> T + 'static,
) -> Outcome {
    Outcome::Later(Box::pin(async move {
        let r = fut.await.map(ok);
        reply(&id, r)
    }))
}

/// Answers one request of a daemon with many accounts.
#[allow(clippy::too_many_arguments)]
pub fn call(
    api: &Rc<Api>,
    accounts: &Rc<Accounts>,
    out: &Rc<Out>,
    id: Option<Id>,
    method: &str,
    call: MethodCall,
    account: Option<String>,
    filter_accounts: Option<Vec<String>>,
) -> Outcome {
    let now = Outcome::Now;
    let one =
        |name: &str| -> Result<Account, RpcError> { accounts.resolve(name, account.as_deref()) };
    match call {
        MethodCall::GetVersion => now(reply(
            &id,
            Ok(VersionResult {
                version: env!("CARGO_PKG_VERSION").to_owned(),
            }),
        )),
        MethodCall::InitSdk(p) => {
            accounts.init(p.sdk_app_id, p.log_level);
            now(reply(&id, Ok(Empty {})))
        }
        MethodCall::UnInitSdk => now(reply::<()>(
            &id,
            Err(RpcError::new(
                code::INVALID_PARAMETERS,
                "unInitSDK: not available with accounts.multi = true; log each account out (logout) or remove it (removeAccount)",
            )),
        )),
        MethodCall::Login(p) => {
            if account.as_deref().is_some_and(|a| a != p.user_id) {
                return now(reply::<()>(
                    &id,
                    Err(RpcError::new(
                        code::INVALID_PARAMETERS,
                        "login: parameter account must be the userID when given (the userID names the account)",
                    )),
                ));
            }
            later(
                id,
                accounts.clone().login(p.user_id, p.user_sig),
                |r| LoginResult {
                    repeat_login: r == Reply::RepeatLogin,
                },
            )
        }
        MethodCall::Logout => match one(method) {
            Ok(a) => later(id, Accounts::logout(a), |_| Empty {}),
            Err(e) => now(reply::<()>(&id, Err(e))),
        },
        MethodCall::RemoveAccount => match one(method) {
            Ok(a) => later(id, accounts.clone().remove(a), |_| Empty {}),
            Err(e) => now(reply::<()>(&id, Err(e))),
        },
        MethodCall::RenewUserSig => match one(method) {
            Ok(a) => {
                let session = a.session.clone();
                later(
                    id,
                    async move {
                        session.send(SessionCall::Renew).await.unwrap_or_else(|_| {
                            Err(Fail::new(code::DISCONNECTED, "the account's session has stopped"))
                        })
                    },
                    |r| Renewed {
                        expires_at: match r {
                            Reply::Renewed(e) => e,
                            _ => 0,
                        },
                    },
                )
            }
            Err(e) => now(reply::<()>(&id, Err(e))),
        },
        MethodCall::ListAccounts => now(reply(
            &id,
            Ok(AccountList {
                accounts: accounts.list(),
            }),
        )),
        MethodCall::Metrics => now(reply(&id, Ok(super::dispatch::metrics(api)))),
        MethodCall::Subscribe(p) => {
            let mut filter = match &p.events {
                None => Filter::ALL,
                Some(names) => Filter::of(names.iter().map(String::as_str)),
            };
            // The snapshot: the account's, when the subscription concerns exactly one.
            let board = match (&filter_accounts, account.as_deref()) {
                (Some(list), _) if list.len() == 1 => accounts.get(&list[0]).map(|a| a.hub),
                (None, Some(a)) => accounts.get(a).map(|a| a.hub),
                (None, None) if accounts.len() == 1 => accounts.resolve(method, None).ok().map(|a| a.hub),
                _ => None,
            };
            if let Some(list) = filter_accounts.or(account.map(|a| vec![a])) {
                filter = filter.accounts(list);
            }
            let mut s = accounts.root().subscribe(out, filter, p.since);
            if let Some(hub) = board {
                s.status = hub.status();
                s.status.last_seq = s.seq;
            }
            now(reply(&id, Ok(s)))
        }
        MethodCall::Unsubscribe(p) => {
            let r = if accounts.root().unsubscribe(out, p.subscription) {
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
        getter => match one(method) {
            Ok(a) => now(answer(&a.hub, &a, getter, id)),
            Err(e) => now(reply::<()>(&id, Err(e))),
        },
    }
}

/// The getters of one account, from its board.
fn answer(hub: &Rc<Hub>, a: &Account, call: MethodCall, id: Option<Id>) -> Option<Vec<u8>> {
    match call {
        MethodCall::GetLoginStatus => reply(
            &id,
            Ok(LoginStatusResult {
                status: hub.login_status(),
            }),
        ),
        MethodCall::GetLoginUser => reply(
            &id,
            Ok(LoginUserResult {
                user_id: hub.user(),
            }),
        ),
        MethodCall::Status => reply(&id, Ok(hub.status())),
        MethodCall::GetServerTime => reply(
            &id,
            hub.server_time()
                .map(|server_time| ServerTimeResult { server_time })
                .ok_or_else(|| {
                    RpcError::new(
                        code::DISCONNECTED,
                        "the server time is not known yet: no connection so far",
                    )
                }),
        ),
        MethodCall::GetSelfInfo => reply(
            &id,
            match (hub.login_status(), hub.info()) {
                (LoginStatus::Logined, Some(info)) => Ok(SelfInfoResult { info }),
                _ => Err(RpcError::new(code::NOT_LOGGED_IN, "not logged in")),
            },
        ),
        MethodCall::Reconnect => {
            Accounts::reconnect(a);
            reply(&id, Ok(Empty {}))
        }
        _ => reply::<()>(&id, Err(RpcError::internal("unexpected call"))),
    }
}
