//! A thread of its own for a connection that keeps asking `getLoginStatus`.
//!
//! On the event loop every request costs the loop's turn: `epoll_wait`, the reactor's
//! dispatch, the task's poll, the timer wheel on each park. For a client that polls the
//! login status in a loop that is most of the work per request. Such a connection is lent
//! to a thread that blocks in `read(2)` on it and answers each `getLoginStatus` from the
//! hub's status word, the same bytes the loop would write.
//!
//! The loop lends a connection only when nothing else is going on with it: the last
//! [`LEND_AFTER`] requests were all plain `getLoginStatus` calls the peer may make, it has
//! no subscription, no request in flight, nothing waiting to be written and no partial
//! line. The thread gives it back ([`Back`]) on the first line that is anything else
//! (with that line and everything after it unread), at end of input or on an error, when
//! the `[api]` settings change, and when the socket does not take a reply at once (the
//! rest of the reply goes back with it). So requests are answered in order, nothing read
//! is lost, and every other rule (access, limits, back-pressure, half-close) stays the
//! loop's. The idle limit stays the loop's too: the loop's side of a lent connection
//! ([`away`]) watches the time of its last request and closes it at `api.idle_timeout_ms`
//! after it. The thread's `read` has no timeout of its own: arming a timer for each wait
//! costs more than the rest of the request on a virtual machine (BENCHMARKS.md, "A thread
//! for a poller"). At most [`MAX_LANES`] connections are lent at once. When the daemon
//! stops, the connection's reading side is shut down, which ends the thread.

use std::io::{self, Read};
use std::os::unix::net::UnixStream as StdStream;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::line::strip_cr;
use crate::codes::LoginStatus;
use crate::proto::api::LoginStatusResult;
use crate::proto::rpc::{self, Id, Incoming, Line};

/// Plain `getLoginStatus` requests in a row after which a connection is lent.
pub const LEND_AFTER: u32 = 32;

/// How often the loop's side of a lent connection looks at its idle time (and so takes
/// up a reloaded `api.idle_timeout_ms`), at most.
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// Connections lent at once, at most.
pub const MAX_LANES: usize = 64;

/// The stack of a lane's thread: a line, a reply and the reader's frames.
const STACK_BYTES: usize = 128 * 1024;

/// What the loop and the lanes share.
pub struct Shared {
    /// The hub's login status, as its number (see [`crate::daemon::hub::Hub::status_word`]).
    status: Arc<AtomicU8>,
    /// Bumped whenever `[api]` changes: a lane gives its connection back at the next line.
    generation: AtomicU64,
    /// Threads running.
    active: AtomicUsize,
    /// What the lanes' request times count from.
    epoch: Instant,
}

impl Shared {
    /// Shared state reading the login status from `status`.
    pub fn new(status: Arc<AtomicU8>) -> Arc<Shared> {
        Arc::new(Shared {
            status,
            generation: AtomicU64::new(0),
            active: AtomicUsize::new(0),
            epoch: Instant::now(),
        })
    }

    /// The `[api]` settings changed.
    pub fn settings_changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Connections lent now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    fn status(&self) -> Option<LoginStatus> {
        LoginStatus::try_from(self.status.load(Ordering::Acquire)).ok()
    }

