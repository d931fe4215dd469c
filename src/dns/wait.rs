//! The propagation wait of `publish`: every authoritative server must serve the new serial.
//!
//! "Serve the new serial" means that serial or a later one (RFC 1982): a signer (BIND's inline
//! signing, or its signing of a dynamic zone) may count the served serial up past the one
//! published when it re-signs, and the servers then never serve the published one itself.
//!
//! Each server is asked directly, without recursion, and only an answer with the AA bit and
//! NOERROR counts — a resolver given by mistake never looks "caught up". All servers are polled
//! in parallel with backoff and no sleep before the first question. A server serving the new
//! serial serves the zone file that carries it, so the records are checked once, on one server
//! (normally the primary); the cost grows with the number of servers plus the number of
//! records, never with their product. The check starts as soon as that server serves the
//! serial, while the others are still transferring the zone.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::future::{FutureExt as _, LocalBoxFuture, join_all};
use futures_util::stream::{FuturesUnordered, StreamExt as _};
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::tcp::TcpClientStream;
use hickory_net::xfer::DnsHandle as _;
use hickory_proto::op::{Query, ResponseCode};
use hickory_proto::rr::RecordType;

use super::DnsName;
use super::client::{Answer, Bits, QUERY_TIMEOUT, Recursion, ask_once, request};
use crate::serial::has_reached;
use crate::shown::{bare, shown};

/// Pause after the first unsuccessful poll of a server.
const FIRST_POLL_DELAY: Duration = Duration::from_millis(25);
/// Each further pause is this many halves of the previous one (x1.5).
const POLL_BACKOFF_HALVES: u32 = 3;
/// Longest pause between two polls of one server: a secondary that catches up is noticed
/// within half a second, at the price of two SOA questions a second while waiting.
const MAX_POLL_DELAY: Duration = Duration::from_millis(500);
/// How long one poll waits for its answer. An authoritative server answers an SOA question in
/// milliseconds; one that has not answered in a second lost the question or is down, and asking
/// again notices a server that comes back during the wait (a question that waited out the whole
/// timeout would not).
const POLL_QUESTION_LIMIT: Duration = Duration::from_secs(1);
/// TXT questions in flight at once on the one TCP connection of the record check.
const RECORD_CHECK_CONCURRENCY: usize = 64;

/// What one server said about the zone's SOA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Served {
    /// Nothing usable came back (timeout, refused connection).
    NoAnswer(String),
    /// An answer, but not an authoritative NOERROR one with an SOA.
    NotAuthoritative {
        code: ResponseCode,
        authoritative: bool,
    },
    /// The serial the server serves.
    Serial(u32),
}

impl fmt::Display for Served {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoAnswer(reason) => write!(f, "no answer ({reason})"),
            Self::NotAuthoritative {
                code,
                authoritative,
            } => write!(
                f,
                "not authoritative ({code}, AA={}): is it a server of this zone?",
                u8::from(*authoritative)
            ),
            Self::Serial(serial) => write!(f, "serves serial {serial}"),
        }
    }
}

impl Served {
    /// The serial, when the server answered authoritatively.
    pub(crate) fn serial(&self) -> Option<u32> {
        match self {
            Self::Serial(serial) => Some(*serial),
            _ => None,
        }
    }
}

/// One server at the end of the wait.
#[derive(Debug, Clone)]
pub(crate) struct ServerWait {
    pub(crate) server: SocketAddr,
    /// What it said: its last answer, or why it gave none when it never answered.
    pub(crate) served: Served,
    /// How long after the start of the wait it served the serial; `None`: it never did.
    pub(crate) caught_up: Option<Duration>,
}

/// How the served TXT sets must compare with the published ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SetCheck {
    /// Exactly the published values: fleetcert wrote the whole zone (the file publisher).
    Exact,
    /// At least the published values: others may keep values at the same names (dynamic
    /// update changes only fleetcert's own).
    Contains,
}

