//! imlinkd under a fake service manager: a Unix datagram socket the test binds is the
//! daemon's `NOTIFY_SOCKET`, and every datagram it sends is checked — READY only once the
//! API socket accepts connections, STATUS lines that follow the login, watchdog pings at
//! about half of `WATCHDOG_USEC`, RELOADING/READY around SIGHUP, STOPPING on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::json;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::daemon::{Daemon, Launch, T};
use support::{ticket, wait_until, DevServer};

/// One datagram as received, with what the test saw at that instant.
#[derive(Debug, Clone)]
struct Note {
    at: Instant,
    /// `KEY=value` lines.
    lines: Vec<String>,
    /// For a READY=1: whether the API socket accepted a connection when it arrived.
    api_connectable: Option<bool>,
}

impl Note {
    fn has(&self, line: &str) -> bool {
        self.lines.iter().any(|l| l == line)
    }
    fn value(&self, key: &str) -> Option<&str> {
        self.lines
            .iter()
            .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
    }
}

/// The fake service manager's end of `NOTIFY_SOCKET`.
struct Manager {
    path: PathBuf,
    notes: Arc<Mutex<Vec<Note>>>,
    _dir: tempfile::TempDir,
}

impl Manager {
    /// Binds the socket and records every datagram; on each READY=1 it tries to connect
    /// to `api` at once, so a READY sent before the socket listens would show.
    fn start(api: PathBuf) -> Manager {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let notes = Arc::new(Mutex::new(Vec::new()));
        let sink = notes.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            loop {
                match sock.recv(&mut buf) {
                    Ok(n) => {
                        let at = Instant::now();
                        let text = String::from_utf8_lossy(&buf[..n]).to_string();
                        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
                        let api_connectable = lines
                            .iter()
                            .any(|l| l == "READY=1")
                            .then(|| UnixStream::connect(&api).is_ok());
                        sink.lock().unwrap().push(Note {
                            at,
                            lines,
                            api_connectable,
                        });
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        // The test is over when nobody holds the notes any more.
                        if Arc::strong_count(&sink) == 1 {
                            return;
                        }
                    }
                    Err(e) => panic!("notify socket: {e}"),
                }
            }
        });
        Manager {
            path,
            notes,
            _dir: dir,
        }
    }

    fn notes(&self) -> Vec<Note> {
        self.notes.lock().unwrap().clone()
    }

    /// Sends a datagram of its own to the socket and waits until it is recorded: every
    /// datagram sent before this call (by a daemon that has exited, say) is recorded
    /// by then, since the socket hands them over in order.
    fn sync(&self) {
        let marker = format!("X_TEST_SYNC={}", fastrand::u64(..));
        UnixDatagram::unbound()
            .unwrap()
            .send_to(marker.as_bytes(), &self.path)
            .unwrap();
        self.wait_for(0, "the test's own datagram", |n| n.has(&marker));
    }

    /// Waits until a note after index `from` satisfies `f`; returns its index.
    fn wait_for(&self, from: usize, what: &str, f: impl Fn(&Note) -> bool) -> usize {
        let mut found = None;
        wait_until(T, what, || {
            found = self
                .notes()
                .iter()
                .skip(from)
                .position(&f)
                .map(|i| i + from);
            found.is_some()
        });
        found.unwrap()
    }
}

fn launch(manager: &Manager, watchdog_usec: Option<u64>) -> Launch {
    let mut env = vec![(
        "NOTIFY_SOCKET".to_owned(),
        manager.path.display().to_string(),
    )];
    if let Some(u) = watchdog_usec {
        env.push(("WATCHDOG_USEC".into(), u.to_string()));
    }
    Launch {
        env,
        ..Launch::default()
    }
}

fn api_path(dir: &Path) -> PathBuf {
    dir.join("imlinkd.sock")
}

