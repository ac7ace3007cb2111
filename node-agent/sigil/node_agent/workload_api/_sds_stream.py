"""Envoy's SDS calls themselves, imported by :mod:`.sds` at the first SDS call on the agent's socket.

``StreamSecrets`` and ``FetchSecrets`` of ``envoy.service.secret.v3.SecretDiscoveryService`` are served with the
gRPC project's ``xds-protos`` messages; the secrets and their names are in :mod:`.sds_secrets`. The caller is
attested from the credentials its connection had at accept, as for the Workload API, and its failures map to the
same status codes (``grpc_edge``), but the ``workload.spiffe.io`` header is not required: Envoy does not send it,
and SPIRE does not ask for it on SDS either.

The stream follows the xDS protocol (https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol):

- each response carries a new ``version_info`` (a counter per stream) and a fresh ``nonce``;
- a request whose ``response_nonce`` is not the last one sent is stale and ignored;
- a request naming the same resources as before is an ACK, or a NACK when it carries ``error_detail`` (logged):
  neither is answered, so a rejected version is never sent again;
- a request naming other resources is answered at once;
- after every change of the source (rotation, bundle, entitlement) the secrets are rebuilt and sent only when
  they differ from what the stream last sent.
"""

from __future__ import annotations

import asyncio
import secrets as _random
from collections.abc import Sequence
from typing import Any, Final

import structlog
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2  # type: ignore[import-untyped]
from grpclib.server import Stream

from sigil.kit import TaskOwner
from sigil.node_agent.attestation.caller import CallerAttestor
from sigil.node_agent.attestation.selectors import WorkloadAttestation
from sigil.node_agent.errors import InvalidWorkloadRequestError, NoIdentityError
from sigil.node_agent.grpc_edge import Caller, attested_call
from sigil.node_agent.identity_source import IdentitySource
from sigil.node_agent.workload_api.sds_secrets import (
    SECRET_TYPE_URL,
    build_secrets,
    supports_spiffe_validator,
)

__all__ = ["SdsStreams"]

_log = structlog.get_logger(__name__)

# What the stream's queue carries besides requests: the source changed, or the client closed its side.
_CHANGED: Final = object()
_END: Final = object()


def _response(resources: Sequence[Any], *, version: str, nonce: str) -> Any:
    packed = []
    for secret in resources:
        resource = any_pb2.Any()
        resource.Pack(secret)
        packed.append(resource)
    return discovery_pb2.DiscoveryResponse(
        version_info=version, resources=packed, type_url=SECRET_TYPE_URL, nonce=nonce
    )


def _check_type(request: Any) -> None:
    # Envoy always names the type; an empty one is tolerated as SPIRE does, another type is a client's mistake.
    if request.type_url and request.type_url != SECRET_TYPE_URL:
        raise InvalidWorkloadRequestError(
            f"this service serves {SECRET_TYPE_URL}, not {request.type_url}"
        )


class SdsStreams:
    """The SDS calls over an :class:`IdentitySource`, each serving the caller captured at accept."""

    def __init__(self, *, source: IdentitySource, attestor: CallerAttestor) -> None:
        self._source = source
        self._attestor = attestor

    async def _secrets(self, workload: WorkloadAttestation, request: Any) -> list[Any]:
        svids = await self._source.x509_svids(workload)
        if not svids:
            raise NoIdentityError
        return build_secrets(
            request.resource_names,
            svids=svids,
            bundles=self._source.bundles(),
            spiffe_validator=supports_spiffe_validator(request.node),
        )

    async def fetch_secrets(self, caller: Caller, stream: Stream[Any, Any]) -> None:
        async with attested_call(
            caller, stream, self._attestor, method="FetchSecrets", header_required=False
        ) as workload:
            request = await stream.recv_message()
            if request is None:
                raise InvalidWorkloadRequestError("the request message is missing")
            _check_type(request)
            resources = await self._secrets(workload, request)
            # A fetch is not a subscription: no version, no nonce (as SPIRE answers it).
            await stream.send_message(_response(resources, version="", nonce=""))

    async def stream_secrets(self, caller: Caller, stream: Stream[Any, Any]) -> None:
        async with (
            attested_call(
                caller, stream, self._attestor, method="StreamSecrets", header_required=False
            ) as workload,
            self._source.streaming(workload),
            TaskOwner("sds-stream") as tasks,
        ):
            queue: asyncio.Queue[Any] = asyncio.Queue()
            tasks.spawn(self._read(stream, queue), name="sds-read")
            tasks.spawn(self._watch(queue), name="sds-watch")
            await self._serve(workload, stream, queue)

    @staticmethod
    async def _read(stream: Stream[Any, Any], queue: asyncio.Queue[Any]) -> None:
        try:
            while (request := await stream.recv_message()) is not None:
                queue.put_nowait(request)
        except InvalidWorkloadRequestError as err:
            # The client's mistake, not the task's: raised by _serve, inside the call's frame (found by fuzzing).
            queue.put_nowait(err)
        finally:
            # A failed read ends the stream too; the task's owner raises the failure when the block ends.
            queue.put_nowait(_END)

    async def _watch(self, queue: asyncio.Queue[Any]) -> None:
        changes = self._source.changes
        revision = changes.revision
        while True:
            revision = await changes.wait_after(revision)
            queue.put_nowait(_CHANGED)

    async def _serve(
        self, workload: WorkloadAttestation, stream: Stream[Any, Any], queue: asyncio.Queue[Any]
    ) -> None:
        log = _log.bind(pid=workload.peer.pid)
        subscription: Any = None  # the last request that named resources, None before the first
        version = 0
        nonce = ""
        last: bytes | None = None
        while True:
            item = await queue.get()
            if item is _END:
                return
            if isinstance(item, InvalidWorkloadRequestError):
                raise item
            if item is not _CHANGED:
                _check_type(item)
                if item.HasField("error_detail"):
                    log.warning(
                        "sds.nack",
                        version=item.version_info,
                        names=list(item.resource_names),
                        reason=item.error_detail.message,
                    )
                if nonce and item.response_nonce != nonce:
                    log.debug("sds.stale_nonce", nonce=item.response_nonce, expected=nonce)
                    continue
                if subscription is not None and set(item.resource_names) == set(
                    subscription.resource_names
                ):
                    continue  # an ACK or a NACK of what was sent: nothing new to say
                if subscription is not None and not item.HasField("node"):
                    # Envoy may send its node on the first request only; the validator choice depends on it.
                    item.node.CopyFrom(subscription.node)
                subscription = item
                last = None  # a new subscription is always answered
            elif subscription is None:
                continue
            resources = await self._secrets(workload, subscription)
            content = b"".join(r.SerializeToString(deterministic=True) for r in resources)
            if content == last:
                continue
            version += 1
            nonce = _random.token_hex(8)
            await stream.send_message(_response(resources, version=str(version), nonce=nonce))
            last = content
            log.debug("sds.sent", version=version, names=list(subscription.resource_names))
