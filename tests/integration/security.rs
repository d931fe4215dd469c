//! Issue 10's attacks, as an attacker would make them, each proving that fleetcert fails
//! closed: a compromised host asking for another host's names, a local user planting links
//! where a root `publish` or `finalize` writes, a permissive umask, forged error lines,
//! endless inputs and the smaller config faults.
//!
//! Where a server is involved the attack runs against the real sandbox, and the proof is what
//! the servers say (no record served for the foreign name, the CA's order not valid, no
//! certificate on disk). Where a local user is the attacker, a real unprivileged user does
//! it: `fleetcert-attacker`, made here once (`useradd --system`), acting through `setpriv`;
//! the proof is a root-owned victim file that stays byte for byte and owner for owner, and
//! keys that the attacker's own `cat` cannot read. Every refusal must be one line of bounded
//! length. These tests need root (CI runs as root): they chown and they switch users.
//!
//! A file name with the writer's pid in it is predictable to whoever can start or watch the
//! writer; the launcher below lets the attacker plant links named after the very pid the
//! command will run as (the shell's `$$`, which `exec` keeps).

use std::ffi::{OsStr, OsString};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use serde_yaml::Mapping;

use crate::support::config::ZoneConfig;
use crate::support::day::Zone;
use crate::support::day::token_document;
use crate::support::fixture::{Host, KEY_GROUP, sandbox};
use crate::support::sandbox::Sandbox;
use crate::support::util::last_stderr_line;
use crate::support::util::{Run, tree};

/// The unprivileged local user who attacks.
const ATTACKER: &str = "fleetcert-attacker";
/// The longest error line a refusal may print: a few escaped, bounded excerpts and the
/// sentence around them. A megabyte of input must not get through.
const MAX_ERROR_LINE: usize = 4096;
/// The address space every run under test gets at most: reading `/dev/zero` whole would
/// cross it within a second (and take the machine's memory without it).
const MEMORY_LIMIT_KIB: u64 = 1 << 20;

// --- the attacker ------------------------------------------------------------------------

