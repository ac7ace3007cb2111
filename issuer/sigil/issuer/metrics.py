"""The issuer's Prometheus metrics, in a registry the server passes in (never the process-global one).

Two servers in one test process, or a server beside the tests' own registry, must not collide; so every collector
is registered on the :class:`~prometheus_client.CollectorRegistry` handed to :class:`IssuerMetrics`.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from sigil.ca.authority import AuthorityStatus
from sigil.ca.service import CertificateAuthority
from sigil.issuer.kube.tokenreview import TokenReviewMetrics

__all__ = ["IssuerMetrics"]


class IssuerMetrics:
    """SVIDs issued, refusals by reason, request latency, and (through ``kube``) TokenReview calls and cache hits."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.svids_issued = Counter(
            "sigil_svids_issued",
            "SVIDs issued, by kind (x509, jwt) and caller (agent, workload, server, admin)",
            ["kind", "caller"],
            registry=registry,
        )
        self.refusals = Counter(
            "sigil_refusals",
            "Requests and batch items refused, by stable reason code",
            ["reason"],
            registry=registry,
        )
        self.requests = Histogram(
            "sigil_request_seconds",
            "Time to answer an API request, by route",
            ["route"],
            registry=registry,
        )
        self.federation_fetches = Counter(
            "sigil_federation_fetches",
            "Federated bundle endpoint polls, by trust domain and outcome",
            ["trust_domain", "outcome"],
            registry=registry,
        )
        self.policy_revision = Gauge(
            "sigil_policy_revision",
            "Revision of the authorization policy set this server hands to agents",
            registry=registry,
        )
        self.policy_refusals = Counter(
            "sigil_policy_refusals",
            "Policy documents refused (schema, YAML, name clash), by source (file, admin, kubernetes)",
            ["source"],
            registry=registry,
        )
        self.policy_answers = Counter(
            "sigil_policy_answers",
            "Policy feed answers to agents, by kind (full: the whole set; delta: what changed since the agent's set)",
            ["kind"],
            registry=registry,
        )
        self.policy_answer_bytes = Counter(
            "sigil_policy_answer_bytes",
            "Bytes of policy feed answer bodies sent to agents, by kind (full, delta)",
            ["kind"],
            registry=registry,
        )
        self.unreplaced = Gauge(
            "sigil_authority_unreplaced_svids",
            "Unexpired SVIDs of a tainted authority not yet re-issued (revoke refuses until 0), by kind and authority",
            ["kind", "authority_id"],
            registry=registry,
        )
        self.kube = TokenReviewMetrics(registry)

    async def count_unreplaced(self, ca: CertificateAuthority) -> None:
        """Set the unreplaced-SVID gauge of every tainted authority still in the bundle (one query each)."""
        self.unreplaced.clear()
        for authority in ca.authorities():
            if authority.tainted and authority.status is AuthorityStatus.OLD:
                left = await ca.outstanding(authority.authority_id)
                self.unreplaced.labels(authority.kind.value, authority.authority_id).set(left.count)
