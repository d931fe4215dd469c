//! Files fleetcert reads and writes: bounded reads, files created new by descriptor with
//! explicit modes, and versioned JSON state.
//!
//! Every write goes through a [`Dir`]: a directory opened once (a symlink in its place is
//! refused) and used by descriptor from then on, so nobody who can write in it can redirect
//! a write by planting or swapping a name. A file is always created new under a temporary
//! name (`O_CREAT|O_EXCL|O_NOFOLLOW`, mode 0600), written, flushed, given its owner and mode
//! on its own descriptor, and only then renamed into place and the directory flushed: a crash
//! leaves the old content or the new, never half, and a key is never readable by others, not
//! even for a moment and whatever the umask. Temporary names carry the writer's pid, so one
//! left by a killed run is recognised and removed by the next ([`Dir::sweep`]).

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read as _, Write as _};
use std::os::fd::{AsFd, AsRawFd as _, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};
use nix::unistd::{Gid, Uid};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::shown::{bare, path as shown_path};

/// Private keys: owner reads and writes, the configured group reads.
pub(crate) const KEY_MODE: u32 = 0o640;
/// Certificates and chains are public.
pub(crate) const CERT_MODE: u32 = 0o644;
/// Certificate directories: the key group may enter.
pub(crate) const DIR_MODE: u32 = 0o750;
/// Account credentials, pending orders, secrets and anything else only fleetcert reads.
pub(crate) const SECRET_MODE: u32 = 0o600;
/// The state directory and other directories only fleetcert enters.
pub(crate) const PRIVATE_DIR_MODE: u32 = 0o700;
/// Directories fleetcert creates above the ones it was asked for (`/etc/fleetcert`).
pub(crate) const PARENT_DIR_MODE: u32 = 0o755;

/// The part of a temporary name between the target's name and the writer's pid.
const TEMP_MARK: &str = ".tmp.";

/// A file operation that failed or was refused, with the path it concerns.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    /// The operating system refused or failed (exit 4).
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
    /// Something is where fleetcert writes that it did not make, or that others could
    /// change; nothing was written (exit 2: the operator must look).
    #[error("{path} {problem}")]
    Unsafe { path: String, problem: String },
    /// An input is larger than fleetcert reads (exit 2).
    #[error(
        "{path} is larger than {limit} MiB, the most fleetcert reads for it: is it the right file?"
    )]
    TooLarge { path: String, limit: u64 },
    /// A state file fleetcert wrote does not read back (exit 4: move it away).
    #[error("state file {path} {problem}; move it away to start over")]
    State { path: String, problem: String },
}

impl StoreError {
    fn io(action: &'static str, path: &Path, source: impl Into<io::Error>) -> Self {
        Self::Io {
            action,
            path: shown_path(path),
            source: source.into(),
        }
    }

    fn unsafe_file(path: &Path, problem: impl Into<String>) -> Self {
        Self::Unsafe {
            path: shown_path(path),
            problem: problem.into(),
        }
    }

    /// Whether the operator must fix something before anything can be written (exit 2),
    /// rather than the system failing (exit 4).
    pub(crate) fn is_refusal(&self) -> bool {
        matches!(self, Self::Unsafe { .. } | Self::TooLarge { .. })
    }
}

/// Owner, group and mode of a file or directory fleetcert creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Access {
    pub(crate) mode: u32,
    /// Owner to hand it to; `None` keeps the process's.
    pub(crate) uid: Option<u32>,
    /// Group to hand it to; `None` keeps the process's.
    pub(crate) gid: Option<u32>,
}

impl Access {
    /// Only the process's user: 0600 files, 0700 directories.
    pub(crate) const fn private(mode: u32) -> Self {
        Self {
            mode,
            uid: None,
            gid: None,
        }
    }

    /// `mode`, with the group set to `gid`.
    pub(crate) const fn group(mode: u32, gid: u32) -> Self {
        Self {
            mode,
            uid: None,
            gid: Some(gid),
        }
    }

