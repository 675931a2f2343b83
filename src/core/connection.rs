//! The connection state machine: idle / connecting / connected / waiting, with backoff.
//!
//! Pure: [`ConnMachine::handle`] takes an input and the time, changes the state and returns
//! the actions for the Connection actor to perform. It owns the reconnect decision: when to
//! try again and how long to wait. It knows nothing of users.

use crate::core::backoff::Backoff;
use crate::proto::api::{ConnState, Event};

/// An input to the connection machine.
#[derive(Debug, Clone, PartialEq)]
pub enum ConnInput {
    /// The SDK was initialised: a connection is wanted from now on.
    Start,
    /// The SDK was un-initialised or the daemon stops: no connection is wanted.
    Stop,
    /// The connect attempt succeeded (the server's `hello` arrived).
    Opened,
    /// The connect attempt failed.
    OpenFailed {
        /// 9508 (refused, HTTP error) or 9510 (timeout).
        code: i32,
        /// What happened.
        desc: String,
    },
    /// The established connection was lost (closed, reset, heartbeat timeout).
    Lost {
        /// 9508.
        code: i32,
        /// What happened.
        desc: String,
    },
    /// The backoff delay is over.
    RetryDue,
    /// Someone asked to connect now (`reconnect`): drop the wait, reset the backoff.
    ReconnectNow,
    /// A usable route to the server appeared (the network watcher): drop the wait, keep
    /// the backoff step (a failure now waits for the next step).
    RouteUp,
}

/// What the Connection actor must do.
#[derive(Debug, Clone, PartialEq)]
pub enum ConnAction {
    /// Open a new WebSocket (with the connect timeout).
    Open,
    /// Close the current WebSocket, or abandon the connect attempt.
    Close,
    /// Call back with [`ConnInput::RetryDue`] after this many ms (replaces any pending one).
    ScheduleRetry(u64),
    /// Forget the pending retry.
    CancelRetry,
    /// Publish this event.
    Emit(Event),
    /// Tell the session the connection is up.
    LinkUp,
    /// Tell the session the connection is down.
    LinkDown,
}

/// The phase of the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No connection wanted.
    Idle,
    /// An attempt is running.
    Connecting,
    /// Up since the given time (ms).
    Connected {
        /// When it came up (monotonic ms).
        since_ms: u64,
    },
    /// Waiting until the given time (ms) before the next attempt.
    Waiting {
        /// When the next attempt starts (monotonic ms).
        until_ms: u64,
    },
}

/// The connection machine.
#[derive(Debug, Clone)]
pub struct ConnMachine {
    phase: Phase,
    failures: u32,
    backoff: Backoff,
    stable_ms: u64,
}

impl ConnMachine {
    /// A machine in `Idle`.
    pub fn new(backoff: Backoff, stable_ms: u64) -> ConnMachine {
        ConnMachine {
            phase: Phase::Idle,
            failures: 0,
            backoff,
            stable_ms,
        }
    }

