//! The Debian package (packaging/, `[package.metadata.deb]` of Cargo.toml) as an operator gets
//! it: built by packaging/build-deb.sh (cargo-deb), checked by lintian, its files listed by
//! `dpkg-deb -c`; then installed on this machine by the collection's install role (method
//! `package`, the .deb copied from the bastion) while the daily playbook issues a host's
//! certificate into the package's own directories; checked as installed (`fleetcert --version`,
//! `man -w`, the units with `systemd-analyze verify`, the completions); and purged: the binary
//! and the package's files go, the issued certificate and the state stay.
//!
//! It installs and purges a package system-wide, so it runs as root (CI: a clean machine) and
//! is the only test that does; every other test runs the cargo-built binary.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::fleet::{Fleet, assert_issued};
use crate::support::util::{run_ok, sans};
use crate::support::venv::repo;

/// The package's own directories, which the test host of the fleet uses as its defaults do.
const CONFIG: &str = "/etc/fleetcert/fleetcert.yaml";
const CERT_DIR: &str = "/etc/fleetcert/certs";
const STATE_DIR: &str = "/var/lib/fleetcert";
/// Where the install role keeps the copied .deb.
const DEB_CACHE: &str = "/var/cache/fleetcert";

/// lintian warnings that cannot be fixed here (docs/install.md says why); any other fails.
const ACCEPTED_WARNINGS: &[&str] = &[
    // No Debian bug tracks this package: it is not uploaded to Debian.
    "initial-upload-closes-no-bugs",
];

fn run(program: &str, args: &[&str]) -> std::process::Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("cannot start {program}: {err}"))
}

fn stdout(program: &str, args: &[&str]) -> String {
    run_ok(Command::new(program).args(args))
}

fn package_installed() -> bool {
    let out = run("dpkg-query", &["-W", "-f=${Status}", "fleetcert"]);
    String::from_utf8_lossy(&out.stdout) == "install ok installed"
}

fn group_exists() -> bool {
    run("getent", &["group", "fleetcert"]).status.success()
}

/// The .deb that packaging/build-deb.sh built from this tree.
fn build_deb() -> PathBuf {
    let out = run_ok(&mut Command::new(repo().join("packaging/build-deb.sh")));
    let path = out.lines().last().unwrap_or_default().trim().to_owned();
    let deb = PathBuf::from(path);
    assert!(
        deb.is_file(),
        "build-deb.sh printed no .deb: {}",
        deb.display()
    );
    deb
}

/// The subcommands `fleetcert --help` lists: each has a man page of its own.
fn subcommands() -> Vec<String> {
    let help = stdout(env!("CARGO_BIN_EXE_fleetcert"), &["--help"]);
    help.lines()
        .skip_while(|line| !line.starts_with("Commands:"))
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

/// Leaves the machine as the test found it: purges the package, removes what purging keeps
/// on purpose (the test's certificate and state), and the group when the test made it.
struct Cleanup {
    group_was_there: bool,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if package_installed() {
            let _ = run("apt-get", &["purge", "-y", "-q", "fleetcert"]);
        }
        for dir in ["/etc/fleetcert", STATE_DIR, DEB_CACHE] {
            let _ = fs::remove_dir_all(dir);
        }
        if !self.group_was_there {
            let _ = run("groupdel", &["fleetcert"]);
        }
    }
}

#[track_caller]
fn assert_mode(path: &str, mode: u32, group: Option<u32>) {
    let meta = fs::metadata(path).unwrap_or_else(|err| panic!("{path}: {err}"));
    assert!(meta.is_dir(), "{path} is not a directory");
    assert_eq!(meta.permissions().mode() & 0o7777, mode, "{path} mode");
    assert_eq!(meta.uid(), 0, "{path} owner");
    if let Some(gid) = group {
        assert_eq!(meta.gid(), gid, "{path} group");
    }
}

fn fleetcert_gid() -> u32 {
    let line = stdout("getent", &["group", "fleetcert"]);
    line.split(':')
        .nth(2)
        .and_then(|gid| gid.trim().parse().ok())
        .unwrap_or_else(|| panic!("getent group fleetcert: {line:?}"))
}

