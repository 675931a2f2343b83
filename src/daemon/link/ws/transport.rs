//! The byte pipe under the native link: a WebSocket as two channels of whole messages.
//!
//! [`Dialer`] opens one; [`AwcDialer`] is the real one (awc, `ws://` and `wss://`), and
//! [`MemoryDialer`] hands out in-memory pipes so that the link actor runs in-process with
//! tokio's clock paused (no socket, no real time). The link actor sees only [`Transport`]:
//! it sends [`Outbound`] messages and reads [`Inbound`] ones.
//!
//! The awc transport refuses a frame larger than [`MAX_FRAME_BYTES`] as soon as its header
//! arrives (awc alone would first buffer the whole declared payload), and joins fragmented
//! messages up to the same limit.

use actix_codec::{Decoder, Encoder};
use actix_http::ws::Item;
use awc::error::WsProtocolError;
use awc::ws::{self, CloseCode, CloseReason, Frame, Message};
use bytes::{Bytes, BytesMut};
use futures_util::future::LocalBoxFuture;
use futures_util::stream::{LocalBoxStream, StreamExt};
use futures_util::SinkExt;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

use crate::codes::code;
use crate::config::ServerConfig;
use crate::proto::ws::MAX_FRAME_BYTES;

/// What the link sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    /// A text message (one JSON frame).
    Text(String),
    /// Answer to a ping.
    Pong(Bytes),
    /// Close the connection (normal closure).
    Close,
}

/// What the link receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// A whole text message.
    Text(Bytes),
    /// A ping to answer.
    Ping(Bytes),
    /// Any other sign of life (pong, binary message): counts for liveness only.
    Other,
    /// The connection ended, with why.
    Closed(String),
}

/// An open connection.
pub struct Transport {
    /// Messages to send; dropping it closes the connection.
    pub tx: mpsc::UnboundedSender<Outbound>,
    /// Messages received; ends after [`Inbound::Closed`].
    pub rx: LocalBoxStream<'static, Inbound>,
}

/// Opens connections.
pub trait Dialer {
    /// Connects to `url` (the attempt's timeout is the caller's); the error is a Tencent
    /// code (9508) and one line.
    fn dial(&self, url: String) -> LocalBoxFuture<'static, Result<Transport, (i32, String)>>;
}

// ------------------------------------------------------------------------- awc

/// Refuses an oversized frame from its header, then decodes with awc's codec; sizes the
/// read buffer to the traffic.
///
/// The framed transport reads into the spare room of its buffer, which it tops up to
/// 8 KiB. While the server sends a burst (reads bring in at least `BURST_READ` bytes),
/// the buffer is given room for `BURST_ROOM` bytes, so that one read takes in many
/// frames: each read costs a system call and an acknowledgement the server must handle.
/// Once reads are small again an emptied buffer is let go, so an idle connection holds
/// no more than the transport's default.
pub struct GuardedCodec {
    inner: ws::Codec,
    max: usize,
    /// The bytes decoded since the decoder last asked for more.
    taken: usize,
}

/// What one read must bring in for the read buffer to grow.
const BURST_READ: usize = 4 * 1024;
/// The read buffer's room during a burst.
const BURST_ROOM: usize = 64 * 1024;

impl GuardedCodec {
    /// awc's client codec with a frame limit of `max` bytes.
    pub fn new(inner: ws::Codec, max: usize) -> GuardedCodec {
        GuardedCodec {
            inner,
            max,
            taken: 0,
        }
    }

    /// Called when the buffer holds no whole frame (the next read follows): room for a
    /// burst after a large read, the default after a small one.
    fn size_room(&mut self, src: &mut BytesMut) {
        let brought = std::mem::take(&mut self.taken).saturating_add(src.len());
        if brought >= BURST_READ {
            if src.capacity() - src.len() < BURST_ROOM {
                src.reserve(BURST_ROOM);
            }
        } else if src.is_empty() && src.capacity() > BURST_ROOM / 2 {
            // The transport tops an empty buffer up to its default size.
            *src = BytesMut::new();
        }
    }
}

/// The payload length a frame header declares, once enough of it has arrived.
fn declared_len(src: &[u8]) -> Option<u64> {
    let b1 = *src.get(1)?;
    match b1 & 0x7f {
        126 => Some(u64::from(u16::from_be_bytes([*src.get(2)?, *src.get(3)?]))),
        127 => {
            let b: [u8; 8] = src.get(2..10)?.try_into().ok()?;
            Some(u64::from_be_bytes(b))
        }
        n => Some(u64::from(n)),
    }
}

