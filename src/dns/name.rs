//! [`DnsName`]: a checked, canonical DNS name, the one way names travel through fleetcert.
//!
//! A name is checked once, where it enters (config, token document, CA answer), and from then
//! on it is a `DnsName`: lower case, stored without the trailing dot, letters, digits, `-` and
//! `_` only (so nothing in it means anything in a zone file), and a leading `*.` only when it
//! was parsed as a certificate identifier. Where a trailing dot is wanted (zone files, DNS
//! answers, token records) [`DnsName::fqdn`] gives it; nothing converts by hand.

use std::fmt;
use std::str::FromStr as _;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest presentation-format name without the trailing dot (RFC 1035 section 2.3.4).
const MAX_NAME_LEN: usize = 253;
/// Longest label (RFC 1035 section 2.3.4).
const MAX_LABEL_LEN: usize = 63;

/// Why a string is not a usable DNS name. It names the rule, never the (untrusted) text: the
/// caller shows the text escaped, beside the key or record it came from.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
pub(crate) enum NameError {
    /// Empty, too long, or a label that is empty or too long.
    #[error("is not a DNS name: labels of 1 to 63 characters, 253 in all")]
    Length,
    /// A character outside letters, digits, `-` and `_`, or a label that starts or ends in `-`.
    #[error(
        "is not a DNS name: only letters, digits, `-` and `_` may appear in labels, and a label \
         neither starts nor ends with `-`"
    )]
    Character,
    /// A wildcard anywhere but as the whole first label.
    #[error("is not a DNS name: `*` may only be the whole first label, as in *.example.org")]
    Wildcard,
    /// An IP address, which is not a name (and not what DNS-01 validates).
    #[error("is an IP address, not a DNS name: DNS-01 validates names only")]
    Address,
}

/// A checked, canonical DNS name (see the module doc).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct DnsName(String);

impl DnsName {
    /// A host or zone name: no wildcard.
    pub(crate) fn parse(text: &str) -> Result<Self, NameError> {
        Self::check(text, false)
    }

    /// A certificate identifier: a leading `*.` label is allowed.
    pub(crate) fn parse_identifier(text: &str) -> Result<Self, NameError> {
        Self::check(text, true)
    }

    fn check(text: &str, allow_wildcard: bool) -> Result<Self, NameError> {
        let name = text.strip_suffix('.').unwrap_or(text).to_ascii_lowercase();
        if name.is_empty() || name.len() > MAX_NAME_LEN {
            return Err(NameError::Length);
        }
        if name.parse::<std::net::IpAddr>().is_ok() {
            return Err(NameError::Address);
        }
        let body = match name.strip_prefix("*.") {
            Some(rest) if allow_wildcard => rest,
            _ => &name,
        };
        for label in body.split('.') {
            if label.is_empty() || label.len() > MAX_LABEL_LEN {
                return Err(NameError::Length);
            }
            if label.contains('*') {
                return Err(NameError::Wildcard);
            }
            let allowed = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
            if !label.chars().all(allowed) || label.starts_with('-') || label.ends_with('-') {
                return Err(NameError::Character);
            }
        }
        Ok(Self(name))
    }

    /// The name without the trailing dot, as people write host names.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// The fully qualified form with the trailing dot, as zone files and DNS answers write it.
    pub(crate) fn fqdn(&self) -> String {
        format!("{}.", self.0)
    }

    /// Whether this identifier is a wildcard (`*.x`).
    pub(crate) fn is_wildcard(&self) -> bool {
        self.0.starts_with("*.")
    }

    /// The name whose authorization a wildcard needs: `*.x` validates at `x`.
    pub(crate) fn base(&self) -> Self {
        match self.0.strip_prefix("*.") {
            Some(rest) => Self(rest.to_owned()),
            None => self.clone(),
        }
    }

    /// Whether this name is `zone` or lies below it (by whole labels).
    pub(crate) fn is_in(&self, zone: &Self) -> bool {
        self.0 == zone.0
            || self
                .0
                .strip_suffix(zone.0.as_str())
                .is_some_and(|head| head.ends_with('.'))
    }

