//! The whole daemon in-process, with tokio's clock paused and a scripted server in
//! memory (no sockets to the server, no real time): timers that decide behaviour —
//! heartbeat loss, request timeouts, reconnect backoff, ticket expiry, the graceful
//! stop — are checked to the millisecond of virtual time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/inmem.rs"]
mod inmem;

use actix::prelude::*;
use imlink::clock::Clock;
use imlink::codes::LogLevel;
use imlink::config::Config;
use imlink::core::ring::{Cursor, Filter, Step};
use imlink::core::session::{Fail, Reply};
use imlink::daemon::hub::Hub;
use imlink::daemon::link::ws::transport::{Inbound, MemoryDialer, Outbound, PeerEnd};
use imlink::daemon::messages::SessionCall;
use imlink::daemon::{self, Control, Embedding, Running};
use imlink::logging::LogControl;
use inmem::{answer, frame, hello, paused, T0_MS};
use serde_json::{json, Value};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

const APP: u64 = 1400000001;
const KEY: &str = "imlink-test-secret-0123456789";

fn config(dir: &std::path::Path) -> Config {
    let mut c = Config::default();
    c.sdk.app_id = Some(APP);
    c.sdk.usersig_expiring_lead_secs = 5;
    c.server.connect_timeout_ms = 2000;
    c.server.request_timeout_ms = 1500;
    c.server.login_timeout_ms = 3000;
    c.server.heartbeat_interval_ms = 500;
    c.server.heartbeat_timeout_ms = 3000;
    c.reconnect.initial_ms = 1000;
    c.reconnect.max_ms = 8000;
    c.reconnect.multiplier = 2.0;
    c.reconnect.jitter = 0.2;
    c.reconnect.stable_ms = 10_000;
    c.api.socket = dir.join("imlinkd.sock");
    c.state.dir = dir.join("state");
    c
}

/// What the test keeps of the running daemon.
type Parts = (Rc<Hub>, Recipient<SessionCall>);

/// A daemon under test and the scripted server's ends.
struct Harness {
    hub: Rc<Hub>,
    session: Recipient<SessionCall>,
    dialer: MemoryDialer,
    control: mpsc::UnboundedSender<Control>,
    cursor: Cursor,
    /// Virtual time when the daemon's wall clock read `T0_MS`.
    t0: Instant,
    done: tokio::task::JoinHandle<Result<(), String>>,
    _dir: tempfile::TempDir,
}

