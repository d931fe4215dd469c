//! Local orders: what `request` decided a test issuer must sign, kept until `finalize` signs
//! it.
//!
//! The same contract as an ACME order: `request` decides and says so in the token document
//! (`ready`, with the reason), `finalize` completes exactly what was decided, and a finalize
//! with nothing decided changes nothing. One file for the host, `state_dir/local-orders.json`
//! (0600), under the host lock that `request` and `finalize` hold.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::IssuerKind;
use crate::acme::StateDir;
use crate::cert::KeyType;
use crate::dns::DnsName;
use crate::store::{StoreError, Versioned};

/// The state file of the local orders.
const FILE: &str = "local-orders.json";

/// Every local order of the host, by certificate name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LocalOrders {
    pub(crate) version: u32,
    pub(crate) orders: BTreeMap<String, LocalOrder>,
}

/// One certificate a test issuer is to sign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LocalOrder {
    /// The issuer that is to sign it.
    pub(crate) issuer: IssuerKind,
    /// The names, as the config lists them.
    pub(crate) names: Vec<DnsName>,
    pub(crate) key: KeyType,
    /// Why it was due, repeated by later `request`s.
    pub(crate) reason: String,
    /// When it was decided (RFC 3339).
    pub(crate) created: String,
}

impl Versioned for LocalOrders {
    const VERSION: u32 = 1;
    const WHAT: &'static str = "the saved local orders";
}

impl LocalOrders {
    /// The saved local orders; none when there is no file.
    pub(crate) fn load(state: &StateDir) -> Result<Self, StoreError> {
        Ok(state.load(FILE)?.unwrap_or_else(Self::new))
    }

    /// No orders.
    pub(crate) fn new() -> Self {
        Self {
            version: Self::VERSION,
            orders: BTreeMap::new(),
        }
    }

    pub(crate) fn save(&self, state: &StateDir) -> Result<(), StoreError> {
        state.save(FILE, self)
    }
}

impl LocalOrder {
    /// Whether this order still gives what the config asks for, from the same issuer.
    pub(crate) fn fits(&self, names: &[DnsName], key: KeyType, issuer: IssuerKind) -> bool {
        let mut mine = self.names.clone();
        mine.sort();
        let mut wanted = names.to_vec();
        wanted.sort();
        mine == wanted && self.key == key && self.issuer == issuer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order() -> LocalOrder {
        let name = |text| DnsName::parse_identifier(text).expect("name");
        LocalOrder {
            issuer: IssuerKind::LocalCa,
            names: vec![name("b.example.org"), name("*.b.example.org")],
            key: KeyType::EcdsaP384,
            reason: "no certificate yet".to_owned(),
            created: "2026-01-01T00:00:00Z".to_owned(),
        }
    }

    #[test]
    fn local_orders_round_trip_and_none_is_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::open(dir.path(), true).expect("state");
        assert_eq!(LocalOrders::load(&state).expect("load"), LocalOrders::new());
        let mut orders = LocalOrders::new();
        orders.orders.insert("main".to_owned(), order());
        orders.save(&state).expect("save");
        assert_eq!(LocalOrders::load(&state).expect("load"), orders);
    }

    #[test]
    fn local_order_fits_the_same_names_key_and_issuer_only() {
        let order = order();
        let mut names = order.names.clone();
        names.reverse();
        assert!(order.fits(&names, KeyType::EcdsaP384, IssuerKind::LocalCa));
        assert!(!order.fits(&names[..1], KeyType::EcdsaP384, IssuerKind::LocalCa));
        assert!(!order.fits(&names, KeyType::Rsa2048, IssuerKind::LocalCa));
        assert!(!order.fits(&names, KeyType::EcdsaP384, IssuerKind::SelfSigned));
    }
}
