//! The daily playbook, `fleetcert.fleetcert.daily` from the collection as ansible-galaxy
//! installed it (see `collection`), run by real ansible-playbook from `.venv` against a local
//! fleet on the sandbox: hosts with their own directories and names, one of them installing
//! the binary from a URL checked against its SHA-256; a broken host (one certificate for a
//! name without a CNAME, one that cannot validate because the DNS primary leaves the host out
//! of publish); a host whose download does not match its checksum; a legacy host exported as
//! hiera; and the sandbox's BIND primary as the DNS primary. The inventory comes from
//! tests/fleet/inventory.sh, which tests/demo.sh uses as well.

use std::fs;
use std::io::{BufRead as _, BufReader};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::support::collection;
use crate::support::fleet::{
    Fleet, LEGACY, Playbook, assert_issued, parse_recap, read, run_playbook,
};
use crate::support::sandbox::Sandbox;
use crate::support::util::{run_ok, snapshot};
use crate::support::venv::{repo, tool};

/// Certificate name -> names.
type Certs = &'static [(&'static str, &'static [&'static str])];

/// The good hosts of the fleet and their certificates (see tests/fleet/inventory.sh).
const HOSTS: [(&str, Certs); 3] = [
    (
        "host1.example.test",
        &[("main", &["host1.example.test", "www1.example.test"])],
    ),
    (
        "host2.example.test",
        &[
            ("main", &["host2.example.test"]),
            ("www", &["www2.example.test"]),
        ],
    ),
    (
        "host3.example.test",
        &[("main", &["host3.example.test", "www3.example.test"])],
    ),
];
const BROKEN: &str = "broken.example.test";
/// Installs by URL with a wrong checksum: fails at install, alone (tests/fleet/inventory.sh).
const BADSUM: &str = "badsum.example.test";
const PRIMARY: &str = "ns1.example.test";
/// The publishing host by dynamic update (tests/fleet/inventory.sh --update).
const BASTION: &str = "bastion.example.test";

/// Panics unless fleetcert_install was included for exactly `hosts` in this run: the hosts
/// whose install record did not match (fleetcert_request skips the include elsewhere).
#[track_caller]
fn assert_installs(run: &Playbook, hosts: &[&str]) {
    let task = "TASK [Install fleetcert where its inputs changed, then request]";
    let section = run
        .output
        .split(task)
        .nth(1)
        .and_then(|rest| rest.split("\nTASK [").next())
        .unwrap_or_else(|| panic!("no {task}; output:\n{}", run.output));
    // "included: fleetcert.fleetcert.fleetcert_install for HOST1, HOST2"
    let mut included: Vec<&str> = section
        .lines()
        .filter_map(|line| line.strip_prefix("included: ")?.split_once(" for "))
        .flat_map(|(_, hosts)| hosts.split(", "))
        .map(str::trim)
        .collect();
    included.sort_unstable();
    included.dedup();
    assert_eq!(
        included, hosts,
        "hosts whose install was re-asserted; output:\n{}",
        run.output
    );
}

