//! The file as the last runs left it: what a run may carry over (probe results and the
//! renewal moment, for the leaf that is still installed).

use std::collections::HashMap;

use super::{InstalledFacts, Sample, Scope};

/// The file as the last runs left it, read under the lock: what this run may carry over.
#[derive(Debug, Default)]
pub(crate) struct Previous {
    pub(super) samples: Vec<Sample>,
    /// What the file says about each certificate's leaf, by host and certificate: looked up
    /// once per certificate, so a host of many certificates is not quadratic.
    leaves: HashMap<(String, String), FileLeaf>,
}

/// One certificate's leaf as the file describes it (the first sample of each family wins).
#[derive(Debug, Default)]
struct FileLeaf {
    expiry: Option<f64>,
    issued: Option<f64>,
    /// The renewal moment and the rule it was stored with (none in a file written before
    /// the rule was stored).
    renewal: Option<(f64, Option<String>)>,
    /// From `fleetcert_certificate_info`: two leaves issued in the same second by a CA of
    /// fixed validity have the same timestamps, not the same serial.
    serial: Option<String>,
}

const EXPIRY: &str = "fleetcert_certificate_expiry_timestamp_seconds";
const ISSUED: &str = "fleetcert_certificate_issued_timestamp_seconds";
const RENEWAL: &str = "fleetcert_certificate_renewal_timestamp_seconds";
const INFO: &str = "fleetcert_certificate_info";

impl Previous {
    pub(super) fn new(samples: Vec<Sample>) -> Self {
        let mut leaves: HashMap<(String, String), FileLeaf> = HashMap::new();
        for sample in &samples {
            let family = sample.family.name;
            if ![EXPIRY, ISSUED, RENEWAL, INFO].contains(&family) {
                continue;
            }
            let (Some(host), Some(cert)) = (sample.label("host"), sample.label("cert")) else {
                continue;
            };
            let leaf = leaves
                .entry((host.to_owned(), cert.to_owned()))
                .or_default();
            match family {
                EXPIRY => _ = leaf.expiry.get_or_insert(sample.value),
                ISSUED => _ = leaf.issued.get_or_insert(sample.value),
                RENEWAL => {
                    let rule = sample.label("rule").map(str::to_owned);
                    _ = leaf.renewal.get_or_insert((sample.value, rule));
                }
                _ => {
                    if let Some(serial) = sample.label("serial") {
                        _ = leaf.serial.get_or_insert_with(|| serial.to_owned());
                    }
                }
            }
        }
        Self { samples, leaves }
    }

    /// What the file says about certificate `cert` of `scope` (only host configs have
    /// certificates).
    fn leaf(&self, scope: &Scope, cert: &str) -> Option<&FileLeaf> {
        let Scope::Host(host) = scope else {
            return None;
        };
        // A borrowed key would need the tuple of Strings: two small copies per lookup.
        self.leaves.get(&(host.clone(), cert.to_owned()))
    }

    /// Whether the file describes `installed` as certificate `cert`'s leaf (so what it says
    /// about that certificate, a probe's result or the renewal moment, is about this leaf).
    /// The serial decides where the file has one (a file of an older fleetcert may not).
    pub(super) fn same_leaf(&self, scope: &Scope, cert: &str, installed: &InstalledFacts) -> bool {
        self.leaf(scope, cert)
            .is_some_and(|leaf| same(leaf, installed))
    }

    /// The renewal moment the file holds for certificate `cert` of `scope` and the rule it
    /// was stored with, when it was recorded for the leaf that is installed now. A moment
    /// without its rule (a file of an older fleetcert) is not carried: the days rule's
    /// stands until the next `request`.
    pub(crate) fn renewal(
        &self,
        scope: &Scope,
        cert: &str,
        installed: &InstalledFacts,
    ) -> Option<(f64, &str)> {
        let leaf = self
            .leaf(scope, cert)
            .filter(|leaf| same(leaf, installed))?;
        let (at, rule) = leaf.renewal.as_ref()?;
        Some((*at, rule.as_deref()?))
    }
}

/// Whether `leaf` is `installed`: the same serial (when the file has one) and timestamps.
fn same(leaf: &FileLeaf, installed: &InstalledFacts) -> bool {
    leaf.serial
        .as_ref()
        .is_none_or(|serial| *serial == installed.serial)
        && leaf.expiry == Some(installed.expiry)
        && leaf.issued == Some(installed.issued)
}
