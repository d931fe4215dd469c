//! One DNS question to one server, over UDP with a TCP retry when the answer is truncated.
//!
//! Callers choose recursion explicitly: the delegation pre-check asks a resolver, the
//! propagation wait asks authoritative servers with recursion off and checks the AA bit.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt;
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::tcp::TcpClientStream;
use hickory_net::udp::UdpClientStream;
use hickory_net::xfer::DnsHandle;
use hickory_proto::op::{DnsRequest, DnsRequestOptions, Message, Query, ResponseCode};
use hickory_proto::rr::{RData, RecordType};

use super::DnsName;

/// How long to wait for one answer before giving up on that server for this attempt.
pub(crate) const QUERY_TIMEOUT: Duration = Duration::from_secs(3);

/// Whether the server should recurse for us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recursion {
    /// Ask a resolver: it follows CNAMEs across zones, as the CA's resolver does.
    Desired,
    /// Ask an authoritative server about its own data only.
    Off,
}

/// The DNSSEC bits of a question (RFC 4035 section 3.2, RFC 6840 section 5.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bits {
    pub(crate) recursion: Recursion,
    /// DO: send the signatures along.
    dnssec_ok: bool,
    /// CD: a validating resolver answers without validating (what a bogus name says then).
    checking_disabled: bool,
}

impl Bits {
    /// A plain question: no DNSSEC bits.
    pub(crate) fn plain(recursion: Recursion) -> Self {
        Self {
            recursion,
            dnssec_ok: false,
            checking_disabled: false,
        }
    }

    /// DO and AD set, as a validating stub asks: the AD bit of the answer says "validated".
    pub(crate) fn signed(recursion: Recursion) -> Self {
        Self {
            recursion,
            dnssec_ok: true,
            checking_disabled: false,
        }
    }

    /// [`signed`](Self::signed) with CD: the data even when it does not validate.
    pub(crate) fn unchecked(recursion: Recursion) -> Self {
        Self {
            checking_disabled: true,
            ..Self::signed(recursion)
        }
    }
}

/// How many times a question is asked before a server counts as not answering: UDP loses
/// an answer now and then, and one lost answer must not fail a certificate.
const QUERY_ATTEMPTS: u32 = 3;

/// A question that got no usable answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DnsError {
    /// No answer (timeout, connection refused, malformed reply).
    #[error("{server} did not answer {name} {rtype}: {reason}")]
    NoAnswer {
        server: SocketAddr,
        name: DnsName,
        rtype: RecordType,
        reason: String,
    },
}

/// The parts of an answer callers look at.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub(crate) message: Message,
}

impl Answer {
    pub(crate) fn response_code(&self) -> ResponseCode {
        self.message.metadata.response_code
    }

    /// The AA bit: an authoritative server for the zone answered, not a resolver.
    pub(crate) fn authoritative(&self) -> bool {
        self.message.metadata.authoritative
    }

    /// The answer section's record data, in order.
    pub(crate) fn answers(&self) -> impl Iterator<Item = &RData> {
        self.message.answers.iter().map(|record| &record.data)
    }

    /// TXT strings in the answer section (each record's strings joined), any owner name.
    /// Lossy UTF-8: a hostile answer is shown escaped by whoever prints it.
    pub(crate) fn txt_values(&self) -> Vec<String> {
        self.answers()
            .filter_map(|data| match data {
                RData::TXT(txt) => Some(
                    txt.txt_data
                        .iter()
                        .map(|part| String::from_utf8_lossy(part).into_owned())
                        .collect::<String>(),
                ),
                _ => None,
            })
            .collect()
    }

    /// The SOA serial in the answer section, if any.
    pub(crate) fn soa_serial(&self) -> Option<u32> {
        self.answers().find_map(|data| match data {
            RData::SOA(soa) => Some(soa.serial),
            _ => None,
        })
    }
}

/// Asks `server` one question; retries over TCP when the UDP answer is truncated (large TXT
/// sets are), because the client does not do it by itself.
pub(crate) async fn query(
    server: SocketAddr,
    name: &DnsName,
    rtype: RecordType,
    recursion: Recursion,
) -> Result<Answer, DnsError> {
    ask(server, name, rtype, Bits::plain(recursion)).await
}

/// [`query`] with the DNSSEC bits of `bits`.
pub(crate) async fn ask(
    server: SocketAddr,
    name: &DnsName,
    rtype: RecordType,
    bits: Bits,
) -> Result<Answer, DnsError> {
    let mut attempt = 1;
    loop {
        match ask_once(server, name, rtype, bits).await {
            Err(err) if attempt < QUERY_ATTEMPTS => {
                tracing::debug!(%server, %name, %rtype, attempt, error = %err, "asking again");
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// The request for `question` with `bits`: AD is set whenever DO is, so that a validating
/// resolver says in its answer whether it validated (RFC 6840 section 5.7).
pub(crate) fn request(question: Query, bits: Bits) -> DnsRequest {
    let mut options = DnsRequestOptions::default();
    options.recursion_desired = bits.recursion == Recursion::Desired;
    options.edns_set_dnssec_ok = bits.dnssec_ok;
    let mut request = DnsRequest::from_query(question, options);
    request.metadata.authentic_data = bits.dnssec_ok;
    request.metadata.checking_disabled = bits.checking_disabled;
    request
}

/// One try of [`ask`]: no retry (a caller that polls asks again anyway).
pub(crate) async fn ask_once(
    server: SocketAddr,
    name: &DnsName,
    rtype: RecordType,
    bits: Bits,
) -> Result<Answer, DnsError> {
    let no_answer = |reason: String| DnsError::NoAnswer {
        server,
        name: name.clone(),
        rtype,
        reason: crate::shown::bare(&reason, crate::shown::MAX_EXCERPT),
    };
    let question = Query::query(name.to_hickory(), rtype);

    let udp = UdpClientStream::builder(server, TokioRuntimeProvider::default())
        .with_timeout(Some(QUERY_TIMEOUT))
        .exchange();
    let first = udp
        .send(request(question.clone(), bits))
        .next()
        .await
        .ok_or_else(|| no_answer("no response".to_owned()))?
        .map_err(|err| no_answer(err.to_string()))?
        .into_message();
    if !first.metadata.truncation {
        return Ok(Answer { message: first });
    }
    let tcp = TcpClientStream::exchange(
        server,
        None,
        QUERY_TIMEOUT,
        None,
        TokioRuntimeProvider::default(),
    )
    .await
    .map_err(|err| no_answer(format!("TCP after a truncated UDP answer: {err}")))?;
    let message = tcp
        .send(request(question, bits))
        .next()
        .await
        .ok_or_else(|| no_answer("no response over TCP".to_owned()))?
        .map_err(|err| no_answer(err.to_string()))?
        .into_message();
    Ok(Answer { message })
}
