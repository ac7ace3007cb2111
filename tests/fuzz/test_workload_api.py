"""The agent's socket from outside: Workload API, SDS and WatchPolicies requests as raw protobuf bytes over the real
gRPC socket. Every request gets its answer or a gRPC status the protocol names (never UNKNOWN or INTERNAL, which
is what an exception escaping a handler becomes), and the server stays up.

Messages start valid and have their bytes damaged (a broken client or a hostile workload sends exactly that);
the metadata goes with or without the Workload API's security header.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from envoy.service.discovery.v3 import discovery_pb2
from fuzz.background import BackgroundLoop
from fuzz.budget import FUZZ
from fuzz.mangling import mangled
from grpclib.client import Channel
from grpclib.const import Cardinality, Status
from grpclib.encoding.base import CodecBase
from grpclib.exceptions import GRPCError, StreamTerminatedError
from hypothesis import example, given
from hypothesis import strategies as st
from sigil_testing.paths import short_directory
from sigil_testing.pki import Domain

from sigil.ca.keys import private_key_der
from sigil.ca.spiffe_id import TrustDomain
from sigil.enforcer._proto import policy_pb2
from sigil.enforcer.policy import AcceptedPolicy
from sigil.enforcer.policy import wire as policy_wire
from sigil.issuer.agentapi import contract
from sigil.issuer.client.results import PolicyUpdate
from sigil.node_agent._proto import workload_pb2 as pb
from sigil.node_agent.attestation.attestors.unix import UnixAttestor
from sigil.node_agent.attestation.caller import Attestation
from sigil.node_agent.attestation.selectors import Selector
from sigil.node_agent.identity_source import TrustBundles, WorkloadX509Svid
from sigil.node_agent.memory_source import InMemoryIdentitySource
from sigil.node_agent.policies.mirror import PolicyMirror
from sigil.node_agent.rotation import Backoff
from sigil.node_agent.workload_api.endpoint import WorkloadApiServer, WorkloadApiSettings

_WORKLOAD = "/SpiffeWorkloadAPI/"
_SDS = "/envoy.service.secret.v3.SecretDiscoveryService/"
_DOMAIN = Domain(TrustDomain("example.org"), now=None)
_ID = _DOMAIN.id("ns", "default", "sa", "web")
_TOKEN = _DOMAIN.mint_jwt(_ID, ["svc"], ttl=timedelta(minutes=5))

#: (path, cardinality, a valid request): each is sent damaged.
_METHODS: dict[str, tuple[Cardinality, bytes]] = {
    _WORKLOAD + "FetchX509SVID": (
        Cardinality.UNARY_STREAM,
        pb.X509SVIDRequest().SerializeToString(),
    ),
    _WORKLOAD + "FetchX509Bundles": (
        Cardinality.UNARY_STREAM,
        pb.X509BundlesRequest().SerializeToString(),
    ),
    _WORKLOAD + "FetchJWTBundles": (
        Cardinality.UNARY_STREAM,
        pb.JWTBundlesRequest().SerializeToString(),
    ),
    _WORKLOAD + "FetchJWTSVID": (
        Cardinality.UNARY_UNARY,
        pb.JWTSVIDRequest(audience=["svc"], spiffe_id=str(_ID)).SerializeToString(),
    ),
    _WORKLOAD + "ValidateJWTSVID": (
        Cardinality.UNARY_UNARY,
        pb.ValidateJWTSVIDRequest(audience="svc", svid=_TOKEN).SerializeToString(),
    ),
    _SDS + "FetchSecrets": (
        Cardinality.UNARY_UNARY,
        discovery_pb2.DiscoveryRequest(resource_names=["default", "ROOTCA"]).SerializeToString(),
    ),
    _SDS + "StreamSecrets": (
        Cardinality.STREAM_STREAM,
        discovery_pb2.DiscoveryRequest(resource_names=["default"]).SerializeToString(),
    ),
    policy_wire.WATCH_POLICIES_PATH: (
        Cardinality.UNARY_STREAM,
        policy_pb2.WatchPoliciesRequest().SerializeToString(),
    ),
}
#: What the protocols answer a bad request with; UNKNOWN and INTERNAL are what a crash answers.
_REFUSALS = {
    Status.INVALID_ARGUMENT,
    Status.PERMISSION_DENIED,
    Status.UNAUTHENTICATED,
    Status.NOT_FOUND,
    Status.UNIMPLEMENTED,
    Status.UNAVAILABLE,
}


#: The message "types" the raw codec ignores (grpclib's request() wants two).
_RAW: Any = None


class _RawCodec(CodecBase):
    """Sends the bytes it is given and hands back the bytes it gets: the fuzzer, not protobuf, writes requests."""

    __content_subtype__ = "proto"

    def encode(self, message: Any, message_type: Any) -> bytes:
        return cast(bytes, message)

    def decode(self, data: bytes, message_type: Any) -> Any:
        return data


class _Feed:
    """The issuer's policy feed as the mirror reads it: one revision with one policy, then the same forever."""

    async def policies(
        self,
        after_revision: int | None = None,
        *,
        wait: float | None = None,
        known: Mapping[str, AcceptedPolicy] | None = None,
        held: PolicyUpdate | None = None,
    ) -> PolicyUpdate:
        body: contract.PolicyResponse = {
            "revision": 1,
            "digest": "d1",
            "policies": [],
            "namespaces": {},
        }
        return PolicyUpdate.parse(body, known=known)


