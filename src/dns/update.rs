//! DNS UPDATE (RFC 2136) signed with TSIG (RFC 8945), over one TCP connection to the primary.
//!
//! [`UpdateClient`] reads the zone (a signed AXFR, or signed TXT questions where the transfer
//! is refused), sends UPDATE messages and asks the serial. Every message it sends is signed;
//! an answer counts only when its signature verifies, except that a refusal is believed
//! without one (it changes nothing, and a forged one only stops the run). TSIG errors
//! (BADKEY, BADSIG, BADTIME) and the UPDATE codes (REFUSED, NOTAUTH, NOTZONE) each become one
//! [`UpdateError`] that names the server, the key and the fix.
//!
//! [`SetChange`] is one TXT record set's change as one atomic step: its prerequisite is the
//! set as it was read (RFC 2136 section 2.4.2, or 2.4.3 for a set that did not exist), so a
//! change someone else made in between fails the message (NXRRSET) instead of being
//! overwritten. [`pack`] puts the steps into as few messages as fit in 64 KiB; a set too
//! large for one message is split into additions first and deletions after, so no value the
//! new set keeps is ever missing in between.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use futures_util::StreamExt as _;
use hickory_net::runtime::{RuntimeProvider, TokioRuntimeProvider};
use hickory_net::tcp::TcpClientStream;
use hickory_net::{BufDnsStreamHandle, DnsStreamHandle as _};
use hickory_proto::op::{Message, OpCode, Query, ResponseCode, SerialMessage, update_message};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::rdata::tsig::TsigError;
use hickory_proto::rr::{DNSClass, RData, Record, RecordType, TSigVerifier, TSigner};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::DnsName;
use super::tsig::{FUDGE_SECONDS, TsigKey};
use crate::shown::bare;
use crate::timestamp::unix_now;

/// How long one answer may take, as a whole: BIND applies an UPDATE of a thousand records in
/// milliseconds, and sends a zone of 10,000 records in well under a second. Messages that
/// are not the answer do not extend it: a server that streams them is cut off at this bound.
pub(crate) const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a whole zone transfer may take, from the question to the closing SOA.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(60);
/// Bytes of one UPDATE message's records: a DNS message over TCP holds 65,535 bytes, less the
/// header, the zone section (at most 259), the TSIG record (under 300) and room to spare.
const MESSAGE_BUDGET: usize = 64_000;
/// TXT questions in flight at once when the zone is read by questions.
const QUERY_WINDOW: usize = 16;
/// How many names a REFUSED line spells out as `grant ... name` lines before it suggests
/// `zonesub` instead.
const NAMED_GRANTS: usize = 4;
/// How much of a library's message goes into a line.
const MAX_REASON: usize = 160;

type Tcp = <TokioRuntimeProvider as RuntimeProvider>::Tcp;

/// The key as messages name it, without the secret.
#[derive(Debug, Clone)]
pub(crate) struct KeyLabel {
    pub(crate) name: DnsName,
    pub(crate) algorithm: &'static str,
    /// Where the secret came from (shown).
    pub(crate) secret_file: String,
}

/// What an exchange with the primary was for, in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    Transfer,
    Query,
    Update,
}

impl Operation {
    const fn what(self) -> &'static str {
        match self {
            Self::Transfer => "the zone transfer (AXFR)",
            Self::Query => "a question",
            Self::Update => "the UPDATE",
        }
    }
}

