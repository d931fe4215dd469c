//! `fleetcert request`: decide which certificates are due, create and save their orders,
//! and print the token document.
//!
//! The flow, as lego's dns01 has it: *present* is this command (decide, order, hand out the
//! records); `publish` waits until every server serves them; `finalize` has the CA validate
//! and cleans up. Here, per certificate: a saved order is re-opened at its own CA, or dropped
//! when it can no longer complete (`acme::resume`); the CA's renewal window is asked
//! (`acme::renewal_window`) unless the certificate renews at once anyway;
//! `cert::Inspection::decide` decides from the files, the window and the certificate's own
//! seed; a due certificate is ordered from the first CA that takes it (order.rs).
//!
//! Only what is needed touches the CA: with nothing due, no pending order and ARI off, the
//! run reads a few local files and never loads the account or fetches the directory. When
//! an order is needed and the CA cannot be reached, the run fails as a whole (exit 4), unless
//! a fallback CA is configured (docs/renewal.md). With a test issuer the decisions are
//! local.rs's: the issuer is chosen once per run (`issuing::Issuing`).

use futures_util::StreamExt as _;
use futures_util::future::join_all;
use time::OffsetDateTime;
use tracing::{info, warn};

use super::failure::CertFailure;
use super::installed::{Installed, rfc3339};
use super::issuing::Issuing;
use super::local;
use super::record::Observed;
use super::report::print_json;
use crate::acme::{self, AccountState, Cas, Challenge, PendingOrder};
use crate::cert::{RenewalDecision, RenewalWindow, Schedule, not_due};
use crate::cli::HostArgs;
use crate::config::{CertSpec, HostConfig};
use crate::dns::{check_chains, check_delegation};
use crate::error::{Error, Outcome};
use crate::reload;
use crate::state::StateDir;
use crate::token::{self, CertState, CertStatus, RateLimited, Record, TokenDocument, record_name};

mod order;

use order::order_due;

/// Delegation questions in flight at once: a host with 100 names does not flood its resolver.
const PRECHECK_CONCURRENCY: usize = 16;

/// What `request` knows about one certificate before asking anyone.
struct Plan<'c> {
    cert: &'c str,
    spec: &'c CertSpec,
    installed: Installed<'c>,
    /// The decision from the files alone (the days rule): it picks what to pre-check and
    /// whether an account is needed. The CA's window, asked later, may change it.
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
    /// The primary's account, as opened before the certificates.
    account: AccountState,
    cas: Cas<'c>,
    dry_run: bool,
    now: OffsetDateTime,
}

pub(crate) async fn run(args: HostArgs, observed: &mut Observed) -> Result<Outcome, Error> {
    let config = HostConfig::load(&args.config)?;
    let (state, _lock) = StateDir::open_for_run(&config.state_dir, args.dry_run).await?;
    let issuing = Issuing::of(&config);
    let mut document = token_document(&config, issuing, &state, args.dry_run).await?;
    if !args.dry_run {
        settle_reloads(&config, &state, &mut document).await;
    }
    document.check = super::check::verdict(&args, &config, observed).await;
    observed.requested(&document);
    print_json(&document)?;
    let failed = document
        .certs
        .iter()
        .any(|cert| cert.status == CertStatus::Failed);
    Ok(Outcome::from_failures(failed))
}

/// A quiet day in a fleet runs `request` alone (finalize only where an order is left): the
/// reload an earlier run owes a certificate that is not due is run again here, so it is
/// retried by every run until it works (reload.rs). A due certificate's reload is left to
/// finalize, which installs first. `renew` does not come here: its finalize settles them.
async fn settle_reloads(config: &HostConfig, state: &StateDir, document: &mut TokenDocument) {
    for cert in &mut document.certs {
        let Some(spec) = config.certs.get(&cert.name) else {
            continue;
        };
        if cert.status != CertStatus::Valid || !state.has_reload(&cert.name) {
            continue;
        }
        let installed = Installed::read(config, &cert.name, spec);
        let subject = installed.reload_subject(&cert.name, spec);
        if let Some(Err(err)) = reload::settle(state, &subject, false, false).await {
            cert.status = CertStatus::Failed;
            cert.reason = CertFailure::from(err).to_string();
        }
    }
}

/// Decides, orders and returns the token document (`renew` publishes it itself).
pub(super) async fn token_document(
    config: &HostConfig,
    issuing: Issuing<'_>,
    state: &StateDir,
    dry_run: bool,
) -> Result<TokenDocument, Error> {
    match issuing {
        Issuing::Acme => with_ca(config, state, dry_run).await,
        Issuing::Test(issuer) => local::token_document(config, issuer, state, dry_run),
    }
}

