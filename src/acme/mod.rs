//! The ACME side: the account (created once, reused), and orders that survive between
//! `request` and `finalize`, kept in the host's state directory (`crate::state`).
//!
//! Everything that talks to the CA lives here; the commands decide *what* to ask for.

use std::path::PathBuf;
use std::time::Duration;

use instant_acme::{Problem, RetryPolicy};

use crate::cert::KeyError;
use crate::shown::bare;
use crate::store::StoreError;

/// Repeats a CA request that came back with `badNonce` after instant-acme's own three tries.
///
/// A CA may reject any nonce (Pebble's `PEBBLE_WFE_NONCEREJECT` rejects half of them); the
/// request was not acted on, so sending it again is always safe. `$call` may be a walk or a
/// poll of several requests, where any one rejected nonce starts it again.
macro_rules! retry_bad_nonce {
    ($call:expr) => {{
        let mut attempt = 1;
        loop {
            match $call.await {
                Err(err)
                    if $crate::acme::BadNonce::is_bad_nonce(&err)
                        && attempt < $crate::acme::BAD_NONCE_ATTEMPTS =>
                {
                    attempt += 1;
                    tracing::debug!(attempt, "CA rejected the nonce again; retrying");
                }
                result => break result,
            }
        }
    }};
}

mod account;
mod ari;
mod cas;
mod chain;
mod directory;
mod http;
mod issued;
mod limit;
mod observe;
mod order;
mod resume;

pub(crate) use account::{
    AccountState, check_directory, open_existing, open_or_create, open_required,
};
pub(crate) use ari::renewal_window;
pub(crate) use cas::{Ca, Cas, urgency};
pub(crate) use chain::{IssuedChain, pem_blocks, verify_chain};
pub(crate) use directory::caa_identities;
pub(crate) use issued::IssuedBy;
pub(crate) use limit::RateLimit;
pub(crate) use order::{
    Challenge, DeadOrder, PendingOrder, Reopened, check_profile, complete, create, reopen,
    replaces_for, status_of,
};
pub(crate) use resume::{Resumed, resume};

/// How to poll the CA while it validates and while it issues.
///
/// The first look comes after 150 ms: Pebble and Let's Encrypt usually finish a DNS-01
/// validation in well under a second, and instant-acme's default of 250 ms ×2 spends most
/// of a finalize waiting. ×1.6 backoff still reaches 10 s between polls within a minute,
/// and a `Retry-After` from the CA always takes precedence (instant-acme honours it).
pub(crate) const POLL: RetryPolicy = RetryPolicy::new()
    .initial_delay(POLL_INITIAL_DELAY)
    .backoff(1.6)
    .timeout(POLL_TIMEOUT);
/// First poll delay (see [`POLL`]).
const POLL_INITIAL_DELAY: Duration = Duration::from_millis(150);
/// Give up polling after this long; the order stays pending for the next finalize.
const POLL_TIMEOUT: Duration = Duration::from_secs(120);

/// Total tries of a request the CA answers with `badNonce` (each already tried 3 times).
///
/// Generous because a try of a poll or a walk is several requests: at Pebble's 50 %
/// rejection one request fails its three tries 1 time in 8, so a poll of three refreshes
/// fails a try about 1 time in 3, and 5 tries lost a certificate about once in 200 runs
/// (seen in CI). 20 tries make that about 1 in 10⁸; a real CA rarely rejects a nonce twice.
const BAD_NONCE_ATTEMPTS: u32 = 20;

/// The RFC 8555 problem type for a rejected nonce.
const BAD_NONCE: &str = "urn:ietf:params:acme:error:badNonce";
/// The RFC 8555 problem type of a CA's own failure.
const SERVER_INTERNAL: &str = "urn:ietf:params:acme:error:serverInternal";

/// An error that may mean only "the CA refused the nonce": what [`retry_bad_nonce!`] retries.
pub(crate) trait BadNonce {
    /// Whether the CA refused the request only because of its nonce.
    fn is_bad_nonce(&self) -> bool;
}

impl BadNonce for instant_acme::Error {
    fn is_bad_nonce(&self) -> bool {
        matches!(self, Self::Api(problem) if problem_type(problem) == Some(BAD_NONCE))
    }
}