    /// Gives `fd` this owner and mode; the mode last, so that a file is never readable by
    /// the new group before it has the final mode.
    fn apply(self, fd: BorrowedFd<'_>) -> nix::Result<()> {
        if self.uid.is_some() || self.gid.is_some() {
            nix::unistd::fchown(fd, self.uid.map(Uid::from_raw), self.gid.map(Gid::from_raw))?;
        }
        nix::sys::stat::fchmod(fd, Mode::from_bits_truncate(self.mode & 0o7777))
    }
}

/// What to do with a directory that already exists when asked to ensure it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Existing {
    /// It is fleetcert's own: refuse it when another user owns it (someone made it first, to
    /// own what fleetcert puts there), else give it the owner and mode again.
    Enforce,
    /// It may be the operator's: leave its mode, but refuse it when it belongs to anyone but
    /// root or the process's user, or when others may write in it, sticky or not (they could
    /// swap, or make first, what fleetcert puts there).
    RefuseIfOthersWrite,
    /// A directory above the one asked for, where fleetcert only creates that one: like
    /// [`Existing::RefuseIfOthersWrite`], but a sticky directory that others may write in
    /// (`/tmp`) is fine, since they cannot rename or remove what fleetcert makes there.
    Ancestor,
}

/// A directory opened once and used by descriptor (see the module doc).
#[derive(Debug)]
pub(crate) struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

