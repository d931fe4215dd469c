//! Configs as typed values serialized to YAML (docs/config.md, docs/zone-config.md): a test
//! starts from a default and says only what differs, and no test edits a config as text.
//!
//! What the builders do not type (a key a single test sets) goes in as a value that
//! serializes ([`HostConfig::set`]): still YAML by serde, never by `format!`. Configs that
//! are deliberately broken (the hostile-input tables of `config`, `security`, `newcomer`)
//! stay text: a builder cannot write them.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_yaml::{Mapping, Value};

use super::sandbox::Sandbox;

/// A value as YAML, for a key the builders do not type.
fn yaml(value: impl Serialize) -> Value {
    serde_yaml::to_value(value).expect("a value YAML can hold")
}

/// Top-level YAML lines (`key: rsa-2048\nrenew: {ari: false}\n`) as a mapping: what the
/// older `extra` arguments hand over.
fn lines(text: &str) -> Mapping {
    if text.trim().is_empty() {
        return Mapping::new();
    }
    serde_yaml::from_str(text).unwrap_or_else(|err| panic!("extra config lines {text:?}: {err}"))
}

/// Writes `config` as YAML to `path`.
fn write(config: &impl Serialize, path: &Path) {
    let text = serde_yaml::to_string(config).expect("a config serializes");
    std::fs::write(path, text).unwrap_or_else(|err| panic!("write {}: {err}", path.display()));
}

/// Rewrites the YAML config at `path` with `edit`, which changes its top-level mapping: for
/// a test that changes one key of a config written before.
pub(crate) fn edit(path: &Path, edit: impl FnOnce(&mut Mapping)) {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|err| panic!("read {}: {err}", path.display()));
    let mut config: Mapping = serde_yaml::from_str(&text)
        .unwrap_or_else(|err| panic!("{} is not a YAML mapping: {err}", path.display()));
    edit(&mut config);
    write(&config, path);
}

/// The `acme:` mapping of a host config.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Acme {
    pub(crate) directory: String,
    pub(crate) email: String,
    pub(crate) agree_tos: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) ca_bundle: Option<PathBuf>,
    /// `profile`, `fallback`, ...: what one test adds.
    #[serde(flatten)]
    pub(crate) more: Mapping,
}

impl Acme {
    /// A CA at `directory`, ops@example.test agreeing to its terms.
    pub(crate) fn new(directory: &str) -> Self {
        Self {
            directory: directory.to_owned(),
            email: "ops@example.test".to_owned(),
            agree_tos: true,
            ca_bundle: None,
            more: Mapping::new(),
        }
    }

    /// Adds `key: value` to the mapping.
    pub(crate) fn set(mut self, key: &str, value: impl Serialize) -> Self {
        self.more.insert(key.into(), yaml(value));
        self
    }
}

/// A host config (`fleetcert.yaml`).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct HostConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) acme: Option<Acme>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) signing_zone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) resolver: Option<String>,
    pub(crate) state_dir: PathBuf,
    pub(crate) cert_dir: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) group: Option<String>,
    /// `key`, `layout`, `renew`, `issuer`, `metrics`, `update`, ...: what a test adds.
    #[serde(flatten)]
    pub(crate) more: Mapping,
    /// Certificate name -> its names (a list) or its mapping (`names`, `pkcs12`, ...).
    pub(crate) certs: Mapping,
}

impl HostConfig {
    /// `host` against the CA `acme`, its state and certificates under `dir`, the signing zone
    /// `acme.test`, asking `resolver`; no certificate yet.
    pub(crate) fn new(acme: Acme, host: &str, resolver: &str, dir: &Path) -> Self {
        Self {
            acme: Some(acme),
            host: Some(host.to_owned()),
            signing_zone: Some("acme.test".to_owned()),
            resolver: Some(resolver.to_owned()),
            state_dir: dir.join("state"),
            cert_dir: dir.join("certs"),
            group: None,
            more: Mapping::new(),
            certs: Mapping::new(),
        }
    }

    /// `host1.example.test` whose CA and resolver are closed ports (a run that reaches either
    /// fails), its state and certificates under `dir`, keys for root's group: for what is
    /// refused before any contact.
    pub(crate) fn offline(dir: &Path) -> Self {
        let mut config = Self::new(
            Acme::new("https://127.0.0.1:9/dir"),
            "host1.example.test",
            "127.0.0.1:9",
            dir,
        );
        config.group = Some("root".to_owned());
        config
    }

    /// A host of a gate job: `issuer` signs (`self-signed`, `{local-ca: ...}`), no CA, no
    /// zone, no resolver.
    pub(crate) fn gate(issuer: impl Serialize, dir: &Path) -> Self {
        Self {
            acme: None,
            host: None,
            signing_zone: None,
            resolver: None,
            state_dir: dir.join("state"),
            cert_dir: dir.join("certs"),
            group: None,
            more: Mapping::new(),
            certs: Mapping::new(),
        }
        .set("issuer", issuer)
    }

    /// Sets the top-level `key` to `value`.
    pub(crate) fn set(mut self, key: &str, value: impl Serialize) -> Self {
        self.more.insert(key.into(), yaml(value));
        self
    }

