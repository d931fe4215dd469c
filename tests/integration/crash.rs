//! Every crash point (src/crash.rs) on the real sandbox: the binary is built with the
//! `crash-points` feature (tests/run.sh) and killed with SIGKILL at the point, then the test
//! checks what is left and runs the next ordinary day.
//!
//! After every kill: what a service reads for the certificate is one complete set — the old
//! one or the new one, as the point promises — whose key matches its certificate and whose
//! chain `openssl verify` accepts against Pebble's root; no temporary file sits where a service
//! looks; every private key on disk is fleetcert's own with its mode, and `nobody` cannot read
//! one (while a member of the key group can). Then request → publish → finalize, run as the
//! playbook runs them, must succeed without help and leave exactly one version, no temporary
//! file, and no state.
//!
//! The host-side points share one sandbox (each test is its own host, with names of its own,
//! publishing through the real `fleetcert publish`, whose lock and ledger keep them apart); a
//! crash in `publish` leaves its zone half-way, so each of those has a sandbox of its own.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::config::ZoneConfig;
use crate::support::day::{
    ACCOUNTS, CERT, Day, Expect, Names, ORDERS, SERVICE_FILES, ServiceSet, Zone,
    assert_keys_private, assert_no_temporary_where_services_look, assert_safe_after_kill,
    host_killed_at, killed_at, next_host_number, pebble_count, read_as, run_killed_at, served_txt,
    shared_sandbox, temporaries, token_document, versions, write_secret,
};
use crate::support::fixture::{Host, sandbox};
use crate::support::sandbox::Sandbox;
use crate::support::util::key_group_gid;
use crate::support::util::openssl_extract;
use crate::support::util::{assert_key_matches, fleetcert, run_ok, tree};

mod local;
mod renew;
mod renewal;

// --- finalize and install -----------------------------------------------------------------

/// Renews a certificate with finalize dying at `point`; a service must then read `expect`,
/// and the next day must complete the renewal.
fn finalize_killed_at(point: &str, expect: Expect) {
    let sb = shared_sandbox();
    let zone = Zone::new(&sb, "");
    let day = Day::new(&sb, &zone, next_host_number());
    let old = day.issued_and_due();
    day.request_and_publish();
    host_killed_at(&day.host, "finalize", point);
    let at_kill = assert_safe_after_kill(&day.host, expect, &old);
    let after = day.recovers(&old);
    if expect == Expect::New {
        // The CA issued once: the next day installs that same certificate again.
        assert_eq!(after, at_kill, "the next day installed another certificate");
    }
}

/// One test per point of finalize's install.
macro_rules! finalize_points {
    ($($test:ident: $point:literal => $expect:ident,)*) => {
        $(
            #[test]
            #[cfg_attr(
                not(feature = "crash-points"),
                ignore = "needs the binary built with --features crash-points (tests/run.sh)"
            )]
            fn $test() {
                finalize_killed_at($point, Expect::$expect);
            }
        )*
    };
}

finalize_points! {
    finalize_killed_after_saving_the_key_leaves_the_old_set: "finalize.key_saved" => Old,
    finalize_killed_mid_write_of_the_saved_key_leaves_the_old_set: "store.staged.main.pem" => Old,
    finalize_killed_after_the_ca_finalized_leaves_the_old_set: "finalize.csr_sent" => Old,
    finalize_killed_before_the_keystore_is_built_leaves_the_old_set: "finalize.before_keystore" => Old,
    finalize_killed_mid_write_of_the_new_key_leaves_the_old_set: "store.staged.privkey.pem" => Old,
    finalize_killed_after_the_key_file_leaves_the_old_set: "install.after_file.privkey.pem" => Old,
    finalize_killed_after_the_cert_file_leaves_the_old_set: "install.after_file.cert.pem" => Old,
    finalize_killed_after_the_chain_file_leaves_the_old_set: "install.after_file.chain.pem" => Old,
    finalize_killed_after_the_fullchain_file_leaves_the_old_set: "install.after_file.fullchain.pem" => Old,
    finalize_killed_before_the_switch_leaves_the_old_set: "install.before_switch" => Old,
    finalize_killed_after_the_switch_leaves_the_new_set: "install.after_switch" => New,
    finalize_killed_before_the_state_is_cleared_leaves_the_new_set: "finalize.installed" => New,
}

