//! Binding the API socket: refuse when another daemon answers on the path, remove a stale
//! socket, set the mode; unlink it again on exit.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use tokio::net::UnixListener;

/// The bound socket, unlinked on drop.
pub struct BoundSocket {
    /// The listener.
    pub listener: UnixListener,
    path: PathBuf,
    owned: bool,
}

impl Drop for BoundSocket {
    fn drop(&mut self) {
        if self.owned {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Binds the API socket: refuses when another daemon answers on it, removes a stale one,
/// sets its mode.
pub fn bind(path: &Path, mode: u32) -> Result<BoundSocket, String> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() && !dir.exists() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
        }
    }
    if path.exists() {
        match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => {
                return Err(format!(
                    "{} is in use: another imlinkd answers on it (stop it, or choose another api.socket)",
                    path.display()
                ))
            }
            Err(_) => {
                tracing::info!("removing stale socket {}", path.display());
                std::fs::remove_file(path).map_err(|e| format!("cannot remove stale {}: {e}", path.display()))?;
            }
        }
    }
    let listener = UnixListener::bind(path)
        .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot set the mode of {}: {e}", path.display()))?;
    Ok(BoundSocket {
        listener,
        path: path.to_owned(),
        owned: true,
    })
}

/// Wraps an already listening socket (socket activation); it is not unlinked on exit.
pub fn adopt(listener: UnixListener, path: PathBuf) -> BoundSocket {
    BoundSocket {
        listener,
        path,
        owned: false,
    }
}
