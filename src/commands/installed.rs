//! What `request`, `finalize` and `status` share: one configured certificate's files on disk.

use time::OffsetDateTime;

use crate::acme::IssuedBy;
use crate::cert::{
    CertDir, CertPaths, DueReason, FileNames, Inspection, RenewalDecision, RenewalWindow, Schedule,
    SetError, Wanted, inspect_chain, serial_hex,
};
use crate::config::{CertSpec, HostConfig};
use crate::issuer::Origin;
use crate::reload::Subject;
use crate::state::StateDir;

/// One configured certificate as found on disk.
pub(crate) struct Installed<'c> {
    pub(crate) names: FileNames,
    /// Its directory, to install a new set into.
    pub(crate) dir: CertDir<'c>,
    pub(crate) paths: CertPaths,
    /// What the full chain says; `Err` says why it cannot be read.
    pub(crate) chain: Result<Option<Inspection>, SetError>,
    key_present: bool,
    /// Who made the certificate on disk, when it parses.
    pub(crate) origin: Option<Origin>,
}

impl<'c> Installed<'c> {
    /// Reads the files of certificate `cert` (one set, from one version).
    pub(crate) fn read(config: &'c HostConfig, cert: &str, spec: &CertSpec) -> Self {
        let (names, dir) = config.files_of(cert, spec);
        let paths = names.paths(&config.cert_dir);
        let (chain, key_present, origin) = match dir.read_set(&names) {
            Ok(set) => {
                let origin = set
                    .fullchain
                    .as_ref()
                    .and_then(|bytes| Origin::read(&bytes.0, &config.issuer));
                let chain = match &set.fullchain {
                    None => Ok(None),
                    Some(bytes) => {
                        inspect_chain(&bytes.0)
                            .map(Some)
                            .map_err(|source| SetError::Chain {
                                path: paths.fullchain.clone(),
                                source,
                            })
                    }
                };
                (chain, set.key.is_some(), origin)
            }
            Err(err) => (Err(err.into()), false, None),
        };
        Self {
            names,
            dir,
            paths,
            chain,
            key_present,
            origin,
        }
    }

    /// The CA that issued the certificate on disk, when a CA did: the one `finalize`
    /// recorded for it, else the primary (what every certificate came from before fallback
    /// CAs existed). `None` without a certificate, or for a test issuer's.
    pub(crate) fn issued_by(
        &self,
        config: &HostConfig,
        state: &StateDir,
        cert: &str,
    ) -> Option<IssuedBy> {
        let inspection = self.inspection()?;
        if !self.origin.as_ref().is_some_and(Origin::is_from_a_ca) {
            return None;
        }
        Some(
            IssuedBy::of(state, cert, inspection)
                .unwrap_or_else(|| IssuedBy::new(&config.acme.directory, inspection, None)),
        )
    }

    /// The leaf's facts, when the chain parses.
    pub(crate) fn inspection(&self) -> Option<&Inspection> {
        self.chain.as_ref().ok().and_then(Option::as_ref)
    }

    /// What a reload of certificate `cert` is about: the directory the service reads and
    /// the leaf the probes compare it with (reload.rs).
    pub(crate) fn reload_subject<'a>(&'a self, cert: &'a str, spec: &'a CertSpec) -> Subject<'a> {
        Subject {
            cert,
            spec,
            dir: &self.paths.dir,
            installed: self.inspection(),
        }
    }

    /// Expiry of the certificate on disk, RFC 3339.
    pub(crate) fn not_after(&self) -> Option<String> {
        self.inspection()
            .map(|inspection| rfc3339(inspection.not_after))
    }

    /// The serial of the certificate on disk (upper-case hex), if there is one.
    pub(crate) fn serial(&self) -> Option<String> {
        self.inspection()
            .map(|inspection| serial_hex(&inspection.serial))
    }

    /// Whether this certificate must be issued, from the files alone (the days rule, as
    /// without an answer from the CA's ARI).
    pub(crate) fn decide(
        &self,
        config: &HostConfig,
        spec: &CertSpec,
        now: OffsetDateTime,
    ) -> RenewalDecision {
        self.decide_with(config, spec, now, None)
    }

    /// Whether this certificate must be issued, with the CA's window when it gave one. A
    /// certificate the configured issuer did not make is due at once, whatever the window.
    pub(crate) fn decide_with(
        &self,
        config: &HostConfig,
        spec: &CertSpec,
        now: OffsetDateTime,
        ari: Option<RenewalWindow>,
    ) -> RenewalDecision {
        if let Some(reason) = self.issuer_change(config) {
            return RenewalDecision::Due(reason);
        }
        match &self.chain {
            Ok(None) => RenewalDecision::Due(DueReason::Missing),
            Err(problem) => RenewalDecision::Due(DueReason::Unreadable(problem.to_string())),
            Ok(Some(_)) if !self.key_present => RenewalDecision::Due(DueReason::KeyMissing),
            Ok(Some(inspection)) => inspection.decide(
                Wanted {
                    names: &spec.names,
                    key_type: config.key,
                    before_days: config.renew.before_days,
                },
                now,
                ari,
            ),
        }
    }

    /// When the certificate on disk renews (docs/renewal.md), when there is one.
    pub(crate) fn schedule(
        &self,
        config: &HostConfig,
        ari: Option<RenewalWindow>,
    ) -> Option<Schedule> {
        self.inspection()
            .map(|inspection| inspection.schedule(config.renew.before_days, ari))
    }

    /// Why the certificate must be issued again because the configured issuer did not make
    /// it (commands/local.rs decides whether a test issuer may replace a CA's).
    fn issuer_change(&self, config: &HostConfig) -> Option<DueReason> {
        config.issuer.change_from(self.origin.as_ref()?)
    }
}

pub(crate) use crate::timestamp::rfc3339;
