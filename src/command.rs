//! An operator's command: the zone's `reload`, `named-checkzone`, a certificate's `reload`.
//! No shell, a time limit, a process group of its own, output bounded.
//!
//! A command runs in a new process group, so a hung one is killed with everything it
//! started, not just the process fleetcert started. Its output is read while it runs and
//! only until it exits (plus a short grace): a command that exits but leaves a child holding
//! its output (a script that starts something in the background) is done when it exits, and
//! what it left in its group is killed then, so nothing it started outlives its bound. A
//! service it (re)starts must leave the group, as every daemon and `systemctl` does.

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};

use crate::shown::bare;

/// How long output is still read after the command exited: a child it left behind may hold
/// the pipe open for good.
const OUTPUT_GRACE: Duration = Duration::from_millis(500);
/// The most output kept per stream; the rest is read and dropped.
const MAX_OUTPUT: usize = 64 << 10;
/// Enough of a command's output for named-checkzone's first few complaints.
const MAX_SUMMARY: usize = crate::shown::MAX_EXCERPT;

/// Why a command did not run to a successful exit; each is one line.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CommandError {
    #[error("the command is empty")]
    Empty,
    #[error("cannot start {program}: {source}")]
    Start {
        program: String,
        source: std::io::Error,
    },
    #[error("cannot wait for it: {0}")]
    Wait(std::io::Error),
    #[error("no exit within {}s: killed it and what it started", .0.as_secs())]
    Timeout(Duration),
    #[error("{status}: {summary}")]
    Exited { status: ExitStatus, summary: String },
}

impl CommandError {
    /// Whether `other` failed the same way: the same kind and, for an exit, the same status.
    /// The output is left out: it may differ between two runs (a time, a pid).
    pub(crate) fn same_as(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Exited { status: a, .. }, Self::Exited { status: b, .. }) => a == b,
            _ => std::mem::discriminant(self) == std::mem::discriminant(other),
        }
    }
}

/// What a command did.
#[derive(Debug)]
pub(crate) struct Ran {
    pub(crate) status: ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl Ran {
    /// The interesting lines of its output, joined into one escaped, bounded line.
    pub(crate) fn summary(&self) -> String {
        let text = format!(
            "{} {}",
            String::from_utf8_lossy(&self.stderr),
            String::from_utf8_lossy(&self.stdout)
        );
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && *line != "OK")
            .collect();
        if lines.is_empty() {
            "no output".to_owned()
        } else {
            bare(&lines.join("; "), MAX_SUMMARY)
        }
    }
}

/// Runs `argv` with `input` on its stdin, killing its whole process group after `timeout`.
/// `Err` says why it could not run to an exit.
pub(crate) async fn run(
    argv: &[String],
    input: Option<&[u8]>,
    timeout: Duration,
) -> Result<Ran, CommandError> {
    run_with(argv, input, &[], timeout).await
}

/// [`run`] with `env` added to the inherited environment.
pub(crate) async fn run_with(
    argv: &[String],
    input: Option<&[u8]>,
    env: &[(&str, &str)],
    timeout: Duration,
) -> Result<Ran, CommandError> {
    let Some((program, args)) = argv.split_first() else {
        return Err(CommandError::Empty);
    };
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .envs(env.iter().copied())
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|source| CommandError::Start {
        program: bare(program, crate::shown::MAX_VALUE),
        source,
    })?;
    let group = child.id().and_then(|pid| i32::try_from(pid).ok());
    let stdout = tokio::spawn(read_capped(child.stdout.take()));
    let stderr = tokio::spawn(read_capped(child.stderr.take()));
    if let (Some(bytes), Some(mut pipe)) = (input, child.stdin.take()) {
        let bytes = bytes.to_vec();
        tokio::spawn(async move {
            // A command that does not read its input closes the pipe: that is its business.
            let _ = pipe.write_all(&bytes).await;
        });
    }
    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(status) => status.map_err(CommandError::Wait)?,
        Err(_) => {
            kill_group(group);
            return Err(CommandError::Timeout(timeout));
        }
    };
    let collect = |task: tokio::task::JoinHandle<Vec<u8>>| async move {
        tokio::time::timeout(OUTPUT_GRACE, task)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default()
    };
    let ran = Ran {
        status,
        stdout: collect(stdout).await,
        stderr: collect(stderr).await,
    };
    // What it left running in its group (see the module doc). Its pid stays taken while any
    // member of the group lives, so the group id names no stranger's processes.
    kill_group(group);
    Ok(ran)
}

