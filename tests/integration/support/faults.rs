//! Ways a test makes a run fail where a disk, a file system or a reload command would: a
//! write limit (`RLIMIT_FSIZE`: the kernel fails the write with EFBIG exactly where a full
//! disk fails it with ENOSPC, for one process and without a mount), a file made immutable
//! (`chattr +i`, which root's rename cannot get past either), a script as a reload command,
//! and a pid that is never alive.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::fixture::Host;
use super::util::{Run, binary};

/// A pid above Linux's largest `pid_max` (2^22): never a live process.
pub(crate) const DEAD_PID: u32 = 4_194_305;

/// `fleetcert <command> --config <host's>` whose writes fail beyond `bytes` bytes per file.
pub(crate) fn with_file_size_limit(host: &Host<'_>, bytes: u64, command: &str) -> Run {
    let out = Command::new("bash")
        .arg("-c")
        .arg(r#"trap '' XFSZ; exec prlimit --fsize="$0" -- "$@""#)
        .arg(bytes.to_string())
        .arg(binary())
        .args([command, "--config"])
        .arg(host.config())
        .stdin(Stdio::null())
        .output()
        .expect("run bash");
    let run = Run::of(&out);
    host.assert_no_secret_in(&run, command);
    run
}

/// A file made immutable (`chattr +i`) for as long as this lives.
pub(crate) struct Immutable(PathBuf);

impl Immutable {
    pub(crate) fn new(path: &Path) -> Self {
        super::util::run_ok(Command::new("chattr").arg("+i").arg(path));
        Self(path.to_owned())
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

/// An executable shell script at `path`.
pub(crate) fn script(path: &Path, body: &str) -> String {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).expect("write script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path.display().to_string()
}

/// Whether `pid` is a running process (a zombie nobody reaped counts as gone).
pub(crate) fn alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(')')
            .next()
            .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
    })
}
