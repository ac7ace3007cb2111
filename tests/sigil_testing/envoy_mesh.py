"""Two real Envoys on the real agent and the real issuer: a caller-side Envoy, a server-side Envoy, a backend.

Both Envoys run as this test process's user, so both are this uid's workload and take its SVID from the agent's SDS
(``default``, ``ROOTCA``); the backend answers every request with the ``x-forwarded-client-cert`` the server-side
Envoy set, so a request through the caller-side Envoy shows which certificate that Envoy presented on a fresh
connection (the caller's cluster opens one connection per request).

A rotation is forced as an operator forces one: the X.509 authority is replaced and the old one tainted
(``LocalAgent.force_rotation``), and the agent replaces the SVID at once.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from cryptography import x509

from sigil_testing.envoy import Envoy, run_envoy
from sigil_testing.envoy_drill import xfcc_backend
from sigil_testing.envoy_sds import caller_bootstrap, client_certificate_of, server_bootstrap
from sigil_testing.local_agent import LocalAgent, local_agent, uid_id
from sigil_testing.network import free_ports

__all__ = ["ME", "EnvoyMesh", "envoy_mesh"]

#: The identity this process (and so both Envoys) holds.
ME = uid_id(os.getuid())


@dataclass
class EnvoyMesh:
    """The running pieces: the agent and issuer, both Envoys and the ports to call."""

    local: LocalAgent
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

    async def force_rotation(self) -> None:
        """An operator's forced rotation: the X.509 authority replaced and the old one tainted."""
        await self.local.force_rotation()


@contextlib.asynccontextmanager
async def envoy_mesh(directory: Path) -> AsyncIterator[EnvoyMesh]:
    """The issuer, an agent entitling this uid to :data:`ME`, a backend and both Envoys, until the block ends."""
    backend_port, server_port, caller_port = free_ports(3)
    async with local_agent(directory, {ME: [f"unix:uid:{os.getuid()}"]}) as local:
        socket_path = local.agent.settings.socket_path
        runner = await xfcc_backend(backend_port)
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
                yield EnvoyMesh(local, caller, server, caller_port, server_port)
        finally:
            await runner.cleanup()
