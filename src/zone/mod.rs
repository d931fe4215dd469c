//! The signing zone: the ledger of who owns which records, the lock, and the publishers
//! behind one seam.
//!
//! [`publish`] is the flow every publisher shares: take the lock, apply the hosts'
//! submissions to the ledger, save it, let the [`ZoneWriter`] change the zone, then wait
//! until every authoritative server serves it. A writer only answers "make the zone hold
//! these records; which serial do I wait for": the file writer ([`FileWriter`]: render,
//! check, replace, reload) is one; the dynamic-update writer ([`UpdateWriter`]: read the
//! zone, send signed UPDATE messages for the TXT values that changed) is the other.

mod check;
mod file;
mod ledger;
mod publish;
mod render;
mod update;

#[cfg(fuzzing)]
pub(crate) use check::check_rendered;
pub(crate) use file::FileWriter;
pub(crate) use ledger::Ledger;
pub(crate) use publish::{Publication, publish};
#[cfg(fuzzing)]
pub(crate) use render::{ZoneData, ZoneTemplate};
pub(crate) use update::UpdateWriter;

use crate::dns::DiscoverError;
use crate::store::StoreError;

/// Publishing the signing zone failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ZoneError {
    /// The template cannot be read, compiled or rendered.
    #[error("template {origin}: {message}")]
    Template { origin: String, message: String },
    /// The rendered zone holds something other than what was validated.
    #[error("template {origin} rendered a zone that fails its check at line {line}: {problem}")]
    Rendered {
        origin: String,
        line: usize,
        problem: String,
    },
    /// `named-checkzone` refused the rendered zone.
    #[error(
        "named-checkzone refused the rendered zone {zone}: {output}; the zone file is unchanged"
    )]
    CheckZone { zone: String, output: String },
    /// The reload command failed; the previous zone was put back.
    #[error(transparent)]
    Reload(#[from] file::ReloadFailure),
    /// Another publish holds the lock for longer than `lock_timeout`.
    #[error(transparent)]
    Locked(#[from] crate::lock::LockError),
    /// One name would hold more TXT values than the servers load (`max_values_per_name`).
    #[error(
        "the signing zone would hold {count} TXT values at {name}, more than \
         max_values_per_name ({max}): BIND 9.18.28 and later refuse to load a zone with more \
         records of one type at one name than max-records-per-type (default 100); {advice}; \
         the zone is unchanged"
    )]
    Crowded {
        name: String,
        count: usize,
        max: usize,
        advice: &'static str,
    },
    /// The authoritative servers cannot be found.
    #[error("zone {zone}: {source}")]
    Servers {
        zone: String,
        #[source]
        source: DiscoverError,
    },
    /// The zone file is something fleetcert must not replace.
    #[error("zone_file {path} {problem}")]
    ZoneFile { path: String, problem: String },
    /// A file could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The primary did not take the dynamic update.
    #[error(transparent)]
    Update(Box<crate::dns::UpdateError>),
    /// The zone changed under every attempt of a dynamic update.
    #[error(
        "zone {zone} on {server} changed between reading and updating it in each of \
         {attempts} attempts: another client keeps changing the same TXT records; what \
         fleetcert had changed was put back{undo}"
    )]
    Contended {
        zone: String,
        server: std::net::SocketAddr,
        attempts: u32,
        undo: String,
    },
    /// One TXT set holds more values than one UPDATE message can carry with its prerequisite.
    #[error(
        "the TXT set at {name} is too large to change atomically in one UPDATE message: lower \
         max_values_per_name, or use challenge_records: per-name"
    )]
    SetTooLarge { name: String },
}

impl From<crate::dns::UpdateError> for ZoneError {
    fn from(err: crate::dns::UpdateError) -> Self {
        Self::Update(Box::new(err))
    }
}

impl ZoneError {
    /// Whether the operator's input or config is at fault and nothing was changed (exit 2),
    /// rather than the run failing as a whole (exit 4).
    pub(crate) fn is_usage(&self) -> bool {
        match self {
            Self::Template { .. }
            | Self::Rendered { .. }
            | Self::CheckZone { .. }
            | Self::Crowded { .. }
            | Self::ZoneFile { .. }
            | Self::SetTooLarge { .. } => true,
            Self::Store(err) | Self::Locked(crate::lock::LockError::Store(err)) => err.is_refusal(),
            Self::Update(err) => err.is_usage(),
            Self::Contended { .. } => false,
            Self::Reload(_) | Self::Locked(_) | Self::Servers { .. } => false,
        }
    }
}
