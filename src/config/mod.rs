//! Configuration files: YAML in, checked types out.
//!
//! Raw serde structs mirror the file (`deny_unknown_fields`, so a typo is an error that names
//! the key); `load` turns them into the checked types the commands use. Every error names the
//! file, the key and the fix, shows what the file said escaped and bounded, and nothing is
//! written before a config has passed. A mapping that names a key twice is refused rather
//! than letting the last one win silently.

mod certs;
mod duration;
mod host;
mod issuer;
mod metrics;
mod nesting;
mod pkcs12;
mod servers;
mod unique;
mod update;
mod zone;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

pub(crate) use certs::{CertSpec, ReloadSpec};
pub(crate) use duration::ConfigDuration;
pub(crate) use host::{Acme, HostConfig};
pub(crate) use update::{UpdateTarget, missing_update};
#[cfg(test)]
pub(crate) use zone::tests as zone_tests;
pub(crate) use zone::{FileTarget, ZoneConfig, ZoneTarget};

use crate::shown::{bare, path as shown_path};
use crate::store::{self, StoreError};

/// Default DNS port for addresses written without one.
const DNS_PORT: u16 = 53;
/// The most bytes a config file may hold: a zone config with an allow-list for 10,000 hosts
/// is a few MiB (docs/zone-config.md, "Limits").
pub(crate) const MAX_CONFIG_BYTES: u64 = 16 << 20;
/// How much of the YAML parser's message goes into a line (it quotes keys from the file).
const MAX_PARSER_MESSAGE: usize = 200;

/// A config file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: StoreError,
    },
    /// The YAML does not match the expected keys and types.
    #[error("config {path}: {message}")]
    Syntax { path: String, message: String },
    /// A key has a value that cannot work; `problem` says what to do instead.
    #[error("config {path}: `{key}` {problem}")]
    Invalid {
        path: String,
        key: String,
        problem: String,
    },
}

/// What a config file that others may change costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OthersWrite {
    /// Refused: root runs what it says (the zone config's `reload` argv).
    Refuse,
    /// A warning, as OpenSSH gives for its files: a host config was long accepted so.
    Warn,
}

/// Whether users other than root and the one running may change the file at `path`: the
/// problem and its fix.
fn others_may_write(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(path).ok()?;
    let us = nix::unistd::geteuid().as_raw();
    let mode = meta.mode() & 0o7777;
    if meta.uid() != us && meta.uid() != 0 {
        Some(format!(
            "belongs to uid {}, not to root or the user fleetcert runs as: its owner can change \
             what fleetcert does; chown it",
            meta.uid()
        ))
    } else if mode & 0o022 != 0 {
        Some(format!(
            "is writable by others (mode {mode:04o}): they can change what fleetcert does; run \
             chmod go-w on it"
        ))
    } else {
        None
    }
}

/// Reads and parses a YAML file into the raw struct `T`; `others` says what a file others
/// may write costs.
fn read_yaml<T: serde::de::DeserializeOwned>(
    path: &Path,
    others: OthersWrite,
) -> Result<T, ConfigError> {
    if let Some(problem) = others_may_write(path) {
        match others {
            OthersWrite::Refuse => {
                return Err(ConfigError::Syntax {
                    path: shown_path(path),
                    message: problem,
                });
            }
            OthersWrite::Warn => {
                tracing::warn!(config = %shown_path(path), "{problem}");
            }
        }
    }
    let bytes =
        store::read_bounded(path, MAX_CONFIG_BYTES).map_err(|source| ConfigError::Read {
            path: shown_path(path),
            source,
        })?;
    let syntax = |message: String| ConfigError::Syntax {
        path: shown_path(path),
        message,
    };
    // Editors on Windows save a byte-order mark, which is not part of the first key.
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&bytes);
    let text = std::str::from_utf8(bytes)
        .map_err(|err| syntax(format!("is not UTF-8 text (at byte {})", err.valid_up_to())))?;
    if let Some((line, column)) = nesting::too_deep(text, nesting::MAX_DEPTH) {
        return Err(syntax(format!(
            "nests `{{...}}` or `[...]` more than {} deep at line {line} column {column}: a \
             fleetcert config needs a few levels; write it as plain YAML",
            nesting::MAX_DEPTH
        )));
    }
    serde_yaml::from_str(text).map_err(|err| {
        // The parser quotes keys and values from the file: escape and bound them.
        syntax(bare(&err.to_string(), MAX_PARSER_MESSAGE))
    })
}

/// Parses `ip`, `ip:port` or `[v6]:port`, defaulting to port 53.
pub(crate) fn parse_dns_address(text: &str) -> Option<SocketAddr> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Some(addr);
    }
    text.parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, DNS_PORT))
}

/// Builds the error for `key` in `path`.
fn invalid(path: &Path, key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        path: shown_path(path),
        key: crate::shown::bare(&key.into(), MAX_PARSER_MESSAGE),
        problem: problem.into(),
    }
}

/// `file` as written in the config at `config`: a relative path means relative to the config
/// file, not to wherever the command happens to be started (Ansible, cron and a shell differ).
fn beside(config: &Path, file: PathBuf) -> PathBuf {
    match config.parent() {
        Some(dir) if file.is_relative() => dir.join(file),
        _ => file,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_addresses_default_to_port_53() {
        assert_eq!(parse_dns_address("127.0.0.1"), "127.0.0.1:53".parse().ok());
        assert_eq!(
            parse_dns_address("127.0.0.1:5353"),
            "127.0.0.1:5353".parse().ok()
        );
        assert_eq!(parse_dns_address("::1"), "[::1]:53".parse().ok());
        assert_eq!(parse_dns_address("ns1.example.net"), None);
    }
}
