"""Where a connection comes from and which port it reaches: the network half of a rule (authz.md 7.1).

GEP-3779's ``networkAttributes`` names destination ports only, and says an empty list means every port; Sigil
adds inclusive ``portRanges`` (OR-ed with ``ports``) and the peer's source address, ``sourceCIDRs`` and
``exceptSourceCIDRs`` (Linkerd's ``NetworkAuthentication`` ``networks[].cidr``/``except``, Istio's
``ipBlocks``/``notIpBlocks``), AND-ed with the rule's sources, so that "identity X from this network, or
identity Y from anywhere" is one policy. An address is compared as the :mod:`ipaddress` module reads it; an
IPv4-mapped IPv6 address (``::ffff:10.0.0.1``, what a dual-stack socket reports for an IPv4 peer) counts as its
IPv4 address, so one ``10.0.0.0/8`` block covers both ways the same peer can be seen.

A decision without a known peer address matches no rule that names a network: the rule cannot be shown to
hold, and the enforcer never guesses.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sigil.enforcer.errors import RequestError
from sigil.enforcer.policy.schema import Array, Check, Integer, Object, String, Where

__all__ = [
    "NETWORK_ATTRIBUTES_SCHEMA",
    "AddressBook",
    "IpAddress",
    "IpNetwork",
    "NetworkAttributes",
    "PortRange",
    "SourceNetwork",
    "parse_network_attributes",
    "parse_peer_address",
]

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_peer_address(text: str) -> IpAddress:
    """An IPv4 or IPv6 address as a socket or a flag spells it; raises :class:`RequestError`."""
    try:
        address = ipaddress.ip_address(text.strip("[]"))
    except ValueError as err:
        raise RequestError("peer address", text, "not an IPv4 or IPv6 address") from err
    return _unmapped(address)


def _unmapped(address: IpAddress) -> IpAddress:
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.scope_id is not None:  # fe80::1%eth0: blocks never carry a zone
            return ipaddress.IPv6Address(address.exploded.split("%")[0])
    return address


class AddressBook:
    """Peer addresses as a socket reports them (strings), each parsed once; bounded like every other cache."""

    __slots__ = ("_parsed", "_size")

    def __init__(self, size: int) -> None:
        self._size = size
        self._parsed: dict[str, IpAddress | None] = {}

    def parse(self, address: IpAddress | str | None) -> IpAddress | None:
        """The address (None: unknown or malformed, which matches no rule that names a network)."""
        if not isinstance(address, str):
            return address
        try:
            return self._parsed[address]
        except KeyError:
            pass
        try:
            parsed: IpAddress | None = parse_peer_address(address)
        except RequestError:
            parsed = None
        if len(self._parsed) >= self._size:
            self._parsed.clear()
        self._parsed[address] = parsed
        return parsed


@dataclass(frozen=True, slots=True)
class PortRange:
    """Destination ports ``start`` to ``end``, both included."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if not 1 <= self.start <= self.end <= 65535:
            raise ValueError(
                f"port range {self.start}-{self.end} is not 1 <= start <= end <= 65535"
            )

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.start <= port <= self.end

    def __str__(self) -> str:
        return f"{self.start}-{self.end}"


@dataclass(frozen=True, slots=True)
class SourceNetwork:
    """Peers whose address is in one of ``include`` (every address when empty) and in none of ``exclude``."""

    include: tuple[IpNetwork, ...] = ()
    exclude: tuple[IpNetwork, ...] = ()

    def contains(self, address: IpAddress | None) -> bool:
        """True when ``address`` is inside; an unknown address (None) never is."""
        if address is None:
            return False
        if self.include and not any(address in block for block in self.include):
            return False
        return not any(address in block for block in self.exclude)

    def __str__(self) -> str:
        text = ", ".join(str(block) for block in self.include) or "any address"
        if self.exclude:
            text += " except " + ", ".join(str(block) for block in self.exclude)
        return text


@dataclass(frozen=True, slots=True)
class NetworkAttributes:
    """A rule's ``networkAttributes``: ``ports`` None = every port (with no ``port_ranges``); ``source`` None =
    any address; the port must also be outside ``except_ports`` and ``except_ranges`` (Sigil extension,
    Istio's ``notPorts``)."""

    ports: frozenset[int] | None = None
    port_ranges: tuple[PortRange, ...] = ()
    source: SourceNetwork | None = None
    except_ports: frozenset[int] = frozenset()
    except_ranges: tuple[PortRange, ...] = ()


def parse_network_attributes(raw: Mapping[str, Any], path: str, where: Where) -> NetworkAttributes:
    """A rule's ``networkAttributes`` (already through the schema); raises :class:`PolicyError` for a block
    with host bits set or a range that descends."""
    ports, spans = raw.get("ports") or [], raw.get("portRanges") or []
    port_ranges = tuple(
        _port_range(span, f"{path}.portRanges[{index}]", where) for index, span in enumerate(spans)
    )
    except_ranges = tuple(
        _port_range(span, f"{path}.exceptPortRanges[{index}]", where)
        for index, span in enumerate(raw.get("exceptPortRanges") or ())
    )
    include = _blocks(raw, "sourceCIDRs", path, where)
    exclude = _blocks(raw, "exceptSourceCIDRs", path, where)
    return NetworkAttributes(
        # GEP-3779: an empty (or omitted) port list means every port.
        frozenset(ports) if ports or port_ranges else None,
        port_ranges,
        SourceNetwork(include, exclude) if include or exclude else None,
        frozenset(raw.get("exceptPorts") or ()),
        except_ranges,
    )


