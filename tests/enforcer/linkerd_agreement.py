"""Linkerd's verdict (the reference evaluator) beside Sigil's (the translated policies), on a grid of connections.

The grid holds every distinct kind of case the generated and hand-written Linkerd objects can tell apart: pods
of two namespaces with and without the labels Servers select (naming their ports as :data:`PORT_NAMES` says),
ports Servers select and one none does, clients
without identity, of accounts of each namespace (one with a dotted name), of another trust domain, and addresses
in each network block, in an exception, outside every cluster network, IPv4 and IPv6.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sigil_testing.linkerd_reference import Connection, linkerd_allows

from sigil.ca.spiffe_id import SpiffeId, TrustDomain
from sigil.enforcer.policy.decision import Target
from sigil.enforcer.policy.dialects.base import SourcedDocument, TranslateOptions, Translation
from sigil.enforcer.policy.dialects.linkerd import DIALECT, sigil_default
from sigil.enforcer.policy.documents import judge
from sigil.enforcer.policy.index import PolicyIndex
from sigil.enforcer.policy.peer_ids import WorkloadIdPattern
from sigil.enforcer.policy.schema import Where

__all__ = ["GRID", "PORT_NAMES", "Peer", "Verdicts", "disagreements", "translate_batch"]

TD = "cluster.local"
DEFAULT_TEMPLATE = "ns/{namespace}/sa/{service_account}"


@dataclass(frozen=True)
class Peer:
    """A client as both meshes see it: a ServiceAccount of a trust domain, or no identity at all."""

    account: str | None = None
    namespace: str | None = None
    trust_domain: str = TD

    @property
    def linkerd(self) -> str | None:
        if self.account is None:
            return None
        return (
            f"{self.account}.{self.namespace}.serviceaccount.identity.linkerd.{self.trust_domain}"
        )

    def spiffe(self, template: str = DEFAULT_TEMPLATE) -> SpiffeId | None:
        """The peer's SPIFFE ID under the workload ID ``template`` (its pod is ``pod-0`` on ``node-0``)."""
        if self.account is None:
            return None
        path = template.format(
            namespace=self.namespace,
            service_account=self.account,
            pod_name="pod-0",
            pod_uid="uid-0",
            node_name="node-0",
            node_uid="uid-1",
        )
        return SpiffeId.parse(f"spiffe://{self.trust_domain}/{path}")

    def __str__(self) -> str:
        return "no identity" if self.account is None else f"{self.linkerd}"


PODS = [
    ("shop", {"app": "web"}),
    ("shop", {"app": "db", "tier": "back"}),
    ("shop", {}),
    ("ops", {"app": "web"}),
]
PORT_NAMES = {"web": {"http": 8080}, "db": {"sql": 5432}}
"""The ports the pods of each ``app`` name (tests that name ports pass Deployments declaring the same)."""
PORTS = [8080, 5432, 9090]
PEERS = [
    Peer(),
    Peer("front", "shop"),
    Peer("deployer", "ops"),
    Peer("x.api", "ops"),
    Peer("front", "shop", "other.org"),
]
ADDRESSES = ["10.1.2.3", "10.9.0.1", "192.168.1.1", "203.0.113.5", "fd00::1", "2001:db8::1"]


@dataclass(frozen=True)
class Case:
    """One connection of the grid."""

    namespace: str
    labels: Mapping[str, str]
    port: int
    peer: Peer
    address: str

    def __str__(self) -> str:
        return f"{self.peer} from {self.address} to {self.namespace} {dict(self.labels)} port {self.port}"


GRID = [
    Case(ns, labels, port, peer, address)
    for ns, labels in PODS
    for port in PORTS
    for peer in PEERS
    for address in ADDRESSES
]


@dataclass(frozen=True)
class Verdicts:
    """One case on which the two evaluators differ."""

    case: Case
    linkerd: bool
    sigil: bool

    def __str__(self) -> str:
        return f"{self.case}: Linkerd {'allows' if self.linkerd else 'denies'}, Sigil {'allows' if self.sigil else 'denies'}"


def translate_batch(
    objects: Sequence[Mapping[str, Any]], *, template: str = DEFAULT_TEMPLATE
) -> Translation:
    """The dialect's translation of ``objects`` as one batch."""
    sourced = [SourcedDocument(obj, f"batch#{index}") for index, obj in enumerate(objects)]
    return DIALECT.translate(sourced, TranslateOptions(trust_domain=TD, id_template=template))


def disagreements(
    objects: Sequence[Mapping[str, Any]],
    *,
    cluster_default: str = "all-unauthenticated",
    translated: Sequence[Mapping[str, Any]] | None = None,
    template: str = DEFAULT_TEMPLATE,
) -> list[Verdicts]:
    """Every grid case where Sigil, running the translation, decides otherwise than Linkerd.

    ``translated`` (default: ``objects``) is what Sigil runs the translation of; a test that the comparison
    can fail gives it other objects than Linkerd sees.
    """
    translation = translate_batch(objects if translated is None else translated, template=template)
    result = judge(
        [
            (dict(t.document), Where("translation", index))
            for index, t in enumerate(translation.documents)
        ],
        source="linkerd-translation",
    )
    assert result.errors == (), [str(err) for err in result.errors]
    index = PolicyIndex(
        [accepted.policy for accepted in result.accepted],
        trust_domain=TrustDomain.parse(TD),
        default=sigil_default(cluster_default)[0],
        workload_ids=WorkloadIdPattern(template),
    )
    return list(_differing(objects, index, cluster_default, template))


def _differing(
    objects: Sequence[Mapping[str, Any]], index: PolicyIndex, cluster_default: str, template: str
) -> Iterator[Verdicts]:
    for case in GRID:
        named = PORT_NAMES.get(case.labels.get("app", ""), {})
        connection = Connection(
            case.namespace, case.labels, case.port, case.peer.linkerd, case.address, named
        )
        linkerd = linkerd_allows(
            objects, connection, cluster_default=cluster_default, trust_domain=TD
        )
        target = Target(case.namespace, case.labels)
        sigil = index.decide(
            case.peer.spiffe(template), target, case.port, address=case.address
        ).allowed
        if linkerd != sigil:
            yield Verdicts(case, linkerd, sigil)
