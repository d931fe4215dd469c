//! The ACME side: the account, orders that survive between `request` and `finalize`.

/// The CA or the account failed as a whole.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AcmeError {
    /// The CA answered with an error or could not be reached.
    #[error("CA {directory}: {source}")]
    Ca {
        directory: String,
        #[source]
        source: instant_acme::Error,
    },
}

impl AcmeError {
    /// Whether the operator's input is at fault (exit 2).
    pub(crate) fn is_input(&self) -> bool {
        false
    }
}
