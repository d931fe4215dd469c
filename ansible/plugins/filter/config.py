# Copyright: fleetcert maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Filters that build the configs the roles render (the host config, the zone config).

tests/unit/plugins/filter/test_config.py tests them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re

from ansible.errors import AnsibleFilterError


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


def _need(variables, name, want=None):
    """``variables[name]``, refused with a line naming it when it is missing or not a ``want``."""
    if not isinstance(variables, dict) or name not in variables or variables[name] is None:
        raise AnsibleFilterError(f"{name} is not set: the fleetcert roles define it (roles/fleetcert/defaults/main.yml)")
    value = variables[name]
    if want is not None and not isinstance(value, want):
        raise AnsibleFilterError(f"{name} must be a {want.__name__}, not {type(value).__name__}: {str(value)[:80]!r}")
    return value


def _int(variables, name):
    value = _need(variables, name)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise AnsibleFilterError(f"{name} must be a whole number, not {str(value)[:80]!r}") from None


def _bool(value):
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "on", "1")
    return bool(value)


def _check_certs(certs, host):
    """Each certificate is a non-empty list of names, or a mapping with them under ``names``."""
    if not isinstance(certs, dict):
        raise AnsibleFilterError(f"fleetcert_certs of {host} must be a mapping: certificate name -> names")
    for cert, value in certs.items():
        names = value.get("names") if isinstance(value, dict) else value
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise AnsibleFilterError(
                f"fleetcert_certs.{cert} of {host} must be a list of names, e.g. {cert}: "
                "[web01.example.org, www.example.org], or a map with them under `names`"
            )


def host_config(variables):
    """The host config (docs/host-config.md) of a host, from its role variables.

    ``variables`` maps the fleetcert_* variable names to their values (the roles pass
    ``_fleetcert_host_config_vars``). Optional keys left empty are left out, so fleetcert
    applies its own default; ``issuer`` only for a test issuer, ``acme`` and
    ``signing_zone`` only for an ACME CA, ``metrics`` only with a textfile directory.
    What a spec cannot say is refused here, naming the variable and the fix.
    """
    host = _need(variables, "fleetcert_host")
    certs = _need(variables, "fleetcert_certs")
    _check_certs(certs, host)
    issuer = _need(variables, "fleetcert_issuer", str)
    config = {"host": host}
    if issuer == "acme":
        missing = [name for name in ("fleetcert_acme_email", "fleetcert_agree_tos", "fleetcert_signing_zone")
                   if variables.get(name) in (None, "")]
        if missing:
            raise AnsibleFilterError(
                f"{host} lists certificates from an ACME CA, so it needs {', '.join(missing)}: "
                "fleetcert_acme_email, an address the CA can write to; fleetcert_agree_tos: true, "
                "after reading the CA's terms; fleetcert_signing_zone, the delegated zone. A gate job "
                "without a CA sets fleetcert_issuer to self-signed or local-ca."
            )
        if not _bool(variables["fleetcert_agree_tos"]) or "@" not in str(variables["fleetcert_acme_email"]):
            raise AnsibleFilterError(
                f"{host} lists certificates from an ACME CA, so set fleetcert_agree_tos: true (after "
                "reading the CA's terms) and fleetcert_acme_email to an address the CA can write to; a "
                "gate job without a CA sets fleetcert_issuer to self-signed or local-ca."
            )
        acme = {
            "directory": _need(variables, "fleetcert_acme_directory"),
            "email": variables["fleetcert_acme_email"],
            "agree_tos": True,
            "ca_bundle": variables.get("fleetcert_ca_bundle"),
            "profile": variables.get("fleetcert_acme_profile"),
            "eab": variables.get("fleetcert_acme_eab"),
        }
        config["acme"] = without_empty(acme, ["ca_bundle", "profile", "eab"])
        # Further CAs (docs/renewal.md), as the host config's `fallback:` takes them.
        if variables.get("fleetcert_fallback"):
            config["fallback"] = variables["fleetcert_fallback"]
        config["signing_zone"] = _need(variables, "fleetcert_signing_zone")
    else:
        if issuer == "local-ca":
            cert, key = variables.get("fleetcert_issuer_ca_cert"), variables.get("fleetcert_issuer_ca_key")
            with_src = [bool(variables.get("fleetcert_issuer_ca_cert_src")), bool(variables.get("fleetcert_issuer_ca_key_src"))]
            if not cert or not key or with_src[0] != with_src[1]:
                raise AnsibleFilterError(
                    f"fleetcert_issuer local-ca on {host} needs fleetcert_issuer_ca_cert and "
                    "fleetcert_issuer_ca_key, the CI CA's files on the host; to copy them there from "
                    "the controller, set both fleetcert_issuer_ca_cert_src and fleetcert_issuer_ca_key_src."
                )
        config = {
            "host": host,
            "issuer": issuer_config(
                issuer,
                variables.get("fleetcert_issuer_ca_cert"),
                variables.get("fleetcert_issuer_ca_key"),
                variables.get("fleetcert_issuer_lifetime"),
                _bool(variables.get("fleetcert_issuer_replace_ca_issued")),
            ),
        }
    for key, name in (
        ("challenge_records", "fleetcert_challenge_records"),
        ("resolver", "fleetcert_resolver"),
        ("state_dir", "fleetcert_state_dir"),
        ("cert_dir", "fleetcert_cert_dir"),
        ("layout", "fleetcert_layout"),
        ("group", "fleetcert_group"),
        ("key", "fleetcert_key_type"),
    ):
        config[key] = _need(variables, name)
    config["renew"] = {
        "before_days": _int(variables, "fleetcert_renew_before_days"),
        "ari": _bool(_need(variables, "fleetcert_renew_ari")),
    }
    # Unset (the default): fleetcert's own, a third of before_days.
    if variables.get("fleetcert_renew_fallback_within_days") is not None:
        config["renew"]["fallback_within_days"] = _int(variables, "fleetcert_renew_fallback_within_days")
    config["certs"] = certs
    if variables.get("fleetcert_metrics_textfile_dir"):
        config["metrics"] = {"textfile_dir": variables["fleetcert_metrics_textfile_dir"]}
    return config


