//! The native link's reading side below the frame reader: awc's WebSocket client codec
//! behind `GuardedCodec` (a frame over 64 KiB refused from its header) and the assembler
//! of fragmented messages (`imlink::fuzzing::read_server_bytes`), then every whole text
//! message through `ServerFrame::parse`.
//!
//! Input: one byte for where to cut the stream into two reads, the bytes the server sent.
//! Properties: nothing panics; the output ends with exactly one `Closed`; no message is
//! larger than the frame limit; the messages do not depend on how the bytes arrive (one
//! read, two reads, byte by byte). The reason a connection is closed may: a header that
//! is wrong in two ways (reserved bits set and a length over the limit) is refused by
//! whichever check has its bytes first.
#![no_main]

use imlink::daemon::link::ws::transport::Inbound;
use imlink::fuzzing::read_server_bytes;
use imlink::proto::ws::{ServerFrame, MAX_FRAME_BYTES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [cut, stream @ ..] = data else {
        return;
    };
    let whole = read_server_bytes(&[stream]);
    let closed = whole
        .iter()
        .filter(|i| matches!(i, Inbound::Closed(_)))
        .count();
    assert_eq!(closed, 1, "{whole:?}");
    assert!(matches!(whole.last(), Some(Inbound::Closed(_))));
    for i in &whole {
        match i {
            Inbound::Text(t) => {
                assert!(t.len() <= MAX_FRAME_BYTES);
                let _ = ServerFrame::parse(t);
            }
            Inbound::Ping(p) => assert!(p.len() <= MAX_FRAME_BYTES),
            Inbound::Closed(why) => assert!(!why.chars().any(char::is_control), "{why:?}"),
            Inbound::Other => {}
        }
    }
    let whole = messages(whole);
    let cut = usize::from(*cut) * stream.len() / 256;
    let (a, b) = stream.split_at(cut);
    assert_eq!(messages(read_server_bytes(&[a, b])), whole, "cut at {cut}");
    if stream.len() <= 512 {
        let bytewise: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(
            messages(read_server_bytes(&bytewise)),
            whole,
            "byte by byte"
        );
    }
});

/// The messages, with the closing reason left out.
fn messages(v: Vec<Inbound>) -> Vec<Inbound> {
    v.into_iter()
        .map(|i| match i {
            Inbound::Closed(_) => Inbound::Closed(String::new()),
            other => other,
        })
        .collect()
}
