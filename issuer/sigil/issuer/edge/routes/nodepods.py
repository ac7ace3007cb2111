"""Pods out: each agent's long poll for the pods bound to its own node, and to no other.

An agent needs its node's pods to attest the processes that call it (``k8s:ns``, ``sa``, ``pod-label``, ...) and to
drop a deleted pod's SVIDs at once. Reading them from the API server itself would need RBAC that Kubernetes cannot
scope to one node (``list pods`` with a field selector is still ``list pods`` on the whole cluster), so one
compromised node would read every pod's labels and placement. The issuer already watches every pod for node
authorization (:mod:`sigil.issuer.kube.podcache`), so it hands each agent the slice of that view for the node in
the agent's SVID, as Istio's control plane pushes each ztunnel only the workloads of its node.

``GET /v1/agent/pods?after_revision=R&wait=S`` (agent SVID): the node's pods with their revision, at once without
``after_revision``, else as soon as the revision differs from ``R`` or after ``S`` seconds with what there is, as
the bundle and policy long polls do. The node comes from the SVID (``spiffe://TD/sigil/agent/k8s/CLUSTER/NODE``,
the cluster must be this issuer's): a request that names anything else is refused, and an agent attested without
Kubernetes (join token) has no node and is refused. While the pod cache has no consistent view (never listed, or
relisting after ``410 Gone``) the answer is 503, so the agent keeps the pods it has instead of losing them all.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterable

from aiohttp import web

from sigil.issuer.agentapi import contract
from sigil.issuer.agents import CallingAgent
from sigil.issuer.edge.parts import ISSUER, Issuer
from sigil.issuer.edge.routes.bundle import query_number
from sigil.issuer.edge.routes.common import authenticated_agent, issuer_of
from sigil.issuer.errors import (
    KubernetesUnavailableError,
    MalformedRequestError,
    NotEntitledError,
    UnavailableError,
)
from sigil.issuer.kube.podcache import CachedPod, PodCache

__all__ = ["install", "routes"]

routes = web.RouteTableDef()
#: Set when the server shuts down: waiting agents are answered at once with what there is.
_DRAINING = web.AppKey("sigil-node-pods-draining", asyncio.Event)
_PARAMETERS = frozenset({"after_revision", "wait"})


def install(app: web.Application) -> None:
    """Serve the route on ``app`` and answer its waiters when ``app`` shuts down."""
    app[_DRAINING] = asyncio.Event()
    app.router.add_routes(routes)

    async def drain(_app: web.Application) -> None:
        app[_DRAINING].set()
        kube = app[ISSUER].kube if ISSUER in app else None
        if kube is not None:
            await kube.pods.wake()  # each waiter sees the drain at once

    app.on_shutdown.append(drain)


def _node_of(caller: CallingAgent, issuer: Issuer) -> str:
    """The node in a Kubernetes agent's ID, of this issuer's cluster; 403 for any other agent."""
    kube = issuer.settings.server.kubernetes
    found = caller.k8s_node
    if found is None:
        raise NotEntitledError("the pods of a node", "only an agent attested on a Kubernetes node")
    cluster, node = found
    if kube is None or cluster != kube.cluster:
        raise NotEntitledError("the pods of a node", f"cluster {cluster!r} is not this issuer's")
    return node


def _bodies(pods: Iterable[CachedPod]) -> list[contract.NodePodBody]:
    return [
        {
            "uid": pod.uid,
            "namespace": pod.namespace,
            "name": pod.name,
            "service_account": pod.service_account,
            "labels": dict(pod.labels),
        }
        for pod in sorted(pods, key=lambda p: p.uid)
    ]


def _revision(node: str, bodies: list[contract.NodePodBody]) -> str:
    """A digest of what the agent gets, so that replicas agree and a status-only change wakes nobody."""
    content = json.dumps([node, bodies], sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(content).hexdigest()[:32]


def _response(node: str, pods: Iterable[CachedPod]) -> contract.NodePodsResponse:
    bodies = _bodies(pods)
    return {"revision": _revision(node, bodies), "node_name": node, "pods": bodies}


async def _wait_for_change(
    cache: PodCache, node: str, after: str, *, longest: float, draining: asyncio.Event
) -> None:
    """Return once the node's pods differ from revision ``after``, the server drains, or ``longest`` passes."""
    seen: frozenset[CachedPod] | None = None

    def moved(current: PodCache) -> bool:
        nonlocal seen
        if draining.is_set():
            return True
        if not current.synced:
            return False
        pods = frozenset(current.pods_on_node(node))
        # Every pod event in the cluster wakes every waiter: compare the node's pods (cheap) before hashing them.
        if pods == seen:
            return False
        seen = pods
        return _revision(node, _bodies(pods)) != after

    await cache.wait_for(moved, longest=longest)


@routes.get(contract.PATH_NODE_PODS)
async def node_pods(request: web.Request) -> web.Response:
    caller = await authenticated_agent(request)
    issuer = issuer_of(request)
    unknown = sorted(set(request.query) - _PARAMETERS)
    if unknown:
        raise MalformedRequestError(
            f"unknown parameter {', '.join(unknown)}: the node is the one in the agent's SVID"
        )
    node = _node_of(caller, issuer)
    if issuer.kube is None:
        raise UnavailableError("this server does not serve Kubernetes pods")
    cache = issuer.kube.pods
    after = request.query.get("after_revision")
    wait = query_number(request, "wait") or 0.0
    if after is not None:
        longest = min(wait, issuer.settings.server.long_poll_max.total_seconds())
        await _wait_for_change(cache, node, after, longest=longest, draining=request.app[_DRAINING])
    if not cache.synced:
        raise KubernetesUnavailableError("pod cache", "not synced with the API server yet")
    return web.json_response(_response(node, cache.pods_on_node(node)))
