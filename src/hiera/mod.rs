//! `fleetcert hiera`: one legacy host's issued material as a hiera YAML file for Puppet.
//!
//! The bastion requests and finalizes on behalf of a legacy host, with a config of that
//! host's own (`host:` is the legacy host, `cert_dir` and `state_dir` are its own). This
//! command reads what that config installed, checks that every file parses and that each key
//! belongs to its certificate, and writes all of it as one YAML file under fixed keys
//! (docs/hiera.md). Everything is read and checked before anything is written, so a missing
//! certificate leaves no file, not even half of one. The file holds private keys: it is
//! written 0600, atomically, and only when its bytes change; no key material reaches the
//! report or a log line.

mod yaml;

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::cert::{Inspection, PrivateKey, inspect_chain};
use crate::cli::HieraArgs;
use crate::commands::print_json;
use crate::config::HostConfig;
use crate::error::{Error, Outcome};
use crate::names::canonical_name;
use crate::store::{self, Access, StoreError};

/// The one top-level key of the file. Never renamed: Puppet code looks it up.
pub(crate) const TOP_KEY: &str = "fleetcert_certs";

/// The hiera export failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum HieraError {
    /// `--host` is not the host the config issues for.
    #[error(
        "host {wanted}: config {} issues for `{configured}`, not for this host: pass the legacy \
         host's own config (one config per legacy host, with `host: {wanted}`)",
        config.display()
    )]
    WrongHost {
        wanted: String,
        configured: String,
        config: PathBuf,
    },
    /// A certificate name with a dot, which Hiera would read as a path into the hash.
    #[error(
        "host {host}: certificate name `{cert}` contains a dot, which Hiera reads as a key \
         separator: rename it under `certs:` in {} (e.g. `{}`)",
        config.display(), cert.replace('.', "_")
    )]
    DottedName {
        host: String,
        cert: String,
        config: PathBuf,
    },
    /// A certificate the config lists has not been issued on this host.
    #[error(
        "host {host}: certificate `{cert}` is not issued yet ({} is missing): run request and \
         finalize for this host first",
        path.display()
    )]
    Missing {
        host: String,
        cert: String,
        path: PathBuf,
    },
    /// A file of a certificate exists but cannot be read.
    #[error("host {host}: certificate `{cert}`: cannot read {}: {source}", path.display())]
    Unreadable {
        host: String,
        cert: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A file of a certificate is not what it should be.
    #[error(
        "host {host}: certificate `{cert}`: {} {problem}: run finalize for this host again",
        path.display()
    )]
    Unusable {
        host: String,
        cert: String,
        path: PathBuf,
        problem: String,
    },
    /// The key on disk does not belong to the certificate on disk.
    #[error(
        "host {host}: certificate `{cert}`: the private key {} does not match the certificate \
         {}: run finalize for this host again",
        key.display(), cert_path.display()
    )]
    KeyMismatch {
        host: String,
        cert: String,
        key: PathBuf,
        cert_path: PathBuf,
    },
    /// The written YAML would not read back as what was exported: a bug in fleetcert.
    #[error(
        "host {host}: the hiera YAML for certificate `{cert}` does not read back unchanged; \
         nothing was written (a bug in fleetcert: please report it)"
    )]
    RoundTrip { host: String, cert: String },
}

impl HieraError {
    /// Whether the operator's input is at fault (exit 2): nothing was written, and running
    /// request/finalize or fixing the config is the way out.
    pub(crate) fn is_input(&self) -> bool {
        matches!(
            self,
            Self::WrongHost { .. }
                | Self::DottedName { .. }
                | Self::Missing { .. }
                | Self::Unusable { .. }
                | Self::KeyMismatch { .. }
        )
    }
}

/// One certificate as it is exported. Holds the private key, so it is deliberately not
/// `Debug`: it must never reach a log.
struct Exported {
    name: String,
    /// DNS names of the certificate itself, sorted.
    names: Vec<String>,
    not_after: String,
    cert: String,
    chain: String,
    full_chain: String,
    key: String,
}

/// The JSON report: what was exported, never the material itself.
#[derive(Debug, Serialize)]
struct Report<'a> {
    host: &'a str,
    path: &'a Path,
    changed: bool,
    certs: Vec<CertReport<'a>>,
}

#[derive(Debug, Serialize)]
struct CertReport<'a> {
    name: &'a str,
    not_after: &'a str,
}

