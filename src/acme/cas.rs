//! The CAs of one `request` or `finalize` run: the primary (`acme`), then each `fallback`,
//! each with its account opened at most once, when first needed (docs/renewal.md).
//!
//! A fallback CA is asked only when the primary cannot issue and waiting costs something
//! ([`urgency`]); which CA issued the certificate on disk ([`Cas::issuer_of`]) is the one
//! asked for its renewal window and named in `replaces`.

use instant_acme::Account;
use time::OffsetDateTime;
use tokio::sync::OnceCell;

use super::{AcmeError, IssuedBy, PendingOrder, caa_identities, open_or_create, open_required};
use crate::cert::{Inspection, KeyType, RenewalDecision};
use crate::config::{Acme, HostConfig};
use crate::dns::DnsName;
use crate::state::StateDir;

/// One configured CA and, once opened, this host's account there.
pub(crate) struct Ca<'c> {
    pub(crate) acme: &'c Acme,
    /// The primary CA (`acme`), not a fallback.
    pub(crate) primary: bool,
    account: OnceCell<Account>,
    /// Its CAA identities, once read (an error is not kept: the next certificate asks again).
    identities: OnceCell<Vec<String>>,
}

/// Every CA of the config, the primary first.
pub(crate) struct Cas<'c> {
    list: Vec<Ca<'c>>,
}

impl<'c> Cas<'c> {
    pub(crate) fn new(config: &'c HostConfig) -> Self {
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
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Ca<'c>> {
        self.list.iter()
    }

    /// The primary CA.
    pub(crate) fn primary(&self) -> &Ca<'c> {
        &self.list[0]
    }

    /// The CA whose directory is `directory`, if the config still has it.
    pub(crate) fn find(&self, directory: &str) -> Option<&Ca<'c>> {
        self.list.iter().find(|ca| ca.acme.directory == directory)
    }

    /// The CA that issued the installed certificate: the one its record names, the primary
    /// when there is no record (a certificate from before fallback CAs, or from the primary).
    pub(crate) fn issuer_of(
        &self,
        state: &StateDir,
        cert: &str,
        inspection: Option<&Inspection>,
    ) -> &Ca<'c> {
        inspection
            .and_then(|inspection| IssuedBy::of(state, cert, inspection))
            .and_then(|issued| self.find(&issued.directory))
            .unwrap_or_else(|| self.primary())
    }

    /// The CA of a saved order, when the config still lists it and the order still fits
    /// the certificate (names, key type, the CA's profile): else the order is forgotten.
    pub(crate) fn order_ca(
        &self,
        saved: &PendingOrder,
        names: &[DnsName],
        key: KeyType,
    ) -> Option<&Ca<'c>> {
        self.find(&saved.directory)
            .filter(|ca| saved.fits(names, key, ca.acme.profile.as_deref(), &ca.acme.directory))
    }

    /// Opens the primary's stored account before the certificates, when there is one: with
    /// orders pending and no fallback CA, the CA unreachable fails the run as a whole.
    pub(crate) async fn open_primary(&self, state: &StateDir) -> Result<(), AcmeError> {
        if let Some(account) = super::open_existing(self.primary().acme, state).await? {
            self.primary().set_account(account);
        }
        Ok(())
    }
}

impl Ca<'_> {
    /// Keeps an account already opened (the primary's, opened before the certificates).
    pub(crate) fn set_account(&self, account: Account) {
        // Set once, before any certificate asks: a second set cannot happen.
        let _ = self.account.set(account);
    }

    /// This host's account at this CA, opened (or, with `create`, registered) on first use.
    /// A failure is not kept: each certificate that needs the CA gets its own error.
    pub(crate) async fn account(
        &self,
        state: &StateDir,
        create: bool,
    ) -> Result<&Account, AcmeError> {
        self.account
            .get_or_try_init(|| async {
                if create {
                    open_or_create(self.acme, state).await
                } else {
                    open_required(self.acme, state).await
                }
            })
            .await
    }

    /// Its CAA identities (the config's, else the directory's), read once.
    pub(crate) async fn identities(&self) -> Result<&[String], AcmeError> {
        self.identities
            .get_or_try_init(|| caa_identities(self.acme))
            .await
            .map(Vec::as_slice)
    }

    /// How this CA is named in a report: "primary CA URL" or "fallback CA URL".
    pub(crate) fn describe(&self) -> String {
        let role = if self.primary { "primary" } else { "fallback" };
        format!("{role} CA {}", self.acme.directory)
    }
}

/// Why waiting for the primary would cost something, when it would: no usable certificate
/// (missing, unreadable, expired, names, key type or issuer changed), or fewer days left
/// than `renew.fallback_within_days`. `None`: the certificate can wait.
pub(crate) fn urgency(
    config: &HostConfig,
    inspection: Option<&Inspection>,
    decision: &RenewalDecision,
    now: OffsetDateTime,
) -> Option<String> {
    if let RenewalDecision::Due(reason) = decision
        && reason.is_immediate()
    {
        return Some(reason.to_string());
    }
    let inspection = inspection?;
    let days_left = inspection.remaining(now).as_secs() / 86_400;
    let within = u64::from(config.renew.fallback_within_days);
    (days_left < within)
        .then(|| format!("{days_left} days left, inside renew.fallback_within_days ({within})"))
}
