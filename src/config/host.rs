//! The host config: what one host (or the bastion, for a legacy host) issues and where.
//!
//! Over 600 lines because it is one noun, the host config's top-level keys (`acme` with its
//! `eab` and `fallback`, `renew`, the directories, the resolver) and their checks; the blocks
//! that stand alone already live beside it (`certs`, `issuer`, `metrics`, `update`).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::certs::{CertSpec, RawCerts, check_certs};
use super::issuer::{RawIssuer, check_issuer, left_out};
use super::metrics::{Metrics, RawMetrics, check_metrics};
use super::update::{HostUpdate, RawUpdate, check_host_update};
use super::{ConfigDuration, ConfigError, OthersWrite, invalid, parse_dns_address, read_yaml};
use crate::cert::{CertDir, FileNames, KeyType, Layout};
use crate::dns::DnsName;
use crate::issuer::Issuer;
use crate::shown::{path as shown_path, shown};
use crate::token::{ChallengeRecords, record_name};

/// Let's Encrypt's production directory, the default CA.
const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
const DEFAULT_STATE_DIR: &str = "/var/lib/fleetcert";
const DEFAULT_CERT_DIR: &str = "/etc/fleetcert/certs";
const DEFAULT_GROUP: &str = "fleetcert";
const DEFAULT_RESOLVER: &str = "127.0.0.1:53";
/// Renew this many days before expiry unless the config says otherwise.
const DEFAULT_RENEW_BEFORE_DAYS: u32 = 30;
/// The most bytes `acme.ca_bundle` may hold: a bundle of every public root is under 300 KiB.
const MAX_CA_BUNDLE_BYTES: u64 = 1 << 20;
/// What `acme` and `signing_zone` hold when a test issuer left them out. Never used:
/// `request` and `finalize` take the test issuer's path before any ACME code
/// (commands/local.rs). The names are under `.invalid`, which never resolves (RFC 6761), so
/// a path that reached for a CA by mistake would fail to connect rather than register an
/// account anywhere.
const UNUSED_DIRECTORY: &str = "https://acme.invalid/directory";
const UNUSED_EMAIL: &str = "unused@acme.invalid";
const UNUSED_SIGNING_ZONE: &str = "signing-zone.invalid";

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping of the host config's keys (`acme`, `signing_zone`, `certs`, ...)"
)]
struct RawHost {
    /// Required for `issuer: acme`; a test issuer needs no CA (config/issuer.rs).
    acme: Option<RawAcme>,
    issuer: RawIssuer,
    host: Option<String>,
    signing_zone: Option<String>,
    #[serde(default)]
    challenge_records: ChallengeRecords,
    resolver: Option<String>,
    state_dir: Option<PathBuf>,
    cert_dir: Option<PathBuf>,
    #[serde(default)]
    layout: Layout,
    group: Option<String>,
    #[serde(default)]
    key: KeyType,
    #[serde(default)]
    renew: RawRenew,
    certs: RawCerts,
    metrics: Option<RawMetrics>,
    update: Option<RawUpdate>,
    /// Further CAs, asked only when the primary cannot issue and waiting costs something.
    #[serde(default)]
    fallback: Vec<RawAcme>,
    servers: Option<Vec<String>>,
    timeout: Option<ConfigDuration>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with `directory`, `email`, `agree_tos`, `ca_bundle`, `profile`, \
                 `eab`, `caa_identity`"
)]
struct RawAcme {
    directory: Option<String>,
    email: Option<String>,
    agree_tos: Option<bool>,
    ca_bundle: Option<PathBuf>,
    profile: Option<String>,
    eab: Option<RawEab>,
    /// The CA's CAA identity, when its directory names none (or another).
    caa_identity: Option<String>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with `kid` and `hmac_key` or `hmac_key_file`"
)]
struct RawEab {
    kid: String,
    hmac_key: Option<String>,
    /// A file (mode 0600) holding the base64url HMAC key, so the key stays out of the config.
    hmac_key_file: Option<PathBuf>,
}

