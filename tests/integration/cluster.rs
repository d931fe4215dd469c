//! One certificate for many servers, through the daily playbook of the installed collection
//! on the local fleet (tests/fleet/inventory.sh, as tests/integration/ansible.rs runs it):
//! host1 requests and finalizes `shared` once (with a PKCS#12 keystore), the role
//! fleetcert_cluster copies the set to the members host2 and host3, and each member's
//! handlers run exactly when its own files changed — against a real nginx on host2 (reload)
//! and a real ZooKeeper on host3 (restart). A member made unreachable fails alone and gets
//! the set on the next run.

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use crate::support::fleet::Fleet;
use crate::support::sandbox::pem_certificates;
use crate::support::services::{Leaf, Nginx, Zookeeper, curl_leaf, served_leaf};
use crate::support::util::openssl_extract;

const ISSUER: &str = "host1.example.test";
const MEMBERS: [&str; 2] = ["host2.example.test", "host3.example.test"];
const NAME: &str = "host150.example.test";
const FILES: [&str; 5] = [
    "privkey.pem",
    "cert.pem",
    "chain.pem",
    "fullchain.pem",
    "keystore.p12",
];

/// The PEM files of `shared` on `host`, each file's bytes (the members build their own
/// keystores with `fleetcert install`: see [`keystore_chain`]).
fn set_of(fleet: &Fleet, host: &str) -> Vec<Vec<u8>> {
    let dir = fleet.home(host).join("certs/shared");
    FILES
        .iter()
        .filter(|name| !name.ends_with(".p12"))
        .map(|name| fs::read(dir.join(name)).unwrap_or_else(|err| panic!("{host} {name}: {err}")))
        .collect()
}

/// The certificates in `host`'s keystore of `shared`, opened with `password`, as PEM blocks.
fn keystore_chain(fleet: &Fleet, host: &str, password: &Path) -> Vec<String> {
    let out = fleet.dir.path().join(format!("{host}-keystore-certs.pem"));
    let keystore = fleet.home(host).join("certs/shared/keystore.p12");
    openssl_extract(&keystore, password, "-nokeys", &out);
    pem_certificates(&fs::read_to_string(&out).expect("extracted"))
}

/// The lines of handlers.log for `shared` ("HOST shared"), sorted.
fn shared_handlers(fleet: &Fleet) -> Vec<String> {
    fleet
        .handler_lines()
        .into_iter()
        .filter(|line| line.ends_with(" shared"))
        .collect()
}

