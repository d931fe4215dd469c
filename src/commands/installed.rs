//! What `request`, `finalize` and `status` share: one configured certificate's files on disk.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::cert::{Inspection, inspect_chain};
use crate::config::HostConfig;
use crate::store::{self, CertPaths};

/// One configured certificate as found on disk.
pub(crate) struct Installed {
    pub(crate) paths: CertPaths,
    /// What the full chain says; `Err` says why it cannot be read, in one line.
    pub(crate) chain: Result<Option<Inspection>, String>,
    pub(crate) key_present: bool,
}

impl Installed {
    /// Reads the files of certificate `cert` whose identifiers are `names`.
    pub(crate) fn read(config: &HostConfig, cert: &str, names: &[String]) -> Self {
        let first = names.first().map_or(cert, String::as_str);
        let paths = config.layout.paths(&config.cert_dir, cert, first);
        let chain = match store::read_optional(&paths.fullchain) {
            Ok(None) => Ok(None),
            Ok(Some(bytes)) => inspect_chain(&bytes)
                .map(Some)
                .map_err(|err| format!("{} {err}", paths.fullchain.display())),
            Err(err) => Err(err.to_string()),
        };
        let key_present = paths.key.exists();
        Self {
            paths,
            chain,
            key_present,
        }
    }

    /// The leaf's facts, when the chain parses.
    pub(crate) fn inspection(&self) -> Option<&Inspection> {
        self.chain.as_ref().ok().and_then(Option::as_ref)
    }

    /// Expiry of the certificate on disk, RFC 3339.
    pub(crate) fn not_after(&self) -> Option<String> {
        self.inspection()
            .map(|inspection| rfc3339(inspection.not_after))
    }
}

/// A timestamp as reports write it.
pub(crate) fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_else(|_| at.to_string())
}
