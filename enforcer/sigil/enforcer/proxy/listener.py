"""The proxy's listeners: mTLS for a workload that speaks plain TCP, with SPIFFE verification and policy.

Inbound, the proxy terminates mTLS on the pod's public port with a context from :mod:`sigil.enforcer.tls` (the
peer's SVID is verified inside the handshake, so an unverified peer never reaches a decision), asks the
:class:`~sigil.enforcer.authorizer.Authorizer` about the verified SPIFFE ID, and either forwards the connection
to the application's local port or closes it. Outbound, it accepts plain TCP from the application on a local
port and originates mTLS to an upstream with the workload's SVID, accepting the server only if its SVID
verifies and matches the expected ID or trust domain; with no expectation given, the expected trust domain is
the workload's own, so a federated partner's valid SVID is never accepted unless asked for by name.

Everything runs on asyncio streams; each connection is a task the proxy owns. On shutdown the proxy stops
listening, lets open connections finish for ``drain_seconds``, then cancels and awaits the rest (uvicorn's
graceful-then-forced shutdown).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl

import structlog

from sigil.enforcer.authorizer import Authorizer
from sigil.enforcer.errors import SvidVerificationError
from sigil.enforcer.metrics import EnforcerMetrics
from sigil.enforcer.proxy.settings import Address
from sigil.enforcer.tls import PeerRule, RefusalHook, SpiffeTls, peer_of
from sigil.kit import Service

__all__ = ["InboundProxy", "OutboundProxy", "refusal_reporter"]

_log = structlog.get_logger(__name__)

_CHUNK = 64 * 1024
_STREAM_ERRORS = (OSError, asyncio.IncompleteReadError)  # ssl.SSLError is an OSError


def refusal_reporter(metrics: EnforcerMetrics | None) -> RefusalHook:
    """A hook for :class:`SpiffeTls`'s ``on_refused`` that logs and counts peers refused at the handshake."""

    def report(err: SvidVerificationError) -> None:
        _log.warning(
            "decision",
            decision="denied",
            tier="verification",
            reason=err.reason,
            detail=err.detail,
            peer=err.spiffe_id,
        )
        if metrics is not None:
            metrics.count_refusal(err.reason)

    return report


