//! The smaller gaps issue 11 found, each against the real sandbox: temporary files a killed
//! run left, a write that fails half-way, two runs on one host at once, the ledger and a full
//! disk, a symlinked `zone_file`, reload commands that leave children behind or hang, state
//! that cannot be saved after the CA made something, an account the CA forgot, lost DNS
//! answers in the delegation pre-check, two acme.sh certificates in one directory, and the
//! lines that named the wrong culprit.
//!
//! Each of these failed on the code before the round (commit feb4096).
//!
//! A write is made to fail with `RLIMIT_FSIZE` (`prlimit --fsize`, SIGXFSZ ignored): the
//! kernel then fails the write with EFBIG exactly where a full disk fails it with ENOSPC, for
//! one process and without a mount. A file fleetcert must not be able to replace is made
//! immutable (`chattr +i`), which root's rename cannot get past either.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::day::{
    ACCOUNTS, CERT, Day, Expect, ORDERS, ServiceSet, Zone, assert_keys_private, document,
    next_host_number, pebble_count, shared_sandbox, temporaries,
};
use crate::support::fixture::{Host, sandbox};
use crate::support::sandbox::Sandbox;
use crate::support::util::{Run, binary, fleetcert};

/// A pid above Linux's largest `pid_max` (2^22): never a live process.
const DEAD_PID: u32 = 4_194_305;

// --- helpers ---------------------------------------------------------------------------------

/// The TXT values `server` serves at `name`.
fn txt(sb: &Sandbox, server: &str, name: &str) -> BTreeSet<String> {
    sb.dig_authoritative(server, name, "TXT")
        .unwrap_or_else(|err| panic!("{err}"))
        .into_iter()
        .collect()
}

/// The values of a document's records.
fn values(document: &Value) -> BTreeSet<String> {
    document["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|record| record["value"].as_str().expect("value").to_owned())
        .collect()
}

/// The last line of stderr (the error line of a failed run).
fn error_line(run: &Run) -> &str {
    run.stderr.lines().last().unwrap_or("")
}

/// `fleetcert <command> --config <host's>` whose writes fail beyond `bytes` bytes per file.
fn with_file_size_limit(host: &Host<'_>, bytes: u64, command: &str) -> Run {
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
struct Immutable(PathBuf);

impl Immutable {
    fn new(path: &Path) -> Self {
        crate::support::util::run_ok(Command::new("chattr").arg("+i").arg(path));
        Self(path.to_owned())
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

/// An executable shell script at `path`.
fn script(path: &Path, body: &str) -> String {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).expect("write script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path.display().to_string()
}

/// Whether `pid` is a running process (a zombie nobody reaped counts as gone).
fn alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(')')
            .next()
            .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
    })
}

// --- temporary files ---------------------------------------------------------------------------

/// What killed runs leave — a key under a temporary name in `state/keys`, the old build's
/// `.privkey.pem.tmp.PID` beside the service's files, temporaries of the account, the order
/// and the zone file — is removed by the next ordinary day; a live writer's is kept.
#[test]
fn temporaries_killed_runs_left_are_removed_by_the_next_day() {
    let sb = sandbox().start();
    let zone = Zone::new(&sb, "");
    let day = Day::new(&sb, &zone, next_host_number());
    let old = day.issued_and_due();
    let key = std::fs::read(day.host.file(CERT, "privkey.pem")).expect("key");
    let zone_dir = sb
        .signing_zone_file()
        .parent()
        .expect("zone dir")
        .to_path_buf();
    let state = day.host.state_dir();
    std::fs::create_dir_all(state.join("keys")).expect("mkdir keys");
    let dead = [
        day.host
            .cert_dir()
            .join(CERT)
            .join(format!(".privkey.pem.tmp.{DEAD_PID}")),
        state
            .join("keys")
            .join(format!(".{CERT}.pem.tmp.{DEAD_PID}.123")),
        state
            .join("orders")
            .join(format!(".{CERT}.json.tmp.{DEAD_PID}.4")),
        state.join(format!(".account.json.tmp.{DEAD_PID}.56")),
        zone_dir.join(format!(".acme.test.db.tmp.{DEAD_PID}.7")),
    ];
    let live = state
        .join("keys")
        .join(format!(".other.pem.tmp.{}.8", std::process::id()));
    for path in dead.iter().chain([&live]) {
        std::fs::write(path, &key).expect("plant a temporary");
    }
    day.request_and_publish();
    day.host.finalize_ok();
    for path in &dead {
        assert!(!path.exists(), "{} is still there", path.display());
    }
    assert!(live.exists(), "a live writer's temporary was removed");
    std::fs::remove_file(&live).expect("remove");
    ServiceSet::read(&day.host, CERT).assert_is(Expect::New, &old);
    day.assert_settled();
}

/// A write that fails half-way through the install (the certificate does not fit) leaves the
/// old set, whole, and no temporary file; the next finalize installs the new set.
#[test]
fn install_whose_write_fails_leaves_the_old_set_and_no_temporary() {
    let sb = shared_sandbox();
    let zone = Zone::new(&sb, "");
    let day = Day::new(&sb, &zone, next_host_number());
    let old = day.issued_and_due();
    day.request_and_publish();
    // 512 bytes: the P-384 key (about 300) fits, the certificate (about 1000) does not.
    let run = with_file_size_limit(&day.host, 512, "finalize");
    run.expect_code(1);
    let report = run.json();
    let error = report["certs"][0]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("File too large") && error.contains("cert.pem"),
        "{report:#}"
    );
    let now = ServiceSet::read(&day.host, CERT);
    now.assert_consistent(&day.host, CERT);
    now.assert_is(Expect::Old, &old);
    for root in [day.host.cert_dir(), day.host.state_dir()] {
        assert_eq!(temporaries(&root), Vec::<PathBuf>::new());
    }
    assert_keys_private(&day.host);
    day.host.finalize_ok();
    ServiceSet::read(&day.host, CERT).assert_is(Expect::New, &old);
    day.assert_settled();
}

