//! The file publisher: render the signing zone, check it, replace the file, reload.
//!
//! The new zone is rendered from the template, parsed back and checked against the records it
//! was made from, written to a temporary file created new beside the zone file (by the zone
//! directory's descriptor: a server user who can write there cannot redirect it), checked
//! with `named-checkzone` when installed, and renamed over the zone file, which is never
//! missing, not even for a moment. The previous zone is kept as `<zone_file>.prev`. Then the
//! `reload` argv runs; when it fails, the previous zone goes back in place and is reloaded,
//! so the servers keep serving what they served before. A dry run renders and checks the
//! same way (named-checkzone reads it from a pipe) and creates no file at all.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::stat::SFlag;

use super::ZoneError;
use super::check::check_rendered;
use super::publish::{Home, Primary, Written, ZoneWriter};
use super::render::{ZoneData, ZoneTemplate};
use crate::command::{self, CommandError};
use crate::config::FileTarget;
use crate::dns::{DnsName, Served};
use crate::serial;
use crate::shown::path as shown_path;
use crate::store::{Access, Dir};
use crate::token::TxtRecord;

/// Mode of a new zone file when there is no old one to copy it from: the server must read it.
const ZONE_MODE: u32 = 0o644;
/// How long the reload command may run; `rndc reload` returns in milliseconds.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `named-checkzone` may run; it checks 10,000 records in about 0.1 s.
const CHECK_TIMEOUT: Duration = Duration::from_secs(60);
/// Where `named-checkzone` lives when it is not on PATH (Debian puts it in /usr/bin, others in
/// /usr/sbin, which a non-root PATH lacks).
const CHECKZONE_DIRS: [&str; 3] = ["/usr/bin", "/usr/sbin", "/usr/local/sbin"];
/// The most bytes of the zone file fleetcert reads back (10,000 records are about 1 MiB).
const MAX_ZONE_BYTES: u64 = 64 << 20;

/// The reload command failed; says what was done about it.
#[derive(Debug, thiserror::Error)]
#[error("reload command `{command}` failed ({reason}); {aftermath}")]
pub(crate) struct ReloadFailure {
    pub(crate) command: String,
    pub(crate) reason: CommandError,
    aftermath: String,
}

/// Publishes by rewriting the zone file (see the module doc).
pub(crate) struct FileWriter<'c> {
    target: &'c FileTarget,
    zone: &'c DnsName,
    ttl: u32,
    template: ZoneTemplate,
    home: Home,
    /// The zone file's name in `home`.
    name: String,
    /// The zone file as it is, and who owns it.
    old: Option<(Vec<u8>, Access)>,
    /// Only render and check (`--dry-run`).
    dry_run: bool,
}

impl<'c> FileWriter<'c> {
    /// Opens the zone file's directory and reads the zone file as it is.
    pub(crate) fn open(
        target: &'c FileTarget,
        zone: &'c DnsName,
        ttl: u32,
        dry_run: bool,
    ) -> Result<Self, ZoneError> {
        let template = ZoneTemplate::load(target)?;
        let (dir_path, name) = split(&target.zone_file)?;
        let dir = Dir::open(&dir_path)?;
        let old = read_zone_file(&dir, &name, &target.zone_file)?;
        Ok(Self {
            target,
            zone,
            ttl,
            template,
            home: Home {
                ledger: format!("{name}.ledger.json"),
                lock: format!("{name}.lock"),
                dir,
            },
            name,
            old,
            dry_run,
        })
    }

    fn old_bytes(&self) -> Option<&[u8]> {
        self.old.as_ref().map(|(bytes, _)| bytes.as_slice())
    }

    /// Unchanged when rendering with the file's serial gives the file byte for byte: that also
    /// notices a changed template or config, and a zone file edited or lost.
    fn is_unchanged(&self, data: &ZoneData, file_serial: Option<u32>) -> Result<bool, ZoneError> {
        Ok(match (file_serial, self.old_bytes()) {
            (Some(serial), Some(old)) => self.template.render(data, serial)?.as_bytes() == old,
            _ => false,
        })
    }

    /// Renders with `serial` and checks what came out against `records`.
    fn render_checked(
        &self,
        data: &ZoneData,
        serial: u32,
        records: &BTreeSet<&TxtRecord>,
    ) -> Result<String, ZoneError> {
        let text = self.template.render(data, serial)?;
        check_rendered(&text, self.zone, serial, records, self.template.origin())?;
        Ok(text)
    }

