//! Helpers shared by the integration tests: run the real binary, read its JSON.

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::io::Read as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde_json::Value;

use super::fixture::KEY_GROUP;
use super::sandbox::Sandbox;

/// What one run of `fleetcert` did.
#[derive(Debug)]
pub(crate) struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// What a finished process left: its exit code (-1 when a signal ended it), its streams.
    pub(crate) fn of(output: &std::process::Output) -> Self {
        Self {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// The stdout as JSON; panics with both streams when it is not.
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|err| {
            panic!(
                "stdout is not JSON ({err}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// Panics unless the exit code is `code`.
    #[track_caller]
    pub(crate) fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "exit code {} (wanted {code})\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }
}

/// The binary under test.
pub(crate) fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_fleetcert")
}

/// Runs the binary under test with `args`, optionally feeding `stdin`.
pub(crate) fn fleetcert<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    fleetcert_with_stdin(args, None)
}

/// Like [`fleetcert`], with bytes on standard input.
pub(crate) fn fleetcert_with_stdin<I, S>(args: I, stdin: Option<&[u8]>) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    use std::io::Write as _;
    let mut child = Command::new(binary())
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start fleetcert");
    if let (Some(bytes), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(bytes).expect("write stdin");
    }
    let output = child.wait_with_output().expect("wait for fleetcert");
    Run::of(&output)
}

/// Every file below `dir` with its bytes, to prove that a failed run changed nothing.
///
/// A symlink to a file counts with its target's bytes (a certificate's service-facing names
/// are links into its current version); a symlink to a directory (`..data`) is not followed,
/// the directory itself is listed. Lock files are left out: they hold the pid of the last
/// run, bookkeeping rather than state.
pub(crate) fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    tree(dir)
        .into_iter()
        .filter(|(path, meta)| {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            !meta.is_dir() && name != "lock" && !name.ends_with(".lock")
        })
        // A link to a directory does not read, a link to a file reads its target.
        .filter_map(|(path, _)| {
            let bytes = std::fs::read(&path).ok()?;
            Some((path, bytes))
        })
        .collect()
}

/// Every path below `root` (links not followed), with its status.
pub(crate) fn tree(root: &Path) -> Vec<(PathBuf, std::fs::Metadata)> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            // Gone since it was listed (a run removed it): not below `root` any more.
            let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
                continue;
            };
            if meta.is_dir() {
                stack.push(entry.path());
            }
            found.push((entry.path(), meta));
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

