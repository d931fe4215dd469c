//! DNSSEC: whether a name validates as the CA will see it, where its chain of trust breaks,
//! and whether the signing zone's servers serve valid signatures.
//!
//! `request` and `renew` ask the host's resolver as a CA's resolver is asked (DO and AD set)
//! about each `_acme-challenge` name and the signing zone. Secure and insecure are both fine;
//! a SERVFAIL is asked again with CD, which tells a bogus chain (the data is there, it does
//! not validate) from a broken one (no data at all). A bogus chain is then looked at here, from
//! the data fetched with CD: the DS at each parent, each zone's DNSKEY set, the RRSIG windows
//! and signatures, so that the refusal names the zone and the record. The resolver's own
//! reason (an extended DNS error, RFC 8914) is shown beside it when it gave one.
//!
//! The signing zone is asked at its apex (SOA), not at the record a host will publish: that
//! record does not exist yet, and asking for it would leave an NXDOMAIN in the resolver's
//! negative cache. The record's own signature is `publish`'s to check: it verifies, on every
//! authoritative server, the zone's keys against the parent's DS, the SOA's signature and
//! every published TXT set's signature.
//!
//! The cryptography is hickory-proto's (`Verifier` for DNSKEY, `DS::covers`); this module
//! picks the records and says what it found. It is not a validator: it looks at the zone of a
//! name and the zones above it, which is enough to say where a chain breaks.

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::StreamExt as _;
use futures_util::future::join_all;
use hickory_proto::dnssec::Verifier as _;
use hickory_proto::dnssec::rdata::{DNSKEY, DNSSECRData, DS, RRSIG};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use time::OffsetDateTime;

use super::client::{Answer, Bits, QUERY_TIMEOUT, ask};
use super::wait::{ask_pipelined, not_authoritative};
use super::{DnsError, DnsName, Recursion};
use crate::serial::has_reached;
use crate::shown::bare;
use crate::timestamp::rfc3339;

/// Zones looked at above the zone of a name when a chain is bogus: enough for any real
/// delegation depth, and a bound on the questions a hostile answer can cause.
const MAX_ZONES: usize = 8;
/// Characters of a name from an answer or of a resolver's reason shown at most.
const MAX_ANSWER_TEXT: usize = 200;
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

/// Where and why a chain of trust breaks, from the data itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Break {
    /// The parent's DS set names no key the zone serves (a key rollover gone wrong).
    #[error(
        "the DS of {zone} at its parent (key tag {}) matches no DNSKEY of {zone} (key tag {}): \
         publish the DS of the zone's current key at the parent (`dnssec-dsfromkey`), or bring \
         the old key back until it is there",
        Tags(ds),
        Tags(keys)
    )]
    DsMatchesNoKey {
        zone: String,
        ds: Vec<u16>,
        keys: Vec<u16>,
    },
    /// A DS at the parent, but the zone serves no keys.
    #[error(
        "{zone} has a DS at its parent but serves no DNSKEY: sign the zone again \
         (`dnssec-policy`), or remove the DS at the parent"
    )]
    NoKeys { zone: String },
    /// A record set's signature.
    #[error("{owner} {rtype} in zone {zone}: {problem}")]
    Signature {
        zone: String,
        owner: String,
        rtype: RecordType,
        problem: SigProblem,
    },
    /// No DS at the parent: the resolver trusts the zone through a trust anchor of its own,
    /// and that names another key.
    #[error(
        "{zone} has no DS at its parent, and the resolver's trust anchor for it matches none of \
         its keys (DNSKEY key tag {}){said}: set the trust anchor to the zone's key \
         (`dig {zone} DNSKEY`), or publish that key's DS at the parent",
        Tags(keys)
    )]
    AnchorMatchesNoKey {
        zone: String,
        keys: Vec<u16>,
        said: Said,
    },
    /// Nothing wrong in what can be seen from here.
    #[error(
        "{name} does not validate{said}, but its zones' DS, DNSKEY and signatures look right \
         from here: check the resolver's trust anchors and clock"
    )]
    Unexplained { name: String, said: Said },
}

