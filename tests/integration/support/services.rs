//! The services a certificate ends up in — nginx, ZooKeeper and node_exporter from Debian —
//! each started by `tests/sandbox/services.sh` on 127.0.0.1 in a temporary directory of its
//! own (docs/dev/sandbox.md), and the probes a test uses on them: the leaf a TLS server serves
//! (`openssl s_client`), the chain `curl` verifies, a metric node_exporter exposes, and
//! `promtool`. Paths go in, ports come out.
//!
//! ```ignore
//! let ca = TestCa::new(&dir.join("ca"));
//! let cert = ca.issue("host1.example.test", &dir.join("live"));
//! let nginx = Nginx::start(&cert.fullchain, &cert.key, "host1.example.test");
//! assert_eq!(nginx.served_leaf()?, Leaf::of_file(&cert.cert));
//! curl_leaf(nginx.port(), nginx.name(), ca.root())?;   // the chain verifies
//! // ... replace the files, then:
//! nginx.reload();                                      // returns once the old workers are gone
//!
//! let zk = Zookeeper::start(&keystore, &password_file);
//! served_leaf(zk.address(), "host1.example.test", Some(ca.root()))?;
//! zk.restart();                                        // reads the keystore again
//!
//! let exporter = NodeExporter::start(&textfile_dir);
//! exporter.metric("fleetcert_certificate_expiry_timestamp_seconds", &[("cert", "www")]);
//! promtool_check_metrics(&textfile_dir.join("fleetcert.prom"))?;
//! ```
//!
//! Every service has its own port (from the port registry `sandbox.sh` uses, so nothing
//! collides with a sandbox or another service). Dropping one stops it (also when the test
//! panics; its directory is then kept for the logs); if the test process is killed, the
//! script's watchdog stops it.

// A helper API: no single test uses all of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io::Write as _;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::sandbox::{ScriptDir, pem_certificates, run};
use super::util::openssl;

/// How long one TLS probe may take before it counts as unreachable.
const PROBE_TIMEOUT_SECONDS: &str = "10";

/// The path of `tests/sandbox/services.sh`.
pub(crate) fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sandbox/services.sh")
}

/// One running service, of any kind. Dropping it stops the server.
pub(crate) struct Service {
    dir: ScriptDir,
    startup: Duration,
}

impl Service {
    /// `services.sh start DIR kind args...`; panics with the script's message when the
    /// server does not come up.
    fn start(kind: &str, args: &[(&str, &OsStr)]) -> Self {
        let mut argv: Vec<OsString> = vec![kind.into()];
        for (flag, value) in args {
            argv.extend([OsString::from(flag), value.to_os_string()]);
        }
        let began = Instant::now();
        let dir = ScriptDir::start(
            script(),
            &format!("fleetcert-{kind}-"),
            "service.env",
            &argv,
        );
        Self {
            dir,
            startup: began.elapsed(),
        }
    }

    /// The service's directory (its configuration, `logs/`, `service.env`).
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A value from `service.env`, e.g. `CONFIG`, `LOG`.
    pub(crate) fn var(&self, key: &str) -> &str {
        self.dir.var(key)
    }

    pub(crate) fn port(&self) -> u16 {
        let port = self.var("PORT");
        port.parse()
            .unwrap_or_else(|_| panic!("service.env has PORT={port}"))
    }

    /// `127.0.0.1:PORT`: what a certificate's `probe:` lists.
    pub(crate) fn address(&self) -> &str {
        self.var("ADDRESS")
    }

    /// The server's log (the one before the last restart is `NAME.previous.log` beside it).
    pub(crate) fn log(&self) -> PathBuf {
        PathBuf::from(self.var("LOG"))
    }

    /// How long `start` took, until the server answered as the tests need it.
    pub(crate) fn startup(&self) -> Duration {
        self.startup
    }

    /// Stops the server and starts it again on the same port; returns once it answers, with
    /// how long that took. Panics when it does not come back.
    pub(crate) fn restart(&self) -> Duration {
        let began = Instant::now();
        self.dir.run_ok("restart", &[]);
        began.elapsed()
    }

    /// An executable that does [`restart`](Self::restart): for a `reload:` command or an
    /// Ansible handler.
    pub(crate) fn restart_command(&self) -> PathBuf {
        PathBuf::from(self.var("RESTART"))
    }

