//! [`UpdateClient`]: one TCP connection to the primary, every message signed with one key;
//! it reads the zone (a signed AXFR, or signed TXT questions where the transfer is refused),
//! sends UPDATE messages and asks the serial. An answer counts only when its signature
//! verifies, except that a refusal is believed without one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use futures_util::StreamExt as _;
use hickory_net::runtime::{RuntimeProvider, TokioRuntimeProvider};
use hickory_net::tcp::TcpClientStream;
use hickory_net::{BufDnsStreamHandle, DnsStreamHandle as _};
use hickory_proto::op::{Message, Query, ResponseCode, SerialMessage, update_message};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::rdata::tsig::TsigError;
use hickory_proto::rr::{RData, RecordType, TSigVerifier, TSigner};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::change::{SetChange, update_message};
use super::error::{KeyLabel, Operation, UpdateError, policy_fix};
use crate::dns::DnsName;
use crate::dns::tsig::TsigKey;
use crate::shown::bare;
use crate::timestamp::unix_now;

/// How long one answer may take, as a whole: BIND applies an UPDATE of a thousand records in
/// milliseconds, and sends a zone of 10,000 records in well under a second. Messages that
/// are not the answer do not extend it: a server that streams them is cut off at this bound.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a whole zone transfer may take, from the question to the closing SOA.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(60);
/// TXT questions in flight at once when the zone is read by questions.
const QUERY_WINDOW: usize = 16;
/// How much of a library's message goes into a line.
const MAX_REASON: usize = crate::shown::MAX_EXCERPT;

type Tcp = <TokioRuntimeProvider as RuntimeProvider>::Tcp;

/// A TCP connection to the primary whose messages are signed with one key.
pub(crate) struct UpdateClient {
    server: SocketAddr,
    zone: DnsName,
    key: KeyLabel,
    signer: TSigner,
    stream: TcpClientStream<Tcp>,
    handle: BufDnsStreamHandle,
    next_id: u16,
    /// Ids of the messages sent and not answered yet.
    in_flight: HashSet<u16>,
    /// Answers to messages in flight, read while waiting for another one (pipelined
    /// questions): one each, so at most as many as are in flight.
    early: HashMap<u16, Vec<u8>>,
}

impl UpdateClient {
    /// Connects to `server` for `zone`.
    pub(crate) async fn connect(
        server: SocketAddr,
        zone: &DnsName,
        key: &TsigKey,
        secret_file: String,
    ) -> Result<Self, UpdateError> {
        let provider = TokioRuntimeProvider::default();
        let (connecting, handle) =
            TcpClientStream::new(server, None, Some(EXCHANGE_TIMEOUT), provider);
        let stream = connecting.await.map_err(|err| UpdateError::Connect {
            server,
            key: key.name.clone(),
            reason: bare(&err.to_string(), MAX_REASON),
        })?;
        // Message ids need not be unpredictable here (TCP, and every answer is signed), only
        // distinct on this connection.
        let next_id = u16::try_from(unix_now() % 65_536).unwrap_or(1) ^ 0x5a5a;
        Ok(Self {
            server,
            zone: zone.clone(),
            key: KeyLabel {
                name: key.name.clone(),
                algorithm: key.algorithm.name(),
                secret_file,
            },
            signer: key.signer(),
            stream,
            handle,
            next_id,
            in_flight: HashSet::new(),
            early: HashMap::new(),
        })
    }

    /// Signs and sends `message`; its id and the verifier of its answers.
    fn send(&mut self, mut message: Message) -> Result<(u16, TSigVerifier), UpdateError> {
        self.next_id = self.next_id.wrapping_add(1);
        let id = self.next_id;
        message.metadata.id = id;
        let malformed = |reason: String| UpdateError::Malformed {
            server: self.server,
            reason,
        };
        let verifier = message
            .finalize(&self.signer, unix_now())
            .map_err(|err| malformed(format!("cannot sign a message: {err}")))?
            .ok_or_else(|| malformed("hickory gave no verifier for a signed message".into()))?;
        let bytes = message
            .to_vec()
            .map_err(|err| malformed(format!("cannot encode a message: {err}")))?;
        // hickory drops the records that do not fit in 64 KiB and sends the rest: a message
        // must go out whole or not at all.
        if written_counts(&bytes) != Some((message.answers.len(), message.authorities.len())) {
            return Err(malformed(
                "an UPDATE message did not fit in 64 KiB (a bug in fleetcert's packing)".into(),
            ));
        }
        self.handle
            .send(SerialMessage::new(bytes, self.server))
            .map_err(|err| UpdateError::Connect {
                server: self.server,
                key: self.key.name.clone(),
                reason: bare(&err.to_string(), MAX_REASON),
            })?;
        self.in_flight.insert(id);
        Ok((id, verifier))
    }

