//! The atomic install of one certificate's files, and reading them back as one set.
//!
//! A service reads several files for one certificate (key, certificate, chain, full chain,
//! a keystore) and must never see a new key beside an old certificate. Replacing the files
//! one by one cannot promise that; one `rename(2)` can. So, as Kubernetes' atomic writer
//! does for Secret volumes, every issuance goes into a directory of its own, and one symlink
//! names the current one:
//!
//! ```text
//! <cert_dir>/<cert>/                     0750 root:<group>
//!     ..2026_12_01_23_59_59.123456789/   0750 root:<group>, the files of one issuance
//!     ..data -> ..2026_12_01_23_59_59.123456789
//!     privkey.pem -> ..data/privkey.pem  (and cert.pem, chain.pem, fullchain.pem, ...)
//! ```
//!
//! The service-facing paths stay what they were (`<cert>/privkey.pem`, or acme.sh's
//! names), so no service config changes, and the directory stays a real directory with the
//! key group's mode. Swapping `..data` switches every file at once; a crash before it leaves
//! the old set, after it the new one. A directory written by an older fleetcert (plain
//! files) is first turned into this shape with a copy of the old files, so that even the
//! one-time conversion never shows a mixed set. Versions other than the current one are
//! pruned after each switch and before each install.

use std::ffi::OsStr;
use std::fmt;
use std::path::Path;

use time::OffsetDateTime;
use time::macros::format_description;

use crate::store::{self, Access, Dir, Existing, StoreError};

/// The symlink that names the current version.
const DATA_LINK: &str = "..data";
/// The most bytes of one installed file fleetcert reads back (a chain is a few KiB).
const MAX_FILE_BYTES: u64 = 1 << 20;

/// Bytes that must never reach a log: a private key, a keystore.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(pub(crate) Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

/// One file of a certificate's set.
#[derive(Debug)]
pub(super) struct SetFile<'a> {
    /// The service-facing name in the certificate's directory.
    pub(super) name: &'a str,
    pub(super) contents: &'a Secret,
    pub(super) access: Access,
}

/// Where one certificate's files live: `cert_dir` and the directory below it.
#[derive(Debug, Clone)]
pub(crate) struct CertDir<'a> {
    pub(crate) cert_dir: &'a Path,
    pub(crate) name: String,
    /// The key group, given to the directories.
    pub(crate) gid: u32,
}

