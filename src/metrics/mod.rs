//! The textfile for node_exporter: `fleetcert.prom` in `metrics.textfile_dir`, rewritten
//! atomically at the end of every command (docs/monitoring.md).
//!
//! One file serves every config on a machine (a bastion holds its zone config and one host
//! config per legacy host, all pointing at node_exporter's one directory), so each series
//! carries its *scope* — `host` for what a host config says, `zone` for what a zone config
//! says — and a run rewrites only the series of its own scope and command, and keeps the
//! others as the file had them. A lock beside the file (`.fleetcert.prom.lock`) keeps two
//! runs from losing each other's series. The file is written to a temporary name that is not
//! `*.prom`, then renamed, as the textfile collector requires: a scrape never sees half a
//! file.
//!
//! Probe results are only made by `check`; any other command keeps the last ones as long as
//! the certificate they compared is still the one installed (same expiry and issue time),
//! and drops them when it changed: a result about the previous certificate is not carried
//! over to the next. The renewal moment is carried the same way ([`Previous`]): only
//! `request` and `renew` hear the CA's window (ARI), the other commands keep what they heard.

mod text;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use crate::lock::{Lock, LockError};
use crate::store::{Access, Dir, StoreError};
pub(crate) use text::Sample;

/// The file node_exporter reads.
pub(crate) const FILE: &str = "fleetcert.prom";
/// The lock beside it (not `*.prom`: the collector ignores it).
const LOCK: &str = ".fleetcert.prom.lock";
/// How long a run waits for another one writing the file (a write takes milliseconds).
const LOCK_TIMEOUT: Duration = Duration::from_secs(10);
/// node_exporter runs as its own user and must read the file.
const FILE_MODE: u32 = 0o644;
/// The most bytes of an old file read back (about 100,000 series).
const MAX_FILE_BYTES: u64 = 16 << 20;

/// What a group of families describes, which decides which run rewrites them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Group {
    /// One certificate of a host config: rewritten by every host command of that host.
    Certificate,
    /// One probe target of a certificate: rewritten by `check`, kept by the others.
    Probe,
    /// One command's last run: rewritten by that command.
    Command,
    /// The last publication of a zone: rewritten by a publish that published.
    Publish,
}

/// One metric family: its name, help, the label names it may carry (in this order), and its
/// group. Every family is a gauge.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Family {
    pub(crate) name: &'static str,
    pub(crate) help: &'static str,
    pub(crate) labels: &'static [&'static str],
    pub(crate) group: Group,
}

const CERT: &[&str] = &["host", "cert"];
const PROBE: &[&str] = &["host", "cert", "target"];
const COMMAND: &[&str] = &["command", "host", "zone"];
const ZONE: &[&str] = &["zone"];
const SERVER: &[&str] = &["zone", "server"];

