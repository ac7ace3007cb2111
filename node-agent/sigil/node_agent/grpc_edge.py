"""What every gRPC service on the agent's socket shares: the caller, the security header and the status table.

The Workload API and Sigil's policy service are served on one socket under one set of rules (SPIFFE Workload
Endpoint, section 4, https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE_Workload_Endpoint.md): every call
carries ``workload.spiffe.io: true`` or is refused with ``InvalidArgument`` before anything else happens, and the
caller is attested from the credentials its connection had at accept, never from what it sends. The rules live
here once, with :func:`attested_call` as the frame around a call and ``_STATUS_OF`` as the one table from the
agent's errors to gRPC status codes, so both services answer a failure the same way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import structlog
from google.protobuf.message import DecodeError  # type: ignore[import-untyped]
from grpclib.const import Status
from grpclib.encoding.proto import ProtoCodec
from grpclib.exceptions import GRPCError
from grpclib.server import Stream

from sigil.node_agent.attestation.caller import CallerAttestor
from sigil.node_agent.attestation.peer import PeerCredentials
from sigil.node_agent.attestation.selectors import WorkloadAttestation
from sigil.node_agent.errors import (
    AttestationError,
    IdentityUnavailableError,
    InvalidWorkloadRequestError,
    JwtSvidInvalidError,
    NodeAgentError,
    NoIdentityError,
    NotEntitledError,
    PeerGoneError,
    SecurityHeaderMissingError,
)

__all__ = ["SECURITY_HEADER", "Caller", "RequestCodec", "attested_call", "grpc_status_of"]

SECURITY_HEADER = "workload.spiffe.io"

#: Who called, as captured at accept: the kernel's credentials, or why they could not be had.
Caller = PeerCredentials | NodeAgentError

# The one table from agent errors to gRPC status codes; the most specific class listed wins.
_STATUS_OF: Mapping[type[NodeAgentError], Status] = {
    SecurityHeaderMissingError: Status.INVALID_ARGUMENT,
    InvalidWorkloadRequestError: Status.INVALID_ARGUMENT,
    JwtSvidInvalidError: Status.INVALID_ARGUMENT,
    PeerGoneError: Status.UNAUTHENTICATED,
    AttestationError: Status.PERMISSION_DENIED,
    NoIdentityError: Status.PERMISSION_DENIED,
    NotEntitledError: Status.PERMISSION_DENIED,
    IdentityUnavailableError: Status.UNAVAILABLE,
}

_log = structlog.get_logger(__name__)


class RequestCodec(ProtoCodec):
    """grpclib's protobuf codec, with a request that is no valid message refused as the caller's mistake.

    Handlers read their request inside :func:`attested_call`, so the refusal goes through the one table
    (INVALID_ARGUMENT) instead of escaping the handler as a DecodeError, which grpclib logs with its traceback and
    answers UNKNOWN (found by fuzzing: a string field holding invalid UTF-8).
    """

    def decode(self, data: bytes, message_type: Any) -> Any:
        try:
            return super().decode(data, message_type)
        except DecodeError as err:
            name = message_type.DESCRIPTOR.full_name if message_type is not None else "message"
            raise InvalidWorkloadRequestError(f"the request is not a valid {name}") from err


def grpc_status_of(err: NodeAgentError) -> Status:
    """The gRPC status a workload sees for ``err``."""
    for cls in type(err).__mro__:
        status = _STATUS_OF.get(cls)
        if status is not None:
            return status
    return Status.INTERNAL


@asynccontextmanager
async def attested_call(
    caller: Caller,
    stream: Stream[Any, Any],
    attestor: CallerAttestor,
    *,
    method: str,
    header_required: bool = True,
) -> AsyncIterator[WorkloadAttestation]:
    """The frame of one call: check the header, attest the caller, and turn the agent's errors into gRPC statuses.

    Everything raised inside the block goes through the same table, so a handler raises the agent's errors and
    never a status code. ``header_required=False`` is for Envoy's SDS, whose clients never send the header.
    """
    try:
        values = stream.metadata.getall(SECURITY_HEADER, []) if stream.metadata else []
        if header_required and values != ["true"]:
            raise SecurityHeaderMissingError
        if isinstance(caller, NodeAgentError):
            raise caller
        yield await attestor.attest(caller)
    except NodeAgentError as err:
        status = grpc_status_of(err)
        pid = caller.pid if isinstance(caller, PeerCredentials) else None
        _log.info(
            "workload API call refused", method=method, pid=pid, status=status.name, reason=str(err)
        )
        raise GRPCError(status, str(err)) from err
