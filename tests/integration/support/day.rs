//! One host's day against the sandbox (request, publish, finalize, as the playbook runs
//! them), a run killed at a crash point (src/crash.rs), and what must hold after either: the
//! set a service reads is whole, no temporary file is left, keys stay private.
//!
//! The host-side tests share one sandbox (each test is its own host, with names of its own,
//! publishing through the real `fleetcert publish`, whose lock and ledger keep them apart).

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use serde_json::Value;

use super::config::ZoneConfig;
use super::fixture::{Host, sandbox};
use super::sandbox::Sandbox;
use super::util::{Run, assert_key_matches, binary, fleetcert, key_group_gid, tree};

/// The variable that names the point to die at (src/crash.rs).
const CRASH_AT: &str = "FLEETCERT_CRASH_AT";
/// The certificate every test renews.
pub(crate) const CERT: &str = "main";
/// The files a service reads, in the default layout.
pub(crate) const SERVICE_FILES: [&str; 4] =
    ["privkey.pem", "cert.pem", "chain.pem", "fullchain.pem"];
/// What a kill leaves under a temporary name (src/store.rs).
const TEMP_MARK: &str = ".tmp.";

/// The sandbox of the host-side tests, started by the first and stopped after the last.
pub(crate) fn shared_sandbox() -> Arc<Sandbox> {
    static SHARED: Mutex<Weak<Sandbox>> = Mutex::new(Weak::new());
    shared(&SHARED, || sandbox().start())
}

/// What `slot` holds while a test uses it, else a new one from `start`: shared by the tests
/// that run at once, dropped (its servers stopped) after the last.
pub(crate) fn shared<T>(slot: &Mutex<Weak<T>>, start: impl FnOnce() -> T) -> Arc<T> {
    let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(held) = slot.upgrade() {
        return held;
    }
    let held = Arc::new(start());
    *slot = Arc::downgrade(&held);
    held
}

/// A number of its own for each host in this test process: `host<N>` and `www<N>`
/// (the sandbox delegates 1..250; other tests use the low ones).
pub(crate) fn next_host_number() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(100);
    let number = NEXT.fetch_add(1, Ordering::Relaxed);
    assert!(number <= 250, "the sandbox delegates host1..host250 only");
    number
}

// --- the central side --------------------------------------------------------------------

/// The signing zone's config for `fleetcert publish` against a sandbox.
pub(crate) struct Zone {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Zone {
    /// A zone config publishing into `sb` (its primary reloaded by `rndc`, both servers
    /// waited for); `extra` is further YAML lines.
    pub(crate) fn new(sb: &Sandbox, extra: &str) -> Self {
        let rndc = sb.rndc();
        let rndc = rndc.to_str().expect("a UTF-8 path");
        Self::with(
            sb,
            &sb.signing_zone_file(),
            &[rndc, "reload", "acme.test"],
            extra,
        )
    }

    /// Like [`new`](Self::new), with another `zone_file` and `reload`.
    pub(crate) fn with(sb: &Sandbox, zone_file: &Path, reload: &[&str], extra: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("zone.yaml");
        ZoneConfig::zone_file(sb, zone_file, reload)
            .lines(extra)
            .write(&config);
        Self { dir, config }
    }

    pub(crate) fn config(&self) -> &Path {
        &self.config
    }

    /// A directory for the test's own files (reload scripts, markers).
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The arguments of `publish` with `host`'s token document, vouched for as `host`'s.
    pub(crate) fn args(&self, host: &str, document: &Value) -> Vec<String> {
        let tokens = self.dir.path().join(format!("{host}.json"));
        std::fs::write(&tokens, document.to_string()).expect("write tokens");
        vec![
            "publish".to_owned(),
            "--config".to_owned(),
            self.config.display().to_string(),
            "--tokens".to_owned(),
            format!("{host}={}", tokens.display()),
        ]
    }

    pub(crate) fn publish(&self, host: &Host<'_>, document: &Value) -> Run {
        self.publish_document(host.name(), document)
    }

