//! Replacing the zone file and reloading the server, with a way back.
//!
//! The new zone is written to a temporary file beside the old one and checked there
//! (`named-checkzone` when installed and `check_zone` is on). Then the old file is hard-linked
//! to `<zone_file>.prev`, the new one renamed over it — the zone file is never missing, not
//! even for a moment — and the `reload` argv runs without a shell. When the reload fails, the
//! previous zone goes back in place and is reloaded, so the servers keep serving what they
//! served before.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use super::ZoneError;
use crate::store::{self, StoreError};

/// Mode of a new zone file when there is no old one to copy it from: the server must read it.
const ZONE_MODE: u32 = 0o644;
/// How long the reload command may run; `rndc reload` returns in milliseconds.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `named-checkzone` may run; it checks 10,000 records in about 0.1 s.
const CHECK_TIMEOUT: Duration = Duration::from_secs(60);
/// Where `named-checkzone` lives when it is not on PATH (Debian puts it in /usr/bin, others in
/// /usr/sbin, which a non-root PATH lacks).
const CHECKZONE_DIRS: [&str; 3] = ["/usr/bin", "/usr/sbin", "/usr/local/sbin"];

/// Whether to run `named-checkzone` on the rendered zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CheckZone {
    /// Run it when it is installed.
    WhenInstalled,
    /// Never run it (`check_zone: false`).
    Off,
}

/// The reload command failed; says what was done about it.
#[derive(Debug, thiserror::Error)]
#[error("reload command `{command}` failed ({reason}); {aftermath}")]
pub(crate) struct ReloadFailure {
    command: String,
    reason: String,
    aftermath: String,
}

