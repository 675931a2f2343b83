//! The event log: numbers events, keeps a ring of recent ones for replay, holds the status
//! snapshot, and fans events out to subscribers through bounded queues.
//!
//! Each event is serialised once; a subscriber's line is its own constant head followed by
//! the shared body. A subscriber whose queue is full loses events and later receives one
//! `eventsLost {from, to}` in their place: nothing a subscriber does slows the daemon.

use actix::prelude::*;
use bytes::Bytes;
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Instant;
use tokio::sync::mpsc::{self, error::TrySendError};

use crate::codes::LoginStatus;
use crate::daemon::messages::*;
use crate::proto::api::{ConnState, Event, Status};

struct Retained {
    seq: u64,
    name: &'static str,
    body: Bytes,
}

struct Subscriber {
    filter: Option<HashSet<String>>,
    head: Bytes,
    tx: mpsc::Sender<EventLine>,
    /// Missed seqs not yet reported.
    lost: Option<(u64, u64)>,
}

/// The event log actor.
pub struct EventLog {
    boot_id: String,
    seq: u64,
    history: usize,
    ring: VecDeque<Retained>,
    subs: HashMap<u64, Subscriber>,
    next_sub: u64,
    conn: ConnPart,
    session: SessionPart,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The shared part of an event line: `,"seq":…,"time":…,"bootID":…,"event":…,"data":…}}\n`.
fn render(boot_id: &str, seq: u64, event: &Event) -> Bytes {
    // `{"event":…,"data":…}` from serde, spliced after the common fields.
    let ev = serde_json::to_string(event).unwrap_or_else(|_| "{}".into());
    let inner = ev.strip_prefix('{').unwrap_or(&ev);
    Bytes::from(format!(
        ",\"seq\":{seq},\"time\":{},\"bootID\":\"{boot_id}\",{inner}}}\n",
        now_ms()
    ))
}

/// A random id for this boot.
pub fn new_boot_id() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

impl EventLog {
    /// An empty log.
    pub fn new(boot_id: String, history: usize, server: String) -> EventLog {
        EventLog {
            boot_id,
            seq: 0,
            history: history.max(1),
            ring: VecDeque::new(),
            subs: HashMap::new(),
            next_sub: 1,
            conn: ConnPart {
                state: ConnState::Idle,
                connected_since: None,
                attempt: 0,
                retry_at: None,
                server,
            },
            session: SessionPart {
                app_id: None,
                status: LoginStatus::Logout,
                user: String::new(),
                expires_at: None,
            },
        }
    }

    fn status(&self) -> Status {
        let now = Instant::now();
        Status {
            sdk_app_id: self.session.app_id,
            login_status: self.session.status,
            user_id: self.session.user.clone(),
            connection: self.conn.state,
            connected_since: self.conn.connected_since,
            reconnect_attempt: self.conn.attempt,
            next_retry_ms: self
                .conn
                .retry_at
                .map(|t| t.saturating_duration_since(now).as_millis() as u64),
            server: self.conn.server.clone(),
            user_sig_expires_at: self.session.expires_at,
            boot_id: self.boot_id.clone(),
            last_seq: self.seq,
        }
    }

    fn body(&self, seq: u64, event: &Event) -> Bytes {
        render(&self.boot_id, seq, event)
    }

    fn head(id: u64) -> Bytes {
        Bytes::from(format!(
            "{{\"jsonrpc\":\"2.0\",\"method\":\"event\",\"params\":{{\"subscription\":{id}"
        ))
    }

    /// An `eventsLost` body. It carries the seq of the last event it stands in for, so the
    /// seqs one subscriber sees only ever rise.
    fn lost_body(&self, from: u64, to: u64) -> Bytes {
        self.body(to, &Event::EventsLost { from, to })
    }

