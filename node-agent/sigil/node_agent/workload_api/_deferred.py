"""Message classes named by module and attribute, imported the first time a call needs them.

grpclib routes a method to a ``Handler`` holding its request and reply classes, and each connection's routes are
built at accept (``endpoint.py``), so a route's classes would be imported by the first connection of any kind. A
service that most nodes never see called (Envoy's SDS, whose messages hold about 2 MB of resident memory) names
its classes with :class:`DeferredMessage` instead; :class:`DeferringCodec`, the socket's codec, resolves them when
it first decodes or encodes one, which happens only inside a call to that service. grpclib hands the route's
classes to the codec unchanged (``grpclib.encoding.base.CodecBase``'s ``message_type`` is ``Any``), so this needs
nothing of its internals.
"""

from __future__ import annotations

import importlib
from typing import Any

from sigil.node_agent.grpc_edge import RequestCodec

__all__ = ["DeferredMessage", "DeferringCodec"]


class DeferredMessage:
    """The message class ``name`` of module ``module``, imported when :meth:`resolve` is first called."""

    __slots__ = ("_class", "module", "name")

    def __init__(self, module: str, name: str) -> None:
        self.module = module
        self.name = name
        self._class: Any = None

    def resolve(self) -> Any:
        """The class itself (the import runs once, on the calling thread)."""
        if self._class is None:
            self._class = getattr(importlib.import_module(self.module), self.name)
        return self._class

    def __repr__(self) -> str:
        return f"DeferredMessage({self.module!r}, {self.name!r})"


def _resolved(message_type: Any) -> Any:
    return message_type.resolve() if isinstance(message_type, DeferredMessage) else message_type


class DeferringCodec(RequestCodec):
    """The agent's request codec, resolving a :class:`DeferredMessage` route class before it is used."""

    def decode(self, data: bytes, message_type: Any) -> Any:
        return super().decode(data, _resolved(message_type))

    def encode(self, message: Any, message_type: Any) -> bytes:
        return super().encode(message, _resolved(message_type))
