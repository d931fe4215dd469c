//! Renewal at fleet scale (docs/renewal.md): the CA's window (ARI, RFC 9773), `replaces`,
//! the days rule's spread, rate limits and orders that outlive their authorizations.
//!
//! Debian's Pebble 2.4 has no ARI and no profiles: a small front
//! (`tests/fake-ca/ari_profiles.py`) passes every request to the real Pebble and adds
//! `renewalInfo`, `meta.profiles`, the windows the test sets, `rateLimited` answers and
//! expired authorizations. Accounts, orders, validation and issuance stay the real Pebble's.
//!
//! A certificate "due by days" must be old, and Pebble only issues new ones: such tests hold
//! a certificate the test made ([`hold`]) with the validity they need, as a host holds one
//! issued earlier.

use serde_json::Value;
use time::Duration;

use crate::support::fake_ca::{FakeCa, ari_id, hold, now, parse_time, rfc3339};
use crate::support::fixture::{Host, cert, records, sandbox};
use crate::support::sandbox::Sandbox;

/// The certificate most tests here issue.
const CERTS: &[(&str, &[&str])] = &[("main", &["host7.example.test", "www7.example.test"])];

fn text<'v>(value: &'v Value, what: &str) -> &'v str {
    value[what]
        .as_str()
        .unwrap_or_else(|| panic!("no {what} in {value}"))
}

#[test]
fn due_by_days_orders_with_replaces_and_a_future_window_waits_unless_too_late() {
    let sb = sandbox().start();
    let fake = FakeCa::start(&sb, "");
    const HELD: &[(&str, &[&str])] = &[
        ("soon", &["host21.example.test"]),
        ("later", &["host22.example.test"]),
        ("late", &["host23.example.test"]),
    ];
    let host = Host::with_directory(&sb, &fake.directory(), HELD);
    let now = now();
    // 90-day certificates. `soon` and `later` have 15 days left: the days rule
    // (`before_days: 30`, spread over 10 days) says due whatever their seed. `late` has 8
    // days left: inside the safety net (a third of 30 days before expiry).
    let ids: Vec<String> = HELD
        .iter()
        .zip([15, 15, 8])
        .map(|((name, names), left)| {
            let not_after = now + Duration::days(left);
            ari_id(&hold(
                &host,
                name,
                names,
                not_after - Duration::days(90),
                not_after,
            ))
        })
        .collect();
    let [soon_id, later_id, late_id] = [ids[0].as_str(), ids[1].as_str(), ids[2].as_str()];
    // The CA has no window for `soon` (404: the days rule decides, as when a CA does not
    // answer), a window in 2 to 3 days for `later`, one after expiry for `late`.
    fake.set_windows(&[
        (later_id, now + Duration::days(2), now + Duration::days(3)),
        (late_id, now + Duration::days(20), now + Duration::days(21)),
    ]);

    let document = host.request().expect_code(0).json();
    let soon_entry = cert(&document, "soon");
    assert_eq!(soon_entry["status"], "pending", "{document:#}");
    assert!(
        text(soon_entry, "reason").starts_with("expires in"),
        "{soon_entry}"
    );
    let later_entry = cert(&document, "later");
    assert_eq!(
        later_entry["status"], "valid",
        "the days rule ordered early: {later_entry}"
    );
    let renew_at = parse_time(text(later_entry, "renew_at"));
    assert!(
        renew_at >= now + Duration::days(2) && renew_at < now + Duration::days(3),
        "not inside the CA's window: {later_entry}"
    );
    assert!(text(later_entry, "reason").contains("ARI"), "{later_entry}");
    let late_entry = cert(&document, "late");
    assert_eq!(
        late_entry["status"], "pending",
        "the safety net did not order: {late_entry}"
    );
    assert!(
        text(late_entry, "reason").contains("too late"),
        "{late_entry}"
    );

    // What the CA received: one order each for `soon` and `late`, each naming the
    // certificate it replaces (as openssl computes its ID); none for `later`.
    let orders = fake.new_orders();
    let replaces_of = |name: &str| -> Vec<Value> {
        orders
            .iter()
            .filter(|order| order["identifiers"] == serde_json::json!([name]))
            .map(|order| order["replaces"].clone())
            .collect()
    };
    assert_eq!(
        replaces_of("host21.example.test"),
        vec![Value::from(soon_id)],
        "{orders:?}"
    );
    assert_eq!(
        replaces_of("host23.example.test"),
        vec![Value::from(late_id)],
        "{orders:?}"
    );
    assert_eq!(
        replaces_of("host22.example.test"),
        Vec::<Value>::new(),
        "{orders:?}"
    );
    assert_eq!(orders.len(), 2, "{orders:?}");

    // The orders are real: Pebble validates the records and issues both renewals.
    host.place(&document);
    let report = host.finalize_ok();
    for name in ["soon", "late"] {
        assert_eq!(cert(&report, name)["status"], "issued", "{report:#}");
        sb.verify_chain(&host.file(name, "fullchain.pem"))
            .expect("openssl verify against Pebble's root");
    }
    assert_eq!(cert(&report, "later")["status"], "unchanged", "{report:#}");
}

