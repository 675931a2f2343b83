//! Persistence of the login session: `state_dir/session.json`, mode 0600, written
//! atomically (temp file, fsync, rename, fsync of the directory).

use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::core::session::Saved;

/// The file's content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SessionFile {
    /// Stable id of this installation, sent as `instanceid` (see docs/protocol.md).
    #[serde(rename = "instanceID")]
    instance_id: String,
    #[serde(rename = "sdkAppID", default)]
    sdk_app_id: Option<u64>,
    #[serde(rename = "userID", default)]
    user_id: Option<String>,
    #[serde(default)]
    user_sig: Option<String>,
    #[serde(default)]
    logged_in: bool,
}

/// The session store of one state directory.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    file: SessionFile,
}

fn new_instance_id() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

impl Store {
    /// Opens (creating the directory, mode 0700) and reads the session file. A file that
    /// cannot be read is kept aside as `session.json.bad` and a fresh one is started.
    pub fn open(dir: &Path) -> Result<Store, String> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("state directory {}: {e}", dir.display()))?;
        let path = dir.join("session.json");
        let mut file = match fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<SessionFile>(&bytes) {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!(
                        "{}: unreadable ({e}); starting without a saved session",
                        path.display()
                    );
                    let _ = fs::rename(&path, dir.join("session.json.bad"));
                    SessionFile::default()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => SessionFile::default(),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let fresh = file.instance_id.is_empty();
        if fresh {
            file.instance_id = new_instance_id();
        }
        let mut store = Store {
            dir: dir.to_owned(),
            file,
        };
        if fresh {
            store.write()?;
        }
        Ok(store)
    }

    /// This installation's instance id.
    pub fn instance_id(&self) -> &str {
        &self.file.instance_id
    }

    /// The saved logged-in session, if any.
    pub fn saved(&self) -> Option<Saved> {
        match (&self.file, self.file.logged_in) {
            (
                SessionFile {
                    sdk_app_id: Some(app_id),
                    user_id: Some(user),
                    user_sig: Some(sig),
                    ..
                },
                true,
            ) => Some(Saved {
                app_id: *app_id,
                user: user.clone(),
                sig: sig.clone(),
            }),
            _ => None,
        }
    }

    /// Saves the logged-in session, or clears it (`None`).
    pub fn save(&mut self, saved: Option<&Saved>) -> Result<(), String> {
        match saved {
            Some(s) => {
                self.file.sdk_app_id = Some(s.app_id);
                self.file.user_id = Some(s.user.clone());
                self.file.user_sig = Some(s.sig.clone());
                self.file.logged_in = true;
            }
            None => {
                self.file.user_sig = None;
                self.file.logged_in = false;
            }
        }
        self.write()
    }

    fn write(&mut self) -> Result<(), String> {
        let path = self.dir.join("session.json");
        let tmp = self.dir.join(".session.json.tmp");
        let err = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
        let body = serde_json::to_vec_pretty(&self.file)
            .map_err(|e| format!("cannot encode the session: {e}"))?;
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(err)?;
        f.write_all(&body).map_err(err)?;
        f.sync_all().map_err(err)?;
        drop(f);
        fs::rename(&tmp, &path).map_err(err)?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn saves_restores_and_clears_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        let id = s.instance_id().to_owned();
        assert_eq!(s.saved(), None);
        let saved = Saved {
            app_id: 1,
            user: "alice".into(),
            sig: "SIG".into(),
        };
        s.save(Some(&saved)).unwrap();
        let mode = fs::metadata(dir.path().join("session.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let s2 = Store::open(dir.path()).unwrap();
        assert_eq!(s2.saved(), Some(saved));
        assert_eq!(s2.instance_id(), id, "the instance id survives restarts");
        let mut s3 = Store::open(dir.path()).unwrap();
        s3.save(None).unwrap();
        let text = fs::read_to_string(dir.path().join("session.json")).unwrap();
        assert!(!text.contains("SIG"), "a cleared session keeps no ticket");
        assert_eq!(Store::open(dir.path()).unwrap().saved(), None);
    }

    #[test]
    fn a_corrupt_file_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("session.json"), b"{not json").unwrap();
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.saved(), None);
        assert!(dir.path().join("session.json.bad").exists());
    }
}