impl AsFd for Dir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Reads at most `limit` bytes from `path` (an input the operator names: config, CA bundle,
/// token file); more is refused, so `/dev/zero` or a runaway file costs nothing.
pub(crate) fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, StoreError> {
    let file = File::open(path).map_err(|err| StoreError::io("read", path, err))?;
    read_limited(file, path, limit)
}

/// Reads standard input, at most `limit` bytes.
pub(crate) fn read_stdin(limit: u64) -> Result<Vec<u8>, StoreError> {
    read_limited(io::stdin().lock(), Path::new("stdin"), limit)
}

fn read_limited(reader: impl io::Read, path: &Path, limit: u64) -> Result<Vec<u8>, StoreError> {
    let mut bytes = Vec::new();
    reader
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|err| StoreError::io("read", path, err))?;
    if bytes.len() as u64 > limit {
        return Err(StoreError::TooLarge {
            path: shown_path(path),
            limit: limit >> 20,
        });
    }
    Ok(bytes)
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

    /// Replaces `name` with `contents` (see the module doc).
    pub(crate) fn write_atomic(
        &self,
        name: &str,
        contents: &[u8],
        access: Access,
    ) -> Result<(), StoreError> {
        self.stage(name, contents, access)?.commit()?;
        self.sync()
    }

    /// Writes `contents` under a temporary name beside `name`, flushed and with its final
    /// owner and mode, not yet in place; [`Staged::commit`] renames it over `name`.
    pub(crate) fn stage(
        &self,
        name: &str,
        contents: &[u8],
        access: Access,
    ) -> Result<Staged<'_>, StoreError> {
        // Replacing a symlink would not follow it, but someone put it there for a reason
        // fleetcert does not know: say so rather than quietly replace it.
        if let Some(stat) = self.stat_at(name)?
            && SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFLNK
        {
            return Err(open_error(&self.path.join(name), Errno::ELOOP));
        }
        let (temp, file) = self.create_temp(name)?;
        let mut staged = Staged {
            dir: self,
            temp,
            name: name.to_owned(),
            file,
            committed: false,
        };
        let path = self.path.join(&staged.temp);
        staged
            .file
            .write_all(contents)
            .and_then(|()| staged.file.sync_all())
            .map_err(|err| StoreError::io("write", &path, err))?;
        access
            .apply(staged.file.as_fd())
            .map_err(|errno| StoreError::io("set the mode of", &path, errno))?;
        crash_point!("store.staged", name);
        Ok(staged)
    }

    /// Creates a new file under a fresh temporary name beside `name`, mode 0600.
    fn create_temp(&self, name: &str) -> Result<(String, File), StoreError> {
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        for attempt in 0u32..16 {
            let temp = temp_name(name, attempt);
            match nix::fcntl::openat(
                &self.fd,
                temp.as_str(),
                flags,
                Mode::from_bits_truncate(0o600),
            ) {
                Ok(fd) => return Ok((temp, File::from(fd))),
                Err(Errno::EEXIST) => {}
                Err(errno) => return Err(StoreError::io("create", &self.path.join(&temp), errno)),
            }
        }
        Err(StoreError::unsafe_file(
            &self.path.join(name),
            "cannot get a fresh temporary name beside it (16 taken): is someone planting files there?",
        ))
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

    /// Makes `name` a symlink to `target`, replacing what is there in one rename.
    pub(crate) fn symlink_atomic(&self, target: &str, name: &str) -> Result<(), StoreError> {
        for attempt in 0u32..16 {
            let temp = temp_name(name, attempt);
            match nix::unistd::symlinkat(target, &self.fd, temp.as_str()) {
                Ok(()) => {
                    let renamed = self.rename(&temp, name);
                    if renamed.is_err() {
                        let _ = self.remove(&temp);
                    }
                    return renamed;
                }
                Err(Errno::EEXIST) => {}
                Err(errno) => return Err(StoreError::io("create", &self.path.join(&temp), errno)),
            }
        }
        Err(StoreError::unsafe_file(
            &self.path.join(name),
            "cannot get a fresh temporary name beside it",
        ))
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

    /// Removes temporary files that writers killed mid-write left behind (their pid is gone).
    pub(crate) fn sweep(&self) -> Result<(), StoreError> {
        self.sweep_where(|_| true)
    }

    /// Like [`Dir::sweep`], but only the temporaries of the file `name`: for a directory
    /// fleetcert shares with other tools, whose temporaries are theirs to sweep.
    pub(crate) fn sweep_temporaries_of(&self, name: &str) -> Result<(), StoreError> {
        let prefix = format!(".{name}{TEMP_MARK}");
        self.sweep_where(|entry| entry.starts_with(&prefix))
    }

    fn sweep_where(&self, ours: impl Fn(&str) -> bool) -> Result<(), StoreError> {
        for name in self.entries()? {
            if ours(&name)
                && let Some(pid) = temp_owner(&name)
                && !process_alive(pid)
            {
                tracing::debug!(dir = %self.path.display(), file = %bare(&name, 80), "removing a temporary file a killed run left");
                match self.stat_at(&name)? {
                    Some(stat) if is_dir(&stat) => self.remove_tree(&name)?,
                    Some(_) => self.remove(&name)?,
                    None => {}
                }
            }
        }
        Ok(())
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

    /// Proves that a small file can be created, written and flushed here now (a full disk or
    /// a read-only mount fails this), and removes it again.
    pub(crate) fn probe(&self) -> Result<(), StoreError> {
        /// About the size of the state files this stands in for.
        const PROBE_BYTES: usize = 4096;
        let (temp, mut file) = self.create_temp("probe")?;
        let written = file
            .write_all(&[0u8; PROBE_BYTES])
            .and_then(|()| file.sync_all());
        drop(file);
        self.remove(&temp)?;
        written.map_err(|err| StoreError::io("write", &self.path.join(&temp), err))
    }

    /// Makes the renames in this directory durable.
    pub(crate) fn sync(&self) -> Result<(), StoreError> {
        nix::unistd::fsync(&self.fd).map_err(|errno| StoreError::io("sync", &self.path, errno))
    }

    /// A versioned JSON state file (see [`Versioned`]); `None` when it does not exist.
    pub(crate) fn load_state<T: Versioned>(&self, name: &str) -> Result<Option<T>, StoreError> {
        let Some(bytes) = self.read_optional(name, T::MAX_BYTES)? else {
            return Ok(None);
        };
        let path = self.path.join(name);
        let state = |problem: String| StoreError::State {
            path: shown_path(&path),
            problem,
        };
        #[derive(serde::Deserialize)]
        struct Peek {
            version: u32,
        }
        let peek: Peek = serde_json::from_slice(&bytes).map_err(|err| {
            state(format!(
                "is not {} ({})",
                T::WHAT,
                bare(&err.to_string(), 200)
            ))
        })?;
        if peek.version != T::VERSION {
            return Err(state(format!(
                "has version {}, this fleetcert reads {}: use the matching fleetcert",
                peek.version,
                T::VERSION
            )));
        }
        serde_json::from_slice(&bytes).map(Some).map_err(|err| {
            state(format!(
                "is not {} ({})",
                T::WHAT,
                bare(&err.to_string(), 200)
            ))
        })
    }

    /// Writes a versioned JSON state file atomically, 0600.
    pub(crate) fn save_state<T: Versioned>(&self, name: &str, state: &T) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec_pretty(state).map_err(|err| StoreError::State {
            path: shown_path(&self.path.join(name)),
            problem: format!("cannot be written: {err}"),
        })?;
        self.write_atomic(name, &bytes, Access::private(SECRET_MODE))
    }
}

/// A JSON state file fleetcert keeps: it carries `version` at the top level, and a file of
/// another version is refused with that said, not as a parse error.
pub(crate) trait Versioned: Serialize + DeserializeOwned {
    /// The version this build reads and writes.
    const VERSION: u32;
    /// What the file is, for messages ("an ACME account file").
    const WHAT: &'static str;
    /// The most bytes it may hold.
    const MAX_BYTES: u64 = 16 << 20;
}

/// A fully written temporary file waiting to replace its target. Dropped uncommitted, it is
/// removed and the target is untouched.
#[derive(Debug)]
pub(crate) struct Staged<'d> {
    dir: &'d Dir,
    temp: String,
    name: String,
    /// The file as created: whoever can write in the directory can swap the name for
    /// something else, never this descriptor.
    file: File,
    committed: bool,
}

