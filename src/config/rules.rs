//! The rules between keys, checked on the effective configuration: each message names
//! both keys, their values and where each was set.

use super::error::ConfigError;
use super::schema::AuthProvider;
use super::Loaded;

/// `server.heartbeat_timeout_ms` > `server.heartbeat_interval_ms`,
/// `reconnect.initial_ms` ≤ `reconnect.max_ms`, and the `[auth]` keys the provider needs.
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
    )?;
    auth(l)
}

/// The keys `auth.provider` needs, and what `auth.user_id` needs.
fn auth(l: &Loaded) -> Result<(), ConfigError> {
    let a = &l.config.auth;
    let provider = a.provider;
    let fail = |needs: &str| {
        Err(ConfigError::Inconsistent {
            message: format!(
                "auth.provider = \"{}\" ({}) needs {needs}",
                provider.name(),
                l.origin("auth.provider")
            ),
        })
    };
    match provider {
        AuthProvider::Command if a.command.is_empty() => {
            return fail("auth.command (the program that prints the UserSig)")
        }
        AuthProvider::Url if a.url.is_none() => {
            return fail("auth.url (the endpoint that answers with the UserSig)")
        }
        AuthProvider::KeyFile if a.key_file.is_none() => {
            return fail("auth.key_file (the file with the app's secret key)")
        }
        AuthProvider::KeyFile
            if a.ticket_lifetime_secs <= l.config.sdk.usersig_expiring_lead_secs =>
        {
            return Err(ConfigError::Inconsistent {
                message: format!(
                    "auth.ticket_lifetime_secs = {} ({}) must be greater than sdk.usersig_expiring_lead_secs = {} ({}): each ticket would be renewed as soon as it is made",
                    a.ticket_lifetime_secs,
                    l.origin("auth.ticket_lifetime_secs"),
                    l.config.sdk.usersig_expiring_lead_secs,
                    l.origin("sdk.usersig_expiring_lead_secs")
                ),
            })
        }
        _ => {}
    }
    if a.user_id.is_some() {
        let origin = l.origin("auth.user_id");
        if provider == AuthProvider::None {
            return Err(ConfigError::Inconsistent {
                message: format!(
                    "auth.user_id ({origin}) needs auth.provider (a source of UserSigs to log in with)"
                ),
            });
        }
        if l.config.sdk.app_id.is_none() {
            return Err(ConfigError::Inconsistent {
                message: format!(
                    "auth.user_id ({origin}) needs sdk.app_id (the application to log in to at start)"
                ),
            });
        }
    }
    Ok(())
}
