//! The zone config: where the signing zone lives, how it is reloaded and who serves it.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigDuration, ConfigError, invalid, parse_dns_address, read_yaml};
use crate::names::{ChallengeRecords, canonical_name};

const DEFAULT_TTL: u32 = 60;
const DEFAULT_RESOLVER: &str = "127.0.0.1:53";
/// How long `publish` waits for every server to serve the new serial.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a host's records survive publishes that do not mention it.
const DEFAULT_RECORD_LIFETIME: Duration = Duration::from_secs(2 * 3600);
/// How long a publish waits for another one holding the lock.
const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(120);
/// BIND's `max-records-per-type` default since 9.18.28: a zone with more records of one type
/// at one name is not loaded at all.
const DEFAULT_MAX_VALUES_PER_NAME: usize = 100;
/// One DNS message (64 KiB, over TCP) carries about 1,160 TXT values of 43 characters.
const MAX_VALUES_PER_NAME_LIMIT: usize = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawZone {
    zone: String,
    zone_file: PathBuf,
    template: Option<PathBuf>,
    ttl: Option<u32>,
    soa: RawSoa,
    nameservers: Vec<String>,
    glue: Option<BTreeMap<String, Vec<IpAddr>>>,
    reload: Vec<String>,
    check_zone: Option<bool>,
    servers: Option<Vec<String>>,
    resolver: Option<String>,
    timeout: Option<ConfigDuration>,
    lock_timeout: Option<ConfigDuration>,
    record_lifetime: Option<ConfigDuration>,
    #[serde(default)]
    challenge_records: ChallengeRecords,
    max_values_per_name: Option<usize>,
    allow: Option<BTreeMap<String, Vec<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSoa {
    mname: String,
    rname: String,
    #[serde(default = "Soa::default_refresh")]
    refresh: u32,
    #[serde(default = "Soa::default_retry")]
    retry: u32,
    #[serde(default = "Soa::default_expire")]
    expire: u32,
    #[serde(default = "Soa::default_minimum")]
    minimum: u32,
}

/// SOA fields other than the serial, which `publish` computes.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Soa {
    /// Fully qualified, with the trailing dot.
    pub(crate) mname: String,
    /// Fully qualified, with the trailing dot.
    pub(crate) rname: String,
    pub(crate) refresh: u32,
    pub(crate) retry: u32,
    pub(crate) expire: u32,
    pub(crate) minimum: u32,
}

impl Soa {
    fn default_refresh() -> u32 {
        3600
    }
    fn default_retry() -> u32 {
        600
    }
    fn default_expire() -> u32 {
        864_000
    }
    fn default_minimum() -> u32 {
        60
    }
}

/// A checked zone config.
#[derive(Debug)]
pub(crate) struct ZoneConfig {
    /// The signing zone, canonical, without the trailing dot.
    pub(crate) zone: String,
    /// Relative paths in the file are resolved against the config file's directory.
    pub(crate) zone_file: PathBuf,
    /// A template replacing the shipped one (resolved like `zone_file`).
    pub(crate) template: Option<PathBuf>,
    pub(crate) ttl: u32,
    pub(crate) soa: Soa,
    /// NS names, fully qualified with the trailing dot.
    pub(crate) nameservers: Vec<String>,
    /// Addresses of nameservers whose names lie inside the signing zone.
    pub(crate) glue: Vec<Glue>,
    /// The reload command, run without a shell.
    pub(crate) reload: Vec<String>,
    /// Run `named-checkzone` on the rendered zone when it is installed.
    pub(crate) check_zone: bool,
    /// Authoritative servers to verify; `None` means "find them from the NS records".
    pub(crate) servers: Option<Vec<SocketAddr>>,
    pub(crate) resolver: SocketAddr,
    pub(crate) timeout: Duration,
    pub(crate) lock_timeout: Duration,
    pub(crate) record_lifetime: Duration,
    pub(crate) challenge_records: ChallengeRecords,
    /// The most TXT values one name may hold (all of them in `shared` mode).
    pub(crate) max_values_per_name: usize,
    /// Host -> identifiers it may publish for; `None` allows any identifier.
    pub(crate) allow: Option<BTreeMap<String, Vec<String>>>,
}

