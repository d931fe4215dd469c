//! PKCS#12 keystores (`certs.<cert>.pkcs12`) against the real sandbox and real readers:
//! Java's `keytool`, `openssl pkcs12`, a real ZooKeeper serving the keystore on its TLS
//! client port and a real nginx serving the PEM files beside it, each picking up a renewal
//! through its handler (restart, reload).

use std::ffi::OsString;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::support::config::HostConfig;
use crate::support::fixture::{Host, KEY_GROUP, sandbox};
use crate::support::sandbox::Sandbox;
use crate::support::services::{
    Leaf, Nginx, Zookeeper, curl_leaf, keytool_list, normalize_serial, served_leaf,
};
use crate::support::util::openssl_extract;
use crate::support::util::{Run, assert_key_matches, fleetcert, run_ok, snapshot};

const NAME: &str = "host1.example.test";
const PASSWORD: &str = "zk-Secret-4711";

/// A host with one certificate `zk` for [`NAME`] with a keystore under alias `zookeeper`.
struct KeystoreHost<'s> {
    host: Host<'s>,
}

impl<'s> KeystoreHost<'s> {
    fn new(sb: &'s Sandbox, extra: &str) -> Self {
        let host = Host::new(sb, &[]);
        let this = Self { host };
        this.write_password(PASSWORD, 0o600);
        this.configure(extra, true);
        this
    }

    /// Rewrites the config: `zk` with (or without) `pkcs12:`, `extra` top-level lines.
    fn configure(&self, extra: &str, pkcs12: bool) {
        let config = self.host.host_config().lines(extra);
        let config = if pkcs12 {
            config.cert_with(
                "zk",
                &[NAME],
                json!({"pkcs12": {"password_file": self.password_file(), "alias": "zookeeper"}}),
            )
        } else {
            config.cert("zk", &[NAME])
        };
        self.host.write_config(&config);
    }

    fn password_file(&self) -> PathBuf {
        self.host.dir.path().join("zk.pass")
    }

