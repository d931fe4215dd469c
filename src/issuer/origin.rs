//! Who made a certificate on disk, told from the certificate itself.
//!
//! No state is needed: a self-signed leaf is never what a CA issues, a leaf fleetcert's test
//! issuers sign carries [`TEST_MARK`] as its organization, and a leaf the configured local
//! CA signed verifies against that CA's key. So a host moved between issuers is renewed at
//! once even when its state directory was wiped, and a real CA's certificate is recognised
//! as one (anything fleetcert cannot tell apart from a CA's counts as a CA's).

use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::x509::SubjectPublicKeyInfo;

use super::{Issuer, IssuerKind};
use crate::cert::DueReason;

/// The organization (O) of every leaf a test issuer signs: how a test certificate is told
/// apart from a CA's after the config no longer names the test CA.
pub(crate) const TEST_MARK: &str = "fleetcert test issuer";

/// Who made a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Origin {
    /// It is signed by its own key (`issuer: self-signed`, or any self-signed certificate).
    SelfSigned,
    /// The configured local CA signed it.
    LocalCa,
    /// A test issuer signed it with a CA the config does not name (any more).
    OtherTestCa,
    /// Anything else: a CA's, as far as fleetcert can tell; `issuer` is its issuer's name.
    Ca { issuer: String },
}

impl Origin {
    /// The origin of the first certificate of a PEM chain; `None` when it does not parse
    /// (the renewal decision then says why).
    pub(crate) fn read(pem: &[u8], issuer: &Issuer) -> Option<Self> {
        let block = x509_parser::pem::Pem::iter_from_buffer(pem)
            .filter_map(Result::ok)
            .find(|block| block.label == "CERTIFICATE")?;
        let (_, leaf) = X509Certificate::from_der(&block.contents).ok()?;
        Some(Self::of(&leaf, issuer))
    }

    fn of(leaf: &X509Certificate<'_>, issuer: &Issuer) -> Self {
        let tbs = &leaf.tbs_certificate;
        if tbs.issuer.as_raw() == tbs.subject.as_raw() && leaf.verify_signature(None).is_ok() {
            return Self::SelfSigned;
        }
        if let Some(ca) = issuer.local_ca()
            && tbs.issuer.as_raw() == ca.subject.as_slice()
            && SubjectPublicKeyInfo::from_der(&ca.public_key_info)
                .is_ok_and(|(_, key)| leaf.verify_signature(Some(&key)).is_ok())
        {
            return Self::LocalCa;
        }
        let marked = tbs
            .subject
            .iter_organization()
            .any(|o| o.as_str() == Ok(TEST_MARK));
        if marked {
            return Self::OtherTestCa;
        }
        Self::Ca {
            issuer: tbs.issuer.to_string(),
        }
    }

    /// Whether a CA issued it, as far as fleetcert can tell: only such a certificate can be
    /// named to a CA (`replaces`); a test one it never saw.
    pub(crate) fn is_from_a_ca(&self) -> bool {
        matches!(self, Self::Ca { .. })
    }

    /// Who made it, in words: "this one is ...".
    pub(crate) fn describe(&self) -> &'static str {
        match self {
            Self::SelfSigned => "self-signed",
            Self::LocalCa => "signed by the configured local CA",
            Self::OtherTestCa => "signed by a test CA the config does not name",
            Self::Ca { .. } => "issued by a CA",
        }
    }
}

impl Issuer {
    /// Why a certificate from `origin` must be issued again by this issuer, if it must: the
    /// issuer changed. A CA's certificate under a test issuer is reported here too; whether
    /// it may be replaced is the test issuer's own question (`replace_ca_issued`).
    pub(crate) fn change_from(&self, origin: &Origin) -> Option<DueReason> {
        let same = matches!(
            (self.kind(), origin),
            (IssuerKind::Acme, Origin::Ca { .. })
                | (IssuerKind::SelfSigned, Origin::SelfSigned)
                | (IssuerKind::LocalCa, Origin::LocalCa)
        );
        (!same).then(|| DueReason::IssuerChanged {
            from: origin.describe(),
            to: self.kind().as_str(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_issuer_keeps_only_its_own_certificates() {
        let ca = || Origin::Ca {
            issuer: "CN=R11".to_owned(),
        };
        let acme = Issuer::Acme;
        assert_eq!(acme.change_from(&ca()), None);
        for origin in [Origin::SelfSigned, Origin::OtherTestCa] {
            let reason = acme
                .change_from(&origin)
                .expect("a test certificate is renewed");
            assert_eq!(reason.label(), "issuer_changed");
            assert!(reason.to_string().contains("acme"), "{reason}");
        }
    }
}
