//! The zone config: which signing zone, how it is changed, and who serves it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::host::HostConfig;
use super::metrics::{Metrics, RawMetrics, check_metrics};
use super::servers::{DEFAULT_TIMEOUT, check_servers};
use super::unique::UniqueMap;
use super::update::{self, RawUpdate, UpdateTarget};
use super::{
    ConfigDuration, ConfigError, OthersWrite, beside, invalid, parse_dns_address, read_yaml,
};
use crate::dns::DnsName;
use crate::shown::shown;
use crate::token::{ChallengeRecords, Policy};

pub(super) const DEFAULT_TTL: u32 = 60;
const DEFAULT_RESOLVER: &str = "127.0.0.1:53";
/// How long a host's records survive publishes that do not mention it.
pub(super) const DEFAULT_RECORD_LIFETIME: Duration = Duration::from_secs(2 * 3600);
/// How long a publish waits for another one holding the lock.
pub(super) const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(120);
/// BIND's `max-records-per-type` default since 9.18.28: a zone with more records of one type
/// at one name is not loaded at all.
pub(super) const DEFAULT_MAX_VALUES_PER_NAME: usize = 100;
/// One DNS message (64 KiB, over TCP) carries about 1,160 TXT values of 43 characters.
const MAX_VALUES_PER_NAME_LIMIT: usize = 1000;

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping of the zone config's keys (`zone`, `zone_file` or `update`, ...)"
)]
struct RawZone {
    zone: String,
    zone_file: Option<PathBuf>,
    template: Option<PathBuf>,
    ttl: Option<u32>,
    soa: Option<RawSoa>,
    nameservers: Option<Vec<String>>,
    glue: Option<UniqueMap<Vec<IpAddr>>>,
    reload: Option<Vec<String>>,
    check_zone: Option<bool>,
    servers: Option<Vec<String>>,
    resolver: Option<String>,
    timeout: Option<ConfigDuration>,
    lock_timeout: Option<ConfigDuration>,
    record_lifetime: Option<ConfigDuration>,
    #[serde(default)]
    challenge_records: ChallengeRecords,
    max_values_per_name: Option<usize>,
    allow: Option<UniqueMap<Vec<String>>>,
    metrics: Option<RawMetrics>,
    update: Option<RawUpdate>,
    state_dir: Option<PathBuf>,
}

impl RawZone {
    /// The file publisher's keys that this config gives (`update:` replaces them all).
    fn file_keys(&self) -> Vec<&'static str> {
        [
            ("zone_file", self.zone_file.is_some()),
            ("template", self.template.is_some()),
            ("soa", self.soa.is_some()),
            ("nameservers", self.nameservers.is_some()),
            ("glue", self.glue.is_some()),
            ("reload", self.reload.is_some()),
            ("check_zone", self.check_zone.is_some()),
        ]
        .into_iter()
        .filter_map(|(key, given)| given.then_some(key))
        .collect()
    }
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with `mname`, `rname`, `refresh`, `retry`, `expire`, `minimum`"
)]
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
#[derive(Debug, Clone)]
pub(crate) struct Soa {
    pub(crate) mname: DnsName,
    pub(crate) rname: DnsName,
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
    /// The signing zone.
    pub(crate) zone: DnsName,
    /// How the zone is changed.
    pub(crate) target: ZoneTarget,
    /// TTL of the records published.
    pub(crate) ttl: u32,
    /// Authoritative servers to verify; `None` means "find them from the NS records".
    pub(crate) servers: Option<Vec<SocketAddr>>,
    pub(crate) resolver: SocketAddr,
    pub(crate) timeout: Duration,
    pub(crate) lock_timeout: Duration,
    pub(crate) record_lifetime: Duration,
    /// The most TXT values one name may hold (all of them in `shared` mode).
    pub(crate) max_values_per_name: usize,
    /// What is accepted from hosts.
    pub(crate) policy: Policy,
    /// Where the textfile for node_exporter goes; `None`: no metrics.
    pub(crate) metrics: Option<Metrics>,
}

/// How `publish` changes the zone.
#[derive(Debug)]
pub(crate) enum ZoneTarget {
    /// Render the zone file, replace it, run the reload command.
    File(FileTarget),
    /// Send DNS UPDATE messages signed with TSIG to the primary (RFC 2136).
    Update(UpdateTarget),
}

