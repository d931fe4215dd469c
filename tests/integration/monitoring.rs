//! Monitoring against real servers: the metrics file read back through a real node_exporter
//! over HTTP, `promtool check metrics` on every file a command writes, the probe against a
//! real nginx serving the issued certificate, `fleetcert check`'s exit codes and line, and the
//! shipped alert rules under `promtool test rules` on series taken from these runs.
//!
//! Each test has its own sandbox (Pebble, BIND, Unbound), its own node_exporter on the host's
//! textfile directory, and, for the probe, its own nginx (docs/dev/sandbox.md).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::support::config::ZoneConfig;
use crate::support::fake_ca::{FakeCa, ari_id, hold, now, parse_time};
use crate::support::faults::script;
use crate::support::fixture::{Host, cert, sandbox};
use crate::support::services::{
    Leaf, Nginx, NodeExporter, Sample, parse_samples, promtool_check_metrics, promtool_test_rules,
};
use crate::support::util::{Run, fleetcert, names_in, run_ok};

const NAME: &str = "host1.example.test";
const HOST: &str = "host1.example.test";

/// The shipped alert rules.
fn rules_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("monitoring/fleetcert.rules.yml")
}

/// A host whose config writes metrics into a textfile directory that a real node_exporter
/// reads, and the zone config of its sandbox writing into the same directory (as on a bastion
/// that is also a host).
struct Monitored<'s> {
    host: Host<'s>,
    textfiles: PathBuf,
    zone_config: PathBuf,
    exporter: NodeExporter,
}

impl<'s> Monitored<'s> {
    fn new(sb: &'s crate::support::sandbox::Sandbox) -> Self {
        Self::with_host(Host::new(sb, &[]))
    }

    /// `host` monitored (a host whose CA is a fake in front of Pebble, say).
    fn with_host(host: Host<'s>) -> Self {
        let textfiles = host.dir.path().join("textfiles");
        std::fs::create_dir(&textfiles).expect("create the textfile directory");
        let zone_config = host.dir.path().join("zone.yaml");
        let exporter = NodeExporter::start(&textfiles);
        let monitored = Self {
            host,
            textfiles,
            zone_config,
            exporter,
        };
        monitored.write_zone_config("30s");
        monitored
    }

    /// A monitored host whose `main` is issued, served by nginx, and probed there: the
    /// host, the nginx and its address (the probe's target).
    fn probed(sb: &'s crate::support::sandbox::Sandbox) -> (Self, Nginx, String) {
        let monitored = Self::new(sb);
        monitored.configure(Value::Null, &[cert_line("main", &[NAME], &[])]);
        monitored.host.issue();
        let nginx = Nginx::start(
            &monitored.host.file("main", "fullchain.pem"),
            &monitored.host.file("main", "privkey.pem"),
            NAME,
        );
        let target = nginx.address().to_owned();
        monitored.configure(Value::Null, &[cert_line("main", &[NAME], &[&target])]);
        (monitored, nginx, target)
    }

    /// The host config with metrics, the top-level keys `extra` (a mapping, or null), and
    /// `certs` (see [`cert_line`]).
    fn configure(&self, extra: Value, certs: &[(String, Value)]) {
        let config = self
            .host
            .host_config()
            .set("metrics", json!({"textfile_dir": self.textfiles}))
            .merge(extra);
        let config = certs
            .iter()
            .fold(config, |config, (name, entry)| config.set_cert(name, entry));
        self.host.write_config(&config);
    }

    /// A zone config for the sandbox's signing zone, publishing to both BIND servers.
    fn write_zone_config(&self, timeout: &str) {
        ZoneConfig::rndc(self.host.sb)
            .set("timeout", timeout)
            .set(
                "metrics",
                serde_json::json!({"textfile_dir": self.textfiles}),
            )
            .write(&self.zone_config);
    }

    /// `publish` of the host's token document, as the daily playbook hands it over.
    fn publish(&self, document: &Value) -> Run {
        let tokens = self.host.dir.path().join("tokens.json");
        std::fs::write(&tokens, document.to_string()).expect("write tokens");
        let mut spoken = std::ffi::OsString::from(format!("{HOST}="));
        spoken.push(&tokens);
        let run = fleetcert([
            "publish".into(),
            "--config".into(),
            self.zone_config.clone().into_os_string(),
            "--tokens".into(),
            spoken,
        ]);
        self.assert_file_is_good("publish");
        run
    }

    /// A host command, then the checks every metrics file must pass.
    fn run(&self, command: &str, more: &[&str]) -> Run {
        let run = self.host.run(command, more);
        self.assert_file_is_good(command);
        run
    }

    fn file(&self) -> PathBuf {
        self.textfiles.join("fleetcert.prom")
    }

    /// promtool accepts the file; node_exporter read it without an error; it is 0644 and
    /// alone in the directory (no temporary file left, the lock is hidden and not `*.prom`).
    #[track_caller]
    fn assert_file_is_good(&self, after: &str) {
        if let Err(err) = promtool_check_metrics(&self.file()) {
            panic!(
                "promtool refuses the file written by {after}: {err}\n{}",
                std::fs::read_to_string(self.file()).unwrap_or_default()
            );
        }
        assert_eq!(
            self.exporter.textfile_scrape_error(),
            0.0,
            "node_exporter cannot read the file written by {after}"
        );
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(self.file())
            .expect("fleetcert.prom")
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o644, "after {after}");
        assert_eq!(
            names_in(&self.textfiles),
            [".fleetcert.prom.lock", "fleetcert.prom"],
            "after {after}"
        );
    }

    /// `check ARGS`, which must exit `code` with one line starting with `start`; the line.
    #[track_caller]
    fn check(&self, args: &[&str], code: i32, start: &str) -> String {
        plugin_line(&self.run("check", args), code, start)
    }

    /// One value through node_exporter's `/metrics` over HTTP.
    fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.exporter.metric(name, labels)
    }

    fn exit_code(&self, command: &str) -> Option<f64> {
        self.metric("fleetcert_command_exit_code", &[("command", command)])
    }

    fn expiry(&self, cert: &str) -> Option<f64> {
        self.metric(
            "fleetcert_certificate_expiry_timestamp_seconds",
            &[("host", HOST), ("cert", cert)],
        )
    }

    /// The series of one scrape whose names start with `fleetcert_`.
    fn scrape(&self) -> Vec<Sample> {
        parse_samples(&self.exporter.scrape())
            .into_iter()
            .filter(|sample| sample.name.starts_with("fleetcert_"))
            .collect()
    }
}

