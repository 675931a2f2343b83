//! imlink keeps one instant-messaging account logged in on a Linux host and lets every
//! local process drive and watch that login through a Unix socket. It reproduces the
//! initialisation-and-login module of the Tencent Cloud IM SDK (`V2TIMManager` with its
//! `V2TimSDKListener`) as a daemon, and ships a local emulator of the IM access server.
//!
//! # Layout
//!
//! - [`codes`] — Tencent's error codes, login status values and log levels.
//! - [`clock`] — the wall clock in one place, and the daemon's injectable clock.
//! - [`text`] — peer text made safe for logs and replies.
//! - [`usersig`] — the TLSSigAPIv2 ticket: generate, decode, verify.
//! - [`config`] — the daemon's configuration: defaults, file, environment, flags.
//! - [`logging`] — tracing set-up with the SDK's log levels, changeable at run time.
//! - [`proto`] — wire types, serde only: the JSON-RPC API, events, the WebSocket frames.
//! - [`core`] — pure state machines (connection, backoff, login session), no I/O.
//! - [`daemon`] — `imlinkd`'s actors: supervisor, connection, session, events, API.
//! - [`fsck`] — ownership and mode checks of the socket and state directories.
//! - [`devserver`] — `imlink-devserver`, the emulator of the IM access server.
//! - [`ctl`] — `imlinkctl`, the command-line client and UserSig tool.
//!
//! `fuzzing` (hidden) holds the entry points of the fuzzing targets in `fuzz/`.

pub mod clock;
pub mod codes;
pub mod config;
pub mod core;
pub mod ctl;
pub mod daemon;
pub mod devserver;
pub mod fleet;
pub mod fsck;
#[doc(hidden)]
pub mod fuzzing;
pub mod logging;
pub mod proto;
pub mod text;
pub mod usersig;
