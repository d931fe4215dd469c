//! The shared fixture of the host-side tests: one host's config, state and certificates in a
//! temporary directory, run against a sandbox (or a fake CA in front of its Pebble).

use std::cell::RefCell;
use std::path::PathBuf;

use serde_json::Value;

use super::config::{Acme, HostConfig};
use super::sandbox::{Sandbox, SandboxBuilder};
use super::util::{Run, fleetcert, snapshot};

/// The group the fixture's config names for private keys: not root's own, so a key left
/// with the process's group would be noticed.
pub(crate) const KEY_GROUP: &str = "daemon";

/// A sandbox whose Pebble reuses no authorization.
pub(crate) fn sandbox() -> SandboxBuilder {
    Sandbox::builder().pebble_env("PEBBLE_AUTHZREUSE", "0")
}

/// Where a host's files live: its config, state and certificates in one temporary
/// directory ([`Host`] and the gate's host deref to it).
pub(crate) struct HostDir {
    pub(crate) dir: tempfile::TempDir,
}

impl HostDir {
    pub(crate) fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
        }
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

    /// `<cert_dir>/<cert>/<file>` in the default layout (`<dir>` in acme.sh's).
    pub(crate) fn file(&self, cert: &str, file: &str) -> PathBuf {
        self.cert_dir().join(cert).join(file)
    }
}

impl std::ops::Deref for Host<'_> {
    type Target = HostDir;

    fn deref(&self) -> &HostDir {
        &self.files
    }
}

/// One host: a temporary directory with its config, state and certificates, run against `sb`.
///
/// Every run's stdout and stderr is checked against every private key on disk right after
/// it, so no test can print a key unnoticed.
pub(crate) struct Host<'s> {
    pub(crate) sb: &'s Sandbox,
    /// Its config, state and certificates (the host derefs to it).
    files: HostDir,
    /// The CA's directory URL: the sandbox's Pebble, or a fake in front of it.
    directory: String,
    /// `host:` in the config: the name its token documents carry.
    name: String,
    /// Extra command-line flags for every run (`-vv` for the logging test).
    pub(crate) flags: RefCell<Vec<String>>,
}

impl<'s> Host<'s> {
    /// A host with these certificates and the fixture's defaults.
    pub(crate) fn new(sb: &'s Sandbox, certs: &[(&str, &[&str])]) -> Self {
        Self::with_directory(sb, sb.acme_directory(), certs)
    }

    /// A host whose CA is at `directory` instead of the sandbox's Pebble.
    pub(crate) fn with_directory(
        sb: &'s Sandbox,
        directory: &str,
        certs: &[(&str, &[&str])],
    ) -> Self {
        Self::named(sb, directory, "host1.example.test", certs)
    }

    /// A host called `name` (`host:`), so that several hosts can publish into one sandbox.
    pub(crate) fn named(
        sb: &'s Sandbox,
        directory: &str,
        name: &str,
        certs: &[(&str, &[&str])],
    ) -> Self {
        let host = Self {
            sb,
            files: HostDir::new(),
            directory: directory.to_owned(),
            name: name.to_owned(),
            flags: RefCell::new(Vec::new()),
        };
        host.configure("", certs);
        host
    }

    /// The fixture's config for this host, no certificate yet: a test changes what it needs
    /// and hands it to [`write_config`](Self::write_config).
    pub(crate) fn host_config(&self) -> HostConfig {
        let mut acme = Acme::new(&self.directory);
        acme.ca_bundle = Some(self.sb.ca_bundle());
        let mut config = HostConfig::new(acme, &self.name, self.sb.resolver(), self.dir.path());
        config.group = Some(KEY_GROUP.to_owned());
        config
    }

    /// Writes `config` as this host's config.
    pub(crate) fn write_config(&self, config: &HostConfig) {
        config.write(&self.config());
    }

    /// Rewrites the config: the fixture's with `extra`, top-level YAML lines
    /// (`key: rsa-2048\n`), and `certs`.
    pub(crate) fn configure(&self, extra: &str, certs: &[(&str, &[&str])]) {
        self.write_config(&self.host_config().lines(extra).certs(certs));
    }