/// The primary did not do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum UpdateError {
    /// No TCP connection (exit 4).
    #[error(
        "cannot reach the primary {server} over TCP for key {key} ({reason}): is update.server \
         the primary's address and port, and does a firewall let TCP port 53 through?"
    )]
    Connect {
        server: SocketAddr,
        key: DnsName,
        reason: String,
    },
    /// No answer in time, or the connection closed (exit 4).
    #[error(
        "the primary {server} gave no answer to {} within {seconds} s (key {key}): {reason}; is \
         update.server the primary, and is it up (and is it a DNS server)?",
        operation.what()
    )]
    Timeout {
        server: SocketAddr,
        key: DnsName,
        operation: Operation,
        seconds: u64,
        reason: String,
    },
    /// REFUSED: the key's policy does not allow it (exit 2).
    #[error(
        "the primary {server} refused {} signed with key {} (REFUSED): {fix}",
        operation.what(), key.name
    )]
    Refused {
        server: SocketAddr,
        key: Box<KeyLabel>,
        operation: Operation,
        fix: String,
    },
    /// NOTAUTH without a TSIG error: not the zone's primary, or (PowerDNS) a key it does not
    /// know or whose secret differs: it answers both with a bare NOTAUTH (exit 2).
    #[error(
        "{server} answered NOTAUTH to key {} for zone {zone}: either it is not the zone's \
         primary (point update.server at it, and check `zone`), or it is PowerDNS and does not \
         know key {} with {} and the secret in {} (PowerDNS answers an unknown key or a wrong \
         secret so; give it the key: `pdnsutil import-tsig-key {} {} <the base64 in {}>`)",
        key.name, key.name, key.algorithm, key.secret_file, key.name, key.algorithm,
        key.secret_file
    )]
    NotAuth {
        server: SocketAddr,
        zone: DnsName,
        key: Box<KeyLabel>,
    },
    /// BADKEY: the server has no such key (exit 2).
    #[error(
        "{server} does not know key {} with {} (BADKEY): give the server `key \"{}\" {{ \
         algorithm {}; secret \"<the base64 in {}>\"; }};`, or fix update.key_name and \
         update.algorithm",
        key.name, key.algorithm, key.name, key.algorithm, key.secret_file
    )]
    BadKey {
        server: SocketAddr,
        key: Box<KeyLabel>,
    },
    /// BADSIG: the server has another secret for the key (exit 2).
    #[error(
        "{server} rejected the signature of key {} (BADSIG): the secret in {} is not the one \
         the server has for that key; copy the server's secret there (base64, mode 0600)",
        key.name, key.secret_file
    )]
    BadSig {
        server: SocketAddr,
        key: Box<KeyLabel>,
    },
    /// BADTIME: the clocks are too far apart (exit 2).
    #[error(
        "{server} rejected the time of key {key}'s signature (BADTIME): this host's clock says \
         {ours}, the server's says {theirs}, more than {FUDGE_SECONDS} s apart; set the clock \
         that is wrong right (NTP)"
    )]
    BadTime {
        server: SocketAddr,
        key: DnsName,
        ours: String,
        theirs: String,
    },
    /// NOTZONE: a name outside the zone (exit 2).
    #[error(
        "{server} answered NOTZONE to key {key}'s UPDATE: a name lies outside zone {zone} as \
         the server has it; check `zone` against the server's zone"
    )]
    NotZone {
        server: SocketAddr,
        zone: DnsName,
        key: DnsName,
    },
    /// A prerequisite failed: the zone changed since it was read (retried from a new read).
    #[error(
        "the zone changed on {server} between reading it and updating it ({code}): another \
         client is changing the same records"
    )]
    Changed {
        server: SocketAddr,
        code: ResponseCode,
    },
    /// Any other error code (exit 4).
    #[error("the primary {server} answered {code} to {} (key {key}): see its log", operation.what())]
    Failed {
        server: SocketAddr,
        key: DnsName,
        operation: Operation,
        code: ResponseCode,
    },
    /// A success that is not signed by the key: not believed (exit 4).
    #[error(
        "the answer of {server} to {} is not signed by key {key}, or its signature does not \
         verify ({reason}): none of it is believed; is something between here and the server \
         rewriting DNS?",
        operation.what()
    )]
    Unverified {
        server: SocketAddr,
        key: DnsName,
        operation: Operation,
        reason: String,
    },
    /// An answer that cannot be read, or a message that cannot be built (exit 4).
    #[error("{server}: {reason}")]
    Malformed { server: SocketAddr, reason: String },
}

impl UpdateError {
    /// Whether the operator must fix the config, the key or the server's policy (exit 2); the
    /// zone was not changed by the message that failed.
    pub(crate) fn is_usage(&self) -> bool {
        matches!(
            self,
            Self::Refused { .. }
                | Self::NotAuth { .. }
                | Self::BadKey { .. }
                | Self::BadSig { .. }
                | Self::BadTime { .. }
                | Self::NotZone { .. }
        )
    }
}

/// One TXT record set's change, applied atomically with the set as it was as prerequisite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SetChange {
    pub(crate) name: DnsName,
    /// The set before the change, exactly as the server holds it.
    pub(crate) before: Vec<TXT>,
    pub(crate) add: Vec<TXT>,
    /// Members of `before` to remove.
    pub(crate) delete: Vec<TXT>,
}

