//! Configuration files: YAML in, checked types out.
//!
//! Raw serde structs mirror the file (`deny_unknown_fields`, so a typo is an error that names
//! the key); `load` turns them into the checked types the commands use. Every error names the
//! file, the key and the fix, and nothing is written before a config has passed.

mod duration;
mod host;
mod zone;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

pub(crate) use duration::ConfigDuration;
pub(crate) use host::{Acme, HostConfig};
pub(crate) use zone::ZoneConfig;

/// Default DNS port for addresses written without one.
const DNS_PORT: u16 = 53;

/// A config file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read config {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The YAML does not match the expected keys and types.
    #[error("config {}: {message}", path.display())]
    Syntax { path: PathBuf, message: String },
    /// A key has a value that cannot work; `problem` says what to do instead.
    #[error("config {}: `{key}` {problem}", path.display())]
    Invalid {
        path: PathBuf,
        key: String,
        problem: String,
    },
}

/// Reads and parses a YAML file into the raw struct `T`.
fn read_yaml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    serde_yaml::from_str(&text).map_err(|err| ConfigError::Syntax {
        path: path.to_owned(),
        // One line: serde_yaml puts the location on the same line already.
        message: err.to_string().replace('\n', " "),
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
        path: path.to_owned(),
        key: key.into(),
        problem: problem.into(),
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
