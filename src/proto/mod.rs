//! Wire types, shared by the daemon, the client and the devserver: serde, and for the
//! hottest event a hand-written writer held to serde's bytes ([`json`]).
//!
//! Compatibility policy: fields and variants are only ever added; a reader ignores
//! fields it does not know. Every type here is documented with example JSON in
//! `docs/api.md` (the local JSON-RPC API), `docs/protocol.md` (daemon ↔ server) and
//! `docs/tencent.md` (daemon ↔ the Tencent bridge, [`bridge`]).

pub mod api;
pub mod bridge;
pub mod json;
pub mod profile;
pub mod rpc;
pub mod ws;

pub use profile::UserFullInfo;
