//! Who issues this host's certificates, chosen once at the start of a run from `issuer:`: a
//! CA over ACME (request.rs, finalize.rs), or a test issuer that needs no CA and no DNS
//! (local.rs). `request`, `finalize` and `renew` each take the one chosen.

use crate::config::HostConfig;
use crate::issuer::TestIssuer;

/// The issuer of one run.
#[derive(Debug, Clone, Copy)]
pub(super) enum Issuing<'c> {
    /// The configured CA (`acme`, and the fallback CAs).
    Acme,
    /// `issuer: self-signed` or `local-ca`.
    Test(&'c TestIssuer),
}

impl<'c> Issuing<'c> {
    /// The issuer `config` names.
    pub(super) fn of(config: &'c HostConfig) -> Self {
        match config.issuer.test() {
            Some(issuer) => Self::Test(issuer),
            None => Self::Acme,
        }
    }
}
