//! What a certificate on disk says, and whether it is due for renewal.

use std::time::Duration;

use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, X509Certificate};
use x509_parser::public_key::PublicKey;

use super::KeyType;
use crate::dns::DnsName;

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
    /// Issue a new one.
    Due(DueReason),
}

/// Why a certificate is due: a small fixed set, so reports say it in words and metrics as a
/// label (`reason()`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DueReason {
    /// There is no certificate on disk.
    Missing,
    /// The files on disk cannot be read or understood.
    Unreadable(String),
    /// The certificate is there, its private key is not.
    KeyMissing,
    /// The configured names differ from the certificate's.
    NamesChanged {
        added: Vec<String>,
        removed: Vec<String>,
    },
    /// The configured key type differs from the certificate's.
    KeyTypeChanged {
        had: Option<KeyType>,
        wanted: KeyType,
    },
    /// It has expired.
    Expired,
    /// It expires within the renewal threshold.
    Expiring {
        left: time::Duration,
        threshold: time::Duration,
    },
}

impl DueReason {
    /// The metrics label of this reason (docs/monitoring.md).
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Unreadable(_) => "unreadable",
            Self::KeyMissing => "key_missing",
            Self::NamesChanged { .. } => "names_changed",
            Self::KeyTypeChanged { .. } => "key_type_changed",
            Self::Expired => "expired",
            Self::Expiring { .. } => "expiring",
        }
    }
}

impl std::fmt::Display for DueReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing => f.write_str("no certificate yet"),
            Self::Unreadable(problem) => write!(f, "{problem}: issuing a new one"),
            Self::KeyMissing => f.write_str("the private key is missing"),
            Self::NamesChanged { added, removed } => write!(
                f,
                "names changed (added: [{}], removed: [{}])",
                added.join(", "),
                removed.join(", ")
            ),
            Self::KeyTypeChanged { had, wanted } => match had {
                Some(had) => write!(f, "key type changed from {had} to {wanted}"),
                None => write!(f, "key type changed from another algorithm to {wanted}"),
            },
            Self::Expired => f.write_str("expired"),
            Self::Expiring { left, threshold } => write!(
                f,
                "expires in {} h, renewing {} h before expiry",
                left.whole_hours(),
                threshold.whole_hours()
            ),
        }
    }
}

/// What the certificate should be, to compare the one on disk against.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Wanted<'a> {
    /// Identifiers, canonical.
    pub(crate) names: &'a [DnsName],
    pub(crate) key_type: KeyType,
    pub(crate) before_days: u32,
}

impl Inspection {
    /// Decides from the certificate alone (ARI is asked separately, by the caller).
    pub(crate) fn decide(&self, wanted: Wanted<'_>, now: OffsetDateTime) -> RenewalDecision {
        let mut want: Vec<String> = wanted.names.iter().map(ToString::to_string).collect();
        want.sort();
        if want != self.names {
            let added = want
                .iter()
                .filter(|name| !self.names.contains(name))
                .cloned()
                .collect();
            let removed = self
                .names
                .iter()
                .filter(|name| !want.contains(name))
                .cloned()
                .collect();
            return RenewalDecision::Due(DueReason::NamesChanged { added, removed });
        }
        if self.key_type != Some(wanted.key_type) {
            return RenewalDecision::Due(DueReason::KeyTypeChanged {
                had: self.key_type,
                wanted: wanted.key_type,
            });
        }
        let left = self.not_after - now;
        let threshold = self.renewal_threshold(wanted.before_days);
        if left <= time::Duration::ZERO {
            return RenewalDecision::Due(DueReason::Expired);
        }
        if left < threshold {
            return RenewalDecision::Due(DueReason::Expiring { left, threshold });
        }
        RenewalDecision::Valid
    }

    /// `before_days`, capped at a third of the lifetime: with a 6-day certificate a 30-day
    /// threshold would renew on every run, a third renews with days to spare.
    pub(crate) fn renewal_threshold(&self, before_days: u32) -> time::Duration {
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

    fn names(list: &[&str]) -> Vec<DnsName> {
        list.iter()
            .map(|n| DnsName::parse(n).expect("name"))
            .collect()
    }

    fn wanted(names: &[DnsName]) -> Wanted<'_> {
        Wanted {
            names,
            key_type: KeyType::EcdsaP384,
            before_days: 30,
        }
    }

    #[test]
    fn ninety_day_certificate_renews_thirty_days_before() {
        let cert = inspection(90, &["a.org"], KeyType::EcdsaP384);
        let names = names(&["a.org"]);
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
        let names = names(&["a.org"]);
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
        let same = names(&["b.org", "a.org"]);
        let RenewalDecision::Due(reason) = cert.decide(wanted(&same), now) else {
            panic!("key type change not noticed");
        };
        assert_eq!(reason.label(), "key_type_changed");
        assert!(reason.to_string().contains("key type"), "{reason}");
        let other = names(&["a.org", "c.org"]);
        let RenewalDecision::Due(reason) = cert.decide(wanted(&other), now) else {
            panic!("name change not noticed");
        };
        let reason = reason.to_string();
        assert!(
            reason.contains("c.org") && reason.contains("b.org"),
            "{reason}"
        );
    }
}
