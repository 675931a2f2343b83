//! UserSig: Tencent's TLSSigAPIv2 login ticket (DESIGN §7) — generate, decode, verify.
//!
//! A ticket is the JSON document
//! `{"TLS.ver":"2.0","TLS.identifier":…,"TLS.sdkappid":…,"TLS.time":…,"TLS.expire":…,["TLS.userbuf":…,]"TLS.sig":…}`,
//! zlib-compressed (level 6, with flate2), base64-encoded, with `+`→`*`, `/`→`-`, `=`→`_`.
//! `TLS.sig` is the standard base64 of HMAC-SHA256 over the signed text, keyed with the
//! secret key's UTF-8 bytes. [`generate`] writes the same JSON text as Tencent's official
//! Node.js generator (same keys in the same order, same number and string formatting), so
//! for the same inputs and clock both tickets inflate to identical JSON with the same MAC;
//! the compressed bytes may differ, which is harmless because the service only inflates.
//! [`decode`] parses the JSON by key, so tickets from libraries that order keys
//! differently, or write numbers as strings, verify too.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use flate2::read::ZlibDecoder;
use flate2::write::ZlibEncoder;
use flate2::Compression;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use std::io::{Read, Write};
use subtle::ConstantTimeEq;

use crate::codes::code;

/// The longest ticket text accepted for decoding; real tickets are a few hundred bytes.
pub const MAX_TICKET_LEN: usize = 16 * 1024;
/// The largest decompressed JSON accepted, in bytes: inflating stops one byte past it, so
/// a zlib bomb costs at most this much memory.
pub const MAX_JSON_LEN: usize = 64 * 1024;
/// The zlib level tickets are compressed with (DESIGN §7), as the official generator does.
const ZLIB_LEVEL: u32 = 6;

/// Why a ticket was refused, with Tencent's code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    /// 70003: not a ticket (bad base64, bad zlib, too large, bad JSON, a field missing or out
    /// of range) or a MAC mismatch.
    #[error("UserSig check failed: {0}")]
    CheckFailed(String),
    /// 70013: the ticket was issued for another UserID.
    #[error("UserSig was issued for another UserID ({found:?}, expected {expected:?})")]
    UserMismatch {
        /// The identifier in the ticket.
        found: String,
        /// The identifier the caller asked for.
        expected: String,
    },
    /// 70014: the ticket was issued for another SDKAppID.
    #[error("UserSig was issued for another SDKAppID ({found}, expected {expected})")]
    AppMismatch {
        /// The app id in the ticket.
        found: u64,
        /// The app id the caller asked for.
        expected: u64,
    },
    /// 70001: the ticket's lifetime is over.
    #[error("UserSig expired at {expired_at} (now {now})")]
    Expired {
        /// `TLS.time + TLS.expire`, unix seconds.
        expired_at: i64,
        /// The time of the check, unix seconds.
        now: i64,
    },
}

impl SigError {
    /// Tencent's error code for this failure.
    pub fn code(&self) -> i32 {
        match self {
            SigError::CheckFailed(_) => code::USERSIG_CHECK_FAILED,
            SigError::UserMismatch { .. } => code::USERSIG_USERID_MISMATCH,
            SigError::AppMismatch { .. } => code::USERSIG_SDKAPPID_MISMATCH,
            SigError::Expired { .. } => code::USERSIG_EXPIRED,
        }
    }
}

/// The fields of a decoded ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ticket {
    /// `TLS.ver`, `"2.0"` for every ticket this module makes.
    #[serde(rename = "TLS.ver")]
    pub ver: String,
    /// `TLS.identifier`: the UserID.
    #[serde(rename = "TLS.identifier")]
    pub identifier: String,
    /// `TLS.sdkappid`.
    #[serde(rename = "TLS.sdkappid")]
    pub sdkappid: u64,
    /// `TLS.time`: issue time, unix seconds.
    #[serde(rename = "TLS.time")]
    pub time: i64,
    /// `TLS.expire`: lifetime in seconds.
    #[serde(rename = "TLS.expire")]
    pub expire: i64,
    /// `TLS.userbuf`: optional base64 payload (TRTC privilege maps).
    #[serde(rename = "TLS.userbuf", skip_serializing_if = "Option::is_none")]
    pub userbuf: Option<String>,
    /// `TLS.sig`: base64 of the HMAC-SHA256.
    #[serde(rename = "TLS.sig")]
    pub sig: String,
}

