//! `--tokens` input: read every source (bounded), accept the three shapes, check every record.
//!
//! A source holds one token document, a JSON array of them, or an object of host -> document
//! (Ansible's `hostvars`). Nothing in a document is trusted: a record must lie in the signing
//! zone, sit exactly where the configured mapping puts its identifier, carry a 43-character
//! base64url value, and be allowed for its host.
//!
//! Which host a document speaks for is what the transport vouches for, never what the
//! document says about itself: the key of a `hostvars` object (the inventory's name for the
//! host, which the host does not choose), or the host an operator mapped a file to with
//! `--tokens HOST=FILE`. A document whose `host` disagrees with that is refused, and with an
//! allow-list a document that comes with no vouched identity is refused too. Only the checked
//! name and value of a record go on from here.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{NotTxtValue, Policy, TokenDocument, TxtRecord, TxtValue, record_name};
use crate::dns::{DnsName, NameError};
use crate::shown::{parser_message, path as shown_path, shown};
use crate::store::{self, StoreError};

/// The most bytes one `--tokens` source may hold: a token document is one to a few KiB, so
/// this is room for well over 10,000 hosts in one file (docs/zone-config.md, "Limits").
const MAX_TOKENS_BYTES: u64 = 64 << 20;

/// How much of a parser's message goes into a line (it quotes field names from the input).
const MAX_PARSER_MESSAGE: usize = crate::shown::MAX_EXCERPT;

/// One `--tokens` argument: `FILE`, `-` (stdin), or `HOST=FILE` (the file speaks for HOST).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TokenSource {
    pub(crate) path: PathBuf,
    /// The host this source speaks for, as the operator mapped it.
    pub(crate) host: Option<DnsName>,
}

impl TokenSource {
    /// Reads a `--tokens` argument. `HOST=FILE` when the part before the first `=` is a host
    /// name; anything else is a path (write `./a=b` for a file whose name has a `=`).
    pub(crate) fn parse(argument: &Path) -> Self {
        if let Some((host, file)) = argument.to_str().and_then(|text| text.split_once('='))
            && let Ok(host) = DnsName::parse(host)
            && !file.is_empty()
        {
            return Self {
                path: PathBuf::from(file),
                host: Some(host),
            };
        }
        Self {
            path: argument.to_owned(),
            host: None,
        }
    }

    fn is_stdin(&self) -> bool {
        self.path.as_os_str() == "-"
    }
}

/// One host's validated records from this publish. Empty `records` removes the host's records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Submission {
    /// The host, as the transport vouched for it (or as it said, without an allow-list).
    pub(crate) host: DnsName,
    pub(crate) records: BTreeSet<TxtRecord>,
}

/// The token input cannot be used; nothing was changed (exit 2).
#[derive(Debug, thiserror::Error)]
pub(crate) enum TokenError {
    /// A source cannot be read.
    #[error("cannot read tokens {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: StoreError,
    },
    /// `-` was given more than once: standard input can be read only once.
    #[error("--tokens - was given more than once: standard input can be read only once")]
    StdinTwice,
    /// A source is not JSON of a shape `publish` reads.
    #[error("tokens {origin}: {problem}")]
    Syntax { origin: Origin, problem: String },
    /// A token document as a whole was refused.
    #[error("tokens {origin}: host {host}: {problem}")]
    Document {
        origin: Origin,
        host: String,
        problem: String,
    },
    /// One record of a token document was refused.
    #[error(transparent)]
    Record(Box<RefusedRecord>),
}

/// One record of a token document that was refused, and where it came from.
#[derive(Debug, thiserror::Error)]
#[error("tokens {origin}: host {host}, record #{index} {name}: {problem}")]
pub(crate) struct RefusedRecord {
    origin: Origin,
    host: DnsName,
    index: usize,
    name: String,
    problem: RecordProblem,
}

