//! A DNSSEC-signed signing zone (docs/dnssec.md), against the signed sandbox: BIND signs
//! `acme.test` with a `dnssec-policy`, the secondary transfers it signed, Unbound validates with
//! its key as trust anchor and Pebble resolves through Unbound, so a bogus chain fails at the
//! CA as it would at Let's Encrypt.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::config::ZoneConfig;
use crate::support::day::{ORDERS, pebble_count};
use crate::support::fixture::{Host, cert, sandbox};
use crate::support::sandbox::{Sandbox, Validation};
use crate::support::util::{Run, fleetcert};

const SIGNING_ZONE: &str = "acme.test";

/// The lines of `run`'s stderr that say the resolver does not validate.
fn not_validating_warnings(run: &Run) -> usize {
    run.stderr
        .lines()
        .filter(|line| line.contains("signed but not validated"))
        .count()
}

/// `dig +dnssec +norec` at an authoritative `server`: the RRSIG lines covering `rtype` at
/// `name`, and whether the answer was authoritative.
fn signatures_at(server: &str, name: &str, rtype: &str) -> Vec<String> {
    let (ip, port) = server.rsplit_once(':').expect("ip:port");
    let out = crate::support::sandbox::run(
        std::process::Command::new("dig")
            .args([
                "+dnssec", "+norec", "+noall", "+answer", "+time=2", "-p", port,
            ])
            .arg(format!("@{ip}"))
            .args([name, rtype]),
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.get(3) == Some(&"RRSIG") && fields.get(4) == Some(&rtype)
        })
        .map(str::to_owned)
        .collect()
}

/// The central side in a signed sandbox: a zone config for the file publisher (reload by
/// `rndc`) or, with `tsig`, for the update publisher.
struct Central<'s> {
    sb: &'s Sandbox,
    dir: PathBuf,
}

impl<'s> Central<'s> {
    fn new(sb: &'s Sandbox) -> Self {
        let dir = sb.dir().join("central");
        std::fs::create_dir_all(&dir).expect("create central/");
        Self { sb, dir }
    }

    /// The file publisher's config: the zone file BIND signs inline on reload.
    fn file_config(&self) -> PathBuf {
        let path = self.dir.join("zone.yaml");
        ZoneConfig::rndc(self.sb)
            .set("resolver", self.sb.resolver())
            .set("timeout", "60s")
            .write(&path);
        path
    }

    /// The update publisher's config, with the TSIG key `fleet` (`secret`, base64).
    fn update_config(&self, secret: &str) -> PathBuf {
        let secret_file = self.dir.join("tsig.secret");
        std::fs::write(&secret_file, secret).expect("write secret");
        crate::support::util::run_ok(
            std::process::Command::new("chmod")
                .arg("0600")
                .arg(&secret_file),
        );
        let path = self.dir.join("zone-update.yaml");
        ZoneConfig::update(self.sb, "fleet", &secret_file)
            .set("resolver", self.sb.resolver())
            .set("timeout", "60s")
            .set("state_dir", self.dir.join("state"))
            .write(&path);
        path
    }

    fn publish(&self, config: &Path, document: &Value) -> Run {
        fleetcert(self.publish_args(config, document))
    }

    fn publish_args(&self, config: &Path, document: &Value) -> Vec<std::ffi::OsString> {
        let tokens = self.dir.join("tokens.json");
        std::fs::write(&tokens, document.to_string()).expect("write tokens");
        vec![
            "publish".into(),
            "--config".into(),
            config.into(),
            "--tokens".into(),
            tokens.into(),
        ]
    }

    /// Both servers serve `serial` or later, and every record of `document` with an RRSIG.
    fn assert_served_signed(&self, report: &Value, document: &Value) {
        let serial = u32::try_from(report["serial"].as_u64().expect("serial")).expect("u32");
        for server in [self.sb.primary(), self.sb.secondary()] {
            let served = self.sb.serial(server);
            assert!(
                crate_serial_reached(served, serial),
                "{server} serves {served}, publish said {serial}: {report:#}"
            );
            assert!(
                !signatures_at(server, SIGNING_ZONE, "SOA").is_empty(),
                "{server} serves an unsigned SOA"
            );
            for (name, value) in crate::support::fixture::records(document) {
                let values = self
                    .sb
                    .dig_authoritative(server, &name, "TXT")
                    .unwrap_or_else(|err| panic!("{err}"));
                assert!(values.contains(&value), "{server} lacks {name} {value}");
                assert!(
                    !signatures_at(server, &name, "TXT").is_empty(),
                    "{server} serves {name} TXT without RRSIG"
                );
            }
        }
    }
}

/// RFC 1982: `served` is `wanted` or later.
fn crate_serial_reached(served: u32, wanted: u32) -> bool {
    served == wanted || (served.wrapping_sub(wanted) as i32) > 0
}

/// request, publish by `config`, finalize: the certificate is issued through the validating
/// resolver, and publish returned only when both servers served the signed records.
fn daily_flow(central: &Central<'_>, host: &Host<'_>, config: &Path) {
    let document = host.request_ok();
    assert!(
        !crate::support::fixture::records(&document).is_empty(),
        "nothing to publish: {document:#}"
    );
    let run = central.publish(config, &document);
    run.expect_code(0);
    let report = run.json();
    central.assert_served_signed(&report, &document);
    let finalized = host.finalize_ok();
    assert_eq!(
        cert(&finalized, "main")["status"],
        "issued",
        "{finalized:#}"
    );
    host.sb
        .verify_chain(&host.file("main", "fullchain.pem"))
        .expect("the chain verifies against Pebble's root");
}

