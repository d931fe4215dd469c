//! `certs.<cert>.pkcs12` of the host config: the keystore's alias and its password file.
//!
//! The password is read when the config is loaded, by every command, so that a file that is
//! missing, readable by others or unusable stops the run before anything is ordered or
//! written (exit 2) — not after a certificate was issued that cannot be installed. It is kept
//! in memory as a [`KeystorePassword`], which never prints.

use std::io::Read as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use super::{ConfigError, beside, invalid};
use crate::cert::KeystorePassword;
use crate::shown::{path as shown_path, shown};
use crate::store::{self, SecretError};

/// The most bytes a password file may hold: a password is a line, not a document.
const MAX_PASSWORD_BYTES: u64 = 1024;
/// The longest alias, in characters.
const MAX_ALIAS: usize = 64;
/// The alias of the key entry when `pkcs12.alias` is not given.
const DEFAULT_ALIAS: &str = "fleetcert";

/// `pkcs12:` of a certificate, checked, with its password read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pkcs12Spec {
    /// The file holding the keystore password (never printed).
    pub(crate) password_file: PathBuf,
    /// The alias of the key entry in the keystore.
    pub(crate) alias: String,
    /// The password, as read from `password_file` when the config was loaded.
    pub(crate) password: KeystorePassword,
}

/// Checks `pkcs12:` of certificate `key` (`certs.<cert>`) in the config at `config`.
pub(super) fn check_pkcs12(
    config: &Path,
    key: &str,
    password_file: PathBuf,
    alias: Option<String>,
) -> Result<Pkcs12Spec, ConfigError> {
    let alias = alias.unwrap_or_else(|| DEFAULT_ALIAS.to_owned());
    if alias.is_empty() || alias.chars().count() > MAX_ALIAS || alias.chars().any(char::is_control)
    {
        return Err(invalid(
            config,
            format!("{key}.pkcs12.alias"),
            format!(
                "{} is not a usable alias: give 1 to {MAX_ALIAS} characters, no control characters",
                shown(&alias)
            ),
        ));
    }
    let password_file = beside(config, password_file);
    let password = read_password(&password_file).map_err(|problem| {
        invalid(
            config,
            format!("{key}.pkcs12.password_file"),
            format!("{} {problem}", shown_path(&password_file)),
        )
    })?;
    Ok(Pkcs12Spec {
        password_file,
        alias,
        password,
    })
}

/// Why a password file cannot be used; each says what to fix and none quotes the contents.
#[derive(Debug, thiserror::Error)]
enum PasswordProblem {
    #[error(
        "does not exist: write the keystore password into it (mode 0600, or 0640 with the \
         service's group)"
    )]
    Missing,
    #[error("cannot be read: {0}")]
    Unreadable(std::io::Error),
    #[error("is not a regular file: point password_file at the file holding the keystore password")]
    NotAFile,
    /// A symbolic link, or owned by someone else (`store::open_secret`).
    #[error(transparent)]
    Untrusted(SecretError),
    #[error("can be read or written by others (mode {0:04o}): run chmod o-rw on it")]
    OthersMayRead(u32),
    #[error("is longer than {MAX_PASSWORD_BYTES} bytes: it should hold the password alone")]
    TooLong,
    #[error("is not UTF-8 text")]
    NotText,
    #[error("is empty: write the keystore password into it")]
    Empty,
    // Java, OpenSSL and ZooKeeper disagree about a `\r` or a second line.
    #[error(
        "holds a control character (a second line, a carriage return, a tab): the password \
         must be one line of text"
    )]
    ControlCharacter,
    // The keystore's MAC key is derived from the password as a BMPString (RFC 7292 B.1), which
    // p12-keystore encodes in UCS-2: refused here, at load, rather than at the first renewal.
    #[error(
        "holds a character outside Unicode's Basic Multilingual Plane (an emoji, for one), \
         which a keystore password cannot carry: choose a password without it"
    )]
    OutsideBmp,
}

