//! The API socket on disk (docs/architecture.md, "Security"): only a stale socket is
//! replaced, the socket has its mode from the moment it appears, a socket directory that
//! another user controls is refused by both `imlinkd` and `imlinkctl` (the fallback
//! `/tmp/imlink-$UID` included), and a stopping daemon removes only its own socket.
//!
//! The parts that need another uid run processes through `setpriv` and are skipped (with
//! a message) when the tests do not run as root.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::json;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Instant;
use support::daemon::{Daemon, T};
use support::*;

const NOBODY: u32 = 65534;

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn chown(p: &Path, uid: u32) {
    std::os::unix::fs::chown(p, Some(uid), Some(uid)).unwrap();
}

/// A uid of nobody's account, different per test process, so that `/tmp/imlink-$UID`
/// belongs to this test run only.
fn spare_uid() -> u32 {
    40000 + std::process::id() % 20000
}

/// Waits for `child` to exit (at most [`T`]) and returns its output.
fn finish(mut child: Child, what: &str) -> Output {
    let deadline = Instant::now() + T;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{what} did not exit within {T:?}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// A command running `program` as `uid`/`gid` (no supplementary groups), with an
/// environment of PATH and `env` only.
fn as_user(uid: u32, gid: u32, program: &str, env: &[(&str, &Path)]) -> Command {
    let mut c = Command::new("setpriv");
    c.args(["--reuid", &uid.to_string(), "--regid", &gid.to_string()])
        .arg("--clear-groups")
        .arg(program)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

/// Removes a directory tree when dropped (for paths outside a `TempDir`).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_regular_file_at_the_socket_path_is_named_and_left_alone() {
    let server = DevServer::start(&[]);
    let d = Daemon::start(&server, &[]);
    let path = d.dir().join("not-a-socket");
    std::fs::write(&path, b"precious").unwrap();
    let state = d.dir().join("state2");
    let (st, err) = d.run_second(&[
        "--socket",
        path.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    assert_eq!(st.code(), Some(1), "stderr: {err}");
    assert!(
        err.contains(&path.display().to_string()) && err.contains("not a socket"),
        "the message names the path and what is there: {err}"
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        b"precious",
        "the file is intact"
    );
    // A directory is refused just the same.
    let dir_path = d.dir().join("a-directory");
    std::fs::create_dir(&dir_path).unwrap();
    let (st, err) = d.run_second(&[
        "--socket",
        dir_path.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    assert_eq!(st.code(), Some(1), "stderr: {err}");
    assert!(err.contains("a directory"), "{err}");
    assert!(dir_path.is_dir());
}

#[test]
fn the_socket_has_its_mode_when_it_first_appears() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("imlinkd.sock");
    let config = dir.path().join("imlinkd.toml");
    std::fs::write(
        &config,
        format!(
            "[sdk]\napp_id = {APP}\n[server]\nurl = \"ws://127.0.0.1:9/v1/connect\"\n\
             [api]\nsocket = {:?}\nsocket_mode = \"0600\"\n[state]\ndir = {:?}\n",
            sock.display().to_string(),
            dir.path().join("state").display().to_string()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_imlinkd"))
        .arg("--config")
        .arg(&config)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Look as often as possible: the first sight of the path must show the final mode
    // (a socket chmod-ed after bind shows the umask's mode for a moment).
    let deadline = Instant::now() + T;
    let first = loop {
        if let Ok(m) = std::fs::symlink_metadata(&sock) {
            break m;
        }
        assert!(Instant::now() < deadline, "no socket within {T:?}");
        std::hint::spin_loop();
    };
    // Once it answers, the socket has left the private bind directory; the directory
    // is removed right after the move (the socket can answer in between), and nothing
    // else is left in the directory.
    wait_until(T, "the socket to answer", || {
        std::os::unix::net::UnixStream::connect(&sock).is_ok()
    });
    let leftovers = || -> Vec<String> {
        std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect()
    };
    wait_until(T, "the private bind directory to go", || {
        leftovers().is_empty()
    });
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(first.mode() & 0o7777, 0o600, "the mode at first sight");
    let names = leftovers();
    assert!(names.is_empty(), "leftovers: {names:?}");
}

#[test]
fn the_socket_is_never_bound_or_chmod_ed_at_its_public_path() {
    // A chmod through the public path follows whatever is there by then (another user's
    // link, in a directory they can write); the daemon's system calls show whether the
    // path is ever bound or chmod-ed. strace is the witness.
    if Command::new("strace").arg("-V").output().is_err() {
        eprintln!("skipped: strace is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("imlinkd.sock");
    let trace = dir.path().join("trace");
    let mut strace = Command::new("strace")
        .args([
            "-f",
            "-e",
            "trace=bind,chmod,fchmodat,link,linkat,rename,renameat,renameat2",
        ])
        .arg("-o")
        .arg(&trace)
        .arg(env!("CARGO_BIN_EXE_imlinkd"))
        .arg("--socket")
        .arg(&sock)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .args([
            "--sdk-app-id",
            &APP.to_string(),
            "--server",
            "ws://127.0.0.1:9/v1/connect",
        ])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until(T, "the socket", || {
        std::os::unix::net::UnixStream::connect(&sock).is_ok()
    });
    // Stop the daemon (strace's child) with SIGTERM; strace ends with it.
    let children =
        std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", strace.id())).unwrap();
    let pid = children
        .split_whitespace()
        .next()
        .expect("the daemon's pid");
    assert!(Command::new("kill")
        .args(["-TERM", pid])
        .status()
        .unwrap()
        .success());
    let st = finish_status(&mut strace);
    assert!(st.success(), "imlinkd under strace: {st}");
    let trace = std::fs::read_to_string(&trace).unwrap();
    let public = format!("\"{}\"", sock.display());
    let calls: Vec<&str> = trace.lines().filter(|l| l.contains(&public)).collect();
    assert!(
        calls
            .iter()
            .all(|l| !l.contains("bind(") && !l.contains("chmod")),
        "the public path was bound or chmod-ed: {calls:#?}"
    );
    assert!(
        calls
            .iter()
            .any(|l| l.contains("link") || l.contains("rename")),
        "the socket is moved into place: {trace}"
    );
}

/// Waits (at most [`T`]) for `child` to exit.
fn finish_status(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + T;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("no exit within {T:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn a_socket_directory_others_can_write_is_refused() {
    let server = DevServer::start(&[]);
    let d = Daemon::start(&server, &[]);
    let open = d.dir().join("open");
    std::fs::create_dir(&open).unwrap();
    chmod(&open, 0o777);
    let sock = open.join("imlinkd.sock");
    let state = d.dir().join("state2");
    let run = || {
        d.run_second(&[
            "--socket",
            sock.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
        ])
    };
    let (st, err) = run();
    assert_eq!(st.code(), Some(1), "stderr: {err}");
    assert!(
        err.contains(&open.display().to_string()) && err.contains("0777"),
        "the message names the directory and its mode: {err}"
    );
    assert!(!sock.exists(), "nothing was bound there");
    if !is_root() {
        eprintln!("skipped: the directory owned by another uid needs root");
        return;
    }
    // Owned by another user, even without write bits for others.
    chmod(&open, 0o755);
    chown(&open, NOBODY);
    let (st, err) = run();
    assert_eq!(st.code(), Some(1), "stderr: {err}");
    assert!(
        err.contains(&open.display().to_string()) && err.contains("belongs to uid 65534"),
        "{err}"
    );
    // A sticky directory owned by us is fine (as /tmp is).
    chown(&open, 0);
    chmod(&open, 0o1777);
    let mut ok = Daemon::start(
        &server,
        &[("api.socket", &format!("{:?}", sock.display().to_string()))],
    );
    assert_eq!(ok.client().login_status(), 3);
    assert_eq!(ok.stop().code(), Some(0));
}

#[test]
fn the_fallback_directory_squatted_by_another_user_is_refused_by_both_sides() {
    if !is_root() {
        eprintln!("skipped: needs root to act as two other uids");
        return;
    }
    let uid = spare_uid();
    let squat = PathBuf::from(format!("/tmp/imlink-{uid}"));
    let _ = std::fs::remove_dir_all(&squat);
    let _cleanup = RemoveOnDrop(squat.clone());
    // The victim's home: its configuration and state live there.
    let home = tempfile::tempdir().unwrap();
    chown(home.path(), uid);
    chmod(home.path(), 0o700);
    let config = home.path().join("imlinkd.toml");
    std::fs::write(
        &config,
        format!("[sdk]\napp_id = {APP}\n[server]\nurl = \"ws://127.0.0.1:9/v1/connect\"\n"),
    )
    .unwrap();
    chown(&config, uid);
    let env: [(&str, &Path); 1] = [("HOME", home.path())];
    let imlinkd = || {
        let mut c = as_user(uid, uid, env!("CARGO_BIN_EXE_imlinkd"), &env);
        c.arg("--config").arg(&config);
        c
    };

    // Another user made the directory first, open to all.
    std::fs::create_dir(&squat).unwrap();
    chown(&squat, NOBODY);
    chmod(&squat, 0o777);
    let out = finish(imlinkd().spawn().unwrap(), "imlinkd");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert!(err.contains(&squat.display().to_string()), "{err}");
    assert!(!squat.join("imlinkd.sock").exists());

    // The squatter listens there; the client must not hand it a ticket.
    chmod(&squat, 0o755);
    let listener = std::os::unix::net::UnixListener::bind(squat.join("imlinkd.sock")).unwrap();
    chmod(&squat.join("imlinkd.sock"), 0o666);
    listener.set_nonblocking(true).unwrap();
    let sig = ticket("alice", 3600);
    let out = finish(
        as_user(uid, uid, env!("CARGO_BIN_EXE_imlinkctl"), &env)
            .args(["login", "alice", "--sig", &sig])
            .spawn()
            .unwrap(),
        "imlinkctl",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert!(
        err.contains(&squat.display().to_string()) && err.contains("refusing"),
        "{err}"
    );
    assert!(!err.contains(&sig), "{err}");
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        Ok(_) => panic!("imlinkctl connected to the squatter's socket"),
        Err(e) => panic!("accept: {e}"),
    }
    drop(listener);

    // Without the squatter, the same fallback works for its owner.
    std::fs::remove_dir_all(&squat).unwrap();
    let mut daemon = imlinkd().spawn().unwrap();
    let deadline = Instant::now() + T;
    let status = loop {
        let out = as_user(uid, uid, env!("CARGO_BIN_EXE_imlinkctl"), &env)
            .args(["--json", "status"])
            .output()
            .unwrap();
        if out.status.success() {
            break out;
        }
        if let Some(st) = daemon.try_wait().unwrap() {
            panic!("imlinkd exited with {st}");
        }
        assert!(Instant::now() < deadline, "imlinkd did not answer");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert!(String::from_utf8_lossy(&status.stdout).contains("loginStatus"));
    let meta = std::fs::metadata(&squat).unwrap();
    assert_eq!(meta.uid(), uid);
    assert_eq!(
        meta.mode() & 0o022,
        0,
        "created without write bits for others"
    );
}

#[test]
fn imlinkctl_refuses_an_explicit_socket_in_another_users_shared_directory() {
    if !is_root() {
        eprintln!("skipped: needs root to make a directory of another uid");
        return;
    }
    let server = DevServer::start(&[]);
    let d = Daemon::start(&server, &[]);
    // A directory of uid 65534 made in /tmp (anyone can make one there): refused, even
    // though something listens in it.
    let shared = PathBuf::from(format!("/tmp/imlink-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&shared);
    let _cleanup = RemoveOnDrop(shared.clone());
    std::fs::create_dir(&shared).unwrap();
    let sock = shared.join("imlinkd.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    listener.set_nonblocking(true).unwrap();
    chown(&shared, NOBODY);
    chmod(&shared, 0o755);
    let ctl = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_imlinkctl"));
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    };
    let out = finish(
        ctl()
            .args(["--socket", sock.to_str().unwrap(), "status"])
            .spawn()
            .unwrap(),
        "imlinkctl",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert!(err.contains(&sock.display().to_string()), "{err}");
    assert!(matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock));
    // IMLINK_SOCKET gets the same check.
    let out = finish(
        ctl()
            .env("IMLINK_SOCKET", &sock)
            .arg("status")
            .spawn()
            .unwrap(),
        "imlinkctl",
    );
    assert_eq!(out.status.code(), Some(2));
    // The daemon's own socket (a private directory of root) is fine.
    let out = finish(
        ctl()
            .args(["--socket", d.socket.to_str().unwrap(), "status"])
            .spawn()
            .unwrap(),
        "imlinkctl",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn group_access_through_an_administrators_directory_still_works() {
    if !is_root() {
        eprintln!("skipped: needs root to run the client and the daemon as other uids");
        return;
    }
    let server = DevServer::start(&[]);
    // As with systemd's RuntimeDirectory=: /run (root, 0755) holds a directory handed to
    // the daemon's user. Here: a root-owned 0755 directory holding one of uid 65534.
    let top = tempfile::tempdir().unwrap();
    chmod(top.path(), 0o755);
    let run = top.path().join("imlink");
    std::fs::create_dir(&run).unwrap();
    chown(&run, NOBODY);
    chmod(&run, 0o755);
    let home = top.path().join("home");
    std::fs::create_dir(&home).unwrap();
    chown(&home, NOBODY);
    chmod(&home, 0o700);
    let sock = run.join("imlinkd.sock");
    let config = home.join("imlinkd.toml");
    let mut f = std::fs::File::create(&config).unwrap();
    writeln!(
        f,
        "[sdk]\napp_id = {APP}\n[server]\nurl = \"ws://{}/v1/connect\"\n[api]\nsocket = {:?}\n\
         socket_mode = \"0660\"",
        server.addr,
        sock.display().to_string()
    )
    .unwrap();
    drop(f);
    chown(&config, NOBODY);
    let env: [(&str, &Path); 1] = [("HOME", &home)];
    let mut daemon = as_user(NOBODY, NOBODY, env!("CARGO_BIN_EXE_imlinkd"), &env)
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until(T, "the daemon's socket", || {
        std::os::unix::net::UnixStream::connect(&sock).is_ok()
    });
    // A member of the daemon's group (gid 65534), another uid: connects and is served.
    let client = |uid: u32| {
        as_user(uid, NOBODY, env!("CARGO_BIN_EXE_imlinkctl"), &[])
            .args(["--socket", sock.to_str().unwrap(), "--json", "status"])
            .output()
            .unwrap()
    };
    let out = client(spare_uid());
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["loginStatus"], json!(3), "{v}");
}

#[test]
fn a_stopping_daemon_leaves_a_newer_daemons_socket_alone() {
    let server = DevServer::start(&[]);
    let mut first = Daemon::start(&server, &[]);
    // The socket file is deleted under the first daemon (by hand, a cleaner…), and a
    // second daemon binds the same path.
    std::fs::remove_file(&first.socket).unwrap();
    let path = format!("{:?}", first.socket.display().to_string());
    let second = Daemon::start(&server, &[("api.socket", &path)]);
    assert_eq!(second.socket, first.socket);
    assert_eq!(first.stop().code(), Some(0));
    assert!(
        second.socket.exists(),
        "the first daemon removed the second one's socket; log:\n{}",
        first.log()
    );
    assert_eq!(second.client().ok("getLoginStatus", json!({}))["status"], 3);
    assert!(
        first.log().contains("not removing"),
        "the first daemon says why it left the path: {}",
        first.log()
    );
}
