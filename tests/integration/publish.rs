//! `fleetcert publish` against the sandbox's real BIND primary and secondary: records served
//! authoritatively by both servers and through the resolver's CNAME, a propagation timeout that
//! names the server, hostile documents that change nothing, concurrent publishes, serials,
//! failed reloads, idempotence, cleanup, `record_lifetime`, the input shapes and `--dry-run`.
//!
//! Every test has its own sandbox; the zone config and the token files live in its directory
//! (`central/`), so a failed test leaves them beside the servers' logs.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::config::ZoneConfig;
use crate::support::day::token_document;
use crate::support::day::{Zone, next_host_number, shared_sandbox};
use crate::support::faults::{Immutable, alive, script};
use crate::support::fixture::sandbox;
use crate::support::sandbox::Sandbox;
use crate::support::util::{Run, fleetcert, fleetcert_with_stdin, snapshot};
use crate::support::util::{last_stderr_line, txt_values, values};

const SIGNING_ZONE: &str = "acme.test";

/// A DNS-01-shaped value (43 base64url characters), different on every call.
fn fresh_value() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let call = CALLS.fetch_add(1, Ordering::Relaxed);
    // Unique per call and per test process; xorshift spreads it over all 43 characters.
    let mut state =
        (u64::from(std::process::id()) << 32 | call).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..43)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(ALPHABET[usize::try_from(state >> 58).unwrap_or(0)])
        })
        .collect()
}

/// One challenge record as `request` would hand it over (per-name mode).
#[derive(Debug, Clone)]
struct Record {
    identifier: String,
    name: String,
    value: String,
}

impl Record {
    /// A record with a fresh value for `identifier` (`*.x` goes to `x`'s name).
    fn new(identifier: &str) -> Self {
        let base = identifier.strip_prefix("*.").unwrap_or(identifier);
        Self {
            identifier: identifier.to_owned(),
            name: format!("{base}.{SIGNING_ZONE}."),
            value: fresh_value(),
        }
    }

    /// The name the CA asks the resolver, which the production zone CNAMEs to `name`.
    fn challenge_name(&self) -> String {
        let base = self
            .identifier
            .strip_prefix("*.")
            .unwrap_or(&self.identifier);
        format!("_acme-challenge.{base}")
    }

    fn to_json(&self) -> Value {
        json!({"name": self.name, "value": self.value, "cert": "main",
               "identifier": self.identifier})
    }
}

/// A token document of `host` with `records` (none: a cleanup, as `request` prints when
/// nothing is due).
fn document(host: &str, records: &[Record]) -> Value {
    let status = if records.is_empty() {
        "valid"
    } else {
        "pending"
    };
    json!({
        "version": 1,
        "host": host,
        "records": records.iter().map(Record::to_json).collect::<Vec<_>>(),
        "certs": [{"name": "main", "status": status, "not_after": null, "reason": "test"}],
    })
}

/// A zone config for the sandbox, built up from the defaults that work there.
#[derive(Debug, Clone)]
struct ZoneOptions {
    timeout: String,
    reload: Vec<String>,
    nameservers: Vec<String>,
    /// Further YAML lines (`allow:`, `glue:`, `record_lifetime:` ...).
    extra: String,
}

impl ZoneOptions {
    fn timeout(mut self, timeout: &str) -> Self {
        timeout.clone_into(&mut self.timeout);
        self
    }

    fn reload(mut self, argv: &[&str]) -> Self {
        self.reload = argv.iter().map(|word| (*word).to_owned()).collect();
        self
    }

    fn nameservers(mut self, names: &[&str]) -> Self {
        self.nameservers = names.iter().map(|name| (*name).to_owned()).collect();
        self
    }

    fn extra(mut self, yaml: &str) -> Self {
        self.extra.push_str(yaml);
        self.extra.push('\n');
        self
    }
}

/// The central side of one test: a sandbox, its zone config and a reload command that counts
/// its calls before running the sandbox's `rndc`.
struct Central {
    sb: Sandbox,
    dir: PathBuf,
    config: PathBuf,
}

impl Central {
    fn start() -> Self {
        let sb = Sandbox::start();
        let dir = sb.dir().join("central");
        std::fs::create_dir_all(&dir).expect("create central/");
        let reload = dir.join("reload.sh");
        std::fs::write(
            &reload,
            format!(
                "#!/bin/sh\necho \"$*\" >> {}\nexec {} \"$@\"\n",
                dir.join("reloads").display(),
                sb.rndc().display()
            ),
        )
        .expect("write reload.sh");
        make_executable(&reload);
        let mut central = Self {
            sb,
            config: dir.join("zone.yaml"),
            dir,
        };
        central.config = central.write_config("zone.yaml", &central.options());
        central
    }

    /// The options of the default config (`zone.yaml`).
    fn options(&self) -> ZoneOptions {
        let reload = self.dir.join("reload.sh").display().to_string();
        ZoneOptions {
            timeout: "30s".to_owned(),
            reload: vec![reload, "reload".to_owned(), SIGNING_ZONE.to_owned()],
            nameservers: vec![
                "ns1.example.test.".to_owned(),
                "ns2.example.test.".to_owned(),
            ],
            extra: String::new(),
        }
    }

