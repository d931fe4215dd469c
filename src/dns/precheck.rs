//! The delegation pre-check: before ordering, each name's `_acme-challenge` must be a CNAME
//! (possibly a chain) that ends at the record fleetcert will publish in the signing zone.
//!
//! It asks the configured recursive resolver for CNAME records only, hop by hop, and never
//! queries the final target: a TXT or CNAME lookup there before the record exists would
//! leave an NXDOMAIN in the resolver's negative cache, which the CA might then meet.

use std::net::SocketAddr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};

use super::{DnsError, DnsName, NameError, Recursion, query};
use crate::shown::shown;

/// CNAME chains longer than this are refused (loops, or a delegation nobody can follow).
const MAX_CHAIN: usize = 8;

/// Why a name's `_acme-challenge` would not lead the CA to fleetcert's record.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DelegationError {
    /// No CNAME at `_acme-challenge.<name>`.
    #[error("{}. has no CNAME: add `{}. CNAME {}`", name, name, target.fqdn())]
    Missing { name: DnsName, target: DnsName },
    /// The CNAME (chain) ends somewhere else.
    #[error("{}. leads to {found}, not to {}: change it to `{}. CNAME {}`", name, target.fqdn(), name, target.fqdn())]
    Elsewhere {
        name: DnsName,
        /// What the chain ended at, shown escaped (it came from DNS).
        found: String,
        target: DnsName,
    },
    /// The chain does not end within [`MAX_CHAIN`] hops.
    #[error(
        "{}.: the CNAME chain is longer than {MAX_CHAIN} hops (a loop?): point it straight at {}", name, target.fqdn()
    )]
    TooLong { name: DnsName, target: DnsName },
    /// The name itself cannot be asked (too long with the `_acme-challenge` label).
    #[error("{identifier}: `_acme-challenge.{identifier}` is longer than a DNS name may be")]
    TooLongToAsk { identifier: DnsName },
    /// The resolver gave no usable answer.
    #[error("cannot check {name}.: {source}; check `resolver` in the host config")]
    Resolver {
        name: DnsName,
        #[source]
        source: DnsError,
    },
    /// The resolver answered with an error code.
    #[error(
        "cannot check {name}.: resolver {server} answered {code}; check `resolver` in the host config"
    )]
    Refused {
        name: DnsName,
        server: SocketAddr,
        code: ResponseCode,
    },
}

/// `_acme-challenge.<base name>`, the name the CA queries for `identifier` (RFC 8555 8.4).
pub(super) fn challenge_name(identifier: &DnsName) -> Result<DnsName, NameError> {
    identifier.base().child("_acme-challenge")
}

/// Checks that `_acme-challenge.<identifier>` leads to `target`.
pub(crate) async fn check_delegation(
    resolver: SocketAddr,
    identifier: &DnsName,
    target: &DnsName,
) -> Result<(), DelegationError> {
    let start = challenge_name(identifier).map_err(|_| DelegationError::TooLongToAsk {
        identifier: identifier.clone(),
    })?;
    let target = target.clone();
    let mut current = start.clone();
    for hop in 0..MAX_CHAIN {
        let answer = query(resolver, &current, RecordType::CNAME, Recursion::Desired)
            .await
            .map_err(|source| DelegationError::Resolver {
                name: start.clone(),
                source,
            })?;
        let code = answer.response_code();
        if code != ResponseCode::NoError && code != ResponseCode::NXDomain {
            return Err(DelegationError::Refused {
                name: start,
                server: resolver,
                code,
            });
        }
        let next = answer
            .message
            .answers
            .iter()
            .find_map(|record| match &record.data {
                RData::CNAME(cname)
                    if DnsName::from_hickory(&record.name).as_ref() == Some(&current) =>
                {
                    Some(cname.0.clone())
                }
                _ => None,
            });
        match next.map(|next| DnsName::from_hickory(&next).ok_or(next)) {
            Some(Ok(next)) if next == target => return Ok(()),
            Some(Ok(next)) => current = next,
            // A target that is not a name we could publish at: the chain ends there.
            Some(Err(raw)) => {
                return Err(DelegationError::Elsewhere {
                    name: start,
                    found: shown(&raw.to_ascii()),
                    target,
                });
            }
            None if hop == 0 => {
                return Err(DelegationError::Missing {
                    name: start,
                    target,
                });
            }
            None => {
                return Err(DelegationError::Elsewhere {
                    name: start,
                    found: current.fqdn(),
                    target,
                });
            }
        }
    }
    Err(DelegationError::TooLong {
        name: start,
        target,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_is_validated_at_its_base_names_challenge() {
        let id = DnsName::parse_identifier("*.x.org").expect("identifier");
        assert_eq!(
            challenge_name(&id).expect("fits").fqdn(),
            "_acme-challenge.x.org."
        );
    }
}