/// Runs `command`; its stdout, panicking with both streams unless it succeeds.
#[track_caller]
pub(crate) fn run_ok(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|err| panic!("cannot start {command:?}: {err}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({})\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `openssl <args>`; its stdout, panicking on failure.
#[track_caller]
pub(crate) fn openssl<S: AsRef<OsStr>>(args: &[S]) -> String {
    run_ok(Command::new("openssl").args(args))
}

/// The DNS SANs of a PEM certificate (the first one in the file), sorted.
pub(crate) fn sans(cert: &Path) -> Vec<String> {
    let text = openssl(&[
        OsStr::new("x509"),
        OsStr::new("-noout"),
        OsStr::new("-ext"),
        OsStr::new("subjectAltName"),
        OsStr::new("-in"),
        cert.as_os_str(),
    ]);
    let mut names: Vec<String> = text
        .split([',', '\n'])
        .filter_map(|part| part.trim().strip_prefix("DNS:"))
        .map(str::to_owned)
        .collect();
    names.sort();
    names
}

/// Proves that `key` is the private key of `cert` by comparing their public keys.
#[track_caller]
pub(crate) fn assert_key_matches(key: &Path, cert: &Path) {
    let in_cert = [
        OsStr::new("x509"),
        OsStr::new("-noout"),
        OsStr::new("-pubkey"),
        OsStr::new("-in"),
        cert.as_os_str(),
    ];
    let in_key = [
        OsStr::new("pkey"),
        OsStr::new("-pubout"),
        OsStr::new("-in"),
        key.as_os_str(),
    ];
    assert_eq!(
        openssl(&in_key),
        openssl(&in_cert),
        "{} does not belong to {}",
        key.display(),
        cert.display()
    );
}

/// The names in `dir` (not below it), sorted.
pub(crate) fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|err| panic!("cannot list {}: {err}", dir.display()))
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

/// `openssl verify -CAfile root` of the leaf (first certificate of `fullchain`), with the
/// rest of the file as untrusted intermediates. `Err` has openssl's output.
pub(crate) fn verify_against(root: &Path, fullchain: &Path) -> Result<(), String> {
    let pem = std::fs::read_to_string(fullchain)
        .map_err(|err| format!("cannot read {}: {err}", fullchain.display()))?;
    let blocks = super::sandbox::pem_certificates(&pem);
    let Some((leaf, rest)) = blocks.split_first() else {
        return Err(format!("{} holds no certificate", fullchain.display()));
    };
    let work = tempfile::tempdir().map_err(|err| err.to_string())?;
    let leaf_file = work.path().join("leaf.pem");
    std::fs::write(&leaf_file, leaf).map_err(|err| err.to_string())?;
    let mut cmd = Command::new("openssl");
    cmd.arg("verify").arg("-CAfile").arg(root);
    if !rest.is_empty() {
        let chain_file = work.path().join("untrusted.pem");
        std::fs::write(&chain_file, rest.concat()).map_err(|err| err.to_string())?;
        cmd.arg("-untrusted").arg(chain_file);
    }
    let out = cmd
        .arg(&leaf_file)
        .output()
        .map_err(|err| format!("cannot run openssl: {err}"))?;
    super::services::output_result(out).map(drop)
}

/// Held by a test that changes the machine's own root (the package test installs and purges
/// fleetcert, whose maintainer scripts mask and unmask its timer in /etc/systemd/system) and
/// by one that boots a system over an overlay of that root (the timer test): a guest that
/// boots while the host's timer is masked for a moment never starts it. Tests run as threads
/// of one process, so a static lock keeps the two apart; a panic in one does not stop the
/// other from taking it.
pub(crate) fn host_root_lock() -> std::sync::MutexGuard<'static, ()> {
    static HOST_ROOT: std::sync::Mutex<()> = std::sync::Mutex::new(());
    HOST_ROOT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
pub(crate) fn sorted(names: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
    names.sort();
    names
}

/// The public key algorithm of a certificate, as `openssl x509 -text` prints it, and checks
/// that the private key file holds the matching key.
pub(crate) fn key_kind(cert: &Path, key: &Path) -> String {
    assert_key_matches(key, cert);
    let text = openssl(&[
        "x509",
        "-noout",
        "-text",
        "-in",
        cert.to_str().expect("utf-8"),
    ]);
    let algorithm = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("Public Key Algorithm: "))
        .expect("a public key algorithm");
    // An EC key is named by its curve, an RSA key by its size.
    let line = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .find(|line| line.starts_with(prefix))
    };
    let detail = line("NIST CURVE:")
        .or_else(|| line("Public-Key:"))
        .expect("key size or curve");
    format!("{algorithm} {detail}")
}

pub(crate) fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|err| panic!("stat {}: {err}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

pub(crate) fn gid(path: &Path) -> u32 {
    std::fs::metadata(path).expect("stat").gid()
}

pub(crate) fn key_group_gid() -> u32 {
    let out = Command::new("getent")
        .args(["group", KEY_GROUP])
        .output()
        .expect("getent");
    String::from_utf8_lossy(&out.stdout)
        .split(':')
        .nth(2)
        .and_then(|gid| gid.parse().ok())
        .unwrap_or_else(|| panic!("group {KEY_GROUP} does not exist"))
}

/// The key and certificates in the keystore, unencrypted PEM, by `openssl pkcs12`.
pub(crate) fn openssl_extract(keystore: &Path, password_file: &Path, part: &str, out: &Path) {
    let mut passin = OsString::from("file:");
    passin.push(password_file);
    run_ok(
        Command::new("openssl")
            .args(["pkcs12", "-in"])
            .arg(keystore)
            .arg("-passin")
            .arg(&passin)
            .args([part, "-nodes", "-out"])
            .arg(out),
    );
}

/// Fresh random bytes as base64, as tsig-keygen makes a secret.
pub(crate) fn secret() -> String {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut bytes))
        .expect("read /dev/urandom");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The TXT values `server` serves at `name`.
pub(crate) fn txt_values(sb: &Sandbox, server: &str, name: &str) -> BTreeSet<String> {
    sb.dig_authoritative(server, name, "TXT")
        .unwrap_or_else(|err| panic!("{err}"))
        .into_iter()
        .collect()
}

/// The values of a document's records.
pub(crate) fn values(document: &Value) -> BTreeSet<String> {
    document["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|record| record["value"].as_str().expect("value").to_owned())
        .collect()
}

/// The last line of stderr (the error line of a failed run).
pub(crate) fn last_stderr_line(run: &Run) -> &str {
    run.stderr.lines().last().unwrap_or("")
}
