//! Where a value came from, and why a configuration was refused. Values are shown as
//! written, made safe to print: control characters escaped, a URL's user name and
//! password hidden, long values cut.

use std::fmt;
use std::path::{Path, PathBuf};

/// Where a value of the effective configuration came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The built-in default.
    Default,
    /// The configuration file.
    File(PathBuf),
    /// An `IMLINK_<SECTION>__<KEY>` environment variable (its name).
    Env(String),
    /// A command-line flag (its name, e.g. `--server`).
    Flag(&'static str),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File(p) => write!(f, "file {}", shown_path(p)),
            Origin::Env(name) => write!(f, "environment {}", escaped(name)),
            Origin::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// Why the configuration could not be loaded. Every variant names where the problem is.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigError {
    /// The file could not be read or is not valid TOML.
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A key that does not exist.
    UnknownKey {
        /// The dotted key as written (`server.urll`).
        key: String,
        /// Where it was written.
        origin: Origin,
        /// The closest known key, when one is close.
        suggestion: Option<&'static str>,
    },
    /// A value that is not acceptable for its key.
    BadValue {
        /// The dotted key.
        key: String,
        /// The value as written, made printable (see [`printable`]).
        value: String,
        /// Where it was written.
        origin: Origin,
        /// What the value must be.
        problem: String,
    },
    /// Values that are each fine but not together (heartbeat timeout ≤ interval, …).
    Inconsistent {
        /// The whole explanation, naming each key, value and source.
        message: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::File { path, message } => {
                write!(f, "{}: {}", shown_path(path), escaped(message))
            }
            ConfigError::UnknownKey {
                key,
                origin,
                suggestion,
            } => {
                let key = printable(key);
                match origin {
                    Origin::File(p) => write!(f, "{}: unknown key {key}", shown_path(p))?,
                    Origin::Env(name) => write!(f, "{}: unknown key {key}", escaped(name))?,
                    Origin::Flag(flag) => write!(f, "{flag}: unknown key {key}")?,
                    Origin::Default => write!(f, "unknown key {key}")?,
                }
                if let Some(s) = suggestion {
                    write!(f, " (did you mean {s}?)")?;
                }
                Ok(())
            }
            ConfigError::BadValue {
                key,
                value,
                origin,
                problem,
            } => match origin {
                Origin::File(p) => {
                    write!(f, "{}: {key} = {value}: {key} {problem}", shown_path(p))
                }
                Origin::Env(name) => write!(f, "{}={value}: {key} {problem}", escaped(name)),
                Origin::Flag(flag) => write!(f, "{flag} {value}: {key} {problem}"),
                Origin::Default => write!(f, "default {key} = {value}: {key} {problem}"),
            },
            ConfigError::Inconsistent { message } => f.write_str(message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// The longest value shown in a message, in characters.
const MAX_SHOWN_CHARS: usize = 200;

/// A value as written, safe to print: the user name and password of any URL in it
/// replaced by `***`, control characters escaped, and cut after 200 characters.
pub fn printable(value: &str) -> String {
    let redacted = redact_userinfo(value);
    let mut out = escaped(&redacted);
    if let Some((cut, _)) = out.char_indices().nth(MAX_SHOWN_CHARS) {
        out.truncate(cut);
        out.push('…');
    }
    out
}

/// Control characters escaped (`\n`, `\u{1b}`), everything else as it is.
pub(super) fn escaped(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().collect()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn shown_path(p: &Path) -> String {
    escaped(&p.to_string_lossy())
}

/// `scheme://user:password@host…` → `scheme://***@host…`, for every URL in `s`.
fn redact_userinfo(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let authority_end = tail.find(['/', '?', '#']).unwrap_or(tail.len());
        match tail[..authority_end].rfind('@') {
            Some(at) => {
                out.push_str("***");
                rest = &tail[at..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_hides_url_credentials_escapes_and_cuts() {
        assert_eq!(
            printable("wss://alice:s3cret@im.example.net:443/v1?x=1"),
            "wss://***@im.example.net:443/v1?x=1"
        );
        assert_eq!(printable("ws://h/a@b"), "ws://h/a@b");
        assert_eq!(
            printable("a ws://u@h/ and http://p:q@r"),
            "a ws://***@h/ and http://***@r"
        );
        assert_eq!(printable("x\ny\u{1b}[31m"), "x\\ny\\u{1b}[31m");
        let long = "é".repeat(300);
        let shown = printable(&long);
        assert_eq!(shown.chars().count(), MAX_SHOWN_CHARS + 1);
        assert!(shown.ends_with('…'));
    }
}
