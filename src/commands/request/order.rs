//! Ordering a due certificate: from the primary CA, then, when the primary cannot issue and
//! the certificate cannot wait, from each fallback CA in turn (docs/renewal.md). A CA whose
//! rate limit still holds, or that CAA does not allow, is passed over; the order names the
//! certificate it renews (`replaces`) only to the CA that issued it.

use tracing::{info, warn};

use super::{Context, Part, Plan, precheck, records, urgency};
use crate::acme::{self, Ca, Challenge, PendingOrder, RateLimit};
use crate::cert::Inspection;
use crate::commands::caa::check_caa;
use crate::commands::failure::{CertFailure, Declined};
use crate::commands::installed::rfc3339;
use crate::issuer::Origin;
use crate::state::limits_dir;
use crate::store::Versioned as _;
use crate::token::CertStatus;

/// Orders a due certificate from the first CA that takes it, unless its delegation is
/// broken: the primary, then, when the primary cannot issue and the certificate cannot
/// wait, each fallback CA. A CA whose rate limit still holds, or that CAA does not allow,
/// is passed over.
pub(super) async fn order_due(context: &Context<'_>, plan: &mut Plan<'_>, reason: String) -> Part {
    let delegation = match plan.delegation.take() {
        Some(checked) => checked,
        None => precheck(context.config, plan.spec).await,
    };
    if let Err(failure) = delegation {
        return Part::failed(plan, failure);
    }
    let urgent = urgency(context, plan);
    if context.dry_run {
        // The primary's rate limit still tells a dry run that nothing would go out.
        if let Err(failure) = held_rate_limit(context, context.cas.primary(), plan.cert) {
            return Part::failed(plan, failure);
        }
        return dry_order(context, plan, &reason, urgent);
    }
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
    let waits = urgent.is_none().then(|| waits(context));
    Part::failed(plan, CertFailure::NoCa { tried, waits })
}

/// Why a certificate that can wait is not ordered from a fallback CA.
fn waits(context: &Context<'_>) -> String {
    format!(
        "not urgent: it waits for the primary (a fallback CA is asked once it has fewer than \
         {} days left, renew.fallback_within_days)",
        context.config.renew.fallback_within_days
    )
}

/// What a dry run says of a due certificate: it would order it from the primary; or, when
/// the primary's directory did not answer (with a fallback CA configured, else the run
/// stopped), from the first fallback CA if it cannot wait, and nowhere if it can, as the
/// real run would decide. The fallback itself is not asked.
fn dry_order(context: &Context<'_>, plan: &Plan<'_>, reason: &str, urgent: Option<String>) -> Part {
    let Some(problem) = context.account.problem() else {
        let reason = format!("would order ({reason})");
        return Part::new(plan, CertStatus::Pending, reason, Vec::new(), true);
    };
    let primary = format!("{}: {problem}", context.cas.primary().describe());
    match (urgent, context.cas.iter().find(|ca| !ca.primary)) {
        (Some(why), Some(fallback)) => {
            let reason = format!(
                "would order from the {} ({reason}), as {primary}; and it cannot wait: {why}",
                fallback.describe()
            );
            Part::new(plan, CertStatus::Pending, reason, Vec::new(), true)
        }
        _ => {
            let reason = format!("{primary}; {}", waits(context));
            warn!(cert = plan.cert, reason, "cannot request");
            Part::new(plan, CertStatus::Failed, reason, Vec::new(), false)
        }
    }
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
pub(super) fn passed_over(failure: &CertFailure) -> bool {
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
    check_caa(context.config.resolver, ca, plan.spec).await?;
    let replaces = replaces(context, plan, ca);
    let reason = match &fallback {
        Some(why) => format!("{reason}; from the {}, as {why}", ca.describe()),
        None => reason.to_owned(),
    };
    match order(context, plan, ca, &reason, replaces, fallback).await {
        Ok(challenges) => {
            let records = records(context.config, cert, &challenges);
            let status = acme::status_of(&challenges);
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
fn replaces<'p>(context: &Context<'_>, plan: &'p Plan<'_>, ca: &Ca<'_>) -> Option<&'p Inspection> {
    let inspection = plan.installed.inspection()?;
    let issuer = context
        .cas
        .issuer_of(context.state, plan.cert, Some(inspection));
    if issuer.acme.directory != ca.acme.directory {
        return None;
    }
    // Not a test issuer's certificate (docs/test-gates.md): the CA never issued it.
    let from_a_ca = plan
        .installed
        .origin
        .as_ref()
        .is_some_and(Origin::is_from_a_ca);
    (from_a_ca && inspection.shares_a_name(&plan.spec.names)).then_some(inspection)
}

/// Creates the order and saves it; returns the TXT values it waits for.
async fn order(
    context: &Context<'_>,
    plan: &Plan<'_>,
    ca: &Ca<'_>,
    reason: &str,
    replaces: Option<&Inspection>,
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
