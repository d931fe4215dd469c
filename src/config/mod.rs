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

use crate::shown::{parser_message, path as shown_path};
use crate::store::{self, StoreError};

/// Default DNS port for addresses written without one.
const DNS_PORT: u16 = 53;
/// The most bytes a config file may hold: a zone config with an allow-list for 10,000 hosts
/// is a few MiB (docs/zone-config.md, "Limits").
const MAX_CONFIG_BYTES: u64 = 16 << 20;
/// How much of the YAML parser's message goes into a line (it quotes keys from the file).
const MAX_PARSER_MESSAGE: usize = crate::shown::MAX_EXCERPT;

/// Which config a file is: the line that refuses it names the page with its keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConfigKind {
    /// The host config of `request`, `finalize`, `renew`, `hiera`, `status`, `check`.
    Host,
    /// The zone config of `publish`.
    Zone,
}

impl ConfigKind {
    /// The reference page of its keys, as shipped (docs/ in the source, under
    /// /usr/share/doc/fleetcert/ in the package).
    fn page(self) -> &'static str {
        match self {
            Self::Host => "docs/host-config.md",
            Self::Zone => "docs/zone-config.md",
        }
    }

    /// What writes such a file, for the line that says it is missing.
    fn writer(self) -> &'static str {
        match self {
            Self::Host => "on a fleet the role fleetcert.fleetcert.fleetcert_install writes it",
            Self::Zone => "on a fleet the role fleetcert.fleetcert.fleetcert_publish writes it",
        }
    }
}

impl std::fmt::Display for ConfigKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Host => "host",
            Self::Zone => "zone",
        })
    }
}

/// A config file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    /// There is no file at the path.
    #[error(
        "{kind} config {path} does not exist: write it (the smallest one that works is in \
         {page}; {writer}) or give its path with --config",
        page = kind.page(),
        writer = kind.writer()
    )]
    Missing { path: String, kind: ConfigKind },
    /// The file cannot be read.
    #[error("cannot read config {path}: {}", read_reason(source))]
    Read {
        path: String,
        #[source]
        source: StoreError,
    },
    /// The YAML does not match the expected keys and types.
    #[error("config {path}: {message}")]
    Syntax { path: String, message: String },
    /// A key fleetcert does not know: a typo, or a key of the other config.
    #[error("config {path}: {unknown} ({page})", page = kind.page())]
    UnknownKey {
        path: String,
        kind: ConfigKind,
        /// `unknown key `x` at line L column C: ...`: one string, so that the error stays
        /// small enough to return by value from every command.
        unknown: String,
    },
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
    // Only a regular file is a config; anything else is refused when it is read.
    let meta = std::fs::metadata(path)
        .ok()
        .filter(std::fs::Metadata::is_file)?;
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

/// Why a file could not be read, without its path (the line names it once already).
fn read_reason(err: &StoreError) -> String {
    match err {
        StoreError::Io { source, .. } => source.to_string(),
        other => other.to_string(),
    }
}

