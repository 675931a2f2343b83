//! The API socket on disk: binding it with its mode from the start, replacing only a stale
//! socket, and removing only the socket this process created.
//!
//! [`bind`] works in four steps:
//!
//! 1. The socket's directory is created if missing (see [`dir_mode_for`]), resolved, and
//!    checked with [`crate::fsck::check_daemon_dir`]: owned by this user or root, not
//!    writable by group or others unless sticky.
//! 2. What sits at the path is examined without following links: nothing; a socket that
//!    refuses connections (stale: replaced); a socket that accepts them, or whose backlog
//!    is full (another daemon: refused); anything else (a regular file, a directory, a
//!    link…: refused and left alone, the error names the path and what is there).
//! 3. The socket is bound in a fresh private directory (mode 0700, random name, created
//!    next to the target with `mkdir`, which fails if the name exists) and given its mode
//!    there, where no other user can reach it. There is no moment when the socket has
//!    another mode at the final path, and no `chmod` through a path someone else could
//!    swap.
//! 4. It is moved into place: `link` when the path was free (fails rather than replace a
//!    socket that appeared meanwhile), `rename` over a stale socket. The private
//!    directory is removed (a process killed in between leaves it behind: a `.XXXXXXXX`
//!    directory of mode 0700 holding nothing but a second name of the socket).
//!
//! The bound socket remembers its (device, inode). When the [`BoundSocket`] is dropped it
//! unlinks the path only if it still holds that inode: a daemon that was replaced on the
//! same path (a second one started after the first one's socket was declared stale)
//! leaves the newcomer's socket alone.
//!
//! [`adopt`] wraps a socket passed by systemd (socket activation); that one belongs to
//! systemd and is never unlinked.

use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use tokio::net::UnixListener;

use crate::fsck;

/// The bound socket. Dropping it unlinks the path if the path still holds the socket this
/// process created (same device and inode); an adopted socket is never unlinked.
pub struct BoundSocket {
    /// The listener.
    pub listener: UnixListener,
    path: PathBuf,
    /// (device, inode) of the socket this process created; None for an adopted one.
    created: Option<(u64, u64)>,
}

impl BoundSocket {
    /// The path clients connect to (for a bound socket, with its directory resolved).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl std::fmt::Debug for BoundSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundSocket")
            .field("path", &self.path)
            .field("created", &self.created)
            .finish()
    }
}

impl Drop for BoundSocket {
    fn drop(&mut self) {
        let Some((dev, ino)) = self.created else {
            return;
        };
        match std::fs::symlink_metadata(&self.path) {
            Ok(m) if m.file_type().is_socket() && m.dev() == dev && m.ino() == ino => {
                if let Err(e) = std::fs::remove_file(&self.path) {
                    tracing::warn!("cannot remove the socket {}: {e}", self.path.display());
                }
            }
            Ok(_) => tracing::info!(
                "not removing {}: it is no longer the socket this imlinkd created",
                self.path.display()
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("cannot examine {}: {e}", self.path.display()),
        }
    }
}

/// The mode of a socket directory that [`bind`] has to create: `0700`, plus search (`x`)
/// and read for the group and for others when `socket_mode` lets them connect at all. The
/// directory never gets write bits beyond its owner; who may connect is then decided by
/// `socket_mode` and the `api.allow_*` lists, not by the directory.
pub fn dir_mode_for(socket_mode: u32) -> u32 {
    let mut mode = 0o700;
    if socket_mode & 0o070 != 0 {
        mode |= 0o050;
    }
    if socket_mode & 0o007 != 0 {
        mode |= 0o005;
    }
    mode
}

/// What is at the socket path now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Occupant {
    /// Nothing.
    Vacant,
    /// A socket nobody accepts on.
    Stale,
}

/// Examines the path without following links: `Ok` for nothing or a stale socket, an
/// error naming the path for anything else.
fn occupant(path: &Path, shown: &Path) -> Result<Occupant, String> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Occupant::Vacant),
        Err(e) => return Err(format!("cannot examine {}: {e}", shown.display())),
    };
    if !meta.file_type().is_socket() {
        return Err(format!(
            "{} exists and is {}, not a socket: imlinkd does not remove it \
             (delete it yourself, or choose another api.socket)",
            shown.display(),
            fsck::kind_of(meta.file_type())
        ));
    }
    // A non-blocking connect: a listener with a full backlog answers EAGAIN at once
    // instead of making us wait for it.
    let probe =
        socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None).and_then(|s| {
            s.set_nonblocking(true)?;
            let addr = socket2::SockAddr::unix(path)?;
            s.connect(&addr)
        });
    match probe {
        Ok(()) => Err(in_use(shown)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(in_use(shown)),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Ok(Occupant::Stale),
        Err(e) => Err(format!(
            "{} is a socket imlinkd cannot probe ({e}); not replacing it \
             (delete it yourself, or choose another api.socket)",
            shown.display()
        )),
    }
}

