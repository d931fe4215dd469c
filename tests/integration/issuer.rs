//! Test issuers (issue 17): `issuer: self-signed` and `issuer: {local-ca: ...}` run by the
//! real binary with no CA and no DNS server, as a gate job runs them; the certificates they
//! install are checked with openssl, curl and nginx against the CI CA. The daily playbook
//! over a gate's fleet: a local CA, no DNS primary, no sandbox. Then a host moved between a
//! local CA and the sandbox's Pebble, both ways.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::fake_ca::{FakeCa, ari_id, hold_signed_by, now, parse_time};
use crate::support::fixture::{Host, cert, certs_yaml, sandbox};
use crate::support::fleet::daily_playbook;
use crate::support::gate::{CiCa, Gate, local_ca, set_mode};
use crate::support::services::{Leaf, Nginx, curl_leaf};
use crate::support::util::{gid, key_group_gid, key_kind, mode, sorted};
use crate::support::util::{sans, snapshot, verify_against};

/// `openssl x509 -checkend SECONDS`: whether the certificate is still valid then.
fn valid_in(cert: &Path, seconds: u64) -> bool {
    Command::new("openssl")
        .args(["x509", "-noout", "-checkend", &seconds.to_string(), "-in"])
        .arg(cert)
        .output()
        .expect("openssl")
        .status
        .success()
}

fn subject(cert: &Path) -> String {
    crate::support::util::openssl(&[
        OsStr::new("x509"),
        OsStr::new("-noout"),
        OsStr::new("-subject"),
        OsStr::new("-in"),
        cert.as_os_str(),
    ])
}

fn reason<'v>(document: &'v Value, name: &str) -> &'v str {
    cert(document, name)["reason"].as_str().expect("reason")
}

// --- tests -------------------------------------------------------------------------------

#[test]
fn self_signed_certificate_verifies_against_itself_with_the_configured_names_and_key_type() {
    let gate = Gate::new();
    let names: &[&str] = &[
        "gate1.example.test",
        "*.gate1.example.test",
        "www.gate1.example.test",
    ];
    // `acme` and `signing_zone` may stay in a gate's config; nothing reaches them: the CA
    // and the resolver are closed ports, so any contact would fail the run.
    let unreachable = "acme: {directory: 'https://127.0.0.1:9/dir', email: ops@example.test, \
                       agree_tos: true}\nsigning_zone: acme.test\nresolver: 127.0.0.1:9\n\
                       key: rsa-3072\n";
    gate.configure("self-signed", unreachable, &[("main", names)]);

    let dry = gate.run("request", &["--dry-run"]).expect_code(0).json();
    assert_eq!(cert(&dry, "main")["status"], "ready");
    assert!(reason(&dry, "main").starts_with("would order"), "{dry:#}");
    assert!(!gate.state_dir().exists(), "a dry run wrote state");

    let document = gate.request_ok();
    assert_eq!(document["changed"], true);
    assert_eq!(document["records"], Value::Array(Vec::new()));
    assert_eq!(cert(&document, "main")["status"], "ready");
    let why = reason(&document, "main");
    assert!(
        why.contains("no certificate yet") && why.contains("self-signed"),
        "{document:#}"
    );
    assert_eq!(gate.local_orders()["main"]["issuer"], "self-signed");
    assert_eq!(mode(&gate.state_dir().join("local-orders.json")), 0o600);
    let status = gate.run("status", &[]).expect_code(0).json();
    assert_eq!(cert(&status, "main")["pending"], true, "{status:#}");

    let report = gate.finalize_ok();
    assert_eq!(report["changed"], true);
    assert_eq!(cert(&report, "main")["status"], "issued");
    let leaf = gate.file("main", "cert.pem");
    let key = gate.file("main", "privkey.pem");
    verify_against(&leaf, &gate.file("main", "fullchain.pem"))
        .unwrap_or_else(|err| panic!("does not verify against itself: {err}"));
    assert_eq!(sans(&leaf), sorted(names));
    assert_eq!(
        key_kind(&leaf, &key),
        "rsaEncryption Public-Key: (3072 bit)"
    );
    assert!(
        subject(&leaf).contains("O = fleetcert test issuer, OU = self-signed"),
        "{}",
        subject(&leaf)
    );
    // The default lifetime: 30 days.
    assert!(valid_in(&leaf, 29 * 86_400) && !valid_in(&leaf, 31 * 86_400));
    assert_eq!(
        std::fs::read(gate.file("main", "chain.pem")).expect("chain"),
        b""
    );
    assert_eq!(
        std::fs::read(gate.file("main", "fullchain.pem")).expect("full"),
        std::fs::read(&leaf).expect("leaf")
    );
    assert_eq!(mode(&key), 0o640);
    assert_eq!(gid(&key), key_group_gid());
    assert_eq!(mode(&gate.cert_dir().join("main")), 0o750);
    assert_eq!(gate.local_orders(), serde_json::json!({}), "order kept");

    // The next day's run: nothing due, nothing changed, not a byte.
    let before = snapshot(gate.dir.path());
    let document = gate.request_ok();
    assert_eq!(document["changed"], false);
    assert_eq!(cert(&document, "main")["status"], "valid");
    let report = gate.finalize_ok();
    assert_eq!(report["changed"], false);
    assert_eq!(cert(&report, "main")["status"], "unchanged");
    assert_eq!(snapshot(gate.dir.path()), before);

    // The key-type rule applies as with a CA: a new key type is issued at once.
    gate.configure(
        "self-signed",
        &unreachable.replace("rsa-3072", "ecdsa-p256"),
        &[("main", names)],
    );
    let document = gate.request_ok();
    assert!(
        reason(&document, "main").contains("key type changed"),
        "{document:#}"
    );
    assert_eq!(cert(&gate.finalize_ok(), "main")["status"], "issued");
    assert_eq!(key_kind(&leaf, &key), "id-ecPublicKey NIST CURVE: P-256");
}