/// Reads and parses a YAML file into the raw struct `T`; `others` says what a file others
/// may write costs.
fn read_yaml<T: serde::de::DeserializeOwned>(
    path: &Path,
    kind: ConfigKind,
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
                // Once per run: the metrics at the end load the config again.
                static WARNED: std::sync::Once = std::sync::Once::new();
                WARNED.call_once(|| tracing::warn!(config = %shown_path(path), "{problem}"));
            }
        }
    }
    let bytes = store::read_bounded(path, MAX_CONFIG_BYTES).map_err(|source| match &source {
        StoreError::Io { source: io, .. } if io.kind() == std::io::ErrorKind::NotFound => {
            ConfigError::Missing {
                path: shown_path(path),
                kind,
            }
        }
        _ => ConfigError::Read {
            path: shown_path(path),
            source,
        },
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
    serde_yaml::from_str(text).map_err(|err| yaml_error(path, kind, &err))
}

/// The line for a YAML error: where it is first, so that no bound can cut it, then the
/// parser's message (which quotes keys and values from the file: escaped and bounded), and
/// for an unknown key the keys that are allowed there.
fn yaml_error(path: &Path, kind: ConfigKind, err: &serde_yaml::Error) -> ConfigError {
    let mut message = err.to_string();
    let at = err.location().map(|location| {
        let at = format!("line {} column {}", location.line(), location.column());
        // The parser ends its message with the same place; said once, in front.
        if let Some(cut) = message.strip_suffix(&format!(" at {at}")) {
            message = cut.to_owned();
        }
        at
    });
    if let Some(unknown) = UnknownKey::parse(&message) {
        let hint = unknown
            .suggestion()
            .map(|key| format!(" (did you mean `{key}`?)"))
            .unwrap_or_default();
        return ConfigError::UnknownKey {
            path: shown_path(path),
            kind,
            unknown: format!(
                "unknown key {} at {}: remove it or correct its spelling{hint}; the keys there \
                 are {}",
                crate::shown::shown(&unknown.key),
                at.as_deref().unwrap_or("an unknown place"),
                parser_message(&unknown.known.join(", "), MAX_PARSER_MESSAGE),
            ),
        };
    }
    if let Some(wrong) = WrongValue::parse(&message) {
        return ConfigError::Syntax {
            path: shown_path(path),
            message: format!(
                "{}: {wrong} (see {})",
                at.as_deref().unwrap_or("at an unknown place"),
                kind.page()
            ),
        };
    }
    let message = parser_message(&message, MAX_PARSER_MESSAGE);
    ConfigError::Syntax {
        path: shown_path(path),
        message: match at {
            Some(at) => format!("{at}: {message} (see {})", kind.page()),
            None => format!("{message} (see {})", kind.page()),
        },
    }
}

/// serde's "unknown field" message, taken apart: serde says which key and which keys it
/// expected only in its text.
struct UnknownKey {
    /// The key with the keys above it (`acme.emial`).
    key: String,
    /// The keys allowed beside it.
    known: Vec<String>,
}

impl UnknownKey {
    /// `renew: unknown field `x`, expected one of `a`, `b``, `... expected `a` or `b``,
    /// `... expected `a``, or `..., there are no fields`.
    fn parse(message: &str) -> Option<Self> {
        const MARK: &str = "unknown field `";
        let start = message.find(MARK)?;
        let above = message[..start].trim_end().trim_end_matches(':');
        let rest = &message[start + MARK.len()..];
        let (name, expected) = rest
            .rsplit_once("`, expected ")
            .or_else(|| rest.rsplit_once("`, there are no fields"))?;
        let known = expected
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect();
        let key = if above.is_empty() || above == "." {
            name.to_owned()
        } else {
            format!("{above}.{name}")
        };
        Some(Self { key, known })
    }

    /// The allowed key the operator most likely meant: one a typo or two away, or one that
    /// the unknown key starts with (`renew_days` for `renew`).
    fn suggestion(&self) -> Option<&str> {
        let name = self.key.rsplit('.').next().unwrap_or(&self.key);
        self.known
            .iter()
            .map(|known| (edit_distance(name, known), known))
            .filter(|(distance, _)| *distance <= 2)
            .min()
            .map(|(_, known)| known.as_str())
            .or_else(|| {
                self.known
                    .iter()
                    .filter(|known| name.starts_with(known.as_str()) || known.starts_with(name))
                    .max_by_key(|known| known.len())
                    .map(String::as_str)
            })
    }
}

/// serde's "invalid type" and "invalid value" messages, taken apart and said again in the
/// file's words: the key, the value, and what the key wants, instead of serde's `expected u32`
/// or a Rust type's name.
struct WrongValue {
    /// The key with the keys above it (`acme`, `renew.before_days`); empty for the file.
    key: String,
    /// serde's description of the value (`string "x"`, ``integer `5` ``, `map`).
    value: String,
    /// What the key wants, from the raw type's `expecting`, or serde's own words.
    wanted: String,
}

impl WrongValue {
    /// `acme: invalid type: string "x", expected a mapping with ...`.
    fn parse(message: &str) -> Option<Self> {
        let (above, rest) = ["invalid type: ", "invalid value: "]
            .iter()
            .find_map(|mark| message.split_once(mark))?;
        // The value may hold anything (also `, expected `); what serde adds comes last.
        let (value, wanted) = rest.rsplit_once(", expected ")?;
        Some(Self {
            key: above.trim_end().trim_end_matches(':').to_owned(),
            value: value.to_owned(),
            wanted: wanted.to_owned(),
        })
    }

    /// The value as the file has it, escaped and bounded.
    fn value(&self) -> String {
        let value = self.value.as_str();
        let quoted = |prefix: &str| {
            value
                .strip_prefix(prefix)
                .and_then(|rest| rest.strip_prefix('`').or_else(|| rest.strip_prefix('"')))
                .and_then(|rest| rest.strip_suffix('`').or_else(|| rest.strip_suffix('"')))
        };
        if let Some(text) = quoted("string ") {
            format!(
                "the string {}",
                crate::shown::shown(&text.replace("\\\"", "\""))
            )
        } else if let Some(number) = quoted("integer ").or_else(|| quoted("floating point ")) {
            format!("the number {}", crate::shown::shown(number))
        } else if let Some(boolean) = quoted("boolean ") {
            format!("the boolean {}", crate::shown::shown(boolean))
        } else {
            match value {
                "sequence" => "a list".to_owned(),
                "map" => "a mapping".to_owned(),
                "unit value" => "empty".to_owned(),
                other => crate::shown::bare(other, crate::shown::MAX_VALUE),
            }
        }
    }

    /// What the key wants, in the words of the config's page.
    fn wanted(&self) -> String {
        match self.wanted.as_str() {
            "u8" | "u16" | "u32" | "u64" | "usize" | "i32" | "i64" => {
                "a whole number (no sign, no unit)".to_owned()
            }
            "a sequence" => "a list".to_owned(),
            "a boolean" => "`true` or `false`".to_owned(),
            other => parser_message(other, MAX_PARSER_MESSAGE),
        }
    }
}

impl std::fmt::Display for WrongValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let key = if self.key.is_empty() {
            "the file".to_owned()
        } else {
            crate::shown::shown(&self.key)
        };
        write!(
            f,
            "{key} is {}, but it must be {}: write it so",
            self.value(),
            self.wanted()
        )
    }
}

