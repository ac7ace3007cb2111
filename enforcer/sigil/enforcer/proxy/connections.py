"""What both proxy listeners share: a listening socket whose connections are tasks it owns, drained on shutdown,
and the hook that logs and counts peers refused at the handshake.

On shutdown the listener stops listening, lets open connections finish for ``drain_seconds``, then cancels and
awaits the rest (uvicorn's graceful-then-forced shutdown). :mod:`sigil.enforcer.proxy.listener` says what an
inbound and an outbound connection do.
"""

from __future__ import annotations

import asyncio
import ssl

import structlog

from sigil.enforcer.errors import SvidVerificationError
from sigil.enforcer.metrics import EnforcerMetrics
from sigil.enforcer.proxy.settings import Address
from sigil.enforcer.proxy.streams import close_quietly
from sigil.enforcer.tls import RefusalHook
from sigil.kit import Service

__all__ = ["ProxyListener", "refusal_reporter"]

_log = structlog.get_logger(__name__)


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


class ProxyListener(Service):
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
        if not await self._stop_listening():
            return
        if self._connections:
            _log.info("proxy draining", direction=self.direction, open=len(self._connections))
            _, pending = await asyncio.wait(self._connections, timeout=self._drain_seconds)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        _log.info("proxy closed", direction=self.direction)

    async def _stop_listening(self) -> bool:
        """Close the listener; False when it was not listening."""
        server, self._server = self._server, None
        if server is None:
            return False
        server.close()
        await server.wait_closed()
        return True

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
            await close_quietly(writer)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError
