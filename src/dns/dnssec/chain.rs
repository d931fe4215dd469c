//! Before ordering: what the host's resolver, asked as a CA's resolver is asked, says about
//! each name the CA will look up ([`Verdict`]), and for a bogus one where its chain breaks.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::StreamExt as _;
use hickory_proto::dnssec::rdata::{DNSSECRData, DS};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::{Name, RData, RecordType};

use crate::dns::client::{Answer, Bits, ask};
use crate::dns::{DnsError, DnsName, Recursion};
use crate::shown::{MAX_EXCERPT, bare};

use super::verify::{
    Break, Said, ZoneKeys, apex_keys, check_zone, shown_name, signatures, unix_now_u32, verify_in,
};

/// Zones looked at above the zone of a name when a chain is bogus: enough for any real
/// delegation depth, and a bound on the questions a hostile answer can cause.
const MAX_ZONES: usize = 8;
/// Names asked about at once: a certificate with 100 names does not flood the resolver.
const CONCURRENCY: usize = 16;
/// EDNS option code of an extended DNS error (RFC 8914 section 2).
const EDE: u16 = 15;

/// What a resolver says about one name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Validated (AD).
    Secure,
    /// Not signed, or signed without a chain of trust: fine for a CA.
    Insecure,
    /// Signatures came back but no AD: the resolver does not validate (or the zone is an
    /// island of security, which a CA treats as insecure).
    NotValidated,
    /// It does not validate.
    Bogus(Break),
    /// SERVFAIL also with CD: no data at all, which is not a DNSSEC question.
    Broken(ResponseCode),
}

/// A name the CA will look up that does not validate, for one certificate.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ChainError {
    /// Bogus: refused before ordering.
    #[error("{name}. {rtype} is bogus at resolver {resolver} (a CA would fail it): {cause}")]
    Bogus {
        name: DnsName,
        rtype: RecordType,
        resolver: SocketAddr,
        cause: Break,
    },
}

/// Said once per process: the same resolver answers every certificate's questions.
static NOT_VALIDATING_SAID: AtomicBool = AtomicBool::new(false);

