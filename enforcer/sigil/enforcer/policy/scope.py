"""Which policies can apply to one workload: the node agent's scoping of what it sends each enforcer.

An enforcer decides connections to its own pod only, so it needs the policies that can select that pod, nothing
else (issue 5, "only what can apply to it"): the ``AuthorizationPolicies`` of the pod's namespace whose selector
matches its labels (and the ``spec.scope: Mesh`` ones of every namespace), and the ``ClusterAuthorizationPolicies`` whose ``namespaceSelector`` matches the namespace's
labels and whose ``podSelector`` matches the pod's. The rules are those of the index (authz.md part 7) and use
the same :class:`~sigil.enforcer.policy.selector.LabelSelector`, so scoping can never keep out a policy that the
evaluation would have applied.

A caller outside any pod (attested by uid only) has no namespace: it gets no namespaced policy, and the cluster
policies whose selectors match an empty label set (``{}`` selectors and ``NotIn``/``DoesNotExist`` expressions).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from sigil.enforcer.policy.decision import NAMESPACE_NAME_LABEL
from sigil.enforcer.policy.model import AuthorizationPolicy, Policy

__all__ = ["Workload", "applies_to", "scoped"]


@dataclass(frozen=True, slots=True)
class Workload:
    """The pod an enforcer guards, as the agent attested it; ``namespace`` None: not a Kubernetes pod."""

    namespace: str | None
    labels: Mapping[str, str] = field(default_factory=dict)
    namespace_labels: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", MappingProxyType(dict(self.labels)))
        labels = dict(self.namespace_labels)
        if self.namespace is not None:
            # Kubernetes sets it on every namespace; Sigil adds it where it reads policies from files (part 7).
            labels[NAMESPACE_NAME_LABEL] = self.namespace
        object.__setattr__(self, "namespace_labels", MappingProxyType(labels))


def applies_to(policy: Policy, workload: Workload) -> bool:
    """True when ``policy`` could take part in a decision about a connection to ``workload``."""
    if isinstance(policy, AuthorizationPolicy):
        # A Mesh-scoped policy (Sigil extension) joins the namespace tier of every namespace.
        in_scope = policy.namespace == workload.namespace or (
            policy.mesh and workload.namespace is not None
        )
        return in_scope and policy.selector.matches(workload.labels)
    return policy.namespace_selector.matches(
        workload.namespace_labels
    ) and policy.pod_selector.matches(workload.labels)


def scoped(policies: Iterable[Policy], workload: Workload) -> list[Policy]:
    """The policies of ``policies`` that can apply to ``workload``, in their order."""
    return [policy for policy in policies if applies_to(policy, workload)]
