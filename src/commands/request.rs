//! `fleetcert request`: decide which certificates are due, create and save their orders,
//! and print the token document.
//!
//! Only what is needed touches the CA: with nothing due, no pending order and ARI off, the
//! run reads a few local files and never loads the account or fetches the directory. When
//! an order is needed and the CA cannot be reached, the run fails as a whole (exit 4).

use futures_util::StreamExt as _;
use futures_util::future::join_all;
use instant_acme::CertificateIdentifier;
use time::OffsetDateTime;
use tracing::{info, warn};

use super::failure::CertFailure;
use super::installed::{Installed, rfc3339};
use super::report::print_json;
use crate::acme::{self, AccountState, Challenge, PendingOrder, StateDir};
use crate::cert::RenewalDecision;
use crate::cli::HostArgs;
use crate::config::{CertSpec, HostConfig};
use crate::dns::check_delegation;
use crate::error::{Error, Outcome};
use crate::store::Versioned as _;
use crate::token::{self, CertState, CertStatus, Record, TokenDocument, record_name};

/// Delegation questions in flight at once: a host with 100 names does not flood its resolver.
const PRECHECK_CONCURRENCY: usize = 16;

/// What `request` knows about one certificate before asking anyone.
struct Plan<'c> {
    cert: &'c str,
    spec: &'c CertSpec,
    installed: Installed<'c>,
    decision: RenewalDecision,
    pending: Option<PendingOrder>,
    /// The `_acme-challenge` delegation check, when it was made before opening the account.
    delegation: Option<Result<(), CertFailure>>,
}

/// One certificate's part of the token document.
struct Part {
    state: CertState,
    records: Vec<Record>,
    /// An order was created.
    changed: bool,
}

/// The shared inputs of every certificate's request.
struct Context<'c> {
    config: &'c HostConfig,
    state: &'c StateDir,
    account: AccountState,
    dry_run: bool,
    now: OffsetDateTime,
}

pub(crate) async fn run(args: HostArgs) -> Result<Outcome, Error> {
    let config = HostConfig::load(&args.config)?;
    let (state, _lock) = StateDir::open_for_run(&config.state_dir, args.dry_run).await?;
    let document = token_document(&config, &state, args.dry_run).await?;
    print_json(&document)?;
    let failed = document
        .certs
        .iter()
        .any(|cert| cert.status == CertStatus::Failed);
    Ok(Outcome::from_failures(failed))
}

/// Decides, orders and returns the token document (`renew` publishes it itself).
pub(super) async fn token_document(
    config: &HostConfig,
    state: &StateDir,
    dry_run: bool,
) -> Result<TokenDocument, Error> {
    let now = OffsetDateTime::now_utc();
    let mut plans: Vec<Plan<'_>> = config
        .certs
        .iter()
        .map(|(cert, spec)| Plan::new(config, state, cert, spec, now))
        .collect();
    // Checked before the account is opened: a host whose due names all lack their CNAME
    // registers no account and sends the CA nothing.
    let checks = join_all(plans.iter().map(|plan| async move {
        if plan.is_due() {
            Some(precheck(config, plan.spec).await)
        } else {
            None
        }
    }))
    .await;
    for (plan, check) in plans.iter_mut().zip(checks) {
        plan.delegation = check;
    }
    let account = if dry_run {
        // A dry run makes no CA contact at all, not even reads.
        AccountState::NotNeeded
    } else {
        open_account(config, state, &plans).await?
    };
    let context = Context {
        config,
        state,
        account,
        dry_run,
        now,
    };
    let parts = join_all(plans.into_iter().map(|plan| request_one(&context, plan))).await;
    Ok(TokenDocument {
        version: token::VERSION,
        host: config.host.to_string(),
        changed: parts.iter().any(|part| part.changed),
        records: parts.iter().flat_map(|part| part.records.clone()).collect(),
        certs: parts.into_iter().map(|part| part.state).collect(),
    })
}

impl<'c> Plan<'c> {
    fn new(
        config: &'c HostConfig,
        state: &StateDir,
        cert: &'c str,
        spec: &'c CertSpec,
        now: OffsetDateTime,
    ) -> Self {
        let installed = Installed::read(config, cert, spec);
        let decision = installed.decide(config, spec, now);
        let pending = PendingOrder::load(state, cert).unwrap_or_else(|err| {
            // A broken order file only costs a new order; it is replaced below.
            warn!(cert, error = %err, "ignoring the saved order");
            None
        });
        Self {
            cert,
            spec,
            installed,
            decision,
            pending,
            delegation: None,
        }
    }

    fn is_due(&self) -> bool {
        matches!(self.decision, RenewalDecision::Due(_))
    }
}

