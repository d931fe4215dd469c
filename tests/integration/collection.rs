//! The Ansible collection fleetcert.fleetcert (ansible/) as an operator gets it: built with
//! `ansible-galaxy collection build`, installed with `ansible-galaxy collection install` into a
//! fresh collections path (the playbook tests run `fleetcert.fleetcert.daily` from there), and
//! checked as a collection: ansible-lint's production profile, `ansible-test sanity` and its
//! unit tests (pytest: the filter plugins, the argument specs against the defaults).

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use crate::support::collection::{
    CHECKER_DEADLINE, QUICK_TOOL_DEADLINE, SANITY_DEADLINE, SUBDIR, installed,
};
use crate::support::venv::{repo, run_bounded, tool, venv_bin};

/// A copy of the source (ansible/) at `<root>/ansible_collections/fleetcert/fleetcert`, where
/// ansible-test wants a collection and where the roles' fully qualified names resolve;
/// returns the root (removed on drop) and that directory. Outside the repository: inside a
/// git work tree ansible-test lists the files through git, which ignores target/.
fn source_copy() -> (tempfile::TempDir, PathBuf) {
    let root = tempfile::Builder::new()
        .prefix("fleetcert-collection-")
        .tempdir()
        .expect("collection copy");
    let dest = root.path().join(SUBDIR);
    fs::create_dir_all(&dest).expect("mkdir");
    let status = Command::new("cp")
        .arg("-a")
        .arg(repo().join("ansible/."))
        .arg(&dest)
        .status()
        .expect("cp");
    assert!(status.success(), "cp ansible/ failed");
    // ansible-lint's cache, if a developer ran it in ansible/.
    let _ = fs::remove_dir_all(dest.join(".ansible"));
    (root, dest)
}

/// The venv's tool `name`, to run in a fresh source copy (the returned directory, removed
/// when the first value drops), with the copy's collections root as ANSIBLE_COLLECTIONS_PATH
/// and PYTHONPATH, so the roles' and the plugins' fully qualified names resolve to it.
fn in_source_copy(name: &str) -> (tempfile::TempDir, PathBuf, Command) {
    let (root, collection) = source_copy();
    let mut command = tool(name);
    command
        .current_dir(&collection)
        .env("ANSIBLE_COLLECTIONS_PATH", root.path())
        .env("PYTHONPATH", root.path());
    (root, collection, command)
}

