//! What a run knows for the file: its scope (whose series it rewrites), its command's run,
//! each certificate's facts, a publication's. Plain data; samples.rs turns it into samples.

use std::time::Duration;

use super::Sample;

/// Whose series a run rewrites.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scope {
    /// A host config: its `host`.
    Host(String),
    /// A zone config: its `zone`.
    Zone(String),
}

impl Scope {
    pub(super) fn label(&self) -> (&'static str, &str) {
        match self {
            Self::Host(host) => ("host", host),
            Self::Zone(zone) => ("zone", zone),
        }
    }

    pub(super) fn holds(&self, sample: &Sample) -> bool {
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
    /// Its `rule` label: the rule that set `renews`, as the due reason's label once it comes.
    pub(crate) renews_by: &'static str,
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
