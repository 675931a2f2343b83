//! An API connection's socket, watched for reading only.
//!
//! A Unix stream socket tells everyone polling it for writability each time its peer reads
//! (the kernel's write-space wake-up has no "was full" condition, unlike TCP's). A socket
//! registered for both directions therefore woke the daemon once for every read a
//! subscriber made: one extra wake-up and event-loop turn per event delivered, with nothing
//! to do. So the connection is registered for reading only, and writes go straight to the
//! non-blocking socket. Only a writer whose bytes the socket did not take waits for
//! writability, through a [`WriteWait`]: a second registration of the same socket (a
//! duplicate descriptor, so the two interests are separate), held while its queue drains.

use std::io::{self, IoSlice};
use std::os::unix::net::UnixStream as StdStream;
use tokio::io::unix::{AsyncFd, AsyncFdReadyGuard};
use tokio::io::Interest;

/// Registers `s` with the event loop for `interest` only.
#[allow(unsafe_code)]
fn register(s: StdStream, interest: Interest) -> io::Result<AsyncFd<StdStream>> {
    // SAFETY: a `UnixStream` owns its descriptor: it stays open, and is the one
    // `as_raw_fd` returns, for as long as the stream lives, and the `AsyncFd` owns the
    // stream until it is dropped.
    unsafe { AsyncFd::register_with_interest(s, interest) }.map_err(|e| e.into_parts().1)
}

/// Buffers to one socket that together hold at most this many bytes are sent as one.
pub const GATHER_BYTES: usize = 4096;

thread_local! {
    /// Where [`ConnSocket::try_write_vectored`] gathers a short write.
    static GATHER: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(Vec::with_capacity(GATHER_BYTES));
}

/// The socket of one API connection (see the module doc).
pub struct ConnSocket {
    io: AsyncFd<StdStream>,
}

/// Read readiness, as [`ConnSocket::readable`] gives it.
pub type ReadReady<'a> = AsyncFdReadyGuard<'a, StdStream>;

impl ConnSocket {
    /// Takes over an accepted connection (it leaves tokio's registration and gets its own,
    /// for reading; `into_std` keeps it non-blocking).
    pub fn new(stream: tokio::net::UnixStream) -> io::Result<ConnSocket> {
        let std = stream.into_std()?;
        Ok(ConnSocket {
            io: register(std, Interest::READABLE)?,
        })
    }

    /// Takes back a connection from a blocking user (`api::lane`): non-blocking again,
    /// registered for reading.
    pub fn from_std(std: StdStream) -> io::Result<ConnSocket> {
        std.set_nonblocking(true)?;
        Ok(ConnSocket {
            io: register(std, Interest::READABLE)?,
        })
    }

    /// Leaves the event loop: the registration ends and the socket is the caller's.
    pub fn into_std(self) -> StdStream {
        self.io.into_inner()
    }

