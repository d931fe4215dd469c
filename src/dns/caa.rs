//! CAA before ordering (RFC 8659): may this CA issue for these names?
//!
//! For each name, the *relevant record set* is the CAA set of the name itself or, when it
//! has none, of the closest ancestor that has one (section 3). The host's recursive resolver
//! follows CNAMEs as the CA's resolver does, so a CAA query through it answers for the
//! target of an alias. A name with no set anywhere up to the root allows every CA.
//!
//! A set allows a CA when one of its `issue` properties (`issuewild` for a wildcard name,
//! when the set has any) names one of the CA's identities (the directory's
//! `meta.caaIdentities`, or `caa_identity` in the config); a set with an `issue` that names
//! nobody (`0 issue ";"`) allows none, and a set with only other properties (say, `iodef`)
//! restricts nothing. An unknown property marked critical forbids issuing (section 4.1).
//! Asking first costs one lookup per label; ordering where CAA forbids it costs a failed
//! validation at the CA, which counts against its rate limit.

use std::net::SocketAddr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::CAA;
use hickory_proto::rr::{RData, RecordType};

use super::{DnsError, DnsName, Recursion, query};

/// The property tags fleetcert understands: what a CA reads (RFC 8659 section 4).
const KNOWN_TAGS: [&str; 3] = ["issue", "issuewild", "iodef"];

/// The CAA set that applies to one name: where it was found, and its records.
#[derive(Debug, Clone)]
pub(crate) struct CaaSet {
    /// The name the set was found at: the name itself or an ancestor.
    pub(crate) owner: DnsName,
    records: Vec<CAA>,
}

/// Why CAA keeps a CA from issuing for a name, or could not be checked.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CaaError {
    /// The relevant set names other CAs (or none).
    #[error(
        "CAA at {owner}. ({records}) does not allow this CA for {name}: add `{owner}. CAA 0 {tag} \"{identity}\"`"
    )]
    NotAllowed {
        name: DnsName,
        owner: DnsName,
        /// The set as the zone would write it, escaped.
        records: String,
        tag: &'static str,
        /// The identity the fix names: the CA's first.
        identity: String,
    },
    /// The set restricts issuing, and fleetcert does not know what this CA calls itself.
    #[error(
        "CAA at {owner}. ({records}) restricts which CAs issue for {name}, and this CA names no \
         CAA identity in its directory: set `caa_identity` of this CA in the host config"
    )]
    NoIdentity {
        name: DnsName,
        owner: DnsName,
        records: String,
    },
    /// The resolver did not answer.
    #[error("cannot check CAA for {name}: {source}; check `resolver` in the host config")]
    Resolver {
        name: DnsName,
        #[source]
        source: DnsError,
    },
    /// The resolver answered with an error code: a CA must not issue then either.
    #[error(
        "cannot check CAA for {name}: resolver {server} answered {code} for {asked}.; a CA refuses to issue while it cannot read CAA"
    )]
    Refused {
        name: DnsName,
        asked: DnsName,
        server: SocketAddr,
        code: ResponseCode,
    },
}

/// The CAA set that applies to `name` (a wildcard's base name is looked up), `None` when no
/// name from it up to the top-level domain has one.
pub(crate) async fn relevant_set(
    resolver: SocketAddr,
    name: &DnsName,
) -> Result<Option<CaaSet>, CaaError> {
    let mut current = Some(name.base());
    while let Some(asked) = current {
        let answer = query(resolver, &asked, RecordType::CAA, Recursion::Desired)
            .await
            .map_err(|source| CaaError::Resolver {
                name: name.clone(),
                source,
            })?;
        let code = answer.response_code();
        if code != ResponseCode::NoError && code != ResponseCode::NXDomain {
            return Err(CaaError::Refused {
                name: name.clone(),
                asked,
                server: resolver,
                code,
            });
        }
        // Through a CNAME the resolver answers with the alias and then the target's set.
        let records: Vec<CAA> = answer
            .answers()
            .filter_map(|data| match data {
                RData::CAA(caa) => Some(caa.clone()),
                _ => None,
            })
            .collect();
        if !records.is_empty() {
            return Ok(Some(CaaSet {
                owner: asked,
                records,
            }));
        }
        current = parent(&asked);
    }
    Ok(None)
}

/// The name one label up; `None` above a top-level domain (the root holds no CAA).
fn parent(name: &DnsName) -> Option<DnsName> {
    let (_, rest) = name.as_str().split_once('.')?;
    DnsName::parse(rest).ok()
}

