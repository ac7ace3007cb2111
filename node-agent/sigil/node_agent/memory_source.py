"""An :class:`~sigil.node_agent.identity_source.IdentitySource` held in memory.

Entries map a set of selectors to an X509-SVID, as registration entries do (every selector must match); JWT-SVIDs
come from a minting function the owner supplies. Tests drive rotation and entitlement changes through it, and a
single-host demo can serve fixed SVIDs with it; the production source is the agent's SVID cache.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager

from sigil.ca.spiffe_id import SpiffeId
from sigil.node_agent.attestation.selectors import Selector, Selectors, WorkloadAttestation
from sigil.node_agent.errors import IdentityUnavailableError, NotEntitledError
from sigil.node_agent.identity_source import (
    ChangeFeed,
    TrustBundles,
    WorkloadJwtSvid,
    WorkloadX509Svid,
)

__all__ = ["InMemoryIdentitySource", "JwtMinter"]

JwtMinter = Callable[[SpiffeId, Sequence[str]], str]


def _no_jwt(spiffe_id: SpiffeId, audiences: Sequence[str]) -> str:
    raise IdentityUnavailableError("this identity source mints no JWT-SVIDs")


class InMemoryIdentitySource:
    """Entries (selectors -> X509-SVID) and bundles in memory; every change notifies the streams."""

    def __init__(self, bundles: TrustBundles, *, mint_jwt: JwtMinter = _no_jwt) -> None:
        self._bundles = bundles
        self._mint_jwt = mint_jwt
        self._entries: dict[SpiffeId, tuple[Selectors, WorkloadX509Svid]] = {}
        self._changes = ChangeFeed()

    @property
    def changes(self) -> ChangeFeed:
        """Notified after every mutation."""
        return self._changes

    def put(self, svid: WorkloadX509Svid, *, selectors: Iterable[Selector]) -> None:
        """Entitle callers showing all ``selectors`` to ``svid``, replacing any SVID of the same SPIFFE ID."""
        required = frozenset(selectors)
        if not required:
            raise ValueError("an entry needs at least one selector")
        self._entries[svid.spiffe_id] = (required, svid)
        self._changes.notify()

    def remove(self, spiffe_id: SpiffeId) -> None:
        """Withdraw the entry for ``spiffe_id``."""
        if self._entries.pop(spiffe_id, None) is not None:
            self._changes.notify()

    def set_bundles(self, bundles: TrustBundles) -> None:
        """Replace the bundles (a rotation of authorities, a federated bundle refreshed)."""
        self._bundles = bundles
        self._changes.notify()

    def _matching(self, workload: WorkloadAttestation) -> list[WorkloadX509Svid]:
        return [svid for required, svid in self._entries.values() if workload.matches(required)]

    async def x509_svids(self, workload: WorkloadAttestation) -> Sequence[WorkloadX509Svid]:
        """The SVIDs of every entry the caller matches, in insertion order."""
        return self._matching(workload)

    async def entitlements(self, workload: WorkloadAttestation) -> Sequence[SpiffeId]:
        """The SPIFFE IDs of every entry the caller matches."""
        return [svid.spiffe_id for svid in self._matching(workload)]

    async def jwt_svid(
        self, workload: WorkloadAttestation, spiffe_id: SpiffeId, *, audiences: Sequence[str]
    ) -> WorkloadJwtSvid:
        """A JWT-SVID from the minting function, for an ID the caller holds."""
        held = {svid.spiffe_id: svid for svid in self._matching(workload)}
        if spiffe_id not in held:
            raise NotEntitledError(str(spiffe_id))
        token = self._mint_jwt(spiffe_id, audiences)
        return WorkloadJwtSvid(spiffe_id=spiffe_id, token=token, hint=held[spiffe_id].hint)

    def bundles(self) -> TrustBundles:
        """The current bundles."""
        return self._bundles

    @asynccontextmanager
    async def streaming(self, workload: WorkloadAttestation) -> AsyncIterator[None]:
        """Nothing to keep fresh here: entries live until removed."""
        yield
