//! Finding the authoritative servers of a zone when `servers:` is not configured.
//!
//! The zone's NS set comes from the configured recursive resolver, and so do the addresses of
//! each nameserver (A and AAAA), on port 53: the servers the world would ask. The one named as
//! the SOA MNAME (the primary) goes first, because the records are checked on the first server.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};

use super::DnsName;
use super::client::{DnsError, Recursion, query};

/// Port of the discovered servers.
const DNS_PORT: u16 = 53;

/// The servers of a zone could not be found.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DiscoverError {
    /// The resolver did not answer.
    #[error(transparent)]
    NoAnswer(#[from] DnsError),
    /// The resolver answered with an error code.
    #[error(
        "resolver {resolver} answered {code} for {name} {rtype}: check the delegation, or list `servers:`"
    )]
    Refused {
        resolver: SocketAddr,
        name: DnsName,
        rtype: RecordType,
        code: ResponseCode,
    },
    /// The zone has no NS records.
    #[error(
        "resolver {resolver} knows no NS records for {zone}: check the delegation, or list `servers:`"
    )]
    NoNameservers { resolver: SocketAddr, zone: DnsName },
    /// None of the nameservers has an address.
    #[error("none of the nameservers of {zone} ({names}) has an address: list `servers:`")]
    NoAddresses { zone: DnsName, names: String },
}

/// The authoritative servers of `zone`, the one called `primary` (the SOA MNAME) first.
pub(crate) async fn discover_servers(
    zone: &DnsName,
    resolver: SocketAddr,
    primary: Option<&DnsName>,
) -> Result<Vec<SocketAddr>, DiscoverError> {
    let answer = query(resolver, zone, RecordType::NS, Recursion::Desired).await?;
    check_code(resolver, zone, RecordType::NS, answer.response_code())?;
    let mut names: Vec<DnsName> = answer
        .answers()
        .filter_map(|data| match data {
            // A name that is not one fleetcert would accept cannot be a usable nameserver.
            RData::NS(ns) => DnsName::from_hickory(&ns.0),
            _ => None,
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if names.is_empty() {
        return Err(DiscoverError::NoNameservers {
            resolver,
            zone: zone.clone(),
        });
    }
    // The primary first; the sort is stable, so the rest keep their (sorted) order.
    names.sort_by_key(|name| Some(name) != primary);
    let mut servers = Vec::new();
    for name in &names {
        for rtype in [RecordType::A, RecordType::AAAA] {
            let answer = query(resolver, name, rtype, Recursion::Desired).await?;
            for data in answer.answers() {
                let ip = match data {
                    RData::A(a) => IpAddr::V4(a.0),
                    RData::AAAA(aaaa) => IpAddr::V6(aaaa.0),
                    _ => continue,
                };
                let server = SocketAddr::new(ip, DNS_PORT);
                if !servers.contains(&server) {
                    servers.push(server);
                }
            }
        }
    }
    if servers.is_empty() {
        let names: Vec<String> = names.iter().map(DnsName::to_string).collect();
        return Err(DiscoverError::NoAddresses {
            zone: zone.clone(),
            names: names.join(", "),
        });
    }
    tracing::info!(%zone, servers = ?servers, "found the authoritative servers");
    Ok(servers)
}

fn check_code(
    resolver: SocketAddr,
    name: &DnsName,
    rtype: RecordType,
    code: ResponseCode,
) -> Result<(), DiscoverError> {
    if code == ResponseCode::NoError {
        Ok(())
    } else {
        Err(DiscoverError::Refused {
            resolver,
            name: name.clone(),
            rtype,
            code,
        })
    }
}
