//! `imlinkctl usersig gen|decode|verify` (DESIGN §7): make and check TLSSigAPIv2 tickets
//! locally, without the daemon. The key is never printed.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde::Serialize;

use crate::codes::code;
use crate::proto::rpc::RpcError;
use crate::usersig::{self, Ticket};

/// The `usersig` subcommands.
#[derive(Debug, Subcommand)]
pub enum UsersigCommand {
    /// Print a new ticket, alone on stdout.
    Gen {
        /// The application's SDKAppID.
        #[arg(long, value_name = "N")]
        sdk_app_id: u64,
        #[command(flatten)]
        key: KeyArgs,
        /// The UserID the ticket is for.
        #[arg(long, value_name = "U")]
        user: String,
        /// Lifetime in seconds.
        #[arg(long, value_name = "SECS", default_value_t = 86400)]
        expire: i64,
        /// Issue time, unix seconds (default: now).
        #[arg(long, value_name = "UNIX")]
        time: Option<i64>,
    },
    /// Print the fields of a ticket as JSON (no key needed, nothing is checked).
    Decode {
        /// The ticket.
        sig: String,
    },
    /// Check a ticket: exit 0 printing `valid`, or exit 1 with the code and reason.
    Verify {
        /// The SDKAppID the ticket must be for.
        #[arg(long, value_name = "N")]
        sdk_app_id: u64,
        #[command(flatten)]
        key: KeyArgs,
        /// The UserID the ticket must be for.
        #[arg(long, value_name = "U")]
        user: String,
        /// The time of the check, unix seconds (default: now).
        #[arg(long, value_name = "UNIX")]
        time: Option<i64>,
        /// The ticket.
        sig: String,
    },
}

/// The secret key, given inline or in a file.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct KeyArgs {
    /// The application's secret key.
    #[arg(long, value_name = "KEY")]
    key: Option<String>,
    /// A file holding the secret key (one trailing newline is ignored).
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
}

impl KeyArgs {
    fn load(&self) -> Result<String, RpcError> {
        match (&self.key, &self.key_file) {
            (Some(k), _) => Ok(k.clone()),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|e| RpcError {
                    code: code::INVALID_PARAMETERS,
                    message: format!("cannot read the key file {}: {e}", path.display()),
                })?;
                let key = text.strip_suffix('\n').unwrap_or(&text);
                Ok(key.strip_suffix('\r').unwrap_or(key).to_owned())
            }
            (None, None) => Err(RpcError {
                code: code::INVALID_PARAMETERS,
                message: "give the key with --key or --key-file".into(),
            }),
        }
    }
}

/// What `decode` prints: the ticket's fields plus when it expires.
#[derive(Serialize)]
struct Decoded<'a> {
    #[serde(flatten)]
    ticket: &'a Ticket,
    /// `TLS.time + TLS.expire`, unix seconds.
    expires_at: i64,
}

fn sig_error(e: &usersig::SigError) -> RpcError {
    RpcError {
        code: e.code(),
        message: e.to_string(),
    }
}

fn write_out(out: &mut dyn Write, line: std::fmt::Arguments<'_>) -> Result<(), RpcError> {
    writeln!(out, "{line}").map_err(|e| RpcError {
        code: code::INTERNAL_ERROR,
        message: format!("cannot write to stdout: {e}"),
    })
}

/// Runs one `usersig` subcommand, printing results to `out`.
pub fn run(cmd: &UsersigCommand, json: bool, out: &mut dyn Write) -> Result<(), RpcError> {
    match cmd {
        UsersigCommand::Gen {
            sdk_app_id,
            key,
            user,
            expire,
            time,
        } => {
            let key = key.load()?;
            let time = time.unwrap_or_else(usersig::now_unix);
            if *expire < 0 || time < 0 || time.checked_add(*expire).is_none() {
                return Err(RpcError {
                    code: code::INVALID_PARAMETERS,
                    message: format!(
                        "--time and --expire must be 0 or more, their sum at most {}",
                        i64::MAX
                    ),
                });
            }
            let ticket = usersig::generate(*sdk_app_id, &key, user, *expire, time);
            write_out(out, format_args!("{ticket}"))
        }
        UsersigCommand::Decode { sig } => {
            let ticket = usersig::decode(sig).map_err(|e| sig_error(&e))?;
            let decoded = Decoded {
                ticket: &ticket,
                expires_at: ticket.expires_at(),
            };
            let text = if json {
                serde_json::to_string(&decoded)
            } else {
                serde_json::to_string_pretty(&decoded)
            }
            .map_err(|e| RpcError {
                code: code::INTERNAL_ERROR,
                message: format!("cannot format the ticket: {e}"),
            })?;
            write_out(out, format_args!("{text}"))
        }
        UsersigCommand::Verify {
            sdk_app_id,
            key,
            user,
            time,
            sig,
        } => {
            let key = key.load()?;
            let now = time.unwrap_or_else(usersig::now_unix);
            let ticket =
                usersig::verify(sig, *sdk_app_id, &key, user, now).map_err(|e| sig_error(&e))?;
            if json {
                write_out(
                    out,
                    format_args!(
                        "{}",
                        serde_json::json!({"valid": true, "expires_at": ticket.expires_at()})
                    ),
                )
            } else {
                write_out(
                    out,
                    format_args!(
                        "valid (expires at {}, in {} s)",
                        ticket.expires_at(),
                        ticket.expires_at().saturating_sub(now)
                    ),
                )
            }
        }
    }
}
