//! Persistence of the login session: `state_dir/session.json`, mode 0600.
//!
//! # The file
//!
//! A JSON object with `instanceID` (32 lowercase hex digits, stable per installation),
//! `sdkAppID`, `userID`, `userSig` (each `null` when unknown) and `loggedIn`. It is written
//! atomically: a temp file `.session.json.tmp` created with `O_CREAT|O_EXCL|O_NOFOLLOW`
//! (mode 0600), written, fsynced, renamed over `session.json`, then the directory is
//! fsynced. A leftover temp file (a crash mid-write, or something planted) is unlinked,
//! never followed, and the create is tried again.
//!
//! # Reading it
//!
//! [`Store::open`] treats the file as hostile: it is opened with
//! `O_NOFOLLOW|O_NONBLOCK|O_CLOEXEC` (a symbolic link or a FIFO cannot redirect or hang
//! the start-up), must be a regular file owned by this user or root and at most
//! [`MAX_FILE_BYTES`] (no more than that is ever read), and every field is validated:
//! `sdkAppID` a positive integer, `userID` a valid UserID (the daemon's own rule,
//! [`valid_user_id`]), `userSig` a string of at most [`MAX_USER_SIG_BYTES`] of the ticket
//! alphabet ([`valid_user_sig`]), `loggedIn` a boolean, and all three present when
//! `loggedIn` is true. A file that fails is set aside as `session.json.bad` (renamed,
//! links not followed) and the daemon starts without a saved session; an `instanceID`
//! that is not 32 lowercase hex digits is replaced by a new one (the rest of the file is
//! kept). Messages name the path and the field, never a value: a ticket in the wrong
//! field must not reach the log.
//!
//! The state directory is created (mode 0700) when missing, and refused when it is not
//! owned by this user or root or is writable by group or others without the sticky bit
//! ([`crate::fsck::check_daemon_dir`]).
//!
//! # Writing it
//!
//! Writes happen on a dedicated thread (`imlink-store`), never on the actor thread.
//! [`Store::persist`] changes the in-memory state at once and queues it; the writer takes
//! the states in order. When several are queued it writes only the newest (the latest
//! state always wins; the file never goes back to an older one). Each call returns a
//! [`Completion`], a future that resolves once the file *and* its directory are fsynced
//! with this state or a newer one (`Ok`), or with the [`StoreError`] of the first failed
//! attempt. A failed state is retried with a backoff ([`Options`]) until a write
//! succeeds or a newer state replaces it; [`Store::health`] follows whether the file on
//! disk is current ([`Health`]). [`Store::flush`] resolves once everything queued before
//! it has been attempted (retrying a failing state once more at once), for a graceful
//! stop; [`Store::close`] does the same and ends the writer.

use serde::Serialize;
use serde_json::{Map, Value};
use std::fs::{self, OpenOptions};
use std::future::Future;
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{oneshot, watch};

use crate::core::session::Saved;
use crate::fsck;
use crate::proto::api::valid_user_id;

/// The session file's name in the state directory.
pub const FILE_NAME: &str = "session.json";
/// The temp file a write goes through.
pub const TMP_NAME: &str = ".session.json.tmp";
/// Where an invalid session file is set aside.
pub const BAD_NAME: &str = "session.json.bad";
/// The largest session file read; a larger one is set aside unread.
pub const MAX_FILE_BYTES: u64 = 64 * 1024;
/// The longest `userSig` accepted from the file: the longest `login` accepts.
pub const MAX_USER_SIG_BYTES: usize = crate::proto::api::MAX_USERSIG_BYTES;

/// Whether `s` looks like a UserSig: 1 to [`MAX_USER_SIG_BYTES`] characters of base64
/// (`A-Z a-z 0-9 + / =`) or its URL-safe form used by tickets (`* - _`).
pub fn valid_user_sig(s: &str) -> bool {
    (1..=MAX_USER_SIG_BYTES).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"*-_+/=".contains(&b))
}

/// Whether `s` is an instance id as the daemon generates them: 32 lowercase hex digits.
pub fn valid_instance_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn new_instance_id() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

/// The file's content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
struct SessionFile {
    /// Stable id of this installation, sent as `instanceid` (see docs/protocol.md).
    #[serde(rename = "instanceID")]
    instance_id: String,
    #[serde(rename = "sdkAppID")]
    sdk_app_id: Option<u64>,
    #[serde(rename = "userID")]
    user_id: Option<String>,
    user_sig: Option<String>,
    logged_in: bool,
}

// ---------------------------------------------------------------- errors and completions

/// A write of the session file that did not happen. The message names the path and the
/// system's reason, never the content (no ticket).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot write {}: {reason}", path.display())]
pub struct StoreError {
    /// The session file.
    pub path: PathBuf,
    /// Why (an I/O error's text, or "the session writer has stopped").
    pub reason: String,
}

impl StoreError {
    fn io(path: &Path, e: &io::Error) -> StoreError {
        StoreError {
            path: path.to_owned(),
            reason: e.to_string(),
        }
    }

    fn stopped(path: &Path) -> StoreError {
        StoreError {
            path: path.to_owned(),
            reason: "the session writer has stopped".into(),
        }
    }
}