/// Every family fleetcert writes, in the order of the file (docs/monitoring.md lists them).
pub(crate) const FAMILIES: &[Family] = &[
    Family {
        name: "fleetcert_certificate_expiry_timestamp_seconds",
        help: "Expiry (notAfter) of the installed certificate, seconds since the epoch.",
        labels: CERT,
        group: Group::Certificate,
    },
    Family {
        name: "fleetcert_certificate_issued_timestamp_seconds",
        help: "Issue time (notBefore) of the installed certificate, seconds since the epoch.",
        labels: CERT,
        group: Group::Certificate,
    },
    Family {
        name: "fleetcert_certificate_renewal_window_seconds",
        help: "How long before expiry the certificate is renewed: renew.before_days, capped at a third of its lifetime.",
        labels: CERT,
        group: Group::Certificate,
    },
    Family {
        name: "fleetcert_certificate_renewal_timestamp_seconds",
        help: "When the installed certificate renews: its moment in the CA's renewal window (ARI) as the last request heard it, else by renew.before_days, spread; seconds since the epoch.",
        labels: CERT,
        group: Group::Certificate,
    },
    Family {
        name: "fleetcert_certificate_due",
        help: "1 when the certificate is due for issuance (reason says why), 0 (reason none) when not.",
        labels: &["host", "cert", "reason"],
        group: Group::Certificate,
    },
    Family {
        name: "fleetcert_certificate_pending",
        help: "1 when an order waits for finalize.",
        labels: CERT,
        group: Group::Certificate,
    },
    Family {
        name: "fleetcert_certificate_reload_pending",
        help: "1 when the certificate's reload failed after its files changed: the service may still serve the previous certificate, and every run tries the reload again.",
        labels: CERT,
        group: Group::Certificate,
    },
    Family {
        name: "fleetcert_certificate_info",
        help: "The installed certificate: its first name, key type, serial (hex), the directory URL of the CA that issued it, and whether that was a fallback CA; value 1.",
        labels: &[
            "host", "cert", "name", "key_type", "serial", "ca", "fallback",
        ],
        group: Group::Certificate,
    },
    Family {
        name: "fleetcert_certificate_probe_result",
        help: "What a TLS server listed in probe serves, compared with the installed certificate: 1 for the result of the last check.",
        labels: &["host", "cert", "target", "result"],
        group: Group::Probe,
    },
    Family {
        name: "fleetcert_certificate_probe_timestamp_seconds",
        help: "When the last check probed the target, seconds since the epoch.",
        labels: PROBE,
        group: Group::Probe,
    },
    Family {
        name: "fleetcert_certificate_probe_expiry_timestamp_seconds",
        help: "Expiry (notAfter) of the certificate the target served, seconds since the epoch.",
        labels: PROBE,
        group: Group::Probe,
    },
    Family {
        name: "fleetcert_command_last_run_timestamp_seconds",
        help: "When the command last started, seconds since the epoch.",
        labels: COMMAND,
        group: Group::Command,
    },
    Family {
        name: "fleetcert_command_duration_seconds",
        help: "How long the command's last run took.",
        labels: COMMAND,
        group: Group::Command,
    },
    Family {
        name: "fleetcert_command_exit_code",
        help: "Exit code of the command's last run (docs/exit-codes.md; check: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN).",
        labels: COMMAND,
        group: Group::Command,
    },
    Family {
        name: "fleetcert_publish_timestamp_seconds",
        help: "When the last publication of the zone started, seconds since the epoch.",
        labels: ZONE,
        group: Group::Publish,
    },
    Family {
        name: "fleetcert_publish_serial",
        help: "The serial of the last publication.",
        labels: ZONE,
        group: Group::Publish,
    },
    Family {
        name: "fleetcert_publish_records",
        help: "TXT records in the zone after the last publication.",
        labels: ZONE,
        group: Group::Publish,
    },
    Family {
        name: "fleetcert_publish_hosts",
        help: "Hosts with records in the zone after the last publication.",
        labels: ZONE,
        group: Group::Publish,
    },
    Family {
        name: "fleetcert_publish_server_propagation_seconds",
        help: "Seconds from the start of the wait until the server served the published serial (absent when it did not).",
        labels: SERVER,
        group: Group::Publish,
    },
    Family {
        name: "fleetcert_publish_server_lagging",
        help: "1 when the server did not serve the published serial within the timeout.",
        labels: SERVER,
        group: Group::Publish,
    },
];

/// The family called `name` (a name from [`FAMILIES`]; anything else is a bug).
pub(crate) fn family(name: &str) -> &'static Family {
    FAMILIES
        .iter()
        .find(|family| family.name == name)
        .unwrap_or_else(|| unreachable!("metric family {name} is not in FAMILIES"))
}

/// Whose series a run rewrites.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scope {
    /// A host config: its `host`.
    Host(String),
    /// A zone config: its `zone`.
    Zone(String),
}

impl Scope {
    fn label(&self) -> (&'static str, &str) {
        match self {
            Self::Host(host) => ("host", host),
            Self::Zone(zone) => ("zone", zone),
        }
    }

    fn holds(&self, sample: &Sample) -> bool {
        let (key, value) = self.label();
        sample.label(key) == Some(value)
    }
}

/// One command's run, for the command families.
#[derive(Debug, Clone)]
pub(crate) struct CommandRun {
    /// The subcommand (`request`, `finalize`, ...).
    pub(crate) command: &'static str,
    /// When it started, seconds since the epoch.
    pub(crate) started: f64,
    pub(crate) duration: Duration,
    pub(crate) exit_code: u8,
}

