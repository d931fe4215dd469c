//! `fleetcert request`: decide which certificates are due, create and save their orders,
//! and print the token document.
//!
//! Only what is needed touches the CA: with nothing due, no pending order and ARI off, the
//! run reads a few local files and never loads the account or fetches the directory. When
//! an order is needed and the CA cannot be reached, the run fails as a whole (exit 4).
//!
//! The decision part (docs/renewal.md): a saved order is re-opened, or dropped when it can no
//! longer complete; then the CA's window (ARI) is asked unless the certificate renews at once
//! anyway, and `cert::Inspection::decide` decides from the files, the window and the
//! certificate's own seed; a rate limit the CA set earlier stops the order until its time;
//! every order that renews a certificate on disk names it in `replaces`.
//!
//! The CAs (commands/ca.rs): the primary is asked first; when it cannot issue and the
//! certificate cannot wait, each fallback in turn. CAA must allow a CA before it is asked.
//! ARI is asked of the CA that issued the certificate on disk, and `replaces` goes only to
//! that CA.

use futures_util::StreamExt as _;
use futures_util::future::join_all;
use instant_acme::CertificateIdentifier;
use time::OffsetDateTime;
use tracing::{info, warn};

use super::ca::{self, Ca, Cas};
use super::failure::{CertFailure, Declined};
use super::installed::{Installed, rfc3339};
use super::record::Observed;
use super::report::print_json;
use crate::acme::{
    self, AccountState, Challenge, PendingOrder, RateLimit, Reopened, StateDir, limits_dir,
};
use crate::cert::{RenewalDecision, RenewalWindow, Rule, Schedule};
use crate::cli::HostArgs;
use crate::config::{CertSpec, HostConfig};
use crate::dns::{check_chains, check_delegation};
use crate::error::{Error, Outcome};
use crate::issuer::Origin;
use crate::reload;
use crate::store::Versioned as _;
use crate::token::{self, CertState, CertStatus, RateLimited, Record, TokenDocument, record_name};

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
    let mut document = token_document(&config, &state, args.dry_run).await?;
    if !args.dry_run {
        settle_reloads(&config, &state, &mut document).await;
    }
    document.check = super::check::verdict(&args, observed).await;
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
    state: &StateDir,
    dry_run: bool,
) -> Result<TokenDocument, Error> {
    if let Some(issuer) = config.issuer.test() {
        return super::local::token_document(config, issuer, state, dry_run);
    }
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
                Ok(()) => {}
                // With a fallback CA the real run would go on without the primary.
                Err(err) if err.cannot_issue() && !config.fallback.is_empty() => {
                    warn!(error = %err, "the primary CA cannot be reached");
                }
                Err(err) => return Err(err.into()),
            }
        }
        AccountState::NotNeeded
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
        let reason = not_due(&plan.installed, context.now, schedule);
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

/// The reason line of a certificate that is not due: time left, and when it renews by which
/// rule (a test issuer's too, commands/local.rs).
pub(super) fn not_due(
    installed: &Installed<'_>,
    now: OffsetDateTime,
    schedule: Option<Schedule>,
) -> String {
    let (Some(inspection), Some(schedule)) = (installed.inspection(), schedule) else {
        return "not due".to_owned();
    };
    let rule = match schedule.rule {
        Rule::Days { .. } => "renew.before_days, spread".to_owned(),
        Rule::Ari(window) => format!("inside the CA's renewal window (ARI) {window}"),
        Rule::AriSafetyNet(window) => {
            format!("the safety net: the CA's renewal window (ARI) {window} comes too late")
        }
    };
    format!(
        "not due: {} days left, renews from {} ({rule})",
        inspection.remaining(now).as_secs() / 86_400,
        rfc3339(schedule.at)
    )
}

/// Orders a due certificate from the first CA that takes it, unless its delegation is
/// broken: the primary, then, when the primary cannot issue and the certificate cannot
/// wait, each fallback CA. A CA whose rate limit still holds, or that CAA does not allow,
/// is passed over.
async fn order_due(context: &Context<'_>, plan: &mut Plan<'_>, reason: String) -> Part {
    let delegation = match plan.delegation.take() {
        Some(checked) => checked,
        None => precheck(context.config, plan.spec).await,
    };
    if let Err(failure) = delegation {
        return Part::failed(plan, failure);
    }
    if context.dry_run {
        // The primary's rate limit still tells a dry run that nothing would go out.
        if let Err(failure) = held_rate_limit(context, context.cas.primary(), plan.cert) {
            return Part::failed(plan, failure);
        }
        let reason = format!("would order ({reason})");
        return Part::new(plan, CertStatus::Pending, reason, Vec::new(), true);
    }
    let urgent = ca::urgency(context.config, &plan.installed, &plan.decision, context.now);
    let mut tried: Vec<Declined> = Vec::new();
    for ca in context.cas.iter() {
        let fallback = if ca.primary {
            None
        } else if urgent.is_some() {
            Some(fallback_reason(&tried, urgent.as_deref()))
        } else {
            break;
        };
        match order_at(context, plan, ca, &reason, fallback).await {
            Ok(part) => return part,
            Err(failure) if passed_over(&failure) && !context.config.fallback.is_empty() => {
                info!(cert = plan.cert, ca = %ca.acme.directory, reason = %failure, "this CA does not take the order");
                tried.push(Declined {
                    ca: ca.describe(),
                    failure: Box::new(failure),
                });
            }
            Err(failure) => return Part::failed(plan, failure),
        }
    }
    let waits = urgent.is_none().then(|| {
        format!(
            "not urgent: it waits for the primary (a fallback CA is asked once it has fewer \
             than {} days left, renew.fallback_within_days)",
            context.config.renew.fallback_within_days
        )
    });
    Part::failed(plan, CertFailure::NoCa { tried, waits })
}

