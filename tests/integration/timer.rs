//! The package's renewal timer under a real systemd: systemd 252 as PID 1 in private
//! namespaces over a throwaway overlay of `/` (`tests/sandbox/systemd.sh`), with
//! `packaging/systemd/fleetcert-renew.{service,timer}` unchanged, a drop-in that only
//! shortens the timer's delays, nginx from Debian serving the certificate, and the sandbox's
//! Pebble and BIND on 127.0.0.1 (the network namespace is shared). The timer fires at boot,
//! `renew` issues under the service's hardening, its `reload: [systemctl, reload, nginx]`
//! puts nginx on the new certificate, a second certificate's `reload: [lxd-hand-over,
//! cluster]` gives it to an LXD cluster on the host (its socket bound into the guest), and
//! afterwards nothing of the guest is left and the host's /dev/null is as it was.

use std::fs;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::lxd::Lxd;
use crate::support::sandbox::{ScriptDir, run};
use crate::support::services::{Leaf, TestCa, served_leaf};

/// How long the guest's renewal may take from boot to its exit: it takes a few seconds on an
/// idle machine, over a minute on a loaded 2-core one. A guard against a hang, not a timing:
/// the wait says every [`PROGRESS`] where the service is.
const RENEW_TIMEOUT: Duration = Duration::from_secs(900);
/// How often a long wait says what it waits for.
const PROGRESS: Duration = Duration::from_secs(30);

/// The name the guest's certificate is for (the sandbox delegates its challenge).
const NAME: &str = "host1.example.test";

/// The name of the LXD cluster's certificate, ordered by the guest.
const LXD_NAME: &str = "www1.example.test";

/// A systemd guest started by `systemd.sh`; dropping it powers it off.
struct Guest {
    dir: ScriptDir,
}

impl Guest {
    fn start(tree: &Path, binds: &[(&Path, &str)], ports: usize) -> Self {
        let mut args = vec!["--tree".into(), tree.as_os_str().to_owned()];
        for (file, path) in binds {
            let mut bind = file.as_os_str().to_owned();
            bind.push("=");
            bind.push(path);
            args.extend(["--bind".into(), bind]);
        }
        args.extend(["--ports".into(), ports.to_string().into()]);
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sandbox/systemd.sh");
        Self {
            dir: ScriptDir::start(script, "fleetcert-systemd-", "systemd.env", &args),
        }
    }

    fn port(&self, k: usize) -> u16 {
        self.dir.var(&format!("PORT{k}")).parse().expect("a port")
    }

