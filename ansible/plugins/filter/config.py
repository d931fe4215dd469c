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


class FilterModule:
    """Filters for the configs fleetcert reads."""

    def filters(self):
        return {
            "without_empty": without_empty,
        }