/// Why a fallback CA is asked: what the CAs before it said, and why waiting costs.
fn fallback_reason(tried: &[Declined], urgent: Option<&str>) -> String {
    let before: Vec<String> = tried.iter().map(ToString::to_string).collect();
    format!(
        "{}; and it cannot wait: {}",
        before.join("; "),
        urgent.unwrap_or("urgent")
    )
}

/// Whether a CA's failure passes the order on to the next CA: the CA cannot issue now, or
/// CAA does not allow it.
fn passed_over(failure: &CertFailure) -> bool {
    match failure {
        CertFailure::Acme(err) => err.cannot_issue(),
        CertFailure::Caa(_) => true,
        _ => false,
    }
}

/// Asks one CA for the order: its rate limit, CAA, its account, then the order itself.
async fn order_at(
    context: &Context<'_>,
    plan: &Plan<'_>,
    ca: &Ca<'_>,
    reason: &str,
    fallback: Option<String>,
) -> Result<Part, CertFailure> {
    let cert = plan.cert;
    held_rate_limit(context, ca, cert)?;
    ca::check_caa(context.config.resolver, ca, plan.spec).await?;
    let replaces = replaces(context, plan, ca);
    let reason = match &fallback {
        Some(why) => format!("{reason}; from the {}, as {why}", ca.describe()),
        None => reason.to_owned(),
    };
    match order(context, plan, ca, &reason, replaces, fallback).await {
        Ok(challenges) => {
            let records = records(context.config, cert, &challenges);
            let status = if records.is_empty() {
                CertStatus::Ready
            } else {
                CertStatus::Pending
            };
            Ok(Part::new(plan, status, reason, records, true))
        }
        Err(CertFailure::Acme(acme::AcmeError::RateLimited(limit))) => {
            // Kept so that the next runs do not order from this CA before the limit ends.
            let limits = limits_dir(&ca.acme.directory, ca.primary);
            if let Err(err) = limit.save(context.state, &limits, cert) {
                warn!(cert, error = %err, "cannot keep the rate limit; the next run asks again");
            }
            Err(acme::AcmeError::RateLimited(limit).into())
        }
        Err(failure) => Err(failure),
    }
}

/// A refusal by `ca`'s rate limit that still stops `cert`'s next order there. One that has
/// ended, or came from another CA, is forgotten.
fn held_rate_limit(context: &Context<'_>, ca: &Ca<'_>, cert: &str) -> Result<(), CertFailure> {
    let limits = limits_dir(&ca.acme.directory, ca.primary);
    let limit = match RateLimit::load(context.state, &limits, cert) {
        Ok(Some(limit)) => limit,
        Ok(None) => return Ok(()),
        Err(err) => {
            // Our own file, broken: asking the CA again costs at most one refusal.
            warn!(cert, error = %err, "ignoring the saved rate limit");
            return Ok(());
        }
    };
    if limit.holds(&ca.acme.directory, context.now) {
        return Err(acme::AcmeError::RateLimited(Box::new(limit)).into());
    }
    if !context.dry_run {
        RateLimit::remove(context.state, &limits, cert)?;
    }
    Ok(())
}

