//! The socket commands of `imlinkctl` (DESIGN §8): `status`, `login`, `logout`, `events`,
//! `reconnect`, `call`. Each one is a thin layer over one or two JSON-RPC calls; the
//! readable output is for people, `--json` prints one JSON text per line for `jq`.
//! A UserSig is never printed.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde_json::{json, Value};

use super::client::{Client, Failure};
use crate::codes::{code, LoginStatus};
use crate::proto::api::{self, ConnState, Status};
use crate::proto::rpc::RpcError;

/// Where the UserSig of `login` comes from (at most one; none: the daemon's provider,
/// `auth.provider`).
#[derive(Debug, Args)]
#[group(required = false, multiple = false)]
pub struct SigSource {
    /// The UserSig itself (visible to other users in the process list: prefer the others).
    #[arg(long, value_name = "SIG")]
    pub sig: Option<String>,
    /// Read the UserSig from this file (surrounding whitespace is ignored).
    #[arg(long, value_name = "FILE")]
    pub sig_file: Option<PathBuf>,
    /// Read the UserSig from standard input.
    #[arg(long)]
    pub sig_stdin: bool,
}

/// `imlinkctl login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The UserID to log in.
    #[arg(value_name = "USERID")]
    pub user: String,
    #[command(flatten)]
    pub sig: SigSource,
}

/// `imlinkctl events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// First replay the retained events after this seq.
    #[arg(long, value_name = "SEQ")]
    pub since: Option<u64>,
    /// Only these events (comma-separated names, e.g. `onKickedOffline,onUserSigExpired`).
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    pub filter: Vec<String>,
    /// Exit after printing N events (default: follow until interrupted).
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
}

/// `imlinkctl call`.
#[derive(Debug, Args)]
pub struct CallArgs {
    /// The method name, e.g. `getLoginStatus`.
    pub method: String,
    /// Its params as JSON: an object (or an array of positional params).
    #[arg(value_name = "PARAMS-JSON")]
    pub params: Option<String>,
}

fn write_line(out: &mut dyn Write, text: &str) -> Result<(), Failure> {
    writeln!(out, "{text}")
        .and_then(|_| out.flush())
        .map_err(|e| {
            Failure::Rpc(RpcError {
                code: code::INTERNAL_ERROR,
                message: format!("cannot write the output: {e}"),
            })
        })
}

fn usage(message: String) -> Failure {
    Failure::Rpc(RpcError {
        code: code::INVALID_PARAMETERS,
        message,
    })
}

use crate::clock::unix_ms as now_ms;

/// `2025-11-24T16:00:00.123Z` for unix milliseconds (UTC; no time zone database needed).
pub fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000);
    let days = secs.div_euclid(86400);
    let sod = secs.rem_euclid(86400);
    // Days to civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{milli:03}Z",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

