//! The host half against the real sandbox: `request`, records placed by the test helper (the
//! stand-in for `publish`), `finalize`, `status`.
//!
//! Each test starts its own sandbox with `PEBBLE_AUTHZREUSE=0`, so a new order almost always
//! waits for records. Almost: Pebble 2.4 reuses a valid authorization when
//! `rand.Intn(100) > percent` fails, which at 0 is one time in a hundred, so a test that
//! orders a validated name again accepts a reused one. Bad nonces stay at Pebble's default
//! 5 %, which the code must ride out.

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use serde_json::Value;

use crate::support::config::HostConfig;
use crate::support::day::{CERT, next_host_number, shared_sandbox};
use crate::support::fixture::{Host, cert, records, sandbox};
use crate::support::sandbox::Sandbox;
use crate::support::util::last_stderr_line;
use crate::support::util::{fleetcert, sans, snapshot};
use crate::support::util::{gid, key_group_gid, key_kind, mode, sorted};

/// The records of one certificate.
fn records_of(document: &Value, cert: &str) -> Vec<Value> {
    document["records"]
        .as_array()
        .expect("records is a list")
        .iter()
        .filter(|record| record["cert"] == cert)
        .cloned()
        .collect()
}

/// The identifiers of one certificate's records, sorted.
fn identifiers(document: &Value, cert: &str) -> Vec<String> {
    let mut identifiers: Vec<String> = records_of(document, cert)
        .iter()
        .map(|record| {
            record["identifier"]
                .as_str()
                .expect("identifier")
                .to_owned()
        })
        .collect();
    identifiers.sort();
    identifiers
}

/// The account URLs stored in `account.json`.
fn account_ids(host: &Host<'_>) -> Vec<String> {
    let text = std::fs::read_to_string(host.state_dir().join("account.json")).expect("account");
    let file: Value = serde_json::from_str(&text).expect("account.json");
    file["accounts"]
        .as_object()
        .expect("accounts")
        .values()
        .map(|account| account["id"].as_str().expect("id").to_owned())
        .collect()
}

/// Asserts that `cert` was issued with `names` and a chain Pebble's root accepts.
#[track_caller]
fn assert_issued(host: &Host<'_>, report: &Value, cert_name: &str, names: &[&str]) {
    let entry = cert(report, cert_name);
    assert_eq!(entry["status"], "issued", "{report:#}");
    assert_eq!(entry["changed"], true);
    let fullchain = host.file(cert_name, "fullchain.pem");
    host.sb
        .verify_chain(&fullchain)
        .unwrap_or_else(|err| panic!("chain of {cert_name} does not verify: {err}"));
    assert_eq!(sans(&host.file(cert_name, "cert.pem")), sorted(names));
    assert_eq!(
        sans(&fullchain),
        sorted(names),
        "fullchain's leaf comes first"
    );
}

// --- tests -------------------------------------------------------------------------------

