# Copyright: fleetcert maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Unit tests of plugins/filter/config.py."""

from __future__ import annotations

from ansible_collections.fleetcert.fleetcert.plugins.filter.config import FilterModule, issuer_config, without_empty


def test_without_empty_drops_only_the_named_empty_keys():
    config = {"zone": "acme.test", "template": "", "servers": [], "allow": {}, "ttl": 0, "soa": {}, "x": None}
    assert without_empty(config, ["template", "servers", "allow", "ttl", "x"]) == {"zone": "acme.test", "ttl": 0, "soa": {}}
    assert without_empty({"servers": ["127.0.0.1:53"]}, ["servers"]) == {"servers": ["127.0.0.1:53"]}


def test_issuer_config_leaves_acme_out_and_gives_a_test_issuer_its_options():
    ca = ("/etc/fleetcert/ci-ca.pem", "/etc/fleetcert/ci-ca.key")
    assert issuer_config("acme", *ca, "30d", True) == ""
    assert issuer_config("self-signed", *ca, "", False) == {"self-signed": {}}
    assert issuer_config("local-ca", *ca, "", False) == {
        "local-ca": {"cert": "/etc/fleetcert/ci-ca.pem", "key": "/etc/fleetcert/ci-ca.key"}
    }
    assert issuer_config("local-ca", *ca, "90s", True)["local-ca"] == {
        "cert": "/etc/fleetcert/ci-ca.pem",
        "key": "/etc/fleetcert/ci-ca.key",
        "lifetime": "90s",
        "replace_ca_issued": True,
    }


def test_the_filter_module_names_them():
    assert set(FilterModule().filters()) == {"without_empty", "issuer_config"}