    /// Writes a zone config `file` into `central/` and returns its path.
    fn write_config(&self, file: &str, options: &ZoneOptions) -> PathBuf {
        let reload: Vec<&str> = options.reload.iter().map(String::as_str).collect();
        let path = self.dir.join(file);
        ZoneConfig::zone_file(&self.sb, &self.sb.signing_zone_file(), &reload)
            .set("nameservers", &options.nameservers)
            .set("timeout", &options.timeout)
            .lines(&options.extra)
            .write(&path);
        path
    }

    /// Writes a token file into `central/`.
    fn tokens(&self, file: &str, value: &Value) -> PathBuf {
        let path = self.dir.join(file);
        std::fs::write(&path, value.to_string()).expect("write tokens");
        path
    }

    /// `publish --config <config>` with one `--tokens` per file, and `extra` arguments.
    fn publish_with(&self, config: &Path, tokens: &[&Path], extra: &[&str]) -> Run {
        fleetcert(publish_args(config, tokens, extra))
    }

    /// `publish` with the default config.
    fn publish(&self, tokens: &[&Path]) -> Run {
        self.publish_with(&self.config, tokens, &[])
    }

    /// Writes `documents` as one JSON array and publishes it with the default config; panics
    /// unless it succeeds. Returns the report.
    #[track_caller]
    fn publish_ok(&self, file: &str, documents: &[Value]) -> Value {
        let tokens = self.tokens(file, &Value::Array(documents.to_vec()));
        let run = self.publish(&[&tokens]);
        run.expect_code(0);
        run.json()
    }

    /// How many times the counting reload command ran.
    fn reloads(&self) -> usize {
        std::fs::read_to_string(self.dir.join("reloads")).map_or(0, |text| text.lines().count())
    }

    /// The primary's directory: zone file, ledger, `.prev`, lock, and BIND's own files.
    fn primary_dir(&self) -> PathBuf {
        self.sb
            .signing_zone_file()
            .parent()
            .expect("zone file has a directory")
            .to_path_buf()
    }

    /// The zone file and its ledger, byte for byte (`None`: missing).
    fn zone_and_ledger(&self) -> [Option<Vec<u8>>; 2] {
        let zone = self.sb.signing_zone_file();
        let mut ledger = zone.clone().into_os_string();
        ledger.push(".ledger.json");
        [zone, PathBuf::from(ledger)].map(|path| std::fs::read(path).ok())
    }

    /// Both servers' serials.
    fn serials(&self) -> [u32; 2] {
        [self.sb.primary(), self.sb.secondary()].map(|server| self.sb.serial(server))
    }

    /// Both authoritative servers answer every record's name with exactly the published values
    /// and the AA flag, and the resolver reaches them through the production zone's CNAME.
    #[track_caller]
    fn assert_served(&self, records: &[Record]) {
        let mut by_name: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for record in records {
            by_name
                .entry(&record.name)
                .or_default()
                .insert(&record.value);
        }
        for server in [self.sb.primary(), self.sb.secondary()] {
            for (name, values) in &by_name {
                let answer = self
                    .sb
                    .dig_authoritative(server, name, "TXT")
                    .unwrap_or_else(|err| panic!("{err}"));
                let answer: BTreeSet<&str> = answer.iter().map(String::as_str).collect();
                assert_eq!(&answer, values, "{name} TXT at {server}");
            }
        }
        for record in records {
            let answer = self
                .sb
                .dig(self.sb.resolver(), &record.challenge_name(), "TXT");
            let (target, values) = answer.split_first().unwrap_or_else(|| {
                panic!("no answer for {} via the resolver", record.challenge_name())
            });
            assert_eq!(target, &record.name, "CNAME of {}", record.challenge_name());
            let values: BTreeSet<&str> = values.iter().map(String::as_str).collect();
            assert_eq!(
                values,
                by_name[record.name.as_str()],
                "{} TXT via the resolver",
                record.challenge_name()
            );
        }
    }

    /// Neither server has a TXT at any of these records' names (an authoritative empty answer).
    #[track_caller]
    fn assert_gone(&self, records: &[Record]) {
        for server in [self.sb.primary(), self.sb.secondary()] {
            for record in records {
                let answer = self
                    .sb
                    .dig_authoritative(server, &record.name, "TXT")
                    .unwrap_or_else(|err| panic!("{err}"));
                assert!(answer.is_empty(), "{} at {server}: {answer:?}", record.name);
            }
        }
    }
}

fn publish_args(config: &Path, tokens: &[&Path], extra: &[&str]) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["publish".into(), "--config".into(), config.into()];
    for file in tokens {
        args.push("--tokens".into());
        args.push((*file).into());
    }
    args.extend(extra.iter().map(OsString::from));
    args
}

fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// The one line a failed run prints on stderr.
#[track_caller]
fn error_line(run: &Run) -> &str {
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "not one line on stderr:\n{}", run.stderr);
    assert!(
        lines[0].starts_with("fleetcert: error: "),
        "not an error line: {}",
        lines[0]
    );
    lines[0]
}

/// The report's `serial`.
#[track_caller]
fn serial_of(report: &Value) -> u32 {
    report["serial"]
        .as_u64()
        .and_then(|serial| u32::try_from(serial).ok())
        .unwrap_or_else(|| panic!("no serial in {report}"))
}

