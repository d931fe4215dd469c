//! `--tokens` input: read every file, accept the three shapes, and validate every record.
//!
//! A file holds one token document, a JSON array of them, or an object of host -> document
//! (Ansible's `hostvars`). Nothing in a document is trusted: a record must lie in the signing
//! zone, sit exactly where the configured mapping puts its identifier, carry a 43-character
//! base64url value, and be allowed for its host. Only the checked, canonical name and value
//! of a record go on from here, so nothing else a host wrote can reach the zone file.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{ZoneError, shown};
use crate::config::ZoneConfig;
use crate::names::{NameError, canonical_name, is_in_zone, record_name};
use crate::token::{self, TokenDocument};

/// One validated TXT record: canonical owner name with the trailing dot, and its value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub(crate) struct TxtRecord {
    pub(crate) name: String,
    pub(crate) value: String,
}

/// One host's validated records from this publish. Empty `records` removes the host's records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Submission {
    /// Canonical host name, no trailing dot.
    pub(crate) host: String,
    pub(crate) records: BTreeSet<TxtRecord>,
}

/// Why one record was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RecordProblem {
    /// The identifier is not a DNS name.
    #[error("identifier {identifier} is not a DNS name: {reason}")]
    Identifier {
        identifier: String,
        reason: &'static str,
    },
    /// The record name is not a DNS name.
    #[error("the name is not a DNS name: {0}")]
    Name(&'static str),
    /// The record name lies outside the signing zone.
    #[error("lies outside the signing zone {zone}: records go to {expected}")]
    OutsideZone { zone: String, expected: String },
    /// The record name is in the zone, but not where its identifier's record goes.
    #[error("is not where identifier {identifier}'s record goes ({expected}, {mode} records)")]
    WrongName {
        identifier: String,
        expected: String,
        mode: crate::names::ChallengeRecords,
    },
    /// The value is not a DNS-01 digest.
    #[error("value {0} is not 43 base64url characters (A-Z a-z 0-9 - _), as a DNS-01 digest is")]
    Value(String),
    /// The host is not in the allow-list at all.
    #[error("host is not listed in `allow` of the zone config: add it with its identifiers")]
    HostNotAllowed,
    /// The identifier is not in the host's allow-list.
    #[error("identifier {identifier} is not in `allow.{host}` of the zone config: add it there")]
    NotAllowed { identifier: String, host: String },
}

/// Where a document came from, for error lines: the file and, for several, which one.
#[derive(Debug, Clone)]
struct Origin {
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

/// Reads and validates every `--tokens` file. One submission per host; the same host twice
/// is refused unless both documents are identical (the same file given twice).
pub(crate) fn read_tokens(
    paths: &[PathBuf],
    config: &ZoneConfig,
) -> Result<Vec<Submission>, ZoneError> {
    let mut seen_stdin = false;
    let mut by_host: BTreeMap<String, (Submission, Origin)> = BTreeMap::new();
    for path in paths {
        let is_stdin = path.as_os_str() == "-";
        if is_stdin && std::mem::replace(&mut seen_stdin, true) {
            return Err(ZoneError::StdinTwice);
        }
        let bytes = read_source(path, is_stdin)?;
        let file = if is_stdin {
            "stdin".to_owned()
        } else {
            path.display().to_string()
        };
        for (origin, value) in documents(&file, &bytes)? {
            let submission = validate(&origin, value, config)?;
            match by_host.get(&submission.host) {
                Some((earlier, _)) if *earlier == submission => {}
                Some((_, earlier)) => {
                    return Err(ZoneError::Document {
                        origin: origin.to_string(),
                        host: submission.host,
                        problem: format!(
                            "appears twice with different records (also in {earlier}): \
                             give each host's document once"
                        ),
                    });
                }
                None => {
                    by_host.insert(submission.host.clone(), (submission, origin));
                }
            }
        }
    }
    Ok(by_host
        .into_values()
        .map(|(submission, _)| submission)
        .collect())
}

fn read_source(path: &Path, is_stdin: bool) -> Result<Vec<u8>, ZoneError> {
    let mut bytes = Vec::new();
    let result = if is_stdin {
        std::io::stdin().lock().read_to_end(&mut bytes).map(|_| ())
    } else {
        std::fs::File::open(path).and_then(|mut file| file.read_to_end(&mut bytes).map(|_| ()))
    };
    result.map_err(|source| ZoneError::TokensRead {
        path: path.to_owned(),
        source,
    })?;
    Ok(bytes)
}

/// Splits one file into its documents, by shape.
fn documents(file: &str, bytes: &[u8]) -> Result<Vec<(Origin, Value)>, ZoneError> {
    let syntax = |problem: String| ZoneError::TokensSyntax {
        origin: file.to_owned(),
        problem,
    };
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|err| syntax(format!("is not JSON: {err}; give the output of `request`")))?;
    let origin = |entry: Option<String>| Origin {
        file: file.to_owned(),
        entry,
    };
    match value {
        Value::Array(items) => Ok(items
            .into_iter()
            .enumerate()
            .map(|(index, item)| (origin(Some(format!("[{index}]"))), item))
            .collect()),
        // A document has `version`; an object without one maps hosts to documents.
        Value::Object(map) if map.contains_key("version") => {
            Ok(vec![(origin(None), Value::Object(map))])
        }
        Value::Object(map) => Ok(map
            .into_iter()
            .map(|(key, item)| (origin(Some(format!("[{}]", shown(&key)))), item))
            .collect()),
        _ => Err(syntax(
            "holds neither a token document, an array of them, nor an object of host -> document"
                .to_owned(),
        )),
    }
}

