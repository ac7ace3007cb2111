"""The Workload API socket: its file, its lifecycle, and how refused callers are told and logged."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
from pathlib import Path
from typing import Any

import grpc  # type: ignore[import-untyped]  # no types-grpcio among the dependencies
import pytest
import uvloop
from structlog.testing import capture_logs

from sigil.node_agent._proto import workload_pb2 as pb
from sigil.node_agent.attestation.attestors.k8s import (
    InMemoryPodIndex,
    K8sAttestor,
    K8sAttestorSettings,
)
from sigil.node_agent.attestation.attestors.unix import UnixAttestor
from sigil.node_agent.attestation.caller import Attestation
from sigil.node_agent.attestation.peer import PeerCredentials
from sigil.node_agent.attestation.selectors import WorkloadAttestation
from sigil.node_agent.errors import PeerGoneError, SocketError
from sigil.node_agent.memory_source import InMemoryIdentitySource
from sigil.node_agent.workload_api.endpoint import WorkloadApiServer, WorkloadApiSettings

from .conftest import WORKLOAD_ID

HEADER = [("workload.spiffe.io", "true")]


def _first_x509_response(path: Path) -> Any:
    with grpc.insecure_channel(f"unix:{path}") as channel:
        call = channel.unary_stream(
            "/SpiffeWorkloadAPI/FetchX509SVID",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=pb.X509SVIDResponse.FromString,
        )
        responses = call(pb.X509SVIDRequest(), metadata=HEADER, timeout=10)
        try:
            return next(responses)
        finally:
            responses.cancel()


async def _refusal(path: Path) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as caught:
        await asyncio.to_thread(_first_x509_response, path)
    error: Any = caught.value
    return error.code(), error.details()


async def test_the_socket_is_world_writable_in_a_created_directory(
    server: WorkloadApiServer, settings: WorkloadApiSettings
) -> None:
    """Any uid may connect (authorization is by attestation): the socket is mode 0777 and its directory exists."""
    mode = settings.socket_path.stat().st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o777
    assert settings.endpoint == f"unix://{settings.socket_path}"


async def test_a_stale_socket_is_replaced(
    settings: WorkloadApiSettings, source: InMemoryIdentitySource
) -> None:
    """A socket file left behind by a dead agent is removed and served anew."""
    settings.socket_path.parent.mkdir(parents=True)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(settings.socket_path))
    stale.close()
    async with WorkloadApiServer(settings, source=source, attestor=Attestation([UnixAttestor()])):
        response = await asyncio.to_thread(_first_x509_response, settings.socket_path)
    assert len(response.svids) == 1


async def test_a_live_socket_is_not_stolen(
    server: WorkloadApiServer, settings: WorkloadApiSettings, source: InMemoryIdentitySource
) -> None:
    """A second agent on the same path refuses to start instead of unlinking the first one's socket."""
    second = WorkloadApiServer(settings, source=source, attestor=Attestation([UnixAttestor()]))
    with pytest.raises(SocketError, match="another process"):
        await second.start()
    assert stat.S_ISSOCK(settings.socket_path.stat().st_mode)


async def test_a_regular_file_in_the_way_is_never_deleted(
    settings: WorkloadApiSettings, source: InMemoryIdentitySource
) -> None:
    """The agent refuses to start rather than delete a file that is not a socket."""
    settings.socket_path.parent.mkdir(parents=True)
    settings.socket_path.write_text("precious")
    server = WorkloadApiServer(settings, source=source, attestor=Attestation([UnixAttestor()]))
    with pytest.raises(SocketError, match="not a socket"):
        await server.start()
    assert settings.socket_path.read_text() == "precious"