/// A certificate with a PKCS#12 keystore: finalize dies after the keystore is written into
/// the new version, the last file before the switch. A service reads the old PEM files and
/// the old keystore, byte for byte; the next day switches all five together, and the
/// keystore holds the new key and certificate.
#[test]
#[cfg_attr(
    not(feature = "crash-points"),
    ignore = "needs the binary built with --features crash-points (tests/run.sh)"
)]
fn finalize_killed_after_the_keystore_file_leaves_the_old_pems_and_keystore() {
    let sb = shared_sandbox();
    let zone = Zone::new(&sb, "");
    let n = next_host_number();
    let password = zone.dir().join("keystore.pass");
    write_secret(&password, "crash-test-pass");
    let options = serde_json::json!({"pkcs12": {"password_file": password, "alias": "service"}});
    let day = Day::with(
        &sb,
        &zone,
        Names::new(n, Value::Null, options),
        sb.acme_directory(),
    );
    let old = day.issued_and_due();
    let keystore = day.host.file(CERT, KEYSTORE);
    let old_keystore = std::fs::read(&keystore).expect("read the keystore");
    assert_keystore_holds(&day.host, &password);
    day.request_and_publish();
    host_killed_at(
        &day.host,
        "finalize",
        &format!("install.after_file.{KEYSTORE}"),
    );
    assert_safe_after_kill(&day.host, Expect::Old, &old);
    assert_eq!(
        std::fs::read(&keystore).expect("read the keystore"),
        old_keystore,
        "a service reads another keystore than the old one"
    );
    assert_keystore_holds(&day.host, &password);
    day.recovers(&old);
    assert_ne!(
        std::fs::read(&keystore).expect("read the keystore"),
        old_keystore
    );
    assert_keystore_holds(&day.host, &password);
}

/// The keystore's file name in the default layout.
const KEYSTORE: &str = "keystore.p12";

/// The keystore a service reads opens with the password and holds the key and certificate
/// the PEM files hold; it is root's, 0640 with the key group, and `nobody` cannot read it.
#[track_caller]
fn assert_keystore_holds(host: &Host<'_>, password: &Path) {
    let keystore = host.file(CERT, KEYSTORE);
    let meta = std::fs::metadata(&keystore).expect("stat the keystore");
    assert_eq!(meta.uid(), 0, "the keystore is not root's");
    assert_eq!(meta.mode() & 0o7777, 0o640, "mode of the keystore");
    assert_eq!(meta.gid(), key_group_gid(), "group of the keystore");
    assert!(
        !read_as(&keystore, "65534").status.success(),
        "nobody can read the keystore"
    );
    let out = tempfile::tempdir().expect("tempdir");
    let (key, leaf) = (out.path().join("key.pem"), out.path().join("leaf.pem"));
    openssl_extract(&keystore, password, "-nocerts", &key);
    openssl_extract(&keystore, password, "-clcerts", &leaf);
    assert_key_matches(&key, &host.file(CERT, "cert.pem"));
    let pem = |path: &Path| {
        let text = std::fs::read_to_string(path).expect("read PEM");
        crate::support::sandbox::pem_certificates(&text)
    };
    assert_eq!(
        pem(&leaf),
        pem(&host.file(CERT, "cert.pem")),
        "the keystore holds another certificate than cert.pem"
    );
}

