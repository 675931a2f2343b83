//! What happened within the last second: instants kept oldest first, those a second old
//! or more dropped as new ones come. The connect pace of many accounts
//! ([`crate::daemon::accounts::Pacer`]) holds starts back with it, and the devserver
//! counts its busiest second of connections with it. Generic over the instant type, so
//! that tokio's paused clock works in tests.

use std::collections::VecDeque;
use std::ops::Add;
use std::time::Duration;

const SECOND: Duration = Duration::from_secs(1);

/// The instants of the last second.
#[derive(Debug)]
pub struct SecondWindow<I> {
    recent: VecDeque<I>,
}

impl<I> Default for SecondWindow<I> {
    fn default() -> Self {
        SecondWindow {
            recent: VecDeque::new(),
        }
    }
}

impl<I: Copy + Ord + Add<Duration, Output = I>> SecondWindow<I> {
    /// Drops what is a second old or more at `now`; returns how many remain.
    pub fn count(&mut self, now: I) -> usize {
        while self.recent.front().is_some_and(|t| *t + SECOND <= now) {
            self.recent.pop_front();
        }
        self.recent.len()
    }

    /// Records `now` (after [`SecondWindow::count`] at the same `now`).
    pub fn push(&mut self, now: I) {
        self.recent.push_back(now);
    }

    /// When the oldest instant leaves the window (None when it is empty).
    pub fn frees_at(&self) -> Option<I> {
        self.recent.front().map(|t| *t + SECOND)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn instants_leave_one_second_after_they_came() {
        let mut w = SecondWindow::default();
        let t0 = Instant::now();
        let ms = |m| t0 + Duration::from_millis(m);
        assert_eq!(w.frees_at(), None);
        for (m, before) in [(0, 0), (100, 1), (999, 2)] {
            assert_eq!(w.count(ms(m)), before);
            w.push(ms(m));
        }
        assert_eq!(w.frees_at(), Some(ms(1000)));
        assert_eq!(w.count(ms(999)), 3);
        assert_eq!(w.count(ms(1000)), 2, "a second old: gone");
        assert_eq!(w.count(ms(5000)), 0);
    }
}
