//! One certificate's set of files, as a service reads them: private key, certificate, chain,
//! full chain and, with `pkcs12:`, the keystore.
//!
//! The set is read from one version of the certificate's directory (`CertDir::read_set`) and
//! installed as one (`CertDir::install`, install.rs), so no reader ever sees a new key beside
//! an old certificate. The modes are the set's own: the key and the keystore are secrets
//! (0640 with the key group), the PEM certificates are public (0644).

use std::path::PathBuf;

use super::install::{CertDir, Secret, SetFile};
use super::layout::FileNames;
use super::{InspectError, PrivateKey};
use crate::store::{self, Access, StoreError};

/// One certificate's files. `CertSet` (the default, `F = Secret`) is a complete set, as
/// installed; [`FoundSet`] is what a read found, each file `None` when it is missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CertSet<F = Secret> {
    pub(crate) key: F,
    pub(crate) cert: F,
    pub(crate) chain: F,
    pub(crate) fullchain: F,
    /// The PKCS#12 keystore, for a certificate with `pkcs12:`.
    pub(crate) keystore: Option<Secret>,
}

/// A set as read from disk: any file may be missing (none at all: nothing is installed).
type FoundSet = CertSet<Option<Secret>>;

/// The certificate on disk cannot be read or understood.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SetError {
    /// The directory or a file cannot be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The full chain does not parse.
    #[error("{} {source}", crate::shown::path(path))]
    Chain {
        path: PathBuf,
        #[source]
        source: InspectError,
    },
}

impl CertSet {
    /// The set of a new key and its checked chain (`leaf`, `intermediates`, `full`: PEM),
    /// without a keystore.
    pub(crate) fn new(key: &PrivateKey, leaf: &str, intermediates: &str, full: &str) -> Self {
        Self {
            key: Secret(key.to_pem().into_bytes()),
            cert: Secret(leaf.as_bytes().to_vec()),
            chain: Secret(intermediates.as_bytes().to_vec()),
            fullchain: Secret(full.as_bytes().to_vec()),
            keystore: None,
        }
    }

    /// This set with `keystore` in it.
    pub(crate) fn with_keystore(mut self, keystore: Option<Secret>) -> Self {
        self.keystore = keystore;
        self
    }
}

impl FoundSet {
    /// Nothing installed.
    fn nothing() -> Self {
        Self {
            key: None,
            cert: None,
            chain: None,
            fullchain: None,
            keystore: None,
        }
    }

    /// The set, when its four PEM files are all there (the keystore may be missing).
    pub(crate) fn complete(self) -> Option<CertSet> {
        Some(CertSet {
            key: self.key?,
            cert: self.cert?,
            chain: self.chain?,
            fullchain: self.fullchain?,
            keystore: self.keystore,
        })
    }
}

impl CertDir<'_> {
    /// The current set, named by `names`, read from one version (the keystore only when
    /// `names` has one); every file `None` when the directory does not exist.
    pub(crate) fn read_set(&self, names: &FileNames) -> Result<FoundSet, StoreError> {
        let mut wanted = vec![
            names.key.as_str(),
            &names.cert,
            &names.chain,
            &names.fullchain,
        ];
        wanted.extend(names.keystore.as_deref());
        let Some(files) = self.read_files(&wanted)? else {
            return Ok(FoundSet::nothing());
        };
        let mut files = files.into_iter();
        let mut next = || files.next().flatten();
        Ok(CertSet {
            key: next(),
            cert: next(),
            chain: next(),
            fullchain: next(),
            keystore: next(),
        })
    }

    /// Replaces the certificate's files with `set`, named by `names`, all at once (see
    /// install.rs). The keystore is written when `names` has one and `set` holds it.
    pub(crate) fn install(&self, names: &FileNames, set: &CertSet) -> Result<(), StoreError> {
        let secret = Access::group(store::KEY_MODE, self.gid);
        let public = Access::group(store::CERT_MODE, self.gid);
        let file = |name, contents, access| SetFile {
            name,
            contents,
            access,
        };
        let mut files = vec![
            file(&names.key, &set.key, secret),
            file(&names.cert, &set.cert, public),
            file(&names.chain, &set.chain, public),
            file(&names.fullchain, &set.fullchain, public),
        ];
        if let (Some(name), Some(contents)) = (&names.keystore, &set.keystore) {
            files.push(file(name, contents, secret));
        }
        self.install_files(&files)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;
    use std::path::Path;

    use super::*;
    use crate::cert::Layout;
    use crate::dns::DnsName;

    fn secret(text: &str) -> Secret {
        Secret(text.as_bytes().to_vec())
    }

    fn set(generation: &str) -> CertSet {
        CertSet {
            key: secret(&format!("key{generation}")),
            cert: secret(&format!("cert{generation}")),
            chain: secret(&format!("chain{generation}")),
            fullchain: secret(&format!("full{generation}")),
            keystore: Some(secret(&format!("p12{generation}"))),
        }
    }

    #[test]
    fn a_set_reads_back_as_installed_with_the_sets_modes() {
        let root = tempfile::tempdir().expect("tempdir");
        let first = DnsName::parse("web01.example.org").expect("name");
        let names = Layout::AcmeSh.names("main", &first).with_keystore(true);
        let dir = CertDir {
            cert_dir: root.path(),
            name: names.dir.clone(),
            gid: nix::unistd::getegid().as_raw(),
        };
        assert_eq!(dir.read_set(&names).expect("nothing"), FoundSet::nothing());
        dir.install(&names, &set("1")).expect("first");
        dir.install(&names, &set("2")).expect("second");
        let found = dir.read_set(&names).expect("read");
        assert_eq!(found.clone().complete(), Some(set("2")));
        let paths = names.paths(root.path());
        let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode(&paths.key), store::KEY_MODE);
        assert_eq!(
            mode(paths.keystore.as_deref().expect("keystore")),
            store::KEY_MODE
        );
        assert_eq!(mode(&paths.fullchain), store::CERT_MODE);
        // Without `pkcs12:` the keystore is neither read nor written.
        let plain = Layout::AcmeSh.names("main", &first);
        assert_eq!(dir.read_set(&plain).expect("read").keystore, None);
    }
}
