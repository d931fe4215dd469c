//! The metric families fleetcert writes: each one's name, help and labels, and the group
//! that decides which run rewrites it (docs/monitoring.md lists them).

/// What a group of families describes, which decides which run rewrites them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Group {
    /// One certificate of a host config: rewritten by every host command of that host.
    Certificate,
    /// One probe target of a certificate: rewritten by `check`, kept by the others.
    Probe,
    /// One command's last run: rewritten by that command.
    Command,
    /// The last publication of a zone: rewritten by a publish that published.
    Publish,
}

/// One metric family: its name, help, the label names it may carry (in this order), and its
/// group. Every family is a gauge.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Family {
    pub(crate) name: &'static str,
    pub(crate) help: &'static str,
    pub(crate) labels: &'static [&'static str],
    pub(crate) group: Group,
}

const CERT: &[&str] = &["host", "cert"];
/// The renewal moment carries the rule that set it.
const RENEWAL: &[&str] = &["host", "cert", "rule"];
const PROBE: &[&str] = &["host", "cert", "target"];
const COMMAND: &[&str] = &["command", "host", "zone"];
const ZONE: &[&str] = &["zone"];
const SERVER: &[&str] = &["zone", "server"];

/// Every family fleetcert writes, in the order of the file (docs/monitoring.md lists them).
pub(crate) const FAMILIES: &[Family] = &[
    Family {
        name: "fleetcert_certificate_expiry_timestamp_seconds",
        help: "Expiry (notAfter) of the installed certificate, seconds since the epoch.",
        labels: CERT,
        group: Group::Certificate,
    },
    Family {
        name: "fleetcert_certificate_issued_timestamp_seconds",
        help: "Issue time (notBefore) of the installed certificate, seconds since the epoch.",
        labels: CERT,
        group: Group::Certificate,
    },
    Family {
        name: "fleetcert_certificate_renewal_window_seconds",
        help: "How long before expiry the certificate is renewed: renew.before_days, capped at a third of its lifetime.",
        labels: CERT,
        group: Group::Certificate,
    },
    Family {
        name: "fleetcert_certificate_renewal_timestamp_seconds",
        help: "When the installed certificate renews: its moment in the CA's renewal window (ARI) as the last request heard it, else by renew.before_days, spread; seconds since the epoch. rule: the due reason once it comes (expiring, ari_window, ari_safety_net).",
        labels: RENEWAL,
        group: Group::Certificate,
    },
    Family {
        name: "fleetcert_certificate_due",
        help: "1 when the certificate is due for issuance (reason says why), 0 (reason none) when not.",
        labels: &["host", "cert", "reason"],
        group: Group::Certificate,
    },
    Family {
        name: "fleetcert_certificate_pending",
        help: "1 when an order waits for finalize.",
        labels: CERT,
        group: Group::Certificate,
    },
    Family {
        name: "fleetcert_certificate_reload_pending",
        help: "1 when the certificate's reload failed after its files changed: the service may still serve the previous certificate, and every run tries the reload again.",
        labels: CERT,
        group: Group::Certificate,
    },
    Family {
        name: "fleetcert_certificate_info",
        help: "The installed certificate: its first name, key type, serial (hex), the directory URL of the CA that issued it, and whether that was a fallback CA; value 1.",
        labels: &[
            "host", "cert", "name", "key_type", "serial", "ca", "fallback",
        ],
        group: Group::Certificate,
    },
    Family {
        name: "fleetcert_certificate_probe_result",
        help: "What a TLS server listed in probe serves, compared with the installed certificate: 1 for the result of the last check.",
        labels: &["host", "cert", "target", "result"],
        group: Group::Probe,
    },
    Family {
        name: "fleetcert_certificate_probe_timestamp_seconds",
        help: "When the last check probed the target, seconds since the epoch.",
        labels: PROBE,
        group: Group::Probe,
    },
    Family {
        name: "fleetcert_certificate_probe_expiry_timestamp_seconds",
        help: "Expiry (notAfter) of the certificate the target served, seconds since the epoch.",
        labels: PROBE,
        group: Group::Probe,
    },
    Family {
        name: "fleetcert_command_last_run_timestamp_seconds",
        help: "When the command last started, seconds since the epoch.",
        labels: COMMAND,
        group: Group::Command,
    },
    Family {
        name: "fleetcert_command_duration_seconds",
        help: "How long the command's last run took.",
        labels: COMMAND,
        group: Group::Command,
    },
    Family {
        name: "fleetcert_command_exit_code",
        help: "Exit code of the command's last run (docs/exit-codes.md; check: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN).",
        labels: COMMAND,
        group: Group::Command,
    },
    Family {
        name: "fleetcert_publish_timestamp_seconds",
        help: "When the last publication of the zone started, seconds since the epoch.",
        labels: ZONE,
        group: Group::Publish,
    },
    Family {
        name: "fleetcert_publish_serial",
        help: "The serial of the last publication.",
        labels: ZONE,
        group: Group::Publish,
    },
    Family {
        name: "fleetcert_publish_records",
        help: "TXT records in the zone after the last publication.",
        labels: ZONE,
        group: Group::Publish,
    },
    Family {
        name: "fleetcert_publish_hosts",
        help: "Hosts with records in the zone after the last publication.",
        labels: ZONE,
        group: Group::Publish,
    },
    Family {
        name: "fleetcert_publish_server_propagation_seconds",
        help: "Seconds from the start of the wait until the server served the published serial (absent when it did not).",
        labels: SERVER,
        group: Group::Publish,
    },
    Family {
        name: "fleetcert_publish_server_lagging",
        help: "1 when the server did not serve the published serial within the timeout.",
        labels: SERVER,
        group: Group::Publish,
    },
];

/// The family called `name` (a name from [`FAMILIES`]; anything else is a bug).
pub(crate) fn family(name: &str) -> &'static Family {
    FAMILIES
        .iter()
        .find(|family| family.name == name)
        .unwrap_or_else(|| unreachable!("metric family {name} is not in FAMILIES"))
}
