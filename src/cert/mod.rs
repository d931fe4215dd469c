//! Certificates on the host: keys and CSRs, what a certificate on disk says and whether it is
//! due, where its files go (layouts), one certificate's set of files (read from one version,
//! installed atomically), and the PKCS#12 keystore for Java services.

mod due;
mod incoming;
mod inspect;
mod install;
mod key;
mod layout;
mod pkcs12;
mod set;

pub(crate) use due::not_due;
pub(crate) use incoming::IncomingError;
pub(crate) use inspect::{
    DueReason, InspectError, Inspection, RenewalDecision, RenewalWindow, Rule, RuleKind, Schedule,
    Wanted, inspect_chain, serial_hex,
};
pub(crate) use install::{CertDir, Secret};
pub(crate) use key::{KeyError, KeyType, PrivateKey};
pub(crate) use layout::{CertPaths, FileNames, Layout, MAX_ACME_SH_NAME};
pub(crate) use pkcs12::{Keystore, KeystorePassword, Pkcs12Error};
pub(crate) use set::{CertSet, SetError};