impl Decoder for GuardedCodec {
    type Item = Frame;
    type Error = WsProtocolError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, WsProtocolError> {
        if let Some(len) = declared_len(src) {
            if len > self.max as u64 {
                return Err(WsProtocolError::Overflow);
            }
        }
        let before = src.len();
        let out = self.inner.decode(src);
        match &out {
            Ok(Some(_)) => self.taken = self.taken.saturating_add(before.saturating_sub(src.len())),
            Ok(None) => self.size_room(src),
            Err(_) => {}
        }
        out
    }
}

impl Encoder<Message> for GuardedCodec {
    type Error = WsProtocolError;

    fn encode(&mut self, item: Message, dst: &mut BytesMut) -> Result<(), WsProtocolError> {
        self.inner.encode(item, dst)
    }
}

/// Joins fragmented messages, up to a limit.
#[derive(Default)]
pub(crate) struct Assembler {
    text: bool,
    buf: Option<BytesMut>,
}

impl Assembler {
    /// The whole message a frame completes, if any; `Err` for a message over the limit.
    pub(crate) fn push(&mut self, frame: Frame, max: usize) -> Result<Option<Inbound>, String> {
        let mut add = |data: &Bytes, first: Option<bool>| -> Result<(), String> {
            if let Some(text) = first {
                self.text = text;
                self.buf = Some(BytesMut::new());
            }
            let Some(buf) = self.buf.as_mut() else {
                return Err("a continuation frame without a first frame".into());
            };
            if buf.len() + data.len() > max {
                return Err(format!("a message larger than {max} bytes"));
            }
            buf.extend_from_slice(data);
            Ok(())
        };
        Ok(match frame {
            Frame::Text(t) => Some(Inbound::Text(t)),
            Frame::Binary(_) | Frame::Pong(_) => Some(Inbound::Other),
            Frame::Ping(p) => Some(Inbound::Ping(p)),
            Frame::Close(reason) => Some(Inbound::Closed(match reason {
                Some(r) => format!(
                    "closed by the server ({} {})",
                    u16::from(r.code),
                    crate::text::clean(r.description.as_deref().unwrap_or(""))
                ),
                None => "closed by the server".into(),
            })),
            Frame::Continuation(Item::FirstText(d)) => {
                add(&d, Some(true))?;
                None
            }
            Frame::Continuation(Item::FirstBinary(d)) => {
                add(&d, Some(false))?;
                None
            }
            Frame::Continuation(Item::Continue(d)) => {
                add(&d, None)?;
                None
            }
            Frame::Continuation(Item::Last(d)) => {
                add(&d, None)?;
                let whole = self.buf.take().unwrap_or_default().freeze();
                Some(if self.text {
                    Inbound::Text(whole)
                } else {
                    Inbound::Other
                })
            }
        })
    }
}

/// Builds the HTTP client, with the CA file for `wss://` when configured.
pub fn build_client(server: &ServerConfig) -> Result<awc::Client, String> {
    let mut roots = rustls::RootCertStore::empty();
    let secure = server.url.starts_with("wss://");
    match &server.ca_file {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| format!("server.ca_file {}: {e}", path.display()))?;
            let mut n = 0;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert.map_err(|e| format!("server.ca_file {}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("server.ca_file {}: {e}", path.display()))?;
                n += 1;
            }
            if n == 0 {
                return Err(format!(
                    "server.ca_file {}: no certificate found",
                    path.display()
                ));
            }
        }
        // The built-in web roots only when they can be used (they cost memory).
        None if secure => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        None => {}
    }
    let connect_timeout = Duration::from_millis(server.connect_timeout_ms);
    // No cap on simultaneous connections (awc's default is 100): with many accounts the
    // client is shared by every account's link.
    let mut connector = awc::Connector::new().timeout(connect_timeout).limit(0);
    if secure {
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        connector = connector.rustls_0_23(Arc::new(tls));
    }
    Ok(awc::Client::builder()
        .connector(connector)
        .timeout(connect_timeout)
        .finish())
}

/// Dials with awc.
pub struct AwcDialer {
    server: ServerConfig,
    client: RefCell<Option<awc::Client>>,
}

impl AwcDialer {
    /// A dialer for this `[server]`.
    pub fn new(server: ServerConfig) -> AwcDialer {
        AwcDialer {
            server,
            client: RefCell::new(None),
        }
    }