impl fmt::Debug for RawEab {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawEab")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with `before_days`, `ari`, `fallback_within_days`"
)]
struct RawRenew {
    #[serde(default = "default_before_days")]
    before_days: u32,
    #[serde(default = "default_true")]
    ari: bool,
    /// Days before expiry from which a renewal is urgent enough for a fallback CA.
    fallback_within_days: Option<u32>,
}

impl Default for RawRenew {
    fn default() -> Self {
        Self {
            before_days: DEFAULT_RENEW_BEFORE_DAYS,
            ari: true,
            fallback_within_days: None,
        }
    }
}

fn default_before_days() -> u32 {
    DEFAULT_RENEW_BEFORE_DAYS
}

fn default_true() -> bool {
    true
}

/// A checked host config.
#[derive(Debug)]
pub(crate) struct HostConfig {
    /// The file it came from, for messages.
    pub(crate) path: PathBuf,
    /// The host name written into token documents.
    pub(crate) host: DnsName,
    pub(crate) acme: Acme,
    /// Who signs the certificates: the CA of `acme`, or a test issuer.
    pub(crate) issuer: Issuer,
    /// The delegated zone that holds challenge records.
    pub(crate) signing_zone: DnsName,
    pub(crate) challenge_records: ChallengeRecords,
    /// Recursive resolver for the delegation pre-check.
    pub(crate) resolver: SocketAddr,
    pub(crate) state_dir: PathBuf,
    pub(crate) cert_dir: PathBuf,
    pub(crate) layout: Layout,
    /// The group that may read private keys.
    pub(crate) gid: u32,
    pub(crate) key: KeyType,
    pub(crate) renew: Renew,
    /// Certificate name -> what to issue.
    pub(crate) certs: BTreeMap<String, CertSpec>,
    /// Where the textfile for node_exporter goes; `None`: no metrics.
    pub(crate) metrics: Option<Metrics>,
    /// How `renew` publishes this host's records (`update:`, `servers`, `timeout`).
    pub(crate) update: Option<HostUpdate>,
    /// Further CAs in the order they are tried after `acme` (docs/renewal.md).
    pub(crate) fallback: Vec<Acme>,
}

/// How to reach the CA and the account to use there.
#[derive(Debug)]
pub(crate) struct Acme {
    pub(crate) directory: String,
    pub(crate) email: String,
    /// Extra trust for the CA's HTTPS (a test CA's root); system roots otherwise.
    pub(crate) ca_bundle: Option<PathBuf>,
    pub(crate) profile: Option<String>,
    pub(crate) eab: Option<Eab>,
    /// The identity a CAA `issue` record names to allow this CA, when configured; else the
    /// directory's `meta.caaIdentities` count.
    pub(crate) caa_identity: Option<String>,
}

impl Acme {
    /// The `acme` of a test issuer's config that has none (see [`UNUSED_DIRECTORY`]).
    fn unused() -> Self {
        Self {
            directory: UNUSED_DIRECTORY.to_owned(),
            email: UNUSED_EMAIL.to_owned(),
            ca_bundle: None,
            profile: None,
            eab: None,
            caa_identity: None,
        }
    }
}

/// External account binding credentials, decoded once; the HMAC key never reaches a log.
pub(crate) struct Eab {
    pub(crate) kid: String,
    pub(crate) hmac_key: Vec<u8>,
}

impl fmt::Debug for Eab {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Eab")
            .field("kid", &self.kid)
            .field("hmac_key", &"<redacted>")
            .finish()
    }
}

/// When to renew.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Renew {
    pub(crate) before_days: u32,
    /// Ask the CA's ARI endpoint when it has one.
    pub(crate) ari: bool,
    /// A certificate with fewer days left than this may come from a fallback CA.
    pub(crate) fallback_within_days: u32,
}