/// A record that the checked server does not serve as published.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "{server} serves the new serial but answers {}. TXT with {found} instead of the {expected} published value(s)",
    name
)]
pub(crate) struct RecordMismatch {
    pub(crate) server: SocketAddr,
    pub(crate) name: DnsName,
    pub(crate) expected: usize,
    /// The values it returned, or why there were none.
    pub(crate) found: String,
}

/// Asks `server` once for the SOA of `zone`, giving up after `limit`.
async fn ask_serial(server: SocketAddr, zone: &DnsName, limit: Duration) -> Served {
    let limit = limit.min(QUERY_TIMEOUT);
    // One try: the poll loop asks again anyway, and a retry inside would hide the timing.
    let asked = tokio::time::timeout(
        limit,
        ask_once(server, zone, RecordType::SOA, Bits::plain(Recursion::Off)),
    );
    match asked.await {
        Err(_) => Served::NoAnswer(format!("nothing within {} ms", limit.as_millis())),
        Ok(Err(err)) => Served::NoAnswer(short_reason(&err.to_string())),
        Ok(Ok(answer)) => served_by(&answer),
    }
}

fn served_by(answer: &Answer) -> Served {
    match answer.soa_serial() {
        Some(serial)
            if answer.authoritative() && answer.response_code() == ResponseCode::NoError =>
        {
            Served::Serial(serial)
        }
        _ => Served::NotAuthoritative {
            code: answer.response_code(),
            authoritative: answer.authoritative(),
        },
    }
}

/// What every server serves now: one SOA question each, in parallel.
pub(crate) async fn current_serials(
    servers: &[SocketAddr],
    zone: &DnsName,
    limit: Duration,
) -> Vec<(SocketAddr, Served)> {
    join_all(
        servers
            .iter()
            .map(|&server| async move { (server, ask_serial(server, zone, limit).await) }),
    )
    .await
}

/// The end of the propagation wait.
#[derive(Debug)]
pub(crate) struct Propagation {
    /// Every server, in the order given.
    pub(crate) waits: Vec<ServerWait>,
    /// The server whose records were checked and what the check found; `None` when no server
    /// served the serial.
    pub(crate) checked: Option<(SocketAddr, Result<(), RecordMismatch>)>,
}

/// Polls every server until it serves `serial` or later (RFC 1982), or `timeout` ends, and
/// checks `expected` (name -> TXT values) on the first server in the given order that serves
/// it. That check starts as soon as the server serves the serial and every server before it
/// has finished, so with the primary first it runs while the secondaries transfer the zone.
pub(crate) async fn wait_and_check(
    servers: &[SocketAddr],
    zone: &DnsName,
    serial: u32,
    timeout: Duration,
    expected: &BTreeMap<&DnsName, BTreeSet<&str>>,
    sets: SetCheck,
) -> Propagation {
    enum Done {
        Waited(usize, ServerWait),
        Checked(SocketAddr, Result<(), RecordMismatch>),
    }
    let started = Instant::now();
    let mut pending: FuturesUnordered<LocalBoxFuture<'_, Done>> = servers
        .iter()
        .enumerate()
        .map(|(index, &server)| {
            poll_server(server, zone, serial, started, timeout)
                .map(move |wait| Done::Waited(index, wait))
                .boxed_local()
        })
        .collect();
    let mut waits: Vec<Option<ServerWait>> = vec![None; servers.len()];
    let mut check_started = false;
    let mut checked = None;
    while let Some(done) = pending.next().await {
        match done {
            Done::Waited(index, wait) => {
                // One server has answered for good, the others may still be polled.
                crash_point!("publish.waiting");
                waits[index] = Some(wait);
                if check_started {
                    continue;
                }
                // The first server that caught up, among those finished in an unbroken run
                // from the start of the list: an earlier server still polling may catch up yet.
                let first = waits
                    .iter()
                    .map_while(Option::as_ref)
                    .find(|wait| wait.caught_up.is_some());
                if let Some(server) = first.map(|wait| wait.server) {
                    check_started = true;
                    pending.push(
                        check_records(server, expected, sets)
                            .map(move |result| Done::Checked(server, result))
                            .boxed_local(),
                    );
                }
            }
            Done::Checked(server, result) => checked = Some((server, result)),
        }
    }
    Propagation {
        // Every poll ends (at `timeout` at the latest), so every slot is filled.
        waits: waits.into_iter().flatten().collect(),
        checked,
    }
}

