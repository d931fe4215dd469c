//! CAA for one CA (RFC 8659): each CA must be allowed by every name's CAA set before it gets
//! an order. The CAs themselves, and which one is asked when, are `acme::Cas`.

use std::net::SocketAddr;

use futures_util::StreamExt as _;

use super::failure::CertFailure;
use crate::acme::Ca;
use crate::config::CertSpec;
use crate::dns::{CaaError, DnsName, relevant_set};

/// CAA questions in flight at once for one certificate.
const CAA_CONCURRENCY: usize = 8;

/// Whether CAA allows `ca` to issue for every name of `spec` (RFC 8659), through the host's
/// resolver. The CA's identities are read only when some set restricts issuing.
pub(super) async fn check_caa(
    resolver: SocketAddr,
    ca: &Ca<'_>,
    spec: &CertSpec,
) -> Result<(), CertFailure> {
    let sets: Vec<Result<_, CaaError>> = futures_util::stream::iter(spec.names.iter())
        .map(|name| async move { relevant_set(resolver, name).await.map(|set| (name, set)) })
        .buffered(CAA_CONCURRENCY)
        .collect()
        .await;
    let mut problems = Vec::new();
    for found in sets {
        let (name, set): (&DnsName, _) = found?;
        let Some(set) = set else { continue };
        let identities = ca.identities().await?;
        if let Err(problem) = set.allows(name, identities) {
            problems.push(problem);
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(CertFailure::Caa(problems))
    }
}