    /// Publishes `document` as `host`'s.
    pub(crate) fn publish_document(&self, host: &str, document: &Value) -> Run {
        fleetcert(self.args(host, document))
    }
}

// --- a run that dies -----------------------------------------------------------------------

/// Runs fleetcert with `args`, asking it to die at `point`; panics unless SIGKILL ended it
/// (a point that is never reached would otherwise pass as a run that just succeeded).
pub(crate) fn run_killed_at<S: AsRef<OsStr>>(host: &Host<'_>, point: &str, args: &[S]) {
    let run = killed_at(point, args);
    host.assert_no_secret_in(&run, point);
}

/// Runs fleetcert with `args`, dying at `point`; panics unless SIGKILL ended it.
pub(crate) fn killed_at<S: AsRef<OsStr>>(point: &str, args: &[S]) -> Run {
    let out = Command::new(binary())
        .args(args)
        .env(CRASH_AT, point)
        .stdin(Stdio::null())
        .output()
        .expect("start fleetcert");
    let run = Run::of(&out);
    assert_eq!(
        out.status.signal(),
        Some(nix::sys::signal::Signal::SIGKILL as i32),
        "{point} was not reached: the run ended with {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        run.stdout,
        run.stderr
    );
    run
}

/// `fleetcert <command> --config <host's>`, dying at `point`.
pub(crate) fn host_killed_at(host: &Host<'_>, command: &str, point: &str) {
    let config = host.config();
    run_killed_at(
        host,
        point,
        &[
            OsStr::new(command),
            OsStr::new("--config"),
            config.as_os_str(),
        ],
    );
}

// --- what a service reads ------------------------------------------------------------------

/// The bytes a service reads through the service-facing names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServiceSet {
    files: Vec<Vec<u8>>,
}

/// Which set a service reads after a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expect {
    Old,
    New,
}

impl ServiceSet {
    /// Reads the four files of `cert` as a service does (following the links).
    pub(crate) fn read(host: &Host<'_>, cert: &str) -> Self {
        Self::read_in(&host.cert_dir().join(cert))
    }

    /// Reads the four files of the certificate directory `dir` as a service does.
    pub(crate) fn read_in(dir: &Path) -> Self {
        Self {
            files: SERVICE_FILES
                .iter()
                .map(|file| {
                    let path = dir.join(file);
                    std::fs::read(&path).unwrap_or_else(|err| {
                        panic!("a service cannot read {}: {err}", path.display())
                    })
                })
                .collect(),
        }
    }

    fn key(&self) -> &[u8] {
        &self.files[0]
    }

    fn cert(&self) -> &[u8] {
        &self.files[1]
    }

    /// Key matches certificate, the full chain is the certificate and the chain, and the
    /// chain verifies against Pebble's root.
    #[track_caller]
    pub(crate) fn assert_consistent(&self, host: &Host<'_>, cert: &str) {
        self.assert_whole(&host.cert_dir().join(cert));
        host.sb
            .verify_chain(&host.file(cert, "fullchain.pem"))
            .unwrap_or_else(|err| panic!("the chain a service reads does not verify: {err}"));
    }

    /// Read from `dir`: the key matches the certificate, and the full chain is the
    /// certificate and the chain.
    #[track_caller]
    pub(crate) fn assert_whole(&self, dir: &Path) {
        let [_, leaf, chain, full] = [0, 1, 2, 3].map(|index| &self.files[index]);
        assert_eq!(
            *full,
            [leaf.as_slice(), chain.as_slice()].concat(),
            "fullchain.pem is not cert.pem + chain.pem"
        );
        assert_key_matches(&dir.join("privkey.pem"), &dir.join("cert.pem"));
    }

    /// The old set byte for byte, or a new set: another key and another certificate.
    #[track_caller]
    pub(crate) fn assert_is(&self, expect: Expect, old: &Self) {
        match expect {
            Expect::Old => assert!(
                self == old,
                "a service reads something else than the old set"
            ),
            Expect::New => assert!(
                self.key() != old.key() && self.cert() != old.cert(),
                "a service still reads the old key or certificate"
            ),
        }
    }
}

