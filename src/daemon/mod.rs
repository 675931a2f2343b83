//! `imlinkd`'s library: an embeddable daemon.
//!
//! [`run`] takes the configuration, a listening socket and a control channel (reload,
//! stop), and serves until told to stop; it runs on the current actix system. The
//! `imlinkd` binary adds what belongs to a process — the panic hook, rlimits, signals,
//! the environment, binding the socket — so tests can run the whole daemon in-process
//! on a temporary socket, with tokio's clock paused and an in-memory server.
//!
//! # Layout
//!
//! - [`hub`] — the status board, the event ring, the subscribers.
//! - [`session`] — the Session actor: the login machine, persistence.
//! - [`net`] — network awareness: the rtnetlink watcher and what it tells the links.
//! - [`link`] — the link seam and its implementations ([`link::ws`]: the native protocol;
//!   [`link::tencent`]: Tencent's official SDK in a supervised child process).
//! - [`api`] — the Unix-socket JSON-RPC server.
//! - [`store`] — the state file; [`socket`] — binding the API socket safely.
//! - [`systemd`] — readiness, `STATUS=`, the watchdog, socket activation.
//! - [`messages`] — the messages between the actors.

pub mod accounts;
pub mod api;
pub mod auth;
pub mod fleet;
pub mod hub;
pub mod link;
pub mod messages;
pub mod metrics;
pub mod net;
pub mod session;
pub mod socket;
pub mod store;
pub mod systemd;

use actix::prelude::*;
use std::rc::Rc;
use std::time::Duration;
use tokio::net::UnixListener;
use tokio::sync::mpsc;

use crate::clock::Clock;
use crate::config::{Backend, Config};
use crate::logging::LogControl;
use link::ws::transport::{AwcDialer, Dialer};
use messages::{Reconfigure, Shutdown};

/// What the process tells the daemon.
#[derive(Debug, Clone)]
pub enum Control {
    /// SIGHUP: the configuration was read again.
    Reload(Box<Config>),
    /// SIGTERM / SIGINT: stop gracefully.
    Stop,
}

/// How the daemon is embedded: what the binary and the tests choose differently.
pub struct Embedding {
    /// The log level control (initSDK's `logLevel`, reloads).
    pub log: LogControl,
    /// Where the wall clock is read.
    pub clock: Clock,
    /// How the native link connects (None: awc, the real network).
    pub dialer: Option<Rc<dyn Dialer>>,
    /// The boot id (None: a random one).
    pub boot_id: Option<String>,
    /// How the state file is written (a writer thread, unless `inline`).
    pub store: store::Options,
}

impl Embedding {
    /// The defaults of the `imlinkd` binary.
    pub fn process(log: LogControl) -> Embedding {
        Embedding {
            log,
            clock: Clock::System,
            dialer: None,
            boot_id: None,
            store: store::Options::default(),
        }
    }
}

/// A running daemon's parts, for in-process tests.
pub struct Running {
    /// The hub.
    pub hub: Rc<hub::Hub>,
    /// The API's shared state.
    pub api: Rc<api::Api>,
    /// The Session's calls (what `initSDK`, `login`, `logout`, `unInitSDK` send).
    pub session: Recipient<messages::SessionCall>,
}

/// How long a graceful stop lets requests already read be answered and subscribers take
/// what is queued (before and after the link closes, which takes up to
/// [`link::ws::CLOSE_WAIT`]): the whole stop stays under two seconds.
pub const WIND_DOWN: Duration = Duration::from_millis(350);