/// The one line a plugin run printed, which must start with `start`, after exit `code`.
#[track_caller]
fn plugin_line(run: &Run, code: i32, start: &str) -> String {
    run.expect_code(code);
    let line = run.stdout.trim_end();
    assert!(
        line.starts_with(start) && !line.contains('\n'),
        "wanted one line starting with {start:?}:\n{}",
        run.stdout
    );
    line.to_owned()
}

/// notAfter of the first certificate in `pem`, in seconds since the epoch (openssl + date).
fn not_after(pem: &Path) -> f64 {
    let text = run_ok(
        Command::new("openssl")
            .args(["x509", "-noout", "-enddate", "-in"])
            .arg(pem),
    );
    let date = text.trim().trim_start_matches("notAfter=");
    let seconds = run_ok(Command::new("date").args(["-u", "+%s", "-d", date]));
    seconds.trim().parse().expect("date +%s prints a number")
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
}

/// One certificate with names and probe targets, in the map form.
fn cert_line(cert: &str, names: &[&str], probe: &[&str]) -> (String, Value) {
    (cert.to_owned(), json!({"names": names, "probe": probe}))
}

// --- promtool test rules on series from the runs -----------------------------------------

/// One `alert_rule_test` case: at `eval_time`, `alert` fires exactly with `alerts` (each its
/// labels and annotations).
struct Case {
    eval_time: &'static str,
    alert: &'static str,
    alerts: Vec<(BTreeMap<String, String>, BTreeMap<String, String>)>,
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The labels Prometheus adds when it scrapes node_exporter.
const SCRAPE_LABELS: [(&str, &str); 2] = [("instance", "host1:9100"), ("job", "node")];

/// The committed rules test: the same kind of scenarios, series captured from these tests.
fn fixture_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("monitoring/fleetcert.rules.test.yml")
}

/// One test group of a `promtool test rules` file for the shipped rules, named `scenario`,
/// whose input series are `samples` (one scrape), constant for three days. Timestamps are
/// shifted by `now`, the moment of the scrape: promtool's clock starts at 0, and `expiry -
/// time()` must stay what it was.
fn rules_group(scenario: &str, samples: &[Sample], now: f64, cases: &[Case]) -> String {
    let mut text = format!("  # scenario: {scenario}\n  - interval: 1m\n    input_series:\n");
    for sample in samples {
        let value = if sample.name.ends_with("_timestamp_seconds") {
            sample.value - now
        } else {
            sample.value
        };
        let mut labels = sample.labels.clone();
        for (key, value) in SCRAPE_LABELS {
            labels.insert(key.to_owned(), value.to_owned());
        }
        let labels: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}={}", serde_json::to_string(v).expect("string")))
            .collect();
        let series = format!("{}{{{}}}", sample.name, labels.join(","));
        let _ = writeln!(
            text,
            "      - series: {}\n        values: '{value}+0x4320'",
            serde_json::to_string(&series).expect("string")
        );
    }
    text.push_str("    alert_rule_test:\n");
    for case in cases {
        let _ = writeln!(
            text,
            "      - eval_time: {}\n        alertname: {}\n        exp_alerts:{}",
            case.eval_time,
            case.alert,
            if case.alerts.is_empty() { " []" } else { "" }
        );
        for (labels, annotations) in &case.alerts {
            let json = |m: &BTreeMap<String, String>| serde_json::to_string(m).expect("map");
            let _ = writeln!(
                text,
                "          - exp_labels: {}\n            exp_annotations: {}",
                json(labels),
                json(annotations)
            );
        }
    }
    text
}

/// Runs the shipped rules on `samples` with `cases` (see [`rules_group`]) and panics with
/// promtool's report when a case fails; then checks that the committed rules test has a
/// scenario of this name with exactly these series (names and label names: the values are
/// that run's), so it cannot drift away from what fleetcert writes.
#[track_caller]
fn assert_rules(dir: &Path, scenario: &str, samples: &[Sample], now: f64, cases: &[Case]) {
    let group = rules_group(scenario, samples, now, cases);
    let file = dir.join(format!("{scenario}.rules_test.yml"));
    let text = format!(
        "rule_files: [{}]\nevaluation_interval: 1m\ntests:\n{group}",
        rules_file().display()
    );
    std::fs::write(&file, text).expect("write the rules test");
    if let Err(report) = promtool_test_rules(&file) {
        panic!("promtool test rules {}: {report}", file.display());
    }
    // To capture the committed scenarios again: set this to a directory, run these tests,
    // and put the groups under the header of monitoring/fleetcert.rules.test.yml.
    if let Some(capture) = std::env::var_os("FLEETCERT_CAPTURE_RULES_TESTS") {
        let out = Path::new(&capture).join(format!("{scenario}.yml"));
        std::fs::write(&out, &group).expect("write the captured scenario");
        return;
    }
    let fixture = std::fs::read_to_string(fixture_file()).expect("read the committed rules test");
    let committed = fixture
        .split("# scenario: ")
        .find(|part| part.starts_with(&format!("{scenario}\n")))
        .unwrap_or_else(|| panic!("{} has no scenario {scenario}", fixture_file().display()));
    let shape = |series: &mut dyn Iterator<Item = Sample>| -> std::collections::BTreeSet<String> {
        series
            .map(|sample| {
                let keys: Vec<&str> = sample
                    .labels
                    .keys()
                    .map(String::as_str)
                    .filter(|key| !["instance", "job"].contains(key))
                    .collect();
                format!("{}{{{}}}", sample.name, keys.join(","))
            })
            .collect()
    };
    let committed_series = committed.lines().filter_map(|line| {
        let quoted = line.trim().strip_prefix("- series: ")?;
        let series: String = serde_json::from_str(quoted).ok()?;
        parse_samples(&format!("{series} 0")).into_iter().next()
    });
    assert_eq!(
        shape(&mut committed_series.collect::<Vec<_>>().into_iter()),
        shape(&mut samples.iter().cloned()),
        "the committed scenario {scenario} no longer has the series a run writes: capture it again"
    );
}

