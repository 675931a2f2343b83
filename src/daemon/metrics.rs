//! The Prometheus text exposition (`metrics.listen`): the figures of the `metrics` method
//! ([`MetricsResult`]), encoded by the `prometheus-client` crate and served at
//! `GET /metrics` over plain HTTP on a loopback address.
//!
//! The server is deliberately small: one request per connection, its head read up to
//! [`MAX_HEAD`] bytes within [`READ_TIMEOUT`], `GET /metrics` answered 200 with the
//! exposition, anything else 404 (or 400 when it is not a request line), then the
//! connection is closed. At most [`MAX_CONNECTIONS`] are served at once; more wait in the
//! backlog.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::daemon::api::Api;
use crate::proto::api::MetricsResult;

/// The most bytes of a request head read.
pub const MAX_HEAD: usize = 4096;
/// How long a client may take to send its request head.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 16;

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The exposition (text format 0.0.4) of `m`.
pub fn exposition(m: &MetricsResult) -> String {
    let mut r = Registry::with_prefix("imlink");
    r.register(
        "accounts",
        "Accounts of the daemon",
        ConstGauge::new(clamp(m.accounts)),
    );
    let by_status = Family::<Vec<(String, String)>, Gauge>::default();
    for (s, v) in [
        ("logined", m.logined),
        ("logining", m.logining),
        ("logout", m.logout),
    ] {
        by_status
            .get_or_create(&vec![("status".to_owned(), s.to_owned())])
            .set(clamp(v));
    }
    r.register("accounts_by_status", "Accounts by login status", by_status);
    r.register(
        "accounts_online",
        "Accounts logged in with the login held on a live connection",
        ConstGauge::new(clamp(m.online)),
    );
    let links = Family::<Vec<(String, String)>, Gauge>::default();
    for (s, v) in [
        ("idle", m.links_idle),
        ("connecting", m.links_connecting),
        ("connected", m.links_connected),
        ("waiting", m.links_waiting),
    ] {
        links
            .get_or_create(&vec![("state".to_owned(), s.to_owned())])
            .set(clamp(v));
    }
    r.register("links", "Links to the server by state", links);
    for (name, help, v) in [
        ("logins", "Logins accepted", m.logins),
        (
            "relogins",
            "Silent re-logins accepted after a reconnect",
            m.relogins,
        ),
        (
            "relogin_failures",
            "Silent re-logins refused (retried)",
            m.relogin_failures,
        ),
        ("kicks", "Accounts kicked offline", m.kicks),
        ("expiries", "Tickets expired", m.expiries),
        ("connects", "Connections that came up", m.connects),
        (
            "connect_failures",
            "Failed connect attempts and lost connections",
            m.connect_failures,
        ),
        ("events", "Events emitted", m.events),
    ] {
        r.register(name, help, ConstCounter::new(v));
    }
    r.register(
        "subscribers",
        "API connections holding a subscription",
        ConstGauge::new(clamp(m.subscribers)),
    );
    let mut out = String::with_capacity(2048);
    if encode(&mut out, &r).is_err() {
        out.clear();
    }
    out
}

/// Binds `addr` (checked loopback by the configuration).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("metrics.listen {addr}: {e}"))
}

/// Serves the exposition at `listen` (when set) in a task of its own; the caller aborts
/// it at shutdown.
pub async fn expose(
    listen: Option<SocketAddr>,
    api: &Rc<Api>,
) -> Result<Option<tokio::task::JoinHandle<()>>, String> {
    let Some(addr) = listen else { return Ok(None) };
    let l = bind(addr).await?;
    tracing::info!(listen = %addr, "serving the metrics at /metrics");
    Ok(Some(tokio::task::spawn_local(serve(l, api.clone()))))
}

/// Serves the exposition on `listener` until the task is aborted.
pub async fn serve(listener: TcpListener, api: Rc<Api>) {
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (mut conn, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!("metrics: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let api = api.clone();
        tokio::task::spawn_local(async move {
            let _permit = permit;
            let mut head = Vec::with_capacity(512);
            let mut buf = [0u8; 512];
            let read = tokio::time::timeout(READ_TIMEOUT, async {
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return false,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                true
            })
            .await;
            if !matches!(read, Ok(true)) {
                return;
            }
            let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
            let mut parts = line.split(|b| *b == b' ');
            let (method, path) = (parts.next(), parts.next());
            let (status, body) = match (method, path) {
                (Some(b"GET"), Some(b"/metrics")) => (
                    "200 OK",
                    exposition(&crate::daemon::api::dispatch::metrics(&api)),
                ),
                (Some(_), Some(_)) => ("404 Not Found", "not found: GET /metrics\n".to_owned()),
                _ => ("400 Bad Request", "bad request\n".to_owned()),
            };
            let reply = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(reply.as_bytes()).await;
            let _ = conn.shutdown().await;
        });
    }
}