// --- what is on disk ------------------------------------------------------------------------

/// The temporary files below `root`.
pub(crate) fn temporaries(root: &Path) -> Vec<PathBuf> {
    tree(root)
        .into_iter()
        .map(|(path, _)| path)
        .filter(|path| {
            path.file_name()
                .is_some_and(|name| name.to_string_lossy().contains(TEMP_MARK))
        })
        .collect()
}

/// The version directories of a certificate (`..<timestamp>`).
pub(crate) fn versions(host: &Host<'_>, cert: &str) -> Vec<String> {
    versions_in(&host.cert_dir().join(cert))
}

/// The version directories in the certificate directory `dir`.
pub(crate) fn versions_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("list the certificate's directory")
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("..") && name != "..data")
        .collect()
}

/// No temporary file where a service looks: beside the service-facing names, and in the
/// version they lead to.
#[track_caller]
pub(crate) fn assert_no_temporary_where_services_look(host: &Host<'_>, cert: &str) {
    assert_no_temporary_in(&host.cert_dir().join(cert));
}

/// No temporary file in the certificate directory `dir` or in the version it leads to.
#[track_caller]
pub(crate) fn assert_no_temporary_in(dir: &Path) {
    let dir = dir.to_path_buf();
    let mut looked = vec![dir.clone()];
    if let Ok(current) = std::fs::read_link(dir.join("..data")) {
        looked.push(dir.join(current));
    }
    for place in looked {
        let temps: Vec<String> = std::fs::read_dir(&place)
            .expect("list")
            .flatten()
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|name| name.contains(TEMP_MARK))
            .collect();
        assert!(
            temps.is_empty(),
            "temporary files in {}: {temps:?}",
            place.display()
        );
    }
}

/// Every private key fleetcert keeps is root's, 0640 with the key group in the certificate
/// directory and 0600 in the state directory; `nobody` cannot read one, while a member of
/// the key group reads the service-facing key (so the refusal is not for another reason).
#[track_caller]
pub(crate) fn assert_keys_private(host: &Host<'_>) {
    assert_keys_private_in(&host.cert_dir(), &host.state_dir());
}

/// [`assert_keys_private`] for a host whose certificates are in `cert_dir` and whose state
/// is in `state_dir`.
#[track_caller]
pub(crate) fn assert_keys_private_in(cert_dir: &Path, state_dir: &Path) {
    let group = key_group_gid();
    let mut keys = Vec::new();
    for (root, mode, gid) in [(cert_dir, 0o640, Some(group)), (state_dir, 0o600, None)] {
        for (path, meta) in tree(root) {
            if !meta.is_file() {
                continue;
            }
            let text = std::fs::read(&path).expect("read");
            if !String::from_utf8_lossy(&text).contains("PRIVATE KEY") {
                continue;
            }
            assert_eq!(meta.uid(), 0, "{} is not root's", path.display());
            assert_eq!(meta.mode() & 0o7777, mode, "mode of {}", path.display());
            if let Some(gid) = gid {
                assert_eq!(meta.gid(), gid, "group of {}", path.display());
            }
            keys.push(path);
        }
    }
    assert!(!keys.is_empty(), "no private key on disk at all");
    for key in &keys {
        assert!(
            !read_as(key, "65534").status.success(),
            "nobody can read {}",
            key.display()
        );
    }
    let service_key = cert_dir.join(CERT).join("privkey.pem");
    if service_key.exists() {
        let read = read_as(&service_key, &group.to_string());
        assert!(
            read.status.success(),
            "the key group cannot read {}: {}",
            service_key.display(),
            String::from_utf8_lossy(&read.stderr)
        );
    }
}

