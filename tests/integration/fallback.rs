//! A second CA (docs/renewal.md, "When a fallback CA issues"): the sandbox's second Pebble
//! (`SandboxBuilder::fallback_ca`), which requires external account binding and has its own
//! root, is the `fallback:` of the hosts here. Chains are checked with `openssl verify`
//! against the root of the CA that must have issued them, and orders are counted in each
//! Pebble's own log. The fake CA (`tests/fake-ca/`) stands in front of a Pebble where a test
//! needs a refusal for one certificate (`fault.json`) or ARI.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use serde_json::Value;
use time::Duration;

use crate::support::config::{Acme, HostConfig};
use crate::support::day::{ORDERS, log_count, pebble_count};
use crate::support::fake_ca::{FakeCa, hold, now};
use crate::support::fixture::{Host, cert, sandbox};
use crate::support::fleet::Fleet;
use crate::support::sandbox::Sandbox;
use crate::support::util::{fleetcert, verify_against};

/// The fallback Pebble's EAB key id and HMAC key (base64url, as a CA hands them out).
const KID: &str = "fleet-kid";
const HMAC: &str = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";

fn start() -> Sandbox {
    sandbox().fallback_ca(KID, HMAC).start()
}

/// Orders in the fallback Pebble's database, from its log (as `pebble_count` for the first).
fn fallback_orders(sb: &Sandbox) -> usize {
    log_count(&sb.dir().join("logs/fallback.log"), ORDERS)
}

/// The host's config with `primary` as `acme` and `fallback` as its one fallback CA (EAB
/// key from a 0600 file), `caa` (primary's, fallback's `caa_identity`) added when given.
fn config(
    host: &Host<'_>,
    primary: &str,
    fallback: &str,
    caa: Option<(&str, &str)>,
    certs: &[(&str, &[&str])],
) -> HostConfig {
    let key_file = host.dir.path().join("fallback.eab");
    std::fs::write(&key_file, format!("{HMAC}\n")).expect("write the HMAC key");
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let mut first = Acme::new(primary);
    first.ca_bundle = Some(host.sb.ca_bundle());
    let mut second = Acme::new(fallback).set(
        "eab",
        serde_json::json!({"kid": KID, "hmac_key_file": key_file}),
    );
    second.ca_bundle = Some(host.sb.ca_bundle());
    if let Some((first_caa, second_caa)) = caa {
        first = first.set("caa_identity", first_caa);
        second = second.set("caa_identity", second_caa);
    }
    let mut config = host.host_config().set("fallback", [second]).certs(certs);
    config.acme = Some(first);
    config
}

/// Writes [`config`] as the host's config.
fn configure(
    host: &Host<'_>,
    primary: &str,
    fallback: &str,
    caa: Option<(&str, &str)>,
    certs: &[(&str, &[&str])],
) {
    host.write_config(&config(host, primary, fallback, caa, certs));
}

/// `openssl verify` of `cert`'s full chain: against `good` it verifies, against `other` not.
#[track_caller]
fn issued_under(host: &Host<'_>, cert: &str, good: &Path, other: &Path) {
    let fullchain = host.file(cert, "fullchain.pem");
    verify_against(good, &fullchain).unwrap_or_else(|err| panic!("{cert}: {err}"));
    assert!(
        verify_against(other, &fullchain).is_err(),
        "{cert} also verifies against the other CA's root"
    );
}

/// Places the document's records and finalizes: `cert` must come from the primary (its
/// directory `directory`), its chain verifying against the primary Pebble's root only.
fn finalized_at_the_primary(
    host: &Host<'_>,
    document: &Value,
    name: &str,
    directory: &str,
) -> Value {
    host.place(document);
    let report = host.finalize_ok();
    assert_eq!(cert(&report, name)["ca"], directory, "{report:#}");
    issued_under(host, name, &host.sb.pebble_root(), &host.sb.fallback_root());
    report
}

fn text<'v>(value: &'v Value, key: &str) -> &'v str {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key} in {value:#}"))
}

