//! `fleetcert finalize`: complete each pending order and install its certificate.
//!
//! Each certificate is finished on its own: one whose validation fails is reported with the
//! CA's problem and leaves its old files byte-identical, while the others still complete.
//! The files of one certificate are installed as one set (`cert::CertDir::install`).

use futures_util::future::join_all;
use serde::Serialize;
use tracing::{info, warn};

use super::ca::Cas;
use super::failure::CertFailure;
use super::installed::{Installed, rfc3339};
use super::record::Observed;
use super::report::print_json;
use crate::acme::{self, AcmeError, IssuedBy, IssuedChain, PendingOrder, StateDir};
use crate::cert::{CertPaths, CertSet, Keystore, PrivateKey};
use crate::cli::HostArgs;
use crate::config::{CertSpec, HostConfig};
use crate::dns::DnsName;
use crate::error::{Error, Outcome};
use crate::reload;
use crate::token::CheckVerdict;

/// The JSON report of one finalize run (docs/reports.md).
#[derive(Debug, Serialize)]
pub(super) struct Report {
    host: String,
    /// Whether any certificate file was replaced (Ansible's `changed`).
    pub(super) changed: bool,
    certs: Vec<CertReport>,
    /// `--check`: what `fleetcert check` says after the installs and reloads.
    #[serde(skip_serializing_if = "Option::is_none")]
    check: Option<CheckVerdict>,
}

#[derive(Debug, Serialize)]
pub(super) struct CertReport {
    name: String,
    status: FinalizeStatus,
    /// Whether this certificate's files were replaced (or would be, with `--dry-run`).
    changed: bool,
    names: Vec<DnsName>,
    not_after: Option<String>,
    paths: CertPaths,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// The directory URL of the CA that issued the certificate installed by this run.
    #[serde(skip_serializing_if = "Option::is_none")]
    ca: Option<String>,
    /// Why a fallback CA issued it: what the primary said, and why it could not wait.
    #[serde(skip_serializing_if = "Option::is_none")]
    fallback: Option<String>,
    /// Whether `reload` ran and the service is on the installed set; `null` when no reload
    /// was due (nothing changed, none pending, none configured, `--dry-run`).
    reloaded: Option<bool>,
    /// Why the reload failed: it stays pending and every later run tries it again.
    #[serde(skip_serializing_if = "Option::is_none")]
    reload_error: Option<String>,
}

/// What finalize did with one certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum FinalizeStatus {
    /// A new certificate was installed.
    Issued,
    /// No pending order: nothing was done, the files on disk (if any) stay.
    Unchanged,
    /// `--dry-run`: a pending order would be completed.
    WouldIssue,
    /// The order could not be completed; `error` says why, old files are untouched.
    Failed,
    /// No pending order, but the keystore was missing or no longer fit `pkcs12:` (new, or
    /// another password or alias): it was rebuilt from the installed key and chain and
    /// installed with them as one set.
    KeystoreWritten,
    /// `--dry-run`: the keystore would be rebuilt.
    WouldWriteKeystore,
    /// `install`: the set from another host was installed.
    Installed,
    /// `install --dry-run`: the set would be installed.
    WouldInstall,
}

/// The shared inputs of every certificate's finalize.
struct Context<'c> {
    config: &'c HostConfig,
    state: &'c StateDir,
    /// Each CA, with its account opened when an order there is completed.
    cas: Cas<'c>,
    dry_run: bool,
}

pub(crate) async fn run(args: HostArgs, observed: &mut Observed) -> Result<Outcome, Error> {
    let config = HostConfig::load(&args.config)?;
    let (state, _lock) = StateDir::open_for_run(&config.state_dir, args.dry_run).await?;
    let mut report = finalize_all(&config, &state, args.dry_run).await?;
    report.check = super::check::verdict(&args, observed).await;
    print_json(&report)?;
    Ok(Outcome::from_failures(report.failed()))
}

impl Report {
    /// Whether some certificate could not be finalized, or its service not reloaded.
    pub(super) fn failed(&self) -> bool {
        self.certs
            .iter()
            .any(|cert| cert.status == FinalizeStatus::Failed || cert.reloaded == Some(false))
    }
}

/// Completes every pending order, runs the reloads that are due, and returns the report
/// (`renew` prints it in its own).
pub(super) async fn finalize_all(
    config: &HostConfig,
    state: &StateDir,
    dry_run: bool,
) -> Result<Report, Error> {
    let mut report = match config.issuer.test() {
        Some(issuer) => super::local::finalize_all(config, issuer, state, dry_run)?,
        None => finalize_with_ca(config, state, dry_run).await?,
    };
    for cert in &mut report.certs {
        if let Some(spec) = config.certs.get(&cert.name) {
            cert.reload(config, state, spec, dry_run).await;
        }
    }
    Ok(report)
}

