//! PKCS#12 keystores (RFC 7292) for Java services: one private key entry, its alias, the leaf
//! and its chain, as Java 9 and later read by default (Zookeeper, Kafka, Tomcat).
//!
//! Written the way Java 17 and OpenSSL 3 write theirs by default, never with RC2 or 3DES:
//!
//! - the key in a `pkcs8ShroudedKeyBag`, the certificates in an `encryptedData` content, both
//!   with PBES2 (RFC 8018): PBKDF2 with HMAC-SHA256, then AES-256-CBC;
//! - the whole protected by an HMAC-SHA256 MAC whose key comes from the password through the
//!   PKCS#12 key derivation of RFC 7292 appendix B with SHA-256 (what Java 17 reads; the
//!   newer PBMAC1 of RFC 9579 is not read before Java 24 or OpenSSL 3.4);
//! - the key and the leaf carry the alias (`friendlyName`) and one `localKeyId`, the
//!   intermediates carry nothing, as OpenSSL lays it out; Java builds the chain from them.
//!
//! The DER comes from `yasna` (already here through rcgen), every primitive from aws-lc-rs,
//! the one crypto backend. [`Keystore::open`] reads back what [`Keystore::build`] writes (and
//! OpenSSL 3's default output), to tell whether an installed keystore still fits the
//! configured password, alias and certificate.

use std::fmt;
use std::num::NonZeroU32;

use aws_lc_rs::cipher::{
    AES_256, AES_256_KEY_LEN, DecryptionContext, PaddedBlockDecryptingKey,
    PaddedBlockEncryptingKey, UnboundCipherKey,
};
use aws_lc_rs::{digest, hmac, pbkdf2, rand};
use yasna::models::ObjectIdentifier;
use yasna::{ASN1Error, ASN1ErrorKind, BERReader, DERWriter, Tag};

use super::{PrivateKey, Secret};

/// Iterations of PBKDF2 and of the MAC's key derivation: Java 17's default (OpenSSL 3 uses
/// 2048). A keystore costs a few milliseconds to write.
const ITERATIONS: u32 = 10_000;
/// The most iterations [`Keystore::open`] computes: a keystore asking for more is not opened
/// (a planted file cannot make a run spin for minutes).
const MAX_ITERATIONS: u32 = 1_000_000;
/// Salt of each PBKDF2 run and of the MAC, in bytes.
const SALT_LEN: usize = 16;
/// SHA-256's output and block sizes (`u` and `v` of RFC 7292 appendix B).
const SHA256_LEN: usize = 32;
const SHA256_BLOCK: usize = 64;
/// The diversifier of RFC 7292 appendix B.3 that derives a MAC key.
const MAC_KEY_ID: u8 = 3;

const PKCS7_DATA: &[u64] = &[1, 2, 840, 113_549, 1, 7, 1];
const PKCS7_ENCRYPTED_DATA: &[u64] = &[1, 2, 840, 113_549, 1, 7, 6];
const SHROUDED_KEY_BAG: &[u64] = &[1, 2, 840, 113_549, 1, 12, 10, 1, 2];
const CERT_BAG: &[u64] = &[1, 2, 840, 113_549, 1, 12, 10, 1, 3];
const X509_CERTIFICATE: &[u64] = &[1, 2, 840, 113_549, 1, 9, 22, 1];
const FRIENDLY_NAME: &[u64] = &[1, 2, 840, 113_549, 1, 9, 20];
const LOCAL_KEY_ID: &[u64] = &[1, 2, 840, 113_549, 1, 9, 21];
const PBES2: &[u64] = &[1, 2, 840, 113_549, 1, 5, 13];
const PBKDF2: &[u64] = &[1, 2, 840, 113_549, 1, 5, 12];
const HMAC_WITH_SHA256: &[u64] = &[1, 2, 840, 113_549, 2, 9];
const AES_256_CBC: &[u64] = &[2, 16, 840, 1, 101, 3, 4, 1, 42];
const SHA256: &[u64] = &[2, 16, 840, 1, 101, 3, 4, 2, 1];

