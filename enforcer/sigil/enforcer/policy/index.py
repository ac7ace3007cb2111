"""Policies compiled so that a decision costs a few dict lookups, not a scan of every policy.

istiod scanned every policy for every workload and paid about 1.38 ms per operation at 10,000 policies
(istio#61254). Here the work is split by how often its inputs change:

* per index (each policy revision): policies are grouped by namespace (Mesh-scoped ones apart), cluster
  policies sorted by priority and name (:mod:`.selection`);
* per namespace, on first use: the cluster policies whose ``namespaceSelector`` matches its labels;
* per target (namespace + pod labels), on first use: the policies that select the pod, compiled into a
  :class:`~sigil.enforcer.policy.table.Table` mapping each *peer key* to the rules that name it, every rule
  numbered in evaluation order (label selectors are evaluated here, against this namespace's candidates only);
* per peer SPIFFE ID, on first use: its keys (the exact ID, its namespace and ServiceAccount when it is a local
  ID that fits the workload ID template, the namespace selectors its namespace matches, "any authenticated
  peer" of its trust domain, "any peer", and each ``/*`` prefix above it);
* per peer address, on first use, when the target's rules name networks (``sourceCIDRs``): the numbers of
  the networks it is in;
* per (target, peer, networks), on the peer's first connection: the decision for each port a matching rule
  names, one for each stretch of ports between the ends of named port ranges, and one for every other port.

A steady-state decision is then three dict lookups: the target's view, the peer's port map, the port. The
table's :meth:`~sigil.enforcer.policy.table.Table.outcome` computes each entry of the port map; an enforcer
serves one pod and a bounded set of callers, so the maps stay small (and every cache is bounded anyway).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Hashable, Iterable, Mapping

from sigil.ca.spiffe_id import SpiffeId, TrustDomain
from sigil.enforcer.policy.decision import (
    NAMESPACE_NAME_LABEL,
    Decision,
    Match,
    Target,
)
from sigil.enforcer.policy.defaults import DefaultPolicy
from sigil.enforcer.policy.filing import TargetView, build_table
from sigil.enforcer.policy.model import (
    AuthorizationPolicy,
    ClusterAuthorizationPolicy,
    Policy,
    Source,
)
from sigil.enforcer.policy.network import AddressBook, IpAddress, SourceNetwork
from sigil.enforcer.policy.peer_ids import WorkloadIdPattern
from sigil.enforcer.policy.peer_keys import NO_SVID, PeerKeyer, PeerKeys
from sigil.enforcer.policy.port_map import PortMap, build_port_map
from sigil.enforcer.policy.selection import PolicySelection
from sigil.enforcer.policy.table import DEFAULT, DEFAULT_REFUSED, Table

__all__ = ["PolicyIndex"]

_NO_SVID_KEY = ("", "")  # no SPIFFE ID has an empty trust domain
_NO_NETWORKS: frozenset[int] = frozenset()

Address = IpAddress | str | None


class PolicyIndex:
    """An immutable, compiled policy set that answers :meth:`decide` (authz.md part 7).

    ``namespaces`` maps a namespace to its labels; every namespace also carries
    ``kubernetes.io/metadata.name``, as Kubernetes sets it. ``default_allow`` is step 4's configured default.
    The per-namespace, per-target and per-peer caches are bounded by ``cache_size`` and are only ever
    filled, never invalidated: a new policy revision builds a new index.
    """

    def __init__(
        self,
        policies: Iterable[Policy],
        *,
        trust_domain: TrustDomain,
        default_allow: bool = True,
        default: DefaultPolicy | None = None,
        namespaces: Mapping[str, Mapping[str, str]] | None = None,
        workload_ids: WorkloadIdPattern | None = None,
        cache_size: int = 100_000,
    ) -> None:
        self.policies = tuple(policies)
        self.trust_domain = trust_domain
        self.default = DefaultPolicy.of(allow=default_allow) if default is None else default
        self.default_allow = self.default is not DefaultPolicy.DENY
        self.workload_ids = workload_ids or WorkloadIdPattern()
        self._namespaces = {ns: dict(labels) for ns, labels in (namespaces or {}).items()}
        self._cache_size = cache_size
        self._selection = PolicySelection(
            self.policies, namespace_labels=self.namespace_labels, cache_size=cache_size
        )
        self._views: dict[str, TargetView] = {}
        # Peers are keyed by (trust domain, path): hashing two strings with cached hashes is several times
        # cheaper than hashing the SpiffeId dataclass, and this lookup runs on every decision.
        self._peers: dict[tuple[str, str], PeerKeys] = {}
        self._keyer = PeerKeyer(
            self.policies,
            trust_domain=trust_domain,
            workload_ids=self.workload_ids,
            known_namespaces=self._namespaces,
            namespace_labels=self.namespace_labels,
        )
        # Every source network, numbered once; peer addresses, parsed once.
        self._networks: dict[SourceNetwork, int] = {}
        self._addresses = AddressBook(cache_size)
        for policy in self.policies:
            for rule in policy.rules:
                if rule.network is not None:
                    self._networks.setdefault(rule.network, len(self._networks))

    def namespace_labels(self, namespace: str) -> dict[str, str]:
        """The labels policies see on ``namespace``, ``kubernetes.io/metadata.name`` included."""
        labels = dict(self._namespaces.get(namespace, {}))
        labels[NAMESPACE_NAME_LABEL] = namespace
        return labels

    def decide(
        self,
        peer: SpiffeId | None,
        target: Target,
        port: int,
        *,
        address: Address = None,
        explain: bool = False,
    ) -> Decision:
        """Decide one connection from ``peer`` (None: no valid SVID) at ``address`` (None: unknown) to
        ``target`` on ``port``.

        With ``explain`` the decision also lists every enforcing rule that matched. Otherwise the answer
        comes from the target's per-peer port map: three dict lookups once the pair has been seen (four when
        the target's rules name source networks).
        """
        view = self._views.get(target.key)
        if view is None:
            view = self._compile(target)
        networks = self._networks_of(view, address) if view.networks else _NO_NETWORKS
        if explain:
            return self._decide(view, peer, self._keys(peer), port, networks, explain=True)
        peer_key: tuple[Hashable, ...] = (
            _NO_SVID_KEY if peer is None else (peer.trust_domain.name, peer.path)
        )
        if view.networks:
            peer_key = (*peer_key, networks)
        found = view.peers.get(peer_key)
        by_port, other, bounds, stretches = (
            self._port_map(view, peer, peer_key, networks) if found is None else found
        )
        decision = by_port.get(port)
        if decision is not None:
            return decision
        # Inlined look_up: this is the hot path.
        return stretches[bisect_right(bounds, port)] if bounds else other

    def _networks_of(self, view: TargetView, address: Address) -> frozenset[int]:
        found = view.addresses.get(address)
        if found is None:
            parsed = self._addresses.parse(address)
            found = frozenset(number for number, net in view.networks if net.contains(parsed))
            if len(view.addresses) >= self._cache_size:
                view.addresses.clear()
            view.addresses[address] = found
        return found

    def _decide(
        self,
        view: TargetView,
        peer: SpiffeId | None,
        keys: PeerKeys,
        port: int,
        networks: frozenset[int],
        *,
        explain: bool,
    ) -> Decision:
        exact, prefixes = keys
        table, shadow = view.enforcing, view.shadow
        outcome = self._defaulted(table.outcome(exact, prefixes, port, networks), peer)
        matches = table.matches(exact, prefixes, port, networks) if explain else ()
        if shadow is None:
            return Decision(table.verdict(outcome), matches) if explain else table.decision(outcome)
        dry_run = tuple(
            match for match in shadow.matches(exact, prefixes, port, networks) if match.dry_run
        )
        shadow_outcome = self._defaulted(shadow.outcome(exact, prefixes, port, networks), peer)
        return Decision(table.verdict(outcome), matches, dry_run, shadow.verdict(shadow_outcome))

    def _defaulted(self, outcome: int, peer: SpiffeId | None) -> int:
        if outcome == DEFAULT and not self.default.admits(peer, self.trust_domain):
            return DEFAULT_REFUSED
        return outcome

    def _port_map(
        self,
        view: TargetView,
        peer: SpiffeId | None,
        peer_key: tuple[Hashable, ...],
        networks: frozenset[int],
    ) -> PortMap:
        """Decide ``peer`` against ``view`` once per port its matching rules name, once per stretch between
        the ends of the port ranges they name, and once for the rest."""
        keys = self._keys(peer)
        ports = view.enforcing.ports_named(*keys)
        spans = view.enforcing.ranges_named(*keys)
        if view.shadow is not None:
            ports |= view.shadow.ports_named(*keys)
            spans |= view.shadow.ranges_named(*keys)

        def decide(port: int) -> Decision:
            return self._decide(view, peer, keys, port, networks, explain=False)

        found = build_port_map(decide, ports, spans)
        if len(view.peers) >= self._cache_size:
            view.peers.clear()
        view.peers[peer_key] = found
        return found

    def _keys(self, peer: SpiffeId | None) -> PeerKeys:
        if peer is None:
            return NO_SVID
        found = self._peers.get((peer.trust_domain.name, peer.path))
        return self._remember_peer(peer) if found is None else found

    def peer_keys(self, peer: SpiffeId) -> PeerKeys:
        """The keys under which a rule naming ``peer`` is filed: exact ones, then ``/*`` prefixes."""
        return self._keyer.peer_keys(peer)

    def source_keys(self, source: Source, namespace: str) -> tuple[str, ...]:
        """The keys under which a rule naming ``source`` is filed for a target in ``namespace`` (what
        :meth:`peer_keys` must hold to match)."""
        return self._keyer.source_keys(source, namespace)

    def evaluation_order(self, target: Target) -> tuple[Match, ...]:
        """Every rule of every policy selecting ``target``, dry-run ones included, in the order part 7 reads them."""
        cluster, owned = self._selection.select(target)
        return tuple(self._table(target.namespace, cluster, owned).rules)

    def _remember_peer(self, peer: SpiffeId) -> PeerKeys:
        if len(self._peers) >= self._cache_size:
            self._peers.clear()
        keys = self._peers[peer.trust_domain.name, peer.path] = self.peer_keys(peer)
        return keys

    def _compile(self, target: Target) -> TargetView:
        cluster, owned = self._selection.select(target)
        namespace = target.namespace
        enforcing = self._table(
            namespace, [p for p in cluster if not p.dry_run], [p for p in owned if not p.dry_run]
        )
        has_dry_run = any(p.dry_run for p in cluster) or any(p.dry_run for p in owned)
        networks = {
            rule.network: self._networks[rule.network]
            for rule in [
                *(r for p in cluster for r in p.rules),
                *(r for p in owned for r in p.rules),
            ]
            if rule.network is not None
        }
        shadow = self._table(namespace, cluster, owned) if has_dry_run else None
        view = TargetView(enforcing, shadow, networks)
        if len(self._views) >= self._cache_size:
            self._views.clear()
        self._views[target.key] = view
        return view

    def _table(
        self,
        namespace: str,
        cluster: list[ClusterAuthorizationPolicy],
        owned: list[AuthorizationPolicy],
    ) -> Table:
        return build_table(
            Table(default_allow=self.default_allow, default=self.default),
            namespace,
            cluster,
            owned,
            keyer=self._keyer,
            networks=self._networks,
        )