/// The labels of an alert on one series of `samples`: its own, the scrape's, the rule's.
fn alert_labels(extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut labels = map(&SCRAPE_LABELS);
    labels.extend(map(extra));
    labels
}

// --- the tests ------------------------------------------------------------------------------

#[test]
fn a_daily_run_and_its_failures_are_visible_through_node_exporter() {
    let sb = sandbox().start();
    let monitored = Monitored::new(&sb);
    monitored.configure(Value::Null, &[cert_line("main", &[NAME], &[])]);

    // request -> publish -> finalize, each rewriting the one file.
    let document = monitored.run("request", &[]).expect_code(0).json();
    assert_eq!(monitored.exit_code("request"), Some(0.0));
    let due = |reason| {
        monitored.metric(
            "fleetcert_certificate_due",
            &[("cert", "main"), ("reason", reason)],
        )
    };
    assert_eq!(due("missing"), Some(1.0), "{}", monitored.exporter.scrape());
    let pending = || monitored.metric("fleetcert_certificate_pending", &[("cert", "main")]);
    assert_eq!(pending(), Some(1.0));
    assert_eq!(monitored.expiry("main"), None);

    let report = monitored.publish(&document).expect_code(0).json();
    let serial = report["serial"].as_f64().expect("serial");
    assert_eq!(
        monitored.metric("fleetcert_publish_serial", &[("zone", "acme.test")]),
        Some(serial)
    );
    assert_eq!(
        monitored.metric("fleetcert_publish_records", &[("zone", "acme.test")]),
        Some(1.0)
    );
    assert_eq!(
        monitored.metric("fleetcert_publish_hosts", &[("zone", "acme.test")]),
        Some(1.0)
    );
    for server in [sb.primary(), sb.secondary()] {
        let labels = [("zone", "acme.test"), ("server", server)];
        let seconds = monitored
            .metric("fleetcert_publish_server_propagation_seconds", &labels)
            .expect("propagation seconds");
        let reported = report["servers"]
            .as_array()
            .expect("servers")
            .iter()
            .find(|s| s["server"] == server)
            .and_then(|s| s["seconds"].as_f64())
            .expect("the report's seconds");
        assert!((seconds - reported).abs() < 1e-9, "{seconds} vs {reported}");
        assert_eq!(
            monitored.metric("fleetcert_publish_server_lagging", &labels),
            Some(0.0)
        );
    }
    // The host's series outlive a publish, which writes only its zone's.
    assert_eq!(due("missing"), Some(1.0));
    assert_eq!(
        monitored.metric(
            "fleetcert_command_exit_code",
            &[("command", "publish"), ("zone", "acme.test")]
        ),
        Some(0.0)
    );

    monitored.run("finalize", &[]).expect_code(0);
    let fullchain = monitored.host.file("main", "fullchain.pem");
    let expiry = not_after(&fullchain);
    assert_eq!(monitored.expiry("main"), Some(expiry));
    assert_eq!(due("none"), Some(0.0));
    assert_eq!(pending(), Some(0.0));
    assert_eq!(monitored.exit_code("finalize"), Some(0.0));
    assert_eq!(monitored.exit_code("request"), Some(0.0));
    let leaf = Leaf::of_file(&monitored.host.file("main", "cert.pem"));
    assert_eq!(
        monitored.metric(
            "fleetcert_certificate_info",
            &[
                ("cert", "main"),
                ("serial", &leaf.serial),
                ("key_type", "ecdsa-p384"),
                ("name", NAME)
            ]
        ),
        Some(1.0),
        "{}",
        monitored.exporter.scrape()
    );
    let started = monitored
        .metric(
            "fleetcert_command_last_run_timestamp_seconds",
            &[("command", "finalize")],
        )
        .expect("last run");
    assert!((unix_now() - started).abs() < 120.0, "{started}");
    let healthy = monitored.scrape();
    let healthy_at = unix_now();

    // A renewal for a changed name whose validation fails: finalize exits 1, the failure is
    // in the file, and so is the old certificate's expiry. (A name this account never
    // validated: Pebble may reuse a valid authorization even at PEBBLE_AUTHZREUSE=0, and a
    // reused one would need no record to fail with.)
    monitored.configure(
        Value::Null,
        &[cert_line("main", &["host2.example.test"], &[])],
    );
    monitored.run("request", &[]).expect_code(0);
    assert_eq!(due("names_changed"), Some(1.0));
    assert_eq!(pending(), Some(1.0));
    sb.place_records(&[]);
    monitored.run("finalize", &[]).expect_code(1);
    assert_eq!(monitored.exit_code("finalize"), Some(1.0));
    assert_eq!(monitored.expiry("main"), Some(expiry));
    assert_eq!(not_after(&fullchain), expiry, "the old files stay");
    assert_eq!(due("names_changed"), Some(1.0));
    let failed = monitored.scrape();
    let failed_at = unix_now();

    // The CA down: the run fails as a whole (exit 4, no report), and still says so.
    sb.stop_server("pebble");
    monitored.run("request", &[]).expect_code(4);
    assert_eq!(monitored.exit_code("request"), Some(4.0));
    assert_eq!(monitored.expiry("main"), Some(expiry));

    // The rules on these series: nothing fires for the healthy host (but the staleness
    // rule, once two days pass without a run); a failed finalize fires at once, and the
    // renewal that stays due is overdue after two days.
    let work = monitored.host.dir.path();
    let cert_alert = |alert: &str, summary: String, description: String| {
        (
            alert_labels(&[("severity", alert), ("host", HOST), ("cert", "main")]),
            map(&[("summary", &summary), ("description", &description)]),
        )
    };
    let not_running = |extra: (&str, &str)| {
        (
            alert_labels(&[("severity", "warning"), extra]),
            map(&[
                (
                    "summary",
                    "fleetcert has not run on host1:9100 for two days",
                ),
                (
                    "description",
                    "No request, finalize, renew or publish wrote fleetcert.prom for two days: \
                     is the daily playbook or the timer running, and can fleetcert write \
                     metrics.textfile_dir?",
                ),
            ]),
        )
    };
    assert_rules(
        work,
        "healthy",
        &healthy,
        healthy_at,
        &[
            Case {
                eval_time: "10m",
                alert: "FleetcertLastRunFailed",
                alerts: vec![],
            },
            Case {
                eval_time: "10m",
                alert: "FleetcertCertificateExpiresSoon",
                alerts: vec![],
            },
            Case {
                eval_time: "2d1h",
                alert: "FleetcertRenewalOverdue",
                alerts: vec![],
            },
            Case {
                eval_time: "1d",
                alert: "FleetcertNotRunning",
                alerts: vec![],
            },
            Case {
                eval_time: "2d1h",
                alert: "FleetcertNotRunning",
                alerts: vec![
                    not_running(("host", HOST)),
                    not_running(("zone", "acme.test")),
                ],
            },
        ],
    );
    assert_rules(
        work,
        "failed",
        &failed,
        failed_at,
        &[
            Case {
                eval_time: "1m",
                alert: "FleetcertLastRunFailed",
                alerts: vec![(
                    alert_labels(&[
                        ("severity", "warning"),
                        ("command", "finalize"),
                        ("host", HOST),
                    ]),
                    map(&[
                        ("summary", "fleetcert finalize on host1:9100 exited with 1"),
                        (
                            "description",
                            "See docs/exit-codes.md; the command's report (codes 1 and 3) or \
                             its error line (2 and 4) names the culprit.",
                        ),
                    ]),
                )],
            },
            Case {
                eval_time: "1d",
                alert: "FleetcertRenewalOverdue",
                alerts: vec![],
            },
            Case {
                eval_time: "2d1h",
                alert: "FleetcertRenewalOverdue",
                alerts: vec![cert_alert(
                    "warning",
                    format!("Certificate main of {HOST} has been due for renewal for two days"),
                    format!(
                        "The reason label of fleetcert_certificate_due says why; the request and \
                         finalize reports on {HOST} say what failed."
                    ),
                )],
            },
        ],
    );
    // The same failed host, as if its certificate had run into the last quarter of its
    // renewal window: shift the clock so that a quarter of the window is left, less an hour.
    let window = failed
        .iter()
        .find(|s| s.name == "fleetcert_certificate_renewal_window_seconds")
        .map(|s| s.value)
        .expect("renewal window");
    let late = expiry - window / 4.0 + 3600.0;
    assert_rules(
        work,
        "expiring",
        &failed,
        late,
        &[
            Case {
                eval_time: "30m",
                alert: "FleetcertCertificateExpiresSoon",
                alerts: vec![],
            },
            Case {
                eval_time: "2h",
                alert: "FleetcertCertificateExpiresSoon",
                alerts: vec![cert_alert(
                    "critical",
                    format!(
                        "Certificate main of {HOST} expires within a quarter of its renewal window"
                    ),
                    format!(
                        "fleetcert has not renewed it although every rule would have by now: look \
                         at the last request and finalize reports on {HOST}."
                    ),
                )],
            },
        ],
    );
}