    /// Puts `text` in place of the zone file (keeping `.prev`) and reloads; on a failed
    /// reload the previous zone goes back and is reloaded. `silent`: the servers that did not
    /// answer the serial question before, for the advice when the reload fails.
    async fn replace_and_reload(&self, text: &str, silent: &Silent) -> Result<(), ZoneError> {
        let access = self
            .old
            .as_ref()
            .map_or(Access::private(ZONE_MODE), |(_, access)| *access);
        let dir = &self.home.dir;
        let staged = dir.stage(&self.name, text.as_bytes(), access)?;
        if self.target.check_zone {
            checkzone(self.zone, CheckInput::File(&staged.temp_path())).await?;
        }
        crash_point!("publish.staged");
        if let Some((old, access)) = &self.old {
            dir.write_atomic(&format!("{}.prev", self.name), old, *access)?;
        }
        staged.commit()?;
        dir.sync()?;
        crash_point!("publish.after_rename");
        let Err(reason) = command::run_checked(&self.target.reload, RELOAD_TIMEOUT).await else {
            crash_point!("publish.after_reload");
            return Ok(());
        };
        // Info, not warn: the error line that follows says the same and what was done about it.
        tracing::info!(zone_file = %self.target.zone_file.display(), %reason, "reload failed; restoring the previous zone");
        Err(ReloadFailure {
            command: self.target.reload.join(" "),
            aftermath: self.restore(&reason, silent).await,
            reason,
        }
        .into())
    }

    /// Puts the previous zone back after a failed reload; says what came of it.
    async fn restore(&self, reason: &CommandError, silent: &Silent) -> String {
        let dir = &self.home.dir;
        let Some((old, access)) = &self.old else {
            return match dir.remove(&self.name) {
                Ok(()) => format!(
                    "there was no previous zone file, so the new one was removed: {}",
                    silent.advice()
                ),
                Err(err) => format!("removing the new zone file failed: {err}"),
            };
        };
        if let Err(err) = dir.write_atomic(&self.name, old, *access) {
            return format!("restoring the previous zone failed too: {err}");
        }
        match command::run_checked(&self.target.reload, RELOAD_TIMEOUT).await {
            Ok(()) => "the previous zone was put back and reloaded: fix `reload` in the zone \
                       config (or the server) and publish again"
                .to_owned(),
            // The same failure twice: the server never took the new file either, so it still
            // serves the zone it served before. Either it is down or the command is wrong.
            Err(again) if again.same_as(reason) => format!(
                "the previous zone was put back; reloading it failed the same way, so the \
                 server still serves the zone it served before: {}",
                silent.advice()
            ),
            Err(again) => format!(
                "the previous zone was put back, but reloading it failed too ({again}): check \
                 the server"
            ),
        }
    }
}

impl ZoneWriter for FileWriter<'_> {
    fn home(&self) -> Option<&Home> {
        Some(&self.home)
    }

    fn dry_run(&self) -> bool {
        self.dry_run
    }

    fn primary(&self) -> Primary<'_> {
        Primary::Named(&self.target.soa.mname)
    }

    async fn write(
        &mut self,
        records: &BTreeSet<&TxtRecord>,
        served: &[(SocketAddr, Served)],
    ) -> Result<Written, ZoneError> {
        let dry_run = self.dry_run;
        if !dry_run {
            // A publish killed after staging left its temporary zone file beside the real one.
            self.home.dir.sweep()?;
        }
        let data = ZoneData::new(self.target, self.zone, self.ttl, records);
        let file_serial = self
            .old_bytes()
            .and_then(|bytes| std::str::from_utf8(bytes).ok())
            .and_then(serial::from_zone_text);
        let silent = Silent::among(served);
        if let Some(serial) = file_serial
            && self.is_unchanged(&data, file_serial)?
        {
            // The file is current, but it may never have been loaded: a publish killed between
            // replacing the file and reloading, or a reload command that returned success
            // without loading. Then no server serves the file's serial and only a reload
            // helps; waiting would time out on every later run too.
            if !dry_run && nobody_loaded(served, serial) {
                tracing::info!(
                    serial,
                    "the zone file is current, but no server serves it: reloading"
                );
                command::run_checked(&self.target.reload, RELOAD_TIMEOUT)
                    .await
                    .map_err(|reason| ReloadFailure {
                        command: self.target.reload.join(" "),
                        reason,
                        aftermath: format!("the zone file was not changed: {}", silent.advice()),
                    })?;
                return Ok(Written {
                    changed: true,
                    serial,
                });
            }
            tracing::info!(serial, "records unchanged: no new serial, no reload");
            return Ok(Written {
                changed: false,
                serial,
            });
        }
        let served_serials = served.iter().filter_map(|(_, served)| served.serial());
        let serial = serial::next(file_serial.into_iter().chain(served_serials), now_u32());
        let text = self.render_checked(&data, serial, records)?;
        if dry_run {
            if self.target.check_zone {
                checkzone(self.zone, CheckInput::Text(&text)).await?;
            }
        } else {
            self.replace_and_reload(&text, &silent).await?;
            tracing::info!(
                serial,
                records = records.len(),
                "zone replaced and reloaded"
            );
            // What is in place now is the next run's "old" zone.
            let access = self
                .old
                .as_ref()
                .map_or(Access::private(ZONE_MODE), |(_, a)| *a);
            self.old = Some((text.into_bytes(), access));
        }
        Ok(Written {
            changed: true,
            serial,
        })
    }
}

