//! `fleetcert install`: install a set that another host issued (a cluster member's copy).
//!
//! The set in `--from` gets the checks a CA's chain gets in `finalize` and more, since it
//! comes from a file system and not from the CA the order went to: the key belongs to the
//! leaf, the leaf names exactly the configured names, every certificate of the chain is
//! signed by the next one (and a last one that names itself by itself), the leaf has not
//! expired. Then it is installed exactly as `finalize` installs (`install_issued`: the same
//! version directory, `..data` switch, modes and keystore), and the certificate's `reload`
//! runs. A set byte for byte the one installed changes nothing and runs no reload (a pending
//! one still runs).
//!
//! Anything refused is refused before a byte is written, with exit 2: the member keeps its
//! old set. A link in `--from`, or one in the certificate's directory that fleetcert did not
//! make, is refused too.

use std::path::Path;

use time::OffsetDateTime;
use x509_parser::prelude::{FromDer as _, X509Certificate};

use super::failure::CertFailure;
use super::finalize_report::{CertReport, FinalizeStatus, Report};
use super::install_set::install_issued;
use super::installed::{Installed, rfc3339};
use super::report::print_json;
use crate::acme::{self, AcmeError, IssuedChain, pem_blocks};
use crate::cert::{CertSet, FileNames, IncomingError, Keystore, PrivateKey, inspect_chain};
use crate::cli::InstallArgs;
use crate::config::{CertSpec, HostConfig};
use crate::error::{Error, Outcome};
use crate::shown::{path as shown_path, shown};
use crate::state::StateDir;
use crate::store::{Dir, StoreError};

/// The most bytes of one file of the set read (a chain is a few KiB).
const MAX_FILE_BYTES: u64 = 1 << 20;

/// The set as read from `--from`, checked.
struct Incoming {
    key: PrivateKey,
    chain: IssuedChain,
}

pub(crate) async fn run(args: &InstallArgs) -> Result<Outcome, Error> {
    let config = HostConfig::load(&args.config)?;
    let cert = args.cert.as_str();
    let spec = config
        .certs
        .get(cert)
        .ok_or_else(|| IncomingError::UnknownCert {
            config: shown_path(&args.config),
            cert: shown(cert),
        })?;
    let installed = Installed::read(&config, cert, spec);
    let incoming = read_set(&args.from, &installed.names, spec)?;
    installed.dir.refuse_foreign_links()?;
    let (state, _lock) = StateDir::open_for_run(&config.state_dir, args.dry_run).await?;
    let not_after = Some(rfc3339(incoming.chain.inspection.not_after));
    let status = if is_installed(&installed, spec, &incoming)? {
        FinalizeStatus::Unchanged
    } else if args.dry_run {
        FinalizeStatus::WouldInstall
    } else {
        install_issued(spec, &installed, &incoming.key, &incoming.chain).map_err(|failure| {
            match failure {
                CertFailure::Store(err) => Error::Store(err),
                CertFailure::Keystore(err) => IncomingError::Keystore(err).into(),
                // install_issued fails only with the two above; any other is still one line.
                other => IncomingError::Refused {
                    dir: shown_path(&args.from),
                    problem: other.to_string(),
                }
                .into(),
            }
        })?;
        tracing::info!(cert, not_after = ?not_after, "installed the set from another host");
        FinalizeStatus::Installed
    };
    let mut report = CertReport::new(cert, spec, &installed, status, not_after, None);
    report.reload(&config, &state, spec, args.dry_run).await;
    let report = Report::new(&config, vec![report]);
    print_json(&report)?;
    Ok(Outcome::from_failures(report.failed()))
}