#[test]
fn check_says_when_the_service_serves_the_previous_certificate_until_it_is_reloaded() {
    let sb = sandbox().start();
    let (monitored, nginx, target) = Monitored::probed(&sb);
    let fullchain = monitored.host.file("main", "fullchain.pem");
    let result = |result| {
        monitored.metric(
            "fleetcert_certificate_probe_result",
            &[("cert", "main"), ("target", &target), ("result", result)],
        )
    };

    monitored.check(&[], 0, "FLEETCERT OK - 1 certificate OK");
    assert_eq!(result("same"), Some(1.0));
    assert_eq!(result("older"), Some(0.0));
    assert_eq!(
        monitored.metric(
            "fleetcert_certificate_probe_expiry_timestamp_seconds",
            &[("cert", "main"), ("target", &target)]
        ),
        Some(not_after(&fullchain))
    );
    let first = Leaf::of_file(&monitored.host.file("main", "cert.pem"));

    // A renewal (another key type) that nobody reloads nginx for.
    monitored.configure(
        json!({"key": "ecdsa-p256"}),
        &[cert_line("main", &[NAME], &[&target])],
    );
    let document = monitored.run("request", &[]).expect_code(0).json();
    monitored.host.place(&document);
    monitored.run("finalize", &[]).expect_code(0);
    let second = Leaf::of_file(&monitored.host.file("main", "cert.pem"));
    assert_ne!(first, second);
    // The result of the check before is about the previous certificate: gone, not carried.
    assert_eq!(result("same"), None, "{}", monitored.exporter.scrape());
    assert_eq!(
        nginx.served_leaf(),
        Ok(first.clone()),
        "nginx serves the old one"
    );

    let line = monitored.check(
        &[],
        2,
        &format!(
            "FLEETCERT CRITICAL - main: {target} serves the previous certificate (serial {}, \
             installed {}): reload the service",
            first.serial, second.serial
        ),
    );
    assert!(line.contains(" | main_days="), "{line}");
    assert_eq!(result("older"), Some(1.0));
    assert_eq!(result("same"), Some(0.0));
    assert_eq!(monitored.exit_code("check"), Some(2.0));
    // request and status keep check's result: the installed certificate did not change.
    monitored.run("status", &[]).expect_code(0);
    assert_eq!(result("older"), Some(1.0));
    let stale = monitored.scrape();
    let stale_at = unix_now();

    nginx.reload();
    monitored.check(&[], 0, "FLEETCERT OK");
    assert_eq!(result("same"), Some(1.0));
    assert_eq!(result("older"), Some(0.0));

    // Stopped, it is unreachable: CRITICAL with the reason.
    nginx.stop();
    monitored.check(
        &[],
        2,
        &format!("FLEETCERT CRITICAL - main: {target} unreachable: cannot connect"),
    );
    assert_eq!(result("unreachable"), Some(1.0));
    let down = monitored.scrape();
    let down_at = unix_now();

    let probe_alert = |severity: &str, result: &str, summary: String, description: String| {
        (
            alert_labels(&[
                ("severity", severity),
                ("host", HOST),
                ("cert", "main"),
                ("target", &target),
                ("result", result),
            ]),
            map(&[("summary", &summary), ("description", &description)]),
        )
    };
    let work = monitored.host.dir.path();
    assert_rules(
        work,
        "older",
        &stale,
        stale_at,
        &[
            Case {
                eval_time: "5m",
                alert: "FleetcertServedCertificateNotInstalled",
                alerts: vec![],
            },
            Case {
                eval_time: "15m",
                alert: "FleetcertServedCertificateNotInstalled",
                alerts: vec![probe_alert(
                    "critical",
                    "older",
                    format!(
                        "{target} serves the previous certificate, not main as installed on {HOST}"
                    ),
                    format!(
                        "Reload (or restart) the service behind {target}; fleetcert check says \
                         which serial it serves."
                    ),
                )],
            },
            Case {
                eval_time: "15m",
                alert: "FleetcertProbeUnreachable",
                alerts: vec![],
            },
            // check's own exit code 2 is CRITICAL, not a failed run.
            Case {
                eval_time: "15m",
                alert: "FleetcertLastRunFailed",
                alerts: vec![],
            },
        ],
    );
    assert_rules(
        work,
        "unreachable",
        &down,
        down_at,
        &[
            Case {
                eval_time: "15m",
                alert: "FleetcertServedCertificateNotInstalled",
                alerts: vec![],
            },
            Case {
                eval_time: "15m",
                alert: "FleetcertProbeUnreachable",
                alerts: vec![probe_alert(
                    "warning",
                    "unreachable",
                    format!(
                        "{target} (certificate main of {HOST}) did not complete a TLS handshake"
                    ),
                    "fleetcert check names the reason (connection refused, timeout, TLS error)."
                        .to_owned(),
                )],
            },
        ],
    );
}

