"""The L4 conditions of one Istio rule: which peers, addresses and ports it names, as sets to combine.

An Istio rule ANDs the fields of one ``source``, the fields of one ``operation`` and every ``when`` condition;
each field ORs its values and excludes everything its ``not*`` twin names. :class:`Conditions` keeps that shape:
``groups`` are AND-ed OR-lists of Sigil sources, and the address and port lists intersect, so that a
(source, operation) pair becomes one Sigil rule (:mod:`.rules`). Intersecting two lists of CIDR blocks is exact:
two blocks either nest or do not overlap.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = ["ConditionError", "Conditions", "parse_networks", "parse_ports", "sigil_rules"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
SourceDoc = dict[str, Any]
_MAX_COMBINATIONS = 256
# One Sigil rule's limits (policy.resources and policy.network schemas).
_MAX_ALL_OF, _MAX_SOURCES, _MAX_EXCLUDED, _MAX_PORTS, _MAX_BLOCKS = 4, 128, 32, 64, 32


class ConditionError(ValueError):
    """An address or port that Istio itself would reject; the message names it."""


def parse_networks(values: Iterable[object], path: str) -> tuple[Network, ...]:
    """Istio's address values: an IP address or a CIDR block (host bits are masked, as Envoy does)."""
    found: list[Network] = []
    for value in values:
        try:
            found.append(ipaddress.ip_network(str(value), strict=False))
        except ValueError as err:
            raise ConditionError(f"{path}: {value!r} is not an IP address or CIDR block") from err
    return tuple(found)


def parse_ports(values: Iterable[object], path: str) -> frozenset[int]:
    """Istio's port values: decimal strings (or numbers) from 0 to 65535."""
    found: set[int] = set()
    for value in values:
        text = str(value)
        if not text.isdigit() or int(text) > 65535:
            raise ConditionError(f"{path}: {value!r} is not a port number (0-65535)")
        found.add(int(text))
    return frozenset(found)


def _intersect(left: Sequence[Network], right: Sequence[Network]) -> tuple[Network, ...]:
    out: list[Network] = []
    for a in left:
        for b in right:
            if a.version != b.version:
                continue
            if a.subnet_of(b):  # type: ignore[arg-type]  # same version checked above
                out.append(a)
            elif b.subnet_of(a):  # type: ignore[arg-type]
                out.append(b)
    return tuple(dict.fromkeys(out))


@dataclass(frozen=True, slots=True)
class Conditions:
    """What one (source, operation, when) combination requires of a connection.

    ``groups``: every group must have a matching source (a group is OR-ed; an empty group matches nothing).
    ``excluded``: no source here may match. ``networks`` None = any address; ``ports`` None = any port.
    """

    groups: tuple[tuple[SourceDoc, ...], ...] = ()
    excluded: tuple[SourceDoc, ...] = ()
    networks: tuple[Network, ...] | None = None
    except_networks: tuple[Network, ...] = ()
    ports: frozenset[int] | None = None
    except_ports: frozenset[int] = field(default_factory=frozenset)

    def require(self, group: Sequence[SourceDoc]) -> Conditions:
        """Also require a peer matching one of ``group``."""
        return replace(self, groups=(*self.groups, tuple(group)))

    def exclude(self, sources: Iterable[SourceDoc]) -> Conditions:
        """Also exclude peers matching any of ``sources``."""
        added = [s for s in sources if s not in self.excluded]
        return replace(self, excluded=(*self.excluded, *added))

    def within(self, networks: Sequence[Network]) -> Conditions:
        """Also require the peer's address inside one of ``networks``."""
        merged = tuple(networks) if self.networks is None else _intersect(self.networks, networks)
        return replace(self, networks=merged)

    def outside(self, networks: Sequence[Network]) -> Conditions:
        """Also require the peer's address outside every one of ``networks``."""
        return replace(
            self, except_networks=tuple(dict.fromkeys((*self.except_networks, *networks)))
        )

    def on_ports(self, ports: frozenset[int]) -> Conditions:
        """Also require the destination port in ``ports``."""
        return replace(self, ports=ports if self.ports is None else self.ports & ports)

    def off_ports(self, ports: frozenset[int]) -> Conditions:
        """Also require the destination port outside ``ports``."""
        return replace(self, except_ports=self.except_ports | ports)

    def merge(self, other: Conditions) -> Conditions:
        """Both sets of requirements at once."""
        merged = replace(self, groups=(*self.groups, *other.groups)).exclude(other.excluded)
        if other.networks is not None:
            merged = merged.within(other.networks)
        merged = merged.outside(other.except_networks)
        if other.ports is not None:
            merged = merged.on_ports(other.ports)
        return merged.off_ports(other.except_ports)

    @property
    def satisfiable(self) -> bool:
        """False when some requirement can match nothing (an empty group, address or port list)."""
        if any(not group for group in self.groups):
            return False
        if self.networks is not None and not self.networks:
            return False
        ports = None if self.ports is None else self.ports - self.except_ports - {0}
        return ports is None or bool(ports)