/// A static HTTP server on loopback (Python's http.server) serving one file, for the `url`
/// install method. Stopped on drop.
struct FileServer {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl FileServer {
    fn start(file: &Path) -> Self {
        let dir = tempfile::tempdir().expect("served dir");
        let name = file.file_name().expect("file name");
        std::os::unix::fs::symlink(file, dir.path().join(name)).expect("symlink served file");
        let mut child = Command::new("python3")
            .args([
                "-u",
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                "0",
                "--directory",
            ])
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start python3 -m http.server");
        // "Serving HTTP on 127.0.0.1 port 43567 (http://127.0.0.1:43567/) ..."
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read http.server's first line");
        let port = line
            .split_whitespace()
            .skip_while(|word| *word != "port")
            .nth(1)
            .unwrap_or_else(|| panic!("no port in http.server's line {line:?}"));
        let url = format!("http://127.0.0.1:{port}/{}", name.to_string_lossy());
        Self {
            child,
            url,
            _dir: dir,
        }
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The whole daily run, three times on one fleet (each run costs 20 to 40 s):
/// 1. issues every good host's certificates (verified against Pebble's root) and the legacy
///    host's hiera file, host1 with the binary it downloaded (method `url`); runs each handler
///    exactly for the certificates replaced; fails only the broken host, naming both of its
///    certificates and why, and the host whose download does not match its checksum, which
///    gets no binary at all;
/// 2. right after, changes nothing: `changed=0` on every host (but the broken one, which
///    orders its failed certificate again, as it should), the same zone serial;
/// 3. `--check` after a certificate was added to host1: says it would order it, creates no
///    order, writes no zone, no config, no certificate, and runs no handler.
#[test]
fn daily_playbook_issues_for_the_fleet_once_and_isolates_a_broken_host() {
    let binary = Path::new(env!("CARGO_BIN_EXE_fleetcert"));
    let server = FileServer::start(binary);
    let fleet = Fleet::new(&[
        "--hosts",
        "3",
        "--broken",
        "--binary",
        env!("CARGO_BIN_EXE_fleetcert"),
        "--url",
        &server.url,
        "--metrics",
    ]);
    let sb = &fleet.sb;
    let zone_file = sb.signing_zone_file();

    // 1. The first run.
    let first = fleet.playbook(&[]);
    first.expect_failed(&[BADSUM, BROKEN]);
    // host1 runs what it downloaded, byte for byte the binary served.
    assert_eq!(
        read(&fleet.home(HOSTS[0].0).join("bin/fleetcert")),
        read(binary),
        "host1's downloaded binary"
    );
    // The mismatch fails that host with get_url's checksum error and leaves nothing behind.
    let bin = fleet.home(BADSUM).join("bin");
    let left: Vec<_> = fs::read_dir(&bin)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "{BADSUM} kept files after a checksum mismatch: {left:?}"
    );
    let fatal = first
        .output
        .lines()
        .find(|line| line.starts_with(&format!("fatal: [{BADSUM}]")))
        .unwrap_or_else(|| panic!("no fatal line for {BADSUM}; output:\n{}", first.output));
    assert!(
        fatal.contains("checksum") && fatal.contains("did not match"),
        "{BADSUM} failed for another reason: {fatal}"
    );
    assert!(
        first
            .output
            .contains(&format!("{BADSUM}: FAILED: did not get to request")),
        "the summary does not name {BADSUM}; output:\n{}",
        first.output
    );
    for (host, certs) in HOSTS {
        for (cert, names) in certs {
            assert_issued(&fleet, host, cert, names);
        }
    }
    assert_issued(&fleet, LEGACY, "main", &["host200.example.test"]);
    let hiera = fleet
        .home(LEGACY)
        .join("hieradata/host_vars")
        .join(format!("{LEGACY}.certs.yaml"));
    let hiera_text = String::from_utf8(read(&hiera)).expect("hiera file is UTF-8");
    assert!(
        hiera_text.contains("BEGIN CERTIFICATE"),
        "{} holds no certificate:\n{hiera_text}",
        hiera.display()
    );
    assert!(
        !fleet.home(BROKEN).join("certs/main").exists(),
        "the broken host got a certificate"
    );
    assert_eq!(
        fleet.handler_lines(),
        [
            "host1.example.test main",
            "host2.example.test main",
            "host2.example.test www",
            "host3.example.test main",
            "legacy.example.test main",
        ],
        "handlers of the first run; output:\n{}",
        first.output
    );
    // The end of the run names the broken host, each certificate, why, and the fix.
    let fatal = first
        .output
        .lines()
        .find(|line| line.starts_with(&format!("fatal: [{BROKEN}]")))
        .unwrap_or_else(|| panic!("no fatal line for {BROKEN}; output:\n{}", first.output));
    let why = [
        "certificate main (request): _acme-challenge.nocname.example.test. has no CNAME: \
         add `_acme-challenge.nocname.example.test. CNAME nocname.example.test.acme.test.`",
        "certificate www (finalize): validation failed",
    ];
    for reason in why {
        assert!(fatal.contains(reason), "{fatal}\nlacks: {reason}");
    }
    let summary = format!("{BROKEN}: FAILED main, www; replaced: none");
    assert!(
        first.output.contains(&summary),
        "no summary line {summary:?}; output:\n{}",
        first.output
    );
    // Metrics: each host's textfile directory made as Debian ships node_exporter's, and
    // fleetcert.prom written by every command, the final check included; the primary's holds
    // the publication. The check's list names the broken host with its line, and only it.
    for host in [HOSTS[0].0, PRIMARY] {
        let textfiles = fleet.home(host).join("textfiles");
        let meta = fs::metadata(&textfiles).expect("the textfile directory");
        use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
        assert_eq!(
            (meta.permissions().mode() & 0o7777, meta.uid(), meta.gid()),
            (0o755, 0, 0),
            "{}",
            textfiles.display()
        );
    }
    let metrics = |host: &str| {
        String::from_utf8(read(&fleet.home(host).join("textfiles/fleetcert.prom"))).expect("UTF-8")
    };
    let host1_metrics = metrics(HOSTS[0].0);
    for command in ["request", "finalize", "check"] {
        let line = format!(
            "fleetcert_command_exit_code{{command=\"{command}\",host=\"{}\"}} 0\n",
            HOSTS[0].0
        );
        assert!(
            host1_metrics.contains(&line),
            "no {line:?} in:\n{host1_metrics}"
        );
    }
    assert!(
        metrics(PRIMARY).contains("fleetcert_publish_serial{zone=\"acme.test\"} "),
        "{}",
        metrics(PRIMARY)
    );
    let not_ok = format!(
        "{BROKEN}: FLEETCERT CRITICAL - main: no certificate installed; www: no certificate \
         installed"
    );
    assert!(
        first.output.contains(&not_ok),
        "the check's list lacks {not_ok:?}; output:\n{}",
        first.output
    );
    for (host, _) in HOSTS {
        assert!(
            !first.output.contains(&format!("{host}: FLEETCERT")),
            "{host}'s check is listed; output:\n{}",
            first.output
        );
    }
    // Cleanup emptied the zone again.
    assert!(
        !String::from_utf8_lossy(&read(&zone_file)).contains("TXT"),
        "challenge records left in the zone"
    );

    // 2. Nothing to do: no change anywhere, not even a new serial.
    let serial = sb.serial(sb.primary());
    let zone = read(&zone_file);
    let second = fleet.playbook(&[]);
    second.expect_failed(&[BADSUM, BROKEN]);
    for (host, recap) in second
        .recap
        .iter()
        .filter(|(host, _)| ![BROKEN, BADSUM].contains(&host.as_str()))
    {
        assert_eq!(
            recap.changed, 0,
            "{host} changed in the second run; output:\n{}",
            second.output
        );
    }
    let mut everyone: Vec<&str> = HOSTS.iter().map(|(host, _)| *host).collect();
    everyone.extend([BADSUM, BROKEN, LEGACY, PRIMARY]);
    everyone.sort_unstable();
    assert_eq!(
        second.recap.keys().map(String::as_str).collect::<Vec<_>>(),
        everyone,
        "hosts in the recap"
    );
    // Neither the second run nor check mode may touch the zone or run a handler.
    let assert_quiet = |run: &str| {
        assert_eq!(sb.serial(sb.primary()), serial, "{run} made a new serial");
        assert_eq!(read(&zone_file), zone, "{run} rewrote the zone");
        assert_eq!(fleet.handler_lines().len(), 5, "handlers ran in {run}");
    };
    assert_quiet("the second run");
    // The install's inputs did not change: it was re-asserted nowhere but on BADSUM, whose
    // download never matched (so it has no install record).
    assert_installs(&second, &[BADSUM]);

    // 3. A new certificate for host1, first in check mode.
    let host1 = HOSTS[0].0;
    fleet.add_certificate(host1, "www", "[www101.example.test]");
    let state_before: Vec<_> = HOSTS
        .iter()
        .map(|(host, _)| snapshot(&fleet.home(host).join("state")))
        .collect();
    let config_before = read(&fleet.home(host1).join("etc/fleetcert.yaml"));
    let metrics_before = snapshot(&fleet.home(host1).join("textfiles"));
    let check = fleet.playbook(&["--check"]);
    // Check mode asks the URL only for its headers: BADSUM's wrong checksum shows in real runs.
    check.expect_failed(&[BROKEN]);
    assert!(
        check
            .output
            .contains("would order: www (pending - would order (no certificate yet))")
            && check.output.contains(&format!(
                "would publish the challenge records of {host1} www"
            )),
        "check mode does not say what it would do; output:\n{}",
        check.output
    );
    assert!(
        check.host(host1).changed > 0,
        "check mode saw nothing to do"
    );
    let state_after: Vec<_> = HOSTS
        .iter()
        .map(|(host, _)| snapshot(&fleet.home(host).join("state")))
        .collect();
    assert!(
        state_before == state_after,
        "check mode changed a state dir (an order?)"
    );
    assert_eq!(
        read(&fleet.home(host1).join("etc/fleetcert.yaml")),
        config_before,
        "check mode rewrote the host config"
    );
    assert_quiet("check mode");
    assert!(
        snapshot(&fleet.home(host1).join("textfiles")) == metrics_before,
        "check mode rewrote the metrics file"
    );
    assert!(!fleet.fullchain(host1, "www").exists(), "check mode issued");
}

/// What the argument specs and the exit-code branching stop, without a sandbox: one run of
/// `fleetcert.fleetcert.daily` over four local hosts, each wrong in one way.
/// - `noemail` lists certificates but sets no `fleetcert_acme_email` (required, no default):
///   fails before anything is installed, naming the variable;
/// - `badtype` has `fleetcert_renew_before_days: soon`: fails on the type, installs nothing;
/// - `badconfig` has a resolver that is no address: installed, then `fleetcert request` exits
///   2 with no document, and the host fails with fleetcert's own line;
/// - `nozone` is a DNS primary with neither `fleetcert_zone_file` nor `fleetcert_zone_update`
///   (one of them is required): fails at publish, naming both.
#[test]
fn roles_refuse_bad_variables_and_fail_a_host_with_fleetcerts_error_line() {
    let dir = tempfile::tempdir().expect("dir");
    let home = |host: &str| dir.path().join("hosts").join(host);
    let paths = |host: &str| {
        let home = home(host);
        format!(
            "fleetcert_binary: {0}/bin/fleetcert\nfleetcert_config_path: {0}/etc/fleetcert.yaml\n\
             fleetcert_state_dir: {0}/state\nfleetcert_cert_dir: {0}/certs\n\
             fleetcert_zone_config_path: {0}/etc/zone.yaml\n\
             fleetcert_publish_tokens_path: {0}/publish/tokens.json\n",
            home.display()
        )
    };
    let inventory = format!(
        r#"---
all:
  vars:
    ansible_connection: local
    ansible_python_interpreter: "{{{{ ansible_playbook_python }}}}"
    fleetcert_install_method: copy
    fleetcert_install_binary_src: {binary}
    fleetcert_group: root
  children:
    fleetcert:
      vars:
        fleetcert_agree_tos: true
        fleetcert_signing_zone: acme.test
        fleetcert_certs: {{main: [a.example.test]}}
      hosts:
        noemail:
        badtype:
          fleetcert_acme_email: ops@example.test
          fleetcert_renew_before_days: soon
        badconfig:
          fleetcert_acme_email: ops@example.test
          fleetcert_resolver: not an address
    fleetcert_dns_primary:
      hosts:
        nozone:
          fleetcert_zone_name: acme.test
          fleetcert_zone_soa: {{mname: ns1.acme.test., rname: hostmaster.acme.test.}}
          fleetcert_zone_nameservers: [ns1.acme.test.]
          fleetcert_zone_reload: ["true"]
"#,
        binary = env!("CARGO_BIN_EXE_fleetcert"),
    );
    let inventory_dir = dir.path().join("inventory");
    fs::create_dir_all(inventory_dir.join("host_vars")).expect("inventory dir");
    fs::write(inventory_dir.join("hosts.yaml"), inventory).expect("hosts.yaml");
    for host in ["noemail", "badtype", "badconfig", "nozone"] {
        fs::write(
            inventory_dir.join("host_vars").join(format!("{host}.yaml")),
            format!("---\n{}", paths(host)),
        )
        .expect("host_vars");
    }
    let mut command = tool("ansible-playbook");
    command
        .arg("-i")
        .arg(&inventory_dir)
        .arg("fleetcert.fleetcert.daily")
        .env("ANSIBLE_CONFIG", repo().join("ansible/ansible.cfg"))
        .env("ANSIBLE_COLLECTIONS_PATH", collection::installed())
        .env("ANSIBLE_LOCAL_TEMP", dir.path().join("ansible-tmp"));
    let ran = run_playbook(command);
    let run = Playbook {
        code: ran.code,
        recap: parse_recap(&ran.output),
        output: ran.output,
    };
    run.expect_failed(&["badconfig", "badtype", "noemail", "nozone"]);
    let fatal = |host: &str| {
        run.output
            .lines()
            .find(|line| line.starts_with(&format!("fatal: [{host}]")))
            .unwrap_or_else(|| panic!("no fatal line for {host}; output:\n{}", run.output))
            .to_owned()
    };
    let noemail = fatal("noemail");
    assert!(
        noemail.contains(
            "noemail lists certificates from an ACME CA, so it needs fleetcert_acme_email"
        ),
        "{noemail}"
    );
    let badtype = fatal("badtype");
    assert!(
        badtype.contains("fleetcert_renew_before_days") && badtype.contains("int"),
        "{badtype}"
    );
    for host in ["noemail", "badtype"] {
        assert!(
            !home(host).join("bin/fleetcert").exists() && !home(host).join("etc").exists(),
            "{host} got something installed before its variables were checked"
        );
    }
    let badconfig = fatal("badconfig");
    assert!(
        badconfig.contains("fleetcert request exited 2: ")
            && badconfig.contains("`not an address` is not an address"),
        "{badconfig}"
    );
    let nozone = fatal("nozone");
    assert!(
        nozone.contains(
            "nozone publishes the signing zone acme.test: set one of fleetcert_zone_file"
        ) && nozone.contains("and fleetcert_zone_update"),
        "{nozone}"
    );
    assert!(
        !home("nozone").join("etc/zone.yaml").exists(),
        "nozone rendered a zone config without a zone file"
    );
}

/// The daily run by dynamic update (`fleetcert_zone_update`), on a sandbox whose signing zone
/// is dynamic with a fleet key (`--tsig fleet=SECRET`): the publishing host is a bastion that
/// never sees the zone file, and the key's secret reaches it from the controller.
/// 1. every certificate issued (verified against Pebble's root), every change an UPDATE
///    signed with the fleet key, the zone empty of TXT records again afterwards; no zone file
///    written (the primary's file untouched, no ledger beside it, the ledger in the state
///    directory), the secret on the bastion with mode 0600;
/// 2. right after, `changed=0` on every host, no UPDATE sent, the same serial, no install
///    task run; then, with host1's binary replaced on the host, host1's install alone is
///    re-asserted (the binary copied back) and nothing else changes;
/// 3. `--check` after a certificate was added and the bastion's secret removed: says it would
///    send the records by DNS UPDATE, copies no secret, sends nothing, orders nothing.
#[test]
fn daily_playbook_by_dynamic_update_publishes_from_the_bastion_without_the_zone_file() {
    let secret = crate::support::util::secret();
    let sb = Sandbox::builder().tsig(&format!("fleet={secret}")).start();
    let controller = tempfile::tempdir().expect("controller dir");
    let fleet = Fleet::by_update(sb, &secret, controller.path(), &["--metrics"]);
    let secret_src = controller.path().join("tsig.secret");
    let sb = &fleet.sb;
    let bastion = fleet.home(BASTION);
    let zone_file = sb.signing_zone_file();
    // BIND writes a dynamic zone's changes to its journal and dumps them into the file only
    // 15 minutes after an update: within this test the file is what the sandbox wrote.
    let zone_file_before = read(&zone_file);

    // 1. The first run.
    let first = fleet.playbook(&[]);
    first.expect_failed(&[]);
    for (host, certs) in &HOSTS[..2] {
        for (cert, names) in *certs {
            assert_issued(&fleet, host, cert, names);
        }
    }
    assert_issued(&fleet, LEGACY, "main", &["host200.example.test"]);
    let updates = sb.update_log_lines();
    assert!(
        !updates.is_empty(),
        "no UPDATE reached the primary; output:\n{}",
        first.output
    );
    for line in &updates {
        assert!(
            line.contains("/key fleet:"),
            "an UPDATE not signed with the fleet key: {line}"
        );
    }
    let txt: Vec<String> = sb
        .axfr(sb.primary(), true)
        .into_iter()
        .filter(|line| line.split_whitespace().nth(3) == Some("TXT"))
        .collect();
    assert!(
        txt.is_empty(),
        "challenge records left in the zone: {txt:?}"
    );
    // No zone file: the primary's is untouched, no ledger beside it, none rendered here.
    assert_eq!(
        read(&zone_file),
        zone_file_before,
        "the zone file was written"
    );
    let beside = zone_file.with_file_name(format!(
        "{}.ledger.json",
        zone_file.file_name().expect("name").to_string_lossy()
    ));
    assert!(
        !beside.exists(),
        "a file publisher's ledger beside the zone file"
    );
    let config = String::from_utf8(read(&bastion.join("etc/zone.yaml"))).expect("UTF-8");
    assert!(
        config.contains("\nupdate:\n") && !config.contains("zone_file") && !config.contains("soa"),
        "the rendered zone config is not one for dynamic update:\n{config}"
    );
    assert!(
        bastion.join("publish/acme.test.ledger.json").is_file(),
        "no ledger in fleetcert_zone_state_dir"
    );
    // The zone config by update writes metrics too: the publication's series on the bastion.
    let prom = String::from_utf8(read(&bastion.join("textfiles/fleetcert.prom"))).expect("UTF-8");
    assert!(
        config.contains("\nmetrics:\n")
            && prom.contains("fleetcert_publish_serial{zone=\"acme.test\"} "),
        "no publication in the bastion's metrics:\n{config}\n{prom}"
    );
    let copied = bastion.join("etc/tsig.secret");
    assert_eq!(
        read(&copied),
        read(&secret_src),
        "the secret on the bastion"
    );
    assert_eq!(
        fs::metadata(&copied).expect("secret").permissions().mode() & 0o7777,
        0o600,
        "the secret's mode on the bastion"
    );
    assert!(
        !first.output.contains(&secret),
        "the playbook printed the secret"
    );

    // 2. Nothing to do: no change, no UPDATE, the same serial.
    let serial = sb.serial(sb.primary());
    let second = fleet.playbook(&[]);
    second.expect_failed(&[]);
    let mut everyone: Vec<&str> = HOSTS[..2].iter().map(|(host, _)| *host).collect();
    everyone.extend([BASTION, LEGACY]);
    everyone.sort_unstable();
    assert_eq!(
        second.recap.keys().map(String::as_str).collect::<Vec<_>>(),
        everyone,
        "hosts in the recap"
    );
    for (host, recap) in &second.recap {
        assert_eq!(
            recap.changed, 0,
            "{host} changed in the second run; output:\n{}",
            second.output
        );
    }
    let assert_quiet = |run: &str| {
        assert_eq!(sb.update_log_lines(), updates, "{run} sent an UPDATE");
        assert_eq!(sb.serial(sb.primary()), serial, "{run} made a new serial");
    };
    assert_quiet("the second run");
    assert_installs(&second, &[]);

    // 2b. host1's binary replaced on the host behind Ansible's back: its install record no
    // longer matches, so its install alone is re-asserted (the binary copied back), and it
    // requests with it in the same run; the other hosts install nothing.
    let host1 = HOSTS[0].0;
    let host1_binary = fleet.home(host1).join("bin/fleetcert");
    fs::write(&host1_binary, "#!/bin/sh\nexit 99\n").expect("replace host1's binary");
    let repaired = fleet.playbook(&[]);
    repaired.expect_failed(&[]);
    assert_eq!(
        read(&host1_binary),
        read(Path::new(env!("CARGO_BIN_EXE_fleetcert"))),
        "host1's binary after the run"
    );
    assert!(
        repaired.host(host1).changed > 0,
        "replacing host1's binary changed nothing; output:\n{}",
        repaired.output
    );
    assert_installs(&repaired, &[host1]);
    assert!(
        repaired
            .output
            .contains("TASK [fleetcert.fleetcert.fleetcert_install :"),
        "no install task ran; output:\n{}",
        repaired.output
    );
    for (host, recap) in &repaired.recap {
        if host != host1 {
            assert_eq!(
                recap.changed, 0,
                "{host} changed; output:\n{}",
                repaired.output
            );
        }
    }
    assert_quiet("the run that repaired host1");

    // 3. Check mode, with a new certificate and the secret gone from the bastion.
    fs::remove_file(&copied).expect("remove the bastion's secret");
    fleet.add_certificate(host1, "www", "[www101.example.test]");
    let state_before = snapshot(&fleet.home(host1).join("state"));
    let check = fleet.playbook(&["--check"]);
    check.expect_failed(&[]);
    assert!(
        check.output.contains(&format!(
            "would publish the challenge records of {host1} www in acme.test (their values \
             exist only once the orders are made), send them to the primary by DNS UPDATE"
        )),
        "check mode does not say what it would do; output:\n{}",
        check.output
    );
    assert!(
        !copied.exists(),
        "check mode copied the secret to the bastion"
    );
    assert!(
        snapshot(&fleet.home(host1).join("state")) == state_before,
        "check mode changed host1's state (an order?)"
    );
    assert_quiet("check mode");
}

/// `--diff` and `-vvv` show what changed, never a secret (issue 22, item 4): a fleet whose
/// hosts register with EAB, publish by dynamic update with a TSIG secret copied from the
/// controller, and one host (host2) with a local CA whose key the controller holds.
/// 1. the first run, `--diff -vvv`: every config, the secret and the CA key are written (the
///    diffs and the module arguments are in the output), and none of the EAB HMAC key, the
///    TSIG secret or the CA key's body is;
/// 2. `--check --diff -vvv` after the EAB key changed in the inventory and the bastion's
///    secret was removed: the config diff is shown (the key's name, its value hidden), and
///    neither the old nor the new HMAC key, nor the secret, nor the CA key is.
///
/// The roles never render a keystore password: a pkcs12 entry names its password_file only.
#[test]
fn daily_playbook_with_diff_and_vvv_prints_no_secret() {
    const KID: &str = "kid-fleet";
    const HMAC: &str = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";
    const NEW_HMAC: &str = "c2VjcmV0LWtleS10aGF0LW11c3QtbmV2ZXItYmUtcHJpbnRlZC1pbi1hLWRpZmY";
    let secret = crate::support::util::secret();
    let sb = Sandbox::builder()
        .tsig(&format!("fleet={secret}"))
        .pebble_eab(KID, HMAC)
        .start();
    let controller = tempfile::tempdir().expect("controller dir");
    // The CI CA of host2, on the controller.
    let (ca_cert, ca_key) = (
        controller.path().join("ci.pem"),
        controller.path().join("ci.key"),
    );
    run_ok(
        Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
            ])
            .args([
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=fleetcert diff test CA",
            ])
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
            .arg("-keyout")
            .arg(&ca_key)
            .arg("-out")
            .arg(&ca_cert),
    );
    let key_text = String::from_utf8(read(&ca_key)).expect("PEM");
    // The key's base64 body, line by line: none of it may be printed.
    let key_lines: Vec<&str> = key_text
        .lines()
        .filter(|line| !line.starts_with("-----") && line.len() >= 16)
        .collect();
    assert!(!key_lines.is_empty(), "no key body in {key_text}");
    let fleet = Fleet::by_update(sb, &secret, controller.path(), &[]);
    let host_vars = fleet.dir.path().join("inventory/host_vars");
    let append = |host: &str, text: &str| {
        let path = host_vars.join(format!("{host}.yaml"));
        let mut vars = String::from_utf8(read(&path)).expect("UTF-8");
        vars.push_str(text);
        fs::write(&path, vars).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    };
    let eab = |hmac: &str| format!("fleetcert_acme_eab: {{kid: {KID}, hmac_key: {hmac}}}\n");
    for host in [HOSTS[0].0, LEGACY] {
        append(host, &eab(HMAC));
    }
    let home2 = fleet.home(HOSTS[1].0);
    append(
        HOSTS[1].0,
        &format!(
            "fleetcert_issuer: local-ca\nfleetcert_issuer_ca_cert: {0}/ca/ci.pem\n\
             fleetcert_issuer_ca_key: {0}/ca/ci.key\nfleetcert_issuer_ca_cert_src: {1}\n\
             fleetcert_issuer_ca_key_src: {2}\n",
            home2.display(),
            ca_cert.display(),
            ca_key.display()
        ),
    );
    let leaks = |run: &Playbook, what: &str, hmacs: &[&str]| {
        let mut found: Vec<String> = hmacs
            .iter()
            .filter(|hmac| run.output.contains(**hmac))
            .map(|hmac| format!("the EAB HMAC key {hmac}"))
            .collect();
        if run.output.contains(&secret) {
            found.push("the TSIG secret".to_owned());
        }
        found.extend(
            key_lines
                .iter()
                .filter(|line| run.output.contains(**line))
                .map(|line| format!("a line of the CA key: {line}")),
        );
        assert!(
            found.is_empty(),
            "{what} printed {found:?}; output:\n{}",
            run.output
        );
    };

