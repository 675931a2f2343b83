//! UserSig decode and verify (`usersig::decode`, `usersig::verify`): what the devserver
//! runs on every login ticket and `imlinkctl usersig` on what it is given.
//!
//! Properties: nothing panics; a ticket that decodes verifies for its own app, user and
//! issue time with no verdict but a MAC check (70003), and for another app or user with the
//! mismatch (70014, 70013); a ticket made again from the decoded fields with the golden
//! key decodes to the same fields and verifies; an error never shows the ticket.
#![no_main]

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use imlink::usersig::{self, SigError};
use libfuzzer_sys::fuzz_target;

/// The key of the golden vectors (tests/data/usersig/golden.json), so the seeds verify.
const KEY: &str = "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e";

fuzz_target!(|data: &[u8]| {
    let Ok(ticket) = std::str::from_utf8(data) else {
        return;
    };
    let t = match usersig::decode(ticket) {
        Err(e) => {
            assert_eq!(e.code(), 70003);
            if ticket.trim().len() >= 24 {
                assert!(
                    !e.to_string().contains(ticket.trim()),
                    "the error shows the ticket"
                );
            }
            return;
        }
        Ok(t) => t,
    };
    match usersig::verify(ticket, t.sdkappid, KEY, &t.identifier, t.time) {
        Ok(v) => assert_eq!(v, t),
        Err(e) => assert!(matches!(e, SigError::CheckFailed(_)), "{e:?}"),
    }
    let other_app = t.sdkappid.wrapping_add(1);
    assert!(matches!(
        usersig::verify(ticket, other_app, KEY, &t.identifier, t.time),
        Err(SigError::AppMismatch { .. })
    ));
    let other_user = format!("{}x", t.identifier);
    assert!(matches!(
        usersig::verify(ticket, t.sdkappid, KEY, &other_user, t.time),
        Err(SigError::UserMismatch { .. })
    ));
    if t.expires_at() < i64::MAX {
        assert!(matches!(
            usersig::verify(ticket, t.sdkappid, KEY, &t.identifier, t.expires_at() + 1),
            Err(SigError::Expired { .. })
        ));
    }
    // Made again with the golden key (a userbuf only when it is base64 the generator
    // would have written).
    let userbuf = match &t.userbuf {
        None => None,
        Some(u) => match STANDARD.decode(u) {
            Ok(raw) if STANDARD.encode(&raw) == *u => Some(raw),
            _ => return,
        },
    };
    let again = usersig::generate_with_userbuf(
        t.sdkappid,
        KEY,
        &t.identifier,
        t.expire,
        t.time,
        userbuf.as_deref(),
    );
    let back = usersig::verify(&again, t.sdkappid, KEY, &t.identifier, t.time)
        .unwrap_or_else(|e| panic!("a ticket made from decoded fields does not verify: {e}"));
    assert_eq!(
        (
            &back.identifier,
            back.sdkappid,
            back.time,
            back.expire,
            &back.userbuf
        ),
        (&t.identifier, t.sdkappid, t.time, t.expire, &t.userbuf)
    );
});
