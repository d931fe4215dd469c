//! The pinned Python tools in `.venv` (ansible-core, ansible-lint, pytest: tests/requirements.txt)
//! and running them with a deadline.

use std::fs;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

pub(crate) fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// PATH with the venv's tools first.
pub(crate) fn venv_path() -> String {
    format!(
        "{}:{}",
        venv_bin().display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// `.venv/bin`, after tests/install-python.sh made sure it holds the pinned tools (a no-op
/// that prints nothing when it does; tests/run.sh has run it already).
pub(crate) fn venv_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let out = Command::new(repo().join("tests/install-python.sh"))
            .output()
            .expect("run tests/install-python.sh");
        assert!(
            out.status.success(),
            "tests/install-python.sh failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        repo().join(".venv/bin")
    })
}

/// A command of the venv with the environment every Ansible tool here wants.
pub(crate) fn tool(name: &str) -> Command {
    let mut command = Command::new(venv_bin().join(name));
    command
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_FORCE_COLOR", "0")
        // ansible-core refuses to run without a UTF-8 locale.
        .env("LC_ALL", "C.UTF-8")
        .env("PATH", venv_path());
    command
}

/// What one run of a tool printed (stdout and stderr together, in order).
pub(crate) struct Ran {
    pub(crate) code: i32,
    pub(crate) output: String,
}

impl Ran {
    /// Panics with the output unless the tool exited 0.
    #[track_caller]
    pub(crate) fn expect_success(&self, what: &str) -> &Self {
        assert_eq!(self.code, 0, "{what} failed:\n{}", self.output);
        self
    }

    /// Panics with the output unless it holds every one of `needles`.
    #[track_caller]
    pub(crate) fn expect_mentions<I: IntoIterator<Item = String>>(&self, what: &str, needles: I) {
        for needle in needles {
            assert!(
                self.output.contains(&needle),
                "{what} does not say {needle:?}:\n{}",
                self.output
            );
        }
    }
}

/// Runs `command` in a process group of its own with a deadline; on timeout the whole group
/// (ansible forks workers) is killed.
pub(crate) fn run_bounded(mut command: Command, timeout: Duration) -> Ran {
    let (mut child, log) = spawn_logged(&mut command);
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            kill_group(&mut child);
            break None;
        }
        thread::sleep(Duration::from_millis(100));
    };
    let output = fs::read_to_string(log.path()).unwrap_or_default();
    let Some(status) = status else {
        panic!("{command:?} still ran after {timeout:?}, killed; output:\n{output}");
    };
    Ran {
        code: status.code().unwrap_or(-1),
        output,
    }
}

/// Starts `command` in a process group of its own (ansible forks workers), its stdout and
/// stderr in one log file, read while it runs and after.
pub(crate) fn spawn_logged(command: &mut Command) -> (Child, tempfile::NamedTempFile) {
    let log = tempfile::NamedTempFile::new().expect("log file");
    let child = command
        .stdin(Stdio::null())
        .stdout(log.reopen().expect("reopen log"))
        .stderr(log.reopen().expect("reopen log"))
        .process_group(0)
        .spawn()
        .unwrap_or_else(|err| panic!("cannot start {command:?}: {err}"));
    (child, log)
}

/// Kills the process group `child` leads, and reaps `child`.
pub(crate) fn kill_group(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .status();
    let _ = child.wait();
}
