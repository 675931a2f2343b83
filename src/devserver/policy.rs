//! The multi-device login policy: which existing logins a new login displaces.
//!
//! Pure: no state, no I/O. [`displaced`] is the whole decision and is table-tested below.
//!
//! Rules (DESIGN §6):
//! - `single`: one device in all — a new login displaces every other login.
//! - `dual`: one mobile-or-desktop device plus Web — a non-Web login displaces every other
//!   non-Web login.
//! - `triple`: one mobile, one desktop, plus Web — a login displaces the other logins of its
//!   platform class.
//! - `multi`: every platform at once.
//! - In every policy the same platform displaces, except Web, which allows
//!   `web_instances` logins at once: a new Web login displaces the oldest Web logins beyond
//!   that number. Under `single`, a new Web login still displaces every non-Web login, and a
//!   new non-Web login displaces every Web login.
//!
//! The newest login always wins.

use crate::proto::ws::{Platform, PlatformClass};

/// The app's multi-device login policy (`--policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Policy {
    /// One device in all.
    Single,
    /// One mobile-or-desktop device plus Web.
    Dual,
    /// One mobile plus one desktop plus Web.
    Triple,
    /// Every platform at once (same platform still displaces).
    Multi,
}

impl Policy {
    /// The flag value (`single`, …).
    pub fn name(self) -> &'static str {
        match self {
            Policy::Single => "single",
            Policy::Dual => "dual",
            Policy::Triple => "triple",
            Policy::Multi => "multi",
        }
    }
}

/// Whether a login on `new` displaces an existing login on `old`, Web-vs-Web aside
/// (Web-vs-Web is decided by the instance count, see [`displaced`]).
pub fn conflicts(policy: Policy, new: Platform, old: Platform) -> bool {
    if new == old {
        return true;
    }
    match policy {
        Policy::Single => true,
        Policy::Dual => new.class() != PlatformClass::Web && old.class() != PlatformClass::Web,
        Policy::Triple => new.class() == old.class(),
        Policy::Multi => false,
    }
}

/// Given the user's current logins' platforms, oldest first, and the platform of a new
/// login, the indices (into `existing`) of the logins it displaces, ascending.
///
/// `existing` must not contain the new login's own instance (re-logging an instance
/// replaces its record; that is not a displacement).
pub fn displaced(
    policy: Policy,
    web_instances: usize,
    existing: &[Platform],
    new: Platform,
) -> Vec<usize> {
    let mut out = Vec::new();
    let webs: Vec<usize> = existing
        .iter()
        .enumerate()
        .filter(|(_, p)| **p == Platform::Web)
        .map(|(i, _)| i)
        .collect();
    for (i, old) in existing.iter().enumerate() {
        if *old == Platform::Web && new == Platform::Web {
            continue;
        }
        if conflicts(policy, new, *old) {
            out.push(i);
        }
    }
    if new == Platform::Web {
        // Keep the newest `web_instances - 1` existing Web logins (the new one is the last).
        let keep = web_instances.max(1) - 1;
        let excess = webs.len().saturating_sub(keep);
        out.extend(webs.iter().take(excess).copied());
        out.sort_unstable();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use Platform::*;
    use Policy::*;

    #[test]
    fn pairs_table() {
        // (policy, old, new, old is displaced)
        let table: &[(Policy, Platform, Platform, bool)] = &[
            // single: everything conflicts
            (Single, Linux, Android, true),
            (Single, Android, Web, true),
            (Single, Web, Mac, true),
            (Single, Linux, Linux, true),
            (Single, IPhone, IPad, true),
            // dual: mobile/desktop share one slot, Web is separate
            (Dual, Linux, Android, true),
            (Dual, Android, Windows, true),
            (Dual, IPhone, IPad, true),
            (Dual, Linux, Web, false),
            (Dual, Web, Linux, false),
            (Dual, Linux, Linux, true),
            // triple: one per class
            (Triple, Linux, Android, false),
            (Triple, Android, Linux, false),
            (Triple, Linux, Mac, true),
            (Triple, IPhone, Android, true),
            (Triple, Web, Linux, false),
            (Triple, Mac, Mac, true),
            // multi: only the same platform
            (Multi, Linux, Android, false),
            (Multi, Linux, Mac, false),
            (Multi, IPhone, IPad, false),
            (Multi, Web, Linux, false),
            (Multi, Linux, Linux, true),
            (Multi, Android, Android, true),
        ];
        for &(policy, old, new, expect) in table {
            let got = displaced(policy, 1, &[old], new);
            assert_eq!(got == vec![0], expect, "{policy:?}: {old} then {new}");
        }
    }

    #[test]
    fn web_instances_keep_the_newest() {
        for policy in [Single, Dual, Triple, Multi] {
            assert_eq!(displaced(policy, 1, &[Web], Web), vec![0], "{policy:?}");
            assert!(displaced(policy, 2, &[Web], Web).is_empty(), "{policy:?}");
            assert_eq!(
                displaced(policy, 2, &[Web, Web], Web),
                vec![0],
                "{policy:?}"
            );
            assert_eq!(
                displaced(policy, 3, &[Web, Web, Web], Web),
                vec![0],
                "{policy:?}"
            );
            // 0 behaves as 1: a Web login needs room for itself.
            assert_eq!(displaced(policy, 0, &[Web], Web), vec![0], "{policy:?}");
        }
    }

    #[test]
    fn mixed_sets() {
        assert_eq!(
            displaced(Single, 2, &[Linux, Web, Android], Web),
            vec![0, 2]
        );
        assert_eq!(displaced(Dual, 1, &[Linux, Web, Web], Web), vec![1, 2]);
        assert_eq!(displaced(Dual, 1, &[Linux, Web], Android), vec![0]);
        assert_eq!(displaced(Triple, 1, &[Linux, Android, Web], IPad), vec![1]);
        assert!(displaced(Multi, 1, &[Linux, Android, Web], IPad).is_empty());
        assert!(displaced(Multi, 1, &[], Linux).is_empty());
    }
}
