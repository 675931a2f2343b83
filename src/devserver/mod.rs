//! `imlink-devserver`: the emulator of the IM access server (DESIGN §6, docs/devserver.md).
//!
//! # Layout
//!
//! - this file — the flags ([`Args`]), start-up, routes, shutdown.
//! - [`policy`] — the multi-device login policy, a pure function, table-tested.
//! - [`state`] — accounts, logins, connections and counters behind one lock ([`state::Hub`]).
//! - [`access`] — the WebSocket endpoint `GET /v1/connect`: one task per connection.
//! - [`websdk`] — the Web access endpoint `GET /binfo` (and `/info`) that Tencent's official
//!   Web SDK speaks; its sessions share the [`state::Hub`] with `/v1/connect`.
//! - [`rest`] — the Tencent-style REST admin API `POST /v4/<service>/<command>`.
//! - [`faults`] — fault injection under `/faults/*` (with `--faults` only).
//! - [`tls`] — `wss://` with rustls.
//!
//! When it accepts connections the server prints exactly one line to stdout,
//! `listening on <ip>:<port>`, and logs everything else to stderr.

pub mod access;
pub mod faults;
pub mod policy;
pub mod rest;
pub mod state;
pub mod tls;
pub mod websdk;
pub mod wsout;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use clap::Parser;

pub use policy::Policy;
use state::{Hub, Settings};

/// The flags of `imlink-devserver`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "imlink-devserver",
    version,
    about = "Emulator of the IM access server: WebSocket access endpoint, REST admin API, fault injection"
)]
pub struct Args {
    /// Address to listen on (port 0 picks a free port; the real one is printed).
    #[arg(long, default_value = "127.0.0.1:8600", value_name = "ADDR")]
    pub listen: SocketAddr,
    /// An app: `SDKAPPID:KEY`, or `SDKAPPID:@/path/keyfile` to keep the key out of `ps`.
    /// Repeatable; at least one is required.
    #[arg(long = "app", value_name = "SDKAPPID:KEY", required = true)]
    pub apps: Vec<String>,
    /// The UserID of the REST administrator.
    #[arg(long, default_value = "administrator", value_name = "USERID")]
    pub admin: String,
    /// The multi-device login policy.
    #[arg(long, value_enum, default_value_t = Policy::Multi)]
    pub policy: Policy,
    /// How many Web logins one user may hold at once.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub web_instances: usize,
    /// Enable the fault injection endpoints under /faults.
    #[arg(long)]
    pub faults: bool,
    /// Serve wss:// with this PEM certificate chain (needs --tls-key).
    #[arg(long, requires = "tls_key", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Close a connection that sent nothing (pings included) for this long, code 4001.
    #[arg(long, default_value_t = 60_000, value_name = "MS")]
    pub idle_timeout_ms: u64,
}

/// Parses `SDKAPPID:KEY` / `SDKAPPID:@FILE`.
pub fn parse_app(spec: &str) -> Result<(u64, String), String> {
    let (id, key) = spec.split_once(':').ok_or_else(|| {
        format!(
            "--app {:?}: expected SDKAPPID:KEY or SDKAPPID:@KEYFILE",
            redact(spec)
        )
    })?;
    let id: u64 = id
        .trim()
        .parse()
        .map_err(|_| format!("--app: SDKAppID {:?} is not a number", id.trim()))?;
    let key = match key.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("--app {id}: cannot read key file {path}: {e}"))?
            .trim_end_matches(['\r', '\n'])
            .to_owned(),
        None => key.to_owned(),
    };
    if key.is_empty() {
        return Err(format!("--app {id}: the key is empty"));
    }
    Ok((id, key))
}

/// Never echo a key in an error.
fn redact(spec: &str) -> String {
    match spec.split_once(':') {
        Some((id, _)) => format!("{id}:…"),
        None => "…".into(),
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("IMLINK_DEVSERVER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(filter)
        .try_init();
}

/// Raises the soft open-files limit to the hard one: 10,000 idle connections need it.
fn raise_nofile() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::debug!(limit = n, "open files limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open files limit"),
    }
}

/// Has the allocator keep freed memory for reuse instead of handing it back at once. A
/// burst of pushes queues and frees hundreds of kilobytes per batch; with the default
/// thresholds each server thread's heap grew, was trimmed and was faulted in again for
/// every batch (about a sixth of the server's time in a burst went to `mprotect` and page
/// faults). Up to 8 MiB of free heap is kept per arena; idle memory is not touched.
#[allow(unsafe_code)]
fn keep_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only sets glibc's malloc parameters; it is called once, before any
    // other thread of the process exists.
    unsafe {
        libc::mallopt(libc::M_TOP_PAD, 1 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 8 << 20);
    }
}

