"""What agents long-poll for: the own bundle, federated bundles and tainted authorities, under one revision.

A rotation must reach every waiting agent within a second (issue 3), so a waiter is woken by the change itself, not
by a timer: the CA's own ``wait_for_bundle`` for sequence changes in this process (``prepare``, ``activate``,
the rotator's refresh that sees another replica's change) and :meth:`BundleFeed.publish` for federated bundles and
taints. The revision is a digest of the content, so every replica computes the same one for the same state and an
agent may move between replicas without a spurious wake-up.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from sigil.ca.bundle import TrustBundle
from sigil.ca.service import CertificateAuthority
from sigil.ca.spiffe_id import TrustDomain
from sigil.issuer.agentapi import contract
from sigil.kit import Revisioned

__all__ = ["BundleFeed"]


class BundleFeed:
    """The current bundle response, as a revisioned value that agents long-poll past."""

    def __init__(self, ca: CertificateAuthority) -> None:
        self._ca = ca
        self._federated: dict[TrustDomain, TrustBundle] = {}
        self._feed: Revisioned[contract.BundleResponse] | None = None
        self._draining = False

    @property
    def federated(self) -> Mapping[TrustDomain, TrustBundle]:
        return dict(self._federated)

    def _revisioned(self) -> Revisioned[contract.BundleResponse]:
        if self._feed is None:  # built on first use: the CA's bundle is not there before it opens
            response = self._build()
            self._feed = Revisioned(response, response["revision"])
        return self._feed

    def current(self) -> contract.BundleResponse:
        return self._revisioned().value

    def _build(self) -> contract.BundleResponse:
        bundle = self._ca.bundle()
        tainted = sorted(self._ca.tainted_authority_ids())
        federated = {str(td): b.to_jwks() for td, b in sorted(self._federated.items())}
        digest = hashlib.sha256(bundle.to_json())
        digest.update("\n".join(tainted).encode())
        for td, b in sorted(self._federated.items()):
            digest.update(str(td).encode() + b.to_json())
        return {
            "trust_domain": str(bundle.trust_domain),
            "sequence": bundle.sequence,
            "revision": digest.hexdigest()[:32],
            "bundle": bundle.to_jwks(),
            "federated": federated,
            "tainted_authority_ids": tainted,
        }

    async def publish(self) -> None:
        """Recompute from the CA and federated bundles; wake every waiter if anything changed."""
        response = self._build()
        await self._revisioned().publish(response, response["revision"])

    async def drain(self) -> None:
        """Answer every waiter now with what it would get anyway, so a draining server is not held up by them."""
        self._draining = True
        if self._feed is not None:
            await self._feed.release()

    async def set_federated(self, trust_domain: TrustDomain, bundle: TrustBundle) -> None:
        self._federated[trust_domain] = bundle
        await self.publish()

    async def wait(
        self, *, after_sequence: int | None, after_revision: str | None, longest: float
    ) -> contract.BundleResponse:
        """The response once it differs from what the caller has, or the current one after ``longest`` seconds."""
        feed = self._revisioned()
        if self._draining or (after_sequence is None and after_revision is None):
            return feed.value

        def newer_sequence() -> bool:
            return after_sequence is not None and feed.value["sequence"] > after_sequence

        return await feed.wait_past(after_revision, longest=longest, also=newer_sequence)

    async def follow_ca(self) -> None:
        """Publish on every CA bundle sequence change, forever (a background task owned by the app)."""
        while True:
            sequence = self._ca.bundle().sequence
            await self._ca.wait_for_bundle(sequence)
            await self.publish()
