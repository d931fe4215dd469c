//! [`Dir`]: a directory opened once and used by descriptor; opening and creating
//! directories (refusing a symlink or one others could write in), reading, listing and
//! removing what is in it.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};

use super::{Access, Existing, PARENT_DIR_MODE, PRIVATE_DIR_MODE, StoreError, read_limited};

/// A directory opened once and used by descriptor (see the module doc).
#[derive(Debug)]
pub(crate) struct Dir {
    pub(super) fd: OwnedFd,
    pub(super) path: PathBuf,
}

impl AsFd for Dir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Dir {
    /// Opens an existing directory; a symlink at `path` itself is refused.
    pub(crate) fn open(path: &Path) -> Result<Self, StoreError> {
        let fd = nix::fcntl::open(path, dir_flags(), Mode::empty())
            .map_err(|errno| open_error(path, errno))?;
        Ok(Self {
            fd,
            path: path.to_owned(),
        })
    }

    /// Opens `path`, creating it (with `access`) and any missing parent (0755) first.
    pub(crate) fn ensure(
        path: &Path,
        access: Access,
        existing: Existing,
    ) -> Result<Self, StoreError> {
        match Self::open(path) {
            Ok(dir) => {
                dir.settle(access, existing)?;
                Ok(dir)
            }
            Err(StoreError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                let (parent, name) = split(path)?;
                let parent =
                    Self::ensure(parent, Access::private(PARENT_DIR_MODE), Existing::Ancestor)?;
                parent.create_dir(name, access)
            }
            Err(err) => Err(err),
        }
    }

    /// The directory at `path` as [`ensure`](Self::ensure) with
    /// [`Existing::RefuseIfOthersWrite`] would open it, but creating and changing nothing:
    /// `None` when it does not exist (a dry run reads it as empty).
    pub(crate) fn open_existing(path: &Path) -> Result<Option<Self>, StoreError> {
        match nix::fcntl::open(path, dir_flags(), Mode::empty()) {
            Ok(fd) => {
                let dir = Self {
                    fd,
                    path: path.to_owned(),
                };
                dir.settle(
                    Access::private(PRIVATE_DIR_MODE),
                    Existing::RefuseIfOthersWrite,
                )?;
                Ok(Some(dir))
            }
            Err(Errno::ENOENT) => Ok(None),
            Err(errno) => Err(open_error(path, errno)),
        }
    }

    /// The child directory `name`, created with `access` when missing.
    pub(crate) fn child(
        &self,
        name: &str,
        access: Access,
        existing: Existing,
    ) -> Result<Self, StoreError> {
        match nix::fcntl::openat(&self.fd, name, dir_flags(), Mode::empty()) {
            Ok(fd) => {
                let dir = Self {
                    fd,
                    path: self.path.join(name),
                };
                dir.settle(access, existing)?;
                Ok(dir)
            }
            Err(Errno::ENOENT) => self.create_dir(OsStr::new(name), access),
            Err(errno) => Err(open_error(&self.path.join(name), errno)),
        }
    }

    /// The child directory `name` if it exists (a symlink there is refused).
    pub(crate) fn open_child(&self, name: &str) -> Result<Option<Self>, StoreError> {
        match nix::fcntl::openat(&self.fd, name, dir_flags(), Mode::empty()) {
            Ok(fd) => Ok(Some(Self {
                fd,
                path: self.path.join(name),
            })),
            Err(Errno::ENOENT) => Ok(None),
            Err(errno) => Err(open_error(&self.path.join(name), errno)),
        }
    }

    fn create_dir(&self, name: &OsStr, access: Access) -> Result<Self, StoreError> {
        let path = self.path.join(name);
        match nix::sys::stat::mkdirat(&self.fd, name, Mode::from_bits_truncate(0o700)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(errno) => return Err(StoreError::io("create directory", &path, errno)),
        }
        let fd = nix::fcntl::openat(&self.fd, name, dir_flags(), Mode::empty())
            .map_err(|errno| open_error(&path, errno))?;
        let dir = Self { fd, path };
        // Made by someone else between the look and the mkdir: theirs, not ours.
        dir.settle(access, Existing::Enforce)?;
        Ok(dir)
    }

