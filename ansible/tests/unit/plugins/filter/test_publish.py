# Copyright: fleetcert maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Unit tests of plugins/filter/publish.py."""

from __future__ import annotations

from ansible_collections.fleetcert.fleetcert.plugins.filter.publish import (
    FilterModule,
    allow_list,
    publish_documents,
    publish_preview,
    refused_hosts,
)


def host(name, **variables):
    return dict(inventory_hostname=name, **variables)


def document(name, *certs):
    return {
        "version": 1,
        "host": name,
        "records": [{"name": f"{name}.acme.test.", "value": "v" * 43, "cert": "main", "identifier": name}],
        "certs": [{"name": cert, "status": status, "reason": "r"} for cert, status in certs],
    }


def test_allow_list_gives_each_host_the_names_of_its_own_certificates():
    hosts = [
        host("web2", fleetcert_certs={"main": ["web2.example.org"], "www": ["www.example.org", "web2.example.org"]}),
        host("web1", fleetcert_certs={"main": ["web1.example.org"]}, fleetcert_host="web1.prod.example.org"),
        host("ns1"),
        host("empty", fleetcert_certs={}),
        host("map", fleetcert_certs={"zk": {"names": ["zk1.example.org"]}}),
    ]
    assert allow_list(hosts) == {
        "map": ["zk1.example.org"],
        "web1.prod.example.org": ["web1.example.org"],
        "web2": ["web2.example.org", "www.example.org"],
    }


def test_publish_documents_are_keyed_by_the_inventorys_identity_and_cleanup_empties_them():
    hosts = [
        host("a", fleetcert_request_document=document("a", ("main", "pending"))),
        host("b"),
        host("c", fleetcert_host="c.prod", fleetcert_request_document=document("c.prod")),
        # The document says it is "a": the key stays the inventory's, and publish refuses it.
        host("d", fleetcert_request_document=document("a")),
    ]
    assert publish_documents(hosts) == {
        "a": document("a", ("main", "pending")),
        "c.prod": document("c.prod"),
        "d": document("a"),
    }
    cleaned = publish_documents(hosts, True)
    assert cleaned["a"] == dict(document("a"), records=[], certs=[])
    assert set(cleaned) == {"a", "c.prod", "d"}
    # The hosts' own documents are not changed by the cleanup.
    assert hosts[0]["fleetcert_request_document"]["records"]


def test_publish_preview_says_what_a_real_run_would_do():
    due = [document("a", ("main", "pending"), ("www", "valid")), document("b", ("main", "ready"))]
    assert publish_preview(due, "acme.test") == (
        "would publish the challenge records of a main, b main in acme.test (their values exist only "
        "once the orders are made), reload and wait for every server"
    )
    assert publish_preview(due, "acme.test", cleanup=True) == "would empty the signing zone acme.test again after finalize"
    assert publish_preview([], "acme.test").startswith("no host has a token document")
    assert publish_preview({"a": due[0], "b": due[1]}, "acme.test") == publish_preview(due, "acme.test")
    quiet = [document("a", ("main", "valid"))]
    assert publish_preview(quiet, "acme.test") == "no certificate is due: the zone acme.test stays as it is"
    assert "it would be rewritten" in publish_preview(quiet, "acme.test", changed=True)


def test_publish_preview_in_update_mode_speaks_of_updates_not_of_the_file():
    due = [document("a", ("main", "pending"))]
    assert publish_preview(due, "acme.test", update=True) == (
        "would publish the challenge records of a main in acme.test (their values exist only "
        "once the orders are made), send them to the primary by DNS UPDATE and wait for every server"
    )
    quiet = [document("a", ("main", "valid"))]
    stale = publish_preview(quiet, "acme.test", changed=True, update=True)
    assert "an UPDATE would add the missing values and delete the stale ones" in stale
    assert "file" not in stale
    assert publish_preview(quiet, "acme.test", update=True) == publish_preview(quiet, "acme.test")


def test_the_filter_module_names_them():
    assert set(FilterModule().filters()) == {"allow_list", "publish_documents", "publish_preview", "refused_hosts"}


def test_refused_hosts_are_named_by_their_inventory_name():
    hosts = [
        {"inventory_hostname": "web01"},
        {"inventory_hostname": "web07", "fleetcert_host": "web07.example.org"},
        {"inventory_hostname": "ns1"},
    ]
    report = {"refused": [{"host": "web07.example.org", "error": "not in the allow-list"},
                          {"host": "web07.example.org", "error": "a second line"}]}
    assert refused_hosts(report, hosts) == [{"name": "web07", "errors": ["not in the allow-list", "a second line"]}]
    assert refused_hosts({"changed": False}, hosts) == []
    assert refused_hosts({}, hosts) == []
