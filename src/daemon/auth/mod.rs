//! The UserSig providers (`[auth]`, docs/configuration.md): where the daemon gets a ticket
//! by itself — to log in at start (`auth.user_id`), for a `login` without `userSig`, to
//! renew before expiry, and once after a refusal for an expired ticket.
//!
//! The session machine decides when to ask and what to do with the answer
//! ([`crate::core::session`]); this module only performs the call and checks what came
//! back: [`Provider::fetch`] runs the program ([`command`]), posts to the URL ([`url`]) or
//! signs with the key ([`key_file`]), then [`check`] range-checks the output — one line of
//! the ticket alphabet of at most [`MAX_USERSIG_BYTES`], a ticket that decodes and names the
//! configured user and app, an expiry in the future — so the machine only ever sees a
//! usable ticket or a failure with a code. Nothing here logs or returns the ticket, the key,
//! the bearer token or the program's standard output.

pub mod command;
pub mod key_file;
pub mod url;

use futures_util::future::LocalBoxFuture;
use std::rc::Rc;

use crate::codes::code;
use crate::config::{AuthConfig, AuthProvider};
use crate::core::session::{Fail, Fetched};
use crate::proto::api::MAX_USERSIG_BYTES;

/// The most a provider may print or answer, in bytes (a ticket is a few hundred).
pub const MAX_OUTPUT_BYTES: usize = 64 * 1024;

/// The latest plausible `expireAt`: the last second of the year 9999.
const MAX_EXPIRE_AT: i64 = 253_402_300_799;

/// A configured provider.
#[derive(Clone)]
pub enum Provider {
    /// `auth.provider = "none"`.
    None,
    /// `"command"`.
    Command(Rc<command::CommandProvider>),
    /// `"url"`.
    Url(Rc<url::UrlProvider>),
    /// `"key_file"`.
    KeyFile(Rc<key_file::KeySigner>),
}

impl Provider {
    /// The provider `cfg` describes. Fails only when the URL provider's TLS set-up does
    /// (the files were checked when the configuration was loaded).
    pub fn from_config(cfg: &AuthConfig) -> Result<Provider, String> {
        Ok(match cfg.provider {
            AuthProvider::None => Provider::None,
            AuthProvider::Command => Provider::Command(Rc::new(command::CommandProvider::new(cfg))),
            AuthProvider::Url => Provider::Url(Rc::new(url::UrlProvider::new(cfg)?)),
            AuthProvider::KeyFile => Provider::KeyFile(Rc::new(key_file::KeySigner::new(cfg))),
        })
    }

    /// True unless `none`.
    pub fn configured(&self) -> bool {
        !matches!(self, Provider::None)
    }

    /// A ticket for `user` on `app_id` at unix second `now()` (read when the answer
    /// arrives), checked by [`check`].
    pub fn fetch(
        &self,
        app_id: u64,
        user: String,
        now: impl Fn() -> i64 + 'static,
    ) -> LocalBoxFuture<'static, Result<Fetched, Fail>> {
        let this = self.clone();
        Box::pin(async move {
            let out = match &this {
                Provider::None => {
                    return Err(Fail::new(
                        code::AUTH_PROVIDER_FAILED,
                        "no auth.provider is configured",
                    ))
                }
                Provider::Command(c) => parse_output(&c.run(app_id, &user).await?)?,
                Provider::Url(u) => u.post(app_id, &user).await?,
                Provider::KeyFile(k) => k.sign(app_id, &user, now())?,
            };
            check(out, app_id, &user, now())
        })
    }
}

/// What a provider handed out, before [`check`].
#[derive(Clone, PartialEq, Eq)]
pub struct Output {
    /// The ticket as given.
    pub sig: String,
    /// The `expireAt` given with it, if any.
    pub expire_at: Option<i64>,
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Output")
            .field("sig", &"[redacted]")
            .field("expire_at", &self.expire_at)
            .finish()
    }
}

fn provider_failed(desc: impl Into<String>) -> Fail {
    Fail::new(code::AUTH_PROVIDER_FAILED, desc)
}

