//! From issued to served: a certificate's `reload:` run by the real binary after its files
//! changed, never otherwise; a failing, hanging or child-leaving reload bounded, reported
//! (exit 1), kept pending in the state directory and run again by the next run, on a day
//! with nothing due; its output one escaped, bounded line; with `probe:` a reload that
//! leaves nginx on the old certificate is a failure naming both serials.
//!
//! These need no CA and no DNS: the host uses `issuer: self-signed`, which installs through
//! the same install and reloads through the same step as a CA's certificate.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::config::HostConfig;
use crate::support::fixture::{
    Host, KEY_GROUP, assert_no_secret, cert, sandbox as fixture_sandbox, secrets_below,
};
use crate::support::services::{Leaf, Nginx};
use crate::support::util::{Run, fleetcert, snapshot, verify_against};
use crate::support::util::{gid, key_group_gid, mode};

/// How long a run whose reload is bounded by a short `reload_timeout` may take on a busy
/// machine: far below the 600 s its hanging reload would take unbounded.
const BOUNDED_RUN: Duration = Duration::from_secs(120);

/// A server on its own: config, state, certificates and reload scripts in one directory.
struct Server {
    dir: tempfile::TempDir,
    flags: Vec<&'static str>,
}

impl Server {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
            flags: Vec::new(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes the config: self-signed, with metrics; `certs` maps each certificate to its
    /// names or its mapping.
    fn configure(&self, certs: &Value) {
        std::fs::create_dir_all(self.metrics_dir()).expect("metrics dir");
        let mut config = HostConfig::gate("self-signed", self.dir.path())
            .set("metrics", json!({"textfile_dir": self.metrics_dir()}));
        config.host = Some("server.example.test".to_owned());
        config.group = Some(KEY_GROUP.to_owned());
        let certs = certs.as_object().expect("certificates by name");
        certs
            .iter()
            .fold(config, |config, (name, entry)| config.set_cert(name, entry))
            .write(&self.path("fleetcert.yaml"));
    }

    fn metrics_dir(&self) -> PathBuf {
        self.path("metrics")
    }

    /// An executable script `name` holding `body` (after `#!/bin/sh`).
    fn script(&self, name: &str, body: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
        set_mode(&path, 0o755);
        path
    }

    /// `fleetcert <command> --config ...`; no private key in either stream.
    fn run(&self, command: &str) -> Run {
        let config = self.path("fleetcert.yaml");
        let mut args = vec![command, "--config", config.to_str().expect("utf-8")];
        args.extend(&self.flags);
        let run = fleetcert(&args);
        assert_no_secret(&run, command, &secrets_below(&[self.dir.path().to_owned()]));
        run
    }

    /// `<cert_dir>/<cert>/<file>`.
    fn file(&self, cert: &str, file: &str) -> PathBuf {
        self.path("certs").join(cert).join(file)
    }

    fn pending_file(&self, cert: &str) -> PathBuf {
        self.path("state")
            .join("reloads")
            .join(format!("{cert}.json"))
    }

    /// The lines the counting script appended: one per reload it ran.
    fn reloads(&self) -> Vec<String> {
        std::fs::read_to_string(self.path("reloads.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The value of one sample of the metrics file, by its labels' text.
    fn metric(&self, family: &str, cert: &str) -> Option<f64> {
        let text = std::fs::read_to_string(self.metrics_dir().join("fleetcert.prom")).ok()?;
        let prefix = format!("{family}{{");
        text.lines()
            .filter(|line| line.starts_with(&prefix))
            .find(|line| line.contains(&format!("cert=\"{cert}\"")))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|value| value.parse().ok())
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// The report of `finalize` (or the `finalize` part of `renew`'s).
fn finalized(report: &Value) -> &Value {
    if report.get("finalize").is_some() {
        &report["finalize"]
    } else {
        report
    }
}

/// A script that appends what it was told to `reloads.log`, and fails while `fail` exists.
fn counting_body(server: &Server) -> String {
    format!(
        "echo \"$FLEETCERT_CERT|$FLEETCERT_DIR|$FLEETCERT_NAMES\" >> {log}\n\
         if [ -e {fail} ]; then echo 'reload refused: service down' >&2; exit 3; fi",
        log = server.path("reloads.log").display(),
        fail = server.path("fail").display(),
    )
}

#[test]
fn reload_runs_once_per_changed_certificate_and_never_for_an_unchanged_one() {
    let server = Server::new();
    let reload = server.script("reload", &counting_body(&server));
    let certs = |web_names: &[&str]| {
        json!({
            "web": {"names": web_names, "reload": [reload]},
            "mail": {"names": ["mail.example.test"], "reload": [reload]},
            "plain": ["plain.example.test"],
        })
    };
    server.configure(&certs(&["web.example.test"]));

    server.run("request").expect_code(0);
    let report = server.run("finalize").expect_code(0).json();
    let mut lines = server.reloads();
    lines.sort();
    assert_eq!(
        lines,
        [
            format!(
                "mail|{}|mail.example.test",
                server.path("certs/mail").display()
            ),
            format!(
                "web|{}|web.example.test",
                server.path("certs/web").display()
            ),
        ],
        "one reload per changed certificate, with its environment"
    );
    assert_eq!(cert(&report, "web")["reloaded"], true, "{report:#}");
    assert_eq!(
        cert(&report, "plain")["reloaded"],
        Value::Null,
        "{report:#}"
    );

    // Nothing due: nothing runs, by finalize or by renew.
    server.run("request").expect_code(0);
    let quiet = server.run("finalize").expect_code(0).json();
    assert_eq!(cert(&quiet, "web")["reloaded"], Value::Null, "{quiet:#}");
    server.run("renew").expect_code(0);
    assert_eq!(server.reloads().len(), 2, "{:?}", server.reloads());

    // One certificate changes: its reload runs once more, the other's does not.
    server.configure(&certs(&["web.example.test", "www.example.test"]));
    let renewed = server.run("renew").expect_code(0).json();
    assert_eq!(renewed["changed"], true, "{renewed:#}");
    let lines = server.reloads();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(
        lines[2],
        format!(
            "web|{}|web.example.test www.example.test",
            server.path("certs/web").display()
        )
    );
    assert_eq!(
        cert(finalized(&renewed), "mail")["reloaded"],
        Value::Null,
        "{renewed:#}"
    );
}

/// Issues `main` with `script` as its reload and `reload_timeout: 2s`, and checks that the
/// reload is bounded, reported, pending; then fixes the script (removes `fail`) and checks
/// that a quiet-day `renew` and then `finalize` run it again, the first failing still (the
/// marker back), the second clearing it. `needle` is in the failure's line.
fn failing_reload_is_kept_and_retried(server: &Server, body: &str, needle: &str) {
    let script = server.script("reload", body);
    server.configure(&json!({
        "main": {"names": ["main.example.test"], "reload": [script], "reload_timeout": "2s"},
    }));
    std::fs::write(server.path("fail"), "").expect("marker");
    server.run("request").expect_code(0);
    let started = Instant::now();
    let run = server.run("finalize");
    let took = started.elapsed();
    assert!(
        took < BOUNDED_RUN,
        "finalize with a reload bounded by 2 s took {took:?}: the bound did not hold"
    );
    let report = run.expect_code(1).json();
    let main = cert(&report, "main");
    assert_eq!(main["status"], "issued", "{report:#}");
    assert_eq!(main["changed"], true, "the new files stay: {report:#}");
    assert_eq!(main["reloaded"], false, "{report:#}");
    let error = main["reload_error"].as_str().expect("reload_error");
    assert!(
        error.contains(&format!("reload `{}`", script.display())) && error.contains(needle),
        "the line names the command and its status ({needle}): {error}"
    );
    assert_eq!(
        run.stderr
            .lines()
            .filter(|l| l.contains("reload failed"))
            .count(),
        1,
        "{}",
        run.stderr
    );
    assert!(server.file("main", "fullchain.pem").exists());
    let pending = server.pending_file("main");
    assert_eq!(mode(&pending), 0o600, "the pending reload's file");
    assert_eq!(
        server.metric("fleetcert_certificate_reload_pending", "main"),
        Some(1.0)
    );
    let check = server.run("check");
    check.expect_code(1);
    assert!(
        check.stdout.starts_with("FLEETCERT WARNING") && check.stdout.contains("reload pending"),
        "{}",
        check.stdout
    );

    // A quiet day (nothing due): renew runs the reload again; it still fails.
    let again = server.run("renew").expect_code(1).json();
    assert_eq!(again["changed"], false, "{again:#}");
    assert_eq!(
        cert(finalized(&again), "main")["reloaded"],
        false,
        "{again:#}"
    );
    assert!(pending.exists());

    // A quiet day in a fleet runs request alone (the playbook finalizes only where an order
    // is left): request runs the reload again too, and says it failed.
    let requested = server.run("request").expect_code(1).json();
    let state = cert(&requested, "main");
    assert_eq!(state["status"], "failed", "{requested:#}");
    let reason = state["reason"].as_str().expect("reason");
    assert!(
        reason.contains(&format!("reload `{}`", script.display())) && reason.contains(needle),
        "request's line names the command and its status ({needle}): {reason}"
    );
    assert_eq!(
        requested["records"],
        Value::Array(Vec::new()),
        "{requested:#}"
    );
    assert!(pending.exists());

    // Fixed: the next quiet run runs it, it works, and it is forgotten.
    std::fs::remove_file(server.path("fail")).expect("fix");
    let fixed = server.run("finalize").expect_code(0).json();
    assert_eq!(cert(&fixed, "main")["reloaded"], true, "{fixed:#}");
    assert_eq!(fixed["changed"], false, "{fixed:#}");
    assert!(
        !pending.exists(),
        "the pending reload stays after it worked"
    );
    assert_eq!(
        server.metric("fleetcert_certificate_reload_pending", "main"),
        Some(0.0)
    );
    server.run("check").expect_code(0);
    let after = server.run("finalize").expect_code(0).json();
    assert_eq!(cert(&after, "main")["reloaded"], Value::Null, "{after:#}");
}

#[test]
fn a_failing_reload_is_reported_kept_pending_and_retried_until_it_works() {
    let server = Server::new();
    let body = counting_body(&server);
    failing_reload_is_kept_and_retried(&server, &body, "exit status: 3");
    assert_eq!(
        server.reloads().len(),
        4,
        "issued, quiet renew, quiet request, fixed finalize"
    );
}

#[test]
fn a_hanging_reload_is_killed_at_its_timeout_kept_pending_and_retried() {
    let server = Server::new();
    let body = format!(
        "{}\nif [ -e {} ]; then exec sleep 600; fi",
        format_args!("echo ran >> {}", server.path("reloads.log").display()),
        server.path("fail").display()
    );
    failing_reload_is_kept_and_retried(&server, &body, "no exit within 2s");
    assert_eq!(server.reloads().len(), 4);
}

#[test]
fn a_reload_leaving_a_child_is_bounded_its_child_killed_kept_pending_and_retried() {
    let server = Server::new();
    let pids = server.path("children");
    // The child holds the reload's output and ignores SIGTERM; the reload fails at once.
    let body = format!(
        "if [ -e {fail} ]; then (trap '' TERM; exec sleep 600) & echo $! >> {pids}; \
         echo started; exit 1; fi",
        fail = server.path("fail").display(),
        pids = pids.display()
    );
    failing_reload_is_kept_and_retried(&server, &body, "exit status: 1");
    let children = std::fs::read_to_string(&pids).expect("children written");
    assert_eq!(
        children.lines().count(),
        3,
        "issued, quiet renew and quiet request: {children}"
    );
    for pid in children.lines() {
        let stat = format!("/proc/{pid}/stat");
        let alive = std::fs::read_to_string(&stat).is_ok_and(|text| !text.contains(") Z "));
        assert!(!alive, "the child {pid} the reload left still runs");
    }
}

#[test]
fn reload_output_of_10_mb_or_control_characters_is_one_bounded_escaped_line() {
    for (what, noise) in [
        (
            "10 MB",
            "head -c 10000000 /dev/zero | tr '\\0' x".to_owned(),
        ),
        (
            "control characters",
            "printf 'one\\n\\033[31mred\\033[0m\\r\\007bell\\nthree\\n'".to_owned(),
        ),
    ] {
        let mut server = Server::new();
        server.flags.push("-v");
        let script = server.script(
            "reload",
            &format!(
                "{noise}\n{noise} >&2\nif [ -e {} ]; then exit 1; fi",
                server.path("fail").display()
            ),
        );
        server.configure(&json!({
            "main": {"names": ["main.example.test"], "reload": [script]},
        }));
        std::fs::write(server.path("fail"), "").expect("marker");
        server.run("request").expect_code(0);
        let failed = server.run("finalize");
        let report = failed.expect_code(1).json();
        std::fs::remove_file(server.path("fail")).expect("fix");
        let worked = server.run("finalize");
        worked.expect_code(0);
        for (run, needle) in [(&failed, "reload failed"), (&worked, "reload ran")] {
            let lines: Vec<&str> = run.stderr.lines().filter(|l| l.contains(needle)).collect();
            assert_eq!(
                lines.len(),
                1,
                "{what}: one `{needle}` line:\n{}",
                run.stderr
            );
            assert!(
                lines[0].len() < 2_000,
                "{what}: the line is {} bytes long",
                lines[0].len()
            );
            assert!(
                run.stderr.len() < 20_000,
                "{what}: stderr is {} bytes",
                run.stderr.len()
            );
            assert!(
                !run.stderr.contains(['\u{1b}', '\u{7}', '\r']),
                "{what}: a raw control character in the log: {:?}",
                run.stderr
            );
        }
        let error = cert(&report, "main")["reload_error"]
            .as_str()
            .expect("reload_error")
            .to_owned();
        assert!(
            error.len() < 2_000 && !error.contains(['\n', '\u{1b}']),
            "{what}: {error}"
        );
    }
}

#[test]
fn with_probe_a_reload_that_leaves_nginx_on_the_old_certificate_fails_naming_both_serials() {
    let server = Server::new();
    let certs = |names: &[&str], reload: &str, probe: &[&str]| {
        let mut web = json!({"names": names, "reload": [reload], "reload_timeout": "3s"});
        if !probe.is_empty() {
            web["probe"] = json!(probe);
        }
        json!({ "web": web })
    };
    server.configure(&certs(&["web.example.test"], "/bin/true", &[]));
    server.run("request").expect_code(0);
    server.run("finalize").expect_code(0);
    let fullchain = server.file("web", "fullchain.pem");
    let nginx = Nginx::start(
        &fullchain,
        &server.file("web", "privkey.pem"),
        "web.example.test",
    );
    let old = Leaf::of_file(&fullchain);
    assert_eq!(nginx.served_leaf().expect("served"), old);

    // A new certificate, and a reload that exits 0 without reloading anything.
    let probe = [nginx.address()];
    server.configure(&certs(
        &["web.example.test", "www.example.test"],
        "/bin/true",
        &probe,
    ));
    server.run("request").expect_code(0);
    let report = server.run("finalize").expect_code(1).json();
    let new = Leaf::of_file(&fullchain);
    assert_ne!(new.serial, old.serial, "a new certificate was installed");
    let error = cert(&report, "web")["reload_error"]
        .as_str()
        .expect("reload_error");
    assert!(
        error.contains(&format!("serial {}", old.serial))
            && error.contains(&format!("serial {}", new.serial))
            && error.contains(nginx.address()),
        "the line names the target and both serials (old {}, new {}): {error}",
        old.serial,
        new.serial
    );
    assert!(server.pending_file("web").exists());

    // The reload that really reloads nginx: the next quiet run passes, nginx serves it.
    let reload = nginx.reload_command();
    server.configure(&certs(
        &["web.example.test", "www.example.test"],
        &reload.display().to_string(),
        &probe,
    ));
    let fixed = server.run("finalize").expect_code(0).json();
    assert_eq!(cert(&fixed, "web")["reloaded"], true, "{fixed:#}");
    assert_eq!(nginx.served_leaf().expect("served"), new);
    assert!(!server.pending_file("web").exists());
}

// --- fleetcert install: a cluster member's copy, through the binary ----------------------

const SHARED: &str = "host201.example.test";
const OTHER: &str = "host202.example.test";

/// The directory `..data` names in `cert_dir`/`cert`: the set as the issuing host has it.
fn version_dir(cert_dir: &Path) -> PathBuf {
    let version = std::fs::read_link(cert_dir.join("..data")).expect("..data");
    cert_dir.join(version)
}

/// A member: a host config that lists `shared` (its names, a counting reload), never used
/// for request; its copies come from `fleetcert install`.
struct Member<'s> {
    host: Host<'s>,
}

impl<'s> Member<'s> {
    fn new(sb: &'s crate::support::sandbox::Sandbox) -> Self {
        let host = Host::named(sb, sb.acme_directory(), "member.example.test", &[]);
        let member = Self { host };
        let reload = member.path("reload");
        std::fs::write(
            &reload,
            format!(
                "#!/bin/sh\necho \"$FLEETCERT_CERT\" >> {}\n",
                member.path("reloads.log").display()
            ),
        )
        .expect("write reload");
        set_mode(&reload, 0o755);
        member
            .host
            .write_config(&member.host.host_config().cert_with(
                "shared",
                &[SHARED],
                serde_json::json!({"reload": [reload]}),
            ));
        member
    }

    fn path(&self, name: &str) -> PathBuf {
        self.host.dir.path().join(name)
    }

    fn install(&self, from: &Path) -> Run {
        self.host.run(
            "install",
            &["--cert", "shared", "--from", from.to_str().expect("utf-8")],
        )
    }

    fn reloads(&self) -> usize {
        std::fs::read_to_string(self.path("reloads.log"))
            .unwrap_or_default()
            .lines()
            .count()
    }
}

/// A directory holding `files` (name, source), copied as plain files.
fn staged(files: &[(&str, &Path)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, source) in files {
        std::fs::copy(source, dir.path().join(name)).expect("copy");
    }
    set_mode(dir.path(), 0o700);
    dir
}

#[test]
fn install_takes_a_good_copy_reloads_once_and_the_same_set_again_changes_nothing() {
    let sb = fixture_sandbox().start();
    let issuer = Host::new(&sb, &[("shared", &[SHARED])]);
    issuer.issue();
    let member = Member::new(&sb);
    let from = version_dir(&issuer.cert_dir().join("shared"));

    let report = member.install(&from).expect_code(0).json();
    assert_eq!(report["changed"], true, "{report:#}");
    let shared = cert(&report, "shared");
    assert_eq!(shared["status"], "installed", "{report:#}");
    assert_eq!(shared["reloaded"], true, "{report:#}");
    assert_eq!(member.reloads(), 1);
    for file in ["privkey.pem", "cert.pem", "chain.pem", "fullchain.pem"] {
        assert_eq!(
            std::fs::read(member.host.file("shared", file)).expect("member file"),
            std::fs::read(issuer.file("shared", file)).expect("issuer file"),
            "{file} is the issuer's"
        );
    }
    verify_against(
        &sb.pebble_root(),
        &member.host.file("shared", "fullchain.pem"),
    )
    .expect("the copy verifies against Pebble's root");
    let key = member.host.file("shared", "privkey.pem");
    assert_eq!(mode(&key), 0o640);
    assert_eq!(gid(&key), key_group_gid());

    // The same set again: nothing changes, no reload.
    let before = snapshot(&member.host.cert_dir());
    let again = member.install(&from).expect_code(0).json();
    assert_eq!(again["changed"], false, "{again:#}");
    assert_eq!(cert(&again, "shared")["status"], "unchanged", "{again:#}");
    assert_eq!(cert(&again, "shared")["reloaded"], Value::Null, "{again:#}");
    assert_eq!(member.reloads(), 1, "a reload for an unchanged set");
    assert_eq!(snapshot(&member.host.cert_dir()), before);
}

#[test]
fn install_refuses_a_tampered_copy_and_the_member_keeps_its_set_byte_for_byte() {
    let sb = fixture_sandbox().start();
    let issuer = Host::new(&sb, &[("shared", &[SHARED]), ("other", &[OTHER])]);
    issuer.issue();
    let member = Member::new(&sb);
    let first = version_dir(&issuer.cert_dir().join("shared"));
    member.install(&first).expect_code(0);
    // The issuer renews `shared`: a good new set the tampered copies are made of.
    std::fs::remove_dir_all(issuer.cert_dir().join("shared")).expect("remove");
    issuer.issue();
    let shared = |file: &str| issuer.file("shared", file);
    let other = |file: &str| issuer.file("other", file);
    let before = snapshot(&member.host.cert_dir());
    let root = sb.pebble_root();

    let refused = |what: &str, from: &Path, needle: &str| {
        let run = member.install(from);
        run.expect_code(2);
        assert!(run.stdout.is_empty(), "{what}: a report: {}", run.stdout);
        assert_eq!(run.stderr.lines().count(), 1, "{what}: {}", run.stderr);
        assert!(
            run.stderr.contains(needle),
            "{what}: {needle:?} not in {}",
            run.stderr
        );
        assert_eq!(
            snapshot(&member.host.cert_dir()),
            before,
            "{what}: the member's set changed"
        );
        assert_eq!(member.reloads(), 1, "{what}: a reload ran");
    };

    // The key of another certificate.
    let wrong_key = staged(&[
        ("privkey.pem", &other("privkey.pem")),
        ("fullchain.pem", &shared("fullchain.pem")),
    ]);
    refused("another key", wrong_key.path(), "not the key");

    // A chain that does not verify: the leaf, then another leaf as its "intermediate".
    let bogus = tempfile::tempdir().expect("tempdir");
    let mut chain = std::fs::read(shared("cert.pem")).expect("leaf");
    chain.extend(std::fs::read(other("cert.pem")).expect("other leaf"));
    let bogus_chain = bogus.path().join("fullchain.pem");
    std::fs::write(&bogus_chain, chain).expect("write");
    std::fs::copy(shared("privkey.pem"), bogus.path().join("privkey.pem")).expect("copy");
    assert!(
        verify_against(&root, &bogus_chain).is_err(),
        "the tampered chain verifies against Pebble's root"
    );
    refused(
        "a chain that does not verify",
        bogus.path(),
        "does not verify",
    );

    // A symlink in the set offered.
    let linked = staged(&[("fullchain.pem", &shared("fullchain.pem"))]);
    std::os::unix::fs::symlink(shared("privkey.pem"), linked.path().join("privkey.pem"))
        .expect("link");
    refused("a link in --from", linked.path(), "symlink");

    // A symlink planted in the member's certificate directory, with a good set offered.
    let good = version_dir(&issuer.cert_dir().join("shared"));
    let loot = member.path("loot.pem");
    std::fs::write(&loot, "planted\n").expect("loot");
    let planted = member.host.cert_dir().join("shared").join("cert.pem");
    std::fs::remove_file(&planted).expect("remove our link");
    std::os::unix::fs::symlink(&loot, &planted).expect("plant");
    let before_planted = snapshot(&member.host.cert_dir());
    let run = member.install(&good);
    run.expect_code(2);
    assert!(
        run.stderr.contains("cert.pem") && run.stderr.contains("planted"),
        "{}",
        run.stderr
    );
    assert_eq!(snapshot(&member.host.cert_dir()), before_planted);
    assert_eq!(std::fs::read_to_string(&loot).expect("loot"), "planted\n");
    assert_eq!(member.reloads(), 1);

    // Taken away, the good set installs, and the member serves what verifies.
    std::fs::remove_file(&planted).expect("remove the plant");
    std::os::unix::fs::symlink("..data/cert.pem", &planted).expect("our link back");
    let report = member.install(&good).expect_code(0).json();
    assert_eq!(report["changed"], true, "{report:#}");
    assert_eq!(member.reloads(), 2);
    verify_against(&root, &member.host.file("shared", "fullchain.pem")).expect("verifies");
}
