"""The effective policy of one running pod, as the server sees it: ``sigil-server policy effective --pod NS/NAME``.

The server holds every policy in force and, in Kubernetes, watches every pod (:class:`~sigil.issuer.kube.PodCache`)
and namespace, so it can answer for any pod without asking its enforcer: the pod's labels come from the pod
watch; outside Kubernetes (or to ask "what if") the caller gives them. The view itself is the enforcer's
(:func:`sigil.enforcer.policy.effective.effective`), so the answer is the one that pod's enforcer computes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sigil.ca.spiffe_id import TrustDomain
from sigil.enforcer.errors import EnforcerError
from sigil.enforcer.policy.decision import Target
from sigil.enforcer.policy.defaults import DefaultPolicy
from sigil.issuer.errors import MalformedRequestError, NotFoundError
from sigil.issuer.kube.podcache import PodCache
from sigil.issuer.policies.feed import PolicyFeed

__all__ = ["pod_effective"]


def pod_effective(
    feed: PolicyFeed,
    pods: PodCache | None,
    *,
    pod: str,
    labels: Mapping[str, str] | None,
    port: int | None,
    default: DefaultPolicy,
    trust_domain: TrustDomain,
) -> dict[str, Any]:
    """The JSON view of ``pod`` (``namespace/name``), with where its labels came from under ``pod``.

    Raises :class:`MalformedRequestError` for a malformed pod, label or port, or when no labels are given and
    there is no pod watch; :class:`NotFoundError` for a pod the watch does not hold.
    """
    namespace, slash, name = pod.partition("/")
    if not slash or not namespace or not name:
        raise MalformedRequestError(f"pod {pod!r}: expected NAMESPACE/NAME")
    if port is not None and not 1 <= port <= 65535:
        raise MalformedRequestError(f"port {port}: not a port (1-65535)")
    labels_from = "request"
    if labels is None:
        if pods is None:
            raise MalformedRequestError(
                "this server watches no pods (not in Kubernetes): give the pod's labels"
            )
        cached = pods.pod(namespace, name)
        if cached is None:
            raise NotFoundError(f"pod {namespace}/{name}")
        labels, labels_from = dict(cached.labels), "pod watch"
    try:
        target = Target.parse(namespace, labels)
    except EnforcerError as err:
        raise MalformedRequestError(str(err)) from err
    view = feed.effective(target, trust_domain=trust_domain, default=default, port=port).to_dict()
    view["pod"] = {"namespace": namespace, "name": name, "labels_from": labels_from}
    return view
