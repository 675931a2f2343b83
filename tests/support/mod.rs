//! Test helpers shared by the end-to-end tests: a real `imlink-devserver` process, tickets,
//! a blocking WebSocket client and a tiny HTTP client. Use with `mod support;`.
//!
//! ```ignore
//! let server = DevServer::start(&["--policy", "single"]);     // --listen 127.0.0.1:0, --app APP:KEY
//! let mut c = WsClient::connect(&server, "Linux", "inst-1");   // reads `hello`
//! let r = c.login("alice", &ticket("alice", 3600), false);     // the response frame (JSON)
//! assert_eq!(r["code"], 0);
//! let push = c.next_push(Duration::from_secs(5)).unwrap();     // {"push":…,"body":…}
//! server.rest("im_open_login_svc/kick", json!({"UserID":"alice"}));
//! server.fault("drop");                                       // POST /faults/drop (needs --faults)
//! let stats = server.stats();                                  // GET /debug/stats
//! ```
//!
//! - [`DevServer`]: `start(extra_args)`, `start_with(Options)` (TLS, fixed port…),
//!   `restart()` (same port), `stop()` (SIGTERM, waits; returns the exit status), `kill()`,
//!   `addr`, `ws_url(platform, instance)`, `http(method, path, body)`, `rest(cmd, body)`,
//!   `rest_as(cmd, identifier, usersig, body)`, `fault(path_and_query)`, `stats()`,
//!   `user_stats(user)`, `requests(cmd)`, `wait_heartbeats(n)`, `sessions()`, `log()`
//!   (its stderr so far). Dropping it kills the process.
//! - [`ticket`]/[`ticket_at`]/[`ticket_for`]: UserSigs for [`APP`]/[`KEY`].
//! - [`WsClient`]: `connect(server, platform, instance)`, `connect_url(url, tls)`,
//!   `request(cmd, body)` → response frame (pushes read meanwhile are queued),
//!   `login(user, sig, auto)`, `next_push(timeout)`, `expect_push(name, timeout)`,
//!   `assert_no_pending_push()` (a round trip, no quiet window), `send_text`,
//!   `send_message`, `next_message(timeout)` (raw), `wait_close(timeout)`.
//! - [`wait_until`]: poll a condition with a deadline (never a bare sleep).
//! - Negative checks ("no second login", "no kick") read counters (`stats()`,
//!   `user_stats(user)`, `requests(cmd)`, `sessions()`) after a synchronisation point
//!   that proves the moment has passed (`wait_heartbeats(n)`, a round trip), never after
//!   a quiet window.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::result_large_err,
    dead_code
)]

pub mod daemon;
pub mod node;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::protocol::frame::CloseFrame;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// The SDKAppID every test server knows.
pub const APP: u64 = 1400000001;
/// Its secret key.
pub const KEY: &str = "imlink-test-secret-0123456789";
/// The REST administrator.
pub const ADMIN: &str = "administrator";

/// Unix seconds now.
pub fn now_unix() -> i64 {
    imlink::usersig::now_unix()
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A ticket for `user` on [`APP`], issued now, valid `expire` seconds.
pub fn ticket(user: &str, expire: i64) -> String {
    ticket_at(user, expire, now_unix())
}

/// A ticket for `user` on [`APP`], issued at `time`.
pub fn ticket_at(user: &str, expire: i64, time: i64) -> String {
    imlink::usersig::generate(APP, KEY, user, expire, time)
}

/// A ticket for any app and key.
pub fn ticket_for(app: u64, key: &str, user: &str, expire: i64, time: i64) -> String {
    imlink::usersig::generate(app, key, user, expire, time)
}

/// Writes a test CA and a certificate for `localhost`/`127.0.0.1` signed by it into `dir`;
/// returns `(ca_pem, cert_path, key_path)`.
pub fn test_ca(dir: &std::path::Path) -> (String, PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "imlink test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (ca.pem(), cert_path, key_path)
}

/// `make` with a clean environment: the variables cargo sets for a test would make the
/// build scripts of dependencies run again and rebuild half the tree.
pub fn make_command() -> Command {
    let mut cmd = Command::new("make");
    cmd.env_clear();
    for var in [
        "PATH",
        "HOME",
        "CARGO_HOME",
        "RUSTUP_HOME",
        "RUSTUP_TOOLCHAIN",
        "CARGO_TARGET_DIR",
        "TMPDIR",
    ] {
        if let Some(v) = std::env::var_os(var) {
            cmd.env(var, v);
        }
    }
    cmd
}

/// Polls `f` every 20 ms until it is true; panics with `what` after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How to start a devserver.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Address to listen on; `None` = `127.0.0.1:0`.
    pub listen: Option<SocketAddr>,
    /// Extra flags (the `--app APP:KEY` flag is always given).
    pub args: Vec<String>,
    /// `(cert.pem, key.pem)` to serve wss://.
    pub tls: Option<(PathBuf, PathBuf)>,
}

