//! UserSig: Tencent's TLSSigAPIv2 login ticket (DESIGN §7) — generate, decode, verify.
//!
//! A ticket is the JSON document
//! `{"TLS.ver":"2.0","TLS.identifier":…,"TLS.sdkappid":…,"TLS.time":…,"TLS.expire":…,["TLS.userbuf":…,]"TLS.sig":…}`,
//! zlib-compressed (level 6), base64-encoded, with `+`→`*`, `/`→`-`, `=`→`_`. `TLS.sig` is
//! the standard base64 of HMAC-SHA256 over the signed text, keyed with the secret key's
//! UTF-8 bytes. [`generate`] writes the fields in the order of Tencent's official Node.js
//! generator so that, for the same inputs and clock, the ticket is byte-identical to it;
//! [`decode`] parses the JSON by key, so tickets from libraries that order keys differently
//! verify too.
//!
//! Byte identity also needs the same compressed bytes: the official generator compresses
//! with the zlib that Node.js bundles, whose match finder differs from canonical zlib's.
//! [`deflate`] reproduces it; flate2 is used only to inflate.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use flate2::read::ZlibDecoder;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use std::io::Read;
use subtle::ConstantTimeEq;

use crate::codes::code;

pub mod deflate;

/// The longest ticket text accepted for decoding; real tickets are a few hundred bytes.
pub const MAX_TICKET_LEN: usize = 16 * 1024;
/// The largest decompressed JSON accepted: a guard against zlib bombs.
const MAX_JSON_LEN: u64 = 64 * 1024;

/// Why a ticket was refused, with Tencent's code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    /// 70003: not a ticket (bad base64, bad zlib, bad JSON, missing field) or a MAC mismatch.
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
    escape(&STANDARD.encode(deflate::zlib_compress(&json)))
}

fn field<'a>(
    obj: &'a serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> Result<&'a serde_json::Value, SigError> {
    obj.get(name)
        .ok_or_else(|| SigError::CheckFailed(format!("field {name} is missing")))
}

fn int_field(
    obj: &serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> Result<i64, SigError> {
    let v = field(obj, name)?;
    // Some generators write numbers as strings; accept both, as Tencent's server does.
    match v {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    }
    .ok_or_else(|| SigError::CheckFailed(format!("field {name} is not an integer")))
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

/// Decodes a ticket without checking anything but its form. Never panics.
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
    let mut json = Vec::new();
    ZlibDecoder::new(raw.as_slice())
        .take(MAX_JSON_LEN + 1)
        .read_to_end(&mut json)
        .map_err(|e| SigError::CheckFailed(format!("not zlib data (truncated?): {e}")))?;
    if json.len() as u64 > MAX_JSON_LEN {
        return Err(SigError::CheckFailed(
            "decompressed ticket is too large".into(),
        ));
    }
    let value: serde_json::Value = serde_json::from_slice(&json)
        .map_err(|e| SigError::CheckFailed(format!("not JSON: {e}")))?;
    let obj = value
        .as_object()
        .ok_or_else(|| SigError::CheckFailed("not a JSON object".into()))?;
    let sdkappid = int_field(obj, "TLS.sdkappid")?;
    let sdkappid = u64::try_from(sdkappid)
        .map_err(|_| SigError::CheckFailed("field TLS.sdkappid is negative".into()))?;
    let userbuf = match obj.get("TLS.userbuf") {
        None | Some(serde_json::Value::Null) => None,
        Some(_) => Some(str_field(obj, "TLS.userbuf")?),
    };
    Ok(Ticket {
        ver: str_field(obj, "TLS.ver")?,
        identifier: str_field(obj, "TLS.identifier")?,
        sdkappid,
        time: int_field(obj, "TLS.time")?,
        expire: int_field(obj, "TLS.expire")?,
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
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Made by the official Node.js package `tls-sig-api-v2` 1.0.2 with its clock pinned.
    const OFFICIAL_ALICE: &str = "eJyrVgrxCdYrSy1SslIy0jNQ0gHzM1NS80oy0zLBwok5mcmpUInilOzEgoLMFCUrQxMDCDCEyJRk5qYqWRmam0HFIaKpFQWZRalKVhYgYagRmelKVkqRxhn*Hqn6blVm*eb*mRXhES6FkSmF7i6uwbkBmQapkb6WvhlOmZGugSYGtkq1AITfMCw_";

    #[test]
    fn generates_the_official_ticket() {
        assert_eq!(
            generate(1400000001, "K", "alice", 86400, 1764000000),
            OFFICIAL_ALICE
        );
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