impl Ticket {
    /// The unix second after which the ticket is no longer valid (`time + expire`).
    /// [`decode`] refuses tickets whose sum overflows; for a hand-built ticket it saturates.
    pub fn expires_at(&self) -> i64 {
        self.time.saturating_add(self.expire)
    }
}

/// The text that `TLS.sig` signs.
fn signed_text(
    identifier: &str,
    sdkappid: u64,
    time: i64,
    expire: i64,
    userbuf: Option<&str>,
) -> String {
    let mut s = format!(
        "TLS.identifier:{identifier}\nTLS.sdkappid:{sdkappid}\nTLS.time:{time}\nTLS.expire:{expire}\n"
    );
    if let Some(b) = userbuf {
        s.push_str("TLS.userbuf:");
        s.push_str(b);
        s.push('\n');
    }
    s
}

fn mac(key: &str, text: &str) -> Vec<u8> {
    // HMAC accepts keys of any length; new_from_slice cannot fail for Hmac<Sha256>.
    let mut m = match Hmac::<Sha256>::new_from_slice(key.as_bytes()) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    m.update(text.as_bytes());
    m.finalize().into_bytes().to_vec()
}

fn escape(b64: &str) -> String {
    b64.chars()
        .map(|c| match c {
            '+' => '*',
            '/' => '-',
            '=' => '_',
            c => c,
        })
        .collect()
}

fn unescape(t: &str) -> String {
    t.chars()
        .map(|c| match c {
            '*' => '+',
            '-' => '/',
            '_' => '=',
            c => c,
        })
        .collect()
}

/// Makes a ticket for `identifier`, issued at `time` (unix seconds), valid `expire` seconds.
pub fn generate(sdkappid: u64, key: &str, identifier: &str, expire: i64, time: i64) -> String {
    generate_with_userbuf(sdkappid, key, identifier, expire, time, None)
}

/// Like [`generate`], with an optional userbuf (raw bytes; stored base64-encoded).
pub fn generate_with_userbuf(
    sdkappid: u64,
    key: &str,
    identifier: &str,
    expire: i64,
    time: i64,
    userbuf: Option<&[u8]>,
) -> String {
    let userbuf = userbuf.map(|b| STANDARD.encode(b));
    let sig = STANDARD.encode(mac(
        key,
        &signed_text(identifier, sdkappid, time, expire, userbuf.as_deref()),
    ));
    let ticket = Ticket {
        ver: "2.0".to_owned(),
        identifier: identifier.to_owned(),
        sdkappid,
        time,
        expire,
        userbuf,
        sig,
    };
    // Field order is the struct's order, which is the official generator's order.
    let json = match serde_json::to_vec(&ticket) {
        Ok(j) => j,
        Err(_) => unreachable!("a struct of strings and integers always serialises"),
    };
    escape(&STANDARD.encode(zlib(&json)))
}

/// Compresses `data` into a zlib stream at [`ZLIB_LEVEL`].
fn zlib(data: &[u8]) -> Vec<u8> {
    let mut z = ZlibEncoder::new(Vec::new(), Compression::new(ZLIB_LEVEL));
    match z.write_all(data).and_then(|()| z.finish()) {
        Ok(out) => out,
        Err(_) => unreachable!("compressing into a Vec cannot fail"),
    }
}

/// Inflates a zlib stream, refusing one that inflates to more than [`MAX_JSON_LEN`] bytes.
fn inflate_bounded(raw: &[u8]) -> Result<Vec<u8>, SigError> {
    let mut json = Vec::new();
    ZlibDecoder::new(raw)
        .take(MAX_JSON_LEN as u64 + 1)
        .read_to_end(&mut json)
        .map_err(|e| SigError::CheckFailed(format!("not zlib data (truncated?): {e}")))?;
    if json.len() > MAX_JSON_LEN {
        return Err(SigError::CheckFailed(format!(
            "the decompressed ticket is longer than {MAX_JSON_LEN} bytes"
        )));
    }
    Ok(json)
}

