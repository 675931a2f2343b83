//! The native protocol's frame reader, `proto::ws::ServerFrame::parse`: what the daemon's
//! link makes of every text message from the server.
//!
//! Properties: nothing panics; an unknown push's name comes back cleaned (no control
//! characters); a frame that was read, written again with serde, reads back the same
//! (responses: the same seq, code and desc — a body is kept as a JSON tree, whose
//! floating-point numbers need not survive the trip to the last bit). The daemon's fast
//! path for a profile push, `proto::ws::self_info_push`, takes only frames that the full
//! reader reads as a `selfInfoUpdated` of the very profile it took, byte for byte.
#![no_main]

use imlink::proto::profile::ProfileJson;
use imlink::proto::ws::{self_info_push, FrameError, Push, ServerFrame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(fast) = self_info_push(&bytes::Bytes::copy_from_slice(data)) {
        match ServerFrame::parse(data) {
            Ok(ServerFrame::Push(Push::SelfInfoUpdated(b))) => {
                assert_eq!(ProfileJson::from_info(&b.info), fast);
                assert_eq!(fast.to_info().as_ref(), Some(&b.info));
            }
            other => panic!("the fast path took a frame the reader makes {other:?} of"),
        }
    }
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
