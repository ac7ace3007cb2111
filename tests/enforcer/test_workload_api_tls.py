"""TLS contexts fed by a real Workload API socket: the node agent's server with its in-memory source."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from enforcer.tlskit import exchange, static_source, who_am_i_server
from sigil_testing.pki import Domain, Issued

from sigil.ca.keys import private_key_der
from sigil.enforcer.errors import IdentitySourceError
from sigil.enforcer.sources import X509Material
from sigil.enforcer.tls import SpiffeTls
from sigil.enforcer.workload_source import WorkloadApiSource
from sigil.node_agent.attestation.attestors.unix import UnixAttestor
from sigil.node_agent.attestation.caller import Attestation
from sigil.node_agent.attestation.selectors import Selector
from sigil.node_agent.identity_source import TrustBundles, WorkloadX509Svid
from sigil.node_agent.memory_source import InMemoryIdentitySource
from sigil.node_agent.workload_api.endpoint import WorkloadApiServer, WorkloadApiSettings


def _wire(issued: Issued) -> WorkloadX509Svid:
    return WorkloadX509Svid(
        spiffe_id=issued.svid.spiffe_id,
        cert_chain=issued.svid.chain_der(),
        private_key=private_key_der(issued.key),
    )


def _my_uid() -> Selector:
    return Selector("unix", f"uid:{os.getuid()}")


@pytest.fixture
def memory(home: Domain) -> InMemoryIdentitySource:
    bundles = TrustBundles(
        trust_domain=home.trust_domain,
        bundles={home.trust_domain: home.bundle},
    )
    source = InMemoryIdentitySource(bundles)
    source.put(_wire(home.mint("api-v1")), selectors=[_my_uid()])
    return source


@pytest.fixture
async def agent(memory: InMemoryIdentitySource, short_tmp: Path) -> AsyncIterator[str]:
    settings = WorkloadApiSettings(socket_path=short_tmp / "agent.sock")
    async with WorkloadApiServer(settings, source=memory, attestor=Attestation([UnixAttestor()])):
        yield f"unix://{settings.socket_path}"


async def test_the_context_presents_the_svid_the_agent_serves(
    agent: str, home: Domain, short_tmp: Path
) -> None:
    """A server context built from the Workload API presents the agent's SVID to a client."""
    client = static_source(short_tmp / "c", home.mint("client"), home)
    async with await WorkloadApiSource.open(agent) as source:
        tls = SpiffeTls(source)
        async with who_am_i_server(tls.server_context()) as port:
            said, server_id = await exchange(port, SpiffeTls(client).client_context())
    assert server_id == "spiffe://example.org/api-v1"
    assert said == "spiffe://example.org/client"


async def test_rotation_on_the_agent_reaches_the_next_handshake(
    agent: str, home: Domain, memory: InMemoryIdentitySource, short_tmp: Path
) -> None:
    """When the agent rotates the SVID, the next handshake presents the new one without a new context."""
    client = static_source(short_tmp / "c", home.mint("client"), home)
    client_context = SpiffeTls(client).client_context()
    async with await WorkloadApiSource.open(agent) as source:
        updates: asyncio.Queue[X509Material] = asyncio.Queue()
        source.subscribe(updates.put_nowait)
        server_context = SpiffeTls(source).server_context()
        async with who_am_i_server(server_context) as port:
            _, before = await exchange(port, client_context)
            memory.remove(home.id("api-v1"))
            memory.put(_wire(home.mint("api-v2")), selectors=[_my_uid()])
            while (await asyncio.wait_for(updates.get(), 10)).spiffe_id != home.id("api-v2"):
                pass
            _, after = await exchange(port, client_context)
    assert (before, after) == ("spiffe://example.org/api-v1", "spiffe://example.org/api-v2")


async def test_no_agent_is_an_identity_source_error(short_tmp: Path) -> None:
    """Opening a Workload API source on a socket nobody serves fails with IdentitySourceError."""
    with pytest.raises(IdentitySourceError):
        await WorkloadApiSource.open(f"unix://{short_tmp}/nobody.sock", wait_seconds=0.5)
