//! systemd glue: readiness and status notifications, the watchdog, socket activation.
//!
//! - [`notify`] and its wrappers ([`ready`], [`reloading`], [`stopping`]) send one
//!   `sd_notify` datagram to `$NOTIFY_SOCKET`; outside systemd they do nothing. The
//!   supervisor calls them at the points that define each state: `READY=1` once the API
//!   socket listens, `RELOADING=1` … `READY=1` around a SIGHUP reload, `STOPPING=1` when a
//!   stop begins.
//! - [`start_notifier`] starts a task, only under a service manager. It keeps the
//!   `STATUS=` line current (who is logged in, the connection state) by waking on every
//!   change of the hub, and sends `WATCHDOG=1` at half of `$WATCHDOG_USEC` — each time
//!   after the Session actor answered, so a wedged actor system stops the pings and
//!   systemd restarts the process.
//! - [`api_socket`] takes the listening socket passed by socket activation
//!   (`LISTEN_FDS`/`LISTEN_PID`, `imlinkd.socket`) and falls back to binding
//!   `api.socket`. A passed socket belongs to systemd: it is not unlinked on exit.
//!
//! The status line is a pure function ([`status_line`]), tested on its own; the daemon's
//! behaviour under a fake `NOTIFY_SOCKET` and under `systemd-socket-activate` is tested
//! end to end in `tests/systemd_*.rs`.

use actix::prelude::*;
use sd_notify::NotifyState;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use crate::codes::LoginStatus;
use crate::config::ApiConfig;
use crate::daemon::hub::Hub;
use crate::daemon::messages::Alive;
use crate::daemon::socket::{self, BoundSocket};
use crate::proto::api::{ConnState, Status};

/// How often the status line is refreshed even when no event arrives (a connection
/// state change is not always an event of its own).
const REFRESH: Duration = Duration::from_secs(1);

/// Sends `states` to the service manager; a no-op without `$NOTIFY_SOCKET`. A failure is
/// logged, never fatal: the daemon works the same without a service manager.
pub fn notify(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!("cannot notify the service manager: {e}");
    }
}

/// `READY=1`: start-up finished (the API socket accepts connections) or a reload is done.
pub fn ready() {
    notify(&[NotifyState::Ready]);
}

/// `RELOADING=1` with `MONOTONIC_USEC` (which `Type=notify-reload` requires; harmless
/// with `Type=notify`). Followed by [`ready`] when the reload is over.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => notify(&[NotifyState::Reloading, now]),
        Err(_) => notify(&[NotifyState::Reloading]),
    }
}

/// `STOPPING=1`: the stop has begun.
pub fn stopping() {
    notify(&[NotifyState::Stopping]);
}

/// Whether a service manager listens (`$NOTIFY_SOCKET` is set).
pub fn under_service_manager() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some_and(|s| !s.is_empty())
}

/// The watchdog interval asked for by `$WATCHDOG_USEC`, following sd_watchdog_enabled(3):
/// none when unset, zero or unparsable, or when `$WATCHDOG_PID` names another process.
pub fn watchdog_interval(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    match pid.map(|p| p.trim().parse::<u32>()) {
        None => {}
        Some(Ok(p)) if p == me => {}
        Some(_) => return None,
    }
    Some(Duration::from_micros(usec))
}

/// The `STATUS=` text for a snapshot: who is logged in, then the connection.
///
/// Only values that change with the state are shown (not the retry countdown), so the
/// line changes exactly when the login or the connection does.
pub fn status_line(s: &Status) -> String {
    let login = match (s.sdk_app_id, s.login_status) {
        (None, _) => "not initialised (waiting for initSDK)".to_owned(),
        (Some(_), LoginStatus::Logined) => format!("logged in as {}", s.user_id),
        (Some(_), LoginStatus::Logining) => format!("logging in as {}", s.user_id),
        (Some(_), LoginStatus::Logout) => "nobody logged in".to_owned(),
    };
    let conn = match s.connection {
        ConnState::Idle => "no connection".to_owned(),
        ConnState::Connecting if s.reconnect_attempt == 0 => {
            format!("connecting to {}", s.server)
        }
        ConnState::Connecting => format!(
            "connecting to {} (attempt {})",
            s.server,
            s.reconnect_attempt + 1
        ),
        ConnState::Connected => format!("connected to {}", s.server),
        ConnState::Waiting => format!(
            "disconnected, will retry {} (failed attempts: {})",
            s.server, s.reconnect_attempt
        ),
    };
    format!("{login}; {conn}")
}

// ---------------------------------------------------------------- the notifier

/// Keeps `STATUS=` current and feeds the watchdog, when a service manager listens (None
/// outside systemd, where there is nobody to tell). Every status change wakes it; the
/// watchdog ping is sent only after the Session actor answered an [`Alive`], so a wedged
/// actor system stops the pings and systemd restarts the process.
pub fn start_notifier(
    hub: Rc<Hub>,
    alive: Recipient<Alive>,
) -> Option<tokio::task::JoinHandle<()>> {
    if !under_service_manager() {
        return None;
    }
    let watchdog = watchdog_interval(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    );
    if let Some(w) = watchdog {
        tracing::info!(interval_ms = w.as_millis() as u64, "watchdog enabled");
    }
    Some(tokio::task::spawn_local(async move {
        let mut last = String::new();
        // Half the interval, as sd_watchdog_enabled(3) recommends.
        let mut tick = tokio::time::interval(watchdog.map(|w| w / 2).unwrap_or(REFRESH));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let ping = tokio::select! {
                _ = hub.changed() => false,
                _ = tick.tick() => watchdog.is_some(),
            };
            let mut states = Vec::with_capacity(2);
            if ping {
                let deadline = watchdog.map(|w| w / 2).unwrap_or(REFRESH);
                match tokio::time::timeout(deadline, alive.send(Alive)).await {
                    Ok(Ok(())) => states.push(NotifyState::Watchdog),
                    // No answer in time: no ping; if it stays so, systemd restarts us.
                    _ => tracing::warn!("the session did not answer; watchdog ping skipped"),
                }
            }
            let line = status_line(&hub.status());
            if line != last {
                notify(&[NotifyState::Status(&line)]);
                last = line;
            }
            if !states.is_empty() {
                notify(&states);
            }
        }
    }))
}

