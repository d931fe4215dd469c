//! [`SetChange`]: one TXT record set's change as one atomic step, with the set as it was
//! read as its prerequisite; [`pack`] puts the steps into as few UPDATE messages as fit.

use hickory_proto::op::{Message, OpCode, Query};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{DNSClass, RData, Record, RecordType};

use crate::dns::DnsName;

/// Bytes of one UPDATE message's records: a DNS message over TCP holds 65,535 bytes, less the
/// header, the zone section (at most 259), the TSIG record (under 300) and room to spare.
const MESSAGE_BUDGET: usize = 64_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SetChange {
    pub(crate) name: DnsName,
    /// The set before the change, exactly as the server holds it.
    pub(crate) before: Vec<TXT>,
    pub(crate) add: Vec<TXT>,
    /// Members of `before` to remove.
    pub(crate) delete: Vec<TXT>,
}

impl SetChange {
    /// The set after the change.
    pub(crate) fn after(&self) -> Vec<TXT> {
        let mut after: Vec<TXT> = self
            .before
            .iter()
            .filter(|txt| !self.delete.contains(txt))
            .cloned()
            .collect();
        for txt in &self.add {
            if !after.contains(txt) {
                after.push(txt.clone());
            }
        }
        after
    }

    /// The change that undoes this one.
    pub(crate) fn inverse(&self) -> Self {
        Self {
            name: self.name.clone(),
            before: self.after(),
            add: self.delete.clone(),
            delete: self.add.clone(),
        }
    }

    /// Bytes this change takes in a message, at most. Every record is counted with its owner
    /// name in full: hickory compresses only the first 120 names of a message, into pointers
    /// to 64 remembered suffixes within its first 16 KiB.
    fn size(&self) -> usize {
        let name = wire_len(&self.name);
        let prerequisite = if self.before.is_empty() {
            name + RECORD_FIXED
        } else {
            self.before.iter().map(|txt| name + txt_data_len(txt)).sum()
        };
        prerequisite
            + self
                .add
                .iter()
                .chain(&self.delete)
                .map(|txt| name + txt_data_len(txt))
                .sum::<usize>()
    }

    /// Pieces that each fit in a message of their own: the deletions first, then the
    /// additions, each piece's prerequisite the set the pieces before it leave. `None` when
    /// even the prerequisite of one change does not fit (a set of about a thousand values).
    ///
    /// Deleting first is safe: a value is deleted only when no host's document lists it any
    /// more, so no pending order needs it, and a value the new set keeps is never deleted.
    /// It also keeps every set within the server's limit on records per set (BIND's
    /// `max-records-per-type`), which the old and new values together could exceed.
    fn split(self) -> Option<Vec<Self>> {
        if self.size() <= MESSAGE_BUDGET {
            return Some(vec![self]);
        }
        let mut pieces = Vec::new();
        let mut set = self.before.clone();
        for (adding, values) in [(false, &self.delete), (true, &self.add)] {
            let mut rest = values.as_slice();
            while !rest.is_empty() {
                let mut piece = Self {
                    name: self.name.clone(),
                    before: set.clone(),
                    add: Vec::new(),
                    delete: Vec::new(),
                };
                let mut used = piece.size();
                let mut taken = 0;
                for txt in rest {
                    let cost = wire_len(&self.name) + txt_data_len(txt);
                    if used + cost > MESSAGE_BUDGET {
                        break;
                    }
                    used += cost;
                    taken += 1;
                }
                if taken == 0 {
                    return None;
                }
                let (chunk, later) = rest.split_at(taken);
                if adding {
                    piece.add = chunk.to_vec();
                } else {
                    piece.delete = chunk.to_vec();
                }
                set = piece.after();
                pieces.push(piece);
                rest = later;
            }
        }
        Some(pieces)
    }
}

/// Type, class, TTL and data length of a record.
const RECORD_FIXED: usize = 10;

/// The bytes of a name in wire format, uncompressed.
fn wire_len(name: &DnsName) -> usize {
    name.as_str().len() + 2
}

/// The bytes of one TXT record without its owner name.
fn txt_data_len(txt: &TXT) -> usize {
    RECORD_FIXED
        + txt
            .txt_data
            .iter()
            .map(|part| part.len() + 1)
            .sum::<usize>()
}

/// The changes in as few messages as fit, each name's pieces in order. `Err` names a set
/// too large to change atomically.
pub(crate) fn pack(changes: Vec<SetChange>) -> Result<Vec<Vec<SetChange>>, DnsName> {
    let mut messages: Vec<Vec<SetChange>> = Vec::new();
    let mut current: Vec<SetChange> = Vec::new();
    let mut used = 0;
    for change in changes {
        let name = change.name.clone();
        for piece in change.split().ok_or(name)? {
            let size = piece.size();
            if used + size > MESSAGE_BUDGET && !current.is_empty() {
                messages.push(std::mem::take(&mut current));
                used = 0;
            }
            used += size;
            current.push(piece);
        }
    }
    if !current.is_empty() {
        messages.push(current);
    }
    Ok(messages)
}