/// [`finalize_all`] with a CA, before the reloads.
async fn finalize_with_ca(
    config: &HostConfig,
    state: &StateDir,
    dry_run: bool,
) -> Result<Report, Error> {
    let pending: Vec<_> = config
        .certs
        .iter()
        .map(|(cert, spec)| (cert.as_str(), spec, PendingOrder::load(state, cert)))
        .collect();
    let any_pending = pending
        .iter()
        .any(|(_, _, saved)| !matches!(saved, Ok(None)));
    let cas = Cas::new(config);
    // Without a fallback CA, the CA unreachable with orders pending fails the run: nothing
    // could be finalized. With one, each order's own CA is opened when it is completed.
    if any_pending
        && !dry_run
        && config.fallback.is_empty()
        && let Some(account) = acme::open_existing(&config.acme, state).await?
    {
        cas.primary().set_account(account);
    }
    let context = Context {
        config,
        state,
        cas,
        dry_run,
    };
    let certs = join_all(
        pending
            .into_iter()
            .map(|(cert, spec, saved)| finalize_one(&context, cert, spec, saved)),
    )
    .await;
    Ok(Report::new(config, certs))
}

impl Report {
    /// The report of `certs`.
    pub(super) fn new(config: &HostConfig, certs: Vec<CertReport>) -> Self {
        Self {
            host: config.host.to_string(),
            changed: certs.iter().any(|cert| cert.changed),
            certs,
            check: None,
        }
    }
}

impl CertReport {
    /// The report of `cert`, whose files are `installed`.
    pub(super) fn new(
        cert: &str,
        spec: &CertSpec,
        installed: &Installed<'_>,
        status: FinalizeStatus,
        not_after: Option<String>,
        error: Option<String>,
    ) -> Self {
        Self {
            name: cert.to_owned(),
            status,
            changed: !matches!(status, FinalizeStatus::Unchanged | FinalizeStatus::Failed),
            names: spec.names.clone(),
            not_after,
            paths: installed.paths.clone(),
            error,
            ca: None,
            fallback: None,
            reloaded: None,
            reload_error: None,
        }
    }

    /// Runs the reload this certificate owes (its files changed, or an earlier one failed)
    /// and says how it went (reload.rs).
    pub(super) async fn reload(
        &mut self,
        config: &HostConfig,
        state: &StateDir,
        spec: &CertSpec,
        dry_run: bool,
    ) {
        let files_changed = self.changed && self.status != FinalizeStatus::Failed;
        // What is on disk now: the probes compare the service with it.
        let installed = Installed::read(config, &self.name, spec);
        let subject = installed.reload_subject(&self.name, spec);
        if let Some(result) = reload::settle(state, &subject, files_changed, dry_run).await {
            self.reloaded = Some(result.is_ok());
            self.reload_error = result.err().map(|err| err.to_string());
        }
    }

    /// Names the CA that issued the new certificate, and why a fallback did.
    fn issued_by(mut self, issued: IssuedBy) -> Self {
        self.ca = Some(issued.directory);
        self.fallback = issued.fallback;
        self
    }
}

async fn finalize_one(
    context: &Context<'_>,
    cert: &str,
    spec: &CertSpec,
    saved: Result<Option<PendingOrder>, AcmeError>,
) -> CertReport {
    let installed = Installed::read(context.config, cert, spec);
    let report = |status, not_after, error| {
        CertReport::new(cert, spec, &installed, status, not_after, error)
    };
    let saved = match saved {
        Ok(Some(saved)) => saved,
        Ok(None) => {
            // A key without its order (a run killed while forgetting them) is of no use.
            if !context.dry_run
                && context.state.has_key(cert)
                && let Err(err) = PendingOrder::remove(context.state, cert)
            {
                warn!(cert, error = %err, "cannot remove a key left without its order");
            }
            return match refresh_keystore(context.dry_run, spec, &installed) {
                Ok(status) => report(status, installed.not_after(), None),
                Err(failure) => failed(&report, &installed, failure),
            };
        }
        Err(err) => return failed(&report, &installed, CertFailure::Acme(err)),
    };
    if let Err(failure) = check_fits(context, cert, spec, &saved) {
        return failed(&report, &installed, failure);
    }
    if context.dry_run {
        return report(FinalizeStatus::WouldIssue, installed.not_after(), None);
    }
    match issue(context, &saved, cert, spec, &installed).await {
        Ok((chain, issued)) => {
            info!(cert, not_after = %rfc3339(chain.inspection.not_after), ca = %issued.directory, "installed");
            report(
                FinalizeStatus::Issued,
                Some(rfc3339(chain.inspection.not_after)),
                None,
            )
            .issued_by(issued)
        }
        Err(failure) => {
            // A dead order is forgotten so that the next request makes a new one; after a
            // timeout or a network failure it stays, and the next finalize picks it up.
            if matches!(&failure, CertFailure::Acme(err) if err.order_is_dead())
                && let Err(remove) = PendingOrder::remove(context.state, cert)
            {
                warn!(cert, error = %remove, "cannot forget the failed order");
            }
            failed(&report, &installed, failure)
        }
    }
}

/// The failed report of one certificate, with the old expiry (its files stay).
fn failed(
    report: &impl Fn(FinalizeStatus, Option<String>, Option<String>) -> CertReport,
    installed: &Installed<'_>,
    failure: CertFailure,
) -> CertReport {
    let error = failure.to_string();
    warn!(error, "cannot finalize");
    report(FinalizeStatus::Failed, installed.not_after(), Some(error))
}

