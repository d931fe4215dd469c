//! Publishing by dynamic update (RFC 2136 + TSIG) against the sandbox's real BIND primary,
//! whose signing zone is dynamic with `update-policy`, and its secondary (NOTIFY, IXFR):
//! `publish` with `update:`, its errors, a change by another client in between, and `renew`
//! end to end with a host key limited to its own names.
//!
//! Keys of every sandbox here: `fleet` (hmac-sha256, any TXT record of the zone), `host1`
//! (hmac-sha512, only host1's and www1's records), `none` (known to BIND, may change
//! nothing).

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use base64::Engine as _;
use serde_json::{Value, json};

use crate::support::config::ZoneConfig;
use crate::support::fixture::{Host, sandbox};
use crate::support::sandbox::Sandbox;
use crate::support::util::Run;
use crate::support::util::secret;

const HOST1_RECORDS: &str = "host1.example.test.acme.test,www1.example.test.acme.test";

/// A DNS-01-shaped value, different every call.
fn value() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&secret().as_bytes()[..32])[..43]
        .to_owned()
}

/// The three keys and a sandbox that knows them.
struct Keys {
    fleet: String,
    host1: String,
    none: String,
}

fn start() -> (Sandbox, Keys) {
    let keys = Keys {
        fleet: secret(),
        host1: secret(),
        none: secret(),
    };
    let sb = sandbox()
        .tsig(&format!("fleet={}", keys.fleet))
        .tsig(&format!("hmac-sha512:host1={}@{HOST1_RECORDS}", keys.host1))
        .tsig(&format!("none={}@", keys.none))
        .start();
    (sb, keys)
}

/// The central side: a zone config with `update:` and token files, in a temporary directory.
struct Central<'s> {
    sb: &'s Sandbox,
    dir: tempfile::TempDir,
}

