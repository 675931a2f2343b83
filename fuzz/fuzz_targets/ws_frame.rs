//! The native protocol's frame reader, `proto::ws::ServerFrame::parse`: what the daemon's
//! link makes of every text message from the server.
//!
//! Properties: nothing panics; an unknown push's name comes back cleaned (no control
//! characters); a frame that was read, written again with serde, reads back the same
//! (responses: the same seq, code and desc — a body is kept as a JSON tree, whose
//! floating-point numbers need not survive the trip to the last bit).
#![no_main]

use imlink::proto::ws::{FrameError, ServerFrame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match ServerFrame::parse(data) {
        Err(FrameError::UnknownPush(name)) => {
            assert!(!name.chars().any(char::is_control), "{name:?}");
        }
        Err(FrameError::Unreadable(_)) => {}
        Ok(frame) => {
            let text = serde_json::to_vec(&frame).expect("a frame serialises");
            let back = ServerFrame::parse(&text)
                .unwrap_or_else(|e| panic!("{e:?}: {}", String::from_utf8_lossy(&text)));
            match (&frame, &back) {
                (ServerFrame::Push(a), ServerFrame::Push(b)) => assert_eq!(a, b),
                (ServerFrame::Response(a), ServerFrame::Response(b)) => {
                    assert_eq!((a.seq, a.code, &a.desc), (b.seq, b.code, &b.desc));
                }
                _ => panic!("{frame:?} read back as {back:?}"),
            }
        }
    }
});
