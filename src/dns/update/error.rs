//! [`UpdateError`]: what the primary did not do, each variant one line naming the server,
//! the key and the fix; and [`policy_fix`], the permission a refused key lacks.

use std::net::SocketAddr;

use hickory_proto::op::ResponseCode;

use crate::dns::DnsName;
use crate::dns::tsig::FUDGE_SECONDS;

/// How many names a REFUSED line spells out as `grant ... name` lines before it suggests
/// `zonesub` instead.
const NAMED_GRANTS: usize = 4;

/// The key as messages name it, without the secret.
#[derive(Debug, Clone)]
pub(crate) struct KeyLabel {
    pub(crate) name: DnsName,
    pub(crate) algorithm: &'static str,
    /// Where the secret came from (shown).
    pub(crate) secret_file: String,
}

/// What an exchange with the primary was for, in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    Transfer,
    Query,
    Update,
}

impl Operation {
    const fn what(self) -> &'static str {
        match self {
            Self::Transfer => "the zone transfer (AXFR)",
            Self::Query => "a question",
            Self::Update => "the UPDATE",
        }
    }
}

/// The primary did not do what was asked.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpdateError {
    /// No TCP connection (exit 4).
    #[error(
        "cannot reach the primary {server} over TCP for key {key} ({reason}): is update.server \
         the primary's address and port, and does a firewall let TCP port 53 through?"
    )]
    Connect {
        server: SocketAddr,
        key: DnsName,
        reason: String,
    },
    /// No answer in time, or the connection closed (exit 4).
    #[error(
        "the primary {server} gave no answer to {} within {seconds} s (key {key}): {reason}; is \
         update.server the primary, and is it up (and is it a DNS server)?",
        operation.what()
    )]
    Timeout {
        server: SocketAddr,
        key: DnsName,
        operation: Operation,
        seconds: u64,
        reason: String,
    },
    /// REFUSED: the key's policy does not allow it (exit 2).
    #[error(
        "the primary {server} refused {} signed with key {} (REFUSED): {fix}",
        operation.what(), key.name
    )]
    Refused {
        server: SocketAddr,
        key: Box<KeyLabel>,
        operation: Operation,
        fix: String,
    },
    /// NOTAUTH without a TSIG error: not the zone's primary, or (PowerDNS) a key it does not
    /// know or whose secret differs: it answers both with a bare NOTAUTH (exit 2).
    #[error(
        "{server} answered NOTAUTH to key {} for zone {zone}: either it is not the zone's \
         primary (point update.server at it, and check `zone`), or it is PowerDNS and does not \
         know key {} with {} and the secret in {} (PowerDNS answers an unknown key or a wrong \
         secret so; give it the key: `pdnsutil import-tsig-key {} {} <the base64 in {}>`)",
        key.name, key.name, key.algorithm, key.secret_file, key.name, key.algorithm,
        key.secret_file
    )]
    NotAuth {
        server: SocketAddr,
        zone: DnsName,
        key: Box<KeyLabel>,
    },
    /// BADKEY: the server has no such key (exit 2).
    #[error(
        "{server} does not know key {} with {} (BADKEY): give the server `key \"{}\" {{ \
         algorithm {}; secret \"<the base64 in {}>\"; }};`, or fix update.key_name and \
         update.algorithm",
        key.name, key.algorithm, key.name, key.algorithm, key.secret_file
    )]
    BadKey {
        server: SocketAddr,
        key: Box<KeyLabel>,
    },
    /// BADSIG: the server has another secret for the key (exit 2).
    #[error(
        "{server} rejected the signature of key {} (BADSIG): the secret in {} is not the one \
         the server has for that key; copy the server's secret there (base64, mode 0600)",
        key.name, key.secret_file
    )]
    BadSig {
        server: SocketAddr,
        key: Box<KeyLabel>,
    },
    /// BADTIME: the clocks are too far apart (exit 2).
    #[error(
        "{server} rejected the time of key {key}'s signature (BADTIME): this host's clock says \
         {ours}, the server's says {theirs}, more than {FUDGE_SECONDS} s apart; set the clock \
         that is wrong right (NTP)"
    )]
    BadTime {
        server: SocketAddr,
        key: DnsName,
        ours: String,
        theirs: String,
    },
    /// NOTZONE: a name outside the zone (exit 2).
    #[error(
        "{server} answered NOTZONE to key {key}'s UPDATE: a name lies outside zone {zone} as \
         the server has it; check `zone` against the server's zone"
    )]
    NotZone {
        server: SocketAddr,
        zone: DnsName,
        key: DnsName,
    },
    /// A prerequisite failed: the zone changed since it was read (retried from a new read).
    #[error(
        "the zone changed on {server} between reading it and updating it ({code}): another \
         client is changing the same records"
    )]
    Changed {
        server: SocketAddr,
        code: ResponseCode,
    },
    /// Any other error code (exit 4).
    #[error("the primary {server} answered {code} to {} (key {key}): see its log", operation.what())]
    Failed {
        server: SocketAddr,
        key: DnsName,
        operation: Operation,
        code: ResponseCode,
    },
    /// A success that is not signed by the key: not believed (exit 4).
    #[error(
        "the answer of {server} to {} is not signed by key {key}, or its signature does not \
         verify ({reason}): none of it is believed; is something between here and the server \
         rewriting DNS?",
        operation.what()
    )]
    Unverified {
        server: SocketAddr,
        key: DnsName,
        operation: Operation,
        reason: String,
    },
    /// An answer that cannot be read, or a message that cannot be built (exit 4).
    #[error("{server}: {reason}")]
    Malformed { server: SocketAddr, reason: String },
}