async fn poll_server(
    server: SocketAddr,
    zone: &DnsName,
    serial: u32,
    started: Instant,
    timeout: Duration,
) -> ServerWait {
    let mut delay = FIRST_POLL_DELAY;
    let mut first = true;
    // The last answer it gave: the final question, cut short by the deadline, may get none
    // from a server that answered every earlier one, and "no answer" would then mislead.
    let mut answered: Option<Served> = None;
    loop {
        // The first question gets its full limit even when the timeout is (nearly) used up:
        // every server is asked properly at least once, so the report says what it serves.
        let limit = if std::mem::take(&mut first) {
            POLL_QUESTION_LIMIT
        } else {
            POLL_QUESTION_LIMIT.min(timeout.saturating_sub(started.elapsed()))
        };
        let served = ask_serial(server, zone, limit.max(Duration::from_millis(1))).await;
        if served
            .serial()
            .is_some_and(|found| has_reached(found, serial))
        {
            let caught_up = started.elapsed();
            tracing::info!(%server, serial, seconds = caught_up.as_secs_f64(), "server serves the new serial");
            return ServerWait {
                server,
                served,
                caught_up: Some(caught_up),
            };
        }
        tracing::debug!(%server, serial, %served, "not caught up yet");
        if !matches!(served, Served::NoAnswer(_)) {
            answered = Some(served.clone());
        }
        let remaining = timeout.saturating_sub(started.elapsed());
        if remaining.is_zero() {
            return ServerWait {
                server,
                served: answered.unwrap_or(served),
                caught_up: None,
            };
        }
        tokio::time::sleep(delay.min(remaining)).await;
        delay = (delay * POLL_BACKOFF_HALVES / 2).min(MAX_POLL_DELAY);
    }
}

/// Checks that `server` answers every name in `expected` with exactly its TXT values, over one
/// TCP connection with questions pipelined. Stops at the first mismatch.
pub(crate) async fn check_records(
    server: SocketAddr,
    expected: &BTreeMap<&DnsName, BTreeSet<&str>>,
    sets: SetCheck,
) -> Result<(), RecordMismatch> {
    let mismatch = |name: &DnsName, want: usize, found: String| RecordMismatch {
        server,
        name: name.clone(),
        expected: want,
        found,
    };
    let Some((first, first_values)) = expected.iter().next() else {
        return Ok(());
    };
    let answers = ask_pipelined(
        server,
        expected.keys().copied(),
        RecordType::TXT,
        Bits::plain(Recursion::Off),
    )
    .await
    .map_err(|reason| mismatch(first, first_values.len(), reason.to_string()))?;
    for (name, found) in answers {
        let values = &expected[name];
        let answer = found
            .map_err(|reason| mismatch(name, values.len(), format!("no answer ({reason})")))?;
        if let Some(wrong) = not_authoritative(&answer) {
            return Err(mismatch(name, values.len(), wrong));
        }
        let served = answer.txt_values();
        let served_set: BTreeSet<&str> = served.iter().map(String::as_str).collect();
        let matches = match sets {
            SetCheck::Exact => served_set == *values,
            SetCheck::Contains => served_set.is_superset(values),
        };
        if !matches {
            let shown_values: Vec<String> = served.iter().take(8).map(|v| shown(v)).collect();
            let more = served.len().saturating_sub(8);
            let found = if more == 0 {
                format!("[{}]", shown_values.join(", "))
            } else {
                format!("[{}, and {more} more]", shown_values.join(", "))
            };
            return Err(mismatch(name, values.len(), found));
        }
    }
    Ok(())
}

