"""What the Workload API serves, and the interface of whatever holds it.

The Workload API does not mint or cache anything itself: it asks an :class:`IdentitySource` (the agent's SVID
cache in production, :class:`~sigil.node_agent.memory_source.InMemoryIdentitySource` in tests) what an attested
caller may hold, and re-asks whenever the source's :class:`ChangeFeed` moves. Keeping the contract this small
lets the Workload API's exact SPIFFE semantics live in one module and be tested without an issuer.

Bundles travel parsed, as the issuer client returned them; only the Workload API turns them into its wire forms
(concatenated DER for certificates, a JWKS document for JWT authorities, which py-spiffe and go-spiffe parse),
through the properties here, which a bundle set computes once however many streams send it. An SVID's chain is
the exception, kept as DER (see :class:`WorkloadX509Svid`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from functools import cached_property
from types import MappingProxyType
from typing import Protocol

from sigil.ca.bundle import TrustBundle
from sigil.ca.keys import PublicKey
from sigil.ca.spiffe_id import SpiffeId, TrustDomain
from sigil.node_agent.attestation.selectors import WorkloadAttestation

__all__ = ["ChangeFeed", "IdentitySource", "TrustBundles", "WorkloadJwtSvid", "WorkloadX509Svid"]

# The standard asks that a hint be at most 1024 bytes (SPIFFE Workload API, X509SVID.hint).
_MAX_HINT_BYTES = 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkloadX509Svid:
    """An X509-SVID as the Workload API sends it.

    ``cert_chain`` is DER, leaf first, concatenated; ``private_key`` is PKCS#8 DER; ``federates_with`` names the
    foreign trust domains whose bundles go along with it (the registration entry's ``federates_with``).

    Unlike bundles, the chain is kept in its wire form, serialised once when the SVID is adopted: the cache holds
    one per workload for the SVID's whole life, and certificate objects instead of DER cost 22% more memory per
    cached SVID (``bench/agent.py --rss 10000``: 3.93 against 3.22 MB per 1,000).
    """

    spiffe_id: SpiffeId
    cert_chain: bytes
    private_key: bytes
    hint: str = ""
    federates_with: frozenset[TrustDomain] = frozenset()

    def __post_init__(self) -> None:
        if self.spiffe_id.is_root:
            raise ValueError("an X509-SVID names a workload: its SPIFFE ID needs a path")
        if not self.cert_chain or not self.private_key:
            raise ValueError("an X509-SVID needs its certificate chain and its private key")
        if len(self.hint.encode()) > _MAX_HINT_BYTES:
            raise ValueError(f"a hint is at most {_MAX_HINT_BYTES} bytes")

    def __repr__(self) -> str:
        # Never print key material, even by accident in a log line.
        return f"WorkloadX509Svid(spiffe_id={str(self.spiffe_id)!r}, hint={self.hint!r})"


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkloadJwtSvid:
    """A signed JWT-SVID (JWS compact serialization) for one SPIFFE ID."""

    spiffe_id: SpiffeId
    token: str
    hint: str = ""

    def __repr__(self) -> str:
        return f"WorkloadJwtSvid(spiffe_id={str(self.spiffe_id)!r}, hint={self.hint!r})"


# Not slotted: the wire forms below are cached on the instance, which is replaced (never changed) on every update.
@dataclass(frozen=True, kw_only=True)
class TrustBundles:
    """The agent's own trust domain and the bundles it knows, its own and federated ones, parsed.

    ``bundles`` must hold the own trust domain, which every X509-SVID response and bundle response includes.
    """

    trust_domain: TrustDomain
    bundles: Mapping[TrustDomain, TrustBundle]

    def __post_init__(self) -> None:
        if self.trust_domain not in self.bundles:
            raise ValueError(f"the bundles must include the own trust domain {self.trust_domain}")
        object.__setattr__(self, "bundles", MappingProxyType(dict(self.bundles)))

    @cached_property
    def x509_authorities(self) -> Mapping[TrustDomain, bytes]:
        """Each trust domain's CA certificates as the Workload API carries them: concatenated DER."""
        return MappingProxyType({td: b.x509_der() for td, b in self.bundles.items()})

    @cached_property
    def jwt_authorities(self) -> Mapping[TrustDomain, bytes]:
        """Each trust domain's JWT-SVID keys as FetchJWTBundles carries them: a JWKS document, keys with ``kid``."""
        return MappingProxyType({td: b.jwt_jwks_json() for td, b in self.bundles.items()})

    @cached_property
    def jwt_keys(self) -> Mapping[TrustDomain, Mapping[str, PublicKey]]:
        """Each trust domain's JWT-SVID keys by ``kid``, as ValidateJWTSVID checks a token against them."""
        return MappingProxyType({td: b.jwt_authorities for td, b in self.bundles.items()})


class ChangeFeed:
    """A revision counter that Workload API streams wait on.

    The source calls :meth:`notify` after any change a workload could see (an SVID rotated, a bundle changed,
    an identity gained or lost); every open stream then rebuilds its response and sends it unless it is
    byte-for-byte what it sent last. Must be used from the event loop's thread.
    """

    def __init__(self) -> None:
        self._revision = 0
        self._changed = asyncio.Event()

    @property
    def revision(self) -> int:
        """Increases by one on every :meth:`notify`."""
        return self._revision

    def notify(self) -> None:
        """Wake every waiter: something changed."""
        self._revision += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait_after(self, revision: int) -> int:
        """Return the current revision once it is past ``revision`` (at once if it already is)."""
        while self._revision <= revision:
            await self._changed.wait()
        return self._revision


class IdentitySource(Protocol):
    """What the Workload API asks for; the agent runtime provides it (SVID cache + issuer client).

    Methods raise ``IdentityUnavailableError`` when the agent cannot answer yet (it becomes ``Unavailable`` and
    clients retry); an empty answer means the caller is entitled to nothing (``PermissionDenied``).
    """

    @property
    def changes(self) -> ChangeFeed:
        """Notified on every change to SVIDs, entitlements or bundles."""
        ...

    async def x509_svids(self, workload: WorkloadAttestation) -> Sequence[WorkloadX509Svid]:
        """The caller's current X509-SVIDs, default first; never an expired one."""
        ...

    async def entitlements(self, workload: WorkloadAttestation) -> Sequence[SpiffeId]:
        """The SPIFFE IDs the caller may hold, in the order ``x509_svids`` would return them."""
        ...

    async def jwt_svid(
        self, workload: WorkloadAttestation, spiffe_id: SpiffeId, *, audiences: Sequence[str]
    ) -> WorkloadJwtSvid:
        """A JWT-SVID for ``spiffe_id`` (one of the caller's entitlements) with these audiences."""
        ...

    def bundles(self) -> TrustBundles:
        """The current bundles: own trust domain and federated ones."""
        ...

    def streaming(self, workload: WorkloadAttestation) -> AbstractAsyncContextManager[None]:
        """Held while a ``FetchX509SVID`` stream of ``workload`` is open.

        Nothing else tells the source that a quiet stream is still there; the SVID cache keeps rotating the
        SVIDs of a workload with an open stream and drops those of a workload nobody has asked for a while.
        """
        ...
