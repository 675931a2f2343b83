//! `imlinkctl`: the command-line client of the socket, and the UserSig tool (DESIGN §8).
//!
//! The clap definitions live here, not in the binary, so that man pages and shell
//! completions can be generated from [`Cli::command`](clap::CommandFactory::command) and
//! so that tests can drive [`run`] with their own output buffers. Each subcommand is a
//! variant of [`Command`]; adding one means adding a variant and a module.
//!
//! Exit codes: 0 success; 1 failure, reported as `error <code>: <message>` on stderr (a
//! JSON-RPC error of the daemon, or a bad argument such as invalid PARAMS-JSON: 6017);
//! 2 usage errors (clap) and, for socket commands, an unreachable daemon (the message
//! names the socket).
//!
//! Layout: [`client`] speaks JSON-RPC over the socket, [`commands`] holds the socket
//! commands, [`usersig`] the offline ticket tool.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod client;
pub mod commands;
pub mod usersig;

use client::Failure;

/// Command-line options of `imlinkctl`.
#[derive(Debug, Parser)]
#[command(
    name = "imlinkctl",
    version,
    about = "Drive and watch the imlink daemon; make and check UserSig tickets"
)]
pub struct Cli {
    /// Path of the daemon's control socket.
    #[arg(long, global = true, env = "IMLINK_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Print machine-readable JSON lines (for `jq`).
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands of `imlinkctl`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the daemon's status: login, user, connection, ticket expiry, boot and seq.
    Status,
    /// Log a user in (the UserSig is read from --sig, --sig-file or --sig-stdin; without
    /// them the daemon gets one from its provider, auth.provider).
    Login(commands::LoginArgs),
    /// Log out (also succeeds when nobody is logged in).
    Logout,
    /// Print events as they happen; follows the daemon across restarts until interrupted.
    Events(commands::EventsArgs),
    /// Drop the reconnect backoff wait and connect now (for network-up hooks).
    Reconnect,
    /// Renew the UserSig from the daemon's provider now, without going offline.
    Renew,
    /// Call any JSON-RPC method and print its result.
    Call(commands::CallArgs),
    /// Generate, decode or verify a UserSig ticket (works without the daemon).
    #[command(subcommand)]
    Usersig(usersig::UsersigCommand),
}

/// A failure reported as `error <code>: <message>` with exit status 1: the API's one
/// error type.
pub use crate::proto::rpc::RpcError;

/// What the caller needs besides the parsed flags: where output goes.
pub struct Io<'a> {
    /// Standard output.
    pub out: &'a mut dyn Write,
    /// Standard error.
    pub err: &'a mut dyn Write,
}

/// Runs a parsed command line, writing to `io`; returns the process exit status.
pub fn run(cli: &Cli, io: &mut Io<'_>) -> u8 {
    let socket = cli
        .socket
        .clone()
        .unwrap_or_else(crate::config::default_socket_path);
    let json = cli.json;
    let result = match &cli.command {
        Command::Usersig(cmd) => usersig::run(cmd, json, io.out).map_err(Failure::Rpc),
        Command::Status => commands::status(&socket, json, io.out),
        Command::Login(a) => commands::login(&socket, a, json, io.out),
        Command::Logout => commands::simple(
            &socket,
            crate::proto::api::Logout {},
            "logged out",
            json,
            io.out,
        ),
        Command::Reconnect => commands::simple(
            &socket,
            crate::proto::api::Reconnect {},
            "reconnecting now (backoff reset)",
            json,
            io.out,
        ),
        Command::Renew => commands::renew(&socket, json, io.out),
        Command::Call(a) => commands::call(&socket, a, json, io.out),
        Command::Events(a) => commands::events(&socket, a, json, io.out, io.err),
    };
    // Nothing sensible is left to do if stderr itself is gone.
    match result {
        Ok(()) => 0,
        Err(Failure::Rpc(e)) => {
            let _ = writeln!(io.err, "{e}");
            1
        }
        Err(Failure::Unreachable(m)) => {
            let _ = writeln!(io.err, "imlinkctl: {m}");
            2
        }
    }
}

/// The entry point of the `imlinkctl` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
    let status = run(
        &cli,
        &mut Io {
            out: &mut out,
            err: &mut err,
        },
    );
    let _ = out.flush();
    ExitCode::from(status)
}
