# Copyright: fleetcert maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Filters of the fleetcert_publish role: what the DNS primary publishes for the fleet.

Each filter takes the variables of the publishing hosts as a list of mappings
(``fleetcert_publish_hosts | map('extract', hostvars) | list``), so it reads plain data and is
tested without an inventory (tests/unit/plugins/filter/test_publish.py).
"""

from __future__ import annotations

from collections.abc import Mapping

from ansible_collections.fleetcert.fleetcert.plugins.plugin_utils.inputs import expect as _expect

DUE = ("pending", "ready")


def _unique(values):
    """The values in their first order, each once."""
    seen = []
    for value in values:
        if value not in seen:
            seen.append(value)
    return seen


def _identity(host):
    """The name a host's documents are published under: its fleetcert_host, set in the
    inventory (never by the host), else its inventory name."""
    return str(host.get("fleetcert_host") or host.get("inventory_hostname"))


def allow_list(hosts):
    """Host -> the names it may publish records for: every name in its own fleetcert_certs.

    A certificate is a list of names or a mapping with ``names``. Hosts without certificates
    (the DNS primary) get no entry. The key is the host's fleetcert_host, else its inventory name.
    """
    allow = {}
    for host in sorted(_expect(hosts, list, "allow_list's input (host variables)"), key=lambda h: str(h.get("inventory_hostname", ""))):
        certs = host.get("fleetcert_certs") or {}
        if not certs:
            continue
        names = []
        for cert in certs.values():
            names.extend(cert.get("names", []) if isinstance(cert, dict) else cert)
        allow[_identity(host)] = _unique(str(n) for n in names)
    return allow


def publish_documents(hosts, cleanup=False):
    """The token documents to publish, as an object of host -> document.

    Each host's fleetcert_request_document, keyed by the identity the inventory gives it
    (fleetcert_host, else the inventory name): ``fleetcert publish`` takes the key, not what
    the document says, as the host it speaks for, and refuses a document whose ``host``
    disagrees (docs/zone-config.md, ``allow``). Hosts without a document (failed before
    request, or not installed yet in check mode) are left out. With ``cleanup`` every document
    keeps its host but loses its records and certificates: publishing them empties the
    signing zone of those hosts' records.
    """
    documents = {}
    for host in _expect(hosts, list, "publish_documents' input (host variables)"):
        if "fleetcert_request_document" not in host:
            continue
        document = dict(host["fleetcert_request_document"])
        if cleanup:
            document.update(records=[], certs=[])
        documents[_identity(host)] = document
    return documents


def publish_preview(documents, zone, cleanup=False, changed=False, update=False):
    """What a real publish would do, for check mode, where no order and so no record exists.

    ``documents`` is what publish_documents gives (or a list of documents); ``changed`` is
    whether ``publish --dry-run`` found the zone different from what it would publish;
    ``update``: the zone changes by dynamic update (fleetcert_zone_update), not by its file.
    """
    if isinstance(documents, Mapping):
        documents = list(documents.values())
    documents = _expect(documents, list, "publish_preview's input (token documents)")
    if cleanup:
        return f"would empty the signing zone {zone} again after finalize"
    if not documents:
        return (
            "no host has a token document (fleetcert is not installed on them yet, or they "
            "failed): a real run would publish the records of their first orders"
        )
    due = [
        f"{doc.get('host')} {cert.get('name')}"
        for doc in documents
        for cert in doc.get("certs") or []
        if cert.get("status") in DUE
    ]
    if due:
        how = "send them to the primary by DNS UPDATE" if update else "reload"
        return (
            f"would publish the challenge records of {', '.join(due)} in {zone} (their values "
            f"exist only once the orders are made), {how} and wait for every server"
        )
    if changed and update:
        return (
            f"no certificate is due, but {zone} on the primary differs from the ledger: an UPDATE "
            "would add the missing values and delete the stale ones"
        )
    if changed:
        return (
            f"no certificate is due, but the file of {zone} differs from what publish renders: "
            "it would be rewritten"
        )
    return f"no certificate is due: the zone {zone} stays as it is"


def refused_hosts(report, hosts):
    """The hosts whose token document publish refused (``refused[]`` of its report,
    docs/reports.md), matched by the identity their documents were published under
    (fleetcert_host, else the inventory name): ``{name: <inventory name>, errors: [lines]}``
    each. One pass over the report and one over the hosts, so that each refused host gets its
    own lines as a variable and the end of the run reads nobody else's."""
    report = _expect(report, dict, "refused_hosts' input (publish's report)")
    refused = {}
    for entry in _expect(report.get("refused"), list, "the report's refused"):
        refused.setdefault(str(entry.get("host")), []).append(str(entry.get("error")))
    return [
        {"name": str(host.get("inventory_hostname")), "errors": refused[_identity(host)]}
        for host in _expect(hosts, list, "refused_hosts' hosts (host variables)")
        if _identity(host) in refused
    ]


class FilterModule:
    """fleetcert_publish's filters."""

    def filters(self):
        return {
            "allow_list": allow_list,
            "publish_documents": publish_documents,
            "publish_preview": publish_preview,
            "refused_hosts": refused_hosts,
        }
