# Copyright: fleetcert maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Each role variable has one argument spec, and the spec agrees with the defaults file.

Adding a variable is: its default in the role's defaults/main.yml (or none, when it must be
set), its spec in the role's meta/argument_specs.yml (``default:`` the same value, or
``required: true``), a line in the role's README; these tests fail until all three agree.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROLES = Path(__file__).resolve().parents[2] / "roles"
ROLE_NAMES = sorted(path.name for path in ROLES.iterdir() if (path / "meta").is_dir())


def load(path):
    if not path.exists():
        return {}
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def defaults(role):
    return load(ROLES / role / "defaults" / "main.yml")


def specs(role):
    """(entry point, variable, spec) of every top-level option of the role."""
    entry_points = load(ROLES / role / "meta" / "argument_specs.yml").get("argument_specs") or {}
    return [
        (entry, name, spec)
        for entry, body in entry_points.items()
        for name, spec in (body.get("options") or {}).items()
    ]


def all_specs():
    return [(role, entry, name, spec) for role in ROLE_NAMES for entry, name, spec in specs(role)]


def test_the_roles_are_there():
    assert {"fleetcert", "fleetcert_install", "fleetcert_request", "fleetcert_publish",
            "fleetcert_finalize", "fleetcert_hiera"} <= set(ROLE_NAMES)


def test_every_variable_is_specified_once():
    seen = {}
    for role, entry, name, _spec in all_specs():
        assert name not in seen, f"{name} is specified in {seen[name]} and in {role}:{entry}"
        seen[name] = f"{role}:{entry}"


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_every_default_has_its_spec_with_the_same_default(role):
    spec_of = {name: spec for _entry, name, spec in specs(role)}
    for name, value in defaults(role).items():
        assert name in spec_of, f"{role}: {name} has a default but no argument spec"
        assert "default" in spec_of[name], f"{role}: the spec of {name} has no default: {value!r}"
        assert spec_of[name]["default"] == value, (
            f"{role}: {name} defaults to {value!r} but its spec says {spec_of[name]['default']!r}"
        )


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_every_spec_default_is_the_defaults_file_and_required_ones_have_none(role):
    values = defaults(role)
    everywhere = {name for other in ROLE_NAMES for name in defaults(other)}
    for entry, name, spec in specs(role):
        if spec.get("required"):
            assert "default" not in spec, f"{role}:{entry}: {name} is required but has a default in its spec"
            assert name not in everywhere, f"{role}:{entry}: {name} is required but a defaults file sets it"
        elif "default" in spec:
            assert name in values, f"{role}:{entry}: {name} has a spec default but is not in defaults/main.yml"
        else:
            assert name not in everywhere, f"{role}:{entry}: {name} is in a defaults file but its spec has no default"


def nested(name, spec):
    """(dotted name, spec) of an option and of each of its sub-options, at any depth."""
    yield name, spec
    for sub, sub_spec in (spec.get("options") or {}).items():
        yield from nested(f"{name}.{sub}", sub_spec)


def test_every_spec_has_a_type_and_a_description():
    for role, entry, top, top_spec in all_specs():
        for name, spec in nested(top, top_spec):
            assert spec.get("type"), f"{role}:{entry}: {name} has no type"
            assert spec.get("description"), f"{role}:{entry}: {name} has no description"
            assert not (spec.get("required") and "default" in spec), (
                f"{role}:{entry}: {name} is required and has a default"
            )


# What the validation ansible-core builds for a role reads from an entry point: its options
# only (playbook/role/__init__.py passes `options` to validate_argument_spec). A constraint
# across variables written beside them would be ignored without a word; tasks check those.
IGNORED_AT_ENTRY_POINTS = {"required_one_of", "mutually_exclusive", "required_together", "required_if", "required_by"}


def test_no_entry_point_carries_a_constraint_ansible_would_ignore():
    for role in ROLE_NAMES:
        entry_points = load(ROLES / role / "meta" / "argument_specs.yml").get("argument_specs") or {}
        for entry, body in entry_points.items():
            ignored = IGNORED_AT_ENTRY_POINTS & set(body)
            assert not ignored, f"{role}:{entry}: {sorted(ignored)} is not applied to role variables; check it in a task"


def test_the_zone_is_published_by_file_or_by_update_and_neither_way_is_required():
    zone = {name: spec for entry, name, spec in specs("fleetcert") if entry == "zone"}
    by_file = ["fleetcert_zone_file", "fleetcert_zone_soa", "fleetcert_zone_nameservers", "fleetcert_zone_reload"]
    for name in by_file + ["fleetcert_zone_update"]:
        assert not zone[name].get("required"), f"{name} is required, so the other way cannot be chosen"
        assert "default" not in zone[name], f"{name} has a default, so it is always set"
    update = zone["fleetcert_zone_update"]["options"]
    assert {name for name, spec in update.items() if spec.get("required")} == {"server", "key_name", "secret_file"}
    assert update["algorithm"]["choices"] == ["hmac-sha256", "hmac-sha384", "hmac-sha512"]
    assert zone["fleetcert_zone_state_dir"]["default"] == "/var/lib/fleetcert/publish"


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_every_variable_is_in_its_roles_readme(role):
    readme = (ROLES / role / "README.md").read_text(encoding="utf-8")
    for entry, name, _spec in specs(role):
        assert f"`{name}`" in readme, f"{role}/README.md does not document {name} ({entry})"