/// The attacker's uid and gid, making the user on first use (idempotent, also across test
/// processes: a `useradd` that lost a race to another finds the user made).
fn attacker() -> (u32, u32) {
    static IDS: OnceLock<(u32, u32)> = OnceLock::new();
    *IDS.get_or_init(|| {
        assert!(
            nix::unistd::geteuid().is_root(),
            "tests/integration/security.rs must run as root (as CI does): it makes a user, \
             switches to it and chowns files"
        );
        for _ in 0..20 {
            if let Ok(Some(user)) = nix::unistd::User::from_name(ATTACKER) {
                return (user.uid.as_raw(), user.gid.as_raw());
            }
            let _ = Command::new("useradd")
                .args(["--system", "--user-group", "--no-create-home"])
                .args(["--shell", "/usr/sbin/nologin", ATTACKER])
                .stderr(Stdio::null())
                .status();
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("cannot make the user {ATTACKER} with useradd");
    })
}

/// The `setpriv` prefix that runs a command as the attacker (no supplementary groups).
fn as_attacker_argv() -> Vec<String> {
    let (uid, gid) = attacker();
    vec![
        "setpriv".to_owned(),
        format!("--reuid={uid}"),
        format!("--regid={gid}"),
        "--clear-groups".to_owned(),
        "--".to_owned(),
    ]
}

/// Runs `script` with `sh -c` as the attacker; whether it succeeded.
fn attacker_sh(script: &str, args: &[&OsStr]) -> bool {
    let argv = as_attacker_argv();
    Command::new(&argv[0])
        .args(&argv[1..])
        .args(["sh", "-c", script, "attacker"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run setpriv")
        .success()
}

/// Whether the attacker can read `path` (its own `cat`, with its own permissions).
fn attacker_can_read(path: &Path) -> bool {
    attacker_sh("cat -- \"$1\" >/dev/null", &[path.as_os_str()])
}

/// Lets everyone enter `dir` (a fresh temporary directory is 0700), as `/etc` or
/// `/var/lib` would be.
fn open_up(dir: &Path) {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).expect("chown");
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A directory of the attacker's, world-writable, with an empty file `loot` of its own that
/// every planted link points at: whatever lands in it, the attacker can read.
struct Lair {
    dir: PathBuf,
    loot: PathBuf,
}

impl Lair {
    fn new(parent: &Path) -> Self {
        let (uid, gid) = attacker();
        let dir = parent.join("lair");
        std::fs::create_dir(&dir).expect("mkdir lair");
        chown(&dir, uid, gid);
        chmod(&dir, 0o777);
        let loot = dir.join("loot");
        std::fs::write(&loot, b"").expect("write loot");
        chown(&loot, uid, gid);
        chmod(&loot, 0o666);
        Self { dir, loot }
    }

    /// Panics unless nothing of fleetcert's reached the lair: the loot is empty and every
    /// entry is the attacker's own.
    #[track_caller]
    fn assert_empty_handed(&self, what: &str) {
        let loot = std::fs::read(&self.loot).expect("read loot");
        assert!(
            loot.is_empty(),
            "{what}: {} bytes reached the attacker's file, starting {:?}",
            loot.len(),
            String::from_utf8_lossy(&loot[..loot.len().min(40)])
        );
        assert_all_the_attackers(&self.dir, what);
    }
}

/// Panics unless everything below `dir` is the attacker's own: fleetcert made nothing there.
#[track_caller]
fn assert_all_the_attackers(dir: &Path, what: &str) {
    let (uid, _) = attacker();
    for (entry, meta) in tree(dir) {
        assert_eq!(
            meta.uid(),
            uid,
            "{what}: fleetcert made {} in the attacker's directory",
            entry.display()
        );
    }
}

/// Takes away a planted `path` (a link, or a directory made by the attacker).
fn remove_plant(path: &Path) {
    if std::fs::symlink_metadata(path).is_ok_and(|meta| meta.is_dir()) {
        std::fs::remove_dir_all(path).expect("remove the attacker's directory");
    } else {
        std::fs::remove_file(path).expect("remove the attacker's link");
    }
}

/// A root-owned file that no run may change, truncate, chmod or give away.
struct Victim {
    path: PathBuf,
    bytes: Vec<u8>,
    mode: u32,
}

impl Victim {
    fn new(dir: &Path) -> Self {
        let path = dir.join("victim");
        let bytes = b"root's own file: not yours to write\n".to_vec();
        std::fs::write(&path, &bytes).expect("write victim");
        chown(&path, 0, 0);
        chmod(&path, 0o600);
        Self {
            path,
            bytes,
            mode: 0o600,
        }
    }

    #[track_caller]
    fn assert_untouched(&self, what: &str) {
        let meta = std::fs::symlink_metadata(&self.path).expect("victim still there");
        assert!(meta.is_file(), "{what}: the victim is no longer a file");
        assert_eq!(
            (meta.uid(), meta.gid(), meta.mode() & 0o7777),
            (0, 0, self.mode),
            "{what}: the victim's owner or mode changed"
        );
        assert_eq!(
            std::fs::read(&self.path).expect("read victim"),
            self.bytes,
            "{what}: the victim's bytes changed"
        );
    }
}

/// The names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("list")
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

// --- running fleetcert -------------------------------------------------------------------

/// The binary under test.
fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_fleetcert"))
}

/// One run of the binary under test, through `sh` so that the attacker can act first and
/// the run gets the umask and limits the attack needs.
#[derive(Default)]
struct Launch {
    args: Vec<OsString>,
    /// A script the attacker runs just before; `$1` is the pid fleetcert will have.
    plant: Option<String>,
    umask: Option<&'static str>,
    env: Vec<(&'static str, String)>,
    stdin: Option<PathBuf>,
    /// Run as the attacker rather than as root.
    unprivileged: bool,
}

impl Launch {
    fn new<S: AsRef<OsStr>>(args: &[S]) -> Self {
        Self {
            args: args.iter().map(|arg| arg.as_ref().to_owned()).collect(),
            ..Self::default()
        }
    }

    fn plant(mut self, script: &str) -> Self {
        self.plant = Some(script.to_owned());
        self
    }

    fn umask(mut self, umask: &'static str) -> Self {
        self.umask = Some(umask);
        self
    }

    fn env(mut self, key: &'static str, value: &str) -> Self {
        self.env.push((key, value.to_owned()));
        self
    }

    fn stdin(mut self, path: &Path) -> Self {
        self.stdin = Some(path.to_owned());
        self
    }

    fn unprivileged(mut self) -> Self {
        self.unprivileged = true;
        self
    }

    fn run(self) -> Run {
        // $1 plant script, $2 umask, $3 memory limit; then the command. The attacker's
        // script runs as a child of this shell, which then becomes fleetcert (same pid).
        let script = "plant=$1 mask=$2 limit=$3; shift 3; \
            if [ -n \"$plant\" ]; then $PLANTER sh -c \"$plant\" plant \"$$\" || exit 97; fi; \
            [ -z \"$mask\" ] || umask \"$mask\"; ulimit -v \"$limit\"; exec \"$@\"";
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(script)
            .arg("launch")
            .arg(self.plant.unwrap_or_default())
            .arg(self.umask.unwrap_or_default())
            .arg(MEMORY_LIMIT_KIB.to_string())
            .env("PLANTER", as_attacker_argv().join(" "));
        if self.unprivileged {
            command.args(as_attacker_argv());
        }
        command.arg(binary()).args(&self.args);
        for (key, value) in &self.env {
            command.env(key, value);
        }
        command
            .stdin(match &self.stdin {
                Some(path) => Stdio::from(std::fs::File::open(path).expect("open stdin")),
                None => Stdio::null(),
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let output = command.output().expect("run fleetcert");
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// `fleetcert COMMAND --config CONFIG`.
fn with_config(command: &str, config: &Path) -> Launch {
    Launch::new(&[
        OsStr::new(command),
        OsStr::new("--config"),
        config.as_os_str(),
    ])
}

/// The one line a refused run prints: exactly one, bounded, with no control character, and
/// no report on stdout.
#[track_caller]
fn error_line(run: &Run) -> &str {
    assert!(
        run.stdout.is_empty(),
        "a report beside the error: {}",
        run.stdout
    );
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "not one line on stderr (exit {}):\n{}",
        run.code,
        &run.stderr[..run.stderr.len().min(2000)]
    );
    let line = lines[0];
    assert!(
        line.starts_with("fleetcert: error: "),
        "not an error line: {line}"
    );
    assert!(
        line.len() <= MAX_ERROR_LINE,
        "a line of {} bytes",
        line.len()
    );
    assert!(
        !line.chars().any(char::is_control),
        "a control character in the line: {line:?}"
    );
    line
}

/// `run` refused with exit 2 and one line containing every one of `needles`.
#[track_caller]
fn assert_refused(run: &Run, what: &str, needles: &[&str]) {
    assert_eq!(
        run.code, 2,
        "{what}: exit {}\n{}{}",
        run.code, run.stdout, run.stderr
    );
    let line = error_line(run);
    for needle in needles {
        assert!(line.contains(needle), "{what}: {needle:?} not in {line}");
    }
}

// --- the central side --------------------------------------------------------------------

/// A zone config for the sandbox's signing zone with `extra` YAML lines, and its path.
fn zone_config(sb: &Sandbox, dir: &Path, file: &str, extra: &str) -> PathBuf {
    let path = dir.join(file);
    ZoneConfig::rndc(sb).lines(extra).write(&path);
    path
}

/// [`zone_config`] `zone.yaml` allowing host1 and host2 their own names only.
fn two_hosts_zone_config(sb: &Sandbox, dir: &Path) -> PathBuf {
    zone_config(
        sb,
        dir,
        "zone.yaml",
        "allow: {host1.example.test: [host1.example.test], \
         host2.example.test: [host2.example.test]}\n",
    )
}

fn publish_args(config: &Path, tokens: &[&OsStr], extra: &[&str]) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["publish".into(), "--config".into(), config.into()];
    for tokens in tokens {
        args.extend(["--tokens".into(), (*tokens).to_owned()]);
    }
    args.extend(extra.iter().map(OsString::from));
    args
}

/// The TXT values both authoritative servers serve at `name`.
fn served(sb: &Sandbox, name: &str) -> Vec<Vec<String>> {
    [sb.primary(), sb.secondary()]
        .iter()
        .map(|server| {
            sb.dig_authoritative(server, name, "TXT")
                .unwrap_or_else(|err| panic!("{err}"))
        })
        .collect()
}

/// A DNS-01-shaped value, different on every call.
fn fresh_value() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static CALLS: AtomicU32 = AtomicU32::new(0);
    let call = CALLS.fetch_add(1, Ordering::Relaxed);
    format!("{:0>43}", format!("v{}x{call}", std::process::id()))
}

/// A token document of `host` with one record per identifier (per-name placement).
fn document(host: &str, identifiers: &[&str]) -> Value {
    let records: Vec<Value> = identifiers
        .iter()
        .map(|id| {
            json!({"name": format!("{id}.acme.test."), "value": fresh_value(),
                   "cert": "main", "identifier": id})
        })
        .collect();
    json!({"version": 1, "host": host, "records": records,
           "certs": [{"name": "main", "status": "pending", "not_after": null, "reason": "test"}]})
}

/// Panics unless the CA itself says it issued nothing for the order at `url`, having set it
/// invalid: Pebble logs every issuance and every order it invalidates.
#[track_caller]
fn assert_ca_issued_nothing_for(sb: &Sandbox, url: &str) {
    let order = url.rsplit('/').next().expect("order id");
    let log = std::fs::read_to_string(sb.dir().join("logs/pebble.log")).expect("pebble log");
    assert!(
        !log.lines().any(|line| line.contains("Issued certificate")),
        "the CA issued a certificate:\n{log}"
    );
    assert!(
        log.contains(&format!("order {order} set INVALID")),
        "the CA did not invalidate order {order}:\n{log}"
    );
}

/// Rewrites the fixture host's config with `edit`, which sets top-level keys.
fn edit_config(host: &Host<'_>, edit: impl FnOnce(&mut Mapping)) {
    crate::support::config::edit(&host.config(), edit);
}

// --- 1. a host speaks only for itself ----------------------------------------------------

#[test]
fn a_host_claiming_another_hosts_name_gets_no_record_and_no_certificate() {
    let sb = sandbox().start();
    // host1 is compromised: it says it is host2 and asks for host2's name.
    let host = Host::new(&sb, &[("main", &["host2.example.test"])]);
    edit_config(&host, |config| {
        config.insert("host".into(), "host2.example.test".into());
    });
    let document = host.request_ok();
    assert_eq!(document["host"], "host2.example.test");
    let order = host.saved_order("main").expect("order saved")["url"]
        .as_str()
        .expect("order url")
        .to_owned();
    let central = tempfile::tempdir().expect("tempdir");
    let config = two_hosts_zone_config(&sb, central.path());
    let zone_before = std::fs::read(sb.signing_zone_file()).expect("zone");
    // As the bastion hands documents over: keyed by the inventory's name for the host that
    // produced them (Ansible's hostvars), which the host does not choose.
    let hostvars = central.path().join("hostvars.json");
    std::fs::write(
        &hostvars,
        json!({"host1.example.test": &document}).to_string(),
    )
    .expect("write tokens");
    let run = Launch::new(&publish_args(&config, &[hostvars.as_os_str()], &[])).run();
    assert_refused(
        &run,
        "hostvars",
        &["host1.example.test", "speak for itself"],
    );
    // And as a file the operator maps to the host it came from.
    let file = central.path().join("host1.json");
    std::fs::write(&file, document.to_string()).expect("write tokens");
    let mapped = OsString::from(format!("host1.example.test={}", file.display()));
    let run = Launch::new(&publish_args(&config, &[&mapped], &[])).run();
    assert_refused(
        &run,
        "HOST=FILE",
        &["host1.example.test", "speak for itself"],
    );
    // host1's own file dressed as a hostvars object that names host2 by its key: the mapping
    // vouches for host1 alone, in a file and on standard input.
    let wrapped = central.path().join("host1-wrapped.json");
    std::fs::write(
        &wrapped,
        json!({"host2.example.test": &document}).to_string(),
    )
    .expect("write tokens");
    let mapped = OsString::from(format!("host1.example.test={}", wrapped.display()));
    let run = Launch::new(&publish_args(&config, &[&mapped], &[])).run();
    assert_refused(
        &run,
        "HOST=FILE holding a hostvars object",
        &[
            "came as --tokens host1.example.test=",
            "not one token document",
        ],
    );
    let stdin = OsString::from("host1.example.test=-");
    let run = Launch::new(&publish_args(&config, &[&stdin], &[]))
        .stdin(&wrapped)
        .run();
    assert_refused(
        &run,
        "HOST=- holding a hostvars object",
        &[
            "stdin",
            "came as --tokens host1.example.test=",
            "not one token document",
        ],
    );

    assert_nothing_came_of_it(&host, &zone_before, "host2.example.test.acme.test.", &order);
}

/// Panics unless the refused publish left the zone file as it was, no server serves a value
/// at `record`, and `host`'s finalize gets no certificate: none on disk, none at the CA.
#[track_caller]
fn assert_nothing_came_of_it(host: &Host<'_>, zone_before: &[u8], record: &str, order: &str) {
    let sb = host.sb;
    assert_eq!(
        std::fs::read(sb.signing_zone_file()).expect("zone"),
        zone_before,
        "zone file changed"
    );
    for answer in served(sb, record) {
        assert!(answer.is_empty(), "{record} has values: {answer:?}");
    }
    let run = host.finalize();
    assert_eq!(run.code, 1, "finalize: {}{}", run.stdout, run.stderr);
    assert!(
        !host.file("main", "cert.pem").exists(),
        "a certificate was installed"
    );
    assert_ca_issued_nothing_for(sb, order);
}

#[test]
fn an_allow_list_in_shared_mode_is_refused_at_load_so_a_relabelled_identifier_gets_nothing() {
    let sb = sandbox().start();
    // host1 may have shared1; it orders shared2 and relabels the record as shared1's. In
    // shared mode both values sit at the apex, so the CA's lookup for shared2 finds it.
    let host = Host::new(&sb, &[("main", &["shared2.example.test"])]);
    host.configure(
        "challenge_records: shared\n",
        &[("main", &["shared2.example.test"])],
    );
    let mut document = host.request_ok();
    let order = host.saved_order("main").expect("order saved")["url"]
        .as_str()
        .expect("order url")
        .to_owned();
    assert_eq!(document["records"][0]["name"], "acme.test.");
    document["records"][0]["identifier"] = json!("shared1.example.test");
    let central = tempfile::tempdir().expect("tempdir");
    let config = zone_config(
        &sb,
        central.path(),
        "zone.yaml",
        "challenge_records: shared\nallow: {host1.example.test: [shared1.example.test]}\n",
    );
    let tokens = central.path().join("hostvars.json");
    std::fs::write(
        &tokens,
        json!({"host1.example.test": &document}).to_string(),
    )
    .expect("write tokens");
    let zone_before = std::fs::read(sb.signing_zone_file()).expect("zone");
    for extra in [&[][..], &["--dry-run"]] {
        let run = Launch::new(&publish_args(&config, &[tokens.as_os_str()], extra)).run();
        assert_refused(&run, "shared + allow", &["`allow`", "shared", "per-name"]);
    }
    assert_nothing_came_of_it(&host, &zone_before, "acme.test.", &order);
}

// --- 2. the zone directory ---------------------------------------------------------------

/// The sandbox's primary zone directory made like Debian's `/etc/bind` or `/var/lib/bind`:
/// `root:<attacker's group> 2775`, the zone file the server user's own. Returns the zone
/// directory.
fn hand_zone_directory_to_the_attacker(sb: &Sandbox) -> PathBuf {
    let (uid, gid) = attacker();
    // The attacker must reach the directory, as a server user reaches /var/lib/bind.
    chmod(sb.dir(), 0o711);
    let zone_file = sb.signing_zone_file();
    let zone_dir = zone_file.parent().expect("zone dir").to_path_buf();
    chown(&zone_dir, 0, gid);
    chmod(&zone_dir, 0o2775);
    chown(&zone_file, uid, gid);
    chmod(&zone_file, 0o644);
    zone_dir
}

#[test]
fn links_planted_in_a_group_writable_zone_directory_reach_no_file_of_roots() {
    let sb = Sandbox::start();
    let (uid, gid) = attacker();
    let zone_dir = hand_zone_directory_to_the_attacker(&sb);
    let zone_name = "acme.test.db";
    let central = tempfile::tempdir().expect("tempdir");
    let victim = Victim::new(central.path());
    let config = zone_config(&sb, central.path(), "zone.yaml", "");
    let publish = |what: &str, plant: Option<String>| {
        let tokens = central.path().join(format!("{what}.json"));
        let doc = document("host1.example.test", &["host1.example.test"]);
        std::fs::write(&tokens, doc.to_string()).expect("write tokens");
        let launch = Launch::new(&publish_args(&config, &[tokens.as_os_str()], &[]));
        let run = match plant {
            Some(script) => launch.plant(&script).run(),
            None => launch.run(),
        };
        (run, doc)
    };
    // A publish that went through: every server answers with its document's value.
    let assert_published = |run: &Run, doc: &Value| {
        assert_eq!(run.code, 0, "publish: {}{}", run.stdout, run.stderr);
        let value = doc["records"][0]["value"].as_str().expect("value");
        for answer in served(&sb, "host1.example.test.acme.test.") {
            assert_eq!(answer, [value]);
        }
    };
    let victim_path = victim.path.display().to_string();
    let link = |name: &str| format!("ln -sfn {victim_path} {}/{name}", zone_dir.display());

    // Where fleetcert opens a fixed name: the lock, the previous zone, the ledger. Each link
    // is refused with one line and nothing is written through it.
    for name in [
        format!("{zone_name}.lock"),
        format!("{zone_name}.prev"),
        format!("{zone_name}.ledger.json"),
    ] {
        assert!(attacker_sh(&link(&name), &[]), "plant {name}");
        let (run, _) = publish(&name, None);
        victim.assert_untouched(&name);
        assert_refused(&run, &name, &["symlink"]);
        std::fs::remove_file(zone_dir.join(&name)).expect("remove plant");
    }

    // Temporary files named after the writer's pid, as a publish before this round named
    // them (and as any writer that names them so would): planted for the very pid.
    let temporaries = [
        format!(".{zone_name}.fleetcert.$1"),
        format!(".{zone_name}.ledger.json.tmp.$1"),
        format!(".{zone_name}.prev.$1"),
        format!(".{zone_name}.tmp.$1"),
    ];
    let script: Vec<String> = temporaries.iter().map(|name| link(name)).collect();
    let (run, doc) = publish("temporaries", Some(script.join(" && ")));
    victim.assert_untouched("planted temporaries");
    assert_published(&run, &doc);

    // A racing attacker swaps every temporary file for a link the moment it appears.
    let racer_script = format!(
        "end=$(($(date +%s) + 4)); cd {dir}; while [ $(date +%s) -lt $end ]; do \
         for f in .{zone_name}*; do [ -f \"$f\" ] && ln -sfn {victim_path} \"$f\"; done; done",
        dir = zone_dir.display()
    );
    let argv = as_attacker_argv();
    let mut racer = Command::new(&argv[0])
        .args(&argv[1..])
        .args(["sh", "-c", &racer_script])
        .spawn()
        .expect("start the racer");
    let started = Instant::now();
    let mut runs = 0;
    while started.elapsed() < Duration::from_secs(3) {
        let (run, _) = publish("race", None);
        assert!(
            [0, 2, 4].contains(&run.code),
            "publish during the race: exit {}\n{}",
            run.code,
            run.stderr
        );
        assert!(
            !run.stderr.contains("not yours"),
            "the victim's content reached an error line: {}",
            run.stderr
        );
        runs += 1;
    }
    racer.wait().expect("racer ends by itself");
    assert!(runs > 0);
    victim.assert_untouched("racing attacker");

    // Clean up the attacker's leftovers: an ordinary publish works, keeps the server user's
    // ownership of its zone file, and leaves no temporary of its own behind.
    for name in listing(&zone_dir) {
        let path = zone_dir.join(&name);
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
            std::fs::remove_file(path).expect("remove plant");
        }
    }
    let (run, doc) = publish("after", None);
    assert_published(&run, &doc);
    let zone = std::fs::symlink_metadata(sb.signing_zone_file()).expect("zone");
    assert_eq!(
        (zone.uid(), zone.gid(), zone.mode() & 0o7777),
        (uid, gid, 0o644)
    );
    assert!(
        listing(&zone_dir)
            .iter()
            .all(|name| !name.contains(".tmp.")),
        "temporaries left: {:?}",
        listing(&zone_dir)
    );
    victim.assert_untouched("the end");
}

#[test]
fn publish_dry_run_creates_no_file_at_all() {
    let sb = Sandbox::start();
    let zone_dir = hand_zone_directory_to_the_attacker(&sb);
    let central = tempfile::tempdir().expect("tempdir");
    open_up(central.path());
    let victim = Victim::new(central.path());
    let config = zone_config(&sb, central.path(), "zone.yaml", "");
    chmod(&config, 0o644);
    let tokens = central.path().join("tokens.json");
    std::fs::write(
        &tokens,
        document("host1.example.test", &["host1.example.test"]).to_string(),
    )
    .expect("write tokens");
    chmod(&tokens, 0o644);
    let before = listing(&zone_dir);
    let zone_before = std::fs::read(sb.signing_zone_file()).expect("zone");
    let args = publish_args(&config, &[tokens.as_os_str()], &["--dry-run"]);

    // As root, with a link planted where a temporary named after the pid would go.
    let zone_name = "acme.test.db";
    let plant = [".fleetcert.$1", ".tmp.$1", ".ledger.json.tmp.$1"]
        .map(|suffix| {
            format!(
                "ln -s {} {}/.{zone_name}{suffix}",
                victim.path.display(),
                zone_dir.display()
            )
        })
        .join(" && ");
    let run = Launch::new(&args).plant(&plant).run();
    assert_eq!(run.code, 0, "dry run: {}{}", run.stdout, run.stderr);
    assert_eq!(run.json()["dry_run"], true);
    victim.assert_untouched("dry run");
    for name in listing(&zone_dir) {
        let path = zone_dir.join(&name);
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
            std::fs::remove_file(path).expect("remove plant");
        }
    }
    assert_eq!(listing(&zone_dir), before);

    // As a user who may read everything it needs and create nothing: a dry run that tried
    // to create any file would fail.
    let readonly = zone_dir.parent().expect("sandbox").join("readonly");
    std::fs::create_dir(&readonly).expect("mkdir");
    chmod(&readonly, 0o755);
    std::fs::copy(sb.signing_zone_file(), readonly.join(zone_name)).expect("copy zone");
    chmod(&readonly.join(zone_name), 0o644);
    let text = std::fs::read_to_string(&config).expect("config");
    let ro_config = central.path().join("readonly.yaml");
    std::fs::write(
        &ro_config,
        text.replace(
            &sb.signing_zone_file().display().to_string(),
            &readonly.join(zone_name).display().to_string(),
        ),
    )
    .expect("write config");
    chmod(&ro_config, 0o644);
    let args = publish_args(&ro_config, &[tokens.as_os_str()], &["--dry-run"]);
    let run = Launch::new(&args).unprivileged().run();
    assert_eq!(
        run.code, 0,
        "unprivileged dry run: {}{}",
        run.stdout, run.stderr
    );
    assert_eq!(listing(&readonly), [zone_name]);
    assert_eq!(
        std::fs::read(sb.signing_zone_file()).expect("zone"),
        zone_before
    );
}

// --- 3. keys on a host -------------------------------------------------------------------

/// Every entry below `root` with its mode, owner group and kind, for the umask test.
fn modes(root: &Path) -> Vec<(PathBuf, u32, u32, bool)> {
    tree(root)
        .into_iter()
        .filter(|(_, meta)| !meta.file_type().is_symlink())
        .map(|(path, meta)| (path, meta.mode() & 0o7777, meta.gid(), meta.is_dir()))
        .collect()
}

fn key_group() -> u32 {
    nix::unistd::Group::from_name(KEY_GROUP)
        .expect("group lookup")
        .expect("key group exists")
        .gid
        .as_raw()
}

#[test]
fn under_umask_000_every_mode_is_explicit_and_no_key_is_readable_by_others() {
    let sb = sandbox().start();
    let (_, _) = attacker();
    let host = Host::new(&sb, &[("main", &["host3.example.test"])]);
    open_up(host.dir.path());
    let root = host.dir.path();
    let (state, certs) = (
        root.join("var/lib/fleetcert"),
        root.join("etc/fleetcert/certs"),
    );
    edit_config(&host, |config| {
        config.insert("state_dir".into(), state.display().to_string().into());
        config.insert("cert_dir".into(), certs.display().to_string().into());
    });
    let config = host.config();
    let run_with_umask = |command: &str| {
        let run = with_config(command, &config).umask("000").run();
        assert_eq!(run.code, 0, "{command}: {}{}", run.stdout, run.stderr);
        run
    };
    let document = run_with_umask("request").json();
    // Between request and finalize: the order file and the account are the process's alone.
    for file in [state.join("account.json"), state.join("orders/main.json")] {
        assert_eq!(
            std::fs::metadata(&file).expect("stat").mode() & 0o777,
            0o600
        );
        assert!(!attacker_can_read(&file), "{} readable", file.display());
    }
    host.place(&document);
    run_with_umask("finalize");

    let group = key_group();
    for (path, mode, gid, is_dir) in modes(&root.join("var"))
        .into_iter()
        .chain(modes(&root.join("etc")))
    {
        let shown = path.display();
        assert_eq!(
            mode & 0o002,
            0,
            "{shown} is writable by others ({mode:04o})"
        );
        let expected = if path == root.join("var/lib") || path == root.join("var") {
            0o755
        } else if path.starts_with(&state) {
            if is_dir { 0o700 } else { 0o600 }
        } else if path == root.join("etc") || path == root.join("etc/fleetcert") || path == certs {
            0o755
        } else if is_dir {
            assert_eq!(gid, group, "{shown} not in the key group");
            0o750
        } else if path.file_name() == Some(OsStr::new("privkey.pem")) {
            assert_eq!(gid, group, "{shown} not in the key group");
            0o640
        } else {
            0o644
        };
        assert_eq!(mode, expected, "{shown}: mode {mode:04o}");
    }
    // The key and the state are the process's and the key group's alone.
    let key = certs.join("main/privkey.pem");
    assert!(key.exists(), "no key installed");
    for secret in [key, state.join("account.json")] {
        assert!(
            !attacker_can_read(&secret),
            "{} readable by others",
            secret.display()
        );
    }
    assert!(
        attacker_can_read(Path::new("/etc/hostname")),
        "the read check cannot read at all"
    );
}

#[test]
fn a_symlinked_or_foreign_certificate_or_state_directory_gets_no_key_written_into_it() {
    let sb = sandbox().start();
    let (uid, gid) = attacker();
    let host = Host::new(&sb, &[("main", &["host4.example.test"])]);
    open_up(host.dir.path());
    let lair = Lair::new(host.dir.path());
    let config = host.config();
    let config_arg = config.to_str().expect("utf-8").to_owned();
    // Links named as temporaries of `files` in `dir`, for the pid the command will have.
    let plant = |dir: &Path, files: &[&str]| {
        files
            .iter()
            .map(|file| {
                format!(
                    "ln -sf {loot} {dir}/.{file}.tmp.$1",
                    loot = lair.loot.display(),
                    dir = dir.display()
                )
            })
            .collect::<Vec<_>>()
            .join(" && ")
    };
    let key_files = ["privkey.pem", "cert.pem", "chain.pem", "fullchain.pem"];

    // The state directory first: a link to the lair, then the lair itself as if the
    // attacker had made it before fleetcert first ran.
    for kind in ["symlink", "foreign"] {
        let state = host.state_dir();
        match kind {
            "symlink" => std::os::unix::fs::symlink(&lair.dir, &state).expect("link"),
            _ => {
                std::fs::create_dir(&state).expect("mkdir");
                chown(&state, uid, gid);
                chmod(&state, 0o777);
            }
        }
        let target = if kind == "symlink" {
            lair.dir.clone()
        } else {
            state.clone()
        };
        let run = Launch::new(&["request", "--config", &config_arg])
            .plant(&plant(&target, &["account.json", "lock"]))
            .run();
        lair.assert_empty_handed(&format!("state_dir {kind}"));
        assert_refused(&run, &format!("state_dir {kind}"), &["state"]);
        assert_all_the_attackers(&target, &format!("state_dir {kind}"));
        remove_plant(&state);
    }

    // Now an order, so that finalize has a key to write.
    let document = host.request_ok();
    host.place(&document);
    let cert_dir = host.cert_dir();
    std::fs::create_dir(&cert_dir).expect("mkdir cert_dir");
    chmod(&cert_dir, 0o755);
    for kind in ["symlink", "foreign"] {
        let cert = cert_dir.join("main");
        let target = match kind {
            "symlink" => {
                std::os::unix::fs::symlink(&lair.dir, &cert).expect("link");
                lair.dir.clone()
            }
            _ => {
                std::fs::create_dir(&cert).expect("mkdir");
                chown(&cert, uid, gid);
                chmod(&cert, 0o777);
                cert.clone()
            }
        };
        let run = Launch::new(&["finalize", "--config", &config_arg])
            .plant(&plant(&target, &key_files))
            .run();
        host.assert_no_secret_in(&run, "finalize");
        lair.assert_empty_handed(&format!("<cert> {kind}"));
        assert!(
            [1, 2].contains(&run.code),
            "<cert> {kind}: exit {}\n{}{}",
            run.code,
            run.stdout,
            run.stderr
        );
        let said = if run.code == 1 {
            let report = run.json();
            report["certs"][0]["error"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        } else {
            error_line(&run).to_owned()
        };
        assert!(
            !said.contains('\n') && said.contains("main"),
            "<cert> {kind}: {said}"
        );
        assert_all_the_attackers(&target, &format!("<cert> {kind}"));
        remove_plant(&cert);
    }
    // No key anywhere that the attacker can read; the order is still there to finish.
    for (path, _) in tree(host.dir.path()) {
        let text = std::fs::read(&path).unwrap_or_default();
        if String::from_utf8_lossy(&text).contains("PRIVATE KEY") || path.ends_with("account.json")
        {
            assert!(!attacker_can_read(&path), "{} readable", path.display());
        }
    }
    assert!(host.saved_order("main").is_some(), "the order was lost");
}

#[test]
fn a_cert_dir_others_may_write_is_refused_before_a_key_goes_in() {
    let sb = sandbox().start();
    let (uid, gid) = attacker();
    let host = Host::new(&sb, &[("main", &["host5.example.test"])]);
    open_up(host.dir.path());
    let document = host.request_ok();
    host.place(&document);
    let cert_dir = host.cert_dir();
    std::fs::create_dir(&cert_dir).expect("mkdir");
    // World-writable, also with the sticky bit; writable by the attacker's group; the
    // attacker's own.
    for (mode, owner, group) in [
        (0o777, 0, 0),
        (0o1777, 0, 0),
        (0o775, 0, gid),
        (0o755, uid, gid),
    ] {
        chmod(&cert_dir, mode);
        chown(&cert_dir, owner, group);
        let what = format!("cert_dir {mode:04o} {owner}:{group}");
        let run = host.finalize();
        assert_eq!(run.code, 1, "{what}: {}{}", run.stdout, run.stderr);
        let report = run.json();
        let error = report["certs"][0]["error"].as_str().unwrap_or_default();
        assert!(error.contains("certs"), "{what}: {error}");
        assert_eq!(
            listing(&cert_dir),
            Vec::<String>::new(),
            "{what}: something was written"
        );
    }
    chmod(&cert_dir, 0o755);
    chown(&cert_dir, 0, 0);
    host.finalize_ok();
    assert!(!attacker_can_read(&host.file("main", "privkey.pem")));
}

// --- 4. one line, whatever the input -----------------------------------------------------

/// A host config that loads without any server (the CA and the resolver at a closed port),
/// its directories in `dir`: `acme` goes into the `acme` mapping, `extra` are top-level
/// lines, `certs` is the value of `certs:`.
fn offline_host_config(dir: &Path, acme: &str, extra: &str, certs: &str) -> String {
    format!(
        "acme: {{directory: 'https://127.0.0.1:9/dir', email: ops@example.test, \
         agree_tos: true{acme}}}\nhost: host1.example.test\nsigning_zone: acme.test\n\
         resolver: 127.0.0.1:9\nstate_dir: {state}\ncert_dir: {certs_dir}\ngroup: root\n\
         {extra}certs: {certs}\n",
        state = dir.join("state").display(),
        certs_dir = dir.join("certs").display(),
    )
}

/// A zone config of the same kind, its zone file in `dir`, with nameserver `ns` and `extra`
/// lines.
fn offline_zone_config(dir: &Path, ns: &str, extra: &str) -> String {
    format!(
        "zone: acme.test\nzone_file: {zone}\nsoa: {{mname: {ns}, rname: hm.example.test.}}\n\
         nameservers: [{ns}]\nreload: ['true']\nservers: ['127.0.0.1:9']\n{extra}",
        zone = dir.join("zone.db").display()
    )
}

/// Text of `len` bytes that would forge a second line that reads like success, colour a
/// terminal and flood a log if it got through unescaped.
fn forged(len: usize) -> String {
    let head = "x\nfleetcert: published zone acme.test serial 1 \u{1b}[32mOK\u{1b}[0m\r\u{2028}";
    format!("{head}{}", "A".repeat(len.saturating_sub(head.len())))
}

/// [`forged`] as a YAML (and JSON) double-quoted scalar.
fn yaml_forged(len: usize) -> String {
    serde_json::to_string(&forged(len)).expect("JSON string")
}

/// A megabyte, for the cases that show the bound; 8 KiB for the others (a megabyte of YAML
/// takes a debug build a second to parse).
const HUGE: usize = 1 << 20;
const LONG: usize = 8 << 10;

#[test]
fn no_config_value_or_token_document_can_forge_an_error_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let huge = yaml_forged(HUGE);
    let bad = yaml_forged(LONG);
    let host_base =
        |acme: &str, extra: &str, certs: &str| offline_host_config(dir.path(), acme, extra, certs);
    let ok_certs = "{main: [host1.example.test]}";
    let host_cases: Vec<(&str, String)> = vec![
        (
            "unknown key",
            host_base("", &format!("{bad}: 1\n"), ok_certs),
        ),
        (
            "unknown acme key",
            host_base(&format!(", {bad}: 1"), "", ok_certs),
        ),
        (
            "layout variant",
            host_base("", &format!("layout: {bad}\n"), ok_certs),
        ),
        (
            "key variant",
            host_base("", &format!("key: {bad}\n"), ok_certs),
        ),
        (
            "records variant",
            host_base("", &format!("challenge_records: {bad}\n"), ok_certs),
        ),
        (
            "host",
            host_base("", "", ok_certs)
                .replace("host: host1.example.test", &format!("host: {bad}")),
        ),
        (
            "signing_zone",
            host_base("", "", ok_certs)
                .replace("signing_zone: acme.test", &format!("signing_zone: {bad}")),
        ),
        (
            "email",
            host_base("", "", ok_certs)
                .replace("email: ops@example.test", &format!("email: {bad}")),
        ),
        (
            "directory",
            host_base("", "", ok_certs).replace("'https://127.0.0.1:9/dir'", &bad),
        ),
        (
            "group",
            host_base("", "", ok_certs).replace("group: root", &format!("group: {bad}")),
        ),
        (
            "resolver",
            host_base("", "", ok_certs)
                .replace("resolver: 127.0.0.1:9", &format!("resolver: {bad}")),
        ),
        (
            "cert name",
            host_base("", "", &format!("{{{bad}: [host1.example.test]}}")),
        ),
        (
            "cert identifier",
            host_base("", "", &format!("{{main: [{bad}]}}")),
        ),
        (
            "cert option",
            host_base(
                "",
                "",
                &format!("{{main: {{names: [a.example.test], {bad}: 1}}}}"),
            ),
        ),
        (
            "probe",
            host_base(
                "",
                "",
                &format!("{{main: {{names: [a.example.test], probe: [{bad}]}}}}"),
            ),
        ),
        (
            "ca_bundle path",
            host_base(&format!(", ca_bundle: {bad}"), "", ok_certs),
        ),
        (
            "renew key",
            host_base("", &format!("renew: {{{bad}: 1}}\n"), ok_certs),
        ),
        ("YAML syntax", format!("acme: [\n{}", forged(LONG))),
    ];
    for (what, text) in &host_cases {
        let path = dir.path().join("host.yaml");
        std::fs::write(&path, text).expect("write config");
        let run = with_config("status", &path).run();
        assert_eq!(
            run.code, 2,
            "host config, {what}: exit {}\n{}",
            run.code, run.stderr
        );
        error_line(&run);
    }
    let invalid_utf8 = dir.path().join("latin1.yaml");
    std::fs::write(&invalid_utf8, b"acme: \xff\xfe\x1b[31m\n").expect("write");
    let run = with_config("status", &invalid_utf8).run();
    assert_eq!(run.code, 2);
    error_line(&run);

    let zone_base = |extra: &str| offline_zone_config(dir.path(), "ns1.example.test.", extra);
    let zone_cases: Vec<(&str, String)> = vec![
        ("unknown key", zone_base(&format!("{huge}: 1\n"))),
        (
            "records variant",
            zone_base(&format!("challenge_records: {bad}\n")),
        ),
        (
            "zone",
            zone_base("").replace("zone: acme.test", &format!("zone: {bad}")),
        ),
        (
            "nameserver",
            zone_base("").replace("[ns1.example.test.]", &format!("[{bad}]")),
        ),
        (
            "server",
            zone_base("").replace("['127.0.0.1:9']", &format!("[{bad}]")),
        ),
        ("timeout", zone_base(&format!("timeout: {bad}\n"))),
        (
            "allow host",
            zone_base(&format!("allow: {{{bad}: [a.example.test]}}\n")),
        ),
        (
            "allow identifier",
            zone_base(&format!("allow: {{a.example.test: [{bad}]}}\n")),
        ),
        (
            "glue",
            zone_base(&format!("glue: {{{bad}: [127.0.0.1]}}\n")),
        ),
        (
            "soa",
            zone_base("").replace("mname: ns1.example.test.", &format!("mname: {bad}")),
        ),
    ];
    let tokens = dir.path().join("tokens.json");
    std::fs::write(
        &tokens,
        document("host1.example.test", &["host1.example.test"]).to_string(),
    )
    .expect("write tokens");
    for (what, text) in &zone_cases {
        let path = dir.path().join("zone.yaml");
        std::fs::write(&path, text).expect("write config");
        let run = Launch::new(&publish_args(&path, &[tokens.as_os_str()], &["--dry-run"])).run();
        assert_eq!(
            run.code, 2,
            "zone config, {what}: exit {}\n{}",
            run.code, run.stderr
        );
        error_line(&run);
    }

    // Token documents, against a zone config that works.
    let zone = dir.path().join("good.yaml");
    std::fs::write(&zone, zone_base("")).expect("write config");
    let forged = forged(HUGE);
    let good = document("host1.example.test", &["host1.example.test"]);
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut doc = good.clone();
        edit(&mut doc);
        doc.to_string()
    };
    let token_cases: Vec<(&str, String)> = vec![
        ("unknown field", with(&|d| d[&forged] = json!(1))),
        (
            "unknown record field",
            with(&|d| d["records"][0][&forged] = json!(1)),
        ),
        (
            "status variant",
            with(&|d| d["certs"][0]["status"] = json!(forged)),
        ),
        ("host", with(&|d| d["host"] = json!(forged))),
        (
            "record name",
            with(&|d| d["records"][0]["name"] = json!(forged)),
        ),
        (
            "record value",
            with(&|d| d["records"][0]["value"] = json!(forged)),
        ),
        (
            "identifier",
            with(&|d| d["records"][0]["identifier"] = json!(forged)),
        ),
        ("cert", with(&|d| d["records"][0]["cert"] = json!(1))),
        ("version", with(&|d| d["version"] = json!(forged))),
        ("hostvars key", json!({forged.as_str(): good}).to_string()),
        ("JSON syntax", format!("{{\"{}", forged.replace('"', ""))),
    ];
    for (what, text) in &token_cases {
        std::fs::write(&tokens, text).expect("write tokens");
        let run = Launch::new(&publish_args(&zone, &[tokens.as_os_str()], &["--dry-run"])).run();
        assert_eq!(
            run.code, 2,
            "tokens, {what}: exit {}\n{}",
            run.code, run.stderr
        );
        error_line(&run);
    }
    // Paths from the command line are outside values too.
    let odd = dir.path().join("x\n\u{1b}[32mfleetcert: ok");
    for args in [
        vec![
            OsString::from("status"),
            "--config".into(),
            odd.clone().into(),
        ],
        publish_args(&zone, &[odd.as_os_str()], &["--dry-run"]),
    ] {
        let run = Launch::new(&args).run();
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        error_line(&run);
    }
}

// --- 5. endless inputs -------------------------------------------------------------------

#[test]
fn dev_zero_as_config_ca_bundle_or_tokens_is_refused_within_a_bounded_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let zero = Path::new("/dev/zero");
    let host = dir.path().join("host.yaml");
    let text = offline_host_config(
        dir.path(),
        ", ca_bundle: /dev/zero",
        "",
        "{main: [host1.example.test]}",
    );
    std::fs::write(&host, text).expect("write config");
    let zone = dir.path().join("zone.yaml");
    std::fs::write(
        &zone,
        offline_zone_config(dir.path(), "ns1.example.test.", ""),
    )
    .expect("write config");
    let cases: Vec<(&str, Launch, &str)> = vec![
        ("config", with_config("status", zero), "16 MiB"),
        (
            "zone config",
            Launch::new(&publish_args(zero, &[OsStr::new("-")], &["--dry-run"])),
            "16 MiB",
        ),
        ("ca_bundle", with_config("request", &host), "1 MiB"),
        (
            "--tokens FILE",
            Launch::new(&publish_args(&zone, &[zero.as_os_str()], &["--dry-run"])),
            "64 MiB",
        ),
        (
            "--tokens -",
            Launch::new(&publish_args(&zone, &[OsStr::new("-")], &["--dry-run"])).stdin(zero),
            "64 MiB",
        ),
    ];
    for (what, launch, limit) in cases {
        let run = launch.run();
        assert_eq!(run.code, 2, "{what}: exit {}\n{}", run.code, run.stderr);
        let line = error_line(&run);
        assert!(
            line.contains(limit) && line.contains("larger than"),
            "{what}: {line}"
        );
    }
    assert!(!dir.path().join("state").exists());
}

