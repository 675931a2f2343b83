//! Fleet mode in the daemon (`[fleet]`, docs/fleet.md): connects to etcd, answers the
//! `fleet*` methods, and runs this daemon's [`Member`] over its accounts.

use std::cell::RefCell;
use std::rc::Rc;

use futures_util::future::{FutureExt, LocalBoxFuture, Shared};
use std::collections::HashMap;

use crate::config::Config;
use crate::fleet::{admin, AccountHost, Admin, Member, MemberHandle, Settings, Timing};

use super::accounts::Accounts;
use super::api::Api;

/// The daemon's accounts (`accounts.multi`) as the fleet's host: `start` is `login`
/// without a UserSig (the provider gives it), `stop` is `removeAccount` (logged out, its
/// link closed, its session file removed: the fleet, not the disk, says what to log in).
///
/// Each operation runs as a task of its own, so a member that stops waiting (a round cut
/// short by the fencing deadline) never leaves one half done; a `stop` asked while one is
/// under way waits for that one.
pub struct RegistryHost {
    accounts: Rc<Accounts>,
    stopping: Rc<RefCell<HashMap<String, Shared<LocalBoxFuture<'static, ()>>>>>,
}

impl RegistryHost {
    /// The host over `accounts`.
    pub fn new(accounts: Rc<Accounts>) -> RegistryHost {
        RegistryHost {
            accounts,
            stopping: Rc::default(),
        }
    }
}

impl AccountHost for RegistryHost {
    fn start<'a>(&'a self, user: &'a str) -> LocalBoxFuture<'a, Result<(), String>> {
        let (accounts, user) = (self.accounts.clone(), user.to_owned());
        let task = tokio::task::spawn_local(async move {
            accounts
                .login(user, None)
                .await
                .map(|_| ())
                .map_err(|f| format!("{}: {}", f.code, f.message))
        });
        Box::pin(async move {
            task.await
                .unwrap_or_else(|_| Err("the login task ended".to_owned()))
        })
    }

    fn stop<'a>(&'a self, user: &'a str) -> LocalBoxFuture<'a, ()> {
        let running = self.stopping.borrow().get(user).cloned();
        let shared = match running {
            Some(s) => s,
            None => {
                let (accounts, stopping, name) = (
                    self.accounts.clone(),
                    self.stopping.clone(),
                    user.to_owned(),
                );
                let task = tokio::task::spawn_local(async move {
                    if let Some(account) = accounts.get(&name) {
                        if let Err(f) = accounts.remove(account).await {
                            tracing::warn!(user = %name, code = f.code, "fleet: removing the account: {}", crate::text::clean(&f.message));
                        }
                    }
                    stopping.borrow_mut().remove(&name);
                });
                let fut: LocalBoxFuture<'static, ()> = Box::pin(async move {
                    let _ = task.await;
                });
                let shared = fut.shared();
                self.stopping
                    .borrow_mut()
                    .insert(user.to_owned(), shared.clone());
                shared
            }
        };
        Box::pin(shared)
    }
}

/// The fleet part of a running daemon.
pub struct Fleet {
    starter: tokio::task::JoinHandle<()>,
    member: Rc<RefCell<Option<MemberHandle>>>,
    timing: Timing,
}

/// Starts fleet mode when `fleet.etcd` is set: connects to etcd (retrying until it can),
/// then serves the `fleet*` methods through `api` and, with a `host`, runs the member.
pub fn start(cfg: &Config, api: &Rc<Api>, host: Option<Rc<dyn AccountHost>>) -> Option<Fleet> {
    if !cfg.fleet.enabled() {
        return None;
    }
    let settings = Settings {
        endpoints: cfg.fleet.etcd.clone(),
        name: cfg.fleet.member_name(),
        prefix: cfg.fleet.prefix.clone(),
        lease_ttl_secs: cfg.fleet.lease_ttl_secs,
    };
    let timing = Timing::new(settings.lease_ttl_secs);
    let member: Rc<RefCell<Option<MemberHandle>>> = Rc::default();
    let starter = {
        let (api, member) = (api.clone(), member.clone());
        tokio::task::spawn_local(async move {
            tracing::info!(member = %settings.name, etcd = %settings.endpoints.join(","), "fleet mode");
            let client = loop {
                match admin::connect(&settings.endpoints, timing.call_timeout).await {
                    Ok(c) => break c,
                    Err(e) => {
                        tracing::warn!(error = %e, "fleet: etcd unreachable; retrying");
                        tokio::time::sleep(timing.renew_every).await;
                    }
                }
            };
            // The methods wait for etcd up to the lease TTL: an election or a busy
            // cluster is not an error for an operator's call.
            *api.fleet.borrow_mut() =
                Some(Admin::new(client.clone(), &settings.prefix, timing.ttl));
            match host {
                Some(host) => {
                    *member.borrow_mut() = Some(Member::new(settings, client, host).spawn());
                }
                None => tracing::warn!(
                    "fleet: this daemon holds one account only (accounts.multi is off); it answers the fleet methods but owns no accounts"
                ),
            }
        })
    };
    Some(Fleet {
        starter,
        member,
        timing,
    })
}

impl Fleet {
    /// Leaves the fleet: every account logged out, then the lease revoked, so the other
    /// members take the accounts at once. Bounded by the lease TTL.
    pub async fn stop(self) {
        self.starter.abort();
        let member = self.member.borrow_mut().take();
        if let Some(m) = member {
            if tokio::time::timeout(self.timing.ttl, m.stop())
                .await
                .is_err()
            {
                tracing::warn!("fleet: leaving took longer than the lease TTL");
            }
        }
    }
}
