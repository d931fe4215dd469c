//! The ledger: which host owns which records, and when each host was last seen.
//!
//! It lives beside the zone file (`<zone_file>.ledger.json`, 0600) and is replaced atomically.
//! A host's document replaces that host's records and no one else's; a host absent from a
//! publish keeps its records until `record_lifetime` after it was last seen, so hosts can
//! publish in separate runs; an empty `records` list removes the host's records at once.
//! Records read back from the ledger are validated again, like token input.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Submission, TxtRecord, ZoneError, shown};
use crate::names::{canonical_name, is_in_zone};
use crate::store::{self, Access};

/// Format version of the ledger file.
const LEDGER_VERSION: u32 = 1;

/// One host's records and when it last sent them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HostEntry {
    /// Unix seconds of the publish that last carried this host's document.
    pub(crate) last_seen: u64,
    pub(crate) records: BTreeSet<TxtRecord>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LedgerFile {
    version: u32,
    hosts: BTreeMap<String, HostEntry>,
}

/// Every host's records in the signing zone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Ledger {
    hosts: BTreeMap<String, HostEntry>,
}

impl Ledger {
    /// Where the ledger of `zone_file` lives.
    pub(crate) fn path_for(zone_file: &Path) -> PathBuf {
        let mut name = zone_file.as_os_str().to_owned();
        name.push(".ledger.json");
        PathBuf::from(name)
    }

    /// Reads the ledger at `path`; a missing file is an empty ledger. Records that are not
    /// valid for `zone` (a changed config, an edited file) are dropped with a warning.
    pub(crate) fn load(path: &Path, zone: &str) -> Result<Self, ZoneError> {
        let Some(bytes) = store::read_optional(path)? else {
            return Ok(Self::default());
        };
        let file: LedgerFile = serde_json::from_slice(&bytes).map_err(|err| ZoneError::Ledger {
            path: path.to_owned(),
            problem: format!(
                "is not a fleetcert ledger ({err}): move it away; the next publish of every \
                 host rebuilds it"
            ),
        })?;
        if file.version != LEDGER_VERSION {
            return Err(ZoneError::Ledger {
                path: path.to_owned(),
                problem: format!(
                    "has version {}, this fleetcert reads {LEDGER_VERSION}: use the matching \
                     fleetcert, or move it away",
                    file.version
                ),
            });
        }
        let mut hosts = BTreeMap::new();
        for (host, mut entry) in file.hosts {
            if canonical_name(&host, false).as_deref() != Ok(host.as_str()) {
                tracing::warn!(ledger = %path.display(), host = %shown(&host), "dropping a host with a bad name");
                continue;
            }
            entry.records.retain(|record| {
                let keep = is_valid(record, zone);
                if !keep {
                    tracing::warn!(ledger = %path.display(), host, name = %shown(&record.name), "dropping a record that is not valid for this zone");
                }
                keep
            });
            hosts.insert(host, entry);
        }
        Ok(Self { hosts })
    }

    /// Writes the ledger atomically.
    pub(crate) fn save(&self, path: &Path) -> Result<(), ZoneError> {
        let file = LedgerFile {
            version: LEDGER_VERSION,
            hosts: self.hosts.clone(),
        };
        // Serializing plain strings and numbers cannot fail.
        let bytes = serde_json::to_vec(&file).unwrap_or_default();
        store::write_atomic(path, &bytes, Access::secret())?;
        Ok(())
    }

