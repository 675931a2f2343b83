//! `make bench` / `make bench-smoke`: imlink's figures side by side with their anchors.
//!
//! Every figure is measured in the same run as its anchor, with the same client code,
//! and reported as a ratio:
//!
//! - RPC: `getLoginStatus` round trips over the daemon's socket against a minimal
//!   Unix-socket echo server (the floor, in this process) and Redis `PING` over its
//!   Unix socket; one request in flight per client, blocking client threads.
//! - Fan-out: `POST /faults/push-burst` on the devserver → the daemon → S subscribers,
//!   against Redis `PUBLISH` → S `SUBSCRIBE` connections with the same payload size; one
//!   subscriber client (a single-threaded tokio reader) for both.
//! - Reconnect: devserver restart → LOGINED (minus the pending backoff wait), restart +
//!   `reconnect` RPC → LOGINED (against the harness's own WebSocket connect + login),
//!   `/faults/silence` → loss detected (against the configured heartbeat timeout).
//! - Memory: VmRSS of the daemon idle and with idle subscribers, of the devserver with
//!   idle WebSocket connections, beside redis-server measured the same way.
//! - Start-up: exec → `READY=1` on a fake `NOTIFY_SOCKET`, exec → socket answering,
//!   beside redis-server (`--supervised systemd`).
//! - The Tencent link (`server.backend = "tencent"`, needs node and the bridge's
//!   packages): `login` over the daemon's socket → answered, through the bridge and the
//!   official SDK, against the SDK alone driven by a Node script (`login()` → `SDK_READY`)
//!   on the same devserver; the bridge's RSS against that script's; the daemon's RSS with
//!   the bridge against the native daemon's; the SDK alone with and without `--jitless`.
//!
//! Only Unix sockets and loopback; every wait has a deadline. Usage:
//!
//!     bench --bin-dir target/release [--smoke] [--out bench/results/latest.md]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::RefCell;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Barrier, LazyLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

const APP: u64 = 1400000001;
const KEY: &str = "imlink-bench-secret-0123456789";
const USER: &str = "benchuser";
const HEARTBEAT_INTERVAL_MS: u64 = 250;
const HEARTBEAT_TIMEOUT_MS: u64 = 750;
const RECONNECT_INITIAL_MS: u64 = 200;
const STABLE_MS: u64 = 500;
/// The heartbeat of the many-accounts rows.
const ACCOUNTS_HEARTBEAT_MS: u64 = 5_000;
/// The request every RPC client sends, byte for byte (the echo floor gets the same).
const RPC_REQ: &[u8] = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"getLoginStatus\"}\n";
/// The markers searched for in every event line, each searcher built once: the harness
/// shares the two cores with what it measures, so its own cost per line is kept small.
type Mark = memchr::memmem::Finder<'static>;

static SEQ_MARK: LazyLock<Mark> = LazyLock::new(|| Mark::new(b"Tag_Profile_Custom_Seq\":\""));
static SENT_MARK: LazyLock<Mark> = LazyLock::new(|| Mark::new(b"Tag_Profile_Custom_SentAtMs\":\""));
/// The same instant in µs (devservers of this version stamp both).
static SENT_US_MARK: LazyLock<Mark> =
    LazyLock::new(|| Mark::new(b"Tag_Profile_Custom_SentAtUs\":\""));
static LOST_MARK: LazyLock<Mark> = LazyLock::new(|| Mark::new(b"eventsLost"));

// ------------------------------------------------------------------ scale

/// How much of everything: the full run, or tiny counts for `make test`.
struct Scale {
    smoke: bool,
    lat_requests: usize,
    tput: Duration,
    clients: [usize; 3],
    /// (subscribers, events) as fast as possible.
    fan: Vec<(usize, u64)>,
    /// (subscribers, rate per second, events) paced. The full run paces each row for 5 s:
    /// a p99 of 1,500 deliveries (1.5 s at 1,000/s) was the 15th-slowest of them, so one
    /// stall of the shared host for 15 ms decided it alone.
    fan_rate: Vec<(usize, u64, u64)>,
    rounds: usize,
    /// Login/logout cycles through the Tencent link.
    sdk_logins: usize,
    mem_subs: usize,
    dev_conns: usize,
    /// Accounts in one daemon (`accounts.multi`), and their login rate.
    accounts: usize,
    login_rate: u64,
    /// Accounts in one daemon on the Tencent link (a bridge process each).
    tencent_accounts: usize,
    starts: usize,
    deadline: Duration,
}

impl Scale {
    fn new(smoke: bool) -> Scale {
        if smoke {
            Scale {
                smoke,
                lat_requests: 300,
                tput: Duration::from_millis(200),
                clients: [1, 16, 64],
                fan: vec![(1, 50), (5, 20), (20, 10)],
                fan_rate: vec![(1, 200, 20), (5, 100, 10), (20, 50, 5)],
                rounds: 1,
                sdk_logins: 2,
                mem_subs: 20,
                dev_conns: 100,
                accounts: 50,
                login_rate: 200,
                tencent_accounts: 2,
                starts: 2,
                deadline: Duration::from_secs(15),
            }
        } else {
            Scale {
                smoke,
                lat_requests: 20_000,
                tput: Duration::from_secs(2),
                clients: [1, 16, 64],
                fan: vec![(1, 20_000), (100, 2_000), (1_000, 500)],
                fan_rate: vec![(1, 1_000, 5_000), (100, 200, 1_000), (1_000, 50, 250)],
                rounds: 7,
                sdk_logins: 20,
                mem_subs: 1_000,
                dev_conns: 10_000,
                accounts: 10_000,
                login_rate: 200,
                tencent_accounts: 10,
                starts: 10,
                deadline: Duration::from_secs(60),
            }
        }
    }
}

// ------------------------------------------------------------------ the table

struct Row {
    figure: String,
    imlink: String,
    anchor: String,
    ratio: String,
    target: String,
}

#[derive(Default)]
struct Table {
    rows: Vec<Row>,
    notes: Vec<String>,
}

fn fmt_num(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

impl Table {
    fn row(&mut self, figure: &str, imlink: String, anchor: String, ratio: String, target: &str) {
        println!("  {figure}: imlink {imlink} | anchor {anchor} | ratio {ratio} {target}");
        self.rows.push(Row {
            figure: figure.into(),
            imlink,
            anchor,
            ratio,
            target: target.into(),
        });
    }

    /// A row of two numbers with units; the ratio is imlink / anchor.
    fn pair(
        &mut self,
        figure: &str,
        imlink: Option<f64>,
        anchor: Option<f64>,
        unit: &str,
        anchor_name: &str,
        target: &str,
    ) {
        let show = |v: Option<f64>| match v {
            Some(v) => format!("{} {unit}", fmt_num(v)),
            None => "n/a".into(),
        };
        let ratio = match (imlink, anchor) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
            _ => "n/a".into(),
        };
        let anchor_s = if anchor_name.is_empty() {
            show(anchor)
        } else {
            format!("{} ({anchor_name})", show(anchor))
        };
        self.row(figure, show(imlink), anchor_s, ratio, target);
    }

    fn note(&mut self, n: impl Into<String>) {
        let n = n.into();
        println!("  note: {n}");
        self.notes.push(n);
    }

    fn markdown(&self) -> String {
        let mut s = String::from(
            "| figure | imlink | anchor | ratio | target |\n| --- | --- | --- | --- | --- |\n",
        );
        for r in &self.rows {
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} |\n",
                r.figure, r.imlink, r.anchor, r.ratio, r.target
            ));
        }
        if !self.notes.is_empty() {
            s.push('\n');
            for n in &self.notes {
                s.push_str(&format!("- {n}\n"));
            }
        }
        s
    }
}

// ------------------------------------------------------------------ small helpers

fn unix_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn pct<T: Copy + Ord>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    Some(sorted[i.min(sorted.len() - 1)])
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    Some(v[v.len() / 2])
}

fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let l = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    l.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time (user, system, in clock ticks of 10 ms) and context switches (all threads) of
/// a process so far, from /proc: a profile that costs nothing while measuring. (Syscall
/// counts from /proc/PID/io would not compare: Rust's sockets use send/recv, which it does
/// not count, Redis uses read/write, which it does.)
#[derive(Clone, Copy, Default)]
struct Counters {
    utime: u64,
    stime: u64,
    switches: u64,
}

fn counters(pid: u32) -> Option<Counters> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After "pid (comm) ": field 3 is index 0; utime is field 14, stime 15.
    let utime = f.get(11)?.parse().ok()?;
    let stime = f.get(12)?.parse().ok()?;
    let mut switches = 0;
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let st = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
        for l in st.lines() {
            if let Some(v) = l
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| l.strip_prefix("nonvoluntary_ctxt_switches:"))
            {
                switches += v.trim().parse::<u64>().unwrap_or(0);
            }
        }
    }
    Some(Counters {
        utime,
        stime,
        switches,
    })
}

/// What one unit of work (a request, a delivery) cost the server process.
fn cost_text(before: Option<Counters>, after: Option<Counters>, units: u64) -> String {
    match (before, after) {
        (Some(b), Some(a)) if units > 0 => {
            let u = units as f64;
            let user = (a.utime - b.utime) as f64 * 10_000.0 / u;
            let sys = (a.stime - b.stime) as f64 * 10_000.0 / u;
            format!(
                "{:.2} µs CPU (user {:.2}, sys {:.2}), {:.3} context switches",
                user + sys,
                user,
                sys,
                (a.switches - b.switches) as f64 / u,
            )
        }
        _ => "n/a".into(),
    }
}

/// Polls `f` every `every` until it returns Some, or `deadline` passes.
fn poll<T>(deadline: Duration, every: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(every);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}

/// The digits after `mark` in `line`.
fn num_after(line: &[u8], mark: &Mark) -> Option<u64> {
    let at = mark.find(line)? + mark.needle().len();
    let mut v: u64 = 0;
    let mut any = false;
    for &b in &line[at..] {
        if !b.is_ascii_digit() {
            break;
        }
        v = v * 10 + u64::from(b - b'0');
        any = true;
    }
    any.then_some(v)
}

/// A child process killed when dropped.
struct Proc {
    child: Child,
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn log_file(dir: &Path, name: &str) -> Stdio {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(name))
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::null())
}

// ------------------------------------------------------------------ devserver

struct DevServer {
    proc: Option<Proc>,
    addr: SocketAddr,
    bin: PathBuf,
    dir: PathBuf,
}

impl DevServer {
    fn start(bin_dir: &Path, dir: &Path) -> DevServer {
        let mut d = DevServer {
            proc: None,
            addr: "127.0.0.1:0".parse().unwrap(),
            bin: bin_dir.join("imlink-devserver"),
            dir: dir.to_owned(),
        };
        d.spawn("127.0.0.1:0");
        d
    }

    /// Starts the process; returns when it printed `listening on` (the socket accepts).
    fn spawn(&mut self, listen: &str) -> Instant {
        let mut child = Command::new(&self.bin)
            .args([
                "--listen",
                listen,
                "--app",
                &format!("{APP}:{KEY}"),
                "--faults",
            ])
            .env(
                "IMLINK_DEVSERVER_LOG",
                std::env::var("IMLINK_DEVSERVER_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file(&self.dir, "devserver.log"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bin.display()));
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let at = Instant::now();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("devserver said {line:?}"));
        self.addr = addr.parse().unwrap();
        self.proc = Some(Proc { child });
        at
    }

    fn kill(&mut self) {
        self.proc = None;
    }

    /// Starts it again on the same port.
    fn restart(&mut self) -> Instant {
        let a = self.addr.to_string();
        self.spawn(&a)
    }

    fn url(&self) -> String {
        format!("ws://{}/v1/connect", self.addr)
    }

    fn pid(&self) -> u32 {
        self.proc.as_ref().unwrap().pid()
    }

    /// Whether the server holds the daemon's login (platform Linux) online: the daemon
    /// signals a silent re-login with no event, so the server is asked.
    fn daemon_online(&self) -> bool {
        let (code, body) = self.http("GET", "/debug/sessions", Duration::from_secs(2));
        code == 200
            && serde_json::from_str::<Value>(&body).is_ok_and(|v| {
                v["sessions"].as_array().is_some_and(|a| {
                    a.iter()
                        .any(|s| s["platform"] == "Linux" && s["state"] == "online")
                })
            })
    }

    /// Polls [`DevServer::daemon_online`] (about every 0.3 ms); the first time it held.
    fn wait_daemon_online(&self, timeout: Duration) -> Option<Instant> {
        poll(timeout, Duration::from_micros(100), || {
            self.daemon_online().then(Instant::now)
        })
    }

    /// `POST path` with an empty body; (status, body).
    fn post(&self, path: &str, timeout: Duration) -> (u16, String) {
        self.http("POST", path, timeout)
    }

    fn http(&self, method: &str, path: &str, timeout: Duration) -> (u16, String) {
        let Ok(mut s) = TcpStream::connect(self.addr) else {
            return (0, String::new());
        };
        s.set_read_timeout(Some(timeout)).unwrap();
        let _ = s.set_nodelay(true);
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.addr
        )
        .unwrap();
        let mut resp = String::new();
        let _ = s.read_to_string(&mut resp);
        let status = resp
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = resp
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    }
}

