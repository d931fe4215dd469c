//! The delegation pre-check: before ordering, each name's `_acme-challenge` must be a CNAME
//! (possibly a chain) that ends at the record fleetcert will publish in the signing zone.
//!
//! It asks the configured recursive resolver for CNAME records only, hop by hop, and never
//! queries the final target: a TXT or CNAME lookup there before the record exists would
//! leave an NXDOMAIN in the resolver's negative cache, which the CA might then meet.

use std::net::SocketAddr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};

use super::{DnsError, Recursion, parse_name, query};
use crate::names::acme_challenge_name;

/// CNAME chains longer than this are refused (loops, or a delegation nobody can follow).
const MAX_CHAIN: usize = 8;

/// Why a name's `_acme-challenge` would not lead the CA to fleetcert's record.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DelegationError {
    /// No CNAME at `_acme-challenge.<name>`.
    #[error("{name} has no CNAME: add `{name} CNAME {target}`")]
    Missing { name: String, target: String },
    /// The CNAME (chain) ends somewhere else.
    #[error("{name} leads to {found}, not to {target}: change it to `{name} CNAME {target}`")]
    Elsewhere {
        name: String,
        found: String,
        target: String,
    },
    /// The chain does not end within [`MAX_CHAIN`] hops.
    #[error(
        "{name}: the CNAME chain is longer than {MAX_CHAIN} hops (a loop?): point it straight at {target}"
    )]
    TooLong { name: String, target: String },
    /// The resolver gave no usable answer.
    #[error("cannot check {name}: {source}; check `resolver` in the host config")]
    Resolver {
        name: String,
        #[source]
        source: DnsError,
    },
    /// The resolver answered with an error code.
    #[error(
        "cannot check {name}: resolver {server} answered {code}; check `resolver` in the host config"
    )]
    Refused {
        name: String,
        server: SocketAddr,
        code: ResponseCode,
    },
}

/// Checks that `_acme-challenge.<identifier>` leads to `target` (fully qualified, with dot).
pub(crate) async fn check_delegation(
    resolver: SocketAddr,
    identifier: &str,
    target: &str,
) -> Result<(), DelegationError> {
    let start = acme_challenge_name(identifier);
    let target = absolute(target);
    let mut current = start.clone();
    for hop in 0..MAX_CHAIN {
        let name = parse_name(&current).map_err(|source| DelegationError::Resolver {
            name: start.clone(),
            source,
        })?;
        let answer = query(resolver, &name, RecordType::CNAME, Recursion::Desired)
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
                RData::CNAME(cname) if absolute(&record.name.to_string()) == current => {
                    Some(absolute(&cname.0.to_string()))
                }
                _ => None,
            });
        match next {
            Some(next) if next == target => return Ok(()),
            Some(next) => current = next,
            None if hop == 0 => {
                return Err(DelegationError::Missing {
                    name: start,
                    target,
                });
            }
            None => {
                return Err(DelegationError::Elsewhere {
                    name: start,
                    found: current,
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

/// Lower case with exactly one trailing dot, for comparing names.
fn absolute(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.').to_ascii_lowercase())
}
