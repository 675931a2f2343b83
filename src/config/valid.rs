//! The check of every key, as the `deserialize_with` functions of [`super::Config`]'s
//! fields. Each one reads the field's type from whatever the source holds — a TOML value,
//! or the text of an environment variable or a flag (see [`super::de`]) — and refuses
//! anything of the wrong type or out of range with one message saying what the value must
//! be. The loader adds the key, the value as written and where it was written.

use serde::de::{self, Deserialize, Deserializer, Error as _, Visitor};
use serde::Serializer;
use std::fmt;
use std::path::PathBuf;

use super::limits::*;
use super::schema::{AuthProvider, Backend};
use super::MAX_SOCKET_PATH_BYTES;
use crate::codes::LogLevel;
use crate::proto::ws::Platform;

/// Reads a `T` and keeps it if `ok` says so; anything else fails with `problem`.
fn checked<'de, T, D>(d: D, ok: impl FnOnce(&T) -> bool, problem: &str) -> Result<T, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    match T::deserialize(d) {
        Ok(v) if ok(&v) => Ok(v),
        _ => Err(D::Error::custom(problem)),
    }
}

/// What an unsigned integer in `lo..=hi` must be, in words.
fn range_problem(lo: u64, hi: u64, note: &str) -> String {
    match lo {
        0 => format!("must be a non-negative integer, at most {hi}{note}"),
        1 => format!("must be a positive integer, at most {hi}{note}"),
        _ => format!("must be an integer from {lo} to {hi}{note}"),
    }
}

/// An unsigned integer in `lo..=hi`.
fn uint<'de, D: Deserializer<'de>>(d: D, lo: u64, hi: u64, note: &str) -> Result<u64, D::Error> {
    checked(d, |n| (lo..=hi).contains(n), &range_problem(lo, hi, note))
}

/// A `usize` in `lo..=hi`.
fn size<'de, D: Deserializer<'de>>(
    d: D,
    lo: usize,
    hi: usize,
    note: &str,
) -> Result<usize, D::Error> {
    let (lo64, hi64) = (lo as u64, hi as u64);
    let n = uint(d, lo64, hi64, note)?;
    usize::try_from(n).map_err(|_| D::Error::custom(range_problem(lo64, hi64, note)))
}

/// `sdk.app_id`: 1 to 4294967295, or unset (an empty environment variable).
pub(super) fn app_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    checked(
        d,
        |id: &Option<u64>| id.is_none_or(|n| (1..=MAX_APP_ID).contains(&n)),
        &format!("must be a positive integer (the SDKAppID), at most {MAX_APP_ID}"),
    )
}

/// `sdk.log_level`.
pub(super) fn log_level<'de, D: Deserializer<'de>>(d: D) -> Result<LogLevel, D::Error> {
    checked(
        d,
        |_| true,
        "must be none, debug, info, warn or error (or V2TIM_LOG_*, or 0, 3, 4, 5, 6)",
    )
}

/// `sdk.platform`, case-insensitive.
pub(super) fn platform<'de, D: Deserializer<'de>>(d: D) -> Result<Platform, D::Error> {
    const PROBLEM: &str = "must be one of Android, iPhone, iPad, Windows, Mac, Linux, Web";
    let name: String = checked(d, |_| true, PROBLEM)?;
    Platform::parse(&name).map_err(|_| D::Error::custom(PROBLEM))
}

/// `server.backend`, case-insensitive.
pub(super) fn backend<'de, D: Deserializer<'de>>(d: D) -> Result<Backend, D::Error> {
    const PROBLEM: &str =
        "must be \"imlink\" (the native protocol) or \"tencent\" (the official SDK)";
    let name: String = checked(d, |_| true, PROBLEM)?;
    match name.trim().to_ascii_lowercase().as_str() {
        "imlink" => Ok(Backend::Imlink),
        "tencent" => Ok(Backend::Tencent),
        _ => Err(D::Error::custom(PROBLEM)),
    }
}

/// `sdk.usersig_expiring_lead_secs`.
pub(super) fn expiring_lead_secs<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    uint(d, 0, MAX_EXPIRING_LEAD_SECS, " (365 days)")
}

/// `server.*_ms` and `reconnect.stable_ms`.
pub(super) fn timeout_ms<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    uint(d, 1, MAX_TIMEOUT_MS, " (24 h)")
}

/// `reconnect.initial_ms`, `reconnect.max_ms`.
pub(super) fn backoff_ms<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    uint(d, 1, MAX_BACKOFF_MS, " (1 h)")
}

