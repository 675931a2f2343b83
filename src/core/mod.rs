//! Pure state machines and rules: backoff, connection, login session, heartbeat liveness,
//! request correlation, the event ring, a one-second window of instants. No I/O, no actix.
//!
//! Each machine takes an input (plus the time and a random number where it needs them)
//! and returns the actions to perform; the actors in [`crate::daemon`] perform them.

pub mod backoff;
pub mod connection;
pub mod liveness;
pub mod pending;
pub mod ring;
pub mod session;
pub mod window;

#[cfg(test)]
mod session_tests;

#[cfg(test)]
mod props;