/// finalize dies while forgetting the order, between the order file and the saved key: the
/// new set is in place, and the key left without its order is removed by the next finalize.
#[test]
#[cfg_attr(
    not(feature = "crash-points"),
    ignore = "needs the binary built with --features crash-points (tests/run.sh)"
)]
fn finalize_killed_while_forgetting_the_order_leaves_the_new_set_and_the_key_goes_next() {
    let sb = shared_sandbox();
    let zone = Zone::new(&sb, "");
    let day = Day::new(&sb, &zone, next_host_number());
    let old = day.issued_and_due();
    day.request_and_publish();
    host_killed_at(&day.host, "finalize", "finalize.order_forgotten");
    assert_safe_after_kill(&day.host, Expect::New, &old);
    assert!(
        day.host.saved_order(CERT).is_none(),
        "the order is still saved"
    );
    let key = day
        .host
        .state_dir()
        .join("keys")
        .join(format!("{CERT}.pem"));
    assert!(key.exists(), "the saved key is gone already");
    let report = day.run();
    assert_eq!(report["certs"][0]["status"], "unchanged", "{report:#}");
    assert!(!key.exists(), "the key without its order is still there");
    day.assert_settled();
}

/// The very first install dies before its switch: a service finds no certificate at all (the
/// links lead nowhere), as before the run — never a part of one — and fleetcert itself reads
/// "no certificate yet", not a broken one; the next day installs.
#[test]
#[cfg_attr(
    not(feature = "crash-points"),
    ignore = "needs the binary built with --features crash-points (tests/run.sh)"
)]
fn first_install_killed_before_the_switch_leaves_no_certificate() {
    let sb = shared_sandbox();
    let zone = Zone::new(&sb, "");
    let day = Day::new(&sb, &zone, next_host_number());
    day.request_and_publish();
    host_killed_at(&day.host, "finalize", "install.before_switch");
    for file in SERVICE_FILES {
        let path = day.host.file(CERT, file);
        let err =
            std::fs::read(&path).expect_err("a service reads a file of an unfinished install");
        assert_eq!(
            err.kind(),
            std::io::ErrorKind::NotFound,
            "{}",
            path.display()
        );
    }
    assert_no_temporary_where_services_look(&day.host, CERT);
    assert_keys_private(&day.host);
    let status = day.host.run("status", &[]).expect_code(0).json();
    let line = &status["certs"][0];
    assert!(line["problem"].is_null(), "status: {status:#}");
    let report = day.run();
    assert_eq!(report["certs"][0]["status"], "issued", "{report:#}");
    ServiceSet::read(&day.host, CERT).assert_consistent(&day.host, CERT);
    day.assert_settled();
}

/// Plain files, as a fleetcert older than the versioned install wrote them: the one-time
/// conversion, killed after the key and then again after the certificate, still shows the
/// old set, and the next day finishes it.
#[test]
#[cfg_attr(
    not(feature = "crash-points"),
    ignore = "needs the binary built with --features crash-points (tests/run.sh)"
)]
fn conversion_of_plain_files_killed_twice_leaves_the_old_set() {
    let sb = shared_sandbox();
    let zone = Zone::new(&sb, "");
    let day = Day::new(&sb, &zone, next_host_number());
    let old = day.issued_and_due();
    // Turn the certificate's directory into what an older fleetcert left: plain files.
    let dir = day.host.cert_dir().join(CERT);
    for file in SERVICE_FILES {
        let path = dir.join(file);
        let bytes = std::fs::read(&path).expect("read");
        let meta = std::fs::metadata(&path).expect("stat");
        std::fs::remove_file(&path).expect("remove link");
        std::fs::write(&path, bytes).expect("write plain");
        std::fs::set_permissions(&path, meta.permissions()).expect("chmod");
        std::os::unix::fs::lchown(&path, Some(meta.uid()), Some(meta.gid())).expect("chown");
    }
    for version in versions(&day.host, CERT) {
        std::fs::remove_dir_all(dir.join(version)).expect("remove version");
    }
    std::fs::remove_file(dir.join("..data")).expect("remove ..data");
    assert_eq!(ServiceSet::read(&day.host, CERT), old);
    day.request_and_publish();
    host_killed_at(&day.host, "finalize", "install.converting.privkey.pem");
    assert_safe_after_kill(&day.host, Expect::Old, &old);
    host_killed_at(&day.host, "finalize", "install.converting.cert.pem");
    assert_safe_after_kill(&day.host, Expect::Old, &old);
    day.recovers(&old);
}

