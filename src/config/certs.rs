//! `certs:` of the host config: each certificate is a list of names, or a map with options.
//!
//! ```yaml
//! certs:
//!   main: [web01.example.org, www.example.org]
//!   zookeeper:
//!     names: [zk01.example.org]
//!     pkcs12: {password_file: /etc/fleetcert/zk.pass, alias: zookeeper}
//!     probe: ["127.0.0.1:2281"]
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::pkcs12::{Pkcs12Spec, check_pkcs12};
use super::unique::UniqueMap;
use super::{ConfigError, invalid};
use crate::dns::DnsName;
use crate::shown::shown;

/// Longest certificate name: it becomes a directory and state file names.
const MAX_CERT_NAME: usize = 64;

/// One configured certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CertSpec {
    /// Identifiers, canonical, in the order written; the first one names acme.sh's files.
    pub(crate) names: Vec<DnsName>,
    /// Also write a PKCS#12 keystore beside the PEM files.
    pub(crate) pkcs12: Option<Pkcs12Spec>,
    /// `host:port` of the TLS servers that should serve this certificate.
    pub(crate) probe: Vec<String>,
}

/// A certificate as written: a list of names, or the map form (read in a second step, so a
/// typo inside the map is named as an unknown key rather than "matches no form").
pub(super) type RawCerts = UniqueMap<serde_yaml::Value>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCertOptions {
    names: Vec<String>,
    pkcs12: Option<RawPkcs12>,
    #[serde(default)]
    probe: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPkcs12 {
    password_file: PathBuf,
    alias: Option<String>,
}

/// Checks every certificate of `certs:`.
pub(super) fn check_certs(
    path: &Path,
    raw: RawCerts,
) -> Result<BTreeMap<String, CertSpec>, ConfigError> {
    let mut certs = BTreeMap::new();
    for (name, value) in raw.0 {
        let key = format!("certs.{name}");
        let safe = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if name.is_empty() || name.starts_with('.') || !name.chars().all(safe) {
            return Err(invalid(
                path,
                key,
                "is not a usable certificate name: use letters, digits, `-`, `_` and `.`, not \
                 starting with `.`",
            ));
        }
        if name.len() > MAX_CERT_NAME {
            return Err(invalid(
                path,
                key,
                format!("is a certificate name longer than {MAX_CERT_NAME} characters: shorten it"),
            ));
        }
        let options = match value {
            serde_yaml::Value::Sequence(_) => RawCertOptions {
                names: from_value(path, &key, value)?,
                pkcs12: None,
                probe: Vec::new(),
            },
            value => from_value(path, &key, value)?,
        };
        certs.insert(name, check_options(path, &key, options)?);
    }
    Ok(certs)
}

fn from_value<T: serde::de::DeserializeOwned>(
    path: &Path,
    key: &str,
    value: serde_yaml::Value,
) -> Result<T, ConfigError> {
    serde_yaml::from_value(value).map_err(|err| {
        invalid(
            path,
            key,
            format!(
                "must be a list of names or a map with `names` (and `pkcs12`, `probe`): {}",
                crate::shown::parser_message(&err.to_string(), 200)
            ),
        )
    })
}

fn check_options(path: &Path, key: &str, raw: RawCertOptions) -> Result<CertSpec, ConfigError> {
    if raw.names.is_empty() {
        return Err(invalid(path, key, "lists no names: give at least one"));
    }
    let mut names: Vec<DnsName> = Vec::with_capacity(raw.names.len());
    for text in &raw.names {
        let name = DnsName::parse_identifier(text).map_err(|rule| {
            invalid(
                path,
                key,
                format!("has the name {} that {rule}", shown(text)),
            )
        })?;
        if names.contains(&name) {
            return Err(invalid(path, key, format!("lists `{name}` twice")));
        }
        // The CA asks for `_acme-challenge.<name>`: a name that leaves no room for it fits
        // no order, and is better refused now than after one was made.
        if name.base().child("_acme-challenge").is_err() {
            return Err(invalid(
                path,
                key,
                format!(
                    "has the name {name}, whose `_acme-challenge.` name would be longer than \
                     the 253 characters of a DNS name: use a shorter name"
                ),
            ));
        }
        names.push(name);
    }
    let pkcs12 = raw
        .pkcs12
        .map(|raw| check_pkcs12(path, key, raw.password_file, raw.alias))
        .transpose()?;
    for target in &raw.probe {
        if !is_probe_target(target) {
            return Err(invalid(
                path,
                format!("{key}.probe"),
                format!(
                    "has {}, which is not host:port (like 127.0.0.1:443)",
                    shown(target)
                ),
            ));
        }
    }
    Ok(CertSpec {
        names,
        pkcs12,
        probe: raw.probe,
    })
}

/// `name:port`, `ip:port` or `[v6]:port`.
fn is_probe_target(text: &str) -> bool {
    if text.parse::<std::net::SocketAddr>().is_ok() {
        return true;
    }
    text.rsplit_once(':').is_some_and(|(host, port)| {
        port.parse::<u16>().is_ok_and(|port| port > 0) && DnsName::parse(host).is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<BTreeMap<String, CertSpec>, String> {
        let raw: RawCerts = serde_yaml::from_str(text).map_err(|err| err.to_string())?;
        check_certs(Path::new("/etc/fleetcert/h.yaml"), raw).map_err(|err| err.to_string())
    }

    #[test]
    fn both_forms_read_to_the_same_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pass = dir.path().join("zk.pass");
        std::fs::write(&pass, "zk-secret\n").expect("write");
        std::fs::set_permissions(&pass, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("chmod");
        let certs = check(&format!(
            "main: [Web01.example.org, '*.example.org']\n\
             zk: {{names: [zk01.example.org], pkcs12: {{password_file: {}}}, probe: ['127.0.0.1:2281', 'zk01.example.org:2281']}}\n",
            pass.display()
        ))
        .expect("valid");
        assert_eq!(certs["main"].names[0].as_str(), "web01.example.org");
        let zk = &certs["zk"];
        assert_eq!(
            zk.pkcs12.as_ref().map(|p| p.password_file.clone()),
            Some(pass.clone())
        );
        assert_eq!(
            zk.pkcs12.as_ref().map(|p| p.alias.as_str()),
            Some("fleetcert")
        );
        assert_eq!(zk.probe.len(), 2);
    }

    #[test]
    fn bad_certificates_are_named() {
        for (text, needle) in [
            ("main: []\n", "lists no names"),
            ("main: [a.org, A.org]\n", "twice"),
            ("main: [192.0.2.1]\n", "IP address"),
            ("main: {names: [a.org], pkcs: {}}\n", "unknown field"),
            ("main: {names: [a.org], probe: ['a.org']}\n", "host:port"),
            ("'../x': [a.org]\n", "not a usable certificate name"),
            ("main: [a.org]\nmain: [b.org]\n", "given twice"),
        ] {
            let err = check(text).expect_err(text);
            assert!(err.contains(needle), "{text}: {err}");
        }
        // 242 characters: a name, but `_acme-challenge.` does not fit in front of it.
        let label = "b".repeat(63);
        let no_room = format!("main: [{label}.{label}.{label}.{}]\n", "c".repeat(50));
        let err = check(&no_room).expect_err("no room");
        assert!(
            err.contains("`certs.main`") && err.contains("_acme-challenge"),
            "{err}"
        );
        let long = format!("{}: [a.org]\n", "c".repeat(65));
        assert!(check(&long).expect_err("long").contains("longer than 64"));
    }
}
