//! Entry points for the fuzz targets under `fuzz/` (`cargo fuzz`, libFuzzer): each takes the
//! fuzzer's bytes, runs one path that reads untrusted input the way the commands do, and
//! panics when a property the rest of fleetcert relies on does not hold. Not an API: the
//! module is public only so that the fuzz crate can reach it, and nothing else becomes so;
//! it is compiled only for fuzzing (`cfg(fuzzing)`, which cargo fuzz sets), never into the
//! shipped binary.
//!
//! The properties (docs/dev/fuzzing.md):
//!
//! - every refusal is one line of bounded length without control characters, whatever the
//!   input holds;
//! - an accepted token document yields only records inside the signing zone, exactly where
//!   their identifier's record goes, and with an allow-list only its host's names;
//! - validated records render into a zone that the re-parse accepts and that holds exactly
//!   them; a zone text the re-parse accepts holds nothing but the validated TXT records, SOA,
//!   NS and glue, read the way BIND reads it;
//! - the PEM chain reader never panics, and a chain it accepts splits into leaf and
//!   intermediates that add up to the full chain.

// The fuzz targets are the only callers; the properties are the point, so they panic.
#![allow(clippy::missing_panics_doc, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Display;
use std::path::PathBuf;
use std::sync::OnceLock;

use crate::cert::{KeyType, PrivateKey};
use crate::config::{HostConfig, ZoneConfig, ZoneTarget};
use crate::dns::{DnsName, NameError};
use crate::token::{ChallengeRecords, Policy, Submission, TxtRecord, TxtValue, record_name};
use crate::zone::{ZoneData, ZoneTemplate, check_rendered};

/// The longest error line any input may produce: a few escaped, bounded excerpts and the
/// sentence around them.
const MAX_ERROR_LINE: usize = 4096;

/// The signing zone of every target.
const ZONE: &str = "acme.test";

/// The allow-list the token targets use: host -> identifiers.
const ALLOW: &[(&str, &[&str])] = &[
    (
        "web01.example.org",
        &[
            "web01.example.org",
            "*.web01.example.org",
            "www.example.org",
        ],
    ),
    ("web02.example.org", &["web02.example.org"]),
];

/// Panics unless `err` shows as one line of bounded length, free of control characters.
fn assert_one_line(err: &dyn Display) {
    let line = err.to_string();
    assert!(
        line.len() <= MAX_ERROR_LINE,
        "error line of {} bytes: {}",
        line.len(),
        line.chars().take(300).collect::<String>()
    );
    assert!(
        !line
            .chars()
            .any(|c| c.is_control()
                || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}')),
        "control character in an error line: {line:?}"
    );
}

fn name(text: &str) -> DnsName {
    DnsName::parse_identifier(text).unwrap_or_else(|err| panic!("{text}: {err}"))
}

fn policy(records: ChallengeRecords, allow: bool) -> Policy {
    Policy {
        zone: name(ZONE),
        records,
        allow: allow.then(|| {
            ALLOW
                .iter()
                .map(|(host, ids)| (name(host), ids.iter().map(|id| name(id)).collect()))
                .collect()
        }),
    }
}

/// Token documents, as `publish --tokens` reads them. The first byte picks the mode, whether
/// an allow-list is set and whether the source is mapped to a host (`HOST=FILE`).
pub fn token_documents(data: &[u8]) {
    let Some((&switches, bytes)) = data.split_first() else {
        return;
    };
    let records = if switches & 1 == 0 {
        ChallengeRecords::PerName
    } else {
        ChallengeRecords::Shared
    };
    let allow = switches & 2 != 0;
    let mapped = (switches & 4 != 0).then(|| name(ALLOW[0].0));
    let policy = policy(records, allow);
    match crate::token::validate_bytes(bytes, "fuzz", mapped.as_ref(), &policy) {
        Ok(submissions) => {
            // A mapped source speaks for its host and no other.
            if let Some(host) = &mapped {
                assert!(
                    submissions.iter().all(|s| &s.host == host),
                    "a source mapped to {host} spoke for another host"
                );
            }
            check_submissions(&submissions, &policy);
        }
        Err(err) => assert_one_line(&err),
    }
}

