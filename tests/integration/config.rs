//! Host configs that cannot work: exit 2, one line naming the problem, nothing written.

use std::path::Path;

use crate::support::util::fleetcert;

/// A config that would work, with `acme` and top-level lines replaced by the caller.
fn config_text(dir: &Path, acme: &str, extra: &str) -> String {
    format!(
        "acme:\n{acme}\nhost: host1.example.test\nsigning_zone: acme.test\n\
         resolver: 127.0.0.1:9\nstate_dir: {state}\ncert_dir: {certs}\ngroup: root\n{extra}\
         certs:\n  main: [host1.example.test]\n",
        state = dir.join("state").display(),
        certs = dir.join("certs").display(),
    )
}

const GOOD_ACME: &str =
    "  directory: https://127.0.0.1:9/dir\n  email: ops@example.test\n  agree_tos: true";

/// Runs request and finalize on `text`; both must refuse with one line containing `needle`.
#[track_caller]
fn assert_refused(text: &str, dir: &Path, needle: &str) {
    let path = dir.join("host.yaml");
    std::fs::write(&path, text).expect("write config");
    for command in ["request", "finalize", "status"] {
        let run = fleetcert([command, "--config", path.to_str().expect("utf-8 path")]);
        run.expect_code(2);
        assert!(
            run.stdout.is_empty(),
            "{command} printed a report: {}",
            run.stdout
        );
        let lines: Vec<&str> = run.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{command}: not one line:\n{}", run.stderr);
        assert!(
            lines[0].contains(needle),
            "{command}: {needle:?} not in {:?}",
            lines[0]
        );
    }
    assert!(!dir.join("state").exists(), "state_dir created");
    assert!(!dir.join("certs").exists(), "cert_dir created");
}

#[test]
fn unknown_key_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = config_text(dir.path(), GOOD_ACME, "renew_days: 30\n");
    assert_refused(&text, dir.path(), "renew_days");
}

#[test]
fn unknown_key_inside_acme_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let acme = format!("{GOOD_ACME}\n  emial: typo@example.test");
    assert_refused(&config_text(dir.path(), &acme, ""), dir.path(), "emial");
}

#[test]
fn terms_not_agreed_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let acme = GOOD_ACME.replace("agree_tos: true", "agree_tos: false");
    assert_refused(
        &config_text(dir.path(), &acme, ""),
        dir.path(),
        "acme.agree_tos",
    );
}

#[test]
fn unknown_key_type_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = config_text(dir.path(), GOOD_ACME, "key: dsa-1024\n");
    assert_refused(&text, dir.path(), "dsa-1024");
}

#[test]
fn unreadable_ca_bundle_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("no-such-root.pem");
    let acme = format!("{GOOD_ACME}\n  ca_bundle: {}", missing.display());
    assert_refused(
        &config_text(dir.path(), &acme, ""),
        dir.path(),
        "acme.ca_bundle",
    );
}

#[test]
fn missing_email_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let acme = GOOD_ACME.replace("  email: ops@example.test\n", "");
    assert_refused(
        &config_text(dir.path(), &acme, ""),
        dir.path(),
        "acme.email",
    );
}

#[test]
fn missing_config_file_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("absent.yaml");
    let run = fleetcert(["request", "--config", path.to_str().expect("utf-8 path")]);
    run.expect_code(2);
    assert!(run.stderr.contains("absent.yaml"), "{}", run.stderr);
}

#[test]
fn well_formed_config_passes_these_checks() {
    // Guards the tests above: the same text without the fault must get past the config
    // check, or they would pass for the wrong reason.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("host.yaml");
    std::fs::write(&path, config_text(dir.path(), GOOD_ACME, "")).expect("write config");
    let run = fleetcert(["status", "--config", path.to_str().expect("utf-8 path")]);
    run.expect_code(0);
    assert_eq!(run.json()["certs"][0]["name"], "main");
}

#[test]
fn acme_and_signing_zone_are_required_unless_a_test_issuer_signs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let full = config_text(dir.path(), GOOD_ACME, "");
    let no_zone = full.replace("signing_zone: acme.test\n", "");
    assert_refused(&no_zone, dir.path(), "`signing_zone` is missing");
    let no_acme = format!("{}\n", no_zone.split_once("host:").expect("host").1);
    let no_acme = format!("host:{no_acme}");
    assert_refused(&no_acme, dir.path(), "`acme` is missing");
    // A test issuer needs neither.
    let path = dir.path().join("gate.yaml");
    std::fs::write(&path, format!("issuer: self-signed\n{no_acme}")).expect("write config");
    let run = fleetcert(["status", "--config", path.to_str().expect("utf-8 path")]);
    run.expect_code(0);
}

/// `fallback:` is checked entry by entry as `acme` is, each mistake named by its index;
/// an EAB key file others may read, a fallback that is the primary again, and a
/// `renew.fallback_within_days` beyond the renewal window are refused.
#[test]
fn bad_fallback_cas_are_named_by_their_index() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("ca-b.eab");
    std::fs::write(
        &key,
        "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W\n",
    )
    .expect("write key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let entry = |rest: &str| {
        format!(
            "fallback:\n  - {{directory: https://127.0.0.2:9/dir, email: ops@example.test, \
             agree_tos: true{rest}}}\n"
        )
    };
    let cases = [
        (
            entry(", agree_tos: false").replace("agree_tos: true, ", ""),
            "fallback[0].agree_tos",
        ),
        (
            entry(&format!(
                ", eab: {{kid: k, hmac_key_file: {}}}",
                key.display()
            )),
            "chmod 600",
        ),
        (
            entry(", eab: {kid: k}"),
            "exactly one of `hmac_key` and `hmac_key_file`",
        ),
        (
            entry("").replace("127.0.0.2", "127.0.0.1"),
            "a fallback must be another CA",
        ),
        (
            entry(", caa_identity: 'not a name'"),
            "fallback[0].caa_identity",
        ),
        (
            "renew: {before_days: 30, fallback_within_days: 31}\n".to_owned(),
            "renew.fallback_within_days",
        ),
    ];
    for (extra, needle) in cases {
        assert_refused(
            &config_text(dir.path(), GOOD_ACME, &extra),
            dir.path(),
            needle,
        );
    }
}