    fn stamp(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    fn instant(&self, stamp: u64) -> Instant {
        self.epoch + Duration::from_nanos(stamp)
    }
}

/// True when `inc` is a `getLoginStatus` call a lane answers: with an id, and no params
/// or empty ones (`{}`, `[]`).
pub fn is_plain_status(inc: &Incoming<'_>) -> bool {
    inc.id.is_some()
        && inc.method == "getLoginStatus"
        && inc.params.is_none_or(|p| matches!(p.get(), "{}" | "[]"))
}

/// A connection given back to the loop.
pub struct Back {
    /// The socket (blocking again is the loop's business: it sets it non-blocking).
    pub stream: StdStream,
    /// Input read and not answered, from the start of the first line not answered.
    pub unread: Vec<u8>,
    /// Reply bytes the socket did not take.
    pub unwritten: Vec<u8>,
    /// When the last request was read.
    pub last_request: Instant,
}

/// What became of a lent connection.
pub enum Away {
    /// It is back, to be served on the loop.
    Back(Back),
    /// It is closed: idle for `api.idle_timeout_ms`, or its thread failed.
    Closed,
}

/// The loop's side of a lent connection.
struct Lent {
    /// A second descriptor of the socket, to end the thread with a shutdown.
    ender: Option<StdStream>,
    /// When the thread read the last request ([`Shared::stamp`]).
    last: Arc<AtomicU64>,
    /// The connection, when the thread gives it back.
    back: tokio::sync::oneshot::Receiver<Back>,
}

/// Dropped while lent (the daemon stops): the reading side is shut down, the thread's
/// `read` returns, and the thread closes the connection.
impl Drop for Lent {
    fn drop(&mut self) {
        if let Some(s) = self.ender.take() {
            let _ = s.shutdown(std::net::Shutdown::Read);
        }
    }
}

/// Lends `stream`, whose last request was read at `last_request`, to a thread of its own,
/// if one of the [`MAX_LANES`] is free; else gives the stream back at once.
fn lend(
    shared: &Arc<Shared>,
    stream: StdStream,
    max_line: usize,
    last_request: Instant,
) -> Result<Lent, StdStream> {
    let taken = shared
        .active
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < MAX_LANES).then_some(n + 1)
        })
        .is_ok();
    if !taken {
        return Err(stream);
    }
    let ender = match stream.try_clone() {
        Ok(e) => e,
        Err(e) => {
            tracing::debug!("cannot lend an API connection: {e}");
            shared.active.fetch_sub(1, Ordering::AcqRel);
            return Err(stream);
        }
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let last = Arc::new(AtomicU64::new(shared.stamp(last_request)));
    let lane = Lane {
        shared: shared.clone(),
        generation: shared.generation.load(Ordering::Acquire),
        max_line,
        last: last.clone(),
    };
    // The stream goes over a channel: if the thread does not start, the channel's
    // receiver is dropped with it and the send hands the stream back.
    let (give, take) = std::sync::mpsc::sync_channel::<StdStream>(1);
    let spawned = std::thread::Builder::new()
        .name("imlink-lane".into())
        .stack_size(STACK_BYTES)
        .spawn(move || {
            if let Ok(stream) = take.recv() {
                let back = lane.serve(stream);
                lane.shared.active.fetch_sub(1, Ordering::AcqRel);
                // The loop is gone when this fails (the daemon stopped): the stream
                // closes here.
                let _ = tx.send(back);
            } else {
                lane.shared.active.fetch_sub(1, Ordering::AcqRel);
            }
        });
    if let Err(e) = &spawned {
        tracing::debug!("cannot start a thread for an API connection: {e}");
    }
    match give.send(stream) {
        Ok(()) => Ok(Lent {
            ender: Some(ender),
            last,
            back: rx,
        }),
        Err(std::sync::mpsc::SendError(stream)) => {
            if spawned.is_err() {
                shared.active.fetch_sub(1, Ordering::AcqRel);
            }
            Err(stream)
        }
    }
}

