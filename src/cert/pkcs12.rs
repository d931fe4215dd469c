//! PKCS#12 keystores (RFC 7292) for Java services: one private key entry, its alias, the leaf
//! and its chain, as Java 9 and later read by default (Zookeeper, Kafka, Tomcat).
//!
//! The format is `p12-keystore`'s, written the way Java 17 and OpenSSL 3 write theirs by
//! default, never with RC2 or 3DES (its `pbes1` feature is off):
//!
//! - the key in a `pkcs8ShroudedKeyBag`, the certificates in an `encryptedData` content, both
//!   with PBES2 (RFC 8018): PBKDF2 with HMAC-SHA256, then AES-256-CBC;
//! - the whole protected by an HMAC-SHA256 MAC whose key comes from the password through the
//!   PKCS#12 key derivation of RFC 7292 appendix B (what Java 17 reads; the newer PBMAC1 of
//!   RFC 9579 is not read before Java 24 or OpenSSL 3.4);
//! - the key and the leaf carry one `localKeyId`, the key the alias (`friendlyName`); Java
//!   builds the chain from the certificates.
//!
//! The crate brings its own primitives (RustCrypto's) for the file format only; keys,
//! certificates and TLS stay on aws-lc-rs. [`Keystore::open`] reads back what
//! [`Keystore::build`] writes (and OpenSSL 3's default output), to tell whether an installed
//! keystore still fits the configured password, alias and certificate; it refuses iteration
//! counts over a million (a planted file cannot make a run spin for minutes).

use std::fmt;

use aws_lc_rs::digest;
use p12_keystore::error::Error as FormatError;
use p12_keystore::{
    Certificate, EncryptionAlgorithm, KeyStore, KeyStoreEntry, MacAlgorithm, Pkcs12Archive,
    PrivateKeyChain,
};

use super::{PrivateKey, Secret};

/// Iterations of PBKDF2 and of the MAC's key derivation: Java 17's default (OpenSSL 3 uses
/// 2048). A keystore costs a few milliseconds to write.
const ITERATIONS: u32 = 10_000;

/// The keystore password, as read from `pkcs12.password_file`. Never shown: its `Debug`
/// says only how long it is.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct KeystorePassword(String);

impl KeystorePassword {
    pub(crate) fn new(password: String) -> Self {
        Self(password)
    }
}

impl fmt::Debug for KeystorePassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "KeystorePassword(<{} characters>)",
            self.0.chars().count()
        )
    }
}

