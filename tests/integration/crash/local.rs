//! A test issuer's finalize (`issuer: self-signed`, docs/test-gates.md) signs and installs
//! each certificate through finalize's own install, then forgets its local order. Killed
//! between the two, a service reads the new set; the next finalize signs again (the order is
//! still saved: another key, another certificate, the handlers run once more) and settles.
//! No CA and no DNS: no sandbox.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{
    CERT, Expect, ServiceSet, assert_keys_private_in, assert_no_temporary_in, killed_at,
    temporaries, versions_in,
};
use crate::fixture::KEY_GROUP;
use crate::util::{Run, fleetcert, verify_against};

/// A gate job's host: config, state and certificates in a temporary directory.
struct Gate {
    dir: tempfile::TempDir,
}

impl Gate {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// A self-signed `main` for one name; `extra` is more top-level lines.
    fn configure(&self, extra: &str) {
        let text = format!(
            "issuer: self-signed\nhost: gate.example.test\nstate_dir: {}\ncert_dir: {}\n\
             group: {KEY_GROUP}\n{extra}certs:\n  {CERT}: [gate.example.test]\n",
            Value::from(self.state_dir().display().to_string()),
            Value::from(self.cert_dir().display().to_string()),
        );
        std::fs::write(self.config(), text).expect("write config");
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("fleetcert.yaml")
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn cert_dir(&self) -> PathBuf {
        self.dir.path().join("certs")
    }

    /// The certificate's directory, where a service reads it.
    fn set_dir(&self) -> PathBuf {
        self.cert_dir().join(CERT)
    }

    fn args(&self, command: &str) -> Vec<String> {
        vec![
            command.to_owned(),
            "--config".to_owned(),
            self.config().display().to_string(),
        ]
    }

    fn run(&self, command: &str) -> Run {
        fleetcert(self.args(command))
    }

    /// The certificate's status in a successful `command`'s report.
    fn status(&self, command: &str) -> String {
        let report = self.run(command).expect_code(0).json();
        report["certs"][0]["status"]
            .as_str()
            .unwrap_or_else(|| panic!("no status: {report:#}"))
            .to_owned()
    }

    /// Whether a local order for the certificate is saved.
    fn order_saved(&self) -> bool {
        let path = self.state_dir().join("local-orders.json");
        std::fs::read_to_string(path).is_ok_and(|text| {
            let file: Value = serde_json::from_str(&text).expect("local orders");
            !file["orders"][CERT].is_null()
        })
    }

    /// What a service reads: one whole set that verifies against its own certificate, no
    /// temporary file beside it, every key private.
    #[track_caller]
    fn assert_safe(&self) -> ServiceSet {
        let dir = self.set_dir();
        let set = ServiceSet::read_in(&dir);
        set.assert_whole(&dir);
        verify_self_signed(&dir);
        assert_no_temporary_in(&dir);
        assert_keys_private_in(&self.cert_dir(), &self.state_dir());
        set
    }
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
    gate.configure("");
    assert_eq!(gate.status("request"), "ready");
    assert_eq!(gate.status("finalize"), "issued");
    let old = gate.assert_safe();
    // Another key type makes it due.
    gate.configure("key: rsa-2048\n");
    assert_eq!(gate.status("request"), "ready");

    killed_at("local.installed", &gate.args("finalize"));
    let at_kill = gate.assert_safe();
    at_kill.assert_is(Expect::New, &old);
    assert!(gate.order_saved(), "the local order is forgotten already");

    assert_eq!(gate.status("finalize"), "issued");
    let now = gate.assert_safe();
    now.assert_is(Expect::New, &at_kill);
    assert!(!gate.order_saved(), "the local order is still saved");
    assert_eq!(versions_in(&gate.set_dir()).len(), 1);
    for root in [gate.cert_dir(), gate.state_dir()] {
        assert_eq!(temporaries(&root), Vec::<PathBuf>::new());
    }
    assert_eq!(gate.status("request"), "valid");
    assert_eq!(gate.status("finalize"), "unchanged");
}
