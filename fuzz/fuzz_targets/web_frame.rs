//! The devserver's Web-protocol frame reader (`/binfo`, `/info`; `imlink::fuzzing::web_frame`):
//! plain JSON or `COMP` + gzip/zlib, then the A2 key of a re-login (`open_a2`) when the head
//! carries one.
//!
//! Properties: nothing panics; an accepted frame's `servcmd` is `[A-Za-z0-9_.]{1,128}` and
//! its body an object; a refusal echoes only a valid `servcmd` (or none); the same frame
//! sent compressed (gzip, zlib) is read the same; an A2 key made for a user opens to that
//! user, and no other app or instance opens it.
#![no_main]

use std::io::Write;

use flate2::write::{GzEncoder, ZlibEncoder};
use flate2::Compression;
use imlink::fuzzing::{open_a2, seal_a2, web_frame};
use libfuzzer_sys::fuzz_target;

const KEY: &str = "imlink-test-secret-0123456789";
const APP: u64 = 1400000001;
const INSTANCE: &str = "0123456789abcdef0123456789abcdef";

fn valid_servcmd(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
}

fn comp(data: &[u8], gzip: bool) -> Vec<u8> {
    let mut out = b"COMP".to_vec();
    let z = if gzip {
        let mut e = GzEncoder::new(Vec::new(), Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    } else {
        let mut e = ZlibEncoder::new(Vec::new(), Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    };
    out.extend_from_slice(&z);
    out
}

fuzz_target!(|data: &[u8]| {
    let got = web_frame(data);
    match &got {
        Ok(f) => {
            assert!(valid_servcmd(&f.servcmd), "{:?}", f.servcmd);
            assert!(f.body.is_object());
            if let Some(a2) = f.head.get("a2").and_then(|v| v.as_str()) {
                let _ = open_a2(KEY, APP, INSTANCE, a2);
            }
            if let Some(user) = f.head.get("identifier").and_then(|v| v.as_str()) {
                let a2 = seal_a2(KEY, APP, INSTANCE, user, 1_700_000_000, 86_400);
                assert_eq!(
                    open_a2(KEY, APP, INSTANCE, &a2),
                    if a2.len() <= 1024 {
                        Ok((user.to_owned(), 1_700_000_000, 86_400))
                    } else {
                        Err("not an A2 key of this server".into())
                    }
                );
                assert!(open_a2(KEY, APP + 1, INSTANCE, &a2).is_err());
                assert!(open_a2(KEY, APP, "other", &a2).is_err());
                assert!(open_a2("another key", APP, INSTANCE, &a2).is_err());
            }
        }
        Err(bad) => {
            assert!(
                bad.servcmd.is_empty() || valid_servcmd(&bad.servcmd),
                "{:?}",
                bad.servcmd
            );
            assert!(!bad.fatal || data.starts_with(b"COMP"));
        }
    }
    if !data.starts_with(b"COMP") {
        for gzip in [true, false] {
            let again = web_frame(&comp(data, gzip));
            match (&got, &again) {
                (Ok(a), Ok(b)) => assert_eq!(a, b),
                (Err(a), Err(b)) => {
                    assert_eq!((&a.servcmd, a.seq, a.fatal), (&b.servcmd, b.seq, b.fatal))
                }
                _ => panic!("compressed ({gzip}): {got:?} vs {again:?}"),
            }
        }
    }
});
