"""What a filed rule asks beyond the peer keys it is filed under: ports, networks and the mesh extensions.

A rule naming only sources and a port list is filed as a plain port set; anything more (port ranges and source
networks, authz.md 7.1; excepted ports, a target ref's ports, AllOf sources and ``notSources``, the Sigil
extensions for other meshes' policy) becomes a :class:`Condition` that
:class:`~sigil.enforcer.policy.table.Table` checks when it computes a peer's port map. That is not the hot path
(a steady-state decision is a dict lookup), but port maps are built on every new caller, so the common
condition (ports, ranges, network) skips the extensions' checks.
"""

from __future__ import annotations

from sigil.enforcer.policy.network import PortRange

__all__ = ["Condition", "KeySets"]


#: Peer keys of a conjunction of sources: the peer must hold a key of every set (a simple source is one set).
KeySets = tuple[frozenset[str], ...]


class Condition:
    """What a rule asks beyond a port list: port ranges and the peer's network (authz.md 7.1), and the Sigil
    extensions excepted ports, the target ref's ports, AllOf sources and ``notSources``.

    ``ports`` None means every port; ``network`` is the index's number of the rule's
    :class:`~sigil.enforcer.policy.network.SourceNetwork`, which must be among the peer address's numbers.
    ``all_of``: the peer must hold a key of each set; ``none_of``: it must fully match none of these
    conjunctions. ``target_ports``: the policy's ``targetRefs[].ports`` (None = every port).
    """

    __slots__ = (
        "_extra",
        "all_of",
        "except_ports",
        "except_ranges",
        "named",
        "named_spans",
        "network",
        "none_of",
        "ports",
        "ranges",
        "target_ports",
    )

    def __init__(
        self,
        ports: frozenset[int] | None,
        ranges: tuple[PortRange, ...],
        network: int | None,
        *,
        except_ports: frozenset[int] = frozenset(),
        except_ranges: tuple[PortRange, ...] = (),
        target_ports: frozenset[int] | None = None,
        all_of: KeySets = (),
        none_of: tuple[KeySets, ...] = (),
    ) -> None:
        self.ports = ports
        self.ranges = tuple((span.start, span.end) for span in ranges)
        self.network = network
        self.except_ports = except_ports
        self.except_ranges = tuple((span.start, span.end) for span in except_ranges)
        self.target_ports = target_ports
        self.all_of = all_of
        self.none_of = none_of
        # Most conditions name only ports, ranges and a network: they skip the extensions' checks.
        self._extra = bool(except_ports or except_ranges or all_of or none_of) or (
            target_ports is not None
        )
        self.named = frozenset((*(ports or ()), *except_ports, *(target_ports or ())))
        self.named_spans = frozenset((*self.ranges, *self.except_ranges))

    def holds(
        self,
        port: int,
        networks: frozenset[int],
        keys: tuple[str, ...] = (),
        prefixes: tuple[str, ...] = (),
    ) -> bool:
        """True when ``port``, the peer's ``networks`` and its ``keys`` and ``prefixes`` satisfy the rule."""
        if self.network is not None and self.network not in networks:
            return False
        if self._extra and not self._extensions_hold(port, keys, prefixes):
            return False
        if self.ports is None:
            return True
        return port in self.ports or any(start <= port <= end for start, end in self.ranges)

    def _extensions_hold(self, port: int, keys: tuple[str, ...], prefixes: tuple[str, ...]) -> bool:
        if self.target_ports is not None and port not in self.target_ports:
            return False
        if port in self.except_ports or any(a <= port <= b for a, b in self.except_ranges):
            return False
        if self.all_of or self.none_of:
            held = {*keys, *prefixes}
            if not all(held & members for members in self.all_of):
                return False
            if any(all(held & members for members in negated) for negated in self.none_of):
                return False
        return True
