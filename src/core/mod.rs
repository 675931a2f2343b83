//! Pure state machines: backoff, connection, login session. No I/O, no actix.
//!
//! Each machine takes an input (plus the time and a random number where it needs them)
//! and returns the actions to perform; the actors in [`crate::daemon`] perform them.

pub mod backoff;
pub mod connection;
pub mod session;

#[cfg(test)]
mod session_tests;
