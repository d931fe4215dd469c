//! Parsing the rendered zone back before it replaces the old one.
//!
//! Not a general zone-file parser: it accepts exactly the line forms a signing zone needs
//! (comments, `$ORIGIN` of this zone, `$TTL`, and one-line SOA, NS, A, AAAA and TXT records)
//! and refuses everything else, `$INCLUDE` and `$GENERATE` first of all. Then it checks that
//! the zone holds one SOA with the new serial, at least one NS, and exactly the validated TXT
//! records — so neither a template nor anything that slipped past validation can add, drop or
//! bend a record.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::ZoneError;
use crate::dns::DnsName;
use crate::shown::shown;
use crate::token::{TxtRecord, TxtValue};

/// What the rendered zone holds, as far as the check cares.
#[derive(Debug, Default)]
struct Parsed {
    serials: Vec<u32>,
    apex_ns: usize,
    txt: BTreeSet<TxtRecord>,
}

/// Checks `text`, rendered by `origin`, against the `serial` and `records` it was made from.
pub(crate) fn check_rendered(
    text: &str,
    zone: &DnsName,
    serial: u32,
    records: &BTreeSet<&TxtRecord>,
    origin: &str,
) -> Result<(), ZoneError> {
    let fail = |line: usize, problem: String| ZoneError::Rendered {
        origin: origin.to_owned(),
        line,
        problem,
    };
    let parsed = parse(text, zone).map_err(|(line, problem)| fail(line, problem))?;
    let end = text.lines().count();
    match parsed.serials.as_slice() {
        [found] if *found == serial => {}
        [found] => return Err(fail(end, format!("SOA serial {found}, expected {serial}"))),
        found => {
            return Err(fail(
                end,
                format!("{} SOA records at the apex, expected 1", found.len()),
            ));
        }
    }
    if parsed.apex_ns == 0 {
        return Err(fail(end, "no NS record at the apex".to_owned()));
    }
    if parsed.txt.len() != records.len() || parsed.txt.iter().zip(records).any(|(a, b)| a != *b) {
        let missing = records.iter().find(|record| !parsed.txt.contains(record));
        let extra = parsed.txt.iter().find(|record| !records.contains(record));
        let problem = match (missing, extra) {
            (Some(record), _) => format!("the record {} is missing", record.name.fqdn()),
            (None, Some(record)) => format!("an unexpected record {}", record.name.fqdn()),
            (None, None) => "the TXT records differ from the validated ones".to_owned(),
        };
        return Err(fail(end, problem));
    }
    Ok(())
}

/// Why the re-parse refuses one line: shown in the error that names the line, and nothing
/// branches on it (no comparison, no accessor).
#[derive(Debug)]
struct Refusal(String);