/// Reads the set from `from` (no link followed) and checks it for `spec`.
fn read_set(from: &Path, names: &FileNames, spec: &CertSpec) -> Result<Incoming, Error> {
    let dir = Dir::open(from)?;
    let shown_dir = shown_path(from);
    let refused = |problem: String| IncomingError::Refused {
        dir: shown_dir.clone(),
        problem,
    };
    let read = |name: &str| -> Result<Option<String>, Error> {
        let Some(bytes) = dir.read_optional(name, MAX_FILE_BYTES)? else {
            return Ok(None);
        };
        String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| refused(format!("{} is not PEM text", shown(name))).into())
    };
    let required = |name: &str| -> Result<String, Error> {
        read(name)?.ok_or_else(|| {
            IncomingError::Missing {
                path: shown_path(&from.join(name)),
                dir: shown_dir.clone(),
            }
            .into()
        })
    };
    let key_pem = required(&names.key)?;
    let full_pem = required(&names.fullchain)?;
    let mismatch = |err: AcmeError| refused(err.to_string());
    let blocks = pem_blocks(&full_pem).map_err(mismatch)?;
    let leaf = inspect_chain(blocks.first().map_or("", String::as_str).as_bytes())
        .map_err(|err| refused(format!("the leaf {err}")))?;
    let key_type = leaf
        .key_type
        .ok_or_else(|| refused("the leaf's key is of a type fleetcert does not make".to_owned()))?;
    let key = PrivateKey::from_pem(&key_pem, key_type).map_err(|_| {
        refused(format!(
            "{} is not a PKCS#8 PEM {key_type} key, the leaf's type",
            shown(&names.key)
        ))
    })?;
    // The checks finalize gives a CA's chain: this key, exactly these names.
    let chain = acme::verify_chain(&full_pem, &key, &spec.names).map_err(mismatch)?;
    // The certificate and chain files, when sent, must be the parts of the full chain.
    for (name, part) in [
        (&names.cert, &chain.leaf),
        (&names.chain, &chain.intermediates),
    ] {
        if let Some(text) = read(name)?
            && pem_blocks(&text).map_err(mismatch)?.concat() != *part
        {
            return Err(refused(format!(
                "{} is not the matching part of {}",
                shown(name),
                shown(&names.fullchain)
            ))
            .into());
        }
    }
    verify_links(&blocks).map_err(|err| refused(err.to_string()))?;
    if chain.inspection.not_after <= OffsetDateTime::now_utc() {
        return Err(refused(format!(
            "the certificate expired at {}",
            rfc3339(chain.inspection.not_after)
        ))
        .into());
    }
    Ok(Incoming { key, chain })
}

/// Why a copied chain is not what it says it is.
#[derive(Debug, thiserror::Error)]
enum LinkError {
    /// A block of the full chain is not a PEM certificate.
    #[error("a certificate of the chain is not PEM")]
    NotPem,
    /// A certificate of the full chain does not parse as X.509.
    #[error("a certificate of the chain does not parse: {0}")]
    Unparsable(String),
    /// Certificate `0` is not signed by the one after it.
    #[error(
        "certificate {0} of the chain is not signed by certificate {next} after it: the chain \
         does not verify", next = .0 + 1
    )]
    Unsigned(usize),
    /// The last certificate claims to be self-signed, and is not.
    #[error(
        "the last certificate of the chain names itself as its issuer, but its signature does \
         not verify: the chain does not verify"
    )]
    BadSelfSignature,
}

/// Checks that each certificate of the chain is signed by the next one, and a last one that
/// names itself as its issuer by itself: the chain is what it says it is.
fn verify_links(blocks: &[String]) -> Result<(), LinkError> {
    let ders = blocks
        .iter()
        .map(|block| {
            x509_parser::pem::Pem::iter_from_buffer(block.as_bytes())
                .next()
                .and_then(Result::ok)
                .map(|pem| pem.contents)
                .ok_or(LinkError::NotPem)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let certs = ders
        .iter()
        .map(|der| {
            X509Certificate::from_der(der)
                .map(|(_, cert)| cert)
                .map_err(|err| LinkError::Unparsable(err.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    for (index, pair) in certs.windows(2).enumerate() {
        let [child, parent] = pair else { continue };
        if child.verify_signature(Some(parent.public_key())).is_err() {
            return Err(LinkError::Unsigned(index));
        }
    }
    if let Some(last) = certs.last()
        && last.tbs_certificate.issuer.as_raw() == last.tbs_certificate.subject.as_raw()
        && last.verify_signature(None).is_err()
    {
        return Err(LinkError::BadSelfSignature);
    }
    Ok(())
}

/// Whether exactly this set is installed: the same files byte for byte, and a keystore
/// that fits when `pkcs12:` asks for one.
fn is_installed(
    installed: &Installed<'_>,
    spec: &CertSpec,
    incoming: &Incoming,
) -> Result<bool, StoreError> {
    let Some(found) = installed.dir.read_set(&installed.names)?.complete() else {
        return Ok(false);
    };
    let chain = &incoming.chain;
    let expected = CertSet::new(
        &incoming.key,
        &chain.leaf,
        &chain.intermediates,
        &chain.full,
    )
    .with_keystore(found.keystore.clone());
    let keystore_fits = match (&spec.pkcs12, &found.keystore) {
        (None, _) => true,
        (Some(pkcs12), Some(keystore)) => {
            Keystore::fits(&keystore.0, &chain.full, &pkcs12.alias, &pkcs12.password)
        }
        (Some(_), None) => false,
    };
    Ok(found == expected && keystore_fits)
}
