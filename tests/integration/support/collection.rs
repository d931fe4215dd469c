//! The Ansible collection fleetcert.fleetcert (ansible/) as an operator gets it: built with
//! `ansible-galaxy collection build` and installed with `ansible-galaxy collection install`
//! into a fresh collections path, once per test run.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use super::venv::{repo, run_bounded, tool};

/// The collection's path below a collections directory.
pub(crate) const SUBDIR: &str = "ansible_collections/fleetcert/fleetcert";

/// Guards against a hang, not timings: each is several times what the tool takes on a loaded
/// 2-core machine (build, install, syntax check and ansible-doc take seconds; ansible-lint about
/// a minute; ansible-test sanity up to ten minutes under load). A tool that reaches one is
/// killed and the failure names its command line.
pub(crate) const QUICK_TOOL_DEADLINE: Duration = Duration::from_secs(600);
pub(crate) const CHECKER_DEADLINE: Duration = Duration::from_secs(1200);
pub(crate) const SANITY_DEADLINE: Duration = Duration::from_secs(2400);

/// Under target/tmp (cargo's CARGO_TARGET_TMPDIR): kept for a look after a failure, removed by
/// `cargo clean`.
pub(crate) fn scratch(prefix: &str) -> PathBuf {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("scratch dir")
        .keep()
}

/// A collections path (for ANSIBLE_COLLECTIONS_PATH) holding fleetcert.fleetcert installed from
/// the tarball `ansible-galaxy collection build` made of ansible/; built once per test run.
pub(crate) fn installed() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = scratch("collection-");
        let built = dir.join("built");
        let mut build = tool("ansible-galaxy");
        build
            .args(["collection", "build", "--output-path"])
            .arg(&built)
            .arg(repo().join("ansible"));
        run_bounded(build, QUICK_TOOL_DEADLINE).expect_success("ansible-galaxy collection build");
        let tarball = built.join(format!(
            "fleetcert-fleetcert-{}.tar.gz",
            env!("CARGO_PKG_VERSION")
        ));
        assert!(tarball.is_file(), "no {}", tarball.display());
        let collections = dir.join("collections");
        let mut install = tool("ansible-galaxy");
        install
            .args(["collection", "install", "--offline", "--collections-path"])
            .arg(&collections)
            .arg(&tarball);
        run_bounded(install, QUICK_TOOL_DEADLINE)
            .expect_success("ansible-galaxy collection install");
        collections
    })
}