// --- two runs on one host ---------------------------------------------------------------------

/// Two requests at once make one order and print the same values; a finalize started while
/// another run holds the host lock waits for it and then completes; two finalizes at once
/// install one certificate and both succeed.
#[test]
fn runs_on_one_host_at_once_take_turns() {
    let sb = shared_sandbox();
    let zone = Zone::new(&sb, "");
    let day = Day::new(&sb, &zone, next_host_number());
    let old = day.issued_and_due();
    let config = day.host.config();
    let both = |command: &str| {
        thread::scope(|scope| {
            let runs = [0, 1].map(|_| {
                scope.spawn(|| fleetcert([command, "--config", config.to_str().expect("utf-8")]))
            });
            runs.map(|run| run.join().expect("thread"))
        })
    };
    let [first, second] = both("request");
    let documents = [first.expect_code(0).json(), second.expect_code(0).json()];
    assert_eq!(
        values(&documents[0]),
        values(&documents[1]),
        "two orders were made"
    );
    assert!(!values(&documents[0]).is_empty());
    zone.publish(&day.host, &documents[0]).expect_code(0);

    // Another run holds the lock: finalize waits until it is released, then completes.
    let marker = day.host.dir.path().join("held");
    let mut holder = Command::new("flock")
        .arg(day.host.state_dir().join("lock"))
        .arg("-c")
        .arg(format!("touch {}; sleep 3", marker.display()))
        .spawn()
        .expect("flock");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !marker.exists() {
        assert!(Instant::now() < deadline, "flock did not take the lock");
        thread::sleep(Duration::from_millis(20));
    }
    let mut finalize = Command::new(binary())
        .args(["finalize", "-v", "--config"])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("finalize");
    thread::sleep(Duration::from_millis(1500));
    assert!(
        finalize.try_wait().expect("try_wait").is_none(),
        "finalize did not wait for the run holding the host lock"
    );
    assert!(holder.wait().expect("flock").success());
    let out = finalize.wait_with_output().expect("finalize");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("waiting for another fleetcert run"),
        "{stderr}"
    );
    ServiceSet::read(&day.host, CERT).assert_is(Expect::New, &old);

    // Two finalizes at once: one installs, the other finds nothing left to do.
    day.names(1);
    let renewed = ServiceSet::read(&day.host, CERT);
    day.request_and_publish();
    let [first, second] = both("finalize");
    let statuses: BTreeSet<String> = [first, second]
        .iter()
        .map(|run| run.expect_code(0).json()["certs"][0]["status"].to_string())
        .collect();
    assert_eq!(
        statuses,
        BTreeSet::from(["\"issued\"".to_owned(), "\"unchanged\"".to_owned()])
    );
    let now = ServiceSet::read(&day.host, CERT);
    now.assert_consistent(&day.host, CERT);
    now.assert_is(Expect::New, &renewed);
    day.assert_settled();
}

