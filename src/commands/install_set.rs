//! Installing a new key and its checked chain as one set, with its keystore, and rebuilding
//! a keystore that no longer fits `pkcs12:`: what `finalize` with a CA, with a test issuer
//! (commands/local.rs) and `install` share.

use tracing::info;

use super::failure::CertFailure;
use super::finalize_report::FinalizeStatus;
use super::installed::Installed;
use crate::acme::IssuedChain;
use crate::cert::{Keystore, PrivateKey, Secret, SetFile};
use crate::config::{CertSpec, HostConfig};
use crate::store::{self, Access};

/// Installs a new key and its checked chain, with the keystore when `pkcs12:` asks for one
/// (a test issuer's certificates go through here too, commands/local.rs).
pub(super) fn install_issued(
    config: &HostConfig,
    spec: &CertSpec,
    installed: &Installed<'_>,
    key: &PrivateKey,
    chain: &IssuedChain,
) -> Result<(), CertFailure> {
    let set = PemSet {
        key: Secret(key.to_pem().into_bytes()),
        cert: Secret(chain.leaf.clone().into_bytes()),
        chain: Secret(chain.intermediates.clone().into_bytes()),
        fullchain: Secret(chain.full.clone().into_bytes()),
    };
    // Built before the install starts: a keystore that cannot be made leaves the old set.
    crash_point!("finalize.before_keystore");
    let keystore = match &spec.pkcs12 {
        Some(pkcs12) => Some(Keystore::from_pem(
            key,
            &chain.full,
            &pkcs12.alias,
            &pkcs12.password,
        )?),
        None => None,
    };
    install(config, installed, &set, keystore.as_ref())?;
    Ok(())
}

/// The PEM files of one certificate, as installed.
struct PemSet {
    key: Secret,
    cert: Secret,
    chain: Secret,
    fullchain: Secret,
}

/// Writes the certificate's files, the keystore among them, as one set (see
/// `cert::CertDir`).
fn install(
    config: &HostConfig,
    installed: &Installed<'_>,
    set: &PemSet,
    keystore: Option<&Secret>,
) -> Result<(), store::StoreError> {
    let gid = config.gid;
    let secret = Access::group(store::KEY_MODE, gid);
    let public = Access::group(store::CERT_MODE, gid);
    let names = &installed.names;
    let mut files = vec![
        SetFile {
            name: &names.key,
            contents: &set.key,
            access: secret,
        },
        SetFile {
            name: &names.cert,
            contents: &set.cert,
            access: public,
        },
        SetFile {
            name: &names.chain,
            contents: &set.chain,
            access: public,
        },
        SetFile {
            name: &names.fullchain,
            contents: &set.fullchain,
            access: public,
        },
    ];
    if let (Some(name), Some(contents)) = (&names.keystore, keystore) {
        files.push(SetFile {
            name,
            contents,
            access: secret,
        });
    }
    installed.dir.install(&files)
}

/// Without a pending order: rebuilds the keystore of a certificate with `pkcs12:` when the
/// installed one is missing or does not open with the configured password and alias or
/// holds another chain, from the installed key and chain, and installs it with them (the
/// PEM files byte for byte as they were).
pub(super) fn refresh_keystore(
    config: &HostConfig,
    dry_run: bool,
    spec: &CertSpec,
    installed: &Installed<'_>,
) -> Result<FinalizeStatus, CertFailure> {
    let (Some(pkcs12), Some(keystore_name)) = (&spec.pkcs12, &installed.names.keystore) else {
        return Ok(FinalizeStatus::Unchanged);
    };
    let names = &installed.names;
    let Some(files) = installed.dir.read(&[
        &names.key,
        &names.cert,
        &names.chain,
        &names.fullchain,
        keystore_name,
    ])?
    else {
        return Ok(FinalizeStatus::Unchanged);
    };
    let [
        Some(key),
        Some(cert),
        Some(chain),
        Some(fullchain),
        keystore,
    ]: [Option<Secret>; 5] = files.try_into().unwrap_or_default()
    else {
        // Not issued yet, or incomplete: request issues it, with its keystore.
        return Ok(FinalizeStatus::Unchanged);
    };
    let (Ok(key_pem), Ok(full_pem), Some(inspection)) = (
        std::str::from_utf8(&key.0),
        std::str::from_utf8(&fullchain.0),
        installed.inspection(),
    ) else {
        return Ok(FinalizeStatus::Unchanged);
    };
    if keystore.is_some_and(|keystore| {
        Keystore::fits(&keystore.0, full_pem, &pkcs12.alias, &pkcs12.password)
    }) {
        return Ok(FinalizeStatus::Unchanged);
    }
    // A key that does not belong to the certificate is request's business (it renews).
    let Some(private) = inspection
        .key_type
        .and_then(|key_type| PrivateKey::from_pem(key_pem, key_type).ok())
        .filter(|private| private.public_key_info() == inspection.public_key_info)
    else {
        return Ok(FinalizeStatus::Unchanged);
    };
    if dry_run {
        return Ok(FinalizeStatus::WouldWriteKeystore);
    }
    let keystore = Keystore::from_pem(&private, full_pem, &pkcs12.alias, &pkcs12.password)?;
    let set = PemSet {
        key,
        cert,
        chain,
        fullchain,
    };
    install(config, installed, &set, Some(&keystore))?;
    info!(cert = %installed.names.dir, "keystore written from the installed key and chain");
    Ok(FinalizeStatus::KeystoreWritten)
}