/// Runs `fleetcert hiera`.
pub(crate) fn run(args: HieraArgs) -> Result<Outcome, Error> {
    let config = HostConfig::load(&args.config)?;
    check_host(&config, &args.host)?;
    let exported = read_all(&config)?;
    let text = render(&config.host, &exported);
    verify(&config.host, &text, &exported)?;
    let changed = differs(&args.out, text.as_bytes())?;
    if changed && !args.dry_run {
        store::write_atomic(&args.out, text.as_bytes(), Access::secret())?;
    }
    tracing::info!(
        host = %config.host,
        path = %args.out.display(),
        changed,
        dry_run = args.dry_run,
        certs = exported.len(),
        "hiera export"
    );
    print_json(&Report {
        host: &config.host,
        path: &args.out,
        changed,
        certs: exported
            .iter()
            .map(|cert| CertReport {
                name: &cert.name,
                not_after: &cert.not_after,
            })
            .collect(),
    })?;
    Ok(Outcome::Success)
}

/// `--host` must name the host the config issues for: exporting another host's keys into
/// this host's file is the one mistake that must not happen quietly.
fn check_host(config: &HostConfig, wanted: &str) -> Result<(), HieraError> {
    let canonical = canonical_name(wanted, false).unwrap_or_else(|_| wanted.to_owned());
    if canonical == config.host {
        return Ok(());
    }
    Err(HieraError::WrongHost {
        wanted: wanted.to_owned(),
        configured: config.host.clone(),
        config: config.path.clone(),
    })
}

/// Reads and checks every certificate of the config, in name order; the first problem ends
/// the export before anything is written.
fn read_all(config: &HostConfig) -> Result<Vec<Exported>, HieraError> {
    // Names first: a dotted name is a config problem, better reported before file problems.
    if let Some(name) = config.certs.keys().find(|name| name.contains('.')) {
        return Err(HieraError::DottedName {
            host: config.host.clone(),
            cert: name.clone(),
            config: config.path.clone(),
        });
    }
    config
        .certs
        .iter()
        .map(|(name, identifiers)| read_one(config, name, identifiers))
        .collect()
}

/// Reads the four files of one certificate and checks that they belong together.
fn read_one(
    config: &HostConfig,
    name: &str,
    identifiers: &[String],
) -> Result<Exported, HieraError> {
    let host = &config.host;
    let first = identifiers.first().map_or(name, String::as_str);
    let paths = config.layout.paths(&config.cert_dir, name, first);
    let unusable = |path: &Path, problem: String| HieraError::Unusable {
        host: host.clone(),
        cert: name.to_owned(),
        path: path.to_owned(),
        problem,
    };
    let read = |path: &Path| -> Result<String, HieraError> {
        let bytes = fs::read(path).map_err(|source| {
            if source.kind() == io::ErrorKind::NotFound {
                HieraError::Missing {
                    host: host.clone(),
                    cert: name.to_owned(),
                    path: path.to_owned(),
                }
            } else {
                HieraError::Unreadable {
                    host: host.clone(),
                    cert: name.to_owned(),
                    path: path.to_owned(),
                    source,
                }
            }
        })?;
        // Not the bytes in the message: this may be the private key.
        String::from_utf8(bytes).map_err(|_| unusable(path, "is not a text (PEM) file".to_owned()))
    };
    // The certificate first, so that "not issued yet" names cert.pem, the file finalize
    // writes last.
    let cert = read(&paths.cert)?;
    let chain = read(&paths.chain)?;
    let full_chain = read(&paths.fullchain)?;
    let key = read(&paths.key)?;

    let inspect = |path: &Path, pem: &str| -> Result<Inspection, HieraError> {
        inspect_chain(pem.as_bytes()).map_err(|err| unusable(path, err.to_string()))
    };
    let leaf = inspect(&paths.cert, &cert)?;
    inspect(&paths.chain, &chain)?;
    let full_leaf = inspect(&paths.fullchain, &full_chain)?;
    // Finalize replaces the files one by one; a run cut short in between leaves a fullchain
    // of another certificate, which Puppet must not be handed.
    if full_leaf.serial != leaf.serial || full_leaf.public_key_info != leaf.public_key_info {
        return Err(unusable(
            &paths.fullchain,
            format!(
                "does not start with the certificate in {}",
                paths.cert.display()
            ),
        ));
    }
    let key_type = leaf.key_type.ok_or_else(|| {
        unusable(
            &paths.cert,
            "has a key algorithm fleetcert does not make".to_owned(),
        )
    })?;
    let private = PrivateKey::from_pem(&key, key_type).map_err(|_| {
        // The parser's message is not repeated: it could quote part of the key.
        unusable(
            &paths.key,
            format!("is not a {key_type} private key in PKCS#8 PEM"),
        )
    })?;
    if private.public_key_info() != leaf.public_key_info {
        return Err(HieraError::KeyMismatch {
            host: host.clone(),
            cert: name.to_owned(),
            key: paths.key.clone(),
            cert_path: paths.cert.clone(),
        });
    }
    let now = OffsetDateTime::now_utc();
    if leaf.not_after <= now {
        tracing::warn!(host = %host, cert = name, "exporting an expired certificate");
    }
    let mut wanted = identifiers.to_vec();
    wanted.sort();
    if wanted != leaf.names {
        // The config changed and the next request will reissue; until then Puppet gets what
        // exists, which is still better than nothing.
        tracing::warn!(host = %host, cert = name, "the certificate's names differ from the config");
    }
    let not_after = leaf.not_after.format(&Rfc3339).map_err(|err| {
        unusable(
            &paths.cert,
            format!("has an unprintable expiry date: {err}"),
        )
    })?;
    tracing::debug!(host = %host, cert = name, not_after = %not_after, "certificate read");
    Ok(Exported {
        name: name.to_owned(),
        names: leaf.names,
        not_after,
        cert,
        chain,
        full_chain,
        key,
    })
}