    /// Offers one event to a subscriber: first any pending `eventsLost`, then the event.
    fn offer(
        sub: &mut Subscriber,
        lost_line: impl Fn(u64, u64) -> Bytes,
        seq: u64,
        body: &Bytes,
    ) -> bool {
        if let Some((from, to)) = sub.lost {
            if sub.tx.capacity() >= 2 {
                let line = EventLine {
                    head: sub.head.clone(),
                    body: lost_line(from, to),
                };
                if sub.tx.try_send(line).is_ok() {
                    sub.lost = None;
                }
            }
        }
        if sub.lost.is_none() {
            match sub.tx.try_send(EventLine {
                head: sub.head.clone(),
                body: body.clone(),
            }) {
                Ok(()) => return true,
                Err(TrySendError::Closed(_)) => return false,
                Err(TrySendError::Full(_)) => {}
            }
        }
        sub.lost = Some(match sub.lost {
            Some((from, _)) => (from, seq),
            None => (seq, seq),
        });
        !sub.tx.is_closed()
    }

    fn emit(&mut self, event: Event) {
        self.seq += 1;
        let seq = self.seq;
        let name = event.name();
        let body = self.body(seq, &event);
        tracing::debug!(seq, event = name, "event");
        self.ring.push_back(Retained {
            seq,
            name,
            body: body.clone(),
        });
        while self.ring.len() > self.history {
            self.ring.pop_front();
        }
        let boot = self.boot_id.clone();
        let lost_line = |from: u64, to: u64| render(&boot, to, &Event::EventsLost { from, to });
        let mut dead = Vec::new();
        for (id, sub) in self.subs.iter_mut() {
            if sub.filter.as_ref().is_some_and(|f| !f.contains(name)) {
                continue;
            }
            if !Self::offer(sub, lost_line, seq, &body) {
                dead.push(*id);
            }
        }
        for id in dead {
            self.subs.remove(&id);
        }
    }
}

impl Actor for EventLog {
    type Context = Context<Self>;
}

impl Handler<Publish> for EventLog {
    type Result = ();
    fn handle(&mut self, msg: Publish, _: &mut Context<Self>) {
        match msg {
            Publish::Conn(c) => self.conn = c,
            Publish::Session(s) => self.session = s,
            Publish::Event(e) => self.emit(e),
        }
    }
}

impl Handler<GetStatus> for EventLog {
    type Result = MessageResult<GetStatus>;
    fn handle(&mut self, _: GetStatus, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.status())
    }
}

impl Handler<Subscribe> for EventLog {
    type Result = MessageResult<Subscribe>;
    fn handle(&mut self, msg: Subscribe, _: &mut Context<Self>) -> Self::Result {
        let id = self.next_sub;
        self.next_sub += 1;
        let mut sub = Subscriber {
            filter: msg.filter,
            head: Self::head(id),
            tx: msg.tx,
            lost: None,
        };
        if let Some(since) = msg.since {
            let oldest = self.ring.front().map(|r| r.seq).unwrap_or(self.seq + 1);
            if since + 1 < oldest && since < self.seq {
                // Older than the ring: report what cannot be replayed.
                let line = EventLine {
                    head: sub.head.clone(),
                    body: self.lost_body(since + 1, oldest - 1),
                };
                if sub.tx.try_send(line).is_err() {
                    sub.lost = Some((since + 1, oldest - 1));
                }
            }
            let boot = self.boot_id.clone();
            let lost_line = |from: u64, to: u64| render(&boot, to, &Event::EventsLost { from, to });
            for r in self.ring.iter().filter(|r| r.seq > since) {
                if sub.filter.as_ref().is_some_and(|f| !f.contains(r.name)) {
                    continue;
                }
                Self::offer(&mut sub, lost_line, r.seq, &r.body);
            }
        }
        let status = self.status();
        self.subs.insert(id, sub);
        MessageResult(Subscribed { id, status })
    }
}

impl Handler<Unsubscribe> for EventLog {
    type Result = bool;
    fn handle(&mut self, msg: Unsubscribe, _: &mut Context<Self>) -> bool {
        self.subs.remove(&msg.0).is_some()
    }
}

impl Handler<Reconfigure> for EventLog {
    type Result = ();
    fn handle(&mut self, msg: Reconfigure, _: &mut Context<Self>) {
        self.history = msg.0.events.history.max(1);
        while self.ring.len() > self.history {
            self.ring.pop_front();
        }
    }
}
