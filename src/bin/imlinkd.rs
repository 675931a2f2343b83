//! `imlinkd`: the process around the daemon library — signals, flags, configuration,
//! logging, the panic hook, rlimits, binding the socket — then [`imlink::daemon::run`].

use clap::Parser;
use imlink::config::{self, Backend, Config, DaemonArgs, Env, Overrides};
use imlink::daemon::link::tencent::preflight;
use imlink::daemon::{self, Control, Embedding};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use std::process::ExitCode;

/// Reports an error that ends the daemon, once, on stderr (with the journal's error
/// priority under systemd), whatever the log level.
fn fatal(msg: &str) {
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        eprintln!("<3>imlinkd: {msg}");
    } else {
        eprintln!("imlinkd: {msg}");
    }
}

fn main() -> ExitCode {
    // The handlers go in before anything else: a SIGHUP or SIGTERM in the first
    // milliseconds is queued here and handled once the daemon runs, instead of killing
    // the process with the default action.
    let signals = match signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP]) {
        Ok(s) => s,
        Err(e) => {
            fatal(&format!("cannot install signal handlers: {e}"));
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
    // The Tencent link needs Node.js and the bridge: checked before anything starts, so a
    // missing piece is one clear error (exit 78, which the units do not restart on).
    let bridge = match loaded.config.server.backend {
        Backend::Imlink => None,
        Backend::Tencent => match preflight::check(&loaded.config.tencent) {
            Ok(b) => Some(b),
            Err(e) => {
                fatal(&format!(
                    "the Tencent link cannot run (code {}): {}",
                    e.code, e.message
                ));
                return ExitCode::from(preflight::EXIT_UNAVAILABLE);
            }
        },
    };
    if args.check_config {
        print!("{}", loaded.to_toml());
        if let Some(b) = &bridge {
            println!("\n# Tencent bridge: {b}");
        }
        return ExitCode::SUCCESS;
    }
    let log = imlink::logging::init(loaded.config.sdk.log_level);
    if let Some(b) = &bridge {
        tracing::info!("Tencent bridge: {b}");
    }
    match &loaded.file {
        Some(path) => tracing::info!(file = %path.display(), "configuration loaded"),
        None => tracing::info!(
            "configuration loaded (no file, {} does not exist)",
            config::DEFAULT_CONFIG_PATH
        ),
    }
    let cfg = loaded.config;
    // A panic anywhere in the actor system ends the process: systemd restarts it.
    std::panic::set_hook(Box::new(|info| {
        fatal(&format!("fatal: {info}"));
        std::process::exit(70);
    }));
    // Every API client and subscriber is a file descriptor: allow as many as the hard
    // limit permits (systemd's default soft limit is 1024).
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) if usize::try_from(n).unwrap_or(usize::MAX) < cfg.api.max_clients + 64 => {
            tracing::warn!(
                limit = n,
                max_clients = cfg.api.max_clients,
                "the open-files limit is below api.max_clients; raise LimitNOFILE"
            )
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("cannot raise the open-files limit: {e}"),
    }

    let sys = actix_rt::System::new();
    // The daemon runs as a task of its own, and the runtime blocks on its join handle:
    // the runtime polls the future it blocks on again each time any task wakes (every
    // request), and a join handle costs less to poll than the daemon's own wait on its
    // listener and on the signal channel.
    let result = sys.block_on(async move {
        actix_rt::spawn(daemon_task(cfg, overrides, env, signals, log))
            .await
            .unwrap_or_else(|e| Err(format!("the daemon's task ended abnormally: {e}")))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            fatal(&e);
            ExitCode::FAILURE
        }
    }
}

/// The daemon, from binding the socket to the end of the wind-down.
async fn daemon_task(
    cfg: Config,
    overrides: Overrides,
    env: Env,
    mut signals: signal_hook::iterator::Signals,
    log: imlink::logging::LogControl,
) -> Result<(), String> {
    // The socket passed by socket activation, else api.socket bound afresh; removed
    // again (if it is still ours) when `socket` is dropped.
    let socket = daemon::systemd::api_socket(&cfg.api)?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    // A SIGHUP reload reads the same file, the environment the daemon started with,
    // and the same flags.
    let reload = config::reloader(overrides, env);
    let handle = signals.handle();
    std::thread::spawn(move || {
        for s in signals.forever() {
            let c = match s {
                SIGHUP => match reload() {
                    Ok(c) => Control::Reload(Box::new(c)),
                    Err(e) => {
                        tracing::error!("configuration not reloaded, keeping the old one: {e}");
                        continue;
                    }
                },
                _ => Control::Stop,
            };
            if tx.send(c).is_err() {
                break;
            }
        }
    });
    let r = daemon::run(cfg, &socket.listener, rx, Embedding::process(log), |_| {}).await;
    handle.close();
    drop(socket);
    r
}
