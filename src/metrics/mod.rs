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

mod facts;
mod family;
mod previous;
mod samples;
mod text;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

pub(crate) use facts::{
    CertFacts, CommandRun, InstalledFacts, ProbeFacts, Probes, PublishFacts, RESULTS, Scope,
    ServerFacts, Update,
};
pub(crate) use family::{FAMILIES, Family, Group, family};
pub(crate) use previous::Previous;
use samples::new_samples;
pub(crate) use text::Sample;

use crate::lock::{Lock, LockError};
use crate::store::{Access, Dir, StoreError};

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
                renews_by: "expiring",
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
        // A new certificate issued in the same second as the old (a CA of fixed validity
        // gives both the same timestamps): its serial tells them apart.
        let mut twin = cert("www", 1.9e9, kept.clone());
        twin.installed.as_mut().expect("installed").serial = "CD".to_owned();
        let twin = through_file(merged(checked.clone(), &host("finalize", vec![twin])));
        assert_eq!(result(&twin, "same"), None);
        // A target no longer listed goes too.
        let unlisted = merged(
            checked,
            &host("status", vec![cert("www", 1.9e9, Probes::Kept(vec![]))]),
        );
        assert_eq!(result(&unlisted, "same"), None);
    }

    #[test]
    fn the_renewal_moment_is_carried_with_its_rule_for_the_same_leaf_only() {
        let mut decided = cert("www", 1.9e9, Probes::Kept(vec![]));
        let facts = decided.installed.as_mut().expect("installed");
        facts.renews = 1.89e9;
        facts.renews_by = "ari_window";
        let file = Previous::new(through_file(merged(
            Vec::new(),
            &host("request", vec![decided.clone()]),
        )));
        let scope = Scope::Host("web01.example.org".to_owned());
        let installed = decided.installed.clone().expect("installed");
        assert_eq!(
            file.renewal(&scope, "www", &installed),
            Some((1.89e9, "ari_window"))
        );
        assert_eq!(file.renewal(&scope, "main", &installed), None);
        let other = Scope::Host("wiki01.example.org".to_owned());
        assert_eq!(file.renewal(&other, "www", &installed), None);
        let renewed = cert("www", 2.0e9, Probes::Kept(vec![]));
        let renewed = renewed.installed.expect("installed");
        assert_eq!(file.renewal(&scope, "www", &renewed), None);
        // A file of an older fleetcert, the moment without its rule: not carried.
        let older = "fleetcert_certificate_expiry_timestamp_seconds{host=\"web01.example.org\",cert=\"www\"} 1900000000\n\
                     fleetcert_certificate_issued_timestamp_seconds{host=\"web01.example.org\",cert=\"www\"} 1892224000\n\
                     fleetcert_certificate_renewal_timestamp_seconds{host=\"web01.example.org\",cert=\"www\"} 1890000000\n";
        let older = Previous::new(text::parse(older));
        assert!(older.same_leaf(&scope, "www", &installed));
        assert_eq!(older.renewal(&scope, "www", &installed), None);
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
