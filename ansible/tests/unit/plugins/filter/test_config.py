# Copyright: fleetcert maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Unit tests of plugins/filter/config.py."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.fleetcert.fleetcert.plugins.filter.config import (
    FilterModule,
    host_config,
    install_directories,
    install_fingerprint,
    install_record,
    issuer_config,
    without_empty,
    zone_config,
)

HOST = {
    "fleetcert_host": "web01.example.org",
    "fleetcert_certs": {"main": ["web01.example.org", "www.example.org"]},
    "fleetcert_issuer": "acme",
    "fleetcert_issuer_ca_cert": "/etc/fleetcert/ci-ca.pem",
    "fleetcert_issuer_ca_key": "/etc/fleetcert/ci-ca.key",
    "fleetcert_issuer_ca_cert_src": "",
    "fleetcert_issuer_ca_key_src": "",
    "fleetcert_issuer_lifetime": "",
    "fleetcert_issuer_replace_ca_issued": False,
    "fleetcert_acme_directory": "https://acme.example/dir",
    "fleetcert_acme_email": "ops@example.org",
    "fleetcert_agree_tos": True,
    "fleetcert_signing_zone": "acme.example.net",
    "fleetcert_ca_bundle": "",
    "fleetcert_acme_profile": "",
    "fleetcert_acme_eab": {},
    "fleetcert_challenge_records": "per-name",
    "fleetcert_resolver": "127.0.0.1:53",
    "fleetcert_state_dir": "/var/lib/fleetcert",
    "fleetcert_cert_dir": "/etc/fleetcert/certs",
    "fleetcert_layout": "fleetcert",
    "fleetcert_group": "fleetcert",
    "fleetcert_key_type": "ecdsa-p384",
    "fleetcert_renew_before_days": "30",
    "fleetcert_renew_ari": True,
    "fleetcert_metrics_textfile_dir": "",
}


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


def test_host_config_keeps_the_order_and_leaves_empty_keys_out():
    config = host_config(HOST)
    assert list(config) == ["host", "acme", "signing_zone", "challenge_records", "resolver", "state_dir",
                            "cert_dir", "layout", "group", "key", "renew", "certs"]
    assert config["acme"] == {"directory": "https://acme.example/dir", "email": "ops@example.org", "agree_tos": True}
    assert config["renew"] == {"before_days": 30, "ari": True}
    eab = host_config(dict(HOST, fleetcert_acme_eab={"kid": "k", "hmac_key": "s"}, fleetcert_metrics_textfile_dir="/m"))
    assert eab["acme"]["eab"] == {"kid": "k", "hmac_key": "s"}
    assert eab["metrics"] == {"textfile_dir": "/m"}
    gate = host_config(dict(HOST, fleetcert_issuer="self-signed", fleetcert_acme_email=None))
    assert gate["issuer"] == {"self-signed": {}} and "acme" not in gate and "signing_zone" not in gate
    second = {"directory": "https://ca-b.example/dir", "email": "ops@example.org", "agree_tos": True,
              "eab": {"kid": "k", "hmac_key_file": "/etc/fleetcert/ca-b.eab"}}
    with_fallback = host_config(dict(HOST, fleetcert_fallback=[second]))
    assert list(with_fallback)[1:4] == ["acme", "fallback", "signing_zone"]
    assert with_fallback["fallback"] == [second]
    assert "fallback" not in host_config(dict(HOST, fleetcert_issuer="self-signed", fleetcert_fallback=[second]))
    within = host_config(dict(HOST, fleetcert_fallback=[second], fleetcert_renew_fallback_within_days="5"))
    assert within["renew"] == {"before_days": 30, "ari": True, "fallback_within_days": 5}