impl Staged<'_> {
    /// Renames the temporary file over the target (flush the directory afterwards), once it
    /// is sure that the name still holds the file it created: in a directory others may
    /// write in (a zone directory), they could have swapped it for a link since.
    pub(crate) fn commit(mut self) -> Result<(), StoreError> {
        let ours = nix::sys::stat::fstat(&self.file)
            .map_err(|errno| StoreError::io("inspect", &self.dir.path.join(&self.temp), errno))?;
        match self.dir.stat_at(&self.temp)? {
            Some(now) if (now.st_dev, now.st_ino) == (ours.st_dev, ours.st_ino) => {}
            _ => {
                return Err(StoreError::unsafe_file(
                    &self.dir.path.join(&self.temp),
                    "was replaced by someone else while fleetcert wrote it: another user can \
                     write in this directory; nothing was put in place",
                ));
            }
        }
        self.dir.rename(&self.temp, &self.name)?;
        self.committed = true;
        Ok(())
    }

    /// A path that opens exactly the staged file, for tools that check it before it goes in
    /// place: through this process's descriptor (`/proc/<pid>/fd/<n>`), so that nobody who
    /// can write in the directory can make the tool read another file by swapping the
    /// temporary name. The temporary name where `/proc` is missing.
    pub(crate) fn temp_path(&self) -> PathBuf {
        let by_descriptor = PathBuf::from(format!(
            "/proc/{}/fd/{}",
            std::process::id(),
            self.file.as_raw_fd()
        ));
        if by_descriptor.exists() {
            by_descriptor
        } else {
            self.dir.path.join(&self.temp)
        }
    }
}

impl Drop for Staged<'_> {
    fn drop(&mut self) {
        if !self.committed {
            let _ = self.dir.remove(&self.temp);
        }
    }
}

fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

fn is_dir(stat: &FileStat) -> bool {
    SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFDIR
}

/// The error for an `open` that failed: a symlink in the way gets its own line.
fn open_error(path: &Path, errno: Errno) -> StoreError {
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

/// `.<name>.tmp.<pid>.<nanos><attempt>`: hidden, unique, and naming its writer.
fn temp_name(name: &str, attempt: u32) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.subsec_nanos());
    format!(".{name}{TEMP_MARK}{}.{nanos}{attempt}", std::process::id())
}