/// Reads the password file: a regular file that others can neither read nor write, holding
/// one line of text. One trailing newline is dropped, as ZooKeeper's `passwordPath`,
/// `keytool -storepass:file` and `openssl -passin file:` do.
fn read_password(file: &Path) -> Result<KeystorePassword, PasswordProblem> {
    let (handle, meta) = store::open_secret(file).map_err(|err| match err {
        SecretError::Missing => PasswordProblem::Missing,
        SecretError::Unreadable(err) => PasswordProblem::Unreadable(err),
        SecretError::NotAFile => PasswordProblem::NotAFile,
        other => PasswordProblem::Untrusted(other),
    })?;
    let mode = meta.mode() & 0o7777;
    if mode & 0o006 != 0 {
        return Err(PasswordProblem::OthersMayRead(mode));
    }
    let mut bytes = Vec::new();
    handle
        .take(MAX_PASSWORD_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(PasswordProblem::Unreadable)?;
    if bytes.len() as u64 > MAX_PASSWORD_BYTES {
        return Err(PasswordProblem::TooLong);
    }
    let text = String::from_utf8(bytes).map_err(|_| PasswordProblem::NotText)?;
    let password = text.strip_suffix('\n').unwrap_or(&text);
    if password.is_empty() {
        return Err(PasswordProblem::Empty);
    }
    if password.chars().any(char::is_control) {
        return Err(PasswordProblem::ControlCharacter);
    }
    if password.chars().any(|c| u32::from(c) > 0xFFFF) {
        return Err(PasswordProblem::OutsideBmp);
    }
    Ok(KeystorePassword::new(password.to_owned()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn write(dir: &Path, name: &str, contents: &[u8], mode: u32) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, contents).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        path
    }

    fn check(file: &Path, alias: Option<&str>) -> Result<Pkcs12Spec, ConfigError> {
        check_pkcs12(
            Path::new("/etc/fleetcert/h.yaml"),
            "certs.zk",
            file.to_path_buf(),
            alias.map(str::to_owned),
        )
    }

    #[test]
    fn a_private_one_line_file_gives_the_password_without_its_newline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = write(dir.path(), "zk.pass", b"zk-secret\n", 0o640);
        let spec = check(&file, None).expect("valid");
        assert_eq!(spec.password, KeystorePassword::new("zk-secret".to_owned()));
        assert_eq!(spec.alias, "fleetcert");
        assert!(!format!("{spec:?}").contains("zk-secret"), "{spec:?}");
        let bare = write(dir.path(), "bare.pass", b"no-newline", 0o600);
        assert_eq!(
            check(&bare, Some("zookeeper")).expect("valid").password,
            KeystorePassword::new("no-newline".to_owned())
        );
    }

    #[test]
    fn unusable_password_files_are_named_with_the_fix_and_never_quoted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cases: Vec<(PathBuf, &str)> = vec![
            (dir.path().join("missing.pass"), "does not exist"),
            (
                write(dir.path(), "open.pass", b"secret-1\n", 0o644),
                "mode 0644",
            ),
            (
                write(dir.path(), "writable.pass", b"secret-2\n", 0o602),
                "chmod o-rw",
            ),
            (write(dir.path(), "empty.pass", b"\n", 0o600), "is empty"),
            (
                write(dir.path(), "two.pass", b"secret-3\nsecret-4\n", 0o600),
                "control character",
            ),
            (
                write(dir.path(), "crlf.pass", b"secret-5\r\n", 0o600),
                "control character",
            ),
            (
                write(dir.path(), "binary.pass", b"\xff\xfe", 0o600),
                "not UTF-8",
            ),
            (
                write(
                    dir.path(),
                    "emoji.pass",
                    "secret-6\u{1F510}\n".as_bytes(),
                    0o600,
                ),
                "Basic Multilingual Plane",
            ),
            (
                write(dir.path(), "long.pass", &[b'a'; 1025], 0o600),
                "longer than 1024",
            ),
            (dir.path().to_path_buf(), "not a regular file"),
        ];
        for (file, needle) in cases {
            let err = check(&file, None).expect_err(needle).to_string();
            assert!(err.contains(needle), "{}: {err}", file.display());
            assert!(err.contains("certs.zk.pkcs12.password_file"), "{err}");
            assert!(
                err.contains(&*file.to_string_lossy()),
                "names the file: {err}"
            );
            assert!(!err.contains("secret-"), "quotes the password: {err}");
        }
    }

    #[test]
    fn bad_aliases_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = write(dir.path(), "zk.pass", b"zk-secret\n", 0o600);
        for alias in ["", "a\nb", &"x".repeat(65)] {
            let err = check(&file, Some(alias)).expect_err(alias).to_string();
            assert!(err.contains("certs.zk.pkcs12.alias"), "{err}");
        }
    }
}
