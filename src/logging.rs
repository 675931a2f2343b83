//! Tracing set-up with the SDK's log levels, changeable at run time.
//!
//! One global subscriber: a reloadable [`LevelFilter`] (so `initSDK {logLevel}` and a SIGHUP
//! reload change the level of the running process) in front of a formatter that writes to
//! stderr. The `log` records of actix and awc are bridged into tracing and follow the same
//! level. Under systemd (`JOURNAL_STREAM` set) each line starts with its syslog priority
//! (`<3>` error … `<7>` debug) and carries neither timestamp nor colours — the journal adds
//! its own; elsewhere lines are timestamped, with colours only on a terminal.
//!
//! The decisions are pure functions ([`filter_for`], [`syslog_priority`], [`style_for`]),
//! tested without installing a global subscriber.

use crate::codes::LogLevel;
use std::fmt;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex, OnceLock};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{reload, Registry};

/// The tracing filter for an SDK level: none → off, debug, info, warn, error.
pub fn filter_for(level: LogLevel) -> LevelFilter {
    match level {
        LogLevel::None => LevelFilter::OFF,
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Error => LevelFilter::ERROR,
    }
}

/// The `log` crate's filter for an SDK level (actix and awc log through `log`).
pub fn log_filter_for(level: LogLevel) -> log::LevelFilter {
    match level {
        LogLevel::None => log::LevelFilter::Off,
        LogLevel::Debug => log::LevelFilter::Debug,
        LogLevel::Info => log::LevelFilter::Info,
        LogLevel::Warn => log::LevelFilter::Warn,
        LogLevel::Error => log::LevelFilter::Error,
    }
}

/// The syslog priority the journal reads from a `<N>` line prefix (sd-daemon(3)).
pub fn syslog_priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Under systemd: `<N>` priority prefix, no timestamp, no colours.
    Journal,
    /// Elsewhere: timestamp, level, target, message; colours when `ansi`.
    Readable {
        /// Colour the output (stderr is a terminal).
        ansi: bool,
    },
}

/// The style for the given `JOURNAL_STREAM` value and whether stderr is a terminal.
pub fn style_for(journal_stream: Option<&str>, stderr_is_tty: bool) -> Style {
    match journal_stream {
        Some(v) if !v.is_empty() => Style::Journal,
        _ => Style::Readable {
            ansi: stderr_is_tty,
        },
    }
}

/// Formats an event as `<N>target: message key=value…`; a multi-line message gets the
/// prefix on every line, so the journal keeps the priority of each.
#[derive(Debug, Clone, Copy, Default)]
pub struct JournalFormat;

impl<S, N> FormatEvent<S, N> for JournalFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let prefix = format!("<{}>", syslog_priority(meta.level()));
        let mut body = String::new();
        ctx.format_fields(Writer::new(&mut body), event)?;
        // Spans give context such as the user or the client; keep their names and fields.
        let mut scope = String::new();
        if let Some(span) = ctx.lookup_current() {
            for s in span.scope().from_root() {
                scope.push_str(s.name());
                if let Some(fields) = s
                    .extensions()
                    .get::<tracing_subscriber::fmt::FormattedFields<N>>()
                    .filter(|f| !f.is_empty())
                {
                    scope.push('{');
                    scope.push_str(fields);
                    scope.push('}');
                }
                scope.push_str(": ");
            }
        }
        let text = format!("{}: {scope}{body}", meta.target());
        for line in text.lines() {
            writeln!(writer, "{prefix}{line}")?;
        }
        Ok(())
    }
}

/// A handle that changes the log level of the running process. Cloning is cheap; every
/// clone controls the same level.
#[derive(Clone)]
pub struct LogControl {
    level: Arc<Mutex<LogLevel>>,
    reload: Option<reload::Handle<LevelFilter, Registry>>,
}

impl fmt::Debug for LogControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogControl")
            .field("level", &self.level())
            .field("attached", &self.reload.is_some())
            .finish()
    }
}

impl LogControl {
    /// A control attached to no subscriber: it only remembers the level. For tests of
    /// code that takes a `LogControl`, and for embedding imlink with your own subscriber.
    pub fn detached(level: LogLevel) -> LogControl {
        LogControl {
            level: Arc::new(Mutex::new(level)),
            reload: None,
        }
    }

    /// Sets the level (initSDK's `logLevel`, SIGHUP reload).
    pub fn set_level(&self, level: LogLevel) -> Result<(), String> {
        if let Some(handle) = &self.reload {
            handle
                .reload(filter_for(level))
                .map_err(|e| format!("cannot change the log level: {e}"))?;
            log::set_max_level(log_filter_for(level));
        }
        *self.level.lock().map_err(|e| e.to_string())? = level;
        Ok(())
    }

    /// The level in force.
    pub fn level(&self) -> LogLevel {
        self.level.lock().map(|l| *l).unwrap_or(LogLevel::Info)
    }
}

static INSTALLED: OnceLock<LogControl> = OnceLock::new();

/// Installs the global subscriber at `level` and returns its control handle.
///
/// Meant to be called once, at the start of the process. A later call installs nothing
/// new: it sets the level and returns a handle to the subscriber already installed (or a
/// detached handle if another subscriber was installed by someone else).
pub fn init(level: LogLevel) -> LogControl {
    let control = INSTALLED.get_or_init(|| install(level));
    if let Err(e) = control.set_level(level) {
        eprintln!("imlink: {e}");
    }
    control.clone()
}