impl Harness {
    async fn start(tweak: impl FnOnce(&mut Config)) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path());
        tweak(&mut cfg);
        std::fs::create_dir_all(&cfg.state.dir).unwrap();
        let listener = tokio::net::UnixListener::bind(&cfg.api.socket).unwrap();
        let dialer = MemoryDialer::default();
        let (tx, rx) = mpsc::unbounded_channel();
        let t0 = Instant::now();
        let parts: Rc<RefCell<Option<Parts>>> = Rc::default();
        let got = parts.clone();
        let embed = Embedding {
            log: LogControl::detached(LogLevel::Info),
            clock: Clock::tokio_at(T0_MS),
            dialer: Some(Rc::new(dialer.clone())),
            boot_id: Some("test".into()),
            // The state file is written at once, on this thread: a writer thread would let
            // virtual time run while it writes.
            store: daemon::store::Options {
                inline: true,
                ..Default::default()
            },
        };
        let done = tokio::task::spawn_local(async move {
            daemon::run(cfg, &listener, rx, embed, move |r: &Running| {
                *got.borrow_mut() = Some((r.hub.clone(), r.session.clone()));
            })
            .await
        });
        while parts.borrow().is_none() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let (hub, session) = parts.borrow_mut().take().unwrap();
        let cursor = hub.ring().cursor(Filter::ALL, Some(0));
        Harness {
            hub,
            session,
            dialer,
            control: tx,
            cursor,
            t0,
            done,
            _dir: dir,
        }
    }

    /// The next event (name, data), within `within` of virtual time.
    async fn next_event(&mut self, within: Duration) -> Option<(String, Value)> {
        let deadline = Instant::now() + within;
        loop {
            let got = {
                let ring = self.hub.ring();
                match ring.next(&mut self.cursor, u64::MAX) {
                    Step::Deliver(e) => {
                        // The body is what follows the subscription id in a notification's
                        // params, and closes the notification too.
                        let body = std::str::from_utf8(&e.body).unwrap().trim_end();
                        let text =
                            format!("{{\"subscription\":0{}", body.strip_suffix('}').unwrap());
                        let v: Value = serde_json::from_str(&text).unwrap();
                        Some((v["event"].as_str().unwrap().to_owned(), v["data"].clone()))
                    }
                    Step::Lost { .. } => panic!("the test cursor never lags"),
                    Step::Idle => None,
                }
            };
            if got.is_some() {
                return got;
            }
            if Instant::now() >= deadline {
                return None;
            }
            // Woken by the next event (no polling: virtual time jumps to the next timer).
            tokio::select! {
                _ = self.hub.changed() => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    /// Waits for event `name` and returns the virtual time it was seen at.
    async fn wait_event(&mut self, name: &str, within: Duration) -> (Instant, Value) {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_event(left).await {
                Some((n, data)) if n == name => return (Instant::now(), data),
                Some(_) => continue,
                None => panic!("no {name} within {within:?}"),
            }
        }
    }

    /// The server end of connection `i` (0 = the first dial).
    async fn peer(&self, i: usize) -> PeerEnd {
        loop {
            {
                let mut acc = self.dialer.accepted.borrow_mut();
                if acc.len() > i {
                    return std::mem::replace(
                        &mut acc[i],
                        PeerEnd {
                            rx: mpsc::unbounded_channel().1,
                            tx: mpsc::unbounded_channel().0,
                        },
                    );
                }
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    async fn call(&self, c: SessionCall) -> Result<Reply, Fail> {
        self.session.send(c).await.unwrap()
    }

    async fn stop(self) -> Duration {
        let t = Instant::now();
        self.control.send(Control::Stop).unwrap();
        self.done.await.unwrap().unwrap();
        t.elapsed()
    }
}

/// A server that answers heartbeats and logins (until `mute` is set).
fn serve(mut peer: PeerEnd, mute: Rc<std::cell::Cell<bool>>) {
    peer.tx.send(hello()).unwrap();
    tokio::task::spawn_local(async move {
        while let Some(o) = peer.rx.recv().await {
            if mute.get() {
                continue;
            }
            let Outbound::Text(_) = &o else { continue };
            let req = frame(o);
            let t = T0_MS + 1000;
            match req["cmd"].as_str() {
                Some("heartbeat") => answer(&peer, &req, 0, json!({"serverTime": t})),
                Some("login") => {
                    let sig = req["body"]["userSig"].as_str().unwrap();
                    let exp = imlink::usersig::decode(sig).unwrap().expires_at();
                    answer(
                        &peer,
                        &req,
                        0,
                        json!({"userID": req["body"]["userID"], "serverTime": t, "userSigExpireAt": exp, "info": {"userID": req["body"]["userID"]}}),
                    )
                }
                _ => answer(&peer, &req, 0, json!({})),
            }
        }
    });
}

fn ticket(user: &str, expire: i64) -> String {
    imlink::usersig::generate(APP, KEY, user, expire, T0_MS / 1000)
}

fn login(user: &str, expire: i64) -> SessionCall {
    SessionCall::Login {
        user: user.into(),
        sig: Some(ticket(user, expire)),
    }
}

#[test]
fn a_silent_server_is_declared_dead_between_the_timeout_and_one_interval_later() {
    paused(|| async {
        let mut h = Harness::start(|_| {}).await;
        let mute = Rc::new(std::cell::Cell::new(false));
        serve(h.peer(0).await, mute.clone());
        h.wait_event("onConnectSuccess", Duration::from_secs(5))
            .await;
        assert_eq!(h.call(login("alice", 3600)).await, Ok(Reply::Done));
        // From now on the server says nothing at all.
        mute.set(true);
        let silent_from = Instant::now();
        let (at, data) = h
            .wait_event("onConnectFailed", Duration::from_secs(10))
            .await;
        let took = at - silent_from;
        // The last frame came with the last answered heartbeat, at most one interval
        // before the silence; the loss is seen on the first tick past the timeout (the
        // ring is read when the event is published).
        assert!(
            took >= Duration::from_millis(3000 - 500) && took <= Duration::from_millis(3000 + 500),
            "declared dead after {took:?}"
        );
        assert_eq!(data["code"], 9508);
        assert!(data["desc"]
            .as_str()
            .unwrap()
            .contains("no frame from the server"));
        // The status stays LOGINED through the reconnect (the SDK's behaviour).
        assert_eq!(
            h.hub.status().login_status,
            imlink::codes::LoginStatus::Logined
        );
        h.stop().await;
    });
}

#[test]
fn a_request_the_server_never_answers_fails_with_9520_at_the_request_timeout() {
    paused(|| async {
        let mut h = Harness::start(|_| {}).await;
        let mut peer = h.peer(0).await;
        peer.tx.send(hello()).unwrap();
        h.wait_event("onConnectSuccess", Duration::from_secs(5))
            .await;
        // Heartbeats are answered; the login is not.
        let p = Rc::new(RefCell::new(None::<Value>));
        let seen = p.clone();
        tokio::task::spawn_local(async move {
            while let Some(o) = peer.rx.recv().await {
                let req = frame(o);
                if req["cmd"] == "heartbeat" {
                    answer(&peer, &req, 0, json!({"serverTime": T0_MS}));
                } else if seen.borrow().is_none() {
                    *seen.borrow_mut() = Some(req);
                }
            }
        });
        let t = Instant::now();
        let r = h.call(login("alice", 3600)).await;
        assert_eq!(r.unwrap_err().code, 9520);
        assert_eq!(
            t.elapsed(),
            Duration::from_millis(1500),
            "exactly server.request_timeout_ms"
        );
        assert_eq!(p.borrow().as_ref().unwrap()["cmd"], "login");
        h.stop().await;
    });
}

#[test]
fn reconnect_attempts_follow_the_backoff_with_its_jitter() {
    paused(|| async {
        let mut h = Harness::start(|_| {}).await;
        // Every connection is accepted and dropped at once: each counts as a failure.
        let mut last = None;
        let mut delays = Vec::new();
        for i in 0..5 {
            let peer = h.peer(i).await;
            let now = Instant::now();
            if let Some(prev) = last {
                delays.push(now - prev);
            }
            peer.tx.send(hello()).unwrap();
            h.wait_event("onConnectSuccess", Duration::from_secs(60))
                .await;
            drop(peer);
            h.wait_event("onConnectFailed", Duration::from_secs(60))
                .await;
            last = Some(Instant::now());
        }
        // initial 1000 ms ×2 per failure, capped at 8000, ±20 %.
        for (d, base) in delays.iter().zip([1000u64, 2000, 4000, 8000]) {
            let ms = d.as_millis() as u64;
            assert!(
                ms >= base * 8 / 10 && ms <= base * 12 / 10 + 1,
                "waited {ms} ms where the backoff is {base} ms ±20 %: {delays:?}"
            );
        }
        // Waiting, the failures are counted; connected again, the count shows 0.
        assert_eq!(h.hub.status().reconnect_attempt, 5);
        let peer = h.peer(5).await;
        peer.tx.send(hello()).unwrap();
        h.wait_event("onConnectSuccess", Duration::from_secs(60))
            .await;
        assert_eq!(h.hub.status().reconnect_attempt, 0, "0 while connected");
        h.stop().await;
    });
}

#[test]
fn a_ticket_warns_before_it_expires_and_ends_the_session_when_it_does() {
    paused(|| async {
        let mut h = Harness::start(|_| {}).await;
        serve(h.peer(0).await, Rc::new(std::cell::Cell::new(false)));
        h.wait_event("onConnectSuccess", Duration::from_secs(5))
            .await;
        // Issued at T0, valid an hour, warned 5 s before (usersig_expiring_lead_secs).
        assert_eq!(h.call(login("alice", 3600)).await, Ok(Reply::Done));
        let (at, data) = h
            .wait_event("onUserSigExpiring", Duration::from_secs(7200))
            .await;
        assert_eq!(data["remainingSecs"], 5);
        assert_eq!((at - h.t0).as_secs(), 3595, "{:?}", at - h.t0);
        let (at, _) = h
            .wait_event("onUserSigExpired", Duration::from_secs(7200))
            .await;
        assert_eq!(
            (at - h.t0).as_secs(),
            3601,
            "valid while now <= expiry: {:?}",
            at - h.t0
        );
        assert_eq!(
            h.hub.status().login_status,
            imlink::codes::LoginStatus::Logout
        );
        h.stop().await;
    });
}

/// Watches the link's state; resolves with the virtual time it went idle.
fn idle_at(hub: &Rc<Hub>) -> Rc<std::cell::Cell<Option<Instant>>> {
    let at = Rc::new(std::cell::Cell::new(None));
    let (hub, seen) = (hub.clone(), at.clone());
    tokio::task::spawn_local(async move {
        loop {
            let changed = hub.changed();
            if hub.status().connection == imlink::proto::api::ConnState::Idle {
                seen.set(Some(Instant::now()));
                return;
            }
            changed.await;
        }
    });
    at
}

#[test]
fn a_graceful_stop_waits_for_the_servers_close_and_no_longer() {
    paused(|| async {
        // The server answers our close frame: the link closes at once.
        let mut h = Harness::start(|_| {}).await;
        let mut peer = h.peer(0).await;
        peer.tx.send(hello()).unwrap();
        h.wait_event("onConnectSuccess", Duration::from_secs(5))
            .await;
        let tx = peer.tx.clone();
        let close_at = Rc::new(std::cell::Cell::new(None));
        let saw = close_at.clone();
        tokio::task::spawn_local(async move {
            while let Some(o) = peer.rx.recv().await {
                if o == Outbound::Close && saw.get().is_none() {
                    saw.set(Some(Instant::now()));
                    let _ = tx.send(Inbound::Closed("closed by the server (1000 )".into()));
                }
            }
        });
        let idle = idle_at(&h.hub);
        h.stop().await;
        let (close, idle) = (close_at.get().expect("a close frame"), idle.get().unwrap());
        assert!(
            idle - close <= Duration::from_millis(2),
            "closed {:?} after the server's close",
            idle - close
        );

        // A server that never answers the close: the link waits CLOSE_WAIT, then goes.
        let mut h = Harness::start(|_| {}).await;
        let mut peer = h.peer(0).await;
        peer.tx.send(hello()).unwrap();
        h.wait_event("onConnectSuccess", Duration::from_secs(5))
            .await;
        let close_at = Rc::new(std::cell::Cell::new(None));
        let saw = close_at.clone();
        tokio::task::spawn_local(async move {
            while let Some(o) = peer.rx.recv().await {
                if o == Outbound::Close && saw.get().is_none() {
                    saw.set(Some(Instant::now()));
                }
            }
        });
        let idle = idle_at(&h.hub);
        h.stop().await;
        let waited = idle.get().unwrap() - close_at.get().expect("a close frame");
        assert!(
            waited >= daemon::link::ws::CLOSE_WAIT
                && waited <= daemon::link::ws::CLOSE_WAIT + Duration::from_millis(2),
            "{waited:?}"
        );
    });
}