/// Reads a provider's text: the ticket alone (surrounding whitespace ignored), or a JSON
/// object `{"userSig": "…", "expireAt": <unix s>}` (`expireAt` optional, other members
/// ignored). Errors describe the shape, never the content.
pub fn parse_output(text: &str) -> Result<Output, Fail> {
    let t = text.trim();
    if t.is_empty() {
        return Err(provider_failed("the provider printed nothing"));
    }
    if !t.starts_with('{') {
        return Ok(Output {
            sig: t.to_owned(),
            expire_at: None,
        });
    }
    // Parsed as a tree first: serde's messages for a wrong type quote the value.
    let v: serde_json::Value = serde_json::from_str(t)
        .map_err(|_| provider_failed("the provider's output starts like JSON but is not JSON"))?;
    json_output(&v)
}

/// Reads `{"userSig": "…", "expireAt": <unix s>}` from a JSON value.
pub fn json_output(v: &serde_json::Value) -> Result<Output, Fail> {
    let Some(obj) = v.as_object() else {
        return Err(provider_failed("the provider's JSON is not an object"));
    };
    let sig = match obj.get("userSig") {
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => s.trim().to_owned(),
        _ => {
            return Err(provider_failed(
                "the provider's JSON has no userSig (a non-empty string)",
            ))
        }
    };
    let expire_at = match obj.get("expireAt") {
        None | Some(serde_json::Value::Null) => None,
        Some(n) => match n.as_i64() {
            Some(e) if (0..=MAX_EXPIRE_AT).contains(&e) => Some(e),
            _ => {
                return Err(provider_failed(
                    "the provider's expireAt is not a unix time in seconds (an integer from 0 to 253402300799)",
                ))
            }
        },
    };
    Ok(Output { sig, expire_at })
}

/// Is `c` in the ticket alphabet (`A-Z a-z 0-9 * - _ + / =`)?
fn ticket_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'*' | b'-' | b'_' | b'+' | b'/' | b'=')
}