/// Checks one document and everything in it.
fn validate(origin: &Origin, value: Value, config: &ZoneConfig) -> Result<Submission, ZoneError> {
    // Name the host in errors even when the document is malformed otherwise.
    let claimed_host = value
        .get("host")
        .and_then(Value::as_str)
        .map_or_else(|| "(unknown)".to_owned(), shown);
    let document_error = |host: String, problem: String| ZoneError::Document {
        origin: origin.to_string(),
        host,
        problem,
    };
    let document: TokenDocument = serde_json::from_value(value).map_err(|err| {
        document_error(
            claimed_host.clone(),
            format!("is not a token document: {err}"),
        )
    })?;
    if document.version != token::VERSION {
        return Err(document_error(
            claimed_host,
            format!(
                "has version {}, this fleetcert reads version {}: use the same fleetcert \
                 version on hosts and here",
                document.version,
                token::VERSION
            ),
        ));
    }
    let host = canonical_name(&document.host, false).map_err(|err| {
        document_error(
            claimed_host,
            format!("`host` is not a host name: {}", name_rule(&err)),
        )
    })?;
    let mut records = BTreeSet::new();
    for (index, record) in document.records.iter().enumerate() {
        let checked = check_record(&host, record, config).map_err(|problem| ZoneError::Record {
            origin: origin.to_string(),
            host: host.clone(),
            record: format!("#{index} {}", shown(&record.name)),
            problem: Box::new(problem),
        })?;
        records.insert(checked);
    }
    Ok(Submission { host, records })
}

/// Checks one record of `host`; returns it in canonical form.
fn check_record(
    host: &str,
    record: &token::Record,
    config: &ZoneConfig,
) -> Result<TxtRecord, RecordProblem> {
    let identifier =
        canonical_name(&record.identifier, true).map_err(|err| RecordProblem::Identifier {
            identifier: shown(&record.identifier),
            reason: name_rule(&err),
        })?;
    let expected = record_name(&identifier, &config.zone, config.challenge_records);
    let name =
        canonical_name(&record.name, false).map_err(|err| RecordProblem::Name(name_rule(&err)))?;
    let name = format!("{name}.");
    if !is_in_zone(&name, &config.zone) {
        return Err(RecordProblem::OutsideZone {
            zone: config.zone.clone(),
            expected,
        });
    }
    if name != expected {
        return Err(RecordProblem::WrongName {
            identifier,
            expected,
            mode: config.challenge_records,
        });
    }
    if !token::is_txt_value(&record.value) {
        return Err(RecordProblem::Value(shown(&record.value)));
    }
    if let Some(allow) = &config.allow {
        let allowed = allow.get(host).ok_or(RecordProblem::HostNotAllowed)?;
        if !allowed.contains(&identifier) {
            return Err(RecordProblem::NotAllowed {
                identifier,
                host: host.to_owned(),
            });
        }
    }
    Ok(TxtRecord {
        name,
        value: record.value.clone(),
    })
}

