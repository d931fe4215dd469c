//! What every command records in the metrics textfile at its end, pass or fail
//! (docs/monitoring.md): its own run, every certificate as found on disk afterwards (the way
//! `status` reads them), and what the command alone knows — a publication, probe results,
//! the renewal moments `request` chose with the CA's window.
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
use time::format_description::well_known::Rfc3339;
use tracing::{debug, warn};

use super::installed::Installed;
use crate::cert::{Inspection, RenewalDecision, RuleKind, serial_hex};
use crate::cli::Command;
use crate::config::{CertSpec, HostConfig, ZoneConfig};
use crate::error::{Error, Outcome};
use crate::metrics::{
    self, CertFacts, CommandRun, InstalledFacts, Previous, ProbeFacts, Probes, PublishFacts, Scope,
    ServerFacts, Update,
};
use crate::state::StateDir;
use crate::token::TokenDocument;
use crate::zone::Publication;

/// What a command learned that is not on disk afterwards.
#[derive(Debug, Default)]
pub(crate) struct Observed {
    /// `check`: the probes of every certificate (one with no `probe:` has none).
    probes: Option<BTreeMap<String, Vec<ProbeFacts>>>,
    /// `publish`: the publication, when there was one.
    publication: Option<PublishFacts>,
    /// `request`, `renew`: when each certificate on disk renews, as the run decided with the
    /// CA's window (the token document's `renew_at`), by the expiry of the certificate it
    /// decided for (`renew` may have installed another one since).
    renewals: Option<BTreeMap<String, Renewal>>,
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

    /// Records when each certificate renews (called by `request` and `renew` with their
    /// token document): only they hear the CA's window, every other command keeps it.
    pub(crate) fn requested(&mut self, document: &TokenDocument) {
        let parse = |text: Option<&str>| OffsetDateTime::parse(text?, &Rfc3339).ok();
        let renewals = document.certs.iter().filter_map(|cert| {
            let renewal = Renewal {
                of: parse(cert.not_after.as_deref())?,
                serial: cert.serial.clone()?,
                at: parse(cert.renew_at.as_deref())?,
                by: cert.renew_rule?,
            };
            Some((cert.name.clone(), renewal))
        });
        self.renewals = Some(renewals.collect());
    }
}

/// When a certificate renews, as `request` decided it.
#[derive(Debug, Clone)]
struct Renewal {
    /// The expiry and serial of the certificate it decided for: `renew` may install another
    /// before the metrics are written, and one issued in the same second by a CA of fixed
    /// validity has the same expiry.
    of: OffsetDateTime,
    serial: String,
    at: OffsetDateTime,
    /// The rule that set `at`.
    by: RuleKind,
}

