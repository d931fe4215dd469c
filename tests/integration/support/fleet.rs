//! The fleet of the playbook tests, as tests/fleet/inventory.sh writes it on a sandbox, and
//! `ansible-playbook fleetcert.fleetcert.daily` run over it under a deadline that logs where
//! it is.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use super::collection;
use super::day::write_secret;
use super::sandbox::Sandbox;
use super::util::{run_ok, sans};
use super::venv::{Ran, repo, tool};

/// A playbook run still going after this is stuck, not slow: a normal run takes 10 to 60 s,
/// several minutes on a loaded 2-core machine. Only a guard against a hang; a run that
/// reaches it is killed and the failure names the play and task it was in.
/// FLEETCERT_PLAYBOOK_DEADLINE (seconds) overrides it.
const PLAYBOOK_DEADLINE: Duration = Duration::from_secs(1800);
/// How often a long run says where it is, so a slow run shows its slow part as it goes.
const PLAYBOOK_PROGRESS: Duration = Duration::from_secs(60);

pub(crate) const LEGACY: &str = "legacy.example.test";

/// The fleet on one sandbox, written by tests/fleet/inventory.sh.
pub(crate) struct Fleet {
    pub(crate) sb: Sandbox,
    pub(crate) dir: tempfile::TempDir,
}

impl Fleet {
    /// A new sandbox and `tests/fleet/inventory.sh SANDBOX_ENV DIR ARGS...`.
    pub(crate) fn new<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Self {
        Self::on(Sandbox::start(), args)
    }

    /// `tests/fleet/inventory.sh SANDBOX_ENV DIR ARGS...` on a sandbox started as needed.
    pub(crate) fn on<S: AsRef<std::ffi::OsStr>>(sb: Sandbox, args: &[S]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("fleetcert-fleet-")
            .tempdir()
            .expect("fleet dir");
        run_ok(
            Command::new(repo().join("tests/fleet/inventory.sh"))
                .arg(sb.dir().join("sandbox.env"))
                .arg(dir.path())
                .args(args),
        );
        Self { sb, dir }
    }

    /// Two hosts with the binary of this build, publishing by dynamic update with the TSIG
    /// key `fleet`: its `secret` goes into `controller/tsig.secret` (0600), where the
    /// inventory takes it from; `more` are further inventory.sh arguments.
    pub(crate) fn by_update(sb: Sandbox, secret: &str, controller: &Path, more: &[&str]) -> Self {
        let secret_file = controller.join("tsig.secret");
        write_secret(&secret_file, secret);
        let update = format!("fleet={}", secret_file.display());
        let mut args = vec![
            "--hosts",
            "2",
            "--binary",
            env!("CARGO_BIN_EXE_fleetcert"),
            "--update",
            &update,
        ];
        args.extend(more);
        Self::on(sb, &args)
    }

    pub(crate) fn home(&self, host: &str) -> PathBuf {
        self.dir.path().join("hosts").join(host)
    }

    /// Where a host's certificate lives (layout `fleetcert`).
    pub(crate) fn fullchain(&self, host: &str, cert: &str) -> PathBuf {
        let certs = if host == LEGACY {
            self.dir
                .path()
                .join("hosts/bastion/legacy")
                .join(LEGACY)
                .join("certs")
        } else {
            self.home(host).join("certs")
        };
        certs.join(cert).join("fullchain.pem")
    }

    /// The inventory's host_vars file of `host`.
    pub(crate) fn host_vars(&self, host: &str) -> PathBuf {
        self.dir
            .path()
            .join("inventory/host_vars")
            .join(format!("{host}.yaml"))
    }

    /// Adds `cert: names` to the `fleetcert_certs` of `host` (the last key of its host_vars).
    pub(crate) fn add_certificate(&self, host: &str, cert: &str, names: &str) {
        let vars = self.host_vars(host);
        let mut text = String::from_utf8(read(&vars)).expect("UTF-8");
        text.push_str(&format!("  {cert}: {names}\n"));
        fs::write(&vars, text).unwrap_or_else(|err| panic!("add a certificate to {host}: {err}"));
    }

    /// Lines the handlers appended ("HOST CERT"), sorted: forks run in any order.
    pub(crate) fn handler_lines(&self) -> Vec<String> {
        let text = fs::read_to_string(self.dir.path().join("handlers.log")).unwrap_or_default();
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        lines.sort();
        lines
    }

    /// `ansible-playbook fleetcert.fleetcert.daily` from the installed collection.
    pub(crate) fn playbook(&self, extra: &[&str]) -> Playbook {
        daily_playbook(self.dir.path(), extra)
    }
}

/// `ansible-playbook -i DIR/inventory -e @DIR/extra-vars.yaml EXTRA fleetcert.fleetcert.daily`
/// from the installed collection, as tests/fleet/inventory.sh lays DIR out.
pub(crate) fn daily_playbook(dir: &Path, extra: &[&str]) -> Playbook {
    let mut command = tool("ansible-playbook");
    command
        .arg("-i")
        .arg(dir.join("inventory"))
        .arg("-e")
        .arg(format!("@{}", dir.join("extra-vars.yaml").display()))
        .args(extra)
        .arg("fleetcert.fleetcert.daily")
        .env("ANSIBLE_CONFIG", repo().join("ansible/ansible.cfg"))
        .env("ANSIBLE_COLLECTIONS_PATH", collection::installed())
        .env("ANSIBLE_LOCAL_TEMP", dir.join("ansible-tmp"));
    let started = Instant::now();
    let ran = run_playbook(command);
    eprintln!(
        "ansible-playbook {extra:?}: exit {} in {:.1?}",
        ran.code,
        started.elapsed()
    );
    let recap = parse_recap(&ran.output);
    Playbook {
        code: ran.code,
        output: ran.output,
        recap,
    }
}