#[test]
fn two_names_issue_a_verified_chain_with_private_key_modes_and_one_account() {
    let sb = sandbox().start();
    let main_names: &[&str] = &["host1.example.test", "www1.example.test"];
    let host = Host::new(
        &sb,
        &[("main", main_names), ("second", &["host2.example.test"])],
    );

    let document = host.request_ok();
    assert_eq!(document["changed"], true);
    assert_eq!(cert(&document, "main")["status"], "pending");
    assert_eq!(cert(&document, "second")["status"], "pending");
    let identifiers = identifiers(&document, "main");
    assert_eq!(identifiers, main_names);
    for record in records_of(&document, "main") {
        let identifier = record["identifier"].as_str().expect("identifier");
        assert_eq!(record["name"], format!("{identifier}.acme.test."));
        assert_eq!(record["value"].as_str().expect("value").len(), 43);
    }
    // Both orders come from the one account registered by this run.
    let accounts = account_ids(&host);
    assert_eq!(accounts.len(), 1, "one account per CA");
    for name in ["main", "second"] {
        assert_eq!(
            host.saved_order(name).expect("order saved")["account"],
            accounts[0].as_str()
        );
    }
    assert_eq!(mode(&host.state_dir().join("account.json")), 0o600);
    assert_eq!(mode(&host.state_dir()), 0o700);

    host.place(&document);
    let report = host.finalize_ok();
    assert_eq!(report["changed"], true);
    assert_issued(&host, &report, "main", main_names);
    assert_issued(&host, &report, "second", &["host2.example.test"]);
    assert!(host.saved_order("main").is_none(), "order kept after issue");

    let group = key_group_gid();
    for name in ["main", "second"] {
        let key = host.file(name, "privkey.pem");
        assert_eq!(mode(&key), 0o640, "{}", key.display());
        assert_eq!(gid(&key), group, "key group of {}", key.display());
        assert_eq!(mode(&host.cert_dir().join(name)), 0o750);
        assert_eq!(gid(&host.cert_dir().join(name)), group);
        for public in ["cert.pem", "chain.pem", "fullchain.pem"] {
            assert_eq!(mode(&host.file(name, public)), 0o644);
        }
        assert_eq!(
            key_kind(&host.file(name, "cert.pem"), &key),
            "id-ecPublicKey NIST CURVE: P-384",
            "default key type"
        );
    }
    // The chain file holds the intermediates, the full chain is leaf + chain.
    let leaf = std::fs::read_to_string(host.file("main", "cert.pem")).expect("cert");
    let chain = std::fs::read_to_string(host.file("main", "chain.pem")).expect("chain");
    let full = std::fs::read_to_string(host.file("main", "fullchain.pem")).expect("full");
    assert_eq!(full, format!("{leaf}{chain}"));
    assert!(!chain.is_empty());

    // A later run with a third certificate reuses the account: not registered again.
    let account_file = std::fs::read(host.state_dir().join("account.json")).expect("account");
    host.configure(
        "",
        &[
            ("main", main_names),
            ("second", &["host2.example.test"]),
            ("third", &["host3.example.test"]),
        ],
    );
    let document = host.request_ok();
    assert_eq!(cert(&document, "main")["status"], "valid");
    assert_eq!(cert(&document, "third")["status"], "pending");
    assert_eq!(
        host.saved_order("third").expect("order saved")["account"],
        accounts[0].as_str()
    );
    assert_eq!(
        std::fs::read(host.state_dir().join("account.json")).expect("account"),
        account_file,
        "account.json rewritten"
    );
}

#[test]
fn second_request_with_a_valid_certificate_orders_nothing() {
    let sb = sandbox().start();
    let host = Host::new(&sb, &[("main", &["host1.example.test"])]);
    host.issue();
    let before = snapshot(host.dir.path());

    let document = host.request_ok();
    assert_eq!(document["changed"], false);
    assert_eq!(document["records"], Value::Array(Vec::new()));
    let main = cert(&document, "main");
    assert_eq!(main["status"], "valid");
    assert!(main["not_after"].is_string(), "{document:#}");
    assert!(
        main["reason"]
            .as_str()
            .expect("reason")
            .starts_with("not due"),
        "{document:#}"
    );
    let orders = host.state_dir().join("orders");
    assert!(
        snapshot(&orders).is_empty(),
        "an order was saved: {:?}",
        snapshot(&orders)
    );

    // finalize has nothing to do either, and neither run changed a file.
    let report = host.finalize_ok();
    assert_eq!(report["changed"], false);
    assert_eq!(cert(&report, "main")["status"], "unchanged");
    assert_eq!(snapshot(host.dir.path()), before, "a file changed");

    // status reads the same from disk.
    let status = host.run("status", &[]).expect_code(0).json();
    let main = cert(&status, "main");
    assert_eq!(main["pending"], false);
    assert_eq!(main["key_type"], "ecdsa-p384");
    assert!(main["days_left"].as_i64().expect("days_left") > 30);
    assert_eq!(main["not_after"], cert(&document, "main")["not_after"]);

    // With ARI off the same holds (and the run never opens the account).
    host.configure(
        "renew: {ari: false}\n",
        &[("main", &["host1.example.test"])],
    );
    let document = host.request_ok();
    assert_eq!(document["changed"], false);
    assert_eq!(cert(&document, "main")["status"], "valid");
}

