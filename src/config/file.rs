//! Reading a file the configuration names (the configuration file, `server.ca_file`):
//! only a regular file, only up to a size limit, and never stuck on a FIFO.

use std::fs::{Metadata, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Reads `path`, which must be a regular file (a symbolic link to one is fine) of at most
/// `max_bytes` bytes.
///
/// A directory, FIFO, socket or device is refused: it is looked at before it is opened
/// (opening a device can do something by itself), opened non-blocking (so that a FIFO put
/// there in the meantime cannot hold up the open), and looked at again once open. Nothing
/// past `max_bytes` is read, even if the file grows.
pub fn read_regular_file(path: &Path, max_bytes: u64) -> io::Result<Vec<u8>> {
    regular(&std::fs::metadata(path)?)?;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let meta = file.metadata()?;
    regular(&meta)?;
    if meta.len() > max_bytes {
        return Err(too_large(max_bytes));
    }
    let mut bytes = Vec::new();
    (&file)
        .take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max_bytes {
        return Err(too_large(max_bytes));
    }
    Ok(bytes)
}

/// Reads a file that holds a secret (`auth.key_file`, `auth.bearer_token_file`): a regular
/// file of at most `max_bytes` bytes (as [`read_regular_file`]), owned by this process's
/// effective user or root, with no permission bits for group or others, holding one line
/// of UTF-8 text without control characters (one trailing newline is ignored). Errors
/// never quote the content.
pub fn read_secret_file(path: &Path, max_bytes: u64) -> io::Result<String> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::metadata(path)?;
    regular(&meta)?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "its mode is {mode:04o}: a secret must not be readable or writable by group or others (chmod 600)"
            ),
        ));
    }
    let uid = crate::fsck::effective_uid();
    if meta.uid() != uid && meta.uid() != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "it belongs to uid {}, not to uid {uid} (this process) or root",
                meta.uid()
            ),
        ));
    }
    let bytes = read_regular_file(path, max_bytes)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "it is not UTF-8 text"))?;
    let text = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(&text);
    if text.is_empty() {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "it is empty"));
    }
    if text.chars().any(char::is_control) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "it holds control characters (more than one line?)",
        ));
    }
    Ok(text.to_owned())
}

fn regular(meta: &Metadata) -> io::Result<()> {
    let t = meta.file_type();
    let what = if t.is_file() {
        return Ok(());
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else {
        "something else"
    };
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("not a regular file but {what}"),
    ))
}

fn too_large(max_bytes: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("larger than {max_bytes} bytes"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_regular_file_and_a_link_to_one() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"abc").unwrap();
        assert_eq!(read_regular_file(&f, 3).unwrap(), b"abc");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&f, &link).unwrap();
        assert_eq!(read_regular_file(&link, 10).unwrap(), b"abc");
    }

    #[test]
    fn secret_files_must_be_private_and_one_line() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("key");
        std::fs::write(&f, b"s3cret-key\n").unwrap();
        for (mode, ok) in [
            (0o600, true),
            (0o400, true),
            (0o640, false),
            (0o644, false),
            (0o602, false),
        ] {
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
            let r = read_secret_file(&f, 4096);
            assert_eq!(r.is_ok(), ok, "{mode:o}: {r:?}");
            if let Err(e) = r {
                assert!(e.to_string().contains(&format!("{mode:04o}")), "{e}");
                assert!(!e.to_string().contains("s3cret"), "{e}");
            }
        }
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_secret_file(&f, 4096).unwrap(), "s3cret-key");
        for (bad, why) in [
            (&b"\n"[..], "empty"),
            (b"a\nb\n", "control"),
            (b"\xff\xfe", "UTF-8"),
        ] {
            std::fs::write(&f, bad).unwrap();
            let e = read_secret_file(&f, 4096).unwrap_err().to_string();
            assert!(e.contains(why), "{e}");
        }
        std::fs::write(&f, b"abcd").unwrap();
        assert!(read_secret_file(&f, 3).is_err());
    }

    #[test]
    fn refuses_what_is_too_large_or_not_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"abcd").unwrap();
        let e = read_regular_file(&f, 3).unwrap_err();
        assert_eq!(e.to_string(), "larger than 3 bytes");
        let e = read_regular_file(dir.path(), 10).unwrap_err();
        assert_eq!(e.to_string(), "not a regular file but a directory");
        let e = read_regular_file(Path::new("/dev/zero"), 10).unwrap_err();
        assert_eq!(e.to_string(), "not a regular file but a character device");
        let e = read_regular_file(&dir.path().join("missing"), 10).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
