//! The fake CA in front of Pebble (`tests/fake-ca/ari_profiles.py`) and certificates a host
//! holds from before.
//!
//! Debian's Pebble 2.4 has no ARI and no profiles: the fake passes every request to the real
//! Pebble and adds `renewalInfo`, `meta.profiles`, the windows a test sets, `rateLimited`
//! answers and expired authorizations. Accounts, orders, validation and issuance stay the real
//! Pebble's.
//!
//! A certificate "due by days" must be old, and Pebble only issues new ones: such tests hold
//! a certificate the test made ([`hold`]) with the validity they need, as a host holds one
//! issued earlier.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::fixture::Host;
use super::sandbox::Sandbox;
use super::util::openssl;

/// The fake's process and its state directory; the process is killed when dropped.
pub(crate) struct FakeCa {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl FakeCa {
    /// Starts the fake in front of `sb`'s Pebble, offering `profiles` (comma-separated).
    pub(crate) fn start(sb: &Sandbox, profiles: &str) -> Self {
        Self::start_for(sb, sb.acme_directory(), profiles)
    }

    /// Starts the fake in front of the Pebble at `upstream` (one of `sb`'s).
    pub(crate) fn start_for(sb: &Sandbox, upstream: &str, profiles: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake-ca/ari_profiles.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg("--upstream")
            .arg(upstream)
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

    pub(crate) fn directory(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.port)
    }

    pub(crate) fn write(&self, file: &str, value: &Value) {
        std::fs::write(self.dir.path().join(file), value.to_string()).expect("write fake state");
    }

    /// The renewal windows the fake answers with, by certificate ID (`*`: any other).
    pub(crate) fn set_windows(&self, windows: &[(&str, OffsetDateTime, OffsetDateTime)]) {
        let map: serde_json::Map<String, Value> = windows
            .iter()
            .map(|(id, start, end)| {
                let window = serde_json::json!({"start": rfc3339(*start), "end": rfc3339(*end)});
                ((*id).to_owned(), window)
            })
            .collect();
        self.write("windows.json", &Value::Object(map));
    }

    /// Every newOrder from now on gets 429 `rateLimited` with this detail and `Retry-After`.
    pub(crate) fn set_rate_limit(&self, detail: &str, retry_after: Option<&str>) {
        self.write(
            "rate-limit",
            &serde_json::json!({"detail": detail, "retry_after": retry_after}),
        );
    }

    /// From now on a `replaces` that an earlier order carried is refused (409
    /// `alreadyReplaced`), as a CA holding to RFC 9773 section 5 refuses it.
    pub(crate) fn refuse_replaced(&self) {
        std::fs::write(self.dir.path().join("already-replaced"), "").expect("write fake state");
    }

    pub(crate) fn clear_rate_limit(&self) {
        std::fs::remove_file(self.dir.path().join("rate-limit")).expect("remove rate-limit");
    }

    /// Shows the pending authorizations of the order at `url` as expired: `past` (still
    /// pending, `expires` an hour ago, as Pebble shows them) or `expired` (that status).
    pub(crate) fn expire_order(&self, url: &str, mode: &str) {
        let path = self.dir.path().join("expired.json");
        let mut marked: Value = std::fs::read_to_string(&path)
            .map(|text| serde_json::from_str(&text).expect("expired.json"))
            .unwrap_or_else(|_| serde_json::json!({}));
        marked[url] = Value::from(mode);
        self.write("expired.json", &marked);
    }

    /// Every `METHOD PATH` the fake was asked, in order.
    pub(crate) fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("requests"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    pub(crate) fn renewal_info_requests(&self) -> Vec<String> {
        self.requests()
            .into_iter()
            .filter(|line| line.starts_with("GET /renewal-info/"))
            .collect()
    }

    /// Every newOrder the fake received, in order: what the client sent.
    pub(crate) fn new_order_posts(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join("orders.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).expect("orders.jsonl"))
            .collect()
    }

    /// Removes a steering file (`fault.json`, `windows.json`): that behaviour ends.
    pub(crate) fn clear(&self, file: &str) {
        std::fs::remove_file(self.dir.path().join(file)).expect("remove fake state");
    }

    /// The newOrders the CA acted on (made, or refused by rate limit): all but those Pebble
    /// refused for their nonce (`PEBBLE_WFE_NONCEREJECT`, 5 % by default), which the client
    /// sends again and the CA never acted on.
    pub(crate) fn new_orders(&self) -> Vec<Value> {
        self.new_order_posts()
            .into_iter()
            .filter(|order| order["answer"] != "400 urn:ietf:params:acme:error:badNonce")
            .collect()
    }
}

impl Drop for FakeCa {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).expect("RFC 3339")
}

pub(crate) fn parse_time(text: &str) -> OffsetDateTime {
    OffsetDateTime::parse(text, &Rfc3339).unwrap_or_else(|_| panic!("not RFC 3339: {text}"))
}

/// Now, to the second (the fake and fleetcert speak whole seconds).
pub(crate) fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("whole second")
}

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
pub(crate) fn ari_id(cert: &Path) -> String {
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

/// Puts a certificate for `names` valid from `not_before` to `not_after` (ECDSA P-384, the
/// config's key type, with its key) in `cert`'s directory, as plain files, the way a host
/// holds a certificate issued earlier. Signed by a throwaway CA with an authority key
/// identifier, so it has an ARI certificate ID. Returns the path of its `cert.pem`.
pub(crate) fn hold(
    host: &Host<'_>,
    cert: &str,
    names: &[&str],
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> PathBuf {
    let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(
        rcgen::DnType::CommonName,
        "fleetcert test: held certificates",
    );
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA");
    let dir = host.cert_dir().join(cert);
    hold_signed_by(&dir, &ca, &ca.pem(), names, (not_before, not_after))
}

/// Puts a certificate for `names` that `issuer` signs, valid `from_to`, with a new ECDSA
/// P-384 key and `chain` (PEM) as its chain, in `dir` as plain files (`layout: fleetcert`).
/// Returns the path of its `cert.pem`.
pub(crate) fn hold_signed_by(
    dir: &Path,
    issuer: &rcgen::Issuer<'_, impl rcgen::SigningKey>,
    chain: &str,
    names: &[&str],
    (not_before, not_after): (OffsetDateTime, OffsetDateTime),
) -> PathBuf {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).expect("key");
    let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
    let mut params = rcgen::CertificateParams::new(names).expect("params");
    params.not_before = not_before;
    params.not_after = not_after;
    params.use_authority_key_identifier_extension = true;
    let leaf = params.signed_by(&key, issuer).expect("sign");
    std::fs::create_dir_all(dir).expect("cert dir");
    let files = [
        ("cert.pem", leaf.pem()),
        ("chain.pem", chain.to_owned()),
        ("fullchain.pem", format!("{}{chain}", leaf.pem())),
        ("privkey.pem", key.serialize_pem()),
    ];
    for (name, text) in files {
        std::fs::write(dir.join(name), text).expect("write a held file");
    }
    dir.join("cert.pem")
}
