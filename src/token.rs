//! The token document: what a host hands to the central publish step.
//!
//! `request` writes it; `publish` reads it from every host and trusts none of it.

use serde::{Deserialize, Serialize};

/// The only document version this build reads and writes.
pub(crate) const VERSION: u32 = 1;

/// One host's challenge records and the state of each of its certificates.
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
}

/// The state of one certificate in a token document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum CertStatus {
    /// Nothing to do.
    Valid,
    /// An order waits for its records.
    Pending,
    /// An order needs no new record (a reused authorization).
    Ready,
    /// This certificate could not be requested.
    Failed,
}

/// Length of a DNS-01 TXT value: base64url of a SHA-256 digest, unpadded (RFC 8555 8.4).
pub(crate) const TXT_VALUE_LEN: usize = 43;

/// Whether `value` can be a DNS-01 TXT value; anything else never reaches a zone file.
pub(crate) fn is_txt_value(value: &str) -> bool {
    value.len() == TXT_VALUE_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txt_values_are_exactly_43_base64url_characters() {
        let good = "a".repeat(43);
        assert!(is_txt_value(&good));
        assert!(is_txt_value("Ab-_0123456789Ab-_0123456789Ab-_0123456789x"));
        assert!(!is_txt_value(&"a".repeat(44)));
        assert!(!is_txt_value(&"a".repeat(42)));
        assert!(!is_txt_value(&format!("{}\"", "a".repeat(42))));
        assert!(!is_txt_value(&format!("{}\n", "a".repeat(42))));
        assert!(!is_txt_value(&format!("{}=", "a".repeat(42))));
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
}
