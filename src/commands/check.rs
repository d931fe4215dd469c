//! `fleetcert check`: one status line for Nagios, Icinga or Sensu about every certificate of a
//! host — expiry, renewal, and what its services really serve (the probes).
//!
//! It speaks the monitoring plugins' convention, not fleetcert's (docs/exit-codes.md): 0 OK,
//! 1 WARNING, 2 CRITICAL, 3 UNKNOWN, and one line `FLEETCERT STATUS - text | perfdata`. A
//! config that cannot be read is UNKNOWN, never CRITICAL: the plugin cannot tell, which is
//! what UNKNOWN says. It reads files and probes the `probe:` targets, and talks to nobody
//! else (no CA, no DNS beyond resolving a target's name).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use futures_util::StreamExt as _;
use time::OffsetDateTime;
use tracing::warn;

use super::installed::Installed;
use super::record::{Observed, unix_seconds};
use super::report::print_text;
use crate::cert::{DueReason, Inspection, RenewalDecision, serial_hex};
use crate::cli::{CheckArgs, HostArgs};
use crate::config::{CertSpec, HostConfig};
use crate::error::{CheckStatus, Error, Outcome};
use crate::metrics::ProbeFacts;
use crate::probe::{self, Probe, Verdict};
use crate::reload;
use crate::state::StateDir;
use crate::token::CheckVerdict;

/// Probes in flight at once: a host with many certificates does not open hundreds of
/// connections to its own services at the same moment.
const PROBE_CONCURRENCY: usize = 16;
/// Problems named in the line; more are counted (Nagios keeps a few KiB of it).
const MAX_NAMED: usize = 5;
const SECONDS_PER_DAY: f64 = 86_400.0;
/// How much of a failed reload's line goes into the plugin line.
const MAX_RELOAD_ERROR: usize = crate::shown::MAX_EXCERPT;

/// One problem with one certificate.
#[derive(Debug)]
struct Finding {
    status: CheckStatus,
    cert: String,
    text: String,
}

/// The expiry of one certificate, for the performance data.
#[derive(Debug)]
struct Days {
    cert: String,
    left: f64,
    warning: f64,
    critical: f64,
}

pub(crate) async fn run(args: &CheckArgs, observed: &mut Observed) -> Result<Outcome, Error> {
    let (status, line) = status_line(args, observed).await;
    if let Err(err) = print_text(&format!("{line}\n")) {
        warn!(error = %err, "cannot print the check's line");
        return Ok(Outcome::Check(CheckStatus::Unknown));
    }
    Ok(Outcome::Check(status))
}

/// `--check` of request, finalize and renew: the verdict `check` would give now, with the
/// default windows, for their report; its probes go into the same run's metrics. `None`
/// without the flag. The config is the one the command loaded; the certificates are read
/// again, as the command left them.
pub(super) async fn verdict(
    args: &HostArgs,
    config: &HostConfig,
    observed: &mut Observed,
) -> Option<CheckVerdict> {
    if !args.check {
        return None;
    }
    let (status, line) = judge(config, Windows::default(), observed).await;
    Some(CheckVerdict {
        code: status.code(),
        line,
    })
}

/// The status and its line; a check that cannot run is UNKNOWN with the reason.
async fn status_line(args: &CheckArgs, observed: &mut Observed) -> (CheckStatus, String) {
    match check(args, observed).await {
        Ok(line) => line,
        Err(problem) => (
            CheckStatus::Unknown,
            format!("FLEETCERT UNKNOWN - {problem}"),
        ),
    }
}

/// What keeps the check from running (UNKNOWN).
#[derive(Debug, thiserror::Error)]
enum CheckError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(
        "--critical-days {critical} is more than --warning-days {warning}: the critical window \
         must lie inside the warning window"
    )]
    Windows { warning: u32, critical: u32 },
}

/// The windows a certificate's days left are judged by: `check`'s flags, or none for the
/// defaults (a half and a quarter of the renewal window).
#[derive(Debug, Clone, Copy, Default)]
struct Windows {
    warning_days: Option<u32>,
    critical_days: Option<u32>,
}

/// The status and its line.
async fn check(
    args: &CheckArgs,
    observed: &mut Observed,
) -> Result<(CheckStatus, String), CheckError> {
    let config = HostConfig::load(&args.config)?;
    if let (Some(warning), Some(critical)) = (args.warning_days, args.critical_days)
        && critical > warning
    {
        return Err(CheckError::Windows { warning, critical });
    }
    let windows = Windows {
        warning_days: args.warning_days,
        critical_days: args.critical_days,
    };
    Ok(judge(&config, windows, observed).await)
}