// ------------------------------------------------------------------ daemon

struct Daemon {
    proc: Proc,
    socket: PathBuf,
    /// The daemon's own pid (the wrapper's child when BENCH_DAEMON_WRAPPER is set).
    pid: u32,
}

/// The first child of `pid`, or `pid` itself when it has none.
fn child_of(pid: u32) -> u32 {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .ok()
        .and_then(|c| c.split_whitespace().next().and_then(|p| p.parse().ok()))
        .unwrap_or(pid)
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // Under a profiler, stop gracefully (SIGTERM) so that it writes its output.
        if std::env::var_os("BENCH_DAEMON_WRAPPER").is_some() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.pid.to_string()])
                .status();
            let _ = poll(Duration::from_secs(60), Duration::from_millis(50), || {
                self.proc.child.try_wait().ok().flatten()
            });
        }
    }
}

fn daemon_config(dir: &Path, server_url: &str, queue: u64) -> PathBuf {
    let text = format!(
        "[sdk]\napp_id = {APP}\nlog_level = \"warn\"\n\n\
         [server]\nurl = {server_url:?}\nconnect_timeout_ms = 2000\nrequest_timeout_ms = 2000\n\
         login_timeout_ms = 5000\nheartbeat_interval_ms = {HEARTBEAT_INTERVAL_MS}\n\
         heartbeat_timeout_ms = {HEARTBEAT_TIMEOUT_MS}\n\n\
         [reconnect]\ninitial_ms = {RECONNECT_INITIAL_MS}\nmax_ms = 1000\nmultiplier = 1.6\n\
         jitter = 0.2\nstable_ms = {STABLE_MS}\n\n\
         [api]\nsocket = {:?}\nmax_clients = 16384\nsubscriber_queue = {queue}\n\n\
         [events]\nhistory = {queue}\n\n\
         [state]\ndir = {:?}\n",
        dir.join("imlinkd.sock").display().to_string(),
        dir.join("state").display().to_string(),
    );
    let path = dir.join("imlinkd.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn spawn_daemon(bin_dir: &Path, config: &Path, dir: &Path, notify: Option<&Path>) -> Proc {
    // BENCH_DAEMON_WRAPPER="valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out"
    // runs the long-lived daemon under a profiler (start-up runs are never wrapped).
    let wrapper = std::env::var("BENCH_DAEMON_WRAPPER").unwrap_or_default();
    let mut words = wrapper.split_whitespace();
    let mut cmd = match words.next() {
        Some(w) => {
            let mut c = Command::new(w);
            c.args(words).arg(bin_dir.join("imlinkd"));
            c
        }
        None => Command::new(bin_dir.join("imlinkd")),
    };
    cmd.arg("--config")
        .arg(config)
        .env_remove("NOTIFY_SOCKET")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file(dir, "imlinkd.log"));
    if let Some(n) = notify {
        cmd.env("NOTIFY_SOCKET", n);
    }
    Proc {
        child: cmd.spawn().expect("start imlinkd"),
    }
}

/// One line-oriented JSON-RPC connection (blocking), for set-up and control.
struct Rpc {
    r: BufReader<UnixStream>,
    w: UnixStream,
    id: u64,
}

impl Rpc {
    fn connect(path: &Path) -> std::io::Result<Rpc> {
        let s = UnixStream::connect(path)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(Rpc {
            w: s.try_clone()?,
            r: BufReader::new(s),
            id: 100,
        })
    }

    /// Calls `method`; skips notifications; the whole reply.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.id += 1;
        let req = json!({"jsonrpc":"2.0","id":self.id,"method":method,"params":params});
        self.w.write_all(format!("{req}\n").as_bytes()).unwrap();
        for _ in 0..100_000 {
            let mut l = String::new();
            if self.r.read_line(&mut l).unwrap_or(0) == 0 {
                panic!("the daemon closed the connection during {method}");
            }
            let v: Value = serde_json::from_str(&l).unwrap();
            if v["id"] == json!(self.id) {
                return v;
            }
        }
        panic!("no reply to {method}");
    }

    fn result(&mut self, method: &str, params: Value) -> Value {
        let v = self.call(method, params);
        assert!(v.get("error").is_none(), "{method}: {v}");
        v["result"].clone()
    }
}

impl Daemon {
    fn start(bin_dir: &Path, dir: &Path, server_url: &str, queue: u64) -> Daemon {
        let config = daemon_config(dir, server_url, queue);
        Daemon::launch(bin_dir, &config, dir).expect("imlinkd did not listen within 60 s")
    }

    /// Starts imlinkd with `config` in `dir` and waits (60 s at most) until its socket
    /// takes connections.
    fn launch(bin_dir: &Path, config: &Path, dir: &Path) -> Option<Daemon> {
        let proc = spawn_daemon(bin_dir, config, dir, None);
        let socket = dir.join("imlinkd.sock");
        poll(Duration::from_secs(60), Duration::from_millis(5), || {
            UnixStream::connect(&socket).ok()
        })?;
        let pid = if std::env::var_os("BENCH_DAEMON_WRAPPER").is_some() {
            child_of(proc.pid())
        } else {
            proc.pid()
        };
        Some(Daemon { proc, socket, pid })
    }

    fn rpc(&self) -> Rpc {
        Rpc::connect(&self.socket).unwrap()
    }

    fn login(&self) {
        let sig = imlink::usersig::generate(APP, KEY, USER, 86_400, imlink::usersig::now_unix());
        let mut c = self.rpc();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = c.call("login", json!({"userID": USER, "userSig": sig}));
            if r.get("error").is_none() {
                return;
            }
            assert!(Instant::now() < deadline, "login failed: {r}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A subscriber connection read on a thread: every notification with its arrival time.
struct Events {
    rx: mpsc::Receiver<(Instant, Value)>,
    stop: Arc<AtomicBool>,
    /// The last events `wait` read (for the message of a failed wait).
    seen: RefCell<std::collections::VecDeque<Value>>,
}

impl Events {
    fn subscribe(socket: &Path) -> Events {
        let s = UnixStream::connect(socket).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut w = s.try_clone().unwrap();
        w.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"subscribe\"}\n")
            .unwrap();
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        std::thread::spawn(move || {
            let mut r = BufReader::new(s);
            let mut l = String::new();
            while !stop2.load(Ordering::Relaxed) {
                match r.read_line(&mut l) {
                    Ok(0) => return,
                    Ok(_) if l.ends_with('\n') => {
                        let at = Instant::now();
                        if let Ok(v) = serde_json::from_str::<Value>(&l) {
                            if v["method"] == "event" && tx.send((at, v["params"].clone())).is_err()
                            {
                                return;
                            }
                        }
                        l.clear();
                    }
                    Ok(_) => {}
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(_) => return,
                }
            }
        });
        Events {
            rx,
            stop,
            seen: RefCell::default(),
        }
    }

    /// The arrival time of the first event matching `f` within `timeout`.
    fn wait(&self, timeout: Duration, f: impl Fn(&Value) -> bool) -> Option<Instant> {
        let end = Instant::now() + timeout;
        loop {
            let left = end.checked_duration_since(Instant::now())?;
            let (at, v) = self.rx.recv_timeout(left).ok()?;
            let hit = f(&v);
            let mut seen = self.seen.borrow_mut();
            if seen.len() == 16 {
                seen.pop_front();
            }
            seen.push_back(v);
            if hit {
                return Some(at);
            }
        }
    }

    /// [`Events::wait`] for an event newer than seq `after` (one emitted before it may
    /// still be on its way to the reader: a drain does not make the stream current).
    fn wait_after(
        &self,
        after: u64,
        timeout: Duration,
        f: impl Fn(&Value) -> bool,
    ) -> Option<Instant> {
        self.wait(timeout, |v| {
            v["seq"].as_u64().is_some_and(|s| s > after) && f(v)
        })
    }

    /// Drops the events read so far and gives the seq of the newest one the daemon has
    /// emitted, to wait from with [`Events::wait_after`] (events emitted before it may
    /// still be on their way).
    fn mark(&self, ctl: &mut Rpc) -> u64 {
        while self.rx.try_recv().is_ok() {}
        status(ctl)["lastSeq"]
            .as_u64()
            .expect("status without lastSeq")
    }

    /// The last events read, oldest first, one per line.
    fn recent(&self) -> String {
        let seen = self.seen.borrow();
        seen.iter().map(|v| format!("\n  {v}")).collect()
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn is_connected(v: &Value) -> bool {
    v["event"] == "onConnectSuccess"
}

fn is_lost(v: &Value) -> bool {
    v["event"] == "onConnectFailed"
        || (v["event"] == "onLoginStatusChanged" && v["data"]["status"] == 2)
}

// ------------------------------------------------------------------ anchors: echo and Redis

/// The floor: a minimal echo server on a Unix socket, a thread per connection.
struct Echo {
    path: PathBuf,
    stop: Arc<AtomicBool>,
}

impl Echo {
    fn start(path: PathBuf) -> Echo {
        let l = UnixListener::bind(&path).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        std::thread::spawn(move || {
            for s in l.incoming() {
                if stop2.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(mut s) = s else { continue };
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    loop {
                        match s.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if s.write_all(&buf[..n]).is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        Echo { path, stop }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = UnixStream::connect(&self.path);
    }
}

fn find_redis() -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("redis-server"))
            .find(|c| c.is_file())
    })
}

struct Redis {
    proc: Proc,
    sock: PathBuf,
}

fn redis_cmd(bin: &Path, dir: &Path, sock: &Path, notify: Option<&Path>) -> Command {
    let mut c = Command::new(bin);
    c.arg("--port")
        .arg("0")
        .arg("--unixsocket")
        .arg(sock)
        .arg("--unixsocketperm")
        .arg("700")
        .arg("--save")
        .arg("")
        .arg("--appendonly")
        .arg("no")
        .arg("--dir")
        .arg(dir)
        .arg("--maxclients")
        .arg("12000")
        .arg("--client-output-buffer-limit")
        .arg("pubsub 0 0 0")
        .arg("--loglevel")
        .arg("warning")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(log_file(dir, "redis.log"))
        .stderr(log_file(dir, "redis.log"));
    if let Some(n) = notify {
        c.arg("--supervised").arg("systemd").env("NOTIFY_SOCKET", n);
    }
    c
}

fn redis_ping(sock: &Path) -> bool {
    let Ok(mut s) = UnixStream::connect(sock) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let mut buf = [0u8; 64];
    s.write_all(b"PING\r\n").is_ok()
        && matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
}

impl Redis {
    fn start(bin: &Path, dir: &Path) -> Redis {
        let sock = dir.join("redis.sock");
        let proc = Proc {
            child: redis_cmd(bin, dir, &sock, None)
                .spawn()
                .expect("start redis"),
        };
        poll(Duration::from_secs(10), Duration::from_millis(5), || {
            redis_ping(&sock).then_some(())
        })
        .expect("redis-server did not answer within 10 s");
        Redis { proc, sock }
    }
}

// ------------------------------------------------------------------ 1. RPC

/// One round trip: write `req`, read until `nl` newlines came back.
fn round_trip(s: &mut UnixStream, req: &[u8], nl: usize, buf: &mut [u8]) {
    s.write_all(req).unwrap();
    let mut seen = 0;
    while seen < nl {
        let n = s.read(buf).unwrap();
        assert!(n > 0, "the server closed the connection");
        seen += memchr::memchr_iter(b'\n', &buf[..n]).count();
    }
}

struct RpcTarget {
    path: PathBuf,
    req: Vec<u8>,
    nl: usize,
}

fn connect_rr(t: &RpcTarget) -> UnixStream {
    let s = UnixStream::connect(&t.path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// p50, p99 of `n` sequential round trips on one connection per target, after a warm-up.
/// The targets take turns in slices of `n / SLICES` so that drift on a shared machine
/// (other processes, CPU frequency) hits all of them alike.
///
/// Each target has a client thread of its own, and the threads take turns. With one
/// client thread for all of them, the servers' threads competed for the client's CPU: on
/// a 2-CPU virtual machine the server the scheduler kept on the client's CPU answered in
/// about 10 µs and the other, woken on the other CPU, in 40–60 µs, the same server either
/// way round (BENCHMARKS.md, "A thread for a poller"). A client of its own lets each
/// server's placement settle against its own client only.
fn rpc_latency(targets: &[&RpcTarget], n: usize) -> Vec<(Duration, Duration)> {
    const SLICES: usize = 10;
    let per_slice = n.div_ceil(SLICES);
    let warm = (n / 10).max(50);
    let mut turns = Vec::new();
    let mut clients = Vec::new();
    for t in targets {
        // A turn: the warm-up (the first) or a slice; each answered when done.
        let (go, turn) = std::sync::mpsc::channel::<()>();
        let (done, finished) = std::sync::mpsc::channel::<()>();
        let mut s = connect_rr(t);
        let (req, nl) = (t.req.clone(), t.nl);
        clients.push(std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut v = Vec::with_capacity(per_slice * SLICES);
            if turn.recv().is_err() {
                return v;
            }
            for _ in 0..warm {
                round_trip(&mut s, &req, nl, &mut buf);
            }
            done.send(()).unwrap();
            while turn.recv().is_ok() {
                for _ in 0..per_slice {
                    let a = Instant::now();
                    round_trip(&mut s, &req, nl, &mut buf);
                    v.push(a.elapsed());
                }
                done.send(()).unwrap();
            }
            v
        }));
        turns.push((go, finished));
    }
    for _ in 0..=SLICES {
        for (go, finished) in &turns {
            go.send(()).unwrap();
            finished.recv().unwrap();
        }
    }
    drop(turns);
    clients
        .into_iter()
        .map(|c| {
            let mut v = c.join().unwrap();
            v.sort();
            (pct(&v, 0.5).unwrap(), pct(&v, 0.99).unwrap())
        })
        .collect()
}

/// Requests per second with `clients` connections, one request in flight each.
fn rpc_throughput(t: &RpcTarget, clients: usize, dur: Duration) -> f64 {
    let barrier = Arc::new(Barrier::new(clients + 1));
    let start_at = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            let mut s = connect_rr(t);
            let req = t.req.clone();
            let nl = t.nl;
            let barrier = barrier.clone();
            let start_at = start_at.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                // Warm-up, then the measured window.
                for _ in 0..20 {
                    round_trip(&mut s, &req, nl, &mut buf);
                }
                // Everyone warmed up; then the start time is set; then go.
                barrier.wait();
                barrier.wait();
                let start = start_at.lock().unwrap().expect("start set");
                let end = start + dur;
                let mut count = 0u64;
                while Instant::now() < end {
                    round_trip(&mut s, &req, nl, &mut buf);
                    count += 1;
                }
                count
            })
        })
        .collect();
    barrier.wait();
    *start_at.lock().unwrap() = Some(Instant::now() + Duration::from_millis(2));
    barrier.wait();
    let total: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    total as f64 / dur.as_secs_f64()
}

