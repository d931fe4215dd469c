//! What the CA said that instant-acme does not hand back: the `Retry-After` of a refusal and
//! the `expires` of orders and authorizations, read from the HTTP responses themselves.
//!
//! instant-acme turns a problem document into `Problem`, which has no `Retry-After`, and an
//! authorization into `AuthorizationState`, which has no `expires`. Both matter here: a rate
//! limit says in that header when to try again (RFC 8555 section 6.6), and an order re-opened
//! after its pending authorizations expired must not hand out their records (Pebble, for one,
//! still shows such an authorization as `pending`, with `expires` in the past).
//!
//! [`watch`] runs one piece of ACME work and returns, with its result, what each response
//! said. The HTTP client ([`super::http`]) records into the innermost watch of the future
//! that made the request (a tokio task-local, set only while that future is polled), so
//! the certificates that `request` handles side by side never see each other's answers.
//! Outside a watch nothing is buffered or parsed.

use std::cell::RefCell;
use std::future::Future;
use std::time::SystemTime;

use instant_acme::BytesResponse;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

tokio::task_local! {
    static WATCH: RefCell<Seen>;
}

/// The answers of one [`watch`], in the order they came.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    answers: Vec<Answer>,
}

/// One response of the CA, as far as fleetcert reads it beyond instant-acme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    /// The URL asked.
    pub(crate) url: String,
    pub(crate) status: u16,
    /// `Retry-After`, as a moment (delay-seconds are counted from when it arrived).
    pub(crate) retry_after: Option<OffsetDateTime>,
    /// The `expires` of the JSON object in the body (an order or an authorization).
    pub(crate) expires: Option<OffsetDateTime>,
}

impl Seen {
    /// The last answer for `url`.
    pub(crate) fn answer(&self, url: &str) -> Option<&Answer> {
        self.answers.iter().rev().find(|answer| answer.url == url)
    }

    /// The `Retry-After` of the last refusal (a 4xx or 5xx answer) that carried one.
    pub(crate) fn refusal_retry_after(&self) -> Option<OffsetDateTime> {
        self.answers
            .iter()
            .rev()
            .filter(|answer| answer.status >= 400)
            .find_map(|answer| answer.retry_after)
    }
}

/// Runs `work`, returning its output and what the CA's responses to it said.
pub(crate) async fn watch<F: Future>(work: F) -> (F::Output, Seen) {
    WATCH
        .scope(RefCell::new(Seen::default()), async move {
            let output = work.await;
            let seen = WATCH.with(RefCell::take);
            (output, seen)
        })
        .await
}

/// Whether the future being polled is inside a [`watch`].
pub(crate) fn watching() -> bool {
    WATCH.try_with(|_| ()).is_ok()
}

/// Records `response` to `url` in the current watch and hands it on unchanged (its body read
/// into memory, as instant-acme reads it anyway).
pub(crate) async fn record(
    url: String,
    response: BytesResponse,
) -> Result<BytesResponse, instant_acme::Error> {
    let BytesResponse { parts, mut body } = response;
    let bytes = body
        .into_bytes()
        .await
        .map_err(instant_acme::Error::Other)?;
    let answer = Answer {
        url,
        status: parts.status.as_u16(),
        retry_after: parts
            .headers
            .get(http::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| retry_after(value, SystemTime::now())),
        expires: expires(&bytes),
    };
    // Outside a watch (a caller that did not ask) the answer is simply not kept.
    let _ = WATCH.try_with(|seen| seen.borrow_mut().answers.push(answer));
    Ok(BytesResponse {
        parts,
        body: Box::new(bytes),
    })
}

/// A `Retry-After` value (RFC 9110 section 10.2.3: delay-seconds or an HTTP-date) as a moment.
fn retry_after(value: &str, now: SystemTime) -> Option<OffsetDateTime> {
    let value = value.trim();
    let at = match value.parse::<u64>() {
        Ok(seconds) => now.checked_add(std::time::Duration::from_secs(seconds))?,
        Err(_) => httpdate::parse_http_date(value).ok()?,
    };
    Some(OffsetDateTime::from(at))
}

/// The top-level `expires` of a JSON object, when the body is one and carries it.
fn expires(body: &[u8]) -> Option<OffsetDateTime> {
    #[derive(serde::Deserialize)]
    struct Expiring {
        expires: Option<String>,
    }
    if body.first() != Some(&b'{') {
        return None;
    }
    let expiring: Expiring = serde_json::from_slice(body).ok()?;
    OffsetDateTime::parse(&expiring.expires?, &Rfc3339).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
        assert_eq!(
            retry_after(" 3600 ", now),
            Some(OffsetDateTime::from(
                now + std::time::Duration::from_secs(3600)
            ))
        );
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(time::macros::datetime!(1994-11-06 08:49:37 UTC))
        );
        assert_eq!(retry_after("soon", now), None);
        assert_eq!(retry_after("99999999999999999999", now), None);
    }

    #[test]
    fn expires_is_read_from_a_json_object_only() {
        assert_eq!(
            expires(br#"{"status": "pending", "expires": "2026-01-01T01:00:00Z"}"#),
            Some(time::macros::datetime!(2026-01-01 01:00 UTC))
        );
        assert_eq!(expires(br#"{"status": "pending"}"#), None);
        assert_eq!(expires(b"-----BEGIN CERTIFICATE-----"), None);
        assert_eq!(expires(br#"{"expires": "next week"}"#), None);
    }

    #[tokio::test]
    async fn each_watch_sees_only_its_own_answers() {
        let answer = |url: &str| Answer {
            url: url.to_owned(),
            status: 429,
            retry_after: None,
            expires: None,
        };
        let push = |url: &'static str| async move {
            tokio::task::yield_now().await;
            WATCH.with(|seen| seen.borrow_mut().answers.push(answer(url)));
            tokio::task::yield_now().await;
        };
        let (((), a), ((), b)) = futures_util::future::join(
            watch(async {
                push("a1").await;
                push("a2").await;
            }),
            watch(push("b1")),
        )
        .await;
        assert_eq!(a.answers, vec![answer("a1"), answer("a2")]);
        assert_eq!(b.answers, vec![answer("b1")]);
        assert!(!watching());
    }
}
