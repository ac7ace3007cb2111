"""The identity sources authz.md 7.1 adds beside GEP-3779's ServiceAccount and SPIFFE: who, by class of peer.

* :class:`AuthenticatedSource` (``type: Authenticated``): any peer whose SVID verified against its own trust
  domain's bundle, local or federated, optionally limited to named trust domains. Linkerd's
  ``MeshTLSAuthentication`` with ``identities: ["*"]`` and Istio's ``principals: ["*"]`` say the same; Sigil's
  ``spiffe://*`` was refused, so "any authenticated peer" had no spelling outside the local domain.
* :class:`SameNamespaceSource` (``type: SameNamespace``): local peers of the target's own namespace, so that one
  ``ClusterAuthorizationPolicy`` can isolate every namespace (the NetworkPolicy idiom GEP-3779's review asked
  for). In an ``AuthorizationPolicy`` it is the same as ``serviceAccount: {name: "*"}``.
* :class:`NamespacesSource` (``type: Namespaces``): local peers whose namespace's labels match a selector, as
  AdminNetworkPolicy's ``namespaces`` peer does.

A peer's namespace is read from its ID under the workload ID template (:mod:`.peer_ids`).
"""

from __future__ import annotations

from dataclasses import dataclass

from sigil.enforcer.policy.selector import LabelSelector

__all__ = ["AuthenticatedSource", "NamespacesSource", "SameNamespaceSource"]


@dataclass(frozen=True, slots=True)
class AuthenticatedSource:
    """Any peer holding a verified SVID; ``trust_domains`` None = of any domain the enforcer trusts."""

    trust_domains: frozenset[str] | None = None

    def __str__(self) -> str:
        if self.trust_domains is None:
            return "any authenticated peer"
        return "any authenticated peer of " + ", ".join(sorted(self.trust_domains))


@dataclass(frozen=True, slots=True)
class SameNamespaceSource:
    """Local peers whose ID names the target pod's own namespace."""

    def __str__(self) -> str:
        return "peers of the target's namespace"


@dataclass(frozen=True, slots=True)
class NamespacesSource:
    """Local peers whose namespace has labels matching ``selector``."""

    selector: LabelSelector

    def __str__(self) -> str:
        return f"peers of namespaces matching {self.selector.to_dict() or '{}'}"