/// The rule a name broke, without echoing the (untrusted) name itself.
fn name_rule(err: &NameError) -> &'static str {
    match err {
        NameError::Length(_) => "labels of 1 to 63 characters, 253 in all",
        NameError::Character(_) => "only letters, digits, - and _ may appear in labels",
        NameError::Wildcard(_) => "`*` may only be the whole first label",
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::names::ChallengeRecords;

    pub(crate) const VALUE: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123-_x";

    pub(crate) fn config(dir: &Path, extra: &str) -> ZoneConfig {
        let path = dir.join("zone.yaml");
        let text = format!(
            "zone: acme.test\nzone_file: {}\nsoa: {{mname: ns1.acme.test., rname: hm.acme.test.}}\n\
             nameservers: [ns1.acme.test.]\nglue: {{ns1.acme.test.: [127.0.0.1]}}\n\
             reload: ['true']\n{extra}",
            dir.join("zone.db").display()
        );
        std::fs::write(&path, text).expect("write config");
        ZoneConfig::load(&path).expect("config")
    }

    fn doc(host: &str, name: &str, value: &str, identifier: &str) -> String {
        serde_json::json!({"version": 1, "host": host, "records": [
            {"name": name, "value": value, "cert": "main", "identifier": identifier}]})
        .to_string()
    }

    fn read(dir: &Path, config: &ZoneConfig, text: &str) -> Result<Vec<Submission>, ZoneError> {
        let path = dir.join("tokens.json");
        std::fs::write(&path, text).expect("write tokens");
        read_tokens(&[path], config)
    }

    #[test]
    fn accepts_one_document_an_array_and_hostvars() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config(dir.path(), "");
        let one = doc(
            "web01.example.org",
            "web01.example.org.acme.test.",
            VALUE,
            "web01.example.org",
        );
        let two = doc(
            "web02.example.org",
            "Web02.Example.ORG.acme.test",
            VALUE,
            "*.web02.example.org",
        );
        for text in [
            format!("[{one}, {two}]"),
            format!("{{\"web01\": {one}, \"web02\": {two}}}"),
        ] {
            let got = read(dir.path(), &config, &text).expect("accepted");
            assert_eq!(got.len(), 2);
            assert_eq!(got[1].host, "web02.example.org");
            let record = got[1].records.first().expect("record");
            assert_eq!(record.name, "web02.example.org.acme.test.");
        }
        assert_eq!(read(dir.path(), &config, &one).expect("accepted").len(), 1);
    }

    #[test]
    fn refuses_hostile_records_naming_host_and_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config(dir.path(), "");
        let host = "web01.example.org";
        let cases = [
            doc(host, "web01.example.org.evil.test.", VALUE, host),
            doc(host, "other.example.org.acme.test.", VALUE, host),
            doc(
                host,
                "web01.example.org.acme.test.",
                &format!("{}\"", &VALUE[..42]),
                host,
            ),
            doc(
                host,
                "web01.example.org.acme.test.",
                &format!("{}\n", &VALUE[..42]),
                host,
            ),
            doc(
                host,
                "web01.example.org.acme.test.",
                &format!("{VALUE}a"),
                host,
            ),
            doc(host, "$INCLUDE.acme.test.", VALUE, host),
            doc(host, "web01.example.org.acme.test.\n$TTL 1", VALUE, host),
            doc(host, "a\u{7}.acme.test.", VALUE, host),
        ];
        for text in cases {
            let err = read(dir.path(), &config, &text)
                .expect_err(&text)
                .to_string();
            assert!(
                err.contains("web01.example.org") && err.contains("record #0"),
                "{err}"
            );
            assert!(!err.contains('\n'), "not one line: {err}");
        }
    }

    #[test]
    fn refuses_bad_documents() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config(dir.path(), "");
        let good = doc(
            "web01.example.org",
            "web01.example.org.acme.test.",
            VALUE,
            "web01.example.org",
        );
        let cases = [
            "{not json".to_owned(),
            "42".to_owned(),
            good.replace("\"version\":1", "\"version\":2"),
            good.replace("web01.example.org\",\"records", "web 01\",\"records"),
            good.replace("\"cert\"", "\"extra\":1,\"cert\""),
            format!(
                "[{good}, {}]",
                doc(
                    "web01.example.org",
                    "web01.example.org.acme.test.",
                    &"b".repeat(43),
                    "web01.example.org"
                )
            ),
        ];
        for text in cases {
            let err = read(dir.path(), &config, &text)
                .expect_err(&text)
                .to_string();
            assert!(!err.contains('\n'), "not one line: {err}");
        }
        // The same document twice (one file given twice) is fine.
        assert!(read(dir.path(), &config, &format!("[{good}, {good}]")).is_ok());
    }

    #[test]
    fn honours_allow_list() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config(
            dir.path(),
            "allow: {web01.example.org: [web01.example.org]}\n",
        );
        let ok = doc(
            "web01.example.org",
            "web01.example.org.acme.test.",
            VALUE,
            "web01.example.org",
        );
        assert!(read(dir.path(), &config, &ok).is_ok());
        let other_id = doc(
            "web01.example.org",
            "www.example.org.acme.test.",
            VALUE,
            "www.example.org",
        );
        let err = read(dir.path(), &config, &other_id)
            .expect_err("not allowed")
            .to_string();
        assert!(err.contains("allow.web01.example.org"), "{err}");
        let other_host = doc(
            "web02.example.org",
            "web01.example.org.acme.test.",
            VALUE,
            "web01.example.org",
        );
        assert!(read(dir.path(), &config, &other_host).is_err());
    }

    #[test]
    fn shared_mode_puts_every_record_at_the_apex() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config(dir.path(), "challenge_records: shared\n");
        assert_eq!(config.challenge_records, ChallengeRecords::Shared);
        let apex = doc(
            "web01.example.org",
            "acme.test.",
            VALUE,
            "web01.example.org",
        );
        assert!(read(dir.path(), &config, &apex).is_ok());
        let per_name = doc(
            "web01.example.org",
            "web01.example.org.acme.test.",
            VALUE,
            "web01.example.org",
        );
        assert!(read(dir.path(), &config, &per_name).is_err());
    }

    #[test]
    fn empty_records_is_a_cleanup() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config(dir.path(), "");
        let text = r#"{"version": 1, "host": "web01.example.org", "records": []}"#;
        let got = read(dir.path(), &config, text).expect("accepted");
        assert!(got[0].records.is_empty());
    }
}
