# Copyright: fleetcert maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Unit tests of plugins/filter/report.py."""

from __future__ import annotations

from ansible_collections.fleetcert.fleetcert.plugins.filter.report import (
    FilterModule,
    cert_failures,
    check_not_ok,
    due_certs,
    replaced_certs,
    run_summary,
)

REQUEST = {
    "certs": [
        {"name": "main", "status": "pending", "reason": "no certificate yet"},
        {"name": "nocname", "status": "failed", "reason": "_acme-challenge.x. has no CNAME: add it"},
        {"name": "ok", "status": "valid", "reason": "valid for 80 days"},
    ]
}
FINALIZE = {
    "certs": [
        {"name": "main", "status": "valid", "changed": True},
        {"name": "www", "status": "failed", "changed": False, "error": "validation failed"},
        {"name": "other", "status": "valid", "changed": True},
    ]
}


def test_replaced_certs_are_the_changed_ones_that_notify():
    assert replaced_certs(FINALIZE, ["main", "www"]) == ["main"]
    assert replaced_certs(FINALIZE, []) == []
    assert replaced_certs({}, ["main"]) == []


def test_cert_failures_name_the_step_and_the_reason():
    assert cert_failures(REQUEST, FINALIZE) == [
        "certificate nocname (request): _acme-challenge.x. has no CNAME: add it",
        "certificate www (finalize): validation failed",
    ]
    assert cert_failures({}, {"certs": [{"name": "x", "status": "failed"}]}) == ["certificate x (finalize): failed"]
    assert cert_failures({}, {}) == []


def test_cert_failures_name_records_that_have_nowhere_to_go():
    document = {"host": "gate1", "records": [{"name": "x", "value": "y"}], "certs": []}
    assert cert_failures(document, {}, True) == []
    [line] = cert_failures(document, {}, False)
    assert line.startswith("gate1 has challenge records to publish, but the inventory has no host in fleetcert_dns_primary")
    assert cert_failures({"host": "gate2", "records": []}, {}, False) == []


def test_cert_failures_name_a_refused_token_document_first():
    assert cert_failures({}, {}, True, ["host web07: record outside the allow-list"]) == [
        "token document refused by publish: host web07: record outside the allow-list"
    ]


def test_due_certs_are_the_ones_left_to_finalize():
    assert due_certs(REQUEST) == ["main"]
    assert due_certs({"certs": [{"name": "a", "status": "ready"}]}) == ["a"]
    assert due_certs({}) == []


def test_run_summary_has_one_line_per_host():
    hosts = [
        {"inventory_hostname": "good", "fleetcert_request_document": {"certs": []}, "fleetcert_finalize_report": {
            "certs": [{"name": "main", "status": "valid", "changed": True}]}},
        {"inventory_hostname": "quiet", "fleetcert_request_document": {"certs": []}, "fleetcert_finalize_report": {"certs": []}},
        # Nothing due: finalize did not run on it, and that is fine.
        {"inventory_hostname": "idle", "fleetcert_request_document": {"certs": [{"name": "main", "status": "valid"}]}},
        {"inventory_hostname": "bad", "fleetcert_request_document": REQUEST, "fleetcert_finalize_report": FINALIZE},
        {"inventory_hostname": "early"},
        {"inventory_hostname": "late", "fleetcert_request_document": REQUEST},
    ]
    assert run_summary(hosts) == [
        "good: ok; replaced: main",
        "quiet: ok; replaced: none",
        "idle: ok; replaced: none",
        "bad: FAILED nocname, www; replaced: main, other",
        "early: FAILED: did not get to request (see its error above)",
        "late: FAILED: did not get to finalize (see its error above)",
        "fleetcert check: OK on every host checked",
    ]
    assert run_summary(hosts[:1], False, False)[-1].startswith(
        "No host in fleetcert_dns_primary: the publish and cleanup plays are skipped.")


def test_run_summary_in_check_mode_says_what_would_happen():
    hosts = [
        {"inventory_hostname": "new", "__fleetcert_request": {"ready": False}, "fleetcert_certs": {"main": ["a"], "www": ["b"]}},
        {"inventory_hostname": "due", "fleetcert_request_document": REQUEST, "fleetcert_finalize_report": {"certs": []}},
    ]
    assert run_summary(hosts, True) == [
        "new: would install fleetcert and order: main, www",
        "due: FAILED nocname; would order: main (pending - no certificate yet); would install: nothing",
    ]


