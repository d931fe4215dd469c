//! What the chain check and the server check both look at: a zone's keys against its DS,
//! the signatures over one record set, and what is wrong with them ([`Break`],
//! [`SigProblem`]), shown escaped and bounded.

use std::fmt;

use hickory_proto::dnssec::Verifier as _;
use hickory_proto::dnssec::rdata::{DNSKEY, DNSSECRData, DS, RRSIG};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use time::OffsetDateTime;

use crate::dns::client::Answer;
use crate::serial::has_reached;
use crate::shown::{MAX_VALUE, bare};
use crate::timestamp::rfc3339;

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
pub(crate) struct Said(pub(super) Option<String>);

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

/// Every RRSIG in the answer and authority sections.
pub(super) fn signatures(answer: &Answer) -> impl Iterator<Item = (&Record, &RRSIG)> {
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

/// The DNSKEY set of a zone apex with its signatures, as fetched with CD.
pub(super) struct ZoneKeys {
    /// The DNSKEY records (their owner is the zone).
    pub(super) records: Vec<Record>,
    /// The answer, with the RRSIGs over the set.
    pub(super) answer: Answer,
}

impl ZoneKeys {
    pub(super) fn keys(&self) -> Vec<DNSKEY> {
        self.records
            .iter()
            .filter_map(|record| match &record.data {
                RData::DNSSEC(DNSSECRData::DNSKEY(key)) => Some(key.clone()),
                _ => None,
            })
            .collect()
    }

    pub(super) fn tags(&self) -> Vec<u16> {
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

/// The DS/DNSKEY match and the DNSKEY set's own signatures of one zone.
pub(super) fn check_zone(zone: &Name, keys: &ZoneKeys, ds: &[DS], now: u32) -> Option<Break> {
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

/// [`verify_set`] over an answer section, as a [`Break`] of `zone`.
pub(super) fn verify_in(
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
fn verify_set(
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
pub(super) fn shown_name(name: &Name) -> String {
    let mut text = name.to_ascii();
    if !text.ends_with('.') {
        text.push('.');
    }
    bare(&text, MAX_VALUE)
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

/// The DNSKEY records at `apex` in an answer.
pub(super) fn apex_keys(answer: &Answer, apex: &Name) -> Vec<Record> {
    answer
        .message
        .answers
        .iter()
        .filter(|record| record.record_type() == RecordType::DNSKEY && record.name == *apex)
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use hickory_proto::dnssec::crypto::EcdsaSigningKey;
    use hickory_proto::dnssec::rdata::SigInput;
    use hickory_proto::dnssec::{Algorithm, SigningKey as _, TBS};
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
    fn key_tags_read_as_a_list() {
        assert_eq!(Tags(&[]).to_string(), "none");
        assert_eq!(Tags(&[5127, 40211]).to_string(), "5127, 40211");
    }
}
