//! Local orders: what `request` decided a test issuer must sign, kept until `finalize` signs
//! it.
//!
//! The same contract as an ACME order: `request` decides and says so in the token document
//! (`ready`, with the reason), `finalize` completes exactly what was decided, and a finalize
//! with nothing decided changes nothing. One file for the host, [`FILE`] in the state
//! directory (0600), read and written by commands/local.rs under the host lock that
//! `request` and `finalize` hold.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::IssuerKind;
use crate::cert::KeyType;
use crate::dns::DnsName;
use crate::store::Versioned;

/// The state file of the local orders, in the state directory.
pub(crate) const FILE: &str = "local-orders.json";

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
    /// No orders.
    pub(crate) fn new() -> Self {
        Self {
            version: Self::VERSION,
            orders: BTreeMap::new(),
        }
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
pub(crate) mod tests {
    use super::*;

    pub(crate) fn order() -> LocalOrder {
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
