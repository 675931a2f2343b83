//! `imlinkd`: parse the flags, load the configuration, start logging, run the daemon.

use clap::Parser;
use imlink::config::{self, DaemonArgs, Env};
use imlink::daemon::{self, ConfigSource};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = DaemonArgs::parse();
    let overrides = args.overrides();
    let env = Env::from_process();
    let loaded = match config::load(&overrides, &env) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("imlinkd: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.check_config {
        print!("{}", loaded.to_toml());
        return ExitCode::SUCCESS;
    }
    let log = imlink::logging::init(loaded.config.sdk.log_level);
    match &loaded.file {
        Some(path) => tracing::info!(file = %path.display(), "configuration loaded"),
        None => tracing::info!(
            "configuration loaded (no file, {} does not exist)",
            config::DEFAULT_CONFIG_PATH
        ),
    }
    // A SIGHUP reload reads the same file, the environment the daemon started with, and
    // the same flags.
    let reload = config::reloader(overrides, env);
    daemon::run(loaded.config, ConfigSource { reload }, log)
}