/// A problem document's type.
pub(crate) fn problem_type(problem: &Problem) -> Option<&str> {
    problem.r#type.as_deref()
}

/// A failure talking to the CA or handling what it sent, for one certificate or the account.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AcmeError {
    /// A request to the CA failed: it was unreachable or answered with a problem.
    #[error("CA {directory}: cannot {action}: {}", describe(.source))]
    Ca {
        directory: String,
        action: &'static str,
        #[source]
        source: instant_acme::Error,
    },
    /// The CA's rate limit refused an order (or an earlier run's refusal still holds).
    #[error("{0}")]
    RateLimited(Box<RateLimit>),
    /// The CA refused a validation; the order is invalid for good.
    #[error("validation failed: {problem}")]
    Invalid { problem: String },
    /// The CA did not finish in time; the order stays pending for the next run.
    #[error(
        "the CA did not {what} within {}s; the order stays pending: run finalize again later",
        POLL_TIMEOUT.as_secs()
    )]
    Timeout { what: &'static str },
    /// The CA's answer does not fit the order (an unexpected identifier, no dns-01).
    #[error("the CA's answer for {identifier} is unusable: {problem}")]
    Unexpected { identifier: String, problem: String },
    /// `acme.profile` names a profile the CA's directory does not offer.
    #[error(
        "the CA does not offer profile `{profile}` (it offers: {offered}): set `acme.profile` to one of them or remove it"
    )]
    UnknownProfile { profile: String, offered: String },
    /// The stored account does not read back.
    #[error(
        "{}: {problem}; move the file away to register a new account",
        crate::shown::path(path)
    )]
    BadAccount { path: PathBuf, problem: String },
    /// The issued chain does not match the key or the names asked for.
    #[error("the CA's certificate is unusable: {problem}; the old files are left in place")]
    Mismatch { problem: String },
    /// The CA registers accounts only with external account binding, and none is configured.
    #[error(
        "CA {directory} requires external account binding: set `acme.eab.kid` and `acme.eab.hmac_key` to the values the CA gave you"
    )]
    EabRequired { directory: String },
    /// The CA no longer knows the host's account (`accountDoesNotExist`): deactivated, or the
    /// CA's database was reset. Whatever was pending went with it.
    #[error(
        "CA {directory} no longer knows this host's account (deactivated, or the CA's database \
         was reset), so its pending order is gone too: run request, which registers a new \
         account and orders again"
    )]
    AccountGone { directory: String },
    /// There is no account for this CA in the state directory.
    #[error(
        "no ACME account for {directory} in {}: run request first",
        crate::shown::path(state_dir)
    )]
    NoAccount {
        directory: String,
        state_dir: PathBuf,
    },
    /// The key or CSR could not be made or read.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A state file could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AcmeError {
    /// Whether the saved order is dead and must be replaced by a new one on the next request.
    pub(crate) fn order_is_dead(&self) -> bool {
        matches!(
            self,
            Self::Invalid { .. } | Self::Mismatch { .. } | Self::AccountGone { .. }
        )
    }

    /// Whether the CA cannot issue now, so that another CA may be asked (docs/renewal.md):
    /// it is unreachable or its TLS fails, it does not answer in time, it answers 5xx or
    /// `serverInternal` (after instant-acme's and fleetcert's retries), or its rate limit
    /// refused this order. A refused validation, a config the CA refuses or anything else
    /// the host or its records cause is not: another CA would refuse the same.
    pub(crate) fn cannot_issue(&self) -> bool {
        match self {
            Self::RateLimited(_) | Self::Timeout { .. } => true,
            Self::Ca { source, .. } => unavailable(source),
            _ => false,
        }
    }

    /// Whether the operator must fix the config or the files before anything can work
    /// (exit 2), rather than the CA or the system failing the run (exit 4).
    pub(crate) fn is_usage(&self) -> bool {
        match self {
            Self::EabRequired { .. } | Self::UnknownProfile { .. } => true,
            Self::Store(err) => err.is_refusal(),
            _ => false,
        }
    }

    /// Whether the CA did not answer as an ACME server at all (no connection, no TLS, not
    /// a directory), as opposed to answering with a problem: the `acme.directory` it was
    /// asked at is then the first thing to check.
    pub(crate) fn is_unreachable(&self) -> bool {
        matches!(self, Self::Ca { source, .. } if !matches!(source, instant_acme::Error::Api(_)))
    }

    /// A failed request to the CA; one that failed because the CA no longer knows the
    /// account says so, and what to do.
    pub(crate) fn ca(directory: &str, action: &'static str, source: instant_acme::Error) -> Self {
        if let instant_acme::Error::Api(problem) = &source
            && problem_type(problem) == Some(account::ACCOUNT_GONE)
        {
            return Self::AccountGone {
                directory: directory.to_owned(),
            };
        }
        Self::Ca {
            directory: directory.to_owned(),
            action,
            source,
        }
    }
}

