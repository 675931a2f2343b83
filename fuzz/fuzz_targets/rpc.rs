//! The JSON-RPC request decoder: `proto::rpc::read_line`, then, for every request of the
//! line, `proto::api::MethodCall::read` as the daemon's dispatcher calls it.
//!
//! Properties checked on every input:
//! - nothing panics;
//! - every answer the daemon would write (`rpc::write_error` with the request's id) is one
//!   JSON text, without a newline when the line had none, that `imlinkctl`'s reader
//!   (`rpc::Message`) reads back with the same id;
//! - a call that was read, sent again the way `imlinkctl` sends it (`rpc::Request` with
//!   the method's params struct), is read back as the same call with the same id.
#![no_main]

use imlink::proto::api::{Method, MethodCall};
use imlink::proto::rpc::{self, Id, Incoming, Line, Refused, RpcError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The daemon answers a line that is not UTF-8 with -32700 before reading it.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let one_line = !text.contains('\n');
    match rpc::read_line(text) {
        Err(e) => answer(&Id::null(), &e, one_line),
        Ok(Line::One(r)) => request(r, one_line),
        Ok(Line::Batch(items)) => {
            assert!(!items.is_empty(), "an empty batch is refused as a whole");
            for r in items {
                request(r, one_line);
            }
        }
    }
});

fn request(r: Result<Incoming<'_>, Refused>, one_line: bool) {
    let inc = match r {
        Ok(inc) => inc,
        Err((id, e)) => return answer(&id, &e, one_line),
    };
    let id = inc.id.clone().unwrap_or_else(Id::null);
    let Some(method) = Method::from_name(&inc.method) else {
        return answer(&id, &RpcError::method_not_found(&inc.method), one_line);
    };
    match MethodCall::read(method, inc.params) {
        Err(e) => answer(&id, &e, one_line),
        Ok(call) => {
            answer(&id, &RpcError::new(0, "ok"), one_line);
            resend(method, &call, inc.id.as_ref());
        }
    }
}

/// The reply is one line that a client reads back with the same id.
fn answer(id: &Id, e: &RpcError, one_line: bool) {
    let mut out = Vec::new();
    rpc::write_error(&mut out, id, e);
    if one_line {
        assert!(
            !out.contains(&b'\n'),
            "a reply spans lines: {:?}",
            String::from_utf8_lossy(&out)
        );
    }
    let m: rpc::Message = serde_json::from_slice(&out).unwrap_or_else(|err| {
        panic!(
            "reply not readable ({err}): {}",
            String::from_utf8_lossy(&out)
        )
    });
    assert_eq!(m.id.as_ref(), Some(id), "the reply's id");
    assert_eq!(m.error.as_ref(), Some(e), "the reply's error");
}

/// The call, sent again as `imlinkctl` would, reads back the same.
fn resend(method: Method, call: &MethodCall, id: Option<&Id>) {
    let params = match call {
        MethodCall::InitSdk(p) => serde_json::to_value(p),
        MethodCall::Login(p) => serde_json::to_value(p),
        MethodCall::Subscribe(p) => serde_json::to_value(p),
        MethodCall::Unsubscribe(p) => serde_json::to_value(p),
        _ => Ok(serde_json::json!({})),
    }
    .expect("params serialise");
    let req = rpc::Request {
        jsonrpc: rpc::VERSION,
        id: id.cloned(),
        method: method.name(),
        params: &params,
    };
    let text = serde_json::to_string(&req).expect("request serialises");
    let Ok(Line::One(Ok(again))) = rpc::read_line(&text) else {
        panic!("a re-sent call is not read as one request: {text}");
    };
    assert_eq!(again.id.as_ref(), id, "{text}");
    assert_eq!(&*again.method, method.name(), "{text}");
    let back = MethodCall::read(method, again.params)
        .unwrap_or_else(|e| panic!("a re-sent call is refused ({e}): {text}"));
    assert_eq!(&back, call, "{text}");
}