    // 1. The first run, with every diff and every module argument shown.
    let first = fleet.playbook(&["--diff", "-vvv"]);
    first.expect_failed(&[]);
    assert_issued(&fleet, HOSTS[0].0, "main", HOSTS[0].1[0].1);
    assert_eq!(
        read(&home2.join("ca/ci.key")),
        read(&ca_key),
        "host2's CA key"
    );
    assert_eq!(
        fs::metadata(home2.join("ca/ci.key"))
            .expect("CA key")
            .permissions()
            .mode()
            & 0o7777,
        0o600,
        "the CA key's mode on host2"
    );
    let config =
        String::from_utf8(read(&fleet.home(HOSTS[0].0).join("etc/fleetcert.yaml"))).expect("UTF-8");
    assert!(
        config.contains(HMAC),
        "host1's config lacks its EAB key:\n{config}"
    );
    assert!(
        first.output.contains("hmac_key: (hidden)"),
        "the first run shows no config diff; output:\n{}",
        first.output
    );
    leaks(&first, "the first run with --diff -vvv", &[HMAC]);

    // 2. Check mode with a new EAB key and the bastion's secret gone.
    fs::remove_file(fleet.home(BASTION).join("etc/tsig.secret")).expect("remove the secret");
    // Replaced, not appended: Ansible's warning about a duplicate key quotes the line.
    let host1_vars = host_vars.join(format!("{}.yaml", HOSTS[0].0));
    let vars = String::from_utf8(read(&host1_vars)).expect("UTF-8");
    fs::write(&host1_vars, vars.replace(&eab(HMAC), &eab(NEW_HMAC))).expect("rotate the EAB key");
    let check = fleet.playbook(&["--check", "--diff", "-vvv"]);
    check.expect_failed(&[]);
    assert!(
        check.output.contains("hmac_key: (hidden)"),
        "check mode shows no config diff; output:\n{}",
        check.output
    );
    leaks(&check, "--check --diff -vvv", &[HMAC, NEW_HMAC]);
}

