//! Legacy hosts: one host's issued material, read back and checked, as a hiera YAML file.
//!
//! The bastion requests and finalizes on behalf of a legacy host, with a config of that
//! host's own (`host:` is the legacy host, `cert_dir` and `state_dir` are its own). This
//! module reads what that config installed (each certificate's files as one set), checks that
//! every file parses and that each key belongs to its certificate, and renders all of it as
//! one YAML file under fixed keys (docs/hiera.md). Everything is read and checked before
//! anything is written, so a missing certificate leaves no file, not even half of one. No key
//! material reaches an error or a log line. `commands::hiera` writes the file.

mod yaml;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::cert::{CertPaths, Inspection, Keystore, PrivateKey, Secret, inspect_chain};
use crate::config::{CertSpec, HostConfig};
use crate::dns::DnsName;
use crate::shown::path as shown_path;
use crate::store::StoreError;

/// The one top-level key of the file. Never renamed: Puppet code looks it up.
const TOP_KEY: &str = "fleetcert_certs";
/// The keystore's key in a certificate's hash (base64 of `keystore.p12`). Never renamed.
const KEYSTORE_KEY: &str = "keystore_base64";

/// The hiera export failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HieraError {
    /// `--host` is not the host the config issues for.
    #[error(
        "host {wanted}: config {config} issues for `{configured}`, not for this host: pass the \
         legacy host's own config (one config per legacy host, with `host: {wanted}`)"
    )]
    WrongHost {
        wanted: String,
        configured: DnsName,
        config: String,
    },
    /// A certificate name with a dot, which Hiera would read as a path into the hash.
    #[error(
        "host {host}: certificate name `{cert}` contains a dot, which Hiera reads as a key \
         separator: rename it under `certs:` in {config} (e.g. `{}`)",
        cert.replace('.', "_")
    )]
    DottedName {
        host: DnsName,
        cert: String,
        config: String,
    },
    /// A certificate the config lists has not been issued on this host.
    #[error(
        "host {host}: certificate `{cert}` is not issued yet ({} is missing): run request and \
         finalize for this host first",
        shown_path(path)
    )]
    Missing {
        host: DnsName,
        cert: String,
        path: PathBuf,
    },
    /// A file of a certificate exists but cannot be read.
    #[error("host {host}: certificate `{cert}`: {source}")]
    Unreadable {
        host: DnsName,
        cert: String,
        #[source]
        source: StoreError,
    },
    /// A file of a certificate is not what it should be.
    #[error(
        "host {host}: certificate `{cert}`: {} {problem}: run finalize for this host again",
        shown_path(path)
    )]
    Unusable {
        host: DnsName,
        cert: String,
        path: PathBuf,
        problem: String,
    },
    /// The key on disk does not belong to the certificate on disk.
    #[error(
        "host {host}: certificate `{cert}`: the private key {} does not match the certificate \
         {}: run finalize for this host again",
        shown_path(key),
        shown_path(cert_path)
    )]
    KeyMismatch {
        host: DnsName,
        cert: String,
        key: PathBuf,
        cert_path: PathBuf,
    },
    /// The written YAML would not read back as what was exported: a bug in fleetcert.
    #[error(
        "host {host}: the hiera YAML for certificate `{cert}` does not read back unchanged; \
         nothing was written (a bug in fleetcert: please report it)"
    )]
    RoundTrip { host: DnsName, cert: String },
}

impl HieraError {
    /// Whether the operator's input is at fault (exit 2): nothing was written, and running
    /// request/finalize or fixing the config is the way out.
    pub(crate) fn is_usage(&self) -> bool {
        match self {
            Self::WrongHost { .. }
            | Self::DottedName { .. }
            | Self::Missing { .. }
            | Self::Unusable { .. }
            | Self::KeyMismatch { .. } => true,
            Self::Unreadable { source, .. } => source.is_refusal(),
            Self::RoundTrip { .. } => false,
        }
    }
}

/// One certificate as it is exported. Holds the private key, so it is deliberately not
/// `Debug`: it must never reach a log.
pub(crate) struct Exported {
    pub(crate) name: String,
    /// DNS names of the certificate itself, sorted.
    names: Vec<String>,
    pub(crate) not_after: String,
    cert: String,
    chain: String,
    full_chain: String,
    key: String,
    /// The PKCS#12 keystore, base64, for a certificate with `pkcs12:`.
    keystore: Option<String>,
}

