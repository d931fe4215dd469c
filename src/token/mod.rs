//! The token document: what a host hands to the central publish step, and where its records go.
//!
//! `request` writes it; `publish` reads it from every host and trusts none of it
//! ([`validate`] checks every field against the zone's [`Policy`]). The record placement
//! ([`ChallengeRecords`], [`record_name`]) lives here because both halves must agree on it:
//! `request` tells a host where its values go, `publish` refuses a record anywhere else.

mod validate;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::cert::RuleKind;
use crate::dns::{DnsName, NameError};

#[cfg(fuzzing)]
pub(crate) use validate::validate_bytes;
pub(crate) use validate::{
    Refusal, Submission, TokenError, TokenSource, Tokens, own_submission, read_tokens,
};

/// The only document version this build reads and writes.
pub(crate) const VERSION: u32 = 1;

/// One host's challenge records and the state of each of its certificates, as on the wire.
///
/// Fields are plain strings on purpose: this is what a (possibly hostile) host sent, and
/// [`validate`] turns it into checked types or refuses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenDocument {
    pub(crate) version: u32,
    pub(crate) host: String,
    /// Whether this `request` created an order (Ansible's `changed`).
    #[serde(default)]
    pub(crate) changed: bool,
    pub(crate) records: Vec<Record>,
    #[serde(default)]
    pub(crate) certs: Vec<CertState>,
    /// `request --check`: what `fleetcert check` says about the host after this run. Not
    /// the zone's business: `publish` reads past it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) check: Option<CheckVerdict>,
}

/// `fleetcert check`'s verdict carried in another command's report (`--check` of request,
/// finalize and renew), so a daily run needs no process of its own for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CheckVerdict {
    /// The exit code `check` would have: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
    pub(crate) code: u8,
    /// The line `check` would print, performance data included.
    pub(crate) line: String,
}

/// One TXT value to publish in the signing zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Record {
    /// Fully qualified owner name in the signing zone, with the trailing dot.
    pub(crate) name: String,
    /// The key authorization digest: 43 base64url characters.
    pub(crate) value: String,
    /// The certificate it belongs to.
    pub(crate) cert: String,
    /// The identifier being validated (`*.x` for a wildcard).
    pub(crate) identifier: String,
}

/// Where one certificate stands after `request`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CertState {
    pub(crate) name: String,
    pub(crate) status: CertStatus,
    /// Expiry of the certificate on disk (RFC 3339), if there is one.
    pub(crate) not_after: Option<String>,
    /// Why it is due, or why it failed, in one line.
    pub(crate) reason: String,
    /// When the certificate on disk renews (RFC 3339): its moment in the CA's ARI window,
    /// or by the days rule with its spread (docs/renewal.md). Absent without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) renew_at: Option<String>,
    /// The rule that set `renew_at`, for this run's metrics (commands/record.rs). Not in the
    /// document: the zone side has no use for it, and older publishers refuse unknown fields.
    #[serde(skip)]
    pub(crate) renew_rule: Option<RuleKind>,
    /// The serial of the certificate on disk (upper-case hex), for this run's metrics to
    /// tell whether `renew_at` is still about the installed one. Not in the document.
    #[serde(skip)]
    pub(crate) serial: Option<String>,
    /// Only when the CA's rate limit stopped the order: which limit, and until when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) rate_limit: Option<RateLimited>,
}

/// A rate limit that stopped a certificate's order, for the fleet summary to group by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RateLimited {
    /// The limit's name when the CA named it (Let's Encrypt: `new-orders-per-account`, ...).
    pub(crate) limit: Option<String>,
    /// No new order before this moment (RFC 3339).
    pub(crate) retry_after: String,
}

/// The state of one certificate in a token document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum CertStatus {
    /// Nothing to do.
    Valid,
    /// An order waits for its records.
    Pending,
    /// An order needs no new record (a reused authorization, or an issuer without a CA).
    Ready,
    /// This certificate could not be requested.
    Failed,
}

/// A DNS-01 TXT value: the unpadded base64url SHA-256 digest of a key authorization
/// (RFC 8555 section 8.4). Anything else never reaches a zone.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub(crate) struct TxtValue(String);

/// Length of a DNS-01 TXT value.
const TXT_VALUE_LEN: usize = 43;

