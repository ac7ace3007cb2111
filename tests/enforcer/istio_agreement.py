"""Istio policy sets decided twice: by the reference evaluator of Istio, and by Sigil on their translation.

Sigil's side goes the way ``sigil-enforcer check`` does: every translated document is parsed as a policy
(:func:`sigil.enforcer.policy.parse_policy`) and the set compiled into a :class:`~sigil.enforcer.policy.PolicyIndex`
with the default ``allow``, then asked per connection. Two sets of cases:

* :func:`disagreements`: a fixed grid of the peers, ports, addresses and pods that tell Istio's matching rules
  apart (a trust domain named ``ns``, extra path segments, aliases, no SVID);
* :func:`diff_disagreements`: the cases ``sigil-enforcer diff`` enumerates for the translation (every pod the
  selectors tell apart, and its peer classes, port columns and address groups), with Sigil's decision read off
  two diffs (against no policy, which allows everything, and against an admin deny-all): the translation denies
  exactly the cases of the first, allows exactly those of the second. The reference then decides each case's
  representative connection.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sigil_testing.istio_reference import Connection, Mesh, Workload, decide

from sigil.ca.spiffe_id import SpiffeId, TrustDomain
from sigil.enforcer.policy import PolicyIndex, Target, parse_policy
from sigil.enforcer.policy.dialects.base import SourcedDocument, TranslateOptions, Translation
from sigil.enforcer.policy.dialects.istio import DIALECT
from sigil.enforcer.policy.diff import Case, differences

__all__ = [
    "ADDRESSES",
    "MESH",
    "PEERS",
    "PORTS",
    "WORKLOADS",
    "Disagreement",
    "disagreements",
    "translate",
]

MESH = Mesh(trust_domain="example.org", aliases=("old.org",), root_namespace="istio-system")
OPTIONS = TranslateOptions(
    trust_domain=MESH.trust_domain,
    trust_domain_aliases=MESH.aliases,
    root_namespace=MESH.root_namespace,
)
PEERS: tuple[str | None, ...] = (
    None,
    "spiffe://example.org/ns/shop/sa/web",
    "spiffe://example.org/ns/shop/sa/web-x",
    "spiffe://example.org/ns/ops/sa/admin",
    "spiffe://old.org/ns/shop/sa/web",
    "spiffe://far.org/ns/shop/sa/web",
    "spiffe://far.org/c/1/ns/shop/sa/web/v/2",
    "spiffe://far.org/ns/prod-eu/sa/web",
    "spiffe://ns/shop/x",
)
PORTS = (22, 80, 443, 5432)
ADDRESSES = ("10.0.0.5", "10.1.2.3", "192.168.1.1", "2001:db8::1")
WORKLOADS = (
    Workload("shop", {"app": "db"}),
    Workload("shop", {"app": "cache"}),
    Workload("ops", {"app": "db"}),
    Workload("istio-system", {}),
)


@dataclass(frozen=True)
class Disagreement:
    """One connection on which the two sides decide differently."""

    workload: Workload
    connection: Connection
    istio: bool
    sigil: bool
    istio_reason: str
    sigil_reason: str


def translate(policies: Sequence[Mapping[str, Any]]) -> Translation:
    """The translation of ``policies``, read as if from one file."""
    return DIALECT.translate(
        [SourcedDocument(p, f"istio.yaml#{i}") for i, p in enumerate(policies)], OPTIONS
    )


_DENY_ALL = {
    "apiVersion": "authz.sigil.dev/v1alpha1",
    "kind": "ClusterAuthorizationPolicy",
    "metadata": {"name": "diff-deny-all"},
    "spec": {
        "tier": "Admin",
        "priority": 0,
        "namespaceSelector": {},
        "podSelector": {},
        "rules": [{"action": "Deny", "sources": [{"type": "Any"}]}],
    },
}
_SOME_ADDRESS = "192.0.2.10"  # for cases whose rules name no network: any address decides alike


def diff_disagreements(policies: Sequence[Mapping[str, Any]]) -> list[Disagreement]:
    """Every case ``diff`` enumerates for the translation of ``policies`` where Istio decides otherwise."""
    translated = [parse_policy(t.document) for t in translate(policies).documents]
    domain = TrustDomain.parse(MESH.trust_domain)
    decided: list[tuple[Case, bool]] = [
        (d.case, False) for d in differences(translated, [], trust_domain=domain)
    ]
    decided += [
        (d.case, True)
        for d in differences(translated, [parse_policy(_DENY_ALL)], trust_domain=domain)
    ]
    found = []
    for case, sigil in decided:
        if case.address is None and case.address_group != "any address":
            continue  # Istio always knows the peer's address
        address = _SOME_ADDRESS if case.address is None else str(case.address)
        peer = case.peer.representative
        workload = Workload(case.namespace, dict(case.labels))
        connection = Connection(None if peer is None else str(peer), address, case.port)
        istio = decide(policies, workload, connection, MESH)
        if istio.allowed != sigil:
            found.append(
                Disagreement(workload, connection, istio.allowed, sigil, istio.reason, "diff")
            )
    return found


def _index(translation: Translation) -> PolicyIndex:
    return PolicyIndex(
        [parse_policy(t.document) for t in translation.documents],
        trust_domain=TrustDomain.parse(MESH.trust_domain),
        namespaces={w.namespace: {} for w in WORKLOADS},
    )


def disagreements(
    policies: Sequence[Mapping[str, Any]],
    *,
    peers: Sequence[str | None] = PEERS,
    ports: Sequence[int] = PORTS,
    addresses: Sequence[str] = ADDRESSES,
) -> Iterator[Disagreement]:
    """Every grid connection on which Istio (the reference) and Sigil (the translation) decide differently."""
    index = _index(translate(policies))
    for workload, peer, port, address in itertools.product(WORKLOADS, peers, ports, addresses):
        connection = Connection(peer, address, port)
        istio = decide(policies, workload, connection, MESH)
        sigil = index.decide(
            None if peer is None else SpiffeId.parse(peer),
            Target(workload.namespace, dict(workload.labels)),
            port,
            address=address,
            explain=True,
        )
        if istio.allowed != sigil.allowed:
            yield Disagreement(
                workload, connection, istio.allowed, sigil.allowed, istio.reason, sigil.reason
            )
