//! The signing zone: token ledger, render, serial, atomic replace, reload, lock.

/// Publishing the signing zone failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ZoneError {
    /// A token document was refused.
    #[error("token document from {host}: {problem}")]
    Token { host: String, problem: String },
}

impl ZoneError {
    /// Whether the operator's input is at fault (exit 2).
    pub(crate) fn is_input(&self) -> bool {
        matches!(self, Self::Token { .. })
    }
}