/// A host of the primary and the fallback with two certificates, `certs` = [`fresh`,
/// `aging`]: `fresh` has none yet; `aging` holds a 90-day certificate with 15 days left, due
/// by the days rule (before_days 30) but not urgent (a fallback only under 10 days, a third
/// of 30).
fn fresh_and_aging<'s>(sb: &'s Sandbox, certs: &[(&str, &[&str]); 2]) -> Host<'s> {
    let host = Host::new(sb, certs);
    configure(
        &host,
        sb.acme_directory(),
        sb.fallback_directory(),
        None,
        certs,
    );
    let (cert, names) = certs[1];
    let at = now();
    hold(
        &host,
        cert,
        names,
        at - Duration::days(75),
        at + Duration::days(15),
    );
    host
}

#[test]
fn with_the_primary_stopped_a_missing_certificate_comes_from_the_fallback_and_one_that_can_wait_waits()
 {
    let sb = start();
    let host = fresh_and_aging(
        &sb,
        &[
            ("fresh", &["host31.example.test", "www31.example.test"]),
            ("aging", &["host32.example.test"]),
        ],
    );
    sb.stop_server("pebble");

    // A dry run says what the real run will do, and asks no CA for an order.
    let dry = host.run("request", &["--dry-run"]);
    dry.expect_code(1);
    let document = dry.json();
    let reason = text(cert(&document, "fresh"), "reason");
    let fallback = format!(
        "would order from the fallback CA {}",
        sb.fallback_directory()
    );
    assert!(
        reason.starts_with(&fallback) && reason.contains("cannot wait: no certificate yet"),
        "{reason}"
    );
    let aging = cert(&document, "aging");
    assert_eq!(aging["status"], "failed", "{document:#}");
    assert!(
        text(aging, "reason").contains("not urgent: it waits for the primary"),
        "{document:#}"
    );
    assert_eq!(fallback_orders(&sb), 0, "orders at the fallback");

    let document = host.request().expect_code(1).json();
    let fresh = cert(&document, "fresh");
    assert_eq!(fresh["status"], "pending", "{document:#}");
    let reason = text(fresh, "reason");
    assert!(
        reason.contains("from the fallback CA") && reason.contains("primary CA"),
        "{reason}"
    );
    let aging = cert(&document, "aging");
    assert_eq!(aging["status"], "failed", "{document:#}");
    let waits = text(aging, "reason");
    assert!(
        waits.contains("primary CA") && waits.contains("not urgent: it waits for the primary"),
        "{waits}"
    );
    // Only the urgent certificate was ordered at the fallback.
    assert_eq!(fallback_orders(&sb), 1, "orders at the fallback");
    let account = std::fs::read_to_string(host.state_dir().join("account.json")).expect("account");
    assert!(account.contains(sb.fallback_directory()), "{account}");

    host.place(&document);
    let report = host.finalize_ok();
    let fresh = cert(&report, "fresh");
    assert_eq!(fresh["status"], "issued", "{report:#}");
    assert_eq!(fresh["ca"], sb.fallback_directory(), "{report:#}");
    assert!(text(fresh, "fallback").contains("primary CA"), "{report:#}");
    issued_under(&host, "fresh", &sb.fallback_root(), &sb.pebble_root());
    let status = fleetcert(["status", "--config", host.config().to_str().expect("utf-8")]);
    let status = status.expect_code(0).json();
    assert_eq!(
        cert(&status, "fresh")["ca"],
        sb.fallback_directory(),
        "{status:#}"
    );
    let check = fleetcert(["check", "--config", host.config().to_str().expect("utf-8")]);
    let wanted = format!(
        "issued by a fallback CA: fresh by {}",
        sb.fallback_directory()
    );
    assert!(check.stdout.contains(&wanted), "{}", check.stdout);

    // The primary is back: the waiting certificate is renewed there, the fresh one waits.
    sb.start_server("pebble");
    let orders_before = fallback_orders(&sb);
    let document = host.request().expect_code(0).json();
    assert_eq!(cert(&document, "fresh")["status"], "valid", "{document:#}");
    assert_eq!(
        cert(&document, "aging")["status"],
        "pending",
        "{document:#}"
    );
    let report = finalized_at_the_primary(&host, &document, "aging", sb.acme_directory());
    assert!(
        cert(&report, "aging").get("fallback").is_none(),
        "{report:#}"
    );
    assert_eq!(
        fallback_orders(&sb),
        orders_before,
        "an order went to the fallback"
    );
}