/// What one certificate's series say.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CertFacts {
    pub(crate) cert: String,
    /// The installed leaf, when there is a readable one.
    pub(crate) installed: Option<InstalledFacts>,
    /// The reason label when it is due (`DueReason::label`), `None` when not.
    pub(crate) due: Option<&'static str>,
    /// Whether an order waits; `None` when the state directory cannot be read.
    pub(crate) pending: Option<bool>,
    /// Whether a failed reload waits to be run again; `None` as for `pending`.
    pub(crate) reload_pending: Option<bool>,
    pub(crate) probes: Probes,
}

/// The installed leaf's facts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct InstalledFacts {
    pub(crate) expiry: f64,
    pub(crate) issued: f64,
    /// `fleetcert_certificate_renewal_window_seconds`.
    pub(crate) renewal_window: f64,
    /// `fleetcert_certificate_renewal_timestamp_seconds`: when it renews.
    pub(crate) renews: f64,
    /// The certificate's first configured name.
    pub(crate) name: String,
    /// `ecdsa-p384` and so on; `other` for a key fleetcert does not make.
    pub(crate) key_type: String,
    /// Upper-case hex.
    pub(crate) serial: String,
    /// The directory URL of the CA that issued it (the primary unless a record says
    /// otherwise), empty for a test issuer's.
    pub(crate) ca: String,
    /// Whether a fallback CA issued it.
    pub(crate) fallback: bool,
}

/// The probes of one certificate in this run.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Probes {
    /// Not probed by this run: keep the last results for these targets if still valid.
    Kept(Vec<String>),
    /// Probed now.
    Probed(Vec<ProbeFacts>),
}

/// One probe's result.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ProbeFacts {
    pub(crate) target: String,
    /// One of `RESULTS`.
    pub(crate) result: &'static str,
    /// When it was probed, seconds since the epoch.
    pub(crate) at: f64,
    /// Expiry of the served leaf, when one was served.
    pub(crate) served_expiry: Option<f64>,
}

/// Every value of the probe result's `result` label (a state set: one is 1, the others 0).
pub(crate) const RESULTS: &[&str] = &["same", "older", "other", "unreachable"];

/// What a publication did, for the publish families.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PublishFacts {
    pub(crate) serial: u32,
    pub(crate) records: usize,
    pub(crate) hosts: usize,
    pub(crate) servers: Vec<ServerFacts>,
}

/// One authoritative server after the wait.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ServerFacts {
    pub(crate) server: String,
    /// Seconds until it served the serial; `None`: it did not.
    pub(crate) seconds: Option<f64>,
}

/// Everything one run contributes to the file.
#[derive(Debug, Clone)]
pub(crate) struct Update {
    pub(crate) scope: Scope,
    pub(crate) run: CommandRun,
    /// Every configured certificate (host commands); `None` for publish.
    pub(crate) certs: Option<Vec<CertFacts>>,
    /// The publication (publish, when it published).
    pub(crate) publication: Option<PublishFacts>,
}