/// Why one record was refused.
#[derive(Debug, thiserror::Error)]
enum RecordProblem {
    /// The identifier is not a DNS name.
    #[error("identifier {identifier} {rule}")]
    Identifier { identifier: String, rule: NameError },
    /// The record name is not a DNS name.
    #[error("the name {0}")]
    Name(NameError),
    /// The record name lies outside the signing zone.
    #[error("lies outside the signing zone {zone}: records go to {expected}")]
    OutsideZone { zone: DnsName, expected: String },
    /// The record name is in the zone, but not where its identifier's record goes.
    #[error("is not where identifier {identifier}'s record goes ({expected}, {mode} records)")]
    WrongName {
        identifier: DnsName,
        expected: String,
        mode: super::ChallengeRecords,
    },
    /// The value is not a DNS-01 digest.
    #[error("value {value} {problem}")]
    Value { value: String, problem: NotTxtValue },
    /// The host is not in the allow-list at all.
    #[error("host is not listed in `allow` of the zone config: add it with its identifiers")]
    HostNotAllowed,
    /// The identifier is not in the host's allow-list.
    #[error("identifier {identifier} is not in `allow.{host}` of the zone config: add it there")]
    NotAllowed { identifier: DnsName, host: DnsName },
}

/// Where a document came from, for error lines: the source and, for several, which one.
#[derive(Debug, Clone)]
pub(crate) struct Origin {
    file: String,
    entry: Option<String>,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.entry {
            Some(entry) => write!(f, "{} {entry}", self.file),
            None => f.write_str(&self.file),
        }
    }
}

/// One document and the host its transport vouches for.
struct Entry {
    origin: Origin,
    vouched: Option<DnsName>,
    value: Value,
}

impl Entry {
    /// The host a refusal of this entry names: the vouched one, else the one the document
    /// says (shown), else `(unknown)`.
    fn named(&self) -> String {
        match &self.vouched {
            Some(host) => host.to_string(),
            None => claimed(&self.value),
        }
    }
}

/// The host a document says it is from, shown, for lines about a document that may be
/// malformed otherwise.
fn claimed(value: &Value) -> String {
    value
        .get("host")
        .and_then(Value::as_str)
        .map_or_else(|| "(unknown)".to_owned(), shown)
}

/// What the `--tokens` sources gave: the documents that passed, one per host, and the hosts
/// whose document was refused.
#[derive(Debug)]
pub(crate) struct Tokens {
    pub(crate) submissions: Vec<Submission>,
    pub(crate) refused: Vec<Refusal>,
}

/// A host whose document was refused: nothing of it is published in this run, and its
/// records stay as the ledger has them.
#[derive(Debug)]
pub(crate) struct Refusal {
    /// The host: as the transport vouched for it, else as the document said (shown).
    pub(crate) host: String,
    pub(crate) error: TokenError,
}

/// Reads and validates every source. One submission per host; the same host twice is refused
/// unless both documents are identical (the same file given twice). A document that fails
/// refuses its host alone (the others are published); only input that no host can be named
/// for is an error for the whole run: standard input given twice, an unmapped source that
/// cannot be read or is not JSON of a shape `publish` reads.
pub(crate) fn read_tokens(sources: &[TokenSource], policy: &Policy) -> Result<Tokens, TokenError> {
    let mut seen_stdin = false;
    let mut collated = Collated::default();
    for source in sources {
        if source.is_stdin() && std::mem::replace(&mut seen_stdin, true) {
            return Err(TokenError::StdinTwice);
        }
        let read = read_source(source)
            .and_then(|(file, bytes)| entries(&bytes, &file, source.host.as_ref()));
        match (read, &source.host) {
            (Ok(entries), _) => collated.add(entries, policy),
            // A mapped source speaks for its host whatever it holds: refuse that host.
            (Err(error), Some(host)) => collated.refuse(host.to_string(), error),
            (Err(error), None) => return Err(error),
        }
    }
    Ok(collated.finish())
}

