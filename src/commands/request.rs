//! `fleetcert request`: decide which certificates are due, create and save their orders,
//! and print the token document.
//!
//! Only what is needed touches the CA: with nothing due, no pending order and ARI off, the
//! run reads a few local files and never loads the account or fetches the directory.

use futures_util::future::join_all;
use instant_acme::{Account, CertificateIdentifier};
use time::OffsetDateTime;
use tracing::{info, warn};

use super::installed::{Installed, rfc3339};
use crate::acme::{self, AcmeError, Challenge, PendingOrder};
use crate::cert::{RenewalDecision, Wanted};
use crate::cli::HostArgs;
use crate::config::HostConfig;
use crate::dns::check_delegation;
use crate::error::{Error, Outcome};
use crate::names::{base_name, record_name};
use crate::token::{self, CertState, CertStatus, Record, TokenDocument};

/// What `request` knows about one certificate before asking anyone.
struct Plan<'c> {
    cert: &'c str,
    names: &'c [String],
    installed: Installed,
    decision: RenewalDecision,
    pending: Option<PendingOrder>,
    /// The `_acme-challenge` delegation check, when it was made before opening the account.
    delegation: Option<Result<(), String>>,
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
    /// `Err` holds why the account could not be opened, for each certificate that needs it.
    account: Result<Option<Account>, String>,
    dry_run: bool,
    now: OffsetDateTime,
}

pub(crate) async fn run(args: HostArgs) -> Result<Outcome, Error> {
    let config = HostConfig::load(&args.config)?;
    let now = OffsetDateTime::now_utc();
    let mut plans: Vec<Plan<'_>> = config
        .certs
        .iter()
        .map(|(cert, names)| Plan::new(&config, cert, names, now))
        .collect();
    // Checked before the account is opened: a host whose due names all lack their CNAME
    // registers no account and sends the CA nothing.
    let delegations = join_all(plans.iter().map(|plan| {
        let config = &config;
        async move {
            if plan.is_due() {
                Some(precheck(config, plan.names).await)
            } else {
                None
            }
        }
    }))
    .await;
    for (plan, delegation) in plans.iter_mut().zip(delegations) {
        plan.delegation = delegation;
    }
    let account = if args.dry_run {
        // A dry run makes no CA contact at all, not even reads.
        Ok(None)
    } else {
        open_account(&config, &plans).await
    };
    let context = Context {
        config: &config,
        account,
        dry_run: args.dry_run,
        now,
    };
    let parts = join_all(plans.into_iter().map(|plan| request_one(&context, plan))).await;
    let failed = parts
        .iter()
        .any(|part| part.state.status == CertStatus::Failed);
    let document = TokenDocument {
        version: token::VERSION,
        host: config.host.clone(),
        changed: parts.iter().any(|part| part.changed),
        records: parts.iter().flat_map(|part| part.records.clone()).collect(),
        certs: parts.into_iter().map(|part| part.state).collect(),
    };
    super::print_json(&document)?;
    Ok(if failed {
        Outcome::SomeFailed
    } else {
        Outcome::Success
    })
}

