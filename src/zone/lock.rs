//! The publish lock: an `flock` on `<zone_file>.lock` around read, render, reload and wait.
//!
//! Two publishes started at once (two playbooks, a retry) would otherwise both read the same
//! ledger and the second would drop the first one's hosts. The holder writes its pid into the
//! lock file, so a publish that gives up after `lock_timeout` can say who holds it. The kernel
//! drops an `flock` when its holder dies, so a crashed publish never leaves a stale lock.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use super::ZoneError;
use crate::store::{SECRET_MODE, StoreError};

/// First pause between attempts to take a held lock.
const FIRST_RETRY: Duration = Duration::from_millis(10);
/// Longest pause between attempts: a publish takes a second or so, poll well within that.
const MAX_RETRY: Duration = Duration::from_millis(200);

/// A held publish lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub(crate) struct ZoneLock {
    _file: Flock<File>,
}

impl ZoneLock {
    /// Where the lock of `zone_file` lives.
    pub(crate) fn path_for(zone_file: &Path) -> PathBuf {
        let mut name = zone_file.as_os_str().to_owned();
        name.push(".lock");
        PathBuf::from(name)
    }

    /// Takes the lock of `zone_file`, waiting up to `timeout` for another holder.
    pub(crate) async fn acquire(zone_file: &Path, timeout: Duration) -> Result<Self, ZoneError> {
        let path = Self::path_for(zone_file);
        let started = Instant::now();
        let mut pause = FIRST_RETRY;
        let mut logged = false;
        loop {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(SECRET_MODE)
                .open(&path)
                .map_err(|err| StoreError::new("cannot open the lock", &path, err))?;
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(mut locked) => {
                    write_pid(&mut locked)
                        .map_err(|err| StoreError::new("cannot write the lock", &path, err))?;
                    return Ok(Self { _file: locked });
                }
                Err((mut file, Errno::EWOULDBLOCK)) => {
                    let holder = read_pid(&mut file);
                    if started.elapsed() >= timeout {
                        return Err(ZoneError::Locked {
                            path,
                            holder,
                            waited: started.elapsed(),
                        });
                    }
                    if !logged {
                        tracing::info!(lock = %path.display(), holder, "waiting for another publish");
                        logged = true;
                    }
                }
                Err((_, errno)) => {
                    return Err(StoreError::new("cannot lock", &path, errno.into()).into());
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
    let _ = file.read_to_string(&mut text);
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
        let zone = dir.path().join("zone.db");
        let first = ZoneLock::acquire(&zone, Duration::ZERO)
            .await
            .expect("first");
        let err = ZoneLock::acquire(&zone, Duration::from_millis(50))
            .await
            .expect_err("held");
        let message = err.to_string();
        assert!(
            message.contains(&format!("pid {}", std::process::id())),
            "{message}"
        );
        drop(first);
        ZoneLock::acquire(&zone, Duration::ZERO)
            .await
            .expect("released");
    }
}
