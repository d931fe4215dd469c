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
                // A leaf that outlived its CA would fail verification before it is due.
                params.not_after = params.not_after.min(ca.not_after);
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::cert::inspect_chain;
    use crate::issuer::{Issuer, LocalCa, Origin};

    /// A CA made with rcgen, named `name`, as the config would read it.
    fn local_ca(name: &str) -> LocalCa {
        local_ca_until(name, OffsetDateTime::now_utc() + time::Duration::days(365))
    }

    /// A CA that expires at `not_after`.
    fn local_ca_until(name: &str, not_after: OffsetDateTime) -> LocalCa {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.not_after = not_after;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("ca");
        let now = OffsetDateTime::now_utc();
        LocalCa::read(
            "ca.pem".into(),
            cert.pem().as_bytes(),
            key.serialize_pem().as_bytes(),
            now,
        )
        .unwrap_or_else(|problem| panic!("{problem:?}"))
    }

    fn test_issuer(signer: Signer) -> Issuer {
        Issuer::Test(TestIssuer {
            signer,
            lifetime: Duration::from_secs(86_400),
            replace_ca_issued: false,
        })
    }

    fn names(list: &[&str]) -> Vec<DnsName> {
        list.iter()
            .map(|n| DnsName::parse_identifier(n).expect("name"))
            .collect()
    }

    fn sign(issuer: &Issuer, key: &PrivateKey, names: &[DnsName]) -> String {
        let test = issuer.test().expect("a test issuer");
        test.sign(key, names, OffsetDateTime::now_utc())
            .expect("sign")
    }

    #[test]
    fn a_test_certificate_has_the_names_key_and_lifetime_asked_for() {
        let names = names(&["a.example.org", "*.a.example.org"]);
        for (signer, key_type) in [
            (Signer::SelfSigned, KeyType::Rsa2048),
            (
                Signer::LocalCa(Box::new(local_ca("CI"))),
                KeyType::EcdsaP256,
            ),
        ] {
            let issuer = test_issuer(signer);
            let key = key_type.generate().expect("key");
            let pem = sign(&issuer, &key, &names);
            let chain = crate::acme::verify_chain(&pem, &key, &names).expect("fits");
            let leaf = inspect_chain(pem.as_bytes()).expect("parse");
            assert_eq!(leaf.key_type, Some(key_type));
            let lifetime = leaf.not_after - leaf.not_before;
            // A day, backdated by a tenth of it at most (an hour here).
            assert!(
                lifetime > time::Duration::DAY && lifetime <= time::Duration::hours(25),
                "{lifetime}"
            );
            let intermediates = chain.intermediates.is_empty();
            assert_eq!(intermediates, issuer.local_ca().is_none(), "chain of {pem}");
        }
    }

    #[test]
    fn a_leaf_never_outlives_its_ca() {
        let names = names(&["a.example.org"]);
        let until = OffsetDateTime::now_utc() + time::Duration::HOUR;
        let ci = test_issuer(Signer::LocalCa(Box::new(local_ca_until("CI", until))));
        let key = KeyType::EcdsaP256.generate().expect("key");
        let leaf = inspect_chain(sign(&ci, &key, &names).as_bytes()).expect("parse");
        assert!(leaf.not_after <= until, "{} after {until}", leaf.not_after);
    }

    #[test]
    fn who_made_a_certificate_is_read_from_the_certificate() {
        let names = names(&["a.example.org"]);
        let key = KeyType::EcdsaP256.generate().expect("key");
        let self_signed = test_issuer(Signer::SelfSigned);
        let ci = test_issuer(Signer::LocalCa(Box::new(local_ca("CI"))));
        let other_ci = test_issuer(Signer::LocalCa(Box::new(local_ca("CI"))));
        let own = sign(&self_signed, &key, &names);
        let by_ci = sign(&ci, &key, &names);
        let origin = |pem: &str, issuer: &Issuer| Origin::read(pem.as_bytes(), issuer);
        assert_eq!(origin(&own, &self_signed), Some(Origin::SelfSigned));
        assert_eq!(origin(&own, &Issuer::Acme), Some(Origin::SelfSigned));
        assert_eq!(origin(&by_ci, &ci), Some(Origin::LocalCa));
        // Another CA of the same name is not the configured one; the mark still tells.
        assert_eq!(origin(&by_ci, &other_ci), Some(Origin::OtherTestCa));
        assert_eq!(origin(&by_ci, &Issuer::Acme), Some(Origin::OtherTestCa));
        assert_eq!(origin("junk", &Issuer::Acme), None);

        // A leaf a CA signed without fleetcert's mark is a CA's, whoever asks.
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.distinguished_name = DistinguishedName::new();
        ca_params.distinguished_name.push(DnType::CommonName, "R11");
        let real = rcgen::Issuer::new(ca_params, ca_key);
        let leaf = CertificateParams::new(vec!["a.example.org".to_owned()])
            .expect("params")
            .signed_by(key.pair(), &real)
            .expect("leaf")
            .pem();
        let Some(Origin::Ca { issuer }) = origin(&leaf, &ci) else {
            panic!("not a CA's");
        };
        assert_eq!(issuer, "CN=R11");
        assert_eq!(
            ci.change_from(&Origin::Ca { issuer }).map(|r| r.label()),
            Some("issuer_changed")
        );
        assert_eq!(ci.change_from(&Origin::LocalCa), None);
        assert_eq!(self_signed.change_from(&Origin::SelfSigned), None);
    }
}
