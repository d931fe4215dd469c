//! ARI (RFC 9773) and ACME profiles, which Debian's Pebble 2.4 does not offer: a small fake
//! (`tests/fake-ca/ari_profiles.py`) serves Pebble's directory plus `renewalInfo` and
//! `meta.profiles`, and answers the renewal-info GETs. Accounts, orders, validation and
//! issuance are still the real Pebble's.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::fixture::{Host, records};
use crate::sandbox::Sandbox;
use crate::util::openssl;

/// The fake's process and its state directory; the process is killed when dropped.
struct FakeCa {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl FakeCa {
    /// Starts the fake in front of `sb`'s Pebble, offering `profiles` (comma-separated).
    fn start(sb: &Sandbox, profiles: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake-ca/ari_profiles.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg("--upstream")
            .arg(sb.acme_directory())
            .arg("--cafile")
            .arg(sb.ca_bundle())
            .arg("--cert")
            .arg(sb.dir().join("pebble-cert.pem"))
            .arg("--key")
            .arg(sb.dir().join("pebble-key.pem"))
            .arg("--dir")
            .arg(dir.path())
            .arg("--profiles")
            .arg(profiles)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start python3 tests/fake-ca/ari_profiles.py");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the fake's port");
        let port = line.trim().parse().unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("the fake printed {line:?}, not a port")
        });
        Self { child, port, dir }
    }

    fn directory(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.port)
    }

    /// Makes the next renewal-info answers say the window is open (`past`) or not (`future`).
    fn set_window(&self, which: &str) {
        std::fs::write(self.dir.path().join("window"), which).expect("write window");
    }

    /// Every `METHOD PATH` the fake was asked, in order.
    fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("requests"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn renewal_info_requests(&self) -> Vec<String> {
        self.requests()
            .into_iter()
            .filter(|line| line.starts_with("GET /renewal-info/"))
            .collect()
    }
}

impl Drop for FakeCa {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The certificate every test here issues.
const CERTS: &[(&str, &[&str])] = &[("main", &["host7.example.test", "www7.example.test"])];

/// `openssl x509` field of `cert`, e.g. `-serial`.
fn openssl_x509(cert: &Path, args: &[&str]) -> String {
    let cert = cert.to_str().expect("utf-8");
    openssl(&[&["x509", "-noout", "-in", cert], args].concat())
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    let digits: String = hex.chars().filter(char::is_ascii_hexdigit).collect();
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).expect("hex"))
        .collect()
}

/// The ARI certificate ID (RFC 9773 section 4.1) computed with openssl, independently of
/// fleetcert: base64url(AKI keyIdentifier) "." base64url(DER serial number bytes).
fn ari_id(cert: &Path) -> String {
    let aki = openssl_x509(cert, &["-ext", "authorityKeyIdentifier"]);
    let key_id = aki
        .lines()
        .skip(1)
        .map(|line| line.trim().trim_start_matches("keyid:"))
        .find(|line| !line.is_empty())
        .expect("AKI keyid line");
    let serial = openssl_x509(cert, &["-serial"]);
    let mut serial = hex_bytes(serial.trim().trim_start_matches("serial="));
    // The DER INTEGER's content octets: a leading zero keeps a high first bit positive.
    if serial.first().is_some_and(|b| b & 0x80 != 0) {
        serial.insert(0, 0);
    }
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(hex_bytes(key_id)),
        URL_SAFE_NO_PAD.encode(serial)
    )
}

#[test]
fn ari_window_decides_when_a_valid_certificate_renews() {
    let sb = Sandbox::start();
    let fake = FakeCa::start(&sb, "");
    let host = Host::with_directory(&sb, &fake.directory(), CERTS);
    host.issue();
    let cert = host.file("main", "cert.pem");
    let first = std::fs::read(&cert).expect("cert");
    let id = ari_id(&cert);

    // Window in the future: nothing due, but the CA was asked about this very certificate.
    fake.set_window("future");
    let document = host.request_ok();
    assert_eq!(document["certs"][0]["status"], "valid", "{document}");
    assert_eq!(document["records"].as_array().map(Vec::len), Some(0));
    assert_eq!(document["changed"], false);
    assert_eq!(
        fake.renewal_info_requests(),
        vec![format!("GET /renewal-info/{id}")],
        "fleetcert asked for another certificate ID than openssl computes"
    );

    // Window open: renewed now, long before `before_days`, and the order completes.
    fake.set_window("past");
    let due = host.request();
    due.expect_code(0);
    // The order was sent with `replaces`: Pebble 2.4 takes it without echoing the field, and
    // fleetcert says so before ordering again without it.
    assert!(
        due.stderr.contains("ignored `replaces`"),
        "no order with `replaces` was attempted:\n{}",
        due.stderr
    );
    let document = due.json();
    // Pebble may reuse some or all of the authorizations it validated for the first
    // certificate: a name reused needs no record, and with both reused the order is ready.
    let status = document["certs"][0]["status"].as_str().expect("status");
    let records = records(&document);
    match status {
        "pending" => assert!((1..=2).contains(&records.len()), "{document}"),
        "ready" => assert!(records.is_empty(), "{document}"),
        other => panic!("status {other}: {document}"),
    }
    let reason = document["certs"][0]["reason"].as_str().expect("reason");
    assert!(reason.contains("ARI"), "reason does not name ARI: {reason}");
    assert_eq!(document["changed"], true);
    if !records.is_empty() {
        host.place(&document);
    }
    host.finalize_ok();
    let second = std::fs::read(&cert).expect("cert");
    assert_ne!(first, second, "the certificate was not replaced");
    sb.verify_chain(&host.file("main", "fullchain.pem"))
        .expect("openssl verify");
}

#[test]
fn ari_off_never_asks_the_ca() {
    let sb = Sandbox::start();
    let fake = FakeCa::start(&sb, "");
    let host = Host::with_directory(&sb, &fake.directory(), CERTS);
    host.configure("renew: {ari: false}\n", CERTS);
    host.issue();
    fake.set_window("past");
    assert_eq!(host.request_ok()["certs"][0]["status"], "valid");
    assert_eq!(fake.renewal_info_requests(), Vec::<String>::new());
}

#[test]
fn profile_must_be_one_the_ca_offers() {
    let sb = Sandbox::start();
    let fake = FakeCa::start(&sb, "classic,shortlived");

    let offered = Host::with_directory(&sb, &fake.directory(), CERTS);
    offered.configure_acme(", profile: shortlived", "", CERTS);
    let document = offered.request_ok();
    assert_eq!(document["certs"][0]["status"], "pending", "{document}");

    let unknown = Host::with_directory(&sb, &fake.directory(), CERTS);
    unknown.configure_acme(", profile: tiny", "", CERTS);
    let run = unknown.request();
    run.expect_code(1);
    let document = run.json();
    assert_eq!(document["certs"][0]["status"], "failed");
    let reason = document["certs"][0]["reason"].as_str().expect("reason");
    assert!(
        reason.contains("`tiny`") && reason.contains("classic, shortlived"),
        "{reason}"
    );
    assert_eq!(document["records"].as_array().map(Vec::len), Some(0));
    assert!(
        unknown.saved_order("main").is_none(),
        "an order was saved for a profile the CA does not offer"
    );
}
