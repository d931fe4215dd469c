//! Which CA issued the installed certificate, and why that one: `state_dir/issued/<cert>.json`.
//!
//! Written by `finalize` with the certificate, read by `request` (ARI is asked of that CA,
//! and `replaces` goes only to it), `status`, `check` and the metrics. The record names the
//! serial it was written for: a certificate installed some other way (`install`, by hand)
//! does not inherit it. No record, as on a host from before fallback CAs existed, means
//! the primary issued it.

use serde::{Deserialize, Serialize};

use super::AcmeError;
use crate::cert::Inspection;
use crate::state::StateDir;
use crate::store::Versioned;

/// The issuing CA of one certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IssuedBy {
    pub(crate) version: u32,
    /// The CA's directory URL.
    pub(crate) directory: String,
    /// The certificate's serial number, hex: the record holds for that certificate only.
    pub(crate) serial: String,
    /// Why a fallback CA issued it (the primary's failure); `None` from the primary.
    pub(crate) fallback: Option<String>,
}

impl Versioned for IssuedBy {
    const VERSION: u32 = 1;
    const WHAT: &'static str = "a record of the CA that issued a certificate";
}

impl IssuedBy {
    /// The record for the certificate `inspection` describes, from `directory`.
    pub(crate) fn new(directory: &str, inspection: &Inspection, fallback: Option<String>) -> Self {
        Self {
            version: Self::VERSION,
            directory: directory.to_owned(),
            serial: hex(&inspection.serial),
            fallback,
        }
    }

    /// The record of `cert`, when it is about the certificate `inspection` describes. A
    /// broken record counts as none: the primary is then assumed, which only costs ARI.
    pub(crate) fn of(state: &StateDir, cert: &str, inspection: &Inspection) -> Option<Self> {
        let record: Self = state
            .load_issued(cert)
            .map_err(
                |err| tracing::warn!(cert, error = %err, "ignoring the record of the issuing CA"),
            )
            .ok()??;
        (record.serial == hex(&inspection.serial)).then_some(record)
    }

    pub(crate) fn save(&self, state: &StateDir, cert: &str) -> Result<(), AcmeError> {
        Ok(state.save_issued(cert, self)?)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