/// Runs the devserver until SIGTERM/SIGINT. Exit 0 after a clean stop, 1 when it cannot
/// start, 2 on bad flags.
pub fn run(args: Args) -> ExitCode {
    keep_heap();
    init_logging();
    let mut apps = BTreeMap::new();
    for spec in &args.apps {
        match parse_app(spec) {
            Ok((id, key)) => {
                apps.insert(id, key);
            }
            Err(e) => {
                eprintln!("imlink-devserver: {e}");
                return ExitCode::from(2);
            }
        }
    }
    if !state::valid_user_id(&args.admin) {
        eprintln!(
            "imlink-devserver: --admin {:?} is not a valid UserID",
            args.admin
        );
        return ExitCode::from(2);
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => match tls::server_config(c, k) {
            Ok(cfg) => Some(cfg),
            Err(e) => {
                eprintln!("imlink-devserver: {e}");
                return ExitCode::from(2);
            }
        },
        _ => None,
    };
    raise_nofile();
    let settings = Settings {
        apps,
        admin: args.admin.clone(),
        policy: args.policy,
        web_instances: args.web_instances.max(1),
        faults: args.faults,
        idle_timeout_ms: args.idle_timeout_ms.max(1),
    };
    match actix_web::rt::System::new().block_on(serve(args.listen, settings, tls)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("imlink-devserver: {e}");
            ExitCode::from(1)
        }
    }
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok\n")
}

async fn stats(hub: web::Data<Hub>) -> HttpResponse {
    HttpResponse::Ok().json(hub.stats_json())
}

async fn sessions(hub: web::Data<Hub>) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "sessions": hub.sessions() }))
}

/// Binds, prints `listening on …`, serves until a signal.
pub async fn serve(
    listen: SocketAddr,
    settings: Settings,
    tls: Option<rustls::ServerConfig>,
) -> Result<(), String> {
    let listener = std::net::TcpListener::bind(listen)
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let faults = settings.faults;
    let scheme = if tls.is_some() { "wss" } else { "ws" };
    tracing::info!(
        policy = settings.policy.name(),
        web_instances = settings.web_instances,
        apps = ?settings.apps.keys().collect::<Vec<_>>(),
        admin = %settings.admin,
        faults,
        idle_timeout_ms = settings.idle_timeout_ms,
        "starting"
    );
    let hub = web::Data::new(Hub::new(settings));
    let data = hub.clone();
    let server = HttpServer::new(move || {
        let app = App::new()
            .app_data(data.clone())
            .app_data(web::PayloadConfig::new(1024 * 1024))
            .route("/healthz", web::get().to(healthz))
            .route(
                crate::proto::ws::CONNECT_PATH,
                web::get().to(access::connect),
            )
            .route(websdk::BINARY_PATH, web::get().to(websdk::connect))
            .route(websdk::TEXT_PATH, web::get().to(websdk::connect))
            .route("/v4/{service}/{command}", web::post().to(rest::handle))
            .route("/debug/stats", web::get().to(stats))
            .route("/debug/sessions", web::get().to(sessions));
        if faults {
            app.configure(faults::routes)
        } else {
            app
        }
    })
    .disable_signals()
    // Pushes are small frames sent back to back: no Nagle delay.
    .tcp_nodelay(true)
    .shutdown_timeout(2)
    .max_connections(50_000)
    .backlog(4096);
    let server = match tls {
        Some(cfg) => server.listen_rustls_0_23(listener, cfg),
        None => server.listen(listener),
    }
    .map_err(|e| format!("cannot serve on {local}: {e}"))?
    .run();
    let handle = server.handle();
    // The handlers exist before anyone learns the address: a SIGTERM sent right after
    // `listening on` must stop the server cleanly, not kill it.
    let signals = signal_streams();
    tracing::info!(%local, "accepting {scheme}:// connections at {scheme}://{local}{}", crate::proto::ws::CONNECT_PATH);
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on {local}");
        let _ = out.flush();
    }
    let stopper = hub.clone();
    actix_web::rt::spawn(async move {
        wait_for_signal(signals).await;
        tracing::info!("signal received: closing connections (1001) and stopping");
        stopper.close_all(1001, "server going away");
        // Give the connection tasks a moment to send their close frames.
        tokio::time::sleep(Duration::from_millis(100)).await;
        handle.stop(true).await;
    });
    server.await.map_err(|e| format!("server error: {e}"))?;
    tracing::info!("stopped");
    Ok(())
}

type SignalStreams = Option<(
    actix_web::rt::signal::unix::Signal,
    actix_web::rt::signal::unix::Signal,
)>;

fn signal_streams() -> SignalStreams {
    use actix_web::rt::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(term), Ok(int)) => Some((term, int)),
        _ => None,
    }
}

async fn wait_for_signal(signals: SignalStreams) {
    let Some((mut term, mut int)) = signals else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