/// The keystore password, as read from `pkcs12.password_file`. Never shown: its `Debug`
/// says only how long it is.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct KeystorePassword(String);

impl KeystorePassword {
    pub(crate) fn new(password: String) -> Self {
        Self(password)
    }

    /// The password as PBKDF2 takes it (UTF-8, as Java's PBKDF2 and OpenSSL both use it).
    fn utf8(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// The password as the PKCS#12 key derivation takes it: a BMPString (UTF-16 big-endian)
    /// with a two-byte terminator (RFC 7292 appendix B.1).
    fn bmp(&self) -> Vec<u8> {
        let mut out: Vec<u8> = self.0.encode_utf16().flat_map(u16::to_be_bytes).collect();
        out.extend_from_slice(&[0, 0]);
        out
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
    /// The crypto library failed (no randomness, a key it refused), or the chain given is
    /// not PEM: nothing was written.
    #[error("cannot build the PKCS#12 keystore: {0}")]
    Crypto(&'static str),
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
            .ok_or(Pkcs12Error::Crypto("no certificate given"))?;
        let key_id = digest::digest(&digest::SHA256, leaf).as_ref().to_vec();
        let attributes = Attributes {
            alias,
            key_id: &key_id,
        };
        let key_bag = shrouded_key_bag(key, &attributes, password)?;
        let key_contents = yasna::construct_der(|w| {
            w.write_sequence(|w| w.next().write_der(&key_bag));
        });
        let cert_contents = yasna::construct_der(|w| {
            w.write_sequence(|w| {
                for (index, cert) in chain.iter().enumerate() {
                    let mine = (index == 0).then_some(&attributes);
                    write_cert_bag(w.next(), cert, mine);
                }
            });
        });
        let encrypted_certs = encrypt(&cert_contents, password)?;
        let auth_safe = yasna::construct_der(|w| {
            w.write_sequence(|w| {
                w.next().write_sequence(|w| {
                    w.next().write_oid(&oid(PKCS7_ENCRYPTED_DATA));
                    w.next().write_tagged(Tag::context(0), |w| {
                        w.write_sequence(|w| {
                            w.next().write_u8(0);
                            w.next().write_sequence(|w| {
                                w.next().write_oid(&oid(PKCS7_DATA));
                                write_pbes2(w.next(), &encrypted_certs);
                                w.next().write_tagged_implicit(Tag::context(0), |w| {
                                    w.write_bytes(&encrypted_certs.ciphertext);
                                });
                            });
                        });
                    });
                });
                write_data(w.next(), &key_contents);
            });
        });
        let mac_salt = random_bytes::<SALT_LEN>()?;
        let mac = mac(&auth_safe, password, &mac_salt, ITERATIONS);
        let pfx = yasna::construct_der(|w| {
            w.write_sequence(|w| {
                w.next().write_u8(3);
                write_data(w.next(), &auth_safe);
                w.next().write_sequence(|w| {
                    w.next().write_sequence(|w| {
                        write_algorithm(w.next(), SHA256, true);
                        w.next().write_bytes(&mac);
                    });
                    w.next().write_bytes(&mac_salt);
                    w.next().write_u32(ITERATIONS);
                });
            });
        });
        Ok(Secret(pfx))
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

    /// Reads a keystore with `password`: checks its MAC, decrypts its certificates and reads
    /// the alias of its key entry. The key itself is not decrypted (nothing needs it).
    pub(crate) fn open(bytes: &[u8], password: &KeystorePassword) -> Result<Self, Pkcs12Error> {
        let unreadable = |_: ASN1Error| Pkcs12Error::Unreadable("is not a PKCS#12 file");
        let (auth_safe, mac_data) = yasna::parse_der(bytes, |r| {
            r.read_sequence(|r| {
                if r.next().read_u8()? != 3 {
                    return Err(invalid());
                }
                let auth_safe = read_data(r.next())?;
                let mac_data = r.next().read_sequence(|r| {
                    let digest = r.next().read_sequence(|r| {
                        read_algorithm(r.next(), SHA256)?;
                        r.next().read_bytes()
                    })?;
                    let salt = r.next().read_bytes()?;
                    let iterations = r.read_default(1, |r| r.read_u32())?;
                    Ok((digest, salt, iterations))
                })?;
                Ok((auth_safe, mac_data))
            })
        })
        .map_err(unreadable)?;
        let (digest, salt, iterations) = mac_data;
        check_iterations(iterations)?;
        let expected = mac(&auth_safe, password, &salt, iterations);
        // The digest is public: a plain comparison leaks nothing.
        if digest != expected {
            return Err(Pkcs12Error::Unreadable(
                "does not open with the configured password (its MAC does not match)",
            ));
        }
        let contents = yasna::parse_der(&auth_safe, |r| {
            r.collect_sequence_of(|r| {
                r.read_sequence(|r| {
                    let kind = r.next().read_oid()?;
                    r.next().read_tagged(Tag::context(0), |r| {
                        if kind == oid(PKCS7_DATA) {
                            Ok(Content::Plain(r.read_bytes()?))
                        } else if kind == oid(PKCS7_ENCRYPTED_DATA) {
                            read_encrypted_data(r).map(Content::Encrypted)
                        } else {
                            Err(invalid())
                        }
                    })
                })
            })
        })
        .map_err(unreadable)?;
        let mut bags = Vec::new();
        for content in contents {
            let plain = match content {
                Content::Plain(bytes) => bytes,
                Content::Encrypted(encrypted) => decrypt(&encrypted, password)?,
            };
            bags.extend(yasna::parse_der(&plain, read_safe_contents).map_err(unreadable)?);
        }
        Self::from_bags(bags)
    }

    /// The key's alias and the certificates, its own first.
    fn from_bags(bags: Vec<Bag>) -> Result<Self, Pkcs12Error> {
        let mut key = None;
        let mut certificates = Vec::new();
        for bag in bags {
            match bag.kind {
                BagKind::Key if key.is_none() => key = Some(bag.attributes),
                BagKind::Key => return Err(Pkcs12Error::Unreadable("holds more than one key")),
                BagKind::Certificate(der) => certificates.push((bag.attributes.key_id, der)),
                BagKind::Other => {}
            }
        }
        let key = key.ok_or(Pkcs12Error::Unreadable("holds no private key"))?;
        let alias = key
            .alias
            .ok_or(Pkcs12Error::Unreadable("has a key entry without an alias"))?;
        let own = certificates
            .iter()
            .position(|(id, _)| id.is_some() && *id == key.key_id)
            .ok_or(Pkcs12Error::Unreadable("holds no certificate for its key"))?;
        let leaf = certificates.remove(own);
        let certificates = std::iter::once(leaf)
            .chain(certificates)
            .map(|(_, der)| der)
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
        .map_err(|_| Pkcs12Error::Crypto("the chain is not PEM"))?;
    if chain.is_empty() {
        return Err(Pkcs12Error::Crypto("the chain holds no certificate"));
    }
    Ok(chain)
}

/// The attributes of the key entry and its certificate.
struct Attributes<'a> {
    alias: &'a str,
    key_id: &'a [u8],
}

/// What one PBES2 encryption produced: its parameters and the ciphertext.
struct Encrypted {
    salt: Vec<u8>,
    iterations: u32,
    iv: Vec<u8>,
    ciphertext: Vec<u8>,
}

enum Content {
    Plain(Vec<u8>),
    Encrypted(Encrypted),
}

struct Bag {
    kind: BagKind,
    attributes: ReadAttributes,
}

enum BagKind {
    Key,
    Certificate(Vec<u8>),
    Other,
}

#[derive(Default)]
struct ReadAttributes {
    alias: Option<String>,
    key_id: Option<Vec<u8>>,
}

fn oid(components: &[u64]) -> ObjectIdentifier {
    ObjectIdentifier::from_slice(components)
}

fn invalid() -> ASN1Error {
    ASN1Error::new(ASN1ErrorKind::Invalid)
}

fn random_bytes<const N: usize>() -> Result<[u8; N], Pkcs12Error> {
    let mut bytes = [0; N];
    rand::fill(&mut bytes)
        .map_err(|_| Pkcs12Error::Crypto("the crypto library has no randomness"))?;
    Ok(bytes)
}

fn check_iterations(iterations: u32) -> Result<NonZeroU32, Pkcs12Error> {
    NonZeroU32::new(iterations)
        .filter(|count| count.get() <= MAX_ITERATIONS)
        .ok_or(Pkcs12Error::Unreadable(
            "asks for an iteration count this build does not compute",
        ))
}

/// PBKDF2-HMAC-SHA256 of the password, the AES-256 key of one PBES2 encryption.
fn pbes2_key(
    password: &KeystorePassword,
    salt: &[u8],
    iterations: NonZeroU32,
) -> Result<UnboundCipherKey, Pkcs12Error> {
    let mut key = [0; AES_256_KEY_LEN];
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        iterations,
        salt,
        password.utf8(),
        &mut key,
    );
    UnboundCipherKey::new(&AES_256, &key)
        .map_err(|_| Pkcs12Error::Crypto("the crypto library refused the AES key"))
}

/// PBES2 with PBKDF2-HMAC-SHA256 and AES-256-CBC, a new salt and IV each time.
fn encrypt(plain: &[u8], password: &KeystorePassword) -> Result<Encrypted, Pkcs12Error> {
    let salt = random_bytes::<SALT_LEN>()?.to_vec();
    let iterations = check_iterations(ITERATIONS)?;
    let key = PaddedBlockEncryptingKey::cbc_pkcs7(pbes2_key(password, &salt, iterations)?)
        .map_err(|_| Pkcs12Error::Crypto("the crypto library refused the AES-CBC key"))?;
    let mut ciphertext = plain.to_vec();
    let context = key
        .encrypt(&mut ciphertext)
        .map_err(|_| Pkcs12Error::Crypto("the crypto library failed to encrypt"))?;
    let iv: &[u8] = (&context)
        .try_into()
        .map_err(|_| Pkcs12Error::Crypto("the crypto library gave no IV"))?;
    Ok(Encrypted {
        salt,
        iterations: iterations.get(),
        iv: iv.to_vec(),
        ciphertext,
    })
}

fn decrypt(encrypted: &Encrypted, password: &KeystorePassword) -> Result<Vec<u8>, Pkcs12Error> {
    let iterations = check_iterations(encrypted.iterations)?;
    let key =
        PaddedBlockDecryptingKey::cbc_pkcs7(pbes2_key(password, &encrypted.salt, iterations)?)
            .map_err(|_| Pkcs12Error::Crypto("the crypto library refused the AES-CBC key"))?;
    let iv = aws_lc_rs::iv::FixedLength::<16>::try_from(encrypted.iv.as_slice())
        .map_err(|_| Pkcs12Error::Unreadable("has an AES-CBC IV that is not 16 bytes"))?;
    let mut buffer = encrypted.ciphertext.clone();
    let plain = key
        .decrypt(&mut buffer, DecryptionContext::Iv128(iv))
        .map_err(|_| Pkcs12Error::Unreadable("does not decrypt with the configured password"))?;
    Ok(plain.to_vec())
}

/// The PKCS#12 key derivation with SHA-256 (RFC 7292 appendix B.2), `len` bytes.
fn pkcs12_kdf(password: &[u8], salt: &[u8], id: u8, iterations: u32, len: usize) -> Vec<u8> {
    let stretch = |input: &[u8]| -> Vec<u8> {
        if input.is_empty() {
            return Vec::new();
        }
        let blocks = input.len().div_ceil(SHA256_BLOCK);
        input
            .iter()
            .copied()
            .cycle()
            .take(blocks * SHA256_BLOCK)
            .collect()
    };
    let diversifier = [id; SHA256_BLOCK];
    let mut input = stretch(salt);
    input.extend(stretch(password));
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let mut context = digest::Context::new(&digest::SHA256);
        context.update(&diversifier);
        context.update(&input);
        let mut hash = context.finish().as_ref().to_vec();
        for _ in 1..iterations {
            hash = digest::digest(&digest::SHA256, &hash).as_ref().to_vec();
        }
        out.extend_from_slice(&hash);
        // I_j = (I_j + B + 1) mod 2^512 for every 64-byte block of I, B = the hash repeated.
        let b: Vec<u8> = hash.iter().copied().cycle().take(SHA256_BLOCK).collect();
        for block in input.chunks_mut(SHA256_BLOCK) {
            let mut carry = 1u16;
            for (byte, add) in block.iter_mut().zip(&b).rev() {
                let sum = u16::from(*byte) + u16::from(*add) + carry;
                *byte = sum.to_le_bytes()[0];
                carry = sum >> 8;
            }
        }
    }
    out.truncate(len);
    out
}

/// HMAC-SHA256 of the authenticated safe, keyed by the PKCS#12 derivation of the password.
fn mac(data: &[u8], password: &KeystorePassword, salt: &[u8], iterations: u32) -> Vec<u8> {
    let key = pkcs12_kdf(&password.bmp(), salt, MAC_KEY_ID, iterations, SHA256_LEN);
    let key = hmac::Key::new(hmac::HMAC_SHA256, &key);
    hmac::sign(&key, data).as_ref().to_vec()
}

/// `AlgorithmIdentifier { algorithm, parameters NULL }` (`null`) or without parameters.
fn write_algorithm(w: DERWriter<'_>, algorithm: &[u64], null: bool) {
    w.write_sequence(|w| {
        w.next().write_oid(&oid(algorithm));
        if null {
            w.next().write_null();
        }
    });
}

/// `ContentInfo { data, [0] OCTET STRING }`.
fn write_data(w: DERWriter<'_>, contents: &[u8]) {
    w.write_sequence(|w| {
        w.next().write_oid(&oid(PKCS7_DATA));
        w.next()
            .write_tagged(Tag::context(0), |w| w.write_bytes(contents));
    });
}

/// The PBES2 `AlgorithmIdentifier` of one encryption.
fn write_pbes2(w: DERWriter<'_>, encrypted: &Encrypted) {
    w.write_sequence(|w| {
        w.next().write_oid(&oid(PBES2));
        w.next().write_sequence(|w| {
            w.next().write_sequence(|w| {
                w.next().write_oid(&oid(PBKDF2));
                w.next().write_sequence(|w| {
                    w.next().write_bytes(&encrypted.salt);
                    w.next().write_u32(encrypted.iterations);
                    write_algorithm(w.next(), HMAC_WITH_SHA256, true);
                });
            });
            w.next().write_sequence(|w| {
                w.next().write_oid(&oid(AES_256_CBC));
                w.next().write_bytes(&encrypted.iv);
            });
        });
    });
}

fn write_attributes(w: DERWriter<'_>, attributes: &Attributes<'_>) {
    w.write_set_of(|w| {
        w.next().write_sequence(|w| {
            w.next().write_oid(&oid(FRIENDLY_NAME));
            w.next()
                .write_set_of(|w| w.next().write_bmp_string(attributes.alias));
        });
        w.next().write_sequence(|w| {
            w.next().write_oid(&oid(LOCAL_KEY_ID));
            w.next()
                .write_set_of(|w| w.next().write_bytes(attributes.key_id));
        });
    });
}

fn shrouded_key_bag(
    key: &Secret,
    attributes: &Attributes<'_>,
    password: &KeystorePassword,
) -> Result<Vec<u8>, Pkcs12Error> {
    let encrypted = encrypt(&key.0, password)?;
    Ok(yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_oid(&oid(SHROUDED_KEY_BAG));
            w.next().write_tagged(Tag::context(0), |w| {
                w.write_sequence(|w| {
                    write_pbes2(w.next(), &encrypted);
                    w.next().write_bytes(&encrypted.ciphertext);
                });
            });
            write_attributes(w.next(), attributes);
        });
    }))
}

