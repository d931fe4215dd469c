//! A rate limit of the CA that refused an order: which limit, and until when.
//!
//! RFC 8555 section 6.6: the CA answers `rateLimited` and SHOULD say in `Retry-After` when
//! to try again. Let's Encrypt also names the limit (a link to its documentation with the
//! limit's anchor) and repeats the time in the detail ("retry after 2025-11-27 05:06:44
//! UTC"), which is the fallback when the header is missing. The refusal is kept in
//! `state_dir/limits/<cert>.json` so that the next runs do not order again before then:
//! every order the CA refuses still counts against the limit at some CAs, and a daily run
//! that keeps asking only prolongs the wait.

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use super::{AcmeError, problem_type};
use crate::shown::bare;
use crate::state::StateDir;
use crate::store::Versioned;
use crate::timestamp::rfc3339;

/// The RFC 8555 problem type of a rate limit.
pub(crate) const RATE_LIMITED: &str = "urn:ietf:params:acme:error:rateLimited";
/// How long to wait when the CA names no time: long enough not to hammer it, short enough
/// for the limits that refill quickly (failed validations: per hour).
const DEFAULT_WAIT: Duration = Duration::hours(1);
/// The longest wait believed, from either source: Let's Encrypt's longest limit window is 7
/// days. A CA that asks for more (or a garbled date) cannot stop renewals for longer.
const MAX_WAIT: Duration = Duration::days(7);
/// The most characters of the CA's detail kept and shown.
const MAX_DETAIL: usize = crate::shown::MAX_EXCERPT;
/// The most characters of a limit's name.
const MAX_LIMIT_NAME: usize = 64;

/// A refusal by rate limit, as saved and as reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RateLimit {
    pub(crate) version: u32,
    /// The CA's directory URL: a refusal by another CA does not hold here.
    pub(crate) directory: String,
    /// The limit's name, when the CA named it (Let's Encrypt: `new-orders-per-account`, ...).
    pub(crate) limit: Option<String>,
    /// The CA's detail, one line, escaped and bounded.
    pub(crate) detail: String,
    /// No new order before this moment (RFC 3339).
    pub(crate) retry_after: String,
    /// Where `retry_after` came from.
    pub(crate) from: RetryFrom,
    /// When the CA refused (RFC 3339).
    pub(crate) seen: String,
}

/// The source of a rate limit's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum RetryFrom {
    /// The `Retry-After` header.
    RetryAfter,
    /// The problem's detail.
    Detail,
    /// Neither said: [`DEFAULT_WAIT`].
    Default,
}

impl Versioned for RateLimit {
    const VERSION: u32 = 1;
    const WHAT: &'static str = "a saved rate limit";
    const MAX_BYTES: u64 = 64 << 10;
}

impl RateLimit {
    /// The refusal in `problem`, when it is a rate limit.
    pub(crate) fn from_problem(
        directory: &str,
        problem: &instant_acme::Problem,
        retry_after: Option<OffsetDateTime>,
        now: OffsetDateTime,
    ) -> Option<Self> {
        if problem_type(problem) != Some(RATE_LIMITED) {
            return None;
        }
        let detail = problem.detail.as_deref().unwrap_or("");
        let (until, from) = match (retry_after, detail_retry_after(detail)) {
            (Some(at), _) => (at, RetryFrom::RetryAfter),
            (None, Some(at)) => (at, RetryFrom::Detail),
            (None, None) => (now + DEFAULT_WAIT, RetryFrom::Default),
        };
        let until = until.clamp(now, now + MAX_WAIT);
        Some(Self {
            version: Self::VERSION,
            directory: directory.to_owned(),
            limit: limit_name(detail),
            detail: bare(
                &detail.split_whitespace().collect::<Vec<_>>().join(" "),
                MAX_DETAIL,
            ),
            retry_after: rfc3339(until),
            from,
            seen: rfc3339(now),
        })
    }

    /// The moment before which no order goes out; `None` when the file holds no valid time.
    pub(crate) fn until(&self) -> Option<OffsetDateTime> {
        OffsetDateTime::parse(&self.retry_after, &Rfc3339).ok()
    }

    /// Whether this refusal still stops an order to `directory` at `now`.
    pub(crate) fn holds(&self, directory: &str, now: OffsetDateTime) -> bool {
        self.directory == directory && self.until().is_some_and(|until| now < until)
    }

    /// The saved refusal of `cert` by the CA whose rate limits are kept in `limits`
    /// ([`super::limits_dir`]), if any.
    pub(crate) fn load(
        state: &StateDir,
        limits: &str,
        cert: &str,
    ) -> Result<Option<Self>, AcmeError> {
        Ok(state.load_rate_limit(limits, cert)?)
    }

    /// Keeps this refusal in `limits`.
    pub(crate) fn save(&self, state: &StateDir, limits: &str, cert: &str) -> Result<(), AcmeError> {
        Ok(state.save_rate_limit(limits, cert, self)?)
    }

    /// Forgets the refusal of `cert` in `limits`; nothing to forget is fine.
    pub(crate) fn remove(state: &StateDir, limits: &str, cert: &str) -> Result<(), AcmeError> {
        Ok(state.remove_rate_limit(limits, cert)?)
    }
}