impl From<String> for Refusal {
    fn from(text: String) -> Self {
        Self(text)
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Reads every line; an error carries the 1-based line number.
fn parse(text: &str, zone: &DnsName) -> Result<Parsed, (usize, String)> {
    let mut parsed = Parsed::default();
    let mut owner: Option<DnsName> = None;
    // Lines end at `\n` alone, as BIND reads them (`lines()` would also eat a `\r`).
    for (index, raw) in text.split('\n').enumerate() {
        let number = index + 1;
        // Printable ASCII, spaces and tabs only, comments included: BIND ends a token only
        // at a space or tab, so a Unicode space (which `split_whitespace` below would take
        // for one) would make BIND read another name than this check does.
        if let Some(c) = raw
            .chars()
            .find(|&c| c != '\t' && !(' '..='~').contains(&c))
        {
            return Err((
                number,
                format!(
                    "the character U+{:04X} (a signing zone holds printable ASCII only)",
                    u32::from(c)
                ),
            ));
        }
        // A `;` starts a comment: no value that passed validation can contain one.
        let line = raw.split(';').next().unwrap_or("");
        if line.trim().is_empty() {
            continue;
        }
        let mut tokens = line.split_whitespace().peekable();
        if line.starts_with('$') {
            directive(&mut tokens, zone).map_err(|problem| (number, problem.to_string()))?;
            continue;
        }
        if !line.starts_with([' ', '\t']) {
            let token = tokens.next().unwrap_or("");
            owner = Some(owner_name(token, zone).map_err(|problem| (number, problem.to_string()))?);
        }
        let Some(name) = owner.clone() else {
            return Err((number, "a record without an owner name".to_owned()));
        };
        if tokens.peek().is_some_and(|t| is_ttl(t)) {
            tokens.next();
        }
        if tokens.peek().is_some_and(|t| t.eq_ignore_ascii_case("IN")) {
            tokens.next();
        }
        let rtype = tokens.next().unwrap_or("").to_ascii_uppercase();
        let rdata: Vec<&str> = tokens.collect();
        record(&mut parsed, &name, &rtype, &rdata, zone)
            .map_err(|problem| (number, problem.to_string()))?;
    }
    Ok(parsed)
}

fn directive<'a>(
    tokens: &mut impl Iterator<Item = &'a str>,
    zone: &DnsName,
) -> Result<(), Refusal> {
    let word = tokens.next().unwrap_or("");
    let argument = tokens.next();
    if tokens.next().is_some() {
        return Err(Refusal::from(format!(
            "{} has more than one argument",
            shown(word)
        )));
    }
    match (word, argument) {
        ("$ORIGIN", Some(origin)) if origin.eq_ignore_ascii_case(&zone.fqdn()) => Ok(()),
        ("$TTL", Some(ttl)) if is_ttl(ttl) => Ok(()),
        _ => Err(Refusal::from(format!(
            "the directive {} is not one a signing zone uses",
            shown(word)
        ))),
    }
}

/// A TTL as BIND reads one in this check's forms: digits only, within 32 bits. BIND refuses
/// `+60` and `4294967296` (`bad ttl` as `$TTL`, an unknown type in a record), while Rust's
/// `u32` parser would take the first; units (`1h`) are not rendered, so not accepted.
fn is_ttl(token: &str) -> bool {
    token.bytes().all(|b| b.is_ascii_digit()) && token.parse::<u32>().is_ok()
}

/// Resolves an owner: `@`, a relative name, or an absolute one inside the zone.
fn owner_name(token: &str, zone: &DnsName) -> Result<DnsName, Refusal> {
    if token == "@" {
        return Ok(zone.clone());
    }
    let bad = |_| format!("the owner {} is not a DNS name", shown(token));
    let name = match token.strip_suffix('.') {
        Some(absolute) => DnsName::parse(absolute).map_err(bad)?,
        None => DnsName::parse(token)
            .and_then(|relative| relative.under(zone))
            .map_err(bad)?,
    };
    if !name.is_in(zone) {
        return Err(Refusal::from(format!(
            "the owner {} lies outside {zone}",
            shown(token)
        )));
    }
    Ok(name)
}

fn record(
    parsed: &mut Parsed,
    name: &DnsName,
    rtype: &str,
    rdata: &[&str],
    zone: &DnsName,
) -> Result<(), Refusal> {
    let wrong = || format!("a {rtype} record of an unexpected form");
    match rtype {
        "SOA" => {
            if name != zone {
                return Err(Refusal::from("an SOA record below the apex".to_owned()));
            }
            // Parentheses only as one pair around the numbers, on this line: BIND would read
            // an unclosed one on into the following lines (and the records there).
            let parens: Vec<&str> = rdata
                .iter()
                .copied()
                .filter(|t| *t == "(" || *t == ")")
                .collect();
            if !(parens.is_empty() || parens == ["(", ")"] && rdata.last() == Some(&")")) {
                return Err(Refusal::from(
                    "an SOA record whose parentheses do not close on its line".to_owned(),
                ));
            }
            let fields: Vec<&str> = rdata
                .iter()
                .copied()
                .filter(|t| *t != "(" && *t != ")")
                .collect();
            let [mname, rname, numbers @ ..] = fields.as_slice() else {
                return Err(Refusal::from(wrong()));
            };
            let numbers: Vec<u32> = numbers.iter().filter_map(|n| n.parse().ok()).collect();
            if !is_domain(mname) || !is_domain(rname) || numbers.len() != 5 || fields.len() != 7 {
                return Err(Refusal::from(wrong()));
            }
            parsed.serials.push(numbers[0]);
        }
        "NS" => match rdata {
            [target] if is_domain(target) => parsed.apex_ns += usize::from(name == zone),
            _ => return Err(Refusal::from(wrong())),
        },
        "A" => match rdata {
            [address] if address.parse::<Ipv4Addr>().is_ok() => {}
            _ => return Err(Refusal::from(wrong())),
        },
        "AAAA" => match rdata {
            [address] if address.parse::<Ipv6Addr>().is_ok() => {}
            _ => return Err(Refusal::from(wrong())),
        },
        "TXT" => {
            let value = match rdata {
                [quoted] => quoted.strip_prefix('"').and_then(|v| v.strip_suffix('"')),
                _ => None,
            };
            match value.map(|value| TxtValue::try_from(value.to_owned())) {
                Some(Ok(value)) => {
                    parsed.txt.insert(TxtRecord {
                        name: name.clone(),
                        value,
                    });
                }
                _ => {
                    return Err(Refusal::from(
                        "a TXT record that is not one 43-character digest".to_owned(),
                    ));
                }
            }
        }
        other => {
            return Err(Refusal::from(format!(
                "a record of type {} in a signing zone",
                shown(other)
            )));
        }
    }
    Ok(())
}

/// A domain name in record data: relative or absolute, no wildcard.
fn is_domain(token: &str) -> bool {
    DnsName::parse(token).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::tests::{VALUE, value};

    const HEAD: &str = "; comment\n$ORIGIN acme.test.\n$TTL 60\n\
        @ IN SOA ns1.acme.test. hm.acme.test. ( 7 3600 600 864000 60 )\n\
        @ IN NS ns1.acme.test.\nns1.acme.test. IN A 127.0.0.1\n";

    fn records() -> Vec<TxtRecord> {
        vec![TxtRecord {
            name: DnsName::parse("a.org.acme.test").expect("name"),
            value: value(VALUE),
        }]
    }

    fn check(text: &str) -> Result<(), ZoneError> {
        let records = records();
        let zone = DnsName::parse("acme.test").expect("zone");
        check_rendered(text, &zone, 7, &records.iter().collect(), "test")
    }

    #[test]
    fn accepts_what_the_template_renders() {
        check(&format!("{HEAD}a.org.acme.test. IN TXT \"{VALUE}\"\n")).expect("accepted");
        check(&format!("{HEAD}a.org 60 IN TXT \"{VALUE}\" ; c\n")).expect("relative owner");
    }

    #[test]
    fn refuses_directives_and_foreign_lines() {
        let txt = format!("a.org.acme.test. IN TXT \"{VALUE}\"\n");
        for bad in [
            "$INCLUDE /etc/passwd\n",
            "$GENERATE 1-10 x$ A 1.2.3.4\n",
            "$ORIGIN evil.test.\n",
            "evil.test. IN TXT \"aaaa\"\n",
            "x.acme.test. IN CNAME evil.test.\n",
            "x.acme.test. IN TXT \"a b\"\n",
            "x.acme.test. IN A 1.2.3.4 5\n",
            "x.acme.test.\x07 IN A 1.2.3.4\n",
            // Found by fuzzing (zone_check): a control character in a comment, and a
            // Unicode space that BIND would read as part of the owner name.
            "; a\u{1}\u{0} comment\n",
            "a.org.acme.test.\u{a0}IN TXT \"x\"\n",
            "x.acme.test. IN A 1.2.3.4\r\n",
            // Found by fuzzing (zone_check): TTLs BIND does not read as TTLs, so that it
            // refuses the zone (`bad ttl`, or the token taken for an unknown type).
            "$TTL +60\n",
            "$TTL 4294967296\n",
            "x.acme.test. +60 IN A 1.2.3.4\n",
            "x.acme.test. 99999999999 IN A 1.2.3.4\n",
        ] {
            let text = format!("{HEAD}{txt}{bad}");
            let err = check(&text).expect_err(bad).to_string();
            assert!(err.contains("line 8"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn refuses_a_zone_that_differs_from_the_records() {
        assert!(check(HEAD).is_err(), "missing record");
        let other = format!("{HEAD}b.org.acme.test. IN TXT \"{VALUE}\"\n");
        assert!(check(&other).is_err(), "other record");
        // Found by fuzzing (zone_check): an SOA whose parenthesis never closes, which BIND
        // would read on into the records below it.
        let unclosed = HEAD.replace("864000 60 )", "864000 60");
        let unclosed = format!("{unclosed}a.org.acme.test. IN TXT \"{VALUE}\"\n");
        assert!(check(&unclosed).is_err(), "unclosed parenthesis");
        let wrong_serial = HEAD.replace("( 7 ", "( 8 ");
        assert!(
            check(&format!(
                "{wrong_serial}a.org.acme.test. IN TXT \"{VALUE}\"\n"
            ))
            .is_err()
        );
    }
}
