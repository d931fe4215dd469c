//! Replacing a file or a symlink atomically: the new content is written under a fresh
//! temporary name beside the target ([`Staged`]), flushed and given its owner and mode, then
//! renamed over the target once it is sure the name still holds what it wrote.

use std::fs::File;
use std::io::Write as _;
use std::os::fd::{AsFd as _, AsRawFd as _};
use std::path::PathBuf;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::{Mode, SFlag};

use super::dir::open_error;
use super::temp::temp_name;
use super::{Access, Dir, StoreError};

impl Dir {
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

#[cfg(test)]
mod tests {
    use super::super::tests::mode;
    use super::super::{KEY_MODE, SECRET_MODE};
    use super::*;

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
}
