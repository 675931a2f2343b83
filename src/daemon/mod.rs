//! `imlinkd`: the actors (supervisor, connection, session, events, API).

use crate::config::Config;
use crate::logging::LogControl;
use std::path::PathBuf;

/// Where the configuration came from, for SIGHUP reloads.
#[derive(Debug, Clone, Default)]
pub struct ConfigSource {
    /// The file to re-read on SIGHUP (None: defaults, environment and flags only).
    pub file: Option<PathBuf>,
}

/// Runs the daemon until SIGTERM/SIGINT; returns the process exit code.
pub fn run(cfg: Config, source: ConfigSource, log: LogControl) -> std::process::ExitCode {
    let _ = (cfg, source, log);
    std::process::ExitCode::SUCCESS
}