impl ZoneConfig {
    /// Reads and checks the zone config at `path`.
    pub(crate) fn load(path: &Path) -> Result<Self, ConfigError> {
        let raw: RawZone = read_yaml(path)?;
        let zone = canonical_name(&raw.zone, false)
            .map_err(|err| invalid(path, "zone", format!("is wrong: {err}")))?;
        let fqdn = |key: &str, text: &str| -> Result<String, ConfigError> {
            canonical_name(text, false)
                .map(|name| format!("{name}."))
                .map_err(|err| invalid(path, key, format!("is wrong: {err}")))
        };
        let soa = Soa {
            mname: fqdn("soa.mname", &raw.soa.mname)?,
            rname: fqdn("soa.rname", &raw.soa.rname)?,
            refresh: raw.soa.refresh,
            retry: raw.soa.retry,
            expire: raw.soa.expire,
            minimum: raw.soa.minimum,
        };
        if raw.nameservers.is_empty() {
            return Err(invalid(
                path,
                "nameservers",
                "is empty: list the zone's NS names",
            ));
        }
        let nameservers = raw
            .nameservers
            .iter()
            .map(|ns| fqdn("nameservers", ns))
            .collect::<Result<Vec<_>, _>>()?;
        if raw.reload.first().is_none_or(|program| program.is_empty()) {
            return Err(invalid(
                path,
                "reload",
                "is empty: give the reload command as a list, like [rndc, reload, ZONE]",
            ));
        }
        let servers = match raw.servers {
            None => None,
            Some(list) if list.is_empty() => {
                return Err(invalid(
                    path,
                    "servers",
                    "is empty: list servers or remove the key",
                ));
            }
            Some(list) => Some(
                list.iter()
                    .map(|text| {
                        parse_dns_address(text).ok_or_else(|| {
                            invalid(path, "servers", format!("`{text}` is not ip or ip:port"))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let glue = match raw.glue {
            None => Vec::new(),
            Some(map) => check_glue(path, &zone, &nameservers, map)?,
        };
        // A nameserver inside the zone is found only through the zone's own address records:
        // without them BIND refuses to load the zone, so say so before anything is rendered.
        if let Some(ns) = nameservers
            .iter()
            .find(|ns| crate::names::is_in_zone(ns, &zone) && !glue.iter().any(|g| g.name == **ns))
        {
            return Err(invalid(
                path,
                "nameservers",
                format!(
                    "has {ns}, which lies inside {zone} and so needs an address in the zone: \
                     add `glue: {{{ns}: [ADDRESS]}}`, or use a nameserver outside the zone"
                ),
            ));
        }
        let resolver_text = raw.resolver.as_deref().unwrap_or(DEFAULT_RESOLVER);
        let resolver = parse_dns_address(resolver_text).ok_or_else(|| {
            invalid(
                path,
                "resolver",
                format!("`{resolver_text}` is not ip or ip:port"),
            )
        })?;
        let allow = match raw.allow {
            None => None,
            Some(map) => Some(check_allow(path, map)?),
        };
        let max_values_per_name = raw
            .max_values_per_name
            .unwrap_or(DEFAULT_MAX_VALUES_PER_NAME);
        if !(1..=MAX_VALUES_PER_NAME_LIMIT).contains(&max_values_per_name) {
            return Err(invalid(
                path,
                "max_values_per_name",
                format!(
                    "must be between 1 and {MAX_VALUES_PER_NAME_LIMIT}: one DNS answer \
                     carries no more"
                ),
            ));
        }
        let ttl = raw.ttl.unwrap_or(DEFAULT_TTL);
        if ttl == 0 {
            return Err(invalid(path, "ttl", "must be at least 1 second"));
        }
        Ok(Self {
            zone,
            zone_file: beside(path, raw.zone_file),
            template: raw.template.map(|template| beside(path, template)),
            ttl,
            soa,
            nameservers,
            glue,
            reload: raw.reload,
            check_zone: raw.check_zone.unwrap_or(true),
            servers,
            resolver,
            timeout: raw.timeout.map_or(DEFAULT_TIMEOUT, |d| d.0),
            lock_timeout: raw.lock_timeout.map_or(DEFAULT_LOCK_TIMEOUT, |d| d.0),
            record_lifetime: raw.record_lifetime.map_or(DEFAULT_RECORD_LIFETIME, |d| d.0),
            challenge_records: raw.challenge_records,
            max_values_per_name,
            allow,
        })
    }
}

/// `file` as written in the config at `config`: a relative path means relative to the config
/// file, not to wherever `publish` happens to be started (Ansible, cron and a shell differ).
fn beside(config: &Path, file: PathBuf) -> PathBuf {
    match config.parent() {
        Some(dir) if file.is_relative() => dir.join(file),
        _ => file,
    }
}

/// An address record for a nameserver inside the signing zone, which the zone must carry.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Glue {
    /// Fully qualified, with the trailing dot.
    pub(crate) name: String,
    pub(crate) address: IpAddr,
}

fn check_glue(
    path: &Path,
    zone: &str,
    nameservers: &[String],
    map: BTreeMap<String, Vec<IpAddr>>,
) -> Result<Vec<Glue>, ConfigError> {
    let mut glue = Vec::new();
    for (name, addresses) in map {
        let key = format!("glue.{name}");
        let canonical = canonical_name(&name, false)
            .map_err(|err| invalid(path, &key, format!("is not a host name: {err}")))?;
        if !crate::names::is_in_zone(&canonical, zone) {
            return Err(invalid(
                path,
                &key,
                format!("lies outside {zone}: only nameservers inside the zone need glue"),
            ));
        }
        // Glue is for the zone's own nameservers; an address for any other name is a typo
        // (or a record that has no place in a signing zone).
        if !nameservers.iter().any(|ns| *ns == format!("{canonical}.")) {
            return Err(invalid(
                path,
                &key,
                "is not one of `nameservers`: glue gives their addresses only",
            ));
        }
        if addresses.is_empty() {
            return Err(invalid(path, &key, "is empty: give at least one address"));
        }
        glue.extend(addresses.into_iter().map(|address| Glue {
            name: format!("{canonical}."),
            address,
        }));
    }
    Ok(glue)
}

fn check_allow(
    path: &Path,
    map: BTreeMap<String, Vec<String>>,
) -> Result<BTreeMap<String, Vec<String>>, ConfigError> {
    let mut checked = BTreeMap::new();
    for (host, identifiers) in map {
        let key = format!("allow.{host}");
        let host = canonical_name(&host, false)
            .map_err(|err| invalid(path, &key, format!("is not a host name: {err}")))?;
        let identifiers = identifiers
            .iter()
            .map(|id| canonical_name(id, true))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| invalid(path, &key, format!("has a bad name: {err}")))?;
        checked.insert(host, identifiers);
    }
    Ok(checked)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(dir: &Path, nameservers: &str, glue: &str) -> Result<ZoneConfig, ConfigError> {
        let path = dir.join("zone.yaml");
        let text = format!(
            "zone: acme.test\nzone_file: zone.db\nsoa: {{mname: ns1.acme.test., rname: hm.acme.test.}}\n\
             nameservers: {nameservers}\n{glue}reload: ['true']\n"
        );
        std::fs::write(&path, text).expect("write config");
        ZoneConfig::load(&path)
    }

    #[test]
    fn nameservers_inside_the_zone_need_glue() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = load(dir.path(), "[ns1.acme.test., ns2.example.net.]", "")
            .expect_err("no glue")
            .to_string();
        assert!(
            err.contains("`nameservers`") && err.contains("ns1.acme.test.") && err.contains("glue"),
            "{err}"
        );
        let config = load(
            dir.path(),
            "[ns1.acme.test., ns2.example.net.]",
            "glue: {NS1.acme.test: [192.0.2.1, '2001:db8::1']}\n",
        )
        .expect("glued");
        assert_eq!(config.glue.len(), 2);
        assert_eq!(config.glue[0].name, "ns1.acme.test.");
        load(dir.path(), "[ns1.example.net.]", "").expect("outside the zone: no glue needed");
    }

    #[test]
    fn relative_paths_are_relative_to_the_config_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = load(dir.path(), "[ns1.example.net.]", "template: t.j2\n").expect("config");
        assert_eq!(config.zone_file, dir.path().join("zone.db"));
        assert_eq!(config.template, Some(dir.path().join("t.j2")));
    }

    #[test]
    fn glue_is_only_for_nameservers_inside_the_zone() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (glue, needle) in [
            (
                "glue: {www.acme.test.: [192.0.2.1]}\n",
                "not one of `nameservers`",
            ),
            ("glue: {ns1.example.net.: [192.0.2.1]}\n", "lies outside"),
            ("glue: {ns1.acme.test.: []}\n", "is empty"),
        ] {
            let err = load(dir.path(), "[ns1.acme.test., ns1.example.net.]", glue)
                .expect_err(glue)
                .to_string();
            assert!(err.contains(needle), "{glue}: {err}");
        }
    }

    #[test]
    fn max_values_per_name_defaults_to_binds_limit_and_stays_within_one_answer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = load(dir.path(), "[ns1.example.net.]", "").expect("config");
        assert_eq!(config.max_values_per_name, 100);
        let config = load(
            dir.path(),
            "[ns1.example.net.]",
            "max_values_per_name: 1000\n",
        )
        .expect("config");
        assert_eq!(config.max_values_per_name, 1000);
        for bad in ["0", "1001"] {
            let err = load(
                dir.path(),
                "[ns1.example.net.]",
                &format!("max_values_per_name: {bad}\n"),
            )
            .expect_err(bad)
            .to_string();
            assert!(
                err.contains("`max_values_per_name`") && err.contains("1000"),
                "{err}"
            );
        }
    }
}