// --- 6. the smaller config faults --------------------------------------------------------

#[test]
fn addresses_long_names_and_repeated_keys_are_refused_at_load_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let host_in = |zone: &str, certs: &str| {
        offline_host_config(dir.path(), "", "", &format!("\n{certs}"))
            .replace("signing_zone: acme.test", &format!("signing_zone: {zone}"))
    };
    let host = |certs: &str| host_in("acme.test", certs);
    let long_label = format!("{}.example.test", "a".repeat(63));
    let label = "b".repeat(63);
    // 255 characters; 242, which leaves no room for `_acme-challenge.`; 200, whose record
    // does not fit below a 73-character signing zone.
    let too_long = format!("{label}.{label}.{label}.{label}");
    let no_room = format!("{label}.{label}.{label}.{}", "c".repeat(50));
    let no_record = format!("{label}.{label}.{label}.{}", "d".repeat(8));
    let long_zone = format!("{}.example.test", "z".repeat(60));
    // One line a case: the certificate lines, then the words the refusal must hold.
    let main = |name: &str| host(&format!("  main: [{name}]\n"));
    let long_record = host_in(&long_zone, &format!("  main: [{no_record}]\n"));
    let long_cert = host(&format!("  {}: [{long_label}]\n", "n".repeat(65)));
    let cert_twice = host("  main: [a.example.test]\n  main: [b.example.test]\n");
    let cases: Vec<(&str, String, &str)> = vec![
        ("IPv4", main("192.0.2.1"), "certs.main"),
        ("IPv6", main("'2001:db8::1'"), "certs.main"),
        ("name over 253", main(&too_long), "certs.main"),
        ("no room", main(&no_room), "_acme-challenge"),
        ("record over 253", long_record, "challenge record"),
        ("cert name over 64", long_cert, "longer than 64"),
        ("cert twice", cert_twice, "given twice"),
    ];
    for (what, text, needle) in cases {
        let path = dir.path().join("host.yaml");
        std::fs::write(&path, text).expect("write config");
        for command in ["request", "status"] {
            let run = with_config(command, &path).run();
            assert_refused(&run, &format!("{command}, {what}"), &[needle]);
        }
    }
    assert!(!dir.path().join("state").exists(), "state_dir created");

    let zone = |extra: &str| offline_zone_config(dir.path(), "ns1.acme.test.", extra);
    let glue = "glue:\n  ns1.acme.test.: [127.0.0.1]\n";
    let tokens = dir.path().join("tokens.json");
    std::fs::write(&tokens, "[]").expect("write tokens");
    let allow = |lines: &str| zone(&format!("{glue}allow:\n{lines}"));
    let a_twice = "  a.example.test: [a.example.test]\n  a.example.test: [b.example.test]\n";
    let a_spelt_twice = "  a.example.test: [a.example.test]\n  A.example.test.: [b.example.test]\n";
    let ip_name = "  a.example.test: [192.0.2.1]\n";
    let ip_host = "  192.0.2.1: [a.example.test]\n";
    let glue_twice = "glue:\n  ns1.acme.test.: [127.0.0.1]\n  ns1.acme.test.: [127.0.0.2]\n";
    let cases: Vec<(&str, String, &str)> = vec![
        ("allow twice", allow(a_twice), "given twice"),
        ("allow spelt twice", allow(a_spelt_twice), "listed already"),
        ("glue twice", zone(glue_twice), "given twice"),
        ("allow IP", allow(ip_name), "allow.a.example.test"),
        ("allow host IP", allow(ip_host), "allow.192.0.2.1"),
    ];
    for (what, text, needle) in cases {
        let path = dir.path().join("zone.yaml");
        std::fs::write(&path, text).expect("write config");
        let run = Launch::new(&publish_args(&path, &[tokens.as_os_str()], &["--dry-run"])).run();
        assert_refused(&run, what, &[needle]);
    }

    // A byte-order mark, as an editor on Windows writes it, is not part of the first key.
    let path = dir.path().join("bom.yaml");
    std::fs::write(
        &path,
        format!("\u{feff}{}", host("  main: [host1.example.test]\n")),
    )
    .expect("write config");
    let run = with_config("status", &path).run();
    assert_eq!(run.code, 0, "BOM: {}", run.stderr);
    let path = dir.path().join("bom-zone.yaml");
    std::fs::write(&path, format!("\u{feff}{}", zone(glue))).expect("write config");
    let run = Launch::new(&publish_args(&path, &[tokens.as_os_str()], &["--dry-run"])).run();
    assert_eq!(run.code, 0, "BOM zone config: {}", run.stderr);
}