/// `--host` must name the host the config issues for: exporting another host's keys into
/// this host's file is the one mistake that must not happen quietly.
pub(crate) fn check_host(config: &HostConfig, wanted: &str) -> Result<(), HieraError> {
    if DnsName::parse(wanted).is_ok_and(|name| name == config.host) {
        return Ok(());
    }
    Err(HieraError::WrongHost {
        wanted: crate::shown::bare(wanted, crate::shown::MAX_VALUE),
        configured: config.host.clone(),
        config: shown_path(&config.path),
    })
}

/// Reads and checks every certificate of the config, in name order; the first problem ends
/// the export before anything is written.
pub(crate) fn read_all(config: &HostConfig) -> Result<Vec<Exported>, HieraError> {
    // Names first: a dotted name is a config problem, better reported before file problems.
    if let Some(name) = config.certs.keys().find(|name| name.contains('.')) {
        return Err(HieraError::DottedName {
            host: config.host.clone(),
            cert: name.clone(),
            config: shown_path(&config.path),
        });
    }
    config
        .certs
        .iter()
        .map(|(name, spec)| {
            let material = Material::read(config, name, spec)?;
            material.check(config, name, spec)
        })
        .collect()
}

/// One certificate's four files (and its keystore) as one set, still unchecked.
struct Material {
    paths: CertPaths,
    cert: String,
    chain: String,
    full_chain: String,
    key: String,
    keystore: Option<Secret>,
}

impl Material {
    /// Reads the files of one certificate, all from one version of its directory.
    fn read(config: &HostConfig, name: &str, spec: &CertSpec) -> Result<Self, HieraError> {
        let host = &config.host;
        let (names, dir) = config.files_of(name, spec);
        let paths = names.paths(&config.cert_dir);
        let found = dir
            .read_set(&names)
            .map_err(|source| HieraError::Unreadable {
                host: host.clone(),
                cert: name.to_owned(),
                source,
            })?;
        let missing = |path: &PathBuf| HieraError::Missing {
            host: host.clone(),
            cert: name.to_owned(),
            path: path.clone(),
        };
        // The certificate first, so that "not issued yet" names the certificate file.
        let files = [
            (found.cert, &paths.cert),
            (found.chain, &paths.chain),
            (found.fullchain, &paths.fullchain),
            (found.key, &paths.key),
        ];
        let mut texts = Vec::with_capacity(files.len());
        for (file, path) in files {
            let Some(Secret(bytes)) = file else {
                return Err(missing(path));
            };
            // Not the bytes in the message: this may be the private key.
            let text = String::from_utf8(bytes).map_err(|_| HieraError::Unusable {
                host: host.clone(),
                cert: name.to_owned(),
                path: path.clone(),
                problem: "is not a text (PEM) file".to_owned(),
            })?;
            texts.push(text);
        }
        let keystore = match (&paths.keystore, found.keystore) {
            (Some(path), None) => return Err(missing(path)),
            (_, keystore) => keystore,
        };
        let [cert, chain, full_chain, key]: [String; 4] =
            texts.try_into().map_err(|_| HieraError::RoundTrip {
                host: host.clone(),
                cert: name.to_owned(),
            })?;
        Ok(Self {
            paths,
            cert,
            chain,
            full_chain,
            key,
            keystore,
        })
    }

    /// Checks that the files belong together and to the key.
    fn check(
        self,
        config: &HostConfig,
        name: &str,
        spec: &CertSpec,
    ) -> Result<Exported, HieraError> {
        let host = &config.host;
        let unusable = |path: &Path, problem: String| HieraError::Unusable {
            host: host.clone(),
            cert: name.to_owned(),
            path: path.to_owned(),
            problem,
        };
        let inspect = |path: &Path, pem: &str| -> Result<Inspection, HieraError> {
            inspect_chain(pem.as_bytes()).map_err(|err| unusable(path, err.to_string()))
        };
        let paths = &self.paths;
        let leaf = inspect(&paths.cert, &self.cert)?;
        inspect(&paths.chain, &self.chain)?;
        let full_leaf = inspect(&paths.fullchain, &self.full_chain)?;
        // Files copied in by hand can disagree: Puppet must not be handed a mixed set.
        if full_leaf.serial != leaf.serial || full_leaf.public_key_info != leaf.public_key_info {
            return Err(unusable(
                &paths.fullchain,
                format!(
                    "does not start with the certificate in {}",
                    shown_path(&paths.cert)
                ),
            ));
        }
        let key_type = leaf.key_type.ok_or_else(|| {
            unusable(
                &paths.cert,
                "has a key algorithm fleetcert does not make".to_owned(),
            )
        })?;
        let private = PrivateKey::from_pem(&self.key, key_type)
            .map_err(|err| unusable(&paths.key, err.to_string()))?;
        if private.public_key_info() != leaf.public_key_info {
            return Err(HieraError::KeyMismatch {
                host: host.clone(),
                cert: name.to_owned(),
                key: paths.key.clone(),
                cert_path: paths.cert.clone(),
            });
        }
        if leaf.not_after <= OffsetDateTime::now_utc() {
            tracing::warn!(%host, cert = name, "exporting an expired certificate");
        }
        let mut wanted: Vec<String> = spec.names.iter().map(ToString::to_string).collect();
        wanted.sort();
        if wanted != leaf.names {
            // The config changed and the next request will reissue; until then Puppet gets
            // what exists, which is still better than nothing.
            tracing::warn!(%host, cert = name, "the certificate's names differ from the config");
        }
        let not_after = leaf.not_after.format(&Rfc3339).map_err(|err| {
            unusable(
                &paths.cert,
                format!("has an unprintable expiry date: {err}"),
            )
        })?;
        let keystore = self.keystore_base64(spec, &unusable)?;
        tracing::debug!(%host, cert = name, not_after = %not_after, "certificate read");
        Ok(Exported {
            name: name.to_owned(),
            names: leaf.names,
            not_after,
            cert: self.cert,
            chain: self.chain,
            full_chain: self.full_chain,
            key: self.key,
            keystore,
        })
    }

