"""What no caller has used yet is not loaded: Envoy's SDS messages wait for the first SDS call, PyJWT for a JWT-SVID.

The server runs in a fresh interpreter (this one has loaded everything), with the agent's Workload API endpoint
over an in-memory source holding an SVID for this uid; the test is its client, and asks it which modules it holds.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from envoy.service.discovery.v3 import discovery_pb2
from grpclib.client import Channel
from grpclib.const import Cardinality
from sigil_testing.pki import Domain

from sigil.ca.keys import private_key_der
from sigil.node_agent._proto import workload_pb2 as pb
from sigil.node_agent.workload_api.sds_secrets import SECRET_TYPE_URL

from .conftest import WORKLOAD_ID

# Reads the SVID and bundle (hex DER) from its first line of input, serves, then answers each "loaded" line with
# the heavy top-level packages it has imported so far.
_SERVER = """
import asyncio, json, os, sys
from pathlib import Path

import structlog

from sigil.ca.bundle import TrustBundle
from sigil.ca.spiffe_id import SpiffeId, TrustDomain
from sigil.node_agent.attestation.attestors.unix import UnixAttestor
from sigil.node_agent.attestation.caller import Attestation
from sigil.node_agent.attestation.selectors import Selector
from sigil.node_agent.identity_source import TrustBundles, WorkloadX509Svid
from sigil.node_agent.memory_source import InMemoryIdentitySource
from sigil.node_agent.workload_api.endpoint import WorkloadApiServer, WorkloadApiSettings

HEAVY = ("envoy", "xds", "udpa", "validate", "jwt")


async def main():
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    given = json.loads(sys.stdin.readline())
    td = TrustDomain(given["trust_domain"])
    bundle = TrustBundle.parse_der(td, bytes.fromhex(given["bundle"]))
    source = InMemoryIdentitySource(TrustBundles(trust_domain=td, bundles={td: bundle}))
    svid = WorkloadX509Svid(
        spiffe_id=SpiffeId.parse(given["spiffe_id"]),
        cert_chain=bytes.fromhex(given["chain"]),
        private_key=bytes.fromhex(given["key"]),
    )
    source.put(svid, selectors=[Selector("unix", f"uid:{os.getuid()}")])
    settings = WorkloadApiSettings(socket_path=Path(given["socket"]))
    async with WorkloadApiServer(settings, source=source, attestor=Attestation([UnixAttestor()])):
        print("serving", flush=True)
        loop = asyncio.get_running_loop()
        while (await loop.run_in_executor(None, sys.stdin.readline)).strip() == "loaded":
            print(json.dumps(sorted({m.partition(".")[0] for m in sys.modules} & set(HEAVY))), flush=True)


asyncio.run(main())
"""


class _Server:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process

    async def loaded(self) -> list[str]:
        """The heavy packages the server has imported so far."""
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        self._process.stdin.write(b"loaded\n")
        answer: list[str] = json.loads(await asyncio.wait_for(self._process.stdout.readline(), 30))
        return answer


@pytest.fixture
async def fresh_server(ca: Domain, short_tmp: Path) -> AsyncIterator[tuple[_Server, Channel]]:
    issued = ca.mint(spiffe_id=WORKLOAD_ID)
    socket_path = short_tmp / "agent.sock"
    given = {
        "trust_domain": ca.trust_domain.name,
        "bundle": ca.bundle.x509_der().hex(),
        "spiffe_id": str(WORKLOAD_ID),
        "chain": issued.svid.chain_der().hex(),
        "key": private_key_der(issued.key).hex(),
        "socket": str(socket_path),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _SERVER,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    process.stdin.write(json.dumps(given).encode() + b"\n")
    assert await asyncio.wait_for(process.stdout.readline(), 60) == b"serving\n"
    channel = Channel(path=str(socket_path))
    try:
        yield _Server(process), channel
    finally:
        channel.close()
        process.stdin.close()
        await asyncio.wait_for(process.wait(), 30)


async def _x509_svid(channel: Channel) -> Any:
    async with channel.request(
        "/SpiffeWorkloadAPI/FetchX509SVID",
        Cardinality.UNARY_STREAM,
        pb.X509SVIDRequest,
        pb.X509SVIDResponse,
        metadata={"workload.spiffe.io": "true"},
    ) as stream:
        await stream.send_message(pb.X509SVIDRequest(), end=True)
        response = await asyncio.wait_for(stream.recv_message(), 10)
        await stream.cancel()
    return response


async def test_envoy_messages_wait_for_the_first_sds_call(
    fresh_server: tuple[_Server, Channel],
) -> None:
    """Serving X509-SVIDs loads neither Envoy's messages nor PyJWT; the first SDS call loads the first, answered."""
    server, channel = fresh_server
    response = await _x509_svid(channel)
    assert response.svids[0].spiffe_id == str(WORKLOAD_ID)
    assert await server.loaded() == []

    async with channel.request(
        "/envoy.service.secret.v3.SecretDiscoveryService/FetchSecrets",
        Cardinality.UNARY_UNARY,
        discovery_pb2.DiscoveryRequest,
        discovery_pb2.DiscoveryResponse,
    ) as stream:
        request = discovery_pb2.DiscoveryRequest(
            resource_names=["default"], type_url=SECRET_TYPE_URL
        )
        await stream.send_message(request, end=True)
        answer = await asyncio.wait_for(stream.recv_message(), 10)
    assert answer is not None
    assert answer.type_url == SECRET_TYPE_URL
    assert len(answer.resources) == 1
    assert "envoy" in await server.loaded()