impl<'s> Central<'s> {
    fn new(sb: &'s Sandbox) -> Self {
        Self {
            sb,
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `secret` to a 0600 file named after `key`.
    fn secret_file(&self, key: &str, secret: &str) -> PathBuf {
        let file = self.path(&format!("{key}.secret"));
        std::fs::write(&file, format!("{secret}\n")).expect("write secret");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        file
    }

    /// A zone config publishing through `server` with `key` (`name`, `algorithm`, secret).
    fn config(&self, server: &str, key: &str, algorithm: &str, secret: &str) -> PathBuf {
        let secret_file = self.secret_file(key, secret);
        let config = self.path(&format!("zone-{key}.yaml"));
        ZoneConfig::update(self.sb, key, &secret_file)
            .set(
                "update",
                json!({"server": server, "key_name": key, "algorithm": algorithm, "secret_file": secret_file}),
            )
            .set("state_dir", self.path("state"))
            .write(&config);
        config
    }

    fn fleet(&self, keys: &Keys) -> PathBuf {
        self.config(self.sb.primary(), "fleet", "hmac-sha256", &keys.fleet)
    }

    /// `publish --config CONFIG --tokens HOST=FILE...` with one file per document.
    fn publish(&self, config: &Path, documents: &[(&str, Value)], flags: &[&str]) -> Run {
        let mut args: Vec<String> = vec![
            "publish".into(),
            "--config".into(),
            config.display().to_string(),
        ];
        for (host, document) in documents {
            let file = self.path(&format!("{host}.json"));
            std::fs::write(&file, document.to_string()).expect("write tokens");
            args.push("--tokens".into());
            args.push(format!("{host}={}", file.display()));
        }
        args.extend(flags.iter().map(|flag| (*flag).to_owned()));
        run_with_trace(&args, false)
    }
}

/// Runs the binary; with `trace`, every log line of every crate (`RUST_LOG=trace`) too.
fn run_with_trace(args: &[String], trace: bool) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fleetcert"));
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if trace {
        command.env("RUST_LOG", "trace");
    } else {
        command.env_remove("RUST_LOG");
    }
    let out = command.output().expect("run fleetcert");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A token document of `host` with (name, value) records.
fn document(host: &str, records: &[(&str, &str)]) -> Value {
    json!({
        "version": 1,
        "host": host,
        "records": records.iter().map(|(name, value)| json!({
            "name": format!("{name}.acme.test."), "value": value, "cert": "main",
            "identifier": name})).collect::<Vec<_>>(),
        "certs": [],
    })
}

/// The TXT values at `name` on `server`, sorted, authoritatively.
fn txt(sb: &Sandbox, server: &str, name: &str) -> Vec<String> {
    let mut values = sb
        .dig_authoritative(server, &format!("{name}.acme.test."), "TXT")
        .unwrap_or_else(|err| panic!("{err}"));
    values.sort();
    values
}

fn sorted(values: &[&str]) -> Vec<String> {
    let mut values: Vec<String> = values.iter().map(|v| (*v).to_owned()).collect();
    values.sort();
    values
}

/// One line on stderr, with every `needle` in it, and nothing on stdout.
#[track_caller]
fn assert_one_line(run: &Run, needles: &[&str]) {
    assert!(
        run.stdout.is_empty(),
        "a report with exit {}: {}",
        run.code,
        run.stdout
    );
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "not one line:\n{}", run.stderr);
    for needle in needles {
        assert!(lines[0].contains(needle), "no {needle:?} in: {}", lines[0]);
    }
}

#[track_caller]
fn assert_no_secret(run: &Run, secrets: &[&str]) {
    for secret in secrets {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(secret)
            .expect("base64");
        let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        let lossy = String::from_utf8_lossy(&raw).into_owned();
        for stream in [&run.stdout, &run.stderr] {
            assert!(!stream.contains(secret), "the secret was printed");
            assert!(!stream.contains(&hex), "the secret was printed in hex");
            assert!(
                !stream.contains(&format!("{:?}", &raw[..8])),
                "the secret's bytes were printed"
            );
            assert!(lossy.len() < 8 || !stream.contains(&lossy), "raw secret");
        }
    }
}

// --- publish ---------------------------------------------------------------------------

#[test]
fn update_publishes_on_both_servers_removes_stale_values_and_keeps_the_operators_records() {
    let (sb, keys) = start();
    // What the operator keeps in the zone: an A, a CNAME, a TXT of their own, and a TXT at
    // one of fleetcert's names.
    sb.add_by_hand(&[
        "www.acme.test. 60 IN A 192.0.2.7",
        "alias.acme.test. 60 IN CNAME www.acme.test.",
        "note.acme.test. 60 IN TXT \"the operator's note\"",
        "host2.example.test.acme.test. 60 IN TXT \"v=operator\"",
    ]);
    let operator = sb.axfr(sb.primary(), true);
    let central = Central::new(&sb);
    let config = central.fleet(&keys);
    let (a1, a2, b1) = (value(), value(), value());
    let first = [
        (
            "host1.example.test",
            document(
                "host1.example.test",
                &[("host1.example.test", &a1), ("www1.example.test", &a2)],
            ),
        ),
        (
            "host2.example.test",
            document("host2.example.test", &[("host2.example.test", &b1)]),
        ),
    ];
    // A dry run first: it reads the zone and says it would change it, and it sends no
    // UPDATE and creates nothing, not even the state directory (issue 10).
    let updates = sb.update_log_lines().len();
    let dry = central.publish(&config, &first, &["--dry-run"]);
    let report = dry.expect_code(0).json();
    assert_eq!(
        (&report["changed"], &report["dry_run"]),
        (&json!(true), &json!(true)),
        "{report:#}"
    );
    assert!(
        !central.path("state").exists(),
        "the dry run created the state directory"
    );
    assert_eq!(
        sb.update_log_lines().len(),
        updates,
        "the dry run sent an UPDATE"
    );
    assert_eq!(
        sb.axfr(sb.primary(), true),
        operator,
        "the dry run changed the zone"
    );

    let run = central.publish(&config, &first, &["-vvv"]);
    run.expect_code(0);
    assert_no_secret(&run, &[&keys.fleet]);
    let report = run.json();
    assert_eq!(report["changed"], true, "{report:#}");
    assert_eq!(report["records"], 3);
    // Served by both servers the moment publish returns.
    for server in [sb.primary(), sb.secondary()] {
        assert_eq!(txt(&sb, server, "host1.example.test"), sorted(&[&a1]));
        assert_eq!(txt(&sb, server, "www1.example.test"), sorted(&[&a2]));
        assert_eq!(
            txt(&sb, server, "host2.example.test"),
            sorted(&[&b1, "v=operator"])
        );
    }
    let serial = report["serial"].as_u64().expect("serial");
    assert!(
        report["servers"]
            .as_array()
            .expect("servers")
            .iter()
            .all(|s| s["serial"] == serial)
    );

    // The same documents again: nothing to do, and no UPDATE reaches the primary.
    let updates = sb.update_log_lines().len();
    let again = central.publish(&config, &first, &[]);
    assert_eq!(
        again.expect_code(0).json()["changed"],
        false,
        "{}",
        again.stdout
    );
    assert_eq!(sb.update_log_lines().len(), updates, "an UPDATE was sent");
    assert_eq!(sb.serial(sb.primary()), u32::try_from(serial).expect("u32"));

    // New values for host1, nothing for host2: the stale ones go, everything else stays.
    let (c1, c2) = (value(), value());
    let second = [
        (
            "host1.example.test",
            document(
                "host1.example.test",
                &[("host1.example.test", &c1), ("www1.example.test", &c2)],
            ),
        ),
        ("host2.example.test", document("host2.example.test", &[])),
    ];
    let run = central.publish(&config, &second, &[]);
    assert_eq!(run.expect_code(0).json()["changed"], true);
    for server in [sb.primary(), sb.secondary()] {
        assert_eq!(txt(&sb, server, "host1.example.test"), sorted(&[&c1]));
        assert_eq!(txt(&sb, server, "www1.example.test"), sorted(&[&c2]));
        assert_eq!(txt(&sb, server, "host2.example.test"), ["v=operator"]);
        let zone = sb.axfr(server, true);
        for line in &operator {
            assert!(zone.contains(line), "{server} lost {line:?}:\n{zone:#?}");
        }
    }
    let journal: Value = serde_json::from_str(
        &std::fs::read_to_string(central.path("state/acme.test.published.json")).expect("list"),
    )
    .expect("json");
    assert_eq!(journal["records"].as_array().expect("records").len(), 2);
}

#[test]
fn a_value_found_in_the_zone_is_never_fleetcerts_and_stays_when_the_host_drops_it() {
    let (sb, keys) = start();
    // Another client (a standalone host's own key, say) already put a DNS-01 value at
    // host2's name; host2's document then lists that same value, and one of its own.
    let (found, own) = (value(), value());
    sb.add_by_hand(&[&format!(
        "host2.example.test.acme.test. 60 IN TXT \"{found}\""
    )]);
    let central = Central::new(&sb);
    let config = central.fleet(&keys);
    let listing = |values: &[&str]| {
        (
            "host2.example.test",
            document(
                "host2.example.test",
                &values
                    .iter()
                    .map(|v| ("host2.example.test", *v))
                    .collect::<Vec<_>>(),
            ),
        )
    };
    central
        .publish(&config, &[listing(&[&found, &own])], &[])
        .expect_code(0);
    for server in [sb.primary(), sb.secondary()] {
        assert_eq!(
            txt(&sb, server, "host2.example.test"),
            sorted(&[&found, &own])
        );
    }
    let published = || -> Vec<String> {
        let list: Value = serde_json::from_str(
            &std::fs::read_to_string(central.path("state/acme.test.published.json"))
                .expect("published list"),
        )
        .expect("json");
        list["records"]
            .as_array()
            .expect("records")
            .iter()
            .map(|r| r["value"].as_str().expect("value").to_owned())
            .collect()
    };
    assert_eq!(
        published(),
        std::slice::from_ref(&own),
        "only the value fleetcert added is its own"
    );
    // host2 drops both: fleetcert deletes what it added and leaves what it found.
    let run = central.publish(&config, &[listing(&[])], &[]);
    assert_eq!(run.expect_code(0).json()["changed"], true, "{}", run.stdout);
    for server in [sb.primary(), sb.secondary()] {
        assert_eq!(
            txt(&sb, server, "host2.example.test"),
            std::slice::from_ref(&found),
            "{server}: the value fleetcert found was deleted"
        );
    }
    assert!(published().is_empty());
}

#[test]
fn a_large_change_goes_in_several_messages_and_is_served_whole_by_both_servers() {
    let (sb, keys) = start();
    let central = Central::new(&sb);
    let config = central.fleet(&keys);
    // 1,500 names: about three messages of 64 KiB.
    let values: Vec<(String, String)> = (0..1500)
        .map(|i| (format!("h{i}.bench.test"), value()))
        .collect();
    let records: Vec<(&str, &str)> = values
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    let run = central.publish(
        &config,
        &[("bench.test", document("bench.test", &records))],
        &[],
    );
    let report = run.expect_code(0).json();
    assert_eq!(report["records"], 1500);
    let zone = sb.axfr(sb.secondary(), true);
    let served = zone.iter().filter(|line| line.contains(" TXT ")).count();
    assert_eq!(served, 1500, "the secondary serves {served} of 1500");
    for (name, value) in values.iter().step_by(97) {
        assert_eq!(txt(&sb, sb.secondary(), name), sorted(&[value]));
    }
}

#[test]
fn a_wrong_secret_an_unknown_key_and_forbidden_names_exit_2_with_one_line_and_change_nothing() {
    let (sb, keys) = start();
    let central = Central::new(&sb);
    let fleet = central.fleet(&keys);
    let (a, b) = (value(), value());
    let base = [(
        "host2.example.test",
        document("host2.example.test", &[("host2.example.test", &a)]),
    )];
    central.publish(&fleet, &base, &[]).expect_code(0);
    let zone = sb.axfr(sb.primary(), false);
    let changed = [(
        "host2.example.test",
        document("host2.example.test", &[("host2.example.test", &b)]),
    )];
    let primary = sb.primary();

    let wrong = central.config(primary, "fleet", "hmac-sha256", &secret());
    let run = central.publish(&wrong, &changed, &["-vvv"]);
    run.expect_code(2);
    assert_no_secret(&run, &[&keys.fleet]);
    let last = run.stderr.lines().last().unwrap_or_default().to_owned();
    assert!(
        last.contains("BADSIG") && last.contains(primary) && last.contains("fleet"),
        "{last}"
    );
    let run = central.publish(&wrong, &changed, &[]);
    assert_one_line(&run, &["BADSIG", primary, "key fleet", "fleet.secret"]);

    let unknown = central.config(primary, "nosuch", "hmac-sha256", &keys.fleet);
    let run = central.publish(&unknown, &changed, &[]);
    run.expect_code(2);
    assert_one_line(
        &run,
        &["BADKEY", primary, "key \"nosuch\" { algorithm hmac-sha256;"],
    );

    let host1 = central.config(primary, "host1", "hmac-sha512", &keys.host1);
    let run = central.publish(&host1, &changed, &[]);
    run.expect_code(2);
    assert_one_line(
        &run,
        &[
            "REFUSED",
            primary,
            "key host1",
            "grant \"host1\" name host2.example.test.acme.test. TXT;",
        ],
    );
    let none = central.config(primary, "none", "hmac-sha256", &keys.none);
    central.publish(&none, &changed, &[]).expect_code(2);

    // A secret others may read is refused before anything is asked.
    let open = central.fleet(&keys);
    std::fs::set_permissions(
        central.path("fleet.secret"),
        std::fs::Permissions::from_mode(0o644),
    )
    .expect("chmod");
    let run = central.publish(&open, &changed, &[]);
    run.expect_code(2);
    assert_one_line(&run, &["`update.secret_file`", "mode 0644", "chmod 600"]);
    assert!(!run.stderr.contains(&keys.fleet));

    assert_eq!(sb.axfr(sb.primary(), false), zone, "the zone changed");
    assert_eq!(txt(&sb, sb.secondary(), "host2.example.test"), [a]);
}

#[test]
fn a_refusal_in_a_later_message_undoes_the_earlier_ones() {
    let part = secret();
    // A key that may change 700 names, and a change of 700 + 3 names: the refusal comes in
    // the second message, after the primary took the first.
    let allowed: Vec<String> = (0..700)
        .map(|i| format!("a{i:04}.bench.acme.test"))
        .collect();
    let sb = sandbox()
        .tsig(&format!("part={part}@{}", allowed.join(",")))
        .start();
    let central = Central::new(&sb);
    let config = central.config(sb.primary(), "part", "hmac-sha256", &part);
    let before = sb.axfr(sb.primary(), true);
    let values: Vec<(String, String)> = (0..700)
        .map(|i| format!("a{i:04}.bench"))
        .chain((0..3).map(|i| format!("z{i}.bench")))
        .map(|name| (name, value()))
        .collect();
    let records: Vec<(&str, &str)> = values
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    let run = central.publish(&config, &[("bench", document("bench", &records))], &[]);
    run.expect_code(2);
    assert_one_line(&run, &["REFUSED", "key part", "zonesub TXT"]);
    let log = sb.update_log_lines();
    assert!(
        log.iter()
            .any(|line| line.contains("adding an RR at 'a0000.bench")),
        "the first message was not taken: {log:#?}"
    );
    assert_eq!(
        sb.axfr(sb.primary(), true),
        before,
        "the zone was not put back"
    );
    let published = central.path("state/acme.test.published.json");
    if let Ok(text) = std::fs::read_to_string(&published) {
        assert!(!text.contains("a0000.bench"), "{text}");
    }
}

#[test]
fn hostile_token_documents_are_refused_before_any_update_is_sent() {
    let (sb, keys) = start();
    let central = Central::new(&sb);
    let config = central.fleet(&keys);
    let zone = sb.axfr(sb.primary(), false);
    let good = value();
    for record in [
        json!({"name": "host1.example.test.evil.test.", "value": good, "cert": "main", "identifier": "host1.example.test"}),
        json!({"name": "host1.example.test.acme.test.", "value": "\"; rm -rf / #aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "cert": "main", "identifier": "host1.example.test"}),
        json!({"name": "acme.test. 60 IN NS evil.test.", "value": good, "cert": "main", "identifier": "x"}),
        json!({"name": "*.acme.test.", "value": good, "cert": "main", "identifier": "*.acme.test"}),
    ] {
        let hostile = json!({"version": 1, "host": "host1.example.test", "records": [
            {"name": "www1.example.test.acme.test.", "value": value(), "cert": "main", "identifier": "www1.example.test"},
            record], "certs": []});
        let run = central.publish(&config, &[("host1.example.test", hostile)], &[]);
        run.expect_code(2);
        assert!(run.stdout.is_empty());
    }
    assert!(
        sb.update_log_lines().is_empty(),
        "an UPDATE was sent: {:#?}",
        sb.update_log_lines()
    );
    assert_eq!(sb.axfr(sb.primary(), false), zone);
}

/// A TCP relay to the primary that runs `hook` once, when the first UPDATE comes through,
/// before passing it on: another client's change lands between fleetcert's read and its
/// update, every time.
struct Interloper {
    addr: SocketAddr,
    fired: Arc<AtomicBool>,
}

impl Interloper {
    fn start(primary: &str, hook: impl Fn() + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let primary: SocketAddr = primary.parse().expect("primary");
        let fired = Arc::new(AtomicBool::new(false));
        let hook = Arc::new(hook);
        let seen = fired.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(primary) else {
                    continue;
                };
                let (hook, seen) = (hook.clone(), seen.clone());
                let mut back = (
                    server.try_clone().expect("clone"),
                    client.try_clone().expect("clone"),
                );
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut back.0, &mut back.1);
                });
                std::thread::spawn(move || relay(client, server, &*hook, &seen));
            }
        });
        Self { addr, fired }
    }
}