/// The zone file and how the server is told about it.
#[derive(Debug)]
pub(crate) struct FileTarget {
    /// Relative paths in the file are resolved against the config file's directory.
    pub(crate) zone_file: PathBuf,
    /// A template replacing the shipped one (resolved like `zone_file`).
    pub(crate) template: Option<PathBuf>,
    pub(crate) soa: Soa,
    pub(crate) nameservers: Vec<DnsName>,
    /// Addresses of nameservers whose names lie inside the signing zone.
    pub(crate) glue: Vec<Glue>,
    /// The reload command, run without a shell.
    pub(crate) reload: Vec<String>,
    /// Run `named-checkzone` on the rendered zone when it is installed.
    pub(crate) check_zone: bool,
}

/// An address record for a nameserver inside the signing zone, which the zone must carry.
#[derive(Debug, Clone)]
pub(crate) struct Glue {
    pub(crate) name: DnsName,
    pub(crate) address: IpAddr,
}

impl ZoneConfig {
    /// Reads and checks the zone config at `path`.
    pub(crate) fn load(path: &Path) -> Result<Self, ConfigError> {
        let mut raw: RawZone = read_yaml(path, super::ConfigKind::Zone, OthersWrite::Refuse)?;
        let zone = DnsName::parse(&raw.zone)
            .map_err(|rule| invalid(path, "zone", format!("{} {rule}", shown(&raw.zone))))?;
        let allow = match raw.allow.take() {
            None => None,
            Some(map) => Some(check_allow(path, raw.challenge_records, map)?),
        };
        let servers = check_servers(path, raw.servers.take())?;
        let resolver_text = raw.resolver.as_deref().unwrap_or(DEFAULT_RESOLVER);
        let resolver = parse_dns_address(resolver_text).ok_or_else(|| {
            invalid(
                path,
                "resolver",
                format!("{} is not ip or ip:port", shown(resolver_text)),
            )
        })?;
        let max_values_per_name = raw
            .max_values_per_name
            .unwrap_or(DEFAULT_MAX_VALUES_PER_NAME);
        if !(1..=MAX_VALUES_PER_NAME_LIMIT).contains(&max_values_per_name) {
            return Err(invalid(
                path,
                "max_values_per_name",
                format!(
                    "must be between 1 and {MAX_VALUES_PER_NAME_LIMIT}: one DNS answer carries \
                     no more"
                ),
            ));
        }
        let ttl = raw.ttl.unwrap_or(DEFAULT_TTL);
        if ttl == 0 {
            return Err(invalid(path, "ttl", "must be at least 1 second"));
        }
        let policy = Policy {
            zone: zone.clone(),
            records: raw.challenge_records,
            allow,
        };
        let timeout = raw.timeout.map_or(DEFAULT_TIMEOUT, |d| d.0);
        let lock_timeout = raw.lock_timeout.map_or(DEFAULT_LOCK_TIMEOUT, |d| d.0);
        let record_lifetime = raw.record_lifetime.map_or(DEFAULT_RECORD_LIFETIME, |d| d.0);
        let metrics = check_metrics(path, raw.metrics.take())?;
        update::refuse_mixed(
            path,
            raw.update.is_some(),
            &raw.file_keys(),
            raw.state_dir.is_some(),
        )?;
        let target = match raw.update.take() {
            Some(raw_update) => {
                let state_dir = raw.state_dir.take().map_or_else(
                    || update::DEFAULT_PUBLISH_STATE_DIR.into(),
                    |dir| beside(path, dir),
                );
                ZoneTarget::Update(update::check_update(path, raw_update, state_dir)?)
            }
            None => ZoneTarget::File(check_file_target(path, &zone, raw)?),
        };
        Ok(Self {
            policy,
            zone,
            target,
            ttl,
            servers,
            resolver,
            timeout,
            lock_timeout,
            record_lifetime,
            max_values_per_name,
            metrics,
        })
    }
}