    /// `COMMAND` run in the guest (`nsenter -t PID -a`): its stdout; panics when it fails.
    fn run(&self, command: &[&str]) -> String {
        let out = run(Command::new("nsenter")
            .args(["-t", self.dir.var("SYSTEMD_PID"), "-a"])
            .args(command));
        assert!(
            out.status.success(),
            "{command:?} in the guest: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `systemctl show UNIT -p PROPERTY` → its value.
    fn property(&self, unit: &str, property: &str) -> String {
        self.run(&["systemctl", "show", unit, "-p", property, "--value"])
            .trim()
            .to_owned()
    }

    fn journal(&self, unit: &str) -> String {
        self.run(&["journalctl", "-u", unit, "--no-pager", "-o", "cat"])
    }

    /// Powers the guest off and panics unless nothing of it is left: its cgroups gone.
    fn stop(&self) {
        self.dir.run_ok("stop", &[]);
        for cgroup in ["CGROUP_SYSTEMD", "CGROUP_UNIFIED"] {
            let dir = self.dir.var(cgroup);
            assert!(
                !Path::new(dir).exists(),
                "{dir} is still there after poweroff: something of the guest is left"
            );
        }
    }
}

/// Writes `contents` to `root/path`, creating the directories, with `mode`.
fn put(root: &Path, path: &str, contents: impl AsRef<[u8]>, mode: u32) -> PathBuf {
    let file = root.join(path.trim_start_matches('/'));
    fs::create_dir_all(file.parent().expect("a parent")).expect("mkdir");
    fs::write(&file, contents).expect("write");
    fs::set_permissions(&file, fs::Permissions::from_mode(mode)).expect("chmod");
    file
}

fn link(root: &Path, path: &str, target: &str) {
    let file = root.join(path.trim_start_matches('/'));
    fs::create_dir_all(file.parent().expect("a parent")).expect("mkdir");
    std::os::unix::fs::symlink(target, file).expect("symlink");
}

/// The host's /dev/null as every unprivileged process needs it: a character device 1,3,
/// `crw-rw-rw- root root`.
fn assert_dev_null_intact() {
    let meta = fs::metadata("/dev/null").expect("stat /dev/null");
    assert!(meta.file_type().is_char_device(), "/dev/null: {meta:?}");
    assert_eq!(
        (meta.mode() & 0o7777, meta.uid(), meta.gid(), meta.rdev()),
        (0o666, 0, 0, libc_makedev(1, 3)),
        "the host's /dev/null is no longer crw-rw-rw- root root 1,3"
    );
}

/// `makedev(major, minor)` as glibc encodes it (both below 256 here).
fn libc_makedev(major: u64, minor: u64) -> u64 {
    (major << 8) | minor
}

#[test]
fn the_shipped_timer_renews_at_boot_under_its_hardening_and_nginx_and_lxd_serve_it() {
    // Not while the package test installs or purges the package on the host (util.rs).
    let _host_root = crate::support::util::host_root_lock();
    assert_dev_null_intact();
    let secret = crate::support::util::secret();
    let sb = crate::support::fixture::sandbox()
        .tsig(&format!(
            "host1={secret}@{NAME}.acme.test,{LXD_NAME}.acme.test"
        ))
        .start();
    let work = tempfile::tempdir().expect("tempdir");
    let tree = work.path().join("tree");
    let packaged = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/systemd");

    // The package's units, byte for byte, where the package puts them, and enabled as
    // `systemctl enable fleetcert-renew.timer` would.
    for unit in ["fleetcert-renew.service", "fleetcert-renew.timer"] {
        let bytes = fs::read(packaged.join(unit)).expect("read the unit");
        put(
            &tree,
            &format!("usr/lib/systemd/system/{unit}"),
            bytes,
            0o644,
        );
    }
    link(
        &tree,
        "etc/systemd/system/timers.target.wants/fleetcert-renew.timer",
        "/lib/systemd/system/fleetcert-renew.timer",
    );
    // The test's only change: the timer fires 3 s after boot instead of after 5 min plus up
    // to an hour (docs/renewal.md); its daily calendar stays.
    put(
        &tree,
        "etc/systemd/system/fleetcert-renew.timer.d/test.conf",
        "[Timer]\nOnBootSec=3s\nRandomizedDelaySec=0\nAccuracySec=1s\n",
        0o644,
    );
    // nginx from Debian's unit, started at boot, serving the certificate fleetcert manages.
    link(
        &tree,
        "etc/systemd/system/basic.target.wants/nginx.service",
        "/lib/systemd/system/nginx.service",
    );
    put(
        &tree,
        "etc/nginx/nginx.conf",
        format!(
            "user www-data;\nworker_processes 1;\npid /run/nginx.pid;\n\
             error_log /var/log/nginx/error.log;\nevents {{ worker_connections 64; }}\n\
             http {{\n  access_log off;\n  server {{\n    listen 127.0.0.1:@PORT1@ ssl;\n    \
             server_name {NAME};\n    ssl_certificate /etc/fleetcert/certs/web/fullchain.pem;\n    \
             ssl_certificate_key /etc/fleetcert/certs/web/privkey.pem;\n    \
             location / {{ return 200 \"ok\\n\"; }}\n  }}\n}}\n"
        ),
        0o644,
    );
    // What the package's postinst makes, and the host's config and secrets.
    fs::create_dir_all(tree.join("var/lib/fleetcert")).expect("mkdir");
    fs::set_permissions(
        tree.join("var/lib/fleetcert"),
        fs::Permissions::from_mode(0o700),
    )
    .expect("chmod");
    put(
        &tree,
        "etc/fleetcert/pebble-ca.pem",
        fs::read(sb.ca_bundle()).expect("read the CA bundle"),
        0o644,
    );
    put(
        &tree,
        "etc/fleetcert/tsig.secret",
        format!("{secret}\n"),
        0o600,
    );
    put(
        &tree,
        "etc/fleetcert/fleetcert.yaml",
        format!(
            "acme: {{directory: \"{directory}\", email: ops@example.test, agree_tos: true, \
             ca_bundle: /etc/fleetcert/pebble-ca.pem}}\nhost: {NAME}\nsigning_zone: acme.test\n\
             resolver: \"{resolver}\"\ngroup: {group}\nrenew: {{before_days: 30, ari: false}}\n\
             update: {{server: \"{primary}\", key_name: host1, secret_file: \
             /etc/fleetcert/tsig.secret}}\nservers: [\"{primary}\", \"{secondary}\"]\n\
             timeout: 60s\ncerts:\n  web:\n    names: [{NAME}]\n    \
             reload: [systemctl, reload, nginx]\n  lxd:\n    names: [{LXD_NAME}]\n    \
             reload: [/usr/lib/fleetcert/lxd-hand-over, cluster]\n",
            directory = sb.acme_directory(),
            resolver = sb.resolver(),
            primary = sb.primary(),
            secondary = sb.secondary(),
            group = crate::support::fixture::KEY_GROUP,
        ),
        0o644,
    );
    // The certificate nginx starts with: a test CA's, due (30 days left, renewal at 30), so
    // the boot's run renews it and nginx must be reloaded to serve the new one.
    let ca = TestCa::new(&work.path().join("ca"));
    let old = ca.issue(NAME, &tree.join("etc/fleetcert/certs/web"));
    fs::set_permissions(
        tree.join("etc/fleetcert/certs"),
        fs::Permissions::from_mode(0o750),
    )
    .expect("chmod");
    fs::set_permissions(
        tree.join("etc/fleetcert/certs/web"),
        fs::Permissions::from_mode(0o750),
    )
    .expect("chmod");
    fs::set_permissions(&old.key, fs::Permissions::from_mode(0o640)).expect("chmod");
    let old_leaf = Leaf::of_file(&old.cert);

    let binary = PathBuf::from(env!("CARGO_BIN_EXE_fleetcert"));
    let began = Instant::now();
    // An LXD cluster on the host; the guest reaches it as a Debian host reaches its own LXD,
    // through /var/lib/lxd/unix.socket, with the package's hand-over.
    let lxd = Lxd::cluster(2);
    let socket = lxd.member(1).lxd_dir().join("unix.socket");
    let hand_over = crate::support::lxd::hand_over();
    let guest = Guest::start(
        &tree,
        &[
            (&binary, "/usr/bin/fleetcert"),
            (&hand_over, "/usr/lib/fleetcert/lxd-hand-over"),
            (&socket, "/var/lib/lxd/unix.socket"),
        ],
        1,
    );
    eprintln!("guest booted in {:?}", began.elapsed());
    let address = format!("127.0.0.1:{}", guest.port(1));

    // The timer's run at boot, to its end.
    let deadline = Instant::now() + RENEW_TIMEOUT;
    let service = "fleetcert-renew.service";
    let mut next_note = Instant::now() + PROGRESS;
    loop {
        let exited = guest.property(service, "ExecMainExitTimestampMonotonic");
        let state = guest.property(service, "ActiveState");
        if exited != "0" && !exited.is_empty() && (state == "inactive" || state == "failed") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{service} did not run to its end within {RENEW_TIMEOUT:?} of boot (state \
             {state}; timer: {}):\n{}",
            guest.property("fleetcert-renew.timer", "ActiveState"),
            guest.journal(service)
        );
        if Instant::now() >= next_note {
            eprintln!(
                "{service} still {state} {:.0?} after start",
                began.elapsed()
            );
            next_note += PROGRESS;
        }
        thread::sleep(Duration::from_millis(200));
    }
    eprintln!("the boot's renewal ended {:?} after start", began.elapsed());
    let journal = guest.journal(service);
    assert_eq!(
        (
            guest.property(service, "Result"),
            guest.property(service, "ExecMainStatus")
        ),
        ("success".to_owned(), "0".to_owned()),
        "renew under the shipped unit failed:\n{journal}"
    );
    assert_ne!(
        guest.property("fleetcert-renew.timer", "LastTriggerUSecMonotonic"),
        "0",
        "the service ran, but not from the timer"
    );
    // The hardening held: the unit's sandboxing is in force for the run that did this.
    assert_eq!(guest.property(service, "ProtectSystem"), "strict");
    assert_eq!(guest.property(service, "NoNewPrivileges"), "yes");

    // nginx serves what renew installed (its chain verifies against Pebble's root), not
    // what it started with.
    let installed = Leaf::of_pem(&guest.run(&["cat", "/etc/fleetcert/certs/web/cert.pem"]))
        .expect("the installed certificate");
    assert_ne!(installed, old_leaf, "renew did not replace the certificate");
    // nginx reloads at once; the bound only guards against a hang on a loaded machine.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let served = served_leaf(&address, NAME, Some(&sb.pebble_root()));
        if served.as_ref() == Ok(&installed) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "nginx in the guest serves {served:?}, not the renewed {installed:?}:\n{journal}"
        );
        thread::sleep(Duration::from_millis(100));
    }

    // The hand-over ran under the same hardening: every member of the cluster serves the
    // certificate the guest's renew issued for LXD.
    let for_lxd = Leaf::of_pem(&guest.run(&["cat", "/etc/fleetcert/certs/lxd/cert.pem"]))
        .expect("LXD's certificate");
    for member in lxd.all() {
        member.wait_serves(LXD_NAME, &sb.pebble_root(), &for_lxd);
    }

    guest.stop();
    assert_dev_null_intact();
}