async def test_stop_ends_open_streams_and_removes_the_socket(
    settings: WorkloadApiSettings, source: InMemoryIdentitySource
) -> None:
    """Stopping closes a workload's open stream (so it reconnects elsewhere) and deletes the socket file."""
    server = WorkloadApiServer(settings, source=source, attestor=Attestation([UnixAttestor()]))
    await server.start()
    channel = grpc.insecure_channel(f"unix:{settings.socket_path}")
    try:
        call = channel.unary_stream(
            "/SpiffeWorkloadAPI/FetchX509SVID",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=pb.X509SVIDResponse.FromString,
        )
        responses = call(pb.X509SVIDRequest(), metadata=HEADER, timeout=30)
        await asyncio.to_thread(next, responses)
        await asyncio.wait_for(server.aclose(), timeout=10)
        with pytest.raises(grpc.RpcError) as caught:
            await asyncio.wait_for(asyncio.to_thread(next, responses), timeout=10)
        error: Any = caught.value
        assert error.code() in {
            grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.CANCELLED,
            grpc.StatusCode.INTERNAL,
        }
    finally:
        channel.close()
    assert not await asyncio.to_thread(settings.socket_path.exists)


async def test_an_unattestable_caller_is_denied_and_the_log_says_why(
    settings: WorkloadApiSettings, source: InMemoryIdentitySource, tmp_path: Path
) -> None:
    """A caller in a pod this node does not know gets PermissionDenied, and the log names the pod."""
    pid = os.getpid()
    (tmp_path / str(pid)).mkdir()
    uid = "0badf00d-0000-4000-8000-000000000001"
    (tmp_path / str(pid) / "cgroup").write_text(f"0::/kubepods/pod{uid}/{'c' * 64}\n")
    k8s = K8sAttestor(
        InMemoryPodIndex(), K8sAttestorSettings(proc_root=tmp_path, max_poll_attempts=1)
    )
    async with WorkloadApiServer(
        settings, source=source, attestor=Attestation([UnixAttestor(), k8s])
    ):
        with capture_logs() as logs:
            code, details = await _refusal(settings.socket_path)
    assert code is grpc.StatusCode.PERMISSION_DENIED
    assert uid in details
    refused = [entry for entry in logs if entry["event"] == "workload API call refused"]
    assert refused
    assert uid in refused[0]["reason"]
    assert refused[0]["pid"] == pid


class _GoneAttestor:
    """Attests as a caller whose pid was reused meanwhile."""

    async def attest(self, peer: PeerCredentials) -> WorkloadAttestation:
        raise PeerGoneError(peer.pid, "the pid was reused by another process")


async def test_a_caller_whose_pid_changed_hands_is_unauthenticated(
    settings: WorkloadApiSettings, source: InMemoryIdentitySource
) -> None:
    """When the caller's pid no longer names it after attestation, the call is Unauthenticated, as in SPIRE."""
    async with WorkloadApiServer(settings, source=source, attestor=_GoneAttestor()):
        code, _ = await _refusal(settings.socket_path)
    assert code is grpc.StatusCode.UNAUTHENTICATED


class _Recording:
    """The unix attestor, keeping the peer credentials each call was attested from."""

    def __init__(self) -> None:
        self.peers: list[PeerCredentials] = []
        self._unix = Attestation([UnixAttestor()])

    async def attest(self, peer: PeerCredentials) -> WorkloadAttestation:
        self.peers.append(peer)
        return await self._unix.attest(peer)


def test_on_uvloop_callers_are_attested_from_the_kernel_and_served(
    settings: WorkloadApiSettings, source: InMemoryIdentitySource
) -> None:
    """On the optional uvloop loop the credentials are still captured at accept, and the caller gets its SVID."""
    attestor = _Recording()

    async def fetch() -> Any:
        async with WorkloadApiServer(settings, source=source, attestor=attestor):
            return await asyncio.to_thread(_first_x509_response, settings.socket_path)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        response = runner.run(fetch())
    assert [svid.spiffe_id for svid in response.svids] == [str(WORKLOAD_ID)]
    assert [(p.pid, p.uid, p.gid) for p in attestor.peers] == [
        (os.getpid(), os.getuid(), os.getgid())
    ]


def test_a_relative_or_overlong_socket_path_is_refused() -> None:
    """Settings refuse a socket path the kernel could not bind."""
    with pytest.raises(ValueError, match="absolute"):
        WorkloadApiSettings(socket_path=Path("agent.sock"))
    with pytest.raises(ValueError, match="longer"):
        WorkloadApiSettings(socket_path=Path("/tmp/" + "x" * 120))
