//! Ownership and mode checks of the directories imlink trusts: the API socket's directory
//! (both sides: `imlinkd` binding it, `imlinkctl` connecting to it) and the state directory.
//!
//! Whoever can write to a directory can put a file of their choosing at any name in it,
//! or swap one name for another between two system calls. So a directory that holds the
//! socket or the session file must be writable only by the user who runs imlink or by
//! root; a directory that anyone may write (`/tmp`) is acceptable only with the sticky
//! bit, which keeps others from renaming or removing entries they do not own.
//!
//! The rules (see "Security" in `docs/architecture.md`):
//!
//! - [`check_daemon_dir`] (the daemon's socket and state directories): a directory owned
//!   by the effective uid or root, not writable by group or others unless it has the
//!   sticky bit.
//! - [`check_client_socket`] (`imlinkctl`): the same for the socket's directory, with two
//!   additions. A directory owned by another user (the daemon's, e.g. `/run/imlink` that
//!   systemd hands to `User=imlink`) is accepted when its own parent is owned by the
//!   caller or root and writable by nobody else: only an administrator can have made it.
//!   In a shared sticky directory the socket itself must belong to the caller or root.
//!
//! Only the directory that holds the file and, for the client, its parent are checked;
//! symbolic links in the path are resolved first and the checks apply to the real
//! directory, which is then used for the operation itself.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Group- or other-writable permission bits.
const WRITABLE_BY_OTHERS: u32 = 0o022;
/// The sticky bit (`S_ISVTX`).
const STICKY: u32 = 0o1000;

/// The effective uid of this process: the owner of `/proc/self` (needs no unsafe libc
/// call). `u32::MAX` when `/proc` is not mounted, which no directory is owned by, so every
/// check then fails closed unless the directory belongs to root.
pub fn effective_uid() -> u32 {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX)
}

fn trusted_owner(owner: u32, uid: u32) -> bool {
    owner == uid || owner == 0
}

/// The permission bits as four octal digits, for messages.
pub fn mode_text(mode: u32) -> String {
    format!("{:04o}", mode & 0o7777)
}

/// Whether `mode` lets group or others write and lacks the sticky bit.
fn open_to_others(mode: u32) -> bool {
    mode & WRITABLE_BY_OTHERS != 0 && mode & STICKY == 0
}

/// A one-word description of a file type, for messages.
pub fn kind_of(ft: std::fs::FileType) -> &'static str {
    if ft.is_dir() {
        "a directory"
    } else if ft.is_file() {
        "a regular file"
    } else if ft.is_symlink() {
        "a symbolic link"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else {
        "an unknown kind of file"
    }
}

/// Checks a directory the daemon keeps a file in (`what` names it in messages, e.g.
/// "socket directory"): it must be a directory owned by `uid` or root, and not writable
/// by group or others unless it has the sticky bit. Follows symbolic links; call it on the
/// resolved path when the result is used for later operations.
pub fn check_daemon_dir(dir: &Path, uid: u32, what: &str) -> Result<(), String> {
    let meta = std::fs::metadata(dir).map_err(|e| format!("{what} {}: {e}", dir.display()))?;
    if !meta.is_dir() {
        return Err(format!(
            "{what} {} is {}, not a directory",
            dir.display(),
            kind_of(meta.file_type())
        ));
    }
    if !trusted_owner(meta.uid(), uid) {
        return Err(format!(
            "{what} {} belongs to uid {}, not to uid {uid} (this process) or root: refusing it, \
             its owner could replace what imlinkd keeps there (remove it, or choose another directory)",
            dir.display(),
            meta.uid()
        ));
    }
    if open_to_others(meta.mode()) {
        return Err(format!(
            "{what} {} has mode {}: writable by group or others without the sticky bit, \
             so another user could replace what imlinkd keeps there (chmod go-w it)",
            dir.display(),
            mode_text(meta.mode())
        ));
    }
    Ok(())
}

/// Resolves the directory of `path` (symbolic links included) and returns it with the
/// file name; the error says what is wrong with `path` itself.
pub fn split_real(path: &Path) -> io::Result<(PathBuf, std::ffi::OsString)> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "the path does not name a file")
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    Ok((std::fs::canonicalize(dir)?, name.to_owned()))
}

/// Why `imlinkctl` must not connect to a socket path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientRefusal {
    /// The directory (or the socket) cannot be examined; probably nothing runs there.
    Unreachable(String),
    /// Someone other than the caller, root or an administrator-made directory controls
    /// the path: connecting could hand a request (and its ticket) to them.
    Untrusted(String),
}

