#![allow(clippy::unwrap_used, clippy::expect_used)]
//! UserSig behaviour that does not need the official generator: key order, refusal
//! codes, hostile numbers and zlib bombs, and properties over arbitrary input.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use flate2::read::ZlibDecoder;
use flate2::write::ZlibEncoder;
use flate2::Compression;
use imlink::usersig::{self, MAX_JSON_LEN, MAX_TICKET_LEN};
use proptest::prelude::*;
use std::io::{Read, Write};

const APP: u64 = 1400000001;
const KEY: &str = "K";

fn escape(b64: &str) -> String {
    b64.replace('+', "*").replace('/', "-").replace('=', "_")
}

/// Compresses `json` with flate2 and escapes it the way tickets are escaped.
fn ticket_from_json(json: &str) -> String {
    let mut z = ZlibEncoder::new(Vec::new(), Compression::new(9));
    z.write_all(json.as_bytes()).unwrap();
    escape(&STANDARD.encode(z.finish().unwrap()))
}

/// The JSON text inside a ticket, inflated with flate2 independently of `usersig::decode`.
fn inflate(ticket: &str) -> Vec<u8> {
    let b64 = ticket.replace('*', "+").replace('-', "/").replace('_', "=");
    let mut out = Vec::new();
    ZlibDecoder::new(STANDARD.decode(b64).unwrap().as_slice())
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// A ticket JSON for alice with `time` and `expire` spliced in as raw JSON text.
fn json_with(time: &str, expire: &str) -> String {
    format!(
        r#"{{"TLS.ver":"2.0","TLS.identifier":"alice","TLS.sdkappid":{APP},"TLS.time":{time},"TLS.expire":{expire},"TLS.sig":"AAAA"}}"#
    )
}

#[test]
fn tickets_with_keys_in_another_order_verify() {
    let t = usersig::decode(&usersig::generate(APP, KEY, "alice", 86400, 1764000000)).unwrap();
    let json = format!(
        r#"{{"TLS.sig":"{}","TLS.expire":86400,"TLS.time":1764000000,"TLS.sdkappid":{APP},"TLS.identifier":"alice","TLS.ver":"2.0"}}"#,
        t.sig
    );
    let reordered = ticket_from_json(&json);
    assert_ne!(
        reordered,
        usersig::generate(APP, KEY, "alice", 86400, 1764000000)
    );
    assert_eq!(
        usersig::verify(&reordered, APP, KEY, "alice", 1764000000).unwrap(),
        t
    );

    // Numbers written as strings, as some generators do, are accepted too.
    let json = format!(
        r#"{{"TLS.identifier":"alice","TLS.time":"1764000000","TLS.ver":"2.0","TLS.sig":"{}","TLS.sdkappid":"{APP}","TLS.expire":"86400"}}"#,
        t.sig
    );
    assert!(usersig::verify(&ticket_from_json(&json), APP, KEY, "alice", 1764000001).is_ok());
}

#[test]
fn refusals_carry_the_tencent_codes() {
    let good = usersig::generate(APP, KEY, "alice", 100, 1000);
    let t = usersig::decode(&good).unwrap();
    let tampered_json = format!(
        r#"{{"TLS.ver":"2.0","TLS.identifier":"alice","TLS.sdkappid":{APP},"TLS.time":1000,"TLS.expire":100000,"TLS.sig":"{}"}}"#,
        t.sig
    );
    let mut flipped = good.clone().into_bytes();
    let mid = flipped.len() / 2;
    flipped[mid] = if flipped[mid] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    let cases: Vec<(&str, String, u64, &str, &str, i64, i32)> = vec![
        (
            "longer lifetime, same MAC",
            ticket_from_json(&tampered_json),
            APP,
            KEY,
            "alice",
            5000,
            70003,
        ),
        (
            "one character changed",
            flipped,
            APP,
            KEY,
            "alice",
            1000,
            70003,
        ),
        (
            "truncated",
            good[..good.len() - 10].to_owned(),
            APP,
            KEY,
            "alice",
            1000,
            70003,
        ),
        ("empty", String::new(), APP, KEY, "alice", 1000, 70003),
        ("not base64", "%%%".into(), APP, KEY, "alice", 1000, 70003),
        ("wrong key", good.clone(), APP, "K2", "alice", 1000, 70003),
        ("wrong user", good.clone(), APP, KEY, "bob", 1000, 70013),
        (
            "wrong app",
            good.clone(),
            APP + 1,
            KEY,
            "alice",
            1000,
            70014,
        ),
        ("expired", good.clone(), APP, KEY, "alice", 1101, 70001),
    ];
    for (what, ticket, app, key, user, now, code) in cases {
        let err = usersig::verify(&ticket, app, key, user, now).unwrap_err();
        assert_eq!(err.code(), code, "{what}: {err}");
    }
    assert!(
        usersig::verify(&good, APP, KEY, "alice", 1100).is_ok(),
        "valid up to and including time + expire"
    );
}

#[test]
fn tickets_are_zlib_level_6_and_inflate_to_the_official_key_order() {
    let ticket =
        usersig::generate_with_userbuf(APP, KEY, "alice", 86400, 1764000000, Some(b"\x00\xff"));
    let raw = STANDARD
        .decode(ticket.replace('*', "+").replace('-', "/").replace('_', "="))
        .unwrap();
    // CMF 0x78: deflate, 32 KiB window; FLG 0x9c: FLEVEL 2, the default level (6).
    assert_eq!(raw[..2], [0x78, 0x9c]);
    let t = usersig::decode(&ticket).unwrap();
    assert_eq!(
        String::from_utf8(inflate(&ticket)).unwrap(),
        format!(
            r#"{{"TLS.ver":"2.0","TLS.identifier":"alice","TLS.sdkappid":{APP},"TLS.time":1764000000,"TLS.expire":86400,"TLS.userbuf":"AP8=","TLS.sig":"{}"}}"#,
            t.sig
        )
    );
}

#[test]
fn extreme_or_malformed_numbers_are_refused_with_70003() {
    let max = i64::MAX.to_string();
    let too_big = (i64::MAX as u64 + 1).to_string();
    let cases: Vec<(&str, String)> = vec![
        ("time i64::MAX, expire 1", json_with(&max, "1")),
        ("time 1, expire i64::MAX", json_with("1", &max)),
        ("both i64::MAX", json_with(&max, &max)),
        ("expire past i64", json_with("1000", &too_big)),
        ("time u64::MAX", json_with(&u64::MAX.to_string(), "1")),
        ("negative time", json_with("-1", "100")),
        ("negative expire", json_with("1000", "-100")),
        (
            "negative expire as a string",
            json_with("1000", r#""-100""#),
        ),
        ("i64::MIN expire", json_with("1000", &i64::MIN.to_string())),
        ("non-numeric string", json_with(r#""soon""#, "100")),
        ("empty string", json_with("1000", r#""""#)),
        ("fraction", json_with("1000.5", "100")),
        ("exponent", json_with("1e30", "100")),
        ("null", json_with("null", "100")),
        ("boolean", json_with("1000", "true")),
        ("array", json_with("[1000]", "100")),
        (
            "negative app id",
            json_with("1000", "100").replace(&format!(":{APP},"), ":-1,"),
        ),
        (
            "app id past u64",
            json_with("1000", "100").replace(&format!(":{APP},"), ":18446744073709551616,"),
        ),
    ];
    for (what, json) in cases {
        let ticket = ticket_from_json(&json);
        let err = usersig::decode(&ticket).unwrap_err();
        assert_eq!(err.code(), 70003, "{what}: {err}");
        let err = usersig::verify(&ticket, APP, KEY, "alice", 1000).unwrap_err();
        assert_eq!(err.code(), 70003, "{what}: {err}");
    }
}

#[test]
fn a_lifetime_ending_exactly_at_i64_max_is_accepted() {
    let ticket = usersig::generate(APP, KEY, "alice", 5, i64::MAX - 5);
    let t = usersig::verify(&ticket, APP, KEY, "alice", i64::MAX).unwrap();
    assert_eq!(t.expires_at(), i64::MAX);
    // Numbers written as strings take the same checks.
    let t = usersig::decode(&ticket_from_json(&json_with(r#"" 7 ""#, r#""9""#))).unwrap();
    assert_eq!((t.time, t.expire, t.expires_at()), (7, 9, 16));
}

/// A ticket whose JSON is `json_len` bytes, padded with its identifier; and the
/// identifier's length.
fn padded_ticket(json_len: usize) -> (String, usize) {
    let head = format!(
        r#"{{"TLS.ver":"2.0","TLS.sdkappid":{APP},"TLS.time":1,"TLS.expire":1,"TLS.sig":"AAAA","TLS.identifier":""#
    );
    let tail = r#""}"#;
    let pad = "a".repeat(json_len - head.len() - tail.len());
    (ticket_from_json(&format!("{head}{pad}{tail}")), pad.len())
}

#[test]
fn inflated_size_is_capped_and_zlib_bombs_are_refused() {
    // The limit itself is accepted, one byte more is not.
    let (ticket, id_len) = padded_ticket(MAX_JSON_LEN);
    assert_eq!(usersig::decode(&ticket).unwrap().identifier.len(), id_len);
    let err = usersig::decode(&padded_ticket(MAX_JSON_LEN + 1).0).unwrap_err();
    assert_eq!(err.code(), 70003);
    assert!(
        err.to_string()
            .contains("decompressed ticket is longer than 65536"),
        "{err}"
    );

    // 10 MiB of zeros compress to about 10 KiB, within the ticket length limit.
    let bomb = ticket_from_json(&"0".repeat(10 << 20));
    assert!(bomb.len() < MAX_TICKET_LEN, "{} bytes", bomb.len());
    let err = usersig::decode(&bomb).unwrap_err();
    assert_eq!(err.code(), 70003);
    assert!(
        err.to_string()
            .contains("decompressed ticket is longer than 65536"),
        "{err}"
    );

    // Over the ticket length limit: refused before any base64 or zlib work.
    let err = usersig::decode(&"A".repeat(MAX_TICKET_LEN + 1)).unwrap_err();
    assert_eq!(err.code(), 70003);
    assert!(err.to_string().contains("longer than 16384"), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn decode_and_verify_never_panic_on_strings(s in ".{0,400}") {
        let _ = usersig::decode(&s);
        let _ = usersig::verify(&s, APP, KEY, "alice", 0);
    }

    #[test]
    fn decode_never_panics_on_compressed_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let as_ticket = escape(&STANDARD.encode(&bytes));
        let _ = usersig::decode(&as_ticket);
        let _ = usersig::decode(&ticket_from_json(&String::from_utf8_lossy(&bytes)));
    }

    #[test]
    fn generated_tickets_verify(
        app in any::<u32>(),
        key in ".{0,64}",
        user in ".{1,48}",
        expire in 0i64..10_000_000,
        time in 0i64..4_000_000_000,
        userbuf in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200)),
    ) {
        let app = u64::from(app);
        let t = usersig::generate_with_userbuf(app, &key, &user, expire, time, userbuf.as_deref());
        let d = usersig::verify(&t, app, &key, &user, time + expire).unwrap();
        prop_assert_eq!(&d.identifier, &user);
        prop_assert_eq!(d.expires_at(), time + expire);
        prop_assert_eq!(d.userbuf.map(|b| STANDARD.decode(b).unwrap()), userbuf);
        prop_assert_eq!(usersig::verify(&t, app, &key, &user, time + expire + 1).unwrap_err().code(), 70001);
    }

    #[test]
    fn generated_tickets_inflate_to_their_fields(
        app in any::<u64>(),
        key in ".{0,32}",
        user in "\\PC{0,40}|[\\x00-\\x7f]{0,40}",
        expire in 0i64..=i64::MAX / 2,
        time in 0i64..=i64::MAX / 2,
        userbuf in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..100)),
    ) {
        let ticket = usersig::generate_with_userbuf(app, &key, &user, expire, time, userbuf.as_deref());
        let t = usersig::decode(&ticket).unwrap();
        let inflated: serde_json::Value = serde_json::from_slice(&inflate(&ticket)).unwrap();
        prop_assert_eq!(inflated, serde_json::to_value(&t).unwrap());
        prop_assert_eq!(t.sdkappid, app);
        prop_assert_eq!(&t.identifier, &user);
        prop_assert_eq!((t.time, t.expire), (time, expire));
        prop_assert!(usersig::verify_mac(&t, &key).is_ok());
    }

    #[test]
    fn any_time_and_expire_decode_or_give_70003(time in any::<i64>(), expire in any::<i64>()) {
        let ticket = usersig::generate(APP, KEY, "alice", expire, time);
        let valid = time >= 0 && expire >= 0 && time.checked_add(expire).is_some();
        match usersig::decode(&ticket) {
            Ok(t) => {
                prop_assert!(valid, "accepted time {} expire {}", time, expire);
                prop_assert_eq!(Some(t.expires_at()), time.checked_add(expire));
                prop_assert!(usersig::verify(&ticket, APP, KEY, "alice", t.expires_at()).is_ok());
            }
            Err(e) => {
                prop_assert!(!valid, "refused time {} expire {}: {}", time, expire, e);
                prop_assert_eq!(e.code(), 70003);
            }
        }
    }

    #[test]
    fn numbers_as_arbitrary_strings_never_panic(time in "\\PC{0,30}", expire in "[-+ 0-9]{0,25}") {
        let json = json_with(&serde_json::to_string(&time).unwrap(), &serde_json::to_string(&expire).unwrap());
        let parsed = match (time.trim().parse::<i64>(), expire.trim().parse::<i64>()) {
            (Ok(t), Ok(e)) if t >= 0 && e >= 0 && t.checked_add(e).is_some() => Some((t, e)),
            _ => None,
        };
        match usersig::decode(&ticket_from_json(&json)) {
            Ok(t) => prop_assert_eq!(Some((t.time, t.expire)), parsed),
            Err(e) => {
                prop_assert_eq!(parsed, None, "refused: {}", e);
                prop_assert_eq!(e.code(), 70003);
            }
        }
    }
}
