//! The writing side of one API connection: replies and events, in order, never blocking
//! the daemon.
//!
//! A reply is written at once with a non-blocking write when nothing is queued before it;
//! what the socket does not take waits in a queue that a flusher task (started only when
//! needed) writes when the socket is writable. Events are never copied per subscriber:
//! each subscription is a cursor into the hub's ring, and whenever the socket can take
//! more, the next events go out as a vectored write of shared buffers — the subscription's
//! constant head and the event's body as the ring holds it (see [`crate::core::ring`]). A
//! subscriber that stops reading therefore holds at most the handles of one write's events
//! (a few KiB), and gets `eventsLost` when it reads again.

use bytes::Bytes;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::rc::Rc;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::super::hub::Hub;
use super::conn::ConnSocket;
use crate::core::ring::{Cursor, Step};

/// Events are put into one write until it holds about this many bytes …
pub const WRITE_BATCH: usize = 32 * 1024;
/// … or this many events.
pub const WRITE_EVENTS: usize = 64;
/// The most buffers one vectored write takes.
const MAX_IOV: usize = 2 * WRITE_EVENTS + 2;
/// The buffer list of a short write (a few events).
const SMALL_IOV: usize = 8;

/// One subscription of a connection.
#[derive(Debug, Clone)]
struct Sub {
    id: u64,
    cursor: Cursor,
    /// `{"jsonrpc":"2.0","method":"event","params":{"subscription":ID`.
    head: Bytes,
}

/// Bytes waiting to be written: shared buffers, the first one partly written.
#[derive(Debug, Default)]
struct Queue {
    segs: VecDeque<Bytes>,
    /// Bytes of the first buffer already written.
    offset: usize,
    /// Bytes not yet written.
    len: usize,
}

impl Queue {
    fn push(&mut self, b: Bytes) {
        if !b.is_empty() {
            self.len += b.len();
            self.segs.push_back(b);
        }
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The next buffers to write.
    fn slices<'a>(&'a self, out: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (i, s) in self.segs.iter().enumerate() {
            if n == out.len() {
                break;
            }
            out[n] = IoSlice::new(if i == 0 { &s[self.offset..] } else { s });
            n += 1;
        }
        n
    }

    /// `n` bytes were written.
    fn advance(&mut self, mut n: usize) {
        self.len -= n;
        while n > 0 {
            let Some(front) = self.segs.front() else {
                break;
            };
            let left = front.len() - self.offset;
            if n >= left {
                n -= left;
                self.offset = 0;
                self.segs.pop_front();
            } else {
                self.offset += n;
                n = 0;
            }
        }
    }

    fn clear(&mut self) {
        self.segs = VecDeque::new();
        self.offset = 0;
        self.len = 0;
    }

    /// Empties it, keeping its memory (the shared scratch queue).
    fn clear_keep(&mut self) {
        self.segs.clear();
        self.offset = 0;
        self.len = 0;
    }
}

thread_local! {
    /// Where a direct write's buffers are gathered (one per thread, reused).
    static PUMP: RefCell<Queue> = RefCell::new(Queue::default());
}

/// The writing side of a connection.
pub struct Out {
    stream: Rc<ConnSocket>,
    queue: RefCell<Queue>,
    /// A flusher task runs (and owns writing until the queue is empty).
    flushing: Cell<bool>,
    subs: RefCell<Vec<Sub>>,
    /// The peer is gone (a write failed): nothing more is written.
    dead: Cell<bool>,
    /// The queue became empty, or the connection died.
    drained: Notify,
    /// When bytes last left (or the queue last became non-empty).
    progress: Cell<Instant>,
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

impl Out {
    /// The writing side of `stream`.
    pub fn new(stream: Rc<ConnSocket>) -> Rc<Out> {
        Rc::new(Out {
            stream,
            queue: RefCell::new(Queue::default()),
            flushing: Cell::new(false),
            subs: RefCell::new(Vec::new()),
            dead: Cell::new(false),
            drained: Notify::new(),
            progress: Cell::new(Instant::now()),
        })
    }

    /// Bytes waiting to be written.
    pub fn pending(&self) -> usize {
        self.queue.borrow().len
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
            if (self.pending() == 0 && !self.flushing.get()) || self.dead.get() {
                return;
            }
            n.await;
        }
    }

    fn die(&self) {
        self.dead.set(true);
        self.queue.borrow_mut().clear();
        self.drained.notify_waiters();
    }