/// The status and its line for the certificates of `config` as they are installed now.
async fn judge(
    config: &HostConfig,
    windows: Windows,
    observed: &mut Observed,
) -> (CheckStatus, String) {
    let now = OffsetDateTime::now_utc();
    let certs: Vec<(&String, &CertSpec, Installed<'_>)> = config
        .certs
        .iter()
        .map(|(cert, spec)| (cert, spec, Installed::read(config, cert, spec)))
        .collect();
    let probes = probe_all(&certs).await;
    // Unreadable, the state directory only costs the pending reloads' line.
    let state = StateDir::open(&config.state_dir, false)
        .inspect_err(|err| warn!(error = %err, "pending reloads unknown"))
        .ok();

    let mut findings = Vec::new();
    let mut days = Vec::new();
    for (cert, spec, installed) in &certs {
        let (mut found, left) = evaluate(windows, config, cert, spec, installed, now);
        findings.append(&mut found);
        findings.extend(state.as_ref().and_then(|state| reload_pending(state, cert)));
        days.extend(left);
        for probe in probes.get(cert.as_str()).into_iter().flatten() {
            findings.extend(served(cert, probe, installed.inspection()));
        }
    }
    observed.probed(
        probes
            .iter()
            .map(|(cert, probes)| ((*cert).to_owned(), probes.iter().map(facts).collect()))
            .collect(),
    );
    let (status, text) = line(&findings, &days, certs.len());
    let text = match &state {
        Some(state) => with_fallbacks(text, config, state, &certs),
        None => text,
    };
    (status, text)
}

/// The line with the certificates a fallback CA issued named, and by which CA, before the
/// performance data: not a problem (the status stays), but worth knowing while it lasts.
fn with_fallbacks(
    mut text: String,
    config: &HostConfig,
    state: &StateDir,
    certs: &[(&String, &CertSpec, Installed<'_>)],
) -> String {
    let named: Vec<String> = certs
        .iter()
        .filter_map(|(cert, _, installed)| {
            let issued = installed.issued_by(config, state, cert)?;
            issued.fallback.is_some().then(|| {
                format!(
                    "{cert} by {}",
                    crate::shown::bare(&issued.directory, crate::shown::MAX_VALUE)
                )
            })
        })
        .collect();
    if named.is_empty() {
        return text;
    }
    let note = format!("; issued by a fallback CA: {}", named.join(", "));
    let at = text.find(" |").unwrap_or(text.len());
    text.insert_str(at, &note);
    text
}

/// Probes every target of every certificate, a few at a time.
async fn probe_all<'a>(
    certs: &'a [(&'a String, &'a CertSpec, Installed<'_>)],
) -> BTreeMap<&'a str, Vec<Probe>> {
    let jobs = certs.iter().flat_map(|(cert, spec, installed)| {
        let sni = probe::sni_name(&spec.names);
        spec.probe
            .iter()
            .map(move |target| (cert.as_str(), target, sni.clone(), installed.inspection()))
    });
    let done: Vec<(&str, Probe)> = futures_util::stream::iter(jobs)
        .map(|(cert, target, sni, leaf)| async move {
            let probe = match &sni {
                Some(sni) => probe::probe(target, sni, leaf).await,
                // `certs:` always lists a name: this is a certificate without one.
                None => Probe {
                    target: target.clone(),
                    verdict: Verdict::Unreachable("no name to send as SNI".to_owned()),
                    served: None,
                    at: OffsetDateTime::now_utc(),
                },
            };
            (cert, probe)
        })
        .buffered(PROBE_CONCURRENCY)
        .collect()
        .await;
    let mut by_cert: BTreeMap<&str, Vec<Probe>> = certs
        .iter()
        .map(|(cert, _, _)| (cert.as_str(), Vec::new()))
        .collect();
    for (cert, probe) in done {
        by_cert.entry(cert).or_default().push(probe);
    }
    by_cert
}