class _Proxy(Service):
    """A listener whose connections are tasks it owns; subclasses say what a connection does."""

    direction = ""

    def __init__(
        self,
        listen: Address,
        *,
        metrics: EnforcerMetrics | None,
        drain_seconds: float,
        connect_seconds: float,
    ) -> None:
        self.listen = listen
        self._metrics = metrics
        self._drain_seconds = drain_seconds
        self._connect_seconds = connect_seconds
        self._server: asyncio.Server | None = None
        self._port: int | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        """The port actually bound (useful with port 0)."""
        if self._port is None:
            raise RuntimeError("the proxy has not started")
        return self._port

    async def start(self) -> None:
        """Start listening."""
        context = self._listen_context()
        self._server = await asyncio.start_server(
            self._accept,
            self.listen.host,
            self.listen.port,
            ssl=context,
            ssl_handshake_timeout=self._connect_seconds if context is not None else None,
        )
        self._port = self._server.sockets[0].getsockname()[1]
        _log.info(
            "proxy listening", direction=self.direction, address=str(self.listen), port=self.port
        )

    async def aclose(self) -> None:
        """Stop listening, drain open connections for ``drain_seconds``, then cancel what is left."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        await server.wait_closed()
        if self._connections:
            _log.info("proxy draining", direction=self.direction, open=len(self._connections))
            _, pending = await asyncio.wait(self._connections, timeout=self._drain_seconds)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        _log.info("proxy closed", direction=self.direction)

    def _listen_context(self) -> ssl.SSLContext | None:
        return None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:  # always, for a stream callback: asyncio runs each in a task
            self._connections.add(task)
        if self._metrics is not None:
            self._metrics.connections.labels(self.direction).inc()
        try:
            await self._handle(reader, writer)
        except asyncio.CancelledError:
            # Only close() cancels these tasks, and it awaits them. Returning normally matters on 3.11:
            # StreamReaderProtocol's done-callback calls task.exception(), which raises CancelledError for
            # a cancelled task and gets logged as "Exception in callback" (asyncio/streams.py, 3.11).
            pass
        finally:
            if task is not None:
                self._connections.discard(task)
            if self._metrics is not None:
                self._metrics.connections.labels(self.direction).dec()
            await _close(writer)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError


class InboundProxy(_Proxy):
    """Terminates mTLS on ``listen``, decides, forwards allowed connections to ``forward`` in plain TCP."""

    direction = "inbound"

    def __init__(
        self,
        listen: Address,
        forward: Address,
        *,
        tls: SpiffeTls,
        authorizer: Authorizer,
        policy_port: int | None = None,
        metrics: EnforcerMetrics | None = None,
        drain_seconds: float = 10.0,
        connect_seconds: float = 10.0,
    ) -> None:
        super().__init__(
            listen, metrics=metrics, drain_seconds=drain_seconds, connect_seconds=connect_seconds
        )
        self.forward = forward
        self._context = tls.server_context()
        self._authorizer = authorizer
        self._policy_port = policy_port

    def _listen_context(self) -> ssl.SSLContext:
        return self._context

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        verified = peer_of(writer.get_extra_info("ssl_object"))
        peer = None if verified is None else verified.spiffe_id
        port = self._policy_port if self._policy_port is not None else self.port
        if not self._authorizer.decide(peer, port).allowed:
            return
        try:
            upstream = await asyncio.wait_for(
                asyncio.open_connection(self.forward.host, self.forward.port),
                self._connect_seconds,
            )
        except (OSError, TimeoutError) as err:
            _log.error("local port unreachable", forward=str(self.forward), error=str(err))
            return
        await _splice((reader, writer), upstream)


class OutboundProxy(_Proxy):
    """Accepts plain TCP on ``listen`` and originates mTLS to ``upstream`` as the workload's SVID.

    ``expect`` says which server to accept; None means any ID of the workload's own trust domain (that of the
    SVID ``tls`` presents), never a federated domain's.
    """

    direction = "outbound"

    def __init__(
        self,
        listen: Address,
        upstream: Address,
        *,
        tls: SpiffeTls,
        expect: PeerRule | None = None,
        metrics: EnforcerMetrics | None = None,
        drain_seconds: float = 10.0,
        connect_seconds: float = 10.0,
    ) -> None:
        super().__init__(
            listen, metrics=metrics, drain_seconds=drain_seconds, connect_seconds=connect_seconds
        )
        self.upstream = upstream
        # Every bundle the workload holds would vouch for a server, federated partners' included: without an
        # explicit expectation, only the local trust domain's servers are the ones the application meant.
        self.expect: PeerRule = expect if expect is not None else tls.spiffe_id.trust_domain
        self._context = tls.client_context(expect=self.expect)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream = await asyncio.wait_for(
                asyncio.open_connection(
                    self.upstream.host,
                    self.upstream.port,
                    ssl=self._context,
                    server_hostname=self.upstream.host,
                ),
                self._connect_seconds,
            )
        except ssl.SSLCertVerificationError as err:
            # The SPIFFE refusal itself was logged and counted by the context's on_refused hook.
            _log.warning("upstream refused", upstream=str(self.upstream), error=str(err))
            return
        except (OSError, TimeoutError) as err:
            _log.error("upstream unreachable", upstream=str(self.upstream), error=str(err))
            return
        verified = peer_of(upstream[1].get_extra_info("ssl_object"))
        _log.info(
            "upstream connected",
            upstream=str(self.upstream),
            peer=None if verified is None else str(verified.spiffe_id),
        )
        await _splice((reader, writer), upstream)


Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _splice(client: Streams, upstream: Streams) -> None:
    """Copy both ways until both ends are done; a side that cannot half-close (TLS) ends both."""
    up = asyncio.ensure_future(_copy(client[0], upstream[1]))
    down = asyncio.ensure_future(_copy(upstream[0], client[1]))
    try:
        pending: set[asyncio.Future[bool]] = {up, down}
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if not all(task.result() for task in done):
                break  # a direction ended without a half-close: nothing more can flow cleanly
    finally:
        for task in (up, down):
            task.cancel()
        await asyncio.gather(up, down, return_exceptions=True)
        await _close(upstream[1])


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    """Copy until EOF; True when the EOF was passed on as a half-close."""
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
            return True
    except _STREAM_ERRORS:
        pass
    return False


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(*_STREAM_ERRORS):
        await writer.wait_closed()