impl SetChange {
    /// The set after the change.
    pub(crate) fn after(&self) -> Vec<TXT> {
        let mut after: Vec<TXT> = self
            .before
            .iter()
            .filter(|txt| !self.delete.contains(txt))
            .cloned()
            .collect();
        for txt in &self.add {
            if !after.contains(txt) {
                after.push(txt.clone());
            }
        }
        after
    }

    /// The change that undoes this one.
    pub(crate) fn inverse(&self) -> Self {
        Self {
            name: self.name.clone(),
            before: self.after(),
            add: self.delete.clone(),
            delete: self.add.clone(),
        }
    }

    /// Bytes this change takes in a message, at most. Every record is counted with its owner
    /// name in full: hickory compresses only the first 120 names of a message, into pointers
    /// to 64 remembered suffixes within its first 16 KiB.
    fn size(&self) -> usize {
        let name = wire_len(&self.name);
        let prerequisite = if self.before.is_empty() {
            name + RECORD_FIXED
        } else {
            self.before.iter().map(|txt| name + txt_data_len(txt)).sum()
        };
        prerequisite
            + self
                .add
                .iter()
                .chain(&self.delete)
                .map(|txt| name + txt_data_len(txt))
                .sum::<usize>()
    }

    /// Pieces that each fit in a message of their own: the deletions first, then the
    /// additions, each piece's prerequisite the set the pieces before it leave. `None` when
    /// even the prerequisite of one change does not fit (a set of about a thousand values).
    ///
    /// Deleting first is safe: a value is deleted only when no host's document lists it any
    /// more, so no pending order needs it, and a value the new set keeps is never deleted.
    /// It also keeps every set within the server's limit on records per set (BIND's
    /// `max-records-per-type`), which the old and new values together could exceed.
    fn split(self) -> Option<Vec<Self>> {
        if self.size() <= MESSAGE_BUDGET {
            return Some(vec![self]);
        }
        let mut pieces = Vec::new();
        let mut set = self.before.clone();
        for (adding, values) in [(false, &self.delete), (true, &self.add)] {
            let mut rest = values.as_slice();
            while !rest.is_empty() {
                let mut piece = Self {
                    name: self.name.clone(),
                    before: set.clone(),
                    add: Vec::new(),
                    delete: Vec::new(),
                };
                let mut used = piece.size();
                let mut taken = 0;
                for txt in rest {
                    let cost = wire_len(&self.name) + txt_data_len(txt);
                    if used + cost > MESSAGE_BUDGET {
                        break;
                    }
                    used += cost;
                    taken += 1;
                }
                if taken == 0 {
                    return None;
                }
                let (chunk, later) = rest.split_at(taken);
                if adding {
                    piece.add = chunk.to_vec();
                } else {
                    piece.delete = chunk.to_vec();
                }
                set = piece.after();
                pieces.push(piece);
                rest = later;
            }
        }
        Some(pieces)
    }
}

/// Type, class, TTL and data length of a record.
const RECORD_FIXED: usize = 10;

/// The bytes of a name in wire format, uncompressed.
fn wire_len(name: &DnsName) -> usize {
    name.as_str().len() + 2
}

/// The bytes of one TXT record without its owner name.
fn txt_data_len(txt: &TXT) -> usize {
    RECORD_FIXED
        + txt
            .txt_data
            .iter()
            .map(|part| part.len() + 1)
            .sum::<usize>()
}

/// The changes in as few messages as fit, each name's pieces in order. `Err` names a set
/// too large to change atomically.
pub(crate) fn pack(changes: Vec<SetChange>) -> Result<Vec<Vec<SetChange>>, DnsName> {
    let mut messages: Vec<Vec<SetChange>> = Vec::new();
    let mut current: Vec<SetChange> = Vec::new();
    let mut used = 0;
    for change in changes {
        let name = change.name.clone();
        for piece in change.split().ok_or(name)? {
            let size = piece.size();
            if used + size > MESSAGE_BUDGET && !current.is_empty() {
                messages.push(std::mem::take(&mut current));
                used = 0;
            }
            used += size;
            current.push(piece);
        }
    }
    if !current.is_empty() {
        messages.push(current);
    }
    Ok(messages)
}