fn in_use(shown: &Path) -> String {
    format!(
        "{} is in use: another imlinkd answers on it (stop it, or choose another api.socket)",
        shown.display()
    )
}

/// Creates the socket's directory (and missing parents) with [`dir_mode_for`]`(mode)`
/// when it does not exist; an existing one is left as it is (and checked by the caller).
fn ensure_dir(dir: &Path, mode: u32) -> Result<(), String> {
    match std::fs::symlink_metadata(dir) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(dir_mode_for(mode))
            .create(dir)
            .map_err(|e| format!("cannot create the socket directory {}: {e}", dir.display())),
        Err(e) => Err(format!("socket directory {}: {e}", dir.display())),
    }
}

/// A private directory next to the socket, removed (with what is left in it) on drop.
struct Private {
    dir: PathBuf,
}

impl Private {
    fn create(parent: &Path) -> io::Result<Private> {
        let mut last = None;
        for _ in 0..8 {
            let dir = parent.join(format!(".{:08x}", fastrand::u32(..)));
            // Not recursive: fails with EEXIST rather than reuse a name someone made.
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => return Ok(Private { dir }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no free name")))
    }
}

impl Drop for Private {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.dir.join("s"));
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// A listening socket bound inside a fresh private directory of `parent`, already given
/// `mode`; returns it with the directory guard and the socket's path. Nothing appears at
/// any public path.
fn bind_private(
    parent: &Path,
    mode: u32,
) -> Result<(std::os::unix::net::UnixListener, Private, PathBuf), String> {
    let private = Private::create(parent).map_err(|e| {
        format!(
            "cannot create a private directory in {} to bind the socket: {e}",
            parent.display()
        )
    })?;
    let tmp = private.dir.join("s");
    let listener = std::os::unix::net::UnixListener::bind(&tmp)
        .map_err(|e| format!("cannot bind a socket in {}: {e}", parent.display()))?;
    // Only this user can reach the private directory, so the path is the socket just bound.
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode & 0o7777))
        .map_err(|e| format!("cannot set the mode of the new socket: {e}"))?;
    Ok((listener, private, tmp))
}

/// Binds the API socket at `path` with `mode` (see the module documentation): refuses when
/// another daemon answers on it or when something other than a socket is there, replaces
/// a stale socket, and refuses a directory that another user controls.
pub fn bind(path: &Path, mode: u32) -> Result<BoundSocket, String> {
    let uid = fsck::effective_uid();
    let (listener, target, created) = bind_std(path, mode, uid)?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let listener = UnixListener::from_std(listener)
        .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
    Ok(BoundSocket {
        listener,
        path: target,
        created: Some(created),
    })
}

type Bound = (std::os::unix::net::UnixListener, PathBuf, (u64, u64));