#[test]
fn an_order_saved_at_a_primary_that_stops_goes_to_the_fallback_when_urgent_and_waits_otherwise() {
    let sb = start();
    let host = fresh_and_aging(
        &sb,
        &[
            ("fresh", &["host33.example.test"]),
            ("aging", &["host34.example.test"]),
        ],
    );
    // Both ordered at the primary, and the run ends there (publish or finalize never came).
    let document = host.request().expect_code(0).json();
    for name in ["fresh", "aging"] {
        assert_eq!(cert(&document, name)["status"], "pending", "{document:#}");
    }
    let saved = |name: &str| host.saved_order(name).expect("a saved order");
    let directory = |name: &str| saved(name)["directory"].clone();
    let aging_order = saved("aging");
    assert_eq!(directory("fresh"), sb.acme_directory());
    sb.stop_server("pebble");

    let document = host.request().expect_code(1).json();
    let fresh = cert(&document, "fresh");
    assert_eq!(fresh["status"], "pending", "{document:#}");
    let reason = text(fresh, "reason");
    assert!(
        reason.contains("the saved one is at a CA that cannot issue now")
            && reason.contains("from the fallback CA"),
        "{reason}"
    );
    assert_eq!(directory("fresh"), sb.fallback_directory());
    assert_eq!(fallback_orders(&sb), 1, "orders at the fallback");
    // The one that can wait keeps its order at the primary for the next run.
    let aging = cert(&document, "aging");
    assert_eq!(aging["status"], "failed", "{document:#}");
    assert_eq!(saved("aging"), aging_order);

    // finalize completes the fallback's order; the one at the stopped primary fails again
    // and stays saved.
    host.place(&document);
    let run = host.finalize();
    run.expect_code(1);
    let report = run.json();
    assert_eq!(cert(&report, "fresh")["status"], "issued", "{report:#}");
    issued_under(&host, "fresh", &sb.fallback_root(), &sb.pebble_root());
    assert_eq!(saved("aging"), aging_order);

    // The primary is back, but a restarted Pebble has forgotten its accounts and orders
    // (an in-memory database): the saved order is dropped for a new one there, not at the
    // fallback.
    sb.start_server("pebble");
    let document = host.request().expect_code(0).json();
    let aging = cert(&document, "aging");
    assert_eq!(aging["status"], "pending", "{document:#}");
    assert!(
        text(aging, "reason").contains("a new order, as the saved one"),
        "{document:#}"
    );
    assert_ne!(saved("aging"), aging_order);
    assert_eq!(directory("aging"), sb.acme_directory());
    assert_eq!(fallback_orders(&sb), 1, "orders at the fallback");
    finalized_at_the_primary(&host, &document, "aging", sb.acme_directory());
}

#[test]
fn one_certificate_the_primary_refuses_comes_from_the_fallback_and_the_others_from_the_primary() {
    let sb = start();
    let fake = FakeCa::start(&sb, "");
    for (status, n) in [(503, 41), (429, 43)] {
        let refused = format!("host{n}.example.test");
        let other = format!("host{}.example.test", n + 1);
        let certs: &[(&str, &[&str])] = &[("refused", &[&refused]), ("other", &[&other])];
        let host = Host::named(
            &sb,
            &fake.directory(),
            &format!("host{n}.example.test"),
            certs,
        );
        let textfiles = host.dir.path().join("textfiles");
        std::fs::create_dir(&textfiles).expect("mkdir");
        host.write_config(
            &config(
                &host,
                &fake.directory(),
                sb.fallback_directory(),
                None,
                certs,
            )
            .set("metrics", serde_json::json!({"textfile_dir": textfiles})),
        );
        fake.write(
            "fault.json",
            &serde_json::json!({"names": [refused], "status": status}),
        );
        let primary_before = pebble_count(&sb, ORDERS);
        let fallback_before = fallback_orders(&sb);

        let document = host.request().expect_code(0).json();
        let reason = text(cert(&document, "refused"), "reason");
        let said = if status == 503 {
            "serverInternal"
        } else {
            "rate limit"
        };
        assert!(
            reason.contains("from the fallback CA") && reason.contains(said),
            "{reason}"
        );
        assert!(
            !text(cert(&document, "other"), "reason").contains("fallback"),
            "{document:#}"
        );
        assert_eq!(
            fallback_orders(&sb),
            fallback_before + 1,
            "{status}: fallback orders"
        );
        assert_eq!(
            pebble_count(&sb, ORDERS),
            primary_before + 1,
            "{status}: primary orders"
        );
        if status == 429 {
            // The primary's refusal is kept as the primary's, where it always was.
            let limit = host.state_dir().join("limits/refused.json");
            assert!(limit.exists(), "no rate limit kept at {}", limit.display());
        }
        host.place(&document);
        let report = host.finalize_ok();
        assert_eq!(
            cert(&report, "refused")["ca"],
            sb.fallback_directory(),
            "{report:#}"
        );
        assert_eq!(cert(&report, "other")["ca"], fake.directory(), "{report:#}");
        issued_under(&host, "refused", &sb.fallback_root(), &sb.pebble_root());
        issued_under(&host, "other", &sb.pebble_root(), &sb.fallback_root());
        // The metrics label the issuing CA, and whether it was a fallback.
        let prom = std::fs::read_to_string(textfiles.join("fleetcert.prom")).expect("textfile");
        let info = |cert: &str| {
            prom.lines()
                .find(|line| {
                    line.starts_with("fleetcert_certificate_info{")
                        && line.contains(&format!("cert=\"{cert}\""))
                })
                .unwrap_or_else(|| panic!("no info series for {cert}:\n{prom}"))
                .to_owned()
        };
        let fallback_ca = format!("ca=\"{}\",fallback=\"true\"", sb.fallback_directory());
        assert!(
            info("refused").contains(&fallback_ca),
            "{}",
            info("refused")
        );
        let primary_ca = format!("ca=\"{}\",fallback=\"false\"", fake.directory());
        assert!(info("other").contains(&primary_ca), "{}", info("other"));
        fake.clear("fault.json");
    }
}

