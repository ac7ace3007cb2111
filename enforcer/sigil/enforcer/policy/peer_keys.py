"""The keys under which a target's rules are filed and a peer's are looked up: one per class of peer.

:class:`~sigil.enforcer.policy.table.Table` files each rule under the keys its sources name, and a peer is
looked up under every key it belongs to, so that matching a peer is a handful of dict lookups instead of a test
of every source. A peer's keys: its exact ID; when it is a local ID that fits the workload ID template
(:mod:`.peer_ids`), its namespace, its ServiceAccount and each namespace selector its namespace matches; "any
authenticated peer", in general and of its trust domain; "any peer"; each ``SPIFFEPattern`` its ID matches;
and each ``/*`` prefix above its ID.
Every key but the exact ID and the prefixes starts with a NUL, which no SPIFFE ID holds, so none collides with one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from sigil.ca.spiffe_id import SpiffeId, TrustDomain
from sigil.enforcer.policy.decision import NAMESPACE_NAME_LABEL
from sigil.enforcer.policy.identity_sources import (
    AllOfSource,
    AuthenticatedSource,
    NamespacesSource,
    SameNamespaceSource,
    ServiceAccountSource,
    Source,
    SpiffePatternSource,
)
from sigil.enforcer.policy.model import Policy
from sigil.enforcer.policy.peer_ids import WorkloadIdPattern
from sigil.enforcer.policy.selector import LabelSelector
from sigil.enforcer.policy.table import ANY_PEER

__all__ = ["NO_SVID", "PeerKeyer", "PeerKeys"]

# A peer's keys: exact ones and the /* prefixes above its ID.
PeerKeys = tuple[tuple[str, ...], tuple[str, ...]]
#: The keys of a peer without a valid SVID: only rules without sources name it.
NO_SVID: PeerKeys = ((ANY_PEER,), ())
_AUTHENTICATED = "\0authn"


class PeerKeyer:
    """The key scheme of one policy set: which keys a source names, and which a peer holds."""

    def __init__(
        self,
        policies: tuple[Policy, ...],
        *,
        trust_domain: TrustDomain,
        workload_ids: WorkloadIdPattern,
        known_namespaces: Mapping[str, object],
        namespace_labels: Callable[[str], Mapping[str, str]],
    ) -> None:
        self.trust_domain = trust_domain
        self.workload_ids = workload_ids
        self._known = known_namespaces
        self._labels = namespace_labels
        # Every namespace selector of a Namespaces source and every SPIFFE pattern, numbered once.
        self._selectors: dict[LabelSelector, int] = {}
        self._patterns: dict[SpiffePatternSource, int] = {}
        for policy in policies:
            for rule in policy.rules:
                for source in _flattened((*(rule.sources or ()), *rule.not_sources)):
                    if isinstance(source, NamespacesSource):
                        self._selectors.setdefault(source.selector, len(self._selectors))
                    elif isinstance(source, SpiffePatternSource):
                        self._patterns.setdefault(source, len(self._patterns))

    def source_keys(self, source: Source, namespace: str) -> tuple[str, ...]:
        """The peer keys a source names, for a target in ``namespace``; for an AllOf, those of its first
        member (every peer it matches holds one; the filing checks the other members)."""
        if isinstance(source, AllOfSource):
            return self.source_keys(source.members[0], namespace)
        if isinstance(source, SpiffePatternSource):
            return (_pattern(self._patterns[source]),)
        if isinstance(source, ServiceAccountSource):
            # ServiceAccount sources name the local trust domain only (GEP-3779); other domains need SPIFFE.
            if source.name == "*":
                return (_service_accounts_of(source.namespace),)
            return (_service_account(source.namespace, source.name),)
        if isinstance(source, AuthenticatedSource):
            if source.trust_domains is None:
                return (_AUTHENTICATED,)
            return tuple(f"{_AUTHENTICATED}/{name}" for name in sorted(source.trust_domains))
        if isinstance(source, SameNamespaceSource):
            return (_service_accounts_of(namespace),)
        if isinstance(source, NamespacesSource):
            return (_namespaces_matching(self._selectors[source.selector]),)
        return (f"{source.spiffe_id}/*" if source.prefix else str(source.spiffe_id),)

    def peer_keys(self, peer: SpiffeId) -> PeerKeys:
        """The keys under which a rule naming ``peer`` is filed: exact ones, then ``/*`` prefixes."""
        base = f"spiffe://{peer.trust_domain.name}"
        segments = peer.path.split("/")[1:] if peer.path else []
        exact = [base + peer.path] if segments else []
        place = (
            self.workload_ids.place_of(peer.path)
            if segments and peer.trust_domain == self.trust_domain
            else None
        )
        if place is not None:
            exact.append(_service_accounts_of(place.namespace))
            if place.service_account is not None:
                exact.append(_service_account(place.namespace, place.service_account))
            exact.extend(
                _namespaces_matching(number)
                for selector, number in self._selectors.items()
                if self._namespace_selected(selector, place.namespace)
            )
        # Every peer that reached a decision with an ID had its SVID verified against its domain's bundle.
        exact.extend((_AUTHENTICATED, f"{_AUTHENTICATED}/{peer.trust_domain.name}", ANY_PEER))
        if self._patterns:
            whole = base + peer.path
            exact.extend(
                _pattern(number)
                for pattern, number in self._patterns.items()
                if pattern.matches(whole)
            )
        prefixes = []
        prefix = base
        for segment in segments:
            prefixes.append(prefix + "/*")
            prefix = f"{prefix}/{segment}"
        return tuple(exact), tuple(prefixes)

    def _namespace_selected(self, selector: LabelSelector, namespace: str) -> bool:
        """Does ``selector`` select the peer's namespace? Without its labels, only when it asks about nothing
        but the name (every namespace carries ``kubernetes.io/metadata.name``): an unknown label never
        matches, even under NotIn or DoesNotExist, so a namespace this enforcer knows nothing about is never
        let in by what it does not know."""
        if namespace not in self._known:
            keys = {key for key, _ in selector.match_labels}
            keys |= {requirement.key for requirement in selector.match_expressions}
            if keys - {NAMESPACE_NAME_LABEL}:
                return False
        return selector.matches(self._labels(namespace))


def _service_accounts_of(namespace: str) -> str:
    return f"\0sa/{namespace}"


def _service_account(namespace: str, name: str) -> str:
    return f"\0sa/{namespace}/{name}"


def _namespaces_matching(number: int) -> str:
    return f"\0nsel/{number}"


def _pattern(number: int) -> str:
    return f"\0pat/{number}"


def _flattened(sources: tuple[Source, ...]) -> list[Source]:
    """``sources`` with each AllOf replaced by its members."""
    flat: list[Source] = []
    for source in sources:
        flat.extend(source.members if isinstance(source, AllOfSource) else (source,))
    return flat