// --- 7. no secret in any output ----------------------------------------------------------

#[test]
fn no_key_or_account_material_in_any_output_at_trace() {
    let kid = "kid-security";
    let hmac = "c2VjdXJpdHktdGVzdC1obWFjLWtleS1uZXZlci1wcmludGVk";
    let sb = sandbox().pebble_eab(kid, hmac).start();
    let host = Host::new(&sb, &[]);
    let eab = json!({"kid": kid, "hmac_key": hmac});
    let names: &[&str] = &["host6.example.test", "www6.example.test"];
    host.write_config(&host.host_config().acme_set("eab", &eab).cert("main", names));
    let config = host.config();
    let config = config.to_str().expect("utf-8");
    let mut outputs = Vec::new();
    let mut traced = |command: &str, more: &[&str]| {
        let mut args = vec![command, "--config", config, "-vvv"];
        args.extend(more);
        let run = Launch::new(&args).env("RUST_LOG", "trace").run();
        host.assert_no_secret_in(&run, command);
        outputs.push(format!("{}{}", run.stdout, run.stderr));
        run
    };
    let document = traced("request", &[]).expect_code(0).json();
    host.place(&document);
    traced("finalize", &[]).expect_code(0);
    traced("status", &[]).expect_code(0);
    traced("request", &["--dry-run"]).expect_code(0);
    // A renewal with a new key type: a key in the state directory, the account reused.
    host.write_config(
        &host
            .host_config()
            .acme_set("eab", &eab)
            .set("key", "rsa-2048")
            .cert("main", names),
    );
    let document = traced("request", &[]).expect_code(0).json();
    host.place(&document);
    traced("finalize", &[]).expect_code(0);
    let all = outputs.concat();
    assert!(
        all.contains("TRACE") || all.contains("DEBUG"),
        "trace output was not on"
    );
    assert!(!all.contains(hmac), "the EAB HMAC key was printed");
    assert!(!host.secrets().is_empty(), "no secret to look for");
    for secret in host.secrets() {
        assert!(!all.contains(&secret), "a secret was printed");
    }
}