#[test]
fn a_failed_reload_is_pending_in_the_metrics_alerts_and_is_retried_until_nginx_serves_the_renewal()
{
    let sb = sandbox().start();
    let (monitored, nginx, target) = Monitored::probed(&sb);
    let first = Leaf::of_file(&monitored.host.file("main", "cert.pem"));
    // nginx's reload, refused while the marker is there (a service that cannot reload at
    // that moment).
    let broken = monitored.host.dir.path().join("reload.broken");
    let reload = script(
        &monitored.host.dir.path().join("reload"),
        &format!(
            "[ -e '{}' ] && {{ echo 'the service refused the reload' >&2; exit 1; }}\nexec '{}'",
            broken.display(),
            nginx.reload_command().display()
        ),
    );
    std::fs::write(&broken, "").expect("write the marker");
    let (cert_name, mut entry) = cert_line("main", &[NAME], &[&target]);
    entry["reload"] = json!([reload]);
    monitored.configure(json!({"key": "ecdsa-p256"}), &[(cert_name, entry)]);
    let pending = || {
        monitored.metric(
            "fleetcert_certificate_reload_pending",
            &[("host", HOST), ("cert", "main")],
        )
    };

    // A renewal whose reload fails: the new files stay, the reload is owed.
    let document = monitored.run("request", &[]).expect_code(0).json();
    monitored.host.place(&document);
    monitored.run("finalize", &[]).expect_code(1);
    let second = Leaf::of_file(&monitored.host.file("main", "cert.pem"));
    assert_ne!(first, second);
    assert_eq!(pending(), Some(1.0), "{}", monitored.exporter.scrape());
    assert_eq!(
        nginx.served_leaf(),
        Ok(first),
        "nginx still serves the old one"
    );
    let owed = monitored.scrape();
    let owed_at = unix_now();

    // The service can reload again: the next quiet day's request retries it, and nginx
    // serves the renewal.
    std::fs::remove_file(&broken).expect("remove the marker");
    monitored.run("request", &[]).expect_code(0);
    assert_eq!(pending(), Some(0.0));
    assert_eq!(nginx.served_leaf(), Ok(second));

    let summary =
        format!("The reload of certificate main on {HOST} has failed since its files changed");
    let description = format!(
        "The service may still serve the previous certificate. The reload's line is in \
         fleetcert check and in the last report's reload_error on {HOST}; every run of request, \
         finalize, renew or install tries it again until it works."
    );
    assert_rules(
        monitored.host.dir.path(),
        "reload_pending",
        &owed,
        owed_at,
        &[
            Case {
                eval_time: "30m",
                alert: "FleetcertReloadPending",
                alerts: vec![],
            },
            Case {
                eval_time: "2h",
                alert: "FleetcertReloadPending",
                alerts: vec![(
                    alert_labels(&[("severity", "warning"), ("host", HOST), ("cert", "main")]),
                    map(&[("summary", &summary), ("description", &description)]),
                )],
            },
        ],
    );
}

