"""A grpclib server that runs a hook when a connection is accepted, before any request on it is read.

Peer credentials must be taken at accept (reference §4, SPIRE's peertracker): by the time a request arrives the
caller may have handed the connection to another process. grpclib 0.4.9 has no public accept hook, so this is
the one module that leans on its internals, kept small so that an upgrade touches only this file:

- ``Server._protocol_factory`` (private) builds one ``H2Protocol`` per connection; we override it to build our
  subclass instead, reusing the handler and settings grpclib prepared;
- ``H2Protocol.handler`` is grpclib's per-connection ``Handler`` whose public ``mapping`` attribute routes method
  paths to functions; the hook replaces it with functions bound to that connection's caller, so no request ever
  has to look the caller up again (and ``Peer`` exposes no credentials anyway).

If a grpclib upgrade stopped calling ``_protocol_factory``, connections would keep grpclib's own routes, which
the Workload API builds to refuse every call (``Unauthenticated``): the failure is closed, and the tests catch it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING

import grpclib.const
import grpclib.server
from grpclib.encoding.base import CodecBase
from grpclib.protocol import H2Protocol

from sigil.enforcer.h2_streams import bound_closed_streams

if TYPE_CHECKING:
    from grpclib._typing import IServable

__all__ = ["AcceptHook", "AcceptHookServer"]

AcceptHook = Callable[[asyncio.BaseTransport], Mapping[str, grpclib.const.Handler]]
CloseHook = Callable[[asyncio.BaseTransport], None]


class _HookedProtocol(H2Protocol):
    """grpclib's HTTP/2 protocol, routing this connection's requests to functions chosen at accept."""

    def __init__(self, base: H2Protocol, *, on_accept: AcceptHook, on_close: CloseHook) -> None:
        super().__init__(base.handler, base.config, base.h2_config)
        self._on_accept = on_accept
        self._on_close = on_close
        self._transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio calls connection_made before it starts reading, so no request can overtake the hook.
        self._transport = transport
        mapping = self._on_accept(transport)
        if isinstance(self.handler, grpclib.server.Handler):
            self.handler.mapping = dict(mapping)
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._transport is not None:
            self._on_close(self._transport)
        super().connection_lost(exc)


class AcceptHookServer(grpclib.server.Server):
    """A grpclib ``Server`` calling ``on_accept`` for each new connection and ``on_close`` when it ends."""

    def __init__(
        self,
        handlers: Collection[IServable],
        *,
        on_accept: AcceptHook,
        on_close: CloseHook,
        codec: CodecBase | None = None,
    ) -> None:
        super().__init__(handlers, codec=codec)
        bound_closed_streams()
        self._on_accept = on_accept
        self._on_close = on_close

    def _protocol_factory(self) -> H2Protocol:
        return _HookedProtocol(
            super()._protocol_factory(), on_accept=self._on_accept, on_close=self._on_close
        )
