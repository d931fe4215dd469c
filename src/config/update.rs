//! The `update:` block: publishing the signing zone by DNS UPDATE (RFC 2136) signed with a
//! TSIG key (RFC 8945), in the zone config (`publish`) and in the host config (`renew`).
//!
//! In the zone config `update:` replaces the file publisher's keys (`zone_file`, `template`,
//! `soa`, `nameservers`, `glue`, `reload`, `check_zone`): a config with both is refused,
//! because fleetcert cannot tell which one the operator meant. The ledger and the lock live
//! in `state_dir` (default `/var/lib/fleetcert/publish`), there being no zone file to keep
//! them beside. In the host config the same block, with `servers` and `timeout`, is what
//! `fleetcert renew` publishes the host's own records with; the host's own `state_dir` holds
//! its ledger.
//!
//! The secret file is read when the config is loaded, so a missing, unreadable or open file
//! is a config error (exit 2) before anything is asked or changed. It must be readable by its
//! owner only: a secret that group or others could read is refused, not used.

use std::io::Read as _;
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::servers::{DEFAULT_TIMEOUT, check_servers};
use super::{ConfigDuration, ConfigError, beside, invalid, parse_dns_address};
use crate::dns::{DnsName, TsigAlgo, TsigKey};
use crate::shown::{path as shown_path, shown};
use crate::store::{self, SecretError};

/// Where `publish` by update keeps its ledger and lock unless `state_dir` says otherwise.
pub(crate) const DEFAULT_PUBLISH_STATE_DIR: &str = "/var/lib/fleetcert/publish";
/// The most bytes of a secret file: a base64 HMAC-SHA512 key is 88.
const MAX_SECRET_FILE_BYTES: u64 = 4096;

/// The `update:` mapping as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[serde(expecting = "a mapping with `server`, `key_name`, `algorithm`, `secret_file`")]
pub(crate) struct RawUpdate {
    server: String,
    key_name: String,
    algorithm: Option<String>,
    secret_file: PathBuf,
}

/// Where and how the zone is changed by DNS UPDATE.
#[derive(Debug, Clone)]
pub(crate) struct UpdateTarget {
    /// The primary that takes UPDATE (and answers the zone's transfer or queries).
    pub(crate) server: SocketAddr,
    pub(crate) key: TsigKey,
    /// Where the secret came from, for messages.
    pub(crate) secret_file: PathBuf,
    /// The directory of the ledger, the lock and the list of values fleetcert put in the zone.
    pub(crate) state_dir: PathBuf,
}

/// The host config's `update:` block with its `servers` and `timeout`, for `renew`.
#[derive(Debug)]
pub(crate) struct HostUpdate {
    pub(crate) target: UpdateTarget,
    /// Authoritative servers to wait for; `None`: the zone's NS set through `resolver`.
    pub(crate) servers: Option<Vec<SocketAddr>>,
    pub(crate) timeout: Duration,
}

/// Checks an `update:` block; `state_dir` is where its ledger goes.
pub(crate) fn check_update(
    path: &Path,
    raw: RawUpdate,
    state_dir: PathBuf,
) -> Result<UpdateTarget, ConfigError> {
    let server = parse_dns_address(&raw.server).ok_or_else(|| {
        invalid(
            path,
            "update.server",
            format!(
                "{} is not an address: write the primary's ip or ip:port, like 192.0.2.1:53",
                shown(&raw.server)
            ),
        )
    })?;
    let name = DnsName::parse(&raw.key_name).map_err(|rule| {
        invalid(
            path,
            "update.key_name",
            format!("{} {rule}", shown(&raw.key_name)),
        )
    })?;
    let algorithm = match raw.algorithm.as_deref() {
        None => TsigAlgo::default(),
        Some(text) => TsigAlgo::parse(text).ok_or_else(|| {
            invalid(
                path,
                "update.algorithm",
                format!(
                    "{} is not one of hmac-sha256, hmac-sha384, hmac-sha512 (the HMACs \
                     fleetcert signs with; MD5 and SHA-1 are not offered)",
                    shown(text)
                ),
            )
        })?,
    };
    let secret_file = beside(path, raw.secret_file);
    let secret = read_secret(&secret_file).map_err(|problem| {
        invalid(
            path,
            "update.secret_file",
            format!("{} {problem}", shown_path(&secret_file)),
        )
    })?;
    Ok(UpdateTarget {
        server,
        key: TsigKey::new(name, algorithm, secret),
        secret_file,
        state_dir,
    })
}