fn write_cert_bag(w: DERWriter<'_>, cert: &[u8], attributes: Option<&Attributes<'_>>) {
    w.write_sequence(|w| {
        w.next().write_oid(&oid(CERT_BAG));
        w.next().write_tagged(Tag::context(0), |w| {
            w.write_sequence(|w| {
                w.next().write_oid(&oid(X509_CERTIFICATE));
                w.next()
                    .write_tagged(Tag::context(0), |w| w.write_bytes(cert));
            });
        });
        if let Some(attributes) = attributes {
            write_attributes(w.next(), attributes);
        }
    });
}

// --- reading ------------------------------------------------------------------------------

fn read_algorithm(r: BERReader<'_, '_>, wanted: &[u64]) -> Result<(), ASN1Error> {
    r.read_sequence(|r| {
        if r.next().read_oid()? != oid(wanted) {
            return Err(invalid());
        }
        r.read_optional(|r| r.read_null())?;
        Ok(())
    })
}

fn read_data(r: BERReader<'_, '_>) -> Result<Vec<u8>, ASN1Error> {
    r.read_sequence(|r| {
        if r.next().read_oid()? != oid(PKCS7_DATA) {
            return Err(invalid());
        }
        r.next().read_tagged(Tag::context(0), |r| r.read_bytes())
    })
}