    /// Replaces the backoff settings (SIGHUP); the running wait is kept.
    pub fn reconfigure(&mut self, backoff: Backoff, stable_ms: u64) {
        self.backoff = backoff;
        self.stable_ms = stable_ms;
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Consecutive failures since the last stable connection (kept while connected, so
    /// that a connection dropped at once backs off further).
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The failed attempts `status` reports: 0 while connected.
    pub fn attempt(&self) -> u32 {
        match self.phase {
            Phase::Connected { .. } => 0,
            _ => self.failures,
        }
    }

    /// The state as `status` reports it.
    pub fn state(&self) -> ConnState {
        match self.phase {
            Phase::Idle => ConnState::Idle,
            Phase::Connecting => ConnState::Connecting,
            Phase::Connected { .. } => ConnState::Connected,
            Phase::Waiting { .. } => ConnState::Waiting,
        }
    }

    fn connect(&mut self, out: &mut Vec<ConnAction>) {
        self.phase = Phase::Connecting;
        out.push(ConnAction::Emit(Event::Connecting {}));
        out.push(ConnAction::Open);
    }

    fn wait(&mut self, now_ms: u64, rand: f64, out: &mut Vec<ConnAction>) {
        self.failures = self.failures.saturating_add(1);
        let delay = self.backoff.delay(self.failures, rand).as_millis() as u64;
        self.phase = Phase::Waiting {
            until_ms: now_ms.saturating_add(delay),
        };
        out.push(ConnAction::ScheduleRetry(delay));
    }

    /// Handles one input at monotonic time `now_ms`; `rand` in `[0,1)` drives the jitter.
    pub fn handle(&mut self, input: ConnInput, now_ms: u64, rand: f64) -> Vec<ConnAction> {
        let mut out = Vec::new();
        match (self.phase, input) {
            (Phase::Idle, ConnInput::Start) => {
                self.failures = 0;
                self.connect(&mut out);
            }
            (_, ConnInput::Start) => {}
            (Phase::Idle, ConnInput::Stop) => {}
            (phase, ConnInput::Stop) => {
                match phase {
                    Phase::Connected { .. } => {
                        out.push(ConnAction::Close);
                        out.push(ConnAction::LinkDown);
                    }
                    Phase::Connecting => out.push(ConnAction::Close),
                    Phase::Waiting { .. } => out.push(ConnAction::CancelRetry),
                    Phase::Idle => {}
                }
                self.phase = Phase::Idle;
                self.failures = 0;
            }
            (Phase::Connecting, ConnInput::Opened) => {
                self.phase = Phase::Connected { since_ms: now_ms };
                out.push(ConnAction::Emit(Event::ConnectSuccess {}));
                out.push(ConnAction::LinkUp);
            }
            (Phase::Connecting, ConnInput::OpenFailed { code, desc }) => {
                out.push(ConnAction::Emit(Event::ConnectFailed { code, desc }));
                self.wait(now_ms, rand, &mut out);
            }
            (Phase::Connected { since_ms }, ConnInput::Lost { code, desc }) => {
                out.push(ConnAction::Close);
                out.push(ConnAction::Emit(Event::ConnectFailed { code, desc }));
                out.push(ConnAction::LinkDown);
                if now_ms.saturating_sub(since_ms) >= self.stable_ms {
                    // A connection that proved stable: the backoff starts over, and the
                    // first attempt is immediate.
                    self.failures = 0;
                    self.connect(&mut out);
                } else {
                    // Up and dropped at once counts as a failure: no tight reconnect loop.
                    self.wait(now_ms, rand, &mut out);
                }
            }
            (Phase::Waiting { .. }, ConnInput::RetryDue) => self.connect(&mut out),
            (Phase::Waiting { .. }, ConnInput::ReconnectNow) => {
                self.failures = 0;
                out.push(ConnAction::CancelRetry);
                self.connect(&mut out);
            }
            (Phase::Waiting { .. }, ConnInput::RouteUp) => {
                out.push(ConnAction::CancelRetry);
                self.connect(&mut out);
            }
            (Phase::Connecting, ConnInput::ReconnectNow) => self.failures = 0,
            // Stale or irrelevant inputs: a late result of an abandoned attempt, a retry
            // timer that fired after a manual reconnect, a loss report for a connection
            // that was already replaced.
            (_, ConnInput::Opened)
            | (_, ConnInput::OpenFailed { .. })
            | (_, ConnInput::Lost { .. })
            | (_, ConnInput::RetryDue)
            | (_, ConnInput::ReconnectNow)
            | (_, ConnInput::RouteUp) => {}
        }
        out
    }

    /// Ms until the next attempt while waiting.
    pub fn next_retry_ms(&self, now_ms: u64) -> Option<u64> {
        match self.phase {
            Phase::Waiting { until_ms } => Some(until_ms.saturating_sub(now_ms)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ConnAction::*;

    fn machine() -> ConnMachine {
        ConnMachine::new(
            Backoff {
                initial_ms: 1000,
                max_ms: 30_000,
                multiplier: 1.6,
                jitter: 0.2,
            },
            10_000,
        )
    }

    fn failed() -> ConnInput {
        ConnInput::OpenFailed {
            code: 9508,
            desc: "refused".into(),
        }
    }

    fn lost() -> ConnInput {
        ConnInput::Lost {
            code: 9508,
            desc: "closed".into(),
        }
    }

    #[test]
    fn start_connects_and_success_links_up() {
        let mut m = machine();
        assert_eq!(
            m.handle(ConnInput::Start, 0, 0.5),
            vec![Emit(Event::Connecting {}), Open]
        );
        assert_eq!(m.state(), ConnState::Connecting);
        assert_eq!(
            m.handle(ConnInput::Opened, 5, 0.5),
            vec![Emit(Event::ConnectSuccess {}), LinkUp]
        );
        assert_eq!(m.phase(), Phase::Connected { since_ms: 5 });
    }

    #[test]
    fn failures_wait_by_the_backoff_and_grow() {
        let mut m = machine();
        m.handle(ConnInput::Start, 0, 0.5);
        let a = m.handle(failed(), 10, 0.5);
        assert_eq!(
            a,
            vec![
                Emit(Event::ConnectFailed {
                    code: 9508,
                    desc: "refused".into()
                }),
                ScheduleRetry(1000)
            ]
        );
        assert_eq!(m.next_retry_ms(10), Some(1000));
        assert_eq!(
            m.handle(ConnInput::RetryDue, 1010, 0.5),
            vec![Emit(Event::Connecting {}), Open]
        );
        assert_eq!(
            m.handle(failed(), 1020, 0.5).last(),
            Some(&ScheduleRetry(1600))
        );
        m.handle(ConnInput::RetryDue, 2620, 0.5);
        assert_eq!(
            m.handle(failed(), 2630, 0.5).last(),
            Some(&ScheduleRetry(2560))
        );
        assert_eq!(m.failures(), 3);
    }

    #[test]
    fn a_stable_connection_resets_the_backoff_and_reconnects_at_once() {
        let mut m = machine();
        m.handle(ConnInput::Start, 0, 0.5);
        m.handle(failed(), 0, 0.5);
        m.handle(ConnInput::RetryDue, 1000, 0.5);
        m.handle(ConnInput::Opened, 1000, 0.5);
        let a = m.handle(lost(), 11_000, 0.5);
        assert_eq!(
            a,
            vec![
                Close,
                Emit(Event::ConnectFailed {
                    code: 9508,
                    desc: "closed".into()
                }),
                LinkDown,
                Emit(Event::Connecting {}),
                Open
            ]
        );
        assert_eq!(m.failures(), 0);
    }

    #[test]
    fn a_connection_dropped_at_once_backs_off() {
        let mut m = machine();
        m.handle(ConnInput::Start, 0, 0.5);
        m.handle(ConnInput::Opened, 0, 0.5);
        let a = m.handle(lost(), 50, 0.5);
        assert_eq!(a.last(), Some(&ScheduleRetry(1000)));
        m.handle(ConnInput::RetryDue, 1050, 0.5);
        m.handle(ConnInput::Opened, 1060, 0.5);
        assert_eq!(
            m.handle(lost(), 1100, 0.5).last(),
            Some(&ScheduleRetry(1600))
        );
    }

    #[test]
    fn reconnect_now_skips_the_wait_and_resets() {
        let mut m = machine();
        m.handle(ConnInput::Start, 0, 0.5);
        m.handle(failed(), 0, 0.5);
        m.handle(ConnInput::RetryDue, 1000, 0.5);
        m.handle(failed(), 1000, 0.5);
        assert_eq!(
            m.handle(ConnInput::ReconnectNow, 1100, 0.5),
            vec![CancelRetry, Emit(Event::Connecting {}), Open]
        );
        assert_eq!(m.failures(), 0);
        assert_eq!(
            m.handle(failed(), 1200, 0.5).last(),
            Some(&ScheduleRetry(1000))
        );
    }

    #[test]
    fn a_route_up_skips_the_wait_but_keeps_the_step() {
        let mut m = machine();
        m.handle(ConnInput::Start, 0, 0.5);
        m.handle(failed(), 0, 0.5);
        m.handle(ConnInput::RetryDue, 1000, 0.5);
        m.handle(failed(), 1000, 0.5);
        assert_eq!(m.failures(), 2);
        assert_eq!(
            m.handle(ConnInput::RouteUp, 1100, 0.5),
            vec![CancelRetry, Emit(Event::Connecting {}), Open]
        );
        assert_eq!(m.failures(), 2);
        assert_eq!(
            m.handle(failed(), 1200, 0.5).last(),
            Some(&ScheduleRetry(2560)),
            "a failure after the early attempt waits for the next step"
        );
        // Only a wait is cut short: connecting, connected or idle ignore it.
        m.handle(ConnInput::RetryDue, 4000, 0.5);
        assert!(m.handle(ConnInput::RouteUp, 4001, 0.5).is_empty());
        m.handle(ConnInput::Opened, 4002, 0.5);
        assert!(m.handle(ConnInput::RouteUp, 4003, 0.5).is_empty());
        assert_eq!(m.state(), ConnState::Connected);
        m.handle(ConnInput::Stop, 4004, 0.5);
        assert!(m.handle(ConnInput::RouteUp, 4005, 0.5).is_empty());
    }

    #[test]
    fn stop_from_every_phase_goes_idle() {
        for (setup, expect) in [
            (vec![ConnInput::Start], vec![Close]),
            (
                vec![ConnInput::Start, ConnInput::Opened],
                vec![Close, LinkDown],
            ),
            (vec![ConnInput::Start, failed()], vec![CancelRetry]),
            (vec![], vec![]),
        ] {
            let mut m = machine();
            for i in setup {
                m.handle(i, 0, 0.5);
            }
            assert_eq!(m.handle(ConnInput::Stop, 1, 0.5), expect);
            assert_eq!(m.state(), ConnState::Idle);
            // Nothing reconnects after a stop.
            assert!(m.handle(ConnInput::RetryDue, 99_999, 0.5).is_empty());
            assert!(m.handle(lost(), 99_999, 0.5).is_empty());
        }
    }

    #[test]
    fn stale_inputs_are_ignored_in_every_phase() {
        let stale = [ConnInput::Opened, failed(), lost(), ConnInput::RetryDue];
        // Idle: everything but Start is ignored.
        let mut m = machine();
        for i in stale.clone() {
            assert!(m.handle(i, 0, 0.5).is_empty());
        }
        // Connected: a late open result or retry timer changes nothing.
        let mut m = machine();
        m.handle(ConnInput::Start, 0, 0.5);
        m.handle(ConnInput::Opened, 0, 0.5);
        for i in [
            ConnInput::Opened,
            failed(),
            ConnInput::RetryDue,
            ConnInput::ReconnectNow,
            ConnInput::Start,
        ] {
            assert!(m.handle(i, 1, 0.5).is_empty());
            assert_eq!(m.state(), ConnState::Connected);
        }
        // Waiting: a late loss or open result changes nothing.
        let mut m = machine();
        m.handle(ConnInput::Start, 0, 0.5);
        m.handle(failed(), 0, 0.5);
        for i in [ConnInput::Opened, failed(), lost()] {
            assert!(m.handle(i, 1, 0.5).is_empty());
            assert_eq!(m.state(), ConnState::Waiting);
        }
    }
}