/// Validates one source's bytes as [`read_tokens`] does a file's, `file` naming it in errors
/// and `host` the host an operator mapped it to (the fuzz targets' way in); the first refusal
/// is the error.
#[cfg(fuzzing)]
pub(crate) fn validate_bytes(
    bytes: &[u8],
    file: &str,
    host: Option<&DnsName>,
    policy: &Policy,
) -> Result<Vec<Submission>, TokenError> {
    let mut collated = Collated::default();
    collated.add(entries(bytes, file, host)?, policy);
    let tokens = collated.finish();
    match tokens.refused.into_iter().next() {
        Some(refusal) => Err(refusal.error),
        None => Ok(tokens.submissions),
    }
}

/// The submissions read so far, one per host, with where each came from, and the refusals.
#[derive(Default)]
struct Collated {
    by_host: BTreeMap<DnsName, (Submission, Origin)>,
    refused: Vec<Refusal>,
}

impl Collated {
    /// Validates `entries` and adds them; the same host again must bring the same records.
    fn add(&mut self, entries: Vec<Result<Entry, Refusal>>, policy: &Policy) {
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(refusal) => {
                    self.refused.push(refusal);
                    continue;
                }
            };
            let origin = entry.origin.clone();
            let named = entry.named();
            let submission = match validate(entry, policy) {
                Ok(submission) => submission,
                Err(error) => {
                    self.refuse(named, error);
                    continue;
                }
            };
            match self.by_host.get(&submission.host) {
                Some((earlier, _)) if *earlier == submission => {}
                Some((_, earlier)) => {
                    let problem = format!(
                        "appears twice with different records (also in {earlier}): give each \
                         host's document once"
                    );
                    self.refuse(
                        submission.host.to_string(),
                        TokenError::Document {
                            origin,
                            host: submission.host.to_string(),
                            problem,
                        },
                    );
                }
                None => {
                    self.by_host
                        .insert(submission.host.clone(), (submission, origin));
                }
            }
        }
    }

    fn refuse(&mut self, host: String, error: TokenError) {
        self.refused.push(Refusal { host, error });
    }

    /// The submissions of every host none of whose documents was refused.
    fn finish(self) -> Tokens {
        let refused_hosts: BTreeSet<&str> = self.refused.iter().map(|r| r.host.as_str()).collect();
        let submissions = self
            .by_host
            .into_values()
            .map(|(submission, _)| submission)
            .filter(|submission| !refused_hosts.contains(submission.host.as_str()))
            .collect();
        Tokens {
            submissions,
            refused: self.refused,
        }
    }
}

/// Validates a host's own document made in this process (`renew`): the same checks as a
/// document from elsewhere, with the host config's name as the identity it speaks for.
pub(crate) fn own_submission(
    document: &TokenDocument,
    host: &DnsName,
    policy: &Policy,
) -> Result<Submission, TokenError> {
    let origin = Origin {
        file: "this run's request".to_owned(),
        entry: None,
    };
    let value = serde_json::to_value(document).map_err(|err| TokenError::Document {
        origin: origin.clone(),
        host: host.to_string(),
        problem: format!("cannot be read back: {err}"),
    })?;
    let entry = Entry {
        origin,
        vouched: Some(host.clone()),
        value,
    };
    validate(entry, policy)
}

/// Reads one source (bounded); its name for error lines and its bytes.
fn read_source(source: &TokenSource) -> Result<(String, Vec<u8>), TokenError> {
    let file = if source.is_stdin() {
        "stdin".to_owned()
    } else {
        shown_path(&source.path)
    };
    let bytes = if source.is_stdin() {
        store::read_stdin(MAX_TOKENS_BYTES)
    } else {
        store::read_bounded(&source.path, MAX_TOKENS_BYTES)
    }
    .map_err(|source| TokenError::Read {
        path: file.clone(),
        source,
    })?;
    Ok((file, bytes))
}

