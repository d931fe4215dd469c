//! `fleetcert renew`, a server on its own (docs/dynamic-update.md): request, publish its
//! records by dynamic update and wait, finalize, remove its records — one process. Killed
//! at its own two steps (`renew.before_finalize`, `renew.before_cleanup`) and inside the
//! steps it shares with the other commands, the next ordinary `renew` completes without
//! help: the new set, the host's records gone from both servers, no state left.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, Weak};

use serde_json::Value;

use crate::support::day::{
    CERT, Expect, Names, ServiceSet, assert_safe_after_kill, assert_settled, host_killed_at,
    next_host_number, served_txt, shared, write_secret,
};
use crate::support::fixture::{Host, sandbox};
use crate::support::sandbox::Sandbox;

/// A sandbox whose signing zone takes dynamic updates signed with the `fleet` key.
struct UpdateSandbox {
    sb: Sandbox,
    secret: String,
}

/// The renew tests' sandbox, shared while they run (each test is a host of its own).
fn update_sandbox() -> Arc<UpdateSandbox> {
    static SHARED: Mutex<Weak<UpdateSandbox>> = Mutex::new(Weak::new());
    shared(&SHARED, || {
        let secret = crate::support::util::secret();
        let sb = sandbox().tsig(&format!("fleet={secret}")).start();
        UpdateSandbox { sb, secret }
    })
}

/// A standalone host that renews by itself through the sandbox's primary.
struct Standalone<'s> {
    host: Host<'s>,
    names: Names,
}

impl<'s> Standalone<'s> {
    fn new(shared: &'s UpdateSandbox) -> Self {
        let sb = &shared.sb;
        let n = next_host_number();
        let host = Host::named(
            sb,
            sb.acme_directory(),
            &format!("host{n}.example.test"),
            &[],
        );
        let secret_file = host.dir.path().join("update.secret");
        write_secret(&secret_file, &shared.secret);
        let extra = serde_json::json!({
            "update": {"server": sb.primary(), "key_name": "fleet", "secret_file": secret_file},
            "servers": [sb.primary(), sb.secondary()],
            "timeout": "30s",
        });
        let names = Names::new(n, extra, Value::Null);
        names.configure(&host, 1);
        Self { host, names }
    }

    /// An ordinary `renew`, which must succeed; its report.
    fn renew(&self) -> Value {
        self.host.run("renew", &[]).expect_code(0).json()
    }

    /// The TXT records at this host's names that `server` serves.
    fn served(&self, server: &str) -> BTreeSet<(String, String)> {
        let own: Vec<String> = self
            .names
            .all()
            .iter()
            .map(|name| format!("{name}.acme.test."))
            .collect();
        served_txt(self.host.sb, server)
            .into_iter()
            .filter(|(name, _)| own.contains(name))
            .collect()
    }
}

/// Renews a certificate with `renew` dying at `point`: a service must then read `expect`,
/// the host's records are served or not as `published` says, and the next `renew` must
/// complete the renewal and remove them.
fn renew_killed_at(point: &str, expect: Expect, published: bool) {
    let shared = update_sandbox();
    let sb = &shared.sb;
    let standalone = Standalone::new(&shared);
    let host = &standalone.host;
    let first = standalone.renew();
    assert_eq!(
        first["finalize"]["certs"][0]["status"], "issued",
        "{first:#}"
    );
    let old = ServiceSet::read(host, CERT);
    old.assert_consistent(host, CERT);
    // A second name makes it due.
    standalone.names.configure(host, 2);

    host_killed_at(host, "renew", point);
    let at_kill = assert_safe_after_kill(host, expect, &old);
    let left = standalone.served(sb.primary());
    assert_eq!(
        !left.is_empty(),
        published,
        "records served after the kill: {left:?}"
    );

    let report = standalone.renew();
    assert_eq!(report["changed"], expect == Expect::Old, "{report:#}");
    if published {
        assert!(report["cleanup"].is_object(), "no clean-up: {report:#}");
    }
    let now = ServiceSet::read(host, CERT);
    now.assert_consistent(host, CERT);
    now.assert_is(Expect::New, &old);
    if expect == Expect::New {
        assert_eq!(now, at_kill, "the next run installed another certificate");
    }
    // The clean-up waited for every server: none serves the host's records any more.
    for server in [sb.primary(), sb.secondary()] {
        let left = standalone.served(server);
        assert!(left.is_empty(), "{server} still serves {left:?}");
    }
    assert_settled(host);
    let again = standalone.renew();
    assert_eq!(again["changed"], false, "{again:#}");
    assert!(
        again["publish"].is_null() && again["cleanup"].is_null(),
        "a settled renew published: {again:#}"
    );
}

/// One test per point a `renew` is killed at.
macro_rules! renew_points {
    ($($test:ident: $point:literal => $expect:ident, $published:literal,)*) => {
        $(
            #[test]
            #[cfg_attr(
                not(feature = "crash-points"),
                ignore = "needs the binary built with --features crash-points (tests/run.sh)"
            )]
            fn $test() {
                renew_killed_at($point, Expect::$expect, $published);
            }
        )*
    };
}

renew_points! {
    renew_killed_after_saving_the_order_publishes_it_the_next_run: "request.order_saved" => Old, false,
    renew_killed_before_finalize_leaves_the_records_for_the_next_run: "renew.before_finalize" => Old, true,
    renew_killed_before_its_switch_leaves_the_old_set: "install.before_switch" => Old, true,
    renew_killed_before_the_cleanup_leaves_the_new_set_and_the_next_run_cleans_up: "renew.before_cleanup" => New, true,
}