#[test]
fn debian_package_installs_by_the_collection_and_purging_keeps_the_certificates() {
    let _host_root = crate::support::util::host_root_lock();
    assert_eq!(
        nix::unistd::geteuid().as_raw(),
        0,
        "this test installs a Debian package: run it as root (CI does)"
    );
    if package_installed() {
        // A previous run that was killed before its cleanup.
        let out = run("apt-get", &["purge", "-y", "-q", "fleetcert"]);
        assert!(
            out.status.success(),
            "cannot purge an installed fleetcert first"
        );
    }
    for dir in ["/etc/fleetcert", STATE_DIR] {
        assert!(
            !Path::new(dir).exists(),
            "{dir} exists and fleetcert is not installed: leftovers of a killed run? Remove it."
        );
    }
    let group_was_there = group_exists();
    let _cleanup = Cleanup { group_was_there };

    // 1. Build; lintian; the files.
    let deb = build_deb();
    let deb_str = deb.to_str().expect("UTF-8 path");
    let lintian = run("lintian", &[deb_str]);
    let report = String::from_utf8_lossy(&lintian.stdout).into_owned();
    assert!(lintian.status.success(), "lintian failed:\n{report}");
    for line in report.lines() {
        let Some(tag) = line
            .strip_prefix("W: fleetcert: ")
            .or(line.strip_prefix("E: fleetcert: "))
        else {
            continue;
        };
        let tag = tag.split_whitespace().next().unwrap_or_default();
        assert!(
            line.starts_with("W:") && ACCEPTED_WARNINGS.contains(&tag),
            "lintian: {line}"
        );
    }
    assert_eq!(
        stdout("dpkg-deb", &["-f", deb_str, "Version"]).trim(),
        format!("{}-1", env!("CARGO_PKG_VERSION")),
        "the package's version"
    );
    let changelog =
        fs::read_to_string(repo().join("packaging/debian/changelog")).expect("changelog");
    assert!(
        changelog.starts_with(&format!("fleetcert ({}-1) ", env!("CARGO_PKG_VERSION"))),
        "packaging/debian/changelog's newest entry is not the package's version"
    );
    let contents = stdout("dpkg-deb", &["-c", deb_str]);
    let files: Vec<&str> = contents
        .lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .collect();
    let mut want: Vec<String> = [
        "./usr/bin/fleetcert",
        "./usr/lib/fleetcert/lxd-hand-over",
        "./usr/share/man/man1/fleetcert.1.gz",
        "./usr/share/bash-completion/completions/fleetcert",
        "./usr/share/zsh/vendor-completions/_fleetcert",
        "./usr/share/fish/vendor_completions.d/fleetcert.fish",
        "./usr/lib/systemd/system/fleetcert-renew.service",
        "./usr/lib/systemd/system/fleetcert-renew.timer",
        "./usr/share/doc/fleetcert/copyright",
        "./usr/share/doc/fleetcert/changelog.Debian.gz",
        // The upstream changelog the shipped README links to.
        "./usr/share/doc/fleetcert/changelog.gz",
    ]
    .map(str::to_owned)
    .into();
    let commands = subcommands();
    assert!(
        commands.len() >= 5,
        "no subcommands in --help: {commands:?}"
    );
    want.extend(
        commands
            .iter()
            .map(|sub| format!("./usr/share/man/man1/fleetcert-{sub}.1.gz")),
    );
    for file in &want {
        assert!(
            files.contains(&file.as_str()),
            "dpkg-deb -c lacks {file}:\n{contents}"
        );
    }
    // Disabled: nothing in the package enables a unit.
    assert!(
        !files.iter().any(|file| file.contains(".wants/")),
        "the package enables a unit:\n{contents}"
    );

    // 2. The install role puts the package on a local fleet (method package, the .deb copied
    // from the bastion), and the daily playbook issues host1's certificate into the package's
    // directories with the package's group.
    let fleet = Fleet::new(&[
        OsStr::new("--hosts"),
        OsStr::new("1"),
        OsStr::new("--package"),
        deb.as_os_str(),
    ]);
    let host1 = "host1.example.test";
    let names = ["host1.example.test", "www1.example.test"];
    fs::write(
        fleet.host_vars(host1),
        format!(
            "---\n# The package's directories and group: the defaults.\nfleetcert_group: fleetcert\n\
             fleetcert_certs:\n  main: [{}]\n",
            names.join(", ")
        ),
    )
    .expect("host1's vars");
    let first = fleet.playbook(&[]);
    first.expect_failed(&[]);
    assert!(
        package_installed(),
        "the playbook did not install the package"
    );
    let fullchain = Path::new(CERT_DIR).join("main/fullchain.pem");
    fleet
        .sb
        .verify_chain(&fullchain)
        .unwrap_or_else(|err| panic!("{}: {err}", fullchain.display()));
    let mut want_names = names.map(str::to_owned).to_vec();
    want_names.sort();
    assert_eq!(sans(&fullchain), want_names, "names of host1's certificate");
    assert_issued(
        &fleet,
        "legacy.example.test",
        "main",
        &["host200.example.test"],
    );
    // The copy and the apt install are idempotent: a second run changes nothing.
    let second = fleet.playbook(&[]);
    second.expect_failed(&[]);
    assert!(
        !second.output.contains("changed: ["),
        "the second run with the package changed something:\n{}",
        second.output
    );

    // 3. As installed.
    assert_eq!(
        stdout("fleetcert", &["--version"]).trim(),
        format!("fleetcert {}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(
        stdout("sh", &["-c", "command -v fleetcert"]).trim(),
        "/usr/bin/fleetcert"
    );
    assert_eq!(
        stdout("man", &["-w", "fleetcert"]).trim(),
        "/usr/share/man/man1/fleetcert.1.gz"
    );
    for sub in &commands {
        let page = stdout("man", &["-w", &format!("fleetcert-{sub}")]);
        assert!(
            page.contains(&format!("fleetcert-{sub}.1")),
            "man -w fleetcert-{sub}: {page}"
        );
    }
    let page = run_ok(
        Command::new("man")
            .args(["-P", "cat", "fleetcert"])
            .env("MANWIDTH", "100"),
    );
    assert!(
        page.contains("EXIT STATUS") && page.contains("/var/lib/fleetcert"),
        "man fleetcert:\n{page}"
    );
    let gid = fleetcert_gid();
    // The postinst makes a system group; one the operator made before (`groupadd fleetcert`,
    // as docs/host-config.md says) is left as it is.
    assert!(
        group_was_there || gid < 1000,
        "the postinst made fleetcert a group that is not a system group (gid {gid})"
    );
    assert_mode(STATE_DIR, 0o700, Some(0));
    assert_mode(CERT_DIR, 0o750, Some(gid));
    let key = fs::metadata(Path::new(CERT_DIR).join("main/privkey.pem")).expect("host1's key");
    assert_eq!(
        (key.permissions().mode() & 0o777, key.gid()),
        (0o640, gid),
        "host1's key: 0640 root:fleetcert"
    );
    let units = [
        "/usr/lib/systemd/system/fleetcert-renew.service",
        "/usr/lib/systemd/system/fleetcert-renew.timer",
    ];
    let verify = run("systemd-analyze", &["verify", units[0], units[1]]);
    assert!(
        verify.status.success() && verify.stderr.is_empty(),
        "systemd-analyze verify: {}\n{}",
        verify.status,
        String::from_utf8_lossy(&verify.stderr)
    );
    let security = run("systemd-analyze", &["security", "--offline=yes", units[0]]);
    let text = String::from_utf8_lossy(&security.stdout).into_owned()
        + &String::from_utf8_lossy(&security.stderr);
    let exposure: f64 = text
        .split("Overall exposure level for fleetcert-renew.service:")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|level| level.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in systemd-analyze security:\n{text}"));
    assert!(
        exposure <= 3.0,
        "fleetcert-renew.service is exposed at {exposure}:\n{text}"
    );
    assert!(
        !Path::new("/etc/systemd/system/timers.target.wants/fleetcert-renew.timer").exists(),
        "installing enabled the timer"
    );
    let completion = stdout(
        "bash",
        &[
            "-c",
            "source /usr/share/bash-completion/completions/fleetcert && complete -p fleetcert",
        ],
    );
    assert!(
        completion.contains("fleetcert"),
        "bash completion: {completion}"
    );

    // 4. Purge: the binary and the package's files go; the certificate and the state stay.
    let purge = run("apt-get", &["purge", "-y", "-q", "fleetcert"]);
    assert!(
        purge.status.success(),
        "apt-get purge failed:\n{}",
        String::from_utf8_lossy(&purge.stderr)
    );
    assert!(!package_installed(), "still installed after purge");
    for gone in [
        "/usr/bin/fleetcert",
        "/usr/share/man/man1/fleetcert.1.gz",
        units[0],
        units[1],
    ] {
        assert!(
            !Path::new(gone).exists(),
            "{gone} is still there after purge"
        );
    }
    fleet
        .sb
        .verify_chain(&fullchain)
        .unwrap_or_else(|err| panic!("purge lost the certificate {}: {err}", fullchain.display()));
    assert!(
        Path::new(CERT_DIR).join("main/privkey.pem").is_file(),
        "purge removed the key"
    );
    assert!(Path::new(CONFIG).is_file(), "purge removed the host config");
    let state: Vec<_> = fs::read_dir(STATE_DIR)
        .map(|entries| entries.flatten().collect())
        .unwrap_or_default();
    assert!(
        !state.is_empty(),
        "purge emptied the state directory {STATE_DIR}"
    );
    assert!(
        group_exists(),
        "purge removed the group that the kept keys carry"
    );
}

/// The key group a test made on the host, removed when the test ends.
struct MadeGroup;

impl Drop for MadeGroup {
    fn drop(&mut self) {
        let _ = run("groupdel", &["fleetcert"]);
    }
}

/// Runs the package's postinst `configure` with `root` as `$DPKG_ROOT` (a chrootless
/// install's root): its exit code and stderr.
fn postinst_in(root: &Path) -> (i32, String) {
    let out = Command::new("sh")
        .arg(repo().join("packaging/debian/postinst"))
        .arg("configure")
        .env("DPKG_ROOT", root)
        .output()
        .expect("run postinst");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn mode_of(path: &Path) -> u32 {
    fs::symlink_metadata(path).expect("stat").mode() & 0o7777
}

#[test]
fn postinst_refuses_links_and_foreign_directories_and_repairs_open_ones() {
    // The host's key group is shared with the package test: one at a time (util.rs), and
    // the group this test makes is removed again, as the package test removes its own.
    let _host_root = crate::support::util::host_root_lock();
    let _group = (!group_exists()).then(|| {
        assert!(
            run("addgroup", &["--system", "--quiet", "fleetcert"])
                .status
                .success()
        );
        MadeGroup
    });
    let other_uid = 4242;
    // Missing: made with the package's modes.
    let root = tempfile::tempdir().expect("root");
    let (code, stderr) = postinst_in(root.path());
    assert_eq!(code, 0, "{stderr}");
    for (dir, mode) in [
        ("var/lib/fleetcert", 0o700),
        ("etc/fleetcert", 0o755),
        ("etc/fleetcert/certs", 0o750),
    ] {
        assert_eq!(mode_of(&root.path().join(dir)), mode, "{dir}");
    }
    // /etc/fleetcert a link to another user's 0777 directory: refused, nothing made there.
    let root = tempfile::tempdir().expect("root");
    let theirs = root.path().join("theirs");
    fs::create_dir(&theirs).expect("their dir");
    fs::set_permissions(&theirs, fs::Permissions::from_mode(0o777)).expect("chmod");
    std::os::unix::fs::chown(&theirs, Some(other_uid), Some(other_uid)).expect("chown");
    fs::create_dir_all(root.path().join("etc")).expect("etc");
    std::os::unix::fs::symlink(&theirs, root.path().join("etc/fleetcert")).expect("link");
    let (code, stderr) = postinst_in(root.path());
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("/etc/fleetcert is a symbolic link") && stderr.contains("dpkg --configure"),
        "{stderr}"
    );
    assert_eq!(
        fs::read_dir(&theirs).expect("list").count(),
        0,
        "something was made in the other user's directory"
    );
    // A dangling link: the same message, not install's.
    fs::remove_file(root.path().join("etc/fleetcert")).expect("unlink");
    std::os::unix::fs::symlink(
        root.path().join("nowhere"),
        root.path().join("etc/fleetcert"),
    )
    .expect("link");
    let (code, stderr) = postinst_in(root.path());
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("is a symbolic link"), "{stderr}");
    // Another user's directory: refused.
    fs::remove_file(root.path().join("etc/fleetcert")).expect("unlink");
    fs::create_dir(root.path().join("etc/fleetcert")).expect("dir");
    std::os::unix::fs::chown(root.path().join("etc/fleetcert"), Some(other_uid), None)
        .expect("chown");
    let (code, stderr) = postinst_in(root.path());
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("belongs to uid 4242"), "{stderr}");
    // Root's, but 0777 (and a 0777 state directory and certs/): repaired, with a message.
    std::os::unix::fs::chown(root.path().join("etc/fleetcert"), Some(0), None).expect("chown");
    for dir in ["etc/fleetcert", "etc/fleetcert/certs", "var/lib/fleetcert"] {
        fs::create_dir_all(root.path().join(dir)).expect("dir");
        fs::set_permissions(root.path().join(dir), fs::Permissions::from_mode(0o777))
            .expect("chmod");
    }
    let (code, stderr) = postinst_in(root.path());
    assert_eq!(code, 0, "{stderr}");
    for dir in ["etc/fleetcert", "etc/fleetcert/certs", "var/lib/fleetcert"] {
        assert_eq!(
            mode_of(&root.path().join(dir)) & 0o022,
            0,
            "{dir} still open"
        );
        assert!(
            stderr.contains(&format!("/{dir} was writable by others (mode 777)")),
            "{dir}: {stderr}"
        );
    }
}
