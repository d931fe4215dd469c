//! Where a certificate's files go: fleetcert's own names, or acme.sh's, which OpenDev reads.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::dns::DnsName;

/// Longest first name of a certificate in the acme.sh layout: `<name>.key` must fit in the
/// 255 bytes of a file name.
pub(crate) const MAX_ACME_SH_NAME: usize = 250;
/// The PKCS#12 keystore's name beside the PEM files, in either layout.
const KEYSTORE_FILE: &str = "keystore.p12";

/// The file layout of `cert_dir`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
pub(crate) enum Layout {
    /// `<cert_dir>/<cert>/{privkey.pem, cert.pem, chain.pem, fullchain.pem}`.
    #[default]
    #[serde(rename = "fleetcert")]
    Fleetcert,
    /// `<cert_dir>/<first name>/{<first name>.key, <first name>.cer, ca.cer, fullchain.cer}`.
    #[serde(rename = "acme.sh")]
    AcmeSh,
}

/// The names of one certificate's directory and files, as a service reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileNames {
    /// The directory below `cert_dir`.
    pub(crate) dir: String,
    pub(crate) key: String,
    pub(crate) cert: String,
    pub(crate) chain: String,
    pub(crate) fullchain: String,
    /// The PKCS#12 keystore, for a certificate with `pkcs12:`.
    pub(crate) keystore: Option<String>,
}

/// The files of one installed certificate, as absolute paths (for reports and messages).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CertPaths {
    pub(crate) dir: PathBuf,
    pub(crate) key: PathBuf,
    pub(crate) cert: PathBuf,
    pub(crate) chain: PathBuf,
    pub(crate) fullchain: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) keystore: Option<PathBuf>,
}

impl Layout {
    /// The names for certificate `cert` whose first identifier is `first`.
    pub(crate) fn names(self, cert: &str, first: &DnsName) -> FileNames {
        match self {
            Self::Fleetcert => FileNames {
                dir: cert.to_owned(),
                key: "privkey.pem".to_owned(),
                cert: "cert.pem".to_owned(),
                chain: "chain.pem".to_owned(),
                fullchain: "fullchain.pem".to_owned(),
                keystore: None,
            },
            Self::AcmeSh => FileNames {
                dir: first.to_string(),
                key: format!("{first}.key"),
                cert: format!("{first}.cer"),
                chain: "ca.cer".to_owned(),
                fullchain: "fullchain.cer".to_owned(),
                keystore: None,
            },
        }
    }
}

impl FileNames {
    /// These names, with the keystore among them when `wanted`.
    pub(crate) fn with_keystore(mut self, wanted: bool) -> Self {
        self.keystore = wanted.then(|| KEYSTORE_FILE.to_owned());
        self
    }

    /// The absolute paths below `cert_dir`.
    pub(crate) fn paths(&self, cert_dir: &Path) -> CertPaths {
        let dir = cert_dir.join(&self.dir);
        CertPaths {
            key: dir.join(&self.key),
            cert: dir.join(&self.cert),
            chain: dir.join(&self.chain),
            fullchain: dir.join(&self.fullchain),
            keystore: self.keystore.as_ref().map(|name| dir.join(name)),
            dir,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acme_sh_layout_uses_opendevs_names() {
        let first = DnsName::parse("web01.example.org").expect("name");
        let paths = Layout::AcmeSh.names("main", &first).paths(Path::new("/c"));
        assert_eq!(
            paths.key,
            Path::new("/c/web01.example.org/web01.example.org.key")
        );
        assert_eq!(
            paths.cert,
            Path::new("/c/web01.example.org/web01.example.org.cer")
        );
        assert_eq!(paths.chain, Path::new("/c/web01.example.org/ca.cer"));
        assert_eq!(
            paths.fullchain,
            Path::new("/c/web01.example.org/fullchain.cer")
        );
        let own = Layout::Fleetcert
            .names("main", &first)
            .paths(Path::new("/c"));
        assert_eq!(own.key, Path::new("/c/main/privkey.pem"));
    }
}