/// `RCODE with AA=0` when `answer` is not an authoritative NOERROR one.
pub(crate) fn not_authoritative(answer: &Answer) -> Option<String> {
    (!answer.authoritative() || answer.response_code() != ResponseCode::NoError).then(|| {
        format!(
            "{} with AA={}",
            answer.response_code(),
            u8::from(answer.authoritative())
        )
    })
}

/// Why a pipelined question got no answer (each reason short and escaped).
#[derive(Debug, thiserror::Error)]
pub(crate) enum NoAnswer {
    /// No TCP connection to the server was made.
    #[error("no TCP connection ({0})")]
    Connection(String),
    /// The connection closed before this question's answer.
    #[error("no response")]
    NoResponse,
    /// The exchange failed for this question.
    #[error("{0}")]
    Failed(String),
}

/// Asks `server` `rtype` for each of `names` over one TCP connection, questions pipelined;
/// each name with its answer or why there was none. `Err` when no connection was made.
pub(crate) async fn ask_pipelined<'n>(
    server: SocketAddr,
    names: impl Iterator<Item = &'n DnsName>,
    rtype: RecordType,
    bits: Bits,
) -> Result<Vec<(&'n DnsName, Result<Answer, NoAnswer>)>, NoAnswer> {
    // The provider owns the task set that drives the connection: it must outlive the queries.
    let provider = TokioRuntimeProvider::default();
    let exchange = TcpClientStream::exchange(
        server,
        None,
        QUERY_TIMEOUT,
        Some(RECORD_CHECK_CONCURRENCY),
        provider.clone(),
    )
    .await
    .map_err(|err| NoAnswer::Connection(short_reason(&err.to_string())))?;
    let answers = futures_util::stream::iter(names)
        .map(|name| {
            let exchange = exchange.clone();
            async move {
                let question = Query::query(name.to_hickory(), rtype);
                let found = match exchange.send(request(question, bits)).next().await {
                    None => Err(NoAnswer::NoResponse),
                    Some(Err(err)) => Err(NoAnswer::Failed(short_reason(&err.to_string()))),
                    Some(Ok(response)) => Ok(Answer {
                        message: response.into_message(),
                    }),
                };
                (name, found)
            }
        })
        .buffer_unordered(RECORD_CHECK_CONCURRENCY)
        .collect()
        .await;
    Ok(answers)
}

/// An error of the resolver library, short and escaped enough for a one-line report.
fn short_reason(text: &str) -> String {
    /// Enough for "connection refused" and the like.
    const MAX_REASON: usize = crate::shown::MAX_EXCERPT;
    bare(text.trim(), MAX_REASON)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_by_half_up_to_the_cap() {
        let mut delay = FIRST_POLL_DELAY;
        let mut seen = vec![delay];
        for _ in 0..12 {
            delay = (delay * POLL_BACKOFF_HALVES / 2).min(MAX_POLL_DELAY);
            seen.push(delay);
        }
        assert_eq!(seen[1], Duration::from_micros(37_500));
        assert_eq!(*seen.last().expect("delays"), MAX_POLL_DELAY);
        assert!(seen.windows(2).all(|w| w[0] <= w[1]));
    }

    #[tokio::test]
    async fn a_closed_port_is_no_answer_within_the_limit() {
        // Bind and drop a UDP socket to find a port nobody listens on.
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("port");
        let zone = DnsName::parse("acme.test").expect("name");
        let started = Instant::now();
        let propagation = wait_and_check(
            &[port],
            &zone,
            5,
            Duration::from_millis(300),
            &BTreeMap::new(),
            SetCheck::Exact,
        )
        .await;
        let waits = propagation.waits;
        assert!(propagation.checked.is_none());
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(waits.len(), 1);
        assert!(waits[0].caught_up.is_none());
        assert!(
            matches!(waits[0].served, Served::NoAnswer(_)),
            "{:?}",
            waits[0].served
        );
    }
}
