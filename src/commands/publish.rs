//! `fleetcert publish`: collate token documents, publish the signing zone, wait for every
//! authoritative server, print the JSON report.
//!
//! The steps, in order: validate every document (before anything is locked or written); take
//! the lock; apply the documents to the ledger; render; ask every server for its serial; when
//! the zone differs from the file, pick a serial above the file's and the served ones, parse
//! the rendered zone back, check it, replace the file, reload (restoring the old zone when that
//! fails); when it does not differ but no server serves the file's serial, reload only; save
//! the ledger; then wait until every server serves the serial and check the records once.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::cli::PublishArgs;
use crate::config::ZoneConfig;
use crate::dns::{self, Propagation, ServerWait};
use crate::error::{Error, Outcome};
use crate::store;
use crate::zone::{
    self, CheckZone, Ledger, StagedZone, TxtRecord, ZoneData, ZoneError, ZoneLock, ZoneTemplate,
};

/// How long the serial check before rendering waits for each server (at most `timeout`): a
/// server that does not answer in this time is not in the way of a new serial, and the wait
/// will name it.
const SERVED_SERIAL_LIMIT: Duration = Duration::from_secs(2);

/// The JSON report on stdout.
#[derive(Debug, Serialize)]
struct Report {
    /// Whether the zone changed (a new serial, a new file, a reload).
    changed: bool,
    dry_run: bool,
    zone: String,
    serial: u32,
    /// TXT records in the zone.
    records: usize,
    /// Hosts with records in the zone.
    hosts: usize,
    /// Hosts whose records expired in this run (`record_lifetime`).
    expired: Vec<String>,
    servers: Vec<ServerReport>,
    /// The server whose records were checked one by one.
    records_checked_on: Option<String>,
    /// Seconds from start to verified on every server.
    seconds: f64,
}

#[derive(Debug, Serialize)]
struct ServerReport {
    server: String,
    /// The serial it serves; `null` when it did not answer authoritatively.
    serial: Option<u32>,
    /// Seconds from the start of the wait (just after the reload) until it served the new
    /// serial; `null`: it did not.
    seconds: Option<f64>,
    /// Why it is behind, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    lagging: Option<String>,
}

/// What the locked part of a publish decided and did.
struct Published {
    changed: bool,
    serial: u32,
    records: BTreeSet<TxtRecord>,
    hosts: usize,
    expired: Vec<String>,
    /// When the servers were first asked (the serial check before deciding): `timeout` counts
    /// from there, so a server that does not answer costs `timeout`, not more.
    first_asked: Instant,
}

pub(crate) async fn run(args: PublishArgs) -> Result<Outcome, Error> {
    let started = Instant::now();
    let config = ZoneConfig::load(&args.config)?;
    let submissions = zone::read_tokens(&args.tokens, &config)?;
    let template = ZoneTemplate::load(&config)?;
    tracing::debug!(
        hosts = submissions.len(),
        ms = started.elapsed().as_millis(),
        "documents validated"
    );
    if args.dry_run {
        return dry_run(&config, &submissions, &template, started).await;
    }
    let apex = dns::zone_name(&config.zone).map_err(|err| servers_error(&config, &err))?;
    let servers = match &config.servers {
        Some(servers) => servers.clone(),
        None => dns::discover_servers(&config.zone, config.resolver, &config.soa.mname)
            .await
            .map_err(|err| servers_error(&config, &err))?,
    };

    let _lock = ZoneLock::acquire(&config.zone_file, config.lock_timeout).await?;
    let published = publish_locked(&config, &submissions, &template, &servers, &apex).await?;
    let waited = Instant::now();
    let budget = config
        .timeout
        .saturating_sub(published.first_asked.elapsed());
    let mut expected: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for record in &published.records {
        expected
            .entry(&record.name)
            .or_default()
            .insert(&record.value);
    }
    let Propagation { waits, checked } =
        dns::wait_and_check(&servers, &apex, published.serial, budget, &expected).await;
    let checked_on = checked.as_ref().map(|(server, _)| *server);
    let mismatch = checked.and_then(|(_, result)| result.err());
    tracing::debug!(
        ms = waited.elapsed().as_millis(),
        "wait and record check done"
    );

    let report = Report {
        changed: published.changed,
        dry_run: false,
        zone: config.zone.clone(),
        serial: published.serial,
        records: published.records.len(),
        hosts: published.hosts,
        expired: published.expired,
        servers: waits.iter().map(server_report).collect(),
        records_checked_on: checked_on.map(|server| server.to_string()),
        seconds: started.elapsed().as_secs_f64(),
    };
    super::print_json(&report)?;

    let lagging: Vec<String> = waits
        .iter()
        .filter(|wait| wait.caught_up.is_none())
        .map(|wait| format!("{} {}", wait.server, wait.served))
        .collect();
    if !lagging.is_empty() {
        eprintln!(
            "fleetcert: error: zone {} serial {} is published but not served everywhere after {}s: \
             {}; check NOTIFY and transfers to those servers, or raise `timeout`",
            config.zone,
            published.serial,
            config.timeout.as_secs(),
            lagging.join("; ")
        );
        return Ok(Outcome::PropagationTimeout);
    }
    if let Some(mismatch) = mismatch {
        eprintln!(
            "fleetcert: error: zone {} serial {} is published, but {mismatch}; \
             was the zone file edited by hand, or is another tool writing it?",
            config.zone, published.serial
        );
        return Ok(Outcome::PropagationTimeout);
    }
    Ok(Outcome::Success)
}