    /// Gives this directory `access` (its owner and mode).
    pub(crate) fn apply(&self, access: Access) -> Result<(), StoreError> {
        access
            .apply(self.fd.as_fd())
            .map_err(|errno| StoreError::io("set the mode of", &self.path, errno))
    }

    /// Applies `existing` to an opened directory.
    fn settle(&self, access: Access, existing: Existing) -> Result<(), StoreError> {
        let stat = self.stat()?;
        let euid = nix::unistd::geteuid().as_raw();
        match existing {
            Existing::Enforce => {
                if stat.st_uid != euid && Some(stat.st_uid) != access.uid {
                    return Err(StoreError::unsafe_file(
                        &self.path,
                        format!(
                            "belongs to uid {}, but fleetcert makes it for itself: whoever \
                             made it can read or swap what fleetcert writes there; move it away",
                            stat.st_uid
                        ),
                    ));
                }
                self.apply(access)
            }
            Existing::RefuseIfOthersWrite | Existing::Ancestor => {
                let sticky = existing == Existing::Ancestor && stat.st_mode & 0o1000 != 0;
                if stat.st_uid != euid && stat.st_uid != 0 {
                    return Err(StoreError::unsafe_file(
                        &self.path,
                        format!(
                            "belongs to uid {}, not to root or the user fleetcert runs as: \
                             whoever owns it can swap what fleetcert writes there; chown it",
                            stat.st_uid
                        ),
                    ));
                }
                if stat.st_mode & 0o022 != 0 && !sticky {
                    return Err(StoreError::unsafe_file(
                        &self.path,
                        format!(
                            "is writable by others (mode {:04o}): they could swap what \
                             fleetcert writes there; run chmod go-w on it",
                            stat.st_mode & 0o7777
                        ),
                    ));
                }
                Ok(())
            }
        }
    }

    /// Where this directory is, for messages.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The directory's own status.
    pub(crate) fn stat(&self) -> Result<FileStat, StoreError> {
        nix::sys::stat::fstat(&self.fd)
            .map_err(|errno| StoreError::io("inspect", &self.path, errno))
    }

    /// The status of `name` in this directory, not following a symlink; `None` if missing.
    pub(crate) fn stat_at(&self, name: &str) -> Result<Option<FileStat>, StoreError> {
        match nix::sys::stat::fstatat(&self.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(Some(stat)),
            Err(Errno::ENOENT) => Ok(None),
            Err(errno) => Err(StoreError::io("inspect", &self.path.join(name), errno)),
        }
    }