@pytest.mark.parametrize(
    "change, words",
    [
        ({"fleetcert_acme_email": None}, ["web01.example.org", "fleetcert_acme_email"]),
        ({"fleetcert_agree_tos": False}, ["fleetcert_agree_tos: true"]),
        ({"fleetcert_certs": {"main": "web01.example.org"}}, ["fleetcert_certs.main of web01.example.org", "list of names"]),
        ({"fleetcert_renew_before_days": "soon"}, ["fleetcert_renew_before_days", "whole number", "'soon'"]),
        ({"fleetcert_renew_fallback_within_days": "x"}, ["fleetcert_renew_fallback_within_days", "whole number"]),
        ({"fleetcert_issuer": "local-ca", "fleetcert_issuer_ca_cert_src": "/x"}, ["fleetcert_issuer_ca_key_src"]),
        ({"fleetcert_resolver": None}, ["fleetcert_resolver is not set"]),
    ],
)
def test_host_config_refuses_bad_input_naming_the_variable(change, words):
    with pytest.raises(AnsibleFilterError) as err:
        host_config(dict(HOST, **change))
    for word in words:
        assert word in str(err.value)


INSTALL = {
    "inventory_hostname": "web01",
    "fleetcert_install_method": "copy",
    "fleetcert_install_binary_src": "",
    "fleetcert_binary": "/usr/local/bin/fleetcert",
    "fleetcert_group": "fleetcert",
    "fleetcert_certs": {"main": ["a"]},
    "fleetcert_issuer": "acme",
    "fleetcert_state_dir": "/var/lib/fleetcert",
    "fleetcert_cert_dir": "/etc/fleetcert/certs",
    "fleetcert_config_path": "/etc/fleetcert/fleetcert.yaml",
    "fleetcert_zone_config_path": "",
    "fleetcert_metrics_textfile_dir": "/var/lib/prometheus/node-exporter",
}


def test_install_directories_and_record(tmp_path):
    assert install_directories(INSTALL) == [
        {"path": "/usr/local/bin", "group": "root", "mode": "0755"},
        {"path": "/var/lib/fleetcert", "group": "root", "mode": "0700"},
        {"path": "/etc/fleetcert/certs", "group": "fleetcert", "mode": "0750"},
        {"path": "/etc/fleetcert", "group": "root", "mode": "0755"},
        {"path": "/var/lib/prometheus/node-exporter", "group": "root", "mode": "0755"},
    ]
    assert install_record(INSTALL) == "/etc/fleetcert/.fleetcert-install.json"
    primary = dict(INSTALL, fleetcert_certs={}, fleetcert_install_method="package",
                   fleetcert_zone_config_path="/srv/zone/zone.yaml", fleetcert_metrics_textfile_dir="")
    assert install_directories(primary) == [{"path": "/srv/zone", "group": "root", "mode": "0700"}]
    assert install_record(primary) == "/srv/zone/.fleetcert-install.json"


def test_install_fingerprint_changes_with_every_input(tmp_path):
    binary = tmp_path / "fleetcert"
    binary.write_bytes(b"one")
    copy = dict(INSTALL, fleetcert_install_binary_src=str(binary))
    first = install_fingerprint(copy)
    assert first == install_fingerprint(dict(copy)) and first.startswith("v1:")
    binary.write_bytes(b"other")
    assert install_fingerprint(copy) != first
    assert install_fingerprint(dict(copy, fleetcert_cert_dir="/srv/certs")) != install_fingerprint(copy)
    url = dict(INSTALL, fleetcert_install_method="url", fleetcert_install_url="https://x/fleetcert",
               fleetcert_install_sha256="a" * 64)
    assert install_fingerprint(url) != install_fingerprint(dict(url, fleetcert_install_sha256="b" * 64))
    package = dict(INSTALL, fleetcert_install_method="package", fleetcert_install_package_src="",
                   fleetcert_install_package_name="fleetcert", fleetcert_install_package_version="")
    assert install_fingerprint(package) != install_fingerprint(dict(package, fleetcert_install_package_version="1.2"))


