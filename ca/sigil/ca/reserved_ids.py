"""Sigil's own SPIFFE IDs: the server's and the node agents', the one place that spells their paths.

Two paths of every trust domain a Sigil CA serves belong to Sigil itself, and no registration entry, workload ID
template or admin mint may hand one out:

- ``/sigil/server``: the issuer's own SVID, which agents check as the issuer (as SPIRE's agents check
  ``spiffe://TD/spire/server``);
- ``/sigil/agent/...``: node agents, named by how they attested: ``/sigil/agent/k8s/CLUSTER/NODE`` for a Kubernetes
  agent (SPIRE's k8s_psat uses ``/spire/agent/k8s_psat/CLUSTER/NODE_UID``; Sigil keys by node name so the ID an
  operator reads in ``kubectl get nodes`` is the one in the certificate) and ``/sigil/agent/join/SUFFIX`` for a
  join-token agent (named after the token's digest, never the token).

An agent's ID is what lets a caller ask for other workloads' SVIDs; so the issuer builds these IDs, and reads the
node back out of one, only through this module.
"""

from __future__ import annotations

from typing import Final

from sigil.ca.spiffe_id import SpiffeId, TrustDomain

__all__ = [
    "AGENT_PATH",
    "SERVER_PATH",
    "is_agent_id",
    "join_agent_id",
    "k8s_agent_id",
    "k8s_agent_node",
    "reserved_path",
    "server_id",
]

SERVER_PATH: Final = "/sigil/server"
AGENT_PATH: Final = "/sigil/agent"
_K8S: Final = "k8s"
_JOIN: Final = "join"


def _segments(path: str) -> list[str]:
    return path.strip("/").split("/")


def server_id(trust_domain: TrustDomain) -> SpiffeId:
    """The issuer's own ID, ``spiffe://TD/sigil/server``."""
    return trust_domain.spiffe_id(*_segments(SERVER_PATH))


def k8s_agent_id(trust_domain: TrustDomain, *, cluster: str, node_name: str) -> SpiffeId:
    """A Kubernetes node agent's ID, ``spiffe://TD/sigil/agent/k8s/CLUSTER/NODE``."""
    return trust_domain.spiffe_id(*_segments(AGENT_PATH), _K8S, cluster, node_name)


def join_agent_id(trust_domain: TrustDomain, suffix: str) -> SpiffeId:
    """A join-token agent's ID, ``spiffe://TD/sigil/agent/join/SUFFIX``."""
    return trust_domain.spiffe_id(*_segments(AGENT_PATH), _JOIN, suffix)


def is_agent_id(spiffe_id: SpiffeId) -> bool:
    """Whether ``spiffe_id`` is under ``/sigil/agent/`` (of any attestation method)."""
    return spiffe_id.path.startswith(AGENT_PATH + "/")


def k8s_agent_node(agent: SpiffeId) -> tuple[str, str] | None:
    """The ``(cluster, node)`` of an ID made by :func:`k8s_agent_id`; None for any other ID (a join-token agent)."""
    parts = _segments(agent.path)
    if len(parts) != 5 or parts[:3] != [*_segments(AGENT_PATH), _K8S]:
        return None
    return parts[3], parts[4]


def reserved_path(spiffe_id: SpiffeId) -> str | None:
    """The reserved path (:data:`AGENT_PATH` or :data:`SERVER_PATH`) that ``spiffe_id`` is or falls under."""
    for prefix in (AGENT_PATH, SERVER_PATH):
        if spiffe_id.path == prefix or spiffe_id.path.startswith(prefix + "/"):
            return prefix
    return None
