# Copyright: fleetcert maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""What the collection's filters accept: one check, shared, so that each filter refuses bad
input the same way, with AnsibleFilterError naming the input and what it got."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ansible.errors import AnsibleFilterError


def expect(value, kind, what):
    """``value`` when it is a ``kind`` (dict: any mapping; list: any sequence but a string),
    an empty one for None, else AnsibleFilterError naming ``what``."""
    if value is None:
        return kind()
    abstract = Mapping if kind is dict else Sequence
    if not isinstance(value, abstract) or isinstance(value, (str, bytes)):
        raise AnsibleFilterError(f"{what} must be a {kind.__name__}, not {type(value).__name__}: {str(value)[:80]!r}")
    return value