/// The problems of one certificate's files, and its days left when it has a certificate.
fn evaluate(
    windows: Windows,
    config: &HostConfig,
    cert: &str,
    spec: &CertSpec,
    installed: &Installed<'_>,
    now: OffsetDateTime,
) -> (Vec<Finding>, Option<Days>) {
    let finding = |status, text: String| Finding {
        status,
        cert: cert.to_owned(),
        text,
    };
    let leaf = match &installed.chain {
        Err(problem) => {
            let text = format!("cannot read the installed certificate: {problem}");
            return (vec![finding(CheckStatus::Critical, text)], None);
        }
        Ok(None) => {
            let text = "no certificate installed".to_owned();
            return (vec![finding(CheckStatus::Critical, text)], None);
        }
        Ok(Some(leaf)) => leaf,
    };
    let mut findings = Vec::new();
    let days = days_left(windows, config, leaf, cert, now);
    let expiry = if days.left <= 0.0 {
        Some((
            CheckStatus::Critical,
            format!("expired {} ago", span(-days.left)),
        ))
    } else {
        [
            (CheckStatus::Critical, "critical", days.critical),
            (CheckStatus::Warning, "warning", days.warning),
        ]
        .into_iter()
        .find(|(_, _, limit)| days.left < *limit)
        .map(|(status, word, limit)| {
            let text = format!(
                "expires in {} ({word} under {} days)",
                span(days.left),
                number(limit)
            );
            (status, text)
        })
    };
    if let Some((status, text)) = expiry {
        findings.push(finding(status, text));
    }
    if let RenewalDecision::Due(reason) = installed.decide(config, spec, now) {
        match reason {
            // The service may not start again without it.
            DueReason::KeyMissing => {
                findings.push(finding(CheckStatus::Critical, reason.to_string()));
            }
            // Served as it is until the next run issues the new one.
            DueReason::NamesChanged { .. }
            | DueReason::KeyTypeChanged { .. }
            | DueReason::IssuerChanged { .. } => {
                findings.push(finding(CheckStatus::Warning, format!("due: {reason}")));
            }
            // Said above from the days left, or by the chain's problem. check asks no CA,
            // so `decide` never answers with the ARI reasons here; were it to, the days
            // left say what matters.
            DueReason::Expiring { .. }
            | DueReason::AriWindow { .. }
            | DueReason::AriSafetyNet { .. }
            | DueReason::Expired
            | DueReason::Missing
            | DueReason::Unreadable(_) => {}
        }
    }
    (findings, Some(days))
}

/// Days left and the two windows: the flags, or a half and a quarter of the renewal window.
/// Every rule has renewed a certificate before half of it is left (the days rule within its
/// first third, docs/renewal.md), save one waiting for a late CA window, which the safety
/// net renews at a third: a quarter left is late by any rule.
fn days_left(
    windows: Windows,
    config: &HostConfig,
    leaf: &Inspection,
    cert: &str,
    now: OffsetDateTime,
) -> Days {
    let renewal = leaf
        .renewal_threshold(config.renew.before_days)
        .as_seconds_f64()
        / SECONDS_PER_DAY;
    let critical = windows.critical_days.map_or(renewal / 4.0, f64::from);
    let warning = windows
        .warning_days
        .map_or(renewal / 2.0, f64::from)
        .max(critical);
    Days {
        cert: cert.to_owned(),
        left: (leaf.not_after - now).as_seconds_f64() / SECONDS_PER_DAY,
        warning,
        critical,
    }
}

/// A reload that failed and waits for the next run: the service may serve the previous
/// certificate until it works.
fn reload_pending(state: &StateDir, cert: &str) -> Option<Finding> {
    let text = match reload::pending(state, cert) {
        Ok(None) => return None,
        Ok(Some(pending)) => {
            // Written escaped by fleetcert; escaped again only when someone put raw control
            // characters in, so a backslash is not doubled in every line.
            let error = if pending.error.chars().any(char::is_control) {
                crate::shown::bare(&pending.error, MAX_RELOAD_ERROR)
            } else {
                pending.error.chars().take(MAX_RELOAD_ERROR).collect()
            };
            format!("reload pending since {}: {error}", pending.since)
        }
        Err(err) => format!("reload pending, its record unreadable: {err}"),
    };
    Some(Finding {
        status: CheckStatus::Warning,
        cert: cert.to_owned(),
        text,
    })
}

/// What one probe says about the service, when it says something is wrong.
fn served(cert: &str, probe: &Probe, installed: Option<&Inspection>) -> Option<Finding> {
    let serial =
        |leaf: Option<&Inspection>| leaf.map_or_else(|| "-".to_owned(), |l| serial_hex(&l.serial));
    let text = match &probe.verdict {
        Verdict::Same => return None,
        Verdict::Older => format!(
            "{} serves the previous certificate (serial {}, installed {}): reload the service",
            probe.target,
            serial(probe.served.as_ref()),
            serial(installed)
        ),
        Verdict::Other => format!(
            "{} serves another certificate (serial {} for [{}]), not the installed one ({})",
            probe.target,
            serial(probe.served.as_ref()),
            probe
                .served
                .as_ref()
                .map(|leaf| crate::shown::bare(&leaf.names.join(", "), crate::shown::MAX_EXCERPT))
                .unwrap_or_default(),
            serial(installed)
        ),
        Verdict::Unreachable(reason) => format!("{} unreachable: {reason}", probe.target),
    };
    Some(Finding {
        status: CheckStatus::Critical,
        cert: cert.to_owned(),
        text,
    })
}