/// Whether the file on disk holds the latest state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Everything persisted so far is on disk (or the writer is still on its first try).
    Durable,
    /// The latest state could not be written; the writer retries. The error is the last
    /// attempt's.
    Failing(StoreError),
}

/// Where the writer reports the outcome of one request.
enum Reply {
    Async(oneshot::Sender<Result<(), StoreError>>),
    Blocking(std_mpsc::SyncSender<Result<(), StoreError>>),
}

impl Reply {
    fn send(self, r: Result<(), StoreError>) {
        // A caller that stopped waiting is not an error.
        match self {
            Reply::Async(tx) => {
                let _ = tx.send(r);
            }
            Reply::Blocking(tx) => {
                let _ = tx.send(r);
            }
        }
    }
}

/// The outcome of a [`Store::persist`], [`Store::flush`] or [`Store::close`]: a future
/// that resolves to `Ok(())` once the state (or a newer one) is on disk, file and
/// directory fsynced, or to the error of the first failed attempt (the writer keeps
/// retrying in the background; see [`Store::health`]). Dropping it does not cancel the
/// write.
#[must_use = "a Completion says whether the state reached the disk"]
pub struct Completion {
    rx: oneshot::Receiver<Result<(), StoreError>>,
    path: PathBuf,
}

impl Future for Completion {
    type Output = Result<(), StoreError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let path = self.path.clone();
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or_else(|_| Err(StoreError::stopped(&path))))
    }
}

impl std::fmt::Debug for Completion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Completion")
            .field("path", &self.path)
            .finish()
    }
}

// ---------------------------------------------------------------- the store

/// How the writer retries a failed write, and where it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// The first wait after a failure.
    pub retry_initial: Duration,
    /// The longest wait (the wait doubles after each failure up to this).
    pub retry_max: Duration,
    /// Write on the caller's thread, at once, instead of on the writer thread (for
    /// in-process tests with a paused clock, where a real thread would let virtual time
    /// run while it writes). A failed write is then not retried until the next save.
    pub inline: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            retry_initial: Duration::from_millis(250),
            retry_max: Duration::from_secs(30),
            inline: false,
        }
    }
}

enum Msg {
    Save(SessionFile, Reply),
    Flush(Reply),
    Close(Reply),
}

/// The session store of one state directory: the current state in memory and the writer
/// thread that puts it on disk.
pub struct Store {
    /// The state directory, resolved.
    dir: PathBuf,
    file: SessionFile,
    tx: std_mpsc::Sender<Msg>,
    /// The writer, when it runs on the caller's thread ([`Options::inline`]).
    inline: Option<std::cell::RefCell<Writer>>,
    /// The writer, when it runs on tokio's blocking pool while there is work
    /// ([`Store::open_pooled`]).
    pool: Option<Arc<Mutex<Pooled>>>,
    health: watch::Receiver<Health>,
    /// Writes queued by [`Store::persist_soon`] and not yet handed to the writer.
    soon: std::cell::RefCell<Vec<Msg>>,
}

/// A pooled store's queue and its writer (None while a blocking task runs it).
struct Pooled {
    queue: Vec<Msg>,
    writer: Option<Writer>,
    closed: bool,
}

/// Runs a pooled store's writer until its queue is empty and nothing waits for a retry
/// (`retry` false: no retries at all, each state queued gets one attempt).
fn run_pooled(slot: Arc<Mutex<Pooled>>, mut writer: Writer, retry: bool) {
    loop {
        {
            let Ok(mut p) = slot.lock() else { return };
            let fresh = !p.queue.is_empty();
            for m in p.queue.drain(..) {
                writer.take(m);
            }
            let retrying = retry && writer.pending.is_some() && writer.failed;
            if !fresh && !retrying {
                if writer.closing {
                    p.closed = true;
                } else {
                    p.writer = Some(writer);
                }
                return;
            }
            if !fresh {
                drop(p);
                std::thread::sleep(writer.delay);
            }
        }
        writer.attempt();
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No field of the file: it holds the ticket.
        f.debug_struct("Store").field("dir", &self.dir).finish()
    }
}

impl Store {
    /// Opens the state directory `dir` with the default retry [`Options`]: creates it
    /// (mode 0700) when missing, checks its owner and mode, reads and validates
    /// `session.json` (see the module documentation), writes it at once when it was
    /// missing, set aside or got a new instance id, and starts the writer thread.
    ///
    /// Synchronous, for start-up. The error (one line, naming the path) is fatal: a state
    /// directory that another user controls, or that cannot be read or written.
    pub fn open(dir: &Path) -> Result<Store, String> {
        Store::open_with(dir, Options::default())
    }

    /// [`Store::open`] with explicit retry options.
    pub fn open_with(dir: &Path, options: Options) -> Result<Store, String> {
        Store::open_mode(dir, options, false)
    }

    /// [`Store::open_with`] without a thread of its own: the writer runs on tokio's
    /// blocking pool while there is something to write (one store per account, many
    /// accounts). Needs a tokio runtime for its writes.
    pub fn open_pooled(dir: &Path, options: Options) -> Result<Store, String> {
        Store::open_mode(dir, options, true)
    }

