//! The publish flow every publisher shares, and the seam a publisher fills.
//!
//! In order: find the servers; take the lock; apply the submissions to the ledger and refuse
//! a name the servers would not load; ask every server for its serial; save the ledger
//! (before the zone changes: a full disk must not leave served records that the next publish
//! would drop); let the [`ZoneWriter`] change the zone (when it fails, the old ledger goes back
//! with the old zone); wait until every server serves the writer's serial and check the
//! records once; in a signed zone, check every server's signatures (keys, SOA, records). A dry
//! run does the same reads and renders,
//! takes no lock, asks no server and writes nothing.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::ledger::values;
use super::{Ledger, ZoneError};
use crate::config::ZoneConfig;
use crate::dns::{self, DnsName, InvalidServer, Propagation, Served, SetCheck};
use crate::lock::Lock;
use crate::store::Dir;
use crate::timestamp::unix_now;
use crate::token::{ChallengeRecords, Submission, TxtRecord};

/// How long the serial check before writing waits for each server (at most `timeout`): a
/// server that does not answer in this time is not in the way of a new serial, and the wait
/// will name it.
const SERVED_SERIAL_LIMIT: Duration = Duration::from_secs(2);

/// Where a publisher keeps its ledger and its lock.
#[derive(Debug)]
pub(crate) struct Home {
    pub(crate) dir: Dir,
    pub(crate) ledger: String,
    pub(crate) lock: String,
}

/// What a writer did to the zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Written {
    /// Whether the zone changed (or, in a dry run, would change).
    pub(crate) changed: bool,
    /// The serial every server must serve for the records to be visible.
    pub(crate) serial: u32,
}

/// One way of changing the signing zone.
pub(crate) trait ZoneWriter {
    /// Where the ledger and the lock live. `None` only in a dry run, when that directory does
    /// not exist yet (nothing was ever published from here, and a dry run creates nothing):
    /// the ledger then reads as empty.
    fn home(&self) -> Option<&Home>;

    /// Whether this writer only says what it would do (`--dry-run`): chosen once, when it is
    /// opened. A dry run reads and renders, takes no lock, asks no server, writes nothing.
    fn dry_run(&self) -> bool;

    /// The zone's primary, to ask first among the servers found from NS records.
    fn primary(&self) -> Primary<'_>;

    /// How the served TXT sets are checked after the wait: a writer that leaves other
    /// values at its names in place says [`SetCheck::Contains`].
    fn set_check(&self) -> SetCheck {
        SetCheck::Exact
    }

    /// Makes the zone hold exactly `records` among the challenge records (nothing else it
    /// holds changes); `served` is what each server serves now. In a dry run, says what it
    /// would do and changes nothing.
    async fn write(
        &mut self,
        records: &BTreeSet<&TxtRecord>,
        served: &[(SocketAddr, Served)],
    ) -> Result<Written, ZoneError>;
}

/// How a writer knows the zone's primary.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Primary<'w> {
    /// By name: the SOA's MNAME the file publisher renders.
    Named(&'w DnsName),
    /// By the address it takes changes at (`update.server`): a primary that is not among
    /// the servers found is not asked first, whatever its name.
    At(SocketAddr),
}

/// What a publish decided and did.
#[derive(Debug)]
pub(crate) struct Publication {
    /// It was a dry run: nothing was locked, written or waited for.
    pub(crate) dry_run: bool,
    pub(crate) written: Written,
    pub(crate) records: usize,
    /// Hosts with records in the zone.
    pub(crate) hosts: usize,
    /// Hosts whose records expired in this run (`record_lifetime`).
    pub(crate) expired: Vec<DnsName>,
    /// The wait on every server; `None` in a dry run.
    pub(crate) propagation: Option<Propagation>,
    /// A signed zone's signatures on every server, once all of them served the serial;
    /// `None` for an unsigned zone, a dry run, or when some server lagged.
    pub(crate) signatures: Option<Vec<Result<(), InvalidServer>>>,
}

