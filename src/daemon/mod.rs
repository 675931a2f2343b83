//! `imlinkd`: the actors (supervisor, connection, session, events, API).

use crate::config::Config;
use crate::logging::LogControl;
use std::sync::Arc;

/// Loads the configuration again from the same sources (file, environment, flags) for a
/// SIGHUP reload; the error names the key, the value and the source.
pub type Reloader = Arc<dyn Fn() -> Result<Config, String> + Send + Sync>;

/// Where the configuration came from, for SIGHUP reloads.
#[derive(Clone)]
pub struct ConfigSource {
    /// Re-reads the configuration.
    pub reload: Reloader,
}

/// Runs the daemon until SIGTERM/SIGINT; returns the process exit code.
pub fn run(cfg: Config, source: ConfigSource, log: LogControl) -> std::process::ExitCode {
    let _ = (cfg, source, log);
    std::process::ExitCode::SUCCESS
}
