# Copyright: fleetcert maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Filters of the fleetcert_finalize role: which certificates were replaced, which failed, and
the one-line summary of each host at the end of the run, with the CA's rate limits grouped.

They read the token document of ``fleetcert request`` and the report of ``fleetcert finalize``
(docs/reports.md) as plain data (tests/unit/plugins/filter/test_report.py).
"""

from __future__ import annotations

from ansible_collections.fleetcert.fleetcert.plugins.plugin_utils.inputs import expect as _expect

DUE = ("pending", "ready")


def _certs(document):
    return _expect(_expect(document, dict, "a token document or report").get("certs"), list, "its certs")


def replaced_certs(report, notify):
    """Names of the certificates finalize replaced that are listed in ``notify``."""
    _expect(notify, list, "replaced_certs' notify")
    return [c["name"] for c in _certs(report) if c.get("changed") and c.get("name") in notify]


def cert_failures(request_document, finalize_report, published=True, refused=None):
    """One line per failed certificate, naming the step and the reason (with the fix); and,
    when nothing is published (``published`` false: no DNS primary), one line when the host
    has challenge records that would go nowhere; and one per refusal of its token document
    by publish (``refused``: publish's lines for this host)."""
    lines = [f"token document refused by publish: {line}" for line in _expect(refused, list, "cert_failures' refused")]
    lines += [
        f"certificate {c.get('name')} (request): {c.get('reason')}"
        for c in _certs(request_document)
        if c.get("status") == "failed"
    ]
    lines += [
        f"certificate {c.get('name')} (finalize): {c.get('error') or 'failed'}"
        for c in _certs(finalize_report)
        if c.get("status") == "failed"
    ]
    if not published and (request_document or {}).get("records"):
        lines.append(
            f"{request_document.get('host')} has challenge records to publish, but the inventory has "
            "no host in fleetcert_dns_primary: add the DNS primary of the signing zone, or set "
            "fleetcert_issuer to self-signed or local-ca for a gate job without a CA."
        )
    return lines


def due_certs(request_document):
    """Names of the certificates request left an order for (pending or ready): the hosts
    that finalize."""
    return [c.get("name") for c in _certs(request_document) if c.get("status") in DUE]


def _join(names, empty):
    return ", ".join(names) or empty


def host_summary(host, check_mode=False):
    """One host's line: ``ok; replaced: main``, ``FAILED www; replaced: main``, ..."""
    requested = _certs(host.get("fleetcert_request_document"))
    finalized = _certs(host.get("fleetcert_finalize_report"))
    failed = []
    for cert in requested + finalized:
        if cert.get("status") == "failed" and cert.get("name") not in failed:
            failed.append(cert.get("name"))
    replaced = [c.get("name") for c in finalized if c.get("changed")]
    ordered = [f"{c.get('name')} ({c.get('status')} - {c.get('reason')})" for c in requested if c.get("status") in DUE]

    request = host.get("__fleetcert_request") or {}
    if check_mode and request.get("ready") is False:
        return "would install fleetcert and order: " + _join(list(host.get("fleetcert_certs") or {}), "nothing")
    if "fleetcert_request_document" not in host:
        return "FAILED: did not get to request (see its error above)"
    if "fleetcert_finalize_report" not in host and ordered:
        return "FAILED: did not get to finalize (see its error above)"
    if check_mode:
        prefix = f"FAILED {', '.join(failed)}; " if failed else ""
        return f"{prefix}would order: {_join(ordered, 'nothing')}; would install: {_join(replaced, 'nothing')}"
    if failed:
        return f"FAILED {', '.join(failed)}; replaced: {_join(replaced, 'none')}"
    return f"ok; replaced: {_join(replaced, 'none')}"


def check_not_ok(hosts):
    """``HOST: <the check's line>`` for every host whose ``fleetcert check`` did not exit 0.

    The verdict is the one fleetcert_finalize got after the handlers (the registered
    ``__fleetcert_finalize_check``), else the one its module run got
    (``__fleetcert_finalize.check``), else the one fleetcert_request's module run got
    (``__fleetcert_request.check``); a host where no check ran (it failed earlier, or has
    no certificates) is left out: the summary names it.
    """
    lines = []
    for host in _expect(hosts, list, "check_not_ok's input (host variables)"):
        result = host.get("__fleetcert_finalize_check") or {}
        if result.get("skipped") or "rc" not in result:
            verdicts = [(host.get(run) or {}).get("check") or {} for run in ("__fleetcert_finalize", "__fleetcert_request")]
            verdict = next((v for v in verdicts if "rc" in v), None)
            if verdict is None:
                continue
            rc, line = verdict.get("rc"), verdict.get("line")
        else:
            first = (result.get("stdout") or "").splitlines()[:1]
            rc, line = result.get("rc"), first[0] if first else None
        if rc == 0:
            continue
        lines.append(f"{host.get('inventory_hostname')}: {line or f'fleetcert check exited {rc}'}")
    return lines


def rate_limits(hosts):
    """One line per CA rate limit that stopped orders in this run (``rate_limit`` in the token
    document): how many certificates, on which hosts, and when they are ordered again (the
    earliest and the latest time the CA gave). No run orders them before that."""
    groups = {}
    for host in hosts:
        for cert in _certs(host.get("fleetcert_request_document")):
            limit = cert.get("rate_limit")
            if not limit:
                continue
            group = groups.setdefault(limit.get("limit") or "(unnamed)", {"hosts": {}, "times": []})
            group["hosts"].setdefault(host.get("inventory_hostname"), []).append(cert.get("name"))
            if limit.get("retry_after"):
                group["times"].append(limit["retry_after"])
    lines = []
    for name in sorted(groups):
        group = groups[name]
        count = sum(len(certs) for certs in group["hosts"].values())
        who = ", ".join(f"{host} ({', '.join(certs)})" for host, certs in group["hosts"].items())
        # RFC 3339 in UTC (fleetcert writes `Z`): the text order is the time order.
        times = sorted(group["times"]) or ["unknown"]
        when = times[0] if times[0] == times[-1] else f"{times[0]} to {times[-1]}"
        lines.append(f"rate limit {name}: {count} not ordered ({who}); ordered again from {when}")
    return lines


def fallbacks(hosts):
    """One line per fallback CA that issued certificates in this run (``ca`` and ``fallback``
    in the finalize report): how many, on which hosts, and why the first of them was not
    issued by the primary."""
    groups = {}
    for host in hosts:
        for cert in _certs(host.get("fleetcert_finalize_report")):
            if not cert.get("changed") or not cert.get("fallback"):
                continue
            group = groups.setdefault(cert.get("ca") or "(unknown)", {"hosts": {}, "why": cert["fallback"]})
            group["hosts"].setdefault(host.get("inventory_hostname"), []).append(cert.get("name"))
    lines = []
    for ca in sorted(groups):
        group = groups[ca]
        count = sum(len(certs) for certs in group["hosts"].values())
        who = ", ".join(f"{host} ({', '.join(certs)})" for host, certs in group["hosts"].items())
        lines.append(f"fallback CA {ca}: issued {count} ({who}); because {group['why']}")
    return lines


def run_summary(hosts, check_mode=False, published=True):
    """``HOST: line`` for every host (a list of host variables with inventory_hostname), then
    one line per rate limit that stopped orders, one per fallback CA that issued, then the hosts whose check is not OK (not
    in check mode), and why nothing was published when ``published`` is false."""
    hosts = _expect(hosts, list, "run_summary's input (host variables)")
    lines = [f"{h.get('inventory_hostname')}: {host_summary(h, check_mode)}" for h in hosts]
    lines += rate_limits(hosts)
    lines += fallbacks(hosts)
    if not check_mode:
        not_ok = check_not_ok(hosts)
        lines += [f"fleetcert check not OK: {line}" for line in not_ok] or ["fleetcert check: OK on every host checked"]
    if not published:
        lines.append(
            "No host in fleetcert_dns_primary: the publish and cleanup plays are skipped. A host with "
            "a test issuer (fleetcert_issuer self-signed or local-ca) has no challenge records to publish."
        )
    return lines


class FilterModule:
    """fleetcert_finalize's filters."""

    def filters(self):
        return {
            "cert_failures": cert_failures,
            "due_certs": due_certs,
            "check_not_ok": check_not_ok,
            "replaced_certs": replaced_certs,
            "run_summary": run_summary,
        }