fn rpc_cost(t: &RpcTarget, pid: u32, n: u64) -> String {
    let mut s = connect_rr(t);
    let mut buf = [0u8; 4096];
    let c0 = counters(pid);
    for _ in 0..n {
        round_trip(&mut s, &t.req, t.nl, &mut buf);
    }
    cost_text(c0, counters(pid), n)
}

struct RpcFigures {
    p50: Duration,
    p99: Duration,
    tput: Vec<f64>,
}

/// Latency and throughput of every target; throughput runs take turns in rounds too.
fn rpc_figures(targets: &[&RpcTarget], sc: &Scale) -> Vec<RpcFigures> {
    const ROUNDS: u32 = 4;
    let lat = rpc_latency(targets, sc.lat_requests);
    let mut tput = vec![vec![0.0; sc.clients.len()]; targets.len()];
    for _ in 0..ROUNDS {
        for (ci, &c) in sc.clients.iter().enumerate() {
            for (ti, t) in targets.iter().enumerate() {
                tput[ti][ci] += rpc_throughput(t, c, sc.tput / ROUNDS) / f64::from(ROUNDS);
            }
        }
    }
    lat.into_iter()
        .zip(tput)
        .map(|((p50, p99), tput)| RpcFigures { p50, p99, tput })
        .collect()
}

fn bench_rpc(tb: &mut Table, sc: &Scale, daemon: &Daemon, tmp: &Path, redis: Option<&Redis>) {
    println!("== RPC: getLoginStatus round trips");
    let req = RPC_REQ.to_vec();
    let mut probe = daemon.rpc();
    assert_eq!(probe.result("getLoginStatus", json!({}))["status"], 1);
    let echo = Echo::start(tmp.join("echo.sock"));
    let im = RpcTarget {
        path: daemon.socket.clone(),
        req: req.clone(),
        nl: 1,
    };
    let floor = RpcTarget {
        path: echo.path.clone(),
        req: req.clone(),
        nl: 1,
    };
    // Redis: inline PING with an argument padding the request to the same size; the
    // reply is a bulk string (two lines).
    let pad = "x".repeat(req.len() - "PING \r\n".len());
    let red = redis.map(|r| RpcTarget {
        path: r.sock.clone(),
        req: format!("PING {pad}\r\n").into_bytes(),
        nl: 2,
    });
    // The three take turns so that drift on a shared machine hits all of them alike.
    let mut targets = vec![&im, &floor];
    targets.extend(red.as_ref());
    let mut figs = rpc_figures(&targets, sc).into_iter();
    let f_im = figs.next().unwrap();
    let f_floor = figs.next().unwrap();
    let f_red = figs.next();
    // Server cost per request, sequential (the echo floor runs in this process: none).
    let n_cost = sc.lat_requests as u64 / 4;
    let im_cost = rpc_cost(&im, daemon.pid, n_cost);
    let red_cost = red
        .as_ref()
        .zip(redis)
        .map(|(t, r)| rpc_cost(t, r.proc.pid(), n_cost));
    tb.note(format!(
        "RPC per request — imlinkd: {im_cost}; redis-server: {}",
        red_cost.as_deref().unwrap_or("n/a")
    ));
    drop(echo);
    let red_p50 = f_red.as_ref().map(|f| us(f.p50));
    let red_p99 = f_red.as_ref().map(|f| us(f.p99));
    tb.pair(
        "RPC p50, 1 client in sequence",
        Some(us(f_im.p50)),
        Some(us(f_floor.p50)),
        "µs",
        "echo floor",
        "≤ 1.3× echo",
    );
    tb.pair(
        "RPC p99, 1 client in sequence",
        Some(us(f_im.p99)),
        Some(us(f_floor.p99)),
        "µs",
        "echo floor",
        "",
    );
    tb.pair(
        "RPC p50, 1 client — vs Redis PING",
        Some(us(f_im.p50)),
        red_p50,
        "µs",
        "Redis",
        "",
    );
    tb.pair(
        "RPC p99, 1 client — vs Redis PING",
        Some(us(f_im.p99)),
        red_p99,
        "µs",
        "Redis",
        "",
    );
    for (i, &c) in sc.clients.iter().enumerate() {
        let target = if c >= 16 { "≥ 1.15× Redis" } else { "" };
        tb.pair(
            &format!("RPC req/s, {c} clients — vs Redis PING"),
            Some(f_im.tput[i]),
            f_red.as_ref().map(|f| f.tput[i]),
            "/s",
            "Redis",
            target,
        );
        tb.pair(
            &format!("RPC req/s, {c} clients — vs echo floor"),
            Some(f_im.tput[i]),
            Some(f_floor.tput[i]),
            "/s",
            "echo floor",
            "",
        );
    }
}

// ------------------------------------------------------------------ 2. fan-out

#[derive(Default)]
struct SubState {
    last: u64,
    count: u64,
    in_order: bool,
    lost: bool,
    done: Option<Instant>,
    lat_us: Vec<i64>,
    sample: Option<Vec<u8>>,
}

struct FanResult {
    complete: bool,
    delivered: u64,
    expected: u64,
    elapsed: Duration,
    /// Each delivery's latency, subscriber by subscriber in order of arrival.
    lat_us: Vec<i64>,
    sample: Option<Vec<u8>>,
    /// The server's CPU and syscalls per delivery.
    cost: String,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Imlink,
    Redis,
}

/// Connects and subscribes; returns the stream and any bytes read past the confirmation.
async fn subscribe_one(
    kind: Kind,
    path: &Path,
) -> std::io::Result<(tokio::net::UnixStream, Vec<u8>)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::UnixStream::connect(path).await?;
    let (req, done): (&[u8], &[u8]) = match kind {
        Kind::Imlink => (
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"subscribe\",\"params\":{\"events\":[\"onSelfInfoUpdated\"]}}\n",
            b"\"id\":1,",
        ),
        Kind::Redis => (b"SUBSCRIBE bench\r\n", b"\n:"),
    };
    s.write_all(req).await?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    for _ in 0..1000 {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        got.extend_from_slice(&buf[..n]);
        if let Some(i) = find(&got, done) {
            // The rest of that line is the confirmation; keep what follows it.
            let tail = i + done.len();
            if let Some(nl) = memchr::memchr(b'\n', &got[tail..]) {
                return Ok((s, got[tail + nl + 1..].to_vec()));
            }
        }
    }
    Err(std::io::ErrorKind::InvalidData.into())
}

/// Reads one subscriber's stream until it has event `n` (the state is shared so that a
/// time-out still reports how far it came).
async fn read_sub(
    mut s: tokio::net::UnixStream,
    carry: Vec<u8>,
    n: u64,
    st: Rc<RefCell<SubState>>,
    keep_sample: bool,
) {
    use tokio::io::AsyncReadExt;
    let mut pending = carry;
    let mut buf = vec![0u8; 16 * 1024];
    // Room for every latency up front: no reallocation while the burst is read.
    st.borrow_mut()
        .lat_us
        .reserve(usize::try_from(n).unwrap_or(0));
    loop {
        let k = match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(k) => k,
        };
        let now = Instant::now();
        let now_us = unix_us();
        pending.extend_from_slice(&buf[..k]);
        let mut start = 0;
        let mut g = st.borrow_mut();
        while let Some(i) = memchr::memchr(b'\n', &pending[start..]) {
            let line = &pending[start..start + i];
            start += i + 1;
            if let Some(seq) = num_after(line, &SEQ_MARK) {
                if seq != g.last + 1 {
                    g.in_order = false;
                }
                g.last = seq;
                g.count += 1;
                if let Some(sent) = num_after(line, &SENT_US_MARK) {
                    g.lat_us.push(now_us - sent as i64);
                } else if let Some(sent) = num_after(line, &SENT_MARK) {
                    // Only a whole-ms stamp: count from the middle of its millisecond.
                    g.lat_us.push(now_us - (sent as i64 * 1000 + 500));
                }
                if keep_sample && g.sample.is_none() {
                    g.sample = Some(line.to_vec());
                }
            } else if LOST_MARK.find(line).is_some() {
                g.lost = true;
            }
        }
        pending.drain(..start);
        if g.last >= n {
            g.done = Some(now);
            return;
        }
    }
}