impl<'c> Plan<'c> {
    fn new(config: &HostConfig, cert: &'c str, names: &'c [String], now: OffsetDateTime) -> Self {
        let installed = Installed::read(config, cert, names);
        let decision = match &installed.chain {
            Ok(None) => RenewalDecision::Due("no certificate yet".to_owned()),
            Err(problem) => RenewalDecision::Due(format!("{problem}: issuing a new one")),
            Ok(Some(_)) if !installed.key_present => RenewalDecision::Due(format!(
                "the private key {} is missing",
                installed.paths.key.display()
            )),
            Ok(Some(inspection)) => inspection.decide(
                Wanted {
                    names,
                    key_type: config.key,
                    before_days: config.renew.before_days,
                },
                now,
            ),
        };
        let pending = PendingOrder::load(&config.state_dir, cert).unwrap_or_else(|err| {
            // A broken order file only costs a new order; it is replaced below.
            warn!(cert, error = %err, "ignoring the saved order");
            None
        });
        Self {
            cert,
            names,
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
async fn open_account(config: &HostConfig, plans: &[Plan<'_>]) -> Result<Option<Account>, String> {
    let orders = plans.iter().any(|plan| {
        plan.pending.is_some() || (plan.is_due() && matches!(plan.delegation, Some(Ok(()))))
    });
    if orders {
        return acme::open_or_create(&config.acme, &config.state_dir)
            .await
            .map(Some)
            .map_err(|err| err.to_string());
    }
    let ari = config.renew.ari
        && plans
            .iter()
            .any(|plan| plan.installed.inspection().is_some());
    if !ari {
        return Ok(None);
    }
    // ARI alone never registers an account: a host whose certificates came from elsewhere
    // asks once fleetcert has ordered for it.
    match acme::open_existing(&config.acme, &config.state_dir).await {
        Ok(account) => Ok(account),
        Err(err) => {
            warn!(error = %err, "cannot ask the CA's renewal window (ARI)");
            Ok(None)
        }
    }
}

impl Context<'_> {
    fn account(&self) -> Result<&Account, String> {
        match &self.account {
            Ok(Some(account)) => Ok(account),
            Ok(None) => Err("no ACME account could be opened".to_owned()),
            Err(problem) => Err(problem.clone()),
        }
    }
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
    let failed = |reason: String| {
        warn!(cert, reason, "cannot request");
        part(CertStatus::Failed, reason, Vec::new(), false)
    };

    if let Some(saved) = &plan.pending {
        match resume(context, &plan, saved).await {
            Ok(Some((status, reason, records))) => return part(status, reason, records, false),
            Ok(None) => {}
            Err(reason) => return failed(reason),
        }
    }

    let (reason, replaces) = match decide_with_ari(context, &plan).await {
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
        Decision::Due { reason, replaces } => (reason, replaces),
    };
    info!(cert, reason, "due");

    let delegation = match plan.delegation.take() {
        Some(checked) => checked,
        None => precheck(context.config, plan.names).await,
    };
    if let Err(problem) = delegation {
        return failed(problem);
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
        Err(err) => failed(err.to_string()),
    }
}

/// Whether to order, after asking ARI.
enum Decision {
    Valid,
    /// Order; `replaces` names the certificate being renewed when ARI said so.
    Due {
        reason: String,
        replaces: Option<CertificateIdentifier<'static>>,
    },
}

/// Re-opens a saved order. `Ok(None)`: there is none worth keeping, make a new one if due.
async fn resume(
    context: &Context<'_>,
    plan: &Plan<'_>,
    saved: &PendingOrder,
) -> Result<Option<(CertStatus, String, Vec<Record>)>, String> {
    let config = context.config;
    let acme = &config.acme;
    let fits = saved.fits(
        plan.names,
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
    let account = context.account()?;
    if fits && saved.account == account.id() {
        match acme::reopen(account, saved).await {
            Ok(Some((_, challenges))) => {
                info!(cert = plan.cert, order = %saved.url, "reusing the saved order");
                let records = records(config, plan.cert, &challenges);
                let status = if records.is_empty() {
                    CertStatus::Ready
                } else {
                    CertStatus::Pending
                };
                return Ok(Some((status, saved.reason.clone(), records)));
            }
            Ok(None) => {}
            Err(err) => return Err(err.to_string()),
        }
    }
    info!(cert = plan.cert, order = %saved.url, "dropping the saved order");
    PendingOrder::remove(&config.state_dir, plan.cert).map_err(|err| err.to_string())?;
    Ok(None)
}

/// The plan's decision, or the CA's renewal window when ARI is on and the CA offers it.
async fn decide_with_ari(context: &Context<'_>, plan: &Plan<'_>) -> Decision {
    let no_ari = match &plan.decision {
        RenewalDecision::Due(reason) => {
            return Decision::Due {
                reason: reason.clone(),
                replaces: None,
            };
        }
        RenewalDecision::Valid => Decision::Valid,
    };
    let (true, Some(inspection), Ok(Some(account))) = (
        context.config.renew.ari,
        plan.installed.inspection(),
        &context.account,
    ) else {
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
async fn precheck(config: &HostConfig, names: &[String]) -> Result<(), String> {
    let mut bases: Vec<&str> = names.iter().map(|name| base_name(name)).collect();
    bases.sort_unstable();
    bases.dedup();
    let checks = bases.iter().map(|base| async move {
        let target = record_name(base, &config.signing_zone, config.challenge_records);
        check_delegation(config.resolver, base, &target).await
    });
    let problems: Vec<String> = join_all(checks)
        .await
        .into_iter()
        .filter_map(|result| result.err().map(|err| err.to_string()))
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// Creates the order and saves it; returns the TXT values it waits for.
async fn order(
    context: &Context<'_>,
    plan: &Plan<'_>,
    reason: &str,
    replaces: Option<CertificateIdentifier<'static>>,
) -> Result<Vec<Challenge>, AcmeError> {
    let config = context.config;
    let account = context
        .account()
        .map_err(|problem| AcmeError::NoAccount { problem })?;
    let profile = config.acme.profile.as_deref();
    if let Some(profile) = profile {
        acme::check_profile(account, profile)?;
    }
    let (order, challenges) = acme::create(
        account,
        &config.acme.directory,
        plan.names,
        profile,
        replaces,
    )
    .await?;
    let saved = PendingOrder {
        version: PendingOrder::VERSION,
        url: order.url().to_owned(),
        directory: config.acme.directory.clone(),
        account: account.id().to_owned(),
        names: plan.names.to_vec(),
        key: config.key,
        profile: profile.map(str::to_owned),
        reason: reason.to_owned(),
        created: rfc3339(context.now),
    };
    saved.save(&config.state_dir, plan.cert)?;
    info!(cert = plan.cert, order = %saved.url, pending = challenges.len(), "ordered");
    Ok(challenges)
}

/// The token document's records for `cert`'s challenges.
fn records(config: &HostConfig, cert: &str, challenges: &[Challenge]) -> Vec<Record> {
    challenges
        .iter()
        .map(|challenge| Record {
            name: record_name(
                &challenge.identifier,
                &config.signing_zone,
                config.challenge_records,
            ),
            value: challenge.value.clone(),
            cert: cert.to_owned(),
            identifier: challenge.identifier.clone(),
        })
        .collect()
}
