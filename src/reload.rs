//! A certificate's `reload`: getting its service onto the set just installed.
//!
//! The command runs after that certificate's files changed (`finalize`, `renew`, `install`),
//! through [`crate::command`]: no shell, its own process group, bounded by `reload_timeout`,
//! killed with what it started, its output one escaped, bounded line. It learns which set
//! changed from its environment: [`ENV_CERT`], [`ENV_DIR`], [`ENV_NAMES`].
//!
//! A reload that fails leaves the new files where they are (they are the right ones; the
//! service is what is behind) and is remembered in the state directory
//! (`reloads/<cert>.json`), so that every later run runs it again, whether or not anything
//! else is due, until it works. With `probe:` a reload has worked only once every target
//! serves the installed leaf: the targets are polled until `reload_timeout` has passed again.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::cert::{Inspection, serial_hex};
use crate::command::{self, CommandError};
use crate::config::{CertSpec, ReloadSpec};
use crate::probe::{self, Verdict};
use crate::shown::shown;
use crate::state::StateDir;
use crate::store::{StoreError, Versioned};
use crate::timestamp::rfc3339;

/// The certificate's name in the config.
const ENV_CERT: &str = "FLEETCERT_CERT";
/// The directory the service reads the certificate's files from.
const ENV_DIR: &str = "FLEETCERT_DIR";
/// The certificate's names, separated by spaces.
const ENV_NAMES: &str = "FLEETCERT_NAMES";
/// How often the probes ask again while the service has not picked the new set up yet.
const PROBE_INTERVAL: Duration = Duration::from_millis(250);

/// A reload that failed, kept until one works (`reloads/<cert>.json`, 0600).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct PendingReload {
    version: u32,
    /// When it first failed, RFC 3339.
    pub(crate) since: String,
    /// Why it failed last, one line.
    pub(crate) error: String,
}

impl Versioned for PendingReload {
    const VERSION: u32 = 1;
    const WHAT: &'static str = "a pending reload";
    const MAX_BYTES: u64 = 64 << 10;
}

/// Why the service is not on the installed set; each is one line naming the command.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReloadError {
    /// The command did not run to a successful exit. (`command` and `target` are shown
    /// escaped, in backticks.)
    #[error("reload {command} failed: {reason}; the new files stay installed")]
    Command {
        command: String,
        reason: CommandError,
    },
    /// The command succeeded, and a probe target still serves another certificate.
    #[error(
        "reload {command} exited 0, but {target} still serves serial {served}, not the \
         installed serial {installed} (waited {}s)", .waited.as_secs()
    )]
    OtherServed {
        command: String,
        target: String,
        served: String,
        installed: String,
        waited: Duration,
    },
    /// The command succeeded, and a probe target serves no certificate.
    #[error(
        "reload {command} exited 0, but {target} serves no certificate ({reason}; waited \
         {}s)", .waited.as_secs()
    )]
    NotServed {
        command: String,
        target: String,
        reason: String,
        waited: Duration,
    },
}

/// One certificate as a reload sees it.
pub(crate) struct Subject<'a> {
    pub(crate) cert: &'a str,
    pub(crate) spec: &'a CertSpec,
    /// The directory the service reads.
    pub(crate) dir: &'a Path,
    /// The installed leaf, for the probes.
    pub(crate) installed: Option<&'a Inspection>,
}

/// Runs the reload `subject` owes: when its files `changed` in this run, or an earlier
/// reload failed. `None`: there was nothing to run (a dry run runs nothing); `Err` says why
/// the service is not on the installed set.
pub(crate) async fn settle(
    state: &StateDir,
    subject: &Subject<'_>,
    changed: bool,
    dry_run: bool,
) -> Option<Result<(), ReloadError>> {
    let cert = subject.cert;
    let pending = state.has_reload(cert);
    let Some(reload) = &subject.spec.reload else {
        // The config no longer names a reload: there is nothing left to run.
        if pending && !dry_run {
            info!(
                cert,
                "no reload configured any more: forgetting the pending one"
            );
            forget(state, cert);
        }
        return None;
    };
    if dry_run || !(changed || pending) {
        return None;
    }
    if pending && !changed {
        info!(cert, "running the reload that failed before");
    }
    let result = run(subject, reload).await;
    match &result {
        Ok(()) => {
            info!(cert, "reloaded");
            if pending {
                forget(state, cert);
            }
        }
        Err(err) => {
            warn!(cert, error = %err, "reload failed; every later run tries again");
            remember(state, cert, err);
        }
    }
    Some(result)
}