/// Everything between taking the lock and waiting: ledger, render, replace, reload.
async fn publish_locked(
    config: &ZoneConfig,
    submissions: &[zone::Submission],
    template: &ZoneTemplate,
    servers: &[SocketAddr],
    apex: &hickory_proto::rr::Name,
) -> Result<Published, Error> {
    let Draft {
        old,
        before,
        ledger,
        expired,
        file_serial,
        now,
    } = Draft::new(config, submissions)?;
    for host in &expired {
        tracing::info!(host, "records expired: not seen for record_lifetime");
    }
    let records = ledger.records();
    let data = ZoneData::new(config, &records);
    let unchanged = is_unchanged(template, &data, file_serial, old.as_deref())?;
    let first_asked = Instant::now();
    let served = dns::current_serials(servers, apex, SERVED_SERIAL_LIMIT.min(config.timeout)).await;
    let mut reloaded = false;
    let serial = match file_serial {
        Some(serial) if unchanged => {
            // The file is current, but it may never have been loaded: a publish killed between
            // replacing the file and reloading, or a reload command that returned success
            // without loading. Then no server serves the file's serial and only a reload helps;
            // waiting would time out on every later run too.
            if nobody_loaded(&served, serial) {
                tracing::info!(
                    serial,
                    "the zone file is current, but no server serves it: reloading"
                );
                zone::reload(&config.reload).await?;
                reloaded = true;
            } else {
                tracing::info!(serial, "records unchanged: no new serial, no reload");
            }
            serial
        }
        _ => {
            let served_serials = served.iter().filter_map(|(_, served)| served.serial());
            let serial =
                zone::next_serial(file_serial.into_iter().chain(served_serials), now_u32(now));
            let text = template.render(&data, serial)?;
            zone::check_rendered(&text, &config.zone, serial, &records, template.origin())?;
            let staged = StagedZone::write(&config.zone_file, text.as_bytes())?;
            staged.check(&config.zone, check_policy(config)).await?;
            zone::replace_and_reload(staged, old.as_deref(), &config.reload).await?;
            tracing::info!(
                serial,
                records = records.len(),
                "zone replaced and reloaded"
            );
            serial
        }
    };
    let published = Published {
        changed: !unchanged || reloaded,
        serial,
        records: records.into_iter().cloned().collect(),
        hosts: ledger.host_count(),
        expired,
        first_asked,
    };
    if ledger != before {
        ledger.save(&Ledger::path_for(&config.zone_file))?;
    }
    Ok(published)
}