    fn open_mode(dir: &Path, options: Options, pooled: bool) -> Result<Store, String> {
        let uid = fsck::effective_uid();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("state directory {}: {e}", dir.display()))?;
        let real =
            fs::canonicalize(dir).map_err(|e| format!("state directory {}: {e}", dir.display()))?;
        fsck::check_daemon_dir(&real, uid, "state directory")?;
        let path = real.join(FILE_NAME);

        let (file, write_now) = match load(&path, uid)? {
            Loaded::Missing => (
                SessionFile {
                    instance_id: new_instance_id(),
                    ..SessionFile::default()
                },
                true,
            ),
            Loaded::Invalid { reason, instance } => {
                let bad = real.join(BAD_NAME);
                tracing::warn!(
                    "{}: {reason}; set aside as {}, starting without a saved session",
                    path.display(),
                    bad.display()
                );
                fs::rename(&path, &bad)
                    .map_err(|e| format!("cannot set aside the invalid {}: {e}", path.display()))?;
                (
                    SessionFile {
                        instance_id: instance.unwrap_or_else(new_instance_id),
                        ..SessionFile::default()
                    },
                    true,
                )
            }
            Loaded::Valid { mut file, instance } => {
                let write = match instance {
                    Instance::Valid => false,
                    Instance::Missing => {
                        tracing::info!("{}: no instanceID; a new one is made", path.display());
                        true
                    }
                    Instance::Invalid => {
                        tracing::warn!(
                            "{}: field instanceID is not 32 lowercase hex digits; replaced with a new one",
                            path.display()
                        );
                        true
                    }
                };
                if write {
                    file.instance_id = new_instance_id();
                }
                (file, write)
            }
        };
        // A pooled store (an account being added) writes with its first login, not on
        // the caller's thread.
        if write_now && !pooled {
            write_file(&real, &file).map_err(|e| e.to_string())?;
        }
        let (tx, rx) = std_mpsc::channel();
        let (health_tx, health) = watch::channel(Health::Durable);
        let writer = Writer::new(real.clone(), options, health_tx);
        let mut pool = None;
        let inline = if options.inline {
            Some(std::cell::RefCell::new(writer))
        } else if pooled {
            pool = Some(Arc::new(Mutex::new(Pooled {
                queue: Vec::new(),
                writer: Some(writer),
                closed: false,
            })));
            None
        } else {
            std::thread::Builder::new()
                .name("imlink-store".into())
                .spawn(move || writer.run(rx))
                .map_err(|e| format!("cannot start the session writer: {e}"))?;
            None
        };
        Ok(Store {
            dir: real,
            file,
            tx,
            inline,
            pool,
            health,
            soon: std::cell::RefCell::new(Vec::new()),
        })
    }

    /// The session file's path (its directory resolved).
    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    /// The userID in the file, logged in or not.
    pub fn user(&self) -> Option<String> {
        self.file.user_id.clone()
    }

    /// This installation's instance id (32 lowercase hex digits).
    pub fn instance_id(&self) -> &str {
        &self.file.instance_id
    }

    /// The saved logged-in session, if any (the in-memory state, which is the last one
    /// persisted, whether or not it has reached the disk yet).
    pub fn saved(&self) -> Option<Saved> {
        match (&self.file, self.file.logged_in) {
            (
                SessionFile {
                    sdk_app_id: Some(app_id),
                    user_id: Some(user),
                    user_sig: Some(sig),
                    ..
                },
                true,
            ) => Some(Saved {
                app_id: *app_id,
                user: user.clone(),
                sig: sig.clone(),
            }),
            _ => None,
        }
    }

    /// Makes `saved` the current state (`None`: logged out, the ticket is dropped and
    /// `loggedIn` becomes false; the app id and user stay for reference) and queues its
    /// write. Returns at once; the [`Completion`] resolves when it is on disk or the
    /// first attempt failed. Calls are written in order; the last one always wins.
    pub fn persist(&mut self, saved: Option<&Saved>) -> Completion {
        self.apply(saved);
        let (tx, rx) = oneshot::channel();
        self.send(Msg::Save(self.file.clone(), Reply::Async(tx)));
        self.completion(rx)
    }

    /// [`Store::persist`] whose write is handed to the writer at the next
    /// [`Store::release_soon`] (or before anything else is sent to it, and when the store
    /// is dropped), so that waking the writer can wait until the caller has done what is
    /// more urgent (a login's answer). The in-memory state changes at once; the order of
    /// the writes is kept.
    pub fn persist_soon(&mut self, saved: Option<&Saved>) -> Completion {
        self.apply(saved);
        let (tx, rx) = oneshot::channel();
        self.soon
            .get_mut()
            .push(Msg::Save(self.file.clone(), Reply::Async(tx)));
        self.completion(rx)
    }

    /// Hands the writes of [`Store::persist_soon`] to the writer.
    pub fn release_soon(&self) {
        let soon = std::mem::take(&mut *self.soon.borrow_mut());
        for m in soon {
            self.send_now(m);
        }
    }

    /// [`Store::persist`] that blocks the calling thread until the outcome is known.
    /// Meant for start-up, tests and callers without an event loop; the actor system uses
    /// [`Store::persist`] and awaits the [`Completion`].
    pub fn save(&mut self, saved: Option<&Saved>) -> Result<(), StoreError> {
        self.apply(saved);
        let (tx, rx) = std_mpsc::sync_channel(1);
        self.send(Msg::Save(self.file.clone(), Reply::Blocking(tx)));
        rx.recv()
            .unwrap_or_else(|_| Err(StoreError::stopped(&self.path())))
    }

    /// Resolves once every state queued before it has been attempted: `Ok` when the
    /// latest is on disk, else the error of one more attempt made at once. For a graceful
    /// stop.
    pub fn flush(&self) -> Completion {
        let (tx, rx) = oneshot::channel();
        self.send(Msg::Flush(Reply::Async(tx)));
        self.completion(rx)
    }

    /// [`Store::flush`], then the writer thread ends; later [`Store::persist`] calls
    /// resolve with a "stopped" error.
    pub fn close(&self) -> Completion {
        let (tx, rx) = oneshot::channel();
        self.send(Msg::Close(Reply::Async(tx)));
        self.completion(rx)
    }

    /// Follows whether the file on disk holds the latest state: [`Health::Failing`] after
    /// a failed write, [`Health::Durable`] again once a retry (or a newer state) succeeds.
    pub fn health(&self) -> watch::Receiver<Health> {
        self.health.clone()
    }

    fn apply(&mut self, saved: Option<&Saved>) {
        match saved {
            Some(s) => {
                self.file.sdk_app_id = Some(s.app_id);
                self.file.user_id = Some(s.user.clone());
                self.file.user_sig = Some(s.sig.clone());
                self.file.logged_in = true;
            }
            None => {
                self.file.user_sig = None;
                self.file.logged_in = false;
            }
        }
    }

    fn send(&self, msg: Msg) {
        self.release_soon();
        self.send_now(msg);
    }

    fn send_now(&self, msg: Msg) {
        if let Some(w) = &self.inline {
            let mut w = w.borrow_mut();
            w.take(msg);
            w.attempt();
            return;
        }
        if let Some(slot) = &self.pool {
            let Ok(mut p) = slot.lock() else { return };
            if p.closed {
                return;
            }
            p.queue.push(msg);
            if let Some(w) = p.writer.take() {
                let slot = slot.clone();
                drop(p);
                if tokio::runtime::Handle::try_current().is_ok() {
                    tokio::task::spawn_blocking(move || run_pooled(slot, w, true));
                } else {
                    // No runtime (a store dropped as its runtime goes away, with a write
                    // still held): one attempt on this thread rather than none, and no
                    // retries that would hold the thread.
                    run_pooled(slot, w, false);
                }
            }
            return;
        }
        // If the writer is gone, the reply inside `msg` is dropped with it and the
        // completion resolves to a "stopped" error.
        let _ = self.tx.send(msg);
    }

    fn completion(&self, rx: oneshot::Receiver<Result<(), StoreError>>) -> Completion {
        Completion {
            rx,
            path: self.path(),
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // A state persisted is never left behind unsent.
        self.release_soon();
    }
}

