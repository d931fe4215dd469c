//! After publishing: every authoritative server of a signed zone serves keys that match the
//! parent's DS and valid signatures over the SOA and each published TXT set.

use std::net::SocketAddr;

use futures_util::future::join_all;
use hickory_proto::dnssec::rdata::DS;
use hickory_proto::rr::{Name, RecordType};

use crate::dns::client::{Answer, Bits, QUERY_TIMEOUT, ask};
use crate::dns::wait::{ask_pipelined, not_authoritative};
use crate::dns::{DnsError, DnsName, Recursion};

use super::chain::delegation_signer;
use super::verify::{Break, ZoneKeys, apex_keys, check_zone, unix_now_u32, verify_in};

/// Why one authoritative server's answers for the signing zone do not validate.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{server} serves answers that do not validate: {cause}")]
pub(crate) struct InvalidServer {
    pub(crate) server: SocketAddr,
    pub(crate) cause: ServerCause,
}

/// What is wrong on one server.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum ServerCause {
    /// A key, DS or signature problem.
    #[error(transparent)]
    Break(#[from] Break),
    /// No usable answer to a question with DO.
    #[error("{what}: {reason}")]
    NoAnswer { what: String, reason: String },
    /// Unsigned while another server serves the zone signed.
    #[error(
        "it serves {zone}. without DNSKEY while {signed} serves it signed: an unsigned copy; \
         check the zone transfers to it"
    )]
    NoKeys { zone: DnsName, signed: SocketAddr },
}

/// After the wait of `publish`: when the zone is signed (some server serves its DNSKEY set),
/// checks on every server the keys against the parent's DS (through `resolver`, when it
/// answers), the DNSKEY and SOA signatures and the signature of each of `names`' TXT sets,
/// at the time now. `None` for an unsigned zone.
pub(crate) async fn check_servers(
    servers: &[SocketAddr],
    zone: &DnsName,
    names: &[&DnsName],
    resolver: SocketAddr,
) -> Option<Vec<Result<(), InvalidServer>>> {
    let now = unix_now_u32();
    let apex = zone.to_hickory();
    let keysets = join_all(servers.iter().map(|&server| {
        ask(
            server,
            zone,
            RecordType::DNSKEY,
            Bits::signed(Recursion::Off),
        )
    }))
    .await;
    let signed = servers
        .iter()
        .zip(&keysets)
        .find(|(_, keyset)| {
            keyset
                .as_ref()
                .is_ok_and(|answer| !apex_keys(answer, &apex).is_empty())
        })
        .map(|(&server, _)| server)?;
    // The resolver may be absent where `servers` is configured: the DS check is then left
    // out rather than waited for.
    let ds = tokio::time::timeout(QUERY_TIMEOUT, delegation_signer(resolver, &apex))
        .await
        .unwrap_or_default();
    let zone = SignedZone {
        zone,
        apex,
        ds,
        names,
        now,
        signed,
    };
    let checks = servers.iter().zip(keysets).map(|(&server, keyset)| {
        let zone = &zone;
        async move {
            zone.check_server(server, keyset)
                .await
                .map_err(|cause| InvalidServer { server, cause })
        }
    });
    Some(join_all(checks).await)
}

/// What every server of a signed zone is checked against.
struct SignedZone<'z> {
    zone: &'z DnsName,
    apex: Name,
    /// The DS set at the parent; empty when there is none or the resolver did not answer.
    ds: Vec<DS>,
    /// The names of the published TXT records.
    names: &'z [&'z DnsName],
    now: u32,
    /// A server that serves the zone signed, to name beside one that does not.
    signed: SocketAddr,
}

impl SignedZone<'_> {
    /// One server of [`check_servers`].
    async fn check_server(
        &self,
        server: SocketAddr,
        keyset: Result<Answer, DnsError>,
    ) -> Result<(), ServerCause> {
        let (zone, apex, names, now) = (self.zone, &self.apex, self.names, self.now);
        let no_answer = |what: String, reason: String| ServerCause::NoAnswer { what, reason };
        let answer = keyset.map_err(|err| no_answer(format!("{zone}. DNSKEY"), err.to_string()))?;
        if let Some(wrong) = not_authoritative(&answer) {
            return Err(no_answer(format!("{zone}. DNSKEY"), wrong));
        }
        let records = apex_keys(&answer, apex);
        if records.is_empty() {
            return Err(ServerCause::NoKeys {
                zone: zone.clone(),
                signed: self.signed,
            });
        }
        let keys = ZoneKeys { records, answer };
        if let Some(found) = check_zone(apex, &keys, &self.ds, now) {
            return Err(found.into());
        }
        let dnskeys = keys.keys();
        let soa = ask(server, zone, RecordType::SOA, Bits::signed(Recursion::Off))
            .await
            .map_err(|err| no_answer(format!("{zone}. SOA"), err.to_string()))?;
        let soa_set = &soa.message.answers;
        if let Some(found) = verify_in(apex, apex, RecordType::SOA, soa_set, &dnskeys, now) {
            return Err(found.into());
        }
        let answers = ask_pipelined(
            server,
            names.iter().copied(),
            RecordType::TXT,
            Bits::signed(Recursion::Off),
        )
        .await
        .map_err(|reason| no_answer("TXT records".to_owned(), reason.to_string()))?;
        for (name, found) in answers {
            let what = || format!("{name}. TXT");
            let answer = found.map_err(|reason| no_answer(what(), reason.to_string()))?;
            if let Some(wrong) = not_authoritative(&answer) {
                return Err(no_answer(what(), wrong));
            }
            let owner = name.to_hickory();
            if let Some(found) = verify_in(
                apex,
                &owner,
                RecordType::TXT,
                &answer.message.answers,
                &dnskeys,
                now,
            ) {
                return Err(found.into());
            }
        }
        Ok(())
    }
}
