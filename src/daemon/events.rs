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
    /// A wait for a free slot (to report `lost`) is running.
    waiting: bool,
}

/// The event log actor.
pub struct EventLog {
    board: Board,
    history: usize,
    ring: VecDeque<Retained>,
    subs: HashMap<u64, Subscriber>,
    next_sub: u64,
}

/// The status as the EventLog last heard it, with the seq of the newest event. Shared
/// (same thread) with the API so that the status getters answer without a message hop;
/// only the EventLog writes it.
#[derive(Debug)]
pub struct StatusBoard {
    boot_id: String,
    seq: u64,
    conn: ConnPart,
    session: SessionPart,
}

/// A shared handle on the [`StatusBoard`].
pub type Board = std::rc::Rc<std::cell::RefCell<StatusBoard>>;

impl StatusBoard {
    /// The `status` snapshot now.
    pub fn status(&self) -> Status {
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

    /// The login status.
    pub fn login_status(&self) -> LoginStatus {
        self.session.status
    }

    /// The user logged in or logging in (`""` when nobody).
    pub fn user(&self) -> &str {
        &self.session.user
    }
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
        let board = StatusBoard {
            boot_id,
            seq: 0,
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
        };
        EventLog {
            board: std::rc::Rc::new(std::cell::RefCell::new(board)),
            history: history.max(1),
            ring: VecDeque::new(),
            subs: HashMap::new(),
            next_sub: 1,
        }
    }

    /// The status board, for readers on the same thread (the API).
    pub fn board(&self) -> Board {
        self.board.clone()
    }

    fn status(&self) -> Status {
        self.board.borrow().status()
    }

    fn seq(&self) -> u64 {
        self.board.borrow().seq
    }

    fn body(&self, seq: u64, event: &Event) -> Bytes {
        render(&self.board.borrow().boot_id, seq, event)
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

    /// Offers one event to a subscriber. While it lags (a loss not yet reported) the event
    /// only widens the lost range, so the `eventsLost` notice keeps its place in the order.
    /// Returns false when the subscriber's connection is gone.
    fn offer(sub: &mut Subscriber, seq: u64, body: &Bytes) -> bool {
        if let Some((from, _)) = sub.lost {
            sub.lost = Some((from, seq));
            return !sub.tx.is_closed();
        }
        match sub.tx.try_send(EventLine {
            head: sub.head.clone(),
            body: body.clone(),
        }) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                sub.lost = Some((seq, seq));
                true
            }
            Err(TrySendError::Closed(_)) => false,
        }
    }

    /// For a subscriber that started lagging: wait (without blocking anything) for a free
    /// slot in its queue, then put the `eventsLost` notice for everything missed so far in
    /// it. Later events follow it in order.
    fn watch_lagging(&mut self, id: u64, ctx: &mut Context<Self>) {
        let Some(sub) = self.subs.get_mut(&id) else {
            return;
        };
        if sub.lost.is_none() || sub.waiting {
            return;
        }
        sub.waiting = true;
        tracing::debug!(subscription = id, "subscriber lagging");
        let tx = sub.tx.clone();
        ctx.spawn(
            async move { tx.reserve_owned().await }
                .into_actor(self)
                .map(move |permit, act, _| {
                    let Ok(permit) = permit else {
                        act.subs.remove(&id);
                        return;
                    };
                    let boot = act.board.borrow().boot_id.clone();
                    if let Some(sub) = act.subs.get_mut(&id) {
                        sub.waiting = false;
                        if let Some((from, to)) = sub.lost.take() {
                            permit.send(EventLine {
                                head: sub.head.clone(),
                                body: render(&boot, to, &Event::EventsLost { from, to }),
                            });
                        }
                    }
                }),
        );
    }

    fn emit(&mut self, event: Event, ctx: &mut Context<Self>) {
        let seq = {
            let mut b = self.board.borrow_mut();
            b.seq += 1;
            b.seq
        };
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
        let mut dead = Vec::new();
        let mut lagging = Vec::new();
        for (id, sub) in self.subs.iter_mut() {
            if sub.filter.as_ref().is_some_and(|f| !f.contains(name)) {
                continue;
            }
            if !Self::offer(sub, seq, &body) {
                dead.push(*id);
            } else if sub.lost.is_some() && !sub.waiting {
                lagging.push(*id);
            }
        }
        for id in dead {
            self.subs.remove(&id);
        }
        for id in lagging {
            self.watch_lagging(id, ctx);
        }
    }
}

impl Actor for EventLog {
    type Context = Context<Self>;
}

impl Handler<Publish> for EventLog {
    type Result = ();
    fn handle(&mut self, msg: Publish, ctx: &mut Context<Self>) {
        match msg {
            Publish::Conn(c) => self.board.borrow_mut().conn = c,
            Publish::Session(s) => self.board.borrow_mut().session = s,
            Publish::Event(e) => self.emit(e, ctx),
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
    fn handle(&mut self, msg: Subscribe, ctx: &mut Context<Self>) -> Self::Result {
        let id = self.next_sub;
        self.next_sub += 1;
        let mut sub = Subscriber {
            filter: msg.filter,
            head: Self::head(id),
            tx: msg.tx,
            lost: None,
            waiting: false,
        };
        if let Some(since) = msg.since {
            let last = self.seq();
            let oldest = self.ring.front().map(|r| r.seq).unwrap_or(last + 1);
            if since + 1 < oldest && since < last {
                // Older than the ring: report what cannot be replayed.
                let line = EventLine {
                    head: sub.head.clone(),
                    body: self.lost_body(since + 1, oldest - 1),
                };
                if sub.tx.try_send(line).is_err() {
                    sub.lost = Some((since + 1, oldest - 1));
                }
            }
            for r in self.ring.iter().filter(|r| r.seq > since) {
                if sub.filter.as_ref().is_some_and(|f| !f.contains(r.name)) {
                    continue;
                }
                Self::offer(&mut sub, r.seq, &r.body);
            }
        }
        let status = self.status();
        self.subs.insert(id, sub);
        self.watch_lagging(id, ctx);
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
