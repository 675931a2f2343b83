//! A small blocking client of the daemon's socket: newline-delimited JSON-RPC 2.0, with
//! the request and result types of [`crate::proto::api`].
//!
//! One connection, one request at a time. Event notifications that arrive while a reply
//! is awaited are kept in order and handed out by [`Client::next_event`], so nothing is
//! lost around a `subscribe`.

use serde_json::value::RawValue;
use serde_json::Value;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use crate::codes::code;
use crate::proto::api::{Call, EVENT_METHOD};
use crate::proto::rpc::{Id, Message, Request, RpcError, VERSION};

/// Why a call did not produce a result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// The daemon answered with a JSON-RPC error (exit 1).
    #[error("{0}")]
    Rpc(RpcError),
    /// The daemon cannot be reached, or the connection ended (exit 2).
    #[error("{0}")]
    Unreachable(String),
}

impl From<RpcError> for Failure {
    fn from(e: RpcError) -> Failure {
        Failure::Rpc(e)
    }
}

/// The path to connect to for `path` when the caller is `uid`, or why not (see
/// [`crate::fsck::check_client_socket`]).
pub fn check_socket(path: &Path, uid: u32) -> Result<PathBuf, Failure> {
    use crate::fsck::ClientRefusal;
    crate::fsck::check_client_socket(path, uid).map_err(|r| match r {
        ClientRefusal::Unreachable(m) => Failure::Unreachable(format!(
            "{m} (is it running? set --socket or IMLINK_SOCKET)"
        )),
        ClientRefusal::Untrusted(m) => Failure::Unreachable(m),
    })
}

/// A connection to `imlinkd`.
pub struct Client {
    path: PathBuf,
    writer: UnixStream,
    reader: BufReader<UnixStream>,
    next_id: u64,
    events: VecDeque<Value>,
}

fn unreadable(e: impl std::fmt::Display) -> Failure {
    Failure::Rpc(RpcError::new(
        code::PARSE_ERROR,
        format!("the daemon sent a line that is not a JSON-RPC message: {e}"),
    ))
}

impl Client {
    /// Connects to the socket at `path`, after checking that only this user, root or an
    /// administrator-made directory controls it ([`crate::fsck::check_client_socket`]):
    /// a socket in a directory another user could have made or can write to is refused
    /// (exit 2) before anything is sent, since a request may carry a ticket.
    pub fn connect(path: &Path) -> Result<Client, Failure> {
        let real = check_socket(path, crate::fsck::effective_uid())?;
        let stream = UnixStream::connect(&real).map_err(|e| {
            Failure::Unreachable(format!(
                "cannot reach imlinkd at {}: {e} (is it running? set --socket or IMLINK_SOCKET)",
                path.display()
            ))
        })?;
        let writer = stream
            .try_clone()
            .map_err(|e| Failure::Unreachable(format!("{}: {e}", path.display())))?;
        Ok(Client {
            path: path.to_owned(),
            writer,
            reader: BufReader::new(stream),
            next_id: 1,
            events: VecDeque::new(),
        })
    }

    fn lost(&self, what: &str) -> Failure {
        Failure::Unreachable(format!(
            "the connection to imlinkd at {} {what}",
            self.path.display()
        ))
    }

    /// Reads one message; `None` when the daemon closed the connection.
    fn read(&mut self) -> Result<Option<Message>, Failure> {
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) => return Ok(None),
                Ok(_) if line.trim().is_empty() => continue,
                Ok(_) => {
                    return serde_json::from_str(line.trim_end())
                        .map(Some)
                        .map_err(unreadable)
                }
                Err(e) => return Err(self.lost(&format!("failed: {e}"))),
            }
        }
    }

    /// Calls `method` with raw `params` (None: none) and returns the raw result.
    pub fn call_raw(
        &mut self,
        method: &str,
        params: Option<&RawValue>,
    ) -> Result<Box<RawValue>, Failure> {
        let id = self.next_id;
        self.next_id += 1;
        let empty = RawValue::from_string("{}".into()).map_err(unreadable)?;
        let req = Request {
            jsonrpc: VERSION,
            id: Some(Id::num(id)),
            method,
            params: &params.unwrap_or(&empty),
        };
        let mut text = serde_json::to_string(&req).map_err(unreadable)?;
        text.push('\n');
        self.writer
            .write_all(text.as_bytes())
            .map_err(|e| self.lost(&format!("failed: {e}")))?;
        loop {
            let Some(msg) = self.read()? else {
                return Err(self.lost("was closed before the reply"));
            };
            let Some(reply_id) = &msg.id else {
                if msg.method.as_deref() == Some(EVENT_METHOD) {
                    if let Some(p) = &msg.params {
                        self.events
                            .push_back(serde_json::from_str(p.get()).map_err(unreadable)?);
                    }
                }
                continue;
            };
            // A reply with a null id and an error is the daemon refusing the connection
            // (too many clients) or a request it could not read: report it.
            if *reply_id != Id::num(id) && !reply_id.is_null() {
                continue;
            }
            if let Some(e) = msg.error {
                return Err(Failure::Rpc(e));
            }
            return msg
                .result
                .ok_or_else(|| unreadable("a reply with neither result nor error"));
        }
    }

    /// Calls the method of `params` and returns its typed result.
    pub fn call<C: Call>(&mut self, params: &C) -> Result<C::Output, Failure> {
        let raw = serde_json::value::to_raw_value(params).map_err(unreadable)?;
        let r = self.call_raw(C::METHOD.name(), Some(&raw))?;
        serde_json::from_str(r.get()).map_err(unreadable)
    }

    /// The params of the next event notification; `None` when the daemon closed the
    /// connection. Kept as JSON: a client shows events it does not know too.
    pub fn next_event(&mut self) -> Result<Option<Value>, Failure> {
        if let Some(e) = self.events.pop_front() {
            return Ok(Some(e));
        }
        loop {
            match self.read() {
                Ok(None) => return Ok(None),
                Ok(Some(msg)) => {
                    if msg.id.is_none() && msg.method.as_deref() == Some(EVENT_METHOD) {
                        if let Some(p) = msg.params {
                            return serde_json::from_str(p.get()).map(Some).map_err(unreadable);
                        }
                    }
                }
                Err(Failure::Unreachable(_)) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }
}