/// Client to server, one length-prefixed DNS message at a time.
fn relay(mut client: TcpStream, mut server: TcpStream, hook: &dyn Fn(), fired: &AtomicBool) {
    loop {
        let mut length = [0u8; 2];
        if client.read_exact(&mut length).is_err() {
            return;
        }
        let mut message = vec![0u8; usize::from(u16::from_be_bytes(length))];
        if client.read_exact(&mut message).is_err() {
            return;
        }
        let update = message.get(2).is_some_and(|flags| (flags >> 3) & 0x0f == 5);
        if update && !fired.swap(true, Ordering::SeqCst) {
            hook();
        }
        if server
            .write_all(&length)
            .and_then(|()| server.write_all(&message))
            .is_err()
        {
            return;
        }
    }
}

#[test]
fn a_change_by_another_client_between_read_and_update_is_kept() {
    let (sb, keys) = start();
    let central = Central::new(&sb);
    let theirs = value();
    let (ip, port) = sb.primary().rsplit_once(':').expect("ip:port");
    let (ip, port, fleet) = (ip.to_owned(), port.to_owned(), keys.fleet.clone());
    let their_value = theirs.clone();
    let interloper = Interloper::start(sb.primary(), move || {
        // Another ACME client with the same key adds its own value at the same name.
        let script = format!(
            "server {ip} {port}\nzone acme.test\nupdate add host1.example.test.acme.test. 60 TXT \"{their_value}\"\nsend\n"
        );
        let mut child = Command::new("nsupdate")
            .args(["-y", &format!("hmac-sha256:fleet:{fleet}")])
            .stdin(Stdio::piped())
            .spawn()
            .expect("nsupdate");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(script.as_bytes())
            .expect("write");
        assert!(child.wait().expect("wait").success(), "nsupdate failed");
    });
    let config = central.config(
        &interloper.addr.to_string(),
        "fleet",
        "hmac-sha256",
        &keys.fleet,
    );
    let ours = value();
    let run = central.publish(
        &config,
        &[(
            "host1.example.test",
            document("host1.example.test", &[("host1.example.test", &ours)]),
        )],
        &["-v"],
    );
    run.expect_code(0);
    assert!(
        interloper.fired.load(Ordering::SeqCst),
        "no UPDATE went through the relay"
    );
    assert!(
        run.stderr.contains("changed since it was read"),
        "no retry: {}",
        run.stderr
    );
    let log = sb.update_log_lines();
    assert!(
        log.iter()
            .any(|line| line.contains("prerequisite not satisfied")),
        "{log:#?}"
    );
    for server in [sb.primary(), sb.secondary()] {
        assert_eq!(
            txt(&sb, server, "host1.example.test"),
            sorted(&[&ours, &theirs])
        );
    }
}

