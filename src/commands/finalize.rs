//! `fleetcert finalize`: complete each pending order and install its certificate.
//!
//! Each certificate is finished on its own: one whose validation fails is reported with the
//! CA's problem and leaves its old files byte-identical, while the others still complete.
//! The files of one certificate are installed as one set (`cert::CertDir::install`).

use futures_util::future::join_all;
use tracing::{info, warn};

use super::failure::CertFailure;
use super::finalize_report::{CertReport, FinalizeStatus, Report};
use super::install_set::{install_issued, refresh_keystore};
use super::installed::{Installed, rfc3339};
use super::issuing::Issuing;
use super::local;
use super::record::Observed;
use super::report::print_json;
use crate::acme::{self, AcmeError, Cas, IssuedBy, IssuedChain, PendingOrder};
use crate::cli::HostArgs;
use crate::config::{CertSpec, HostConfig};
use crate::error::{Error, Outcome};
use crate::state::StateDir;

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
    let issuing = Issuing::of(&config);
    let mut report = finalize_all(&config, issuing, &state, args.dry_run).await?;
    report.check = super::check::verdict(&args, &config, observed).await;
    print_json(&report)?;
    Ok(Outcome::from_failures(report.failed()))
}

/// Completes every pending order, runs the reloads that are due, and returns the report
/// (`renew` prints it in its own).
pub(super) async fn finalize_all(
    config: &HostConfig,
    issuing: Issuing<'_>,
    state: &StateDir,
    dry_run: bool,
) -> Result<Report, Error> {
    let mut report = match issuing {
        Issuing::Acme => finalize_with_ca(config, state, dry_run).await?,
        Issuing::Test(issuer) => local::finalize_all(config, issuer, state, dry_run)?,
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
    if any_pending && !dry_run && config.fallback.is_empty() {
        cas.open_primary(state).await?;
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
    if context
        .cas
        .order_ca(saved, &spec.names, context.config.key)
        .is_some()
    {
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
