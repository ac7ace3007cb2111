"""Workloads passed with Linkerd's policy: what their pods are labelled, which ports they name, what they override.

A ``Server`` may name its port (``port: http``); Linkerd resolves the name on each pod from its containers'
``ports[].name``. Sigil's policies select ports by number, so a named port is resolved through the workloads
(``Pod``, ``Deployment``, ``StatefulSet``, ``DaemonSet``, ``ReplicaSet``, ``Job``) of the same batch whose pod
labels the Server selects; pods of workloads outside the batch may name another number, so such a translation
is approximate. Workloads (or their pod templates) that carry Linkerd's per-pod policy annotations are
reported: the default inbound policy and the ports that require identity are read per pod, and Sigil has no
per-pod default.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sigil.enforcer.policy.dialects.base import Exactness, Finding
from sigil.enforcer.policy.dialects.linkerd._batch import DEFAULT_POLICY_ANNOTATION, LinkerdObject
from sigil.enforcer.policy.dialects.linkerd._legacy import selects

__all__ = [
    "REQUIRE_IDENTITY_ANNOTATION",
    "WORKLOAD_KINDS",
    "named_port_numbers",
    "pod_template",
    "workload_findings",
]

WORKLOAD_KINDS = ("Pod", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job")
REQUIRE_IDENTITY_ANNOTATION = "config.linkerd.io/proxy-require-identity-inbound-ports"
"""Ports on which a pod's default policy admits only meshed clients (linkerd2 ``inbound/workload.rs``)."""


def pod_template(obj: LinkerdObject) -> tuple[dict[str, str], dict[str, str], dict[str, set[int]]]:
    """The labels, annotations and named container ports of the pods ``obj`` runs."""
    if obj.kind == "Pod":
        labels, annotations, spec = dict(obj.labels), dict(obj.annotations), obj.spec
    else:
        template = _mapping(obj.spec.get("template"))
        meta = _mapping(template.get("metadata"))
        labels = _strings(meta.get("labels"))
        annotations = {**obj.annotations, **_strings(meta.get("annotations"))}
        spec = _mapping(template.get("spec"))
    ports: dict[str, set[int]] = {}
    for container in _list(spec.get("containers")):
        for port in _list(_mapping(container).get("ports")):
            port = _mapping(port)
            name, number = port.get("name"), port.get("containerPort")
            if isinstance(name, str) and isinstance(number, int) and not isinstance(number, bool):
                ports.setdefault(name, set()).add(number)
    return labels, annotations, ports


def workload_findings(obj: LinkerdObject) -> list[Finding]:
    """Findings for the per-pod policy annotations ``obj`` (or its pod template) carries."""
    _, annotations, _ = pod_template(obj)
    found = []
    if DEFAULT_POLICY_ANNOTATION in annotations:
        found.append(
            obj.finding(
                f"annotations[{DEFAULT_POLICY_ANNOTATION}]",
                Exactness.REFUSED,
                f"a per-workload default inbound policy ({annotations[DEFAULT_POLICY_ANNOTATION]}) is not "
                "translated: Sigil's defaults are per cluster or per namespace, which its pods follow",
            )
        )
    if REQUIRE_IDENTITY_ANNOTATION in annotations:
        found.append(
            obj.finding(
                f"annotations[{REQUIRE_IDENTITY_ANNOTATION}]",
                Exactness.REFUSED,
                f"ports {annotations[REQUIRE_IDENTITY_ANNOTATION]} admit only meshed clients under the default "
                "policy; not translated (write a Server for them, or a Sigil policy on those ports)",
            )
        )
    return found


def named_port_numbers(
    server: LinkerdObject, name: str, workloads: list[LinkerdObject]
) -> tuple[tuple[int, ...], list[LinkerdObject]]:
    """The numbers the port ``name`` has in the batch's pods that ``server`` selects, and their workloads."""
    numbers: set[int] = set()
    used = []
    for workload in workloads:
        if workload.namespace != server.namespace:
            continue
        labels, _, ports = pod_template(workload)
        if selects(server.spec["podSelector"], labels) and name in ports:
            numbers |= ports[name]
            used.append(workload)
    return tuple(sorted(numbers)), used


def _mapping(raw: object) -> Mapping[str, Any]:
    return raw if isinstance(raw, Mapping) else {}


def _list(raw: object) -> list[Any]:
    return raw if isinstance(raw, list) else []


def _strings(raw: object) -> dict[str, str]:
    return {str(k): str(v) for k, v in raw.items()} if isinstance(raw, Mapping) else {}
