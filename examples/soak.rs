//! `make soak` / `make soak-smoke`: the real binaries under a seeded schedule of faults,
//! with the reliability invariants checked all along (docs/reliability.md).
//!
//! One `imlink-devserver` (with `--faults`) and one `imlinkd` logged in, while:
//!
//! - a fault schedule drawn from the seed injects, one after another and overlapping:
//!   devserver `drop`, `silence`, `refuse`, `delay`, `fail-logins` (with and without a
//!   drop after it), devserver SIGKILL and restart on the same port, link flaps (the
//!   daemon's end of a veth pair down and up, when network namespaces can be made),
//!   SIGHUP with a valid new configuration and with a broken one, daemon SIGKILL and
//!   restart; every kind at least once, however short the run;
//! - a load thread makes events (`push-burst` of profile updates at the daemon's user);
//! - three followers subscribe with `since: 0` and follow the daemon across restarts
//!   (one of them reads slowly), a stalled subscriber stops reading for seconds at a
//!   time, and API clients churn: thousands of connect/close, requests, batches, garbage
//!   and over-long lines, half-closed connections read to the end.
//!
//! Invariants, checked continuously and reported at the end:
//!
//! 1. a subscriber that subscribed with `since: 0` and follows across daemon restarts
//!    sees, per boot, seqs 1, 2, 3, … without a gap except where `eventsLost` says so,
//!    and never a duplicate; all subscribers see the same event at the same seq;
//! 2. after the faults stop, the daemon is LOGINED and online (the server holds its
//!    login) within the backoff cap + 5 s;
//! 3. no login loop: the server's login attempts ≤ its accepted connections + explicit
//!    logins + logins it refused + re-logins the daemon reported as failed;
//! 4. the daemon's open fds and RSS at the end are within 10 % of their value after
//!    warm-up (the process that runs the second half: daemon SIGKILLs happen in the
//!    first 40 % of the fault phase only);
//! 5. every request got exactly one reply (a connection cut by a daemon SIGKILL is
//!    counted as interrupted, not checked).
//!
//! Usage:
//!
//!     soak --bin-dir target/release [--seconds N] [--seed S] [--out FILE] [--no-netns]
//!
//! `SOAK_SECONDS` (default 1800) and `SOAK_SEED` (default: from the clock) are read when
//! the flags are absent. The seed is printed at the start and with any failure; the same
//! seed gives the same fault schedule. Exit 0 when every invariant held, 1 when one did
//! not (the report lists each violation; the run's directory with both logs is kept).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

const APP: u64 = 1400000001;
const KEY: &str = "imlink-soak-secret-0123456789";
const USER: &str = "soakuser";
/// `reconnect.max_ms` of every configuration the harness writes, and the jitter.
const BACKOFF_MAX_MS: u64 = 2000;
const JITTER: f64 = 0.2;
/// The longest a reply (or the end of a half-closed connection) may take before it is
/// reported missing: far beyond anything the daemon needs, short of a hang.
const REPLY_DEADLINE: Duration = Duration::from_secs(30);
const HISTORY: u64 = 1024;
const SUBSCRIBER_QUEUE: u64 = 256;
const MAX_LINE_BYTES: usize = 65536;

// ------------------------------------------------------------------ small helpers

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Polls `f` every `every` until it returns `Some`, or `None` after `deadline`.
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

fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn fd_count(pid: u32) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

/// How many of `pid`'s connected Unix sockets have lost their peer (`ss -xp`: peer
/// inode 0): API connections whose client closed and that the daemon has not closed yet.
fn closed_peers(pid: u32) -> Option<usize> {
    let o = Command::new("ss").args(["-xpH"]).output().ok()?;
    let owner = format!("pid={pid},");
    Some(
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| l.contains(&owner) && l.starts_with("u_str") && l.contains("ESTAB"))
            .filter(|l| l.split_whitespace().nth(7) == Some("0"))
            .count(),
    )
}