    /// `host:` in the config.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The saved order of `cert`, if any.
    pub(crate) fn saved_order(&self, cert: &str) -> Option<Value> {
        let path = self.state_dir().join("orders").join(format!("{cert}.json"));
        let text = std::fs::read_to_string(path).ok()?;
        Some(serde_json::from_str(&text).expect("order file is JSON"))
    }

    /// Runs `fleetcert <command> --config <ours> <more>`, then checks that no key leaked.
    pub(crate) fn run(&self, command: &str, more: &[&str]) -> Run {
        let config = self.config();
        let mut args: Vec<&str> = vec![command, "--config", config.to_str().expect("utf-8")];
        args.extend(more);
        let flags = self.flags.borrow();
        args.extend(flags.iter().map(String::as_str));
        let run = fleetcert(&args);
        self.assert_no_secret_in(&run, command);
        run
    }

    pub(crate) fn request(&self) -> Run {
        self.run("request", &[])
    }

    pub(crate) fn finalize(&self) -> Run {
        self.run("finalize", &[])
    }

    /// `request` that must succeed; its token document.
    pub(crate) fn request_ok(&self) -> Value {
        self.request().expect_code(0).json()
    }

    /// `finalize` that must succeed; its report.
    pub(crate) fn finalize_ok(&self) -> Value {
        self.finalize().expect_code(0).json()
    }

    /// Places exactly the token document's records (the stand-in for `publish`).
    pub(crate) fn place(&self, document: &Value) {
        self.sb.place_document(document);
    }

    /// request, place, finalize, all successful; the finalize report.
    pub(crate) fn issue(&self) -> Value {
        let document = self.request_ok();
        self.place(&document);
        let report = self.finalize_ok();
        assert_eq!(report["changed"], true, "nothing issued: {report:#}");
        report
    }

    /// Every secret fleetcert keeps on disk: private key bodies and the account key.
    pub(crate) fn secrets(&self) -> Vec<String> {
        secrets_below(&[self.cert_dir(), self.state_dir()])
    }

    #[track_caller]
    pub(crate) fn assert_no_secret_in(&self, run: &Run, command: &str) {
        assert_no_secret(run, command, &self.secrets());
    }
}

/// The entries of `certs:` (after the line `certs:`), one a line.
pub(crate) fn certs_yaml(certs: &[(&str, &[&str])]) -> String {
    let mut text = String::new();
    for (cert, names) in certs {
        let quoted: Vec<String> = names.iter().map(|name| format!("\"{name}\"")).collect();
        text.push_str(&format!("  {cert}: [{}]\n", quoted.join(", ")));
    }
    text
}

/// Every secret below `roots`: private key bodies (PEM) and ACME account keys.
pub(crate) fn secrets_below(roots: &[PathBuf]) -> Vec<String> {
    let mut secrets = Vec::new();
    for root in roots {
        for (path, bytes) in snapshot(root) {
            let text = String::from_utf8_lossy(&bytes);
            if text.contains("PRIVATE KEY") {
                // Each base64 line of the body; the shortest last line is skipped.
                secrets.extend(
                    text.lines()
                        .filter(|line| !line.starts_with("-----") && line.len() >= 32)
                        .map(str::to_owned),
                );
            } else if path.ends_with("account.json") {
                let file: Value = serde_json::from_str(&text).expect("account.json");
                for account in file["accounts"].as_object().expect("accounts").values() {
                    let key = account["key_pkcs8"].as_str().expect("key_pkcs8");
                    secrets.push(key.to_owned());
                }
            }
        }
    }
    secrets
}

/// Panics when `run` printed a PEM private key or any of `secrets`.
#[track_caller]
pub(crate) fn assert_no_secret(run: &Run, command: &str, secrets: &[String]) {
    for stream in [&run.stdout, &run.stderr] {
        assert!(
            !stream.contains("PRIVATE KEY"),
            "{command} printed a PEM private key"
        );
        for secret in secrets {
            assert!(
                !stream.contains(secret),
                "{command} printed (part of) a private key"
            );
        }
    }
}

pub(crate) use super::sandbox::document_records as records;

/// The entry named `name` of a report's (or a token document's) `certs` list.
pub(crate) fn cert<'v>(report: &'v Value, name: &str) -> &'v Value {
    report["certs"]
        .as_array()
        .expect("certs is a list")
        .iter()
        .find(|cert| cert["name"] == name)
        .unwrap_or_else(|| panic!("no cert {name} in {report:#}"))
}