/// A rendered zone written beside the zone file, not yet in place. Removed when dropped.
#[derive(Debug)]
pub(crate) struct StagedZone {
    temp: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl Drop for StagedZone {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

impl StagedZone {
    /// Writes `contents` beside `zone_file` with the old file's mode and owner.
    pub(crate) fn write(zone_file: &Path, contents: &[u8]) -> Result<Self, ZoneError> {
        let name = zone_file
            .file_name()
            .map_or_else(|| "zone".into(), |n| n.to_string_lossy());
        let temp = zone_file.with_file_name(format!(".{name}.fleetcert.{}", std::process::id()));
        let old = fs::metadata(zone_file).ok();
        let mode = old
            .as_ref()
            .map_or(ZONE_MODE, |meta| meta.permissions().mode() & 0o7777);
        let staged = Self {
            temp,
            target: zone_file.to_owned(),
            committed: false,
        };
        let write = || -> std::io::Result<()> {
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(mode)
                .open(&staged.temp)?;
            file.set_permissions(fs::Permissions::from_mode(mode))?;
            file.write_all(contents)?;
            file.sync_all()
        };
        write().map_err(|err| StoreError::new("cannot write", &staged.temp, err))?;
        if let Some(meta) = old {
            // Keep the server's ownership of its zone file. Only root may give a file away;
            // anyone else writes files the server can read by their mode, so ignore EPERM.
            let owner = nix::unistd::Uid::from_raw(meta.uid());
            let group = nix::unistd::Gid::from_raw(meta.gid());
            if let Err(err) = nix::unistd::chown(&staged.temp, Some(owner), Some(group)) {
                tracing::debug!(file = %staged.temp.display(), %err, "cannot keep the zone file's owner");
            }
        }
        Ok(staged)
    }

    /// Runs `named-checkzone` on the staged file, when wanted and installed.
    pub(crate) async fn check(&self, zone: &str, policy: CheckZone) -> Result<bool, ZoneError> {
        if policy == CheckZone::Off {
            return Ok(false);
        }
        let Some(program) = find_checkzone() else {
            tracing::debug!("named-checkzone is not installed; relying on fleetcert's own check");
            return Ok(false);
        };
        let mut command = tokio::process::Command::new(&program);
        command.arg(zone).arg(&self.temp);
        let output = run(command, CHECK_TIMEOUT).await;
        match output {
            Ok(output) if output.status.success() => Ok(true),
            Ok(output) => Err(ZoneError::CheckZone {
                zone: zone.to_owned(),
                output: summary(&output.stdout, &output.stderr),
            }),
            Err(reason) => Err(ZoneError::CheckZone {
                zone: zone.to_owned(),
                output: format!("{} could not run: {reason}", program.display()),
            }),
        }
    }

    /// Puts the staged file in place, keeping the old one as `.prev`.
    fn commit(mut self) -> Result<(), ZoneError> {
        if self.target.exists() {
            let prev = sibling(&self.target, ".prev");
            let link = sibling(&self.target, &format!(".prev.{}", std::process::id()));
            let _ = fs::remove_file(&link);
            fs::hard_link(&self.target, &link)
                .or_else(|_| fs::copy(&self.target, &link).map(|_| ()))
                .map_err(|err| StoreError::new("cannot keep the previous zone as", &link, err))?;
            fs::rename(&link, &prev)
                .map_err(|err| StoreError::new("cannot keep the previous zone as", &prev, err))?;
        }
        fs::rename(&self.temp, &self.target)
            .map_err(|err| StoreError::new("cannot replace", &self.target, err))?;
        self.committed = true;
        if let Some(dir) = self.target.parent().filter(|d| !d.as_os_str().is_empty()) {
            store::sync_dir(dir)?;
        }
        Ok(())
    }
}

/// Puts `staged` in place of the zone file and runs `reload`. When the reload fails, the
/// previous zone (`old`, or no file when there was none) goes back and is reloaded.
pub(crate) async fn replace_and_reload(
    staged: StagedZone,
    old: Option<&[u8]>,
    reload: &[String],
) -> Result<(), ZoneError> {
    let zone_file = staged.target.clone();
    staged.commit()?;
    let Err(reason) = run_reload(reload).await else {
        return Ok(());
    };
    // Info, not warn: the error line that follows says the same and what was done about it.
    tracing::info!(zone_file = %zone_file.display(), reason, "reload failed; restoring the previous zone");
    let aftermath = match old {
        Some(bytes) => {
            let restored = put_back(&zone_file, bytes);
            match restored {
                Err(err) => format!("restoring the previous zone failed too: {err}"),
                Ok(()) => match run_reload(reload).await {
                    Ok(()) => "the previous zone was put back and reloaded: fix `reload` in the \
                               zone config (or the server) and publish again"
                        .to_owned(),
                    // The same failure twice is the command's fault (a wrong zone name, a
                    // missing key): the server never loaded the new file, so it still serves
                    // the previous zone, and `reload` is what to fix.
                    Err(again) if again == reason => "the previous zone was put back; \
                         reloading it failed the same way, so the server still serves the zone \
                         it served before: fix `reload` in the zone config and publish again"
                        .to_owned(),
                    Err(again) => format!(
                        "the previous zone was put back, but reloading it failed too ({again}): \
                         check the server"
                    ),
                },
            }
        }
        None => match fs::remove_file(&zone_file) {
            Ok(()) => "there was no previous zone file, so the new one was removed: fix \
                       `reload` in the zone config and publish again"
                .to_owned(),
            Err(err) => format!("removing the new zone file failed: {err}"),
        },
    };
    Err(ReloadFailure {
        command: reload.join(" "),
        reason,
        aftermath,
    }
    .into())
}

/// Runs `reload` for a zone file that is already in place (one that no server has loaded yet,
/// say after a publish died between replacing the file and reloading). Nothing to restore.
pub(crate) async fn reload(reload: &[String]) -> Result<(), ZoneError> {
    run_reload(reload).await.map_err(|reason| {
        ReloadFailure {
            command: reload.join(" "),
            reason,
            aftermath: "the zone file was not changed: fix `reload` in the zone config (or the \
                        server) and publish again"
                .to_owned(),
        }
        .into()
    })
}

/// Writes `bytes` back as the zone file, leaving `.prev` alone (it holds the same bytes).
fn put_back(zone_file: &Path, bytes: &[u8]) -> Result<(), ZoneError> {
    let mut back = StagedZone::write(zone_file, bytes)?;
    fs::rename(&back.temp, zone_file)
        .map_err(|err| StoreError::new("cannot restore", zone_file, err))?;
    back.committed = true;
    Ok(())
}

/// Runs the reload argv; `Err` carries one line saying why it failed.
async fn run_reload(argv: &[String]) -> Result<(), String> {
    let Some((program, args)) = argv.split_first() else {
        return Err("the command is empty".to_owned());
    };
    let mut command = tokio::process::Command::new(program);
    command.args(args);
    let output = run(command, RELOAD_TIMEOUT).await?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            output.status,
            summary(&output.stdout, &output.stderr)
        ))
    }
}

