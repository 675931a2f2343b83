//! Fleet mode: several daemons share a set of accounts kept in etcd, and every account is
//! owned by at most one of them at any moment (docs/fleet.md).
//!
//! # The keys (under `fleet.prefix`, `/imlink/` by default)
//!
//! - `accounts/<userID>` — the set of accounts (value `1`), written by `fleetAdd`, deleted
//!   by `fleetRemove`; no lease.
//! - `members/<name>` — one per live member, bound to its lease; the value is the lease id.
//! - `owners/<userID>` — the member that owns the account, bound to that member's lease.
//!   Claimed with a transaction: the account exists and the owner key does not.
//!
//! A member logs in only the accounts whose owner key holds its own lease, logs an account
//! out before it deletes its owner key, and logs everything out once it has not renewed its
//! lease for [`Timing::fence_after`] — well before etcd can let the lease expire — so a
//! member cut off from etcd stops before anyone else may start (the timing argument is in
//! docs/fleet.md).
//!
//! The logic here talks to the daemon through [`AccountHost`]; [`member`] runs one member,
//! [`admin`] holds the operations any member (or a test) may do: status, add, remove.

pub mod admin;
pub mod member;
pub mod plan;

use futures_util::future::LocalBoxFuture;
use std::time::Duration;

pub use admin::{Admin, FleetStatus};
pub use member::{Member, MemberHandle};

/// What a member needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The etcd endpoints (`http://host:port`).
    pub endpoints: Vec<String>,
    /// This member's name, unique in the fleet.
    pub name: String,
    /// The key prefix, ending in `/`.
    pub prefix: String,
    /// The lease TTL in seconds.
    pub lease_ttl_secs: u64,
}

/// The daemon as the fleet sees it: something that holds logged-in accounts.
///
/// `start` makes sure an account is logged in or logging in (it returns once the login is
/// under way: the host keeps it up, reconnecting as it does for any account); `stop` logs
/// an account out and forgets it, and returns only once its connection is closed, so
/// that nothing of it is left on the server when the fleet lets another member take it.
pub trait AccountHost {
    /// Log `user` in (a UserSig from the provider), or keep it logged in.
    fn start<'a>(&'a self, user: &'a str) -> LocalBoxFuture<'a, Result<(), String>>;
    /// Log `user` out and forget it; a user the host does not hold is already stopped.
    fn stop<'a>(&'a self, user: &'a str) -> LocalBoxFuture<'a, ()>;
}

/// The timings derived from the lease TTL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// The lease TTL.
    pub ttl: Duration,
    /// How often the lease is renewed (TTL / 5).
    pub renew_every: Duration,
    /// How long one etcd call may take before it counts as failed.
    pub call_timeout: Duration,
    /// A member that has not renewed its lease for this long (counted from the moment it
    /// sent the last renewal that succeeded) logs every account out: 60 % of the TTL.
    pub fence_after: Duration,
    /// How often the member re-reads the fleet even when no change is reported.
    pub poll_every: Duration,
}

impl Timing {
    /// The timings for a TTL of `ttl_secs` (at least 2 s: checked by the configuration).
    pub fn new(ttl_secs: u64) -> Timing {
        let ttl = Duration::from_secs(ttl_secs.max(2));
        let renew_every = ttl / 5;
        Timing {
            ttl,
            renew_every,
            call_timeout: renew_every,
            fence_after: ttl * 3 / 5,
            poll_every: Duration::from_millis(1000).min(renew_every),
        }
    }
}

/// The key names under a prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// The keys under `prefix` (a `/` is added when it does not end in one).
    pub fn new(prefix: &str) -> Keys {
        let mut prefix = prefix.to_owned();
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        Keys { prefix }
    }

    /// Everything of the fleet.
    pub fn all(&self) -> &str {
        &self.prefix
    }

    /// `accounts/<user>`.
    pub fn account(&self, user: &str) -> String {
        format!("{}accounts/{user}", self.prefix)
    }

    /// `owners/<user>`.
    pub fn owner(&self, user: &str) -> String {
        format!("{}owners/{user}", self.prefix)
    }

    /// `members/<name>`.
    pub fn member(&self, name: &str) -> String {
        format!("{}members/{name}", self.prefix)
    }

    /// What a key under the prefix is, or None for anything else (or a malformed key:
    /// the store is a peer, its keys are checked like any input).
    pub fn parse<'k>(&self, key: &'k str) -> Option<Entry<'k>> {
        let rest = key.strip_prefix(self.prefix.as_str())?;
        let (kind, id) = rest.split_once('/')?;
        match kind {
            "accounts" if crate::proto::api::valid_user_id(id) => Some(Entry::Account(id)),
            "owners" if crate::proto::api::valid_user_id(id) => Some(Entry::Owner(id)),
            "members" if valid_member_name(id) => Some(Entry::Member(id)),
            _ => None,
        }
    }
}

/// A key of the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry<'k> {
    /// `accounts/<user>`.
    Account(&'k str),
    /// `owners/<user>`.
    Owner(&'k str),
    /// `members/<name>`.
    Member(&'k str),
}

/// Longest member name, in bytes.
pub const MAX_MEMBER_NAME_BYTES: usize = 64;

/// A member name: 1 to 64 bytes of letters, digits, `-`, `_` and `.`.
pub fn valid_member_name(name: &str) -> bool {
    (1..=MAX_MEMBER_NAME_BYTES).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The host name (the default member name), cut to a valid member name; `imlinkd` when it
/// cannot be read.
pub fn default_member_name() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name: String = raw
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(MAX_MEMBER_NAME_BYTES)
        .collect();
    if name.is_empty() {
        "imlinkd".into()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timing_fences_well_before_the_lease_can_expire() {
        let t = Timing::new(10);
        assert_eq!(t.renew_every, Duration::from_secs(2));
        assert_eq!(t.fence_after, Duration::from_secs(6));
        assert!(t.fence_after + t.call_timeout < t.ttl);
        let small = Timing::new(2);
        assert!(small.fence_after + small.call_timeout < small.ttl);
        assert!(small.poll_every <= small.renew_every);
    }

    #[test]
    fn keys_round_trip_and_refuse_malformed_ones() {
        let k = Keys::new("/imlink");
        assert_eq!(k.account("alice"), "/imlink/accounts/alice");
        assert_eq!(
            k.parse("/imlink/accounts/alice"),
            Some(Entry::Account("alice"))
        );
        assert_eq!(k.parse("/imlink/owners/bob"), Some(Entry::Owner("bob")));
        assert_eq!(
            k.parse("/imlink/members/h-1.x"),
            Some(Entry::Member("h-1.x"))
        );
        assert_eq!(k.parse("/imlink/accounts/"), None);
        assert_eq!(k.parse("/imlink/accounts/a b"), None);
        assert_eq!(k.parse("/imlink/members/a/b"), None);
        assert_eq!(k.parse("/other/accounts/alice"), None);
        assert_eq!(k.parse("/imlink/what/alice"), None);
        let long = format!("/imlink/accounts/{}", "x".repeat(33));
        assert_eq!(k.parse(&long), None);
    }

    #[test]
    fn member_names() {
        assert!(valid_member_name("host-1.example"));
        assert!(!valid_member_name(""));
        assert!(!valid_member_name("a/b"));
        assert!(!valid_member_name(&"a".repeat(65)));
        assert!(valid_member_name(&default_member_name()));
    }
}
