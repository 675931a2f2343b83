//! `auth.provider = "command"`: a program prints the ticket.
//!
//! The program (`auth.command`, no shell) runs with the daemon's environment plus
//! `IMLINK_USER_ID` and `IMLINK_SDK_APP_ID`, standard input from `/dev/null`, and must
//! exit 0 within `auth.timeout_ms` having printed the ticket (or the JSON object of
//! [`super::parse_output`]). Its standard output is read up to [`MAX_OUTPUT_BYTES`] (the
//! rest is drained and makes the call fail) and never logged; of its standard error only
//! the last line is kept, cleaned ([`crate::text::clean`]), for the failure's message. At
//! the timeout the program is killed (its own children are not: a script should `exec`
//! its last command).

use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{provider_failed, MAX_OUTPUT_BYTES};
use crate::config::AuthConfig;
use crate::core::session::Fail;

/// How much of standard error is kept (its last line is reported).
const STDERR_TAIL_BYTES: usize = 4096;

/// The `command` provider.
pub struct CommandProvider {
    argv: Vec<String>,
    timeout: Duration,
}

/// Reads `r` to its end, keeping the first `max` bytes and saying whether there was more.
async fn read_head(mut r: impl AsyncRead + Unpin, max: usize) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let mut more = false;
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return (kept, more),
            Ok(n) => {
                let room = max.saturating_sub(kept.len());
                let take = n.min(room);
                kept.extend_from_slice(&buf[..take]);
                more |= take < n;
            }
        }
    }
}

/// Reads `r` to its end, keeping the last `max` bytes.
async fn read_tail(mut r: impl AsyncRead + Unpin, max: usize) -> Vec<u8> {
    let mut kept: Vec<u8> = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > max {
                    kept.drain(..kept.len() - max);
                }
            }
        }
    }
}

/// The last non-empty line of `bytes`, cleaned for a log line and a message.
pub fn last_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(|l| crate::text::clean(l).into_owned())
        .unwrap_or_default()
}

impl CommandProvider {
    /// The provider of `cfg` (`auth.command` is not empty: checked with the configuration).
    pub fn new(cfg: &AuthConfig) -> CommandProvider {
        CommandProvider {
            argv: cfg.command.clone(),
            timeout: Duration::from_millis(cfg.timeout_ms),
        }
    }

    /// Runs the program; its standard output (at most [`MAX_OUTPUT_BYTES`]) as text.
    pub async fn run(&self, app_id: u64, user: &str) -> Result<String, Fail> {
        let Some((program, args)) = self.argv.split_first() else {
            return Err(provider_failed("auth.command is empty"));
        };
        let shown = crate::text::clean_to(program, 120).into_owned();
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .env("IMLINK_USER_ID", user)
            .env("IMLINK_SDK_APP_ID", app_id.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| provider_failed(format!("cannot run auth.command {shown}: {e}")))?;
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(provider_failed("auth.command: no pipes"));
        };
        let all = async {
            let (out, err, status) = tokio::join!(
                read_head(stdout, MAX_OUTPUT_BYTES),
                read_tail(stderr, STDERR_TAIL_BYTES),
                child.wait()
            );
            (out, err, status)
        };
        let ms = self.timeout.as_millis();
        let ((out, too_much), err, status) = match tokio::time::timeout(self.timeout, all).await {
            Ok(r) => r,
            Err(_) => {
                let _ = child.kill().await;
                return Err(provider_failed(format!(
                    "auth.command {shown} did not finish within {ms} ms (auth.timeout_ms): killed"
                )));
            }
        };
        let why = |what: String| {
            let line = last_line(&err);
            if line.is_empty() {
                provider_failed(format!("auth.command {shown} {what}"))
            } else {
                provider_failed(format!("auth.command {shown} {what}; its stderr: {line}"))
            }
        };
        match status {
            Err(e) => return Err(why(format!("could not be waited for: {e}"))),
            Ok(st) if !st.success() => {
                let how = match (
                    st.code(),
                    std::os::unix::process::ExitStatusExt::signal(&st),
                ) {
                    (Some(c), _) => format!("exited with status {c}"),
                    (None, Some(s)) => format!("was killed by signal {s}"),
                    _ => "failed".to_owned(),
                };
                return Err(why(how));
            }
            Ok(_) => {}
        }
        if too_much {
            return Err(why(format!("printed more than {MAX_OUTPUT_BYTES} bytes")));
        }
        let text = String::from_utf8(out)
            .map_err(|_| why("printed something that is not UTF-8 text".into()))?;
        if text.trim().is_empty() {
            return Err(why("printed nothing".into()));
        }
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_line_of_stderr_is_kept_clean() {
        assert_eq!(last_line(b"one\ntwo\n\n"), "two");
        assert_eq!(last_line(b"bad \x1b[31mred\n"), "bad \\u{1b}[31mred");
        assert_eq!(last_line(b""), "");
        assert!(last_line("x".repeat(5000).as_bytes()).chars().count() <= 201);
    }
}