/// Reads the zone file as it is, refusing what fleetcert must not replace.
fn read_zone_file(
    dir: &Dir,
    name: &str,
    path: &Path,
) -> Result<Option<(Vec<u8>, Access)>, ZoneError> {
    let refuse = |problem: String| ZoneError::ZoneFile {
        path: shown_path(path),
        problem,
    };
    let Some(stat) = dir.stat_at(name)? else {
        return Ok(None);
    };
    let kind = SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits());
    if kind == SFlag::S_IFLNK {
        let target = dir.read_link(name)?.unwrap_or_default();
        return Err(refuse(format!(
            "is a symlink to {}: fleetcert replaces the zone file by a rename, which would \
             replace the link and leave its target stale; point zone_file at the target itself",
            shown_path(Path::new(&target))
        )));
    }
    if kind != SFlag::S_IFREG {
        return Err(refuse("is not a regular file: move it away".to_owned()));
    }
    if stat.st_nlink != 1 {
        return Err(refuse(format!(
            "has {} hard links: fleetcert replaces it by a rename, and a linked file elsewhere \
             is not what the server reads; remove the other links",
            stat.st_nlink
        )));
    }
    let bytes = dir.read_optional(name, MAX_ZONE_BYTES)?.unwrap_or_default();
    // Keep the server's ownership of its zone file; never carry set-id or execute bits over.
    let access = Access {
        mode: stat.st_mode & 0o666,
        uid: Some(stat.st_uid),
        gid: Some(stat.st_gid),
    };
    Ok(Some((bytes, access)))
}

fn split(path: &Path) -> Result<(PathBuf, String), ZoneError> {
    let name = path
        .file_name()
        .and_then(OsStr::to_str)
        .filter(|name| crate::store::is_plain_name(name));
    match (path.parent(), name) {
        (Some(parent), Some(name)) => {
            let parent = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            Ok((parent.to_owned(), name.to_owned()))
        }
        _ => Err(ZoneError::ZoneFile {
            path: shown_path(path),
            problem: "is not a file path fleetcert can write (it needs a UTF-8 file name)"
                .to_owned(),
        }),
    }
}

/// The servers that gave no authoritative answer to the serial question before the write:
/// when the reload then fails, the likely cause is one of them being down, not the command.
struct Silent(Vec<SocketAddr>);

impl Silent {
    fn among(served: &[(SocketAddr, Served)]) -> Self {
        Self(
            served
                .iter()
                .filter(|(_, served)| served.serial().is_none())
                .map(|(server, _)| *server)
                .collect(),
        )
    }

    /// What to look at first, in words.
    fn advice(&self) -> String {
        if self.0.is_empty() {
            return "every server answered before the reload, so look at the command first: is \
                    `reload` in the zone config right for this server? Then publish again"
                .to_owned();
        }
        let servers: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        format!(
            "{} did not answer before the reload either: is the primary running? Start it (or \
             fix `reload` if it is running) and publish again",
            servers.join(", ")
        )
    }
}

/// Whether some server answered with a serial older than the file's and none serves the file's:
/// the file was never loaded. Servers that do not answer prove nothing either way (a stopped
/// secondary is the wait's business, not a reason to reload).
fn nobody_loaded(served: &[(SocketAddr, Served)], file_serial: u32) -> bool {
    let serials: Vec<u32> = served.iter().filter_map(|(_, s)| s.serial()).collect();
    !serials.is_empty() && !serials.iter().any(|&s| serial::has_reached(s, file_serial))
}

/// Serial arithmetic is modulo 2^32 (RFC 1982), so the clock's seconds are too; a clock
/// before 1970 counts as 0 (the serial then just increments).
fn now_u32() -> u32 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    u32::try_from(now % (1 << 32)).unwrap_or(0)
}