/// Publishes `submissions` through `writer` (see the module doc).
pub(crate) async fn publish<W: ZoneWriter>(
    config: &ZoneConfig,
    submissions: &[Submission],
    writer: &mut W,
) -> Result<Publication, ZoneError> {
    let dry_run = writer.dry_run();
    let servers = if dry_run {
        Vec::new()
    } else {
        find_servers(config, writer.primary()).await?
    };
    let home = writer.home();
    debug_assert!(dry_run || home.is_some(), "only a dry run may have no home");
    let lock = match home {
        Some(home) if !dry_run => {
            Some(Lock::acquire(&home.dir, &home.lock, config.lock_timeout).await?)
        }
        _ => None,
    };
    let before = match home {
        Some(home) => Ledger::load(&home.dir, &home.ledger, &config.policy)?,
        None => Ledger::default(),
    };
    let (ledger, expired) = apply(config, &before, submissions)?;
    // `timeout` counts from the first question: a server that does not answer costs
    // `timeout`, not more.
    let first_asked = Instant::now();
    let served = if dry_run {
        Vec::new()
    } else {
        dns::current_serials(
            &servers,
            &config.zone,
            SERVED_SERIAL_LIMIT.min(config.timeout),
        )
        .await
    };
    let saved = !dry_run && ledger != before;
    if saved && let Some(home) = home {
        ledger.save(&home.dir, &home.ledger)?;
        crash_point!("publish.ledger_saved");
    }
    let records = ledger.records();
    let written = match writer.write(&records, &served).await {
        Ok(written) => written,
        Err(err) => {
            // The writer put the old zone back; the ledger goes back with it, so a failed
            // publish changes nothing.
            if saved
                && let Some(home) = writer.home()
                && let Err(restore) = before.save(&home.dir, &home.ledger)
            {
                tracing::warn!(error = %restore, "cannot put the previous ledger back");
            }
            return Err(err);
        }
    };
    let propagation = if dry_run {
        None
    } else {
        let budget = config.timeout.saturating_sub(first_asked.elapsed());
        let expected = values(records.iter().copied());
        let sets = writer.set_check();
        Some(
            dns::wait_and_check(
                &servers,
                &config.zone,
                written.serial,
                budget,
                &expected,
                sets,
            )
            .await,
        )
    };
    let signatures = signatures(config, &servers, &records, propagation.as_ref()).await;
    drop(lock);
    Ok(Publication {
        dry_run,
        written,
        records: records.len(),
        hosts: ledger.host_count(),
        expired,
        propagation,
        signatures,
    })
}

/// Every server's signatures, when the zone is signed and every server served the serial.
async fn signatures(
    config: &ZoneConfig,
    servers: &[SocketAddr],
    records: &BTreeSet<&TxtRecord>,
    propagation: Option<&Propagation>,
) -> Option<Vec<Result<(), InvalidServer>>> {
    if !propagation?
        .waits
        .iter()
        .all(|wait| wait.caught_up.is_some())
    {
        return None;
    }
    let names: BTreeSet<&DnsName> = records.iter().map(|record| &record.name).collect();
    let names: Vec<&DnsName> = names.into_iter().collect();
    dns::check_servers(servers, &config.zone, &names, config.resolver).await
}

/// The ledger with `submissions` applied and expired hosts dropped; refused when a name would
/// hold more values than the servers load.
fn apply(
    config: &ZoneConfig,
    before: &Ledger,
    submissions: &[Submission],
) -> Result<(Ledger, Vec<DnsName>), ZoneError> {
    let mut ledger = before.clone();
    let expired = ledger.apply(submissions, unix_now(), config.record_lifetime);
    for host in &expired {
        tracing::info!(%host, "records expired: not seen for record_lifetime");
    }
    if let Some((name, count)) = ledger.crowded_name(before, config.max_values_per_name) {
        return Err(ZoneError::Crowded {
            name: name.fqdn(),
            count,
            max: config.max_values_per_name,
            advice: match config.policy.records {
                ChallengeRecords::Shared => {
                    "use challenge_records: per-name, publish fewer hosts at once, or raise both \
                     limits together"
                }
                ChallengeRecords::PerName => {
                    "publish fewer orders for that name at once, or raise both limits together"
                }
            },
        });
    }
    Ok((ledger, expired))
}

/// The servers to wait for: `servers:`, or the zone's NS set through the resolver, the
/// primary first (by its address when the writer knows it, else by its name).
async fn find_servers(
    config: &ZoneConfig,
    primary: Primary<'_>,
) -> Result<Vec<SocketAddr>, ZoneError> {
    if let Some(servers) = &config.servers {
        return Ok(servers.clone());
    }
    let name = match primary {
        Primary::Named(name) => Some(name),
        Primary::At(_) => None,
    };
    let mut servers = dns::discover_servers(&config.zone, config.resolver, name)
        .await
        .map_err(|source| ZoneError::Servers {
            zone: config.zone.to_string(),
            source,
        })?;
    if let Primary::At(address) = primary {
        first(&mut servers, address);
    }
    Ok(servers)
}

/// Moves `server` to the front when it is in `servers`; the others keep their order.
fn first(servers: &mut [SocketAddr], server: SocketAddr) {
    if let Some(index) = servers.iter().position(|s| *s == server) {
        servers[..=index].rotate_right(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_primary_goes_first_and_the_others_keep_their_order() {
        let addr = |text: &str| text.parse::<SocketAddr>().expect("address");
        let found = [
            addr("192.0.2.2:53"),
            addr("192.0.2.3:53"),
            addr("192.0.2.1:53"),
        ];
        let mut servers = found.to_vec();
        first(&mut servers, addr("192.0.2.1:53"));
        assert_eq!(servers, [found[2], found[0], found[1]]);
        // Another port is another server: a primary taking updates on 5300 is not the
        // server the NS records name on 53.
        let mut servers = found.to_vec();
        first(&mut servers, addr("192.0.2.1:5300"));
        assert_eq!(servers, found);
    }
}