/// S subscribers of `path`; `trigger` starts the N events once all are subscribed.
fn fanout(
    kind: Kind,
    path: &Path,
    pid: u32,
    s: usize,
    n: u64,
    deadline: Duration,
    trigger: impl FnOnce(),
) -> FanResult {
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
    let path = path.to_owned();
    let h = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut subs = Vec::with_capacity(s);
            for _ in 0..s {
                match subscribe_one(kind, &path).await {
                    Ok(x) => subs.push(x),
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("subscribe: {e}")));
                        return Vec::new();
                    }
                }
            }
            let states: Vec<_> = (0..s)
                .map(|_| {
                    Rc::new(RefCell::new(SubState {
                        in_order: true,
                        ..SubState::default()
                    }))
                })
                .collect();
            let readers = subs
                .into_iter()
                .zip(&states)
                .enumerate()
                .map(|(i, ((st, carry), state))| read_sub(st, carry, n, state.clone(), i == 0));
            let _ = ready_tx.send(Ok(()));
            let _ = tokio::time::timeout(deadline, futures_util::future::join_all(readers)).await;
            states
                .into_iter()
                .map(|r| std::mem::take(&mut *r.borrow_mut()))
                .collect::<Vec<SubState>>()
        })
    });
    let ok = ready_rx
        .recv_timeout(deadline)
        .unwrap_or_else(|_| Err("set-up timed out".into()));
    if let Err(e) = ok {
        panic!("fan-out set-up failed ({s} subscribers): {e}");
    }
    let c0 = counters(pid);
    let start = Instant::now();
    trigger();
    let states = h.join().unwrap();
    let c1 = counters(pid);
    let complete = states.len() == s
        && states
            .iter()
            .all(|x| x.last == n && x.count == n && x.in_order && !x.lost && x.done.is_some());
    let elapsed = states
        .iter()
        .filter_map(|x| x.done)
        .max()
        .map(|d| d.saturating_duration_since(start))
        .unwrap_or(deadline);
    // In order of arrival per subscriber (the paced rows sort them).
    let lat_us: Vec<i64> = states
        .iter()
        .flat_map(|x| x.lat_us.iter().copied())
        .collect();
    FanResult {
        complete,
        delivered: states.iter().map(|x| x.count).sum(),
        expected: s as u64 * n,
        elapsed,
        lat_us,
        sample: states.into_iter().find_map(|x| x.sample),
        cost: cost_text(c0, c1, s as u64 * n),
    }
}

/// Bursts per system for each fan-out throughput row (alternating; the median is kept).
const FAN_ROUNDS: usize = 9;

/// Paced bursts per system for each push→subscriber latency row (alternating; the
/// latencies pooled).
const RATE_ROUNDS: usize = 5;

/// Two bursts of the same row as one: their deliveries and latencies together (complete
/// only when both were; the last sample kept).
fn pool(acc: Option<FanResult>, one: FanResult) -> FanResult {
    let Some(mut a) = acc else { return one };
    a.complete &= one.complete;
    a.delivered += one.delivered;
    a.expected += one.expected;
    a.elapsed += one.elapsed;
    a.lat_us.extend_from_slice(&one.lat_us);
    if one.sample.is_some() {
        a.sample = one.sample;
    }
    a.cost = one.cost;
    a
}

/// The median burst by time to the last delivery; an incomplete burst, if any, instead
/// (so that a loss is never hidden by the other rounds).
fn median_round(mut rounds: Vec<FanResult>) -> FanResult {
    if let Some(i) = rounds.iter().position(|r| !r.complete) {
        return rounds.swap_remove(i);
    }
    rounds.sort_by_key(|r| r.elapsed);
    let mid = rounds.len() / 2;
    rounds.swap_remove(mid)
}

/// The payload for Redis: the imlink event line, split once around its three numbers so
/// that each message is written in pieces, with nothing searched or allocated per message.
struct Payload {
    /// The text before each number, and which number follows it (0 seq, 1 ms, 2 µs).
    parts: Vec<(Vec<u8>, usize)>,
    tail: Vec<u8>,
}

impl Payload {
    fn new(template: &[u8]) -> Payload {
        let mut at: Vec<(usize, usize, usize)> = [&*SEQ_MARK, &*SENT_MARK, &*SENT_US_MARK]
            .iter()
            .enumerate()
            .filter_map(|(which, m)| {
                let start = m.find(template)? + m.needle().len();
                let digits = template[start..]
                    .iter()
                    .take_while(|b| b.is_ascii_digit())
                    .count();
                Some((start, start + digits, which))
            })
            .collect();
        at.sort();
        let mut parts = Vec::new();
        let mut from = 0;
        for (start, end, which) in at {
            parts.push((template[from..start].to_vec(), which));
            from = end;
        }
        Payload {
            parts,
            tail: template[from..].to_vec(),
        }
    }

    /// Writes one PUBLISH of the line with this seq and send time.
    fn publish(&self, w: &mut impl Write, seq: u64, sent_us: i64) -> std::io::Result<()> {
        let mut bufs = [
            itoa::Buffer::new(),
            itoa::Buffer::new(),
            itoa::Buffer::new(),
        ];
        let [a, b, c] = &mut bufs;
        let nums = [
            a.format(seq).as_bytes(),
            b.format(sent_us / 1000).as_bytes(),
            c.format(sent_us).as_bytes(),
        ];
        let len = self.tail.len()
            + self
                .parts
                .iter()
                .map(|(p, which)| p.len() + nums[*which].len())
                .sum::<usize>();
        let mut head = itoa::Buffer::new();
        w.write_all(b"*3\r\n$7\r\nPUBLISH\r\n$5\r\nbench\r\n$")?;
        w.write_all(head.format(len).as_bytes())?;
        w.write_all(b"\r\n")?;
        for (p, which) in &self.parts {
            w.write_all(p)?;
            w.write_all(nums[*which])?;
        }
        w.write_all(&self.tail)?;
        w.write_all(b"\r\n")
    }
}

/// Publishes N messages to `bench`, pipelined (or R per second); checks the replies.
fn redis_publish(sock: &Path, template: &[u8], n: u64, rate: Option<u64>, subs: usize) {
    let s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let r = s.try_clone().unwrap();
    let drain = std::thread::spawn(move || {
        let mut r = BufReader::with_capacity(64 * 1024, r);
        let mut l = String::new();
        let mut last = String::new();
        for _ in 0..n {
            l.clear();
            if r.read_line(&mut l).unwrap_or(0) == 0 {
                break;
            }
            std::mem::swap(&mut last, &mut l);
        }
        last
    });
    let payload = Payload::new(template);
    let mut w = std::io::BufWriter::with_capacity(64 * 1024, s);
    let start = Instant::now();
    for i in 1..=n {
        if let Some(r) = rate {
            let at = start + Duration::from_micros((i - 1) * 1_000_000 / r);
            if let Some(d) = at.checked_duration_since(Instant::now()) {
                std::thread::sleep(d);
            }
        }
        payload.publish(&mut w, i, unix_us()).unwrap();
        if rate.is_some() {
            w.flush().unwrap();
        }
    }
    w.flush().unwrap();
    let last = drain.join().unwrap();
    assert_eq!(
        last.trim(),
        format!(":{subs}"),
        "PUBLISH reached {last:?} subscribers"
    );
}

fn fallback_template() -> Vec<u8> {
    // Roughly the size of an imlink onSelfInfoUpdated line, used only when imlink's
    // fan-out produced no sample.
    let mut t = b"{\"jsonrpc\":\"2.0\",\"method\":\"event\",\"params\":{\"subscription\":1,\"event\":\"onSelfInfoUpdated\",\"data\":{\"info\":{\"customInfo\":{\"Tag_Profile_Custom_Seq\":\"1\",\"Tag_Profile_Custom_SentAtMs\":\"0\",\"Tag_Profile_Custom_SentAtUs\":\"0\"},\"pad\":\"".to_vec();
    t.extend(std::iter::repeat_n(b'x', 200));
    t.extend_from_slice(b"\"}}}}");
    t
}

fn bench_fanout(
    tb: &mut Table,
    sc: &Scale,
    dev: &DevServer,
    daemon: &Daemon,
    redis: Option<&Redis>,
) {
    println!("== fan-out: selfInfoUpdated → S subscribers");
    let mut template: Option<Vec<u8>> = None;
    let post_burst = |n: u64, rate: Option<u64>| {
        let q = match rate {
            Some(r) => format!("/faults/push-burst?user={USER}&count={n}&rate={r}"),
            None => format!("/faults/push-burst?user={USER}&count={n}"),
        };
        let (code, body) = dev.post(&q, Duration::from_secs(60));
        assert_eq!(code, 200, "push-burst: {body}");
    };
    let describe = |r: &FanResult| -> String {
        if r.complete {
            String::new()
        } else {
            format!(
                " — INCOMPLETE: {} of {} delivered (lost, out of order or timed out)",
                r.delivered, r.expected
            )
        }
    };
    // One unmeasured burst through each system first, the largest of the rows at one
    // subscriber: the rows then measure a running service, not its first minute (the
    // daemon's event history filling fresh pages, either side's buffers growing).
    if let Some(n) = sc.fan.iter().map(|f| f.1).max() {
        let im = fanout(
            Kind::Imlink,
            &daemon.socket,
            daemon.pid,
            1,
            n,
            sc.deadline,
            || post_burst(n, None),
        );
        template = im.sample.clone();
        if let Some(r) = redis {
            let tpl = template.clone().unwrap_or_else(fallback_template);
            fanout(
                Kind::Redis,
                &r.sock,
                r.proc.pid(),
                1,
                n,
                sc.deadline,
                || redis_publish(&r.sock, &tpl, n, None, 1),
            );
        }
    }
    // Each row: FAN_ROUNDS bursts per system, alternating, the median of each kept (one
    // burst of a few tens of milliseconds is at the mercy of the host's scheduler).
    let rounds = if sc.smoke { 1 } else { FAN_ROUNDS };
    for &(s, n) in &sc.fan {
        let mut ims = Vec::new();
        let mut reds = Vec::new();
        for _ in 0..rounds {
            let im = fanout(
                Kind::Imlink,
                &daemon.socket,
                daemon.pid,
                s,
                n,
                sc.deadline,
                || post_burst(n, None),
            );
            if template.is_none() {
                template = im.sample.clone();
            }
            let tpl = template.clone().unwrap_or_else(fallback_template);
            println!(
                "  fan-out S={s} N={n} round {}: imlink {:.1} ms",
                ims.len() + 1,
                ms(im.elapsed)
            );
            ims.push(im);
            if let Some(r) = redis {
                reds.push(fanout(
                    Kind::Redis,
                    &r.sock,
                    r.proc.pid(),
                    s,
                    n,
                    sc.deadline,
                    || redis_publish(&r.sock, &tpl, n, None, s),
                ));
                if let Some(red) = reds.last() {
                    println!(
                        "  fan-out S={s} N={n} round {}: Redis {:.1} ms",
                        reds.len(),
                        ms(red.elapsed)
                    );
                }
            }
        }
        let im = median_round(ims);
        let red = redis.map(|_| median_round(reds));
        tb.note(format!(
            "fan-out S={s} per delivery — imlinkd: {}; redis-server: {}",
            im.cost,
            red.as_ref().map(|r| r.cost.as_str()).unwrap_or("n/a")
        ));
        for (who, r) in std::iter::once(("imlink", &im)).chain(red.iter().map(|r| ("Redis", r))) {
            if !r.complete {
                tb.note(format!("fan-out S={s} N={n} {who}{}", describe(r)));
            }
        }
        fn ok(r: &FanResult) -> Option<&FanResult> {
            r.complete.then_some(r)
        }
        tb.pair(
            &format!("fan-out S={s}, N={n}: all delivered, in order"),
            ok(&im).map(|r| ms(r.elapsed)),
            red.as_ref().and_then(ok).map(|r| ms(r.elapsed)),
            "ms",
            "Redis",
            "",
        );
        let dps = |r: &FanResult| r.expected as f64 / r.elapsed.as_secs_f64();
        tb.pair(
            &format!("fan-out S={s}: deliveries/s"),
            ok(&im).map(dps),
            red.as_ref().and_then(ok).map(dps),
            "/s",
            "Redis",
            match s {
                1 => "≥ 1× Redis",
                s if s >= 1000 => "≥ 1.3× Redis",
                _ => "",
            },
        );
    }
    let tpl = template.clone().unwrap_or_else(fallback_template);
    tb.note(format!(
        "fan-out payload: {} bytes per event line (the Redis message is the same line)",
        tpl.len() + 1
    ));
    // Each paced row: RATE_ROUNDS bursts per system, alternating, and the latencies of a
    // system's bursts pooled (a stretch of the shared host's noise then falls on both).
    let rate_rounds = if sc.smoke { 1 } else { RATE_ROUNDS };
    for &(s, rate, n) in &sc.fan_rate {
        let mut im: Option<FanResult> = None;
        let mut red: Option<FanResult> = None;
        for _ in 0..rate_rounds {
            let one = fanout(
                Kind::Imlink,
                &daemon.socket,
                daemon.pid,
                s,
                n,
                sc.deadline,
                || post_burst(n, Some(rate)),
            );
            im = Some(pool(im, one));
            if let Some(r) = redis {
                let one = fanout(
                    Kind::Redis,
                    &r.sock,
                    r.proc.pid(),
                    s,
                    n,
                    sc.deadline,
                    || redis_publish(&r.sock, &tpl, n, Some(rate), s),
                );
                red = Some(pool(red, one));
            }
        }
        let Some(mut im) = im else { continue };
        // BENCH_LAT_DUMP=FILE writes each delivery's latency in µs, in order of arrival
        // (a line "imlink µs" or "redis µs"): for profiling the tail.
        if let Ok(path) = std::env::var("BENCH_LAT_DUMP") {
            let mut text = String::new();
            for (who, r) in [("imlink", Some(&im)), ("redis", red.as_ref())] {
                for v in r.map(|r| r.lat_us.as_slice()).unwrap_or_default() {
                    text.push_str(&format!("{who} {v}\n"));
                }
            }
            let _ = std::fs::write(format!("{path}.S{s}"), text);
        }
        im.lat_us.sort_unstable();
        if let Some(r) = red.as_mut() {
            r.lat_us.sort_unstable();
        }
        for (who, r) in std::iter::once(("imlink", &im)).chain(red.iter().map(|r| ("Redis", r))) {
            if !r.complete {
                tb.note(format!(
                    "push→subscriber S={s} at {rate}/s {who}{}",
                    describe(r)
                ));
            }
        }
        let p = |r: &FanResult, q: f64| pct(&r.lat_us, q).map(|v| v as f64 / 1000.0);
        let slow = |r: &FanResult| r.lat_us.iter().filter(|&&v| v > 20_000).count();
        if !im.lat_us.is_empty() && slow(&im) > 0 {
            tb.note(format!(
                "push→subscriber S={s} at {rate}/s: {} of {} imlink deliveries took > 20 ms ({} for Redis)",
                slow(&im),
                im.lat_us.len(),
                red.as_ref().map(slow).unwrap_or(0)
            ));
        }
        let tail = |r: &FanResult| {
            let ms = |q| p(r, q).map_or("n/a".to_owned(), |v| format!("{v:.2}"));
            format!("p90 {} / p99.9 {} / max {} ms", ms(0.9), ms(0.999), ms(1.0))
        };
        tb.note(format!(
            "push→subscriber S={s} at {rate}/s, {} deliveries each — imlink: {}; Redis: {}",
            im.lat_us.len(),
            tail(&im),
            red.as_ref().map(tail).unwrap_or_else(|| "n/a".into())
        ));
        for (q, name) in [(0.5, "p50"), (0.99, "p99")] {
            tb.pair(
                &format!("push→subscriber {name}, S={s} at {rate}/s"),
                p(&im, q),
                red.as_ref().and_then(|r| p(r, q)),
                "ms",
                "Redis",
                match (q >= 0.99, s) {
                    (true, 1) => "≤ 2× Redis",
                    (true, s) if s >= 1000 => "≤ 1× Redis",
                    _ => "",
                },
            );
        }
    }
    tb.note("push→subscriber latency runs from the microsecond send stamp (Tag_Profile_Custom_SentAtUs, taken by the devserver as it queues the push and by the Redis publisher as it writes PUBLISH) to the subscriber's read, on the same clock. imlink's path is devserver → WebSocket → imlinkd → subscriber; Redis's is publisher → redis-server → subscriber.");
}

