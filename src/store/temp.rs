//! Temporary names (`.<name>.tmp.<pid>.<nanos><attempt>`: hidden, unique, naming their
//! writer) and sweeping the ones a killed writer left behind.

use std::time::{SystemTime, UNIX_EPOCH};

use nix::errno::Errno;

use super::dir::is_dir;
use super::{Dir, StoreError};
use crate::shown::{MAX_VALUE, bare};

/// The part of a temporary name between the target's name and the writer's pid.
const TEMP_MARK: &str = ".tmp.";

impl Dir {
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
                tracing::debug!(dir = %self.path.display(), file = %bare(&name, MAX_VALUE), "removing a temporary file a killed run left");
                match self.stat_at(&name)? {
                    Some(stat) if is_dir(&stat) => self.remove_tree(&name)?,
                    Some(_) => self.remove(&name)?,
                    None => {}
                }
            }
        }
        Ok(())
    }
}

/// `.<name>.tmp.<pid>.<nanos><attempt>`: hidden, unique, and naming its writer.
pub(super) fn temp_name(name: &str, attempt: u32) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

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