fn field<'a>(
    obj: &'a serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> Result<&'a serde_json::Value, SigError> {
    obj.get(name)
        .ok_or_else(|| SigError::CheckFailed(format!("field {name} is missing")))
}

/// A non-negative integer field of at most `max`, written as a JSON number or, as some
/// generators do, as a decimal string (Tencent's server accepts both).
fn uint_field(
    obj: &serde_json::Map<String, serde_json::Value>,
    name: &str,
    max: u64,
) -> Result<u64, SigError> {
    // Ok: a non-negative integer; Err: a negative one; None: not an integer in range.
    let n = match field(obj, name)? {
        serde_json::Value::Number(n) => n.as_u64().map(Ok).or_else(|| n.as_i64().map(Err)),
        serde_json::Value::String(s) => {
            let s = s.trim();
            s.parse::<u64>()
                .ok()
                .map(Ok)
                .or_else(|| s.parse::<i64>().ok().map(Err))
        }
        _ => None,
    };
    match n {
        Some(Ok(n)) if n <= max => Ok(n),
        Some(Ok(_)) => Err(SigError::CheckFailed(format!(
            "field {name} is larger than {max}"
        ))),
        Some(Err(_)) => Err(SigError::CheckFailed(format!("field {name} is negative"))),
        None => Err(SigError::CheckFailed(format!(
            "field {name} is not an integer between 0 and {max}"
        ))),
    }
}

