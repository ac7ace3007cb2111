"""The node agent against the real issuer (``sigil-server``'s app, in process), with the unmodified py-spiffe client."""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta
from pathlib import Path

from sigil_testing.enrolment import enrol_agent
from sigil_testing.issuer import issuer_settings, running_issuer
from spiffe import WorkloadApiClient

from sigil.ca.spiffe_id import SpiffeId
from sigil.issuer.edge.listeners import IssuerServer
from sigil.node_agent.agent import NodeAgent
from sigil.node_agent.settings import AgentSettings, RotationSettings

ME = SpiffeId.parse(f"spiffe://example.org/local/uid-{os.getuid()}")


async def _enrol(server: IssuerServer, directory: Path) -> AgentSettings:
    """A join token and an entry for this uid under the agent it will attest, as an operator would make them."""
    rotation = RotationSettings(
        backoff_initial=timedelta(milliseconds=50), bundle_wait=timedelta(seconds=1)
    )
    return await enrol_agent(
        server, directory, {ME: [f"unix:uid:{os.getuid()}"]}, rotation=rotation
    )


def _fetch(endpoint: str) -> tuple[str, str, set[str]]:
    with WorkloadApiClient(socket_path=endpoint, default_timeout=10) as client:
        svid = client.fetch_x509_svid()
        token = client.fetch_jwt_svid({"db"})
        bundles = {b.trust_domain.name for b in client.fetch_x509_bundles().bundles}
        return str(svid.spiffe_id), str(token.spiffe_id), bundles


async def test_py_spiffe_gets_svids_through_the_agent_from_the_real_issuer(short_tmp: Path) -> None:
    """X509-SVID, JWT-SVID and bundles reach the unmodified client from sigil-server via the agent."""
    async with running_issuer(issuer_settings(short_tmp / "server")) as server:
        settings = await _enrol(server, short_tmp)
        async with NodeAgent(settings) as agent:
            x509_id, jwt_id, bundles = await asyncio.to_thread(_fetch, agent.endpoint)
    assert x509_id == jwt_id == str(ME)
    assert bundles == {"example.org"}


async def test_restart_without_attestation_and_serving_while_the_issuer_is_away(
    short_tmp: Path,
) -> None:
    """A restarted agent reuses its stored SVID (the join token is spent); with the issuer gone it still serves."""
    server_settings = issuer_settings(short_tmp / "server")
    async with running_issuer(server_settings) as server:
        settings = await _enrol(server, short_tmp)
        async with NodeAgent(settings) as agent:
            first = await asyncio.to_thread(_fetch, agent.endpoint)
        async with NodeAgent(settings) as restarted:
            assert await asyncio.to_thread(_fetch, restarted.endpoint) == first
            agents = await server.issuer.registry.agents()
            assert [a.method for a in agents] == ["join"]
            await server.aclose()
            # The issuer is gone: the cached SVID and token are still served.
            assert await asyncio.to_thread(_fetch, restarted.endpoint) == first
