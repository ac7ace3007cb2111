"""The Workload API as a workload's identity source: py-spiffe's ``X509Source`` followed onto the event loop.

The Workload API (SPIFFE_Workload_Endpoint.md) pushes a full new state whenever the agent rotates the SVID or a
bundle changes; py-spiffe's :class:`spiffe.X509Source` follows that stream on a thread of its own and calls back
there. :class:`WorkloadApiSource` turns each update into an immutable :class:`~sigil.enforcer.sources.X509Material`
and hands it to subscribers on the event loop's thread (see :mod:`sigil.enforcer.sources`). A module of its own
because py-spiffe brings grpcio, which nothing else that needs identity-source types should have to import.
"""

from __future__ import annotations

import asyncio
import contextlib

from spiffe import WorkloadApiClient, X509Source
from spiffe.errors import ArgumentError, PySpiffeError
from spiffe.workloadapi.x509_context import X509Context

from sigil.ca.bundle import TrustBundle
from sigil.ca.errors import BundleError, CaError
from sigil.ca.spiffe_id import SpiffeId, TrustDomain
from sigil.enforcer.bundles import BundleSet
from sigil.enforcer.errors import IdentitySourceError
from sigil.enforcer.sources import Publisher, X509Material

__all__ = ["WorkloadApiSource"]


class WorkloadApiSource(Publisher):
    """The SVID and bundles the Workload API serves, following rotation; open with :meth:`open`."""

    def __init__(
        self,
        client: WorkloadApiClient,
        source: X509Source,
        material: X509Material,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        super().__init__(material)
        self._client = client
        self._source = source
        self._loop = loop
        self._closed = False
        source.subscribe_for_updates(self._on_update)
        # An update that landed between the first fetch and subscribing would otherwise be missed.
        self._on_update()

    @classmethod
    async def open(
        cls, socket_path: str | None = None, *, wait_seconds: float = 10.0
    ) -> WorkloadApiSource:
        """Connect (``unix:///path``; None: ``SPIFFE_ENDPOINT_SOCKET``); wait up to ``wait_seconds`` for an SVID.

        The wait is py-spiffe's own: its thread cannot be cancelled, so an ``asyncio.timeout`` would leave it behind.
        """
        loop = asyncio.get_running_loop()
        where = socket_path or "SPIFFE_ENDPOINT_SOCKET"

        def connect() -> tuple[WorkloadApiClient, X509Source, X509Material]:
            # X509Source blocks until the first response: a worker thread, never the loop.
            client = WorkloadApiClient(socket_path)
            try:
                source = X509Source(client, timeout_in_seconds=wait_seconds)
            except PySpiffeError:
                client.close()
                raise
            try:
                return client, source, _material(source.get_x509_context())
            except (IdentitySourceError, PySpiffeError):
                source.close()
                client.close()
                raise

        try:
            client, source, material = await asyncio.to_thread(connect)
        except ArgumentError as err:
            raise IdentitySourceError(where, f"not a Workload API address: {err}") from err
        except PySpiffeError as err:
            raise IdentitySourceError(where, str(err)) from err
        return cls(client, source, material, loop)

    async def aclose(self) -> None:
        """Stop following the Workload API and close its connection."""
        if self._closed:
            return
        self._closed = True
        self._source.unsubscribe_for_updates(self._on_update)
        await asyncio.to_thread(self._shutdown)

    def _shutdown(self) -> None:
        self._source.close()
        self._client.close()  # ours: a source handed a client leaves closing it to the caller

    async def __aenter__(self) -> WorkloadApiSource:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _on_update(self) -> None:
        """On py-spiffe's thread: convert there, publish on the loop."""
        if self._closed:
            return
        try:
            material = _material(self._source.get_x509_context())
        except (IdentitySourceError, PySpiffeError):
            return  # keep what is in force; the next push will try again
        with contextlib.suppress(RuntimeError):  # the loop is closing: nobody is left to tell
            self._loop.call_soon_threadsafe(self._publish_open, material)

    def _publish_open(self, material: X509Material) -> None:
        if not self._closed:
            self._publish(material)


def _material(context: X509Context) -> X509Material:
    svid = context.default_svid
    try:
        spiffe_id = SpiffeId.parse(str(svid.spiffe_id))
        bundles = BundleSet.of(
            *(
                TrustBundle(TrustDomain(b.trust_domain.name), tuple(b.x509_authorities))
                for b in context.x509_bundle_set.bundles
            )
        )
    except (CaError, BundleError, ValueError) as err:
        raise IdentitySourceError("Workload API", f"unusable X.509 context: {err}") from err
    return X509Material(spiffe_id, tuple(svid.cert_chain), svid.private_key, bundles)
