//! `issuer:` of the host config: an ACME CA (the default), or a test issuer for gate jobs.
//!
//! ```yaml
//! issuer: acme                 # the default: acme.* and signing_zone are required
//! issuer: self-signed          # or {self-signed: {lifetime: 30d, replace_ca_issued: false}}
//! issuer:
//!   local-ca: {cert: /etc/fleetcert/ci-ca.pem, key: /etc/fleetcert/ci-ca.key, lifetime: 30d}
//! ```
//!
//! The issuer is what says whether a CA is needed: with a test issuer, `acme` and
//! `signing_zone` may be left out (a gate has neither); when they are given they are checked
//! as always, so a production config with an `issuer:` line added stays valid both ways.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_yaml::Value;

use super::{ConfigDuration, ConfigError, beside, invalid};
use crate::issuer::{CaProblem, Issuer, LocalCa, Signer, TestIssuer};
use crate::shown::{path as shown_path, shown};

/// `issuer:` as written: a name or a map of one name to its options, read in a second step
/// so that each mistake gets its own line.
pub(super) type RawIssuer = Option<Value>;

/// A test certificate's lifetime when the config gives none: short enough that a gate job
/// running for weeks meets a renewal, as long as the shortest common CA profile.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(30 * 86_400);
/// The longest lifetime: what TLS clients accept for a server certificate (398 days), so a
/// test certificate is never refused for its lifetime alone.
const MAX_LIFETIME: Duration = Duration::from_secs(398 * 86_400);
/// The most bytes of the local CA's certificate file or key read.
const MAX_CA_FILE_BYTES: u64 = 1 << 20;
/// What a CA key file's mode may grant beyond its owner: nothing.
const OTHERS_ACCESS: u32 = 0o077;
/// The forms `issuer:` takes, for every message about it.
const FORMS: &str = "write `acme` (the default), `self-signed`, or \
                     `{local-ca: {cert: PATH, key: PATH}}`";

#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with `lifetime` and `replace_ca_issued`"
)]
struct RawSelfSigned {
    lifetime: Option<ConfigDuration>,
    #[serde(default)]
    replace_ca_issued: bool,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with `cert`, `key`, `lifetime`, `replace_ca_issued`"
)]
struct RawLocalCa {
    cert: PathBuf,
    key: PathBuf,
    lifetime: Option<ConfigDuration>,
    #[serde(default)]
    replace_ca_issued: bool,
}

/// Checks `issuer:`; reads and checks the local CA's files.
pub(super) fn check_issuer(path: &Path, raw: RawIssuer) -> Result<Issuer, ConfigError> {
    let Some(value) = raw else {
        return Ok(Issuer::Acme);
    };
    let (name, options) = match value {
        Value::String(name) => (name, None),
        Value::Mapping(map) if map.len() == 1 => match map.into_iter().next() {
            Some((Value::String(name), Value::Null)) => (name, None),
            Some((Value::String(name), options)) => (name, Some(options)),
            _ => return Err(invalid(path, "issuer", FORMS)),
        },
        _ => return Err(invalid(path, "issuer", FORMS)),
    };
    match (name.as_str(), options) {
        ("acme", None) => Ok(Issuer::Acme),
        ("acme", Some(_)) => Err(invalid(
            path,
            "issuer.acme",
            "takes no options: the CA is configured under `acme:`",
        )),
        ("self-signed", options) => {
            let raw: RawSelfSigned = match options {
                Some(options) => options_of(path, "issuer.self-signed", options)?,
                None => RawSelfSigned::default(),
            };
            Ok(Issuer::Test(TestIssuer {
                signer: Signer::SelfSigned,
                lifetime: check_lifetime(path, "issuer.self-signed", raw.lifetime)?,
                replace_ca_issued: raw.replace_ca_issued,
            }))
        }
        ("local-ca", None) => Err(invalid(
            path,
            "issuer.local-ca",
            "needs the CA's files: write `issuer: {local-ca: {cert: PATH, key: PATH}}`",
        )),
        ("local-ca", Some(options)) => {
            let raw: RawLocalCa = options_of(path, "issuer.local-ca", options)?;
            let lifetime = check_lifetime(path, "issuer.local-ca", raw.lifetime)?;
            let ca = read_local_ca(path, beside(path, raw.cert), &beside(path, raw.key))?;
            Ok(Issuer::Test(TestIssuer {
                signer: Signer::LocalCa(Box::new(ca)),
                lifetime,
                replace_ca_issued: raw.replace_ca_issued,
            }))
        }
        (other, _) => Err(invalid(
            path,
            "issuer",
            format!("{} is not an issuer: {FORMS}", shown(other)),
        )),
    }
}

