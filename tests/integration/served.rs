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

use serde_json::Value;

use crate::fixture::{KEY_GROUP, assert_no_secret, cert, secrets_below};
use crate::host::mode;
use crate::services::{Leaf, Nginx};
use crate::util::{Run, fleetcert};

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

    /// Writes the config; `certs` is the YAML below `certs:`, indented by two.
    fn configure(&self, certs: &str) {
        let text = format!(
            "issuer: self-signed\nhost: server.example.test\nstate_dir: {state}\n\
             cert_dir: {certs_dir}\ngroup: {KEY_GROUP}\n\
             metrics: {{textfile_dir: {metrics}}}\ncerts:\n{certs}",
            state = self.path("state").display(),
            certs_dir = self.path("certs").display(),
            metrics = self.metrics_dir().display(),
        );
        std::fs::create_dir_all(self.metrics_dir()).expect("metrics dir");
        std::fs::write(self.path("fleetcert.yaml"), text).expect("write config");
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
    let certs = |web_names: &str| {
        format!(
            "  web: {{names: [{web_names}], reload: [{r}]}}\n\
             \x20 mail: {{names: [mail.example.test], reload: [{r}]}}\n\
             \x20 plain: [plain.example.test]\n",
            r = reload.display()
        )
    };
    server.configure(&certs("web.example.test"));

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
    server.configure(&certs("web.example.test, www.example.test"));
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
    server.configure(&format!(
        "  main: {{names: [main.example.test], reload: [{}], reload_timeout: 2s}}\n",
        script.display()
    ));
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
        3,
        "issued, quiet renew, fixed finalize"
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
    assert_eq!(server.reloads().len(), 3);
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
        2,
        "issued and quiet renew: {children}"
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
        server.configure(&format!(
            "  main: {{names: [main.example.test], reload: [{}]}}\n",
            script.display()
        ));
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
    let certs = |names: &str, reload: &str, probe: &str| {
        format!("  web: {{names: [{names}], reload: [{reload}], reload_timeout: 3s{probe}}}\n")
    };
    server.configure(&certs("web.example.test", "/bin/true", ""));
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
    let probe = format!(", probe: ['{}']", nginx.address());
    server.configure(&certs(
        "web.example.test, www.example.test",
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
        "web.example.test, www.example.test",
        &reload.display().to_string(),
        &probe,
    ));
    let fixed = server.run("finalize").expect_code(0).json();
    assert_eq!(cert(&fixed, "web")["reloaded"], true, "{fixed:#}");
    assert_eq!(nginx.served_leaf().expect("served"), new);
    assert!(!server.pending_file("web").exists());
}