    fn write_password(&self, password: &str, mode: u32) {
        let file = self.password_file();
        std::fs::write(&file, format!("{password}\n")).expect("write the password");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    fn file(&self, name: &str) -> PathBuf {
        self.host.file("zk", name)
    }

    /// Runs a command and checks that neither stream shows the keystore password.
    fn run(&self, command: &str, more: &[&str]) -> Run {
        let run = self.host.run(command, more);
        assert_no_password(&run, command);
        run
    }

    /// request, place, finalize at `-vvv`; the finalize report.
    fn issue(&self) -> Value {
        let document = self.run("request", &["-vvv"]).expect_code(0).json();
        self.host.place(&document);
        let report = self.run("finalize", &["-vvv"]).expect_code(0).json();
        assert_eq!(report["certs"][0]["status"], "issued", "{report:#}");
        report
    }
}

#[track_caller]
fn assert_no_password(run: &Run, command: &str) {
    for stream in [&run.stdout, &run.stderr] {
        assert!(
            !stream.contains(PASSWORD) && !stream.contains("Secret-4711"),
            "{command} printed the keystore password"
        );
    }
}

/// `openssl pkcs12 -info -noout`: what it says about the encryption (it writes to stderr).
fn openssl_info(keystore: &Path, password_file: &Path) -> String {
    let mut passin = OsString::from("file:");
    passin.push(password_file);
    let out = Command::new("openssl")
        .args(["pkcs12", "-info", "-noout", "-in"])
        .arg(keystore)
        .arg("-passin")
        .arg(&passin)
        .output()
        .expect("run openssl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "openssl pkcs12 -info failed: {text}");
    text
}

/// The serials keytool lists, in its order (the key entry's chain, leaf first).
fn keytool_serials(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter_map(|line| line.trim().strip_prefix("Serial number: "))
        .map(normalize_serial)
        .collect()
}

/// The serials of every certificate in a PEM file, in order.
fn pem_serials(path: &Path) -> Vec<String> {
    let pem = std::fs::read_to_string(path).expect("read PEM");
    crate::support::sandbox::pem_certificates(&pem)
        .iter()
        .map(|block| Leaf::of_pem(block).expect("a certificate").serial)
        .collect()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

#[test]
fn the_keystore_is_installed_with_the_pems_and_java_and_openssl_read_it() {
    let sb = sandbox().start();
    let zk = KeystoreHost::new(&sb, "");
    let report = zk.issue();
    let keystore = zk.file("keystore.p12");
    assert_eq!(
        report["certs"][0]["paths"]["keystore"],
        keystore.to_str().expect("utf-8"),
        "{report:#}"
    );

    // One set: the keystore is a link into the same version as the PEM files.
    for name in ["keystore.p12", "privkey.pem", "fullchain.pem"] {
        assert_eq!(
            std::fs::read_link(zk.file(name)).expect("a link"),
            Path::new("..data").join(name)
        );
    }
    assert_eq!(mode(&keystore), 0o640);
    let group = std::fs::metadata(zk.file("privkey.pem"))
        .expect("stat")
        .gid();
    assert_eq!(std::fs::metadata(&keystore).expect("stat").gid(), group);
    assert_ne!(group, 0, "the key group ({KEY_GROUP}), not root's");

    // OpenSSL: PBES2 with PBKDF2/HMAC-SHA256 and AES-256-CBC for the key and the
    // certificates, an HMAC-SHA256 MAC; no RC2, no 3DES.
    let info = openssl_info(&keystore, &zk.password_file());
    assert!(info.contains("MAC: sha256"), "{info}");
    assert!(
        info.contains(
            "Shrouded Keybag: PBES2, PBKDF2, AES-256-CBC, Iteration 10000, PRF hmacWithSHA256"
        ),
        "{info}"
    );
    assert!(
        info.contains(
            "PKCS7 Encrypted data: PBES2, PBKDF2, AES-256-CBC, Iteration 10000, PRF hmacWithSHA256"
        ),
        "{info}"
    );
    assert!(!info.contains("RC2") && !info.contains("3DES"), "{info}");
    // What it holds is what was installed: the key of cert.pem, the full chain.
    let work = tempfile::tempdir().expect("tempdir");
    let key_out = work.path().join("key.pem");
    openssl_extract(&keystore, &zk.password_file(), "-nocerts", &key_out);
    assert_key_matches(&key_out, &zk.file("cert.pem"));
    let certs_out = work.path().join("certs.pem");
    openssl_extract(&keystore, &zk.password_file(), "-nokeys", &certs_out);
    let mut in_keystore = pem_serials(&certs_out);
    let mut installed = pem_serials(&zk.file("fullchain.pem"));
    in_keystore.sort();
    installed.sort();
    assert_eq!(in_keystore, installed);

    // Java: the alias, a key entry, the leaf first and its whole chain.
    let listing = keytool_list(&keystore, &zk.password_file()).expect("keytool -list");
    assert!(listing.contains("Alias name: zookeeper"), "{listing}");
    assert!(listing.contains("Entry type: PrivateKeyEntry"), "{listing}");
    let chain = pem_serials(&zk.file("fullchain.pem"));
    assert!(
        listing.contains(&format!("Certificate chain length: {}", chain.len())),
        "{listing}"
    );
    assert_eq!(keytool_serials(&listing), chain, "{listing}");
    let wrong = work.path().join("wrong.pass");
    std::fs::write(&wrong, "not-the-password\n").expect("write");
    keytool_list(&keystore, &wrong).expect_err("keytool with another password");

    // status names the keystore too; a second finalize changes nothing.
    let status = zk.run("status", &["-vvv"]).expect_code(0).json();
    assert!(status.to_string().contains("keystore.p12"), "{status:#}");
    let before = snapshot(&zk.host.cert_dir());
    let again = zk.run("finalize", &["-vvv"]).expect_code(0).json();
    assert_eq!(again["changed"], false, "{again:#}");
    assert_eq!(snapshot(&zk.host.cert_dir()), before);

    // hiera carries it, base64, byte for byte.
    let out = zk.host.dir.path().join("hiera.yaml");
    let run = zk.run(
        "hiera",
        &[
            "--host",
            NAME,
            "--out",
            out.to_str().expect("utf-8"),
            "-vvv",
        ],
    );
    run.expect_code(0);
    let hiera: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&out).expect("read hiera")).expect("yaml");
    let encoded = hiera["fleetcert_certs"]["zk"]["keystore_base64"]
        .as_str()
        .expect("keystore_base64");
    use base64::Engine as _;
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .expect("base64"),
        std::fs::read(&keystore).expect("read keystore")
    );
}

