//! The file as the last runs left it: what a run may carry over (probe results and the
//! renewal moment, for the leaf that is still installed).

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use super::{InstalledFacts, Sample, Scope};

/// The file as the last runs left it, read under the lock: what this run may carry over.
#[derive(Debug, Default)]
pub(crate) struct Previous {
    pub(super) samples: Vec<Sample>,
    /// What the file says about each certificate's leaf, by host, certificate and family:
    /// looked up once per certificate, so a host of many certificates is not quadratic.
    leaves: HashMap<(String, String, &'static str), f64>,
    /// The rule each renewal moment was stored with, by host and certificate (none in a
    /// file written before the rule was stored).
    rules: HashMap<(String, String), String>,
    /// The serial of each certificate's leaf, by host and certificate: two leaves issued in
    /// the same second by a CA of fixed validity have the same timestamps.
    serials: HashMap<(String, String), String>,
}

/// The family whose `serial` label names each certificate's leaf.
const INFO_FAMILY: &str = "fleetcert_certificate_info";

/// The families [`Previous`] looks up by certificate.
const LEAF_FAMILIES: [&str; 3] = [
    "fleetcert_certificate_expiry_timestamp_seconds",
    "fleetcert_certificate_issued_timestamp_seconds",
    "fleetcert_certificate_renewal_timestamp_seconds",
];

impl Previous {
    pub(super) fn new(samples: Vec<Sample>) -> Self {
        let [_, _, renewal] = LEAF_FAMILIES;
        let mut leaves = HashMap::new();
        let mut rules = HashMap::new();
        let mut serials = HashMap::new();
        for sample in &samples {
            if sample.family.name == INFO_FAMILY {
                if let (Some(host), Some(cert), Some(serial)) = (
                    sample.label("host"),
                    sample.label("cert"),
                    sample.label("serial"),
                ) {
                    serials
                        .entry((host.to_owned(), cert.to_owned()))
                        .or_insert_with(|| serial.to_owned());
                }
                continue;
            }
            if !LEAF_FAMILIES.contains(&sample.family.name) {
                continue;
            }
            if let (Some(host), Some(cert)) = (sample.label("host"), sample.label("cert")) {
                let key = (host.to_owned(), cert.to_owned(), sample.family.name);
                let Entry::Vacant(entry) = leaves.entry(key) else {
                    continue;
                };
                entry.insert(sample.value);
                if let (true, Some(rule)) = (sample.family.name == renewal, sample.label("rule")) {
                    rules.insert((host.to_owned(), cert.to_owned()), rule.to_owned());
                }
            }
        }
        Self {
            samples,
            leaves,
            rules,
            serials,
        }
    }

    /// The value of `family` for certificate `cert` of `scope` (only host configs have
    /// certificates).
    fn leaf_value(&self, scope: &Scope, cert: &str, family: &'static str) -> Option<f64> {
        let Scope::Host(host) = scope else {
            return None;
        };
        // A borrowed key would need the tuple of Strings: two small copies per lookup.
        let key = (host.clone(), cert.to_owned(), family);
        self.leaves.get(&key).copied()
    }

    /// Whether the file describes `installed` as certificate `cert`'s leaf (so what it says
    /// about that certificate, a probe's result or the renewal moment, is about this leaf).
    /// The serial decides where the file has one (a file of an older fleetcert may not).
    pub(super) fn same_leaf(&self, scope: &Scope, cert: &str, installed: &InstalledFacts) -> bool {
        let [expiry, issued, _] = LEAF_FAMILIES;
        let Scope::Host(host) = scope else {
            return false;
        };
        let serial = self.serials.get(&(host.clone(), cert.to_owned()));
        serial.is_none_or(|serial| *serial == installed.serial)
            && self.leaf_value(scope, cert, expiry) == Some(installed.expiry)
            && self.leaf_value(scope, cert, issued) == Some(installed.issued)
    }

    /// The renewal moment the file holds for certificate `cert` of `scope` and the rule it
    /// was stored with, when it was recorded for the leaf that is installed now (expiry and
    /// issue time as in `installed`). A moment without its rule (a file of an older
    /// fleetcert) is not carried: the days rule's stands until the next `request`.
    pub(crate) fn renewal(
        &self,
        scope: &Scope,
        cert: &str,
        installed: &InstalledFacts,
    ) -> Option<(f64, &str)> {
        let [_, _, renewal] = LEAF_FAMILIES;
        let Scope::Host(host) = scope else {
            return None;
        };
        if !self.same_leaf(scope, cert, installed) {
            return None;
        }
        let at = self.leaf_value(scope, cert, renewal)?;
        let rule = self.rules.get(&(host.clone(), cert.to_owned()))?;
        Some((at, rule))
    }
}
