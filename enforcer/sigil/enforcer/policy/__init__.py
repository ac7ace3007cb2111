"""Sigil's authorization policies: the resources, their schema, loading, the compiled index and decisions.

The contract is authz.md part 7 (../shared/reference/authz.md): GEP-3779's ``AuthorizationPolicy`` with
Sigil's documented extensions, and ``ClusterAuthorizationPolicy`` for the cluster admin's Admin and Baseline
tiers.
"""

from __future__ import annotations

from sigil.enforcer.policy.decision import Decision, Match, Target, Tier, Verdict
from sigil.enforcer.policy.index import PolicyIndex
from sigil.enforcer.policy.model import (
    AuthorizationPolicy,
    ClusterAuthorizationPolicy,
    ClusterTier,
    Effect,
    Policy,
    Rule,
    ServiceAccountSource,
    Source,
    SpiffeSource,
    parse_policy,
)
from sigil.enforcer.policy.selector import LabelSelector

__all__ = [
    "AuthorizationPolicy",
    "ClusterAuthorizationPolicy",
    "ClusterTier",
    "Decision",
    "Effect",
    "LabelSelector",
    "Match",
    "Policy",
    "PolicyIndex",
    "Rule",
    "ServiceAccountSource",
    "Source",
    "SpiffeSource",
    "Target",
    "Tier",
    "Verdict",
    "parse_policy",
]