impl Renewal {
    /// Whether it was decided for the leaf `facts` describes.
    fn is_of(&self, facts: &InstalledFacts) -> bool {
        unix_seconds(self.of) == facts.expiry && self.serial == facts.serial
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
            Command::Install(args) if !args.dry_run => {
                ("install", ConfigFile::Host(args.config.clone()))
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
            | Command::Install(_)
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
        let written = match &self.config {
            ConfigFile::Host(path) => match HostConfig::load(path) {
                Ok(config) => {
                    let Some(metrics) = &config.metrics else {
                        return;
                    };
                    let scope = Scope::Host(config.host.to_string());
                    metrics::write(&metrics.textfile_dir, |previous| Update {
                        certs: Some(cert_facts(&config, &scope, observed, previous)),
                        scope,
                        run,
                        publication: None,
                    })
                    .await
                }
                Err(_) => {
                    debug!("no metrics: the config cannot be read");
                    return;
                }
            },
            ConfigFile::Zone(path) => match ZoneConfig::load(path) {
                Ok(config) => {
                    let Some(metrics) = &config.metrics else {
                        return;
                    };
                    metrics::write(&metrics.textfile_dir, |_| Update {
                        scope: Scope::Zone(config.zone.to_string()),
                        run,
                        certs: None,
                        publication: observed.publication,
                    })
                    .await
                }
                Err(_) => {
                    debug!("no metrics: the config cannot be read");
                    return;
                }
            },
        };
        if let Err(err) = written {
            warn!(error = %err, "cannot write the metrics textfile; the command's result stands");
        }
    }
}

/// Every configured certificate as found on disk now; `previous` is the file before this
/// run, for the renewal moments only `request` hears.
fn cert_facts(
    config: &HostConfig,
    scope: &Scope,
    observed: Observed,
    previous: &Previous,
) -> Vec<CertFacts> {
    let Observed {
        mut probes,
        renewals,
        ..
    } = observed;
    let state = StateDir::open(&config.state_dir, false)
        .inspect_err(|err| debug!(error = %err, "pending orders unknown"))
        .ok();
    let now = OffsetDateTime::now_utc();
    config
        .certs
        .iter()
        .map(|(cert, spec)| {
            let installed = Installed::read(config, cert, spec);
            let facts = installed.inspection().map(|leaf| {
                let mut facts = installed_facts(config, spec, leaf);
                if let Some(issued) = state
                    .as_ref()
                    .and_then(|state| installed.issued_by(config, state, cert))
                {
                    facts.ca = issued.directory;
                    facts.fallback = issued.fallback.is_some();
                }
                // When it renews: as this run decided with the CA's window (request, renew),
                // else as the file says the last one did for this same leaf, else by the
                // days rule (as installed_facts has it).
                let decided = renewals
                    .as_ref()
                    .and_then(|renewals| renewals.get(cert))
                    .filter(|renewal| renewal.is_of(&facts))
                    .map(|renewal| (unix_seconds(renewal.at), renewal.by));
                let kept = || {
                    let (at, rule) = previous.renewal(scope, cert, &facts)?;
                    Some((at, RuleKind::from_label(rule)?))
                };
                if let Some((at, by)) = decided.or_else(kept) {
                    facts.renews = at;
                    facts.renews_by = by.label();
                }
                facts
            });
            let probes = match probes.as_mut() {
                Some(probed) => Probes::Probed(probed.remove(cert).unwrap_or_default()),
                None => Probes::Kept(spec.probe.clone()),
            };
            CertFacts {
                cert: cert.clone(),
                due: due(config, spec, &installed, facts.as_ref(), now),
                installed: facts,
                pending: state.as_ref().map(|state| state.has_order(cert)),
                reload_pending: state.as_ref().map(|state| state.has_reload(cert)),
                probes,
            }
        })
        .collect()
}

/// The installed leaf's facts, renewing by the days rule.
fn installed_facts(config: &HostConfig, spec: &CertSpec, leaf: &Inspection) -> InstalledFacts {
    let before_days = config.renew.before_days;
    InstalledFacts {
        expiry: unix_seconds(leaf.not_after),
        issued: unix_seconds(leaf.not_before),
        renewal_window: leaf.renewal_threshold(before_days).as_seconds_f64(),
        renews: unix_seconds(leaf.schedule(before_days, None).at),
        renews_by: RuleKind::Days.label(),
        name: spec
            .names
            .first()
            .map(ToString::to_string)
            .unwrap_or_default(),
        key_type: leaf
            .key_type
            .map_or_else(|| "other".to_owned(), |key| key.to_string()),
        serial: serial_hex(&leaf.serial),
        // Filled in from the state directory by the caller (`Installed::issued_by`).
        ca: String::new(),
        fallback: false,
    }
}

/// Why the certificate is due, when it is: what renews at once, from the files; otherwise
/// whether its renewal moment (`facts.renews`, the CA's window included) has come, by the
/// rule stored with the moment (`facts.renews_by`).
fn due(
    config: &HostConfig,
    spec: &CertSpec,
    installed: &Installed<'_>,
    facts: Option<&InstalledFacts>,
    now: OffsetDateTime,
) -> Option<&'static str> {
    let decision = installed.decide(config, spec, now);
    if let RenewalDecision::Due(reason) = &decision
        && reason.is_immediate()
    {
        return Some(reason.label());
    }
    match facts {
        Some(facts) => (unix_seconds(now) >= facts.renews).then_some(facts.renews_by),
        // Not reached: a reason that waits for its moment has a leaf.
        None => match decision {
            RenewalDecision::Due(reason) => Some(reason.label()),
            RenewalDecision::Valid => None,
        },
    }
}

/// Seconds since the epoch, with the fraction.
pub(crate) fn unix_seconds(at: OffsetDateTime) -> f64 {
    #[allow(clippy::cast_precision_loss)] // nanoseconds since 1970 fit a double to ~0.1 µs
    let nanos = at.unix_timestamp_nanos() as f64;
    nanos / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::{DueReason, RenewalWindow};
    use time::Duration as Span;

    #[test]
    fn a_stored_rule_reads_back_as_the_due_reason_of_its_moment() {
        let at = time::macros::datetime!(2026-03-01 0:00 UTC);
        let window = RenewalWindow {
            start: at,
            end: at + Span::days(1),
        };
        let reasons = [
            (
                RuleKind::Days,
                DueReason::Expiring {
                    left: Span::days(25),
                    threshold: Span::days(30),
                    at,
                },
            ),
            (RuleKind::Ari, DueReason::AriWindow { window, at }),
            (
                RuleKind::AriSafetyNet,
                DueReason::AriSafetyNet {
                    window,
                    left: Span::days(10),
                },
            ),
        ];
        for (kind, reason) in reasons {
            assert_eq!(kind.label(), reason.label());
            assert_eq!(RuleKind::from_label(kind.label()), Some(kind));
        }
        assert_eq!(RuleKind::from_label("none"), None);
    }

    #[test]
    fn a_renewal_decided_for_one_leaf_is_not_another_of_the_same_second() {
        let expiry = time::macros::datetime!(2026-03-01 0:00 UTC);
        let renewal = Renewal {
            of: expiry,
            serial: "AB".to_owned(),
            at: expiry - Span::days(25),
            by: RuleKind::Days,
        };
        let mut facts = InstalledFacts {
            expiry: unix_seconds(expiry),
            issued: unix_seconds(expiry - Span::days(90)),
            renewal_window: 30.0 * 86_400.0,
            renews: 0.0,
            renews_by: RuleKind::Days.label(),
            name: "www.example.org".to_owned(),
            key_type: "ecdsa-p384".to_owned(),
            serial: "AB".to_owned(),
            ca: String::new(),
            fallback: false,
        };
        assert!(renewal.is_of(&facts));
        // `renew` installed another, issued in the same second: same expiry, new serial.
        facts.serial = "CD".to_owned();
        assert!(!renewal.is_of(&facts));
        facts.serial = "AB".to_owned();
        facts.expiry += 1.0;
        assert!(!renewal.is_of(&facts));
    }
}
