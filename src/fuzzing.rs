//! Entry points for the fuzzing targets in `fuzz/` (`make fuzz`, docs/reliability.md): the
//! decoders of hostile input that are private to their modules, each as one function of
//! bytes that runs exactly the code the daemon or the devserver runs. Not part of the
//! library's interface; the public decoders (`proto::rpc::read_line`,
//! `proto::api::MethodCall::read`, `proto::ws::ServerFrame::parse`, `proto::bridge::parse_line`,
//! `config::load`, `usersig::decode`/`verify`, `daemon::api::line::Lines`) are fuzzed
//! directly.

use actix_codec::Decoder;
use awc::error::WsProtocolError;
use awc::ws;
use bytes::BytesMut;

use crate::daemon::link::ws::transport::{Assembler, GuardedCodec, Inbound};
use crate::proto::ws::MAX_FRAME_BYTES;

/// What the native link's transport makes of the bytes a server sends, delivered in
/// `chunks`: the same codec (awc's client codec behind [`GuardedCodec`], frames up to
/// [`MAX_FRAME_BYTES`]) and the same assembler of fragments as a real connection, up to
/// and including the first [`Inbound::Closed`] (a protocol error, or the end of input:
/// "closed by the server").
pub fn read_server_bytes(chunks: &[&[u8]]) -> Vec<Inbound> {
    let mut codec = GuardedCodec::new(
        ws::Codec::new().max_size(MAX_FRAME_BYTES).client_mode(),
        MAX_FRAME_BYTES,
    );
    let mut asm = Assembler::default();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            let closed = match codec.decode(&mut buf) {
                Ok(None) => break,
                Ok(Some(frame)) => match asm.push(frame, MAX_FRAME_BYTES) {
                    Ok(Some(i)) => {
                        let closed = matches!(i, Inbound::Closed(_));
                        out.push(i);
                        closed
                    }
                    Ok(None) => false,
                    Err(why) => {
                        out.push(Inbound::Closed(format!("protocol error: {why}")));
                        true
                    }
                },
                Err(WsProtocolError::Overflow) => {
                    out.push(Inbound::Closed(format!(
                        "protocol error: a frame larger than {MAX_FRAME_BYTES} bytes"
                    )));
                    true
                }
                Err(e) => {
                    out.push(Inbound::Closed(format!(
                        "protocol error: {}",
                        crate::text::clean(&e.to_string())
                    )));
                    true
                }
            };
            if closed {
                return out;
            }
        }
    }
    out.push(Inbound::Closed("closed by the server".into()));
    out
}

/// A Web-protocol request frame as the devserver reads it (`/binfo`, `/info`).
#[derive(Debug, Clone, PartialEq)]
pub struct WebFrame {
    /// `head.servcmd`.
    pub servcmd: String,
    /// `head.seq`.
    pub seq: u64,
    /// The head.
    pub head: serde_json::Map<String, serde_json::Value>,
    /// The body (an object).
    pub body: serde_json::Value,
}

/// Why a Web-protocol frame was refused: the `servcmd`/`seq` the answer echoes (empty/0
/// when unreadable), the reason, and whether the connection is closed (1009).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebRefusal {
    /// Echoed `servcmd`.
    pub servcmd: String,
    /// Echoed `seq`.
    pub seq: u64,
    /// The reason.
    pub why: String,
    /// Too large once inflated: the connection is closed.
    pub fatal: bool,
}

/// Reads one Web-protocol frame (plain JSON, or `COMP` + gzip/zlib) exactly as the
/// devserver's Web endpoint does.
pub fn web_frame(raw: &[u8]) -> Result<WebFrame, WebRefusal> {
    crate::devserver::websdk::parse(raw)
        .map(|r| WebFrame {
            servcmd: r.servcmd,
            seq: r.seq,
            head: r.head,
            body: r.body,
        })
        .map_err(|b| WebRefusal {
            servcmd: b.servcmd,
            seq: b.seq,
            why: b.why,
            fatal: b.fatal,
        })
}

/// Opens an A2 key (the Web SDK's re-login token) as the devserver does: its (user,
/// `TLS.time`, `TLS.expire`) after checking the MAC under `key`, the app and the instance.
pub fn open_a2(
    key: &str,
    app: u64,
    instance: &str,
    a2: &str,
) -> Result<(String, i64, i64), String> {
    crate::devserver::websdk::open_a2(key, app, instance, a2)
}

/// Makes an A2 key as the devserver's Web login does.
pub fn seal_a2(key: &str, app: u64, instance: &str, user: &str, time: i64, expire: i64) -> String {
    crate::devserver::websdk::seal_a2(key, app, instance, user, time, expire)
}

/// What the daemon makes of a session file's content (`daemon::store`, once the file is
/// opened and read): `Ok` with the content as its writer would write it back, or why the
/// file is set aside.
pub fn session_file(bytes: &[u8]) -> Result<Vec<u8>, String> {
    crate::daemon::store::check_content(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The close reasons of a delivery, and whether anything but the close came out.
    fn closes(v: &[Inbound]) -> Vec<String> {
        v.iter()
            .map(|i| match i {
                Inbound::Closed(why) => why.clone(),
                other => format!("not a close: {other:?}"),
            })
            .collect()
    }

    /// Found by `ws_stream`: a header wrong in two ways (a reserved bit set, a 64-bit
    /// length over the limit) is refused by whichever check has its bytes first — the
    /// length check when the header arrives whole, awc's reserved-bit check when it
    /// arrives a byte at a time. Either way nothing but one protocol-error close comes out.
    #[test]
    fn a_header_wrong_twice_closes_once_however_it_arrives() {
        let mut stream = vec![0xC1, 127];
        stream.extend_from_slice(&(MAX_FRAME_BYTES as u64 + 1).to_be_bytes());
        stream.extend_from_slice(b"payload");
        let whole = read_server_bytes(&[&stream]);
        let bytewise: Vec<&[u8]> = stream.chunks(1).collect();
        let bytewise = read_server_bytes(&bytewise);
        for got in [&whole, &bytewise] {
            let why = closes(got);
            assert_eq!(why.len(), 1, "{got:?}");
            assert!(why[0].starts_with("protocol error: "), "{got:?}");
        }
        assert!(closes(&whole)[0].contains("larger than"), "{whole:?}");
    }

    /// A text frame, whole or a byte at a time, is the same message, then the close at
    /// the end of input.
    #[test]
    fn a_text_frame_reads_the_same_in_any_chunks() {
        let stream = [0x81, 5, b'h', b'e', b'l', b'l', b'o'];
        let whole = read_server_bytes(&[&stream]);
        let bytewise: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(whole, read_server_bytes(&bytewise));
        assert!(
            matches!(&whole[..], [Inbound::Text(t), Inbound::Closed(why)]
            if &t[..] == b"hello" && why == "closed by the server"),
            "{whole:?}"
        );
    }
}
