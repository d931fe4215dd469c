//! Rendering the signing zone with minijinja, from the shipped template or `template:`.
//!
//! Strict-undefined mode, so a typo in a template is an error rather than an empty field in
//! the zone. A formatter refuses to print anything but the characters names, numbers,
//! addresses and TXT digests are made of: a custom template cannot print a quote, a space
//! or a newline into the zone even by mistake. Validation has already refused such input; this
//! is the second fence.

use std::collections::BTreeSet;
use std::net::IpAddr;

use minijinja::value::{Serde, Value};
use minijinja::{Environment, ErrorKind, UndefinedBehavior, context};
use serde::Serialize;

use super::ZoneError;
use crate::config::FileTarget;
use crate::dns::DnsName;
use crate::shown::{bare, path as shown_path, shown};
use crate::token::TxtRecord;

/// The most bytes a custom template may hold.
const MAX_TEMPLATE_BYTES: u64 = 1 << 20;

/// The template shipped in the binary.
const SHIPPED_TEMPLATE: &str = include_str!("../../zones/signing-zone.j2");
/// Its name in error messages.
const SHIPPED_NAME: &str = "zones/signing-zone.j2 (shipped)";
const TEMPLATE_NAME: &str = "zone";

/// A compiled zone template.
pub(crate) struct ZoneTemplate {
    env: Environment<'static>,
    origin: String,
}

/// Everything the template sees except the serial, converted once: a publish may render twice
/// (to compare with the file, then with the new serial).
pub(crate) struct ZoneData {
    zone: String,
    ttl: u32,
    soa: Value,
    nameservers: Value,
    glue: Value,
    records: Value,
}

#[derive(Serialize)]
struct GlueContext {
    name: String,
    #[serde(rename = "type")]
    rtype: &'static str,
    address: String,
}

/// The SOA as the template sees it (names fully qualified).
#[derive(Serialize)]
struct SoaContext {
    mname: String,
    rname: String,
    refresh: u32,
    retry: u32,
    expire: u32,
    minimum: u32,
}

/// A record as the template sees it.
#[derive(Serialize)]
struct RecordContext<'a> {
    name: String,
    value: &'a str,
}

impl ZoneTemplate {
    /// Loads `template:` (already resolved against the config file) or the shipped template,
    /// and compiles it.
    pub(crate) fn load(target: &FileTarget) -> Result<Self, ZoneError> {
        match &target.template {
            None => Self::compile(SHIPPED_TEMPLATE.to_owned(), SHIPPED_NAME.to_owned()),
            Some(path) => {
                let origin = shown_path(path);
                let unreadable = |message: String| ZoneError::Template {
                    origin: origin.clone(),
                    message,
                };
                let bytes =
                    crate::store::read_bounded(path, MAX_TEMPLATE_BYTES).map_err(|err| {
                        unreadable(format!("{err}; fix `template` in the zone config"))
                    })?;
                let source = String::from_utf8(bytes)
                    .map_err(|_| unreadable("is not UTF-8 text; fix `template`".to_owned()))?;
                Self::compile(source, origin)
            }
        }
    }

    fn compile(source: String, origin: String) -> Result<Self, ZoneError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .keep_trailing_newline(true)
            .build()
            .map_err(|err| template_error(&origin, &err))?;
        env.set_syntax(syntax);
        env.set_formatter(|out, _state, value| {
            let text = value.to_string();
            if !is_printable(&text) {
                return Err(minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    format!("refusing to print {} into the zone", shown(&text)),
                ));
            }
            out.write_str(&text).map_err(minijinja::Error::from)
        });
        env.add_template_owned(TEMPLATE_NAME, source)
            .map_err(|err| template_error(&origin, &err))?;
        Ok(Self { env, origin })
    }

    /// Where the template came from, for messages.
    pub(crate) fn origin(&self) -> &str {
        &self.origin
    }

    /// Renders the zone with `serial`.
    pub(crate) fn render(&self, data: &ZoneData, serial: u32) -> Result<String, ZoneError> {
        let template = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|err| template_error(&self.origin, &err))?;
        let soa = context! { serial, ..data.soa.clone() };
        template
            .render(context! {
                zone => data.zone.as_str(),
                ttl => data.ttl,
                soa,
                nameservers => data.nameservers.clone(),
                glue => data.glue.clone(),
                records => data.records.clone(),
            })
            .map_err(|err| template_error(&self.origin, &err))
    }
}

