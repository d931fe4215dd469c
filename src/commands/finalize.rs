//! `fleetcert finalize`: complete each pending order and install its certificate.
//!
//! Each certificate is finished on its own: one whose validation fails is reported with the
//! CA's problem and leaves its old files byte-identical, while the others still complete.

use futures_util::future::join_all;
use instant_acme::Account;
use serde::Serialize;
use tracing::{info, warn};

use super::installed::{Installed, rfc3339};
use crate::acme::{self, AcmeError, IssuedChain, PendingOrder};
use crate::cert::PrivateKey;
use crate::cli::HostArgs;
use crate::config::HostConfig;
use crate::error::{Error, Outcome};
use crate::store::{self, Access, CertPaths, StoreError};

/// The JSON report of one finalize run (docs/reports.md).
#[derive(Debug, Serialize)]
struct Report {
    host: String,
    /// Whether any certificate file was replaced (Ansible's `changed`).
    changed: bool,
    certs: Vec<CertReport>,
}

#[derive(Debug, Serialize)]
struct CertReport {
    name: String,
    status: FinalizeStatus,
    /// Whether this certificate's files were replaced (or would be, with `--dry-run`).
    changed: bool,
    names: Vec<String>,
    not_after: Option<String>,
    paths: CertPaths,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// What finalize did with one certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum FinalizeStatus {
    /// A new certificate was installed.
    Issued,
    /// No pending order: nothing was done, the files on disk (if any) stay.
    Unchanged,
    /// `--dry-run`: a pending order would be completed.
    WouldIssue,
    /// The order could not be completed; `error` says why, old files are untouched.
    Failed,
}

pub(crate) async fn run(args: HostArgs) -> Result<Outcome, Error> {
    let config = HostConfig::load(&args.config)?;
    let pending: Vec<_> = config
        .certs
        .iter()
        .map(|(cert, names)| {
            (
                cert.as_str(),
                names.as_slice(),
                PendingOrder::load(&config.state_dir, cert),
            )
        })
        .collect();
    let any_pending = pending
        .iter()
        .any(|(_, _, saved)| !matches!(saved, Ok(None)));
    let account = if any_pending && !args.dry_run {
        match acme::open_existing(&config.acme, &config.state_dir).await {
            Ok(Some(account)) => Ok(account),
            Ok(None) => Err(format!(
                "no ACME account for {} in {}: run request first",
                config.acme.directory,
                config.state_dir.display()
            )),
            Err(err) => Err(err.to_string()),
        }
    } else {
        Err("not needed".to_owned())
    };
    let finalize = pending.into_iter().map(|(cert, names, saved)| {
        finalize_one(&config, account.as_ref(), args.dry_run, cert, names, saved)
    });
    let certs = join_all(finalize).await;
    let failed = certs
        .iter()
        .any(|cert| cert.status == FinalizeStatus::Failed);
    let report = Report {
        host: config.host.clone(),
        changed: certs.iter().any(|cert| cert.changed),
        certs,
    };
    super::print_json(&report)?;
    Ok(if failed {
        Outcome::SomeFailed
    } else {
        Outcome::Success
    })
}

async fn finalize_one(
    config: &HostConfig,
    account: Result<&Account, &String>,
    dry_run: bool,
    cert: &str,
    names: &[String],
    saved: Result<Option<PendingOrder>, AcmeError>,
) -> CertReport {
    let installed = Installed::read(config, cert, names);
    let report = |status, changed, not_after, error| CertReport {
        name: cert.to_owned(),
        status,
        changed,
        names: names.to_vec(),
        not_after,
        paths: installed.paths.clone(),
        error,
    };
    let failed = |error: String| {
        warn!(cert, error, "cannot finalize");
        report(
            FinalizeStatus::Failed,
            false,
            installed.not_after(),
            Some(error),
        )
    };
    let saved = match saved {
        Ok(Some(saved)) => saved,
        Ok(None) => {
            return report(
                FinalizeStatus::Unchanged,
                false,
                installed.not_after(),
                None,
            );
        }
        Err(err) => return failed(err.to_string()),
    };
    let acme = &config.acme;
    if !saved.fits(names, config.key, acme.profile.as_deref(), &acme.directory) {
        if !dry_run && let Err(err) = PendingOrder::remove(&config.state_dir, cert) {
            return failed(err.to_string());
        }
        return failed(format!(
            "the config changed since the order was made (it was for [{}], {}, at {}): run request again",
            saved.names.join(", "),
            saved.key,
            saved.directory
        ));
    }
    if dry_run {
        return report(
            FinalizeStatus::WouldIssue,
            true,
            installed.not_after(),
            None,
        );
    }
    let account = match account {
        Ok(account) => account,
        Err(problem) => return failed(problem.clone()),
    };
    match issue(config, account, &saved, cert, &installed.paths).await {
        Ok(chain) => {
            info!(cert, not_after = %rfc3339(chain.inspection.not_after), "installed");
            report(
                FinalizeStatus::Issued,
                true,
                Some(rfc3339(chain.inspection.not_after)),
                None,
            )
        }
        Err(err) => {
            // A dead order is forgotten so that the next request makes a new one; after a
            // timeout or a network failure it stays, and the next finalize picks it up.
            if err.order_is_dead()
                && let Err(remove) = PendingOrder::remove(&config.state_dir, cert)
            {
                warn!(cert, error = %remove, "cannot forget the failed order");
            }
            failed(err.to_string())
        }
    }
}

/// Completes the order, checks the chain, installs the files, forgets the order.
async fn issue(
    config: &HostConfig,
    account: &Account,
    saved: &PendingOrder,
    cert: &str,
    paths: &CertPaths,
) -> Result<IssuedChain, AcmeError> {
    let (key, pem) = acme::complete(account, saved, &config.state_dir, cert).await?;
    let chain = acme::verify_chain(&pem, &key, &saved.names)?;
    install(config, paths, &key, &chain)?;
    PendingOrder::remove(&config.state_dir, cert)?;
    Ok(chain)
}

/// Writes the four files as one set: all staged (written, fsynced, with mode and group)
/// before the first rename, so a failure part-way leaves every old file in place.
fn install(
    config: &HostConfig,
    paths: &CertPaths,
    key: &PrivateKey,
    chain: &IssuedChain,
) -> Result<(), StoreError> {
    let gid = Some(config.group.gid);
    let dir = Access {
        mode: store::DIR_MODE,
        gid,
    };
    let secret = Access {
        mode: store::KEY_MODE,
        gid,
    };
    let public = Access {
        mode: store::CERT_MODE,
        gid,
    };
    store::ensure_dir(&paths.dir, dir)?;
    let staged = [
        store::stage(&paths.key, key.to_pem().as_bytes(), secret)?,
        store::stage(&paths.cert, chain.leaf.as_bytes(), public)?,
        store::stage(&paths.chain, chain.intermediates.as_bytes(), public)?,
        store::stage(&paths.fullchain, chain.full.as_bytes(), public)?,
    ];
    for file in staged {
        file.commit()?;
    }
    store::sync_dir(&paths.dir)
}
