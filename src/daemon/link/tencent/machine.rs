//! The Tencent link's connection state, without I/O: [`ConnMachine`] for the bridge
//! process, plus the SDK's own network state while the process runs.
//!
//! The process is the connection as [`ConnMachine`] sees it: `Open` starts the bridge,
//! `Opened` is its `init` answered, `Lost` is its exit, a ping it does not answer, or the
//! SDK giving up (`netState disconnected`: it would not try again until it next sends
//! something), and the backoff spaces the restarts. While the process runs, the SDK may
//! lose its socket and reopen it by itself (`netState connecting`, then `connected`); it
//! then logs in again with its own session key. That is shown to API clients as the
//! connection events of a reconnect (`onConnectFailed {9508}`, `onConnecting`,
//! `onConnectSuccess`, status `connecting` meanwhile) but the Session is not told: it
//! has nothing to do, the SDK re-authenticates, and a refusal comes as a kick.
//!
//! | process | SDK | input | actions |
//! | --- | --- | --- | --- |
//! | connected | up | `connecting` | onConnectFailed {9508}, onConnecting; status connecting |
//! | connected | reconnecting | `connected` | onConnectSuccess; status connected |
//! | connected | any | `disconnected` | as `Lost`: close (the process ends), onConnectFailed, link down, restart now or after the backoff |
//! | not connected | any | any net state | none |
//! | any | any | a [`ConnInput`] | as [`ConnMachine`] |

use crate::codes::code;
use crate::core::backoff::Backoff;
use crate::core::connection::{ConnAction, ConnInput, ConnMachine, Phase};
use crate::proto::api::{ConnState, Event};
use crate::proto::bridge::NetState;

/// An input.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// About the process.
    Conn(ConnInput),
    /// The SDK's `netState`.
    Net(NetState),
}

/// The link's machine.
#[derive(Debug, Clone)]
pub struct LinkMachine {
    conn: ConnMachine,
    /// The SDK is reopening its socket by itself.
    reconnecting: bool,
}

/// Why the SDK's socket went, as `onConnectFailed` says it.
pub const SDK_LOST: &str = "the SDK lost its connection to the server and is reconnecting";
/// Why the process is restarted after `netState disconnected`.
pub const SDK_GAVE_UP: &str = "the SDK could not reach the server";

impl LinkMachine {
    /// Idle.
    pub fn new(backoff: Backoff, stable_ms: u64) -> LinkMachine {
        LinkMachine {
            conn: ConnMachine::new(backoff, stable_ms),
            reconnecting: false,
        }
    }

    /// New backoff settings (SIGHUP).
    pub fn reconfigure(&mut self, backoff: Backoff, stable_ms: u64) {
        self.conn.reconfigure(backoff, stable_ms);
    }

    /// The process's phase.
    pub fn phase(&self) -> Phase {
        self.conn.phase()
    }

    /// Consecutive failures.
    pub fn failures(&self) -> u32 {
        self.conn.failures()
    }

    /// Failed attempts as `status` shows them.
    pub fn attempt(&self) -> u32 {
        self.conn.attempt()
    }

    /// True while the process runs and the SDK reopens its socket.
    pub fn reconnecting(&self) -> bool {
        self.reconnecting && matches!(self.conn.phase(), Phase::Connected { .. })
    }

    /// The state `status` shows.
    pub fn state(&self) -> ConnState {
        if self.reconnecting() {
            ConnState::Connecting
        } else {
            self.conn.state()
        }
    }