impl HostConfig {
    /// Reads and checks the host config at `path`.
    pub(crate) fn load(path: &Path) -> Result<Self, ConfigError> {
        let raw: RawHost = read_yaml(path, super::ConfigKind::Host, OthersWrite::Warn)?;
        let issuer = check_issuer(path, raw.issuer)?;
        let acme = match raw.acme {
            Some(acme) => check_acme(path, "acme", acme)?,
            None => {
                let fix = "set `acme: {email: ..., agree_tos: true}`";
                left_out(path, &issuer, "acme", fix)?;
                Acme::unused()
            }
        };
        let name = |key: &str, text: &str| {
            DnsName::parse(text)
                .map_err(|rule| invalid(path, key, format!("{} {rule}", shown(text))))
        };
        let signing_zone = match &raw.signing_zone {
            Some(zone) => Some(name("signing_zone", zone)?),
            None => None,
        };
        let host = match raw.host {
            Some(host) => name("host", &host)?,
            None => system_host_name(path)?,
        };
        let resolver_text = raw.resolver.as_deref().unwrap_or(DEFAULT_RESOLVER);
        let resolver = parse_dns_address(resolver_text).ok_or_else(|| {
            invalid(
                path,
                "resolver",
                format!(
                    "{} is not an address: write ip or ip:port, like 127.0.0.1:53",
                    shown(resolver_text)
                ),
            )
        })?;
        let gid = lookup_group(path, raw.group.as_deref().unwrap_or(DEFAULT_GROUP))?;
        let certs = check_certs(path, raw.certs)?;
        if let Some(zone) = &signing_zone {
            check_record_names(path, &certs, zone, raw.challenge_records)?;
        }
        let signing_zone = match signing_zone {
            Some(zone) => zone,
            None => {
                let fix = "name the delegated zone of the challenge records, like acme.example.net";
                left_out(path, &issuer, "signing_zone", fix)?;
                name("signing_zone", UNUSED_SIGNING_ZONE)?
            }
        };
        check_layout(path, raw.layout, &certs)?;
        let renew = check_renew(path, &raw.renew)?;
        let fallback = check_fallback(path, raw.fallback, &acme)?;
        let update = check_host_update(
            path,
            raw.update,
            raw.servers,
            raw.timeout,
            raw.state_dir
                .as_deref()
                .unwrap_or(Path::new(DEFAULT_STATE_DIR)),
        )?;
        Ok(Self {
            path: path.to_owned(),
            host,
            acme,
            issuer,
            signing_zone,
            challenge_records: raw.challenge_records,
            resolver,
            state_dir: raw.state_dir.unwrap_or_else(|| DEFAULT_STATE_DIR.into()),
            cert_dir: raw.cert_dir.unwrap_or_else(|| DEFAULT_CERT_DIR.into()),
            layout: raw.layout,
            gid,
            key: raw.key,
            renew,
            certs,
            metrics: check_metrics(path, raw.metrics)?,
            update,
            fallback,
        })
    }
}

impl HostConfig {
    /// Every CA, the primary (`acme`) first, then `fallback` in order.
    pub(crate) fn cas(&self) -> impl Iterator<Item = &Acme> {
        std::iter::once(&self.acme).chain(&self.fallback)
    }

    /// Where certificate `cert`'s files go: their names, and its directory.
    pub(crate) fn files_of(&self, cert: &str, spec: &CertSpec) -> (FileNames, CertDir<'_>) {
        let first = spec.names.first().unwrap_or(&self.host);
        let names = self
            .layout
            .names(cert, first)
            .with_keystore(spec.pkcs12.is_some());
        let dir = CertDir {
            cert_dir: &self.cert_dir,
            name: names.dir.clone(),
            gid: self.gid,
        };
        (names, dir)
    }
}

