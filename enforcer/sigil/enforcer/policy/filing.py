"""Filing the rules of the policies that select one target into a :class:`~sigil.enforcer.policy.table.Table`.

Part 7's evaluation order is the filing order: the Admin tier by priority, the namespace tier's DENYs (by name,
for stable explanations) before its ALLOWs, then the Baseline tier. Each rule goes in under the peer keys its
sources name (:class:`~sigil.enforcer.policy.peer_keys.PeerKeyer`), with its ports, or with a condition when it
names port ranges or networks. :class:`~sigil.enforcer.policy.index.PolicyIndex` files once per target and
keeps the result as a :class:`TargetView`.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping

from sigil.enforcer.policy.condition import Condition, KeySets
from sigil.enforcer.policy.decision import Match, Tier
from sigil.enforcer.policy.identity_sources import AllOfSource, Source
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
from sigil.enforcer.policy.table import ANY_PEER, Table

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
            table.add_allow_policy(policy.ref, policy.target_ports)
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
    target_ports = policy.target_ports if isinstance(policy, AuthorizationPolicy) else None
    for number, rule in enumerate(policy.rules):
        match = Match(tier, policy.ref, number, rule.effect, policy.dry_run)
        simple = rule.sources is None or all(
            not isinstance(source, AllOfSource) for source in rule.sources
        )
        plain = not (rule.port_ranges or rule.except_ports or rule.except_ranges)
        if (
            simple
            and plain
            and rule.network is None
            and target_ports is None
            and not rule.not_sources
        ):
            table.add(match, _keys(rule.sources, namespace, keyer), rule.ports)
            continue

        # Everything else carries a condition. Each AllOf source is filed under its first member's keys
        # (a peer matching it holds one of them) and checks the other members in its condition.
        loose = [s for s in rule.sources or () if not isinstance(s, AllOfSource)]
        together = [s for s in rule.sources or () if isinstance(s, AllOfSource)]
        keys = _keys(None if rule.sources is None else loose, namespace, keyer)
        table.add(match, keys, None, _condition(rule, networks, target_ports, (), keyer, namespace))
        for source in together:
            key_sets = _key_sets(source, namespace, keyer)
            more = _condition(rule, networks, target_ports, key_sets[1:], keyer, namespace)
            table.file_more(key_sets[0], None, more)


def _keys(sources: Iterable[Source] | None, namespace: str, keyer: PeerKeyer) -> set[str]:
    if sources is None:
        return {ANY_PEER}
    return {key for source in sources for key in keyer.source_keys(source, namespace)}


def _key_sets(source: Source, namespace: str, keyer: PeerKeyer) -> KeySets:
    """The key sets a peer must all hold a key of to match ``source``."""
    members = source.members if isinstance(source, AllOfSource) else (source,)
    return tuple(frozenset(keyer.source_keys(member, namespace)) for member in members)


def _condition(
    rule: Rule,
    networks: Mapping[SourceNetwork, int],
    target_ports: frozenset[int] | None,
    all_of: KeySets,
    keyer: PeerKeyer,
    namespace: str,
) -> Condition:
    network = None if rule.network is None else networks[rule.network]
    ports = None if rule.ports is None and not rule.port_ranges else frozenset(rule.ports or ())
    return Condition(
        ports,
        rule.port_ranges,
        network,
        except_ports=rule.except_ports,
        except_ranges=rule.except_ranges,
        target_ports=target_ports,
        all_of=all_of,
        none_of=tuple(_key_sets(source, namespace, keyer) for source in rule.not_sources),
    )


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
