//! A real `imlinkd` process for end-to-end tests, and a blocking JSON-RPC client of its
//! socket.
//!
//! ```ignore
//! let server = DevServer::start(&["--faults"]);
//! let mut d = Daemon::start(&server, &[]);                 // small timeouts, app id set
//! let mut c = d.client();
//! c.subscribe();
//! c.call("login", json!({"userID":"alice","userSig": ticket("alice", 3600)})).unwrap();
//! c.wait_event("onLoginStatusChanged", T);                  // params of the notification
//! let rest = c.events_so_far();                             // up to status.lastSeq, no quiet window
//! d.kill(); d.start_again();                                // same config and state dir
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{DevServer, APP};

/// A generous deadline for anything that should happen "soon".
pub const T: Duration = Duration::from_secs(10);

/// A running `imlinkd`.
pub struct Daemon {
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// The socket path.
    pub socket: PathBuf,
    /// The configuration file.
    pub config: PathBuf,
    settings: BTreeMap<String, BTreeMap<String, String>>,
    launch: Launch,
}

/// How to launch `imlinkd` beyond its configuration: extra environment variables
/// (`NOTIFY_SOCKET`, `WATCHDOG_USEC`, `JOURNAL_STREAM`…) and a wrapper command that
/// execs it (`systemd-socket-activate -l PATH`). With a wrapper, start-up waits for the
/// socket to answer just the same (the first connection activates the daemon).
#[derive(Debug, Clone, Default)]
pub struct Launch {
    /// Added to the daemon's (otherwise cleared) environment.
    pub env: Vec<(String, String)>,
    /// A command line that runs the daemon's command line after it (it must exec it, so
    /// that the process id stays the daemon's).
    pub wrapper: Vec<String>,
    /// The socket to wait for and talk to, when not `api.socket` (a socket-activated
    /// daemon serves the socket it was passed).
    pub socket: Option<PathBuf>,
}

/// The settings every test daemon starts from: fast timers so faults show quickly.
fn base_settings(server_url: &str, dir: &Path) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut s: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut set = |k: &str, v: String| {
        let (sec, key) = k.split_once('.').unwrap();
        s.entry(sec.into()).or_default().insert(key.into(), v);
    };
    set("sdk.app_id", APP.to_string());
    set("sdk.log_level", "\"debug\"".into());
    set("server.url", format!("{server_url:?}"));
    set("server.connect_timeout_ms", "2000".into());
    set("server.request_timeout_ms", "1500".into());
    set("server.login_timeout_ms", "3000".into());
    set("server.heartbeat_interval_ms", "500".into());
    set("server.heartbeat_timeout_ms", "3000".into());
    set("reconnect.initial_ms", "200".into());
    set("reconnect.max_ms", "1000".into());
    set("reconnect.multiplier", "1.6".into());
    set("reconnect.jitter", "0.2".into());
    set("reconnect.stable_ms", "500".into());
    set(
        "api.socket",
        format!("{:?}", dir.join("imlinkd.sock").display().to_string()),
    );
    set(
        "state.dir",
        format!("{:?}", dir.join("state").display().to_string()),
    );
    s
}

impl Daemon {
    /// Starts a daemon for `server` with `overrides` as `("section.key", "toml value")`
    /// (e.g. `("sdk.app_id", "")` is not allowed: use [`Daemon::start_uninit`]).
    pub fn start(server: &DevServer, overrides: &[(&str, &str)]) -> Daemon {
        let url = format!("ws://{}/v1/connect", server.addr);
        Daemon::start_url(&url, overrides, false)
    }

    /// Starts a daemon with no `sdk.app_id`: it waits for `initSDK`.
    pub fn start_uninit(server: &DevServer, overrides: &[(&str, &str)]) -> Daemon {
        let url = format!("ws://{}/v1/connect", server.addr);
        Daemon::start_url(&url, overrides, true)
    }

    /// Starts a daemon for any server URL.
    pub fn start_url(url: &str, overrides: &[(&str, &str)], uninit: bool) -> Daemon {
        Daemon::start_launch(url, overrides, uninit, Launch::default())
    }

