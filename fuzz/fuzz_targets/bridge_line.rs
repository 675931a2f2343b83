//! The Tencent bridge protocol reader, `proto::bridge::parse_line` (every line the daemon
//! reads from the bridge process), then what the link does with what it read before it
//! keeps anything: `Hello::plausible`, an answer's `ok` read as `LoginOk` or `ProfileOk`,
//! `plausible_info` on every profile, hostile text cleaned.
//!
//! Properties: nothing panics; cleaned text holds no control characters.
#![no_main]

use imlink::proto::bridge::{self, Event, FromBridge, LoginOk, Outcome, ProfileOk};
use libfuzzer_sys::fuzz_target;

fn clean(s: &str) {
    let c = imlink::text::clean(s);
    assert!(!c.chars().any(char::is_control), "{c:?}");
}

fuzz_target!(|data: &[u8]| {
    if data.len() > bridge::MAX_LINE_BYTES {
        return;
    }
    match bridge::parse_line(data) {
        Ok(FromBridge::Event(e)) => match e {
            Event::Hello(h) => {
                let _ = h.plausible();
                let _ = h.node_major();
            }
            Event::Profile { info } => {
                let _ = bridge::plausible_info(&info);
            }
            Event::Error { message, .. } | Event::ProtocolError { message } => clean(&message),
            Event::Kicked { kind } => {
                let _ = kind.name();
            }
            Event::NetState { .. } | Event::Ready | Event::NotReady => {}
        },
        Ok(FromBridge::Answer(a)) => match a.outcome {
            Outcome::Ok(v) => {
                let _: LoginOk = serde_json::from_value(v.clone()).unwrap_or_default();
                if let Ok(p) = serde_json::from_value::<ProfileOk>(v) {
                    let _ = bridge::plausible_info(&p.info);
                }
            }
            Outcome::Err(f) => clean(&f.message),
        },
        Err(e) => clean(&e),
    }
});