/// A string that is not a DNS-01 TXT value.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
#[error("is not 43 base64url characters (A-Z a-z 0-9 - _), as a DNS-01 digest is")]
pub(crate) struct NotTxtValue;

impl TryFrom<String> for TxtValue {
    type Error = NotTxtValue;

    fn try_from(value: String) -> Result<Self, NotTxtValue> {
        let digest = value.len() == TXT_VALUE_LEN
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if digest {
            Ok(Self(value))
        } else {
            Err(NotTxtValue)
        }
    }
}

impl From<TxtValue> for String {
    fn from(value: TxtValue) -> Self {
        value.0
    }
}

impl TxtValue {
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TxtValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One checked TXT record: an owner name inside the signing zone and a digest.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TxtRecord {
    pub(crate) name: DnsName,
    pub(crate) value: TxtValue,
}

/// Where a name's challenge record goes in the signing zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum ChallengeRecords {
    /// `_acme-challenge.<id>` is a CNAME to `<id>.<signing zone>.`
    #[default]
    PerName,
    /// Every `_acme-challenge` is a CNAME to the signing zone's apex.
    Shared,
}

impl fmt::Display for ChallengeRecords {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::PerName => "per-name",
            Self::Shared => "shared",
        })
    }
}

/// The record name in the signing zone that holds `identifier`'s TXT value (a wildcard
/// uses its base name's). Fails only when `<base>.<zone>` is longer than a DNS name may be,
/// which the config check catches before any order is made.
pub(crate) fn record_name(
    identifier: &DnsName,
    zone: &DnsName,
    mode: ChallengeRecords,
) -> Result<DnsName, NameError> {
    match mode {
        ChallengeRecords::PerName => identifier.base().under(zone),
        ChallengeRecords::Shared => Ok(zone.clone()),
    }
}

/// What `publish` accepts from hosts: the zone, where records go, and who may ask for what.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    pub(crate) zone: DnsName,
    pub(crate) records: ChallengeRecords,
    /// Host (as the transport names it) -> identifiers it may publish for; `None`: any.
    pub(crate) allow: Option<BTreeMap<DnsName, BTreeSet<DnsName>>>,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A valid TXT value for tests.
    pub(crate) const VALUE: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123-_x";

    pub(crate) fn value(text: &str) -> TxtValue {
        TxtValue::try_from(text.to_owned()).expect("txt value")
    }

    #[test]
    fn txt_values_are_exactly_43_base64url_characters() {
        let ok = |text: String| TxtValue::try_from(text).is_ok();
        assert!(ok("a".repeat(43)));
        assert!(ok(VALUE.to_owned()));
        assert!(!ok("a".repeat(44)));
        assert!(!ok("a".repeat(42)));
        assert!(!ok(format!("{}\"", "a".repeat(42))));
        assert!(!ok(format!("{}\n", "a".repeat(42))));
        assert!(!ok(format!("{}=", "a".repeat(42))));
    }

    #[test]
    fn design_example_round_trips() {
        let text = r#"{"version": 1, "host": "web01.example.org",
            "records": [{"name": "web01.example.org.acme.example.net.",
              "value": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
              "cert": "main", "identifier": "web01.example.org"}],
            "certs": [{"name": "main", "status": "pending", "not_after": null,
              "reason": "no certificate yet"}]}"#;
        let doc: TokenDocument = serde_json::from_str(text).expect("parse");
        assert_eq!(doc.certs[0].status, CertStatus::Pending);
        let again: TokenDocument =
            serde_json::from_str(&serde_json::to_string(&doc).expect("write")).expect("parse");
        assert_eq!(doc, again);
    }

    #[test]
    fn a_wildcard_uses_its_base_names_record() {
        let zone = DnsName::parse("acme.net").expect("zone");
        let id = |text| DnsName::parse_identifier(text).expect("identifier");
        let per_name = ChallengeRecords::PerName;
        assert_eq!(
            record_name(&id("*.x.example.org"), &zone, per_name)
                .expect("fits")
                .fqdn(),
            "x.example.org.acme.net."
        );
        assert_eq!(
            record_name(&id("x.org"), &zone, ChallengeRecords::Shared).expect("apex"),
            zone
        );
    }
}