/// Runs the command, then waits for the probes to see the installed leaf.
async fn run(subject: &Subject<'_>, reload: &ReloadSpec) -> Result<(), ReloadError> {
    let command = shown(&reload.argv.join(" "));
    let names: Vec<String> = subject.spec.names.iter().map(ToString::to_string).collect();
    let names = names.join(" ");
    let dir = subject.dir.to_string_lossy();
    let env = [
        (ENV_CERT, subject.cert),
        (ENV_DIR, dir.as_ref()),
        (ENV_NAMES, names.as_str()),
    ];
    let ran = command::run_with(&reload.argv, None, &env, reload.timeout)
        .await
        .and_then(|ran| {
            if ran.status.success() {
                Ok(ran)
            } else {
                Err(CommandError::Exited {
                    status: ran.status,
                    summary: ran.summary(),
                })
            }
        })
        .map_err(|reason| ReloadError::Command {
            command: command.clone(),
            reason,
        })?;
    info!(cert = subject.cert, command, output = %ran.summary(), "reload ran");
    for target in &subject.spec.probe {
        served(subject, &command, target, reload.timeout).await?;
    }
    Ok(())
}

/// Polls `target` until it serves the installed leaf, at most for `limit`.
async fn served(
    subject: &Subject<'_>,
    command: &str,
    target: &str,
    limit: Duration,
) -> Result<(), ReloadError> {
    let Some(sni) = probe::sni_name(&subject.spec.names) else {
        return Ok(());
    };
    let started = Instant::now();
    loop {
        let probe = probe::probe(target, &sni, subject.installed).await;
        if probe.verdict == Verdict::Same {
            return Ok(());
        }
        let waited = started.elapsed();
        if waited >= limit {
            let target = shown(target);
            let command = command.to_owned();
            return Err(match (probe.verdict, probe.served) {
                (_, Some(leaf)) => ReloadError::OtherServed {
                    command,
                    target,
                    served: serial_hex(&leaf.serial),
                    installed: subject
                        .installed
                        .map_or_else(|| "(none readable)".to_owned(), |l| serial_hex(&l.serial)),
                    waited,
                },
                (Verdict::Unreachable(reason), None) => ReloadError::NotServed {
                    command,
                    target,
                    reason,
                    waited,
                },
                (verdict, None) => ReloadError::NotServed {
                    command,
                    target,
                    reason: verdict.label().to_owned(),
                    waited,
                },
            });
        }
        tokio::time::sleep(PROBE_INTERVAL).await;
    }
}

/// Remembers a failed reload; when it cannot be saved the report still says so.
fn remember(state: &StateDir, cert: &str, err: &ReloadError) {
    let since = match state.load_reload::<PendingReload>(cert) {
        Ok(Some(earlier)) => earlier.since,
        _ => rfc3339(OffsetDateTime::now_utc()),
    };
    let pending = PendingReload {
        version: PendingReload::VERSION,
        since,
        error: err.to_string(),
    };
    if let Err(save) = state.save_reload(cert, &pending) {
        warn!(cert, error = %save, "cannot remember the failed reload; run it by hand");
    }
}

fn forget(state: &StateDir, cert: &str) {
    if let Err(err) = state.remove_reload(cert) {
        warn!(cert, error = %err, "cannot forget the pending reload; the next run runs it again");
    }
}

/// The pending reload of `cert`, for `check` and the metrics.
pub(crate) fn pending(state: &StateDir, cert: &str) -> Result<Option<PendingReload>, StoreError> {
    state.load_reload(cert)
}
