//! The allowed range of every bounded key, and the size limits of the files the
//! configuration reads. docs/configuration.md and etc/imlinkd.toml state the same numbers.

/// Largest SDKAppID (they are 32-bit).
pub const MAX_APP_ID: u64 = u32::MAX as u64;

/// Largest `sdk.usersig_expiring_lead_secs`: 365 days.
pub const MAX_EXPIRING_LEAD_SECS: u64 = 365 * 24 * 3600;

/// Largest timeout, interval or period in milliseconds (`server.*_ms`,
/// `reconnect.stable_ms`): 24 h.
pub const MAX_TIMEOUT_MS: u64 = 24 * 3600 * 1000;

/// Largest backoff delay (`reconnect.initial_ms`, `reconnect.max_ms`): 1 h.
pub const MAX_BACKOFF_MS: u64 = 3600 * 1000;

/// Allowed `reconnect.multiplier`: from 1 to this.
pub const MAX_MULTIPLIER: f64 = 10.0;

/// Smallest `api.max_line_bytes`: a JSON-RPC request must fit.
pub const MIN_LINE_BYTES: usize = 1024;

/// Largest `api.max_line_bytes`: 64 MiB.
pub const MAX_LINE_BYTES: usize = 64 << 20;

/// Largest `api.max_clients`.
pub const MAX_CLIENTS: usize = 1_000_000;

/// Largest `api.subscriber_queue`.
pub const MAX_SUBSCRIBER_QUEUE: usize = 1 << 20;

/// Largest `events.history`.
pub const MAX_HISTORY: usize = 1_000_000;

/// Most ids in one of the `api.*_uids` / `api.*_gids` lists.
pub const MAX_IDS: usize = 4096;

/// Largest configuration file read: 1 MiB.
pub const MAX_CONFIG_FILE_BYTES: u64 = 1 << 20;

/// Largest `server.ca_file` read: 1 MiB (a whole public CA bundle is about 220 KiB).
pub const MAX_CA_FILE_BYTES: u64 = 1 << 20;

/// Longest `tencent.proxy_server` in bytes (the bridge takes at most about 2 KiB).
pub const MAX_PROXY_SERVER_BYTES: usize = 2000;

/// Largest `auth.key_file` or `auth.bearer_token_file` read: 4 KiB.
pub const MAX_SECRET_FILE_BYTES: u64 = 4096;

/// Most words in `auth.command` (the program and its arguments).
pub const MAX_COMMAND_WORDS: usize = 64;

/// Longest word of `auth.command`, in bytes.
pub const MAX_COMMAND_WORD_BYTES: usize = 4096;

/// Longest `auth.url`, in bytes.
pub const MAX_AUTH_URL_BYTES: usize = 2000;

/// Allowed `auth.ticket_lifetime_secs`: 60 s to 100 years.
pub const MIN_TICKET_LIFETIME_SECS: u64 = 60;
/// See [`MIN_TICKET_LIFETIME_SECS`].
pub const MAX_TICKET_LIFETIME_SECS: u64 = 100 * 365 * 24 * 3600;