#[test]
fn check_warns_and_goes_critical_inside_its_windows_and_is_unknown_without_a_config() {
    let sb = sandbox().start();
    let monitored = Monitored::new(&sb);
    monitored.configure(Value::Null, &[cert_line("main", &[NAME], &[])]);
    monitored.host.issue();
    // check talks to nobody but the probes: with the CA, the resolver and both DNS servers
    // gone, it says all it says below.
    for server in ["pebble", "unbound", "primary", "secondary"] {
        sb.stop_server(server);
    }
    let days_left =
        (not_after(&monitored.host.file("main", "fullchain.pem")) - unix_now()) / 86400.0;
    let whole = days_left.floor();
    eprintln!("the certificate has {days_left:.2} days left");

    monitored.check(
        &[],
        0,
        &format!("FLEETCERT OK - 1 certificate OK, main expires first, in {whole} days"),
    );

    // Inside the warning window, outside the critical one.
    let window = format!("{}", days_left.ceil() as u64 + 10);
    let line = monitored.check(
        &["--warning-days", &window, "--critical-days", "1"],
        1,
        &format!(
            "FLEETCERT WARNING - main: expires in {whole} days (warning under {window} days) | \
             main_days="
        ),
    );
    assert!(line.ends_with(&format!(";{window}:;1:")), "{line}");
    assert_eq!(monitored.exit_code("check"), Some(1.0));

    // Inside both.
    monitored.check(
        &["--warning-days", &window, "--critical-days", &window],
        2,
        &format!(
            "FLEETCERT CRITICAL - main: expires in {whole} days (critical under {window} days)"
        ),
    );

    // A second certificate never issued is CRITICAL, and comes first.
    monitored.configure(
        Value::Null,
        &[
            cert_line("main", &[NAME], &[]),
            cert_line("www", &["www1.example.test"], &[]),
        ],
    );
    monitored.check(
        &["--warning-days", &window, "--critical-days", "1"],
        2,
        "FLEETCERT CRITICAL - www: no certificate installed; main: expires in",
    );

    // The default windows, a half and a quarter of the renewal window (15 and 7.5 days of a
    // 90-day certificate renewed from 30 days before expiry): two such certificates held
    // from before, 12 and 5 days left.
    let now = now();
    for (cert, name, left) in [
        ("soon", "host31.example.test", 12),
        ("sooner", "host32.example.test", 5),
    ] {
        let not_after = now + time::Duration::days(left);
        hold(
            &monitored.host,
            cert,
            &[name],
            not_after - time::Duration::days(90),
            not_after,
        );
    }
    let soon = cert_line("soon", &["host31.example.test"], &[]);
    monitored.configure(Value::Null, std::slice::from_ref(&soon));
    let line = monitored.check(
        &[],
        1,
        "FLEETCERT WARNING - soon: expires in 11 days (warning under 15 days) | soon_days=",
    );
    assert!(line.ends_with(";15:;7.5:"), "{line}");
    monitored.configure(
        Value::Null,
        &[soon, cert_line("sooner", &["host32.example.test"], &[])],
    );
    let line = monitored.check(
        &[],
        2,
        "FLEETCERT CRITICAL - sooner: expires in 4 days (critical under 7.5 days); soon: \
         expires in 11 days (warning under 15 days) | ",
    );
    assert!(line.ends_with(";15:;7.5:"), "{line}");

    // The check cannot tell: UNKNOWN, never CRITICAL.
    monitored.check(
        &["--warning-days", "1", "--critical-days", "2"],
        3,
        "FLEETCERT UNKNOWN - --critical-days 2 is more than --warning-days 1",
    );
    // A textfile directory that is gone costs one warning, never the command's result.
    let gone = monitored.host.dir.path().join("gone");
    monitored.host.write_config(
        &monitored
            .host
            .host_config()
            .set("metrics", json!({"textfile_dir": gone}))
            .cert("main", &[NAME]),
    );
    let run = monitored.host.run("status", &[]);
    run.expect_code(0);
    assert!(
        run.stderr.contains("does not exist") && run.stderr.contains("gone"),
        "{}",
        run.stderr
    );
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    // A mistyped flag too (clap would say 2, which a plugin runner reads as CRITICAL).
    plugin_line(
        &fleetcert(["check", "--warning-days", "soon"]),
        3,
        "FLEETCERT UNKNOWN - bad arguments: invalid value 'soon' for '--warning-days",
    );
    std::fs::write(monitored.host.config(), "acme: {}\n").expect("break the config");
    let config = monitored.host.config();
    let run = fleetcert(["check", "--config", config.to_str().expect("utf-8")]);
    plugin_line(&run, 3, "FLEETCERT UNKNOWN - config ");
}

