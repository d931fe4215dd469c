//! What a certificate on disk says, and whether it is due for renewal.

use std::time::Duration;

use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, X509Certificate};
use x509_parser::public_key::PublicKey;

use super::KeyType;

/// A certificate file that cannot be understood.
#[derive(Debug, thiserror::Error)]
pub(crate) enum InspectError {
    /// No PEM certificate block in the file.
    #[error("holds no PEM certificate")]
    NoCertificate,
    /// A PEM block or its DER does not parse.
    #[error("does not parse as an X.509 certificate: {0}")]
    Parse(String),
}

/// The facts about a leaf certificate that renewal decisions need.
#[derive(Debug, Clone)]
pub(crate) struct Inspection {
    pub(crate) not_before: OffsetDateTime,
    pub(crate) not_after: OffsetDateTime,
    /// DNS SANs, lower case, sorted.
    pub(crate) names: Vec<String>,
    /// `None` for algorithms fleetcert does not make.
    pub(crate) key_type: Option<KeyType>,
    /// DER SubjectPublicKeyInfo, to match against a private key.
    pub(crate) public_key_info: Vec<u8>,
    /// The DER of the AKI `keyIdentifier`, for the ARI certificate ID (RFC 9773 4.1).
    pub(crate) authority_key_id: Option<Vec<u8>>,
    /// The DER-encoded serial number, for the ARI certificate ID.
    pub(crate) serial: Vec<u8>,
}

/// Parses the first certificate of a PEM chain (the leaf) and counts the rest.
pub(crate) fn inspect_chain(pem: &[u8]) -> Result<Inspection, InspectError> {
    let mut blocks = Vec::new();
    for block in x509_parser::pem::Pem::iter_from_buffer(pem) {
        let block = block.map_err(|err| InspectError::Parse(err.to_string()))?;
        if block.label == "CERTIFICATE" {
            blocks.push(block.contents);
        }
    }
    let leaf_der = blocks.first().ok_or(InspectError::NoCertificate)?;
    let (_, leaf) =
        X509Certificate::from_der(leaf_der).map_err(|err| InspectError::Parse(err.to_string()))?;
    let validity = leaf.validity();
    let mut names = Vec::new();
    let mut authority_key_id = None;
    for extension in leaf.extensions() {
        match extension.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                for name in &san.general_names {
                    if let GeneralName::DNSName(dns) = name {
                        names.push(dns.to_ascii_lowercase());
                    }
                }
            }
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                authority_key_id = aki.key_identifier.as_ref().map(|id| id.0.to_vec());
            }
            _ => {}
        }
    }
    names.sort();
    let spki = leaf.public_key();
    let key_type = match spki.parsed() {
        Ok(PublicKey::EC(point)) => match point.key_size() {
            256 => Some(KeyType::EcdsaP256),
            384 => Some(KeyType::EcdsaP384),
            _ => None,
        },
        Ok(PublicKey::RSA(rsa)) => match rsa.key_size() {
            2048 => Some(KeyType::Rsa2048),
            3072 => Some(KeyType::Rsa3072),
            4096 => Some(KeyType::Rsa4096),
            _ => None,
        },
        _ => None,
    };
    Ok(Inspection {
        not_before: validity.not_before.to_datetime(),
        not_after: validity.not_after.to_datetime(),
        names,
        key_type,
        public_key_info: spki.raw.to_vec(),
        authority_key_id,
        serial: leaf.tbs_certificate.raw_serial().to_vec(),
    })
}

/// Whether a certificate must be (re)issued, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RenewalDecision {
    /// Good as it is.
    Valid,
    /// Issue a new one; the reason is one line for the operator.
    Due(String),
}

/// What the certificate should be, to compare the one on disk against.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Wanted<'a> {
    /// Identifiers, canonical.
    pub(crate) names: &'a [String],
    pub(crate) key_type: KeyType,
    pub(crate) before_days: u32,
}

