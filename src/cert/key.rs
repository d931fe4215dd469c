//! Private keys and CSRs, made on the host with rcgen.

use std::fmt;

use rcgen::{CertificateParams, KeyPair, PublicKeyData, RsaKeySize, SignatureAlgorithm};
use serde::{Deserialize, Serialize};

use super::Secret;
use crate::dns::DnsName;

/// The key algorithm of a certificate, as the config names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
pub(crate) enum KeyType {
    #[serde(rename = "ecdsa-p256")]
    EcdsaP256,
    #[default]
    #[serde(rename = "ecdsa-p384")]
    EcdsaP384,
    #[serde(rename = "rsa-2048")]
    Rsa2048,
    #[serde(rename = "rsa-3072")]
    Rsa3072,
    #[serde(rename = "rsa-4096")]
    Rsa4096,
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::EcdsaP256 => "ecdsa-p256",
            Self::EcdsaP384 => "ecdsa-p384",
            Self::Rsa2048 => "rsa-2048",
            Self::Rsa3072 => "rsa-3072",
            Self::Rsa4096 => "rsa-4096",
        })
    }
}

/// A key or CSR that could not be made or read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum KeyError {
    /// The crypto library refused to generate or sign.
    #[error("cannot make a {key_type} key or CSR: {source}")]
    Generate {
        key_type: KeyType,
        #[source]
        source: rcgen::Error,
    },
    /// A stored key does not parse. The parser's message is not passed on: it could quote
    /// part of the key.
    #[error("the stored private key does not parse as a {key_type} key in PKCS#8 PEM")]
    Parse { key_type: KeyType },
}

impl KeyType {
    fn signature_algorithm(self) -> &'static SignatureAlgorithm {
        match self {
            Self::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            Self::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            Self::Rsa2048 | Self::Rsa3072 | Self::Rsa4096 => &rcgen::PKCS_RSA_SHA256,
        }
    }

    /// Makes a new private key of this type.
    pub(crate) fn generate(self) -> Result<PrivateKey, KeyError> {
        let alg = self.signature_algorithm();
        let rsa_size = match self {
            Self::EcdsaP256 | Self::EcdsaP384 => None,
            Self::Rsa2048 => Some(RsaKeySize::_2048),
            Self::Rsa3072 => Some(RsaKeySize::_3072),
            Self::Rsa4096 => Some(RsaKeySize::_4096),
        };
        let pair = match rsa_size {
            None => KeyPair::generate_for(alg),
            Some(size) => KeyPair::generate_rsa_for(alg, size),
        }
        .map_err(|source| KeyError::Generate {
            key_type: self,
            source,
        })?;
        Ok(PrivateKey {
            pair,
            key_type: self,
        })
    }
}

/// A private key. Deliberately not `Debug` or `Display`: it must never reach a log.
pub(crate) struct PrivateKey {
    pair: KeyPair,
    key_type: KeyType,
}

impl PrivateKey {
    /// Reads a PKCS#8 PEM key previously written by [`PrivateKey::to_pem`].
    pub(crate) fn from_pem(pem: &str, key_type: KeyType) -> Result<Self, KeyError> {
        let pair = KeyPair::from_pem_and_sign_algo(pem, key_type.signature_algorithm())
            .map_err(|_| KeyError::Parse { key_type })?;
        Ok(Self { pair, key_type })
    }

    /// PKCS#8 PEM, for the key file only.
    pub(crate) fn to_pem(&self) -> String {
        self.pair.serialize_pem()
    }

    /// The key pair, to sign a certificate on the host (a test issuer, `issuer/sign.rs`).
    pub(crate) fn pair(&self) -> &KeyPair {
        &self.pair
    }

    pub(crate) fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// PKCS#8 DER, for the keystore only.
    pub(crate) fn to_pkcs8_der(&self) -> Secret {
        Secret(self.pair.serialize_der())
    }

    /// DER SubjectPublicKeyInfo, to match a certificate against this key.
    pub(crate) fn public_key_info(&self) -> Vec<u8> {
        self.pair.subject_public_key_info()
    }

    /// A DER CSR for `identifiers`, signed by this key.
    pub(crate) fn csr(&self, identifiers: &[DnsName]) -> Result<Vec<u8>, KeyError> {
        let generate = |source| KeyError::Generate {
            key_type: self.key_type,
            source,
        };
        let names: Vec<String> = identifiers.iter().map(ToString::to_string).collect();
        let mut params = CertificateParams::new(names).map_err(generate)?;
        // The CA takes the names from the SANs; an empty subject keeps the CSR minimal.
        params.distinguished_name = rcgen::DistinguishedName::new();
        let csr = params.serialize_request(&self.pair).map_err(generate)?;
        Ok(csr.der().to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_type_round_trips_through_pem() {
        for key_type in [KeyType::EcdsaP256, KeyType::EcdsaP384, KeyType::Rsa2048] {
            let key = key_type.generate().expect("generate");
            let again = PrivateKey::from_pem(&key.to_pem(), key_type).expect("parse");
            assert_eq!(key.public_key_info(), again.public_key_info());
            let names = [DnsName::parse("a.example.org").expect("name")];
            assert!(!key.csr(&names).expect("csr").is_empty());
        }
    }

    #[test]
    fn config_names_parse() {
        let parsed: KeyType = serde_yaml::from_str("rsa-4096").expect("parse");
        assert_eq!(parsed, KeyType::Rsa4096);
        assert!(serde_yaml::from_str::<KeyType>("dsa-1024").is_err());
    }
}
