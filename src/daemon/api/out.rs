//! The writing side of one API connection: replies and events, in order, never blocking
//! the daemon.
//!
//! A reply is written at once with a non-blocking write when nothing is queued before it;
//! what the socket does not take waits in a buffer that a flusher task (started only when
//! needed) writes when the socket is writable. Events are not queued at all: each
//! subscription is a cursor into the hub's ring, and whenever the socket can take more the
//! next events are rendered straight into the write (see [`crate::core::ring`]). A
//! subscriber that stops reading therefore holds at most one partial write, and gets
//! `eventsLost` when it reads again.

use std::cell::{Cell, RefCell};
use std::io::{self, IoSlice};
use std::rc::Rc;
use tokio::net::UnixStream;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::super::hub::Hub;
use crate::core::ring::{Cursor, Step};

/// Events are rendered into a write until it holds about this many bytes.
pub const WRITE_BATCH: usize = 64 * 1024;

/// One subscription of a connection.
#[derive(Debug, Clone, Copy)]
struct Sub {
    id: u64,
    cursor: Cursor,
}

/// The writing side of a connection.
pub struct Out {
    stream: Rc<UnixStream>,
    /// Bytes waiting to be written, from `start`.
    buf: RefCell<Vec<u8>>,
    start: Cell<usize>,
    /// A flusher task runs (and owns writing until the buffer is empty).
    flushing: Cell<bool>,
    subs: RefCell<Vec<Sub>>,
    /// The peer is gone (a write failed): nothing more is written.
    dead: Cell<bool>,
    /// The buffer became empty, or the connection died.
    drained: Notify,
    /// When bytes last left (or the buffer last became non-empty).
    progress: Cell<Instant>,
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

impl Out {
    /// The writing side of `stream`.
    pub fn new(stream: Rc<UnixStream>) -> Rc<Out> {
        Rc::new(Out {
            stream,
            buf: RefCell::new(Vec::new()),
            start: Cell::new(0),
            flushing: Cell::new(false),
            subs: RefCell::new(Vec::new()),
            dead: Cell::new(false),
            drained: Notify::new(),
            progress: Cell::new(Instant::now()),
        })
    }

    /// Bytes waiting to be written.
    pub fn pending(&self) -> usize {
        self.buf.borrow().len() - self.start.get()
    }

    /// The peer is gone.
    pub fn is_dead(&self) -> bool {
        self.dead.get()
    }

    /// How long the queued bytes have waited without any of them being taken (zero when
    /// nothing waits).
    pub fn stalled_for(&self) -> std::time::Duration {
        if self.pending() == 0 {
            std::time::Duration::ZERO
        } else {
            self.progress.get().elapsed()
        }
    }

    /// Resolves when nothing waits to be written (or the peer is gone).
    pub async fn drained(&self) {
        loop {
            let n = self.drained.notified();
            if self.pending() == 0 || self.dead.get() {
                return;
            }
            n.await;
        }
    }

    fn die(&self) {
        self.dead.set(true);
        let mut b = self.buf.borrow_mut();
        b.clear();
        b.shrink_to_fit();
        self.start.set(0);
        self.drained.notify_waiters();
    }

    /// Writes what it can of `bufs` now; returns how much was taken (None: the peer is
    /// gone — the caller then calls [`Out::die`], with no borrow of the buffer held).
    fn try_write_now(&self, bufs: &[IoSlice<'_>]) -> Option<usize> {
        let r = if bufs.len() == 1 {
            self.stream.try_write(&bufs[0])
        } else {
            self.stream.try_write_vectored(bufs)
        };
        match r {
            Ok(n) => {
                if n > 0 {
                    self.progress.set(Instant::now());
                }
                Some(n)
            }
            Err(e) if would_block(&e) => Some(0),
            Err(e) => {
                tracing::debug!("API client write failed: {e}");
                None
            }
        }
    }

    /// [`Out::try_write_now`] for bytes that are not the buffer.
    fn write_now(&self, bufs: &[IoSlice<'_>]) -> usize {
        self.try_write_now(bufs).unwrap_or_else(|| {
            self.die();
            0
        })
    }

    /// Queues `bytes` (whole lines) behind what is queued, writing at once when possible.
    pub fn send(self: &Rc<Self>, hub: &Rc<Hub>, bytes: &[u8]) {
        if self.dead.get() || bytes.is_empty() {
            return;
        }
        if !self.flushing.get() {
            let n = self.write_now(&[IoSlice::new(bytes)]);
            if n == bytes.len() || self.dead.get() {
                return;
            }
            self.queue(&bytes[n..]);
            self.start_flusher(hub);
        } else {
            self.queue(bytes);
        }
    }

    fn queue(&self, bytes: &[u8]) {
        let mut b = self.buf.borrow_mut();
        if b.len() == self.start.get() {
            b.clear();
            self.start.set(0);
            self.progress.set(Instant::now());
        }
        b.extend_from_slice(bytes);
    }

    /// New events are in the ring: write them now, or leave them to the flusher.
    pub fn pump(self: &Rc<Self>, hub: &Rc<Hub>) {
        if self.dead.get() || self.flushing.get() || !self.has_subs() {
            return;
        }
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            s.clear();
            let more = self.render_events(hub, &mut s);
            if s.is_empty() {
                return;
            }
            let n = self.write_now(&[IoSlice::new(&s)]);
            if self.dead.get() {
                return;
            }
            if n < s.len() || more {
                self.queue(&s[n..]);
                if s.capacity() > 4 * WRITE_BATCH {
                    s.shrink_to(WRITE_BATCH);
                }
                drop(s);
                self.start_flusher(hub);
            }
        });
    }