/// PBES2 parameters of what this module writes (and OpenSSL 3's default): PBKDF2 with
/// HMAC-SHA256 and AES-256-CBC; anything else is refused.
fn read_pbes2(r: BERReader<'_, '_>) -> Result<(Vec<u8>, u32, Vec<u8>), ASN1Error> {
    r.read_sequence(|r| {
        if r.next().read_oid()? != oid(PBES2) {
            return Err(invalid());
        }
        r.next().read_sequence(|r| {
            let (salt, iterations) = r.next().read_sequence(|r| {
                if r.next().read_oid()? != oid(PBKDF2) {
                    return Err(invalid());
                }
                r.next().read_sequence(|r| {
                    let salt = r.next().read_bytes()?;
                    let iterations = r.next().read_u32()?;
                    if let Some(length) = r.read_optional(|r| r.read_u32())?
                        && usize::try_from(length).ok() != Some(AES_256_KEY_LEN)
                    {
                        return Err(invalid());
                    }
                    read_algorithm(r.next(), HMAC_WITH_SHA256)?;
                    Ok((salt, iterations))
                })
            })?;
            let iv = r.next().read_sequence(|r| {
                if r.next().read_oid()? != oid(AES_256_CBC) {
                    return Err(invalid());
                }
                r.next().read_bytes()
            })?;
            Ok((salt, iterations, iv))
        })
    })
}

