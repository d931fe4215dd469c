//! The servers fleetcert watches for a record to appear, and how long it waits: the same keys
//! in a zone config (the file publisher) and in a host config's `update:` (renew), so neither
//! config module owns them.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::{ConfigError, invalid, parse_dns_address};
use crate::shown::shown;

/// How long `publish` waits for every server to serve the new serial.
pub(super) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// `servers`: each `ip` or `ip:port` (port 53 when left out); an empty list is a mistake.
pub(super) fn check_servers(
    path: &Path,
    raw: Option<Vec<String>>,
) -> Result<Option<Vec<SocketAddr>>, ConfigError> {
    match raw {
        None => Ok(None),
        Some(list) if list.is_empty() => Err(invalid(
            path,
            "servers",
            "is empty: list servers or remove the key",
        )),
        Some(list) => list
            .iter()
            .map(|text| {
                parse_dns_address(text).ok_or_else(|| {
                    invalid(
                        path,
                        "servers",
                        format!("{} is not ip or ip:port", shown(text)),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
    }
}