    /// Applies one publish at `now` (Unix seconds): each submitting host's records replace
    /// its old ones (none: the host is removed); hosts not seen for `lifetime` expire.
    /// Returns the hosts that expired.
    pub(crate) fn apply(
        &mut self,
        submissions: &[Submission],
        now: u64,
        lifetime: Duration,
    ) -> Vec<String> {
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
        let expired: Vec<String> = self
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
    pub(crate) fn crowded_name(&self, before: &Self, max: usize) -> Option<(String, usize)> {
        let old = values_per_name(&before.records());
        values_per_name(&self.records())
            .into_iter()
            .find(|(name, count)| *count > max && *count > old.get(name).copied().unwrap_or(0))
            .map(|(name, count)| (name.to_owned(), count))
    }

    /// Hosts that have records.
    pub(crate) fn host_count(&self) -> usize {
        self.hosts.len()
    }
}

/// How many distinct values each name holds.
fn values_per_name<'a>(records: &BTreeSet<&'a TxtRecord>) -> BTreeMap<&'a str, usize> {
    let mut counts = BTreeMap::new();
    for record in records {
        *counts.entry(record.name.as_str()).or_insert(0) += 1;
    }
    counts
}

/// Whether a record read back from the ledger may go into `zone`.
fn is_valid(record: &TxtRecord, zone: &str) -> bool {
    let name = record.name.strip_suffix('.').unwrap_or("");
    canonical_name(name, false).as_deref() == Ok(name)
        && is_in_zone(&record.name, zone)
        && crate::token::is_txt_value(&record.value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zone::input::tests::VALUE;

    fn submission(host: &str, values: &[&str]) -> Submission {
        Submission {
            host: host.to_owned(),
            records: values
                .iter()
                .map(|value| TxtRecord {
                    name: format!("{host}.acme.test."),
                    value: (*value).to_owned(),
                })
                .collect(),
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
                .any(|r| r.name == "a.org.acme.test." && r.value == other)
        );
        assert!(
            records
                .iter()
                .any(|r| r.name == "b.org.acme.test." && r.value == VALUE)
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
        assert_eq!(expired, ["a.org"]);
        assert_eq!(ledger.host_count(), 1);
    }

    #[test]
    fn round_trips_and_drops_invalid_records_on_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = Ledger::path_for(&dir.path().join("zone.db"));
        let mut ledger = Ledger::default();
        ledger.apply(&[submission("a.org", &[VALUE])], 100, HOUR);
        ledger.save(&path).expect("save");
        assert_eq!(Ledger::load(&path, "acme.test").expect("load"), ledger);
        // Another zone: the record does not belong there.
        let other = Ledger::load(&path, "other.test").expect("load");
        assert!(other.records().is_empty());
        let tampered = std::fs::read_to_string(&path)
            .expect("read")
            .replace(VALUE, "x\\\"y");
        std::fs::write(&path, tampered).expect("write");
        assert!(
            Ledger::load(&path, "acme.test")
                .expect("load")
                .records()
                .is_empty()
        );
        std::fs::write(&path, "{").expect("write");
        assert!(Ledger::load(&path, "acme.test").is_err());
    }

    #[test]
    fn a_crowded_name_is_refused_when_it_grows_and_let_through_when_it_shrinks() {
        let values: Vec<String> = ["a", "b", "c"].iter().map(|c| c.repeat(43)).collect();
        let shared = |host: &str, values: &[String]| Submission {
            host: host.to_owned(),
            records: values
                .iter()
                .map(|value| TxtRecord {
                    name: "acme.test.".to_owned(),
                    value: value.clone(),
                })
                .collect(),
        };
        let empty = Ledger::default();
        let mut two = Ledger::default();
        two.apply(&[shared("a.org", &values[..2])], 100, HOUR);
        assert_eq!(two.crowded_name(&empty, 2), None);
        assert_eq!(
            two.crowded_name(&empty, 1),
            Some(("acme.test.".to_owned(), 2))
        );
        let mut three = two.clone();
        three.apply(&[shared("b.org", &values[2..])], 100, HOUR);
        assert_eq!(
            three.crowded_name(&two, 2),
            Some(("acme.test.".to_owned(), 3))
        );
        // Already over the limit, but shrinking: a cleanup must get through.
        let mut cleaned = three.clone();
        cleaned.apply(&[shared("b.org", &[])], 100, HOUR);
        assert_eq!(cleaned.crowded_name(&three, 1), None);
    }
}