// ------------------------------------------------------------------ 3. reconnect

fn status(c: &mut Rpc) -> Value {
    c.result("status", json!({}))
}

/// The harness's own WebSocket connect + hello + login on the devserver: the floor of a
/// re-login.
fn ws_login_floor(dev: &DevServer, instance: &str) -> Option<Duration> {
    let url = format!(
        "ws://{}/v1/connect?sdkappid={APP}&platform=Windows&instanceid={instance}&ver=1",
        dev.addr
    );
    let sig = imlink::usersig::generate(APP, KEY, USER, 86_400, imlink::usersig::now_unix());
    let a = Instant::now();
    let (mut ws, _) = tungstenite::connect(url).ok()?;
    let _hello = ws.read().ok()?;
    let req = json!({"seq":1,"cmd":"login","body":{"userID":USER,"userSig":sig,"auto":false}});
    ws.send(tungstenite::Message::text(req.to_string())).ok()?;
    for _ in 0..100 {
        let m = ws.read().ok()?;
        if let Ok(t) = m.to_text() {
            let v: Value = serde_json::from_str(t).ok()?;
            if v["seq"] == 1 {
                let d = a.elapsed();
                if v["code"] != 0 {
                    return None;
                }
                let _ = ws.send(tungstenite::Message::text(
                    json!({"seq":2,"cmd":"logout","body":{}}).to_string(),
                ));
                let _ = ws.close(None);
                return Some(d);
            }
        }
    }
    None
}

fn bench_reconnect(tb: &mut Table, sc: &Scale, dev: &mut DevServer, daemon: &Daemon) {
    println!("== reconnect");
    let ev = Events::subscribe(&daemon.socket);
    let mut ctl = daemon.rpc();
    let t = Duration::from_secs(10);
    let settle = || std::thread::sleep(Duration::from_millis(STABLE_MS + 150));
    settle();

    // (a) restart, the daemon finds the server by itself after its backoff wait.
    let mut overhead = Vec::new();
    let mut waits = Vec::new();
    for _ in 0..sc.rounds {
        let after = ev.mark(&mut ctl);
        dev.kill();
        ev.wait_after(after, t, is_lost)
            .expect("loss not noticed after the devserver died");
        poll(t, Duration::from_millis(2), || {
            (status(&mut ctl)["connection"] == "waiting").then_some(())
        })
        .expect("daemon not waiting to retry");
        let t0 = dev.restart();
        let st = status(&mut ctl);
        let asked = Instant::now();
        let retry_at = match (st["connection"].as_str(), st["nextRetryMs"].as_u64()) {
            (Some("waiting"), Some(w)) => asked + Duration::from_millis(w),
            _ => t0,
        };
        let t1 = dev
            .wait_daemon_online(t)
            .expect("no re-login after restart");
        let from = retry_at.max(t0);
        waits.push(ms(from.saturating_duration_since(t0)));
        overhead.push(ms(t1.saturating_duration_since(from)));
        settle();
    }
    let wait_med = median(waits.clone());
    tb.row(
        "devserver restart → re-logged in, minus the pending backoff wait (median)",
        median(overhead.clone())
            .map(|v| format!("{} ms", fmt_num(v)))
            .unwrap_or("n/a".into()),
        wait_med
            .map(|v| format!("{} ms pending wait (median)", fmt_num(v)))
            .unwrap_or("n/a".into()),
        median(overhead.clone())
            .map(|v| format!("wait + {} ms", fmt_num(v)))
            .unwrap_or("n/a".into()),
        "≤ wait + 5 ms",
    );

    // (b) restart, then `reconnect` at once: no wait at all.
    let mut rpc_times = Vec::new();
    for _ in 0..sc.rounds {
        let after = ev.mark(&mut ctl);
        dev.kill();
        ev.wait_after(after, t, is_lost).expect("loss not noticed");
        poll(t, Duration::from_millis(2), || {
            (status(&mut ctl)["connection"] == "waiting").then_some(())
        })
        .expect("daemon not waiting to retry");
        let t0 = dev.restart();
        ctl.result("reconnect", json!({}));
        let t1 = dev
            .wait_daemon_online(t)
            .expect("no re-login after reconnect");
        rpc_times.push(ms(t1.saturating_duration_since(t0)));
        settle();
    }
    // (b') an explicit login on the live connection: `login` → reply `{}`. Each login
    // follows one of the harness's own (the anchor) made while the daemon is logged out,
    // so that both series take turns under the same conditions.
    let sig = imlink::usersig::generate(APP, KEY, USER, 86_400, imlink::usersig::now_unix());
    let mut logins = Vec::new();
    let mut floor = Vec::new();
    for i in 0..sc.rounds.max(3) * 3 {
        ctl.result("logout", json!({}));
        if let Some(d) = ws_login_floor(dev, &format!("bench-floor-{i}")) {
            floor.push(ms(d));
        }
        let a = Instant::now();
        let r = ctl.result("login", json!({"userID": USER, "userSig": sig}));
        logins.push(ms(a.elapsed()));
        assert_eq!(r, json!({}), "login: {r}");
    }
    tb.pair(
        "devserver restart + `reconnect` RPC → re-logged in (median)",
        median(rpc_times),
        median(floor.clone()),
        "ms",
        "WS connect+login by the harness",
        "",
    );
    tb.pair(
        "a `login` request → reply `{}`, connected to the devserver on loopback (median)",
        median(logins),
        median(floor),
        "ms",
        "WS connect+login by the harness",
        "≤ 2× the harness",
    );

    tb.note("re-logged in = the devserver holds the daemon's login online again (polled on /debug/sessions about every 0.3 ms: the daemon's silent re-login keeps LOGINED and emits no event); the pending wait is `nextRetryMs` of `status` read right after the restarted server accepts.");

    // (c) silent loss: detection against the configured heartbeat timeout.
    let mut detect = Vec::new();
    for _ in 0..sc.rounds {
        // The logins just before leave status events on their way: only what comes
        // after this seq counts (a stale LOGINING once ended the silence before the
        // daemon could notice it).
        let after = ev.mark(&mut ctl);
        let t0 = Instant::now();
        let (code, body) = dev.post(
            &format!("/faults/silence?ms={}", HEARTBEAT_TIMEOUT_MS * 3),
            Duration::from_secs(5),
        );
        assert_eq!(code, 200, "silence: {body}");
        let t1 = ev
            .wait_after(after, t, is_lost)
            .expect("silent loss never detected");
        detect.push(ms(t1.saturating_duration_since(t0)));
        // End the silence at once: a connection the daemon opens while the server is
        // still silent would go silent too and spill a loss into the next round.
        let _ = dev.post("/faults/clear", Duration::from_secs(5));
        if ev.wait_after(after, t, is_connected).is_none() {
            panic!(
                "no reconnect within {t:?} after the silence; the last events:{}",
                ev.recent()
            );
        }
        dev.wait_daemon_online(t)
            .expect("no re-login after the silence");
        settle();
    }
    let lo = detect.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = detect.iter().copied().fold(0.0, f64::max);
    tb.row(
        "silent loss → detected, from the start of the silence (median)",
        median(detect.clone())
            .map(|m| format!("{} ms (range {}–{})", fmt_num(m), fmt_num(lo), fmt_num(hi)))
            .unwrap_or("n/a".into()),
        format!(
            "{HEARTBEAT_TIMEOUT_MS} ms heartbeat_timeout_ms, ping every {HEARTBEAT_INTERVAL_MS} ms"
        ),
        median(detect)
            .map(|m| format!("{:.2}×", m / HEARTBEAT_TIMEOUT_MS as f64))
            .unwrap_or("n/a".into()),
        &format!(
            "timeout ± interval: {}–{} ms",
            HEARTBEAT_TIMEOUT_MS - HEARTBEAT_INTERVAL_MS,
            HEARTBEAT_TIMEOUT_MS + HEARTBEAT_INTERVAL_MS
        ),
    );
    tb.note("silent loss: the timeout runs from the last frame the daemon received (a pong up to one interval before the silence began) and is checked on the ping tick, so detection lands within timeout ± interval of the silence's start.");
}

// ------------------------------------------------------------------ 4. memory

fn open_subscribers(kind: Kind, path: &Path, n: usize) -> Vec<UnixStream> {
    let mut v = Vec::with_capacity(n);
    let mut buf = [0u8; 4096];
    for _ in 0..n {
        let mut s = UnixStream::connect(path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let req: &[u8] = match kind {
            Kind::Imlink => b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"subscribe\"}\n",
            Kind::Redis => b"SUBSCRIBE bench\r\n",
        };
        s.write_all(req).unwrap();
        // Wait for the confirmation so that the server has set the subscriber up.
        let mut got = Vec::new();
        for _ in 0..100 {
            let k = s.read(&mut buf).unwrap();
            assert!(k > 0, "closed while subscribing");
            got.extend_from_slice(&buf[..k]);
            let done = match kind {
                Kind::Imlink => find(&got, b"\"id\":1,").is_some(),
                Kind::Redis => find(&got, b"\n:").is_some(),
            };
            if done && got.ends_with(b"\n") {
                break;
            }
        }
        v.push(s);
    }
    v
}

// ------------------------------------------------------------------ many accounts

/// p50 of `getLoginStatus` round trips (one connection, `n` in a row) with `params`.
fn status_p50(sock: &Path, params: &str, n: usize) -> Option<Duration> {
    let mut s = UnixStream::connect(sock).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let req = format!("{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"getLoginStatus\"{params}}}\n");
    let mut buf = vec![0u8; 4096];
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        round_trip(&mut s, req.as_bytes(), 1, &mut buf);
        v.push(t.elapsed());
    }
    v.sort();
    pct(&v, 0.5)
}