impl std::fmt::Display for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let from = match self.from {
            RetryFrom::RetryAfter => "the CA's Retry-After",
            RetryFrom::Detail => "the CA's message",
            RetryFrom::Default => "the CA named no time",
        };
        write!(
            f,
            "the CA's rate limit {} refused a new order at {}: no new order before {} ({from})",
            self.limit.as_deref().unwrap_or("(unnamed)"),
            self.seen,
            self.retry_after
        )?;
        if !self.detail.is_empty() {
            write!(f, "; the CA said: {}", self.detail)?;
        }
        Ok(())
    }
}

/// The limit's name from a link to Let's Encrypt's rate limit documentation in `detail`
/// (`.../docs/rate-limits/#new-orders-per-account`).
fn limit_name(detail: &str) -> Option<String> {
    let (_, after) = detail.split_once("/rate-limits/#")?;
    let name: String = after
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    (!name.is_empty() && name.len() <= MAX_LIMIT_NAME).then_some(name)
}

/// The time in "retry after 2025-11-27 05:06:44 UTC" (Let's Encrypt since 2024) or "Retry
/// after 2023-08-04T12:00:00Z" (before).
fn detail_retry_after(detail: &str) -> Option<OffsetDateTime> {
    const MARK: &str = "retry after ";
    let at = detail.to_ascii_lowercase().find(MARK)? + MARK.len();
    let rest = detail.get(at..)?;
    let spaced =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    if let Some(text) = rest.get(..23)
        && let Ok(at) = time::PrimitiveDateTime::parse(text, spaced)
    {
        return Some(at.assume_utc());
    }
    let token = rest.split_whitespace().next()?;
    OffsetDateTime::parse(token.trim_end_matches([':', ',', ';', '.']), &Rfc3339).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2025-11-27 04:29:32 UTC);

    fn problem(detail: &str) -> instant_acme::Problem {
        serde_json::from_value(serde_json::json!({
            "type": RATE_LIMITED, "detail": detail, "status": 429
        }))
        .expect("problem")
    }

    /// Let's Encrypt's wording, as Boulder logged it.
    const EXACT_SET: &str = "too many certificates (5) already issued for this exact set of \
        identifiers in the last 168h0m0s, retry after 2025-11-27 05:06:44 UTC: see \
        https://letsencrypt.org/docs/rate-limits/#new-certificates-per-exact-set-of-identifiers";

    #[test]
    fn retry_after_header_wins_and_the_limit_is_named() {
        let header = datetime!(2025-11-27 05:10:00 UTC);
        let limit =
            RateLimit::from_problem("https://ca/dir", &problem(EXACT_SET), Some(header), NOW)
                .expect("a rate limit");
        assert_eq!(
            limit.limit.as_deref(),
            Some("new-certificates-per-exact-set-of-identifiers")
        );
        assert_eq!(limit.retry_after, "2025-11-27T05:10:00Z");
        assert_eq!(limit.from, RetryFrom::RetryAfter);
        let line = limit.to_string();
        assert!(
            line.contains("new-certificates-per-exact-set-of-identifiers")
                && line.contains("no new order before 2025-11-27T05:10:00Z"),
            "{line}"
        );
        assert!(limit.holds("https://ca/dir", NOW));
        assert!(!limit.holds("https://other/dir", NOW));
        assert!(!limit.holds("https://ca/dir", header));
    }

    #[test]
    fn the_detail_gives_the_time_without_the_header() {
        let limit = RateLimit::from_problem("d", &problem(EXACT_SET), None, NOW).expect("limit");
        assert_eq!(limit.retry_after, "2025-11-27T05:06:44Z");
        assert_eq!(limit.from, RetryFrom::Detail);
        let older = "Error creating new order :: too many certificates already issued for \
            \"example.com\". Retry after 2025-11-28T12:00:00Z: see https://letsencrypt.org/docs/rate-limits/";
        let limit = RateLimit::from_problem("d", &problem(older), None, NOW).expect("limit");
        assert_eq!(limit.retry_after, "2025-11-28T12:00:00Z");
        assert_eq!(limit.limit, None);
    }

    #[test]
    fn no_time_means_an_hour_and_no_wait_is_longer_than_a_week() {
        let limit = RateLimit::from_problem("d", &problem("Service busy; retry later."), None, NOW)
            .expect("limit");
        assert_eq!(limit.from, RetryFrom::Default);
        assert_eq!(limit.until(), Some(NOW + Duration::hours(1)));
        let far = datetime!(2030-01-01 0:00 UTC);
        let limit =
            RateLimit::from_problem("d", &problem(EXACT_SET), Some(far), NOW).expect("limit");
        assert_eq!(limit.until(), Some(NOW + Duration::days(7)));
    }

    #[test]
    fn other_problems_are_not_rate_limits() {
        let other: instant_acme::Problem = serde_json::from_value(
            serde_json::json!({"type": "urn:ietf:params:acme:error:malformed"}),
        )
        .expect("problem");
        assert!(RateLimit::from_problem("d", &other, None, NOW).is_none());
    }

    #[test]
    fn hostile_detail_stays_one_bounded_line() {
        let detail = format!(
            "line\nbreak \u{1b}[31m {} /rate-limits/#{}",
            "x".repeat(1000),
            "y".repeat(100)
        );
        let limit = RateLimit::from_problem("d", &problem(&detail), None, NOW).expect("limit");
        let line = limit.to_string();
        assert!(!line.contains('\n') && !line.contains('\u{1b}'), "{line}");
        assert!(line.len() < 600, "{}", line.len());
        assert_eq!(limit.limit, None, "a 100-character name is no limit name");
    }
}
