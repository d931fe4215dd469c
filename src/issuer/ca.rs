//! The local CA of `issuer: {local-ca: ...}`: its certificate and key, checked once when the
//! config is read, so that a CA that cannot sign is said before `request` promises anything.

use base64::Engine as _;
use rcgen::KeyPair;
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::LocalCa;
use crate::shown::bare;

/// Why the local CA's files cannot be used; the config names the key (`cert` or `key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CaProblem {
    /// The certificate file is at fault.
    Cert(String),
    /// The key file is at fault. Never quotes the key.
    Key(String),
}

/// What a PEM certificate block starts and ends with.
const PEM_BEGIN: &str = "-----BEGIN CERTIFICATE-----";
const PEM_END: &str = "-----END CERTIFICATE-----";

impl LocalCa {
    /// Reads the CA from its certificate file (the CA first, then any issuers of its own)
    /// and its key (PEM: PKCS#8, SEC1 or PKCS#1), checking that they belong together and
    /// that the certificate is a CA that is valid `now`.
    pub(crate) fn read(
        cert_path: std::path::PathBuf,
        cert_pem: &[u8],
        key_pem: &[u8],
        now: OffsetDateTime,
    ) -> Result<Self, CaProblem> {
        let cert = |problem: String| CaProblem::Cert(problem);
        let blocks: Vec<Vec<u8>> = x509_parser::pem::Pem::iter_from_buffer(cert_pem)
            .filter_map(Result::ok)
            .filter(|block| block.label == "CERTIFICATE")
            .map(|block| block.contents)
            .collect();
        let first = blocks
            .first()
            .ok_or_else(|| cert("holds no PEM certificate".to_owned()))?;
        let (_, ca) = X509Certificate::from_der(first).map_err(|err| {
            cert(format!(
                "does not parse as an X.509 certificate: {}",
                bare(&err.to_string(), crate::shown::MAX_EXCERPT)
            ))
        })?;
        if !ca.is_ca() {
            return Err(cert(
                "is not a CA certificate (no basicConstraints CA:TRUE): make one as \
                 docs/test-gates.md shows"
                    .to_owned(),
            ));
        }
        if let Ok(Some(usage)) = ca.key_usage()
            && !usage.value.key_cert_sign()
        {
            return Err(cert(
                "has a key usage without keyCertSign: it may not sign certificates".to_owned(),
            ));
        }
        let not_after = ca.validity().not_after.to_datetime();
        if not_after <= now {
            return Err(cert(format!(
                "expired at {not_after}: make a new CA and give it to the hosts under test"
            )));
        }
        let key = std::str::from_utf8(key_pem)
            .ok()
            .and_then(|text| KeyPair::from_pem(text).ok())
            .ok_or_else(|| {
                // The parser's message is not passed on: it could quote part of the key.
                CaProblem::Key(
                    "holds no private key fleetcert can read: PEM (PKCS#8, SEC1 or PKCS#1) \
                     of an ECDSA P-256, P-384 or RSA key"
                        .to_owned(),
                )
            })?;
        if rcgen::PublicKeyData::subject_public_key_info(&key) != ca.public_key().raw {
            return Err(CaProblem::Key(
                "is not the key of the CA certificate: name the key that belongs to it".to_owned(),
            ));
        }
        let subject = ca.tbs_certificate.subject.as_raw().to_vec();
        let public_key_info = ca.public_key().raw.to_vec();
        let signer = rcgen::Issuer::from_ca_cert_der(&first.as_slice().into(), key)
            .map_err(|err| cert(format!("cannot be used to sign: {err}")))?;
        Ok(Self {
            cert_path,
            chain_pem: blocks.iter().map(|der| pem(der)).collect(),
            subject,
            public_key_info,
            not_after,
            signer,
        })
    }
}

/// One certificate as PEM, 64 characters a line (RFC 7468).
fn pem(der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut text = format!("{PEM_BEGIN}\n");
    for line in body.as_bytes().chunks(64) {
        text.push_str(&String::from_utf8_lossy(line));
        text.push('\n');
    }
    text.push_str(PEM_END);
    text.push('\n');
    text
}
