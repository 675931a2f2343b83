//! `imlinkd`: catch SIGHUP, parse the flags, load the configuration, start logging, run
//! the daemon.

use clap::Parser;
use imlink::config::{self, DaemonArgs, Env};
use imlink::daemon::{self, ConfigSource};
use imlink::signals::EarlySignals;
use std::process::ExitCode;

fn main() -> ExitCode {
    // Before anything else: a SIGHUP during start-up must not end the process
    // (`systemctl reload` may come at any time). SIGTERM and SIGINT still do.
    let early = match EarlySignals::install() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("imlinkd: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
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
    let code = daemon::run(loaded.config, ConfigSource { reload }, log);
    // Kept to the end: SIGHUP stays caught while the daemon's own handler receives it too.
    drop(early);
    code
}