#[test]
fn a_window_that_opened_orders_within_it_with_replaces() {
    let sb = sandbox().start();
    let fake = FakeCa::start(&sb, "");
    let host = Host::with_directory(&sb, &fake.directory(), CERTS);
    host.issue();
    let issued = fake.new_orders();
    assert_eq!(issued.len(), 1);
    assert_eq!(issued[0]["replaces"], Value::Null, "nothing to replace yet");
    let cert_file = host.file("main", "cert.pem");
    let first = std::fs::read(&cert_file).expect("cert");
    let id = ari_id(&cert_file);
    // A long window, so that this certificate's moment (its seed's share of the window)
    // is far from both ends whatever the seed.
    let span = Duration::days(1000);

    // A window in the future: nothing due, the moment lies inside it, and the CA was asked
    // about this very certificate.
    let start = now() + Duration::days(1);
    fake.set_windows(&[(&id, start, start + span)]);
    let document = host.request_ok();
    let entry = cert(&document, "main");
    assert_eq!(entry["status"], "valid", "{document:#}");
    assert_eq!(document["records"].as_array().map(Vec::len), Some(0));
    assert_eq!(document["changed"], false);
    assert_eq!(
        fake.renewal_info_requests(),
        vec![format!("GET /renewal-info/{id}")],
        "fleetcert asked for another certificate ID than openssl computes"
    );
    let moment = parse_time(text(entry, "renew_at"));
    assert!(moment >= start && moment < start + span, "{entry}");
    let offset = moment - start;
    assert_eq!(fake.new_orders().len(), 1);

    // The window has opened, the moment is an hour ahead: still nothing (the days rule
    // would not order a fresh certificate either).
    let start = now() + Duration::hours(1) - offset;
    fake.set_windows(&[(&id, start, start + span)]);
    let document = host.request_ok();
    let entry = cert(&document, "main");
    assert_eq!(entry["status"], "valid", "{document:#}");
    assert_eq!(parse_time(text(entry, "renew_at")), start + offset);
    assert_eq!(fake.new_orders().len(), 1);

    // The same window a little later: the moment passed a minute ago and the window is
    // open for days yet. Ordered now, inside the window, with `replaces`.
    let start = now() - Duration::minutes(1) - offset;
    let end = start + span;
    assert!(
        end - now() > Duration::minutes(10),
        "the seed put the moment at the very end"
    );
    fake.set_windows(&[(&id, start, end)]);
    let ordered_at = now();
    let document = host.request().expect_code(0).json();
    let entry = cert(&document, "main");
    // Pebble may reuse some or all of the authorizations it validated for the first
    // certificate: a name reused needs no record, and with both reused the order is ready.
    let records = records(&document);
    match text(entry, "status") {
        "pending" => assert!((1..=2).contains(&records.len()), "{document}"),
        "ready" => assert!(records.is_empty(), "{document}"),
        other => panic!("status {other}: {document}"),
    }
    assert!(
        text(entry, "reason").contains("ARI"),
        "reason does not name ARI: {entry}"
    );
    assert!(ordered_at >= start && ordered_at < end);
    assert_eq!(document["changed"], true);
    let orders = fake.new_orders();
    assert_eq!(orders.len(), 2, "{orders:?}");
    assert_eq!(orders[1]["replaces"], Value::from(id.clone()), "{orders:?}");
    assert_eq!(orders[1]["answer"], "created", "{orders:?}");
    if !records.is_empty() {
        host.place(&document);
    }
    host.finalize_ok();
    let second = std::fs::read(&cert_file).expect("cert");
    assert_ne!(first, second, "the certificate was not replaced");
    sb.verify_chain(&host.file("main", "fullchain.pem"))
        .expect("openssl verify");
}