#[test]
fn several_hosts_are_served_by_both_servers_and_through_the_resolver() {
    let central = Central::start();
    let host1 = [
        Record::new("host1.example.test"),
        Record::new("www1.example.test"),
    ];
    // A wildcard and its base name: two values at one name, both must be there.
    let host2 = [
        Record::new("host2.example.test"),
        Record::new("*.host2.example.test"),
    ];
    let host3 = [Record::new("host3.example.test")];
    let report = central.publish_ok(
        "tokens.json",
        &[
            document("host1.example.test", &host1),
            document("host2.example.test", &host2),
            document("host3.example.test", &host3),
        ],
    );

    let serial = serial_of(&report);
    assert_eq!(report["changed"], true);
    assert_eq!(report["dry_run"], false);
    assert_eq!(report["zone"], SIGNING_ZONE);
    assert_eq!(report["records"], 5);
    assert_eq!(report["hosts"], 3);
    assert_eq!(report["records_checked_on"], central.sb.primary());
    let servers = report["servers"].as_array().expect("servers");
    assert_eq!(servers.len(), 2);
    for (entry, server) in servers
        .iter()
        .zip([central.sb.primary(), central.sb.secondary()])
    {
        assert_eq!(entry["server"], server);
        assert_eq!(entry["serial"], serial);
        assert!(entry["seconds"].is_f64(), "{entry}");
        assert!(entry.get("lagging").is_none(), "{entry}");
    }
    assert_eq!(central.serials(), [serial, serial]);
    assert_eq!(central.reloads(), 1);
    central.assert_served(&[host1.as_slice(), &host2, &host3].concat());
}

#[test]
fn stopped_secondary_is_named_with_exit_3_within_the_timeout() {
    let central = Central::start();
    let short = central.write_config("short.yaml", &central.options().timeout("3s"));
    let before = [Record::new("host4.example.test")];
    let first = central.tokens("first.json", &document("host4.example.test", &before));
    central.publish_with(&short, &[&first], &[]).expect_code(0);

    let secondary = central.sb.secondary().to_owned();
    central.sb.stop_server("secondary");
    let after = [Record::new("host5.example.test")];
    let second = central.tokens("second.json", &document("host5.example.test", &after));
    let started = Instant::now();
    let run = central.publish_with(&short, &[&first, &second], &[]);
    let took = started.elapsed();
    run.expect_code(3);
    // The timeout bounds the whole wait, the serial check before rendering included. Not a
    // performance figure: the bound is generous so a loaded machine does not fail it, and
    // still far below what an unbounded wait (a question per server left to its own 3 s
    // timeouts, retried) or the default 300 s timeout would take.
    assert!(took < Duration::from_secs(3 + 120), "took {took:?}");
    assert!(
        run.stderr.contains("after 3s"),
        "the line names the configured timeout: {}",
        run.stderr
    );

    let report = run.json();
    let serial = serial_of(&report);
    let line = error_line(&run);
    assert!(
        line.contains(&format!("{secondary} no answer")) && line.contains(&serial.to_string()),
        "{line}"
    );
    assert!(
        !line.contains(central.sb.primary()),
        "names the primary: {line}"
    );
    assert_eq!(report["servers"][0]["serial"], serial);
    assert_eq!(report["servers"][1]["server"], secondary.as_str());
    assert_eq!(report["servers"][1]["serial"], Value::Null);
    assert!(
        report["servers"][1]["lagging"]
            .as_str()
            .is_some_and(|why| why.starts_with("no answer")),
        "{report}"
    );
    assert_eq!(central.sb.serial(central.sb.primary()), serial);

    // Back up, it catches up by itself; publishing the same again succeeds without a reload.
    central.sb.start_server("secondary");
    let reloads = central.reloads();
    let run = central.publish_with(&short, &[&first, &second], &[]);
    run.expect_code(0);
    assert_eq!(run.json()["changed"], false);
    assert_eq!(serial_of(&run.json()), serial);
    assert_eq!(central.reloads(), reloads);
    central.assert_served(&[before.as_slice(), &after].concat());
}

#[test]
fn zone_file_no_server_loaded_names_their_serials_then_is_reloaded() {
    let central = Central::start();
    let before = [Record::new("host6.example.test")];
    let served =
        serial_of(&central.publish_ok("first.json", &[document("host6.example.test", &before)]));

    // A reload command that succeeds without reloading: the file has the new serial, the
    // servers keep serving the old one, and the error line says so for each.
    let noop = central.write_config(
        "noop.yaml",
        &central.options().reload(&["true"]).timeout("3s"),
    );
    let after = [Record::new("host7.example.test")];
    let tokens = central.tokens("second.json", &document("host7.example.test", &after));
    let run = central.publish_with(&noop, &[&tokens], &[]);
    run.expect_code(3);
    let line = error_line(&run);
    for server in [central.sb.primary(), central.sb.secondary()] {
        assert!(
            line.contains(&format!("{server} serves serial {served}")),
            "{line}"
        );
    }
    let written = serial_of(&run.json());
    assert!(written > served);

    // The next run finds the file current but not loaded anywhere: it reloads, and succeeds.
    let reloads = central.reloads();
    let run = central.publish(&[&tokens]);
    run.expect_code(0);
    assert_eq!(serial_of(&run.json()), written);
    assert_eq!(run.json()["changed"], true);
    assert_eq!(central.reloads(), reloads + 1);
    central.assert_served(&[before.as_slice(), &after].concat());
}