/// The UPDATE message for `pieces` of `zone`.
pub(crate) fn update_message(zone: &DnsName, ttl: u32, pieces: &[SetChange]) -> Message {
    let mut message = Message::query();
    message.metadata.op_code = OpCode::Update;
    message.metadata.recursion_desired = false;
    let mut section = Query::query(zone.to_hickory(), RecordType::SOA);
    section.set_query_class(DNSClass::IN);
    message.add_query(section);
    for piece in pieces {
        let name = piece.name.to_hickory();
        if piece.before.is_empty() {
            // RFC 2136 2.4.3: no TXT set may exist at the name.
            let mut none = Record::update0(name.clone(), 0, RecordType::TXT);
            none.dns_class = DNSClass::NONE;
            message.add_answer(none);
        } else {
            // 2.4.2: the set exists with exactly these members (TTL 0, ignored).
            for txt in &piece.before {
                message.add_answer(Record::from_rdata(name.clone(), 0, RData::TXT(txt.clone())));
            }
        }
        for txt in &piece.delete {
            // 2.5.4: delete this member.
            let mut delete = Record::from_rdata(name.clone(), 0, RData::TXT(txt.clone()));
            delete.dns_class = DNSClass::NONE;
            message.add_authority(delete);
        }
        for txt in &piece.add {
            // 2.5.1: add this member.
            message.add_authority(Record::from_rdata(
                name.clone(),
                ttl,
                RData::TXT(txt.clone()),
            ));
        }
    }
    message
}

