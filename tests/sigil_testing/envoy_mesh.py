"""Two real Envoys on the real agent and the real issuer: a caller-side Envoy, a server-side Envoy, a backend.

Both Envoys run as this test process's user, so both are this uid's workload and take its SVID from the agent's SDS
(``default``, ``ROOTCA``); the backend answers every request with the ``x-forwarded-client-cert`` the server-side
Envoy set, so a request through the caller-side Envoy shows which certificate that Envoy presented on a fresh
connection (the caller's cluster opens one connection per request).

A rotation is forced the way time would force it: the agent's clock is moved past the SVID's rotation point, the
SVID cache is woken, and the clock is put back as soon as the cache has changed (``EnvoyMesh.force_rotation``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
from aiohttp import web
from cryptography import x509

from sigil.ca.spiffe_id import SpiffeId
from sigil.node_agent.agent import NodeAgent
from sigil.node_agent.settings import RotationSettings
from sigil_testing.enrolment import enrol_agent
from sigil_testing.envoy import Envoy, run_envoy
from sigil_testing.envoy_sds import caller_bootstrap, client_certificate_of, server_bootstrap
from sigil_testing.issuer import issuer_settings, running_issuer
from sigil_testing.network import free_ports

__all__ = ["ME", "EnvoyMesh", "ShiftedClock", "envoy_mesh"]

#: The identity this process (and so both Envoys) holds.
ME = SpiffeId.parse(f"spiffe://example.org/local/uid-{os.getuid()}")


@dataclass
class ShiftedClock:
    """The real time plus an offset the test moves."""

    offset: timedelta = field(default_factory=timedelta)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@dataclass
class EnvoyMesh:
    """The running pieces: the agent, its clock, both Envoys and the ports to call."""

    agent: NodeAgent
    clock: ShiftedClock
    caller: Envoy
    server: Envoy
    caller_port: int
    server_port: int

    async def presented(self) -> x509.Certificate:
        """The certificate the caller-side Envoy presented to the server-side one on a new connection."""
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"http://127.0.0.1:{self.caller_port}/", timeout=aiohttp.ClientTimeout(total=10)
            ) as response,
        ):
            body = await response.text()
            assert response.status == 200, body
        return client_certificate_of(body)

    async def force_rotation(self, leaf: x509.Certificate) -> None:
        """Move the agent's clock past ``leaf``'s rotation point until the agent has changed, then back."""
        life = leaf.not_valid_after_utc - leaf.not_valid_before_utc
        # Rotation is due at half-life +-10% (SPIRE's schedule); 65% is past it whatever the jitter drew.
        due = leaf.not_valid_before_utc + life * 0.65
        changes = self.agent.svid_cache.changes
        revision = changes.revision
        self.clock.offset = due - datetime.now(UTC)
        try:
            self.agent.svid_cache.wake()
            await asyncio.wait_for(changes.wait_after(revision), 30)
        finally:
            self.clock.offset = timedelta()


async def _backend(port: int) -> web.AppRunner:
    async def echo(request: web.Request) -> web.Response:
        return web.Response(text=request.headers.get("x-forwarded-client-cert", ""))

    app = web.Application()
    app.router.add_get("/", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


@contextlib.asynccontextmanager
async def envoy_mesh(directory: Path) -> AsyncIterator[EnvoyMesh]:
    """The issuer, an agent entitling this uid to :data:`ME`, a backend and both Envoys, until the block ends."""
    clock = ShiftedClock()
    rotation = RotationSettings(
        backoff_initial=timedelta(milliseconds=50),
        bundle_wait=timedelta(seconds=1),
        idle_timeout=timedelta(days=1),
    )
    backend_port, server_port, caller_port = free_ports(3)
    async with running_issuer(issuer_settings(directory / "server")) as issuer:
        settings = await enrol_agent(
            issuer, directory, {ME: [f"unix:uid:{os.getuid()}"]}, rotation=rotation
        )
        runner = await _backend(backend_port)
        try:
            async with (
                NodeAgent(settings, clock=clock) as agent,
                run_envoy(
                    server_bootstrap(
                        agent_socket=settings.socket_path,
                        port=server_port,
                        backend_port=backend_port,
                    ),
                    directory,
                    name="server-envoy",
                ) as server,
                run_envoy(
                    caller_bootstrap(
                        agent_socket=settings.socket_path, port=caller_port, server_port=server_port
                    ),
                    directory,
                    name="caller-envoy",
                ) as caller,
            ):
                yield EnvoyMesh(agent, clock, caller, server, caller_port, server_port)
        finally:
            await runner.cleanup()