impl CaaSet {
    /// Whether this set allows a CA known by `identities` to issue for `name`.
    pub(crate) fn allows(&self, name: &DnsName, identities: &[String]) -> Result<(), CaaError> {
        let critical_unknown = self.records.iter().any(|caa| {
            caa.issuer_critical
                && !KNOWN_TAGS
                    .iter()
                    .any(|tag| caa.tag.eq_ignore_ascii_case(tag))
        });
        let with_tag = |tag: &str| -> Vec<&CAA> {
            self.records
                .iter()
                .filter(|caa| caa.tag.eq_ignore_ascii_case(tag))
                .collect()
        };
        let wild = with_tag("issuewild");
        let (tag, properties) = if name.is_wildcard() && !wild.is_empty() {
            ("issuewild", wild)
        } else {
            ("issue", with_tag("issue"))
        };
        if properties.is_empty() && !critical_unknown {
            return Ok(());
        }
        if identities.is_empty() && !critical_unknown {
            return Err(CaaError::NoIdentity {
                name: name.clone(),
                owner: self.owner.clone(),
                records: self.shown(),
            });
        }
        let named = |caa: &&CAA| {
            issuer_domain(&caa.value).is_some_and(|domain| {
                identities
                    .iter()
                    .any(|identity| identity.eq_ignore_ascii_case(&domain))
            })
        };
        if !critical_unknown && properties.iter().any(named) {
            return Ok(());
        }
        Err(CaaError::NotAllowed {
            name: name.clone(),
            owner: self.owner.clone(),
            records: self.shown(),
            tag,
            // From the CA's directory: escaped like anything from outside.
            identity: identities.first().map_or_else(
                || "<the CA's identity>".to_owned(),
                |identity| crate::shown::bare(identity, crate::shown::MAX_VALUE),
            ),
        })
    }

    /// The set in zone-file syntax, one record after another, escaped and bounded.
    fn shown(&self) -> String {
        let text = self
            .records
            .iter()
            .map(|caa| {
                format!(
                    "{} {} \"{}\"",
                    caa.flags(),
                    caa.tag,
                    String::from_utf8_lossy(&caa.value)
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        crate::shown::bare(&text, crate::shown::MAX_EXCERPT)
    }
}

/// The issuer domain of an `issue` value (`letsencrypt.org; accounturi=...`); `None` for
/// an empty one (`;`), which names no CA.
fn issuer_domain(value: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(value);
    let domain = text.split(';').next().unwrap_or("").trim();
    (!domain.is_empty()).then(|| domain.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> DnsName {
        DnsName::parse_identifier(text).expect("name")
    }

    fn caa(critical: bool, tag: &str, value: &str) -> CAA {
        let mut caa = CAA::new_issue(critical, None, Vec::new());
        caa.tag = tag.to_owned();
        caa.value = value.as_bytes().to_vec();
        caa
    }

    fn set(records: Vec<CAA>) -> CaaSet {
        CaaSet {
            owner: name("example.org"),
            records,
        }
    }

    fn ids(list: &[&str]) -> Vec<String> {
        list.iter().map(|id| (*id).to_owned()).collect()
    }

    #[test]
    fn issue_allows_only_the_named_ca() {
        let only_a = set(vec![caa(false, "issue", "ca-a.test; accounturi=x")]);
        let www = name("www.example.org");
        assert!(only_a.allows(&www, &ids(&["CA-A.test"])).is_ok());
        let err = only_a
            .allows(&www, &ids(&["ca-b.test"]))
            .expect_err("refused")
            .to_string();
        assert!(
            err.contains("CAA at example.org.")
                && err.contains("0 issue \"ca-a.test; accounturi=x\"")
                && err.contains("add `example.org. CAA 0 issue \"ca-b.test\"`"),
            "{err}"
        );
    }

    #[test]
    fn iodef_only_restricts_nothing_and_an_empty_issue_forbids_all() {
        let iodef = set(vec![caa(false, "iodef", "mailto:ops@example.org")]);
        assert!(iodef.allows(&name("a.example.org"), &[]).is_ok());
        let nobody = set(vec![caa(false, "issue", ";")]);
        assert!(
            nobody
                .allows(&name("a.example.org"), &ids(&["ca-a.test"]))
                .is_err()
        );
    }

    #[test]
    fn issuewild_decides_for_wildcards_when_present() {
        let records = set(vec![
            caa(false, "issue", "ca-a.test"),
            caa(false, "issuewild", "ca-b.test"),
        ]);
        let wild = name("*.example.org");
        assert!(records.allows(&wild, &ids(&["ca-b.test"])).is_ok());
        let err = records
            .allows(&wild, &ids(&["ca-a.test"]))
            .expect_err("wild");
        assert!(
            err.to_string().contains("CAA 0 issuewild \"ca-a.test\""),
            "{err}"
        );
        assert!(
            records
                .allows(&name("example.org"), &ids(&["ca-a.test"]))
                .is_ok()
        );
    }

    #[test]
    fn an_unknown_critical_property_forbids_and_no_identity_is_named() {
        let critical = set(vec![
            caa(false, "issue", "ca-a.test"),
            caa(true, "tbs", "x"),
        ]);
        assert!(
            critical
                .allows(&name("example.org"), &ids(&["ca-a.test"]))
                .is_err()
        );
        let restricted = set(vec![caa(false, "issue", "ca-a.test")]);
        let err = restricted
            .allows(&name("example.org"), &[])
            .expect_err("no id");
        assert!(err.to_string().contains("caa_identity"), "{err}");
    }

    #[test]
    fn the_walk_climbs_one_label_at_a_time_to_the_tld() {
        assert_eq!(
            parent(&name("a.b.example.org")),
            Some(name("b.example.org"))
        );
        assert_eq!(parent(&name("org")), None);
    }
}