#[test]
fn hostile_documents_are_refused_and_change_nothing() {
    let central = Central::start();
    let allow = "allow: {host1.example.test: [host1.example.test, www1.example.test], \
                 host2.example.test: [host2.example.test]}";
    let strict = central.write_config("strict.yaml", &central.options().extra(allow));
    let good = [Record::new("host1.example.test")];
    let tokens = central.tokens("good.json", &document("host1.example.test", &good));
    // With `allow`, a document counts only with the identity its transport gives it.
    let vouched = |host: &str, path: &Path| PathBuf::from(format!("{host}={}", path.display()));
    central
        .publish_with(&strict, &[&vouched("host1.example.test", &tokens)], &[])
        .expect_code(0);
    let state = snapshot(&central.primary_dir());
    let serials = central.serials();
    let reloads = central.reloads();

    let host = "host1.example.test";
    let with = |change: &dyn Fn(&mut Record)| {
        let mut record = Record::new(host);
        change(&mut record);
        document(host, &[Record::new("www1.example.test"), record])
    };
    let value = fresh_value();
    // (what, document, what the error line must name besides the host); each goes in as
    // host1's (`--tokens host1.example.test=FILE`) unless it says otherwise.
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "a name outside the zone",
            with(&|r| r.name = "host1.example.test.evil.test.".to_owned()).to_string(),
            "outside the signing zone",
        ),
        (
            "a name in the zone but not the identifier's",
            with(&|r| r.name = "www1.example.test.acme.test.".to_owned()).to_string(),
            "is not where identifier",
        ),
        (
            "a value with a quote",
            with(&|r| r.value = format!("{}\"", &value[..42])).to_string(),
            "43 base64url",
        ),
        (
            "a value with a newline",
            with(&|r| r.value = format!("{}\n$INCLUDE /etc/passwd", &value[..42])).to_string(),
            "43 base64url",
        ),
        (
            "a value of 44 characters",
            with(&|r| r.value = format!("{value}A")).to_string(),
            "43 base64url",
        ),
        (
            "an identifier not in allow",
            with(&|r| *r = Record::new("host9.example.test")).to_string(),
            "allow.host1.example.test",
        ),
        (
            "$INCLUDE as a name",
            with(&|r| r.name = "$INCLUDE /etc/passwd".to_owned()).to_string(),
            "not a DNS name",
        ),
        (
            "a control character in the name",
            with(&|r| r.name = "host1.example.test.acme.test.\u{7}".to_owned()).to_string(),
            "not a DNS name",
        ),
        (
            "a control character in the value",
            with(&|r| r.value = format!("{}\u{0}", &value[..42])).to_string(),
            "43 base64url",
        ),
        (
            "a host not in allow",
            json!({"host3.example.test":
                document("host3.example.test", &[Record::new("host3.example.test")])})
            .to_string(),
            "not listed in `allow`",
        ),
        // A good host beside a bad one is published, the bad one refused alone (exit 1):
        // security::a_refused_document_refuses_its_host_alone_and_the_others_are_published.
        (
            // host1 claims to be host2 to get host2's name: its transport says host1.
            "a host speaking for another",
            document("host2.example.test", &[Record::new("host2.example.test")]).to_string(),
            "came as host1.example.test's",
        ),
        (
            "a document with no identity but its own word",
            document("host1.example.test", &good).to_string(),
            "no identity the transport vouches for",
        ),
        (
            "malformed JSON",
            format!("{{\"version\": 1, \"host\": \"{host}\", \"records\": ["),
            "is not JSON",
        ),
    ];
    for (what, text, needle) in cases {
        let tokens = central.dir.join("hostile.json");
        std::fs::write(&tokens, &text).expect("write tokens");
        let source = match what {
            // Objects of host -> document carry their identities in their keys.
            "a host not in allow" => tokens.clone(),
            "a document with no identity but its own word" => tokens.clone(),
            _ => vouched(host, &tokens),
        };
        let run = central.publish_with(&strict, &[&source], &[]);
        assert_eq!(run.code, 2, "{what}: exit {}\n{}", run.code, run.stderr);
        assert!(run.stdout.is_empty(), "{what}: a report: {}", run.stdout);
        let line = error_line(&run);
        assert!(line.contains(needle), "{what}: {needle:?} not in {line}");
        if what == "malformed JSON" {
            assert!(line.contains("hostile.json"), "{what}: {line}");
        } else if what == "a host not in allow" {
            assert!(
                line.contains("host host3.example.test, record #0"),
                "{what}: {line}"
            );
        } else if what.starts_with("a host speaking") || what.starts_with("a document with") {
            assert!(line.contains("host1.example.test"), "{what}: {line}");
        } else {
            // The second record of host1's document is the bad one.
            assert!(
                line.contains(&format!("host {host}, record #1")),
                "{what}: {line}"
            );
        }
        assert!(
            snapshot(&central.primary_dir()) == state,
            "{what}: the primary's files changed"
        );
    }
    assert_eq!(central.serials(), serials);
    assert_eq!(central.reloads(), reloads);
    central.assert_served(&good);
}