/// Sends `login` for `users` on `conns` connections at once (a reader per connection);
/// returns how many were answered `{}`.
fn login_all(sock: &Path, users: &[String], conns: usize) -> usize {
    let chunks: Vec<Vec<String>> = users
        .chunks(users.len().div_ceil(conns.max(1)).max(1))
        .map(|c| c.to_vec())
        .collect();
    let handles: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            let sock = sock.to_owned();
            std::thread::spawn(move || {
                let s = UnixStream::connect(&sock).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(300))).unwrap();
                let n = chunk.len();
                let mut w = s.try_clone().unwrap();
                let writer = std::thread::spawn(move || {
                    let now = imlink::usersig::now_unix();
                    for (i, u) in chunk.iter().enumerate() {
                        let sig = imlink::usersig::generate(APP, KEY, u, 86_400, now);
                        let req = json!({"jsonrpc":"2.0","id":i,"method":"login","params":{"userID":u,"userSig":sig}});
                        if w.write_all(format!("{req}\n").as_bytes()).is_err() {
                            return;
                        }
                    }
                });
                let mut r = BufReader::new(s);
                let mut ok = 0;
                for _ in 0..n {
                    let mut l = String::new();
                    if r.read_line(&mut l).unwrap_or(0) == 0 {
                        break;
                    }
                    ok += usize::from(l.contains("\"result\":{}"));
                }
                let _ = writer.join();
                ok
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
}

fn bench_accounts(tb: &mut Table, sc: &Scale, bin_dir: &Path, tmp: &Path, single: &Daemon) {
    let n = sc.accounts;
    let rate = sc.login_rate;
    println!("== many accounts: {n} accounts through one daemon, accounts.login_rate = {rate}");
    let dir = tmp.join("accounts");
    std::fs::create_dir_all(&dir).unwrap();
    let mut dev = DevServer::start(bin_dir, &dir);
    let ddir = dir.join("daemon");
    std::fs::create_dir_all(&ddir).unwrap();
    let config = daemon_config(&ddir, &dev.url(), 4096);
    let mut text = std::fs::read_to_string(&config).unwrap();
    // The accounts wait their turn to connect: the login waits as long as the pace needs.
    text = text.replace("login_timeout_ms = 5000", "login_timeout_ms = 600000");
    // Heartbeats at a service's pace, not the fault rows' 250 ms (40,000/s for 10,000).
    text = text.replace(
        &format!("heartbeat_interval_ms = {HEARTBEAT_INTERVAL_MS}"),
        &format!("heartbeat_interval_ms = {ACCOUNTS_HEARTBEAT_MS}"),
    );
    text = text.replace(
        &format!("heartbeat_timeout_ms = {HEARTBEAT_TIMEOUT_MS}"),
        &format!("heartbeat_timeout_ms = {}", ACCOUNTS_HEARTBEAT_MS * 3),
    );
    text.push_str(&format!(
        "\n[accounts]\nmulti = true\nlogin_rate = {rate}\n"
    ));
    std::fs::write(&config, text).unwrap();
    let Some(daemon) = Daemon::launch(bin_dir, &config, &ddir) else {
        tb.note("many accounts: imlinkd did not start — rows skipped");
        return;
    };
    let (sock, pid) = (daemon.socket.clone(), daemon.pid);
    let base = settle_rss(pid);
    let mut ctl = Rpc::connect(&sock).unwrap();
    let online = |ctl: &mut Rpc| {
        ctl.result("metrics", json!({}))["online"]
            .as_u64()
            .unwrap_or(0)
    };
    let users: Vec<String> = (0..n).map(|i| format!("acct{i:05}")).collect();
    let budget = Duration::from_secs_f64(n as f64 / rate as f64 + 5.0);
    let deadline = budget + Duration::from_secs(120);

    let t0 = Instant::now();
    let answered = login_all(&sock, &users, 8);
    let all_in = poll(deadline, Duration::from_millis(20), || {
        (online(&mut ctl) == n as u64).then(Instant::now)
    });
    let login_time = all_in.map(|t| t - t0);
    tb.row(
        &format!("{n} accounts logged in through one daemon (login_rate {rate}/s)"),
        match login_time {
            Some(d) => format!("{:.1} s ({answered} answered {{}})", d.as_secs_f64()),
            None => format!(
                "not all within {:.0} s ({answered} answered {{}})",
                deadline.as_secs_f64()
            ),
        },
        "1 account: see the login rows".into(),
        "n/a".into(),
        &format!("≤ {:.0} s (n / login_rate + 5 s)", budget.as_secs_f64()),
    );
    let rss = settle_rss(pid);
    let per = match (rss, base) {
        (Some(a), Some(b)) if n > 0 => Some(a.saturating_sub(b) as f64 / n as f64),
        _ => None,
    };
    tb.pair(
        "imlinkd RSS per logged-in idle account (native link)",
        per,
        None,
        "KiB",
        "",
        "≤ 48 KiB",
    );
    tb.pair(
        "imlinkd RSS with all accounts",
        rss.map(mib),
        base.map(mib),
        "MiB",
        "no account",
        "",
    );

    // Idle: heartbeats only.
    let idle_for = if sc.smoke {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(10)
    };
    let c0 = counters(pid);
    std::thread::sleep(idle_for);
    let c1 = counters(pid);
    let cpu = match (c0, c1) {
        (Some(a), Some(b)) => Some(
            ((b.utime + b.stime) - (a.utime + a.stime)) as f64 * 10_000.0
                / idle_for.as_secs_f64()
                / n.max(1) as f64,
        ),
        _ => None,
    };
    tb.pair(
        &format!("CPU while idle, per account (heartbeat every {ACCOUNTS_HEARTBEAT_MS} ms)"),
        cpu,
        None,
        "µs/s",
        "",
        "reported",
    );

    // getLoginStatus of one account with 100 subscribers attached.
    let subs = open_subscribers(Kind::Imlink, &sock, 100);
    let reqs = sc.lat_requests.min(20_000);
    let one = format!(",\"params\":{{\"account\":\"{}\"}}", users[n / 2]);
    let multi_p50 = status_p50(&sock, &one, reqs);
    // The same line to the one-account daemon (which takes the `account` param and
    // ignores it), so that both are served by the event loop: a plain `getLoginStatus`
    // would be lent to a thread of its own there (`api::lane`), which a daemon with many
    // accounts does not do, and the row would compare the two paths, not the accounts.
    let single_p50 = status_p50(&single.socket, &one, reqs);
    tb.pair(
        &format!("getLoginStatus of one account, p50 ({n} accounts, 100 subscribers)"),
        multi_p50.map(us),
        single_p50.map(us),
        "µs",
        "one account",
        "≤ 1.5×",
    );
    drop(subs);

    // The server killed and restarted: every account back, paced.
    let before = ctl.result("metrics", json!({}));
    dev.kill();
    let gone = poll(Duration::from_secs(30), Duration::from_millis(20), || {
        (online(&mut ctl) == 0).then_some(())
    });
    let t1 = dev.restart();
    let mut peak = 0u64;
    let mut window: std::collections::VecDeque<(Instant, u64)> = Default::default();
    let back_budget = Duration::from_secs_f64(1.0 + n as f64 / rate as f64 + 5.0);
    let back = poll(
        back_budget + Duration::from_secs(120),
        Duration::from_millis(50),
        || {
            let m = ctl.result("metrics", json!({}));
            let now = Instant::now();
            let connects = m["connects"].as_u64().unwrap_or(0);
            window.push_back((now, connects));
            while window
                .front()
                .is_some_and(|(t, _)| now.duration_since(*t) > Duration::from_secs(1))
            {
                window.pop_front();
            }
            if let (Some((ta, a)), Some((tb_, b))) = (window.front(), window.back()) {
                let span = tb_.duration_since(*ta).as_secs_f64();
                if span >= 0.9 {
                    peak = peak.max(((b - a) as f64 / span) as u64);
                }
            }
            (m["online"].as_u64() == Some(n as u64)).then(Instant::now)
        },
    );
    let after = ctl.result("metrics", json!({}));
    // What the restarted server saw: the most connections it accepted within one second.
    let server_peak = {
        let (code, body) = dev.http("GET", "/debug/stats", Duration::from_secs(30));
        serde_json::from_str::<Value>(&body)
            .ok()
            .filter(|_| code == 200)
            .and_then(|v| v["connectsPeakPerSecond"].as_u64())
    };
    let diff = |k: &str| after[k].as_u64().unwrap_or(0) - before[k].as_u64().unwrap_or(0);
    tb.row(
        &format!("devserver killed and restarted: all {n} back online"),
        match (gone, back) {
            (Some(()), Some(t)) => format!("{:.1} s after the restart", (t - t1).as_secs_f64()),
            _ => "not within the deadline".into(),
        },
        "n/a".into(),
        "n/a".into(),
        &format!(
            "≤ {:.0} s (backoff cap + n / login_rate + 5 s)",
            back_budget.as_secs_f64()
        ),
    );
    tb.row(
        "… peak connect rate at the server (connections accepted within 1 s, devserver)",
        server_peak.map_or("n/a".into(), |p| format!("{p}/s")),
        format!("{rate}/s (login_rate)"),
        server_peak.map_or("n/a".into(), |p| format!("{:.2}×", p as f64 / rate as f64)),
        "≤ 1.2×",
    );
    tb.row(
        "… peak rate of connections coming up at the daemon (metrics, 1 s windows)",
        format!("{peak}/s"),
        format!("{rate}/s (login_rate)"),
        format!("{:.2}×", peak as f64 / rate as f64),
        "",
    );
    tb.row(
        "… kicks, refused re-logins, re-logins",
        format!(
            "{} kicks, {} refused, {} re-logins",
            diff("kicks"),
            diff("reloginFailures"),
            diff("relogins")
        ),
        "n/a".into(),
        "n/a".into(),
        "0 kicks, no login loop (one re-login per account)",
    );
    drop(ctl);
    drop(daemon);
    drop(dev);
}

fn settle_rss(pid: u32) -> Option<u64> {
    std::thread::sleep(Duration::from_millis(300));
    rss_kib(pid)
}

fn mib(k: u64) -> f64 {
    k as f64 / 1024.0
}

fn bench_memory(tb: &mut Table, sc: &Scale, daemon: &Daemon, redis: Option<&Redis>) {
    println!("== memory (VmRSS)");
    let idle = settle_rss(daemon.pid);
    let r_idle = redis.and_then(|r| settle_rss(r.proc.pid()));
    tb.pair(
        "imlinkd RSS, logged in, idle",
        idle.map(mib),
        r_idle.map(mib),
        "MiB",
        "redis-server idle",
        "≤ 6 MiB",
    );
    let n = sc.mem_subs;
    let subs = open_subscribers(Kind::Imlink, &daemon.socket, n);
    let with = settle_rss(daemon.pid);
    drop(subs);
    let r_with = redis.map(|r| {
        let subs = open_subscribers(Kind::Redis, &r.sock, n);
        let v = settle_rss(r.proc.pid());
        drop(subs);
        v
    });
    let per = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) => Some(a.saturating_sub(b) as f64 * 1024.0 / n as f64),
        _ => None,
    };
    tb.pair(
        &format!("imlinkd RSS with {n} idle subscribers"),
        with.map(mib),
        r_with.flatten().map(mib),
        "MiB",
        "redis-server, as many SUBSCRIBE connections",
        "",
    );
    tb.pair(
        "per idle subscriber",
        per(with, idle),
        per(r_with.flatten(), r_idle),
        "bytes",
        "Redis per subscriber",
        "≤ 4 KiB",
    );
}

