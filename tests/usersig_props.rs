#![allow(clippy::unwrap_used, clippy::expect_used)]
//! UserSig behaviour that does not need the official generator: key order, refusal
//! codes, and properties over arbitrary input.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use flate2::read::ZlibDecoder;
use flate2::write::ZlibEncoder;
use flate2::Compression;
use imlink::usersig::{self, deflate::zlib_compress};
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

fn inflate(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    ZlibDecoder::new(data).read_to_end(&mut out).unwrap();
    out
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
fn deflate_edge_cases_inflate_back() {
    for data in [&b""[..], b"a", b"aaaa", &[0u8; 300], &[0xffu8; 70000]] {
        assert_eq!(inflate(&zlib_compress(data)), data);
    }
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
    fn deflate_output_inflates_to_the_input(data in proptest::collection::vec(any::<u8>(), 0..65536)) {
        prop_assert_eq!(inflate(&zlib_compress(&data)), data);
    }

    #[test]
    fn deflate_of_repetitive_input_inflates_to_the_input(
        alphabet in 1u8..6,
        picks in proptest::collection::vec(any::<u8>(), 0..65536),
    ) {
        let data: Vec<u8> = picks.iter().map(|p| b'a' + p % alphabet).collect();
        prop_assert_eq!(inflate(&zlib_compress(&data)), data);
    }
}