impl Inspection {
    /// Decides from the certificate alone (ARI is asked separately, by the caller).
    pub(crate) fn decide(&self, wanted: Wanted<'_>, now: OffsetDateTime) -> RenewalDecision {
        let mut want: Vec<String> = wanted.names.to_vec();
        want.sort();
        if want != self.names {
            let added: Vec<&str> = want
                .iter()
                .filter(|name| !self.names.contains(name))
                .map(String::as_str)
                .collect();
            let removed: Vec<&str> = self
                .names
                .iter()
                .filter(|name| !want.contains(name))
                .map(String::as_str)
                .collect();
            return RenewalDecision::Due(format!(
                "names changed (added: [{}], removed: [{}])",
                added.join(", "),
                removed.join(", ")
            ));
        }
        if self.key_type != Some(wanted.key_type) {
            let had = self
                .key_type
                .map_or_else(|| "another algorithm".to_owned(), |t| t.to_string());
            return RenewalDecision::Due(format!(
                "key type changed from {had} to {}",
                wanted.key_type
            ));
        }
        let left = self.not_after - now;
        let threshold = self.renewal_threshold(wanted.before_days);
        if left <= time::Duration::ZERO {
            return RenewalDecision::Due("expired".to_owned());
        }
        if left < threshold {
            return RenewalDecision::Due(format!(
                "expires in {} h, renewing {} h before expiry",
                left.whole_hours(),
                threshold.whole_hours()
            ));
        }
        RenewalDecision::Valid
    }

    /// `before_days`, capped at a third of the lifetime: with a 6-day certificate a 30-day
    /// threshold would renew on every run, a third renews with days to spare.
    fn renewal_threshold(&self, before_days: u32) -> time::Duration {
        let configured = time::Duration::days(i64::from(before_days));
        let third = (self.not_after - self.not_before) / 3;
        configured.min(third)
    }

    /// Time left until expiry, zero when already expired.
    pub(crate) fn remaining(&self, now: OffsetDateTime) -> Duration {
        let left = self.not_after - now;
        Duration::try_from(left).unwrap_or(Duration::ZERO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inspection(days_valid: i64, names: &[&str], key_type: KeyType) -> Inspection {
        let not_before = time::macros::datetime!(2026-01-01 0:00 UTC);
        Inspection {
            not_before,
            not_after: not_before + time::Duration::days(days_valid),
            names: names.iter().map(|n| (*n).to_owned()).collect(),
            key_type: Some(key_type),
            public_key_info: Vec::new(),
            authority_key_id: None,
            serial: Vec::new(),
        }
    }

    fn wanted(names: &[String]) -> Wanted<'_> {
        Wanted {
            names,
            key_type: KeyType::EcdsaP384,
            before_days: 30,
        }
    }

    #[test]
    fn ninety_day_certificate_renews_thirty_days_before() {
        let cert = inspection(90, &["a.org"], KeyType::EcdsaP384);
        let names = vec!["a.org".to_owned()];
        let day = |n| cert.not_before + time::Duration::days(n);
        assert_eq!(cert.decide(wanted(&names), day(59)), RenewalDecision::Valid);
        assert!(matches!(
            cert.decide(wanted(&names), day(61)),
            RenewalDecision::Due(_)
        ));
    }

    #[test]
    fn six_day_certificate_is_not_renewed_on_every_run() {
        let cert = inspection(6, &["a.org"], KeyType::EcdsaP384);
        let names = vec!["a.org".to_owned()];
        let day = |n| cert.not_before + time::Duration::days(n);
        assert_eq!(cert.decide(wanted(&names), day(1)), RenewalDecision::Valid);
        assert!(matches!(
            cert.decide(wanted(&names), day(5)),
            RenewalDecision::Due(_)
        ));
    }

    #[test]
    fn changed_names_or_key_type_renew_at_once() {
        let cert = inspection(90, &["a.org", "b.org"], KeyType::EcdsaP256);
        let now = cert.not_before;
        let same = vec!["b.org".to_owned(), "a.org".to_owned()];
        let RenewalDecision::Due(reason) = cert.decide(wanted(&same), now) else {
            panic!("key type change not noticed");
        };
        assert!(reason.contains("key type"), "{reason}");
        let other = vec!["a.org".to_owned(), "c.org".to_owned()];
        let RenewalDecision::Due(reason) = cert.decide(wanted(&other), now) else {
            panic!("name change not noticed");
        };
        assert!(
            reason.contains("c.org") && reason.contains("b.org"),
            "{reason}"
        );
    }
}