// ---------------------------------------------------------------- socket activation

/// The API socket: the one passed by socket activation if there is one, else
/// `api.socket` bound afresh (see [`socket::bind`]).
pub fn api_socket(cfg: &ApiConfig) -> Result<BoundSocket, String> {
    match activated_listener()? {
        Some((listener, path)) => {
            if path != cfg.socket {
                tracing::info!(
                    "socket activation: serving {} (api.socket {} is not used)",
                    path.display(),
                    cfg.socket.display()
                );
            } else {
                tracing::info!("socket activation: serving {}", path.display());
            }
            Ok(socket::adopt(listener, path))
        }
        None => socket::bind(&cfg.socket, cfg.socket_mode),
    }
}

/// The first socket of `LISTEN_FDS` (for this `LISTEN_PID`), checked to be a listening
/// Unix stream socket; None when nothing was passed. Unsets the variables.
fn activated_listener() -> Result<Option<(tokio::net::UnixListener, PathBuf)>, String> {
    let mut fds = listenfd::ListenFd::from_env();
    if fds.len() == 0 {
        return Ok(None);
    }
    if fds.len() > 1 {
        tracing::warn!(
            "socket activation passed {} sockets; serving the first, ignoring the rest",
            fds.len()
        );
    }
    // listenfd checks that the descriptor is an AF_UNIX SOCK_STREAM socket before it
    // takes ownership, so no unsafe code is needed here.
    let listener = fds
        .take_unix_listener(0)
        .map_err(|e| {
            format!("socket activation: {e} (imlinkd.socket must have ListenStream= a path)")
        })?
        .ok_or("socket activation: the passed socket was already taken")?;
    let listening = socket2::SockRef::from(&listener)
        .is_listener()
        .map_err(|e| format!("socket activation: {e}"))?;
    if !listening {
        return Err(
            "socket activation: the passed socket does not listen (use Accept=no in imlinkd.socket)"
                .into(),
        );
    }
    let path = listener
        .local_addr()
        .ok()
        .and_then(|a| a.as_pathname().map(|p| p.to_owned()))
        .unwrap_or_else(|| PathBuf::from("(unnamed socket)"));
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("socket activation: {e}"))?;
    let listener = tokio::net::UnixListener::from_std(listener)
        .map_err(|e| format!("socket activation: {e}"))?;
    Ok(Some((listener, path)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(app: Option<u64>, login: LoginStatus, user: &str, conn: ConnState) -> Status {
        Status {
            sdk_app_id: app,
            login_status: login,
            user_id: user.into(),
            online: false,
            connection: conn,
            connected_since: None,
            reconnect_attempt: 0,
            next_retry_ms: None,
            server: "ws://127.0.0.1:8600/v1/connect".into(),
            user_sig_expires_at: None,
            state_saved: true,
            boot_id: "b".into(),
            last_seq: 0,
            auth: Default::default(),
        }
    }

    #[test]
    fn the_status_line_says_who_is_logged_in_and_the_connection_state() {
        let url = "ws://127.0.0.1:8600/v1/connect";
        let s = status(Some(1), LoginStatus::Logined, "alice", ConnState::Connected);
        assert_eq!(
            status_line(&s),
            format!("logged in as alice; connected to {url}")
        );
        let s = status(Some(1), LoginStatus::Logining, "bob", ConnState::Connecting);
        assert_eq!(
            status_line(&s),
            format!("logging in as bob; connecting to {url}")
        );
        let s = status(Some(1), LoginStatus::Logout, "", ConnState::Connected);
        assert_eq!(
            status_line(&s),
            format!("nobody logged in; connected to {url}")
        );
        let s = status(None, LoginStatus::Logout, "", ConnState::Idle);
        assert_eq!(
            status_line(&s),
            "not initialised (waiting for initSDK); no connection"
        );
    }

    #[test]
    fn the_status_line_counts_attempts_but_not_the_countdown() {
        let mut s = status(Some(1), LoginStatus::Logined, "alice", ConnState::Waiting);
        s.reconnect_attempt = 2;
        s.next_retry_ms = Some(700);
        let a = status_line(&s);
        assert!(
            a.contains("will retry ws://") && a.contains("(failed attempts: 2)"),
            "{a}"
        );
        s.next_retry_ms = Some(300);
        assert_eq!(status_line(&s), a, "the countdown must not churn STATUS=");
        s.connection = ConnState::Connecting;
        assert!(status_line(&s).contains("(attempt 3)"));
    }

    #[test]
    fn the_watchdog_follows_sd_watchdog_enabled() {
        let half = Duration::from_micros(500_000);
        assert_eq!(watchdog_interval(Some("500000"), None, 7), Some(half));
        assert_eq!(watchdog_interval(Some("500000"), Some("7"), 7), Some(half));
        assert_eq!(watchdog_interval(Some("500000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval(Some("500000"), Some("x"), 7), None);
        assert_eq!(watchdog_interval(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval(Some("soon"), None, 7), None);
        assert_eq!(watchdog_interval(None, Some("7"), 7), None);
    }
}