#[test]
fn local_ca_certificates_verify_against_the_ci_ca_and_a_renewal_reaches_nginx() {
    let gate = Gate::new();
    let ci = CiCa::new(&gate.dir.path().join("ca"));
    let name = "gate2.example.test";
    // acme.sh's layout, as OpenDev's services read it; no acme, no signing_zone.
    gate.configure(ci.issuer(), "layout: acme.sh\n", &[("main", &[name])]);

    let document = gate.request_ok();
    assert_eq!(document["records"], Value::Array(Vec::new()));
    assert!(
        reason(&document, "main").contains("local-ca"),
        "{document:#}"
    );
    let report = gate.finalize_ok();
    assert_eq!(cert(&report, "main")["status"], "issued");
    let leaf = gate.file(name, &format!("{name}.cer"));
    let key = gate.file(name, &format!("{name}.key"));
    let fullchain = gate.file(name, "fullchain.cer");
    verify_against(&ci.root(), &fullchain)
        .unwrap_or_else(|err| panic!("does not verify against the CI root: {err}"));
    assert_eq!(
        std::fs::read(gate.file(name, "ca.cer")).expect("ca.cer"),
        std::fs::read(&ci.cert).expect("ci-ca.pem"),
        "the chain is the CA file's certificates"
    );
    assert_eq!(sans(&leaf), [name]);
    assert_eq!(key_kind(&leaf, &key), "id-ecPublicKey NIST CURVE: P-384");
    assert!(
        subject(&leaf).contains("OU = local-ca"),
        "{}",
        subject(&leaf)
    );

    // A service trusting the CI root accepts what nginx serves from these files.
    let nginx = Nginx::start(&fullchain, &key, name);
    let served = curl_leaf(nginx.port(), name, &ci.root()).expect("curl trusts the CI CA");
    assert_eq!(served, Leaf::of_file(&leaf));

    // A name added is issued at once, and the reload (the handler) serves it.
    let www = "www.gate2.example.test";
    gate.configure(ci.issuer(), "layout: acme.sh\n", &[("main", &[name, www])]);
    let document = gate.request_ok();
    assert_eq!(document["changed"], true);
    assert!(
        reason(&document, "main").contains("names changed"),
        "{document:#}"
    );
    assert_eq!(gate.finalize_ok()["changed"], true);
    nginx.reload();
    let served = curl_leaf(nginx.port(), www, &ci.root()).expect("curl, new name");
    assert_eq!(served, Leaf::of_file(&leaf));
    assert_eq!(sans(&leaf), sorted(&[name, www]));
}