#[test]
fn a_bad_password_file_stops_every_command_with_exit_2_and_a_changed_one_rebuilds_the_keystore() {
    let sb = sandbox().start();
    let zk = KeystoreHost::new(&sb, "");
    zk.issue();
    let keystore = zk.file("keystore.p12");
    let before = snapshot(&zk.host.cert_dir());
    // The service-facing PEM files (their version directory changes with every install).
    let cert_dir = zk.host.cert_dir().join("zk");
    let pems = |dir: &[(PathBuf, Vec<u8>)]| -> Vec<(PathBuf, Vec<u8>)> {
        dir.iter()
            .filter(|(path, _)| {
                path.parent() == Some(cert_dir.as_path())
                    && path.extension().is_some_and(|ext| ext == "pem")
            })
            .cloned()
            .collect()
    };

    // Readable by others, missing, empty: exit 2 naming the file, nothing changed.
    let file = zk.password_file();
    for (what, prepare) in [("readable by others", 0o644), ("missing", 0), ("empty", 1)] {
        match prepare {
            0 => std::fs::remove_file(&file).expect("remove"),
            1 => {
                std::fs::write(&file, "\n").expect("write");
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
                    .expect("chmod");
            }
            mode => zk.write_password(PASSWORD, mode),
        }
        for command in ["request", "finalize", "status"] {
            let run = zk.run(command, &["-vvv"]);
            run.expect_code(2);
            assert!(run.stdout.is_empty(), "{what}: no report with exit 2");
            assert!(
                run.stderr.contains("certs.zk.pkcs12.password_file")
                    && run.stderr.contains(&*file.to_string_lossy()),
                "{what}: {command} must name the key and the file: {}",
                run.stderr
            );
        }
        assert_eq!(snapshot(&zk.host.cert_dir()), before, "{what}");
    }

    // A new password: finalize, with no order pending, rebuilds the keystore from the
    // installed set; the PEM files stay byte-identical, the old password no longer opens it.
    zk.write_password("a-new-pass-0815", 0o600);
    let report = zk.run("finalize", &["--dry-run"]).expect_code(0).json();
    assert_eq!(
        report["certs"][0]["status"], "would_write_keystore",
        "{report:#}"
    );
    assert_eq!(
        snapshot(&zk.host.cert_dir()),
        before,
        "a dry run writes nothing"
    );
    let report = zk.run("finalize", &["-vvv"]).expect_code(0).json();
    assert_eq!(
        report["certs"][0]["status"], "keystore_written",
        "{report:#}"
    );
    assert_eq!(report["changed"], true);
    assert!(!report.to_string().contains("a-new-pass"), "{report:#}");
    let after = snapshot(&zk.host.cert_dir());
    assert_eq!(pems(&after), pems(&before), "the PEM files are untouched");
    let listing = keytool_list(&keystore, &zk.password_file()).expect("the new password");
    assert!(listing.contains("Alias name: zookeeper"), "{listing}");
    let old = zk.host.dir.path().join("old.pass");
    std::fs::write(&old, format!("{PASSWORD}\n")).expect("write");
    keytool_list(&keystore, &old).expect_err("the old password");
    let again = zk.run("finalize", &[]).expect_code(0).json();
    assert_eq!(again["changed"], false, "{again:#}");

    // Issued without pkcs12 (another key type makes it due): the next install drops the
    // keystore. pkcs12 added again: finalize builds one from the installed set.
    zk.configure("key: rsa-2048\n", false);
    let document = zk.run("request", &[]).expect_code(0).json();
    zk.host.place(&document);
    let plain = zk.run("finalize", &[]).expect_code(0).json();
    assert_eq!(plain["certs"][0]["status"], "issued", "{plain:#}");
    assert!(
        plain["certs"][0]["paths"].get("keystore").is_none(),
        "{plain:#}"
    );
    assert!(
        std::fs::symlink_metadata(&keystore).is_err(),
        "the keystore of the old set is gone with it"
    );
    let without = snapshot(&zk.host.cert_dir());
    zk.configure("key: rsa-2048\n", true);
    let report = zk.run("finalize", &[]).expect_code(0).json();
    assert_eq!(
        report["certs"][0]["status"], "keystore_written",
        "{report:#}"
    );
    let listing = keytool_list(&keystore, &zk.password_file()).expect("a keystore again");
    assert_eq!(
        keytool_serials(&listing).first(),
        Some(&Leaf::of_file(&zk.file("cert.pem")).serial),
        "{listing}"
    );
    assert_eq!(pems(&snapshot(&zk.host.cert_dir())), pems(&without));
}

