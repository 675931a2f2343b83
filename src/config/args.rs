//! The command line of `imlinkd`, and the flags that take part in the configuration.

use std::path::PathBuf;

use crate::codes::LogLevel;

/// Values given on the command line, highest precedence. `None` leaves a key alone.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    /// `--config PATH`: read this file instead of [`super::DEFAULT_CONFIG_PATH`]; it must exist.
    pub config: Option<PathBuf>,
    /// `--sdk-app-id N`.
    pub sdk_app_id: Option<u64>,
    /// `--log-level LEVEL`.
    pub log_level: Option<LogLevel>,
    /// `--server URL`.
    pub server: Option<String>,
    /// `--socket PATH`.
    pub socket: Option<PathBuf>,
    /// `--state-dir PATH`.
    pub state_dir: Option<PathBuf>,
}

/// The command line of `imlinkd`. Kept in the library so that manual pages and shell
/// completions can be generated from it.
#[derive(Debug, Clone, PartialEq, clap::Parser)]
#[command(
    name = "imlinkd",
    version,
    about = "Keeps an instant-messaging account logged in and serves a JSON-RPC API on a Unix socket",
    after_help = "Configuration: defaults < file < IMLINK_<SECTION>__<KEY> environment < flags. \
                  See docs/configuration.md."
)]
pub struct DaemonArgs {
    /// Configuration file [default: /etc/imlink/imlinkd.toml, if it exists]
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// The SDKAppID to initialise with (sdk.app_id)
    #[arg(long, value_name = "N")]
    pub sdk_app_id: Option<u64>,
    /// none|debug|info|warn|error, V2TIM_LOG_*, or 0|3|4|5|6 (sdk.log_level)
    #[arg(long, value_name = "LEVEL", value_parser = LogLevel::parse)]
    pub log_level: Option<LogLevel>,
    /// ws:// or wss:// URL of the access endpoint (server.url)
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// Path of the API socket (api.socket)
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Directory of session.json (state.dir)
    #[arg(long, value_name = "PATH")]
    pub state_dir: Option<PathBuf>,
    /// Print the effective configuration and where each value came from, then exit
    /// (status 1 and the problem on stderr if it is invalid; with server.backend =
    /// "tencent" the bridge is run with --version too: status 78 if it cannot work)
    #[arg(long)]
    pub check_config: bool,
}

impl DaemonArgs {
    /// The flags that take part in the configuration.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            config: self.config.clone(),
            sdk_app_id: self.sdk_app_id,
            log_level: self.log_level,
            server: self.server.clone(),
            socket: self.socket.clone(),
            state_dir: self.state_dir.clone(),
        }
    }
}