#[test]
fn a_short_lived_test_certificate_is_renewed_once_it_is_due() {
    let gate = Gate::new();
    let ci = CiCa::new(&gate.dir.path().join("ca"));
    // 9 s (and the backdated tenth): due once about a third of it is left, spread over the
    // next ninth by the certificate's seed as with a CA, about 6 to 7 s after issue.
    gate.configure(
        ci.issuer_with("lifetime", "9s"),
        "",
        &[("main", &["gate3.example.test"])],
    );
    gate.request_ok();
    let first = gate.finalize_ok();
    let leaf = gate.file("main", "cert.pem");
    let issued = Leaf::of_file(&leaf);
    assert!(valid_in(&leaf, 5) && !valid_in(&leaf, 10), "lifetime 9 s");

    let document = gate.request_ok();
    let entry = cert(&document, "main");
    assert_eq!(entry["status"], "valid", "{document:#}");
    // The moment the days rule set: before expiry, and within its last 4 s (a third of
    // the validity), not earlier.
    let renew_at = parse_time(entry["renew_at"].as_str().expect("renew_at"));
    let not_after = parse_time(entry["not_after"].as_str().expect("not_after"));
    assert!(
        renew_at < not_after && not_after - renew_at <= time::Duration::seconds(4),
        "{entry}"
    );
    while now() <= renew_at {
        std::thread::sleep(Duration::from_millis(200));
    }
    let document = gate.request_ok();
    assert_eq!(cert(&document, "main")["status"], "ready", "{document:#}");
    // Due by its expiry: within the last third, or past it on a slow machine.
    let why = reason(&document, "main");
    assert!(
        why.starts_with("expires in") || why.starts_with("expired"),
        "{document:#}"
    );
    let report = gate.finalize_ok();
    assert_eq!(cert(&report, "main")["status"], "issued");
    assert_ne!(
        cert(&report, "main")["not_after"],
        cert(&first, "main")["not_after"]
    );
    assert_ne!(Leaf::of_file(&leaf), issued, "not replaced");
    verify_against(&ci.root(), &gate.file("main", "fullchain.pem")).expect("renewed verifies");
}

/// Puts a certificate for `names` that the CI CA signed, valid `from_to`, in `cert`'s
/// directory: what a gate host holds from an earlier run, with the validity a test needs.
fn hold_signed_by_ci(
    gate: &Gate,
    ci: &CiCa,
    cert: &str,
    names: &[&str],
    from_to: (time::OffsetDateTime, time::OffsetDateTime),
) {
    let ca_pem = std::fs::read_to_string(ci.ca.intermediate()).expect("CA");
    let ca_key = std::fs::read_to_string(ci.ca.intermediate_key()).expect("CA key");
    let ca_key = rcgen::KeyPair::from_pem(&ca_key).expect("CA key");
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca_pem, ca_key).expect("CA");
    let chain = std::fs::read_to_string(&ci.cert).expect("CA file");
    let dir = gate.cert_dir().join(cert);
    hold_signed_by(&dir, &issuer, &chain, names, from_to);
}

