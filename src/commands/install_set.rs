//! Installing a new key and its checked chain as one set, with its keystore, and rebuilding
//! a keystore that no longer fits `pkcs12:`: what `finalize` with a CA, with a test issuer
//! (commands/local.rs) and `install` share.

use tracing::info;

use super::failure::CertFailure;
use super::finalize_report::FinalizeStatus;
use super::installed::Installed;
use crate::acme::IssuedChain;
use crate::cert::{CertSet, Keystore, PrivateKey};
use crate::config::CertSpec;

/// Installs a new key and its checked chain, with the keystore when `pkcs12:` asks for one
/// (a test issuer's certificates go through here too, commands/local.rs).
pub(super) fn install_issued(
    spec: &CertSpec,
    installed: &Installed<'_>,
    key: &PrivateKey,
    chain: &IssuedChain,
) -> Result<(), CertFailure> {
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
    let set =
        CertSet::new(key, &chain.leaf, &chain.intermediates, &chain.full).with_keystore(keystore);
    installed.dir.install(&installed.names, &set)?;
    Ok(())
}

/// Without a pending order: rebuilds the keystore of a certificate with `pkcs12:` when the
/// installed one is missing or does not open with the configured password and alias or
/// holds another chain, from the installed key and chain, and installs it with them (the
/// PEM files byte for byte as they were).
pub(super) fn refresh_keystore(
    dry_run: bool,
    spec: &CertSpec,
    installed: &Installed<'_>,
) -> Result<FinalizeStatus, CertFailure> {
    let (Some(pkcs12), Some(_)) = (&spec.pkcs12, &installed.names.keystore) else {
        return Ok(FinalizeStatus::Unchanged);
    };
    let Some(set) = installed.dir.read_set(&installed.names)?.complete() else {
        // Not issued yet, or incomplete: request issues it, with its keystore.
        return Ok(FinalizeStatus::Unchanged);
    };
    let (Ok(key_pem), Ok(full_pem), Some(inspection)) = (
        std::str::from_utf8(&set.key.0),
        std::str::from_utf8(&set.fullchain.0),
        installed.inspection(),
    ) else {
        return Ok(FinalizeStatus::Unchanged);
    };
    if set.keystore.as_ref().is_some_and(|keystore| {
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
    let set = set.with_keystore(Some(keystore));
    installed.dir.install(&installed.names, &set)?;
    info!(cert = %installed.names.dir, "keystore written from the installed key and chain");
    Ok(FinalizeStatus::KeystoreWritten)
}