/// Lends `stream` (its last request read at `last_request`) to a thread and waits for it
/// to come back — at once when no thread is free. Meanwhile, closes it when it has sent
/// nothing for `idle_limit()` (read again at least every [`LOOK_EVERY`], so a reload
/// counts).
pub async fn away(
    shared: &Arc<Shared>,
    stream: StdStream,
    max_line: usize,
    last_request: Instant,
    idle_limit: impl Fn() -> Duration,
) -> Away {
    let mut lent = match lend(shared, stream, max_line, last_request) {
        Ok(lent) => lent,
        Err(stream) => {
            return Away::Back(Back {
                stream,
                unread: Vec::new(),
                unwritten: Vec::new(),
                last_request,
            })
        }
    };
    loop {
        let limit = idle_limit();
        let deadline = shared.instant(lent.last.load(Ordering::Acquire)) + limit;
        let now = Instant::now();
        if now >= deadline {
            tracing::debug!(
                "closing an API connection idle for {} ms",
                limit.as_millis()
            );
            if let Some(s) = lent.ender.take() {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
            // The thread sees the end of input and gives the socket back, to be closed.
            let _ = (&mut lent.back).await;
            return Away::Closed;
        }
        let look = deadline.min(now + LOOK_EVERY);
        tokio::select! {
            back = &mut lent.back => {
                lent.ender = None;
                // An error: the thread ended without giving the socket back (it
                // panicked), and the connection is gone with it.
                return back.map_or(Away::Closed, Away::Back);
            }
            () = tokio::time::sleep_until(look.into()) => {}
        }
    }
}

/// A lent connection's thread.
struct Lane {
    shared: Arc<Shared>,
    /// [`Shared::generation`] when lent.
    generation: u64,
    max_line: usize,
    last: Arc<AtomicU64>,
}

impl Lane {
    /// Answers plain `getLoginStatus` lines until something else comes.
    fn serve(&self, mut stream: StdStream) -> Back {
        let mut buf: Vec<u8> = Vec::with_capacity(4096);
        let mut reply: Vec<u8> = Vec::with_capacity(256);
        let mut chunk = [0u8; 4096];
        let mut last_request = self.shared.instant(self.last.load(Ordering::Acquire));
        let why = match stream.set_nonblocking(false) {
            Err(_) => "the socket cannot block",
            Ok(()) => loop {
                // Answer every complete line; stop at the first one that is not for us.
                let mut start = 0;
                let mut why = None;
                while let Some(i) = memchr::memchr(b'\n', &buf[start..]) {
                    // The limit counts a final `\r`, as `Lines` does.
                    let line = &buf[start..start + i];
                    if self.shared.generation.load(Ordering::Acquire) != self.generation {
                        why = Some("the settings changed");
                    } else if line.len() > self.max_line
                        || !answer(&self.shared, strip_cr(line), &mut reply)
                    {
                        why = Some("a request other than a plain getLoginStatus");
                    }
                    if why.is_some() {
                        break;
                    }
                    start += i + 1;
                }
                buf.drain(..start);
                if !reply.is_empty() {
                    match send_now(&stream, &reply) {
                        Ok(n) => {
                            reply.drain(..n);
                            if !reply.is_empty() {
                                why = why.or(Some("the socket is full"));
                            }
                        }
                        Err(_) => why = Some("a write failed"),
                    }
                }
                if let Some(why) = why {
                    break why;
                }
                if buf.len() > self.max_line {
                    break "a long line";
                }
                match stream.read(&mut chunk) {
                    Ok(0) => break "the end of input",
                    Ok(n) => {
                        buf.extend_from_slice(&chunk[..n]);
                        last_request = Instant::now();
                        self.last
                            .store(self.shared.stamp(last_request), Ordering::Release);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break "a read failed",
                }
            },
        };
        tracing::debug!("a lent API connection goes back to the event loop: {why}");
        Back {
            stream,
            unread: buf,
            unwritten: reply,
            last_request,
        }
    }
}

/// Writes what the socket takes now, without waiting.
fn send_now(stream: &StdStream, bytes: &[u8]) -> io::Result<usize> {
    loop {
        match socket2::SockRef::from(stream).send_with_flags(bytes, libc::MSG_DONTWAIT) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
            r => return r,
        }
    }
}

/// Appends the reply to `line` to `reply` when it is a plain `getLoginStatus` (or skips a
/// blank line); false for anything else, with nothing appended.
fn answer(shared: &Shared, line: &[u8], reply: &mut Vec<u8>) -> bool {
    if line.iter().all(u8::is_ascii_whitespace) {
        return true;
    }
    let Ok(text) = std::str::from_utf8(line) else {
        return false;
    };
    let Ok(Line::One(Ok(inc))) = rpc::read_line(text) else {
        return false;
    };
    if !is_plain_status(&inc) {
        return false;
    }
    let (Some(id), Some(status)) = (inc.id, shared.status()) else {
        return false;
    };
    write_reply(reply, &id, status);
    true
}

fn write_reply(reply: &mut Vec<u8>, id: &Id, status: LoginStatus) {
    rpc::write_result(reply, id, &LoginStatusResult { status });
    reply.push(b'\n');
}
