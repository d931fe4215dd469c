//! Signing a certificate on the host, as a test issuer: what a CA would hand out, made from
//! the key `finalize` made and the names of the config.

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyUsagePurpose,
};
use time::OffsetDateTime;

use super::origin::TEST_MARK;
use super::{Signer, TestIssuer};
use crate::cert::{KeyType, PrivateKey};
use crate::dns::DnsName;

/// The most a certificate is backdated: a client whose clock is a little behind still
/// accepts it at once (Let's Encrypt backdates an hour, too).
const MAX_BACKDATE: time::Duration = time::Duration::HOUR;
/// The longest common name X.509 allows (RFC 5280, ub-common-name).
const MAX_COMMON_NAME: usize = 64;

/// A certificate the test issuer could not make.
#[derive(Debug, thiserror::Error)]
#[error("the {issuer} issuer cannot sign the certificate: {source}")]
pub(crate) struct SignError {
    issuer: &'static str,
    #[source]
    source: rcgen::Error,
}

impl TestIssuer {
    /// The certificate for `key` and `names`, valid from `now` for the configured lifetime,
    /// as a PEM chain: the leaf, then the local CA's certificates (none when self-signed).
    pub(crate) fn sign(
        &self,
        key: &PrivateKey,
        names: &[DnsName],
        now: OffsetDateTime,
    ) -> Result<String, SignError> {
        let failed = |source| SignError {
            issuer: self.kind().as_str(),
            source,
        };
        let sans: Vec<String> = names.iter().map(ToString::to_string).collect();
        let mut params = CertificateParams::new(sans).map_err(failed)?;
        let lifetime = time::Duration::try_from(self.lifetime).unwrap_or(time::Duration::MAX);
        params.not_before = now - (lifetime / 10_i32).min(MAX_BACKDATE);
        params.not_after = now + lifetime;
        params.distinguished_name = self.subject(names);
        // What a CA's TLS server certificate says (Let's Encrypt's, since client
        // authentication left public certificates): a gate then tests what production gets.
        params.key_usages = match key.key_type() {
            KeyType::EcdsaP256 | KeyType::EcdsaP384 => vec![KeyUsagePurpose::DigitalSignature],
            KeyType::Rsa2048 | KeyType::Rsa3072 | KeyType::Rsa4096 => vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ],
        };
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        match &self.signer {
            // No CA flag and no keyCertSign even here: a client that trusts this very
            // certificate (`openssl verify -CAfile cert.pem cert.pem`) accepts it as it is.
            Signer::SelfSigned => Ok(params.self_signed(key.pair()).map_err(failed)?.pem()),
            Signer::LocalCa(ca) => {
                params.use_authority_key_identifier_extension = true;
                let leaf = params.signed_by(key.pair(), &ca.signer).map_err(failed)?;
                Ok(format!("{}{}", leaf.pem(), ca.chain_pem))
            }
        }
    }

    /// `CN=<first name>` (when it fits), `O=fleetcert test issuer`, `OU=<issuer kind>`.
    fn subject(&self, names: &[DnsName]) -> DistinguishedName {
        let mut subject = DistinguishedName::new();
        if let Some(first) = names.first()
            && first.as_str().len() <= MAX_COMMON_NAME
        {
            subject.push(DnType::CommonName, first.as_str());
        }
        subject.push(DnType::OrganizationName, TEST_MARK);
        subject.push(DnType::OrganizationalUnitName, self.kind().as_str());
        subject
    }
}
