//! `imlinkctl`: the command-line client of the socket, and the UserSig tool (DESIGN §8).
//!
//! The clap definitions live here, not in the binary, so that man pages and shell
//! completions can be generated from [`Cli::command`](clap::CommandFactory::command) and
//! so that tests can drive [`run`] with their own output buffers. Each subcommand is a
//! variant of [`Command`]; adding one means adding a variant and a module.
//!
//! Exit codes: 0 success; 1 failure, reported as `error <code>: <message>` on stderr;
//! 2 usage errors (clap) and, for socket commands, an unreachable daemon.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod usersig;

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
    /// Generate, decode or verify a UserSig ticket (works without the daemon).
    #[command(subcommand)]
    Usersig(usersig::UsersigCommand),
}

/// A failure to report as `error <code>: <message>` with exit status 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("error {code}: {message}")]
pub struct CtlError {
    /// Tencent's or the JSON-RPC error code.
    pub code: i32,
    /// One line saying what went wrong and what to do.
    pub message: String,
}

/// What the caller needs besides the parsed flags: where output goes.
pub struct Io<'a> {
    /// Standard output.
    pub out: &'a mut dyn Write,
    /// Standard error.
    pub err: &'a mut dyn Write,
}

/// Runs a parsed command line, writing to `io`; returns the process exit status.
pub fn run(cli: &Cli, io: &mut Io<'_>) -> u8 {
    let result = match &cli.command {
        Command::Usersig(cmd) => usersig::run(cmd, cli.json, io.out),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            // Nothing sensible is left to do if stderr itself is gone.
            let _ = writeln!(io.err, "{e}");
            1
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
