//! `auth.provider = "key_file"`: the daemon signs its own tickets with the app's secret key
//! (`auth.key_file`, read at every signing so that a replaced key applies at once; it must
//! stay private to the daemon's user, see [`crate::config::read_secret_file`]).

use std::path::PathBuf;

use super::{provider_failed, Output};
use crate::config::limits::MAX_SECRET_FILE_BYTES;
use crate::config::AuthConfig;
use crate::core::session::Fail;

/// The `key_file` provider.
pub struct KeySigner {
    path: Option<PathBuf>,
    lifetime: i64,
}

impl KeySigner {
    /// The signer of `cfg`.
    pub fn new(cfg: &AuthConfig) -> KeySigner {
        KeySigner {
            path: cfg.key_file.clone(),
            lifetime: i64::try_from(cfg.ticket_lifetime_secs).unwrap_or(i64::MAX),
        }
    }

    /// A ticket for `user` on `app_id`, issued at `now`, valid `auth.ticket_lifetime_secs`.
    pub fn sign(&self, app_id: u64, user: &str, now: i64) -> Result<Output, Fail> {
        let Some(path) = &self.path else {
            return Err(provider_failed("auth.key_file is not set"));
        };
        let key = crate::config::read_secret_file(path, MAX_SECRET_FILE_BYTES)
            .map_err(|e| provider_failed(format!("auth.key_file {}: {e}", path.display())))?;
        let sig = crate::usersig::generate(app_id, &key, user, self.lifetime, now.max(0));
        Ok(Output {
            sig,
            expire_at: None,
        })
    }
}