    fn client(&self) -> Result<awc::Client, String> {
        if let Some(c) = &*self.client.borrow() {
            return Ok(c.clone());
        }
        let c = build_client(&self.server)?;
        *self.client.borrow_mut() = Some(c.clone());
        Ok(c)
    }
}

impl Dialer for AwcDialer {
    fn dial(&self, url: String) -> LocalBoxFuture<'static, Result<Transport, (i32, String)>> {
        let client = self.client();
        Box::pin(async move {
            let client = client.map_err(|e| (code::DISCONNECTED, e))?;
            let (_resp, framed) = client
                .ws(url)
                .max_frame_size(MAX_FRAME_BYTES)
                .connect()
                .await
                .map_err(|e| {
                    (
                        code::DISCONNECTED,
                        format!("connect failed: {}", crate::text::clean(&e.to_string())),
                    )
                })?;
            let framed = framed.into_map_codec(|c| GuardedCodec::new(c, MAX_FRAME_BYTES));
            let (mut sink, stream) = framed.split();
            let (tx, mut out_rx) = mpsc::unbounded_channel::<Outbound>();
            actix_rt::spawn(async move {
                while let Some(o) = out_rx.recv().await {
                    let msg = match o {
                        Outbound::Text(t) => Message::Text(t.into()),
                        Outbound::Pong(p) => Message::Pong(p),
                        Outbound::Close => Message::Close(Some(CloseReason {
                            code: CloseCode::Normal,
                            description: None,
                        })),
                    };
                    let close = matches!(msg, Message::Close(_));
                    if sink.send(msg).await.is_err() {
                        break;
                    }
                    if close {
                        // The close handshake: the connection stays open until the
                        // server's close frame arrives (the link then drops its sender)
                        // or the link gives up; nothing more is sent.
                        while out_rx.recv().await.is_some() {}
                        break;
                    }
                }
                // Dropping the sink (and the link dropping the stream) closes the socket.
                drop(sink);
            });
            let rx = Frames::new(stream).boxed_local();
            Ok(Transport { tx, rx })
        })
    }
}

/// The server's frames as [`Inbound`]s: continuations assembled, a protocol error or the
/// end of the stream reported once as [`Inbound::Closed`], and nothing after that. One
/// stage, where stream adapters had every frame of a burst polled through four.
struct Frames<S> {
    framed: S,
    asm: Assembler,
    /// `Closed` was given: the stream has ended.
    done: bool,
}

impl<S> Frames<S> {
    fn new(framed: S) -> Frames<S> {
        Frames {
            framed,
            asm: Assembler::default(),
            done: false,
        }
    }
}

impl<S> futures_util::Stream for Frames<S>
where
    S: futures_util::Stream<Item = Result<Frame, WsProtocolError>> + Unpin,
{
    type Item = Inbound;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Inbound>> {
        use std::task::Poll;
        let this = self.get_mut();
        while !this.done {
            let item = match this.framed.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => match this.asm.push(frame, MAX_FRAME_BYTES) {
                    Ok(Some(i)) => i,
                    // A continuation: the message is not whole yet.
                    Ok(None) => continue,
                    Err(why) => Inbound::Closed(format!("protocol error: {why}")),
                },
                Poll::Ready(Some(Err(WsProtocolError::Overflow))) => Inbound::Closed(format!(
                    "protocol error: a frame larger than {MAX_FRAME_BYTES} bytes"
                )),
                Poll::Ready(Some(Err(e))) => Inbound::Closed(format!(
                    "protocol error: {}",
                    crate::text::clean(&e.to_string())
                )),
                Poll::Ready(None) => Inbound::Closed("closed by the server".into()),
            };
            this.done = matches!(item, Inbound::Closed(_));
            return Poll::Ready(Some(item));
        }
        Poll::Ready(None)
    }
}

/// A transport's messages, each as `Some`, and a `None` each time the transport has
/// nothing more for now after giving at least one: the link's cue that a read from the
/// server has been taken in whole (it then passes on what it gathered from it and reads
/// the clock afresh for the next one).
pub struct UntilIdle<S> {
    inner: S,
    /// A message was given since the last `None`.
    gave: bool,
}

impl<S> UntilIdle<S> {
    /// The messages of `inner`, with a `None` whenever it runs dry.
    pub fn new(inner: S) -> UntilIdle<S> {
        UntilIdle { inner, gave: false }
    }
}