#[test]
fn a_publish_that_lags_names_the_server_in_the_metrics() {
    let sb = sandbox().start();
    let monitored = Monitored::new(&sb);
    monitored.configure(Value::Null, &[cert_line("main", &[NAME], &[])]);
    monitored.write_zone_config("3s");
    let document = monitored.run("request", &[]).expect_code(0).json();
    sb.stop_server("secondary");
    monitored.publish(&document).expect_code(3);
    let zone = ("zone", "acme.test");
    let secondary = sb.secondary().to_owned();
    assert_eq!(
        monitored.metric(
            "fleetcert_publish_server_lagging",
            &[zone, ("server", &secondary)]
        ),
        Some(1.0)
    );
    assert_eq!(
        monitored.metric(
            "fleetcert_publish_server_propagation_seconds",
            &[zone, ("server", &secondary)]
        ),
        None
    );
    assert_eq!(
        monitored.metric(
            "fleetcert_publish_server_lagging",
            &[zone, ("server", sb.primary())]
        ),
        Some(0.0)
    );
    assert_eq!(
        monitored.metric("fleetcert_command_exit_code", &[("command", "publish")]),
        Some(3.0)
    );
    let lagged = monitored.scrape();
    let lagged_at = unix_now();
    assert_rules(
        monitored.host.dir.path(),
        "lagged",
        &lagged,
        lagged_at,
        &[
            Case {
                eval_time: "1m",
                alert: "FleetcertPublishLagged",
                alerts: vec![(
                    alert_labels(&[("severity", "warning"), zone, ("server", &secondary)]),
                    map(&[
                        (
                            "summary",
                            &format!(
                                "{secondary} did not serve the published serial of acme.test in time"
                            ),
                        ),
                        (
                            "description",
                            &format!(
                                "Check NOTIFY and zone transfers to {secondary}; its certificates' \
                                 validations fail until it catches up."
                            ),
                        ),
                    ]),
                )],
            },
            Case {
                eval_time: "1m",
                alert: "FleetcertLastRunFailed",
                alerts: vec![(
                    alert_labels(&[("severity", "warning"), ("command", "publish"), zone]),
                    map(&[
                        ("summary", "fleetcert publish on host1:9100 exited with 3"),
                        (
                            "description",
                            "See docs/exit-codes.md; the command's report (codes 1 and 3) or \
                             its error line (2 and 4) names the culprit.",
                        ),
                    ]),
                )],
            },
        ],
    );
}

#[test]
fn the_shipped_rules_pass_their_committed_tests() {
    let checked = run_ok(
        Command::new("promtool")
            .args(["check", "rules"])
            .arg(rules_file()),
    );
    assert!(checked.contains("SUCCESS: 8 rules found"), "{checked}");
    promtool_test_rules(&fixture_file()).unwrap_or_else(|report| panic!("{report}"));
}

#[test]
fn the_renewal_moment_request_heard_from_the_ca_holds_for_every_other_command() {
    let sb = sandbox().start();
    let fake = FakeCa::start(&sb, "");
    let monitored = Monitored::with_host(Host::with_directory(&sb, &fake.directory(), &[]));
    monitored.configure(
        Value::Null,
        &[
            cert_line("later", &["host22.example.test"], &[]),
            cert_line("late", &["host23.example.test"], &[]),
        ],
    );
    // Two 90-day certificates held from before (`before_days: 30`): with 16 days left the
    // days rule says due whatever the seed; the CA's window for `later` opens in two days,
    // so request waits for it. `late` has 8 days left and a window after its expiry: the
    // safety net orders it.
    let now = now();
    let held = |cert: &str, name: &str, left: i64| {
        let not_after = now + time::Duration::days(left);
        let not_before = not_after - time::Duration::days(90);
        ari_id(&hold(&monitored.host, cert, &[name], not_before, not_after))
    };
    let later_id = held("later", "host22.example.test", 16);
    let late_id = held("late", "host23.example.test", 8);
    fake.set_windows(&[
        (
            &later_id,
            now + time::Duration::days(2),
            now + time::Duration::days(3),
        ),
        (
            &late_id,
            now + time::Duration::days(20),
            now + time::Duration::days(21),
        ),
    ]);
    let due = |cert: &str, reason: &str| {
        monitored.metric(
            "fleetcert_certificate_due",
            &[("cert", cert), ("reason", reason)],
        )
    };
    let renews = |cert: &str| {
        monitored.metric(
            "fleetcert_certificate_renewal_timestamp_seconds",
            &[("cert", cert)],
        )
    };

    let document = monitored.run("request", &[]).expect_code(0).json();
    assert_eq!(cert(&document, "later")["status"], "valid", "{document:#}");
    assert_eq!(cert(&document, "late")["status"], "pending", "{document:#}");
    let renew_at = parse_time(
        cert(&document, "later")["renew_at"]
            .as_str()
            .expect("renew_at"),
    );
    let renew_at = renew_at.unix_timestamp() as f64;
    // What request decided, not what the days rule alone would say (`expiring`).
    let scrape = monitored.exporter.scrape();
    assert_eq!(due("later", "none"), Some(0.0), "{scrape}");
    assert_eq!(due("later", "expiring"), None, "{scrape}");
    assert_eq!(renews("later"), Some(renew_at));
    assert_eq!(due("late", "ari_safety_net"), Some(1.0), "{scrape}");
    assert_eq!(
        monitored.metric("fleetcert_certificate_pending", &[("cert", "late")]),
        Some(1.0)
    );

    // status and check hear no CA: they keep request's moment for the same certificate.
    monitored.run("status", &[]).expect_code(0);
    assert_eq!(due("later", "none"), Some(0.0));
    assert_eq!(renews("later"), Some(renew_at));
    // 8 days left is under half of the 30-day window (WARNING), not under a quarter.
    monitored.check(
        &[],
        1,
        "FLEETCERT WARNING - late: expires in 7 days (warning under 15 days) | ",
    );
    assert_eq!(due("later", "none"), Some(0.0));
    assert_eq!(renews("later"), Some(renew_at));

    // The renewal of `late` is a new certificate: its moment is its own (the days rule's,
    // 1825-day Pebble certificates renew from 30 days before expiry, spread over 10).
    monitored.host.place(&document);
    monitored.run("finalize", &[]).expect_code(0);
    let expiry = monitored.expiry("late").expect("late's expiry");
    assert_eq!(
        expiry,
        not_after(&monitored.host.file("late", "fullchain.pem"))
    );
    let moment = renews("late").expect("late's moment");
    assert!(
        (expiry - 30.0 * 86400.0..=expiry - 20.0 * 86400.0).contains(&moment),
        "{moment} for expiry {expiry}"
    );
    assert_eq!(due("late", "none"), Some(0.0));
    assert_eq!(renews("later"), Some(renew_at));
}