/// Checks, as the CA's resolver would, that `_acme-challenge.<base>` for each of `bases` and
/// the signing zone are not bogus. A resolver that returns signatures without validating them
/// is warned about once; a name that cannot be resolved at all is left to the other checks.
pub(crate) async fn check_chains(
    resolver: SocketAddr,
    bases: &[DnsName],
    signing_zone: &DnsName,
) -> Result<(), Vec<ChainError>> {
    let mut asked: Vec<(DnsName, RecordType)> = vec![(signing_zone.clone(), RecordType::SOA)];
    asked.extend(
        bases
            .iter()
            .filter_map(|base| crate::dns::precheck::challenge_name(base).ok())
            .map(|name| (name, RecordType::CNAME)),
    );
    let verdicts: Vec<_> = futures_util::stream::iter(asked)
        .map(|(name, rtype)| async move {
            let verdict = verdict(resolver, &name, rtype).await;
            (name, rtype, verdict)
        })
        .buffered(CONCURRENCY)
        .collect()
        .await;
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for (name, rtype, verdict) in verdicts {
        let verdict = match verdict {
            Ok(verdict) => verdict,
            Err(err) => {
                tracing::warn!(error = %err, "cannot ask the resolver whether {name}. validates; not checked");
                continue;
            }
        };
        match verdict {
            Verdict::Secure | Verdict::Insecure => {}
            Verdict::NotValidated => {
                if !NOT_VALIDATING_SAID.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        %resolver,
                        "resolver {resolver} returns {name}. {rtype} signed but not validated \
                         (no AD): it does not validate DNSSEC, or no DS at the parent leads to \
                         the zone; the CA's resolvers validate, so a broken chain is not caught \
                         before ordering; point `resolver` at a validating resolver"
                    );
                }
            }
            Verdict::Broken(code) => {
                tracing::warn!(%resolver, %code, "{name}. {rtype} cannot be resolved at all, also with checking disabled; not a DNSSEC question");
            }
            Verdict::Bogus(cause) => {
                // One break seen through several names is said once.
                if seen.insert(cause.to_string()) {
                    problems.push(ChainError::Bogus {
                        name,
                        rtype,
                        resolver,
                        cause,
                    });
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// What `resolver` says about `name` `rtype` (see the module doc).
pub(crate) async fn verdict(
    resolver: SocketAddr,
    name: &DnsName,
    rtype: RecordType,
) -> Result<Verdict, DnsError> {
    let answer = ask(resolver, name, rtype, Bits::signed(Recursion::Desired)).await?;
    let code = answer.response_code();
    if code == ResponseCode::NoError || code == ResponseCode::NXDomain {
        let meta = &answer.message.metadata;
        return Ok(if meta.authentic_data {
            Verdict::Secure
        } else if signatures(&answer).next().is_some() {
            Verdict::NotValidated
        } else {
            Verdict::Insecure
        });
    }
    if code != ResponseCode::ServFail {
        return Ok(Verdict::Broken(code));
    }
    let unchecked = ask(resolver, name, rtype, Bits::unchecked(Recursion::Desired)).await?;
    let code = unchecked.response_code();
    if code != ResponseCode::NoError && code != ResponseCode::NXDomain {
        return Ok(Verdict::Broken(code));
    }
    let said = Said(extended_error(&answer));
    Ok(Verdict::Bogus(
        diagnose(resolver, name, rtype, &unchecked, said).await,
    ))
}

/// The extended DNS error of an answer (RFC 8914): `INFO-CODE: text`, escaped and bounded.
fn extended_error(answer: &Answer) -> Option<String> {
    let edns = answer.message.edns.as_ref()?;
    let Some(EdnsOption::Unknown(_, data)) = edns.option(EdnsCode::Unknown(EDE)) else {
        return None;
    };
    let code = u16::from_be_bytes([*data.first()?, *data.get(1)?]);
    let text = String::from_utf8_lossy(data.get(2..).unwrap_or_default());
    Some(bare(&format!("EDE {code}: {}", text.trim()), MAX_EXCERPT))
}

/// Where the chain of `name` breaks, from `unchecked` (its answer with CD) and the zones
/// above it; [`Break::Unexplained`] when nothing looks wrong from here.
async fn diagnose(
    resolver: SocketAddr,
    name: &DnsName,
    rtype: RecordType,
    unchecked: &Answer,
    said: Said,
) -> Break {
    let now = unix_now_u32();
    // The zone of the name: the signer of its answer, else the SOA of a negative answer.
    let leaf = signatures(unchecked)
        .map(|(_, sig)| sig.input().signer_name.clone())
        .next()
        .or_else(|| {
            unchecked
                .message
                .authorities
                .iter()
                .find(|record| record.record_type() == RecordType::SOA)
                .map(|record| record.name.clone())
        })
        .unwrap_or_else(|| name.to_hickory());
    // The signed zones from the top down: a break higher up explains everything below it.
    // The root is left out: a resolver with a broken root anchor fails every name, not ours.
    let mut zones = Vec::new();
    let mut zone = leaf.clone();
    while !zone.is_root() && zones.len() < MAX_ZONES {
        zones.push(zone.clone());
        zone = zone.base_name();
    }
    zones.reverse();
    let mut top_signed: Option<(Name, Vec<u16>, bool)> = None;
    for zone in &zones {
        let Some(keys) = zone_keys(resolver, zone).await else {
            continue;
        };
        let ds = delegation_signer(resolver, zone).await;
        if let Some(found) = check_zone(zone, &keys, &ds, now) {
            return found;
        }
        if top_signed.is_none() && !keys.records.is_empty() {
            top_signed = Some((zone.clone(), keys.tags(), ds.is_empty()));
        }
        // The SOA is signed like every other set of the zone, so an expired or bad
        // signature shows there too.
        if let Some(found) = check_set(resolver, zone, zone, RecordType::SOA, &keys, now).await {
            return found;
        }
    }
    // The set that was asked for, signed by the leaf zone.
    if let Some(keys) = zone_keys(resolver, &leaf).await
        && let Some(found) = verify_in(
            &leaf,
            &name.to_hickory(),
            rtype,
            &unchecked.message.answers,
            &keys.keys(),
            now,
        )
    {
        return found;
    }
    match top_signed {
        // Signed at the top, no DS above: trusted through an anchor, and the anchor is wrong.
        Some((zone, keys, true)) => Break::AnchorMatchesNoKey {
            zone: shown_name(&zone),
            keys,
            said,
        },
        _ => Break::Unexplained {
            name: name.fqdn(),
            said,
        },
    }
}

/// `zone`'s DNSKEY set through the resolver with CD; `None` when the name is no signed zone
/// apex (and has no DS either); an empty set when it has a DS but no keys.
async fn zone_keys(resolver: SocketAddr, zone: &Name) -> Option<ZoneKeys> {
    let answer = ask_name(resolver, zone, RecordType::DNSKEY).await?;
    let records = apex_keys(&answer, zone);
    if records.is_empty() && delegation_signer(resolver, zone).await.is_empty() {
        return None;
    }
    Some(ZoneKeys { records, answer })
}

/// The DS set of `zone` at its parent, through the resolver with CD.
pub(super) async fn delegation_signer(resolver: SocketAddr, zone: &Name) -> Vec<DS> {
    let Some(answer) = ask_name(resolver, zone, RecordType::DS).await else {
        return Vec::new();
    };
    answer
        .message
        .answers
        .iter()
        .filter(|record| record.name == *zone)
        .filter_map(|record| match &record.data {
            RData::DNSSEC(DNSSECRData::DS(ds)) => Some(ds.clone()),
            _ => None,
        })
        .collect()
}

/// One question with DO and CD about a name from an answer: `None` when it is not a name
/// fleetcert asks about, or gets no answer.
async fn ask_name(resolver: SocketAddr, name: &Name, rtype: RecordType) -> Option<Answer> {
    let name = DnsName::from_hickory(name)?;
    match ask(resolver, &name, rtype, Bits::unchecked(Recursion::Desired)).await {
        Ok(answer) => Some(answer),
        Err(err) => {
            tracing::debug!(error = %err, "no answer while looking for the break");
            None
        }
    }
}

/// Fetches `owner` `rtype` with CD and verifies its signatures by `keys`.
async fn check_set(
    resolver: SocketAddr,
    zone: &Name,
    owner: &Name,
    rtype: RecordType,
    keys: &ZoneKeys,
    now: u32,
) -> Option<Break> {
    let answer = ask_name(resolver, owner, rtype).await?;
    verify_in(
        zone,
        owner,
        rtype,
        &answer.message.answers,
        &keys.keys(),
        now,
    )
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::{Edns, Message};

    use super::*;

    #[test]
    fn the_resolvers_extended_error_is_shown_escaped_and_bounded() {
        let mut message = Message::query();
        let mut edns = Edns::new();
        let mut data = 9u16.to_be_bytes().to_vec();
        data.extend_from_slice(b"validation failure\n<acme.test. SOA IN>");
        data.extend(std::iter::repeat_n(b'x', 500));
        edns.options_mut().insert(EdnsOption::Unknown(EDE, data));
        message.edns = Some(edns);
        let said = extended_error(&Answer { message }).expect("an EDE");
        assert!(
            said.starts_with("EDE 9: validation failure\\n<acme.test. SOA IN>"),
            "{said}"
        );
        assert!(said.chars().count() < MAX_EXCERPT + 8, "{said}");
        assert!(!said.contains('\n'));
    }
}