@asynccontextmanager
async def _agent_socket(directory: Path) -> AsyncIterator[Path]:
    source = InMemoryIdentitySource(
        TrustBundles(
            trust_domain=_DOMAIN.trust_domain, bundles={_DOMAIN.trust_domain: _DOMAIN.bundle}
        ),
        mint_jwt=_DOMAIN.mint_jwt,
    )
    issued = _DOMAIN.mint(spiffe_id=_ID)
    source.put(
        WorkloadX509Svid(
            spiffe_id=_ID,
            cert_chain=issued.svid.chain_der(),
            private_key=private_key_der(issued.key),
            hint="",
            federates_with=frozenset(),
        ),
        selectors=[Selector("unix", f"uid:{os.getuid()}")],
    )
    backoff = Backoff(initial=timedelta(seconds=0.01), maximum=timedelta(seconds=0.1))
    mirror = PolicyMirror(_Feed(), wait=0, backoff=backoff)
    await mirror.refresh()
    settings = WorkloadApiSettings(socket_path=directory / "agent.sock")
    async with WorkloadApiServer(
        settings, source=source, attestor=Attestation([UnixAttestor()]), policies=mirror
    ):
        yield settings.socket_path


@pytest.fixture(scope="module")
def agent() -> Iterator[tuple[BackgroundLoop, Path]]:
    """The agent's socket, served from a loop of its own for the whole module."""
    with short_directory() as directory, BackgroundLoop() as loop:
        yield loop, loop.enter(_agent_socket(directory))


async def _call(socket: Path, path: str, data: bytes, metadata: dict[str, str]) -> Status:
    cardinality, _ = _METHODS[path]
    channel = Channel(path=str(socket), codec=_RawCodec())
    try:
        async with channel.request(
            path, cardinality, _RAW, _RAW, metadata=metadata, timeout=10
        ) as stream:
            await stream.send_message(data, end=True)
            await stream.recv_message()
            if cardinality is not Cardinality.UNARY_UNARY:
                await stream.cancel()  # a watch answers once and then waits for changes
        return Status.OK
    except GRPCError as err:
        return err.status
    except StreamTerminatedError:
        return Status.CANCELLED
    finally:
        channel.close()


@FUZZ
@given(
    st.sampled_from(sorted(_METHODS)).flatmap(
        lambda path: st.tuples(st.just(path), mangled(_METHODS[path][1]) | st.binary(max_size=200))
    ),
    st.sampled_from([{"workload.spiffe.io": "true"}, {}, {"workload.spiffe.io": "TRUE"}]),
)
@example(
    (
        _WORKLOAD + "ValidateJWTSVID",
        pb.ValidateJWTSVIDRequest(audience="svc", svid="x.y").SerializeToString(),
    ),
    {"workload.spiffe.io": "true"},
)
@example(
    (_WORKLOAD + "FetchJWTSVID", pb.JWTSVIDRequest(audience=[]).SerializeToString()),
    {"workload.spiffe.io": "true"},
)
@example((_WORKLOAD + "FetchJWTSVID", b"\x0a\x02\xff\xfe"), {"workload.spiffe.io": "true"})
def test_damaged_requests_on_the_agent_socket_get_a_protocol_status(
    agent: tuple[BackgroundLoop, Path], request_: tuple[str, bytes], metadata: dict[str, str]
) -> None:
    """Any bytes as the request of any method on the socket: an answer or a refusal status, never a crash."""
    loop, socket = agent
    path, data = request_
    status = loop.run(_call(socket, path, data, metadata))
    assert status is Status.OK or status in _REFUSALS, (path, status)
    # The socket still serves a good request after whatever came before.
    healthy = loop.run(
        _call(socket, _WORKLOAD + "FetchX509Bundles", b"", {"workload.spiffe.io": "true"})
    )
    assert healthy is Status.OK