/// The UPDATE message for `pieces` of `zone`.
pub(crate) fn update_message(zone: &DnsName, ttl: u32, pieces: &[SetChange]) -> Message {
    let mut message = Message::query();
    message.metadata.op_code = OpCode::Update;
    message.metadata.recursion_desired = false;
    let mut section = Query::query(zone.to_hickory(), RecordType::SOA);
    section.set_query_class(DNSClass::IN);
    message.add_query(section);
    for piece in pieces {
        let name = piece.name.to_hickory();
        if piece.before.is_empty() {
            // RFC 2136 2.4.3: no TXT set may exist at the name.
            let mut none = Record::update0(name.clone(), 0, RecordType::TXT);
            none.dns_class = DNSClass::NONE;
            message.add_answer(none);
        } else {
            // 2.4.2: the set exists with exactly these members (TTL 0, ignored).
            for txt in &piece.before {
                message.add_answer(Record::from_rdata(name.clone(), 0, RData::TXT(txt.clone())));
            }
        }
        for txt in &piece.delete {
            // 2.5.4: delete this member.
            let mut delete = Record::from_rdata(name.clone(), 0, RData::TXT(txt.clone()));
            delete.dns_class = DNSClass::NONE;
            message.add_authority(delete);
        }
        for txt in &piece.add {
            // 2.5.1: add this member.
            message.add_authority(Record::from_rdata(
                name.clone(),
                ttl,
                RData::TXT(txt.clone()),
            ));
        }
    }
    message
}

#[cfg(test)]
mod tests {
    use super::super::client::written_counts;
    use super::*;
    use crate::dns::TsigKey;

    fn txt(value: &str) -> TXT {
        TXT::new(vec![value.to_owned()])
    }

    fn name(text: &str) -> DnsName {
        DnsName::parse(text).expect("name")
    }

    fn values(prefix: char, count: usize) -> Vec<TXT> {
        (0..count)
            .map(|i| txt(&format!("{prefix}{i:042}")))
            .collect()
    }

    #[test]
    fn a_change_and_its_inverse_meet() {
        let change = SetChange {
            name: name("a.acme.test"),
            before: vec![txt("keep"), txt("old")],
            add: vec![txt("new")],
            delete: vec![txt("old")],
        };
        assert_eq!(change.after(), vec![txt("keep"), txt("new")]);
        let back = change.inverse();
        assert_eq!(back.before, change.after());
        let mut restored = back.after();
        restored.sort_by_key(|t| t.txt_data.to_vec());
        assert_eq!(restored, vec![txt("keep"), txt("old")]);
    }

    #[test]
    fn many_names_pack_into_few_messages_that_fit_and_keep_their_prerequisites() {
        let zone = name("acme.test");
        let changes: Vec<SetChange> = (0..3000)
            .map(|i| SetChange {
                name: name(&format!("h{i}.bench.test.acme.test")),
                before: if i % 2 == 0 {
                    Vec::new()
                } else {
                    vec![txt("x")]
                },
                add: values('a', 1),
                delete: Vec::new(),
            })
            .collect();
        let messages = pack(changes.clone()).expect("packs");
        assert!(messages.len() <= 8, "{} messages", messages.len());
        assert_eq!(messages.concat(), changes, "order and content kept");
        let key = TsigKey::new(name("k"), crate::dns::TsigAlgo::HmacSha512, vec![1; 64]);
        for pieces in &messages {
            let mut message = update_message(&zone, 60, pieces);
            message.finalize(&key.signer(), 1).expect("sign");
            let bytes = message.to_vec().expect("encode");
            assert!(bytes.len() <= 65_535, "{} bytes", bytes.len());
            assert_eq!(
                written_counts(&bytes),
                Some((message.answers.len(), message.authorities.len()))
            );
            let nones = message
                .answers
                .iter()
                .filter(|r| r.dns_class == DNSClass::NONE)
                .count();
            assert_eq!(nones, pieces.iter().filter(|p| p.before.is_empty()).count());
        }
    }

    #[test]
    fn a_set_too_large_for_one_message_deletes_before_it_adds_and_never_grows() {
        let before = values('o', 900);
        let change = SetChange {
            name: name("acme.test"),
            before: before.clone(),
            add: values('n', 800),
            delete: before[100..].to_vec(),
        };
        let messages = pack(vec![change.clone()]).expect("packs");
        let pieces = messages.concat();
        assert!(pieces.len() > 2, "{} pieces", pieces.len());
        let first_add = pieces.iter().position(|p| !p.add.is_empty()).expect("adds");
        assert!(pieces[..first_add].iter().all(|p| p.add.is_empty()));
        assert!(pieces[first_add..].iter().all(|p| p.delete.is_empty()));
        // Each piece starts from where the previous one left the set, and no value the new
        // set keeps is ever missing.
        let kept: Vec<TXT> = change.after();
        let mut set = before;
        let largest = change.before.len().max(kept.len());
        for piece in &pieces {
            assert_eq!(piece.before, set);
            set = piece.after();
            assert!(piece.size() <= MESSAGE_BUDGET);
            assert!(before_kept(&kept, &set), "a kept value went missing");
            assert!(set.len() <= largest, "{} values at once", set.len());
        }
        let mut end = set;
        let mut want = kept;
        end.sort_by_key(|t| t.txt_data.to_vec());
        want.sort_by_key(|t| t.txt_data.to_vec());
        assert_eq!(end, want);
    }

    /// Every value of `kept` that was in the zone from the start is in `set`.
    fn before_kept(kept: &[TXT], set: &[TXT]) -> bool {
        kept.iter()
            .filter(|t| t.txt_data[0].starts_with(b"o"))
            .all(|t| set.contains(t))
    }
}