    /// The keystore, base64, once it opens with the configured password and alias and holds
    /// this certificate's chain.
    fn keystore_base64(
        &self,
        spec: &CertSpec,
        unusable: &impl Fn(&Path, String) -> HieraError,
    ) -> Result<Option<String>, HieraError> {
        use base64::Engine as _;
        let (Some(keystore), Some(pkcs12), Some(path)) =
            (&self.keystore, &spec.pkcs12, &self.paths.keystore)
        else {
            return Ok(None);
        };
        if !Keystore::fits(
            &keystore.0,
            &self.full_chain,
            &pkcs12.alias,
            &pkcs12.password,
        ) {
            return Err(unusable(
                path,
                format!(
                    "does not open with the password in {} and alias `{}`, or holds another \
                     certificate",
                    shown_path(&pkcs12.password_file),
                    crate::shown::bare(&pkcs12.alias, crate::shown::MAX_VALUE)
                ),
            ));
        }
        Ok(Some(
            base64::engine::general_purpose::STANDARD.encode(&keystore.0),
        ))
    }
}

/// The whole file. Only the inputs decide the bytes (no date, no run id), and certificates
/// come in name order, so an unchanged certificate set gives an identical file.
pub(crate) fn render(host: &DnsName, certs: &[Exported]) -> String {
    let mut out = String::new();
    out.push_str("---\n");
    out.push_str("# Written by `fleetcert hiera` for ");
    // The host is a checked DNS name: nothing in it can end the comment.
    out.push_str(host.as_str());
    out.push_str(". Do not edit: the next export replaces it.\n");
    out.push_str("# Keys: docs/hiera.md. Holds private keys: keep it 0600.\n");
    if certs.is_empty() {
        out.push_str(TOP_KEY);
        out.push_str(": {}\n");
        return out;
    }
    out.push_str(TOP_KEY);
    out.push_str(":\n");
    for cert in certs {
        // Quoted, so that a name like `yes` or `1e3` stays a string in Puppet's YAML 1.1.
        out.push_str("  ");
        out.push_str(&yaml::quoted(&cert.name));
        out.push_str(":\n");
        yaml::list_entry(&mut out, 2, "names", &cert.names);
        yaml::string_entry(&mut out, 2, "not_after", &cert.not_after);
        yaml::text_entry(&mut out, 2, "cert_contents", &cert.cert);
        yaml::text_entry(&mut out, 2, "chain_contents", &cert.chain);
        yaml::text_entry(&mut out, 2, "full_chain_contents", &cert.full_chain);
        yaml::text_entry(&mut out, 2, "key_contents", &cert.key);
        if let Some(keystore) = &cert.keystore {
            yaml::string_entry(&mut out, 2, KEYSTORE_KEY, keystore);
        }
    }
    out
}

/// The file as a YAML parser reads it back.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ParsedFile {
    fleetcert_certs: BTreeMap<String, ParsedCert>,
}

#[derive(Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct ParsedCert {
    names: Vec<String>,
    not_after: String,
    cert_contents: String,
    chain_contents: String,
    full_chain_contents: String,
    key_contents: String,
    #[serde(default)]
    keystore_base64: Option<String>,
}

