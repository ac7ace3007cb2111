"""Polling other trust domains' bundle endpoints, so agents can verify SVIDs from federated trust domains.

SPIFFE Federation (reference/spiffe.md §3): the client is configured with the URL, the profile and the trust domain
(never inferred from the URL); it polls at the bundle's ``spiffe_refresh_hint`` and, on failure, tries again at the
next interval rather than hammering the endpoint. ``https_web`` checks the server against Web PKI roots (the system's,
or a configured file) with host name validation; ``https_spiffe`` checks it against the peer trust domain's bundle
(the bootstrap bundle first, then the latest fetched, which lets the peer rotate its roots) and its SPIFFE ID.

What a peer sends is never trusted to keep the poller alive: an empty body, a document that is not a SPIFFE bundle,
a key that does not load or a bundle with no keys at all is a failed poll. The last good bundle stays in force, the
failure is logged and counted, and the next attempt comes after the kit's jittered backoff, which starts at about
``min_interval`` and doubles up to the polling interval (so the federated peers of a fleet of replicas that lost
a peer together do not come back to it in lockstep).

Redirects: the Federation standard (SPIFFE_Federation.md, "Serving and consuming bundle endpoints") asks clients to
follow them as temporary. Sigil follows at most ``_MAX_REDIRECTS``, each to an ``https`` URL and checked with the
same TLS rules as the configured endpoint (Web PKI for ``https_web``; the peer's bundle and endpoint SPIFFE ID for
``https_spiffe``), and polls the configured URL again next time. A redirect to ``http`` or any other scheme is a
failed poll: it would hand the peer's trust anchors to whoever sits on the network path.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl

import aiohttp
import structlog
from yarl import URL

from sigil.ca.bundle import TrustBundle
from sigil.ca.errors import BundleError
from sigil.issuer.bundles.feed import BundleFeed
from sigil.issuer.errors import FederationError
from sigil.issuer.metrics import IssuerMetrics
from sigil.issuer.settings.sections import FederationPeer
from sigil.issuer.tls import client_context
from sigil.kit.backoff import Backoff

__all__ = ["FederationPoller"]

_log = structlog.get_logger(__name__)
#: Until a first fetch succeeds there is no hint; SPIRE's default refresh hint is five minutes.
_DEFAULT_INTERVAL = 300.0
_MAX_REDIRECTS = 3
#: The longest backoff, should a peer hint a refresh of over a day.
_MAX_WAIT = 86_400.0
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
#: A bundle of a hundred RSA-4096 authorities is well under this; a peer sending more is refused, not buffered.
_MAX_BUNDLE_BYTES = 1024 * 1024


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
        # The ceiling here is the poll interval of the moment (the peer's refresh hint), applied per failure.
        self._backoff = Backoff(first=min_interval, longest=max(min_interval, _MAX_WAIT))
        self._bundle: TrustBundle | None = None
        self._wake = asyncio.Event()
        self.fetched = asyncio.Event()
        #: Set after every attempt, good or failed (tests wait on it instead of sleeping).
        self.attempted = asyncio.Event()
        self.fetches = 0
        #: Failed attempts since the last good one, and the wait before the next attempt, in seconds.
        self.failures = 0
        self.next_wait = _DEFAULT_INTERVAL

    def poll_now(self) -> None:
        """Cut the current wait short (an operator who knows the peer rotated; tests that must not sleep)."""
        self._wake.set()

    async def _context(self) -> ssl.SSLContext:
        """The TLS context of the next poll; what is wrong with a configured file is a failed poll, not a crash."""
        try:
            if self.peer.profile == "https_web":
                cafile = str(self.peer.ca_file) if self.peer.ca_file else None
                return await asyncio.to_thread(ssl.create_default_context, cafile=cafile)
            trust = self._bundle if self._bundle is not None else await self._bootstrap()
            return await asyncio.to_thread(
                functools.partial(client_context, trust, expect=self.peer.endpoint_spiffe_id)
            )
        except (OSError, ValueError) as err:
            # ssl.SSLError is an OSError: an unreadable or malformed CA file; ValueError: no usable certificate.
            raise FederationError(f"TLS context for {self.peer.url}: {err}") from err

    async def _bootstrap(self) -> TrustBundle:
        """The bootstrap bundle from its file, read again on every poll until a first fetch succeeds."""
        path = self.peer.bootstrap_bundle
        if path is None:
            raise FederationError("https_spiffe needs a bootstrap bundle")
        try:
            data = await asyncio.to_thread(path.read_bytes)
            trust = (
                TrustBundle.parse_pem(self.peer.trust_domain, data)
                if data.lstrip().startswith(b"-----")
                else TrustBundle.parse_jwks(self.peer.trust_domain, data)
            )
        except (OSError, BundleError) as err:
            raise FederationError(f"bootstrap bundle {path}: {err}") from err
        if not trust.x509_authorities:
            raise FederationError(
                f"bootstrap bundle {path}: no X.509 authority to check the endpoint with"
            )
        return trust

    async def _get(self, session: aiohttp.ClientSession, context: ssl.SSLContext) -> bytes:
        """The body at the configured URL, following at most a few redirects, each to https only."""
        url = URL(self.peer.url)
        for _ in range(_MAX_REDIRECTS + 1):
            # https_spiffe: the context checks the endpoint's SPIFFE ID inside the handshake, on every hop.
            async with session.get(url, ssl=context, allow_redirects=False) as reply:
                if reply.status in _REDIRECTS:
                    location = reply.headers.get("Location", "")
                    try:
                        url = reply.url.join(URL(location))
                    except ValueError as err:
                        raise FederationError(
                            f"HTTP {reply.status} to an unusable Location"
                        ) from err
                    if not location or url.scheme != "https" or not url.host:
                        shown = url.scheme or "(none)"
                        raise FederationError(
                            f"HTTP {reply.status} redirect to a {shown!r} URL refused: only https is followed"
                        )
                    continue
                if reply.status != 200:
                    raise FederationError(f"HTTP {reply.status}")
                if (reply.content_length or 0) > _MAX_BUNDLE_BYTES:
                    raise FederationError(f"the bundle is larger than {_MAX_BUNDLE_BYTES} bytes")
                data = bytearray()
                async for chunk in reply.content.iter_chunked(64 * 1024):
                    data += chunk
                    if len(data) > _MAX_BUNDLE_BYTES:
                        raise FederationError(
                            f"the bundle is larger than {_MAX_BUNDLE_BYTES} bytes"
                        )
                return bytes(data)
        raise FederationError(f"more than {_MAX_REDIRECTS} redirects")

    async def fetch(self, session: aiohttp.ClientSession) -> TrustBundle:
        """Fetch and parse the peer's bundle once; :class:`FederationError` says why a poll failed."""
        context = await self._context()
        try:
            data = await self._get(session, context)
        except (aiohttp.ClientError, TimeoutError, OSError) as err:
            raise FederationError(f"{type(err).__name__}: {err}") from err
        if not data.strip():
            raise FederationError("the endpoint sent an empty body")
        try:
            bundle = TrustBundle.parse_jwks(self.peer.trust_domain, data)
        except BundleError as err:
            raise FederationError(f"not a SPIFFE bundle: {err}") from err
        if not bundle.x509_authorities and not bundle.jwt_authorities:
            # Legal, but it would drop every authority of the peer at once; keep the last good bundle instead.
            raise FederationError("the bundle holds no authorities")
        return bundle

    async def run(self) -> None:
        """Poll forever (a background task the app owns and cancels)."""
        td = str(self.peer.trust_domain)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                # A peer's hint never makes the poller spin: no less than min_interval between good polls.
                hint = self._bundle.refresh_hint if self._bundle else _DEFAULT_INTERVAL
                interval = max(self._min_interval, hint)
                self._wake.clear()  # a wake-up during this fetch asks for another one after it
                try:
                    bundle = await self.fetch(session)
                except FederationError as err:
                    self.failures += 1
                    interval = min(interval, self._backoff.next_delay())
                    self._metrics.federation_fetches.labels(td, "failed").inc()
                    _log.warning(
                        "federation.fetch_failed",
                        trust_domain=td,
                        detail=str(err),
                        failures=self.failures,
                        retry_in=interval,
                        kept_sequence=self._bundle.sequence if self._bundle else None,
                    )
                else:
                    self.failures = 0
                    self._backoff.reset()
                    self._metrics.federation_fetches.labels(td, "ok").inc()
                    self._bundle = bundle
                    interval = max(self._min_interval, bundle.refresh_hint)
                    await self._feed.set_federated(self.peer.trust_domain, bundle)
                    self.fetched.set()
                self.fetches += 1
                self.next_wait = interval
                self.attempted.set()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.next_wait):
                        await self._wake.wait()