/// Reads a pipe to its end, keeping the first [`MAX_OUTPUT`] bytes.
async fn read_capped(pipe: Option<impl AsyncRead + Unpin>) -> Vec<u8> {
    let Some(mut pipe) = pipe else {
        return Vec::new();
    };
    let mut kept = Vec::new();
    let mut buffer = [0u8; 8192];
    while let Ok(read) = pipe.read(&mut buffer).await {
        if read == 0 {
            break;
        }
        let room = MAX_OUTPUT.saturating_sub(kept.len());
        kept.extend_from_slice(&buffer[..read.min(room)]);
    }
    kept
}

fn kill_group(group: Option<i32>) {
    if let Some(group) = group {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(group), Signal::SIGKILL);
    }
}

/// Runs `argv` to a successful exit; `Err` says why it did not.
pub(crate) async fn run_checked(argv: &[String], timeout: Duration) -> Result<(), CommandError> {
    run_checked_with(argv, &[], timeout).await
}

/// [`run_checked`] with `env` added to the inherited environment.
async fn run_checked_with(
    argv: &[String],
    env: &[(&str, &str)],
    timeout: Duration,
) -> Result<(), CommandError> {
    let ran = run_with(argv, None, env, timeout).await?;
    if ran.status.success() {
        Ok(())
    } else {
        Err(CommandError::Exited {
            status: ran.status,
            summary: ran.summary(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| (*w).to_owned()).collect()
    }

    #[tokio::test]
    async fn success_with_a_child_holding_the_output_is_success() {
        let started = std::time::Instant::now();
        run_checked(
            &argv(&["sh", "-c", "sleep 30 & echo reloaded"]),
            Duration::from_secs(10),
        )
        .await
        .expect("exit 0 counts");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn what_an_exited_command_left_in_its_group_is_killed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pid_file = dir.path().join("child.pid");
        let script = format!("sleep 600 & echo $! > {}; exit 1", pid_file.display());
        let env = [("FLEETCERT_TEST", "seen")];
        run_with(
            &argv(&["sh", "-c", &script]),
            None,
            &env,
            Duration::from_secs(30),
        )
        .await
        .expect("ran to an exit");
        let pid = std::fs::read_to_string(&pid_file).expect("pid written");
        let stat = format!("/proc/{}/stat", pid.trim());
        // Killed at once; gone (or a zombie waiting for init) within a generous deadline.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::fs::read_to_string(&stat).is_ok_and(|text| !text.contains(") Z ")) {
            assert!(
                std::time::Instant::now() < deadline,
                "the child the command left ({}) still runs after 30 s",
                pid.trim()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test]
    async fn the_environment_reaches_the_command() {
        let ran = run_with(
            &argv(&["sh", "-c", "printf '%s' \"$FLEETCERT_TEST\""]),
            None,
            &[("FLEETCERT_TEST", "a b")],
            Duration::from_secs(10),
        )
        .await
        .expect("ran");
        assert_eq!(ran.stdout, b"a b");
    }

    #[tokio::test]
    async fn a_hung_command_is_killed_with_its_children() {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("grandchild-alive");
        let script = format!("(sleep 2; touch {}) & sleep 30", marker.display());
        let err = run_checked(&argv(&["sh", "-c", &script]), Duration::from_millis(300))
            .await
            .expect_err("hung");
        assert!(matches!(err, CommandError::Timeout(_)), "{err}");
        assert!(err.to_string().contains("killed it"), "{err}");
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(!marker.exists(), "the grandchild survived the kill");
    }

    #[tokio::test]
    async fn failure_output_is_one_escaped_line() {
        let err = run_checked(
            &argv(&[
                "sh",
                "-c",
                "printf 'rndc: connection refused\\n\\033[31mforged\\n' >&2; exit 1",
            ]),
            Duration::from_secs(10),
        )
        .await
        .expect_err("fails")
        .to_string();
        assert!(
            err.contains("connection refused") && !err.contains('\n') && !err.contains('\u{1b}'),
            "{err}"
        );
    }

    #[tokio::test]
    async fn the_same_exit_is_the_same_failure_whatever_it_printed() {
        let fail = |script: &'static str| async move {
            run_checked(&argv(&["sh", "-c", script]), Duration::from_secs(10))
                .await
                .expect_err("fails")
        };
        let first = fail("echo at $$ >&2; exit 1").await;
        assert!(first.same_as(&fail("echo at $$ >&2; exit 1").await));
        assert!(!first.same_as(&fail("exit 2").await));
        assert!(!first.same_as(&CommandError::Timeout(Duration::from_secs(1))));
    }
}