/// The pid in a temporary name made by [`temp_name`], if `name` is one; also in the
/// `.<name>.tmp.<pid>` that fleetcert wrote before the install by descriptor, so that what a
/// killed run of an older build left behind goes too.
fn temp_owner(name: &str) -> Option<i32> {
    let rest = name.strip_prefix('.')?;
    let (_, tail) = rest.rsplit_once(TEMP_MARK)?;
    let (pid, nanos) = tail.split_once('.').unwrap_or((tail, "0"));
    if nanos.is_empty()
        || !nanos.bytes().all(|b| b.is_ascii_digit())
        || !pid.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    pid.parse().ok()
}

fn process_alive(pid: i32) -> bool {
    !matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Err(Errno::ESRCH)
    )
}

/// A secret file the operator named (a CA key, a TSIG secret, a password file) that fleetcert
/// will not read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SecretError {
    /// Nothing at the path.
    #[error("does not exist")]
    Missing,
    /// A symbolic link: it could lead to any file the running user may read.
    #[error(
        "is a symbolic link: give the path of the file itself (a link could lead fleetcert to \
         any file it may read)"
    )]
    Link,
    /// The system refused or failed.
    #[error("cannot be read: {0}")]
    Unreadable(io::Error),
    /// A directory, a FIFO, a device.
    #[error("is not a regular file")]
    NotAFile,
    /// Owned by someone other than the running user or root, who could change it at will.
    #[error(
        "belongs to uid {owner}, not to root or the user fleetcert runs as (uid {us}): its \
         owner could change the secret; chown it to one of them"
    )]
    Owner { owner: u32, us: u32 },
}

/// Opens a secret the operator named, for reading, as fleetcert trusts one: the file itself,
/// never a symbolic link (`O_NOFOLLOW`), never blocking on a FIFO, a regular file owned by
/// the running user or root. Its mode is each caller's to check, on the returned metadata
/// (of what was opened, not of a path that could be swapped in between).
pub(crate) fn open_secret(path: &Path) -> Result<(File, std::fs::Metadata), SecretError> {
    use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
    let file = File::options()
        .read(true)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK).bits())
        .open(path)
        .map_err(|err| match err.kind() {
            io::ErrorKind::NotFound => SecretError::Missing,
            _ if err.raw_os_error() == Some(Errno::ELOOP as i32) => SecretError::Link,
            _ => SecretError::Unreadable(err),
        })?;
    let meta = file.metadata().map_err(SecretError::Unreadable)?;
    if !meta.file_type().is_file() {
        return Err(SecretError::NotAFile);
    }
    let us = nix::unistd::geteuid().as_raw();
    if meta.uid() != us && meta.uid() != 0 {
        return Err(SecretError::Owner {
            owner: meta.uid(),
            us,
        });
    }
    Ok((file, meta))
}

