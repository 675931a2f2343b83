//! What a member should do, worked out from one read of the fleet: which of its accounts
//! to give up, which unowned accounts to claim. Pure, so the balance can be tested alone.

use std::collections::{BTreeMap, BTreeSet};

/// One read of the fleet's keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The accounts.
    pub accounts: BTreeSet<String>,
    /// Owner of each owned account: the member name and its lease.
    pub owners: BTreeMap<String, (String, i64)>,
    /// The live members and their leases.
    pub members: BTreeMap<String, i64>,
}

impl Snapshot {
    /// The accounts without an owner.
    pub fn unowned(&self) -> impl Iterator<Item = &String> {
        self.accounts
            .iter()
            .filter(|a| !self.owners.contains_key(a.as_str()))
    }

    /// How many accounts each live member owns (those with none included).
    pub fn counts(&self) -> BTreeMap<&str, usize> {
        let mut counts: BTreeMap<&str, usize> =
            self.members.keys().map(|m| (m.as_str(), 0)).collect();
        for (account, (owner, _)) in &self.owners {
            if self.accounts.contains(account) {
                if let Some(n) = counts.get_mut(owner.as_str()) {
                    *n = n.saturating_add(1);
                }
            }
        }
        counts
    }
}

/// The fair share of each live member: the accounts divided evenly, the first members by
/// name taking one more when it does not divide.
pub fn targets(snapshot: &Snapshot) -> BTreeMap<&str, usize> {
    let members = snapshot.members.len();
    let mut out = BTreeMap::new();
    if members == 0 {
        return out;
    }
    let total = snapshot.accounts.len();
    let (each, extra) = (total / members, total % members);
    for (i, name) in snapshot.members.keys().enumerate() {
        out.insert(name.as_str(), each + usize::from(i < extra));
    }
    out
}

/// What one member does in a round.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Accounts it owns and gives up (log out, then delete the owner key).
    pub release: Vec<String>,
    /// How many unowned accounts it may claim.
    pub claim: usize,
}

/// The plan of member `me`, which owns `mine` (accounts whose owner key holds its lease).
///
/// A member below its share claims unowned accounts up to it. A member above its share
/// gives up only what the members below theirs cannot take from the unowned accounts, so
/// every move goes from a member above its share to one below: the number of moves is the
/// least that balances the fleet.
pub fn plan(snapshot: &Snapshot, me: &str, mine: &BTreeSet<String>) -> Plan {
    let targets = targets(snapshot);
    let Some(&target) = targets.get(me) else {
        return Plan::default();
    };
    let owned = mine.len();
    if owned < target {
        return Plan {
            release: Vec::new(),
            claim: target - owned,
        };
    }
    let excess = owned - target;
    if excess == 0 {
        return Plan::default();
    }
    let counts = snapshot.counts();
    let deficit: usize = targets
        .iter()
        .filter(|(m, _)| **m != me)
        .map(|(m, t)| t.saturating_sub(counts.get(m).copied().unwrap_or(0)))
        .sum();
    let unowned = snapshot.unowned().count();
    let give = excess.min(deficit.saturating_sub(unowned));
    Plan {
        // The last ones by name: any choice works, a stable one keeps the moves few.
        release: mine.iter().rev().take(give).cloned().collect(),
        claim: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet(accounts: usize, members: &[&str]) -> Snapshot {
        Snapshot {
            accounts: (0..accounts).map(|i| format!("u{i:04}")).collect(),
            owners: BTreeMap::new(),
            members: members
                .iter()
                .enumerate()
                .map(|(i, m)| (m.to_string(), i as i64 + 1))
                .collect(),
        }
    }

    /// Runs rounds of every member against a shared snapshot until nothing changes;
    /// returns the number of moves (releases) made.
    fn settle(s: &mut Snapshot) -> usize {
        let mut moves = 0;
        for _ in 0..100 {
            let mut changed = false;
            let names: Vec<String> = s.members.keys().cloned().collect();
            for m in &names {
                let lease = s.members[m];
                let mine: BTreeSet<String> = s
                    .owners
                    .iter()
                    .filter(|(_, (o, _))| o == m)
                    .map(|(a, _)| a.clone())
                    .collect();
                let p = plan(s, m, &mine);
                for a in &p.release {
                    s.owners.remove(a);
                    moves += 1;
                    changed = true;
                }
                let free: Vec<String> = s.unowned().take(p.claim).cloned().collect();
                for a in free {
                    s.owners.insert(a, (m.clone(), lease));
                    changed = true;
                }
            }
            if !changed {
                return moves;
            }
        }
        panic!("the fleet never settled: {s:?}");
    }

    fn spread(s: &Snapshot) -> Vec<usize> {
        s.counts().values().copied().collect()
    }

    #[test]
    fn targets_divide_evenly() {
        let s = fleet(10, &["a", "b", "c"]);
        let t = targets(&s);
        assert_eq!(t.values().copied().collect::<Vec<_>>(), vec![4, 3, 3]);
        assert!(targets(&fleet(5, &[])).is_empty());
    }

    #[test]
    fn three_members_share_300_and_a_fourth_takes_a_quarter_with_the_least_moves() {
        let mut s = fleet(300, &["a", "b", "c"]);
        assert_eq!(settle(&mut s), 0);
        assert_eq!(spread(&s), vec![100, 100, 100]);
        assert_eq!(s.unowned().count(), 0);
        s.members.insert("d".into(), 9);
        let moves = settle(&mut s);
        assert_eq!(spread(&s), vec![75, 75, 75, 75]);
        assert_eq!(moves, 75, "only the newcomer's share moves");
    }

    #[test]
    fn a_dead_members_accounts_go_to_the_survivors_without_other_moves() {
        let mut s = fleet(300, &["a", "b", "c"]);
        settle(&mut s);
        s.members.remove("b");
        s.owners.retain(|_, (o, _)| o != "b");
        let moves = settle(&mut s);
        assert_eq!(moves, 0, "the survivors only claim");
        assert_eq!(spread(&s), vec![150, 150]);
    }

    #[test]
    fn a_member_above_its_share_keeps_what_unowned_accounts_can_cover() {
        let mut s = fleet(4, &["a", "b"]);
        for a in ["u0000", "u0001", "u0002"] {
            s.owners.insert(a.into(), ("a".into(), 1));
        }
        let mine: BTreeSet<String> = s.owners.keys().cloned().collect();
        // b's share is 2; one unowned account covers half of it: a gives up one.
        let p = plan(&s, "a", &mine);
        assert_eq!(p.release.len(), 1);
        assert_eq!(p.claim, 0);
        assert_eq!(plan(&s, "b", &BTreeSet::new()).claim, 2);
        // Not a member (its lease is gone): nothing to do.
        assert_eq!(plan(&s, "z", &BTreeSet::new()), Plan::default());
    }

    #[test]
    fn owners_of_removed_accounts_are_not_counted() {
        let mut s = fleet(2, &["a"]);
        s.owners.insert("gone".into(), ("a".into(), 1));
        assert_eq!(s.counts()["a"], 0);
    }
}