/// Runs the daemon on the current actix system: opens the state directory, starts the
/// actors, serves `listener` until [`Control::Stop`] (or the sender is dropped), then stops
/// gracefully. `started` sees the running parts once the socket is served.
///
/// Best run as a task of its own (`actix_rt::spawn(run(…))`) rather than as the future a
/// runtime blocks on: a runtime with a `LocalSet` polls that future again each time any of
/// its tasks wakes, and this one waits on its listener and control channel on every poll.
pub async fn run(
    cfg: Config,
    listener: &UnixListener,
    mut control: mpsc::UnboundedReceiver<Control>,
    embed: Embedding,
    started: impl FnOnce(&Running),
) -> Result<(), String> {
    if cfg.accounts.multi {
        return run_multi(cfg, listener, control, embed, started).await;
    }
    let store = store::Store::open_with(&cfg.state.dir, embed.store)?;
    let restore = match (cfg.state.restore_session, store.saved()) {
        (true, Some(saved)) if cfg.sdk.app_id.is_none_or(|a| a == saved.app_id) => Some(saved),
        (_, Some(saved)) => {
            tracing::warn!(user = %saved.user, "not resuming the saved session (restore_session off or another sdk.app_id)");
            None
        }
        _ => None,
    };
    let instance_id = store.instance_id().to_owned();
    let boot_id = embed.boot_id.clone().unwrap_or_else(hub::new_boot_id);
    tracing::info!(version = env!("CARGO_PKG_VERSION"), boot_id = %boot_id, "imlinkd starting");

    let hub = hub::Hub::new(
        boot_id,
        embed.clock,
        cfg.events.history,
        cfg.api.subscriber_queue,
        server_label(&cfg),
    );
    let provider = auth::Provider::from_config(&cfg.auth).map_err(|e| format!("[auth]: {e}"))?;
    let dialer = embed
        .dialer
        .clone()
        .unwrap_or_else(|| Rc::new(AwcDialer::new(cfg.server.clone())));
    // The links the network watcher notifies.
    let net_links = Rc::new(std::cell::RefCell::new(Vec::new()));
    let session = {
        let (cfg, hub, log) = (cfg.clone(), hub.clone(), embed.log.clone());
        let net_links = net_links.clone();
        session::Session::create(move |ctx| {
            let link = link::start(
                &cfg,
                instance_id,
                hub.clone(),
                ctx.address().recipient(),
                dialer,
                None,
            );
            net_links.borrow_mut().push(link.net.clone());
            session::Session::new(&cfg, link, hub, store, log, restore, provider)
        })
    };
    let api = api::Api::new(
        hub.clone(),
        session.clone().recipient(),
        session.clone().recipient(),
        cfg.api.clone(),
    );
    let exposition = metrics::expose(cfg.metrics.listen, &api).await?;
    let watcher = net::watch::start(
        cfg.network.clone(),
        net_target(&cfg),
        hub.clone(),
        net_links.take(),
    );
    let notifier = systemd::start_notifier(hub.clone(), session.clone().recipient());

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serving = {
        let api = api.clone();
        async move {
            api::serve(listener, api, async {
                let _ = stop_rx.await;
            })
            .await
        }
    };
    tokio::pin!(serving);
    tracing::info!("ready");
    systemd::ready();
    started(&Running {
        hub: hub.clone(),
        api: api.clone(),
        session: session.clone().recipient(),
    });
    loop {
        tokio::select! {
            _ = &mut serving => break,
            c = control.recv() => match c {
                Some(Control::Reload(new)) => {
                    systemd::reloading();
                    // Said before the new level applies, so it shows at the old one.
                    tracing::info!(log_level = %new.sdk.log_level, "reloading the configuration");
                    if let Err(e) = embed.log.set_level(new.sdk.log_level) {
                        tracing::warn!("cannot change the log level: {e}");
                    }
                    api.set_settings(new.api.clone());
                    hub.reconfigure(new.events.history, new.api.subscriber_queue);
                    watcher.reconfigure(new.network.clone());
                    session.do_send(Reconfigure(*new));
                    systemd::ready();
                }
                Some(Control::Stop) | None => break,
            }
        }
    }
    systemd::stopping();
    tracing::info!(
        "stopping: answering what was asked, closing the connection, keeping the session on disk"
    );
    let _ = stop_tx.send(());
    // Let `serving` see the stop so nothing new is accepted.
    let _ = (&mut serving).await;
    api.wind_down(tokio::time::Instant::now() + WIND_DOWN).await;
    let _ = session.send(Shutdown).await;
    api.wind_down(tokio::time::Instant::now() + WIND_DOWN).await;
    if let Some(n) = notifier {
        n.abort();
    }
    if let Some(x) = exposition {
        x.abort();
    }
    tracing::info!("stopped");
    Ok(())
}

/// What `status.server` shows: the URL of the native link, or the Tencent link's label.
pub(crate) fn server_label(cfg: &Config) -> String {
    match cfg.server.backend {
        Backend::Imlink => cfg.server.url.clone(),
        Backend::Tencent => link::tencent::server_label(&cfg.tencent),
    }
}