    /// Reads the regular file `name`, at most `limit` bytes; `None` when it does not exist.
    /// A symlink there is refused.
    pub(crate) fn read_optional(
        &self,
        name: &str,
        limit: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.path.join(name);
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK;
        let fd = match nix::fcntl::openat(&self.fd, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(None),
            Err(errno) => return Err(open_error(&path, errno)),
        };
        let stat =
            nix::sys::stat::fstat(&fd).map_err(|errno| StoreError::io("inspect", &path, errno))?;
        if SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits()) != SFlag::S_IFREG {
            return Err(StoreError::unsafe_file(
                &path,
                "is not a regular file: move it away",
            ));
        }
        read_limited(File::from(fd), &path, limit).map(Some)
    }

    /// Renames `from` over `to`, both in this directory.
    pub(crate) fn rename(&self, from: &str, to: &str) -> Result<(), StoreError> {
        nix::fcntl::renameat(&self.fd, from, &self.fd, to)
            .map_err(|errno| StoreError::io("replace", &self.path.join(to), errno))
    }

    /// Removes the file `name`; a missing one is fine.
    pub(crate) fn remove(&self, name: &str) -> Result<(), StoreError> {
        match nix::unistd::unlinkat(&self.fd, name, nix::unistd::UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(errno) => Err(StoreError::io("remove", &self.path.join(name), errno)),
        }
    }

    /// Removes the directory `name` and everything in it (only ever one fleetcert made).
    pub(crate) fn remove_tree(&self, name: &str) -> Result<(), StoreError> {
        let Some(child) = self.open_child(name)? else {
            return Ok(());
        };
        for entry in child.entries()? {
            match child.stat_at(&entry)? {
                Some(stat) if is_dir(&stat) => child.remove_tree(&entry)?,
                Some(_) => child.remove(&entry)?,
                None => {}
            }
        }
        match nix::unistd::unlinkat(&self.fd, name, nix::unistd::UnlinkatFlags::RemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(errno) => Err(StoreError::io("remove", &self.path.join(name), errno)),
        }
    }

    /// The target of the symlink `name`; `None` when there is no symlink of that name.
    pub(crate) fn read_link(&self, name: &str) -> Result<Option<OsString>, StoreError> {
        match nix::fcntl::readlinkat(&self.fd, name) {
            Ok(target) => Ok(Some(target)),
            Err(Errno::ENOENT | Errno::EINVAL) => Ok(None),
            Err(errno) => Err(StoreError::io(
                "read the link",
                &self.path.join(name),
                errno,
            )),
        }
    }

    /// The names in this directory (not `.` and `..`), sorted.
    pub(crate) fn entries(&self) -> Result<Vec<String>, StoreError> {
        let dup = self
            .fd
            .try_clone()
            .map_err(|err| StoreError::io("list", &self.path, err))?;
        let mut dir = nix::dir::Dir::from_fd(dup)
            .map_err(|errno| StoreError::io("list", &self.path, errno))?;
        let mut names = Vec::new();
        for entry in dir.iter() {
            let entry = entry.map_err(|errno| StoreError::io("list", &self.path, errno))?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push(String::from_utf8_lossy(name).into_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    /// Opens (creating, 0600) the lock file `name`: a regular file of the process's user
    /// with one link, never a symlink or a hard link someone else made.
    pub(crate) fn open_lock(&self, name: &str) -> Result<File, StoreError> {
        let path = self.path.join(name);
        let flags = OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = nix::fcntl::openat(&self.fd, name, flags, Mode::from_bits_truncate(0o600))
            .map_err(|errno| open_error(&path, errno))?;
        let stat =
            nix::sys::stat::fstat(&fd).map_err(|errno| StoreError::io("inspect", &path, errno))?;
        let regular =
            SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFREG;
        if !regular || stat.st_nlink != 1 || stat.st_uid != nix::unistd::geteuid().as_raw() {
            return Err(StoreError::unsafe_file(
                &path,
                "is not a lock file fleetcert made (another owner, a link, or not a regular \
                 file): remove it",
            ));
        }
        Ok(File::from(fd))
    }

    /// Makes the renames in this directory durable.
    pub(crate) fn sync(&self) -> Result<(), StoreError> {
        nix::unistd::fsync(&self.fd).map_err(|errno| StoreError::io("sync", &self.path, errno))
    }
}

fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

pub(super) fn is_dir(stat: &FileStat) -> bool {
    SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFDIR
}

/// The error for an `open` that failed: a symlink in the way gets its own line.
pub(super) fn open_error(path: &Path, errno: Errno) -> StoreError {
    match errno {
        Errno::ELOOP | Errno::ENOTDIR => StoreError::unsafe_file(
            path,
            "is a symlink (or not a directory) where fleetcert expects its own file or \
             directory: fleetcert does not write through links it did not make; remove it",
        ),
        errno => StoreError::io("open", path, errno),
    }
}

fn split(path: &Path) -> Result<(&Path, &OsStr), StoreError> {
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => {
            let parent = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            Ok((parent, name))
        }
        _ => Err(StoreError::unsafe_file(
            path,
            "is not a path fleetcert can create",
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

    use super::super::tests::mode;
    use super::super::{CERT_MODE, DIR_MODE};
    use super::*;

    #[test]
    fn a_planted_symlink_is_never_written_through() {
        let dir = tempfile::tempdir().expect("tempdir");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").expect("write");
        let store = Dir::open(dir.path()).expect("open");
        std::os::unix::fs::symlink(&victim, dir.path().join("cert.pem")).expect("link");
        // Writing where a planted link is is refused; the target is untouched.
        let err = store
            .write_atomic("cert.pem", b"new", Access::private(CERT_MODE))
            .expect_err("symlink");
        assert!(
            err.is_refusal() && err.to_string().contains("symlink"),
            "{err}"
        );
        assert_eq!(std::fs::read(&victim).expect("read"), b"precious");
        // Reading and locking through a planted link are refused.
        std::os::unix::fs::symlink(&victim, dir.path().join("other")).expect("link");
        let err = store.read_optional("other", 100).expect_err("symlink");
        assert!(err.is_refusal(), "{err}");
        std::os::unix::fs::symlink(&victim, dir.path().join(".lock")).expect("link");
        assert!(store.open_lock(".lock").expect_err("symlink").is_refusal());
        assert_eq!(std::fs::read(&victim).expect("read"), b"precious");
        // A symlinked directory is refused.
        std::os::unix::fs::symlink(dir.path(), dir.path().join("sub")).expect("link");
        let err = store
            .child("sub", Access::private(DIR_MODE), Existing::Enforce)
            .expect_err("symlinked dir");
        assert!(err.to_string().contains("symlink"), "{err}");
    }

    #[test]
    fn directories_get_their_mode_explicitly() {
        let dir = tempfile::tempdir().expect("tempdir");
        let deep = dir.path().join("etc/fleetcert/certs");
        Dir::ensure(&deep, Access::private(DIR_MODE), Existing::Enforce).expect("ensure");
        assert_eq!(mode(&deep), DIR_MODE);
        assert_eq!(mode(&dir.path().join("etc/fleetcert")), PARENT_DIR_MODE);
        assert_eq!(mode(&dir.path().join("etc")), PARENT_DIR_MODE);
    }

    #[test]
    fn a_directory_others_may_write_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let open = dir.path().join("open");
        std::fs::create_dir(&open).expect("mkdir");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let err = Dir::ensure(&open, Access::private(0o755), Existing::RefuseIfOthersWrite)
            .expect_err("world-writable");
        assert!(err.to_string().contains("chmod go-w"), "{err}");
        assert_eq!(mode(&open), 0o777, "refused, not changed");
    }

    #[test]
    fn a_sticky_directory_others_may_write_is_refused_but_may_hold_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let shared = dir.path().join("tmp");
        std::fs::create_dir(&shared).expect("mkdir");
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
        // As the directory asked for: others could squat the names fleetcert makes in it.
        let err = Dir::ensure(
            &shared,
            Access::private(0o755),
            Existing::RefuseIfOthersWrite,
        )
        .expect_err("sticky and world-writable");
        assert!(
            err.is_refusal() && err.to_string().contains("chmod go-w"),
            "{err}"
        );
        // As a directory above it (`/tmp`): fleetcert makes its own below, which others
        // cannot rename or remove.
        let below = shared.join("certs");
        Dir::ensure(
            &below,
            Access::private(0o755),
            Existing::RefuseIfOthersWrite,
        )
        .expect("a new directory below a sticky one");
        assert_eq!(mode(&below), 0o755);
    }

    #[test]
    fn lock_files_must_be_our_own_single_link_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Dir::open(dir.path()).expect("open");
        store.open_lock("a.lock").expect("new lock");
        std::fs::write(dir.path().join("target"), b"x").expect("write");
        std::fs::hard_link(dir.path().join("target"), dir.path().join("b.lock")).expect("link");
        assert!(
            store
                .open_lock("b.lock")
                .expect_err("hard link")
                .is_refusal()
        );
        let meta = std::fs::metadata(dir.path().join("a.lock")).expect("stat");
        assert_eq!(meta.mode() & 0o777, 0o600);
    }
}
