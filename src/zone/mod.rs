//! The signing zone: token input, ledger, serial, render, check, atomic replace, reload, lock.
//!
//! `commands::publish` strings these together; each module owns one step and its errors are
//! variants of [`ZoneError`], so every failure ends as one line naming the thing and the fix.

mod check;
mod input;
mod ledger;
mod lock;
mod render;
mod replace;
mod serial;

use std::path::PathBuf;
use std::time::Duration;

pub(crate) use check::check_rendered;
pub(crate) use input::{RecordProblem, Submission, TxtRecord, read_tokens};
pub(crate) use ledger::Ledger;
pub(crate) use lock::ZoneLock;
pub(crate) use render::{ZoneData, ZoneTemplate};
pub(crate) use replace::{CheckZone, ReloadFailure, StagedZone, reload, replace_and_reload};
pub(crate) use serial::{from_zone_text as serial_in_zone_text, has_reached, next as next_serial};

use crate::store::StoreError;

/// Publishing the signing zone failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum ZoneError {
    /// A `--tokens` file cannot be read.
    #[error("cannot read tokens {}: {source}", path.display())]
    TokensRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `-` was given more than once: standard input can be read only once.
    #[error("--tokens - was given more than once: standard input can be read only once")]
    StdinTwice,
    /// A `--tokens` file is not JSON of a shape `publish` reads.
    #[error("tokens {origin}: {problem}")]
    TokensSyntax { origin: String, problem: String },
    /// A token document as a whole was refused.
    #[error("tokens {origin}: host {host}: {problem}")]
    Document {
        origin: String,
        host: String,
        problem: String,
    },
    /// One record of a token document was refused.
    #[error("tokens {origin}: host {host}, record {record}: {problem}")]
    Record {
        origin: String,
        host: String,
        record: String,
        problem: Box<RecordProblem>,
    },
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
    Reload(#[from] ReloadFailure),
    /// The ledger beside the zone file cannot be used.
    #[error("ledger {}: {problem}", path.display())]
    Ledger { path: PathBuf, problem: String },
    /// Another publish holds the lock for longer than `lock_timeout`.
    #[error(
        "another publish (pid {holder}) holds {} and did not finish within {}s: \
         wait for it, or raise `lock_timeout`",
        path.display(),
        waited.as_secs()
    )]
    Locked {
        path: PathBuf,
        holder: String,
        waited: Duration,
    },
    /// One name would hold more TXT values than the servers load (`max_values_per_name`).
    #[error(
        "the signing zone would hold {count} TXT values at {name}, more than \
         max_values_per_name ({max}): BIND 9.18.28 and later refuse to load a zone with more \
         records of one type at one name than max-records-per-type (default 100); use \
         challenge_records: per-name, publish fewer hosts at once, or raise both limits \
         together; the zone file is unchanged"
    )]
    Crowded {
        name: String,
        count: usize,
        max: usize,
    },
    /// The authoritative servers cannot be found or asked.
    #[error("zone {zone}: {problem}")]
    Servers { zone: String, problem: String },
    /// A file could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ZoneError {
    /// Whether the operator's input or config is at fault and nothing was changed (exit 2).
    /// A failed reload also counts: the previous zone is back and the fix is the config.
    pub(crate) fn is_input(&self) -> bool {
        matches!(
            self,
            Self::TokensRead { .. }
                | Self::StdinTwice
                | Self::TokensSyntax { .. }
                | Self::Document { .. }
                | Self::Record { .. }
                | Self::Template { .. }
                | Self::Rendered { .. }
                | Self::CheckZone { .. }
                | Self::Crowded { .. }
                | Self::Reload(_)
        )
    }
}

/// Shows an untrusted string in an error line: escaped, so a newline or a control character
/// cannot break the one-line message, and shortened.
pub(crate) fn shown(text: &str) -> String {
    /// Enough to recognise a name; a hostile 1 MB value must not flood the log.
    const MAX_SHOWN: usize = 80;
    let mut escaped: String = text
        .chars()
        .take(MAX_SHOWN)
        .flat_map(char::escape_debug)
        .collect();
    if text.chars().count() > MAX_SHOWN {
        escaped.push_str("...");
    }
    format!("`{escaped}`")
}