/// What is wrong with the signatures over one record set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SigProblem {
    /// Signed zone, unsigned set.
    #[error("no RRSIG, though the zone is signed: sign the zone again (`rndc sign` it)")]
    Unsigned,
    /// Every signature has expired.
    #[error(
        "its RRSIG (key tag {tag}) expired at {at}: the signer stopped re-signing; check that \
         named runs the zone's `dnssec-policy` and can write its key directory, then \
         `rndc sign` the zone"
    )]
    Expired { tag: u16, at: String },
    /// Signatures from the future.
    #[error(
        "its RRSIG (key tag {tag}) is valid only from {at}: check the clocks of the signer and \
         the resolver"
    )]
    NotYetValid { tag: u16, at: String },
    /// Signed by a key the zone does not publish.
    #[error(
        "its RRSIG names key tag {tag}, which is not in the zone's DNSKEY set: publish that key \
         again, or sign the zone with the keys it publishes"
    )]
    UnknownKey { tag: u16 },
    /// The signature does not match the data.
    #[error(
        "its RRSIG (key tag {tag}) does not verify: the data changed after signing; sign the \
         zone again"
    )]
    BadSignature { tag: u16 },
}

impl SigProblem {
    /// The more telling of two problems of one set is kept: a window says more than a key.
    fn rank(&self) -> u8 {
        match self {
            Self::Unsigned => 0,
            Self::UnknownKey { .. } => 1,
            Self::BadSignature { .. } => 2,
            Self::Expired { .. } | Self::NotYetValid { .. } => 3,
        }
    }
}

/// A resolver's own reason (RFC 8914), shown after `, resolver says: ` when there is one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Said(Option<String>);

impl fmt::Display for Said {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(text) => write!(f, " (the resolver says: {text})"),
            None => Ok(()),
        }
    }
}

/// Key tags, comma-separated; `none` for an empty list.
struct Tags<'a>(&'a [u16]);

impl fmt::Display for Tags<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        for (index, tag) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{tag}")?;
        }
        Ok(())
    }
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
            .filter_map(|base| super::precheck::challenge_name(base).ok())
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
    Some(bare(
        &format!("EDE {code}: {}", text.trim()),
        MAX_ANSWER_TEXT,
    ))
}

