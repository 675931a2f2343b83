//! Who may do what: the access lists (`api.allow_*`, `api.readonly_*`) decided per request
//! from the peer's credentials, and how many connection slots peers without full access
//! may hold.

use crate::config::ApiConfig;
use crate::proto::api::Method;

/// What a peer may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Everything.
    Full,
    /// `status`, `get*`, `subscribe`, `unsubscribe`.
    ReadOnly,
    /// Nothing: every request gets -32001.
    Denied,
}

/// The uid the daemon runs as (the owner of /proc/self; no unsafe call needed).
pub fn own_uid() -> u32 {
    static OWN_UID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *OWN_UID.get_or_init(|| {
        std::fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
            .unwrap_or(0)
    })
}

/// Decides a peer's access from its credentials (None: unknown, denied). Root and the
/// daemon's own user are always allowed, unless listed read-only.
pub fn access_of(s: &ApiConfig, peer: Option<(u32, u32)>) -> Access {
    let Some((uid, gid)) = peer else {
        return Access::Denied;
    };
    if s.readonly_uids.contains(&uid) || s.readonly_gids.contains(&gid) {
        return Access::ReadOnly;
    }
    let open = s.allow_uids.is_empty() && s.allow_gids.is_empty();
    if open
        || uid == 0
        || uid == own_uid()
        || s.allow_uids.contains(&uid)
        || s.allow_gids.contains(&gid)
    {
        Access::Full
    } else {
        Access::Denied
    }
}

/// May `access` call `method`?
pub fn permits(access: Access, method: Method) -> bool {
    match access {
        Access::Full => true,
        Access::ReadOnly => method.read_only(),
        Access::Denied => false,
    }
}

/// Slots peers without full access may hold: three quarters of `api.max_clients` (at
/// least one), so that a read-only or unlisted peer cannot take every slot and lock out
/// root and the listed users.
pub fn limited_slots(max_clients: usize) -> usize {
    (max_clients / 4 * 3 + max_clients % 4 * 3 / 4).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_follows_the_lists() {
        let mut s = ApiConfig::default();
        assert_eq!(access_of(&s, Some((4242, 4242))), Access::Full);
        assert_eq!(access_of(&s, None), Access::Denied);
        s.allow_uids = vec![1000];
        assert_eq!(access_of(&s, Some((4242, 4242))), Access::Denied);
        assert_eq!(access_of(&s, Some((1000, 4242))), Access::Full);
        assert_eq!(access_of(&s, Some((0, 0))), Access::Full);
        s.allow_gids = vec![4242];
        assert_eq!(access_of(&s, Some((4243, 4242))), Access::Full);
        s.readonly_uids = vec![1000];
        assert_eq!(access_of(&s, Some((1000, 1))), Access::ReadOnly);
        assert!(permits(Access::ReadOnly, Method::GetLoginStatus));
        assert!(permits(Access::ReadOnly, Method::Subscribe));
        assert!(!permits(Access::ReadOnly, Method::Login));
        assert!(!permits(Access::Denied, Method::GetVersion));
    }

    #[test]
    fn a_quarter_of_the_slots_is_kept_for_full_access() {
        assert_eq!(limited_slots(1024), 768);
        assert_eq!(limited_slots(4), 3);
        assert_eq!(limited_slots(2), 1);
        assert_eq!(limited_slots(1), 1);
        assert_eq!(limited_slots(7), 5);
    }
}
