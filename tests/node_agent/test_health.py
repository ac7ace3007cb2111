"""The agent's /live and /ready endpoints answer what a kubelet probe needs to know."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from sigil_testing.enrolment import enrol_agent
from sigil_testing.issuer import issuer_settings, running_issuer

from sigil.ca.spiffe_id import SpiffeId
from sigil.node_agent.agent import NodeAgent
from sigil.node_agent.health import HealthServer
from sigil.node_agent.settings import AgentSettings, load_agent_settings

ME = SpiffeId.parse(f"spiffe://example.org/local/uid-{os.getuid()}")


@pytest.fixture
async def settings(short_tmp: Path) -> AsyncIterator[AgentSettings]:
    """An agent enrolled at a real issuer, entitled to an ID for this process's uid."""
    async with running_issuer(issuer_settings(short_tmp / "server")) as server:
        yield await enrol_agent(server, short_tmp, {ME: [f"unix:uid:{os.getuid()}"]})


async def _get(port: int, path: str) -> tuple[int, dict[str, object]]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}{path}") as reply,
    ):
        return reply.status, await reply.json()


async def test_ready_only_once_the_agent_serves(settings: AgentSettings) -> None:
    """Before start /ready is 503 with the reason while /live is 200; once serving, /ready is 200."""
    agent = NodeAgent(settings)
    health = HealthServer("127.0.0.1:0", agent.readiness)
    await health.start()
    try:
        assert await _get(health.port, "/live") == (200, {"live": True})
        status, body = await _get(health.port, "/ready")
        assert status == 503
        assert "not yet attested" in str(body["reason"])
        async with agent:
            status, body = await _get(health.port, "/ready")
            assert (status, body["ready"]) == (200, True)
    finally:
        await health.aclose()


def test_health_listen_is_a_setting(tmp_path: Path) -> None:
    """``agent.health_listen`` is read from the file; a malformed address is refused when the server is built."""
    config = tmp_path / "agent.yaml"
    config.write_text("agent:\n  insecure_bootstrap: true\n  health_listen: 0.0.0.0:8082\n")
    assert load_agent_settings(config).health_listen == "0.0.0.0:8082"
    with pytest.raises(ValueError, match="HOST:PORT"):
        HealthServer("8082", lambda: (True, ""))


async def test_only_the_two_probes_are_served() -> None:
    """An unknown path is 404, another method 405 naming GET and HEAD, and HEAD answers the status without a body."""
    health = HealthServer("127.0.0.1:0", lambda: (False, "starting"))
    await health.start()
    base = f"http://127.0.0.1:{health.port}"
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/metrics") as reply:
                assert reply.status == 404
            async with session.post(f"{base}/ready") as reply:
                assert (reply.status, reply.headers["Allow"]) == (405, "GET, HEAD")
            async with session.head(f"{base}/ready") as reply:
                assert reply.status == 503
                assert await reply.read() == b""
    finally:
        await health.aclose()