fn bench_devserver_memory(
    tb: &mut Table,
    sc: &Scale,
    bin_dir: &Path,
    tmp: &Path,
    redis: Option<&Redis>,
) {
    println!("== devserver memory with idle connections");
    let n = sc.dev_conns;
    let dev = DevServer::start(bin_dir, tmp);
    let before = settle_rss(dev.pid());
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        let url = format!(
            "ws://{}/v1/connect?sdkappid={APP}&platform=Linux&instanceid=idle-{i}&ver=1",
            dev.addr
        );
        match tungstenite::connect(url) {
            Ok((ws, _)) => conns.push(ws),
            Err(e) => {
                tb.note(format!("devserver idle connections: stopped at {i}: {e}"));
                break;
            }
        }
    }
    let got = conns.len();
    let after = settle_rss(dev.pid());
    drop(conns);
    drop(dev);
    let r = redis.map(|r| {
        let b = settle_rss(r.proc.pid());
        let mut v = Vec::with_capacity(n);
        let mut buf = [0u8; 64];
        for _ in 0..n {
            let Ok(mut s) = UnixStream::connect(&r.sock) else {
                break;
            };
            // One PING so that the connection is accepted and set up.
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            if s.write_all(b"PING\r\n").is_err() || s.read(&mut buf).unwrap_or(0) == 0 {
                break;
            }
            v.push(s);
        }
        let a = settle_rss(r.proc.pid());
        (b, a, v.len())
    });
    tb.pair(
        &format!("imlink-devserver RSS with {got} idle WebSocket connections"),
        after.map(mib),
        r.and_then(|(_, a, _)| a).map(mib),
        "MiB",
        &format!(
            "redis-server with {} idle connections",
            r.map(|x| x.2).unwrap_or(0)
        ),
        "",
    );
    let per = |a: Option<u64>, b: Option<u64>, k: usize| match (a, b) {
        (Some(a), Some(b)) if k > 0 => Some(a.saturating_sub(b) as f64 * 1024.0 / k as f64),
        _ => None,
    };
    tb.pair(
        "devserver per idle connection",
        per(after, before, got),
        r.and_then(|(b, a, k)| per(a, b, k)),
        "bytes",
        "Redis per connection",
        "",
    );
}

// ------------------------------------------------------------------ 5. start-up

/// exec → READY=1 (None when it never came) and exec → answering, for one start.
fn start_once(
    mut cmd: Command,
    notify: &UnixDatagram,
    answers: impl Fn() -> bool,
) -> (Option<Duration>, Option<Duration>) {
    let t0 = Instant::now();
    let _p = Proc {
        child: cmd.spawn().expect("spawn"),
    };
    let mut ready = None;
    let mut answered: Option<Duration> = None;
    let mut buf = [0u8; 512];
    let end = t0 + Duration::from_secs(10);
    while Instant::now() < end {
        if ready.is_none() {
            while let Ok(n) = notify.recv(&mut buf) {
                if buf[..n].split(|&b| b == b'\n').any(|l| l == b"READY=1") {
                    ready = Some(t0.elapsed());
                }
            }
        }
        if answered.is_none() && answers() {
            answered = Some(t0.elapsed());
        }
        if let Some(a) = answered {
            // READY=1 is expected right around the socket answering.
            if ready.is_some() || t0.elapsed() > a + Duration::from_millis(500) {
                break;
            }
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    (ready, answered)
}

fn daemon_answers(sock: &Path) -> bool {
    let Ok(mut s) = UnixStream::connect(sock) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 256];
    s.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"getVersion\"}\n")
        .is_ok()
        && matches!(s.read(&mut buf), Ok(n) if find(&buf[..n], b"\"result\"").is_some())
}

fn bench_startup(
    tb: &mut Table,
    sc: &Scale,
    bin_dir: &Path,
    dev: &DevServer,
    redis_bin: Option<&Path>,
) {
    println!("== start-up");
    let mut d_ready = Vec::new();
    let mut d_ans = Vec::new();
    let mut r_ready = Vec::new();
    let mut r_ans = Vec::new();
    for _ in 0..sc.starts {
        let dir = tempfile::tempdir().unwrap();
        let nsock = dir.path().join("notify.sock");
        let notify = UnixDatagram::bind(&nsock).unwrap();
        notify.set_nonblocking(true).unwrap();
        let config = daemon_config(dir.path(), &dev.url(), 4096);
        let mut cmd = Command::new(bin_dir.join("imlinkd"));
        cmd.arg("--config")
            .arg(&config)
            .env("NOTIFY_SOCKET", &nsock)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file(dir.path(), "imlinkd.log"));
        let sock = dir.path().join("imlinkd.sock");
        let (ready, ans) = start_once(cmd, &notify, || daemon_answers(&sock));
        d_ready.extend(ready.map(ms));
        d_ans.extend(ans.map(ms));
        if let Some(rb) = redis_bin {
            let rdir = tempfile::tempdir().unwrap();
            let nsock = rdir.path().join("notify.sock");
            let notify = UnixDatagram::bind(&nsock).unwrap();
            notify.set_nonblocking(true).unwrap();
            let rsock = rdir.path().join("redis.sock");
            let cmd = redis_cmd(rb, rdir.path(), &rsock, Some(&nsock));
            let (ready, ans) = start_once(cmd, &notify, || redis_ping(&rsock));
            r_ready.extend(ready.map(ms));
            r_ans.extend(ans.map(ms));
        }
    }
    if d_ready.is_empty() {
        tb.row(
            "exec → READY=1 (sd_notify)",
            "not available on this build".into(),
            median(r_ready.clone())
                .map(|v| format!("{} ms (redis-server --supervised systemd)", fmt_num(v)))
                .unwrap_or("n/a".into()),
            "n/a".into(),
            "≤ 20 ms",
        );
    } else {
        tb.pair(
            "exec → READY=1 (sd_notify, median)",
            median(d_ready),
            median(r_ready),
            "ms",
            "redis-server --supervised systemd",
            "≤ 20 ms",
        );
    }
    tb.pair(
        "exec → socket answering (median)",
        median(d_ans),
        median(r_ans),
        "ms",
        "redis-server answering PING",
        "",
    );
}

// ------------------------------------------------------------------ the Tencent link

/// The SDK alone, as a script: N login() → SDK_READY cycles (each followed by logout),
/// then logged in again and idle until stdin ends. Prints `{"times":[ms…]}`.
const SDK_DIRECT_JS: &str = r#"'use strict';
const [dir, proxy, app, user, sig, n] = process.argv.slice(2);
for (const k of ['log', 'info', 'warn', 'error', 'debug', 'trace']) console[k] = () => {};
const req = (name) => require(require.resolve(name, { paths: [dir] }));
if (typeof globalThis.WebSocket === 'undefined') globalThis.WebSocket = req('ws');
const TencentCloudChat = req('@tencentcloud/chat');
(async () => {
  const chat = TencentCloudChat.create({ SDKAppID: Number(app), proxyServer: proxy });
  chat.setLogLevel(1);
  let onReady = null;
  chat.on(TencentCloudChat.EVENT.SDK_READY, () => onReady && onReady());
  const login = async () => {
    const ready = new Promise((r) => (onReady = r));
    const t0 = process.hrtime.bigint();
    await chat.login({ userID: user, userSig: sig });
    await ready;
    return Number(process.hrtime.bigint() - t0) / 1e6;
  };
  const times = [];
  for (let i = 0; i < Number(n); i++) {
    times.push(await login());
    await chat.logout();
  }
  await login();
  process.stdout.write(JSON.stringify({ times }) + '\n');
  process.stdin.resume();
  process.stdin.on('end', () => process.exit(0));
})();
"#;

/// The bridge directory: `BENCH_BRIDGE_DIR`, else the repository's `bridge/tencent`.
fn bridge_dir() -> PathBuf {
    std::env::var_os("BENCH_BRIDGE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("bridge/tencent"))
}

/// Why the Tencent rows cannot be measured here, if they cannot.
fn tencent_missing(bridge: &Path) -> Option<String> {
    let node = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !node {
        return Some("node not found".into());
    }
    for pkg in ["@tencentcloud/chat", "ws"] {
        if !bridge
            .join("node_modules")
            .join(pkg)
            .join("package.json")
            .is_file()
        {
            return Some(format!(
                "the bridge's packages are not installed (npm ci --omit=dev --prefix {})",
                bridge.display()
            ));
        }
    }
    None
}

/// Runs the SDK alone (`node [flags] script`); its login times and its RSS logged in.
fn sdk_direct(
    script: &Path,
    flags: &[&str],
    bridge: &Path,
    dev: &DevServer,
    user: &str,
    n: usize,
) -> Option<(Vec<f64>, Option<u64>)> {
    let sig = imlink::usersig::generate(APP, KEY, user, 86_400, imlink::usersig::now_unix());
    let mut child = Command::new("node")
        .args(flags)
        .arg(script)
        .arg(bridge)
        .arg(format!("ws://{}", dev.addr))
        .arg(APP.to_string())
        .arg(user)
        .arg(&sig)
        .arg(n.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let proc_pid = child.id();
    let mut line = String::new();
    let read = BufReader::new(child.stdout.take()?).read_line(&mut line);
    let result = read.ok().and_then(|_| {
        let v: Value = serde_json::from_str(&line).ok()?;
        let times = v["times"]
            .as_array()?
            .iter()
            .filter_map(Value::as_f64)
            .collect();
        Some((times, settle_rss(proc_pid)))
    });
    drop(child.stdin.take());
    let _ = child.kill();
    let _ = child.wait();
    result
}

/// The daemon's bridge: its child running index.js.
fn bridge_pid(daemon_pid: u32) -> Option<u32> {
    bridge_pids(daemon_pid).into_iter().next()
}

/// A daemon config in `dir` for the Tencent link: the SDK in `bridge`, pointed at `dev`;
/// `connect_ms` for a bridge start (node takes longer than a WebSocket connect).
fn tencent_config(dir: &Path, dev: &DevServer, bridge: &Path, connect_ms: u64) -> PathBuf {
    let config = daemon_config(dir, &dev.url(), 4096);
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("[server]\n", "[server]\nbackend = \"tencent\"\n")
        .replace(
            "connect_timeout_ms = 2000",
            &format!("connect_timeout_ms = {connect_ms}"),
        )
        + &format!(
            "\n[tencent]\nbridge_dir = {:?}\nproxy_server = {:?}\n",
            bridge.display().to_string(),
            format!("ws://{}", dev.addr)
        );
    std::fs::write(&config, text).unwrap();
    config
}

/// Every bridge process of the daemon (its children running `index.js`).
fn bridge_pids(daemon_pid: u32) -> Vec<u32> {
    let children =
        std::fs::read_to_string(format!("/proc/{daemon_pid}/task/{daemon_pid}/children"))
            .unwrap_or_default();
    children
        .split_whitespace()
        .filter_map(|p| p.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains("index.js"))
        })
        .collect()
}

/// Many accounts on the Tencent link: one bridge process per account (the SDK holds one
/// login per SDKAppID per process); what that costs against the native link.
fn bench_tencent_accounts(tb: &mut Table, sc: &Scale, bin_dir: &Path, tmp: &Path) {
    let n = sc.tencent_accounts;
    println!("== many accounts on the Tencent link: {n} accounts, a bridge each");
    let bridge = bridge_dir();
    if let Some(why) = tencent_missing(&bridge) {
        println!("{why} — rows skipped");
        tb.note(format!(
            "many accounts on the Tencent link: {why} — rows skipped"
        ));
        return;
    }
    let dir = tmp.join("tencent-accounts");
    std::fs::create_dir_all(&dir).unwrap();
    let dev = DevServer::start(bin_dir, &dir);
    let config = tencent_config(&dir, &dev, &bridge, 30_000);
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("login_timeout_ms = 5000", "login_timeout_ms = 60000")
        + "\n[accounts]\nmulti = true\n";
    std::fs::write(&config, text).unwrap();
    let Some(daemon) = Daemon::launch(bin_dir, &config, &dir) else {
        tb.note("many accounts on the Tencent link: imlinkd did not start — rows skipped");
        return;
    };
    let (sock, pid) = (daemon.socket.clone(), daemon.pid);
    let base = settle_rss(pid);
    let users: Vec<String> = (0..n).map(|i| format!("tacct{i:03}")).collect();
    let t0 = Instant::now();
    let answered = login_all(&sock, &users, n);
    let mut ctl = Rpc::connect(&sock).unwrap();
    let all_in = poll(sc.deadline * 2, Duration::from_millis(20), || {
        (ctl.result("metrics", json!({}))["online"].as_u64() == Some(n as u64)).then(Instant::now)
    });
    tb.row(
        &format!("Tencent link: {n} accounts logged in at once through one daemon"),
        match all_in {
            Some(t) => format!("{:.1} s ({answered} answered {{}})", (t - t0).as_secs_f64()),
            None => format!("not all online ({answered} answered {{}})"),
        },
        "n/a".into(),
        "n/a".into(),
        "",
    );
    let pids = bridge_pids(pid);
    let bridges: Vec<u64> = pids.iter().filter_map(|p| settle_rss(*p)).collect();
    let daemon_rss = settle_rss(pid);
    tb.row(
        "Tencent link: bridge processes for those accounts",
        format!("{} for {n} accounts", pids.len()),
        "n/a".into(),
        "n/a".into(),
        "one per account",
    );
    let per = (!bridges.is_empty()).then(|| {
        let daemon = match (daemon_rss, base) {
            (Some(a), Some(b)) => a.saturating_sub(b),
            _ => 0,
        };
        (bridges.iter().sum::<u64>() + daemon) as f64 / n.max(1) as f64 / 1024.0
    });
    tb.pair(
        "Tencent link: RSS per logged-in account (its bridge + its share of imlinkd)",
        per,
        None,
        "MiB",
        "",
        "reported",
    );
    drop(ctl);
    drop(daemon);
    drop(dev);
}

