"""Filing the rules of the policies that select one target into a :class:`~sigil.enforcer.policy.table.Table`.

Part 7's evaluation order is the filing order: the Admin tier by priority, the namespace tier's DENYs (by name,
for stable explanations) before its ALLOWs, then the Baseline tier. Each rule goes in under the peer keys its
sources name (:class:`~sigil.enforcer.policy.peer_keys.PeerKeyer`), with its ports, or with a condition when it
names port ranges or networks. :class:`~sigil.enforcer.policy.index.PolicyIndex` files once per target and
keeps the result as a :class:`TargetView`.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

from sigil.enforcer.policy.decision import Match, Tier
from sigil.enforcer.policy.model import (
    AuthorizationPolicy,
    ClusterAuthorizationPolicy,
    ClusterTier,
    Effect,
    Policy,
    Rule,
)
from sigil.enforcer.policy.network import SourceNetwork
from sigil.enforcer.policy.peer_keys import PeerKeyer
from sigil.enforcer.policy.port_map import PortMap
from sigil.enforcer.policy.table import ANY_PEER, Condition, Table

__all__ = ["TargetView", "build_table"]


def build_table(
    table: Table,
    namespace: str,
    cluster: list[ClusterAuthorizationPolicy],
    owned: list[AuthorizationPolicy],
    *,
    keyer: PeerKeyer,
    networks: Mapping[SourceNetwork, int],
) -> Table:
    """File the rules of ``cluster`` and ``owned`` (the policies selecting one target in ``namespace``) into
    ``table`` in part 7's evaluation order, and freeze it."""

    def file(tier: Tier, policy: Policy) -> None:
        _file(table, tier, policy, namespace, keyer, networks)

    for admin in cluster:
        if admin.tier is ClusterTier.ADMIN:
            file(Tier.ADMIN, admin)
    table.close_admin()
    # Within the namespace tier every DENY outranks every ALLOW; the order among DENYs only picks which
    # one the decision names, so it follows the policy's name for stable explanations.
    owned = sorted(owned, key=lambda p: p.ref)
    for policy in owned:
        if policy.action is Effect.DENY:
            file(Tier.NAMESPACE, policy)
    table.close_namespace_deny()
    for policy in owned:
        if policy.action is Effect.ALLOW:
            table.allow_policies.append(policy.ref)
            file(Tier.NAMESPACE, policy)
    table.close_namespace_allow()
    for baseline in cluster:
        if baseline.tier is ClusterTier.BASELINE:
            file(Tier.BASELINE, baseline)
    table.freeze()
    return table


def _file(
    table: Table,
    tier: Tier,
    policy: Policy,
    namespace: str,
    keyer: PeerKeyer,
    networks: Mapping[SourceNetwork, int],
) -> None:
    for number, rule in enumerate(policy.rules):
        match = Match(tier, policy.ref, number, rule.effect, policy.dry_run)
        keys: set[str] = set()
        if rule.sources is None:
            keys.add(ANY_PEER)
        else:
            for source in rule.sources:
                keys.update(keyer.source_keys(source, namespace))
        if rule.port_ranges or rule.network is not None:
            table.add(match, keys, None, _condition(rule, networks))
        else:
            table.add(match, keys, rule.ports)


def _condition(rule: Rule, networks: Mapping[SourceNetwork, int]) -> Condition:
    network = None if rule.network is None else networks[rule.network]
    ports = None if rule.every_port else frozenset(rule.ports or ())
    return Condition(ports, rule.port_ranges, network)


class TargetView:
    """One target's compiled policies: the enforcing table, the shadow one when dry-run policies select it,
    the source networks their rules name, and each peer's :data:`PortMap`, filled on its first connection."""

    __slots__ = ("addresses", "enforcing", "networks", "peers", "shadow")

    def __init__(
        self, enforcing: Table, shadow: Table | None, networks: dict[SourceNetwork, int]
    ) -> None:
        self.enforcing = enforcing
        self.shadow = shadow
        self.networks = tuple((number, network) for network, number in networks.items())
        self.addresses: dict[Hashable, frozenset[int]] = {}
        self.peers: dict[tuple[Hashable, ...], PortMap] = {}