    /// Renders the next events of this connection's subscriptions into `out`, in seq order,
    /// until about [`WRITE_BATCH`] bytes; true when more remain.
    fn render_events(&self, hub: &Hub, out: &mut Vec<u8>) -> bool {
        let ring = hub.ring();
        let lag = hub.lag_limit();
        let mut subs = self.subs.borrow_mut();
        loop {
            if out.len() >= WRITE_BATCH {
                return true;
            }
            // The subscription whose next step has the lowest seq goes first.
            let mut best: Option<(usize, u64, Cursor)> = None;
            for (i, sub) in subs.iter().enumerate() {
                let mut c = sub.cursor;
                let seq = match ring.next(&mut c, lag) {
                    Step::Idle => continue,
                    Step::Deliver(e) => e.seq,
                    Step::Lost { to, .. } => to,
                };
                if best.is_none_or(|(_, s, _)| seq < s) {
                    best = Some((i, seq, sub.cursor));
                }
            }
            let Some((i, _, mut c)) = best else {
                return false;
            };
            let step = ring.next(&mut c, lag);
            let sub = &mut subs[i];
            sub.cursor = c;
            out.extend_from_slice(
                b"{\"jsonrpc\":\"2.0\",\"method\":\"event\",\"params\":{\"subscription\":",
            );
            out.extend_from_slice(itoa::Buffer::new().format(sub.id).as_bytes());
            match step {
                Step::Deliver(e) => out.extend_from_slice(&e.body),
                Step::Lost { from, to } => {
                    tracing::debug!(
                        subscription = sub.id,
                        from,
                        to,
                        "subscriber lagging: events lost"
                    );
                    out.extend_from_slice(&hub.render_lost(from, to));
                }
                Step::Idle => {}
            }
        }
    }

    fn start_flusher(self: &Rc<Self>, hub: &Rc<Hub>) {
        if self.flushing.replace(true) {
            return;
        }
        let me = self.clone();
        let hub = hub.clone();
        tokio::task::spawn_local(async move { me.flush(hub).await });
    }

    /// Writes the buffer as the socket takes it, pulling new events when it is empty; ends
    /// when nothing is left.
    async fn flush(self: Rc<Self>, hub: Rc<Hub>) {
        loop {
            if self.dead.get() {
                break;
            }
            if self.pending() == 0 {
                let mut b = self.buf.borrow_mut();
                b.clear();
                self.start.set(0);
                self.render_events(&hub, &mut b);
                if b.is_empty() {
                    if b.capacity() > WRITE_BATCH {
                        b.shrink_to(0);
                    }
                    break;
                }
            }
            if self.stream.writable().await.is_err() {
                self.die();
                break;
            }
            let n = {
                let b = self.buf.borrow();
                let s = self.start.get();
                self.try_write_now(&[IoSlice::new(&b[s..])])
            };
            match n {
                Some(n) => self.start.set(self.start.get() + n),
                None => {
                    self.die();
                    break;
                }
            }
        }
        self.flushing.set(false);
        self.drained.notify_waiters();
    }

    // ------------------------------------------------------------------ subscriptions

    /// Adds a subscription at `cursor`.
    pub fn add_sub(&self, id: u64, cursor: Cursor) {
        self.subs.borrow_mut().push(Sub { id, cursor });
    }

    /// Removes subscription `id`; false when this connection holds no such subscription.
    pub fn remove_sub(&self, id: u64) -> bool {
        let mut subs = self.subs.borrow_mut();
        let before = subs.len();
        subs.retain(|s| s.id != id);
        subs.len() != before
    }

    /// Does it hold a subscription?
    pub fn has_subs(&self) -> bool {
        !self.subs.borrow().is_empty()
    }

    /// Ends every subscription.
    pub fn clear_subs(&self) {
        self.subs.borrow_mut().clear();
    }

    /// A zero-length write fails once the peer has closed completely (and succeeds while
    /// it only shut down its writing side): true when the peer is gone.
    pub fn probe_gone(&self) -> bool {
        if self.dead.get() {
            return true;
        }
        match self.stream.try_write(&[]) {
            Ok(_) => false,
            Err(e) if would_block(&e) => false,
            Err(_) => {
                self.die();
                true
            }
        }
    }

    /// Ends the connection now: nothing more is written, a flusher waiting for the socket
    /// to become writable wakes (the socket is shut down both ways), the peer sees the end.
    pub fn abort(&self) {
        if !self.dead.get() {
            let _ = socket2::SockRef::from(&*self.stream).shutdown(std::net::Shutdown::Both);
        }
        self.die();
    }

    /// Shuts down the writing side once everything is written.
    pub async fn finish(&self) {
        self.drained().await;
        // The read half is ours too; a shutdown of the write direction tells the peer we
        // are done.
        if !self.dead.get() {
            let _ = socket2::SockRef::from(&*self.stream).shutdown(std::net::Shutdown::Write);
        }
    }
}

thread_local! {
    /// Where events are rendered before a direct write (one per thread, reused).
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}
