//! The bridge as a child process, seen by the link as a typed channel, never a pipe.
//!
//! [`spawn`] starts `NODE --jitless index.js` in the bridge's directory and hands back a
//! [`Bridge`]: one task owns its stdin and writes the lines it is given; one reads its
//! stdout into [`Inbound`] items (at most [`MAX_LINE_BYTES`] a line: a longer one is
//! reported and skipped, a line that is not protocol is reported as such); one reads its
//! stderr line by line into the log at debug level, tickets removed ([`Secrets`]); one
//! waits for the process to end, which arrives as the last item, [`Inbound::Exited`].
//!
//! `--jitless` keeps V8 from asking for memory that is writable and executable, which
//! the hardened systemd units forbid (`MemoryDenyWriteExecute=yes`); docs/tencent.md
//! has the measured cost.

use futures_util::stream::LocalBoxStream;
use futures_util::FutureExt;
use std::cell::RefCell;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::rc::Rc;
use std::time::Duration;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot};

use super::redact::Secrets;
use crate::proto::bridge::{parse_line, FromBridge, MAX_LINE_BYTES};

/// The longest stderr line logged, in characters (the bridge cuts its own at 8 KiB).
pub const MAX_LOG_CHARS: usize = 2000;

/// The flags node runs with, before the script.
pub const NODE_FLAGS: &[&str] = &["--jitless"];

/// What the link reads from the bridge, in order.
#[derive(Debug)]
pub enum Inbound {
    /// A protocol line.
    Line(FromBridge),
    /// A line that is not valid protocol: serde's reason (hostile text).
    Invalid(String),
    /// A line longer than [`MAX_LINE_BYTES`], skipped; how many bytes it had.
    TooLong(usize),
    /// The process ended (always the last item).
    Exited(Exit),
}

/// How the process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    /// Its exit code, when it exited.
    pub code: Option<i32>,
    /// What happened, for messages.
    pub desc: String,
}

impl Exit {
    fn from_status(s: std::io::Result<ExitStatus>) -> Exit {
        use std::os::unix::process::ExitStatusExt;
        match s {
            Ok(s) => Exit {
                code: s.code(),
                desc: match (s.code(), s.signal()) {
                    (Some(c), _) => format!("exit status {c}"),
                    (None, Some(sig)) => format!("killed by signal {sig}"),
                    _ => "ended".to_owned(),
                },
            },
            Err(e) => Exit {
                code: None,
                desc: format!("cannot wait for it: {e}"),
            },
        }
    }
}

/// A running bridge.
pub struct Bridge {
    /// Its process id.
    pub pid: Option<u32>,
    lines: Option<mpsc::UnboundedSender<String>>,
    kill: Option<oneshot::Sender<()>>,
    exited: Option<oneshot::Receiver<()>>,
}

impl Bridge {
    /// Queues one line (without its newline); false when the writer is gone.
    pub fn send(&self, line: String) -> bool {
        self.lines.as_ref().is_some_and(|l| l.send(line).is_ok())
    }

    /// Ends it now (SIGKILL).
    pub fn kill(mut self) {
        if let Some(k) = self.kill.take() {
            let _ = k.send(());
        }
    }

