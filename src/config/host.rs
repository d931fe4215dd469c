//! The host config: what one host (or the bastion, for a legacy host) issues and where.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{ConfigError, invalid, parse_dns_address, read_yaml};
use crate::cert::KeyType;
use crate::names::{ChallengeRecords, canonical_name};
use crate::store::Layout;

/// Let's Encrypt's production directory, the default CA.
pub(crate) const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
const DEFAULT_STATE_DIR: &str = "/var/lib/fleetcert";
const DEFAULT_CERT_DIR: &str = "/etc/fleetcert/certs";
const DEFAULT_GROUP: &str = "fleetcert";
const DEFAULT_RESOLVER: &str = "127.0.0.1:53";
/// Renew this many days before expiry unless the config says otherwise.
const DEFAULT_RENEW_BEFORE_DAYS: u32 = 30;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    acme: RawAcme,
    host: Option<String>,
    signing_zone: String,
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
    certs: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAcme {
    directory: Option<String>,
    email: Option<String>,
    agree_tos: Option<bool>,
    ca_bundle: Option<PathBuf>,
    profile: Option<String>,
    eab: Option<Eab>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRenew {
    #[serde(default = "default_before_days")]
    before_days: u32,
    #[serde(default = "default_true")]
    ari: bool,
}

impl Default for RawRenew {
    fn default() -> Self {
        Self {
            before_days: DEFAULT_RENEW_BEFORE_DAYS,
            ari: true,
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
    pub(crate) host: String,
    pub(crate) acme: Acme,
    /// The delegated zone that holds challenge records, without the trailing dot.
    pub(crate) signing_zone: String,
    pub(crate) challenge_records: ChallengeRecords,
    /// Recursive resolver for the delegation pre-check.
    pub(crate) resolver: SocketAddr,
    pub(crate) state_dir: PathBuf,
    pub(crate) cert_dir: PathBuf,
    pub(crate) layout: Layout,
    pub(crate) group: Group,
    pub(crate) key: KeyType,
    pub(crate) renew: Renew,
    /// Certificate name -> identifiers (canonical, in the order written).
    pub(crate) certs: BTreeMap<String, Vec<String>>,
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
}

/// External account binding credentials; the HMAC key never reaches a log.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Eab {
    pub(crate) kid: String,
    /// Base64url, as CAs hand it out.
    pub(crate) hmac_key: String,
}

impl fmt::Debug for Eab {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Eab")
            .field("kid", &self.kid)
            .field("hmac_key", &"<redacted>")
            .finish()
    }
}

/// The group that may read private keys.
#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub(crate) gid: u32,
}

/// When to renew.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Renew {
    pub(crate) before_days: u32,
    /// Ask the CA's ARI endpoint when it has one.
    pub(crate) ari: bool,
}

impl HostConfig {
    /// Reads and checks the host config at `path`.
    pub(crate) fn load(path: &Path) -> Result<Self, ConfigError> {
        let raw: RawHost = read_yaml(path)?;
        let acme = check_acme(path, raw.acme)?;
        let signing_zone = canonical_name(&raw.signing_zone, false)
            .map_err(|err| invalid(path, "signing_zone", format!("is wrong: {err}")))?;
        let host = match raw.host {
            Some(host) => canonical_name(&host, false)
                .map_err(|err| invalid(path, "host", format!("is wrong: {err}")))?,
            None => system_host_name(path)?,
        };
        let resolver_text = raw.resolver.as_deref().unwrap_or(DEFAULT_RESOLVER);
        let resolver = parse_dns_address(resolver_text).ok_or_else(|| {
            invalid(
                path,
                "resolver",
                format!(
                    "`{resolver_text}` is not an address: write ip or ip:port, like 127.0.0.1:53"
                ),
            )
        })?;
        let group_name = raw.group.unwrap_or_else(|| DEFAULT_GROUP.to_owned());
        let group = lookup_group(path, &group_name)?;
        let certs = check_certs(path, raw.certs)?;
        if raw.renew.before_days == 0 {
            return Err(invalid(path, "renew.before_days", "must be at least 1"));
        }
        Ok(Self {
            path: path.to_owned(),
            host,
            acme,
            signing_zone,
            challenge_records: raw.challenge_records,
            resolver,
            state_dir: raw.state_dir.unwrap_or_else(|| DEFAULT_STATE_DIR.into()),
            cert_dir: raw.cert_dir.unwrap_or_else(|| DEFAULT_CERT_DIR.into()),
            layout: raw.layout,
            group,
            key: raw.key,
            renew: Renew {
                before_days: raw.renew.before_days,
                ari: raw.renew.ari,
            },
            certs,
        })
    }
}

