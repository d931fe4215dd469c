//! `request` and `finalize` with a test issuer (`issuer: self-signed` or `local-ca`): no CA,
//! no DNS, the same decisions, files, install and reports as with a CA.
//!
//! `request` decides which certificates are due by the same rules (missing, expiring within
//! `renew.before_days`, names or key type changed, the issuer changed), saves a local order
//! for each (`issuer::LocalOrders`) and prints a token document with no records, each due
//! certificate `ready` with its reason; `changed` says that it decided something new.
//! `finalize` signs exactly what was decided, with a key made on the host, and installs it
//! through `finalize`'s own install, so its `changed` means what it means with a CA: a
//! certificate's files were replaced.

use time::OffsetDateTime;
use tracing::{info, warn};

use super::failure::CertFailure;
use super::finalize_report::{CertReport, FinalizeStatus, Report};
use super::install_set::{install_issued, refresh_keystore};
use super::installed::{Installed, rfc3339};
use crate::acme::{self, AcmeError};
use crate::cert::{DueReason, RenewalDecision, not_due};
use crate::config::{CertSpec, HostConfig};
use crate::error::Error;
use crate::issuer::{LOCAL_ORDERS_FILE, LocalOrder, LocalOrders, Origin, TestIssuer};
use crate::state::StateDir;
use crate::store::StoreError;
use crate::token::{self, CertState, CertStatus, TokenDocument};

/// What a test issuer does with one certificate.
enum LocalDecision {
    Valid,
    Due(DueReason),
    /// A CA's certificate, which the config does not let a test issuer replace.
    Kept(CertFailure),
}

/// `request::token_document` with a test issuer: decides, saves the local orders, and
/// returns the token document.
pub(super) fn token_document(
    config: &HostConfig,
    issuer: &TestIssuer,
    state: &StateDir,
    dry_run: bool,
) -> Result<TokenDocument, Error> {
    let now = OffsetDateTime::now_utc();
    let saved = load_orders(state).unwrap_or_else(|err| {
        // A broken file only costs deciding again; it is replaced below.
        warn!(error = %err, "ignoring the saved local orders");
        LocalOrders::new()
    });
    let mut orders = LocalOrders::new();
    let mut changed = false;
    let mut certs = Vec::new();
    for (cert, spec) in &config.certs {
        let installed = Installed::read(config, cert, spec);
        // No CA, so no ARI: the days rule, spread, as request says it without an answer.
        let schedule = installed.schedule(config, None);
        let mut renew_at = schedule.map(|schedule| rfc3339(schedule.at));
        let (status, reason) = match decide(config, issuer, &installed, spec, now) {
            LocalDecision::Valid => (
                CertStatus::Valid,
                not_due(installed.inspection(), now, schedule),
            ),
            LocalDecision::Kept(failure) => {
                let reason = failure.to_string();
                warn!(cert, reason, "cannot request");
                renew_at = None;
                (CertStatus::Failed, reason)
            }
            LocalDecision::Due(due) => {
                let order = match saved.orders.get(cert) {
                    Some(order) if order.fits(&spec.names, config.key, issuer.kind()) => {
                        order.clone()
                    }
                    _ => {
                        changed = true;
                        info!(cert, reason = %due, why = due.label(), "due");
                        LocalOrder {
                            issuer: issuer.kind(),
                            names: spec.names.clone(),
                            key: config.key,
                            reason: due.to_string(),
                            created: rfc3339(now),
                        }
                    }
                };
                let reason = format!(
                    "{}{}; finalize signs it (issuer: {})",
                    if dry_run { "would order: " } else { "" },
                    order.reason,
                    issuer.kind()
                );
                orders.orders.insert(cert.clone(), order);
                (CertStatus::Ready, reason)
            }
        };
        certs.push(CertState {
            name: cert.clone(),
            status,
            not_after: installed.not_after(),
            reason,
            renew_rule: renew_at.as_ref().and(schedule).map(|s| s.rule.kind()),
            renew_at,
            serial: installed.serial(),
            rate_limit: None,
        });
    }
    if !dry_run && orders != saved {
        state.save(LOCAL_ORDERS_FILE, &orders)?;
    }
    Ok(TokenDocument {
        version: token::VERSION,
        host: config.host.to_string(),
        changed,
        records: Vec::new(),
        certs,
        check: None,
    })
}

