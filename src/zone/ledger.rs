//! The ledger: which host owns which records, and when each host was last seen.
//!
//! It lives in the publisher's home (beside the zone file, `<zone_file>.ledger.json`, for the
//! file publisher), 0600, and is replaced atomically.
//! A host's document replaces that host's records and no one else's; a host absent from a
//! publish keeps its records until `record_lifetime` after it was last seen, so hosts can
//! publish in separate runs; an empty `records` list removes the host's records at once.
//! Records read back from the ledger are typed again (a tampered value does not read back),
//! and records outside the configured zone are dropped.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::dns::DnsName;
use crate::store::{Dir, StoreError, Versioned};
use crate::token::{Policy, Submission, TxtRecord};

/// One host's records and when it last sent them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostEntry {
    /// Unix seconds of the publish that last carried this host's document.
    last_seen: u64,
    pub(crate) records: BTreeSet<TxtRecord>,
}

/// The file: a version and the hosts.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LedgerFile {
    version: u32,
    hosts: BTreeMap<DnsName, HostEntry>,
}

impl Versioned for LedgerFile {
    const VERSION: u32 = 1;
    const WHAT: &'static str = "a fleetcert ledger";
    /// 10,000 hosts with a few records each.
    const MAX_BYTES: u64 = 64 << 20;
}

/// Every host's records in the signing zone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Ledger {
    hosts: BTreeMap<DnsName, HostEntry>,
}

impl Ledger {
    /// Reads the ledger `name` in `dir`; a missing file is an empty ledger. Records that are
    /// not valid for the zone any more (a changed config, an edited file) are dropped with a
    /// warning. A file that does not read back is an error: guessing would drop hosts.
    pub(crate) fn load(dir: &Dir, name: &str, policy: &Policy) -> Result<Self, StoreError> {
        let Some(file) = dir.load_state::<LedgerFile>(name)? else {
            return Ok(Self::default());
        };
        let mut hosts = BTreeMap::new();
        for (host, mut entry) in file.hosts {
            entry.records.retain(|record| {
                let keep = record.name.is_in(&policy.zone) && !record.name.is_wildcard();
                if !keep {
                    tracing::warn!(ledger = %dir.path().join(name).display(), %host, name = %record.name, "dropping a record that is not in this zone");
                }
                keep
            });
            hosts.insert(host, entry);
        }
        Ok(Self { hosts })
    }

    /// Writes the ledger atomically (0600).
    pub(crate) fn save(&self, dir: &Dir, name: &str) -> Result<(), StoreError> {
        dir.save_state(
            name,
            &LedgerFile {
                version: LedgerFile::VERSION,
                hosts: self.hosts.clone(),
            },
        )
    }

    /// Applies one publish at `now` (Unix seconds): each submitting host's records replace
    /// its old ones (none: the host is removed); hosts not seen for `lifetime` expire.
    /// Returns the hosts that expired.
    pub(crate) fn apply(
        &mut self,
        submissions: &[Submission],
        now: u64,
        lifetime: Duration,
    ) -> Vec<DnsName> {
        for submission in submissions {
            if submission.records.is_empty() {
                self.hosts.remove(&submission.host);
            } else {
                self.hosts.insert(
                    submission.host.clone(),
                    HostEntry {
                        last_seen: now,
                        records: submission.records.clone(),
                    },
                );
            }
        }
        let lifetime = lifetime.as_secs();
        let expired: Vec<DnsName> = self
            .hosts
            .iter()
            .filter(|(_, entry)| entry.last_seen.saturating_add(lifetime) <= now)
            .map(|(host, _)| host.clone())
            .collect();
        for host in &expired {
            self.hosts.remove(host);
        }
        expired
    }

    /// Every record in the zone, each once, sorted by name and value.
    pub(crate) fn records(&self) -> BTreeSet<&TxtRecord> {
        self.hosts
            .values()
            .flat_map(|entry| entry.records.iter())
            .collect()
    }

    /// A name that holds more than `max` values and more than it held in `before`, with its
    /// count: the servers would refuse the zone. A name that was already over and shrinks is
    /// let through, so a cleanup is never blocked by the crowd it is clearing.
    pub(crate) fn crowded_name(&self, before: &Self, max: usize) -> Option<(DnsName, usize)> {
        let old = values_per_name(&before.records());
        values_per_name(&self.records())
            .into_iter()
            .find(|(name, count)| *count > max && *count > old.get(name).copied().unwrap_or(0))
            .map(|(name, count)| (name.clone(), count))
    }

    /// Hosts that have records.
    pub(crate) fn host_count(&self) -> usize {
        self.hosts.len()
    }
}

/// The values of some records, by name: what a server must serve at each name (the wait's
/// check) and what the dynamic-update publisher converges each name to.
pub(super) type Values<'r> = BTreeMap<&'r DnsName, BTreeSet<&'r str>>;

/// The values of `records` by name.
pub(super) fn values<'r>(records: impl Iterator<Item = &'r TxtRecord>) -> Values<'r> {
    let mut by_name: Values<'r> = BTreeMap::new();
    for record in records {
        by_name
            .entry(&record.name)
            .or_default()
            .insert(record.value.as_str());
    }
    by_name
}