/// The whole file. Only the inputs decide the bytes (no date, no run id), and certificates
/// come in name order, so an unchanged certificate set gives an identical file.
fn render(host: &str, certs: &[Exported]) -> String {
    let mut out = String::new();
    out.push_str("---\n");
    out.push_str("# Written by `fleetcert hiera` for ");
    // A comment cannot escape anything; the host is a checked DNS name, but make sure.
    out.push_str(&host.replace(|c: char| !c.is_ascii_graphic(), "?"));
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
}

/// Parses the rendered file back and demands exactly the exported strings, so a rendering
/// mistake fails the command instead of handing Puppet a changed PEM.
fn verify(host: &str, text: &str, certs: &[Exported]) -> Result<(), HieraError> {
    let fail = |cert: &str| HieraError::RoundTrip {
        host: host.to_owned(),
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
        };
        if parsed.fleetcert_certs.get(&cert.name) != Some(&expected) {
            return Err(fail(&cert.name));
        }
    }
    Ok(())
}

/// Whether `path` must be (re)written: it is missing, holds other bytes, or has a mode other
/// than 0600 (a file with private keys left readable is fixed, not kept).
fn differs(path: &Path, contents: &[u8]) -> Result<bool, StoreError> {
    let Some(old) = store::read_optional(path)? else {
        return Ok(true);
    };
    if old != contents {
        return Ok(true);
    }
    let mode = fs::metadata(path)
        .map_err(|err| StoreError::new("cannot inspect", path, err))?
        .permissions()
        .mode();
    Ok(mode & 0o7777 != Access::secret().mode)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        }
    }

    #[test]
    fn rendered_file_reads_back_exactly() {
        let certs = vec![
            exported("main", "\n"),
            exported("no-newline", ""),
            exported("yes", "\n\n"),
        ];
        let text = render("legacy01.example.org", &certs);
        verify("legacy01.example.org", &text, &certs).expect("round trip");
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
    fn identical_input_gives_identical_bytes() {
        let certs = vec![exported("main", "\n")];
        assert_eq!(
            render("h.example.org", &certs),
            render("h.example.org", &certs)
        );
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
        let text = render("h.example.org", &[exported("main", "\n")]);
        let value: serde_yaml::Value = serde_yaml::from_str(&text).expect("parse");
        let mut keys = Vec::new();
        walk(&value, &mut keys);
        assert_eq!(keys.len(), 8, "{keys:?}");
        assert!(keys.iter().all(|key| !key.contains('.')), "{keys:?}");
    }

    #[test]
    fn empty_certificate_set_is_an_empty_hash() {
        let text = render("h.example.org", &[]);
        verify("h.example.org", &text, &[]).expect("round trip");
        assert!(text.ends_with("fleetcert_certs: {}\n"), "{text}");
    }

    #[test]
    fn tampered_text_is_caught() {
        let certs = vec![exported("main", "\n")];
        let text = render("h.example.org", &certs).replace("MIIBmain", "MIIBmaim");
        assert!(matches!(
            verify("h.example.org", &text, &certs),
            Err(HieraError::RoundTrip { .. })
        ));
    }

    #[test]
    fn mode_other_than_0600_counts_as_a_change() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("h.yaml");
        assert!(differs(&path, b"x").expect("missing"));
        store::write_atomic(&path, b"x", Access::secret()).expect("write");
        assert!(!differs(&path, b"x").expect("same"));
        assert!(differs(&path, b"y").expect("other bytes"));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(differs(&path, b"x").expect("loose mode"));
    }
}
