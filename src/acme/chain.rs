//! The chain a CA issues: split into leaf and intermediates, and checked against what was
//! asked for before any file is replaced.

use x509_parser::prelude::{FromDer, X509Certificate};

use super::AcmeError;
use crate::cert::{Inspection, PrivateKey, inspect_chain};
use crate::dns::DnsName;
use crate::shown::bare;

/// A verified chain, split the way certificate files want it.
#[derive(Debug, Clone)]
pub(crate) struct IssuedChain {
    /// The leaf alone (`cert.pem`).
    pub(crate) leaf: String,
    /// The intermediates (`chain.pem`); empty when the CA sent the leaf alone.
    pub(crate) intermediates: String,
    /// Leaf and intermediates (`fullchain.pem`).
    pub(crate) full: String,
    pub(crate) inspection: Inspection,
}

/// Characters of a name list shown in a mismatch line: a few names, never a hostile megabyte.
const NAMES_SHOWN: usize = crate::shown::MAX_EXCERPT;

const PEM_BEGIN: &str = "-----BEGIN CERTIFICATE-----";
const PEM_END: &str = "-----END CERTIFICATE-----";

/// Splits a chain into its certificate blocks, each ending in a newline, as RFC 8555 9.1
/// sends it: strict PEM, `CERTIFICATE` blocks only, no text outside them (whitespace between
/// blocks is tolerated). Anything else is refused with what is wrong, never with the text:
/// a lenient split would let the blocks that get written differ from those that get checked.
pub(crate) fn pem_blocks(pem: &str) -> Result<Vec<String>, AcmeError> {
    let mismatch = |problem: String| AcmeError::Mismatch { problem };
    let mut blocks = Vec::new();
    let mut rest = pem.trim_start();
    while !rest.is_empty() {
        let index = blocks.len();
        let body = rest.strip_prefix(PEM_BEGIN).ok_or_else(|| {
            mismatch(format!(
                "certificate {index} of the chain does not start with {PEM_BEGIN}"
            ))
        })?;
        let end = body.find(PEM_END).ok_or_else(|| {
            mismatch(format!("certificate {index} of the chain has no {PEM_END}"))
        })?;
        let base64 = &body[..end];
        let strict = base64
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'\r' | b'\n'));
        if !strict {
            return Err(mismatch(format!(
                "certificate {index} of the chain holds more than base64 between its PEM lines"
            )));
        }
        blocks.push(format!("{PEM_BEGIN}{base64}{PEM_END}\n"));
        rest = body[end + PEM_END.len()..].trim_start();
    }
    Ok(blocks)
}