/// `reconnect.multiplier`.
pub(super) fn multiplier<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    checked(
        d,
        |x: &f64| (1.0..=MAX_MULTIPLIER).contains(x),
        &format!("must be a number from 1 to {MAX_MULTIPLIER}"),
    )
}

/// `reconnect.jitter`.
pub(super) fn jitter<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    checked(
        d,
        |x: &f64| (0.0..1.0).contains(x),
        "must be a number >= 0 and < 1",
    )
}

/// `api.max_clients`.
pub(super) fn max_clients<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    size(d, 1, MAX_CLIENTS, "")
}

/// `api.max_line_bytes`.
pub(super) fn max_line_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    size(
        d,
        MIN_LINE_BYTES,
        MAX_LINE_BYTES,
        " (a request must fit; 64 MiB)",
    )
}

/// `api.idle_timeout_ms`: at least a second (a client must be able to send a request).
pub(super) fn idle_timeout_ms<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    uint(d, 1000, MAX_TIMEOUT_MS, " (24 h)")
}

/// `api.subscriber_queue`.
pub(super) fn subscriber_queue<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    size(d, 1, MAX_SUBSCRIBER_QUEUE, "")
}

/// `events.history`.
pub(super) fn history<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    size(d, 1, MAX_HISTORY, "")
}

/// `state.restore_session`.
pub(super) fn boolean<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    checked(d, |_| true, "must be true or false")
}

/// `server.url`: a `ws://` or `wss://` URL, parsed by the `url` crate and kept in the
/// form it normalises to, so that what was checked is what is used.
pub(super) fn ws_url<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    const WS: &str = "must be a ws:// or wss:// URL";
    let text: String = checked(d, |_| true, WS)?;
    let url = url::Url::parse(text.trim()).map_err(|e| match e {
        url::ParseError::InvalidPort => {
            D::Error::custom(format!("{WS} with a port from 1 to 65535"))
        }
        e => D::Error::custom(format!("{WS} ({e})")),
    })?;
    let problem = if !matches!(url.scheme(), "ws" | "wss") {
        Some(WS.to_owned())
    } else if url.host_str().is_none_or(str::is_empty) {
        Some(format!("{WS} with a host"))
    } else if url.port() == Some(0) {
        Some(format!("{WS} with a port from 1 to 65535"))
    } else if !url.username().is_empty() || url.password().is_some() {
        // The URL is shown by `status` and logged; a password in it would leak there.
        Some("must not contain a user name or password".to_owned())
    } else if url.fragment().is_some() {
        Some(format!("{WS} without a #fragment"))
    } else {
        None
    };
    match problem {
        Some(p) => Err(D::Error::custom(p)),
        None => Ok(url.into()),
    }
}

/// A non-empty path without NUL bytes (the kernel cannot take one).
fn path<'de, D: Deserializer<'de>>(d: D, problem: &str) -> Result<PathBuf, D::Error> {
    let text: String = checked(d, |s: &String| !s.is_empty(), problem)?;
    if text.contains('\0') {
        return Err(D::Error::custom("must not contain a NUL byte"));
    }
    Ok(PathBuf::from(text))
}

/// `api.socket`: it must fit a Unix socket address.
pub(super) fn socket_path<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
    let problem = format!(
        "must be a non-empty path of at most {MAX_SOCKET_PATH_BYTES} bytes (the limit of a Unix socket address)"
    );
    let p = path(d, &problem)?;
    if p.as_os_str().len() > MAX_SOCKET_PATH_BYTES {
        return Err(D::Error::custom(problem));
    }
    Ok(p)
}

/// `state.dir`.
pub(super) fn dir<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
    path(d, "must be a non-empty path")
}

/// `tencent.node`: a program name (looked up in `PATH`) or a path.
pub(super) fn program<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
    path(d, "must be a program name (looked up in PATH) or a path")
}

/// `tencent.bridge_dir`: a path, or unset (an empty value unsets it).
pub(super) fn optional_path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    let text: Option<String> = checked(d, |_| true, "must be a path (or empty for the default)")?;
    match text.filter(|t| !t.is_empty()) {
        None => Ok(None),
        Some(t) if t.contains('\0') => Err(D::Error::custom("must not contain a NUL byte")),
        Some(t) => Ok(Some(PathBuf::from(t))),
    }
}

