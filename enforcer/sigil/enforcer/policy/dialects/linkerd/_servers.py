"""Linkerd ``Server`` objects as Sigil ALLOW policies on (pods, port): deny unless authorized, per port.

A Server selects pods and one of their ports; traffic to that port is then allowed only when one of the
Server's authorizations admits the client (or its ``accessPolicy``, ``deny`` by default, does), and ports no
Server selects follow the default policy. Sigil's ``targetRefs[].ports`` says the same: an ALLOW policy whose
target ref names ports makes those ports deny-if-not-allowed and leaves the pod's other ports alone. So each
Server becomes one policy, ``linkerd-server-<name>`` in its namespace (continued in ``-2``, ... past a policy's
128 rules), whose rules are the rules of every authorization that applies to it (rules are OR-ed, as Linkerd's
authorizations are); with none it has ``rules: []`` and admits nobody.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sigil.enforcer.errors import PolicyError
from sigil.enforcer.policy.dialects.base import (
    TRANSLATED_FROM,
    Exactness,
    Finding,
    Translated,
)
from sigil.enforcer.policy.dialects.linkerd._authn import client_rules
from sigil.enforcer.policy.dialects.linkerd._authorizations import Authorization
from sigil.enforcer.policy.dialects.linkerd._batch import Batch, LinkerdObject
from sigil.enforcer.policy.dialects.linkerd._defaults import (
    DEFAULT_POLICIES,
    default_note,
    default_rules,
)
from sigil.enforcer.policy.dialects.linkerd._workloads import (
    WORKLOAD_KINDS,
    named_port_numbers,
    workload_findings,
)
from sigil.enforcer.policy.model import parse_policy

__all__ = ["API_VERSION", "MAX_RULES", "checked", "translate_servers", "translated_from"]

API_VERSION = "authz.sigil.dev/v1alpha1"
MAX_RULES = 128
"""The most rules one Sigil policy holds (its schema's limit)."""


def translated_from(objects: list[LinkerdObject]) -> str:
    """The ``TRANSLATED_FROM`` annotation: the dialect and each source object."""
    return "linkerd: " + ", ".join(obj.label for obj in objects)


def translate_servers(
    batch: Batch, authorizations: list[Authorization], findings: list[Finding]
) -> list[Translated]:
    """One Sigil AuthorizationPolicy per Server that Linkerd would accept."""
    workloads = [w for kind in WORKLOAD_KINDS for w in batch.of_kind(kind)]
    for workload in workloads:
        findings.extend(workload_findings(workload))
    resolved = []
    for server in batch.of_kind("Server"):
        if _valid(server, findings):
            found = _ports(server, workloads, findings)
            if found is not None:
                resolved.append((server, *found))
    _report_overlaps([(server, numbers) for server, numbers, _ in resolved], findings)
    translated = []
    used: set[int] = set()
    for server, numbers, resolved_by in resolved:
        rules: list[dict[str, Any]] = []
        objects = [server, *resolved_by]
        for number, authorization in enumerate(authorizations):
            if not authorization.applies_to(server):
                continue
            used.add(number)
            objects.append(authorization.obj)
            objects.extend(o for o in authorization.authentications if o not in objects)
            if authorization.client is not None:
                rules.extend(client_rules(authorization.client))
        access = str(server.spec.get("accessPolicy", "deny"))
        rules.extend(default_rules(access))
        note = default_note(access)
        if note is not None:
            findings.append(server.finding("spec.accessPolicy", *note))
        for part, chunk in enumerate(_chunks(rules, MAX_RULES) or [[]]):
            document = _document(server, part, numbers, objects, chunk)
            if checked(server, document, findings):
                translated.append(document)
    for number, authorization in enumerate(authorizations):
        if number not in used:
            findings.append(
                authorization.obj.finding(
                    "",
                    Exactness.EXACT,
                    "applies to no Server of this batch, so it authorizes nothing (ports without a Server "
                    "follow the default policy)",
                )
            )
    return translated


def checked(obj: LinkerdObject, translated: Translated, findings: list[Finding]) -> bool:
    """True when Sigil accepts the document made of ``obj``; otherwise a finding says why it was dropped."""
    try:
        parse_policy(translated.document)
    except PolicyError as err:
        findings.append(
            obj.finding(
                "",
                Exactness.REFUSED,
                f"its translation is not a valid Sigil policy ({err}); not translated",
            )
        )
        return False
    return True


def _chunks(rules: list[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    return [rules[start : start + size] for start in range(0, len(rules), size)]


def _document(
    server: LinkerdObject,
    part: int,
    ports: tuple[int, ...],
    objects: list[LinkerdObject],
    rules: list[dict[str, Any]],
) -> Translated:
    selector = server.spec["podSelector"]
    ref = {
        "group": "",
        "kind": "Pod",
        "selector": _selector(selector),
        "ports": list(ports),
    }
    document = {
        "apiVersion": API_VERSION,
        "kind": "AuthorizationPolicy",
        "metadata": {
            # A Sigil policy holds at most MAX_RULES rules; more go to further ALLOW policies on the same
            # target, whose rules are OR-ed with the first one's.
            "name": f"linkerd-server-{server.name}" + (f"-{part + 1}" if part else ""),
            "namespace": server.namespace,
            "annotations": {TRANSLATED_FROM: translated_from(objects)},
        },
        "spec": {
            "targetRefs": [ref],
            "action": "ALLOW",
            "enforcementLevel": "Network",
            "rules": rules,
        },
    }
    return Translated(document, tuple(f"linkerd {obj.label}" for obj in objects))


def _selector(raw: Mapping[str, Any]) -> dict[str, Any]:
    selector: dict[str, Any] = {}
    if raw.get("matchLabels"):
        selector["matchLabels"] = dict(raw["matchLabels"])
    if raw.get("matchExpressions"):
        selector["matchExpressions"] = [dict(item) for item in raw["matchExpressions"]]
    return selector


def _valid(server: LinkerdObject, findings: list[Finding]) -> bool:
    spec = server.spec
    if "externalWorkloadSelector" in spec:
        findings.append(
            server.finding(
                "spec.externalWorkloadSelector",
                Exactness.REFUSED,
                "selects ExternalWorkloads (VMs outside Kubernetes), which Sigil does not target; not translated",
            )
        )
        return False
    if not isinstance(spec.get("podSelector"), Mapping):
        findings.append(
            server.finding("spec.podSelector", Exactness.REFUSED, "missing; not translated")
        )
        return False
    port = spec.get("port")
    if isinstance(port, str):
        return True  # resolved by _ports
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        findings.append(
            server.finding(
                "spec.port", Exactness.REFUSED, f"{port!r} is not a port; not translated"
            )
        )
        return False
    access = spec.get("accessPolicy", "deny")
    if access not in DEFAULT_POLICIES:
        findings.append(
            server.finding(
                "spec.accessPolicy",
                Exactness.REFUSED,
                f"{access!r} is not one of {', '.join(DEFAULT_POLICIES)}; Linkerd refuses the Server",
            )
        )
        return False
    return True


def _ports(
    server: LinkerdObject, workloads: list[LinkerdObject], findings: list[Finding]
) -> tuple[tuple[int, ...], list[LinkerdObject]] | None:
    """The port numbers ``server`` selects, and the workloads that resolved its named port."""
    port = server.spec["port"]
    if not isinstance(port, str):
        return (port,), []
    numbers, used = named_port_numbers(server, port, workloads)
    if not numbers:
        findings.append(
            server.finding(
                "spec.port",
                Exactness.REFUSED,
                f"the named port {port!r} is named by no container of this batch's pods that the Server "
                "selects; not translated, so those ports follow the default policy in Sigil instead of "
                "denying unauthorized clients (pass the workloads with the policy to resolve it)",
            )
        )
        return None
    named = ", ".join(obj.label for obj in used)
    findings.append(
        server.finding(
            "spec.port",
            Exactness.APPROXIMATE,
            f"the named port {port!r} is {'/'.join(map(str, numbers))} in {named}; pods outside this "
            "batch that name it otherwise are not covered, and a pod listening on another of these numbers "
            "under another name is",
        )
    )
    return numbers, used


def _report_overlaps(
    servers: list[tuple[LinkerdObject, tuple[int, ...]]], findings: list[Finding]
) -> None:
    for position, (first, first_ports) in enumerate(servers):
        for second, second_ports in servers[position + 1 :]:
            shared = sorted(set(first_ports) & set(second_ports))
            if (
                first.namespace == second.namespace
                and shared
                and _may_overlap(first.spec["podSelector"], second.spec["podSelector"])
            ):
                findings.append(
                    second.finding(
                        "spec.podSelector",
                        Exactness.APPROXIMATE,
                        f"selects port {shared[0]} of pods that {first.label} may also select; "
                        "Linkerd applies only one Server to a pod's port (its admission refuses overlapping "
                        "Servers), while Sigil admits a client either one admits",
                    )
                )


def _may_overlap(left: Mapping[str, Any], right: Mapping[str, Any]) -> bool:
    """False only when the two selectors demand different values of one label (no pod has both)."""
    left_labels, right_labels = left.get("matchLabels") or {}, right.get("matchLabels") or {}
    return all(
        left_labels[key] == right_labels[key] for key in left_labels.keys() & right_labels.keys()
    )
