"""The effective policy of one workload: every rule that can apply, in order, and who may connect on which port.

GEP-3779's reviewers asked that a workload owner "be able to easily and deterministically figure out the
effective policy for their workload (port)"; no mesh answers that today. Sigil can answer it exactly, because
matching uses a finite set of keys: the peer classes of :mod:`sigil.enforcer.policy.peer_classes` (every peer of
a class behaves alike), and the port columns and address groups of :mod:`sigil.enforcer.policy.effective_axes`
(every port of a column, every address of a group, behaves alike). A row is a class of peer at a group of
addresses; the table is filled by asking the evaluator itself (:meth:`~sigil.enforcer.policy.index.PolicyIndex.decide`,
what ``check`` and the proxy ask) once per row and column, so it cannot drift from what is enforced.

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
from sigil.enforcer.policy.defaults import DefaultPolicy
from sigil.enforcer.policy.documents import PolicyKey, policy_key
from sigil.enforcer.policy.effective_axes import (
    AddressGroup,
    Column,
    address_group_of,
    address_groups,
    column_of,
    port_columns,
)
from sigil.enforcer.policy.effective_json import cell_dict, policy_dict, port_name, rule_dict
from sigil.enforcer.policy.index import PolicyIndex
from sigil.enforcer.policy.model import (
    AuthorizationPolicy,
    ClusterAuthorizationPolicy,
    ClusterTier,
    Effect,
    Policy,
    Rule,
)
from sigil.enforcer.policy.network import IpAddress
from sigil.enforcer.policy.origin import Origin
from sigil.enforcer.policy.peer_classes import PeerClass, peer_classes
from sigil.enforcer.policy.peer_ids import WorkloadIdPattern
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
#: 2: ``default`` takes every ``--default`` value; ``ports`` holds ``"A-B"`` stretches; each ``access`` row has
#: an ``address`` group; each policy says ``relabel_escapable``.
SCHEMA_VERSION = 2


@dataclass(frozen=True, slots=True)
class PolicyEntry:
    """A policy that selects the target, where it came from, and whether any of its rules can decide.

    ``relabel_escapable``: an Admin policy that picks pods by labels their namespace's owner can change.
    """

    policy: Policy
    origin: Origin | None
    shadowed: bool

    @property
    def relabel_escapable(self) -> bool:
        """True when the pod's namespace owner can step out of this policy by relabelling the pod."""
        return isinstance(self.policy, ClusterAuthorizationPolicy) and self.policy.relabel_escapable


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
    """The decision for a row on a column of ports (``port``: the port, ``"A-B"``, or None for every port no
    rule names), decided on port ``asked``."""

    port: int | str | None
    asked: int
    decision: Decision


@dataclass(frozen=True, slots=True)
class Row:
    """A class of peer at a group of addresses, and its decision on each column of the table."""

    peer: PeerClass
    cells: tuple[Cell, ...]
    address: AddressGroup