fn install(level: LogLevel) -> LogControl {
    let (filter, handle) = reload::Layer::new(filter_for(level));
    let journal = std::env::var("JOURNAL_STREAM").ok();
    let style = style_for(journal.as_deref(), std::io::stderr().is_terminal());
    let base = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let installed = match style {
        Style::Journal => {
            let layer = base.with_ansi(false).event_format(JournalFormat);
            tracing::subscriber::set_global_default(Registry::default().with(filter).with(layer))
        }
        Style::Readable { ansi } => {
            let layer = base.with_ansi(ansi).with_target(true);
            tracing::subscriber::set_global_default(Registry::default().with(filter).with(layer))
        }
    };
    if installed.is_err() {
        // Someone else owns the global subscriber; do not fight over it.
        return LogControl::detached(level);
    }
    // actix and awc log through the `log` crate: forward those records into tracing. The
    // `log` side is filtered at the same level so disabled records cost nothing.
    if tracing_log::LogTracer::init().is_ok() {
        log::set_max_level(log_filter_for(level));
    }
    LogControl {
        level: Arc::new(Mutex::new(level)),
        reload: Some(handle),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn sdk_levels_map_to_filters() {
        assert_eq!(filter_for(LogLevel::None), LevelFilter::OFF);
        assert_eq!(filter_for(LogLevel::Debug), LevelFilter::DEBUG);
        assert_eq!(filter_for(LogLevel::Info), LevelFilter::INFO);
        assert_eq!(filter_for(LogLevel::Warn), LevelFilter::WARN);
        assert_eq!(filter_for(LogLevel::Error), LevelFilter::ERROR);
        assert_eq!(log_filter_for(LogLevel::None), log::LevelFilter::Off);
        assert_eq!(log_filter_for(LogLevel::Debug), log::LevelFilter::Debug);
        assert_eq!(log_filter_for(LogLevel::Info), log::LevelFilter::Info);
        assert_eq!(log_filter_for(LogLevel::Warn), log::LevelFilter::Warn);
        assert_eq!(log_filter_for(LogLevel::Error), log::LevelFilter::Error);
    }

    #[test]
    fn a_higher_sdk_level_lets_fewer_events_through() {
        // The SDK orders levels by severity (debug 3 < error 6); tracing's filters must
        // agree: each step up hides at least the levels below it.
        for pair in LogLevel::ALL[1..].windows(2) {
            assert!(filter_for(pair[0]) > filter_for(pair[1]), "{pair:?}");
        }
        assert!(LevelFilter::OFF < filter_for(LogLevel::Error));
    }

    #[test]
    fn levels_map_to_syslog_priorities() {
        assert_eq!(syslog_priority(&Level::ERROR), 3);
        assert_eq!(syslog_priority(&Level::WARN), 4);
        assert_eq!(syslog_priority(&Level::INFO), 6);
        assert_eq!(syslog_priority(&Level::DEBUG), 7);
        assert_eq!(syslog_priority(&Level::TRACE), 7);
    }

    #[test]
    fn journal_stream_selects_the_journal_style() {
        assert_eq!(style_for(Some("8:12345"), true), Style::Journal);
        assert_eq!(style_for(Some("8:12345"), false), Style::Journal);
        assert_eq!(style_for(None, true), Style::Readable { ansi: true });
        assert_eq!(style_for(None, false), Style::Readable { ansi: false });
        assert_eq!(style_for(Some(""), false), Style::Readable { ansi: false });
    }

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The journal formatter and a reload filter, on a thread-local subscriber.
    #[test]
    fn journal_lines_carry_the_priority_and_follow_level_changes() {
        let buf = Buffer::default();
        let writer = buf.clone();
        let (filter, handle) = reload::Layer::new(filter_for(LogLevel::Info));
        let layer = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .event_format(JournalFormat)
            .with_writer(move || writer.clone());
        let subscriber = Registry::default().with(filter).with(layer);
        let control = LogControl {
            level: Arc::new(Mutex::new(LogLevel::Info)),
            reload: Some(handle),
        };
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!(target: "imlink::t", code = 9508, "lost");
            tracing::warn!(target: "imlink::t", "w");
            tracing::info!(target: "imlink::t", "two\nlines");
            tracing::debug!(target: "imlink::t", "hidden at info");
            control.set_level(LogLevel::Debug).unwrap();
            tracing::debug!(target: "imlink::t", "shown at debug");
            control.set_level(LogLevel::None).unwrap();
            tracing::error!(target: "imlink::t", "hidden at none");
        });
        assert_eq!(control.level(), LogLevel::None);
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            out,
            "<3>imlink::t: lost code=9508\n<4>imlink::t: w\n<6>imlink::t: two\n<6>lines\n<7>imlink::t: shown at debug\n"
        );
    }

    #[test]
    fn a_detached_control_remembers_the_level() {
        let c = LogControl::detached(LogLevel::Warn);
        let clone = c.clone();
        assert_eq!(c.level(), LogLevel::Warn);
        clone.set_level(LogLevel::Debug).unwrap();
        assert_eq!(c.level(), LogLevel::Debug);
    }
}
