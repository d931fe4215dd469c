//! `fleetcert status`: the certificates on disk and their pending orders, with no network.

use serde::Serialize;
use time::OffsetDateTime;

use super::installed::Installed;
use super::report::{print_json, print_text};
use crate::cert::CertPaths;
use crate::cli::{StatusArgs, StatusFormat};
use crate::config::HostConfig;
use crate::dns::DnsName;
use crate::error::{Error, Outcome};
use crate::issuer::LocalOrders;
use crate::state::StateDir;

/// The JSON report of `status` (docs/reports.md).
#[derive(Debug, Serialize)]
struct Report {
    host: DnsName,
    certs: Vec<CertLine>,
}

#[derive(Debug, Serialize)]
struct CertLine {
    name: String,
    names: Vec<DnsName>,
    /// Expiry of the certificate on disk; `null` when there is none.
    not_after: Option<String>,
    /// Whole days until expiry (negative once expired).
    days_left: Option<i64>,
    /// The key type of the certificate on disk.
    key_type: Option<String>,
    /// Whether an order waits for `finalize`.
    pending: bool,
    /// The directory URL of the CA that issued the certificate on disk.
    ca: Option<String>,
    /// Why a fallback CA issued it, when one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    fallback: Option<String>,
    paths: CertPaths,
    /// Why the files on disk cannot be read, if they cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    problem: Option<String>,
}

pub(crate) fn run(args: &StatusArgs) -> Result<Outcome, Error> {
    let config = HostConfig::load(&args.config)?;
    let state = StateDir::open(&config.state_dir, false)?;
    let now = OffsetDateTime::now_utc();
    let local = super::local::load_orders(&state).unwrap_or_else(|_| LocalOrders::new());
    let certs = config
        .certs
        .iter()
        .map(|(cert, spec)| {
            let installed = Installed::read(&config, cert, spec);
            let inspection = installed.inspection();
            let issued = installed.issued_by(&config, &state, cert);
            CertLine {
                name: cert.clone(),
                names: spec.names.clone(),
                not_after: installed.not_after(),
                days_left: inspection.map(|i| (i.not_after - now).whole_days()),
                key_type: inspection.and_then(|i| i.key_type).map(|t| t.to_string()),
                pending: state.has_order(cert) || local.orders.contains_key(cert),
                ca: issued.as_ref().map(|issued| issued.directory.clone()),
                fallback: issued.and_then(|issued| issued.fallback),
                problem: installed.chain.as_ref().err().map(ToString::to_string),
                paths: installed.paths.clone(),
            }
        })
        .collect();
    let report = Report {
        host: config.host.clone(),
        certs,
    };
    match args.format {
        StatusFormat::Json => print_json(&report)?,
        StatusFormat::Table => print_text(&table(&report))?,
    }
    Ok(Outcome::Success)
}

/// One line per certificate, columns aligned, for people.
fn table(report: &Report) -> String {
    let mut rows = vec![[
        "CERT".to_owned(),
        "NOT AFTER".to_owned(),
        "DAYS".to_owned(),
        "PENDING".to_owned(),
        "NAMES".to_owned(),
    ]];
    for cert in &report.certs {
        rows.push([
            cert.name.clone(),
            cert.not_after.clone().unwrap_or_else(|| "-".to_owned()),
            cert.days_left
                .map_or_else(|| "-".to_owned(), |days| days.to_string()),
            if cert.pending { "yes" } else { "no" }.to_owned(),
            cert.names
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
        ]);
    }
    let mut widths = [0usize; 5];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let mut text = String::new();
    for row in &rows {
        let mut line = String::new();
        for (index, (cell, width)) in row.iter().zip(widths).enumerate() {
            if index + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  "));
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}
