"""Which policies select one target pod: the first step of every decision (authz.md part 7).

A target's namespace tier holds the ``AuthorizationPolicies`` of its own namespace whose selector matches its
labels, and (Sigil extension, ``spec.scope: Mesh``, Istio's root-namespace policies) the Mesh-scoped ones of
every namespace whose selector matches them; its Admin and Baseline tiers hold the
``ClusterAuthorizationPolicies`` whose ``namespaceSelector`` matches the namespace's labels and whose
``podSelector`` matches the pod's. :class:`~sigil.enforcer.policy.index.PolicyIndex` asks once per target;
cluster policies are matched once per namespace.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from sigil.enforcer.policy.decision import Target
from sigil.enforcer.policy.model import AuthorizationPolicy, ClusterAuthorizationPolicy, Policy

__all__ = ["PolicySelection"]


class PolicySelection:
    """The policies of one set, grouped so that a target's are found without a scan of every policy."""

    def __init__(
        self,
        policies: Iterable[Policy],
        *,
        namespace_labels: Callable[[str], Mapping[str, str]],
        cache_size: int,
    ) -> None:
        self._labels = namespace_labels
        self._cache_size = cache_size
        self._by_namespace: dict[str, list[AuthorizationPolicy]] = {}
        self._mesh: list[AuthorizationPolicy] = []
        cluster: list[ClusterAuthorizationPolicy] = []
        for policy in policies:
            if isinstance(policy, ClusterAuthorizationPolicy):
                cluster.append(policy)
            elif policy.mesh:
                self._mesh.append(policy)
            else:
                self._by_namespace.setdefault(policy.namespace, []).append(policy)
        # Part 7: ascending priority, ties by name.
        cluster.sort(key=lambda p: (p.priority, p.name))
        self._cluster = tuple(cluster)
        self._cluster_by_namespace: dict[str, tuple[ClusterAuthorizationPolicy, ...]] = {}

    def select(
        self, target: Target
    ) -> tuple[list[ClusterAuthorizationPolicy], list[AuthorizationPolicy]]:
        """The cluster policies (by priority and name) and the namespace tier's policies selecting ``target``."""
        labels = target.labels
        cluster = [
            p for p in self._cluster_policies(target.namespace) if p.pod_selector.matches(labels)
        ]
        owned = [
            p
            for p in (*self._by_namespace.get(target.namespace, ()), *self._mesh)
            if p.selector.matches(labels)
        ]
        return cluster, owned

    def _cluster_policies(self, namespace: str) -> tuple[ClusterAuthorizationPolicy, ...]:
        found = self._cluster_by_namespace.get(namespace)
        if found is None:
            labels = self._labels(namespace)
            found = tuple(p for p in self._cluster if p.namespace_selector.matches(labels))
            if len(self._cluster_by_namespace) >= self._cache_size:
                self._cluster_by_namespace.clear()
            self._cluster_by_namespace[namespace] = found
        return found