/// The line that tells the operator which permission the key lacks: BIND's `update-policy`
/// grant, Knot's `acl`, PowerDNS's `TSIG-ALLOW-DNSUPDATE` (which answers REFUSED to a valid
/// key without it).
pub(crate) fn policy_fix(key: &DnsName, zone: &DnsName, names: &[&DnsName]) -> String {
    let powerdns = format!(
        "PowerDNS: `pdnsutil set-meta {zone} TSIG-ALLOW-DNSUPDATE {key}`, with this host in \
         `allow-dnsupdate-from`"
    );
    if names.is_empty() || names.len() > NAMED_GRANTS {
        return format!(
            "add `grant \"{key}\" zonesub TXT;` to the zone's update-policy (BIND), or an \
             acl with `key: {key}`, `action: update` and `update-type: [TXT]` to the zone \
             (Knot), or ({powerdns})"
        );
    }
    let grants: Vec<String> = names
        .iter()
        .map(|name| format!("grant \"{key}\" name {} TXT;", name.fqdn()))
        .collect();
    let owners: Vec<String> = names.iter().map(|name| name.fqdn()).collect();
    format!(
        "add `{}` to the zone's update-policy (BIND), or to the key's acl `update-owner: \
         name` with `update-owner-name: [{}]` (Knot), or ({powerdns}), or publish only the \
         names the key may change",
        grants.join(" "),
        owners.join(", ")
    )
}

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
fn written_counts(bytes: &[u8]) -> Option<(usize, usize)> {
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

    fn txt(value: &str) -> TXT {
        TXT::new(vec![value.to_owned()])
    }

    fn name(text: &str) -> DnsName {
        DnsName::parse(text).expect("name")
    }

    fn values(prefix: char, count: usize) -> Vec<TXT> {
        (0..count)
            .map(|i| txt(&format!("{prefix}{i:042}")))
            .collect()
    }

    #[test]
    fn a_change_and_its_inverse_meet() {
        let change = SetChange {
            name: name("a.acme.test"),
            before: vec![txt("keep"), txt("old")],
            add: vec![txt("new")],
            delete: vec![txt("old")],
        };
        assert_eq!(change.after(), vec![txt("keep"), txt("new")]);
        let back = change.inverse();
        assert_eq!(back.before, change.after());
        let mut restored = back.after();
        restored.sort_by_key(|t| t.txt_data.to_vec());
        assert_eq!(restored, vec![txt("keep"), txt("old")]);
    }

    #[test]
    fn many_names_pack_into_few_messages_that_fit_and_keep_their_prerequisites() {
        let zone = name("acme.test");
        let changes: Vec<SetChange> = (0..3000)
            .map(|i| SetChange {
                name: name(&format!("h{i}.bench.test.acme.test")),
                before: if i % 2 == 0 {
                    Vec::new()
                } else {
                    vec![txt("x")]
                },
                add: values('a', 1),
                delete: Vec::new(),
            })
            .collect();
        let messages = pack(changes.clone()).expect("packs");
        assert!(messages.len() <= 8, "{} messages", messages.len());
        assert_eq!(messages.concat(), changes, "order and content kept");
        let key = TsigKey::new(name("k"), crate::dns::TsigAlgo::HmacSha512, vec![1; 64]);
        for pieces in &messages {
            let mut message = update_message(&zone, 60, pieces);
            message.finalize(&key.signer(), 1).expect("sign");
            let bytes = message.to_vec().expect("encode");
            assert!(bytes.len() <= 65_535, "{} bytes", bytes.len());
            assert_eq!(
                written_counts(&bytes),
                Some((message.answers.len(), message.authorities.len()))
            );
            let nones = message
                .answers
                .iter()
                .filter(|r| r.dns_class == DNSClass::NONE)
                .count();
            assert_eq!(nones, pieces.iter().filter(|p| p.before.is_empty()).count());
        }
    }

    #[test]
    fn a_set_too_large_for_one_message_deletes_before_it_adds_and_never_grows() {
        let before = values('o', 900);
        let change = SetChange {
            name: name("acme.test"),
            before: before.clone(),
            add: values('n', 800),
            delete: before[100..].to_vec(),
        };
        let messages = pack(vec![change.clone()]).expect("packs");
        let pieces = messages.concat();
        assert!(pieces.len() > 2, "{} pieces", pieces.len());
        let first_add = pieces.iter().position(|p| !p.add.is_empty()).expect("adds");
        assert!(pieces[..first_add].iter().all(|p| p.add.is_empty()));
        assert!(pieces[first_add..].iter().all(|p| p.delete.is_empty()));
        // Each piece starts from where the previous one left the set, and no value the new
        // set keeps is ever missing.
        let kept: Vec<TXT> = change.after();
        let mut set = before;
        let largest = change.before.len().max(kept.len());
        for piece in &pieces {
            assert_eq!(piece.before, set);
            set = piece.after();
            assert!(piece.size() <= MESSAGE_BUDGET);
            assert!(before_kept(&kept, &set), "a kept value went missing");
            assert!(set.len() <= largest, "{} values at once", set.len());
        }
        let mut end = set;
        let mut want = kept;
        end.sort_by_key(|t| t.txt_data.to_vec());
        want.sort_by_key(|t| t.txt_data.to_vec());
        assert_eq!(end, want);
    }

    /// Every value of `kept` that was in the zone from the start is in `set`.
    fn before_kept(kept: &[TXT], set: &[TXT]) -> bool {
        kept.iter()
            .filter(|t| t.txt_data[0].starts_with(b"o"))
            .all(|t| set.contains(t))
    }

    #[test]
    fn refused_names_become_grant_lines_and_many_become_zonesub() {
        let key = name("host01");
        let zone = name("acme.example.net");
        let record = name("host01.example.org.acme.example.net");
        assert_eq!(
            policy_fix(&key, &zone, &[&record]),
            "add `grant \"host01\" name host01.example.org.acme.example.net. TXT;` to the \
             zone's update-policy (BIND), or to the key's acl `update-owner: name` with \
             `update-owner-name: [host01.example.org.acme.example.net.]` (Knot), or \
             (PowerDNS: `pdnsutil set-meta acme.example.net TSIG-ALLOW-DNSUPDATE host01`, \
             with this host in `allow-dnsupdate-from`), or publish only the names the key may \
             change"
        );
        let many: Vec<DnsName> = (0..9).map(|i| name(&format!("h{i}.acme.test"))).collect();
        let refs: Vec<&DnsName> = many.iter().collect();
        let fix = policy_fix(&key, &zone, &refs);
        assert!(fix.contains("grant \"host01\" zonesub TXT;"), "{fix}");
        assert!(
            fix.contains("acl with `key: host01`, `action: update`"),
            "{fix}"
        );
        assert!(fix.contains("TSIG-ALLOW-DNSUPDATE host01"), "{fix}");
    }

    #[test]
    fn server_time_reads_48_bits() {
        assert_eq!(
            server_time(&[0, 0, 0x65, 0x4f, 0x00, 0x01]),
            Some(0x654f_0001)
        );
        assert_eq!(server_time(&[1, 2]), None);
    }
}
