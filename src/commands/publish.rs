//! `fleetcert publish`: collate token documents, publish the signing zone, wait for every
//! authoritative server, print the JSON report.
//!
//! Every document is validated before anything is locked or written (`token`); the flow and
//! the publishers live in `zone`. This module picks the publisher the config names, and turns
//! what happened into the report and the exit code (3 when a server lags, 1 when a host's
//! document was refused and the others were published, 2 when none was left to publish).

use std::time::Instant;

use serde::Serialize;

use super::record::Observed;
use super::report::print_json;
use crate::cli::PublishArgs;
use crate::config::{ZoneConfig, ZoneTarget};
use crate::dns::{DnsName, ServerWait};
use crate::error::{Error, Outcome, print_error_line};
use crate::token::{self, Refusal, TokenSource, Tokens};
use crate::zone::{self, FileWriter, Publication, UpdateWriter};

/// The JSON report on stdout (also `renew`'s `publish` and `cleanup`).
#[derive(Debug, Serialize)]
pub(super) struct Report {
    /// Whether the zone changed (a new serial, a new file, a reload).
    changed: bool,
    dry_run: bool,
    zone: DnsName,
    serial: u32,
    /// TXT records in the zone.
    records: usize,
    /// Hosts with records in the zone.
    hosts: usize,
    /// Hosts whose records expired in this run (`record_lifetime`).
    expired: Vec<DnsName>,
    servers: Vec<ServerReport>,
    /// The server whose records were checked one by one.
    records_checked_on: Option<String>,
    /// The zone is signed (DNSSEC), and every server's signatures were checked.
    signed: bool,
    /// Seconds from start to verified on every server.
    seconds: f64,
    /// Hosts whose token document was refused: nothing of theirs was published in this run,
    /// and their records stay as the ledger had them (docs/reports.md).
    refused: Vec<RefusedHost>,
}

/// A host whose document was refused, and why.
#[derive(Debug, Serialize)]
struct RefusedHost {
    host: String,
    /// The same line as the log's, escaped and bounded.
    error: String,
}

#[derive(Debug, Serialize)]
struct ServerReport {
    server: String,
    /// The serial it serves; `null` when it did not answer authoritatively.
    serial: Option<u32>,
    /// Seconds from the start of the wait until it served the new serial; `null`: it did not.
    seconds: Option<f64>,
    /// Why it is behind, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    lagging: Option<String>,
}

pub(crate) async fn run(args: PublishArgs, observed: &mut Observed) -> Result<Outcome, Error> {
    let started = Instant::now();
    let config = ZoneConfig::load(&args.config)?;
    let sources: Vec<TokenSource> = args
        .tokens
        .iter()
        .map(|path| TokenSource::parse(path))
        .collect();
    let Tokens {
        submissions,
        refused,
    } = token::read_tokens(&sources, &config.policy)?;
    tracing::debug!(
        hosts = submissions.len(),
        refused = refused.len(),
        ms = started.elapsed().as_millis(),
        "documents validated"
    );
    let mut refused = refused.into_iter();
    if submissions.is_empty()
        && let Some(first) = refused.next()
    {
        // Nothing valid is left: the run is refused as a whole (2), the first document's
        // line as the error, the others logged.
        for other in refused {
            tracing::warn!(host = %other.host, "{}", other.error);
        }
        return Err(first.error.into());
    }
    let refused: Vec<Refusal> = refused.collect();
    for refusal in &refused {
        tracing::warn!(host = %refusal.host, "{}; that host's records stay as they were", refusal.error);
    }
    let publication = match &config.target {
        ZoneTarget::File(target) => {
            let mut writer = FileWriter::open(target, &config.zone, config.ttl, args.dry_run)?;
            zone::publish(&config, &submissions, &mut writer).await?
        }
        ZoneTarget::Update(target) => {
            let mut writer = UpdateWriter::open(target, &config.zone, config.ttl, args.dry_run)?;
            zone::publish(&config, &submissions, &mut writer).await?
        }
    };
    observed.published(&publication);
    let mut report = report(&config, &publication, started);
    report.refused = refused
        .iter()
        .map(|refusal| RefusedHost {
            host: refusal.host.clone(),
            error: refusal.error.to_string(),
        })
        .collect();
    print_json(&report)?;
    Ok(match not_served(&config, &publication) {
        Some(problem) => {
            print_error_line(&problem);
            Outcome::PropagationTimeout
        }
        None if !refused.is_empty() => Outcome::SomeFailed,
        None => Outcome::Success,
    })
}

