"""What the issuer client hands back: SVIDs, batch results and the bundle and policy feeds, as frozen values.

They live apart from the HTTP calls so that the node agent's caches, the benchmark and tests can build and pass them
around without a client; each ``parse`` turns one :mod:`sigil.issuer.agentapi.contract` body into a value and is the only place
that knows that body's shape.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography import x509

from sigil.ca.bundle import TrustBundle
from sigil.ca.keys import PrivateKey
from sigil.ca.spiffe_id import SpiffeId, TrustDomain
from sigil.enforcer.errors import PolicyError
from sigil.enforcer.policy import AcceptedPolicy, Policy, PolicyKey, document_key, judge
from sigil.enforcer.policy.origin import Origin, origins_of
from sigil.enforcer.policy.schema import Where
from sigil.issuer.agentapi import contract
from sigil.issuer.client.refusals import Refusal
from sigil.issuer.errors import IssuerError

__all__ = [
    "AgentSvid",
    "BundleUpdate",
    "HeldPolicies",
    "IssuedJwtSvid",
    "IssuedX509Svid",
    "NodePod",
    "NodePodsUpdate",
    "PolicyUpdate",
    "X509SvidRequest",
    "X509SvidResult",
    "canonical_text",
    "hold",
]


@dataclass(frozen=True, slots=True)
class IssuedX509Svid:
    """An X509-SVID the issuer signed over the caller's key (the caller keeps the private key).

    ``signer_ids`` are the IDs of the authorities that signed it, as the bundle feed names tainted ones: the server
    knows them, so it sends them, and nobody works them out of the chain again.
    """

    spiffe_id: SpiffeId
    chain: tuple[x509.Certificate, ...]
    expires_at: datetime
    signer_ids: frozenset[str]

    @classmethod
    def parse(cls, body: contract.X509SvidBody) -> IssuedX509Svid:
        return cls(
            SpiffeId.parse(body["spiffe_id"]),
            tuple(x509.load_pem_x509_certificates(body["chain_pem"].encode())),
            datetime.fromisoformat(body["expires_at"]),
            frozenset(body["signer_ids"]),
        )


@dataclass(frozen=True, slots=True)
class AgentSvid:
    """The agent's own SVID and its key: the client certificate of every later request."""

    svid: IssuedX509Svid
    private_key: PrivateKey


@dataclass(frozen=True, slots=True)
class IssuedJwtSvid:
    """A JWT-SVID as the issuer signed it, with the identity and expiry it carries."""

    spiffe_id: SpiffeId
    token: str
    expires_at: datetime

    @classmethod
    def parse(cls, body: contract.JwtSvidBody) -> IssuedJwtSvid:
        return cls(
            SpiffeId.parse(body["spiffe_id"]),
            body["token"],
            datetime.fromisoformat(body["expires_at"]),
        )


@dataclass(frozen=True, slots=True)
class X509SvidRequest:
    """One workload in a batch: a pod (``namespace``, ``name``, ``uid``) or its selectors, and its CSR (PEM)."""

    csr: bytes
    pod: contract.PodRef | None = None
    selectors: tuple[str, ...] = ()
    spiffe_id: str | None = None

    def to_wire(self) -> contract.X509RequestItem:
        item: contract.X509RequestItem = {"csr": self.csr.decode()}
        if self.pod is not None:
            item["pod"] = self.pod
        if self.selectors:
            item["selectors"] = list(self.selectors)
        if self.spiffe_id is not None:
            item["spiffe_id"] = self.spiffe_id
        return item


@dataclass(frozen=True, slots=True)
class X509SvidResult:
    """The answer for one request of a batch: its SVIDs, or why it was refused."""

    svids: tuple[IssuedX509Svid, ...] = ()
    error: IssuerError | None = None

    @property
    def refusal(self) -> Refusal | None:
        """What the refusal of this item means (None when it was answered with SVIDs)."""
        return None if self.error is None else Refusal.of(self.error)


@dataclass(frozen=True, slots=True)
class BundleUpdate:
    """Own and federated bundles, the tainted authorities, and the revision to wait past next."""

    trust_domain: TrustDomain
    sequence: int
    revision: str
    bundle: TrustBundle
    federated: Mapping[TrustDomain, TrustBundle]
    tainted_authority_ids: frozenset[str]

    @classmethod
    def parse(cls, body: contract.BundleResponse) -> BundleUpdate:
        td = TrustDomain.parse(body["trust_domain"])
        federated = {
            TrustDomain.parse(name): TrustBundle.parse_jwks(TrustDomain.parse(name), _json(doc))
            for name, doc in body["federated"].items()
        }
        return cls(
            td,
            body["sequence"],
            body["revision"],
            TrustBundle.parse_jwks(td, _json(body["bundle"])),
            federated,
            frozenset(body["tainted_authority_ids"]),
        )