impl<S> futures_util::Stream for UntilIdle<S>
where
    S: futures_util::Stream + Unpin,
{
    type Item = Option<S::Item>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Option<S::Item>>> {
        use std::task::Poll;
        let this = self.get_mut();
        match this.inner.poll_next_unpin(cx) {
            Poll::Ready(Some(item)) => {
                this.gave = true;
                Poll::Ready(Some(Some(item)))
            }
            Poll::Ready(None) => Poll::Ready(None),
            // The inner stream holds the waker: the next poll asks it again.
            Poll::Pending if std::mem::take(&mut this.gave) => Poll::Ready(Some(None)),
            Poll::Pending => Poll::Pending,
        }
    }
}

// ------------------------------------------------------------------------- memory

/// The server's end of an in-memory connection.
pub struct PeerEnd {
    /// What the link sent.
    pub rx: mpsc::UnboundedReceiver<Outbound>,
    /// What the link will receive.
    pub tx: mpsc::UnboundedSender<Inbound>,
}

/// In-memory connections for in-process tests: each dial is answered by the next
/// decision from `accept` (a scripted server), without sockets.
#[derive(Clone, Default)]
pub struct MemoryDialer {
    /// The server ends of the connections opened so far, for the test to drive.
    pub accepted: Rc<RefCell<Vec<PeerEnd>>>,
    /// Refuse dials while true (code 9508).
    pub refuse: Rc<std::cell::Cell<bool>>,
    /// Every URL dialled.
    pub dialled: Rc<RefCell<Vec<String>>>,
}