pub(super) fn report(config: &ZoneConfig, publication: &Publication, started: Instant) -> Report {
    let (servers, checked_on) = match &publication.propagation {
        Some(propagation) => (
            propagation.waits.iter().map(server_report).collect(),
            propagation
                .checked
                .as_ref()
                .map(|(server, _)| server.to_string()),
        ),
        None => (Vec::new(), None),
    };
    Report {
        changed: publication.written.changed,
        dry_run: publication.dry_run,
        zone: config.zone.clone(),
        serial: publication.written.serial,
        records: publication.records,
        hosts: publication.hosts,
        expired: publication.expired.clone(),
        servers,
        records_checked_on: checked_on,
        signed: publication.signatures.is_some(),
        seconds: started.elapsed().as_secs_f64(),
        refused: Vec::new(),
    }
}

/// Why the published zone is not served as published everywhere: a server lags, the checked
/// server serves other records, or a signed zone's answers do not validate. `None`: it is.
/// `publish` and `renew` print it and exit 3.
pub(super) fn not_served(config: &ZoneConfig, publication: &Publication) -> Option<NotServed> {
    let propagation = publication.propagation.as_ref()?;
    let zone = config.zone.clone();
    let serial = publication.written.serial;
    let lagging: Vec<String> = propagation
        .waits
        .iter()
        .filter(|wait| wait.caught_up.is_none())
        .map(|wait| format!("{} {}", wait.server, wait.served))
        .collect();
    if !lagging.is_empty() {
        return Some(NotServed::Lagging {
            zone,
            serial,
            timeout: config.timeout.as_secs(),
            servers: lagging.join("; "),
        });
    }
    if let Some((_, Err(mismatch))) = &propagation.checked {
        return Some(NotServed::Mismatch {
            zone,
            serial,
            mismatch: mismatch.to_string(),
        });
    }
    // Servers with the same problem (a signer that stopped re-signing shows on all of them)
    // share one clause: "A and B serve answers that do not validate: ...".
    let mut invalid: Vec<(Vec<String>, String)> = Vec::new();
    for problem in publication
        .signatures
        .iter()
        .flatten()
        .filter_map(|c| c.as_ref().err())
    {
        let cause = problem.cause.to_string();
        match invalid.iter_mut().find(|(_, known)| *known == cause) {
            Some((servers, _)) => servers.push(problem.server.to_string()),
            None => invalid.push((vec![problem.server.to_string()], cause)),
        }
    }
    let invalid: Vec<String> = invalid
        .into_iter()
        .map(|(servers, cause)| {
            let verb = if servers.len() == 1 {
                "serves"
            } else {
                "serve"
            };
            format!(
                "{} {verb} answers that do not validate: {cause}",
                servers.join(" and ")
            )
        })
        .collect();
    (!invalid.is_empty()).then(|| NotServed::Invalid {
        zone,
        serial,
        problems: invalid.join("; "),
    })
}

/// The zone is published but not served as published everywhere (exit 3).
#[derive(Debug, thiserror::Error)]
pub(super) enum NotServed {
    #[error(
        "zone {zone} serial {serial} is published but not served everywhere after \
         {timeout}s: {servers}; check NOTIFY and transfers to those servers, or raise `timeout`"
    )]
    Lagging {
        zone: DnsName,
        serial: u32,
        timeout: u64,
        servers: String,
    },
    #[error(
        "zone {zone} serial {serial} is published, but {mismatch}; was the zone edited by \
         hand, or is another tool writing it?"
    )]
    Mismatch {
        zone: DnsName,
        serial: u32,
        mismatch: String,
    },
    #[error("zone {zone} serial {serial} is published, but {problems}")]
    Invalid {
        zone: DnsName,
        serial: u32,
        problems: String,
    },
}

fn server_report(wait: &ServerWait) -> ServerReport {
    ServerReport {
        server: wait.server.to_string(),
        serial: wait.served.serial(),
        seconds: wait.caught_up.map(|d| d.as_secs_f64()),
        lagging: wait.caught_up.is_none().then(|| wait.served.to_string()),
    }
}