    /// Stops the server (its port stays reserved: `restart` brings it back there).
    pub(crate) fn stop(&self) {
        self.dir.run_ok("stop", &[]);
    }
}

/// Each kind of service is a [`Service`] (port, restart, stop, ...) with methods of its own.
macro_rules! service_kind {
    ($($kind:ident),*) => {$(
        impl Deref for $kind {
            type Target = Service;
            fn deref(&self) -> &Service {
                &self.0
            }
        }
    )*};
}
service_kind!(Nginx, Zookeeper, NodeExporter);

/// nginx serving one TLS site: `listen 127.0.0.1:PORT ssl`, `server_name NAME`, the given
/// certificate file (the full chain) and key, answering every request with 200.
pub(crate) struct Nginx(Service);

impl Nginx {
    pub(crate) fn start(fullchain: &Path, key: &Path, name: &str) -> Self {
        Self(Service::start(
            "nginx",
            &[
                ("--cert", fullchain.as_os_str()),
                ("--key", key.as_os_str()),
                ("--name", OsStr::new(name)),
            ],
        ))
    }

    /// The site's name (`server_name`, and the SNI name the probes send).
    pub(crate) fn name(&self) -> &str {
        self.var("NAME")
    }

    /// `nginx -t`, then `nginx -s reload`, and wait until every old worker has exited, so
    /// that the next connection gets the new certificate. Panics when nginx refuses.
    pub(crate) fn reload(&self) {
        self.try_reload().unwrap_or_else(|err| panic!("{err}"));
    }

    /// [`reload`](Self::reload), with nginx's refusal (say, a key that does not match the
    /// certificate) as `Err`; nginx then keeps serving what it had.
    pub(crate) fn try_reload(&self) -> Result<(), String> {
        let out = self.0.dir.run("reload", &[]);
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// An executable that does [`reload`](Self::reload): for a `reload:` command or an
    /// Ansible handler.
    pub(crate) fn reload_command(&self) -> PathBuf {
        PathBuf::from(self.var("RELOAD"))
    }

    /// The leaf it serves for its name (see [`served_leaf`]), unverified.
    pub(crate) fn served_leaf(&self) -> Result<Leaf, String> {
        served_leaf(self.address(), self.name(), None)
    }
}

/// A standalone ZooKeeper 3.8 whose only port is the TLS client port (`secureClientPort`,
/// Netty connection factory), reading a PKCS#12 keystore and its password from a file
/// (`ssl.keyStore.passwordPath`; one trailing newline is ignored). It reads the keystore
/// once, at start-up: a new one is served after [`restart`](Service::restart).
pub(crate) struct Zookeeper(Service);

impl Zookeeper {
    pub(crate) fn start(keystore: &Path, password_file: &Path) -> Self {
        Self(Service::start(
            "zookeeper",
            &[
                ("--keystore", keystore.as_os_str()),
                ("--password-file", password_file.as_os_str()),
            ],
        ))
    }

    /// The path of its `zoo.cfg` (the `ssl.*` settings a production config needs too).
    pub(crate) fn config(&self) -> PathBuf {
        PathBuf::from(self.var("CONFIG"))
    }
}

/// node_exporter with only the textfile collector, reading `*.prom` in one directory at
/// every scrape.
pub(crate) struct NodeExporter(Service);

impl NodeExporter {
    pub(crate) fn start(textfile_dir: &Path) -> Self {
        Self(Service::start(
            "node-exporter",
            &[("--textfile-dir", textfile_dir.as_os_str())],
        ))
    }

    /// `http://127.0.0.1:PORT/metrics`
    pub(crate) fn metrics_url(&self) -> &str {
        self.var("METRICS_URL")
    }

    /// One scrape of `/metrics` over HTTP, as text.
    pub(crate) fn scrape(&self) -> String {
        super::util::run_ok(
            Command::new("curl")
                .args(["-sS", "--fail", "--max-time", "10"])
                .arg(self.metrics_url()),
        )
    }

    /// Every sample of metric `name` in one scrape.
    pub(crate) fn samples(&self, name: &str) -> Vec<Sample> {
        parse_samples(&self.scrape())
            .into_iter()
            .filter(|sample| sample.name == name)
            .collect()
    }