/// Runs ansible-playbook in a process group of its own (it forks workers) under
/// [`PLAYBOOK_DEADLINE`], saying every [`PLAYBOOK_PROGRESS`] which play and task it is in; at
/// the deadline the group is killed and the panic names the task that did not finish.
pub(crate) fn run_playbook(mut command: Command) -> Ran {
    let deadline = std::env::var("FLEETCERT_PLAYBOOK_DEADLINE")
        .ok()
        .and_then(|secs| secs.parse().ok())
        .map_or(PLAYBOOK_DEADLINE, Duration::from_secs);
    let (mut child, log) = super::venv::spawn_logged(&mut command);
    let started = Instant::now();
    let mut next_report = PLAYBOOK_PROGRESS;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for ansible-playbook") {
            break status;
        }
        let elapsed = started.elapsed();
        if elapsed >= deadline {
            super::venv::kill_group(&mut child);
            let output = fs::read_to_string(log.path()).unwrap_or_default();
            panic!(
                "ansible-playbook was still in {} after {elapsed:.0?} (FLEETCERT_PLAYBOOK_DEADLINE), \
                 killed; output:\n{output}",
                where_in(&output)
            );
        }
        if elapsed >= next_report {
            let output = fs::read_to_string(log.path()).unwrap_or_default();
            eprintln!(
                "ansible-playbook still running after {elapsed:.0?}, in {}",
                where_in(&output)
            );
            next_report += PLAYBOOK_PROGRESS;
        }
        thread::sleep(Duration::from_millis(200));
    };
    Ran {
        code: status.code().unwrap_or(-1),
        output: fs::read_to_string(log.path()).unwrap_or_default(),
    }
}

/// The last `PLAY [...]` and `TASK [...]` headers of a playbook's output: where it is.
fn where_in(output: &str) -> String {
    let last = |prefix: &str| {
        output
            .lines()
            .rev()
            .find(|line| line.starts_with(prefix))
            .map(|line| line.trim_end_matches(['*', ' ']).to_owned())
    };
    match (last("PLAY ["), last("TASK [")) {
        (Some(play), Some(task)) => format!("{play} / {task}"),
        (Some(play), None) => play,
        _ => "its start (no play yet)".to_owned(),
    }
}

/// One host's line of the PLAY RECAP.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Recap {
    pub(crate) changed: u32,
    pub(crate) failed: u32,
    pub(crate) unreachable: u32,
}

pub(crate) struct Playbook {
    pub(crate) code: i32,
    pub(crate) output: String,
    pub(crate) recap: BTreeMap<String, Recap>,
}

impl Playbook {
    #[track_caller]
    pub(crate) fn host(&self, host: &str) -> Recap {
        *self
            .recap
            .get(host)
            .unwrap_or_else(|| panic!("no PLAY RECAP line for {host}; output:\n{}", self.output))
    }

    /// Panics unless exactly `failing` hosts failed and every other host ran through.
    #[track_caller]
    pub(crate) fn expect_failed(&self, failing: &[&str]) {
        let failed: Vec<&str> = self
            .recap
            .iter()
            .filter(|(_, r)| r.failed > 0 || r.unreachable > 0)
            .map(|(host, _)| host.as_str())
            .collect();
        assert_eq!(
            failed, failing,
            "hosts failed in the recap; output:\n{}",
            self.output
        );
        // ansible-playbook exits 2 when a host failed, 0 when none did.
        let want = if failing.is_empty() { 0 } else { 2 };
        assert_eq!(self.code, want, "exit code; output:\n{}", self.output);
    }
}

/// The PLAY RECAP of the default callback: `host : ok=N changed=N unreachable=N failed=N ...`.
pub(crate) fn parse_recap(output: &str) -> BTreeMap<String, Recap> {
    let Some((_, recap)) = output.rsplit_once("PLAY RECAP") else {
        return BTreeMap::new();
    };
    recap
        .lines()
        .filter_map(|line| {
            let (host, counts) = line.split_once(" : ")?;
            let mut entry = Recap::default();
            for field in counts.split_whitespace() {
                let (key, value) = field.split_once('=')?;
                let value: u32 = value.parse().ok()?;
                match key {
                    "changed" => entry.changed = value,
                    "failed" => entry.failed = value,
                    "unreachable" => entry.unreachable = value,
                    _ => {}
                }
            }
            Some((host.trim().to_owned(), entry))
        })
        .collect()
}

#[track_caller]
pub(crate) fn assert_issued(fleet: &Fleet, host: &str, cert: &str, names: &[&str]) {
    let fullchain = fleet.fullchain(host, cert);
    if let Err(err) = fleet.sb.verify_chain(&fullchain) {
        panic!(
            "{host} {cert}: {} does not verify: {err}",
            fullchain.display()
        );
    }
    let mut want: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
    want.sort();
    assert_eq!(sans(&fullchain), want, "{host} {cert}: names");
}

pub(crate) fn read(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap_or_else(|err| panic!("read {}: {err}", path.display()))
}
