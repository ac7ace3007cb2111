"""The frame every service on the agent's socket shares: the security header, attestation, and one status table."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.server import Stream
from multidict import MultiDict

from sigil.node_agent.attestation.peer import PeerCredentials
from sigil.node_agent.attestation.selectors import Selector, WorkloadAttestation
from sigil.node_agent.errors import NotEntitledError, PeerGoneError
from sigil.node_agent.grpc_edge import SECURITY_HEADER, Caller, attested_call

PEER = PeerCredentials(pid=4242, uid=1000, gid=1000, start_time=1)


class _Attestor:
    async def attest(self, peer: PeerCredentials) -> WorkloadAttestation:
        return WorkloadAttestation(peer, frozenset({Selector("unix", "uid:1000")}))


def _stream(*headers: tuple[str, str]) -> Stream[Any, Any]:
    return cast(Stream[Any, Any], SimpleNamespace(metadata=MultiDict(headers)))


async def _call(caller: Caller, stream: Stream[Any, Any], raised: Exception | None) -> None:
    async with attested_call(caller, stream, _Attestor(), method="Test"):
        if raised is not None:
            raise raised


async def _status_of(
    caller: Caller, stream: Stream[Any, Any], raised: Exception | None = None
) -> Status:
    with pytest.raises(GRPCError) as refused:
        await _call(caller, stream, raised)
    return refused.value.status


async def test_an_attested_caller_gets_its_attestation() -> None:
    """With the header, the block runs with the caller's attestation."""
    async with attested_call(
        PEER, _stream((SECURITY_HEADER, "true")), _Attestor(), method="Test"
    ) as attested:
        assert attested.peer == PEER


async def test_a_call_without_the_security_header_is_an_invalid_argument() -> None:
    """A missing or wrong header is refused before the caller is attested."""
    assert await _status_of(PEER, _stream()) is Status.INVALID_ARGUMENT
    assert await _status_of(PEER, _stream((SECURITY_HEADER, "yes"))) is Status.INVALID_ARGUMENT


async def test_a_caller_whose_credentials_were_not_captured_is_unauthenticated() -> None:
    """The error captured at accept is what the caller sees."""
    gone = PeerGoneError(0, "no peer credentials on this connection")
    assert await _status_of(gone, _stream((SECURITY_HEADER, "true"))) is Status.UNAUTHENTICATED


async def test_an_agent_error_inside_the_call_maps_through_the_one_table() -> None:
    """A handler raises the agent's errors; the frame turns them into gRPC statuses."""
    stream = _stream((SECURITY_HEADER, "true"))
    assert (
        await _status_of(PEER, stream, NotEntitledError("spiffe://x/y")) is Status.PERMISSION_DENIED
    )