/// [`bind`] without the tokio registration (the listener is blocking).
fn bind_std(path: &Path, mode: u32, uid: u32) -> Result<Bound, String> {
    let name = path
        .file_name()
        .ok_or_else(|| format!("api.socket {} does not name a file", path.display()))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    ensure_dir(dir, mode)?;
    let real_dir = std::fs::canonicalize(dir)
        .map_err(|e| format!("socket directory {}: {e}", dir.display()))?;
    fsck::check_daemon_dir(&real_dir, uid, "socket directory").map_err(|e| {
        if real_dir == dir {
            e
        } else {
            format!("{e} (the real path of {})", dir.display())
        }
    })?;
    let target = real_dir.join(name);
    let (listener, private, tmp) = bind_private(&real_dir, mode)?;
    let meta = std::fs::symlink_metadata(&tmp)
        .map_err(|e| format!("cannot examine the new socket: {e}"))?;
    let created = (meta.dev(), meta.ino());
    // A socket may appear between the look and the link; look again then (a few times).
    let mut placed = false;
    for _ in 0..3 {
        match occupant(&target, path)? {
            Occupant::Vacant => match std::fs::hard_link(&tmp, &target) {
                Ok(()) => {
                    placed = true;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(format!("cannot listen on {}: {e}", path.display())),
            },
            Occupant::Stale => {
                tracing::info!("replacing the stale socket {}", path.display());
                std::fs::rename(&tmp, &target).map_err(|e| {
                    format!("cannot replace the stale socket {}: {e}", path.display())
                })?;
                placed = true;
                break;
            }
        }
    }
    drop(private);
    if !placed {
        return Err(format!(
            "cannot listen on {}: other sockets keep appearing there",
            path.display()
        ));
    }
    // What the path holds now must be ours (another daemon may have raced us).
    match std::fs::symlink_metadata(&target) {
        Ok(m) if (m.dev(), m.ino()) == created => {}
        _ => {
            return Err(format!(
                "{} was replaced while imlinkd was binding it; another imlinkd may be starting",
                path.display()
            ))
        }
    }
    Ok((listener, target, created))
}

/// Wraps an already listening socket (socket activation); it is not unlinked on exit.
pub fn adopt(listener: UnixListener, path: PathBuf) -> BoundSocket {
    BoundSocket {
        listener,
        path,
        created: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    fn mode_of(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    fn private_dir() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        d
    }

    #[test]
    fn the_private_bind_gives_the_mode_before_anything_is_public() {
        let dir = private_dir();
        let (listener, private, tmp) = bind_private(dir.path(), 0o640).unwrap();
        // The socket exists only inside a 0700 directory, already with its mode.
        assert_eq!(mode_of(&private.dir), 0o700);
        assert_eq!(mode_of(&tmp), 0o640);
        let public: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(public.len(), 1, "only the private directory: {public:?}");
        drop(private);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        drop(listener);
    }

    #[test]
    fn bind_places_the_socket_with_its_mode_and_leaves_nothing_else() {
        let dir = private_dir();
        let path = dir.path().join("api.sock");
        let uid = fsck::effective_uid();
        let (listener, target, created) = bind_std(&path, 0o600, uid).unwrap();
        assert_eq!(
            target,
            std::fs::canonicalize(dir.path()).unwrap().join("api.sock")
        );
        assert_eq!(mode_of(&path), 0o600);
        let m = std::fs::symlink_metadata(&path).unwrap();
        assert_eq!((m.dev(), m.ino()), created);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        // It is the listener: a connection arrives on it.
        let _c = UnixStream::connect(&path).unwrap();
        listener.accept().unwrap();
    }

    #[test]
    fn only_a_stale_socket_is_replaced() {
        let dir = private_dir();
        let path = dir.path().join("api.sock");
        let uid = fsck::effective_uid();
        // A regular file: refused, named, untouched.
        std::fs::write(&path, b"keep me").unwrap();
        let e = bind_std(&path, 0o600, uid).unwrap_err();
        assert!(
            e.contains(&path.display().to_string()) && e.contains("regular file"),
            "{e}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"keep me");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no leftovers"
        );
        std::fs::remove_file(&path).unwrap();
        // A live socket: refused.
        let live = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let e = bind_std(&path, 0o600, uid).unwrap_err();
        assert!(e.contains("another imlinkd"), "{e}");
        // The same socket once closed: stale, replaced.
        drop(live);
        let old = std::fs::symlink_metadata(&path).unwrap().ino();
        let (_l, _, created) = bind_std(&path, 0o600, uid).unwrap();
        assert_ne!(created.1, old);
        assert_eq!(std::fs::symlink_metadata(&path).unwrap().ino(), created.1);
    }

    #[test]
    fn a_missing_directory_is_created_without_write_bits_for_others() {
        assert_eq!(dir_mode_for(0o600), 0o700);
        assert_eq!(dir_mode_for(0o660), 0o750);
        assert_eq!(dir_mode_for(0o666), 0o755);
        let dir = private_dir();
        let path = dir.path().join("a").join("b").join("api.sock");
        let (_l, _, _) = bind_std(&path, 0o660, fsck::effective_uid()).unwrap();
        assert_eq!(mode_of(&dir.path().join("a")), 0o750);
        assert_eq!(mode_of(&dir.path().join("a/b")), 0o750);
    }

    #[actix_rt::test]
    async fn dropping_removes_only_our_own_socket() {
        let dir = private_dir();
        let path = dir.path().join("api.sock");
        let first = bind(&path, 0o600).unwrap();
        assert_eq!(first.path(), std::fs::canonicalize(&path).unwrap());
        // Someone replaces it (as a second daemon does after a stale check).
        std::fs::remove_file(&path).unwrap();
        let second = std::os::unix::net::UnixListener::bind(&path).unwrap();
        drop(first);
        assert!(path.exists(), "the newcomer's socket must stay");
        drop(second);
        std::fs::remove_file(&path).unwrap();
        let third = bind(&path, 0o600).unwrap();
        drop(third);
        assert!(!path.exists(), "our own socket is removed");
    }
}
