//! The errors that end a whole command, and the exit code each one means (docs/exit-codes.md).
//!
//! 0, 1 and 3 come with a report on stdout ([`Outcome`]); 2 and 4 never do ([`Error`]): 2
//! when the operator's config or input is at fault and nothing changed, 4 when the run failed
//! as a whole (the CA or a DNS server unreachable, an I/O error) and the old files stay.

use std::process::ExitCode;

use crate::acme::AcmeError;
use crate::cert::IncomingError;
use crate::config::ConfigError;
use crate::hiera::HieraError;
use crate::lock::LockError;
use crate::store::StoreError;
use crate::token::TokenError;
use crate::zone::ZoneError;

/// How a command that printed its report ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// 0: everything done.
    Success,
    /// 1: some certificates failed; the others were still handled.
    SomeFailed,
    /// 3: the zone is published but not yet visible on every server.
    PropagationTimeout,
    /// `fleetcert check`: the monitoring plugins' 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
    Check(CheckStatus),
}

/// The state a monitoring plugin reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum CheckStatus {
    /// 0: every certificate is fine.
    Ok,
    /// 1: something needs attention soon.
    Warning,
    /// 2: something is wrong now.
    Critical,
    /// 3: the check itself could not run.
    Unknown,
}

impl CheckStatus {
    /// The exit code the plugins' convention gives it.
    pub(crate) fn code(self) -> u8 {
        match self {
            Self::Ok => 0,
            Self::Warning => 1,
            Self::Critical => 2,
            Self::Unknown => 3,
        }
    }

    /// The word the status line starts with.
    pub(crate) fn word(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::Warning => "WARNING",
            Self::Critical => "CRITICAL",
            Self::Unknown => "UNKNOWN",
        }
    }
}

/// Prints `fleetcert: error: LINE` on stderr. A stderr that cannot take it (a full disk, a
/// pipe whose reader is gone) loses the line, never the exit code: `eprintln!` would panic
/// there, and exit 101 means nothing to a caller (docs/exit-codes.md).
pub(crate) fn print_error_line(line: &dyn std::fmt::Display) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "fleetcert: error: {line}");
}

/// Exit code for bad usage, config or input: nothing was changed.
pub(crate) const EXIT_USAGE: u8 = 2;
/// Exit code for a run that failed as a whole: no report, the old files stay.
const EXIT_RUN_FAILED: u8 = 4;

impl Outcome {
    pub(crate) fn exit_code(self) -> ExitCode {
        ExitCode::from(self.code())
    }

    /// The exit code as a number (the metrics record it).
    pub(crate) fn code(self) -> u8 {
        match self {
            Self::Success => 0,
            Self::SomeFailed => 1,
            Self::PropagationTimeout => 3,
            Self::Check(status) => status.code(),
        }
    }

    /// 1 when `failed`, else 0.
    pub(crate) fn from_failures(failed: bool) -> Self {
        if failed {
            Self::SomeFailed
        } else {
            Self::Success
        }
    }
}

/// A failure that ends the whole command, before its report.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// The config file cannot be used.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The token documents cannot be used.
    #[error(transparent)]
    Tokens(#[from] TokenError),
    /// A file could not be read or written, or is not one fleetcert may touch.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The CA or the account failed as a whole.
    #[error(transparent)]
    Acme(#[from] AcmeError),
    /// The CA did not answer as an ACME server: the line names the key that points at it.
    #[error(
        "{source}; check `acme.directory` in {config} (and `acme.ca_bundle` for a CA with a \
         root of its own), and that this host reaches the CA (a proxy, a firewall, DNS)"
    )]
    CaUnreachable {
        /// The host config, shown.
        config: String,
        /// Boxed: the error is returned by every command, and this one is rare.
        #[source]
        source: Box<AcmeError>,
    },
    /// Publishing the signing zone failed.
    #[error(transparent)]
    Zone(#[from] ZoneError),
    /// The hiera export failed.
    #[error(transparent)]
    Hiera(#[from] HieraError),
    /// `install` refused the set, or could not install it.
    #[error(transparent)]
    Install(#[from] IncomingError),
    /// Another run holds the lock.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// The report could not be written.
    #[error(transparent)]
    Report(#[from] ReportError),
    /// The async runtime could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

impl Error {
    /// The error, naming `config`'s `acme.directory` when the CA did not answer.
    pub(crate) fn naming_config(self, config: &std::path::Path) -> Self {
        match self {
            Self::Acme(source) if source.is_unreachable() => Self::CaUnreachable {
                config: crate::shown::path(config),
                source: Box::new(source),
            },
            other => other,
        }
    }

    /// 2 when the operator must fix the config, the input or a file; 4 otherwise.
    pub(crate) fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.code())
    }

    /// The exit code as a number (the metrics record it).
    pub(crate) fn code(&self) -> u8 {
        let usage = match self {
            Self::Config(_) | Self::Tokens(_) => true,
            Self::Store(err) => err.is_refusal(),
            Self::Acme(err) => err.is_usage(),
            Self::CaUnreachable { source, .. } => source.is_usage(),
            Self::Zone(err) => err.is_usage(),
            Self::Hiera(err) => err.is_usage(),
            Self::Install(err) => err.is_usage(),
            Self::Lock(LockError::Store(err)) => err.is_refusal(),
            Self::Lock(LockError::Held { .. }) | Self::Report(_) | Self::Runtime(_) => false,
        };
        if usage { EXIT_USAGE } else { EXIT_RUN_FAILED }
    }
}

/// A report could not be written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReportError {
    /// The report does not serialize (a bug: please report it).
    #[error("cannot write the JSON report: {0} (a bug in fleetcert: please report it)")]
    Serialize(#[source] serde_json::Error),
    /// Standard output cannot be written.
    #[error("cannot write the report to stdout: {0}")]
    Stdout(#[source] std::io::Error),
}
