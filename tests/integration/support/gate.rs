//! A gate job's host: fleetcert with a test issuer (`self-signed`, `local-ca`), no CA, no
//! signing zone, no resolver; and the CI CA a `local-ca` issuer signs with.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::fixture::{KEY_GROUP, assert_no_secret, certs_yaml, secrets_below};
use super::services::TestCa;
use super::util::{Run, fleetcert};

/// A host of a gate job: its config, state and certificates in a temporary directory; no
/// CA, no signing zone, no resolver.
pub(crate) struct Gate {
    pub(crate) dir: tempfile::TempDir,
    /// Extra command-line flags for every run (`-vvv`).
    pub(crate) flags: Vec<&'static str>,
}

impl Gate {
    pub(crate) fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
            flags: Vec::new(),
        }
    }

    /// Writes the config: `issuer` is the value of `issuer:`, `extra` more top-level lines.
    pub(crate) fn configure(&self, issuer: &str, extra: &str, certs: &[(&str, &[&str])]) {
        let mut text = format!(
            "issuer: {issuer}\nhost: gate.example.test\nstate_dir: {state}\n\
             cert_dir: {certs_dir}\ngroup: {KEY_GROUP}\n{extra}certs:\n",
            state = self.state_dir().display(),
            certs_dir = self.cert_dir().display(),
        );
        text.push_str(&certs_yaml(certs));
        std::fs::write(self.config(), text).expect("write config");
    }

    pub(crate) fn config(&self) -> PathBuf {
        self.dir.path().join("fleetcert.yaml")
    }

    pub(crate) fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub(crate) fn cert_dir(&self) -> PathBuf {
        self.dir.path().join("certs")
    }

    /// `<cert_dir>/<dir>/<file>`.
    pub(crate) fn file(&self, dir: &str, file: &str) -> PathBuf {
        self.cert_dir().join(dir).join(file)
    }

    /// Runs `fleetcert <command> --config <ours> <more>`; then checks that neither stream
    /// shows any private key on disk, the CA's included (it lies in this directory too).
    pub(crate) fn run(&self, command: &str, more: &[&str]) -> Run {
        let config = self.config();
        let mut args: Vec<&OsStr> = vec![command.as_ref(), "--config".as_ref(), config.as_ref()];
        args.extend(more.iter().map(OsStr::new));
        args.extend(self.flags.iter().map(OsStr::new));
        let run = fleetcert(&args);
        assert_no_secret(&run, command, &secrets_below(&[self.dir.path().to_owned()]));
        run
    }

    pub(crate) fn request_ok(&self) -> Value {
        self.run("request", &[]).expect_code(0).json()
    }

    pub(crate) fn finalize_ok(&self) -> Value {
        self.run("finalize", &[]).expect_code(0).json()
    }

    /// `request` refuses the config with exit 2 and one line holding `needle`: that line.
    #[track_caller]
    pub(crate) fn refused(&self, needle: &str) -> String {
        let run = self.run("request", &[]);
        run.expect_code(2);
        assert!(
            run.stdout.is_empty(),
            "a report with exit 2: {}",
            run.stdout
        );
        assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
        assert!(
            run.stderr.contains(needle),
            "{needle:?} not in {}",
            run.stderr
        );
        run.stderr.clone()
    }

    /// The saved local orders, by certificate.
    pub(crate) fn local_orders(&self) -> Value {
        let path = self.state_dir().join("local-orders.json");
        let text = std::fs::read_to_string(path).expect("local orders saved");
        serde_json::from_str::<Value>(&text).expect("JSON")["orders"].clone()
    }
}

/// A CI CA in `dir`: openssl's root and intermediate, the intermediate signing (its file
/// holds the intermediate, then the root, as `issuer.local-ca.cert` takes a CA with its own
/// issuers), and the root what clients trust. The key is 0600, as fleetcert wants it.
pub(crate) struct CiCa {
    pub(crate) ca: TestCa,
    pub(crate) cert: PathBuf,
}

impl CiCa {
    pub(crate) fn new(dir: &Path) -> Self {
        let ca = TestCa::new(dir);
        let cert = dir.join("ci-ca.pem");
        let mut both = std::fs::read(ca.intermediate()).expect("intermediate");
        both.extend(std::fs::read(ca.root()).expect("root"));
        std::fs::write(&cert, both).expect("write ci-ca.pem");
        set_mode(&ca.intermediate_key(), 0o600);
        Self { ca, cert }
    }

    /// `issuer:` naming this CA, with `options` (`, lifetime: 6s`) added.
    pub(crate) fn issuer(&self, options: &str) -> String {
        local_ca(&self.cert, &self.ca.intermediate_key(), options)
    }

    /// What the hosts under test trust.
    pub(crate) fn root(&self) -> PathBuf {
        self.ca.root()
    }
}

/// `issuer: {local-ca: ...}` with these files and `options`.
pub(crate) fn local_ca(cert: &Path, key: &Path, options: &str) -> String {
    format!(
        "{{local-ca: {{cert: {}, key: {}{options}}}}}",
        cert.display(),
        key.display()
    )
}

pub(crate) fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}
