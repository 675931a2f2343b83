//! The event log's ring and each subscription's cursor into it, without I/O.
//!
//! Every event is serialised once and kept in a ring of the last `events.history` events.
//! A subscription is only a cursor (the next seq it wants) and a filter: nothing is copied
//! per subscriber. Whenever a subscriber's socket can take more, [`Ring::next`] says what
//! to write next for it:
//!
//! - the next retained event it wants, in seq order;
//! - one `eventsLost {from, to}` when its cursor fell out of the ring (a `since` older than
//!   the ring, or a reader slower than the history) or when it is more than `lag_limit`
//!   events behind the newest (`api.subscriber_queue`): it skips to the newest, so a
//!   subscriber that does not read costs nothing and learns what it missed;
//! - nothing, when it is up to date.

use bytes::Bytes;
use std::collections::{HashSet, VecDeque};
use std::rc::Rc;

use crate::proto::api::EVENT_NAMES;

/// One retained event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its seq.
    pub seq: u64,
    /// Its name (one of [`EVENT_NAMES`]).
    pub name: &'static str,
    /// The account it concerns (many accounts), or None.
    pub account: Option<Rc<str>>,
    /// Its serialised form, shared by every subscriber.
    pub body: Bytes,
}

/// What a subscription wants: a set of event names (`eventsLost` is always in it) and,
/// optionally, a set of accounts (an event that concerns no account always passes it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter(u32, Option<Rc<HashSet<String>>>);

impl Filter {
    /// Every event.
    pub const ALL: Filter = Filter(u32::MAX, None);

    /// Only these names (unknown names are ignored; the API refuses them before).
    pub fn of<'a>(names: impl IntoIterator<Item = &'a str>) -> Filter {
        let mut bits = Filter::bit("eventsLost");
        for n in names {
            bits |= Filter::bit(n);
        }
        Filter(bits, None)
    }

    /// Only the events of these accounts (and those of no account).
    pub fn accounts(self, accounts: impl IntoIterator<Item = String>) -> Filter {
        Filter(self.0, Some(Rc::new(accounts.into_iter().collect())))
    }

    /// Does it let an event of `name` concerning `account` through?
    pub fn admits_entry(&self, name: &str, account: Option<&str>) -> bool {
        self.admits(name)
            && match (&self.1, account) {
                (Some(set), Some(a)) => set.contains(a),
                _ => true,
            }
    }

    fn bit(name: &str) -> u32 {
        EVENT_NAMES
            .iter()
            .position(|n| *n == name)
            .map(|i| 1u32 << i)
            .unwrap_or(0)
    }

    /// Does it let `name` through?
    pub fn admits(&self, name: &str) -> bool {
        self.0 & Filter::bit(name) != 0
    }
}

/// Where a subscription stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// The next seq it wants.
    pub next: u64,
    /// What it wants.
    pub filter: Filter,
}

/// What to write next for a subscription.
#[derive(Debug, PartialEq, Eq)]
pub enum Step<'a> {
    /// This event.
    Deliver(&'a Entry),
    /// `eventsLost` for `from..=to` (render it with seq `to`).
    Lost {
        /// First missed seq.
        from: u64,
        /// Last missed seq.
        to: u64,
    },
    /// Up to date.
    Idle,
}

/// The ring of retained events.
#[derive(Debug)]
pub struct Ring {
    entries: VecDeque<Entry>,
    capacity: usize,
    last: u64,
}

impl Ring {
    /// An empty ring keeping at most `capacity` (≥ 1) events.
    pub fn new(capacity: usize) -> Ring {
        Ring {
            entries: VecDeque::new(),
            capacity: capacity.max(1),
            last: 0,
        }
    }

    /// The seq the next event gets.
    pub fn next_seq(&self) -> u64 {
        self.last.saturating_add(1)
    }

    /// The seq of the newest event (0 before the first).
    pub fn last_seq(&self) -> u64 {
        self.last
    }

    /// The seq of the oldest retained event (`last + 1` when none is).
    pub fn oldest_seq(&self) -> u64 {
        self.entries
            .front()
            .map(|e| e.seq)
            .unwrap_or_else(|| self.next_seq())
    }