    /// The next answer with `id`, its signature checked (see the module doc), within
    /// [`EXCHANGE_TIMEOUT`] as a whole.
    async fn receive(
        &mut self,
        id: u16,
        verifier: &mut TSigVerifier,
        operation: Operation,
    ) -> Result<Message, UpdateError> {
        self.receive_by(id, verifier, operation, Instant::now() + EXCHANGE_TIMEOUT)
            .await
    }

    /// The next answer with `id` before `deadline`. A message with another id is kept only
    /// when it answers another message in flight and is the first to do so; anything else is
    /// dropped unread (and counted), so a server streaming other messages holds neither the
    /// run past the deadline nor its memory.
    async fn receive_by(
        &mut self,
        id: u16,
        verifier: &mut TSigVerifier,
        operation: Operation,
        deadline: Instant,
    ) -> Result<Message, UpdateError> {
        let bytes = match self.early.remove(&id) {
            Some(early) => early,
            None => {
                let mut dropped: u64 = 0;
                loop {
                    let bytes = self.read(operation, deadline, dropped).await?;
                    match message_id(&bytes) {
                        Some(got) if got == id => break bytes,
                        Some(got) if self.in_flight.contains(&got) => match self.early.entry(got) {
                            std::collections::hash_map::Entry::Occupied(_) => dropped += 1,
                            std::collections::hash_map::Entry::Vacant(slot) => {
                                slot.insert(bytes);
                            }
                        },
                        _ => dropped += 1,
                    }
                }
            }
        };
        self.in_flight.remove(&id);
        let message = Message::from_vec(&bytes).map_err(|err| UpdateError::Malformed {
            server: self.server,
            reason: format!(
                "an answer that is not DNS: {}",
                bare(&err.to_string(), MAX_REASON)
            ),
        })?;
        self.check_signature(&message, &bytes, verifier, operation)?;
        Ok(message)
    }

    /// Reads one message's bytes from the connection, before `deadline`; `dropped` counts the
    /// messages already dropped in this wait, for the line.
    async fn read(
        &mut self,
        operation: Operation,
        deadline: Instant,
        dropped: u64,
    ) -> Result<Vec<u8>, UpdateError> {
        let seconds = match operation {
            Operation::Transfer => TRANSFER_TIMEOUT,
            Operation::Query | Operation::Update => EXCHANGE_TIMEOUT,
        }
        .as_secs();
        let timeout = |reason: &str| UpdateError::Timeout {
            server: self.server,
            key: self.key.name.clone(),
            operation,
            seconds,
            reason: if dropped == 0 {
                reason.to_owned()
            } else {
                format!(
                    "{reason}, and {dropped} messages came that answer nothing fleetcert asked \
                     (dropped unread)"
                )
            },
        };
        let next = tokio::time::timeout_at(deadline, self.stream.next()).await;
        match next {
            Err(_) => Err(timeout("no answer came back")),
            Ok(None) => Err(timeout("the server closed the connection")),
            Ok(Some(Err(err))) => Err(timeout(&bare(&err.to_string(), MAX_REASON))),
            Ok(Some(Ok(serial))) => Ok(serial.into_parts().0),
        }
    }

    fn check_signature(
        &self,
        message: &Message,
        bytes: &[u8],
        verifier: &mut TSigVerifier,
        operation: Operation,
    ) -> Result<(), UpdateError> {
        let server = self.server;
        if let Some(tsig) = message.signature()
            && let Some(error) = &tsig.data.error
        {
            return Err(match error {
                TsigError::BadKey => UpdateError::BadKey {
                    server,
                    key: Box::new(self.key.clone()),
                },
                TsigError::BadTime => UpdateError::BadTime {
                    server,
                    key: self.key.name.clone(),
                    ours: rfc3339(unix_now()),
                    theirs: server_time(&tsig.data.other)
                        .map_or_else(|| "nothing".to_owned(), rfc3339),
                },
                // BADSIG, and anything a server invents.
                _ => UpdateError::BadSig {
                    server,
                    key: Box::new(self.key.clone()),
                },
            });
        }
        let code = message.metadata.response_code;
        if message.signature().is_none() {
            // An unsigned refusal is reported as what it says; an unsigned success never
            // counts.
            if code != ResponseCode::NoError {
                return Err(self.code_error(code, operation, &[]));
            }
            return Err(UpdateError::Unverified {
                server,
                key: self.key.name.clone(),
                operation,
                reason: "no TSIG record".to_owned(),
            });
        }
        verifier
            .verify(bytes)
            .map(|_| ())
            .map_err(|err| UpdateError::Unverified {
                server,
                key: self.key.name.clone(),
                operation,
                reason: bare(&err.to_string(), MAX_REASON),
            })
    }

