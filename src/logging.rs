//! Tracing set-up with the SDK log levels.