/// A keystore could not be written or read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Pkcs12Error {
    /// The key or a certificate given is not what the format takes, or the chain is not
    /// PEM: nothing was written.
    #[error("cannot build the PKCS#12 keystore: {0}")]
    Build(&'static str),
    /// The format library refused to write it.
    #[error("cannot build the PKCS#12 keystore: {0}")]
    Format(#[source] FormatError),
    /// A keystore on disk is not one this build reads, or not with this password.
    #[error("the PKCS#12 keystore {0}")]
    Unreadable(&'static str),
}

/// What a keystore holds, as [`Keystore::open`] reads it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Keystore {
    /// The alias of the key entry.
    pub(crate) alias: String,
    /// The certificates, DER, the key's own (the leaf) first.
    pub(crate) certificates: Vec<Vec<u8>>,
}

impl Keystore {
    /// A new keystore: `key` (PKCS#8 DER) under `alias`, with `chain` (DER, leaf first).
    pub(crate) fn build(
        key: &Secret,
        chain: &[Vec<u8>],
        alias: &str,
        password: &KeystorePassword,
    ) -> Result<Secret, Pkcs12Error> {
        let leaf = chain
            .first()
            .ok_or(Pkcs12Error::Build("no certificate given"))?;
        // The MAC's key derivation takes the password as a BMPString, which the format
        // library writes only for characters of the Basic Multilingual Plane.
        if password.0.chars().any(|c| u32::from(c) > 0xFFFF) {
            return Err(Pkcs12Error::Build(
                "the password holds a character outside Unicode's Basic Multilingual Plane \
                 (an emoji?), which this keystore writer cannot encode: choose another password",
            ));
        }
        let key_id = digest::digest(&digest::SHA256, leaf).as_ref().to_vec();
        let key = p12_keystore::PrivateKey::from_der(&key.0)
            .map_err(|_| Pkcs12Error::Build("the key is not PKCS#8"))?;
        let certificates = chain
            .iter()
            .map(|der| Certificate::from_der(der))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| Pkcs12Error::Build("a certificate of the chain does not parse"))?;
        let mut store = KeyStore::new();
        store.add_entry(
            alias,
            KeyStoreEntry::PrivateKeyChain(PrivateKeyChain::new(key_id, key, certificates)),
        );
        store
            .writer(&password.0)
            .encryption_algorithm(EncryptionAlgorithm::PbeWithHmacSha256AndAes256)
            .encryption_iterations(ITERATIONS)
            .mac_algorithm(MacAlgorithm::HmacSha256)
            .mac_iterations(ITERATIONS)
            .write()
            .map(Secret)
            .map_err(Pkcs12Error::Format)
    }

    /// A new keystore from PEM: `key` (PKCS#8) and `full_chain` (leaf first), the files
    /// fleetcert installs beside it.
    pub(crate) fn from_pem(
        key: &PrivateKey,
        full_chain: &str,
        alias: &str,
        password: &KeystorePassword,
    ) -> Result<Secret, Pkcs12Error> {
        Self::build(
            &key.to_pkcs8_der(),
            &chain_der(full_chain)?,
            alias,
            password,
        )
    }

    /// Whether the keystore `bytes` opens with `password` and holds `alias` and the leaf and
    /// chain of `full_chain`: when not, it is rebuilt (the password or alias was changed, or
    /// `pkcs12:` is new).
    pub(crate) fn fits(
        bytes: &[u8],
        full_chain: &str,
        alias: &str,
        password: &KeystorePassword,
    ) -> bool {
        match (Self::open(bytes, password), chain_der(full_chain)) {
            (Ok(keystore), Ok(chain)) => keystore.alias == alias && keystore.certificates == chain,
            _ => false,
        }
    }

    /// Reads a keystore with `password`: checks its MAC, decrypts it, and reads the alias of
    /// its one key entry and the certificates, the key's own first.
    pub(crate) fn open(bytes: &[u8], password: &KeystorePassword) -> Result<Self, Pkcs12Error> {
        let archive = Pkcs12Archive::from_pkcs12(bytes, &password.0).map_err(|err| match err {
            FormatError::MacError(_) => Pkcs12Error::Unreadable(
                "does not open with the configured password (its MAC does not match)",
            ),
            FormatError::InvalidParameters => Pkcs12Error::Unreadable(
                "asks for parameters this build does not compute (an iteration count over a \
                 million, or an unknown scheme)",
            ),
            FormatError::UnpadError | FormatError::Pkcs5Error(_) => {
                Pkcs12Error::Unreadable("does not decrypt with the configured password")
            }
            _ => Pkcs12Error::Unreadable("is not a PKCS#12 file this build reads"),
        })?;
        let [key] = archive.keys.as_slice() else {
            return Err(Pkcs12Error::Unreadable(
                "does not hold exactly one private key",
            ));
        };
        let alias = key
            .friendly_name
            .clone()
            .ok_or(Pkcs12Error::Unreadable("has a key entry without an alias"))?;
        let key_id = key.local_key_id.as_ref().map(|id| id.0.as_slice());
        let mut certificates: Vec<_> = archive.certs.iter().collect();
        let own = certificates
            .iter()
            .position(|bag| key_id.is_some() && bag.local_key_id.as_deref() == key_id)
            .ok_or(Pkcs12Error::Unreadable("holds no certificate for its key"))?;
        let leaf = certificates.remove(own);
        let certificates = std::iter::once(leaf)
            .chain(certificates)
            .map(|bag| bag.cert.as_der().to_vec())
            .collect();
        Ok(Self {
            alias,
            certificates,
        })
    }
}