def _file_id(path):
    """A file on the controller as the fingerprint sees it: path, size and mtime (cheap, and
    changed by any rebuild or copy); "" for no file."""
    if not path:
        return ""
    try:
        st = os.stat(path)
    except OSError as err:
        raise AnsibleFilterError(f"{path}: cannot read it on the controller ({err.strerror})") from None
    return [str(path), st.st_size, st.st_mtime_ns]


def _copies_ca(variables):
    return bool(variables.get("fleetcert_certs")) and variables.get("fleetcert_issuer") == "local-ca" and bool(
        variables.get("fleetcert_issuer_ca_cert_src")
    )


def install_record(variables):
    """Where the host keeps the record of its last install: beside its host config, or, on a
    host without certificates that publishes the zone, beside the zone config."""
    if variables.get("fleetcert_certs") or not variables.get("fleetcert_zone_config_path"):
        config = _need(variables, "fleetcert_config_path")
    else:
        config = variables["fleetcert_zone_config_path"]
    return os.path.join(os.path.dirname(config), ".fleetcert-install.json")


def install_directories(variables):
    """The directories fleetcert_install makes, each ``{path, group, mode}``, owner root:
    the binary's (not for the package, which owns it), the state (0700), certificate (0750,
    fleetcert_group) and config (0755) directories of a host with certificates, the zone
    config's (0700) on a publishing host without any, node_exporter's textfile directory
    (0755, as Debian ships it) and the local CA's (0755)."""
    dirs = []

    def add(path, mode, group="root"):
        if path and path not in [d["path"] for d in dirs]:
            dirs.append({"path": path, "group": group, "mode": mode})

    if _need(variables, "fleetcert_install_method") != "package":
        add(os.path.dirname(_need(variables, "fleetcert_binary")), "0755")
    if variables.get("fleetcert_certs"):
        add(_need(variables, "fleetcert_state_dir"), "0700")
        add(_need(variables, "fleetcert_cert_dir"), "0750", _need(variables, "fleetcert_group"))
        add(os.path.dirname(_need(variables, "fleetcert_config_path")), "0755")
    elif variables.get("fleetcert_zone_config_path"):
        add(os.path.dirname(variables["fleetcert_zone_config_path"]), "0700")
    add(variables.get("fleetcert_metrics_textfile_dir"), "0755")
    if _copies_ca(variables):
        add(os.path.dirname(_need(variables, "fleetcert_issuer_ca_cert")), "0755")
        add(os.path.dirname(_need(variables, "fleetcert_issuer_ca_key")), "0755")
    return dirs


def _check_method(variables):
    """What a spec cannot say about the install method's variables."""
    method, host = variables.get("fleetcert_install_method"), variables.get("inventory_hostname")
    if method == "url" and not (
        re.match(r"https?://", str(variables.get("fleetcert_install_url") or ""))
        and re.fullmatch(r"[0-9a-fA-F]{64}", str(variables.get("fleetcert_install_sha256") or ""))
    ):
        raise AnsibleFilterError(
            f"fleetcert_install_method url on {host} needs fleetcert_install_url (http:// or https://) "
            "and fleetcert_install_sha256, the binary's SHA-256 in 64 hex digits (sha256sum fleetcert)."
        )
    if method == "copy" and not variables.get("fleetcert_install_binary_src"):
        raise AnsibleFilterError(
            f"fleetcert_install_method copy on {host} needs fleetcert_install_binary_src, the binary "
            "on the controller (e.g. target/release/fleetcert of a checkout)."
        )