/// `--dry-run`: validate, render and check as a publish would; write, reload and ask nothing.
async fn dry_run(
    config: &ZoneConfig,
    submissions: &[zone::Submission],
    template: &ZoneTemplate,
    started: Instant,
) -> Result<Outcome, Error> {
    let Draft {
        old,
        ledger,
        expired,
        file_serial,
        now,
        ..
    } = Draft::new(config, submissions)?;
    let records = ledger.records();
    let data = ZoneData::new(config, &records);
    let unchanged = is_unchanged(template, &data, file_serial, old.as_deref())?;
    let serial = match file_serial {
        Some(serial) if unchanged => serial,
        _ => zone::next_serial(file_serial, now_u32(now)),
    };
    if !unchanged {
        let text = template.render(&data, serial)?;
        zone::check_rendered(&text, &config.zone, serial, &records, template.origin())?;
        let staged = StagedZone::write(&config.zone_file, text.as_bytes())?;
        staged.check(&config.zone, check_policy(config)).await?;
    }
    let report = Report {
        changed: !unchanged,
        dry_run: true,
        zone: config.zone.clone(),
        serial,
        records: records.len(),
        hosts: ledger.host_count(),
        expired,
        servers: Vec::new(),
        records_checked_on: None,
        seconds: started.elapsed().as_secs_f64(),
    };
    super::print_json(&report)?;
    Ok(Outcome::Success)
}

/// The zone file and ledger as they are, and the ledger with this publish applied.
struct Draft {
    old: Option<Vec<u8>>,
    before: Ledger,
    ledger: Ledger,
    /// Hosts whose records outlived `record_lifetime` and were dropped.
    expired: Vec<String>,
    file_serial: Option<u32>,
    now: u64,
}

impl Draft {
    fn new(config: &ZoneConfig, submissions: &[zone::Submission]) -> Result<Self, Error> {
        let old = store::read_optional(&config.zone_file)?;
        let before = Ledger::load(&Ledger::path_for(&config.zone_file), &config.zone)?;
        let mut ledger = before.clone();
        let now = unix_now();
        let expired = ledger.apply(submissions, now, config.record_lifetime);
        if let Some((name, count)) = ledger.crowded_name(&before, config.max_values_per_name) {
            return Err(ZoneError::Crowded {
                name,
                count,
                max: config.max_values_per_name,
            }
            .into());
        }
        let file_serial = old
            .as_deref()
            .and_then(|bytes| std::str::from_utf8(bytes).ok())
            .and_then(zone::serial_in_zone_text);
        Ok(Self {
            old,
            before,
            ledger,
            expired,
            file_serial,
            now,
        })
    }
}

/// Unchanged when rendering with the file's serial gives the file byte for byte: that also
/// notices a changed template or config, and a zone file edited or lost.
fn is_unchanged(
    template: &ZoneTemplate,
    data: &ZoneData,
    file_serial: Option<u32>,
    old: Option<&[u8]>,
) -> Result<bool, Error> {
    Ok(match (file_serial, old) {
        (Some(serial), Some(old)) => template.render(data, serial)?.as_bytes() == old,
        _ => false,
    })
}

/// Whether some server answered with a serial older than the file's and none serves the file's:
/// the file was never loaded. Servers that do not answer prove nothing either way (a stopped
/// secondary is the wait's business, not a reason to reload).
fn nobody_loaded(served: &[(SocketAddr, dns::Served)], file_serial: u32) -> bool {
    let serials: Vec<u32> = served.iter().filter_map(|(_, s)| s.serial()).collect();
    !serials.is_empty() && !serials.iter().any(|&s| zone::has_reached(s, file_serial))
}

fn server_report(wait: &ServerWait) -> ServerReport {
    ServerReport {
        server: wait.server.to_string(),
        serial: wait.served.serial(),
        seconds: wait.caught_up.map(|d| d.as_secs_f64()),
        lagging: wait.caught_up.is_none().then(|| wait.served.to_string()),
    }
}

fn check_policy(config: &ZoneConfig) -> CheckZone {
    if config.check_zone {
        CheckZone::WhenInstalled
    } else {
        CheckZone::Off
    }
}

fn servers_error(config: &ZoneConfig, err: &dyn std::fmt::Display) -> Error {
    ZoneError::Servers {
        zone: config.zone.clone(),
        problem: err.to_string(),
    }
    .into()
}

/// Unix seconds now; a clock before 1970 counts as 0 (the serial then just increments).
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// Serial arithmetic is modulo 2^32 (RFC 1982), so the clock's seconds are too.
fn now_u32(now: u64) -> u32 {
    u32::try_from(now % (1 << 32)).unwrap_or(0)
}
