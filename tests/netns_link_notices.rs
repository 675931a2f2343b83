//! What the native link does with the network watcher's notices, in-process with tokio's
//! clock paused and a scripted server in memory: the probe's deadline, an answered probe,
//! the early attempt and its limit of one in a row. Needs no privileges (the namespace
//! tests, `netns_awareness.rs`, drive the same paths through the kernel).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/inmem.rs"]
mod inmem;

use actix::prelude::*;
use imlink::clock::Clock;
use imlink::config::Config;
use imlink::daemon::hub::Hub;
use imlink::daemon::link::ws::transport::{MemoryDialer, Outbound, PeerEnd};
use imlink::daemon::link::ws::WsLink;
use imlink::daemon::link::{LinkControl, LinkEvent, NetNotice};
use imlink::proto::api::ConnState;
use inmem::{answer, hello, paused, T0_MS};
use serde_json::{json, Value};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;
use tokio::time::Instant;

const INTERVAL_MS: u64 = 2000;

/// Collects what the link tells the Session.
struct Sink(Rc<RefCell<Vec<LinkEvent>>>);

impl Actor for Sink {
    type Context = Context<Self>;
}

impl Handler<LinkEvent> for Sink {
    type Result = ();
    fn handle(&mut self, e: LinkEvent, _: &mut Context<Self>) {
        self.0.borrow_mut().push(e);
    }
}

struct Rig {
    hub: Rc<Hub>,
    dialer: MemoryDialer,
    control: Recipient<LinkControl>,
    net: Recipient<NetNotice>,
}

fn rig() -> Rig {
    let mut cfg = Config::default();
    cfg.server.heartbeat_interval_ms = INTERVAL_MS;
    cfg.server.heartbeat_timeout_ms = 60_000;
    cfg.server.connect_timeout_ms = 1000;
    cfg.reconnect.initial_ms = 10_000;
    cfg.reconnect.max_ms = 60_000;
    cfg.reconnect.multiplier = 2.0;
    cfg.reconnect.jitter = 0.0;
    let hub = Hub::new(
        "test".into(),
        Clock::tokio_at(T0_MS),
        100,
        100,
        cfg.server.url.clone(),
    );
    let dialer = MemoryDialer::default();
    let sink = Sink(Rc::default()).start();
    let link = WsLink::start_link(
        &cfg,
        "inst".into(),
        hub.clone(),
        sink.recipient(),
        Rc::new(dialer.clone()),
    );
    Rig {
        hub,
        dialer,
        control: link.control,
        net: link.net,
    }
}

/// A server that answers heartbeats until `mute` is set; counts what it received.
fn serve(mut peer: PeerEnd, mute: Rc<Cell<bool>>, heard: Rc<Cell<u32>>) {
    peer.tx.send(hello()).unwrap();
    tokio::task::spawn_local(async move {
        while let Some(o) = peer.rx.recv().await {
            let Outbound::Text(t) = o else { continue };
            heard.set(heard.get() + 1);
            if mute.get() {
                continue;
            }
            let req: Value = serde_json::from_str(&t).unwrap();
            answer(&peer, &req, 0, json!({"serverTime": T0_MS}));
        }
    });
}

impl Rig {
    async fn until(&self, what: &str, f: impl Fn(&Rig) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(600);
        while !f(self) {
            assert!(Instant::now() < deadline, "never: {what}");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    fn state(&self) -> ConnState {
        self.hub.status().connection
    }

    fn dials(&self) -> usize {
        self.dialer.dialled.borrow().len()
    }

    /// Connects through a scripted server; returns its mute switch and frame counter.
    async fn connect(&self) -> (Rc<Cell<bool>>, Rc<Cell<u32>>) {
        let n = self.dials();
        if n == 0 {
            self.control
                .send(LinkControl::Start(1400000001))
                .await
                .unwrap();
        }
        self.until("a dial", |r| r.dials() > n).await;
        let peer = self.dialer.accepted.borrow_mut().pop().unwrap();
        let (mute, heard) = (Rc::new(Cell::new(false)), Rc::new(Cell::new(0)));
        serve(peer, mute.clone(), heard.clone());
        self.until("connected", |r| r.state() == ConnState::Connected)
            .await;
        (mute, heard)
    }
}

#[test]
fn a_route_gone_probes_and_a_silent_server_is_lost_after_one_interval() {
    paused(|| async {
        let r = rig();
        let (mute, heard) = r.connect().await;
        mute.set(true);
        let before = heard.get();
        let t = Instant::now();
        r.net.send(NetNotice::RouteGone).await.unwrap();
        // The probe is sent at once.
        assert_eq!(heard.get(), before + 1);
        r.until("the loss", |r| r.state() != ConnState::Connected)
            .await;
        // Virtual time; `until` looks every millisecond.
        let took = t.elapsed().as_millis();
        assert!(
            (u128::from(INTERVAL_MS)..=u128::from(INTERVAL_MS) + 1).contains(&took),
            "{took} ms"
        );
    });
}

#[test]
fn an_answered_probe_changes_nothing() {
    paused(|| async {
        let r = rig();
        let (_mute, heard) = r.connect().await;
        let before = heard.get();
        r.net.send(NetNotice::RouteGone).await.unwrap();
        // A second notice while the probe runs sends no second probe.
        r.net.send(NetNotice::RouteGone).await.unwrap();
        assert_eq!(heard.get(), before + 1);
        tokio::time::sleep(Duration::from_millis(INTERVAL_MS * 3)).await;
        assert_eq!(r.state(), ConnState::Connected);
        assert_eq!(r.dials(), 1);
    });
}

#[test]
fn a_route_up_cuts_the_wait_once_in_a_row() {
    paused(|| async {
        let r = rig();
        let (mute, _) = r.connect().await;
        // The connection goes; the server is unreachable from now on.
        r.dialer.refuse.set(true);
        mute.set(true);
        r.net.send(NetNotice::RouteGone).await.unwrap();
        r.until("waiting", |r| r.state() == ConnState::Waiting)
            .await;
        let dials = r.dials();
        // A route comes: an attempt at once, not after the 10 s backoff.
        r.net.send(NetNotice::RouteUp).await.unwrap();
        r.until("the early attempt", |r| r.dials() == dials + 1)
            .await;
        r.until("waiting again", |r| r.state() == ConnState::Waiting)
            .await;
        // It failed: the next route change does not cut this step short.
        let t = Instant::now();
        r.net.send(NetNotice::RouteGone).await.unwrap();
        r.net.send(NetNotice::RouteUp).await.unwrap();
        tokio::task::yield_now().await;
        assert_eq!(r.dials(), dials + 1);
        assert_eq!(r.state(), ConnState::Waiting);
        // The step's own attempt comes at its end (20 s: the second step).
        r.until("the timed attempt", |r| r.dials() == dials + 2)
            .await;
        let took = t.elapsed().as_millis();
        assert!((19_999..=20_001).contains(&took), "{took} ms");
        // After an attempt of the backoff's own, a route cuts the wait again.
        r.until("waiting", |r| r.state() == ConnState::Waiting)
            .await;
        r.dialer.refuse.set(false);
        r.net.send(NetNotice::RouteUp).await.unwrap();
        r.until("a dial", |r| r.dials() == dials + 3).await;
        let peer = r.dialer.accepted.borrow_mut().pop().unwrap();
        serve(peer, Rc::new(Cell::new(false)), Rc::new(Cell::new(0)));
        r.until("connected", |r| r.state() == ConnState::Connected)
            .await;
    });
}