fn read_encrypted_data(r: BERReader<'_, '_>) -> Result<Encrypted, ASN1Error> {
    r.read_sequence(|r| {
        r.next().read_u8()?;
        r.next().read_sequence(|r| {
            if r.next().read_oid()? != oid(PKCS7_DATA) {
                return Err(invalid());
            }
            let (salt, iterations, iv) = read_pbes2(r.next())?;
            let ciphertext = r
                .next()
                .read_tagged_implicit(Tag::context(0), |r| r.read_bytes())?;
            Ok(Encrypted {
                salt,
                iterations,
                iv,
                ciphertext,
            })
        })
    })
}

fn read_safe_contents(r: BERReader<'_, '_>) -> Result<Vec<Bag>, ASN1Error> {
    r.collect_sequence_of(|r| {
        r.read_sequence(|r| {
            let kind = r.next().read_oid()?;
            let kind = r.next().read_tagged(Tag::context(0), |r| {
                if kind == oid(SHROUDED_KEY_BAG) {
                    r.read_der().map(|_| BagKind::Key)
                } else if kind == oid(CERT_BAG) {
                    r.read_sequence(|r| {
                        if r.next().read_oid()? != oid(X509_CERTIFICATE) {
                            return Err(invalid());
                        }
                        r.next()
                            .read_tagged(Tag::context(0), |r| r.read_bytes())
                            .map(BagKind::Certificate)
                    })
                } else {
                    r.read_der().map(|_| BagKind::Other)
                }
            })?;
            let attributes = r.read_optional(read_attributes)?.unwrap_or_default();
            Ok(Bag { kind, attributes })
        })
    })
}