@dataclass(frozen=True, slots=True, kw_only=True)
class EffectivePolicy:
    """The effective policy of ``target``: its policies and rules in evaluation order, and the access table."""

    target: Target
    namespace_labels: Mapping[str, str]
    trust_domain: TrustDomain
    default: DefaultPolicy
    port: int | None
    revision: int | None
    policies: tuple[PolicyEntry, ...]
    rules: tuple[RuleEntry, ...]
    rows: tuple[Row, ...]
    columns: tuple[Column, ...]
    addresses: tuple[AddressGroup, ...]

    def cell(self, peer: PeerClass, port: int, address: IpAddress | str | None = None) -> Cell:
        """The cell that decides ``peer``'s class at ``address`` (None: unknown) on ``port``.

        Raises :class:`LookupError` for a class or port the table does not cover (a view limited to one port).
        """
        group = address_group_of(self.addresses, address)
        number = self.columns.index(column_of(self.columns, port))
        for row in self.rows:
            if row.peer == peer and row.address == group:
                return row.cells[number]
        raise LookupError(f"the table has no row for {peer.kind.value} {peer.name} at {group.name}")

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
                "default": self.default.value,
                "port": self.port,
            },
            "policies": [policy_dict(entry) for entry in self.policies],
            "rules": [rule_dict(entry) for entry in self.rules],
            "ports": [port_name(column.name) for column in self.columns],
            "access": [
                {
                    "peer": {
                        "class": row.peer.kind.value,
                        "name": row.peer.name,
                        "example": None
                        if row.peer.representative is None
                        else str(row.peer.representative),
                    },
                    "address": {
                        "group": row.address.name,
                        "example": None
                        if row.address.example is None
                        else str(row.address.example),
                    },
                    "verdicts": [cell_dict(cell) for cell in row.cells],
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
    default: DefaultPolicy = DefaultPolicy.ALLOW,
    port: int | None = None,
    origins: Mapping[PolicyKey, Origin] | None = None,
    revision: int | None = None,
    namespaces: Mapping[str, Mapping[str, str]] | None = None,
    workload_ids: WorkloadIdPattern | None = None,
) -> EffectivePolicy:
    """The effective policy of ``target`` under ``policies``; ``port`` limits the table to that one port.

    ``namespaces`` are the labels of other namespaces the enforcer knows (peers' namespaces that ``Namespaces``
    selectors read); ``namespace_labels`` are the target's own; ``workload_ids`` is the enforcer's workload ID
    template (how local IDs name namespaces)."""
    known = {name: dict(labels) for name, labels in (namespaces or {}).items()}
    known[target.namespace] = dict(namespace_labels or {})
    index = PolicyIndex(
        policies,
        trust_domain=trust_domain,
        default=default,
        namespaces=known,
        workload_ids=workload_ids,
    )
    workload = Workload(target.namespace, target.labels, namespace_labels or {})
    # Scoping reads the selectors exactly as the index does; it also keeps policies without rules, which the
    # evaluation order cannot show but which still decide (an ALLOW policy with no rule denies everything).
    selected = sorted(scoped(index.policies, workload), key=_evaluation_rank)
    by_place = {_place_of(policy): policy for policy in selected}
    order = index.evaluation_order(target)
    owners = [by_place[(m.tier is Tier.NAMESPACE, m.policy)] for m in order]
    rules = [policy.rules[m.rule] for m, policy in zip(order, owners, strict=True)]
    classes = peer_classes(index, rules, target.namespace, known=sorted(known))
    target_ports = [
        number
        for policy in selected
        if isinstance(policy, AuthorizationPolicy)
        for number in policy.target_ports or ()
    ]
    columns = port_columns(rules, port, target_ports=target_ports)
    groups = address_groups(rule.network for rule in rules if rule.network is not None)
    rows = tuple(
        Row(
            peer,
            tuple(_cell(index, peer, group, target, column) for column in columns),
            group,
        )
        for peer in classes
        for group in groups
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
        default=default,
        port=port,
        revision=revision,
        policies=policy_entries,
        rules=rule_entries,
        rows=rows,
        columns=columns,
        addresses=groups,
    )


def _place_of(policy: Policy) -> tuple[bool, str]:
    return (isinstance(policy, AuthorizationPolicy), policy.ref)


def _cell(
    index: PolicyIndex, peer: PeerClass, group: AddressGroup, target: Target, column: Column
) -> Cell:
    name = None if column.name == "other" else column.name
    decision = index.decide(
        peer.representative, target, column.asked, address=group.example, explain=True
    )
    return Cell(name, column.asked, decision)


def _evaluation_rank(policy: Policy) -> tuple[int, int, str]:
    """Part 7's order of policies: admin by priority and name, namespace DENY then ALLOW, then baseline."""
    if isinstance(policy, AuthorizationPolicy):
        return (1 if policy.action is Effect.DENY else 2, 0, policy.ref)
    return (0 if policy.tier is ClusterTier.ADMIN else 3, policy.priority, policy.name)