    /// The error for an answer with `code`; `names` are those of a refused UPDATE.
    fn code_error(
        &self,
        code: ResponseCode,
        operation: Operation,
        names: &[&DnsName],
    ) -> UpdateError {
        let server = self.server;
        let key = self.key.name.clone();
        match code {
            ResponseCode::Refused => UpdateError::Refused {
                server,
                key: Box::new(self.key.clone()),
                operation,
                fix: match operation {
                    Operation::Update => policy_fix(&key, &self.zone, names),
                    Operation::Transfer => format!(
                        "allow the transfer to the key (BIND: `allow-transfer {{ key \"{key}\"; \
                         }};`; Knot: `action: transfer` in its acl; PowerDNS: `pdnsutil \
                         set-meta {} TSIG-ALLOW-AXFR {key}`)",
                        self.zone
                    ),
                    Operation::Query => format!(
                        "allow questions from this host or the key (BIND: `allow-query {{ key \
                         \"{key}\"; }};`)"
                    ),
                },
            },
            ResponseCode::NotAuth => UpdateError::NotAuth {
                server,
                zone: self.zone.clone(),
                key: Box::new(self.key.clone()),
            },
            ResponseCode::NotZone => UpdateError::NotZone {
                server,
                zone: self.zone.clone(),
                key,
            },
            ResponseCode::NXRRSet
            | ResponseCode::YXRRSet
            | ResponseCode::NXDomain
            | ResponseCode::YXDomain
                if operation == Operation::Update =>
            {
                UpdateError::Changed { server, code }
            }
            _ => UpdateError::Failed {
                server,
                key,
                operation,
                code,
            },
        }
    }

