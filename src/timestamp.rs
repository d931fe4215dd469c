//! How fleetcert writes a moment: RFC 3339 in UTC, in reports, logs and state files alike.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// `at` as RFC 3339 (`2026-02-21T11:39:50Z`).
pub(crate) fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_else(|_| at.to_string())
}