/// An order made for other names, key type or CA is forgotten (outside a dry run).
fn check_fits(
    context: &Context<'_>,
    cert: &str,
    spec: &CertSpec,
    saved: &PendingOrder,
) -> Result<(), CertFailure> {
    let config = context.config;
    if config.ca(&saved.directory).is_some_and(|acme| {
        saved.fits(
            &spec.names,
            config.key,
            acme.profile.as_deref(),
            &acme.directory,
        )
    }) {
        return Ok(());
    }
    if !context.dry_run {
        PendingOrder::remove(context.state, cert)?;
    }
    Err(CertFailure::ConfigChanged {
        names: saved.names.clone(),
        key: saved.key,
        directory: saved.directory.clone(),
    })
}

/// Completes the order at its CA, checks the chain, installs the files, records the CA
/// that issued them, forgets the order.
async fn issue(
    context: &Context<'_>,
    saved: &PendingOrder,
    cert: &str,
    spec: &CertSpec,
    installed: &Installed<'_>,
) -> Result<(IssuedChain, IssuedBy), CertFailure> {
    // `check_fits` made sure the config lists the order's CA.
    let ca = context
        .cas
        .find(&saved.directory)
        .unwrap_or_else(|| context.cas.primary());
    let account = ca.account(context.state, false).await?;
    let (key, pem) = acme::complete(account, saved, context.state, cert).await?;
    let chain = acme::verify_chain(&pem, &key, &saved.names)?;
    install_issued(spec, installed, &key, &chain)?;
    crash_point!("finalize.installed");
    let issued = IssuedBy::new(&saved.directory, &chain.inspection, saved.fallback.clone());
    // Only ARI and reports read it: a record that cannot be written costs no certificate.
    if let Err(err) = issued.save(context.state, cert) {
        warn!(cert, error = %err, "cannot record which CA issued the certificate");
    }
    PendingOrder::remove(context.state, cert)?;
    Ok((chain, issued))
}

/// Installs a new key and its checked chain, with the keystore when `pkcs12:` asks for one
/// (a test issuer's certificates go through here too, commands/local.rs).
pub(super) fn install_issued(
    spec: &CertSpec,
    installed: &Installed<'_>,
    key: &PrivateKey,
    chain: &IssuedChain,
) -> Result<(), CertFailure> {
    // Built before the install starts: a keystore that cannot be made leaves the old set.
    crash_point!("finalize.before_keystore");
    let keystore = match &spec.pkcs12 {
        Some(pkcs12) => Some(Keystore::from_pem(
            key,
            &chain.full,
            &pkcs12.alias,
            &pkcs12.password,
        )?),
        None => None,
    };
    let set =
        CertSet::new(key, &chain.leaf, &chain.intermediates, &chain.full).with_keystore(keystore);
    installed.dir.install(&installed.names, &set)?;
    Ok(())
}

/// Without a pending order: rebuilds the keystore of a certificate with `pkcs12:` when the
/// installed one is missing or does not open with the configured password and alias or
/// holds another chain, from the installed key and chain, and installs it with them (the
/// PEM files byte for byte as they were).
pub(super) fn refresh_keystore(
    dry_run: bool,
    spec: &CertSpec,
    installed: &Installed<'_>,
) -> Result<FinalizeStatus, CertFailure> {
    let (Some(pkcs12), Some(_)) = (&spec.pkcs12, &installed.names.keystore) else {
        return Ok(FinalizeStatus::Unchanged);
    };
    let Some(set) = installed.dir.read_set(&installed.names)?.complete() else {
        // Not issued yet, or incomplete: request issues it, with its keystore.
        return Ok(FinalizeStatus::Unchanged);
    };
    let (Ok(key_pem), Ok(full_pem), Some(inspection)) = (
        std::str::from_utf8(&set.key.0),
        std::str::from_utf8(&set.fullchain.0),
        installed.inspection(),
    ) else {
        return Ok(FinalizeStatus::Unchanged);
    };
    if set.keystore.as_ref().is_some_and(|keystore| {
        Keystore::fits(&keystore.0, full_pem, &pkcs12.alias, &pkcs12.password)
    }) {
        return Ok(FinalizeStatus::Unchanged);
    }
    // A key that does not belong to the certificate is request's business (it renews).
    let Some(private) = inspection
        .key_type
        .and_then(|key_type| PrivateKey::from_pem(key_pem, key_type).ok())
        .filter(|private| private.public_key_info() == inspection.public_key_info)
    else {
        return Ok(FinalizeStatus::Unchanged);
    };
    if dry_run {
        return Ok(FinalizeStatus::WouldWriteKeystore);
    }
    let keystore = Keystore::from_pem(&private, full_pem, &pkcs12.alias, &pkcs12.password)?;
    let set = set.with_keystore(Some(keystore));
    installed.dir.install(&installed.names, &set)?;
    info!(cert = %installed.names.dir, "keystore written from the installed key and chain");
    Ok(FinalizeStatus::KeystoreWritten)
}