/// Checks that the chain parses, that its leaf carries `key`'s public key and exactly
/// `names`, and splits it.
pub(crate) fn verify_chain(
    pem: &str,
    key: &PrivateKey,
    names: &[DnsName],
) -> Result<IssuedChain, AcmeError> {
    let mismatch = |problem: String| AcmeError::Mismatch { problem };
    let blocks = pem_blocks(pem)?;
    if blocks.is_empty() {
        return Err(mismatch("the CA sent no PEM certificate".to_owned()));
    }
    for (index, block) in blocks.iter().enumerate() {
        let parsed = x509_parser::pem::Pem::iter_from_buffer(block.as_bytes())
            .next()
            .ok_or_else(|| mismatch(format!("certificate {index} of the chain is not PEM")))?
            .map_err(|err| mismatch(format!("certificate {index} of the chain: {err}")))?;
        X509Certificate::from_der(&parsed.contents)
            .map_err(|err| mismatch(format!("certificate {index} of the chain: {err}")))?;
    }
    // The leaf as it will be written, not the CA's text: what is checked is what is installed.
    let inspection =
        inspect_chain(blocks[0].as_bytes()).map_err(|err| mismatch(format!("the leaf {err}")))?;
    if inspection.public_key_info != key.public_key_info() {
        return Err(mismatch(
            "the leaf's public key is not the key made for it".to_owned(),
        ));
    }
    let mut wanted: Vec<String> = names.iter().map(ToString::to_string).collect();
    wanted.sort();
    if inspection.names != wanted {
        // The CA's names are outside text (a SAN may hold any byte): escaped and cut.
        return Err(mismatch(format!(
            "the leaf names [{}], the order asked for [{}]",
            bare(&inspection.names.join(", "), NAMES_SHOWN),
            bare(&wanted.join(", "), NAMES_SHOWN)
        )));
    }
    let leaf = blocks[0].clone();
    let intermediates: String = blocks[1..].concat();
    Ok(IssuedChain {
        full: format!("{leaf}{intermediates}"),
        leaf,
        intermediates,
        inspection,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::KeyType;

    fn names(list: &[&str]) -> Vec<DnsName> {
        list.iter()
            .map(|n| DnsName::parse(n).expect("name"))
            .collect()
    }

    /// A self-signed "CA" and a leaf it signs for `names` with `leaf_key`.
    fn chain_for(leaf_key: &PrivateKey, names: &[&str]) -> String {
        let ca_key = rcgen::KeyPair::generate().expect("ca key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).expect("ca");
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf_pair = rcgen::KeyPair::from_pem(&leaf_key.to_pem()).expect("leaf key");
        let params = rcgen::CertificateParams::new(
            names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
        )
        .expect("params");
        let leaf = params.signed_by(&leaf_pair, &issuer).expect("leaf");
        format!("{}{}", leaf.pem(), ca.pem())
    }

    #[test]
    fn matching_chain_is_split_into_leaf_and_intermediates() {
        let key = KeyType::EcdsaP256.generate().expect("key");
        let pem = chain_for(&key, &["b.example.org", "a.example.org"]);
        let names = names(&["a.example.org", "b.example.org"]);
        let chain = verify_chain(&pem, &key, &names).expect("verify");
        assert_eq!(pem_blocks(&chain.leaf).expect("leaf").len(), 1);
        assert_eq!(pem_blocks(&chain.intermediates).expect("chain").len(), 1);
        assert_eq!(chain.full, format!("{}{}", chain.leaf, chain.intermediates));
    }

    #[test]
    fn other_key_or_other_names_are_refused() {
        let key = KeyType::EcdsaP256.generate().expect("key");
        let other = KeyType::EcdsaP256.generate().expect("key");
        let pem = chain_for(&key, &["a.example.org"]);
        let names = names(&["a.example.org"]);
        assert!(matches!(
            verify_chain(&pem, &other, &names),
            Err(AcmeError::Mismatch { .. })
        ));
        let more = self::names(&["a.example.org", "b.example.org"]);
        assert!(matches!(
            verify_chain(&pem, &key, &more),
            Err(AcmeError::Mismatch { .. })
        ));
        assert!(matches!(
            verify_chain("junk", &key, &names),
            Err(AcmeError::Mismatch { .. })
        ));
    }

    /// Found by fuzzing (pem_chain): the first block's BEGIN line was not quite
    /// `CERTIFICATE` and the last block's END line was broken. The splitter cut at the one
    /// intact END and kept the CA's certificate as the leaf, while the check parsed the whole
    /// text, skipped the odd label and matched key and names against the real leaf: the
    /// certificate that would have been installed as `cert.pem` was never checked.
    #[test]
    fn the_leaf_checked_is_the_leaf_installed() {
        let key = KeyType::EcdsaP256.generate().expect("key");
        let pem = chain_for(&key, &["a.example.org"]);
        let blocks = pem_blocks(&pem).expect("a strict chain");
        let names = names(&["a.example.org"]);
        let leaf_then_ca = [
            blocks[1].replacen("BEGIN CERTIFICATE", "BEGIN CE=RTIFICATE", 1),
            blocks[0].replacen("END CERTIFICATE", "END CERTIFICA\0PTE", 1),
        ]
        .concat();
        let err = verify_chain(&leaf_then_ca, &key, &names).expect_err("a mangled chain");
        assert!(matches!(err, AcmeError::Mismatch { .. }), "{err}");
        // Text outside the blocks (RFC 8555 9.1: no explanatory text) and a block holding a
        // second boundary are refused too; blank lines between blocks are not text.
        for bad in [
            format!("issued by us\n{pem}"),
            format!("{pem}trailing"),
            pem.replacen("-----END CERTIFICATE-----\n", "", 1),
            pem.replacen(
                "-----BEGIN CERTIFICATE-----\n",
                "-----BEGIN CERTIFICATE-----\nA: b\n",
                1,
            ),
        ] {
            let err = verify_chain(&bad, &key, &names).expect_err("not a strict chain");
            assert!(matches!(err, AcmeError::Mismatch { .. }), "{bad}");
        }
        let spaced = format!("{}\r\n\n{}", blocks[0], blocks[1]);
        let chain = verify_chain(&spaced, &key, &names).expect("blank lines between blocks");
        assert_eq!(chain.leaf, blocks[0]);
        assert_eq!(chain.full, pem);
    }
}