/// `renew.before_days` holds for a test issuer's certificates as for a CA's: with
/// `before_days: 1`, a 10-day certificate with 2 days left is not due (a third of its
/// lifetime alone would say it is), one with 12 hours left is, and only that one is signed.
#[test]
fn renew_before_days_decides_for_a_test_issuer_as_for_a_ca() {
    let gate = Gate::new();
    let ci = CiCa::new(&gate.dir.path().join("ca"));
    let certs: &[(&str, &[&str])] = &[
        ("later", &["later.gate.example.test"]),
        ("soon", &["soon.gate.example.test"]),
    ];
    gate.configure(ci.issuer(), "renew: {before_days: 1}\n", certs);
    let now = now();
    let validity = |left: time::Duration| (now + left - time::Duration::days(10), now + left);
    hold_signed_by_ci(
        &gate,
        &ci,
        "later",
        certs[0].1,
        validity(time::Duration::days(2)),
    );
    hold_signed_by_ci(
        &gate,
        &ci,
        "soon",
        certs[1].1,
        validity(time::Duration::hours(12)),
    );
    let held = Leaf::of_file(&gate.file("later", "cert.pem"));

    let document = gate.request_ok();
    let later = cert(&document, "later");
    assert_eq!(later["status"], "valid", "{document:#}");
    // Its moment: a day before expiry, later by its share of the spread (8 hours).
    let renew_at = parse_time(later["renew_at"].as_str().expect("renew_at"));
    let not_after = now + time::Duration::days(2);
    assert!(
        renew_at >= not_after - time::Duration::days(1)
            && renew_at <= not_after - time::Duration::hours(16),
        "{later}"
    );
    assert_eq!(cert(&document, "soon")["status"], "ready", "{document:#}");
    assert!(
        reason(&document, "soon").starts_with("expires in 11 h")
            || reason(&document, "soon").starts_with("expires in 12 h"),
        "{document:#}"
    );

    let report = gate.finalize_ok();
    assert_eq!(cert(&report, "later")["status"], "unchanged", "{report:#}");
    assert_eq!(cert(&report, "soon")["status"], "issued", "{report:#}");
    assert_eq!(Leaf::of_file(&gate.file("later", "cert.pem")), held);
    verify_against(&ci.root(), &gate.file("soon", "fullchain.pem")).expect("renewed verifies");
    assert!(
        valid_in(&gate.file("soon", "cert.pem"), 29 * 86_400),
        "a new 30-day certificate"
    );
}

#[test]
fn a_ca_key_others_can_read_is_refused_and_the_key_never_shows() {
    let mut gate = Gate::new();
    let ci = CiCa::new(&gate.dir.path().join("ca"));
    let certs: &[(&str, &[&str])] = &[("main", &["gate4.example.test"])];
    gate.configure(ci.issuer(), "", certs);
    let key = ci.ca.intermediate_key();
    set_mode(&key, 0o640);
    let line = gate.refused("`issuer.local-ca.key`");
    assert!(
        line.contains(&key.display().to_string()) && line.contains("chmod 600"),
        "{line}"
    );
    assert!(!gate.state_dir().exists() && !gate.cert_dir().exists());

    // A key that is not the certificate's, and a certificate that is no CA.
    set_mode(&key, 0o600);
    let root_key = gate.dir.path().join("ca/root.key");
    set_mode(&root_key, 0o600);
    gate.configure(local_ca(&ci.cert, &root_key), "", certs);
    gate.refused("is not the key of the CA");
    let leaf = ci
        .ca
        .issue("leaf.example.test", &gate.dir.path().join("leaf"));
    set_mode(&leaf.key, 0o600);
    gate.configure(local_ca(&leaf.cert, &leaf.key), "", certs);
    gate.refused("is not a CA certificate");

    // At the most verbose level, neither the CA key nor the new key shows (`run` checks
    // every key below the gate's directory, the CA's included).
    gate.flags = vec!["-vvv"];
    gate.configure(ci.issuer(), "", certs);
    let request = gate.run("request", &[]);
    request.expect_code(0);
    assert!(
        request.stderr.contains(" due "),
        "no logs: {}",
        request.stderr
    );
    let finalize = gate.run("finalize", &[]);
    finalize.expect_code(0);
    assert!(
        finalize.stderr.contains(" installed "),
        "no logs: {}",
        finalize.stderr
    );
}