fn bench_tencent(tb: &mut Table, sc: &Scale, bin_dir: &Path, tmp: &Path) {
    println!("== the Tencent link (the official SDK through the bridge)");
    let bridge = bridge_dir();
    if let Some(why) = tencent_missing(&bridge) {
        println!("{why} — Tencent rows skipped");
        tb.note(format!("the Tencent link: {why} — rows skipped"));
        return;
    }
    let dir = tmp.join("tencent");
    std::fs::create_dir_all(&dir).unwrap();
    let dev = DevServer::start(bin_dir, &dir);
    let script = dir.join("sdk_direct.js");
    std::fs::write(&script, SDK_DIRECT_JS).unwrap();

    // The daemon on the Tencent link.
    let config = tencent_config(&dir, &dev, &bridge, 10_000);
    let Some(daemon) = Daemon::launch(bin_dir, &config, &dir) else {
        tb.note("the Tencent link: imlinkd did not start (see its log) — rows skipped");
        return;
    };
    let mut c = daemon.rpc();
    let connected = poll(sc.deadline, Duration::from_millis(20), || {
        (c.result("status", json!({}))["connection"] == "connected").then_some(())
    });
    if connected.is_none() {
        tb.note("the Tencent link: the bridge did not start — rows skipped");
        return;
    }
    let user = "benchtencent";
    let sig = imlink::usersig::generate(APP, KEY, user, 86_400, imlink::usersig::now_unix());
    let mut via = Vec::new();
    for i in 0..=sc.sdk_logins {
        let t0 = Instant::now();
        c.result("login", json!({"userID": user, "userSig": sig}));
        via.push(ms(t0.elapsed()));
        if i < sc.sdk_logins {
            c.result("logout", json!({}));
        }
    }
    let bridge_rss = bridge_pid(daemon.pid).and_then(settle_rss);
    let daemon_rss = settle_rss(daemon.pid);
    // The anchor: a fresh daemon on the native link, logged in the same way.
    let ndir = dir.join("native");
    std::fs::create_dir_all(&ndir).unwrap();
    let native = Daemon::start(bin_dir, &ndir, &dev.url(), 4096);
    native.login();
    let native_rss = settle_rss(native.pid);
    drop(native);

    // The SDK alone, the same work: JIT as node runs by default, and --jitless as the
    // daemon runs it.
    let direct = sdk_direct(
        &script,
        &["--jitless"],
        &bridge,
        &dev,
        "benchsdk",
        sc.sdk_logins,
    );
    let jit = sdk_direct(&script, &[], &bridge, &dev, "benchjit", sc.sdk_logins);
    let direct_ms = direct.as_ref().and_then(|d| median(d.0.clone()));
    tb.pair(
        "login through imlinkd and the bridge → answered (median)",
        median(via),
        direct_ms,
        "ms",
        "the SDK alone, login() → SDK_READY, node --jitless",
        "",
    );
    tb.pair(
        "Tencent bridge RSS, logged in, idle",
        bridge_rss.map(mib),
        direct.as_ref().and_then(|d| d.1).map(mib),
        "MiB",
        "the SDK alone in node --jitless",
        "",
    );
    tb.pair(
        "imlinkd RSS on the Tencent link (without the bridge)",
        daemon_rss.map(mib),
        native_rss.map(mib),
        "MiB",
        "imlinkd on the native link, logged in, idle",
        "",
    );
    tb.pair(
        "the SDK alone: login() → SDK_READY, --jitless vs JIT (median)",
        direct_ms,
        jit.as_ref().and_then(|d| median(d.0.clone())),
        "ms",
        "node with its JIT",
        "",
    );
    tb.pair(
        "the SDK alone: RSS logged in, --jitless vs JIT",
        direct.as_ref().and_then(|d| d.1).map(mib),
        jit.as_ref().and_then(|d| d.1).map(mib),
        "MiB",
        "node with its JIT",
        "",
    );
    // Starting the bridge (it loads the SDK): exec → its hello line, as --check-config runs it.
    let start = |flags: &[&str]| {
        let mut v = Vec::new();
        for _ in 0..sc.starts {
            let t0 = Instant::now();
            let ok = Command::new("node")
                .args(flags)
                .arg("index.js")
                .arg("--version")
                .current_dir(&bridge)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                v.push(ms(t0.elapsed()));
            }
        }
        median(v)
    };
    tb.pair(
        "Tencent bridge: exec → hello and exit (--version, median), --jitless vs JIT",
        start(&["--jitless"]),
        start(&[]),
        "ms",
        "node with its JIT",
        "",
    );
    drop(c);
    drop(daemon);
}

// ------------------------------------------------------------------ main

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<u64>().ok())
        })
        .map(|k| format!("{:.1} GiB", k as f64 / 1024.0 / 1024.0))
        .unwrap_or_default();
    let nproc = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    format!("{date}; nproc {nproc}; {cpu}; {mem} RAM; load average at start {load}")
}

enum Work {
    Temp(tempfile::TempDir),
    Kept(PathBuf),
}

impl Work {
    fn path(&self) -> &Path {
        match self {
            Work::Temp(t) => t.path(),
            Work::Kept(p) => p,
        }
    }
}

struct Args {
    bin_dir: PathBuf,
    smoke: bool,
    out: Option<PathBuf>,
    /// Sections to run (all when empty): memory, rpc, fanout, reconnect, startup, tencent,
    /// devmem.
    only: Vec<String>,
}

impl Args {
    fn runs(&self, section: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o == section)
    }
}

fn args() -> Args {
    let mut a = Args {
        bin_dir: PathBuf::from("target/release"),
        smoke: false,
        out: None,
        only: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        match x.as_str() {
            "--bin-dir" => a.bin_dir = it.next().expect("--bin-dir DIR").into(),
            "--out" => a.out = Some(it.next().expect("--out FILE").into()),
            "--smoke" => a.smoke = true,
            "--only" => {
                a.only = it
                    .next()
                    .expect("--only memory,rpc,fanout,reconnect,accounts,startup,tencent,devmem")
                    .split(',')
                    .map(str::to_owned)
                    .collect()
            }
            "-h" | "--help" => {
                println!("bench --bin-dir DIR [--smoke] [--out FILE] [--only memory,rpc,fanout,reconnect,accounts,startup,tencent,devmem]");
                std::process::exit(0);
            }
            // `cargo bench` passes --bench; ignore it and anything unknown loudly.
            "--bench" => {}
            other => {
                eprintln!("bench: unknown argument {other:?}");
                std::process::exit(2);
            }
        }
    }
    a
}

fn main() {
    let a = args();
    let mut sc = Scale::new(a.smoke);
    // BENCH_FAN="1000:100" runs only that fan-out (S subscribers, N events): for profiling.
    if let Some((s, n)) = std::env::var("BENCH_FAN")
        .ok()
        .and_then(|v| {
            v.split_once(':')
                .map(|(s, n)| (s.parse().ok(), n.parse().ok()))
        })
        .and_then(|(s, n)| s.zip(n))
    {
        sc.fan = vec![(s, n)];
        sc.fan_rate.clear();
    }
    // BENCH_RATE="1:1000:1500" runs only that paced row (S subscribers, events/s, N events).
    if let Some(row) = std::env::var("BENCH_RATE").ok().and_then(|v| {
        let mut it = v.split(':').map(str::parse::<u64>);
        match (it.next(), it.next(), it.next(), it.next()) {
            (Some(Ok(s)), Some(Ok(rate)), Some(Ok(n)), None) if s > 0 && rate > 0 && n > 0 => {
                Some((usize::try_from(s).ok()?, rate, n))
            }
            _ => None,
        }
    }) {
        sc.fan.clear();
        sc.fan_rate = vec![row];
    }
    let started = Instant::now();
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    for b in ["imlinkd", "imlink-devserver"] {
        let p = a.bin_dir.join(b);
        if !p.is_file() {
            eprintln!(
                "bench: {} not found (build it first, or pass --bin-dir)",
                p.display()
            );
            std::process::exit(2);
        }
    }
    // BENCH_KEEP=1 keeps the work directory (logs of every process) for a post-mortem.
    let tmp = tempfile::Builder::new()
        .prefix("imlink-bench")
        .tempdir()
        .unwrap();
    let tmp = if std::env::var_os("BENCH_KEEP").is_some() {
        println!("work dir (kept): {}", tmp.path().display());
        Work::Kept(tmp.keep())
    } else {
        Work::Temp(tmp)
    };
    let mut tb = Table::default();
    let header = machine();
    println!(
        "imlink bench ({}) — {header}",
        if sc.smoke { "smoke" } else { "full" }
    );

    let redis_bin = find_redis();
    let redis_dir = tmp.path().join("redis");
    std::fs::create_dir_all(&redis_dir).unwrap();
    let redis = match &redis_bin {
        Some(b) => Some(Redis::start(b, &redis_dir)),
        None => {
            println!("redis-server not found — anchor skipped");
            tb.note("redis-server not found — anchor skipped (install redis-server; .ci/run does)");
            None
        }
    };

    let mut dev = DevServer::start(&a.bin_dir, tmp.path());
    let queue = sc.fan.iter().map(|f| f.1).max().unwrap_or(0) + 1024;
    let ddir = tmp.path().join("daemon");
    std::fs::create_dir_all(&ddir).unwrap();
    let daemon = Daemon::start(&a.bin_dir, &ddir, &dev.url(), queue.max(4096));
    daemon.login();

    // Fresh processes first: memory before anything has warmed the allocators up.
    if a.runs("memory") {
        bench_memory(&mut tb, &sc, &daemon, redis.as_ref());
    }
    if a.runs("rpc") {
        bench_rpc(&mut tb, &sc, &daemon, tmp.path(), redis.as_ref());
    }
    if a.runs("fanout") {
        bench_fanout(&mut tb, &sc, &dev, &daemon, redis.as_ref());
    }
    if a.runs("reconnect") {
        bench_reconnect(&mut tb, &sc, &mut dev, &daemon);
    }
    if a.runs("accounts") {
        bench_accounts(&mut tb, &sc, &a.bin_dir, tmp.path(), &daemon);
        bench_tencent_accounts(&mut tb, &sc, &a.bin_dir, tmp.path());
    }
    if a.runs("startup") {
        bench_startup(&mut tb, &sc, &a.bin_dir, &dev, redis_bin.as_deref());
    }
    if a.runs("tencent") {
        bench_tencent(&mut tb, &sc, &a.bin_dir, tmp.path());
    }
    drop(daemon);
    drop(dev);
    if a.runs("devmem") {
        bench_devserver_memory(&mut tb, &sc, &a.bin_dir, tmp.path(), redis.as_ref());
    }
    drop(redis);

    let cmdline: Vec<String> = std::env::args().collect();
    let md =
        format!(
        "# imlink bench ({})\n\n{header}\n\ncommand: `{}`; binaries from `{}`; took {:.0} s\n\n{}",
        if sc.smoke { "smoke: tiny counts, figures not meaningful" } else { "full" },
        cmdline.join(" "),
        a.bin_dir.display(),
        started.elapsed().as_secs_f64(),
        tb.markdown()
    );
    println!("\n{md}");
    if let Some(out) = a.out {
        if let Some(d) = out.parent() {
            let _ = std::fs::create_dir_all(d);
        }
        std::fs::write(&out, &md).unwrap();
        println!("written to {}", out.display());
    }
}