/// Checks the host config's `update`, `servers` and `timeout`; `servers` and `timeout` mean
/// nothing without `update`.
pub(crate) fn check_host_update(
    path: &Path,
    update: Option<RawUpdate>,
    servers: Option<Vec<String>>,
    timeout: Option<ConfigDuration>,
    state_dir: &Path,
) -> Result<Option<HostUpdate>, ConfigError> {
    let Some(update) = update else {
        if let Some(key) = [
            servers.as_ref().map(|_| "servers"),
            timeout.as_ref().map(|_| "timeout"),
        ]
        .into_iter()
        .flatten()
        .next()
        {
            return Err(invalid(
                path,
                key,
                "is for `fleetcert renew`, which needs an `update:` block: add one, or remove \
                 the key",
            ));
        }
        return Ok(None);
    };
    Ok(Some(HostUpdate {
        target: check_update(path, update, state_dir.to_owned())?,
        servers: check_servers(path, servers)?,
        timeout: timeout.map_or(DEFAULT_TIMEOUT, |d| d.0),
    }))
}

/// The keys of the file publisher present in a zone config that has `update:`: refused, as
/// are `update:`'s own keys in a config without it.
pub(crate) fn refuse_mixed(
    path: &Path,
    update: bool,
    file_keys: &[&str],
    state_dir: bool,
) -> Result<(), ConfigError> {
    if update && let Some(key) = file_keys.first() {
        return Err(invalid(
            path,
            *key,
            "is for publishing as a zone file, and this config has `update:`, which replaces \
             zone_file, template, soa, nameservers, glue, reload and check_zone: remove the \
             file keys (the primary owns the SOA, NS and serial), or remove `update:`",
        ));
    }
    if !update && state_dir {
        return Err(invalid(
            path,
            "state_dir",
            "is where publishing by `update:` keeps its ledger; the file publisher keeps it \
             beside zone_file: remove state_dir, or add `update:`",
        ));
    }
    Ok(())
}

/// The error of `renew` with a host config that has no `update:` block.
pub(crate) fn missing_update(path: &Path) -> ConfigError {
    invalid(
        path,
        "update",
        "is missing: `fleetcert renew` publishes this host's records by dynamic update; add \
         an `update:` block (docs/dynamic-update.md), or run request, publish and finalize",
    )
}

/// What is wrong with the TSIG secret file, in words that never quote the file: each
/// follows the file's name in the config error (`update.secret_file`).
#[derive(Debug, thiserror::Error)]
enum SecretFileError {
    /// The file cannot be opened as a secret (missing, a link, someone else's, ...).
    #[error("{0}")]
    Open(SecretError),
    #[error("cannot be read by this user ({0}): run fleetcert as the secret's owner")]
    PermissionDenied(std::io::Error),
    #[error(
        "does not exist: write the key's base64 secret there (tsig-keygen prints it), mode 0600"
    )]
    Missing,
    #[error(
        "is open to its group or others (mode {mode:04o}): a TSIG secret may be read by its \
         owner only; run chmod 600 on it"
    )]
    OpenToOthers { mode: u32 },
    #[error("cannot be read: {0}")]
    Read(std::io::Error),
    #[error(
        "is larger than {MAX_SECRET_FILE_BYTES} bytes: it should hold the secret's base64 only"
    )]
    TooLarge,
    #[error(
        "holds a key clause, not a secret: put only the base64 string between the quotes of \
         `secret \"...\";` in the file"
    )]
    KeyClause,
    /// The decoder's own message names the offending byte and its offset, which is part of
    /// the secret: this says what is wrong without it.
    #[error("is not base64 (the secret as tsig-keygen or keymgr prints it)")]
    NotBase64,
    #[error("is empty: write the key's base64 secret there")]
    Empty,
}