/// Every accepted record lies where the policy lets its host put it.
fn check_submissions(submissions: &[Submission], policy: &Policy) {
    let zone = &policy.zone;
    for submission in submissions {
        let allowed: Option<BTreeSet<DnsName>> = policy.allow.as_ref().map(|allow| {
            let ids = allow
                .get(&submission.host)
                .unwrap_or_else(|| panic!("{} is not in allow", submission.host));
            ids.iter()
                .map(|id| record_name(id, zone, policy.records).expect("allowed name fits"))
                .collect()
        });
        for record in &submission.records {
            assert!(
                record.name.is_in(zone),
                "{:?} outside the zone",
                record.name
            );
            assert!(
                !record.name.is_wildcard(),
                "{:?} is a wildcard",
                record.name
            );
            match policy.records {
                ChallengeRecords::Shared => assert_eq!(&record.name, zone),
                ChallengeRecords::PerName => assert_ne!(&record.name, zone),
            }
            if let Some(allowed) = &allowed {
                assert!(
                    allowed.contains(&record.name),
                    "{} got {:?}, not one of its names",
                    submission.host,
                    record.name
                );
            }
        }
    }
}

/// A file of this process's own in a directory of its own, for the config loaders (which
/// read a path): every input is written there first.
fn scratch(file: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("fleetcert-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the fuzz scratch directory");
        dir
    });
    dir.join(file)
}

/// Whether the config names an `acme.ca_bundle` other than a harmless one: the loader reads
/// it, and a fuzzer that finds `/dev/stdin` or a FIFO would only measure a hang.
fn names_a_foreign_file(data: &[u8]) -> bool {
    let Ok(value) = serde_yaml::from_slice::<serde_yaml::Value>(data) else {
        // The loader parses the whole file before it reads the bundle: it stops first.
        return false;
    };
    value
        .get("acme")
        .and_then(|acme| acme.get("ca_bundle"))
        .is_some_and(|bundle| bundle.as_str() != Some("/dev/null"))
}

/// A host config, as `request`, `finalize` and `status` load it.
pub fn host_config(data: &[u8]) {
    if names_a_foreign_file(data) {
        return;
    }
    let path = scratch("host.yaml");
    std::fs::write(&path, data).expect("write the input");
    match HostConfig::load(&path) {
        Err(err) => assert_one_line(&err),
        Ok(config) => {
            for (cert, spec) in &config.certs {
                assert!(
                    crate::store::is_plain_name(cert) && cert.len() <= 64,
                    "{cert}"
                );
                assert!(!spec.names.is_empty());
                for id in &spec.names {
                    record_name(id, &config.signing_zone, config.challenge_records)
                        .expect("a loaded config's records fit in the zone");
                }
            }
        }
    }
}

/// A zone config, as `publish` loads it.
pub fn zone_config(data: &[u8]) {
    let path = scratch("zone.yaml");
    std::fs::write(&path, data).expect("write the input");
    match ZoneConfig::load(&path) {
        Err(err) => assert_one_line(&err),
        Ok(config) => {
            if config.policy.allow.is_some() {
                assert_eq!(config.policy.records, ChallengeRecords::PerName);
            }
        }
    }
}

/// The zone config the render targets use, loaded once.
fn render_config() -> &'static ZoneConfig {
    static CONFIG: OnceLock<ZoneConfig> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let path = scratch("render.yaml");
        std::fs::write(
            &path,
            "zone: acme.test\nzone_file: zone.db\n\
             soa: {mname: ns1.acme.test., rname: hostmaster.acme.test.}\n\
             nameservers: [ns1.acme.test., ns2.example.net.]\n\
             glue: {ns1.acme.test.: [127.0.0.1, '::1']}\nreload: ['true']\n",
        )
        .expect("write the render config");
        ZoneConfig::load(&path).expect("the render config loads")
    })
}

