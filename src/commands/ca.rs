//! The CAs of one `request` or `finalize` run: the primary (`acme`), then each `fallback`,
//! each with its account opened at most once, when first needed (docs/renewal.md).
//!
//! A fallback CA is asked only when the primary cannot issue and waiting costs something
//! ([`urgency`]); CAA must allow each CA before it gets an order ([`check_caa`]).

use std::net::SocketAddr;

use futures_util::StreamExt as _;
use instant_acme::Account;
use time::OffsetDateTime;
use tokio::sync::OnceCell;

use super::failure::CertFailure;
use super::installed::Installed;
use crate::acme::{self, AcmeError, IssuedBy, StateDir};
use crate::cert::RenewalDecision;
use crate::config::{Acme, CertSpec, HostConfig};
use crate::dns::{CaaError, DnsName, relevant_set};

/// CAA questions in flight at once for one certificate.
const CAA_CONCURRENCY: usize = 8;

/// One configured CA and, once opened, this host's account there.
pub(super) struct Ca<'c> {
    pub(super) acme: &'c Acme,
    /// The primary CA (`acme`), not a fallback.
    pub(super) primary: bool,
    account: OnceCell<Account>,
    /// Its CAA identities, once read (an error is not kept: the next certificate asks again).
    identities: OnceCell<Vec<String>>,
}

/// Every CA of the config, the primary first.
pub(super) struct Cas<'c> {
    list: Vec<Ca<'c>>,
}

impl<'c> Cas<'c> {
    pub(super) fn new(config: &'c HostConfig) -> Self {
        Self {
            list: config
                .cas()
                .enumerate()
                .map(|(index, acme)| Ca {
                    acme,
                    primary: index == 0,
                    account: OnceCell::new(),
                    identities: OnceCell::new(),
                })
                .collect(),
        }
    }

    /// The CAs in the order they are tried.
    pub(super) fn iter(&self) -> impl Iterator<Item = &Ca<'c>> {
        self.list.iter()
    }

    /// The primary CA.
    pub(super) fn primary(&self) -> &Ca<'c> {
        &self.list[0]
    }

    /// The CA whose directory is `directory`, if the config still has it.
    pub(super) fn find(&self, directory: &str) -> Option<&Ca<'c>> {
        self.list.iter().find(|ca| ca.acme.directory == directory)
    }

    /// The CA that issued the installed certificate: the one its record names, the primary
    /// when there is no record (a certificate from before fallback CAs, or from the primary).
    pub(super) fn issuer_of(
        &self,
        state: &StateDir,
        cert: &str,
        installed: &Installed<'_>,
    ) -> &Ca<'c> {
        installed
            .inspection()
            .and_then(|inspection| IssuedBy::of(state, cert, inspection))
            .and_then(|issued| self.find(&issued.directory))
            .unwrap_or_else(|| self.primary())
    }
}

impl Ca<'_> {
    /// Keeps an account already opened (the primary's, opened before the certificates).
    pub(super) fn set_account(&self, account: Account) {
        // Set once, before any certificate asks: a second set cannot happen.
        let _ = self.account.set(account);
    }

    /// This host's account at this CA, opened (or, with `create`, registered) on first use.
    /// A failure is not kept: each certificate that needs the CA gets its own error.
    pub(super) async fn account(
        &self,
        state: &StateDir,
        create: bool,
    ) -> Result<&Account, AcmeError> {
        self.account
            .get_or_try_init(|| async {
                if create {
                    return acme::open_or_create(self.acme, state).await;
                }
                acme::open_existing(self.acme, state)
                    .await?
                    .ok_or_else(|| AcmeError::NoAccount {
                        directory: self.acme.directory.clone(),
                        state_dir: state.path().to_owned(),
                    })
            })
            .await
    }

    /// Its CAA identities (the config's, else the directory's), read once.
    async fn identities(&self) -> Result<&[String], AcmeError> {
        self.identities
            .get_or_try_init(|| acme::caa_identities(self.acme))
            .await
            .map(Vec::as_slice)
    }

    /// How this CA is named in a report: "primary CA URL" or "fallback CA URL".
    pub(super) fn describe(&self) -> String {
        let role = if self.primary { "primary" } else { "fallback" };
        format!("{role} CA {}", self.acme.directory)
    }
}

/// Why waiting for the primary would cost something, when it would: no usable certificate
/// (missing, unreadable, expired, names, key type or issuer changed), or fewer days left
/// than `renew.fallback_within_days`. `None`: the certificate can wait.
pub(super) fn urgency(
    config: &HostConfig,
    installed: &Installed<'_>,
    decision: &RenewalDecision,
    now: OffsetDateTime,
) -> Option<String> {
    if let RenewalDecision::Due(reason) = decision
        && reason.is_immediate()
    {
        return Some(reason.to_string());
    }
    let inspection = installed.inspection()?;
    let days_left = inspection.remaining(now).as_secs() / 86_400;
    let within = u64::from(config.renew.fallback_within_days);
    (days_left < within)
        .then(|| format!("{days_left} days left, inside renew.fallback_within_days ({within})"))
}

/// Whether CAA allows `ca` to issue for every name of `spec` (RFC 8659), through the host's
/// resolver. The CA's identities are read only when some set restricts issuing.
pub(super) async fn check_caa(
    resolver: SocketAddr,
    ca: &Ca<'_>,
    spec: &CertSpec,
) -> Result<(), CertFailure> {
    let sets: Vec<Result<_, CaaError>> = futures_util::stream::iter(spec.names.iter())
        .map(|name| async move { relevant_set(resolver, name).await.map(|set| (name, set)) })
        .buffered(CAA_CONCURRENCY)
        .collect()
        .await;
    let mut problems = Vec::new();
    for found in sets {
        let (name, set): (&DnsName, _) = found?;
        let Some(set) = set else { continue };
        let identities = ca.identities().await?;
        if let Err(problem) = set.allows(name, identities) {
            problems.push(problem);
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(CertFailure::Caa(problems))
    }
}