// --- a hostile DNS server ---------------------------------------------------------------

/// How long the hostile server streams at most, whatever the client does.
const HOSTILE_STREAM_LIMIT: Duration = Duration::from_secs(120);

/// A "primary" on loopback that answers the first message of each connection with an endless
/// stream of 64 KB DNS answers whose ids match nothing the client asked, until the client
/// goes away or [`HOSTILE_STREAM_LIMIT`] passes.
struct HostileServer {
    address: std::net::SocketAddr,
    sent: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl HostileServer {
    fn start() -> Self {
        use std::io::{Read as _, Write as _};
        use std::sync::atomic::{AtomicU64, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let address = listener.local_addr().expect("address");
        let sent = std::sync::Arc::new(AtomicU64::new(0));
        let counter = sent.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut length = [0u8; 2];
                let mut id = [0u8; 2];
                if stream.read_exact(&mut length).is_err() || stream.read_exact(&mut id).is_err() {
                    continue;
                }
                // Never the id asked, nor one near it (a few questions are in flight).
                let message = hostile_message(u16::from_be_bytes(id) ^ 0x8000);
                while started.elapsed() < HOSTILE_STREAM_LIMIT && stream.write_all(&message).is_ok()
                {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                if started.elapsed() >= HOSTILE_STREAM_LIMIT {
                    return;
                }
            }
        });
        Self { address, sent }
    }