#[test]
fn concurrent_publishes_for_different_hosts_both_land() {
    let central = Central::start();
    let host1 = [
        Record::new("host1.example.test"),
        Record::new("www1.example.test"),
    ];
    let host2 = [
        Record::new("host2.example.test"),
        Record::new("www2.example.test"),
    ];
    let first = central.tokens("host1.json", &document("host1.example.test", &host1));
    let second = central.tokens("host2.json", &document("host2.example.test", &host2));
    let start = std::sync::Barrier::new(2);
    let runs: Vec<Run> = std::thread::scope(|scope| {
        let handles: Vec<_> = [&first, &second]
            .map(|tokens| {
                let (central, start) = (&central, &start);
                scope.spawn(move || {
                    start.wait();
                    central.publish(&[tokens])
                })
            })
            .into_iter()
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().expect("publish thread"))
            .collect()
    });
    let serials: Vec<u32> = runs
        .iter()
        .map(|run| serial_of(&run.expect_code(0).json()))
        .collect();
    assert_ne!(serials[0], serials[1], "both publishes changed the zone");
    let last = serials.iter().copied().max().expect("two serials");
    assert_eq!(central.serials(), [last, last]);
    central.assert_served(&[host1.as_slice(), &host2].concat());
}

#[test]
fn three_publishes_within_one_second_get_increasing_serials() {
    let central = Central::start();
    let mut serials = Vec::new();
    let started = Instant::now();
    let mut latest = Vec::new();
    for round in 0..3 {
        latest = vec![Record::new("host8.example.test")];
        let report = central.publish_ok(
            &format!("round{round}.json"),
            &[document("host8.example.test", &latest)],
        );
        serials.push(serial_of(&report));
    }
    eprintln!("three publishes took {:?}", started.elapsed());
    assert!(
        serials.windows(2).all(|pair| pair[1] > pair[0]),
        "serials not strictly increasing: {serials:?}"
    );
    assert_eq!(central.serials(), [serials[2], serials[2]]);
    central.assert_served(&latest);
}

#[test]
fn failed_reload_restores_the_previous_zone() {
    let central = Central::start();
    let served = [Record::new("host1.example.test")];
    central.publish_ok("first.json", &[document("host1.example.test", &served)]);
    let state = central.zone_and_ledger();
    let serials = central.serials();
    let rejected = [Record::new("host2.example.test")];
    let tokens = central.tokens("second.json", &document("host2.example.test", &rejected));
    let rndc = central.sb.rndc().display().to_string();
    for reload in [vec!["false"], vec![rndc.as_str(), "reload", "wrong.test"]] {
        let bad = central.write_config("bad-reload.yaml", &central.options().reload(&reload));
        let run = central.publish_with(&bad, &[&tokens], &[]);
        // The server refused or is down: the run failed as a whole, the old zone is back.
        run.expect_code(4);
        assert!(
            run.stdout.is_empty(),
            "a report with exit 4: {}",
            run.stdout
        );
        let line = error_line(&run);
        assert!(
            line.contains(&format!("reload command `{}` failed", reload.join(" ")))
                && line.contains("put back")
                && line.contains("`reload` in the zone config"),
            "{line}"
        );
        assert!(
            central.zone_and_ledger() == state,
            "{reload:?}: zone or ledger changed"
        );
        assert_eq!(central.serials(), serials, "{reload:?}");
        central.assert_served(&served);
        central.assert_gone(&rejected);
    }
    // With the reload fixed, the same documents go through.
    let run = central.publish(&[&tokens]);
    run.expect_code(0);
    central.assert_served(&[served.as_slice(), &rejected].concat());
}

#[test]
fn same_records_twice_change_nothing() {
    let central = Central::start();
    let records = [
        Record::new("host1.example.test"),
        Record::new("*.host1.example.test"),
    ];
    let documents = [document("host1.example.test", &records)];
    let first = central.publish_ok("first.json", &documents);
    let zone = std::fs::read(central.sb.signing_zone_file()).expect("zone file");
    assert_eq!(central.reloads(), 1);

    let second = central.publish_ok("second.json", &documents);
    assert_eq!(second["changed"], false);
    assert_eq!(serial_of(&second), serial_of(&first));
    assert_eq!(central.reloads(), 1, "reloaded although nothing changed");
    assert_eq!(
        std::fs::read(central.sb.signing_zone_file()).expect("zone file"),
        zone
    );
    assert_eq!(central.serials(), [serial_of(&first); 2]);
    central.assert_served(&records);
}

#[test]
fn empty_document_removes_only_that_hosts_records() {
    let central = Central::start();
    let host1 = [
        Record::new("host1.example.test"),
        Record::new("www1.example.test"),
    ];
    let host2 = [Record::new("host2.example.test")];
    central.publish_ok(
        "both.json",
        &[
            document("host1.example.test", &host1),
            document("host2.example.test", &host2),
        ],
    );
    central.assert_served(&[host1.as_slice(), &host2].concat());

    let report = central.publish_ok("cleanup1.json", &[document("host1.example.test", &[])]);
    assert_eq!(
        (report["changed"].clone(), report["hosts"].clone()),
        (json!(true), json!(1))
    );
    central.assert_gone(&host1);
    central.assert_served(&host2);

    let report = central.publish_ok("cleanup2.json", &[document("host2.example.test", &[])]);
    assert_eq!(
        (report["records"].clone(), report["hosts"].clone()),
        (json!(0), json!(0))
    );
    central.assert_gone(&host2);
}