    /// The value of the one sample of `name` whose labels include `labels`; `None` when
    /// there is none; panics when several match (name more labels).
    pub(crate) fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let matching: Vec<Sample> = self
            .samples(name)
            .into_iter()
            .filter(|sample| {
                labels
                    .iter()
                    .all(|(key, value)| sample.labels.get(*key).map(String::as_str) == Some(value))
            })
            .collect();
        match matching.as_slice() {
            [] => None,
            [one] => Some(one.value),
            many => panic!(
                "{} samples of {name} match {labels:?}: {many:?}",
                many.len()
            ),
        }
    }

    /// `node_textfile_scrape_error`: 1 when a file in the directory could not be read or
    /// parsed (its metrics are then missing), 0 otherwise.
    pub(crate) fn textfile_scrape_error(&self) -> f64 {
        self.metric("node_textfile_scrape_error", &[])
            .expect("node_exporter exposes node_textfile_scrape_error")
    }
}

/// One sample of the Prometheus text format.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// The samples of a Prometheus text-format exposition, comments skipped; a line that does
/// not parse is skipped too (promtool is the judge of the format, not this).
pub(crate) fn parse_samples(text: &str) -> Vec<Sample> {
    text.lines().filter_map(parse_sample).collect()
}

fn parse_sample(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(['{', ' ', '\t'])?;
    let name = line[..name_end].to_owned();
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(inner)?;
        labels = parsed;
        rest = after;
    }
    // value [timestamp]
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// `key="value",...}` → the labels and what follows the `}`. Values unescape `\\`, `\"`
/// and `\n`, as the format defines.
fn parse_labels(mut text: &str) -> Option<(BTreeMap<String, String>, &str)> {
    let mut labels = BTreeMap::new();
    loop {
        text = text.trim_start_matches([',', ' ']);
        if let Some(after) = text.strip_prefix('}') {
            return Some((labels, after));
        }
        let (key, after_key) = text.split_once('=')?;
        let mut chars = after_key.strip_prefix('"')?.char_indices();
        let mut value = String::new();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (_, c) => value.push(c),
            }
        };
        labels.insert(key.trim().to_owned(), value);
        text = &after_key[1 + end + 1..];
    }
}

// --- TLS probes -------------------------------------------------------------------------

/// A certificate as the probes compare it: its serial (upper-case hex, no colons, no
/// leading zeros: how openssl, curl and keytool all compare equal) and the SHA-256
/// fingerprint of its DER (upper-case hex, no colons).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Leaf {
    pub serial: String,
    pub sha256: String,
}

impl Leaf {
    /// The first certificate of a PEM file (a leaf, or the leaf of a full chain).
    pub(crate) fn of_file(path: &Path) -> Self {
        let pem = std::fs::read_to_string(path)
            .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
        Self::of_pem(&pem).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
    }

    /// The first certificate in `pem` (any text around the PEM blocks is ignored).
    pub(crate) fn of_pem(pem: &str) -> Result<Self, String> {
        let first = pem_certificates(pem)
            .into_iter()
            .next()
            .ok_or_else(|| "no certificate in the text".to_owned())?;
        let text = run_with_stdin(
            Command::new("openssl").args(["x509", "-noout", "-serial", "-fingerprint", "-sha256"]),
            first.as_bytes(),
        )?;
        let field = |prefix: &str| {
            text.lines()
                .find_map(|line| line.split_once(prefix).map(|(_, value)| value.trim()))
                .ok_or_else(|| format!("openssl x509 printed no {prefix}: {text}"))
        };
        Ok(Self {
            serial: normalize_serial(field("serial=")?),
            sha256: field("Fingerprint=")?.replace(':', "").to_uppercase(),
        })
    }
}