// ---------------------------------------------------------------- the writer thread

struct Writer {
    dir: PathBuf,
    options: Options,
    health: watch::Sender<Health>,
    /// The newest state not yet on disk.
    pending: Option<SessionFile>,
    /// Whether `pending` has failed at least once (it is then retried after `delay`).
    failed: bool,
    delay: Duration,
    /// Failed attempts of the pending state so far.
    attempts: u32,
    /// Waiting for `pending` to be written (or to fail once).
    waiters: Vec<Reply>,
    /// Waiting for the next attempt (or for nothing, if nothing is pending).
    flushers: Vec<Reply>,
    closing: bool,
}

impl Writer {
    fn new(dir: PathBuf, options: Options, health: watch::Sender<Health>) -> Writer {
        Writer {
            dir,
            options,
            health,
            pending: None,
            failed: false,
            delay: options.retry_initial,
            attempts: 0,
            waiters: Vec::new(),
            flushers: Vec::new(),
            closing: false,
        }
    }

    fn take(&mut self, msg: Msg) {
        match msg {
            Msg::Save(file, reply) => {
                // A newer state supersedes the pending one: its waiters learn the
                // outcome of the newer write, which is what the file will hold.
                self.pending = Some(file);
                self.failed = false;
                self.attempts = 0;
                self.delay = self.options.retry_initial;
                self.waiters.push(reply);
            }
            Msg::Flush(reply) => self.flushers.push(reply),
            Msg::Close(reply) => {
                self.flushers.push(reply);
                self.closing = true;
            }
        }
    }

    fn run(mut self, rx: std_mpsc::Receiver<Msg>) {
        loop {
            // Wait for work: forever when nothing is pending, else until the retry is due.
            let disconnected = if self.pending.is_some() && self.failed {
                match rx.recv_timeout(self.delay) {
                    Ok(m) => {
                        self.take(m);
                        false
                    }
                    Err(std_mpsc::RecvTimeoutError::Timeout) => false,
                    Err(std_mpsc::RecvTimeoutError::Disconnected) => true,
                }
            } else {
                match rx.recv() {
                    Ok(m) => {
                        self.take(m);
                        false
                    }
                    Err(_) => true,
                }
            };
            // Take whatever else is already queued, so that only the newest state is
            // written.
            if !disconnected {
                while !self.closing {
                    match rx.try_recv() {
                        Ok(m) => self.take(m),
                        Err(_) => break,
                    }
                }
            }
            self.attempt();
            if disconnected || self.closing {
                return;
            }
        }
    }