#[test]
fn absent_host_keeps_its_records_until_record_lifetime() {
    let central = Central::start();
    let lifetime = Duration::from_secs(3);
    let config = central.write_config(
        "lifetime.yaml",
        &central
            .options()
            .extra(&format!("record_lifetime: {}s", lifetime.as_secs())),
    );
    let host1 = [Record::new("host1.example.test")];
    let host2 = [Record::new("host2.example.test")];
    let first = central.tokens("host1.json", &document("host1.example.test", &host1));
    let second = central.tokens("host2.json", &document("host2.example.test", &host2));
    let published = Instant::now();
    central.publish_with(&config, &[&first], &[]).expect_code(0);
    let run = central.publish_with(&config, &[&second], &[]);
    let report = run.expect_code(0).json();
    assert_eq!(report["hosts"], 2);
    assert_eq!(report["expired"], json!([]));
    central.assert_served(&[host1.as_slice(), &host2].concat());

    // Lifetimes count in whole seconds from the publish that last carried the host.
    std::thread::sleep((lifetime + Duration::from_millis(200)).saturating_sub(published.elapsed()));
    let run = central.publish_with(&config, &[&second], &[]);
    let report = run.expect_code(0).json();
    assert_eq!(report["expired"], json!(["host1.example.test"]));
    assert_eq!(
        (report["changed"].clone(), report["hosts"].clone()),
        (json!(true), json!(1))
    );
    central.assert_gone(&host1);
    central.assert_served(&host2);
}

#[test]
fn tokens_from_stdin_several_files_and_hostvars() {
    let central = Central::start();
    let host1 = [Record::new("host1.example.test")];
    let host2 = [Record::new("host2.example.test")];
    let host3 = [Record::new("host3.example.test")];
    let host4 = [Record::new("host4.example.test")];
    let host5 = [Record::new("host5.example.test")];
    let stdin = document("host1.example.test", &host1).to_string();
    let file2 = central.tokens("host2.json", &document("host2.example.test", &host2));
    // What Ansible's hostvars gives: an object of inventory name -> document.
    let hostvars = central.tokens(
        "hostvars.json",
        &json!({
            "host3.example.test": document("host3.example.test", &host3),
            "host4.example.test": document("host4.example.test", &host4),
        }),
    );
    let file5 = central.tokens(
        "host5.json",
        &json!([document("host5.example.test", &host5)]),
    );
    // The same file twice holds the same documents: accepted.
    let args = publish_args(
        &central.config,
        &[Path::new("-"), &file2, &hostvars, &file5, &file2],
        &[],
    );
    let run = fleetcert_with_stdin(args, Some(stdin.as_bytes()));
    let report = run.expect_code(0).json();
    assert_eq!(
        (report["records"].clone(), report["hosts"].clone()),
        (json!(5), json!(5))
    );
    central.assert_served(&[host1.as_slice(), &host2, &host3, &host4, &host5].concat());

    // Standard input can be read once only.
    let args = publish_args(&central.config, &[Path::new("-"), Path::new("-")], &[]);
    let run = fleetcert_with_stdin(args, Some(stdin.as_bytes()));
    run.expect_code(2);
    assert!(error_line(&run).contains("--tokens -"), "{}", run.stderr);
}

#[test]
fn dry_run_changes_nothing() {
    let central = Central::start();
    let served = [Record::new("host1.example.test")];
    let report = central.publish_ok("first.json", &[document("host1.example.test", &served)]);
    let state = snapshot(&central.primary_dir());
    let serial = serial_of(&report);
    let reloads = central.reloads();

    let new = [Record::new("host2.example.test")];
    let tokens = central.tokens("second.json", &document("host2.example.test", &new));
    let run = central.publish_with(&central.config, &[&tokens], &["--dry-run"]);
    let report = run.expect_code(0).json();
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["changed"], true);
    assert_eq!(report["records"], 2);
    assert!(serial_of(&report) > serial, "{report}");
    assert!(
        snapshot(&central.primary_dir()) == state,
        "the primary's files changed"
    );
    assert_eq!(central.reloads(), reloads);
    assert_eq!(central.serials(), [serial, serial]);
    central.assert_gone(&new);

    // Hostile input fails a dry run just the same.
    let hostile = central.tokens(
        "hostile.json",
        &json!({"version": 1, "host": "host2.example.test", "records": [
            {"name": "evil.test.", "value": fresh_value(), "cert": "main",
             "identifier": "host2.example.test"}]}),
    );
    let run = central.publish_with(&central.config, &[&hostile], &["--dry-run"]);
    run.expect_code(2);
    assert!(
        error_line(&run).contains("host2.example.test, record #0"),
        "{}",
        run.stderr
    );
}

