"""The Sigil enforcer: authorization policies and their evaluation, inside workloads.

It runs in the workload's own pod, so it never imports a database or the Kubernetes client (an
import-linter contract holds it to that). The enforcement points (SVID verification, TLS contexts, the aiohttp
middleware, the proxy) load on first use (PEP 562), so that ``sigil-enforcer check`` does not import gRPC.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sigil.enforcer.errors import (
    EnforcerError,
    IdentitySourceError,
    PolicyError,
    PolicySourceError,
    PolicyYamlError,
    RequestError,
    SvidVerificationError,
    UnknownFieldError,
)
from sigil.enforcer.policy import (
    AuthorizationPolicy,
    ClusterAuthorizationPolicy,
    Decision,
    PolicyIndex,
    Target,
    Tier,
    parse_policy,
)
from sigil.enforcer.policy.store import LoadReport, PolicySet, PolicyStore
from sigil.kit.lazy import lazy_exports

if TYPE_CHECKING:
    from sigil.enforcer.authorizer import Authorizer
    from sigil.enforcer.bundles import BundleSet
    from sigil.enforcer.metrics import EnforcerMetrics
    from sigil.enforcer.middleware import PEER, spiffe_authorization
    from sigil.enforcer.policy.receiver import AgentPolicySource
    from sigil.enforcer.proxy.listener import InboundProxy, OutboundProxy
    from sigil.enforcer.sources import StaticSource, X509Material
    from sigil.enforcer.tls import SpiffeTls, client_context, peer_of, server_context
    from sigil.enforcer.verify import Refusal, SvidVerifier, VerifiedSvid
    from sigil.enforcer.workload_source import WorkloadApiSource

__all__ = [
    "PEER",
    "AgentPolicySource",
    "AuthorizationPolicy",
    "Authorizer",
    "BundleSet",
    "ClusterAuthorizationPolicy",
    "Decision",
    "EnforcerError",
    "EnforcerMetrics",
    "IdentitySourceError",
    "InboundProxy",
    "LoadReport",
    "OutboundProxy",
    "PolicyError",
    "PolicyIndex",
    "PolicySet",
    "PolicySourceError",
    "PolicyStore",
    "PolicyYamlError",
    "Refusal",
    "RequestError",
    "SpiffeTls",
    "StaticSource",
    "SvidVerificationError",
    "SvidVerifier",
    "Target",
    "Tier",
    "UnknownFieldError",
    "VerifiedSvid",
    "WorkloadApiSource",
    "X509Material",
    "client_context",
    "parse_policy",
    "peer_of",
    "server_context",
    "spiffe_authorization",
]

_LAZY = {
    "AgentPolicySource": "sigil.enforcer.policy.receiver",
    "Authorizer": "sigil.enforcer.authorizer",
    "BundleSet": "sigil.enforcer.bundles",
    "EnforcerMetrics": "sigil.enforcer.metrics",
    "InboundProxy": "sigil.enforcer.proxy.listener",
    "OutboundProxy": "sigil.enforcer.proxy.listener",
    "PEER": "sigil.enforcer.middleware",
    "Refusal": "sigil.enforcer.verify",
    "SpiffeTls": "sigil.enforcer.tls",
    "StaticSource": "sigil.enforcer.sources",
    "SvidVerifier": "sigil.enforcer.verify",
    "VerifiedSvid": "sigil.enforcer.verify",
    "WorkloadApiSource": "sigil.enforcer.workload_source",
    "X509Material": "sigil.enforcer.sources",
    "client_context": "sigil.enforcer.tls",
    "peer_of": "sigil.enforcer.tls",
    "server_context": "sigil.enforcer.tls",
    "spiffe_authorization": "sigil.enforcer.middleware",
}


__getattr__ = lazy_exports(__name__, _LAZY)