/// Splits one source's bytes into its documents, by shape. A source mapped to `host` must be
/// exactly one document, which `host` vouches for; only an unmapped source may hold several.
fn entries(
    bytes: &[u8],
    file: &str,
    host: Option<&DnsName>,
) -> Result<Vec<Result<Entry, Refusal>>, TokenError> {
    let origin = |entry: Option<String>| Origin {
        file: file.to_owned(),
        entry,
    };
    let syntax = |problem: String| TokenError::Syntax {
        origin: origin(None),
        problem,
    };
    let value: Value = serde_json::from_slice(bytes).map_err(|err| {
        syntax(format!(
            "is not JSON ({}): give the token document that `fleetcert request` printed on its standard output",
            parser_message(&err.to_string(), MAX_PARSER_MESSAGE)
        ))
    })?;
    let entry = |origin, vouched, value| Entry {
        origin,
        vouched,
        value,
    };
    // `HOST=FILE`: the operator vouches that the file is HOST's own document, and only that.
    // A file a host wrote could otherwise name other hosts by the keys of an object (or the
    // entries of an array) and speak for them under the mapping's cover.
    if let Some(host) = host {
        return match value {
            Value::Object(map) if map.contains_key("version") => Ok(vec![Ok(entry(
                origin(None),
                Some(host.clone()),
                Value::Object(map),
            ))]),
            other => Err(TokenError::Document {
                origin: origin(None),
                host: host.to_string(),
                problem: format!(
                    "came as --tokens {host}=... but holds {}, not one token document: a mapped file holds exactly its host's own `request` output; \
                     give an object of host -> document only as an unmapped --tokens FILE",
                    shape(&other)
                ),
            }),
        };
    }
    Ok(match value {
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(index, item)| Ok(entry(origin(Some(format!("[{index}]"))), None, item)))
            .collect(),
        // A document has `version`; an object without one maps hosts to documents.
        Value::Object(map) if map.contains_key("version") => {
            vec![Ok(entry(origin(None), None, Value::Object(map)))]
        }
        Value::Object(map) => map
            .into_iter()
            .map(|(key, item)| {
                let at = origin(Some(format!("[{}]", shown(&key))));
                match DnsName::parse(&key) {
                    Ok(host) => Ok(entry(at, Some(host), item)),
                    Err(rule) => Err(Refusal {
                        host: shown(&key),
                        error: TokenError::Document {
                            origin: at,
                            host: shown(&key),
                            problem: format!("the key, the host's inventory name, {rule}"),
                        },
                    }),
                }
            })
            .collect(),
        _ => {
            return Err(syntax(
                "holds neither a token document, an array of them, nor an object of host -> \
                 document"
                    .to_owned(),
            ));
        }
    })
}

/// What a JSON value is, for a line refusing it.
fn shape(value: &Value) -> &'static str {
    match value {
        Value::Array(_) => "an array of documents",
        Value::Object(_) => "an object of host -> document",
        _ => "no document",
    }
}

/// Checks one document and everything in it.
fn validate(entry: Entry, policy: &Policy) -> Result<Submission, TokenError> {
    let Entry {
        origin,
        vouched,
        value,
    } = entry;
    // Name the host in errors even when the document is malformed otherwise.
    let claimed = claimed(&value);
    let refuse = |problem: String| TokenError::Document {
        origin: origin.clone(),
        host: vouched
            .as_ref()
            .map_or_else(|| claimed.clone(), DnsName::to_string),
        problem,
    };
    let document: TokenDocument = serde_json::from_value(value).map_err(|err| {
        refuse(format!(
            "is not a token document: {}",
            parser_message(&err.to_string(), MAX_PARSER_MESSAGE)
        ))
    })?;
    if document.version != super::VERSION {
        return Err(refuse(format!(
            "has version {}, this fleetcert reads version {}: use the same fleetcert version on \
             hosts and here",
            document.version,
            super::VERSION
        )));
    }
    let said = DnsName::parse(&document.host)
        .map_err(|rule| refuse(format!("`host` {}: {rule}", shown(&document.host))))?;
    let host = match vouched.clone() {
        Some(vouched) if vouched != said => {
            return Err(refuse(format!(
                "the document says it is from {said}, but it came as {vouched}'s: a host may \
                 only speak for itself"
            )));
        }
        Some(vouched) => vouched,
        None if policy.allow.is_some() => {
            return Err(refuse(
                "comes with no identity the transport vouches for, and `allow` is set: give \
                 the documents keyed by inventory host name (Ansible's hostvars) or as \
                 --tokens HOST=FILE"
                    .to_owned(),
            ));
        }
        None => said,
    };
    let mut records = BTreeSet::new();
    for (index, record) in document.records.iter().enumerate() {
        let checked = check_record(&host, record, policy).map_err(|problem| {
            TokenError::Record(Box::new(RefusedRecord {
                origin: origin.clone(),
                host: host.clone(),
                index,
                name: shown(&record.name),
                problem,
            }))
        })?;
        records.insert(checked);
    }
    Ok(Submission { host, records })
}