/// Token documents from lines of `host identifier value [name]` (the record goes where its
/// identifier's does unless a name is given), keyed by host as hostvars are, validated,
/// rendered with the shipped template and re-parsed: the zone must hold exactly the validated
/// records. The first four bytes are the serial, the fifth sets an allow-list.
pub fn zone_render(data: &[u8]) {
    let Some((head, rest)) = data.split_first_chunk::<5>() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let serial = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    let config = render_config();
    let policy = Policy {
        allow: policy(ChallengeRecords::PerName, head[4] & 1 != 0).allow,
        ..config.policy.clone()
    };
    let Ok(submissions) = crate::token::validate_bytes(&documents(text), "fuzz", None, &policy)
    else {
        return;
    };
    check_submissions(&submissions, &policy);
    let records: BTreeSet<&TxtRecord> = submissions
        .iter()
        .flat_map(|submission| submission.records.iter())
        .collect();
    let ZoneTarget::File(target) = &config.target else {
        panic!("the render config publishes a file");
    };
    let template = ZoneTemplate::load(target).expect("the shipped template compiles");
    let data = ZoneData::new(target, &config.zone, config.ttl, &records);
    let rendered = template
        .render(&data, serial)
        .unwrap_or_else(|err| panic!("validated records do not render: {err}"));
    check_rendered(&rendered, &config.zone, serial, &records, "fuzz")
        .unwrap_or_else(|err| panic!("the rendered zone fails its own check: {err}\n{rendered}"));
    assert_zone_holds(&rendered, &config.zone, serial, &records);
}

/// A hostvars-shaped object of token documents from the lines of `text`.
fn documents(text: &str) -> Vec<u8> {
    let mut hosts: BTreeMap<&str, Vec<serde_json::Value>> = BTreeMap::new();
    for line in text.lines() {
        let mut fields = line.split(' ');
        let (Some(host), Some(identifier), Some(value)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let base = identifier.strip_prefix("*.").unwrap_or(identifier);
        let record_name = fields
            .next()
            .map_or_else(|| format!("{base}.{ZONE}."), str::to_owned);
        hosts.entry(host).or_default().push(serde_json::json!({
            "name": record_name, "value": value, "cert": "main", "identifier": identifier,
        }));
    }
    let object: serde_json::Map<String, serde_json::Value> = hosts
        .into_iter()
        .map(|(host, records)| {
            (
                host.to_owned(),
                serde_json::json!({"version": 1, "host": host, "records": records}),
            )
        })
        .collect();
    serde_json::to_vec(&object).unwrap_or_default()
}

/// The TXT records the zone-check target's zone must hold.
fn check_records() -> &'static [TxtRecord; 2] {
    static RECORDS: OnceLock<[TxtRecord; 2]> = OnceLock::new();
    RECORDS.get_or_init(|| {
        let record = |owner: &str, value: &str| TxtRecord {
            name: name(owner),
            value: TxtValue::try_from(value.to_owned()).expect("a digest"),
        };
        [
            record(
                "a.example.org.acme.test",
                "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123-_x",
            ),
            record("acme.test", "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghij0123-_x"),
        ]
    })
}

/// Any text as a rendered zone of serial 7 that must hold [`check_records`]: whatever the
/// re-parse accepts must hold those records and nothing else BIND would serve.
pub fn zone_check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let zone = name(ZONE);
    let records: BTreeSet<&TxtRecord> = check_records().iter().collect();
    match check_rendered(text, &zone, 7, &records, "fuzz") {
        Err(err) => assert_one_line(&err),
        Ok(()) => assert_zone_holds(text, &zone, 7, &records),
    }
}

/// Reads `text` as BIND's master-file reader does for the forms a zone may take, and panics
/// unless it holds one SOA with `serial`, NS, A and AAAA records, and exactly `records` as TXT.
fn assert_zone_holds(text: &str, zone: &DnsName, serial: u32, records: &BTreeSet<&TxtRecord>) {
    assert!(
        text.bytes()
            .all(|b| b == b'\n' || b == b'\t' || (b' '..=b'~').contains(&b)),
        "the zone holds bytes other than printable ASCII, tab and newline: {text:?}"
    );
    let read = bind_records(text, zone).unwrap_or_else(|problem| {
        panic!("accepted, but BIND would not read it so: {problem}\n{text}")
    });
    let mut txt = BTreeSet::new();
    let mut serials = Vec::new();
    for (owner, rtype, rdata) in read {
        assert!(owner.is_in(zone), "{owner:?} outside {zone}");
        match rtype.as_str() {
            "SOA" => {
                assert_eq!(&owner, zone, "an SOA below the apex");
                serials.push(rdata.get(2).and_then(|s| s.parse::<u32>().ok()));
            }
            "NS" | "A" | "AAAA" => {}
            "TXT" => {
                let [value] = rdata.as_slice() else {
                    panic!("a TXT record of {} strings at {owner}", rdata.len());
                };
                txt.insert((owner, value.clone()));
            }
            other => panic!("a {other} record at {owner} in the signing zone"),
        }
    }
    assert_eq!(serials, [Some(serial)], "SOA serials");
    let expected: BTreeSet<(DnsName, String)> = records
        .iter()
        .map(|record| (record.name.clone(), record.value.as_str().to_owned()))
        .collect();
    assert_eq!(txt, expected, "the TXT records BIND would serve");
}