#[test]
fn without_ari_certificates_issued_together_renew_apart_and_stay_put() {
    let sb = Sandbox::start();
    // Plain Pebble: no renewalInfo in its directory.
    const PAIR: &[(&str, &[&str])] = &[
        ("one", &["host31.example.test"]),
        ("two", &["host32.example.test"]),
    ];
    let host = Host::new(&sb, PAIR);
    // Two 90-day certificates issued in the same second, 10 days ago.
    let not_before = now() - Duration::days(10);
    let not_after = not_before + Duration::days(90);
    hold(
        &host,
        "one",
        &["host31.example.test"],
        not_before,
        not_after,
    );
    hold(
        &host,
        "two",
        &["host32.example.test"],
        not_before,
        not_after,
    );

    let moments = |document: &Value| -> (String, String) {
        for name in ["one", "two"] {
            assert_eq!(cert(document, name)["status"], "valid", "{document:#}");
        }
        let at = |name| text(cert(document, name), "renew_at").to_owned();
        (at("one"), at("two"))
    };
    let first = moments(&host.request_ok());
    let second = moments(&host.request_ok());
    assert_eq!(first, second, "a renewal moment moved between runs");
    assert_ne!(
        first.0, first.1,
        "certificates issued together renew together"
    );
    // Both inside the spread: from 30 (`before_days`) to 20 days before expiry.
    for at in [&first.0, &first.1] {
        let at = parse_time(at);
        assert!(
            at >= not_after - Duration::days(30) && at < not_after - Duration::days(20),
            "{at} is outside the spread"
        );
    }
    // Nothing was due, so nothing was asked of anyone: no account either.
    assert!(!host.state_dir().join("account.json").exists());
}

#[test]
fn a_rate_limit_fails_the_certificate_with_its_end_and_stops_the_next_order() {
    let sb = sandbox().start();
    let fake = FakeCa::start(&sb, "");
    let host = Host::with_directory(&sb, &fake.directory(), CERTS);
    let until = now() + Duration::hours(5);
    let header = httpdate::fmt_http_date(until.into());
    fake.set_rate_limit(
        "too many certificates (5) already issued for this exact set of identifiers in the \
         last 168h0m0s, retry after 2099-01-01 00:00:00 UTC: see \
         https://letsencrypt.org/docs/rate-limits/#new-certificates-per-exact-set-of-identifiers",
        Some(&header),
    );

    let run = host.request();
    run.expect_code(1);
    let document = run.json();
    let entry = cert(&document, "main");
    assert_eq!(entry["status"], "failed", "{document:#}");
    let reason = text(entry, "reason");
    assert!(
        reason.contains("new-certificates-per-exact-set-of-identifiers")
            && reason.contains(&format!("no new order before {}", rfc3339(until))),
        "the line names neither the limit nor the Retry-After time: {reason}"
    );
    assert!(!reason.contains('\n'));
    assert_eq!(
        entry["rate_limit"],
        serde_json::json!({
            "limit": "new-certificates-per-exact-set-of-identifiers",
            "retry_after": rfc3339(until),
        })
    );
    assert_eq!(document["records"].as_array().map(Vec::len), Some(0));
    assert_eq!(fake.new_orders().len(), 1);
    assert!(host.saved_order("main").is_none());
    let kept = host.state_dir().join("limits/main.json");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&kept)
            .expect("the limit is kept")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    // The CA would take an order again, but the limit's time has not come: the next run
    // fails the same way and sends no order at all.
    fake.clear_rate_limit();
    let posts = fake.new_order_posts();
    let run = host.request();
    run.expect_code(1);
    let again = run.json();
    assert_eq!(text(cert(&again, "main"), "reason"), reason);
    assert_eq!(cert(&again, "main")["rate_limit"], entry["rate_limit"]);
    assert_eq!(
        fake.new_order_posts(),
        posts,
        "a second order went out while the limit held"
    );

    // Once the time has passed (moved back in the kept file), the next run orders.
    let mut limit: Value =
        serde_json::from_str(&std::fs::read_to_string(&kept).expect("read")).expect("JSON");
    limit["retry_after"] = Value::from(rfc3339(now() - Duration::minutes(1)));
    std::fs::write(&kept, limit.to_string()).expect("write");
    let document = host.request_ok();
    assert_eq!(cert(&document, "main")["status"], "pending", "{document:#}");
    assert!(cert(&document, "main").get("rate_limit").is_none());
    assert_eq!(fake.new_orders().len(), 2);
    assert!(!kept.exists(), "a limit that ended was kept");
}

