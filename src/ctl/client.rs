//! A small blocking client of the daemon's socket: newline-delimited JSON-RPC 2.0.
//!
//! One connection, one request at a time. Event notifications that arrive while a reply
//! is awaited are kept in order and handed out by [`Client::next_event`], so nothing is
//! lost around a `subscribe`.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::CtlError;
use crate::codes::code;

/// Why a call did not produce a result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// The daemon answered with a JSON-RPC error (exit 1).
    #[error("{0}")]
    Rpc(CtlError),
    /// The daemon cannot be reached, or the connection ended (exit 2).
    #[error("{0}")]
    Unreachable(String),
}

impl From<CtlError> for Failure {
    fn from(e: CtlError) -> Failure {
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
    fn read(&mut self) -> Result<Option<Value>, Failure> {
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) => return Ok(None),
                Ok(_) if line.trim().is_empty() => continue,
                Ok(_) => {
                    return serde_json::from_str(line.trim_end())
                        .map(Some)
                        .map_err(|e| {
                            Failure::Rpc(CtlError {
                                code: code::PARSE_ERROR,
                                message: format!("the daemon sent a line that is not JSON: {e}"),
                            })
                        })
                }
                Err(e) => return Err(self.lost(&format!("failed: {e}"))),
            }
        }
    }

    /// Calls `method` with `params` and waits for its reply.
    pub fn call(&mut self, method: &str, params: Value) -> Result<Value, Failure> {
        let id = self.next_id;
        self.next_id += 1;
        let mut req = json!({"jsonrpc": "2.0", "id": id, "method": method});
        if !params.is_null() {
            req["params"] = params;
        }
        let mut text = req.to_string();
        text.push('\n');
        self.writer
            .write_all(text.as_bytes())
            .map_err(|e| self.lost(&format!("failed: {e}")))?;
        loop {
            let Some(msg) = self.read()? else {
                return Err(self.lost("was closed before the reply"));
            };
            if msg.get("id").is_none() {
                if msg.get("method").and_then(Value::as_str) == Some("event") {
                    self.events.push_back(msg);
                }
                continue;
            }
            // A reply with a null id and an error is the daemon refusing the connection
            // (too many clients) or a request it could not read: report it.
            if msg["id"] != json!(id) && !msg["id"].is_null() {
                continue;
            }
            if let Some(e) = msg.get("error") {
                return Err(Failure::Rpc(CtlError {
                    code: e["code"]
                        .as_i64()
                        .and_then(|c| i32::try_from(c).ok())
                        .unwrap_or(code::INTERNAL_ERROR),
                    message: e["message"].as_str().unwrap_or_default().to_owned(),
                }));
            }
            return Ok(msg.get("result").cloned().unwrap_or(Value::Null));
        }
    }

    /// The params of the next event notification; `None` when the daemon closed the
    /// connection.
    pub fn next_event(&mut self) -> Result<Option<Value>, Failure> {
        if let Some(e) = self.events.pop_front() {
            return Ok(Some(e["params"].clone()));
        }
        loop {
            match self.read() {
                Ok(None) => return Ok(None),
                Ok(Some(msg)) => {
                    if msg.get("id").is_none()
                        && msg.get("method").and_then(Value::as_str) == Some("event")
                    {
                        return Ok(Some(msg["params"].clone()));
                    }
                }
                Err(Failure::Unreachable(_)) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }
}