/// Checks a provider's ticket for `user` on `app_id` at unix second `now`: at most
/// [`MAX_USERSIG_BYTES`] of the ticket alphabet (else 70003), a ticket that decodes (else
/// 70003), issued for this app (else 70014) and this user (else 70013), not expired by its
/// own fields nor by `expireAt` (else 6206). The expiry is the earlier of the two.
pub fn check(out: Output, app_id: u64, user: &str, now: i64) -> Result<Fetched, Fail> {
    let sig = out.sig;
    if sig.len() > MAX_USERSIG_BYTES {
        return Err(Fail::new(
            code::USERSIG_CHECK_FAILED,
            format!("the provider's ticket is longer than {MAX_USERSIG_BYTES} bytes"),
        ));
    }
    if !sig.bytes().all(ticket_char) {
        return Err(Fail::new(
            code::USERSIG_CHECK_FAILED,
            "the provider's output is not a UserSig: it holds characters outside A-Z a-z 0-9 * - _ + / =",
        ));
    }
    let ticket = crate::usersig::decode(&sig).map_err(|_| {
        Fail::new(
            code::USERSIG_CHECK_FAILED,
            "the provider's output is not a UserSig: it does not decode",
        )
    })?;
    if ticket.sdkappid != app_id {
        return Err(Fail::new(
            code::USERSIG_SDKAPPID_MISMATCH,
            format!(
                "the provider's ticket is for SDKAppID {}, not {app_id}",
                ticket.sdkappid
            ),
        ));
    }
    if ticket.identifier != user {
        return Err(Fail::new(
            code::USERSIG_USERID_MISMATCH,
            format!(
                "the provider's ticket is for another user ({:?}), not {user:?}",
                crate::text::clean_to(&ticket.identifier, 40)
            ),
        ));
    }
    let expires_at = match out.expire_at {
        Some(e) => e.min(ticket.expires_at()),
        None => ticket.expires_at(),
    };
    if expires_at <= now {
        return Err(Fail::new(
            code::USERSIG_EXPIRED_LOCAL,
            format!("the provider's ticket expires at {expires_at}, not after now ({now})"),
        ));
    }
    Ok(Fetched { sig, expires_at })
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP: u64 = 1400000001;
    const KEY: &str = "k";

    fn out(sig: &str) -> Output {
        Output {
            sig: sig.into(),
            expire_at: None,
        }
    }

    #[test]
    fn output_is_a_ticket_or_a_json_object() {
        assert_eq!(parse_output("  abc\n").unwrap(), out("abc"));
        let j = parse_output(r#"{"userSig":"abc","expireAt":1764000000,"x":1}"#).unwrap();
        assert_eq!(j.expire_at, Some(1764000000));
        assert_eq!(j.sig, "abc");
        for bad in [
            "",
            " \n",
            "{",
            r#"{"userSig":1}"#,
            r#"{"userSig":""}"#,
            r#"{"userSig":"a","expireAt":-1}"#,
            r#"{"userSig":"a","expireAt":1.5}"#,
            r#"{"userSig":"a","expireAt":"secret-ish"}"#,
            r#"{"userSig":"a","expireAt":99999999999999}"#,
        ] {
            let e = parse_output(bad).unwrap_err();
            assert_eq!(e.code, code::AUTH_PROVIDER_FAILED, "{bad}");
            assert!(!e.message.contains("secret"), "{e:?}");
        }
        // Anything else is taken as the ticket, for `check` to refuse.
        assert_eq!(parse_output("[1]").unwrap(), out("[1]"));
        // `{"` not JSON: the message does not quote it.
        let e = parse_output("{\"userSig\": \"s3cret").unwrap_err();
        assert!(!e.message.contains("s3cret"));
    }

    #[test]
    fn the_ticket_must_be_for_this_user_and_app_and_alive() {
        let now = 1_764_000_000;
        let good = crate::usersig::generate(APP, KEY, "alice", 600, now);
        let f = check(out(&good), APP, "alice", now).unwrap();
        assert_eq!(f.expires_at, now + 600);
        // expireAt earlier than the ticket's own expiry wins; a later one does not.
        let early = Output {
            sig: good.clone(),
            expire_at: Some(now + 60),
        };
        assert_eq!(
            check(early, APP, "alice", now).unwrap().expires_at,
            now + 60
        );
        let late = Output {
            sig: good.clone(),
            expire_at: Some(now + 6000),
        };
        assert_eq!(
            check(late, APP, "alice", now).unwrap().expires_at,
            now + 600
        );
        let cases = [
            (
                check(out(&good), APP, "bob", now),
                code::USERSIG_USERID_MISMATCH,
            ),
            (
                check(out(&good), APP + 1, "alice", now),
                code::USERSIG_SDKAPPID_MISMATCH,
            ),
            (
                check(out(&good), APP, "alice", now + 600),
                code::USERSIG_EXPIRED_LOCAL,
            ),
            (
                check(out("not a ticket"), APP, "alice", now),
                code::USERSIG_CHECK_FAILED,
            ),
            (
                check(out("abc\u{1b}[2J"), APP, "alice", now),
                code::USERSIG_CHECK_FAILED,
            ),
            (
                check(out("eJyrVgrxDXIsSgAAHE0Ekw__"), APP, "alice", now),
                code::USERSIG_CHECK_FAILED,
            ),
            (
                check(out(&"A".repeat(MAX_USERSIG_BYTES + 1)), APP, "alice", now),
                code::USERSIG_CHECK_FAILED,
            ),
            (
                check(
                    Output {
                        sig: good.clone(),
                        expire_at: Some(now),
                    },
                    APP,
                    "alice",
                    now,
                ),
                code::USERSIG_EXPIRED_LOCAL,
            ),
        ];
        for (r, c) in cases {
            let e = r.unwrap_err();
            assert_eq!(e.code, c, "{e:?}");
            assert!(
                !e.message.contains(&good[..20]),
                "the ticket is never echoed"
            );
        }
    }
}
