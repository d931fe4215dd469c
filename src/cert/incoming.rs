//! A set of certificate files that another host issued, offered to `fleetcert install`, and
//! why one is refused.

use super::Pkcs12Error;

/// Why a set is not installed; each is one line, and nothing was written (exit 2).
#[derive(Debug, thiserror::Error)]
pub(crate) enum IncomingError {
    /// `--cert` names no certificate of the config.
    #[error(
        "config {config} lists no certificate {cert} in `certs`: add it (its names, and \
         `reload` if the service needs one), or name one it lists"
    )]
    UnknownCert { config: String, cert: String },
    /// A file the set needs is not in `--from`.
    #[error(
        "{path} is missing: {dir} must hold the key and the full chain, named as the config's `layout` names them"
    )]
    Missing { path: String, dir: String },
    /// What is in `--from` is not a set for this certificate.
    #[error("the set in {dir} is refused, this host keeps its files: {problem}")]
    Refused { dir: String, problem: String },
    /// The keystore `pkcs12:` asks for could not be built from the set.
    #[error(transparent)]
    Keystore(#[from] Pkcs12Error),
}

impl IncomingError {
    /// Whether the operator must fix something (exit 2) rather than the system failing (4).
    pub(crate) fn is_usage(&self) -> bool {
        !matches!(self, Self::Keystore(_))
    }
}
