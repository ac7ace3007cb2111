"""The Sigil enforcer: authorization policies and their evaluation, inside workloads.

It runs in the workload's own pod, so it never imports a database or the Kubernetes client (an
import-linter contract holds it to that).
"""

from __future__ import annotations

from sigil.enforcer.errors import (
    EnforcerError,
    PolicyError,
    PolicySourceError,
    PolicyYamlError,
    RequestError,
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

__all__ = [
    "AuthorizationPolicy",
    "ClusterAuthorizationPolicy",
    "Decision",
    "EnforcerError",
    "LoadReport",
    "PolicyError",
    "PolicyIndex",
    "PolicySet",
    "PolicySourceError",
    "PolicyStore",
    "PolicyYamlError",
    "RequestError",
    "Target",
    "Tier",
    "parse_policy",
]