/// The CA is Pebble behind tests/fake-ca (ARI, as Let's Encrypt offers it, with a window
/// weeks away for every certificate): the issuer change renews at once whatever the window
/// says, without `replaces` (the CA never issued the test certificate) and without asking
/// ARI about it; the real certificate then follows the CA's window as any other.
#[test]
fn a_host_moved_from_local_ca_to_acme_is_renewed_at_once_and_back_only_when_the_config_says_so() {
    let sb = sandbox().start();
    let fake = FakeCa::start(&sb, "");
    let (start, end) = (
        now() + time::Duration::days(40),
        now() + time::Duration::days(41),
    );
    fake.set_windows(&[("*", start, end)]);
    let certs: &[(&str, &[&str])] = &[("main", &["host1.example.test"])];
    let host = Host::with_directory(&sb, &fake.directory(), certs);
    let ci = CiCa::new(&host.dir.path().join("ca"));
    let fullchain = host.file("main", "fullchain.pem");

    host.write_config(&host.host_config().set("issuer", ci.issuer()).certs(certs));
    let document = host.request_ok();
    assert_eq!(document["records"], Value::Array(Vec::new()));
    assert_eq!(host.finalize_ok()["changed"], true);
    verify_against(&ci.root(), &fullchain).expect("a test certificate");
    assert_eq!(
        fake.requests(),
        Vec::<String>::new(),
        "a test issuer asked the CA"
    );
    assert!(
        !host.state_dir().join("account.json").exists(),
        "a CA was asked"
    );

    // To acme: the test certificate is renewed at once, with a real one.
    host.configure("", certs);
    let document = host.request_ok();
    let entry = cert(&document, "main");
    assert_eq!(entry["status"], "pending", "{document:#}");
    assert!(
        reason(&document, "main").contains("issuer changed to `acme`"),
        "{document:#}"
    );
    assert_eq!(
        fake.renewal_info_requests(),
        Vec::<String>::new(),
        "ARI was asked about a test certificate"
    );
    let orders = fake.new_orders();
    assert_eq!(orders.len(), 1, "{orders:?}");
    assert_eq!(orders[0]["replaces"], Value::Null, "{orders:?}");
    host.place(&document);
    assert_eq!(cert(&host.finalize_ok(), "main")["status"], "issued");
    sb.verify_chain(&fullchain)
        .unwrap_or_else(|err| panic!("not Pebble's: {err}"));
    assert!(verify_against(&ci.root(), &fullchain).is_err());

    // The real certificate follows the CA's window: not due, its moment inside the window,
    // and the CA asked about this very certificate.
    let document = host.request_ok();
    let entry = cert(&document, "main");
    assert_eq!(entry["status"], "valid", "{document:#}");
    let renew_at = parse_time(entry["renew_at"].as_str().expect("renew_at"));
    assert!(renew_at >= start && renew_at < end, "{entry}");
    assert_eq!(
        fake.renewal_info_requests(),
        vec![format!(
            "GET /renewal-info/{}",
            ari_id(&host.file("main", "cert.pem"))
        )]
    );
    assert_eq!(fake.new_orders().len(), 1);

    // Back to the local CA by accident: the real certificate stays, and says why.
    host.write_config(&host.host_config().set("issuer", ci.issuer()).certs(certs));
    let before = snapshot(&host.cert_dir());
    let run = host.request();
    run.expect_code(1);
    let document = run.json();
    assert_eq!(cert(&document, "main")["status"], "failed");
    assert!(
        reason(&document, "main").contains("replace_ca_issued: true"),
        "{document:#}"
    );
    assert_eq!(document["changed"], false);
    let report = host.finalize_ok();
    assert_eq!(report["changed"], false);
    assert_eq!(
        snapshot(&host.cert_dir()),
        before,
        "a CA's certificate was touched"
    );
    sb.verify_chain(&fullchain).expect("still Pebble's");
    assert_eq!(fake.new_orders().len(), 1, "an order for the local CA");

    // Said on purpose, it is replaced.
    host.write_config(
        &host
            .host_config()
            .set("issuer", ci.issuer_with("replace_ca_issued", true))
            .certs(certs),
    );
    let document = host.request_ok();
    assert!(
        reason(&document, "main").contains("issued by a CA"),
        "{document:#}"
    );
    assert_eq!(cert(&host.finalize_ok(), "main")["status"], "issued");
    verify_against(&ci.root(), &fullchain).expect("the test certificate again");
    assert_eq!(fake.new_orders().len(), 1);
}