/// Parses the rendered file back and demands exactly the exported strings, so a rendering
/// mistake fails the command instead of handing Puppet a changed PEM.
pub(crate) fn verify(host: &DnsName, text: &str, certs: &[Exported]) -> Result<(), HieraError> {
    let fail = |cert: &str| HieraError::RoundTrip {
        host: host.clone(),
        cert: cert.to_owned(),
    };
    let all = || {
        certs
            .first()
            .map_or_else(|| TOP_KEY.to_owned(), |cert| cert.name.clone())
    };
    // The parser's error is not passed on: it may quote a line of the key.
    let parsed: ParsedFile = serde_yaml::from_str(text).map_err(|_| fail(&all()))?;
    if parsed.fleetcert_certs.len() != certs.len() {
        return Err(fail(&all()));
    }
    for cert in certs {
        let expected = ParsedCert {
            names: cert.names.clone(),
            not_after: cert.not_after.clone(),
            cert_contents: cert.cert.clone(),
            chain_contents: cert.chain.clone(),
            full_chain_contents: cert.full_chain.clone(),
            key_contents: cert.key.clone(),
            keystore_base64: cert.keystore.clone(),
        };
        if parsed.fleetcert_certs.get(&cert.name) != Some(&expected) {
            return Err(fail(&cert.name));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> DnsName {
        DnsName::parse("h.example.org").expect("host")
    }

    fn exported(name: &str, pem_end: &str) -> Exported {
        let pem =
            format!("-----BEGIN CERTIFICATE-----\nMIIB{name}\n-----END CERTIFICATE-----{pem_end}");
        Exported {
            name: name.to_owned(),
            names: vec!["*.a.example.org".to_owned(), "a.example.org".to_owned()],
            not_after: "2027-02-20T00:00:00Z".to_owned(),
            cert: pem.clone(),
            chain: pem.clone(),
            full_chain: format!("{pem}{pem}"),
            key: "-----BEGIN PRIVATE KEY-----\nMIG2\n-----END PRIVATE KEY-----\n".to_owned(),
            keystore: None,
        }
    }

    #[test]
    fn rendered_file_reads_back_exactly() {
        let certs = vec![
            exported("main", "\n"),
            exported("no-newline", ""),
            exported("yes", "\n\n"),
        ];
        let text = render(&host(), &certs);
        verify(&host(), &text, &certs).expect("round trip");
        assert!(text.contains("  \"yes\":\n"), "{text}");
        assert!(
            text.contains("    names:\n      - \"*.a.example.org\"\n"),
            "{text}"
        );
        assert!(
            text.contains("    not_after: \"2027-02-20T00:00:00Z\"\n"),
            "{text}"
        );
        assert!(
            text.contains("    cert_contents: |\n      -----BEGIN CERTIFICATE-----\n"),
            "{text}"
        );
    }

    #[test]
    fn a_keystore_is_one_base64_line_under_its_fixed_key() {
        let mut with = exported("zk", "\n");
        with.keystore = Some("MIIK+/aB==".to_owned());
        let certs = vec![exported("main", "\n"), with];
        let text = render(&host(), &certs);
        verify(&host(), &text, &certs).expect("round trip");
        assert!(
            text.contains("    keystore_base64: \"MIIK+/aB==\"\n"),
            "{text}"
        );
        assert_eq!(text.matches("keystore_base64").count(), 1, "{text}");
    }

    #[test]
    fn identical_input_gives_identical_bytes() {
        let certs = vec![exported("main", "\n")];
        assert_eq!(render(&host(), &certs), render(&host(), &certs));
    }

    #[test]
    fn no_key_of_the_file_contains_a_dot() {
        // Hiera reads `a.b` in a lookup key as a path: every key must be dot-free.
        fn walk(value: &serde_yaml::Value, keys: &mut Vec<String>) {
            if let serde_yaml::Value::Mapping(map) = value {
                for (key, inner) in map {
                    keys.push(key.as_str().expect("string key").to_owned());
                    walk(inner, keys);
                }
            }
        }
        let text = render(&host(), &[exported("main", "\n")]);
        let value: serde_yaml::Value = serde_yaml::from_str(&text).expect("parse");
        let mut keys = Vec::new();
        walk(&value, &mut keys);
        assert_eq!(keys.len(), 8, "{keys:?}");
        assert!(keys.iter().all(|key| !key.contains('.')), "{keys:?}");
    }

    #[test]
    fn empty_certificate_set_is_an_empty_hash() {
        let text = render(&host(), &[]);
        verify(&host(), &text, &[]).expect("round trip");
        assert!(text.ends_with("fleetcert_certs: {}\n"), "{text}");
    }

    #[test]
    fn tampered_text_is_caught() {
        let certs = vec![exported("main", "\n")];
        let text = render(&host(), &certs).replace("MIIBmain", "MIIBmaim");
        assert!(matches!(
            verify(&host(), &text, &certs),
            Err(HieraError::RoundTrip { .. })
        ));
    }
}