/// The metrics file could not be written; the command's own result stands.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MetricsError {
    /// The directory does not exist.
    #[error(
        "metrics.textfile_dir {path} does not exist: create it (the install role does) or \
         correct the key; this run's metrics are not written"
    )]
    NoDir { path: String },
    /// The directory or the file cannot be used.
    #[error("metrics.textfile_dir: {0}")]
    Store(#[from] StoreError),
    /// Another run holds the file's lock.
    #[error("metrics.textfile_dir: {0}")]
    Lock(#[from] LockError),
}

/// The file as the last runs left it, read under the lock: what this run may carry over.
#[derive(Debug, Default)]
pub(crate) struct Previous {
    samples: Vec<Sample>,
    /// What the file says about each certificate's leaf, by host, certificate and family:
    /// looked up once per certificate, so a host of many certificates is not quadratic.
    leaves: HashMap<(String, String, &'static str), f64>,
}

/// The families [`Previous`] looks up by certificate.
const LEAF_FAMILIES: [&str; 3] = [
    "fleetcert_certificate_expiry_timestamp_seconds",
    "fleetcert_certificate_issued_timestamp_seconds",
    "fleetcert_certificate_renewal_timestamp_seconds",
];

impl Previous {
    fn new(samples: Vec<Sample>) -> Self {
        let mut leaves = HashMap::new();
        for sample in &samples {
            if !LEAF_FAMILIES.contains(&sample.family.name) {
                continue;
            }
            if let (Some(host), Some(cert)) = (sample.label("host"), sample.label("cert")) {
                let key = (host.to_owned(), cert.to_owned(), sample.family.name);
                leaves.entry(key).or_insert(sample.value);
            }
        }
        Self { samples, leaves }
    }

    /// The value of `family` for certificate `cert` of `scope` (only host configs have
    /// certificates).
    fn leaf_value(&self, scope: &Scope, cert: &str, family: &'static str) -> Option<f64> {
        let Scope::Host(host) = scope else {
            return None;
        };
        // A borrowed key would need the tuple of Strings: two small copies per lookup.
        let key = (host.clone(), cert.to_owned(), family);
        self.leaves.get(&key).copied()
    }

    /// Whether the file describes `installed` as certificate `cert`'s leaf (so what it says
    /// about that certificate, a probe's result or the renewal moment, is about this leaf).
    fn same_leaf(&self, scope: &Scope, cert: &str, installed: &InstalledFacts) -> bool {
        let [expiry, issued, _] = LEAF_FAMILIES;
        self.leaf_value(scope, cert, expiry) == Some(installed.expiry)
            && self.leaf_value(scope, cert, issued) == Some(installed.issued)
    }

    /// The renewal moment the file holds for certificate `cert` of `scope`, when it was
    /// recorded for the leaf that is installed now (expiry and issue time as in `installed`).
    pub(crate) fn renewal(
        &self,
        scope: &Scope,
        cert: &str,
        installed: &InstalledFacts,
    ) -> Option<f64> {
        let [_, _, renewal] = LEAF_FAMILIES;
        self.same_leaf(scope, cert, installed)
            .then(|| self.leaf_value(scope, cert, renewal))
            .flatten()
    }
}

/// Rewrites `fleetcert.prom` in `dir` with what `update` makes of the file as it was (see
/// the module doc); `update` runs under the file's lock.
pub(crate) async fn write(
    dir: &Path,
    update: impl FnOnce(&Previous) -> Update,
) -> Result<(), MetricsError> {
    // A directory others may write is refused, as `cert_dir` is: they could plant the lock
    // (and stop the metrics for good) or put their own file in place of ours.
    let Some(dir) = Dir::open_existing(dir)? else {
        return Err(MetricsError::NoDir {
            path: crate::shown::path(dir),
        });
    };
    let _lock = Lock::acquire(&dir, LOCK, LOCK_TIMEOUT).await?;
    // What a run killed between writing and renaming left (its pid gone); only ours: the
    // directory is node_exporter's, shared with other tools.
    dir.sweep_temporaries_of(FILE)?;
    let old = match dir.read_optional(FILE, MAX_FILE_BYTES) {
        Ok(bytes) => bytes.map(|bytes| text::parse(&String::from_utf8_lossy(&bytes))),
        Err(err @ StoreError::TooLarge { .. }) => {
            tracing::warn!(error = %err, "starting the metrics file afresh");
            None
        }
        Err(err) => return Err(err.into()),
    };
    let previous = Previous::new(old.unwrap_or_default());
    let update = update(&previous);
    let mut samples = merge(&previous, &update);
    let body = text::render(&mut samples);
    let access = Access {
        mode: FILE_MODE,
        uid: None,
        gid: None,
    };
    // Flushed and renamed, so a scrape or a crash finds the old file or the new one, whole;
    // the directory itself is not synced (write_atomic would): losing the rename in a power
    // cut only loses one run's metrics, which the next run writes again, and that fsync
    // takes milliseconds on a busy disk, as much as the rest of an idle request.
    dir.stage(FILE, body.as_bytes(), access)?.commit()?;
    Ok(())
}

/// The samples of the new file: `update`'s, and those of `old` that it does not replace.
fn merge(old: &Previous, update: &Update) -> Vec<Sample> {
    let mut samples = new_samples(update);
    let certs: HashMap<&str, &CertFacts> = update
        .certs
        .iter()
        .flatten()
        .map(|facts| (facts.cert.as_str(), facts))
        .collect();
    let kept = old
        .samples
        .iter()
        .filter(|sample| keeps(sample, old, update, &certs))
        .cloned();
    // The new run's samples first: of a series in both, `text::render` writes the new one.
    samples.extend(kept);
    samples
}

/// Whether an old sample survives `update`, whose certificates are `certs` by name.
fn keeps(
    sample: &Sample,
    old: &Previous,
    update: &Update,
    certs: &HashMap<&str, &CertFacts>,
) -> bool {
    if !update.scope.holds(sample) {
        return true;
    }
    match sample.family.group {
        Group::Certificate => update.certs.is_none(),
        Group::Command => sample.label("command") != Some(update.run.command),
        Group::Publish => update.publication.is_none(),
        Group::Probe => {
            if update.certs.is_none() {
                return true;
            }
            let (Some(cert), Some(target)) = (sample.label("cert"), sample.label("target")) else {
                return false;
            };
            certs.get(cert).is_some_and(|facts| {
                matches!(&facts.probes, Probes::Kept(targets) if targets.iter().any(|t| t == target))
                    && facts
                        .installed
                        .as_ref()
                        .is_some_and(|installed| old.same_leaf(&update.scope, cert, installed))
            })
        }
    }
}

/// The samples `update` itself makes.
fn new_samples(update: &Update) -> Vec<Sample> {
    let mut samples = Vec::new();
    let scope = update.scope.label();
    let run = &update.run;
    for (name, value) in [
        ("fleetcert_command_last_run_timestamp_seconds", run.started),
        (
            "fleetcert_command_duration_seconds",
            run.duration.as_secs_f64(),
        ),
        ("fleetcert_command_exit_code", f64::from(run.exit_code)),
    ] {
        samples.push(Sample::new(
            family(name),
            &[("command", run.command), scope],
            value,
        ));
    }
    for cert in update.certs.iter().flatten() {
        cert_samples(&mut samples, scope, cert);
    }
    if let Some(publication) = &update.publication {
        publish_samples(&mut samples, scope, run.started, publication);
    }
    samples
}

fn cert_samples(samples: &mut Vec<Sample>, scope: (&'static str, &str), facts: &CertFacts) {
    let labels = [scope, ("cert", facts.cert.as_str())];
    let mut push = |name: &str, extra: &[(&str, &str)], value: f64| {
        let mut all = labels.to_vec();
        all.extend_from_slice(extra);
        samples.push(Sample::new(family(name), &all, value));
    };
    if let Some(installed) = &facts.installed {
        push(
            "fleetcert_certificate_expiry_timestamp_seconds",
            &[],
            installed.expiry,
        );
        push(
            "fleetcert_certificate_issued_timestamp_seconds",
            &[],
            installed.issued,
        );
        push(
            "fleetcert_certificate_renewal_window_seconds",
            &[],
            installed.renewal_window,
        );
        push(
            "fleetcert_certificate_renewal_timestamp_seconds",
            &[],
            installed.renews,
        );
        push(
            "fleetcert_certificate_info",
            &[
                ("name", &installed.name),
                ("key_type", &installed.key_type),
                ("serial", &installed.serial),
                ("ca", &installed.ca),
                (
                    "fallback",
                    if installed.fallback { "true" } else { "false" },
                ),
            ],
            1.0,
        );
    }
    push(
        "fleetcert_certificate_due",
        &[("reason", facts.due.unwrap_or("none"))],
        if facts.due.is_some() { 1.0 } else { 0.0 },
    );
    for (name, pending) in [
        ("fleetcert_certificate_pending", facts.pending),
        ("fleetcert_certificate_reload_pending", facts.reload_pending),
    ] {
        if let Some(pending) = pending {
            push(name, &[], if pending { 1.0 } else { 0.0 });
        }
    }
    let Probes::Probed(probes) = &facts.probes else {
        return;
    };
    for probe in probes {
        let target = [("target", probe.target.as_str())];
        for result in RESULTS {
            push(
                "fleetcert_certificate_probe_result",
                &[target[0], ("result", result)],
                if *result == probe.result { 1.0 } else { 0.0 },
            );
        }
        push(
            "fleetcert_certificate_probe_timestamp_seconds",
            &target,
            probe.at,
        );
        if let Some(expiry) = probe.served_expiry {
            push(
                "fleetcert_certificate_probe_expiry_timestamp_seconds",
                &target,
                expiry,
            );
        }
    }
}

fn publish_samples(
    samples: &mut Vec<Sample>,
    scope: (&'static str, &str),
    started: f64,
    facts: &PublishFacts,
) {
    #[allow(clippy::cast_precision_loss)] // counts far below 2^52
    let counts = [
        ("fleetcert_publish_timestamp_seconds", started),
        ("fleetcert_publish_serial", f64::from(facts.serial)),
        ("fleetcert_publish_records", facts.records as f64),
        ("fleetcert_publish_hosts", facts.hosts as f64),
    ];
    for (name, value) in counts {
        samples.push(Sample::new(family(name), &[scope], value));
    }
    for server in &facts.servers {
        let labels = [scope, ("server", server.server.as_str())];
        if let Some(seconds) = server.seconds {
            samples.push(Sample::new(
                family("fleetcert_publish_server_propagation_seconds"),
                &labels,
                seconds,
            ));
        }
        samples.push(Sample::new(
            family("fleetcert_publish_server_lagging"),
            &labels,
            if server.seconds.is_none() { 1.0 } else { 0.0 },
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(command: &'static str, exit_code: u8) -> CommandRun {
        CommandRun {
            command,
            started: 1_800_000_000.0,
            duration: Duration::from_millis(250),
            exit_code,
        }
    }

    fn cert(name: &str, expiry: f64, probes: Probes) -> CertFacts {
        CertFacts {
            cert: name.to_owned(),
            installed: Some(InstalledFacts {
                expiry,
                issued: expiry - 90.0 * 86400.0,
                renewal_window: 30.0 * 86400.0,
                renews: expiry - 25.0 * 86400.0,
                name: format!("{name}.example.org"),
                key_type: "ecdsa-p384".to_owned(),
                serial: "AB".to_owned(),
                ca: "https://ca.test/dir".to_owned(),
                fallback: false,
            }),
            due: None,
            pending: Some(false),
            reload_pending: Some(false),
            probes,
        }
    }

    fn host(command: &'static str, certs: Vec<CertFacts>) -> Update {
        Update {
            scope: Scope::Host("web01.example.org".to_owned()),
            run: run(command, 0),
            certs: Some(certs),
            publication: None,
        }
    }

    fn probed(target: &str, result: &'static str) -> Probes {
        Probes::Probed(vec![ProbeFacts {
            target: target.to_owned(),
            result,
            at: 1_800_000_000.0,
            served_expiry: Some(1.9e9),
        }])
    }

    fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let matching: Vec<_> = samples
            .iter()
            .filter(|s| s.family.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(v)))
            .collect();
        assert!(matching.len() <= 1, "{matching:?}");
        matching.first().map(|s| s.value)
    }

    /// `merge` onto a file holding `old`.
    fn merged(old: Vec<Sample>, update: &Update) -> Vec<Sample> {
        merge(&Previous::new(old), update)
    }

    /// Renders and reads back, as the next run would find the file.
    fn through_file(mut samples: Vec<Sample>) -> Vec<Sample> {
        text::parse(&text::render(&mut samples))
    }

    #[test]
    fn each_command_keeps_the_other_commands_rows_and_other_scopes() {
        let first = through_file(merged(Vec::new(), &host("request", vec![])));
        let zone = Update {
            scope: Scope::Zone("acme.example.net".to_owned()),
            run: run("publish", 3),
            certs: None,
            publication: Some(PublishFacts {
                serial: 7,
                records: 2,
                hosts: 1,
                servers: vec![
                    ServerFacts {
                        server: "192.0.2.1:53".to_owned(),
                        seconds: Some(0.05),
                    },
                    ServerFacts {
                        server: "192.0.2.2:53".to_owned(),
                        seconds: None,
                    },
                ],
            }),
        };
        let second = through_file(merged(first, &zone));
        let mut finalize = host("finalize", vec![]);
        finalize.run.exit_code = 1;
        let third = through_file(merged(second, &finalize));
        let exit = |command| {
            value(
                &third,
                "fleetcert_command_exit_code",
                &[("command", command)],
            )
        };
        assert_eq!(
            (exit("request"), exit("finalize"), exit("publish")),
            (Some(0.0), Some(1.0), Some(3.0))
        );
        let lagging = |server| {
            value(
                &third,
                "fleetcert_publish_server_lagging",
                &[("server", server)],
            )
        };
        assert_eq!(
            (lagging("192.0.2.1:53"), lagging("192.0.2.2:53")),
            (Some(0.0), Some(1.0))
        );
        assert_eq!(
            value(
                &third,
                "fleetcert_publish_server_propagation_seconds",
                &[("server", "192.0.2.2:53")]
            ),
            None
        );
        // A publish that did not publish keeps the last publication's series.
        let mut failed = zone.clone();
        failed.publication = None;
        failed.run.exit_code = 4;
        let fourth = merged(third, &failed);
        assert_eq!(value(&fourth, "fleetcert_publish_serial", &[]), Some(7.0));
        assert_eq!(
            value(
                &fourth,
                "fleetcert_command_exit_code",
                &[("command", "publish")]
            ),
            Some(4.0)
        );
    }

    #[test]
    fn probe_results_stay_while_the_same_certificate_is_installed() {
        let target = "127.0.0.1:443";
        let checked = through_file(merged(
            Vec::new(),
            &host("check", vec![cert("www", 1.9e9, probed(target, "same"))]),
        ));
        let kept = Probes::Kept(vec![target.to_owned()]);
        let result = |samples: &[Sample], result| {
            value(
                samples,
                "fleetcert_certificate_probe_result",
                &[("cert", "www"), ("result", result)],
            )
        };
        // Nothing changed: request keeps what check found.
        let requested = through_file(merged(
            checked.clone(),
            &host("request", vec![cert("www", 1.9e9, kept.clone())]),
        ));
        assert_eq!(result(&requested, "same"), Some(1.0));
        assert_eq!(result(&requested, "older"), Some(0.0));
        // A new certificate: the old comparison is void.
        let renewed = through_file(merged(
            requested,
            &host("finalize", vec![cert("www", 2.0e9, kept.clone())]),
        ));
        assert_eq!(result(&renewed, "same"), None);
        assert_eq!(
            value(
                &renewed,
                "fleetcert_certificate_expiry_timestamp_seconds",
                &[("cert", "www")]
            ),
            Some(2.0e9)
        );
        // A target no longer listed goes too.
        let unlisted = merged(
            checked,
            &host("status", vec![cert("www", 1.9e9, Probes::Kept(vec![]))]),
        );
        assert_eq!(result(&unlisted, "same"), None);
    }

    #[test]
    fn the_renewal_moment_is_carried_for_the_same_leaf_only() {
        let mut decided = cert("www", 1.9e9, Probes::Kept(vec![]));
        decided.installed.as_mut().expect("installed").renews = 1.89e9;
        let file = Previous::new(through_file(merged(
            Vec::new(),
            &host("request", vec![decided.clone()]),
        )));
        let scope = Scope::Host("web01.example.org".to_owned());
        let installed = decided.installed.clone().expect("installed");
        assert_eq!(file.renewal(&scope, "www", &installed), Some(1.89e9));
        assert_eq!(file.renewal(&scope, "main", &installed), None);
        let other = Scope::Host("wiki01.example.org".to_owned());
        assert_eq!(file.renewal(&other, "www", &installed), None);
        let renewed = cert("www", 2.0e9, Probes::Kept(vec![]));
        let renewed = renewed.installed.expect("installed");
        assert_eq!(file.renewal(&scope, "www", &renewed), None);
    }

    #[test]
    fn a_certificate_dropped_from_the_config_loses_its_series_other_hosts_keep_theirs() {
        let both = through_file(merged(
            Vec::new(),
            &host(
                "request",
                vec![
                    cert("a", 1.9e9, Probes::Kept(vec![])),
                    cert("b", 1.9e9, Probes::Kept(vec![])),
                ],
            ),
        ));
        let mut legacy = host("request", vec![cert("a", 1.7e9, Probes::Kept(vec![]))]);
        legacy.scope = Scope::Host("wiki01.example.org".to_owned());
        let with_legacy = through_file(merged(both, &legacy));
        let only_a = merged(
            with_legacy,
            &host("finalize", vec![cert("a", 1.9e9, Probes::Kept(vec![]))]),
        );
        let expiry = |host, cert| {
            value(
                &only_a,
                "fleetcert_certificate_expiry_timestamp_seconds",
                &[("host", host), ("cert", cert)],
            )
        };
        assert_eq!(expiry("web01.example.org", "a"), Some(1.9e9));
        assert_eq!(expiry("web01.example.org", "b"), None);
        assert_eq!(expiry("wiki01.example.org", "a"), Some(1.7e9));
    }

    #[tokio::test]
    async fn the_file_is_written_0644_beside_a_hidden_lock_and_a_missing_dir_is_named() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let update = host("status", vec![cert("www", 1.9e9, Probes::Kept(vec![]))]);
        write(dir.path(), |_| update.clone()).await.expect("write");
        let file = dir.path().join(FILE);
        let mode = std::fs::metadata(&file).expect("file").permissions().mode();
        assert_eq!(mode & 0o7777, 0o644);
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, [LOCK, FILE]);
        // Written again, the file reads back to the same samples.
        let first = std::fs::read_to_string(&file).expect("read");
        write(dir.path(), |_| update.clone())
            .await
            .expect("write again");
        assert_eq!(std::fs::read_to_string(&file).expect("read"), first);
        // A symlink planted at the file is refused, not followed.
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "x").expect("victim");
        std::fs::remove_file(&file).expect("remove");
        std::os::unix::fs::symlink(&victim, &file).expect("link");
        write(dir.path(), |_| update.clone())
            .await
            .expect_err("symlink");
        assert_eq!(std::fs::read_to_string(&victim).expect("victim"), "x");

        let missing = dir.path().join("missing");
        let err = write(&missing, |_| update.clone())
            .await
            .expect_err("missing")
            .to_string();
        assert!(
            err.contains("does not exist") && err.contains("missing"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_dir_others_may_write_is_refused_naming_the_fix() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let update = host("status", vec![cert("www", 1.9e9, Probes::Kept(vec![]))]);
        let chmod = |mode| {
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(mode))
                .expect("chmod");
        };
        chmod(0o777);
        let err = write(dir.path(), |_| update.clone())
            .await
            .expect_err("world-writable")
            .to_string();
        assert!(
            err.contains("metrics.textfile_dir") && err.contains("chmod go-w"),
            "{err}"
        );
        assert!(!dir.path().join(FILE).exists() && !dir.path().join(LOCK).exists());
    }

    #[tokio::test]
    async fn a_killed_runs_temporary_is_swept_and_other_tools_are_left() {
        let dir = tempfile::tempdir().expect("tempdir");
        let update = host("status", vec![cert("www", 1.9e9, Probes::Kept(vec![]))]);
        // A pid above any pid_max: no process has it.
        let ours = dir.path().join(format!(".{FILE}.tmp.2147483647.12"));
        let theirs = dir.path().join(".other.prom.tmp.2147483647.12");
        std::fs::write(&ours, "half").expect("plant ours");
        std::fs::write(&theirs, "half").expect("plant theirs");
        write(dir.path(), |_| update.clone()).await.expect("write");
        assert!(!ours.exists(), "fleetcert's temporary was left");
        assert!(theirs.exists(), "another tool's temporary was swept");
    }

    #[test]
    fn every_family_is_named_by_the_conventions() {
        for family in FAMILIES {
            assert!(family.name.starts_with("fleetcert_"), "{}", family.name);
            assert!(
                !family.name.ends_with("_total"),
                "{}: gauges only",
                family.name
            );
            assert!(family.help.ends_with('.') || family.help.ends_with(')'));
            assert_eq!(FAMILIES.iter().filter(|f| f.name == family.name).count(), 1);
        }
    }
}