/// A server on its own renews with `fleetcert renew`: with a test issuer it signs and
/// installs as `finalize` does and publishes nothing. Its production config (`update:` and
/// the servers to wait for) stays, pointing at a closed port: any UPDATE or query would
/// fail the run.
#[test]
fn renew_with_a_test_issuer_installs_and_publishes_nothing() {
    let gate = Gate::new();
    let secret = gate.dir.path().join("host.secret");
    std::fs::write(&secret, "c2VjcmV0LXRoYXQtaXMtbmV2ZXItdXNlZC1oZXJlLi4u\n").expect("secret");
    set_mode(&secret, 0o600);
    let names: &[&str] = &["gate5.example.test"];
    gate.host_config("self-signed")
        .set("signing_zone", "acme.test")
        .set("resolver", "127.0.0.1:9")
        .set(
            "update",
            json!({"server": "127.0.0.1:9", "key_name": "gate5", "secret_file": secret}),
        )
        .set("servers", ["127.0.0.1:9"])
        .set("timeout", "5s")
        .cert("main", names)
        .write(&gate.config());

    let report = gate.run("renew", &[]).expect_code(0).json();
    assert_eq!(report["changed"], true, "{report:#}");
    assert_eq!(report["request"]["records"], Value::Array(Vec::new()));
    assert_eq!(cert(&report["request"], "main")["status"], "ready");
    assert!(
        report["publish"].is_null() && report["cleanup"].is_null(),
        "{report:#}"
    );
    assert_eq!(cert(&report["finalize"], "main")["status"], "issued");
    let leaf = gate.file("main", "cert.pem");
    verify_against(&leaf, &gate.file("main", "fullchain.pem")).expect("verifies");
    assert_eq!(sans(&leaf), names);
    assert_eq!(gate.local_orders(), serde_json::json!({}), "order kept");

    let report = gate.run("renew", &[]).expect_code(0).json();
    assert_eq!(report["changed"], false, "{report:#}");
    assert_eq!(cert(&report["request"], "main")["status"], "valid");
    assert_eq!(cert(&report["finalize"], "main")["status"], "unchanged");
}

/// Certificate name -> names.
type Certs = &'static [(&'static str, &'static [&'static str])];

/// The gate fleet of the playbook test: host -> certificates (handlers exist for `main` and
/// `www`).
const GATE_FLEET: [(&str, Certs); 2] = [
    (
        "gate1.example.test",
        &[("main", &["gate1.example.test", "www.gate1.example.test"])],
    ),
    (
        "gate2.example.test",
        &[
            ("main", &["gate2.example.test"]),
            ("www", &["www.gate2.example.test"]),
        ],
    ),
];

/// A gate job's inventory in `dir` (the layout tests/fleet/inventory.sh writes, so
/// `daily_playbook` runs it): every host is this machine with its own directories, signs
/// with the CI CA the controller holds (copied to each host), and there is no DNS primary.
fn gate_inventory(dir: &Path, ci: &CiCa, lifetime: &str) {
    let python = if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "{{ ansible_playbook_python }}"
    };
    let host_vars = dir.join("inventory/host_vars");
    std::fs::create_dir_all(&host_vars).expect("inventory dir");
    let mut hosts = String::new();
    for (host, certs) in GATE_FLEET {
        let home = dir.join("hosts").join(host);
        let mut text = format!(
            "---\nfleetcert_binary: {home}/bin/fleetcert\n\
             fleetcert_config_path: {home}/etc/fleetcert.yaml\n\
             fleetcert_state_dir: {home}/state\nfleetcert_cert_dir: {home}/certs\n\
             fleetcert_issuer_ca_cert: {home}/etc/ci-ca.pem\n\
             fleetcert_issuer_ca_key: {home}/etc/ci-ca.key\nfleetcert_certs:\n",
            home = home.display()
        );
        text.push_str(&certs_yaml(certs));
        std::fs::write(host_vars.join(format!("{host}.yaml")), text).expect("host_vars");
        hosts.push_str(&format!("        {host}:\n"));
    }
    let inventory = format!(
        "---\n# A gate job: a CI CA, no CA, no signing zone, no DNS primary.\n\
         all:\n  vars:\n    ansible_connection: local\n    ansible_python_interpreter: \"{python}\"\n\
         \x20   fleetcert_install_method: copy\n    fleetcert_install_binary_src: {binary}\n\
         \x20 children:\n    fleetcert:\n      vars:\n        fleetcert_issuer: local-ca\n\
         \x20       fleetcert_issuer_ca_cert_src: {cert}\n\
         \x20       fleetcert_issuer_ca_key_src: {key}\n\
         \x20       fleetcert_issuer_lifetime: {lifetime}\n\
         \x20       fleetcert_group: root\n      hosts:\n{hosts}",
        binary = env!("CARGO_BIN_EXE_fleetcert"),
        cert = ci.cert.display(),
        key = ci.ca.intermediate_key().display(),
    );
    std::fs::write(dir.join("inventory/hosts.yaml"), inventory).expect("hosts.yaml");
    let log = dir.join("handlers.log");
    let mut handlers = String::from("---\n");
    for cert in ["main", "www"] {
        handlers.push_str(&format!(
            "- name: Record the replaced {cert} certificate\n  ansible.builtin.shell:\n\
             \x20   cmd: echo \"{{{{ inventory_hostname }}}} {cert}\" >> {log}\n\
             \x20 changed_when: true\n  listen: fleetcert updated {cert}\n",
            log = log.display()
        ));
    }
    std::fs::write(dir.join("handlers.yaml"), handlers).expect("handlers");
    let extra = format!(
        "---\nfleetcert_handlers_file: {}\n",
        dir.join("handlers.yaml").display()
    );
    std::fs::write(dir.join("extra-vars.yaml"), extra).expect("extra vars");
}