/// `tencent.proxy_server`: unset (or empty), or a `ws://`/`wss://` URL with a host, no
/// user name or password, no query or fragment, at most [`MAX_PROXY_SERVER_BYTES`]
/// bytes. Kept as written (without trailing slashes): the SDK appends `/binfo?…` to it.
pub(super) fn proxy_server<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let problem = format!(
        "must be a ws:// or wss:// URL with a host, without user name, password, query or fragment, at most {MAX_PROXY_SERVER_BYTES} bytes (or empty for none)"
    );
    let text: Option<String> = checked(d, |_| true, &problem)?;
    let Some(text) = text.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let kept = text.trim_end_matches('/').to_owned();
    let ok = kept.len() <= MAX_PROXY_SERVER_BYTES
        && !kept.chars().any(|c| c.is_whitespace() || c.is_control())
        && url::Url::parse(&kept).is_ok_and(|u| {
            matches!(u.scheme(), "ws" | "wss")
                && u.host_str().is_some_and(|h| !h.is_empty())
                && u.port() != Some(0)
                && u.username().is_empty()
                && u.password().is_none()
                && u.query().is_none()
                && u.fragment().is_none()
        });
    if ok {
        Ok(Some(kept))
    } else {
        Err(D::Error::custom(problem))
    }
}

/// `server.ca_file`: unset, or a readable regular file of PEM certificates. An empty value
/// unsets it.
pub(super) fn ca_file<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    let text: Option<String> = checked(d, |_| true, "must be a path (or empty for none)")?;
    let Some(text) = text.filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    if text.contains('\0') {
        return Err(D::Error::custom("must not contain a NUL byte"));
    }
    let path = PathBuf::from(text);
    let problem = |why: String| {
        D::Error::custom(format!(
            "must be a readable regular file of PEM CA certificates, at most {MAX_CA_FILE_BYTES} bytes: {why}"
        ))
    };
    let pem = super::file::read_regular_file(&path, MAX_CA_FILE_BYTES)
        .map_err(|e| problem(e.to_string()))?;
    let mut certs = 0usize;
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        cert.map_err(|e| problem(format!("not PEM ({e})")))?;
        certs += 1;
    }
    if certs == 0 {
        return Err(problem("it holds no certificate".into()));
    }
    Ok(Some(path))
}

/// The message for a bad `api.socket_mode`.
const MODE_PROBLEM: &str = "must be a file mode from 0 to 0777, written as a string of octal digits (\"0660\") or an octal integer (0o660)";

/// `api.socket_mode`: permission bits only, from an integer (taken at its value: `0o660`
/// in TOML) or a string of octal digits (`"0660"`, `"660"`, `"0o660"`; the environment's
/// text is read the same way).
pub(super) fn socket_mode<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    enum Written {
        Int(i128),
        Text(String),
    }
    struct ModeVisitor;
    impl Visitor<'_> for ModeVisitor {
        type Value = Written;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a file mode")
        }
        fn visit_i64<E: de::Error>(self, n: i64) -> Result<Written, E> {
            Ok(Written::Int(i128::from(n)))
        }
        fn visit_u64<E: de::Error>(self, n: u64) -> Result<Written, E> {
            Ok(Written::Int(i128::from(n)))
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<Written, E> {
            Ok(Written::Text(s.to_owned()))
        }
    }
    let written = d
        .deserialize_any(ModeVisitor)
        .map_err(|_: D::Error| D::Error::custom(MODE_PROBLEM))?;
    let n = match &written {
        Written::Int(n) => u32::try_from(*n).ok(),
        Written::Text(s) => {
            let t = s.trim();
            let digits = t
                .strip_prefix("0o")
                .or_else(|| t.strip_prefix("0O"))
                .unwrap_or(t);
            if digits.is_empty() {
                None
            } else {
                u32::from_str_radix(digits, 8).ok()
            }
        }
    };
    match n {
        Some(n) if n <= 0o777 => Ok(n),
        // Decimal 660 is the classic slip for octal 0660.
        Some(n) if matches!(written, Written::Int(_)) && n <= 777 => Err(D::Error::custom(
            format!("{MODE_PROBLEM}; {n} is decimal here, did you mean \"0{n}\"?"),
        )),
        _ => Err(D::Error::custom(MODE_PROBLEM)),
    }
}

/// `api.socket_mode` is written back as a string of octal digits (`"0660"`).
pub(super) fn serialize_mode<S: Serializer>(mode: &u32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{mode:04o}"))
}

/// `api.allow_*`, `api.readonly_*`: numeric uids or gids. `4294967295` is `(uid_t) -1`,
/// which names nobody.
pub(super) fn id_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u32>, D::Error> {
    checked(
        d,
        |ids: &Vec<u32>| ids.len() <= MAX_IDS && !ids.contains(&u32::MAX),
        &format!(
            "must be a list of numeric ids (uids or gids below {}, at most {MAX_IDS} of them): a TOML array, or a comma-separated list in the environment",
            u32::MAX
        ),
    )
}