#[test]
fn after_a_fallback_the_next_renewal_goes_to_the_primary_without_replaces_and_ari_is_asked_of_the_issuer()
 {
    let sb = start();
    let primary = FakeCa::start(&sb, "");
    let second = FakeCa::start_for(&sb, sb.fallback_directory(), "");
    const CERTS: &[(&str, &[&str])] = &[("main", &["host51.example.test"])];
    let host = Host::new(&sb, CERTS);
    configure(
        &host,
        &primary.directory(),
        &second.directory(),
        None,
        CERTS,
    );
    primary.write(
        "fault.json",
        &serde_json::json!({"names": ["host51.example.test"], "status": 503}),
    );
    host.issue();
    issued_under(&host, "main", &sb.fallback_root(), &sb.pebble_root());
    primary.clear("fault.json");

    // The issuing CA says: renew now; the primary would say: not for years.
    let at = now();
    second.set_windows(&[("*", at - Duration::hours(2), at - Duration::hours(1))]);
    primary.set_windows(&[("*", at + Duration::days(300), at + Duration::days(301))]);
    let asked_before = primary.renewal_info_requests().len();
    let document = host.request_ok();
    let main = cert(&document, "main");
    assert_eq!(main["status"], "pending", "{document:#}");
    assert!(!text(main, "reason").contains("fallback"), "{document:#}");
    assert!(
        !second.renewal_info_requests().is_empty(),
        "ARI not asked of the issuing CA"
    );
    assert_eq!(
        primary.renewal_info_requests().len(),
        asked_before,
        "ARI asked of the primary, which did not issue the certificate"
    );
    let order = primary
        .new_orders()
        .last()
        .cloned()
        .expect("an order at the primary");
    assert_eq!(order["answer"], "created", "{order}");
    assert_eq!(
        order["replaces"],
        Value::Null,
        "`replaces` sent to another CA: {order}"
    );
    finalized_at_the_primary(&host, &document, "main", &primary.directory());

    // Now the primary issued it: its ARI is asked, and says wait.
    let document = host.request_ok();
    assert_eq!(cert(&document, "main")["status"], "valid", "{document:#}");
    assert!(
        primary.renewal_info_requests().len() > asked_before,
        "ARI not asked of the primary"
    );
}