/// [`token_document`] with a CA: present (decide and order), for publish to propagate and
/// finalize to validate.
async fn with_ca(
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
        // A dry run registers, orders and writes nothing; where a real run would order, it
        // reads the CA's directory, so that it fails as the real run would when the CA does
        // not answer rather than promising an order that cannot be made.
        if needs_orders(&plans) {
            match acme::check_directory(&config.acme).await {
                Ok(()) => AccountState::NotNeeded,
                // With a fallback CA the real run would go on without the primary: each
                // certificate says where it would be ordered (order::dry_order).
                Err(err) if err.cannot_issue() && !config.fallback.is_empty() => {
                    warn!(error = %err, "the primary CA cannot be reached");
                    AccountState::Unavailable(err)
                }
                Err(err) => return Err(err.into()),
            }
        } else {
            AccountState::NotNeeded
        }
    } else {
        open_account(config, state, &plans).await?
    };
    let cas = Cas::new(config);
    if let Some(account) = account.open() {
        cas.primary().set_account(account.clone());
    }
    let context = Context {
        config,
        state,
        account,
        cas,
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
        check: None,
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

/// Whether some certificate needs the CA: a pending order, or one due whose delegation holds.
fn needs_orders(plans: &[Plan<'_>]) -> bool {
    plans.iter().any(|plan| {
        plan.pending.is_some() || (plan.is_due() && matches!(plan.delegation, Some(Ok(()))))
    })
}

/// Opens (or, when an order is needed, creates) the account, and only when the CA is needed.
/// An account needed for an order that cannot be opened fails the run.
async fn open_account(
    config: &HostConfig,
    state: &StateDir,
    plans: &[Plan<'_>],
) -> Result<AccountState, Error> {
    if needs_orders(plans) {
        return match acme::open_or_create(&config.acme, state).await {
            Ok(account) => Ok(AccountState::Open(account)),
            // With a fallback CA, each certificate decides whether it can wait for the
            // primary or asks a fallback (commands/ca.rs); without one, the run fails.
            Err(err) if err.cannot_issue() && !config.fallback.is_empty() => {
                warn!(error = %err, "the primary CA cannot be reached");
                Ok(AccountState::Unavailable(err))
            }
            Err(err) => Err(err.into()),
        };
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
    let dropped = match plan.pending.take() {
        Some(saved) => match resume(context, &plan, &saved).await {
            Ok(Resumed::Open(status, reason, records)) => {
                return Part::new(&plan, status, reason, records, false);
            }
            Ok(Resumed::Dropped(why)) => why,
            // The saved order's CA cannot issue now and the certificate cannot wait: the CAs
            // are asked in turn as for a new order (a fallback's replaces the saved one).
            Err(failure) if order::passed_over(&failure) && cannot_wait(context, &plan) => {
                info!(cert = plan.cert, order = %saved.url, reason = %failure, "the saved order's CA cannot issue now");
                Some(format!("is at a CA that cannot issue now ({failure})"))
            }
            // It can wait: the order stays saved for the next run to resume.
            Err(failure) => return Part::failed(&plan, failure),
        },
        None => None,
    };
    let ari = ask_ari(context, &plan).await;
    let schedule = plan.installed.schedule(context.config, ari);
    let decision = plan
        .installed
        .decide_with(context.config, plan.spec, context.now, ari);
    let RenewalDecision::Due(due) = decision else {
        let reason = not_due(plan.installed.inspection(), context.now, schedule);
        return Part::new(&plan, CertStatus::Valid, reason, Vec::new(), false)
            .renewing_at(schedule);
    };
    let mut reason = due.to_string();
    if let Some(why) = dropped {
        reason = format!("{reason}; a new order, as the saved one {why}");
    }
    info!(cert = plan.cert, reason, why = due.label(), "due");
    order_due(context, &mut plan, reason)
        .await
        .renewing_at(schedule)
}

impl Part {
    fn new(
        plan: &Plan<'_>,
        status: CertStatus,
        reason: String,
        records: Vec<Record>,
        changed: bool,
    ) -> Self {
        Self {
            state: CertState {
                name: plan.cert.to_owned(),
                status,
                not_after: plan.installed.not_after(),
                reason,
                renew_at: None,
                renew_rule: None,
                serial: plan.installed.serial(),
                rate_limit: None,
            },
            records,
            changed,
        }
    }

    /// The certificate failed: its one line, and the rate limit when that was the cause.
    fn failed(plan: &Plan<'_>, failure: CertFailure) -> Self {
        let reason = failure.to_string();
        warn!(cert = plan.cert, reason, "cannot request");
        let mut part = Self::new(plan, CertStatus::Failed, reason, Vec::new(), false);
        // No CA took it: the primary's rate limit, if that was its reason, for the summary.
        let failure = match &failure {
            CertFailure::NoCa { tried, .. } => tried.first().map_or(&failure, |d| &*d.failure),
            _ => &failure,
        };
        if let CertFailure::Acme(acme::AcmeError::RateLimited(limit)) = failure {
            part.state.rate_limit = Some(RateLimited {
                limit: limit.limit.clone(),
                retry_after: limit.retry_after.clone(),
            });
        }
        part
    }

    fn renewing_at(mut self, schedule: Option<Schedule>) -> Self {
        self.state.renew_at = schedule.map(|schedule| rfc3339(schedule.at));
        self.state.renew_rule = schedule.map(|schedule| schedule.rule.kind());
        self
    }
}

/// A saved order, after asking the CA about it.
enum Resumed {
    /// Still good: its status, reason and records.
    Open(CertStatus, String, Vec<Record>),
    /// Forgotten; why, when the config does not already say it (a dead order).
    Dropped(Option<String>),
}

/// Re-opens a saved order, or forgets it when it no longer fits the config or cannot
/// complete (`acme::resume`); then a new one is made if the certificate is (still) due.
async fn resume(
    context: &Context<'_>,
    plan: &Plan<'_>,
    saved: &PendingOrder,
) -> Result<Resumed, CertFailure> {
    let names = &plan.spec.names;
    let key = context.config.key;
    if context.dry_run {
        if context.cas.order_ca(saved, names, key).is_none() {
            return Ok(Resumed::Dropped(None));
        }
        let reason = format!(
            "order from {} still pending ({})",
            saved.created, saved.reason
        );
        return Ok(Resumed::Open(CertStatus::Pending, reason, Vec::new()));
    }
    let why =
        match acme::resume(&context.cas, context.state, saved, names, key, context.now).await? {
            acme::Resumed::Open(challenges) => {
                info!(cert = plan.cert, order = %saved.url, "reusing the saved order");
                let records = records(context.config, plan.cert, &challenges);
                let status = acme::status_of(&challenges);
                return Ok(Resumed::Open(status, saved.reason.clone(), records));
            }
            acme::Resumed::Dropped(why) => why.map(|why| format!("(from {}) {why}", saved.created)),
        };
    info!(cert = plan.cert, order = %saved.url, why = why.as_deref().unwrap_or("the config changed"), "dropping the saved order");
    PendingOrder::remove(context.state, plan.cert)?;
    Ok(Resumed::Dropped(why))
}

/// Whether a certificate must not wait for a CA that cannot issue now: a fallback CA is
/// configured and the certificate is urgent (docs/renewal.md).
fn cannot_wait(context: &Context<'_>, plan: &Plan<'_>) -> bool {
    !context.config.fallback.is_empty() && urgency(context, plan).is_some()
}

/// Why waiting for the primary would cost this certificate something ([`acme::urgency`]);
/// `None`: it can wait.
fn urgency(context: &Context<'_>, plan: &Plan<'_>) -> Option<String> {
    acme::urgency(
        context.config,
        plan.installed.inspection(),
        &plan.decision,
        context.now,
    )
}

/// The CA's renewal window for the certificate on disk (RFC 9773), when ARI is on, the CA
/// offers it and answers. `None`: the days rule decides, the safety net when the CA does not
/// answer. Not asked when the certificate renews at once anyway.
async fn ask_ari(context: &Context<'_>, plan: &Plan<'_>) -> Option<RenewalWindow> {
    if !context.config.renew.ari {
        return None;
    }
    if let RenewalDecision::Due(reason) = &plan.decision
        && reason.is_immediate()
    {
        return None;
    }
    let inspection = plan.installed.inspection()?;
    // Asked of the CA that issued it: only that one knows the certificate.
    let issuer = context
        .cas
        .issuer_of(context.state, plan.cert, Some(inspection));
    let account = if issuer.primary {
        context.account.open()
    } else {
        match issuer.account(context.state, false).await {
            Ok(account) => Some(account),
            Err(problem) => {
                tracing::debug!(cert = plan.cert, %problem, "deciding without ARI");
                None
            }
        }
    };
    let Some(account) = account else {
        if let Some(problem) = context.account.problem() {
            tracing::debug!(cert = plan.cert, %problem, "deciding without ARI");
        }
        return None;
    };
    acme::renewal_window(account, inspection, plan.cert).await
}

/// Checks every identifier's `_acme-challenge` delegation, then that neither it nor the signing
/// zone is DNSSEC-bogus; all problems in one line.
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
        check_chains(config.resolver, &bases, &config.signing_zone)
            .await
            .map_err(CertFailure::Dnssec)
    } else {
        Err(CertFailure::Delegation(problems))
    }
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