def sigil_rules(conditions: Conditions, path: str) -> list[dict[str, Any]]:
    """The Sigil rules requiring ``conditions``: one, or several OR-ed where a list outgrows Sigil's limits.

    Sources spread into AllOf combinations; [] when every combination contradicts itself. Sources, ports and
    address blocks beyond one rule's limits are split over several rules (OR-ing them is exact); exclusions
    and AllOf members beyond the limits cannot be split, and raise :class:`ConditionError`.
    """
    combinations = 1
    for group in conditions.groups:
        combinations *= len(group)
    if combinations > _MAX_COMBINATIONS:
        raise ConditionError(
            f"{path}: its fields combine into {combinations} alternatives (at most "
            f"{_MAX_COMBINATIONS}); split the rule"
        )
    sources: list[dict[str, Any]] = []
    for chosen in itertools.product(*conditions.groups) if conditions.groups else ():
        members = _simplified([_thawed(m) for m in dict.fromkeys(_frozen(s) for s in chosen)])
        if members is None:
            continue
        if len(members) > _MAX_ALL_OF:
            raise ConditionError(
                f"{path}: one source ANDs {len(members)} identity conditions; Sigil's AllOf holds at most "
                f"{_MAX_ALL_OF}"
            )
        source = members[0] if len(members) == 1 else {"type": "AllOf", "allOf": members}
        if source not in sources:
            sources.append(source)
    if conditions.groups and not sources:
        return []
    common: dict[str, Any] = {}
    if conditions.excluded:
        common["notSources"] = _limited(
            list(conditions.excluded), _MAX_EXCLUDED, f"{path}: excluded peers"
        )
    network: dict[str, Any] = {}
    if conditions.ports is None and conditions.except_ports - {0}:
        network["exceptPorts"] = _limited(
            sorted(conditions.except_ports - {0}), _MAX_PORTS, f"{path}: excluded ports"
        )
    if conditions.except_networks:
        blocks = [str(n) for n in _collapsed(conditions.except_networks)]
        network["exceptSourceCIDRs"] = _limited(
            blocks, _MAX_BLOCKS, f"{path}: excluded address blocks"
        )
    port_chunks: list[list[int] | None] = [None]
    if conditions.ports is not None:
        port_chunks = list(
            _chunks(sorted(conditions.ports - conditions.except_ports - {0}), _MAX_PORTS)
        )
    block_chunks: list[list[str] | None] = [None]
    if conditions.networks is not None:
        block_chunks = list(_chunks([str(n) for n in _collapsed(conditions.networks)], _MAX_BLOCKS))
    out: list[dict[str, Any]] = []
    source_chunks = list(_chunks(sources, _MAX_SOURCES)) if sources else [[{"type": "Any"}]]
    for chunk, ports, blocks in itertools.product(source_chunks, port_chunks, block_chunks):
        rule: dict[str, Any] = {"sources": chunk, **common}
        attributes = dict(network)
        if ports is not None:
            attributes["ports"] = ports
        if blocks is not None:
            attributes["sourceCIDRs"] = blocks
        if attributes:
            rule["networkAttributes"] = attributes
        out.append(rule)
    return out


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _limited(items: list[Any], limit: int, what: str) -> list[Any]:
    if len(items) > limit:
        raise ConditionError(f"{what}: {len(items)}, more than the {limit} one Sigil rule holds")
    return items


def _collapsed(networks: Sequence[Network]) -> list[Network]:
    v4 = [n for n in networks if isinstance(n, ipaddress.IPv4Network)]
    v6 = [n for n in networks if isinstance(n, ipaddress.IPv6Network)]
    return [*ipaddress.collapse_addresses(v4), *ipaddress.collapse_addresses(v6)]


def _simplified(members: list[SourceDoc]) -> list[SourceDoc] | None:
    """``members`` with what an exact ID already decides folded away; None when they contradict each other.

    Every identity source needs an SVID, so presence (``spiffe://*``) adds nothing beside another one; an exact
    ``SPIFFE`` member either satisfies each other member (which then adds nothing) or none can match.
    """
    if len(members) > 1:
        members = [m for m in members if m.get("spiffePattern") != "spiffe://*"] or members[:1]
    exact = [m["spiffe"] for m in members if m["type"] == "SPIFFE"]
    if not exact:
        return members
    if any(not _admits(m, exact[0]) for m in members):
        return None
    return [{"type": "SPIFFE", "spiffe": exact[0]}]


def _admits(source: SourceDoc, spiffe_id: str) -> bool:
    if source["type"] == "SPIFFE":
        return bool(source["spiffe"] == spiffe_id)
    if source["type"] == "SPIFFEPattern":
        glob = "".join(".*" if c == "*" else re.escape(c) for c in source["spiffePattern"])
        return re.fullmatch(glob, spiffe_id, flags=re.DOTALL) is not None
    domain = spiffe_id.removeprefix("spiffe://").split("/", 1)[0]
    return domain in source["authenticated"]["trustDomains"]


def _frozen(source: Mapping[str, Any]) -> str:
    return json.dumps(source, sort_keys=True)


def _thawed(frozen: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(frozen)
    return value
