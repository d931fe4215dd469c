//! `certs:` of the host config: each certificate is a list of names, or a map with options.
//!
//! ```yaml
//! certs:
//!   main: [web01.example.org, www.example.org]
//!   zookeeper:
//!     names: [zk01.example.org]
//!     pkcs12: {password_file: /etc/fleetcert/zk.pass, alias: zookeeper}
//!     probe: ["127.0.0.1:2281"]
//!     reload: [systemctl, restart, zookeeper]
//!     reload_timeout: 60s
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::pkcs12::{Pkcs12Spec, check_pkcs12};
use super::unique::UniqueMap;
use super::{ConfigDuration, ConfigError, invalid};
use crate::dns::DnsName;
use crate::shown::shown;

/// Longest certificate name: it becomes a directory and state file names.
const MAX_CERT_NAME: usize = 64;
/// How long a certificate's `reload` may run when `reload_timeout` is not given: long enough
/// for a Java service's restart.
const DEFAULT_RELOAD_TIMEOUT: Duration = Duration::from_secs(60);

/// One configured certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CertSpec {
    /// Identifiers, canonical, in the order written; the first one names acme.sh's files.
    pub(crate) names: Vec<DnsName>,
    /// Also write a PKCS#12 keystore beside the PEM files.
    pub(crate) pkcs12: Option<Pkcs12Spec>,
    /// `host:port` of the TLS servers that should serve this certificate.
    pub(crate) probe: Vec<String>,
    /// The service's reload, run after this set changed (`reload.rs`).
    pub(crate) reload: Option<ReloadSpec>,
}

/// `reload:` and `reload_timeout:` of one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReloadSpec {
    /// The argv, run without a shell; never empty.
    pub(crate) argv: Vec<String>,
    /// Its bound, and the bound of the wait for the probes to see the new certificate.
    pub(crate) timeout: Duration,
}

/// `certs:` as written.
pub(super) type RawCerts = UniqueMap<RawCert>;

/// The two forms of a certificate, for messages about either.
const CERT_FORMS: &str = "a list of names or a mapping with `names` (and `pkcs12`, `probe`, \
                          `reload`, `reload_timeout`)";

/// A certificate as written: a list of names, or the map form. Told apart by the YAML's own
/// shape (not by trying each form, as `#[serde(untagged)]` would), so that a typo inside the
/// map is named as an unknown key with its line and column rather than "matches no form".
#[derive(Debug)]
pub(super) struct RawCert(RawCertOptions);

impl<'de> Deserialize<'de> for RawCert {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CertVisitor;

        impl<'de> serde::de::Visitor<'de> for CertVisitor {
            type Value = RawCert;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(CERT_FORMS)
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<RawCert, A::Error> {
                let names = Vec::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))?;
                Ok(RawCert(RawCertOptions {
                    names,
                    pkcs12: None,
                    probe: Vec::new(),
                    reload: None,
                    reload_timeout: None,
                }))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<RawCert, A::Error> {
                RawCertOptions::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(RawCert)
            }
        }

        deserializer.deserialize_any(CertVisitor)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCertOptions {
    names: Vec<String>,
    pkcs12: Option<RawPkcs12>,
    #[serde(default)]
    probe: Vec<String>,
    reload: Option<Vec<serde_yaml::Value>>,
    reload_timeout: Option<ConfigDuration>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with `password_file` and `alias`"
)]
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
        certs.insert(name, check_options(path, &key, value.0)?);
    }
    Ok(certs)
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
    let reload = check_reload(path, key, raw.reload, raw.reload_timeout)?;
    Ok(CertSpec {
        names,
        pkcs12,
        probe: raw.probe,
        reload,
    })
}

/// `reload` is a non-empty argv of non-empty words; `reload_timeout` needs it and is more
/// than nothing.
fn check_reload(
    path: &Path,
    key: &str,
    argv: Option<Vec<serde_yaml::Value>>,
    timeout: Option<ConfigDuration>,
) -> Result<Option<ReloadSpec>, ConfigError> {
    let Some(argv) = argv else {
        return match timeout {
            Some(_) => Err(invalid(
                path,
                format!("{key}.reload_timeout"),
                "is given without `reload`: add the reload command, or remove it",
            )),
            None => Ok(None),
        };
    };
    // A word YAML reads as a number or a boolean (`[kill, -HUP, 1234]`) is meant as text.
    let argv: Option<Vec<String>> = argv
        .into_iter()
        .map(|word| match word {
            serde_yaml::Value::String(text) => Some(text),
            serde_yaml::Value::Number(number) => Some(number.to_string()),
            serde_yaml::Value::Bool(flag) => Some(flag.to_string()),
            _ => None,
        })
        .collect();
    let argv = argv.unwrap_or_default();
    if argv.first().is_none_or(String::is_empty) || argv.iter().any(|word| word.contains('\0')) {
        return Err(invalid(
            path,
            format!("{key}.reload"),
            "must be a command as a list of words, the program first (like [systemctl, \
             reload, nginx]); it runs without a shell",
        ));
    }
    let timeout = timeout.map_or(DEFAULT_RELOAD_TIMEOUT, |timeout| timeout.0);
    if timeout.is_zero() {
        return Err(invalid(
            path,
            format!("{key}.reload_timeout"),
            "is zero: give the reload time to run, like 60s",
        ));
    }
    Ok(Some(ReloadSpec { argv, timeout }))
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
        assert_eq!(zk.reload, None);
        let reloaded = check(
            "web: {names: [a.org], reload: [systemctl, reload, nginx], reload_timeout: 2m}\n\
             other: {names: [b.org], reload: [/bin/kill, -HUP, 1234]}\n",
        )
        .expect("valid");
        let web = reloaded["web"].reload.as_ref().expect("reload");
        assert_eq!(web.argv, ["systemctl", "reload", "nginx"]);
        assert_eq!(web.timeout, Duration::from_secs(120));
        let other = reloaded["other"].reload.as_ref().expect("reload");
        assert_eq!(other.timeout, DEFAULT_RELOAD_TIMEOUT);
        assert_eq!(other.argv, ["/bin/kill", "-HUP", "1234"]);
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
            ("main: {names: [a.org], reload: []}\n", "list of words"),
            ("main: {names: [a.org], reload: [[a]]}\n", "list of words"),
            (
                "main: {names: [a.org], reload: ''}\n",
                "main.reload: invalid type",
            ),
            ("main: 5\n", "a list of names or a mapping with `names`"),
            (
                "main: {names: [a.org], reload_timeout: 5s}\n",
                "without `reload`",
            ),
            (
                "main: {names: [a.org], reload: [true], reload_timeout: 0s}\n",
                "is zero",
            ),
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
