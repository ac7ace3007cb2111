"""The running issuer's parts, held in one typed object that every handler reaches through an ``AppKey``.

No module-level singletons: the server builds one :class:`Issuer` per process from its settings (two can run in
one test process), and aiohttp's typed ``AppKey`` carries it to handlers (https://docs.aiohttp.org/en/stable/
web_advanced.html#application-s-config).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from aiohttp import web

from sigil.ca.service import CertificateAuthority
from sigil.issuer.agents.authentication import AgentAuthenticator
from sigil.issuer.bundles.feed import BundleFeed
from sigil.issuer.datastore.agentrecords import AgentRecords
from sigil.issuer.datastore.registry import Registry
from sigil.issuer.edge.listener_tls import ServingIdentity
from sigil.issuer.edge.ratelimit import RateLimiter
from sigil.issuer.kube import KubeApi, PodCache, TokenReviewAuthenticator
from sigil.issuer.metrics import IssuerMetrics
from sigil.issuer.policies.feed import PolicyFeed
from sigil.issuer.settings import ServerSettings

__all__ = ["ISSUER", "Issuer", "KubeParts"]


@dataclass(frozen=True, slots=True)
class KubeParts:
    """Kubernetes, when configured: the API, the two authenticators, and the watched pod cache."""

    api: KubeApi
    agents: TokenReviewAuthenticator
    workloads: TokenReviewAuthenticator
    pods: PodCache


@dataclass(slots=True)
class Issuer:
    settings: ServerSettings
    ca: CertificateAuthority
    registry: Registry
    feed: BundleFeed
    serving: ServingIdentity
    metrics: IssuerMetrics
    limiter: RateLimiter
    kube: KubeParts | None
    clock: Callable[[], datetime]
    policies: PolicyFeed
    agent_records: AgentRecords
    agents: AgentAuthenticator
    ready: bool = False
    draining: bool = False


ISSUER = web.AppKey("issuer", Issuer)
