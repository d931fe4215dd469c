//! LXD daemons on loopback for the tests (`tests/sandbox/lxd.sh`): one server on its own or a
//! cluster, each serving its API certificate on its HTTPS port; and the shipped hand-over.
//!
//! ```ignore
//! let lxd = Lxd::cluster(3);                     // or Lxd::server()
//! lxd.member(2).address();                       // 127.0.0.1:PORT, its API
//! lxd.member(1).lxd_dir();                       // its LXD_DIR
//! lxd.restart_all();                             // every member down and up again
//! ```

// A helper API: no single test uses all of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::thread;
use std::time::{Duration, Instant};

use super::sandbox::{ScriptDir, run};
use super::services::{Leaf, served_leaf};

/// How long a member may take to serve a certificate handed over (LXD switches a cluster's
/// at once; a restart takes about a second).
/// A guard against a hang: on a loaded 2-core machine a restart takes far longer.
const SERVE_TIMEOUT: Duration = Duration::from_secs(300);

/// The path of `tests/sandbox/lxd.sh`.
pub(crate) fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sandbox/lxd.sh")
}

/// The hand-over as the collection ships it (the package installs the same file).
pub(crate) fn hand_over() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("ansible/roles/fleetcert_lxd/files/lxd-hand-over")
}

/// LXD daemons started by `lxd.sh`: one server on its own, or a cluster. Dropping it stops
/// every daemon (the script's watchdog does, if this process dies).
pub(crate) struct Lxd {
    dir: ScriptDir,
}

impl Lxd {
    /// One server on its own (not clustered), its API on 127.0.0.1.
    pub(crate) fn server() -> Self {
        Self {
            dir: ScriptDir::start(script(), "fleetcert-lxd-", "lxd.env", &[]),
        }
    }

    /// A cluster of `members` on 127.0.0.1, each member on a port of its own.
    pub(crate) fn cluster(members: usize) -> Self {
        Self {
            dir: ScriptDir::start(
                script(),
                "fleetcert-lxd-",
                "lxd.env",
                &["--cluster".into(), members.to_string().into()],
            ),
        }
    }

    pub(crate) fn members(&self) -> usize {
        self.dir
            .var("MEMBERS")
            .parse()
            .expect("MEMBERS is a number")
    }

    /// Member `k` (1-based).
    pub(crate) fn member(&self, k: usize) -> Member<'_> {
        assert!((1..=self.members()).contains(&k), "no member {k}");
        Member { lxd: self, k }
    }

    pub(crate) fn all(&self) -> Vec<Member<'_>> {
        (1..=self.members()).map(|k| self.member(k)).collect()
    }

    /// Every member down (SIGTERM, as `systemctl restart lxd` does) and up again on the same
    /// ports; returns once each serves HTTPS, with how long that took.
    pub(crate) fn restart_all(&self) -> Duration {
        let began = Instant::now();
        self.dir.run_ok("restart", &[]);
        began.elapsed()
    }

    /// How long `start` took until every member served HTTPS.
    pub(crate) fn startup(&self) -> Duration {
        Duration::from_millis(self.dir.var("STARTUP_MS").parse().expect("STARTUP_MS"))
    }
}

/// One LXD daemon of an [`Lxd`].
pub(crate) struct Member<'a> {
    lxd: &'a Lxd,
    k: usize,
}

impl Member<'_> {
    fn var(&self, what: &str) -> &str {
        self.lxd.dir.var(&format!("MEMBER{}_{what}", self.k))
    }

    pub(crate) fn name(&self) -> String {
        format!("member{}", self.k)
    }

    /// Its LXD_DIR.
    pub(crate) fn lxd_dir(&self) -> PathBuf {
        PathBuf::from(self.var("DIR"))
    }

    /// `127.0.0.1:PORT`, its API (core.https_address).
    pub(crate) fn address(&self) -> &str {
        self.var("ADDRESS")
    }

    /// An executable that restarts this member alone (`lxd.sh restart DIR K`).
    pub(crate) fn restart_command(&self) -> PathBuf {
        PathBuf::from(self.var("RESTART"))
    }

    /// An `lxc` bound to this member (its LXD_DIR, the sandbox's LXD_CONF).
    pub(crate) fn lxc(&self) -> PathBuf {
        PathBuf::from(self.var("LXC"))
    }

    /// `lxd.sh restart DIR K` as it ran.
    pub(crate) fn restart(&self) -> Output {
        run(&mut Command::new(self.restart_command()))
    }

    pub(crate) fn log(&self) -> PathBuf {
        PathBuf::from(self.var("LOG"))
    }

    /// The leaf this member serves on its port for `sni`, its chain verified against `root`
    /// when given.
    pub(crate) fn served(&self, sni: &str, root: Option<&Path>) -> Result<Leaf, String> {
        served_leaf(self.address(), sni, root)
    }

    /// Waits until this member serves `leaf` (chain verified against `root`); panics after
    /// [`SERVE_TIMEOUT`] naming what it serves instead.
    #[track_caller]
    pub(crate) fn wait_serves(&self, sni: &str, root: &Path, leaf: &Leaf) {
        let deadline = Instant::now() + SERVE_TIMEOUT;
        loop {
            let served = self.served(sni, Some(root));
            if served.as_ref() == Ok(leaf) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} ({}) still serves {served:?} after {SERVE_TIMEOUT:?}, not {leaf:?}",
                self.name(),
                self.address()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }
}