    /// `<self>.<zone>`, checked again (the two together may be too long).
    pub(crate) fn under(&self, zone: &Self) -> Result<Self, NameError> {
        Self::parse(&format!("{}.{}", self.0, zone.0))
    }

    /// `<label>.<self>` for a fixed label of ours (`_acme-challenge`).
    pub(crate) fn child(&self, label: &str) -> Result<Self, NameError> {
        Self::parse(&format!("{label}.{}", self.0))
    }

    /// The name as hickory wants it in a question (fully qualified).
    pub(crate) fn to_hickory(&self) -> hickory_proto::rr::Name {
        // A checked name is always valid for hickory; the fallback is the root, which no
        // question of ours is about, so a (theoretical) mismatch shows as a wrong answer.
        let mut name = hickory_proto::rr::Name::from_str(&self.fqdn()).unwrap_or_default();
        name.set_fqdn(true);
        name
    }

    /// Reads a name from a DNS answer; `None` when it is not a name fleetcert would accept.
    pub(crate) fn from_hickory(name: &hickory_proto::rr::Name) -> Option<Self> {
        Self::parse(&name.to_ascii()).ok()
    }
}

impl fmt::Display for DnsName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for DnsName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DnsName({})", self.0)
    }
}

impl Serialize for DnsName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// Reads a name written by fleetcert itself (state files); the trailing dot is optional and
/// a wildcard is accepted, so the same type reads identifiers and record names.
impl<'de> Deserialize<'de> for DnsName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse_identifier(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> DnsName {
        DnsName::parse(text).expect("name")
    }

    #[test]
    fn names_are_lower_case_without_the_root_dot() {
        assert_eq!(name("Web01.Example.ORG.").as_str(), "web01.example.org");
        assert_eq!(name("web01.example.org").fqdn(), "web01.example.org.");
    }

    #[test]
    fn zone_file_syntax_and_addresses_are_refused() {
        for bad in [
            "a b.org",
            "a\"b.org",
            "a;b.org",
            "$INCLUDE.org",
            "a\nb.org",
            "a..org",
            "",
            "-a.org",
        ] {
            assert!(DnsName::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            DnsName::parse(&format!("{}.org", "a".repeat(64))),
            Err(NameError::Length)
        );
        assert_eq!(
            DnsName::parse(&format!("{}.org", "a.".repeat(126))),
            Err(NameError::Length)
        );
        assert_eq!(DnsName::parse("192.0.2.1"), Err(NameError::Address));
        assert_eq!(DnsName::parse("2001:db8::1"), Err(NameError::Address));
    }

    #[test]
    fn wildcards_only_as_identifiers_and_only_leftmost() {
        let wildcard = DnsName::parse_identifier("*.Example.org").expect("wildcard");
        assert!(wildcard.is_wildcard());
        assert_eq!(wildcard.base(), name("example.org"));
        assert_eq!(DnsName::parse("*.example.org"), Err(NameError::Wildcard));
        assert!(DnsName::parse_identifier("a.*.example.org").is_err());
        assert!(DnsName::parse_identifier("a*.example.org").is_err());
    }

    #[test]
    fn zone_membership_is_by_whole_labels() {
        let zone = name("acme.net");
        assert!(name("a.acme.net").is_in(&zone));
        assert!(name("acme.net").is_in(&zone));
        assert!(!name("evilacme.net").is_in(&zone));
        assert!(!name("net").is_in(&zone));
    }

    #[test]
    fn composed_names_are_checked_again() {
        let zone = name("acme.net");
        assert_eq!(
            name("x.org").under(&zone).expect("fits").as_str(),
            "x.org.acme.net"
        );
        let long = name(&format!("{}org", "a.".repeat(124)));
        assert_eq!(long.under(&zone), Err(NameError::Length));
        assert_eq!(
            name("x.org").child("_acme-challenge").expect("fits").fqdn(),
            "_acme-challenge.x.org."
        );
    }

    #[test]
    fn hickory_round_trip() {
        let original = name("a.example.org");
        let back = DnsName::from_hickory(&original.to_hickory()).expect("name");
        assert_eq!(back, original);
    }
}