    fn sent(&self) -> u64 {
        self.sent.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// A zone config publishing by UPDATE to `server` (and waiting on it), and a token file with
/// one record, in `dir`.
fn update_to(dir: &Path, server: std::net::SocketAddr) -> (PathBuf, PathBuf) {
    let secret = dir.join("fleet.secret");
    std::fs::write(&secret, "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI=\n").expect("secret");
    chmod(&secret, 0o600);
    let config = dir.join("zone.yaml");
    ZoneConfig::new("acme.test")
        .set(
            "update",
            json!({"server": server, "key_name": "fleet", "algorithm": "hmac-sha256", "secret_file": secret}),
        )
        .set("state_dir", dir.join("state"))
        .set("servers", [server])
        .set("timeout", "30s")
        .write(&config);
    let tokens = dir.join("tokens.json");
    std::fs::write(
        &tokens,
        document("host1.example.test", &["host1.example.test"]).to_string(),
    )
    .expect("tokens");
    (config, tokens)
}

/// A length-prefixed DNS answer with `id` and 240 TXT records of 255 bytes: as much as a
/// message over TCP holds, and costly to parse.
fn hostile_message(id: u16) -> Vec<u8> {
    const RECORDS: u16 = 240;
    let mut message = Vec::with_capacity(65_000);
    message.extend(id.to_be_bytes());
    message.extend([0x84, 0x00, 0, 0]); // QR AA, NOERROR; no question
    message.extend(RECORDS.to_be_bytes());
    message.extend([0, 0, 0, 0]);
    for _ in 0..RECORDS {
        message.push(0); // the root name
        message.extend([0, 16, 0, 1, 0, 0, 0, 60, 1, 0]); // TXT IN, TTL 60, 256 bytes
        message.push(255);
        message.extend([b'x'; 255]);
    }
    let length = u16::try_from(message.len()).expect("fits a TCP message");
    let mut framed = length.to_be_bytes().to_vec();
    framed.extend(message);
    framed
}

#[test]
fn a_primary_streaming_messages_that_answer_nothing_holds_neither_time_nor_memory() {
    let hostile = HostileServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (config, tokens) = update_to(dir.path(), hostile.address);
    // The address space is bounded (prlimit), and the run's time by a deadline here.
    let started = Instant::now();
    let mut child = Command::new("prlimit")
        .arg(format!("--as={}", MEMORY_LIMIT_KIB * 1024))
        .arg("--")
        .arg(binary())
        .args(publish_args(&config, &[tokens.as_os_str()], &[]))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run fleetcert under prlimit");
    // A guard against a hang: fleetcert's own bounds end it in seconds when idle.
    let deadline = Duration::from_secs(300);
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "publish still ran {} s into a stream of {} messages that answer nothing",
                deadline.as_secs(),
                hostile.sent()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let run = Run::of(&child.wait_with_output().expect("output"));
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "hostile primary: {} messages of 64 KB streamed; publish ended in {seconds:.1} s, exit {}",
        hostile.sent(),
        run.code
    );
    assert_eq!(run.code, 4, "{}{}", run.stdout, run.stderr);
    let line = error_line(&run);
    let server = hostile.address.to_string();
    for needle in [server.as_str(), "within 15 s", "dropped unread"] {
        assert!(line.contains(needle), "{needle:?} not in {line}");
    }
    assert!(
        hostile.sent() > 0,
        "the server sent nothing: the test proves nothing"
    );
}

/// A server on loopback that answers every message with a bare NOTAUTH (no TSIG record), as
/// PowerDNS answers a key it does not know or a wrong secret.
fn bare_notauth_server() -> std::net::SocketAddr {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let address = listener.local_addr().expect("address");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            loop {
                let mut length = [0u8; 2];
                if stream.read_exact(&mut length).is_err() {
                    break;
                }
                let mut message = vec![0u8; usize::from(u16::from_be_bytes(length))];
                if stream.read_exact(&mut message).is_err() || message.len() < 12 {
                    break;
                }
                // QR, the question's opcode; rcode 9 (NOTAUTH); nothing else.
                let mut answer = vec![0, 12, message[0], message[1]];
                answer.extend([0x80 | (message[2] & 0x78), 9, 0, 0, 0, 0, 0, 0, 0, 0]);
                if stream.write_all(&answer).is_err() {
                    break;
                }
            }
        }
    });
    address
}