/// "HOST CERT" lines the handlers wrote, sorted.
fn handler_lines(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("handlers.log")).unwrap_or_default();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines.sort();
    lines
}

/// Every certificate of the gate fleet: (host, cert, its full chain).
fn gate_certs(dir: &Path) -> Vec<(&'static str, &'static str, PathBuf)> {
    GATE_FLEET
        .iter()
        .flat_map(|(host, certs)| {
            certs.iter().map(move |(cert, _)| {
                let file = dir.join("hosts").join(host).join("certs").join(cert);
                (*host, *cert, file.join("fullchain.pem"))
            })
        })
        .collect()
}

/// The daily playbook as a gate job runs it: `local-ca` with the CI CA copied from the
/// controller, no DNS primary and no sandbox at all.
/// 1. issues every certificate, each verifying against the CI root with its names, runs each
///    handler once, and says why nothing is published;
/// 2. right after, changes nothing: `changed=0` on every host, no handler, no file;
/// 3. once the short-lived certificates (150 s: long enough that the second run, 20 to 60 s
///    on a loaded machine, finds them valid; due 95 to 113 s after issue) are due, replaces
///    every one of them and runs the handlers again.
#[test]
fn daily_playbook_on_a_gate_with_a_local_ca_and_no_dns_primary() {
    let dir = tempfile::Builder::new()
        .prefix("fleetcert-gate-")
        .tempdir()
        .expect("gate dir");
    let ci = CiCa::new(&dir.path().join("ca"));
    gate_inventory(dir.path(), &ci, "150s");
    let all_handlers: Vec<String> = {
        let mut lines: Vec<String> = gate_certs(dir.path())
            .iter()
            .map(|(host, cert, _)| format!("{host} {cert}"))
            .collect();
        lines.sort();
        lines
    };

    // 1. The first run.
    let first = daily_playbook(dir.path(), &[]);
    first.expect_failed(&[]);
    assert!(
        first.output.contains(
            "No host in fleetcert_dns_primary: the publish and cleanup plays are skipped"
        ),
        "no line says why nothing was published; output:\n{}",
        first.output
    );
    for (host, cert, fullchain) in gate_certs(dir.path()) {
        verify_against(&ci.root(), &fullchain)
            .unwrap_or_else(|err| panic!("{host} {cert} does not verify: {err}"));
        let names = GATE_FLEET
            .iter()
            .find(|(name, _)| *name == host)
            .and_then(|(_, certs)| certs.iter().find(|(name, _)| *name == cert))
            .map(|(_, names)| sorted(names))
            .expect("configured");
        assert_eq!(sans(&fullchain), names, "{host} {cert}");
    }
    assert_eq!(handler_lines(dir.path()), all_handlers, "{}", first.output);
    let key = dir.path().join("hosts/gate1.example.test/etc/ci-ca.key");
    assert_eq!(mode(&key), 0o600, "the copied CA key");
    let ca_key = std::fs::read_to_string(ci.ca.intermediate_key()).expect("CA key");
    for line in ca_key.lines().filter(|line| !line.starts_with("-----")) {
        assert!(!first.output.contains(line), "the CA key is in the output");
    }

    // 2. Right after: nothing to do.
    let before: Vec<_> = gate_certs(dir.path())
        .iter()
        .map(|(_, _, fullchain)| Leaf::of_file(fullchain))
        .collect();
    let second = daily_playbook(dir.path(), &[]);
    second.expect_failed(&[]);
    for (host, _) in GATE_FLEET {
        assert_eq!(
            second.host(host).changed,
            0,
            "{host} changed in the second run; output:\n{}",
            second.output
        );
    }
    assert_eq!(
        handler_lines(dir.path()),
        all_handlers,
        "handlers ran again"
    );

    // 3. The certificates are due a third of their validity before they expire (55 s of
    //    150 s and the backdated 15 s), each later by its share of the spread (a third of
    //    that, 18 s); wait until every one is due, then the daily run renews every one.
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    while gate_certs(dir.path())
        .iter()
        .any(|(_, _, fullchain)| valid_in(fullchain, 35))
    {
        assert!(std::time::Instant::now() < deadline, "never due");
        std::thread::sleep(Duration::from_millis(500));
    }
    let third = daily_playbook(dir.path(), &[]);
    third.expect_failed(&[]);
    for ((host, cert, fullchain), old) in gate_certs(dir.path()).iter().zip(&before) {
        assert_ne!(&Leaf::of_file(fullchain), old, "{host} {cert} not replaced");
        verify_against(&ci.root(), fullchain).expect("the renewed certificate verifies");
    }
    let mut twice: Vec<String> = all_handlers.iter().chain(&all_handlers).cloned().collect();
    twice.sort();
    assert_eq!(handler_lines(dir.path()), twice, "{}", third.output);
}

