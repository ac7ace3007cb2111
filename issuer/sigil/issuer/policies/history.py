"""The policy sets this issuer published lately, by digest, and what changed since each: the feed's deltas.

A change moves one policy of a thousand, yet an agent answered the whole set decodes and checks every document
again (bench/propagate.py: most of the agent's CPU per change). So an agent names the set it holds, by its digest,
and is answered only what changed since: the policies added or changed, whole, and the identities of those removed,
as the incremental xDS protocol answers resources by name
(https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#incremental-xds), and as SPIRE's agent syncs
only the entries whose revision moved (``SyncAuthorizedEntries``, spire ``pkg/agent/client/client.go``).

The base is named by digest, not revision: replicas number equal content alike, but a replica may never have held
a set another one published, and the digest says exactly which content the agent holds. Only the last
:data:`KEPT` sets are kept; an agent further behind (or whose set this replica never held, or an agent that names
none) is answered the whole set. A kept set costs one dict entry per policy (the canonical texts and origin texts
are the same strings the feed holds anyway): about 90 KiB for 1,001 policies, 1.5 MiB for all 16.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from sigil.enforcer.policy.documents import PolicyKey
from sigil.issuer.agentapi import contract

__all__ = ["KEPT", "PolicyHistory", "PublishedSet", "delta_body"]

#: How many published sets (by digest) a delta can start from.
KEPT: Final = 16


@dataclass(frozen=True, slots=True)
class PublishedSet:
    """One set as agents were answered it: each policy's canonical text and origin JSON by key, namespace labels."""

    revision: int
    digest: str
    policies: Mapping[PolicyKey, tuple[str, str]]
    namespaces: Mapping[str, Mapping[str, str]]


class PolicyHistory:
    """The last :data:`KEPT` published sets, newest last; :meth:`delta_body` writes what changed since one."""

    def __init__(self, kept: int = KEPT) -> None:
        if kept < 1:
            raise ValueError(f"kept must be at least 1, not {kept}")
        self._kept = kept
        self._sets: OrderedDict[str, PublishedSet] = OrderedDict()

    def record(self, published: PublishedSet) -> None:
        """Keep ``published`` as the newest set (the same content again replaces its older record)."""
        self._sets.pop(published.digest, None)
        self._sets[published.digest] = published
        while len(self._sets) > self._kept:
            self._sets.popitem(last=False)

    def get(self, digest: str) -> PublishedSet | None:
        """The kept set of ``digest``, or None when it is not (or no longer) kept."""
        return self._sets.get(digest)


def delta_body(base: PublishedSet, current: PublishedSet) -> bytes:
    """A :class:`~sigil.issuer.agentapi.contract.PolicyDeltaResponse` from ``base`` to ``current``, as JSON.

    A policy whose document is unchanged but whose origin moved (a document inserted above it in its file) is
    sent whole as well: the delta has one way to say "this policy is now so", and the agent takes an unchanged
    document as the policy it already holds, without parsing it again.
    """
    changed = sorted(
        (key, entry) for key, entry in current.policies.items() if base.policies.get(key) != entry
    )
    removed = sorted(key for key in base.policies if key not in current.policies)
    head = {
        "revision": current.revision,
        "digest": current.digest,
        "base_digest": base.digest,
        "removed": [{"kind": kind, "namespace": ns, "name": name} for kind, ns, name in removed],
        "namespaces": {
            ns: dict(labels)
            for ns, labels in sorted(current.namespaces.items())
            if base.namespaces.get(ns) != labels
        },
        "removed_namespaces": sorted(set(base.namespaces) - set(current.namespaces)),
    }
    return contract.policy_response_body(
        head,
        (canonical for _, (canonical, _) in changed),
        (origin for _, (_, origin) in changed),
    )