impl ZoneData {
    /// The template's view of `target` and `records`.
    pub(crate) fn new(
        target: &FileTarget,
        zone: &DnsName,
        ttl: u32,
        records: &BTreeSet<&TxtRecord>,
    ) -> Self {
        let glue: Vec<GlueContext> = target
            .glue
            .iter()
            .map(|glue| GlueContext {
                name: glue.name.fqdn(),
                rtype: match glue.address {
                    IpAddr::V4(_) => "A",
                    IpAddr::V6(_) => "AAAA",
                },
                address: glue.address.to_string(),
            })
            .collect();
        let soa = &target.soa;
        let soa = SoaContext {
            mname: soa.mname.fqdn(),
            rname: soa.rname.fqdn(),
            refresh: soa.refresh,
            retry: soa.retry,
            expire: soa.expire,
            minimum: soa.minimum,
        };
        let nameservers: Vec<String> = target.nameservers.iter().map(DnsName::fqdn).collect();
        let records: Vec<RecordContext<'_>> = records
            .iter()
            .map(|record| RecordContext {
                name: record.name.fqdn(),
                value: record.value.as_str(),
            })
            .collect();
        Self {
            zone: zone.to_string(),
            ttl,
            soa: Value::from(Serde(&soa)),
            nameservers: Value::from(Serde(&nameservers)),
            glue: Value::from(Serde(&glue)),
            records: Value::from(Serde(&records)),
        }
    }
}

/// Characters of names, numbers, IP addresses and base64url digests: nothing that means
/// anything in a zone file (quotes, `;`, `$`, `(`, whitespace, backslash).
fn is_printable(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
}

/// One line for a minijinja error, with the template line when known.
fn template_error(origin: &str, err: &minijinja::Error) -> ZoneError {
    let mut message = bare(&err.to_string(), crate::shown::MAX_EXCERPT);
    if let Some(line) = err.line() {
        message = format!("line {line}: {message}");
    }
    ZoneError::Template {
        origin: origin.to_owned(),
        message: format!("{message}; fix the template"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ZoneConfig, ZoneTarget};
    use crate::token::tests::{VALUE, value};

    fn record(name: &str, text: &str) -> TxtRecord {
        TxtRecord {
            name: DnsName::parse(name).expect("name"),
            value: value(text),
        }
    }

    fn file(config: &ZoneConfig) -> &FileTarget {
        match &config.target {
            ZoneTarget::File(file) => file,
            ZoneTarget::Update(_) => panic!("a file target"),
        }
    }

    fn data(config: &ZoneConfig, records: &[TxtRecord]) -> ZoneData {
        ZoneData::new(
            file(config),
            &config.zone,
            config.ttl,
            &records.iter().collect(),
        )
    }

    #[test]
    fn shipped_template_renders_every_record_on_its_own_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = crate::config::zone_tests::config(dir.path(), "");
        let template = ZoneTemplate::load(file(&config)).expect("template");
        let records = [
            record("a.org.acme.test.", VALUE),
            record("b.org.acme.test.", VALUE),
        ];
        let text = template
            .render(&data(&config, &records), 42)
            .expect("render");
        assert!(text.contains("@ IN SOA ns1.acme.test. hm.acme.test. ( 42 3600 600 864000 60 )\n"));
        assert!(text.contains("@ IN NS ns1.acme.test.\n"));
        assert!(text.contains("ns1.acme.test. IN A 127.0.0.1\n"));
        assert!(text.contains(&format!("a.org.acme.test. IN TXT \"{VALUE}\"\n")));
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn a_template_cannot_print_zone_file_syntax() {
        let dir = tempfile::tempdir().expect("tempdir");
        for hostile in [
            "x\\\"\\n$INCLUDE /etc/shadow",
            "a b",
            "x;y",
            "$TTL",
            "(",
            "",
        ] {
            std::fs::write(
                dir.path().join("t.j2"),
                format!("{{{{ \"{hostile}\" }}}}\n"),
            )
            .expect("write");
            let config = crate::config::zone_tests::config(dir.path(), "template: t.j2\n");
            let template = ZoneTemplate::load(file(&config)).expect("template");
            let err = template
                .render(&data(&config, &[]), 1)
                .expect_err(hostile)
                .to_string();
            assert!(err.contains("refusing to print"), "{err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn strict_undefined_fails_on_a_typo() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("t.j2"), "{{ zone }} {{ soa.seriall }}\n").expect("write");
        let config = crate::config::zone_tests::config(dir.path(), "template: t.j2\n");
        let template = ZoneTemplate::load(file(&config)).expect("template");
        let err = template
            .render(&data(&config, &[]), 1)
            .expect_err("undefined")
            .to_string();
        assert!(err.contains("t.j2") && err.contains("line 1"), "{err}");
    }
}
