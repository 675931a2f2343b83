//! Signals during `imlinkd`'s start-up, with the real binary: a SIGHUP from the first line
//! the daemon writes until it serves its socket (and after) never kills it; SIGTERM during
//! start-up still stops it.
//!
//! The test starts at the daemon's first output, the earliest moment a process can be seen
//! to run its own code: before that the dynamic loader is still at work, and no program
//! can catch a signal there.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::process::{kill_process, Pid, Signal};

/// A generous deadline for anything that should happen soon.
const T: Duration = Duration::from_secs(20);

/// The line `imlinkd` logs once its configuration is loaded, before the daemon starts.
const FIRST_LINE: &str = "configuration loaded";

/// A configuration whose socket and state live in `dir`, for a server that is not there
/// (the daemon keeps retrying, which does not matter here).
fn config(dir: &Path) -> PathBuf {
    let path = dir.join("imlinkd.toml");
    let text = format!(
        "[sdk]\nlog_level = \"info\"\n[server]\nurl = \"ws://127.0.0.1:1/v1/connect\"\n\
         [api]\nsocket = {:?}\n[state]\ndir = {:?}\nrestore_session = false\n",
        dir.join("imlinkd.sock").display().to_string(),
        dir.join("state").display().to_string(),
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// A running `imlinkd`: its stderr is drained by a thread, which reports the first
/// [`FIRST_LINE`] and keeps everything for diagnostics.
struct Started {
    child: Child,
    first_line: mpsc::Receiver<()>,
    log: Arc<Mutex<String>>,
}

fn start(config: &Path, dir: &Path) -> Started {
    let mut child = Command::new(env!("CARGO_BIN_EXE_imlinkd"))
        .arg("--config")
        .arg(config)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, first_line) = mpsc::channel();
    let log = Arc::new(Mutex::new(String::new()));
    let keep = log.clone();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if line.contains(FIRST_LINE) {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(());
                }
            }
            let mut log = keep.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    Started {
        child,
        first_line,
        log,
    }
}

impl Started {
    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Blocks until the daemon has written its first line.
    fn wait_first_line(&mut self) {
        if self.first_line.recv_timeout(T).is_err() {
            let status = self.child.try_wait().unwrap();
            panic!(
                "no {FIRST_LINE:?} line within {T:?} (status {status:?}); log:\n{}",
                self.log()
            );
        }
    }

    fn signal(&self, sig: Signal) {
        kill_process(Pid::from_child(&self.child), sig).unwrap();
    }

    /// Waits for the process to end (at most [`T`]).
    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + T;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("imlinkd did not exit within {T:?}; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Whether a request on `c` has been answered (any reply line means the API is served).
fn answered(c: &mut UnixStream, got: &mut Vec<u8>) -> bool {
    let mut buf = [0u8; 4096];
    match c.read(&mut buf) {
        Ok(0) => panic!("the daemon closed the API connection"),
        Ok(n) => got.extend_from_slice(&buf[..n]),
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        Err(e) => panic!("reading the API socket: {e}"),
    }
    got.contains(&b'\n')
}

#[test]
fn sighup_from_the_first_line_until_ready_never_kills_the_daemon() {
    for round in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let socket = dir.path().join("imlinkd.sock");
        let mut d = start(&config, dir.path());
        d.wait_first_line();

        // SIGHUP after SIGHUP, as fast as they can be sent, until the API answers.
        let deadline = Instant::now() + T;
        let mut conn: Option<UnixStream> = None;
        let mut reply = Vec::new();
        let mut sent = 0u64;
        loop {
            d.signal(Signal::HUP);
            sent += 1;
            if let Some(st) = d.child.try_wait().unwrap() {
                panic!(
                    "round {round}: imlinkd died during start-up after {sent} SIGHUPs: {st} (signal {:?}); log:\n{}",
                    st.signal(),
                    d.log()
                );
            }
            match &mut conn {
                None => {
                    if let Ok(mut c) = UnixStream::connect(&socket) {
                        c.write_all(
                            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"noSuchMethod\"}\n",
                        )
                        .unwrap();
                        c.set_nonblocking(true).unwrap();
                        conn = Some(c);
                    }
                }
                Some(c) => {
                    if answered(c, &mut reply) {
                        break;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: the API did not answer within {T:?}; log:\n{}",
                d.log()
            );
        }
        assert!(
            String::from_utf8_lossy(&reply).contains("\"id\":1"),
            "round {round}: {}",
            String::from_utf8_lossy(&reply)
        );
        drop(conn);

        // Still alive, and SIGTERM still stops it cleanly.
        d.signal(Signal::TERM);
        let st = d.wait_exit();
        assert_eq!(
            (st.code(), st.signal()),
            (Some(0), None),
            "round {round}: {st}; log:\n{}",
            d.log()
        );
    }
}

#[test]
fn sigterm_during_start_up_still_stops_the_daemon() {
    for round in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let mut d = start(&config, dir.path());
        d.wait_first_line();
        d.signal(Signal::TERM);
        let st = d.wait_exit();
        // Killed by the signal before the daemon's own handler is in place, or stopped by
        // that handler: either way it is gone, and not by anything else.
        assert!(
            st.signal() == Some(Signal::TERM.as_raw()) || st.code() == Some(0),
            "round {round}: {st}; log:\n{}",
            d.log()
        );
    }
}