@pytest.mark.parametrize(
    "change, words",
    [
        ({"fleetcert_install_method": "url"}, ["fleetcert_install_method url on web01", "fleetcert_install_sha256"]),
        ({"fleetcert_install_binary_src": ""}, ["fleetcert_install_method copy on web01", "fleetcert_install_binary_src"]),
        ({"fleetcert_install_binary_src": "/nonexistent/fleetcert"}, ["/nonexistent/fleetcert: cannot read it"]),
        ({"fleetcert_install_method": "pip"}, ["package, url or copy", "'pip'"]),
    ],
)
def test_install_fingerprint_refuses_what_cannot_be_installed(change, words):
    with pytest.raises(AnsibleFilterError) as err:
        install_fingerprint(dict(INSTALL, **change))
    for word in words:
        assert word in str(err.value)


ZONE = {
    "inventory_hostname": "ns1",
    "fleetcert_zone_name": "acme.test",
    "fleetcert_zone_file": "/var/lib/bind/acme.test.zone",
    "fleetcert_zone_update": None,
    "fleetcert_zone_soa": {"mname": "ns1.acme.test.", "rname": "hostmaster.acme.test."},
    "fleetcert_zone_nameservers": ["ns1.acme.test."],
    "fleetcert_zone_reload": ["rndc", "reload", "acme.test"],
    "fleetcert_zone_template": "",
    "fleetcert_zone_state_dir": "/var/lib/fleetcert/publish",
    "fleetcert_zone_ttl": "60",
    "fleetcert_zone_servers": [],
    "fleetcert_zone_resolver": "127.0.0.1:53",
    "fleetcert_zone_timeout": "300s",
    "fleetcert_zone_lock_timeout": "120s",
    "fleetcert_zone_record_lifetime": "2h",
    "fleetcert_zone_challenge_records": "per-name",
    "fleetcert_zone_max_values_per_name": 100,
    "fleetcert_metrics_textfile_dir": "",
}


def test_zone_config_by_file_and_by_update():
    config = zone_config(ZONE, {"web01": ["web01.example.org"]})
    assert list(config) == ["zone", "zone_file", "soa", "nameservers", "reload", "ttl", "resolver", "timeout",
                            "lock_timeout", "record_lifetime", "challenge_records", "max_values_per_name", "allow"]
    assert config["ttl"] == 60
    update = dict(ZONE, fleetcert_zone_file=None, fleetcert_zone_soa=None, fleetcert_zone_nameservers=None,
                  fleetcert_zone_reload=None,
                  fleetcert_zone_update={"server": "192.0.2.1:53", "key_name": "k", "secret_file": "/s"})
    config = zone_config(update)
    assert config["update"] == {"server": "192.0.2.1:53", "key_name": "k", "algorithm": "hmac-sha256", "secret_file": "/s"}
    assert config["state_dir"] == "/var/lib/fleetcert/publish" and "zone_file" not in config and "allow" not in config


@pytest.mark.parametrize(
    "change, words",
    [
        ({"fleetcert_zone_file": None}, ["ns1 publishes the signing zone acme.test: set one of fleetcert_zone_file", "and fleetcert_zone_update"]),
        ({"fleetcert_zone_update": {"server": "x"}}, ["set only one of fleetcert_zone_file"]),
        ({"fleetcert_zone_soa": None}, ["so it needs fleetcert_zone_soa"]),
        ({"fleetcert_zone_file": None, "fleetcert_zone_update": {"server": "192.0.2.1:53"}},
         ["by dynamic update to 192.0.2.1:53", "remove fleetcert_zone_soa, fleetcert_zone_nameservers, fleetcert_zone_reload"]),
    ],
)
def test_zone_config_refuses_neither_both_and_mixed(change, words):
    with pytest.raises(AnsibleFilterError) as err:
        zone_config(dict(ZONE, **change))
    for word in words:
        assert word in str(err.value)


def test_the_filter_module_names_them():
    assert set(FilterModule().filters()) == {
        "without_empty", "issuer_config", "host_config", "install_fingerprint", "install_directories",
        "install_record", "zone_config",
    }