def install_fingerprint(variables):
    """A digest of everything fleetcert_install would put on the host: the method and its
    source (the controller file's size and mtime, the URL and its SHA-256, the package and
    its version), the binary's path, the group, the directories and the local CA's files.

    The run module compares it with the record the last install left on the host: equal,
    and with the binary unchanged there, the install is not re-asserted (docs/ansible.md).
    """
    method = _need(variables, "fleetcert_install_method", str)
    _check_method(variables)
    source = {
        "copy": lambda: _file_id(variables.get("fleetcert_install_binary_src")),
        "url": lambda: [variables.get("fleetcert_install_url"), str(variables.get("fleetcert_install_sha256") or "").lower()],
        "package": lambda: (
            _file_id(variables.get("fleetcert_install_package_src"))
            or [variables.get("fleetcert_install_package_name"), variables.get("fleetcert_install_package_version")]
        ),
    }.get(method)
    if source is None:
        raise AnsibleFilterError(f"fleetcert_install_method must be package, url or copy, not {method[:80]!r}")
    inputs = {
        "method": method,
        "source": source(),
        "binary": _need(variables, "fleetcert_binary"),
        "group": variables.get("fleetcert_group"),
        "directories": install_directories(variables),
        "ca": [_file_id(variables.get("fleetcert_issuer_ca_cert_src")), _file_id(variables.get("fleetcert_issuer_ca_key_src"))],
    }
    encoded = json.dumps(inputs, sort_keys=True, default=str).encode()
    return "v1:" + hashlib.sha256(encoded).hexdigest()


def zone_config(variables, allow=None):
    """The zone config (docs/zone-config.md) of the publishing host, from its role variables.

    The zone changes one way: by its file (fleetcert_zone_file with fleetcert_zone_soa,
    fleetcert_zone_nameservers and fleetcert_zone_reload) or by dynamic update
    (fleetcert_zone_update, whose primary owns the SOA, NS and serial). Neither, both, or a
    file's variable missing or mixed with update is refused, naming the variables.
    ``allow`` is the allow-list (host -> names). Optional keys left empty are left out.
    """
    host = variables.get("inventory_hostname")
    zone = _need(variables, "fleetcert_zone_name")
    has_file = variables.get("fleetcert_zone_file") is not None
    update = variables.get("fleetcert_zone_update")
    file_keys = ("fleetcert_zone_soa", "fleetcert_zone_nameservers", "fleetcert_zone_reload")
    if has_file == (update is not None):
        raise AnsibleFilterError(
            f"{host} publishes the signing zone {zone}: set {'only one of' if has_file else 'one of'} "
            "fleetcert_zone_file (fleetcert rewrites the zone file on this host and reloads) and "
            "fleetcert_zone_update (fleetcert sends signed DNS UPDATEs to the primary; docs/dynamic-update.md)."
        )
    if has_file:
        missing = [k for k in file_keys if variables.get(k) is None]
        if missing:
            raise AnsibleFilterError(
                f"{host} publishes {zone} as the zone file {variables['fleetcert_zone_file']}, so it needs "
                f"{', '.join(missing)} (the SOA, NS and reload command of the zone it writes)."
            )
        target = {
            "zone_file": variables["fleetcert_zone_file"],
            "template": variables.get("fleetcert_zone_template") or "",
            "soa": variables["fleetcert_zone_soa"],
            "nameservers": variables["fleetcert_zone_nameservers"],
            "reload": variables["fleetcert_zone_reload"],
        }
    else:
        extra = [k for k in file_keys if variables.get(k) is not None]
        extra += ["fleetcert_zone_template"] if variables.get("fleetcert_zone_template") else []
        if not isinstance(update, dict) or not update.get("server"):
            raise AnsibleFilterError(f"fleetcert_zone_update of {host} must be a mapping with server, key_name and secret_file")
        if extra:
            raise AnsibleFilterError(
                f"{host} publishes {zone} by dynamic update to {update.get('server')}, whose zone holds its "
                f"own SOA, NS and serial: remove {', '.join(extra)}."
            )
        target = {
            "update": {
                "server": update["server"],
                "key_name": update.get("key_name"),
                "algorithm": update.get("algorithm") or "hmac-sha256",
                "secret_file": update.get("secret_file"),
            },
            "state_dir": _need(variables, "fleetcert_zone_state_dir"),
        }
    config = {"zone": zone}
    config.update(target)
    config.update(
        {
            "ttl": _int(variables, "fleetcert_zone_ttl"),
            "servers": variables.get("fleetcert_zone_servers") or [],
            "resolver": _need(variables, "fleetcert_zone_resolver"),
            "timeout": _need(variables, "fleetcert_zone_timeout"),
            "lock_timeout": _need(variables, "fleetcert_zone_lock_timeout"),
            "record_lifetime": _need(variables, "fleetcert_zone_record_lifetime"),
            "challenge_records": _need(variables, "fleetcert_zone_challenge_records"),
            "max_values_per_name": _int(variables, "fleetcert_zone_max_values_per_name"),
            "allow": allow or {},
            "metrics": (
                {"textfile_dir": variables["fleetcert_metrics_textfile_dir"]}
                if variables.get("fleetcert_metrics_textfile_dir")
                else {}
            ),
        }
    )
    return without_empty(config, ["template", "servers", "allow", "metrics"])


class FilterModule:
    """Filters for the configs fleetcert reads."""

    def filters(self):
        return {
            "without_empty": without_empty,
            "issuer_config": issuer_config,
            "host_config": host_config,
            "install_fingerprint": install_fingerprint,
            "install_directories": install_directories,
            "install_record": install_record,
            "zone_config": zone_config,
        }