/// Checks one CA's block: `acme`, or `fallback[N]` (`key` names it in messages).
fn check_acme(path: &Path, key: &str, raw: RawAcme) -> Result<Acme, ConfigError> {
    if raw.agree_tos != Some(true) {
        return Err(invalid(
            path,
            format!("{key}.agree_tos"),
            format!(
                "must be true: read the CA's terms of service, then set `{key}.agree_tos: true`"
            ),
        ));
    }
    let email = match raw.email {
        Some(email)
            if email.contains('@')
                && !email.chars().any(|c| c.is_whitespace() || c.is_control()) =>
        {
            email
        }
        Some(email) => {
            return Err(invalid(
                path,
                format!("{key}.email"),
                format!("{} is not an e-mail address", shown(&email)),
            ));
        }
        None => {
            return Err(invalid(
                path,
                format!("{key}.email"),
                "is missing: set the address the CA may write to about this account",
            ));
        }
    };
    let directory = raw.directory.unwrap_or_else(|| LETS_ENCRYPT.to_owned());
    if !directory.starts_with("https://") || directory.chars().any(char::is_control) {
        return Err(invalid(
            path,
            format!("{key}.directory"),
            format!(
                "{} must be an https:// URL of the CA's directory",
                shown(&directory)
            ),
        ));
    }
    if let Some(bundle) = &raw.ca_bundle {
        check_ca_bundle(path, key, bundle)?;
    }
    let eab = match raw.eab {
        Some(eab) => Some(check_eab(path, key, eab)?),
        None => None,
    };
    let caa_identity = match raw.caa_identity {
        Some(identity) => Some(check_caa_identity(path, key, &identity)?),
        None => None,
    };
    Ok(Acme {
        directory,
        email,
        ca_bundle: raw.ca_bundle,
        profile: raw.profile,
        eab,
        caa_identity,
    })
}

/// `fallback:`: each CA checked as `acme` is, none of them the primary or listed twice (one
/// account per host and CA, kept by directory URL).
fn check_fallback(
    path: &Path,
    raw: Vec<RawAcme>,
    primary: &Acme,
) -> Result<Vec<Acme>, ConfigError> {
    let mut cas: Vec<Acme> = Vec::with_capacity(raw.len());
    for (index, raw) in raw.into_iter().enumerate() {
        let key = format!("fallback[{index}]");
        let ca = check_acme(path, &key, raw)?;
        if ca.directory == primary.directory
            || cas.iter().any(|other| other.directory == ca.directory)
        {
            return Err(invalid(
                path,
                format!("{key}.directory"),
                format!(
                    "{} is already configured above: a fallback must be another CA",
                    shown(&ca.directory)
                ),
            ));
        }
        cas.push(ca);
    }
    Ok(cas)
}

/// `renew:`. `fallback_within_days` is a third of `before_days` (rounded up) unless set;
/// never more than `before_days`, which would make a certificate urgent before it is due.
fn check_renew(path: &Path, raw: &RawRenew) -> Result<Renew, ConfigError> {
    let before_days = raw.before_days;
    if before_days == 0 {
        return Err(invalid(path, "renew.before_days", "must be at least 1"));
    }
    let days = raw
        .fallback_within_days
        .unwrap_or_else(|| before_days.div_ceil(3));
    if days > before_days {
        return Err(invalid(
            path,
            "renew.fallback_within_days",
            format!(
                "is {days}, more than renew.before_days ({before_days}): set it to at most \
                 {before_days}, or 0 to use a fallback CA only without a usable certificate"
            ),
        ));
    }
    Ok(Renew {
        before_days,
        ari: raw.ari,
        fallback_within_days: days,
    })
}

/// A CAA identity is a domain name (RFC 8659 section 4.2), compared without case.
fn check_caa_identity(path: &Path, key: &str, identity: &str) -> Result<String, ConfigError> {
    DnsName::parse(identity)
        .map(|name| name.as_str().to_ascii_lowercase())
        .map_err(|rule| {
            invalid(
                path,
                format!("{key}.caa_identity"),
                format!(
                    "{} {rule}: write the domain the CA's CAA records name, like letsencrypt.org",
                    shown(identity)
                ),
            )
        })
}

/// Reads the bundle now: one that cannot be read would only fail later, mid-run.
fn check_ca_bundle(path: &Path, key: &str, bundle: &Path) -> Result<(), ConfigError> {
    let bytes = crate::store::read_bounded(bundle, MAX_CA_BUNDLE_BYTES).map_err(|err| {
        invalid(
            path,
            format!("{key}.ca_bundle"),
            format!("{err}; point it at a PEM file or remove the key"),
        )
    })?;
    if !bytes
        .windows(27)
        .any(|window| window == b"-----BEGIN CERTIFICATE-----")
    {
        return Err(invalid(
            path,
            format!("{key}.ca_bundle"),
            format!("{} holds no PEM certificate", shown_path(bundle)),
        ));
    }
    Ok(())
}

