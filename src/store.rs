//! Files on disk: atomic writes with modes and owners, and where each layout puts a certificate.
//!
//! Every write goes to a temporary file in the same directory, is flushed with fsync and then
//! renamed over the old file, so a crash leaves either the old or the new content, never half.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Private keys: owner reads and writes, the configured group reads.
pub(crate) const KEY_MODE: u32 = 0o640;
/// Certificates and chains are public.
pub(crate) const CERT_MODE: u32 = 0o644;
/// Certificate directories: the key group may enter.
pub(crate) const DIR_MODE: u32 = 0o750;
/// Account credentials, pending orders and anything else only fleetcert reads.
pub(crate) const SECRET_MODE: u32 = 0o600;
/// The state directory.
pub(crate) const STATE_DIR_MODE: u32 = 0o700;

/// A file operation that failed, with the path it failed on.
#[derive(Debug, thiserror::Error)]
#[error("{action} {}: {source}", path.display())]
pub(crate) struct StoreError {
    action: &'static str,
    path: PathBuf,
    #[source]
    source: io::Error,
}

impl StoreError {
    pub(crate) fn new(action: &'static str, path: &Path, source: io::Error) -> Self {
        Self {
            action,
            path: path.to_owned(),
            source,
        }
    }
}

/// Where certificate files go: fleetcert's own names, or acme.sh's, which OpenDev reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
pub(crate) enum Layout {
    #[default]
    #[serde(rename = "fleetcert")]
    Fleetcert,
    #[serde(rename = "acme.sh")]
    AcmeSh,
}

/// The four files of one installed certificate.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CertPaths {
    pub(crate) dir: PathBuf,
    pub(crate) key: PathBuf,
    pub(crate) cert: PathBuf,
    pub(crate) chain: PathBuf,
    pub(crate) fullchain: PathBuf,
}

impl Layout {
    /// The files for certificate `name` whose first identifier is `first`.
    pub(crate) fn paths(self, cert_dir: &Path, name: &str, first: &str) -> CertPaths {
        match self {
            Self::Fleetcert => {
                let dir = cert_dir.join(name);
                CertPaths {
                    key: dir.join("privkey.pem"),
                    cert: dir.join("cert.pem"),
                    chain: dir.join("chain.pem"),
                    fullchain: dir.join("fullchain.pem"),
                    dir,
                }
            }
            Self::AcmeSh => {
                let dir = cert_dir.join(first);
                CertPaths {
                    key: dir.join(format!("{first}.key")),
                    cert: dir.join(format!("{first}.cer")),
                    chain: dir.join("ca.cer"),
                    fullchain: dir.join("fullchain.cer"),
                    dir,
                }
            }
        }
    }
}

/// Ownership and permissions for a file written by [`write_atomic`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Access {
    pub(crate) mode: u32,
    /// Group to hand the file to; `None` keeps the process's.
    pub(crate) gid: Option<u32>,
}

impl Access {
    pub(crate) const fn secret() -> Self {
        Self {
            mode: SECRET_MODE,
            gid: None,
        }
    }
}

/// Creates `dir` (and parents) and sets its mode and group, also when it already existed.
pub(crate) fn ensure_dir(dir: &Path, access: Access) -> Result<(), StoreError> {
    fs::create_dir_all(dir).map_err(|err| StoreError::new("cannot create directory", dir, err))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(access.mode))
        .map_err(|err| StoreError::new("cannot set the mode of", dir, err))?;
    if let Some(gid) = access.gid {
        chown_group(dir, gid)?;
    }
    Ok(())
}

fn chown_group(path: &Path, gid: u32) -> Result<(), StoreError> {
    nix::unistd::chown(path, None, Some(nix::unistd::Gid::from_raw(gid)))
        .map_err(|err| StoreError::new("cannot set the group of", path, err.into()))
}

/// Writes `contents` to a temporary file beside `path`, flushed and with its final mode and
/// group, but not yet renamed; [`Staged::commit`] puts it in place.
pub(crate) fn stage(path: &Path, contents: &[u8], access: Access) -> Result<Staged, StoreError> {
    let file_name = path
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or("file");
    let temp = path.with_file_name(format!(".{file_name}.tmp.{}", std::process::id()));
    let write = || -> io::Result<()> {
        // The mode is set at creation, so a key is never readable by others, not even briefly.
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(access.mode)
            .open(&temp)?;
        // An existing temporary file keeps its old mode through `open`: set it again.
        file.set_permissions(fs::Permissions::from_mode(access.mode))?;
        file.write_all(contents)?;
        file.sync_all()
    };
    write().map_err(|err| StoreError::new("cannot write", &temp, err))?;
    let staged = Staged {
        temp,
        path: path.to_owned(),
        committed: false,
    };
    if let Some(gid) = access.gid {
        chown_group(&staged.temp, gid)?;
    }
    Ok(staged)
}

/// A fully written temporary file waiting to replace its target. Dropped uncommitted, it is
/// removed and the target is untouched.
#[derive(Debug)]
pub(crate) struct Staged {
    temp: PathBuf,
    path: PathBuf,
    committed: bool,
}

impl Staged {
    /// Renames the temporary file over the target.
    pub(crate) fn commit(mut self) -> Result<(), StoreError> {
        fs::rename(&self.temp, &self.path)
            .map_err(|err| StoreError::new("cannot replace", &self.path, err))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

/// Makes a rename in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(|err| StoreError::new("cannot sync directory", dir, err))
}

/// Atomically replaces `path` with `contents`.
pub(crate) fn write_atomic(path: &Path, contents: &[u8], access: Access) -> Result<(), StoreError> {
    stage(path, contents, access)?.commit()?;
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => sync_dir(dir),
        _ => Ok(()),
    }
}

/// Reads a file that may not exist yet.
pub(crate) fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(StoreError::new("cannot read", path, err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_sets_mode_and_replaces() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("privkey.pem");
        let access = Access {
            mode: KEY_MODE,
            gid: None,
        };
        write_atomic(&path, b"one", access).expect("write");
        write_atomic(&path, b"two", access).expect("write");
        assert_eq!(fs::read(&path).expect("read"), b"two");
        let mode = fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, KEY_MODE);
        let leftovers = fs::read_dir(dir.path()).expect("list").count();
        assert_eq!(leftovers, 1, "temporary files left behind");
    }

    #[test]
    fn dropped_stage_leaves_target_untouched() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cert.pem");
        write_atomic(&path, b"old", Access::secret()).expect("write");
        drop(stage(&path, b"new", Access::secret()).expect("stage"));
        assert_eq!(fs::read(&path).expect("read"), b"old");
        assert_eq!(fs::read_dir(dir.path()).expect("list").count(), 1);
    }

    #[test]
    fn acme_sh_layout_uses_opendevs_names() {
        let paths = Layout::AcmeSh.paths(Path::new("/c"), "main", "web01.example.org");
        assert_eq!(
            paths.key,
            Path::new("/c/web01.example.org/web01.example.org.key")
        );
        assert_eq!(
            paths.cert,
            Path::new("/c/web01.example.org/web01.example.org.cer")
        );
        assert_eq!(paths.chain, Path::new("/c/web01.example.org/ca.cer"));
        assert_eq!(
            paths.fullchain,
            Path::new("/c/web01.example.org/fullchain.cer")
        );
    }
}
