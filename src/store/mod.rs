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
//!
//! One noun a file: [`Dir`] (a directory by descriptor: open, read, list, remove), `replace`
//! (a file or link replaced atomically through a [`Staged`](replace::Staged) temporary), `temp` (temporary
//! names and sweeping what killed writers left), `state` (versioned JSON state, [`Versioned`])
//! and `secret` (a secret the operator named, [`open_secret`]). This file holds what they
//! share: the modes, the error, [`Access`] and the bounded reads.

mod dir;
mod replace;
mod secret;
mod state;
mod temp;

use std::fs::File;
use std::io::{self, Read as _};
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;

use nix::sys::stat::Mode;
use nix::unistd::{Gid, Uid};

use crate::shown::path as shown_path;

pub(crate) use dir::Dir;
pub(crate) use secret::{SecretError, open_secret};
pub(crate) use state::Versioned;

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
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    /// The permission bits of `path` itself (a link is not followed).
    pub(super) fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path)
            .expect("stat")
            .permissions()
            .mode()
            & 0o7777
    }

    #[test]
    fn bounded_reads_refuse_endless_input() {
        let err = read_bounded(Path::new("/dev/zero"), 1 << 20).expect_err("endless");
        assert!(matches!(err, StoreError::TooLarge { .. }), "{err}");
        assert!(err.is_refusal());
    }
}