/// Every RRSIG in the answer and authority sections.
fn signatures(answer: &Answer) -> impl Iterator<Item = (&Record, &RRSIG)> {
    answer
        .message
        .answers
        .iter()
        .chain(answer.message.authorities.iter())
        .filter_map(|record| match &record.data {
            RData::DNSSEC(DNSSECRData::RRSIG(sig)) => Some((record, sig)),
            _ => None,
        })
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

/// The DNSKEY set of a zone apex with its signatures, as fetched with CD.
struct ZoneKeys {
    /// The DNSKEY records (their owner is the zone).
    records: Vec<Record>,
    /// The answer, with the RRSIGs over the set.
    answer: Answer,
}

impl ZoneKeys {
    fn keys(&self) -> Vec<DNSKEY> {
        self.records
            .iter()
            .filter_map(|record| match &record.data {
                RData::DNSSEC(DNSSECRData::DNSKEY(key)) => Some(key.clone()),
                _ => None,
            })
            .collect()
    }

    fn tags(&self) -> Vec<u16> {
        key_tags(&self.keys())
    }
}

/// The key tags of `keys`, sorted.
fn key_tags(keys: &[DNSKEY]) -> Vec<u16> {
    let mut tags: Vec<u16> = keys
        .iter()
        .filter_map(|key| key.calculate_key_tag().ok())
        .collect();
    tags.sort_unstable();
    tags.dedup();
    tags
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
async fn delegation_signer(resolver: SocketAddr, zone: &Name) -> Vec<DS> {
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

/// The DS/DNSKEY match and the DNSKEY set's own signatures of one zone.
fn check_zone(zone: &Name, keys: &ZoneKeys, ds: &[DS], now: u32) -> Option<Break> {
    let dnskeys = keys.keys();
    if dnskeys.is_empty() {
        return (!ds.is_empty()).then(|| Break::NoKeys {
            zone: shown_name(zone),
        });
    }
    if !ds.is_empty()
        && !ds.iter().any(|ds| {
            dnskeys
                .iter()
                .any(|key| ds.covers(zone, key).unwrap_or(false))
        })
    {
        let mut ds_tags: Vec<u16> = ds.iter().map(DS::key_tag).collect();
        ds_tags.sort_unstable();
        ds_tags.dedup();
        return Some(Break::DsMatchesNoKey {
            zone: shown_name(zone),
            ds: ds_tags,
            keys: key_tags(&dnskeys),
        });
    }
    verify_in(
        zone,
        zone,
        RecordType::DNSKEY,
        &keys.answer.message.answers,
        &dnskeys,
        now,
    )
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

/// [`verify_set`] over an answer section, as a [`Break`] of `zone`.
fn verify_in(
    zone: &Name,
    owner: &Name,
    rtype: RecordType,
    section: &[Record],
    keys: &[DNSKEY],
    now: u32,
) -> Option<Break> {
    verify_set(owner, rtype, section, keys, now)
        .err()
        .map(|problem| Break::Signature {
            zone: shown_name(zone),
            owner: shown_name(owner),
            rtype,
            problem,
        })
}

/// Verifies the RRSIGs over `owner` `rtype` in `section` with `keys` at `now` (Unix seconds,
/// RFC 4034 section 3.1.5 serial arithmetic): one signature that is in its window, names a
/// key of the set and verifies is enough. An empty set is nothing to verify.
pub(crate) fn verify_set(
    owner: &Name,
    rtype: RecordType,
    section: &[Record],
    keys: &[DNSKEY],
    now: u32,
) -> Result<(), SigProblem> {
    let set: Vec<&Record> = section
        .iter()
        .filter(|record| record.record_type() == rtype && record.name == *owner)
        .collect();
    if set.is_empty() {
        return Ok(());
    }
    let mut worst: Option<SigProblem> = None;
    let mut keep = |problem: SigProblem| {
        if worst
            .as_ref()
            .is_none_or(|kept| problem.rank() > kept.rank())
        {
            worst = Some(problem);
        }
    };
    for record in section.iter().filter(|record| record.name == *owner) {
        let RData::DNSSEC(DNSSECRData::RRSIG(sig)) = &record.data else {
            continue;
        };
        let input = sig.input();
        if input.type_covered != rtype {
            continue;
        }
        let tag = input.key_tag;
        let (inception, expiration) = (input.sig_inception.get(), input.sig_expiration.get());
        if !has_reached(now, inception) {
            keep(SigProblem::NotYetValid {
                tag,
                at: seconds_shown(inception, now),
            });
            continue;
        }
        if !has_reached(expiration, now) {
            keep(SigProblem::Expired {
                tag,
                at: seconds_shown(expiration, now),
            });
            continue;
        }
        let candidates: Vec<&DNSKEY> = keys
            .iter()
            .filter(|key| {
                key.calculate_key_tag().ok() == Some(tag) && key.algorithm() == input.algorithm
            })
            .collect();
        if candidates.is_empty() {
            keep(SigProblem::UnknownKey { tag });
            continue;
        }
        let verified = candidates.iter().any(|key| {
            key.verify_rrsig(owner, DNSClass::IN, sig, set.iter().copied())
                .is_ok()
        });
        if verified {
            return Ok(());
        }
        keep(SigProblem::BadSignature { tag });
    }
    Err(worst.unwrap_or(SigProblem::Unsigned))
}

/// A name from an answer, shown escaped and bounded, with its trailing dot.
fn shown_name(name: &Name) -> String {
    let mut text = name.to_ascii();
    if !text.ends_with('.') {
        text.push('.');
    }
    bare(&text, MAX_ANSWER_TEXT)
}

/// An RRSIG time (32-bit seconds) as RFC 3339: the moment nearest to `now` with those low
/// 32 bits, as RFC 4034 section 3.1.5 reads it.
fn seconds_shown(value: u32, now: u32) -> String {
    let now_full = crate::timestamp::unix_now();
    // The signed distance from now in serial arithmetic: within +-68 years.
    let distance = i64::from(value.wrapping_sub(now) as i32);
    let at = i64::try_from(now_full)
        .unwrap_or(i64::MAX)
        .saturating_add(distance);
    OffsetDateTime::from_unix_timestamp(at).map_or_else(|_| format!("{value}"), rfc3339)
}

/// The time now as an RRSIG writes it: Unix seconds modulo 2^32.
pub(crate) fn unix_now_u32() -> u32 {
    // Truncation is the point: RRSIG times are 32-bit serial numbers.
    #[allow(clippy::cast_possible_truncation)]
    let now = crate::timestamp::unix_now() as u32;
    now
}

/// Why one authoritative server's answers for the signing zone do not validate.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{server} serves answers that do not validate: {cause}")]
pub(crate) struct InvalidServer {
    pub(crate) server: SocketAddr,
    pub(crate) cause: ServerCause,
}

/// What is wrong on one server.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum ServerCause {
    /// A key, DS or signature problem.
    #[error(transparent)]
    Break(#[from] Break),
    /// No usable answer to a question with DO.
    #[error("{what}: {reason}")]
    NoAnswer { what: String, reason: String },
    /// Unsigned while another server serves the zone signed.
    #[error(
        "it serves {zone}. without DNSKEY while {signed} serves it signed: an unsigned copy; \
         check the zone transfers to it"
    )]
    NoKeys { zone: DnsName, signed: SocketAddr },
}

/// After the wait of `publish`: when the zone is signed (some server serves its DNSKEY set),
/// checks on every server the keys against the parent's DS (through `resolver`, when it
/// answers), the DNSKEY and SOA signatures and the signature of each of `names`' TXT sets,
/// at the time now. `None` for an unsigned zone.
pub(crate) async fn check_servers(
    servers: &[SocketAddr],
    zone: &DnsName,
    names: &[&DnsName],
    resolver: SocketAddr,
) -> Option<Vec<Result<(), InvalidServer>>> {
    let now = unix_now_u32();
    let apex = zone.to_hickory();
    let keysets = join_all(servers.iter().map(|&server| {
        ask(
            server,
            zone,
            RecordType::DNSKEY,
            Bits::signed(Recursion::Off),
        )
    }))
    .await;
    let signed = servers
        .iter()
        .zip(&keysets)
        .find(|(_, keyset)| {
            keyset
                .as_ref()
                .is_ok_and(|answer| !apex_keys(answer, &apex).is_empty())
        })
        .map(|(&server, _)| server)?;
    // The resolver may be absent where `servers` is configured: the DS check is then left
    // out rather than waited for.
    let ds = tokio::time::timeout(QUERY_TIMEOUT, delegation_signer(resolver, &apex))
        .await
        .unwrap_or_default();
    let zone = SignedZone {
        zone,
        apex,
        ds,
        names,
        now,
        signed,
    };
    let checks = servers.iter().zip(keysets).map(|(&server, keyset)| {
        let zone = &zone;
        async move {
            zone.check_server(server, keyset)
                .await
                .map_err(|cause| InvalidServer { server, cause })
        }
    });
    Some(join_all(checks).await)
}

/// What every server of a signed zone is checked against.
struct SignedZone<'z> {
    zone: &'z DnsName,
    apex: Name,
    /// The DS set at the parent; empty when there is none or the resolver did not answer.
    ds: Vec<DS>,
    /// The names of the published TXT records.
    names: &'z [&'z DnsName],
    now: u32,
    /// A server that serves the zone signed, to name beside one that does not.
    signed: SocketAddr,
}