#[test]
fn changed_name_set_orders_at_once_and_replaces_a_pending_order() {
    let sb = sandbox().start();
    let host = Host::new(&sb, &[("main", &["host1.example.test"])]);
    host.issue();
    let old = snapshot(&host.cert_dir());

    host.configure(
        "",
        &[("main", &["host1.example.test", "www1.example.test"])],
    );
    let document = host.request_ok();
    let main = cert(&document, "main");
    assert_eq!(main["status"], "pending", "{document:#}");
    assert_eq!(document["changed"], true);
    let reason = main["reason"].as_str().expect("reason");
    assert!(
        reason.contains("names changed") && reason.contains("www1.example.test"),
        "{reason}"
    );
    let first_order = host.saved_order("main").expect("order saved")["url"].clone();
    // www1 is new; host1's valid authorization may be reused even at PEBBLE_AUTHZREUSE=0.
    let identifiers_now = identifiers(&document, "main");
    assert!(
        identifiers_now.contains(&"www1.example.test".to_owned()) && identifiers_now.len() <= 2,
        "{document:#}"
    );

    // The names change again before finalize: the pending order no longer fits.
    let names: &[&str] = &["host1.example.test", "www2.example.test"];
    host.configure("", &[("main", names)]);
    let document = host.request_ok();
    let order = host.saved_order("main").expect("order saved");
    assert_ne!(order["url"], first_order, "the old order was kept");
    assert_eq!(order["names"], serde_json::json!(names));
    let identifiers = identifiers(&document, "main");
    assert!(
        identifiers.contains(&"www2.example.test".to_owned()),
        "{document:#}"
    );
    assert!(
        !identifiers.contains(&"www1.example.test".to_owned()),
        "{document:#}"
    );
    assert_eq!(
        snapshot(&host.cert_dir()),
        old,
        "request touched the certificate"
    );

    host.place(&document);
    let report = host.finalize_ok();
    assert_issued(&host, &report, "main", names);
}

#[test]
fn request_twice_before_finalize_keeps_the_order_and_its_values() {
    let sb = sandbox().start();
    let names: &[&str] = &["host4.example.test", "www4.example.test"];
    let host = Host::new(&sb, &[("main", names)]);
    let first = host.request_ok();
    let order = host.saved_order("main").expect("order saved");
    assert_eq!(first["changed"], true);

    let second = host.request_ok();
    assert_eq!(second["changed"], false, "a second order was made");
    assert_eq!(host.saved_order("main").expect("order saved"), order);
    assert_eq!(records(&second), records(&first));
    assert_eq!(records(&second).len(), 2);
    assert_eq!(cert(&second, "main")["status"], "pending");
    let status = host.run("status", &[]).expect_code(0).json();
    assert_eq!(cert(&status, "main")["pending"], true);
    assert_eq!(cert(&status, "main")["not_after"], Value::Null);

    host.place(&second);
    let report = host.finalize_ok();
    assert_issued(&host, &report, "main", names);
}

#[test]
fn issuance_survives_a_ca_rejecting_half_the_nonces() {
    let sb = sandbox().pebble_env("PEBBLE_WFE_NONCEREJECT", "50").start();
    let names: &[&str] = &["host1.example.test", "www1.example.test"];
    let host = Host::new(&sb, &[("main", names), ("second", &["host2.example.test"])]);
    let report = host.issue();
    assert_issued(&host, &report, "main", names);
    assert_issued(&host, &report, "second", &["host2.example.test"]);
    let log = std::fs::read_to_string(sb.dir().join("logs/pebble.log")).expect("pebble log");
    assert!(
        log.contains("reject 50% of good nonces"),
        "PEBBLE_WFE_NONCEREJECT not applied"
    );
}