    /// Writes what it can of `bufs` now; returns how much was taken (None: the peer is
    /// gone — the caller then calls [`Out::die`], with no borrow of the queue held).
    fn try_write_now(&self, bufs: &[IoSlice<'_>]) -> Option<usize> {
        let r = match bufs {
            [] => return Some(0),
            [one] => self.stream.try_write(one),
            many => self.stream.try_write_vectored(many),
        };
        match r {
            Ok(n) => Some(n),
            Err(e) if would_block(&e) => Some(0),
            Err(e) => {
                tracing::debug!("API client write failed: {e}");
                None
            }
        }
    }

    /// Writes what it can of `q` in one vectored write (see [`Out::try_write_now`]). The
    /// buffer list is as long as the queue needs: a pump to each of a thousand subscribers
    /// usually writes one event, a burst to one subscriber hundreds.
    fn write_queue(&self, q: &Queue) -> Option<usize> {
        self.write_offered(q).map(|(written, _)| written)
    }

    /// [`Out::write_queue`], also saying how many bytes the write offered (the socket is
    /// full when it took fewer).
    fn write_offered(&self, q: &Queue) -> Option<(usize, usize)> {
        fn offered(iov: &[IoSlice<'_>]) -> usize {
            iov.iter().map(|b| b.len()).sum()
        }
        if q.segs.len() <= SMALL_IOV {
            let mut iov = [IoSlice::new(&[]); SMALL_IOV];
            let n = q.slices(&mut iov);
            let w = self.try_write_now(&iov[..n])?;
            Some((w, offered(&iov[..n])))
        } else {
            let mut iov = [IoSlice::new(&[]); MAX_IOV];
            let n = q.slices(&mut iov);
            let w = self.try_write_now(&iov[..n])?;
            Some((w, offered(&iov[..n])))
        }
    }

    /// Queues `bytes` (whole lines) behind what is queued, writing at once when possible.
    pub fn send(self: &Rc<Self>, hub: &Rc<Hub>, bytes: &[u8]) {
        if self.dead.get() || bytes.is_empty() {
            return;
        }
        if self.flushing.get() {
            self.queue.borrow_mut().push(Bytes::copy_from_slice(bytes));
            return;
        }
        let Some(n) = self.try_write_now(&[IoSlice::new(bytes)]) else {
            return self.die();
        };
        if n < bytes.len() {
            self.start_queue();
            self.queue
                .borrow_mut()
                .push(Bytes::copy_from_slice(&bytes[n..]));
            self.start_flusher(hub);
        }
    }

    fn start_queue(&self) {
        if self.queue.borrow().is_empty() {
            self.progress.set(Instant::now());
        }
    }

    /// New events are in the ring: write them now, or leave them to the flusher.
    pub fn pump(self: &Rc<Self>, hub: &Rc<Hub>) {
        if self.dead.get() || self.flushing.get() || !self.has_subs() {
            return;
        }
        if self.pump_lone(hub) {
            return;
        }
        PUMP.with(|q| {
            let mut q = q.borrow_mut();
            let more = self.render_events(hub, &mut q);
            if q.is_empty() {
                return;
            }
            let written = self.write_queue(&q);
            let Some(n) = written else {
                q.clear_keep();
                return self.die();
            };
            q.advance(n);
            if !q.is_empty() || more {
                // What the socket did not take waits here (only its buffer handles).
                let rest = Queue {
                    segs: q.segs.drain(..).collect(),
                    offset: q.offset,
                    len: q.len,
                };
                q.clear_keep();
                drop(q);
                self.leave_to_flusher(hub, rest);
            }
        })
    }

    /// `rest`, what a direct write left (or nothing, when more events wait), becomes the
    /// queue, and the flusher takes over writing.
    fn leave_to_flusher(self: &Rc<Self>, hub: &Rc<Hub>, rest: Queue) {
        self.start_queue();
        *self.queue.borrow_mut() = rest;
        self.start_flusher(hub);
    }

    /// The common case of a pump to many subscribers, one event each: one subscription,
    /// and the newest event is its only one waiting. It is written straight from the
    /// ring (the subscription's head and the event's body, no buffer handles taken), and
    /// only what the socket did not take is queued. False when the case does not apply
    /// (nothing was done).
    fn pump_lone(self: &Rc<Self>, hub: &Rc<Hub>) -> bool {
        let ring = hub.ring();
        let mut subs = self.subs.borrow_mut();
        let [sub] = subs.as_mut_slice() else {
            return false;
        };
        if sub.cursor.next != ring.last_seq() {
            return false;
        }
        let mut next = sub.cursor.next;
        let Step::Deliver(e) = ring.step(&mut next, &sub.cursor.filter, hub.lag_limit()) else {
            return false;
        };
        sub.cursor.next = next;
        let (head, body) = (&sub.head, &e.body);
        let Some(n) = self.try_write_now(&[IoSlice::new(head), IoSlice::new(body)]) else {
            drop((subs, ring));
            self.die();
            return true;
        };
        if n == head.len() + body.len() {
            return true;
        }
        // The rest waits for the flusher, as the general path leaves it.
        let mut rest = Queue::default();
        rest.push(head.clone());
        rest.push(body.clone());
        rest.advance(n);
        drop((subs, ring));
        self.leave_to_flusher(hub, rest);
        true
    }

    /// Puts the next events of this connection's subscriptions into `q`, in seq order,
    /// up to [`WRITE_BATCH`] bytes or [`WRITE_EVENTS`] events; true when more remain.
    fn render_events(&self, hub: &Hub, q: &mut Queue) -> bool {
        let ring = hub.ring();
        let lag = hub.lag_limit();
        let mut subs = self.subs.borrow_mut();
        let mut events = 0;
        loop {
            if q.len >= WRITE_BATCH || events >= WRITE_EVENTS {
                return true;
            }
            // The subscription whose next step has the lowest seq goes first (one
            // subscription, the usual case, simply goes).
            let i = if subs.len() == 1 {
                0
            } else {
                let mut best: Option<(usize, u64)> = None;
                for (i, sub) in subs.iter().enumerate() {
                    let mut n = sub.cursor.next;
                    let seq = match ring.step(&mut n, &sub.cursor.filter, lag) {
                        Step::Idle => continue,
                        Step::Deliver(e) => e.seq,
                        Step::Lost { to, .. } => to,
                    };
                    if best.is_none_or(|(_, s)| seq < s) {
                        best = Some((i, seq));
                    }
                }
                let Some((i, _)) = best else {
                    return false;
                };
                i
            };
            let sub = &mut subs[i];
            let step = ring.next(&mut sub.cursor, lag);
            match step {
                Step::Deliver(e) => {
                    q.push(sub.head.clone());
                    q.push(e.body.clone());
                }
                Step::Lost { from, to } => {
                    tracing::debug!(
                        subscription = sub.id,
                        from,
                        to,
                        "subscriber lagging: events lost"
                    );
                    q.push(sub.head.clone());
                    q.push(hub.render_lost(from, to));
                }
                // Only a lone subscription gets here with nothing waiting.
                Step::Idle => return false,
            }
            events += 1;
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

    /// Writes the queue as the socket takes it, pulling new events when it is empty; ends
    /// when nothing is left. It starts when the socket did not take everything, so it
    /// waits for writability first, and again after every write the socket did not take
    /// whole; a write that went out whole is followed by the next at once.
    async fn flush(self: Rc<Self>, hub: Rc<Hub>) {
        // Writability is watched only while this runs (see [`super::conn`]).
        let wait = match self.stream.write_wait() {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!("cannot wait for an API client's socket: {e}");
                self.die();
                self.flushing.set(false);
                self.drained.notify_waiters();
                return;
            }
        };
        let mut full = true;
        loop {
            if self.dead.get() {
                break;
            }
            if self.pending() == 0 {
                let mut q = self.queue.borrow_mut();
                self.render_events(&hub, &mut q);
                if q.is_empty() {
                    // Caught up: the memory goes back.
                    q.clear();
                    break;
                }
            }
            if full {
                if wait.writable().await.is_err() {
                    self.die();
                    break;
                }
            } else {
                // A long backlog that the socket keeps taking still lets other tasks run.
                tokio::task::coop::consume_budget().await;
            }
            if self.dead.get() {
                break;
            }
            let written = self.write_offered(&self.queue.borrow());
            match written {
                Some((n, offered)) => {
                    if n > 0 {
                        // Only a queue that waits needs the clock (see `stalled_for`).
                        self.progress.set(Instant::now());
                    }
                    self.queue.borrow_mut().advance(n);
                    full = n < offered;
                }
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
        let mut head = Vec::with_capacity(72);
        head.extend_from_slice(
            b"{\"jsonrpc\":\"2.0\",\"method\":\"event\",\"params\":{\"subscription\":",
        );
        head.extend_from_slice(itoa::Buffer::new().format(id).as_bytes());
        self.subs.borrow_mut().push(Sub {
            id,
            cursor,
            head: Bytes::from(head),
        });
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
            let _ = self.stream.shutdown(std::net::Shutdown::Both);
        }
        self.die();
    }

    /// Shuts down the writing side once everything is written.
    pub async fn finish(&self) {
        self.drained().await;
        // The read half is ours too; a shutdown of the write direction tells the peer we
        // are done.
        if !self.dead.get() {
            let _ = self.stream.shutdown(std::net::Shutdown::Write);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_advances_across_shared_buffers() {
        let mut q = Queue::default();
        q.push(Bytes::from_static(b"abc"));
        q.push(Bytes::from_static(b""));
        q.push(Bytes::from_static(b"defg"));
        assert_eq!(q.len, 7);
        q.advance(2);
        let mut iov = [IoSlice::new(&[]); MAX_IOV];
        let n = q.slices(&mut iov);
        let got: Vec<u8> = iov[..n].iter().flat_map(|s| s.to_vec()).collect();
        assert_eq!(got, b"cdefg");
        q.advance(3);
        assert_eq!((q.len, q.segs.len(), q.offset), (2, 1, 2));
        q.advance(2);
        assert!(q.is_empty() && q.segs.is_empty());
    }
}
