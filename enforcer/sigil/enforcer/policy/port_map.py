"""What one peer gets from one target, port by port: the decisions an enforcer looks up on every connection.

Only the ports some matching rule names can decide differently from the rest, so a peer's first connection
decides once per named port, once per stretch between the ends of the named port ranges (``portRanges``,
authz.md 7.1: every port of a stretch is inside or outside the same ranges), and once for every other port. A
later connection is then a dict lookup, or, when ranges were named, a bisection over their ends (done inline
by :meth:`~sigil.enforcer.policy.index.PolicyIndex.decide`, the hot path).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from sigil.enforcer.policy.decision import Decision

__all__ = ["UNNAMED_PORT", "PortMap", "build_port_map"]

# Port 0 is in no rule's port list (ports are 1-65535): deciding for it decides for every unnamed port.
UNNAMED_PORT = 0

#: The decision for each named port, for every other port, the stretches' lower ends and their decisions.
PortMap = tuple[dict[int, Decision], Decision, tuple[int, ...], tuple[Decision, ...]]


def build_port_map(
    decide: Callable[[int], Decision], ports: Iterable[int], spans: Iterable[tuple[int, int]]
) -> PortMap:
    """Decide once per named port, once per stretch between range ends, and once for the rest."""
    by_port = {port: decide(port) for port in ports}
    other = decide(UNNAMED_PORT)
    bounds = tuple(sorted({edge for start, end in spans for edge in (start, end + 1)}))
    # Stretch i holds the ports from bounds[i-1] up to bounds[i]; any port of it not named singly decides for
    # all of them. Stretch 0 (below every range) is "every other port".
    stretches = [other]
    for i, start in enumerate(bounds):
        stop = bounds[i + 1] if i + 1 < len(bounds) else 65536
        free = next((p for p in range(start, stop) if p not in by_port), None)
        stretches.append(other if free is None or free > 65535 else decide(free))
    return by_port, other, bounds, tuple(stretches)
