//! The heartbeat rule of a connection, without I/O.
//!
//! Every `interval` the link sends a heartbeat; the connection is dead when nothing at all
//! came from the server for longer than `timeout`. Any frame counts as a sign of life, not
//! only heartbeat replies. [`Liveness::tick`] is called on the interval with the time and
//! says what to do.

/// What a heartbeat tick asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Beat {
    /// Send a heartbeat.
    Ping,
    /// The connection is dead: nothing heard for `silent_ms`.
    Dead {
        /// How long the server has been silent.
        silent_ms: u64,
    },
}

/// The liveness of one connection (times are monotonic milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Liveness {
    timeout_ms: u64,
    last_rx_ms: u64,
}

impl Liveness {
    /// A connection that came up at `now_ms`, dead after `timeout_ms` of silence.
    pub fn new(timeout_ms: u64, now_ms: u64) -> Liveness {
        Liveness {
            timeout_ms,
            last_rx_ms: now_ms,
        }
    }

    /// Something arrived from the server.
    pub fn heard(&mut self, now_ms: u64) {
        self.last_rx_ms = self.last_rx_ms.max(now_ms);
    }

    /// A new timeout (SIGHUP).
    pub fn set_timeout(&mut self, timeout_ms: u64) {
        self.timeout_ms = timeout_ms;
    }

    /// How long the server has been silent.
    pub fn silent_ms(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.last_rx_ms)
    }

    /// Has anything arrived at or after `since_ms`?
    pub fn heard_since(&self, since_ms: u64) -> bool {
        self.last_rx_ms >= since_ms
    }

    /// The heartbeat tick: ping, or declare the connection dead.
    pub fn tick(&self, now_ms: u64) -> Beat {
        let silent_ms = self.silent_ms(now_ms);
        if silent_ms > self.timeout_ms {
            Beat::Dead { silent_ms }
        } else {
            Beat::Ping
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_a_silent_server_on_the_first_tick_past_the_timeout() {
        let mut l = Liveness::new(45_000, 0);
        assert_eq!(l.tick(20_000), Beat::Ping);
        assert_eq!(l.tick(40_000), Beat::Ping);
        assert_eq!(
            l.tick(45_000),
            Beat::Ping,
            "exactly the timeout is still alive"
        );
        assert_eq!(l.tick(60_000), Beat::Dead { silent_ms: 60_000 });
        l.heard(59_000);
        assert_eq!(l.tick(60_000), Beat::Ping, "any frame is a sign of life");
    }

    #[test]
    fn time_never_runs_backwards() {
        let mut l = Liveness::new(1000, 5000);
        l.heard(100);
        assert_eq!(l.silent_ms(5500), 500);
        assert_eq!(l.tick(0), Beat::Ping);
        assert_eq!(
            l.tick(u64::MAX),
            Beat::Dead {
                silent_ms: u64::MAX - 5000
            }
        );
    }
}