    /// Writes the pending state, if any, and tells everyone waiting.
    fn attempt(&mut self) {
        let Some(file) = &self.pending else {
            for f in self.flushers.drain(..) {
                f.send(Ok(()));
            }
            return;
        };
        let result = write_file(&self.dir, file);
        match &result {
            Ok(()) => {
                if self.attempts > 0 {
                    tracing::info!(
                        "{}: written after {} failed attempts",
                        self.dir.join(FILE_NAME).display(),
                        self.attempts
                    );
                }
                self.pending = None;
                self.failed = false;
                self.attempts = 0;
                self.delay = self.options.retry_initial;
                self.health.send_replace(Health::Durable);
            }
            Err(e) => {
                if self.attempts == 0 {
                    tracing::error!("{e}; retrying every {} ms at first", self.delay.as_millis());
                } else {
                    tracing::debug!("{e} (attempt {})", self.attempts + 1);
                    self.delay = (self.delay * 2).min(self.options.retry_max);
                }
                self.attempts = self.attempts.saturating_add(1);
                self.failed = true;
                self.health.send_replace(Health::Failing(e.clone()));
            }
        }
        for w in self.waiters.drain(..) {
            w.send(result.clone());
        }
        for f in self.flushers.drain(..) {
            f.send(result.clone());
        }
    }
}

/// Writes `file` into `dir` atomically and durably (see the module documentation).
fn write_file(dir: &Path, file: &SessionFile) -> Result<(), StoreError> {
    let path = dir.join(FILE_NAME);
    let tmp = dir.join(TMP_NAME);
    let err = |e: io::Error| StoreError::io(&path, &e);
    let body = serde_json::to_vec_pretty(file).map_err(|e| StoreError {
        path: path.clone(),
        reason: format!("cannot encode the session: {}", e.classify_text()),
    })?;
    let create = || {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
    };
    let mut f = match create() {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            // Left by a crash, or planted: unlink the name itself (never what it points
            // to) and create it afresh.
            fs::remove_file(&tmp).map_err(err)?;
            create().map_err(err)?
        }
        Err(e) => return Err(err(e)),
    };
    let written = f
        .write_all(&body)
        .and_then(|()| f.sync_all())
        .and_then(|()| {
            drop(f);
            fs::rename(&tmp, &path)
        });
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(err(e));
    }
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dir)
        .and_then(|d| d.sync_all())
        .map_err(err)
}

trait ClassifyText {
    fn classify_text(&self) -> &'static str;
}

impl ClassifyText for serde_json::Error {
    fn classify_text(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "I/O error",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "data error",
            serde_json::error::Category::Eof => "unexpected end",
        }
    }
}

// ---------------------------------------------------------------- reading and validation

/// The instance id found in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Instance {
    Valid,
    Missing,
    Invalid,
}

enum Loaded {
    Missing,
    /// Set aside; `instance` is the file's instance id if that one was valid.
    Invalid {
        reason: String,
        instance: Option<String>,
    },
    Valid {
        file: SessionFile,
        instance: Instance,
    },
}

/// Reads the session file at `path` safely (see the module documentation). `Err` only for
/// a file that exists but cannot be opened or read (fatal); anything wrong with what it
/// is or holds is [`Loaded::Invalid`].
fn load(path: &Path, uid: u32) -> Result<Loaded, String> {
    let invalid = |reason: String| {
        Ok(Loaded::Invalid {
            reason,
            instance: None,
        })
    };
    let opened = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path);
    let mut f = match opened {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Loaded::Missing),
        Err(e) => {
            // ELOOP for a link, ENXIO for a socket…: say what is there instead.
            return match fs::symlink_metadata(path) {
                Ok(m) if !m.is_file() => invalid(format!(
                    "is {}, not a regular file",
                    fsck::kind_of(m.file_type())
                )),
                _ => Err(format!("cannot read {}: {e}", path.display())),
            };
        }
    };
    let meta = f
        .metadata()
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if !meta.is_file() {
        return invalid(format!(
            "is {}, not a regular file",
            fsck::kind_of(meta.file_type())
        ));
    }
    if meta.uid() != uid && meta.uid() != 0 {
        return invalid(format!(
            "belongs to uid {}, not to uid {uid} (this process) or root",
            meta.uid()
        ));
    }
    if meta.len() > MAX_FILE_BYTES {
        return invalid(format!(
            "is {} bytes, larger than the limit of {MAX_FILE_BYTES} bytes",
            meta.len()
        ));
    }
    let mut bytes = Vec::new();
    Read::take(&mut f, MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return invalid(format!(
            "grew beyond the limit of {MAX_FILE_BYTES} bytes while read"
        ));
    }
    Ok(validate(&bytes))
}

