//! Tracing set-up with the SDK's log levels, changeable at run time.
//!
//! (Stub: the full implementation — tracing-subscriber with a reload layer, actix's `log`
//! output bridged in, journal-friendly output — replaces this.)

use crate::codes::LogLevel;
use std::sync::{Arc, Mutex};

/// A handle that changes the log level of the running process.
#[derive(Clone)]
pub struct LogControl {
    level: Arc<Mutex<LogLevel>>,
}

impl LogControl {
    /// Sets the level (initSDK's `logLevel`, SIGHUP reload).
    pub fn set_level(&self, level: LogLevel) -> Result<(), String> {
        *self.level.lock().map_err(|e| e.to_string())? = level;
        Ok(())
    }

    /// The level in force.
    pub fn level(&self) -> LogLevel {
        self.level.lock().map(|l| *l).unwrap_or(LogLevel::Info)
    }
}

/// Installs the global subscriber at `level` and returns its control handle.
pub fn init(level: LogLevel) -> LogControl {
    LogControl {
        level: Arc::new(Mutex::new(level)),
    }
}
