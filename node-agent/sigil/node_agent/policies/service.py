"""The policy service on the agent's socket: each local enforcer gets the policies that can apply to its workload.

``/sigil.policy.v1.PolicyService/WatchPolicies`` (its contract in :mod:`sigil.enforcer.policy.wire`) is served next
to the Workload API, on the same socket and under the same rules: the ``workload.spiffe.io: true`` header is
required (``InvalidArgument`` without it), the caller is attested from the credentials its connection had at
accept, and the status codes come from the Workload API's one table.

The caller's pod (namespace and labels, from the ``k8s`` attestor's selectors) decides what it is sent
(:mod:`sigil.enforcer.policy.scope`): a workload learns nothing about the policies of other pods. A caller that is
not in a pod gets only the cluster policies whose selectors match an empty label set. The stream sends the complete
scoped snapshot at once and again whenever it differs from the last one sent; the issuer's revision is part of the
snapshot, so every new revision reaches the enforcer (whose metrics show it) even when its policies are unchanged.
Until the agent has a first policy set (from the issuer or its stored copy) the stream sends nothing and waits.
"""

from __future__ import annotations

import functools
import json

import structlog
from grpclib.const import Handler
from grpclib.server import Stream

from sigil.enforcer.policy.origin import Origin
from sigil.enforcer.policy.scope import Workload, applies_to
from sigil.enforcer.policy.wire import (
    WATCH_POLICIES_CARDINALITY,
    WATCH_POLICIES_PATH,
    PolicySnapshot,
    WatchPoliciesRequest,
)
from sigil.node_agent.attestation.caller import CallerAttestor
from sigil.node_agent.attestation.peer import PeerCredentials
from sigil.node_agent.attestation.selectors import Selectors
from sigil.node_agent.errors import PeerGoneError
from sigil.node_agent.grpc_edge import Caller, attested_call
from sigil.node_agent.policies.mirror import MirroredPolicies, PolicyMirror

__all__ = ["PolicyService", "snapshot_for", "workload_of"]


_log = structlog.get_logger(__name__)

_WorkloadKey = tuple[str | None, tuple[tuple[str, str], ...]]
_Cut = tuple[PolicySnapshot, bytes]

_NS = "ns:"
_LABEL = "pod-label:"


def workload_of(selectors: Selectors) -> Workload:
    """The caller's pod from its ``k8s`` selectors; namespace None when it has none (not in a pod)."""
    namespace: str | None = None
    labels: dict[str, str] = {}
    for selector in selectors:
        if selector.type != "k8s":
            continue
        if selector.value.startswith(_NS):
            namespace = selector.value.removeprefix(_NS)
        elif selector.value.startswith(_LABEL):
            # Label keys and values never hold ':' (Kubernetes' syntax), so the first one separates them.
            key, _, value = selector.value.removeprefix(_LABEL).partition(":")
            labels[key] = value
    return Workload(namespace, labels if namespace is not None else {})


def snapshot_for(state: MirroredPolicies, workload: Workload) -> PolicySnapshot:
    """The snapshot ``workload`` is sent from ``state`` (its namespace's labels taken from ``state``)."""
    if workload.namespace is not None:
        labels = state.namespaces.get(workload.namespace, {})
        workload = Workload(workload.namespace, workload.labels, labels)
    scoped = [a for a in state.entries if applies_to(a.policy, workload)]
    return PolicySnapshot(
        revision=state.revision,
        digest=state.digest,
        policies=[a.canonical for a in scoped],
        origins=[_origin_text(state.origins.get(a.key)) for a in scoped],
        namespace=workload.namespace or "",
        pod_labels=dict(workload.labels),
        namespace_labels=dict(workload.namespace_labels),
    )


def _origin_text(origin: Origin | None) -> str:
    """An origin as the snapshot carries it: its JSON, or "" when unknown."""
    return "" if origin is None else json.dumps(origin.to_dict(), sort_keys=True)


class PolicyService:
    """``WatchPolicies``, bound per connection like the Workload API (see ``server.py``)."""

    def __init__(self, *, policies: PolicyMirror, attestor: CallerAttestor) -> None:
        self._policies = policies
        self._attestor = attestor
        # The callers of one pod (or many pods alike) share a snapshot: scoping runs once per state and workload.
        self._cut: tuple[MirroredPolicies | None, dict[_WorkloadKey, _Cut]] = (None, {})

    def bind(self, caller: Caller) -> dict[str, Handler]:
        """The route whose handler serves ``caller``."""
        return {
            WATCH_POLICIES_PATH: Handler(
                functools.partial(self._watch, caller),
                WATCH_POLICIES_CARDINALITY,
                WatchPoliciesRequest,
                PolicySnapshot,
            )
        }

    def __mapping__(self) -> dict[str, Handler]:
        # A connection whose credentials were never captured: refuse everyone, as the Workload API does.
        return self.bind(PeerGoneError(0, "no peer credentials on this connection"))

    async def _watch(
        self, caller: Caller, stream: Stream[WatchPoliciesRequest, PolicySnapshot]
    ) -> None:
        # Attested exactly as a Workload API call is (header, kernel credentials, the same refusals).
        async with attested_call(caller, stream, self._attestor, method="WatchPolicies") as found:
            attested = found
            # Read inside the frame: a request that is no valid message is refused as INVALID_ARGUMENT.
            await stream.recv_message()
        pid = caller.pid if isinstance(caller, PeerCredentials) else None
        workload = workload_of(attested.selectors)
        _log.debug("policy watch", pid=pid, namespace=workload.namespace)
        changes = self._policies.changes
        last: bytes | None = None
        while True:
            seen = changes.revision
            cut = self._snapshot(workload)
            if cut is not None and cut[1] != last:
                await stream.send_message(cut[0])
                last = cut[1]
            await changes.wait_after(seen)

    def _snapshot(self, workload: Workload) -> _Cut | None:
        """The snapshot for ``workload`` of the state in force, and its bytes (None before any state)."""
        state = self._policies.state
        if state is None:
            return None
        cut_of, cuts = self._cut
        if cut_of is not state:
            cuts = {}
            self._cut = (state, cuts)
        key = (workload.namespace, tuple(sorted(workload.labels.items())))
        cut = cuts.get(key)
        if cut is None:
            snapshot = snapshot_for(state, workload)
            # Deterministic serialization orders map entries, so equal content gives equal bytes.
            cut = (snapshot, snapshot.SerializeToString(deterministic=True))
            cuts[key] = cut
        return cut