/// One record as BIND reads it: owner, type (upper case), rdata tokens (TXT unquoted).
type BindRecord = (DnsName, String, Vec<String>);

/// What [`bind_records`] refuses: zone text BIND would not read as the checker did.
#[derive(Debug, thiserror::Error)]
enum BindReadError {
    /// A `(` whose `)` never comes.
    #[error("an unclosed parenthesis")]
    UnclosedParenthesis,
    /// A `$` directive other than `$ORIGIN` of the zone or a valid `$TTL`.
    #[error("the directive {0}")]
    Directive(String),
    /// An owner name that does not parse.
    #[error("the owner {token:?} {source}")]
    Owner { token: String, source: NameError },
    /// A continuation line with no owner before it.
    #[error("a record before any owner")]
    NoOwner,
    /// A record line that ends before its type.
    #[error("a record without a type")]
    NoType,
    /// A backslash inside quotes (the checker does not read escapes).
    #[error("an escape in a quoted string")]
    EscapeInQuote,
    /// A quote never closed on its line.
    #[error("an unclosed quote")]
    UnclosedQuote,
    /// A backslash in an unquoted token.
    #[error("an escape in a name")]
    EscapeInName,
}

/// A master-file reader after BIND's rules for what a signing zone may hold: tokens end at
/// space, tab or the end of the line; `;` outside quotes starts a comment; parentheses join
/// lines; a line that starts with a blank belongs to the previous owner; `@` is the origin;
/// a name without a trailing dot is relative to it. What it does not know, it refuses.
fn bind_records(text: &str, zone: &DnsName) -> Result<Vec<BindRecord>, BindReadError> {
    let mut records = Vec::new();
    let mut owner: Option<DnsName> = None;
    let mut lines = text.split('\n');
    while let Some(first) = lines.next() {
        let continued = first.starts_with([' ', '\t']);
        let mut tokens = tokenize(first)?;
        // An open parenthesis continues the entry on the following lines.
        while tokens.iter().filter(|t| *t == "(").count()
            > tokens.iter().filter(|t| *t == ")").count()
        {
            let next = lines.next().ok_or(BindReadError::UnclosedParenthesis)?;
            tokens.extend(tokenize(next)?);
        }
        tokens.retain(|t| t != "(" && t != ")");
        if tokens.is_empty() {
            continue;
        }
        if tokens[0].starts_with('$') {
            match (tokens[0].as_str(), tokens.get(1)) {
                ("$ORIGIN", Some(origin)) if origin.eq_ignore_ascii_case(&zone.fqdn()) => {}
                ("$TTL", Some(ttl)) if bind_ttl(ttl) => {}
                _ => return Err(BindReadError::Directive(tokens[0].clone())),
            }
            continue;
        }
        let mut rest = tokens.into_iter().peekable();
        if !continued {
            let token = rest.next().unwrap_or_default();
            let name =
                bind_name(&token, zone).map_err(|source| BindReadError::Owner { token, source })?;
            owner = Some(name);
        }
        let owner = owner.clone().ok_or(BindReadError::NoOwner)?;
        // TTL and class, in either order, as BIND allows.
        for _ in 0..2 {
            if rest
                .peek()
                .is_some_and(|t| bind_ttl(t) || t.eq_ignore_ascii_case("IN"))
            {
                rest.next();
            }
        }
        let rtype = rest
            .next()
            .ok_or(BindReadError::NoType)?
            .to_ascii_uppercase();
        records.push((owner, rtype, rest.collect()));
    }
    Ok(records)
}

/// A TTL as BIND reads it (named-checkzone 9.18): digits whose value fits in 32 bits. `+60`
/// and `4294967296` are `bad ttl` as `$TTL`, and an unknown type where a record's TTL would be.
fn bind_ttl(token: &str) -> bool {
    // Leading zeros are fine (`0000000000000000000000060` loads): the value counts.
    let digits = token.trim_start_matches('0');
    token.bytes().all(|b| b.is_ascii_digit())
        && !token.is_empty()
        && (digits.is_empty() || digits.parse::<u32>().is_ok())
}

