# Copyright: fleetcert maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Filters that build the configs the roles render (the host config, the zone config).

tests/unit/plugins/filter/test_config.py tests them.
"""

from __future__ import annotations


def without_empty(mapping, keys):
    """``mapping`` without those of ``keys`` whose value is empty ("", [], {}, None).

    The configs the roles render leave an optional key out rather than write it empty,
    so fleetcert applies its own default.
    """
    return {k: v for k, v in mapping.items() if not (k in keys and (v is None or v == "" or v == [] or v == {}))}


def issuer_config(issuer, ca_cert, ca_key, lifetime, replace_ca_issued):
    """The host config's ``issuer:`` for the role variables; ``""`` for ``acme``, the default.

    ``acme`` is left out of the config (see ``without_empty``) so that an ACME host's config
    stays what it was. A test issuer is a map of its name to its options: ``local-ca`` has
    the CA's files, both have ``lifetime`` when one is given and ``replace_ca_issued`` when it
    is on (docs/test-gates.md).
    """
    if issuer == "acme":
        return ""
    options = {}
    if issuer == "local-ca":
        options = {"cert": ca_cert, "key": ca_key}
    if lifetime:
        options["lifetime"] = lifetime
    if replace_ca_issued:
        options["replace_ca_issued"] = True
    return {issuer: options}


class FilterModule:
    """Filters for the configs fleetcert reads."""

    def filters(self):
        return {
            "without_empty": without_empty,
            "issuer_config": issuer_config,
        }
