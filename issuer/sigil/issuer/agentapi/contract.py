"""The issuer's wire contract: every path and JSON body the agent API speaks, in one place.

The node agent and the server both import this module (the agent through :mod:`sigil.issuer.client`), so a field
renamed here is renamed on both sides at once. Bodies are JSON; certificates, chains and CSRs travel as PEM text,
bundles as SPIFFE bundle documents (a JWK Set, https://github.com/spiffe/spiffe/blob/main/standards/
SPIFFE_Trust_Domain_and_Bundle.md), times as RFC 3339 UTC strings. Refusals are RFC 9457 ``problem+json`` bodies
whose ``reason`` member is one of the stable codes of :mod:`sigil.issuer.errors`.

Batched X509-SVID requests follow SPIRE's ``BatchNewX509SVID``: the HTTP answer is 200 when the batch was read, and
each item carries either its SVIDs or its own problem, so one pod deleted in the meantime does not cost the rest.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any, Final, NotRequired, TypedDict

__all__ = [
    "MAX_BATCH",
    "PATH_ATTEST_JOIN_TOKEN",
    "PATH_ATTEST_K8S",
    "PATH_BUNDLE",
    "PATH_JWT_SVIDS",
    "PATH_NODE_PODS",
    "PATH_POLICIES",
    "PATH_RENEW",
    "PATH_WORKLOAD_X509",
    "PATH_X509_SVIDS",
    "PROBLEM_CONTENT_TYPE",
    "AgentSvidResponse",
    "AttestJoinTokenRequest",
    "AttestK8sRequest",
    "BundleResponse",
    "JwtSvidBody",
    "JwtSvidRequest",
    "JwtSvidResponse",
    "NodePodBody",
    "NodePodsResponse",
    "PodRef",
    "PolicyDeltaResponse",
    "PolicyRef",
    "PolicyResponse",
    "ProblemBody",
    "RenewRequest",
    "WorkloadX509Request",
    "X509BatchRequest",
    "X509BatchResponse",
    "X509RequestItem",
    "X509ResultItem",
    "X509SvidBody",
    "policy_response_body",
    "policy_set_digest",
]

PATH_ATTEST_K8S: Final = "/v1/agent/attest/k8s"
PATH_ATTEST_JOIN_TOKEN: Final = "/v1/agent/attest/join-token"  # noqa: S105 -- a URL path, not a secret
PATH_RENEW: Final = "/v1/agent/renew"
PATH_X509_SVIDS: Final = "/v1/svids/x509"
PATH_JWT_SVIDS: Final = "/v1/svids/jwt"
PATH_WORKLOAD_X509: Final = "/v1/workload/x509"
PATH_BUNDLE: Final = "/v1/bundle"
PATH_POLICIES: Final = "/v1/agent/policies"
PATH_NODE_PODS: Final = "/v1/agent/pods"

PROBLEM_CONTENT_TYPE: Final = "application/problem+json"
#: The most items one batch may carry (SPIRE's agent caps its CSR batches at 500 as well).
MAX_BATCH: Final = 500

#: A SPIFFE bundle document: ``{"keys": [...], "spiffe_sequence": N, "spiffe_refresh_hint": S}``.
BundleDocument = dict[str, Any]


class ProblemBody(TypedDict):
    """RFC 9457 problem details, plus the stable ``reason`` a client branches on."""

    type: str
    title: str
    status: int
    detail: str
    reason: str


# ------------------------------------------------------------------------------------------ agent attestation
class AttestK8sRequest(TypedDict):
    """A node agent in Kubernetes: its projected ServiceAccount token, its cluster's name, and a CSR for its key."""

    token: str
    cluster: str
    csr: str


class AttestJoinTokenRequest(TypedDict):
    """A node agent outside Kubernetes: a one-time join token and a CSR."""

    token: str
    csr: str


class RenewRequest(TypedDict):
    """A fresh CSR from an agent that proves itself with its current agent SVID (mTLS)."""

    csr: str


class X509SvidBody(TypedDict):
    """One X509-SVID: its ID, the chain leaf first (PEM), when it expires, and the authorities that signed it.

    ``signer_ids`` are authority IDs as :class:`BundleResponse` lists them in ``tainted_authority_ids``, so that the
    agent rotates an SVID early when its signer is tainted without working the signer out of the chain itself.
    """

    spiffe_id: str
    chain_pem: str
    expires_at: str
    signer_ids: list[str]


class BundleResponse(TypedDict):
    """The trust bundles an agent serves its workloads, and a revision to wait past for the next change.

    ``revision`` changes whenever anything here does (own bundle, a federated bundle, the tainted set); the
    ``sequence`` is the own bundle's ``spiffe_sequence``.
    """

    trust_domain: str
    sequence: int
    revision: str
    bundle: BundleDocument
    federated: dict[str, BundleDocument]
    tainted_authority_ids: list[str]


class PolicyResponse(TypedDict):
    """The authorization policies in force, for ``GET /v1/agent/policies?after_revision=N&wait=S``.

    ``policies`` are the resources themselves (``apiVersion``, ``kind``, ``metadata``, ``spec``), to be parsed
    with :func:`sigil.enforcer.policy.judge`; every one was accepted by the server with that schema.
    ``revision`` is shared by the server's replicas and moves with every change (policies or namespace labels);
    ``digest`` names the content, so equal digests are equal sets. ``namespaces`` maps each namespace to its labels
    (``kubernetes.io/metadata.name`` included), for cluster policies' ``namespaceSelector``. ``origins`` (added
    later, so optional both ways) says where each policy came from, in the order of ``policies``, as
    :meth:`sigil.enforcer.policy.origin.Origin.to_dict` writes it (null where unknown). ``digest`` is
    :func:`policy_set_digest` of the policies and namespaces. A request naming the set it holds
    (``held_digest=D``) may be answered a :class:`PolicyDeltaResponse` instead.
    """

    revision: int
    digest: str
    policies: list[dict[str, Any]]
    namespaces: dict[str, dict[str, str]]
    origins: NotRequired[list[dict[str, Any] | None]]


