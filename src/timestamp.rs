//! How fleetcert writes a moment: RFC 3339 in UTC, in reports, logs and state files alike;
//! and the Unix seconds of now, which TSIG and the ledger count in.

use std::time::{SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// `at` as RFC 3339 (`2026-02-21T11:39:50Z`).
pub(crate) fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_else(|_| at.to_string())
}

/// Unix seconds now (what a TSIG record carries, what the ledger stamps); a clock before 1970
/// counts as 0.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}
