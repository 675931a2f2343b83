//! The configuration of `imlinkd` (DESIGN §4): defaults → file → `IMLINK_*` environment →
//! flags, into one typed struct.
//!
//! The struct is the schema (`schema.rs`): each key is a field, its default is in the
//! section's `Default`, its range check is the field's `deserialize_with` function
//! (`valid.rs`, bounds in [`limits`]), and the list of keys is read off the struct
//! ([`keys()`]). [`load`] reads each source into a tree of values as written, with their
//! origins (`sources.rs`), and deserialises the struct from it (`de.rs`): a TOML value is
//! handed to its field as it is, text from the environment or a flag is read as the type
//! the field asks for. Every source is deserialised on its own first, so a bad value is
//! reported even where a later source overrides it; then the merge is, and the rules
//! between keys are checked (`rules.rs`). An error names the key, the value as written
//! (made safe to print, see [`printable`]) and where it was written (file path, variable,
//! flag); an unknown key gets the closest known key as a suggestion. [`Loaded::to_toml`]
//! renders the effective configuration from the struct with the origin of every value,
//! for `imlinkd --check-config`.
//!
//! Files are read only if they are regular files, and only up to a limit
//! ([`read_regular_file`]), so `--config /dev/zero` or a FIFO is an error, not a hang.
//!
//! The environment is passed in as an [`Env`] snapshot, so loading is testable without
//! touching the process environment, and a SIGHUP reload ([`reloader`]) reads the same
//! variables the daemon started with.

mod args;
mod de;
mod env;
mod error;
mod file;
mod keys;
pub mod limits;
mod paths;
mod render;
mod rules;
mod schema;
mod sources;
mod valid;

#[cfg(test)]
mod tests;

pub use args::{DaemonArgs, Overrides};
pub use env::Env;
pub use error::{printable, ConfigError, Origin};
pub use file::{read_regular_file, read_secret_file};
pub use keys::{env_var_for, keys};
pub use paths::{
    bridge_dir_for_exe, default_bridge_dir, default_socket_path, default_socket_path_in,
    default_state_dir, default_state_dir_in, BRIDGE_DIR_FROM_BINDIR, DEFAULT_CONFIG_PATH,
    MAX_SOCKET_PATH_BYTES,
};
pub use schema::{
    ApiConfig, AuthConfig, AuthProvider, Backend, Config, EventsConfig, ReconnectConfig, SdkConfig,
    ServerConfig, StateConfig, TencentConfig,
};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The effective configuration and where each value came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// The configuration.
    pub config: Config,
    /// The file that was read, if any.
    pub file: Option<PathBuf>,
    /// The source of every key (`Origin::Default` when nothing set it).
    pub origins: BTreeMap<&'static str, Origin>,
}

impl Loaded {
    /// Where `key` (dotted) got its value.
    pub fn origin(&self, key: &str) -> &Origin {
        self.origins.get(key).unwrap_or(&Origin::Default)
    }
}

/// Loads the configuration: defaults → file → environment → flags (DESIGN §4).
///
/// The file is `o.config`, which must exist, else [`DEFAULT_CONFIG_PATH`] if it exists.
pub fn load(o: &Overrides, env: &Env) -> Result<Loaded, ConfigError> {
    load_with_default_path(o, env, Path::new(DEFAULT_CONFIG_PATH))
}

fn load_with_default_path(
    o: &Overrides,
    env: &Env,
    default_path: &Path,
) -> Result<Loaded, ConfigError> {
    let file = match &o.config {
        Some(p) => Some(p.clone()),
        // A missing default file is fine; one that exists but cannot be read is not.
        None => default_path.exists().then(|| default_path.to_path_buf()),
    };
    let mut layers = Vec::new();
    if let Some(path) = &file {
        layers.push(sources::file(path)?);
    }
    layers.push(sources::environment(env));
    layers.push(sources::flags(o)?);
    // Each source on its own: a bad value is an error even if a later source overrides it.
    for layer in &layers {
        de::config(layer)?;
    }
    let mut merged = sources::defaults(env)?;
    for layer in &layers {
        merged.overlay(layer);
    }
    let config = de::config(&merged)?;
    let origins = keys()
        .map(|k| (k, merged.origin(k).cloned().unwrap_or(Origin::Default)))
        .collect();
    let loaded = Loaded {
        config,
        file,
        origins,
    };
    rules::check(&loaded)?;
    Ok(loaded)
}

/// A SIGHUP reload: loads again from the same file, environment snapshot and flags.
/// The error is the [`ConfigError`] as text (it names key, value and source).
pub fn reloader(o: Overrides, env: Env) -> Arc<dyn Fn() -> Result<Config, String> + Send + Sync> {
    Arc::new(move || load(&o, &env).map(|l| l.config).map_err(|e| e.to_string()))
}