def _port_range(raw: Mapping[str, Any], path: str, where: Where) -> PortRange:
    try:
        return PortRange(raw["start"], raw["end"])
    except ValueError as err:
        raise where.error(f"{path}.end", "an end at or above start", raw["end"]) from err


def _blocks(
    network: Mapping[str, Any], name: str, path: str, where: Where
) -> tuple[IpNetwork, ...]:
    blocks = []
    for index, text in enumerate(network.get(name) or ()):
        try:
            blocks.append(ipaddress.ip_network(text, strict=True))
        except ValueError as err:
            raise where.error(
                f"{path}.{name}[{index}]",
                f"an IPv4 or IPv6 CIDR block with no host bits set ({err})",
                text,
            ) from err
    return tuple(blocks)


_NETWORK_FIELDS = (
    "ports",
    "portRanges",
    "exceptPorts",
    "exceptPortRanges",
    "sourceCIDRs",
    "exceptSourceCIDRs",
)


_NAMED_FIELDS = ", ".join(_NETWORK_FIELDS[:-1]) + " or " + _NETWORK_FIELDS[-1]


def _names_a_network_criterion(network: Mapping[str, Any]) -> str | None:
    return None if any(name in network for name in _NETWORK_FIELDS) else ""


def _not_a_block(name: str, network: Mapping[str, Any]) -> str | None:
    for index, text in enumerate(network.get(name) or ()):
        try:
            ipaddress.ip_network(text, strict=True)
        except (TypeError, ValueError):
            return f"{name}[{index}]"
    return None


def _cidr_checks() -> tuple[Check, ...]:
    """Each block parses as a CIDR: Kubernetes' CEL ``isCIDR``, and :mod:`ipaddress` for files."""

    return tuple(
        Check(
            cel=f"!has(self.{name}) || self.{name}.all(c, isCIDR(c))",
            message=f"every {name} entry must be a CIDR block",
            expected="a CIDR block with no host bits set (such as 10.0.0.0/8 or fd00::/8)",
            failing=functools.partial(_not_a_block, name),
        )
        for name in ("sourceCIDRs", "exceptSourceCIDRs")
    )


def _range_ascends(span: Mapping[str, Any]) -> str | None:
    start, end = span.get("start"), span.get("end")
    if isinstance(start, int) and isinstance(end, int) and start > end:
        return "end"
    return None


_CIDR = String(
    "An IPv4 or IPv6 CIDR block (no host bits set).",
    pattern=r"^[0-9A-Fa-f.:]+/[0-9]{1,3}$",
    shape="a CIDR block such as 10.0.0.0/8 or fd00::/8",
    max_length=43,
)


def _port_ranges(description: str) -> Array:
    return Array(
        Object(
            fields={
                "start": Integer(minimum=1, maximum=65535),
                "end": Integer(minimum=1, maximum=65535),
            },
            required=("start", "end"),
            checks=(
                Check(
                    cel="self.start <= self.end",
                    message="a port range's end must not be below its start",
                    expected="an end at or above start",
                    failing=_range_ascends,
                ),
            ),
        ),
        max_items=16,
        min_items=1,
        description=description,
    )


def _cidrs(description: str) -> Array:
    return Array(_CIDR, max_items=32, min_items=1, description=description)


NETWORK_ATTRIBUTES_SCHEMA = Object(
    description="AND-ed with the sources and with each other.",
    fields={
        "ports": Array(
            Integer("A destination port.", 1, 65535),
            max_items=64,
            description="Destination ports; empty (as omitted): every port (GEP-3779).",
        ),
        "portRanges": _port_ranges(
            "Sigil extension: inclusive destination port ranges, OR-ed with ports."
        ),
        "exceptPorts": Array(
            Integer("A destination port.", 1, 65535),
            max_items=64,
            min_items=1,
            description="Sigil extension: the destination port must be none of these.",
        ),
        "exceptPortRanges": _port_ranges(
            "Sigil extension: the destination port must be in none of these inclusive ranges."
        ),
        "sourceCIDRs": _cidrs("Sigil extension: the peer's address must be in one of these."),
        "exceptSourceCIDRs": _cidrs(
            "Sigil extension: the peer's address must be in none of these."
        ),
    },
    checks=(
        Check(
            cel=" || ".join(f"has(self.{name})" for name in _NETWORK_FIELDS),
            message="networkAttributes must name " + _NAMED_FIELDS,
            expected=_NAMED_FIELDS,
            failing=_names_a_network_criterion,
        ),
        *_cidr_checks(),
    ),
)
