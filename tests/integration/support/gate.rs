//! A gate job's host: fleetcert with a test issuer (`self-signed`, `local-ca`), no CA, no
//! signing zone, no resolver; and the CI CA a `local-ca` issuer signs with.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use super::config::HostConfig;
use super::fixture::{HostDir, KEY_GROUP, assert_no_secret, secrets_below};
use super::services::TestCa;
use super::util::{Run, fleetcert};

/// A host of a gate job: its config, state and certificates in a temporary directory; no
/// CA, no signing zone, no resolver.
pub(crate) struct Gate {
    /// Its config, state and certificates (the gate derefs to it).
    files: HostDir,
    /// Extra command-line flags for every run (`-vvv`).
    pub(crate) flags: Vec<&'static str>,
}

impl std::ops::Deref for Gate {
    type Target = HostDir;

    fn deref(&self) -> &HostDir {
        &self.files
    }
}

impl Gate {
    pub(crate) fn new() -> Self {
        Self {
            files: HostDir::new(),
            flags: Vec::new(),
        }
    }

    /// The config of this gate's host: `issuer` signs, no certificate yet.
    pub(crate) fn host_config(&self, issuer: impl Serialize) -> HostConfig {
        let mut config = HostConfig::gate(issuer, self.dir.path());
        config.host = Some("gate.example.test".to_owned());
        config.group = Some(KEY_GROUP.to_owned());
        config
    }

    /// Writes the config: `issuer` signs (`self-signed`, [`CiCa::issuer`]), `extra` more
    /// top-level lines, and `certs`.
    pub(crate) fn configure(&self, issuer: impl Serialize, extra: &str, certs: &[(&str, &[&str])]) {
        self.host_config(issuer)
            .lines(extra)
            .certs(certs)
            .write(&self.config());
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

    /// `issuer:` naming this CA.
    pub(crate) fn issuer(&self) -> Value {
        local_ca(&self.cert, &self.ca.intermediate_key())
    }

    /// `issuer:` naming this CA, with `key: value` added (`lifetime: 9s`).
    pub(crate) fn issuer_with(&self, key: &str, value: impl Serialize) -> Value {
        let mut issuer = self.issuer();
        issuer["local-ca"][key] = serde_json::to_value(value).expect("a JSON value");
        issuer
    }

    /// What the hosts under test trust.
    pub(crate) fn root(&self) -> PathBuf {
        self.ca.root()
    }
}

/// `issuer: {local-ca: ...}` with these files.
pub(crate) fn local_ca(cert: &Path, key: &Path) -> Value {
    serde_json::json!({"local-ca": {"cert": cert, "key": key}})
}

pub(crate) fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}