/// The keys of a zone published as a file (`raw` has given up the others already).
fn check_file_target(
    path: &Path,
    zone: &DnsName,
    keys: RawZone,
) -> Result<FileTarget, ConfigError> {
    fn required<T>(path: &Path, value: Option<T>, key: &str) -> Result<T, ConfigError> {
        value.ok_or_else(|| {
            invalid(
                path,
                key,
                "is missing: a zone published as a file needs zone_file, soa, nameservers and \
                 reload",
            )
        })
    }
    let zone_file = required(path, keys.zone_file, "zone_file")?;
    let raw_soa = required(path, keys.soa, "soa")?;
    let raw_nameservers = required(path, keys.nameservers, "nameservers")?;
    let reload = required(path, keys.reload, "reload")?;
    let name = |key: &str, text: &str| {
        DnsName::parse(text).map_err(|rule| invalid(path, key, format!("{} {rule}", shown(text))))
    };
    let soa = Soa {
        mname: name("soa.mname", &raw_soa.mname)?,
        rname: name("soa.rname", &raw_soa.rname)?,
        refresh: raw_soa.refresh,
        retry: raw_soa.retry,
        expire: raw_soa.expire,
        minimum: raw_soa.minimum,
    };
    if raw_nameservers.is_empty() {
        return Err(invalid(
            path,
            "nameservers",
            "is empty: list the zone's NS names",
        ));
    }
    let nameservers = raw_nameservers
        .iter()
        .map(|ns| name("nameservers", ns))
        .collect::<Result<Vec<_>, _>>()?;
    if reload.first().is_none_or(String::is_empty) {
        return Err(invalid(
            path,
            "reload",
            "is empty: give the reload command as a list, like [rndc, reload, ZONE]",
        ));
    }
    let glue = match keys.glue {
        None => Vec::new(),
        Some(map) => check_glue(path, zone, &nameservers, map)?,
    };
    // A nameserver inside the zone is found only through the zone's own address records:
    // without them BIND refuses to load the zone, so say so before anything is rendered.
    if let Some(ns) = nameservers
        .iter()
        .find(|ns| ns.is_in(zone) && !glue.iter().any(|g| g.name == **ns))
    {
        return Err(invalid(
            path,
            "nameservers",
            format!(
                "has {ns}, which lies inside {zone} and so needs an address in the zone: add \
                 `glue: {{{ns}: [ADDRESS]}}`, or use a nameserver outside the zone"
            ),
        ));
    }
    Ok(FileTarget {
        zone_file: beside(path, zone_file),
        template: keys.template.map(|template| beside(path, template)),
        soa,
        nameservers,
        glue,
        reload,
        check_zone: keys.check_zone.unwrap_or(true),
    })
}

fn check_glue(
    path: &Path,
    zone: &DnsName,
    nameservers: &[DnsName],
    map: UniqueMap<Vec<IpAddr>>,
) -> Result<Vec<Glue>, ConfigError> {
    let mut glue = Vec::new();
    for (name, addresses) in map.0 {
        let key = format!("glue.{name}");
        let canonical = DnsName::parse(&name)
            .map_err(|rule| invalid(path, &key, format!("is not a host name: it {rule}")))?;
        if !canonical.is_in(zone) {
            return Err(invalid(
                path,
                &key,
                format!("lies outside {zone}: only nameservers inside the zone need glue"),
            ));
        }
        // Glue is for the zone's own nameservers; an address for any other name is a typo
        // (or a record that has no place in a signing zone).
        if !nameservers.contains(&canonical) {
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
            name: canonical.clone(),
            address,
        }));
    }
    Ok(glue)
}

fn check_allow(
    path: &Path,
    records: ChallengeRecords,
    map: UniqueMap<Vec<String>>,
) -> Result<BTreeMap<DnsName, BTreeSet<DnsName>>, ConfigError> {
    // In shared mode every value sits at the apex, where the CA's lookup of any name finds
    // it: a host's value for its own name also validates every other name, so no zone can
    // keep a host to its names there.
    if records == ChallengeRecords::Shared {
        return Err(invalid(
            path,
            "allow",
            "cannot be enforced with challenge_records: shared, where every value at the apex \
             validates every name: use challenge_records: per-name, or remove `allow`",
        ));
    }
    let mut checked = BTreeMap::new();
    for (host, identifiers) in map.0 {
        let key = format!("allow.{host}");
        let canonical = DnsName::parse(&host)
            .map_err(|rule| invalid(path, &key, format!("is not a host name: it {rule}")))?;
        let identifiers = identifiers
            .iter()
            .map(|id| {
                DnsName::parse_identifier(id)
                    .map_err(|rule| invalid(path, &key, format!("has {} that {rule}", shown(id))))
            })
            .collect::<Result<BTreeSet<_>, _>>()?;
        if checked.insert(canonical, identifiers).is_some() {
            return Err(invalid(
                path,
                &key,
                "names a host listed already (in another spelling)",
            ));
        }
    }
    Ok(checked)
}

