//! Requests waiting for their response: numbering, correlation and deadlines, without I/O.
//!
//! A link sends request `seq` and waits; the response with the same `seq` takes the
//! waiter out ([`Pending::take`]); [`Pending::expire`] hands out every waiter whose
//! deadline has passed (answered with 9520 by the link); [`Pending::drain`] every waiter
//! when the connection is lost (answered with 9508).

use std::collections::BTreeMap;

/// The waiters of one connection, keyed by `seq`.
#[derive(Debug)]
pub struct Pending<T> {
    next_seq: u64,
    waiting: BTreeMap<u64, (u64, T)>,
}

impl<T> Default for Pending<T> {
    fn default() -> Self {
        Pending {
            next_seq: 1,
            waiting: BTreeMap::new(),
        }
    }
}

impl<T> Pending<T> {
    /// No waiter; the first seq is 1.
    pub fn new() -> Pending<T> {
        Pending::default()
    }

    /// Registers a waiter due at `deadline_ms`; returns its seq (never 0, never reused
    /// while it waits).
    pub fn insert(&mut self, deadline_ms: u64, waiter: T) -> u64 {
        let mut seq = self.next_seq;
        while seq == 0 || self.waiting.contains_key(&seq) {
            seq = seq.wrapping_add(1);
        }
        self.next_seq = seq.wrapping_add(1);
        self.waiting.insert(seq, (deadline_ms, waiter));
        seq
    }

    /// The waiter of `seq` (None: unknown, answered already, or given up on).
    pub fn take(&mut self, seq: u64) -> Option<T> {
        self.waiting.remove(&seq).map(|(_, w)| w)
    }

    /// Every waiter whose deadline is at or before `now_ms`.
    pub fn expire(&mut self, now_ms: u64) -> Vec<(u64, T)> {
        let due: Vec<u64> = self
            .waiting
            .iter()
            .filter(|(_, (d, _))| *d <= now_ms)
            .map(|(s, _)| *s)
            .collect();
        due.into_iter()
            .filter_map(|s| self.waiting.remove(&s).map(|(_, w)| (s, w)))
            .collect()
    }

    /// The earliest deadline.
    pub fn next_deadline(&self) -> Option<u64> {
        self.waiting.values().map(|(d, _)| *d).min()
    }

    /// Every waiter (the connection is gone).
    pub fn drain(&mut self) -> Vec<T> {
        std::mem::take(&mut self.waiting)
            .into_values()
            .map(|(_, w)| w)
            .collect()
    }

    /// How many wait.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// None waits.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_find_their_waiter_once() {
        let mut p = Pending::new();
        let a = p.insert(100, "a");
        let b = p.insert(200, "b");
        assert_ne!(a, b);
        assert_eq!(p.take(b), Some("b"));
        assert_eq!(
            p.take(b),
            None,
            "a second response to the same seq is ignored"
        );
        assert_eq!(p.take(999), None);
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn deadlines_expire_in_order_and_lost_connections_drain() {
        let mut p = Pending::new();
        p.insert(300, 3);
        p.insert(100, 1);
        p.insert(200, 2);
        assert_eq!(p.next_deadline(), Some(100));
        assert!(p.expire(99).is_empty());
        let due: Vec<i32> = p.expire(200).into_iter().map(|(_, w)| w).collect();
        assert_eq!(due, vec![1, 2]);
        assert_eq!(p.next_deadline(), Some(300));
        assert_eq!(p.drain(), vec![3]);
        assert!(p.is_empty());
    }

    #[test]
    fn seqs_wrap_without_zero_or_reuse() {
        let mut p = Pending {
            next_seq: u64::MAX,
            waiting: BTreeMap::new(),
        };
        let a = p.insert(0, ());
        let b = p.insert(0, ());
        assert_eq!((a, b), (u64::MAX, 1));
    }
}