fn options_of<T: serde::de::DeserializeOwned>(
    path: &Path,
    key: &str,
    options: Value,
) -> Result<T, ConfigError> {
    serde_yaml::from_value(options).map_err(|err| {
        invalid(
            path,
            key,
            format!(
                "has options fleetcert cannot use: {}",
                crate::shown::parser_message(&err.to_string(), crate::shown::MAX_EXCERPT)
            ),
        )
    })
}

fn check_lifetime(
    path: &Path,
    key: &str,
    lifetime: Option<ConfigDuration>,
) -> Result<Duration, ConfigError> {
    let lifetime = lifetime.map_or(DEFAULT_LIFETIME, |lifetime| lifetime.0);
    if lifetime.is_zero() || lifetime > MAX_LIFETIME {
        return Err(invalid(
            path,
            format!("{key}.lifetime"),
            format!(
                "must be between 1s and {}d, like 30d",
                MAX_LIFETIME.as_secs() / 86_400
            ),
        ));
    }
    Ok(lifetime)
}

fn read_local_ca(config: &Path, cert: PathBuf, key: &Path) -> Result<LocalCa, ConfigError> {
    let cert_key = "issuer.local-ca.cert";
    let key_key = "issuer.local-ca.key";
    let cert_pem = crate::store::read_bounded(&cert, MAX_CA_FILE_BYTES)
        .map_err(|err| invalid(config, cert_key, err.to_string()))?;
    let key_pem = read_private(config, key_key, key)?;
    let now = time::OffsetDateTime::now_utc();
    LocalCa::read(cert.clone(), &cert_pem, &key_pem, now).map_err(|problem| match problem {
        CaProblem::Cert(problem) => {
            invalid(config, cert_key, format!("{} {problem}", shown_path(&cert)))
        }
        CaProblem::Key(problem) => {
            invalid(config, key_key, format!("{} {problem}", shown_path(key)))
        }
    })
}

/// Reads a file only its owner may read: a CA key that others can read signs certificates
/// every host under test trusts. The file itself (no link), owned by the running user or
/// root; the mode is read from the open file, so it is the mode of what is read.
pub(super) fn read_private(config: &Path, key: &str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    let refuse = |problem: String| invalid(config, key, format!("{} {problem}", shown_path(path)));
    let (file, meta) = crate::store::open_secret(path).map_err(|err| refuse(err.to_string()))?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & OTHERS_ACCESS != 0 {
        return Err(refuse(format!(
            "is open to users other than its owner (mode {mode:04o}): run chmod 600 on it"
        )));
    }
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(file, MAX_CA_FILE_BYTES + 1),
        &mut bytes,
    )
    .map_err(|err| refuse(format!("cannot be read: {err}")))?;
    if bytes.len() as u64 > MAX_CA_FILE_BYTES {
        return Err(refuse(
            "is larger than 1 MiB: is it the right file?".to_owned(),
        ));
    }
    Ok(bytes)
}