/// Whether a failed request means the CA is not there to issue (see
/// [`AcmeError::cannot_issue`]).
fn unavailable(err: &instant_acme::Error) -> bool {
    match err {
        instant_acme::Error::Api(problem) => {
            problem.status.is_some_and(|status| status >= 500)
                || matches!(
                    problem_type(problem),
                    Some(SERVER_INTERNAL | limit::RATE_LIMITED)
                )
        }
        // No connection, TLS refused, no answer in time (src/acme/http.rs), or an answer
        // that is not ACME at all (a proxy's error page in front of the CA).
        instant_acme::Error::Http(_)
        | instant_acme::Error::Hyper(_)
        | instant_acme::Error::Other(_)
        | instant_acme::Error::Timeout(_)
        | instant_acme::Error::Json(_) => true,
        _ => false,
    }
}

/// One line for an instant-acme error: the problem document when the CA sent one, else the
/// error with its causes (hyper's own message alone says only "client error (Connect)").
fn describe(err: &instant_acme::Error) -> String {
    if let instant_acme::Error::Api(problem) = err {
        return problem_line(problem);
    }
    let mut line = err.to_string();
    let mut cause = std::error::Error::source(err);
    while let Some(next) = cause {
        let text = next.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = next.source();
    }
    one_line(&line)
}

/// A problem document in one line: type, detail, then each subproblem; escaped and bounded,
/// since every word of it came from the CA.
pub(crate) fn problem_line(problem: &Problem) -> String {
    let mut line = problem
        .r#type
        .clone()
        .unwrap_or_else(|| "problem without a type".to_owned());
    if let Some(detail) = &problem.detail {
        line.push_str(": ");
        line.push_str(detail);
    }
    for sub in &problem.subproblems {
        line.push_str("; ");
        if let Some(identifier) = &sub.identifier {
            line.push_str(&identifier.authorized(false).to_string());
            line.push_str(": ");
        }
        line.push_str(sub.r#type.as_deref().unwrap_or("problem"));
        if let Some(detail) = &sub.detail {
            line.push_str(": ");
            line.push_str(detail);
        }
    }
    one_line(&line)
}

/// The most characters of a CA's message shown in one line.
const MAX_PROBLEM: usize = crate::shown::MAX_EXCERPT;

/// Collapses line breaks and escapes the rest, so that a message stays one bounded line in a
/// report and a log.
fn one_line(text: &str) -> String {
    bare(
        &text.split_whitespace().collect::<Vec<_>>().join(" "),
        MAX_PROBLEM,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_is_one_line_with_type_detail_and_subproblems() {
        let problem: Problem = serde_json::from_str(
            r#"{"type": "urn:ietf:params:acme:error:unauthorized",
                "detail": "Incorrect TXT record\n found",
                "status": 403,
                "subproblems": [{"type": "urn:ietf:params:acme:error:dns",
                                 "detail": "NXDOMAIN",
                                 "identifier": {"type": "dns", "value": "a.example.org"}}]}"#,
        )
        .expect("parse");
        let line = problem_line(&problem);
        assert_eq!(
            line,
            "urn:ietf:params:acme:error:unauthorized: Incorrect TXT record found; \
             a.example.org: urn:ietf:params:acme:error:dns: NXDOMAIN"
        );
    }

    #[test]
    fn bad_nonce_is_recognised_by_type() {
        let problem: Problem =
            serde_json::from_str(r#"{"type": "urn:ietf:params:acme:error:badNonce"}"#)
                .expect("parse");
        assert!(instant_acme::Error::Api(problem).is_bad_nonce());
        assert!(!instant_acme::Error::Str("x").is_bad_nonce());
    }
}