/// Reads and decodes the secret file; the problem, when there is one, never quotes the file.
fn read_secret(path: &Path) -> Result<Vec<u8>, SecretFileError> {
    use base64::Engine as _;
    let (mut file, meta) = store::open_secret(path).map_err(|err| match err {
        SecretError::Unreadable(err) if err.kind() == std::io::ErrorKind::PermissionDenied => {
            SecretFileError::PermissionDenied(err)
        }
        SecretError::Missing => SecretFileError::Missing,
        other => SecretFileError::Open(other),
    })?;
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(SecretFileError::OpenToOthers { mode });
    }
    let mut bytes = Vec::new();
    file.by_ref()
        .take(MAX_SECRET_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(SecretFileError::Read)?;
    if bytes.len() as u64 > MAX_SECRET_FILE_BYTES {
        return Err(SecretFileError::TooLarge);
    }
    let text = String::from_utf8_lossy(&bytes);
    let text = text.trim();
    if text.contains("secret") || text.contains('{') {
        return Err(SecretFileError::KeyClause);
    }
    let secret = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| SecretFileError::NotBase64)?;
    if secret.is_empty() {
        return Err(SecretFileError::Empty);
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    const SECRET: &str = "c2VrcmV0LXNla3JldC1zZWtyZXQtc2VrcmV0LXNlaw==";

    fn write_secret(dir: &Path, text: &str, mode: u32) -> PathBuf {
        let file = dir.join("tsig.secret");
        std::fs::write(&file, text).expect("write");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).expect("chmod");
        file
    }

    fn raw(secret_file: &Path, algorithm: Option<&str>) -> RawUpdate {
        RawUpdate {
            server: "127.0.0.1:5300".to_owned(),
            key_name: "fleet".to_owned(),
            algorithm: algorithm.map(str::to_owned),
            secret_file: secret_file.to_owned(),
        }
    }

    #[test]
    fn a_good_block_parses_and_the_secret_is_decoded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = write_secret(dir.path(), &format!("{SECRET}\n"), 0o600);
        let target = check_update(
            &dir.path().join("zone.yaml"),
            raw(&file, Some("hmac-sha512")),
            "/tmp/state".into(),
        )
        .expect("valid");
        assert_eq!(target.server, "127.0.0.1:5300".parse().expect("addr"));
        assert_eq!(target.key.algorithm, TsigAlgo::HmacSha512);
        assert_eq!(target.key.name.as_str(), "fleet");
        assert!(!format!("{target:?}").contains(SECRET));
    }

    #[test]
    fn an_open_malformed_or_clause_secret_is_refused_without_quoting_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("zone.yaml");
        for (text, mode, needle) in [
            (SECRET, 0o640, "mode 0640"),
            (SECRET, 0o604, "mode 0604"),
            ("not!base64*", 0o600, "is not base64"),
            ("", 0o600, "is empty"),
            (
                "key \"fleet\" { algorithm hmac-sha256; secret \"abc=\"; };",
                0o600,
                "key clause",
            ),
        ] {
            let file = write_secret(dir.path(), text, mode);
            let err = check_update(&config, raw(&file, None), "/tmp/s".into())
                .expect_err(needle)
                .to_string();
            assert!(
                err.contains(needle) && err.contains("`update.secret_file`"),
                "{err}"
            );
            assert!(text.is_empty() || !err.contains(text), "{err}");
            assert!(
                !err.contains("base64*") || needle != "is not base64",
                "{err}"
            );
        }
        let err = check_update(&config, raw(&dir.path().join("nope"), None), "/s".into())
            .expect_err("missing")
            .to_string();
        assert!(err.contains("does not exist"), "{err}");
        let file = write_secret(dir.path(), SECRET, 0o600);
        let err = check_update(&config, raw(&file, Some("hmac-md5")), "/s".into())
            .expect_err("md5")
            .to_string();
        assert!(err.contains("`update.algorithm`"), "{err}");
    }
}