    /// Ends it cleanly: closes its stdin (after whatever is queued, e.g. a `destroy`),
    /// waits up to `grace` for it to exit, then kills it. Resolves when it is gone.
    pub fn finish(mut self, grace: Duration) -> impl std::future::Future<Output = ()> {
        self.lines = None;
        let kill = self.kill.take();
        let exited = self.exited.take();
        async move {
            let clean = match exited {
                Some(rx) => tokio::time::timeout(grace, rx).await.is_ok(),
                None => true,
            };
            if !clean {
                tracing::warn!(
                    "the Tencent bridge did not exit within {} ms: killing it",
                    grace.as_millis()
                );
            }
            if let Some(k) = kill {
                let _ = k.send(());
            }
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        if let Some(k) = self.kill.take() {
            let _ = k.send(());
        }
    }
}

/// Starts the bridge: `node --jitless index.js` in `dir`. The error is the spawn's
/// (`NotFound`: no such program).
pub fn spawn(
    node: &Path,
    dir: &Path,
    secrets: Rc<RefCell<Secrets>>,
    last_err: Rc<RefCell<String>>,
) -> std::io::Result<(Bridge, LocalBoxStream<'static, Inbound>)> {
    let mut child = tokio::process::Command::new(node)
        .args(NODE_FLAGS)
        .arg("index.js")
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id();
    let (stdin, stdout, stderr) =
        match (child.stdin.take(), child.stdout.take(), child.stderr.take()) {
            (Some(i), Some(o), Some(e)) => (i, o, e),
            _ => return Err(std::io::Error::other("the bridge's pipes are missing")),
        };

    // stdin: one task owns it.
    let (line_tx, mut line_rx) = mpsc::unbounded_channel::<String>();
    tokio::task::spawn_local(async move {
        let mut stdin = stdin;
        while let Some(mut line) = line_rx.recv().await {
            line.push('\n');
            if stdin.write_all(line.as_bytes()).await.is_err() || stdin.flush().await.is_err() {
                break;
            }
        }
        // Dropping stdin: the bridge sees its end, destroys the SDK and exits.
    });

    // stderr: into the log, line by line, tickets removed.
    tokio::task::spawn_local(async move {
        let mut r = LineReader::new(BufReader::new(stderr), MAX_LINE_BYTES);
        while let Ok(Some(l)) = r.next().await {
            if let ReadLine::Line(l) = l {
                let text = String::from_utf8_lossy(&l);
                let text = secrets.borrow().scrub(&text);
                let text = crate::text::clean_to(&text, MAX_LOG_CHARS);
                tracing::debug!(target: "imlinkd::bridge", pid, "{text}");
                if !text.trim().is_empty() {
                    *last_err.borrow_mut() = text.into_owned();
                }
            }
        }
    });

    // The exit: waited for here; killing is asked through `kill`.
    let (kill_tx, kill_rx) = oneshot::channel::<()>();
    let (status_tx, status_rx) = oneshot::channel::<Exit>();
    let (exited_tx, exited_rx) = oneshot::channel::<()>();
    tokio::task::spawn_local(async move {
        let status = tokio::select! {
            s = child.wait() => s,
            _ = kill_rx => {
                let _ = child.start_kill();
                child.wait().await
            }
        };
        let _ = exited_tx.send(());
        let _ = status_tx.send(Exit::from_status(status));
    });

    // stdout: typed items; the exit comes last, after what was written before it.
    let (tx, mut rx) = mpsc::channel::<Inbound>(64);
    tokio::task::spawn_local(async move {
        let mut r = LineReader::new(BufReader::new(stdout), MAX_LINE_BYTES);
        let mut status_rx = status_rx;
        let exit = loop {
            tokio::select! {
                biased;
                l = r.next() => match l {
                    Ok(Some(l)) => {
                        if tx.send(inbound(l)).await.is_err() {
                            return;
                        }
                    }
                    // End of the pipe: the exit follows.
                    _ => break status_rx.await.unwrap_or(Exit { code: None, desc: "ended".into() }),
                },
                s = &mut status_rx => {
                    let s = s.unwrap_or(Exit { code: None, desc: "ended".into() });
                    // What it wrote before exiting is already in the pipe.
                    while let Some(Ok(Some(l))) = r.next().now_or_never() {
                        if tx.send(inbound(l)).await.is_err() {
                            return;
                        }
                    }
                    break s;
                }
            }
        };
        let _ = tx.send(Inbound::Exited(exit)).await;
    });
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    Ok((
        Bridge {
            pid,
            lines: Some(line_tx),
            kill: Some(kill_tx),
            exited: Some(exited_rx),
        },
        Box::pin(stream),
    ))
}

fn inbound(l: ReadLine) -> Inbound {
    match l {
        ReadLine::Line(bytes) => match parse_line(&bytes) {
            Ok(m) => Inbound::Line(m),
            Err(e) => Inbound::Invalid(e),
        },
        ReadLine::TooLong(n) => Inbound::TooLong(n),
    }
}

/// One line read by [`LineReader`].
#[derive(Debug, PartialEq, Eq)]
pub enum ReadLine {
    /// A line, without its newline.
    Line(Vec<u8>),
    /// A line longer than the limit, skipped: its length.
    TooLong(usize),
}

/// Reads `\n`-terminated lines of at most `max` bytes; a longer line is skipped (never
/// buffered whole) and reported. Cancel-safe: its state lives in the struct.
pub struct LineReader<R> {
    inner: R,
    max: usize,
    buf: Vec<u8>,
    skipping: Option<usize>,
}

impl<R: AsyncBufRead + Unpin> LineReader<R> {
    /// Lines of `inner`, each at most `max` bytes.
    pub fn new(inner: R, max: usize) -> LineReader<R> {
        LineReader {
            inner,
            max,
            buf: Vec::new(),
            skipping: None,
        }
    }

    /// The next line; `None` at the end (a last line without newline counts).
    pub async fn next(&mut self) -> std::io::Result<Option<ReadLine>> {
        loop {
            let avail = self.inner.fill_buf().await?;
            if avail.is_empty() {
                if let Some(n) = self.skipping.take() {
                    return Ok(Some(ReadLine::TooLong(n)));
                }
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Ok(Some(ReadLine::Line(std::mem::take(&mut self.buf))));
            }
            let (chunk, used, done) = match memchr::memchr(b'\n', avail) {
                Some(i) => (i, i + 1, true),
                None => (avail.len(), avail.len(), false),
            };
            match self.skipping.as_mut() {
                Some(n) => *n = n.saturating_add(chunk),
                None if self.buf.len() + chunk > self.max => {
                    self.skipping = Some(self.buf.len() + chunk);
                    self.buf = Vec::new();
                }
                None => self.buf.extend_from_slice(&avail[..chunk]),
            }
            self.inner.consume(used);
            if done {
                return Ok(Some(match self.skipping.take() {
                    Some(n) => ReadLine::TooLong(n),
                    None => ReadLine::Line(std::mem::take(&mut self.buf)),
                }));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_bounded_and_a_long_one_is_skipped_not_kept() {
        let mut input = b"one\n".to_vec();
        input.extend(vec![b'x'; 100]);
        input.extend(b"\ntwo\nlast");
        // A tiny buffer, so lines arrive in pieces.
        let mut r = LineReader::new(BufReader::with_capacity(7, input.as_slice()), 10);
        assert_eq!(
            r.next().await.unwrap(),
            Some(ReadLine::Line(b"one".to_vec()))
        );
        assert_eq!(r.next().await.unwrap(), Some(ReadLine::TooLong(100)));
        assert!(r.buf.capacity() <= 64, "the long line was not buffered");
        assert_eq!(
            r.next().await.unwrap(),
            Some(ReadLine::Line(b"two".to_vec()))
        );
        assert_eq!(
            r.next().await.unwrap(),
            Some(ReadLine::Line(b"last".to_vec()))
        );
        assert_eq!(r.next().await.unwrap(), None);
        let mut r = LineReader::new(BufReader::new(&b"0123456789\n01234567890"[..]), 10);
        assert_eq!(
            r.next().await.unwrap(),
            Some(ReadLine::Line(b"0123456789".to_vec()))
        );
        assert_eq!(r.next().await.unwrap(), Some(ReadLine::TooLong(11)));
    }
}