/// A host whose token document publish refuses fails alone (issue 22, item 5): the primary's
/// allow-list (`fleetcert_zone_allow`, the inventory's turned off) lists host1's names only,
/// so publish refuses host2's document, publishes host1's and exits 1 naming host2
/// (`refused`, docs/reports.md). host1 gets its certificate; host2 does not finalize (no
/// validation burnt at the CA), and fails at the end with publish's line; nothing else fails.
#[test]
fn a_host_whose_document_publish_refuses_fails_alone() {
    let fleet = Fleet::new(&["--hosts", "2", "--binary", env!("CARGO_BIN_EXE_fleetcert")]);
    let primary_vars = fleet.host_vars(PRIMARY);
    let mut vars = String::from_utf8(read(&primary_vars)).expect("UTF-8");
    vars.push_str(&format!(
        "fleetcert_zone_allow_inventory: false\nfleetcert_zone_allow:\n  {0}: [{0}, www1.example.test]\n  {1}: [host200.example.test]\n",
        HOSTS[0].0, LEGACY
    ));
    fs::write(&primary_vars, vars).expect("write the primary's variables");

    let run = fleet.playbook(&[]);
    let host2 = HOSTS[1].0;
    run.expect_failed(&[host2]);
    assert_issued(&fleet, HOSTS[0].0, "main", HOSTS[0].1[0].1);
    assert!(
        !fleet.fullchain(host2, "main").exists(),
        "{host2} got a certificate"
    );
    let fatal = run
        .output
        .lines()
        .find(|line| line.starts_with(&format!("fatal: [{host2}]")))
        .unwrap_or_else(|| panic!("no fatal line for {host2}; output:\n{}", run.output));
    assert!(
        fatal.contains("token document refused by publish"),
        "{host2} failed for another reason: {fatal}"
    );
    let finalize_play = run
        .output
        .split("PLAY [Finalize the orders and install the certificates]")
        .nth(1)
        .and_then(|rest| rest.split("PLAY [").next())
        .unwrap_or_else(|| panic!("no finalize play; output:\n{}", run.output));
    assert!(
        finalize_play.contains(HOSTS[0].0) && !finalize_play.contains(host2),
        "the finalize play did not run on {} alone:\n{finalize_play}",
        HOSTS[0].0
    );
}