// --- request -----------------------------------------------------------------------------------

/// request dies after the CA made the order and before it is saved: the CA keeps an order
/// nobody will finalize (it expires there unused; Let's Encrypt counts it against the
/// new-orders rate limit), the host knows nothing of it, and the next day orders again.
#[test]
#[cfg_attr(
    not(feature = "crash-points"),
    ignore = "needs the binary built with --features crash-points (tests/run.sh)"
)]
fn request_killed_after_the_order_is_created_orphans_it_and_the_next_day_orders_again() {
    // A sandbox of its own, so that Pebble's count of orders is this test's.
    let sb = sandbox().start();
    let zone = Zone::new(&sb, "");
    let day = Day::new(&sb, &zone, next_host_number());
    let old = day.issued_and_due();
    let orders = pebble_count(&sb, ORDERS);
    host_killed_at(&day.host, "request", "request.order_created");
    assert!(day.host.saved_order(CERT).is_none(), "an order was saved");
    assert_eq!(
        pebble_count(&sb, ORDERS),
        orders + 1,
        "the CA holds the orphan"
    );
    assert_safe_after_kill(&day.host, Expect::Old, &old);
    let document = day.host.request_ok();
    assert_eq!(document["certs"][0]["status"], "pending", "{document:#}");
    assert_eq!(
        pebble_count(&sb, ORDERS),
        orders + 2,
        "the next day orders again"
    );
    zone.publish(&day.host, &document).expect_code(0);
    day.host.finalize_ok();
    let now = ServiceSet::read(&day.host, CERT);
    now.assert_consistent(&day.host, CERT);
    now.assert_is(Expect::New, &old);
    day.assert_settled();
}

/// request dies after saving the order, before printing the document: the next request
/// re-opens that order (the CA makes no other) and prints its records.
#[test]
#[cfg_attr(
    not(feature = "crash-points"),
    ignore = "needs the binary built with --features crash-points (tests/run.sh)"
)]
fn request_killed_after_saving_the_order_reuses_it_the_next_day() {
    let sb = sandbox().start();
    let zone = Zone::new(&sb, "");
    let day = Day::new(&sb, &zone, next_host_number());
    let old = day.issued_and_due();
    host_killed_at(&day.host, "request", "request.order_saved");
    let saved = day.host.saved_order(CERT).expect("the order is saved");
    let orders = pebble_count(&sb, ORDERS);
    assert_safe_after_kill(&day.host, Expect::Old, &old);
    let document = day.host.request_ok();
    assert_eq!(
        day.host.saved_order(CERT).expect("still saved")["url"],
        saved["url"],
        "the next day made another order"
    );
    assert_eq!(
        pebble_count(&sb, ORDERS),
        orders,
        "the CA made another order"
    );
    assert!(
        document["records"]
            .as_array()
            .is_some_and(|records| !records.is_empty()),
        "{document:#}"
    );
    zone.publish(&day.host, &document).expect_code(0);
    day.host.finalize_ok();
    ServiceSet::read(&day.host, CERT).assert_is(Expect::New, &old);
    day.assert_settled();
}

/// request dies after the CA registered the account, before it is saved: the CA keeps an
/// account nobody uses, and the next request registers another and completes.
#[test]
#[cfg_attr(
    not(feature = "crash-points"),
    ignore = "needs the binary built with --features crash-points (tests/run.sh)"
)]
fn request_killed_after_registering_the_account_registers_again_the_next_day() {
    let sb = sandbox().start();
    let zone = Zone::new(&sb, "");
    let day = Day::new(&sb, &zone, next_host_number());
    host_killed_at(&day.host, "request", "account.registered");
    assert!(
        !day.host.state_dir().join("account.json").exists(),
        "the account was saved"
    );
    assert_eq!(pebble_count(&sb, ACCOUNTS), 1, "the CA holds the orphan");
    assert!(temporaries(&day.host.state_dir()).is_empty());
    let report = day.run();
    assert_eq!(
        pebble_count(&sb, ACCOUNTS),
        2,
        "the next day registers again"
    );
    assert_eq!(report["certs"][0]["status"], "issued", "{report:#}");
    ServiceSet::read(&day.host, CERT).assert_consistent(&day.host, CERT);
    day.assert_settled();
}