def policy_response_body(
    head: Mapping[str, Any], canonical_policies: Iterable[str], origin_texts: Iterable[str]
) -> bytes:
    """A :class:`PolicyResponse` as JSON, spliced from its parts: ``head`` (revision, digest, namespaces), each
    policy's canonical JSON text, and each origin's JSON text ("null" where unknown), so that a set of a thousand policies where one changed
    is not encoded again (the issuer's feed answers with it, the agent stores its copy with it)."""
    text = json.dumps(dict(head), sort_keys=True)[:-1]  # without its closing brace
    policies = ",".join(canonical_policies)
    origins = ", ".join(origin_texts)
    return f'{text}, "policies": [{policies}], "origins": [{origins}]}}'.encode()


class PolicyRef(TypedDict):
    """A policy by its identity: ``kind``, ``namespace`` ("" for a cluster policy) and ``name``."""

    kind: str
    namespace: str
    name: str


class PolicyDeltaResponse(TypedDict):
    """What changed in the policies in force since the set whose digest the agent named (``held_digest=D``).

    The answer to ``GET /v1/agent/policies?after_revision=N&held_digest=D&wait=S`` when the server still keeps
    the set ``D`` (``base_digest`` repeats it); otherwise the server answers a whole :class:`PolicyResponse`, so
    a client tells the two apart by ``base_digest``. ``policies`` are the resources added, or whose document or
    origin changed, each naming its policy in ``kind`` and ``metadata``, with their ``origins`` in the same order;
    ``removed`` the policies no longer in force. ``namespaces`` holds the namespaces added or whose labels
    changed, ``removed_namespaces`` those gone. ``revision`` and ``digest`` are the whole new set's: the client
    applies the delta to the set it holds and compares :func:`policy_set_digest` of the result with ``digest``.
    """

    revision: int
    digest: str
    base_digest: str
    policies: list[dict[str, Any]]
    origins: list[dict[str, Any] | None]
    removed: list[PolicyRef]
    namespaces: dict[str, dict[str, str]]
    removed_namespaces: list[str]


def policy_set_digest(
    canonical_policies: Iterable[str], namespaces: Mapping[str, Mapping[str, str]]
) -> str:
    """The ``digest`` of a policy set: SHA-256 over each policy's canonical text (sorted, one a line), then the
    namespaces' labels as JSON. The server numbers its revisions by it (every replica computes the same one for
    the same content), and a client holding a set computes it to check that a delta left it equal to the server's.
    """
    digest = hashlib.sha256()
    for canonical in sorted(canonical_policies):
        digest.update(canonical.encode() + b"\n")
    digest.update(json.dumps(namespaces, sort_keys=True).encode())
    return digest.hexdigest()


class NodePodBody(TypedDict):
    """One pod on the agent's node: what the agent's ``k8s`` workload attestor makes selectors of."""

    uid: str
    namespace: str
    name: str
    service_account: str
    labels: dict[str, str]


class NodePodsResponse(TypedDict):
    """The pods bound to the calling agent's node, for ``GET /v1/agent/pods?after_revision=R&wait=S``.

    The node is the one in the agent's SVID (``spiffe://TD/sigil/agent/k8s/CLUSTER/NODE``), never one the request
    names. ``revision`` is a digest of the content, so every replica gives the same one for the same pods.
    """

    revision: str
    node_name: str
    pods: list[NodePodBody]


class AgentSvidResponse(TypedDict):
    """What attestation and renewal return: the agent SVID and the bundle to verify the issuer with."""

    svid: X509SvidBody
    bundle: BundleResponse


# ------------------------------------------------------------------------------------------ workload SVIDs
class PodRef(TypedDict):
    """A pod the agent attested, by namespace, name and UID."""

    namespace: str
    name: str
    uid: str


class X509RequestItem(TypedDict):
    """One workload: a pod (in Kubernetes) or its selectors (registration entries), and a CSR for its key.

    With ``selectors``, every entry under the calling agent whose selectors are a subset yields an SVID over the
    same key; ``spiffe_id`` narrows that to one entry.
    """

    csr: str
    pod: NotRequired[PodRef]
    selectors: NotRequired[list[str]]
    spiffe_id: NotRequired[str]


class X509BatchRequest(TypedDict):
    requests: list[X509RequestItem]


class X509ResultItem(TypedDict):
    """The answer for one item: ``svids`` or ``problem``, never both."""

    svids: NotRequired[list[X509SvidBody]]
    problem: NotRequired[ProblemBody]


class X509BatchResponse(TypedDict):
    """Results in the order of the requests."""

    results: list[X509ResultItem]


class JwtSvidRequest(TypedDict):
    """JWT-SVIDs for ``audience``: for a pod, or for the entries matching ``selectors`` (narrowed by ``spiffe_id``)."""

    audience: list[str]
    pod: NotRequired[PodRef]
    selectors: NotRequired[list[str]]
    spiffe_id: NotRequired[str]


class JwtSvidBody(TypedDict):
    spiffe_id: str
    token: str
    expires_at: str


class JwtSvidResponse(TypedDict):
    svids: list[JwtSvidBody]


class WorkloadX509Request(TypedDict):
    """A workload without an agent: its own projected token (its own audience) and a CSR."""

    token: str
    csr: str