#[test]
fn a_bare_notauth_names_the_powerdns_key_as_a_likely_cause() {
    let server = bare_notauth_server();
    let dir = tempfile::tempdir().expect("tempdir");
    let (config, tokens) = update_to(dir.path(), server);
    let run = Launch::new(&publish_args(&config, &[tokens.as_os_str()], &[])).run();
    let server = server.to_string();
    assert_refused(
        &run,
        "bare NOTAUTH",
        &[
            &server,
            "NOTAUTH",
            "not the zone's primary",
            "PowerDNS",
            "pdnsutil import-tsig-key fleet hmac-sha256",
        ],
    );
}

// --- one refused host does not stop the fleet ------------------------------------------

#[test]
fn a_refused_document_refuses_its_host_alone_and_the_others_are_published() {
    let sb = sandbox().start();
    let central = tempfile::tempdir().expect("tempdir");
    let config = two_hosts_zone_config(&sb, central.path());
    let value_of = |document: &Value| document["records"][0]["value"].clone();
    let publish = |name: &str, tokens: &Value| {
        let file = central.path().join(name);
        std::fs::write(&file, tokens.to_string()).expect("write tokens");
        Launch::new(&publish_args(&config, &[file.as_os_str()], &[])).run()
    };
    // Day one: both hosts publish.
    let host1 = document("host1.example.test", &["host1.example.test"]);
    let host2 = document("host2.example.test", &["host2.example.test"]);
    publish(
        "day1.json",
        &json!({"host1.example.test": &host1, "host2.example.test": &host2}),
    )
    .expect_code(0);
    // Day two: host1 has a new value; host2, compromised, asks for host1's name.
    let host1_again = document("host1.example.test", &["host1.example.test"]);
    let hostile = document("host2.example.test", &["host1.example.test"]);
    let run = publish(
        "day2.json",
        &json!({"host1.example.test": &host1_again, "host2.example.test": &hostile}),
    );
    let report = run.expect_code(1).json();
    let refused = report["refused"].as_array().expect("refused list");
    assert_eq!(refused.len(), 1, "{report:#}");
    assert_eq!(refused[0]["host"], "host2.example.test", "{report:#}");
    let error = refused[0]["error"].as_str().expect("error");
    assert!(error.contains("allow.host2.example.test"), "{error}");
    assert!(
        run.stderr.contains("host2.example.test") && run.stderr.contains("WARN"),
        "{}",
        run.stderr
    );
    // host1's new value is served; host2's earlier one stays, as the ledger has it.
    for answer in served(&sb, "host1.example.test.acme.test.") {
        assert_eq!(answer, [value_of(&host1_again)], "host1's record");
    }
    for answer in served(&sb, "host2.example.test.acme.test.") {
        assert_eq!(answer, [value_of(&host2)], "host2's earlier record");
    }
    // Mapped files too: host2's file is refused by name, host1's is published.
    let host1_third = document("host1.example.test", &["host1.example.test"]);
    let file1 = central.path().join("host1.json");
    std::fs::write(&file1, host1_third.to_string()).expect("write tokens");
    let file2 = central.path().join("host2.json");
    std::fs::write(&file2, json!({"host1.example.test": &hostile}).to_string())
        .expect("write tokens");
    let mapped1 = OsString::from(format!("host1.example.test={}", file1.display()));
    let mapped2 = OsString::from(format!("host2.example.test={}", file2.display()));
    let run = Launch::new(&publish_args(&config, &[&mapped1, &mapped2], &[])).run();
    let report = run.expect_code(1).json();
    assert_eq!(
        report["refused"][0]["host"], "host2.example.test",
        "{report:#}"
    );
    for answer in served(&sb, "host1.example.test.acme.test.") {
        assert_eq!(answer, [value_of(&host1_third)], "host1's record");
    }
    // Nothing valid left: the run is refused as a whole, one line, exit 2.
    let run = Launch::new(&publish_args(&config, &[&mapped2], &[])).run();
    assert_refused(&run, "only a refused document", &["host2.example.test"]);
}