impl CertDir<'_> {
    /// Opens (creating) the certificate's directory, refusing what others could have planted.
    fn open(&self) -> Result<Dir, StoreError> {
        let top = Dir::ensure(
            self.cert_dir,
            Access::private(store::PARENT_DIR_MODE),
            Existing::RefuseIfOthersWrite,
        )?;
        top.child(&self.name, self.dir_access(), Existing::Enforce)
    }

    fn dir_access(&self) -> Access {
        Access::group(store::DIR_MODE, self.gid)
    }

    /// Replaces the certificate's files with `files`, all at once (see the module doc);
    /// `CertDir::install` (set.rs) names the files of a certificate's set.
    pub(super) fn install_files(&self, files: &[SetFile<'_>]) -> Result<(), StoreError> {
        let dir = self.open()?;
        dir.sweep()?;
        prune(&dir)?;
        let version = new_version(&dir)?;
        for file in files {
            version.write_atomic(file.name, &file.contents.0, file.access)?;
            crash_point!("install.after_file", file.name);
        }
        version.apply(self.dir_access())?;
        version.sync()?;
        let version_name = leaf_name(&version);
        if needs_conversion(&dir, files)? {
            convert(&dir, self.dir_access(), files)?;
        }
        // Links for files new to the set dangle until the switch: they appear with it. They
        // are made durable first: the switch must never reach the disk without them.
        let mut linked = false;
        for file in files {
            linked |= ensure_link(&dir, file.name)?;
        }
        if linked {
            dir.sync()?;
        }
        crash_point!("install.before_switch");
        dir.symlink_atomic(&version_name, DATA_LINK)?;
        dir.sync()?;
        crash_point!("install.after_switch");
        remove_dangling_links(&dir, files)?;
        prune(&dir)?;
        dir.sync()
    }

    /// Refuses a certificate directory that holds a link fleetcert did not make (`..data`
    /// to a version, a service-facing name to `..data/<name>`): someone planted it, and the
    /// operator must look before anything is written there. A directory that does not exist
    /// yet is fine.
    pub(crate) fn refuse_foreign_links(&self) -> Result<(), StoreError> {
        let path = self.cert_dir.join(&self.name);
        let dir = match Dir::open(&path) {
            Ok(dir) => dir,
            Err(StoreError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Ok(());
            }
            Err(err) => return Err(err),
        };
        current_version(&dir)?;
        for entry in dir.entries()? {
            let Some(stat) = dir.stat_at(&entry)? else {
                continue;
            };
            if entry == DATA_LINK || !is_symlink(&stat) || is_our_link(&dir, &entry)? {
                continue;
            }
            return Err(StoreError::Unsafe {
                path: crate::shown::path(&path.join(&entry)),
                problem: "is a link fleetcert did not make: someone planted it; look, remove                           it, and run again"
                    .to_owned(),
            });
        }
        Ok(())
    }

    /// The current files `names`, read as one set; `None` for a name that does not exist,
    /// and `None` overall when the certificate's directory does not exist
    /// (`CertDir::read_set`, set.rs, reads a certificate's set).
    pub(super) fn read_files(
        &self,
        names: &[&str],
    ) -> Result<Option<Vec<Option<Secret>>>, StoreError> {
        let path = self.cert_dir.join(&self.name);
        let dir = match Dir::open(&path) {
            Ok(dir) => dir,
            Err(StoreError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Ok(None);
            }
            Err(err) => return Err(err),
        };
        // Resolve `..data` once, so a switch during the read cannot mix two versions.
        let current = match current_version(&dir)? {
            Some(version) => dir.open_child(&version)?,
            None => None,
        };
        let source = current.as_ref().unwrap_or(&dir);
        names
            .iter()
            .map(|name| {
                // No `..data` yet: a first install died before its switch, and its links
                // lead nowhere, as for a service. Nothing is installed.
                if current.is_none() && is_our_link(&dir, name)? {
                    return Ok(None);
                }
                source
                    .read_optional(name, MAX_FILE_BYTES)
                    .map(|bytes| bytes.map(Secret))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}

/// The version `..data` points at, when it is one of ours.
fn current_version(dir: &Dir) -> Result<Option<String>, StoreError> {
    let Some(target) = dir.read_link(DATA_LINK)? else {
        return Ok(None);
    };
    let target = target.to_string_lossy().into_owned();
    if is_version(&target) {
        Ok(Some(target))
    } else {
        Err(StoreError::Unsafe {
            path: crate::shown::path(&dir.path().join(DATA_LINK)),
            problem: format!(
                "points at {}, not at a version fleetcert made: remove the link and run \
                 request and finalize again",
                crate::shown::shown(&target)
            ),
        })
    }
}

/// A version directory's name: `..` and a timestamp.
fn is_version(name: &str) -> bool {
    name.strip_prefix("..").is_some_and(|rest| {
        !rest.is_empty()
            && rest != "data"
            && rest
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'_' || b == b'.')
    })
}

/// A new, empty version directory (0700 until it is complete).
fn new_version(dir: &Dir) -> Result<Dir, StoreError> {
    let now = OffsetDateTime::now_utc();
    let stamp = now
        .format(format_description!(
            "[year]_[month]_[day]_[hour]_[minute]_[second].[subsecond digits:9]"
        ))
        .unwrap_or_else(|_| now.unix_timestamp_nanos().to_string());
    for attempt in 0u32..16 {
        let name = format!(
            "..{stamp}{}",
            if attempt == 0 {
                String::new()
            } else {
                attempt.to_string()
            }
        );
        if dir.stat_at(&name)?.is_none() {
            return dir.child(
                &name,
                Access::private(store::PRIVATE_DIR_MODE),
                Existing::Enforce,
            );
        }
    }
    Err(StoreError::Unsafe {
        path: crate::shown::path(dir.path()),
        problem: "has no free name for a new version (16 taken)".to_owned(),
    })
}

fn leaf_name(dir: &Dir) -> String {
    dir.path()
        .file_name()
        .map(OsStr::to_string_lossy)
        .unwrap_or_default()
        .into_owned()
}

/// Whether a service-facing name is still a plain file (written by an older fleetcert).
fn needs_conversion(dir: &Dir, files: &[SetFile<'_>]) -> Result<bool, StoreError> {
    for file in files {
        if let Some(stat) = dir.stat_at(file.name)?
            && !is_symlink(&stat)
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Turns plain files into links to a version holding a copy of them: every step shows the
/// old content, so a crash during the conversion still leaves one consistent set.
///
/// A conversion killed half-way left some names as links into `..data` (the copy it made)
/// and the others plain: the new copy takes those from the current version, or switching
/// `..data` to it would leave them dangling.
fn convert(dir: &Dir, dir_access: Access, files: &[SetFile<'_>]) -> Result<(), StoreError> {
    let current = match current_version(dir)? {
        Some(version) => dir.open_child(&version)?,
        None => None,
    };
    let old = new_version(dir)?;
    let mut plain = Vec::new();
    for file in files {
        let Some(stat) = dir.stat_at(file.name)? else {
            continue;
        };
        let (source, stat) = if is_symlink(&stat) {
            match (&current, is_our_link(dir, file.name)?) {
                (Some(current), true) => match current.stat_at(file.name)? {
                    Some(stat) => (current, stat),
                    None => continue,
                },
                _ => continue,
            }
        } else {
            plain.push(file.name);
            (dir, stat)
        };
        let Some(bytes) = source.read_optional(file.name, MAX_FILE_BYTES)? else {
            continue;
        };
        let access = Access {
            mode: stat.st_mode & 0o777,
            uid: None,
            gid: Some(stat.st_gid),
        };
        old.write_atomic(file.name, &bytes, access)?;
    }
    old.apply(dir_access)?;
    old.sync()?;
    dir.symlink_atomic(&leaf_name(&old), DATA_LINK)?;
    for name in plain {
        dir.symlink_atomic(&link_target(name), name)?;
        crash_point!("install.converting", name);
    }
    dir.sync()
}

fn link_target(name: &str) -> String {
    format!("{DATA_LINK}/{name}")
}

/// Whether `name` is a link into `..data`, as an install makes it.
fn is_our_link(dir: &Dir, name: &str) -> Result<bool, StoreError> {
    Ok(dir
        .read_link(name)?
        .is_some_and(|target| target == OsStr::new(&link_target(name))))
}

/// Makes `name` a link into `..data`, unless it is one already; whether it made one.
fn ensure_link(dir: &Dir, name: &str) -> Result<bool, StoreError> {
    if is_our_link(dir, name)? {
        return Ok(false);
    }
    dir.symlink_atomic(&link_target(name), name).map(|()| true)
}

/// Removes links into `..data` for files no longer in the set (a keystore no longer wanted).
fn remove_dangling_links(dir: &Dir, files: &[SetFile<'_>]) -> Result<(), StoreError> {
    for entry in dir.entries()? {
        if entry.starts_with("..") || files.iter().any(|file| file.name == entry) {
            continue;
        }
        if is_our_link(dir, &entry)? {
            dir.remove(&entry)?;
        }
    }
    Ok(())
}

/// Removes every version but the current one (an interrupted install's, or superseded).
fn prune(dir: &Dir) -> Result<(), StoreError> {
    let current = current_version(dir)?;
    for entry in dir.entries()? {
        if is_version(&entry) && Some(&entry) != current.as_ref() {
            dir.remove_tree(&entry)?;
        }
    }
    Ok(())
}

fn is_symlink(stat: &nix::sys::stat::FileStat) -> bool {
    nix::sys::stat::SFlag::from_bits_truncate(stat.st_mode & nix::sys::stat::SFlag::S_IFMT.bits())
        == nix::sys::stat::SFlag::S_IFLNK
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn gid() -> u32 {
        nix::unistd::getegid().as_raw()
    }

    fn secret(text: &str) -> Secret {
        Secret(text.as_bytes().to_vec())
    }

    fn set<'a>(key: &'a Secret, cert: &'a Secret) -> [SetFile<'a>; 2] {
        [
            SetFile {
                name: "privkey.pem",
                contents: key,
                access: Access::group(store::KEY_MODE, gid()),
            },
            SetFile {
                name: "cert.pem",
                contents: cert,
                access: Access::group(store::CERT_MODE, gid()),
            },
        ]
    }

    #[test]
    fn install_switches_the_whole_set_and_prunes_the_old_version() {
        let root = tempfile::tempdir().expect("tempdir");
        let target = CertDir {
            cert_dir: root.path(),
            name: "main".to_owned(),
            gid: gid(),
        };
        let (key1, cert1) = (secret("key1"), secret("cert1"));
        target.install_files(&set(&key1, &cert1)).expect("first");
        let (key2, cert2) = (secret("key2"), secret("cert2"));
        target.install_files(&set(&key2, &cert2)).expect("second");
        let dir = root.path().join("main");
        assert_eq!(
            std::fs::read(dir.join("privkey.pem")).expect("key"),
            b"key2"
        );
        assert_eq!(std::fs::read(dir.join("cert.pem")).expect("cert"), b"cert2");
        let versions: Vec<_> = std::fs::read_dir(&dir)
            .expect("list")
            .flatten()
            .filter(|e| is_version(&e.file_name().to_string_lossy()))
            .collect();
        assert_eq!(versions.len(), 1, "old versions are pruned");
        let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode(&dir.join("privkey.pem")), store::KEY_MODE);
        assert_eq!(mode(&dir), store::DIR_MODE);
        let read = target
            .read_files(&["privkey.pem", "cert.pem", "chain.pem"])
            .expect("read")
            .expect("exists");
        assert_eq!(read, vec![Some(key2), Some(cert2), None]);
    }

    #[test]
    fn plain_files_of_an_older_fleetcert_are_converted() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("main");
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::write(dir.join("privkey.pem"), b"old-key").expect("write");
        std::fs::write(dir.join("cert.pem"), b"old-cert").expect("write");
        let target = CertDir {
            cert_dir: root.path(),
            name: "main".to_owned(),
            gid: gid(),
        };
        assert_eq!(
            target
                .read_files(&["privkey.pem"])
                .expect("read")
                .expect("exists"),
            vec![Some(secret("old-key"))]
        );
        let (key, cert) = (secret("new-key"), secret("new-cert"));
        target.install_files(&set(&key, &cert)).expect("install");
        assert_eq!(
            std::fs::read(dir.join("cert.pem")).expect("cert"),
            b"new-cert"
        );
        assert!(
            std::fs::symlink_metadata(dir.join("cert.pem"))
                .expect("stat")
                .file_type()
                .is_symlink()
        );
    }

    #[test]
    fn a_conversion_interrupted_after_some_links_keeps_their_content() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("main");
        std::fs::create_dir(&dir).expect("mkdir");
        // What a conversion killed after its first link leaves: `..data` at a copy of the
        // old files, the key a link into it, the certificate still plain.
        let copy = dir.join("..1999_01_01_00_00_00.000000000");
        std::fs::create_dir(&copy).expect("mkdir");
        std::fs::write(copy.join("privkey.pem"), b"old-key").expect("write");
        std::fs::write(copy.join("cert.pem"), b"old-cert").expect("write");
        std::os::unix::fs::symlink("..1999_01_01_00_00_00.000000000", dir.join("..data"))
            .expect("link");
        std::os::unix::fs::symlink("..data/privkey.pem", dir.join("privkey.pem")).expect("link");
        std::fs::write(dir.join("cert.pem"), b"old-cert").expect("write");
        let target = CertDir {
            cert_dir: root.path(),
            name: "main".to_owned(),
            gid: gid(),
        };
        let top = target.open().expect("open");
        let (key, cert) = (secret("new-key"), secret("new-cert"));
        convert(&top, target.dir_access(), &set(&key, &cert)).expect("convert");
        assert_eq!(
            std::fs::read(dir.join("privkey.pem")).expect("key"),
            b"old-key"
        );
        assert_eq!(
            std::fs::read(dir.join("cert.pem")).expect("cert"),
            b"old-cert"
        );
    }

    #[test]
    fn an_interrupted_version_is_pruned_by_the_next_install() {
        let root = tempfile::tempdir().expect("tempdir");
        let target = CertDir {
            cert_dir: root.path(),
            name: "main".to_owned(),
            gid: gid(),
        };
        let (key, cert) = (secret("k"), secret("c"));
        target.install_files(&set(&key, &cert)).expect("install");
        let orphan = root.path().join("main/..1999_01_01_00_00_00.000000000");
        std::fs::create_dir(&orphan).expect("mkdir");
        std::fs::write(orphan.join("privkey.pem"), b"half").expect("write");
        target.install_files(&set(&key, &cert)).expect("install");
        assert!(!orphan.exists());
    }

    #[test]
    fn version_names_are_recognised_exactly() {
        assert!(is_version("..2026_12_01_23_59_59.123456789"));
        assert!(!is_version("..data"));
        assert!(!is_version("..x/../../etc"));
        assert!(!is_version("privkey.pem"));
    }
}