#[test]
fn file_publish_into_an_inline_signed_zone_issues_and_waits_for_signed_records() {
    let sb = sandbox().dnssec(Validation::Validating).start();
    // The resolver validates the signing zone: the AD bit, as the CA sees it.
    let central = Central::new(&sb);
    let host = Host::new(
        &sb,
        &[("main", &["host1.example.test", "www1.example.test"])],
    );
    let config = central.file_config();
    daily_flow(&central, &host, &config);
    // The zone file is still the unsigned source: BIND keeps the signatures elsewhere.
    let source = std::fs::read_to_string(sb.signing_zone_file()).expect("zone file");
    assert!(
        !source.contains("RRSIG"),
        "the source file was signed:\n{source}"
    );
}

#[test]
fn update_publish_into_a_zone_bind_signs_itself_issues_and_waits_for_signed_records() {
    let secret = "c2lnbmVkLXpvbmUtdGVzdC1zZWNyZXQtMzItYnl0ZXM=";
    let sb = sandbox()
        .dnssec(Validation::Validating)
        .tsig(&format!("fleet={secret}"))
        .start();
    let central = Central::new(&sb);
    let host = Host::new(&sb, &[("main", &["host3.example.test"])]);
    let config = central.update_config(secret);
    daily_flow(&central, &host, &config);
}

#[test]
fn a_bogus_chain_is_refused_before_ordering_naming_the_zone_and_the_fix_issues() {
    let sb = sandbox().dnssec(Validation::Validating).start();
    let central = Central::new(&sb);
    let host = Host::new(&sb, &[("main", &["host5.example.test"])]);
    let config = central.file_config();
    // A key rollover the resolvers never heard of: their anchor names another key.
    sb.trust_anchor(false);
    let orders = pebble_count(&sb, ORDERS);
    let run = host.request();
    run.expect_code(1);
    let document = run.json();
    let entry = cert(&document, "main");
    assert_eq!(entry["status"], "failed", "{document:#}");
    let reason = entry["reason"].as_str().expect("reason");
    for part in [
        "acme.test. SOA is bogus",
        "acme.test. has no DS",
        "trust anchor",
        "DNSKEY key tag",
    ] {
        assert!(reason.contains(part), "{part:?} not in: {reason}");
    }
    assert!(
        crate::support::fixture::records(&document).is_empty(),
        "records despite the refusal: {document:#}"
    );
    assert_eq!(pebble_count(&sb, ORDERS), orders, "an order was made");

    // The fix: the resolvers trust the zone's key again; the next run issues.
    sb.trust_anchor(true);
    daily_flow(&central, &host, &config);
}

#[test]
fn a_resolver_that_does_not_validate_is_said_once_and_certificates_issue() {
    let sb = sandbox().dnssec(Validation::NotValidating).start();
    let central = Central::new(&sb);
    let host = Host::new(
        &sb,
        &[
            ("main", &["host7.example.test", "www7.example.test"]),
            ("second", &["host8.example.test"]),
        ],
    );
    let run = host.request();
    run.expect_code(0);
    assert_eq!(not_validating_warnings(&run), 1, "stderr:\n{}", run.stderr);
    let document = run.json();
    central
        .publish(&central.file_config(), &document)
        .expect_code(0);
    let finalized = host.finalize_ok();
    for name in ["main", "second"] {
        assert_eq!(cert(&finalized, name)["status"], "issued", "{finalized:#}");
    }
}

#[test]
fn publish_names_the_servers_whose_signatures_do_not_validate_with_exit_3() {
    let sb = sandbox().dnssec(Validation::Validating).start();
    let central = Central::new(&sb);
    let config = central.file_config();
    let document = serde_json::json!({
        "version": 1,
        "host": "host9.example.test",
        "records": [{"name": "host9.example.test.acme.test.", "value": "a".repeat(43),
                     "cert": "main", "identifier": "host9.example.test"}],
        "certs": [{"name": "main", "status": "pending", "not_after": null, "reason": "test"}],
    });
    // Today every server's signatures validate, and the report says the zone is signed.
    let run = central.publish(&config, &document);
    run.expect_code(0);
    assert_eq!(run.json()["signed"], true, "{}", run.stdout);

    // A month on, the signatures BIND made today have expired (a signer that stopped
    // re-signing looks the same): publish says so for each server, with exit 3.
    let out = crate::support::sandbox::run(
        std::process::Command::new("faketime")
            .args(["-f", "+30d", env!("CARGO_BIN_EXE_fleetcert")])
            .args(central.publish_args(&config, &document)),
    );
    let run = Run::of(&out);
    run.expect_code(3);
    let line = run
        .stderr
        .lines()
        .find(|line| line.starts_with("fleetcert: error:"))
        .unwrap_or_else(|| panic!("no error line:\n{}", run.stderr));
    for part in [
        format!(
            "{} and {} serve answers that do not validate",
            sb.primary(),
            sb.secondary()
        ),
        "acme.test. DNSKEY in zone acme.test.".to_owned(),
        "expired at".to_owned(),
    ] {
        assert!(line.contains(&part), "{part:?} not in: {line}");
    }
}
