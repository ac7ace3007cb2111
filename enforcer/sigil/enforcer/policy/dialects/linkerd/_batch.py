"""One batch of Linkerd documents, indexed by kind, namespace and name, the way Linkerd's policy controller sees it.

Linkerd's meaning is spread over objects that name each other (an ``AuthorizationPolicy`` names a ``Server``
and the authentications it requires), so the translator first reads the whole batch. Core objects ride along
when the reader passes them: ``Namespace`` objects carry the ``config.linkerd.io/default-inbound-policy``
annotation, and workloads say which ports their pods name and which per-pod annotations they carry
(:mod:`._workloads`). Whatever is malformed becomes a finding here, never an exception.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sigil.enforcer.policy.dialects.base import Exactness, Finding, SourcedDocument
from sigil.enforcer.policy.dialects.linkerd._shapes import shape_error

__all__ = ["DEFAULT_POLICY_ANNOTATION", "Batch", "LinkerdObject", "read_batch"]

DEFAULT_POLICY_ANNOTATION = "config.linkerd.io/default-inbound-policy"
"""The annotation that overrides Linkerd's cluster default inbound policy on a namespace, workload or pod."""

_POLICY_GROUP = "policy.linkerd.io"
# Kubernetes object names (a DNS subdomain) and namespace names (a DNS label), as the API server checks them.
_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_TRANSLATED_KINDS = {
    "Server",
    "AuthorizationPolicy",
    "MeshTLSAuthentication",
    "NetworkAuthentication",
    "ServerAuthorization",
}
# Linkerd kinds that exist but say nothing Sigil can enforce at L4: reported, never silently dropped.
_L7_KINDS = {"HTTPRoute", "GRPCRoute", "HTTPLocalRateLimitPolicy", "EgressNetwork"}
_WORKLOAD_KINDS = {"Pod", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


@dataclass(frozen=True, slots=True)
class LinkerdObject:
    """One object of the batch: its kind, namespace (empty for cluster-scoped), name, metadata and spec."""

    kind: str
    namespace: str
    name: str
    where: str
    spec: Mapping[str, Any]
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    created: str

    @property
    def label(self) -> str:
        """How findings and annotations name the object: ``Server shop/web``."""
        scope = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {scope}{self.name}"

    def finding(self, path: str, exactness: Exactness, message: str) -> Finding:
        """A finding about this object (``path`` within it, empty for the whole object)."""
        return Finding(f"linkerd {self.label}", self.where, path, exactness, message)


@dataclass(slots=True)
class Batch:
    """The objects of one batch by kind, and the findings made while reading it."""

    objects: dict[str, dict[tuple[str, str], LinkerdObject]] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[LinkerdObject]:
        """Every object of ``kind``, sorted by namespace and name (translation is deterministic)."""
        found = self.objects.get(kind, {})
        return [found[key] for key in sorted(found)]

    def get(self, kind: str, namespace: str, name: str) -> LinkerdObject | None:
        """The object of ``kind`` called ``namespace/name``, or None when the batch does not hold it."""
        return self.objects.get(kind, {}).get((namespace, name))


def read_batch(documents: Sequence[SourcedDocument]) -> Batch:
    """Index ``documents``; anything unreadable or untranslatable is a finding."""
    batch = Batch()
    for sourced in documents:
        obj = _read(sourced, batch.findings)
        if obj is None:
            continue
        known = batch.objects.setdefault(obj.kind, {})
        if (obj.namespace, obj.name) in known:
            batch.findings.append(
                obj.finding(
                    "",
                    Exactness.REFUSED,
                    f"a second {obj.kind} of this name (first read at "
                    f"{known[(obj.namespace, obj.name)].where}); the first one is translated",
                )
            )
            continue
        known[(obj.namespace, obj.name)] = obj
    return batch


def _read(sourced: SourcedDocument, findings: list[Finding]) -> LinkerdObject | None:
    raw = sourced.document
    kind = raw.get("kind")
    api_version = raw.get("apiVersion")
    meta = raw.get("metadata")
    if (
        not isinstance(kind, str)
        or not isinstance(api_version, str)
        or not isinstance(meta, Mapping)
    ):
        findings.append(
            Finding(
                "linkerd document",
                sourced.where,
                "",
                Exactness.REFUSED,
                "not a Kubernetes object: apiVersion, kind and metadata are required",
            )
        )
        return None
    name = meta.get("name")
    namespace = meta.get("namespace") or ""
    spec = raw.get("spec") or {}
    obj = LinkerdObject(
        kind=kind,
        namespace=str(namespace),
        name=str(name),
        where=sourced.where,
        spec=spec if isinstance(spec, Mapping) else {},
        labels=_strings(meta.get("labels")),
        annotations=_strings(meta.get("annotations")),
        created=str(meta.get("creationTimestamp") or ""),
    )
    if not isinstance(name, str) or _NAME.fullmatch(name) is None or len(name) > 253:
        findings.append(
            obj.finding(
                "metadata.name",
                Exactness.REFUSED,
                "missing or not a Kubernetes name; not translated",
            )
        )
        return None
    if obj.namespace and (_NAMESPACE.fullmatch(obj.namespace) is None or len(obj.namespace) > 63):
        findings.append(
            obj.finding(
                "metadata.namespace",
                Exactness.REFUSED,
                "not a namespace name (a DNS label); not translated",
            )
        )
        return None
    group = api_version.split("/", 1)[0] if "/" in api_version else ""
    if group == _POLICY_GROUP:
        return _policy_object(obj, spec, findings)
    if kind == "Namespace" and group == "":
        return obj
    if kind in _WORKLOAD_KINDS and obj.namespace:
        return obj  # its pods' labels and named ports resolve Servers' named ports
    return None


def _policy_object(
    obj: LinkerdObject, spec: object, findings: list[Finding]
) -> LinkerdObject | None:
    if obj.kind in _L7_KINDS:
        findings.append(
            obj.finding(
                "",
                Exactness.REFUSED,
                f"{obj.kind} is Linkerd's L7 (per-request) policy; Sigil decides per connection, so it is "
                "not translated (requests it would have refused or limited are not refused by Sigil)",
            )
        )
        return None
    if obj.kind not in _TRANSLATED_KINDS:
        findings.append(obj.finding("", Exactness.REFUSED, f"unknown Linkerd kind {obj.kind}"))
        return None
    if not obj.namespace:
        findings.append(
            obj.finding(
                "metadata.namespace", Exactness.REFUSED, "missing; Linkerd's kinds are namespaced"
            )
        )
        return None
    if not isinstance(spec, Mapping):
        findings.append(obj.finding("spec", Exactness.REFUSED, "missing or not a mapping"))
        return None
    error = shape_error(obj.kind, spec)
    if error is not None:
        findings.append(obj.finding(error[0], Exactness.REFUSED, f"{error[1]}; not translated"))
        return None
    return obj


def _strings(raw: object) -> dict[str, str]:
    if not isinstance(raw, Mapping):
        return {}
    return {str(key): str(value) for key, value in raw.items()}