/// A serial as openssl (`0A1B`), curl (`a1b`) or keytool (`a1b`) prints it → `A1B`.
pub(crate) fn normalize_serial(serial: &str) -> String {
    let hex: String = serial.replace(':', "").trim().to_uppercase();
    let trimmed = hex.trim_start_matches('0');
    if trimmed.is_empty() {
        "0".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// The leaf the TLS server at `address` (`ip:port`) serves for SNI `sni`, by `openssl
/// s_client`. With `ca`, the server's chain must verify against that root and the leaf
/// must name `sni` (`-verify_return_error -verify_hostname`), or it is `Err`, as is a
/// server that does not answer within 10 s.
pub(crate) fn served_leaf(address: &str, sni: &str, ca: Option<&Path>) -> Result<Leaf, String> {
    let mut cmd = Command::new("timeout");
    cmd.args([
        PROBE_TIMEOUT_SECONDS,
        "openssl",
        "s_client",
        "-connect",
        address,
    ])
    .args(["-servername", sni]);
    if let Some(ca) = ca {
        cmd.args(["-verify_return_error", "-verify_hostname", sni, "-CAfile"])
            .arg(ca);
    }
    let out = run(cmd.stdin(Stdio::null()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "openssl s_client to {address} (SNI {sni}) failed ({}): {}{stdout}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Leaf::of_pem(&stdout).map_err(|err| format!("{address} (SNI {sni}): {err}"))
}

/// `curl --cacert ca --resolve name:port:127.0.0.1 https://name:port/`: `Ok` with the leaf
/// when curl verifies the chain the server sends (so it sends its intermediates) and the
/// name, `Err` with curl's message otherwise.
pub(crate) fn curl_leaf(port: u16, name: &str, ca: &Path) -> Result<Leaf, String> {
    let out = run(Command::new("curl")
        .args(["-sS", "--max-time", PROBE_TIMEOUT_SECONDS, "--cacert"])
        .arg(ca)
        .arg("--resolve")
        .arg(format!("{name}:{port}:127.0.0.1"))
        .args(["-o", "/dev/null", "-w", "%{certs}"])
        .arg(format!("https://{name}:{port}/")));
    if !out.status.success() {
        return Err(format!(
            "curl https://{name}:{port}/ failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Leaf::of_pem(&String::from_utf8_lossy(&out.stdout))
}

// --- promtool, keytool ------------------------------------------------------------------

/// `promtool check metrics < file`: `Ok` with its output when it accepts the file (format
/// and lint: HELP, TYPE, naming), `Err` with its output when it does not.
pub(crate) fn promtool_check_metrics(file: &Path) -> Result<String, String> {
    let bytes =
        std::fs::read(file).unwrap_or_else(|err| panic!("cannot read {}: {err}", file.display()));
    run_with_stdin(Command::new("promtool").args(["check", "metrics"]), &bytes)
}

/// `promtool test rules file`: `Ok` when every test in it passes, `Err` with promtool's
/// report otherwise. Rule files are named in the test file, relative to it.
pub(crate) fn promtool_test_rules(test_file: &Path) -> Result<String, String> {
    output_result(run(Command::new("promtool")
        .args(["test", "rules"])
        .arg(test_file)))
}

/// `keytool -list -v` of a PKCS#12 keystore with the password from a file: `Ok` with the
/// listing (aliases, chains, serials in lower case), `Err` with keytool's message.
pub(crate) fn keytool_list(keystore: &Path, password_file: &Path) -> Result<String, String> {
    output_result(run(Command::new("keytool")
        .args(["-list", "-v", "-storetype", "PKCS12", "-keystore"])
        .arg(keystore)
        .arg("-storepass:file")
        .arg(password_file)))
}

/// A finished command's stdout and stderr: `Ok` when it succeeded, `Err` when not.
pub(crate) fn output_result(out: Output) -> Result<String, String> {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

fn run_with_stdin(cmd: &mut Command, input: &[u8]) -> Result<String, String> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot run {:?}: {err}", cmd.get_program()));
    if let Some(mut stdin) = child.stdin.take() {
        // A tool that exits before reading everything (bad input) closes the pipe: its
        // exit status says why, not this write.
        let _ = stdin.write_all(input);
    }
    output_result(child.wait_with_output().expect("wait for the child"))
}

// --- certificates for the tests -----------------------------------------------------------

/// A throwaway CA made with openssl: a root and an intermediate (EC P-256), which issues
/// leaves the way a public CA does, so that a server must send the intermediate for a
/// client that trusts only the root.
pub(crate) struct TestCa {
    dir: PathBuf,
}

/// One issued certificate, in the `layout: fleetcert` file names.
pub(crate) struct Issued {
    /// The leaf alone.
    pub cert: PathBuf,
    /// The intermediate.
    pub chain: PathBuf,
    /// Leaf, then intermediate: what nginx's `ssl_certificate` wants.
    pub fullchain: PathBuf,
    pub key: PathBuf,
}

impl TestCa {
    /// Makes the root and the intermediate in `dir` (created).
    pub(crate) fn new(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).expect("create the CA directory");
        let ca = Self {
            dir: dir.to_path_buf(),
        };
        new_key_request(&[
            OsStr::new("-x509"),
            OsStr::new("-days"),
            OsStr::new("30"),
            OsStr::new("-subj"),
            OsStr::new("/CN=fleetcert test root"),
            OsStr::new("-addext"),
            OsStr::new("basicConstraints=critical,CA:TRUE"),
            OsStr::new("-addext"),
            OsStr::new("keyUsage=critical,keyCertSign,cRLSign"),
            OsStr::new("-keyout"),
            dir.join("root.key").as_os_str(),
            OsStr::new("-out"),
            ca.root().as_os_str(),
        ]);
        ca.sign(
            "intermediate",
            "/CN=fleetcert test intermediate",
            "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n",
            "root",
            &dir.join("intermediate.key"),
            &ca.intermediate(),
        );
        ca
    }

    /// The root: what a client trusts (`--cacert`, `-CAfile`).
    pub(crate) fn root(&self) -> PathBuf {
        self.dir.join("root.pem")
    }

    pub(crate) fn intermediate(&self) -> PathBuf {
        self.dir.join("intermediate.pem")
    }

    /// The intermediate's key (it signs the leaves).
    pub(crate) fn intermediate_key(&self) -> PathBuf {
        self.dir.join("intermediate.key")
    }

    /// A new key and a leaf for `name` (serverAuth, SAN `DNS:name`, 30 days, a serial of
    /// its own), written as `cert.pem chain.pem fullchain.pem privkey.pem` into `dir`
    /// (created; existing files are replaced).
    pub(crate) fn issue(&self, name: &str, dir: &Path) -> Issued {
        std::fs::create_dir_all(dir).expect("create the certificate directory");
        let issued = Issued {
            cert: dir.join("cert.pem"),
            chain: dir.join("chain.pem"),
            fullchain: dir.join("fullchain.pem"),
            key: dir.join("privkey.pem"),
        };
        self.sign(
            "intermediate",
            &format!("/CN={name}"),
            &format!(
                "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
                 extendedKeyUsage=serverAuth\nsubjectAltName=DNS:{name}\n"
            ),
            "intermediate",
            &issued.key,
            &issued.cert,
        );
        let intermediate = std::fs::read(self.intermediate()).expect("read the intermediate");
        let mut fullchain = std::fs::read(&issued.cert).expect("read the leaf");
        fullchain.extend_from_slice(&intermediate);
        std::fs::write(&issued.chain, &intermediate).expect("write chain.pem");
        std::fs::write(&issued.fullchain, fullchain).expect("write fullchain.pem");
        issued
    }

    /// A new key at `key` and a certificate at `cert` for `subject` with the extensions
    /// `ext`, signed by `issuer` (`root` or `intermediate`).
    fn sign(&self, stem: &str, subject: &str, ext: &str, issuer: &str, key: &Path, cert: &Path) {
        let csr = self.dir.join(format!("{stem}.csr"));
        let ext_file = self.dir.join(format!("{stem}.ext"));
        std::fs::write(&ext_file, ext).expect("write the extensions");
        new_key_request(&[
            OsStr::new("-subj"),
            OsStr::new(subject),
            OsStr::new("-keyout"),
            key.as_os_str(),
            OsStr::new("-out"),
            csr.as_os_str(),
        ]);
        openssl(&[
            OsStr::new("x509"),
            OsStr::new("-req"),
            OsStr::new("-in"),
            csr.as_os_str(),
            OsStr::new("-CA"),
            self.dir.join(format!("{issuer}.pem")).as_os_str(),
            OsStr::new("-CAkey"),
            self.dir.join(format!("{issuer}.key")).as_os_str(),
            // A serial file per issuer, created with a random start: every leaf differs.
            OsStr::new("-CAserial"),
            self.dir.join(format!("{issuer}.srl")).as_os_str(),
            OsStr::new("-CAcreateserial"),
            OsStr::new("-days"),
            OsStr::new("30"),
            OsStr::new("-extfile"),
            ext_file.as_os_str(),
            OsStr::new("-out"),
            cert.as_os_str(),
        ]);
    }
}

/// `openssl req -new` with a new EC P-256 key, unencrypted, and `args`.
fn new_key_request(args: &[&OsStr]) {
    let mut all: Vec<&OsStr> = [
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ]
    .map(OsStr::new)
    .to_vec();
    all.extend_from_slice(args);
    openssl(&all);
}

/// `openssl pkcs12 -export` of an issued certificate (leaf, chain, key) under `alias`,
/// encrypted with the password in `password_file` (OpenSSL 3's defaults: PBES2 with
/// AES-256-CBC, HMAC-SHA256 MAC), written to `out`.
pub(crate) fn pkcs12_export(issued: &Issued, alias: &str, password_file: &Path, out: &Path) {
    let mut passout = OsString::from("file:");
    passout.push(password_file);
    openssl(&[
        OsStr::new("pkcs12"),
        OsStr::new("-export"),
        OsStr::new("-in"),
        issued.cert.as_os_str(),
        OsStr::new("-certfile"),
        issued.chain.as_os_str(),
        OsStr::new("-inkey"),
        issued.key.as_os_str(),
        OsStr::new("-name"),
        OsStr::new(alias),
        OsStr::new("-passout"),
        &passout,
        OsStr::new("-out"),
        out.as_os_str(),
    ]);
}

// --- smoke tests of the services and probes themselves -----------------------------------

const NAME: &str = "host1.example.test";

/// Moves the four files of `from` over those of `to`, one rename each, as an install would.
fn replace_files(from: &Issued, to: &Issued) {
    for (new, old) in [
        (&from.cert, &to.cert),
        (&from.chain, &to.chain),
        (&from.fullchain, &to.fullchain),
        (&from.key, &to.key),
    ] {
        std::fs::rename(new, old).expect("replace a certificate file");
    }
}

fn password_file(path: &Path, password: &str) -> PathBuf {
    std::fs::write(path, format!("{password}\n")).expect("write the password file");
    path.to_path_buf()
}

#[test]
fn nginx_serves_the_given_chain_and_the_new_one_after_reload() {
    let work = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new(&work.path().join("ca"));
    let live = ca.issue(NAME, &work.path().join("live"));
    let first = Leaf::of_file(&live.cert);
    let nginx = Nginx::start(&live.fullchain, &live.key, NAME);
    eprintln!("nginx started in {:?}", nginx.startup());

    assert_eq!(nginx.served_leaf(), Ok(first.clone()));
    assert_eq!(
        served_leaf(nginx.address(), NAME, Some(&ca.root())),
        Ok(first.clone())
    );
    assert_eq!(curl_leaf(nginx.port(), NAME, &ca.root()), Ok(first.clone()));

    // The verifying probes refuse what they must: another CA's root, another name.
    let other_ca = TestCa::new(&work.path().join("other-ca"));
    let err = curl_leaf(nginx.port(), NAME, &other_ca.root()).expect_err("other root");
    assert!(err.contains("certificate"), "curl said: {err}");
    served_leaf(nginx.address(), NAME, Some(&other_ca.root())).expect_err("other root");
    served_leaf(nginx.address(), "host2.example.test", Some(&ca.root()))
        .expect_err("a name the leaf does not carry");

    // New files on disk are not served until the reload ...
    let next = ca.issue(NAME, &work.path().join("next"));
    let second = Leaf::of_file(&next.cert);
    assert_ne!(first.serial, second.serial);
    replace_files(&next, &live);
    assert_eq!(
        nginx.served_leaf(),
        Ok(first.clone()),
        "served before the reload"
    );
    nginx.reload();
    assert_eq!(nginx.served_leaf(), Ok(second.clone()));
    assert_eq!(
        curl_leaf(nginx.port(), NAME, &ca.root()),
        Ok(second.clone())
    );

    // Stopped, it serves nothing; restarted, it is back on its port.
    nginx.stop();
    nginx
        .served_leaf()
        .expect_err("a stopped nginx serves nothing");
    nginx.restart();
    assert_eq!(nginx.served_leaf(), Ok(second.clone()));

    // A key that does not match makes the reload fail, and nginx keeps the old pair.
    let stray = ca.issue(NAME, &work.path().join("stray"));
    std::fs::rename(&stray.key, &live.key).expect("replace the key");
    let err = nginx.try_reload().expect_err("mismatched key");
    assert!(err.contains("key values mismatch"), "nginx said: {err}");
    assert_eq!(nginx.served_leaf(), Ok(second));
}

#[test]
fn nginx_without_the_intermediate_fails_the_curl_check() {
    let work = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new(&work.path().join("ca"));
    let live = ca.issue(NAME, &work.path().join("live"));
    // cert.pem alone: the leaf, no intermediate.
    let nginx = Nginx::start(&live.cert, &live.key, NAME);
    assert_eq!(nginx.served_leaf(), Ok(Leaf::of_file(&live.cert)));
    let err = curl_leaf(nginx.port(), NAME, &ca.root()).expect_err("no intermediate");
    assert!(err.contains("local issuer"), "curl said: {err}");
}

#[test]
fn zookeeper_serves_its_pkcs12_keystore_and_a_new_one_after_restart() {
    let work = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new(&work.path().join("ca"));
    let password = password_file(&work.path().join("keystore.pass"), "zk-secret");
    let keystore = work.path().join("keystore.p12");
    let live = ca.issue(NAME, &work.path().join("live"));
    pkcs12_export(&live, "zookeeper", &password, &keystore);
    let first = Leaf::of_file(&live.cert);

    // Modern encryption, and Java reads it: the alias, the leaf's serial, the chain.
    let mut passin = OsString::from("file:");
    passin.push(&password);
    let info = run_with_stdin(
        Command::new("openssl")
            .args(["pkcs12", "-info", "-noout", "-in"])
            .arg(&keystore)
            .arg("-passin")
            .arg(&passin),
        b"",
    )
    .expect("openssl pkcs12 -info");
    assert!(
        info.contains("PBES2") && info.contains("AES-256-CBC"),
        "{info}"
    );
    let listing = keytool_list(&keystore, &password).expect("keytool -list");
    assert!(listing.contains("Alias name: zookeeper"), "{listing}");
    assert!(listing.contains("Certificate chain length: 2"), "{listing}");
    let serials: Vec<String> = listing
        .lines()
        .filter_map(|line| line.strip_prefix("Serial number: "))
        .map(normalize_serial)
        .collect();
    assert_eq!(serials.first(), Some(&first.serial), "{listing}");
    let wrong = password_file(&work.path().join("wrong.pass"), "not-it");
    keytool_list(&keystore, &wrong).expect_err("keytool with the wrong password");

    let zk = Zookeeper::start(&keystore, &password);
    eprintln!("zookeeper started in {:?}", zk.startup());
    assert_eq!(
        served_leaf(zk.address(), NAME, Some(&ca.root())),
        Ok(first.clone())
    );

    // A new keystore in place is served only after the restart.
    let next = ca.issue(NAME, &work.path().join("next"));
    let second = Leaf::of_file(&next.cert);
    let staged = work.path().join("keystore.p12.new");
    pkcs12_export(&next, "zookeeper", &password, &staged);
    std::fs::rename(&staged, &keystore).expect("replace the keystore");
    assert_eq!(served_leaf(zk.address(), NAME, None), Ok(first));
    eprintln!("zookeeper restarted in {:?}", zk.restart());
    assert_eq!(
        served_leaf(zk.address(), NAME, Some(&ca.root())),
        Ok(second)
    );
}

#[test]
fn node_exporter_exposes_a_gauge_written_to_the_textfile_dir() {
    let work = tempfile::tempdir().expect("tempdir");
    let textfiles = work.path().join("textfiles");
    std::fs::create_dir(&textfiles).expect("mkdir");
    let file = textfiles.join("fleetcert.prom");
    let write = |body: &str| {
        let tmp = textfiles.join("fleetcert.prom.tmp");
        std::fs::write(&tmp, body).expect("write the textfile");
        std::fs::rename(&tmp, &file).expect("rename the textfile");
    };
    let gauge = |value: &str| {
        format!(
            "# HELP fleetcert_test_expiry_timestamp_seconds A test gauge.\n\
                 # TYPE fleetcert_test_expiry_timestamp_seconds gauge\n\
                 fleetcert_test_expiry_timestamp_seconds{{cert=\"www\",note=\"a \\\"b\\\"\"}} {value}\n\
                 fleetcert_test_expiry_timestamp_seconds{{cert=\"api\",note=\"\"}} 1\n"
        )
    };
    write(&gauge("1.7e+09"));
    let exporter = NodeExporter::start(&textfiles);
    eprintln!("node_exporter started in {:?}", exporter.startup());

    let name = "fleetcert_test_expiry_timestamp_seconds";
    assert_eq!(exporter.metric(name, &[("cert", "www")]), Some(1.7e9));
    assert_eq!(exporter.metric(name, &[("note", "a \"b\"")]), Some(1.7e9));
    assert_eq!(exporter.metric(name, &[("cert", "api")]), Some(1.0));
    assert_eq!(exporter.metric(name, &[("cert", "other")]), None);
    assert_eq!(exporter.samples(name).len(), 2);
    assert_eq!(exporter.textfile_scrape_error(), 0.0);

    // Every scrape reads the directory again.
    write(&gauge("1800000000"));
    assert_eq!(exporter.metric(name, &[("cert", "www")]), Some(1.8e9));
    // A file it cannot parse: the error gauge says so, and its metrics are gone.
    write("fleetcert_test_expiry_timestamp_seconds{cert=\"www\" 1\n");
    assert_eq!(exporter.textfile_scrape_error(), 1.0);
    assert_eq!(exporter.metric(name, &[("cert", "www")]), None);
}

#[test]
fn promtool_accepts_good_metrics_and_rules_and_refuses_bad_ones() {
    let work = tempfile::tempdir().expect("tempdir");
    let metrics = work.path().join("good.prom");
    std::fs::write(
        &metrics,
        "# HELP fleetcert_runs_total Runs.\n# TYPE fleetcert_runs_total counter\n\
             fleetcert_runs_total{command=\"renew\"} 3\n",
    )
    .expect("write");
    promtool_check_metrics(&metrics).expect("a good file");
    // A counter without _total (a lint problem) and a syntax error are both refused.
    std::fs::write(
        &metrics,
        "# HELP fleetcert_runs Runs.\n# TYPE fleetcert_runs counter\nfleetcert_runs 3\n",
    )
    .expect("write");
    let err = promtool_check_metrics(&metrics).expect_err("no _total");
    assert!(err.contains("_total"), "promtool said: {err}");
    std::fs::write(&metrics, "fleetcert_runs_total{command= 3\n").expect("write");
    promtool_check_metrics(&metrics).expect_err("a syntax error");

    std::fs::write(
        work.path().join("rules.yml"),
        "groups:\n- name: test\n  rules:\n  - alert: CertificateExpiresSoon\n    \
             expr: fleetcert_test_expiry_timestamp_seconds - time() < 7 * 86400\n",
    )
    .expect("write");
    let tests = |expected_alerts: &str| {
        format!(
            "rule_files: [rules.yml]\nevaluation_interval: 1m\ntests:\n- interval: 1m\n  \
                 input_series:\n  - series: 'fleetcert_test_expiry_timestamp_seconds{{cert=\"www\"}}'\n    \
                 values: '86400'\n  alert_rule_test:\n  - eval_time: 0m\n    \
                 alertname: CertificateExpiresSoon\n    exp_alerts: {expected_alerts}\n"
        )
    };
    let test_file = work.path().join("rules_test.yml");
    std::fs::write(&test_file, tests("[{exp_labels: {cert: www}}]")).expect("write");
    promtool_test_rules(&test_file).expect("the alert fires");
    std::fs::write(&test_file, tests("[]")).expect("write");
    let err = promtool_test_rules(&test_file).expect_err("an alert that was not expected");
    assert!(
        err.contains("CertificateExpiresSoon"),
        "promtool said: {err}"
    );
}

#[test]
fn parse_samples_reads_labels_escapes_and_timestamps() {
    let text = "# HELP x X.\n# TYPE x gauge\nx 1\n\
                    y{a=\"1\",b=\"q\\\"\\\\\\n\"} +Inf 1700000000000\nz{} -2.5e-3\nbroken{a= 1\n";
    let samples = parse_samples(text);
    assert_eq!(samples.len(), 3, "{samples:?}");
    assert_eq!((samples[0].name.as_str(), samples[0].value), ("x", 1.0));
    assert_eq!(samples[1].labels["a"], "1");
    assert_eq!(samples[1].labels["b"], "q\"\\\n");
    assert_eq!(samples[1].value, f64::INFINITY);
    assert_eq!((samples[2].name.as_str(), samples[2].value), ("z", -0.0025));
    assert_eq!(normalize_serial("0a:1B"), "A1B");
}

#[test]
fn services_started_together_get_ports_of_their_own() {
    let work = tempfile::tempdir().expect("tempdir");
    let exporters: Vec<NodeExporter> = std::thread::scope(|scope| {
        let started: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| NodeExporter::start(work.path())))
            .collect();
        started
            .into_iter()
            .map(|handle| handle.join().expect("start"))
            .collect()
    });
    let mut ports: Vec<u16> = exporters.iter().map(|e| e.port()).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 4, "ports: {ports:?}");
    for exporter in &exporters {
        assert_eq!(
            exporter.textfile_scrape_error(),
            0.0,
            "{}",
            exporter.address()
        );
    }
}
