"""The port columns and address groups of the effective access table (authz.md 7.1), each provably complete.

A rule's port criterion (``ports``, ``portRanges``, or every port, less ``exceptPorts`` and
``exceptPortRanges``), a target ref's ``ports``, and a rule's source network (``sourceCIDRs``,
``exceptSourceCIDRs``) only ever ask whether a port or an address lies inside finitely many intervals, so the
ends of those intervals cut the port range and each address family into stretches that every rule treats alike:

* Ports: each port a rule names singly is a column; each stretch between the ends of named ranges that some range
  covers is a column (``"400-442"``); every port that nothing names is the column ``"other"``, asked on its
  lowest port. The columns together hold every port from 1 to 65535.
* Addresses: the ends of every block the rules name cut IPv4 and IPv6 into stretches; an address of a stretch
  stands for it, and stretches inside the same networks (the same rules' network criteria hold) are one group.
  IPv4-mapped IPv6 addresses are never asked: an enforcer reads them as their IPv4 address. "No known address"
  is a group of its own (it matches no rule that names a network). When no rule names a network, one group,
  "any address", stands for every address and for none.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise

from sigil.enforcer.errors import RequestError
from sigil.enforcer.policy.model import Rule
from sigil.enforcer.policy.network import IpAddress, SourceNetwork, parse_peer_address

__all__ = [
    "ANY_ADDRESS",
    "NO_ADDRESS",
    "AddressGroup",
    "Column",
    "address_group_of",
    "address_groups",
    "column_of",
    "port_columns",
]

_MAPPED = ipaddress.ip_network("::ffff:0:0/96")


@dataclass(frozen=True, slots=True)
class Column:
    """Ports the table decides alike: ``name`` is the port, ``"A-B"``, or ``"other"``; ``asked`` is decided."""

    name: int | str
    asked: int
    spans: tuple[tuple[int, int], ...]

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and any(low <= port <= high for low, high in self.spans)


@dataclass(frozen=True, slots=True)
class AddressGroup:
    """Peer addresses the table decides alike: those inside exactly ``networks`` of the rules' networks.

    ``example`` is the address asked (None: no known address, or, in the single "any address" group, any).
    """

    name: str
    example: IpAddress | None
    networks: frozenset[SourceNetwork]


ANY_ADDRESS = AddressGroup("any address", None, frozenset())
NO_ADDRESS = AddressGroup("no known address", None, frozenset())


def port_columns(
    rules: Iterable[Rule], port: int | None = None, *, target_ports: Iterable[int] = ()
) -> tuple[Column, ...]:
    """The columns for ``rules`` and the ports target refs name (``port``: that one port alone)."""
    if port is not None:
        return (Column(port, port, ((port, port),)),)
    singles: set[int] = set(target_ports)
    ranges: set[tuple[int, int]] = set()
    for rule in rules:
        singles |= rule.ports or set()
        singles |= rule.except_ports
        ranges |= {(span.start, span.end) for span in (*rule.port_ranges, *rule.except_ranges)}
    cuts = {1, 65536} | {p for s in singles for p in (s, s + 1)}
    cuts |= {edge for start, end in ranges for edge in (start, end + 1)}
    bounds = sorted(cuts)
    columns: list[Column] = []
    other: list[tuple[int, int]] = []
    for low, stop in pairwise(bounds):
        if low in singles:
            columns.append(Column(low, low, ((low, low),)))
        elif any(start <= low <= end for start, end in ranges):
            columns.append(Column(f"{low}-{stop - 1}", low, ((low, stop - 1),)))
        else:
            other.append((low, stop - 1))
    if other:
        columns.append(Column("other", other[0][0], tuple(other)))
    return tuple(columns)


def column_of(columns: Sequence[Column], port: int) -> Column:
    """The column holding ``port``; raises :class:`LookupError` when none does (a one-port view)."""
    for column in columns:
        if port in column:
            return column
    raise LookupError(f"the table has no column for port {port}")


def address_groups(networks: Iterable[SourceNetwork]) -> tuple[AddressGroup, ...]:
    """The groups for the rules' ``networks``: "no known address", then one per distinct set of networks."""
    named = sorted(set(networks), key=str)
    if not named:
        return (ANY_ADDRESS,)
    groups = [NO_ADDRESS]
    seen: set[frozenset[SourceNetwork]] = set()
    blocks = [block for net in named for block in (*net.include, *net.exclude)]
    for version, top in ((4, 2**32), (6, 2**128)):
        family = [b for b in blocks if b.version == version]
        if version == 6:
            family.append(_MAPPED)
        cuts = {0, top} | {
            edge for b in family for edge in (int(b.network_address), int(b.broadcast_address) + 1)
        }
        bounds = sorted(cuts)
        for low, stop in pairwise(bounds):
            # Any address of the stretch would do; past its first one reads better (10.0.0.1, not 10.0.0.0).
            first = low + 1 if stop - low > 2 else low
            example = ipaddress.IPv4Address(first) if version == 4 else ipaddress.IPv6Address(first)
            if example in _MAPPED:
                continue
            inside = frozenset(net for net in named if net.contains(example))
            if inside not in seen:
                seen.add(inside)
                groups.append(AddressGroup(_group_name(inside), example, inside))
    return tuple(groups)


def _group_name(inside: frozenset[SourceNetwork]) -> str:
    if not inside:
        return "outside every network a rule names"
    return "in " + " and in ".join(sorted(str(net) for net in inside))


def address_group_of(
    groups: Sequence[AddressGroup], address: IpAddress | str | None
) -> AddressGroup:
    """The group of a peer at ``address`` (None, or text that is no address: unknown), as a decision reads it."""
    if len(groups) == 1:
        return groups[0]
    parsed: IpAddress | None
    try:
        parsed = parse_peer_address(address) if isinstance(address, str) else address
    except RequestError:
        parsed = None
    if parsed is None:
        return NO_ADDRESS
    named = {net for group in groups for net in group.networks}
    inside = frozenset(net for net in named if net.contains(parsed))
    for group in groups[1:]:
        if group.networks == inside:
            return group
    raise LookupError(
        f"no address group for {address}"
    )  # unreachable: the groups cover every address