    /// Adds `key: value` to the `acme:` mapping.
    pub(crate) fn acme_set(mut self, key: &str, value: impl Serialize) -> Self {
        let acme = self.acme.take().expect("a config with `acme:`");
        self.acme = Some(acme.set(key, value));
        self
    }

    /// Adds top-level YAML lines (`key: rsa-2048\n`), parsed.
    pub(crate) fn lines(self, text: &str) -> Self {
        self.merge(lines(text))
    }

    /// Sets each key of `keys` (a mapping, or null for none) at the top level.
    pub(crate) fn merge(mut self, keys: impl Serialize) -> Self {
        let keys = match yaml(keys) {
            Value::Null => Mapping::new(),
            Value::Mapping(keys) => keys,
            other => panic!("config keys must be a mapping, not {other:?}"),
        };
        for (key, value) in keys {
            match key.as_str() {
                Some("resolver") => self.resolver = value.as_str().map(str::to_owned),
                Some("host") => self.host = value.as_str().map(str::to_owned),
                Some("group") => self.group = value.as_str().map(str::to_owned),
                _ => {
                    self.more.insert(key, value);
                }
            }
        }
        self
    }

    /// A certificate `name` for `names`.
    pub(crate) fn cert(mut self, name: &str, names: &[&str]) -> Self {
        self.certs.insert(name.into(), yaml(names));
        self
    }

    /// Each of `certs`: (name, names).
    pub(crate) fn certs(self, certs: &[(&str, &[&str])]) -> Self {
        certs
            .iter()
            .fold(self, |config, (name, names)| config.cert(name, names))
    }

    /// The certificate `name` as `entry`: its names (a list) or its mapping.
    pub(crate) fn set_cert(mut self, name: &str, entry: impl Serialize) -> Self {
        self.certs.insert(name.into(), yaml(entry));
        self
    }

    /// A certificate `name` for `names` with more keys (`pkcs12`, `reload`, ...).
    pub(crate) fn cert_with(mut self, name: &str, names: &[&str], more: impl Serialize) -> Self {
        let mut entry = Mapping::new();
        entry.insert("names".into(), yaml(names));
        match yaml(more) {
            Value::Mapping(more) => entry.extend(more),
            other => panic!("a certificate's keys must be a mapping, not {other:?}"),
        }
        self.certs.insert(name.into(), Value::Mapping(entry));
        self
    }

    /// Writes the config as YAML to `path`.
    pub(crate) fn write(&self, path: &Path) {
        write(self, path);
    }
}

/// A zone config (`fleetcert publish --config`): the signing zone and how its records reach
/// the DNS primary, by zone file and reload or by dynamic update.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ZoneConfig {
    pub(crate) zone: String,
    /// `zone_file`, `soa`, `nameservers`, `reload`, `update`, `servers`, `timeout`, ...
    #[serde(flatten)]
    pub(crate) more: Mapping,
}

impl ZoneConfig {
    /// The signing zone `zone`, nothing else yet.
    pub(crate) fn new(zone: &str) -> Self {
        Self {
            zone: zone.to_owned(),
            more: Mapping::new(),
        }
    }

    /// The sandbox's signing zone `acme.test` by zone file: `zone_file` with its SOA and NS,
    /// reloaded by `reload`, both BIND servers waited for up to 30 s.
    pub(crate) fn zone_file(sb: &Sandbox, zone_file: &Path, reload: &[&str]) -> Self {
        Self::new("acme.test")
            .set("zone_file", zone_file)
            .set(
                "soa",
                serde_json::json!({"mname": "ns1.example.test.", "rname": "hostmaster.example.test."}),
            )
            .set("nameservers", ["ns1.example.test.", "ns2.example.test."])
            .set("reload", reload)
            .set("servers", [sb.primary(), sb.secondary()])
            .set("timeout", "30s")
    }

    /// [`zone_file`](Self::zone_file) with the sandbox's zone file, reloaded by `rndc`.
    pub(crate) fn rndc(sb: &Sandbox) -> Self {
        let rndc = sb.rndc();
        let rndc = rndc.to_str().expect("a UTF-8 path");
        Self::zone_file(sb, &sb.signing_zone_file(), &[rndc, "reload", "acme.test"])
    }

    /// The sandbox's signing zone by dynamic update to its primary with the TSIG key
    /// `key_name` (its secret in `secret_file`), both BIND servers waited for up to 30 s.
    pub(crate) fn update(sb: &Sandbox, key_name: &str, secret_file: &Path) -> Self {
        Self::new("acme.test")
            .set(
                "update",
                serde_json::json!({"server": sb.primary(), "key_name": key_name, "secret_file": secret_file}),
            )
            .set("servers", [sb.primary(), sb.secondary()])
            .set("timeout", "30s")
    }

    /// Sets `key` to `value`.
    pub(crate) fn set(mut self, key: &str, value: impl Serialize) -> Self {
        self.more.insert(key.into(), yaml(value));
        self
    }

    /// Adds top-level YAML lines, parsed (see [`HostConfig::lines`]).
    pub(crate) fn lines(mut self, text: &str) -> Self {
        self.more.extend(lines(text));
        self
    }

    /// Writes the config as YAML to `path`.
    pub(crate) fn write(&self, path: &Path) {
        write(self, path);
    }
}