/// Writes the group fleetcert_cluster (the members copy `shared` from host1); `extra` holds
/// host variables per member.
fn write_cluster(fleet: &Fleet, extra: &[(&str, String)]) {
    let mut text = String::from(
        "---\nall:\n  children:\n    fleetcert_cluster:\n      vars:\n        \
         fleetcert_cluster_certs: {shared: host1.example.test}\n      hosts:\n",
    );
    for member in MEMBERS {
        let vars = extra
            .iter()
            .filter(|(host, _)| *host == member)
            .map(|(_, vars)| vars.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(text, "        {member}: {{{vars}}}");
    }
    fs::write(fleet.dir.path().join("inventory/cluster.yaml"), text).expect("write cluster.yaml");
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

#[test]
fn a_cluster_certificate_is_issued_once_and_installed_on_every_member() {
    let binary = env!("CARGO_BIN_EXE_fleetcert");
    let fleet = Fleet::new(&["--hosts", "3", "--binary", binary]);
    let dir = fleet.dir.path().to_path_buf();

    // host1 issues `shared`, with a keystore; its password file is the operator's.
    let password = dir.join("hosts").join(ISSUER).join("zk.pass");
    fs::create_dir_all(password.parent().expect("parent")).expect("mkdir");
    fs::write(&password, "cluster-pass-31337\n").expect("write the password");
    fs::set_permissions(&password, fs::Permissions::from_mode(0o600)).expect("chmod");
    let host_vars = fleet.host_vars(ISSUER);
    let mut vars = fs::read_to_string(&host_vars).expect("read host_vars");
    let _ = writeln!(
        vars,
        "  shared: {{names: [{NAME}], pkcs12: {{password_file: {}, alias: zookeeper}}}}",
        password.display()
    );
    fs::write(&host_vars, &vars).expect("write host_vars");
    write_cluster(&fleet, &[]);
    // The fleet's handlers, and for `shared` one that records and one that runs the
    // member's own reload command, when it has one.
    let handlers: PathBuf = dir.join("cluster-handlers.yaml");
    let mut text = fs::read_to_string(dir.join("handlers.yaml")).expect("read handlers");
    let log = dir.join("handlers.log");
    let _ = write!(
        text,
        "- name: Record the replaced shared certificate\n  ansible.builtin.shell:\n    \
         cmd: echo \"{{{{ inventory_hostname }}}} shared\" >> {log}\n  changed_when: true\n  \
         listen: fleetcert updated shared\n\
         - name: Reload the member's service for the shared certificate\n  \
         ansible.builtin.command:\n    cmd: \"{{{{ cluster_reload }}}}\"\n  changed_when: true\n  \
         when: cluster_reload is defined\n  listen: fleetcert updated shared\n",
        log = log.display()
    );
    fs::write(&handlers, text).expect("write handlers");
    fs::write(
        dir.join("extra-vars.yaml"),
        format!("---\nfleetcert_handlers_file: {}\n", handlers.display()),
    )
    .expect("write extra vars");

    // 1. One order on host1, three identical sets, the handlers of all three.
    let first = fleet.playbook(&[]);
    first.expect_failed(&[]);
    let issued = set_of(&fleet, ISSUER);
    let issued_chain = pem_certificates(
        &fs::read_to_string(fleet.home(ISSUER).join("certs/shared/fullchain.pem"))
            .expect("host1's full chain"),
    );
    for member in MEMBERS {
        assert_eq!(set_of(&fleet, member), issued, "{member} has host1's set");
        assert_eq!(
            keystore_chain(&fleet, member, &password),
            issued_chain,
            "{member}'s keystore holds host1's chain"
        );
        let state = fleet.home(member).join("state");
        assert!(
            !state.join("orders/shared.json").exists(),
            "{member} ordered"
        );
        assert!(
            !state.join("keys/shared.pem").exists(),
            "{member} made a key"
        );
        let copy = fleet.home(member).join("certs/shared");
        assert_eq!(mode(&copy), 0o750);
        assert_eq!(mode(&copy.join("privkey.pem")), 0o640);
        assert_eq!(mode(&copy.join("keystore.p12")), 0o640);
        assert_eq!(mode(&copy.join("fullchain.pem")), 0o644);
    }
    assert_eq!(
        shared_handlers(&fleet),
        [
            "host1.example.test shared",
            "host2.example.test shared",
            "host3.example.test shared"
        ]
    );
    assert!(
        !first.output.contains("cluster-pass-31337"),
        "the keystore password in the playbook's output"
    );
    assert!(
        !first.output.contains("PRIVATE KEY"),
        "key material in the playbook's output"
    );

    // The members' services, reading their own copies; their handlers from now on.
    let root = fleet.sb.pebble_root();
    let home2 = fleet.home(MEMBERS[0]).join("certs/shared");
    let home3 = fleet.home(MEMBERS[1]).join("certs/shared");
    let nginx = Nginx::start(
        &home2.join("fullchain.pem"),
        &home2.join("privkey.pem"),
        NAME,
    );
    let zookeeper = Zookeeper::start(&home3.join("keystore.p12"), &password);
    let old = Leaf::of_file(&fleet.home(ISSUER).join("certs/shared/cert.pem"));
    assert_eq!(curl_leaf(nginx.port(), NAME, &root), Ok(old.clone()));
    assert_eq!(
        served_leaf(zookeeper.address(), NAME, Some(&root)),
        Ok(old.clone())
    );
    let reload = |service: &Path| format!("cluster_reload: {}", service.display());
    let reachable = [
        (MEMBERS[0], reload(&nginx.reload_command())),
        (MEMBERS[1], reload(&zookeeper.restart_command())),
    ];
    write_cluster(&fleet, &reachable);

    // 2. Nothing new: nothing changes anywhere, no handler runs.
    let second = fleet.playbook(&[]);
    second.expect_failed(&[]);
    for host in [ISSUER, MEMBERS[0], MEMBERS[1]] {
        assert_eq!(second.host(host).changed, 0, "{host}: {}", second.output);
    }
    assert_eq!(shared_handlers(&fleet).len(), 3);

    // 3. A renewal (another key type) while host3 is unreachable: host1 and host2 go on,
    //    host3 fails alone and keeps its set.
    fs::write(&host_vars, format!("{vars}fleetcert_key_type: rsa-2048\n")).expect("write");
    let unreachable = format!(
        "{}, ansible_connection: ssh, ansible_host: 127.0.0.1, ansible_port: 1",
        reachable[1].1
    );
    write_cluster(&fleet, &[reachable[0].clone(), (MEMBERS[1], unreachable)]);
    let third = fleet.playbook(&[]);
    // ansible-playbook exits 4 when a host was unreachable (2 when one failed).
    assert_eq!(third.code, 4, "{}", third.output);
    assert!(third.host(MEMBERS[1]).unreachable > 0, "{}", third.output);
    for host in [ISSUER, MEMBERS[0]] {
        let recap = third.host(host);
        assert_eq!(
            (recap.failed, recap.unreachable),
            (0, 0),
            "{host}: {}",
            third.output
        );
    }
    let renewed = set_of(&fleet, ISSUER);
    assert_ne!(renewed, issued);
    assert_eq!(set_of(&fleet, MEMBERS[0]), renewed);
    assert_eq!(
        set_of(&fleet, MEMBERS[1]),
        issued,
        "host3 keeps the old set"
    );
    assert_eq!(
        shared_handlers(&fleet),
        [
            "host1.example.test shared",
            "host1.example.test shared",
            "host2.example.test shared",
            "host2.example.test shared",
            "host3.example.test shared",
        ]
    );
    let new = Leaf::of_file(&fleet.home(ISSUER).join("certs/shared/cert.pem"));
    assert_ne!(new.serial, old.serial);
    assert_eq!(
        curl_leaf(nginx.port(), NAME, &root),
        Ok(new.clone()),
        "host2's handler reloaded nginx"
    );
    assert_eq!(
        served_leaf(zookeeper.address(), NAME, Some(&root)),
        Ok(old),
        "host3's ZooKeeper was not touched"
    );

    // 4. host3 back: it gets the set and its handler restarts ZooKeeper; nothing else runs.
    write_cluster(&fleet, &reachable);
    let fourth = fleet.playbook(&[]);
    fourth.expect_failed(&[]);
    assert_eq!(set_of(&fleet, MEMBERS[1]), renewed);
    for host in [ISSUER, MEMBERS[0]] {
        assert_eq!(fourth.host(host).changed, 0, "{host}: {}", fourth.output);
    }
    let lines = shared_handlers(&fleet);
    assert_eq!(lines.len(), 6, "{lines:?}");
    assert_eq!(
        lines
            .iter()
            .filter(|line| line.starts_with("host3"))
            .count(),
        2
    );
    let log_tail = |path: PathBuf| {
        let text = fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    };
    assert_eq!(
        served_leaf(zookeeper.address(), NAME, Some(&root)),
        Ok(new),
        "host3's handler restarted ZooKeeper; its log ends:\n{}\nits start log:\n{}",
        log_tail(zookeeper.log()),
        log_tail(zookeeper.dir().join("logs/start.log"))
    );
}
