//! `imlinkd`: the actors (supervisor, connection, session, events, API).

pub mod api;
pub mod connection;
pub mod events;
pub mod messages;
pub mod session;
pub mod socket;
pub mod store;
pub mod systemd;

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

/// Reports an error that ends the daemon, once, on stderr (with the journal's error
/// priority under systemd), whatever the log level.
fn fatal(msg: &str) {
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        eprintln!("<3>imlinkd: {msg}");
    } else {
        eprintln!("imlinkd: {msg}");
    }
}

/// Runs the daemon until SIGTERM/SIGINT; returns the process exit code.
pub fn run(cfg: Config, source: ConfigSource, log: LogControl) -> std::process::ExitCode {
    // A panic anywhere in the actor system ends the process: systemd restarts it.
    std::panic::set_hook(Box::new(|info| {
        fatal(&format!("fatal: {info}"));
        std::process::exit(70);
    }));
    // Every API client and subscriber is a file descriptor: allow as many as the hard
    // limit permits (systemd's default soft limit is 1024).
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) if (n as usize) < cfg.api.max_clients + 64 => tracing::warn!(
            limit = n,
            max_clients = cfg.api.max_clients,
            "the open-files limit is below api.max_clients; raise LimitNOFILE"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!("cannot raise the open-files limit: {e}"),
    }
    let sys = actix_rt::System::new();
    let code = sys.block_on(supervise(cfg, source, log));
    std::process::ExitCode::from(code)
}

async fn supervise(cfg: Config, source: ConfigSource, log: LogControl) -> u8 {
    use actix::prelude::*;
    use messages::{Reconfigure, StopLink};

    let store = match store::Store::open(&cfg.state.dir) {
        Ok(s) => s,
        Err(e) => {
            fatal(&e);
            return 1;
        }
    };
    // The socket passed by socket activation, else api.socket bound afresh.
    let socket = match systemd::api_socket(&cfg.api) {
        Ok(s) => s,
        Err(e) => {
            fatal(&e);
            return 1;
        }
    };
    let restore = match (cfg.state.restore_session, store.saved()) {
        (true, Some(saved)) if cfg.sdk.app_id.is_none_or(|a| a == saved.app_id) => Some(saved),
        (_, Some(saved)) => {
            tracing::warn!(user = %saved.user, "not resuming the saved session (restore_session off or another sdk.app_id)");
            None
        }
        _ => None,
    };
    let instance_id = store.instance_id().to_owned();
    let boot_id = events::new_boot_id();
    tracing::info!(version = env!("CARGO_PKG_VERSION"), boot_id = %boot_id, socket = %cfg.api.socket.display(), "imlinkd starting");

    let event_log = events::EventLog::new(boot_id, cfg.events.history, cfg.server.url.clone());
    let board = event_log.board();
    let events = event_log.start();
    let conn_events = events.clone();
    let conn_cfg = cfg.clone();
    let session_log = log.clone();
    let session_events = events.clone();
    let session_cfg = cfg.clone();
    let mut conn_addr = None;
    let session = session::Session::create(|ctx| {
        let me = ctx.address();
        let mut c = connection::Connection::new(&conn_cfg, instance_id, conn_events);
        c.set_link(connection::SessionLink {
            up: me.clone().recipient(),
            down: me.clone().recipient(),
            push: me.recipient(),
        });
        let conn = c.start();
        conn_addr = Some(conn.clone());
        session::Session::new(
            &session_cfg,
            conn,
            session_events,
            store,
            session_log,
            restore,
        )
    });
    let Some(conn) = conn_addr else { return 1 };

    let shared = api::ApiShared {
        session: session.clone(),
        events: events.clone(),
        board,
        settings: std::rc::Rc::new(std::cell::RefCell::new(cfg.api.clone())),
        clients: std::rc::Rc::new(std::cell::RefCell::new(0)),
    };
    let settings = shared.settings.clone();
    // systemd: STATUS= lines and watchdog pings (only under a service manager).
    let _notifier = systemd::Notifier::start_if_wanted(events.clone());

    // Signals arrive on a plain thread and are forwarded into the actor system.
    let (sig_tx, mut sig_rx) = tokio::sync::mpsc::unbounded_channel();
    let signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ]);
    let mut signals = match signals {
        Ok(s) => s,
        Err(e) => {
            fatal(&format!("cannot install signal handlers: {e}"));
            return 1;
        }
    };
    let sig_handle = signals.handle();
    std::thread::spawn(move || {
        for s in signals.forever() {
            if sig_tx.send(s).is_err() {
                break;
            }
        }
    });

    {
        let serve = api::serve(&socket.listener, shared);
        tokio::pin!(serve);
        tracing::info!("ready");
        systemd::ready();
        loop {
            tokio::select! {
                _ = &mut serve => {}
                s = sig_rx.recv() => match s {
                    Some(signal_hook::consts::SIGHUP) => {
                        systemd::reloading();
                        match (source.reload)() {
                            Ok(new) => {
                                // Said before the new level applies, so it shows at the old one.
                                tracing::info!(log_level = %new.sdk.log_level, "reloading the configuration");
                                if let Err(e) = log.set_level(new.sdk.log_level) {
                                    tracing::warn!("cannot change the log level: {e}");
                                }
                                *settings.borrow_mut() = new.api.clone();
                                conn.do_send(Reconfigure(new.clone()));
                                session.do_send(Reconfigure(new.clone()));
                                events.do_send(Reconfigure(new.clone()));
                            }
                            Err(e) => tracing::error!("configuration not reloaded, keeping the old one: {e}"),
                        }
                        systemd::ready();
                    }
                    _ => break,
                }
            }
        }
    }
    systemd::stopping();
    tracing::info!("stopping: closing the connection, keeping the session on disk");
    let _ = conn.send(StopLink).await;
    // Let the close frame go out.
    actix_rt::time::sleep(std::time::Duration::from_millis(100)).await;
    sig_handle.close();
    drop(socket);
    actix_rt::System::current().stop();
    0
}