/// How many distinct values each name holds.
fn values_per_name<'a>(records: &BTreeSet<&'a TxtRecord>) -> BTreeMap<&'a DnsName, usize> {
    let mut counts = BTreeMap::new();
    for record in records {
        *counts.entry(&record.name).or_insert(0) += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::tests::{VALUE, value};

    fn name(text: &str) -> DnsName {
        DnsName::parse(text).expect("name")
    }

    fn submission(host: &str, values: &[&str]) -> Submission {
        Submission {
            host: name(host),
            records: values
                .iter()
                .map(|text| TxtRecord {
                    name: name(&format!("{host}.acme.test")),
                    value: value(text),
                })
                .collect(),
        }
    }

    fn policy(zone: &str) -> Policy {
        Policy {
            zone: name(zone),
            records: crate::token::ChallengeRecords::PerName,
            allow: None,
        }
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn a_host_replaces_only_its_own_records() {
        let mut ledger = Ledger::default();
        let other = "b".repeat(43);
        ledger.apply(
            &[submission("a.org", &[VALUE]), submission("b.org", &[VALUE])],
            100,
            HOUR,
        );
        ledger.apply(&[submission("a.org", &[&other])], 200, HOUR);
        let records: Vec<_> = ledger.records().into_iter().cloned().collect();
        assert_eq!(records.len(), 2);
        assert!(
            records
                .iter()
                .any(|r| r.name.fqdn() == "a.org.acme.test." && r.value.as_str() == other)
        );
        assert!(
            records
                .iter()
                .any(|r| r.name.fqdn() == "b.org.acme.test." && r.value.as_str() == VALUE)
        );
    }

    #[test]
    fn empty_records_remove_the_host() {
        let mut ledger = Ledger::default();
        ledger.apply(&[submission("a.org", &[VALUE])], 100, HOUR);
        ledger.apply(&[submission("a.org", &[])], 101, HOUR);
        assert_eq!(ledger.host_count(), 0);
        assert!(ledger.records().is_empty());
    }

    #[test]
    fn absent_hosts_expire_after_the_record_lifetime() {
        let mut ledger = Ledger::default();
        ledger.apply(&[submission("a.org", &[VALUE])], 1_000, HOUR);
        let expired = ledger.apply(&[submission("b.org", &[VALUE])], 1_000 + 3599, HOUR);
        assert!(expired.is_empty());
        assert_eq!(ledger.host_count(), 2);
        let expired = ledger.apply(&[], 1_000 + 3600, HOUR);
        assert_eq!(expired, [name("a.org")]);
        assert_eq!(ledger.host_count(), 1);
    }

    #[test]
    fn round_trips_and_drops_records_of_another_zone_on_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Dir::open(dir.path()).expect("open");
        let file = "zone.db.ledger.json";
        let mut ledger = Ledger::default();
        ledger.apply(&[submission("a.org", &[VALUE])], 100, HOUR);
        ledger.save(&store, file).expect("save");
        assert_eq!(
            Ledger::load(&store, file, &policy("acme.test")).expect("load"),
            ledger
        );
        // Another zone: the record does not belong there.
        let other = Ledger::load(&store, file, &policy("other.test")).expect("load");
        assert!(other.records().is_empty());
        // A tampered value does not read back at all: refused, not guessed.
        let path = dir.path().join(file);
        let tampered = std::fs::read_to_string(&path)
            .expect("read")
            .replace(VALUE, "x\\\"y");
        std::fs::write(&path, tampered).expect("write");
        assert!(Ledger::load(&store, file, &policy("acme.test")).is_err());
        std::fs::write(&path, "{").expect("write");
        assert!(Ledger::load(&store, file, &policy("acme.test")).is_err());
    }

    #[test]
    fn a_crowded_name_is_refused_when_it_grows_and_let_through_when_it_shrinks() {
        let values: Vec<String> = ["a", "b", "c"].iter().map(|c| c.repeat(43)).collect();
        let shared = |host: &str, values: &[String]| Submission {
            host: name(host),
            records: values
                .iter()
                .map(|text| TxtRecord {
                    name: name("acme.test"),
                    value: value(text),
                })
                .collect(),
        };
        let empty = Ledger::default();
        let mut two = Ledger::default();
        two.apply(&[shared("a.org", &values[..2])], 100, HOUR);
        assert_eq!(two.crowded_name(&empty, 2), None);
        assert_eq!(two.crowded_name(&empty, 1), Some((name("acme.test"), 2)));
        let mut three = two.clone();
        three.apply(&[shared("b.org", &values[2..])], 100, HOUR);
        assert_eq!(three.crowded_name(&two, 2), Some((name("acme.test"), 3)));
        // Already over the limit, but shrinking: a cleanup must get through.
        let mut cleaned = three.clone();
        cleaned.apply(&[shared("b.org", &[])], 100, HOUR);
        assert_eq!(cleaned.crowded_name(&three, 1), None);
    }
}
