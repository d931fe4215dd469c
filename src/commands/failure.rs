//! Why one certificate failed in `request` or `finalize`: the report prints its one line, and
//! the run goes on with the other certificates (exit 1).

use std::fmt;

use crate::acme::AcmeError;
use crate::cert::{KeyType, Pkcs12Error};
use crate::dns::{CaaError, ChainError, DelegationError, DnsName};
use crate::issuer::SignError;
use crate::reload::ReloadError;
use crate::store::StoreError;

/// One certificate could not be requested or finalized.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CertFailure {
    /// Some `_acme-challenge` names do not lead to the signing zone.
    #[error("{}", Joined(.0, "; "))]
    Delegation(Vec<DelegationError>),
    /// CAA does not allow the CA for some names, or could not be read.
    #[error("{}", Joined(.0, "; "))]
    Caa(Vec<CaaError>),
    /// No CA issued: each CA asked and why it did not; `waits` says why no fallback was
    /// asked, when none was.
    #[error("{}{}", Joined(.tried, "; "), Waits(.waits.as_deref()))]
    NoCa {
        tried: Vec<Declined>,
        waits: Option<String>,
    },
    /// A name the CA will look up does not validate (DNSSEC).
    #[error("{}", Joined(.0, "; "))]
    Dnssec(Vec<ChainError>),
    /// The CA refused or failed, or what it sent is unusable.
    #[error(transparent)]
    Acme(#[from] AcmeError),
    /// A test issuer could not sign the certificate.
    #[error(transparent)]
    Sign(#[from] SignError),
    /// A test issuer does not replace a CA's certificate unless the config says so.
    #[error("{0}")]
    CaIssued(String),
    /// A file of this certificate could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Its PKCS#12 keystore could not be built.
    #[error(transparent)]
    Keystore(#[from] Pkcs12Error),
    /// The certificate is installed, but the reload an earlier run owed it failed again.
    #[error(transparent)]
    Reload(#[from] ReloadError),
    /// The saved order was made for another set of names, key type or CA.
    #[error(
        "the config changed since the order was made (it was for [{}], {key}, at {directory}): \
         run request again",
        Joined(names, ", ")
    )]
    ConfigChanged {
        names: Vec<DnsName>,
        key: KeyType,
        directory: String,
    },
}

impl From<CaaError> for CertFailure {
    fn from(err: CaaError) -> Self {
        Self::Caa(vec![err])
    }
}

/// One CA that did not take a certificate's order, and why.
#[derive(Debug, thiserror::Error)]
#[error("{ca}: {failure}")]
pub(crate) struct Declined {
    /// "primary CA URL" or "fallback CA URL".
    pub(crate) ca: String,
    pub(crate) failure: Box<CertFailure>,
}

/// `; <why>` when there is a why.
struct Waits<'a>(Option<&'a str>);

impl fmt::Display for Waits<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(why) => write!(f, "; {why}"),
            None => Ok(()),
        }
    }
}

/// A list shown as one line, with a separator between the items.
struct Joined<'a, T>(&'a [T], &'static str);

impl<T: fmt::Display> fmt::Display for Joined<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, item) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str(self.1)?;
            }
            write!(f, "{item}")?;
        }
        Ok(())
    }
}
