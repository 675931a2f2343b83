//! The rules between keys, checked on the effective configuration: each message names
//! both keys, their values and where each was set.

use super::error::ConfigError;
use super::Loaded;

/// `server.heartbeat_timeout_ms` > `server.heartbeat_interval_ms`, and
/// `reconnect.initial_ms` ≤ `reconnect.max_ms`.
pub(super) fn check(l: &Loaded) -> Result<(), ConfigError> {
    let c = &l.config;
    let rule = |ok: bool, a: (&str, u64), relation: &str, b: (&str, u64)| {
        let show = |(key, value): (&str, u64)| format!("{key} = {value} ({})", l.origin(key));
        if ok {
            Ok(())
        } else {
            Err(ConfigError::Inconsistent {
                message: format!("{} must be {relation} {}", show(a), show(b)),
            })
        }
    };
    rule(
        c.server.heartbeat_timeout_ms > c.server.heartbeat_interval_ms,
        ("server.heartbeat_timeout_ms", c.server.heartbeat_timeout_ms),
        "greater than",
        (
            "server.heartbeat_interval_ms",
            c.server.heartbeat_interval_ms,
        ),
    )?;
    rule(
        c.reconnect.initial_ms <= c.reconnect.max_ms,
        ("reconnect.initial_ms", c.reconnect.initial_ms),
        "at most",
        ("reconnect.max_ms", c.reconnect.max_ms),
    )
}
