//! DNS names of identifiers and where their challenge records live.
//!
//! Both halves of fleetcert derive record names from here: `request` to tell the host where its
//! TXT values go, `publish` to check that a host asks for exactly that name and nothing else.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest presentation-format name without the trailing dot (RFC 1035 section 2.3.4).
const MAX_NAME_LEN: usize = 253;
/// Longest label (RFC 1035 section 2.3.4).
const MAX_LABEL_LEN: usize = 63;

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

/// Why a string is not a usable DNS name.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum NameError {
    /// Empty, too long, or a label that is empty or too long.
    #[error("`{0}` is not a DNS name: labels of 1 to 63 characters, 253 in all")]
    Length(String),
    /// A character outside letters, digits, `-` and `_`.
    #[error("`{0}` is not a DNS name: only letters, digits, `-` and `_` are allowed in labels")]
    Character(String),
    /// A wildcard anywhere but as the whole first label.
    #[error("`{0}` is not a DNS name: `*` may only be the whole first label, as in *.example.org")]
    Wildcard(String),
}

/// Checks a name and returns it in canonical form: lower case, no trailing dot.
///
/// `allow_wildcard` admits a leading `*.` label, as certificate identifiers may carry.
pub(crate) fn canonical_name(text: &str, allow_wildcard: bool) -> Result<String, NameError> {
    let name = text.strip_suffix('.').unwrap_or(text).to_ascii_lowercase();
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(NameError::Length(text.to_owned()));
    }
    let body = match name.strip_prefix("*.") {
        Some(rest) if allow_wildcard => rest,
        _ => &name,
    };
    for label in body.split('.') {
        if label.is_empty() || label.len() > MAX_LABEL_LEN {
            return Err(NameError::Length(text.to_owned()));
        }
        if label.contains('*') {
            return Err(NameError::Wildcard(text.to_owned()));
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        if !label.chars().all(allowed) || label.starts_with('-') || label.ends_with('-') {
            return Err(NameError::Character(text.to_owned()));
        }
    }
    Ok(name)
}

/// The name whose authorization a (possibly wildcard) identifier needs: `*.x` validates at `x`.
pub(crate) fn base_name(identifier: &str) -> &str {
    identifier.strip_prefix("*.").unwrap_or(identifier)
}

/// `_acme-challenge.<base name>.`, the name the CA queries.
pub(crate) fn acme_challenge_name(identifier: &str) -> String {
    format!("_acme-challenge.{}.", base_name(identifier))
}

/// The fully qualified record name in the signing zone that holds `identifier`'s TXT value.
pub(crate) fn record_name(identifier: &str, zone: &str, mode: ChallengeRecords) -> String {
    match mode {
        ChallengeRecords::PerName => format!("{}.{zone}.", base_name(identifier)),
        ChallengeRecords::Shared => format!("{zone}."),
    }
}

/// Whether `name` (fully qualified, trailing dot optional) is `zone` or lies below it.
pub(crate) fn is_in_zone(name: &str, zone: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    let zone = zone.strip_suffix('.').unwrap_or(zone).to_ascii_lowercase();
    name == zone || name.ends_with(&format!(".{zone}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_name_lowercases_and_strips_the_root_dot() {
        assert_eq!(
            canonical_name("Web01.Example.ORG.", false),
            Ok("web01.example.org".into())
        );
    }

    #[test]
    fn canonical_name_refuses_zone_file_syntax() {
        for bad in [
            "a b.org",
            "a\"b.org",
            "a;b.org",
            "$INCLUDE.org",
            "a\nb.org",
            "a..org",
            "",
        ] {
            assert!(canonical_name(bad, false).is_err(), "{bad:?} accepted");
        }
        assert!(canonical_name(&format!("{}.org", "a".repeat(64)), false).is_err());
    }

    #[test]
    fn wildcards_only_where_allowed_and_only_leftmost() {
        assert_eq!(
            canonical_name("*.example.org", true),
            Ok("*.example.org".into())
        );
        assert!(canonical_name("*.example.org", false).is_err());
        assert!(canonical_name("a.*.example.org", true).is_err());
        assert!(canonical_name("a*.example.org", true).is_err());
    }

    #[test]
    fn wildcard_uses_its_base_names_record() {
        let per_name = ChallengeRecords::PerName;
        assert_eq!(
            record_name("*.x.example.org", "acme.net", per_name),
            "x.example.org.acme.net."
        );
        assert_eq!(
            record_name("x.example.org", "acme.net", per_name),
            "x.example.org.acme.net."
        );
        assert_eq!(
            record_name("x.org", "acme.net", ChallengeRecords::Shared),
            "acme.net."
        );
        assert_eq!(acme_challenge_name("*.x.org"), "_acme-challenge.x.org.");
    }

    #[test]
    fn zone_membership_is_by_label() {
        assert!(is_in_zone("a.acme.net.", "acme.net"));
        assert!(is_in_zone("acme.net", "acme.net."));
        assert!(!is_in_zone("evilacme.net.", "acme.net"));
        assert!(!is_in_zone("net.", "acme.net"));
    }
}