    /// Every TXT set of the zone, by a signed AXFR; `Ok(None)` when the transfer is refused
    /// (the caller then asks for the sets it needs one by one).
    pub(crate) async fn transfer_txt(
        &mut self,
    ) -> Result<Option<(u32, BTreeMap<DnsName, Vec<TXT>>)>, UpdateError> {
        let question = update_message::zone_transfer(self.zone.to_hickory(), None);
        let (id, mut verifier) = self.send(question)?;
        let deadline = Instant::now() + TRANSFER_TIMEOUT;
        let mut sets: BTreeMap<DnsName, Vec<TXT>> = BTreeMap::new();
        let mut serial = None;
        let mut soas = 0;
        while soas < 2 {
            // A transfer's later messages carry the same id: keep it in flight until the end.
            self.in_flight.insert(id);
            let message = match self
                .receive_by(id, &mut verifier, Operation::Transfer, deadline)
                .await
            {
                Err(UpdateError::Refused { .. } | UpdateError::NotAuth { .. })
                    if serial.is_none() =>
                {
                    return Ok(None);
                }
                other => other?,
            };
            let code = message.metadata.response_code;
            if code != ResponseCode::NoError {
                if code == ResponseCode::Refused || code == ResponseCode::NotAuth {
                    return Ok(None);
                }
                return Err(self.code_error(code, Operation::Transfer, &[]));
            }
            if message.answers.is_empty() {
                return Err(UpdateError::Malformed {
                    server: self.server,
                    reason: "the zone transfer ended without its closing SOA".to_owned(),
                });
            }
            for record in message.answers {
                match record.data {
                    RData::SOA(soa) => {
                        soas += 1;
                        serial.get_or_insert(soa.serial);
                    }
                    RData::TXT(txt) => {
                        // A name fleetcert would not accept is not one of its names.
                        if let Some(name) = DnsName::from_hickory(&record.name) {
                            sets.entry(name).or_default().push(txt);
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(serial.map(|serial| (serial, sets)))
    }

    /// The TXT sets at `names` by signed questions, a few in flight at once; a name with no
    /// TXT set maps to an empty list.
    pub(crate) async fn query_txt(
        &mut self,
        names: &[&DnsName],
    ) -> Result<BTreeMap<DnsName, Vec<TXT>>, UpdateError> {
        let mut sets = BTreeMap::new();
        let mut pending = std::collections::VecDeque::new();
        let mut queue = names.iter();
        loop {
            while pending.len() < QUERY_WINDOW
                && let Some(name) = queue.next()
            {
                let (id, verifier) = self.send(question((*name).clone(), RecordType::TXT))?;
                pending.push_back(((*name).clone(), id, verifier));
            }
            let Some((name, id, mut verifier)) = pending.pop_front() else {
                break;
            };
            let answer = self.receive(id, &mut verifier, Operation::Query).await?;
            let code = answer.metadata.response_code;
            if code != ResponseCode::NoError && code != ResponseCode::NXDomain {
                return Err(self.code_error(code, Operation::Query, &[]));
            }
            let txts = answer
                .answers
                .into_iter()
                .filter_map(|record| match record.data {
                    RData::TXT(txt)
                        if DnsName::from_hickory(&record.name).as_ref() == Some(&name) =>
                    {
                        Some(txt)
                    }
                    _ => None,
                })
                .collect();
            sets.insert(name, txts);
        }
        Ok(sets)
    }

    /// The zone's serial as the primary serves it now.
    pub(crate) async fn serial(&mut self) -> Result<u32, UpdateError> {
        let (id, mut verifier) = self.send(question(self.zone.clone(), RecordType::SOA))?;
        let answer = self.receive(id, &mut verifier, Operation::Query).await?;
        let code = answer.metadata.response_code;
        if code != ResponseCode::NoError {
            return Err(self.code_error(code, Operation::Query, &[]));
        }
        answer
            .answers
            .iter()
            .find_map(|record| match &record.data {
                RData::SOA(soa) => Some(soa.serial),
                _ => None,
            })
            .ok_or_else(|| UpdateError::NotAuth {
                server: self.server,
                zone: self.zone.clone(),
                key: Box::new(self.key.clone()),
            })
    }

    /// Sends one UPDATE with `pieces` and waits for its answer.
    pub(crate) async fn update(
        &mut self,
        ttl: u32,
        pieces: &[SetChange],
    ) -> Result<(), UpdateError> {
        let message = update_message(&self.zone, ttl, pieces);
        let (id, mut verifier) = self.send(message)?;
        let answer = self.receive(id, &mut verifier, Operation::Update).await?;
        let code = answer.metadata.response_code;
        if code == ResponseCode::NoError {
            return Ok(());
        }
        let names: Vec<&DnsName> = pieces.iter().map(|piece| &piece.name).collect();
        Err(self.code_error(code, Operation::Update, &names))
    }
}

/// The id in an encoded message's header, read without parsing the rest.
fn message_id(bytes: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes([*bytes.first()?, *bytes.get(1)?]))
}

/// The answer and authority counts in an encoded message's header.
pub(super) fn written_counts(bytes: &[u8]) -> Option<(usize, usize)> {
    let count = |at: usize| {
        Some(usize::from(u16::from_be_bytes([
            *bytes.get(at)?,
            *bytes.get(at + 1)?,
        ])))
    };
    Some((count(6)?, count(8)?))
}

/// A question without recursion, as an authoritative server wants it.
fn question(name: DnsName, rtype: RecordType) -> Message {
    let mut message = Message::query();
    message.metadata.recursion_desired = false;
    message.add_query(Query::query(name.to_hickory(), rtype));
    message
}

/// The server's clock from a BADTIME answer's other data (48-bit seconds, RFC 8945 5.2.3).
fn server_time(other: &[u8]) -> Option<u64> {
    let bytes: [u8; 6] = other.try_into().ok()?;
    Some(
        bytes
            .iter()
            .fold(0, |time, &byte| time << 8 | u64::from(byte)),
    )
}

fn rfc3339(seconds: u64) -> String {
    i64::try_from(seconds)
        .ok()
        .and_then(|seconds| OffsetDateTime::from_unix_timestamp(seconds).ok())
        .and_then(|time| time.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("{seconds} s after 1970"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_time_reads_48_bits() {
        assert_eq!(
            server_time(&[0, 0, 0x65, 0x4f, 0x00, 0x01]),
            Some(0x654f_0001)
        );
        assert_eq!(server_time(&[1, 2]), None);
    }
}
