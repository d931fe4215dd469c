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

use super::{TxtRecord, ZoneError, shown};
use crate::config::ZoneConfig;

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
struct GlueContext<'a> {
    name: &'a str,
    #[serde(rename = "type")]
    rtype: &'static str,
    address: String,
}

impl ZoneTemplate {
    /// Loads `template:` (already resolved against the config file) or the shipped template,
    /// and compiles it.
    pub(crate) fn load(config: &ZoneConfig) -> Result<Self, ZoneError> {
        match &config.template {
            None => Self::compile(SHIPPED_TEMPLATE.to_owned(), SHIPPED_NAME.to_owned()),
            Some(path) => {
                let origin = path.display().to_string();
                let source = std::fs::read_to_string(path).map_err(|err| ZoneError::Template {
                    origin: origin.clone(),
                    message: format!("cannot be read: {err}; fix `template` in the zone config"),
                })?;
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
    /// The template's view of `config` and `records`.
    pub(crate) fn new(config: &ZoneConfig, records: &BTreeSet<&TxtRecord>) -> Self {
        let glue: Vec<GlueContext<'_>> = config
            .glue
            .iter()
            .map(|glue| GlueContext {
                name: &glue.name,
                rtype: match glue.address {
                    IpAddr::V4(_) => "A",
                    IpAddr::V6(_) => "AAAA",
                },
                address: glue.address.to_string(),
            })
            .collect();
        Self {
            zone: config.zone.clone(),
            ttl: config.ttl,
            soa: Value::from(Serde(&config.soa)),
            nameservers: Value::from(Serde(&config.nameservers)),
            glue: Value::from(Serde(&glue)),
            records: Value::from(Serde(records)),
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
    let mut message = err.to_string().replace('\n', " ");
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
    use crate::zone::input::tests::{VALUE, config};

    fn record(name: &str, value: &str) -> TxtRecord {
        TxtRecord {
            name: name.to_owned(),
            value: value.to_owned(),
        }
    }

    #[test]
    fn shipped_template_renders_every_record_on_its_own_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config(dir.path(), "");
        let template = ZoneTemplate::load(&config).expect("template");
        let records = [
            record("a.org.acme.test.", VALUE),
            record("b.org.acme.test.", VALUE),
        ];
        let data = ZoneData::new(&config, &records.iter().collect());
        let text = template.render(&data, 42).expect("render");
        assert!(text.contains("@ IN SOA ns1.acme.test. hm.acme.test. ( 42 3600 600 864000 60 )\n"));
        assert!(text.contains("@ IN NS ns1.acme.test.\n"));
        assert!(text.contains("ns1.acme.test. IN A 127.0.0.1\n"));
        assert!(text.contains(&format!("a.org.acme.test. IN TXT \"{VALUE}\"\n")));
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn hostile_values_are_refused_even_past_validation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config(dir.path(), "");
        let template = ZoneTemplate::load(&config).expect("template");
        for hostile in [
            "x\"\n$INCLUDE /etc/shadow",
            "a b",
            "x;y",
            "$TTL",
            "a\u{0}b",
            "(",
            "",
        ] {
            let records = [record("a.org.acme.test.", hostile)];
            let data = ZoneData::new(&config, &records.iter().collect());
            let err = template.render(&data, 1).expect_err(hostile).to_string();
            assert!(err.contains("refusing to print"), "{err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn strict_undefined_fails_on_a_typo() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("t.j2"), "{{ zone }} {{ soa.seriall }}\n").expect("write");
        let config = config(dir.path(), "template: t.j2\n");
        let template = ZoneTemplate::load(&config).expect("template");
        let data = ZoneData::new(&config, &BTreeSet::new());
        let err = template
            .render(&data, 1)
            .expect_err("undefined")
            .to_string();
        assert!(err.contains("t.j2") && err.contains("line 1"), "{err}");
    }
}
