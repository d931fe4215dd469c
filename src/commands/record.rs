//! What every command records in the metrics textfile at its end, pass or fail
//! (docs/monitoring.md): its own run, every certificate as found on disk afterwards (the way
//! `status` reads them), and what the command alone knows — a publication, probe results.
//!
//! The config is read again after the command, whatever became of it: a command that failed
//! as a whole still records its exit code, and one whose config cannot be read records
//! nothing (it does not know where to). A dry run writes no file, this one included. A file
//! that cannot be written costs a warning, never the command's result: the report is out
//! already, and the stale timestamps say it to the alert rules.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use time::OffsetDateTime;
use tracing::{debug, warn};

use super::installed::Installed;
use crate::acme::StateDir;
use crate::cert::RenewalDecision;
use crate::cli::Command;
use crate::config::{HostConfig, ZoneConfig};
use crate::error::{Error, Outcome};
use crate::metrics::{
    self, CertFacts, CommandRun, InstalledFacts, ProbeFacts, Probes, PublishFacts, Scope,
    ServerFacts, Update,
};
use crate::zone::Publication;

/// What a command learned that is not on disk afterwards.
#[derive(Debug, Default)]
pub(crate) struct Observed {
    /// `check`: the probes of every certificate (one with no `probe:` has none).
    probes: Option<BTreeMap<String, Vec<ProbeFacts>>>,
    /// `publish`: the publication, when there was one.
    publication: Option<PublishFacts>,
}

impl Observed {
    /// Records a publication (called by `publish`).
    pub(crate) fn published(&mut self, publication: &Publication) {
        let servers = publication
            .propagation
            .iter()
            .flat_map(|propagation| &propagation.waits)
            .map(|wait| ServerFacts {
                server: wait.server.to_string(),
                seconds: wait.caught_up.map(|since| since.as_secs_f64()),
            })
            .collect();
        self.publication = Some(PublishFacts {
            serial: publication.written.serial,
            records: publication.records,
            hosts: publication.hosts,
            servers,
        });
    }

    /// Records the probes of every certificate (called by `check`).
    pub(crate) fn probed(&mut self, probes: BTreeMap<String, Vec<ProbeFacts>>) {
        self.probes = Some(probes);
    }
}

/// Which config a command reads.
#[derive(Debug)]
enum ConfigFile {
    Host(PathBuf),
    Zone(PathBuf),
}

/// One command's run, from its start.
#[derive(Debug)]
pub(crate) struct Record {
    command: &'static str,
    config: ConfigFile,
    started: Instant,
    started_at: OffsetDateTime,
}

impl Record {
    /// Starts the record of `command`; `None` for a dry run, which writes no file.
    pub(crate) fn start(command: &Command) -> Option<Self> {
        let (name, config) = match command {
            Command::Request(args) if !args.dry_run => {
                ("request", ConfigFile::Host(args.config.clone()))
            }
            Command::Finalize(args) if !args.dry_run => {
                ("finalize", ConfigFile::Host(args.config.clone()))
            }
            Command::Renew(args) if !args.dry_run => {
                ("renew", ConfigFile::Host(args.config.clone()))
            }
            Command::Publish(args) if !args.dry_run => {
                ("publish", ConfigFile::Zone(args.config.clone()))
            }
            Command::Hiera(args) if !args.dry_run => {
                ("hiera", ConfigFile::Host(args.config.clone()))
            }
            Command::Status(args) => ("status", ConfigFile::Host(args.config.clone())),
            Command::Check(args) => ("check", ConfigFile::Host(args.config.clone())),
            Command::Request(_)
            | Command::Finalize(_)
            | Command::Renew(_)
            | Command::Publish(_)
            | Command::Hiera(_) => {
                return None;
            }
        };
        Some(Self {
            command: name,
            config,
            started: Instant::now(),
            started_at: OffsetDateTime::now_utc(),
        })
    }

    /// Writes the metrics file, when the config asks for one.
    pub(crate) async fn finish(self, result: &Result<Outcome, Error>, observed: Observed) {
        let run = CommandRun {
            command: self.command,
            started: unix_seconds(self.started_at),
            duration: self.started.elapsed(),
            exit_code: match result {
                Ok(outcome) => outcome.code(),
                Err(err) => err.code(),
            },
        };
        // Where to write, whose series, and what this run knows beyond its own row.
        let target = match &self.config {
            ConfigFile::Host(path) => HostConfig::load(path).ok().map(|config| {
                let dir = config.metrics.clone().map(|m| m.textfile_dir);
                let certs = dir.as_ref().map(|_| cert_facts(&config, observed.probes));
                (dir, Scope::Host(config.host.to_string()), certs, None)
            }),
            ConfigFile::Zone(path) => ZoneConfig::load(path).ok().map(|config| {
                let dir = config.metrics.clone().map(|m| m.textfile_dir);
                let scope = Scope::Zone(config.zone.to_string());
                (dir, scope, None, observed.publication)
            }),
        };
        let Some((dir, scope, certs, publication)) = target else {
            debug!("no metrics: the config cannot be read");
            return;
        };
        let Some(dir) = dir else {
            return;
        };
        let update = Update {
            scope,
            run,
            certs,
            publication,
        };
        if let Err(err) = metrics::write(&dir, &update).await {
            warn!(error = %err, "cannot write the metrics textfile; the command's result stands");
        }
    }
}

/// Every configured certificate as found on disk now.
fn cert_facts(
    config: &HostConfig,
    mut probes: Option<BTreeMap<String, Vec<ProbeFacts>>>,
) -> Vec<CertFacts> {
    let state = StateDir::open(&config.state_dir, false)
        .inspect_err(|err| debug!(error = %err, "pending orders unknown"))
        .ok();
    let now = OffsetDateTime::now_utc();
    config
        .certs
        .iter()
        .map(|(cert, spec)| {
            let installed = Installed::read(config, cert, spec);
            let due = match installed.decide(config, spec, now) {
                RenewalDecision::Due(reason) => Some(reason.label()),
                RenewalDecision::Valid => None,
            };
            let facts = installed.inspection().map(|leaf| InstalledFacts {
                expiry: unix_seconds(leaf.not_after),
                issued: unix_seconds(leaf.not_before),
                renewal_window: leaf
                    .renewal_threshold(config.renew.before_days)
                    .as_seconds_f64(),
                name: spec
                    .names
                    .first()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                key_type: leaf
                    .key_type
                    .map_or_else(|| "other".to_owned(), |key| key.to_string()),
                serial: serial_hex(&leaf.serial),
            });
            let probes = match probes.as_mut() {
                Some(probed) => Probes::Probed(probed.remove(cert).unwrap_or_default()),
                None => Probes::Kept(spec.probe.clone()),
            };
            CertFacts {
                cert: cert.clone(),
                installed: facts,
                due,
                pending: state.as_ref().map(|state| state.has_order(cert)),
                probes,
            }
        })
        .collect()
}

/// Seconds since the epoch, with the fraction.
pub(crate) fn unix_seconds(at: OffsetDateTime) -> f64 {
    #[allow(clippy::cast_precision_loss)] // nanoseconds since 1970 fit a double to ~0.1 µs
    let nanos = at.unix_timestamp_nanos() as f64;
    nanos / 1e9
}

/// A DER serial as upper-case hex without leading zeros, as openssl and keytool compare it.
pub(crate) fn serial_hex(der: &[u8]) -> String {
    let hex: String = der.iter().map(|byte| format!("{byte:02X}")).collect();
    let trimmed = hex.trim_start_matches('0');
    if trimmed.is_empty() {
        "0".to_owned()
    } else {
        trimmed.to_owned()
    }
}