#[test]
fn a_config_with_update_and_a_zone_file_is_refused() {
    let (sb, keys) = start();
    let central = Central::new(&sb);
    let config = central.fleet(&keys);
    let mut text = std::fs::read_to_string(&config).expect("read");
    text.push_str("zone_file: /tmp/zone.db\n");
    std::fs::write(&config, text).expect("write");
    let run = central.publish(
        &config,
        &[("h.example.test", document("h.example.test", &[]))],
        &[],
    );
    run.expect_code(2);
    assert_one_line(&run, &["`zone_file`", "replaces", "remove"]);
}

#[test]
fn badtime_names_both_clocks() {
    let (sb, keys) = start();
    let central = Central::new(&sb);
    let config = central.fleet(&keys);
    let tokens = central.path("t.json");
    std::fs::write(
        &tokens,
        document("h.example.test", &[("h.example.test", &value())]).to_string(),
    )
    .expect("write");
    let out = Command::new("faketime")
        .args([
            "-f",
            "+2h",
            env!("CARGO_BIN_EXE_fleetcert"),
            "publish",
            "--config",
        ])
        .arg(&config)
        .arg("--tokens")
        .arg(format!("h.example.test={}", tokens.display()))
        .output()
        .expect("faketime (tests/sandbox/install.sh installs it)");
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    run.expect_code(2);
    assert_one_line(
        &run,
        &[
            "BADTIME",
            "this host's clock says",
            "the server's says",
            "NTP",
        ],
    );
    assert!(sb.update_log_lines().is_empty());
}