/// Levenshtein distance, for the few short keys of one mapping.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
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

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Raw {
        acme: Option<Inner>,
        renew: Option<u32>,
        resolver: Option<String>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        email: Option<String>,
    }

    fn refusal(text: &str) -> String {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, text).expect("write");
        read_yaml::<Raw>(&path, ConfigKind::Host, OthersWrite::Warn)
            .expect_err(text)
            .to_string()
    }

    #[test]
    fn an_unknown_key_keeps_its_place_and_names_the_keys_allowed() {
        let line = refusal("resolver: 127.0.0.1\nrenew_days: 30\n");
        assert!(
            line.contains("unknown key `renew_days` at line 2 column 1")
                && line.contains("(did you mean `renew`?)")
                && line.contains("acme, renew, resolver")
                && line.contains("docs/host-config.md")
                && !line.contains('\\'),
            "{line}"
        );
        let line = refusal("acme: {emial: a@b}\n");
        assert!(
            line.contains("unknown key `acme.emial` at line 1")
                && line.contains("did you mean `email`?"),
            "{line}"
        );
        // A hostile key stays one bounded line, and its place survives the bound.
        let line = refusal(&format!("resolver: x\n\"{}\\e\": 1\n", "k".repeat(5000)));
        assert!(
            line.len() < 1000 && line.contains("at line 2 column 1"),
            "{line}"
        );
        assert!(!line.contains('\u{1b}'), "{line}");
    }

    #[test]
    fn a_yaml_error_says_where_first() {
        let line = refusal(&format!("renew: {}\n", "9".repeat(2000)));
        assert!(line.contains(": line 1 column 8: "), "{line}");
        let line = refusal("acme: [\n");
        assert!(line.contains("line "), "{line}");
    }

    #[test]
    fn a_missing_config_says_what_to_write_once() {
        let line = read_yaml::<Raw>(
            Path::new("/nonexistent/f.yaml"),
            ConfigKind::Host,
            OthersWrite::Warn,
        )
        .expect_err("missing")
        .to_string();
        assert_eq!(line.matches("/nonexistent/f.yaml").count(), 1, "{line}");
        assert!(
            line.contains("does not exist") && line.contains("--config"),
            "{line}"
        );
    }

    /// The line `HostConfig::load` gives for the host config `text`.
    fn host_refusal(text: &str) -> String {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("host.yaml");
        std::fs::write(&path, text).expect("write");
        HostConfig::load(&path).expect_err(text).to_string()
    }

    const HOST_HEAD: &str = "acme: {directory: https://acme.test/dir, email: a@example.org, \
                             agree_tos: true}\nsigning_zone: acme.test\n";

    #[test]
    fn an_unknown_key_inside_a_certificate_keeps_its_place() {
        let line = host_refusal(&format!(
            "{HOST_HEAD}certs:\n  main:\n    names: [web01.example.org]\n    relaod: [true]\n"
        ));
        assert!(
            line.contains("unknown key `certs.main.relaod` at line 6 column 5")
                && line.contains("(did you mean `reload`?)")
                && line.contains("names, pkcs12, probe, reload, reload_timeout")
                && line.contains("docs/host-config.md")
                && !line.contains('\\'),
            "{line}"
        );
        // The same inside a certificate's `pkcs12`.
        let line = host_refusal(&format!(
            "{HOST_HEAD}certs:\n  zk:\n    names: [zk.example.org]\n    pkcs12: {{password_fil: /p}}\n"
        ));
        assert!(
            line.contains("unknown key `certs.zk.pkcs12.password_fil` at line 6 column 14")
                && line.contains("did you mean `password_file`?"),
            "{line}"
        );
    }

    #[test]
    fn a_value_of_the_wrong_type_says_what_the_key_wants() {
        // A mapping written as a string: the key, the value, what it wants, no Rust type.
        let line =
            host_refusal("acme: https://acme.test/dir\nsigning_zone: acme.test\ncerts: {}\n");
        assert!(
            line.contains("line 1 column 7")
                && line.contains("`acme` is the string `https://acme.test/dir`")
                && line.contains("a mapping with `directory`, `email`, `agree_tos`")
                && line.contains("docs/host-config.md")
                && !line.contains("Raw")
                && !line.contains("struct"),
            "{line}"
        );
        let line = host_refusal(&format!("{HOST_HEAD}renew: 30\ncerts: {{}}\n"));
        assert!(
            line.contains("`renew` is the number `30`")
                && line.contains("a mapping with `before_days`")
                && !line.contains("Raw"),
            "{line}"
        );
        // A certificate that is neither form: its key and place, and the two forms.
        let line = host_refusal(&format!("{HOST_HEAD}certs:\n  main: 5\n"));
        assert!(
            line.contains("line 4 column 9")
                && line.contains("`certs.main` is the number `5`")
                && line.contains("a list of names or a mapping with `names`"),
            "{line}"
        );
        // A number where a mapping of numbers wants one: no Rust integer type in the line.
        let line = host_refusal(&format!(
            "{HOST_HEAD}renew: {{before_days: soon}}\ncerts: {{}}\n"
        ));
        assert!(
            line.contains("`renew.before_days` is the string `soon`")
                && line.contains("a whole number")
                && !line.contains("u32"),
            "{line}"
        );
    }

    #[test]
    fn suggestions_are_close_keys_only() {
        assert_eq!(edit_distance("emial", "email"), 2);
        assert_eq!(edit_distance("", "abc"), 3);
        let unknown = UnknownKey {
            key: "zzz".to_owned(),
            known: vec!["acme".to_owned()],
        };
        assert_eq!(unknown.suggestion(), None);
    }

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