// --- publish -------------------------------------------------------------------------------------

/// A host with a certificate due and its token_document, whose publish dies at `point` on a sandbox
/// of its own. The zone file must be complete and the old one or the new one, the host's set
/// untouched, and the next publish and finalize must complete.
fn publish_killed_at(point: &str, zone_changed: bool) {
    let sb = sandbox().start();
    let zone = Zone::new(&sb, "");
    let day = Day::new(&sb, &zone, next_host_number());
    let old = day.issued_and_due();
    let document = day.host.request_ok();
    let zone_file = sb.signing_zone_file();
    let before = std::fs::read_to_string(&zone_file).expect("zone file");
    let served_before = sb.serial(sb.primary());
    run_killed_at(&day.host, point, &zone.args(day.host.name(), &document));
    let after = std::fs::read_to_string(&zone_file).expect("zone file after the kill");
    run_ok(
        Command::new("named-checkzone")
            .args(["acme.test"])
            .arg(&zone_file),
    );
    let values: Vec<&str> = document["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|record| record["value"].as_str().expect("value"))
        .collect();
    if zone_changed {
        assert!(
            values.iter().all(|value| after.contains(value)),
            "the zone file is not the new one:\n{after}"
        );
    } else {
        assert_eq!(after, before, "the zone file changed");
        assert_eq!(
            sb.serial(sb.primary()),
            served_before,
            "the primary serves another zone"
        );
    }
    // The host's certificate is not touched by a publish.
    assert_safe_after_kill(&day.host, Expect::Old, &old);
    // The next ordinary publish of the same document completes, and so does finalize.
    let report = zone.publish(&day.host, &document).expect_code(0).json();
    for server in report["servers"].as_array().expect("servers") {
        assert!(server["seconds"].is_number(), "{report:#}");
    }
    let primary_dir = zone_file.parent().expect("zone directory");
    assert_eq!(temporaries(primary_dir), Vec::<PathBuf>::new());
    day.host.finalize_ok();
    ServiceSet::read(&day.host, CERT).assert_is(Expect::New, &old);
    day.assert_settled();
}

/// One test per point of publish.
macro_rules! publish_points {
    ($($test:ident: $point:literal => $changed:literal,)*) => {
        $(
            #[test]
            #[cfg_attr(
                not(feature = "crash-points"),
                ignore = "needs the binary built with --features crash-points (tests/run.sh)"
            )]
            fn $test() {
                publish_killed_at($point, $changed);
            }
        )*
    };
}

publish_points! {
    publish_killed_after_saving_the_ledger_leaves_the_zone: "publish.ledger_saved" => false,
    publish_killed_after_staging_leaves_the_zone: "publish.staged" => false,
    publish_killed_after_the_rename_leaves_a_complete_new_zone: "publish.after_rename" => true,
    publish_killed_after_the_reload_leaves_the_new_zone: "publish.after_reload" => true,
    publish_killed_during_the_wait_leaves_the_new_zone: "publish.waiting" => true,
}

// --- publish by dynamic update -----------------------------------------------------------

/// The TXT values of `acme.test` that `server` serves.
fn served_values(sb: &Sandbox, server: &str) -> BTreeSet<String> {
    served_txt(sb, server)
        .into_iter()
        .map(|(_, value)| value)
        .collect()
}