/// `1h 02m`, `3m 04s`, `5s` for a number of seconds.
fn span(secs: i64) -> String {
    let s = secs.abs();
    let text = if s >= 86400 {
        format!("{}d {:02}h", s / 86400, s / 3600 % 24)
    } else if s >= 3600 {
        format!("{}h {:02}m", s / 3600, s / 60 % 60)
    } else if s >= 60 {
        format!("{}m {:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    };
    if secs < 0 {
        format!("{text} ago")
    } else {
        text
    }
}

fn conn_name(c: ConnState) -> &'static str {
    match c {
        ConnState::Idle => "idle",
        ConnState::Connecting => "connecting",
        ConnState::Connected => "connected",
        ConnState::Waiting => "waiting",
    }
}

/// The readable form of a `status` result.
pub fn format_status(s: &Status) -> String {
    let now = now_ms();
    let mut lines = Vec::new();
    let n = u8::from(s.login_status);
    let name = match s.login_status {
        LoginStatus::Logined => "LOGINED",
        LoginStatus::Logining => "LOGINING",
        LoginStatus::Logout => "LOGOUT",
    };
    let mut login = match (s.login_status, s.user_id.as_str()) {
        (_, "") => format!("login:       {name} ({n})"),
        (LoginStatus::Logined, u) => format!("login:       {name} ({n}) as {u}"),
        (_, u) => format!("login:       {name} ({n}), user {u}"),
    };
    if s.login_status == LoginStatus::Logined && !s.online {
        login.push_str(" — offline, logging in again once connected");
    }
    lines.push(login);
    lines.push(match s.sdk_app_id {
        Some(a) => format!("sdkAppID:    {a}"),
        None => "sdkAppID:    not initialised (initSDK)".to_owned(),
    });
    let mut c = format!("connection:  {}", conn_name(s.connection));
    if let Some(since) = s.connected_since {
        c.push_str(&format!(
            " since {} ({})",
            utc(since),
            span(now.saturating_sub(since) / 1000)
        ));
    }
    if s.reconnect_attempt > 0 {
        c.push_str(&format!(", {} failed attempt(s)", s.reconnect_attempt));
    }
    if let Some(ms) = s.next_retry_ms {
        c.push_str(&format!(", next try in {ms} ms"));
    }
    lines.push(c);
    lines.push(format!("server:      {}", s.server));
    if let Some(exp) = s.user_sig_expires_at {
        let left = exp.saturating_sub(now / 1000);
        let when = if left >= 0 {
            format!("in {}", span(left))
        } else {
            format!("expired {}", span(left))
        };
        lines.push(format!(
            "userSig:     expires {} ({when})",
            utc(exp.saturating_mul(1000))
        ));
    }
    if !s.state_saved {
        lines.push(
            "state:       NOT SAVED — the state file could not be written; the daemon retries"
                .to_owned(),
        );
    }
    if s.auth.provider != "none" {
        let mut a = format!(
            "auth:        {} provider, {} call(s), {} renewal(s)",
            s.auth.provider, s.auth.calls, s.auth.renewals
        );
        if let Some(at) = s.auth.next_renew_at {
            a.push_str(&format!(
                ", next renewal {} (in {})",
                utc(at.saturating_mul(1000)),
                span(at.saturating_sub(now / 1000))
            ));
        }
        if let Some(e) = &s.auth.last_error {
            a.push_str(&format!("; last error {}: {}", e.code, e.desc));
        }
        lines.push(a);
    }
    lines.push(format!(
        "daemon:      bootID {}, last event seq {}",
        s.boot_id, s.last_seq
    ));
    lines.join("\n")
}

/// The readable form of an event notification's params.
pub fn format_event(e: &Value) -> String {
    format!(
        "{} #{} {} {}",
        e["time"].as_i64().map(utc).unwrap_or_default(),
        e["seq"].as_u64().unwrap_or(0),
        e["event"].as_str().unwrap_or("?"),
        e.get("data").cloned().unwrap_or(json!({}))
    )
}

/// `imlinkctl status`.
pub fn status(socket: &Path, json: bool, out: &mut dyn Write) -> Result<(), Failure> {
    let s = Client::connect(socket)?.call(&api::GetStatus {})?;
    if json {
        write_line(out, &serde_json::to_string(&s).unwrap_or_default())
    } else {
        write_line(out, &format_status(&s))
    }
}

fn read_sig(src: &SigSource) -> Result<Option<String>, Failure> {
    let raw = if let Some(s) = &src.sig {
        s.clone()
    } else if let Some(f) = &src.sig_file {
        std::fs::read_to_string(f)
            .map_err(|e| usage(format!("cannot read the UserSig from {}: {e}", f.display())))?
    } else if !src.sig_stdin {
        return Ok(None);
    } else {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| usage(format!("cannot read the UserSig from standard input: {e}")))?;
        s
    };
    let sig = raw.trim().to_owned();
    if sig.is_empty() {
        return Err(usage("the UserSig is empty".to_owned()));
    }
    Ok(Some(sig))
}

/// `imlinkctl login`.
pub fn login(
    socket: &Path,
    args: &LoginArgs,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let sig = read_sig(&args.sig)?;
    let mut c = Client::connect(socket)?;
    let r = c.call(&api::Login {
        user_id: args.user.clone(),
        user_sig: sig,
    })?;
    if json {
        return write_line(out, &serde_json::to_string(&r).unwrap_or_default());
    }
    if r.repeat_login {
        write_line(
            out,
            &format!("{} was already logged in (repeatLogin)", args.user),
        )
    } else {
        write_line(out, &format!("logged in as {}", args.user))
    }
}

/// `imlinkctl renew`: `renewUserSig`.
pub fn renew(socket: &Path, json: bool, out: &mut dyn Write) -> Result<(), Failure> {
    let r = Client::connect(socket)?.call(&api::RenewUserSig {})?;
    if json {
        write_line(out, &serde_json::to_string(&r).unwrap_or_default())
    } else {
        write_line(
            out,
            &format!(
                "UserSig renewed: expires {}",
                utc(r.expires_at.saturating_mul(1000))
            ),
        )
    }
}

/// `imlinkctl logout` and `imlinkctl reconnect`: a call without params whose result is `{}`.
pub fn simple<C: api::Call<Output = api::Empty>>(
    socket: &Path,
    params: C,
    done: &str,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let r = Client::connect(socket)?.call(&params)?;
    if json {
        write_line(out, &serde_json::to_string(&r).unwrap_or_default())
    } else {
        write_line(out, done)
    }
}

