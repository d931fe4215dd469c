//! `fleetcert hiera`: the exported file read by real Puppet (Debian's `puppet`), idempotence,
//! refusals that write nothing, and no private key in any report or log line.
//!
//! Most tests use a certificate made with openssl, which is enough for what the export does
//! with it and needs no servers; `issued_certificate_reaches_puppet_unchanged` takes one
//! issued by Pebble through the whole request/publish/finalize flow.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::config::{Acme, HostConfig};
use crate::support::sandbox::{Sandbox, document_records};
use crate::support::util::{Run, assert_key_matches, fleetcert, run_ok, snapshot};

/// The legacy host of these tests.
const HOST: &str = "host42.example.test";

/// The Puppet fixtures: `hiera.yaml` and `site.pp`.
fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/puppet")
}

/// Runs a command and panics with its output unless it succeeds.
#[track_caller]
fn openssl(dir: &Path, args: &[&str]) -> String {
    run_ok(Command::new("openssl").current_dir(dir).args(args))
}

/// A bastion-side setup for one legacy host: its config, cert_dir and state_dir, and the
/// hiera data directory Puppet reads.
struct Legacy {
    dir: tempfile::TempDir,
}

impl Legacy {
    fn new() -> Self {
        let legacy = Self {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        fs::create_dir_all(legacy.data_dir()).expect("hiera data dir");
        fs::create_dir_all(legacy.path("state")).expect("state dir");
        legacy
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn cert_dir(&self) -> PathBuf {
        self.path("certs")
    }

    fn config(&self) -> PathBuf {
        self.path("legacy.yaml")
    }

    /// Where the hiera hierarchy looks for this node's file.
    fn data_dir(&self) -> PathBuf {
        self.path("puppet/confdir/data/fleetcert")
    }

    fn out(&self) -> PathBuf {
        self.data_dir().join(format!("{HOST}.yaml"))
    }

    /// The legacy host's config against the CA `acme` asking `resolver`, no certificate yet.
    fn host_config(&self, acme: Acme, resolver: &str) -> HostConfig {
        let mut config = HostConfig::new(acme, HOST, resolver, &self.path(""));
        config.cert_dir = self.cert_dir();
        config.group = Some("root".to_owned());
        config
    }

    /// A config for export-only tests with `certs`: the ACME part is never used by `hiera`.
    fn write_offline_config(&self, certs: &[(&str, &[&str])]) {
        let mut config = self.host_config(Acme::new("https://ca.invalid/dir"), "");
        config.resolver = None;
        config.certs(certs).write(&self.config());
    }

    fn hiera(&self, extra: &[&str]) -> Run {
        let config = self.config();
        let out = self.out();
        let mut args = vec![
            "hiera".as_ref(),
            "--config".as_ref(),
            config.as_os_str(),
            "--host".as_ref(),
            HOST.as_ref(),
            "--out".as_ref(),
            out.as_os_str(),
        ];
        args.extend(extra.iter().map(std::ffi::OsStr::new));
        fleetcert(args)
    }

    /// `puppet apply` of tests/puppet/site.pp with tests/puppet/hiera.yaml, everything Puppet
    /// keeps in the temporary directory; returns the directory the manifest wrote to.
    fn puppet_apply(&self) -> PathBuf {
        let root = self.path("puppet");
        let confdir = root.join("confdir");
        let applied = self.path("applied");
        fs::create_dir_all(&applied).expect("applied dir");
        let hiera_config = confdir.join("hiera.yaml");
        // Copied beside the data: Hiera resolves `datadir` relative to its hiera.yaml.
        fs::copy(fixtures().join("hiera.yaml"), &hiera_config).expect("copy hiera.yaml");
        let mut command = Command::new("puppet");
        command
            .arg("apply")
            .arg("--hiera_config")
            .arg(&hiera_config)
            .arg("--confdir")
            .arg(&confdir)
            .arg("--codedir")
            .arg(root.join("codedir"))
            .arg("--vardir")
            .arg(root.join("vardir"))
            .arg("--logdir")
            .arg(root.join("logdir"))
            .arg("--rundir")
            .arg(root.join("rundir"))
            .args([
                "--certname",
                HOST,
                "--color",
                "false",
                "--detailed-exitcodes",
            ])
            .arg(fixtures().join("site.pp"))
            .env("FACTER_fleetcert_out", &applied);
        let output = command.output().unwrap_or_else(|err| {
            panic!(
                "cannot run puppet ({err}): install Debian's `puppet` (tests/sandbox/install.sh)"
            )
        });
        // --detailed-exitcodes: 0 nothing to do, 2 changes applied; 1, 4 and 6 are failures.
        let code = output.status.code().unwrap_or(-1);
        assert!(
            code == 0 || code == 2,
            "puppet apply failed ({code})\nstdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        applied
    }
}

/// Files of one certificate made with openssl: a test root and a leaf signed by it.
struct Material {
    root: PathBuf,
    cert: String,
    chain: String,
    key: String,
}

/// Makes a P-384 leaf for `names` signed by a fresh root, in `work`.
fn make_material(work: &Path, names: &[&str]) -> Material {
    fs::create_dir_all(work).expect("work dir");
    // P-384 in PKCS#8, as fleetcert writes its keys.
    let genkey = |out: &str| {
        openssl(
            work,
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-384",
                "-out",
                out,
            ],
        )
    };
    genkey("root.key");
    openssl(
        work,
        &[
            "req",
            "-x509",
            "-key",
            "root.key",
            "-subj",
            "/CN=fleetcert test root",
            "-days",
            "5",
            "-out",
            "root.pem",
        ],
    );
    genkey("leaf.key");
    let san = format!(
        "subjectAltName={}",
        names
            .iter()
            .map(|name| format!("DNS:{name}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    openssl(
        work,
        &[
            "req",
            "-new",
            "-key",
            "leaf.key",
            "-subj",
            &format!("/CN={}", names[0]),
            "-addext",
            &san,
            "-out",
            "leaf.csr",
        ],
    );
    openssl(
        work,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "root.pem",
            "-CAkey",
            "root.key",
            "-CAcreateserial",
            "-days",
            "3",
            "-copy_extensions",
            "copy",
            "-out",
            "leaf.pem",
        ],
    );
    let read = |name: &str| fs::read_to_string(work.join(name)).expect("read material");
    Material {
        root: work.join("root.pem"),
        cert: read("leaf.pem"),
        chain: read("root.pem"),
        key: read("leaf.key"),
    }
}

impl Material {
    /// Installs it as finalize would, with the full chain of leaf and chain.
    fn install(&self, cert_dir: &Path, name: &str) {
        let full_chain = format!("{}{}", self.cert, self.chain);
        install(
            cert_dir,
            name,
            &self.cert,
            &self.chain,
            &full_chain,
            &self.key,
        );
    }
}

/// Installs material as finalize would under `layout: fleetcert`.
fn install(cert_dir: &Path, name: &str, cert: &str, chain: &str, full_chain: &str, key: &str) {
    let dir = cert_dir.join(name);
    fs::create_dir_all(&dir).expect("cert dir");
    fs::write(dir.join("cert.pem"), cert).expect("cert");
    fs::write(dir.join("chain.pem"), chain).expect("chain");
    fs::write(dir.join("fullchain.pem"), full_chain).expect("fullchain");
    fs::write(dir.join("privkey.pem"), key).expect("key");
}

/// The lines of a PEM key's base64 body.
fn key_body_lines(key_pem: &str) -> Vec<&str> {
    key_pem
        .lines()
        .filter(|line| !line.starts_with("-----") && !line.trim().is_empty())
        .collect()
}

/// Panics when any part of the private key shows in a command's output.
#[track_caller]
fn assert_no_key_material(what: &str, run: &Run, key_pem: &str) {
    let lines = key_body_lines(key_pem);
    assert!(!lines.is_empty(), "no key body to look for");
    let body: String = lines.concat();
    for (stream, text) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
        assert!(
            !text.contains(&body),
            "{what}: the private key is in {stream}"
        );
        for line in &lines {
            // Very short last lines ("Aw==") could occur anywhere by chance.
            if line.len() >= 16 {
                assert!(
                    !text.contains(line),
                    "{what}: a line of the private key is in {stream}"
                );
            }
        }
        assert!(
            !text.contains("PRIVATE KEY"),
            "{what}: a PEM key header is in {stream}"
        );
    }
}

/// Runs `openssl verify` of `cert` (with `chain` as untrusted intermediates) against `root`.
fn openssl_verify(root: &Path, chain: &Path, cert: &Path) {
    let out = run_ok(
        Command::new("openssl")
            .arg("verify")
            .arg("-CAfile")
            .arg(root)
            .arg("-untrusted")
            .arg(chain)
            .arg(cert),
    );
    assert!(out.trim_end().ends_with(": OK"), "{out}");
}

fn mtime(path: &Path) -> std::time::SystemTime {
    fs::metadata(path)
        .and_then(|meta| meta.modified())
        .expect("mtime")
}

#[test]
fn hiera_export_reads_back_through_real_puppet() {
    let legacy = Legacy::new();
    let material = make_material(&legacy.path("openssl"), &[HOST, "www.host42.example.test"]);
    // Newline variants a block scalar must keep: none at all, and an extra blank line.
    let chain = material.chain.trim_end_matches('\n').to_owned();
    let full_chain = format!("{}{}\n", material.cert, material.chain);
    install(
        &legacy.cert_dir(),
        "main",
        &material.cert,
        &chain,
        &full_chain,
        &material.key,
    );
    legacy.write_offline_config(&[("main", &[HOST, "www.host42.example.test"])]);

    let run = legacy.hiera(&["-vv"]);
    run.expect_code(0);
    assert_no_key_material("hiera -vv", &run, &material.key);
    let report = run.json();
    assert_eq!(report["host"], HOST);
    assert_eq!(report["changed"], true);
    assert_eq!(report["path"], legacy.out().display().to_string());
    assert_eq!(report["certs"][0]["name"], "main");
    assert!(
        report["certs"][0]["not_after"]
            .as_str()
            .expect("not_after")
            .ends_with('Z')
    );
    let mode = fs::metadata(legacy.out())
        .expect("stat")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let text = fs::read_to_string(legacy.out()).expect("read export");
    assert!(
        text.contains("    cert_contents: |\n      -----BEGIN CERTIFICATE-----\n"),
        "{text}"
    );
    assert!(text.contains("    chain_contents: |-\n"), "{text}");
    assert!(text.contains("    full_chain_contents: |+\n"), "{text}");

    let applied = legacy.puppet_apply();
    let got = |name: &str| fs::read_to_string(applied.join(name)).expect("file Puppet wrote");
    assert_eq!(got("main.cert.pem"), material.cert);
    assert_eq!(got("main.chain.pem"), chain);
    assert_eq!(got("main.fullchain.pem"), full_chain);
    assert_eq!(got("main.key.pem"), material.key);
    assert_eq!(got("main.key-by-path.pem"), material.key);
    openssl_verify(
        &material.root,
        &applied.join("main.chain.pem"),
        &applied.join("main.cert.pem"),
    );
    assert_key_matches(
        &applied.join("main.key.pem"),
        &applied.join("main.cert.pem"),
    );
}

#[test]
fn second_export_with_nothing_new_leaves_the_file_alone() {
    let legacy = Legacy::new();
    let material = make_material(&legacy.path("openssl"), &[HOST]);
    material.install(&legacy.cert_dir(), "main");
    legacy.write_offline_config(&[("main", &[HOST])]);

    legacy.hiera(&[]).expect_code(0);
    let bytes = fs::read(legacy.out()).expect("export");
    assert_export_unchanged(&legacy, || {});
    assert_eq!(fs::read(legacy.out()).expect("export"), bytes);

    // New material: a dry run says so and writes nothing; the real run writes.
    let renewed = make_material(&legacy.path("openssl2"), &[HOST]);
    renewed.install(&legacy.cert_dir(), "main");
    let dry = legacy.hiera(&["--dry-run"]);
    dry.expect_code(0);
    assert_eq!(dry.json()["changed"], true);
    assert_eq!(
        fs::read(legacy.out()).expect("export"),
        bytes,
        "--dry-run wrote"
    );
    let real = legacy.hiera(&[]);
    real.expect_code(0);
    assert_eq!(real.json()["changed"], true);
    assert_ne!(fs::read(legacy.out()).expect("export"), bytes);
}

#[test]
fn missing_certificate_is_named_and_nothing_is_written() {
    let legacy = Legacy::new();
    let material = make_material(&legacy.path("openssl"), &[HOST]);
    material.install(&legacy.cert_dir(), "main");
    // `main` exists, `zz-admin` (after it in name order) was never issued.
    let admin = format!("admin.{HOST}");
    legacy.write_offline_config(&[("main", &[HOST]), ("zz-admin", &[&admin])]);

    let run = legacy.hiera(&[]);
    run.expect_code(2);
    assert!(
        run.stdout.is_empty(),
        "a report for a failed export: {}",
        run.stdout
    );
    assert!(
        run.stderr.contains(HOST) && run.stderr.contains("`zz-admin`"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("request and finalize"),
        "{}",
        run.stderr
    );
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(!legacy.out().exists(), "a file was written");
    assert_eq!(
        fs::read_dir(legacy.data_dir()).expect("list").count(),
        0,
        "leftovers"
    );
    assert_no_key_material("hiera (missing cert)", &run, &material.key);

    // An earlier export stays exactly as it was.
    fs::write(legacy.out(), "earlier export\n").expect("earlier");
    let before = snapshot(&legacy.data_dir());
    legacy.hiera(&["-vv"]).expect_code(2);
    assert_eq!(snapshot(&legacy.data_dir()), before);
}

#[test]
fn export_refuses_what_it_must_not_hand_to_puppet() {
    let legacy = Legacy::new();
    let material = make_material(&legacy.path("openssl"), &[HOST]);
    let other = make_material(&legacy.path("other"), &[HOST]);
    let full_chain = format!("{}{}", material.cert, material.chain);
    legacy.write_offline_config(&[("main", &[HOST])]);

    let other_full = format!("{}{}", other.cert, other.chain);
    // (what is wrong, fullchain.pem, privkey.pem, what the error line names)
    let cases: [(&str, &str, &str, &str); 3] = [
        (
            "the key of another certificate",
            &full_chain,
            &other.key,
            "does not match",
        ),
        (
            "a fullchain of another certificate (finalize cut short between two files)",
            &other_full,
            &material.key,
            "fullchain.pem",
        ),
        (
            "a key that is not a key",
            &full_chain,
            "garbage\n",
            "privkey.pem",
        ),
    ];
    for (what, fullchain, key, named) in cases {
        install(
            &legacy.cert_dir(),
            "main",
            &material.cert,
            &material.chain,
            fullchain,
            key,
        );
        let run = legacy.hiera(&["-vv"]);
        run.expect_code(2);
        assert!(run.stderr.contains(named), "{what}: {}", run.stderr);
        if key.contains("PRIVATE KEY") {
            assert_no_key_material(what, &run, key);
        }
    }

    // Another host's config.
    install(
        &legacy.cert_dir(),
        "main",
        &material.cert,
        &material.chain,
        &full_chain,
        &material.key,
    );
    let config = legacy.config();
    let out = legacy.out();
    let run = fleetcert([
        "hiera".as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
        "--host".as_ref(),
        "host43.example.test".as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
    ]);
    run.expect_code(2);
    assert!(
        run.stderr.contains("host43.example.test") && run.stderr.contains(HOST),
        "{}",
        run.stderr
    );

    // A dotted certificate name, which Hiera would read as a path.
    let dotted = format!("www.{HOST}");
    legacy.write_offline_config(&[(&dotted, &[HOST])]);
    let run = legacy.hiera(&[]);
    run.expect_code(2);
    assert!(run.stderr.contains("contains a dot"), "{}", run.stderr);

    assert!(!legacy.out().exists(), "a refused export wrote a file");
}

/// Runs a host command (`request`, `finalize`, `status`) with the legacy host's config at the
/// most verbose log level, and checks that no part of `key` (when known) is in its output.
fn host_command(legacy: &Legacy, command: &str) -> Run {
    let config = legacy.config();
    fleetcert([
        command.as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
        "-vvv".as_ref(),
    ])
}

#[test]
fn issued_certificate_reaches_puppet_unchanged() {
    let sandbox = Sandbox::start();
    let legacy = Legacy::new();
    let mut acme = Acme::new(sandbox.acme_directory());
    acme.ca_bundle = Some(sandbox.ca_bundle());
    legacy
        .host_config(acme, sandbox.resolver())
        .cert("main", &[HOST])
        .write(&legacy.config());

    // The bastion's daily flow for a legacy host: request, publish (here: the sandbox's
    // stand-in), finalize, export.
    let request = host_command(&legacy, "request");
    request.expect_code(0);
    let tokens = request.json();
    assert!(
        !document_records(&tokens).is_empty(),
        "nothing to publish: {tokens}"
    );
    sandbox.place_document(&tokens);
    let finalize = host_command(&legacy, "finalize");
    finalize.expect_code(0);
    let status = host_command(&legacy, "status");
    status.expect_code(0);

    let issued = legacy.cert_dir().join("main");
    let read = |name: &str| fs::read_to_string(issued.join(name)).expect("issued file");
    let (cert, chain, full_chain, key) = (
        read("cert.pem"),
        read("chain.pem"),
        read("fullchain.pem"),
        read("privkey.pem"),
    );
    let export = legacy.hiera(&["-vvv"]);
    export.expect_code(0);
    for (what, run) in [
        ("request", &request),
        ("finalize", &finalize),
        ("status", &status),
        ("hiera", &export),
    ] {
        assert_no_key_material(what, run, &key);
    }
    assert_eq!(export.json()["changed"], true);
    let not_after = export.json()["certs"][0]["not_after"].clone();
    assert_eq!(
        not_after,
        finalize.json()["certs"][0]["not_after"],
        "{}",
        finalize.stdout
    );

    let applied = legacy.puppet_apply();
    let got = |name: &str| fs::read_to_string(applied.join(name)).expect("file Puppet wrote");
    assert_eq!(
        got("main.cert.pem"),
        cert,
        "Puppet's certificate differs from the issued one"
    );
    assert_eq!(got("main.chain.pem"), chain);
    assert_eq!(got("main.fullchain.pem"), full_chain);
    assert_eq!(
        got("main.key.pem"),
        key,
        "Puppet's key differs from the issued one"
    );
    assert_eq!(got("main.key-by-path.pem"), key);
    sandbox
        .verify_chain(&applied.join("main.fullchain.pem"))
        .expect("openssl verify against Pebble's root");
    assert_key_matches(
        &applied.join("main.key.pem"),
        &applied.join("main.cert.pem"),
    );

    // The next day's run: nothing due, nothing new to export.
    assert_export_unchanged(&legacy, || {
        let request = host_command(&legacy, "request");
        request.expect_code(0);
        assert_no_key_material("second request", &request, &key);
    });
}

/// Runs `between`, then exports again: the export must report no change and leave the
/// file's mtime alone.
#[track_caller]
fn assert_export_unchanged(legacy: &Legacy, between: impl FnOnce()) {
    // Coarse file systems keep mtimes in whole seconds: the export's mtime is set a minute
    // back, so that a rewrite shows without waiting for the clock.
    let before = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
    fs::File::options()
        .write(true)
        .open(legacy.out())
        .and_then(|file| file.set_modified(before))
        .expect("set the export's mtime");
    assert_eq!(mtime(&legacy.out()), before);
    between();
    let again = legacy.hiera(&[]);
    again.expect_code(0);
    assert_eq!(again.json()["changed"], false);
    assert_eq!(
        mtime(&legacy.out()),
        before,
        "an unchanged export rewrote the file"
    );
}

#[test]
fn key_leak_check_catches_a_leaked_line() {
    // The guard the other tests rely on must fail when a key line does show up.
    let key = "-----BEGIN PRIVATE KEY-----\nMIG2AgEAMBAGByqGSM49AgEGBSuBBAAiBIGeMIGbAgEBBDA\nAw==\n-----END PRIVATE KEY-----\n";
    let leaked = Run {
        code: 0,
        stdout: String::new(),
        stderr: "DEBUG pem=MIG2AgEAMBAGByqGSM49AgEGBSuBBAAiBIGeMIGbAgEBBDA\n".to_owned(),
    };
    let caught = std::panic::catch_unwind(|| assert_no_key_material("test", &leaked, key));
    assert!(caught.is_err(), "a leaked key line went unnoticed");
    let clean = Run {
        code: 0,
        stdout: "{\"changed\": true}".to_owned(),
        stderr: String::new(),
    };
    assert_no_key_material("test", &clean, key);
}
