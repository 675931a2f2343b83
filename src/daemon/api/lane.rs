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
//! the peer has sent nothing for [`IDLE`] (the loop's idle limit then runs from the last
//! request), when the `[api]` settings change, and when the socket does not take a reply
//! at once (the rest of the reply goes back with it). So requests are answered in order,
//! nothing read is lost, and every other rule (access, limits, back-pressure, idle
//! timeout, half-close) stays the loop's. At most [`MAX_LANES`] connections are lent at
//! once. When the daemon stops, the connection's reading side is shut down, which ends
//! the thread.

use std::io::{self, Read};
use std::os::unix::net::UnixStream as StdStream;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::codes::LoginStatus;
use crate::proto::api::LoginStatusResult;
use crate::proto::rpc::{self, Id, Incoming, Line};

/// Plain `getLoginStatus` requests in a row after which a connection is lent.
pub const LEND_AFTER: u32 = 32;

/// A lent connection that sends nothing for this long goes back to the loop.
pub const IDLE: Duration = Duration::from_secs(1);

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
}

impl Shared {
    /// Shared state reading the login status from `status`.
    pub fn new(status: Arc<AtomicU8>) -> Arc<Shared> {
        Arc::new(Shared {
            status,
            generation: AtomicU64::new(0),
            active: AtomicUsize::new(0),
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

/// Ends a lane when the loop's side is dropped (the daemon stops): the reading side is shut
/// down, the thread's `read` returns, and the thread closes the connection.
struct Lent {
    ender: Option<StdStream>,
    /// The connection, when the thread gives it back.
    back: tokio::sync::oneshot::Receiver<Back>,
}

impl Drop for Lent {
    fn drop(&mut self) {
        if let Some(s) = self.ender.take() {
            let _ = s.shutdown(std::net::Shutdown::Read);
        }
    }
}

impl Lent {
    /// The thread gave the connection back: nothing to end.
    fn returned(mut self) {
        self.ender = None;
    }
}

/// Lends `stream` to a thread of its own, if one of the [`MAX_LANES`] is free; else gives
/// the stream back at once.
fn lend(shared: &Arc<Shared>, stream: StdStream, max_line: usize) -> Result<Lent, StdStream> {
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
    let generation = shared.generation.load(Ordering::Acquire);
    // The stream goes over a channel: if the thread does not start, the channel's
    // receiver is dropped with it and the send hands the stream back.
    let (give, take) = std::sync::mpsc::sync_channel::<StdStream>(1);
    let thread_shared = shared.clone();
    let spawned = std::thread::Builder::new()
        .name("imlink-lane".into())
        .stack_size(STACK_BYTES)
        .spawn(move || {
            if let Ok(stream) = take.recv() {
                let back = serve(&thread_shared, stream, generation, max_line);
                thread_shared.active.fetch_sub(1, Ordering::AcqRel);
                // The loop is gone when this fails (the daemon stopped): the stream
                // closes here.
                let _ = tx.send(back);
            } else {
                thread_shared.active.fetch_sub(1, Ordering::AcqRel);
            }
        });
    if let Err(e) = &spawned {
        tracing::debug!("cannot start a thread for an API connection: {e}");
    }
    match give.send(stream) {
        Ok(()) => Ok(Lent {
            ender: Some(ender),
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

/// Lends `stream` to a thread and waits for it to come back (at once when no thread is
/// free). None when the thread ended without giving it back (it panicked): the
/// connection is gone with it.
pub async fn away(shared: &Arc<Shared>, stream: StdStream, max_line: usize) -> Option<Back> {
    match lend(shared, stream, max_line) {
        Ok(mut lent) => {
            let back = (&mut lent.back).await.ok()?;
            lent.returned();
            Some(back)
        }
        Err(stream) => Some(Back {
            stream,
            unread: Vec::new(),
            unwritten: Vec::new(),
            last_request: Instant::now(),
        }),
    }
}

/// The thread's work: answers plain `getLoginStatus` lines until something else comes.
fn serve(shared: &Shared, mut stream: StdStream, generation: u64, max_line: usize) -> Back {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut reply: Vec<u8> = Vec::with_capacity(256);
    let mut chunk = [0u8; 4096];
    let mut last_request = Instant::now();
    let why = match stream
        .set_nonblocking(false)
        .and_then(|()| stream.set_read_timeout(Some(IDLE)))
    {
        Err(_) => "the socket cannot block",
        Ok(()) => loop {
            // Answer every complete line; stop at the first one that is not for us.
            let mut start = 0;
            let mut why = None;
            while let Some(i) = memchr::memchr(b'\n', &buf[start..]) {
                let line = &buf[start..start + i];
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if shared.generation.load(Ordering::Acquire) != generation {
                    why = Some("the settings changed");
                } else if line.len() > max_line || !answer(shared, line, &mut reply) {
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
            if buf.len() > max_line {
                break "a long line";
            }
            match stream.read(&mut chunk) {
                Ok(0) => break "the end of input",
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    last_request = Instant::now();
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    break "nothing came for a second";
                }
                Err(_) => break "a read failed",
            }
        },
    };
    tracing::debug!("a lent API connection goes back to the event loop: {why}");
    let _ = stream.set_read_timeout(None);
    Back {
        stream,
        unread: buf,
        unwritten: reply,
        last_request,
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
