"""Envoy's Secret Discovery Service (SDS v3) on the Workload API socket, as SPIRE's agent serves it.

Envoy fetches its certificate and trust bundles from the agent it already runs next to, so a mesh or gateway built
on Envoy gets Sigil identities without any Sigil code in it. ``StreamSecrets`` and ``FetchSecrets`` are served
(``_sds_stream``, the secrets and their names in :mod:`.sds_secrets`); ``DeltaSecrets`` is not (SPIRE answers it
``Unimplemented`` too, and Envoy falls back to the state-of-the-world stream).

This module is only the routes. Every node runs the agent, few of them run an Envoy, and Envoy's messages
(``xds-protos``: 91 modules of ``envoy``, ``xds``, ``udpa`` and ``validate``) hold about 2 MB of the agent's
resident memory, so they are imported at the first SDS call, not at start: the routes name their message classes
with :class:`~sigil.node_agent.workload_api._deferred.DeferredMessage` and their handlers import the calls when
first run. That first call pays the import once, on the event loop: 50-75 ms of CPU on a two-core development
machine (the import of ``_sds_stream`` after the agent's own, five runs); every later call is as before.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from grpclib.const import Cardinality, Handler, Status
from grpclib.exceptions import GRPCError
from grpclib.server import Stream

from sigil.node_agent.attestation.caller import CallerAttestor
from sigil.node_agent.errors import PeerGoneError
from sigil.node_agent.grpc_edge import Caller
from sigil.node_agent.identity_source import IdentitySource
from sigil.node_agent.workload_api._deferred import DeferredMessage

if TYPE_CHECKING:
    from sigil.node_agent.workload_api._sds_stream import SdsStreams

__all__ = ["SDS_SERVICE_NAME", "SdsService"]

SDS_SERVICE_NAME = "envoy.service.secret.v3.SecretDiscoveryService"

_MESSAGES = "envoy.service.discovery.v3.discovery_pb2"
_REQUEST = DeferredMessage(_MESSAGES, "DiscoveryRequest")
_RESPONSE = DeferredMessage(_MESSAGES, "DiscoveryResponse")
_DELTA_REQUEST = DeferredMessage(_MESSAGES, "DeltaDiscoveryRequest")
_DELTA_RESPONSE = DeferredMessage(_MESSAGES, "DeltaDiscoveryResponse")


async def _delta_secrets(stream: Stream[Any, Any]) -> None:
    # grpclib's answer to an unrouted path lacks a content type that clients then report instead of the status.
    raise GRPCError(Status.UNIMPLEMENTED, "DeltaSecrets is not served; use StreamSecrets")


class SdsService:
    """SDS handlers over an :class:`IdentitySource`; :meth:`bind` gives the routes of one accepted connection."""

    def __init__(self, *, source: IdentitySource, attestor: CallerAttestor) -> None:
        self._source = source
        self._attestor = attestor
        self._streams: SdsStreams | None = None

    def bind(self, caller: Caller) -> dict[str, Handler]:
        """Routes whose handlers serve ``caller`` (or fail with its error, when capture failed at accept)."""
        path = f"/{SDS_SERVICE_NAME}/"
        return {
            path + "StreamSecrets": Handler(
                functools.partial(self._stream_secrets, caller),
                Cardinality.STREAM_STREAM,
                _REQUEST,
                _RESPONSE,
            ),
            path + "FetchSecrets": Handler(
                functools.partial(self._fetch_secrets, caller),
                Cardinality.UNARY_UNARY,
                _REQUEST,
                _RESPONSE,
            ),
            path + "DeltaSecrets": Handler(
                _delta_secrets, Cardinality.STREAM_STREAM, _DELTA_REQUEST, _DELTA_RESPONSE
            ),
        }

    def __mapping__(self) -> dict[str, Handler]:
        # A connection whose credentials were never captured (not a Unix socket): refuse everyone.
        return self.bind(PeerGoneError(0, "no peer credentials on this connection"))

    def _calls(self) -> SdsStreams:
        if self._streams is None:
            from sigil.node_agent.workload_api._sds_stream import SdsStreams

            self._streams = SdsStreams(source=self._source, attestor=self._attestor)
        return self._streams

    async def _fetch_secrets(self, caller: Caller, stream: Stream[Any, Any]) -> None:
        await self._calls().fetch_secrets(caller, stream)

    async def _stream_secrets(self, caller: Caller, stream: Stream[Any, Any]) -> None:
        await self._calls().stream_secrets(caller, stream)