def test_check_not_ok_lists_the_hosts_whose_check_did_not_exit_0_with_its_line():
    def checked(rc, stdout):
        return {"rc": rc, "stdout": stdout, "changed": False}

    hosts = [
        {"inventory_hostname": "good", "__fleetcert_finalize_check": checked(0, "FLEETCERT OK - 1 certificate OK")},
        {"inventory_hostname": "soon", "__fleetcert_finalize_check": checked(1, "FLEETCERT WARNING - main: expires in 12 days\n")},
        {"inventory_hostname": "stale", "__fleetcert_finalize_check": checked(
            2, "FLEETCERT CRITICAL - main: 127.0.0.1:443 serves the previous certificate")},
        {"inventory_hostname": "mute", "__fleetcert_finalize_check": checked(3, "")},
        {"inventory_hostname": "primary", "__fleetcert_finalize_check": {"skipped": True, "changed": False}},
        {"inventory_hostname": "early"},
        # Nothing to finalize: the verdict fleetcert.fleetcert.run got with the request.
        {"inventory_hostname": "idle", "__fleetcert_request": {"check": {"rc": 0, "line": "FLEETCERT OK - 1 certificate OK"}}},
        {"inventory_hostname": "idle-late", "__fleetcert_request": {"check": {"rc": 1, "line": "FLEETCERT WARNING - main: 12 days"}}},
        {"inventory_hostname": "failed", "__fleetcert_request": {"failed": True}},
        # No handler ran after finalize: finalize --check's verdict, not request's before it.
        {"inventory_hostname": "renewed", "__fleetcert_finalize_check": {"skipped": True, "changed": False},
         "__fleetcert_finalize": {"check": {"rc": 2, "line": "FLEETCERT CRITICAL - main: 127.0.0.1:443 unreachable"}},
         "__fleetcert_request": {"check": {"rc": 0, "line": "FLEETCERT OK - 1 certificate OK"}}},
    ]
    assert check_not_ok(hosts) == [
        "soon: FLEETCERT WARNING - main: expires in 12 days",
        "stale: FLEETCERT CRITICAL - main: 127.0.0.1:443 serves the previous certificate",
        "mute: fleetcert check exited 3",
        "idle-late: FLEETCERT WARNING - main: 12 days",
        "renewed: FLEETCERT CRITICAL - main: 127.0.0.1:443 unreachable",
    ]
    assert check_not_ok([]) == []


def _limited(cert, limit, retry_after):
    return {"name": cert, "status": "failed", "reason": f"the CA's rate limit {limit} ...",
            "rate_limit": {"limit": limit, "retry_after": retry_after}}


def test_run_summary_groups_the_rate_limits_by_limit():
    exact = "new-certificates-per-exact-set-of-identifiers"
    hosts = [
        {"inventory_hostname": "web01", "fleetcert_finalize_report": {"certs": []},
         "fleetcert_request_document": {"certs": [
             _limited("main", "new-orders-per-account", "2026-12-05T17:00:00Z"),
             _limited("www", exact, "2026-12-06T08:00:00Z"),
             {"name": "ok", "status": "valid", "reason": "not due"},
         ]}},
        {"inventory_hostname": "web02", "fleetcert_finalize_report": {"certs": []},
         "fleetcert_request_document": {"certs": [
             _limited("main", "new-orders-per-account", "2026-12-05T14:00:00Z"),
             _limited("api", None, "2026-12-05T09:00:00Z"),
         ]}},
    ]
    assert run_summary(hosts) == [
        "web01: FAILED main, www; replaced: none",
        "web02: FAILED main, api; replaced: none",
        "rate limit (unnamed): 1 not ordered (web02 (api)); ordered again from 2026-12-05T09:00:00Z",
        "rate limit new-certificates-per-exact-set-of-identifiers: 1 not ordered (web01 (www)); "
        "ordered again from 2026-12-06T08:00:00Z",
        "rate limit new-orders-per-account: 2 not ordered (web01 (main), web02 (main)); "
        "ordered again from 2026-12-05T14:00:00Z to 2026-12-05T17:00:00Z",
        "fleetcert check: OK on every host checked",
    ]


def test_run_summary_lists_the_certificates_a_fallback_ca_issued():
    why = "primary CA https://ca-a.test/dir: connection refused; and it cannot wait: no certificate yet"
    hosts = [
        {"inventory_hostname": "web01", "fleetcert_request_document": {"certs": []},
         "fleetcert_finalize_report": {"certs": [
             {"name": "main", "status": "issued", "changed": True,
              "ca": "https://ca-b.test/dir", "fallback": why},
             {"name": "www", "status": "issued", "changed": True, "ca": "https://ca-a.test/dir"},
         ]}},
        {"inventory_hostname": "web02", "fleetcert_request_document": {"certs": []},
         "fleetcert_finalize_report": {"certs": [
             {"name": "api", "status": "issued", "changed": True,
              "ca": "https://ca-b.test/dir", "fallback": why},
         ]}},
    ]
    assert run_summary(hosts)[2:3] == [
        f"fallback CA https://ca-b.test/dir: issued 2 (web01 (main), web02 (api)); because {why}",
    ]


def test_the_filter_module_names_them():
    assert set(FilterModule().filters()) == {"cert_failures", "check_not_ok", "due_certs", "replaced_certs", "run_summary"}


def test_bad_input_is_refused_with_a_filter_error():
    import pytest
    from ansible.errors import AnsibleFilterError

    for call in (lambda: run_summary("host1"), lambda: check_not_ok({"a": 1}), lambda: due_certs(["x"]),
                 lambda: replaced_certs(FINALIZE, "main"), lambda: cert_failures({"certs": "x"}, {})):
        with pytest.raises(AnsibleFilterError):
            call()