// --- a stderr that cannot be written ---------------------------------------------------

/// Runs the binary with `args`, its stderr on `/dev/full` (a full disk) or on a pipe whose
/// reader is gone; the exit code.
fn exit_code_with_stderr_lost(args: &[&OsStr], full: bool) -> i32 {
    let mut command = Command::new(binary());
    command
        .args(args)
        .env("RUST_LOG", "fleetcert=trace")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    if full {
        let dev_full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("open /dev/full");
        command.stderr(Stdio::from(dev_full));
        command.status().expect("run").code().unwrap_or(-1)
    } else {
        command.stderr(Stdio::piped());
        let mut child = command.spawn().expect("run");
        drop(child.stderr.take());
        child.wait().expect("wait").code().unwrap_or(-1)
    }
}

#[test]
fn status_and_publish_exit_with_their_code_when_stderr_cannot_be_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("host.yaml");
    std::fs::write(
        &good,
        offline_host_config(dir.path(), "", "", "{main: [host1.example.test]}"),
    )
    .expect("config");
    let missing = dir.path().join("missing.yaml");
    let tokens = dir.path().join("tokens.json");
    let cases: [(&[&OsStr], i32); 4] = [
        // A config that loads; every log line at trace goes to the lost stderr.
        (
            &[
                OsStr::new("status"),
                OsStr::new("--config"),
                good.as_os_str(),
            ],
            0,
        ),
        // The error line itself is lost.
        (
            &[
                OsStr::new("status"),
                OsStr::new("--config"),
                missing.as_os_str(),
            ],
            2,
        ),
        (
            &[
                OsStr::new("publish"),
                OsStr::new("--config"),
                missing.as_os_str(),
                OsStr::new("--tokens"),
                tokens.as_os_str(),
            ],
            2,
        ),
        (&[OsStr::new("publish"), OsStr::new("--config")], 2),
    ];
    for (args, code) in cases {
        for full in [true, false] {
            let what = if full { "/dev/full" } else { "a closed pipe" };
            assert_eq!(
                exit_code_with_stderr_lost(args, full),
                code,
                "{args:?} with stderr on {what}"
            );
        }
    }
}

// --- owners of secrets and configs -----------------------------------------------------

#[test]
fn secrets_of_another_user_or_behind_a_link_and_configs_others_may_write_are_refused() {
    let (uid, gid) = attacker();
    let dir = tempfile::tempdir().expect("tempdir");
    // Nothing listens: every case is refused at load, before any server is asked.
    let (config, tokens) = update_to(dir.path(), "127.0.0.1:9".parse().expect("address"));
    let secret = dir.path().join("fleet.secret");
    let publish = || Launch::new(&publish_args(&config, &[tokens.as_os_str()], &[])).run();
    // The TSIG secret, 0600 as asked, but the attacker's: they choose what it says.
    chown(&secret, uid, gid);
    assert_refused(
        &publish(),
        "a TSIG secret of another user",
        &["update.secret_file", "belongs to uid", "chown"],
    );
    chown(&secret, 0, 0);
    // A link to the secret (the attacker could point it at any one-line root file).
    let real = dir.path().join("real.secret");
    std::fs::rename(&secret, &real).expect("move the secret");
    std::os::unix::fs::symlink(&real, &secret).expect("link");
    assert_refused(
        &publish(),
        "a TSIG secret behind a link",
        &["update.secret_file", "symbolic link"],
    );
    std::fs::remove_file(&secret).expect("unlink");
    std::fs::rename(&real, &secret).expect("move back");
    // The zone config root runs `reload` from: refused when others may write it.
    for (mode, owner) in [(0o666, 0), (0o620, 0), (0o644, uid)] {
        chmod(&config, mode);
        chown(&config, owner, 0);
        let run = publish();
        let what = format!("zone config {mode:04o} uid {owner}");
        assert_refused(&run, &what, &["zone.yaml"]);
        assert!(
            error_line(&run).contains("chmod go-w") || error_line(&run).contains("chown"),
            "{what}: {}",
            run.stderr
        );
    }
    // The host config: a warning naming it, as OpenSSH gives, and the command runs.
    let host = dir.path().join("host.yaml");
    std::fs::write(
        &host,
        offline_host_config(dir.path(), "", "", "{main: [host1.example.test]}"),
    )
    .expect("host config");
    chmod(&host, 0o666);
    let run = with_config("status", &host).run();
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("WARN")
            && run.stderr.contains("host.yaml")
            && run.stderr.contains("chmod go-w"),
        "{}",
        run.stderr
    );
}

/// A `zone_file` that is a symlink is refused, naming its target; the link and the file it
/// points at stay as they were (a rename would have replaced the link and left BIND's file
/// stale).
#[test]
fn symlinked_zone_file_is_refused_and_left_alone() {
    let sb = sandbox().start();
    let real = sb.signing_zone_file();
    let link = real.with_file_name("link-to-acme.test.db");
    std::os::unix::fs::symlink(&real, &link).expect("symlink");
    let before = std::fs::read(&real).expect("zone");
    let zone = Zone::with(&sb, &link, &["true"], "");
    let run = zone.publish_document(
        "host3.example.test",
        &token_document("host3.example.test", &["host3.example.test"]),
    );
    assert!(
        std::fs::symlink_metadata(&link)
            .expect("stat")
            .file_type()
            .is_symlink(),
        "the link was replaced"
    );
    assert_eq!(std::fs::read(&real).expect("zone"), before);
    run.expect_code(2);
    let line = last_stderr_line(&run);
    assert!(
        line.contains("is a symlink to") && line.contains(&real.display().to_string()),
        "{line}"
    );
    std::fs::remove_file(&link).expect("remove link");
}
