//! Helpers for the in-process tests that run the daemon's actors on tokio's paused clock
//! against an in-memory server end (`MemoryDialer`/`PeerEnd`), with no socket and no real
//! time. Use with `#[path = "support/inmem.rs"] mod inmem;` (the process helpers of
//! `support` are not needed there).
#![allow(dead_code)] // each test binary uses what it needs

use bytes::Bytes;
use imlink::daemon::link::ws::transport::{Inbound, Outbound, PeerEnd};
use serde_json::{json, Value};
use std::future::Future;

/// The wall time (unix ms) the in-process daemon's clock starts at.
pub const T0_MS: i64 = 1_764_000_000_000;

/// Runs `test` on a current-thread runtime with paused time, in an actix system.
pub fn paused<F: Future<Output = ()>>(test: impl FnOnce() -> F) {
    let sys = actix_rt::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap()
    });
    sys.block_on(test());
}

/// The server's `hello` push, stamped `T0_MS`.
pub fn hello() -> Inbound {
    Inbound::Text(Bytes::from(
        json!({"push":"hello","body":{"version":1,"serverTime":T0_MS,"idleTimeoutMs":60000,"maxFrameBytes":65536}})
            .to_string(),
    ))
}

/// A text frame the link sent, as JSON (panics on any other frame).
pub fn frame(o: Outbound) -> Value {
    match o {
        Outbound::Text(t) => serde_json::from_str(&t).unwrap(),
        other => panic!("not a text frame: {other:?}"),
    }
}

/// The server's answer to request `req`: `code`, and `body`.
pub fn answer(peer: &PeerEnd, req: &Value, code: i64, body: Value) {
    let r = json!({"seq": req["seq"], "code": code, "desc": if code == 0 { "" } else { "refused" }, "body": body});
    peer.tx
        .send(Inbound::Text(Bytes::from(r.to_string())))
        .unwrap();
}
