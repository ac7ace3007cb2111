"""The JSON of one policy, rule and cell of the effective view, in the shape the README documents.

:meth:`~sigil.enforcer.policy.effective.EffectivePolicy.to_dict` assembles these; they live apart so that the view
itself stays about what it computes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sigil.enforcer.policy.model import AuthorizationPolicy, ClusterAuthorizationPolicy

if TYPE_CHECKING:
    from sigil.enforcer.policy.effective import Cell, PolicyEntry, RuleEntry

__all__ = ["cell_dict", "policy_dict", "port_name", "rule_dict"]


def policy_dict(entry: PolicyEntry) -> dict[str, Any]:
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
        "scope": ("Mesh" if policy.mesh else "Namespace")
        if isinstance(policy, AuthorizationPolicy)
        else None,
        "target_ports": sorted(policy.target_ports)
        if isinstance(policy, AuthorizationPolicy) and policy.target_ports is not None
        else None,
        "source": None if entry.origin is None else entry.origin.to_dict(),
        "shadowed": entry.shadowed,
        "relabel_escapable": entry.relabel_escapable,
    }


def rule_dict(entry: RuleEntry) -> dict[str, Any]:
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
        "ports": None if rule.ports is None and not rule.port_ranges else sorted(rule.ports or ()),
        "port_ranges": [str(span) for span in rule.port_ranges],
        "except_ports": sorted(rule.except_ports),
        "except_port_ranges": [str(span) for span in rule.except_ranges],
        "networks": None if rule.network is None else str(rule.network),
        "sources": None if rule.sources is None else [str(source) for source in rule.sources],
        "not_sources": [str(source) for source in rule.not_sources],
        "dry_run": entry.match.dry_run,
        "shadowed": entry.shadowed,
    }


def cell_dict(cell: Cell) -> dict[str, Any]:
    data = cell.decision.verdict.to_dict()
    data["port"] = port_name(cell.port)
    shadow = cell.decision.shadow
    data["dry_run"] = None if shadow is None else shadow.to_dict()
    return data


def port_name(port: int | str | None) -> int | str:
    return "other" if port is None else port