/// The installed collection is the one this tree builds: its version is the binary's, its
/// playbook runs by fully qualified name (syntax check), and it holds the roles and plugins.
#[test]
fn collection_installs_from_its_tarball_and_runs_by_fully_qualified_name() {
    let collections = installed();
    let installed = collections.join(SUBDIR);
    let manifest: serde_json::Value = serde_json::from_slice(
        &fs::read(installed.join("MANIFEST.json"))
            .expect("MANIFEST.json of the installed collection"),
    )
    .expect("MANIFEST.json is JSON");
    let info = &manifest["collection_info"];
    assert_eq!(
        (
            info["namespace"].as_str(),
            info["name"].as_str(),
            info["version"].as_str()
        ),
        (
            Some("fleetcert"),
            Some("fleetcert"),
            Some(env!("CARGO_PKG_VERSION"))
        ),
        "galaxy.yml's version must follow Cargo.toml's"
    );
    for file in [
        "playbooks/daily.yml",
        "meta/runtime.yml",
        "plugins/filter/publish.py",
        "roles/fleetcert/meta/argument_specs.yml",
        "roles/fleetcert_install/tasks/url.yml",
    ] {
        assert!(
            installed.join(file).is_file(),
            "the installed collection lacks {file}"
        );
    }
    let mut syntax = tool("ansible-playbook");
    syntax
        .args([
            "--syntax-check",
            "-i",
            "localhost,",
            "fleetcert.fleetcert.daily",
        ])
        .env("ANSIBLE_COLLECTIONS_PATH", collections);
    let ran = run_bounded(syntax, QUICK_TOOL_DEADLINE);
    ran.expect_success("ansible-playbook --syntax-check fleetcert.fleetcert.daily");
    let mut doc = tool("ansible-doc");
    doc.args(["-t", "role", "-l", "fleetcert.fleetcert"])
        .env("ANSIBLE_COLLECTIONS_PATH", collections);
    let roles = ["install", "request", "publish", "finalize", "hiera"];
    run_bounded(doc, QUICK_TOOL_DEADLINE)
        .expect_success("ansible-doc -t role -l fleetcert.fleetcert")
        .expect_mentions(
            "ansible-doc's list of roles",
            roles.map(|role| format!("fleetcert.fleetcert.fleetcert_{role}")),
        );
    // Every filter documents itself (plugins/filter/NAME.yml), and so does the module.
    let filters = [
        "allow_list",
        "cert_failures",
        "check_not_ok",
        "due_certs",
        "error_line",
        "host_config",
        "install_directories",
        "install_fingerprint",
        "install_record",
        "issuer_config",
        "publish_documents",
        "publish_preview",
        "refused_hosts",
        "replaced_certs",
        "run_summary",
        "without_empty",
        "zone_config",
    ];
    let mut doc = tool("ansible-doc");
    doc.args(["-t", "filter", "--json"])
        .args(filters.map(|name| format!("fleetcert.fleetcert.{name}")))
        .env("ANSIBLE_COLLECTIONS_PATH", collections);
    let ran = run_bounded(doc, QUICK_TOOL_DEADLINE);
    ran.expect_success("ansible-doc -t filter fleetcert.fleetcert.*");
    let json = ran
        .output
        .find('{')
        .map(|start| &ran.output[start..])
        .unwrap_or_else(|| panic!("ansible-doc printed no JSON:\n{}", ran.output));
    let docs: serde_json::Value = serde_json::from_str(json)
        .unwrap_or_else(|err| panic!("ansible-doc's JSON: {err}\n{}", ran.output));
    for name in filters {
        let entry = &docs[format!("fleetcert.fleetcert.{name}")];
        assert!(
            entry["doc"]["description"].is_array()
                && !entry["examples"].is_null()
                && !entry["return"].is_null(),
            "filter {name} lacks DOCUMENTATION, EXAMPLES or RETURN: {entry}"
        );
    }
    let mut doc = tool("ansible-doc");
    doc.args(["-t", "module", "fleetcert.fleetcert.run"])
        .env("ANSIBLE_COLLECTIONS_PATH", collections);
    run_bounded(doc, QUICK_TOOL_DEADLINE)
        .expect_success("ansible-doc -t module fleetcert.fleetcert.run")
        .expect_mentions("the module's documentation", ["install_needed".to_owned()]);
}

/// ansible-lint, production profile (ansible/.ansible-lint), passes on the collection.
#[test]
fn ansible_lint_production_profile_passes_on_the_collection() {
    let (_root, collection, mut command) = in_source_copy("ansible-lint");
    command
        .args(["--offline", "--nocolor"])
        // Keep its cache out of the repository and of other runs.
        .env("XDG_CACHE_HOME", collection.join(".cache"));
    let ran = run_bounded(command, CHECKER_DEADLINE);
    assert!(
        ran.code == 0
            && ran
                .output
                .contains("Profile 'production' was required, and it passed"),
        "ansible-lint failed ({}):\n{}",
        ran.code,
        ran.output
    );
}

/// `ansible-test sanity` (every test it has for a collection: pylint, pep8, validate-modules,
/// yamllint, runtime-metadata, ...) passes, on the venv's Python.
#[test]
fn ansible_test_sanity_passes_on_the_collection() {
    let (_root, _collection, mut command) = in_source_copy("ansible-test");
    let out = Command::new(venv_bin().join("python"))
        .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
        .output()
        .expect("python version");
    let python = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    command.args(["sanity", "--color", "no", "--python", &python]);
    // The first run makes a virtual environment per test and fills it from PyPI.
    let tests = ["pylint", "validate-modules", "yamllint", "runtime-metadata"];
    run_bounded(command, SANITY_DEADLINE)
        .expect_success("ansible-test sanity")
        .expect_mentions(
            "ansible-test sanity",
            tests.map(|test| format!("Running sanity test \"{test}\"")),
        );
}

/// The collection's unit tests (ansible/tests/unit) pass under pytest.
#[test]
fn collection_unit_tests_pass() {
    let (_root, _collection, mut command) = in_source_copy("python");
    command.args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/unit"]);
    let ran = run_bounded(command, CHECKER_DEADLINE);
    assert!(
        ran.code == 0 && ran.output.contains(" passed") && !ran.output.contains("failed"),
        "the collection's unit tests failed ({}):\n{}",
        ran.code,
        ran.output
    );
}
