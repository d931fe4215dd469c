//! A lock between runs of fleetcert: an `flock` on a lock file, held for the whole run.
//!
//! Two publishes started at once (two playbooks, a retry) would otherwise both read the same
//! ledger and the second would drop the first one's hosts; two `finalize` runs on one host
//! would complete the same order and delete each other's key. The holder writes its pid into
//! the lock file, so a run that gives up after its timeout can say who holds it. The kernel
//! drops an `flock` when its holder dies, so a crashed run never leaves a stale lock. The file
//! is opened through its directory's descriptor and must be the process's own single-link
//! regular file (a planted symlink or hard link is refused, never truncated).

use std::fs::File;
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::store::{Dir, StoreError};

/// First pause between attempts to take a held lock.
const FIRST_RETRY: Duration = Duration::from_millis(10);
/// Longest pause between attempts: a publish takes a second or so, poll well within that.
const MAX_RETRY: Duration = Duration::from_millis(200);

/// A held lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub(crate) struct Lock {
    _file: Flock<File>,
}

/// The lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LockError {
    /// Another run holds it for longer than the timeout.
    #[error(
        "another fleetcert run (pid {holder}) holds {path} and did not finish within {}s: \
         wait for it, or raise the lock timeout",
        waited.as_secs()
    )]
    Held {
        path: String,
        holder: String,
        waited: Duration,
    },
    /// The lock file cannot be used.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Lock {
    /// Takes the lock `name` in `dir`, waiting up to `timeout` for another holder.
    pub(crate) async fn acquire(
        dir: &Dir,
        name: &str,
        timeout: Duration,
    ) -> Result<Self, LockError> {
        let path = dir.path().join(name);
        let started = Instant::now();
        let mut pause = FIRST_RETRY;
        let mut logged = false;
        loop {
            let file = dir.open_lock(name)?;
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(mut locked) => {
                    write_pid(&mut locked).map_err(|err| StoreError::Io {
                        action: "write the lock",
                        path: crate::shown::path(&path),
                        source: err,
                    })?;
                    return Ok(Self { _file: locked });
                }
                Err((mut file, Errno::EWOULDBLOCK)) => {
                    let holder = read_pid(&mut file);
                    if started.elapsed() >= timeout {
                        return Err(LockError::Held {
                            path: crate::shown::path(&path),
                            holder,
                            waited: started.elapsed(),
                        });
                    }
                    if !logged {
                        tracing::info!(lock = %path.display(), holder, "waiting for another fleetcert run");
                        logged = true;
                    }
                }
                Err((_, errno)) => {
                    return Err(StoreError::Io {
                        action: "lock",
                        path: crate::shown::path(&path),
                        source: errno.into(),
                    }
                    .into());
                }
            }
            tokio::time::sleep(pause.min(timeout.saturating_sub(started.elapsed()))).await;
            pause = (pause * 2).min(MAX_RETRY);
        }
    }
}

fn write_pid(file: &mut File) -> std::io::Result<()> {
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    writeln!(file, "{}", std::process::id())
}

/// The holder's pid as it wrote it, or "unknown" (it may be between lock and write).
fn read_pid(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.take(32).read_to_string(&mut text);
    let pid = text.trim();
    if !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) {
        pid.to_owned()
    } else {
        "unknown".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn second_holder_waits_then_fails_naming_the_pid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = Dir::open(dir.path()).expect("open");
        let first = Lock::acquire(&home, "zone.db.lock", Duration::ZERO)
            .await
            .expect("first");
        let err = Lock::acquire(&home, "zone.db.lock", Duration::from_millis(50))
            .await
            .expect_err("held");
        let message = err.to_string();
        assert!(
            message.contains(&format!("pid {}", std::process::id())),
            "{message}"
        );
        drop(first);
        Lock::acquire(&home, "zone.db.lock", Duration::ZERO)
            .await
            .expect("released");
    }
}