    /// Starts a daemon for `server` launched as `launch` says.
    pub fn start_with(server: &DevServer, overrides: &[(&str, &str)], launch: Launch) -> Daemon {
        let url = format!("ws://{}/v1/connect", server.addr);
        Daemon::start_launch(&url, overrides, false, launch)
    }

    /// Starts a daemon for any server URL, launched as `launch` says.
    pub fn start_launch(
        url: &str,
        overrides: &[(&str, &str)],
        uninit: bool,
        launch: Launch,
    ) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = base_settings(url, dir.path());
        if uninit {
            settings.get_mut("sdk").unwrap().remove("app_id");
        }
        for (k, v) in overrides {
            let (sec, key) = k.split_once('.').unwrap();
            settings
                .entry(sec.into())
                .or_default()
                .insert(key.into(), v.to_string());
        }
        // An `api.socket` override moves the socket (a TOML string).
        let socket = settings
            .get("api")
            .and_then(|a| a.get("socket"))
            .map(|v| PathBuf::from(v.trim().trim_matches('"')))
            .unwrap_or_else(|| dir.path().join("imlinkd.sock"));
        let mut d = Daemon {
            child: None,
            socket: launch.socket.clone().unwrap_or(socket),
            config: dir.path().join("imlinkd.toml"),
            dir,
            settings,
            launch,
        };
        d.write_config();
        d.spawn();
        d
    }

    /// Changes a setting in the configuration file (for SIGHUP tests and restarts).
    pub fn set(&mut self, key: &str, value: &str) {
        let (sec, k) = key.split_once('.').unwrap();
        self.settings
            .entry(sec.into())
            .or_default()
            .insert(k.into(), value.into());
        self.write_config();
    }

    fn write_config(&self) {
        let mut text = String::new();
        for (sec, kv) in &self.settings {
            text.push_str(&format!("[{sec}]\n"));
            for (k, v) in kv {
                text.push_str(&format!("{k} = {v}\n"));
            }
        }
        std::fs::write(&self.config, text).unwrap();
    }

    /// The state directory.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// The log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("imlinkd.log")
    }

    /// Its stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let mut cmd = match self.launch.wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(env!("CARGO_BIN_EXE_imlinkd"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_imlinkd")),
        };
        let child = cmd
            .arg("--config")
            .arg(&self.config)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .envs(self.launch.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn imlinkd");
        self.child = Some(child);
        let deadline = Instant::now() + T;
        loop {
            if UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("imlinkd exited at start with {st}; log:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "imlinkd did not listen within {T:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Runs another `imlinkd` with this daemon's configuration file and `extra` flags,
    /// waits for it to exit (at most [`T`]) and returns its exit status and stderr.
    pub fn run_second(&self, extra: &[&str]) -> (ExitStatus, String) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_imlinkd"))
            .arg("--config")
            .arg(&self.config)
            .args(extra)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn imlinkd");
        let deadline = Instant::now() + T;
        let st = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the second imlinkd did not exit within {T:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        (st, err)
    }

    /// A directory that lives as long as the daemon (for extra files in tests).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Sends a signal by name (`TERM`, `HUP`, `KILL`…).
    pub fn signal(&self, name: &str) {
        let st = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(st.success());
    }

    /// SIGTERM and wait (at most [`T`]); returns the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        self.signal("TERM");
        self.wait_exit()
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("not running");
        let deadline = Instant::now() + T;
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("imlinkd did not exit within {T:?}; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL and wait.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again with the same configuration and state directory.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "still running");
        self.spawn();
    }

    /// A new client connection.
    pub fn client(&self) -> Rpc {
        Rpc::connect(&self.socket)
    }

    /// Starts a daemon for `server` and logs `user` in on a live connection (the login is
    /// answered once the server accepted it); returns the client that did it.
    pub fn logged_in(server: &DevServer, overrides: &[(&str, &str)], user: &str) -> (Daemon, Rpc) {
        let d = Daemon::start(server, overrides);
        let mut c = d.client();
        c.wait_status(T, "connected", |s| s["connection"] == "connected");
        c.ok(
            "login",
            json!({"userID": user, "userSig": super::ticket(user, 3600)}),
        );
        (d, c)
    }

    /// The saved session file, parsed (None when absent).
    pub fn session_file(&self) -> Option<Value> {
        let text = std::fs::read_to_string(self.state_dir().join("session.json")).ok()?;
        Some(serde_json::from_str(&text).unwrap())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A JSON-RPC error as `(code, message)`.
pub type RpcErr = (i64, String);

/// A blocking client of the daemon's socket. Notifications read while waiting for a reply
/// are kept and returned by [`Rpc::next_event`].
pub struct Rpc {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
    next_id: u64,
    events: VecDeque<Value>,
    replies: VecDeque<Value>,
    /// The newest seq this client has been given or need not wait for: the seq of the
    /// last event returned, or where the subscription started.
    seen_seq: u64,
}

impl Rpc {
    /// Connects.
    pub fn connect(path: &Path) -> Rpc {
        let s = UnixStream::connect(path).unwrap();
        Rpc {
            writer: s.try_clone().unwrap(),
            reader: BufReader::new(s),
            next_id: 1,
            events: VecDeque::new(),
            replies: VecDeque::new(),
            seen_seq: 0,
        }
    }

    /// Shuts down the writing side of the connection (the daemon sees EOF).
    pub fn shutdown_write(&mut self) {
        self.writer.shutdown(std::net::Shutdown::Write).unwrap();
    }

    /// Sends one request line with this id and returns at once (the reply is read later
    /// with [`Rpc::next_reply`]).
    pub fn send(&mut self, id: Value, method: &str, params: Value) {
        let req = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.send_raw(format!("{req}\n").as_bytes());
    }

    /// Writes raw bytes; false when the daemon has closed the connection.
    pub fn send_raw_ok(&mut self, bytes: &[u8]) -> bool {
        self.writer.write_all(bytes).is_ok()
    }

    /// Writes raw bytes.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
    }

    /// Reads one line (any message) within `timeout`; None on timeout or EOF.
    pub fn read_line(&mut self, timeout: Duration) -> Option<Value> {
        self.reader
            .get_ref()
            .set_read_timeout(Some(timeout))
            .unwrap();
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => None,
            Ok(_) => Some(
                serde_json::from_str(line.trim_end())
                    .unwrap_or_else(|e| panic!("bad line {line:?}: {e}")),
            ),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                None
            }
            Err(e) => panic!("read: {e}"),
        }
    }

    /// Waits for the daemon to close the connection (within `timeout`); panics on a line
    /// or when it stays open.
    pub fn expect_eof(&mut self, timeout: Duration) {
        self.reader
            .get_ref()
            .set_read_timeout(Some(timeout))
            .unwrap();
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => {}
            Ok(_) => panic!("expected the end of the connection, got {line:?}"),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                panic!("the connection is still open after {timeout:?}")
            }
            // A reset is an end too.
            Err(_) => {}
        }
    }

    /// Reads the next reply (not a notification) within `timeout`.
    pub fn next_reply(&mut self, timeout: Duration) -> Option<Value> {
        if let Some(r) = self.replies.pop_front() {
            return Some(r);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let v = self.read_line(left.max(Duration::from_millis(1)))?;
            if v.get("method").is_some() && v.get("id").is_none() {
                self.events.push_back(v);
            } else {
                return Some(v);
            }
        }
    }

    /// Calls `method` and waits for its reply (at most [`T`]).
    pub fn call(&mut self, method: &str, params: Value) -> Result<Value, RpcErr> {
        let id = self.next_id;
        self.next_id += 1;
        let since = params["since"].as_u64();
        let req = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.send_raw(format!("{req}\n").as_bytes());
        let deadline = Instant::now() + T;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let r = self
                .next_reply(left)
                .unwrap_or_else(|| panic!("no reply to {method} within {T:?}"));
            if r["id"] == json!(id) {
                return match r.get("error") {
                    Some(e) => Err((
                        e["code"].as_i64().unwrap(),
                        e["message"].as_str().unwrap_or_default().to_owned(),
                    )),
                    None => {
                        if method == "subscribe" {
                            // Events after `since` (replayed) or after the reply's seq come.
                            let from = since.or(r["result"]["seq"].as_u64());
                            if let Some(from) = from {
                                self.seen_seq = self.seen_seq.max(from);
                            }
                        }
                        Ok(r["result"].clone())
                    }
                };
            }
            self.replies.push_back(r);
        }
    }

    /// `call` that must succeed.
    pub fn ok(&mut self, method: &str, params: Value) -> Value {
        self.call(method, params.clone())
            .unwrap_or_else(|e| panic!("{method} {params} failed: {e:?}"))
    }

    /// `call` that must fail; returns the code.
    pub fn err(&mut self, method: &str, params: Value) -> i64 {
        match self.call(method, params.clone()) {
            Ok(r) => panic!("{method} {params} succeeded with {r}, expected an error"),
            Err((c, _)) => c,
        }
    }

    /// Subscribes to every event; returns the result.
    pub fn subscribe(&mut self) -> Value {
        self.ok("subscribe", json!({}))
    }

    /// The next event notification's params within `timeout`.
    pub fn next_event(&mut self, timeout: Duration) -> Option<Value> {
        let e = self.next_event_raw(timeout)?;
        if let Some(seq) = e["seq"].as_u64() {
            self.seen_seq = self.seen_seq.max(seq);
        }
        Some(e)
    }

    fn next_event_raw(&mut self, timeout: Duration) -> Option<Value> {
        if let Some(e) = self.events.pop_front() {
            return Some(e["params"].clone());
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let v = self.read_line(left.max(Duration::from_millis(1)))?;
            if v.get("method").is_some() && v.get("id").is_none() {
                return Some(v["params"].clone());
            }
            self.replies.push_back(v);
        }
    }

    /// Reads events until one satisfies `f` (inclusive), within `timeout`; returns them.
    pub fn events_until(&mut self, timeout: Duration, f: impl Fn(&Value) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        let mut out: Vec<Value> = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let e = self.next_event(left).unwrap_or_else(|| {
                let names: Vec<&str> = out.iter().filter_map(|e| e["event"].as_str()).collect();
                panic!("timed out waiting for an event; saw {names:?}")
            });
            let done = f(&e);
            out.push(e);
            if done {
                return out;
            }
        }
    }

    /// Reads events until this client has seen the one with seq `seq` (within [`T`]);
    /// returns those read. Nothing is read when it has been seen already (or came before
    /// the subscription started). Needs one subscription to every event on this client.
    pub fn events_through(&mut self, seq: u64) -> Vec<Value> {
        let mut out = Vec::new();
        let deadline = Instant::now() + T;
        while self.seen_seq < seq {
            let left = deadline.saturating_duration_since(Instant::now());
            let e = self.next_event(left).unwrap_or_else(|| {
                panic!(
                    "no event {seq} within {T:?}; the last seen was {}",
                    self.seen_seq
                )
            });
            out.push(e);
        }
        out
    }

    /// Every event the daemon had emitted when this is called that this client has not
    /// read yet: `status.lastSeq` is taken, then events are read up to it. The negative
    /// check "no event X happened" reads this after a point that proves X would have
    /// happened by then — never a quiet window.
    pub fn events_so_far(&mut self) -> Vec<Value> {
        let last = self.ok("status", json!({}))["lastSeq"].as_u64().unwrap();
        self.events_through(last)
    }

    /// Reads events until one named `name` arrives (within `timeout`); returns it and
    /// the names of the events before it.
    pub fn wait_event(&mut self, name: &str, timeout: Duration) -> (Value, Vec<String>) {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let e = self
                .next_event(left)
                .unwrap_or_else(|| panic!("no {name} within {timeout:?}; saw {seen:?}"));
            let n = e["event"].as_str().unwrap_or_default().to_owned();
            if n == name {
                return (e, seen);
            }
            seen.push(n);
        }
    }

    /// Every event that arrives within `quiet`. A quiet window proves little and costs
    /// time: prefer [`events_so_far`](Self::events_so_far).
    pub fn drain_events(&mut self, quiet: Duration) -> Vec<Value> {
        let mut out = Vec::new();
        while let Some(e) = self.next_event(quiet) {
            out.push(e);
        }
        out
    }

    /// `getLoginStatus`.
    pub fn login_status(&mut self) -> i64 {
        self.ok("getLoginStatus", json!({}))["status"]
            .as_i64()
            .unwrap()
    }

    /// Polls `status` until `f` holds (within `timeout`).
    pub fn wait_status(
        &mut self,
        timeout: Duration,
        what: &str,
        f: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.ok("status", json!({}));
            if f(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; status {s}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
