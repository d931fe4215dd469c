//! The mistakes a newcomer makes first, against the real binary: a config that is not where
//! the command looks, a misspelled key, a CA that does not answer, a token file that is not
//! the token document. Each is refused with one line that names the file or key, what it
//! said, and the fix, and nothing is written.

use std::path::Path;

use crate::support::config::ZoneConfig;
use crate::support::fixture::{Host, sandbox};
use crate::support::util::{Run, fleetcert};

/// The single `fleetcert: error:` line of a run refused with `code`, with no report.
#[track_caller]
fn refusal(run: &Run, code: i32) -> String {
    run.expect_code(code);
    assert!(
        run.stdout.is_empty(),
        "a report after a refusal:\n{}",
        run.stdout
    );
    let lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|line| line.starts_with("fleetcert: error: "))
        .collect();
    assert_eq!(lines.len(), 1, "one error line wanted:\n{}", run.stderr);
    let line = lines[0].to_owned();
    assert!(
        !line.contains("\\`"),
        "backticks escaped, the line reads badly: {line}"
    );
    line
}

#[track_caller]
fn assert_names(line: &str, wanted: &[&str]) {
    for word in wanted {
        assert!(line.contains(word), "{word:?} missing from: {line}");
    }
}

fn text(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

#[test]
fn a_missing_config_is_named_once_with_what_to_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("fleetcert.yaml");
    let line = refusal(&fleetcert(["request", "--config", text(&config)]), 2);
    assert_names(
        &line,
        &[
            "host config",
            "does not exist",
            "docs/host-config.md",
            "--config",
        ],
    );
    assert_eq!(line.matches(text(&config)).count(), 1, "{line}");
    let zone = dir.path().join("zone.yaml");
    let line = refusal(
        &fleetcert(["publish", "--config", text(&zone), "--tokens", "-"]),
        2,
    );
    assert_names(&line, &["zone config", text(&zone), "docs/zone-config.md"]);
    assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 0);
}

#[test]
fn a_misspelled_key_is_named_with_its_line_column_and_the_key_meant() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("fleetcert.yaml");
    std::fs::write(
        &config,
        "acme: {email: ops@example.org, agree_tos: true}\n\
         signing_zone: acme.example.net\n\
         certs:\n  main: [web01.example.org]\n\
         renew_days: 20\n",
    )
    .expect("write config");
    let line = refusal(&fleetcert(["request", "--config", text(&config)]), 2);
    assert_names(
        &line,
        &[
            text(&config),
            "unknown key `renew_days` at line 5 column 1",
            "remove it or correct its spelling",
            "did you mean `renew`?",
            "signing_zone",
            "docs/host-config.md",
        ],
    );
    // A nested key: its place and the key it is beside.
    std::fs::write(
        &config,
        "acme: {email: ops@example.org, agree_tos: true, directroy: https://ca.example/dir}\n\
         signing_zone: acme.example.net\ncerts:\n  main: [web01.example.org]\n",
    )
    .expect("write config");
    let line = refusal(&fleetcert(["request", "--config", text(&config)]), 2);
    assert_names(
        &line,
        &[
            "unknown key `acme.directroy` at line 1 column",
            "did you mean `directory`?",
        ],
    );
}

#[test]
fn a_ca_that_does_not_answer_is_named_by_its_key_also_in_a_dry_run() {
    let sb = sandbox().start();
    let host = Host::new(&sb, &[("main", &["host1.example.test"])]);
    // Pebble stopped: its port refuses, as a CA behind a firewall or a mistyped URL would.
    sb.stop_server("pebble");
    let config = host.config();
    let wanted = [
        "`acme.directory`",
        text(&config),
        sb.acme_directory(),
        "reaches the CA",
    ];
    let line = refusal(&host.request(), 4);
    assert_names(&line, &wanted);
    assert!(
        !host.state_dir().join("account.json").exists(),
        "an account file without a CA"
    );
    // The dry run cannot promise an order the CA cannot take: it says so, as the run would.
    let line = refusal(&host.run("request", &["--dry-run"]), 4);
    assert_names(&line, &wanted);
    assert_names(&line, &["cannot read the directory"]);
    // And with the CA back, the dry run passes and still orders nothing.
    sb.start_server("pebble");
    let report = host.run("request", &["--dry-run"]).expect_code(0).json();
    assert_eq!(report["certs"][0]["status"], "pending", "{report}");
    assert!(
        host.saved_order("main").is_none(),
        "a dry run saved an order"
    );
}

#[test]
fn a_token_file_that_is_not_json_is_named_with_where_the_document_comes_from() {
    let dir = tempfile::tempdir().expect("tempdir");
    let zone = dir.path().join("zone.yaml");
    ZoneConfig::new("acme.example.net")
        .set("zone_file", dir.path().join("zone.db"))
        .set(
            "soa",
            serde_json::json!({"mname": "ns1.example.net.", "rname": "hostmaster.example.net."}),
        )
        .set("nameservers", ["ns1.example.net."])
        .set("reload", ["rndc", "reload", "acme.example.net"])
        .set("servers", ["127.0.0.1:53"])
        .write(&zone);
    // What a newcomer passes instead: the log `request` printed on its standard error.
    let tokens = dir.path().join("tokens.json");
    std::fs::write(
        &tokens,
        "2026-12-07T12:44:35Z  WARN cannot request cert=\"main\"\n",
    )
    .expect("write tokens");
    let line = refusal(
        &fleetcert([
            "publish",
            "--config",
            text(&zone),
            "--tokens",
            text(&tokens),
        ]),
        2,
    );
    assert_names(
        &line,
        &[
            text(&tokens),
            "is not JSON",
            "at line 1 column",
            "the token document that `fleetcert request` printed on its standard output",
        ],
    );
    assert!(!dir.path().join("zone.db").exists(), "a zone written");
}
