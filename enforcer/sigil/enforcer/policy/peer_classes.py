"""Classes of peers that every policy set for a target treats alike: the rows of the effective access table.

Matching in Sigil is by a finite set of keys (:meth:`~sigil.enforcer.policy.index.PolicyIndex.peer_keys`): a
peer's exact ID, its ServiceAccount namespace when it is a local ``/ns/N/sa/S`` ID, each ``/*`` prefix above it,
and "any peer". Two peers that hold the same keys *among those the rules name* (their signature) get the same
decision on every port, so one representative peer per signature answers for all of them. The classes are
enumerated from the rules' sources, one kind after another in :data:`_KINDS`; each kind (:class:`ClassKind`, its
label, its enumerator) says how it is named and which of its members stands for it, and is written once here.
The peer's address is the table's other dimension (:mod:`sigil.enforcer.policy.effective_axes`), not a class.

Why the classes cover every peer (:func:`class_of` finds each one's): a peer's keys follow from its exact ID, the
deepest named ``/*`` prefix above it, its trust domain (``Authenticated`` sources and the defaults ask), and, for
a local ID that fits the workload ID template, its namespace and ServiceAccount (ServiceAccount,
``SameNamespace`` and ``Namespaces`` sources ask). So the rows are: each exact ID named; each named account; each
workload ID that differs from those (a namespace, account and deepest prefix combination, built by
:mod:`.workload_peers` under the enforcer's template); below each prefix, an ID that fits no template; peers
built from each ``SPIFFEPattern`` (:mod:`.pattern_peers`), since a glob asks about the whole ID; each trust domain
named, and one that none names; and no SVID. AllOf members and ``notSources`` name keys as any source does.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from sigil.ca.spiffe_id import SpiffeId, TrustDomain
from sigil.enforcer.policy.identity_sources import (
    AllOfSource,
    AuthenticatedSource,
    ServiceAccountSource,
    Source,
    SpiffePatternSource,
    SpiffeSource,
)
from sigil.enforcer.policy.index import PolicyIndex
from sigil.enforcer.policy.model import Rule
from sigil.enforcer.policy.pattern_peers import pattern_peers
from sigil.enforcer.policy.source_words import (
    fresh_domain,
    fresh_segment,
    namespaces_named,
    segments_named,
)
from sigil.enforcer.policy.workload_peers import TEMPLATE_FIELDS, workload_peers

__all__ = ["ClassKind", "PeerClass", "class_of", "peer_classes"]


class ClassKind(enum.Enum):
    """The kinds of row in the access table, in the order they are listed."""

    SPIFFE_ID = "spiffe-id"
    SERVICE_ACCOUNT = "service-account"
    SERVICE_ACCOUNTS = "service-accounts"
    SPIFFE_PREFIX = "spiffe-prefix"
    NAMESPACE = "namespace"
    SPIFFE_PATTERN = "spiffe-pattern"
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
    ClassKind.NAMESPACE: "any other peer of namespace {name}",
    ClassKind.SPIFFE_PATTERN: "{name}",
    ClassKind.TRUST_DOMAIN: "any other authenticated peer of {name}",
    ClassKind.OTHER_TRUST_DOMAIN: "an authenticated peer of any other trust domain",
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
    keys: frozenset[str]  # every key the rules name, and the local domain's (the defaults ask it)
    namespaces: tuple[str, ...]  # every namespace named or known, the target's first
    fresh: str  # a path segment (and namespace) no rule names
    fresh_domain: TrustDomain  # a trust domain no rule names

    def signature(self, peer: SpiffeId | None) -> frozenset[str] | None:
        if peer is None:
            return None
        exact, prefixes = self.index.peer_keys(peer)
        return frozenset(key for key in (*exact, *prefixes) if key in self.keys)

    def row(self, kind: ClassKind, name: str, peer: SpiffeId | None) -> PeerClass:
        return PeerClass(kind, name, peer, self.signature(peer))

    def local_peer(self, namespace: str, account: str) -> SpiffeId:
        """The ID the workload ID template gives a pod of ``namespace`` running as ``account``."""
        fields = dict.fromkeys(TEMPLATE_FIELDS, self.fresh)
        fields.update(namespace=namespace, service_account=account)
        path = self.index.workload_ids.template.format(**fields)
        return SpiffeId.parse(f"spiffe://{self.index.trust_domain.name}/{path}")

    def fits_template(self, peer: SpiffeId) -> bool:
        if peer.trust_domain != self.index.trust_domain or not peer.path:
            return False
        return self.index.workload_ids.place_of(peer.path) is not None


def _exact_ids(context: _Context) -> Iterable[PeerClass]:
    for source in context.sources:
        if isinstance(source, SpiffeSource) and not source.prefix:
            yield context.row(ClassKind.SPIFFE_ID, str(source.spiffe_id), source.spiffe_id)


def _service_accounts(context: _Context) -> Iterable[PeerClass]:
    for source in context.sources:
        if isinstance(source, ServiceAccountSource):
            named = context.fresh if source.name == "*" else source.name
            peer = context.local_peer(source.namespace, named)
            kind = ClassKind.SERVICE_ACCOUNTS if source.name == "*" else ClassKind.SERVICE_ACCOUNT
            yield context.row(kind, f"{source.namespace}/{source.name}", peer)


def _prefixes(context: _Context) -> Iterable[PeerClass]:
    for source in context.sources:
        if isinstance(source, SpiffeSource) and source.prefix:
            # An ID below the prefix that fits no template: the peers that do are namespaces' rows.
            peer = SpiffeId.parse(f"{source.spiffe_id}/{context.fresh}")
            while context.fits_template(peer):
                peer = SpiffeId.parse(f"{peer}/{context.fresh}")
            yield context.row(ClassKind.SPIFFE_PREFIX, f"{source.spiffe_id}/*", peer)


def _namespaces(context: _Context) -> Iterable[PeerClass]:
    """Peers whose ID fits the workload ID template (:mod:`.workload_peers`); only those not already listed."""
    local = context.index.trust_domain
    paths = [
        s.spiffe_id.path.split("/")[1:]
        for s in context.sources
        if isinstance(s, SpiffeSource) and s.spiffe_id.trust_domain == local
    ]
    segments = sorted({segment for path in paths for segment in path})
    accounts = [s.name for s in context.sources if isinstance(s, ServiceAccountSource)]
    found = workload_peers(
        context.index.workload_ids,
        local,
        anchors=paths,
        namespaces=list(dict.fromkeys((*context.namespaces, *segments))),
        accounts=list(dict.fromkeys((*accounts, *segments))),
        fresh=context.fresh,
    )
    for namespace, peer in found:
        name = "(any namespace no rule names)" if namespace == context.fresh else namespace
        if peer != context.local_peer(namespace, context.fresh):
            name += f", as {peer}"
        yield context.row(ClassKind.NAMESPACE, name, peer)


def _patterns(context: _Context) -> Iterable[PeerClass]:
    """Peers matching each SPIFFE pattern (:mod:`.pattern_peers`); only those not already listed."""
    local = context.index.trust_domain.name
    named = [local, *context.namespaces, *segments_named(context.sources)]
    for source in context.sources:
        if isinstance(source, SpiffePatternSource):
            for peer in pattern_peers(source, fresh=context.fresh, named=named):
                yield context.row(ClassKind.SPIFFE_PATTERN, f"{source.pattern}, as {peer}", peer)


def _trust_domains(context: _Context) -> Iterable[PeerClass]:
    domains = [context.index.trust_domain]
    for source in context.sources:
        named: tuple[str, ...] = ()
        if isinstance(source, SpiffeSource):
            named = (source.spiffe_id.trust_domain.name,)
        elif isinstance(source, AuthenticatedSource) and source.trust_domains is not None:
            named = tuple(sorted(source.trust_domains))
        for domain in map(TrustDomain, named):
            if domain not in domains:
                domains.append(domain)
    for domain in domains:
        peer = SpiffeId.parse(f"spiffe://{domain.name}/{context.fresh}")
        while context.fits_template(peer):  # a local peer that fits is a namespace's row
            peer = SpiffeId.parse(f"{peer}/{context.fresh}")
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
    _namespaces,
    _patterns,
    _trust_domains,
    _other_domains,
    _no_svid,
)
# Kinds listed only when they add a class no earlier row holds (they exist to make the cover complete).
_ONLY_NEW = frozenset((ClassKind.NAMESPACE, ClassKind.SPIFFE_PATTERN))


def peer_classes(
    index: PolicyIndex, rules: Sequence[Rule], namespace: str, *, known: Iterable[str] = ()
) -> tuple[PeerClass, ...]:
    """The rows of the access table for ``rules`` (every rule that can apply to a target in ``namespace``),
    without repeats; ``known`` are the namespaces whose labels the index holds."""
    sources: list[Source] = []
    for rule in rules:
        # AllOf members and notSources name keys like any source (the index checks them by key too).
        for source in (*(rule.sources or ()), *rule.not_sources):
            members = source.members if isinstance(source, AllOfSource) else (source,)
            sources.extend(member for member in members if member not in sources)
    local_key = index.source_keys(AuthenticatedSource(frozenset({index.trust_domain.name})), "")
    namespaces = [namespace]
    for name in (*known, *namespaces_named(sources, index.trust_domain)):
        if name not in namespaces:
            namespaces.append(name)
    context = _Context(
        index,
        tuple(sources),
        frozenset((*local_key, *(key for s in sources for key in index.source_keys(s, namespace)))),
        tuple(namespaces),
        fresh_segment(sources, namespaces),
        fresh_domain(sources),
    )
    listed: list[PeerClass] = []
    for kind in _KINDS:
        listed.extend(row for row in kind(context) if row not in listed)
    # A namespace's row only when no other row (of another kind, or an earlier namespace) holds its class.
    rows: list[PeerClass] = []
    for row in listed:
        if row.kind in _ONLY_NEW and any(
            other.signature == row.signature
            for other in listed
            if other.kind not in _ONLY_NEW or other in rows
        ):
            continue
        rows.append(row)
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