/// The dynamic-update publisher dies between two UPDATE messages, once while adding 1,500
/// values (about three messages) and once while taking them out again: the primary holds a
/// part, and the next ordinary publish finishes the job — every value served after the
/// first, none of fleetcert's left after the second.
#[test]
#[cfg_attr(
    not(feature = "crash-points"),
    ignore = "needs the binary built with --features crash-points (tests/run.sh)"
)]
fn update_killed_between_messages_is_finished_by_the_next_publish() {
    let secret = crate::support::util::secret();
    let sb = sandbox().tsig(&format!("fleet={secret}")).start();
    let dir = tempfile::tempdir().expect("tempdir");
    let secret_file = dir.path().join("fleet.secret");
    write_secret(&secret_file, &secret);
    let config = dir.path().join("zone.yaml");
    ZoneConfig::update(&sb, "fleet", &secret_file)
        .set("state_dir", dir.path().join("state"))
        .write(&config);
    let names: Vec<String> = (0..1500).map(|i| format!("h{i}.bench.test")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let full = token_document("bench.test", &names);
    let empty = token_document("bench.test", &[]);
    let wanted: BTreeSet<String> = full["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|record| record["value"].as_str().expect("value").to_owned())
        .collect();
    let tokens = dir.path().join("bench.json");
    let args = [
        "publish".to_owned(),
        "--config".to_owned(),
        config.display().to_string(),
        "--tokens".to_owned(),
        format!("bench.test={}", tokens.display()),
    ];
    for (document, name) in [(&full, "adding"), (&empty, "removing")] {
        std::fs::write(&tokens, document.to_string()).expect("write tokens");
        let before = served_values(&sb, sb.primary());
        killed_at("update.between_messages", &args);
        let part = served_values(&sb, sb.primary());
        assert!(
            part != before,
            "{name}: the first message did not change the zone"
        );
        let done = if name == "adding" {
            wanted.clone()
        } else {
            BTreeSet::new()
        };
        assert!(
            part != done,
            "{name}: the zone was complete before the kill"
        );
        fleetcert(&args).expect_code(0);
        for server in [sb.primary(), sb.secondary()] {
            assert_eq!(served_values(&sb, server), done, "{name}: {server}");
        }
    }
}

// --- every point is tested -------------------------------------------------------------

/// Every `crash_point!` in src/ has a test that kills the binary there, and a row in
/// docs/dev/crash-safety.md. A point counts as tested when a test file that sets
/// `FLEETCERT_CRASH_AT` (this one and its modules, the keystore's) names it in a string
/// literal — a point with a detail by one of its instances (`"install.after_file.cert.pem"`).
/// That the test reaches it is [`killed_at`]'s check: a run that is not killed fails.
#[test]
fn every_crash_point_has_a_test_and_is_documented() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sources = |dir: &str| -> Vec<(PathBuf, String)> {
        tree(&root.join(dir))
            .into_iter()
            .filter(|(path, meta)| meta.is_file() && path.extension() == Some(OsStr::new("rs")))
            .map(|(path, _)| {
                let text = std::fs::read_to_string(&path).expect("read source");
                (path, text)
            })
            .collect()
    };
    let mut points = BTreeSet::new();
    for (path, text) in sources("src") {
        if path.ends_with("src/crash.rs") {
            // Its doc comments show the macro.
            continue;
        }
        for call in text.split("crash_point!(\"").skip(1) {
            points.insert(call.split('"').next().expect("a name").to_owned());
        }
    }
    let killing: Vec<String> = sources("tests/integration")
        .into_iter()
        .filter(|(path, text)| {
            text.contains("FLEETCERT_CRASH_AT")
                || path.starts_with(root.join("tests/integration/crash"))
        })
        .map(|(_, text)| text)
        .collect();
    let docs = std::fs::read_to_string(root.join("docs/dev/crash-safety.md")).expect("docs");
    for point in &points {
        assert!(
            killing
                .iter()
                .any(|text| text.contains(&format!("\"{point}\""))
                    || text.contains(&format!("\"{point}."))),
            "crash point {point} has no test in tests/integration"
        );
        assert!(
            docs.contains(&format!("| `{point}")),
            "crash point {point} has no row in docs/dev/crash-safety.md"
        );
    }
    assert!(
        points.len() >= 20,
        "only {} points found: {points:?}",
        points.len()
    );
}
