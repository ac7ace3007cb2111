"""Polling other trust domains' bundle endpoints, so agents can verify SVIDs from federated trust domains.

SPIFFE Federation (reference/spiffe.md §3): the client is configured with the URL, the profile and the trust domain
(never inferred from the URL); it polls at the bundle's ``spiffe_refresh_hint`` and, on failure, tries again at the
next interval rather than hammering the endpoint. ``https_web`` checks the server against Web PKI roots (the system's,
or a configured file) with host name validation; ``https_spiffe`` checks it against the peer trust domain's bundle
(the bootstrap bundle first, then the latest fetched, which lets the peer rotate its roots) and its SPIFFE ID.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl

import aiohttp
import structlog

from sigil.ca.bundle import TrustBundle
from sigil.ca.errors import BundleError
from sigil.issuer.bundlefeed import BundleFeed
from sigil.issuer.metrics import IssuerMetrics
from sigil.issuer.server_settings import FederationPeer
from sigil.issuer.tls import client_context

__all__ = ["FederationPoller"]

log = structlog.get_logger(__name__)
#: Until a first fetch succeeds there is no hint; SPIRE's default refresh hint is five minutes.
_DEFAULT_INTERVAL = 300.0


class FederationError(Exception):
    """One failed poll; logged and retried at the next interval, never raised past the poller."""


class FederationPoller:
    """Polls one peer's bundle endpoint and hands what it fetches to the bundle feed."""

    def __init__(
        self,
        peer: FederationPeer,
        feed: BundleFeed,
        metrics: IssuerMetrics,
        *,
        min_interval: float = 1.0,
    ) -> None:
        self.peer = peer
        self._feed = feed
        self._metrics = metrics
        self._min_interval = min_interval
        self._bundle: TrustBundle | None = None
        self._wake = asyncio.Event()
        self.fetched = asyncio.Event()
        self.fetches = 0

    def poll_now(self) -> None:
        """Cut the current wait short (an operator who knows the peer rotated; tests that must not sleep)."""
        self._wake.set()

    async def _context(self) -> ssl.SSLContext:
        if self.peer.profile == "https_web":
            cafile = str(self.peer.ca_file) if self.peer.ca_file else None
            return await asyncio.to_thread(ssl.create_default_context, cafile=cafile)
        trust = self._bundle
        if trust is None:
            if self.peer.bootstrap_bundle is None:
                raise FederationError("https_spiffe needs a bootstrap bundle")
            data = await asyncio.to_thread(self.peer.bootstrap_bundle.read_bytes)
            trust = (
                TrustBundle.parse_pem(self.peer.trust_domain, data)
                if data.lstrip().startswith(b"-----")
                else TrustBundle.parse_jwks(self.peer.trust_domain, data)
            )
        return await asyncio.to_thread(
            functools.partial(client_context, trust, expect=self.peer.endpoint_spiffe_id)
        )

    async def fetch(self, session: aiohttp.ClientSession) -> TrustBundle:
        """Fetch and parse the peer's bundle once."""
        context = await self._context()
        try:
            # https_spiffe: the context checks the endpoint's SPIFFE ID inside the handshake.
            async with session.get(self.peer.url, ssl=context, allow_redirects=True) as reply:
                if reply.status != 200:
                    raise FederationError(f"HTTP {reply.status}")
                data = await reply.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as err:
            raise FederationError(f"{type(err).__name__}: {err}") from err
        try:
            return TrustBundle.parse_jwks(self.peer.trust_domain, data)
        except BundleError as err:
            raise FederationError(f"not a SPIFFE bundle: {err}") from err

    async def run(self) -> None:
        """Poll forever (a background task the app owns and cancels)."""
        td = str(self.peer.trust_domain)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                interval = self._bundle.refresh_hint if self._bundle else _DEFAULT_INTERVAL
                self._wake.clear()  # a wake-up during this fetch asks for another one after it
                try:
                    bundle = await self.fetch(session)
                except FederationError as err:
                    self._metrics.federation_fetches.labels(td, "failed").inc()
                    log.warning("federation.fetch_failed", trust_domain=td, detail=str(err))
                else:
                    self._metrics.federation_fetches.labels(td, "ok").inc()
                    self._bundle = bundle
                    interval = bundle.refresh_hint
                    await self._feed.set_federated(self.peer.trust_domain, bundle)
                    self.fetched.set()
                self.fetches += 1
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(self._min_interval, interval)):
                        await self._wake.wait()