    /// Resolves when there may be something to read (or the peer closed).
    pub async fn readable(&self) -> io::Result<ReadReady<'_>> {
        self.io.readable().await
    }

    /// Reads into `buf` under `ready`; a `WouldBlock` from `f` clears the readiness (the
    /// next edge announces new data), anything else is returned as is.
    pub fn read_with(
        ready: &mut ReadReady<'_>,
        f: impl FnOnce(&mut &StdStream) -> io::Result<usize>,
    ) -> io::Result<usize> {
        match ready.try_io(|s| f(&mut s.get_ref())) {
            Ok(r) => r,
            Err(_would_block) => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    /// Writes what the socket takes now, without waiting: `send(2)`, which goes to the
    /// socket directly where `write(2)` passes through the file layer first.
    pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        socket2::SockRef::from(self.io.get_ref()).send(buf)
    }

    /// [`ConnSocket::try_write`] of several buffers in one system call. Buffers that
    /// together fit [`GATHER_BYTES`] (an event to one subscriber: its head and its body)
    /// are copied into one and sent as one; a copy of a few hundred bytes costs less
    /// than the kernel's handling of a buffer list.
    pub fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let total = bufs.iter().map(|b| b.len()).sum::<usize>();
        if total <= GATHER_BYTES {
            return GATHER.with(|g| {
                let mut g = g.borrow_mut();
                g.clear();
                for b in bufs {
                    g.extend_from_slice(b);
                }
                self.try_write(&g)
            });
        }
        socket2::SockRef::from(self.io.get_ref()).send_vectored(bufs)
    }

    /// A waiter for writability, for as long as something is queued.
    pub fn write_wait(&self) -> io::Result<WriteWait> {
        let dup = self.io.get_ref().try_clone()?;
        Ok(WriteWait {
            io: register(dup, Interest::WRITABLE)?,
        })
    }

    /// Shuts the socket down in direction `how`.
    pub fn shutdown(&self, how: std::net::Shutdown) -> io::Result<()> {
        self.io.get_ref().shutdown(how)
    }
}

/// Writability of a [`ConnSocket`] (see [`ConnSocket::write_wait`]).
pub struct WriteWait {
    io: AsyncFd<StdStream>,
}

impl WriteWait {
    /// Resolves when the socket may take more (or is shut down or broken). Each call waits
    /// for a new edge after the previous one resolved: the caller writes after each, and a
    /// write that fills the socket again is followed by the next edge when the peer reads.
    pub async fn writable(&self) -> io::Result<()> {
        let mut g = self.io.writable().await?;
        g.clear_ready();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[tokio::test(flavor = "current_thread")]
    async fn a_full_socket_is_waited_for_and_reads_clear_readiness() {
        let (a, b) = tokio::net::UnixStream::pair().unwrap();
        let a = ConnSocket::new(a).unwrap();
        let b = ConnSocket::new(b).unwrap();
        // Fill a → b until the socket takes nothing more.
        let chunk = vec![7u8; 64 * 1024];
        let mut sent = 0usize;
        loop {
            match a.try_write(&chunk) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("write: {e}"),
            }
        }
        assert!(sent > 0);
        let wait = a.write_wait().unwrap();
        // The reader takes everything; the writer's wait then resolves.
        let mut got = 0usize;
        let mut buf = vec![0u8; 64 * 1024];
        let deadline = std::time::Duration::from_secs(10);
        while got < sent {
            let mut ready = tokio::time::timeout(deadline, b.readable())
                .await
                .expect("readable within 10 s")
                .unwrap();
            match ConnSocket::read_with(&mut ready, |s| s.read(&mut buf)) {
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("read: {e}"),
            }
        }
        assert_eq!(got, sent);
        tokio::time::timeout(deadline, wait.writable())
            .await
            .expect("writable within 10 s once the peer read")
            .unwrap();
        assert!(a.try_write(b"x").unwrap() == 1);
        // An empty socket: the read says "would block" and the readiness is cleared, so
        // the next wait is for new data.
        let mut ready = b.readable().await.unwrap();
        let mut one = [0u8; 8];
        assert_eq!(
            ConnSocket::read_with(&mut ready, |s| s.read(&mut one)).unwrap(),
            1
        );
        let e = ConnSocket::read_with(&mut ready, |s| s.read(&mut one)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        drop(ready);
        tokio::select! {
            biased;
            _ = b.readable() => panic!("no readiness without new data"),
            () = std::future::ready(()) => {}
        }
        // A shutdown wakes a writer waiting on a full socket.
        while a.try_write(&chunk).is_ok() {}
        let wait = a.write_wait().unwrap();
        a.shutdown(std::net::Shutdown::Both).unwrap();
        tokio::time::timeout(deadline, wait.writable())
            .await
            .expect("a shut-down socket wakes its writer")
            .unwrap();
        assert!(a.try_write(b"x").is_err());
    }
}