// --- the ledger and the zone file ----------------------------------------------------------------

/// The ledger is saved before the zone changes: when it cannot be saved (here: immutable, as a
/// full disk would refuse it), the zone stays as it was, so the servers never serve records
/// the ledger does not know (and the next publish would drop). When the zone write fails
/// (a failing reload), the ledger goes back with the zone, byte for byte.
#[test]
fn ledger_is_saved_before_the_zone_changes_and_put_back_when_the_write_fails() {
    let sb = sandbox().start();
    let zone = Zone::new(&sb, "");
    let first = document("host1.example.test", &["host1.example.test"]);
    zone.publish_document("host1.example.test", &first)
        .expect_code(0);
    let zone_file = sb.signing_zone_file();
    let mut ledger = zone_file.clone().into_os_string();
    ledger.push(".ledger.json");
    let ledger = PathBuf::from(ledger);
    let before = [
        std::fs::read(&zone_file).expect("zone"),
        std::fs::read(&ledger).expect("ledger"),
    ];
    let serial = sb.serial(sb.primary());

    let second = document("host2.example.test", &["host2.example.test"]);
    {
        let _frozen = Immutable::new(&ledger);
        let run = zone.publish_document("host2.example.test", &second);
        assert_eq!(
            std::fs::read(&zone_file).expect("zone"),
            before[0],
            "the zone changed"
        );
        assert_eq!(
            sb.serial(sb.primary()),
            serial,
            "the primary serves another zone"
        );
        assert!(txt(&sb, sb.primary(), "host2.example.test.acme.test.").is_empty());
        run.expect_code(4);
        assert!(error_line(&run).contains("ledger.json"), "{}", run.stderr);
    }

    let failing = Zone::with(&sb, &zone_file, &["false"], "");
    let run = failing.publish_document("host2.example.test", &second);
    assert_eq!(
        std::fs::read(&zone_file).expect("zone"),
        before[0],
        "the zone changed"
    );
    assert_eq!(
        std::fs::read(&ledger).expect("ledger"),
        before[1],
        "the ledger changed"
    );
    run.expect_code(4);

    // Nothing was lost: the next publish serves both hosts' records.
    zone.publish_document("host2.example.test", &second)
        .expect_code(0);
    for (document, name) in [(&first, "host1"), (&second, "host2")] {
        let served = txt(
            &sb,
            sb.secondary(),
            &format!("{name}.example.test.acme.test."),
        );
        assert_eq!(served, values(document), "{name}");
    }
}

/// A `zone_file` that is a symlink is refused, naming its target; the link and the file it
/// points at stay as they were (a rename would have replaced the link and left BIND's file
/// stale).
#[test]
fn symlinked_zone_file_is_refused_and_left_alone() {
    let sb = sandbox().start();
    let real = sb.signing_zone_file();
    let link = real.with_file_name("link-to-acme.test.db");
    std::os::unix::fs::symlink(&real, &link).expect("symlink");
    let before = std::fs::read(&real).expect("zone");
    let zone = Zone::with(&sb, &link, &["true"], "");
    let run = zone.publish_document(
        "host3.example.test",
        &document("host3.example.test", &["host3.example.test"]),
    );
    assert!(
        std::fs::symlink_metadata(&link)
            .expect("stat")
            .file_type()
            .is_symlink(),
        "the link was replaced"
    );
    assert_eq!(std::fs::read(&real).expect("zone"), before);
    run.expect_code(2);
    let line = error_line(&run);
    assert!(
        line.contains("is a symlink to") && line.contains(&real.display().to_string()),
        "{line}"
    );
    std::fs::remove_file(&link).expect("remove link");
}

// --- reload commands -----------------------------------------------------------------------------