/// The DER of every certificate in a PEM chain, in order.
fn chain_der(pem: &str) -> Result<Vec<Vec<u8>>, Pkcs12Error> {
    let chain = x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes())
        .map(|block| block.map(|block| block.contents))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| Pkcs12Error::Build("the chain is not PEM"))?;
    if chain.is_empty() {
        return Err(Pkcs12Error::Build("the chain holds no certificate"));
    }
    Ok(chain)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn password(text: &str) -> KeystorePassword {
        KeystorePassword::new(text.to_owned())
    }

    /// A key (PKCS#8 DER) and a self-signed certificate for it, plus a second certificate
    /// standing in for an intermediate.
    fn material() -> (Secret, Vec<Vec<u8>>) {
        let pair = rcgen::KeyPair::generate().expect("key");
        let leaf = rcgen::CertificateParams::new(vec!["zk1.example.test".to_owned()])
            .expect("params")
            .self_signed(&pair)
            .expect("leaf");
        let other = rcgen::KeyPair::generate().expect("key");
        let intermediate = rcgen::CertificateParams::new(Vec::<String>::new())
            .expect("params")
            .self_signed(&other)
            .expect("intermediate");
        (
            Secret(pair.serialize_der()),
            vec![leaf.der().to_vec(), intermediate.der().to_vec()],
        )
    }

    #[test]
    fn a_keystore_reads_back_with_its_alias_and_chain_in_order() {
        let (key, chain) = material();
        let secret = password("zk-secret");
        let bytes = Keystore::build(&key, &chain, "zookeeper", &secret).expect("build");
        let opened = Keystore::open(&bytes.0, &secret).expect("open");
        assert_eq!(opened.alias, "zookeeper");
        assert_eq!(opened.certificates, chain);
        // The key is encrypted: its DER appears nowhere in the file.
        assert!(!bytes.0.windows(key.0.len()).any(|w| w == key.0.as_slice()));
    }

    #[test]
    fn a_wrong_password_does_not_open_it() {
        let (key, chain) = material();
        let bytes = Keystore::build(&key, &chain, "a", &password("right")).expect("build");
        let err = Keystore::open(&bytes.0, &password("wrong")).expect_err("wrong password");
        assert!(err.to_string().contains("MAC"), "{err}");
    }

    #[test]
    fn a_non_ascii_alias_and_password_survive() {
        let (key, chain) = material();
        let secret = password("pässwörd-ключ");
        let bytes = Keystore::build(&key, &chain, "zoo-ключ", &secret).expect("build");
        assert_eq!(
            Keystore::open(&bytes.0, &secret).expect("open").alias,
            "zoo-ключ"
        );
        // Outside the Basic Multilingual Plane: refused with its reason, nothing written.
        let err = Keystore::build(&key, &chain, "a", &password("pässwörd-🔑"))
            .expect_err("not a BMPString");
        assert!(err.to_string().contains("Multilingual Plane"), "{err}");
    }

    #[test]
    fn two_builds_differ_in_salt_and_iv_but_hold_the_same() {
        let (key, chain) = material();
        let secret = password("s");
        let one = Keystore::build(&key, &chain, "a", &secret).expect("one");
        let two = Keystore::build(&key, &chain, "a", &secret).expect("two");
        assert_ne!(one, two);
        assert_eq!(
            Keystore::open(&one.0, &secret).expect("one"),
            Keystore::open(&two.0, &secret).expect("two")
        );
    }

    #[test]
    fn garbage_and_huge_iteration_counts_are_refused() {
        let secret = password("s");
        assert!(Keystore::open(b"not der", &secret).is_err());
        assert!(Keystore::open(&[], &secret).is_err());
        // A keystore whose MAC asks for 65536 iterations (`02 03 01 00 00`, the file's last
        // bytes), turned into one that asks for 8388607 (`02 03 7f ff ff`).
        let (key, chain) = material();
        let mut store = KeyStore::new();
        let entry = PrivateKeyChain::new(
            vec![1],
            p12_keystore::PrivateKey::from_der(&key.0).expect("key"),
            chain
                .iter()
                .map(|der| Certificate::from_der(der).expect("cert")),
        );
        store.add_entry("a", KeyStoreEntry::PrivateKeyChain(entry));
        let mut bytes = store
            .writer("s")
            .mac_iterations(0x1_0000)
            .write()
            .expect("write");
        let at = bytes.len() - 5;
        assert_eq!(bytes[at..], [2, 3, 1, 0, 0]);
        assert!(Keystore::open(&bytes, &secret).is_ok());
        bytes[at + 2..].copy_from_slice(&[0x7f, 0xff, 0xff]);
        let err = Keystore::open(&bytes, &secret).expect_err("refused");
        assert!(err.to_string().contains("iteration"), "{err}");
    }

    #[test]
    fn a_keystore_written_by_openssl_3_with_its_defaults_reads_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pair = rcgen::KeyPair::generate().expect("key");
        let leaf = rcgen::CertificateParams::new(vec!["zk1.example.test".to_owned()])
            .expect("params")
            .self_signed(&pair)
            .expect("leaf");
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("write");
            path
        };
        let key = write("key.pem", &pair.serialize_pem());
        let cert = write("cert.pem", &leaf.pem());
        let pass = write("pass", "from-openssl\n");
        let out = dir.path().join("store.p12");
        let status = std::process::Command::new("openssl")
            .args(["pkcs12", "-export", "-name", "zookeeper", "-inkey"])
            .arg(&key)
            .arg("-in")
            .arg(&cert)
            .arg("-passout")
            .arg(format!("file:{}", pass.display()))
            .arg("-out")
            .arg(&out)
            .status()
            .expect("run openssl");
        assert!(status.success());
        let bytes = std::fs::read(&out).expect("read");
        let opened = Keystore::open(&bytes, &password("from-openssl")).expect("open");
        assert_eq!(opened.alias, "zookeeper");
        assert_eq!(opened.certificates, vec![leaf.der().to_vec()]);
    }
}
