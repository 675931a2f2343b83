//! Reconnect backoff: exponential with jitter, gRPC connection-backoff shape.

use std::time::Duration;

use crate::config::ReconnectConfig;

/// The backoff policy: delay before retry `n` (n ≥ 1 consecutive failures) is
/// `min(initial · multiplierⁿ⁻¹, max)`, spread by ±`jitter`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// First delay, ms.
    pub initial_ms: u64,
    /// Cap of the un-jittered delay, ms.
    pub max_ms: u64,
    /// Growth per failure.
    pub multiplier: f64,
    /// Spread as a fraction (0.2 = ±20 %).
    pub jitter: f64,
}

impl Backoff {
    /// The policy of a `[reconnect]` section.
    pub fn from_config(c: &ReconnectConfig) -> Backoff {
        Backoff {
            initial_ms: c.initial_ms,
            max_ms: c.max_ms,
            multiplier: c.multiplier,
            jitter: c.jitter,
        }
    }

    /// The un-jittered delay after `failures` consecutive failures (0 → no wait).
    pub fn base_ms(&self, failures: u32) -> u64 {
        if failures == 0 {
            return 0;
        }
        let exp = f64::from(failures.saturating_sub(1).min(64));
        let raw = self.initial_ms as f64 * self.multiplier.max(1.0).powf(exp);
        if raw.is_finite() {
            (raw as u64).min(self.max_ms)
        } else {
            self.max_ms
        }
    }

    /// The delay after `failures` consecutive failures; `rand` in `[0, 1)` picks the point
    /// in the jitter range (`0.5` is the un-jittered delay).
    pub fn delay(&self, failures: u32, rand: f64) -> Duration {
        let base = self.base_ms(failures) as f64;
        let spread = self.jitter.clamp(0.0, 1.0) * (2.0 * rand.clamp(0.0, 1.0) - 1.0);
        Duration::from_millis((base * (1.0 + spread)).max(0.0).round() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Backoff {
        Backoff {
            initial_ms: 1000,
            max_ms: 30_000,
            multiplier: 1.6,
            jitter: 0.2,
        }
    }

    #[test]
    fn grows_by_the_multiplier_and_stops_at_the_cap() {
        let b = policy();
        let seq: Vec<u64> = (0..12).map(|n| b.base_ms(n)).collect();
        assert_eq!(seq[..6], [0, 1000, 1600, 2560, 4096, 6553]);
        assert!(seq.iter().all(|&d| d <= 30_000));
        assert_eq!(b.base_ms(11), 30_000);
        assert_eq!(b.base_ms(u32::MAX), 30_000);
    }

    #[test]
    fn jitter_stays_within_its_range() {
        let b = policy();
        assert_eq!(b.delay(1, 0.0), Duration::from_millis(800));
        assert_eq!(b.delay(1, 0.5), Duration::from_millis(1000));
        assert_eq!(b.delay(1, 1.0), Duration::from_millis(1200));
        for i in 0..100 {
            let d = b.delay(3, f64::from(i) / 100.0).as_millis() as u64;
            assert!((2048..=3072).contains(&d), "{d}");
        }
    }
}