#[test]
fn renew_and_hiera_record_their_runs_and_a_dry_run_writes_nothing() {
    let key = crate::support::util::secret();
    let sb = sandbox()
        .tsig(&format!(
            "hmac-sha512:host1={key}@host1.example.test.acme.test"
        ))
        .start();
    let monitored = Monitored::new(&sb);
    let secret_file = monitored.host.dir.path().join("host1.secret");
    std::fs::write(&secret_file, &key).expect("write the secret");
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o600))
        .expect("chmod the secret");
    monitored.configure(
        json!({
            "update": {
                "server": sb.primary(),
                "key_name": "host1",
                "algorithm": "hmac-sha512",
                "secret_file": secret_file,
            },
            "servers": [sb.primary(), sb.secondary()],
            "timeout": "30s",
        }),
        &[cert_line("main", &[NAME], &[])],
    );

    monitored.host.run("renew", &["--dry-run"]).expect_code(0);
    assert!(!monitored.file().exists(), "renew --dry-run wrote metrics");

    let report = monitored.run("renew", &["--check"]).expect_code(0).json();
    assert_eq!(report["changed"], true, "{report:#}");
    assert_eq!(report["check"]["code"], 0, "{report:#}");
    assert_eq!(monitored.exit_code("renew"), Some(0.0));
    let fullchain = monitored.host.file("main", "fullchain.pem");
    assert_eq!(monitored.expiry("main"), Some(not_after(&fullchain)));
    assert_eq!(
        monitored.metric(
            "fleetcert_certificate_due",
            &[("cert", "main"), ("reason", "none")]
        ),
        Some(0.0)
    );
    assert_eq!(
        monitored.metric("fleetcert_certificate_pending", &[("cert", "main")]),
        Some(0.0)
    );
    // renew publishes by its own dynamic update: the zone's series are publish's alone.
    assert_eq!(
        monitored.metric("fleetcert_publish_serial", &[("zone", "acme.test")]),
        None
    );

    let out = monitored.host.dir.path().join("hiera.yaml");
    let out = out.to_str().expect("utf-8");
    monitored
        .run("hiera", &["--host", HOST, "--out", out])
        .expect_code(0);
    assert_eq!(monitored.exit_code("hiera"), Some(0.0));
    assert_eq!(monitored.exit_code("renew"), Some(0.0));
}

/// `--check` of request and finalize: `check`'s verdict in their report and its probes in
/// their metrics, so a daily run needs one process per host, not two; publish takes a token
/// document that carries a verdict.
#[test]
fn request_and_finalize_with_check_report_its_verdict_and_record_its_probes() {
    let sb = sandbox().start();
    let (monitored, nginx, target) = Monitored::probed(&sb);
    let result = |result| {
        monitored.metric(
            "fleetcert_certificate_probe_result",
            &[("cert", "main"), ("target", &target), ("result", result)],
        )
    };
    let verdict = |report: &Value, code: i64, start: &str| {
        assert_eq!(report["check"]["code"], code, "{report:#}");
        let line = report["check"]["line"].as_str().expect("a line");
        assert!(
            line.starts_with(start) && line.contains(" | main_days=") && !line.contains('\n'),
            "wanted a line starting with {start:?}: {line}"
        );
    };

    // Without the flag: no verdict, no probe.
    let plain = monitored.run("request", &[]).expect_code(0).json();
    assert!(plain.get("check").is_none(), "{plain:#}");
    assert_eq!(result("same"), None);

    let quiet = monitored.run("request", &["--check"]).expect_code(0).json();
    verdict(&quiet, 0, "FLEETCERT OK - 1 certificate OK");
    assert_eq!(result("same"), Some(1.0));
    assert_eq!(monitored.exit_code("request"), Some(0.0));
    assert_eq!(monitored.exit_code("check"), None, "no check process ran");
    monitored.publish(&quiet).expect_code(0);

    // A renewal (another key type) that nobody reloads nginx for: finalize's verdict says so.
    monitored.configure(
        json!({"key": "ecdsa-p256"}),
        &[cert_line("main", &[NAME], &[&target])],
    );
    let document = monitored.run("request", &["--check"]).expect_code(0).json();
    assert_eq!(document["certs"][0]["status"], "pending", "{document:#}");
    verdict(
        &document,
        1,
        "FLEETCERT WARNING - main: due: key type changed",
    );
    monitored.host.place(&document);
    let report = monitored
        .run("finalize", &["--check"])
        .expect_code(0)
        .json();
    assert_eq!(report["changed"], true, "{report:#}");
    verdict(
        &report,
        2,
        &format!("FLEETCERT CRITICAL - main: {target} serves the previous certificate"),
    );
    assert_eq!(result("older"), Some(1.0));
    assert_eq!(monitored.exit_code("finalize"), Some(0.0));

    nginx.reload();
    let quiet = monitored.run("request", &["--check"]).expect_code(0).json();
    verdict(&quiet, 0, "FLEETCERT OK");
    assert_eq!(result("same"), Some(1.0));
    assert_eq!(result("older"), Some(0.0));
}