/// The probe as the metrics file keeps it.
fn facts(probe: &Probe) -> ProbeFacts {
    ProbeFacts {
        target: probe.target.clone(),
        result: probe.verdict.label(),
        at: unix_seconds(probe.at),
        served_expiry: probe
            .served
            .as_ref()
            .map(|leaf| unix_seconds(leaf.not_after)),
    }
}

/// The plugin line: the worst status, the problems worst first, the performance data.
fn line(findings: &[Finding], days: &[Days], certs: usize) -> (CheckStatus, String) {
    let status = findings
        .iter()
        .map(|finding| finding.status)
        .max()
        .unwrap_or(CheckStatus::Ok);
    let mut text = format!("FLEETCERT {} - ", status.word());
    if findings.is_empty() {
        let plural = if certs == 1 { "" } else { "s" };
        let _ = write!(text, "{certs} certificate{plural} OK");
        let soonest = days.iter().min_by(|a, b| a.left.total_cmp(&b.left));
        if let Some(soonest) = soonest {
            let _ = write!(
                text,
                ", {} expires first, in {}",
                soonest.cert,
                span(soonest.left)
            );
        }
    } else {
        let mut ordered: Vec<&Finding> = findings.iter().collect();
        // Worst first; within a status, in certificate order (the config's).
        ordered.sort_by_key(|finding| std::cmp::Reverse(finding.status));
        let named: Vec<String> = ordered
            .iter()
            .take(MAX_NAMED)
            .map(|finding| format!("{}: {}", finding.cert, finding.text))
            .collect();
        text.push_str(&named.join("; "));
        if ordered.len() > MAX_NAMED {
            let _ = write!(text, "; and {} more", ordered.len() - MAX_NAMED);
        }
    }
    if !days.is_empty() {
        text.push_str(" |");
        for day in days {
            // Certificate names are letters, digits, `-`, `_` and `.`: no quoting needed.
            // `N:` is the plugins' range "alert below N".
            let _ = write!(
                text,
                " {}_days={:.2};{}:;{}:",
                day.cert,
                day.left,
                number(day.warning),
                number(day.critical)
            );
        }
    }
    (status, text)
}

/// A span of days in words: hours under two days, whole days above.
fn span(days: f64) -> String {
    if days < 2.0 {
        format!("{:.0} h", (days * 24.0).floor())
    } else {
        format!("{:.0} days", days.floor())
    }
}

/// A day count without a useless fraction (20, 6.7).
fn number(days: f64) -> String {
    let rounded = (days * 10.0).round() / 10.0;
    if rounded.fract() == 0.0 {
        format!("{rounded:.0}")
    } else {
        format!("{rounded:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(status: CheckStatus, cert: &str, text: &str) -> Finding {
        Finding {
            status,
            cert: cert.to_owned(),
            text: text.to_owned(),
        }
    }

    fn days(cert: &str, left: f64) -> Days {
        Days {
            cert: cert.to_owned(),
            left,
            warning: 20.0,
            critical: 6.666_666,
        }
    }

    #[test]
    fn the_line_is_the_worst_status_its_problems_and_perfdata() {
        let (status, text) = line(&[], &[days("main", 80.5), days("www", 30.0)], 2);
        assert_eq!(status, CheckStatus::Ok);
        assert_eq!(
            text,
            "FLEETCERT OK - 2 certificates OK, www expires first, in 30 days | \
             main_days=80.50;20:;6.7: www_days=30.00;20:;6.7:"
        );
        let findings = [
            finding(
                CheckStatus::Warning,
                "www",
                "expires in 12 days (warning under 20 days)",
            ),
            finding(
                CheckStatus::Critical,
                "main",
                "127.0.0.1:443 serves the previous certificate",
            ),
        ];
        let (status, text) = line(&findings, &[days("main", 80.5)], 2);
        assert_eq!(status, CheckStatus::Critical);
        assert!(
            text.starts_with(
                "FLEETCERT CRITICAL - main: 127.0.0.1:443 serves the previous certificate; www: \
                 expires in 12 days"
            ),
            "{text}"
        );
        assert!(!text.contains('\n'));
        let many: Vec<Finding> = (0..8)
            .map(|n| finding(CheckStatus::Warning, &format!("c{n}"), "due"))
            .collect();
        let (_, text) = line(&many, &[], 8);
        assert!(text.ends_with("c4: due; and 3 more"), "{text}");
    }

    #[test]
    fn spans_and_numbers_read_as_people_write_them() {
        assert_eq!(span(0.5), "12 h");
        assert_eq!(span(12.9), "12 days");
        assert_eq!(number(20.0), "20");
        assert_eq!(number(10.0 / 3.0), "3.3");
        assert_eq!(CheckStatus::Unknown.code(), 3);
    }
}
