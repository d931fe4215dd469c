//! Who signs a host's certificates: an ACME CA (production), or a test issuer for gate jobs
//! that have no CA and no signing zone (`issuer: self-signed`, or `issuer: {local-ca: ...}`
//! with a CI key the hosts under test trust).
//!
//! A test issuer changes only who signs: the key is made on the host as for a CA
//! (`cert::KeyType::generate`), the certificate carries the configured names and key type,
//! and it is installed through the same atomic install, so a gate exercises the roles,
//! handlers and renewal rules of production. This module owns the noun: the checked issuer
//! ([`Issuer`]), who made a certificate on disk ([`Origin`]), the signing itself
//! (`sign.rs`), and the local orders that carry `request`'s decision to `finalize`
//! ([`LocalOrders`]).

mod ca;
mod order;
mod origin;
mod sign;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use rcgen::KeyPair;
use serde::{Deserialize, Serialize};

pub(crate) use ca::CaProblem;
#[cfg(test)]
pub(crate) use order::tests::order as local_order;
pub(crate) use order::{FILE as LOCAL_ORDERS_FILE, LocalOrder, LocalOrders};
pub(crate) use origin::Origin;
pub(crate) use sign::SignError;

/// Who signs this host's certificates (`issuer:` in the host config).
#[derive(Debug)]
pub(crate) enum Issuer {
    /// An ACME CA through the signing zone (`acme:`): production, the default.
    Acme,
    /// A test issuer: nobody is contacted, finalize signs on the host.
    Test(TestIssuer),
}

/// The kind of issuer, as the config and the saved local orders name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum IssuerKind {
    Acme,
    SelfSigned,
    LocalCa,
}

impl IssuerKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Acme => "acme",
            Self::SelfSigned => "self-signed",
            Self::LocalCa => "local-ca",
        }
    }
}

impl fmt::Display for IssuerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A test issuer and its options.
#[derive(Debug)]
pub(crate) struct TestIssuer {
    pub(crate) signer: Signer,
    /// How long each certificate is valid: short enough that a gate sees a renewal.
    pub(crate) lifetime: Duration,
    /// The config says a certificate a CA issued may be replaced by a test one. Without it,
    /// a test issuer configured by accident on a production host leaves the real
    /// certificate alone and fails that certificate with the reason.
    pub(crate) replace_ca_issued: bool,
}

/// What signs a test issuer's certificates.
#[derive(Debug)]
pub(crate) enum Signer {
    /// Each certificate signs itself.
    SelfSigned,
    /// A CA certificate and key the gate's hosts trust (boxed: rcgen's issuer is large).
    LocalCa(Box<LocalCa>),
}

/// A local CA read from the config: its certificate (with any issuers of its own) and key.
pub(crate) struct LocalCa {
    /// The CA certificate file, for messages.
    pub(crate) cert_path: PathBuf,
    /// Every certificate of that file, PEM: the chain handed out with each leaf.
    pub(crate) chain_pem: String,
    /// The CA's subject, DER, to recognise the certificates it signed.
    pub(crate) subject: Vec<u8>,
    /// The CA's SubjectPublicKeyInfo, DER, to check their signatures.
    pub(crate) public_key_info: Vec<u8>,
    /// When the CA expires: no leaf it signs outlives it.
    pub(crate) not_after: time::OffsetDateTime,
    /// The CA's name, key identifier and key, as rcgen signs with them.
    pub(crate) signer: rcgen::Issuer<'static, KeyPair>,
}

impl fmt::Debug for LocalCa {
    /// The key never reaches a log: only the certificate's path is shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalCa")
            .field("cert_path", &self.cert_path)
            .finish_non_exhaustive()
    }
}

impl Issuer {
    pub(crate) fn kind(&self) -> IssuerKind {
        match self {
            Self::Acme => IssuerKind::Acme,
            Self::Test(test) => test.kind(),
        }
    }

    /// The test issuer, when this is one.
    pub(crate) fn test(&self) -> Option<&TestIssuer> {
        match self {
            Self::Acme => None,
            Self::Test(test) => Some(test),
        }
    }

    /// The local CA, when this issuer is one.
    pub(crate) fn local_ca(&self) -> Option<&LocalCa> {
        match self.test().map(|test| &test.signer) {
            Some(Signer::LocalCa(ca)) => Some(ca),
            _ => None,
        }
    }
}

impl TestIssuer {
    pub(crate) fn kind(&self) -> IssuerKind {
        match self.signer {
            Signer::SelfSigned => IssuerKind::SelfSigned,
            Signer::LocalCa(_) => IssuerKind::LocalCa,
        }
    }
}