/// `imlinkctl call`.
pub fn call(
    socket: &Path,
    args: &CallArgs,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let params = match &args.params {
        None => None,
        Some(text) => Some(
            serde_json::from_str::<Box<serde_json::value::RawValue>>(text)
                .map_err(|e| usage(format!("PARAMS-JSON is not valid JSON: {e}")))?,
        ),
    };
    let r = Client::connect(socket)?.call_raw(&args.method, params.as_deref())?;
    let text = if json {
        // One line, as the daemon wrote it.
        r.get().to_owned()
    } else {
        serde_json::from_str::<Value>(r.get())
            .ok()
            .and_then(|v| serde_json::to_string_pretty(&v).ok())
            .unwrap_or_else(|| r.get().to_owned())
    };
    write_line(out, &text)
}

/// Where `events` stands: what it has printed, to resume after a daemon restart.
struct Follow {
    boot_id: Option<String>,
    /// Replay after this seq when subscribing again.
    resume: Option<u64>,
    printed: u64,
}

/// `imlinkctl events`: subscribes and prints events until `--count` is reached or the
/// process is interrupted. When the connection ends (the daemon stopped or restarted) it
/// reconnects and resumes after the last seq it printed; when the daemon's bootID changed,
/// seqs started again, so it resumes from the new boot's first event and says so on
/// stderr.
pub fn events(
    socket: &Path,
    args: &EventsArgs,
    json: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), Failure> {
    let mut st = Follow {
        boot_id: None,
        resume: args.since,
        printed: 0,
    };
    // The first connection must work: a missing daemon is exit 2 at once.
    let mut client = Some(Client::connect(socket)?);
    let mut delay = Duration::from_millis(100);
    loop {
        let mut c = match client.take() {
            Some(c) => c,
            None => match Client::connect(socket) {
                Ok(c) => c,
                Err(_) => {
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(2));
                    continue;
                }
            },
        };
        delay = Duration::from_millis(100);
        match follow(&mut c, args, json, out, err, &mut st) {
            Ok(true) => return Ok(()),
            Ok(false) | Err(Failure::Unreachable(_)) => {
                let _ = writeln!(
                    err,
                    "imlinkctl: the connection to imlinkd at {} ended; reconnecting (last seq {})",
                    socket.display(),
                    st.resume.map_or("none".to_owned(), |s| s.to_string())
                );
            }
            Err(e) => return Err(e),
        }
    }
}

/// Subscribes on `c` and prints events; Ok(true) when `--count` was reached, Ok(false)
/// when the daemon closed the connection.
fn follow(
    c: &mut Client,
    args: &EventsArgs,
    json: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
    st: &mut Follow,
) -> Result<bool, Failure> {
    if args.count.is_some_and(|n| st.printed >= n) {
        return Ok(true);
    }
    // Learn which boot answers before choosing where to resume.
    if let Some(known) = st.boot_id.clone() {
        let boot = c.call(&api::GetStatus {})?.boot_id;
        if boot != known {
            let _ = writeln!(
                err,
                "imlinkctl: imlinkd restarted (bootID {known} -> {boot}); its seqs start again, resuming from seq 0"
            );
            st.resume = Some(0);
            st.boot_id = Some(boot);
        }
    }
    let r = c.call(&api::Subscribe {
        events: (!args.filter.is_empty()).then(|| args.filter.clone()),
        since: st.resume,
    })?;
    let boot = r.boot_id.clone();
    if st.boot_id.as_deref().is_some_and(|b| b != boot) {
        // Restarted again between `status` and `subscribe`: start over on this connection.
        st.boot_id = Some(boot);
        st.resume = Some(0);
        return Ok(false);
    }
    st.boot_id = Some(boot);
    if st.resume.is_none() {
        st.resume = Some(r.seq);
    }
    while let Some(e) = c.next_event()? {
        if let Some(seq) = e["seq"].as_u64() {
            st.resume = Some(seq);
        }
        let text = if json {
            e.to_string()
        } else {
            format_event(&e)
        };
        write_line(out, &text)?;
        st.printed += 1;
        if args.count.is_some_and(|n| st.printed >= n) {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formats_unix_milliseconds() {
        assert_eq!(utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(utc(1_764_000_000_123), "2025-11-24T16:00:00.123Z");
        assert_eq!(utc(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn spans_read_naturally() {
        assert_eq!(span(5), "5s");
        assert_eq!(span(65), "1m 05s");
        assert_eq!(span(3700), "1h 01m");
        assert_eq!(span(-90000), "1d 01h ago");
    }
}