#[test]
fn zookeeper_and_nginx_serve_the_certificate_and_the_renewal_after_their_handlers() {
    let sb = sandbox().start();
    let zk = KeystoreHost::new(&sb, "renew: {ari: false}\n");
    zk.issue();
    let root = sb.pebble_root();
    let first = Leaf::of_file(&zk.file("cert.pem"));

    // The services read the service-facing names (links into the current version).
    let zookeeper = Zookeeper::start(&zk.file("keystore.p12"), &zk.password_file());
    let nginx = Nginx::start(&zk.file("fullchain.pem"), &zk.file("privkey.pem"), NAME);
    assert_eq!(
        served_leaf(zookeeper.address(), NAME, Some(&root)),
        Ok(first.clone()),
        "ZooKeeper serves the keystore, and s_client verifies it against Pebble's root"
    );
    assert_eq!(curl_leaf(nginx.port(), NAME, &root), Ok(first.clone()));

    // A renewal: another key type makes the certificate due.
    zk.configure("renew: {ari: false}\nkey: rsa-2048\n", true);
    let report = zk.issue();
    assert_eq!(report["changed"], true);
    let second = Leaf::of_file(&zk.file("cert.pem"));
    assert_ne!(first.serial, second.serial);
    // Until their handlers run, both still serve the old certificate.
    assert_eq!(
        served_leaf(zookeeper.address(), NAME, Some(&root)),
        Ok(first.clone())
    );
    assert_eq!(curl_leaf(nginx.port(), NAME, &root), Ok(first));

    // `changed` → handler: the commands an Ansible handler runs (services.sh's).
    assert_eq!(report["certs"][0]["changed"], true);
    run_ok(&mut Command::new(zookeeper.restart_command()));
    run_ok(&mut Command::new(nginx.reload_command()));
    assert_eq!(
        served_leaf(zookeeper.address(), NAME, Some(&root)),
        Ok(second.clone())
    );
    assert_eq!(curl_leaf(nginx.port(), NAME, &root), Ok(second));
}

/// Needs the `crash-points` build (`cargo test --features crash-points`): the process is
/// killed (SIGKILL) in finalize after the CA issued and the PEM files are ready in memory,
/// before the keystore is built and anything is installed.
#[cfg(feature = "crash-points")]
#[test]
fn a_finalize_killed_before_the_keystore_leaves_the_old_pems_and_keystore() {
    let sb = sandbox().start();
    let zk = KeystoreHost::new(&sb, "renew: {ari: false}\n");
    zk.issue();
    let before = snapshot(&zk.host.cert_dir());
    let old_keystore = std::fs::read(zk.file("keystore.p12")).expect("read");
    // Another key type makes it due.
    zk.configure("renew: {ari: false}\nkey: rsa-2048\n", true);
    let document = zk.run("request", &[]).expect_code(0).json();
    zk.host.place(&document);

    let config = zk.host.config();
    let mut command = Command::new(env!("CARGO_BIN_EXE_fleetcert"));
    command
        .args(["finalize", "--config"])
        .arg(&config)
        .env("FLEETCERT_CRASH_AT", "finalize.before_keystore");
    let out = command.output().expect("run fleetcert");
    use std::os::unix::process::ExitStatusExt as _;
    assert_eq!(out.status.signal(), Some(9), "killed at the crash point");
    assert_eq!(
        snapshot(&zk.host.cert_dir()),
        before,
        "the old PEM files and the old keystore, byte for byte"
    );
    assert_eq!(
        std::fs::read(zk.file("keystore.p12")).expect("read"),
        old_keystore
    );

    // The next finalize installs what the CA issued, keystore and PEM files together.
    let report = zk.run("finalize", &[]).expect_code(0).json();
    assert_eq!(report["certs"][0]["status"], "issued", "{report:#}");
    let leaf = Leaf::of_file(&zk.file("cert.pem"));
    let listing = keytool_list(&zk.file("keystore.p12"), &zk.password_file()).expect("keytool");
    assert_eq!(
        keytool_serials(&listing).first(),
        Some(&leaf.serial),
        "{listing}"
    );
    assert_ne!(
        std::fs::read(zk.file("keystore.p12")).expect("read"),
        old_keystore
    );
}

#[test]
fn pkcs12_options_are_checked_before_anything_is_ordered() {
    // No sandbox: the config is refused before any CA or DNS contact.
    let dir = tempfile::tempdir().expect("tempdir");
    let pass = dir.path().join("zk.pass");
    std::fs::write(&pass, "secret-pass\n").expect("write");
    std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o604)).expect("chmod");
    let config = dir.path().join("fleetcert.yaml");
    let write = |pkcs12: Value| {
        HostConfig::offline(dir.path())
            .cert_with("zk", &["host1.example.test"], json!({"pkcs12": pkcs12}))
            .write(&config);
    };
    // Relative to the config file, as every path in it is.
    write(json!({"password_file": "zk.pass"}));
    let run = fleetcert(["request", "--config", config.to_str().expect("utf-8")]);
    run.expect_code(2);
    assert!(
        run.stderr.contains("mode 0604") && run.stderr.contains(&*pass.to_string_lossy()),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("secret-pass"), "{}", run.stderr);
    assert!(!dir.path().join("state").exists(), "nothing written");
    write(json!({"password_file": "zk.pass", "alias": ""}));
    std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let run = fleetcert(["request", "--config", config.to_str().expect("utf-8")]);
    run.expect_code(2);
    assert!(
        run.stderr.contains("certs.zk.pkcs12.alias"),
        "{}",
        run.stderr
    );
}