/// The certificate an order renews, for `replaces` (RFC 9773 section 5): the one on disk
/// whatever made it due, when it shares a name with the order (Let's Encrypt exempts a
/// renewal from its rate limits only then).
/// Only to the CA that issued it: another CA never saw it.
fn replaces(
    context: &Context<'_>,
    plan: &Plan<'_>,
    ca: &Ca<'_>,
) -> Option<CertificateIdentifier<'static>> {
    let inspection = plan.installed.inspection()?;
    let issuer = context
        .cas
        .issuer_of(context.state, plan.cert, &plan.installed);
    if issuer.acme.directory != ca.acme.directory {
        return None;
    }
    // Not a test issuer's certificate (docs/test-gates.md): the CA never issued it.
    let from_a_ca = plan
        .installed
        .origin
        .as_ref()
        .is_some_and(Origin::is_from_a_ca);
    if from_a_ca && inspection.shares_a_name(&plan.spec.names) {
        acme::replaces_for(inspection)
    } else {
        None
    }
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
/// complete; then a new one is made if the certificate is (still) due.
async fn resume(
    context: &Context<'_>,
    plan: &Plan<'_>,
    saved: &PendingOrder,
) -> Result<Resumed, CertFailure> {
    let config = context.config;
    // The order's own CA, primary or fallback, while the config still lists it.
    let ca = context.cas.find(&saved.directory);
    let fits = ca.is_some_and(|ca| {
        saved.fits(
            &plan.spec.names,
            config.key,
            ca.acme.profile.as_deref(),
            &ca.acme.directory,
        )
    });
    if context.dry_run {
        if !fits {
            return Ok(Resumed::Dropped(None));
        }
        let reason = format!(
            "order from {} still pending ({})",
            saved.created, saved.reason
        );
        return Ok(Resumed::Open(CertStatus::Pending, reason, Vec::new()));
    }
    // The order's CA unreachable keeps the order (the next run asks again): only a CA that
    // answers can say the order is dead.
    let account = match ca {
        Some(ca) if fits => Some(ca.account(context.state, true).await?),
        _ => None,
    };
    let why = match account {
        Some(account) if fits && saved.account == account.id() => {
            match acme::reopen(account, saved, context.now).await? {
                Reopened::Open(challenges) => {
                    info!(cert = plan.cert, order = %saved.url, "reusing the saved order");
                    let records = records(config, plan.cert, &challenges);
                    let status = if records.is_empty() {
                        CertStatus::Ready
                    } else {
                        CertStatus::Pending
                    };
                    return Ok(Resumed::Open(status, saved.reason.clone(), records));
                }
                Reopened::Dead(why) => Some(format!("(from {}) {why}", saved.created)),
            }
        }
        Some(_) if fits => Some(format!(
            "(from {}) was made by another account",
            saved.created
        )),
        _ => None,
    };
    info!(cert = plan.cert, order = %saved.url, why = why.as_deref().unwrap_or("the config changed"), "dropping the saved order");
    PendingOrder::remove(context.state, plan.cert)?;
    Ok(Resumed::Dropped(why))
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
        .issuer_of(context.state, plan.cert, &plan.installed);
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
    let id = acme::replaces_for(inspection)?;
    match account.renewal_info(&id).await {
        Ok((info, _)) => {
            let window = RenewalWindow {
                start: info.suggested_window.start,
                end: info.suggested_window.end,
            };
            if window.start > window.end {
                warn!(cert = plan.cert, %window, "the CA's renewal window (ARI) ends before it starts; the days rule decides");
                return None;
            }
            Some(window)
        }
        // Pebble and some CAs have no renewalInfo: that is "no ARI", not a failure.
        Err(instant_acme::Error::Unsupported(_)) => None,
        Err(err) => {
            warn!(cert = plan.cert, error = %err, "the CA did not answer for its renewal window (ARI); the days rule decides");
            None
        }
    }
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

/// Creates the order and saves it; returns the TXT values it waits for.
async fn order(
    context: &Context<'_>,
    plan: &Plan<'_>,
    ca: &Ca<'_>,
    reason: &str,
    replaces: Option<CertificateIdentifier<'static>>,
    fallback: Option<String>,
) -> Result<Vec<Challenge>, CertFailure> {
    let config = context.config;
    // The primary's was opened before the certificates, unless it could not be (then this
    // asks again, and says why it cannot); a fallback's on first use.
    let account = ca.account(context.state, true).await?;
    let profile = ca.acme.profile.as_deref();
    if let Some(profile) = profile {
        acme::check_profile(account, profile)?;
    }
    // An order the CA made but fleetcert could not save would be made again on every retry.
    context.state.probe(Some("orders"))?;
    let (order, challenges) = acme::create(
        account,
        &ca.acme.directory,
        &plan.spec.names,
        profile,
        replaces,
        context.now,
    )
    .await?;
    // The CA holds the order now; dying here orphans it there (it expires unused).
    crash_point!("request.order_created");
    let saved = PendingOrder {
        version: PendingOrder::VERSION,
        url: order.url().to_owned(),
        directory: ca.acme.directory.clone(),
        account: account.id().to_owned(),
        names: plan.spec.names.clone(),
        key: config.key,
        profile: profile.map(str::to_owned),
        reason: reason.to_owned(),
        created: rfc3339(context.now),
        fallback,
    };
    saved.save(context.state, plan.cert)?;
    crash_point!("request.order_saved");
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