#[test]
fn nameservers_inside_the_zone_are_served_with_their_glue() {
    let central = Central::start();
    let in_zone = central
        .options()
        .nameservers(&["ns1.acme.test.", "ns2.acme.test."]);
    let records = [Record::new("host1.example.test")];
    let tokens = central.tokens("tokens.json", &document("host1.example.test", &records));

    // Without addresses BIND would refuse the zone: the config is refused first.
    let bare = central.write_config("bare.yaml", &in_zone);
    let state = central.zone_and_ledger();
    let run = central.publish_with(&bare, &[&tokens], &[]);
    run.expect_code(2);
    let line = error_line(&run);
    assert!(
        line.contains("`nameservers`") && line.contains("glue"),
        "{line}"
    );
    assert!(central.zone_and_ledger() == state, "the zone changed");

    let glued = central.write_config(
        "glued.yaml",
        &in_zone.extra("glue: {ns1.acme.test.: [127.0.0.1], ns2.acme.test.: [127.0.0.1]}"),
    );
    central.publish_with(&glued, &[&tokens], &[]).expect_code(0);
    central.assert_served(&records);
    for server in [central.sb.primary(), central.sb.secondary()] {
        assert_eq!(
            central.sb.dig_authoritative(server, "ns2.acme.test.", "A"),
            Ok(vec!["127.0.0.1".to_owned()]),
            "glue at {server}"
        );
    }
}

#[test]
fn more_values_at_one_name_than_bind_loads_are_refused_before_the_zone_changes() {
    let central = Central::start();
    let apex = format!("{SIGNING_ZONE}.");
    // Shared mode: every host's value goes to the apex, one value per host here.
    let shared = |host: usize| {
        let mut record = Record::new(&format!("host{host}.example.test"));
        record.name.clone_from(&apex);
        document(&format!("host{host}.example.test"), &[record])
    };
    let options = central.options().extra("challenge_records: shared");
    let config = central.write_config("shared.yaml", &options);
    let hundred: Vec<Value> = (1..=100).map(shared).collect();
    let tokens = central.tokens("hundred.json", &Value::Array(hundred));
    central
        .publish_with(&config, &[&tokens], &[])
        .expect_code(0);
    for server in [central.sb.primary(), central.sb.secondary()] {
        let values = central
            .sb
            .dig_authoritative(server, &apex, "TXT")
            .unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(values.len(), 100, "TXT values at the apex from {server}");
    }

    // The 101st value: BIND's default max-records-per-type, so refused before any write.
    let before = central.zone_and_ledger();
    let one_more = central.tokens("one-more.json", &shared(101));
    let run = central.publish_with(&config, &[&one_more], &[]);
    run.expect_code(2);
    let line = error_line(&run);
    assert!(
        line.contains(&format!("101 TXT values at {apex}"))
            && line.contains("max_values_per_name (100)")
            && line.contains("max-records-per-type"),
        "{line}"
    );
    assert_eq!(central.zone_and_ledger(), before, "zone or ledger changed");

    // Why the default is 100: with the limit raised, BIND refuses to load the zone and keeps
    // serving the old one, so the publish can only time out.
    let raised = central.write_config(
        "raised.yaml",
        &options.extra("max_values_per_name: 101").timeout("3s"),
    );
    let served = central.serials();
    let run = central.publish_with(&raised, &[&one_more], &[]);
    run.expect_code(3);
    assert_eq!(
        central.serials(),
        served,
        "BIND loaded 101 values at one name"
    );
    let log =
        std::fs::read_to_string(central.sb.dir().join("logs/primary.log")).expect("primary log");
    assert!(log.contains("too many records"), "BIND said nothing of it");
}

// --- the ledger and the zone file ----------------------------------------------------------------

/// The ledger is saved before the zone changes: when it cannot be saved (here: immutable, as a
/// full disk would refuse it), the zone stays as it was, so the servers never serve records
/// the ledger does not know (and the next publish would drop). When the zone write fails
/// (a failing reload), the ledger goes back with the zone, byte for byte.
#[test]
fn ledger_is_saved_before_the_zone_changes_and_put_back_when_the_write_fails() {
    let sb = sandbox().start();
    let zone = Zone::new(&sb, "");
    let first = token_document("host1.example.test", &["host1.example.test"]);
    zone.publish_document("host1.example.test", &first)
        .expect_code(0);
    let zone_file = sb.signing_zone_file();
    let mut ledger = zone_file.clone().into_os_string();
    ledger.push(".ledger.json");
    let ledger = PathBuf::from(ledger);
    let before = [
        std::fs::read(&zone_file).expect("zone"),
        std::fs::read(&ledger).expect("ledger"),
    ];
    let serial = sb.serial(sb.primary());

    let second = token_document("host2.example.test", &["host2.example.test"]);
    {
        let _frozen = Immutable::new(&ledger);
        let run = zone.publish_document("host2.example.test", &second);
        assert_eq!(
            std::fs::read(&zone_file).expect("zone"),
            before[0],
            "the zone changed"
        );
        assert_eq!(
            sb.serial(sb.primary()),
            serial,
            "the primary serves another zone"
        );
        assert!(txt_values(&sb, sb.primary(), "host2.example.test.acme.test.").is_empty());
        run.expect_code(4);
        assert!(
            last_stderr_line(&run).contains("ledger.json"),
            "{}",
            run.stderr
        );
    }

    let failing = Zone::with(&sb, &zone_file, &["false"], "");
    let run = failing.publish_document("host2.example.test", &second);
    assert_eq!(
        std::fs::read(&zone_file).expect("zone"),
        before[0],
        "the zone changed"
    );
    assert_eq!(
        std::fs::read(&ledger).expect("ledger"),
        before[1],
        "the ledger changed"
    );
    run.expect_code(4);

    // Nothing was lost: the next publish serves both hosts' records.
    zone.publish_document("host2.example.test", &second)
        .expect_code(0);
    for (document, name) in [(&first, "host1"), (&second, "host2")] {
        let served = txt_values(
            &sb,
            sb.secondary(),
            &format!("{name}.example.test.acme.test."),
        );
        assert_eq!(served, values(document), "{name}");
    }
}

