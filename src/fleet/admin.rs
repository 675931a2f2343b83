//! The fleet's operations that any member may do: read it, add and remove accounts.

use etcd_client::{Client, ConnectOptions, GetOptions, PutOptions};
use serde::Serialize;
use std::future::Future;
use std::time::Duration;

use super::plan::Snapshot;
use super::{Entry, Keys};

/// Most keys read from the fleet's prefix at once; a fleet larger than this is refused
/// rather than read in part.
pub const MAX_KEYS: i64 = 1_000_000;

/// `fleetStatus`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FleetStatus {
    /// The live members, by name, with how many accounts each owns.
    pub members: Vec<MemberStatus>,
    /// Every owned account and its owner.
    pub accounts: Vec<AccountStatus>,
    /// The accounts nobody owns right now.
    pub unowned: Vec<String>,
}

/// One member in [`FleetStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberStatus {
    /// Its name.
    pub name: String,
    /// How many accounts it owns.
    pub accounts: usize,
}

/// One owned account in [`FleetStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountStatus {
    /// The account.
    #[serde(rename = "userID")]
    pub user_id: String,
    /// The member that owns it.
    pub owner: String,
}

impl From<&Snapshot> for FleetStatus {
    fn from(s: &Snapshot) -> FleetStatus {
        FleetStatus {
            members: s
                .counts()
                .into_iter()
                .map(|(name, accounts)| MemberStatus {
                    name: name.to_owned(),
                    accounts,
                })
                .collect(),
            accounts: s
                .owners
                .iter()
                .filter(|(a, _)| s.accounts.contains(a.as_str()))
                .map(|(a, (owner, _))| AccountStatus {
                    user_id: a.clone(),
                    owner: owner.clone(),
                })
                .collect(),
            unowned: s.unowned().cloned().collect(),
        }
    }
}

/// A failed fleet operation: etcd could not be reached or refused, in words without
/// secrets (endpoints are configuration, not secrets).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FleetError(pub String);

/// `fut`, failing after `timeout`.
pub(super) async fn timed<T>(
    timeout: Duration,
    what: &str,
    fut: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, FleetError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(FleetError(format!(
            "etcd: {what} failed: {}",
            crate::text::clean(&e.to_string())
        ))),
        Err(_) => Err(FleetError(format!(
            "etcd: {what} took more than {} ms",
            timeout.as_millis()
        ))),
    }
}

/// `call` until it succeeds or `timeout` has passed: a request that went to an etcd
/// member that is down fails at once, and the next one goes to another member. Only for
/// calls that may be repeated (reads, and writes whose repetition changes nothing).
pub(super) async fn retried<T, F, Fut>(
    timeout: Duration,
    what: &str,
    mut call: F,
) -> Result<T, FleetError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, etcd_client::Error>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match timed(left, what, call()).await {
            Ok(v) => return Ok(v),
            Err(e) if tokio::time::Instant::now() + RETRY_PAUSE >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(RETRY_PAUSE).await,
        }
    }
}

/// The pause before a call is tried again.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// A client of the fleet's keys.
#[derive(Clone)]
pub struct Admin {
    client: Client,
    keys: Keys,
    timeout: Duration,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin").field("keys", &self.keys).finish()
    }
}

/// Connects to `endpoints` (lazily: an unreachable cluster fails the calls, not this).
pub async fn connect(endpoints: &[String], timeout: Duration) -> Result<Client, FleetError> {
    let options = ConnectOptions::new()
        .with_connect_timeout(timeout)
        .with_timeout(timeout)
        .with_keep_alive(timeout, timeout)
        // A member cut off from the quorum refuses at once instead of answering from a
        // stale copy.
        .with_require_leader(true);
    match tokio::time::timeout(timeout, Client::connect(endpoints, Some(options))).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(FleetError(format!(
            "etcd: cannot connect to {}: {}",
            endpoints.join(", "),
            crate::text::clean(&e.to_string())
        ))),
        Err(_) => Err(FleetError(format!(
            "etcd: cannot connect to {} within {} ms",
            endpoints.join(", "),
            timeout.as_millis()
        ))),
    }
}

impl Admin {
    /// The fleet under `prefix` through `client`; each call fails after `timeout`.
    pub fn new(client: Client, prefix: &str, timeout: Duration) -> Admin {
        Admin {
            client,
            keys: Keys::new(prefix),
            timeout,
        }
    }

    /// The key names.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The etcd client.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// One consistent read of every key of the fleet. Keys that are not the fleet's (or
    /// are malformed) are skipped.
    pub async fn read(&self) -> Result<Snapshot, FleetError> {
        let resp = retried(self.timeout, "reading the fleet", || {
            let mut client = self.client.clone();
            let key = self.keys.all().to_owned();
            async move {
                client
                    .get(
                        key,
                        Some(GetOptions::new().with_prefix().with_limit(MAX_KEYS)),
                    )
                    .await
            }
        })
        .await?;
        if resp.more() {
            return Err(FleetError(format!(
                "the fleet holds more than {MAX_KEYS} keys"
            )));
        }
        let mut s = Snapshot::default();
        for kv in resp.kvs() {
            let Ok(key) = kv.key_str() else { continue };
            match self.keys.parse(key) {
                Some(Entry::Account(a)) => {
                    s.accounts.insert(a.to_owned());
                }
                Some(Entry::Owner(a)) => {
                    if let Ok(owner) = kv.value_str() {
                        if super::valid_member_name(owner) {
                            s.owners
                                .insert(a.to_owned(), (owner.to_owned(), kv.lease()));
                        }
                    }
                }
                Some(Entry::Member(m)) => {
                    s.members.insert(m.to_owned(), kv.lease());
                }
                None => {}
            }
        }
        Ok(s)
    }

    /// `fleetStatus`.
    pub async fn status(&self) -> Result<FleetStatus, FleetError> {
        Ok(FleetStatus::from(&self.read().await?))
    }

    /// `fleetAdd`: the account joins the set (adding one already there changes nothing);
    /// `true` when it was new.
    pub async fn add(&self, user: &str) -> Result<bool, FleetError> {
        let resp = retried(self.timeout, "adding the account", || {
            let mut client = self.client.clone();
            let key = self.keys.account(user);
            async move {
                client
                    .put(key, "1", Some(PutOptions::new().with_prev_key()))
                    .await
            }
        })
        .await?;
        Ok(resp.prev_key().is_none())
    }

    /// `fleetRemove`: the account leaves the set; its owner logs it out and deletes its
    /// owner key. `true` when it was there.
    pub async fn remove(&self, user: &str) -> Result<bool, FleetError> {
        let resp = retried(self.timeout, "removing the account", || {
            let mut client = self.client.clone();
            let key = self.keys.account(user);
            async move { client.delete(key, None).await }
        })
        .await?;
        Ok(resp.deleted() > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lists_members_owned_and_unowned_accounts() {
        let mut s = Snapshot::default();
        for a in ["a", "b", "c"] {
            s.accounts.insert(a.into());
        }
        s.members.insert("h1".into(), 7);
        s.members.insert("h2".into(), 8);
        s.owners.insert("a".into(), ("h1".into(), 7));
        s.owners.insert("gone".into(), ("h1".into(), 7));
        let st = FleetStatus::from(&s);
        let json = serde_json::to_value(&st).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "members": [{"name": "h1", "accounts": 1}, {"name": "h2", "accounts": 0}],
                "accounts": [{"userID": "a", "owner": "h1"}],
                "unowned": ["b", "c"],
            })
        );
    }
}
