"""The effective policy of one workload: every rule that can apply, in order, and who may connect on which port.

GEP-3779's reviewers asked that a workload owner "be able to easily and deterministically figure out the
effective policy for their workload (port)"; no mesh answers that today. Sigil can answer it exactly, because
matching uses a finite set of keys: the ports some rule names (every other port behaves alike) and the peer
classes of :mod:`sigil.enforcer.policy.peer_classes` (every peer of a class behaves alike). The table is filled
by asking the evaluator itself (:meth:`~sigil.enforcer.policy.index.PolicyIndex.decide`, what ``check`` and
the proxy ask) once per class and port, so it cannot drift from what is enforced.

A rule is flagged *shadowed* when it decides no cell of the table (:mod:`sigil.enforcer.policy.shadowing`):
since the table covers every peer and port, it can never decide a connection.

The JSON form (:meth:`EffectivePolicy.to_dict`) is documented in the README and carries ``schema_version``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sigil.ca.spiffe_id import TrustDomain
from sigil.enforcer.policy.decision import Decision, Match, Target, Tier
from sigil.enforcer.policy.documents import PolicyKey, policy_key
from sigil.enforcer.policy.index import PolicyIndex
from sigil.enforcer.policy.model import (
    AuthorizationPolicy,
    ClusterAuthorizationPolicy,
    ClusterTier,
    Effect,
    Policy,
    Rule,
)
from sigil.enforcer.policy.origin import Origin
from sigil.enforcer.policy.peer_classes import PeerClass, peer_classes
from sigil.enforcer.policy.scope import Workload, scoped
from sigil.enforcer.policy.shadowing import deciding_rules

__all__ = [
    "SCHEMA_VERSION",
    "Cell",
    "EffectivePolicy",
    "PolicyEntry",
    "Row",
    "RuleEntry",
    "effective",
]

#: The version of :meth:`EffectivePolicy.to_dict`'s shape; raised only when a key changes meaning or goes away.
SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class PolicyEntry:
    """A policy that selects the target, where it came from, and whether any of its rules can decide."""

    policy: Policy
    origin: Origin | None
    shadowed: bool


@dataclass(frozen=True, slots=True)
class RuleEntry:
    """One rule, at its place in evaluation order (``order``, from 0)."""

    order: int
    match: Match
    rule: Rule
    policy: Policy
    shadowed: bool


@dataclass(frozen=True, slots=True)
class Cell:
    """The decision for a class of peer on ``port`` (None: every port no rule names, decided on ``asked``)."""

    port: int | None
    asked: int
    decision: Decision


@dataclass(frozen=True, slots=True)
class Row:
    """A class of peer and its decision on each port of the table."""

    peer: PeerClass
    cells: tuple[Cell, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class EffectivePolicy:
    """The effective policy of ``target``: its policies and rules in evaluation order, and the access table."""

    target: Target
    namespace_labels: Mapping[str, str]
    trust_domain: TrustDomain
    default_allow: bool
    port: int | None
    revision: int | None
    policies: tuple[PolicyEntry, ...]
    rules: tuple[RuleEntry, ...]
    rows: tuple[Row, ...]

    def cell(self, peer: PeerClass, port: int) -> Cell:
        """The cell that decides ``peer``'s class on ``port`` (its own column, or every other port's).

        Raises :class:`LookupError` for a class or port the table does not cover (a view limited to one port).
        """
        for row in self.rows:
            if row.peer == peer:
                by_port = {cell.port: cell for cell in row.cells}
                found = by_port.get(port, by_port.get(None))
                if found is not None:
                    return found
        raise LookupError(f"the table has no cell for {peer.kind.value} {peer.name} on port {port}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, in the shape the README documents (``schema_version`` :data:`SCHEMA_VERSION`)."""
        return {
            "schema_version": SCHEMA_VERSION,
            "revision": self.revision,
            "target": {
                "namespace": self.target.namespace,
                "labels": dict(self.target.labels),
                "namespace_labels": dict(sorted(self.namespace_labels.items())),
                "trust_domain": self.trust_domain.name,
                "default": "allow" if self.default_allow else "deny",
                "port": self.port,
            },
            "policies": [_policy_dict(entry) for entry in self.policies],
            "rules": [_rule_dict(entry) for entry in self.rules],
            "ports": [_port_name(cell.port) for cell in self.rows[0].cells] if self.rows else [],
            "access": [
                {
                    "peer": {
                        "class": row.peer.kind.value,
                        "name": row.peer.name,
                        "example": None
                        if row.peer.representative is None
                        else str(row.peer.representative),
                    },
                    "verdicts": [_cell_dict(cell) for cell in row.cells],
                }
                for row in self.rows
            ],
        }


