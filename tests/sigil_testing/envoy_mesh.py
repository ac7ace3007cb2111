"""Two real Envoys on the real agent and the real issuer: a caller-side Envoy, a server-side Envoy, a backend.

Both Envoys run as this test process's user, so both are this uid's workload and take its SVID from the agent's SDS
(``default``, ``ROOTCA``); the backend answers every request with the ``x-forwarded-client-cert`` the server-side
Envoy set, so a request through the caller-side Envoy shows which certificate that Envoy presented on a fresh
connection (the caller's cluster opens one connection per request).

A rotation is forced the way time would force it: the agent's clock is moved past the SVID's rotation point, the
SVID cache is woken, and the clock is put back as soon as the cache has changed (``EnvoyMesh.force_rotation``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web
from cryptography import x509

from sigil.node_agent.agent import NodeAgent
from sigil_testing.envoy import Envoy, run_envoy
from sigil_testing.envoy_sds import caller_bootstrap, client_certificate_of, server_bootstrap
from sigil_testing.local_agent import ShiftedClock, force_rotation, local_agent, uid_id
from sigil_testing.network import free_ports

__all__ = ["ME", "EnvoyMesh", "envoy_mesh"]

#: The identity this process (and so both Envoys) holds.
ME = uid_id(os.getuid())


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
        """Rotate the SVID ``leaf`` belongs to now (see ``local_agent.force_rotation``)."""
        await force_rotation(self.agent, self.clock, leaf)


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
    backend_port, server_port, caller_port = free_ports(3)
    async with local_agent(directory, {ME: [f"unix:uid:{os.getuid()}"]}) as (agent, clock):
        socket_path = agent.settings.socket_path
        runner = await _backend(backend_port)
        try:
            async with (
                run_envoy(
                    server_bootstrap(
                        agent_socket=socket_path,
                        port=server_port,
                        backend_port=backend_port,
                    ),
                    directory,
                    name="server-envoy",
                ) as server,
                run_envoy(
                    caller_bootstrap(
                        agent_socket=socket_path, port=caller_port, server_port=server_port
                    ),
                    directory,
                    name="caller-envoy",
                ) as caller,
            ):
                yield EnvoyMesh(agent, clock, caller, server, caller_port, server_port)
        finally:
            await runner.cleanup()