#[test]
fn missing_or_wrong_record_fails_that_certificate_only_and_keeps_its_files() {
    let sb = sandbox().start();
    let certs: &[(&str, &[&str])] = &[
        ("main", &["host1.example.test"]),
        ("other", &["www1.example.test"]),
    ];
    let host = Host::new(&sb, certs);
    host.issue();
    let main_dir = host.cert_dir().join("main");
    let main_before = snapshot(&main_dir);
    let other_before = snapshot(&host.cert_dir().join("other"));

    // A key type change makes both due, and main gets a name this account never validated:
    // Pebble may reuse a valid authorization even at PEBBLE_AUTHZREUSE=0 (its test is
    // `rand.Intn(100) > percent`), and a reused name would need no record to fail with.
    // main's record goes up with a wrong value.
    let certs: &[(&str, &[&str])] = &[
        ("main", &["host2.example.test"]),
        ("other", &["www1.example.test"]),
    ];
    host.configure("key: ecdsa-p256\n", certs);
    let document = host.request_ok();
    assert_eq!(cert(&document, "main")["status"], "pending");
    let wrong = "A".repeat(43);
    let mut placed: Vec<(String, String)> = Vec::new();
    for record in document["records"].as_array().expect("records") {
        let name = record["name"].as_str().expect("name").to_owned();
        let value = if record["cert"] == "main" {
            wrong.clone()
        } else {
            record["value"].as_str().expect("value").to_owned()
        };
        placed.push((name, value));
    }
    let borrowed: Vec<(&str, &str)> = placed
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    sb.place_records(&borrowed);

    let run = host.finalize();
    run.expect_code(1);
    let report = run.json();
    let main = cert(&report, "main");
    assert_eq!(main["status"], "failed");
    assert_eq!(main["changed"], false);
    let error = main["error"].as_str().expect("error");
    assert!(!error.contains('\n'), "not one line: {error}");
    assert!(
        error.contains("urn:ietf:params:acme:error:"),
        "not the CA's problem: {error}"
    );
    assert_eq!(
        snapshot(&main_dir),
        main_before,
        "failed certificate's files changed"
    );
    // The other certificate still completed, with the new key type.
    assert_issued(&host, &report, "other", &["www1.example.test"]);
    assert_ne!(snapshot(&host.cert_dir().join("other")), other_before);
    assert_eq!(report["changed"], true);
    // The dead order is forgotten ...
    assert!(host.saved_order("main").is_none(), "invalid order kept");

    // ... so the next request makes a new one; this time nothing is published at all.
    let document = host.request_ok();
    assert_eq!(cert(&document, "main")["status"], "pending");
    assert_eq!(cert(&document, "other")["status"], "valid");
    assert_eq!(records_of(&document, "main").len(), 1);
    sb.place_records(&[]);
    let run = host.finalize();
    run.expect_code(1);
    let report = run.json();
    let main = cert(&report, "main");
    assert_eq!(main["status"], "failed");
    let error = main["error"].as_str().expect("error");
    assert!(
        !error.contains('\n') && error.contains("urn:ietf:params:acme:error:"),
        "{error}"
    );
    assert_eq!(cert(&report, "other")["status"], "unchanged");
    assert_eq!(
        snapshot(&main_dir),
        main_before,
        "failed certificate's files changed"
    );
}