def effective(
    policies: Iterable[Policy],
    target: Target,
    *,
    trust_domain: TrustDomain,
    namespace_labels: Mapping[str, str] | None = None,
    default_allow: bool = True,
    port: int | None = None,
    origins: Mapping[PolicyKey, Origin] | None = None,
    revision: int | None = None,
) -> EffectivePolicy:
    """The effective policy of ``target`` under ``policies``; ``port`` limits the table to that one port."""
    index = PolicyIndex(
        policies,
        trust_domain=trust_domain,
        default_allow=default_allow,
        namespaces={target.namespace: dict(namespace_labels or {})},
    )
    workload = Workload(target.namespace, target.labels, namespace_labels or {})
    # Scoping reads the selectors exactly as the index does; it also keeps policies without rules, which the
    # evaluation order cannot show but which still decide (an ALLOW policy with no rule denies everything).
    selected = sorted(scoped(index.policies, workload), key=_evaluation_rank)
    by_place = {_place_of(policy): policy for policy in selected}
    order = index.evaluation_order(target)
    owners = [by_place[(m.tier is Tier.NAMESPACE, m.policy)] for m in order]
    rules = [policy.rules[m.rule] for m, policy in zip(order, owners, strict=True)]
    classes = peer_classes(index, rules, target.namespace)
    named_set = {p for rule in rules for p in rule.ports or ()}
    named = sorted(named_set)
    columns: list[tuple[int | None, int]] = [(p, p) for p in named]
    # "Every other port" is asked on the lowest port no rule names (none left when rules name all 65535).
    other = next((p for p in range(1, 65536) if p not in named_set), None)
    if other is not None:
        columns.append((None, other))
    if port is not None:
        columns = [(port, port)]
    rows = tuple(
        Row(peer, tuple(_cell(index, peer, target, name, asked) for name, asked in columns))
        for peer in classes
    )
    live = deciding_rules(order, selected, (cell.decision for row in rows for cell in row.cells))
    rule_entries = tuple(
        RuleEntry(n, m, rule, policy, (m.tier, m.policy, m.rule) not in live)
        for n, (m, rule, policy) in enumerate(zip(order, rules, owners, strict=True))
    )
    policy_entries = tuple(
        PolicyEntry(
            policy,
            (origins or {}).get(policy_key(policy)),
            shadowed=(Tier.NAMESPACE, policy.ref, -1) not in live
            and all(e.shadowed for e in rule_entries if e.policy is policy),
        )
        for policy in selected
    )
    return EffectivePolicy(
        target=target,
        namespace_labels=index.namespace_labels(target.namespace),
        trust_domain=trust_domain,
        default_allow=default_allow,
        port=port,
        revision=revision,
        policies=policy_entries,
        rules=rule_entries,
        rows=rows,
    )


def _place_of(policy: Policy) -> tuple[bool, str]:
    return (isinstance(policy, AuthorizationPolicy), policy.ref)


def _cell(
    index: PolicyIndex, peer: PeerClass, target: Target, name: int | None, asked: int
) -> Cell:
    return Cell(name, asked, index.decide(peer.representative, target, asked, explain=True))


def _evaluation_rank(policy: Policy) -> tuple[int, int, str]:
    """Part 7's order of policies: admin by priority and name, namespace DENY then ALLOW, then baseline."""
    if isinstance(policy, AuthorizationPolicy):
        return (1 if policy.action is Effect.DENY else 2, 0, policy.ref)
    return (0 if policy.tier is ClusterTier.ADMIN else 3, policy.priority, policy.name)


def _policy_dict(entry: PolicyEntry) -> dict[str, Any]:
    policy = entry.policy
    return {
        "kind": policy.kind,
        "namespace": policy.namespace if isinstance(policy, AuthorizationPolicy) else None,
        "name": policy.name,
        "tier": "namespace"
        if isinstance(policy, AuthorizationPolicy)
        else policy.tier.value.lower(),
        "priority": policy.priority if isinstance(policy, ClusterAuthorizationPolicy) else None,
        "action": policy.action.value if isinstance(policy, AuthorizationPolicy) else None,
        "dry_run": policy.dry_run,
        "source": None if entry.origin is None else entry.origin.to_dict(),
        "shadowed": entry.shadowed,
    }


def _rule_dict(entry: RuleEntry) -> dict[str, Any]:
    rule = entry.rule
    return {
        "order": entry.order,
        "tier": entry.match.tier.value,
        "priority": entry.policy.priority
        if isinstance(entry.policy, ClusterAuthorizationPolicy)
        else None,
        "policy": entry.match.policy,
        "rule": entry.match.rule,
        "action": entry.match.effect.value,
        "ports": None if rule.ports is None else sorted(rule.ports),
        "sources": None if rule.sources is None else [str(source) for source in rule.sources],
        "dry_run": entry.match.dry_run,
        "shadowed": entry.shadowed,
    }


def _cell_dict(cell: Cell) -> dict[str, Any]:
    data = cell.decision.verdict.to_dict()
    data["port"] = _port_name(cell.port)
    shadow = cell.decision.shadow
    data["dry_run"] = None if shadow is None else shadow.to_dict()
    return data


def _port_name(port: int | None) -> int | str:
    return "other" if port is None else port