impl ZoneConfig {
    /// The zone config `renew` publishes this host's records with, when it has `update:`.
    /// The host's records are all there is in its ledger, so no allow-list: the host's own
    /// documents are validated against the zone, and the server's policy limits its key.
    pub(crate) fn for_host(host: &HostConfig) -> Option<Self> {
        let update = host.update.as_ref()?;
        Some(Self {
            zone: host.signing_zone.clone(),
            target: ZoneTarget::Update(update.target.clone()),
            ttl: DEFAULT_TTL,
            servers: update.servers.clone(),
            resolver: host.resolver,
            timeout: update.timeout,
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            record_lifetime: DEFAULT_RECORD_LIFETIME,
            max_values_per_name: DEFAULT_MAX_VALUES_PER_NAME,
            policy: Policy {
                zone: host.signing_zone.clone(),
                records: host.challenge_records,
                allow: None,
            },
            // renew writes the host's metrics (commands/record.rs), not a zone's.
            metrics: None,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A zone config for unit tests, written into `dir` with `extra` YAML lines.
    pub(crate) fn config(dir: &Path, extra: &str) -> ZoneConfig {
        load_text(
            dir,
            "[ns1.acme.test.]",
            "glue: {ns1.acme.test.: [127.0.0.1]}\n",
            extra,
        )
        .expect("config")
    }

    fn load_text(
        dir: &Path,
        nameservers: &str,
        glue: &str,
        extra: &str,
    ) -> Result<ZoneConfig, ConfigError> {
        let path = dir.join("zone.yaml");
        let text = format!(
            "zone: acme.test\nzone_file: zone.db\nsoa: {{mname: ns1.acme.test., rname: hm.acme.test.}}\n\
             nameservers: {nameservers}\n{glue}reload: ['true']\n{extra}"
        );
        std::fs::write(&path, text).expect("write config");
        ZoneConfig::load(&path)
    }

    fn file(config: &ZoneConfig) -> &FileTarget {
        match &config.target {
            ZoneTarget::File(file) => file,
            ZoneTarget::Update(_) => panic!("a file target"),
        }
    }

    #[test]
    fn nameservers_inside_the_zone_need_glue() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = load_text(dir.path(), "[ns1.acme.test., ns2.example.net.]", "", "")
            .expect_err("no glue")
            .to_string();
        assert!(
            err.contains("`nameservers`") && err.contains("ns1.acme.test") && err.contains("glue"),
            "{err}"
        );
        let config = load_text(
            dir.path(),
            "[ns1.acme.test., ns2.example.net.]",
            "glue: {NS1.acme.test: [192.0.2.1, '2001:db8::1']}\n",
            "",
        )
        .expect("glued");
        assert_eq!(file(&config).glue.len(), 2);
        assert_eq!(file(&config).glue[0].name.as_str(), "ns1.acme.test");
        load_text(dir.path(), "[ns1.example.net.]", "", "")
            .expect("outside the zone: no glue needed");
    }

    #[test]
    fn relative_paths_are_relative_to_the_config_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config =
            load_text(dir.path(), "[ns1.example.net.]", "template: t.j2\n", "").expect("config");
        assert_eq!(file(&config).zone_file, dir.path().join("zone.db"));
        assert_eq!(file(&config).template, Some(dir.path().join("t.j2")));
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
            (
                "glue: {ns1.acme.test.: [192.0.2.1], ns1.acme.test.: [192.0.2.2]}\n",
                "given twice",
            ),
        ] {
            let err = load_text(dir.path(), "[ns1.acme.test., ns1.example.net.]", glue, "")
                .expect_err(glue)
                .to_string();
            assert!(err.contains(needle), "{glue}: {err}");
        }
    }

    #[test]
    fn max_values_per_name_defaults_to_binds_limit_and_stays_within_one_answer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = load_text(dir.path(), "[ns1.example.net.]", "", "").expect("config");
        assert_eq!(config.max_values_per_name, 100);
        for bad in ["0", "1001"] {
            let err = load_text(
                dir.path(),
                "[ns1.example.net.]",
                "",
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

    #[test]
    fn an_allow_list_is_refused_in_shared_mode_and_duplicates_anywhere() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = load_text(
            dir.path(),
            "[ns1.example.net.]",
            "",
            "challenge_records: shared\nallow: {a.org: [a.org]}\n",
        )
        .expect_err("shared + allow")
        .to_string();
        assert!(err.contains("`allow`") && err.contains("per-name"), "{err}");
        let err = load_text(
            dir.path(),
            "[ns1.example.net.]",
            "",
            "allow: {a.org: [a.org], A.org.: [b.org]}\n",
        )
        .expect_err("same host twice")
        .to_string();
        assert!(err.contains("listed already"), "{err}");
    }
}
