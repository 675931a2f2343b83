//! Time, in one place: the wall clock in unix milliseconds and seconds, and the daemon's
//! injectable [`Clock`].
//!
//! Timers (heartbeats, request deadlines, backoff, ticket expiry) run on tokio's clock so
//! that tests can pause and advance it; wall-clock readings that decide behaviour (is the
//! ticket expired?) come from a [`Clock`], which in tests follows tokio's paused clock.

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix time in milliseconds (0 if the system clock is before 1970).
pub fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Unix time in microseconds (0 if the system clock is before 1970).
pub fn unix_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Unix time in seconds (0 if the system clock is before 1970).
pub fn unix_s() -> i64 {
    unix_ms() / 1000
}

/// Where the daemon reads the wall clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// The system clock.
    System,
    /// A wall clock that starts at `unix_ms` and advances with tokio's clock — paused and
    /// advanced by tests, so ticket expiry follows the same time as the timers.
    Tokio {
        /// The wall time at `start`.
        unix_ms: i64,
        /// tokio's clock when the wall time was `unix_ms`.
        start: tokio::time::Instant,
    },
}

impl Clock {
    /// A clock that follows tokio's, starting at `unix_ms` now.
    pub fn tokio_at(unix_ms: i64) -> Clock {
        Clock::Tokio {
            unix_ms,
            start: tokio::time::Instant::now(),
        }
    }

    /// Unix milliseconds now.
    pub fn unix_ms(&self) -> i64 {
        match self {
            Clock::System => unix_ms(),
            Clock::Tokio { unix_ms, start } => {
                let gone = i64::try_from(start.elapsed().as_millis()).unwrap_or(i64::MAX);
                unix_ms.saturating_add(gone)
            }
        }
    }

    /// Unix seconds now.
    pub fn unix_s(&self) -> i64 {
        self.unix_ms().div_euclid(1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_tokio_clock_follows_paused_time() {
        let c = Clock::tokio_at(1_000_000);
        assert_eq!(c.unix_ms(), 1_000_000);
        tokio::time::advance(std::time::Duration::from_millis(2500)).await;
        assert_eq!(c.unix_ms(), 1_002_500);
        assert_eq!(c.unix_s(), 1002);
    }

    #[test]
    fn the_system_clock_is_after_2020() {
        assert!(Clock::System.unix_s() > 1_577_836_800);
        assert!((unix_ms() / 1000 - unix_s()).abs() <= 1);
    }
}