#[test]
fn a_test_certificate_comes_with_its_keystore_as_one_set() {
    let gate = Gate::new();
    let ci = CiCa::new(&gate.dir.path().join("ca"));
    let password = gate.dir.path().join("zk.pass");
    std::fs::write(&password, "s3cret-pass\n").expect("password");
    set_mode(&password, 0o600);
    gate.host_config(ci.issuer())
        .cert_with(
            "zk",
            &["zk1.gate.example.test"],
            json!({"pkcs12": {"password_file": password, "alias": "zookeeper"}}),
        )
        .write(&gate.config());

    gate.request_ok();
    assert_eq!(cert(&gate.finalize_ok(), "zk")["status"], "issued");
    let keystore = gate.file("zk", "keystore.p12");
    assert_eq!(mode(&keystore), 0o640);
    let leaf = Leaf::of_file(&gate.file("zk", "cert.pem"));
    assert_eq!(
        keystore_leaf(&keystore, &password),
        leaf,
        "the keystore holds another certificate"
    );
    verify_against(&ci.root(), &gate.file("zk", "fullchain.pem")).expect("verifies");

    // A new password: finalize rebuilds the keystore from the installed key and chain with
    // no local order, as with a CA; the PEM files stay byte for byte.
    let pems = |gate: &Gate| {
        ["privkey.pem", "cert.pem", "fullchain.pem"]
            .map(|file| std::fs::read(gate.file("zk", file)).expect("installed"))
    };
    let before = pems(&gate);
    std::fs::write(&password, "another-pass\n").expect("password");
    assert_eq!(cert(&gate.request_ok(), "zk")["status"], "valid");
    let report = gate.finalize_ok();
    assert_eq!(
        cert(&report, "zk")["status"],
        "keystore_written",
        "{report:#}"
    );
    assert_eq!(report["changed"], true);
    assert_eq!(pems(&gate), before, "the PEM files changed");
    // It opens with the new password only, and holds the same leaf.
    assert_eq!(keystore_leaf(&keystore, &password), leaf);
}

/// The leaf in a PKCS#12 keystore, opened by openssl with the password in `password`.
fn keystore_leaf(keystore: &Path, password: &Path) -> Leaf {
    let mut passin = std::ffi::OsString::from("file:");
    passin.push(password);
    let listed = crate::support::util::openssl(&[
        OsStr::new("pkcs12"),
        OsStr::new("-in"),
        keystore.as_os_str(),
        OsStr::new("-passin"),
        &passin,
        OsStr::new("-nokeys"),
        OsStr::new("-clcerts"),
    ]);
    Leaf::of_pem(&listed).expect("a leaf in the keystore")
}
