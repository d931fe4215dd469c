//! What a run that dies or fails half-way leaves, and the next day: temporary files of
//! killed runs, a write that fails half-way, two runs on one host at once, state that cannot
//! be saved after the CA made something, and an account the CA forgot.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::day::{
    ACCOUNTS, CERT, Day, Expect, ORDERS, ServiceSet, Zone, assert_keys_private, next_host_number,
    pebble_count, shared_sandbox, temporaries,
};
use crate::support::faults::{DEAD_PID, with_file_size_limit};
use crate::support::fixture::sandbox;
use crate::support::util::{binary, fleetcert, last_stderr_line, values};

/// Polls `done` until it holds; panics naming `what` after 300 s (a guard against a hang:
/// on an idle machine it takes milliseconds), saying every 30 s that it still waits.
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    let mut next_note = Duration::from_secs(30);
    while !done() {
        let waited = started.elapsed();
        assert!(
            waited < Duration::from_secs(300),
            "waited {waited:.0?} for {what}"
        );
        if waited >= next_note {
            eprintln!("still waiting for {what} after {waited:.0?}");
            next_note += Duration::from_secs(30);
        }
        thread::sleep(Duration::from_millis(20));
    }
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
    // The holder keeps the lock until the test lets go (no timed hold: on a loaded machine
    // finalize may take seconds to reach the lock).
    let marker = day.host.dir.path().join("held");
    let release = day.host.dir.path().join("release");
    let mut holder = Command::new("flock")
        .arg(day.host.state_dir().join("lock"))
        .arg("-c")
        .arg(format!(
            "touch {}; while [ ! -e {} ]; do sleep 0.05; done",
            marker.display(),
            release.display()
        ))
        .spawn()
        .expect("flock");
    wait_for("flock to take the lock", || marker.exists());
    let finalize_err = day.host.dir.path().join("finalize.err");
    let mut finalize = Command::new(binary())
        .args(["finalize", "-v", "--config"])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&finalize_err).expect("finalize.err"))
        .spawn()
        .expect("finalize");
    wait_for("finalize to say it waits for the lock", || {
        std::fs::read_to_string(&finalize_err)
            .is_ok_and(|text| text.contains("waiting for another fleetcert run"))
    });
    assert!(
        finalize.try_wait().expect("try_wait").is_none(),
        "finalize did not wait for the run holding the host lock"
    );
    std::fs::write(&release, "").expect("release the lock");
    assert!(holder.wait().expect("flock").success());
    let out = finalize.wait_with_output().expect("finalize");
    let stderr = std::fs::read_to_string(&finalize_err).expect("finalize.err");
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
    let line = last_stderr_line(&run);
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
