//! The chain a CA issues: split into leaf and intermediates, and checked against what was
//! asked for before any file is replaced.

use x509_parser::prelude::{FromDer, X509Certificate};

use super::AcmeError;
use crate::cert::{Inspection, PrivateKey, inspect_chain};
use crate::dns::DnsName;

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

const PEM_END: &str = "-----END CERTIFICATE-----";

/// Splits a PEM chain into its certificate blocks, each ending in a newline.
fn pem_blocks(pem: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut rest = pem;
    while let Some(end) = rest.find(PEM_END) {
        let (block, after) = rest.split_at(end + PEM_END.len());
        let block = block.trim_start();
        if !block.is_empty() {
            blocks.push(format!("{block}\n"));
        }
        rest = after;
    }
    blocks
}

/// Checks that the chain parses, that its leaf carries `key`'s public key and exactly
/// `names`, and splits it.
pub(crate) fn verify_chain(
    pem: &str,
    key: &PrivateKey,
    names: &[DnsName],
) -> Result<IssuedChain, AcmeError> {
    let mismatch = |problem: String| AcmeError::Mismatch { problem };
    let blocks = pem_blocks(pem);
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
    let inspection =
        inspect_chain(pem.as_bytes()).map_err(|err| mismatch(format!("the leaf {err}")))?;
    if inspection.public_key_info != key.public_key_info() {
        return Err(mismatch(
            "the leaf's public key is not the key made for it".to_owned(),
        ));
    }
    let mut wanted: Vec<String> = names.iter().map(ToString::to_string).collect();
    wanted.sort();
    if inspection.names != wanted {
        return Err(mismatch(format!(
            "the leaf names [{}], the order asked for [{}]",
            inspection.names.join(", "),
            wanted.join(", ")
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
        assert_eq!(pem_blocks(&chain.leaf).len(), 1);
        assert_eq!(pem_blocks(&chain.intermediates).len(), 1);
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
}
