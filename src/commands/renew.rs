//! `fleetcert renew`: a server on its own renews in one process: request, publish its own
//! records by dynamic update, wait for every server, finalize, remove its records.
//!
//! The steps are the other commands' own (`request::token_document`, `zone::publish` with
//! the dynamic-update writer, `finalize::finalize_all`), run in order under the host lock;
//! this module only joins them and writes one report. With nothing due nothing is published
//! and no DNS server is asked, unless an earlier run left records of this host in the zone
//! (it died before its clean-up), which are removed. When the records are not served by
//! every server within `timeout`, finalize is skipped (the CA might not see them, and a
//! failed validation kills the order), the records are removed again and the exit code is 3;
//! the next run takes the saved order up again.
//!
//! With a test issuer (`issuer: self-signed` or `local-ca`) there are no records and no DNS
//! server: `renew` is request and finalize, and needs no `update:` block.

use std::collections::BTreeSet;
use std::time::Instant;

use serde::Serialize;
use tracing::warn;

use super::finalize_report;
use super::issuing::Issuing;
use super::record::Observed;
use super::report::print_json;
use super::{finalize, publish, request};
use crate::cli::HostArgs;
use crate::config::{HostConfig, ZoneConfig, ZoneTarget, missing_update};
use crate::error::{Error, Outcome, print_error_line};
use crate::state::StateDir;
use crate::token::{self, CertStatus, CheckVerdict, Submission, TokenDocument};
use crate::zone::{self, UpdateWriter};

/// The JSON report (docs/reports.md, "renew").
#[derive(Debug, Serialize)]
struct Report {
    host: String,
    /// Whether a certificate file was replaced (Ansible's and systemd's "did something").
    changed: bool,
    dry_run: bool,
    /// The token document `request` made: every certificate's decision, the records.
    request: TokenDocument,
    /// Publishing the records and the wait on every server; `null` when none were due.
    publish: Option<publish::Report>,
    /// `null` when finalize was skipped (nothing published everywhere in time).
    finalize: Option<finalize_report::Report>,
    /// Removing this host's records again; `null` when there were none.
    cleanup: Option<publish::Report>,
    /// Why the clean-up failed, when it did (the records then expire with the next run).
    #[serde(skip_serializing_if = "Option::is_none")]
    cleanup_error: Option<String>,
    /// `--check`: what `fleetcert check` says after the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    check: Option<CheckVerdict>,
    seconds: f64,
}

pub(crate) async fn run(args: HostArgs, observed: &mut Observed) -> Result<Outcome, Error> {
    let started = Instant::now();
    let config = HostConfig::load(&args.config)?;
    let issuing = Issuing::of(&config);
    match issuing {
        Issuing::Acme => renew_with_ca(&config, &args, observed, started).await,
        // No records and no DNS server: request and finalize.
        Issuing::Test(_) => renew_without_dns(&config, issuing, &args, observed, started).await,
    }
}

/// `renew` with a CA: request, publish the host's records, finalize, remove the records.
async fn renew_with_ca(
    config: &HostConfig,
    args: &HostArgs,
    observed: &mut Observed,
    started: Instant,
) -> Result<Outcome, Error> {
    let zone_config = ZoneConfig::for_host(config).ok_or_else(|| missing_update(&config.path))?;
    let ZoneTarget::Update(target) = &zone_config.target else {
        return Err(missing_update(&config.path).into());
    };
    let dry_run = args.dry_run;
    let (state, _lock) = StateDir::open_for_run(&config.state_dir, dry_run).await?;
    let mut writer = UpdateWriter::open(target, &zone_config.zone, zone_config.ttl, dry_run)?;

    let document = request::token_document(config, Issuing::Acme, &state, dry_run).await?;
    observed.requested(&document);
    let own = token::own_submission(&document, &config.host, &zone_config.policy)?;
    let had_records = !own.records.is_empty();
    let publishing = Instant::now();
    let published = if had_records {
        Some(zone::publish(&zone_config, &[own], &mut writer).await?)
    } else {
        None
    };
    // Its `seconds` are the publish step's own, as `publish` alone would report them.
    let publish_report = published
        .as_ref()
        .map(|publication| publish::report(&zone_config, publication, publishing));
    let not_served = published
        .as_ref()
        .and_then(|publication| publish::not_served(&zone_config, publication));
    if let Some(problem) = &not_served {
        print_error_line(problem);
    }
    let lagging = not_served.is_some();
    let finalized = if lagging {
        None
    } else {
        // The records are served and the orders saved: dying here, the next run re-opens
        // the orders, finds its records already in place, finalizes and cleans up.
        crash_point!("renew.before_finalize");
        Some(finalize::finalize_all(config, Issuing::Acme, &state, dry_run).await)
    };
    // The new sets are installed, the records still in the zone: the next run removes them.
    crash_point!("renew.before_cleanup");

    let (cleanup, cleanup_error) = if !dry_run && (had_records || writer.holds_records()?) {
        let empty = Submission {
            host: config.host.clone(),
            records: BTreeSet::new(),
        };
        let cleaning = Instant::now();
        match zone::publish(&zone_config, &[empty], &mut writer).await {
            Ok(publication) => (
                Some(publish::report(&zone_config, &publication, cleaning)),
                None,
            ),
            Err(err) => {
                warn!(error = %err, "cannot remove this host's records; the next run does");
                (None, Some(err.to_string()))
            }
        }
    } else {
        (None, None)
    };
    // The run failed as a whole in finalize (the CA unreachable): the records are gone
    // again, and the error is the run's.
    let finalized = finalized.transpose()?;
    let failed = any_failed(&document, finalized.as_ref());
    let report = Report {
        host: config.host.to_string(),
        changed: finalized.as_ref().is_some_and(|report| report.changed),
        dry_run,
        publish: publish_report,
        request: document,
        finalize: finalized,
        cleanup,
        cleanup_error,
        check: super::check::verdict(args, config, observed).await,
        seconds: started.elapsed().as_secs_f64(),
    };
    print_json(&report)?;
    Ok(if lagging {
        Outcome::PropagationTimeout
    } else {
        Outcome::from_failures(failed)
    })
}

/// `renew` with a test issuer: request and finalize under the host lock, nothing published.
async fn renew_without_dns(
    config: &HostConfig,
    issuing: Issuing<'_>,
    args: &HostArgs,
    observed: &mut Observed,
    started: Instant,
) -> Result<Outcome, Error> {
    let dry_run = args.dry_run;
    let (state, _lock) = StateDir::open_for_run(&config.state_dir, dry_run).await?;
    let document = request::token_document(config, issuing, &state, dry_run).await?;
    observed.requested(&document);
    let finalized = finalize::finalize_all(config, issuing, &state, dry_run).await?;
    let failed = any_failed(&document, Some(&finalized));
    let report = Report {
        host: config.host.to_string(),
        changed: finalized.changed,
        dry_run,
        request: document,
        publish: None,
        finalize: Some(finalized),
        cleanup: None,
        cleanup_error: None,
        check: super::check::verdict(args, config, observed).await,
        seconds: started.elapsed().as_secs_f64(),
    };
    print_json(&report)?;
    Ok(Outcome::from_failures(failed))
}

/// Whether some certificate failed in request or in finalize (its reload included).
fn any_failed(document: &TokenDocument, finalized: Option<&finalize_report::Report>) -> bool {
    document
        .certs
        .iter()
        .any(|cert| cert.status == CertStatus::Failed)
        || finalized.is_some_and(finalize_report::Report::failed)
}
