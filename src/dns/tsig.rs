//! TSIG keys (RFC 8945): the name, algorithm and secret that sign fleetcert's DNS UPDATE
//! messages and its reads of the zone.
//!
//! The secret never leaves this type except into hickory's signer: `Debug` shows the name and
//! the algorithm only, and nothing here implements `Display` or `Serialize` for it.

use std::fmt;

use hickory_proto::rr::TSigner;
use hickory_proto::rr::rdata::tsig::TsigAlgorithm;

use super::DnsName;

/// How far apart the two clocks may be (RFC 8945 section 5.2.3): BIND's and Knot's default.
pub(crate) const FUDGE_SECONDS: u16 = 300;

/// The HMAC algorithms hickory signs with (it has no MD5, SHA-1 or truncated MACs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum TsigAlgo {
    #[default]
    HmacSha256,
    HmacSha384,
    HmacSha512,
}

impl TsigAlgo {
    /// Every algorithm, in the order the docs list them.
    pub(crate) const ALL: [Self; 3] = [Self::HmacSha256, Self::HmacSha384, Self::HmacSha512];

    /// The algorithm named `text` as BIND and Knot write it (`hmac-sha256`, any case, with or
    /// without the trailing dot of its DNS name).
    pub(crate) fn parse(text: &str) -> Option<Self> {
        let text = text.strip_suffix('.').unwrap_or(text);
        Self::ALL
            .into_iter()
            .find(|algo| algo.name().eq_ignore_ascii_case(text))
    }

    /// The name BIND's `algorithm` clause and Knot's `algorithm:` take.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Self::HmacSha256 => "hmac-sha256",
            Self::HmacSha384 => "hmac-sha384",
            Self::HmacSha512 => "hmac-sha512",
        }
    }

    fn to_hickory(self) -> TsigAlgorithm {
        match self {
            Self::HmacSha256 => TsigAlgorithm::HmacSha256,
            Self::HmacSha384 => TsigAlgorithm::HmacSha384,
            Self::HmacSha512 => TsigAlgorithm::HmacSha512,
        }
    }
}

impl fmt::Display for TsigAlgo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A TSIG key: its name on the server, its algorithm and its secret.
#[derive(Clone)]
pub(crate) struct TsigKey {
    pub(crate) name: DnsName,
    pub(crate) algorithm: TsigAlgo,
    secret: Vec<u8>,
}

impl fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TsigKey")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl TsigKey {
    pub(crate) fn new(name: DnsName, algorithm: TsigAlgo, secret: Vec<u8>) -> Self {
        Self {
            name,
            algorithm,
            secret,
        }
    }

    /// The signer hickory signs and verifies messages with.
    pub(crate) fn signer(&self) -> TSigner {
        // The three algorithms are the ones hickory supports, so this never fails; should a
        // future hickory drop one, the message says so instead of panicking.
        TSigner::new(
            self.secret.clone(),
            self.algorithm.to_hickory(),
            self.name.to_hickory(),
            FUDGE_SECONDS,
        )
        .unwrap_or_else(|_| unreachable_algorithm(self.algorithm))
    }
}

#[cold]
fn unreachable_algorithm(algo: TsigAlgo) -> TSigner {
    // hickory-proto 0.26 supports HMAC-SHA256/384/512; this build was made with one that
    // does not, which the unit test below catches before it ships.
    panic!("hickory-proto does not support {algo}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithms_parse_as_servers_write_them_and_all_can_sign() {
        assert_eq!(TsigAlgo::parse("hmac-sha256"), Some(TsigAlgo::HmacSha256));
        assert_eq!(TsigAlgo::parse("HMAC-SHA384."), Some(TsigAlgo::HmacSha384));
        assert_eq!(TsigAlgo::parse("hmac-sha512"), Some(TsigAlgo::HmacSha512));
        assert_eq!(TsigAlgo::parse("hmac-md5"), None);
        let name = DnsName::parse("fleetcert").expect("name");
        for algo in TsigAlgo::ALL {
            let key = TsigKey::new(name.clone(), algo, vec![7; 32]);
            assert_eq!(key.signer().algorithm(), &algo.to_hickory());
        }
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let key = TsigKey::new(
            DnsName::parse("k").expect("name"),
            TsigAlgo::HmacSha256,
            b"sekrit-bytes".to_vec(),
        );
        let shown = format!("{key:?}");
        assert!(
            !shown.contains("sekrit") && !shown.contains("115"),
            "{shown}"
        );
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}