/// A reload that succeeds but leaves a child holding its output (a script that starts
/// something in the background) is a success: the zone stays published and served.
#[test]
fn reload_that_leaves_a_child_holding_its_output_succeeds() {
    let sb = shared_sandbox();
    let scratch = tempfile::tempdir().expect("tempdir");
    let reload = script(
        &scratch.path().join("reload.sh"),
        &format!(
            "{} \"$@\" || exit 1\nsleep 20 &\necho reloaded",
            sb.rndc().display()
        ),
    );
    let zone = Zone::with(
        &sb,
        &sb.signing_zone_file(),
        &[&reload, "reload", "acme.test"],
        "",
    );
    let host = format!("host{}.example.test", next_host_number());
    let doc = document(&host, &[&host]);
    let started = Instant::now();
    let run = zone.publish_document(&host, &doc);
    run.expect_code(0);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "publish waited for the child"
    );
    assert_eq!(
        txt(&sb, sb.secondary(), &format!("{host}.acme.test.")),
        values(&doc)
    );
}

/// A reload that hangs is killed after its time limit together with everything it started;
/// the previous zone goes back.
#[test]
fn hung_reload_is_killed_with_what_it_started() {
    let sb = sandbox().start();
    let zone = Zone::new(&sb, "");
    let scratch = zone.dir().to_path_buf();
    let pid_file = scratch.join("grandchild.pid");
    let calls = scratch.join("calls");
    // The first call hangs with a child of its own; the second (the restore) reloads.
    let reload = script(
        &scratch.join("hang.sh"),
        &format!(
            "echo x >> {calls}\nif [ $(wc -l < {calls}) -eq 1 ]; then\n  sleep 600 &\n  echo $! > {pid}\n  wait\nfi\nexec {rndc} \"$@\"",
            calls = calls.display(),
            pid = pid_file.display(),
            rndc = sb.rndc().display()
        ),
    );
    let hanging = Zone::with(
        &sb,
        &sb.signing_zone_file(),
        &[&reload, "reload", "acme.test"],
        "",
    );
    let before = std::fs::read(sb.signing_zone_file()).expect("zone");
    let run = hanging.publish_document(
        "host1.example.test",
        &document("host1.example.test", &["host1.example.test"]),
    );
    let grandchild = std::fs::read_to_string(&pid_file).expect("pid file");
    let grandchild = grandchild.trim();
    let survived = alive(grandchild);
    if survived {
        let _ = Command::new("kill").args(["-9", grandchild]).status();
    }
    assert!(
        !survived,
        "the reload's child {grandchild} survived the kill"
    );
    run.expect_code(4);
    assert!(
        error_line(&run).contains("killed it and what it started"),
        "{}",
        run.stderr
    );
    assert_eq!(std::fs::read(sb.signing_zone_file()).expect("zone"), before);
}

// --- state that cannot be saved ----------------------------------------------------------------

/// When the state directory cannot take a file, nothing is created at the CA whose only
/// record would be that file: no account on the first run, no order on a later one. Both
/// runs say which directory and why; the next ordinary day completes.
#[test]
fn state_that_cannot_be_saved_creates_nothing_at_the_ca() {
    let sb = sandbox().start();
    let zone = Zone::new(&sb, "");
    let day = Day::new(&sb, &zone, next_host_number());
    // 64 bytes: the lock's pid fits, an account (about 400) or an order (about 450) does not.
    let run = with_file_size_limit(&day.host, 64, "request");
    assert_eq!(pebble_count(&sb, ACCOUNTS), 0, "an account was registered");
    run.expect_code(4);
    let line = error_line(&run);
    assert!(
        line.contains(&day.host.state_dir().display().to_string())
            && line.contains("File too large"),
        "{line}"
    );

    let old = day.issued_and_due();
    let orders = pebble_count(&sb, ORDERS);
    let run = with_file_size_limit(&day.host, 64, "request");
    assert_eq!(pebble_count(&sb, ORDERS), orders, "an order was created");
    run.expect_code(1);
    let document = run.json();
    let reason = document["certs"][0]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("orders") && reason.contains("File too large"),
        "{document:#}"
    );
    assert!(day.host.saved_order(CERT).is_none());

    day.recovers(&old);
}