/// `finalize::finalize_all` with a test issuer: signs and installs what `request` decided,
/// and returns the report.
pub(super) fn finalize_all(
    config: &HostConfig,
    issuer: &TestIssuer,
    state: &StateDir,
    dry_run: bool,
) -> Result<Report, Error> {
    let mut orders = load_orders(state)?;
    let mut certs = Vec::new();
    // One after the other, each order forgotten right after its install: a run that dies
    // between the two signs that certificate again next time, and the handlers run again.
    for (cert, spec) in &config.certs {
        let installed = Installed::read(config, cert, spec);
        let report = |status, not_after, error| {
            CertReport::new(cert, spec, &installed, status, not_after, error)
        };
        let failed = |failure: CertFailure| {
            let error = failure.to_string();
            warn!(cert, error, "cannot finalize");
            report(FinalizeStatus::Failed, installed.not_after(), Some(error))
        };
        let Some(order) = orders.orders.get(cert).cloned() else {
            // Nothing to sign; a keystore that no longer fits `pkcs12:` is rebuilt, as with
            // a CA.
            certs.push(match refresh_keystore(dry_run, spec, &installed) {
                Ok(status) => report(status, installed.not_after(), None),
                Err(failure) => failed(failure),
            });
            continue;
        };
        if !order.fits(&spec.names, config.key, issuer.kind()) {
            if !dry_run {
                orders.orders.remove(cert);
                state.save(LOCAL_ORDERS_FILE, &orders)?;
            }
            certs.push(failed(CertFailure::ConfigChanged {
                names: order.names,
                key: order.key,
                directory: format!("the {} issuer", order.issuer),
            }));
            continue;
        }
        // A CA's certificate installed since request decided is still not replaced.
        if let Some(kept) = kept(issuer, &installed) {
            certs.push(failed(kept));
            continue;
        }
        if dry_run {
            certs.push(report(
                FinalizeStatus::WouldIssue,
                installed.not_after(),
                None,
            ));
            continue;
        }
        match issue(issuer, &order, spec, &installed) {
            Ok(not_after) => {
                info!(cert, not_after, issuer = %issuer.kind(), "installed");
                crash_point!("local.installed");
                orders.orders.remove(cert);
                if let Err(err) = state.save(LOCAL_ORDERS_FILE, &orders) {
                    // The files are replaced, and the report says so; the order is signed
                    // again next time, which costs one more install.
                    warn!(cert, error = %err, "cannot forget the local order");
                }
                certs.push(report(FinalizeStatus::Issued, Some(not_after), None));
            }
            Err(failure) => certs.push(failed(failure)),
        }
    }
    Ok(Report::new(config, certs))
}

/// The saved local orders; none when there is no file.
pub(super) fn load_orders(state: &StateDir) -> Result<LocalOrders, StoreError> {
    Ok(state
        .load(LOCAL_ORDERS_FILE)?
        .unwrap_or_else(LocalOrders::new))
}

/// The renewal rules of a CA, after the one rule only a test issuer has: a CA's certificate
/// stays unless `replace_ca_issued` says otherwise.
fn decide(
    config: &HostConfig,
    issuer: &TestIssuer,
    installed: &Installed<'_>,
    spec: &CertSpec,
    now: OffsetDateTime,
) -> LocalDecision {
    if let Some(kept) = kept(issuer, installed) {
        return LocalDecision::Kept(kept);
    }
    match installed.decide(config, spec, now) {
        RenewalDecision::Valid => LocalDecision::Valid,
        RenewalDecision::Due(reason) => LocalDecision::Due(reason),
    }
}

/// Why a CA's certificate on disk is kept, when it is.
fn kept(issuer: &TestIssuer, installed: &Installed<'_>) -> Option<CertFailure> {
    let Some(Origin::Ca { issuer: ca }) = &installed.origin else {
        return None;
    };
    if issuer.replace_ca_issued {
        return None;
    }
    let kind = issuer.kind();
    Some(CertFailure::CaIssued(format!(
        "the certificate on disk was issued by a CA ({}), and `issuer: {kind}` does not \
         replace it: set `issuer.{kind}.replace_ca_issued: true` to replace it with a test \
         certificate, or go back to `issuer: acme`",
        crate::shown::shown(ca)
    )))
}

/// Makes the key, signs the certificate, checks it and installs it; its expiry.
fn issue(
    issuer: &TestIssuer,
    order: &LocalOrder,
    spec: &CertSpec,
    installed: &Installed<'_>,
) -> Result<String, CertFailure> {
    let key = order.key.generate().map_err(AcmeError::Key)?;
    let now = OffsetDateTime::now_utc();
    let pem = issuer.sign(&key, &order.names, now)?;
    // The check every CA's chain gets: it carries this key and exactly these names.
    let chain = acme::verify_chain(&pem, &key, &order.names)?;
    install_issued(spec, installed, &key, &chain)?;
    Ok(rfc3339(chain.inspection.not_after))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_orders_round_trip_and_none_is_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::open(dir.path(), true).expect("state");
        assert_eq!(load_orders(&state).expect("load"), LocalOrders::new());
        let mut orders = LocalOrders::new();
        orders
            .orders
            .insert("main".to_owned(), crate::issuer::local_order());
        state.save(LOCAL_ORDERS_FILE, &orders).expect("save");
        assert_eq!(load_orders(&state).expect("load"), orders);
    }
}
