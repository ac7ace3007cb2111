"""Classes of peers that every policy set for a target treats alike: the rows of the effective access table.

Matching in Sigil is by a finite set of keys (:meth:`~sigil.enforcer.policy.index.PolicyIndex.peer_keys`): a
peer's exact ID, its ServiceAccount namespace when it is a local ``/ns/N/sa/S`` ID, each ``/*`` prefix above it,
and "any peer". Two peers that hold the same keys *among those the rules name* (their signature) get the same
decision on every port, so one representative peer per signature answers for all of them. The classes are
enumerated from the rules' sources, one kind after another in :data:`_KINDS`; each kind (:class:`ClassKind`, its
label, its enumerator) says how it is named and which of its members stands for it, and is written once here. Adding a kind of source (an authenticated-any
source with its trust domains, a namespace selector, a network block with an address) means adding its
enumerator to that tuple, and, for a new dimension such as the peer's address, a field on :class:`PeerClass`'s
representative.

Every peer falls in one listed class (:func:`class_of`): an exact ID that some rule names, else a ServiceAccount
namespace a ``*`` rule names, else the deepest named prefix above it, else its trust domain's "any other peer",
else "a peer of another trust domain"; peers without an SVID are a class of their own.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from sigil.ca.spiffe_id import SpiffeId, TrustDomain
from sigil.enforcer.policy.index import PolicyIndex
from sigil.enforcer.policy.model import Rule, ServiceAccountSource, Source, SpiffeSource

__all__ = ["ClassKind", "PeerClass", "class_of", "peer_classes"]


class ClassKind(enum.Enum):
    """The kinds of row in the access table, in the order they are listed."""

    SPIFFE_ID = "spiffe-id"
    SERVICE_ACCOUNT = "service-account"
    SERVICE_ACCOUNTS = "service-accounts"
    SPIFFE_PREFIX = "spiffe-prefix"
    TRUST_DOMAIN = "trust-domain"
    OTHER_TRUST_DOMAIN = "other-trust-domain"
    NO_SVID = "no-svid"

    def describe(self, name: str) -> str:
        """A row of this kind named ``name``, as the text view labels it."""
        return _LABELS[self].format(name=name)


_LABELS = {
    ClassKind.SPIFFE_ID: "{name}",
    ClassKind.SERVICE_ACCOUNT: "serviceAccount {name}",
    ClassKind.SERVICE_ACCOUNTS: "serviceAccount {name} (any other account of the namespace)",
    ClassKind.SPIFFE_PREFIX: "{name} (any other ID below it)",
    ClassKind.TRUST_DOMAIN: "any other peer of {name}",
    ClassKind.OTHER_TRUST_DOMAIN: "a peer of any other trust domain",
    ClassKind.NO_SVID: "a peer without a valid SVID",
}


@dataclass(frozen=True, slots=True)
class PeerClass:
    """One row: what it stands for (``kind``, ``name``), the peer that represents it, and its signature."""

    kind: ClassKind
    name: str
    representative: SpiffeId | None
    signature: frozenset[str] | None  # None: no SVID


@dataclass(frozen=True, slots=True)
class _Context:
    index: PolicyIndex
    sources: tuple[Source, ...]
    keys: frozenset[str]  # every key the rules name
    fresh: str  # a path segment no rule names
    fresh_domain: TrustDomain  # a trust domain no rule names

    def signature(self, peer: SpiffeId | None) -> frozenset[str] | None:
        if peer is None:
            return None
        exact, prefixes = self.index.peer_keys(peer)
        return frozenset(key for key in (*exact, *prefixes) if key in self.keys)

    def row(self, kind: ClassKind, name: str, peer: SpiffeId | None) -> PeerClass:
        return PeerClass(kind, name, peer, self.signature(peer))


def _exact_ids(context: _Context) -> Iterable[PeerClass]:
    for source in context.sources:
        if isinstance(source, SpiffeSource) and not source.prefix:
            yield context.row(ClassKind.SPIFFE_ID, str(source.spiffe_id), source.spiffe_id)


def _service_accounts(context: _Context) -> Iterable[PeerClass]:
    local = context.index.trust_domain.name
    for source in context.sources:
        if isinstance(source, ServiceAccountSource):
            named = context.fresh if source.name == "*" else source.name
            peer = SpiffeId.parse(f"spiffe://{local}/ns/{source.namespace}/sa/{named}")
            kind = ClassKind.SERVICE_ACCOUNTS if source.name == "*" else ClassKind.SERVICE_ACCOUNT
            yield context.row(kind, f"{source.namespace}/{source.name}", peer)


def _prefixes(context: _Context) -> Iterable[PeerClass]:
    for source in context.sources:
        if isinstance(source, SpiffeSource) and source.prefix:
            below = f"{source.spiffe_id}/{context.fresh}"
            peer = SpiffeId.parse(below)
            if context.index.peer_keys(peer)[0][1:-1]:
                # One level below, the ID reads as a ServiceAccount's (/ns/N/sa/*): two levels below
                # stands for the prefix alone.
                peer = SpiffeId.parse(f"{below}/{context.fresh}")
            yield context.row(ClassKind.SPIFFE_PREFIX, f"{source.spiffe_id}/*", peer)


def _trust_domains(context: _Context) -> Iterable[PeerClass]:
    domains = [context.index.trust_domain]
    for source in context.sources:
        if isinstance(source, SpiffeSource) and source.spiffe_id.trust_domain not in domains:
            domains.append(source.spiffe_id.trust_domain)
    for domain in domains:
        peer = SpiffeId.parse(f"spiffe://{domain.name}/{context.fresh}")
        yield context.row(ClassKind.TRUST_DOMAIN, domain.name, peer)


def _other_domains(context: _Context) -> Iterable[PeerClass]:
    peer = SpiffeId.parse(f"spiffe://{context.fresh_domain.name}/{context.fresh}")
    yield context.row(ClassKind.OTHER_TRUST_DOMAIN, "", peer)


def _no_svid(context: _Context) -> Iterable[PeerClass]:
    yield context.row(ClassKind.NO_SVID, "", None)


# Each kind of row, in listing order. A new kind of source adds its enumerator here.
_KINDS: tuple[Callable[[_Context], Iterable[PeerClass]], ...] = (
    _exact_ids,
    _service_accounts,
    _prefixes,
    _trust_domains,
    _other_domains,
    _no_svid,
)


def peer_classes(
    index: PolicyIndex, rules: Sequence[Rule], namespace: str
) -> tuple[PeerClass, ...]:
    """The rows of the access table for ``rules`` (every rule that can apply to a target in ``namespace``),
    without repeats."""
    sources: list[Source] = []
    for rule in rules:
        for source in rule.sources or ():
            if source not in sources:
                sources.append(source)
    context = _Context(
        index,
        tuple(sources),
        frozenset(key for source in sources for key in index.source_keys(source, namespace)),
        _fresh_segment(sources),
        _fresh_domain(sources),
    )
    rows: list[PeerClass] = []
    for kind in _KINDS:
        rows.extend(row for row in kind(context) if row not in rows)
    return tuple(rows)


def class_of(classes: Sequence[PeerClass], index: PolicyIndex, peer: SpiffeId | None) -> PeerClass:
    """The first listed class that treats ``peer`` alike (same signature); every peer has one."""
    keys = frozenset(key for row in classes if row.signature for key in row.signature)
    signature: frozenset[str] | None = None
    if peer is not None:
        exact, prefixes = index.peer_keys(peer)
        signature = frozenset(key for key in (*exact, *prefixes) if key in keys)
    for row in classes:
        if row.signature == signature:
            return row
    raise LookupError(
        f"no peer class for {peer}"
    )  # unreachable when classes come from peer_classes


def _fresh_segment(sources: Iterable[Source]) -> str:
    taken = {"ns", "sa"}
    for source in sources:
        if isinstance(source, ServiceAccountSource):
            taken.update((source.namespace, source.name))
        elif isinstance(source, SpiffeSource):
            taken.update(source.spiffe_id.path.split("/"))
    return next(name for n in range(len(taken) + 1) if (name := f"other{n or ''}") not in taken)


def _fresh_domain(sources: Iterable[Source]) -> TrustDomain:
    taken = {s.spiffe_id.trust_domain.name for s in sources if isinstance(s, SpiffeSource)}
    name = next(
        name for n in range(len(taken) + 1) if (name := f"other{n or ''}.invalid") not in taken
    )
    return TrustDomain(name)