/// Where the network watcher looks for a route: the native link's server, or the
/// Tencent link's proxy (the default route without one).
fn net_target(cfg: &Config) -> net::watch::Target {
    match cfg.server.backend {
        Backend::Imlink => net::watch::Target::of_url(&cfg.server.url),
        Backend::Tencent => cfg
            .tencent
            .proxy_server
            .as_deref()
            .map_or(net::watch::Target::Internet, net::watch::Target::of_url),
    }
}

/// [`run`] with many accounts (`accounts.multi = true`): no single Session; the
/// accounts of `state.dir/accounts` are restored, paced, and the API's calls go to
/// [`accounts::Accounts`].
async fn run_multi(
    cfg: Config,
    listener: &UnixListener,
    mut control: mpsc::UnboundedReceiver<Control>,
    embed: Embedding,
    started: impl FnOnce(&Running),
) -> Result<(), String> {
    let boot_id = embed.boot_id.clone().unwrap_or_else(hub::new_boot_id);
    tracing::info!(version = env!("CARGO_PKG_VERSION"), boot_id = %boot_id, "imlinkd starting (many accounts)");
    let hub = hub::Hub::new(
        boot_id,
        embed.clock,
        cfg.events.history,
        cfg.api.subscriber_queue,
        server_label(&cfg),
    );
    let provider = auth::Provider::from_config(&cfg.auth).map_err(|e| format!("[auth]: {e}"))?;
    let dialer = embed
        .dialer
        .clone()
        .unwrap_or_else(|| Rc::new(AwcDialer::new(cfg.server.clone())));
    let registry = accounts::Accounts::new(
        &cfg,
        hub.clone(),
        dialer,
        provider,
        embed.log.clone(),
        embed.store,
    )?;
    let manager = accounts::Manager {
        accounts: registry.clone(),
    }
    .start();
    let api = api::Api::new(
        hub.clone(),
        manager.clone().recipient(),
        manager.clone().recipient(),
        cfg.api.clone(),
    );
    let _ = api.accounts.set(registry.clone());
    let watcher = Rc::new(net::watch::start(
        cfg.network.clone(),
        net_target(&cfg),
        hub.clone(),
        Vec::new(),
    ));
    registry.set_watcher(watcher.clone());
    // In a fleet, an account is logged in only once this member owns it: saved logins
    // are not resumed (the accounts are listed, logged out, until the fleet says).
    registry.restore_all(cfg.state.restore_session && !cfg.fleet.enabled());
    let exposition = metrics::expose(cfg.metrics.listen, &api).await?;
    let notifier = systemd::start_notifier(hub.clone(), manager.clone().recipient());
    let fleet = fleet::start(
        &cfg,
        &api,
        Some(Rc::new(fleet::RegistryHost::new(registry.clone()))),
    );

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serving = {
        let api = api.clone();
        async move {
            api::serve(listener, api, async {
                let _ = stop_rx.await;
            })
            .await
        }
    };
    tokio::pin!(serving);
    tracing::info!("ready");
    systemd::ready();
    started(&Running {
        hub: hub.clone(),
        api: api.clone(),
        session: manager.clone().recipient(),
    });
    loop {
        tokio::select! {
            _ = &mut serving => break,
            c = control.recv() => match c {
                Some(Control::Reload(new)) => {
                    systemd::reloading();
                    tracing::info!(log_level = %new.sdk.log_level, "reloading the configuration");
                    if let Err(e) = embed.log.set_level(new.sdk.log_level) {
                        tracing::warn!("cannot change the log level: {e}");
                    }
                    api.set_settings(new.api.clone());
                    hub.reconfigure(new.events.history, new.api.subscriber_queue);
                    watcher.reconfigure(new.network.clone());
                    registry.reconfigure(&new);
                    systemd::ready();
                }
                Some(Control::Stop) | None => break,
            }
        }
    }
    systemd::stopping();
    tracing::info!(
        "stopping: answering what was asked, closing the connections, keeping the sessions on disk"
    );
    let _ = stop_tx.send(());
    let _ = (&mut serving).await;
    api.wind_down(tokio::time::Instant::now() + WIND_DOWN).await;
    if let Some(f) = fleet {
        f.stop().await;
    }
    let _ = manager.send(Shutdown).await;
    api.wind_down(tokio::time::Instant::now() + WIND_DOWN).await;
    if let Some(n) = notifier {
        n.abort();
    }
    if let Some(x) = exposition {
        x.abort();
    }
    tracing::info!("stopped");
    Ok(())
}