    /// How many are retained.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// None retained.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Keeps at most `capacity` (≥ 1) events from now on.
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity.max(1);
        self.trim();
    }

    fn trim(&mut self) {
        while self.entries.len() > self.capacity {
            self.entries.pop_front();
        }
        if self.entries.capacity() > 4 * self.entries.len().max(64) {
            self.entries.shrink_to_fit();
        }
    }

    /// Appends the event that got [`Ring::next_seq`]; returns its seq.
    pub fn push(&mut self, name: &'static str, body: Bytes) -> u64 {
        self.push_for(name, None, body)
    }

    /// [`Ring::push`] for an event that concerns `account`.
    pub fn push_for(&mut self, name: &'static str, account: Option<Rc<str>>, body: Bytes) -> u64 {
        self.last = self.next_seq();
        self.entries.push_back(Entry {
            seq: self.last,
            name,
            account,
            body,
        });
        self.trim();
        self.last
    }

    /// The cursor of a new subscription: live from now on, or replaying after `since`.
    pub fn cursor(&self, filter: Filter, since: Option<u64>) -> Cursor {
        let next = match since {
            Some(s) => s.saturating_add(1),
            None => self.next_seq(),
        };
        Cursor { next, filter }
    }

    fn get(&self, seq: u64) -> Option<&Entry> {
        let front = self.entries.front()?.seq;
        let i = usize::try_from(seq.checked_sub(front)?).ok()?;
        self.entries.get(i)
    }

    /// What to write next for `cur`, advancing it.
    pub fn next(&self, cur: &mut Cursor, lag_limit: u64) -> Step<'_> {
        self.step(&mut cur.next, &cur.filter, lag_limit)
    }

    /// [`Ring::next`] for a cursor given as its parts (`next` advances).
    pub fn step(&self, next: &mut u64, filter: &Filter, lag_limit: u64) -> Step<'_> {
        loop {
            if *next > self.last {
                return Step::Idle;
            }
            let oldest = self.oldest_seq();
            if *next < oldest {
                let from = *next;
                *next = oldest;
                return Step::Lost {
                    from,
                    to: oldest - 1,
                };
            }
            let behind = self.last - *next + 1;
            if behind > lag_limit.max(1) {
                let from = *next;
                *next = self.next_seq();
                return Step::Lost {
                    from,
                    to: self.last,
                };
            }
            let Some(e) = self.get(*next) else {
                return Step::Idle;
            };
            *next = next.saturating_add(1);
            if filter.admits_entry(e.name, e.account.as_deref()) {
                return Step::Deliver(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(n: u64, capacity: usize) -> Ring {
        let mut r = Ring::new(capacity);
        for i in 1..=n {
            let name = if i % 2 == 0 {
                "onConnecting"
            } else {
                "onConnectSuccess"
            };
            r.push(name, Bytes::from(i.to_string()));
        }
        r
    }

    fn drain(r: &Ring, cur: &mut Cursor, lag: u64) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            match r.next(cur, lag) {
                Step::Idle => return out,
                Step::Deliver(e) => out.push(e.seq.to_string()),
                Step::Lost { from, to } => out.push(format!("lost {from}-{to}")),
            }
        }
    }

    #[test]
    fn a_live_cursor_sees_only_what_comes_after_it() {
        let mut r = ring(3, 10);
        let mut c = r.cursor(Filter::ALL, None);
        assert_eq!(drain(&r, &mut c, 100), Vec::<String>::new());
        r.push("onConnecting", Bytes::new());
        assert_eq!(drain(&r, &mut c, 100), ["4"]);
    }

    #[test]
    fn since_replays_what_the_ring_holds_and_reports_the_rest() {
        let r = ring(10, 5);
        assert_eq!(r.oldest_seq(), 6);
        let mut c = r.cursor(Filter::ALL, Some(0));
        assert_eq!(
            drain(&r, &mut c, 100),
            ["lost 1-5", "6", "7", "8", "9", "10"]
        );
        let mut c = r.cursor(Filter::ALL, Some(7));
        assert_eq!(drain(&r, &mut c, 100), ["8", "9", "10"]);
        let mut c = r.cursor(Filter::ALL, Some(10));
        assert!(drain(&r, &mut c, 100).is_empty());
        // Extreme values of since: nothing to replay, no overflow.
        for s in [u64::MAX, u64::MAX - 1, 11, 1 << 63] {
            let mut c = r.cursor(Filter::ALL, Some(s));
            assert!(drain(&r, &mut c, 100).is_empty(), "{s}");
        }
    }

    #[test]
    fn a_subscriber_behind_by_more_than_the_limit_skips_to_the_newest() {
        let mut r = ring(3, 100);
        let mut c = r.cursor(Filter::ALL, None);
        for _ in 0..10 {
            r.push("onConnecting", Bytes::new());
        }
        assert_eq!(drain(&r, &mut c, 5), ["lost 4-13"]);
        r.push("onConnecting", Bytes::new());
        assert_eq!(drain(&r, &mut c, 5), ["14"], "then live again");
        // Within the limit nothing is lost.
        let mut c = r.cursor(Filter::ALL, Some(10));
        assert_eq!(drain(&r, &mut c, 5), ["11", "12", "13", "14"]);
    }

    #[test]
    fn filters_skip_other_events_but_never_losses() {
        let r = ring(10, 4);
        let mut c = r.cursor(Filter::of(["onConnecting"]), Some(0));
        assert_eq!(drain(&r, &mut c, 100), ["lost 1-6", "8", "10"]);
        assert!(Filter::of(["onConnecting"]).admits("eventsLost"));
        assert!(!Filter::of(["onConnecting"]).admits("onConnectSuccess"));
        assert!(Filter::ALL.admits("onKickedOffline"));
    }

    #[test]
    fn capacity_changes_keep_the_newest() {
        let mut r = ring(10, 10);
        r.set_capacity(3);
        assert_eq!((r.oldest_seq(), r.last_seq(), r.len()), (8, 10, 3));
        r.set_capacity(0);
        assert_eq!(r.len(), 1);
    }
}