/// Opens (or, when an order is needed, creates) the account, and only when the CA is needed.
/// An account needed for an order that cannot be opened fails the run.
async fn open_account(
    config: &HostConfig,
    state: &StateDir,
    plans: &[Plan<'_>],
) -> Result<AccountState, Error> {
    let orders = plans.iter().any(|plan| {
        plan.pending.is_some() || (plan.is_due() && matches!(plan.delegation, Some(Ok(()))))
    });
    if orders {
        return Ok(AccountState::Open(
            acme::open_or_create(&config.acme, state).await?,
        ));
    }
    let ari = config.renew.ari
        && plans
            .iter()
            .any(|plan| plan.installed.inspection().is_some());
    if !ari {
        return Ok(AccountState::NotNeeded);
    }
    // ARI alone never registers an account: a host whose certificates came from elsewhere
    // asks once fleetcert has ordered for it.
    Ok(match acme::open_existing(&config.acme, state).await {
        Ok(Some(account)) => AccountState::Open(account),
        Ok(None) => AccountState::NotNeeded,
        Err(err) => {
            warn!(error = %err, "cannot ask the CA's renewal window (ARI)");
            AccountState::Unavailable(err)
        }
    })
}

async fn request_one(context: &Context<'_>, mut plan: Plan<'_>) -> Part {
    let cert = plan.cert;
    let not_after = plan.installed.not_after();
    let part = |status, reason: String, records, changed| Part {
        state: CertState {
            name: cert.to_owned(),
            status,
            not_after: not_after.clone(),
            reason,
        },
        records,
        changed,
    };
    let failed = |failure: CertFailure| {
        let reason = failure.to_string();
        warn!(cert, reason, "cannot request");
        part(CertStatus::Failed, reason, Vec::new(), false)
    };

    if let Some(saved) = plan.pending.take() {
        match resume(context, &plan, &saved).await {
            Ok(Some((status, reason, records))) => return part(status, reason, records, false),
            Ok(None) => {}
            Err(failure) => return failed(failure),
        }
    }
    let (reason, why, replaces) = match decide_with_ari(context, &plan).await {
        Decision::Valid => {
            let reason = match plan.installed.inspection() {
                Some(inspection) => format!(
                    "not due: {} days left",
                    inspection.remaining(context.now).as_secs() / 86_400
                ),
                None => "not due".to_owned(),
            };
            return part(CertStatus::Valid, reason, Vec::new(), false);
        }
        Decision::Due {
            reason,
            why,
            replaces,
        } => (reason, why, replaces),
    };
    info!(cert, reason, why, "due");
    let delegation = match plan.delegation.take() {
        Some(checked) => checked,
        None => precheck(context.config, plan.spec).await,
    };
    if let Err(failure) = delegation {
        return failed(failure);
    }
    if context.dry_run {
        let reason = format!("would order ({reason})");
        return part(CertStatus::Pending, reason, Vec::new(), true);
    }
    match order(context, &plan, &reason, replaces).await {
        Ok(challenges) => {
            let records = records(context.config, cert, &challenges);
            let status = if records.is_empty() {
                CertStatus::Ready
            } else {
                CertStatus::Pending
            };
            part(status, reason, records, true)
        }
        Err(failure) => failed(failure),
    }
}

/// Whether to order, after asking ARI.
enum Decision {
    Valid,
    /// Order; `replaces` names the certificate being renewed when ARI said so.
    Due {
        reason: String,
        /// The reason as a label from a fixed set (`DueReason::label`, or `ari_window`).
        why: &'static str,
        replaces: Option<CertificateIdentifier<'static>>,
    },
}

/// The records of a saved order that is still good, with their status.
type Resumed = (CertStatus, String, Vec<Record>);

/// Re-opens a saved order. `Ok(None)`: there is none worth keeping, make a new one if due.
async fn resume(
    context: &Context<'_>,
    plan: &Plan<'_>,
    saved: &PendingOrder,
) -> Result<Option<Resumed>, CertFailure> {
    let config = context.config;
    let acme = &config.acme;
    let fits = saved.fits(
        &plan.spec.names,
        config.key,
        acme.profile.as_deref(),
        &acme.directory,
    );
    if context.dry_run {
        return Ok(fits.then(|| {
            let reason = format!(
                "order from {} still pending ({})",
                saved.created, saved.reason
            );
            (CertStatus::Pending, reason, Vec::new())
        }));
    }
    if let Some(account) = context.account.open()
        && fits
        && saved.account == account.id()
        && let Some((_, challenges)) = acme::reopen(account, saved).await?
    {
        info!(cert = plan.cert, order = %saved.url, "reusing the saved order");
        let records = records(config, plan.cert, &challenges);
        let status = if records.is_empty() {
            CertStatus::Ready
        } else {
            CertStatus::Pending
        };
        return Ok(Some((status, saved.reason.clone(), records)));
    }
    info!(cert = plan.cert, order = %saved.url, "dropping the saved order");
    PendingOrder::remove(context.state, plan.cert)?;
    Ok(None)
}

/// The plan's decision, or the CA's renewal window when ARI is on and the CA offers it.
async fn decide_with_ari(context: &Context<'_>, plan: &Plan<'_>) -> Decision {
    let no_ari = match &plan.decision {
        RenewalDecision::Due(reason) => {
            return Decision::Due {
                reason: reason.to_string(),
                why: reason.label(),
                replaces: None,
            };
        }
        RenewalDecision::Valid => Decision::Valid,
    };
    let (true, Some(inspection), Some(account)) = (
        context.config.renew.ari,
        plan.installed.inspection(),
        context.account.open(),
    ) else {
        if let Some(problem) = context.account.problem() {
            tracing::debug!(cert = plan.cert, %problem, "deciding without ARI");
        }
        return no_ari;
    };
    let Some(id) = acme::replaces_for(inspection) else {
        return no_ari;
    };
    match account.renewal_info(&id).await {
        Ok((info, _)) if info.suggested_window.start <= context.now => Decision::Due {
            reason: format!(
                "the CA's renewal window (ARI) opened at {}",
                rfc3339(info.suggested_window.start)
            ),
            why: "ari_window",
            replaces: Some(id),
        },
        Ok(_) => no_ari,
        // Pebble and some CAs have no renewalInfo: that is "no ARI", not a failure.
        Err(instant_acme::Error::Unsupported(_)) => no_ari,
        Err(err) => {
            warn!(cert = plan.cert, error = %err, "cannot ask the CA's renewal window (ARI)");
            no_ari
        }
    }
}

/// Checks every identifier's `_acme-challenge` delegation; all problems in one line.
async fn precheck(config: &HostConfig, spec: &CertSpec) -> Result<(), CertFailure> {
    let mut bases: Vec<_> = spec.names.iter().map(crate::dns::DnsName::base).collect();
    bases.sort_unstable();
    bases.dedup();
    let problems: Vec<_> = futures_util::stream::iter(bases.iter())
        .map(|base| async move {
            // The config check made sure every record name fits.
            let target = record_name(base, &config.signing_zone, config.challenge_records).ok()?;
            check_delegation(config.resolver, base, &target).await.err()
        })
        .buffered(PRECHECK_CONCURRENCY)
        .filter_map(|problem| async move { problem })
        .collect()
        .await;
    if problems.is_empty() {
        Ok(())
    } else {
        Err(CertFailure::Delegation(problems))
    }
}

/// Creates the order and saves it; returns the TXT values it waits for.
async fn order(
    context: &Context<'_>,
    plan: &Plan<'_>,
    reason: &str,
    replaces: Option<CertificateIdentifier<'static>>,
) -> Result<Vec<Challenge>, CertFailure> {
    let config = context.config;
    let Some(account) = context.account.open() else {
        // `open_account` opened it whenever a due certificate passed its pre-check.
        return Err(CertFailure::Acme(acme::AcmeError::NoAccount {
            directory: config.acme.directory.clone(),
            state_dir: config.state_dir.clone(),
        }));
    };
    let profile = config.acme.profile.as_deref();
    if let Some(profile) = profile {
        acme::check_profile(account, profile)?;
    }
    // An order the CA made but fleetcert could not save would be made again on every retry.
    context.state.probe(Some("orders"))?;
    let (order, challenges) = acme::create(
        account,
        &config.acme.directory,
        &plan.spec.names,
        profile,
        replaces,
    )
    .await?;
    let saved = PendingOrder {
        version: PendingOrder::VERSION,
        url: order.url().to_owned(),
        directory: config.acme.directory.clone(),
        account: account.id().to_owned(),
        names: plan.spec.names.clone(),
        key: config.key,
        profile: profile.map(str::to_owned),
        reason: reason.to_owned(),
        created: rfc3339(context.now),
    };
    saved.save(context.state, plan.cert)?;
    info!(cert = plan.cert, order = %saved.url, pending = challenges.len(), "ordered");
    Ok(challenges)
}

/// The token document's records for `cert`'s challenges.
fn records(config: &HostConfig, cert: &str, challenges: &[Challenge]) -> Vec<Record> {
    challenges
        .iter()
        .filter_map(|challenge| {
            // The config check made sure every record name fits.
            let name = record_name(
                &challenge.identifier,
                &config.signing_zone,
                config.challenge_records,
            )
            .ok()?;
            Some(Record {
                name: name.fqdn(),
                value: challenge.value.clone(),
                cert: cert.to_owned(),
                identifier: challenge.identifier.to_string(),
            })
        })
        .collect()
}