/// `auth.provider`, case-insensitive.
pub(super) fn auth_provider<'de, D: Deserializer<'de>>(d: D) -> Result<AuthProvider, D::Error> {
    const PROBLEM: &str = "must be \"none\", \"command\", \"url\" or \"key_file\"";
    let name: String = checked(d, |_| true, PROBLEM)?;
    match name.trim().to_ascii_lowercase().as_str() {
        "none" => Ok(AuthProvider::None),
        "command" => Ok(AuthProvider::Command),
        "url" => Ok(AuthProvider::Url),
        "key_file" => Ok(AuthProvider::KeyFile),
        _ => Err(D::Error::custom(PROBLEM)),
    }
}

/// `auth.user_id`: a valid UserID, or unset (an empty value unsets it).
pub(super) fn optional_user_id<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<String>, D::Error> {
    const PROBLEM: &str =
        "must be a UserID: 1 to 32 bytes of printable ASCII, no spaces (or empty for none)";
    let text: Option<String> = checked(d, |_| true, PROBLEM)?;
    match text.filter(|t| !t.is_empty()) {
        None => Ok(None),
        Some(u) if crate::proto::api::valid_user_id(&u) => Ok(Some(u)),
        Some(_) => Err(D::Error::custom(PROBLEM)),
    }
}

/// `auth.command`: the program and its arguments, each a non-empty word without NUL bytes
/// (at most [`MAX_COMMAND_WORDS`] words of [`MAX_COMMAND_WORD_BYTES`] bytes); empty = none.
pub(super) fn command<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let problem = format!(
        "must be a list of words, the program first (a TOML array of strings, or a comma-separated list in the environment): at most {MAX_COMMAND_WORDS} words of at most {MAX_COMMAND_WORD_BYTES} bytes, none empty or holding a NUL byte"
    );
    checked(
        d,
        |words: &Vec<String>| {
            words.len() <= MAX_COMMAND_WORDS
                && words.iter().all(|w| {
                    !w.is_empty() && w.len() <= MAX_COMMAND_WORD_BYTES && !w.contains('\0')
                })
        },
        &problem,
    )
}

/// Is `host` (as the URL parser gives it) a loopback address or `localhost`?
fn loopback(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(a) => a.is_loopback(),
        url::Host::Ipv6(a) => a.is_loopback(),
    }
}

/// `auth.url`: unset (or empty), or an `https://` URL — `http://` only on a loopback
/// address — with a host, no user name or password and no fragment, at most
/// [`MAX_AUTH_URL_BYTES`] bytes. Kept in the form the URL parser normalises it to.
pub(super) fn auth_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let problem = format!(
        "must be an https:// URL (http:// only on a loopback address) with a host, without user name, password or fragment, at most {MAX_AUTH_URL_BYTES} bytes (or empty for none)"
    );
    let text: Option<String> = checked(d, |_| true, &problem)?;
    let Some(text) = text.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let parsed = url::Url::parse(&text).ok().filter(|u| {
        let host_ok = match u.host() {
            Some(h) => u.scheme() == "https" || (u.scheme() == "http" && loopback(&h)),
            None => false,
        };
        text.len() <= MAX_AUTH_URL_BYTES
            && host_ok
            && u.port() != Some(0)
            && u.username().is_empty()
            && u.password().is_none()
            && u.fragment().is_none()
    });
    match parsed {
        Some(u) => Ok(Some(u.into())),
        None => Err(D::Error::custom(problem)),
    }
}

/// `auth.key_file`, `auth.bearer_token_file`: unset (or empty), or a file that
/// [`super::read_secret_file`] accepts — checked at every load, so `--check-config` and a
/// reload refuse a file others can read. The content is read to check it, then dropped.
pub(super) fn secret_file<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    let text: Option<String> = checked(d, |_| true, "must be a path (or empty for none)")?;
    let Some(text) = text.filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    if text.contains('\0') {
        return Err(D::Error::custom("must not contain a NUL byte"));
    }
    let path = PathBuf::from(text);
    match super::file::read_secret_file(&path, MAX_SECRET_FILE_BYTES) {
        Ok(_) => Ok(Some(path)),
        Err(e) => Err(D::Error::custom(format!(
            "must be a regular file of at most {MAX_SECRET_FILE_BYTES} bytes holding one line, owned by the daemon's user (or root) and private to it (mode 0600 or 0400): {e}"
        ))),
    }
}

/// `auth.ticket_lifetime_secs`.
pub(super) fn ticket_lifetime_secs<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    uint(
        d,
        MIN_TICKET_LIFETIME_SECS,
        MAX_TICKET_LIFETIME_SECS,
        " (100 years)",
    )
}