#[test]
fn name_without_challenge_cname_is_refused_with_the_fix_and_others_still_ordered() {
    let sb = sandbox().start();
    let host = Host::new(
        &sb,
        &[
            ("main", &["host1.example.test"]),
            ("nocname", &["www2.example.test", "nocname.example.test"]),
            ("wrong", &["wrong.example.test"]),
        ],
    );
    let run = host.request();
    run.expect_code(1);
    let document = run.json();

    let refused = cert(&document, "nocname");
    assert_eq!(refused["status"], "failed");
    let reason = refused["reason"].as_str().expect("reason");
    assert!(
        reason.contains(
            "add `_acme-challenge.nocname.example.test. CNAME nocname.example.test.acme.test.`"
        ),
        "the fix is not spelled out: {reason}"
    );
    assert!(!reason.contains("www2"), "www2 is delegated: {reason}");
    let wrong = cert(&document, "wrong")["reason"].as_str().expect("reason");
    assert!(
        wrong.contains("elsewhere.invalid.") && wrong.contains("wrong.example.test.acme.test."),
        "{wrong}"
    );
    for refused in ["nocname", "wrong"] {
        assert!(records_of(&document, refused).is_empty());
        assert!(host.saved_order(refused).is_none(), "{refused} was ordered");
    }

    assert_eq!(cert(&document, "main")["status"], "pending");
    assert_eq!(records_of(&document, "main").len(), 1);
    assert!(host.saved_order("main").is_some());

    // finalize completes the one that was ordered and leaves the refused ones alone.
    host.place(&document);
    let report = host.finalize_ok();
    assert_issued(&host, &report, "main", &["host1.example.test"]);
    assert_eq!(cert(&report, "nocname")["status"], "unchanged");
}

#[test]
fn host_whose_names_all_lack_their_cname_registers_no_account() {
    let sb = sandbox().start();
    let host = Host::new(&sb, &[("main", &["nocname.example.test"])]);
    let run = host.request();
    run.expect_code(1);
    assert_eq!(cert(&run.json(), "main")["status"], "failed");
    assert!(
        !host.state_dir().join("account.json").exists(),
        "an account was registered for a host that cannot order anything"
    );
}

#[test]
fn acme_sh_layout_writes_opendevs_file_names() {
    let sb = sandbox().start();
    let names: &[&str] = &["www1.example.test", "host1.example.test"];
    let host = Host::new(&sb, &[]);
    host.configure("layout: acme.sh\n", &[("main", names)]);
    let report = host.issue();
    let dir = host.cert_dir().join("www1.example.test");
    let entry = cert(&report, "main");
    assert_eq!(entry["status"], "issued");
    assert_eq!(
        entry["paths"]["fullchain"],
        dir.join("fullchain.cer").to_str().expect("utf-8")
    );
    let mut files = crate::support::util::names_in(&dir);
    // The versions and the `..data` link that switches them are hidden names.
    files.retain(|name| !name.starts_with(".."));
    assert_eq!(
        files,
        [
            "ca.cer",
            "fullchain.cer",
            "www1.example.test.cer",
            "www1.example.test.key"
        ]
    );
    sb.verify_chain(&dir.join("fullchain.cer"))
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(sans(&dir.join("www1.example.test.cer")), sorted(names));
    let key = dir.join("www1.example.test.key");
    assert_eq!(mode(&key), 0o640);
    assert_eq!(mode(&dir), 0o750);
    key_kind(&dir.join("www1.example.test.cer"), &key);
    assert!(!host.cert_dir().join("main").exists());

    // The next request reads these files: nothing is due.
    let document = host.request_ok();
    assert_eq!(cert(&document, "main")["status"], "valid", "{document:#}");
}

#[test]
fn reused_authorizations_make_a_ready_order_that_needs_no_record() {
    let sb = Sandbox::builder()
        .pebble_env("PEBBLE_AUTHZREUSE", "100")
        .start();
    let certs: &[(&str, &[&str])] = &[("main", &["host1.example.test", "www1.example.test"])];
    let host = Host::new(&sb, certs);
    host.issue();

    // A new order for the same names (the key type changed) is valid already at the CA.
    host.configure("key: ecdsa-p256\n", certs);
    let document = host.request_ok();
    assert_eq!(document["changed"], true);
    assert_eq!(cert(&document, "main")["status"], "ready", "{document:#}");
    assert_eq!(document["records"], Value::Array(Vec::new()));
    assert!(host.saved_order("main").is_some());

    // Nothing is published (the zone is emptied to be sure) and finalize completes.
    sb.place_records(&[]);
    let report = host.finalize_ok();
    assert_issued(&host, &report, "main", certs[0].1);
    assert_eq!(
        key_kind(
            &host.file("main", "cert.pem"),
            &host.file("main", "privkey.pem")
        ),
        "id-ecPublicKey NIST CURVE: P-256"
    );
}