// --- renew -----------------------------------------------------------------------------

#[test]
fn renew_issues_end_to_end_removes_its_records_and_its_key_cannot_write_another_hosts() {
    let (sb, keys) = start();
    let host = Host::new(&sb, &[]);
    let secret_file = host.dir.path().join("host1.secret");
    std::fs::write(&secret_file, &keys.host1).expect("write");
    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    host.configure(
        &format!(
            "update: {{server: \"{}\", key_name: host1, algorithm: hmac-sha512, secret_file: {}}}\n\
             servers: [\"{}\", \"{}\"]\ntimeout: 30s\n",
            sb.primary(),
            secret_file.display(),
            sb.primary(),
            sb.secondary()
        ),
        &[("main", &["host1.example.test", "www1.example.test"])],
    );
    // A dry run first: nothing is ordered, so nothing is published, and it creates nothing,
    // not even the state directory (issue 10).
    let dry = host.run("renew", &["--dry-run"]);
    let report = dry.expect_code(0).json();
    assert_eq!(report["dry_run"], true, "{report:#}");
    assert!(
        !host.state_dir().exists(),
        "renew --dry-run created the state directory"
    );
    assert!(
        sb.update_log_lines().is_empty(),
        "renew --dry-run sent an UPDATE"
    );

    host.flags.borrow_mut().push("-vvv".to_owned());
    let run = host.run("renew", &[]);
    run.expect_code(0);
    assert_no_secret(&run, &[&keys.host1]);
    let report = run.json();
    assert_eq!(report["changed"], true, "{report:#}");
    // Each step's seconds are its own: publishing and the clean-up fit in the whole run.
    let seconds = |step: &str| report[step]["seconds"].as_f64().expect("seconds");
    assert!(
        seconds("publish") + seconds("cleanup") <= report["seconds"].as_f64().expect("seconds"),
        "{report:#}"
    );
    assert_eq!(
        report["finalize"]["certs"][0]["status"], "issued",
        "{report:#}"
    );
    assert_eq!(report["publish"]["records"], 2);
    assert_eq!(report["cleanup"]["records"], 0);
    sb.verify_chain(&host.file("main", "fullchain.pem"))
        .unwrap_or_else(|err| panic!("the chain does not verify: {err}"));
    for server in [sb.primary(), sb.secondary()] {
        for name in ["host1.example.test", "www1.example.test"] {
            assert!(
                txt(&sb, server, name).is_empty(),
                "{name} still at {server}"
            );
        }
    }

    // Nothing due: no UPDATE, nothing changed.
    host.flags.borrow_mut().clear();
    let updates = sb.update_log_lines().len();
    let again = host.run("renew", &[]);
    let report = again.expect_code(0).json();
    assert_eq!(report["changed"], false, "{report:#}");
    assert!(
        report["publish"].is_null() && report["cleanup"].is_null(),
        "{report:#}"
    );
    assert_eq!(sb.update_log_lines().len(), updates);

    // The host's key cannot write another host's record.
    let central = Central::new(&sb);
    let config = central.config(sb.primary(), "host1", "hmac-sha512", &keys.host1);
    let run = central.publish(
        &config,
        &[(
            "host2.example.test",
            document("host2.example.test", &[("host2.example.test", &value())]),
        )],
        &[],
    );
    run.expect_code(2);
    assert_one_line(
        &run,
        &[
            "REFUSED",
            "grant \"host1\" name host2.example.test.acme.test. TXT;",
        ],
    );
    assert!(txt(&sb, sb.primary(), "host2.example.test").is_empty());
}

#[test]
fn renew_without_an_update_block_is_a_config_error() {
    let sb = sandbox().start();
    let host = Host::new(&sb, &[("main", &["host1.example.test"])]);
    let run = host.run("renew", &[]);
    run.expect_code(2);
    assert_one_line(&run, &["`update`", "is missing"]);
    host.configure(
        "servers: [\"127.0.0.1:53\"]\n",
        &[("main", &["host1.example.test"])],
    );
    let run = host.run("renew", &[]);
    run.expect_code(2);
    assert_one_line(&run, &["`servers`", "update:"]);
}
