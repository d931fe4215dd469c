//! A test issuer's finalize (`issuer: self-signed`, docs/test-gates.md) signs and installs
//! each certificate through finalize's own install, then forgets its local order. Killed
//! between the two, a service reads the new set; the next finalize signs again (the order is
//! still saved: another key, another certificate, the handlers run once more) and settles.
//! No CA and no DNS: no sandbox.

use std::path::{Path, PathBuf};

use crate::support::day::{
    CERT, Expect, ServiceSet, assert_keys_private_in, assert_no_temporary_in, killed_at,
    temporaries, versions_in,
};
use crate::support::gate::Gate;
use crate::support::util::verify_against;

/// The certificate's one name.
const NAMES: &[&str] = &["gate.example.test"];

/// The certificate's status in a successful `command`'s report.
fn status(gate: &Gate, command: &str) -> String {
    let report = gate.run(command, &[]).expect_code(0).json();
    report["certs"][0]["status"]
        .as_str()
        .unwrap_or_else(|| panic!("no status: {report:#}"))
        .to_owned()
}

/// Whether a local order for the certificate is saved.
fn order_saved(gate: &Gate) -> bool {
    !gate.local_orders()[CERT].is_null()
}

/// What a service reads: one whole set that verifies against its own certificate, no
/// temporary file beside it, every key private.
#[track_caller]
fn assert_safe(gate: &Gate) -> ServiceSet {
    let dir = gate.cert_dir().join(CERT);
    let set = ServiceSet::read_in(&dir);
    set.assert_whole(&dir);
    verify_self_signed(&dir);
    assert_no_temporary_in(&dir);
    assert_keys_private_in(&gate.cert_dir(), &gate.state_dir());
    set
}

#[track_caller]
fn verify_self_signed(dir: &Path) {
    verify_against(&dir.join("cert.pem"), &dir.join("fullchain.pem"))
        .unwrap_or_else(|err| panic!("the certificate does not verify against itself: {err}"));
}

#[test]
#[cfg_attr(
    not(feature = "crash-points"),
    ignore = "needs the binary built with --features crash-points (tests/run.sh)"
)]
fn test_issuer_killed_before_forgetting_its_order_leaves_the_new_set_and_signs_again() {
    let gate = Gate::new();
    gate.configure("self-signed", "", &[(CERT, NAMES)]);
    assert_eq!(status(&gate, "request"), "ready");
    assert_eq!(status(&gate, "finalize"), "issued");
    let old = assert_safe(&gate);
    // Another key type makes it due.
    gate.configure("self-signed", "key: rsa-2048\n", &[(CERT, NAMES)]);
    assert_eq!(status(&gate, "request"), "ready");

    let config = gate.config();
    killed_at(
        "local.installed",
        &["finalize".as_ref(), "--config".as_ref(), config.as_os_str()],
    );
    let at_kill = assert_safe(&gate);
    at_kill.assert_is(Expect::New, &old);
    assert!(order_saved(&gate), "the local order is forgotten already");

    assert_eq!(status(&gate, "finalize"), "issued");
    let now = assert_safe(&gate);
    now.assert_is(Expect::New, &at_kill);
    assert!(!order_saved(&gate), "the local order is still saved");
    assert_eq!(versions_in(&gate.cert_dir().join(CERT)).len(), 1);
    for root in [gate.cert_dir(), gate.state_dir()] {
        assert_eq!(temporaries(&root), Vec::<PathBuf>::new());
    }
    assert_eq!(status(&gate, "request"), "valid");
    assert_eq!(status(&gate, "finalize"), "unchanged");
}