/// `cat path` as user nobody with primary group `gid` and no other group.
pub(crate) fn read_as(path: &Path, gid: &str) -> std::process::Output {
    Command::new("setpriv")
        .args([
            "--reuid=65534",
            &format!("--regid={gid}"),
            "--clear-groups",
            "cat",
        ])
        .arg(path)
        .stdout(Stdio::null())
        .output()
        .expect("run setpriv")
}

/// Everything the tests check after a kill (see the module doc); returns what a service reads.
#[track_caller]
pub(crate) fn assert_safe_after_kill(
    host: &Host<'_>,
    expect: Expect,
    old: &ServiceSet,
) -> ServiceSet {
    let now = ServiceSet::read(host, CERT);
    now.assert_consistent(host, CERT);
    now.assert_is(expect, old);
    assert_no_temporary_where_services_look(host, CERT);
    assert_keys_private(host);
    now
}

/// What [`pebble_count`] counts.
pub(crate) const ORDERS: &str = "orders in the db";
pub(crate) const ACCOUNTS: &str = "accounts in memory";

/// How many orders or accounts Pebble holds ([`ORDERS`], [`ACCOUNTS`]), from its log.
pub(crate) fn pebble_count(sb: &Sandbox, what: &str) -> usize {
    log_count(&sb.dir().join("logs/pebble.log"), what)
}

/// The last count of `what` in a Pebble log at `path` ("There are now N orders in the db").
pub(crate) fn log_count(path: &Path, what: &str) -> usize {
    let log = std::fs::read_to_string(path)
        .unwrap_or_else(|err| panic!("read {}: {err}", path.display()));
    log.lines()
        .rev()
        .filter_map(|line| line.split_once("There are now ")?.1.strip_suffix(what))
        .find_map(|count| count.trim().parse().ok())
        .unwrap_or(0)
}

// --- the daily run -----------------------------------------------------------------------------

/// One host of a test, its names and its zone.
pub(crate) struct Day<'s> {
    pub(crate) host: Host<'s>,
    pub(crate) zone: &'s Zone,
    names: Names,
}

/// A host's two names, `host<n>` and `www<n>`, and how its config is written.
pub(crate) struct Names {
    names: [String; 2],
    /// Top-level config keys (a mapping), or null.
    extra: Value,
    /// Keys of the certificate besides its names (`pkcs12: {...}`, a mapping), or null.
    options: Value,
}

impl Names {
    /// The names of host number `n`, with these config keys and certificate keys (each a
    /// mapping, or null for none).
    pub(crate) fn new(n: u32, extra: Value, options: Value) -> Self {
        Self {
            names: [
                format!("host{n}.example.test"),
                format!("www{n}.example.test"),
            ],
            extra,
            options,
        }
    }

    /// The host's name (its first certificate name).
    pub(crate) fn host(&self) -> &str {
        &self.names[0]
    }

    /// Both names.
    pub(crate) fn all(&self) -> &[String] {
        &self.names
    }

    /// Gives `host`'s certificate the first `count` names: another set makes it due at
    /// once. A name new to the set always has a record to publish, even when Pebble reuses
    /// the other's authorization.
    pub(crate) fn configure(&self, host: &Host<'_>, count: usize) {
        let names: Vec<&str> = self.names[..count].iter().map(String::as_str).collect();
        let config = host.host_config().merge(&self.extra);
        let config = if self.options.is_null() {
            config.cert(CERT, &names)
        } else {
            config.cert_with(CERT, &names, &self.options)
        };
        host.write_config(&config);
    }
}

impl<'s> Day<'s> {
    /// A host numbered `n` whose certificate names `host<n>`, not issued yet.
    pub(crate) fn new(sb: &'s Sandbox, zone: &'s Zone, n: u32) -> Self {
        Self::with(
            sb,
            zone,
            Names::new(n, Value::Null, Value::Null),
            sb.acme_directory(),
        )
    }

    /// A host with these names and config, ordering from the CA at `directory`, its
    /// certificate not issued yet.
    pub(crate) fn with(sb: &'s Sandbox, zone: &'s Zone, names: Names, directory: &str) -> Self {
        let host = Host::named(sb, directory, names.host(), &[]);
        let day = Self { host, zone, names };
        day.names(1);
        day
    }

