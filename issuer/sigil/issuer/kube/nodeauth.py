"""Node authorization: an agent may ask for the identities of the pods on its own node, and of no other pod.

This is what keeps a compromised node from minting the identities of workloads elsewhere in the cluster (the same
rule the Kubernetes Node authorizer applies to kubelets, https://kubernetes.io/docs/reference/access-authn-authz/node/).
It reads the watched pod cache, never the API server, because agents ask in batches all the time.
"""

from __future__ import annotations

from sigil.issuer.errors import (
    KubernetesUnavailableError,
    PodNotFoundError,
    PodOnOtherNodeError,
    PodUidMismatchError,
)
from sigil.issuer.kube.podcache import CachedPod, PodCache

__all__ = ["authorize_pod_for_node"]


def authorize_pod_for_node(
    cache: PodCache, agent_node: str, *, namespace: str, pod_name: str, pod_uid: str
) -> CachedPod:
    """The cached pod when it is ``namespace/pod_name`` with ``pod_uid`` and runs on ``agent_node``.

    Raises :class:`PodNotFoundError`, :class:`PodUidMismatchError` or :class:`PodOnOtherNodeError` (403), or
    :class:`KubernetesUnavailableError` (503) while the cache has no consistent view to answer from.
    """
    if not cache.synced:
        raise KubernetesUnavailableError("pod cache", "not synced with the API server yet")
    pod = cache.pod(namespace, pod_name)
    if pod is None:
        raise PodNotFoundError(namespace, pod_name)
    if pod.uid != pod_uid:
        raise PodUidMismatchError(namespace, pod_name, requested_uid=pod_uid, pod_uid=pod.uid)
    if pod.node_name != agent_node:
        raise PodOnOtherNodeError(
            namespace, pod_name, node_name=pod.node_name, agent_node=agent_node
        )
    return pod