fn check_eab(path: &Path, key: &str, raw: RawEab) -> Result<Eab, ConfigError> {
    use base64::Engine as _;
    let (text, from) = match (raw.hmac_key, raw.hmac_key_file) {
        (Some(text), None) => (text, format!("{key}.eab.hmac_key")),
        (None, Some(file)) => {
            let from = format!("{key}.eab.hmac_key_file");
            let file = super::beside(path, file);
            let bytes = super::issuer::read_private(path, &from, &file)?;
            let text = String::from_utf8(bytes)
                .map_err(|_| invalid(path, &from, "is not text: put the base64url key in it"))?;
            (text.trim().to_owned(), from)
        }
        _ => {
            return Err(invalid(
                path,
                format!("{key}.eab"),
                "needs exactly one of `hmac_key` and `hmac_key_file` (a file of mode 0600)",
            ));
        }
    };
    let hmac_key = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|_| invalid(path, &from, "is not base64url, as the CA gives it"))?;
    Ok(Eab {
        kid: raw.kid,
        hmac_key,
    })
}

/// Every identifier's record must fit in the signing zone: `<name>.<zone>` may be longer than
/// a DNS name, and that is better said now than after an order was made.
fn check_record_names(
    path: &Path,
    certs: &BTreeMap<String, CertSpec>,
    zone: &DnsName,
    mode: ChallengeRecords,
) -> Result<(), ConfigError> {
    for (cert, spec) in certs {
        for name in &spec.names {
            record_name(name, zone, mode).map_err(|_| {
                invalid(
                    path,
                    format!("certs.{cert}"),
                    format!(
                        "has {name}, whose challenge record {}.{zone} would be longer than the \
                         253 characters of a DNS name: use a shorter signing zone or name",
                        name.base()
                    ),
                )
            })?;
        }
    }
    Ok(())
}

/// acme.sh's layout names a certificate's directory and files after its first name: two
/// certificates with the same first name would share (and fight over) one directory.
fn check_layout(
    path: &Path,
    layout: Layout,
    certs: &BTreeMap<String, CertSpec>,
) -> Result<(), ConfigError> {
    if layout != Layout::AcmeSh {
        return Ok(());
    }
    let mut seen: BTreeMap<&DnsName, &str> = BTreeMap::new();
    for (cert, spec) in certs {
        let Some(first) = spec.names.first() else {
            continue;
        };
        if let Some(other) = seen.insert(first, cert) {
            return Err(invalid(
                path,
                "layout",
                format!(
                    "is acme.sh, which names a certificate's directory after its first name, and \
                     certs.{other} and certs.{cert} both start with {first}: give one of them \
                     another first name, or use layout: fleetcert"
                ),
            ));
        }
        if first.as_str().len() > crate::cert::MAX_ACME_SH_NAME {
            return Err(invalid(
                path,
                format!("certs.{cert}"),
                format!(
                    "starts with {first}, too long for acme.sh's file name `{first}.key`: put \
                     a shorter name first"
                ),
            ));
        }
    }
    Ok(())
}

fn lookup_group(path: &Path, name: &str) -> Result<u32, ConfigError> {
    match nix::unistd::Group::from_name(name) {
        Ok(Some(group)) => Ok(group.gid.as_raw()),
        Ok(None) => Err(invalid(
            path,
            "group",
            format!(
                "{} does not exist: create it (groupadd) or name an existing group",
                shown(name)
            ),
        )),
        Err(err) => Err(invalid(
            path,
            "group",
            format!("{} cannot be looked up: {err}", shown(name)),
        )),
    }
}

fn system_host_name(path: &Path) -> Result<DnsName, ConfigError> {
    let name = nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .unwrap_or_default();
    DnsName::parse(&name).map_err(|_| {
        invalid(
            path,
            "host",
            "is not set and the system host name is unusable: set `host:` to this host's name",
        )
    })
}