    /// Handles one input at monotonic `now_ms`; `rand` in `[0,1)` is the jitter.
    pub fn handle(&mut self, input: Input, now_ms: u64, rand: f64) -> Vec<ConnAction> {
        let connected = matches!(self.conn.phase(), Phase::Connected { .. });
        match input {
            Input::Conn(c) => {
                let out = self.conn.handle(c, now_ms, rand);
                // A new process, or none: the SDK's socket starts over.
                if !matches!(self.conn.phase(), Phase::Connected { .. })
                    || out.contains(&ConnAction::Emit(Event::ConnectSuccess {}))
                {
                    self.reconnecting = false;
                }
                out
            }
            Input::Net(NetState::Connecting) if connected && !self.reconnecting => {
                self.reconnecting = true;
                vec![
                    ConnAction::Emit(Event::ConnectFailed {
                        code: code::DISCONNECTED,
                        desc: SDK_LOST.into(),
                    }),
                    ConnAction::Emit(Event::Connecting {}),
                ]
            }
            Input::Net(NetState::Connected) if connected && self.reconnecting => {
                self.reconnecting = false;
                vec![ConnAction::Emit(Event::ConnectSuccess {})]
            }
            Input::Net(NetState::Disconnected) if connected => self.handle(
                Input::Conn(ConnInput::Lost {
                    code: code::DISCONNECTED,
                    desc: SDK_GAVE_UP.into(),
                }),
                now_ms,
                rand,
            ),
            Input::Net(_) => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ConnAction::*;

    fn machine() -> LinkMachine {
        LinkMachine::new(
            Backoff {
                initial_ms: 1000,
                max_ms: 30_000,
                multiplier: 1.6,
                jitter: 0.2,
            },
            10_000,
        )
    }

    fn up(m: &mut LinkMachine, at: u64) {
        m.handle(Input::Conn(ConnInput::Start), at, 0.5);
        assert_eq!(
            m.handle(Input::Conn(ConnInput::Opened), at, 0.5),
            vec![Emit(Event::ConnectSuccess {}), LinkUp]
        );
    }

    fn failed(desc: &str) -> ConnAction {
        Emit(Event::ConnectFailed {
            code: 9508,
            desc: desc.into(),
        })
    }

    #[test]
    fn the_sdk_reconnecting_by_itself_is_shown_to_clients_but_not_to_the_session() {
        let mut m = machine();
        up(&mut m, 0);
        assert_eq!(
            m.handle(Input::Net(NetState::Connecting), 100, 0.5),
            vec![failed(SDK_LOST), Emit(Event::Connecting {})]
        );
        assert_eq!(m.state(), ConnState::Connecting);
        assert_eq!(m.attempt(), 0);
        // Repeats change nothing.
        assert!(m
            .handle(Input::Net(NetState::Connecting), 110, 0.5)
            .is_empty());
        assert_eq!(
            m.handle(Input::Net(NetState::Connected), 120, 0.5),
            vec![Emit(Event::ConnectSuccess {})]
        );
        assert_eq!(m.state(), ConnState::Connected);
        // `connected` without a loss before it (the SDK's first socket) says nothing.
        assert!(m
            .handle(Input::Net(NetState::Connected), 130, 0.5)
            .is_empty());
    }

    #[test]
    fn the_sdk_giving_up_restarts_the_process_at_once_when_it_was_stable() {
        let mut m = machine();
        up(&mut m, 0);
        m.handle(Input::Net(NetState::Connecting), 20_000, 0.5);
        assert_eq!(
            m.handle(Input::Net(NetState::Disconnected), 20_010, 0.5),
            vec![
                Close,
                failed(SDK_GAVE_UP),
                LinkDown,
                Emit(Event::Connecting {}),
                Open
            ]
        );
        assert_eq!(m.state(), ConnState::Connecting);
        assert!(!m.reconnecting());
    }

    #[test]
    fn a_process_that_fails_at_once_is_restarted_after_the_backoff() {
        let mut m = machine();
        up(&mut m, 0);
        assert_eq!(
            m.handle(Input::Net(NetState::Disconnected), 50, 0.5),
            vec![Close, failed(SDK_GAVE_UP), LinkDown, ScheduleRetry(1000)]
        );
        assert_eq!(m.state(), ConnState::Waiting);
        // Net states of a process that is gone change nothing.
        for s in [
            NetState::Connecting,
            NetState::Connected,
            NetState::Disconnected,
        ] {
            assert!(m.handle(Input::Net(s), 60, 0.5).is_empty());
        }
        m.handle(Input::Conn(ConnInput::RetryDue), 1050, 0.5);
        m.handle(Input::Conn(ConnInput::Opened), 1100, 0.5);
        let lost = ConnInput::Lost {
            code: 9508,
            desc: "the bridge exited".into(),
        };
        assert_eq!(
            m.handle(Input::Conn(lost), 1200, 0.5),
            vec![
                Close,
                failed("the bridge exited"),
                LinkDown,
                ScheduleRetry(1600)
            ]
        );
    }

    #[test]
    fn a_process_lost_while_the_sdk_reconnects_starts_over() {
        let mut m = machine();
        up(&mut m, 0);
        m.handle(Input::Net(NetState::Connecting), 100, 0.5);
        let lost = ConnInput::Lost {
            code: 9508,
            desc: "no answer to ping".into(),
        };
        let a = m.handle(Input::Conn(lost), 200, 0.5);
        assert_eq!(a[..3], [Close, failed("no answer to ping"), LinkDown]);
        assert!(!m.reconnecting());
        m.handle(Input::Conn(ConnInput::RetryDue), 1200, 0.5);
        m.handle(Input::Conn(ConnInput::Opened), 1300, 0.5);
        assert_eq!(m.state(), ConnState::Connected);
    }
}