/// A name fleetcert may create in a directory: one plain path component.
pub(crate) fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains('/')
        && !name.as_bytes().contains(&0)
        && Path::new(name).as_os_str().as_bytes().len() <= 255
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_secret_is_the_file_itself_and_belongs_to_root_or_the_running_user() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "s3cret\n").expect("write");
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert!(open_secret(&secret).is_ok());
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&secret, &link).expect("link");
        assert!(matches!(open_secret(&link), Err(SecretError::Link)));
        assert!(matches!(
            open_secret(&dir.path().join("missing")),
            Err(SecretError::Missing)
        ));
        assert!(matches!(
            open_secret(dir.path()),
            Err(SecretError::NotAFile)
        ));
        // Another user's file: only root can give one away, as the tests run in CI.
        if nix::unistd::geteuid().is_root() {
            nix::unistd::chown(&secret, Some(Uid::from_raw(4242)), None).expect("chown");
            let err = open_secret(&secret).expect_err("foreign owner");
            assert!(
                matches!(err, SecretError::Owner { owner: 4242, .. }),
                "{err}"
            );
        }
    }
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path)
            .expect("stat")
            .permissions()
            .mode()
            & 0o7777
    }

    #[test]
    // The umask is process-wide and the tests run in parallel, so these run under the
    // test's own umask; tests/integration/security.rs runs the binary under umask 000.
    fn atomic_write_sets_the_mode_explicitly_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Dir::open(dir.path()).expect("open");
        store
            .write_atomic("privkey.pem", b"one", Access::private(KEY_MODE))
            .expect("write");
        store
            .write_atomic("privkey.pem", b"two", Access::private(KEY_MODE))
            .expect("write");
        let path = dir.path().join("privkey.pem");
        assert_eq!(std::fs::read(&path).expect("read"), b"two");
        assert_eq!(mode(&path), KEY_MODE);
        assert_eq!(store.entries().expect("list"), ["privkey.pem"]);
    }

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
    fn a_temporary_swapped_while_staged_is_not_put_in_place_nor_read_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").expect("write");
        let store = Dir::open(dir.path()).expect("open");
        let staged = store
            .stage("zone.db", b"new zone", Access::private(SECRET_MODE))
            .expect("stage");
        let temp = store
            .entries()
            .expect("list")
            .into_iter()
            .find(|name| name.starts_with(".zone.db"))
            .expect("a temporary");
        // Someone who may write here swaps the temporary for a link.
        std::fs::remove_file(dir.path().join(&temp)).expect("unlink");
        std::os::unix::fs::symlink(&victim, dir.path().join(&temp)).expect("link");
        // A checker given the staged file's path still reads what was staged.
        assert_eq!(
            std::fs::read(staged.temp_path()).expect("read"),
            b"new zone"
        );
        let err = staged.commit().expect_err("swapped");
        assert!(
            err.is_refusal() && err.to_string().contains("replaced"),
            "{err}"
        );
        assert!(
            !dir.path().join("zone.db").exists(),
            "the link went in place"
        );
        assert_eq!(std::fs::read(&victim).expect("read"), b"precious");
    }

    #[test]
    fn a_dropped_stage_leaves_the_target_and_no_temporary() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Dir::open(dir.path()).expect("open");
        store
            .write_atomic("cert.pem", b"old", Access::private(SECRET_MODE))
            .expect("write");
        drop(
            store
                .stage("cert.pem", b"new", Access::private(SECRET_MODE))
                .expect("stage"),
        );
        assert_eq!(
            std::fs::read(dir.path().join("cert.pem")).expect("read"),
            b"old"
        );
        assert_eq!(store.entries().expect("list"), ["cert.pem"]);
    }

    #[test]
    fn temporaries_of_dead_writers_are_swept_and_live_ones_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Dir::open(dir.path()).expect("open");
        // pid 2^22+1 is above Linux's pid_max default: never alive.
        let dead = format!(".privkey.pem{TEMP_MARK}4194305.123");
        let live = format!(".privkey.pem{TEMP_MARK}{}.123", std::process::id());
        for name in [&dead, &live, &"keep.pem".to_owned()] {
            std::fs::write(dir.path().join(name), b"x").expect("write");
        }
        store.sweep().expect("sweep");
        let mut expected = vec![live, "keep.pem".to_owned()];
        expected.sort();
        assert_eq!(store.entries().expect("list"), expected);
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

    #[test]
    fn bounded_reads_refuse_endless_input() {
        let err = read_bounded(Path::new("/dev/zero"), 1 << 20).expect_err("endless");
        assert!(matches!(err, StoreError::TooLarge { .. }), "{err}");
        assert!(err.is_refusal());
    }

    #[test]
    fn temp_names_name_their_writer() {
        let name = temp_name("zone.db", 3);
        assert_eq!(
            temp_owner(&name),
            Some(i32::try_from(std::process::id()).expect("pid"))
        );
        assert_eq!(temp_owner("zone.db"), None);
        assert_eq!(temp_owner(".zone.db.tmp.12.x"), None);
        assert_eq!(temp_owner(".zone.db.tmp.+12"), None);
        // What an older build left: `.<name>.tmp.<pid>`.
        assert_eq!(temp_owner(".privkey.pem.tmp.4194305"), Some(4_194_305));
    }
}
