//! `fleetcert hiera`: one legacy host's issued material as a hiera YAML file for Puppet.

use crate::error::{Error, Outcome};

/// The hiera export failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HieraError {
    /// A certificate the config lists has not been issued on this host.
    #[error("host {host}: certificate `{cert}` is not issued yet: run request and finalize first")]
    Missing { host: String, cert: String },
}

impl HieraError {
    /// Whether the operator's input is at fault (exit 2).
    pub(crate) fn is_input(&self) -> bool {
        matches!(self, Self::Missing { .. })
    }
}

pub(crate) fn run(_args: crate::cli::HieraArgs) -> Result<Outcome, Error> {
    todo!("hiera")
}