#[test]
fn an_order_whose_authorizations_expired_is_replaced_with_fresh_records() {
    let sb = sandbox().start();
    let fake = FakeCa::start(&sb, "");
    let host = Host::with_directory(&sb, &fake.directory(), CERTS);
    let first = host.request_ok();
    let first_records = records(&first);
    assert_eq!(first_records.len(), 2, "{first:#}");
    let first_url = host.saved_order("main").expect("saved order")["url"]
        .as_str()
        .expect("url")
        .to_owned();
    // A second request while the order is good hands out the same records, orders nothing.
    assert_eq!(records(&host.request_ok()), first_records);
    assert_eq!(fake.new_orders().len(), 1);

    // Pebble's way: the authorizations stay `pending`, with `expires` in the past.
    fake.expire_order(&first_url, "past");
    let second = host.request_ok();
    let entry = cert(&second, "main");
    assert_eq!(entry["status"], "pending", "{second:#}");
    let reason = text(entry, "reason");
    assert!(
        reason.contains("a new order, as the saved one") && reason.contains("expired at"),
        "the new order does not say why: {reason}"
    );
    let second_records = records(&second);
    assert_eq!(second_records.len(), 2, "{second:#}");
    for record in &second_records {
        assert!(
            !first_records.contains(record),
            "a stale record was handed out: {record:?}"
        );
    }
    assert_eq!(second["changed"], true);
    let second_url = host.saved_order("main").expect("saved order")["url"]
        .as_str()
        .expect("url")
        .to_owned();
    assert_ne!(second_url, first_url);
    assert_eq!(fake.new_orders().len(), 2);

    // A CA that says `expired` outright: the same.
    fake.expire_order(&second_url, "expired");
    let third = host.request_ok();
    let reason = text(cert(&third, "main"), "reason");
    assert!(reason.contains("a new order, as the saved one"), "{reason}");
    let third_records = records(&third);
    for record in &third_records {
        assert!(
            !second_records.contains(record),
            "a stale record was handed out: {record:?}"
        );
    }
    assert_eq!(fake.new_orders().len(), 3);

    // The fresh records are the ones the CA validates.
    host.place(&third);
    host.finalize_ok();
    sb.verify_chain(&host.file("main", "fullchain.pem"))
        .expect("openssl verify");
}

#[test]
fn ari_off_never_asks_the_ca() {
    let sb = Sandbox::start();
    let fake = FakeCa::start(&sb, "");
    let host = Host::with_directory(&sb, &fake.directory(), CERTS);
    host.configure("renew: {ari: false}\n", CERTS);
    host.issue();
    let now = now();
    fake.set_windows(&[("*", now - Duration::days(2), now - Duration::days(1))]);
    assert_eq!(host.request_ok()["certs"][0]["status"], "valid");
    assert_eq!(fake.renewal_info_requests(), Vec::<String>::new());
}

#[test]
fn profile_must_be_one_the_ca_offers() {
    let sb = Sandbox::start();
    let fake = FakeCa::start(&sb, "classic,shortlived");

    let offered = Host::with_directory(&sb, &fake.directory(), CERTS);
    offered.write_config(
        &offered
            .host_config()
            .acme_set("profile", "shortlived")
            .certs(CERTS),
    );
    let document = offered.request_ok();
    assert_eq!(document["certs"][0]["status"], "pending", "{document}");
    assert_eq!(fake.new_orders()[0]["profile"], "shortlived");

    let unknown = Host::with_directory(&sb, &fake.directory(), CERTS);
    unknown.write_config(
        &unknown
            .host_config()
            .acme_set("profile", "tiny")
            .certs(CERTS),
    );
    let posts = fake.new_order_posts();
    let run = unknown.request();
    run.expect_code(1);
    let document = run.json();
    assert_eq!(document["certs"][0]["status"], "failed");
    let reason = document["certs"][0]["reason"].as_str().expect("reason");
    assert!(
        reason.contains("`tiny`") && reason.contains("classic, shortlived"),
        "{reason}"
    );
    assert_eq!(document["records"].as_array().map(Vec::len), Some(0));
    assert!(
        unknown.saved_order("main").is_none(),
        "an order was saved for a profile the CA does not offer"
    );
    assert_eq!(
        fake.new_order_posts(),
        posts,
        "an order went out for profile `tiny`"
    );
}
