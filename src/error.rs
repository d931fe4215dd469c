//! The errors that end a command, and the exit code each one means.

use std::process::ExitCode;

use crate::acme::AcmeError;
use crate::config::ConfigError;
use crate::hiera::HieraError;
use crate::store::StoreError;
use crate::zone::ZoneError;

/// Exit codes, by meaning (see docs/exit-codes.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// 0: everything done.
    Success,
    /// 1: some certificates failed; the others were still handled.
    SomeFailed,
    /// 3: the zone is published but not yet visible on every server.
    PropagationTimeout,
}

/// Exit code for bad usage, config or input: nothing was changed.
const EXIT_USAGE: u8 = 2;
/// Exit code for a failure of the whole run that is not the operator's input (CA unreachable).
const EXIT_FAILED: u8 = 1;

impl Outcome {
    pub(crate) fn exit_code(self) -> ExitCode {
        ExitCode::from(match self {
            Self::Success => 0,
            Self::SomeFailed => EXIT_FAILED,
            Self::PropagationTimeout => 3,
        })
    }
}

/// A failure that ends the whole command.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// The config file cannot be used.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A file could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The CA or the account failed as a whole.
    #[error(transparent)]
    Acme(#[from] AcmeError),
    /// Publishing the signing zone failed.
    #[error(transparent)]
    Zone(#[from] ZoneError),
    /// The hiera export failed.
    #[error(transparent)]
    Hiera(#[from] HieraError),
    /// The async runtime could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

impl Error {
    pub(crate) fn exit_code(&self) -> ExitCode {
        let code = match self {
            Self::Config(_) => EXIT_USAGE,
            Self::Zone(err) if err.is_input() => EXIT_USAGE,
            Self::Hiera(err) if err.is_input() => EXIT_USAGE,
            Self::Acme(err) if err.is_input() => EXIT_USAGE,
            _ => EXIT_FAILED,
        };
        ExitCode::from(code)
    }
}
