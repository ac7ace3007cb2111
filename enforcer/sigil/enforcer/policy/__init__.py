"""Sigil's authorization policies: the resources, their schema, judging, loading, the compiled index and decisions.

:mod:`.documents` is the one place a raw document becomes an accepted policy (with its canonical document) or a
refusal; every reader of policies, in every component, comes through it. :mod:`.store` keeps the last good
version per source. Policies reach an enforcer from a directory (:mod:`.loader`) or from the node agent
(:mod:`.receiver`, over the contract in :mod:`.wire`); the core never imports those two, so evaluating policies
(``sigil-enforcer check``) needs no gRPC.

The contract is authz.md part 7 (../shared/reference/authz.md): GEP-3779's ``AuthorizationPolicy`` with
Sigil's documented extensions, and ``ClusterAuthorizationPolicy`` for the cluster admin's Admin and Baseline
tiers.
"""

from __future__ import annotations

from sigil.enforcer.policy.decision import Decision, Match, Target, Tier, Verdict
from sigil.enforcer.policy.defaults import DefaultPolicy
from sigil.enforcer.policy.documents import (
    AcceptedPolicy,
    PolicyKey,
    SourceResult,
    document_key,
    judge,
    policy_key,
)
from sigil.enforcer.policy.identity_sources import (
    AuthenticatedSource,
    NamespacesSource,
    SameNamespaceSource,
)
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
from sigil.enforcer.policy.network import PortRange, SourceNetwork
from sigil.enforcer.policy.peer_ids import WorkloadIdPattern
from sigil.enforcer.policy.selector import LabelSelector

__all__ = [
    "AcceptedPolicy",
    "AuthenticatedSource",
    "AuthorizationPolicy",
    "ClusterAuthorizationPolicy",
    "ClusterTier",
    "Decision",
    "DefaultPolicy",
    "Effect",
    "LabelSelector",
    "Match",
    "NamespacesSource",
    "Policy",
    "PolicyIndex",
    "PolicyKey",
    "PortRange",
    "Rule",
    "SameNamespaceSource",
    "ServiceAccountSource",
    "Source",
    "SourceNetwork",
    "SourceResult",
    "SpiffeSource",
    "Target",
    "Tier",
    "Verdict",
    "WorkloadIdPattern",
    "document_key",
    "judge",
    "parse_policy",
    "policy_key",
]