#[test]
fn wildcard_and_its_base_name_need_both_values_on_one_record_name() {
    let sb = sandbox().start();
    let names: &[&str] = &["host5.example.test", "*.host5.example.test"];
    let host = Host::new(&sb, &[("main", names)]);
    let document = host.request_ok();
    let placed = records(&document);
    assert_eq!(placed.len(), 2, "{document:#}");
    assert_eq!(placed[0].0, "host5.example.test.acme.test.");
    assert_eq!(placed[1].0, "host5.example.test.acme.test.");
    assert_ne!(placed[0].1, placed[1].1, "one value for two authorizations");
    let identifiers = identifiers(&document, "main");
    assert_eq!(identifiers, ["*.host5.example.test", "host5.example.test"]);

    // One of the two values alone is not enough.
    sb.place_records(&[(placed[0].0.as_str(), placed[0].1.as_str())]);
    let run = host.finalize();
    run.expect_code(1);
    assert_eq!(cert(&run.json(), "main")["status"], "failed");

    // A new order, its values placed: issued for both names. The authorization that passed
    // above may be reused (Pebble does so even at PEBBLE_AUTHZREUSE=0, rarely).
    let document = host.request_ok();
    assert!((1..=2).contains(&records(&document).len()), "{document:#}");
    host.place(&document);
    let report = host.finalize_ok();
    assert_issued(&host, &report, "main", names);
}

#[test]
fn issued_key_has_the_configured_type() {
    let sb = sandbox().start();
    let certs: &[(&str, &[&str])] = &[("main", &["host6.example.test"])];
    let host = Host::new(&sb, &[]);
    for (key, want) in [
        ("rsa-2048", "rsaEncryption Public-Key: (2048 bit)"),
        ("ecdsa-p256", "id-ecPublicKey NIST CURVE: P-256"),
    ] {
        host.configure(&format!("key: {key}\n"), certs);
        let report = host.issue();
        assert_issued(&host, &report, "main", &["host6.example.test"]);
        assert_eq!(
            key_kind(
                &host.file("main", "cert.pem"),
                &host.file("main", "privkey.pem")
            ),
            want
        );
        let status = host.run("status", &[]).expect_code(0).json();
        assert_eq!(cert(&status, "main")["key_type"], key);
    }
}

#[test]
fn dry_run_orders_nothing_and_writes_nothing() {
    let sb = sandbox().start();
    let certs: &[(&str, &[&str])] = &[("main", &["host7.example.test"])];
    let host = Host::new(&sb, certs);

    // Nothing yet: the dry run says it would order, and creates not even the account.
    let document = host.run("request", &["--dry-run"]).expect_code(0).json();
    assert_eq!(cert(&document, "main")["status"], "pending");
    assert!(
        cert(&document, "main")["reason"]
            .as_str()
            .expect("reason")
            .starts_with("would order"),
        "{document:#}"
    );
    assert_eq!(document["records"], Value::Array(Vec::new()));
    assert!(!host.state_dir().exists(), "state_dir created");
    assert!(!host.cert_dir().exists(), "cert_dir created");
    let report = host.run("finalize", &["--dry-run"]).expect_code(0).json();
    assert_eq!(report["changed"], false);
    assert!(!host.state_dir().exists() && !host.cert_dir().exists());

    // With an order pending, neither dry run touches it.
    let document = host.request_ok();
    let before = snapshot(host.dir.path());
    host.run("request", &["--dry-run"]).expect_code(0);
    let report = host.run("finalize", &["--dry-run"]).expect_code(0).json();
    assert_eq!(cert(&report, "main")["status"], "would_issue");
    assert_eq!(snapshot(host.dir.path()), before, "a dry run wrote a file");

    // The order is still there to complete.
    host.place(&document);
    let report = host.finalize_ok();
    assert_issued(&host, &report, "main", &["host7.example.test"]);
}