/// A running `imlink-devserver` process.
pub struct DevServer {
    child: Option<Child>,
    /// The address it listens on (the real port).
    pub addr: SocketAddr,
    options: Options,
    log_path: PathBuf,
    _dir: tempfile::TempDir,
    /// Whether it serves wss://.
    pub tls: bool,
}

impl DevServer {
    /// Starts a devserver on a free loopback port with `extra` flags.
    pub fn start(extra: &[&str]) -> DevServer {
        DevServer::start_with(Options {
            args: extra.iter().map(|s| s.to_string()).collect(),
            ..Options::default()
        })
    }

    /// Starts a devserver with `options`.
    pub fn start_with(options: Options) -> DevServer {
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join("devserver.log");
        let mut s = DevServer {
            child: None,
            addr: "127.0.0.1:0".parse().unwrap(),
            tls: options.tls.is_some(),
            options,
            log_path,
            _dir: dir,
        };
        s.spawn(
            s.options
                .listen
                .unwrap_or_else(|| "127.0.0.1:0".parse().unwrap()),
        );
        s
    }

    fn spawn(&mut self, listen: SocketAddr) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_imlink-devserver"));
        cmd.arg("--listen")
            .arg(listen.to_string())
            .arg("--app")
            .arg(format!("{APP}:{KEY}"))
            .args(&self.options.args)
            .env("IMLINK_DEVSERVER_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        if let Some((c, k)) = &self.options.tls {
            cmd.arg("--tls-cert").arg(c).arg("--tls-key").arg(k);
        }
        let mut child = cmd.spawn().expect("spawn imlink-devserver");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| {
                panic!(
                    "devserver did not start: stdout {line:?}; log:\n{}",
                    self.log()
                )
            });
        self.addr = addr.parse().unwrap();
        self.child = Some(child);
    }

    /// Stops it with SIGTERM and waits; returns the exit status.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return Some(st);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("devserver did not stop within 10 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills it (SIGKILL) and waits.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same address after [`DevServer::kill`] or [`DevServer::stop`].
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "the devserver is still running");
        let addr = self.addr;
        self.spawn(addr);
    }

    /// Stops it and starts it again on the same address, with the same flags.
    pub fn restart(&mut self) {
        self.stop();
        let addr = self.addr;
        self.spawn(addr);
    }

    /// Its stderr (the log) so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The access URL for `platform` and `instance`.
    pub fn ws_url(&self, platform: &str, instance: &str) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        let host = if self.tls {
            format!("localhost:{}", self.addr.port())
        } else {
            self.addr.to_string()
        };
        format!("{scheme}://{host}/v1/connect?sdkappid={APP}&platform={platform}&instanceid={instance}&ver=1")
    }

    /// A plain HTTP/1.1 request; returns (status, body). Not for a TLS server.
    pub fn http(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        http(self.addr, method, path, body)
    }

    /// A REST admin call as [`ADMIN`] with a fresh admin ticket; returns the JSON answer.
    pub fn rest(&self, cmd: &str, body: Value) -> Value {
        self.rest_as(cmd, ADMIN, &ticket(ADMIN, 3600), body)
    }

    /// A REST call with explicit credentials.
    pub fn rest_as(&self, cmd: &str, identifier: &str, usersig: &str, body: Value) -> Value {
        let path = format!(
            "/v4/{cmd}?sdkappid={APP}&identifier={identifier}&usersig={usersig}&random={}&contenttype=json",
            fastrand::u32(..)
        );
        let (status, text) = self.http("POST", &path, &body.to_string());
        assert_eq!(status, 200, "REST {cmd}: {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// `POST /faults/<path_and_query>`; panics unless it answers 200.
    pub fn fault(&self, path_and_query: &str) -> Value {
        let (status, text) = self.http("POST", &format!("/faults/{path_and_query}"), "");
        assert_eq!(status, 200, "fault {path_and_query}: {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// `GET /debug/stats`.
    pub fn stats(&self) -> Value {
        let (status, text) = self.http("GET", "/debug/stats", "");
        assert_eq!(status, 200);
        serde_json::from_str(&text).unwrap()
    }

    /// `GET /debug/sessions` → the `sessions` array.
    pub fn sessions(&self) -> Vec<Value> {
        let (status, text) = self.http("GET", "/debug/sessions", "");
        assert_eq!(status, 200);
        let v: Value = serde_json::from_str(&text).unwrap();
        v["sessions"].as_array().cloned().unwrap_or_default()
    }

    /// A user's counters from `/debug/stats` (`{}` when unknown).
    pub fn user_stats(&self, user: &str) -> Value {
        self.stats()["users"][user].clone()
    }

    /// How many `/v1/connect` requests of `cmd` (`login`, `logout`, `heartbeat`,
    /// `getSelfInfo`) the server has handled (`/debug/stats` `requests`).
    pub fn requests(&self, cmd: &str) -> u64 {
        self.stats()["requests"][cmd]
            .as_u64()
            .unwrap_or_else(|| panic!("no requests.{cmd} in /debug/stats"))
    }

    /// Waits until the server has handled `n` more `heartbeat` requests than when called.
    ///
    /// A synchronisation point for negative checks on a client that heartbeats (imlinkd):
    /// a connection's frames are handled in order, so once a heartbeat the client sent
    /// after doing X has been handled, X has been handled too. With `n = 2` at least one
    /// of the counted heartbeats was sent after this call began.
    pub fn wait_heartbeats(&self, n: u64) {
        let start = self.requests("heartbeat");
        wait_until(
            Duration::from_secs(10),
            &format!("{n} more heartbeats"),
            || self.requests("heartbeat") >= start + n,
        );
    }
}

impl Drop for DevServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A minimal HTTP/1.1 client (`Connection: close`); returns (status, body).
pub fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, rest.to_string())
}

/// How a connection ended, as [`WsClient::wait_close`] saw it.
#[derive(Debug)]
pub enum Closed {
    /// The server sent a close frame.
    Frame(Option<CloseFrame<'static>>),
    /// The TCP connection ended without a close frame.
    Abrupt(String),
}

/// A blocking WebSocket client of the access protocol.
pub struct WsClient {
    /// The socket.
    pub ws: WebSocket<MaybeTlsStream<TcpStream>>,
    next_seq: u64,
    pushes: VecDeque<Value>,
    responses: VecDeque<Value>,
    /// The `hello` push's body.
    pub hello: Value,
}

/// A rustls client config that trusts exactly `ca_pem`.
pub fn tls_client_config(ca_pem: &str) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

impl WsClient {
    /// Connects to `server` as `platform`/`instance` and reads `hello`.
    pub fn connect(server: &DevServer, platform: &str, instance: &str) -> WsClient {
        assert!(
            !server.tls,
            "use connect_url with a TLS config for a wss server"
        );
        WsClient::connect_url(&server.ws_url(platform, instance), None).unwrap()
    }

    /// Connects to `url` (with `tls` for wss://) and reads `hello`.
    pub fn connect_url(
        url: &str,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<WsClient, tungstenite::Error> {
        let (host, port) = {
            let rest = url.split_once("://").map(|x| x.1).unwrap_or(url);
            let hostport = rest.split('/').next().unwrap();
            let (h, p) = hostport.rsplit_once(':').unwrap();
            (h.to_string(), p.parse::<u16>().unwrap())
        };
        let tcp = TcpStream::connect((host.as_str(), port)).map_err(tungstenite::Error::Io)?;
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let connector = tls.map(tungstenite::Connector::Rustls);
        let (ws, _) = tungstenite::client_tls_with_config(url, tcp, None, connector).map_err(
            |e| match e {
                tungstenite::HandshakeError::Failure(e) => e,
                tungstenite::HandshakeError::Interrupted(_) => {
                    tungstenite::Error::Io(std::io::ErrorKind::TimedOut.into())
                }
            },
        )?;
        let mut c = WsClient {
            ws,
            next_seq: 0,
            pushes: VecDeque::new(),
            responses: VecDeque::new(),
            hello: Value::Null,
        };
        let hello = c.next_push(Duration::from_secs(10)).expect("hello push");
        assert_eq!(hello["push"], "hello", "first frame must be hello: {hello}");
        c.hello = hello["body"].clone();
        Ok(c)
    }

    fn tcp(&self) -> &TcpStream {
        match self.ws.get_ref() {
            MaybeTlsStream::Plain(s) => s,
            MaybeTlsStream::Rustls(s) => s.get_ref(),
            _ => unreachable!("no other TLS backend is enabled"),
        }
    }

    /// Sends a raw text frame.
    pub fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).unwrap();
    }

    /// Sends any message.
    pub fn send_message(&mut self, m: Message) -> Result<(), tungstenite::Error> {
        self.ws.send(m)
    }

    /// The next raw message within `timeout` (`Ok(None)` on timeout).
    pub fn next_message(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<Message>, tungstenite::Error> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.tcp().set_read_timeout(Some(left)).unwrap();
            match self.ws.read() {
                Ok(m) => return Ok(Some(m)),
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    continue
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads one JSON frame into the queues; false on timeout.
    fn pump(&mut self, deadline: Instant) -> bool {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_message(left).unwrap() {
                None => return false,
                Some(Message::Text(t)) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    if v.get("push").is_some() {
                        self.pushes.push_back(v);
                    } else {
                        self.responses.push_back(v);
                    }
                    return true;
                }
                Some(Message::Close(f)) => {
                    panic!("connection closed while waiting for a frame: {f:?}")
                }
                Some(_) => continue,
            }
        }
    }

    /// Sends a request and waits (10 s) for its response; pushes meanwhile are queued.
    pub fn request(&mut self, cmd: &str, body: Value) -> Value {
        self.request_within(cmd, body, Duration::from_secs(10))
            .unwrap_or_else(|| panic!("no response to {cmd} within 10 s"))
    }

    /// Like [`request`](Self::request) with a deadline; `None` when no response came.
    pub fn request_within(&mut self, cmd: &str, body: Value, timeout: Duration) -> Option<Value> {
        self.next_seq += 1;
        let seq = self.next_seq;
        self.send_text(&json!({"seq": seq, "cmd": cmd, "body": body}).to_string());
        self.response(seq, timeout)
    }

    /// Waits for the response with `seq`.
    pub fn response(&mut self, seq: u64, timeout: Duration) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self.responses.iter().position(|r| r["seq"] == seq) {
                return self.responses.remove(i);
            }
            if !self.pump(deadline) {
                return None;
            }
        }
    }

    /// `login`; returns the response frame.
    pub fn login(&mut self, user: &str, sig: &str, auto: bool) -> Value {
        self.request(
            "login",
            json!({"userID": user, "userSig": sig, "auto": auto}),
        )
    }

    /// The next push within `timeout`.
    pub fn next_push(&mut self, timeout: Duration) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(p) = self.pushes.pop_front() {
                return Some(p);
            }
            if !self.pump(deadline) {
                return None;
            }
        }
    }

    /// The next push, which must be `name`; returns its body.
    pub fn expect_push(&mut self, name: &str, timeout: Duration) -> Value {
        let p = self
            .next_push(timeout)
            .unwrap_or_else(|| panic!("no {name} push within {timeout:?}"));
        assert_eq!(p["push"], name, "expected {name}, got {p}");
        p["body"].clone()
    }

    /// Asserts that no push arrives within `quiet`. A quiet window proves little and
    /// costs time: prefer [`assert_no_pending_push`](Self::assert_no_pending_push).
    pub fn assert_no_push(&mut self, quiet: Duration) {
        if let Some(p) = self.next_push(quiet) {
            panic!("unexpected push {p}");
        }
    }

    /// Asserts that the server has queued no push for this connection: makes a
    /// `heartbeat` round trip and checks that no push came before (or with) its response.
    ///
    /// Deterministic: the server sends every push it queued for a connection before it
    /// reads the connection's next request, and the pushes that logins, kicks and REST
    /// calls cause are queued before those calls are answered. So anything that happened
    /// before this call and pushed to this connection shows up here. (A push from a
    /// timer, such as a ticket expiring, counts only once its timer has fired.)
    pub fn assert_no_pending_push(&mut self) {
        let r = self.request("heartbeat", json!({}));
        assert_eq!(r["code"], 0, "heartbeat: {r}");
        if let Some(p) = self.pushes.pop_front() {
            panic!("unexpected push {p}");
        }
    }

    /// Waits until the connection ends; says how.
    pub fn wait_close(&mut self, timeout: Duration) -> Closed {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "connection still open after {timeout:?}");
            match self.next_message(left) {
                Ok(Some(Message::Close(f))) => return Closed::Frame(f.map(|f| f.into_owned())),
                Ok(_) => continue,
                Err(tungstenite::Error::ConnectionClosed) => return Closed::Frame(None),
                Err(e) => return Closed::Abrupt(e.to_string()),
            }
        }
    }
}