/// Checks one record of `host`; returns it in canonical form.
fn check_record(
    host: &DnsName,
    record: &super::Record,
    policy: &Policy,
) -> Result<TxtRecord, RecordProblem> {
    let identifier = DnsName::parse_identifier(&record.identifier).map_err(|rule| {
        RecordProblem::Identifier {
            identifier: shown(&record.identifier),
            rule,
        }
    })?;
    let expected = record_name(&identifier, &policy.zone, policy.records).map_or_else(
        |rule| format!("nowhere (the identifier {rule})"),
        |n| n.fqdn(),
    );
    let name = DnsName::parse(&record.name).map_err(RecordProblem::Name)?;
    if !name.is_in(&policy.zone) {
        return Err(RecordProblem::OutsideZone {
            zone: policy.zone.clone(),
            expected,
        });
    }
    if name.fqdn() != expected {
        return Err(RecordProblem::WrongName {
            identifier,
            expected,
            mode: policy.records,
        });
    }
    let value =
        TxtValue::try_from(record.value.clone()).map_err(|problem| RecordProblem::Value {
            value: shown(&record.value),
            problem,
        })?;
    if let Some(allow) = &policy.allow {
        let allowed = allow.get(host).ok_or(RecordProblem::HostNotAllowed)?;
        if !allowed.contains(&identifier) {
            return Err(RecordProblem::NotAllowed {
                identifier,
                host: host.clone(),
            });
        }
    }
    Ok(TxtRecord { name, value })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::ChallengeRecords;
    use crate::token::tests::VALUE;

    fn policy(records: ChallengeRecords, allow: Option<&[(&str, &[&str])]>) -> Policy {
        let name = |text: &str| DnsName::parse_identifier(text).expect("name");
        Policy {
            zone: name("acme.test"),
            records,
            allow: allow.map(|list| {
                list.iter()
                    .map(|(host, ids)| (name(host), ids.iter().map(|id| name(id)).collect()))
                    .collect()
            }),
        }
    }

    fn doc(host: &str, name: &str, value: &str, identifier: &str) -> String {
        serde_json::json!({"version": 1, "host": host, "records": [
            {"name": name, "value": value, "cert": "main", "identifier": identifier}]})
        .to_string()
    }

    fn read(text: &str, policy: &Policy) -> Result<Vec<Submission>, TokenError> {
        read_as(text, None, policy)
    }

    fn read_as(
        text: &str,
        host: Option<&str>,
        policy: &Policy,
    ) -> Result<Vec<Submission>, TokenError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tokens.json");
        std::fs::write(&path, text).expect("write tokens");
        let source = TokenSource {
            path,
            host: host.map(|h| DnsName::parse(h).expect("host")),
        };
        let tokens = read_tokens(&[source], policy)?;
        match tokens.refused.into_iter().next() {
            Some(refusal) => Err(refusal.error),
            None => Ok(tokens.submissions),
        }
    }

    const WEB01: &str = "web01.example.org";
    const WEB01_RECORD: &str = "web01.example.org.acme.test.";

    #[test]
    fn accepts_one_document_an_array_and_hostvars() {
        let policy = policy(ChallengeRecords::PerName, None);
        let one = doc(WEB01, WEB01_RECORD, VALUE, WEB01);
        let two = doc(
            "web02.example.org",
            "Web02.Example.ORG.acme.test",
            VALUE,
            "*.web02.example.org",
        );
        for text in [
            format!("[{one}, {two}]"),
            format!("{{\"web01.example.org\": {one}, \"web02.example.org\": {two}}}"),
        ] {
            let got = read(&text, &policy).expect("accepted");
            assert_eq!(got.len(), 2);
            assert_eq!(got[1].host.as_str(), "web02.example.org");
            let record = got[1].records.first().expect("record");
            assert_eq!(record.name.fqdn(), "web02.example.org.acme.test.");
        }
        assert_eq!(read(&one, &policy).expect("accepted").len(), 1);
    }

    #[test]
    fn refuses_hostile_records_naming_host_and_record_in_one_line() {
        let policy = policy(ChallengeRecords::PerName, None);
        let cases = [
            doc(WEB01, "web01.example.org.evil.test.", VALUE, WEB01),
            doc(WEB01, "other.example.org.acme.test.", VALUE, WEB01),
            doc(WEB01, WEB01_RECORD, &format!("{}\"", &VALUE[..42]), WEB01),
            doc(WEB01, WEB01_RECORD, &format!("{}\n", &VALUE[..42]), WEB01),
            doc(WEB01, WEB01_RECORD, &format!("{VALUE}a"), WEB01),
            doc(WEB01, "$INCLUDE.acme.test.", VALUE, WEB01),
            doc(WEB01, "web01.example.org.acme.test.\n$TTL 1", VALUE, WEB01),
            doc(WEB01, "a\u{7}.acme.test.", VALUE, WEB01),
            doc(WEB01, WEB01_RECORD, VALUE, "192.0.2.1"),
        ];
        for text in cases {
            let err = read(&text, &policy).expect_err(&text).to_string();
            assert!(
                err.contains("web01.example.org") && err.contains("record #0"),
                "{err}"
            );
            assert!(!err.contains('\n') && !err.contains('\u{7}'), "{err}");
        }
    }

    #[test]
    fn refuses_bad_documents_in_one_bounded_line() {
        let policy = policy(ChallengeRecords::PerName, None);
        let good = doc(WEB01, WEB01_RECORD, VALUE, WEB01);
        let forged = format!("\n\u{1b}[32mfleetcert: published{}", "x".repeat(100_000));
        let cases = [
            "{not json".to_owned(),
            "42".to_owned(),
            good.replace("\"version\":1", "\"version\":2"),
            good.replace("web01.example.org\",\"records", "web 01\",\"records"),
            good.replace(
                "\"cert\"",
                &format!("{}:1,\"cert\"", serde_json::json!(forged)),
            ),
            format!(
                "[{good}, {}]",
                doc(WEB01, WEB01_RECORD, &"b".repeat(43), WEB01)
            ),
        ];
        for text in cases {
            let err = read(&text, &policy).expect_err(&text).to_string();
            assert!(!err.contains('\n') && !err.contains('\u{1b}'), "{err}");
            assert!(err.len() < 1000, "{} bytes: {err}", err.len());
        }
        // The same document twice (one file given twice) is fine.
        assert!(read(&format!("[{good}, {good}]"), &policy).is_ok());
    }

    #[test]
    fn a_document_speaks_only_for_the_host_the_transport_names() {
        let allow: &[(&str, &[&str])] = &[
            (WEB01, &[WEB01]),
            ("web02.example.org", &["web02.example.org"]),
        ];
        let policy = policy(ChallengeRecords::PerName, Some(allow));
        let web02_record = "web02.example.org.acme.test.";
        // web01 claims to be web02 to get web02's name.
        let forged = doc(
            "web02.example.org",
            web02_record,
            VALUE,
            "web02.example.org",
        );
        let hostvars = format!("{{\"{WEB01}\": {forged}}}");
        let err = read(&hostvars, &policy).expect_err("forged").to_string();
        assert!(err.contains("came as web01.example.org's"), "{err}");
        let err = read_as(&forged, Some(WEB01), &policy)
            .expect_err("forged")
            .to_string();
        assert!(err.contains("came as web01.example.org's"), "{err}");
        // With an allow-list, a document without a vouched identity is refused.
        let err = read(&forged, &policy).expect_err("no identity").to_string();
        assert!(err.contains("no identity"), "{err}");
        // Its own name, vouched for, is fine; another identifier is not.
        let own = doc(WEB01, WEB01_RECORD, VALUE, WEB01);
        assert!(read_as(&own, Some(WEB01), &policy).is_ok());
        let other_id = doc(WEB01, web02_record, VALUE, "web02.example.org");
        let err = read_as(&other_id, Some(WEB01), &policy)
            .expect_err("not allowed")
            .to_string();
        assert!(err.contains("allow.web01.example.org"), "{err}");
    }

    #[test]
    fn a_mapped_file_vouches_for_its_own_host_only() {
        let allow: &[(&str, &[&str])] = &[
            (WEB01, &[WEB01]),
            ("web02.example.org", &["web02.example.org"]),
        ];
        let policy = policy(ChallengeRecords::PerName, Some(allow));
        let web02 = doc(
            "web02.example.org",
            "web02.example.org.acme.test.",
            VALUE,
            "web02.example.org",
        );
        let own = doc(WEB01, WEB01_RECORD, VALUE, WEB01);
        // web01's file names web02 by an object's key, or in an array beside its own.
        for text in [
            format!("{{\"web02.example.org\": {web02}}}"),
            format!("{{\"{WEB01}\": {own}, \"web02.example.org\": {web02}}}"),
            format!("[{web02}]"),
            format!("[{own}]"),
            "42".to_owned(),
        ] {
            let err = read_as(&text, Some(WEB01), &policy)
                .expect_err(&text)
                .to_string();
            assert!(
                err.contains("came as --tokens web01.example.org=") && !err.contains('\n'),
                "{err}"
            );
        }
        // Unmapped, the operator's hostvars object still speaks for each host by its key.
        let hostvars = format!("{{\"{WEB01}\": {own}, \"web02.example.org\": {web02}}}");
        assert_eq!(read(&hostvars, &policy).expect("hostvars").len(), 2);
        assert!(read_as(&own, Some(WEB01), &policy).is_ok());
    }

    #[test]
    fn shared_mode_puts_every_record_at_the_apex() {
        let policy = policy(ChallengeRecords::Shared, None);
        assert!(read(&doc(WEB01, "acme.test.", VALUE, WEB01), &policy).is_ok());
        assert!(read(&doc(WEB01, WEB01_RECORD, VALUE, WEB01), &policy).is_err());
    }

    #[test]
    fn empty_records_is_a_cleanup() {
        let policy = policy(ChallengeRecords::PerName, None);
        let text = r#"{"version": 1, "host": "web01.example.org", "records": []}"#;
        let got = read(text, &policy).expect("accepted");
        assert!(got[0].records.is_empty());
    }

    #[test]
    fn host_file_mapping_is_parsed_only_for_a_host_name() {
        let mapped = TokenSource::parse(Path::new("web01.example.org=/tmp/a.json"));
        assert_eq!(mapped.path, Path::new("/tmp/a.json"));
        assert_eq!(
            mapped.host.as_ref().map(DnsName::as_str),
            Some("web01.example.org")
        );
        let plain = TokenSource::parse(Path::new("/tmp/x=y.json"));
        assert_eq!(plain.path, Path::new("/tmp/x=y.json"));
        assert!(plain.host.is_none());
    }

    #[test]
    fn an_oversized_source_is_refused_before_parsing() {
        let policy = policy(ChallengeRecords::PerName, None);
        let source = TokenSource {
            path: PathBuf::from("/dev/zero"),
            host: None,
        };
        let err = read_tokens(&[source], &policy)
            .expect_err("endless")
            .to_string();
        assert!(err.contains("/dev/zero") && err.contains("MiB"), "{err}");
    }
}