#[test]
fn private_keys_never_reach_stdout_or_stderr_even_verbose() {
    let sb = sandbox().start();
    let host = Host::new(&sb, &[("main", &["host8.example.test"])]);
    host.flags.borrow_mut().push("-vvv".to_owned());
    // Every run below is checked by the fixture against every key on disk after it.
    let document = host.request_ok();
    assert!(
        document.to_string().len() < 4000,
        "token document is suspiciously large"
    );
    host.place(&document);
    host.finalize_ok();
    assert!(!host.secrets().is_empty(), "no key to look for");
    host.request_ok();
    host.run("status", &[]).expect_code(0);
    host.run("status", &["--format", "table"]).expect_code(0);
    host.run("request", &["--dry-run"]).expect_code(0);
    host.run("finalize", &["--dry-run"]).expect_code(0);
    // A renewal (new key) with the account and a saved key in play.
    host.configure("key: rsa-2048\n", &[("main", &["host8.example.test"])]);
    let document = host.request_ok();
    host.place(&document);
    host.finalize_ok();
}

#[test]
fn finalize_refuses_an_order_made_at_another_ca_and_forgets_it() {
    // No sandbox: the check comes before any CA contact.
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    std::fs::create_dir_all(state.join("orders")).expect("mkdir");
    let order = serde_json::json!({
        "version": 1, "url": "https://old-ca.test/order/1",
        "directory": "https://old-ca.test/dir", "account": "https://old-ca.test/acct/1",
        "names": ["host1.example.test"], "key": "ecdsa-p384", "profile": null,
        "reason": "no certificate yet", "created": "2026-01-01T00:00:00Z"
    });
    let order_file = state.join("orders/main.json");
    std::fs::write(&order_file, order.to_string()).expect("write order");
    let config = dir.path().join("fleetcert.yaml");
    HostConfig::offline(dir.path())
        .cert("main", &["host1.example.test"])
        .write(&config);
    let run = fleetcert(["finalize", "--config", config.to_str().expect("utf-8")]);
    run.expect_code(1);
    let error = cert(&run.json(), "main")["error"]
        .as_str()
        .expect("error")
        .to_owned();
    assert!(
        error.contains("https://old-ca.test/dir") && error.contains("run request again"),
        "{error}"
    );
    assert!(!order_file.exists(), "the stale order was kept");
    assert!(
        !run.stderr.contains('\u{1b}'),
        "colour codes in a pipe: {:?}",
        run.stderr
    );
}

#[test]
fn shared_records_all_go_to_the_signing_zone_apex() {
    let sb = sandbox().start();
    let names: &[&str] = &["shared1.example.test", "shared2.example.test"];
    let host = Host::new(&sb, &[]);
    host.configure("challenge_records: shared\n", &[("main", names)]);
    let document = host.request_ok();
    let placed = records(&document);
    assert_eq!(placed.len(), 2, "{document:#}");
    assert!(
        placed.iter().all(|(name, _)| name == "acme.test."),
        "{placed:?}"
    );
    host.place(&document);
    let report = host.finalize_ok();
    assert_issued(&host, &report, "main", names);

    // A per-name delegation does not fit `shared`: refused before ordering.
    host.configure(
        "challenge_records: shared\n",
        &[("other", &["host9.example.test"])],
    );
    let run = host.request();
    run.expect_code(1);
    let reason = cert(&run.json(), "other")["reason"]
        .as_str()
        .expect("reason")
        .to_owned();
    assert!(
        reason.contains("CNAME acme.test.`"),
        "the fix names the apex: {reason}"
    );
}

#[test]
fn profile_the_ca_does_not_offer_is_refused_before_ordering() {
    let sb = sandbox().start();
    let host = Host::new(&sb, &[]);
    host.write_config(
        &host
            .host_config()
            .acme_set("profile", "classic")
            .cert("main", &["host1.example.test"]),
    );
    let run = host.request();
    run.expect_code(1);
    let document = run.json();
    let reason = cert(&document, "main")["reason"].as_str().expect("reason");
    assert!(
        reason.contains("`classic`") && reason.contains("acme.profile"),
        "{reason}"
    );
    assert!(records(&document).is_empty());
    assert!(host.saved_order("main").is_none(), "ordered anyway");
}