/// A CA key (`acme`, `signing_zone`) the config left out: an error for `issuer: acme`,
/// which needs it (`fix` says what to write), fine for a test issuer, which needs no CA.
pub(super) fn left_out(
    path: &Path,
    issuer: &Issuer,
    key: &str,
    fix: &str,
) -> Result<(), ConfigError> {
    match issuer {
        Issuer::Acme => Err(invalid(
            path,
            key,
            format!(
                "is missing: {fix}; or set `issuer:` to a test issuer (`self-signed`, \
                 `local-ca`) for a gate without a CA"
            ),
        )),
        Issuer::Test(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn check(text: &str) -> Result<Issuer, ConfigError> {
        let value: Value = serde_yaml::from_str(text).expect("the test's YAML");
        check_issuer(Path::new("/etc/fleetcert/h.yaml"), Some(value))
    }

    /// A CA certificate and its key (mode 0600) in `dir`, and `issuer:` naming them with
    /// `options`: `(issuer, cert, key)`.
    fn local_ca(dir: &Path, options: &str) -> (String, PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
        let cert = params.self_signed(&key).expect("ca");
        let (cert_path, key_path) = (dir.join("ca.pem"), dir.join("ca.key"));
        std::fs::write(&cert_path, cert.pem()).expect("write cert");
        std::fs::write(&key_path, key.serialize_pem()).expect("write key");
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let issuer = format!(
            "{{local-ca: {{cert: {}, key: {}{options}}}}}",
            cert_path.display(),
            key_path.display()
        );
        (issuer, cert_path, key_path)
    }

    #[test]
    fn every_form_reads_with_its_defaults() {
        assert!(matches!(check("acme"), Ok(Issuer::Acme)));
        assert!(matches!(
            check_issuer(Path::new("h.yaml"), None),
            Ok(Issuer::Acme)
        ));
        let Ok(Issuer::Test(test)) = check("self-signed") else {
            panic!("self-signed");
        };
        assert_eq!(test.lifetime, DEFAULT_LIFETIME);
        assert!(!test.replace_ca_issued);
        let Ok(Issuer::Test(test)) =
            check("{self-signed: {lifetime: 2h, replace_ca_issued: true}}")
        else {
            panic!("self-signed with options");
        };
        assert_eq!(test.lifetime, Duration::from_secs(7200));
        assert!(test.replace_ca_issued);

        let dir = tempfile::tempdir().expect("tempdir");
        let (text, cert, key) = local_ca(dir.path(), ", lifetime: 1d");
        let issuer = check(&text).expect("local-ca");
        assert_eq!(issuer.kind(), crate::issuer::IssuerKind::LocalCa);
        assert_eq!(issuer.local_ca().map(|ca| ca.cert_path.clone()), Some(cert));
        // The key never reaches a log, not even through Debug.
        let shown = format!("{issuer:?}");
        let pem = std::fs::read_to_string(&key).expect("key");
        let body = pem.lines().nth(1).expect("a body line");
        assert!(
            !shown.contains(body) && !shown.contains("PRIVATE"),
            "{shown}"
        );
    }

    #[test]
    fn bad_issuers_are_named_with_the_fix() {
        for (text, needle) in [
            ("lets-encrypt", "is not an issuer"),
            ("local-ca", "needs the CA's files"),
            ("{acme: {directory: x}}", "takes no options"),
            ("{self-signed: {lifetme: 1d}}", "unknown field"),
            ("{self-signed: {lifetime: 0}}", "between 1s and 398d"),
            ("{self-signed: {lifetime: 400d}}", "between 1s and 398d"),
            ("{self-signed: {}, local-ca: {}}", "write `acme`"),
            ("{local-ca: {cert: /nonexistent/ca.pem}}", "missing field"),
            ("[self-signed]", "write `acme`"),
        ] {
            let err = check(text)
                .err()
                .unwrap_or_else(|| panic!("{text} accepted"))
                .to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn a_ca_key_others_may_read_is_refused_with_its_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (text, _, key) = local_ca(dir.path(), "");
        for mode in [0o640, 0o604, 0o620] {
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).expect("chmod");
            let err = check(&text).expect_err("refused").to_string();
            assert!(
                err.contains("`issuer.local-ca.key`")
                    && err.contains(&key.display().to_string())
                    && err.contains("chmod 600"),
                "{mode:o}: {err}"
            );
        }
    }
}
