//! The default paths: the configuration file, the API socket and the state directory,
//! which follow systemd's directories, then root's, then the user's XDG directories.

use std::path::PathBuf;

use super::env::Env;

/// The configuration file read when `--config` is not given; its absence is not an error.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/imlink/imlinkd.toml";

/// The longest Unix socket path Linux accepts (`sun_path` is 108 bytes with the NUL).
pub const MAX_SOCKET_PATH_BYTES: usize = 107;

/// systemd may pass several directories separated by `:`; the first is ours.
fn first_dir(v: &str) -> Option<PathBuf> {
    v.split(':')
        .next()
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
}

/// `$RUNTIME_DIRECTORY/imlinkd.sock`, else `/run/imlink/imlinkd.sock` as root, else
/// `$XDG_RUNTIME_DIR/imlink/imlinkd.sock` (else `/tmp/imlink-$UID/imlinkd.sock`).
pub fn default_socket_path() -> PathBuf {
    default_socket_path_in(&Env::from_process())
}

/// [`default_socket_path`] for the given environment snapshot.
pub fn default_socket_path_in(env: &Env) -> PathBuf {
    if let Some(d) = env.get("RUNTIME_DIRECTORY").and_then(first_dir) {
        return d.join("imlinkd.sock");
    }
    if env.uid() == 0 {
        return PathBuf::from("/run/imlink/imlinkd.sock");
    }
    if let Some(d) = env.get("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("imlink/imlinkd.sock");
    }
    PathBuf::from(format!("/tmp/imlink-{}/imlinkd.sock", env.uid()))
}

/// `$STATE_DIRECTORY`, else `/var/lib/imlink` as root, else `$XDG_STATE_HOME/imlink`
/// (else `~/.local/state/imlink`).
pub fn default_state_dir() -> PathBuf {
    default_state_dir_in(&Env::from_process())
}

/// [`default_state_dir`] for the given environment snapshot.
pub fn default_state_dir_in(env: &Env) -> PathBuf {
    if let Some(d) = env.get("STATE_DIRECTORY").and_then(first_dir) {
        return d;
    }
    if env.uid() == 0 {
        return PathBuf::from("/var/lib/imlink");
    }
    if let Some(d) = env.get("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("imlink");
    }
    let home = env.get("HOME").filter(|h| !h.is_empty()).unwrap_or("/tmp");
    PathBuf::from(home).join(".local/state/imlink")
}

/// Where `make install` puts the Tencent bridge, relative to the directory of `imlinkd`:
/// `$(BINDIR)/../lib/imlink/tencent-bridge`, i.e. `$(PREFIX)/lib/imlink/tencent-bridge`.
pub const BRIDGE_DIR_FROM_BINDIR: &str = "../lib/imlink/tencent-bridge";

/// The default of `tencent.bridge_dir`: [`BRIDGE_DIR_FROM_BINDIR`] from the directory of
/// the running executable (symbolic links resolved), so an installation under any
/// `PREFIX` finds its bridge; `/usr/local/lib/imlink/tencent-bridge` if that directory
/// cannot be known.
pub fn default_bridge_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| bridge_dir_for_exe(&exe))
        .unwrap_or_else(|| PathBuf::from("/usr/local/lib/imlink/tencent-bridge"))
}

/// [`BRIDGE_DIR_FROM_BINDIR`] for an executable at `exe`, without the `..`
/// (`/usr/bin/imlinkd` → `/usr/lib/imlink/tencent-bridge`).
pub fn bridge_dir_for_exe(exe: &std::path::Path) -> Option<PathBuf> {
    Some(exe.parent()?.parent()?.join("lib/imlink/tencent-bridge"))
}