/// The DNSKEY records at `apex` in an answer.
fn apex_keys(answer: &Answer, apex: &Name) -> Vec<Record> {
    answer
        .message
        .answers
        .iter()
        .filter(|record| record.record_type() == RecordType::DNSKEY && record.name == *apex)
        .cloned()
        .collect()
}

impl SignedZone<'_> {
    /// One server of [`check_servers`].
    async fn check_server(
        &self,
        server: SocketAddr,
        keyset: Result<Answer, DnsError>,
    ) -> Result<(), ServerCause> {
        let (zone, apex, names, now) = (self.zone, &self.apex, self.names, self.now);
        let no_answer = |what: String, reason: String| ServerCause::NoAnswer { what, reason };
        let answer = keyset.map_err(|err| no_answer(format!("{zone}. DNSKEY"), err.to_string()))?;
        if let Some(wrong) = not_authoritative(&answer) {
            return Err(no_answer(format!("{zone}. DNSKEY"), wrong));
        }
        let records = apex_keys(&answer, apex);
        if records.is_empty() {
            return Err(ServerCause::NoKeys {
                zone: zone.clone(),
                signed: self.signed,
            });
        }
        let keys = ZoneKeys { records, answer };
        if let Some(found) = check_zone(apex, &keys, &self.ds, now) {
            return Err(found.into());
        }
        let dnskeys = keys.keys();
        let soa = ask(server, zone, RecordType::SOA, Bits::signed(Recursion::Off))
            .await
            .map_err(|err| no_answer(format!("{zone}. SOA"), err.to_string()))?;
        let soa_set = &soa.message.answers;
        if let Some(found) = verify_in(apex, apex, RecordType::SOA, soa_set, &dnskeys, now) {
            return Err(found.into());
        }
        let answers = ask_pipelined(
            server,
            names.iter().copied(),
            RecordType::TXT,
            Bits::signed(Recursion::Off),
        )
        .await
        .map_err(|reason| no_answer("TXT records".to_owned(), reason.to_string()))?;
        for (name, found) in answers {
            let what = || format!("{name}. TXT");
            let answer = found.map_err(|reason| no_answer(what(), reason.to_string()))?;
            if let Some(wrong) = not_authoritative(&answer) {
                return Err(no_answer(what(), wrong));
            }
            let owner = name.to_hickory();
            if let Some(found) = verify_in(
                apex,
                &owner,
                RecordType::TXT,
                &answer.message.answers,
                &dnskeys,
                now,
            ) {
                return Err(found.into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use hickory_proto::dnssec::crypto::EcdsaSigningKey;
    use hickory_proto::dnssec::rdata::SigInput;
    use hickory_proto::dnssec::{Algorithm, SigningKey as _, TBS};
    use hickory_proto::op::{Edns, Message};
    use hickory_proto::rr::SerialNumber;
    use hickory_proto::rr::rdata::TXT;

    use super::*;

    /// A day in seconds.
    const DAY: u32 = 86_400;

    struct Signer {
        key: EcdsaSigningKey,
        dnskey: DNSKEY,
    }

    impl Signer {
        fn new() -> Self {
            let pkcs8 =
                EcdsaSigningKey::generate_pkcs8(Algorithm::ECDSAP256SHA256).expect("generate");
            let key = EcdsaSigningKey::from_pkcs8(&pkcs8, Algorithm::ECDSAP256SHA256)
                .expect("read the key");
            let dnskey = DNSKEY::with_flags(257, key.to_public_key().expect("public key"));
            Self { key, dnskey }
        }

        fn tag(&self) -> u16 {
            self.dnskey.calculate_key_tag().expect("key tag")
        }

        /// An RRSIG record over `set`, valid from `inception` to `expiration`.
        fn sign(&self, set: &[Record], inception: u32, expiration: u32) -> Record {
            let owner = set[0].name.clone();
            let input = SigInput {
                type_covered: set[0].record_type(),
                algorithm: Algorithm::ECDSAP256SHA256,
                num_labels: owner.num_labels(),
                original_ttl: 60,
                sig_expiration: SerialNumber::new(expiration),
                sig_inception: SerialNumber::new(inception),
                key_tag: self.tag(),
                signer_name: Name::from_ascii("acme.test.").expect("name"),
            };
            let tbs = TBS::from_input(&owner, DNSClass::IN, &input, set.iter()).expect("tbs");
            let sig = self.key.sign(&tbs).expect("sign");
            Record::from_rdata(
                owner,
                60,
                RData::DNSSEC(DNSSECRData::RRSIG(RRSIG::from_sig(input, sig))),
            )
        }
    }

    fn txt(value: &str) -> Vec<Record> {
        let owner = Name::from_ascii("host1.example.test.acme.test.").expect("name");
        vec![Record::from_rdata(
            owner,
            60,
            RData::TXT(TXT::new(vec![value.to_owned()])),
        )]
    }

    fn check(section: &[Record], keys: &[DNSKEY], now: u32) -> Result<(), SigProblem> {
        verify_set(&section[0].name, RecordType::TXT, section, keys, now)
    }

    #[test]
    fn a_signature_in_its_window_by_a_published_key_verifies() {
        let signer = Signer::new();
        let now = unix_now_u32();
        let mut section = txt("value");
        section.push(signer.sign(&section, now - DAY, now + 14 * DAY));
        assert_eq!(
            check(&section, std::slice::from_ref(&signer.dnskey), now),
            Ok(())
        );
    }

    #[test]
    fn each_kind_of_bad_signature_is_told_apart() {
        let signer = Signer::new();
        let now = unix_now_u32();
        let keys = [signer.dnskey.clone()];
        let tag = signer.tag();

        let unsigned = txt("value");
        assert_eq!(check(&unsigned, &keys, now), Err(SigProblem::Unsigned));

        let mut expired = txt("value");
        expired.push(signer.sign(&expired, now - 20 * DAY, now - 6 * DAY));
        assert!(
            matches!(check(&expired, &keys, now), Err(SigProblem::Expired { tag: t, .. }) if t == tag)
        );

        let mut early = txt("value");
        early.push(signer.sign(&early, now + DAY, now + 14 * DAY));
        assert!(matches!(
            check(&early, &keys, now),
            Err(SigProblem::NotYetValid { .. })
        ));

        // The data changed after signing.
        let mut changed = txt("value");
        let signature = signer.sign(&changed, now - DAY, now + 14 * DAY);
        changed = txt("other value");
        changed.push(signature);
        assert_eq!(
            check(&changed, &keys, now),
            Err(SigProblem::BadSignature { tag })
        );

        // Signed by a key the zone does not publish.
        let other = Signer::new();
        let mut foreign = txt("value");
        foreign.push(other.sign(&foreign, now - DAY, now + 14 * DAY));
        assert_eq!(
            check(&foreign, &keys, now),
            Err(SigProblem::UnknownKey { tag: other.tag() })
        );
    }

    #[test]
    fn an_expiry_across_the_32_bit_wrap_is_read_by_serial_arithmetic() {
        let signer = Signer::new();
        // Just before the 2106 wrap, signed until just after it.
        let now = u32::MAX - DAY;
        let mut section = txt("value");
        section.push(signer.sign(&section, now - DAY, now.wrapping_add(14 * DAY)));
        assert_eq!(
            check(&section, std::slice::from_ref(&signer.dnskey), now),
            Ok(())
        );
    }

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
        assert!(said.chars().count() < MAX_ANSWER_TEXT + 8, "{said}");
        assert!(!said.contains('\n'));
    }

    #[test]
    fn key_tags_read_as_a_list() {
        assert_eq!(Tags(&[]).to_string(), "none");
        assert_eq!(Tags(&[5127, 40211]).to_string(), "5127, 40211");
    }
}