impl UpdateError {
    /// Whether the operator must fix the config, the key or the server's policy (exit 2); the
    /// zone was not changed by the message that failed.
    pub(crate) fn is_usage(&self) -> bool {
        matches!(
            self,
            Self::Refused { .. }
                | Self::NotAuth { .. }
                | Self::BadKey { .. }
                | Self::BadSig { .. }
                | Self::BadTime { .. }
                | Self::NotZone { .. }
        )
    }
}

/// One TXT record set's change, applied atomically with the set as it was as prerequisite.
/// The line that tells the operator which permission the key lacks: BIND's `update-policy`
/// grant, Knot's `acl`, PowerDNS's `TSIG-ALLOW-DNSUPDATE` (which answers REFUSED to a valid
/// key without it).
pub(crate) fn policy_fix(key: &DnsName, zone: &DnsName, names: &[&DnsName]) -> String {
    let powerdns = format!(
        "PowerDNS: `pdnsutil set-meta {zone} TSIG-ALLOW-DNSUPDATE {key}`, with this host in \
         `allow-dnsupdate-from`"
    );
    if names.is_empty() || names.len() > NAMED_GRANTS {
        return format!(
            "add `grant \"{key}\" zonesub TXT;` to the zone's update-policy (BIND), or an \
             acl with `key: {key}`, `action: update` and `update-type: [TXT]` to the zone \
             (Knot), or ({powerdns})"
        );
    }
    let grants: Vec<String> = names
        .iter()
        .map(|name| format!("grant \"{key}\" name {} TXT;", name.fqdn()))
        .collect();
    let owners: Vec<String> = names.iter().map(|name| name.fqdn()).collect();
    format!(
        "add `{}` to the zone's update-policy (BIND), or to the key's acl `update-owner: \
         name` with `update-owner-name: [{}]` (Knot), or ({powerdns}), or publish only the \
         names the key may change",
        grants.join(" "),
        owners.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> DnsName {
        DnsName::parse(text).expect("name")
    }

    #[test]
    fn refused_names_become_grant_lines_and_many_become_zonesub() {
        let key = name("host01");
        let zone = name("acme.example.net");
        let record = name("host01.example.org.acme.example.net");
        assert_eq!(
            policy_fix(&key, &zone, &[&record]),
            "add `grant \"host01\" name host01.example.org.acme.example.net. TXT;` to the \
             zone's update-policy (BIND), or to the key's acl `update-owner: name` with \
             `update-owner-name: [host01.example.org.acme.example.net.]` (Knot), or \
             (PowerDNS: `pdnsutil set-meta acme.example.net TSIG-ALLOW-DNSUPDATE host01`, \
             with this host in `allow-dnsupdate-from`), or publish only the names the key may \
             change"
        );
        let many: Vec<DnsName> = (0..9).map(|i| name(&format!("h{i}.acme.test"))).collect();
        let refs: Vec<&DnsName> = many.iter().collect();
        let fix = policy_fix(&key, &zone, &refs);
        assert!(fix.contains("grant \"host01\" zonesub TXT;"), "{fix}");
        assert!(
            fix.contains("acl with `key: host01`, `action: update`"),
            "{fix}"
        );
        assert!(fix.contains("TSIG-ALLOW-DNSUPDATE host01"), "{fix}");
    }
}