/// Checks the content; the reasons name fields, never values.
fn validate(bytes: &[u8]) -> Loaded {
    let v: Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => {
            return Loaded::Invalid {
                reason: format!(
                    "not valid JSON ({} at line {} column {})",
                    e.classify_text(),
                    e.line(),
                    e.column()
                ),
                instance: None,
            }
        }
    };
    let Some(obj) = v.as_object() else {
        return Loaded::Invalid {
            reason: "not a JSON object".into(),
            instance: None,
        };
    };
    let (instance_id, instance) = match obj.get("instanceID") {
        None | Some(Value::Null) => (String::new(), Instance::Missing),
        Some(Value::String(s)) if valid_instance_id(s) => (s.clone(), Instance::Valid),
        Some(_) => (String::new(), Instance::Invalid),
    };
    match fields(obj) {
        Ok(mut file) => {
            file.instance_id = instance_id;
            Loaded::Valid { file, instance }
        }
        Err(reason) => Loaded::Invalid {
            reason,
            instance: (instance == Instance::Valid).then_some(instance_id),
        },
    }
}

/// What [`Store::open`] makes of a session file's content once the file is opened and
/// read: `Ok` with the content as the writer would write it back (`instanceID` empty when
/// the file's is missing or not valid, as before a new one is made), or why the file is
/// set aside. Reads nothing from disk; the fuzzing target `session_file` runs it.
pub(crate) fn check_content(bytes: &[u8]) -> Result<Vec<u8>, String> {
    match validate(bytes) {
        Loaded::Valid { file, .. } => serde_json::to_vec_pretty(&file)
            .map_err(|e| format!("cannot encode the session: {}", e.classify_text())),
        Loaded::Invalid { reason, .. } => Err(reason),
        Loaded::Missing => Err("missing".into()),
    }
}