#[test]
fn external_account_binding_is_required_then_registers_once() {
    const KID: &str = "kid-1";
    const HMAC: &str = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";
    let sb = sandbox().pebble_eab(KID, HMAC).start();
    let certs: &[(&str, &[&str])] = &[("main", &["host1.example.test"])];
    let host = Host::new(&sb, certs);

    // Without EAB the CA refuses to register: a config problem (exit 2, no report), and
    // nothing is saved.
    let run = host.request();
    run.expect_code(2);
    assert!(
        run.stdout.is_empty(),
        "a report with exit 2: {}",
        run.stdout
    );
    let reason = run.stderr.trim();
    assert!(
        reason.contains("requires external account binding")
            && reason.contains("acme.eab.hmac_key")
            && !reason.contains('\n'),
        "{reason}"
    );
    assert!(!host.state_dir().join("account.json").exists());

    host.write_config(
        &host
            .host_config()
            .acme_set("eab", serde_json::json!({"kid": KID, "hmac_key": HMAC}))
            .certs(certs),
    );
    let report = host.issue();
    assert_issued(&host, &report, "main", &["host1.example.test"]);
    assert_eq!(account_ids(&host).len(), 1);
    // The HMAC key is a secret as well.
    let status = host.run("status", &["-vv"]);
    assert!(!status.stdout.contains(HMAC) && !status.stderr.contains(HMAC));
}

#[test]
fn a_ca_that_is_down_fails_the_run_with_exit_4_and_no_report() {
    let sb = sandbox().start();
    let host = Host::new(&sb, &[("main", &["host1.example.test"])]);
    let issued = host.issue();
    assert_eq!(cert(&issued, "main")["status"], "issued");
    // A second certificate is due; the CA goes away before it can be ordered.
    host.configure(
        "",
        &[
            ("main", &["host1.example.test"]),
            ("www", &["www1.example.test"]),
        ],
    );
    let before = snapshot(host.dir.path());
    sb.stop_server("pebble");
    for command in ["request", "finalize"] {
        if command == "finalize" {
            // A pending order makes finalize need the CA too.
            std::fs::create_dir_all(host.state_dir().join("orders")).expect("mkdir");
            let order = serde_json::json!({
                "version": 1, "url": format!("{}/order/x", sb.acme_directory()),
                "directory": sb.acme_directory(), "account": "x",
                "names": ["www1.example.test"], "key": "ecdsa-p384", "profile": null,
                "reason": "test", "created": "2026-01-01T00:00:00Z"});
            std::fs::write(host.state_dir().join("orders/www.json"), order.to_string())
                .expect("write order");
        }
        let run = host.run(command, &[]);
        run.expect_code(4);
        assert!(
            run.stdout.is_empty(),
            "{command}: a report with exit 4: {}",
            run.stdout
        );
        let line = run.stderr.trim();
        assert!(
            line.lines().count() == 1 && line.contains(sb.acme_directory()),
            "{command}: {line}"
        );
    }
    std::fs::remove_file(host.state_dir().join("orders/www.json")).expect("remove order");
    assert_eq!(
        snapshot(host.dir.path()),
        before,
        "a failed run changed a file"
    );
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
    let mut config = host.host_config().cert(CERT, &name_refs);
    config.resolver = Some(lossy.addr.to_string());
    host.write_config(&config);
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
    HostConfig::offline(dir.path())
        .set("layout", "acme.sh")
        .cert("web", &["host1.example.test", "www1.example.test"])
        .cert("other", &["host1.example.test", "www2.example.test"])
        .write(&config);
    let run = fleetcert(["request", "--config", config.to_str().expect("utf-8")]);
    run.expect_code(2);
    let line = last_stderr_line(&run);
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