// --- reload commands -----------------------------------------------------------------------------

/// A reload that succeeds but leaves a child holding its output (a script that starts
/// something in the background) is a success: the zone stays published and served.
#[test]
fn reload_that_leaves_a_child_holding_its_output_succeeds() {
    let sb = shared_sandbox();
    let scratch = tempfile::tempdir().expect("tempdir");
    let reload = script(
        &scratch.path().join("reload.sh"),
        &format!(
            "{} \"$@\" || exit 1\nsleep 300 &\necho reloaded",
            sb.rndc().display()
        ),
    );
    let zone = Zone::with(
        &sb,
        &sb.signing_zone_file(),
        &[&reload, "reload", "acme.test"],
        "",
    );
    let host = format!("host{}.example.test", next_host_number());
    let doc = token_document(&host, &[&host]);
    let started = Instant::now();
    let run = zone.publish_document(&host, &doc);
    run.expect_code(0);
    // The child sleeps 300 s: a publish that waited for it would take that long; one that
    // did not takes seconds, or a minute or two on a loaded machine.
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(200),
        "publish waited for the child: {took:?}"
    );
    assert_eq!(
        txt_values(&sb, sb.secondary(), &format!("{host}.acme.test.")),
        values(&doc)
    );
}

/// A reload that hangs is killed after its time limit together with everything it started;
/// the previous zone goes back.
#[test]
fn hung_reload_is_killed_with_what_it_started() {
    let sb = sandbox().start();
    let zone = Zone::new(&sb, "");
    let scratch = zone.dir().to_path_buf();
    let pid_file = scratch.join("grandchild.pid");
    let calls = scratch.join("calls");
    // The first call hangs with a child of its own; the second (the restore) reloads.
    let reload = script(
        &scratch.join("hang.sh"),
        &format!(
            "echo x >> {calls}\nif [ $(wc -l < {calls}) -eq 1 ]; then\n  sleep 600 &\n  echo $! > {pid}\n  wait\nfi\nexec {rndc} \"$@\"",
            calls = calls.display(),
            pid = pid_file.display(),
            rndc = sb.rndc().display()
        ),
    );
    let hanging = Zone::with(
        &sb,
        &sb.signing_zone_file(),
        &[&reload, "reload", "acme.test"],
        "",
    );
    let before = std::fs::read(sb.signing_zone_file()).expect("zone");
    let run = hanging.publish_document(
        "host1.example.test",
        &token_document("host1.example.test", &["host1.example.test"]),
    );
    let grandchild = std::fs::read_to_string(&pid_file).expect("pid file");
    let grandchild = grandchild.trim();
    let survived = alive(grandchild);
    if survived {
        let _ = Command::new("kill").args(["-9", grandchild]).status();
    }
    assert!(
        !survived,
        "the reload's child {grandchild} survived the kill"
    );
    run.expect_code(4);
    assert!(
        last_stderr_line(&run).contains("killed it and what it started"),
        "{}",
        run.stderr
    );
    assert_eq!(std::fs::read(sb.signing_zone_file()).expect("zone"), before);
}

/// With the primary down, the failed reload's line names the server that did not answer
/// and asks whether the primary runs, instead of telling the operator to fix `reload`.
#[test]
fn primary_down_is_named_rather_than_the_reload_command() {
    let sb = sandbox().start();
    let zone = Zone::new(&sb, "");
    zone.publish_document(
        "host1.example.test",
        &token_document("host1.example.test", &["host1.example.test"]),
    )
    .expect_code(0);
    let primary = sb.primary().to_owned();
    sb.stop_server("primary");
    let run = zone.publish_document(
        "host2.example.test",
        &token_document("host2.example.test", &["host2.example.test"]),
    );
    let line = last_stderr_line(&run);
    assert!(
        line.contains(&format!("{primary} did not answer"))
            && line.contains("is the primary running"),
        "{line}"
    );
    assert!(
        !line.contains("fix `reload` in the zone config and"),
        "{line}"
    );
    run.expect_code(4);
}

/// In per-name mode, a name crowded by many hosts' orders gets advice that fits per-name
/// mode, not "use per-name".
#[test]
fn crowded_name_in_per_name_mode_gets_per_name_advice() {
    let sb = shared_sandbox();
    let zone = Zone::new(&sb, "");
    let documents: Vec<Value> = (1..=101)
        .map(|n| token_document(&format!("crowd{n}.example.test"), &["crowded.example.test"]))
        .collect();
    let tokens = zone.dir().join("crowd.json");
    std::fs::write(&tokens, Value::Array(documents).to_string()).expect("write");
    let run = fleetcert([
        "publish",
        "--config",
        zone.config().to_str().expect("utf-8"),
        "--tokens",
        tokens.to_str().expect("utf-8"),
    ]);
    run.expect_code(2);
    let line = last_stderr_line(&run);
    assert!(
        line.contains("101 TXT values at crowded.example.test.acme.test."),
        "{line}"
    );
    assert!(
        line.contains("publish fewer orders for that name"),
        "{line}"
    );
    assert!(!line.contains("use challenge_records: per-name"), "{line}");
}
