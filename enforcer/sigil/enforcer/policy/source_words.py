"""The words a policy set's sources spell, and words they do not: what the effective view's rows are built from.

The rows of :mod:`.peer_classes` stand for classes of peers; a representative is built from the namespaces,
path segments and trust domains the sources name (to land in a class a rule tells apart) or from a *fresh* word
no source names (to land in none of them). Patterns count as naming their literal parts.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import count

from sigil.ca.spiffe_id import TrustDomain
from sigil.enforcer.policy.decision import NAMESPACE_NAME_LABEL
from sigil.enforcer.policy.identity_sources import (
    AuthenticatedSource,
    NamespacesSource,
    ServiceAccountSource,
    Source,
    SpiffePatternSource,
    SpiffeSource,
)

__all__ = [
    "fresh_domain",
    "fresh_segment",
    "namespaces_named",
    "segments_named",
    "selector_values",
]


def namespaces_named(sources: Iterable[Source], local: TrustDomain) -> Iterable[str]:
    """Namespaces a source names: of accounts, in local IDs and prefixes (``/ns/N/...``), in selectors."""
    for source in sources:
        if isinstance(source, ServiceAccountSource):
            yield source.namespace
        elif isinstance(source, SpiffeSource) and source.spiffe_id.trust_domain == local:
            segments = source.spiffe_id.path.split("/")
            if len(segments) > 2 and segments[1] == "ns":
                yield segments[2]
        elif isinstance(source, NamespacesSource):
            yield from selector_values(source)


def selector_values(source: NamespacesSource) -> Iterable[str]:
    for key, value in source.selector.match_labels:
        if key == NAMESPACE_NAME_LABEL:
            yield value
    for requirement in source.selector.match_expressions:
        if requirement.key == NAMESPACE_NAME_LABEL:
            yield from sorted(requirement.values)


def segments_named(sources: Iterable[Source]) -> list[str]:
    """Path segments and trust-domain labels the sources spell: what a peer matching a pattern may also hold."""
    named: list[str] = []
    for source in sources:
        if isinstance(source, SpiffeSource):
            named.extend(source.spiffe_id.path.split("/")[1:])
            domain = source.spiffe_id.trust_domain.name
            named.extend((domain, *domain.split(".")))
        elif isinstance(source, ServiceAccountSource):
            named.extend((source.namespace, source.name))
        elif isinstance(source, AuthenticatedSource):
            for domain in sorted(source.trust_domains or ()):
                named.extend((domain, *domain.split(".")))
    return [word for word in dict.fromkeys(named) if word and word != "*"]


def fresh_segment(sources: Iterable[Source], namespaces: Iterable[str]) -> str:
    taken = {"ns", "sa", *namespaces}
    for source in sources:
        if isinstance(source, ServiceAccountSource):
            taken.update((source.namespace, source.name))
        elif isinstance(source, SpiffeSource):
            taken.update(source.spiffe_id.path.split("/"))
        elif isinstance(source, NamespacesSource):
            taken.update(selector_values(source))
        elif isinstance(source, SpiffePatternSource):
            taken.update(source.pattern.split("*"))
    # No substring of a named segment either: a template may embed a field in one (pod-{pod_name}).
    return next(
        name
        for n in count()
        if not any((name := f"other{n or ''}") in segment for segment in taken)
    )


def fresh_domain(sources: Iterable[Source]) -> TrustDomain:
    taken = {s.spiffe_id.trust_domain.name for s in sources if isinstance(s, SpiffeSource)}
    for source in sources:
        if isinstance(source, AuthenticatedSource):
            taken.update(source.trust_domains or ())
    name = next(
        name for n in range(len(taken) + 1) if (name := f"other{n or ''}.invalid") not in taken
    )
    return TrustDomain(name)