#[test]
fn the_daemon_tells_the_service_manager_ready_status_reload_and_stop() {
    let server = DevServer::start(&[]);
    let api_dir = tempfile::tempdir().unwrap();
    let api = api_path(api_dir.path());
    let manager = Manager::start(api.clone());
    let api_setting = format!("{:?}", api.display().to_string());
    let mut d = Daemon::start_with(
        &server,
        &[("api.socket", &api_setting)],
        Launch {
            socket: Some(api.clone()),
            ..launch(&manager, None)
        },
    );

    // READY=1, sent once the socket accepts connections.
    let ready = manager.wait_for(0, "READY=1", |n| n.has("READY=1"));
    assert_eq!(
        manager.notes()[ready].api_connectable,
        Some(true),
        "READY=1 came before the API socket accepted connections"
    );
    // Nobody is logged in yet, and the status line says so.
    manager.wait_for(0, "a STATUS= line", |n| {
        n.value("STATUS")
            .is_some_and(|s| s.starts_with("nobody logged in"))
    });

    // Logging in changes the status line.
    let mut c = d.client();
    let before_login = manager.notes().len();
    c.ok(
        "login",
        json!({"userID": "alice", "userSig": ticket("alice", 3600)}),
    );
    let i = manager.wait_for(before_login, "STATUS= naming alice", |n| {
        n.value("STATUS")
            .is_some_and(|s| s.starts_with("logged in as alice; connected to ws://"))
    });
    assert!(manager.notes()[i]
        .value("STATUS")
        .unwrap()
        .contains(&server.addr.to_string()));

    // SIGHUP: RELOADING=1 (with MONOTONIC_USEC for Type=notify-reload), then READY=1.
    let before_hup = manager.notes().len();
    d.signal("HUP");
    let reloading = manager.wait_for(before_hup, "RELOADING=1", |n| n.has("RELOADING=1"));
    let note = &manager.notes()[reloading];
    assert!(
        note.value("MONOTONIC_USEC")
            .is_some_and(|v| v.parse::<u64>().is_ok()),
        "RELOADING=1 without MONOTONIC_USEC: {note:?}"
    );
    manager.wait_for(reloading + 1, "READY=1 after the reload", |n| {
        n.has("READY=1")
    });

    // Logging out changes it again.
    let before_logout = manager.notes().len();
    c.ok("logout", json!({}));
    manager.wait_for(before_logout, "STATUS= after logout", |n| {
        n.value("STATUS")
            .is_some_and(|s| s.starts_with("nobody logged in"))
    });

    // SIGTERM: STOPPING=1, then a clean exit.
    let before_stop = manager.notes().len();
    let st = d.stop();
    assert!(st.success(), "exit status {st}; log:\n{}", d.log());
    manager.wait_for(before_stop, "STOPPING=1", |n| n.has("STOPPING=1"));

    // Without WATCHDOG_USEC there is no watchdog ping at all: the daemon has exited, and
    // everything it sent has been recorded.
    manager.sync();
    assert!(
        !manager.notes().iter().any(|n| n.has("WATCHDOG=1")),
        "watchdog pings without WATCHDOG_USEC"
    );
}

#[test]
fn the_watchdog_is_fed_at_about_half_the_interval() {
    let server = DevServer::start(&[]);
    let api_dir = tempfile::tempdir().unwrap();
    let api = api_path(api_dir.path());
    let manager = Manager::start(api.clone());
    let api_setting = format!("{:?}", api.display().to_string());
    // 600 ms: a ping every ~300 ms.
    let mut d = Daemon::start_with(
        &server,
        &[("api.socket", &api_setting)],
        Launch {
            socket: Some(api.clone()),
            ..launch(&manager, Some(600_000))
        },
    );
    let first = manager.wait_for(0, "WATCHDOG=1", |n| n.has("WATCHDOG=1"));
    // Ten more pings (a deadline, not a window).
    let pings = || -> Vec<Instant> {
        manager.notes()[first..]
            .iter()
            .filter(|n| n.has("WATCHDOG=1"))
            .map(|n| n.at)
            .collect()
    };
    wait_until(T, "ten more watchdog pings", || pings().len() >= 11);
    let pings = pings();
    let mean = (pings[10] - pings[0]) / 10;
    // At half of WATCHDOG_USEC: 300 ms apart. The bounds are the behaviour, with wide
    // margins: pinging at the full interval (600 ms, too late for a manager that counts
    // from its own clock) or flooding would fail them, a busy machine does not. The
    // receive times carry the test's own scheduling delays, so the mean over ten
    // intervals is checked, not each gap.
    assert!(
        mean >= Duration::from_millis(150) && mean <= Duration::from_millis(450),
        "one ping every {mean:?} on average at WATCHDOG_USEC=600000"
    );

    let st = d.stop();
    assert!(st.success(), "exit status {st}");
}

#[test]
fn without_notify_socket_nothing_is_sent_and_the_daemon_runs_as_usual() {
    let server = DevServer::start(&[]);
    let mut d = Daemon::start(&server, &[]);
    let mut c = d.client();
    c.ok(
        "login",
        json!({"userID": "bob", "userSig": ticket("bob", 3600)}),
    );
    assert!(d.stop().success());
    assert!(!d.log().contains("cannot notify"), "{}", d.log());
}

#[test]
fn with_many_accounts_the_status_line_counts_them() {
    let server = DevServer::start(&[]);
    let api_dir = tempfile::tempdir().unwrap();
    let api = api_path(api_dir.path());
    let manager = Manager::start(api.clone());
    let api_setting = format!("{:?}", api.display().to_string());
    let d = Daemon::start_with(
        &server,
        &[("api.socket", &api_setting), ("accounts.multi", "true")],
        Launch {
            socket: Some(api.clone()),
            ..launch(&manager, None)
        },
    );
    manager.wait_for(0, "STATUS= with no account", |n| {
        n.value("STATUS") == Some("0 of 0 accounts online")
    });
    let mut c = d.client();
    for u in ["alice", "bob"] {
        c.ok("login", json!({"userID": u, "userSig": ticket(u, 3600)}));
    }
    manager.wait_for(0, "STATUS= with both online", |n| {
        n.value("STATUS") == Some("2 of 2 accounts online")
    });
    let before = manager.notes().len();
    c.ok("logout", json!({"account": "bob"}));
    manager.wait_for(before, "STATUS= after bob's logout", |n| {
        n.value("STATUS") == Some("1 of 2 accounts online")
    });
}