fn run(cmd: &[&str]) -> Result<(), String> {
    let out = Command::new(cmd[0])
        .args(&cmd[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{}: {e}", cmd.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            cmd.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

// ------------------------------------------------------------------ the shared record

/// What every thread reports into.
#[derive(Default)]
struct Shared {
    /// Ends the workers.
    stop: AtomicBool,
    /// Bumped before the daemon is killed and again once the new one runs; `killing` is
    /// true in between. A connection that fails while `killing`, or with another value
    /// than it started with, was cut by a kill ([`Shared::cut`]).
    daemon_gen: AtomicU64,
    killing: AtomicBool,
    violations: Mutex<Vec<String>>,
    /// Requests that expected a reply, and replies matched to them.
    requests: AtomicU64,
    replies: AtomicU64,
    /// Requests whose connection a daemon SIGKILL cut.
    interrupted: AtomicU64,
    /// Requests a client sent and closed without reading the replies.
    abandoned: AtomicU64,
    /// Notifications and notification-only work sent (no reply expected, none checked
    /// beyond "no reply came").
    notifications: AtomicU64,
    connections: AtomicU64,
    garbage_lines: AtomicU64,
    long_lines: AtomicU64,
    batches: AtomicU64,
    /// Events checked by the subscribers, and the seqs covered by `eventsLost`.
    events_checked: AtomicU64,
    events_lost: AtomicU64,
    resubscribes: AtomicU64,
    stalls: AtomicU64,
    relogin_failures: AtomicU64,
    /// bootID → seq → a digest of the event, as the first subscriber saw it (the
    /// newest boots, the newest seqs).
    seen: Mutex<Vec<(String, std::collections::BTreeMap<u64, u64>)>>,
    /// Where each follower is: name → (bootID, last seq).
    followers: Mutex<HashMap<String, (String, u64)>>,
    pause: Pause,
    seed: u64,
    started: Started,
}

/// When the run started (for the times in messages).
struct Started(Instant);

impl Default for Started {
    fn default() -> Started {
        Started(Instant::now())
    }
}

impl Started {
    fn elapsed(&self) -> Duration {
        self.0.elapsed()
    }
}

impl Shared {
    fn violation(&self, what: String) {
        let what = format!("[{:.1} s] {what}", self.started.elapsed().as_secs_f64());
        eprintln!("soak: VIOLATION: {what} (seed {})", self.seed);
        let mut v = self.violations.lock().unwrap();
        if v.len() < 1000 {
            v.push(what);
        }
    }

    fn gen(&self) -> u64 {
        self.daemon_gen.load(Ordering::SeqCst)
    }

    /// Whether a connection opened at `gen` that just failed was cut by a daemon kill.
    fn cut(&self, gen: u64) -> bool {
        self.killing.load(Ordering::SeqCst) || self.gen() != gen
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// The same event at the same (boot, seq) for every subscriber. True for the first
    /// subscriber to see it.
    fn consistent(&self, who: &str, boot: &str, seq: u64, ev: &Value) -> bool {
        let digest = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            ev["event"].to_string().hash(&mut h);
            ev["time"].to_string().hash(&mut h);
            ev["data"].to_string().hash(&mut h);
            h.finish()
        };
        let mut seen = self.seen.lock().unwrap();
        let i = match seen.iter().position(|(b, _)| b == boot) {
            Some(i) => i,
            None => {
                // A subscriber still reading the boot before last is done with it.
                if seen.len() >= 2 {
                    seen.remove(0);
                }
                seen.push((boot.to_owned(), Default::default()));
                seen.len() - 1
            }
        };
        let map = &mut seen[i].1;
        let first = match map.get(&seq) {
            Some(d) if *d != digest => {
                drop(seen);
                self.violation(format!(
                    "{who}: boot {boot} seq {seq} is another event than another subscriber saw: {ev}"
                ));
                return false;
            }
            Some(_) => false,
            None => {
                map.insert(seq, digest);
                true
            }
        };
        // No subscriber is more than the ring behind the newest event.
        if map.len() as u64 > 8 * HISTORY {
            let keep = map.split_off(&(seq.saturating_sub(4 * HISTORY)));
            *map = keep;
        }
        first
    }
}

/// Lets the main thread stop the workers at a known point (no connection of theirs open)
/// to measure the daemon, then let them go on.
#[derive(Default)]
struct Pause {
    state: Mutex<(bool, usize)>,
    cv: Condvar,
}

impl Pause {
    /// Called by a worker between two pieces of work: parks while paused.
    fn point(&self, stop: &AtomicBool) {
        let mut s = self.state.lock().unwrap();
        if !s.0 {
            return;
        }
        s.1 += 1;
        self.cv.notify_all();
        while s.0 && !stop.load(Ordering::SeqCst) {
            s = self
                .cv
                .wait_timeout(s, Duration::from_millis(100))
                .unwrap()
                .0;
        }
        s.1 -= 1;
    }

    /// Pauses and waits until `n` workers are parked.
    fn pause(&self, n: usize) -> bool {
        let mut s = self.state.lock().unwrap();
        s.0 = true;
        let end = Instant::now() + Duration::from_secs(120);
        while s.1 < n {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            s = self.cv.wait_timeout(s, left).unwrap().0;
        }
        true
    }

    fn resume(&self) {
        self.state.lock().unwrap().0 = false;
        self.cv.notify_all();
    }

    fn paused(&self) -> bool {
        self.state.lock().unwrap().0
    }
}

// ------------------------------------------------------------------ network namespaces

/// Two namespaces joined by a veth pair: the devserver (and this harness) in `server`,
/// the daemon in `daemon`. Deleted on drop.
struct Netns {
    server: String,
    daemon: String,
    /// The daemon's end of the veth pair (inside `daemon`).
    link: String,
    server_ip: &'static str,
}

impl Netns {
    fn setup() -> Result<Netns, String> {
        if Command::new("ip")
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err()
        {
            return Err("the ip command (iproute2) is not installed".into());
        }
        if !rustix::process::geteuid().is_root() {
            return Err("not running as root (network namespaces need CAP_NET_ADMIN)".into());
        }
        Netns::remove_leftovers();
        let pid = std::process::id();
        let n = Netns {
            server: format!("imlink-soak-{pid}-s"),
            daemon: format!("imlink-soak-{pid}-d"),
            link: format!("ims{pid}d"),
            server_ip: "10.231.0.1",
        };
        let peer = format!("ims{pid}s");
        let steps: Vec<Vec<String>> = vec![
            vec!["ip".into(), "netns".into(), "add".into(), n.server.clone()],
            vec!["ip".into(), "netns".into(), "add".into(), n.daemon.clone()],
            vec![
                "ip".into(),
                "link".into(),
                "add".into(),
                peer.clone(),
                "netns".into(),
                n.server.clone(),
                "type".into(),
                "veth".into(),
                "peer".into(),
                "name".into(),
                n.link.clone(),
                "netns".into(),
                n.daemon.clone(),
            ],
        ];
        let run_all = |steps: &[Vec<String>]| -> Result<(), String> {
            for s in steps {
                let v: Vec<&str> = s.iter().map(String::as_str).collect();
                run(&v)?;
            }
            Ok(())
        };
        // `n` is dropped (namespaces deleted) if any step fails.
        run_all(&steps)?;
        for (ns, dev, addr) in [
            (&n.server, &peer, "10.231.0.1/30"),
            (&n.daemon, &n.link, "10.231.0.2/30"),
        ] {
            run(&["ip", "-n", ns, "addr", "add", addr, "dev", dev])?;
            run(&["ip", "-n", ns, "link", "set", dev, "up"])?;
            run(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(n)
    }

    /// Namespaces of earlier runs whose process is gone.
    fn remove_leftovers() {
        let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
            return;
        };
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            let Some(rest) = name.strip_prefix("imlink-soak-") else {
                continue;
            };
            let pid = rest.split('-').next().unwrap_or("");
            if !pid.is_empty() && !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = run(&["ip", "netns", "del", name]);
            }
        }
    }

    /// Moves this thread (and so every thread and process it starts from now on) into
    /// the server's namespace.
    fn enter_server(&self) -> Result<(), String> {
        let f = std::fs::File::open(format!("/run/netns/{}", self.server))
            .map_err(|e| format!("open /run/netns/{}: {e}", self.server))?;
        rustix::thread::move_into_link_name_space(
            std::os::fd::AsFd::as_fd(&f),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .map_err(|e| format!("setns into {}: {e}", self.server))
    }

    fn set_link(&self, up: bool) -> Result<(), String> {
        run(&[
            "ip",
            "-n",
            &self.daemon,
            "link",
            "set",
            &self.link,
            if up { "up" } else { "down" },
        ])
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run(&["ip", "netns", "del", &self.daemon]);
        let _ = run(&["ip", "netns", "del", &self.server]);
    }
}

// ------------------------------------------------------------------ devserver

/// One HTTP/1.1 request with an empty body: (status, body), None if the server is gone.
fn http(addr: SocketAddr, method: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let status = resp.split_whitespace().nth(1)?.parse().ok()?;
    let body = resp.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}

struct DevServer {
    child: Option<Child>,
    addr: SocketAddr,
    bin: PathBuf,
    dir: PathBuf,
    /// Counters of the servers killed so far (theirs are lost with them).
    dead: Totals,
}

/// The devserver's counters that invariant 3 compares.
#[derive(Debug, Clone, Copy, Default)]
struct Totals {
    /// `users[USER].loginAttempts`.
    attempts: u64,
    /// `users[USER].failed` summed over the codes.
    refused: u64,
    /// `connectionsTotal`: accepted WebSocket connections (the daemon is the only client).
    connections: u64,
}

impl std::ops::Add for Totals {
    type Output = Totals;
    fn add(self, o: Totals) -> Totals {
        Totals {
            attempts: self.attempts + o.attempts,
            refused: self.refused + o.refused,
            connections: self.connections + o.connections,
        }
    }
}

impl DevServer {
    fn start(bin_dir: &Path, dir: &Path, ip: &str) -> DevServer {
        let mut d = DevServer {
            child: None,
            addr: format!("{ip}:0").parse().unwrap(),
            bin: bin_dir.join("imlink-devserver"),
            dir: dir.to_owned(),
            dead: Totals::default(),
        };
        d.spawn(&format!("{ip}:0"));
        d
    }

    fn spawn(&mut self, listen: &str) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("devserver.log"))
            .unwrap();
        // The port of the killed server may take a moment to be free again.
        let mut child = None;
        for _ in 0..200 {
            let mut c = Command::new(&self.bin)
                .args([
                    "--listen",
                    listen,
                    "--app",
                    &format!("{APP}:{KEY}"),
                    "--faults",
                ])
                .env("IMLINK_DEVSERVER_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(log.try_clone().unwrap())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bin.display()));
            let mut line = String::new();
            let _ = BufReader::new(c.stdout.take().unwrap()).read_line(&mut line);
            if let Some(a) = line.trim().strip_prefix("listening on ") {
                self.addr = a.parse().unwrap();
                child = Some(c);
                break;
            }
            let _ = c.kill();
            let _ = c.wait();
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child = Some(child.expect("the devserver did not start (see devserver.log)"));
    }

    /// SIGKILL, keeping what its counters said last.
    fn kill(&mut self) {
        if let Some(t) = self.totals_now() {
            self.dead = self.dead + t;
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn restart(&mut self) {
        let a = self.addr.to_string();
        self.spawn(&a);
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn http(&self, method: &str, path: &str) -> Option<(u16, String)> {
        http(self.addr, method, path)
    }

    fn fault(&self, path: &str) -> bool {
        matches!(
            self.http("POST", &format!("/faults/{path}")),
            Some((200, _))
        )
    }

    /// This server's counters now.
    fn totals_now(&self) -> Option<Totals> {
        let (code, body) = self.http("GET", "/debug/stats")?;
        if code != 200 {
            return None;
        }
        let v: Value = serde_json::from_str(&body).ok()?;
        let u = &v["users"][USER];
        Some(Totals {
            attempts: u["loginAttempts"].as_u64().unwrap_or(0),
            refused: u["failed"]
                .as_object()
                .map(|m| m.values().filter_map(Value::as_u64).sum())
                .unwrap_or(0),
            connections: v["connectionsTotal"].as_u64()?,
        })
    }

    /// Everything counted since the start, by every server.
    fn totals(&self) -> Option<Totals> {
        Some(self.dead + self.totals_now()?)
    }

    /// Whether the server holds the daemon's login online.
    fn daemon_online(&self) -> bool {
        self.http("GET", "/debug/sessions").is_some_and(|(c, b)| {
            c == 200
                && serde_json::from_str::<Value>(&b).is_ok_and(|v| {
                    v["sessions"].as_array().is_some_and(|a| {
                        a.iter()
                            .any(|s| s["userID"] == USER && s["state"] == "online")
                    })
                })
        })
    }
}

impl Drop for DevServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// ------------------------------------------------------------------ daemon

/// A configuration for the daemon: the values a SIGHUP may change, or a broken file.
#[derive(Debug, Clone)]
enum Conf {
    Valid {
        log_level: &'static str,
        heartbeat_interval_ms: u64,
        heartbeat_timeout_ms: u64,
        initial_ms: u64,
        multiplier: f64,
    },
    /// Not TOML.
    Syntax,
    /// A key that does not exist.
    UnknownKey,
    /// heartbeat_timeout_ms ≤ heartbeat_interval_ms.
    Inconsistent,
    /// A value out of range.
    OutOfRange,
}

impl Conf {
    fn initial() -> Conf {
        Conf::Valid {
            log_level: "info",
            heartbeat_interval_ms: 250,
            heartbeat_timeout_ms: 1000,
            initial_ms: 100,
            multiplier: 1.6,
        }
    }

    fn random_valid(rng: &mut fastrand::Rng) -> Conf {
        Conf::Valid {
            log_level: ["info", "warn", "info", "error"][rng.usize(..4)],
            heartbeat_interval_ms: [200, 250, 300][rng.usize(..3)],
            heartbeat_timeout_ms: [900, 1000, 1200][rng.usize(..3)],
            initial_ms: [50, 100, 200][rng.usize(..3)],
            multiplier: [1.6, 2.0][rng.usize(..2)],
        }
    }

    fn random_broken(rng: &mut fastrand::Rng) -> Conf {
        [
            Conf::Syntax,
            Conf::UnknownKey,
            Conf::Inconsistent,
            Conf::OutOfRange,
        ][rng.usize(..4)]
        .clone()
    }

    fn text(&self, dir: &Path, server: &str) -> String {
        let (ll, hi, ht, init, mult) = match self {
            Conf::Valid {
                log_level,
                heartbeat_interval_ms,
                heartbeat_timeout_ms,
                initial_ms,
                multiplier,
            } => (
                *log_level,
                *heartbeat_interval_ms,
                *heartbeat_timeout_ms,
                *initial_ms,
                *multiplier,
            ),
            Conf::Inconsistent => ("info", 1000, 1000, 100, 1.6),
            _ => ("info", 250, 1000, 100, 1.6),
        };
        // request_timeout_ms (2000) is longer than both the longest loss detection
        // (heartbeat timeout + interval ≤ 1500) and the longest injected delay (1500):
        // a login is never given up on by timeout while its connection lives, so every
        // extra login attempt the server sees has a cause it counts (invariant 3).
        let mut t = format!(
            "[sdk]\napp_id = {APP}\nlog_level = {ll:?}\n\n\
             [server]\nurl = \"ws://{server}/v1/connect\"\nconnect_timeout_ms = 2000\n\
             request_timeout_ms = 2000\nlogin_timeout_ms = 5000\n\
             heartbeat_interval_ms = {hi}\nheartbeat_timeout_ms = {ht}\n\n\
             [reconnect]\ninitial_ms = {init}\nmax_ms = {BACKOFF_MAX_MS}\nmultiplier = {mult:?}\n\
             jitter = {JITTER:?}\nstable_ms = 500\n\n\
             [api]\nsocket = {:?}\nmax_clients = 256\nmax_line_bytes = {MAX_LINE_BYTES}\n\
             subscriber_queue = {SUBSCRIBER_QUEUE}\n\n\
             [events]\nhistory = {HISTORY}\n\n\
             [state]\ndir = {:?}\n",
            dir.join("imlinkd.sock").display().to_string(),
            dir.join("state").display().to_string(),
        );
        match self {
            Conf::Syntax => t.push_str("[server\nurl = \n"),
            Conf::UnknownKey => {
                t = t.replace("stable_ms = 500", "stable_ms = 500\ninitial_msec = 5")
            }
            Conf::OutOfRange => {
                t = t.replace("max_clients = 256", "max_clients = 0");
            }
            _ => {}
        }
        t
    }
}

struct Daemon {
    child: Option<Child>,
    bin: PathBuf,
    dir: PathBuf,
    socket: PathBuf,
    config: PathBuf,
    server: String,
    netns: Option<String>,
    notify: mpsc::Receiver<String>,
    /// Where the daemon's log was read up to for reload failures.
    log_seen: usize,
    starts: u64,
}

impl Daemon {
    fn start(bin_dir: &Path, dir: &Path, server: &str, netns: Option<String>) -> Daemon {
        let notify_path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&notify_path).unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = sock.recv(&mut buf) {
                for l in String::from_utf8_lossy(&buf[..n]).lines() {
                    if tx.send(l.to_owned()).is_err() {
                        return;
                    }
                }
            }
        });
        let mut d = Daemon {
            child: None,
            bin: bin_dir.join("imlinkd"),
            dir: dir.to_owned(),
            socket: dir.join("imlinkd.sock"),
            config: dir.join("imlinkd.toml"),
            server: server.to_owned(),
            netns,
            notify: rx,
            log_seen: 0,
            starts: 0,
        };
        d.write(&Conf::initial());
        d.spawn();
        d
    }

    fn write(&self, c: &Conf) {
        let tmp = self.dir.join("imlinkd.toml.tmp");
        std::fs::write(&tmp, c.text(&self.dir, &self.server)).unwrap();
        std::fs::rename(&tmp, &self.config).unwrap();
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("imlinkd.log")
    }

    /// Waits for a notify line equal to `what`, discarding others.
    fn wait_notify(&self, what: &str, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.notify.recv_timeout(left) {
                Ok(l) if l == what => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    }

    fn spawn(&mut self) {
        while self.notify.try_recv().is_ok() {}
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&self.bin);
                c
            }
            None => Command::new(&self.bin),
        };
        cmd.arg("--config")
            .arg(&self.config)
            .env("NOTIFY_SOCKET", self.dir.join("notify.sock"))
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .env_remove("WATCHDOG_USEC")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        self.child = Some(cmd.spawn().expect("start imlinkd"));
        self.starts += 1;
        assert!(
            self.wait_notify("READY=1", Duration::from_secs(60)),
            "imlinkd did not report READY=1 within 60 s (see imlinkd.log)"
        );
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn signal(&self, sig: rustix::process::Signal) {
        // The child is not reaped until `kill`, so its pid cannot have been reused.
        let pid = rustix::process::Pid::from_raw(self.pid() as i32).unwrap();
        let _ = rustix::process::kill_process(pid, sig);
    }

    /// How many times the log says a reload was refused.
    fn reload_refusals(&self) -> usize {
        let log = std::fs::read(self.log_path()).unwrap_or_default();
        let needle = b"configuration not reloaded";
        log.windows(needle.len()).filter(|w| w == needle).count()
    }

    /// SIGHUP with `c` in place: a valid file is reloaded (`RELOADING=1`, `READY=1`), a
    /// broken one refused (the log says so); either way the daemon goes on.
    fn reload(&mut self, c: &Conf, valid_after: &Conf) -> Result<(), String> {
        while self.notify.try_recv().is_ok() {}
        let before = self.reload_refusals();
        self.write(c);
        self.signal(rustix::process::Signal::HUP);
        let ok = if matches!(c, Conf::Valid { .. }) {
            self.wait_notify("RELOADING=1", Duration::from_secs(30))
                && self.wait_notify("READY=1", Duration::from_secs(30))
        } else {
            poll(Duration::from_secs(30), Duration::from_millis(5), || {
                (self.reload_refusals() > before).then_some(())
            })
            .is_some()
        };
        // The file stays valid for the next restart.
        self.write(valid_after);
        self.log_seen = self.reload_refusals();
        if ok {
            Ok(())
        } else {
            Err(format!(
                "SIGHUP with {c:?}: the daemon did not answer it within 30 s"
            ))
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

// ------------------------------------------------------------------ a control client

/// A blocking JSON-RPC client for the harness's own calls.
struct Rpc {
    r: BufReader<UnixStream>,
    w: UnixStream,
    id: u64,
}

impl Rpc {
    fn connect(path: &Path) -> Option<Rpc> {
        let s = UnixStream::connect(path).ok()?;
        s.set_read_timeout(Some(REPLY_DEADLINE)).ok()?;
        Some(Rpc {
            w: s.try_clone().ok()?,
            r: BufReader::new(s),
            id: 0,
        })
    }

    /// The reply to `method`, skipping notifications; None if the connection ended (a
    /// violation unless the daemon was killed meanwhile).
    fn call(&mut self, sh: &Shared, method: &str, params: Value) -> Option<Value> {
        let gen = sh.gen();
        self.id += 1;
        let req = json!({"jsonrpc":"2.0","id":self.id,"method":method,"params":params});
        if self.w.write_all(format!("{req}\n").as_bytes()).is_err() {
            if !sh.cut(gen) && !sh.stopped() {
                sh.violation(format!("{method}: the daemon stopped reading a connection"));
            }
            return None;
        }
        sh.requests.fetch_add(1, Ordering::Relaxed);
        loop {
            let mut l = String::new();
            if self.r.read_line(&mut l).unwrap_or(0) == 0 || !l.ends_with('\n') {
                sh.interrupted.fetch_add(1, Ordering::Relaxed);
                if !sh.cut(gen) && !sh.stopped() {
                    sh.violation(format!(
                        "no reply to {method} within {REPLY_DEADLINE:?} (the connection ended or stalled)"
                    ));
                }
                return None;
            }
            let Ok(v) = serde_json::from_str::<Value>(&l) else {
                sh.violation(format!("{method}: an unreadable line {l:?}"));
                return None;
            };
            if v["id"] == json!(self.id) {
                sh.replies.fetch_add(1, Ordering::Relaxed);
                return Some(v);
            }
        }
    }

    fn status(&mut self, sh: &Shared) -> Option<Value> {
        self.call(sh, "status", json!({}))
            .map(|v| v["result"].clone())
    }
}

fn status_of(sh: &Shared, socket: &Path) -> Option<Value> {
    Rpc::connect(socket)?.status(sh)
}

fn logined_online(st: &Value) -> bool {
    st["loginStatus"] == 1 && st["online"] == true
}

// ------------------------------------------------------------------ subscribers

/// A subscriber's check of one boot's seqs: every event is the next seq, or an
/// `eventsLost` standing for exactly the seqs up to its own.
struct SeqCheck {
    boot: String,
    last: u64,
}

impl SeqCheck {
    fn event(&mut self, sh: &Shared, who: &str, ev: &Value) -> Result<(), String> {
        let seq = ev["seq"]
            .as_u64()
            .ok_or_else(|| format!("{who}: an event without seq: {ev}"))?;
        let boot = ev["bootID"].as_str().unwrap_or("");
        if boot != self.boot {
            return Err(format!(
                "{who}: an event of boot {boot} on a subscription of boot {}: {ev}",
                self.boot
            ));
        }
        if ev["event"] == "eventsLost" {
            let from = ev["data"]["from"].as_u64().unwrap_or(0);
            let to = ev["data"]["to"].as_u64().unwrap_or(0);
            if from != self.last + 1 || to != seq || to < from {
                return Err(format!(
                    "{who}: eventsLost {{from {from}, to {to}}} at seq {seq} after seq {}",
                    self.last
                ));
            }
            sh.events_lost.fetch_add(to - from + 1, Ordering::Relaxed);
        } else if seq <= self.last {
            return Err(format!(
                "{who}: seq {seq} again (duplicate) after seq {} in boot {}: {ev}",
                self.last, self.boot
            ));
        } else if seq != self.last + 1 {
            return Err(format!(
                "{who}: gap: seq {seq} after seq {} in boot {} without eventsLost",
                self.last, self.boot
            ));
        } else {
            let first = sh.consistent(who, &self.boot, seq, ev);
            // A re-login the daemon gave up on by timeout is retried on the same
            // connection without the server having refused anything (counted once,
            // whoever sees it first).
            if first
                && ev["event"] == "onRelogin"
                && ev["data"]["success"] == false
                && ev["data"]["code"] == 9520
            {
                sh.relogin_failures.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.last = seq;
        sh.events_checked.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// Reads one whole line, waiting as long as it takes (the socket's 1-s timeouts only let
/// it look at `stop`). None at the end of the connection or when stopping.
fn patient_line(sh: &Shared, r: &mut BufReader<UnixStream>, line: &mut String) -> Option<()> {
    line.clear();
    loop {
        match r.read_line(line) {
            Ok(0) => return None,
            Ok(_) if line.ends_with('\n') => return Some(()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return None,
        }
        if sh.stopped() {
            return None;
        }
    }
}

/// Follows the daemon with `since: 0` across restarts (`since: last` when it reconnects
/// to the same boot, which the daemon should never make it do), checking every event.
fn follower(sh: Arc<Shared>, socket: PathBuf, name: String, slow: Option<u64>) {
    let mut rng = fastrand::Rng::with_seed(sh.seed ^ 0x5eed_f011);
    let mut check: Option<SeqCheck> = None;
    while !sh.stopped() {
        let gen = sh.gen();
        let Some(mut c) = Rpc::connect(&socket) else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        let Some(st) = c.status(&sh) else {
            continue;
        };
        let boot = st["bootID"].as_str().unwrap_or("").to_owned();
        let mut ch = match check.take() {
            Some(ch) if ch.boot == boot => {
                sh.violation(format!(
                    "{name}: the daemon (boot {boot}) ended a subscribed connection"
                ));
                ch
            }
            _ => SeqCheck {
                boot: boot.clone(),
                last: 0,
            },
        };
        c.id += 1;
        let id = c.id;
        let req = json!({"jsonrpc":"2.0","id":id,"method":"subscribe","params":{"since":ch.last}});
        if c.w.write_all(format!("{req}\n").as_bytes()).is_err() {
            check = Some(ch);
            continue;
        }
        let _ = c.w.set_read_timeout(Some(Duration::from_secs(1)));
        sh.requests.fetch_add(1, Ordering::Relaxed);
        sh.resubscribes.fetch_add(1, Ordering::Relaxed);
        let mut got_reply = false;
        let mut line = String::new();
        while patient_line(&sh, &mut c.r, &mut line).is_some() {
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                sh.violation(format!("{name}: an unreadable line: {line:?}"));
                break;
            };
            if v["id"] == json!(id) {
                if got_reply {
                    sh.violation(format!("{name}: a second reply to subscribe"));
                }
                got_reply = true;
                sh.replies.fetch_add(1, Ordering::Relaxed);
                if v["result"]["bootID"] != json!(boot) {
                    // Restarted between status and subscribe: `since` did not apply.
                    break;
                }
                continue;
            }
            if v["method"] != "event" {
                sh.violation(format!("{name}: an unexpected line: {v}"));
                continue;
            }
            let ev = &v["params"];
            if ev["bootID"] != json!(boot) && !got_reply {
                break; // as above, seen on a replayed event
            }
            if let Err(e) = ch.event(&sh, &name, ev) {
                sh.violation(e);
            }
            sh.followers
                .lock()
                .unwrap()
                .insert(name.clone(), (ch.boot.clone(), ch.last));
            if let Some(ms) = slow {
                std::thread::sleep(Duration::from_millis(ms));
                if rng.u32(..500) == 0 {
                    // Now and then a longer stop: it falls behind and catches up.
                    std::thread::sleep(Duration::from_millis(rng.u64(200..2000)));
                }
            }
        }
        if !got_reply {
            sh.interrupted.fetch_add(1, Ordering::Relaxed);
            if !sh.cut(gen) && !sh.stopped() {
                sh.violation(format!("{name}: no reply to subscribe"));
            }
        }
        if ch.boot != boot {
            ch = SeqCheck { boot, last: 0 };
        }
        check = Some(ch);
    }
}

/// Subscribes, stops reading for seconds, then reads until caught up (checking seqs) or
/// just closes.
fn stalled(sh: Arc<Shared>, socket: PathBuf, seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    while !sh.stopped() {
        sh.pause.point(&sh.stop);
        if sh.stopped() {
            break;
        }
        let gen = sh.gen();
        let Some(mut c) = Rpc::connect(&socket) else {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        let Some(r) = c.call(&sh, "subscribe", json!({})) else {
            continue;
        };
        let boot = r["result"]["bootID"].as_str().unwrap_or("").to_owned();
        let mut ch = SeqCheck {
            boot,
            last: r["result"]["seq"].as_u64().unwrap_or(0),
        };
        sh.stalls.fetch_add(1, Ordering::Relaxed);
        let stall = Duration::from_millis(rng.u64(500..6000));
        let end = Instant::now() + stall;
        while Instant::now() < end && !sh.stopped() && !sh.pause.paused() {
            std::thread::sleep(Duration::from_millis(50));
        }
        if rng.bool() || sh.pause.paused() || sh.stopped() {
            continue; // closes without reading
        }
        let Some(target) = status_of(&sh, &socket) else {
            continue;
        };
        if target["bootID"] != json!(ch.boot) {
            continue;
        }
        let target = target["lastSeq"].as_u64().unwrap_or(0);
        let mut line = String::new();
        while ch.last < target {
            line.clear();
            if c.r.read_line(&mut line).unwrap_or(0) == 0 {
                if !sh.cut(gen) {
                    sh.violation("stalled subscriber: the daemon closed it".into());
                }
                break;
            }
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                sh.violation(format!("stalled subscriber: unreadable line {line:?}"));
                break;
            };
            if v["method"] == "event" {
                if let Err(e) = ch.event(&sh, "stalled subscriber", &v["params"]) {
                    sh.violation(e);
                    break;
                }
            }
        }
    }
}

// ------------------------------------------------------------------ API churn

/// What one churn connection sends, and what must come back.
struct Expect {
    /// Ids (as JSON text) that must be answered exactly once each.
    ids: Vec<String>,
    /// Replies with `id: null` that must come (one per unreadable line or member).
    nulls: usize,
    /// Batch replies expected: each is the ids and nulls of one array.
    batches: Vec<(Vec<String>, usize)>,
}

const READ_METHODS: &[&str] = &[
    "getLoginStatus",
    "getLoginUser",
    "getVersion",
    "status",
    "getServerTime",
    "getSelfInfo",
    "noSuchMethod",
];

fn request_line(rng: &mut fastrand::Rng, id: Option<&str>) -> String {
    let method = if rng.u32(..2000) == 0 {
        "reconnect"
    } else {
        READ_METHODS[rng.usize(..READ_METHODS.len())]
    };
    match id {
        Some(id) => format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"{method}\"}}"),
        None => format!("{{\"jsonrpc\":\"2.0\",\"method\":\"{method}\"}}"),
    }
}

fn garbage(rng: &mut fastrand::Rng) -> Vec<u8> {
    let pick = rng.u32(..6);
    let mut g: Vec<u8> = match pick {
        0 => b"{\"jsonrpc\": \"2.0\", \"method\": \"foobar, \"params\": \"bar\", \"baz]".to_vec(),
        1 => b"[]".to_vec(),
        2 => b"{\"jsonrpc\":\"1.0\",\"method\":\"getVersion\",\"id\":{\"x\":1}}".to_vec(),
        3 => vec![0xff, 0xfe, b'{'],
        4 => b"42".to_vec(),
        _ => (0..rng.usize(1..200))
            .map(|_| rng.u8(..))
            .filter(|b| *b != b'\n')
            .collect(),
    };
    if g.iter().all(u8::is_ascii_whitespace) {
        g.push(b'x');
    }
    // A JSON array would be a batch, answered with an array.
    if pick == 5 && serde_json::from_slice::<Value>(&g).is_ok_and(|v| v.is_array()) {
        g.insert(0, b'x');
    }
    if g.last() == Some(&b'\r') {
        g.push(b'x');
    }
    g
}

/// One churn connection: connect, maybe send lines, half-close, read to the end, check.
fn churn_once(sh: &Shared, socket: &Path, rng: &mut fastrand::Rng, next_id: &mut u64) {
    let gen = sh.gen();
    let Ok(s) = UnixStream::connect(socket) else {
        std::thread::sleep(Duration::from_millis(20));
        return;
    };
    sh.connections.fetch_add(1, Ordering::Relaxed);
    let kind = rng.u32(..100);
    if kind < 15 {
        // Connect and close.
        return;
    }
    let _ = s.set_read_timeout(Some(REPLY_DEADLINE));
    let mut w = s.try_clone().unwrap();
    let mut exp = Expect {
        ids: Vec::new(),
        nulls: 0,
        batches: Vec::new(),
    };
    let mut fresh = |rng: &mut fastrand::Rng| {
        *next_id += 1;
        if rng.bool() {
            next_id.to_string()
        } else {
            format!("\"c{next_id}\"")
        }
    };
    let mut out = Vec::new();
    let lines = rng.usize(1..8);
    for _ in 0..lines {
        match rng.u32(..100) {
            0..=54 => {
                let id = fresh(rng);
                out.extend_from_slice(request_line(rng, Some(&id)).as_bytes());
                exp.ids.push(id);
            }
            55..=64 => {
                out.extend_from_slice(request_line(rng, None).as_bytes());
                sh.notifications.fetch_add(1, Ordering::Relaxed);
            }
            65..=84 => {
                // A batch: requests, notifications and invalid members.
                let mut members = Vec::new();
                let mut ids = Vec::new();
                let mut nulls = 0;
                let id = fresh(rng);
                members.push(request_line(rng, Some(&id)));
                ids.push(id);
                for _ in 0..rng.usize(0..6) {
                    match rng.u32(..3) {
                        0 => {
                            let id = fresh(rng);
                            members.push(request_line(rng, Some(&id)));
                            ids.push(id);
                        }
                        1 => members.push(request_line(rng, None)),
                        _ => {
                            members.push(
                                ["1", "{\"jsonrpc\":\"2.0\"}", "\"x\""][rng.usize(..3)].into(),
                            );
                            nulls += 1;
                        }
                    }
                }
                rng.shuffle(&mut members);
                out.extend_from_slice(format!("[{}]", members.join(",")).as_bytes());
                exp.batches.push((ids, nulls));
                sh.batches.fetch_add(1, Ordering::Relaxed);
            }
            85..=96 => {
                out.extend_from_slice(&garbage(rng));
                exp.nulls += 1;
                sh.garbage_lines.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                out.extend(std::iter::repeat_n(
                    b'x',
                    MAX_LINE_BYTES + 1 + rng.usize(..1000),
                ));
                exp.nulls += 1;
                sh.long_lines.fetch_add(1, Ordering::Relaxed);
            }
        }
        out.push(b'\n');
    }
    let expected =
        exp.ids.len() + exp.nulls + exp.batches.iter().map(|(i, n)| i.len() + n).sum::<usize>();
    sh.requests.fetch_add(expected as u64, Ordering::Relaxed);
    if kind < 25 {
        // Send and close without reading: the daemon must cope; nothing to check.
        let _ = w.write_all(&out);
        sh.abandoned.fetch_add(expected as u64, Ordering::Relaxed);
        return;
    }
    let cut = |sh: &Shared| {
        sh.interrupted.fetch_add(expected as u64, Ordering::Relaxed);
    };
    if w.write_all(&out).is_err() || w.shutdown(Shutdown::Write).is_err() {
        if sh.cut(gen) {
            return cut(sh);
        }
        sh.violation("churn: the daemon stopped reading a connection".into());
        return;
    }
    let mut r = BufReader::new(s);
    let mut got: Vec<Value> = Vec::new();
    let mut line = Vec::new();
    let ended_ok = loop {
        line.clear();
        match r.read_until(b'\n', &mut line) {
            Ok(0) => break true,
            Ok(_) => match serde_json::from_slice::<Value>(&line) {
                Ok(v) => got.push(v),
                Err(_) => {
                    sh.violation(format!(
                        "churn: an unreadable reply line: {:?}",
                        String::from_utf8_lossy(&line)
                    ));
                    return;
                }
            },
            Err(_) => break false,
        }
    };
    if sh.cut(gen) {
        return cut(sh);
    }
    if !ended_ok {
        sh.violation(format!(
            "churn: a half-closed connection neither answered nor closed within {REPLY_DEADLINE:?}; sent {} bytes: {:?}; got {} lines: {:?}",
            out.len(),
            String::from_utf8_lossy(&out[..out.len().min(600)]),
            got.len(),
            got
        ));
        return;
    }
    // Match: each id exactly once, the right number of null-id errors, the batches.
    let mut want: HashMap<String, u32> = HashMap::new();
    for id in &exp.ids {
        *want.entry(id.clone()).or_default() += 1;
    }
    let mut nulls = 0usize;
    let mut arrays: Vec<&Vec<Value>> = Vec::new();
    let mut matched = 0u64;
    for v in &got {
        if let Some(a) = v.as_array() {
            arrays.push(a);
            continue;
        }
        if v["id"].is_null() {
            if v.get("error").is_none() {
                sh.violation(format!(
                    "churn: a reply with id null that is not an error: {v}"
                ));
            }
            nulls += 1;
            continue;
        }
        let id = v["id"].to_string();
        match want.get_mut(&id) {
            Some(n) if *n > 0 => {
                *n -= 1;
                matched += 1;
            }
            _ => sh.violation(format!("churn: a reply nobody asked for (or twice): {v}")),
        }
    }
    if nulls != exp.nulls {
        sh.violation(format!(
            "churn: {nulls} id-null error replies for {} unreadable lines",
            exp.nulls
        ));
    } else {
        matched += nulls as u64;
    }
    for (id, n) in want {
        if n > 0 {
            sh.violation(format!("churn: no reply to request {id}"));
        }
    }
    // Batches: each array answers exactly one batch's ids and invalid members.
    let mut batches = exp.batches.clone();
    for a in arrays {
        let ids: Vec<String> = a
            .iter()
            .filter(|m| !m["id"].is_null())
            .map(|m| m["id"].to_string())
            .collect();
        let n_null = a.iter().filter(|m| m["id"].is_null()).count();
        let pos = batches.iter().position(|(bi, bn)| {
            *bn == n_null && bi.len() == ids.len() && bi.iter().all(|i| ids.contains(i))
        });
        match pos {
            Some(p) => {
                let (bi, bn) = batches.remove(p);
                matched += (bi.len() + bn) as u64;
            }
            None => sh.violation(format!(
                "churn: a batch reply that answers no batch as sent: {a:?}"
            )),
        }
    }
    for (ids, _) in batches {
        sh.violation(format!("churn: no reply to the batch with ids {ids:?}"));
    }
    sh.replies.fetch_add(matched, Ordering::Relaxed);
}

/// Subscribe, read a little, unsubscribe, close: subscription churn.
fn churn_subscription(sh: &Shared, socket: &Path, rng: &mut fastrand::Rng) {
    let Some(mut c) = Rpc::connect(socket) else {
        return;
    };
    sh.connections.fetch_add(1, Ordering::Relaxed);
    let Some(r) = c.call(sh, "subscribe", json!({"since": rng.u64(0..50)})) else {
        return;
    };
    let Some(sub) = r["result"]["subscription"].as_u64() else {
        sh.violation(format!("churn: subscribe answered {r}"));
        return;
    };
    if rng.bool() {
        if let Some(r) = c.call(sh, "unsubscribe", json!({"subscription": sub})) {
            if r.get("error").is_some() {
                sh.violation(format!("churn: unsubscribe of {sub} answered {r}"));
            }
        }
    }
}

fn churner(sh: Arc<Shared>, socket: PathBuf, seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut next_id = 0u64;
    while !sh.stopped() {
        sh.pause.point(&sh.stop);
        if sh.stopped() {
            break;
        }
        if rng.u32(..20) == 0 {
            churn_subscription(&sh, &socket, &mut rng);
        } else {
            churn_once(&sh, &socket, &mut rng, &mut next_id);
        }
    }
}

/// Makes events: profile pushes at the daemon's user.
/// (The devserver is restarted on the same address.)
fn loader(sh: Arc<Shared>, addr: SocketAddr, seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    while !sh.stopped() {
        sh.pause.point(&sh.stop);
        if sh.stopped() {
            break;
        }
        let count = rng.u64(10..300);
        let rate = rng.u64(300..3000);
        let _ = http(
            addr,
            "POST",
            &format!("/faults/push-burst?user={USER}&count={count}&rate={rate}"),
        );
        std::thread::sleep(Duration::from_millis(rng.u64(200..1500)));
    }
}

// ------------------------------------------------------------------ faults

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Fault {
    Drop,
    Silence,
    Refuse,
    Delay,
    FailLogins,
    DevserverKill,
    LinkFlap,
    HupValid,
    HupBroken,
    DaemonKill,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::Drop => "devserver drop",
            Fault::Silence => "devserver silence",
            Fault::Refuse => "devserver refuse",
            Fault::Delay => "devserver delay",
            Fault::FailLogins => "devserver fail-logins",
            Fault::DevserverKill => "devserver SIGKILL + restart",
            Fault::LinkFlap => "link flap (veth down/up)",
            Fault::HupValid => "SIGHUP, valid configuration",
            Fault::HupBroken => "SIGHUP, broken configuration",
            Fault::DaemonKill => "daemon SIGKILL + restart",
        }
    }
}

/// Something to undo at a time: end a delay, bring the link up.
enum Undo {
    Delay,
    LinkUp,
}

struct Run {
    sh: Arc<Shared>,
    dev: DevServer,
    daemon: Daemon,
    net: Option<Netns>,
    rng: fastrand::Rng,
    conf: Conf,
    counts: std::collections::BTreeMap<Fault, u64>,
    undo: Vec<(Instant, Undo)>,
    explicit_logins: u64,
    workers: usize,
}

impl Run {
    fn do_undo(&mut self, u: Undo) {
        match u {
            Undo::Delay => {
                self.dev.fault("delay?ms=0");
            }
            Undo::LinkUp => {
                if let Some(n) = &self.net {
                    if let Err(e) = n.set_link(true) {
                        self.sh.violation(format!("link up: {e}"));
                    }
                }
            }
        }
    }

    fn due_undos(&mut self, all: bool) {
        let now = Instant::now();
        let mut keep = Vec::new();
        for (at, u) in std::mem::take(&mut self.undo) {
            if all || at <= now {
                self.do_undo(u);
            } else {
                keep.push((at, u));
            }
        }
        self.undo = keep;
    }

    /// A kind of fault the schedule has not drawn yet, when its window is closing: every
    /// kind is injected at least once however short the run (faults come every 0.2–1.5 s).
    fn forced(&self, now: Duration, kills_until: Duration, fault_end: Duration) -> Option<Fault> {
        let never = |f: &Fault| !self.counts.contains_key(f);
        if now < kills_until && never(&Fault::DaemonKill) {
            return (kills_until - now <= Duration::from_secs(3)).then_some(Fault::DaemonKill);
        }
        let mut kinds = vec![
            Fault::Drop,
            Fault::Silence,
            Fault::Refuse,
            Fault::Delay,
            Fault::FailLogins,
            Fault::DevserverKill,
            Fault::HupValid,
            Fault::HupBroken,
        ];
        if self.net.is_some() {
            kinds.push(Fault::LinkFlap);
        }
        kinds.retain(never);
        let room = Duration::from_millis(1600) * (kinds.len() as u32 + 1);
        kinds
            .first()
            .copied()
            .filter(|_| fault_end.saturating_sub(now) <= room)
    }

    fn pick(&mut self, daemon_kills: bool) -> Fault {
        let mut table = vec![
            (Fault::Drop, 3),
            (Fault::Silence, 2),
            (Fault::Refuse, 2),
            (Fault::Delay, 2),
            (Fault::FailLogins, 2),
            (Fault::DevserverKill, 1),
            (Fault::HupValid, 2),
            (Fault::HupBroken, 2),
        ];
        if self.net.is_some() {
            table.push((Fault::LinkFlap, 2));
        }
        if daemon_kills {
            table.push((Fault::DaemonKill, 1));
        }
        let total: u32 = table.iter().map(|(_, w)| w).sum();
        let mut x = self.rng.u32(..total);
        for (f, w) in &table {
            if x < *w {
                return *f;
            }
            x -= w;
        }
        Fault::Drop
    }

    fn inject(&mut self, f: Fault) {
        *self.counts.entry(f).or_default() += 1;
        let ms = |rng: &mut fastrand::Rng, lo: u64, hi: u64| rng.u64(lo..hi);
        match f {
            Fault::Drop => {
                self.dev.fault("drop");
            }
            Fault::Silence => {
                let n = ms(&mut self.rng, 300, 2500);
                self.dev.fault(&format!("silence?ms={n}"));
            }
            Fault::Refuse => {
                let n = ms(&mut self.rng, 300, 3000);
                self.dev.fault(&format!("refuse?ms={n}"));
            }
            Fault::Delay => {
                let n = ms(&mut self.rng, 50, 1500);
                let hold = ms(&mut self.rng, 500, 4000);
                self.dev.fault(&format!("delay?ms={n}"));
                self.undo
                    .push((Instant::now() + Duration::from_millis(hold), Undo::Delay));
            }
            Fault::FailLogins => {
                let count = self.rng.u32(1..4);
                let code = [6012, 80001][self.rng.usize(..2)];
                let dev = &self.dev;
                dev.fault(&format!("fail-logins?count={count}&code={code}"));
                if self.rng.bool() {
                    // So that a re-login meets the failures.
                    dev.fault("drop");
                }
            }
            Fault::DevserverKill => {
                let down = ms(&mut self.rng, 0, 2000);
                self.dev.kill();
                std::thread::sleep(Duration::from_millis(down));
                self.dev.restart();
            }
            Fault::LinkFlap => {
                let down = ms(&mut self.rng, 200, 3000);
                if let Some(n) = &self.net {
                    if let Err(e) = n.set_link(false) {
                        self.sh.violation(format!("link down: {e}"));
                    }
                    self.undo
                        .push((Instant::now() + Duration::from_millis(down), Undo::LinkUp));
                }
            }
            Fault::HupValid => {
                let c = Conf::random_valid(&mut self.rng);
                match self.daemon.reload(&c, &c) {
                    Ok(()) => self.conf = c,
                    Err(e) => self.sh.violation(e),
                }
            }
            Fault::HupBroken => {
                let c = Conf::random_broken(&mut self.rng);
                let keep = self.conf.clone();
                if let Err(e) = self.daemon.reload(&c, &keep) {
                    self.sh.violation(e);
                }
            }
            Fault::DaemonKill => {
                let down = ms(&mut self.rng, 0, 1000);
                self.sh.killing.store(true, Ordering::SeqCst);
                self.sh.daemon_gen.fetch_add(1, Ordering::SeqCst);
                self.daemon.kill();
                std::thread::sleep(Duration::from_millis(down));
                self.daemon.spawn();
                self.sh.daemon_gen.fetch_add(1, Ordering::SeqCst);
                self.sh.killing.store(false, Ordering::SeqCst);
            }
        }
    }

    /// Ends every fault: link up, delay off, `/faults/clear`, the server running.
    fn clear(&mut self) {
        self.due_undos(true);
        let dev = &self.dev;
        if !dev.fault("clear") {
            self.sh
                .violation("the devserver did not answer /faults/clear".into());
        }
    }

    /// Waits until the daemon is LOGINED and online and the server holds its login;
    /// how long it took, or None after `limit`.
    fn wait_logined(&self, limit: Duration) -> Option<Duration> {
        let t0 = Instant::now();
        poll(limit, Duration::from_millis(5), || {
            let st = status_of(&self.sh, &self.daemon.socket)?;
            (logined_online(&st) && self.dev.daemon_online()).then(|| t0.elapsed())
        })
    }

    /// Invariant 3, on the counters now.
    fn check_logins(&self, at: &str) -> Option<(Totals, u64)> {
        let t = self.dev.totals()?;
        let relogin_failures = self.sh.relogin_failures.load(Ordering::SeqCst);
        let bound = t.connections + self.explicit_logins + t.refused + relogin_failures;
        if t.attempts > bound {
            self.sh.violation(format!(
                "login loop ({at}): the server saw {} login attempts > {} connections + {} explicit logins + {} refused + {} failed re-logins",
                t.attempts, t.connections, self.explicit_logins, t.refused, relogin_failures
            ));
        }
        Some((t, bound))
    }

    /// Stops the workers at a quiet point, with the followers caught up to the newest
    /// event: the daemon holds only the followers' connections and its link.
    fn quiesce(&mut self) -> bool {
        if !self.sh.pause.pause(self.workers) {
            self.sh
                .violation("the workers did not reach a pause point within 120 s".into());
            return false;
        }
        // One more event: the daemon notices a subscriber that closed at its next event.
        let _ = self
            .dev
            .http("POST", &format!("/faults/push-burst?user={USER}&count=1"));
        let caught_up = poll(Duration::from_secs(120), Duration::from_millis(10), || {
            let st = status_of(&self.sh, &self.daemon.socket)?;
            let boot = st["bootID"].as_str()?.to_owned();
            let last = st["lastSeq"].as_u64()?;
            let f = self.sh.followers.lock().unwrap();
            (f.len() == 3 && f.values().all(|(b, s)| *b == boot && *s >= last)).then_some(())
        });
        if caught_up.is_none() {
            self.sh.violation(format!(
                "the followers did not catch up with the daemon within 120 s: {:?}",
                self.sh.followers.lock().unwrap()
            ));
        }
        caught_up.is_some()
    }

    /// A burst that fills the event ring, at a pace the followers keep up with.
    fn fill_ring(&self) {
        let dev = &self.dev;
        let _ = dev.http(
            "POST",
            &format!(
                "/faults/push-burst?user={USER}&count={}&rate=4000",
                HISTORY + 64
            ),
        );
    }

    /// (fds, RSS KiB) of the daemon, settled: the median of five readings.
    fn measure(&self, name: &str) -> (u64, u64) {
        let pid = self.daemon.pid();
        // The workers' connections are closed; wait (bounded) until the daemon has seen
        // every one of them end, so that a close still in flight is not counted.
        let reaped = poll(Duration::from_secs(20), Duration::from_millis(50), || {
            (closed_peers(pid)? == 0).then_some(())
        });
        if reaped.is_none() {
            println!(
                "soak: {name}: the daemon still holds {} connections its clients closed",
                closed_peers(pid).unwrap_or(0)
            );
        }
        // What the fds are, for the record (in the run's directory).
        let mut listing = String::new();
        if let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
            for e in rd.flatten() {
                let target = std::fs::read_link(e.path()).unwrap_or_default();
                listing.push_str(&format!(
                    "{} -> {}\n",
                    e.file_name().to_string_lossy(),
                    target.display()
                ));
            }
        }
        if let Ok(o) = Command::new("ss").args(["-xp"]).output() {
            let pat = format!("pid={pid},");
            for l in String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| l.contains(&pat))
            {
                listing.push_str(l);
                listing.push('\n');
            }
        }
        let _ = std::fs::write(self.daemon.dir.join(format!("fds-{name}.txt")), listing);
        let mut fds = Vec::new();
        let mut rss = Vec::new();
        for _ in 0..5 {
            fds.push(fd_count(pid).unwrap_or(0));
            rss.push(rss_kib(pid).unwrap_or(0));
            std::thread::sleep(Duration::from_millis(100));
        }
        fds.sort_unstable();
        rss.sort_unstable();
        (fds[2], rss[2])
    }
}

// ------------------------------------------------------------------ main

struct Args {
    bin_dir: PathBuf,
    seconds: u64,
    seed: u64,
    out: Option<PathBuf>,
    netns: bool,
}

fn args() -> Args {
    let mut a = Args {
        bin_dir: PathBuf::from("target/debug"),
        seconds: std::env::var("SOAK_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1800),
        seed: std::env::var("SOAK_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| unix_ms() ^ u64::from(std::process::id()) << 32),
        out: None,
        netns: std::env::var("SOAK_NETNS").map_or(true, |v| v != "0"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(f) = it.next() {
        match f.as_str() {
            "--bin-dir" => a.bin_dir = it.next().expect("--bin-dir DIR").into(),
            "--seconds" => a.seconds = it.next().and_then(|s| s.parse().ok()).expect("--seconds N"),
            "--seed" => a.seed = it.next().and_then(|s| s.parse().ok()).expect("--seed S"),
            "--out" => a.out = Some(it.next().expect("--out FILE").into()),
            "--no-netns" => a.netns = false,
            other => {
                eprintln!(
                    "usage: soak --bin-dir DIR [--seconds N] [--seed S] [--out FILE] [--no-netns]"
                );
                panic!("unknown argument {other:?}");
            }
        }
    }
    a
}

fn main() {
    let a = args();
    let started = Instant::now();
    let seed = a.seed;
    println!(
        "soak: seed {seed} (reproduce with SOAK_SEED={seed}), {} s, binaries from {}",
        a.seconds,
        a.bin_dir.display()
    );
    let term = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, term.clone()).unwrap();
    }
    let tmp = tempfile::Builder::new()
        .prefix("imlink-soak-")
        .tempdir()
        .unwrap();
    let dir = tmp.path().to_owned();
    std::fs::create_dir(dir.join("state")).unwrap();

    // Namespaces first, while this is the only thread.
    let net = if a.netns {
        match Netns::setup() {
            Ok(n) => Some(n),
            Err(e) => {
                println!("soak: link flaps skipped: {e}");
                None
            }
        }
    } else {
        println!("soak: link flaps skipped: --no-netns / SOAK_NETNS=0");
        None
    };
    if let Some(n) = &net {
        n.enter_server().unwrap();
        println!(
            "soak: devserver in netns {}, daemon in netns {} (veth {}), link flaps on",
            n.server, n.daemon, n.link
        );
    }
    let ip = net.as_ref().map_or("127.0.0.1", |n| n.server_ip);
    let dev = DevServer::start(&a.bin_dir, &dir, ip);
    let server = dev.addr.to_string();
    let dev_addr = dev.addr;
    let daemon = Daemon::start(
        &a.bin_dir,
        &dir,
        &server,
        net.as_ref().map(|n| n.daemon.clone()),
    );
    let sh = Arc::new(Shared {
        seed,
        ..Shared::default()
    });
    let socket = daemon.socket.clone();

    // Log in once (the only explicit login), and wait until it is on disk.
    let ticket =
        imlink::usersig::generate(APP, KEY, USER, 30 * 86_400, imlink::usersig::now_unix());
    let mut c = Rpc::connect(&socket).expect("connect to imlinkd");
    let r = c
        .call(&sh, "login", json!({"userID": USER, "userSig": ticket}))
        .expect("login");
    assert!(r.get("error").is_none(), "login: {r}");
    poll(Duration::from_secs(30), Duration::from_millis(10), || {
        let st = c.status(&sh)?;
        (logined_online(&st) && st["stateSaved"] == true).then_some(())
    })
    .expect("LOGINED and saved within 30 s");
    drop(c);

    let mut run = Run {
        sh: sh.clone(),
        dev,
        daemon,
        net,
        rng: fastrand::Rng::with_seed(seed),
        conf: Conf::initial(),
        counts: Default::default(),
        undo: Vec::new(),
        explicit_logins: 1,
        workers: 0,
    };

    let mut threads = Vec::new();
    for (i, slow) in [(1, None), (2, None), (3, Some(2))] {
        let (s, p) = (sh.clone(), socket.clone());
        let name = if slow.is_some() {
            "slow follower".to_owned()
        } else {
            format!("follower {i}")
        };
        threads.push(std::thread::spawn(move || follower(s, p, name, slow)));
    }
    // Workers that pause: two churners, the stalled subscriber, the loader.
    for i in 0..2u64 {
        let (s, p) = (sh.clone(), socket.clone());
        threads.push(std::thread::spawn(move || {
            churner(s, p, seed.wrapping_add(i + 1))
        }));
    }
    {
        let (s, p) = (sh.clone(), socket.clone());
        threads.push(std::thread::spawn(move || {
            stalled(s, p, seed.wrapping_add(7))
        }));
    }
    {
        let s = sh.clone();
        threads.push(std::thread::spawn(move || {
            loader(s, dev_addr, seed.wrapping_add(9))
        }));
    }
    run.workers = 4;

    // The schedule: warm-up, faults (daemon kills in the first 40 % only), a
    // measurement of the daemon after its warm-up at half time, faults to the end.
    let total = Duration::from_secs(a.seconds);
    let warmup = (total / 10).clamp(Duration::from_secs(3), Duration::from_secs(30));
    let fault_end = total
        .saturating_sub(total / 20)
        .max(warmup + Duration::from_secs(2));
    let fault_len = fault_end - warmup;
    let kills_until = warmup + fault_len * 2 / 5;
    let baseline_at = warmup + fault_len / 2;
    std::thread::sleep(warmup);
    let mut baseline: Option<(u64, u64, Duration)> = None;
    let mut last_check = Instant::now();
    let mut next_fault = started.elapsed();
    let cap = Duration::from_millis((BACKOFF_MAX_MS as f64 * (1.0 + JITTER)) as u64);
    while started.elapsed() < fault_end && !term.load(Ordering::SeqCst) {
        run.due_undos(false);
        let now = started.elapsed();
        if baseline.is_none() && now >= baseline_at {
            run.clear();
            if run.wait_logined(cap + Duration::from_secs(30)).is_none() {
                run.sh
                    .violation("not LOGINED and online for the warm-up measurement".into());
            }
            run.fill_ring();
            if run.quiesce() {
                let (fds, rss) = run.measure("warm-up");
                let up = run.daemon.starts;
                println!("soak: after warm-up (daemon start #{up}): {fds} fds, {rss} KiB RSS");
                baseline = Some((fds, rss, started.elapsed()));
            }
            run.sh.pause.resume();
            next_fault = started.elapsed();
            continue;
        }
        if now >= next_fault {
            let f = run
                .forced(now, kills_until, fault_end)
                .unwrap_or_else(|| run.pick(now < kills_until));
            run.inject(f);
            next_fault = started.elapsed() + Duration::from_millis(run.rng.u64(200..1500));
        }
        if last_check.elapsed() >= Duration::from_secs(2) {
            run.check_logins("during the run");
            last_check = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    // The faults stop.
    run.clear();
    let relogin = run.wait_logined(cap + Duration::from_secs(5));
    match relogin {
        Some(d) => println!("soak: faults stopped; LOGINED and online after {d:?}"),
        None => run.sh.violation(format!(
            "not LOGINED and online within the backoff cap + 5 s ({:?}) after the faults stopped",
            cap + Duration::from_secs(5)
        )),
    }
    if relogin.is_none() {
        // Still wait (bounded) so that the rest can be measured.
        run.wait_logined(Duration::from_secs(60));
    }
    run.fill_ring();
    let quiet = run.quiesce();
    let end = quiet.then(|| run.measure("end"));
    let logins = run.check_logins("at the end");
    sh.stop.store(true, Ordering::SeqCst);
    sh.pause.resume();
    // The followers block in reads: closing the daemon's side ends them.
    let daemon_pid = run.daemon.pid();
    let dev_pid = run.dev.pid();
    let dev_fds = dev_pid.and_then(fd_count);
    let dev_rss = dev_pid.and_then(rss_kib);
    sh.killing.store(true, Ordering::SeqCst);
    sh.daemon_gen.fetch_add(1, Ordering::SeqCst);
    run.daemon.kill();
    for t in threads {
        if t.join().is_err() {
            sh.violation("a worker thread of the harness panicked".into());
        }
    }
    let ld = |a: &AtomicU64| a.load(Ordering::SeqCst);
    let accounted = ld(&sh.replies) + ld(&sh.interrupted) + ld(&sh.abandoned);
    if ld(&sh.requests) != accounted {
        sh.violation(format!(
            "requests: {} sent expecting a reply, {} answered, cut or abandoned",
            ld(&sh.requests),
            accounted
        ));
    }

    // Invariant 4.
    let mut fd_rss = String::new();
    match (baseline, end) {
        (Some((f0, r0, at)), Some((f1, r1))) => {
            let within =
                |a: u64, b: u64| (b as f64) <= (a as f64) * 1.10 && (b as f64) >= (a as f64) * 0.90;
            if !within(f0, f1) {
                sh.violation(format!(
                    "open fds: {f0} after warm-up, {f1} at the end (> 10 % apart)"
                ));
            }
            if !within(r0, r1) {
                sh.violation(format!(
                    "RSS: {r0} KiB after warm-up, {r1} KiB at the end (> 10 % apart)"
                ));
            }
            fd_rss = format!(
                "| daemon open fds | {f0} | {f1} | {:+.1} % |\n| daemon RSS | {r0} KiB | {r1} KiB | {:+.1} % |\n\
                 \nWarm-up measured at {:.0} s; the daemon process measured (pid {daemon_pid}, start #{}) ran from before that to the end.\n",
                (f1 as f64 / f0 as f64 - 1.0) * 100.0,
                (r1 as f64 / r0 as f64 - 1.0) * 100.0,
                at.as_secs_f64(),
                run.daemon.starts,
            );
        }
        _ => sh.violation("fds and RSS could not be compared (no quiet point)".into()),
    }

    // The report.
    let violations = sh.violations.lock().unwrap().clone();
    let mut rep = String::new();
    rep.push_str(&format!(
        "# imlink soak\n\nseed {seed} · {} s asked, {:.0} s run · link flaps {} · {}\n\n",
        a.seconds,
        started.elapsed().as_secs_f64(),
        if run.net.is_some() {
            "on (network namespaces)"
        } else {
            "off"
        },
        if violations.is_empty() {
            "**all invariants held**".to_owned()
        } else {
            format!("**{} violations**", violations.len())
        },
    ));
    rep.push_str("## Faults injected\n\n| fault | count |\n| --- | --- |\n");
    let mut n_faults = 0;
    for (f, n) in &run.counts {
        rep.push_str(&format!("| {} | {n} |\n", f.name()));
        n_faults += n;
    }
    rep.push_str(&format!("| **total** | **{n_faults}** |\n\n"));
    rep.push_str("## Invariants\n\n");
    rep.push_str(&format!(
        "1. events: {} checked by the subscribers (3 followers with `since: 0` across {} daemon starts, a stalled subscriber: {} stalls); {} seqs covered by `eventsLost`; {} (re)subscriptions; 0 gaps and 0 duplicates unless listed below\n",
        ld(&sh.events_checked), run.daemon.starts, ld(&sh.stalls), ld(&sh.events_lost), ld(&sh.resubscribes)
    ));
    rep.push_str(&format!(
        "2. after the faults stopped: {} (limit: backoff cap {:?} + 5 s)\n",
        relogin.map_or("not LOGINED in time".to_owned(), |d| format!(
            "LOGINED and online after {:.0} ms",
            d.as_secs_f64() * 1000.0
        )),
        cap
    ));
    match logins {
        Some((t, bound)) => rep.push_str(&format!(
            "3. logins: {} attempts at the server ≤ {bound} = {} connections + {} explicit + {} refused + {} failed re-logins\n",
            t.attempts, t.connections, run.explicit_logins, t.refused, ld(&sh.relogin_failures)
        )),
        None => rep.push_str("3. logins: the devserver's counters could not be read\n"),
    }
    rep.push_str("4. fds and RSS (below)\n");
    rep.push_str(&format!(
        "5. requests: {} sent expecting a reply, {} replies matched one to one, {} cut by a daemon SIGKILL, {} abandoned by the client (closed unread); {} notifications; {} connections ({} batches, {} garbage lines, {} over-long lines)\n\n",
        ld(&sh.requests), ld(&sh.replies), ld(&sh.interrupted), ld(&sh.abandoned), ld(&sh.notifications), ld(&sh.connections), ld(&sh.batches), ld(&sh.garbage_lines), ld(&sh.long_lines)
    ));
    rep.push_str("| | after warm-up | at the end | change |\n| --- | --- | --- | --- |\n");
    rep.push_str(&fd_rss);
    rep.push_str(&format!(
        "\ndevserver at the end: {} fds, {} KiB RSS (restarted {} times).\n",
        dev_fds.map_or("?".into(), |v| v.to_string()),
        dev_rss.map_or("?".into(), |v| v.to_string()),
        run.counts.get(&Fault::DevserverKill).copied().unwrap_or(0)
    ));
    if !violations.is_empty() {
        rep.push_str(&format!(
            "\n## Violations (reproduce with SOAK_SEED={seed})\n\n"
        ));
        for v in &violations {
            rep.push_str(&format!("- {v}\n"));
        }
    }
    println!("\n{rep}");
    if let Some(out) = &a.out {
        if let Some(p) = out.parent() {
            let _ = std::fs::create_dir_all(p);
        }
        std::fs::write(out, &rep).unwrap();
        println!("soak: report written to {}", out.display());
    }
    drop(run);
    if violations.is_empty() && !term.load(Ordering::SeqCst) {
        return;
    }
    let kept = tmp.keep();
    eprintln!(
        "soak: FAILED with seed {seed}: reproduce with SOAK_SEED={seed} SOAK_SECONDS={}; logs kept in {}",
        a.seconds,
        kept.display()
    );
    std::process::exit(1);
}
