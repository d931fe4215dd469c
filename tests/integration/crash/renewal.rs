//! A renewal's order carries `replaces` (RFC 9773, docs/renewal.md), which the CA records:
//! an order killed before it is saved is an orphan that still claims the old certificate.
//! Against the fake CA in front of Pebble (Pebble 2.4 has no ARI), made to refuse a
//! `replaces` already claimed, as RFC 9773 section 5 has a CA do while the claiming order
//! is not invalid.

use serde_json::Value;

use crate::support::day::{
    CERT, Day, Expect, Names, Zone, assert_safe_after_kill, host_killed_at, next_host_number,
};
use crate::support::fake_ca::{FakeCa, ari_id};
use crate::support::fixture::sandbox;

/// request dies after the CA created the renewal's order (with `replaces`): the host keeps
/// the old set and no order; the next day's `replaces` is refused (`alreadyReplaced`, the
/// orphan holds it), and fleetcert orders again without the field and completes the renewal.
#[test]
#[cfg_attr(
    not(feature = "crash-points"),
    ignore = "needs the binary built with --features crash-points (tests/run.sh)"
)]
fn renewal_killed_after_its_order_is_created_orders_again_without_replaces() {
    let sb = sandbox().start();
    let fake = FakeCa::start(&sb, "");
    fake.refuse_replaced();
    let zone = Zone::new(&sb, "");
    let names = Names::new(next_host_number(), Value::Null, Value::Null);
    let day = Day::with(&sb, &zone, names, &fake.directory());
    let old = day.issued_and_due();
    let id = ari_id(&day.host.file(CERT, "cert.pem"));

    host_killed_at(&day.host, "request", "request.order_created");
    assert_safe_after_kill(&day.host, Expect::Old, &old);
    assert!(day.host.saved_order(CERT).is_none(), "an order was saved");
    let orders = fake.new_orders();
    assert_eq!(orders.len(), 2, "{orders:#?}");
    assert_eq!(
        orders[1]["replaces"],
        Value::from(id.clone()),
        "{orders:#?}"
    );
    assert_eq!(orders[1]["answer"], "created", "{orders:#?}");

    day.recovers(&old);
    let orders = fake.new_orders();
    assert_eq!(orders.len(), 4, "{orders:#?}");
    assert_eq!(orders[2]["replaces"], Value::from(id), "{orders:#?}");
    assert_eq!(orders[2]["answer"], "alreadyReplaced", "{orders:#?}");
    assert_eq!(orders[3]["replaces"], Value::Null, "{orders:#?}");
    assert_eq!(orders[3]["answer"], "created", "{orders:#?}");
}
