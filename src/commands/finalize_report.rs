//! The report of `finalize` (docs/reports.md): what happened to each certificate's files and
//! its reload. `finalize` with a CA, with a test issuer (commands/local.rs) and `install`
//! write it; `renew` embeds it.

use serde::Serialize;

use super::installed::Installed;
use crate::acme::IssuedBy;
use crate::cert::CertPaths;
use crate::config::{CertSpec, HostConfig};
use crate::dns::DnsName;
use crate::reload;
use crate::state::StateDir;
use crate::token::CheckVerdict;

/// The JSON report of one finalize run (docs/reports.md).
#[derive(Debug, Serialize)]
pub(super) struct Report {
    host: String,
    /// Whether any certificate file was replaced (Ansible's `changed`).
    pub(super) changed: bool,
    pub(super) certs: Vec<CertReport>,
    /// `--check`: what `fleetcert check` says after the installs and reloads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) check: Option<CheckVerdict>,
}

#[derive(Debug, Serialize)]
pub(super) struct CertReport {
    pub(super) name: String,
    status: FinalizeStatus,
    /// Whether this certificate's files were replaced (or would be, with `--dry-run`).
    changed: bool,
    names: Vec<DnsName>,
    not_after: Option<String>,
    paths: CertPaths,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// The directory URL of the CA that issued the certificate installed by this run.
    #[serde(skip_serializing_if = "Option::is_none")]
    ca: Option<String>,
    /// Why a fallback CA issued it: what the primary said, and why it could not wait.
    #[serde(skip_serializing_if = "Option::is_none")]
    fallback: Option<String>,
    /// Whether `reload` ran and the service is on the installed set; `null` when no reload
    /// was due (nothing changed, none pending, none configured, `--dry-run`).
    reloaded: Option<bool>,
    /// Why the reload failed: it stays pending and every later run tries it again.
    #[serde(skip_serializing_if = "Option::is_none")]
    reload_error: Option<String>,
}

/// What finalize did with one certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum FinalizeStatus {
    /// A new certificate was installed.
    Issued,
    /// No pending order: nothing was done, the files on disk (if any) stay.
    Unchanged,
    /// `--dry-run`: a pending order would be completed.
    WouldIssue,
    /// The order could not be completed; `error` says why, old files are untouched.
    Failed,
    /// No pending order, but the keystore was missing or no longer fit `pkcs12:` (new, or
    /// another password or alias): it was rebuilt from the installed key and chain and
    /// installed with them as one set.
    KeystoreWritten,
    /// `--dry-run`: the keystore would be rebuilt.
    WouldWriteKeystore,
    /// `install`: the set from another host was installed.
    Installed,
    /// `install --dry-run`: the set would be installed.
    WouldInstall,
}

impl Report {
    /// Whether some certificate could not be finalized, or its service not reloaded.
    pub(super) fn failed(&self) -> bool {
        self.certs
            .iter()
            .any(|cert| cert.status == FinalizeStatus::Failed || cert.reloaded == Some(false))
    }

    /// The report of `certs`.
    pub(super) fn new(config: &HostConfig, certs: Vec<CertReport>) -> Self {
        Self {
            host: config.host.to_string(),
            changed: certs.iter().any(|cert| cert.changed),
            certs,
            check: None,
        }
    }
}

impl CertReport {
    /// The report of `cert`, whose files are `installed`.
    pub(super) fn new(
        cert: &str,
        spec: &CertSpec,
        installed: &Installed<'_>,
        status: FinalizeStatus,
        not_after: Option<String>,
        error: Option<String>,
    ) -> Self {
        Self {
            name: cert.to_owned(),
            status,
            changed: !matches!(status, FinalizeStatus::Unchanged | FinalizeStatus::Failed),
            names: spec.names.clone(),
            not_after,
            paths: installed.paths.clone(),
            error,
            ca: None,
            fallback: None,
            reloaded: None,
            reload_error: None,
        }
    }

    /// Runs the reload this certificate owes (its files changed, or an earlier one failed)
    /// and says how it went (reload.rs).
    pub(super) async fn reload(
        &mut self,
        config: &HostConfig,
        state: &StateDir,
        spec: &CertSpec,
        dry_run: bool,
    ) {
        let files_changed = self.changed && self.status != FinalizeStatus::Failed;
        // What is on disk now: the probes compare the service with it.
        let installed = Installed::read(config, &self.name, spec);
        let subject = installed.reload_subject(&self.name, spec);
        if let Some(result) = reload::settle(state, &subject, files_changed, dry_run).await {
            self.reloaded = Some(result.is_ok());
            self.reload_error = result.err().map(|err| err.to_string());
        }
    }

    /// Names the CA that issued the new certificate, and why a fallback did.
    pub(super) fn issued_by(mut self, issued: IssuedBy) -> Self {
        self.ca = Some(issued.directory);
        self.fallback = issued.fallback;
        self
    }
}