fn read_attributes(r: BERReader<'_, '_>) -> Result<ReadAttributes, ASN1Error> {
    let mut attributes = ReadAttributes::default();
    r.read_set_of(|r| {
        r.read_sequence(|r| {
            let kind = r.next().read_oid()?;
            r.next().read_set_of(|r| {
                if kind == oid(FRIENDLY_NAME) {
                    attributes.alias = Some(r.read_bmp_string()?);
                } else if kind == oid(LOCAL_KEY_ID) {
                    attributes.key_id = Some(r.read_bytes()?);
                } else {
                    r.read_der()?;
                }
                Ok(())
            })
        })
    })?;
    Ok(attributes)
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
        let secret = password("pässwörd-🔑");
        let bytes = Keystore::build(&key, &chain, "zoo-ключ", &secret).expect("build");
        assert_eq!(
            Keystore::open(&bytes.0, &secret).expect("open").alias,
            "zoo-ключ"
        );
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
        for count in [0, MAX_ITERATIONS + 1, u32::MAX] {
            let err = check_iterations(count).expect_err("refused");
            assert!(err.to_string().contains("iteration"), "{err}");
        }
        assert!(check_iterations(ITERATIONS).is_ok());
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

    /// Vectors computed with OpenSSL 3's implementation of the same derivation:
    /// `openssl kdf -keylen 32 -kdfopt digest:SHA256 -kdfopt hexpass:<BMP password>
    /// -kdfopt hexsalt:<salt> -kdfopt iter:<n> -kdfopt id:3 PKCS12KDF`.
    #[test]
    fn the_mac_key_derivation_matches_openssl() {
        let bmp = password("zk-secret").bmp();
        assert_eq!(
            hex(&pkcs12_kdf(&bmp, &[0x11; 16], MAC_KEY_ID, 1, 32)),
            KDF_ITER_1
        );
        assert_eq!(
            hex(&pkcs12_kdf(&bmp, &[0x11; 16], MAC_KEY_ID, 2048, 32)),
            KDF_ITER_2048
        );
        // Longer than one hash: the second block follows the I_j update.
        assert_eq!(
            hex(&pkcs12_kdf(&bmp, &[0x11; 16], MAC_KEY_ID, 3, 40)),
            KDF_ITER_3_LEN_40
        );
    }

    const KDF_ITER_1: &str = "82ff268f0332db2d618b6b7c291c36af06192c32ec1149ba00312e79f19b265b";
    const KDF_ITER_2048: &str = "624551c900b6acebb581807bc9cd3f19c1d1e9f1b588350266b65cdd4a2e05d2";
    const KDF_ITER_3_LEN_40: &str =
        "b0aa631e1e36a4f62b9904b921682478685563e3134eec3f82199b17ff514943dd84dce0313e40d1";

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}