/// Runs a command with its output captured, killing it after `timeout`.
async fn run(
    mut command: tokio::process::Command,
    timeout: Duration,
) -> Result<std::process::Output, String> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = command
        .spawn()
        .map_err(|err| format!("cannot start: {err}"))?;
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(result) => result.map_err(|err| err.to_string()),
        Err(_) => Err(format!("no exit within {}s", timeout.as_secs())),
    }
}

/// The interesting lines of a command's output, joined into one line.
fn summary(stdout: &[u8], stderr: &[u8]) -> String {
    /// Enough for named-checkzone's first few complaints.
    const MAX_SUMMARY: usize = 400;
    let text = format!(
        "{} {}",
        String::from_utf8_lossy(stderr),
        String::from_utf8_lossy(stdout)
    );
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && *line != "OK")
        .collect();
    let mut joined = lines.join("; ");
    if joined.is_empty() {
        joined = "no output".to_owned();
    }
    if joined.len() > MAX_SUMMARY {
        let cut = (0..=MAX_SUMMARY)
            .rev()
            .find(|&i| joined.is_char_boundary(i))
            .unwrap_or(0);
        joined.truncate(cut);
        joined.push_str("...");
    }
    joined.chars().filter(|c| !c.is_control()).collect()
}

fn find_checkzone() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(CHECKZONE_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join("named-checkzone"))
        .find(|candidate| candidate.is_file())
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| (*w).to_owned()).collect()
    }

    #[tokio::test]
    async fn replaces_and_keeps_prev() {
        let dir = tempfile::tempdir().expect("tempdir");
        let zone = dir.path().join("zone.db");
        fs::write(&zone, "old\n").expect("write");
        let staged = StagedZone::write(&zone, b"new\n").expect("stage");
        replace_and_reload(staged, Some(b"old\n"), &argv(&["true"]))
            .await
            .expect("replace");
        assert_eq!(fs::read(&zone).expect("read"), b"new\n");
        assert_eq!(fs::read(sibling(&zone, ".prev")).expect("read"), b"old\n");
        assert_eq!(
            fs::read_dir(dir.path()).expect("list").count(),
            2,
            "leftovers"
        );
    }

    #[tokio::test]
    async fn failed_reload_restores_the_previous_zone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let zone = dir.path().join("zone.db");
        fs::write(&zone, "old\n").expect("write");
        let count = dir.path().join("count");
        // Fails the first time, succeeds the second: the restored zone is reloaded.
        let script = format!(
            "echo x >> {0}; test $(wc -l < {0}) -ge 2 || {{ echo 'rndc: connection refused' >&2; exit 1; }}",
            count.display()
        );
        let staged = StagedZone::write(&zone, b"new\n").expect("stage");
        let err = replace_and_reload(staged, Some(b"old\n"), &argv(&["sh", "-c", &script]))
            .await
            .expect_err("reload fails")
            .to_string();
        assert!(
            err.contains("connection refused") && err.contains("put back and reloaded"),
            "{err}"
        );
        assert_eq!(fs::read(&zone).expect("read"), b"old\n");
        assert_eq!(fs::read_to_string(&count).expect("read").lines().count(), 2);
    }

    #[tokio::test]
    async fn checkzone_refuses_a_broken_zone() {
        if find_checkzone().is_none() {
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let zone = dir.path().join("zone.db");
        let staged = StagedZone::write(&zone, b"@ IN SOA a. b. 1 2 3 4 5\n").expect("stage");
        let err = staged
            .check("acme.test", CheckZone::WhenInstalled)
            .await
            .expect_err("no NS");
        assert!(err.to_string().contains("named-checkzone"), "{err}");
        drop(staged);
        assert_eq!(
            fs::read_dir(dir.path()).expect("list").count(),
            0,
            "leftovers"
        );
    }
}