#[test]
fn caa_that_allows_only_the_primary_skips_the_fallback_and_caa_that_allows_neither_orders_nothing()
{
    let sb = start();
    const CERTS: &[(&str, &[&str])] = &[
        ("primary-only", &["caa1.example.test"]),
        ("nobody", &["caa2.example.test"]),
        ("alias", &["caa3.example.test"]),
    ];
    let host = Host::new(&sb, CERTS);
    let ids = Some(("primary.test", "fallback.test"));
    configure(
        &host,
        sb.acme_directory(),
        sb.fallback_directory(),
        ids,
        CERTS,
    );
    let (primary_before, fallback_before) = (pebble_count(&sb, ORDERS), fallback_orders(&sb));

    // Primary up: `primary-only` is ordered there; `nobody` at neither CA; `alias` follows
    // its CNAME to a set that allows only the fallback, and having no certificate it may
    // not wait: it comes from the fallback.
    let document = host.request().expect_code(1).json();
    assert_eq!(
        cert(&document, "primary-only")["status"],
        "pending",
        "{document:#}"
    );
    let nobody = text(cert(&document, "nobody"), "reason");
    assert!(
        nobody.contains("CAA at caa2.example.test. (0 issue \"nobody.test\")")
            && nobody.contains("add `caa2.example.test. CAA 0 issue \"primary.test\"`")
            && nobody.contains("add `caa2.example.test. CAA 0 issue \"fallback.test\"`"),
        "{nobody}"
    );
    let alias = cert(&document, "alias");
    assert_eq!(alias["status"], "pending", "{document:#}");
    assert!(
        text(alias, "reason").contains("from the fallback CA"),
        "{document:#}"
    );
    assert_eq!(
        pebble_count(&sb, ORDERS),
        primary_before + 1,
        "orders at the primary"
    );
    assert_eq!(
        fallback_orders(&sb),
        fallback_before + 1,
        "orders at the fallback"
    );

    // Primary stopped: `primary-only` would need the fallback, which CAA forbids.
    std::fs::remove_dir_all(host.state_dir().join("orders")).expect("forget the orders");
    sb.stop_server("pebble");
    let fallback_before = fallback_orders(&sb);
    let document = host.request().expect_code(1).json();
    let only = cert(&document, "primary-only");
    assert_eq!(only["status"], "failed", "{document:#}");
    let reason = text(only, "reason");
    assert!(
        reason.contains("fallback CA")
            && reason.contains("CAA at caa1.example.test. (0 issue \"primary.test\")")
            && reason.contains("add `caa1.example.test. CAA 0 issue \"fallback.test\"`"),
        "{reason}"
    );
    assert_eq!(
        fallback_orders(&sb),
        fallback_before + 1,
        "only `alias` ordered again"
    );
}

#[test]
fn the_daily_playbook_with_the_primary_stopped_issues_every_host_from_the_fallback() {
    let fleet = Fleet::on(
        start(),
        &["--hosts", "2", "--binary", env!("CARGO_BIN_EXE_fleetcert")],
    );
    let sb = &fleet.sb;
    let key = fleet.dir.path().join("fallback.eab");
    std::fs::write(&key, format!("{HMAC}\n")).expect("write the HMAC key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let extra = fleet.dir.path().join("extra-vars.yaml");
    let mut vars = std::fs::read_to_string(&extra).expect("extra vars");
    vars.push_str(&format!(
        "fleetcert_fallback:\n  - directory: {}\n    email: ops@example.test\n    \
         agree_tos: true\n    ca_bundle: {}\n    eab: {{kid: {KID}, hmac_key_file: {}}}\n\
         fleetcert_renew_fallback_within_days: 7\n",
        sb.fallback_directory(),
        sb.ca_bundle().display(),
        key.display()
    ));
    std::fs::write(&extra, vars).expect("extra vars");
    sb.stop_server("pebble");

    let run = fleet.playbook(&[]);
    run.expect_failed(&[]);
    let issued = [
        ("host1.example.test", "main"),
        ("host2.example.test", "main"),
        ("host2.example.test", "www"),
        ("legacy.example.test", "main"),
    ];
    for (host, cert) in issued {
        let fullchain = fleet.fullchain(host, cert);
        verify_against(&sb.fallback_root(), &fullchain)
            .unwrap_or_else(|err| panic!("{host} {cert}: {err}"));
    }
    let line = format!("fallback CA {}: issued 4 (", sb.fallback_directory());
    assert!(run.output.contains(&line), "{line} not in:\n{}", run.output);
    let config =
        std::fs::read_to_string(fleet.home("host1.example.test").join("etc/fleetcert.yaml"))
            .expect("host1's config");
    assert!(config.contains("fallback_within_days: 7"), "{config}");
}