/// Checks the socket path `path` before `imlinkctl` (running as `uid`) connects to it, and
/// returns the path to connect to (its directory resolved).
///
/// Accepted: a directory owned by `uid` or root and not writable by group or others; a
/// directory owned by another user whose parent is owned by `uid` or root and writable by
/// nobody else (an administrator made it, like systemd's `RuntimeDirectory=`); a sticky
/// directory owned by `uid` or root in which the socket itself belongs to `uid` or root.
/// Everything else is refused.
pub fn check_client_socket(path: &Path, uid: u32) -> Result<PathBuf, ClientRefusal> {
    let (dir, name) = split_real(path).map_err(|e| {
        ClientRefusal::Unreachable(format!("cannot reach imlinkd at {}: {e}", path.display()))
    })?;
    let meta = std::fs::metadata(&dir).map_err(|e| {
        ClientRefusal::Unreachable(format!("cannot reach imlinkd at {}: {e}", path.display()))
    })?;
    let target = dir.join(&name);
    let refuse = |why: String| {
        ClientRefusal::Untrusted(format!(
            "refusing to use the socket {}: {why}",
            path.display()
        ))
    };
    let owner = meta.uid();
    if open_to_others(meta.mode()) {
        return Err(refuse(format!(
            "its directory {} has mode {} (writable by group or others), so anyone could have put \
             a socket there",
            dir.display(),
            mode_text(meta.mode())
        )));
    }
    if meta.mode() & WRITABLE_BY_OTHERS != 0 {
        // Shared and sticky (like /tmp): the socket's own owner is what counts.
        if !trusted_owner(owner, uid) {
            return Err(refuse(format!(
                "its directory {} is writable by others and belongs to uid {owner}",
                dir.display()
            )));
        }
        return match std::fs::symlink_metadata(&target) {
            Ok(m) if trusted_owner(m.uid(), uid) => Ok(target),
            Ok(m) => Err(refuse(format!(
                "it belongs to uid {} (not to uid {uid} or root) in {}, a directory anyone can write",
                m.uid(),
                dir.display()
            ))),
            Err(e) => Err(ClientRefusal::Unreachable(format!(
                "cannot reach imlinkd at {}: {e}",
                path.display()
            ))),
        };
    }
    if trusted_owner(owner, uid) {
        return Ok(target);
    }
    // Another user's directory: fine if only an administrator could have created it.
    let parent = dir.parent().unwrap_or(Path::new("/"));
    match std::fs::metadata(parent) {
        Ok(p) if trusted_owner(p.uid(), uid) && p.mode() & WRITABLE_BY_OTHERS == 0 => Ok(target),
        Ok(p) => Err(refuse(format!(
            "its directory {} belongs to uid {owner} (not to uid {uid} or root) and was made in {} \
             (owner uid {}, mode {}), where another user can create directories: \
             someone else may be listening there",
            dir.display(),
            parent.display(),
            p.uid(),
            mode_text(p.mode())
        ))),
        Err(e) => Err(refuse(format!(
            "its directory {} belongs to uid {owner} and its parent {} cannot be examined: {e}",
            dir.display(),
            parent.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn the_effective_uid_is_the_owner_of_proc_self() {
        let uid = effective_uid();
        assert_ne!(uid, u32::MAX);
        // A file this process creates belongs to it.
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(std::fs::metadata(dir.path()).unwrap().uid(), uid);
    }

    #[test]
    fn daemon_directories_must_be_private_or_sticky() {
        let uid = effective_uid();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        chmod(d, 0o700);
        assert!(check_daemon_dir(d, uid, "state directory").is_ok());
        chmod(d, 0o755);
        assert!(check_daemon_dir(d, uid, "state directory").is_ok());
        chmod(d, 0o777);
        let e = check_daemon_dir(d, uid, "state directory").unwrap_err();
        assert!(
            e.contains(&d.display().to_string()) && e.contains("0777"),
            "{e}"
        );
        chmod(d, 0o770);
        assert!(check_daemon_dir(d, uid, "state directory").is_err());
        chmod(d, 0o1777);
        assert!(check_daemon_dir(d, uid, "state directory").is_ok());
        // Owned by someone else (as seen by a process of another uid).
        let other = uid.wrapping_add(1).max(1);
        chmod(d, 0o700);
        if uid != 0 {
            // Our directory is "another user's" for that uid; root's would not be.
            let e = check_daemon_dir(d, other, "socket directory").unwrap_err();
            assert!(e.contains("belongs to uid"), "{e}");
        }
        let f = d.join("f");
        std::fs::write(&f, b"").unwrap();
        let e = check_daemon_dir(&f, uid, "socket directory").unwrap_err();
        assert!(e.contains("a regular file"), "{e}");
    }

    #[test]
    fn the_client_refuses_directories_others_can_write() {
        let uid = effective_uid();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let sock = d.join("imlinkd.sock");
        chmod(d, 0o755);
        assert_eq!(
            check_client_socket(&sock, uid).unwrap(),
            std::fs::canonicalize(d).unwrap().join("imlinkd.sock")
        );
        chmod(d, 0o777);
        match check_client_socket(&sock, uid) {
            Err(ClientRefusal::Untrusted(m)) => {
                assert!(m.contains(&sock.display().to_string()), "{m}")
            }
            other => panic!("{other:?}"),
        }
        // Sticky: the socket's owner decides; no socket means nothing to reach.
        chmod(d, 0o1777);
        assert!(matches!(
            check_client_socket(&sock, uid),
            Err(ClientRefusal::Unreachable(_))
        ));
        let missing = d.join("nope").join("imlinkd.sock");
        assert!(matches!(
            check_client_socket(&missing, uid),
            Err(ClientRefusal::Unreachable(_))
        ));
    }
}