/// The CA forgot the host's account (here: Pebble restarted, with an empty database):
/// finalize says what to do, and the next request registers a new account and orders again.
#[test]
fn account_the_ca_forgot_is_registered_again() {
    let sb = sandbox().start();
    let zone = Zone::new(&sb, "");
    let day = Day::new(&sb, &zone, next_host_number());
    day.issued_and_due();
    day.request_and_publish();
    sb.stop_server("pebble");
    sb.start_server("pebble");
    let run = day.host.finalize();
    run.expect_code(1);
    let error = run.json()["certs"][0]["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        error.contains("no longer knows") && error.contains("run request"),
        "{error}"
    );
    let document = day.host.request_ok();
    assert_eq!(document["certs"][0]["status"], "pending", "{document:#}");
    assert_eq!(pebble_count(&sb, ACCOUNTS), 1, "no new account");
    zone.publish(&day.host, &document).expect_code(0);
    day.host.finalize_ok();
    ServiceSet::read(&day.host, CERT).assert_consistent(&day.host, CERT);
    day.assert_settled();
}

// --- the delegation pre-check ---------------------------------------------------------------

/// What [`LossyResolver`] saw.
#[derive(Default)]
struct Seen {
    /// Questions whose first copy was dropped.
    dropped: usize,
    /// Questions asked and not answered yet (their bytes after the header).
    open: HashSet<Vec<u8>>,
    most_open: usize,
}

/// Message id -> who asked, and the question (its bytes after the header).
type Asked = HashMap<[u8; 2], (SocketAddr, Vec<u8>)>;

/// A UDP relay in front of the sandbox's Unbound that loses the first copy of every
/// question, as a lossy network would, and counts the questions in flight.
struct LossyResolver {
    addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl LossyResolver {
    fn start(upstream: &str) -> Self {
        let front = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let back = UdpSocket::bind("127.0.0.1:0").expect("bind");
        back.connect(upstream).expect("connect to unbound");
        for socket in [&front, &back] {
            socket
                .set_read_timeout(Some(Duration::from_millis(100)))
                .expect("timeout");
        }
        let addr = front.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let asked: Arc<Mutex<Asked>> = Arc::default();
        let forward = {
            let (front, back) = (
                front.try_clone().expect("clone"),
                back.try_clone().expect("clone"),
            );
            let (seen, stop, asked) = (seen.clone(), stop.clone(), asked.clone());
            thread::spawn(move || {
                let mut first_copies = HashSet::new();
                let mut buf = [0u8; 4096];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((len, from)) = front.recv_from(&mut buf) else {
                        continue;
                    };
                    if len < 12 {
                        continue;
                    }
                    let question = buf[12..len].to_vec();
                    let mut seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
                    seen.open.insert(question.clone());
                    seen.most_open = seen.most_open.max(seen.open.len());
                    if first_copies.insert(question.clone()) {
                        seen.dropped += 1;
                        continue;
                    }
                    asked
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert([buf[0], buf[1]], (from, question));
                    let _ = back.send(&buf[..len]);
                }
            })
        };
        let answer = {
            let (seen, stop) = (seen.clone(), stop.clone());
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while !stop.load(Ordering::Relaxed) {
                    let Ok(len) = back.recv(&mut buf) else {
                        continue;
                    };
                    let Some((to, question)) = asked
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&[buf[0], buf[1]])
                    else {
                        continue;
                    };
                    seen.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .open
                        .remove(&question);
                    let _ = front.send_to(&buf[..len], to);
                }
            })
        };
        Self {
            addr,
            seen,
            stop,
            threads: vec![forward, answer],
        }
    }
}