impl Dialer for MemoryDialer {
    fn dial(&self, url: String) -> LocalBoxFuture<'static, Result<Transport, (i32, String)>> {
        self.dialled.borrow_mut().push(url);
        if self.refuse.get() {
            return Box::pin(async { Err((code::DISCONNECTED, "connection refused".into())) });
        }
        let (to_peer, peer_rx) = mpsc::unbounded_channel();
        let (peer_tx, from_peer) = mpsc::unbounded_channel::<Inbound>();
        self.accepted.borrow_mut().push(PeerEnd {
            rx: peer_rx,
            tx: peer_tx,
        });
        let rx = futures_util::stream::unfold(from_peer, |mut r| async move {
            r.recv().await.map(|i| (i, r))
        })
        .chain(futures_util::stream::once(async {
            Inbound::Closed("closed by the server".into())
        }))
        .boxed_local();
        Box::pin(async move { Ok(Transport { tx: to_peer, rx }) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_frames_are_refused_from_their_header() {
        let mut c = GuardedCodec::new(ws::Codec::new().client_mode(), 1024);
        // A text frame header declaring 70 MB, with none of its payload.
        let mut src = BytesMut::from(&[0x81u8, 127, 0, 0, 0, 0, 4, 44, 29, 128][..]);
        assert!(matches!(c.decode(&mut src), Err(WsProtocolError::Overflow)));
        // A small frame passes.
        let mut c = GuardedCodec::new(ws::Codec::new().client_mode(), 1024);
        let mut src = BytesMut::from(&[0x81u8, 2, b'h', b'i'][..]);
        assert!(matches!(c.decode(&mut src), Ok(Some(Frame::Text(t))) if &t[..] == b"hi"));
        assert_eq!(declared_len(&[0x81, 126, 1, 0]), Some(256));
        assert_eq!(declared_len(&[0x81]), None);
    }

    #[test]
    fn the_read_buffer_grows_for_a_burst_and_is_let_go_after_it() {
        let mut server = ws::Codec::new();
        let mut frames = |n: usize, src: &mut BytesMut| {
            for _ in 0..n {
                server
                    .encode(Message::Text("x".repeat(440).into()), src)
                    .unwrap();
            }
        };
        let mut c = GuardedCodec::new(ws::Codec::new().client_mode(), 1024);
        let mut decode_all = |src: &mut BytesMut| {
            let mut n = 0;
            while let Some(f) = c.decode(src).unwrap() {
                assert!(matches!(f, Frame::Text(t) if t.len() == 440));
                n += 1;
            }
            n
        };
        // A small read: the buffer stays as the transport made it.
        let mut src = BytesMut::with_capacity(8 * 1024);
        frames(2, &mut src);
        assert_eq!(decode_all(&mut src), 2);
        assert!(src.capacity() <= 8 * 1024);
        // A read that brought in 18 frames (444 bytes each) and part of a 19th: room for a
        // burst, the part kept.
        frames(19, &mut src);
        let rest = src.split_off(src.len() - 100);
        assert_eq!(decode_all(&mut src), 18);
        assert_eq!(src.len(), 344);
        assert!(
            src.capacity() - src.len() >= BURST_ROOM,
            "{}",
            src.capacity()
        );
        // The rest of that frame, and nothing more: the emptied buffer is let go.
        src.extend_from_slice(&rest);
        assert_eq!(decode_all(&mut src), 1);
        assert_eq!((src.len(), src.capacity()), (0, 0));
    }

    fn frames(input: Vec<Result<Frame, WsProtocolError>>) -> Vec<Inbound> {
        let s = Frames::new(futures_util::stream::iter(input));
        // The input is always ready, so the whole stream is read in one poll.
        futures_util::FutureExt::now_or_never(s.collect::<Vec<_>>()).unwrap()
    }

    /// A whole message per item, continuations joined; the end of the server's stream is
    /// one `Closed`, a protocol error too, and nothing follows either.
    #[test]
    fn frames_become_messages_and_end_with_one_closed() {
        let text = |b: &'static [u8]| Ok(Frame::Text(Bytes::from_static(b)));
        assert_eq!(
            frames(vec![
                Ok(Frame::Continuation(Item::FirstText(Bytes::from_static(
                    b"a"
                )))),
                Ok(Frame::Continuation(Item::Last(Bytes::from_static(b"b")))),
                text(b"c"),
                Ok(Frame::Ping(Bytes::from_static(b"p"))),
            ]),
            [
                Inbound::Text(Bytes::from_static(b"ab")),
                Inbound::Text(Bytes::from_static(b"c")),
                Inbound::Ping(Bytes::from_static(b"p")),
                Inbound::Closed("closed by the server".into()),
            ]
        );
        assert_eq!(
            frames(vec![
                text(b"x"),
                Err(WsProtocolError::Overflow),
                text(b"after the error"),
            ]),
            [
                Inbound::Text(Bytes::from_static(b"x")),
                Inbound::Closed(format!(
                    "protocol error: a frame larger than {MAX_FRAME_BYTES} bytes"
                )),
            ]
        );
        let closed = frames(vec![
            Ok(Frame::Continuation(Item::Last(Bytes::from_static(b"x")))),
            text(b"after the error"),
        ]);
        assert!(
            matches!(&closed[..], [Inbound::Closed(why)] if why.starts_with("protocol error: ")),
            "{closed:?}"
        );
    }

    /// A `None` after each run of messages the inner stream had ready, none while it
    /// had nothing to give, and the end passed on.
    #[test]
    fn a_run_of_ready_messages_ends_with_one_none() {
        use futures_util::task::noop_waker_ref;
        use std::task::{Context, Poll};
        let (tx, rx) = mpsc::unbounded_channel::<u32>();
        let inner =
            futures_util::stream::unfold(rx, |mut r| async move { r.recv().await.map(|i| (i, r)) })
                .boxed_local();
        let mut s = UntilIdle::new(inner);
        let mut cx = Context::from_waker(noop_waker_ref());
        let mut poll = || match s.poll_next_unpin(&mut cx) {
            Poll::Ready(x) => Some(x),
            Poll::Pending => None,
        };
        assert_eq!(poll(), None, "nothing yet: pending, no None");
        tx.send(1).unwrap();
        tx.send(2).unwrap();
        assert_eq!(poll(), Some(Some(Some(1))));
        assert_eq!(poll(), Some(Some(Some(2))));
        assert_eq!(poll(), Some(Some(None)), "the run is over");
        assert_eq!(poll(), None, "one None per run");
        tx.send(3).unwrap();
        assert_eq!(poll(), Some(Some(Some(3))));
        drop(tx);
        assert_eq!(poll(), Some(None), "the end, with nothing pending");
    }

    #[test]
    fn fragments_are_joined_up_to_the_limit() {
        let mut a = Assembler::default();
        assert_eq!(
            a.push(
                Frame::Continuation(Item::FirstText(Bytes::from_static(b"ab"))),
                4
            ),
            Ok(None)
        );
        assert_eq!(
            a.push(
                Frame::Continuation(Item::Last(Bytes::from_static(b"cd"))),
                4
            ),
            Ok(Some(Inbound::Text(Bytes::from_static(b"abcd"))))
        );
        let mut a = Assembler::default();
        a.push(
            Frame::Continuation(Item::FirstText(Bytes::from_static(b"abc"))),
            4,
        )
        .unwrap();
        assert!(a
            .push(
                Frame::Continuation(Item::Continue(Bytes::from_static(b"de"))),
                4
            )
            .is_err());
        let mut a = Assembler::default();
        assert!(a
            .push(Frame::Continuation(Item::Last(Bytes::from_static(b"x"))), 4)
            .is_err());
    }
}
