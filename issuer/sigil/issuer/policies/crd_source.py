"""The cluster's ``authz.sigil.dev`` policies and namespaces, followed by list+watch into the policy feed.

The CRDs are validated by the API server against the schema generated from ours, but an older CRD, a server with
validation off, or a newer field can still deliver a resource our schema refuses; so each object is judged again
here, alone and once (the feed's judgement also writes each object's status), and a refused one keeps its last
good version like a broken file. Namespaces are watched for their
labels, which cluster policies select on and which agents cannot read themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sigil.enforcer.policy.origin import Origin, OriginKind
from sigil.enforcer.policy.resources import (
    API_VERSION,
    CLUSTER_KIND,
    GROUP,
    NAMESPACED_KIND,
    VERSION,
)
from sigil.enforcer.policy.schema import Where
from sigil.issuer.kube.api import KubeApi
from sigil.issuer.kube.informer import Informer, ObjectKey, OnChange
from sigil.issuer.policies.crd_status import accepted_condition, write_statuses
from sigil.issuer.policies.feed import PolicyFeed

__all__ = ["NAMESPACE_NAME_LABEL", "policy_informers"]

#: Kubernetes sets this label on every namespace (since 1.21); policies may select on it everywhere.
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
_PLURALS = {NAMESPACED_KIND: "authorizationpolicies", CLUSTER_KIND: "clusterauthorizationpolicies"}


def _document(kind: str, obj: Mapping[str, Any]) -> dict[str, Any]:
    """The resource as a policy file would hold it: server-set metadata (uid, resourceVersion...) left out."""
    metadata = obj.get("metadata") or {}
    kept = {k: metadata[k] for k in ("name", "namespace") if k in metadata}
    # List items of some servers carry no kind/apiVersion; the collection says what they are.
    return {
        "apiVersion": obj.get("apiVersion", API_VERSION),
        "kind": obj.get("kind", kind),
        "metadata": kept,
        "spec": obj.get("spec"),
    }


def _where(kind: str, key: ObjectKey) -> Where:
    namespace, name = key
    return Where(
        f"kubernetes {kind} {namespace}/{name}" if namespace else f"kubernetes {kind} {name}"
    )


def _origin(key: ObjectKey, obj: Mapping[str, Any]) -> Origin:
    """The object a policy came from, with the ``metadata.generation`` its spec is at."""
    namespace, name = key
    generation = (obj.get("metadata") or {}).get("generation")
    return Origin(
        kind=OriginKind.CRD,
        name=f"{namespace}/{name}" if namespace else name,
        generation=generation if isinstance(generation, int) and generation >= 0 else None,
    )


def policy_informers(
    api: KubeApi,
    feed: PolicyFeed,
    *,
    watch_crds: bool,
    now: Callable[[], datetime],
    namespace_listeners: Sequence[OnChange] = (),
) -> list[Informer]:
    """The informers that keep ``feed`` current: each CRD (when ``watch_crds``) and the namespaces (whose every
    change also goes to each of ``namespace_listeners``).

    After each change of a CRD's objects, each object's ``status`` says whether it is in force
    (:mod:`sigil.issuer.policies.crd_status`).
    """
    informers: list[Informer] = []
    if watch_crds:
        for kind, plural in _PLURALS.items():

            async def on_change(
                objects: Mapping[ObjectKey, dict[str, Any]], kind: str = kind, plural: str = plural
            ) -> None:
                source = f"kubernetes:{plural}"
                judged = [
                    (key, obj, _document(kind, obj), _where(kind, key))
                    for key, obj in sorted(objects.items())
                ]
                result = await feed.set_source(
                    source,
                    [(doc, where) for _, _, doc, where in judged],
                    origins=[_origin(key, obj) for key, obj, _, _ in judged],
                )
                owners = feed.owners()
                wanted = {
                    key: (
                        accepted_condition(
                            outcome,
                            doc,
                            source=source,
                            owners=owners,
                            generation=int((obj.get("metadata") or {}).get("generation") or 0),
                        ),
                        obj,
                    )
                    for (key, obj, doc, _), outcome in zip(judged, result.outcomes, strict=True)
                }
                await write_statuses(api, (GROUP, VERSION, plural), wanted, now=now)

            informers.append(Informer(api, f"/apis/{GROUP}/{VERSION}/{plural}", on_change))

    async def on_namespaces(objects: Mapping[ObjectKey, dict[str, Any]]) -> None:
        labels: dict[str, dict[str, str]] = {}
        for (_, name), obj in objects.items():
            found = dict((obj.get("metadata") or {}).get("labels") or {})
            found.setdefault(NAMESPACE_NAME_LABEL, name)
            labels[name] = found
        await feed.set_namespaces(labels)
        for listener in namespace_listeners:
            await listener(objects)

    informers.append(Informer(api, "/api/v1/namespaces", on_namespaces))
    return informers