impl Drop for LossyResolver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// A certificate of 40 names through a resolver that loses the first answer to every
/// question: each question is asked again, at most 16 are in flight at once, and the order
/// goes out with every name.
#[test]
fn delegation_precheck_asks_again_and_bounds_its_questions() {
    let sb = shared_sandbox();
    let lossy = LossyResolver::start(sb.resolver());
    let numbers: Vec<u32> = (0..20).map(|_| next_host_number()).collect();
    let names: Vec<String> = numbers
        .iter()
        .flat_map(|n| {
            [
                format!("host{n}.example.test"),
                format!("www{n}.example.test"),
            ]
        })
        .collect();
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let host = Host::named(&sb, sb.acme_directory(), &names[0], &[(CERT, &name_refs)]);
    // The fixture's `resolver:` is the sandbox's Unbound; this host asks the relay.
    let config = std::fs::read_to_string(host.config())
        .expect("config")
        .replace(
            &format!("resolver: {}\n", sb.resolver()),
            &format!("resolver: {}\n", lossy.addr),
        );
    std::fs::write(host.config(), config).expect("config");
    let document = host.request_ok();
    assert_eq!(
        document["records"].as_array().map(Vec::len),
        Some(40),
        "{document:#}"
    );
    let seen = lossy.seen.lock().unwrap_or_else(PoisonError::into_inner);
    // 40 CNAME questions of the delegation check, then the DNSSEC check's (docs/dnssec.md):
    // the same 40 with the DO bit (other bytes, so other questions to the relay) and the
    // signing zone's SOA; then CAA before the order (docs/renewal.md): one question per
    // name and one at example.test, whose apex set ends every walk.
    assert_eq!(
        seen.dropped,
        81 + 41,
        "every question lost its first answer"
    );
    assert!(
        (2..=16).contains(&seen.most_open),
        "{} questions in flight at once",
        seen.most_open
    );
}

// --- config and lines --------------------------------------------------------------------------

/// acme.sh's layout names the directory after the first name: two certificates with the
/// same first name are refused at load, naming both.
#[test]
fn acme_sh_layout_refuses_two_certificates_with_one_first_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("fleetcert.yaml");
    std::fs::write(
        &config,
        format!(
            "acme: {{directory: https://127.0.0.1:1/dir, email: ops@example.test, agree_tos: true}}\n\
             host: host1.example.test\nsigning_zone: acme.test\nresolver: 127.0.0.1:1\n\
             state_dir: {0}/state\ncert_dir: {0}/certs\nlayout: acme.sh\ncerts:\n\
             \x20 web: [host1.example.test, www1.example.test]\n\
             \x20 other: [host1.example.test, www2.example.test]\n",
            dir.path().display()
        ),
    )
    .expect("write config");
    let run = fleetcert(["request", "--config", config.to_str().expect("utf-8")]);
    run.expect_code(2);
    let line = error_line(&run);
    assert!(
        line.contains("certs.other")
            && line.contains("certs.web")
            && line.contains("host1.example.test"),
        "{line}"
    );
    assert!(
        !dir.path().join("state").exists(),
        "the state directory was created"
    );
}

/// With the primary down, the failed reload's line names the server that did not answer
/// and asks whether the primary runs, instead of telling the operator to fix `reload`.
#[test]
fn primary_down_is_named_rather_than_the_reload_command() {
    let sb = sandbox().start();
    let zone = Zone::new(&sb, "");
    zone.publish_document(
        "host1.example.test",
        &document("host1.example.test", &["host1.example.test"]),
    )
    .expect_code(0);
    let primary = sb.primary().to_owned();
    sb.stop_server("primary");
    let run = zone.publish_document(
        "host2.example.test",
        &document("host2.example.test", &["host2.example.test"]),
    );
    let line = error_line(&run);
    assert!(
        line.contains(&format!("{primary} did not answer"))
            && line.contains("is the primary running"),
        "{line}"
    );
    assert!(
        !line.contains("fix `reload` in the zone config and"),
        "{line}"
    );
    run.expect_code(4);
}

/// In per-name mode, a name crowded by many hosts' orders gets advice that fits per-name
/// mode, not "use per-name".
#[test]
fn crowded_name_in_per_name_mode_gets_per_name_advice() {
    let sb = shared_sandbox();
    let zone = Zone::new(&sb, "");
    let documents: Vec<Value> = (1..=101)
        .map(|n| document(&format!("crowd{n}.example.test"), &["crowded.example.test"]))
        .collect();
    let tokens = zone.dir().join("crowd.json");
    std::fs::write(&tokens, Value::Array(documents).to_string()).expect("write");
    let run = fleetcert([
        "publish",
        "--config",
        zone.config().to_str().expect("utf-8"),
        "--tokens",
        tokens.to_str().expect("utf-8"),
    ]);
    run.expect_code(2);
    let line = error_line(&run);
    assert!(
        line.contains("101 TXT values at crowded.example.test.acme.test."),
        "{line}"
    );
    assert!(
        line.contains("publish fewer orders for that name"),
        "{line}"
    );
    assert!(!line.contains("use challenge_records: per-name"), "{line}");
}