/// A time field: a non-negative integer that fits an `i64`.
fn time_field(
    obj: &serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> Result<i64, SigError> {
    let n = uint_field(obj, name, i64::MAX.unsigned_abs())?;
    i64::try_from(n).map_err(|_| SigError::CheckFailed(format!("field {name} is too large")))
}

fn str_field(
    obj: &serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> Result<String, SigError> {
    match field(obj, name)? {
        serde_json::Value::String(s) => Ok(s.clone()),
        _ => Err(SigError::CheckFailed(format!(
            "field {name} is not a string"
        ))),
    }
}

/// Decodes a ticket without checking anything but its form: at most [`MAX_TICKET_LEN`]
/// bytes of base64, inflating to at most [`MAX_JSON_LEN`] bytes of a JSON object with the
/// string fields `TLS.ver`, `TLS.identifier`, `TLS.sig` (and `TLS.userbuf` if present) and
/// the integer fields `TLS.sdkappid` (a `u64`), `TLS.time` and `TLS.expire` (each between 0
/// and `i64::MAX`, their sum too). Anything else is 70003.
/// Never panics.
pub fn decode(ticket: &str) -> Result<Ticket, SigError> {
    let t = ticket.trim();
    if t.is_empty() {
        return Err(SigError::CheckFailed("the UserSig is empty".into()));
    }
    if t.len() > MAX_TICKET_LEN {
        return Err(SigError::CheckFailed(format!(
            "the UserSig is {} bytes, longer than {MAX_TICKET_LEN}",
            t.len()
        )));
    }
    let raw = STANDARD
        .decode(unescape(t))
        .map_err(|e| SigError::CheckFailed(format!("not base64: {e}")))?;
    let json = inflate_bounded(&raw)?;
    let value: serde_json::Value = serde_json::from_slice(&json)
        .map_err(|e| SigError::CheckFailed(format!("not JSON: {e}")))?;
    let obj = value
        .as_object()
        .ok_or_else(|| SigError::CheckFailed("not a JSON object".into()))?;
    let sdkappid = uint_field(obj, "TLS.sdkappid", u64::MAX)?;
    let time = time_field(obj, "TLS.time")?;
    let expire = time_field(obj, "TLS.expire")?;
    if time.checked_add(expire).is_none() {
        return Err(SigError::CheckFailed(format!(
            "TLS.time + TLS.expire is past {}",
            i64::MAX
        )));
    }
    let userbuf = match obj.get("TLS.userbuf") {
        None | Some(serde_json::Value::Null) => None,
        Some(_) => Some(str_field(obj, "TLS.userbuf")?),
    };
    Ok(Ticket {
        ver: str_field(obj, "TLS.ver")?,
        identifier: str_field(obj, "TLS.identifier")?,
        sdkappid,
        time,
        expire,
        userbuf,
        sig: str_field(obj, "TLS.sig")?,
    })
}

/// Verifies a ticket for `sdkappid`/`identifier` at unix time `now`: app id (70014),
/// identifier (70013), expiry — valid while `now <= time + expire` — (70001), then the MAC
/// in constant time (70003). Returns the decoded ticket.
pub fn verify(
    ticket: &str,
    sdkappid: u64,
    key: &str,
    identifier: &str,
    now: i64,
) -> Result<Ticket, SigError> {
    let t = decode(ticket)?;
    if t.sdkappid != sdkappid {
        return Err(SigError::AppMismatch {
            found: t.sdkappid,
            expected: sdkappid,
        });
    }
    if t.identifier != identifier {
        return Err(SigError::UserMismatch {
            found: t.identifier.clone(),
            expected: identifier.to_owned(),
        });
    }
    if now > t.expires_at() {
        return Err(SigError::Expired {
            expired_at: t.expires_at(),
            now,
        });
    }
    verify_mac(&t, key)?;
    Ok(t)
}

/// Checks only the MAC of a decoded ticket, in constant time.
pub fn verify_mac(t: &Ticket, key: &str) -> Result<(), SigError> {
    let expected = mac(
        key,
        &signed_text(
            &t.identifier,
            t.sdkappid,
            t.time,
            t.expire,
            t.userbuf.as_deref(),
        ),
    );
    let given = STANDARD
        .decode(t.sig.as_bytes())
        .map_err(|_| SigError::CheckFailed("TLS.sig is not base64".into()))?;
    if given.len() == expected.len() && bool::from(given.ct_eq(&expected)) {
        Ok(())
    } else {
        Err(SigError::CheckFailed(
            "signature mismatch (wrong key or tampered ticket)".into(),
        ))
    }
}

/// The current unix time in seconds.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Made by the official Node.js package `tls-sig-api-v2` 1.0.2 with its clock pinned.
    const OFFICIAL_ALICE: &str = "eJyrVgrxCdYrSy1SslIy0jNQ0gHzM1NS80oy0zLBwok5mcmpUInilOzEgoLMFCUrQxMDCDCEyJRk5qYqWRmam0HFIaKpFQWZRalKVhYgYagRmelKVkqRxhn*Hqn6blVm*eb*mRXhES6FkSmF7i6uwbkBmQapkb6WvhlOmZGugSYGtkq1AITfMCw_";

    fn inflated(ticket: &str) -> Vec<u8> {
        inflate_bounded(&STANDARD.decode(unescape(ticket)).unwrap()).unwrap()
    }

    #[test]
    fn generates_the_official_json_and_mac() {
        let ours = generate(1400000001, "K", "alice", 86400, 1764000000);
        assert_eq!(inflated(&ours), inflated(OFFICIAL_ALICE));
        assert_eq!(decode(&ours).unwrap(), decode(OFFICIAL_ALICE).unwrap());
        // zlib header: deflate, 32 KiB window, FLEVEL 2 (the default level, 6).
        assert_eq!(STANDARD.decode(unescape(&ours)).unwrap()[..2], [0x78, 0x9c]);
    }

    #[test]
    fn verifies_within_lifetime_and_refuses_after() {
        let t = generate(1400000001, "K", "alice", 100, 1000);
        assert!(verify(&t, 1400000001, "K", "alice", 1000).is_ok());
        assert!(verify(&t, 1400000001, "K", "alice", 1100).is_ok());
        assert_eq!(
            verify(&t, 1400000001, "K", "alice", 1101)
                .unwrap_err()
                .code(),
            70001
        );
        assert_eq!(
            verify(&t, 1400000002, "K", "alice", 1000)
                .unwrap_err()
                .code(),
            70014
        );
        assert_eq!(
            verify(&t, 1400000001, "K", "bob", 1000).unwrap_err().code(),
            70013
        );
        assert_eq!(
            verify(&t, 1400000001, "K2", "alice", 1000)
                .unwrap_err()
                .code(),
            70003
        );
        assert_eq!(
            verify(&t[..t.len() / 2], 1400000001, "K", "alice", 1000)
                .unwrap_err()
                .code(),
            70003
        );
    }
}