@dataclass(frozen=True, slots=True)
class HeldPolicies:
    """Every document of a set by its policy's key, as canonical text and as sent, once its digest checked out.

    What a delta of the feed is applied to (:mod:`sigil.issuer.client.policy_delta`): the documents this client's
    schema refused are held too, since the server's digest counts them.
    """

    texts: Mapping[PolicyKey, str]
    documents: Mapping[PolicyKey, Mapping[str, Any]]
    refused: Mapping[PolicyKey, PolicyError]


def hold(
    documents: Sequence[Mapping[str, Any]],
    outcomes: Sequence[AcceptedPolicy | PolicyError],
    *,
    namespaces: Mapping[str, Mapping[str, str]],
    digest: str,
) -> HeldPolicies | None:
    """The set of ``documents`` by key, or None when it cannot be a delta's base: a document whose policy cannot be
    named, two naming the same one, or a digest that is not :func:`~contract.policy_set_digest` of them."""
    texts: dict[PolicyKey, str] = {}
    by_key: dict[PolicyKey, Mapping[str, Any]] = {}
    refused: dict[PolicyKey, PolicyError] = {}
    for document, outcome in zip(documents, outcomes, strict=True):
        if isinstance(outcome, AcceptedPolicy):
            key: PolicyKey | None = outcome.key
            text = outcome.canonical
        else:
            key = document_key(document)
            text = canonical_text(document)
        if key is None or key in texts:
            return None
        texts[key] = text
        by_key[key] = document
        if isinstance(outcome, PolicyError):
            refused[key] = outcome
    if contract.policy_set_digest(texts.values(), namespaces) != digest:
        return None
    return HeldPolicies(texts, by_key, refused)


def canonical_text(document: object) -> str:
    """A decoded JSON document's canonical text, as :func:`sigil.enforcer.policy.judge` writes an accepted one's."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class PolicyUpdate:
    """The authorization policies in force, parsed, with the revision to wait past next.

    ``documents`` are the resources as the server sent them; ``accepted`` each policy this client's schema
    accepted, with its canonical document. A document the schema refuses (a server newer than the agent) is left
    out of ``accepted`` and reported in ``refused``, never raised: the rest stand. An update made from a delta
    (``delta``) lists its documents by key, and ``refused`` only those the delta brought.

    ``held`` is the set by key when its digest checked out (None otherwise): the next call names this set's
    digest only then, so a delta is only ever applied to a set known to equal the server's. ``delta_refused``
    says why a delta answer was not used, when it was not (this update is then the whole set, fetched again).
    """

    revision: int
    digest: str
    accepted: tuple[AcceptedPolicy, ...]
    documents: tuple[Mapping[str, Any], ...]
    namespaces: Mapping[str, Mapping[str, str]]
    refused: tuple[PolicyError, ...] = ()
    origins: Mapping[PolicyKey, Origin] = field(default_factory=dict)
    held: HeldPolicies | None = None
    delta: bool = False
    delta_refused: str | None = None

    @property
    def policies(self) -> tuple[Policy, ...]:
        """The accepted policies, in the server's order."""
        return tuple(accepted.policy for accepted in self.accepted)

    @classmethod
    def parse(
        cls, body: contract.PolicyResponse, *, known: Mapping[str, AcceptedPolicy] | None = None
    ) -> PolicyUpdate:
        """The update in ``body``; documents in ``known`` (by canonical text) are not parsed again."""
        documents = body["policies"]
        judged = judge(
            ((document, Where("issuer", n)) for n, document in enumerate(documents)),
            source="issuer",
            known=known,
            from_json=True,  # the body was JSON
        )
        namespaces = {ns: dict(labels) for ns, labels in body["namespaces"].items()}
        return cls(
            body["revision"],
            body["digest"],
            judged.accepted,
            tuple(documents),
            namespaces,
            tuple(err for err in judged.errors if isinstance(err, PolicyError)),
            origins_of(judged.outcomes, body.get("origins")),
            hold(documents, judged.outcomes, namespaces=namespaces, digest=body["digest"]),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class NodePod:
    """One pod bound to the agent's node, as the agent's ``k8s`` attestor needs it."""

    uid: str
    namespace: str
    name: str
    service_account: str
    labels: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class NodePodsUpdate:
    """The pods bound to the agent's node (the one in its SVID), with the revision to wait past next."""

    revision: str
    node_name: str
    pods: tuple[NodePod, ...]

    @classmethod
    def parse(cls, body: contract.NodePodsResponse) -> NodePodsUpdate:
        pods = tuple(
            NodePod(
                uid=str(pod["uid"]),
                namespace=str(pod["namespace"]),
                name=str(pod["name"]),
                service_account=str(pod["service_account"]),
                labels={str(k): str(v) for k, v in pod["labels"].items()},
            )
            for pod in body["pods"]
        )
        return cls(str(body["revision"]), str(body["node_name"]), pods)


def _json(document: Mapping[str, Any]) -> str:
    return json.dumps(document)
