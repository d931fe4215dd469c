//! The daily playbook (ansible/playbooks/fleetcert.yaml) run by real ansible-playbook from
//! `.venv` against a local fleet on the sandbox: hosts with their own directories and names,
//! a broken host (one certificate for a name without a CNAME, one that cannot validate because
//! the DNS primary leaves the host out of publish), a legacy host exported as hiera, and the
//! sandbox's BIND primary as the DNS primary. The inventory comes from
//! tests/fleet/inventory.sh, which tests/demo.sh uses as well. Also: ansible-lint's
//! production profile on ansible/.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use crate::sandbox::Sandbox;
use crate::util::{sans, snapshot};

/// A playbook run that takes longer than this is stuck (a normal run takes 10 to 40 s).
const PLAYBOOK_TIMEOUT: Duration = Duration::from_secs(240);

/// Certificate name -> names.
type Certs = &'static [(&'static str, &'static [&'static str])];

/// The good hosts of the fleet and their certificates (see tests/fleet/inventory.sh).
const HOSTS: [(&str, Certs); 3] = [
    (
        "host1.example.test",
        &[("main", &["host1.example.test", "www1.example.test"])],
    ),
    (
        "host2.example.test",
        &[
            ("main", &["host2.example.test"]),
            ("www", &["www2.example.test"]),
        ],
    ),
    (
        "host3.example.test",
        &[("main", &["host3.example.test", "www3.example.test"])],
    ),
];
const BROKEN: &str = "broken.example.test";
const LEGACY: &str = "legacy.example.test";
const PRIMARY: &str = "ns1.example.test";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// PATH with the venv's tools first.
fn venv_path() -> String {
    format!(
        "{}:{}",
        venv_bin().display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// `.venv/bin`, after tests/install-python.sh made sure it holds the pinned tools (a no-op
/// that prints nothing when it does; tests/run.sh has run it already).
fn venv_bin() -> &'static Path {
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

/// What one ansible-playbook (or ansible-lint) run printed.
struct Ran {
    code: i32,
    output: String,
}

/// Runs `command` in a process group of its own with a deadline; on timeout the whole group
/// (ansible forks workers) is killed.
fn run_bounded(mut command: Command, timeout: Duration) -> Ran {
    let log = tempfile::NamedTempFile::new().expect("log file");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(log.reopen().expect("reopen log"))
        .stderr(log.reopen().expect("reopen log"))
        .process_group(0)
        .spawn()
        .unwrap_or_else(|err| panic!("cannot start {command:?}: {err}"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
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

/// The fleet on one sandbox, written by tests/fleet/inventory.sh.
struct Fleet {
    sb: Sandbox,
    dir: tempfile::TempDir,
}

impl Fleet {
    fn new() -> Self {
        let sb = Sandbox::start();
        let dir = tempfile::Builder::new()
            .prefix("fleetcert-fleet-")
            .tempdir()
            .expect("fleet dir");
        let out = Command::new(repo().join("tests/fleet/inventory.sh"))
            .arg(sb.dir().join("sandbox.env"))
            .arg(dir.path())
            .args(["--hosts", "3", "--broken", "--binary"])
            .arg(env!("CARGO_BIN_EXE_fleetcert"))
            .output()
            .expect("run tests/fleet/inventory.sh");
        assert!(
            out.status.success(),
            "inventory.sh failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self { sb, dir }
    }

    fn home(&self, host: &str) -> PathBuf {
        self.dir.path().join("hosts").join(host)
    }

    /// Where a host's certificate lives (layout `fleetcert`).
    fn fullchain(&self, host: &str, cert: &str) -> PathBuf {
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

    /// Lines the handlers appended ("HOST CERT"), sorted: forks run in any order.
    fn handler_lines(&self) -> Vec<String> {
        let text = fs::read_to_string(self.dir.path().join("handlers.log")).unwrap_or_default();
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        lines.sort();
        lines
    }

    fn playbook(&self, extra: &[&str]) -> Playbook {
        let mut command = Command::new(venv_bin().join("ansible-playbook"));
        command
            .arg("-i")
            .arg(self.dir.path().join("inventory"))
            .arg("-e")
            .arg(format!(
                "@{}",
                self.dir.path().join("extra-vars.yaml").display()
            ))
            .args(extra)
            .arg(repo().join("ansible/playbooks/fleetcert.yaml"))
            .env("ANSIBLE_CONFIG", repo().join("ansible/ansible.cfg"))
            .env("ANSIBLE_NOCOLOR", "1")
            .env("ANSIBLE_FORCE_COLOR", "0")
            .env("ANSIBLE_LOCAL_TEMP", self.dir.path().join("ansible-tmp"))
            // ansible-core refuses to run without a UTF-8 locale.
            .env("LC_ALL", "C.UTF-8")
            .env("PATH", venv_path());
        let started = Instant::now();
        let ran = run_bounded(command, PLAYBOOK_TIMEOUT);
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
}

/// One host's line of the PLAY RECAP.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Recap {
    changed: u32,
    failed: u32,
    unreachable: u32,
}

struct Playbook {
    code: i32,
    output: String,
    recap: BTreeMap<String, Recap>,
}

impl Playbook {
    #[track_caller]
    fn host(&self, host: &str) -> Recap {
        *self
            .recap
            .get(host)
            .unwrap_or_else(|| panic!("no PLAY RECAP line for {host}; output:\n{}", self.output))
    }

    /// Panics unless exactly `failing` hosts failed and every other host ran through.
    #[track_caller]
    fn expect_failed(&self, failing: &[&str]) {
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
fn parse_recap(output: &str) -> BTreeMap<String, Recap> {
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
fn assert_issued(fleet: &Fleet, host: &str, cert: &str, names: &[&str]) {
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

fn read(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap_or_else(|err| panic!("read {}: {err}", path.display()))
}

/// The whole daily run, three times on one fleet (each run costs 20 to 40 s):
/// 1. issues every good host's certificates (verified against Pebble's root) and the legacy
///    host's hiera file, runs each handler exactly for the certificates replaced, and fails
///    only the broken host, naming both of its certificates and why;
/// 2. right after, changes nothing: `changed=0` on every host (but the broken one, which
///    orders its failed certificate again, as it should), the same zone serial;
/// 3. `--check` after a certificate was added to host1: says it would order it, creates no
///    order, writes no zone, no config, no certificate, and runs no handler.
#[test]
fn daily_playbook_issues_for_the_fleet_once_and_isolates_a_broken_host() {
    let fleet = Fleet::new();
    let sb = &fleet.sb;
    let zone_file = sb.signing_zone_file();

    // 1. The first run.
    let first = fleet.playbook(&[]);
    first.expect_failed(&[BROKEN]);
    for (host, certs) in HOSTS {
        for (cert, names) in certs {
            assert_issued(&fleet, host, cert, names);
        }
    }
    assert_issued(&fleet, LEGACY, "main", &["host200.example.test"]);
    let hiera = fleet
        .home(LEGACY)
        .join("hieradata/host_vars")
        .join(format!("{LEGACY}.certs.yaml"));
    let hiera_text = String::from_utf8(read(&hiera)).expect("hiera file is UTF-8");
    assert!(
        hiera_text.contains("BEGIN CERTIFICATE"),
        "{} holds no certificate:\n{hiera_text}",
        hiera.display()
    );
    assert!(
        !fleet.home(BROKEN).join("certs/main").exists(),
        "the broken host got a certificate"
    );
    assert_eq!(
        fleet.handler_lines(),
        [
            "host1.example.test main",
            "host2.example.test main",
            "host2.example.test www",
            "host3.example.test main",
            "legacy.example.test main",
        ],
        "handlers of the first run; output:\n{}",
        first.output
    );
    // The end of the run names the broken host, each certificate, why, and the fix.
    let fatal = first
        .output
        .lines()
        .find(|line| line.starts_with(&format!("fatal: [{BROKEN}]")))
        .unwrap_or_else(|| panic!("no fatal line for {BROKEN}; output:\n{}", first.output));
    let why = [
        "certificate main (request): _acme-challenge.nocname.example.test. has no CNAME: \
         add `_acme-challenge.nocname.example.test. CNAME nocname.example.test.acme.test.`",
        "certificate www (finalize): validation failed",
    ];
    for reason in why {
        assert!(fatal.contains(reason), "{fatal}\nlacks: {reason}");
    }
    let summary = format!("{BROKEN}: FAILED main, www; replaced: none");
    assert!(
        first.output.contains(&summary),
        "no summary line {summary:?}; output:\n{}",
        first.output
    );
    // Cleanup emptied the zone again.
    assert!(
        !String::from_utf8_lossy(&read(&zone_file)).contains("TXT"),
        "challenge records left in the zone"
    );

    // 2. Nothing to do: no change anywhere, not even a new serial.
    let serial = sb.serial(sb.primary());
    let zone = read(&zone_file);
    let second = fleet.playbook(&[]);
    second.expect_failed(&[BROKEN]);
    for (host, recap) in second.recap.iter().filter(|(host, _)| *host != BROKEN) {
        assert_eq!(
            recap.changed, 0,
            "{host} changed in the second run; output:\n{}",
            second.output
        );
    }
    let mut everyone: Vec<&str> = HOSTS.iter().map(|(host, _)| *host).collect();
    everyone.extend([BROKEN, LEGACY, PRIMARY]);
    everyone.sort_unstable();
    assert_eq!(
        second.recap.keys().map(String::as_str).collect::<Vec<_>>(),
        everyone,
        "hosts in the recap"
    );
    // Neither the second run nor check mode may touch the zone or run a handler.
    let assert_quiet = |run: &str| {
        assert_eq!(sb.serial(sb.primary()), serial, "{run} made a new serial");
        assert_eq!(read(&zone_file), zone, "{run} rewrote the zone");
        assert_eq!(fleet.handler_lines().len(), 5, "handlers ran in {run}");
    };
    assert_quiet("the second run");

    // 3. A new certificate for host1, first in check mode.
    let host1 = HOSTS[0].0;
    let host1_vars = fleet
        .dir
        .path()
        .join("inventory/host_vars")
        .join(format!("{host1}.yaml"));
    let mut vars = String::from_utf8(read(&host1_vars)).expect("UTF-8");
    vars.push_str("  www: [www101.example.test]\n");
    fs::write(&host1_vars, vars).expect("add a certificate to host1");
    let state_before: Vec<_> = HOSTS
        .iter()
        .map(|(host, _)| snapshot(&fleet.home(host).join("state")))
        .collect();
    let config_before = read(&fleet.home(host1).join("etc/fleetcert.yaml"));
    let check = fleet.playbook(&["--check"]);
    check.expect_failed(&[BROKEN]);
    assert!(
        check
            .output
            .contains("www: pending - would order (no certificate yet)")
            && check.output.contains(&format!(
                "would publish the challenge records of {host1} www"
            )),
        "check mode does not say what it would do; output:\n{}",
        check.output
    );
    assert!(
        check.host(host1).changed > 0,
        "check mode saw nothing to do"
    );
    let state_after: Vec<_> = HOSTS
        .iter()
        .map(|(host, _)| snapshot(&fleet.home(host).join("state")))
        .collect();
    assert!(
        state_before == state_after,
        "check mode changed a state dir (an order?)"
    );
    assert_eq!(
        read(&fleet.home(host1).join("etc/fleetcert.yaml")),
        config_before,
        "check mode rewrote the host config"
    );
    assert_quiet("check mode");
    assert!(!fleet.fullchain(host1, "www").exists(), "check mode issued");
}

/// ansible-lint, production profile (ansible/.ansible-lint), passes on ansible/.
#[test]
fn ansible_lint_production_profile_passes() {
    let work = tempfile::tempdir().expect("tempdir");
    let mut command = Command::new(venv_bin().join("ansible-lint"));
    command
        .current_dir(repo().join("ansible"))
        .args(["--offline", "--nocolor"])
        .env("LC_ALL", "C.UTF-8")
        // Keep its cache out of the repository and of other runs.
        .env("XDG_CACHE_HOME", work.path())
        .env("PATH", venv_path());
    let ran = run_bounded(command, Duration::from_secs(300));
    assert!(
        ran.code == 0
            && ran
                .output
                .contains("Profile 'production' was required, and it passed"),
        "ansible-lint failed ({}):\n{}",
        ran.code,
        ran.output
    );
}