    /// Gives the certificate the first `count` names ([`Names::configure`]).
    pub(crate) fn names(&self, count: usize) {
        self.names.configure(&self.host, count);
    }

    /// request, then publish its document; both must succeed.
    pub(crate) fn request_and_publish(&self) -> Value {
        let document = self.host.request_ok();
        self.zone.publish(&self.host, &document).expect_code(0);
        document
    }

    /// The whole day as the playbook runs it, every step successful; the finalize report.
    pub(crate) fn run(&self) -> Value {
        self.request_and_publish();
        self.host.finalize_ok()
    }

    /// A first certificate, then a second name, so that the next day renews it: the set a
    /// service reads before the renewal.
    pub(crate) fn issued_and_due(&self) -> ServiceSet {
        let report = self.run();
        assert_eq!(report["certs"][0]["status"], "issued", "{report:#}");
        let old = ServiceSet::read(&self.host, CERT);
        old.assert_consistent(&self.host, CERT);
        self.names(2);
        old
    }

    /// The next ordinary day after a kill: it must complete without help and leave the new
    /// set, one version, no temporary file and no state. Returns what a service reads.
    #[track_caller]
    pub(crate) fn recovers(&self, old: &ServiceSet) -> ServiceSet {
        let report = self.run();
        assert_eq!(report["changed"], true, "{report:#}");
        let now = ServiceSet::read(&self.host, CERT);
        now.assert_consistent(&self.host, CERT);
        now.assert_is(Expect::New, old);
        self.assert_settled();
        now
    }

    /// See [`assert_settled`].
    #[track_caller]
    pub(crate) fn assert_settled(&self) {
        assert_settled(&self.host);
    }
}

/// One version, no temporary file anywhere, no order or key left in the state directory,
/// keys private; and the next request orders nothing.
#[track_caller]
pub(crate) fn assert_settled(host: &Host<'_>) {
    assert_eq!(versions(host, CERT).len(), 1, "{:?}", versions(host, CERT));
    for root in [host.cert_dir(), host.state_dir()] {
        assert_eq!(temporaries(&root), Vec::<PathBuf>::new());
    }
    assert!(host.saved_order(CERT).is_none(), "the order is still saved");
    let keys = host.state_dir().join("keys");
    let left: BTreeSet<String> = std::fs::read_dir(&keys)
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "keys left in {}: {left:?}", keys.display());
    assert_keys_private(host);
    let again = host.request_ok();
    assert!(
        again["records"].as_array().is_some_and(Vec::is_empty) && again["changed"] == false,
        "the day after orders again: {again:#}"
    );
}

/// A DNS-01-shaped value (43 base64url characters), different on every call.
pub(crate) fn value() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("{:A>43}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A token document of `host` with one record (a fresh value) per identifier, per-name mode.
pub(crate) fn token_document(host: &str, identifiers: &[&str]) -> Value {
    let records: Vec<Value> = identifiers
        .iter()
        .map(|id| {
            serde_json::json!({"name": format!("{id}.acme.test."), "value": value(),
                               "cert": "main", "identifier": id})
        })
        .collect();
    serde_json::json!({"version": 1, "host": host, "records": records,
        "certs": [{"name": "main", "status": "pending", "not_after": null, "reason": "test"}]})
}

/// Writes `secret` and a newline to a new 0600 file at `path` (a TSIG secret, a password).
pub(crate) fn write_secret(path: &Path, secret: &str) {
    std::fs::write(path, format!("{secret}\n")).expect("write the secret");
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod");
}

/// The TXT records of `acme.test` that `server` serves, by AXFR: (name, value).
pub(crate) fn served_txt(sb: &Sandbox, server: &str) -> BTreeSet<(String, String)> {
    sb.axfr(server, true)
        .iter()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.get(3) == Some(&"TXT"))
                .then(|| (fields[0].to_owned(), fields[4..].concat().replace('"', "")))
        })
        .collect()
}