/// What named-checkzone reads.
enum CheckInput<'a> {
    File(&'a Path),
    /// Through a pipe, for a dry run, which creates no file.
    Text(&'a str),
}

/// Runs `named-checkzone` when it is installed.
async fn checkzone(zone: &DnsName, input: CheckInput<'_>) -> Result<(), ZoneError> {
    let Some(program) = find_checkzone() else {
        tracing::debug!("named-checkzone is not installed; relying on fleetcert's own check");
        return Ok(());
    };
    let (file, text) = match input {
        CheckInput::File(path) => (path.to_string_lossy().into_owned(), None),
        CheckInput::Text(text) => ("/dev/stdin".to_owned(), Some(text.as_bytes())),
    };
    let argv = [
        program.to_string_lossy().into_owned(),
        zone.to_string(),
        file,
    ];
    let refused = |output: String| ZoneError::CheckZone {
        zone: zone.to_string(),
        output,
    };
    match command::run(&argv, text, CHECK_TIMEOUT).await {
        Ok(ran) if ran.status.success() => Ok(()),
        Ok(ran) => Err(refused(ran.summary())),
        Err(reason) => Err(refused(format!(
            "{} could not run: {reason}",
            program.display()
        ))),
    }
}

fn find_checkzone() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(CHECKZONE_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join("named-checkzone"))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ZoneConfig, ZoneTarget};
    use crate::token::tests::{VALUE, value};

    fn target(config: &ZoneConfig) -> &FileTarget {
        match &config.target {
            ZoneTarget::File(file) => file,
            ZoneTarget::Update(_) => panic!("a file target"),
        }
    }

    fn records() -> Vec<TxtRecord> {
        vec![TxtRecord {
            name: DnsName::parse("a.org.acme.test").expect("name"),
            value: value(VALUE),
        }]
    }

    #[tokio::test]
    async fn replaces_keeps_prev_and_leaves_nothing_else() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = crate::config::zone_tests::config(dir.path(), "check_zone: false\n");
        std::fs::write(dir.path().join("zone.db"), "old\n").expect("write");
        let mut writer =
            FileWriter::open(target(&config), &config.zone, config.ttl, false).expect("open");
        let records = records();
        let written = writer
            .write(&records.iter().collect(), &[])
            .await
            .expect("write");
        assert!(written.changed);
        let zone = std::fs::read_to_string(dir.path().join("zone.db")).expect("read");
        assert!(zone.contains(VALUE), "{zone}");
        assert_eq!(
            std::fs::read(dir.path().join("zone.db.prev")).expect("prev"),
            b"old\n"
        );
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("list")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["zone.db", "zone.db.prev", "zone.yaml"]);
    }

    #[tokio::test]
    async fn a_failed_reload_restores_the_previous_zone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let count = dir.path().join("count");
        // Fails the first time, succeeds the second: the restored zone is reloaded.
        let script = format!(
            "echo x >> {0}; test $(wc -l < {0}) -ge 2 || {{ echo 'rndc: connection refused' >&2; exit 1; }}",
            count.display()
        );
        let config = crate::config::zone_tests::config(dir.path(), "check_zone: false\n");
        let ZoneTarget::File(mut target) = config.target else {
            panic!("a file target");
        };
        target.reload = vec!["sh".to_owned(), "-c".to_owned(), script];
        std::fs::write(dir.path().join("zone.db"), "old\n").expect("write");
        let mut writer = FileWriter::open(&target, &config.zone, config.ttl, false).expect("open");
        let records = records();
        let err = writer
            .write(&records.iter().collect(), &[])
            .await
            .expect_err("reload fails")
            .to_string();
        assert!(
            err.contains("connection refused") && err.contains("put back and reloaded"),
            "{err}"
        );
        assert_eq!(
            std::fs::read(dir.path().join("zone.db")).expect("read"),
            b"old\n"
        );
    }

    #[tokio::test]
    async fn a_dry_run_creates_no_file_and_a_symlinked_zone_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = crate::config::zone_tests::config(dir.path(), "");
        let mut writer =
            FileWriter::open(target(&config), &config.zone, config.ttl, true).expect("open");
        let records = records();
        writer
            .write(&records.iter().collect(), &[])
            .await
            .expect("dry run");
        assert!(!dir.path().join("zone.db").exists());
        std::fs::write(dir.path().join("real.db"), "x\n").expect("write");
        std::os::unix::fs::symlink(dir.path().join("real.db"), dir.path().join("zone.db"))
            .expect("link");
        let err = FileWriter::open(target(&config), &config.zone, config.ttl, false)
            .err()
            .expect("symlink refused")
            .to_string();
        assert!(
            err.contains("is a symlink") && err.contains("real.db"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn checkzone_refuses_a_broken_zone() {
        if find_checkzone().is_none() {
            return;
        }
        let zone = DnsName::parse("acme.test").expect("zone");
        let err = checkzone(&zone, CheckInput::Text("@ IN SOA a. b. 1 2 3 4 5\n"))
            .await
            .expect_err("no NS")
            .to_string();
        assert!(err.contains("named-checkzone"), "{err}");
    }
}