fn fields(obj: &Map<String, Value>) -> Result<SessionFile, String> {
    let field = |name: &str| obj.get(name).filter(|v| !v.is_null());
    let sdk_app_id = match field("sdkAppID") {
        None => None,
        Some(v) => match v.as_u64() {
            Some(n) if n > 0 => Some(n),
            _ => return Err("field sdkAppID is not a positive integer".into()),
        },
    };
    let user_id = match field("userID") {
        None => None,
        Some(Value::String(s)) if valid_user_id(s) => Some(s.clone()),
        Some(Value::String(_)) => return Err("field userID is not a valid UserID".into()),
        Some(_) => return Err("field userID is not a string".into()),
    };
    let user_sig = match field("userSig") {
        None => None,
        Some(Value::String(s)) if valid_user_sig(s) => Some(s.clone()),
        Some(Value::String(_)) => {
            return Err(format!(
                "field userSig is not a ticket (1 to {MAX_USER_SIG_BYTES} characters of A-Z a-z 0-9 * - _ + / =)"
            ))
        }
        Some(_) => return Err("field userSig is not a string".into()),
    };
    let logged_in = match obj.get("loggedIn") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("field loggedIn is not true or false".into()),
    };
    if logged_in {
        for (name, present) in [
            ("sdkAppID", sdk_app_id.is_some()),
            ("userID", user_id.is_some()),
            ("userSig", user_sig.is_some()),
        ] {
            if !present {
                return Err(format!("loggedIn is true but field {name} is missing"));
            }
        }
    }
    Ok(SessionFile {
        instance_id: String::new(),
        sdk_app_id,
        user_id,
        user_sig,
        logged_in,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::os::unix::fs::PermissionsExt;

    fn alice(sig: &str) -> Saved {
        Saved {
            app_id: 1,
            user: "alice".into(),
            sig: sig.into(),
        }
    }

    fn fast() -> Options {
        Options {
            retry_initial: Duration::from_millis(10),
            retry_max: Duration::from_millis(50),
            inline: false,
        }
    }

    fn on_disk(dir: &Path) -> Value {
        serde_json::from_slice(&fs::read(dir.join(FILE_NAME)).unwrap()).unwrap()
    }

    #[test]
    fn saves_restores_and_clears_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        let id = s.instance_id().to_owned();
        assert!(valid_instance_id(&id), "{id}");
        assert_eq!(s.saved(), None);
        let saved = alice("SIG");
        s.save(Some(&saved)).unwrap();
        let mode = fs::metadata(dir.path().join(FILE_NAME))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let s2 = Store::open(dir.path()).unwrap();
        assert_eq!(s2.saved(), Some(saved));
        assert_eq!(s2.instance_id(), id, "the instance id survives restarts");
        let mut s3 = Store::open(dir.path()).unwrap();
        s3.save(None).unwrap();
        let text = fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        assert!(!text.contains("SIG"), "a cleared session keeps no ticket");
        assert_eq!(Store::open(dir.path()).unwrap().saved(), None);
    }

    #[test]
    fn the_format_is_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        s.save(Some(&alice("SIG"))).unwrap();
        let v = on_disk(dir.path());
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["instanceID", "loggedIn", "sdkAppID", "userID", "userSig"]
        );
        assert_eq!(v["loggedIn"], true);
        assert_eq!(v["userSig"], "SIG");
        // A file written by earlier versions reads back.
        let old = r#"{"instanceID":"0123456789abcdef0123456789abcdef","sdkAppID":7,
            "userID":"bob","userSig":"eJy*-_","loggedIn":true}"#;
        fs::write(dir.path().join(FILE_NAME), old).unwrap();
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.instance_id(), "0123456789abcdef0123456789abcdef");
        assert_eq!(
            s.saved(),
            Some(Saved {
                app_id: 7,
                user: "bob".into(),
                sig: "eJy*-_".into()
            })
        );
    }

    #[test]
    fn a_corrupt_file_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(FILE_NAME), b"{not json").unwrap();
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.saved(), None);
        assert!(dir.path().join(BAD_NAME).exists());
    }

    #[test]
    fn every_field_is_validated_without_quoting_values() {
        let secret = "eJwSECRETSECRETSECRET";
        let id = "0123456789abcdef0123456789abcdef";
        let cases = [
            (
                serde_json::json!({"instanceID": id, "sdkAppID": secret}),
                "sdkAppID",
            ),
            (
                serde_json::json!({"instanceID": id, "sdkAppID": 0}),
                "sdkAppID",
            ),
            (
                serde_json::json!({"instanceID": id, "userID": secret.to_owned() + " x"}),
                "userID",
            ),
            (
                serde_json::json!({"instanceID": id, "userID": [secret]}),
                "userID",
            ),
            (
                serde_json::json!({"instanceID": id, "userSig": 5}),
                "userSig",
            ),
            (
                serde_json::json!({"instanceID": id, "userSig": "a b"}),
                "userSig",
            ),
            (
                serde_json::json!({"instanceID": id, "userSig": "A".repeat(MAX_USER_SIG_BYTES + 1)}),
                "userSig",
            ),
            (
                serde_json::json!({"instanceID": id, "loggedIn": secret}),
                "loggedIn",
            ),
            (
                serde_json::json!({"instanceID": id, "loggedIn": true, "sdkAppID": 1, "userID": "a"}),
                "userSig",
            ),
        ];
        for (v, field) in cases {
            let bytes = serde_json::to_vec(&v).unwrap();
            match validate(&bytes) {
                Loaded::Invalid { reason, instance } => {
                    assert!(reason.contains(field), "{reason} for {v}");
                    assert!(!reason.contains("SECRET"), "{reason}");
                    assert_eq!(instance.as_deref(), Some(id), "a valid id is kept");
                }
                _ => panic!("{v} accepted"),
            }
        }
        // Syntax errors give a position, not the text.
        match validate(format!("{{\"userSig\": {secret}}}").as_bytes()) {
            Loaded::Invalid { reason, .. } => {
                assert!(reason.contains("line 1"), "{reason}");
                assert!(!reason.contains("SECRET"), "{reason}");
            }
            _ => panic!("accepted"),
        }
        for bad_id in [
            serde_json::json!("abc&platform=Web#x"),
            serde_json::json!("0123456789ABCDEF0123456789ABCDEF"),
            serde_json::json!("x".repeat(5000)),
            serde_json::json!(42),
        ] {
            let v = serde_json::json!({"instanceID": bad_id, "userID": "bob"});
            match validate(&serde_json::to_vec(&v).unwrap()) {
                Loaded::Valid { instance, file } => {
                    assert_eq!(instance, Instance::Invalid);
                    assert_eq!(file.user_id.as_deref(), Some("bob"));
                }
                _ => panic!("{v}"),
            }
        }
    }

    #[test]
    fn a_hostile_instance_id_is_replaced_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let v = serde_json::json!({"instanceID": "abc&platform=Web#x", "sdkAppID": 3,
            "userID": "carol", "userSig": "SIG", "loggedIn": true});
        fs::write(dir.path().join(FILE_NAME), v.to_string()).unwrap();
        let s = Store::open(dir.path()).unwrap();
        assert!(valid_instance_id(s.instance_id()), "{}", s.instance_id());
        assert_eq!(s.saved().unwrap().user, "carol");
        assert_eq!(on_disk(dir.path())["instanceID"], s.instance_id());
    }

    #[test]
    fn odd_files_are_set_aside_without_reading_or_following_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        // A link to a file elsewhere: not followed, the target is untouched.
        let target = dir.path().join("elsewhere");
        fs::write(&target, b"{}").unwrap();
        std::os::unix::fs::symlink(&target, &path).unwrap();
        Store::open(dir.path()).unwrap();
        assert!(fs::symlink_metadata(dir.path().join(BAD_NAME))
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read(&target).unwrap(), b"{}");
        assert!(fs::symlink_metadata(&path).unwrap().is_file());
        // Too large (sparse: nothing is read).
        fs::remove_file(&path).unwrap();
        let f = File::create(&path).unwrap();
        f.set_len(500 * 1024 * 1024).unwrap();
        match load(&path, fsck::effective_uid()).unwrap() {
            Loaded::Invalid { reason, .. } => assert!(reason.contains("limit"), "{reason}"),
            _ => panic!("a 500 MB file was accepted"),
        }
    }

    #[test]
    fn a_planted_temp_link_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"untouched").unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join(TMP_NAME)).unwrap();
        s.save(Some(&alice("SIG"))).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"untouched");
        assert_eq!(on_disk(dir.path())["userSig"], "SIG");
        assert!(!dir.path().join(TMP_NAME).exists());
    }

    #[test]
    fn a_state_directory_others_can_write_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
        let e = Store::open(dir.path()).unwrap_err();
        assert!(e.contains(&dir.path().display().to_string()), "{e}");
        assert!(!dir.path().join(FILE_NAME).exists());
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o1777)).unwrap();
        Store::open(dir.path()).unwrap();
        // A missing one is made private.
        let sub = dir.path().join("a/b");
        Store::open(&sub).unwrap();
        assert_eq!(
            fs::metadata(&sub).unwrap().permissions().mode() & 0o777,
            0o700
        );
    }

    #[actix_rt::test]
    async fn writes_are_ordered_and_the_last_state_wins() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        let mut all = Vec::new();
        for i in 0..200 {
            let saved = Saved {
                app_id: 1,
                user: format!("u{i}"),
                sig: format!("S{i}"),
            };
            all.push(s.persist(Some(&saved)));
        }
        let last = s.persist(None);
        last.await.unwrap();
        let v = on_disk(dir.path());
        assert_eq!(v["userID"], "u199");
        assert_eq!(v["loggedIn"], false);
        assert!(v["userSig"].is_null());
        // Every earlier completion resolved: its state or a newer one is on disk.
        for c in all {
            c.await.unwrap();
        }
        s.flush().await.unwrap();
        assert_eq!(on_disk(dir.path())["userID"], "u199");
    }

    #[actix_rt::test]
    async fn a_write_held_for_soon_waits_for_its_release_and_keeps_its_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        // Held: the memory has it at once, the disk not before the release.
        let held = s.persist_soon(Some(&alice("HELD")));
        assert_eq!(s.saved().unwrap().sig, "HELD");
        assert!(on_disk(dir.path())["userSig"].is_null());
        s.flush().await.unwrap();
        // The flush handed it over first (nothing sent to the writer overtakes it).
        assert_eq!(on_disk(dir.path())["userSig"], "HELD");
        held.await.unwrap();

        // Released by hand.
        let second = s.persist_soon(Some(&alice("SECOND")));
        s.release_soon();
        second.await.unwrap();
        assert_eq!(on_disk(dir.path())["userSig"], "SECOND");

        // Held, then a write that is sent at once: the later state still wins.
        let third = s.persist_soon(Some(&alice("THIRD")));
        s.persist(None).await.unwrap();
        third.await.unwrap();
        let v = on_disk(dir.path());
        assert_eq!(v["loggedIn"], false);
        assert!(v["userSig"].is_null());

        // Held when the store goes away: still written.
        let last = s.persist_soon(Some(&alice("LAST")));
        drop(s);
        last.await.unwrap();
        assert_eq!(on_disk(dir.path())["userSig"], "LAST");
    }

    #[test]
    fn a_pooled_store_dropped_without_a_runtime_still_writes_what_it_held() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open_pooled(dir.path(), Options::default()).unwrap();
        let held = s.persist_soon(Some(&alice("POOLED")));
        // No tokio runtime on this thread: the drop writes on it, once, and returns.
        drop(s);
        let v = on_disk(dir.path());
        assert_eq!(v["userSig"], "POOLED");
        assert_eq!(v["loggedIn"], true);
        drop(held);
    }

    #[actix_rt::test]
    async fn a_failed_write_is_reported_and_retried_until_it_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open_with(dir.path(), fast()).unwrap();
        let mut health = s.health();
        // Make the rename fail: the file's name is taken by a non-empty directory
        // (works as root too, unlike a read-only directory).
        let path = dir.path().join(FILE_NAME);
        fs::remove_file(&path).unwrap();
        fs::create_dir(&path).unwrap();
        fs::write(path.join("x"), b"").unwrap();
        let e = s.persist(Some(&alice("TICKETVALUE"))).await.unwrap_err();
        assert_eq!(e.path, path);
        let text = e.to_string();
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(!text.contains("TICKETVALUE"), "{text}");
        health
            .wait_for(|h| matches!(h, Health::Failing(_)))
            .await
            .unwrap();
        // A flush tries again at once and reports the same failure.
        assert!(s.flush().await.is_err());
        // Once the obstacle is gone, the writer's own retry puts the state on disk.
        fs::remove_dir_all(&path).unwrap();
        health.wait_for(|h| *h == Health::Durable).await.unwrap();
        assert_eq!(on_disk(dir.path())["userSig"], "TICKETVALUE");
        assert!(!dir.path().join(TMP_NAME).exists(), "no temp file left");
        s.flush().await.unwrap();
    }

    #[actix_rt::test]
    async fn a_read_only_directory_fails_and_recovers() {
        if fsck::effective_uid() == 0 {
            eprintln!("skipped: root writes into read-only directories");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open_with(dir.path(), fast()).unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o500)).unwrap();
        assert!(s.persist(None).await.is_err());
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
        s.persist(Some(&alice("SIG"))).await.unwrap();
        assert_eq!(on_disk(dir.path())["userSig"], "SIG");
    }

    #[actix_rt::test]
    async fn close_ends_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        let c = s.persist(Some(&alice("SIG")));
        s.close().await.unwrap();
        c.await.unwrap();
        assert_eq!(on_disk(dir.path())["userSig"], "SIG");
        let e = s.persist(None).await.unwrap_err();
        assert!(e.reason.contains("stopped"), "{e}");
    }
}