/// Splits one line into tokens; a quoted string is one token, unquoted.
fn tokenize(line: &str) -> Result<Vec<String>, BindReadError> {
    let mut tokens = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            ' ' | '\t' => {
                chars.next();
            }
            ';' => break,
            '"' => {
                chars.next();
                let mut token = String::new();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => return Err(BindReadError::EscapeInQuote),
                        Some(c) => token.push(c),
                        None => return Err(BindReadError::UnclosedQuote),
                    }
                }
                tokens.push(token);
            }
            '(' | ')' => {
                chars.next();
                tokens.push(c.to_string());
            }
            _ => {
                let mut token = String::new();
                while let Some(&c) = chars.peek() {
                    if matches!(c, ' ' | '\t' | ';' | '"' | '(' | ')') {
                        break;
                    }
                    if c == '\\' {
                        return Err(BindReadError::EscapeInName);
                    }
                    token.push(c);
                    chars.next();
                }
                tokens.push(token);
            }
        }
    }
    Ok(tokens)
}

/// An owner as BIND reads it: `@`, absolute with the dot, or relative to the zone.
fn bind_name(token: &str, zone: &DnsName) -> Result<DnsName, NameError> {
    if token == "@" {
        return Ok(zone.clone());
    }
    match token.strip_suffix('.') {
        Some(absolute) => DnsName::parse(absolute),
        None => DnsName::parse(token).and_then(|relative| relative.under(zone)),
    }
}

/// The key the PEM target's chains are checked against, read once (the fuzz crate's own
/// throwaway key, which the seed chain was issued for).
fn chain_key(key_pem: &str) -> &'static PrivateKey {
    static KEY: OnceLock<PrivateKey> = OnceLock::new();
    KEY.get_or_init(|| {
        PrivateKey::from_pem(key_pem, KeyType::EcdsaP256).expect("the fuzz key is a P-256 key")
    })
}

/// A PEM chain as a CA sends it (`acme::verify_chain`: split, parse, match key and names)
/// and as a certificate on disk is read (`cert::inspect_chain`). `key_pem` is the key the
/// chain's leaf is checked against.
pub fn pem_chain(data: &[u8], key_pem: &str) {
    let inspected = crate::cert::inspect_chain(data);
    if let Ok(inspection) = &inspected {
        assert!(inspection.names.windows(2).all(|pair| pair[0] <= pair[1]));
        assert!(
            inspection
                .names
                .iter()
                .all(|name| !name.bytes().any(|b| b.is_ascii_uppercase()))
        );
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Every block the splitter returns is one strict certificate block; a refusal is a line.
    let blocks = match crate::acme::pem_blocks(text) {
        Ok(blocks) => blocks,
        Err(problem) => {
            assert_one_line(&problem);
            Vec::new()
        }
    };
    for block in &blocks {
        assert!(
            block.starts_with("-----BEGIN CERTIFICATE-----"),
            "{block:?}"
        );
        assert!(block.ends_with("-----END CERTIFICATE-----\n"), "{block:?}");
        assert_eq!(block.matches("-----").count(), 4, "{block:?}");
    }
    let names = [name("a.example.org"), name("b.example.org")];
    match crate::acme::verify_chain(text, chain_key(key_pem), &names) {
        Err(err) => assert_one_line(&err),
        Ok(chain) => {
            assert_eq!(chain.full, format!("{}{}", chain.leaf, chain.intermediates));
            let blocks_of = |pem: &str| crate::acme::pem_blocks(pem).expect("written strictly");
            assert_eq!(blocks_of(&chain.leaf).len(), 1);
            assert_eq!(
                blocks_of(&chain.full),
                blocks,
                "the full chain lost, gained or changed a certificate"
            );
            // What is installed reads back as what was checked: the leaf file and the full
            // chain (as a service and the next run's renewal decision read them).
            for file in [&chain.leaf, &chain.full] {
                let again = crate::cert::inspect_chain(file.as_bytes())
                    .expect("the installed file reads back");
                assert_eq!(again.names, ["a.example.org", "b.example.org"]);
                assert_eq!(again.public_key_info, chain.inspection.public_key_info);
                assert_eq!(again.serial, chain.inspection.serial);
            }
        }
    }
}