fn check_acme(path: &Path, raw: RawAcme) -> Result<Acme, ConfigError> {
    if raw.agree_tos != Some(true) {
        return Err(invalid(
            path,
            "acme.agree_tos",
            "must be true: read the CA's terms of service, then set `acme.agree_tos: true`",
        ));
    }
    let email = match raw.email {
        Some(email) if email.contains('@') && !email.contains(char::is_whitespace) => email,
        Some(email) => {
            return Err(invalid(
                path,
                "acme.email",
                format!("`{email}` is not an e-mail address"),
            ));
        }
        None => {
            return Err(invalid(
                path,
                "acme.email",
                "is missing: set the address the CA writes to about expiring certificates",
            ));
        }
    };
    let directory = raw.directory.unwrap_or_else(|| LETS_ENCRYPT.to_owned());
    if !directory.starts_with("https://") {
        return Err(invalid(
            path,
            "acme.directory",
            format!("`{directory}` must be an https:// URL of the CA's directory"),
        ));
    }
    if let Some(bundle) = &raw.ca_bundle {
        // Read it now: a bundle that cannot be read would only fail later, mid-run.
        let text = std::fs::read_to_string(bundle).map_err(|err| {
            invalid(
                path,
                "acme.ca_bundle",
                format!(
                    "cannot read {}: {err}; point it at a PEM file or remove the key",
                    bundle.display()
                ),
            )
        })?;
        if !text.contains("-----BEGIN CERTIFICATE-----") {
            return Err(invalid(
                path,
                "acme.ca_bundle",
                format!("{} holds no PEM certificate", bundle.display()),
            ));
        }
    }
    if let Some(eab) = &raw.eab {
        use base64::Engine as _;
        if base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(eab.hmac_key.trim_end_matches('='))
            .is_err()
        {
            return Err(invalid(
                path,
                "acme.eab.hmac_key",
                "is not base64url, as the CA gives it",
            ));
        }
    }
    Ok(Acme {
        directory,
        email,
        ca_bundle: raw.ca_bundle,
        profile: raw.profile,
        eab: raw.eab,
    })
}

fn check_certs(
    path: &Path,
    raw: BTreeMap<String, Vec<String>>,
) -> Result<BTreeMap<String, Vec<String>>, ConfigError> {
    let mut certs = BTreeMap::new();
    for (name, identifiers) in raw {
        let key = format!("certs.{name}");
        let safe = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if name.is_empty() || name.starts_with('.') || !name.chars().all(safe) {
            return Err(invalid(
                path,
                key,
                "is not a usable certificate name: use letters, digits, `-`, `_` and `.`",
            ));
        }
        if identifiers.is_empty() {
            return Err(invalid(path, key, "lists no names: give at least one"));
        }
        let mut checked: Vec<String> = Vec::with_capacity(identifiers.len());
        for identifier in &identifiers {
            let canonical = canonical_name(identifier, true)
                .map_err(|err| invalid(path, &key, format!("has a bad name: {err}")))?;
            if checked.contains(&canonical) {
                return Err(invalid(path, &key, format!("lists `{canonical}` twice")));
            }
            checked.push(canonical);
        }
        certs.insert(name, checked);
    }
    Ok(certs)
}

fn lookup_group(path: &Path, name: &str) -> Result<Group, ConfigError> {
    match nix::unistd::Group::from_name(name) {
        Ok(Some(group)) => Ok(Group {
            gid: group.gid.as_raw(),
        }),
        Ok(None) => Err(invalid(
            path,
            "group",
            format!(
                "`{name}` does not exist: create it (groupadd {name}) or name an existing group"
            ),
        )),
        Err(err) => Err(invalid(
            path,
            "group",
            format!("`{name}` cannot be looked up: {err}"),
        )),
    }
}

fn system_host_name(path: &Path) -> Result<String, ConfigError> {
    let name = nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .unwrap_or_default();
    canonical_name(&name, false).map_err(|_| {
        invalid(
            path,
            "host",
            "is not set and the system host name is unusable: set `host:` to this host's name",
        )
    })
}
