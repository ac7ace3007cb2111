"""Representative peers for ``SPIFFEPattern`` sources: the pattern rows of the effective view.

Whether a peer matches a glob depends on its whole ID, not on a key the other rows already tell apart, so the
view asks peers built from each pattern: every ``*`` filled with one of a few *fillers* (nothing, a fresh
segment, two fresh segments, and the namespaces, path segments and trust-domain labels the rules name, since a
peer matching the glob *and* another source spells those), keeping each result that is a valid SPIFFE ID with a
path and matches the glob. The view lists only those whose keys differ from every other row's, so a pattern
adds a row exactly where it tells some peer apart. The number of combinations is capped (:data:`LIMIT` per
pattern): patterns with many ``*`` get the first fillers in every position, and the rest in the first ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import islice, product

from sigil.ca.errors import InvalidSpiffeIdError
from sigil.ca.spiffe_id import SpiffeId
from sigil.enforcer.policy.identity_sources import SpiffePatternSource

__all__ = ["LIMIT", "pattern_peers"]

#: At most this many peers are built per pattern.
LIMIT = 256


def pattern_peers(
    pattern: SpiffePatternSource, *, fresh: str, named: Sequence[str]
) -> Iterable[SpiffeId]:
    """Peers matching ``pattern``, each ``*`` filled from the fillers (``fresh`` and the ``named`` words)."""
    parts = pattern.pattern.split("*")
    fillers = list(dict.fromkeys(("", fresh, f"{fresh}/{fresh}", *named)))
    seen: set[SpiffeId] = set()
    for filling in islice(product(fillers, repeat=len(parts) - 1), LIMIT):
        text = parts[0] + "".join(f + p for f, p in zip(filling, parts[1:], strict=True))
        try:
            peer = SpiffeId.parse(text)
        except InvalidSpiffeIdError:
            continue
        if peer.path and pattern.matches(str(peer)) and peer not in seen:
            seen.add(peer)
            yield peer
