//! The sending half of a `/v1/connect` WebSocket, written in chunks.
//!
//! A connection task encodes its frames itself, into a buffer of its own, and hands the
//! response body one chunk for a whole batch of them (a burst of pushes goes out as a
//! few large writes). The generic session hands over one message at a time through a
//! queue of 32, so a burst cost a hand-off per frame and a system call per 32 frames.
//! The queue of chunks is bounded: a client that does not read holds its connection
//! task back, as before.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use actix_codec::Encoder;
use actix_http::ws::{Codec, Message};
use actix_web::body::{BodyStream, BoxBody};
use actix_web::HttpResponse;
use actix_ws::CloseReason;
use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;

/// The most chunks waiting for the socket before a sender waits.
const CHUNKS: usize = 32;

/// A batch's buffer is handed over once it holds this much.
pub const CHUNK_BYTES: usize = 64 * 1024;

/// The connection is closed (a close frame was sent, or the response ended).
#[derive(Debug)]
pub struct Closed;

/// Encodes frames and hands them to the response body. A clone shares the connection
/// (a delayed response sends through one); once one of them sent the close frame, none
/// sends anything more.
#[derive(Clone)]
pub struct WsOut {
    tx: Option<mpsc::Sender<Bytes>>,
    buf: BytesMut,
    codec: Codec,
    closed: Arc<AtomicBool>,
}

/// The response body: the chunks, in order, until every sender is gone.
struct Chunks(mpsc::Receiver<Bytes>);

impl futures_util::Stream for Chunks {
    type Item = Result<Bytes, std::convert::Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|c| c.map(Ok))
    }
}

impl WsOut {
    /// The upgrade `response` (from the WebSocket handshake) with its body replaced by
    /// the chunks of the returned sender.
    pub fn attach(response: HttpResponse) -> (HttpResponse, WsOut) {
        let (tx, rx) = mpsc::channel(CHUNKS);
        let response = response.set_body(BoxBody::new(BodyStream::new(Chunks(rx))));
        (
            response,
            WsOut {
                tx: Some(tx),
                buf: BytesMut::new(),
                codec: Codec::new(),
                closed: Arc::new(AtomicBool::new(false)),
            },
        )
    }

    fn check(&mut self) -> Result<(), Closed> {
        if self.closed.load(Ordering::Relaxed) {
            self.tx = None;
        }
        match &self.tx {
            Some(tx) if !tx.is_closed() => Ok(()),
            _ => Err(Closed),
        }
    }

    fn encode(&mut self, msg: Message) -> Result<(), Closed> {
        self.check()?;
        self.codec.encode(msg, &mut self.buf).map_err(|_| Closed)
    }

    /// Adds a text frame to the batch (sent by [`WsOut::flush`]).
    pub fn queue_text(&mut self, text: String) -> Result<(), Closed> {
        self.encode(Message::Text(text.into()))
    }

    /// How many bytes the batch holds.
    pub fn queued(&self) -> usize {
        self.buf.len()
    }

    /// Hands the batch to the response body (waits while the client is behind).
    pub async fn flush(&mut self) -> Result<(), Closed> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = self.buf.split().freeze();
        match &self.tx {
            Some(tx) => tx.send(chunk).await.map_err(|_| Closed),
            None => Err(Closed),
        }
    }

    /// Sends one text frame (after anything batched).
    pub async fn text(&mut self, text: String) -> Result<(), Closed> {
        self.queue_text(text)?;
        self.flush().await
    }

    /// Answers a ping.
    pub async fn pong(&mut self, payload: &[u8]) -> Result<(), Closed> {
        self.encode(Message::Pong(Bytes::copy_from_slice(payload)))?;
        self.flush().await
    }

    /// Sends the close frame; nothing is sent after it, by this sender or a clone.
    pub async fn close(&mut self, reason: Option<CloseReason>) -> Result<(), Closed> {
        self.encode(Message::Close(reason))?;
        self.closed.store(true, Ordering::Relaxed);
        let sent = self.flush().await;
        self.tx = None;
        sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_codec::Decoder;
    use actix_http::ws::Frame;
    use actix_web::body::MessageBody;

    /// What the client reads from `chunk`.
    fn frames(chunk: &Bytes) -> Vec<Frame> {
        let mut codec = Codec::new().client_mode();
        let mut buf = BytesMut::from(&chunk[..]);
        let mut out = Vec::new();
        while let Some(f) = codec.decode(&mut buf).unwrap() {
            out.push(f);
        }
        assert!(buf.is_empty(), "whole frames only");
        out
    }

    /// The body's next chunk, or `None` at its end.
    async fn next_chunk(body: &mut BoxBody) -> Option<Bytes> {
        std::future::poll_fn(|cx| Pin::new(&mut *body).poll_next(cx))
            .await
            .map(|c| c.unwrap())
    }

    /// A batch reaches the body as one chunk of its frames, in order; a lone frame as a
    /// chunk of its own; a clone's frame after the close frame is refused, and the body
    /// ends once every sender is gone.
    #[tokio::test]
    async fn a_batch_is_one_chunk_and_nothing_follows_the_close_frame() {
        let (response, mut out) = WsOut::attach(HttpResponse::Ok().finish());
        let mut body = response.into_body();
        let mut delayed = out.clone();
        out.queue_text("a".into()).unwrap();
        out.queue_text("b".into()).unwrap();
        assert!(out.queued() > 2);
        out.flush().await.unwrap();
        assert_eq!(out.queued(), 0);
        out.text("c".into()).await.unwrap();
        out.close(None).await.unwrap();
        assert!(
            delayed.text("late".into()).await.is_err(),
            "after the close"
        );
        drop((out, delayed));
        let text = |s: &'static str| Frame::Text(Bytes::from_static(s.as_bytes()));
        let chunk = next_chunk(&mut body).await.unwrap();
        assert_eq!(frames(&chunk), [text("a"), text("b")]);
        let chunk = next_chunk(&mut body).await.unwrap();
        assert_eq!(frames(&chunk), [text("c")]);
        let chunk = next_chunk(&mut body).await.unwrap();
        assert_eq!(frames(&chunk), [Frame::Close(None)]);
        assert!(next_chunk(&mut body).await.is_none(), "the body ends");
    }
}
